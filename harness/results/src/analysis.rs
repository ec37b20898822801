//! Analysis of a recorded history that needs no cluster: op counts, fault windows, availability
//! in and out of them, the availability checker, and the combined verdict.
//!
//! Fault windows come from the history itself (nemesis `start-*` … `stop-*`/`heal` events whose
//! `value.applied` is not false), so this works on any stored run.

use std::collections::BTreeMap;

use faultline_checker::history::{Event, EventType, Process};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{CheckerResult, Verdict};

/// ok/fail/info counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl Counts {
    fn add(&mut self, kind: EventType) {
        match kind {
            EventType::Ok => self.ok += 1,
            EventType::Fail => self.fail += 1,
            EventType::Info => self.info += 1,
            EventType::Invoke => {}
        }
    }
    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.info
    }
    /// ok / completed, or `None` when nothing completed.
    pub fn ok_fraction(&self) -> Option<f64> {
        let t = self.total();
        (t > 0).then(|| self.ok as f64 / t as f64)
    }
}

/// Operation counts of a history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpStats {
    pub invoked: u64,
    pub completed: Counts,
    /// Invocations with no completion (the run ended while they were in flight).
    pub unfinished: u64,
    pub by_f: BTreeMap<String, Counts>,
}

/// One window during which an applied fault was active, in test-clock ns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The family: the X of `start-X`.
    pub f: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// History index of the `start-X` event.
    #[serde(default)]
    pub start_index: u64,
    /// Neither a `stop-X` nor a `heal` ended it: it runs to the end of the history.
    #[serde(default)]
    pub open_ended: bool,
}

/// Availability in and out of fault windows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Availability {
    pub fault_windows: usize,
    pub fault_time_s: f64,
    pub during_faults: Counts,
    pub outside_faults: Counts,
    pub during_faults_ok_fraction: Option<f64>,
    pub outside_faults_ok_fraction: Option<f64>,
    /// ok client completions before the first fault started / after the last one ended.
    pub ok_before_first_fault: u64,
    pub ok_after_last_fault: u64,
    /// Faults the schedule started that were not applied (the runtime or target refused them).
    #[serde(default)]
    pub faults_not_applied: usize,
    /// The first refusal's reason, to say why.
    #[serde(default)]
    pub first_refusal: Option<String>,
    /// Fault windows that killed or paused every node clients used (a one-server database's
    /// only node, `kill:all`): nothing can succeed during those.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub whole_cluster_down_windows: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How many applied kill or pause windows took down every node named by a client completion.
fn whole_cluster_down_windows(events: &[Event]) -> usize {
    let client_nodes: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e.process != Process::Nemesis && e.kind != EventType::Invoke)
        .filter_map(|e| e.node.as_deref())
        .collect();
    events
        .iter()
        .filter(|e| e.process == Process::Nemesis && matches!(e.f.as_str(), "start-kill" | "start-pause"))
        .filter(|e| e.value.get("applied").and_then(|v| v.as_bool()) != Some(false))
        .filter(|e| {
            let down: std::collections::BTreeSet<&str> = e
                .value
                .get("nodes")
                .and_then(|n| n.as_array())
                .map(|n| n.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            !client_nodes.is_empty() && client_nodes.is_subset(&down)
        })
        .count()
}

/// Counts client operations.
pub fn op_stats(events: &[Event]) -> OpStats {
    let mut s = OpStats::default();
    let mut open: BTreeMap<Process, ()> = BTreeMap::new();
    for e in events {
        if e.process == Process::Nemesis {
            continue;
        }
        if e.kind == EventType::Invoke {
            s.invoked += 1;
            open.insert(e.process, ());
        } else {
            open.remove(&e.process);
            s.completed.add(e.kind);
            s.by_f.entry(e.f.clone()).or_default().add(e.kind);
        }
    }
    s.unfinished = open.len() as u64;
    s
}

