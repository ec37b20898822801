//! Property tests of the weak-model checkers: on thousands of small random register histories
//! (concurrent operations over replicas that serve stale, non-monotonic or wrong values, cas
//! mismatches, failed, indeterminate and never-completed operations, retired processes, one or
//! two keys), `check_sequential` agrees with the brute-force `oracle::is_sequential` and
//! `check_session` with `oracle::is_session`; the oracles themselves respect the hierarchy
//! (linearizable ⇒ sequential ⇒ session); and the generator yields every combination often.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use faultline_checker::history::{Event, EventType, Process};
use faultline_checker::sequential::check_sequential;
use faultline_checker::session::check_session;
use faultline_checker::{oracle, CheckOptions, ModelKind, Verdict};

/// An op in flight: f, key, input.
struct InFlight {
    f: &'static str,
    key: String,
    input: Value,
}

/// Knobs of the generator.
#[derive(Clone, Copy)]
struct Shape {
    keys: usize,
    procs_max: usize,
    ops_min: usize,
    ops_max: usize,
    /// Chance that a read or cas misbehaves (stale, non-monotonic, lost write, wrong value).
    anomaly: f64,
    info: f64,
    /// Only write anomalies, and those reorder rather than lose: reads stay monotonic, so the
    /// histories straddle the sequential/session boundary.
    reorder: bool,
}

const USUAL: Shape = Shape { keys: 1, procs_max: 4, ops_min: 1, ops_max: 7, anomaly: 0.2, info: 0.15, reorder: false };

const REORDER: Shape = Shape { keys: 1, procs_max: 3, ops_min: 6, ops_max: 8, anomaly: 0.8, info: 0.1, reorder: true };

/// A replicated register per key: `log` is the order in which writes were applied (nil first);
/// each process's replica view is a position in it. A well-behaved read returns the value at a
/// position at or after the process's view (stale but monotonic); anomalies read anywhere,
/// lose a write, evaluate a cas on a stale position, or return a value never written.
fn simulate(seed: u64, model: ModelKind, shape: Shape) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let procs = rng.random_range(1..=shape.procs_max);
    let ops_total = rng.random_range(shape.ops_min..=shape.ops_max);
    let mut logs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut views: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let mut events: Vec<Event> = Vec::new();
    let mut flight: Vec<Option<InFlight>> = (0..procs).map(|_| None).collect();
    let mut pid: Vec<u64> = (0..procs as u64).collect();
    let mut next_pid = procs as u64;
    let mut invoked = 0;
    let push = |events: &mut Vec<Event>, kind, p: u64, f: &str, key: &str, value: Value, error: Option<&str>| {
        let i = events.len() as u64;
        events.push(Event {
            index: i,
            time: i * 10,
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some(key.into()),
            value,
            error: error.map(str::to_string),
            node: None,
        });
    };
    let val = |rng: &mut ChaCha8Rng| json!(rng.random_range(0..3));
    for _ in 0..300 {
        if invoked == ops_total && flight.iter().all(Option::is_none) {
            break;
        }
        let p = rng.random_range(0..procs);
        let Some(op) = flight[p].take() else {
            if invoked < ops_total {
                let key = ["a", "b"][rng.random_range(0..shape.keys)].to_string();
                let cas = model == ModelKind::CasRegister;
                let (f, input) = match rng.random_range(0..if cas { 3 } else { 2 }) {
                    0 => ("read", Value::Null),
                    1 => ("write", val(&mut rng)),
                    _ => {
                        ("cas", json!([if rng.random_bool(0.2) { Value::Null } else { val(&mut rng) }, val(&mut rng)]))
                    }
                };
                push(&mut events, EventType::Invoke, pid[p], f, &key, input.clone(), None);
                flight[p] = Some(InFlight { f, key, input });
                invoked += 1;
            }
            continue;
        };
        let log = logs.entry(op.key.clone()).or_insert_with(|| vec![Value::Null]);
        let view = views.entry((p, op.key.clone())).or_insert(0);
        let who = pid[p];
        if op.f != "read" && rng.random_bool(shape.info) {
            // Indeterminate: applied now or never; the process retires (or never completes).
            if rng.random_bool(0.5) {
                match op.f {
                    "write" => log.push(op.input.clone()),
                    _ if *log.last().unwrap() == op.input[0] => log.push(op.input[1].clone()),
                    _ => {}
                }
            }
            if rng.random_bool(0.8) {
                push(&mut events, EventType::Info, who, op.f, &op.key, op.input.clone(), Some("timeout"));
            }
            pid[p] = next_pid;
            next_pid += 1;
            continue;
        }
        let anomaly = rng.random_bool(shape.anomaly) && !(shape.reorder && op.f != "write");
        match op.f {
            "read" => {
                if rng.random_bool(0.08) {
                    push(&mut events, EventType::Fail, who, "read", &op.key, Value::Null, Some("unavailable"));
                    continue;
                }
                let at = if anomaly { rng.random_range(0..log.len()) } else { rng.random_range(*view..log.len()) };
                let mut out = log[at].clone();
                if anomaly && rng.random_bool(0.3) {
                    out = if rng.random_bool(0.3) { Value::Null } else { val(&mut rng) };
                } else if !anomaly {
                    *view = at;
                }
                push(&mut events, EventType::Ok, who, "read", &op.key, out, None);
            }
            "write" => {
                if rng.random_bool(0.08) {
                    push(&mut events, EventType::Fail, who, "write", &op.key, op.input.clone(), Some("unavailable"));
                    continue;
                }
                if !anomaly {
                    log.push(op.input.clone());
                    *view = log.len() - 1;
                } else if shape.reorder || rng.random_bool(0.6) {
                    // Applied out of order: before writes already applied (no monotonic
                    // writes, no writes-follow-reads), its process's replica showing it.
                    let at = rng.random_range(1..=log.len());
                    log.insert(at, op.input.clone());
                    // Every replica's view keeps pointing at the entry it had reached; the
                    // writer's includes its write (read-your-writes).
                    let mine = (*view + usize::from(*view >= at)).max(at);
                    for ((_, k), v) in views.iter_mut() {
                        if *k == op.key && *v >= at {
                            *v += 1;
                        }
                    }
                    views.insert((p, op.key.clone()), mine);
                } // else: acknowledged but lost
                push(&mut events, EventType::Ok, who, "write", &op.key, op.input.clone(), None);
            }
            _ => {
                // Evaluated on the latest value, or (anomaly) on the process's stale view.
                let at = if anomaly { *view } else { log.len() - 1 };
                if log[at] == op.input[0] {
                    log.push(op.input[1].clone());
                    *view = log.len() - 1;
                    push(&mut events, EventType::Ok, who, "cas", &op.key, op.input.clone(), None);
                } else {
                    *view = at.max(*view);
                    push(&mut events, EventType::Fail, who, "cas", &op.key, op.input.clone(), Some("cas-mismatch"));
                }
            }
        }
    }
    events
}

