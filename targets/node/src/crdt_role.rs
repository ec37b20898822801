//! The `crdt` role: state-based CRDTs (`faultline_protocols::crdt`) replicated by gossip
//! anti-entropy. Every node answers every client request from its own replica at once (always
//! available, never forwarded): OR-Sets under `/set/`, PN-Counters under `/counter/`, and
//! LWW-Registers on the node's skewable clock under `/kv/read|write` (`/kv/cas` is refused: a
//! compare-and-set cannot be built on an available register). See docs/node-api.md and
//! docs/targets.md.
//!
//! One task owns the replica ([`Store`]): it applies a bounded batch of client requests and
//! gossip merges; when the batch holds a client update it persists the whole state (write to a
//! temporary file, fsync, rename) before answering, so an acknowledged update survives a kill.
//! States merged from peers are persisted lazily (with the next update, or within
//! [`MERGE_PERSIST_EVERY`]): after a crash the peers gossip them again, and persisting every
//! merge would put an fsync on the path of every gossip round. The node's own updates (its
//! OR-Set tags and counter entries) are always persisted before they are gossiped, so a
//! restarted node never reissues a tag a peer has seen. Every `gossip_ms` the task publishes its state to one
//! latest-value outbox per peer (a `watch`: capacity one, an unsent older state is replaced, so
//! a slow or partitioned peer costs nothing), and a sender per peer posts it to the peer's
//! `POST /peer/crdt` with sockets bound to the node's address.

#![allow(clippy::result_large_err)] // handlers bail out with a ready `Response`

use crate::api::{
    self, bad_request, body, error, not_found, parse, DeltaBody, ElementBody, KeyBody, WriteBody, BODY_BYTES_MAX,
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
use faultline_protocols::crdt::{Bugs, Crdt, Store};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Keys longer than this are refused (docs/node-api.md).
/// Requests queued for the replica task at most; beyond, 503 at once.
const QUEUE_MAX: usize = 4096;
/// Requests applied between two persists at most (group commit).
const BATCH_MAX: usize = 256;
/// Request bodies larger than this are refused (gossiped states are the largest).
const STATE_FILE: &str = "crdt-state.json";
/// Longest a merged-in peer state stays only in memory while nothing else is persisted.
pub const MERGE_PERSIST_EVERY: Duration = Duration::from_secs(1);

pub struct CrdtConfig {
    pub id: String,
    pub listen: SocketAddr,
    pub peers: BTreeMap<String, SocketAddr>,
    pub data_dir: PathBuf,
    pub admin_token: String,
    pub bugs: Bugs,
    pub bug_names: Vec<String>,
    pub gossip: Duration,
    pub request_timeout: Duration,
    pub peer_client: reqwest::Client,
}

/// A request to the replica task.
enum Job {
    SetAdd {
        key: String,
        element: i64,
    },
    SetRemove {
        key: String,
        element: i64,
    },
    SetRead {
        key: String,
    },
    CounterAdd {
        key: String,
        delta: i64,
    },
    CounterRead {
        key: String,
    },
    RegWrite {
        key: String,
        value: i64,
    },
    RegRead {
        key: String,
    },
    /// A peer's state.
    Merge(Box<Store>),
}

enum Answer {
    Done,
    Elements(Vec<i64>),
    Value(Option<i64>),
}

struct Req {
    job: Job,
    /// `None` for merges (no one waits).
    tx: Option<oneshot::Sender<Answer>>,
}

struct Shared {
    id: String,
    admin_token: String,
    clock: Arc<NodeClock>,
    queue: mpsc::Sender<Req>,
    bug_names: Vec<String>,
    request_timeout: Duration,
    peers: Vec<String>,
    merges: AtomicU64,
    gossip_sent: Arc<AtomicU64>,
}

type St = Arc<Shared>;

/// Loads the persisted replica, if any. A state file that does not parse is an error (the
/// rename makes torn writes impossible, so a bad file is corruption, not a crash artefact).
fn load(dir: &Path, bugs: Bugs) -> anyhow::Result<Store> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let mut s: Store =
                serde_json::from_slice(&bytes).with_context(|| format!("{}: corrupt CRDT state", path.display()))?;
            // The bug flag is configuration, not state: re-apply it.
            let loaded = std::mem::take(&mut s);
            let mut store = Store::new(bugs);
            store.merge(&loaded);
            // A merge into an empty state copies exactly, even with bad-merge (0 + n = max(0, n)).
            debug_assert_eq!(store, loaded);
            Ok(store)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::new(bugs)),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the state durably: temporary file, fsync, rename, fsync of the directory.
