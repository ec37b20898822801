//! A cluster of real `faultline-node` processes on loopback addresses (127.33.NET.i), for the
//! multi-process tests. Each test uses its own NET so tests can run in parallel. Children are
//! killed when the cluster is dropped.

#![allow(dead_code)] // each test binary uses a different part of this helper

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token";
pub const PORT: u16 = 18080;

pub struct Cluster {
    pub addrs: Vec<String>,
    children: Vec<Option<Child>>,
    peers: String,
    extra: Vec<String>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Cluster {
    pub fn start(net: u8, n: usize, extra: &[&str]) -> Cluster {
        let addrs: Vec<String> = (1..=n).map(|i| format!("127.33.{net}.{i}:{PORT}")).collect();
        let peers = addrs.iter().enumerate().map(|(i, a)| format!("n{}={a}", i + 1)).collect::<Vec<_>>().join(",");
        let mut c = Cluster {
            addrs,
            children: (0..n).map(|_| None).collect(),
            peers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir: tempfile::tempdir().expect("tempdir"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client"),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}.log", i + 1))
    }

    pub fn spawn(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "n{} already running", i + 1);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(i)).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_faultline-node"))
            .args([
                "--role",
                "raft",
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
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn faultline-node");
        self.children[i] = Some(child);
    }

    /// kill -9, then reap.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().expect("kill");
            c.wait().expect("wait");
        }
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        match self.children[i].as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    pub async fn status(&self, i: usize) -> Option<Value> {
        let r = self.http.get(format!("http://{}/admin/status", self.addrs[i])).bearer_auth(TOKEN).send().await.ok()?;
        r.json().await.ok()
    }

    /// Waits until a majority of the running nodes agree on one leader; returns its index.
    pub async fn leader(&self, timeout: Duration) -> usize {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            let mut votes = std::collections::BTreeMap::new();
            for i in 0..self.addrs.len() {
                if let Some(s) = self.status(i).await {
                    if let Some(l) = s["leader"].as_str() {
                        *votes.entry(l.to_string()).or_insert(0) += 1;
                    }
                }
            }
            if let Some((l, n)) = votes.into_iter().max_by_key(|(_, n)| *n) {
                if n > self.addrs.len() / 2 {
                    let idx: usize = l.trim_start_matches('n').parse().expect("node id");
                    if let Some(s) = self.status(idx - 1).await {
                        if s["state"] == "leader" {
                            return idx - 1;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader within {timeout:?}; logs in {}", self.dir.path().display());
    }

    /// POSTs `body` (raw) to node i; returns the status code and the JSON answer.
    pub async fn post_raw(&self, i: usize, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("http://{}{path}", self.addrs[i]))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} to n{}: {e}", i + 1));
        let code = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (code, v)
    }

    pub async fn write(&self, i: usize, key: &str, value: i64) -> (u16, Value) {
        self.post_raw(i, "/kv/write", &json!({"key": key, "value": value}).to_string()).await
    }

    pub async fn read(&self, i: usize, key: &str) -> (u16, Value) {
        self.post_raw(i, "/kv/read", &json!({"key": key}).to_string()).await
    }

    /// Retries a write on any running node until it is acknowledged (or panics after `timeout`).
    pub async fn write_eventually(&mut self, key: &str, value: i64, timeout: Duration) {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            for i in 0..self.addrs.len() {
                if !self.is_running(i) {
                    continue;
                }
                if let Ok(r) = self
                    .http
                    .post(format!("http://{}/kv/write", self.addrs[i]))
                    .json(&json!({"key": key, "value": value}))
                    .send()
                    .await
                {
                    if r.status().as_u16() == 200 {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("write {key}={value} not acknowledged within {timeout:?}; logs in {}", self.dir.path().display());
    }

    /// Keeps the logs of a failed test: call before asserting, prints where they are.
    pub fn keep_logs(self) -> PathBuf {
        let mut s = self;
        for i in 0..s.children.len() {
            s.kill9(i);
        }
        let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().expect("tempdir"));
        dir.keep()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