fn opts() -> CheckOptions {
    CheckOptions { time_limit: Some(Duration::from_secs(20)), threads: 1, ..CheckOptions::default() }
}

fn verdict(b: bool) -> Verdict {
    if b {
        Verdict::Valid
    } else {
        Verdict::Invalid
    }
}

fn compare(seed: u64, model: ModelKind, events: &[Event]) -> Result<(), TestCaseError> {
    let history = || faultline_checker::jsonl::to_string(events);
    let want = oracle::is_sequential(events, model).map_err(TestCaseError::fail)?;
    let got = check_sequential(events, model, &opts());
    prop_assert_eq!(got.verdict, verdict(want), "seed {} {} sequential: {:?}\n{}", seed, model, got.reason, history());
    check_witnesses(events, &got).map_err(|e| TestCaseError::fail(format!("seed {seed}: {e}\n{}", history())))?;
    let all = check_sequential(events, model, &CheckOptions { stop_on_first_invalid: false, ..opts() });
    prop_assert_eq!(all.verdict, verdict(want), "seed {} all-keys mode", seed);
    let want = oracle::is_session(events, model).map_err(TestCaseError::fail)?;
    let got = check_session(events, model, &opts());
    prop_assert_eq!(got.verdict, verdict(want), "seed {} {} session: {:?}\n{}", seed, model, got.reason, history());
    check_witnesses(events, &got).map_err(|e| TestCaseError::fail(format!("seed {seed}: {e}\n{}", history())))?;
    if got.verdict == Verdict::Invalid {
        prop_assert!(got.reason.is_some());
    }
    Ok(())
}

