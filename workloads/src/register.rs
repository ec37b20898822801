//! The register workload: `read`, `write` and `cas` on independent keys, each key an integer
//! register (initially `null`), checked for linearizability with the cas-register model.
//!
//! Independent keys keep the checker fast (Jepsen's `independent`): the linearizability search
//! is exponential in the concurrency of one key's history, so each key receives a bounded number
//! of operations and the workers then move on to fresh keys. Worker `w`'s `j`-th operation goes
//! to key `k{(j / ops_per_key) * active_keys + slot}`, `slot` drawn from `w`'s seeded stream:
//! all workers share `active_keys` keys at a time, each key sees at most
//! `concurrency × ops_per_key` operations, and the schedule depends only on (seed, worker).
//!
//! Values are drawn from a small range so that cas succeeds often and reads can tell writes
//! apart only when it matters — the classic Jepsen register shape.

use faultline_checker::history::{Event, EventType};
use faultline_checker::{check_linearizable, CheckOptions, ModelKind, Verdict};
use faultline_core::client::http::NodeHttp;
use faultline_core::client::{BoxFuture, Completion, Op};
use faultline_core::generator::{rng_for, Generator};
use faultline_core::workload::{CheckerResult, Workload};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// Shape of the register workload.
#[derive(Clone, Debug)]
pub struct Register {
    /// Keys in use at once.
    pub active_keys: u64,
    /// Operations one worker sends to one key generation before moving on.
    pub ops_per_key: u64,
    /// Values are drawn from 0..value_max.
    pub value_max: i64,
    /// Percent of reads and of writes; the rest are cas.
    pub read_pct: u32,
    pub write_pct: u32,
    /// Budget of the linearizability check.
    pub check_time_limit_s: u64,
}

impl Default for Register {
    fn default() -> Self {
        Register {
            active_keys: 3,
            ops_per_key: 30,
            value_max: 5,
            read_pct: 50,
            write_pct: 25,
            check_time_limit_s: 60,
        }
    }
}

/// One worker's register operations.
pub struct RegisterGen {
    shape: Register,
    rng: ChaCha8Rng,
    n: u64,
}

impl Generator for RegisterGen {
    fn next_op(&mut self) -> Option<Op> {
        let generation = self.n / self.shape.ops_per_key.max(1);
        self.n += 1;
        let slot = self.rng.random_range(0..self.shape.active_keys.max(1));
        let key = format!("k{}", generation * self.shape.active_keys.max(1) + slot);
        let roll = self.rng.random_range(0..100u32);
        let v = self.shape.value_max.max(1);
        let (f, value) = if roll < self.shape.read_pct {
            ("read", Value::Null)
        } else if roll < self.shape.read_pct + self.shape.write_pct {
            ("write", json!(self.rng.random_range(0..v)))
        } else {
            (
                "cas",
                json!([self.rng.random_range(0..v), self.rng.random_range(0..v)]),
            )
        };
        Some(Op {
            f: f.into(),
            key: Some(key),
            value,
        })
    }
}

impl Workload for Register {
    fn name(&self) -> &str {
        "register"
    }

    fn generator(&self, seed: u64, worker: u64, _concurrency: usize) -> Box<dyn Generator> {
        Box::new(RegisterGen {
            shape: self.clone(),
            rng: rng_for(seed, "register", worker),
            n: 0,
        })
    }

