//! The `paxos` role's runtime: CASPaxos (`faultline_protocols::paxos`) with every node both a
//! proposer and an acceptor, so any node answers any client request (no leader).
//!
//! Each client operation runs proposer rounds on its key: phase 1 (prepare) to every member,
//! phase 2 (accept) with the change applied to the highest accepted value, answered once a
//! majority accepted. The acceptor lives in a [`Store`] task that fsyncs its promises and
//! acceptances (and the proposer's ballot reservations) before answering. Outcomes map onto
//! docs/node-api.md: a round that never sent an accept is a definite failure (503); one whose
//! accept went out but did not reach a majority in time is indefinite (504), except for changes
//! that alter nothing (a read, a mismatching cas), which are retried or failed definitely.
//! Local requests on the same key take turns (a per-key lock) so that one node's own clients do
//! not duel; conflicts between nodes bump the ballot and back off for a random, growing delay.

use crate::leaderless::{
    check_key, lock, BoxFuture, ClientOp, DurableLog, KvRole, Machine, PeerError, Peers, RoleReply, Store,
};
use axum::body::Bytes;
use faultline_protocols::paxos::{
    Acceptor, AcceptorKey, Ballot, Bugs, Change, Outcome, Progress, Proposer, Request, Response, Round,
};
use faultline_protocols::raft::NodeId;
use rand::Rng;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Rounds one client operation may start at most (each bounded by the request deadline too).
const ROUNDS_MAX: u32 = 12;
/// Random back-off after a conflict: uniform in [0, cap], the cap doubling per attempt from
/// 5 ms (about one round on a local network) up to this.
const BACKOFF_MS_MAX: u64 = 100;
/// Keys with a local turn-taking lock at most; beyond, requests go without one (still safe).
const KEY_LOCKS_MAX: usize = 65_536;

impl Machine for Acceptor {
    type Req = Request;
    type Resp = Response;
    type State = AcceptorKey;
    fn handle(&mut self, req: &Request) -> (Response, Option<(String, AcceptorKey)>) {
        Acceptor::handle(self, req)
    }
    fn keys(&self) -> &BTreeMap<String, AcceptorKey> {
        Acceptor::keys(self)
    }
}

pub struct PaxosRole {
    peers: Peers<Acceptor>,
    /// Held across the fsync of a new ballot reservation, so that no task sends a ballot whose
    /// reservation is not durable yet.
    proposer: tokio::sync::Mutex<Proposer>,
    /// The proposer's counter, for `/admin/status` (which must not wait on the lock above).
    ballot_counter: AtomicU64,
    bugs: Bugs,
    /// BUG ignore-accepted only: the value this node last learned per key.
    cache: Mutex<HashMap<String, Option<i64>>>,
    key_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    rounds: AtomicU64,
    conflicts: AtomicU64,
    keys_restored: usize,
}

/// Opens the acceptor's log in `data_dir` and starts the role.
pub fn start(
    id: NodeId,
    peers: &BTreeMap<NodeId, SocketAddr>,
    data_dir: &Path,
    client: reqwest::Client,
    bugs: Bugs,
) -> anyhow::Result<Arc<PaxosRole>> {
    let (log, restored) = DurableLog::open::<AcceptorKey>(data_dir, "paxos.log")?;
    tracing::info!(id = %id, keys = restored.keys.len(), reserved = restored.reserved, records = restored.records, bugs = ?bugs, "starting paxos node");
    let keys_restored = restored.keys.len();
    let store = Store::spawn(Acceptor::restore(restored.keys), log, restored.reserved);
    Ok(Arc::new(PaxosRole {
        proposer: tokio::sync::Mutex::new(Proposer::new(id.clone(), restored.reserved)),
        ballot_counter: AtomicU64::new(restored.reserved),
        peers: Peers::new(id, peers, client, store),
        bugs,
        cache: Mutex::new(HashMap::new()),
        key_locks: Mutex::new(HashMap::new()),
        rounds: AtomicU64::new(0),
        conflicts: AtomicU64::new(0),
        keys_restored,
    }))
}

fn unavailable(msg: impl Into<String>) -> RoleReply {
    RoleReply::Unavailable(msg.into())
}

impl PaxosRole {
    fn key_lock(&self, key: &str) -> Option<Arc<tokio::sync::Mutex<()>>> {
        let mut locks = lock(&self.key_locks);
        // Forget locks nobody holds or waits for (only the map refers to them).
        if locks.len() >= KEY_LOCKS_MAX / 2 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        if locks.len() >= KEY_LOCKS_MAX && !locks.contains_key(key) {
            return None;
        }
        Some(locks.entry(key.to_string()).or_default().clone())
    }

    /// Runs one round to its end (chosen, failed, or the deadline).
    async fn run_round(&self, round: &mut Round, deadline: Instant) -> Progress {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        let mut set = self.peers.fan_out(&round.prepare(), deadline);
        let mut accept_sent = false;
        loop {
            let next = match tokio::time::timeout_at(deadline, set.join_next()).await {
                Ok(n) => n,
                Err(_) => return Progress::Failed { seen: None, accept_sent },
            };
            let p = match next {
                Some(Ok((from, Some(resp)))) => round.on_response(from, resp),
                Some(Ok((from, None))) => round.on_no_answer(from),
                Some(Err(_)) => continue, // a call task panicked or was cancelled: no answer
                // Every member answered and the round still did not decide: cannot happen
                // (answers + refusals cover all members), but never hang on it.
                None => return Progress::Failed { seen: None, accept_sent },
            };
            match p {
                Progress::Pending => {}
                Progress::Accept(req) => {
                    // Dropping the phase-1 set cancels its stragglers: phase 1 is over.
                    set = self.peers.fan_out(&req, deadline);
                    accept_sent = true;
                }
                done => return done,
            }
        }
    }

