//! The `primary-backup` role's runtime (master–slave replication, no consensus; the protocol is
//! `faultline_protocols::primary_backup`, the expected anomalies are in docs/targets.md).
//!
//! This module owns:
//! - the node task: one task owns the pure core and the state file, and loops over events
//!   (ticks, peer messages, client requests), handling each batch's `Ready` in order: persist
//!   and fsync first, then send messages, then answer clients (so nothing acknowledged, by a
//!   primary to its client or by a backup to its primary, is missing after kill -9);
//! - the state file `pb.log` ([`StateLog`]): checksummed records (the WAL's framing: `len u32
//!   LE | crc32 u32 LE | JSON`) of epochs, appended entries and whole-state rewrites; a torn last
//!   record is dropped on open, corruption before it refuses to start; a rewrite (compaction, or
//!   a full resync from the primary) replaces the file atomically;
//! - the HTTP API: `/kv/read|write|cas` and `/set/add|read` go to the primary. A backup
//!   forwards them to the primary it knows (one hop, bounded by the request timeout) unless the
//!   request carries `X-Faultline-No-Forward: 1`, in which case it answers 421 `not-leader`;
//!   with `--read-from replica` every node answers reads from its own copy (possibly stale).
//!   Peers exchange messages as `POST /peer/msg` (a JSON array of envelopes).

#![allow(clippy::result_large_err)] // handlers bail out with a ready `Response`

