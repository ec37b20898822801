//! The `router` role: the front of a sharded key/value service. Clients talk only to the router
//! (same `/kv/` API as every role); each key belongs to one shard group — a group of `raft`
//! nodes — by `--sharding range|hash|directory|consistent-hash`
//! (`faultline_protocols::sharding`), and the router forwards the request to that group's
//! leader, following `not-leader` answers (bounded attempts, bounded by the request's
//! deadline). Per-key linearizability is the group's.
//!
//! The directory (the entries a move changed: a range's or a key's owner) is kept in shard group
//! 0's Raft log under `__router/dir/...` keys, read lazily into the router's cache; a key or
//! range without an entry has its default owner. Under the bug `single-directory` it lives
//! instead in the memory of one `--role directory` node ([`serve_directory`]): a single point of
//! failure, and a node whose restart forgets every move.
//!
//! Moves (`POST /admin/rebalance`, the `rebalance` nemesis) keep per-key linearizability under
//! load; there is one router (the assumption that makes the freeze below sufficient):
//! 1. freeze the moving keys (or range): new client requests on them wait (bounded);
//! 2. wait until every request sent before the freeze is past its not-after time (requests carry
//!    [`crate::server::NOT_AFTER_HEADER`]; Raft nodes refuse to propose after it), so none of
//!    them can still enter a Raft log;
//! 3. write a fence key in the source group: every earlier proposal is now committed or dead;
//! 4. copy each key's value with a linearizable read from the source and a write to the
//!    destination (then fence the destination too if a copy's outcome was unknown);
//! 5. write the new owner into the directory (an unknown outcome is resolved the same way:
//!    wait out its not-after, fence, read the entry back);
//! 6. unfreeze.
//!
//! The bug `unsafe-move` skips steps 1–3 (no freeze, no wait, no fence): clients keep writing
//! to the source while the value is copied, and a write acknowledged between the copy's read
//! and the flip is lost.
//!
//! A restarted router waits out the not-after horizon of its previous life and fences each group
//! before its first directory read, for the same reason. Known keys are appended (fsync) to
//! `keys.log` in the data directory, so a range move after a restart still copies every key.

#![allow(clippy::result_large_err)] // handlers bail out with a ready `Response`

use crate::api::{self, bad_request, check_key, error, not_found, parse, BODY_BYTES_MAX};
use crate::clock::NodeClock;
use crate::server::{NOT_AFTER_HEADER, NO_FORWARD_HEADER};
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use faultline_protocols::sharding::{apply_move, plan_move, Move, Overrides, Sharding, Strategy};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Keys under this prefix are the router's own (directory, fence); clients may not use them.
pub const RESERVED_PREFIX: &str = "__router/";
const FENCE_KEY: &str = "__router/fence";
const VERSION_KEY: &str = "__router/dir/version";
/// Slack added to not-after waits: every process reads the same host clock, so this only
/// covers the gap between reading it and acting.
const CLOCK_MARGIN: Duration = Duration::from_millis(100);
/// Recent distinct keys kept for choosing a directory entry to move.
const RECENT_MAX: usize = 16;
/// Moves kept in the admin report.
const MOVES_KEPT: usize = 100;
/// Attempts of one fence or copy step before a move gives up.
const STEP_ATTEMPTS_MAX: usize = 5;
const KEYS_LOG: &str = "keys.log";

/// Where the directory lives.
#[derive(Clone, Debug)]
pub enum DirectoryHome {
    /// Shard group 0's Raft log (replicated).
    Group0,
    /// One `--role directory` node's memory (bug `single-directory`).
    Node(String, SocketAddr),
}

pub struct RouterConfig {
    pub id: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_token: String,
    pub sharding: Sharding,
    /// Each shard group's members.
    pub groups: Vec<Vec<(String, SocketAddr)>>,
    pub directory: DirectoryHome,
    pub request_timeout: Duration,
    pub local_ip: Option<std::net::IpAddr>,
    pub bug_names: Vec<String>,
    /// Bug `unsafe-move`: copy and flip without freezing, waiting or fencing.
    pub unsafe_move: bool,
}

/// A group of nodes answering the `/kv/` API, and which of them led last.
struct Group {
    nodes: Vec<(String, SocketAddr)>,
    hint: AtomicU64,
    /// Set when an earlier proposal's outcome may still be pending: fence before the next read
    /// that must see every earlier write.
    needs_fence: AtomicBool,
}

