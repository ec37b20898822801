//! End-to-end `faultline run`s of the `lb` target (docs/targets.md, "lb"): a load balancer (n1)
//! in front of a Raft cluster (the other nodes). Each strategy stays linearizable while a
//! backend is killed and restarted; the health checks drop the killed backend and re-admit it
//! (seen in the balancer's stats, results.json `target_stats`); the `lb-distribution` checker
//! catches the `naive-weighted` bug and passes the smooth weighted round robin; the stale cache
//! is shown to break linearizability when the only backend is down, with a control without it.

mod run_support;

use run_support::*;
use serde_json::Value;

/// Runs `faultline run --target lb` with `extra` flags; returns the exit code and results.json.
fn lb_run(extra: &[&str]) -> (Option<i32>, Value, Store) {
    let store = Store::new();
    let mut args = vec!["--target", "lb", "--concurrency", "10", "--rate", "100", "--recovery", "1.5"];
    args.extend_from_slice(extra);
    let out = run(store.path(), &args);
    assert!(matches!(out.status.code(), Some(0..=2)), "harness failure: {}", show(&out));
    let r = results(store.path());
    (out.status.code(), r, store)
}

/// 4 nodes (n1 balances over n2..n4, a Raft cluster), one window killing the Raft leader.
const BACKEND_KILL: &[&str] =
    &["--nodes", "4", "--nemesis", "kill:leader", "--time-limit", "10", "--nemesis-interval", "2.5", "--seed", "1"];

fn checker<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["checkers"].as_array().expect("checkers").iter().find(|c| c["name"] == name)
}

fn backends(r: &Value) -> Vec<Value> {
    r["target_stats"]["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("no lb stats in results.json: {:#}", r["target_stats"]))
        .clone()
}

/// The backends the applied kill faults hit (never the balancer).
fn killed(r: &Value) -> Vec<String> {
    let faults = r["faults"].as_array().expect("faults");
    let mut out: Vec<String> = faults
        .iter()
        .filter(|f| f["fault"] == "kill" && f["applied"] == true)
        .flat_map(|f| f["nodes"].as_array().cloned().unwrap_or_default())
        .map(|n| n.as_str().unwrap_or("").to_string())
        .collect();
    out.dedup();
    assert!(!out.is_empty(), "no kill applied: {:#}", r["faults"]);
    assert!(!out.contains(&"n1".to_string()), "kill:leader hit the balancer: {out:?}");
    out
}

/// Checks a valid run under a backend kill: every backend served, the balancer stats are there.
fn assert_valid_under_kill(code: Option<i32>, r: &Value, strategy: &str) {
    assert_eq!(code, Some(0), "{strategy}: not valid: {:#}", r["checkers"]);
    assert_eq!(r["target_stats"]["strategy"], strategy);
    let bs = backends(r);
    assert_eq!(bs.iter().map(|b| b["id"].as_str().unwrap().to_string()).collect::<Vec<_>>(), ["n2", "n3", "n4"]);
    for b in &bs {
        assert!(b["ok"].as_u64().unwrap() > 0, "{strategy}: backend {} served nothing: {b:#}", b["id"]);
    }
    assert_eq!(r["target_stats"]["stale_served"], 0);
    killed(r);
    assert!(r["availability"]["during_faults"]["ok"].as_u64().unwrap() > 0, "{strategy}: nothing ok during the kill");
}

#[test]
fn round_robin_is_valid_under_a_backend_kill_and_health_checks_drop_and_readmit_it() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let (code, r, _s) = lb_run(BACKEND_KILL);
    assert_valid_under_kill(code, &r, "round-robin");
    let dist = checker(&r, "lb-distribution").expect("lb-distribution runs for round robin");
    assert_eq!(dist["verdict"], "valid", "{dist:#}");
    // The killed backend was dropped by the health checks and re-admitted after its restart.
    let stats = &r["target_stats"];
    for id in killed(&r) {
        let b = backends(&r).into_iter().find(|b| b["id"] == id.as_str()).expect("killed backend in stats");
        assert!(b["drops"].as_u64().unwrap() >= 1, "{id} never dropped: {b:#}");
        assert!(b["readmits"].as_u64().unwrap() >= 1, "{id} never re-admitted: {b:#}");
        assert_eq!(b["healthy"], true, "{id} not healthy at the end: {b:#}");
        let changes: Vec<&str> = stats["health_events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["backend"] == id.as_str())
            .map(|e| e["change"].as_str().unwrap())
            .collect();
        assert_eq!(changes.first(), Some(&"dropped"), "{changes:?}");
        assert_eq!(changes.last(), Some(&"readmitted"), "{changes:?}");
    }
    for b in backends(&r) {
        assert_eq!(b["healthy"], true, "not every backend in rotation at the end: {b:#}");
    }
}

#[test]
fn least_conn_is_valid_under_a_backend_kill() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let mut args = BACKEND_KILL.to_vec();
    args.extend(["--target-opt", "strategy=least-conn"]);
    let (code, r, _s) = lb_run(&args);
    assert_valid_under_kill(code, &r, "least-conn");
    // Least connections promises no share: the distribution is reported, not judged.
    assert!(checker(&r, "lb-distribution").is_none());
}

/// The same weighted run with and without the seed's weighted round robin: the smooth one
/// follows 5:1:1 within the tolerance, the naive one (66:2:2 per 70 picks) is caught, and both
/// stay linearizable (the bug is in the distribution, not in safety).
#[test]
fn weighted_follows_the_weights_and_naive_weighted_is_caught() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let mut args = BACKEND_KILL.to_vec();
    args.extend(["--target-opt", "strategy=weighted", "--target-opt", "weights=5,1,1"]);
    let (code, r, _s) = lb_run(&args);
    assert_valid_under_kill(code, &r, "weighted");
    let dist = checker(&r, "lb-distribution").expect("lb-distribution");
    assert_eq!(dist["verdict"], "valid", "{dist:#}");
    let heavy = &dist["details"]["backends"][0];
    assert_eq!((heavy["backend"].as_str(), heavy["weight"].as_u64()), (Some("n2"), Some(5)));
    assert!((heavy["observed"].as_f64().unwrap() - 5.0 / 7.0).abs() < 0.06, "{dist:#}");

    args.extend(["--bug", "naive-weighted"]);
    let (code, r, _s) = lb_run(&args);
    assert_eq!(code, Some(1), "naive-weighted not caught: {:#}", r["checkers"]);
    let dist = checker(&r, "lb-distribution").expect("lb-distribution");
    assert_eq!(dist["verdict"], "invalid", "{dist:#}");
    assert!(dist["reason"].as_str().unwrap().contains("does not follow the weights"), "{dist:#}");
    assert!(dist["details"]["backends"][0]["observed"].as_f64().unwrap() > 0.85, "{dist:#}");
    assert_eq!(checker(&r, "linearizable").unwrap()["verdict"], "valid");
}

