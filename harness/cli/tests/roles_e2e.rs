//! End-to-end `faultline run`s of the leaderless reference roles (docs/targets.md): `paxos`
//! (CASPaxos) and `quorum` (ABD) are judged linearizable under partitions and kills, and each
//! role's planted bug (`paxos-ignore-accepted`, `naive`) is judged invalid within a bounded
//! number of seeded attempts.

mod run_support;

use run_support::*;
use serde_json::Value;

/// A short run of `target` with partitions and kills on 3 nodes; returns results.json and the
/// history's operation names.
fn faulty_run(target: &str, seed: u64) -> (Value, Vec<String>) {
    let store = Store::new();
    let out = run(
        store.path(),
        &[
            "--target",
            target,
            "--nodes",
            "3",
            "--nemesis",
            "partition,kill",
            "--time-limit",
            "10",
            "--nemesis-interval",
            "2",
            "--recovery",
            "1",
            "--concurrency",
            "10",
            "--rate",
            "100",
            "--seed",
            &seed.to_string(),
        ],
    );
    let r = results(store.path());
    assert_eq!(out.status.code(), Some(0), "{target} run not valid: {}\n{:#}", show(&out), r["checkers"]);
    let ops = history(store.path()).into_iter().map(|e| e.f).collect();
    (r, ops)
}

fn applied_faults(r: &Value) -> Vec<String> {
    r["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .filter(|f| f["applied"] == true)
        .map(|f| format!("{}:{}", f["fault"], f["kind"]))
        .collect()
}

#[test]
fn paxos_run_with_partitions_and_kills_is_linearizable() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let (r, ops) = faulty_run("paxos", 1);
    assert_eq!(r["verdict"], "valid");
    assert!(!applied_faults(&r).is_empty(), "no fault applied: {:#}", r["faults"]);
    for f in ["read", "write", "cas"] {
        assert!(ops.iter().any(|o| o == f), "no {f} in the history");
    }
}

#[test]
fn quorum_run_with_partitions_and_kills_is_linearizable_and_issues_no_cas() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let (r, ops) = faulty_run("quorum", 1);
    assert_eq!(r["verdict"], "valid");
    assert!(!applied_faults(&r).is_empty(), "no fault applied: {:#}", r["faults"]);
    assert!(ops.iter().any(|o| o == "read") && ops.iter().any(|o| o == "write"));
    assert!(!ops.iter().any(|o| o == "cas"), "the quorum role has no cas; the workload must not issue it");
}

/// Runs `args` with seeds 1..=attempts until one is judged not linearizable; panics otherwise.
fn caught_within(what: &str, attempts: u64, args: &[&str]) {
    let mut seen = Vec::new();
    for seed in 1..=attempts {
        let store = Store::new();
        let seed_s = seed.to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--seed", &seed_s]);
        let out = run(store.path(), &all);
        let code = out.status.code();
        assert!(matches!(code, Some(0..=2)), "harness failure: {}", show(&out));
        let r = results(store.path());
        if code == Some(1) {
            let lin = r["checkers"]
                .as_array()
                .expect("checkers")
                .iter()
                .find(|c| c["name"] == "linearizable")
                .expect("linearizable checker");
            assert_eq!(lin["verdict"], "invalid", "{lin:#}");
            assert!(lin["reason"].as_str().unwrap_or("").contains("not linearizable"), "{lin:#}");
            // The consistency ladder places the run below linearizable.
            let c = &r["consistency"];
            assert_ne!(c["strongest"], "linearizable", "{c:#}");
            assert_eq!(c["models"][0]["verdict"], "invalid", "{c:#}");
            eprintln!("{what} seed {seed}: strongest {}", c["strongest"]);
            return;
        }
        seen.push(format!("seed {seed}: {}", r["verdict"]));
    }
    panic!("{what} not detected in {attempts} attempts: {seen:?}");
}

/// The bugged proposer reads its own cache: clients on different nodes see stale values at
/// once. Measured: seeds 1, 2, 3 all invalid with partitions and kills on (10 s runs).
#[test]
fn paxos_ignore_accepted_bug_is_found_invalid_within_bounded_seeded_attempts() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    caught_within(
        "paxos-ignore-accepted",
        2,
        &[
            "--target",
            "paxos",
            "--bug",
            "paxos-ignore-accepted",
            "--nodes",
            "3",
            "--nemesis",
            "partition,kill",
            "--time-limit",
            "8",
            "--nemesis-interval",
            "2",
            "--recovery",
            "1",
            "--concurrency",
            "10",
            "--rate",
            "100",
        ],
    );
}

/// The textbook quorum system gives up on a node after 100 ms, so under message loss writes are
/// reported failed yet applied later, and concurrent unversioned writes land in different orders,
/// so the majority value flips back. Measured with exactly these flags (one run each, alone):
/// seeds 1, 2, 3, 4 all invalid; partitions alone rarely show it (a read needs a majority to
/// agree), message loss does.
#[test]
fn quorum_naive_bug_is_found_invalid_within_bounded_seeded_attempts() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let flags = [
        "--target",
        "quorum",
        "--nodes",
        "3",
        "--nemesis",
        "loss",
        "--time-limit",
        "12",
        "--nemesis-interval",
        "3",
        "--recovery",
        "1",
        "--concurrency",
        "30",
        "--rate",
        "300",
    ];
    let mut bugged = flags.to_vec();
    bugged.extend(["--bug", "naive"]);
    caught_within("naive", 3, &bugged);
    // The same run without the bug (ABD) is linearizable: the checker blames the bug, not the
    // fault. (This run once found a real bug: two writes through one node sharing a version.)
    let store = Store::new();
    let mut args = flags.to_vec();
    args.extend(["--seed", "1"]);
    let out = run(store.path(), &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "ABD under loss not valid: {}\n{:#}",
        show(&out),
        results(store.path())["checkers"]
    );
}
