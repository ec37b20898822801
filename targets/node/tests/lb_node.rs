//! The `lb` role as real processes on loopback (127.44.x.i): the balancer in front of
//! single-node Raft backends (each its own leader at once; their data is independent, which these
//! API tests do not mind). Answers name their backend, a killed backend is retried around at once,
//! dropped by the health checks and re-admitted after its restart, the stale cache answers reads
//! only when no backend can, and bad input gets the documented errors. Each test uses its own
//! address block so tests run in parallel.

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token";
const PORT: u16 = 18080;

struct Setup {
    /// [balancer, backend 1, backend 2, ...]
    addrs: Vec<String>,
    lb_extra: Vec<String>,
    children: Vec<Option<Child>>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Setup {
    fn start(net: u8, backends: usize, lb_extra: &[&str]) -> Setup {
        let addrs: Vec<String> = (1..=backends + 1).map(|i| format!("127.44.{net}.{i}:{PORT}")).collect();
        let mut s = Setup {
            addrs,
            lb_extra: lb_extra.iter().map(|x| x.to_string()).collect(),
            children: (0..=backends).map(|_| None).collect(),
            dir: tempfile::tempdir().unwrap(),
            // No pooling: a pooled connection to a killed node would fail the next request.
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(0).build().unwrap(),
        };
        for i in 0..=backends {
            s.spawn(i);
        }
        s
    }

    fn command(&self, i: usize) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline-node"));
        let id = if i == 0 { "lb".to_string() } else { format!("b{i}") };
        let role = if i == 0 { "lb" } else { "raft" };
        cmd.args([
            "--role",
            role,
            "--id",
            &id,
            "--listen",
            &self.addrs[i],
            "--peers",
            &format!("{id}={}", self.addrs[i]),
        ])
        .arg("--data-dir")
        .arg(self.dir.path().join(&id))
        .args(["--admin-token", TOKEN]);
        if i == 0 {
            let backends: Vec<String> = (1..self.addrs.len()).map(|b| format!("b{b}={}", self.addrs[b])).collect();
            cmd.arg(format!("--backends={}", backends.join(","))).args(&self.lb_extra);
        }
        cmd
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{i}.log")))
            .unwrap();
        self.children[i] = Some(self.command(i).stdout(Stdio::null()).stderr(log).spawn().unwrap());
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// POST to the balancer, retrying (bounded) while nothing listens yet; (status, header
    /// backend, body).
    async fn post(&self, path: &str, body: &str) -> (u16, Option<String>, Value) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match self
                .http
                .post(format!("http://{}{path}", self.addrs[0]))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
            {
                Ok(r) => {
                    let code = r.status().as_u16();
                    let backend = r.headers().get("x-faultline-backend").map(|v| v.to_str().unwrap().to_string());
                    return (code, backend, r.json().await.unwrap_or(Value::Null));
                }
                Err(e) if e.is_connect() && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("POST {path}: {e}"),
            }
        }
    }

    async fn status(&self) -> Value {
        let r =
            self.http.get(format!("http://{}/admin/status", self.addrs[0])).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }

    /// Waits (bounded) until every backend answers through the balancer and it reports them
    /// all in rotation.
    async fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, _, _) = self.post("/kv/read", r#"{"key": "ready"}"#).await;
            if code == 200 && self.status().await["state"] == "lb" {
                return;
            }
            assert!(Instant::now() < until, "not ready: {:#}", self.status().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until `cond` holds on the balancer's status.
    async fn wait_status(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status().await;
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < until, "{what} never happened: {s:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
    }
}

fn backend<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["lb"]["backends"].as_array().unwrap().iter().find(|b| b["id"] == id).unwrap()
}

