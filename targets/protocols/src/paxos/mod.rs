//! CASPaxos (Rystsov 2018, "CASPaxos: Replicated State Machines without logs") as pure state
//! machines: single-decree Paxos (Lamport, "Paxos Made Simple" 2001, §2.2) run once per client
//! operation on one key, where each round applies a *change function* to the key's current
//! value: read = identity, write = set, cas = conditional set.
//!
//! What this module owns:
//! - [`Ballot`]: (counter, node id), totally ordered, unique per proposer; a proposer's counters
//!   are reserved in durable blocks ([`Proposer`]) so that a restarted node never reuses one.
//! - [`Acceptor`]: per key the promised ballot and the accepted (ballot, value); phase 1b
//!   (promise) and phase 2b (accepted) answers. The caller persists what [`Acceptor::handle`]
//!   returns before answering (Paxos Made Simple §2.2: acceptors remember across failures).
//! - [`Round`]: one proposer round: phase 1a (prepare) to every acceptor, on a majority of
//!   promises pick the value of the highest-ballot accepted proposal (§2.2, P2c), apply the
//!   change, phase 2a (accept) to every acceptor, and learn the outcome once a majority accepted.
//!   The proposer is also the learner of its own round: a value accepted by a majority is chosen.
//!
//! No I/O, no clock, no threads: the node driver sends the requests, feeds the answers back and
//! persists the acceptor's records.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub type NodeId = String;

/// A proposal number: ordered by counter, then node id, so two proposers never share one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    pub counter: u64,
    pub node: NodeId,
}

/// What a client operation does to a key's value (`None`: never written).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    Read,
    Write {
        value: i64,
    },
    /// Swaps when the value is `from` (`None`: never written).
    Cas {
        from: Option<i64>,
        to: i64,
    },
}

/// The result of applying a change, known once the round's accept phase reached a majority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A read: the value.
    Value(Option<i64>),
    /// A write or a cas that swapped.
    Done,
    /// A cas whose `from` did not match: nothing changed.
    CasMismatch { current: Option<i64> },
}

impl Change {
    /// Applies the change to `current`: the value to propose and the client's outcome.
    pub fn apply(&self, current: Option<i64>) -> (Option<i64>, Outcome) {
        match *self {
            Change::Read => (current, Outcome::Value(current)),
            Change::Write { value } => (Some(value), Outcome::Done),
            Change::Cas { from, to } if current == from => (Some(to), Outcome::Done),
            Change::Cas { .. } => (current, Outcome::CasMismatch { current }),
        }
    }

    /// True when the change never alters the value (so a failed round changed nothing that
    /// this operation asked for, and retrying the whole round is harmless).
    pub fn is_identity(&self, outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Value(_) | Outcome::CasMismatch { .. })
    }
}

/// Messages from a proposer to an acceptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Request {
    /// Phase 1a.
    Prepare { key: String, ballot: Ballot },
    /// Phase 2a.
    Accept { key: String, ballot: Ballot, value: Option<i64> },
}

/// An acceptor's answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Response {
    /// Phase 1b: the promise, with the highest-ballot proposal this acceptor accepted (if any).
    Promise { accepted: Option<(Ballot, Option<i64>)> },
    /// Phase 2b.
    Accepted,
    /// The acceptor has promised or accepted a ballot at least as high: the proposer must bump.
    Reject { seen: Ballot },
}

/// One key's acceptor state: what must survive a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorKey {
    pub promised: Option<Ballot>,
    pub accepted: Option<(Ballot, Option<i64>)>,
}

/// The acceptor role of one node, all keys.
#[derive(Clone, Debug, Default)]
pub struct Acceptor {
    keys: BTreeMap<String, AcceptorKey>,
}

impl Acceptor {
    /// The acceptor as persisted.
    pub fn restore(keys: BTreeMap<String, AcceptorKey>) -> Acceptor {
        Acceptor { keys }
    }

