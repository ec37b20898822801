//! Benchmark driver (not a test): times the checker on Porcupine's corpus.
//!
//! `cargo run --release -p faultline-checker --example corpus_bench -- DIR [REPEAT]` checks
//! every file listed in DIR/EXPECTED.tsv (stop at the first invalid key, as Porcupine's tests
//! do) and prints per-file and total times (best of REPEAT runs per file, parsing excluded).
//! `... -- DIR --all-keys FILE [TIME_LIMIT_S]` judges every key of one kv file with no early stop.
//! `... -- --synthetic-long OPS PROCS INFO_PCT [KEYS SEED VALUES]` checks a simulated
//! linearizable cas-register history (ops on random keys, values drawn from 0..VALUES).
//! `... -- --synthetic-hard N MEM_MIB` checks a history that needs about 3^N configurations, under a
//! memory budget (to compare the budget with the peak RSS).

use std::path::Path;
use std::time::{Duration, Instant};

use faultline_checker::formats::Format;
use faultline_checker::{check_linearizable, CheckOptions, ModelKind, Verdict};

fn load(dir: &Path, file: &str) -> (Vec<faultline_checker::history::Event>, ModelKind) {
    let text = std::fs::read_to_string(dir.join(file)).expect("readable corpus file");
    let (format, model) = if file.starts_with("kv/") {
        (Format::PorcupineKv, ModelKind::Kv)
    } else {
        (Format::PorcupineEtcd, ModelKind::CasRegister)
    };
    (format.parse(&text).expect("corpus parses").events, model)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).map(String::as_str).unwrap_or("../shared/data/porcupine"));
    if args.get(1).map(String::as_str) == Some("--synthetic-long") {
        let ops: usize = args[2].parse().expect("OPS");
        let procs: u64 = args[3].parse().expect("PROCS");
        let info_pct: f64 = args[4].parse().expect("INFO_PCT");
        let keys: usize = args.get(5).map_or(1, |s| s.parse().expect("KEYS"));
        let seed: u64 = args.get(6).map_or(7, |s| s.parse().expect("SEED"));
        let values: u64 = args.get(7).map_or(5, |s| s.parse().expect("VALUES"));
        let events = synthetic_long(ops, procs, info_pct / 100.0, keys, seed, values);
        let t = Instant::now();
        let r = check_linearizable(&events, ModelKind::CasRegister, &CheckOptions::default());
        println!(
            "{} events, {} ops ({} info): {} in {:.3} s; max cache entries per key {}; {}",
            events.len(),
            r.ops_total,
            r.ops_info,
            r.verdict,
            t.elapsed().as_secs_f64(),
            r.keys.iter().map(|k| k.cache_entries).max().unwrap_or(0),
            r.reason.unwrap_or_default()
        );
        return;
    }
    if args.get(1).map(String::as_str) == Some("--synthetic-hard") {
        // N concurrent writes and N concurrent reads (one of each value), then an impossible
        // read: some 3^N configurations to rule out.
        let n: u64 = args[2].parse().expect("N");
        let mib: u64 = args[3].parse().expect("MiB");
        let mut events = Vec::new();
        let mut push = |kind, p: u64, f: &str, v: serde_json::Value| {
            let i = events.len() as u64;
            events.push(faultline_checker::history::Event {
                index: i,
                time: i,
                kind,
                process: faultline_checker::history::Process::Client(p),
                f: f.into(),
                key: None,
                value: v,
                error: None,
                node: None,
            });
        };
        use faultline_checker::history::EventType;
        for p in 0..n {
            push(EventType::Invoke, p, "write", serde_json::json!(p));
            push(EventType::Invoke, n + p, "read", serde_json::Value::Null);
        }
        for p in 0..n {
            push(EventType::Ok, p, "write", serde_json::json!(p));
            push(EventType::Ok, n + p, "read", serde_json::json!(p));
        }
        push(EventType::Invoke, 2 * n, "read", serde_json::Value::Null);
        push(EventType::Ok, 2 * n, "read", serde_json::json!(1_000_000));
        let opts = CheckOptions { memory_limit_bytes: Some(mib << 20), ..CheckOptions::default() };
        let t = Instant::now();
        let r = check_linearizable(&events, ModelKind::Register, &opts);
        println!("{} in {:.3} s: {}", r.verdict, t.elapsed().as_secs_f64(), r.reason.unwrap_or_default());
        return;
    }
    if args.get(2).map(String::as_str) == Some("--all-keys") {
        let file = &args[3];
        let limit = args.get(4).map_or(60.0, |s| s.parse::<f64>().expect("seconds"));
        let (events, model) = load(dir, file);
        let opts = CheckOptions {
            time_limit: Some(Duration::from_secs_f64(limit)),
            stop_on_first_invalid: false,
            ..CheckOptions::default()
        };
        let t = Instant::now();
        let r = check_linearizable(&events, model, &opts);
        let wall = t.elapsed();
        for k in &r.keys {
            println!(
                "key {:>4}  {:<8} ops {:>4}  steps {:>10}  cached {:>10}  max_lin {:>4}  {:>9.1} ms  {}",
                k.key.as_deref().unwrap_or("-"),
                k.verdict.to_string(),
                k.ops,
                k.steps,
                k.cache_entries,
                k.max_linearized,
                k.elapsed_ms,
                k.reason.as_deref().map(|r| r.chars().take(100).collect::<String>()).unwrap_or_default()
            );
        }
        println!("{file}: {} in {:.3} s (all keys, no early stop)", r.verdict, wall.as_secs_f64());
        return;
    }
    let repeat: usize = args.get(2).map_or(1, |s| s.parse().expect("repeat count"));
    let tsv = std::fs::read_to_string(dir.join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    let opts = CheckOptions::default();
    let mut total = Duration::ZERO;
    let mut wrong = 0;
    let mut n = 0;
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (events, model) = load(dir, cols[0]);
        let want = if cols[2] == "linearizable" { Verdict::Valid } else { Verdict::Invalid };
        let mut best = Duration::MAX;
        for _ in 0..repeat {
            let t = Instant::now();
            let r = check_linearizable(&events, model, &opts);
            best = best.min(t.elapsed());
            if r.verdict != want {
                wrong += 1;
                eprintln!("{}: WRONG verdict {} (want {want})", cols[0], r.verdict);
            }
        }
        total += best;
        n += 1;
        println!("{}\t{:.3} ms", cols[0], best.as_secs_f64() * 1e3);
    }
    println!(
        "TOTAL {n} files: {:.1} ms (best of {repeat} per file), {wrong} wrong verdicts",
        total.as_secs_f64() * 1e3
    );
}

