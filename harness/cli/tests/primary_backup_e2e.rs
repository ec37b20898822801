//! End-to-end `faultline run`s of the `primary-backup` reference role (docs/targets.md): what
//! master–slave replication without consensus is expected to show, each next to its control.
//!
//! * Asynchronous replication (the default) under `partition:isolate-leader`: the isolated
//!   primary keeps acknowledging adds while a backup takes over; on heal it steps down and is
//!   resynced from the new primary, so the set-full checker finds acknowledged adds lost. The
//!   same schedule with `--target-opt sync=true` loses none, unless the bug `sync-fallback`
//!   (sync degrading to async when backups go silent) is on.
//! * `--target-opt read-from=replica` with the register workload under `latency`: a backup's
//!   copy lags the primary, so reads from it are stale and the history is not linearizable; the
//!   same run with reads on the primary (the default) is linearizable.

mod run_support;

use run_support::*;
use serde_json::Value;

fn checker<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["checkers"]
        .as_array()
        .expect("checkers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} checker in {r:#}"))
}

/// One run of `args` with `seed`: exit code, results.json and the store (kept on failure).
fn attempt(args: &[&str], seed: u64) -> (i32, Value, Store) {
    let store = Store::new();
    let seed = seed.to_string();
    let mut all = vec!["--target", "primary-backup", "--nodes", "3"];
    all.extend_from_slice(args);
    all.extend(["--seed", &seed]);
    let out = run(store.path(), &all);
    let code = out.status.code();
    assert!(matches!(code, Some(0..=2)), "harness failure ({all:?}): {}", show(&out));
    let r = results(store.path());
    (code.expect("exit code"), r, store)
}

fn isolate_leader_applied(r: &Value) -> bool {
    r["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .any(|f| f["fault"] == "partition" && f["kind"] == "isolate-leader" && f["applied"] == true)
}

/// The set workload under leader isolation. The 300 ms request timeout keeps workers cycling
/// while sync-mode writes wait for the cut-off backup, so reads during the fault happen too.
const SET_ISOLATE_LEADER: &[&str] = &[
    "--workload",
    "set",
    "--nemesis",
    "partition:isolate-leader",
    "--time-limit",
    "12",
    "--nemesis-interval",
    "3",
    "--recovery",
    "1",
    "--concurrency",
    "10",
    "--rate",
    "200",
    "--target-opt",
    "request-timeout-ms=300",
];

/// Runs `args` with seeds 1..=3 until set-full finds acknowledged adds lost; panics otherwise.
fn adds_lost_within_three_attempts(what: &str, args: &[&str]) {
    let mut seen = Vec::new();
    for seed in 1..=3 {
        let (code, r, _store) = attempt(args, seed);
        assert!(isolate_leader_applied(&r), "{:#}", r["faults"]);
        let set = checker(&r, "set-full");
        let lost = set["details"]["lost"].as_u64().expect("lost count");
        if code == 1 && lost > 0 {
            assert_eq!(set["verdict"], "invalid", "{set:#}");
            assert!(set["reason"].as_str().unwrap_or("").contains("acknowledged but missing"), "{set:#}");
            return;
        }
        seen.push(format!("seed {seed}: exit {code}, set-full {} with {lost} lost", set["verdict"]));
    }
    panic!("{what}: no acknowledged add lost in 3 attempts: {seen:?}");
}

/// Measured (these flags, one run at a time): seeds 1, 2, 3 each lost 121–158 acknowledged
/// adds; so the first attempt is expected to catch it, and three are allowed.
#[test]
fn async_replication_loses_acknowledged_adds_when_the_primary_is_isolated() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    adds_lost_within_three_attempts("async", SET_ISOLATE_LEADER);
}