fn persist(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The replica task: applies batches, persists, answers, publishes state for gossip.
async fn replica(
    id: String,
    dir: PathBuf,
    mut store: Store,
    clock: Arc<NodeClock>,
    rx: mpsc::Receiver<Req>,
    outbox: watch::Sender<Arc<Bytes>>,
    gossip: Duration,
) {
    let mut driver = Driver::new(rx, Some(gossip), BATCH_MAX);
    // Merged peer state not yet on disk, and when the state was last persisted.
    let mut merged_unsaved = false;
    let mut saved_at = tokio::time::Instant::now();
    while let Some(wake) = driver.next().await {
        let batch = match wake {
            Wake::Tick => {
                if merged_unsaved && saved_at.elapsed() >= MERGE_PERSIST_EVERY {
                    save(&dir, &store).await;
                    (merged_unsaved, saved_at) = (false, tokio::time::Instant::now());
                }
                let bytes = serde_json::to_vec(&json!({"from": id, "state": store})).expect("state serializes");
                outbox.send_replace(Arc::new(Bytes::from(bytes)));
                continue;
            }
            Wake::Batch(batch) => batch,
        };
        let mut changed = false;
        let mut answers = Vec::with_capacity(batch.len());
        for Req { job, tx } in batch {
            let a = match job {
                Job::SetAdd { key, element } => {
                    store.set_add(&id, &key, element);
                    changed = true;
                    Answer::Done
                }
                Job::SetRemove { key, element } => {
                    store.set_remove(&key, element);
                    changed = true;
                    Answer::Done
                }
                Job::SetRead { key } => Answer::Elements(store.set_read(&key)),
                Job::CounterAdd { key, delta } => {
                    store.counter_add(&id, &key, delta);
                    changed = true;
                    Answer::Done
                }
                Job::CounterRead { key } => Answer::Value(Some(store.counter_read(&key))),
                Job::RegWrite { key, value } => {
                    store.register_write(&id, &key, clock.now_ms(), value);
                    changed = true;
                    Answer::Done
                }
                Job::RegRead { key } => Answer::Value(store.register_read(&key)),
                Job::Merge(other) => {
                    store.merge(&other);
                    merged_unsaved = true;
                    Answer::Done
                }
            };
            answers.push((tx, a));
        }
        if changed {
            save(&dir, &store).await;
            (merged_unsaved, saved_at) = (false, tokio::time::Instant::now());
        }
        for (tx, a) in answers {
            if let Some(tx) = tx {
                let _ = tx.send(a);
            }
        }
    }
}

/// Persists `store`, or ends the process: fail-stop, as the Raft role does on a WAL error —
/// the in-memory state would be ahead of the disk, and serving on would acknowledge updates a
/// restart forgets. (Waiting clients then see a broken connection: indeterminate.)
async fn save(dir: &Path, store: &Store) {
    let bytes = serde_json::to_vec(store).expect("state serializes");
    let dir = dir.to_path_buf();
    let err = match tokio::task::spawn_blocking(move || persist(&dir, &bytes)).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("persisting the CRDT state failed: {e}"),
        Err(e) => format!("persist task failed: {e}"),
    };
    tracing::error!("{err}; exiting");
    std::process::exit(70);
}

