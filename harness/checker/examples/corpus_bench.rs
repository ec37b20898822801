//! Benchmark driver (not a test): times the checker on Porcupine's corpus.
//!
//! `cargo run --release -p faultline-checker --example corpus_bench -- DIR [REPEAT]` checks
//! every file listed in DIR/EXPECTED.tsv (stop at the first invalid key, as Porcupine's tests
//! do) and prints per-file and total times (best of REPEAT runs per file, parsing excluded).
//! `... -- DIR --all-keys FILE [TIME_LIMIT_S]` judges every key of one kv file with no early stop.
//! `... -- --synthetic-hard N MEM_MIB` checks a history that needs about 3^N configurations, under a
//! memory budget (to compare the budget with the peak RSS).

use std::path::Path;
use std::time::{Duration, Instant};

use faultline_checker::formats::Format;
use faultline_checker::{check_linearizable, CheckOptions, ModelKind, Verdict};

fn load(dir: &Path, file: &str) -> (Vec<faultline_checker::history::Event>, ModelKind) {
    let text = std::fs::read_to_string(dir.join(file)).expect("readable corpus file");
    let (format, model) =
        if file.starts_with("kv/") { (Format::PorcupineKv, ModelKind::Kv) } else { (Format::PorcupineEtcd, ModelKind::CasRegister) };
    (format.parse(&text).expect("corpus parses").events, model)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).map(String::as_str).unwrap_or("../shared/data/porcupine"));
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
    println!("TOTAL {n} files: {:.1} ms (best of {repeat} per file), {wrong} wrong verdicts", total.as_secs_f64() * 1e3);
}