    async fn execute(&self, key: String, change: Change, deadline: Instant) -> RoleReply {
        let key_turn = self.key_lock(&key);
        let _turn = match &key_turn {
            Some(l) => match tokio::time::timeout_at(deadline, l.lock()).await {
                Ok(g) => Some(g),
                Err(_) => return unavailable("no turn on this key before the deadline (local requests queued on it)"),
            },
            None => None,
        };
        let mut above: Option<Ballot> = None;
        for attempt in 0..ROUNDS_MAX {
            if Instant::now() >= deadline {
                break;
            }
            let ballot = {
                let mut p = self.proposer.lock().await;
                let (ballot, reserve) = p.next_ballot(above.as_ref());
                if let Some(upto) = reserve {
                    // Durable before this or any later ballot it covers is sent (the lock is
                    // held meanwhile, so no other task can take one either).
                    if !self.peers.local.reserve(upto).await {
                        return unavailable("cannot persist a ballot reservation");
                    }
                }
                self.ballot_counter.store(p.counter(), Ordering::Relaxed);
                ballot
            };
            let cache = if self.bugs.ignore_accepted { lock(&self.cache).get(&key).copied().flatten() } else { None };
            let mut round = Round::new(key.clone(), ballot, change.clone(), self.peers.members.len(), self.bugs, cache);
            match self.run_round(&mut round, deadline).await {
                Progress::Chosen { value, outcome } => {
                    if self.bugs.ignore_accepted {
                        lock(&self.cache).insert(key.clone(), value);
                    }
                    return match outcome {
                        Outcome::Value(v) => RoleReply::Value(v),
                        Outcome::Done => RoleReply::Done,
                        Outcome::CasMismatch { current } => RoleReply::CasMismatch { current },
                    };
                }
                Progress::Failed { seen, accept_sent } => {
                    let identity = matches!(change, Change::Read) || round_was_identity(&round);
                    if accept_sent && !identity {
                        return RoleReply::Timeout(
                            "accept sent but no majority accepted in time; the operation may or may not take effect"
                                .into(),
                        );
                    }
                    match seen {
                        Some(s) => {
                            self.conflicts.fetch_add(1, Ordering::Relaxed);
                            self.proposer.lock().await.observe(&s);
                            above = Some(s);
                        }
                        None if Instant::now() < deadline => {
                            return unavailable(format!(
                                "no majority of {} acceptors answered",
                                self.peers.members.len()
                            ));
                        }
                        None => break,
                    }
                    let cap = (5u64 << attempt.min(6)).min(BACKOFF_MS_MAX);
                    let wait = Duration::from_millis(rand::rng().random_range(0..=cap));
                    tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
                }
                other => unreachable!("run_round ends chosen or failed, not {other:?}"),
            }
        }
        unavailable("no round won before the deadline (contention or no quorum); nothing changed")
    }
}

/// A failed round whose proposal alters nothing (a mismatching cas) leaves nothing to be
/// chosen on its behalf: the operation did not take effect.
fn round_was_identity(round: &Round) -> bool {
    round.proposed().is_some_and(|(_, o)| !matches!(o, Outcome::Done))
}

impl KvRole for PaxosRole {
    fn client(&self, op: ClientOp, deadline: Instant) -> BoxFuture<'_, RoleReply> {
        Box::pin(async move {
            let (key, change) = match op {
                ClientOp::Read { key } => (key, Change::Read),
                ClientOp::Write { key, value } => (key, Change::Write { value }),
                ClientOp::Cas { key, from, to } => (key, Change::Cas { from, to }),
            };
            self.execute(key, change, deadline).await
        })
    }

    fn peer(&self, body: Bytes) -> BoxFuture<'_, Result<Value, PeerError>> {
        Box::pin(async move {
            let req: Request = serde_json::from_slice(&body)
                .map_err(|e| PeerError::Bad(format!("request body: {e}; expected a paxos prepare or accept")))?;
            let (Request::Prepare { key, .. } | Request::Accept { key, .. }) = &req;
            check_key(key).map_err(PeerError::Bad)?;
            match self.peers.local.apply(req).await {
                Some(resp) => Ok(serde_json::to_value(resp).expect("responses serialize")),
                None => Err(PeerError::Busy("acceptor queue full".into())),
            }
        })
    }

    fn status(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("state".into(), json!("proposer"));
        m.insert("leader".into(), Value::Null);
        m.insert("term".into(), Value::Null);
        m.insert("ballot_counter".into(), json!(self.ballot_counter.load(Ordering::Relaxed)));
        m.insert("rounds".into(), json!(self.rounds.load(Ordering::Relaxed)));
        m.insert("conflicts".into(), json!(self.conflicts.load(Ordering::Relaxed)));
        m.insert("keys_restored".into(), json!(self.keys_restored));
        m
    }
}