#[derive(Default)]
struct Inner {
    /// Directory entries the router has read or written.
    overrides: Overrides,
    /// Which entries are known (directory: keys; range: range indexes).
    known_keys: BTreeSet<String>,
    known_ranges: BTreeSet<usize>,
    frozen_keys: BTreeSet<String>,
    frozen_ranges: BTreeSet<usize>,
    /// Every key seen (persisted in keys.log).
    seen: BTreeSet<String>,
    recent: VecDeque<String>,
    requests: Vec<u64>,
    version: u64,
    moves: VecDeque<Value>,
}

struct Router {
    cfg: RouterConfig,
    groups: Vec<Group>,
    dir: Group,
    inner: Mutex<Inner>,
    unfrozen: tokio::sync::Notify,
    moving: Arc<tokio::sync::Mutex<()>>,
    move_ids: AtomicU64,
    version_loaded: AtomicBool,
    move_done: tokio::sync::Notify,
    /// Before this instant requests of the router's previous life may still be proposed.
    horizon: Instant,
    keys_log: Mutex<std::fs::File>,
    http: reqwest::Client,
    clock: NodeClock,
    fence_counter: AtomicU64,
    client_slots: tokio::sync::Semaphore,
}

type Shared = Arc<Router>;

/// What a group answered.
enum Outcome {
    Ok(Value),
    /// The operation certainly did not take effect (or a definite answer such as cas-mismatch):
    /// relayed as is.
    Definite(StatusCode, Value),
    /// It may or may not have taken effect.
    Unknown(String),
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

pub async fn run(cfg: RouterConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let log_path = cfg.data_dir.join(KEYS_LOG);
    let seen: BTreeSet<String> = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let keys_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut b = reqwest::Client::builder()
        .connect_timeout(crate::transport::PEER_CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .no_proxy()
        // No pooling: a pooled connection to a node killed meanwhile would turn a request that
        // was never sent into one whose outcome is unknown.
        .pool_max_idle_per_host(0);
    if let Some(ip) = cfg.local_ip {
        b = b.local_address(ip);
    }
    let http = b.build()?;
    let group =
        |nodes: Vec<(String, SocketAddr)>| Group { nodes, hint: AtomicU64::new(0), needs_fence: AtomicBool::new(true) };
    let groups: Vec<Group> = cfg.groups.iter().cloned().map(group).collect();
    let dir = match &cfg.directory {
        DirectoryHome::Group0 => group(cfg.groups[0].clone()),
        DirectoryHome::Node(id, addr) => group(vec![(id.clone(), *addr)]),
    };
    let inner = Inner { requests: vec![0; groups.len()], seen, ..Default::default() };
    tracing::info!(
        sharding = cfg.sharding.strategy.as_str(),
        groups = ?cfg.groups.iter().map(|g| g.iter().map(|n| n.0.clone()).collect::<Vec<_>>()).collect::<Vec<_>>(),
        directory = ?cfg.directory,
        known_keys = inner.seen.len(),
        "starting router"
    );
    let listen = cfg.listen;
    let r = Arc::new(Router {
        horizon: Instant::now() + cfg.request_timeout + CLOCK_MARGIN,
        cfg,
        groups,
        dir,
        inner: Mutex::new(inner),
        unfrozen: tokio::sync::Notify::new(),
        moving: Arc::new(tokio::sync::Mutex::new(())),
        move_ids: AtomicU64::new(0),
        version_loaded: AtomicBool::new(false),
        move_done: tokio::sync::Notify::new(),
        keys_log: Mutex::new(keys_log),
        http,
        clock: NodeClock::default(),
        fence_counter: AtomicU64::new(0),
        client_slots: tokio::sync::Semaphore::new(crate::server::CLIENT_REQUESTS_MAX),
    });
    let app = axum::Router::new()
        .route("/kv/read", post(kv_read))
        .route("/kv/write", post(kv_write))
        .route("/kv/cas", post(kv_cas))
        .route("/admin/status", get(admin_status))
        .route("/admin/clock", post(admin_clock))
        .route("/admin/shards", get(admin_shards))
        .route("/admin/rebalance", post(admin_rebalance))
        .route("/admin/rebalance/wait", post(admin_rebalance_wait))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(r);
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    tracing::info!(addr = %listen, "serving");
    axum::serve(listener, app).await.context("HTTP server")?;
    Ok(())
}

// ------------------------------------------------------------------------- talking to groups

impl Router {
    /// One request to `group`, to its leader: tries the last leader first, follows `not-leader`
    /// hints, moves on after definite refusals; bounded by `deadline` and by attempts. A write
    /// is never re-sent after an answer that leaves its outcome unknown (it could apply twice).
    async fn call(&self, g: &Group, path: &str, body: &Value, deadline: Instant, read: bool) -> Outcome {
        let n = g.nodes.len();
        let mut ix = g.hint.load(Ordering::Relaxed) as usize % n;
        let mut last = Outcome::Definite(
            StatusCode::SERVICE_UNAVAILABLE,
            err_body("unavailable", true, "no attempt made (deadline)"),
        );
        let mut unknown: Option<String> = None;
        for attempt in 0..(2 * n + 2) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(5) {
                break;
            }
            if attempt > 0 && attempt % n == 0 {
                // A whole round refused: give an election a moment.
                tokio::time::sleep(Duration::from_millis(50).min(left / 2)).await;
            }
            let (id, addr) = &g.nodes[ix];
            let not_after = unix_ms(SystemTime::now() + left);
            let res = self
                .http
                .post(format!("http://{addr}/kv/{path}"))
                .header(NO_FORWARD_HEADER, "1")
                .header(NOT_AFTER_HEADER, not_after.to_string())
                .timeout(left)
                .json(body)
                .send()
                .await;
            let resp = match res {
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    last = Outcome::Definite(
                        StatusCode::SERVICE_UNAVAILABLE,
                        err_body("unavailable", true, &format!("cannot reach {id} at {addr}")),
                    );
                    ix = (ix + 1) % n;
                    continue;
                }
                Err(e) => {
                    if !read {
                        return Outcome::Unknown(format!("{id}: {e}"));
                    }
                    unknown = Some(format!("{id}: {e}"));
                    ix = (ix + 1) % n;
                    continue;
                }
            };
            let status = resp.status();
            let v: Value = match tokio::time::timeout_at(deadline, resp.bytes()).await {
                Ok(Ok(b)) => serde_json::from_slice(&b).unwrap_or(Value::Null),
                _ if read => {
                    unknown = Some(format!("{id}: answer cut off"));
                    continue;
                }
                _ => return Outcome::Unknown(format!("{id}: answer cut off")),
            };
            if status.is_success() {
                g.hint.store(ix as u64, Ordering::Relaxed);
                return Outcome::Ok(v);
            }
            let code = v.get("error").and_then(Value::as_str).unwrap_or("");
            let definite = v.get("definite").and_then(Value::as_bool).unwrap_or(false);
            let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match code {
                "not-leader" => {
                    let leader = v
                        .get("leader")
                        .and_then(Value::as_str)
                        .and_then(|a| g.nodes.iter().position(|(_, x)| x.to_string() == a));
                    ix = leader.unwrap_or((ix + 1) % n);
                    last = Outcome::Definite(
                        StatusCode::SERVICE_UNAVAILABLE,
                        err_body("unavailable", true, &format!("{id}: not the leader")),
                    );
                }
                "cas-mismatch" | "bad-request" => return Outcome::Definite(status, v),
                _ if definite => {
                    last = Outcome::Definite(status, v);
                    ix = (ix + 1) % n;
                }
                _ if read => {
                    unknown = Some(format!("{id}: {code}"));
                    ix = (ix + 1) % n;
                }
                _ => {
                    return Outcome::Unknown(format!(
                        "{id}: {code} {}",
                        v.get("message").and_then(Value::as_str).unwrap_or("")
                    ))
                }
            }
        }
        match (read, unknown) {
            // A read that never got an answer changed nothing either way.
            (true, Some(u)) => Outcome::Definite(
                StatusCode::SERVICE_UNAVAILABLE,
                err_body("unavailable", true, &format!("no answer for the read: {u}")),
            ),
            _ => last,
        }
    }

