//! Fault intervals, derived from the history's own nemesis events.
//!
//! The nemesis records `start-X` and `stop-X` info events (X = partition, kill, pause, clock,
//! ...). A `stop-X` ends every open `X` interval: the nemeses heal all faults of a kind at once,
//! as Jepsen's do. A `start-X` that is never stopped lasts to the end of the history. Events
//! with other names (one-shot faults) are kept as instants.

use faultline_checker::history::{Event, EventType, Process};

/// One fault, from its start event to its stop event.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultInterval {
    /// The X of `start-X`.
    pub kind: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// No `stop-X` was recorded: the interval runs to the end of the history.
    pub open_ended: bool,
    /// History index of the start event.
    pub start_index: u64,
    /// The start event's value as readable text (kind, nodes, mechanism, offsets; bounded).
    pub description: String,
}

/// A nemesis event that is neither a start nor a stop.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultInstant {
    pub f: String,
    pub time_ns: u64,
    pub index: u64,
    pub description: String,
}

/// The nemesis activity of a history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Sorted by start time.
    pub intervals: Vec<FaultInterval>,
    pub instants: Vec<FaultInstant>,
    pub warnings: Vec<String>,
}

/// Longest description kept, in characters.
const DESCRIPTION_CHARS_MAX: usize = 240;

impl Faults {
    /// Pairs the nemesis events of `events`; `end_ns` closes the intervals never stopped.
    pub fn from_events(events: &[Event], end_ns: u64) -> Faults {
        let mut out = Faults::default();
        // Open intervals, as positions in out.intervals.
        let mut open: Vec<usize> = Vec::new();
        for e in events {
            // Only `info` nemesis events carry faults; a nemesis `invoke` (if a nemesis records
            // one) would otherwise double every interval.
            if e.process != Process::Nemesis || e.kind != EventType::Info {
                continue;
            }
            if let Some(kind) = e.f.strip_prefix("start-") {
                out.intervals.push(FaultInterval {
                    kind: kind.to_string(),
                    start_ns: e.time,
                    end_ns: e.time,
                    open_ended: true,
                    start_index: e.index,
                    description: describe(&e.value),
                });
                open.push(out.intervals.len() - 1);
            } else if let Some(kind) = e.f.strip_prefix("stop-") {
                let before = open.len();
                open.retain(|&i| {
                    let iv = &mut out.intervals[i];
                    if iv.kind == kind {
                        iv.end_ns = e.time.max(iv.start_ns);
                        iv.open_ended = false;
                        false
                    } else {
                        true
                    }
                });
                if open.len() == before {
                    out.warnings.push(format!(
                        "history index {}: {} without a matching start-{kind}; ignored",
                        e.index, e.f
                    ));
                }
            } else {
                out.instants.push(FaultInstant {
                    f: e.f.clone(),
                    time_ns: e.time,
                    index: e.index,
                    description: describe(&e.value),
                });
            }
        }
        for &i in &open {
            let iv = &mut out.intervals[i];
            iv.end_ns = end_ns.max(iv.start_ns);
        }
        out.intervals.sort_by_key(|iv| (iv.start_ns, iv.start_index));
        out
    }

    /// Distinct kinds, in order of first start.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = Vec::new();
        for iv in &self.intervals {
            if !kinds.contains(&iv.kind) {
                kinds.push(iv.kind.clone());
            }
        }
        kinds
    }
}

/// A nemesis event's value as readable text: `halves on n1, n2, n3 via netns-iptables; 2 links
/// cut: n1->n2, n1->n3`, `offset +200 ms on n2`, `NOT APPLIED (no leader known)`. The harness's
/// fields (kind, nodes, mechanism, applied, error, detail.{offset_ms, strobe_period_ms, leader,
/// links, param, note}) are spelled out; any other field is kept as `key: value`, so a value
/// written by another tool still reads. Bounded to [`DESCRIPTION_CHARS_MAX`] characters.
fn describe(value: &serde_json::Value) -> String {
    bound(describe_unbounded(value))
}

fn bound(s: String) -> String {
    if s.chars().count() <= DESCRIPTION_CHARS_MAX {
        s
    } else {
        let mut t: String = s.chars().take(DESCRIPTION_CHARS_MAX).collect();
        t.push('…');
        t
    }
}

/// At most this many links are named in a description (the count is always given).
const LINKS_NAMED_MAX: usize = 6;

