//! The set workload (Jepsen's `set`, Maelstrom's `g-set`): workers add unique integers to a few
//! sets and read them; after the heal and the quiet recovery every node reads every set, in two
//! rounds. Judged by the set-full checker (no acknowledged add lost, nothing unexpected, and how
//! long elements took to be visible everywhere) and the convergence checker (every node's last
//! final read equal; the rounds bracket the time to converge).
//!
//! Elements are unique across the whole run: worker `w`'s `j`-th add is `w × 10⁹ + j`, so each
//! element's fate can be told apart. The schedule depends only on (seed, worker).

use faultline_checker::convergence::check_convergence;
use faultline_checker::hierarchy::{Consistency, Model, ModelResult, ModelVerdict};
use faultline_checker::history::Event;
use faultline_checker::session::check_grow_only_set;
use faultline_checker::set_full::check_set;
use faultline_checker::Verdict;

use faultline_core::checker::{checker, Checker};
use faultline_core::client::{DataType, Op};
use faultline_core::generator::{rng_for, Generator};
use faultline_core::workload::{CheckerResult, Workload};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// Elements per worker at most (worker `w`'s elements are `w × ELEMENTS_PER_WORKER + j`).
pub const ELEMENTS_PER_WORKER: i64 = 1_000_000_000;

/// Shape of the set workload.
#[derive(Clone, Debug)]
pub struct SetWorkload {
    /// Sets in use (`s0`, `s1`, ...).
    pub keys: u64,
    /// Percent of reads; the rest are adds.
    pub read_pct: u32,
}

impl Default for SetWorkload {
    fn default() -> Self {
        SetWorkload { keys: 2, read_pct: 30 }
    }
}

struct SetGen {
    shape: SetWorkload,
    rng: ChaCha8Rng,
    worker: u64,
    next: i64,
}

impl Generator for SetGen {
    fn next_op(&mut self) -> Option<Op> {
        let key = format!("s{}", self.rng.random_range(0..self.shape.keys.max(1)));
        if self.rng.random_range(0..100u32) < self.shape.read_pct {
            return Some(Op { f: "read".into(), key: Some(key), value: Value::Null });
        }
        if self.next >= ELEMENTS_PER_WORKER {
            return None; // bounded: no element may repeat
        }
        let e = self.worker as i64 * ELEMENTS_PER_WORKER + self.next;
        self.next += 1;
        Some(Op { f: "add".into(), key: Some(key), value: json!(e) })
    }
}

/// Rounds of final reads: the last round is what the checkers judge; an earlier round still
/// disagreeing brackets the time to converge (the convergence checker's lower bound).
pub const FINAL_READ_ROUNDS: usize = 2;

/// Every key read [`FINAL_READ_ROUNDS`] times, round after round (each read on every node).
pub(crate) fn final_reads(keys: &[String]) -> Vec<Op> {
    (0..FINAL_READ_ROUNDS)
        .flat_map(|_| keys.iter().map(|k| Op { f: "read".into(), key: Some(k.clone()), value: Value::Null }))
        .collect()
}

/// The convergence checker over `read` operations, as a [`CheckerResult`].
pub(crate) fn convergence_result(events: &[Event]) -> CheckerResult {
    let r = check_convergence(events, "read");
    CheckerResult {
        name: "convergence".into(),
        verdict: r.verdict,
        reason: r.reason.clone(),
        details: serde_json::to_value(&r).unwrap_or(Value::Null),
    }
}

