//! A target's availability promise, judged from the recorded history (issue 14: an
//! availability bug such as the router's `single-directory` was only a share in a plot).
//!
//! The promise: **the crash of one node that is not a front** (a `kill` window whose only node
//! is not one clients address) leaves the cluster serving, once it had time to fail over, at
//! least [`Promise::rate_of_usual_min`] of its usual rate of successful operations. "Once it
//! had time" is the window's second half (a Raft group elects a new leader well within 1.5 s,
//! half a default window); "usual" is the ok rate (ok completions a second) outside every window
//! of a fault that can take a node down (moves of shards count as usual time). A rate, not a
//! share of completions: requests that hang until their timeout complete rarely, so a share
//! computed over the few that do complete would hide the outage.
//!
//! A window is judged only from a serving cluster: the ok rate in the stretch of the same length
//! just before it must itself reach the floor (else the cluster was still recovering from the
//! previous fault, and the window would judge that). A window whose second half would hold
//! fewer than [`COMPLETIONS_MIN`] ok completions at the usual rate is not judged either. Only
//! kills are judged: a paused node holds connections open until each request's timeout, which a
//! correct router measured at 0.07 of its usual ok share in a pause of a group leader
//! (docs/targets.md, "Sharding router"), so a promise about pauses would judge the client's
//! timeouts, not the system. A run with no judged window is valid with the reason "not judged".

use faultline_checker::history::{Event, EventType, Process};
use faultline_checker::Verdict;
use serde_json::json;

use crate::analysis::Window;
use crate::workload::CheckerResult;

/// Fewest ok completions the usual rate must promise a judged window's second half.
pub const COMPLETIONS_MIN: f64 = 20.0;

/// What a target promises about the crash of one of its back nodes.
#[derive(Clone, Debug)]
pub struct Promise {
    /// Node ids clients address (a router): their crash stops every client by design.
    pub fronts: Vec<String>,
    /// The least ok rate, as a fraction of the usual one, in a judged window's second half.
    pub rate_of_usual_min: f64,
}

/// One judged window: its node, times (s) and ok rates as fractions of the usual rate.
struct Judged {
    node: String,
    start_s: f64,
    end_s: f64,
    before: f64,
    late: f64,
}

/// Families whose windows can take a node down or cut it off (not usual time).
fn takes_nodes(f: &str) -> bool {
    !matches!(f, "rebalance")
}

/// How many of the sorted times `oks` fall in `[from, to]`.
fn count_in(oks: &[u64], from: u64, to: u64) -> usize {
    oks.partition_point(|&t| t <= to) - oks.partition_point(|&t| t < from)
}

/// Ok completions per second over `[from, to]` (ns); `oks` sorted.
fn ok_rate(oks: &[u64], from: u64, to: u64) -> f64 {
    count_in(oks, from, to) as f64 / ((to.saturating_sub(from)) as f64 / 1e9).max(1e-9)
}

