//! A cluster of real `faultline-node` processes of a leaderless role (`paxos`, `quorum`) on
//! loopback addresses 127.34.NET.i, for the multi-process tests of those roles. Each test uses
//! its own NET so tests run in parallel. Children are killed when the cluster is dropped.

#![allow(dead_code)] // each test binary uses a different part of this helper

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const TOKEN: &str = "test-token";
pub const PORT: u16 = 18180;

pub struct Cluster {
    pub addrs: Vec<String>,
    children: Vec<Option<Child>>,
    role: String,
    peers: String,
    extra: Vec<String>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Cluster {
    pub fn start(role: &str, net: u8, n: usize, extra: &[&str]) -> Cluster {
        let addrs: Vec<String> = (1..=n).map(|i| format!("127.34.{net}.{i}:{PORT}")).collect();
        let peers = addrs.iter().enumerate().map(|(i, a)| format!("n{}={a}", i + 1)).collect::<Vec<_>>().join(",");
        let mut c = Cluster {
            addrs,
            children: (0..n).map(|_| None).collect(),
            role: role.to_string(),
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

    pub fn command(&self, i: usize) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline-node"));
        cmd.args([
            "--role",
            &self.role,
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

    pub fn spawn(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "n{} already running", i + 1);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{}.log", i + 1)))
            .expect("log file");
        let child = self.command(i).stdout(Stdio::null()).stderr(log).spawn().expect("spawn faultline-node");
        self.children[i] = Some(child);
    }

    /// kill -9, then reap.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().expect("kill");
            c.wait().expect("wait");
        }
    }

    pub async fn status(&self, i: usize) -> Option<Value> {
        let r = self.http.get(format!("http://{}/admin/status", self.addrs[i])).bearer_auth(TOKEN).send().await.ok()?;
        r.json().await.ok()
    }

    /// Waits (bounded) until every running node answers its status.
    pub async fn wait_up(&mut self) {
        for _ in 0..100 {
            let mut all = true;
            for i in 0..self.addrs.len() {
                if self.children[i].is_some() && self.status(i).await.is_none() {
                    all = false;
                }
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nodes not up within 5 s; logs in {}", self.dir.path().display());
    }

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
        (code, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn write(&self, i: usize, key: &str, value: i64) -> (u16, Value) {
        self.post_raw(i, "/kv/write", &json!({"key": key, "value": value}).to_string()).await
    }

    pub async fn read(&self, i: usize, key: &str) -> (u16, Value) {
        self.post_raw(i, "/kv/read", &json!({"key": key}).to_string()).await
    }

    pub async fn cas(&self, i: usize, key: &str, from: i64, to: i64) -> (u16, Value) {
        self.post_raw(i, "/kv/cas", &json!({"key": key, "from": from, "to": to}).to_string()).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            eprintln!("test failed: node logs kept in {}", dir.keep().display());
        }
    }
}
