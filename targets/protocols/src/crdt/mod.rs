//! State-based CRDTs (CvRDTs) of the `crdt` reference role, replicated by gossip anti-entropy.
//!
//! Each type is a join-semilattice: [`Crdt::merge`] computes the least upper bound of two states,
//! so it is commutative, associative and idempotent, and replicas that have received each
//! other's states (in any order, any number of times) are equal — Shapiro, Preguiça, Baquero,
//! Zawirski, "Conflict-free Replicated Data Types" (SSS 2011), §2.2 (CvRDT convergence) and
//! the specifications of §3 (G-Counter, PN-Counter, G-Set, OR-Set, LWW-Register).
//!
//! - [`GSet`]: grow-only set (union).
//! - [`OrSet`]: observed-remove set (unique add tags; a remove tombstones the tags it saw).
//! - [`GCounter`]: one non-decreasing count per replica; merge takes the per-replica maximum.
//! - [`PnCounter`]: two G-Counters (increments, decrements).
//! - [`LwwRegister`]: last writer wins by (timestamp, replica id); the timestamp comes from an
//!   injected clock (the node's skewable clock), so clock skew shows as lost updates.
//! - [`Store`]: one node's state: named sets and counters, merged key by key.
//!
//! No I/O and no clock of its own. Bug flag [`Bugs::bad_merge`]: the counter merge *adds* the
//! per-replica counts instead of taking their maximum, which is not idempotent — every gossip
//! round re-counts what a node already knew, so counters overshoot and replicas disagree. The
//! bad sum wraps around on overflow as the naive sketch's 64-bit integers would (saturating
//! instead would give the replicas a common fixed point, u64::MAX, and hide the divergence).
//!
//! Counter values are computed modulo 2^64 (two's complement): exact whenever the true value
//! fits in an i64 and no replica's entry exceeds u64::MAX, which a correct merge guarantees for
//! any realistic number of increments (each entry is the sum of one replica's own increments,
//! and increments saturate).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
mod tests;

/// A replica (node) id.
pub type ReplicaId = String;

/// Named, documented bugs (docs/targets.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bugs {
    /// Counter merge adds per-replica counts instead of taking their maximum.
    pub bad_merge: bool,
}

/// A state-based CRDT: a join-semilattice.
pub trait Crdt {
    /// Joins `other` into `self` (least upper bound when the merge is correct).
    fn merge(&mut self, other: &Self);
}

// ------------------------------------------------------------------------- G-Set

/// Grow-only set of integers (§3.3.1 "G-Set").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GSet {
    pub elements: BTreeSet<i64>,
}

impl GSet {
    pub fn add(&mut self, e: i64) {
        self.elements.insert(e);
    }
    pub fn read(&self) -> Vec<i64> {
        self.elements.iter().copied().collect()
    }
}

impl Crdt for GSet {
    fn merge(&mut self, other: &Self) {
        self.elements.extend(other.elements.iter().copied());
    }
}

// ------------------------------------------------------------------------- OR-Set

/// A unique add tag: (replica, that replica's add sequence number).
pub type Tag = (ReplicaId, u64);

/// Observed-remove set (§3.3.5 "OR-Set"): each add carries a fresh tag; a remove tombstones the
/// tags of the element it observed, so a concurrent add (an unseen tag) survives the remove.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet {
    /// Tags ever added, per element.
    pub adds: BTreeMap<i64, BTreeSet<Tag>>,
    /// Tags removed (tombstones).
    pub removed: BTreeSet<Tag>,
    /// Per replica: the last tag sequence number issued (kept in the state so that a merged-in
    /// copy of our own state never makes us reuse a tag).
    pub clock: BTreeMap<ReplicaId, u64>,
}

impl OrSet {
    pub fn add(&mut self, replica: &str, e: i64) {
        let seq = self.clock.entry(replica.to_string()).or_insert(0);
        *seq += 1;
        self.adds.entry(e).or_default().insert((replica.to_string(), *seq));
    }

    /// Removes `e` as observed here: tombstones every tag of `e` this replica has seen.
    pub fn remove(&mut self, e: i64) {
        if let Some(tags) = self.adds.get(&e) {
            self.removed.extend(tags.iter().cloned());
        }
    }

    pub fn contains(&self, e: i64) -> bool {
        self.adds.get(&e).is_some_and(|tags| tags.iter().any(|t| !self.removed.contains(t)))
    }

    pub fn read(&self) -> Vec<i64> {
        self.adds.keys().copied().filter(|&e| self.contains(e)).collect()
    }
}

impl Crdt for OrSet {
    fn merge(&mut self, other: &Self) {
        for (e, tags) in &other.adds {
            self.adds.entry(*e).or_default().extend(tags.iter().cloned());
        }
        self.removed.extend(other.removed.iter().cloned());
        for (r, s) in &other.clock {
            let mine = self.clock.entry(r.clone()).or_insert(0);
            *mine = (*mine).max(*s);
        }
    }
}

// ------------------------------------------------------------------------- counters

/// Grow-only counter (§3.1.1 "G-Counter"): replica `r` only increments its own entry; the
/// value is the sum of the entries; merge takes the per-replica maximum.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GCounter {
    pub counts: BTreeMap<ReplicaId, u64>,
    /// Not part of the replicated state: whether merges use the `bad-merge` bug.
    #[serde(skip)]
    pub bad_merge: bool,
}

/// Equality of the replicated state only (the bug flag is configuration, not state).
impl PartialEq for GCounter {
    fn eq(&self, other: &Self) -> bool {
        self.counts == other.counts
    }
}
impl Eq for GCounter {}

impl GCounter {
    pub fn with_bugs(bugs: Bugs) -> Self {
        GCounter { counts: BTreeMap::new(), bad_merge: bugs.bad_merge }
    }