/// The convergent rung of the weak workloads: the convergence checker and the workload's own
/// checker of the final state (`own`: set-full, counter) together, since converging on a state
/// that lost acknowledged updates (or invented some) is not eventual consistency.
pub(crate) fn convergent(checkers: &[CheckerResult], own: &str) -> ModelResult {
    let pick = |name: &str| checkers.iter().find(|c| c.name == name);
    let (Some(conv), Some(mine)) = (pick("convergence"), pick(own)) else {
        return ModelResult::new(
            Model::Convergent,
            ModelVerdict::NotChecked,
            format!("no convergence or {own} result"),
        );
    };
    let both = [conv, mine];
    let verdict = if both.iter().any(|c| c.verdict == Verdict::Invalid) {
        ModelVerdict::Invalid
    } else if both.iter().all(|c| c.verdict == Verdict::Valid) {
        ModelVerdict::Valid
    } else {
        ModelVerdict::Unknown
    };
    let reason = match verdict {
        ModelVerdict::Valid => format!("every node's final reads equal (convergence) and {own} valid"),
        _ => both
            .iter()
            .filter(|c| c.verdict != Verdict::Valid)
            .map(|c| format!("{} {}: {}", c.name, c.verdict, c.reason.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("; "),
    };
    ModelResult::new(Model::Convergent, verdict, reason)
}

impl Workload for SetWorkload {
    fn name(&self) -> &str {
        "set"
    }

    fn generator(&self, seed: u64, worker: u64, _concurrency: usize) -> Box<dyn Generator> {
        Box::new(SetGen { shape: self.clone(), rng: rng_for(seed, "set", worker), worker, next: 0 })
    }

    fn data_type(&self) -> DataType {
        DataType::Set
    }

    fn final_ops(&self, keys: &[String]) -> Vec<Op> {
        final_reads(keys)
    }

    fn final_ops_on_every_node(&self) -> bool {
        true
    }

    /// The set's ladder: set-full's stale, lost or unexpected elements refute linearizability
    /// (a linearizable set shows an acknowledged add to every later read), but their absence
    /// does not prove it (no linearizability search over sets); no sequential check; session by
    /// `check_grow_only_set`; convergent by convergence and set-full together.
    fn consistency(&self, events: &[Event], checkers: &[CheckerResult]) -> Consistency {
        let mut models = Vec::new();
        if let Some(full) = checkers.iter().find(|c| c.name == "set-full") {
            let n = |k: &str| full.details[k].as_u64().unwrap_or(0);
            let (stale, lost, unexpected) = (n("stale"), n("lost"), n("unexpected"));
            models.push(if stale + lost + unexpected > 0 {
                ModelResult::new(
                    Model::Linearizable,
                    ModelVerdict::Invalid,
                    format!("set-full: {stale} stale (acknowledged, then missing from a later read), {lost} lost, {unexpected} unexpected elements"),
                )
            } else {
                ModelResult::new(
                    Model::Linearizable,
                    ModelVerdict::NotChecked,
                    "set-full found no stale, lost or unexpected element: necessary for linearizability, not sufficient (no linearizability search over sets)",
                )
            });
        }
        models.push(ModelResult::new(
            Model::Sequential,
            ModelVerdict::NotChecked,
            "no sequential-consistency checker for sets",
        ));
        let session = check_grow_only_set(events);
        let reason = match session.verdict {
            Verdict::Valid => {
                "every process's reads contain its own acknowledged adds and its earlier reads".to_string()
            }
            _ => session.reason.clone().unwrap_or_default(),
        };
        models.push(ModelResult::new(Model::Session, session.verdict, reason));
        models.push(convergent(checkers, "set-full"));
        Consistency::from_models(models)
    }

    fn checkers(&self) -> Vec<Box<dyn Checker>> {
        vec![checker("set-full", |h| set_full(h.events)), checker("convergence", |h| convergence_result(h.events))]
    }
}

/// Jepsen's set-full over `add` and `read` operations, as a [`CheckerResult`].
fn set_full(events: &[Event]) -> CheckerResult {
    {
        let r = check_set(events);
        let mut details = serde_json::to_value(&r).unwrap_or(Value::Null);
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        if let Value::Object(m) = &mut details {
            m.insert(
                "text".into(),
                json!(format!(
                    "{} attempted, {} acknowledged: {} ok, {} lost, {} divergent, {} never read, {} unexpected; {} stale; visible everywhere after p50 {} ms, p99 {} ms, max {} ms",
                    r.attempted,
                    r.acknowledged,
                    r.ok,
                    r.lost,
                    r.divergent,
                    r.never_read,
                    r.unexpected,
                    r.stale,
                    ms(r.visibility.p50_ms),
                    ms(r.visibility.p99_ms),
                    ms(r.visibility.max_ms)
                )),
            );
        }
        CheckerResult { name: "set-full".into(), verdict: r.verdict, reason: r.reason.clone(), details }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::{EventType, Process};
    use faultline_core::checker::{check_all, History};

    fn ops(seed: u64, worker: u64, n: usize) -> Vec<Op> {
        let mut g = SetWorkload::default().generator(seed, worker, 4);
        (0..n).map(|_| g.next_op().unwrap()).collect()
    }

    #[test]
    fn schedule_is_seeded_and_elements_are_unique_across_workers() {
        assert_eq!(ops(1, 0, 200), ops(1, 0, 200));
        assert_ne!(ops(1, 0, 200), ops(2, 0, 200));
        let mut all = std::collections::BTreeSet::new();
        let mut reads = 0;
        for w in 0..4 {
            for o in ops(9, w, 500) {
                match o.f.as_str() {
                    "add" => assert!(all.insert(o.value.as_i64().unwrap()), "duplicate element {}", o.value),
                    "read" => reads += 1,
                    f => panic!("unexpected op {f}"),
                }
                assert!(["s0", "s1"].contains(&o.key.as_deref().unwrap()));
            }
        }
        assert!((450..750).contains(&reads), "about 30% reads: {reads}");
    }

    fn ev(index: u64, kind: EventType, p: u64, f: &str, value: Value, node: &str) -> Event {
        Event {
            index,
            time: index * 1000,
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some("s0".into()),
            value,
            error: None,
            node: Some(node.into()),
        }
    }

    #[test]
    fn checkers_catch_a_lost_add_and_a_disagreement() {
        use EventType::*;
        let heal = Event {
            index: 2,
            time: 2000,
            kind: Info,
            process: Process::Nemesis,
            f: "heal".into(),
            key: None,
            value: json!({}),
            error: None,
            node: None,
        };
        let good = vec![
            ev(0, Invoke, 0, "add", json!(5), "n1"),
            ev(1, Ok, 0, "add", json!(5), "n1"),
            heal.clone(),
            ev(3, Invoke, 9, "read", Value::Null, "n1"),
            ev(4, Ok, 9, "read", json!([5]), "n1"),
            ev(5, Invoke, 9, "read", Value::Null, "n2"),
            ev(6, Ok, 9, "read", json!([5]), "n2"),
        ];
        let r = check_all(&SetWorkload::default().checkers(), &History::of(&good));
        assert_eq!((r[0].verdict.to_string().as_str(), r[1].verdict.to_string().as_str()), ("valid", "valid"), "{r:?}");
        // On the ladder: nothing decides linearizability or sequential consistency for sets;
        // session and convergent hold.
        use faultline_checker::hierarchy::Strongest;
        let c = SetWorkload::default().consistency(&good, &r);
        assert_eq!(c.strongest, Strongest::Session, "{c:?}");
        assert_eq!(c.model(Model::Linearizable).unwrap().verdict, ModelVerdict::NotChecked);
        assert_eq!(c.model(Model::Convergent).unwrap().verdict, ModelVerdict::Valid);
        let mut bad = good.clone();
        bad[6].value = json!([]);
        let r = check_all(&SetWorkload::default().checkers(), &History::of(&bad));
        assert_eq!((r[0].name.as_str(), r[0].verdict.to_string().as_str()), ("set-full", "invalid"));
        assert!(r[0].reason.as_deref().unwrap().contains("1 acknowledged but missing"), "{:?}", r[0].reason);
        assert_eq!((r[1].name.as_str(), r[1].verdict.to_string().as_str()), ("convergence", "invalid"));
        // The lost element refutes linearizability; p9 read it on n1 and then not on n2
        // (monotonic reads), which refutes session and so sequential; no convergence.
        let c = SetWorkload::default().consistency(&bad, &r);
        assert_eq!(c.strongest, Strongest::None, "{c:?}");
        for m in Model::ALL {
            assert_eq!(c.model(m).unwrap().verdict, ModelVerdict::Invalid, "{m:?}: {c:?}");
        }
    }
}
