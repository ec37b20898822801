//! Property tests: on thousands of small random histories (concurrent operations, failed ones,
//! indeterminate ones, never-completed ones, several keys, nemesis events), the checker agrees
//! with the brute-force permutation oracle (`faultline_checker::oracle`), for every model.
//!
//! Histories are simulated: each operation takes effect on a real state at a random point
//! between its invocation and completion (or, if indeterminate, maybe later or never), so
//! most are linearizable; then some completed outputs are corrupted, so many are not.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use faultline_checker::history::{Event, EventType, Process};
use faultline_checker::{check_linearizable, oracle, CheckOptions, ModelKind, Verdict};

const KEYS: [&str; 2] = ["a", "b"];

/// A random operation for `model`: (f, key, invoke value).
fn gen_op(rng: &mut ChaCha8Rng, model: ModelKind, keys: usize) -> (String, String, Value) {
    let key = KEYS[rng.random_range(0..keys)].to_string();
    let v = |rng: &mut ChaCha8Rng| json!(rng.random_range(0..3));
    let (f, value) = match model {
        ModelKind::Register => match rng.random_range(0..2) {
            0 => ("read", Value::Null),
            _ => ("write", v(rng)),
        },
        ModelKind::CasRegister => match rng.random_range(0..3) {
            0 => ("read", Value::Null),
            1 => ("write", v(rng)),
            _ => {
                let from = if rng.random_bool(0.2) { Value::Null } else { v(rng) };
                ("cas", json!([from, v(rng)]))
            }
        },
        ModelKind::Kv => match rng.random_range(0..4) {
            0 | 1 => ("get", Value::Null),
            2 => ("append", json!(["x", "y", "xy", ""][rng.random_range(0..4)])),
            _ => ("put", json!(["x", "y", "xy", ""][rng.random_range(0..4)])),
        },
        ModelKind::Set => match rng.random_range(0..2) {
            0 => ("read", Value::Null),
            _ => ("add", v(rng)),
        },
    };
    (f.to_string(), key, value)
}

/// Applies an op to the true state; returns (output, took effect, failed precondition).
fn apply(model: ModelKind, state: &mut Value, f: &str, input: &Value) -> (Value, bool) {
    match (model, f) {
        (ModelKind::Register | ModelKind::CasRegister, "read") => (state.clone(), true),
        (ModelKind::Register | ModelKind::CasRegister, "write") => {
            *state = input.clone();
            (input.clone(), true)
        }
        (ModelKind::CasRegister, "cas") => {
            if *state == input[0] {
                *state = input[1].clone();
                (input.clone(), true)
            } else {
                (input.clone(), false)
            }
        }
        (ModelKind::Kv, "get") => (state.clone(), true),
        (ModelKind::Kv, "put") => {
            *state = input.clone();
            (input.clone(), true)
        }
        (ModelKind::Kv, "append") => {
            *state = json!(format!("{}{}", state.as_str().unwrap(), input.as_str().unwrap()));
            (input.clone(), true)
        }
        (ModelKind::Set, "add") => {
            let mut s: Vec<i64> = state.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            if !s.contains(&input.as_i64().unwrap()) {
                s.push(input.as_i64().unwrap());
            }
            s.sort();
            *state = json!(s);
            (input.clone(), true)
        }
        (ModelKind::Set, "read") => (state.clone(), true),
        _ => unreachable!("generated ops fit their model"),
    }
}

fn initial(model: ModelKind) -> Value {
    match model {
        ModelKind::Register | ModelKind::CasRegister => Value::Null,
        ModelKind::Kv => json!(""),
        ModelKind::Set => json!([]),
    }
}

/// Per process: the op in flight, whether it took effect, its output.
struct InFlight {
    f: String,
    key: String,
    input: Value,
    effect: Option<(Value, bool)>,
    /// Indeterminate: completes with info (maybe after taking effect later, or never).
    info: bool,
}

/// The usual shape: up to 4 processes, up to 7 operations over 2 keys.
fn simulate(seed: u64, model: ModelKind) -> Vec<Event> {
    simulate_shaped(seed, model, KEYS.len(), 4, 7)
}

fn simulate_shaped(seed: u64, model: ModelKind, keys: usize, procs_max: usize, ops_max: usize) -> Vec<Event> {
    simulate_with_info(seed, model, keys, procs_max, ops_max, 0.15)
}