/// BUG sync-fallback: sync mode stops waiting for backups silent for a failover timeout (as
/// MySQL semi-sync does), so the cut-off primary acknowledges adds again and the failover drops
/// them. Measured (these flags): seeds 1, 2, 3 each lost 68–118. The control is the next test:
/// the same flags and seed without the bug lose nothing.
#[test]
fn sync_fallback_bug_loses_acknowledged_adds_when_the_primary_is_isolated() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let mut args = SET_ISOLATE_LEADER.to_vec();
    args.extend(["--target-opt", "sync=true", "--bug", "sync-fallback"]);
    adds_lost_within_three_attempts("sync-fallback", &args);
}

/// Measured (these flags): seeds 1, 2, 3 valid, 0 lost, 385–669 adds acknowledged.
#[test]
fn sync_replication_under_the_same_schedule_loses_no_acknowledged_add() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let mut args = SET_ISOLATE_LEADER.to_vec();
    args.extend(["--target-opt", "sync=true"]);
    let (code, r, _store) = attempt(&args, 1);
    assert!(isolate_leader_applied(&r), "{:#}", r["faults"]);
    let set = checker(&r, "set-full");
    assert_eq!(set["verdict"], "valid", "{set:#}");
    let d = &set["details"];
    assert_eq!(
        (d["lost"].as_u64(), d["divergent"].as_u64(), d["unexpected"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{d:#}"
    );
    assert!(
        d["acknowledged"].as_u64().expect("acknowledged") > 100,
        "the run must acknowledge adds to mean anything: {d:#}"
    );
    assert_eq!(checker(&r, "convergence")["verdict"], "valid");
    // Sync writes stall while the primary is cut off; if no operation at all completed during
    // the fault window, the availability checker says unknown (exit 2): that is the trade-off,
    // not a loss. Measured: exit 0 for seeds 1, 2, 3.
    let others_ok = r["checkers"]
        .as_array()
        .expect("checkers")
        .iter()
        .all(|c| c["verdict"] == "valid" || c["name"] == "availability");
    assert!(code == 0 || (code == 2 && others_ok), "exit {code}: {:#}", r["checkers"]);
}

/// The register workload with 20–200 ms of added latency on every link. The failover timeout
/// is raised to 1.5 s: with the default 300 ms, delayed heartbeats made a backup promote itself
/// (a false failover, split brain) in one of four runs, and then reads on the primary are not
/// linearizable either; this test is about replica staleness alone.
const REGISTER_LATENCY: &[&str] = &[
    "--workload",
    "register",
    "--nemesis",
    "latency",
    "--time-limit",
    "10",
    "--nemesis-interval",
    "3",
    "--recovery",
    "1",
    "--concurrency",
    "10",
    "--rate",
    "200",
    "--target-opt",
    "election-ms=1500",
];

/// Measured (these flags, one run at a time): with `read-from=replica` seeds 1, 2, 3 were not
/// linearizable (stale reads on backups); with reads on the primary seeds 1, 2, 3 were
/// linearizable. Without a fault the backups lag by well under a millisecond and neither seed 1
/// nor 2 was caught.
#[test]
fn reads_from_replicas_are_stale_and_reads_from_the_primary_are_not() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let mut replica = REGISTER_LATENCY.to_vec();
    replica.extend(["--target-opt", "read-from=replica"]);
    let mut seen = Vec::new();
    let mut caught = false;
    for seed in 1..=2 {
        let (code, r, _store) = attempt(&replica, seed);
        if code == 1 {
            let lin = checker(&r, "linearizable");
            assert_eq!(lin["verdict"], "invalid", "{lin:#}");
            assert!(lin["reason"].as_str().unwrap_or("").contains("not linearizable"), "{lin:#}");
            caught = true;
            break;
        }
        seen.push(format!("seed {seed}: {}", r["verdict"]));
    }
    assert!(caught, "stale replica reads not detected in 2 attempts: {seen:?}");
    let (code, r, _store) = attempt(REGISTER_LATENCY, 1);
    assert_eq!(code, 0, "reads on the primary, no partition: expected linearizable: {:#}", r["checkers"]);
    assert_eq!(checker(&r, "linearizable")["verdict"], "valid");
}