/// Posts the latest published state to one peer whenever it changes; a failed post is
/// dropped (the next round carries a newer state anyway).
async fn gossip_sender(
    peer: String,
    url: String,
    client: reqwest::Client,
    mut rx: watch::Receiver<Arc<Bytes>>,
    sent: Arc<AtomicU64>,
) {
    let mut failures: u64 = 0;
    while rx.changed().await.is_ok() {
        let body = rx.borrow_and_update().clone();
        let r = client.post(&url).header(header::CONTENT_TYPE, "application/json").body((*body).clone()).send().await;
        match r {
            Ok(r) if r.status().is_success() => {
                if failures > 0 {
                    tracing::info!(%peer, failures, "peer reachable again");
                }
                failures = 0;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                failures += 1;
                #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; MSRV is 1.85
                let report = failures == 1 || failures % 100 == 0;
                if report {
                    let why = match other {
                        Ok(r) => format!("status {}", r.status()),
                        Err(e) => e.to_string(),
                    };
                    tracing::info!(%peer, failures, error = %why, "gossip to peer failed");
                }
            }
        }
    }
}

/// Runs a crdt node until the server fails.
pub async fn run(cfg: CrdtConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let store = load(&cfg.data_dir, cfg.bugs)?;
    tracing::info!(id = %cfg.id, listen = %cfg.listen, sets = store.sets.len(), counters = store.counters.len(), bugs = ?cfg.bug_names, "starting crdt node");
    let clock = Arc::new(NodeClock::default());
    let (tx, rx) = mpsc::channel(QUEUE_MAX);
    let (outbox, _) = watch::channel(Arc::new(Bytes::new()));
    let gossip_sent = Arc::new(AtomicU64::new(0));
    for (peer, addr) in &cfg.peers {
        if *peer == cfg.id {
            continue;
        }
        let mut rx = outbox.subscribe();
        rx.mark_unchanged();
        tokio::spawn(gossip_sender(
            peer.clone(),
            format!("http://{addr}/peer/crdt"),
            cfg.peer_client.clone(),
            rx,
            gossip_sent.clone(),
        ));
    }
    tokio::spawn(replica(cfg.id.clone(), cfg.data_dir.clone(), store, clock.clone(), rx, outbox, cfg.gossip));
    let shared = Arc::new(Shared {
        id: cfg.id.clone(),
        admin_token: cfg.admin_token.clone(),
        clock,
        queue: tx,
        bug_names: cfg.bug_names.clone(),
        request_timeout: cfg.request_timeout,
        peers: cfg.peers.keys().cloned().collect(),
        merges: AtomicU64::new(0),
        gossip_sent,
    });
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    tracing::info!(addr = %cfg.listen, "serving");
    axum::serve(listener, router(shared)).await.context("HTTP server")?;
    Ok(())
}

fn router(s: St) -> Router {
    Router::new()
        .route("/set/add", post(set_add))
        .route("/set/remove", post(set_remove))
        .route("/set/read", post(set_read))
        .route("/counter/add", post(counter_add))
        .route("/counter/read", post(counter_read))
        .route("/kv/read", post(kv_read))
        .route("/kv/write", post(kv_write))
        .route("/kv/cas", post(kv_cas))
        .route("/admin/status", get(admin_status))
        .route("/admin/clock", post(admin_clock))
        .route("/peer/crdt", post(peer_crdt))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(s)
}

// ------------------------------------------------------------------------- errors and parsing

/// Queues `job` and waits (bounded by the request timeout) for its answer.
async fn submit(s: &Shared, job: Job) -> Result<Answer, Response> {
    let (tx, rx) = oneshot::channel();
    if s.queue.try_send(Req { job, tx: Some(tx) }).is_err() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            "node overloaded: request queue full",
        ));
    }
    match tokio::time::timeout(s.request_timeout, rx).await {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(_)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "stopped", false, None, "the replica task stopped")),
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            false,
            None,
            format!("no outcome within {} ms; the operation may or may not take effect", s.request_timeout.as_millis()),
        )),
    }
}

