//! Multi-process tests of `--role quorum` (ABD): real nodes on loopback, killed with SIGKILL.
//! Any node answers while it reaches a majority; cas is refused (501, definite).

mod roles_support;

use roles_support::Cluster;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_answers_on_every_node_and_refuses_cas() {
    let mut c = Cluster::start("quorum", 11, 3, &[]);
    c.wait_up().await;
    let st = c.status(1).await.expect("status");
    assert_eq!(
        (st["role"].clone(), st["state"].clone(), st["mode"].clone()),
        (json!("quorum"), json!("replica"), json!("abd"))
    );
    assert_eq!(c.read(0, "k").await, (200, json!({"value": null})));
    assert_eq!(c.write(0, "k", 3).await, (200, json!({})));
    assert_eq!(c.read(1, "k").await, (200, json!({"value": 3})));
    assert_eq!(c.write(2, "k", 4).await, (200, json!({})));
    assert_eq!(c.read(0, "k").await, (200, json!({"value": 4})));
    let (code, body) = c.cas(1, "k", 4, 5).await;
    assert_eq!((code, body["error"].clone(), body["definite"].clone()), (501, json!("unsupported"), json!(true)));
    assert_eq!(c.read(2, "k").await, (200, json!({"value": 4})), "a refused cas changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_does_not_stop_a_majority_and_a_minority_is_unavailable() {
    let mut c = Cluster::start("quorum", 12, 3, &[]);
    c.wait_up().await;
    assert_eq!(c.write(0, "k", 1).await.0, 200);
    c.kill9(2);
    assert_eq!(c.write(1, "k", 2).await, (200, json!({})));
    assert_eq!(c.read(0, "k").await, (200, json!({"value": 2})));
    // n3 restarts with its fsynced (older) copy; with n1 down, {n2, n3} still read 2.
    c.spawn(2);
    c.kill9(0);
    c.wait_up().await;
    assert_eq!(c.read(2, "k").await, (200, json!({"value": 2})));
    // A lone node cannot reach a majority: 503, definite, nothing written.
    c.kill9(1);
    let t0 = Instant::now();
    let (code, body) = c.write(2, "k", 9).await;
    assert_eq!(
        (code, body["error"].clone(), body["definite"].clone()),
        (503, json!("unavailable"), json!(true)),
        "{body}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(c.read(2, "k").await.0, 503);
    c.spawn(0);
    c.spawn(1);
    c.wait_up().await;
    assert_eq!(c.read(0, "k").await, (200, json!({"value": 2})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_the_naive_mode_serves_a_healthy_cluster() {
    let mut c = Cluster::start("quorum", 13, 3, &["--bug", "naive"]);
    c.wait_up().await;
    assert_eq!(c.status(0).await.expect("status")["mode"], "naive");
    for (path, body) in [
        ("/kv/write", r#"{"key": "k", "value": 1.5}"#),
        ("/kv/read", "{"),
        ("/peer/rpc", r#"{"type": "set", "key": "k"}"#),
        ("/peer/rpc", r#"{"type": "get", "key": ""}"#),
    ] {
        let (code, v) = c.post_raw(0, path, body).await;
        assert_eq!((code, v["error"].clone()), (400, json!("bad-request")), "{path} {body}: {v}");
    }
    // Without faults the textbook version answers like the correct one.
    assert_eq!(c.write(0, "k", 5).await, (200, json!({})));
    assert_eq!(c.read(2, "k").await, (200, json!({"value": 5})));
}
