//! The local runtime against real traffic: partitions cut TCP between namespaces, heal restores
//! it, loss with probability 1 drops everything, latency delays connects by at least the delay,
//! kill/pause/resume act on the node processes, teardown leaves nothing. Needs root (as CI).
//!
//! Traffic is made by threads that enter a node's network namespace with setns(2) (which
//! affects only the calling thread), so the test needs no tool besides iproute2 and iptables.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use faultline_core::runtime::local::{has_net_admin, LocalOptions, LocalRuntime, MechanismChoice};
use faultline_core::runtime::{Launch, Link, NetFaults, NetMechanism, Runtime};

const PORT: u16 = 7070;

fn runtime(mech: MechanismChoice, nodes: usize) -> LocalRuntime {
    LocalRuntime::setup(&LocalOptions {
        nodes,
        port: PORT,
        mechanism: mech,
        state_dir: faultline_core::runtime::state::state_dir(),
    })
    .expect("runtime setup")
}

/// Runs `f` on a thread inside `netns` (None = the host namespace).
fn in_ns<T: Send + 'static>(netns: Option<String>, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        if let Some(ns) = netns {
            let file = std::fs::File::open(PathBuf::from("/run/netns").join(ns)).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        }
        f()
    })
    .join()
    .unwrap()
}

/// A listener on `ip:PORT` inside `netns` that accepts forever (the thread dies with the test).
fn listen(netns: Option<String>, ip: Ipv4Addr) {
    let l = in_ns(netns, move || TcpListener::bind(SocketAddr::from((ip, PORT))).unwrap());
    std::thread::spawn(move || for _ in l.incoming() {});
}

/// Connect time from inside `netns` to `to`, or None on failure/timeout. Inside a node's
/// namespace the only address is the node's own, so it is the source.
fn connect(netns: Option<String>, to: Ipv4Addr, timeout: Duration) -> Option<Duration> {
    in_ns(netns, move || {
        let started = Instant::now();
        TcpStream::connect_timeout(&SocketAddr::from((to, PORT)), timeout).ok().map(|_| started.elapsed())
    })
}

fn link(a: &str, b: &str) -> Link {
    Link { from: a.into(), to: b.into() }
}

#[test]
fn netns_faults_act_on_real_traffic_and_teardown_leaves_nothing() {
    if !has_net_admin() {
        eprintln!("skipped: needs CAP_NET_ADMIN (root), as in CI");
        return;
    }
    let rt = runtime(MechanismChoice::Netns, 3);
    assert_eq!(rt.mechanism(), NetMechanism::Netns);
    let ns = |i: usize| Some(format!("{}-n{i}", rt.run_id()));
    let ip = |i: usize| rt.nodes()[i - 1].ip;
    listen(ns(2), ip(2));
    listen(ns(3), ip(3));
    let t = Duration::from_millis(500);
    assert!(connect(ns(1), ip(2), t).is_some(), "healthy n1 -> n2");
    // The harness (host side of the bridge) reaches the nodes too.
    assert!(connect(None, ip(2), t).is_some(), "host -> n2");

    // Partition n1 | n2 (both ways); n1 -> n3 unaffected.
    rt.apply_net(&NetFaults { drop: vec![link("n1", "n2"), link("n2", "n1")], ..NetFaults::default() }).unwrap();
    assert!(connect(ns(1), ip(2), t).is_none(), "partitioned n1 -> n2 connected");
    assert!(connect(ns(1), ip(3), t).is_some(), "n1 -> n3 should be unaffected");
    assert!(connect(None, ip(2), t).is_some(), "the harness must still reach n2");
    rt.heal_net().unwrap();
    rt.heal_net().unwrap(); // idempotent
    assert!(connect(ns(1), ip(2), t).is_some(), "healed n1 -> n2");

    // Loss with probability 1 drops everything on the link.
    rt.apply_net(&NetFaults { loss: vec![(link("n1", "n3"), 1.0)], ..NetFaults::default() }).unwrap();
    assert!(connect(ns(1), ip(3), t).is_none(), "100% loss n1 -> n3 connected");
    rt.heal_net().unwrap();

    // Latency: n1's packets to n2 are held 150 ms (NFQUEUE consumer inside n1's namespace).
    let base = connect(ns(1), ip(2), Duration::from_secs(2)).unwrap();
    rt.apply_net(&NetFaults { delay: vec![(link("n1", "n2"), 150)], ..NetFaults::default() }).unwrap();
    let slow = connect(ns(1), ip(2), Duration::from_secs(2)).expect("delayed, not dropped");
    assert!(slow >= Duration::from_millis(150), "connect took {slow:?} under 150 ms latency (baseline {base:?})");
    let other = connect(ns(1), ip(3), Duration::from_secs(2)).unwrap();
    assert!(other < Duration::from_millis(100), "n1 -> n3 delayed too: {other:?}");
    rt.heal_net().unwrap();
    let healed = connect(ns(1), ip(2), Duration::from_secs(2)).unwrap();
    assert!(healed < Duration::from_millis(100), "latency survived the heal: {healed:?}");

    // Processes: start, pause, resume, kill, restart.
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        program: PathBuf::from("sleep"),
        args: vec!["300".into()],
        env: vec![],
        log: dir.path().join("n1.log"),
    };
    let pid = rt.start_node("n1", &launch).unwrap();
    assert!(rt.is_running("n1"));
    rt.pause_node("n1").unwrap();
    // SIGSTOP takes effect when the process is next scheduled: poll briefly.
    let stopped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") T ")
    });
    assert!(stopped, "not stopped after SIGSTOP");
    rt.resume_node("n1").unwrap();
    rt.kill_node("n1").unwrap();
    assert!(!rt.is_running("n1"));
    rt.kill_node("n1").unwrap(); // killing a dead node is fine
    let pid2 = rt.start_node("n1", &launch).unwrap();
    assert_ne!(pid, pid2);
    // The node runs inside its namespace.
    // The node runs inside its namespace (once `ip netns exec` has entered it and exec'd).
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let entered = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        std::fs::read_link(format!("/proc/{pid2}/ns/net")).is_ok_and(|ns| ns != own)
            && std::fs::read_to_string(format!("/proc/{pid2}/comm")).is_ok_and(|c| c.trim() == "sleep")
    });
    assert!(entered, "node did not end up as `sleep` inside its own namespace");

    let run_id = rt.run_id().to_string();
    rt.teardown().unwrap();
    rt.teardown().unwrap(); // idempotent
    // The node was killed and reaped by the runtime (its parent): the pid is gone.
    assert!(!std::path::Path::new(&format!("/proc/{pid2}")).exists(), "node {pid2} survived teardown");
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(&run_id)).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert!(!std::path::Path::new(&format!("/sys/class/net/{run_id}br")).exists());
    let rules = std::process::Command::new("iptables").args(["-w", "5", "-S"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&rules.stdout).contains(&run_id), "host rule left behind");
}

