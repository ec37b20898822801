//! Fault intervals, derived from the history's own nemesis events.
//!
//! The nemesis records `start-X` and `stop-X` info events (X = partition, kill, pause, clock,
//! ...). The windows are the ones availability measures
//! ([`faultline_results::analysis::fault_windows_of`]), so the report shades exactly what
//! "during faults" counted: a `stop-X` ends every open `X` window, a `heal` ends them all, a
//! refused fault (`applied: false`) is no window, and a window never ended lasts to the end of
//! the history. Other nemesis events (a refused start, a heal, one-shot faults) are instants.

use std::collections::{HashMap, HashSet};

use faultline_checker::history::{Event, EventType, Process};
use faultline_results::analysis::fault_windows_of;

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
    /// The fault windows of `events`, derived as availability derives them
    /// ([`faultline_results::analysis::fault_windows_of`]: a refused fault is no window, a
    /// `stop-X` or a `heal` ends a window), each described by its start event; every other
    /// nemesis event (a refused start, a heal, a one-shot fault) is an instant. `end_ns` closes
    /// the windows never ended, when later than the history's last event.
    pub fn from_events(events: &[Event], end_ns: u64) -> Faults {
        let mut out = Faults::default();
        let fw = fault_windows_of(events);
        let by_index: HashMap<u64, &Event> = events.iter().map(|e| (e.index, e)).collect();
        let starts: HashSet<u64> = fw.windows.iter().map(|w| w.start_index).collect();
        for w in &fw.windows {
            out.intervals.push(FaultInterval {
                kind: w.f.clone(),
                start_ns: w.start_ns,
                end_ns: if w.open_ended { w.end_ns.max(end_ns) } else { w.end_ns },
                open_ended: w.open_ended,
                start_index: w.start_index,
                description: by_index.get(&w.start_index).map(|e| describe(&e.value)).unwrap_or_default(),
            });
        }
        for i in &fw.unmatched_stops {
            let f = by_index.get(i).map_or("stop", |e| e.f.as_str());
            out.warnings.push(format!("history index {i}: {f} without a matching start; ignored"));
        }
        let unmatched: HashSet<&u64> = fw.unmatched_stops.iter().collect();
        for e in events.iter().filter(|e| e.process == Process::Nemesis && e.kind == EventType::Info) {
            let paired_stop = e.f.starts_with("stop-") && !unmatched.contains(&e.index);
            if starts.contains(&e.index) || paired_stop || unmatched.contains(&e.index) {
                continue;
            }
            out.instants.push(FaultInstant {
                f: e.f.clone(),
                time_ns: e.time,
                index: e.index,
                description: describe(&e.value),
            });
        }
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

/// [`describe`] before the bound: the head, the detail, the outcome, then any other field.
fn describe_unbounded(value: &serde_json::Value) -> String {
    use serde_json::Value;
    let map = match value {
        Value::Null => return String::new(),
        Value::Object(m) => m,
        other => return plain(other),
    };
    let mut parts: Vec<String> = Vec::new();
    let head = describe_head(map);
    if !head.is_empty() {
        parts.push(head.trim().to_string());
    }
    if let Some(detail) = map.get("detail").and_then(Value::as_object) {
        describe_detail(detail, &mut parts);
    }
    describe_outcome(map, &mut parts);
    const KNOWN: &[&str] = &["kind", "nodes", "mechanism", "detail", "applied", "error", "ok", "errors"];
    for (k, v) in map {
        if !KNOWN.contains(&k.as_str()) && !v.is_null() {
            parts.push(format!("{k}: {}", plain(v)));
        }
    }
    parts.join("; ")
}

/// `kind on nodes via mechanism`, each part when present (untrimmed).
fn describe_head(map: &serde_json::Map<String, serde_json::Value>) -> String {
    use serde_json::Value;
    let mut head = String::new();
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
    head
}

/// The detail's known fields spelled out (at most [`LINKS_NAMED_MAX`] links named), then its
/// other fields as `key: value`.
fn describe_detail(detail: &serde_json::Map<String, serde_json::Value>, parts: &mut Vec<String>) {
    use serde_json::Value;
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
        if !["offset_ms", "strobe_period_ms", "leader", "links", "param", "note"].contains(&k.as_str()) && !v.is_null()
        {
            parts.push(format!("{k}: {}", plain(v)));
        }
    }
}

/// Whether the fault was applied (`NOT APPLIED (why)` goes first) or its error, and a heal's
/// outcome and errors.
fn describe_outcome(map: &serde_json::Map<String, serde_json::Value>, parts: &mut Vec<String>) {
    use serde_json::Value;
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
        assert_eq!(
            (f.intervals[0].kind.as_str(), f.intervals[0].start_ns, f.intervals[0].end_ns),
            ("partition", 100, 300)
        );
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
    fn the_report_shades_what_availability_counted() {
        // A refused fault is no window (availability does not count it) but an instant; a heal
        // ends every open window (the shading used to run past it to the end of the run).
        let events = vec![
            nem(0, 10, "start-loss", json!({"applied": false, "error": "no iptables"})),
            nem(1, 20, "start-kill", json!({"applied": true, "kind": "one", "nodes": ["n2"]})),
            nem(2, 30, "heal", json!({"ok": true})),
        ];
        let f = Faults::from_events(&events, 100);
        let spans: Vec<(&str, u64, u64)> =
            f.intervals.iter().map(|i| (i.kind.as_str(), i.start_ns, i.end_ns)).collect();
        assert_eq!(spans, vec![("kill", 20, 30)]);
        let windows = faultline_results::analysis::fault_windows(&events);
        assert_eq!(windows.len(), 1);
        assert_eq!((windows[0].start_ns, windows[0].end_ns), (20, 30));
        let instants: Vec<&str> = f.instants.iter().map(|i| i.f.as_str()).collect();
        assert_eq!(instants, vec!["start-loss", "heal"]);
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
        assert_eq!(
            describe(&v),
            "halves on n1, n2, n3 via netns-iptables; 4 links cut: n1->n2, n1->n3, n2->n1, n3->n1"
        );
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
