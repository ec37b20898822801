//! The `quorum` role's runtime: ABD majority replication (`faultline_protocols::quorum`), CP.
//! Every node is a replica and coordinates client requests itself:
//!
//! - write: ask every replica for its version, wait for a majority, pick (max counter + 1, own
//!   id); send the value to every replica and answer once a majority stored it.
//! - read: ask every replica, take the highest-versioned value of a majority; unless that whole
//!   majority already holds it, write it back to a majority first (ABD's write-back); answer.
//! - cas: refused with 501 `unsupported` (definite): ABD cannot implement it without consensus.
//!
//! A node that cannot hear from a majority (the minority side of a partition) answers 503
//! `unavailable` (definite) unless a write's second phase went out, then 504 (indefinite).
//! The replica's state is fsynced before it acknowledges (a replica forgetting an acknowledged
//! value after a crash would break the majority intersection).
//!
//! BUG `naive` (docs/targets.md): the textbook "consistent system": a write goes to every node
//! in turn (100 ms each at most), unversioned, and succeeds if a majority acknowledged (a failed
//! write is reported as a definite failure though some replicas applied it or still will); a read
//! asks every node in turn and returns the most common value if a majority agree, with no
//! versions and no write-back.

use crate::leaderless::{
    check_key, BoxFuture, ClientOp, DurableLog, KvRole, Machine, PeerError, Peers, RoleReply, Store,
};
use axum::body::Bytes;
use faultline_protocols::quorum::{
    highest, naive_read, next_version, write_back_needed, Call, CallState, Replica, Request, Response, Stored,
};
use faultline_protocols::raft::NodeId;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// BUG naive: how long the textbook loop waits for one node before counting it as failed. The
/// loop has no notion of a call in doubt: a call that timed out may still be applied later.
const NAIVE_CALL_TIMEOUT: Duration = Duration::from_millis(100);

impl Machine for Replica {
    type Req = Request;
    type Resp = Response;
    type State = Stored;
    fn handle(&mut self, req: &Request) -> (Response, Option<(String, Stored)>) {
        Replica::handle(self, req)
    }
    fn keys(&self) -> &BTreeMap<String, Stored> {
        Replica::keys(self)
    }
}

pub struct QuorumRole {
    peers: Peers<Replica>,
    /// This boot's epoch (persisted before serving) in the high 32 bits of every write's
    /// sequence number, so no two writes of this node share a version, across restarts too.
    epoch: u64,
    write_seq: AtomicU64,
    naive: bool,
    write_backs: AtomicU64,
    keys_restored: usize,
}

pub fn start(
    id: NodeId,
    peers: &BTreeMap<NodeId, SocketAddr>,
    data_dir: &Path,
    client: reqwest::Client,
    naive: bool,
) -> anyhow::Result<Arc<QuorumRole>> {
    let (mut log, restored) = DurableLog::open::<Stored>(data_dir, "quorum.log")?;
    let epoch = restored.reserved + 1;
    anyhow::ensure!(epoch < 1 << 31, "boot epoch {epoch} out of range");
    log.append::<Stored>(&[crate::leaderless::Record::Reserve { upto: epoch }])?;
    tracing::info!(id = %id, keys = restored.keys.len(), records = restored.records, naive, "starting quorum node");
    let keys_restored = restored.keys.len();
    let store = Store::spawn(Replica::restore(restored.keys), log, epoch);
    Ok(Arc::new(QuorumRole {
        peers: Peers::new(id, peers, client, store),
        epoch,
        write_seq: AtomicU64::new(0),
        naive,
        write_backs: AtomicU64::new(0),
        keys_restored,
    }))
}

enum Phase {
    Quorum(Call),
    /// No majority answered: (answers, members).
    NoQuorum(usize, usize),
}

impl QuorumRole {
    /// Sends `req` to every replica and waits for a majority of answers (or its impossibility,
    /// or the deadline).
    async fn call_majority(&self, req: &Request, deadline: Instant) -> Phase {
        let n = self.peers.members.len();
        let mut call = Call::new(n);
        let mut set = self.peers.fan_out(req, deadline);
        let mut answered = 0;
        loop {
            let next = match tokio::time::timeout_at(deadline, set.join_next()).await {
                Ok(Some(Ok(x))) => x,
                Ok(Some(Err(_))) => continue,
                Ok(None) | Err(_) => return Phase::NoQuorum(answered, n),
            };
            let state = match next {
                (from, Some(resp)) => {
                    answered += 1;
                    call.on_response(from, resp)
                }
                (from, None) => call.on_failure(from),
            };
            match state {
                CallState::Pending => {}
                CallState::Quorum => return Phase::Quorum(call),
                CallState::NoQuorum => return Phase::NoQuorum(answered, n),
            }
        }
    }