use crate::api::{
    self, bad_request, body, error, not_found, parse, CasBody, ElementBody, KeyBody, WriteBody, BODY_BYTES_MAX,
};
use crate::clock::NodeClock;
use crate::driver::{Driver, Wake};
use crate::server::NO_FORWARD_HEADER;
use crate::transport::Transport;
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use faultline_protocols::primary_backup::{
    Command, Config, Entry, Envelope, Epoch, Node, Persist, Reply, ReqId, Restore, Snapshot, Status,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

const STATE_FILE: &str = "pb.log";
/// A record longer than this is corruption (a whole-state rewrite is the largest).
const RECORD_BYTES_MAX: u32 = 256 << 20;
/// Events queued for the node task at most; beyond, peers' messages are dropped and clients
/// get 503 `unavailable`.
const EVENT_QUEUE_CAPACITY: usize = 8192;
/// Events handled per iteration (per fsync) at most.
const EVENTS_PER_ITERATION_MAX: usize = 2048;
/// Client requests in flight per node at most (waiting for the primary or for a forward).
const CLIENT_REQUESTS_MAX: usize = 4096;

// ------------------------------------------------------------------------- state file

#[derive(Serialize, Deserialize)]
#[serde(tag = "rec", rename_all = "kebab-case")]
enum Record {
    Epoch { epoch: Epoch },
    Entries { entries: Vec<Entry> },
    Rewrite { epoch: Epoch, snapshot: Snapshot, entries: Vec<Entry> },
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: corrupt at byte {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

fn frame(rec: &Record, out: &mut Vec<u8>) {
    let payload = serde_json::to_vec(rec).expect("records serialize");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// The node's durable state: an append-only file of records, rewritten whole when the core
/// says so.
pub struct StateLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
}

/// Replays records into what the core restarts from.
fn replay(r: &mut Restore, rec: Record) -> Result<(), String> {
    match rec {
        Record::Epoch { epoch } => r.epoch = epoch,
        Record::Entries { entries } => {
            let Some(first) = entries.first().map(|e| e.index) else { return Ok(()) };
            if first <= r.snapshot.index {
                return Err(format!("entry {first} is inside the snapshot (up to {})", r.snapshot.index));
            }
            r.entries.retain(|e| e.index < first);
            let last = r.entries.last().map_or(r.snapshot.index, |e| e.index);
            if first != last + 1 {
                return Err(format!("entry {first} does not follow entry {last}"));
            }
            r.entries.extend(entries);
        }
        Record::Rewrite { epoch, snapshot, entries } => *r = Restore { epoch, snapshot, entries },
    }
    Ok(())
}

impl StateLog {
    /// Opens (or creates) `dir/pb.log` and returns what it holds.
    pub fn open(dir: &Path) -> Result<(StateLog, Restore), StateError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(STATE_FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io_err(&path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StateError::Io { path, source: e }),
        }
        let mut restore = Restore::default();
        let mut off = 0usize;
        let mut torn_at = None;
        while off < bytes.len() {
            let corrupt = |reason: String| StateError::Corrupt { path: path.clone(), offset: off as u64, reason };
            if bytes.len() - off < 8 || bytes[off..].iter().all(|b| *b == 0) {
                torn_at = Some(off);
                break;
            }
            let len = u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().expect("4 bytes"));
            if len > RECORD_BYTES_MAX {
                return Err(corrupt(format!("record length {len} exceeds {RECORD_BYTES_MAX}")));
            }
            let end = off + 8 + len as usize;
            if end > bytes.len() {
                torn_at = Some(off); // a torn append: only possible at the tail
                break;
            }
            if crc32fast::hash(&bytes[off + 8..end]) != crc {
                if end < bytes.len() {
                    return Err(corrupt("checksum mismatch".into()));
                }
                torn_at = Some(off);
                break;
            }
            let rec: Record = serde_json::from_slice(&bytes[off + 8..end])
                .map_err(|e| corrupt(format!("checksum ok but payload unreadable: {e}")))?;
            replay(&mut restore, rec).map_err(corrupt)?;
            off = end;
        }
        if let Some(at) = torn_at {
            tracing::warn!(path = %path.display(), offset = at, "dropping a torn record at the end of the state file");
            let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
            f.set_len(at as u64).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
        Ok((StateLog { dir: dir.to_path_buf(), path, file }, restore))
    }

    /// Makes `ops` durable, in order: appends are written and fsynced once at the end; a
    /// rewrite replaces the file (temporary file, fsync, rename, fsync of the directory).
    pub fn persist(&mut self, ops: &[Persist]) -> Result<(), StateError> {
        let mut out = Vec::new();
        for op in ops {
            match op {
                Persist::Epoch(epoch) => frame(&Record::Epoch { epoch: epoch.clone() }, &mut out),
                Persist::Entries(entries) => frame(&Record::Entries { entries: entries.clone() }, &mut out),
                Persist::Rewrite { epoch, snapshot, entries } => {
                    // Whatever was queued before is part of the rewritten state.
                    out.clear();
                    let mut whole = Vec::new();
                    frame(
                        &Record::Rewrite { epoch: epoch.clone(), snapshot: snapshot.clone(), entries: entries.clone() },
                        &mut whole,
                    );
                    let tmp = self.path.with_extension("tmp");
                    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
                    f.write_all(&whole).map_err(io_err(&tmp))?;
                    f.sync_all().map_err(io_err(&tmp))?;
                    fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
                    File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_err(&self.dir))?;
                    self.file = OpenOptions::new().append(true).open(&self.path).map_err(io_err(&self.path))?;
                }
            }
        }
        if !out.is_empty() {
            self.file.write_all(&out).map_err(io_err(&self.path))?;
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------- node task

enum Event {
    Peer(Vec<Envelope>),
    Propose { cmd: Command, tx: oneshot::Sender<Reply> },
    Read { key: String, set: bool, local: bool, tx: oneshot::Sender<Reply> },
}

pub struct PbConfig {
    pub id: String,
    pub listen: SocketAddr,
    pub peers: BTreeMap<String, SocketAddr>,
    pub data_dir: PathBuf,
    pub admin_token: String,
    pub sync: bool,
    pub read_from_replica: bool,
    pub bugs: faultline_protocols::primary_backup::Bugs,
    pub bug_names: Vec<String>,
    pub tick: Duration,
    pub heartbeat_ticks: u32,
    pub failover_ticks: u32,
    pub request_timeout: Duration,
    pub peer_client: reqwest::Client,
    pub forward_client: reqwest::Client,
}

struct Loop {
    node: Node,
    log: StateLog,
    transport: Transport<Envelope>,
    waiting: HashMap<ReqId, oneshot::Sender<Reply>>,
    next_req: ReqId,
}

impl Loop {
    fn register(&mut self, tx: oneshot::Sender<Reply>) -> ReqId {
        self.next_req += 1;
        // Bounded: the core answers every request it accepts (at once, at commit, or when it
        // steps down) and refuses beyond its pending limit.
        self.waiting.insert(self.next_req, tx);
        self.next_req
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Peer(envs) => {
                for e in envs {
                    self.node.step(e);
                }
            }
            Event::Propose { cmd, tx } => {
                let id = self.register(tx);
                self.node.propose(id, cmd);
            }
            Event::Read { key, set, local, tx } => {
                let id = self.register(tx);
                if set {
                    self.node.read_set(id, &key, local);
                } else {
                    self.node.read(id, &key, local);
                }
            }
        }
    }

    fn process_ready(&mut self) {
        self.node.flush();
        let rd = self.node.take_ready();
        if rd.is_empty() {
            return;
        }
        if !rd.persist.is_empty() {
            if let Err(e) = tokio::task::block_in_place(|| self.log.persist(&rd.persist)) {
                // Acknowledging without durable state would break the guarantees: stop here.
                tracing::error!(error = %e, "cannot persist state; exiting");
                std::process::exit(70);
            }
        }
        for m in rd.messages {
            self.transport.send(m);
        }
        for (id, reply) in rd.replies {
            if let Some(tx) = self.waiting.remove(&id) {
                let _ = tx.send(reply); // the client may have timed out and gone
            }
        }
    }
}

async fn run_loop(mut lp: Loop, tick: Duration, rx: mpsc::Receiver<Event>, status_tx: watch::Sender<Status>) {
    let mut driver = Driver::new(rx, Some(tick), EVENTS_PER_ITERATION_MAX);
    while let Some(wake) = driver.next().await {
        match wake {
            Wake::Tick => lp.node.tick(),
            Wake::Batch(events) => events.into_iter().for_each(|ev| lp.handle(ev)),
        }
        lp.process_ready();
        let st = lp.node.status();
        status_tx.send_if_modified(|old| {
            if *old == st {
                return false;
            }
            if old.role != st.role || old.epoch != st.epoch {
                tracing::info!(state = st.role.as_str(), epoch = st.epoch.n, primary = ?st.primary, last_index = st.last_index, "primary-backup state");
            }
            *old = st;
            true
        });
    }
}

// ------------------------------------------------------------------------- HTTP

struct Shared {
    id: String,
    admin_token: String,
    clock: NodeClock,
    tx: mpsc::Sender<Event>,
    status: watch::Receiver<Status>,
    peers: BTreeMap<String, SocketAddr>,
    forward_client: reqwest::Client,
    request_timeout: Duration,
    sync: bool,
    read_from_replica: bool,
    bug_names: Vec<String>,
    client_slots: tokio::sync::Semaphore,
}

type St = Arc<Shared>;

/// Runs a primary-backup node until the server fails.
pub async fn run(cfg: PbConfig) -> anyhow::Result<()> {
    let (log, restore) = StateLog::open(&cfg.data_dir).context("opening the data directory")?;
    tracing::info!(
        id = %cfg.id,
        listen = %cfg.listen,
        epoch = restore.epoch.n,
        snapshot_index = restore.snapshot.index,
        entries = restore.entries.len(),
        sync = cfg.sync,
        read_from_replica = cfg.read_from_replica,
        "starting primary-backup node"
    );
    let mut pc = Config::new(cfg.id.clone(), cfg.peers.keys().cloned().collect());
    pc.heartbeat_ticks = cfg.heartbeat_ticks;
    pc.failover_ticks = cfg.failover_ticks;
    pc.sync = cfg.sync;
    pc.bugs = cfg.bugs;
    let node = Node::new(pc, restore);
    let (status_tx, status_rx) = watch::channel(node.status());
    let transport = Transport::start(&cfg.id, &cfg.peers, cfg.peer_client.clone());
    let (tx, rx) = mpsc::channel(EVENT_QUEUE_CAPACITY);
    let lp = Loop { node, log, transport, waiting: HashMap::new(), next_req: 0 };
    tokio::spawn(run_loop(lp, cfg.tick, rx, status_tx));
    let shared = Arc::new(Shared {
        id: cfg.id.clone(),
        admin_token: cfg.admin_token.clone(),
        clock: NodeClock::default(),
        tx,
        status: status_rx,
        peers: cfg.peers.clone(),
        forward_client: cfg.forward_client.clone(),
        request_timeout: cfg.request_timeout,
        sync: cfg.sync,
        read_from_replica: cfg.read_from_replica,
        bug_names: cfg.bug_names.clone(),
        client_slots: tokio::sync::Semaphore::new(CLIENT_REQUESTS_MAX),
    });
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    tracing::info!(addr = %cfg.listen, "serving");
    axum::serve(listener, router(shared)).await.context("HTTP server")?;
    Ok(())
}

fn router(s: St) -> Router {
    Router::new()
        .route("/kv/read", post(kv_read))
        .route("/kv/write", post(kv_write))
        .route("/kv/cas", post(kv_cas))
        .route("/set/add", post(set_add))
        .route("/set/read", post(set_read))
        .route("/admin/status", get(admin_status))
        .route("/admin/clock", post(admin_clock))
        .route("/peer/msg", post(peer_msg))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(s)
}

enum Op {
    Read { key: String, set: bool },
    Update(Command),
}

async fn kv_read(State(s): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let b = body!(KeyBody, body, r#"{"key": string}"#);
    client(&s, "kv/read", Op::Read { key: b.key, set: false }, &headers, body).await
}

async fn kv_write(State(s): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let b = body!(WriteBody, body, r#"{"key": string, "value": integer}"#);
    client(&s, "kv/write", Op::Update(Command::Write { key: b.key, value: b.value }), &headers, body).await
}

async fn kv_cas(State(s): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let b = body!(CasBody, body, r#"{"key": string, "from": integer or null, "to": integer}"#);
    client(&s, "kv/cas", Op::Update(Command::Cas { key: b.key, from: b.from, to: b.to }), &headers, body).await
}

async fn set_add(State(s): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let b = body!(ElementBody, body, r#"{"key": string, "element": integer}"#);
    client(&s, "set/add", Op::Update(Command::SetAdd { key: b.key, element: b.element }), &headers, body).await
}

async fn set_read(State(s): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let b = body!(KeyBody, body, r#"{"key": string}"#);
    client(&s, "set/read", Op::Read { key: b.key, set: true }, &headers, body).await
}

fn timeout(s: &Shared) -> Response {
    api::timeout(s.request_timeout)
}

/// One client request: to the core (the primary's, or this replica's for local reads), and
/// from a backup one hop to the primary it knows.
async fn client(s: &Shared, path: &str, op: Op, headers: &HeaderMap, body: Bytes) -> Response {
    let Ok(_slot) = s.client_slots.try_acquire() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            format!("more than {CLIENT_REQUESTS_MAX} client requests in flight"),
        );
    };
    let deadline = Instant::now() + s.request_timeout;
    let no_forward = headers.get(NO_FORWARD_HEADER).is_some_and(|v| v.as_bytes() == b"1");
    let (tx, rx) = oneshot::channel();
    let ev = match op {
        Op::Read { key, set } => Event::Read { key, set, local: s.read_from_replica, tx },
        Op::Update(cmd) => Event::Propose { cmd, tx },
    };
    if s.tx.try_send(ev).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            "node overloaded: request queue full",
        );
    }
    let reply = match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "lost-leadership",
                false,
                None,
                "request dropped by the node task",
            )
        }
        Err(_) => return timeout(s),
    };
    match reply {
        Reply::Value(v) => Json(json!({"value": v})).into_response(),
        Reply::Elements(e) => Json(json!({"elements": e})).into_response(),
        Reply::Done => Json(json!({})).into_response(),
        Reply::CasMismatch { current } => {
            let msg = match current {
                Some(c) => format!("the key holds {c}"),
                None => "the key was never written".to_string(),
            };
            error(StatusCode::CONFLICT, "cas-mismatch", true, None, msg)
        }
        Reply::NotPrimary { primary: Some(p) } if !no_forward => forward(s, path, &p, body, deadline).await,
        Reply::NotPrimary { primary: Some(p) } => {
            let addr = s.peers.get(&p).map(|a| a.to_string());
            error(
                StatusCode::MISDIRECTED_REQUEST,
                "not-leader",
                true,
                addr,
                format!("not the primary; the primary is {p}"),
            )
        }
        Reply::NotPrimary { primary: None } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            "no primary known (waiting for a failover)",
        ),
        Reply::Unavailable { reason } => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, reason),
        Reply::LostPrimacy => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "lost-leadership",
            false,
            None,
            "logged, then this node stopped being the primary before the write was acknowledged",
        ),
    }
}

