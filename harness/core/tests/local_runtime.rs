//! The local runtime against real traffic: partitions cut TCP between namespaces, heal restores
//! it, loss with probability 1 drops everything, latency delays connects by at least the delay,
//! kill/pause/resume act on the node processes, teardown leaves nothing; the same cuts, loss and
//! latency on loopback between bound node addresses. Needs root (as CI).
//!
//! Traffic is made by threads that enter a node's network namespace with setns(2) (which
//! affects only the calling thread), so the test needs no tool besides iproute2 and iptables.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
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
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&run_id))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert!(!std::path::Path::new(&format!("/sys/class/net/{run_id}br")).exists());
    let rules = std::process::Command::new("iptables").args(["-w", "5", "-S"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&rules.stdout).contains(&run_id), "host rule left behind");
}

/// A UDP echo on `ip:PORT` (host namespace) that answers every datagram.
fn udp_echo(ip: Ipv4Addr) {
    let sock = UdpSocket::bind(SocketAddr::from((ip, PORT))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
}

/// Round trip of one datagram sent from `from` (a bound source, as the nodes bind theirs) to
/// the echo at `to`, or None when no answer came within `timeout`.
fn udp_rtt(from: Ipv4Addr, to: Ipv4Addr, timeout: Duration) -> Option<Duration> {
    let sock = UdpSocket::bind(SocketAddr::from((from, 0))).unwrap();
    sock.set_read_timeout(Some(timeout)).unwrap();
    let started = Instant::now();
    sock.send_to(b"ping", SocketAddr::from((to, PORT))).unwrap();
    let mut buf = [0u8; 64];
    sock.recv_from(&mut buf).ok().map(|_| started.elapsed())
}

#[test]
fn loopback_fallback_cuts_loses_and_delays_between_node_addresses() {
    if !has_net_admin() {
        eprintln!("skipped: needs CAP_NET_ADMIN (root), as in CI");
        return;
    }
    let rt = runtime(MechanismChoice::LoopbackIptables, 3);
    assert_eq!(rt.mechanism(), NetMechanism::LoopbackIptables);
    let ip = |i: usize| rt.nodes()[i - 1].ip;
    assert_eq!(ip(1).octets()[..2], [127, 77]);
    udp_echo(ip(2));
    let t = Duration::from_millis(300);
    assert!(udp_rtt(ip(1), ip(2), t).is_some(), "healthy n1 -> n2");

    // A one-way cut n1 -> n2: n1's datagrams never arrive; n3 still gets through.
    rt.apply_net(&NetFaults { drop: vec![link("n1", "n2")], ..NetFaults::default() }).unwrap();
    assert!(udp_rtt(ip(1), ip(2), t).is_none(), "cut n1 -> n2 answered");
    assert!(udp_rtt(ip(3), ip(2), t).is_some(), "n3 -> n2 should be unaffected");
    rt.heal_net().unwrap();
    assert!(udp_rtt(ip(1), ip(2), t).is_some(), "healed n1 -> n2");

    rt.apply_net(&NetFaults { loss: vec![(link("n1", "n2"), 1.0)], ..NetFaults::default() }).unwrap();
    assert!(udp_rtt(ip(1), ip(2), t).is_none(), "100% loss n1 -> n2 answered");
    rt.heal_net().unwrap();

    // Latency: one NFQUEUE per run in the host namespace, fed by the run's OUTPUT chain.
    rt.apply_net(&NetFaults { delay: vec![(link("n1", "n2"), 120)], ..NetFaults::default() }).unwrap();
    let slow = udp_rtt(ip(1), ip(2), Duration::from_secs(2)).expect("delayed, not dropped");
    assert!(slow >= Duration::from_millis(120), "rtt {slow:?} under 120 ms latency");
    let other = udp_rtt(ip(3), ip(2), Duration::from_secs(2)).unwrap();
    assert!(other < Duration::from_millis(60), "n3 -> n2 delayed too: {other:?}");
    let err = rt
        .apply_net(&NetFaults { delay: vec![(link("n1", "n2"), 50), (link("n2", "n1"), 60)], ..NetFaults::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("one delay at a time on loopback"), "{err}");
    rt.heal_net().unwrap();
    let healed = udp_rtt(ip(1), ip(2), Duration::from_secs(2)).unwrap();
    assert!(healed < Duration::from_millis(60), "latency survived the heal: {healed:?}");
    for chain in ["in", "out"] {
        let listed = std::process::Command::new("iptables")
            .args(["-w", "5", "-S", &format!("{}{chain}", rt.run_id())])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&listed.stdout);
        assert!(!text.contains("DROP") && !text.contains("NFQUEUE"), "heal left rules: {text}");
    }
    rt.teardown().unwrap();
    let all = std::process::Command::new("iptables").args(["-w", "5", "-S"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&all.stdout).contains(rt.run_id()), "chain or hook left behind");
}

#[test]
fn without_a_packet_filter_network_faults_are_refused_not_skipped() {
    let rt = runtime(MechanismChoice::LoopbackNone, 2);
    assert!(rt.heal_net().is_ok(), "healing nothing is fine");
    let err =
        rt.apply_net(&NetFaults { drop: vec![link("n1", "n2")], ..NetFaults::default() }).unwrap_err().to_string();
    assert!(err.contains("cannot filter packets"), "{err}");
    rt.teardown().unwrap();
}

#[test]
fn runs_set_up_at_the_same_time_get_distinct_names_and_subnets() {
    if !has_net_admin() {
        eprintln!("skipped: needs CAP_NET_ADMIN (root), as in CI");
        return;
    }
    let handles: Vec<_> = (0..4).map(|_| std::thread::spawn(|| runtime(MechanismChoice::Netns, 1))).collect();
    let rts: Vec<LocalRuntime> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut subnets: Vec<u8> = rts.iter().map(|r| r.nodes()[0].ip.octets()[2]).collect();
    let mut ids: Vec<String> = rts.iter().map(|r| r.run_id().to_string()).collect();
    for r in &rts {
        r.teardown().unwrap();
    }
    subnets.sort();
    subnets.dedup();
    ids.sort();
    ids.dedup();
    assert_eq!(subnets.len(), 4, "subnet clash");
    assert_eq!(ids.len(), 4, "run id clash");
}
