//! Plumbing shared by the leaderless roles (`paxos`, `quorum`), where every node coordinates
//! client requests itself and talks to its peers by request/response RPC (`POST /peer/rpc`):
//!
//! - [`KvRole`]: what the HTTP server calls for `/kv/*`, `/peer/rpc` and `/admin/status`.
//! - [`DurableLog`]: a checksummed append-only file of per-key state records (the WAL's
//!   framing: `len u32 LE | crc32 u32 LE | JSON`), fsynced before any answer that depends on
//!   it; a torn last record is dropped on open, corruption before the tail refuses to open; the
//!   file is rewritten (atomically) with the live state when it grows too long.
//! - [`Store`]: one task owning a role's local state machine ([`Machine`]) and its log: it
//!   applies a bounded batch of requests, persists and fsyncs their records once (group commit),
//!   then answers them.
//! - [`Peers`]: the RPC fan-out to every member (the local store directly, others over HTTP with
//!   sockets bound to the node's address), each call bounded by the request's deadline.

use crate::driver::{Driver, Wake};
use axum::body::Bytes;
use faultline_protocols::raft::NodeId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A client operation as the server parsed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp {
    Read { key: String },
    Write { key: String, value: i64 },
    Cas { key: String, from: Option<i64>, to: i64 },
}

/// A leaderless role's answer; the server maps it onto docs/node-api.md's statuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleReply {
    Value(Option<i64>),
    Done,
    CasMismatch {
        current: Option<i64>,
    },
    /// 503, definite: the operation certainly did not take effect.
    Unavailable(String),
    /// 504, indefinite: it may or may not take effect.
    Timeout(String),
    /// 501, definite: this role does not offer the operation.
    Unsupported(String),
}

/// Why a peer RPC got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerError {
    /// Malformed (400).
    Bad(String),
    /// Overloaded (503).
    Busy(String),
}

/// A role that answers the client API on any node.
pub trait KvRole: Send + Sync {
    fn client(&self, op: ClientOp, deadline: Instant) -> BoxFuture<'_, RoleReply>;
    /// Handles one peer RPC body.
    fn peer(&self, body: Bytes) -> BoxFuture<'_, Result<serde_json::Value, PeerError>>;
    /// Role-specific fields of `/admin/status` (`state`, `leader`, ...).
    fn status(&self) -> serde_json::Map<String, serde_json::Value>;
}

/// The key rule of docs/node-api.md, for peer requests too.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > crate::api::KEY_BYTES_MAX {
        return Err(format!("key: must be a non-empty string of at most {} bytes", crate::api::KEY_BYTES_MAX));
    }
    Ok(())
}

/// Locks a std mutex; a poisoned one (a panic while held) already ended the process (the
/// panic hook exits), so its data is taken as is.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ------------------------------------------------------------------------- durable log

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: corrupt record at byte offset {offset}: {reason} (and more data follows, so this is not a torn tail)"
    )]
    Corrupt { path: PathBuf, offset: u64, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

/// One record: a key's new state, or a reservation of ballot counters (paxos).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "rec", rename_all = "kebab-case")]
pub enum Record<V> {
    Put { key: String, state: V },
    Reserve { upto: u64 },
}

/// What the log held.
pub struct Restored<V> {
    pub keys: BTreeMap<String, V>,
    pub reserved: u64,
    pub records: usize,
    pub torn_at: Option<u64>,
}

const RECORD_BYTES_MAX: u32 = 1 << 20;
/// Rewrite the file when it holds more than this many records beyond twice the live keys.
const REWRITE_SLACK_RECORDS: usize = 50_000;

pub struct DurableLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    records: usize,
}