fn cases(n: u32) -> u32 {
    let scale = std::env::var("FAULTLINE_PROPTEST_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1);
    n.saturating_mul(scale.max(1))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1500), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn cas_register_weak_models_agree_with_oracles(seed in any::<u64>()) {
        compare(seed, ModelKind::CasRegister, &simulate(seed, ModelKind::CasRegister, USUAL))?;
    }

    #[test]
    fn register_weak_models_agree_with_oracles(seed in any::<u64>()) {
        compare(seed, ModelKind::Register, &simulate(seed, ModelKind::Register, USUAL))?;
    }

    /// Two keys: each is judged on its own.
    #[test]
    fn two_keys_agree_with_oracles(seed in any::<u64>()) {
        let shape = Shape { keys: 2, ops_max: 9, ..USUAL };
        compare(seed, ModelKind::CasRegister, &simulate(seed, ModelKind::CasRegister, shape))?;
    }

    /// Writes applied out of order, reads monotonic: around the sequential/session boundary.
    #[test]
    fn reordered_writes_agree_with_oracles(seed in any::<u64>()) {
        compare(seed, ModelKind::CasRegister, &simulate(seed, ModelKind::CasRegister, REORDER))?;
        compare(seed, ModelKind::Register, &simulate(seed, ModelKind::Register, REORDER))?;
    }

    /// Many indeterminate ops and retired processes.
    #[test]
    fn info_heavy_agrees_with_oracles(seed in any::<u64>()) {
        let shape = Shape { procs_max: 5, info: 0.5, ..USUAL };
        compare(seed, ModelKind::CasRegister, &simulate(seed, ModelKind::CasRegister, shape))?;
    }
}

/// The oracles respect the hierarchy, and the generator yields each rung's boundary in
/// quantity (or the comparisons above prove little).
#[test]
fn oracles_respect_the_hierarchy_and_every_boundary_is_covered() {
    for model in [ModelKind::CasRegister, ModelKind::Register] {
        let mut counts: BTreeMap<(bool, bool, bool), usize> = BTreeMap::new();
        for seed in 0..1000 {
            let shape = if seed % 2 == 0 { USUAL } else { REORDER };
            let events = simulate(seed, model, shape);
            let lin = oracle::is_linearizable(&events, model).unwrap();
            let seq = oracle::is_sequential(&events, model).unwrap();
            let ses = oracle::is_session(&events, model).unwrap();
            assert!(!lin || seq, "seed {seed}: linearizable but not sequential");
            assert!(!seq || ses, "seed {seed}: sequential but not session");
            *counts.entry((lin, seq, ses)).or_default() += 1;
        }
        eprintln!("{model}: (lin, seq, session) → histories: {counts:?}");
        for class in [(true, true, true), (false, true, true), (false, false, true), (false, false, false)] {
            assert!(counts.get(&class).copied().unwrap_or(0) >= 20, "{model}: class {class:?} rare: {counts:?}");
        }
    }
}

fn ev(events: &mut Vec<Event>, kind: EventType, p: u64, f: &str, value: Value) {
    let i = events.len() as u64;
    events.push(Event {
        index: i,
        time: i * 10,
        kind,
        process: Process::Client(p),
        f: f.into(),
        key: Some("k".into()),
        value,
        error: if kind == EventType::Fail { Some("cas-mismatch".into()) } else { None },
        node: None,
    });
}

/// (p, f, value in, value out or None for info): each op invoked and completed in turn.
fn sequential_history(ops: &[(u64, &str, Value, Option<Value>)]) -> Vec<Event> {
    let mut h = Vec::new();
    for (p, f, input, out) in ops {
        ev(&mut h, EventType::Invoke, *p, f, input.clone());
        match out {
            Some(o) => ev(&mut h, EventType::Ok, *p, f, o.clone()),
            None => ev(&mut h, EventType::Info, *p, f, input.clone()),
        }
    }
    h
}

fn verdicts(h: &[Event]) -> (Verdict, Verdict, Verdict) {
    let lin = faultline_checker::check_linearizable(h, ModelKind::CasRegister, &opts()).verdict;
    (
        lin,
        check_sequential(h, ModelKind::CasRegister, &opts()).verdict,
        check_session(h, ModelKind::CasRegister, &opts()).verdict,
    )
}

use Verdict::{Invalid, Valid};

#[test]
fn a_stale_read_by_another_process_is_sequential_but_not_linearizable() {
    // p0 writes 1 then 2; p1, later in real time, reads 1.
    let h = sequential_history(&[
        (0, "write", json!(1), Some(json!(1))),
        (0, "write", json!(2), Some(json!(2))),
        (1, "read", Value::Null, Some(json!(1))),
    ]);
    assert_eq!(verdicts(&h), (Invalid, Valid, Valid));
}

