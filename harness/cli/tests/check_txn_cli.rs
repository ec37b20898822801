//! `faultline check --model list-append|rw-register`: the transactional checker end to end:
//! exit codes (0 satisfied, 1 ruled out, 2 budget, 255 bad input), the consistency-model flag
//! and its default (strict-serializable), text and JSON reports, JSONL and Jepsen/Elle EDN.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline")).args(args).output().expect("faultline runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("temp file written");
    p
}

fn line(index: u64, kind: &str, process: u64, value: &str) -> String {
    format!("{{\"index\":{index},\"time\":{index},\"type\":\"{kind}\",\"process\":{process},\"f\":\"txn\",\"value\":{value}}}\n")
}

/// Write skew: both read x and y empty, each appends to one; then a read of both.
fn write_skew() -> String {
    line(0, "invoke", 0, r#"[["r","x",null],["r","y",null],["append","x",1]]"#)
        + &line(1, "invoke", 1, r#"[["r","x",null],["r","y",null],["append","y",1]]"#)
        + &line(2, "ok", 0, r#"[["r","x",[]],["r","y",[]],["append","x",1]]"#)
        + &line(3, "ok", 1, r#"[["r","x",null],["r","y",null],["append","y",1]]"#)
        + &line(4, "invoke", 2, r#"[["r","x",null],["r","y",null]]"#)
        + &line(5, "ok", 2, r#"[["r","x",[1]],["r","y",[1]]]"#)
}

#[test]
fn write_skew_rules_out_serializable_but_not_snapshot_isolation() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "h.jsonl", &write_skew());
    let f = f.to_str().unwrap();
    let o = faultline(&["check", "--model", "list-append", f]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("invalid (list-append model, judged as strict-serializable)"), "{out}");
    assert!(out.contains("ruled out: repeatable-read"), "{out}");
    assert!(out.contains("T2 read y = [] before T3's append of 1 to y, which T2 did not see"), "{out}");
    let o = faultline(&["check", "--model", "list-append", "--consistency-model", "snapshot-isolation", f]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    let o = faultline(&["check", "--model", "list-append", "--json", "--consistency-model", "serializable", f]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    assert_eq!(v["verdict"], "invalid");
    assert_eq!(v["not"], serde_json::json!(["repeatable-read"]));
    assert_eq!(v["anomaly_counts"]["G2-item"], 1);
    let cycle = v["anomalies"][0]["cycle"].as_array().expect("a cycle");
    assert_eq!(cycle.len(), 2);
    assert!(cycle.iter().all(|e| e["kind"] == "rw"), "{cycle:?}");
}

/// Elle's README example (jepsen-io/elle, "Demo"): Elle reports G1c. Completed with
/// invocations and processes, as Jepsen records it; with comments, and a fourth transaction
/// never completed (indeterminate).
const ELLE_DEMO: &str = "; Elle's README demo history\n\
[{:type :invoke, :process 0, :f :txn, :value [[:append :x 1] [:r :y nil]]}\n\
 {:type :invoke, :process 1, :f :txn, :value [[:append :x 2] [:append :y 1]]}\n\
 {:type :ok, :process 1, :f :txn, :value [[:append :x 2] [:append :y 1]]}\n\
 {:type :ok, :process 0, :f :txn, :value [[:append :x 1] [:r :y [1]]]}\n\
 {:type :invoke, :process 2, :f :txn, :value [[:r :x nil]]}\n\
 {:type :ok, :process 2, :f :txn, :value [[:r :x [1 2]]]} ; T3 sees x = [1 2]\n\
 {:type :invoke, :process 3, :f :txn, :value [[:append :z 7]]}]\n";

#[test]
fn elle_demo_history_is_g1c() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "h.edn", ELLE_DEMO);
    let args = ["check", "--format", "jepsen-edn", "--model", "list-append", "--json", f.to_str().unwrap()];
    let o = faultline(&args);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    assert_eq!(v["anomaly_counts"], serde_json::json!({"G1c": 1}));
    assert_eq!(v["not"], serde_json::json!(["read-committed"]));
    assert_eq!(v["txns_info"], 1);
    let kinds: Vec<&str> =
        v["anomalies"][0]["cycle"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"wr") && kinds.contains(&"ww"), "{kinds:?}");
    let o = faultline(&[
        "check",
        "--format",
        "jepsen-edn",
        "--model",
        "list-append",
        "--consistency-model",
        "read-uncommitted",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
}

#[test]
fn rw_register_history() {
    let d = tempfile::tempdir().unwrap();
    // Read skew: T1 writes x and y; T2 sees x's new value and y's initial nil.
    let h = line(0, "invoke", 0, r#"[["w","x",1],["w","y",1]]"#)
        + &line(1, "invoke", 1, r#"[["r","x",null],["r","y",null]]"#)
        + &line(2, "ok", 0, r#"[["w","x",1],["w","y",1]]"#)
        + &line(3, "ok", 1, r#"[["r","x",1],["r","y",null]]"#);
    let f = write(d.path(), "h.jsonl", &h);
    let o =
        faultline(&["check", "--model", "rw-register", "--consistency-model", "read-committed", f.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("G-single: 1"), "{}", text(&o.stdout));
    let o = faultline(&["check", "--model", "rw-register", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", text(&o.stdout));
}

#[test]
fn exhausted_budget_exits_2() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "h.jsonl", &write_skew());
    let o = faultline(&[
        "check",
        "--model",
        "list-append",
        "--time-limit",
        "0",
        "--consistency-model",
        "snapshot-isolation",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("time limit"), "{}", text(&o.stdout));
}

#[test]
fn bad_input_exits_255_with_line_and_quote() {
    let d = tempfile::tempdir().unwrap();
    let h = write_skew() + &line(6, "invoke", 3, r#"[["append","x","seven"]]"#);
    let f = write(d.path(), "h.jsonl", &h);
    let o = faultline(&["check", "--model", "list-append", f.to_str().unwrap()]);
    assert_eq!(code(&o), 255);
    let err = text(&o.stderr);
    assert!(err.contains("h.jsonl:7: expected a written value: an integer, found `\\\"seven\\\"`"), "{err}");
    let f = write(d.path(), "h.edn", "{:type :invoke, :process 0, :f :txn, :value [[:append :x 1]]}\n{:type :ok, :process 0, :f :txn, :value [[:append :x 2]]}\n");
    let o = faultline(&["check", "--format", "jepsen-edn", "--model", "list-append", f.to_str().unwrap()]);
    assert_eq!(code(&o), 255);
    assert!(text(&o.stderr).contains("h.edn:2: expected the invoked micro-ops"), "{}", text(&o.stderr));
    let o = faultline(&["check", "--model", "register", "--consistency-model", "serializable", f.to_str().unwrap()]);
    assert_eq!(code(&o), 255);
    assert!(text(&o.stderr).contains("transaction histories only"), "{}", text(&o.stderr));
    let o = faultline(&["check", "--model", "list-append", "--consistency-model", "acid", f.to_str().unwrap()]);
    assert_eq!(code(&o), 255);
    assert!(text(&o.stderr).contains("unknown consistency model"), "{}", text(&o.stderr));
}

/// A run folder of a transactional workload is re-judged as the run judged it: its test.json
/// names the workload, so `faultline check DIR` needs no `--model`. A folder without one is
/// read as a register history (and its `txn` operations refused with the line).
#[test]
fn a_transactional_run_folder_is_checked_without_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "history.jsonl", &write_skew());
    let plain = faultline(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code(&plain), 255, "{}", text(&plain.stderr));
    assert!(text(&plain.stderr).contains("history.jsonl:1:"), "{}", text(&plain.stderr));
    write(dir.path(), "test.json", r#"{"workload": "list-append", "seed": 1}"#);
    let o = faultline(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("G2-item"), "{}", text(&o.stdout));
    let si = faultline(&["check", "--consistency-model", "snapshot-isolation", dir.path().to_str().unwrap()]);
    assert_eq!(code(&si), 0, "{}{}", text(&si.stdout), text(&si.stderr));
}
