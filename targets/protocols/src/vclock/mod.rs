//! Vector clocks (Fidge 1988, Mattern 1989): one counter per node; a node increments its own
//! entry when it writes and takes the pointwise maximum when it learns another clock. Two
//! clocks are ordered (`Before`/`After`) when one is pointwise ≤ the other and they differ,
//! `Equal` when pointwise equal, `Concurrent` otherwise. The `multi-primary` role's vclock mode
//! orders its sibling versions with them.
//!
//! This module owns the clock type and its laws: [`VClock::compare`] is antisymmetric
//! (`compare(a, b)` is the reverse of `compare(b, a)`), `Equal` exactly when the clocks are
//! equal, transitive on `Before`; [`VClock::merge`] is the least upper bound (commutative,
//! associative, idempotent); [`VClock::increment`] moves a clock strictly after itself. A zero
//! entry is the same as a missing one: clocks are kept without zeros, so `==` is clock equality.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(test)]
mod tests;

/// A vector clock: node id → count of that node's events seen (zeros never stored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<String, u64>", into = "BTreeMap<String, u64>")]
pub struct VClock {
    entries: BTreeMap<String, u64>,
}

/// How two clocks relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Causality {
    /// `self` happened before `other` (pointwise ≤, not equal).
    Before,
    /// `self` happened after `other`.
    After,
    Concurrent,
    Equal,
}

impl Causality {
    /// The relation seen from the other side.
    pub fn reverse(self) -> Causality {
        match self {
            Causality::Before => Causality::After,
            Causality::After => Causality::Before,
            c => c,
        }
    }
}

impl From<BTreeMap<String, u64>> for VClock {
    fn from(mut entries: BTreeMap<String, u64>) -> Self {
        entries.retain(|_, n| *n > 0);
        VClock { entries }
    }
}

impl From<VClock> for BTreeMap<String, u64> {
    fn from(c: VClock) -> Self {
        c.entries
    }
}

impl VClock {
    pub fn new() -> Self {
        VClock::default()
    }

    /// The count of `node`'s events (0 when absent).
    pub fn get(&self, node: &str) -> u64 {
        self.entries.get(node).copied().unwrap_or(0)
    }

    /// The nodes with a non-zero entry.
    pub fn nodes(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    /// Records one more event of `node`. Panics past u64::MAX events (unreachable: one per write).
    pub fn increment(&mut self, node: &str) {
        let n = self.entries.entry(node.to_string()).or_insert(0);
        *n = n.checked_add(1).expect("vector clock entry overflow");
    }

    /// Pointwise maximum (least upper bound).
    pub fn merge(&mut self, other: &VClock) {
        for (node, n) in &other.entries {
            let mine = self.entries.entry(node.clone()).or_insert(0);
            *mine = (*mine).max(*n);
        }
    }

    pub fn merged(&self, other: &VClock) -> VClock {
        let mut c = self.clone();
        c.merge(other);
        c
    }

    /// `self` ≥ `other` pointwise: `self` has seen every event `other` has.
    pub fn descends(&self, other: &VClock) -> bool {
        other.entries.iter().all(|(node, n)| self.get(node) >= *n)
    }

    pub fn compare(&self, other: &VClock) -> Causality {
        match (self.descends(other), other.descends(self)) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (false, false) => Causality::Concurrent,
        }
    }
}