#[test]
fn reading_an_older_value_than_ones_own_write_breaks_read_your_writes() {
    // p0 writes 2 then reads 1, so 1 is after 2 in W; p1 writes 1 then reads 2, so 2 is after
    // 1. No single order.
    let h = sequential_history(&[
        (0, "write", json!(2), Some(json!(2))),
        (1, "write", json!(1), Some(json!(1))),
        (0, "read", Value::Null, Some(json!(1))),
        (1, "read", Value::Null, Some(json!(2))),
    ]);
    assert_eq!(verdicts(&h), (Invalid, Invalid, Invalid));
    // A process reading nil after its own acknowledged write.
    let h = sequential_history(&[(0, "write", json!(1), Some(json!(1))), (0, "read", Value::Null, Some(Value::Null))]);
    assert_eq!(verdicts(&h), (Invalid, Invalid, Invalid));
}

#[test]
fn non_monotonic_reads_are_not_session_but_reads_of_others_writes_in_any_order_are() {
    // p0 writes 1, p1 writes 2; p2 reads 2 then 1: fine (W = 2, 1) for everything but real time.
    let h = sequential_history(&[
        (0, "write", json!(1), Some(json!(1))),
        (1, "write", json!(2), Some(json!(2))),
        (2, "read", Value::Null, Some(json!(2))),
        (2, "read", Value::Null, Some(json!(1))),
    ]);
    assert_eq!(verdicts(&h), (Invalid, Valid, Valid));
    // ... but then p2 reading 2 again goes back in W: not monotonic.
    let mut ops = vec![
        (0, "write", json!(1), Some(json!(1))),
        (1, "write", json!(2), Some(json!(2))),
        (2, "read", Value::Null, Some(json!(2))),
        (2, "read", Value::Null, Some(json!(1))),
    ];
    ops.push((2, "read", Value::Null, Some(json!(2))));
    assert_eq!(verdicts(&sequential_history(&ops)), (Invalid, Invalid, Invalid));
}

#[test]
fn session_allows_what_sequential_forbids_across_processes() {
    // p1: write 2, read → 2.  p0: read → 2, write 1.  p2: read → 1, read → 2.
    // Sequential: p0's write 1 follows its read of 2, which follows p1's write 2; p2 reads 1
    // then 2, so some write of 2 must follow the write of 1: there is none. ✗
    // Session: W = nil, 1, 2: p2 reads positions 1 and 2; p0 reads 2 at position 2 and its
    // write 1 sits at position 1 (a write need not follow its process's reads); p1 writes at
    // 2 and reads it there. ✓
    let h = sequential_history(&[
        (1, "write", json!(2), Some(json!(2))),
        (0, "read", Value::Null, Some(json!(2))),
        (0, "write", json!(1), Some(json!(1))),
        (2, "read", Value::Null, Some(json!(1))),
        (2, "read", Value::Null, Some(json!(2))),
        (1, "read", Value::Null, Some(json!(2))),
    ]);
    assert_eq!(verdicts(&h), (Invalid, Invalid, Valid));
    assert!(oracle::is_session(&h, ModelKind::CasRegister).unwrap());
    assert!(!oracle::is_sequential(&h, ModelKind::CasRegister).unwrap());
}

#[test]
fn a_cas_reads_the_value_just_before_its_write_and_an_indeterminate_one_is_optional() {
    // p0: cas nil→1 ok; p1 reads 1 then reads nil: not monotonic (nil is only at position 0).
    let h = sequential_history(&[
        (0, "cas", json!([null, 1]), Some(json!([null, 1]))),
        (1, "read", Value::Null, Some(json!(1))),
        (1, "read", Value::Null, Some(Value::Null)),
    ]);
    assert_eq!(verdicts(&h), (Invalid, Invalid, Invalid));
    // An indeterminate write explains a read; leaving it out explains none of 7.
    let h = sequential_history(&[(0, "write", json!(7), None), (1, "read", Value::Null, Some(json!(7)))]);
    assert_eq!(verdicts(&h), (Valid, Valid, Valid));
    // A cas that failed with a mismatch observed a value other than from.
    let h = sequential_history(&[(0, "write", json!(1), Some(json!(1))), (0, "cas", json!([1, 2]), None)]);
    let mut h2 = h.clone();
    h2.truncate(2);
    ev(&mut h2, EventType::Invoke, 0, "cas", json!([1, 2]));
    ev(&mut h2, EventType::Fail, 0, "cas", json!([1, 2]));
    assert_eq!(verdicts(&h2), (Invalid, Invalid, Invalid), "p0's own write 1 is the only value it may see");
    assert_eq!(verdicts(&h), (Valid, Valid, Valid));
}

