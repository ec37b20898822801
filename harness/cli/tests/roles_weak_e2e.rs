//! End-to-end `faultline run`s of the weakly consistent reference roles (docs/targets.md):
//!
//! - `available` (AP): the set workload under partitions is valid, converges, and every
//!   operation during the faults succeeded (available); the same run with `--bug
//!   no-anti-entropy` is judged invalid by set-full and convergence; the register workload
//!   under partitions is judged not linearizable (stale reads on the cut-off side).
//! - `multi-primary`: the set workload (each add a read-modify-write by the node) under a
//!   `clock` nemesis loses acknowledged adds in LWW mode (set-full invalid, elements lost) and
//!   loses none in vclock mode with the same seed and schedule.

mod run_support;

use run_support::*;
use serde_json::Value;

fn checker<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["checkers"]
        .as_array()
        .expect("checkers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} checker: {r:#}"))
}

fn applied(r: &Value) -> usize {
    r["faults"].as_array().expect("faults").iter().filter(|f| f["applied"] == true).count()
}

/// Partitions that always cut something among 3 leaderless nodes (a bare `partition` may
/// draw `majorities-ring`, which cuts nothing among 3, or `isolate-leader`, not applied).
const AVAILABLE_SET: &[&str] = &[
    "--target",
    "available",
    "--workload",
    "set",
    "--nemesis",
    "partition:halves+isolate-one",
    "--nodes",
    "3",
    "--concurrency",
    "6",
    "--rate",
    "80",
    "--time-limit",
    "8",
    "--nemesis-interval",
    "1.5",
    "--recovery",
    "1",
];

/// Attempts before a bug test gives up (each run about 10 s).
const ATTEMPTS_MAX: u64 = 3;

/// Measured with these flags: seeds 1–4 each caught (58–93 acknowledged adds missing on some
/// node, final reads disagreeing) and each valid without the bug; with a bare `partition`,
/// seed 1 drew only `majorities-ring` (no link cut among 3 nodes) and stayed valid, hence the
/// named kinds.
#[test]
fn available_no_anti_entropy_is_caught_and_the_same_run_without_it_is_valid_and_available() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let mut seen = Vec::new();
    let mut caught = None;
    for seed in 1..=ATTEMPTS_MAX {
        let store = Store::new();
        let s = seed.to_string();
        let mut args = AVAILABLE_SET.to_vec();
        args.extend(["--bug", "no-anti-entropy", "--seed", &s]);
        let out = run(store.path(), &args);
        let code = out.status.code();
        assert!(matches!(code, Some(0..=2)), "harness failure: {}", show(&out));
        let r = results(store.path());
        if code == Some(1) {
            let conv = checker(&r, "convergence");
            assert_eq!(conv["verdict"], "invalid", "{conv:#}");
            assert!(conv["reason"].as_str().unwrap_or("").contains("disagree"), "{conv:#}");
            let set = checker(&r, "set-full");
            assert_eq!(set["verdict"], "invalid", "{set:#}");
            caught = Some(seed);
            break;
        }
        seen.push(format!("seed {seed}: {}", r["verdict"]));
    }
    let Some(seed) = caught else { panic!("no-anti-entropy not caught in {ATTEMPTS_MAX} attempts: {seen:?}") };

    // Control: the same seed and schedule without the bug.
    let store = Store::new();
    let s = seed.to_string();
    let mut args = AVAILABLE_SET.to_vec();
    args.extend(["--seed", &s]);
    let out = run(store.path(), &args);
    let r = results(store.path());
    assert_eq!(out.status.code(), Some(0), "{}\n{:#}", show(&out), r["checkers"]);
    assert!(applied(&r) > 0, "no partition applied: {:#}", r["faults"]);
    let set = checker(&r, "set-full");
    assert_eq!((set["details"]["lost"].as_u64(), set["details"]["divergent"].as_u64()), (Some(0), Some(0)), "{set:#}");
    assert!(set["details"]["acknowledged"].as_u64().unwrap_or(0) > 50, "{set:#}");
    assert_eq!(checker(&r, "convergence")["verdict"], "valid");
    // Available: every operation invoked during the partitions succeeded.
    let av = &checker(&r, "availability")["details"]["during_faults"];
    assert!(av["ok"].as_u64().unwrap_or(0) > 10, "{av:#}");
    assert_eq!((av["fail"].as_u64(), av["info"].as_u64()), (Some(0), Some(0)), "{av:#}");
}