#[test]
fn loopback_fallback_partitions_with_a_chain_and_refuses_latency() {
    if !has_net_admin() {
        eprintln!("skipped: needs CAP_NET_ADMIN (root), as in CI");
        return;
    }
    let rt = runtime(MechanismChoice::LoopbackIptables, 2);
    assert_eq!(rt.mechanism(), NetMechanism::LoopbackIptables);
    let ip1 = rt.nodes()[0].ip;
    let ip2 = rt.nodes()[1].ip;
    assert_eq!(ip1.octets()[..2], [127, 77]);
    listen(None, ip2);
    let t = Duration::from_millis(500);
    // std cannot choose a connection's source address (the kernel picks 127.0.0.1 on
    // loopback), so traffic cuts are proven by the namespace test; here the per-run chain must
    // hold exactly the address rule, and heal must empty it.
    assert!(connect(None, ip2, t).is_some());
    rt.apply_net(&NetFaults { drop: vec![link("n1", "n2")], ..NetFaults::default() }).unwrap();
    let chain = format!("{}in", rt.run_id());
    let listed = std::process::Command::new("iptables").args(["-w", "5", "-S", &chain]).output().unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains(&format!("-s {ip1}/32 -d {ip2}/32")) && text.contains("-j DROP"), "{text}");
    let err = rt
        .apply_net(&NetFaults { delay: vec![(link("n1", "n2"), 50)], ..NetFaults::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("latency needs one network namespace per node"), "{err}");
    rt.heal_net().unwrap();
    let listed = std::process::Command::new("iptables").args(["-w", "5", "-S", &chain]).output().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("DROP"));
    rt.teardown().unwrap();
    let all = std::process::Command::new("iptables").args(["-w", "5", "-S"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&all.stdout).contains(rt.run_id()), "chain or hook left behind");
}

#[test]
fn without_a_packet_filter_network_faults_are_refused_not_skipped() {
    let rt = runtime(MechanismChoice::LoopbackNone, 2);
    assert!(rt.heal_net().is_ok(), "healing nothing is fine");
    let err = rt
        .apply_net(&NetFaults { drop: vec![link("n1", "n2")], ..NetFaults::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot filter packets"), "{err}");
    rt.teardown().unwrap();
}
