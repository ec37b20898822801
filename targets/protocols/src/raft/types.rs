//! Wire and storage types of the Raft core: log entries, messages, hard state, snapshots, the
//! `Ready` batch and client replies. Everything here is serde-serializable because the node
//! sends messages as JSON and writes entries and hard state to its write-ahead log.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A member's id as given on the command line (`n1`).
pub type NodeId = String;

/// Opaque id the runtime gives a client request so it can route the reply.
pub type ReqId = u64;

/// The state Raft must persist before answering any RPC (§5.1, figure 2: currentTerm, votedFor).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
}

/// A state-machine command carried by a log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Command {
    /// Appended by a new leader to commit an entry of its own term (§5.4.2, thesis §6.4).
    Noop,
    Write {
        key: String,
        value: i64,
    },
    /// Swaps when the key holds `from` (`None`: when it is absent).
    Cas {
        key: String,
        from: Option<i64>,
        to: i64,
    },
    /// A transaction: its micro-ops applied atomically, in order, as one entry (reads are
    /// `value: None` here and filled in the [`Reply::Txn`]). `reads_fixed` is the node's bug
    /// `txn-read-committed`: the leader filled the reads in at proposal time from its applied
    /// state, and apply keeps them instead of reading ([`super::txn::read_at_proposal`]).
    /// `unchanged` is the bug `txn-snapshot`: the written keys' values at proposal time; apply
    /// fails the transaction if any changed since (first committer wins).
    Txn {
        ops: Vec<MicroOp>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reads_fixed: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unchanged: Vec<KeyValue>,
    },
}

/// One micro-op of a transaction (`POST /txn`, docs/node-api.md). A key holds either a list of
/// integers (list-append) or an integer register (rw-register), never both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum MicroOp {
    /// Append `value` to the list at `key` (created empty if absent).
    Append { key: String, value: i64 },
    /// Set the register `key` to `value`.
    Write { key: String, value: i64 },
    /// Read `key`: a list, a register, or `None` when the key was never written.
    Read { key: String, value: Option<TxnValue> },
}

impl MicroOp {
    pub fn key(&self) -> &str {
        match self {
            MicroOp::Append { key, .. } | MicroOp::Write { key, .. } | MicroOp::Read { key, .. } => key,
        }
    }
}

/// A key and what it held (`None`: never written).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Option<TxnValue>,
}

/// What a transactional read returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TxnValue {
    Int(i64),
    List(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub cmd: Command,
}

/// A snapshot of the applied state machine (§7): everything up to and including `index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    pub kv: BTreeMap<String, i64>,
    /// The list-append keys (absent in snapshots written before transactions existed).
    #[serde(default)]
    pub lists: BTreeMap<String, Vec<i64>>,
}

/// Raft RPCs. Requests and responses are separate one-way messages, so the transport may lose,
/// duplicate or reorder any of them; the core tolerates that.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Message {
    /// Pre-vote (thesis §9.6): "would you vote for me at `term`?" without anyone changing term.
    PreVote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    PreVoteResp {
        term: u64,
        granted: bool,
    },
    /// RequestVote (§5.2).
    Vote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    VoteResp {
        term: u64,
        granted: bool,
    },
    /// AppendEntries (§5.3); also the heartbeat. `seq` numbers leader heartbeat rounds so that
    /// acknowledgements can confirm read-index reads and leases (thesis §6.4).
    Append {
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        seq: u64,
    },
    /// On success `index` is the follower's match index; on rejection `index` is the rejected
    /// `prev_index` and `hint` the follower's suggestion for the next probe.
    AppendResp {
        term: u64,
        success: bool,
        index: u64,
        hint: u64,
        seq: u64,
    },
    /// InstallSnapshot (§7), sent whole (the state machine is small by design).
    InstallSnapshot {
        term: u64,
        snapshot: Snapshot,
        seq: u64,
    },
}

impl Message {
    pub fn term(&self) -> u64 {
        match self {
            Message::PreVote { term, .. }
            | Message::PreVoteResp { term, .. }
            | Message::Vote { term, .. }
            | Message::VoteResp { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResp { term, .. }
            | Message::InstallSnapshot { term, .. } => *term,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Message,
}

/// The answer to one client request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A read's value (`None`: never written).
    Value(Option<i64>),
    /// A write or a successful cas.
    Done,
    /// Definite failure: the cas precondition did not hold (`current` is what was there).
    CasMismatch { current: Option<i64> },
    /// Definite failure: this node is not the leader (never proposed); `leader` if known.
    NotLeader { leader: Option<NodeId> },
    /// Definite failure: refused before proposing (queue full, leader not ready).
    Unavailable { reason: String },
    /// Indefinite: proposed, then this node lost leadership before learning the outcome.
    LostLeadership,
    /// A committed transaction: its micro-ops with the reads filled in.
    Txn { ops: Vec<MicroOp> },
    /// Definite failure: the transaction was applied as a no-op (a key of the other kind, a
    /// list at its length limit); `reason` says which.
    TxnFailed { reason: String },
}

/// One step's output. The runtime must persist `snapshot`, then `hard_state` and `entries`
/// (durably, before anything else), then send `messages` and deliver `replies` (§5.1: respond to
/// RPCs only after updating stable storage).
#[derive(Debug, Default)]
pub struct Ready {
    /// Set when the hard state changed since the last `Ready`.
    pub hard_state: Option<HardState>,
    /// When set, the persisted log must be truncated to indices `< first_index` and then
    /// `entries` appended (`entries` starts at `first_index`, may be empty).
    pub first_index: Option<u64>,
    pub entries: Vec<Entry>,
    /// A snapshot to persist; the log before it is compacted. After persisting it the runtime
    /// should rewrite its log from `Raft::persisted_state()`.
    pub snapshot: Option<Snapshot>,
    pub messages: Vec<Envelope>,
    pub replies: Vec<(ReqId, Reply)>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.first_index.is_none()
            && self.snapshot.is_none()
            && self.messages.is_empty()
            && self.replies.is_empty()
    }
    /// Whether anything must reach stable storage before messages and replies go out.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.first_index.is_some() || self.snapshot.is_some()
    }
}
