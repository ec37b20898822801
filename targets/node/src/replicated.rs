//! The runtime shared by the weakly consistent roles (`available`, `multi-primary`): every
//! node answers every client request from its own replica at once (nothing forwarded, no
//! quorum), and replicas reconcile in the background. This module owns that plumbing; each
//! role's pure replica (`faultline_protocols::{available, multi_primary}`) is behind [`Core`].
//!
//! - One task owns the replica: it applies a bounded batch of client requests and peer entries
//!   ([`BATCH_MAX`]); when the batch changed the replica it writes the whole state to
//!   `<role>-state.json` (temporary file, fsync, rename, directory fsync) **before** answering
//!   any request of the batch, so an acknowledged write survives kill -9 and a read never
//!   returns what a restart could forget. A state that cannot be written ends the process
//!   (status 70, fail-stop).
//! - Push, best effort: the entry a client write produced goes, once durable, into one bounded
//!   queue per peer ([`PUSH_QUEUE_MAX`], dropped when full); a sender per peer posts up to
//!   [`PUSH_BATCH_MAX`] of them per request to `POST /peer/entries` and drops a batch whose
//!   post fails (no retry: anti-entropy repairs).
//! - Anti-entropy: every `--anti-entropy-ms` the task takes the next bounded batch of its
//!   slots ([`ANTI_ENTROPY_ITEMS_MAX`] items, walking the slots in order and wrapping) and
//!   offers it to every peer through a latest-value outbox (a slow or cut-off peer costs one
//!   pending batch; a newer batch replaces an unsent one). A receiver merges what it gets, so
//!   after a heal every replica receives every slot within one walk. The `available` role's
//!   bug `no-anti-entropy` switches this off: what a push missed is never repaired.

#![allow(clippy::result_large_err)] // handlers bail out with a ready `Response`

use crate::api::{
    self, bad_request, body, check_key, error, not_found, parse, ElementBody, KeyBody, WriteBody, BODY_BYTES_MAX,
};
use crate::clock::NodeClock;
use crate::driver::{Driver, Wake};
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use faultline_protocols::slot::Slot;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Requests queued for the replica task at most; beyond, 503 at once.
const QUEUE_MAX: usize = 4096;
/// Requests applied between two persists at most (group commit).
const BATCH_MAX: usize = 256;
/// Pushed entries queued per peer at most; beyond, new ones are dropped.
pub const PUSH_QUEUE_MAX: usize = 1024;
/// Pushed entries per request at most.
pub const PUSH_BATCH_MAX: usize = 64;
/// Items per anti-entropy batch at most (a register version is one item, a set counts its
/// elements; a single larger entry is sent alone).
pub const ANTI_ENTROPY_ITEMS_MAX: usize = 4096;

/// A role's replica, as the runtime drives it.
pub trait Core: Send + 'static {
    type Entry: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    fn read(&self, key: &str) -> Option<i64>;
    /// Applies a client write; returns the entry to push.
    fn write(&mut self, key: &str, value: i64, now_ms: i64) -> (Slot, Self::Entry);
    fn set_read(&self, key: &str) -> Vec<i64>;
    /// Applies a set add; returns the entry to push.
    fn set_add(&mut self, key: &str, element: i64, now_ms: i64) -> (Slot, Self::Entry);
    /// Joins a peer's entry; true if the replica changed.
    fn merge(&mut self, slot: &Slot, entry: &Self::Entry) -> bool;
    fn batch_after(&self, after: Option<&Slot>, items_max: usize) -> (Vec<(Slot, Self::Entry)>, Option<Slot>);
    /// The whole replica, as the state file holds it.
    fn state(&self) -> Vec<u8>;
    /// Role-specific fields of `/admin/status`.
    fn status(&self) -> Map<String, Value>;
}

/// Checks a received entry (the members are those of `--peers`): `Err(why)` → 400.
pub type Validator<E> = Arc<dyn Fn(&Slot, &E) -> Result<(), String> + Send + Sync>;

pub struct Config<E> {
    pub role: &'static str,
    pub id: String,
    pub listen: SocketAddr,
    pub peers: BTreeMap<String, SocketAddr>,
    pub data_dir: PathBuf,
    pub admin_token: String,
    pub bug_names: Vec<String>,
    /// `None`: no anti-entropy (bug `no-anti-entropy`).
    pub anti_entropy: Option<Duration>,
    pub request_timeout: Duration,
    pub peer_client: reqwest::Client,
    pub validate: Validator<E>,
}

/// The state file of `role` in `dir`.
pub fn state_path(dir: &Path, role: &str) -> PathBuf {
    dir.join(format!("{role}-state.json"))
}