/// One backend (n2) behind the balancer, killed in some windows (clock windows in between keep
/// the run's availability judgeable): with the stale cache, reads during the outage return the
/// last value read although a write was acknowledged since — not linearizable. Without it the
/// same run is valid. Whether a key's last acknowledged operation before an outage was a write
/// is up to timing, so the detection gets up to three seeds. Measured with these flags, one run
/// at a time: seeds 1, 2, 4, 5 all invalid with the cache; under the load of this file's other
/// tests seed 1 once came out valid (its stale reads all repeated the latest value).
#[test]
fn stale_cache_breaks_linearizability_when_no_backend_is_up_and_the_control_is_valid() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let flags = ["--nodes", "2", "--nemesis", "kill:leader,clock", "--time-limit", "15", "--nemesis-interval", "1.5"];
    let mut seen = Vec::new();
    let mut caught = false;
    for seed in ["1", "2", "3"] {
        let mut stale = flags.to_vec();
        stale.extend(["--target-opt", "stale-cache=true", "--seed", seed]);
        let (code, r, s) = lb_run(&stale);
        assert!(
            r["target_stats"]["stale_served"].as_u64().unwrap() > 0,
            "seed {seed}: no stale read served: {:#}",
            r["target_stats"]
        );
        let stale_reads =
            history(s.path()).iter().filter(|e| e.node.as_deref() == Some("stale-cache") && e.f == "read").count();
        assert!(stale_reads > 0, "seed {seed}: no read recorded as answered by the stale cache");
        let lin = checker(&r, "linearizable").unwrap();
        if code == Some(1) {
            assert_eq!(lin["verdict"], "invalid", "{lin:#}");
            assert!(lin["reason"].as_str().unwrap().contains("not linearizable"), "{lin:#}");
            caught = true;
            break;
        }
        seen.push(format!("seed {seed}: {} ({stale_reads} stale reads)", r["verdict"]));
    }
    assert!(caught, "the stale cache was never caught: {seen:?}");

    let mut control = flags.to_vec();
    control.extend(["--seed", "1"]);
    let (code, r, _s) = lb_run(&control);
    assert_eq!(code, Some(0), "control without the stale cache not valid: {:#}", r["checkers"]);
    assert_eq!(r["target_stats"]["stale_served"], 0);
    assert!(r["target_stats"]["no_backend"].as_u64().unwrap() > 0, "the outage was not seen");
}

#[test]
fn bad_lb_options_are_usage_errors() {
    let store = Store::new();
    for (flags, says) in [
        (vec!["--target-opt", "strategy=random"], "expected one of round-robin"),
        (vec!["--target-opt", "strategy=weighted", "--target-opt", "weights=5,1"], "expected 3 comma-separated"),
        (vec!["--bug", "naive-weighted"], "strategy=weighted"),
        (vec!["--target-opt", "colour=blue"], "is not an option of role lb"),
    ] {
        let mut args = vec!["--target", "lb", "--nodes", "4", "--time-limit", "1"];
        args.extend(flags);
        let out = run(store.path(), &args);
        assert_eq!(out.status.code(), Some(255), "{}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{}", show(&out));
    }
}
