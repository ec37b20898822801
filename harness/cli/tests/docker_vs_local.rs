//! The same seed and workload shape in the local and the Docker runtime give the same verdict,
//! the same seeded fault schedule, the same per-worker operations and results of the same
//! shape. Timings (op counts, latencies) are not compared: they legitimately differ.

mod docker_support;
mod run_support;

use std::collections::BTreeMap;

use serde_json::Value;

const ARGS: &[&str] = &[
    "--nodes",
    "3",
    "--concurrency",
    "5",
    "--rate",
    "60",
    "--nemesis",
    "all",
    "--time-limit",
    "13",
    "--nemesis-interval",
    "1",
    "--recovery",
    "1",
    "--seed",
    "11",
];

/// (f, key, value) of each worker's invocations in the main phase, in order (worker = process
/// mod concurrency).
fn ops_by_worker(store: &std::path::Path, concurrency: u64) -> BTreeMap<u64, Vec<(String, Option<String>, Value)>> {
    let mut by: BTreeMap<u64, Vec<(String, Option<String>, Value)>> = BTreeMap::new();
    let text = std::fs::read_to_string(store.join("latest/history.jsonl")).unwrap();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        if e["process"] == "nemesis" && e["f"] == "heal" {
            break; // the final reads that follow are not the workers'
        }
        if e["type"] != "invoke" {
            continue;
        }
        let Some(p) = e["process"].as_u64() else {
            continue;
        };
        by.entry(p % concurrency).or_default().push((
            e["f"].as_str().unwrap_or("").to_string(),
            e["key"].as_str().map(String::from),
            e["value"].clone(),
        ));
    }
    by
}

fn shape(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[test]
fn same_seed_same_verdict_schedule_and_operations_in_both_runtimes() {
    let _serial = docker_support::serial();
    if !docker_support::docker_ready() {
        return;
    }
    let local = tempfile::tempdir().unwrap();
    let docker = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let out_l = run_support::run(local.path(), ARGS);
    let local_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let out_d = docker_support::run_docker(docker.path(), ARGS);
    eprintln!("local run {local_s:.1} s (with the node build), docker run {:.1} s", t.elapsed().as_secs_f64());
    let (rl, rd) = (run_support::results(local.path()), docker_support::results(docker.path()));
    assert!(matches!(out_l.status.code(), Some(0..=2)), "local: {}", run_support::show(&out_l));
    assert!(matches!(out_d.status.code(), Some(0..=2)), "docker: {}", docker_support::show(&out_d));
    assert_eq!(rl["runtime"]["kind"], "local");
    assert_eq!(rd["runtime"]["kind"], "docker");

    // The verdicts, checker by checker.
    assert_eq!(rl["verdict"], rd["verdict"], "local {:#}\ndocker {:#}", rl["checkers"], rd["checkers"]);
    let verdicts = |r: &Value| -> Vec<(String, String)> {
        r["checkers"].as_array().unwrap().iter().map(|c| (c["name"].to_string(), c["verdict"].to_string())).collect()
    };
    assert_eq!(verdicts(&rl), verdicts(&rd));
    assert_eq!(out_l.status.code(), out_d.status.code());

    // The seeded schedule, and what each window did (nodes aside: `leader` kinds depend on the
    // election).
    let (tl, td) = (docker_support::test_json(local.path()), docker_support::test_json(docker.path()));
    assert_eq!(tl["schedule"], td["schedule"]);
    // `all` is the coverage schedule: 1 s windows (2 s for a leader cut off) 0.5 s apart, from
    // 0.5 s, each ending by 12.5 s: what the generator plans for 3 nodes, seed 11.
    let planned = faultline_core::nemesis::coverage::generate_declaring(
        11,
        3,
        true,
        &|f| f != faultline_core::nemesis::Family::Rebalance,
        faultline_core::target::roles::RAFT_FAULTS,
        13.0,
        1.0,
    );
    assert!((6..=8).contains(&planned.faults.len()), "{planned:?}");
    assert_eq!(tl["schedule"]["faults"].as_array().unwrap().len(), planned.faults.len());
    let windows = |r: &Value| -> Vec<(String, String, bool, String)> {
        r["faults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                // The process faults name their runtime's tool: docker kill/pause vs signals.
                let m = match f["mechanism"].as_str().unwrap_or("") {
                    "docker-kill" => "sigkill",
                    "docker-pause" => "sigstop",
                    m => m,
                };
                (f["fault"].to_string(), f["kind"].to_string(), f["applied"] == true, m.to_string())
            })
            .collect()
    };
    for f in rd["faults"].as_array().unwrap() {
        match f["fault"].as_str().unwrap() {
            "kill" => assert_eq!(f["mechanism"], "docker-kill"),
            "pause" => assert_eq!(f["mechanism"], "docker-pause"),
            _ => {}
        }
    }
    assert_eq!(windows(&rl), windows(&rd));
    // A window the harness could not apply (majorities-ring cuts nothing among 3 nodes) fails
    // the same way in both; the others were applied in both.
    let errors =
        |r: &Value| -> Vec<String> { r["faults"].as_array().unwrap().iter().map(|f| f["error"].to_string()).collect() };
    assert_eq!(errors(&rl), errors(&rd));
    assert!(windows(&rd).iter().filter(|w| w.2).count() >= 4, "{:#}", rd["faults"]);

    // Each worker issued the same operations, as far as both got.
    let (ol, od) = (ops_by_worker(local.path(), 5), ops_by_worker(docker.path(), 5));
    assert_eq!(ol.keys().collect::<Vec<_>>(), od.keys().collect::<Vec<_>>());
    let mut compared = 0;
    for (w, l) in &ol {
        let d = &od[w];
        let n = l.len().min(d.len());
        assert!(n >= 5, "worker {w}: {} local vs {} docker ops", l.len(), d.len());
        assert_eq!(l[..n], d[..n], "worker {w} diverged");
        compared += n;
    }
    assert!(compared >= 100, "only {compared} ops compared");

    // Results of the same shape.
    assert_eq!(shape(&rl), shape(&rd));
    assert_eq!(shape(&rl["ops"]), shape(&rd["ops"]));
}
