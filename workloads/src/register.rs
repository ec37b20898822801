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
//! Written values are unique: worker `w` of `c` writes `n·c + w + 1` as its `n`-th operation
//! (a write's value, a cas's `to`), so no value is written twice and the checker decides each
//! key with its polynomial zone procedure instead of the exponential search (docs/history-format.md,
//! "Unique values"). A cas compares with the value this worker last wrote to the key (`null` if
//! none): it succeeds when nobody wrote since, and otherwise fails with `cas-mismatch`, an
//! observation the checker uses. `active_keys` and `ops_per_key` (`faultline run --active-keys
//! N --ops-per-key N`) can thus put thousands of operations on one key.
//!
//! After the heal and the quiet recovery every node reads every key, so the consistency
//! comparison ([`Register::consistency`]) can judge convergence. Its ladder: linearizable (the
//! run's checker); when that is not valid, sequential consistency per key, and when that is not
//! valid either, read-your-writes + monotonic reads (faultline_checker::{sequential, session});
//! and always convergent: every node's final read of a key equal, and the value one that some
//! write or cas that did not definitely fail wrote (or nil when no write was acknowledged).

use std::collections::BTreeSet;
use std::time::Duration;

use faultline_checker::convergence::{check_convergence, client_ops, Outcome};
use faultline_checker::hierarchy::{Consistency, Model, ModelResult, ModelVerdict};
use faultline_checker::history::{Event, EventType};
use faultline_checker::orders::OrderReport;
use faultline_checker::sequential::check_sequential;
use faultline_checker::session::check_session;
use faultline_checker::{check_linearizable, CheckOptions, ModelKind, Verdict};

use faultline_core::checker::{checker, Checker};
use faultline_core::client::{DataType, Op};
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
    /// Percent of reads and of writes; the rest are cas.
    pub read_pct: u32,
    pub write_pct: u32,
    /// Budget of the linearizability check.
    pub check_time_limit_s: u64,
    /// Budget of each weaker model's check (sequential, session), run only when the stronger
    /// one is not valid.
    pub weak_check_time_limit_s: u64,
}

impl Default for Register {
    fn default() -> Self {
        Register {
            active_keys: 3,
            ops_per_key: 30,
            read_pct: 50,
            write_pct: 25,
            check_time_limit_s: 60,
            weak_check_time_limit_s: 15,
        }
    }
}

/// One worker's register operations.
pub struct RegisterGen {
    shape: Register,
    rng: ChaCha8Rng,
    n: u64,
    /// This worker's number and the number of workers: its values are `n·workers + worker + 1`.
    worker: u64,
    workers: u64,
    /// The key this worker last wrote (write or cas) and the value.
    last_written: Option<(String, i64)>,
}

impl Generator for RegisterGen {
    fn next_op(&mut self) -> Option<Op> {
        let generation = self.n / self.shape.ops_per_key.max(1);
        // Unique across workers and operations (i64: ~9e18 / workers operations each).
        let fresh = (self.n * self.workers.max(1) + self.worker + 1) as i64;
        self.n += 1;
        let slot = self.rng.random_range(0..self.shape.active_keys.max(1));
        let key = format!("k{}", generation * self.shape.active_keys.max(1) + slot);
        let roll = self.rng.random_range(0..100u32);
        let (f, value) = if roll < self.shape.read_pct {
            ("read", Value::Null)
        } else if roll < self.shape.read_pct + self.shape.write_pct {
            self.last_written = Some((key.clone(), fresh));
            ("write", json!(fresh))
        } else {
            let from = match &self.last_written {
                Some((k, v)) if *k == key => json!(v),
                _ => Value::Null,
            };
            self.last_written = Some((key.clone(), fresh));
            ("cas", json!([from, fresh]))
        };
        Some(Op { f: f.into(), key: Some(key), value })
    }
}

impl Workload for Register {
    fn name(&self) -> &str {
        "register"
    }

