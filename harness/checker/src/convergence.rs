//! Convergence of eventually consistent systems, and the operation pairing the weak-consistency
//! checkers (`set_full`, `counter`, this module) share.
//!
//! After every fault is healed and the cluster has been quiet for a while, a convergent system's
//! replicas hold the same state: the final read of each key from *every* node must be equal
//! (sets compared as sets). A node that has no final read of a key leaves the key undecided.
//!
//! The time to converge is bracketed when the final reads come in several rounds: it is at most
//! the time (from the heal) by which every node's reads had settled on the common value — the
//! first read of each node's trailing run of reads of that value — and at least the time of the
//! last final read that still returned something else (if any did).
//!
//! Final reads are the client `read`s invoked after the nemesis `heal` event (the runner joins
//! every worker before it heals, so nothing else is invoked after it).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{Event, EventType, Process};
use crate::{HistoryError, Verdict};

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Fail,
    /// `info`, or never completed: may or may not have taken effect.
    Info,
}

/// One client operation: an invocation paired with its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientOp {
    pub process: u64,
    pub f: String,
    pub key: Option<String>,
    /// `index` of the invocation event, and its position in the slice checked.
    pub index: u64,
    pub position: usize,
    pub invoke_ns: u64,
    /// `None` when never completed.
    pub complete_ns: Option<u64>,
    pub outcome: Outcome,
    /// The invocation's value (e.g. the element or delta added).
    pub invoke_value: Value,
    /// The completion's value (e.g. what a read returned); `Null` if none.
    pub value: Value,
    pub node: Option<String>,
    /// Invoked after the `heal` event.
    pub is_final: bool,
}

fn err(position: usize, e: &Event, expected: &str, found: String) -> HistoryError {
    HistoryError { position, index: e.index, expected: expected.into(), found }
}

/// Pairs client invocations with their completions (in invocation order); nemesis events are
/// skipped except `heal`, which marks later ops final. A completion without an open invocation
/// of the same `f`, or a second invocation while one is open, is an error naming the event.
pub fn client_ops(events: &[Event]) -> Result<Vec<ClientOp>, HistoryError> {
    let mut ops: Vec<ClientOp> = Vec::new();
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut healed = false;
    for (pos, e) in events.iter().enumerate() {
        let p = match e.process {
            Process::Nemesis => {
                if e.f == "heal" {
                    healed = true;
                }
                continue;
            }
            Process::Client(p) => p,
        };
        match e.kind {
            EventType::Invoke => {
                if let Some(&i) = open.get(&p) {
                    return Err(err(
                        pos,
                        e,
                        "a completion of the open invocation first",
                        format!("a second invocation by process {p} (open: event {})", ops[i].index),
                    ));
                }
                open.insert(p, ops.len());
                ops.push(ClientOp {
                    process: p,
                    f: e.f.clone(),
                    key: e.key.clone(),
                    index: e.index,
                    position: pos,
                    invoke_ns: e.time,
                    complete_ns: None,
                    outcome: Outcome::Info,
                    invoke_value: e.value.clone(),
                    value: Value::Null,
                    node: e.node.clone(),
                    is_final: healed,
                });
            }
            kind => {
                let Some(i) = open.remove(&p) else {
                    return Err(err(
                        pos,
                        e,
                        "an invocation before its completion",
                        format!("a {kind:?} by process {p} with nothing open"),
                    ));
                };
                let op = &mut ops[i];
                if op.f != e.f {
                    return Err(err(
                        pos,
                        e,
                        &format!("f = {:?} (as invoked at event {})", op.f, op.index),
                        format!("{:?}", e.f),
                    ));
                }
                op.complete_ns = Some(e.time);
                op.outcome = match kind {
                    EventType::Ok => Outcome::Ok,
                    EventType::Fail => Outcome::Fail,
                    _ => Outcome::Info,
                };
                op.value = e.value.clone();
                if e.node.is_some() {
                    op.node = e.node.clone();
                }
            }
        }
    }
    Ok(ops)
}

/// The time of the `heal` event, if any.
pub fn heal_ns(events: &[Event]) -> Option<u64> {
    events.iter().find(|e| e.process == Process::Nemesis && e.f == "heal").map(|e| e.time)
}