/// Latency percentiles of completed client operations, in ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn latency_of(mut samples_ns: Vec<u64>) -> Latency {
    if samples_ns.is_empty() {
        return Latency::default();
    }
    samples_ns.sort_unstable();
    // Nearest-rank percentile.
    let pick = |q: f64| {
        let rank = ((q * samples_ns.len() as f64).ceil() as usize).clamp(1, samples_ns.len());
        samples_ns[rank - 1] as f64 / 1e6
    };
    Latency {
        count: samples_ns.len() as u64,
        p50_ms: pick(0.50),
        p95_ms: pick(0.95),
        p99_ms: pick(0.99),
        max_ms: *samples_ns.last().expect("non-empty") as f64 / 1e6,
    }
}

/// Latency (invoke to completion) of client operations by outcome: `ok`, `fail`, `info`.
pub fn latencies(events: &[Event]) -> BTreeMap<String, Latency> {
    let mut open: BTreeMap<Process, u64> = BTreeMap::new();
    let mut by: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.process != Process::Nemesis) {
        if e.kind == EventType::Invoke {
            open.insert(e.process, e.time);
        } else if let Some(t0) = open.remove(&e.process) {
            let key = match e.kind {
                EventType::Ok => "ok",
                EventType::Fail => "fail",
                _ => "info",
            };
            by.entry(key.into()).or_default().push(e.time.saturating_sub(t0));
        }
    }
    by.into_iter().map(|(k, v)| (k, latency_of(v))).collect()
}

/// The fault windows of a history and the stops that matched no start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultWindows {
    /// Sorted by start time, then history index.
    pub windows: Vec<Window>,
    /// History indexes of `stop-X` events with no open window of X.
    pub unmatched_stops: Vec<u64>,
}

/// The one derivation of fault windows, used by availability, the lb-distribution checker and
/// the report's shading alike. Nemesis `info` events only: a `start-X` whose `value.applied` is
/// not false opens a window of X (a refused fault is no window); a `stop-X` closes every open
/// window of X (nemeses heal all faults of a family at once, as Jepsen's do); a `heal` closes
/// every open window; a window still open at the end runs to the last event of the history.
pub fn fault_windows_of(events: &[Event]) -> FaultWindows {
    let mut out = FaultWindows::default();
    let mut open: Vec<usize> = Vec::new();
    let end = events.last().map(|e| e.time).unwrap_or(0);
    for e in events.iter().filter(|e| e.process == Process::Nemesis && e.kind == EventType::Info) {
        let close = |w: &mut Window| w.end_ns = e.time.max(w.start_ns);
        if let Some(fam) = e.f.strip_prefix("start-") {
            if e.value.get("applied").and_then(|v| v.as_bool()) != Some(false) {
                out.windows.push(Window {
                    f: fam.into(),
                    start_ns: e.time,
                    end_ns: e.time,
                    start_index: e.index,
                    open_ended: false,
                });
                open.push(out.windows.len() - 1);
            }
        } else if let Some(fam) = e.f.strip_prefix("stop-") {
            let before = open.len();
            open.retain(|&i| out.windows[i].f != fam || (close(&mut out.windows[i]), false).1);
            if open.len() == before {
                out.unmatched_stops.push(e.index);
            }
        } else if e.f == "heal" {
            for i in open.drain(..) {
                close(&mut out.windows[i]);
            }
        }
    }
    for i in open {
        let w = &mut out.windows[i];
        w.end_ns = end.max(w.start_ns);
        w.open_ended = true;
    }
    out.windows.sort_by_key(|w| (w.start_ns, w.start_index));
    out
}

/// [`fault_windows_of`]'s windows.
pub fn fault_windows(events: &[Event]) -> Vec<Window> {
    fault_windows_of(events).windows
}

