//! Majority-quorum replication of registers, as pure state machines: ABD (Attiya, Bar-Noy,
//! Dolev, "Sharing Memory Robustly in Message-Passing Systems", JACM 1995), multi-writer form.
//!
//! What this module owns:
//! - [`Version`]: (counter, writer node id, writer's sequence number), totally ordered; a
//!   write's version is one above the highest counter a majority reported, tagged with the
//!   writer's id and a number the writer never uses twice (two concurrent writes through one
//!   node may find the same highest counter: without the sequence number they would share a
//!   version, replicas would keep whichever came first, and reads would flip between them).
//! - [`Replica`]: per key the highest-versioned value it stored; `get` answers it, `set` keeps
//!   the incoming value only if its version is higher (so replicas converge whatever the order).
//! - [`Call`]: one phase of a coordinator: a request to every replica, done once a majority
//!   answered, failed once a majority can no longer answer.
//! - The coordinator's decisions: [`next_version`] (write, phase 1 → 2), [`highest`] and
//!   [`write_back_needed`] (read: the value returned is first stored at a majority — ABD's
//!   write-back, §3 "the reader ... writes it back", which makes reads linearizable; without it
//!   two reads can see a new value and then an old one).
//! - The `naive` bug ([`naive_read`]): the textbook "consistent system" with no versions and no
//!   write-back: writes overwrite, reads return the most common value among the replies.
//!
//! ABD cannot implement compare-and-set (a consensus object; Herlihy 1991): the role refuses it.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub type NodeId = String;

/// A write's version: ordered by counter, then writer id, then the writer's sequence number.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub counter: u64,
    pub node: NodeId,
    /// Unique among the writer's writes (the node binary: boot epoch << 32 | a counter).
    pub seq: u64,
}

/// What a replica stores for one key. The default (version 0, no value) is "never written".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub version: Version,
    pub value: Option<i64>,
}

/// Coordinator → replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Request {
    /// Phase 1 of a read or a write: "what do you hold?"
    Get { key: String },
    /// Phase 2: store this value if its version is higher than yours.
    Set { key: String, stored: Stored },
    /// BUG naive: overwrite, no version.
    Put { key: String, value: Option<i64> },
}

/// Replica → coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Response {
    Got { stored: Stored },
    Ack,
}

/// The replica role of one node, all keys.
#[derive(Clone, Debug, Default)]
pub struct Replica {
    keys: BTreeMap<String, Stored>,
}

impl Replica {
    pub fn restore(keys: BTreeMap<String, Stored>) -> Replica {
        Replica { keys }
    }

    pub fn get(&self, key: &str) -> Stored {
        self.keys.get(key).cloned().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &BTreeMap<String, Stored> {
        &self.keys
    }

    /// Answers a request; a changed key is returned too, to be persisted before answering.
    pub fn handle(&mut self, req: &Request) -> (Response, Option<(String, Stored)>) {
        match req {
            Request::Get { key } => (Response::Got { stored: self.get(key) }, None),
            Request::Set { key, stored } => {
                let cur = self.keys.entry(key.clone()).or_default();
                if stored.version > cur.version {
                    *cur = stored.clone();
                    return (Response::Ack, Some((key.clone(), cur.clone())));
                }
                // Already as new or newer: the write is covered (a higher version supersedes it).
                (Response::Ack, None)
            }
            Request::Put { key, value } => {
                let cur = self.keys.entry(key.clone()).or_default();
                cur.value = *value;
                (Response::Ack, Some((key.clone(), cur.clone())))
            }
        }
    }
}

/// One phase of a coordinator: answers from distinct replicas until a majority.
#[derive(Clone, Debug)]
pub struct Call {
    members: usize,
    answers: BTreeMap<NodeId, Response>,
    failed: BTreeSet<NodeId>,
}

/// Where a call stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallState {
    Pending,
    /// A majority answered.
    Quorum,
    /// More than a minority failed: no majority can answer.
    NoQuorum,
}

impl Call {
    pub fn new(members: usize) -> Call {
        assert!(members >= 1, "a cluster has members");
        Call { members, answers: BTreeMap::new(), failed: BTreeSet::new() }
    }

    pub fn majority(&self) -> usize {
        self.members / 2 + 1
    }

    fn state(&self) -> CallState {
        if self.answers.len() >= self.majority() {
            CallState::Quorum
        } else if self.failed.len() > self.members - self.majority() {
            CallState::NoQuorum
        } else {
            CallState::Pending
        }
    }

    pub fn on_response(&mut self, from: NodeId, resp: Response) -> CallState {
        if !self.failed.contains(&from) {
            self.answers.insert(from, resp);
        }
        self.state()
    }

    pub fn on_failure(&mut self, from: NodeId) -> CallState {
        if !self.answers.contains_key(&from) {
            self.failed.insert(from);
        }
        self.state()
    }

    /// The `Got` answers so far.
    pub fn stored(&self) -> Vec<&Stored> {
        self.answers
            .values()
            .filter_map(|r| match r {
                Response::Got { stored } => Some(stored),
                Response::Ack => None,
            })
            .collect()
    }
}

/// The highest-versioned value among the answers (the initial state if none).
pub fn highest<'a>(answers: impl IntoIterator<Item = &'a Stored>) -> Stored {
    answers.into_iter().max_by(|a, b| a.version.cmp(&b.version)).cloned().unwrap_or_default()
}

/// A write's version: above the highest counter a majority reported, tagged with the writer
/// and `seq`, which the writer must never use for another write.
pub fn next_version<'a>(answers: impl IntoIterator<Item = &'a Stored>, me: &str, seq: u64) -> Version {
    let max = answers.into_iter().map(|s| s.version.counter).max().unwrap_or(0);
    Version { counter: max + 1, node: me.to_string(), seq }
}

/// Whether a read must write `chosen` back before answering: unless every replica of the
/// majority already holds its version (then a majority stores it already).
pub fn write_back_needed<'a>(answers: impl IntoIterator<Item = &'a Stored>, chosen: &Stored) -> bool {
    answers.into_iter().any(|s| s.version != chosen.version)
}

/// BUG naive: the most common value among the replies, if at least `quorum` replies agree on it
/// (the textbook's `maxCount >= quorum`). Ties go to the smallest value, deterministically.
pub fn naive_read(values: &[Option<i64>], quorum: usize) -> Option<Option<i64>> {
    let mut counts: BTreeMap<Option<i64>, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(*v).or_default() += 1;
    }
    let best = counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
    (*best.1 >= quorum).then_some(*best.0)
}

#[cfg(test)]
mod tests;
