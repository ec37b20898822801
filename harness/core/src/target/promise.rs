//! A target's availability promise, judged from the recorded history (issue 14: an
//! availability bug such as the router's `single-directory` was only a share in a plot).
//!
//! The promise: **the crash of one node that is not a front** (a `kill` window whose only node
//! is not one clients address) leaves the cluster serving, after it had time to fail over, at
//! least [`Promise::share_of_baseline_min`] of its usual ok share. "After it had time" is the
//! window's second half (a Raft group elects a new leader well within 1.5 s, the half of a
//! default window); "usual" is the ok share of completions outside every window of a fault
//! that can take a node down (moves of shards count as usual time). Only kills are judged: a
//! paused node holds connections open until each request's timeout, which a correct router
//! measured 0.07 of its usual share in a pause of a group leader (see docs/targets.md,
//! "Detection"), so a promise about pauses would judge the client's timeouts, not the system.
//!
//! A window with fewer than [`COMPLETIONS_MIN`] completions in its second half is not judged
//! (its share says little); a run with no judged window is valid with the reason "not judged".

use faultline_checker::history::{Event, EventType, Process};
use faultline_checker::Verdict;
use serde_json::json;

use crate::workload::CheckerResult;

/// Fewest completions a window's second half (and the usual time) needs to be judged.
pub const COMPLETIONS_MIN: usize = 20;

/// What a target promises about the crash of one of its back nodes.
#[derive(Clone, Debug)]
pub struct Promise {
    /// Node ids clients address (a router): their crash stops every client by design.
    pub fronts: Vec<String>,
    /// The least ok share, as a fraction of the usual one, in a judged window's second half.
    pub share_of_baseline_min: f64,
}

/// One judged window.
struct Judged {
    node: String,
    start_s: f64,
    end_s: f64,
    completions: usize,
    share: f64,
}

/// Families whose windows can take a node down or cut it off (not usual time).
fn takes_nodes(f: &str) -> bool {
    !matches!(f, "rebalance")
}

fn ok_share(events: &[&Event]) -> f64 {
    let ok = events.iter().filter(|e| e.kind == EventType::Ok).count();
    ok as f64 / events.len().max(1) as f64
}

/// The promise judged over `events`.
pub fn check(events: &[Event], promise: &Promise) -> CheckerResult {
    if promise.fronts.is_empty() {
        // A history without its cluster: a crash of the front would pass for a back node's.
        let why = "not judged: the cluster's nodes are not known".to_string();
        return CheckerResult::new("availability-promise", Verdict::Valid, Some(why));
    }
    let windows = crate::analysis::fault_windows(events);
    let completions: Vec<&Event> =
        events.iter().filter(|e| e.process != Process::Nemesis && e.kind != EventType::Invoke).collect();
    let usual: Vec<&Event> = completions
        .iter()
        .copied()
        .filter(|e| !windows.iter().any(|w| takes_nodes(&w.f) && e.time >= w.start_ns && e.time <= w.end_ns))
        .collect();
    let baseline = ok_share(&usual);
    let mut judged = Vec::new();
    for w in windows.iter().filter(|w| w.f == "kill") {
        let Some(node) = lone_back_node(events, w.start_index, &promise.fronts) else { continue };
        let half = w.start_ns + (w.end_ns - w.start_ns) / 2;
        let late: Vec<&Event> = completions.iter().copied().filter(|e| e.time >= half && e.time <= w.end_ns).collect();
        if late.len() >= COMPLETIONS_MIN {
            let (start_s, end_s) = (w.start_ns as f64 / 1e9, w.end_ns as f64 / 1e9);
            judged.push(Judged { node, start_s, end_s, completions: late.len(), share: ok_share(&late) });
        }
    }
    verdict(promise, baseline, usual.len(), &judged)
}

/// The node of the kill window started at history index `start_index`, when it killed one node
/// and that node is not a front.
fn lone_back_node(events: &[Event], start_index: u64, fronts: &[String]) -> Option<String> {
    let start = events.iter().find(|e| e.index == start_index)?;
    let nodes = start.value.get("nodes")?.as_array()?;
    match nodes.as_slice() {
        [one] => one.as_str().filter(|n| !fronts.iter().any(|f| f == n)).map(String::from),
        _ => None,
    }
}

