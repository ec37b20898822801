//! What the transactional workloads ([`crate::list_append`], [`crate::rw_register`]) share:
//! Elle's generator shape, their final reads and their checker.
//!
//! **Generator.** Each operation is one transaction (`f` `txn`, no `key`, `value` its micro-ops)
//! of 1 to [`TxnShape::ops_max`] micro-ops, each a read or a write (an append for list-append)
//! of a key drawn from a small pool of active keys. The pool rotates as Elle's does: worker
//! `w`'s `j`-th transaction uses generation `g = j / txns_per_generation`, whose keys are
//! `k{g × active_keys + slot}`; `txns_per_generation` is chosen so that all workers together
//! write each key about [`TxnShape::writes_per_key`] times before moving on. Written values are
//! unique in the whole run (worker `w`'s `i`-th write is `w × 10⁹ + i`). The schedule depends only
//! on (seed, worker, concurrency).
//!
//! **Final reads.** Every key used is read once more, in read-only transactions of at most
//! [`FINAL_READS_PER_TXN`] keys, so that every committed append is eventually read (the checker
//! is complete for list-append only then). They go through the Raft log like any transaction,
//! so one node suffices.
//!
//! **Checker.** `faultline_checker::txn::check` against strict serializability; the details are
//! the whole `TxnReport` (anomalies with their cycles, the models ruled out) plus its text. The
//! single-object consistency ladder of results.json does not describe transactions, so the
//! transactional verdict lives in the checker's details (docs/results.md).

use faultline_checker::hierarchy::Consistency;
use faultline_checker::history::Event;
use faultline_checker::txn::{check, ConsistencyModel, TxnModel, TxnOptions};
use faultline_checker::Verdict;
use faultline_core::checker::{checker, Checker};
use faultline_core::client::{DataType, Op};
use faultline_core::generator::{rng_for, Generator};
use faultline_core::workload::{CheckerResult, Workload};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// Values per worker at most (worker `w`'s values are `w × VALUES_PER_WORKER + i`).
pub const VALUES_PER_WORKER: i64 = 1_000_000_000;
/// Keys per final read transaction at most (the node allows 16 micro-ops).
pub const FINAL_READS_PER_TXN: usize = 8;

/// Shape of a transactional workload.
#[derive(Clone, Debug)]
pub struct TxnShape {
    pub model: TxnModel,
    /// Keys in use at once.
    pub active_keys: u64,
    /// Writes (appends) all workers together make to a key, about, before it is retired.
    pub writes_per_key: u64,
    /// Micro-ops per transaction at most (at least 1).
    pub ops_max: usize,
    /// Percent of micro-ops that are reads.
    pub read_pct: u32,
}

impl TxnShape {
    pub fn new(model: TxnModel) -> TxnShape {
        TxnShape { model, active_keys: 10, writes_per_key: 32, ops_max: 4, read_pct: 50 }
    }

    /// The micro-op name of a write in this model.
    fn write_f(&self) -> &'static str {
        match self.model {
            TxnModel::ListAppend => "append",
            TxnModel::RwRegister => "w",
        }
    }

    /// Transactions one worker sends to a generation of keys: the key's writes spread over
    /// every worker, at the expected writes per transaction.
    fn txns_per_generation(&self, concurrency: usize) -> u64 {
        let ops_mean = (1 + self.ops_max.max(1)) as f64 / 2.0;
        let writes_per_txn = ops_mean * f64::from(100 - self.read_pct.min(100)) / 100.0;
        let total = (self.writes_per_key * self.active_keys.max(1)) as f64;
        (total / (concurrency.max(1) as f64 * writes_per_txn.max(0.1))).ceil().max(1.0) as u64
    }

    pub fn generator(&self, seed: u64, worker: u64, concurrency: usize) -> Box<dyn Generator> {
        Box::new(TxnGen {
            shape: self.clone(),
            rng: rng_for(seed, self.model.name(), worker),
            worker,
            per_generation: self.txns_per_generation(concurrency),
            txns: 0,
            next_value: 0,
        })
    }
}

struct TxnGen {
    shape: TxnShape,
    rng: ChaCha8Rng,
    worker: u64,
    per_generation: u64,
    txns: u64,
    next_value: i64,
}

impl Generator for TxnGen {
    fn next_op(&mut self) -> Option<Op> {
        let active = self.shape.active_keys.max(1);
        let generation = self.txns / self.per_generation;
        self.txns += 1;
        let n = self.rng.random_range(1..=self.shape.ops_max.max(1));
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let key = format!("k{}", generation * active + self.rng.random_range(0..active));
            if self.rng.random_range(0..100u32) < self.shape.read_pct {
                ops.push(json!(["r", key, null]));
            } else {
                if self.next_value >= VALUES_PER_WORKER {
                    return None; // bounded: no value may repeat
                }
                let v = self.worker as i64 * VALUES_PER_WORKER + self.next_value;
                self.next_value += 1;
                ops.push(json!([self.shape.write_f(), key, v]));
            }
        }
        Some(Op { f: "txn".into(), key: None, value: Value::Array(ops) })
    }
}

/// A transactional workload: list-append or rw-register, as its shape's model says. Its name,
/// data type and checker are the model's name (`list-append`, `rw-register`).
#[derive(Clone, Debug)]
pub struct TxnWorkload {
    pub shape: TxnShape,
}

