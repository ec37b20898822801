//! SIGINT (or SIGTERM) in the middle of a run: the harness heals, tears down (no namespace,
//! link, chain or node process is left), and still analyses the partial history.

mod run_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run_support::*;

#[test]
fn sigint_mid_run_leaves_nothing_behind_and_the_partial_history_checks() {
    interrupted_run_cleans_up("INT", 5);
}

#[test]
fn sigterm_mid_run_is_handled_like_sigint() {
    interrupted_run_cleans_up("TERM", 6);
}

fn interrupted_run_cleans_up(signal: &str, seed: u64) {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let store = Store::new();
    let node = node_bin();
    let child = Command::new(faultline())
        .args([
            "run",
            "--nemesis",
            "partition,kill,pause",
            "--time-limit",
            "60",
            "--nemesis-interval",
            "1",
            "--seed",
            &seed.to_string(),
            "--quiet",
        ])
        .args(["--store", store.path().to_str().unwrap(), "--node-bin", node.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the main phase has recorded a fault, then interrupt.
    let history_path = store.path().join("latest/history.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&history_path).unwrap_or_default();
        if text.contains("\"start-") && text.lines().count() > 50 {
            break;
        }
        assert!(Instant::now() < deadline, "no fault started within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(store.path().join("latest/test.json")).unwrap()).unwrap();
    let run_id = test["runtime"]["run_id"].as_str().unwrap().to_string();
    assert!(!leftovers(&run_id).is_empty(), "the run should have created its network");
    let interrupted = Instant::now();
    faultline_core::runtime::state::send_signal(child.id(), signal).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(interrupted.elapsed() < Duration::from_secs(15), "shutdown took {:?}", interrupted.elapsed());
    // Interrupted: the verdict is never plainly valid (unknown unless a violation was seen).
    assert!(matches!(out.status.code(), Some(1) | Some(2)), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"), "{}", show(&out));

    assert!(leftovers(&run_id).is_empty(), "left behind: {:?}", leftovers(&run_id));
    let dir = store.path().join("latest").canonicalize().unwrap();
    assert!(processes_with(dir.to_str().unwrap()).is_empty(), "{:?}", processes_with(dir.to_str().unwrap()));
    let state = std::path::Path::new("/run/faultline").join(format!("{run_id}.json"));
    assert!(!state.exists(), "state file {state:?} left behind");

    let r = results(store.path());
    assert_eq!(r["interrupted"], true);
    let lin = r["checkers"].as_array().unwrap().iter().find(|c| c["name"] == "linearizable").unwrap();
    assert_eq!(lin["verdict"], "valid", "{lin:#}");
    assert!(r["ops"]["completed"]["ok"].as_u64().unwrap() > 0);
    // The partial history parses and ends with the heal.
    let h = history(store.path());
    assert!(h.iter().any(|e| e.f == "heal"));
    let checked = faultline_checker::check_linearizable(
        &h,
        faultline_checker::ModelKind::CasRegister,
        &faultline_checker::CheckOptions::default(),
    );
    assert_eq!(checked.verdict, faultline_checker::Verdict::Valid, "{:?}", checked.reason);
}
