//! The set checker, after Jepsen's `set-full`: judges a history of `add` (value: the element,
//! an integer) and `read` (ok value: the array of elements) operations per key, where the
//! final reads (invoked after the `heal`) come from every node.
//!
//! Each element added is classified:
//! - **ok**: present in every final read (whether its add was acknowledged or indeterminate);
//! - **lost**: its add was acknowledged (ok) but some final read lacks it — invalid;
//! - **divergent**: its add was indeterminate, and some final reads have it but others do
//!   not: after heal and quiescence the replicas disagree — invalid;
//! - **never-read**: its add was indeterminate or failed and no final read has it — allowed;
//! - **unexpected**: read somewhere but never added (or only by adds that definitely failed) —
//!   invalid.
//!
//! Weaker systems may serve stale reads: an ok element is **stale** when some read invoked
//! after its add was acknowledged lacked it. That is reported, not judged (an eventually
//! consistent set promises convergence, not recency). The **visibility latency** of an ok
//! element is how long after its add was acknowledged some read still lacked it: from the
//! add's completion to the completion of the last read (invoked after the add's invocation)
//! that did not include it; 0 if none. Without a final read from every node (the nodes are
//! those named by the history's client events) a key is undecided (`unknown`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::convergence::{client_ops, nodes_seen, ClientOp, Outcome};
use crate::{HistoryError, Verdict};

/// What became of one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ElementStatus {
    Ok,
    Lost,
    Divergent,
    NeverRead,
    Unexpected,
}

/// Elements listed per status in a report at most (the counts are always complete).
pub const LISTED_MAX: usize = 50;

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub n: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    pub fn of(mut ns: Vec<u64>) -> Latency {
        ns.sort_unstable();
        let q = |p: f64| -> Option<f64> {
            if ns.is_empty() {
                return None;
            }
            let i = ((ns.len() as f64 - 1.0) * p).round() as usize;
            Some(ns[i] as f64 / 1e6)
        };
        Latency { n: ns.len(), p50_ms: q(0.5), p90_ms: q(0.9), p99_ms: q(0.99), max_ms: q(1.0) }
    }
}

/// One key's classification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetKeyReport {
    pub key: Option<String>,
    pub verdict: Verdict,
    pub reason: Option<String>,
    /// Elements per status.
    pub counts: BTreeMap<ElementStatus, usize>,
    /// Up to [`LISTED_MAX`] elements per status other than ok.
    pub examples: BTreeMap<ElementStatus, Vec<i64>>,
    pub stale: usize,
    pub stale_examples: Vec<i64>,
    /// Nodes with an ok final read of this key.
    pub final_read_nodes: Vec<String>,
    pub visibility: Latency,
}

/// The set checker's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetReport {
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub ok: usize,
    pub lost: usize,
    pub divergent: usize,
    pub never_read: usize,
    pub unexpected: usize,
    pub stale: usize,
    pub attempted: usize,
    pub acknowledged: usize,
    /// How long acknowledged elements took to be visible in every read (all keys).
    pub visibility: Latency,
    pub keys: Vec<SetKeyReport>,
}

struct Read<'a> {
    op: &'a ClientOp,
    /// Sorted and deduplicated: a read of a large set costs 8 bytes per element, not a tree.
    elements: Vec<i64>,
}

impl Read<'_> {
    fn contains(&self, e: i64) -> bool {
        self.elements.binary_search(&e).is_ok()
    }
}

fn int(op: &ClientOp, v: &Value, what: &str) -> Result<i64, HistoryError> {
    v.as_i64().ok_or_else(|| HistoryError {
        position: op.position,
        index: op.index,
        expected: format!("{what}: an integer"),
        found: v.to_string(),
    })
}