#[test]
fn malformed_or_non_register_histories_are_unknown_with_a_reason() {
    let h = vec![Event {
        index: 0,
        time: 0,
        kind: EventType::Ok,
        process: Process::Client(1),
        f: "read".into(),
        key: Some("k".into()),
        value: json!(1),
        error: None,
        node: None,
    }];
    for r in [check_sequential(&h, ModelKind::CasRegister, &opts()), check_session(&h, ModelKind::CasRegister, &opts())]
    {
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.reason.unwrap().contains("event 0"));
    }
    let r = check_session(&[], ModelKind::Kv, &opts());
    assert_eq!(r.verdict, Verdict::Unknown);
    assert!(r.reason.unwrap().contains("register"));
}

/// `n` processes, process `i` writing `i` then reading `i + 1 mod n`, all concurrent: each read
/// needs the next process's write just before it, a cycle no order closes, so both weak models
/// are invalid, but only after many orders of the writes have been tried.
fn cyclic(n: u64) -> Vec<Event> {
    let mut h = Vec::new();
    for p in 0..n {
        ev(&mut h, EventType::Invoke, p, "write", json!(p));
    }
    for p in 0..n {
        ev(&mut h, EventType::Ok, p, "write", json!(p));
    }
    for p in 0..n {
        ev(&mut h, EventType::Invoke, p, "read", Value::Null);
    }
    for p in 0..n {
        ev(&mut h, EventType::Ok, p, "read", json!((p + 1) % n));
    }
    h
}

/// `n` concurrent writes of 1..=n, one reader seeing them in increasing and one in decreasing
/// order: no single write order, which the session search finds only after trying many.
fn two_orders(n: u64) -> Vec<Event> {
    let mut h = Vec::new();
    for p in 1..=n {
        ev(&mut h, EventType::Invoke, p, "write", json!(p));
        ev(&mut h, EventType::Ok, p, "write", json!(p));
    }
    for (reader, values) in [(100, (1..=n).collect::<Vec<_>>()), (101, (1..=n).rev().collect())] {
        for v in values {
            ev(&mut h, EventType::Invoke, reader, "read", Value::Null);
            ev(&mut h, EventType::Ok, reader, "read", json!(v));
        }
    }
    h
}

#[test]
fn exhausted_budgets_end_in_unknown_with_the_reason() {
    let unbounded = CheckOptions { time_limit: None, memory_limit_bytes: None, threads: 1, ..CheckOptions::default() };
    for (name, check) in
        [("sequential", check_sequential as fn(&[Event], ModelKind, &CheckOptions) -> _), ("session", check_session)]
    {
        let h = if name == "sequential" { cyclic(12) } else { two_orders(11) };
        let full = check(&h, ModelKind::CasRegister, &unbounded);
        assert_eq!(full.verdict, Verdict::Invalid, "{name}: {:?}", full.reason);
        let steps = full.keys[0].steps;
        eprintln!(
            "{name}: invalid after {steps} steps, {} configurations, {:.1} ms",
            full.keys[0].configurations, full.elapsed_ms
        );
        assert!(steps > 2048, "{name}: the instance must outlast a budget check ({steps} steps)");
        let timed =
            check(&h, ModelKind::CasRegister, &CheckOptions { time_limit: Some(Duration::ZERO), ..unbounded.clone() });
        assert_eq!(timed.verdict, Verdict::Unknown, "{name}");
        assert!(timed.reason.as_deref().unwrap().contains("time limit"), "{name}: {:?}", timed.reason);
        let small =
            check(&h, ModelKind::CasRegister, &CheckOptions { memory_limit_bytes: Some(4096), ..unbounded.clone() });
        assert_eq!(small.verdict, Verdict::Unknown, "{name}");
        assert!(small.reason.as_deref().unwrap().contains("memory limit"), "{name}: {:?}", small.reason);
    }
}

/// A random grow-only set history: processes add fresh elements (ok, failed or indeterminate)
/// and read; a read usually returns what its process must see plus some of the others' adds,
/// sometimes drops an element or invents one.
fn set_history(seed: u64) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let procs = rng.random_range(1..=3u64);
    let mut added: Vec<i64> = Vec::new();
    let mut seen: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    let mut h: Vec<Event> = Vec::new();
    let push = |h: &mut Vec<Event>, kind, p: u64, f: &str, v: Value| {
        let i = h.len() as u64;
        h.push(Event {
            index: i,
            time: i,
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some("s".into()),
            value: v,
            error: None,
            node: None,
        });
    };
    for i in 0..rng.random_range(1..10) {
        let p = rng.random_range(0..procs);
        if rng.random_bool(0.5) {
            let e = i as i64;
            push(&mut h, EventType::Invoke, p, "add", json!(e));
            match rng.random_range(0..6) {
                0 => push(&mut h, EventType::Fail, p, "add", json!(e)),
                1 => {
                    push(&mut h, EventType::Info, p, "add", json!(e));
                    added.push(e);
                }
                _ => {
                    push(&mut h, EventType::Ok, p, "add", json!(e));
                    added.push(e);
                    seen.entry(p).or_default().push(e);
                }
            }
        } else {
            let mut read: Vec<i64> = seen.get(&p).cloned().unwrap_or_default();
            read.extend(added.iter().filter(|_| rng.random_bool(0.5)));
            if rng.random_bool(0.15) && !read.is_empty() {
                read.remove(rng.random_range(0..read.len()));
            }
            if rng.random_bool(0.05) {
                read.push(1000);
            }
            read.sort_unstable();
            read.dedup();
            seen.insert(p, read.clone());
            push(&mut h, EventType::Invoke, p, "read", Value::Null);
            push(&mut h, EventType::Ok, p, "read", json!(read));
        }
    }
    h
}