    pub fn get(&self, key: &str) -> Option<&AcceptorKey> {
        self.keys.get(key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &BTreeMap<String, AcceptorKey> {
        &self.keys
    }

    /// Answers a request. When the key's state changed, the new state is returned too: the
    /// caller must persist it (fsync) before sending the answer.
    pub fn handle(&mut self, req: &Request) -> (Response, Option<(String, AcceptorKey)>) {
        match req {
            Request::Prepare { key, ballot } => {
                let st = self.keys.entry(key.clone()).or_default();
                // §2.2 phase 1b: promise only a ballot greater than any promised so far.
                if let Some(seen) = st.promised.as_ref().filter(|p| *p >= ballot) {
                    return (Response::Reject { seen: seen.clone() }, None);
                }
                st.promised = Some(ballot.clone());
                (Response::Promise { accepted: st.accepted.clone() }, Some((key.clone(), st.clone())))
            }
            Request::Accept { key, ballot, value } => {
                let st = self.keys.entry(key.clone()).or_default();
                // §2.2 phase 2b: accept unless a greater ballot was promised meanwhile.
                if let Some(seen) = st.promised.as_ref().filter(|p| *p > ballot) {
                    return (Response::Reject { seen: seen.clone() }, None);
                }
                if let Some((b, _)) = st.accepted.as_ref().filter(|(b, _)| b >= ballot) {
                    // Already accepted this ballot (a duplicate) or a higher one.
                    if b == ballot {
                        return (Response::Accepted, None);
                    }
                    return (Response::Reject { seen: b.clone() }, None);
                }
                st.promised = Some(ballot.clone());
                st.accepted = Some((ballot.clone(), *value));
                (Response::Accepted, Some((key.clone(), st.clone())))
            }
        }
    }
}

/// Ballot counters reserved in durable blocks: the driver persists `reserved` before any
/// counter up to it is used, so after a crash the proposer restarts above every ballot it
/// may have sent (reusing a ballot with a different value would break Paxos' safety).
#[derive(Clone, Debug)]
pub struct Proposer {
    pub node: NodeId,
    counter: u64,
    reserved: u64,
}

/// Counters reserved per durable write.
pub const BALLOT_BLOCK: u64 = 1024;

impl Proposer {
    /// `reserved`: the last persisted reservation (0 on a fresh node).
    pub fn new(node: NodeId, reserved: u64) -> Proposer {
        Proposer { node, counter: reserved, reserved }
    }

    /// The next ballot, greater than `above` (a conflicting ballot some acceptor reported) and
    /// than every ballot this proposer made. Returns a new reservation to persist first, if any.
    pub fn next_ballot(&mut self, above: Option<&Ballot>) -> (Ballot, Option<u64>) {
        let floor = above.map(|b| b.counter).unwrap_or(0).max(self.counter);
        self.counter = floor + 1;
        let mut reserve = None;
        if self.counter > self.reserved {
            self.reserved = self.counter + BALLOT_BLOCK;
            reserve = Some(self.reserved);
        }
        assert!(self.counter <= self.reserved, "ballot {} beyond its reservation {}", self.counter, self.reserved);
        (Ballot { counter: self.counter, node: self.node.clone() }, reserve)
    }

    /// The highest counter used or seen.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Notes a ballot seen in an answer so the next one starts above it.
    pub fn observe(&mut self, b: &Ballot) {
        // Only the counter matters: the next ballot is then > b whatever the node ids.
        if b.counter > self.counter {
            // Not a reservation: next_ballot reserves before use.
            self.counter = b.counter;
        }
    }
}

/// Switchable, documented bugs (docs/targets.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// The proposer ignores the accepted values carried by promises and applies its change to
    /// the value it last learned itself (its local cache of the key), violating P2c.
    pub ignore_accepted: bool,
}

/// Where a round stands after an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Waiting for more answers.
    Pending,
    /// Phase 1 done: send this accept to every acceptor.
    Accept(Request),
    /// Phase 2 done: the value is chosen and the outcome known.
    Chosen { value: Option<i64>, outcome: Outcome },
    /// A majority can no longer answer yes: `seen` is the highest conflicting ballot (if any
    /// acceptor rejected). `accept_sent` says whether phase 2a went out (the round's value may
    /// then be chosen later by another proposer).
    Failed { seen: Option<Ballot>, accept_sent: bool },
}

/// One proposer round of one change on one key.
#[derive(Clone, Debug)]
pub struct Round {
    pub key: String,
    pub ballot: Ballot,
    change: Change,
    members: usize,
    bugs: Bugs,
    /// BUG ignore-accepted: the value this node last learned for the key.
    local_cache: Option<i64>,
    promises: BTreeMap<NodeId, Option<(Ballot, Option<i64>)>>,
    accepted: BTreeSet<NodeId>,
    /// Acceptors that rejected or did not answer in the current phase.
    refused: BTreeSet<NodeId>,
    seen: Option<Ballot>,
    proposal: Option<(Option<i64>, Outcome)>,
    /// The ballot of the accepted proposal phase 2 built on (`None`: the initial state).
    input: Option<Ballot>,
    done: bool,
}

