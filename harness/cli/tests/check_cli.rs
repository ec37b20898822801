//! `faultline check` end to end: exit codes (0 valid, 1 invalid, 2 unknown, 255 error), run
//! folders, text and JSON output, warnings, and `FILE:LINE: expected ..., found ...` errors for
//! malformed input in every format.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline")).args(args).output().expect("faultline runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("temp file written");
    p
}

fn ev(index: u64, kind: &str, process: u64, f: &str, value: &str) -> String {
    format!(
        "{{\"index\":{index},\"time\":{},\"type\":\"{kind}\",\"process\":{process},\"f\":\"{f}\",\"key\":\"r\",\"value\":{value}}}\n",
        index * 1000
    )
}

/// write 1, then a read that sees 1 (valid) or 2 (invalid), with a nemesis event between.
fn history(read_value: u64) -> String {
    let mut s = String::new();
    s += &ev(0, "invoke", 0, "write", "1");
    s += &ev(1, "ok", 0, "write", "1");
    s += "{\"index\":2,\"time\":2000,\"type\":\"info\",\"process\":\"nemesis\",\"f\":\"start-partition\",\"value\":{\"kind\":\"halves\"}}\n";
    s += &ev(3, "invoke", 1, "read", "null");
    s += &ev(4, "ok", 1, "read", &read_value.to_string());
    s
}

/// 16 concurrent writes of distinct values and 16 concurrent reads, one of each, then a read
/// of a value nobody wrote: invalid, but only after ruling out some 3^16 configurations, far
/// more than a zero time budget allows.
fn hard_history() -> String {
    let mut s = String::new();
    let n = 16;
    let mut i = 0;
    for p in 0..n {
        s += &ev(i, "invoke", p, "write", &p.to_string());
        s += &ev(i + 1, "invoke", n + p, "read", "null");
        i += 2;
    }
    for p in 0..n {
        s += &ev(i, "ok", p, "write", &p.to_string());
        s += &ev(i + 1, "ok", n + p, "read", &p.to_string());
        i += 2;
    }
    s += &ev(i, "invoke", 100, "read", "null");
    s += &ev(i + 1, "ok", 100, "read", "999");
    s
}

#[test]
fn valid_history_exits_0_with_text_verdict() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "h.jsonl", &history(1));
    let o = faultline(&["check", f.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("valid (cas-register model"), "{}", stdout(&o));
    assert!(stdout(&o).contains("1 nemesis events"), "{}", stdout(&o));
}

#[test]
fn invalid_history_exits_1_and_explains() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "h.jsonl", &history(2));
    let o = faultline(&["check", "--model", "register", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("invalid (register model"), "{out}");
    assert!(out.contains("cannot linearize: #1 p1 read → 2"), "{out}");
    assert!(out.contains("longest partial linearization 1 (1 of 2 operations)"), "{out}");
}

#[test]
fn json_output_is_the_report() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "h.jsonl", &history(2));
    let o = faultline(&["check", "--json", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    assert_eq!(v["verdict"], "invalid");
    assert_eq!(v["model"], "cas-register");
    assert_eq!(v["keys"][0]["key"], "r");
    assert_eq!(v["explanation"]["ops"][1]["f"], "read");
    assert_eq!(v["explanation"]["failed_op"], 1);
    assert_eq!(v["explanation"]["longest"][0]["steps"][0]["state_after"], "1");
}

#[test]
fn run_folder_means_its_history_jsonl() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "history.jsonl", &history(1));
    let o = faultline(&["check", d.path().to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let empty = tempfile::tempdir().unwrap();
    let o = faultline(&["check", empty.path().to_str().unwrap()]);
    assert_eq!(code(&o), 255);
    assert!(stderr(&o).contains("must contain history.jsonl"), "{}", stderr(&o));
}

#[test]
fn exhausted_budget_exits_2_unknown() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "h.jsonl", &hard_history());
    let o = faultline(&["check", "--time-limit", "0", f.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("time limit reached"), "{}", stdout(&o));
    let o = faultline(&["check", "--memory-limit-mib", "0", f.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("memory limit"), "{}", stdout(&o));
}

#[test]
fn truncated_last_line_is_a_warning_not_an_error() {
    let d = tempfile::tempdir().unwrap();
    let text = format!("{}{}", history(1), "{\"index\":5,\"time\":5000,\"type\":\"inv");
    let f = write(d.path(), "h.jsonl", &text);
    let o = faultline(&["check", f.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("h.jsonl:6: truncated last line ignored"), "{}", stderr(&o));
}

fn assert_error(o: &Output, file: &Path, line: usize, expected: &str) {
    assert_eq!(code(o), 255, "stdout {} stderr {}", stdout(o), stderr(o));
    let want = format!("{}:{line}: expected {expected}", file.display());
    assert!(stderr(o).starts_with(&want), "want {want:?}\ngot {:?}", stderr(o));
    assert!(stderr(o).contains(", found "), "{}", stderr(o));
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

#[test]
fn malformed_jsonl_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "{}{{\"index\":9,\"time\":1,\"type\":\"ok\",\"process\":2}}\n{}",
        history(1),
        ev(10, "invoke", 3, "read", "null")
    );
    let f = write(d.path(), "h.jsonl", &text);
    assert_error(&faultline(&["check", f.to_str().unwrap()]), &f, 6, "a history event");
}

#[test]
fn semantic_errors_name_the_line_of_the_event() {
    let d = tempfile::tempdir().unwrap();
    // A completion without an invocation, on line 2.
    let text = format!("{}{}", ev(0, "invoke", 0, "write", "1"), ev(1, "ok", 7, "write", "1"));
    let f = write(d.path(), "h.jsonl", &text);
    assert_error(&faultline(&["check", f.to_str().unwrap()]), &f, 2, "an invoke by process 7");
    // A cas under the plain register model, on line 1.
    let text = format!("{}{}", ev(0, "invoke", 0, "cas", "[1,2]"), ev(1, "ok", 0, "cas", "[1,2]"));
    let f = write(d.path(), "h2.jsonl", &text);
    assert_error(&faultline(&["check", "--model", "register", f.to_str().unwrap()]), &f, 1, "f: read or write");
    // A read value that is not an integer, on line 2.
    let text = format!("{}{}", ev(0, "invoke", 0, "read", "null"), ev(1, "ok", 0, "read", "\"x\""));
    let f = write(d.path(), "h3.jsonl", &text);
    assert_error(&faultline(&["check", f.to_str().unwrap()]), &f, 2, "a read value");
}

#[test]
fn malformed_porcupine_etcd_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let f =
        write(d.path(), "e.log", "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\t[1\n");
    assert_error(&faultline(&["check", "--format", "porcupine-etcd", f.to_str().unwrap()]), &f, 2, "a value");
}

