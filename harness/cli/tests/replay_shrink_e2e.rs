//! `faultline run --schedule` replays a recorded run's faults (same kinds at the same offsets,
//! the same operations from its seed); `faultline shrink` turns an invalid run into a smaller
//! one that still fails, within its run budget, keeping every attempt.

mod run_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use faultline_checker::history::{EventType, Process};
use run_support::*;
use serde_json::Value;

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Each worker's invocations before the heal, in order.
fn ops(store: &Path, concurrency: u64) -> BTreeMap<u64, Vec<(String, Option<String>, Value)>> {
    let h = history(store);
    let heal = h.iter().find(|e| e.f == "heal").map_or(u64::MAX, |e| e.time);
    let mut by = BTreeMap::new();
    for e in h.into_iter().filter(|e| e.time < heal) {
        if let (Process::Client(p), EventType::Invoke) = (e.process, e.kind) {
            by.entry(p % concurrency).or_insert_with(Vec::new).push((e.f, e.key, e.value));
        }
    }
    by
}

/// (family, kind) of every fault a run recorded, applied or not.
fn faults(r: &Value) -> Vec<(String, String)> {
    r["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["fault"].as_str().unwrap().into(), f["kind"].as_str().unwrap().into()))
        .collect()
}

const SHAPE: [&str; 12] = [
    "--nodes",
    "3",
    "--concurrency",
    "4",
    "--rate",
    "60",
    "--nemesis-interval",
    "1",
    "--recovery",
    "1",
    "--op-timeout-ms",
    "1000",
];

#[test]
fn a_recorded_schedule_replays_with_the_same_faults_and_ops() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let first = Store::new();
    let mut args = SHAPE.to_vec();
    args.extend(["--time-limit", "8", "--seed", "21"]);
    let out = run(first.path(), &args);
    assert!(matches!(out.status.code(), Some(0 | 2)), "{}", show(&out));
    let run1 = std::fs::canonicalize(first.path().join("latest")).unwrap();
    let (t1, r1) = (json(&run1.join("test.json")), results(first.path()));
    assert_eq!(t1["schedule"]["name"], "all", "the default coverage schedule");
    let planned = faultline_core::nemesis::coverage::generate_declaring(
        21,
        3,
        true,
        &|f| f != faultline_core::nemesis::Family::Rebalance,
        faultline_core::target::roles::RAFT_FAULTS,
        8.0,
        1.0,
    );
    assert!(planned.faults.len() >= 3, "{planned:?}");
    assert_eq!(t1["schedule"]["faults"].as_array().unwrap().len(), planned.faults.len(), "{t1:#}");

    // The replay takes the seed from the file; --nemesis is ignored for the schedule.
    let second = Store::new();
    let from = run1.join("results.json");
    let mut args = SHAPE.to_vec();
    args.extend(["--time-limit", "8", "--nemesis", "none", "--schedule", from.to_str().unwrap()]);
    let out = run(second.path(), &args);
    assert!(matches!(out.status.code(), Some(0 | 2)), "{}", show(&out));
    let run2 = std::fs::canonicalize(second.path().join("latest")).unwrap();
    let (t2, r2) = (json(&run2.join("test.json")), results(second.path()));
    assert_eq!(t2["seed"], 21);
    assert_eq!(t2["schedule"], t1["schedule"], "the same windows, offsets and choices");
    assert_eq!(faults(&r2), faults(&r1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--schedule ") && stdout.contains("--seed 21"), "{stdout}");
    assert!(t2["repro"].as_str().unwrap().contains("--schedule "), "{t2:#}");
    let (a, b) = (ops(first.path(), 4), ops(second.path(), 4));
    for w in 0..4u64 {
        let n = a[&w].len().min(b[&w].len());
        assert!(n >= 10, "worker {w} ran only {n} ops");
        assert_eq!(a[&w][..n], b[&w][..n], "worker {w}: the replay's ops differ");
    }

    // A schedule this run cannot follow is refused up front.
    let mut args = SHAPE.to_vec();
    args.extend(["--time-limit", "3", "--schedule", run1.to_str().unwrap()]);
    let out = run(second.path(), &args);
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("raise --time-limit"), "{}", show(&out));

    // A valid run has nothing to shrink.
    let out = Command::new(faultline()).args(["shrink", run1.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not invalid"), "{}", show(&out));
}

#[test]
fn shrink_finds_a_smaller_failing_run_within_its_budget() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    // paxos-ignore-accepted needs no fault; the default schedule gives the run 5 windows.
    let store = Store::new();
    let mut invalid = None;
    for seed in ["1", "2", "3"] {
        let mut args = SHAPE.to_vec();
        args.extend(["--time-limit", "8", "--target", "paxos", "--bug", "paxos-ignore-accepted", "--seed", seed]);
        let out = run(store.path(), &args);
        if out.status.code() == Some(1) {
            invalid = Some(std::fs::canonicalize(store.path().join("latest")).unwrap());
            break;
        }
    }
    let run_dir = invalid.expect("the planted bug is caught in one of 3 seeds");
    let windows = json(&run_dir.join("test.json"))["schedule"]["faults"].as_array().unwrap().len();
    assert!(windows >= 2, "{windows}");
    let started = std::time::Instant::now();
    let out =
        Command::new(faultline()).args(["shrink", run_dir.to_str().unwrap(), "--budget-runs", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let s = json(&run_dir.join("shrink/shrink.json"));
    let attempts = s["attempts"].as_array().unwrap();
    assert!(!attempts.is_empty() && attempts.len() <= 3, "{s:#}");
    for a in attempts {
        let dir = Path::new(a["run_dir"].as_str().expect("every attempt is a stored run"));
        assert!(dir.join("results.json").is_file(), "{a:#}");
        assert!(Path::new(a["schedule_file"].as_str().unwrap()).is_file(), "{a:#}");
    }
    let shrunk = &s["shrunk"];
    assert!(shrunk.is_object(), "no attempt ended invalid: {s:#}\n{}", show(&out));
    assert!(shrunk["windows"].as_u64().unwrap() < windows as u64, "{s:#}");
    let dir = Path::new(shrunk["run_dir"].as_str().unwrap());
    assert_eq!(json(&dir.join("results.json"))["verdict"], "invalid");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let repro = stdout.lines().find(|l| l.starts_with("reproduce: ")).expect(&stdout);
    assert!(repro.contains("--schedule ") && repro.contains("--bug paxos-ignore-accepted"), "{repro}");
    eprintln!("shrink took {:?}: {stdout}", started.elapsed());
}