/// The definition pairwise: every earlier ok add of the process is in each later ok read,
/// every earlier ok read is contained in it, and every element read was added by an add that
/// did not definitely fail.
fn set_session_oracle(h: &[Event]) -> bool {
    let mut ops: Vec<(u64, &str, EventType, &Value, &Value)> = Vec::new();
    for (i, e) in h.iter().enumerate() {
        if e.kind == EventType::Invoke {
            let done = h[i + 1..].iter().find(|c| c.process == e.process).expect("completed");
            ops.push((
                match e.process {
                    Process::Client(p) => p,
                    _ => unreachable!(),
                },
                e.f.as_str(),
                done.kind,
                &e.value,
                &done.value,
            ));
        }
    }
    let elements = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect::<Vec<_>>();
    for (j, later) in ops.iter().enumerate() {
        if later.1 != "read" || later.2 != EventType::Ok {
            continue;
        }
        let read = elements(later.4);
        for e in &read {
            if !ops.iter().any(|o| o.1 == "add" && o.2 != EventType::Fail && o.3.as_i64() == Some(*e)) {
                return false;
            }
        }
        for earlier in ops[..j].iter().filter(|o| o.0 == later.0 && o.2 == EventType::Ok) {
            let must = if earlier.1 == "add" { vec![earlier.3.as_i64().unwrap()] } else { elements(earlier.4) };
            if must.iter().any(|e| !read.contains(e)) {
                return false;
            }
        }
    }
    true
}

#[test]
fn grow_only_set_session_agrees_with_its_pairwise_definition() {
    let (mut valid, mut invalid) = (0, 0);
    for seed in 0..3000 {
        let h = set_history(seed);
        let want = set_session_oracle(&h);
        let got = faultline_checker::session::check_grow_only_set(&h);
        assert_eq!(
            got.verdict,
            verdict(want),
            "seed {seed}: {:?}\n{}",
            got.reason,
            faultline_checker::jsonl::to_string(&h)
        );
        if want {
            valid += 1
        } else {
            invalid += 1
        }
    }
    assert!(valid >= 500 && invalid >= 500, "{valid} valid, {invalid} invalid");
}

/// Larger histories (up to 12 processes and 150 operations on one key) than the oracles take:
/// no crash, every search ends within its budget, every valid verdict's witness meets the
/// model's definition, and the checkers respect the hierarchy (linearizable ⇒ sequential ⇒
/// session). Prints the time each took.
#[test]
fn larger_histories_end_within_budget_and_respect_the_hierarchy() {
    let budget = CheckOptions { time_limit: Some(Duration::from_secs(2)), threads: 1, ..CheckOptions::default() };
    let (mut unknown, mut n) = (0, 0);
    for seed in 0..16u64 {
        for shape in [
            Shape { procs_max: 12, ops_min: 60, ops_max: 150, anomaly: 0.02, ..USUAL },
            Shape { procs_max: 12, ops_min: 60, ops_max: 150, anomaly: 0.1, ..REORDER },
        ] {
            let h = simulate(seed, ModelKind::CasRegister, shape);
            let lin = faultline_checker::check_linearizable(&h, ModelKind::CasRegister, &budget);
            let seq = check_sequential(&h, ModelKind::CasRegister, &budget);
            let ses = check_session(&h, ModelKind::CasRegister, &budget);
            eprintln!(
                "seed {seed} reorder {}: {} events; lin {} {:.0} ms, seq {} {:.0} ms, session {} {:.0} ms",
                shape.reorder,
                h.len(),
                lin.verdict,
                lin.elapsed_ms,
                seq.verdict,
                seq.elapsed_ms,
                ses.verdict,
                ses.elapsed_ms
            );
            for r in [&seq, &ses] {
                assert!(r.elapsed_ms < 4_000.0, "seed {seed}: {} took {:.0} ms on a 2 s budget", r.model, r.elapsed_ms);
            }
            // What oracles cannot check at this size, witnesses can: every valid verdict
            // comes with an order that meets the definition.
            check_witnesses(&h, &seq).unwrap();
            check_witnesses(&h, &ses).unwrap();
            assert!(!(lin.verdict == Verdict::Valid && seq.verdict == Verdict::Invalid), "seed {seed}");
            assert!(!(seq.verdict == Verdict::Valid && ses.verdict == Verdict::Invalid), "seed {seed}");
            unknown += [seq.verdict, ses.verdict].iter().filter(|v| **v == Verdict::Unknown).count();
            n += 2;
        }
    }
    eprintln!("{unknown} of {n} weak checks undecided within 2 s");
}