/// Loads a persisted replica, if any. A file that does not parse is corruption (the rename
/// makes torn writes impossible), so it is an error.
pub fn load<T: DeserializeOwned>(dir: &Path, role: &str) -> anyhow::Result<Option<T>> {
    let path = state_path(dir, role);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("{}: corrupt {role} state", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

enum Job<E> {
    Read(String),
    Write(String, i64),
    SetRead(String),
    SetAdd(String, i64),
    Merge(Vec<(Slot, E)>),
}

enum Answer {
    Done,
    Value(Option<i64>),
    Elements(Vec<i64>),
}

struct Req<E> {
    job: Job<E>,
    /// `None` for merges (no one waits).
    tx: Option<oneshot::Sender<Answer>>,
}

#[derive(Default)]
struct Counters {
    merges_received: AtomicU64,
    entries_changed: AtomicU64,
    pushes_sent: AtomicU64,
    pushes_dropped: AtomicU64,
    anti_entropy_sent: AtomicU64,
    anti_entropy_rounds: AtomicU64,
}

struct Shared<E> {
    role: &'static str,
    id: String,
    admin_token: String,
    clock: Arc<NodeClock>,
    queue: mpsc::Sender<Req<E>>,
    bug_names: Vec<String>,
    request_timeout: Duration,
    members: BTreeSet<String>,
    anti_entropy_ms: Option<u128>,
    validate: Validator<E>,
    counters: Arc<Counters>,
    status: watch::Receiver<Map<String, Value>>,
}

type St<E> = Arc<Shared<E>>;

/// Writes the state durably: temporary file, fsync, rename, fsync of the directory.
fn persist(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// Persists `core`, or ends the process: the replica would be ahead of the disk, and serving
/// on would acknowledge writes a restart forgets.
async fn save(path: &Path, bytes: Vec<u8>) {
    let path = path.to_path_buf();
    let err = match tokio::task::spawn_blocking(move || persist(&path, &bytes)).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("persisting the state failed: {e}"),
        Err(e) => format!("persist task failed: {e}"),
    };
    tracing::error!("{err}; exiting");
    std::process::exit(70);
}

#[derive(Serialize)]
struct Outgoing<'a, E> {
    from: &'a str,
    entries: &'a [(Slot, E)],
}

/// The replica task (module doc).
#[allow(clippy::too_many_arguments)]
async fn replica<C: Core>(
    id: String,
    path: PathBuf,
    mut core: C,
    clock: Arc<NodeClock>,
    rx: mpsc::Receiver<Req<C::Entry>>,
    pushes: Vec<mpsc::Sender<(Slot, C::Entry)>>,
    ae_outbox: watch::Sender<Arc<Bytes>>,
    anti_entropy: Option<Duration>,
    counters: Arc<Counters>,
    status: watch::Sender<Map<String, Value>>,
) {
    // With anti-entropy off the timer still ticks (rarely) to refresh the status.
    let mut driver = Driver::new(rx, Some(anti_entropy.unwrap_or(Duration::from_millis(500))), BATCH_MAX);
    let mut cursor: Option<Slot> = None;
    while let Some(wake) = driver.next().await {
        let batch = match wake {
            Wake::Tick => {
                status.send_replace(core.status());
                if anti_entropy.is_some() {
                    let (batch, next) = core.batch_after(cursor.as_ref(), ANTI_ENTROPY_ITEMS_MAX);
                    cursor = next;
                    if !batch.is_empty() {
                        let bytes =
                            serde_json::to_vec(&Outgoing { from: &id, entries: &batch }).expect("entries serialize");
                        ae_outbox.send_replace(Arc::new(Bytes::from(bytes)));
                        counters.anti_entropy_rounds.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
            Wake::Batch(batch) => batch,
        };
        let mut changed = false;
        let mut to_push = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for Req { job, tx } in batch {
            let a = match job {
                Job::Read(key) => Answer::Value(core.read(&key)),
                Job::SetRead(key) => Answer::Elements(core.set_read(&key)),
                Job::Write(key, value) => {
                    to_push.push(core.write(&key, value, clock.now_ms()));
                    changed = true;
                    Answer::Done
                }
                Job::SetAdd(key, element) => {
                    to_push.push(core.set_add(&key, element, clock.now_ms()));
                    changed = true;
                    Answer::Done
                }
                Job::Merge(entries) => {
                    for (slot, e) in &entries {
                        if core.merge(slot, e) {
                            changed = true;
                            counters.entries_changed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Answer::Done
                }
            };
            answers.push((tx, a));
        }
        if changed {
            save(&path, core.state()).await;
        }
        for (tx, a) in answers {
            if let Some(tx) = tx {
                let _ = tx.send(a); // the client may have given up
            }
        }
        // Only durable writes leave the node.
        for p in &pushes {
            for e in &to_push {
                if p.try_send(e.clone()).is_err() {
                    counters.pushes_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Posts pushed entries to one peer, up to [`PUSH_BATCH_MAX`] per request; a failed post
/// drops its batch.
async fn push_sender<E: Serialize>(
    me: String,
    peer: String,
    url: String,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<(Slot, E)>,
    counters: Arc<Counters>,
) {
    let mut failures: u64 = 0;
    let mut buf = Vec::with_capacity(PUSH_BATCH_MAX);
    while rx.recv_many(&mut buf, PUSH_BATCH_MAX).await > 0 {
        let body = serde_json::to_vec(&Outgoing { from: &me, entries: &buf }).expect("entries serialize");
        let n = buf.len() as u64;
        buf.clear();
        match client.post(&url).header(header::CONTENT_TYPE, "application/json").body(body).send().await {
            Ok(r) if r.status().is_success() => {
                counters.pushes_sent.fetch_add(n, Ordering::Relaxed);
                failures = 0;
            }
            other => {
                counters.pushes_dropped.fetch_add(n, Ordering::Relaxed);
                failures += 1;
                if failures == 1 {
                    let why = other.map(|r| format!("status {}", r.status())).unwrap_or_else(|e| e.to_string());
                    tracing::info!(%peer, error = %why, "push to peer failed; dropped (anti-entropy repairs)");
                }
            }
        }
    }
}

/// Posts the latest anti-entropy batch to one peer whenever a new one is published.
async fn anti_entropy_sender(
    url: String,
    client: reqwest::Client,
    mut rx: watch::Receiver<Arc<Bytes>>,
    counters: Arc<Counters>,
) {
    while rx.changed().await.is_ok() {
        let body = rx.borrow_and_update().clone();
        let r = client.post(&url).header(header::CONTENT_TYPE, "application/json").body((*body).clone()).send().await;
        if matches!(r, Ok(ref r) if r.status().is_success()) {
            counters.anti_entropy_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs a node of a weakly consistent role until the server fails.
pub async fn run<C: Core>(cfg: Config<C::Entry>, core: C) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let clock = Arc::new(NodeClock::default());
    let counters = Arc::new(Counters::default());
    let (tx, rx) = mpsc::channel(QUEUE_MAX);
    let (ae_outbox, _) = watch::channel(Arc::new(Bytes::new()));
    let mut pushes = Vec::new();
    for (peer, addr) in &cfg.peers {
        if *peer == cfg.id {
            continue;
        }
        let url = format!("http://{addr}/peer/entries");
        let (ptx, prx) = mpsc::channel(PUSH_QUEUE_MAX);
        pushes.push(ptx);
        tokio::spawn(push_sender(
            cfg.id.clone(),
            peer.clone(),
            url.clone(),
            cfg.peer_client.clone(),
            prx,
            counters.clone(),
        ));
        let mut arx = ae_outbox.subscribe();
        arx.mark_unchanged();
        tokio::spawn(anti_entropy_sender(url, cfg.peer_client.clone(), arx, counters.clone()));
    }
    let (status_tx, status_rx) = watch::channel(core.status());
    let path = state_path(&cfg.data_dir, cfg.role);
    tokio::spawn(replica(
        cfg.id.clone(),
        path,
        core,
        clock.clone(),
        rx,
        pushes,
        ae_outbox,
        cfg.anti_entropy,
        counters.clone(),
        status_tx,
    ));
    let shared = Arc::new(Shared {
        role: cfg.role,
        id: cfg.id.clone(),
        admin_token: cfg.admin_token.clone(),
        clock,
        queue: tx,
        bug_names: cfg.bug_names.clone(),
        request_timeout: cfg.request_timeout,
        members: cfg.peers.keys().cloned().collect(),
        anti_entropy_ms: cfg.anti_entropy.map(|d| d.as_millis()),
        validate: cfg.validate.clone(),
        counters,
        status: status_rx,
    });
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    tracing::info!(addr = %cfg.listen, role = cfg.role, "serving");
    axum::serve(listener, router(shared)).await.context("HTTP server")?;
    Ok(())
}

fn router<E: DeserializeOwned + Send + Sync + 'static>(s: St<E>) -> Router {
    Router::new()
        .route("/kv/read", post(kv_read::<E>))
        .route("/kv/write", post(kv_write::<E>))
        .route("/kv/cas", post(kv_cas::<E>))
        .route("/set/add", post(set_add::<E>))
        .route("/set/read", post(set_read::<E>))
        .route("/admin/status", get(admin_status::<E>))
        .route("/admin/clock", post(admin_clock::<E>))
        .route("/peer/entries", post(peer_entries::<E>))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(s)
}

/// Queues `job` and waits (bounded by the request timeout) for its answer.
async fn submit<E>(s: &Shared<E>, job: Job<E>) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.queue.try_send(Req { job, tx: Some(tx) }).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            "node overloaded: request queue full",
        );
    }
    match tokio::time::timeout(s.request_timeout, rx).await {
        Ok(Ok(Answer::Done)) => Json(json!({})).into_response(),
        Ok(Ok(Answer::Value(v))) => Json(json!({"value": v})).into_response(),
        Ok(Ok(Answer::Elements(e))) => Json(json!({"elements": e})).into_response(),
        Ok(Err(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, "stopped", false, None, "the replica task stopped"),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            false,
            None,
            format!("no outcome within {} ms; the operation may or may not take effect", s.request_timeout.as_millis()),
        ),
    }
}

async fn kv_read<E>(State(s): State<St<E>>, body: Bytes) -> Response {
    let b = body!(KeyBody, body, r#"{"key": string}"#);
    submit(&s, Job::Read(b.key)).await
}

async fn kv_write<E>(State(s): State<St<E>>, body: Bytes) -> Response {
    let b = body!(WriteBody, body, r#"{"key": string, "value": integer}"#);
    submit(&s, Job::Write(b.key, b.value)).await
}

async fn kv_cas<E>(State(s): State<St<E>>) -> Response {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "unsupported",
        true,
        None,
        format!("the {} role has no compare-and-set: every node accepts writes on its own, with no agreement to compare against", s.role),
    )
}

async fn set_add<E>(State(s): State<St<E>>, body: Bytes) -> Response {
    let b = body!(ElementBody, body, r#"{"key": string, "element": integer}"#);
    submit(&s, Job::SetAdd(b.key, b.element)).await
}

async fn set_read<E>(State(s): State<St<E>>, body: Bytes) -> Response {
    let b = body!(KeyBody, body, r#"{"key": string}"#);
    submit(&s, Job::SetRead(b.key)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming<E> {
    from: String,
    entries: Vec<(Slot, E)>,
}

async fn peer_entries<E: DeserializeOwned>(State(s): State<St<E>>, body: Bytes) -> Response {
    let m: Incoming<E> = match parse(&body, r#"{"from": node id, "entries": [[slot, entry], ...]}"#) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !s.members.contains(&m.from) {
        return bad_request(format!("from: {:?} is not a member", m.from));
    }
    for (slot, e) in &m.entries {
        if let Err(r) = check_key(slot.key()) {
            return r;
        }
        if let Err(why) = (s.validate)(slot, e) {
            return bad_request(format!("entry for {slot:?}: {why}"));
        }
    }
    s.counters.merges_received.fetch_add(1, Ordering::Relaxed);
    match s.queue.try_send(Req { job: Job::Merge(m.entries), tx: None }) {
        Ok(()) => Json(json!({})).into_response(),
        Err(_) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, "request queue full; entries dropped")
        }
    }
}

async fn admin_status<E>(State(s): State<St<E>>, headers: HeaderMap) -> Response {
    if let Err(r) = api::authorized(&s.admin_token, &headers) {
        return r;
    }
    let c = &s.counters;
    let mut m = Map::new();
    m.insert("id".into(), json!(s.id));
    m.insert("role".into(), json!(s.role));
    // Every replica serves every operation: there is no leader to wait for.
    m.insert("state".into(), json!("replica"));
    m.insert("leader".into(), Value::Null);
    m.insert("term".into(), Value::Null);
    m.extend(s.status.borrow().clone());
    m.insert("anti_entropy_ms".into(), json!(s.anti_entropy_ms));
    m.insert("merges_received".into(), json!(c.merges_received.load(Ordering::Relaxed)));
    m.insert("entries_changed".into(), json!(c.entries_changed.load(Ordering::Relaxed)));
    m.insert("pushes_sent".into(), json!(c.pushes_sent.load(Ordering::Relaxed)));
    m.insert("pushes_dropped".into(), json!(c.pushes_dropped.load(Ordering::Relaxed)));
    m.insert("anti_entropy_rounds".into(), json!(c.anti_entropy_rounds.load(Ordering::Relaxed)));
    m.insert("anti_entropy_sent".into(), json!(c.anti_entropy_sent.load(Ordering::Relaxed)));
    m.insert("bugs".into(), json!(s.bug_names));
    m.insert("clock".into(), json!(s.clock.view()));
    Json(Value::Object(m)).into_response()
}

async fn admin_clock<E>(State(s): State<St<E>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = api::authorized(&s.admin_token, &headers) {
        return r;
    }
    api::set_clock(&s.clock, &body)
}
