//! The load balancer's distribution checker (`lb-distribution`): do the backends serve the
//! shares of the requests the configured weights promise?
//!
//! Input: a history whose ok completions name the backend that served them in `node` (the `lb`
//! role answers with the backend's id and the reference client records it), the configured
//! `(backend, weight)` list (equal weights for round robin), and the fault windows. Only ok
//! client operations that were invoked and completed outside every fault window, and outside a
//! `grace_ns` after each window's end, are counted: while a backend is down (or not yet
//! re-admitted by the health checks) the balancer rightly spreads its share over the others,
//! so those operations say nothing about the weights.
//!
//! Tolerance: backend `i` with expected share `p_i = w_i / Σw` and observed share `o_i` over
//! `n` counted operations passes when `|o_i − p_i| ≤ max(tolerance, z·√(p_i(1−p_i)/n))`.
//! The balancer's picks are exact (smooth weighted round robin gives each backend exactly its
//! weight in every `Σw` picks); what blurs the observed share is which of those picks end ok
//! (a `cas` that finds another value fails, whichever backend served it), a binomial thinning,
//! hence the `z·σ` term; `tolerance` (default 0.05) absorbs the rest (retries away from a
//! backend that just died, operations at window edges). The default `z` is 4.
//! With fewer than `samples_min` counted operations the verdict is unknown: a handful of
//! operations can neither confirm nor refute a share. The seed's naive weighted round robin
//! (bug `naive-weighted`) is far outside: 5:1:1 gives shares .94/.03/.03 for .71/.14/.14.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::{Event, EventType, Process};
use crate::Verdict;

/// How strict the checker is (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DistributionOptions {
    /// Time after each fault window's end during which operations are not counted.
    pub grace_ns: u64,
    /// Absolute share difference always allowed.
    pub tolerance: f64,
    /// Standard deviations of the binomial thinning allowed.
    pub z: f64,
    /// Fewer counted operations than this: unknown.
    pub samples_min: u64,
}

impl Default for DistributionOptions {
    fn default() -> Self {
        DistributionOptions { grace_ns: 2_000_000_000, tolerance: 0.05, z: 4.0, samples_min: 50 }
    }
}

/// One backend's expected and observed share.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendShare {
    pub backend: String,
    pub weight: u32,
    pub expected: f64,
    /// Counted ok operations it served.
    pub count: u64,
    pub observed: f64,
    /// The largest |observed − expected| allowed.
    pub allowed: f64,
    pub within: bool,
}

/// The checker's report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DistributionReport {
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub options: DistributionOptions,
    /// Counted ok operations (outside faults and grace, served by a configured backend).
    pub samples: u64,
    pub backends: Vec<BackendShare>,
    /// Ok operations by the `node` that answered, over the whole run (faults included).
    pub ok_by_node: BTreeMap<String, u64>,
    /// Ok operations not counted because they touched a fault window or its grace.
    pub excluded_near_faults: u64,
}

/// Judges the history's ok operations against `weights` (see the module docs); `windows` are
/// the fault windows `(start_ns, end_ns)`.
pub fn check_distribution(
    events: &[Event],
    weights: &[(String, u32)],
    windows: &[(u64, u64)],
    opts: DistributionOptions,
) -> DistributionReport {
    let tally = tally_ok_ops(events, weights, windows, opts);
    let samples: u64 = tally.counted.values().sum();
    let backends = backend_shares(weights, &tally.counted, samples, opts);
    let (verdict, reason) = judge_shares(weights, &backends, samples, opts);
    DistributionReport {
        verdict,
        reason,
        options: opts,
        samples,
        backends,
        ok_by_node: tally.ok_by_node,
        excluded_near_faults: tally.excluded,
    }
}

/// The history's ok operations, counted.
struct Tally<'w> {
    /// Ok operations by the `node` that answered (faults included).
    ok_by_node: BTreeMap<String, u64>,
    /// Counted ok operations per configured backend.
    counted: BTreeMap<&'w str, u64>,
    /// Ok operations of a configured backend not counted because they touched a fault window
    /// or its grace.
    excluded: u64,
}