fn simulate_with_info(
    seed: u64,
    model: ModelKind,
    keys: usize,
    procs_max: usize,
    ops_max: usize,
    info_probability: f64,
) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let procs = rng.random_range(1..=procs_max);
    let ops_total = rng.random_range(1..=ops_max);
    let mut states: BTreeMap<String, Value> = BTreeMap::new();
    let mut events: Vec<Event> = Vec::new();
    let mut flight: Vec<Option<InFlight>> = (0..procs).map(|_| None).collect();
    // Process ids: a process retired by an info continues under a new id.
    let mut pid: Vec<u64> = (0..procs as u64).collect();
    let mut next_pid = procs as u64;
    let mut invoked = 0;
    // Ops whose completion was info but may still take effect later.
    let mut lingering: Vec<(String, String, Value)> = Vec::new();
    let push =
        |events: &mut Vec<Event>, kind, process, f: &str, key: Option<&str>, value: Value, error: Option<&str>| {
            let i = events.len() as u64;
            events.push(Event {
                index: i,
                time: i * 10,
                kind,
                process,
                f: f.to_string(),
                key: key.map(str::to_string),
                value,
                error: error.map(str::to_string),
                node: None,
            });
        };
    for _ in 0..200 {
        let all_idle = flight.iter().all(Option::is_none);
        if invoked == ops_total && all_idle {
            break;
        }
        if rng.random_bool(0.05) {
            push(
                &mut events,
                EventType::Info,
                Process::Nemesis,
                "start-partition",
                None,
                json!({"kind": "halves"}),
                None,
            );
        }
        if !lingering.is_empty() && rng.random_bool(0.2) {
            let (f, key, input) = lingering.swap_remove(rng.random_range(0..lingering.len()));
            let st = states.entry(key).or_insert_with(|| initial(model));
            apply(model, st, &f, &input);
        }
        let p = rng.random_range(0..procs);
        match &mut flight[p] {
            None => {
                if invoked < ops_total {
                    let (f, key, input) = gen_op(&mut rng, model, keys);
                    push(&mut events, EventType::Invoke, Process::Client(pid[p]), &f, Some(&key), input.clone(), None);
                    let info = rng.random_bool(info_probability);
                    flight[p] = Some(InFlight { f, key, input, effect: None, info });
                    invoked += 1;
                }
            }
            Some(op) => {
                if op.effect.is_none() && !op.info && rng.random_bool(0.5) {
                    let st = states.entry(op.key.clone()).or_insert_with(|| initial(model));
                    op.effect = Some(apply(model, st, &op.f, &op.input));
                    continue;
                }
                if op.effect.is_none() && !op.info {
                    continue;
                }
                let op = flight[p].take().expect("in flight");
                let who = Process::Client(pid[p]);
                if op.info {
                    // Takes effect now, later, or never; the process is retired.
                    match rng.random_range(0..3) {
                        0 => {
                            let st = states.entry(op.key.clone()).or_insert_with(|| initial(model));
                            apply(model, st, &op.f, &op.input);
                        }
                        1 => lingering.push((op.f.clone(), op.key.clone(), op.input.clone())),
                        _ => {}
                    }
                    if rng.random_bool(0.8) {
                        push(&mut events, EventType::Info, who, &op.f, Some(&op.key), Value::Null, Some("timeout"));
                    } // else: never completed (crash)
                    pid[p] = next_pid;
                    next_pid += 1;
                    continue;
                }
                let (mut out, applied) = op.effect.expect("took effect");
                // Lie about some cas outcomes (a success reported as a mismatch, or the reverse).
                let applied = if op.f == "cas" && rng.random_bool(0.15) { !applied } else { applied };
                if !applied {
                    // A cas whose compare failed.
                    push(
                        &mut events,
                        EventType::Fail,
                        who,
                        &op.f,
                        Some(&op.key),
                        op.input.clone(),
                        Some("cas-mismatch"),
                    );
                    continue;
                }
                // Corrupt some outputs.
                if rng.random_bool(0.25) {
                    out = match model {
                        ModelKind::Register | ModelKind::CasRegister if op.f == "read" => {
                            if rng.random_bool(0.2) {
                                Value::Null
                            } else {
                                json!(rng.random_range(0..3))
                            }
                        }
                        ModelKind::Kv if op.f == "get" => {
                            json!(["", "x", "y", "xy", "yx", "xx"][rng.random_range(0..6)])
                        }
                        ModelKind::Set if op.f == "read" => {
                            let n = rng.random_range(0..3);
                            json!((0..n).map(|_| rng.random_range(0..3)).collect::<Vec<i64>>())
                        }
                        _ => out,
                    };
                }
                // Some failed ops that did not take effect: model a definite failure (e.g.
                // not-leader) of a write by turning it into a fail *and* undoing nothing:
                // only for reads, which do not change the state.
                if (op.f == "read" || op.f == "get") && rng.random_bool(0.1) {
                    push(&mut events, EventType::Fail, who, &op.f, Some(&op.key), Value::Null, Some("not-leader"));
                    continue;
                }
                let ok_value = if op.f == "read" || op.f == "get" { out } else { op.input.clone() };
                push(&mut events, EventType::Ok, who, &op.f, Some(&op.key), ok_value, None);
            }
        }
    }
    events
}

fn run(seed: u64, model: ModelKind) -> Result<(), TestCaseError> {
    compare(seed, model, simulate(seed, model))
}