/// Measured: seeds 1 and 2 both invalid (a read on the cut-off node returns the old value
/// after a write on the other side completed); the same flags with `--nemesis none` were valid.
#[test]
fn available_register_under_partitions_is_not_linearizable() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let mut seen = Vec::new();
    for seed in 1..=ATTEMPTS_MAX {
        let store = Store::new();
        let s = seed.to_string();
        let out = run(
            store.path(),
            &[
                "--target",
                "available",
                "--workload",
                "register",
                "--nemesis",
                "partition:halves+isolate-one",
                "--nodes",
                "3",
                "--concurrency",
                "6",
                "--rate",
                "80",
                "--time-limit",
                "8",
                "--nemesis-interval",
                "1.5",
                "--recovery",
                "1",
                "--seed",
                &s,
            ],
        );
        let code = out.status.code();
        assert!(matches!(code, Some(0..=2)), "harness failure: {}", show(&out));
        let r = results(store.path());
        let ops: Vec<String> = history(store.path()).into_iter().map(|e| e.f).collect();
        assert!(!ops.iter().any(|o| o == "cas"), "the available role has no cas; the workload must not issue it");
        if code == Some(1) {
            let lin = checker(&r, "linearizable");
            assert_eq!(lin["verdict"], "invalid", "{lin:#}");
            assert!(lin["reason"].as_str().unwrap_or("").contains("not linearizable"), "{lin:#}");
            return;
        }
        seen.push(format!("seed {seed}: {}", r["verdict"]));
    }
    panic!("stale reads not found in {ATTEMPTS_MAX} attempts: {seen:?}");
}

/// The set workload on multi-primary with one clock fault (bump or strobe of a seeded offset
/// on a seeded subset of nodes).
const MULTI_PRIMARY_CLOCK: &[&str] = &[
    "--target",
    "multi-primary",
    "--workload",
    "set",
    "--nemesis",
    "clock",
    "--nodes",
    "3",
    "--concurrency",
    "6",
    "--rate",
    "80",
    "--time-limit",
    "8",
    "--nemesis-interval",
    "2",
    "--recovery",
    "1",
];

/// Measured with these flags, LWW: seeds 1–8 all invalid (46 to 253 acknowledged adds lost per
/// run; seed 1's fault is a 45 s strobe on n3); `resolve=vclock` with the same seeds: all
/// valid, nothing lost.
/// (Without any fault LWW loses about 10–15 % too, from concurrent adds on two nodes: see
/// docs/targets.md.)
#[test]
fn multi_primary_lww_loses_acknowledged_adds_under_clock_skew_and_vclock_loses_none() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let seed = "1";
    let store = Store::new();
    let mut args = MULTI_PRIMARY_CLOCK.to_vec();
    args.extend(["--seed", seed]);
    let out = run(store.path(), &args);
    assert_eq!(out.status.code(), Some(1), "LWW under clock skew not invalid: {}", show(&out));
    let r = results(store.path());
    assert!(
        r["faults"].as_array().unwrap().iter().any(|f| f["applied"] == true && f["fault"] == "clock"),
        "{:#}",
        r["faults"]
    );
    let set = checker(&r, "set-full");
    assert_eq!(set["verdict"], "invalid", "{set:#}");
    assert!(set["details"]["lost"].as_u64().unwrap_or(0) > 0, "{set:#}");
    assert!(set["reason"].as_str().unwrap_or("").contains("acknowledged but missing"), "{set:#}");
    // LWW loses, but the replicas still agree on what they kept.
    assert_eq!(checker(&r, "convergence")["verdict"], "valid");

    // vclock mode, same seed and schedule: siblings keep every add.
    let store = Store::new();
    let mut vargs = args.clone();
    vargs.extend(["--target-opt", "resolve=vclock"]);
    let out = run(store.path(), &vargs);
    let r2 = results(store.path());
    assert_eq!(out.status.code(), Some(0), "vclock not valid: {}\n{:#}", show(&out), r2["checkers"]);
    let set = checker(&r2, "set-full");
    assert_eq!(set["details"]["lost"].as_u64(), Some(0), "{set:#}");
    assert!(set["details"]["acknowledged"].as_u64().unwrap_or(0) > 50, "{set:#}");
    // Same schedule: the same faults on the same nodes with the same offsets.
    let sched = |r: &Value| -> Vec<(Value, Value, Value)> {
        r["faults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["kind"].clone(), f["nodes"].clone(), f["detail"]["offset_ms"].clone()))
            .collect()
    };
    assert_eq!(sched(&r), sched(&r2));
}
