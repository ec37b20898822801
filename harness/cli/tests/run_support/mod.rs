//! Shared helpers of the `faultline run` / `faultline cleanup` end-to-end tests.
//!
//! These tests need root (network namespaces, iptables), as in CI. They build `faultline-node`
//! once into the same target directory as the `faultline` binary under test, so
//! `cargo test --workspace` alone is enough.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

pub fn faultline() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_faultline"))
}

/// Builds faultline-node next to the faultline binary (once per test binary).
pub fn node_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    let exe = faultline();
    let dir = exe.parent().expect("binary has a folder").to_path_buf();
    let node = dir.join("faultline-node");
    BUILD.call_once(|| {
        // `cargo test --workspace` has already built it: a `cargo build -p faultline-node` here
        // would resolve features differently and rebuild the node's dependencies (minutes).
        if node_is_fresh(&node) {
            return;
        }
        // <target>/debug/faultline → <target>
        let target_dir = dir.parent().expect("profile folder has a parent");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "faultline-node"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build -p faultline-node starts");
        assert!(status.success(), "cargo build -p faultline-node failed");
    });
    assert!(node.is_file(), "{} missing after build", node.display());
    node
}

/// True when `node` exists and is newer than every source it is built from (the node's and
/// protocols' sources and manifests, the workspace manifest and lock file).
fn node_is_fresh(node: &Path) -> bool {
    fn newest(dir: &Path, acc: &mut std::time::SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                newest(&p, acc);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                *acc = (*acc).max(m);
            }
        }
    }
    let Ok(built) = std::fs::metadata(node).and_then(|m| m.modified()) else { return false };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut sources = std::time::SystemTime::UNIX_EPOCH;
    for dir in ["targets/node/src", "targets/protocols/src"] {
        newest(&repo.join(dir), &mut sources);
    }
    for file in ["targets/node/Cargo.toml", "targets/protocols/Cargo.toml", "Cargo.toml", "Cargo.lock"] {
        if let Ok(m) = std::fs::metadata(repo.join(file)).and_then(|m| m.modified()) {
            sources = sources.max(m);
        }
    }
    built >= sources
}

pub fn is_root() -> bool {
    nix_euid() == 0
}

fn nix_euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().nth(1).unwrap_or("1").to_string()))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(1)
}

/// Runs `faultline run` with `args` (plus --store, --node-bin, --quiet).
pub fn run(store: &Path, args: &[&str]) -> Output {
    let node = node_bin();
    Command::new(faultline())
        .arg("run")
        .args(args)
        .args(["--store", store.to_str().unwrap(), "--node-bin", node.to_str().unwrap(), "--quiet"])
        .output()
        .expect("faultline starts")
}

pub fn results(store: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(store.join("latest/results.json")).expect("results.json written");
    serde_json::from_str(&text).expect("results.json is JSON")
}

pub fn history(store: &Path) -> Vec<faultline_checker::history::Event> {
    let text = std::fs::read_to_string(store.join("latest/history.jsonl")).expect("history.jsonl written");
    faultline_checker::jsonl::parse(&text).expect("history parses").events
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Names of namespaces, links and host iptables lines that mention `run_id`.
pub fn leftovers(run_id: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(run_id) {
                found.push(format!("netns {n}"));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(run_id) {
                found.push(format!("link {n}"));
            }
        }
    }
    if let Ok(out) = Command::new("iptables").args(["-w", "5", "-S"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains(run_id) {
                found.push(format!("iptables {line}"));
            }
        }
    }
    found
}

/// Live processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
                let cl = String::from_utf8_lossy(&b).replace('\0', " ");
                if cl.contains(needle) {
                    found.push(format!("{name}: {cl}"));
                }
            }
        }
    }
    found
}

/// A temporary run store that is kept (and its path printed) when the test fails, so a failed
/// run's history can be examined.
pub struct Store(Option<tempfile::TempDir>);

impl Store {
    pub fn new() -> Self {
        Store(Some(tempfile::Builder::new().prefix("faultline-test-").tempdir().expect("temp dir")))
    }
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("store present").path()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.0.take() {
                eprintln!("test failed: run store kept at {}", dir.keep().display());
            }
        }
    }
}