/// The usual ok rate and the seconds it covers: ok completions outside node-fault windows over
/// the time outside them, between the first and the last client completion. `oks` sorted; the
/// windows are merged first, so a day-long run's thousands of windows cost a sort and a binary
/// search each.
fn usual_rate(oks: &[u64], span: (u64, u64), windows: &[Window]) -> (f64, f64) {
    let mut cuts: Vec<(u64, u64)> = windows
        .iter()
        .filter(|w| takes_nodes(&w.f))
        .map(|w| (w.start_ns.max(span.0), w.end_ns.min(span.1)))
        .filter(|(a, b)| b >= a)
        .collect();
    cuts.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(cuts.len());
    for (a, b) in cuts {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let covered: u64 = merged.iter().map(|(a, b)| b - a).sum();
    let inside: usize = merged.iter().map(|&(a, b)| count_in(oks, a, b)).sum();
    let seconds = (span.1 - span.0).saturating_sub(covered) as f64 / 1e9;
    ((oks.len() - inside) as f64 / seconds.max(1e-9), seconds)
}

/// The promise judged over `events`.
pub fn check(events: &[Event], promise: &Promise) -> CheckerResult {
    if promise.fronts.is_empty() {
        // A history without its cluster: a crash of the front would pass for a back node's.
        let why = "not judged: the cluster's nodes are not known".to_string();
        return CheckerResult::new("availability-promise", Verdict::Valid, Some(why));
    }
    let windows = crate::analysis::fault_windows(events);
    let clients = || events.iter().filter(|e| e.process != Process::Nemesis && e.kind != EventType::Invoke);
    let mut oks: Vec<u64> = clients().filter(|e| e.kind == EventType::Ok).map(|e| e.time).collect();
    oks.sort_unstable();
    let span = (clients().map(|e| e.time).min().unwrap_or(0), clients().map(|e| e.time).max().unwrap_or(0));
    let (usual, usual_s) = usual_rate(&oks, span, &windows);
    let mut judged = Vec::new();
    let mut unsettled = 0;
    for w in windows.iter().filter(|w| w.f == "kill") {
        let Some(node) = lone_back_node(events, w.start_index, &promise.fronts) else { continue };
        let half_ns = (w.end_ns - w.start_ns) / 2;
        if usual * half_ns as f64 / 1e9 < COMPLETIONS_MIN {
            continue;
        }
        let before = ok_rate(&oks, w.start_ns.saturating_sub(half_ns), w.start_ns) / usual;
        if before < promise.rate_of_usual_min {
            unsettled += 1;
            continue;
        }
        let late = ok_rate(&oks, w.start_ns + half_ns, w.end_ns) / usual;
        let (start_s, end_s) = (w.start_ns as f64 / 1e9, w.end_ns as f64 / 1e9);
        judged.push(Judged { node, start_s, end_s, before, late });
    }
    verdict(promise, usual, usual_s, unsettled, &judged)
}

/// The node of the kill window started at history index `start_index`, when it killed one node
/// and that node is not a front.
fn lone_back_node(events: &[Event], start_index: u64, fronts: &[String]) -> Option<String> {
    // Indexes are dense from 0 (history.rs), so the event is at its index; a search only if not.
    let at = events.get(start_index as usize).filter(|e| e.index == start_index);
    let start = at.or_else(|| events.iter().find(|e| e.index == start_index))?;
    let nodes = start.value.get("nodes")?.as_array()?;
    match nodes.as_slice() {
        [one] => one.as_str().filter(|n| !fronts.iter().any(|f| f == n)).map(String::from),
        _ => None,
    }
}

fn verdict(promise: &Promise, usual: f64, usual_s: f64, unsettled: usize, judged: &[Judged]) -> CheckerResult {
    let min = promise.rate_of_usual_min;
    let windows: Vec<_> = judged
        .iter()
        .map(|j| {
            json!({"node": j.node, "start_s": j.start_s, "end_s": j.end_s, "rate_before": j.before,
                   "rate_late": j.late, "kept": j.late >= min})
        })
        .collect();
    let details = json!({"usual_ok_per_s": usual, "usual_s": usual_s, "rate_of_usual_min": min,
                         "not_judged_unsettled": unsettled, "windows": windows});
    let result = |verdict, reason: Option<String>| CheckerResult {
        name: "availability-promise".into(),
        verdict,
        reason,
        details: details.clone(),
    };
    if judged.is_empty() {
        let why = "not judged: no crash of one back node from a serving cluster with enough operations";
        return result(Verdict::Valid, Some(why.into()));
    }
    match judged.iter().find(|j| j.late < min) {
        Some(j) => result(
            Verdict::Invalid,
            Some(format!(
                "with {} crashed ({:.1}–{:.1} s) the second half of the window served {:.0} ok operations a second, {:.0}% of the usual {:.0}/s (it served {:.0}% just before): one node's crash should not take the service down (the promise: at least {:.0}%)",
                j.node,
                j.start_s,
                j.end_s,
                j.late * usual,
                100.0 * j.late,
                usual,
                100.0 * j.before,
                100.0 * min
            )),
        ),
        None => result(Verdict::Valid, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nem(time_s: f64, f: &str, nodes: &[&str]) -> Event {
        Event {
            index: 0,
            time: (time_s * 1e9).round() as u64,
            kind: EventType::Info,
            process: Process::Nemesis,
            f: f.into(),
            key: None,
            value: json!({"applied": true, "nodes": nodes, "kind": "one"}),
            error: None,
            node: None,
        }
    }

    /// Client completions, `per_s` a second from 0 to 20 s, 4 in 5 ok; a window of `family` on
    /// `nodes` from 10 to 13 s. In its second half (11.5–13 s) the ok rate is `late` of the
    /// usual one; `late_completions` says how many complete there (fewer: requests hang).
    /// With `unsettled`, nothing succeeds in the 1.5 s before the window.
    struct H {
        family: &'static str,
        nodes: &'static [&'static str],
        late: f64,
        late_completions: f64,
        unsettled: bool,
        per_s: usize,
    }

    const H0: H = H { family: "kill", nodes: &["n3"], late: 1.0, late_completions: 1.0, unsettled: false, per_s: 100 };

    fn history(h: &H) -> Vec<Event> {
        let mut ev =
            vec![nem(10.0, &format!("start-{}", h.family), h.nodes), nem(13.0, &format!("stop-{}", h.family), h.nodes)];
        for s in 0..20 * h.per_s {
            let t = s as f64 / h.per_s as f64;
            let (late, before) = ((11.5..=13.0).contains(&t), (8.5..10.0).contains(&t));
            // In the late half, keep `late_completions` of the completions, ok ones making
            // `late` of the usual ok rate (0.8 × per_s; needs 0.8 × late <= late_completions).
            let phase = (s % 50) as f64 / 50.0; // 1.5 s at 100/s: three whole cycles
            if late && phase >= h.late_completions {
                continue;
            }
            let ok = if late { phase < 0.8 * h.late } else { s % 5 != 0 && !(before && h.unsettled) };
            let kind = if ok { EventType::Ok } else { EventType::Fail };
            ev.push(Event {
                kind,
                process: Process::Client(s as u64 % 4),
                f: "read".into(),
                node: Some("n1".into()),
                ..nem(t, "", &[])
            });
        }
        ev.sort_by_key(|e| e.time);
        for (i, e) in ev.iter_mut().enumerate() {
            e.index = i as u64;
        }
        ev
    }

    fn promise() -> Promise {
        Promise { fronts: vec!["n1".into()], rate_of_usual_min: 0.7 }
    }

    fn judge(h: &H) -> CheckerResult {
        check(&history(h), &promise())
    }

    #[test]
    fn a_crash_that_keeps_the_usual_rate_is_kept_and_one_that_does_not_is_invalid() {
        let kept = judge(&H0);
        assert_eq!(kept.verdict, Verdict::Valid, "{kept:?}");
        assert_eq!(kept.details["windows"].as_array().unwrap().len(), 1, "{kept:?}");
        let r = judge(&H { late: 0.3, ..H0 });
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
        let why = r.reason.unwrap();
        assert!(why.contains("n3 crashed (10.0–13.0 s)") && why.contains("at least 70%"), "{why}");
        // Either side of the floor.
        assert_eq!(judge(&H { late: 0.75, ..H0 }).verdict, Verdict::Valid);
        assert_eq!(judge(&H { late: 0.65, ..H0 }).verdict, Verdict::Invalid);
    }

    /// Requests that hang until their timeout complete rarely: the few that complete may all be
    /// ok, yet the service served almost nothing.
    #[test]
    fn hanging_requests_are_an_outage_too() {
        let r = judge(&H { late: 0.1, late_completions: 0.1, ..H0 });
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
        assert_eq!(judge(&H { late: 0.0, late_completions: 0.05, ..H0 }).verdict, Verdict::Invalid);
    }

    #[test]
    fn fronts_pauses_several_nodes_thin_and_unsettled_windows_are_not_judged() {
        let cases = [
            H { nodes: &["n1"], late: 0.0, ..H0 },
            H { family: "pause", late: 0.0, ..H0 },
            H { nodes: &["n3", "n4"], late: 0.0, ..H0 },
            H { per_s: 10, late: 0.0, ..H0 },
            H { unsettled: true, late: 0.0, ..H0 },
        ];
        for h in &cases {
            let r = judge(h);
            assert_eq!(r.verdict, Verdict::Valid, "{} {:?} {}/s: {r:?}", h.family, h.nodes, h.per_s);
            assert!(r.reason.as_deref().unwrap_or("").starts_with("not judged"), "{r:?}");
        }
        assert_eq!(judge(&cases[4]).details["not_judged_unsettled"], 1);
        let unknown_fronts = Promise { fronts: vec![], ..promise() };
        let r = check(&history(&H { late: 0.0, ..H0 }), &unknown_fronts);
        assert_eq!(
            (r.verdict, r.reason.as_deref()),
            (Verdict::Valid, Some("not judged: the cluster's nodes are not known"))
        );
    }

    #[test]
    fn moves_count_as_usual_time_and_other_faults_do_not() {
        // A loss window from 2 to 8 s where nothing succeeds is not usual time: the usual rate
        // stays 80/s and a second half at 75% of it keeps the promise.
        let mut h = history(&H { late: 0.75, ..H0 });
        for e in h.iter_mut().filter(|e| e.process != Process::Nemesis && (2e9..=8e9).contains(&(e.time as f64))) {
            e.kind = EventType::Fail;
        }
        h.push(Event { index: 10_000, ..nem(2.0, "start-loss", &["n2"]) });
        h.push(Event { index: 10_001, ..nem(8.0, "stop-loss", &["n2"]) });
        h.sort_by_key(|e| e.time);
        let r = check(&h, &promise());
        assert_eq!(r.verdict, Verdict::Valid, "the loss window is not usual time: {r:?}");
        let usual = r.details["usual_ok_per_s"].as_f64().unwrap();
        assert!((usual - 80.0).abs() < 2.0, "{usual}");
        // The same failures inside a move window count: the usual rate drops.
        for e in h.iter_mut().filter(|e| e.f.ends_with("-loss")) {
            e.f = e.f.replace("loss", "rebalance");
        }
        let r = check(&h, &promise());
        assert!(r.details["usual_ok_per_s"].as_f64().unwrap() < 60.0, "{r:?}");
    }
}
