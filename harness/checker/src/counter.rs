//! The counter checker, after Jepsen's `counter`: each read of a counter must lie within the
//! values the adds could have produced.
//!
//! For a read `r` of a key: the adds *forced* into it (`F`) and those that *may* be in it (`P`,
//! every add invoked before `r` completed and not definitely failed) give the bounds
//! `[ΣF + Σ negative deltas of P∖F, ΣF + Σ positive deltas of P∖F]` (positive-only deltas, a
//! G-Counter, make the lower bound ΣF). Which adds are forced depends on what the system
//! promises ([`Consistency`]):
//! - `Linearizable` (Jepsen's counter): every ok add completed before `r` was invoked;
//! - `Eventual` (a CRDT counter): during the test nothing is forced (a replica may not have
//!   heard of other replicas' adds yet), but each node's *last* final read (invoked after the
//!   heal, when the cluster has been quiet) must include every ok add. Earlier final reads of
//!   a node are bounded like reads during the test: with a short recovery the replicas may
//!   still be exchanging states.
//!
//! The interval is exact when every delta is ±1 (any value in it is some subset's sum); with
//! larger deltas it is a sound over-approximation (a value outside it is certainly impossible),
//! as in Jepsen. Both claims are tested against a brute-force oracle that enumerates subsets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::convergence::{client_ops, ClientOp, Outcome};
use crate::{HistoryError, Verdict};

/// What the counter promises its readers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    Linearizable,
    Eventual,
}

/// A read outside its bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BadRead {
    pub index: u64,
    pub node: Option<String>,
    pub is_final: bool,
    pub value: i64,
    pub lower: i64,
    pub upper: i64,
}

/// Reads listed per key at most.
pub const LISTED_MAX: usize = 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterKeyReport {
    pub key: Option<String>,
    pub verdict: Verdict,
    pub reads: usize,
    pub final_reads: usize,
    pub bad_reads: usize,
    pub examples: Vec<BadRead>,
    /// Sum of the ok adds' deltas, and of the indeterminate ones'.
    pub ok_sum: i64,
    pub info_sum: i64,
    /// The final reads' values, per node.
    pub final_values: BTreeMap<String, i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterReport {
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub consistency: Consistency,
    pub reads: usize,
    pub bad_reads: usize,
    pub keys: Vec<CounterKeyReport>,
}

fn int(op: &ClientOp, v: &serde_json::Value, what: &str) -> Result<i64, HistoryError> {
    v.as_i64().ok_or_else(|| HistoryError {
        position: op.position,
        index: op.index,
        expected: format!("{what}: an integer"),
        found: v.to_string(),
    })
}

/// `(lower, upper)` for `read` given the key's adds `(op, delta)`.
/// `settled`: the read is its node's last final read (the only one `Eventual` forces adds into).
fn bounds(read: &ClientOp, settled: bool, adds: &[(&ClientOp, i64)], consistency: Consistency) -> (i64, i64) {
    let read_done = read.complete_ns.unwrap_or(u64::MAX);
    let (mut lower, mut upper) = (0i128, 0i128);
    for (a, d) in adds {
        if a.outcome == Outcome::Fail || a.invoke_ns >= read_done {
            continue; // cannot be in the read
        }
        let forced = a.outcome == Outcome::Ok
            && match consistency {
                Consistency::Linearizable => a.complete_ns.is_some_and(|c| c < read.invoke_ns),
                Consistency::Eventual => settled && a.complete_ns.is_some_and(|c| c < read.invoke_ns),
            };
        let d = *d as i128;
        if forced {
            lower += d;
            upper += d;
        } else if d >= 0 {
            upper += d;
        } else {
            lower += d;
        }
    }
    let clamp = |v: i128| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    (clamp(lower), clamp(upper))
}

/// Checks a counter history (`add` with an integer delta, `read` with an integer ok value);
/// a malformed one gives `unknown` with the reason naming the event.
pub fn check_counter(events: &[crate::history::Event], consistency: Consistency) -> CounterReport {
    match try_check_counter(events, consistency) {
        Ok(r) => r,
        Err(e) => CounterReport {
            verdict: Verdict::Unknown,
            reason: Some(format!("malformed history: {e}")),
            consistency,
            reads: 0,
            bad_reads: 0,
            keys: vec![],
        },
    }
}

pub fn try_check_counter(
    events: &[crate::history::Event],
    consistency: Consistency,
) -> Result<CounterReport, HistoryError> {
    let ops = client_ops(events)?;
    let mut by_key: BTreeMap<Option<String>, Vec<&ClientOp>> = BTreeMap::new();
    for o in &ops {
        by_key.entry(o.key.clone()).or_default().push(o);
    }
    let mut keys = Vec::new();
    for (key, ops) in by_key {
        keys.push(check_key(key, ops, consistency)?);
    }
    Ok(report(keys, consistency))
}

/// Judges every ok read of one key against the key's adds.
fn check_key(
    key: Option<String>,
    ops: Vec<&ClientOp>,
    consistency: Consistency,
) -> Result<CounterKeyReport, HistoryError> {
    let mut adds = Vec::new();
    let mut reads = Vec::new();
    for o in ops {
        match o.f.as_str() {
            "add" => adds.push((o, int(o, &o.invoke_value, "an add's delta")?)),
            "read" if o.outcome == Outcome::Ok => reads.push((o, int(o, &o.value, "a read's value")?)),
            _ => {}
        }
    }
    let mut examples = Vec::new();
    let mut bad = 0;
    let mut final_values = BTreeMap::new();
    let last_final = last_final_reads(&reads);
    for (r, v) in &reads {
        let settled = r.is_final && r.node.as_deref().and_then(|n| last_final.get(n)) == Some(&r.position);
        let (lower, upper) = bounds(r, settled, &adds, consistency);
        if r.is_final {
            if let Some(n) = &r.node {
                final_values.insert(n.clone(), *v);
            }
        }
        if *v < lower || *v > upper {
            bad += 1;
            if examples.len() < LISTED_MAX {
                examples.push(BadRead {
                    index: r.index,
                    node: r.node.clone(),
                    is_final: r.is_final,
                    value: *v,
                    lower,
                    upper,
                });
            }
        }
    }
    let sum = |o: Outcome| {
        adds.iter()
            .filter(|(a, _)| a.outcome == o)
            .map(|(_, d)| *d as i128)
            .sum::<i128>()
            .clamp(i64::MIN as i128, i64::MAX as i128) as i64
    };
    Ok(CounterKeyReport {
        key,
        // No ok read of the key: nothing was judged, so never "valid".
        verdict: if bad > 0 {
            Verdict::Invalid
        } else if reads.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Valid
        },
        reads: reads.len(),
        final_reads: reads.iter().filter(|(r, _)| r.is_final).count(),
        bad_reads: bad,
        examples,
        ok_sum: sum(Outcome::Ok),
        info_sum: sum(Outcome::Info),
        final_values,
    })
}