fn frame<V: Serialize>(rec: &Record<V>, out: &mut Vec<u8>) {
    let payload = serde_json::to_vec(rec).expect("records serialize");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

fn fsync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

impl DurableLog {
    /// Opens (or creates) `dir/name` and returns its state.
    pub fn open<V: DeserializeOwned>(dir: &Path, name: &str) -> Result<(DurableLog, Restored<V>), LogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(name);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io_err(&path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::Io { path, source: e }),
        }
        let mut r = Restored { keys: BTreeMap::new(), reserved: 0, records: 0, torn_at: None };
        let mut off = 0usize;
        while off < bytes.len() {
            let corrupt = |reason: String| LogError::Corrupt { path: path.clone(), offset: off as u64, reason };
            if bytes[off..].iter().all(|b| *b == 0) {
                r.torn_at = Some(off as u64); // allocated, never written
                break;
            }
            if bytes.len() - off < 8 {
                r.torn_at = Some(off as u64);
                break;
            }
            let len = u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().expect("4 bytes"));
            if len > RECORD_BYTES_MAX {
                return Err(corrupt(format!("record length {len} exceeds {RECORD_BYTES_MAX}")));
            }
            let end = off + 8 + len as usize;
            if end > bytes.len() {
                r.torn_at = Some(off as u64); // a torn append: only possible at the tail
                break;
            }
            if crc32fast::hash(&bytes[off + 8..end]) != crc {
                if end < bytes.len() {
                    return Err(corrupt("checksum mismatch".into()));
                }
                r.torn_at = Some(off as u64);
                break;
            }
            match serde_json::from_slice::<Record<V>>(&bytes[off + 8..end]) {
                Ok(Record::Put { key, state }) => {
                    r.keys.insert(key, state);
                }
                Ok(Record::Reserve { upto }) => r.reserved = r.reserved.max(upto),
                Err(e) => return Err(corrupt(format!("checksum ok but payload unreadable: {e}"))),
            }
            r.records += 1;
            off = end;
        }
        if let Some(at) = r.torn_at {
            tracing::warn!(path = %path.display(), offset = at, "dropping a torn record at the end of the log");
            let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
            f.set_len(at).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        fsync_dir(dir)?;
        let records = r.records;
        Ok((DurableLog { dir: dir.to_path_buf(), path, file, records }, r))
    }

    /// Appends records and fsyncs them.
    pub fn append<V: Serialize>(&mut self, recs: &[Record<V>]) -> Result<(), LogError> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for r in recs {
            frame(r, &mut out);
        }
        self.file.write_all(&out).map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.records += recs.len();
        Ok(())
    }

    /// When the file holds far more records than live keys, replaces it (temp file, fsync,
    /// rename, fsync of the directory) by one record per key plus the reservation.
    pub fn maybe_rewrite<V: Serialize>(&mut self, keys: &BTreeMap<String, V>, reserved: u64) -> Result<(), LogError> {
        if self.records <= 2 * keys.len() + REWRITE_SLACK_RECORDS {
            return Ok(());
        }
        let mut out = Vec::new();
        frame::<V>(&Record::Reserve { upto: reserved }, &mut out);
        for (key, state) in keys {
            // Serialize by reference: Record owns its fields, so frame a borrowed copy.
            let payload = serde_json::to_vec(&serde_json::json!({"rec": "put", "key": key, "state": state}))
                .expect("records serialize");
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            out.extend_from_slice(&payload);
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&out).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        fsync_dir(&self.dir)?;
        self.file = OpenOptions::new().append(true).open(&self.path).map_err(io_err(&self.path))?;
        self.records = keys.len() + 1;
        tracing::info!(keys = keys.len(), "log rewritten");
        Ok(())
    }
}

// ------------------------------------------------------------------------- store task

/// A role's local state machine (the paxos acceptor, the ABD replica).
pub trait Machine: Send + 'static {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    type State: Serialize + Clone + Send + 'static;
    /// Answers a request; a changed key's new state must be persisted before the answer.
    fn handle(&mut self, req: &Self::Req) -> (Self::Resp, Option<(String, Self::State)>);
    fn keys(&self) -> &BTreeMap<String, Self::State>;
}

enum Job<M: Machine> {
    Apply(M::Req, oneshot::Sender<M::Resp>),
    /// Persist a ballot reservation (answered once durable).
    Reserve(u64, oneshot::Sender<()>),
}