    fn generator(&self, seed: u64, worker: u64, concurrency: usize) -> Box<dyn Generator> {
        Box::new(RegisterGen {
            shape: self.clone(),
            rng: rng_for(seed, "register", worker),
            n: 0,
            worker,
            workers: concurrency as u64,
            last_written: None,
        })
    }

    fn data_type(&self) -> DataType {
        DataType::Register
    }

    fn final_ops(&self, keys: &[String]) -> Vec<Op> {
        keys.iter().map(|k| Op { f: "read".into(), key: Some(k.clone()), value: Value::Null }).collect()
    }

    fn final_ops_on_every_node(&self) -> bool {
        true
    }

    fn consistency(&self, events: &[Event], checkers: &[CheckerResult]) -> Consistency {
        let opts = CheckOptions {
            time_limit: Some(Duration::from_secs(self.weak_check_time_limit_s)),
            memory_limit_bytes: Some(1 << 30),
            ..CheckOptions::default()
        };
        register_consistency(events, checkers, &opts)
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        let time_limit_s = self.check_time_limit_s;
        vec![checker("linearizable", move |h| linearizable(h.events, time_limit_s))]
    }
}

/// The linearizability checker (cas-register model, every key), as a [`CheckerResult`].
fn linearizable(events: &[Event], check_time_limit_s: u64) -> CheckerResult {
    let opts = CheckOptions {
        time_limit: Some(std::time::Duration::from_secs(check_time_limit_s)),
        ..CheckOptions::default()
    };
    let report = check_linearizable(events, ModelKind::CasRegister, &opts);
    let not_valid: Vec<_> = report.keys.iter().filter(|k| k.verdict != Verdict::Valid).collect();
    let ok_reads = events.iter().filter(|e| e.kind == EventType::Ok && e.f == "read" && !e.value.is_null()).count();
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
    CheckerResult { name: "linearizable".into(), verdict: report.verdict, reason: report.reason.clone(), details }
}

/// A weak model's report as a hierarchy entry.
fn entry(model: Model, r: &OrderReport, valid_reason: &str) -> ModelResult {
    let reason = match r.verdict {
        Verdict::Valid => format!("{valid_reason} ({} keys, {:.0} ms)", r.keys.len(), r.elapsed_ms),
        _ => r.reason.clone().unwrap_or_else(|| "undecided".into()),
    };
    ModelResult::new(model, r.verdict, reason)
}

/// The register's ladder (see the module documentation): each weaker model is checked only when
/// the stronger one is not valid, since linearizable ⇒ sequential (per key) ⇒ session.
pub fn register_consistency(events: &[Event], checkers: &[CheckerResult], opts: &CheckOptions) -> Consistency {
    let lin = checkers.iter().find(|c| c.name == "linearizable");
    let lin_verdict = lin.map_or(ModelVerdict::NotChecked, |c| c.verdict.into());
    let lin_reason = match (lin_verdict, lin.and_then(|c| c.reason.clone())) {
        (ModelVerdict::Valid, _) => "every key linearizable (cas-register model)".to_string(),
        (_, Some(r)) => r,
        (_, None) => "no linearizability checker result".to_string(),
    };
    let mut models = vec![ModelResult::new(Model::Linearizable, lin_verdict, lin_reason)];
    if lin_verdict == ModelVerdict::Valid {
        models.push(ModelResult::new(Model::Sequential, ModelVerdict::NotChecked, "implied by linearizable"));
        models.push(ModelResult::new(Model::Session, ModelVerdict::NotChecked, "implied by linearizable"));
    } else {
        // One time budget for both checks, not one each.
        let deadline = opts.time_limit.map(|t| std::time::Instant::now() + t);
        let seq = check_sequential(events, ModelKind::CasRegister, opts);
        models.push(entry(Model::Sequential, &seq, "every key has an order respecting each process's order"));
        if seq.verdict == Verdict::Valid {
            models.push(ModelResult::new(Model::Session, ModelVerdict::NotChecked, "implied by sequential (per key)"));
        } else {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let session =
                check_session(events, ModelKind::CasRegister, &CheckOptions { time_limit: left, ..opts.clone() });
            models.push(entry(Model::Session, &session, "every process reads its writes, and its reads never go back"));
        }
    }
    let (verdict, reason) = register_convergence(events);
    models.push(ModelResult::new(Model::Convergent, verdict, reason));
    Consistency::from_models(models)
}