fn compare(seed: u64, model: ModelKind, events: Vec<Event>) -> Result<(), TestCaseError> {
    let want = oracle::is_linearizable(&events, model).map_err(TestCaseError::fail)?;
    let opts = CheckOptions { time_limit: Some(Duration::from_secs(20)), threads: 1, ..CheckOptions::default() };
    let got = check_linearizable(&events, model, &opts);
    let want_v = if want { Verdict::Valid } else { Verdict::Invalid };
    prop_assert_eq!(
        got.verdict,
        want_v,
        "seed {} model {}: checker {:?} ({:?}), oracle {}\n{}",
        seed,
        model,
        got.verdict,
        got.reason,
        want,
        faultline_checker::jsonl::to_string(&events)
    );
    // Judging every key gives the same verdict.
    let all = check_linearizable(&events, model, &CheckOptions { stop_on_first_invalid: false, ..opts });
    prop_assert_eq!(all.verdict, want_v, "seed {} all-keys mode", seed);
    if got.verdict == Verdict::Invalid {
        prop_assert!(got.explanation.is_some(), "seed {}: invalid without explanation", seed);
    }
    Ok(())
}

/// Cases per model: enough to meet every kind of operation often, small enough for a debug
/// `cargo test` to stay quick. `FAULTLINE_PROPTEST_SCALE=N` multiplies every count by N for a
/// longer soak (e.g. in release mode).
const CASES: u32 = 1500;

fn cases(n: u32) -> u32 {
    let scale = std::env::var("FAULTLINE_PROPTEST_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1);
    n.saturating_mul(scale.max(1))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(CASES), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn register_agrees_with_oracle(seed in any::<u64>()) { run(seed, ModelKind::Register)?; }

    #[test]
    fn cas_register_agrees_with_oracle(seed in any::<u64>()) { run(seed, ModelKind::CasRegister)?; }

    #[test]
    fn kv_agrees_with_oracle(seed in any::<u64>()) { run(seed, ModelKind::Kv)?; }

    #[test]
    fn set_agrees_with_oracle(seed in any::<u64>()) { run(seed, ModelKind::Set)?; }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(600), failure_persistence: None, ..ProptestConfig::default() })]

    /// One key, more processes and operations: the shape where the kv model's prefix pruning
    /// and dead-state merging (model.rs, `KvModel::refine`) do their work.
    #[test]
    fn kv_one_dense_key_agrees_with_oracle(seed in any::<u64>()) {
        compare(seed, ModelKind::Kv, simulate_shaped(seed, ModelKind::Kv, 1, 5, 9))?;
    }

    #[test]
    fn cas_register_one_dense_key_agrees_with_oracle(seed in any::<u64>()) {
        compare(seed, ModelKind::CasRegister, simulate_shaped(seed, ModelKind::CasRegister, 1, 5, 9))?;
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2500), failure_persistence: None, ..ProptestConfig::default() })]

    /// Many indeterminate ops: the shape where symmetry breaking, the no-op rule and the
    /// cache's subsumption (cache.rs) do their work.
    #[test]
    fn cas_register_info_heavy_agrees_with_oracle(seed in any::<u64>()) {
        compare(seed, ModelKind::CasRegister, simulate_with_info(seed, ModelKind::CasRegister, 1, 7, 10, 0.5))?;
    }

    #[test]
    fn kv_info_heavy_agrees_with_oracle(seed in any::<u64>()) {
        compare(seed, ModelKind::Kv, simulate_with_info(seed, ModelKind::Kv, 1, 7, 10, 0.5))?;
    }

    #[test]
    fn set_info_heavy_agrees_with_oracle(seed in any::<u64>()) {
        compare(seed, ModelKind::Set, simulate_with_info(seed, ModelKind::Set, 1, 6, 9, 0.5))?;
    }
}

/// The generator must produce both verdicts in quantity, or the comparison proves little.
#[test]
fn generated_histories_cover_both_verdicts_and_all_event_kinds() {
    for model in ModelKind::ALL {
        let (mut valid, mut invalid, mut info, mut fail) = (0, 0, 0, 0);
        for seed in 0..400 {
            let events = simulate(seed, model);
            info += events.iter().filter(|e| e.kind == EventType::Info && e.process != Process::Nemesis).count();
            fail += events.iter().filter(|e| e.kind == EventType::Fail).count();
            match oracle::is_linearizable(&events, model).unwrap() {
                true => valid += 1,
                false => invalid += 1,
            }
        }
        eprintln!("{model}: {valid} valid, {invalid} invalid, {info} info, {fail} fail");
        assert!(valid >= 100 && invalid >= 40, "{model}: {valid} valid, {invalid} invalid of 400");
        assert!(info >= 50 && fail >= 20, "{model}: {info} info, {fail} fail events");
    }
}