/// Every node named by a client event: the nodes that must all answer a final read.
pub fn nodes_seen(ops: &[ClientOp]) -> BTreeSet<String> {
    ops.iter().filter_map(|o| o.node.clone()).collect()
}

/// One key's final state at one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeValue {
    pub node: String,
    pub value: Value,
    pub time_ns: u64,
}

/// One key's convergence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyConvergence {
    pub key: Option<String>,
    pub verdict: Verdict,
    pub reason: Option<String>,
    /// The last ok final read per node.
    pub finals: Vec<NodeValue>,
    /// Nodes without an ok final read of this key.
    pub missing: Vec<String>,
}

/// The convergence checker's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceReport {
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub nodes: Vec<String>,
    pub keys: Vec<KeyConvergence>,
    /// Upper bound on the time to converge, from the heal: by then every node's final reads
    /// had settled on the common value (only when every key converged).
    pub converged_within_ms: Option<f64>,
    /// Lower bound, from the heal: the completion of the last final read that still returned
    /// another value; `None` if every final read already agreed.
    pub still_diverged_at_ms: Option<f64>,
}

/// A value in a canonical form for comparison: arrays (set reads) sorted and deduplicated.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Array(a) => {
            let mut vals: Vec<Value> = a.to_vec();
            // Integers by value, anything else after them by its JSON text: a total order.
            vals.sort_by_key(|x| (x.as_i64().is_none(), x.as_i64().unwrap_or(0), x.to_string()));
            vals.dedup();
            Value::Array(vals)
        }
        other => other.clone(),
    }
}

/// Checks that every node's final read of every key (operations named `read_f`) is equal.
/// A malformed history gives `unknown` with the reason.
pub fn check_convergence(events: &[Event], read_f: &str) -> ConvergenceReport {
    let unknown = |reason: String| ConvergenceReport {
        verdict: Verdict::Unknown,
        reason: Some(reason),
        nodes: vec![],
        keys: vec![],
        converged_within_ms: None,
        still_diverged_at_ms: None,
    };
    let ops = match client_ops(events) {
        Ok(o) => o,
        Err(e) => return unknown(format!("malformed history: {e}")),
    };
    let Some(heal) = heal_ns(events) else {
        return unknown("no heal event in the history: cannot tell the final reads".into());
    };
    let nodes = nodes_seen(&ops);
    let by_key = final_reads_by_key(&ops, read_f);
    let mut keys = Vec::new();
    let (mut settled_ns, mut diverged_ns) = (heal, None::<u64>);
    for (key, reads) in by_key {
        let k = key_convergence(key, &reads, &nodes);
        if k.verdict == Verdict::Valid {
            if let Some(common) = k.finals.first().map(|f| f.value.clone()) {
                settle_times(&reads, &common, &mut settled_ns, &mut diverged_ns);
            }
        }
        keys.push(k);
    }
    let verdict = keys.iter().fold(Verdict::Valid, |v, k| v.combine(k.verdict));
    let reason = keys.iter().find(|k| k.verdict == verdict && verdict != Verdict::Valid).map(|k| {
        let name = k.key.clone().unwrap_or_else(|| "(no key)".into());
        format!("key {name:?}: {}", k.reason.clone().unwrap_or_default())
    });
    let ms = |t: u64| t.saturating_sub(heal) as f64 / 1e6;
    let converged = verdict == Verdict::Valid && !keys.is_empty();
    ConvergenceReport {
        verdict,
        reason,
        nodes: nodes.into_iter().collect(),
        keys,
        converged_within_ms: converged.then(|| ms(settled_ns)),
        still_diverged_at_ms: if converged { diverged_ns.map(ms) } else { None },
    }
}

/// Per key and node, every ok final read in history order.
type FinalReads = BTreeMap<Option<String>, BTreeMap<String, Vec<NodeValue>>>;

/// Per key and node, every ok final read (operations named `read_f`) in history order; every
/// key the workload used is there, read or not.
fn final_reads_by_key(ops: &[ClientOp], read_f: &str) -> FinalReads {
    let mut by_key: FinalReads = BTreeMap::new();
    // Keys the workload used (any op on them), so a key nobody read finally is still judged.
    for o in ops {
        by_key.entry(o.key.clone()).or_default();
    }
    for o in ops.iter().filter(|o| o.is_final && o.f == read_f && o.outcome == Outcome::Ok) {
        let Some(node) = &o.node else { continue };
        let t = o.complete_ns.unwrap_or(o.invoke_ns);
        by_key.entry(o.key.clone()).or_default().entry(node.clone()).or_default().push(NodeValue {
            node: node.clone(),
            value: canonical(&o.value),
            time_ns: t,
        });
    }
    by_key
}