fn describe_unbounded(value: &serde_json::Value) -> String {
    use serde_json::Value;
    let map = match value {
        Value::Null => return String::new(),
        Value::Object(m) => m,
        other => return plain(other),
    };
    let mut head = String::new();
    let mut parts: Vec<String> = Vec::new();
    if let Some(k) = map.get("kind").and_then(Value::as_str) {
        head.push_str(k);
    }
    if let Some(nodes) = map.get("nodes").and_then(Value::as_array).filter(|n| !n.is_empty()) {
        let names: Vec<String> = nodes.iter().map(plain).collect();
        if !head.is_empty() {
            head.push(' ');
        }
        head.push_str("on ");
        head.push_str(&names.join(", "));
    }
    if let Some(m) = map.get("mechanism").and_then(Value::as_str).filter(|m| !m.is_empty()) {
        head.push_str(&format!(" via {m}"));
    }
    if !head.is_empty() {
        parts.push(head.trim().to_string());
    }
    if let Some(detail) = map.get("detail").and_then(Value::as_object) {
        if let Some(o) = detail.get("offset_ms").and_then(Value::as_f64) {
            parts.push(format!("clock offset {o:+} ms"));
        }
        if let Some(p) = detail.get("strobe_period_ms").and_then(Value::as_f64) {
            parts.push(format!("strobing every {p} ms"));
        }
        if let Some(l) = detail.get("leader").and_then(Value::as_str) {
            parts.push(format!("leader {l}"));
        }
        if let Some(links) = detail.get("links").and_then(Value::as_array).filter(|l| !l.is_empty()) {
            let named: Vec<String> = links.iter().take(LINKS_NAMED_MAX).map(plain).collect();
            let more = links.len().saturating_sub(LINKS_NAMED_MAX);
            let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
            parts.push(format!("{} links cut: {}{tail}", links.len(), named.join(", ")));
        }
        if let Some(p) = detail.get("param").and_then(Value::as_f64).filter(|p| *p != 0.0) {
            parts.push(format!("parameter {p}"));
        }
        if let Some(n) = detail.get("note").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            parts.push(n.to_string());
        }
        for (k, v) in detail {
            if !["offset_ms", "strobe_period_ms", "leader", "links", "param", "note"].contains(&k.as_str()) && !v.is_null() {
                parts.push(format!("{k}: {}", plain(v)));
            }
        }
    }
    match map.get("applied").and_then(Value::as_bool) {
        Some(false) => {
            let why = map.get("error").and_then(Value::as_str).unwrap_or("no reason given");
            parts.insert(0, format!("NOT APPLIED ({why})"));
        }
        _ => {
            if let Some(e) = map.get("error").and_then(Value::as_str) {
                parts.push(format!("error: {e}"));
            }
        }
    }
    // The heal event: `{"ok": true, "errors": []}`.
    if let Some(ok) = map.get("ok").and_then(Value::as_bool) {
        parts.push(if ok { "every fault healed".into() } else { "healing failed".into() });
    }
    if let Some(errors) = map.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
        parts.push(format!("errors: {}", errors.iter().map(plain).collect::<Vec<_>>().join("; ")));
    }
    const KNOWN: &[&str] = &["kind", "nodes", "mechanism", "detail", "applied", "error", "ok", "errors"];
    for (k, v) in map {
        if !KNOWN.contains(&k.as_str()) && !v.is_null() {
            parts.push(format!("{k}: {}", plain(v)));
        }
    }
    parts.join("; ")
}

