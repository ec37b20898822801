//! End to end: user-described targets (`--target path/to/target.toml`, docs/targets-external.md).
//! The worked examples in examples/targets/ run as documented: etcd described by a file, and the
//! project's own faultline-node described by a file. A fault family the file does not list is
//! reported not applied; a bad file is refused with its path and line.
//!
//! Needs root (network namespaces) and etcd (scripts/setup-external.sh).

mod run_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use run_support::*;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/targets").join(name)
}

fn require(program: &str) {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false);
    assert!(found, "{program} is not installed: run scripts/setup-external.sh before these tests");
}

#[test]
fn the_etcd_example_file_runs_valid_and_refuses_faults_it_does_not_list() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    require("etcd");
    let store = Store::new();
    let file = example("etcd.toml");
    let out = run(
        store.path(),
        &[
            "--target",
            file.to_str().unwrap(),
            "--nodes",
            "3",
            "--nemesis",
            "partition:halves+isolate-one,clock",
            "--concurrency",
            "5",
            "--rate",
            "60",
            "--time-limit",
            "23",
            "--nemesis-interval",
            "5",
            "--recovery",
            "2",
            "--op-timeout-ms",
            "1000",
            "--port",
            "2379",
            "--seed",
            "7",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = results(store.path());
    assert_eq!(r["verdict"], "valid", "{r:#}");
    let faults = r["faults"].as_array().unwrap();
    for f in faults {
        if f["fault"] == "clock" {
            assert_eq!(f["applied"], false, "{f:#}");
            assert!(f["error"].as_str().unwrap().contains("not among the faults"), "{f:#}");
        }
    }
    assert!(faults.iter().any(|f| f["fault"] == "partition" && f["applied"] == true), "{faults:#?}");
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(store.path().join("latest/test.json")).unwrap()).unwrap();
    assert_eq!(test["target"], "etcd-file");
}

#[test]
fn the_faultline_node_example_file_runs_valid() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let node = node_bin();
    let path = format!("{}:{}", node.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let store = Store::new();
    let file = example("faultline-node-raft.toml");
    let out = Command::new(faultline())
        .args(["run", "--target", file.to_str().unwrap(), "--nodes", "3", "--nemesis", "partition,clock"])
        .args([
            "--concurrency",
            "5",
            "--rate",
            "60",
            "--time-limit",
            "8",
            "--nemesis-interval",
            "1.5",
            "--recovery",
            "1",
        ])
        .args(["--seed", "8", "--quiet", "--store", store.path().to_str().unwrap()])
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = results(store.path());
    assert_eq!(r["verdict"], "valid", "{r:#}");
    // The reference protocol has a settable clock: the file lists clock, so it is applied.
    let faults = r["faults"].as_array().unwrap();
    assert!(faults.iter().any(|f| f["fault"] == "clock" && f["applied"] == true), "{faults:#?}");
}

#[test]
fn a_bad_target_file_is_refused_with_its_line() {
    if !is_root() {
        eprintln!("skipped: needs root (the runtime is set up before the target is read)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(example("etcd.toml"))
        .unwrap()
        .replace("\"--name\", \"{id}\"", "\"--name\", \"{node}\"");
    std::fs::write(&bad, text).unwrap();
    let store = Store::new();
    let out = run(store.path(), &["--target", bad.to_str().unwrap(), "--nodes", "3", "--time-limit", "2"]);
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:") && stderr.contains("{node}") && stderr.contains("expected one of"),
        "{stderr}"
    );
}