/// A linearizable cas-register history like a harness run's: `procs` clients, each op takes
/// effect at a random point of its interval; a fraction `info` of ops time out (take effect
/// later or never, and retire their process); cas mismatches are recorded as fails with error
/// `cas-mismatch`. Deterministic for a seed (a small xorshift, to keep the example dependency-free).
fn synthetic_long(
    ops: usize,
    procs: u64,
    info: f64,
    keys: usize,
    seed: u64,
    values: u64,
) -> Vec<faultline_checker::history::Event> {
    use faultline_checker::history::{Event, EventType, Process};
    use serde_json::{json, Value};
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut state: Vec<Value> = vec![Value::Null; keys];
    let mut events: Vec<Event> = Vec::new();
    // Per slot: (process id, f, key, input, applied output) of the op in flight.
    // Per client slot: (process, f, key, input, effect (output, applied) once taken, indeterminate).
    type InFlight = (u64, String, usize, Value, Option<(Value, bool)>, bool);
    let mut flight: Vec<Option<InFlight>> = vec![None; procs as usize];
    let mut next_pid = procs;
    let mut pids: Vec<u64> = (0..procs).collect();
    let mut pending_late: Vec<(usize, String, Value)> = Vec::new();
    let mut invoked = 0;
    let push = |events: &mut Vec<Event>, kind, p: u64, f: &str, key: usize, v: Value, err: Option<&str>| {
        let i = events.len() as u64;
        events.push(Event {
            index: i,
            time: i * 1000,
            kind,
            process: Process::Client(p),
            f: f.into(),
            key: Some(format!("r{key}")),
            value: v,
            error: err.map(str::to_string),
            node: None,
        });
    };
    let apply = |state: &mut Value, f: &str, input: &Value| -> (Value, bool) {
        match f {
            "read" => (state.clone(), true),
            "write" => {
                *state = input.clone();
                (input.clone(), true)
            }
            _ => {
                if *state == input[0] {
                    *state = input[1].clone();
                    (input.clone(), true)
                } else {
                    (input.clone(), false)
                }
            }
        }
    };
    while invoked < ops || flight.iter().any(Option::is_some) {
        if !pending_late.is_empty() && rnd(10) == 0 {
            let (k, f, input) = pending_late.swap_remove(rnd(pending_late.len() as u64) as usize);
            apply(&mut state[k], &f, &input);
        }
        let s = rnd(procs) as usize;
        match flight[s].take() {
            None if invoked < ops => {
                let key = rnd(keys as u64) as usize;
                let (f, v) = match rnd(3) {
                    0 => ("read", Value::Null),
                    1 => ("write", json!(rnd(values))),
                    // A cas from the current value half of the time, so some succeed.
                    _ => {
                        let from = if rnd(2) == 0 { state[key].clone() } else { json!(rnd(values)) };
                        ("cas", json!([from, rnd(values)]))
                    }
                };
                push(&mut events, EventType::Invoke, pids[s], f, key, v.clone(), None);
                let is_info = (rnd(1_000_000) as f64) < info * 1e6;
                flight[s] = Some((pids[s], f.to_string(), key, v, None, is_info));
                invoked += 1;
            }
            None => {}
            Some((p, f, key, v, None, false)) => {
                let out = apply(&mut state[key], &f, &v);
                flight[s] = Some((p, f, key, v, Some(out), false));
            }
            Some((p, f, key, v, Some((out, ok)), false)) => {
                if ok {
                    push(&mut events, EventType::Ok, p, &f, key, if f == "read" { out } else { v }, None);
                } else {
                    push(&mut events, EventType::Fail, p, &f, key, v, Some("cas-mismatch"));
                }
            }
            Some((p, f, key, v, _, true)) => {
                match rnd(3) {
                    0 => {
                        apply(&mut state[key], &f, &v);
                    }
                    1 => pending_late.push((key, f.clone(), v.clone())),
                    _ => {}
                }
                push(&mut events, EventType::Info, p, &f, key, Value::Null, Some("timeout"));
                pids[s] = next_pid;
                next_pid += 1;
            }
        }
    }
    events
}