/// A JSON value as text without JSON punctuation: strings bare, arrays as `a, b` (nested
/// arrays in brackets: `[n1] [n2, n3]`), objects as `key: value` pairs.
fn plain(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().any(Value::is_array) => {
            items.iter().map(|i| format!("[{}]", plain(i))).collect::<Vec<_>>().join(" ")
        }
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        Value::Object(m) => m
            .iter()
            .filter(|(_, x)| !x.is_null())
            .map(|(k, x)| format!("{k}: {}", plain(x)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nem(index: u64, time: u64, f: &str, value: serde_json::Value) -> Event {
        serde_json::from_value(json!({
            "index": index, "time": time, "type": "info", "process": "nemesis", "f": f, "value": value
        }))
        .unwrap()
    }

    #[test]
    fn start_and_stop_pair_by_kind() {
        let events = vec![
            nem(0, 100, "start-partition", json!({"groups": [["n1"], ["n2", "n3"]]})),
            nem(1, 150, "start-kill", json!({"nodes": ["n2"]})),
            nem(2, 300, "stop-partition", json!(null)),
            nem(3, 400, "stop-kill", json!(null)),
        ];
        let f = Faults::from_events(&events, 1000);
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
        assert_eq!(f.intervals.len(), 2);
        assert_eq!((f.intervals[0].kind.as_str(), f.intervals[0].start_ns, f.intervals[0].end_ns), ("partition", 100, 300));
        assert_eq!((f.intervals[1].kind.as_str(), f.intervals[1].start_ns, f.intervals[1].end_ns), ("kill", 150, 400));
        assert!(!f.intervals[0].open_ended);
        assert!(f.intervals[0].description.contains("n2"));
        assert_eq!(f.kinds(), vec!["partition", "kill"]);
    }

    #[test]
    fn unmatched_start_lasts_to_the_end() {
        let events = vec![
            nem(0, 10, "start-pause", json!({"nodes": ["n1"]})),
            nem(1, 20, "start-partition", json!(null)),
            nem(2, 30, "stop-partition", json!(null)),
        ];
        let f = Faults::from_events(&events, 500);
        let pause = f.intervals.iter().find(|i| i.kind == "pause").unwrap();
        assert_eq!((pause.start_ns, pause.end_ns, pause.open_ended), (10, 500, true));
    }

    #[test]
    fn a_stop_heals_every_open_interval_of_its_kind() {
        let events = vec![
            nem(0, 10, "start-kill", json!({"nodes": ["n1"]})),
            nem(1, 20, "start-kill", json!({"nodes": ["n2"]})),
            nem(2, 30, "stop-kill", json!(null)),
            nem(3, 40, "start-kill", json!({"nodes": ["n3"]})),
            nem(4, 50, "stop-kill", json!(null)),
        ];
        let f = Faults::from_events(&events, 100);
        let spans: Vec<(u64, u64)> = f.intervals.iter().map(|i| (i.start_ns, i.end_ns)).collect();
        assert_eq!(spans, vec![(10, 30), (20, 30), (40, 50)]);
    }

    #[test]
    fn stray_stop_is_warned_and_client_events_ignored() {
        let mut events = vec![nem(0, 10, "stop-clock", json!(null)), nem(1, 12, "kill-leader", json!("n1"))];
        events.push(
            serde_json::from_value(json!({"index":2,"time":15,"type":"invoke","process":0,"f":"start-x","value":null}))
                .unwrap(),
        );
        let f = Faults::from_events(&events, 100);
        assert!(f.intervals.is_empty());
        assert_eq!(f.warnings.len(), 1);
        assert!(f.warnings[0].contains("stop-clock"));
        assert_eq!(f.instants.len(), 1);
        assert_eq!(f.instants[0].f, "kill-leader");
    }

    #[test]
    fn harness_fault_values_read_as_text_not_json() {
        let v = json!({"applied": true, "detail": {"leader": null, "links": ["n1->n2", "n1->n3", "n2->n1", "n3->n1"], "param": 0.0},
            "error": null, "kind": "halves", "mechanism": "netns-iptables", "nodes": ["n1", "n2", "n3"]});
        assert_eq!(describe(&v), "halves on n1, n2, n3 via netns-iptables; 4 links cut: n1->n2, n1->n3, n2->n1, n3->n1");
        let clock = json!({"applied": true, "kind": "bump", "nodes": ["n2"], "mechanism": "admin-api",
            "detail": {"offset_ms": -200, "strobe_period_ms": null}, "error": null});
        assert_eq!(describe(&clock), "bump on n2 via admin-api; clock offset -200 ms");
        let missed = json!({"applied": false, "kind": "isolate-leader", "nodes": [], "error": "no leader known",
            "mechanism": "netns-iptables", "detail": {"note": "no leader"}});
        assert_eq!(describe(&missed), "NOT APPLIED (no leader known); isolate-leader via netns-iptables; no leader");
        assert_eq!(describe(&json!({"errors": [], "ok": true})), "every fault healed");
        // Another tool's shape: unknown fields as key: value, nested arrays bracketed.
        assert_eq!(describe(&json!({"groups": [["n1"], ["n2", "n3"]]})), "groups: [n1] [n2, n3]");
        let many: Vec<String> = (0..20).map(|i| format!("n{i}->n{}", i + 1)).collect();
        let d = describe(&json!({"kind": "bridge", "detail": {"links": many}}));
        assert!(d.starts_with("bridge; 20 links cut: n0->n1") && d.ends_with("and 14 more"), "{d}");
        for text in [describe(&v), describe(&clock), d] {
            assert!(!text.contains('{') && !text.contains('"'), "JSON punctuation left in {text}");
        }
    }

    #[test]
    fn long_descriptions_are_bounded() {
        let big = json!({"x": "y".repeat(1000)});
        let f = Faults::from_events(&[nem(0, 0, "start-partition", big)], 1);
        assert_eq!(f.intervals[0].description.chars().count(), DESCRIPTION_CHARS_MAX + 1);
    }
}