/// Requests queued for the store task at most; beyond, callers are refused at once.
pub const STORE_QUEUE_CAPACITY: usize = 8192;
/// Requests applied per fsync at most.
const STORE_BATCH_MAX: usize = 1024;

pub struct Store<M: Machine> {
    tx: mpsc::Sender<Job<M>>,
}

impl<M: Machine> Clone for Store<M> {
    fn clone(&self) -> Self {
        Store { tx: self.tx.clone() }
    }
}

impl<M: Machine> Store<M> {
    pub fn spawn(machine: M, log: DurableLog, reserved: u64) -> Store<M> {
        let (tx, rx) = mpsc::channel(STORE_QUEUE_CAPACITY);
        tokio::spawn(store_task(machine, log, reserved, rx));
        Store { tx }
    }

    /// Applies `req` durably; `None` if the store is overloaded or gone.
    pub async fn apply(&self, req: M::Req) -> Option<M::Resp> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(Job::Apply(req, tx)).ok()?;
        rx.await.ok()
    }

    /// Persists a reservation of ballot counters up to `upto`; `false` if it could not be queued.
    pub async fn reserve(&self, upto: u64) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Reserve(upto, tx)).await.is_err() {
            return false;
        }
        rx.await.is_ok()
    }
}

async fn store_task<M: Machine>(mut m: M, mut log: DurableLog, mut reserved: u64, rx: mpsc::Receiver<Job<M>>) {
    let mut driver = Driver::new(rx, None, STORE_BATCH_MAX);
    while let Some(Wake::Batch(jobs)) = driver.next().await {
        let mut recs: Vec<Record<M::State>> = Vec::new();
        let mut answers: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
        for job in jobs {
            match job {
                Job::Apply(req, tx) => {
                    let (resp, changed) = m.handle(&req);
                    if let Some((key, state)) = changed {
                        recs.push(Record::Put { key, state });
                    }
                    answers.push(Box::new(move || {
                        let _ = tx.send(resp); // the caller may have given up
                    }));
                }
                Job::Reserve(upto, tx) => {
                    reserved = reserved.max(upto);
                    recs.push(Record::Reserve { upto });
                    answers.push(Box::new(move || {
                        let _ = tx.send(());
                    }));
                }
            }
        }
        let res = tokio::task::block_in_place(|| {
            log.append(&recs)?;
            log.maybe_rewrite(m.keys(), reserved)
        });
        if let Err(e) = res {
            // Answering without durable state would break the protocol's guarantees.
            tracing::error!(error = %e, "cannot persist state; exiting");
            std::process::exit(70);
        }
        for a in answers {
            a();
        }
    }
}

// ------------------------------------------------------------------------- peers

/// Longest one peer RPC may take (also bounded by the client request's deadline).
pub const PEER_RPC_TIMEOUT: Duration = Duration::from_millis(1000);

/// The members a coordinator talks to.
pub struct Peers<M: Machine> {
    pub me: NodeId,
    /// Every member, this node included, in --peers order (sorted by id).
    pub members: Vec<NodeId>,
    urls: BTreeMap<NodeId, String>,
    client: reqwest::Client,
    pub local: Store<M>,
}