/// Counts the ok client operations: per answering node, and per configured backend those
/// that touched no fault window nor its grace.
fn tally_ok_ops<'w>(
    events: &[Event],
    weights: &'w [(String, u32)],
    windows: &[(u64, u64)],
    opts: DistributionOptions,
) -> Tally<'w> {
    let near_fault = |t: u64| windows.iter().any(|&(s, e)| t >= s && t <= e.saturating_add(opts.grace_ns));
    let mut invoked: BTreeMap<Process, u64> = BTreeMap::new();
    let mut tally = Tally { ok_by_node: BTreeMap::new(), counted: BTreeMap::new(), excluded: 0 };
    for e in events.iter().filter(|e| e.process != Process::Nemesis) {
        if e.kind == EventType::Invoke {
            invoked.insert(e.process, e.time);
            continue;
        }
        let start = invoked.remove(&e.process);
        if e.kind != EventType::Ok {
            continue;
        }
        let Some(node) = e.node.as_deref() else {
            continue;
        };
        *tally.ok_by_node.entry(node.to_string()).or_default() += 1;
        let Some((id, _)) = weights.iter().find(|(id, _)| id == node) else {
            continue;
        };
        // An operation that overlaps a fault window or its grace is not counted, whether it
        // began or ended there (a window lying wholly inside the operation counts as touching).
        let overlaps =
            |s: u64, t: u64| windows.iter().any(|&(ws, we)| s <= we.saturating_add(opts.grace_ns) && t >= ws);
        let touched = match start {
            Some(s) => overlaps(s, e.time),
            None => near_fault(e.time),
        };
        if touched {
            tally.excluded += 1;
            continue;
        }
        *tally.counted.entry(id.as_str()).or_default() += 1;
    }
    tally
}

/// Per configured backend: its expected share (its weight over the total), its observed share
/// of the `samples` counted, and the deviation allowed (the tolerance, or `z` standard
/// deviations of a binomial share when that is larger).
fn backend_shares(
    weights: &[(String, u32)],
    counted: &BTreeMap<&str, u64>,
    samples: u64,
    opts: DistributionOptions,
) -> Vec<BackendShare> {
    let total_weight: f64 = weights.iter().map(|(_, w)| f64::from(*w)).sum();
    weights
        .iter()
        .map(|(id, w)| {
            let expected = if total_weight > 0.0 { f64::from(*w) / total_weight } else { 0.0 };
            let count = counted.get(id.as_str()).copied().unwrap_or(0);
            let observed = if samples > 0 { count as f64 / samples as f64 } else { 0.0 };
            let sigma = if samples > 0 { (expected * (1.0 - expected) / samples as f64).sqrt() } else { f64::INFINITY };
            let allowed = opts.tolerance.max(opts.z * sigma);
            BackendShare {
                backend: id.clone(),
                weight: *w,
                expected,
                count,
                observed,
                allowed,
                within: (observed - expected).abs() <= allowed,
            }
        })
        .collect()
}

