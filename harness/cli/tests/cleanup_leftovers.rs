//! `faultline cleanup` removes what a killed run left behind — recorded in its state file or
//! carrying our name prefix — and touches nothing else.

mod run_support;

use std::process::Command;

use run_support::*;

fn sh(cmd: &str) {
    let ok = Command::new("sh").args(["-c", cmd]).status().unwrap().success();
    assert!(ok, "{cmd}");
}

#[test]
fn cleanup_removes_a_dead_runs_objects_and_leaves_foreign_ones() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces, iptables), as in CI");
        return;
    }
    // A "killed run" fl0c1ea0 with a state file (dead harness pid), and an orphan fl0c1ea1
    // whose state file is gone; plus a foreign namespace and chain that must survive.
    let dead = "fl0c1ea0";
    let orphan = "fl0c1ea1";
    sh(&format!("ip netns add {dead}-n1 && ip link add {dead}br type bridge && ip link add {dead}n1 type veth peer name eth0 netns {dead}-n1"));
    sh(&format!("iptables -w 5 -I FORWARD -i {dead}br -o {dead}br -j ACCEPT"));
    sh(&format!("ip netns exec {dead}-n1 sleep 300 > /dev/null 2>&1 &"));
    sh(&format!(
        "ip netns add {orphan}-n2 && iptables -w 5 -N {orphan}in && iptables -w 5 -I INPUT -i lo -j {orphan}in"
    ));
    sh("ip netns add flforeign-x && iptables -w 5 -N FLFOREIGN");
    // A live run (its harness, this test process, is alive): left alone unless --force.
    let live = "fl0c1ea2";
    sh(&format!("ip netns add {live}-n1"));
    let live_state = serde_json::json!({
        "run_id": live, "harness_pid": std::process::id(), "netns": [format!("{live}-n1")],
        "links": [], "host_rules": [], "host_chains": [], "pids": [], "subnet": 249
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let state = serde_json::json!({
        "run_id": dead, "harness_pid": 999_999_999u32, "netns": [format!("{dead}-n1")],
        "links": [format!("{dead}br"), format!("{dead}n1")],
        "host_rules": [["FORWARD", "-i", format!("{dead}br"), "-o", format!("{dead}br"), "-j", "ACCEPT"]],
        "host_chains": [], "pids": [], "subnet": 250
    });
    std::fs::create_dir_all("/run/faultline").unwrap();
    std::fs::write(format!("/run/faultline/{dead}.json"), state.to_string()).unwrap();
    std::fs::write(format!("/run/faultline/{live}.json"), live_state.to_string()).unwrap();
    assert!(!leftovers(dead).is_empty());
    let pids = Command::new("ip").args(["netns", "pids", &format!("{dead}-n1")]).output().unwrap();
    let sleeper: u32 = String::from_utf8_lossy(&pids.stdout).trim().parse().expect("one process in the namespace");

    let dry = Command::new(faultline()).args(["cleanup", "--dry-run"]).output().unwrap();
    assert_eq!(dry.status.code(), Some(0), "{}", show(&dry));
    assert!(String::from_utf8_lossy(&dry.stdout).contains(dead));
    assert!(!leftovers(dead).is_empty(), "dry run removed something");

    let out = Command::new(faultline()).arg("cleanup").output().unwrap();
    let foreign_ns = std::path::Path::new("/run/netns/flforeign-x").exists();
    let foreign_chain = Command::new("iptables").args(["-w", "5", "-L", "FLFOREIGN", "-n"]).status().unwrap().success();
    let _ = Command::new("sh").args(["-c", "ip netns del flforeign-x; iptables -w 5 -X FLFOREIGN"]).status();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(leftovers(dead).is_empty(), "{:?}", leftovers(dead));
    assert!(leftovers(orphan).is_empty(), "{:?}", leftovers(orphan));
    // The process inside the dead run's namespace is gone (killed, then reaped by init).
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        !std::path::Path::new(&format!("/proc/{sleeper}")).exists()
            || std::fs::read_to_string(format!("/proc/{sleeper}/stat")).is_ok_and(|s| s.contains(") Z "))
    });
    assert!(gone, "process {sleeper} in the dead run's namespace survived cleanup");
    assert!(!std::path::Path::new(&format!("/run/faultline/{dead}.json")).exists());
    assert!(foreign_ns, "cleanup removed a namespace it did not create");
    assert!(foreign_chain, "cleanup removed a chain it did not create");
    assert!(!leftovers(live).is_empty(), "cleanup removed a live run");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("left alone live run {live}")), "{}", show(&out));
    let forced = Command::new(faultline()).args(["cleanup", "--run", live, "--force"]).output().unwrap();
    assert_eq!(forced.status.code(), Some(0), "{}", show(&forced));
    assert!(leftovers(live).is_empty(), "--force left {:?}", leftovers(live));
    assert!(!std::path::Path::new(&format!("/run/faultline/{live}.json")).exists());
    // --force alone would mean "every live run": refused.
    let all = Command::new(faultline()).args(["cleanup", "--force"]).output().unwrap();
    assert_eq!(all.status.code(), Some(255), "{}", show(&all));
    let bad = Command::new(faultline()).args(["cleanup", "--run", "docker0"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(255), "{}", show(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a faultline run id"));
}

#[test]
fn cleanup_after_a_harness_killed_with_sigkill_leaves_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces, iptables), as in CI");
        return;
    }
    let store = Store::new();
    let node = node_bin();
    let mut child = Command::new(faultline())
        .args([
            "run",
            "--nemesis",
            "partition",
            "--time-limit",
            "60",
            "--nemesis-interval",
            "1",
            "--seed",
            "6",
            "--quiet",
        ])
        .args(["--store", store.path().to_str().unwrap(), "--node-bin", node.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let history = store.path().join("latest/history.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&history).unwrap_or_default().contains("\"start-partition\"") {
        assert!(std::time::Instant::now() < deadline, "no partition within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(store.path().join("latest/test.json")).unwrap()).unwrap();
    let run_id = test["runtime"]["run_id"].as_str().unwrap().to_string();
    faultline_core::runtime::state::send_signal(child.id(), "KILL").unwrap();
    child.wait().unwrap();
    let dir = store.path().join("latest").canonicalize().unwrap();
    assert!(!leftovers(&run_id).is_empty(), "a SIGKILLed harness cannot tear down");
    assert!(!processes_with(dir.to_str().unwrap()).is_empty(), "nodes should outlive a SIGKILLed harness");

    let out = Command::new(faultline()).args(["cleanup", "--run", &run_id]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(leftovers(&run_id).is_empty(), "left: {:?}", leftovers(&run_id));
    let alive = (0..50).all(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        processes_with(dir.to_str().unwrap()).iter().any(|p| !p.contains(") Z"))
    });
    assert!(!alive, "node processes survived: {:?}", processes_with(dir.to_str().unwrap()));
    assert!(!std::path::Path::new(&format!("/run/faultline/{run_id}.json")).exists());
}