    /// Writes a fence key in `g` (until one write is acknowledged, bounded): every proposal that
    /// entered the group's log before it is committed or can never commit.
    async fn fence(&self, g: &Group, deadline: Instant) -> Result<(), String> {
        let mut why = String::new();
        for _ in 0..STEP_ATTEMPTS_MAX {
            if Instant::now() >= deadline {
                break;
            }
            let v = self.fence_counter.fetch_add(1, Ordering::Relaxed) as i64;
            let step = (Instant::now() + self.cfg.request_timeout).min(deadline);
            match self.call(g, "write", &json!({"key": FENCE_KEY, "value": v}), step, false).await {
                Outcome::Ok(_) => {
                    g.needs_fence.store(false, Ordering::Relaxed);
                    return Ok(());
                }
                Outcome::Definite(_, b) => why = b.to_string(),
                Outcome::Unknown(m) => why = m,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("fence not acknowledged: {why}"))
    }

    /// A linearizable read that sees every write proposed before now: fences first when an
    /// earlier write's outcome may still be pending.
    async fn read_after_fence(&self, g: &Group, key: &str, deadline: Instant) -> Result<Option<i64>, String> {
        if Instant::now() < self.horizon {
            tokio::time::sleep_until(self.horizon.min(deadline)).await;
            if Instant::now() < self.horizon {
                return Err("router restarting: waiting out its previous requests".into());
            }
        }
        if g.needs_fence.load(Ordering::Relaxed) {
            self.fence(g, deadline).await?;
        }
        match self.call(g, "read", &json!({"key": key}), deadline, true).await {
            Outcome::Ok(v) => Ok(v.get("value").and_then(Value::as_i64)),
            Outcome::Definite(_, b) => {
                Err(b.get("message").and_then(Value::as_str).unwrap_or("read refused").to_string())
            }
            Outcome::Unknown(m) => Err(m),
        }
    }

    fn entry_key(&self, key: &str) -> Option<String> {
        let s = &self.cfg.sharding;
        match s.strategy {
            Strategy::Directory => Some(format!("__router/dir/key/{key}")),
            Strategy::Range => Some(format!("__router/dir/range/{}", s.ranges.range_of(key))),
            Strategy::Hash | Strategy::ConsistentHash => None,
        }
    }

    fn frozen(&self, i: &Inner, key: &str) -> bool {
        i.frozen_keys.contains(key)
            || (self.cfg.sharding.strategy == Strategy::Range
                && i.frozen_ranges.contains(&self.cfg.sharding.ranges.range_of(key)))
    }

    fn entry_known(&self, i: &Inner, key: &str) -> bool {
        match self.cfg.sharding.strategy {
            Strategy::Directory => i.known_keys.contains(key),
            Strategy::Range => i.known_ranges.contains(&self.cfg.sharding.ranges.range_of(key)),
            Strategy::Hash | Strategy::ConsistentHash => true,
        }
    }

    /// Records what the directory says about `key` (unless a move made it known meanwhile).
    fn learn(&self, key: &str, owner: Option<i64>) {
        let s = &self.cfg.sharding;
        let mut i = self.inner.lock().expect("router lock");
        if self.entry_known(&i, key) {
            return;
        }
        let owner = owner.and_then(|o| usize::try_from(o).ok()).filter(|&o| o < s.shards);
        match s.strategy {
            Strategy::Directory => {
                if let Some(o) = owner {
                    i.overrides.keys.insert(key.to_string(), o);
                }
                i.known_keys.insert(key.to_string());
            }
            Strategy::Range => {
                let r = s.ranges.range_of(key);
                if let Some(o) = owner {
                    i.overrides.ranges.insert(r, o);
                }
                i.known_ranges.insert(r);
            }
            _ => {}
        }
    }

    fn note_key(&self, key: &str) -> Result<(), String> {
        let mut i = self.inner.lock().expect("router lock");
        if let Some(p) = i.recent.iter().position(|k| k == key) {
            i.recent.remove(p);
        }
        i.recent.push_back(key.to_string());
        if i.recent.len() > RECENT_MAX {
            i.recent.pop_front();
        }
        if i.seen.contains(key) {
            return Ok(());
        }
        // Persisted before the key's first request goes out: a range move after a restart must
        // know every key that may hold a value.
        let mut f = self.keys_log.lock().expect("keys log lock");
        tokio::task::block_in_place(|| writeln!(f, "{key}").and_then(|_| f.sync_data()))
            .map_err(|e| format!("cannot record the key: {e}"))?;
        i.seen.insert(key.to_string());
        Ok(())
    }

    /// The shard that owns `key` now, waiting (bounded) while it moves and reading its directory
    /// entry when unknown.
    async fn owner(&self, key: &str, deadline: Instant) -> Result<usize, Response> {
        loop {
            let notified = self.unfrozen.notified();
            let frozen = {
                let i = self.inner.lock().expect("router lock");
                if !self.frozen(&i, key) && self.entry_known(&i, key) {
                    return Ok(self.cfg.sharding.owner(key, &i.overrides));
                }
                self.frozen(&i, key)
            };
            if frozen {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Err(error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        true,
                        None,
                        "the key is being moved between shards; try again",
                    ));
                }
                continue;
            }
            let entry = self.entry_key(key).expect("known unless an entry exists");
            match self.read_after_fence(&self.dir, &entry, deadline).await {
                Ok(o) => self.learn(key, o),
                Err(m) => {
                    return Err(error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        true,
                        None,
                        format!("directory unavailable: {m}"),
                    ))
                }
            }
        }
    }

    async fn client_op(&self, path: &str, key: String, body: Value) -> Response {
        if key.starts_with(RESERVED_PREFIX) {
            return bad_request(format!("key: the prefix {RESERVED_PREFIX} is reserved for the router"));
        }
        // Bounded: beyond this many client requests in flight, refuse at once.
        let Ok(_slot) = self.client_slots.try_acquire() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                true,
                None,
                format!("more than {} client requests in flight", crate::server::CLIENT_REQUESTS_MAX),
            );
        };
        let deadline = Instant::now() + self.cfg.request_timeout;
        if let Err(m) = self.note_key(&key) {
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, m);
        }
        if Instant::now() < self.horizon {
            // A restarted router: requests of its previous life may still be proposed.
            tokio::time::sleep_until(self.horizon.min(deadline)).await;
            if Instant::now() < self.horizon {
                return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, "router restarting");
            }
        }
        let shard = match self.owner(&key, deadline).await {
            Ok(s) => s,
            Err(r) => return r,
        };
        self.inner.lock().expect("router lock").requests[shard] += 1;
        match self.call(&self.groups[shard], path, &body, deadline, path == "read").await {
            Outcome::Ok(v) => (StatusCode::OK, Json(v)).into_response(),
            Outcome::Definite(status, v) => (status, Json(v)).into_response(),
            Outcome::Unknown(m) => error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                false,
                None,
                format!("shard {shard}: outcome unknown ({m})"),
            ),
        }
    }
}

