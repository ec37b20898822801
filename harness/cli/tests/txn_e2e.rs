//! End to end, transactions on the `raft` target: list-append under the default nemesis and
//! rw-register under partitions and kills are valid (strict serializable, no anomaly, plenty of
//! committed transactions, every key read at the end), and a role without transactions is
//! refused up front (exit 255, one line, no run folder).

mod run_support;

use run_support::*;
use std::process::Command;

fn txn_checker<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["checkers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} checker: {r:#}"))
}

/// Runs `workload` on raft for 20 s with `nemesis` and asserts a valid, anomaly-free history
/// with at least `ok_min` committed transactions and every key finally read.
fn valid_run(workload: &str, nemesis: &str, seed: &str, ok_min: u64) {
    let store = Store::new();
    let args = [
        "--target",
        "raft",
        "--workload",
        workload,
        "--nemesis",
        nemesis,
        "--time-limit",
        "20",
        "--recovery",
        "3",
        "--seed",
        seed,
    ];
    let out = run(store.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = results(store.path());
    assert_eq!(r["verdict"], "valid", "{r:#}");
    let c = txn_checker(&r, workload);
    assert_eq!(c["verdict"], "valid", "{c:#}");
    let d = &c["details"];
    assert_eq!(d["consistency_model"], "strict-serializable", "{d:#}");
    assert_eq!(d["anomaly_counts"], serde_json::json!({}), "{d:#}");
    assert_eq!(d["not"], serde_json::json!([]), "{d:#}");
    let ok = d["txns_ok"].as_u64().unwrap();
    assert!(ok >= ok_min, "only {ok} committed transactions: {d:#}");
    // The dependency graph is not trivial: transactions did observe each other.
    assert!(d["edges"]["wr"].as_u64().unwrap() > 100, "{d:#}");
    let fr = &r["final_reads"];
    assert!(fr["keys"].as_u64().unwrap() >= 10 && fr["missed"] == serde_json::json!([]), "{fr:#}");
    assert!(r["faults"].as_array().is_some_and(|f| !f.is_empty()), "no fault applied: {r:#}");
    // On the transactional map: nothing ruled out, strict serializability on top.
    assert_eq!(r["isolation"]["strongest"], serde_json::json!(["strict-serializable"]), "{:#}", r["isolation"]);
    assert_eq!(r["isolation"]["ruled_out"], serde_json::json!([]), "{:#}", r["isolation"]);
}

#[test]
fn list_append_on_raft_is_valid_under_the_default_nemesis() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    valid_run("list-append", "all", "1", 500);
}

#[test]
fn rw_register_on_raft_is_valid_under_partitions_and_kills() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    valid_run("rw-register", "partition,kill", "2", 500);
}

#[test]
fn a_role_without_transactions_is_refused_up_front() {
    let store = Store::new();
    let out = Command::new(faultline())
        .args(["run", "--target", "paxos", "--workload", "list-append", "--store"])
        .arg(store.path())
        .output()
        .expect("faultline runs");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--target paxos serves no list-append API"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!store.path().join("paxos-list-append").exists(), "a run folder was created");
}

/// The report.html of the only run in `store`.
fn report_html(store: &std::path::Path) -> String {
    std::fs::read_to_string(store.join("latest/report.html")).expect("report.html written")
}

/// Runs list-append with `bug` and no fault, seeds 1 to 3, until the checker finds the history
/// invalid; asserts it names `anomaly`, rules out `ruled_out` and keeps `kept`.
fn caught(bug: &str, anomaly: &str, ruled_out: &str, kept: &[&str]) {
    let mut seen = Vec::new();
    for seed in ["1", "2", "3"] {
        let store = Store::new();
        let args = [
            "--target",
            "raft",
            "--workload",
            "list-append",
            "--bug",
            bug,
            "--nemesis",
            "none",
            "--time-limit",
            "15",
            "--recovery",
            "2",
            "--seed",
            seed,
        ];
        let out = run(store.path(), &args);
        let r = results(store.path());
        let c = txn_checker(&r, "list-append");
        if c["verdict"] == "invalid" {
            assert_eq!(out.status.code(), Some(1), "{}", show(&out));
            let d = &c["details"];
            assert!(d["anomaly_counts"][anomaly].as_u64().unwrap_or(0) > 0, "{d:#}");
            assert!(c["reason"].as_str().unwrap().contains(anomaly), "{c:#}");
            let out_models: Vec<&serde_json::Value> =
                d["not"].as_array().unwrap().iter().chain(d["also_not"].as_array().unwrap()).collect();
            assert!(out_models.contains(&&serde_json::json!(ruled_out)), "{d:#}");
            for k in kept {
                assert!(!out_models.contains(&&serde_json::json!(k)), "{k} ruled out: {d:#}");
            }
            // results.json places the run on the map, and report.html draws it.
            let iso = &r["isolation"];
            assert!(iso["ruled_out"].as_array().unwrap().contains(&serde_json::json!(ruled_out)), "{iso:#}");
            assert!(iso["anomalies"][anomaly].as_u64().unwrap_or(0) > 0, "{iso:#}");
            let page = report_html(store.path());
            assert!(page.contains(r#"<h2 id="isolation">"#), "no isolation section");
            assert!(page.contains(&format!(r#"<g class="model ruled-out"><title>{ruled_out}: ruled-out</title>"#)));
            assert!(page.contains(&format!("<h3>{anomaly}")), "anomaly {anomaly} not drawn");
            return;
        }
        seen.push(format!("seed {seed}: {}", c["reason"]));
    }
    panic!("{bug} not caught in 3 seeds: {seen:?}");
}

/// `--bug txn-read-committed` (reads at proposal time, writes at apply): read skew.
#[test]
fn the_read_committed_bug_is_caught_as_g_single() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    caught("txn-read-committed", "G-single", "serializable", &[]);
}

/// `--bug txn-snapshot` (snapshot reads, first committer wins): write skew, which rules out
/// serializability but not snapshot isolation.
#[test]
fn the_snapshot_bug_is_caught_as_g2_item_with_snapshot_isolation_kept() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    caught("txn-snapshot", "G2-item", "serializable", &["snapshot-isolation", "read-committed"]);
}

/// `--bug txn-dirty` (reads see unanswered transactions' writes, some of which then abort):
/// aborted reads, which rule out read committed.
#[test]
fn the_dirty_bug_is_caught_as_g1a() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    caught("txn-dirty", "G1a", "read-committed", &[]);
}
