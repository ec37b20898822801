//! The zone procedure (src/zones.rs) against the brute-force oracle and the search: on 10,000
//! random small histories per model (register, cas-register) with unique written values, valid
//! and invalid, with indeterminate and never-completed ops and failed cas, the checker with the
//! zone procedure, the search alone and the oracle give the same verdict; and on histories with
//! repeated values the key falls back to the search and still agrees. Also: the zone procedure
//! decides every unique-value history without failed cas (its completeness claim), every
//! invalid verdict it gives is explained, and bigger histories agree with the search.
//!
//! Seeded loops (not proptest) so that 20,000+ cases stay within a debug `cargo test` budget; a
//! failure prints its seed and the history.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use faultline_checker::history::{Event, EventType, Process};
use faultline_checker::{check_linearizable, oracle, CheckOptions, ModelKind, Procedure, Verdict};

/// The shape of the random histories of one test.
#[derive(Clone, Copy)]
struct Shape {
    model: ModelKind,
    /// Written values unique (fresh for each write and cas), or drawn from 0..3.
    unique: bool,
    procs_max: usize,
    ops_max: usize,
    info_probability: f64,
}

/// An operation in flight on one process.
struct InFlight {
    f: &'static str,
    input: Value,
    /// The output and whether a cas took effect, once it has.
    effect: Option<(Value, bool)>,
    info: bool,
}

struct Sim {
    rng: ChaCha8Rng,
    shape: Shape,
    state: Value,
    written: Vec<Value>,
    next_value: i64,
    events: Vec<Event>,
}

impl Sim {
    fn push(&mut self, kind: EventType, process: u64, f: &str, value: Value, error: Option<&str>) {
        let i = self.events.len() as u64;
        self.events.push(Event {
            index: i,
            time: i * 10,
            kind,
            process: Process::Client(process),
            f: f.to_string(),
            key: Some("k".into()),
            value,
            error: error.map(str::to_string),
            node: None,
        });
    }

    fn value(&mut self) -> Value {
        if self.shape.unique {
            self.next_value += 1;
            json!(self.next_value)
        } else {
            json!(self.rng.random_range(0..3))
        }
    }

    /// Some value seen before (or nil, or the current one): a plausible cas `from` or a stale read.
    fn old_value(&mut self) -> Value {
        match self.rng.random_range(0..4) {
            0 => Value::Null,
            1 => self.state.clone(),
            2 if self.rng.random_bool(0.1) => json!(1000 + self.rng.random_range(0..3)),
            _ if !self.written.is_empty() => self.written[self.rng.random_range(0..self.written.len())].clone(),
            _ => Value::Null,
        }
    }

    fn new_op(&mut self) -> (&'static str, Value) {
        let cas = self.shape.model == ModelKind::CasRegister;
        match self.rng.random_range(0..if cas { 3 } else { 2 }) {
            0 => ("read", Value::Null),
            1 => ("write", self.value()),
            _ => {
                let from = self.old_value();
                ("cas", json!([from, self.value()]))
            }
        }
    }

    /// Applies an op to the real register: (output, took effect).
    fn apply(&mut self, f: &str, input: &Value) -> (Value, bool) {
        match f {
            "read" => (self.state.clone(), true),
            "write" => {
                self.state = input.clone();
                self.written.push(input.clone());
                (input.clone(), true)
            }
            _ if self.state == input[0] => {
                self.state = input[1].clone();
                self.written.push(input[1].clone());
                (input.clone(), true)
            }
            _ => (input.clone(), false),
        }
    }

    /// Completes `op` on `process`: ok, a cas mismatch, or a failed read; some outputs lie.
    fn complete(&mut self, process: u64, op: InFlight) {
        let (mut out, applied) = op.effect.expect("took effect");
        let applied = if op.f == "cas" && self.rng.random_bool(0.2) { !applied } else { applied };
        if !applied {
            self.push(EventType::Fail, process, op.f, op.input, Some("cas-mismatch"));
            return;
        }
        if op.f == "read" && self.rng.random_bool(0.4) {
            out = self.old_value();
        }
        if op.f == "read" && self.rng.random_bool(0.05) {
            self.push(EventType::Fail, process, op.f, Value::Null, Some("not-leader"));
            return;
        }
        let v = if op.f == "read" { out } else { op.input };
        self.push(EventType::Ok, process, op.f, v, None);
    }
}