    /// Adds `n` to `replica`'s entry (saturating: a counter never wraps).
    pub fn increment(&mut self, replica: &str, n: u64) {
        let c = self.counts.entry(replica.to_string()).or_insert(0);
        *c = c.saturating_add(n);
    }

    /// The sum of the entries, modulo 2^64.
    pub fn value(&self) -> u64 {
        self.counts.values().fold(0u64, |a, b| a.wrapping_add(*b))
    }
}

impl Crdt for GCounter {
    fn merge(&mut self, other: &Self) {
        for (r, n) in &other.counts {
            let mine = self.counts.entry(r.clone()).or_insert(0);
            *mine = if self.bad_merge { mine.wrapping_add(*n) } else { (*mine).max(*n) };
        }
    }
}

/// Increment/decrement counter (§3.1.2 "PN-Counter"): a G-Counter of increments and one of
/// decrements; the value is their difference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    pub p: GCounter,
    pub n: GCounter,
}

impl PnCounter {
    pub fn with_bugs(bugs: Bugs) -> Self {
        PnCounter { p: GCounter::with_bugs(bugs), n: GCounter::with_bugs(bugs) }
    }

    pub fn add(&mut self, replica: &str, delta: i64) {
        if delta >= 0 {
            self.p.increment(replica, delta as u64);
        } else {
            self.n.increment(replica, delta.unsigned_abs());
        }
    }

    /// The value: increments minus decrements, modulo 2^64 as an i64.
    pub fn value(&self) -> i64 {
        self.p.value().wrapping_sub(self.n.value()) as i64
    }
}

impl Crdt for PnCounter {
    fn merge(&mut self, other: &Self) {
        self.p.merge(&other.p);
        self.n.merge(&other.n);
    }
}

// ------------------------------------------------------------------------- LWW register

/// Last-writer-wins register (§3.2.1 "LWW-Register"): a write carries a timestamp and the
/// writer's id; merge keeps the greater (timestamp, replica) pair. The timestamp is the writer's
/// clock reading (injected: the node's skewable clock), raised above the timestamp of the value
/// the writer currently holds, so a write always supersedes what its replica has seen (two
/// writes in one millisecond, or a write after seeing a write stamped by a faster clock). Writes
/// that are concurrent (neither replica saw the other's) are still ordered by the clocks alone:
/// a replica whose clock runs behind loses them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwRegister {
    /// (timestamp ms, replica, value) of the winning write; `None` if never written.
    pub winner: Option<(i64, ReplicaId, i64)>,
}

impl LwwRegister {
    /// Writes `value` at `max(now_ms, current timestamp + 1)` (`now_ms`: the caller's clock).
    pub fn write(&mut self, replica: &str, now_ms: i64, value: i64) {
        let ts = match &self.winner {
            Some((t, _, _)) => now_ms.max(t.saturating_add(1)),
            None => now_ms,
        };
        self.winner = Some((ts, replica.to_string(), value));
    }

    pub fn read(&self) -> Option<i64> {
        self.winner.as_ref().map(|w| w.2)
    }
}

impl Crdt for LwwRegister {
    fn merge(&mut self, other: &Self) {
        if let Some(o) = &other.winner {
            // Ties on (timestamp, replica) with different values cannot come from one correct
            // replica; ordering by the whole triple keeps the merge deterministic anyway.
            if self.winner.as_ref().is_none_or(|w| o > w) {
                self.winner = Some(o.clone());
            }
        }
    }
}

// ------------------------------------------------------------------------- store

/// One node's replicated state: sets (OR-Sets, adds only through the client API today, so they
/// behave as G-Sets), PN-counters and LWW registers, each by key. Merged key by key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    pub sets: BTreeMap<String, OrSet>,
    pub counters: BTreeMap<String, PnCounter>,
    pub registers: BTreeMap<String, LwwRegister>,
    #[serde(skip)]
    pub bugs: Bugs,
}

impl Store {
    pub fn new(bugs: Bugs) -> Self {
        Store { bugs, ..Store::default() }
    }

    pub fn set_add(&mut self, replica: &str, key: &str, e: i64) {
        self.sets.entry(key.to_string()).or_default().add(replica, e);
    }

    pub fn set_remove(&mut self, key: &str, e: i64) {
        if let Some(s) = self.sets.get_mut(key) {
            s.remove(e);
        }
    }

    pub fn set_read(&self, key: &str) -> Vec<i64> {
        self.sets.get(key).map(OrSet::read).unwrap_or_default()
    }

    pub fn counter_add(&mut self, replica: &str, key: &str, delta: i64) {
        let bugs = self.bugs;
        self.counters.entry(key.to_string()).or_insert_with(|| PnCounter::with_bugs(bugs)).add(replica, delta);
    }

    pub fn counter_read(&self, key: &str) -> i64 {
        self.counters.get(key).map(PnCounter::value).unwrap_or(0)
    }

    pub fn register_write(&mut self, replica: &str, key: &str, now_ms: i64, value: i64) {
        self.registers.entry(key.to_string()).or_default().write(replica, now_ms, value);
    }

    pub fn register_read(&self, key: &str) -> Option<i64> {
        self.registers.get(key).and_then(LwwRegister::read)
    }
}

impl Crdt for Store {
    fn merge(&mut self, other: &Self) {
        for (k, s) in &other.sets {
            self.sets.entry(k.clone()).or_default().merge(s);
        }
        let bugs = self.bugs;
        for (k, c) in &other.counters {
            self.counters.entry(k.clone()).or_insert_with(|| PnCounter::with_bugs(bugs)).merge(c);
        }
        for (k, r) in &other.registers {
            self.registers.entry(k.clone()).or_default().merge(r);
        }
    }
}
