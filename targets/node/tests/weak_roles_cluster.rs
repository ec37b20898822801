//! The `available` and `multi-primary` roles as real processes on 127.34.4x.i: acknowledged
//! writes survive kill -9 of every node; a restarted node catches up by anti-entropy, and with
//! `no-anti-entropy` never gets what its push missed; multi-primary keeps concurrent adds as
//! siblings in vclock mode and one of them in LWW mode, and LWW loses an add made on a node
//! whose clock is behind; bad input gets the documented errors and the node keeps serving.

mod roles_support;

use roles_support::{Cluster, TOKEN};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn ok(c: &Cluster, i: usize, path: &str, body: Value) -> Value {
    let (code, v) = c.post_raw(i, path, &body.to_string()).await;
    assert_eq!(code, 200, "{path} {body} on n{}: {v}", i + 1);
    v
}

async fn elements(c: &Cluster, i: usize, key: &str) -> Value {
    ok(c, i, "/set/read", json!({"key": key})).await["elements"].clone()
}

/// Waits (bounded) until `f` holds for node `i`'s answer to `path`.
async fn wait_for(c: &Cluster, i: usize, path: &str, key: &str, want: &Value, within: Duration) {
    let started = Instant::now();
    loop {
        let v = ok(c, i, path, json!({"key": key})).await;
        if v == *want {
            return;
        }
        assert!(started.elapsed() < within, "n{} {path} {key}: {v}, want {want} within {within:?}", i + 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn available_writes_survive_kill9_of_every_node_and_a_restarted_node_catches_up() {
    let mut c = Cluster::start("available", 41, 3, &[]);
    c.wait_up().await;
    ok(&c, 0, "/kv/write", json!({"key": "k", "value": 1})).await;
    for (i, e) in [(0, 1), (1, 2), (2, 3)] {
        ok(&c, i, "/set/add", json!({"key": "s", "element": e})).await;
    }
    // A node answers its own write at once.
    assert_eq!(ok(&c, 0, "/kv/read", json!({"key": "k"})).await, json!({"value": 1}));
    // n2 misses writes while down, then catches up.
    c.kill9(1);
    ok(&c, 0, "/kv/write", json!({"key": "k", "value": 2})).await;
    ok(&c, 2, "/set/add", json!({"key": "s", "element": 4})).await;
    c.spawn(1);
    c.wait_up().await;
    wait_for(&c, 1, "/kv/read", "k", &json!({"value": 2}), Duration::from_secs(5)).await;
    wait_for(&c, 1, "/set/read", "s", &json!({"elements": [1, 2, 3, 4]}), Duration::from_secs(5)).await;
    // Every node killed at once: what each acknowledged is on its disk.
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    c.wait_up().await;
    for i in 0..3 {
        assert_eq!(elements(&c, i, "s").await, json!([1, 2, 3, 4]), "n{}", i + 1);
        assert_eq!(ok(&c, i, "/kv/read", json!({"key": "k"})).await, json!({"value": 2}), "n{}", i + 1);
    }
    let st = c.status(0).await.expect("status");
    assert_eq!(
        (st["role"].as_str(), st["state"].as_str(), st["leader"].is_null()),
        (Some("available"), Some("replica"), true),
        "{st}"
    );
}

#[tokio::test]
async fn without_anti_entropy_a_missed_push_is_never_repaired() {
    let mut c = Cluster::start("available", 42, 2, &["--bug", "no-anti-entropy"]);
    c.wait_up().await;
    c.kill9(1);
    ok(&c, 0, "/set/add", json!({"key": "s", "element": 1})).await;
    c.spawn(1);
    c.wait_up().await;
    // Pushes work again: a new add reaches n2 ...
    ok(&c, 0, "/set/add", json!({"key": "s", "element": 2})).await;
    wait_for(&c, 1, "/set/read", "s", &json!({"elements": [2]}), Duration::from_secs(5)).await;
    // ... but the add whose push n2 missed never does (ten anti-entropy intervals later).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(elements(&c, 1, "s").await, json!([2]));
    assert_eq!(elements(&c, 0, "s").await, json!([1, 2]));
    let st = c.status(0).await.expect("status");
    assert_eq!((st["bugs"].clone(), st["anti_entropy_ms"].clone()), (json!(["no-anti-entropy"]), Value::Null), "{st}");
}

/// Waits (bounded) until node `i`'s status reports `n` as its largest sibling count.
async fn siblings_max(c: &Cluster, i: usize, n: u64) -> Value {
    let started = Instant::now();
    loop {
        let st = c.status(i).await.expect("status");
        if st["siblings_max"].as_u64() == Some(n) {
            return st;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "n{}: siblings_max never {n}: {st}", i + 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// n1 adds 1 while n2 is down, then n2 adds 2 while n1 is down: two concurrent versions.
async fn concurrent_adds(c: &mut Cluster) {
    c.wait_up().await;
    c.kill9(1);
    ok(c, 0, "/set/add", json!({"key": "s", "element": 1})).await;
    c.kill9(0);
    c.spawn(1);
    c.wait_up().await;
    ok(c, 1, "/set/add", json!({"key": "s", "element": 2})).await;
    c.spawn(0);
    c.wait_up().await;
}

#[tokio::test]
async fn multi_primary_vclock_keeps_concurrent_adds_as_siblings_and_lww_keeps_one() {
    let mut c = Cluster::start("multi-primary", 43, 2, &["--resolve", "vclock"]);
    concurrent_adds(&mut c).await;
    for i in 0..2 {
        wait_for(&c, i, "/set/read", "s", &json!({"elements": [1, 2]}), Duration::from_secs(5)).await;
    }
    // The status is refreshed once per anti-entropy interval.
    let st = siblings_max(&c, 0, 2).await;
    assert_eq!(st["resolve"].as_str(), Some("vclock"), "{st}");
    // A write that saw both siblings replaces them.
    ok(&c, 0, "/set/add", json!({"key": "s", "element": 3})).await;
    wait_for(&c, 1, "/set/read", "s", &json!({"elements": [1, 2, 3]}), Duration::from_secs(5)).await;
    for i in 0..2 {
        siblings_max(&c, i, 1).await;
    }

    let mut c = Cluster::start("multi-primary", 44, 2, &["--resolve", "lww"]);
    concurrent_adds(&mut c).await;
    // n2's version has the later stamp: both nodes keep it, and the add of 1 is gone.
    for i in 0..2 {
        wait_for(&c, i, "/set/read", "s", &json!({"elements": [2]}), Duration::from_secs(5)).await;
    }
}

/// Riak's example on real nodes: n2's clock is 10 s behind; it reads n1's {1}, adds 2, and
/// stamps its version before n1's: in LWW mode the acknowledged 2 is gone even on n2.
#[tokio::test]
async fn lww_loses_an_add_made_on_a_node_whose_clock_is_behind_and_vclock_keeps_it() {
    for (net, mode, want) in [(45u8, "lww", json!([1])), (46, "vclock", json!([1, 2]))] {
        let mut c = Cluster::start("multi-primary", net, 2, &["--resolve", mode]);
        c.wait_up().await;
        let r = c
            .http
            .post(format!("http://{}/admin/clock", c.addrs[1]))
            .bearer_auth(TOKEN)
            .json(&json!({"offset_ms": -10_000}))
            .send()
            .await
            .expect("clock");
        assert_eq!(r.status().as_u16(), 200);
        ok(&c, 0, "/set/add", json!({"key": "s", "element": 1})).await;
        wait_for(&c, 1, "/set/read", "s", &json!({"elements": [1]}), Duration::from_secs(5)).await;
        ok(&c, 1, "/set/add", json!({"key": "s", "element": 2})).await;
        for i in 0..2 {
            wait_for(&c, i, "/set/read", "s", &json!({"elements": want}), Duration::from_secs(5)).await;
        }
    }
}

#[tokio::test]
async fn bad_input_gets_the_documented_errors_and_the_node_keeps_serving() {
    let mut c = Cluster::start("multi-primary", 47, 2, &["--resolve", "vclock"]);
    c.wait_up().await;
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/kv/write", r#"{"key": "k"}"#, 400, "bad-request"),
        ("/kv/write", r#"{"key": "k", "value": 1, "extra": 2}"#, 400, "bad-request"),
        ("/kv/read", r#"{"key": ""}"#, 400, "bad-request"),
        ("/set/add", "not json", 400, "bad-request"),
        ("/kv/cas", r#"{"key": "k", "from": 1, "to": 2}"#, 501, "unsupported"),
        ("/peer/entries", r#"{"from": "n9", "entries": []}"#, 400, "bad-request"),
        ("/peer/entries", r#"{"from": "n2", "entries": [[{"set": "s"}, {"register": []}]]}"#, 400, "bad-request"),
        (
            "/peer/entries",
            r#"{"from": "n2", "entries": [[{"set": "s"}, {"set": [{"stamp": {"ts_ms": 1, "node": "n2", "seq": 1}, "clock": {"n2": 1, "x": 1}, "value": [1]}]}]]}"#,
            400,
            "bad-request",
        ),
        (
            "/peer/entries",
            r#"{"from": "n2", "entries": [[{"set": "s"}, {"set": [{"stamp": {"ts_ms": 1, "node": "n2", "seq": 1}, "value": [1]}]}]]}"#,
            400,
            "bad-request",
        ),
        ("/nope", "{}", 404, "not-found"),
    ];
    for (path, body, code, error) in cases {
        let (got, v) = c.post_raw(0, path, body).await;
        assert_eq!((got, v["error"].as_str()), (*code, Some(*error)), "{path} {body}: {v}");
        assert_eq!(v["definite"], true, "{v}");
    }
    // Still serving, and a valid peer entry is merged.
    let (code, _) = c
        .post_raw(0, "/peer/entries", r#"{"from": "n2", "entries": [[{"set": "s"}, {"set": [{"stamp": {"ts_ms": 1, "node": "n2", "seq": 1}, "clock": {"n2": 1}, "value": [7]}]}]]}"#)
        .await;
    assert_eq!(code, 200);
    wait_for(&c, 0, "/set/read", "s", &json!({"elements": [7]}), Duration::from_secs(2)).await;
    let r = c.http.get(format!("http://{}/admin/status", c.addrs[0])).send().await.expect("status");
    assert_eq!(r.status().as_u16(), 401);

    // A data directory of one mode is refused by the other; a bug of another role is refused.
    c.kill9(0);
    let node = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline-node"))
            .args([
                "--role",
                "multi-primary",
                "--id",
                "n1",
                "--listen",
                &c.addrs[0],
                "--peers",
                &format!("n1={}", c.addrs[0]),
                "--admin-token",
                TOKEN,
            ])
            .arg("--data-dir")
            .arg(c.dir.path().join("n1"))
            .args(extra)
            .output()
            .expect("runs");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = node(&["--resolve", "lww"]);
    assert!(err.contains("holds a vclock replica"), "{err}");
    let err = node(&["--bug", "no-anti-entropy"]);
    assert!(err.contains("applies to --role Available"), "{err}");
}