impl Round {
    pub fn new(
        key: String,
        ballot: Ballot,
        change: Change,
        members: usize,
        bugs: Bugs,
        local_cache: Option<i64>,
    ) -> Round {
        assert!(members >= 1, "a cluster has members");
        Round {
            key,
            ballot,
            change,
            members,
            bugs,
            local_cache,
            promises: BTreeMap::new(),
            accepted: BTreeSet::new(),
            refused: BTreeSet::new(),
            seen: None,
            proposal: None,
            input: None,
            done: false,
        }
    }

    pub fn majority(&self) -> usize {
        self.members / 2 + 1
    }

    /// Phase 1a, sent to every acceptor.
    pub fn prepare(&self) -> Request {
        Request::Prepare { key: self.key.clone(), ballot: self.ballot.clone() }
    }

    fn fail(&mut self) -> Progress {
        self.done = true;
        Progress::Failed { seen: self.seen.clone(), accept_sent: self.proposal.is_some() }
    }

    fn note_refusal(&mut self, from: NodeId, seen: Option<Ballot>) -> Progress {
        if let Some(s) = seen {
            if self.seen.as_ref().is_none_or(|x| s > *x) {
                self.seen = Some(s);
            }
        }
        self.refused.insert(from);
        // Once more than members - majority refused, no majority can say yes in this phase.
        if self.refused.len() > self.members - self.majority() {
            return self.fail();
        }
        Progress::Pending
    }

    /// An acceptor did not answer in time (or could not be reached).
    pub fn on_no_answer(&mut self, from: NodeId) -> Progress {
        if self.done {
            return Progress::Pending;
        }
        self.note_refusal(from, None)
    }

    /// An acceptor's answer. Duplicates and answers from another phase are ignored.
    pub fn on_response(&mut self, from: NodeId, resp: Response) -> Progress {
        if self.done {
            return Progress::Pending;
        }
        match (resp, self.proposal.is_some()) {
            (Response::Reject { seen }, _) => self.note_refusal(from, Some(seen)),
            (Response::Promise { accepted }, false) => {
                if self.refused.contains(&from) {
                    return Progress::Pending;
                }
                self.promises.insert(from, accepted);
                if self.promises.len() < self.majority() {
                    return Progress::Pending;
                }
                // §2.2 P2c: propose the value of the highest-numbered proposal accepted by any
                // acceptor of the majority (none: the key's initial, never-written state).
                let highest = self.promises.values().flatten().max_by(|a, b| a.0.cmp(&b.0)).cloned();
                // With the bug the round builds on no accepted proposal at all, only the cache.
                self.input = if self.bugs.ignore_accepted { None } else { highest.as_ref().map(|(b, _)| b.clone()) };
                let current = if self.bugs.ignore_accepted { self.local_cache } else { highest.and_then(|(_, v)| v) };
                let (value, outcome) = self.change.apply(current);
                self.proposal = Some((value, outcome));
                // A new phase: refusals of phase 1 do not count against phase 2's majority.
                self.refused.clear();
                Progress::Accept(Request::Accept { key: self.key.clone(), ballot: self.ballot.clone(), value })
            }
            (Response::Accepted, true) => {
                if self.refused.contains(&from) {
                    return Progress::Pending;
                }
                self.accepted.insert(from);
                if self.accepted.len() < self.majority() {
                    return Progress::Pending;
                }
                self.done = true;
                let (value, outcome) = self.proposal.clone().expect("accept phase has a proposal");
                Progress::Chosen { value, outcome }
            }
            // A promise after phase 1 ended, or an accepted before it began: stale, ignore.
            _ => Progress::Pending,
        }
    }

    /// The ballot of the accepted proposal this round's phase 2 built on, once phase 1 is done.
    pub fn input_ballot(&self) -> Option<&Ballot> {
        self.input.as_ref()
    }

    /// The value and outcome phase 2 proposes, once phase 1 is done.
    pub fn proposed(&self) -> Option<&(Option<i64>, Outcome)> {
        self.proposal.as_ref()
    }

    /// The change this round applies.
    pub fn change(&self) -> &Change {
        &self.change
    }
}

#[cfg(test)]
mod tests;
