//! The `available` role's replica (CAP's available system, AP): every node answers every
//! request from its own replica, at once, partitions included, and replicas reconcile later.
//!
//! - Registers are last-writer-wins on a **hybrid logical clock** (Kulkarni, Demirbas et al.,
//!   "Logical Physical Clocks", OPODIS 2014): a stamp is (l, c, node) where `l` follows the
//!   node's (skewable) wall clock and never goes back, and `c` counts events within one `l`.
//!   A node's HLC also advances past every stamp it merges, so a write always supersedes
//!   what its node has seen (no write of a node loses to a value that node already returned),
//!   while concurrent writes on the two sides of a partition are ordered by their stamps and
//!   one of them silently loses: available, convergent, **not linearizable**.
//! - Sets are grow-only (union): an add is never lost once it reaches another replica.
//! - [`Replica::batch_after`]: the bounded walk anti-entropy sends, slot by slot, cycling.
//!
//! Merge of an entry is a join (commutative, associative, idempotent), so replicas that have
//! exchanged every entry are equal whatever the order, loss or duplication of messages. No I/O
//! and no clock of its own: the node passes its clock's `now_ms` in. The role's bug flag
//! (`no-anti-entropy`) lives in the node, which then never runs the walk.

use crate::slot::Slot;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
mod tests;

/// A hybrid logical timestamp; ordered by (l_ms, c, node), so stamps of distinct events of
/// distinct nodes never tie.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hlc {
    pub l_ms: i64,
    pub c: u64,
    pub node: String,
}

/// One slot's replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entry {
    Register { stamp: Hlc, value: i64 },
    Set { elements: BTreeSet<i64> },
}

impl Entry {
    /// Items it counts for in an anti-entropy batch (a set counts its elements).
    pub fn items(&self) -> usize {
        match self {
            Entry::Register { .. } => 1,
            Entry::Set { elements } => elements.len().max(1),
        }
    }

    /// Whether this entry may be stored in `slot` (registers in register slots, sets in sets).
    pub fn fits(&self, slot: &Slot) -> bool {
        matches!((self, slot), (Entry::Register { .. }, Slot::Register(_)) | (Entry::Set { .. }, Slot::Set(_)))
    }
}

/// One node's replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub me: String,
    /// The HLC's last (l, c).
    pub l_ms: i64,
    pub c: u64,
    #[serde(with = "crate::slot::as_pairs")]
    pub slots: BTreeMap<Slot, Entry>,
}

impl Replica {
    pub fn new(me: &str) -> Self {
        Replica { me: me.to_string(), l_ms: i64::MIN, c: 0, slots: BTreeMap::new() }
    }

    /// A fresh stamp for a local event at wall time `now_ms` (HLC send rule).
    fn tick(&mut self, now_ms: i64) -> Hlc {
        if now_ms > self.l_ms {
            (self.l_ms, self.c) = (now_ms, 0);
        } else {
            self.c += 1;
        }
        Hlc { l_ms: self.l_ms, c: self.c, node: self.me.clone() }
    }

    /// HLC receive rule, simplified: the clock moves to at least the received stamp, so the
    /// next local stamp is greater than it. (Only the order of stamps matters here.)
    fn observe(&mut self, s: &Hlc) {
        if (s.l_ms, s.c) > (self.l_ms, self.c) {
            (self.l_ms, self.c) = (s.l_ms, s.c);
        }
    }

    pub fn read(&self, key: &str) -> Option<i64> {
        match self.slots.get(&Slot::Register(key.to_string())) {
            Some(Entry::Register { value, .. }) => Some(*value),
            _ => None,
        }
    }

    /// Writes locally; returns the entry to push to the peers. The new stamp is above every
    /// stamp this replica has seen, so the write is what this replica now holds.
    pub fn write(&mut self, key: &str, value: i64, now_ms: i64) -> (Slot, Entry) {
        let stamp = self.tick(now_ms);
        let slot = Slot::Register(key.to_string());
        let e = Entry::Register { stamp, value };
        let changed = self.merge(&slot, &e);
        assert!(changed, "a fresh HLC stamp must supersede everything seen");
        (slot, e)
    }

    pub fn set_read(&self, key: &str) -> Vec<i64> {
        match self.slots.get(&Slot::Set(key.to_string())) {
            Some(Entry::Set { elements }) => elements.iter().copied().collect(),
            _ => vec![],
        }
    }

    /// Adds locally; returns the delta to push (the one element: merge is union).
    pub fn set_add(&mut self, key: &str, element: i64) -> (Slot, Entry) {
        let slot = Slot::Set(key.to_string());
        let delta = Entry::Set { elements: BTreeSet::from([element]) };
        self.merge(&slot, &delta);
        (slot, delta)
    }

    /// Joins `entry` into `slot`; true if the replica changed. An entry that does not fit the
    /// slot is ignored (the node refuses such messages with 400 before they get here).
    pub fn merge(&mut self, slot: &Slot, entry: &Entry) -> bool {
        if !entry.fits(slot) {
            return false;
        }
        if let Entry::Register { stamp, .. } = entry {
            self.observe(stamp);
        }
        match (self.slots.get_mut(slot), entry) {
            (None, e) => {
                self.slots.insert(slot.clone(), e.clone());
                true
            }
            (Some(Entry::Register { stamp: mine, value: v }), Entry::Register { stamp, value }) if stamp > mine => {
                (*mine, *v) = (stamp.clone(), *value);
                true
            }
            (Some(Entry::Set { elements: mine }), Entry::Set { elements }) => {
                let before = mine.len();
                mine.extend(elements.iter().copied());
                mine.len() != before
            }
            _ => false,
        }
    }

    /// The slots after `after` (from the first when `None`), whole entries, until `items_max`
    /// items are reached (at least one entry, however large); and where the next batch
    /// starts (`None`: the walk wrapped around).
    pub fn batch_after(&self, after: Option<&Slot>, items_max: usize) -> (Vec<(Slot, Entry)>, Option<Slot>) {
        batch_after(&self.slots, after, items_max, Entry::items)
    }
}

/// The bounded anti-entropy walk over any slot map (shared with `multi_primary`).
pub fn batch_after<E: Clone>(
    slots: &BTreeMap<Slot, E>,
    after: Option<&Slot>,
    items_max: usize,
    items: impl Fn(&E) -> usize,
) -> (Vec<(Slot, E)>, Option<Slot>) {
    use std::ops::Bound::{Excluded, Unbounded};
    let lower = match after {
        Some(s) => Excluded(s.clone()),
        None => Unbounded,
    };
    let mut out = Vec::new();
    let mut total = 0;
    for (slot, e) in slots.range((lower, Unbounded)) {
        if !out.is_empty() && total + items(e) > items_max {
            break;
        }
        total += items(e);
        out.push((slot.clone(), e.clone()));
    }
    let next =
        out.last().map(|(s, _)| s.clone()).filter(|s| slots.range((Excluded(s.clone()), Unbounded)).next().is_some());
    (out, next)
}