/// One key's verdict from its final reads per node: invalid when the nodes' last reads differ,
/// unknown when a node of `nodes` has none, else valid.
fn key_convergence(
    key: Option<String>,
    reads: &BTreeMap<String, Vec<NodeValue>>,
    nodes: &BTreeSet<String>,
) -> KeyConvergence {
    let missing: Vec<String> = nodes.iter().filter(|n| !reads.contains_key(*n)).cloned().collect();
    // The last ok final read is the node's final state.
    let finals: Vec<NodeValue> = reads.values().filter_map(|r| r.last().cloned()).collect();
    let distinct: BTreeSet<String> = finals.iter().map(|f| f.value.to_string()).collect();
    let (verdict, reason) = if distinct.len() > 1 {
        let per: Vec<String> = finals.iter().map(|f| format!("{}={}", f.node, f.value)).collect();
        (Verdict::Invalid, Some(format!("nodes disagree after heal and quiescence: {}", per.join(", "))))
    } else if !missing.is_empty() {
        (Verdict::Unknown, Some(format!("no final read from {}", missing.join(", "))))
    } else {
        (Verdict::Valid, None)
    };
    KeyConvergence { key, verdict, reason, finals, missing }
}

/// Moves `settled_ns` up to where each node's reads settled on `common`, and `diverged_ns` up
/// to the last read before that which returned another value.
fn settle_times(
    reads: &BTreeMap<String, Vec<NodeValue>>,
    common: &Value,
    settled_ns: &mut u64,
    diverged_ns: &mut Option<u64>,
) {
    for rs in reads.values() {
        // The first read of the node's trailing run of reads of the common value.
        let run_start = rs.iter().rposition(|r| r.value != *common).map_or(0, |i| i + 1);
        *settled_ns = (*settled_ns).max(rs[run_start].time_ns);
        if run_start > 0 {
            *diverged_ns = Some(diverged_ns.unwrap_or(0).max(rs[run_start - 1].time_ns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn ev(index: u64, kind: EventType, p: u64, f: &str, key: &str, value: Value, node: &str) -> Event {
        Event {
            index,
            time: index * 1_000_000,
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some(key.into()),
            value,
            error: None,
            node: Some(node.into()),
        }
    }
    fn heal(index: u64) -> Event {
        Event {
            index,
            time: index * 1_000_000,
            kind: EventType::Info,
            process: Process::Nemesis,
            f: "heal".into(),
            key: None,
            value: json!({}),
            error: None,
            node: None,
        }
    }

    /// A history: one add per node, then final reads returning `finals[i]` at node i (`None`:
    /// that node's final read failed).
    fn history(finals: &[Option<Value>]) -> Vec<Event> {
        let mut h = Vec::new();
        let mut i = 0;
        for n in 0..finals.len() {
            h.push(ev(i, EventType::Invoke, n as u64, "add", "k", json!(n), &format!("n{n}")));
            h.push(ev(i + 1, EventType::Ok, n as u64, "add", "k", json!(n), &format!("n{n}")));
            i += 2;
        }
        h.push(heal(i));
        i += 1;
        for (n, v) in finals.iter().enumerate() {
            let p = 100 + n as u64;
            h.push(ev(i, EventType::Invoke, p, "read", "k", Value::Null, &format!("n{n}")));
            match v {
                Some(v) => h.push(ev(i + 1, EventType::Ok, p, "read", "k", v.clone(), &format!("n{n}"))),
                None => h.push(ev(i + 1, EventType::Fail, p, "read", "k", Value::Null, &format!("n{n}"))),
            }
            i += 2;
        }
        h
    }

    /// Exhaustive over 3 nodes, each's final read one of {missing, 1, 2, [1,2], [2,1]}: the
    /// checker agrees with the definition (oracle): invalid iff two present reads differ as
    /// sets/values; else unknown iff one is missing; else valid.
    #[test]
    fn exhaustive_three_nodes_against_the_definition() {
        let choices = [None, Some(json!(1)), Some(json!(2)), Some(json!([1, 2])), Some(json!([2, 1]))];
        let mut n = 0;
        for a in &choices {
            for b in &choices {
                for c in &choices {
                    let finals = vec![a.clone(), b.clone(), c.clone()];
                    let present: Vec<String> = finals
                        .iter()
                        .flatten()
                        .map(|v| match v {
                            Value::Array(_) => "set12".to_string(),
                            v => v.to_string(),
                        })
                        .collect();
                    let distinct: BTreeSet<&String> = present.iter().collect();
                    let want = if distinct.len() > 1 {
                        Verdict::Invalid
                    } else if present.len() < 3 {
                        Verdict::Unknown
                    } else {
                        Verdict::Valid
                    };
                    let r = check_convergence(&history(&finals), "read");
                    assert_eq!(r.verdict, want, "{finals:?}: {:?}", r.reason);
                    if want == Verdict::Valid {
                        assert!(r.converged_within_ms.unwrap() >= 0.0);
                    }
                    n += 1;
                }
            }
        }
        assert_eq!(n, 125);
    }

    #[test]
    fn disagreement_names_the_nodes_and_values() {
        let r = check_convergence(&history(&[Some(json!(3)), Some(json!(3)), Some(json!(5))]), "read");
        assert_eq!(r.verdict, Verdict::Invalid);
        let reason = r.reason.unwrap();
        assert!(reason.contains("n2=5") && reason.contains("n0=3"), "{reason}");
    }

    /// Two rounds of final reads: n0 still differed in the first, then everything agreed by
    /// n0's second read. history(): heal at 4 ms; first-round reads complete at 6 ms (n0) and
    /// 8 ms (n1); the second round at 10 ms (n0) and 12 ms (n1).
    #[test]
    fn convergence_time_is_bracketed_by_the_rounds_of_final_reads() {
        let mut h = history(&[Some(json!(1)), Some(json!(2))]);
        let i = h.len() as u64;
        h.push(ev(i, EventType::Invoke, 300, "read", "k", Value::Null, "n0"));
        h.push(ev(i + 1, EventType::Ok, 300, "read", "k", json!(2), "n0"));
        h.push(ev(i + 2, EventType::Invoke, 301, "read", "k", Value::Null, "n1"));
        h.push(ev(i + 3, EventType::Ok, 301, "read", "k", json!(2), "n1"));
        let r = check_convergence(&h, "read");
        assert_eq!(r.verdict, Verdict::Valid);
        assert_eq!(r.still_diverged_at_ms, Some(2.0), "n0's first final read (6 ms) returned 1");
        assert_eq!(r.converged_within_ms, Some(6.0), "n0's second read (10 ms) starts its agreeing run");
        // Every read agreeing from the start: no lower bound, the upper bound at the first reads.
        let r = check_convergence(&history(&[Some(json!(2)), Some(json!(2))]), "read");
        assert_eq!((r.still_diverged_at_ms, r.converged_within_ms), (None, Some(4.0)));
    }

    #[test]
    fn the_last_ok_final_read_of_a_node_counts() {
        let mut h = history(&[Some(json!(1)), Some(json!(2))]);
        let i = h.len() as u64;
        h.push(ev(i, EventType::Invoke, 300, "read", "k", Value::Null, "n0"));
        h.push(ev(i + 1, EventType::Ok, 300, "read", "k", json!(2), "n0"));
        assert_eq!(check_convergence(&h, "read").verdict, Verdict::Valid);
    }

    #[test]
    fn malformed_or_heal_less_histories_are_unknown_with_a_reason() {
        let h = vec![ev(0, EventType::Ok, 1, "read", "k", json!(1), "n0")];
        let r = check_convergence(&h, "read");
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.reason.unwrap().contains("event 0"));
        let h = vec![
            ev(0, EventType::Invoke, 1, "read", "k", Value::Null, "n0"),
            ev(1, EventType::Ok, 1, "read", "k", json!(1), "n0"),
        ];
        let r = check_convergence(&h, "read");
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.reason.unwrap().contains("heal"));
        let h = vec![
            ev(0, EventType::Invoke, 1, "read", "k", Value::Null, "n0"),
            ev(1, EventType::Ok, 1, "add", "k", json!(1), "n0"),
        ];
        assert!(client_ops(&h).unwrap_err().to_string().contains("event 1"));
    }
}