/// One hop to the primary, bounded by the request's deadline; its answer is relayed.
async fn forward(s: &Shared, path: &str, primary: &str, body: Bytes, deadline: Instant) -> Response {
    api::forward_once(
        &s.forward_client,
        "primary",
        primary,
        s.peers.get(primary),
        path,
        body,
        deadline,
        s.request_timeout,
    )
    .await
}

async fn peer_msg(State(s): State<St>, body: Bytes) -> Response {
    let envs: Vec<Envelope> = match parse(&body, "a JSON array of primary-backup envelopes") {
        Ok(e) => e,
        Err(r) => return r,
    };
    if let Some(e) = envs.iter().find(|e| !s.peers.contains_key(&e.from) || e.to != s.id) {
        return bad_request(format!("envelope from {:?} to {:?}: not a member, or not for this node", e.from, e.to));
    }
    match s.tx.try_send(Event::Peer(envs)) {
        Ok(()) => Json(json!({})).into_response(),
        Err(_) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, "event queue full; messages dropped")
        }
    }
}

async fn admin_status(State(s): State<St>, headers: HeaderMap) -> Response {
    if let Err(r) = api::authorized(&s.admin_token, &headers) {
        return r;
    }
    let st = s.status.borrow().clone();
    let leader_addr = st.primary.as_ref().and_then(|l| s.peers.get(l)).map(|a| a.to_string());
    Json(json!({
        "id": s.id,
        "role": "primary-backup",
        "state": st.role.as_str(),
        "term": st.epoch.n,
        "leader": st.primary,
        "leader_addr": leader_addr,
        "epoch": st.epoch,
        "last_index": st.last_index,
        "commit_index": st.commit_index,
        "applied_index": st.applied_index,
        "base_index": st.base_index,
        "rank": st.rank,
        "promotions": st.promotions,
        "full_syncs": st.full_syncs,
        "sync": s.sync,
        "read_from": if s.read_from_replica { "replica" } else { "primary" },
        "bugs": s.bug_names,
        "clock": s.clock.view(),
    }))
    .into_response()
}