    async fn write(&self, key: String, value: i64, deadline: Instant) -> RoleReply {
        let got = match self.call_majority(&Request::Get { key: key.clone() }, deadline).await {
            Phase::Quorum(c) => c,
            Phase::NoQuorum(a, n) => {
                return RoleReply::Unavailable(format!(
                    "only {a} of {n} replicas answered; a majority is needed (nothing was written)"
                ))
            }
        };
        let n = self.write_seq.fetch_add(1, Ordering::Relaxed);
        assert!(n < 1 << 32, "more than 2^32 writes in one boot");
        let stored =
            Stored { version: next_version(got.stored(), &self.peers.me, self.epoch << 32 | n), value: Some(value) };
        match self.call_majority(&Request::Set { key, stored }, deadline).await {
            Phase::Quorum(_) => RoleReply::Done,
            Phase::NoQuorum(a, n) => RoleReply::Timeout(format!(
                "the value reached {a} of {n} replicas, not a majority; it may or may not take effect"
            )),
        }
    }

    async fn read(&self, key: String, deadline: Instant) -> RoleReply {
        let got = match self.call_majority(&Request::Get { key: key.clone() }, deadline).await {
            Phase::Quorum(c) => c,
            Phase::NoQuorum(a, n) => {
                return RoleReply::Unavailable(format!("only {a} of {n} replicas answered; a majority is needed"))
            }
        };
        let answers = got.stored();
        let h = highest(answers.iter().copied());
        if write_back_needed(answers.iter().copied(), &h) {
            self.write_backs.fetch_add(1, Ordering::Relaxed);
            let value = h.value;
            if let Phase::NoQuorum(a, n) = self.call_majority(&Request::Set { key, stored: h }, deadline).await {
                // A read changes nothing of its own, so failing it is definite.
                return RoleReply::Unavailable(format!("write-back reached {a} of {n} replicas, not a majority"));
            }
            return RoleReply::Value(value);
        }
        RoleReply::Value(h.value)
    }

    /// BUG naive: the members in the textbook loop's order, starting with this node (its own
    /// copy first, then the next ids, wrapping around).
    fn naive_order(&self) -> impl Iterator<Item = &NodeId> {
        let me = self.peers.members.iter().position(|m| *m == self.peers.me).unwrap_or(0);
        self.peers.members.iter().cycle().skip(me).take(self.peers.members.len())
    }

    /// BUG naive: every node in turn, as the textbook's loop does.
    async fn naive_write(&self, key: String, value: i64, deadline: Instant) -> RoleReply {
        let mut ok = 0;
        for m in self.naive_order() {
            let until = deadline.min(Instant::now() + NAIVE_CALL_TIMEOUT);
            if self.peers.call(m, Request::Put { key: key.clone(), value: Some(value) }, until).await.is_some() {
                ok += 1;
            }
        }
        if ok >= self.peers.majority() {
            RoleReply::Done
        } else {
            RoleReply::Unavailable(format!(
                "failed to achieve consistency: {ok} of {} nodes acknowledged",
                self.peers.members.len()
            ))
        }
    }

    async fn naive_read(&self, key: String, deadline: Instant) -> RoleReply {
        let mut values = Vec::new();
        for m in self.naive_order() {
            let until = deadline.min(Instant::now() + NAIVE_CALL_TIMEOUT);
            if let Some(Response::Got { stored }) = self.peers.call(m, Request::Get { key: key.clone() }, until).await {
                values.push(stored.value);
            }
        }
        match naive_read(&values, self.peers.majority()) {
            Some(v) => RoleReply::Value(v),
            None => RoleReply::Unavailable(format!(
                "failed to achieve consistency: no value held by a majority among {values:?}"
            )),
        }
    }
}

impl KvRole for QuorumRole {
    fn client(&self, op: ClientOp, deadline: Instant) -> BoxFuture<'_, RoleReply> {
        Box::pin(async move {
            match op {
                ClientOp::Cas { .. } => RoleReply::Unsupported(
                    "the quorum role (ABD) has no compare-and-set: it needs consensus; use --role paxos or raft".into(),
                ),
                ClientOp::Write { key, value } if self.naive => self.naive_write(key, value, deadline).await,
                ClientOp::Read { key } if self.naive => self.naive_read(key, deadline).await,
                ClientOp::Write { key, value } => self.write(key, value, deadline).await,
                ClientOp::Read { key } => self.read(key, deadline).await,
            }
        })
    }

    fn peer(&self, body: Bytes) -> BoxFuture<'_, Result<Value, PeerError>> {
        Box::pin(async move {
            let req: Request = serde_json::from_slice(&body)
                .map_err(|e| PeerError::Bad(format!("request body: {e}; expected a quorum get, set or put")))?;
            let (Request::Get { key } | Request::Set { key, .. } | Request::Put { key, .. }) = &req;
            check_key(key).map_err(PeerError::Bad)?;
            match self.peers.local.apply(req).await {
                Some(resp) => Ok(serde_json::to_value(resp).expect("responses serialize")),
                None => Err(PeerError::Busy("replica queue full".into())),
            }
        })
    }

    fn status(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("state".into(), json!("replica"));
        m.insert("leader".into(), Value::Null);
        m.insert("term".into(), Value::Null);
        m.insert("mode".into(), json!(if self.naive { "naive" } else { "abd" }));
        m.insert("write_backs".into(), json!(self.write_backs.load(Ordering::Relaxed)));
        m.insert("keys_restored".into(), json!(self.keys_restored));
        m
    }
}
