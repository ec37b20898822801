//! Bad input to `faultline run` gets a clear error and exit code 255, before anything starts.

mod run_support;

use std::process::Command;

use run_support::*;

fn run_raw(args: &[&str]) -> std::process::Output {
    Command::new(faultline()).arg("run").args(args).output().unwrap()
}

fn assert_error(args: &[&str], needle: &str) {
    let store = tempfile::tempdir().unwrap();
    let mut all = args.to_vec();
    let s = store.path().to_str().unwrap().to_string();
    all.extend(["--store", &s]);
    let out = run_raw(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{args:?}: {}", show(&out));
    assert!(stderr.contains(needle), "{args:?}: stderr lacks {needle:?}:\n{stderr}");
    // Rejected before setup: no run folder was made.
    assert!(!store.path().join("latest").exists(), "{args:?} created a run folder");
}

#[test]
fn unknown_target_workload_runtime_and_nemesis_are_named() {
    assert_error(&["--target", "mongodb"], "unknown target \"mongodb\": expected one of raft");
    assert_error(&["--workload", "bank"], "unknown workload \"bank\"");
    assert_error(&["--runtime", "k8s"], "unknown runtime \"k8s\"");
    assert_error(&["--nemesis", "partition,flood"], "unknown nemesis \"flood\"");
    assert_error(&["--nemesis", "kill:everyone"], "unknown kill kind \"everyone\"");
    assert_error(&["--bug", "typo"], "unknown --bug \"typo\"");
    assert_error(&["--local-net", "wifi"], "unknown network mechanism \"wifi\"");
}

#[test]
fn out_of_range_numbers_are_refused() {
    assert_error(&["--nodes", "0"], "--nodes must be between 1 and 20");
    assert_error(&["--concurrency", "0"], "--concurrency must be between 1 and 1000");
    assert_error(&["--rate=-5"], "--rate must be");
    assert_error(&["--time-limit", "0"], "--time-limit must be");
    assert_error(&["--nemesis-interval", "0"], "--nemesis-interval must be");
}

#[test]
fn unparsable_flags_and_missing_node_binary_exit_255() {
    let out = run_raw(&["--nodes", "five"]);
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'five'"));
    let out = run_raw(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert_error(&["--node-bin", "/nonexistent/faultline-node"], "node binary /nonexistent/faultline-node not found");
}

#[test]
fn role_options_are_checked_against_the_role() {
    assert_error(
        &["--target-opt", "gossip-ms=50"],
        "--target-opt \"gossip-ms\" is not an option of role raft: expected read-mode,",
    );
    assert_error(&["--target-opt", "read-mode"], "--target-opt \"read-mode\": expected KEY=VALUE");
    assert_error(&["--target-opt", "read-mode="], "--target-opt read-mode: empty value");
    assert_error(
        &["--target", "crdt", "--target-opt", "read-mode=lease"],
        "is not an option of role crdt: expected gossip-ms, request-timeout-ms",
    );
}

#[test]
fn a_role_option_reaches_every_node() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let out = Command::new(faultline())
        .args(["run", "--nodes", "3", "--nemesis", "none", "--time-limit", "2", "--recovery", "0", "--quiet"])
        .args(["--target-opt", "read-mode=lease", "--store", store.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let run = store.path().join("latest");
    for n in ["n1", "n2", "n3"] {
        let log = std::fs::read_to_string(run.join(format!("nodes/{n}.log"))).unwrap();
        // The node's log may be coloured: drop ANSI escapes (ESC [ ... m) before matching.
        let mut plain = String::with_capacity(log.len());
        let mut in_escape = false;
        for c in log.chars() {
            match (in_escape, c) {
                (false, '\u{1b}') => in_escape = true,
                (true, 'm') => in_escape = false,
                (true, _) => {}
                (false, c) => plain.push(c),
            }
        }
        let log = plain;
        assert!(log.contains("read_mode=Lease"), "{n}'s log does not show the lease read mode:\n{log}");
    }
}

#[test]
fn a_node_that_exits_at_startup_is_a_harness_failure() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let out = Command::new(faultline())
        .args([
            "run",
            "--node-bin",
            "/bin/false",
            "--time-limit",
            "3",
            "--quiet",
            "--store",
            store.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exited during setup (see nodes/n"), "{}", show(&out));
    let r = results(store.path());
    assert_eq!(r["setup_failed"], true);
    assert!(leftovers(r["runtime"]["run_id"].as_str().unwrap()).is_empty());
}