fn answer(a: Result<Answer, Response>) -> Response {
    match a {
        Ok(Answer::Done) => Json(json!({})).into_response(),
        Ok(Answer::Elements(e)) => Json(json!({"elements": e})).into_response(),
        Ok(Answer::Value(v)) => Json(json!({"value": v})).into_response(),
        Err(r) => r,
    }
}

async fn set_add(State(s): State<St>, body: Bytes) -> Response {
    let b = body!(ElementBody, body, r#"{"key": string, "element": integer}"#);
    answer(submit(&s, Job::SetAdd { key: b.key, element: b.element }).await)
}

async fn set_remove(State(s): State<St>, body: Bytes) -> Response {
    let b = body!(ElementBody, body, r#"{"key": string, "element": integer}"#);
    answer(submit(&s, Job::SetRemove { key: b.key, element: b.element }).await)
}

async fn set_read(State(s): State<St>, body: Bytes) -> Response {
    let b = body!(KeyBody, body, r#"{"key": string}"#);
    answer(submit(&s, Job::SetRead { key: b.key }).await)
}

async fn counter_add(State(s): State<St>, body: Bytes) -> Response {
    let b = body!(DeltaBody, body, r#"{"key": string, "delta": integer}"#);
    answer(submit(&s, Job::CounterAdd { key: b.key, delta: b.delta }).await)
}

async fn counter_read(State(s): State<St>, body: Bytes) -> Response {
    let b = body!(KeyBody, body, r#"{"key": string}"#);
    answer(submit(&s, Job::CounterRead { key: b.key }).await)
}

async fn kv_read(State(s): State<St>, body: Bytes) -> Response {
    let b = body!(KeyBody, body, r#"{"key": string}"#);
    answer(submit(&s, Job::RegRead { key: b.key }).await)
}

async fn kv_write(State(s): State<St>, body: Bytes) -> Response {
    let b = body!(WriteBody, body, r#"{"key": string, "value": integer}"#);
    answer(submit(&s, Job::RegWrite { key: b.key, value: b.value }).await)
}

async fn kv_cas() -> Response {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "unsupported",
        true,
        None,
        "the crdt role has no compare-and-set: its registers are last-writer-wins",
    )
}

// ------------------------------------------------------------------------- peers

#[derive(Deserialize)]
struct Gossip {
    from: String,
    state: Store,
}

async fn peer_crdt(State(s): State<St>, body: Bytes) -> Response {
    let g: Gossip = match parse(&body, r#"{"from": node id, "state": CRDT state}"#) {
        Ok(g) => g,
        Err(r) => return r,
    };
    if !s.peers.contains(&g.from) {
        return bad_request(format!("from: {:?} is not a member", g.from));
    }
    s.merges.fetch_add(1, Ordering::Relaxed);
    match s.queue.try_send(Req { job: Job::Merge(Box::new(g.state)), tx: None }) {
        Ok(()) => Json(json!({})).into_response(),
        Err(_) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, "request queue full; state dropped")
        }
    }
}

// ------------------------------------------------------------------------- admin

fn authorized(s: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    api::authorized(&s.admin_token, headers)
}

async fn admin_status(State(s): State<St>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    Json(json!({
        "id": s.id,
        "role": "crdt",
        // Every replica serves every operation: there is no leader to wait for.
        "state": "replica",
        "leader": Value::Null,
        "term": Value::Null,
        "merges_received": s.merges.load(Ordering::Relaxed),
        "gossip_sent": s.gossip_sent.load(Ordering::Relaxed),
        "bugs": s.bug_names,
        "clock": s.clock.view(),
    }))
    .into_response()
}

async fn admin_clock(State(s): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    api::set_clock(&s.clock, &body)
}
