//! The Docker runtime's faults act on real traffic between containers: a partition cuts TCP
//! between two containers but not a third or the host's clients; it survives a container
//! restart (new namespace, rules re-applied); loss drops, latency delays (NFQUEUE consumer in the
//! container's namespace, re-started after a restart); pause freezes; heal restores; teardown
//! leaves nothing. Connectivity is probed from inside a container's namespace with
//! `nsenter -t PID -n` and a bash /dev/tcp connect.

mod docker_support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use docker_support::*;
use faultline_core::client::http::NodeHttp;
use faultline_core::runtime::docker::{DockerOptions, DockerRuntime, IMAGE_NODE_PATH};
use faultline_core::runtime::{Launch, Link, NetFaults, NodeSpec, Runtime};
use faultline_core::target::reference::ReferenceTarget;
use faultline_core::target::Target;

const DELAY_MS: u64 = 300;

fn pid_of(rt: &DockerRuntime, node: &str) -> u32 {
    let name = format!("faultline-{}-{node}", rt.run_id());
    let out = Command::new("docker").args(["inspect", "-f", "{{.State.Pid}}", &name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a running container has a pid")
}

/// Milliseconds a TCP connect from `from_pid`'s namespace to `to` took; `None` if it did not
/// complete within 1 s.
fn connect_ms(from_pid: u32, to: &NodeSpec) -> Option<f64> {
    let script = format!("exec 3<>/dev/tcp/{}/{}", to.ip, to.port);
    let t = Instant::now();
    let st = Command::new("nsenter")
        .args(["-t", &from_pid.to_string(), "-n", "timeout", "1", "bash", "-c", &script])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    st.success().then(|| t.elapsed().as_secs_f64() * 1000.0)
}

fn link(from: &str, to: &str) -> Link {
    Link { from: from.into(), to: to.into() }
}

fn ns_rules(pid: u32) -> String {
    let out =
        Command::new("nsenter").args(["-t", &pid.to_string(), "-n", "iptables", "-w", "5", "-S"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn faults_act_on_traffic_between_containers_and_survive_restarts() {
    let _serial = serial();
    if !docker_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let rt = DockerRuntime::setup(&DockerOptions {
        nodes: 3,
        port: 8080,
        state_dir: state.path().to_path_buf(),
        repo: None,
        build_timeout: Duration::from_secs(900),
        cancel: None,
    })
    .expect("docker runtime setup");
    let nodes: Vec<NodeSpec> = rt.nodes().to_vec();
    let subnet = {
        let ip = nodes[0].ip.to_string();
        format!("{}.", ip.rsplit_once('.').unwrap().0)
    };
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = NodeHttp::new(Duration::from_millis(700), "test-token").unwrap();
    let target = ReferenceTarget {
        role: "raft".into(),
        options: vec![],
        program: PathBuf::from(IMAGE_NODE_PATH),
        // A bug flag, to see the run's options reach the containers' command lines.
        bugs: vec!["stale-read".into()],
        admin_token: "test-token".into(),
        http: http.clone(),
        seed: 1,
    };
    let launches: Vec<(String, Launch)> = nodes
        .iter()
        .map(|n| {
            let data = tmp.path().join(&n.id);
            std::fs::create_dir_all(&data).unwrap();
            (n.id.clone(), target.launch(n, &nodes, &data, &tmp.path().join(format!("{}.log", n.id))))
        })
        .collect();
    rt.start_nodes(&launches).expect("containers start");
    let answers = |n: &NodeSpec| tokio.block_on(http.status(&n.addr())).is_ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().all(answers) {
        assert!(Instant::now() < deadline, "cluster did not answer the host within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let status = tokio.block_on(http.status(&n3.addr())).unwrap();
    assert_eq!(status["bugs"], serde_json::json!(["stale-read"]), "{status:#}");
    assert_eq!(status["id"], "n3");
    let p1 = pid_of(&rt, "n1");
    let p3 = pid_of(&rt, "n3");
    assert!(connect_ms(p1, n2).is_some() && connect_ms(p3, n1).is_some(), "baseline connectivity");

    // Partition n1 | n2 (both ways).
    rt.apply_net(&NetFaults { drop: vec![link("n1", "n2"), link("n2", "n1")], ..NetFaults::default() }).unwrap();
    assert_eq!(connect_ms(p1, n2), None, "n1 -> n2 must be cut");
    assert!(connect_ms(p1, n3).is_some(), "n1 -> n3 stays");
    assert!(connect_ms(p3, n2).is_some(), "n3 -> n2 stays");
    assert!(answers(n2), "the host's clients are not partitioned");

    // Kill and restart n2: new namespace, the partition is re-applied.
    let old_p2 = pid_of(&rt, "n2");
    rt.kill_node("n2").unwrap();
    assert!(!rt.is_running("n2"));
    assert!(!answers(n2), "a killed node does not answer");
    rt.start_node("n2", &launches[1].1).unwrap();
    assert!(rt.is_running("n2"));
    let p2 = pid_of(&rt, "n2");
    assert_ne!(p2, old_p2, "a restarted container has a new init process");
    assert!(ns_rules(p2).contains(&format!("-A FAULTLINE-IN -s {}/32 -j DROP", n1.ip)), "{}", ns_rules(p2));
    assert_eq!(connect_ms(p1, n2), None, "the partition survives n2's restart");
    assert!(connect_ms(p3, n2).is_some(), "n3 -> n2 after the restart");
    // Only our chains were added; Docker's DNS rules in the nat table are intact.
    let nat = Command::new("nsenter")
        .args(["-t", &p2.to_string(), "-n", "iptables", "-w", "5", "-t", "nat", "-S"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&nat.stdout).contains("DOCKER_OUTPUT"), "{}", String::from_utf8_lossy(&nat.stdout));

    rt.heal_net().unwrap();
    assert!(connect_ms(p1, n2).is_some(), "healed");
    assert!(!ns_rules(p2).contains("-j DROP"), "{}", ns_rules(p2));

    // Loss with probability 1 drops everything from n3 to n1.
    rt.apply_net(&NetFaults { loss: vec![(link("n3", "n1"), 1.0)], ..NetFaults::default() }).unwrap();
    assert_eq!(connect_ms(p3, n1), None, "loss 1.0 drops n3 -> n1");
    assert!(ns_rules(p1).contains("statistic"), "{}", ns_rules(p1));
    rt.heal_net().unwrap();
    assert!(connect_ms(p3, n1).is_some());

    // Latency: packets from n1 to n2 are held DELAY_MS.
    let base = connect_ms(p1, n2).unwrap();
    assert!(base < DELAY_MS as f64, "baseline connect {base:.0} ms");
    rt.apply_net(&NetFaults { delay: vec![(link("n1", "n2"), DELAY_MS)], ..NetFaults::default() }).unwrap();
    let delayed = connect_ms(p1, n2).expect("delayed, not dropped");
    assert!(delayed >= DELAY_MS as f64, "connect took {delayed:.0} ms under a {DELAY_MS} ms delay");
    let other = connect_ms(p1, n3).unwrap();
    assert!(other < DELAY_MS as f64, "n1 -> n3 is not delayed ({other:.0} ms)");
    // After n1 restarts, its new namespace gets the queue rule and a new consumer.
    rt.kill_node("n1").unwrap();
    rt.start_node("n1", &launches[0].1).unwrap();
    let p1 = pid_of(&rt, "n1");
    let delayed = connect_ms(p1, n2).expect("delayed after the restart, not dropped");
    assert!(delayed >= DELAY_MS as f64, "after n1's restart, connect took {delayed:.0} ms");
    rt.heal_net().unwrap();
    let healed = connect_ms(p1, n2).unwrap();
    assert!(healed < DELAY_MS as f64, "healed connect {healed:.0} ms");
    eprintln!("connect n1->n2: baseline {base:.0} ms, delayed {delayed:.0} ms (after restart), healed {healed:.0} ms; n1->n3 {other:.0} ms");

    // Pause freezes the whole container (not just its init), resume thaws it.
    rt.pause_node("n3").unwrap();
    assert!(rt.is_running("n3"), "a paused node is alive");
    assert!(!answers(n3), "a paused node does not answer");
    rt.resume_node("n3").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !answers(n3) {
        assert!(Instant::now() < deadline, "n3 did not answer after resume");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Pause, then kill: the kill nemesis may pick a paused node.
    rt.pause_node("n3").unwrap();
    rt.kill_node("n3").unwrap();
    assert!(!rt.is_running("n3"));

    rt.teardown().unwrap();
    let left = docker_leftovers(rt.run_id(), &subnet);
    // docker_leftovers looks in the default state folder; this test used its own.
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!state.path().join("docker").join(rt.run_id()).exists(), "compose folder removed");
    let log = std::fs::read_to_string(tmp.path().join("n2.log")).unwrap();
    assert_eq!(log.matches("starting raft node").count(), 2, "n2's log holds both of its lives:\n{log}");
}