/// A history of one register: each op takes effect at a random point of its interval (an
/// indeterminate one maybe later, or never), so most are linearizable before some outputs lie.
fn simulate(seed: u64, shape: Shape) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let procs = rng.random_range(1..=shape.procs_max);
    let ops_total = rng.random_range(1..=shape.ops_max);
    let mut sim = Sim { rng, shape, state: Value::Null, written: Vec::new(), next_value: 0, events: Vec::new() };
    let mut flight: Vec<Option<InFlight>> = (0..procs).map(|_| None).collect();
    let mut pid: Vec<u64> = (0..procs as u64).collect();
    let mut next_pid = procs as u64;
    let (mut invoked, mut lingering) = (0, Vec::<(&'static str, Value)>::new());
    for _ in 0..40 * shape.ops_max + 100 {
        if invoked == ops_total && flight.iter().all(Option::is_none) {
            break;
        }
        if !lingering.is_empty() && sim.rng.random_bool(0.2) {
            let (f, input) = lingering.swap_remove(sim.rng.random_range(0..lingering.len()));
            sim.apply(f, &input);
        }
        let p = sim.rng.random_range(0..procs);
        match flight[p].take() {
            None if invoked < ops_total => {
                let (f, input) = sim.new_op();
                sim.push(EventType::Invoke, pid[p], f, input.clone(), None);
                let info = sim.rng.random_bool(shape.info_probability);
                flight[p] = Some(InFlight { f, input, effect: None, info });
                invoked += 1;
            }
            None => {}
            Some(mut op) if op.effect.is_none() && !op.info => {
                if sim.rng.random_bool(0.5) {
                    op.effect = Some(sim.apply(op.f, &op.input));
                }
                flight[p] = Some(op);
            }
            Some(op) if op.info => {
                match sim.rng.random_range(0..3) {
                    0 => {
                        let _ = sim.apply(op.f, &op.input);
                    }
                    1 => lingering.push((op.f, op.input.clone())),
                    _ => {}
                }
                if sim.rng.random_bool(0.8) {
                    sim.push(EventType::Info, pid[p], op.f, Value::Null, Some("timeout"));
                }
                pid[p] = next_pid;
                next_pid += 1;
            }
            Some(op) => sim.complete(pid[p], op),
        }
    }
    sim.events
}

/// The values written by writes and cas ops that did not fail (failed ones did not happen).
fn written_values<'a>(events: &'a [Event]) -> Vec<&'a Value> {
    let mut open: std::collections::BTreeMap<&Process, &Event> = std::collections::BTreeMap::new();
    let mut written = Vec::new();
    let mut take = |inv: &'a Event| {
        if inv.f != "read" {
            written.push(if inv.f == "cas" { &inv.value[1] } else { &inv.value });
        }
    };
    for e in events {
        match e.kind {
            EventType::Invoke => {
                open.insert(&e.process, e);
            }
            EventType::Fail => {
                open.remove(&e.process);
            }
            _ => open.remove(&e.process).into_iter().for_each(&mut take),
        }
    }
    open.into_values().for_each(take);
    written
}

fn opts(zones: bool) -> CheckOptions {
    CheckOptions { time_limit: Some(Duration::from_secs(20)), threads: 1, zones, ..CheckOptions::default() }
}

/// Counts of one run of [`agree`].
#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    by_zones: usize,
    with_info: usize,
    fallback: usize,
}

