//! End to end against Redis 7 (Debian's redis-server and redis-sentinel, installed by
//! scripts/setup-external.sh): a primary, two replicas, one sentinel per node. A partition that
//! isolates the primary lets clients on its side keep writing to it (their sentinel, cut off with
//! it, still names it) while the majority's sentinels promote a replica; at heal the old primary
//! becomes a replica and drops what it acknowledged. The checker must find the lost writes
//! (Jepsen, Redis, 2013: asynchronous replication with Sentinel failover loses acknowledged
//! writes).
//!
//! Needs root (network namespaces). Fails, naming the setup script, when Redis is not installed.

mod run_support;

use run_support::*;

fn require(program: &str) {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false);
    assert!(found, "{program} is not installed: run scripts/setup-external.sh (Debian's redis-server and redis-sentinel) before these tests");
}

#[test]
fn isolating_the_primary_loses_acknowledged_writes_within_three_seeded_runs() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    require("redis-server");
    require("redis-sentinel");
    let mut seen = Vec::new();
    for seed in ["1", "2", "3"] {
        let store = Store::new();
        let started = std::time::Instant::now();
        let out = run(
            store.path(),
            &[
                "--target",
                "redis",
                "--nodes",
                "3",
                "--nemesis",
                "partition:isolate-leader",
                "--concurrency",
                "5",
                "--rate",
                "60",
                "--time-limit",
                "18",
                "--nemesis-interval",
                "7",
                "--recovery",
                "3",
                "--port",
                "6379",
                "--seed",
                seed,
            ],
        );
        assert!(started.elapsed().as_secs() <= 60, "run took {:?}", started.elapsed());
        let code = out.status.code();
        assert!(code == Some(0) || code == Some(1), "{}", show(&out));
        let r = results(store.path());
        let faults = r["faults"].as_array().unwrap();
        assert_eq!(faults.len(), 1, "{faults:#?}");
        assert_eq!(faults[0]["applied"], true, "{faults:#?}");
        // The isolated node is the one that was primary (n1 at setup).
        let run_dir = std::fs::canonicalize(store.path().join("latest")).unwrap();
        let logs: String = ["n1", "n2", "n3"]
            .iter()
            .map(|n| std::fs::read_to_string(run_dir.join(format!("nodes/{n}.log"))).unwrap_or_default())
            .collect();
        let failover = logs.contains("+switch-master");
        seen.push(format!("seed {seed}: {} (failover: {failover})", r["verdict"]));
        if r["verdict"] == "invalid" {
            assert_eq!(code, Some(1));
            assert!(failover, "lost writes need a failover; logs show none");
            let lin = r["checkers"].as_array().unwrap().iter().find(|c| c["name"] == "linearizable").unwrap();
            assert_eq!(lin["verdict"], "invalid", "{lin:#}");
            let run_id = r["runtime"]["run_id"].as_str().unwrap();
            assert!(leftovers(run_id).is_empty(), "{:?}", leftovers(run_id));
            assert!(
                processes_with(run_dir.to_str().unwrap()).is_empty(),
                "a redis-server or sentinel outlived the run"
            );
            return;
        }
    }
    panic!("no lost write found in three seeded runs: {seen:?}");
}

#[test]
fn without_faults_redis_through_sentinel_is_linearizable() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    require("redis-server");
    require("redis-sentinel");
    let store = Store::new();
    let out = run(
        store.path(),
        &[
            "--target",
            "redis",
            "--nodes",
            "3",
            "--nemesis",
            "none",
            "--concurrency",
            "5",
            "--rate",
            "80",
            "--time-limit",
            "6",
            "--recovery",
            "1",
            "--port",
            "6379",
            "--seed",
            "4",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = results(store.path());
    let lin = r["checkers"].as_array().unwrap().iter().find(|c| c["name"] == "linearizable").unwrap();
    assert_eq!(lin["verdict"], "valid", "{}\n{lin:#}", show(&out));
    assert!(r["ops"]["completed"]["ok"].as_u64().unwrap() > 100, "{r:#}");
}

/// Targets own their clients: Redis's speaks sets (SADD/SMEMBERS) and counters (INCRBY/GET),
/// so the set and counter workloads run on it; with no fault both are valid.
#[test]
fn the_set_and_counter_workloads_run_on_redis() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    require("redis-server");
    require("redis-sentinel");
    for (workload, own) in [("set", "set-full"), ("counter", "counter")] {
        let store = Store::new();
        let out = run(
            store.path(),
            &[
                "--target",
                "redis",
                "--nodes",
                "3",
                "--workload",
                workload,
                "--nemesis",
                "none",
                "--concurrency",
                "4",
                "--rate",
                "50",
                "--time-limit",
                "6",
                "--recovery",
                "2",
                "--port",
                "6379",
                "--seed",
                "2",
            ],
        );
        let r = results(store.path());
        let checker = r["checkers"].as_array().unwrap().iter().find(|c| c["name"] == own).cloned();
        let checker = checker.unwrap_or_else(|| panic!("{own} ran: {}", show(&out)));
        assert_eq!(checker["verdict"], "valid", "{workload}: {checker:#}");
        assert!(r["ops"]["by_f"]["add"]["ok"].as_u64().unwrap() > 50, "{workload}: {:#}", r["ops"]);
        assert!(r["ops"]["by_f"]["read"]["ok"].as_u64().unwrap() > 5, "{workload}: {:#}", r["ops"]);
    }
}
