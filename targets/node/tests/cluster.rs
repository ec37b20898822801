//! Multi-process tests: real `faultline-node` processes on loopback, killed with SIGKILL and
//! restarted. Each test uses its own 127.33.NET.x addresses so the tests run in parallel.

mod common;

use common::{Cluster, TOKEN};
use serde_json::json;
use std::time::Duration;

const ELECTION_WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ crash recovery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_the_leader_then_restart_keeps_the_cluster_serving() {
    let mut c = Cluster::start(1, 3, &[]);
    let l = c.leader(ELECTION_WAIT).await;
    let follower = (l + 1) % 3;
    // Followers forward to the leader...
    assert_eq!(c.write(follower, "k", 1).await, (200, json!({})));
    // ...unless told not to, then they name it.
    let (code, body) = c
        .http
        .post(format!("http://{}/kv/read", c.addrs[follower]))
        .header("X-Faultline-No-Forward", "1")
        .json(&json!({"key": "k"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .expect("request");
    let body: serde_json::Value = body.json().await.expect("json");
    assert_eq!(code, 421);
    assert_eq!(body["error"], "not-leader");
    assert_eq!(body["leader"], c.addrs[l]);

    c.kill9(l);
    // Right after the crash the follower still names the dead leader: forwarding fails to
    // connect, which is a definite failure (503), answered at once rather than after a timeout.
    let t0 = std::time::Instant::now();
    let (code, body) = c.write(follower, "k", 9).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "answer took {:?}", t0.elapsed());
    assert!(code == 200 || (code == 503 && body["definite"] == true), "{code} {body}");
    c.write_eventually("k", 2, Duration::from_secs(10)).await;
    let l2 = c.leader(ELECTION_WAIT).await;
    assert_ne!(l2, l, "a live node leads");
    c.spawn(l);
    // The restarted node rejoins, catches up, and serves (forwarding) the latest value.
    let mut caught_up = false;
    for _ in 0..100 {
        let (a, b) = (c.status(l).await, c.status(l2).await);
        if let (Some(a), Some(b)) = (a, b) {
            if a["applied_index"].as_u64() >= b["commit_index"].as_u64() && a["leader"].is_string() {
                caught_up = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(caught_up, "restarted node never caught up; logs in {}", c.keep_logs().display());
    assert_eq!(c.read(l, "k").await, (200, json!({"value": 2})));
}

/// Every acknowledged write survives a kill -9 of every node (WAL fsynced before acks; recovery
/// from snapshot + WAL, since snapshots are taken every 50 entries here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_kill9_of_every_node() {
    let mut c = Cluster::start(2, 3, &["--snapshot-entries", "50"]);
    let l = c.leader(ELECTION_WAIT).await;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let http = c.http.clone();
        let addr = c.addrs[(l + t) % 3].clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..60 {
                let key = format!("t{t}-{i}");
                let r =
                    http.post(format!("http://{addr}/kv/write")).json(&json!({"key": key, "value": i})).send().await;
                if let Ok(r) = r {
                    if r.status().as_u16() == 200 {
                        acked.push((key, i));
                    }
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("task"));
    }
    assert!(acked.len() >= 200, "only {} of 240 writes acknowledged", acked.len());
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    let l = c.leader(ELECTION_WAIT).await;
    let st = c.status(l).await.expect("status");
    assert!(st["snapshot_index"].as_u64().unwrap_or(0) > 0, "snapshots were taken: {st}");
    for (key, v) in &acked {
        let (code, body) = c.read(l, key).await;
        assert_eq!((code, &body), (200, &json!({"value": v})), "acknowledged write {key}={v} lost");
    }
}

/// BUG no-fsync: the WAL stays in process memory, so a kill -9 of every node right after the
/// writes loses acknowledged ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bug_no_fsync_loses_acknowledged_writes_when_every_node_is_killed() {
    let mut c = Cluster::start(5, 3, &["--bug", "no-fsync"]);
    let l = c.leader(ELECTION_WAIT).await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // let the hard state reach the file
    for i in 0..20 {
        assert_eq!(c.write(l, &format!("k{i}"), i).await.0, 200);
    }
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    let l = c.leader(ELECTION_WAIT).await;
    let mut lost = 0;
    for i in 0..20 {
        let (code, body) = c.read(l, &format!("k{i}")).await;
        assert_eq!(code, 200);
        if body != json!({"value": i}) {
            lost += 1;
        }
    }
    assert!(lost > 0, "expected the no-fsync bug to lose acknowledged writes");
}

// ------------------------------------------------------------------ API robustness

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_with_a_reason_and_the_node_keeps_serving() {
    let c = Cluster::start(3, 1, &[]);
    c.leader(ELECTION_WAIT).await;
    let long_key = "x".repeat(257);
    let cases: Vec<(&str, String, &str)> = vec![
        ("/kv/read", "not json".into(), "expected"),
        ("/kv/read", "{}".into(), "missing field `key`"),
        ("/kv/read", r#"{"key": 5}"#.into(), "invalid type"),
        ("/kv/read", r#"{"key": ""}"#.into(), "non-empty"),
        ("/kv/read", format!(r#"{{"key": "{long_key}"}}"#), "at most 256"),
        ("/kv/write", r#"{"key": "a"}"#.into(), "missing field `value`"),
        ("/kv/write", r#"{"key": "a", "value": 1.5}"#.into(), "invalid type"),
        ("/kv/write", r#"{"key": "a", "value": 99999999999999999999}"#.into(), "i64"),
        ("/kv/cas", r#"{"key": "a", "from": 1}"#.into(), "missing field `to`"),
        ("/kv/cas", r#"{"key": "a", "to": 1}"#.into(), "missing field `from`"),
        ("/kv/cas", "[1,2,3]".into(), "invalid type"),
        ("/kv/write", "".into(), "EOF"),
    ];
    for (path, body, reason) in &cases {
        let (code, v) = c.post_raw(0, path, body).await;
        assert_eq!(code, 400, "{path} {body}: {v}");
        assert_eq!(v["error"], "bad-request");
        assert_eq!(v["definite"], true);
        let msg = v["message"].as_str().unwrap_or("");
        assert!(msg.contains(reason), "{path} {body}: message {msg:?} should mention {reason:?}");
    }
    assert_eq!(c.post_raw(0, "/no/such", "{}").await.0, 404);
    assert_eq!(c.write(0, "a", 1).await, (200, json!({})));
    assert_eq!(c.post_raw(0, "/kv/cas", r#"{"key": "a", "from": 2, "to": 3}"#).await.0, 409);
    assert_eq!(c.post_raw(0, "/kv/cas", r#"{"key": "a", "from": 1, "to": 3}"#).await, (200, json!({})));
    assert_eq!(c.read(0, "a").await, (200, json!({"value": 3})));
    assert_eq!(c.read(0, "never").await, (200, json!({"value": null})));
    // A cas from null swaps only a key that was never written.
    assert_eq!(c.post_raw(0, "/kv/cas", r#"{"key": "a", "from": null, "to": 4}"#).await.0, 409);
    assert_eq!(c.post_raw(0, "/kv/cas", r#"{"key": "b", "from": null, "to": 4}"#).await, (200, json!({})));
    assert_eq!(c.read(0, "b").await, (200, json!({"value": 4})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_the_token_and_the_clock_can_be_skewed() {
    let c = Cluster::start(4, 1, &[]);
    c.leader(ELECTION_WAIT).await;
    let base = format!("http://{}", c.addrs[0]);
    let r = c.http.get(format!("{base}/admin/status")).send().await.expect("status");
    assert_eq!(r.status().as_u16(), 401);
    let r = c.http.get(format!("{base}/admin/status")).bearer_auth("wrong").send().await.expect("status");
    assert_eq!(r.status().as_u16(), 401);
    let r = c.http.post(format!("{base}/admin/clock")).json(&json!({"offset_ms": 5})).send().await.expect("clock");
    assert_eq!(r.status().as_u16(), 401);

    let st = c.status(0).await.expect("status");
    assert_eq!(
        (st["id"].as_str(), st["role"].as_str(), st["state"].as_str()),
        (Some("n1"), Some("raft"), Some("leader"))
    );
    let before = st["clock"]["now_ms"].as_i64().expect("now_ms");
    let r = c
        .http
        .post(format!("{base}/admin/clock"))
        .bearer_auth(TOKEN)
        .json(&json!({"offset_ms": -60000, "drift_ppm": 100.0}))
        .send()
        .await
        .expect("clock");
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!((v["offset_ms"].as_i64(), v["drift_ppm"].as_f64()), (Some(-60000), Some(100.0)));
    assert!(v["now_ms"].as_i64().expect("now") < before - 50_000, "the clock moved back a minute: {v}");
    let r = c
        .http
        .post(format!("{base}/admin/clock"))
        .bearer_auth(TOKEN)
        .json(&json!({"offset_ms": "x"}))
        .send()
        .await
        .expect("clock");
    assert_eq!(r.status().as_u16(), 400);
    let r = c
        .http
        .post(format!("{base}/admin/clock"))
        .bearer_auth(TOKEN)
        .json(&json!({"reset": true}))
        .send()
        .await
        .expect("clock");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!((v["offset_ms"].as_i64(), v["drift_ppm"].as_f64()), (Some(0), Some(0.0)));
}
