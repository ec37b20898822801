//! The counter workload (Jepsen's `counter`, Maelstrom's `pn-counter`): workers add small
//! deltas (mostly positive, some negative: a PN-Counter) to a few counters and read them; after
//! the heal and the quiet recovery every node reads every counter, in two rounds. Judged by the
//! counter checker in its eventual mode (every read within what the adds allow; the final reads
//! must include every acknowledged add) and the convergence checker (final reads equal).

use faultline_checker::counter::{check_counter, Consistency};
use faultline_checker::hierarchy::{self, Model, ModelResult, ModelVerdict};
use faultline_checker::history::Event;
use faultline_checker::Verdict;

use faultline_core::checker::{checker, Checker};
use faultline_core::client::{DataType, Op};
use faultline_core::generator::{rng_for, Generator};
use faultline_core::workload::{CheckerResult, Workload};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::set::{convergence_result, convergent, final_reads};

/// Shape of the counter workload.
#[derive(Clone, Debug)]
pub struct CounterWorkload {
    /// Counters in use (`c0`, `c1`, ...).
    pub keys: u64,
    /// Percent of reads; the rest are adds.
    pub read_pct: u32,
    /// Percent of adds with a negative delta (0: a G-Counter workload).
    pub negative_pct: u32,
    /// Deltas are drawn from 1..=delta_max (negated for negative adds).
    pub delta_max: i64,
    /// What the checker assumes the counter promises.
    pub consistency: Consistency,
}

impl Default for CounterWorkload {
    fn default() -> Self {
        CounterWorkload { keys: 2, read_pct: 40, negative_pct: 20, delta_max: 5, consistency: Consistency::Eventual }
    }
}

struct CounterGen {
    shape: CounterWorkload,
    rng: ChaCha8Rng,
}

impl Generator for CounterGen {
    fn next_op(&mut self) -> Option<Op> {
        let key = format!("c{}", self.rng.random_range(0..self.shape.keys.max(1)));
        if self.rng.random_range(0..100u32) < self.shape.read_pct {
            return Some(Op { f: "read".into(), key: Some(key), value: Value::Null });
        }
        let mut d = self.rng.random_range(1..=self.shape.delta_max.max(1));
        if self.rng.random_range(0..100u32) < self.shape.negative_pct {
            d = -d;
        }
        Some(Op { f: "add".into(), key: Some(key), value: json!(d) })
    }
}

impl Workload for CounterWorkload {
    fn name(&self) -> &str {
        "counter"
    }

    fn generator(&self, seed: u64, worker: u64, _concurrency: usize) -> Box<dyn Generator> {
        Box::new(CounterGen { shape: self.clone(), rng: rng_for(seed, "counter", worker) })
    }

    fn data_type(&self) -> DataType {
        DataType::Counter
    }

    fn final_ops(&self, keys: &[String]) -> Vec<Op> {
        final_reads(keys)
    }

    fn final_ops_on_every_node(&self) -> bool {
        true
    }

    /// The counter's ladder: reads outside the bounds a linearizable counter allows refute
    /// linearizability, reads within them do not prove it; no sequential or session checker;
    /// convergent by convergence and the counter checker together.
    fn consistency(&self, events: &[Event], checkers: &[CheckerResult]) -> hierarchy::Consistency {
        let lin = check_counter(events, Consistency::Linearizable);
        let lin = match lin.verdict {
            Verdict::Invalid => {
                ModelResult::new(Model::Linearizable, ModelVerdict::Invalid, lin.reason.unwrap_or_default())
            }
            Verdict::Unknown => {
                ModelResult::new(Model::Linearizable, ModelVerdict::Unknown, lin.reason.unwrap_or_default())
            }
            Verdict::Valid => ModelResult::new(
                Model::Linearizable,
                ModelVerdict::NotChecked,
                "every read within the bounds a linearizable counter allows: necessary, not sufficient",
            ),
        };
        let (seq, session) = match impossible_read(events) {
            Some(why) => (
                ModelResult::new(Model::Sequential, ModelVerdict::Invalid, why.clone()),
                ModelResult::new(Model::Session, ModelVerdict::Invalid, why),
            ),
            None => (
                ModelResult::new(
                    Model::Sequential,
                    ModelVerdict::NotChecked,
                    "no sequential-consistency checker for counters (every read within what all the adds allow)",
                ),
                ModelResult::new(
                    Model::Session,
                    ModelVerdict::NotChecked,
                    "no session checker for counters (every read within what all the adds allow)",
                ),
            ),
        };
        hierarchy::Consistency::from_models(vec![lin, seq, session, convergent(checkers, "counter")])
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        let consistency = self.consistency;
        vec![
            checker("counter", move |h| {
                let r = check_counter(h.events, consistency);
                CheckerResult {
                    name: "counter".into(),
                    verdict: r.verdict,
                    reason: r.reason.clone(),
                    details: serde_json::to_value(&r).unwrap_or(Value::Null),
                }
            }),
            checker("convergence", |h| convergence_result(h.events)),
        ]
    }
}

