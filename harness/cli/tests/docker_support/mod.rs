//! Shared helpers of the Docker runtime tests (docker_*.rs).
//!
//! Every test first asks [`docker_ready`]: without a Docker engine (`docker info` fails) or
//! docker-compose, it prints "docker engine not available: skipped" and passes. The image is
//! made current once per test binary with the harness's own staleness check, so a run's timing
//! does not include a build, and an up-to-date image is reused.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use faultline_core::runtime::docker;

pub fn faultline() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_faultline"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().nth(1).unwrap_or("1").to_string()))
        })
        .is_some_and(|u| u == "0")
}

/// One Docker cluster at a time per test binary: parallel clusters on two cores would make
/// the timings meaningless and the runs flaky.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when the Docker tests can run here; otherwise says why (the skip message) and the test
/// returns early, passing. Makes the image current (once per binary).
pub fn docker_ready() -> bool {
    let tools = ["docker", "docker-compose"]
        .iter()
        .all(|t| Command::new(t).arg("--version").output().is_ok_and(|o| o.status.success()));
    if !tools || !docker::engine_available() {
        println!("docker engine not available: skipped");
        eprintln!("docker engine not available: skipped");
        return false;
    }
    if !is_root() {
        println!("docker tests need root (nsenter into container namespaces): skipped");
        eprintln!("docker tests need root (nsenter into container namespaces): skipped");
        return false;
    }
    static IMAGE: Once = Once::new();
    IMAGE.call_once(|| {
        let t = Instant::now();
        let report = docker::ensure_image(None, Duration::from_secs(900), None).expect("the node image builds");
        eprintln!("image: {report:?} ({:.1} s)", t.elapsed().as_secs_f64());
    });
    true
}

/// `faultline run --runtime docker ARGS --store STORE --quiet`.
pub fn run_docker(store: &Path, args: &[&str]) -> Output {
    Command::new(faultline())
        .args(["run", "--runtime", "docker"])
        .args(args)
        .args(["--store", store.to_str().unwrap(), "--quiet"])
        .output()
        .expect("faultline starts")
}

/// The same, as a child process (for signal tests).
pub fn spawn_docker(store: &Path, args: &[&str]) -> Child {
    Command::new(faultline())
        .args(["run", "--runtime", "docker"])
        .args(args)
        .args(["--store", store.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("faultline starts")
}

pub fn results(store: &Path) -> serde_json::Value {
    json(&store.join("latest/results.json"))
}

pub fn test_json(store: &Path) -> serde_json::Value {
    json(&store.join("latest/test.json"))
}

fn json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn lines(program: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect()
}

/// Everything of run `run_id` that is still there: containers and networks carrying its label,
/// host iptables lines (filter and nat) naming its subnet, its compose folder.
pub fn docker_leftovers(run_id: &str, subnet_prefix: &str) -> Vec<String> {
    let filter = format!("label=faultline.run={run_id}");
    let mut found: Vec<String> = Vec::new();
    found.extend(
        lines("docker", &["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])
            .into_iter()
            .map(|l| format!("container {l}")),
    );
    found.extend(
        lines("docker", &["network", "ls", "--filter", &filter, "--format", "{{.Name}}"])
            .into_iter()
            .map(|l| format!("network {l}")),
    );
    for table in ["filter", "nat"] {
        for l in lines("iptables", &["-w", "5", "-t", table, "-S"]) {
            if l.contains(subnet_prefix) {
                found.push(format!("iptables -t {table}: {l}"));
            }
        }
    }
    let dir = faultline_core::runtime::state::state_dir().join("docker").join(run_id);
    if dir.exists() {
        found.push(format!("compose folder {}", dir.display()));
    }
    found
}

/// `10.79.X.` of a run, from test.json's node addresses.
pub fn subnet_prefix(test: &serde_json::Value) -> String {
    let ip = test["runtime"]["nodes"][0]["ip"].as_str().expect("test.json names the nodes' addresses");
    let mut parts: Vec<&str> = ip.split('.').collect();
    parts.pop();
    format!("{}.", parts.join("."))
}

/// Names of running containers whose harness is `pid`, waiting up to `timeout` for `n` of them.
pub fn wait_containers_of(pid: u32, n: usize, timeout: Duration) -> Vec<String> {
    let filter = format!("label=faultline.harness-pid={pid}");
    let started = Instant::now();
    loop {
        let names = lines("docker", &["ps", "--filter", &filter, "--format", "{{.Names}}"]);
        if names.len() >= n || started.elapsed() > timeout {
            return names;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (bounded) for a child to exit.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
