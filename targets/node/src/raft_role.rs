//! The `raft` role's runtime: one task owns the pure Raft core and the WAL, and loops over
//! events (ticks, peer messages, client requests). Each iteration drains a bounded batch of
//! events, then handles the core's `Ready` in the order Raft's safety needs: persist (fsync)
//! first, then send messages, then answer clients. Batching many events per fsync is what gives
//! group commit.

use crate::clock::NodeClock;
use crate::driver::{Driver, Wake};
use crate::transport::Transport;
use crate::wal::Wal;
use faultline_protocols::raft::{txn, Command, Config, Envelope, MicroOp, Raft, Ready, Reply, ReqId, Restore, Status};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

pub enum Event {
    Peer(Vec<Envelope>),
    Propose { cmd: Command, tx: oneshot::Sender<Reply> },
    Read { key: String, tx: oneshot::Sender<Reply> },
}

/// Events queued for the Raft task at most; beyond, peers' messages are dropped and clients get
/// 503 `unavailable`.
pub const EVENT_QUEUE_CAPACITY: usize = 8192;
/// Events handled per iteration (per fsync) at most.
const EVENTS_PER_ITERATION_MAX: usize = 2048;

#[derive(Clone)]
pub struct RaftHandle {
    pub tx: mpsc::Sender<Event>,
    pub status: watch::Receiver<Status>,
}

/// The node's transaction bugs, applied by this runtime before proposing (docs/targets.md).
#[derive(Clone, Copy, Debug, Default)]
pub struct TxnBugs {
    /// `txn-read-committed`: reads evaluated at proposal time ([`txn::read_at_proposal`]).
    pub read_committed: bool,
    /// `txn-snapshot`: reads at proposal time plus first-committer-wins on the written keys
    /// ([`txn::snapshot_at_proposal`]).
    pub snapshot: bool,
    /// `txn-dirty`: reads see the writes of unanswered transactions too
    /// ([`txn::dirty_at_proposal`]).
    pub dirty: bool,
}

pub fn spawn(
    cfg: Config,
    wal: Wal,
    restore: Restore,
    transport: Transport,
    clock: Arc<NodeClock>,
    tick: Duration,
    txn_bugs: TxnBugs,
) -> RaftHandle {
    let raft = Raft::new(cfg, restore);
    let (tx, rx) = mpsc::channel(EVENT_QUEUE_CAPACITY);
    let (status_tx, status_rx) = watch::channel(raft.status());
    tokio::spawn(run(raft, wal, transport, clock, tick, rx, status_tx, txn_bugs));
    RaftHandle { tx, status: status_rx }
}

struct Loop {
    raft: Raft,
    wal: Wal,
    transport: Transport,
    waiting: HashMap<ReqId, oneshot::Sender<Reply>>,
    next_req: ReqId,
    txn_bugs: TxnBugs,
    /// `txn-dirty`: the writes of transactions proposed here and not yet answered, by request.
    dirty_pending: BTreeMap<ReqId, Vec<MicroOp>>,
}

impl Loop {
    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Peer(envs) => {
                for e in envs {
                    self.raft.step(e);
                }
            }
            Event::Propose { cmd, tx } => {
                let cmd = self.planted_txn_bug(cmd);
                let id = self.register(tx);
                if let (true, Command::Txn { ops, .. }) = (self.txn_bugs.dirty, &cmd) {
                    self.dirty_pending.insert(id, ops.clone()); // bounded like `waiting`
                }
                self.raft.propose(id, cmd);
            }
            Event::Read { key, tx } => {
                let id = self.register(tx);
                self.raft.read(id, key);
            }
        }
    }

    /// With `txn-read-committed`, a transaction proposed here carries reads taken now from this
    /// node's applied state; a follower's proposal is refused by the core anyway.
    fn planted_txn_bug(&self, cmd: Command) -> Command {
        match cmd {
            Command::Txn { ops, .. } if self.txn_bugs.dirty => {
                let pending: Vec<&[MicroOp]> = self.dirty_pending.values().map(Vec::as_slice).collect();
                let (ops, unchanged) = txn::dirty_at_proposal(self.raft.kv(), self.raft.lists(), &pending, &ops);
                Command::Txn { ops, reads_fixed: true, unchanged }
            }
            Command::Txn { ops, .. } if self.txn_bugs.snapshot => {
                let (ops, unchanged) = txn::snapshot_at_proposal(self.raft.kv(), self.raft.lists(), &ops);
                Command::Txn { ops, reads_fixed: true, unchanged }
            }
            Command::Txn { ops, .. } if self.txn_bugs.read_committed => Command::Txn {
                ops: txn::read_at_proposal(self.raft.kv(), self.raft.lists(), &ops),
                reads_fixed: true,
                unchanged: Vec::new(),
            },
            other => other,
        }
    }

    fn register(&mut self, tx: oneshot::Sender<Reply>) -> ReqId {
        self.next_req += 1;
        // Bounded: the core answers every request it accepts (reply, step-down or refusal),
        // and refuses beyond its own pending limits.
        self.waiting.insert(self.next_req, tx);
        self.next_req
    }

    fn process_ready(&mut self) {
        let rd: Ready = self.raft.take_ready();
        if rd.is_empty() {
            return;
        }
        if rd.must_persist() {
            let res = tokio::task::block_in_place(|| {
                if let Some(snap) = &rd.snapshot {
                    let (hs, _, entries) = self.raft.persisted_state();
                    self.wal.save_snapshot(snap, &hs, &entries)
                } else {
                    self.wal.append(rd.hard_state.as_ref(), rd.first_index, &rd.entries)
                }
            });
            if let Err(e) = res {
                // Continuing without durable state would break Raft's guarantees: stop here.
                tracing::error!(error = %e, "cannot persist Raft state; exiting");
                std::process::exit(70);
            }
        }
        for m in rd.messages {
            self.transport.send(m);
        }
        for (id, reply) in rd.replies {
            self.dirty_pending.remove(&id);
            if let Some(tx) = self.waiting.remove(&id) {
                let _ = tx.send(reply); // the client may have timed out and gone
            }
        }
    }
}

#[allow(clippy::too_many_arguments)] // the task's collaborators, each distinct
async fn run(
    raft: Raft,
    wal: Wal,
    transport: Transport,
    clock: Arc<NodeClock>,
    tick: Duration,
    rx: mpsc::Receiver<Event>,
    status_tx: watch::Sender<Status>,
    txn_bugs: TxnBugs,
) {
    let mut lp =
        Loop { raft, wal, transport, waiting: HashMap::new(), next_req: 0, txn_bugs, dirty_pending: BTreeMap::new() };
    let mut driver = Driver::new(rx, Some(tick), EVENTS_PER_ITERATION_MAX);
    while let Some(wake) = driver.next().await {
        lp.raft.set_now_ms(clock.now_ms());
        match wake {
            Wake::Tick => {
                lp.raft.tick();
                if let Err(e) = lp.wal.flush_if_due() {
                    tracing::error!(error = %e, "cannot write the WAL; exiting");
                    std::process::exit(70);
                }
            }
            Wake::Batch(events) => events.into_iter().for_each(|ev| lp.handle(ev)),
        }
        lp.process_ready();
        let st = lp.raft.status();
        status_tx.send_if_modified(|old| {
            if *old != st {
                if old.role != st.role || old.term != st.term || old.leader != st.leader {
                    tracing::info!(state = st.role.as_str(), term = st.term, leader = ?st.leader, "raft state");
                }
                *old = st;
                true
            } else {
                false
            }
        });
    }
}