fn verdict(promise: &Promise, baseline: f64, usual: usize, judged: &[Judged]) -> CheckerResult {
    let floor = promise.share_of_baseline_min * baseline;
    let windows: Vec<_> = judged
        .iter()
        .map(|j| {
            json!({"node": j.node, "start_s": j.start_s, "end_s": j.end_s, "completions": j.completions,
                        "ok_share": j.share, "kept": j.share >= floor})
        })
        .collect();
    let details = json!({"usual_ok_share": baseline, "usual_completions": usual,
                         "share_of_baseline_min": promise.share_of_baseline_min, "windows": windows});
    let result = |verdict, reason: Option<String>| CheckerResult {
        name: "availability-promise".into(),
        verdict,
        reason,
        details: details.clone(),
    };
    if judged.is_empty() || usual < COMPLETIONS_MIN {
        let why = if judged.is_empty() {
            "not judged: no crash of one back node with enough operations after its failover"
        } else {
            "not judged: too few operations outside fault windows to know the usual ok share"
        };
        return result(Verdict::Valid, Some(why.into()));
    }
    match judged.iter().find(|j| j.share < floor) {
        Some(j) => result(
            Verdict::Invalid,
            Some(format!(
                "with {} crashed ({:.1}–{:.1} s) the second half of the window served {:.0}% ok of {} operations, below {:.0}% of the usual {:.0}%: one node's crash should not take the service down",
                j.node,
                j.start_s,
                j.end_s,
                100.0 * j.share,
                j.completions,
                100.0 * promise.share_of_baseline_min,
                100.0 * baseline
            )),
        ),
        None => result(Verdict::Valid, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nem(index: u64, time_s: f64, f: &str, nodes: &[&str]) -> Event {
        Event {
            index,
            time: (time_s * 1e9) as u64,
            kind: EventType::Info,
            process: Process::Nemesis,
            f: f.into(),
            key: None,
            value: json!({"applied": true, "nodes": nodes, "kind": "one"}),
            error: None,
            node: None,
        }
    }

    /// A history of `n` completions a second from 0 to 20 s, a window of `family` on `nodes` from
    /// 10 to 13 s, inside which the second half (11.5–13 s) succeeds with probability `late_ok`
    /// (every other completion succeeds outside it, 4 in 5 everywhere else).
    fn history(family: &str, nodes: &[&str], late_ok: f64, per_s: usize) -> Vec<Event> {
        let mut ev = Vec::new();
        let mut i = 0u64;
        let mut push = |ev: &mut Vec<Event>, e: Event| {
            ev.push(Event { index: i, ..e });
            i += 1;
        };
        let steps = 20 * per_s;
        for s in 0..steps {
            let t = s as f64 / per_s as f64;
            if (t - 10.0).abs() < 1e-9 {
                push(&mut ev, nem(0, 10.0, &format!("start-{family}"), nodes));
            }
            if (t - 13.0).abs() < 1e-9 {
                push(&mut ev, nem(0, 13.0, &format!("stop-{family}"), nodes));
            }
            let late = (11.5..=13.0).contains(&t);
            let ok = if late { (s % 50) as f64 / 50.0 < late_ok } else { s % 5 != 0 };
            let kind = if ok { EventType::Ok } else { EventType::Fail };
            let e = Event {
                kind,
                process: Process::Client(s as u64 % 4),
                f: "read".into(),
                node: Some("n1".into()),
                ..nem(0, t, "", &[])
            };
            push(&mut ev, e);
        }
        ev
    }

    fn promise() -> Promise {
        Promise { fronts: vec!["n1".into()], share_of_baseline_min: 0.8 }
    }

    #[test]
    fn a_crash_that_keeps_the_usual_share_is_kept_and_one_that_does_not_is_invalid() {
        let kept = check(&history("kill", &["n3"], 0.8, 100), &promise());
        assert_eq!(kept.verdict, Verdict::Valid, "{kept:?}");
        assert_eq!(kept.details["windows"].as_array().unwrap().len(), 1);
        let r = check(&history("kill", &["n3"], 0.3, 100), &promise());
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
        let why = r.reason.unwrap();
        assert!(why.contains("n3 crashed (10.0–13.0 s)") && why.contains("below 80%"), "{why}");
        // Just above and just below the floor (0.8 × 0.8 = 64%).
        assert_eq!(check(&history("kill", &["n3"], 0.66, 100), &promise()).verdict, Verdict::Valid);
        assert_eq!(check(&history("kill", &["n3"], 0.60, 100), &promise()).verdict, Verdict::Invalid);
    }

    #[test]
    fn fronts_pauses_several_nodes_and_thin_windows_are_not_judged() {
        for (family, nodes, per_s) in [
            ("kill", &["n1"][..], 100),
            ("pause", &["n3"][..], 100),
            ("kill", &["n3", "n4"][..], 100),
            ("kill", &["n3"][..], 10),
        ] {
            let r = check(&history(family, nodes, 0.0, per_s), &promise());
            assert_eq!(r.verdict, Verdict::Valid, "{family} {nodes:?} {per_s}/s: {r:?}");
            assert!(r.reason.as_deref().unwrap_or("").starts_with("not judged"), "{r:?}");
        }
        let unknown_fronts = Promise { fronts: vec![], ..promise() };
        let r = check(&history("kill", &["n3"], 0.0, 100), &unknown_fronts);
        assert_eq!(
            (r.verdict, r.reason.as_deref()),
            (Verdict::Valid, Some("not judged: the cluster's nodes are not known"))
        );
    }

    #[test]
    fn moves_count_as_usual_time_and_other_faults_do_not() {
        // A loss window from 2 to 8 s where nothing succeeds: not usual time, so the usual share
        // stays 80% and a 70% second half keeps the promise (floor 64%).
        let mut h = history("kill", &["n3"], 0.7, 100);
        for e in h.iter_mut().filter(|e| e.process != Process::Nemesis && (2e9..=8e9).contains(&(e.time as f64))) {
            e.kind = EventType::Fail;
        }
        let start = Event { index: 10_000, ..nem(0, 2.0, "start-loss", &["n2"]) };
        let stop = Event { index: 10_001, ..nem(0, 8.0, "stop-loss", &["n2"]) };
        let at = h.iter().position(|e| e.time >= 2_000_000_000).unwrap();
        h.insert(at, start);
        let at = h.iter().position(|e| e.time >= 8_000_000_000).unwrap();
        h.insert(at, stop);
        assert_eq!(check(&h, &promise()).verdict, Verdict::Valid, "the loss window is not usual time");
        // The same failures inside a move window count: the usual share drops, so does the floor.
        for e in h.iter_mut().filter(|e| e.f.ends_with("-loss")) {
            e.f = e.f.replace("loss", "rebalance");
        }
        let r = check(&h, &promise());
        assert!(r.details["usual_ok_share"].as_f64().unwrap() < 0.6, "{r:?}");
    }
}
