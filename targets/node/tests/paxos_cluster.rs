//! Multi-process tests of `--role paxos` (CASPaxos): real nodes on loopback, killed with
//! SIGKILL and restarted. Any node answers (no leader); a majority of acceptors is enough.

mod roles_support;

use roles_support::Cluster;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_answers_on_every_node_with_one_register_per_key() {
    let mut c = Cluster::start("paxos", 1, 3, &[]);
    c.wait_up().await;
    let st = c.status(0).await.expect("status");
    assert_eq!(
        (st["role"].clone(), st["state"].clone(), st["leader"].clone()),
        (json!("paxos"), json!("proposer"), json!(null))
    );
    assert_eq!(c.read(0, "k").await, (200, json!({"value": null})));
    assert_eq!(c.write(0, "k", 3).await, (200, json!({})));
    assert_eq!(c.read(1, "k").await, (200, json!({"value": 3})));
    assert_eq!(c.cas(2, "k", 3, 4).await, (200, json!({})));
    let (code, body) = c.cas(1, "k", 3, 5).await;
    assert_eq!((code, body["error"].clone(), body["definite"].clone()), (409, json!("cas-mismatch"), json!(true)));
    assert_eq!(c.read(2, "k").await, (200, json!({"value": 4})));
    // A cas on a key never written is a mismatch (docs/node-api.md).
    assert_eq!(c.cas(0, "fresh", 0, 1).await.0, 409);
    // A cas from null swaps only a key that was never written.
    assert_eq!(c.post_raw(0, "/kv/cas", r#"{"key": "k", "from": null, "to": 6}"#).await.0, 409);
    assert_eq!(c.post_raw(0, "/kv/cas", r#"{"key": "fresh", "from": null, "to": 6}"#).await, (200, json!({})));
    assert_eq!(c.read(1, "fresh").await, (200, json!({"value": 6})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_from_every_node_lets_at_most_one_win() {
    let mut c = Cluster::start("paxos", 2, 3, &[]);
    c.wait_up().await;
    assert_eq!(c.write(0, "k", 0).await.0, 200);
    let c = std::sync::Arc::new(c);
    let mut tasks = Vec::new();
    for t in 0..12i64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { (t + 1, c.cas((t % 3) as usize, "k", 0, t + 1).await) }));
    }
    let mut winners = Vec::new();
    let mut unknown = 0;
    for t in tasks {
        let (to, (code, body)) = t.await.expect("task");
        match code {
            200 => winners.push(to),
            409 | 503 => assert_eq!(body["definite"], true, "{code} {body}"),
            504 => unknown += 1,
            other => panic!("unexpected {other} {body}"),
        }
    }
    assert!(winners.len() <= 1, "two cas from 0 both won: {winners:?}");
    let (code, v) = c.read(1, "k").await;
    assert_eq!(code, 200);
    if unknown == 0 {
        let want = winners.first().copied().unwrap_or(0);
        assert_eq!(v, json!({"value": want}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_does_not_stop_a_majority_and_acceptor_state_survives_restart() {
    let mut c = Cluster::start("paxos", 3, 3, &[]);
    c.wait_up().await;
    assert_eq!(c.write(0, "k", 1).await.0, 200);
    c.kill9(0);
    // n2 and n3 are a majority: both still serve.
    assert_eq!(c.write(1, "k", 2).await, (200, json!({})));
    assert_eq!(c.read(2, "k").await, (200, json!({"value": 2})));
    // n1 comes back with its fsynced promises; with n3 down, {n1, n2} must still see 2 (n2
    // accepted it; n1's stale acceptance has a lower ballot).
    c.spawn(0);
    c.kill9(2);
    c.wait_up().await;
    assert_eq!(c.read(0, "k").await, (200, json!({"value": 2})));
    assert_eq!(c.cas(0, "k", 2, 7).await, (200, json!({})));
    // Only n1 left: no majority, a definite 503 and quickly.
    c.kill9(1);
    let t0 = Instant::now();
    let (code, body) = c.write(0, "k", 9).await;
    assert_eq!(
        (code, body["error"].clone(), body["definite"].clone()),
        (503, json!("unavailable"), json!(true)),
        "{body}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // Everything back: the last chosen value, 7, and never the failed 9.
    c.spawn(1);
    c.spawn(2);
    c.wait_up().await;
    assert_eq!(c.read(2, "k").await, (200, json!({"value": 7})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_wrong_flags_are_refused() {
    let mut c = Cluster::start("paxos", 4, 3, &[]);
    c.wait_up().await;
    for (path, body) in [
        ("/kv/write", r#"{"key": "k"}"#),
        ("/kv/read", "not json"),
        ("/kv/cas", r#"{"key": "k", "from": "a", "to": 1}"#),
        ("/kv/read", r#"{"key": ""}"#),
        ("/peer/rpc", r#"{"type": "prepare"}"#),
        ("/peer/rpc", r#"{"type": "prepare", "key": "", "ballot": {"counter": 1, "node": "n1"}}"#),
    ] {
        let (code, v) = c.post_raw(0, path, body).await;
        assert_eq!((code, v["error"].clone()), (400, json!("bad-request")), "{path} {body}: {v}");
    }
    // Raft's peer route does not exist on this role.
    assert_eq!(c.post_raw(0, "/peer/msg", "[]").await.0, 404);
    // A bug of another role is refused at start.
    let out = c.command(0).args(["--bug", "naive"]).output().expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("applies to --role"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