#[test]
fn malformed_porcupine_kv_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "kv.txt",
        "{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n{:process 0, :type :ok, :f :get, :key \"1\" :value}\n",
    );
    assert_error(
        &faultline(&["check", "--format", "porcupine-kv", f.to_str().unwrap()]),
        &f,
        2,
        "a map with an even number",
    );
}

#[test]
fn malformed_jepsen_edn_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "h.edn", "{:type :invoke, :f :cas, :value [1 2], :process 3, :time 123}\n{:type :ok, :f :cas, :value [1 2], :process \"three\"}\n");
    assert_error(&faultline(&["check", "--format", "jepsen-edn", f.to_str().unwrap()]), &f, 2, ":process");
}

#[test]
fn imported_formats_check() {
    let d = tempfile::tempdir().unwrap();
    let edn = "{:type :invoke, :f :write, :value 1, :process 0, :time 10}\n\
               {:type :ok, :f :write, :value 1, :process 0, :time 20}\n\
               {:type :info, :f :start, :value nil, :process :nemesis, :time 25}\n\
               {:type :invoke, :f :cas, :value [1 2], :process 1, :time 30}\n\
               {:type :ok, :f :cas, :value [1 2], :process 1, :time 40}\n\
               {:type :invoke, :f :read, :value nil, :process 0, :time 50}\n\
               {:type :ok, :f :read, :value 1, :process 0, :time 60}\n";
    let f = write(d.path(), "h.edn", edn);
    let o = faultline(&["check", "--format", "jepsen-edn", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "read 1 after cas 1→2 completed: {}", stdout(&o));
    let f = write(d.path(), "h2.edn", &edn.replace(":value 1, :process 0, :time 60", ":value 2, :process 0, :time 60"));
    let o = faultline(&["check", "--format", "jepsen-edn", f.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn bad_usage_exits_255() {
    let o = faultline(&["check", "--model", "queue", "x"]);
    assert_eq!(code(&o), 255);
    assert!(stderr(&o).contains("expected one of register, cas-register, kv, set"), "{}", stderr(&o));
    let o = faultline(&["check", "/nonexistent/history.jsonl"]);
    assert_eq!(code(&o), 255);
}

/// `--models` adds the consistency ladder; the exit code still follows linearizability.
#[test]
fn models_flag_prints_the_consistency_ladder_and_keeps_the_exit_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    // p0 writes 1 then 2; p1 then reads 1: a stale read, sequential but not linearizable.
    let mut stale = String::new();
    stale += &ev(0, "invoke", 0, "write", "1");
    stale += &ev(1, "ok", 0, "write", "1");
    stale += &ev(2, "invoke", 0, "write", "2");
    stale += &ev(3, "ok", 0, "write", "2");
    stale += &ev(4, "invoke", 1, "read", "null");
    stale += &ev(5, "ok", 1, "read", "1");
    let f = write(dir.path(), "stale.jsonl", &stale);
    let o = faultline(&["check", "--models", f.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("consistency (strongest: sequential)"), "{out}");
    assert!(out.contains("sequential (per key)") && out.contains("not-checked"), "{out}");
    let o = faultline(&["check", "--models", "--json", f.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(j["linearizability"]["verdict"], "invalid");
    assert_eq!(j["consistency"]["strongest"], "sequential");
    // No heal event: convergence cannot be judged.
    assert_eq!(j["consistency"]["models"][3]["verdict"], "unknown", "{j:#}");
    // A valid history stays exit 0; a non-register model is a usage error.
    let f = write(dir.path(), "ok.jsonl", &history(1));
    let o = faultline(&["check", "--models", f.to_str().unwrap()]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("consistency (strongest: linearizable)"));
    let o = faultline(&["check", "--models", "--model", "kv", f.to_str().unwrap()]);
    assert_eq!(code(&o), 255, "{}", stderr(&o));
    assert!(stderr(&o).contains("--models places register histories only"), "{}", stderr(&o));
}