impl<M: Machine> Peers<M>
where
    M::Req: Serialize + Clone,
    M::Resp: DeserializeOwned,
{
    pub fn new(me: NodeId, peers: &BTreeMap<NodeId, SocketAddr>, client: reqwest::Client, local: Store<M>) -> Self {
        let urls = peers
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, a)| (id.clone(), format!("http://{a}/peer/rpc")))
            .collect();
        Peers { me, members: peers.keys().cloned().collect(), urls, client, local }
    }

    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// One request to one member; `None` when it did not answer in time (or at all).
    pub fn call(&self, to: &NodeId, req: M::Req, deadline: Instant) -> BoxFuture<'static, Option<M::Resp>> {
        if *to == self.me {
            let local = self.local.clone();
            return Box::pin(async move { tokio::time::timeout_at(deadline, local.apply(req)).await.ok().flatten() });
        }
        let url = self.urls.get(to).cloned();
        let client = self.client.clone();
        Box::pin(async move {
            let url = url?;
            let left = deadline.saturating_duration_since(Instant::now()).min(PEER_RPC_TIMEOUT);
            if left.is_zero() {
                return None;
            }
            let resp = client.post(url).json(&req).timeout(left).send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let bytes = tokio::time::timeout_at(deadline, resp.bytes()).await.ok()?.ok()?;
            serde_json::from_slice(&bytes).ok()
        })
    }

    /// Sends `req` to every member at once; the set yields (member, answer) as they come.
    pub fn fan_out(&self, req: &M::Req, deadline: Instant) -> JoinSet<(NodeId, Option<M::Resp>)> {
        let mut set = JoinSet::new();
        for m in &self.members {
            let fut = self.call(m, req.clone(), deadline);
            let id = m.clone();
            set.spawn(async move { (id, fut.await) });
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct S {
        v: i64,
    }

    fn put(key: &str, v: i64) -> Record<S> {
        Record::Put { key: key.into(), state: S { v } }
    }

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut log, r) = DurableLog::open::<S>(dir.path(), "state.log").expect("open");
            assert!(r.keys.is_empty());
            log.append(&[put("a", 1), put("b", 2)]).expect("append");
            log.append::<S>(&[Record::Reserve { upto: 2048 }]).expect("append");
            log.append(&[put("a", 3)]).expect("append");
        }
        let path = dir.path().join("state.log");
        let full = fs::read(&path).expect("read");
        let (_, r) = DurableLog::open::<S>(dir.path(), "state.log").expect("reopen");
        assert_eq!(r.keys.get("a"), Some(&S { v: 3 }));
        assert_eq!(r.reserved, 2048);
        assert_eq!(r.torn_at, None);
        // Every cut inside the last record is a torn tail: dropped, the rest kept.
        let mut offs = Vec::new();
        let mut off = 0;
        while off < full.len() {
            offs.push(off);
            off += 8 + u32::from_le_bytes(full[off..off + 4].try_into().expect("4")) as usize;
        }
        let last = *offs.last().expect("records");
        for cut in last + 1..full.len() {
            fs::write(&path, &full[..cut]).expect("write");
            let (_, r) = DurableLog::open::<S>(dir.path(), "state.log").expect("torn opens");
            assert_eq!(r.torn_at, Some(last as u64), "cut {cut}");
            assert_eq!(r.keys.get("a"), Some(&S { v: 1 }), "cut {cut}");
            assert_eq!(fs::metadata(&path).expect("meta").len(), last as u64);
        }
        // A bad checksum before the tail is corruption.
        let mut bad = full.clone();
        bad[10] ^= 1;
        fs::write(&path, &bad).expect("write");
        assert!(matches!(DurableLog::open::<S>(dir.path(), "state.log"), Err(LogError::Corrupt { offset: 0, .. })));
    }

    #[test]
    fn a_rewrite_keeps_the_live_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut keys = BTreeMap::new();
        {
            let (mut log, _) = DurableLog::open::<S>(dir.path(), "state.log").expect("open");
            let n = REWRITE_SLACK_RECORDS as i64 + 10;
            log.append(&(0..n).map(|i| put("k", i)).collect::<Vec<_>>()).expect("append");
            keys.insert("k".to_string(), S { v: n - 1 });
            // 50 010 records for one live key: beyond the slack, so rewritten to two records.
            log.maybe_rewrite(&keys, 77).expect("rewrite");
            assert_eq!(log.records, 2);
            log.append(&[put("z", 9)]).expect("append after rewrite");
        }
        let (_, r) = DurableLog::open::<S>(dir.path(), "state.log").expect("reopen");
        assert_eq!(r.records, 3);
        assert_eq!(r.reserved, 77);
        assert_eq!(r.keys.get("k"), Some(&S { v: REWRITE_SLACK_RECORDS as i64 + 9 }));
        assert_eq!(r.keys.get("z"), Some(&S { v: 9 }));
    }
}
