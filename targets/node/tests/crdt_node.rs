//! The `crdt` role as real processes on loopback (127.33.6x.i): replicas converge by gossip,
//! acknowledged updates survive kill -9, the `bad-merge` bug overcounts, and bad input gets
//! the documented errors. Each test uses its own address block so tests run in parallel.

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token";
const PORT: u16 = 18080;

struct Crdt {
    addrs: Vec<String>,
    peers: String,
    extra: Vec<String>,
    children: Vec<Option<Child>>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Crdt {
    fn start(net: u8, n: usize, extra: &[&str]) -> Crdt {
        let addrs: Vec<String> = (1..=n).map(|i| format!("127.33.{net}.{i}:{PORT}")).collect();
        let peers = addrs.iter().enumerate().map(|(i, a)| format!("n{}={a}", i + 1)).collect::<Vec<_>>().join(",");
        let mut c = Crdt {
            addrs,
            peers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            children: (0..n).map(|_| None).collect(),
            dir: tempfile::tempdir().unwrap(),
            // No pooling: a pooled connection to a killed node would fail the next request.
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(0).build().unwrap(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    fn command(&self, i: usize) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline-node"));
        cmd.args([
            "--role",
            "crdt",
            "--id",
            &format!("n{}", i + 1),
            "--listen",
            &self.addrs[i],
            "--peers",
            &self.peers,
        ])
        .arg("--data-dir")
        .arg(self.dir.path().join(format!("n{}", i + 1)))
        .args(["--admin-token", TOKEN])
        .args(&self.extra);
        cmd
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{}.log", i + 1)))
            .unwrap();
        self.children[i] = Some(self.command(i).stdout(Stdio::null()).stderr(log).spawn().unwrap());
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// POST with retries while the node is not yet listening (bounded).
    async fn post(&self, i: usize, path: &str, body: Value) -> (u16, Value) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match self.http.post(format!("http://{}{path}", self.addrs[i])).json(&body).send().await {
                Ok(r) => {
                    let code = r.status().as_u16();
                    return (code, r.json().await.unwrap_or(Value::Null));
                }
                Err(e) if e.is_connect() && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("POST {path} to n{}: {e}", i + 1),
            }
        }
    }

    async fn ok(&self, i: usize, path: &str, body: Value) -> Value {
        let (code, v) = self.post(i, path, body).await;
        assert_eq!(code, 200, "{path} on n{}: {v}", i + 1);
        v
    }

    /// Waits (bounded) until every node's answer to `path` equals `want`.
    async fn converge(&self, path: &str, key: &str, want: &Value, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let mut all = true;
            let mut seen = Vec::new();
            for i in 0..self.addrs.len() {
                let v = self.ok(i, path, json!({ "key": key })).await;
                all &= &v == want;
                seen.push(v);
            }
            if all {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "no convergence on {path} {key} within {timeout:?}: {seen:?}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Crdt {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
    }
}

#[tokio::test]
async fn replicas_converge_on_sets_counters_and_registers() {
    let c = Crdt::start(60, 3, &[]);
    for (i, e) in [(0, 1), (1, 2), (2, 3), (0, 4)] {
        c.ok(i, "/set/add", json!({"key": "s", "element": e})).await;
    }
    for (i, d) in [(0, 5), (1, -2), (2, 10)] {
        c.ok(i, "/counter/add", json!({"key": "c", "delta": d})).await;
    }
    // Each node answers at once from its own replica: its own add is there immediately.
    assert!(c.ok(2, "/set/read", json!({"key": "s"})).await["elements"].as_array().unwrap().contains(&json!(3)));
    let t = c.converge("/set/read", "s", &json!({"elements": [1, 2, 3, 4]}), Duration::from_secs(3)).await;
    c.converge("/counter/read", "c", &json!({"value": 13}), Duration::from_secs(3)).await;
    eprintln!("set converged {t:?} after the last add");
    c.ok(0, "/kv/write", json!({"key": "r", "value": 1})).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.ok(1, "/kv/write", json!({"key": "r", "value": 2})).await;
    c.converge("/kv/read", "r", &json!({"value": 2}), Duration::from_secs(3)).await;
    // Remove (OR-Set): observed adds are removed everywhere.
    c.ok(1, "/set/remove", json!({"key": "s", "element": 2})).await;
    c.converge("/set/read", "s", &json!({"elements": [1, 3, 4]}), Duration::from_secs(3)).await;
    // A key nobody wrote.
    assert_eq!(c.ok(0, "/counter/read", json!({"key": "none"})).await, json!({"value": 0}));
    assert_eq!(c.ok(0, "/set/read", json!({"key": "none"})).await, json!({"elements": []}));
    assert_eq!(c.ok(0, "/kv/read", json!({"key": "none"})).await, json!({"value": null}));
}

#[tokio::test]
async fn an_acknowledged_add_survives_kill_9_and_a_restarted_node_catches_up() {
    let mut c = Crdt::start(61, 3, &[]);
    c.kill9(2);
    c.ok(0, "/set/add", json!({"key": "s", "element": 7})).await;
    c.ok(1, "/counter/add", json!({"key": "c", "delta": 3})).await;
    // n1 alone: its ack means it was persisted before the answer.
    c.ok(0, "/set/add", json!({"key": "s", "element": 8})).await;
    c.kill9(0);
    c.kill9(1);
    c.spawn(0);
    let v = c.ok(0, "/set/read", json!({"key": "s"})).await;
    assert!(v["elements"].as_array().unwrap().contains(&json!(8)), "n1 forgot its acknowledged add: {v}");
    c.spawn(1);
    c.spawn(2);
    c.converge("/set/read", "s", &json!({"elements": [7, 8]}), Duration::from_secs(5)).await;
    c.converge("/counter/read", "c", &json!({"value": 3}), Duration::from_secs(5)).await;
}

#[tokio::test]
async fn bad_merge_overcounts_as_gossip_echoes_states_back() {
    let c = Crdt::start(62, 2, &["--bug", "bad-merge"]);
    c.ok(0, "/counter/add", json!({"key": "c", "delta": 1})).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let a = c.ok(0, "/counter/read", json!({"key": "c"})).await["value"].as_i64().unwrap();
    let b = c.ok(1, "/counter/read", json!({"key": "c"})).await["value"].as_i64().unwrap();
    assert!(a > 1 && b > 1, "one add of 1 reads {a} on n1 and {b} on n2");
    let st: Value = c
        .http
        .get(format!("http://{}/admin/status", c.addrs[0]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["bugs"], json!(["bad-merge"]));
}

#[tokio::test]
async fn bad_input_gets_the_documented_errors() {
    let c = Crdt::start(63, 1, &[]);
    let (code, v) = c.post(0, "/set/add", json!({"key": "s", "element": "x"})).await;
    assert_eq!((code, v["error"].as_str(), v["definite"].as_bool()), (400, Some("bad-request"), Some(true)), "{v}");
    assert!(v["message"].as_str().unwrap().contains("element"), "{v}");
    let (code, v) = c.post(0, "/counter/add", json!({"key": "", "delta": 1})).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = c.post(0, "/counter/add", json!({"key": "k", "delta": 1, "extra": 2})).await;
    assert_eq!(code, 400, "unknown fields are refused: {v}");
    let (code, v) = c.post(0, "/kv/cas", json!({"key": "k", "from": 1, "to": 2})).await;
    assert_eq!((code, v["error"].as_str(), v["definite"].as_bool()), (501, Some("unsupported"), Some(true)), "{v}");
    let (code, v) = c.post(0, "/nope", json!({})).await;
    assert_eq!((code, v["error"].as_str()), (404, Some("not-found")));
    let (code, v) = c
        .post(0, "/peer/crdt", json!({"from": "stranger", "state": {"sets": {}, "counters": {}, "registers": {}}}))
        .await;
    assert_eq!(code, 400, "{v}");
    let r = c.http.get(format!("http://{}/admin/status", c.addrs[0])).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let st: Value = c
        .http
        .get(format!("http://{}/admin/status", c.addrs[0]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (st["role"].as_str(), st["state"].as_str(), &st["leader"]),
        (Some("crdt"), Some("replica"), &Value::Null),
        "{st}"
    );
    // LWW timestamps come from the node clock: the admin clock API works here too.
    let v: Value = c
        .http
        .post(format!("http://{}/admin/clock", c.addrs[0]))
        .bearer_auth(TOKEN)
        .json(&json!({"offset_ms": -1000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["offset_ms"], -1000);
}

#[test]
fn a_bug_of_another_role_is_refused() {
    let c = Crdt {
        addrs: vec![format!("127.33.64.1:{PORT}")],
        peers: format!("n1=127.33.64.1:{PORT}"),
        extra: vec!["--bug".into(), "no-fsync".into()],
        children: vec![None],
        dir: tempfile::tempdir().unwrap(),
        http: reqwest::Client::new(),
    };
    let out = c.command(0).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-fsync") && err.contains("Raft"), "{err}");
}