/// One operation as the verifiers below see it, straight from the events.
struct Seen {
    process: u64,
    key: Option<String>,
    f: String,
    input: Value,
    output: Value,
    /// ok, or a cas-mismatch failure.
    completed: bool,
    mismatch: bool,
}

/// Operations that can matter, by invocation index (failed ones other than cas mismatches and
/// indeterminate reads left out).
fn seen_ops(events: &[Event]) -> BTreeMap<u64, Seen> {
    let mut open: BTreeMap<u64, u64> = BTreeMap::new();
    let mut ops: BTreeMap<u64, Seen> = BTreeMap::new();
    for e in events {
        let Process::Client(p) = e.process else { continue };
        if e.kind == EventType::Invoke {
            open.insert(p, e.index);
            ops.insert(
                e.index,
                Seen {
                    process: p,
                    key: e.key.clone(),
                    f: e.f.clone(),
                    input: e.value.clone(),
                    output: Value::Null,
                    completed: false,
                    mismatch: false,
                },
            );
        } else if let Some(i) = open.remove(&p) {
            let op = ops.get_mut(&i).unwrap();
            match e.kind {
                EventType::Ok => {
                    op.completed = true;
                    op.output = e.value.clone();
                }
                EventType::Fail if op.f == "cas" && e.error.as_deref() == Some("cas-mismatch") => {
                    op.completed = true;
                    op.mismatch = true;
                }
                EventType::Fail => {
                    ops.remove(&i);
                }
                _ => {}
            }
        }
    }
    ops.retain(|_, o| o.completed || o.f != "read");
    ops
}

/// Every completed op of `key` appears exactly once in `witness`, and nothing else does.
fn covers(
    ops: &BTreeMap<u64, Seen>,
    key: &Option<String>,
    witness: &[u64],
    needed: impl Fn(&Seen) -> bool,
) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for i in witness {
        let op = ops.get(i).ok_or(format!("witness has {i}, not an op that can matter"))?;
        if op.key != *key || !seen.insert(*i) {
            return Err(format!("witness has {i} twice or from another key"));
        }
    }
    match ops.iter().find(|(i, o)| o.key == *key && needed(o) && !seen.contains(i)) {
        Some((i, _)) => Err(format!("witness lacks {i}")),
        None => Ok(()),
    }
}

/// A sequential witness is a total order of the key's ops respecting program order and legal
/// for the cas-register.
fn verify_sequential(events: &[Event], key: &Option<String>, witness: &[u64]) -> Result<(), String> {
    let ops = seen_ops(events);
    covers(&ops, key, witness, |o| o.completed)?;
    let mut state = Value::Null;
    for (at, i) in witness.iter().enumerate() {
        let op = &ops[i];
        // Completed ops of the process called before this one come before it.
        for (j, o) in ops.range(..*i) {
            if o.key == *key && o.process == op.process && o.completed && !witness[..at].contains(j) {
                return Err(format!("{i} placed before {j}, its process's earlier op"));
            }
        }
        match (op.f.as_str(), op.mismatch) {
            ("read", _) if op.output != state => {
                return Err(format!("read {i} → {} where the value is {state}", op.output))
            }
            ("read", _) => {}
            ("write", _) => state = op.input.clone(),
            ("cas", true) if state == op.input[0] => return Err(format!("mismatch {i} where the value is its from")),
            ("cas", true) => {}
            ("cas", false) if state != op.input[0] => return Err(format!("cas {i} where the value is {state}")),
            ("cas", false) => state = op.input[1].clone(),
            (f, _) => return Err(format!("unexpected f {f}")),
        }
    }
    Ok(())
}