#[tokio::test]
async fn answers_name_the_backend_and_bad_input_gets_the_documented_errors() {
    let s = Setup::start(1, 2, &[]);
    s.wait_ready().await;
    // A backend that was not listening yet during the wait may have been retried around.
    let retries0 = s.status().await["lb"]["retries"].as_u64().unwrap();
    // Round robin alternates; the backend is named in the header and in the body.
    let mut seen = Vec::new();
    for v in 0..4 {
        let (code, header, body) = s.post("/kv/write", &json!({"key": "k", "value": v}).to_string()).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(header.as_deref(), body["backend"].as_str());
        seen.push(header.unwrap());
    }
    assert!(seen[0] != seen[1] && seen[0] == seen[2] && seen[1] == seen[3], "{seen:?}");
    // A malformed request is the backend's to refuse: its 400 comes back, named.
    let (code, header, body) = s.post("/kv/read", "not json").await;
    assert_eq!((code, body["error"].as_str()), (400, Some("bad-request")), "{body}");
    assert!(header.is_some() && body["backend"].is_string());
    let (code, _, body) = s.post("/kv/write", r#"{"key": "", "value": 1}"#).await;
    assert_eq!(code, 400, "{body}");
    // Unknown routes, peer routes and the admin API without the token.
    let (code, _, body) = s.post("/peer/msg", "[]").await;
    assert_eq!((code, body["error"].as_str()), (404, Some("not-found")));
    let r = s.http.get(format!("http://{}/admin/status", s.addrs[0])).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The stats count what happened.
    let st = s.status().await;
    assert_eq!((st["role"].as_str(), st["lb"]["strategy"].as_str()), (Some("lb"), Some("round-robin")));
    let picks: u64 = st["lb"]["backends"].as_array().unwrap().iter().map(|b| b["picks"].as_u64().unwrap()).sum();
    assert!(picks >= 6, "{st:#}");
    assert_eq!(st["lb"]["retries"].as_u64(), Some(retries0), "no retry: every backend was up");
    // The balancer is still up after all that.
    assert_eq!(s.post("/kv/read", r#"{"key": "k"}"#).await.0, 200);
}

#[tokio::test]
async fn a_killed_backend_is_retried_around_dropped_and_readmitted_after_restart() {
    let mut s = Setup::start(
        2,
        2,
        // Twenty failed checks (2 s) before a drop: the requests right after the kill meet
        // the dead backend whatever the machine's load.
        &["--health-interval-ms", "100", "--fall", "20", "--rise", "2"],
    );
    s.wait_ready().await;
    // A backend that started after the balancer's first checks was dropped and re-admitted
    // before it was ready: count from here.
    let before = s.status().await;
    let drops0 = backend(&before, "b1")["drops"].as_u64().unwrap();
    let readmits0 = backend(&before, "b1")["readmits"].as_u64().unwrap();
    let events0 = before["lb"]["health_events"].as_array().unwrap().len();
    s.kill9(1);
    // Right after the kill, before any health check noticed: every request still succeeds,
    // the refused connections retried on b2.
    for v in 0..6 {
        let (code, header, body) = s.post("/kv/write", &json!({"key": "k", "value": v}).to_string()).await;
        assert_eq!((code, header.as_deref()), (200, Some("b2")), "{body}");
    }
    let st = s.wait_status("b1 dropped", |st| backend(st, "b1")["healthy"] == false).await;
    assert_eq!(st["state"], "lb-degraded");
    assert_eq!(backend(&st, "b1")["drops"].as_u64(), Some(drops0 + 1));
    assert!(st["lb"]["retries"].as_u64().unwrap() >= 1, "{st:#}");
    assert!(backend(&st, "b1")["connect_failures"].as_u64().unwrap() >= 1, "{st:#}");
    // Dropped: no longer picked, so no more refused connections.
    let refused = backend(&st, "b1")["connect_failures"].clone();
    for v in 0..4 {
        assert_eq!(s.post("/kv/write", &json!({"key": "k", "value": v}).to_string()).await.1.as_deref(), Some("b2"));
    }
    assert_eq!(backend(&s.status().await, "b1")["connect_failures"], refused);
    s.spawn(1);
    let st = s.wait_status("b1 re-admitted", |st| backend(st, "b1")["healthy"] == true).await;
    assert_eq!((st["state"].as_str(), backend(&st, "b1")["readmits"].as_u64()), (Some("lb"), Some(readmits0 + 1)));
    let changes: Vec<&str> = st["lb"]["health_events"].as_array().unwrap()[events0..]
        .iter()
        .map(|e| e["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["dropped", "readmitted"]);
    let mut served = Vec::new();
    for v in 0..4 {
        served.push(s.post("/kv/write", &json!({"key": "k", "value": v}).to_string()).await.1.unwrap());
    }
    assert!(served.iter().any(|b| b == "b1"), "b1 back in rotation: {served:?}");
}

#[tokio::test]
async fn the_stale_cache_answers_reads_only_when_no_backend_can() {
    let mut s = Setup::start(3, 1, &["--stale-cache", "true", "--health-interval-ms", "100"]);
    s.wait_ready().await;
    assert_eq!(s.post("/kv/write", r#"{"key": "k", "value": 1}"#).await.0, 200);
    let (_, _, body) = s.post("/kv/read", r#"{"key": "k"}"#).await;
    assert_eq!((body["value"].as_i64(), body["stale"].as_bool()), (Some(1), None), "{body}");
    // A write after the cached read does not touch the cache.
    assert_eq!(s.post("/kv/write", r#"{"key": "k", "value": 2}"#).await.0, 200);
    s.kill9(1);
    // No backend: the read is answered from the cache, with the old value: not linearizable.
    let (code, header, body) = s.post("/kv/read", r#"{"key": "k"}"#).await;
    assert_eq!((code, header.as_deref()), (200, Some("stale-cache")), "{body}");
    assert_eq!(
        (body["value"].as_i64(), body["stale"].as_bool(), body["backend"].as_str()),
        (Some(1), Some(true), Some("stale-cache"))
    );
    // A key never read has nothing cached; writes are never answered from a cache.
    let (code, _, body) = s.post("/kv/read", r#"{"key": "other"}"#).await;
    assert_eq!(
        (code, body["error"].as_str(), body["definite"].as_bool()),
        (503, Some("unavailable"), Some(true)),
        "{body}"
    );
    let (code, _, body) = s.post("/kv/write", r#"{"key": "k", "value": 3}"#).await;
    assert_eq!((code, body["definite"].as_bool()), (503, Some(true)), "{body}");
    let st = s.status().await;
    assert_eq!(st["lb"]["stale_served"], 1);
    assert!(st["lb"]["no_backend"].as_u64().unwrap() >= 2);

    // Without the cache the same read is 503.
    let mut plain = Setup::start(4, 1, &[]);
    plain.wait_ready().await;
    assert_eq!(plain.post("/kv/write", r#"{"key": "k", "value": 1}"#).await.0, 200);
    assert_eq!(plain.post("/kv/read", r#"{"key": "k"}"#).await.0, 200);
    plain.kill9(1);
    let (code, _, body) = plain.post("/kv/read", r#"{"key": "k"}"#).await;
    assert_eq!((code, body["error"].as_str()), (503, Some("unavailable")), "{body}");
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_faultline-node"))
            .args([
                "--id",
                "lb",
                "--listen",
                "127.44.9.1:18080",
                "--peers",
                "lb=127.44.9.1:18080",
                "--admin-token",
                TOKEN,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--role", "lb"]).contains("--backends"));
    assert!(run(&["--role", "lb", "--backends", "b1=127.0.0.1:1", "--strategy", "random"]).contains("--strategy"));
    assert!(run(&["--role", "lb", "--backends", "b1=127.0.0.1:1,b2=127.0.0.1:2", "--weights", "5"])
        .contains("--weights: 1 weights for 2 backends"));
    assert!(run(&["--role", "lb", "--backends", "b1=127.0.0.1:1", "--strategy", "weighted", "--weights", "0"])
        .contains("weight"));
    assert!(run(&["--role", "lb", "--backends", "b1=127.0.0.1:1", "--bug", "naive-weighted"])
        .contains("--strategy weighted"));
    assert!(run(&["--role", "lb", "--backends", "b1=127.0.0.1:1", "--fall", "0"]).contains("thresholds"));
    assert!(run(&["--role", "raft", "--strategy", "weighted"]).contains("options of --role lb only"));
    assert!(run(&["--role", "raft", "--bug", "naive-weighted"]).contains("applies to --role Lb"));
}