/// Each node's last ok final read (by position in the history).
fn last_final_reads<'a>(reads: &[(&'a ClientOp, i64)]) -> BTreeMap<&'a str, usize> {
    let mut last_final = BTreeMap::new();
    for (r, _) in reads.iter().filter(|(r, _)| r.is_final) {
        if let Some(n) = &r.node {
            last_final.insert(n.as_str(), r.position);
        }
    }
    last_final
}

/// The report over all keys: the verdict, and the reason naming the first bad read.
fn report(keys: Vec<CounterKeyReport>, consistency: Consistency) -> CounterReport {
    let bad_reads: usize = keys.iter().map(|k| k.bad_reads).sum();
    let judged: usize = keys.iter().map(|k| k.reads).sum();
    if bad_reads == 0 && judged == 0 {
        let reason = Some("no successful read: nothing to judge".to_string());
        return CounterReport { verdict: Verdict::Unknown, reason, consistency, reads: 0, bad_reads, keys };
    }
    let verdict = if bad_reads > 0 { Verdict::Invalid } else { Verdict::Valid };
    let reason = keys.iter().find(|k| k.bad_reads > 0).map(|k| {
        let b = &k.examples[0];
        format!(
            "{bad_reads} read(s) out of bounds; key {:?}: {}read at event {} on {} returned {}, allowed [{}, {}]",
            k.key.clone().unwrap_or_else(|| "(no key)".into()),
            if b.is_final { "final " } else { "" },
            b.index,
            b.node.as_deref().unwrap_or("?"),
            b.value,
            b.lower,
            b.upper
        )
    });
    CounterReport { verdict, reason, consistency, reads: keys.iter().map(|k| k.reads).sum(), bad_reads, keys }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Event, EventType, Process};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde_json::{json, Value};

    /// Brute force: is `v` the sum of `forced` plus some subset of `maybe`?
    fn oracle(forced: i64, maybe: &[i64], v: i64) -> bool {
        (0u32..(1 << maybe.len())).any(|mask| {
            forced + maybe.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, d)| d).sum::<i64>() == v
        })
    }

    /// A random concurrent history: up to 6 adds (ok / info / fail / never completed) and reads
    /// overlapping them, some after a heal; times random so that every precedence occurs.
    fn random_history(rng: &mut ChaCha8Rng, unit: bool) -> Vec<Event> {
        struct Op {
            f: &'static str,
            start: u64,
            end: u64,
            kind: EventType,
            value: Value,
            done: Option<Value>,
        }
        let mut ops = Vec::new();
        for _ in 0..rng.random_range(0..7) {
            let d: i64 = if unit {
                if rng.random_bool(0.7) {
                    1
                } else {
                    -1
                }
            } else {
                rng.random_range(-3..6)
            };
            let start = rng.random_range(0..50);
            let kind = [EventType::Ok, EventType::Ok, EventType::Info, EventType::Fail, EventType::Invoke]
                [rng.random_range(0..5)];
            ops.push(Op {
                f: "add",
                start,
                end: start + rng.random_range(1..20),
                kind,
                value: json!(d),
                done: Some(json!(d)),
            });
        }
        for _ in 0..rng.random_range(1..5) {
            let start = rng.random_range(0..80);
            let v = rng.random_range(-6..12);
            ops.push(Op {
                f: "read",
                start,
                end: start + rng.random_range(1..20),
                kind: EventType::Ok,
                value: Value::Null,
                done: Some(json!(v)),
            });
        }
        // Points in time: (time, order, op index, is_start).
        let mut points: Vec<(u64, usize, bool)> = Vec::new();
        for (i, o) in ops.iter().enumerate() {
            points.push((o.start * 2, i, true));
            if o.kind != EventType::Invoke {
                points.push((o.end * 2 + 1, i, false));
            }
        }
        points.sort();
        let heal_at = rng.random_range(0..100) * 2;
        let mut h: Vec<Event> = Vec::new();
        let mut healed = false;
        for (t, i, start) in points {
            if !healed && t > heal_at {
                healed = true;
                h.push(Event {
                    index: h.len() as u64,
                    time: heal_at,
                    kind: EventType::Info,
                    process: Process::Nemesis,
                    f: "heal".into(),
                    key: None,
                    value: json!({}),
                    error: None,
                    node: None,
                });
            }
            let o = &ops[i];
            let (kind, value) =
                if start { (EventType::Invoke, o.value.clone()) } else { (o.kind, o.done.clone().unwrap()) };
            h.push(Event {
                index: h.len() as u64,
                time: t,
                kind,
                process: Process::Client(i as u64),
                f: o.f.into(),
                key: Some("c".into()),
                value,
                error: None,
                node: Some("n1".into()),
            });
        }
        h
    }

    /// The oracle's judgement of every read: forced and possible adds per the definition.
    fn oracle_verdict(h: &[Event], consistency: Consistency) -> Verdict {
        let ops = client_ops(h).unwrap();
        let adds: Vec<&ClientOp> = ops.iter().filter(|o| o.f == "add").collect();
        let last_final =
            ops.iter().filter(|o| o.f == "read" && o.outcome == Outcome::Ok && o.is_final).map(|o| o.index).max();
        for r in ops.iter().filter(|o| o.f == "read" && o.outcome == Outcome::Ok) {
            let (mut forced, mut maybe) = (0, Vec::new());
            for a in &adds {
                let d = a.invoke_value.as_i64().unwrap();
                let completed_before = a.outcome == Outcome::Ok && a.complete_ns.unwrap() < r.invoke_ns;
                // Every op of these histories is on node n1: the last final read is its last.
                let must =
                    completed_before && (consistency == Consistency::Linearizable || Some(r.index) == last_final);
                if must {
                    forced += d;
                } else if a.outcome != Outcome::Fail && a.invoke_ns < r.complete_ns.unwrap() {
                    maybe.push(d);
                }
            }
            if !oracle(forced, &maybe, r.value.as_i64().unwrap()) {
                return Verdict::Invalid;
            }
        }
        Verdict::Valid
    }

    #[test]
    fn unit_deltas_agree_exactly_with_the_subset_oracle() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = [0usize; 2];
        for _ in 0..20_000 {
            let h = random_history(&mut rng, true);
            for c in [Consistency::Linearizable, Consistency::Eventual] {
                let got = try_check_counter(&h, c).unwrap().verdict;
                let want = oracle_verdict(&h, c);
                assert_eq!(got, want, "{c:?}: {}", serde_json::to_string(&h).unwrap());
                seen[(want == Verdict::Invalid) as usize] += 1;
            }
        }
        assert!(seen[0] > 1000 && seen[1] > 1000, "both verdicts exercised: {seen:?}");
    }

    #[test]
    fn larger_deltas_never_flag_a_history_the_oracle_accepts() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut invalid = 0;
        for _ in 0..20_000 {
            let h = random_history(&mut rng, false);
            for c in [Consistency::Linearizable, Consistency::Eventual] {
                let got = try_check_counter(&h, c).unwrap().verdict;
                if got == Verdict::Invalid {
                    invalid += 1;
                    assert_eq!(
                        oracle_verdict(&h, c),
                        Verdict::Invalid,
                        "{c:?}: {}",
                        serde_json::to_string(&h).unwrap()
                    );
                }
            }
        }
        assert!(invalid > 1000, "{invalid}");
    }

    fn ev(index: u64, kind: EventType, p: u64, f: &str, value: Value, node: &str) -> Event {
        Event {
            index,
            time: index,
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some("c".into()),
            value,
            error: None,
            node: Some(node.into()),
        }
    }

    #[test]
    fn eventual_allows_stale_reads_during_the_test_but_not_in_the_final_reads() {
        use EventType::*;
        let mut h = vec![
            ev(0, Invoke, 0, "add", json!(2), "n1"),
            ev(1, Ok, 0, "add", json!(2), "n1"),
            ev(2, Invoke, 1, "read", Value::Null, "n2"),
            ev(3, Ok, 1, "read", json!(0), "n2"),
        ];
        assert_eq!(try_check_counter(&h, Consistency::Eventual).unwrap().verdict, Verdict::Valid);
        let lin = try_check_counter(&h, Consistency::Linearizable).unwrap();
        assert_eq!(lin.verdict, Verdict::Invalid);
        assert!(lin.reason.unwrap().contains("allowed [2, 2]"));
        h.push(Event {
            index: 4,
            time: 4,
            kind: Info,
            process: Process::Nemesis,
            f: "heal".into(),
            key: None,
            value: json!({}),
            error: None,
            node: None,
        });
        h.push(ev(5, Invoke, 2, "read", Value::Null, "n2"));
        h.push(ev(6, Ok, 2, "read", json!(0), "n2"));
        let r = try_check_counter(&h, Consistency::Eventual).unwrap();
        assert_eq!(r.verdict, Verdict::Invalid);
        assert!(r.reason.unwrap().contains("final read at event 5 on n2 returned 0"));
        // An overshoot (bad-merge) is caught in either mode.
        h[6].value = json!(4);
        assert_eq!(try_check_counter(&h, Consistency::Eventual).unwrap().keys[0].examples[0].upper, 2);
        // A node still catching up in its first final read, settled in its last: valid; only
        // the last final read of each node must include every acknowledged add.
        h[6].value = json!(0);
        h.push(ev(7, Invoke, 3, "read", Value::Null, "n2"));
        h.push(ev(8, Ok, 3, "read", json!(2), "n2"));
        let r = try_check_counter(&h, Consistency::Eventual).unwrap();
        assert_eq!(r.verdict, Verdict::Valid, "{:?}", r.reason);
        assert_eq!(r.keys[0].final_values["n2"], 2);
        h[8].value = json!(0);
        assert_eq!(try_check_counter(&h, Consistency::Eventual).unwrap().verdict, Verdict::Invalid);
    }

    #[test]
    fn malformed_values_are_errors_naming_the_event() {
        use EventType::*;
        let h = vec![ev(0, Invoke, 0, "add", json!("x"), "n1")];
        assert!(try_check_counter(&h, Consistency::Eventual).unwrap_err().to_string().contains("delta"));
        assert_eq!(check_counter(&h, Consistency::Eventual).verdict, Verdict::Unknown);
    }

    #[test]
    fn a_history_without_a_successful_read_is_unknown_not_valid() {
        assert_eq!(check_counter(&[], Consistency::Eventual).verdict, Verdict::Unknown);
        let add = |i: u64, kind: EventType| Event {
            index: i,
            time: i,
            kind,
            process: Process::Client(0),
            f: "add".into(),
            key: Some("c".into()),
            value: serde_json::json!(1),
            error: None,
            node: None,
        };
        let r = check_counter(&[add(0, EventType::Invoke), add(1, EventType::Ok)], Consistency::Eventual);
        assert_eq!(r.verdict, Verdict::Unknown, "{:?}", r.reason);
        assert!(r.reason.unwrap().contains("nothing to judge"));
    }
}