fn elements(op: &ClientOp) -> Result<Vec<i64>, HistoryError> {
    let arr = op.value.as_array().ok_or_else(|| HistoryError {
        position: op.position,
        index: op.index,
        expected: "a read's value: an array of integers".into(),
        found: op.value.to_string(),
    })?;
    let mut v = arr.iter().map(|v| int(op, v, "a read element")).collect::<Result<Vec<i64>, _>>()?;
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

#[derive(Default)]
struct Adds {
    /// Earliest invocation of an add of the element.
    invoke_ns: u64,
    /// Earliest acknowledgement (ok completion), if any.
    ok_ns: Option<u64>,
    /// Some add is indeterminate (info or never completed).
    info: bool,
}

fn check_key(
    key: &Option<String>,
    ops: &[&ClientOp],
    nodes: &BTreeSet<String>,
) -> Result<(SetKeyReport, Vec<u64>), HistoryError> {
    let (adds, reads) = adds_and_reads(ops)?;
    // The last ok final read of each node.
    let mut finals: BTreeMap<&str, &Read> = BTreeMap::new();
    for r in reads.iter().filter(|r| r.op.is_final) {
        if let Some(n) = &r.op.node {
            finals.insert(n.as_str(), r);
        }
    }
    let missing: Vec<&String> = nodes.iter().filter(|n| !finals.contains_key(n.as_str())).collect();
    let read_anywhere: BTreeSet<i64> = reads.iter().flat_map(|r| r.elements.iter().copied()).collect();
    let mut status: BTreeMap<i64, ElementStatus> = BTreeMap::new();
    let mut stale = Vec::new();
    let mut latencies = Vec::new();
    for (&e, a) in &adds {
        let s = element_status(e, a, &finals, &read_anywhere);
        if s == ElementStatus::Ok {
            if let Some(ok_ns) = a.ok_ns {
                if reads.iter().any(|r| r.op.invoke_ns > ok_ns && !r.contains(e)) {
                    stale.push(e);
                }
                let last_missing = reads
                    .iter()
                    .filter(|r| r.op.invoke_ns >= a.invoke_ns && !r.contains(e))
                    .filter_map(|r| r.op.complete_ns)
                    .max();
                latencies.push(last_missing.map_or(0, |t| t.saturating_sub(ok_ns)));
            }
        }
        status.insert(e, s);
    }
    for &e in &read_anywhere {
        status.entry(e).or_insert(ElementStatus::Unexpected);
    }
    let (counts, examples) = tally(&status);
    let (verdict, reason) = key_verdict(&counts, &examples, &missing);
    let stale_n = stale.len();
    stale.truncate(LISTED_MAX);
    let report = SetKeyReport {
        key: key.clone(),
        verdict,
        reason,
        counts,
        examples,
        stale: stale_n,
        stale_examples: stale,
        final_read_nodes: finals.keys().map(|s| s.to_string()).collect(),
        visibility: Latency::of(latencies.clone()),
    };
    Ok((report, latencies))
}

/// A key's adds by element (earliest invocation, first acknowledgement, any indeterminate
/// attempt) and its ok reads.
fn adds_and_reads<'a>(ops: &[&'a ClientOp]) -> Result<(BTreeMap<i64, Adds>, Vec<Read<'a>>), HistoryError> {
    let mut adds: BTreeMap<i64, Adds> = BTreeMap::new();
    let mut reads: Vec<Read> = Vec::new();
    for op in ops {
        match op.f.as_str() {
            "add" => {
                let e = int(op, &op.invoke_value, "an add's value")?;
                let a = adds.entry(e).or_insert_with(|| Adds { invoke_ns: op.invoke_ns, ..Adds::default() });
                a.invoke_ns = a.invoke_ns.min(op.invoke_ns);
                match op.outcome {
                    Outcome::Ok => {
                        let t = op.complete_ns.unwrap_or(op.invoke_ns);
                        a.ok_ns = Some(a.ok_ns.map_or(t, |o| o.min(t)));
                    }
                    Outcome::Info => a.info = true,
                    Outcome::Fail => {}
                }
            }
            "read" if op.outcome == Outcome::Ok => reads.push(Read { op, elements: elements(op)? }),
            _ => {}
        }
    }
    Ok((adds, reads))
}