fn err_body(code: &str, definite: bool, message: &str) -> Value {
    json!({"error": code, "definite": definite, "leader": null, "message": message})
}

// ------------------------------------------------------------------------- moves

impl Router {
    /// Plans a move and freezes what moves, then lets a task do the rest; returns the plan
    /// with the move's id ([`Router::rebalance_wait`] tells how it ended).
    async fn rebalance_start(self: &Arc<Self>, pick: u64) -> Result<Value, String> {
        let one = self.moving.clone().lock_owned().await;
        let s = &self.cfg.sharding;
        s.movable()?;
        let deadline = Instant::now() + 4 * self.cfg.request_timeout;
        // Entries the plan depends on must be known.
        let (recent, known) = {
            let i = self.inner.lock().expect("router lock");
            (i.recent.iter().cloned().collect::<Vec<_>>(), i.seen.iter().cloned().collect::<Vec<_>>())
        };
        let probes: Vec<String> = match s.strategy {
            Strategy::Directory => recent.clone(),
            _ => (0..s.ranges.count())
                .map(|r| if r == 0 { String::new() } else { s.ranges.split[r - 1].clone() })
                .collect(),
        };
        for k in &probes {
            let known_now = self.entry_known(&self.inner.lock().expect("router lock"), k);
            if !known_now {
                let o = self.read_after_fence(&self.dir, &self.entry_key(k).expect("movable"), deadline).await?;
                self.learn(k, o);
            }
        }
        if !self.version_loaded.load(Ordering::Relaxed) {
            // The replicated count of moves (a restarted router starts from it).
            let v = self.read_after_fence(&self.dir, VERSION_KEY, deadline).await?;
            let mut i = self.inner.lock().expect("router lock");
            i.version = i.version.max(v.unwrap_or(0).max(0) as u64);
            self.version_loaded.store(true, Ordering::Relaxed);
        }
        let m = {
            let mut i = self.inner.lock().expect("router lock");
            let m = plan_move(s, &i.overrides, pick, &recent, &known)?;
            match &m {
                // The bug `unsafe-move` lets clients go on during the copy.
                Move::Key { key, .. } if !self.cfg.unsafe_move => i.frozen_keys.insert(key.clone()),
                Move::Range { range, .. } if !self.cfg.unsafe_move => i.frozen_ranges.insert(*range),
                _ => false,
            };
            m
        };
        let id = self.move_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let plan = json!({"id": id, "move": m});
        let r = self.clone();
        tokio::spawn(async move {
            let _one = one; // one move at a time, until this one is finished
            r.finish_move(id, m).await;
        });
        Ok(plan)
    }