/// Checks `cases` seeds of `shape`: checker (zones first) = search alone = oracle, explained
/// when invalid; with unique values and no failed cas the zone procedure must decide.
fn agree(shape: Shape, cases: u64, seed_base: u64) -> Tally {
    let mut t = Tally::default();
    for seed in seed_base..seed_base + cases {
        let events = simulate(seed, shape);
        let want = match oracle::is_linearizable(&events, shape.model) {
            Ok(true) => Verdict::Valid,
            Ok(false) => Verdict::Invalid,
            Err(e) => panic!("seed {seed}: oracle refused: {e}"),
        };
        let fast = check_linearizable(&events, shape.model, &opts(true));
        let slow = check_linearizable(&events, shape.model, &opts(false));
        let show = || faultline_checker::jsonl::to_string(&events);
        assert_eq!(fast.verdict, want, "seed {seed}: checker {:?}, oracle {want:?}\n{}", fast.reason, show());
        assert_eq!(slow.verdict, want, "seed {seed}: search {:?}, oracle {want:?}\n{}", slow.reason, show());
        let key = fast.keys.first();
        let procedure = key.map_or(Procedure::Search, |k| k.procedure);
        let mismatch = events.iter().any(|e| e.error.as_deref() == Some("cas-mismatch"));
        if shape.unique && !mismatch {
            assert_eq!(procedure, Procedure::Zones, "seed {seed}: unique values, no failed cas\n{}", show());
        }
        if !shape.unique && procedure == Procedure::Zones {
            let written = written_values(&events);
            let mut dedup = written.clone();
            dedup.sort_by_key(|v| v.to_string());
            dedup.dedup();
            assert_eq!(dedup.len(), written.len(), "seed {seed}: repeated values decided by zones\n{}", show());
        }
        if fast.verdict == Verdict::Invalid {
            let e = fast.explanation.as_ref().unwrap_or_else(|| panic!("seed {seed}: invalid without explanation"));
            assert!(e.failed_op < e.ops.len() && !e.longest.is_empty(), "seed {seed}: {e:?}");
            assert!(fast.reason.as_deref().unwrap_or("").contains("cannot linearize #"), "seed {seed}");
        }
        t.valid += usize::from(want == Verdict::Valid);
        t.invalid += usize::from(want == Verdict::Invalid);
        t.by_zones += usize::from(procedure == Procedure::Zones);
        t.fallback += usize::from(procedure == Procedure::Search);
        t.with_info += usize::from(events.iter().any(|e| e.kind == EventType::Info));
    }
    eprintln!("{}: {t:?}", shape.model);
    t
}

const SMALL: Shape =
    Shape { model: ModelKind::Register, unique: true, procs_max: 5, ops_max: 10, info_probability: 0.15 };

#[test]
fn register_unique_values_agree_with_oracle_and_search() {
    let t = agree(SMALL, 10_000, 0);
    assert!(t.valid >= 2_000 && t.invalid >= 1_000 && t.with_info >= 1_000, "{t:?}");
    assert_eq!(t.by_zones, 10_000, "{t:?}");
}

#[test]
fn cas_register_unique_values_agree_with_oracle_and_search() {
    let t = agree(Shape { model: ModelKind::CasRegister, ..SMALL }, 10_000, 1_000_000);
    assert!(t.valid >= 2_000 && t.invalid >= 1_000 && t.with_info >= 1_000, "{t:?}");
    assert!(t.by_zones >= 8_000, "{t:?}");
}

#[test]
fn repeated_values_fall_back_to_the_search_and_agree() {
    for model in [ModelKind::Register, ModelKind::CasRegister] {
        let t = agree(Shape { model, unique: false, ..SMALL }, 2_000, 2_000_000);
        assert!(t.fallback >= 1_000 && t.valid >= 300 && t.invalid >= 200, "{model}: {t:?}");
    }
}

/// Bigger one-key histories (up to 40 ops, 8 processes; beyond the oracle): the zone procedure
/// and the search agree whenever the search decides.
#[test]
fn bigger_histories_agree_with_the_search() {
    for model in [ModelKind::Register, ModelKind::CasRegister] {
        let shape = Shape { model, unique: true, procs_max: 8, ops_max: 40, info_probability: 0.1 };
        let (mut decided, mut invalid) = (0, 0);
        for seed in 3_000_000..3_000_400 {
            let events = simulate(seed, shape);
            let fast = check_linearizable(&events, model, &opts(true));
            let slow = check_linearizable(&events, model, &opts(false));
            if slow.verdict != Verdict::Unknown {
                assert_eq!(fast.verdict, slow.verdict, "seed {seed}\n{}", faultline_checker::jsonl::to_string(&events));
                decided += 1;
                invalid += usize::from(slow.verdict == Verdict::Invalid);
            }
        }
        assert!(decided >= 390 && invalid >= 100, "{model}: {decided} decided, {invalid} invalid");
    }
}