/// What became of one added element, judged by the nodes' final reads.
fn element_status(e: i64, a: &Adds, finals: &BTreeMap<&str, &Read>, read_anywhere: &BTreeSet<i64>) -> ElementStatus {
    let in_finals = finals.values().filter(|r| r.contains(e)).count();
    let everywhere = in_finals == finals.len() && !finals.is_empty();
    if a.ok_ns.is_some() {
        if finals.is_empty() {
            ElementStatus::NeverRead
        } else if everywhere {
            ElementStatus::Ok
        } else {
            ElementStatus::Lost
        }
    } else if a.info {
        match in_finals {
            0 => ElementStatus::NeverRead,
            _ if everywhere => ElementStatus::Ok,
            _ => ElementStatus::Divergent,
        }
    } else if in_finals > 0 || read_anywhere.contains(&e) {
        // Every add of it definitely failed, yet it was read.
        ElementStatus::Unexpected
    } else {
        ElementStatus::NeverRead
    }
}

/// Counts per status, and up to [`LISTED_MAX`] example elements of each status but ok.
fn tally(status: &BTreeMap<i64, ElementStatus>) -> (BTreeMap<ElementStatus, usize>, BTreeMap<ElementStatus, Vec<i64>>) {
    let mut counts: BTreeMap<ElementStatus, usize> = BTreeMap::new();
    let mut examples: BTreeMap<ElementStatus, Vec<i64>> = BTreeMap::new();
    for (&e, &s) in status {
        *counts.entry(s).or_insert(0) += 1;
        if s != ElementStatus::Ok {
            let l = examples.entry(s).or_default();
            if l.len() < LISTED_MAX {
                l.push(e);
            }
        }
    }
    (counts, examples)
}

/// Invalid on a lost, divergent or unexpected element; unknown without every node's final
/// read; else valid.
fn key_verdict(
    counts: &BTreeMap<ElementStatus, usize>,
    examples: &BTreeMap<ElementStatus, Vec<i64>>,
    missing: &[&String],
) -> (Verdict, Option<String>) {
    let c = |s| counts.get(&s).copied().unwrap_or(0);
    if c(ElementStatus::Lost) + c(ElementStatus::Divergent) + c(ElementStatus::Unexpected) > 0 {
        let mut parts = Vec::new();
        for (s, what) in [
            (ElementStatus::Lost, "acknowledged but missing from a final read"),
            (ElementStatus::Divergent, "in some final reads but not all"),
            (ElementStatus::Unexpected, "read but never added"),
        ] {
            if c(s) > 0 {
                parts.push(format!("{} {what} (e.g. {:?})", c(s), &examples[&s][..examples[&s].len().min(5)]));
            }
        }
        (Verdict::Invalid, Some(parts.join("; ")))
    } else if !missing.is_empty() {
        let m: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        (Verdict::Unknown, Some(format!("no ok final read from {}", m.join(", "))))
    } else {
        (Verdict::Valid, None)
    }
}

/// Checks a set history; a malformed one (wrong value shapes, bad pairing) gives `unknown`
/// with the reason naming the event.
pub fn check_set(events: &[crate::history::Event]) -> SetReport {
    match try_check_set(events) {
        Ok(r) => r,
        Err(e) => SetReport {
            verdict: Verdict::Unknown,
            reason: Some(format!("malformed history: {e}")),
            ok: 0,
            lost: 0,
            divergent: 0,
            never_read: 0,
            unexpected: 0,
            stale: 0,
            attempted: 0,
            acknowledged: 0,
            visibility: Latency::default(),
            keys: vec![],
        },
    }
}