/// A session witness builds `W` (writes appended) and serves reads at its current end; the
/// positions it implies must meet the definition (values, cas `from`, monotonic reads, read
/// your writes).
fn verify_session(events: &[Event], key: &Option<String>, witness: &[u64]) -> Result<(), String> {
    let ops = seen_ops(events);
    covers(&ops, key, witness, |o| o.completed)?;
    let mut w = vec![Value::Null];
    let mut pos: BTreeMap<u64, usize> = BTreeMap::new();
    for i in witness {
        let op = &ops[i];
        match (op.f.as_str(), op.mismatch) {
            ("write", _) => {
                w.push(op.input.clone());
                pos.insert(*i, w.len() - 1);
            }
            ("cas", false) => {
                if *w.last().unwrap() != op.input[0] {
                    return Err(format!("cas {i} appended after {}", w.last().unwrap()));
                }
                w.push(op.input[1].clone());
                pos.insert(*i, w.len() - 1);
            }
            ("read", _) => {
                if *w.last().unwrap() != op.output {
                    return Err(format!("read {i} → {} served at {}", op.output, w.last().unwrap()));
                }
                pos.insert(*i, w.len() - 1);
            }
            ("cas", true) => {
                if *w.last().unwrap() == op.input[0] {
                    return Err(format!("mismatch {i} served at its from"));
                }
                pos.insert(*i, w.len() - 1);
            }
            (f, _) => return Err(format!("unexpected f {f}")),
        }
    }
    let processes: std::collections::BTreeSet<u64> =
        ops.values().filter(|o| o.key == *key).map(|o| o.process).collect();
    for p in processes {
        let mut low = 0usize;
        for (i, op) in ops.iter().filter(|(_, o)| o.key == *key && o.process == p) {
            let Some(&at) = pos.get(i) else { continue }; // an indeterminate write left out
            match (op.f.as_str(), op.mismatch, op.completed) {
                ("read", ..) | ("cas", true, _) => {
                    if at < low {
                        return Err(format!("p{p}'s {i} at {at}, below {low}"));
                    }
                    low = at;
                }
                ("write", _, true) => low = low.max(at),
                ("write", _, false) => {}
                ("cas", false, completed) => {
                    if at - 1 < low {
                        return Err(format!("p{p}'s cas {i} reads {} , below {low}", at - 1));
                    }
                    if completed {
                        low = at;
                    }
                }
                (f, ..) => return Err(format!("unexpected f {f}")),
            }
        }
    }
    Ok(())
}

/// Every valid key of `r` carries a witness that meets the model's definition.
fn check_witnesses(events: &[Event], r: &faultline_checker::orders::OrderReport) -> Result<(), String> {
    for k in r.keys.iter().filter(|k| k.verdict == Verdict::Valid) {
        let w = k.witness.as_ref().ok_or(format!("valid key {:?} without a witness", k.key))?;
        match r.model.as_str() {
            "sequential" => verify_sequential(events, &k.key, w),
            _ => verify_session(events, &k.key, w),
        }
        .map_err(|e| format!("{} key {:?}: {e}", r.model, k.key))?;
    }
    Ok(())
}

/// The witness verifiers reject what they should: a witness out of program order, one missing
/// an op, and one serving a read at the wrong value.
#[test]
fn witness_verifiers_reject_bad_orders() {
    let h = sequential_history(&[
        (0, "write", json!(1), Some(json!(1))),
        (0, "write", json!(2), Some(json!(2))),
        (1, "read", Value::Null, Some(json!(1))),
    ]);
    let key = Some("k".to_string());
    for (name, r) in [
        ("sequential", check_sequential(&h, ModelKind::CasRegister, &opts())),
        ("session", check_session(&h, ModelKind::CasRegister, &opts())),
    ] {
        assert_eq!(r.verdict, Verdict::Valid, "{name}");
        check_witnesses(&h, &r).unwrap();
        let w = r.keys[0].witness.clone().unwrap();
        let verify = if name == "sequential" { verify_sequential } else { verify_session };
        assert!(verify(&h, &key, &w[1..]).is_err(), "{name}: missing op accepted");
        let mut rev = w.clone();
        rev.reverse();
        assert!(verify(&h, &key, &rev).is_err(), "{name}: reversed order {rev:?} accepted");
    }
    // The read of 1 served after the write of 2 (writes in program order, read last).
    assert!(verify_sequential(&h, &key, &[0, 2, 4]).is_err());
    assert!(verify_session(&h, &key, &[0, 2, 4]).is_err());
    assert!(verify_session(&h, &key, &[2, 0, 4]).is_ok(), "W = 2, 1 and the read at 1: session allows it");
    assert!(verify_sequential(&h, &key, &[2, 0, 4]).is_err(), "program order of p0");
}
