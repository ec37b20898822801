//! Without CAP_NET_ADMIN: `faultline run` re-runs itself inside an unprivileged user and
//! network namespace, where it partitions and delays nodes on loopback, and leaves no process
//! behind. Without any packet filter (`--local-net none`), network faults are reported as not
//! applied, with the reason, never skipped silently.
//!
//! Run as root (CI) by dropping to `nobody` with setpriv; skipped where that user cannot reach
//! the binaries or the kernel forbids unprivileged user namespaces.

mod run_support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use run_support::*;

#[test]
fn unprivileged_run_falls_back_to_loopback_in_a_user_namespace() {
    if !is_root() {
        eprintln!("skipped: needs root to drop to nobody");
        return;
    }
    let node = node_bin();
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(args)
            .env("HOME", "/tmp")
            .env_remove("FAULTLINE_STATE_DIR")
            .output()
    };
    let fl = faultline();
    match as_nobody(&[fl.to_str().unwrap(), "--version"]) {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("skipped: nobody cannot run {} ({other:?})", fl.display());
            return;
        }
    }
    match as_nobody(&["unshare", "--user", "--map-root-user", "--net", "true"]) {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("skipped: no unprivileged user namespaces here ({other:?})");
            return;
        }
    }
    let store = Store::new();
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = as_nobody(&[
        fl.to_str().unwrap(),
        "run",
        "--nemesis",
        "partition,latency",
        "--nodes",
        "3",
        "--concurrency",
        "4",
        "--rate",
        "40",
        "--time-limit",
        "7",
        "--nemesis-interval",
        "1.5",
        "--recovery",
        "1",
        "--seed",
        "8",
        "--quiet",
        "--store",
        store.path().to_str().unwrap(),
        "--node-bin",
        node.to_str().unwrap(),
    ])
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("re-running inside an unprivileged user and network namespace"),
        "{}",
        show(&out)
    );
    let r = results(store.path());
    assert_eq!(out.status.code(), Some(0), "{}\n{r:#}", show(&out));
    assert_eq!(r["runtime"]["mechanism"], "loopback-iptables");
    assert_eq!(r["runtime"]["userns"], true);
    let faults = r["faults"].as_array().unwrap();
    let partition = faults.iter().find(|f| f["fault"] == "partition").expect("a partition window");
    assert_eq!(partition["applied"], true, "{partition:#}");
    let latency = faults.iter().find(|f| f["fault"] == "latency").expect("a latency window");
    assert_eq!(latency["applied"], true, "{latency:#}");
    assert_eq!(latency["mechanism"], "loopback-iptables-nfqueue");
    assert_eq!(r["faults_not_applied"], 0);
    let dir = store.path().join("latest").canonicalize().unwrap();
    assert!(processes_with(dir.to_str().unwrap()).is_empty(), "{:?}", processes_with(dir.to_str().unwrap()));
}

#[test]
fn without_a_packet_filter_network_faults_are_reported_not_applied() {
    if !is_root() {
        eprintln!("skipped: needs root (as CI) to be sure of the other faults");
        return;
    }
    let store = Store::new();
    let out = run(
        store.path(),
        &[
            "--local-net",
            "none",
            "--nemesis",
            "partition,kill",
            "--nodes",
            "3",
            "--concurrency",
            "3",
            "--rate",
            "30",
            "--time-limit",
            "5",
            "--nemesis-interval",
            "1",
            "--recovery",
            "0",
            "--seed",
            "4",
        ],
    );
    let r = results(store.path());
    assert!(matches!(out.status.code(), Some(0) | Some(2)), "{}\n{r:#}", show(&out));
    assert_eq!(r["runtime"]["mechanism"], "loopback-none");
    let faults = r["faults"].as_array().unwrap();
    let partition = faults.iter().find(|f| f["fault"] == "partition").expect("a partition window");
    assert_eq!(partition["applied"], false);
    assert!(partition["error"].as_str().unwrap().contains("cannot filter packets"), "{partition:#}");
    let kill = faults.iter().find(|f| f["fault"] == "kill").expect("a kill window");
    assert_eq!(kill["applied"], true, "process faults need no packet filter");
    assert_eq!(r["faults_not_applied"], 1);
    // The history says so too: the partition's start event carries applied: false.
    let h = history(store.path());
    let start = h.iter().find(|e| e.f == "start-partition").unwrap();
    assert_eq!(start.value["applied"], false);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 not applied"), "{}", show(&out));
}