    /// Waits (up to `timeout`) for move `id` to end; its record, or why it failed.
    async fn rebalance_wait(&self, id: u64, timeout: Duration) -> Result<Value, String> {
        let until = Instant::now() + timeout;
        loop {
            let done = self.move_done.notified();
            if let Some(rec) = self.inner.lock().expect("router lock").moves.iter().find(|r| r["id"] == id).cloned() {
                return if rec["ok"] == true {
                    Ok(rec)
                } else {
                    Err(rec["error"].as_str().unwrap_or("move failed").to_string())
                };
            }
            if tokio::time::timeout_at(until, done).await.is_err() {
                return Err(format!("move {id} not finished within {} s", timeout.as_secs()));
            }
        }
    }

    async fn finish_move(&self, id: u64, m: Move) {
        let started = Instant::now();
        let res = self.do_move(&m).await;
        {
            let mut i = self.inner.lock().expect("router lock");
            match &m {
                Move::Key { key, .. } => i.frozen_keys.remove(key),
                Move::Range { range, .. } => i.frozen_ranges.remove(range),
            };
            let rec = json!({"id": id, "move": m, "ok": res.is_ok(), "copied": res.as_ref().ok(), "error": res.as_ref().err(),
                             "frozen_ms": started.elapsed().as_millis() as u64, "version": i.version});
            i.moves.push_back(rec.clone());
            if i.moves.len() > MOVES_KEPT {
                i.moves.pop_front();
            }
            drop(i);
            self.unfrozen.notify_waiters();
            self.move_done.notify_waiters();
            tracing::info!(%rec, "move");
        }
    }

