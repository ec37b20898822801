//! The `router` role as real processes on loopback (127.36.8x.i): a router in front of two
//! single-node Raft groups. Requests go through to the owning group; a directory move carries
//! the value and the next requests follow it; hash sharding refuses moves; bad input gets 400
//! and the router serves on; with `single-directory`, killing the directory node makes keys the
//! router has not cached unroutable while cached ones keep working.

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token";
const PORT: u16 = 18080;

struct Cluster {
    addrs: Vec<String>,
    children: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Cluster {
    /// n1 the router, n2 and n3 single-node Raft groups, n4 (with `single-directory`) the
    /// directory node.
    fn start(net: u8, router_args: &[&str], single_directory: bool) -> Cluster {
        let n = if single_directory { 4 } else { 3 };
        let addrs: Vec<String> = (1..=n).map(|i| format!("127.36.{net}.{i}:{PORT}")).collect();
        let peer = |i: usize| format!("n{}={}", i + 1, addrs[i]);
        let all = (0..n).map(peer).collect::<Vec<_>>().join(",");
        let dir = tempfile::tempdir().unwrap();
        let mut children = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = format!("n{}", i + 1);
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline-node"));
            cmd.args(["--id", &id, "--listen", addr, "--admin-token", TOKEN])
                .arg("--data-dir")
                .arg(dir.path().join(&id));
            match i {
                0 => {
                    cmd.args(["--role", "router", "--peers", &all, "--shard-group", "n2", "--shard-group", "n3"])
                        .args(router_args);
                    if single_directory {
                        cmd.args(["--bug", "single-directory", "--directory-node", "n4"]);
                    }
                }
                3 => {
                    cmd.args(["--role", "directory", "--peers", &peer(i)]);
                }
                _ => {
                    cmd.args(["--role", "raft", "--peers", &peer(i)]);
                }
            }
            let log = std::fs::File::create(dir.path().join(format!("{id}.log"))).unwrap();
            children.push(Some(cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap()));
        }
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(25)).pool_max_idle_per_host(0).build().unwrap();
        Cluster { addrs, children, _dir: dir, http }
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// POST to node `i` (retried while it is not listening yet, bounded).
    async fn post(&self, i: usize, path: &str, body: Value) -> (u16, Value) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let req = self.http.post(format!("http://{}{path}", self.addrs[i])).bearer_auth(TOKEN).json(&body);
            match req.send().await {
                Ok(r) => {
                    let code = r.status().as_u16();
                    return (code, r.json().await.unwrap_or(Value::Null));
                }
                Err(e) if e.is_connect() && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("POST {path}: {e}"),
            }
        }
    }

    /// A client call through the router, retried while the groups elect (503), bounded.
    async fn kv(&self, call: &str, body: Value) -> (u16, Value) {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, v) = self.post(0, &format!("/kv/{call}"), body.clone()).await;
            if code != 503 || Instant::now() > until {
                return (code, v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn shards(&self) -> Value {
        let r =
            self.http.get(format!("http://{}/admin/shards", self.addrs[0])).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_move_carries_the_value_and_requests_follow_it() {
    let c = Cluster::start(81, &["--sharding", "directory"], false);
    assert_eq!(c.kv("write", json!({"key": "a", "value": 7})).await.0, 200);
    assert_eq!(c.kv("cas", json!({"key": "a", "from": 7, "to": 8})).await.0, 200);
    let (code, v) = c.kv("cas", json!({"key": "a", "from": 7, "to": 9})).await;
    assert_eq!((code, v["error"].as_str()), (409, Some("cas-mismatch")), "{v}");
    let before = c.shards().await;
    let from = before["shards"].as_array().unwrap().iter().position(|s| s["keys"] == 1).expect("a is on one shard");
    // "a" is the only recent key: any pick moves it.
    let (code, plan) = c.post(0, "/admin/rebalance", json!({"pick": 5})).await;
    assert_eq!(code, 200, "{plan}");
    assert_eq!(plan["move"], json!({"what": "key", "key": "a", "from": from, "to": 1 - from}));
    let (code, done) = c.post(0, "/admin/rebalance/wait", json!({"id": plan["id"]})).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["copied"], json!(["a"]));
    assert_eq!(c.kv("read", json!({"key": "a"})).await.1["value"], 8, "the value moved with the key");
    assert_eq!(c.kv("write", json!({"key": "a", "value": 3})).await.0, 200);
    let after = c.shards().await;
    assert_eq!(after["shards"][1 - from]["keys"], 1, "{after}");
    assert_eq!(after["directory_version"], 1);
    // The new owner holds the value; the old one still has the copy it had (never read again).
    let (_, v) = c.post(1 + (1 - from), "/kv/read", json!({"key": "a"})).await;
    assert_eq!(v["value"], 3, "{v}");
    let (_, v) = c.post(1 + from, "/kv/read", json!({"key": "a"})).await;
    assert_eq!(v["value"], 8, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_hash_sharding_has_nothing_to_move() {
    let c = Cluster::start(82, &["--sharding", "hash"], false);
    for (path, body) in [
        ("/kv/write", json!({"key": "__router/fence", "value": 1})),
        ("/kv/write", json!({"key": "a"})),
        ("/kv/read", json!({"key": ""})),
        ("/admin/rebalance", json!({"pick": "x"})),
    ] {
        let (code, v) = c.post(0, path, body.clone()).await;
        assert_eq!((code, v["error"].as_str()), (400, Some("bad-request")), "{path} {body}: {v}");
    }
    let r = c.http.get(format!("http://{}/admin/shards", c.addrs[0])).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (code, v) = c.post(0, "/admin/rebalance", json!({"pick": 1})).await;
    assert_eq!(code, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("fixed function of the key"), "{v}");
    // Still serving.
    assert_eq!(c.kv("write", json!({"key": "b", "value": 1})).await.0, 200);
    assert_eq!(c.kv("read", json!({"key": "b"})).await.1["value"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_directory_node_down_leaves_uncached_keys_unroutable() {
    let mut c = Cluster::start(83, &["--sharding", "directory"], true);
    assert_eq!(c.kv("write", json!({"key": "cached", "value": 1})).await.0, 200);
    c.kill9(3);
    // The router read "cached"'s entry before: it still routes it.
    assert_eq!(c.kv("write", json!({"key": "cached", "value": 2})).await.0, 200);
    // A key it never saw needs the directory, which is gone.
    let (code, v) = c.kv("write", json!({"key": "fresh", "value": 1})).await;
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["definite"], true);
    assert!(v["message"].as_str().unwrap().contains("directory unavailable"), "{v}");
}