/// Like [`check_set`], with a malformed history as an error.
pub fn try_check_set(events: &[crate::history::Event]) -> Result<SetReport, HistoryError> {
    let ops = client_ops(events)?;
    let nodes = nodes_seen(&ops);
    let mut by_key: BTreeMap<Option<String>, Vec<&ClientOp>> = BTreeMap::new();
    for o in &ops {
        by_key.entry(o.key.clone()).or_default().push(o);
    }
    let mut keys = Vec::new();
    let mut all_lat = Vec::new();
    for (k, ops) in &by_key {
        let (r, lat) = check_key(k, ops, &nodes)?;
        all_lat.extend(lat);
        keys.push(r);
    }
    let sum = |s: ElementStatus| keys.iter().map(|k| k.counts.get(&s).copied().unwrap_or(0)).sum::<usize>();
    let verdict = keys.iter().fold(Verdict::Valid, |v, k| v.combine(k.verdict));
    let mut reason = keys.iter().find(|k| k.verdict == verdict && verdict != Verdict::Valid).map(|k| {
        format!(
            "key {:?}: {}",
            k.key.clone().unwrap_or_else(|| "(no key)".into()),
            k.reason.clone().unwrap_or_default()
        )
    });
    // No successful operation: nothing was judged, so never "valid".
    let verdict = if verdict == Verdict::Valid && !ops.iter().any(|o| o.outcome == Outcome::Ok) {
        reason = Some("no successful operation: nothing to judge".into());
        Verdict::Unknown
    } else {
        verdict
    };
    let adds: Vec<&&ClientOp> = by_key.values().flatten().filter(|o| o.f == "add").collect();
    let attempted =
        adds.iter().filter_map(|o| o.invoke_value.as_i64().map(|e| (o.key.clone(), e))).collect::<BTreeSet<_>>().len();
    let acknowledged = adds
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| o.invoke_value.as_i64().map(|e| (o.key.clone(), e)))
        .collect::<BTreeSet<_>>()
        .len();
    Ok(SetReport {
        verdict,
        reason,
        ok: sum(ElementStatus::Ok),
        lost: sum(ElementStatus::Lost),
        divergent: sum(ElementStatus::Divergent),
        never_read: sum(ElementStatus::NeverRead),
        unexpected: sum(ElementStatus::Unexpected),
        stale: keys.iter().map(|k| k.stale).sum(),
        attempted,
        acknowledged,
        visibility: Latency::of(all_lat),
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Event, EventType, Process};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    const NODES: usize = 3;

    /// The ground truth of a simulated run, what the checker must find.
    #[derive(Default, Debug)]
    struct Truth {
        lost: BTreeSet<i64>,
        divergent: BTreeSet<i64>,
        unexpected: BTreeSet<i64>,
        ok: BTreeSet<i64>,
        never_read: BTreeSet<i64>,
    }

    struct Sim {
        h: Vec<Event>,
        t: u64,
        next_process: u64,
    }

    impl Sim {
        fn push(&mut self, kind: EventType, p: u64, f: &str, value: Value, node: usize) {
            self.t += 1_000_000;
            let node = Some(format!("n{node}"));
            self.h.push(Event {
                index: self.h.len() as u64,
                time: self.t,
                kind,
                process: Process::Client(p),
                f: f.into(),
                key: Some("s".into()),
                value,
                error: None,
                node,
            });
        }
    }

    /// A simulated eventually consistent set on 3 replicas with injected faults of known effect:
    /// acked adds dropped (lost), elements withheld from one replica after the heal (lost if
    /// acked, divergent if indeterminate), phantom elements in reads (unexpected).
    fn simulate(seed: u64) -> (Vec<Event>, Truth) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sim = Sim { h: Vec::new(), t: 0, next_process: 0 };
        let mut replicas: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); NODES];
        let mut truth = Truth::default();
        let mut acked = BTreeSet::new();
        let mut applied = BTreeSet::new();
        let mut phantoms = BTreeSet::new();
        let mut next_e = 0i64;
        for _ in 0..rng.random_range(5..40) {
            let n = rng.random_range(0..NODES);
            let p = sim.next_process;
            match rng.random_range(0..10) {
                0..=4 => {
                    let e = next_e;
                    next_e += 1;
                    sim.push(EventType::Invoke, p, "add", json!(e), n);
                    match rng.random_range(0..10) {
                        0..=5 => {
                            replicas[n].insert(e);
                            applied.insert(e);
                            acked.insert(e);
                            sim.push(EventType::Ok, p, "add", json!(e), n);
                        }
                        6 => {
                            // The bug: acknowledged, never applied.
                            acked.insert(e);
                            truth.lost.insert(e);
                            sim.push(EventType::Ok, p, "add", json!(e), n);
                        }
                        7 => {
                            replicas[n].insert(e);
                            applied.insert(e);
                            sim.push(EventType::Info, p, "add", json!(e), n);
                            sim.next_process += 1;
                        }
                        8 => {
                            sim.push(EventType::Info, p, "add", json!(e), n);
                            sim.next_process += 1;
                        }
                        _ => sim.push(EventType::Fail, p, "add", json!(e), n),
                    }
                }
                5..=7 => {
                    sim.push(EventType::Invoke, p, "read", Value::Null, n);
                    let mut seen: Vec<i64> = replicas[n].iter().copied().collect();
                    if rng.random_range(0..15) == 0 {
                        let ph = 1000 + rng.random_range(0..5);
                        phantoms.insert(ph);
                        seen.push(ph);
                    }
                    sim.push(EventType::Ok, p, "read", json!(seen), n);
                }
                _ => {
                    let (a, b) = (rng.random_range(0..NODES), rng.random_range(0..NODES));
                    let s = replicas[a].clone();
                    replicas[b].extend(s);
                }
            }
        }
        sim.t += 1_000_000;
        sim.h.push(Event {
            index: sim.h.len() as u64,
            time: sim.t,
            kind: EventType::Info,
            process: Process::Nemesis,
            f: "heal".into(),
            key: None,
            value: json!({}),
            error: None,
            node: None,
        });
        // Quiescence: full exchange, except an element withheld from one replica.
        let all: BTreeSet<i64> = replicas.iter().flatten().copied().collect();
        for r in replicas.iter_mut() {
            *r = all.clone();
        }
        if rng.random_range(0..3) == 0 {
            if let Some(&e) = all.iter().nth(rng.random_range(0..all.len().max(1)).min(all.len().saturating_sub(1))) {
                let victim = rng.random_range(0..NODES);
                replicas[victim].remove(&e);
                if acked.contains(&e) {
                    truth.lost.insert(e);
                } else {
                    truth.divergent.insert(e);
                }
            }
        }
        for (n, r) in replicas.iter().enumerate() {
            let p = 10_000 + n as u64;
            sim.push(EventType::Invoke, p, "read", Value::Null, n);
            sim.push(EventType::Ok, p, "read", json!(r.iter().copied().collect::<Vec<_>>()), n);
        }
        for e in 0..next_e {
            if truth.lost.contains(&e) || truth.divergent.contains(&e) {
                continue;
            }
            if applied.contains(&e) {
                truth.ok.insert(e);
            } else {
                truth.never_read.insert(e);
            }
        }
        truth.unexpected = phantoms;
        (sim.h, truth)
    }

    fn listed(k: &SetKeyReport, s: ElementStatus) -> BTreeSet<i64> {
        k.examples.get(&s).cloned().unwrap_or_default().into_iter().collect()
    }

    /// The checker finds exactly the simulated ground truth, over many seeded runs.
    #[test]
    fn classification_matches_the_simulated_ground_truth() {
        let mut invalid = 0;
        for seed in 0..3000 {
            let (h, truth) = simulate(seed);
            let r = try_check_set(&h).unwrap();
            let k = &r.keys[0];
            assert_eq!(listed(k, ElementStatus::Lost), truth.lost, "seed {seed}");
            assert_eq!(listed(k, ElementStatus::Divergent), truth.divergent, "seed {seed}");
            assert_eq!(listed(k, ElementStatus::Unexpected), truth.unexpected, "seed {seed}");
            assert_eq!(listed(k, ElementStatus::NeverRead), truth.never_read, "seed {seed}");
            assert_eq!(r.ok, truth.ok.len(), "seed {seed}");
            let bad = !(truth.lost.is_empty() && truth.divergent.is_empty() && truth.unexpected.is_empty());
            let nodes_used = nodes_seen(&client_ops(&h).unwrap()).len();
            let want = if bad {
                Verdict::Invalid
            } else if nodes_used > NODES {
                unreachable!()
            } else {
                Verdict::Valid
            };
            assert_eq!(r.verdict, want, "seed {seed}: {:?}", r.reason);
            invalid += bad as usize;
        }
        assert!(invalid > 300 && invalid < 2700, "both verdicts exercised: {invalid} invalid of 3000");
    }

    fn e(index: u64, ms: u64, kind: EventType, p: u64, f: &str, value: Value, node: &str) -> Event {
        Event {
            index,
            time: ms * 1_000_000,
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some("s".into()),
            value,
            error: None,
            node: Some(node.into()),
        }
    }

    #[test]
    fn stale_reads_are_reported_with_the_visibility_latency_but_not_judged() {
        use EventType::*;
        let h = vec![
            e(0, 0, Invoke, 0, "add", json!(7), "n1"),
            e(1, 10, Ok, 0, "add", json!(7), "n1"),
            e(2, 20, Invoke, 1, "read", Value::Null, "n2"),
            e(3, 30, Ok, 1, "read", json!([]), "n2"), // stale: 20 ms after the ack
            e(4, 40, Invoke, 1, "read", Value::Null, "n2"),
            e(5, 50, Ok, 1, "read", json!([7]), "n2"),
            Event {
                index: 6,
                time: 60_000_000,
                kind: Info,
                process: Process::Nemesis,
                f: "heal".into(),
                key: None,
                value: json!({}),
                error: None,
                node: None,
            },
            e(7, 70, Invoke, 5, "read", Value::Null, "n1"),
            e(8, 80, Ok, 5, "read", json!([7]), "n1"),
            e(9, 90, Invoke, 6, "read", Value::Null, "n2"),
            e(10, 100, Ok, 6, "read", json!([7]), "n2"),
        ];
        let r = try_check_set(&h).unwrap();
        assert_eq!(r.verdict, Verdict::Valid, "{:?}", r.reason);
        assert_eq!((r.ok, r.stale), (1, 1));
        assert_eq!(r.visibility.max_ms, Some(20.0), "missing until the stale read completed at 30 ms");
        // Without n2's final read the key is undecided, not valid.
        let r = try_check_set(&h[..9]).unwrap();
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.reason.unwrap().contains("n2"));
    }

    #[test]
    fn bad_shapes_are_errors_naming_the_event() {
        use EventType::*;
        let h = vec![e(0, 0, Invoke, 0, "read", Value::Null, "n1"), e(1, 1, Ok, 0, "read", json!("x"), "n1")];
        let err = try_check_set(&h).unwrap_err();
        assert_eq!(err.index, 0);
        assert!(err.to_string().contains("array of integers"), "{err}");
        assert_eq!(check_set(&h).verdict, Verdict::Unknown);
        let h = vec![e(0, 0, Invoke, 0, "add", json!("x"), "n1")];
        assert!(try_check_set(&h).unwrap_err().to_string().contains("integer"));
    }

    #[test]
    fn a_history_without_a_successful_operation_is_unknown_not_valid() {
        let r = check_set(&[]);
        assert_eq!(r.verdict, Verdict::Unknown, "{:?}", r.reason);
        assert!(r.reason.unwrap().contains("nothing to judge"));
    }
}
