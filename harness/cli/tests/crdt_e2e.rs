//! End to end on the `crdt` target: the set workload under partitions is valid, with a final
//! read of every set from every node; the counter workload under partitions, kills and pauses
//! is valid (acknowledged adds persist, replicas converge); and `--bug bad-merge` is judged
//! invalid by the counter and convergence checkers within a bounded number of seeded attempts.

mod run_support;

use faultline_checker::history::{EventType, Process};
use run_support::*;
use std::collections::BTreeSet;

fn checker<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["checkers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} checker: {r:#}"))
}

#[test]
fn set_under_partitions_is_valid_with_final_reads_from_every_node() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let store = Store::new();
    let started = std::time::Instant::now();
    let out = run(
        store.path(),
        &[
            "--target",
            "crdt",
            "--workload",
            "set",
            "--nemesis",
            "partition",
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
            "3",
        ],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(took.as_secs_f64() <= 20.0, "run took {took:?}");
    let r = results(store.path());
    assert_eq!(r["verdict"], "valid", "{r:#}");
    assert!(
        r["faults"].as_array().unwrap().iter().all(|f| f["applied"] == true && f["fault"] == "partition"),
        "{:#}",
        r["faults"]
    );
    let set = checker(&r, "set-full");
    assert_eq!(set["verdict"], "valid");
    let d = &set["details"];
    assert!(d["acknowledged"].as_u64().unwrap() > 100, "{d:#}");
    assert_eq!((d["lost"].as_u64(), d["unexpected"].as_u64(), d["divergent"].as_u64()), (Some(0), Some(0), Some(0)));
    assert_eq!(d["ok"], d["acknowledged"], "no indeterminate adds expected on an available store: {d:#}");
    assert!(d["visibility"]["n"].as_u64().unwrap() > 100);
    let conv = checker(&r, "convergence");
    assert_eq!(conv["verdict"], "valid");
    assert!(conv["details"]["converged_within_ms"].as_f64().is_some());
    // On the consistency ladder: each client reads its own adds and never loses what it saw
    // (session), and the replicas converge; nothing decides the stronger models for sets.
    let c = &r["consistency"];
    assert_eq!(c["strongest"], "session", "{c:#}");
    assert_eq!(c["models"][3]["verdict"], "valid", "{c:#}");
    assert!(r["final_reads"]["missed"].as_array().unwrap().is_empty(), "{:#}", r["final_reads"]);

    // Every node read every set after the heal.
    let h = history(store.path());
    let heal = h.iter().find(|e| e.process == Process::Nemesis && e.f == "heal").unwrap().index;
    let finals: BTreeSet<(String, String)> = h
        .iter()
        .filter(|e| e.index > heal && e.kind == EventType::Ok && e.f == "read")
        .map(|e| (e.key.clone().unwrap(), e.node.clone().unwrap()))
        .collect();
    let keys: BTreeSet<String> = h.iter().filter_map(|e| e.key.clone()).collect();
    for k in &keys {
        for n in ["n1", "n2", "n3"] {
            assert!(finals.contains(&(k.clone(), n.to_string())), "no final read of {k} on {n}: {finals:?}");
        }
    }
    let run_id = r["runtime"]["run_id"].as_str().unwrap();
    assert!(leftovers(run_id).is_empty(), "{:?}", leftovers(run_id));
}

#[test]
fn counter_under_partitions_kills_and_pauses_is_valid() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let store = Store::new();
    let out = run(
        store.path(),
        &[
            "--target",
            "crdt",
            "--workload",
            "counter",
            "--nemesis",
            "partition,kill,pause",
            "--nodes",
            "5",
            "--concurrency",
            "10",
            "--rate",
            "100",
            "--time-limit",
            "8",
            "--nemesis-interval",
            "1.5",
            "--recovery",
            "1",
            "--seed",
            "5",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = results(store.path());
    let c = checker(&r, "counter");
    assert_eq!(c["verdict"], "valid", "{c:#}");
    assert!(c["details"]["reads"].as_u64().unwrap() > 50);
    // Final reads: one per counter per node, all equal.
    let conv = checker(&r, "convergence");
    assert_eq!(conv["verdict"], "valid", "{conv:#}");
    // A correct PN-Counter is credited with convergence (no session or sequential checker for
    // counters).
    assert_eq!(r["consistency"]["strongest"], "convergent", "{:#}", r["consistency"]);
    for k in conv["details"]["keys"].as_array().unwrap() {
        assert_eq!(k["finals"].as_array().unwrap().len(), 5, "{k:#}");
    }
}

/// Attempts before the test gives up; each takes about 9 s. Measured: seeds 3 and 4 were both
/// invalid on the first try (the first gossip round after the first add already overcounts).
const ATTEMPTS_MAX: u64 = 3;

#[test]
fn bad_merge_is_found_invalid_within_bounded_seeded_attempts() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let mut seen = Vec::new();
    for seed in 1..=ATTEMPTS_MAX {
        let store = Store::new();
        let out = run(
            store.path(),
            &[
                "--target",
                "crdt",
                "--workload",
                "counter",
                "--bug",
                "bad-merge",
                "--nemesis",
                "partition",
                "--nodes",
                "3",
                "--concurrency",
                "6",
                "--rate",
                "80",
                "--time-limit",
                "6",
                "--nemesis-interval",
                "1.5",
                "--recovery",
                "1",
                "--seed",
                &seed.to_string(),
            ],
        );
        let code = out.status.code();
        assert!(matches!(code, Some(0..=2)), "harness failure: {}", show(&out));
        let r = results(store.path());
        if code == Some(1) {
            assert_eq!(r["verdict"], "invalid");
            let c = checker(&r, "counter");
            assert_eq!(c["verdict"], "invalid", "{c:#}");
            assert!(c["reason"].as_str().unwrap().contains("out of bounds"), "{c:#}");
            // Whether the nodes also disagree at the end depends on the last gossip round: they
            // may all converge on the same wrong sum (seen in CI: all three read
            // -2272353406920272115). Either way the convergent rung is refuted, since it needs
            // the counter's bounds as well as agreement.
            let conv = checker(&r, "convergence");
            let disagree = conv["verdict"] == "invalid" && conv["reason"].as_str().unwrap().contains("disagree");
            assert!(disagree || conv["verdict"] == "valid", "{conv:#}");
            let convergent =
                r["consistency"]["models"].as_array().unwrap().iter().find(|m| m["model"] == "convergent").unwrap();
            assert_eq!(convergent["verdict"], "invalid", "{:#}", r["consistency"]);
            return;
        }
        seen.push((seed, r["verdict"].clone()));
    }
    panic!("bad-merge not caught in {ATTEMPTS_MAX} attempts: {seen:?}");
}