/// Availability: each client completion is "during faults" when its completion time falls in a
/// fault window.
pub fn availability(events: &[Event]) -> Availability {
    let windows = fault_windows(events);
    let mut a = Availability { fault_windows: windows.len(), ..Availability::default() };
    a.fault_time_s = windows.iter().map(|w| (w.end_ns - w.start_ns) as f64 / 1e9).sum();
    for e in events.iter().filter(|e| e.process == Process::Nemesis && e.f.starts_with("start-")) {
        if e.value.get("applied").and_then(|v| v.as_bool()) == Some(false) {
            a.faults_not_applied += 1;
            if a.first_refusal.is_none() {
                let why = e.value.get("error").and_then(|v| v.as_str()).unwrap_or("no reason recorded");
                a.first_refusal = Some(format!("{}: {why}", e.f.trim_start_matches("start-")));
            }
        }
    }
    let first = windows.iter().map(|w| w.start_ns).min();
    let last = windows.iter().map(|w| w.end_ns).max();
    for e in events.iter().filter(|e| e.process != Process::Nemesis && e.kind != EventType::Invoke) {
        let inside = windows.iter().any(|w| e.time >= w.start_ns && e.time <= w.end_ns);
        if inside {
            a.during_faults.add(e.kind);
        } else {
            a.outside_faults.add(e.kind);
        }
        if e.kind == EventType::Ok {
            if first.is_some_and(|f| e.time < f) {
                a.ok_before_first_fault += 1;
            }
            if last.is_some_and(|l| e.time > l) {
                a.ok_after_last_fault += 1;
            }
        }
    }
    a.during_faults_ok_fraction = a.during_faults.ok_fraction();
    a.outside_faults_ok_fraction = a.outside_faults.ok_fraction();
    a.whole_cluster_down_windows = whole_cluster_down_windows(events);
    a
}

/// The availability checker: a run whose fault windows saw no successful operation proves
/// nothing about safety under faults, so it is `unknown`, never plainly valid. A run with no ok
/// operation at all is `unknown` too, and so is a run whose schedule had faults of which none
/// was applied (a target that refuses every scheduled fault was not tested under faults).
pub fn availability_checker(a: &Availability, stats: &OpStats) -> CheckerResult {
    let details = json!(a);
    let (verdict, reason) = if stats.completed.ok == 0 {
        (Verdict::Unknown, Some("no operation succeeded in the whole run".to_string()))
    } else if a.fault_windows == 0 && a.faults_not_applied > 0 {
        (
            Verdict::Unknown,
            Some(format!(
                "none of the {} scheduled faults was applied ({}): the run did not test the system under faults",
                a.faults_not_applied,
                a.first_refusal.as_deref().unwrap_or("no reason recorded")
            )),
        )
    } else if a.fault_windows > 0
        && a.during_faults.ok == 0
        && a.whole_cluster_down_windows >= a.fault_windows
        && a.ok_after_last_fault > 0
    {
        // Every window took every node down (a one-server database killed): nothing could
        // succeed during them; what they test is that the system comes back with what it
        // acknowledged, and operations after the last window did reach it.
        (Verdict::Valid, None)
    } else if a.fault_windows > 0 && a.during_faults.ok == 0 {
        (
            Verdict::Unknown,
            Some(format!(
                "no operation succeeded during the {} fault windows ({:.1} s): the faults were not exercised by the workload",
                a.fault_windows, a.fault_time_s
            )),
        )
    } else {
        (Verdict::Valid, None)
    };
    CheckerResult { name: "availability".into(), verdict, reason, details }
}

