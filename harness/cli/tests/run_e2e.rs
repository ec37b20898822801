//! End to end: a short Raft run under partitions and kills is judged valid, with successful
//! operations before, during and after the faults, and leaves nothing behind.

mod run_support;

use faultline_checker::history::{EventType, Process};
use run_support::*;

#[test]
fn raft_under_partitions_and_kills_is_valid_with_ok_ops_before_during_and_after_faults() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let store = Store::new();
    let started = std::time::Instant::now();
    let out = run(
        store.path(),
        &[
            "--nemesis",
            "partition,kill",
            "--nodes",
            "5",
            "--concurrency",
            "6",
            "--rate",
            "60",
            "--time-limit",
            "8",
            "--nemesis-interval",
            "1.5",
            "--recovery",
            "1",
            "--seed",
            "11",
        ],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(took.as_secs_f64() <= 20.0, "run took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("reproduce: faultline run") && stdout.contains("--seed 11"), "{stdout}");
    // The run draws its own report.
    let latest = store.path().join("latest");
    for f in ["report.html", "latency-raw.png", "latency-quantiles.png", "rate.png"] {
        assert!(latest.join(f).is_file(), "{f} missing from the run folder: {stdout}");
    }
    assert!(stdout.contains("report: "), "{stdout}");

    let r = results(store.path());
    assert_eq!(r["verdict"], "valid", "{r:#}");
    assert_eq!(r["runtime"]["mechanism"], "netns");
    let faults = r["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "two fault windows in 8 s at 1.5 s: {faults:#?}");
    let families: Vec<&str> = faults.iter().map(|f| f["fault"].as_str().unwrap()).collect();
    assert!(families.contains(&"partition") && families.contains(&"kill"), "{families:?}");
    assert!(faults.iter().all(|f| f["applied"] == true), "{faults:#?}");
    let lin = r["checkers"].as_array().unwrap().iter().find(|c| c["name"] == "linearizable").unwrap();
    assert_eq!(lin["verdict"], "valid");
    // On the consistency ladder: linearizable, the weaker models implied, and every node's
    // final read of every key equal.
    let c = &r["consistency"];
    assert_eq!(c["strongest"], "linearizable", "{c:#}");
    let models: Vec<(&str, &str)> = c["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["model"].as_str().unwrap(), m["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        models,
        [("linearizable", "valid"), ("sequential", "not-checked"), ("session", "not-checked"), ("convergent", "valid")],
        "{c:#}"
    );
    assert!(stdout.contains("consistency (strongest: linearizable)"), "{stdout}");

    // The history itself: ok operations before the first fault, during faults, and after the
    // last fault ended but before the heal (main phase), plus the final reads.
    let h = history(store.path());
    let nem: Vec<_> = h.iter().filter(|e| e.process == Process::Nemesis).collect();
    let first_start = nem.iter().find(|e| e.f.starts_with("start-")).unwrap().time;
    let last_stop = nem.iter().filter(|e| e.f.starts_with("stop-")).map(|e| e.time).max().unwrap();
    let heal = nem.iter().find(|e| e.f == "heal").unwrap().time;
    let oks: Vec<u64> =
        h.iter().filter(|e| e.process != Process::Nemesis && e.kind == EventType::Ok).map(|e| e.time).collect();
    assert!(oks.iter().any(|&t| t < first_start), "no ok before the first fault");
    assert!(oks.iter().any(|&t| t > last_stop && t < heal), "no ok after the last fault in the main phase");
    assert!(oks.iter().any(|&t| t > heal), "no ok final read");
    assert!(r["availability"]["during_faults"]["ok"].as_u64().unwrap() > 0);
    assert!(r["final_reads"]["missed"].as_array().unwrap().is_empty(), "{:#}", r["final_reads"]);

    // Store layout.
    let dir = store.path().join("latest");
    for f in ["test.json", "history.jsonl", "results.json", "harness.log", "nodes/n1.log", "nodes/n5.log"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("test.json")).unwrap()).unwrap();
    assert_eq!(test["seed"], 11);
    assert_eq!(test["schedule"]["faults"].as_array().unwrap().len(), 2);

    // Nothing left behind.
    let run_id = r["runtime"]["run_id"].as_str().unwrap();
    assert!(leftovers(run_id).is_empty(), "{:?}", leftovers(run_id));
    assert!(processes_with(dir.canonicalize().unwrap().to_str().unwrap()).is_empty());
}