/// The verdict: unknown without backends or with fewer than `samples_min` samples, invalid
/// when a backend's share is off by more than allowed (each named), else valid.
fn judge_shares(
    weights: &[(String, u32)],
    backends: &[BackendShare],
    samples: u64,
    opts: DistributionOptions,
) -> (Verdict, Option<String>) {
    if weights.is_empty() {
        return (Verdict::Unknown, Some("no backends configured".to_string()));
    }
    if samples < opts.samples_min {
        return (
            Verdict::Unknown,
            Some(format!(
                "only {samples} ok operations outside fault windows (and {} s after them); at least {} are needed to judge the shares",
                opts.grace_ns as f64 / 1e9,
                opts.samples_min
            )),
        );
    }
    let off: Vec<String> = backends
        .iter()
        .filter(|b| !b.within)
        .map(|b| {
            format!(
                "{} served {:.1}% ({} of {samples}), its weight {} promises {:.1}% ± {:.1}",
                b.backend,
                b.observed * 100.0,
                b.count,
                b.weight,
                b.expected * 100.0,
                b.allowed * 100.0
            )
        })
        .collect();
    if off.is_empty() {
        (Verdict::Valid, None)
    } else {
        (Verdict::Invalid, Some(format!("the distribution does not follow the weights: {}", off.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// A history of sequential ok operations (process 0), one every 10 ms, served by `nodes`.
    fn served(nodes: &[&str]) -> Vec<Event> {
        let mut out = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let t = i as u64 * 10_000_000;
            for (k, kind) in [(0, EventType::Invoke), (1, EventType::Ok)] {
                out.push(Event {
                    index: out.len() as u64,
                    time: t + k * 1_000_000,
                    kind,
                    process: Process::Client(0),
                    f: "read".into(),
                    key: Some("k".into()),
                    value: Value::Null,
                    error: None,
                    node: Some(if kind == EventType::Invoke { "n1".into() } else { n.to_string() }),
                });
            }
        }
        out
    }

    fn weights(w: &[u32]) -> Vec<(String, u32)> {
        w.iter().enumerate().map(|(i, w)| (format!("b{i}"), *w)).collect()
    }

    /// The pick sequence repeated `rounds` times.
    fn repeat(seq: &[&'static str], rounds: usize) -> Vec<&'static str> {
        seq.iter().copied().cycle().take(seq.len() * rounds).collect()
    }

    #[test]
    fn smooth_weighted_shares_are_valid() {
        let h = served(&repeat(&["b0", "b0", "b1", "b0", "b2", "b0", "b0"], 30));
        let r = check_distribution(&h, &weights(&[5, 1, 1]), &[], DistributionOptions::default());
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.samples, 210);
        assert_eq!(r.backends.iter().map(|b| b.count).collect::<Vec<_>>(), vec![150, 30, 30]);
    }

    #[test]
    fn the_naive_sketch_shares_are_invalid() {
        // 66:2:2 per 70 picks, as the seed's weighted round robin gives for 5:1:1.
        let mut seq = vec!["b0"; 66];
        seq.extend(["b1", "b1", "b2", "b2"]);
        let h = served(&repeat(&seq, 3));
        let r = check_distribution(&h, &weights(&[5, 1, 1]), &[], DistributionOptions::default());
        assert_eq!(r.verdict, Verdict::Invalid);
        let why = r.reason.unwrap();
        assert!(why.contains("b0 served 94.3%") && why.contains("promises 71.4%"), "{why}");
        // Equal weights (round robin) with the naive 20:6:4 per 30.
        let mut seq = vec!["b0"; 20];
        seq.extend(vec!["b1"; 6]);
        seq.extend(vec!["b2"; 4]);
        let r =
            check_distribution(&served(&repeat(&seq, 5)), &weights(&[1, 1, 1]), &[], DistributionOptions::default());
        assert_eq!(r.verdict, Verdict::Invalid);
    }

    #[test]
    fn tolerance_allows_small_deviations_only() {
        // 34:33:33 for equal weights: within 5 points.
        let mut seq = vec!["b0"; 34];
        seq.extend(vec!["b1"; 33]);
        seq.extend(vec!["b2"; 33]);
        let r =
            check_distribution(&served(&repeat(&seq, 4)), &weights(&[1, 1, 1]), &[], DistributionOptions::default());
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        // 45:30:25 over 1000 operations: b0 is 11.7 points over, beyond max(5, 4σ = 6).
        let mut seq = vec!["b0"; 45];
        seq.extend(vec!["b1"; 30]);
        seq.extend(vec!["b2"; 25]);
        let r =
            check_distribution(&served(&repeat(&seq, 10)), &weights(&[1, 1, 1]), &[], DistributionOptions::default());
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
    }

    #[test]
    fn operations_near_faults_are_not_counted() {
        // 100 ops on b0 only inside [0, 500 ms] + grace, then a fair rotation.
        let mut nodes = vec!["b0"; 100];
        nodes.extend(repeat(&["b0", "b1"], 100));
        let h = served(&nodes);
        let w = weights(&[1, 1]);
        let opts = DistributionOptions { grace_ns: 500_000_000, ..Default::default() };
        // Without the window the skew is seen...
        assert_eq!(check_distribution(&h, &w, &[], opts).verdict, Verdict::Invalid);
        // ...with it (0..500 ms, grace to 1 s: ops 0..=100 touch it) only the fair part counts.
        let r = check_distribution(&h, &w, &[(0, 500_000_000)], opts);
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.excluded_near_faults, 101);
        assert_eq!(r.ok_by_node["b0"], 200);
    }

    #[test]
    fn too_few_samples_is_unknown_and_other_nodes_are_reported_not_counted() {
        let h = served(&["b0", "b1", "stale-cache", "b0"]);
        let r = check_distribution(&h, &weights(&[1, 1]), &[], DistributionOptions::default());
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.reason.unwrap().contains("only 3 ok operations"));
        assert_eq!(r.ok_by_node["stale-cache"], 1);
        assert_eq!(check_distribution(&h, &[], &[], DistributionOptions::default()).verdict, Verdict::Unknown);
    }
}