/// Combines checker verdicts: any invalid → invalid; else any unknown → unknown; else valid.
pub fn combine(results: &[CheckerResult]) -> Verdict {
    if results.iter().any(|r| r.verdict == Verdict::Invalid) {
        Verdict::Invalid
    } else if results.is_empty() || results.iter().any(|r| r.verdict != Verdict::Valid) {
        Verdict::Unknown
    } else {
        Verdict::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn ev(index: u64, time: u64, kind: EventType, process: Process, f: &str, value: Value) -> Event {
        Event { index, time, kind, process, f: f.into(), key: None, value, error: None, node: None }
    }

    fn history() -> Vec<Event> {
        use EventType::*;
        let c = Process::Client;
        vec![
            ev(0, 10, Invoke, c(0), "read", Value::Null),
            ev(1, 20, Ok, c(0), "read", json!(1)),
            ev(2, 30, Info, Process::Nemesis, "start-partition", json!({"applied": true})),
            ev(3, 40, Invoke, c(0), "write", json!(2)),
            ev(4, 50, Fail, c(0), "write", json!(2)),
            ev(5, 55, Invoke, c(1), "write", json!(3)),
            ev(6, 60, Ok, c(1), "write", json!(3)),
            ev(7, 70, Info, Process::Nemesis, "stop-partition", json!({})),
            ev(8, 75, Info, Process::Nemesis, "start-latency", json!({"applied": false})),
            ev(9, 80, Invoke, c(0), "read", Value::Null),
            ev(10, 90, Info, c(0), "read", Value::Null),
            ev(11, 95, Invoke, c(10), "read", Value::Null),
            ev(12, 99, Info, Process::Nemesis, "heal", json!({})),
        ]
    }

    #[test]
    fn counts_windows_and_availability() {
        let h = history();
        let s = op_stats(&h);
        assert_eq!(s.invoked, 5);
        assert_eq!(s.completed, Counts { ok: 2, fail: 1, info: 1 });
        assert_eq!(s.unfinished, 1);
        assert_eq!(s.by_f["write"], Counts { ok: 1, fail: 1, info: 0 });
        let w = fault_windows(&h);
        assert_eq!(
            w,
            vec![Window {
                f: "partition".into(),
                start_ns: 30,
                end_ns: 70,
                start_index: w[0].start_index,
                open_ended: false,
            }],
            "unapplied latency opens no window"
        );
        let a = availability(&h);
        assert_eq!(a.during_faults, Counts { ok: 1, fail: 1, info: 0 });
        assert_eq!(a.outside_faults, Counts { ok: 1, fail: 0, info: 1 });
        assert_eq!(a.ok_before_first_fault, 1);
        assert_eq!(a.ok_after_last_fault, 0);
        assert_eq!(availability_checker(&a, &s).verdict, Verdict::Valid);
    }

    #[test]
    fn no_success_during_faults_is_flagged_unknown() {
        let mut h = history();
        h[6].kind = EventType::Fail; // the only ok during the partition
        let a = availability(&h);
        let r = availability_checker(&a, &op_stats(&h));
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.reason.unwrap().contains("no operation succeeded during"));
        let lin_ok =
            CheckerResult { name: "linearizable".into(), verdict: Verdict::Valid, reason: None, details: Value::Null };
        let avail = availability_checker(&a, &op_stats(&h));
        assert_eq!(combine(&[lin_ok.clone(), avail]), Verdict::Unknown);
        assert_eq!(combine(std::slice::from_ref(&lin_ok)), Verdict::Valid);
        let bad = CheckerResult { verdict: Verdict::Invalid, ..lin_ok };
        assert_eq!(combine(&[bad]), Verdict::Invalid);
    }

    /// A one-server database killed: no operation can succeed while it is down. If operations
    /// succeed after it came back, the run is judged (valid here); a kill that left some
    /// client node up, or no success after the last window, stays unknown.
    #[test]
    fn a_window_that_took_every_node_down_needs_successes_after_it_not_during_it() {
        use EventType::*;
        let c = Process::Client;
        let on = |mut e: Event, n: &str| {
            e.node = Some(n.into());
            e
        };
        let kill = |nodes: Value| json!({"applied": true, "kind": "all", "nodes": nodes});
        let h = |killed: Value, after: EventType| {
            vec![
                ev(0, 10, Invoke, c(0), "txn", Value::Null),
                on(ev(1, 20, Ok, c(0), "txn", json!([])), "n1"),
                ev(2, 30, Info, Process::Nemesis, "start-kill", kill(killed)),
                ev(3, 40, Invoke, c(0), "txn", Value::Null),
                on(ev(4, 50, Fail, c(0), "txn", Value::Null), "n1"),
                ev(5, 70, Info, Process::Nemesis, "stop-kill", json!({})),
                ev(6, 80, Invoke, c(0), "txn", Value::Null),
                on(ev(7, 90, after, c(0), "txn", json!([])), "n1"),
            ]
        };
        let judge = |h: &[Event]| availability_checker(&availability(h), &op_stats(h)).verdict;
        let down = h(json!(["n1"]), Ok);
        assert_eq!(availability(&down).whole_cluster_down_windows, 1);
        assert_eq!(judge(&down), Verdict::Valid);
        assert_eq!(judge(&h(json!(["n1"]), Fail)), Verdict::Unknown, "nothing succeeded after the restart");
        let mut two = h(json!(["n1"]), Ok);
        two.push(ev(8, 95, Invoke, c(1), "txn", Value::Null));
        two.push(on(ev(9, 96, Fail, c(1), "txn", Value::Null), "n2"));
        assert_eq!(availability(&two).whole_cluster_down_windows, 0, "n2 stayed up");
        assert_eq!(judge(&two), Verdict::Unknown);
        // Not serialized when zero: results.json of runs without such windows is unchanged.
        assert!(serde_json::to_value(availability(&two)).unwrap().get("whole_cluster_down_windows").is_none());
    }

    #[test]
    fn a_run_whose_faults_were_all_refused_is_unknown() {
        let h: Vec<Event> = history()
            .into_iter()
            .filter(|e| e.f != "start-partition" && e.f != "stop-partition")
            .map(|mut e| {
                if e.f == "start-latency" {
                    e.value = json!({"applied": false, "error": "the target cannot take latency"});
                }
                e
            })
            .collect();
        let a = availability(&h);
        assert_eq!((a.fault_windows, a.faults_not_applied), (0, 1));
        let r = availability_checker(&a, &op_stats(&h));
        assert_eq!(r.verdict, Verdict::Unknown);
        let why = r.reason.unwrap();
        assert!(
            why.contains("none of the 1 scheduled faults was applied (latency: the target cannot take latency)"),
            "{why}"
        );
        // One refused fault beside an applied one is reported, not a reason for unknown.
        let h = history();
        let a = availability(&h);
        assert_eq!((a.fault_windows, a.faults_not_applied), (1, 1));
        assert_eq!(availability_checker(&a, &op_stats(&h)).verdict, Verdict::Valid);
        assert_eq!(combine(&[]), Verdict::Unknown);
    }

    #[test]
    fn latency_percentiles_by_outcome() {
        let l = latencies(&history());
        // ok: 10 (read 10→20) and 5 (write 55→60); fail: 10; info: 10; the unfinished op none.
        assert_eq!(l["ok"].count, 2);
        assert_eq!(l["ok"].p50_ms, 5e-6);
        assert_eq!(l["ok"].max_ms, 10e-6);
        assert_eq!(l["fail"].count, 1);
        assert_eq!(l["info"].count, 1);
        let many: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        let p = latency_of(many);
        assert_eq!((p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(latency_of(vec![]), Latency::default());
    }

    #[test]
    fn heal_closes_every_open_window() {
        use EventType::*;
        let h = vec![
            ev(0, 5, Info, Process::Nemesis, "start-kill", json!({"applied": true})),
            ev(1, 9, Info, Process::Nemesis, "heal", json!({})),
        ];
        assert_eq!(
            fault_windows(&h),
            vec![Window { f: "kill".into(), start_ns: 5, end_ns: 9, start_index: 0, open_ended: false }]
        );
    }

    #[test]
    fn two_windows_of_one_family_both_count_and_a_stop_closes_both() {
        use EventType::*;
        let nem = |i, t, f: &str| ev(i, t, Info, Process::Nemesis, f, json!({"applied": true}));
        let h = vec![
            nem(0, 5, "start-pause"),
            nem(1, 7, "start-pause"),
            nem(2, 9, "stop-pause"),
            nem(3, 11, "stop-kill"),
            nem(4, 20, "start-clock"),
            nem(5, 30, "start-kill"),
        ];
        let fw = fault_windows_of(&h);
        let spans: Vec<(&str, u64, u64, bool)> =
            fw.windows.iter().map(|w| (w.f.as_str(), w.start_ns, w.end_ns, w.open_ended)).collect();
        assert_eq!(
            spans,
            vec![("pause", 5, 9, false), ("pause", 7, 9, false), ("clock", 20, 30, true), ("kill", 30, 30, true)]
        );
        assert_eq!(fw.unmatched_stops, vec![3], "stop-kill with no kill open");
    }
}