/// Convergence of a register: every node's last final read of each key equal (the convergence
/// checker), and that value written by some write or cas that did not definitely fail, or nil
/// when no write of the key was acknowledged.
fn register_convergence(events: &[Event]) -> (Verdict, String) {
    let r = check_convergence(events, "read");
    if r.verdict != Verdict::Valid {
        return (r.verdict, r.reason.unwrap_or_else(|| "undecided".into()));
    }
    let Ok(ops) = client_ops(events) else {
        return (Verdict::Unknown, "malformed history".into());
    };
    for k in &r.keys {
        let Some(common) = k.finals.first().map(|f| f.value.clone()) else { continue };
        let of_key = ops.iter().filter(|o| o.key == k.key && o.outcome != Outcome::Fail);
        let mut written = BTreeSet::new();
        let mut acknowledged = false;
        for o in of_key {
            let v = match o.f.as_str() {
                "write" => o.invoke_value.clone(),
                "cas" => o.invoke_value.get(1).cloned().unwrap_or(Value::Null),
                _ => continue,
            };
            acknowledged |= o.outcome == Outcome::Ok;
            written.insert(v.to_string());
        }
        let name = k.key.clone().unwrap_or_default();
        if common.is_null() && acknowledged {
            return (
                Verdict::Invalid,
                format!("key {name:?}: every node reads nil after heal although writes were acknowledged"),
            );
        }
        if !common.is_null() && !written.contains(&common.to_string()) {
            return (Verdict::Invalid, format!("key {name:?}: every node reads {common}, which no write wrote"));
        }
    }
    let within = r.converged_within_ms.map_or(String::new(), |ms| format!(", settled within {ms:.0} ms of the heal"));
    (Verdict::Valid, format!("{} keys: every node's final read equal and written{within}", r.keys.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::Process;
    use faultline_core::checker::{check_all, History};

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
                "write" => assert!(o.value.as_i64().unwrap() > 0),
                _ => assert_eq!(o.value.as_array().unwrap().len(), 2),
            }
        }
    }

    /// Every value written (write, cas `to`) by any worker is unique, and a cas compares with
    /// the worker's own last write to that key (or null): the checker's zone procedure applies.
    #[test]
    fn written_values_are_unique_across_workers() {
        let mut written = std::collections::BTreeSet::new();
        for worker in 0..10 {
            let mut last: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
            for o in ops(9, worker, 500) {
                let key = o.key.clone().unwrap();
                let v = match o.f.as_str() {
                    "write" => o.value.clone(),
                    "cas" => {
                        assert_eq!(o.value[0], last.get(&key).cloned().unwrap_or(Value::Null), "{o:?}");
                        o.value[1].clone()
                    }
                    _ => continue,
                };
                assert!(written.insert(v.as_i64().unwrap()), "{v} written twice");
                last.clear();
                last.insert(key, v);
            }
        }
        assert!(written.len() > 2000);
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
        let r = check_all(&w.checkers(), &History::of(&good));
        assert_eq!(r[0].verdict, Verdict::Valid, "{:?}", r[0].reason);
        let stale = vec![
            ev(0, Invoke, 0, "write", json!(1)),
            ev(1, Ok, 0, "write", json!(1)),
            ev(2, Invoke, 0, "write", json!(2)),
            ev(3, Ok, 0, "write", json!(2)),
            ev(4, Invoke, 1, "read", Value::Null),
            ev(5, Ok, 1, "read", json!(1)),
        ];
        let r = check_all(&w.checkers(), &History::of(&stale));
        assert_eq!(r[0].verdict, Verdict::Invalid);
        assert!(r[0].reason.as_deref().unwrap().contains("k0"), "{:?}", r[0].reason);
    }

    fn on(node: &str, mut e: Event) -> Event {
        e.node = Some(node.into());
        e
    }

    /// p0 writes 1 then 2 on n1; p1 reads `stale` on n2; after the heal both nodes read
    /// `finals`.
    fn run_history(stale: i64, finals: [i64; 2]) -> Vec<Event> {
        use EventType::*;
        let mut h = vec![
            on("n1", ev(0, Invoke, 0, "write", json!(1))),
            on("n1", ev(1, Ok, 0, "write", json!(1))),
            on("n1", ev(2, Invoke, 0, "write", json!(2))),
            on("n1", ev(3, Ok, 0, "write", json!(2))),
            on("n2", ev(4, Invoke, 1, "read", Value::Null)),
            on("n2", ev(5, Ok, 1, "read", json!(stale))),
        ];
        h.push(Event {
            index: 6,
            time: 60,
            kind: Info,
            process: Process::Nemesis,
            f: "heal".into(),
            key: None,
            value: json!({}),
            error: None,
            node: None,
        });
        for (i, (node, v)) in [("n1", finals[0]), ("n2", finals[1])].into_iter().enumerate() {
            let at = 7 + 2 * i as u64;
            h.push(on(node, ev(at, Invoke, 9, "read", Value::Null)));
            h.push(on(node, ev(at + 1, Ok, 9, "read", json!(v))));
        }
        h
    }

    fn ladder(h: &[Event]) -> Consistency {
        let w = Register::default();
        w.consistency(h, &check_all(&w.checkers(), &History::of(h)))
    }

    #[test]
    fn the_ladder_places_each_history_on_its_strongest_model() {
        use faultline_checker::hierarchy::Strongest;
        let c = ladder(&run_history(2, [2, 2]));
        assert_eq!(c.strongest, Strongest::Linearizable, "{c:?}");
        assert_eq!(c.model(Model::Sequential).unwrap().verdict, ModelVerdict::NotChecked);
        assert_eq!(c.model(Model::Convergent).unwrap().verdict, ModelVerdict::Valid);
        // A stale read by another process: sequential, not linearizable.
        let c = ladder(&run_history(1, [2, 2]));
        assert_eq!(c.strongest, Strongest::Sequential, "{c:?}");
        assert_eq!(c.model(Model::Linearizable).unwrap().verdict, ModelVerdict::Invalid);
        assert_eq!(c.model(Model::Session).unwrap().verdict, ModelVerdict::NotChecked);
        // The final reads disagree: p9 reads 2 on n1 then 1 on n2. Not sequential (p0 wrote 1
        // before 2), but session: W = nil, 2, 1 serves every process (monotonic writes are not
        // part of it); and the nodes have not converged.
        let c = ladder(&run_history(2, [2, 1]));
        assert_eq!(c.model(Model::Convergent).unwrap().verdict, ModelVerdict::Invalid, "{c:#?}");
        assert_eq!(c.model(Model::Sequential).unwrap().verdict, ModelVerdict::Invalid, "{c:#?}");
        assert_eq!(c.model(Model::Session).unwrap().verdict, ModelVerdict::Valid);
        assert_eq!(c.strongest, Strongest::Session, "{c:?}");
        // p9 then reads 2 again on n1: 2, 1, 2 goes back in any order of the writes.
        let mut h = run_history(2, [2, 1]);
        h.push(on("n1", ev(11, EventType::Invoke, 9, "read", Value::Null)));
        h.push(on("n1", ev(12, EventType::Ok, 9, "read", json!(2))));
        let c = ladder(&h);
        assert_eq!(c.model(Model::Session).unwrap().verdict, ModelVerdict::Invalid, "{c:#?}");
        assert_eq!(c.strongest, Strongest::None, "{c:?}");
        // Converged on a value never written.
        let c = ladder(&run_history(2, [7, 7]));
        let conv = c.model(Model::Convergent).unwrap();
        assert_eq!(conv.verdict, ModelVerdict::Invalid);
        assert!(conv.reason.contains("no write wrote"), "{}", conv.reason);
    }

    #[test]
    fn final_reads_go_to_every_node() {
        assert!(Register::default().final_ops_on_every_node());
    }
}
