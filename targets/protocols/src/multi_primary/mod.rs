//! The `multi-primary` role's replica (master–master replication): every node accepts writes
//! to its own copy and replicates them to the others; conflicting versions are resolved by
//! [`Resolve`]:
//!
//! - [`Resolve::Lww`], last writer wins: a version carries a [`Stamp`] (the writing node's
//!   wall clock in ms, its id, and its write sequence number, so stamps never tie) and a
//!   replica keeps the greater. The stamp is the bare node clock, as in Cassandra's or Riak's
//!   LWW: a node whose clock runs behind writes versions that lose to what it already holds,
//!   so its acknowledged updates vanish, on its own replica too.
//! - [`Resolve::Vclock`], siblings: a version also carries a vector clock ([`VClock`]). A
//!   replica keeps every version no other version descends from (the maximal versions: the
//!   concurrent **siblings**). A node's write takes the merge of the clocks of all its local
//!   siblings plus one on its own entry, so it descends from (replaces) everything it has seen.
//!   Siblings are at most one per writing node, hence at most the member count: each node's
//!   writes descend from its previous ones (its own write is in its replica, or something
//!   that descends from it), so two of one node's versions are never concurrent.
//!
//! Both kinds of slot hold versions: registers (`/kv/`, a value) and sets (`/set/`, a set of
//! integers). A set add is a **read-modify-write done by the node**: read the local versions
//! (their union, in vclock mode), add the element, write the result back as a new version,
//! as a client of Riak would. In LWW mode two concurrent adds on two nodes, or one add on a
//! node with a slow clock, lose an acknowledged element; in vclock mode the concurrent
//! versions stay siblings and the next read (union) or write (merge) keeps both.
//!
//! A register read in vclock mode returns the value of the sibling with the greatest stamp
//! (the siblings stay; only the answer picks one, since the register API has one value).
//!
//! Merge is a join (commutative, associative, idempotent; in LWW mode the maximum stamp, in
//! vclock mode the maximal elements of the union), so replicas that have exchanged every entry
//! are equal. No I/O, no clock: the node passes its clock's `now_ms` in.

use crate::slot::Slot;
use crate::vclock::VClock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
mod tests;

/// How concurrent versions are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolve {
    Lww,
    Vclock,
}

impl Resolve {
    pub fn name(self) -> &'static str {
        match self {
            Resolve::Lww => "lww",
            Resolve::Vclock => "vclock",
        }
    }
}

/// Who wrote a version and when by its clock; ordered by (ts_ms, node, seq).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub ts_ms: i64,
    pub node: String,
    /// The writer's write sequence number (unique per node, persisted).
    pub seq: u64,
}

/// One version of a slot's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version<T> {
    pub stamp: Stamp,
    /// Empty in LWW mode.
    #[serde(default, skip_serializing_if = "vclock_is_empty")]
    pub clock: VClock,
    pub value: T,
}

fn vclock_is_empty(c: &VClock) -> bool {
    *c == VClock::new()
}

/// A slot's versions: one in LWW mode, the concurrent siblings in vclock mode (sorted by stamp).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entry {
    Register(Vec<Version<i64>>),
    Set(Vec<Version<BTreeSet<i64>>>),
}

impl Entry {
    pub fn fits(&self, slot: &Slot) -> bool {
        matches!((self, slot), (Entry::Register(_), Slot::Register(_)) | (Entry::Set(_), Slot::Set(_)))
    }

    /// Items in an anti-entropy batch: a set version counts its elements.
    pub fn items(&self) -> usize {
        match self {
            Entry::Register(v) => v.len(),
            Entry::Set(v) => v.iter().map(|x| x.value.len().max(1)).sum(),
        }
    }

    pub fn versions(&self) -> usize {
        match self {
            Entry::Register(v) => v.len(),
            Entry::Set(v) => v.len(),
        }
    }

    /// Checks a received entry: at least one version, at most one per member, every writer
    /// and clock entry a member, and in LWW mode exactly one version; in vclock mode each
    /// version's clock counts its own write.
    pub fn validate(&self, members: &BTreeSet<String>, resolve: Resolve) -> Result<(), String> {
        fn check<T>(vs: &[Version<T>], members: &BTreeSet<String>, resolve: Resolve) -> Result<(), String> {
            if vs.is_empty() {
                return Err("an entry needs at least one version".into());
            }
            let most = if resolve == Resolve::Lww { 1 } else { members.len() };
            if vs.len() > most {
                return Err(format!("{} versions, at most {most} allowed in {} mode", vs.len(), resolve.name()));
            }
            for v in vs {
                if !members.contains(&v.stamp.node) {
                    return Err(format!("writer {:?} is not a member", v.stamp.node));
                }
                if let Some(n) = v.clock.nodes().find(|n| !members.contains(*n)) {
                    return Err(format!("vector clock entry {n:?} is not a member"));
                }
                if resolve == Resolve::Vclock && v.clock.get(&v.stamp.node) == 0 {
                    return Err(format!("vector clock {:?} does not count its writer {:?}", v.clock, v.stamp.node));
                }
            }
            Ok(())
        }
        match self {
            Entry::Register(v) => check(v, members, resolve),
            Entry::Set(v) => check(v, members, resolve),
        }
    }
}

