//! The default schedule (`--nemesis all`, nothing targeted) catches the planted Raft bugs that
//! need a leader-targeted fault, and keeps a correct Raft valid. Short runs: the seeds are the
//! first whose default schedule holds the fault the bug needs within 15 s (chosen from the
//! generator, as a user's 60 s run holds the whole first wave), and a bug counts as caught when
//! one of five seeds ends invalid (timing decides a single run under load).

mod run_support;

use faultline_core::nemesis::{coverage, Family};
use run_support::*;

/// The default interval (3 s) and a 15 s run: three windows.
const SHAPE: [&str; 4] = ["--time-limit", "15", "--recovery", "1"];

/// The first `n` seeds whose default schedule (5 nodes) has a window of `kind` of `family`.
fn seeds_with(family: Family, kind: &str, n: usize) -> Vec<String> {
    (1..1000u64)
        .filter(|&seed| {
            let s = coverage::generate(seed, 5, true, &|f| f != Family::Rebalance, 15.0, 3.0);
            s.faults.iter().any(|f| f.spec.family == family && f.spec.kind == kind)
        })
        .take(n)
        .map(|s| s.to_string())
        .collect()
}

fn caught(bug: &str, seeds: &[String]) -> Vec<String> {
    let mut seen = Vec::new();
    for seed in seeds {
        let store = Store::new();
        let mut args = SHAPE.to_vec();
        args.extend(["--bug", bug, "--seed", seed]);
        let out = run(store.path(), &args);
        let r = results(store.path());
        assert!(matches!(out.status.code(), Some(0..=2)), "{}", show(&out));
        assert_eq!(r["schedule"], "all", "{r:#}");
        seen.push(format!("seed {seed}: {}", r["verdict"]));
        if out.status.code() == Some(1) {
            return seen;
        }
    }
    panic!("{bug} not caught by the default schedule: {seen:?}");
}

#[test]
fn the_default_schedule_catches_stale_read() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let seen = caught("stale-read", &seeds_with(Family::Partition, "isolate-leader", 5));
    eprintln!("stale-read: {seen:?}");
}

#[test]
fn the_default_schedule_catches_lease() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let seen = caught("lease", &seeds_with(Family::Clock, "skew-isolate-leader", 5));
    eprintln!("lease: {seen:?}");
}

#[test]
fn a_correct_raft_stays_valid_under_the_default_schedule() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let seed = &seeds_with(Family::Partition, "isolate-leader", 1)[0];
    let store = Store::new();
    let mut args = SHAPE.to_vec();
    args.extend(["--seed", seed]);
    let out = run(store.path(), &args);
    let r = results(store.path());
    let lin = r["checkers"].as_array().unwrap().iter().find(|c| c["name"] == "linearizable").unwrap();
    assert_eq!(lin["verdict"], "valid", "{}\n{r:#}", show(&out));
    assert!(matches!(out.status.code(), Some(0 | 2)), "{}", show(&out));
}