async fn admin_clock(State(s): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = api::authorized(&s.admin_token, &headers) {
        return r;
    }
    api::set_clock(&s.clock, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, v: i64) -> Entry {
        Entry { index, epoch: Epoch { n: 1, primary: "n1".into() }, cmd: Command::Write { key: "k".into(), value: v } }
    }

    #[test]
    fn records_survive_reopen_a_torn_tail_is_dropped_and_corruption_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e1 = Epoch { n: 1, primary: "n1".into() };
        {
            let (mut log, r) = StateLog::open(dir.path()).expect("open");
            assert_eq!(r.entries.len(), 0);
            log.persist(&[Persist::Epoch(e1.clone()), Persist::Entries(vec![entry(1, 10), entry(2, 20)])])
                .expect("persist");
            // An entry at an index already on disk replaces it and what follows.
            log.persist(&[Persist::Entries(vec![entry(2, 21), entry(3, 30)])]).expect("persist");
        }
        let path = dir.path().join(STATE_FILE);
        let full = fs::read(&path).expect("read");
        let (_, r) = StateLog::open(dir.path()).expect("reopen");
        assert_eq!(r.epoch, e1);
        assert_eq!(r.entries, vec![entry(1, 10), entry(2, 21), entry(3, 30)]);
        // Every cut inside the last record is a torn tail: dropped, the rest kept.
        let last_len = {
            let mut off = 0;
            let mut last = 0;
            while off < full.len() {
                last = off;
                off += 8 + u32::from_le_bytes(full[off..off + 4].try_into().expect("4")) as usize;
            }
            last
        };
        for cut in last_len + 1..full.len() {
            fs::write(&path, &full[..cut]).expect("write");
            let (_, r) = StateLog::open(dir.path()).expect("torn opens");
            assert_eq!(r.entries, vec![entry(1, 10), entry(2, 20)], "cut {cut}");
            assert_eq!(fs::metadata(&path).expect("meta").len(), last_len as u64);
        }
        let mut bad = full.clone();
        bad[10] ^= 1;
        fs::write(&path, &bad).expect("write");
        assert!(matches!(StateLog::open(dir.path()), Err(StateError::Corrupt { offset: 0, .. })));
    }

    #[test]
    fn a_rewrite_replaces_everything_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e2 = Epoch { n: 2, primary: "n2".into() };
        {
            let (mut log, _) = StateLog::open(dir.path()).expect("open");
            log.persist(&[Persist::Entries(vec![entry(1, 10), entry(2, 20)])]).expect("persist");
            let mut snapshot = Snapshot { index: 5, epoch: e2.clone(), data: Default::default() };
            snapshot.data.kv.insert("k".into(), 50);
            log.persist(&[
                Persist::Entries(vec![entry(3, 30)]),
                Persist::Rewrite { epoch: e2.clone(), snapshot, entries: vec![entry(6, 60)] },
                Persist::Entries(vec![entry(7, 70)]),
            ])
            .expect("persist");
        }
        let (_, r) = StateLog::open(dir.path()).expect("reopen");
        assert_eq!(r.epoch, e2);
        assert_eq!(r.snapshot.index, 5);
        assert_eq!(r.snapshot.data.kv["k"], 50);
        assert_eq!(r.entries, vec![entry(6, 60), entry(7, 70)]);
    }
}