/// The zone procedure's memory is reserved from the check's budget: a budget too small for it
/// ends in `unknown` with the reason.
#[test]
fn zone_procedure_respects_the_memory_budget() {
    let events = simulate(7, Shape { ops_max: 10, ..SMALL });
    let o = CheckOptions { memory_limit_bytes: Some(64), ..opts(true) };
    let r = check_linearizable(&events, ModelKind::Register, &o);
    assert_eq!(r.verdict, Verdict::Unknown, "{:?}", r.reason);
    assert!(r.reason.unwrap().contains("memory limit"));
}

/// `initial_value`: registers start at it instead of nil, in both procedures.
#[test]
fn initial_value_is_the_starting_value() {
    let ev = |i: u64, kind, p: u64, f: &str, value: Value| Event {
        index: i,
        time: i,
        kind,
        process: Process::Client(p),
        f: f.into(),
        key: Some("k".into()),
        value,
        error: None,
        node: None,
    };
    let history = |first_read: Value| {
        vec![
            ev(0, EventType::Invoke, 0, "read", Value::Null),
            ev(1, EventType::Ok, 0, "read", first_read),
            ev(2, EventType::Invoke, 0, "cas", json!([0, 1])),
            ev(3, EventType::Ok, 0, "cas", json!([0, 1])),
            ev(4, EventType::Invoke, 1, "read", Value::Null),
            ev(5, EventType::Ok, 1, "read", json!(1)),
        ]
    };
    for zones in [true, false] {
        let from0 = CheckOptions { initial_value: Some(0), ..opts(zones) };
        let verdict = |h: &[Event], o: &CheckOptions| check_linearizable(h, ModelKind::CasRegister, o).verdict;
        assert_eq!(verdict(&history(json!(0)), &from0), Verdict::Valid, "zones {zones}");
        assert_eq!(verdict(&history(json!(0)), &opts(zones)), Verdict::Invalid, "zones {zones}");
        assert_eq!(verdict(&history(Value::Null), &from0), Verdict::Invalid, "zones {zones}");
    }
    let r = check_linearizable(
        &history(json!(0)),
        ModelKind::CasRegister,
        &CheckOptions { initial_value: Some(0), ..opts(true) },
    );
    assert_eq!(r.keys[0].procedure, Procedure::Zones);
}

/// A stale read: write 1, then write 2, then a read of 1. The zone procedure explains it with
/// the op it cannot place and the two ops that force each block before the other.
#[test]
fn a_stale_read_is_explained_with_its_proof() {
    let ev = |i: u64, kind, p: u64, f: &str, value: Value| Event {
        index: i,
        time: i,
        kind,
        process: Process::Client(p),
        f: f.into(),
        key: Some("k".into()),
        value,
        error: None,
        node: None,
    };
    let h = vec![
        ev(0, EventType::Invoke, 0, "write", json!(1)),
        ev(1, EventType::Ok, 0, "write", json!(1)),
        ev(2, EventType::Invoke, 0, "write", json!(2)),
        ev(3, EventType::Ok, 0, "write", json!(2)),
        ev(4, EventType::Invoke, 1, "read", Value::Null),
        ev(5, EventType::Ok, 1, "read", json!(1)),
    ];
    let r = check_linearizable(&h, ModelKind::Register, &opts(true));
    assert_eq!((r.verdict, r.keys[0].procedure), (Verdict::Invalid, Procedure::Zones));
    let text = r.to_text();
    assert!(text.contains("Gibbons & Korach") && text.contains("zones:"), "{text}");
    let e = r.explanation.unwrap();
    assert_eq!(e.failed_op, 1, "{e:?}");
    let reason = r.keys[0].reason.clone().unwrap();
    assert!(reason.contains("cannot linearize #1 p0 write 2") && reason.contains("before #2 was invoked"), "{reason}");
    let mut proof: Vec<usize> = e.longest[0].candidates.iter().map(|c| c.op).collect();
    proof.sort();
    assert_eq!(proof, [0, 2]);
    assert_eq!(e.longest[0].steps.len(), 2, "the placed prefix: write 1, read 1");
    assert!(e.to_text().contains("it returned (event 3) before #2 was invoked (event 4)"), "{}", e.to_text());
}