    fn invoke<'a>(
        &'a self,
        http: &'a NodeHttp,
        addr: &'a str,
        node: &'a str,
        op: &'a Op,
    ) -> BoxFuture<'a, Completion> {
        Box::pin(async move {
            let key = op.key.clone().unwrap_or_default();
            let (call, body) = match op.f.as_str() {
                "read" => ("read", json!({ "key": key })),
                "write" => ("write", json!({ "key": key, "value": op.value })),
                "cas" => (
                    "cas",
                    json!({ "key": key, "from": op.value[0], "to": op.value[1] }),
                ),
                other => {
                    return Completion::fail(op.value.clone(), format!("unknown-op:{other}"), node)
                }
            };
            match http.kv(addr, call, &body).await {
                Ok(answer) => {
                    let value = if call == "read" {
                        answer.get("value").cloned().unwrap_or(Value::Null)
                    } else {
                        op.value.clone()
                    };
                    Completion::ok(value, node)
                }
                // A read changes nothing, so an unanswered read can be recorded as not having
                // happened (fail) without hiding anything from the checker.
                Err(e) if call == "read" => Completion::fail(Value::Null, e.error, node),
                Err(e) if e.definite => Completion::fail(op.value.clone(), e.error, node),
                Err(e) => Completion::info(op.value.clone(), e.error, node),
            }
        })
    }

    fn final_ops(&self, keys: &[String]) -> Vec<Op> {
        keys.iter()
            .map(|k| Op {
                f: "read".into(),
                key: Some(k.clone()),
                value: Value::Null,
            })
            .collect()
    }

    fn check(&self, events: &[Event]) -> Vec<CheckerResult> {
        let opts = CheckOptions {
            time_limit: Some(std::time::Duration::from_secs(self.check_time_limit_s)),
            ..CheckOptions::default()
        };
        let report = check_linearizable(events, ModelKind::CasRegister, &opts);
        let verdict = match report.verdict {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        };
        let not_valid: Vec<_> = report
            .keys
            .iter()
            .filter(|k| k.verdict != Verdict::Valid)
            .collect();
        let ok_reads = events
            .iter()
            .filter(|e| e.kind == EventType::Ok && e.f == "read" && !e.value.is_null())
            .count();
        let details = json!({
            "model": report.model.name(),
            "keys": report.keys.len(),
            "ops_total": report.ops_total,
            "ops_ok": report.ops_ok,
            "ops_fail": report.ops_fail,
            "ops_info": report.ops_info,
            "ok_reads_of_written_values": ok_reads,
            "elapsed_ms": report.elapsed_ms,
            "not_valid_keys": not_valid,
            "explanation": report.explanation,
            "text": report.to_text(),
        });
        vec![CheckerResult {
            name: "linearizable".into(),
            verdict: verdict.into(),
            reason: report.reason.clone(),
            details,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::Process;

    fn ops(seed: u64, worker: u64, n: usize) -> Vec<Op> {
        let mut g = Register::default().generator(seed, worker, 10);
        (0..n).map(|_| g.next_op().unwrap()).collect()
    }

    #[test]
    fn same_seed_same_ops_other_seed_or_worker_other_ops() {
        assert_eq!(ops(5, 2, 300), ops(5, 2, 300));
        assert_ne!(ops(5, 2, 300), ops(6, 2, 300));
        assert_ne!(ops(5, 2, 300), ops(5, 3, 300));
    }

    #[test]
    fn keys_rotate_and_each_generation_is_bounded() {
        let shape = Register::default();
        let all = ops(1, 0, 300);
        for (j, op) in all.iter().enumerate() {
            let k: u64 = op.key.as_ref().unwrap()[1..].parse().unwrap();
            let generation = j as u64 / shape.ops_per_key;
            assert!(k / shape.active_keys == generation, "op {j} key {k}");
        }
        // 300 ops over 10 generations of 3 keys: many distinct keys, none with more than
        // ops_per_key operations from one worker.
        let mut per_key = std::collections::BTreeMap::new();
        for op in &all {
            *per_key.entry(op.key.clone().unwrap()).or_insert(0u64) += 1;
        }
        assert!(per_key.len() >= 20);
        assert!(per_key.values().all(|&c| c <= shape.ops_per_key));
    }

    #[test]
    fn mix_and_value_shapes() {
        let all = ops(3, 1, 2000);
        let count = |f: &str| all.iter().filter(|o| o.f == f).count();
        let (r, w, c) = (count("read"), count("write"), count("cas"));
        assert_eq!(r + w + c, 2000);
        assert!((900..1100).contains(&r), "reads {r}");
        assert!((400..600).contains(&w), "writes {w}");
        assert!((400..600).contains(&c), "cas {c}");
        for o in &all {
            match o.f.as_str() {
                "read" => assert!(o.value.is_null()),
                "write" => assert!((0..5).contains(&o.value.as_i64().unwrap())),
                _ => assert_eq!(o.value.as_array().unwrap().len(), 2),
            }
        }
    }

    fn ev(index: u64, kind: EventType, p: u64, f: &str, value: Value) -> Event {
        Event {
            index,
            time: index * 10,
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some("k0".into()),
            value,
            error: None,
            node: None,
        }
    }

    #[test]
    fn checker_judges_a_stale_read_invalid_and_a_clean_history_valid() {
        use EventType::*;
        let w = Register::default();
        let good = vec![
            ev(0, Invoke, 0, "write", json!(1)),
            ev(1, Ok, 0, "write", json!(1)),
            ev(2, Invoke, 1, "read", Value::Null),
            ev(3, Ok, 1, "read", json!(1)),
        ];
        let r = w.check(&good);
        assert_eq!(r[0].verdict, "valid", "{:?}", r[0].reason);
        let stale = vec![
            ev(0, Invoke, 0, "write", json!(1)),
            ev(1, Ok, 0, "write", json!(1)),
            ev(2, Invoke, 0, "write", json!(2)),
            ev(3, Ok, 0, "write", json!(2)),
            ev(4, Invoke, 1, "read", Value::Null),
            ev(5, Ok, 1, "read", json!(1)),
        ];
        let r = w.check(&stale);
        assert_eq!(r[0].verdict, "invalid");
        assert!(
            r[0].reason.as_deref().unwrap().contains("k0"),
            "{:?}",
            r[0].reason
        );
    }
}