/// Joins `new` into `versions`; true if they changed.
fn merge_version<T: Clone>(versions: &mut Vec<Version<T>>, new: &Version<T>, resolve: Resolve) -> bool {
    match resolve {
        Resolve::Lww => {
            if versions.iter().any(|v| v.stamp >= new.stamp) {
                return false;
            }
            *versions = vec![new.clone()];
            true
        }
        Resolve::Vclock => {
            // Known already, or something known descends from it.
            if versions.iter().any(|v| v.clock.descends(&new.clock)) {
                return false;
            }
            versions.retain(|v| !new.clock.descends(&v.clock));
            versions.push(new.clone());
            versions.sort_by(|a, b| a.stamp.cmp(&b.stamp));
            true
        }
    }
}

/// One node's replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub me: String,
    pub resolve: Resolve,
    /// Writes this node has made (the last [`Stamp::seq`] used).
    pub seq: u64,
    #[serde(with = "crate::slot::as_pairs")]
    pub slots: BTreeMap<Slot, Entry>,
}

impl Replica {
    pub fn new(me: &str, resolve: Resolve) -> Self {
        Replica { me: me.to_string(), resolve, seq: 0, slots: BTreeMap::new() }
    }

    fn next(&mut self, now_ms: i64, seen: impl Iterator<Item = VClock>) -> (Stamp, VClock) {
        self.seq += 1;
        let stamp = Stamp { ts_ms: now_ms, node: self.me.clone(), seq: self.seq };
        let mut clock = VClock::new();
        if self.resolve == Resolve::Vclock {
            for c in seen {
                clock.merge(&c);
            }
            clock.increment(&self.me);
        }
        (stamp, clock)
    }

    fn register(&self, key: &str) -> &[Version<i64>] {
        match self.slots.get(&Slot::Register(key.to_string())) {
            Some(Entry::Register(v)) => v,
            _ => &[],
        }
    }

    fn set(&self, key: &str) -> &[Version<BTreeSet<i64>>] {
        match self.slots.get(&Slot::Set(key.to_string())) {
            Some(Entry::Set(v)) => v,
            _ => &[],
        }
    }

    /// The register's value: its one version (LWW) or the sibling with the greatest stamp.
    pub fn read(&self, key: &str) -> Option<i64> {
        self.register(key).iter().max_by(|a, b| a.stamp.cmp(&b.stamp)).map(|v| v.value)
    }

    /// Siblings held for a slot (1 in LWW mode once written).
    pub fn siblings(&self, slot: &Slot) -> usize {
        self.slots.get(slot).map_or(0, Entry::versions)
    }

    /// Writes a register locally; returns the version to push. In LWW mode the version may
    /// lose at once to a held version with a greater stamp (a slow clock); in vclock mode it
    /// replaces every local sibling.
    pub fn write(&mut self, key: &str, value: i64, now_ms: i64) -> (Slot, Entry) {
        let seen: Vec<VClock> = self.register(key).iter().map(|v| v.clock.clone()).collect();
        let (stamp, clock) = self.next(now_ms, seen.into_iter());
        let slot = Slot::Register(key.to_string());
        let e = Entry::Register(vec![Version { stamp, clock, value }]);
        self.merge(&slot, &e);
        (slot, e)
    }

    /// The set as read here: the union of its siblings (the one version in LWW mode).
    pub fn set_read(&self, key: &str) -> Vec<i64> {
        let all: BTreeSet<i64> = self.set(key).iter().flat_map(|v| v.value.iter().copied()).collect();
        all.into_iter().collect()
    }

    /// The node's read-modify-write of a set: read the local value (union of siblings), add
    /// `element`, write it back as a new version; returns the version to push.
    pub fn set_add(&mut self, key: &str, element: i64, now_ms: i64) -> (Slot, Entry) {
        let mut value: BTreeSet<i64> = self.set_read(key).into_iter().collect();
        value.insert(element);
        let seen: Vec<VClock> = self.set(key).iter().map(|v| v.clock.clone()).collect();
        let (stamp, clock) = self.next(now_ms, seen.into_iter());
        let slot = Slot::Set(key.to_string());
        let e = Entry::Set(vec![Version { stamp, clock, value }]);
        self.merge(&slot, &e);
        (slot, e)
    }

    /// Joins every version of `entry` into `slot`; true if the replica changed. An entry of
    /// the wrong kind for the slot is ignored (the node refuses it with 400 first).
    pub fn merge(&mut self, slot: &Slot, entry: &Entry) -> bool {
        if !entry.fits(slot) {
            return false;
        }
        let resolve = self.resolve;
        let e = self.slots.entry(slot.clone()).or_insert_with(|| match entry {
            Entry::Register(_) => Entry::Register(vec![]),
            Entry::Set(_) => Entry::Set(vec![]),
        });
        let mut changed = false;
        match (e, entry) {
            (Entry::Register(mine), Entry::Register(new)) => {
                for v in new {
                    changed |= merge_version(mine, v, resolve);
                }
            }
            (Entry::Set(mine), Entry::Set(new)) => {
                for v in new {
                    changed |= merge_version(mine, v, resolve);
                }
            }
            _ => unreachable!("fits() checked the kind"),
        }
        changed
    }

    /// The bounded anti-entropy walk (see `available::batch_after`).
    pub fn batch_after(&self, after: Option<&Slot>, items_max: usize) -> (Vec<(Slot, Entry)>, Option<Slot>) {
        crate::available::batch_after(&self.slots, after, items_max, Entry::items)
    }
}