    /// Steps 2–5 of a move (module docs); returns the keys whose values were copied.
    async fn do_move(&self, m: &Move) -> Result<Vec<String>, String> {
        let t = self.cfg.request_timeout;
        // 2. Every request sent before the freeze is past its not-after time after this.
        if !self.cfg.unsafe_move {
            tokio::time::sleep(t + CLOCK_MARGIN).await;
        }
        let deadline = Instant::now() + 4 * t;
        let (src, dst) = (&self.groups[m.from()], &self.groups[m.to()]);
        // The keys to carry, taken now: a key first seen just before the freeze is recorded
        // before its first request, so it is in `seen` by the time that request is decided.
        let keys = match m {
            Move::Key { key, .. } => vec![key.clone()],
            Move::Range { range, .. } => {
                let i = self.inner.lock().expect("router lock");
                i.seen.iter().filter(|k| self.cfg.sharding.ranges.contains(*range, k)).cloned().collect()
            }
        };
        // 3. Fence the source: every earlier proposal is now decided.
        if !self.cfg.unsafe_move {
            self.fence(src, deadline).await.map_err(|e| format!("source shard {}: {e}", m.from()))?;
        }
        // 4. Copy.
        let mut copy_unknown = false;
        let mut copied = Vec::new();
        for key in keys {
            let v = self
                .read_after_fence(src, &key, deadline)
                .await
                .map_err(|e| format!("reading {key} from shard {}: {e}", m.from()))?;
            let Some(v) = v else { continue }; // never written: nothing to carry
            let mut done = false;
            for _ in 0..STEP_ATTEMPTS_MAX {
                let step = (Instant::now() + t).min(deadline);
                match self.call(dst, "write", &json!({"key": key, "value": v}), step, false).await {
                    Outcome::Ok(_) => {
                        done = true;
                        break;
                    }
                    Outcome::Unknown(_) => copy_unknown = true,
                    Outcome::Definite(..) => {}
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !done {
                return Err(format!("copying {key} to shard {} not acknowledged", m.to()));
            }
            copied.push(key);
        }
        if copy_unknown {
            // A copy that timed out may still commit: let its not-after pass, then fence, so it
            // cannot land after a client's write to the new owner.
            tokio::time::sleep(t + CLOCK_MARGIN).await;
            self.fence(dst, Instant::now() + 4 * t).await.map_err(|e| format!("destination shard {}: {e}", m.to()))?;
        }
        // 5. Flip the directory entry.
        let entry = match m {
            Move::Key { key, .. } => format!("__router/dir/key/{key}"),
            Move::Range { range, .. } => format!("__router/dir/range/{range}"),
        };
        let flip = self
            .call(&self.dir, "write", &json!({"key": entry, "value": m.to() as i64}), Instant::now() + t, false)
            .await;
        let flipped = match flip {
            Outcome::Ok(_) => true,
            Outcome::Definite(_, b) => return Err(format!("directory refused the new owner: {b}")),
            Outcome::Unknown(_) => {
                // Resolve: once its not-after passed and a fence is acknowledged, a read shows it.
                tokio::time::sleep(t + CLOCK_MARGIN).await;
                self.dir.needs_fence.store(true, Ordering::Relaxed);
                match self.read_after_fence(&self.dir, &entry, Instant::now() + 4 * t).await {
                    Ok(o) => o == Some(m.to() as i64),
                    Err(e) => {
                        // Unknown: forget the cached entry; the next request re-reads it after a
                        // fence (needs_fence stays set).
                        let mut i = self.inner.lock().expect("router lock");
                        match m {
                            Move::Key { key, .. } => i.known_keys.remove(key),
                            Move::Range { range, .. } => i.known_ranges.remove(range),
                        };
                        return Err(format!("directory write outcome unknown ({e}); entry will be re-read"));
                    }
                }
            }
        };
        if !flipped {
            return Err("directory write did not take effect".into());
        }
        let version = {
            let mut i = self.inner.lock().expect("router lock");
            apply_move(&mut i.overrides, m);
            i.version += 1;
            i.version
        };
        // Informational (the entries are what routing reads); best effort.
        let _ = self
            .call(&self.dir, "write", &json!({"key": VERSION_KEY, "value": version as i64}), Instant::now() + t, false)
            .await;
        Ok(copied)
    }
}

// ------------------------------------------------------------------------- handlers

/// The register request bodies the router and the directory node take.
#[derive(Deserialize)]
pub(crate) struct ReadBody {
    pub(crate) key: String,
}
#[derive(Deserialize)]
pub(crate) struct WriteBody {
    pub(crate) key: String,
    pub(crate) value: i64,
}
#[derive(Deserialize)]
pub(crate) struct CasBody {
    pub(crate) key: String,
    /// The value the key must hold; `null`: the key must be absent. Required (not defaulted).
    #[serde(deserialize_with = "Option::deserialize")]
    pub(crate) from: Option<i64>,
    pub(crate) to: i64,
}

async fn kv_read(State(r): State<Shared>, body: Bytes) -> Response {
    let b: ReadBody = match parse(&body, r#"{"key": string}"#) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Err(e) = check_key(&b.key) {
        return e;
    }
    r.client_op("read", b.key.clone(), json!({"key": b.key})).await
}

async fn kv_write(State(r): State<Shared>, body: Bytes) -> Response {
    let b: WriteBody = match parse(&body, r#"{"key": string, "value": integer}"#) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Err(e) = check_key(&b.key) {
        return e;
    }
    r.client_op("write", b.key.clone(), json!({"key": b.key, "value": b.value})).await
}

async fn kv_cas(State(r): State<Shared>, body: Bytes) -> Response {
    let b: CasBody = match parse(&body, r#"{"key": string, "from": integer or null, "to": integer}"#) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Err(e) = check_key(&b.key) {
        return e;
    }
    r.client_op("cas", b.key.clone(), json!({"key": b.key, "from": b.from, "to": b.to})).await
}

async fn admin_status(State(r): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(e) = api::authorized(&r.cfg.admin_token, &headers) {
        return e;
    }
    let version = r.inner.lock().expect("router lock").version;
    Json(json!({
        "id": r.cfg.id,
        "role": "router",
        "state": "router",
        "sharding": r.cfg.sharding.strategy.as_str(),
        "groups": r.cfg.groups.iter().map(|g| g.iter().map(|n| n.0.clone()).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "directory": match &r.cfg.directory { DirectoryHome::Group0 => "group-0".to_string(), DirectoryHome::Node(id, _) => format!("node {id} (memory only)") },
        "directory_version": version,
        "bugs": r.cfg.bug_names,
        "clock": r.clock.view(),
    }))
    .into_response()
}

async fn admin_clock(State(r): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = api::authorized(&r.cfg.admin_token, &headers) {
        return e;
    }
    // The router's own clock is not used for routing; settable like every node's for uniformity.
    api::set_clock(&r.clock, &body)
}

/// Per-shard key and request counts: keys are the router's known keys by current owner,
/// requests are client requests forwarded since the router last started.
async fn admin_shards(State(r): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(e) = api::authorized(&r.cfg.admin_token, &headers) {
        return e;
    }
    let i = r.inner.lock().expect("router lock");
    let s = &r.cfg.sharding;
    let mut keys = vec![0u64; s.shards];
    for k in &i.seen {
        keys[s.owner(k, &i.overrides)] += 1;
    }
    let shards: Vec<Value> = (0..s.shards)
        .map(|g| json!({"shard": g, "nodes": r.cfg.groups[g].iter().map(|n| n.0.clone()).collect::<Vec<_>>(), "keys": keys[g], "requests": i.requests[g]}))
        .collect();
    Json(json!({
        "sharding": s.strategy.as_str(),
        "hash": s.hash,
        "split_points": s.ranges.split,
        "directory_version": i.version,
        "shards": shards,
        "moves": i.moves,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebalanceBody {
    pick: u64,
}

/// `POST /admin/rebalance {"pick": n}`: plans and starts a move; answers the plan and its id
/// once the moving keys are frozen (409 `not-moved` when nothing can move).
async fn admin_rebalance(State(r): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = api::authorized(&r.cfg.admin_token, &headers) {
        return e;
    }
    let b: RebalanceBody = match parse(&body, r#"{"pick": unsigned integer}"#) {
        Ok(b) => b,
        Err(e) => return e,
    };
    match r.rebalance_start(b.pick).await {
        Ok(v) => Json(v).into_response(),
        Err(m) => error(StatusCode::CONFLICT, "not-moved", true, None, m),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitBody {
    id: u64,
}

/// Longest `POST /admin/rebalance/wait` blocks.
const MOVE_WAIT_MAX: Duration = Duration::from_secs(15);

/// `POST /admin/rebalance/wait {"id": n}`: the move's record once it ended (409 `not-moved`
/// with the reason when it failed or is still running after [`MOVE_WAIT_MAX`]).
async fn admin_rebalance_wait(State(r): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = api::authorized(&r.cfg.admin_token, &headers) {
        return e;
    }
    let b: WaitBody = match parse(&body, r#"{"id": unsigned integer}"#) {
        Ok(b) => b,
        Err(e) => return e,
    };
    match r.rebalance_wait(b.id, MOVE_WAIT_MAX).await {
        Ok(v) => Json(v).into_response(),
        Err(m) => error(StatusCode::CONFLICT, "not-moved", true, None, m),
    }
}

/// Parses `--shard-group` values (`n2+n3+n4`) against the peer list.
pub fn parse_groups(
    specs: &[String],
    peers: &BTreeMap<String, SocketAddr>,
) -> anyhow::Result<Vec<Vec<(String, SocketAddr)>>> {
    let mut seen = BTreeSet::new();
    let mut groups = Vec::new();
    for spec in specs {
        let mut g = Vec::new();
        for id in spec.split('+').map(str::trim) {
            let Some(addr) = peers.get(id) else { anyhow::bail!("--shard-group {spec}: {id} is not in --peers") };
            if !seen.insert(id.to_string()) {
                anyhow::bail!("--shard-group: {id} is in two groups");
            }
            g.push((id.to_string(), *addr));
        }
        groups.push(g);
    }
    if groups.is_empty() {
        anyhow::bail!("--role router needs at least one --shard-group");
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_against_peers() {
        let peers: BTreeMap<String, SocketAddr> = ["n2", "n3", "n4"]
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), format!("10.0.0.{}:8080", i + 2).parse().unwrap()))
            .collect();
        let g = parse_groups(&["n2+n3".into(), "n4".into()], &peers).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0][1].0, "n3");
        assert!(parse_groups(&["n2+n9".into()], &peers).unwrap_err().to_string().contains("n9"));
        assert!(parse_groups(&["n2".into(), "n2".into()], &peers).unwrap_err().to_string().contains("two groups"));
        assert!(parse_groups(&[], &peers).is_err());
    }
}