impl TxnWorkload {
    pub fn new(model: TxnModel) -> TxnWorkload {
        TxnWorkload { shape: TxnShape::new(model) }
    }
}

impl Workload for TxnWorkload {
    fn name(&self) -> &str {
        self.shape.model.name()
    }

    fn generator(&self, seed: u64, worker: u64, concurrency: usize) -> Box<dyn Generator> {
        self.shape.generator(seed, worker, concurrency)
    }

    fn data_type(&self) -> DataType {
        match self.shape.model {
            TxnModel::ListAppend => DataType::ListAppend,
            TxnModel::RwRegister => DataType::RwRegister,
        }
    }

    fn final_ops(&self, keys: &[String]) -> Vec<Op> {
        final_reads(keys)
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        let model = self.shape.model;
        vec![checker(model.name(), move |h| txn_result(model.name(), model, h.events))]
    }

    /// The single-object ladder does not describe transactions: the transactional verdict is
    /// the checker's, placed on the transactional map as results.json `isolation`.
    fn consistency(&self, _events: &[Event], _checkers: &[CheckerResult]) -> Consistency {
        Consistency::not_checked(&format!(
            "transactional workload: the {} checker decides the transactional models (results.json isolation, docs/transactions.md)",
            self.shape.model.name()
        ))
    }
}

/// Read-only transactions reading every key in `keys`, [`FINAL_READS_PER_TXN`] at a time.
pub fn final_reads(keys: &[String]) -> Vec<Op> {
    keys.chunks(FINAL_READS_PER_TXN)
        .map(|chunk| Op {
            f: "txn".into(),
            key: None,
            value: Value::Array(chunk.iter().map(|k| json!(["r", k, null])).collect()),
        })
        .collect()
}

/// The transactional checker `name` over `model`, judged against strict serializability.
pub fn txn_result(name: &str, model: TxnModel, events: &[Event]) -> CheckerResult {
    let r = check(events, model, ConsistencyModel::StrictSerializable, &TxnOptions::default());
    let counts: Vec<String> = r.anomaly_counts.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    let reason = match r.verdict {
        Verdict::Valid if counts.is_empty() => format!(
            "{} transactions ({} ok, {} info, {} fail): no anomaly; strict serializable",
            r.txns, r.txns_ok, r.txns_info, r.txns_fail
        ),
        _ => {
            let ruled: Vec<&str> = r.not.iter().map(|m| m.name()).collect();
            let why = r.reason.clone().unwrap_or_default();
            format!("{why}; anomalies: {}; ruled out: {}", counts.join(", "), ruled.join(", "))
        }
    };
    let mut details = serde_json::to_value(&r).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut details {
        m.insert("text".into(), json!(r.to_text()));
    }
    CheckerResult { name: name.into(), verdict: r.verdict, reason: Some(reason), details }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn txns(shape: &TxnShape, seed: u64, worker: u64, n: usize) -> Vec<Op> {
        let mut g = shape.generator(seed, worker, 5);
        (0..n).map(|_| g.next_op().expect("op")).collect()
    }

    #[test]
    fn transactions_are_seeded_small_and_write_unique_values_over_a_rotating_pool() {
        let shape = TxnShape::new(TxnModel::ListAppend);
        assert_eq!(txns(&shape, 1, 0, 100), txns(&shape, 1, 0, 100));
        assert_ne!(txns(&shape, 1, 0, 100), txns(&shape, 2, 0, 100));
        let (mut values, mut writes_per_key) = (BTreeSet::new(), BTreeMap::<String, u64>::new());
        let (mut reads, mut micro) = (0, 0);
        for w in 0..5 {
            for t in txns(&shape, 3, w, 600) {
                let ops = t.value.as_array().unwrap();
                assert!((1..=4).contains(&ops.len()) && t.f == "txn" && t.key.is_none(), "{t:?}");
                for op in ops {
                    micro += 1;
                    let key = op[1].as_str().unwrap().to_string();
                    match op[0].as_str().unwrap() {
                        "r" => reads += usize::from(op[2].is_null()),
                        "append" => {
                            assert!(values.insert(op[2].as_i64().unwrap()), "value repeated: {op}");
                            *writes_per_key.entry(key).or_default() += 1;
                        }
                        f => panic!("unexpected micro-op {f}"),
                    }
                }
            }
        }
        assert!((micro * 4 / 10..micro * 6 / 10).contains(&reads), "about half reads: {reads} of {micro}");
        // Keys rotate: many keys in all, each written about 32 times (5 workers in step).
        let most = writes_per_key.values().max().copied().unwrap();
        assert!(writes_per_key.len() > 50 && most <= 64, "{} keys, at most {most} writes", writes_per_key.len());
    }

    #[test]
    fn final_reads_cover_every_key_in_bounded_transactions() {
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let ops = final_reads(&keys);
        assert_eq!(ops.len(), 3);
        let read: Vec<&str> =
            ops.iter().flat_map(|o| o.value.as_array().unwrap()).map(|m| m[1].as_str().unwrap()).collect();
        assert_eq!(read, keys.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ops.iter().all(|o| o.value.as_array().unwrap().len() <= FINAL_READS_PER_TXN));
    }
}