/// A read no set of the key's adds can produce, whatever their order or timing: below the sum
/// of every negative delta or above the sum of every positive one (adds that definitely failed
/// left out). Sequential consistency and session guarantees both make each read the sum of
/// some adds, so such a read refutes them.
fn impossible_read(events: &[Event]) -> Option<String> {
    use std::collections::BTreeMap;

    use faultline_checker::convergence::{client_ops, Outcome};
    let ops = client_ops(events).ok()?;
    let mut bounds: BTreeMap<Option<String>, (i128, i128)> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.f == "add" && o.outcome != Outcome::Fail) {
        let d = o.invoke_value.as_i64()? as i128;
        let b = bounds.entry(o.key.clone()).or_default();
        if d < 0 {
            b.0 += d;
        } else {
            b.1 += d;
        }
    }
    ops.iter().filter(|o| o.f == "read" && o.outcome == Outcome::Ok).find_map(|o| {
        let v = o.value.as_i64()? as i128;
        let (lo, hi) = bounds.get(&o.key).copied().unwrap_or_default();
        (v < lo || v > hi).then(|| {
            format!(
                "read at event {} of key {:?} returned {v}, outside [{lo}, {hi}], what all the adds together allow",
                o.index,
                o.key.clone().unwrap_or_default()
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::{EventType, Process};
    use faultline_core::checker::{check_all, History};

    #[test]
    fn schedule_is_seeded_with_the_configured_mix() {
        let w = CounterWorkload::default();
        let ops = |seed, worker| {
            let mut g = w.generator(seed, worker, 4);
            (0..2000).map(|_| g.next_op().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(ops(3, 1), ops(3, 1));
        assert_ne!(ops(3, 1), ops(3, 2));
        let all = ops(5, 0);
        let adds: Vec<i64> = all.iter().filter(|o| o.f == "add").map(|o| o.value.as_i64().unwrap()).collect();
        assert!((1000..1400).contains(&adds.len()), "about 60% adds: {}", adds.len());
        let neg = adds.iter().filter(|d| **d < 0).count();
        assert!(neg * 100 / adds.len() >= 14 && neg * 100 / adds.len() <= 26, "about 20% negative: {neg}");
        assert!(adds.iter().all(|d| *d != 0 && d.abs() <= 5));
    }

    #[test]
    fn an_overcounting_final_read_is_invalid() {
        use EventType::*;
        let ev = |index: u64, kind, p, f: &str, value: Value, node: &str| Event {
            index,
            time: index * 1000,
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some("c0".into()),
            value,
            error: None,
            node: Some(node.into()),
        };
        let mut h = vec![
            ev(0, Invoke, 0, "add", json!(1), "n1"),
            ev(1, Ok, 0, "add", json!(1), "n1"),
            Event {
                index: 2,
                time: 2000,
                kind: Info,
                process: Process::Nemesis,
                f: "heal".into(),
                key: None,
                value: json!({}),
                error: None,
                node: None,
            },
            ev(3, Invoke, 9, "read", Value::Null, "n1"),
            ev(4, Ok, 9, "read", json!(1), "n1"),
        ];
        let r = check_all(&CounterWorkload::default().checkers(), &History::of(&h));
        assert_eq!((r[0].verdict.to_string().as_str(), r[1].verdict.to_string().as_str()), ("valid", "valid"), "{r:?}");
        let c = CounterWorkload::default().consistency(&h, &r);
        assert_eq!(c.strongest, hierarchy::Strongest::Convergent, "{c:?}");
        h[4].value = json!(2); // the bad-merge echo
        let r = check_all(&CounterWorkload::default().checkers(), &History::of(&h));
        assert_eq!(r[0].verdict, Verdict::Invalid);
        assert!(r[0].reason.as_deref().unwrap().contains("allowed [1, 1]"), "{:?}", r[0].reason);
        // Over any bound a linearizable counter allows, and not a converged state.
        let c = CounterWorkload::default().consistency(&h, &r);
        assert_eq!(c.model(Model::Linearizable).unwrap().verdict, ModelVerdict::Invalid);
        assert_eq!(c.model(Model::Convergent).unwrap().verdict, ModelVerdict::Invalid);
        assert_eq!(c.model(Model::Session).unwrap().verdict, ModelVerdict::Invalid, "2 > the only add's 1: {c:?}");
        assert_eq!(c.strongest, hierarchy::Strongest::None, "{c:?}");
    }
}
