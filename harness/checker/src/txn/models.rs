//! The transactional consistency models, the anomalies, and which models each anomaly rules out.
//!
//! The map (strongest last), after Adya's thesis (Adya 1999, "Weak Consistency: A Generalized
//! Theory and Optimistic Implementations for Distributed Transactions", PL-1 ... PL-3, PL-SI)
//! and Elle's consistency-model map (Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies
//! from Experimental Observations", VLDB 2020, and jepsen-io/elle `elle.consistency-model`):
//!
//! ```text
//! read-uncommitted (PL-1)  <  read-committed (PL-2)  <  repeatable-read (PL-2.99)  <  serializable (PL-3)
//!                                                   <  snapshot-isolation (PL-SI) <
//! serializable  <  strong-session-serializable  <  strict-serializable
//! ```
//!
//! Each anomaly rules out the weakest models that proscribe it (`not`, as Elle's `:not`) and
//! therefore every model stronger than those (`also_not`, Elle's `:also-not`):
//! - G0 (write cycle): read-uncommitted (Adya PL-1).
//! - G1a (aborted read), G1b (intermediate read), G1c (cycle of ww and wr): read-committed
//!   (PL-2); so does an incompatible order (Elle: it implies G1a).
//! - duplicate elements (an append applied twice): read-uncommitted, as Elle's map lists
//!   `:duplicate-elements` under PL-1.
//! - G-single (a cycle with exactly one rw edge), G-nonadjacent (rw edges, no two adjacent):
//!   snapshot-isolation (Adya's G-SI; Cerone & Gotsman: SI admits only cycles with two adjacent
//!   rw edges) and repeatable-read. Here we are stricter than Elle's map, which does not list
//!   repeatable-read for G-single: with item anti-dependencies only (no predicates), a
//!   G-single cycle is a G2-item cycle, which PL-2.99 proscribes.
//! - G2-item (a cycle with anti-dependencies): repeatable-read (PL-2.99). Snapshot isolation
//!   allows it (write skew).
//! - lost update (two committed transactions read the same version of a key and both wrote
//!   it): repeatable-read and snapshot-isolation (Elle: cursor stability and above).
//! - non-repeatable read (two reads of a key in one transaction see different versions, its
//!   own writes aside; Adya's G2-item through the second read, Berenson et al.'s P2):
//!   repeatable-read and snapshot-isolation. Read committed allows it.
//! - internal (a read does not show the transaction's own earlier writes): snapshot-isolation
//!   and serializable, as Elle (whose boundary is read atomic, which both imply).
//! - garbage read (a value nobody wrote): no model explains it; read-uncommitted and so every
//!   model.
//! - `-process` variants (the cycle needs process-order edges): strong-session-serializable.
//! - `-realtime` variants (the cycle needs real-time edges): strict-serializable.

use serde::{Deserialize, Serialize};

/// A transactional consistency model, weakest first.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ConsistencyModel {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    SnapshotIsolation,
    Serializable,
    StrongSessionSerializable,
    StrictSerializable,
}

impl ConsistencyModel {
    pub const ALL: [ConsistencyModel; 7] = [
        ConsistencyModel::ReadUncommitted,
        ConsistencyModel::ReadCommitted,
        ConsistencyModel::RepeatableRead,
        ConsistencyModel::SnapshotIsolation,
        ConsistencyModel::Serializable,
        ConsistencyModel::StrongSessionSerializable,
        ConsistencyModel::StrictSerializable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConsistencyModel::ReadUncommitted => "read-uncommitted",
            ConsistencyModel::ReadCommitted => "read-committed",
            ConsistencyModel::RepeatableRead => "repeatable-read",
            ConsistencyModel::SnapshotIsolation => "snapshot-isolation",
            ConsistencyModel::Serializable => "serializable",
            ConsistencyModel::StrongSessionSerializable => "strong-session-serializable",
            ConsistencyModel::StrictSerializable => "strict-serializable",
        }
    }

    /// Does `self` imply `weaker` (is it at least as strong on the map)?
    pub fn implies(self, weaker: ConsistencyModel) -> bool {
        use ConsistencyModel::*;
        match (self, weaker) {
            (a, b) if a == b => true,
            // The two middle models are incomparable.
            (RepeatableRead, SnapshotIsolation) | (SnapshotIsolation, RepeatableRead) => false,
            (a, b) => a > b,
        }
    }
}

impl std::fmt::Display for ConsistencyModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown consistency model \"{0}\": expected one of read-uncommitted, read-committed, repeatable-read, snapshot-isolation, serializable, strong-session-serializable, strict-serializable")]
pub struct UnknownConsistencyModel(pub String);

impl std::str::FromStr for ConsistencyModel {
    type Err = UnknownConsistencyModel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConsistencyModel::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownConsistencyModel(s.to_string()))
    }
}

/// The anomalies the checker reports.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    #[serde(rename = "G0")]
    G0,
    #[serde(rename = "G1a")]
    G1a,
    #[serde(rename = "G1b")]
    G1b,
    #[serde(rename = "G1c")]
    G1c,
    #[serde(rename = "G-single")]
    GSingle,
    #[serde(rename = "G-nonadjacent")]
    GNonadjacent,
    #[serde(rename = "G2-item")]
    G2Item,
    #[serde(rename = "G0-process")]
    G0Process,
    #[serde(rename = "G1c-process")]
    G1cProcess,
    #[serde(rename = "G-single-process")]
    GSingleProcess,
    #[serde(rename = "G-nonadjacent-process")]
    GNonadjacentProcess,
    #[serde(rename = "G2-item-process")]
    G2ItemProcess,
    #[serde(rename = "G0-realtime")]
    G0Realtime,
    #[serde(rename = "G1c-realtime")]
    G1cRealtime,
    #[serde(rename = "G-single-realtime")]
    GSingleRealtime,
    #[serde(rename = "G-nonadjacent-realtime")]
    GNonadjacentRealtime,
    #[serde(rename = "G2-item-realtime")]
    G2ItemRealtime,
    #[serde(rename = "lost-update")]
    LostUpdate,
    #[serde(rename = "non-repeatable-read")]
    NonRepeatableRead,
    #[serde(rename = "internal")]
    Internal,
    #[serde(rename = "garbage-read")]
    GarbageRead,
    #[serde(rename = "duplicate-elements")]
    DuplicateElements,
    #[serde(rename = "incompatible-order")]
    IncompatibleOrder,
}

/// What a cycle is made of, before the `-process` / `-realtime` suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CycleShape {
    G0,
    G1c,
    GSingle,
    GNonadjacent,
    G2Item,
}

/// Which extra edges a cycle needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CycleScope {
    Data,
    Process,
    Realtime,
}

impl AnomalyKind {
    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }

    pub(crate) fn cycle(shape: CycleShape, scope: CycleScope) -> AnomalyKind {
        use AnomalyKind::*;
        use CycleScope::*;
        use CycleShape as S;
        match (shape, scope) {
            (S::G0, Data) => G0,
            (S::G1c, Data) => G1c,
            (S::GSingle, Data) => GSingle,
            (S::GNonadjacent, Data) => GNonadjacent,
            (S::G2Item, Data) => G2Item,
            (S::G0, Process) => G0Process,
            (S::G1c, Process) => G1cProcess,
            (S::GSingle, Process) => GSingleProcess,
            (S::GNonadjacent, Process) => GNonadjacentProcess,
            (S::G2Item, Process) => G2ItemProcess,
            (S::G0, Realtime) => G0Realtime,
            (S::G1c, Realtime) => G1cRealtime,
            (S::GSingle, Realtime) => GSingleRealtime,
            (S::GNonadjacent, Realtime) => GNonadjacentRealtime,
            (S::G2Item, Realtime) => G2ItemRealtime,
        }
    }

    /// The weakest models that proscribe this anomaly (see the module docs).
    pub fn proscribed_by(self) -> &'static [ConsistencyModel] {
        use AnomalyKind::*;
        use ConsistencyModel as M;
        match self {
            // Elle's map: duplicate elements are proscribed by PL-1 itself; no model explains a
            // value nobody wrote.
            G0 | GarbageRead | DuplicateElements => &[M::ReadUncommitted],
            // Elle: an incompatible order implies an aborted read (G1a).
            G1a | G1b | G1c | IncompatibleOrder => &[M::ReadCommitted],
            // Elle: read atomic, and so snapshot isolation and serializable (which imply it).
            Internal => &[M::SnapshotIsolation],
            GSingle | GNonadjacent | LostUpdate | NonRepeatableRead => &[M::RepeatableRead, M::SnapshotIsolation],
            G2Item => &[M::RepeatableRead],
            G0Process | G1cProcess | GSingleProcess | GNonadjacentProcess | G2ItemProcess => {
                &[M::StrongSessionSerializable]
            }
            G0Realtime | G1cRealtime | GSingleRealtime | GNonadjacentRealtime | G2ItemRealtime => {
                &[M::StrictSerializable]
            }
        }
    }
}

/// The models the anomalies rule out: (`not`, the weakest ones; `also_not`, those implied).
pub fn ruled_out(anomalies: &[AnomalyKind]) -> (Vec<ConsistencyModel>, Vec<ConsistencyModel>) {
    let direct: Vec<ConsistencyModel> = anomalies.iter().flat_map(|a| a.proscribed_by().iter().copied()).collect();
    let out: Vec<ConsistencyModel> =
        ConsistencyModel::ALL.into_iter().filter(|m| direct.iter().any(|d| m.implies(*d))).collect();
    let not: Vec<ConsistencyModel> =
        out.iter().copied().filter(|m| !out.iter().any(|o| o != m && m.implies(*o))).collect();
    let also_not = out.into_iter().filter(|m| !not.contains(m)).collect();
    (not, also_not)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsistencyModel as M;

    #[test]
    fn the_map() {
        assert_eq!(ruled_out(&[]), (vec![], vec![]));
        let (not, also) = ruled_out(&[AnomalyKind::G2Item]);
        assert_eq!(not, vec![M::RepeatableRead]);
        assert_eq!(also, vec![M::Serializable, M::StrongSessionSerializable, M::StrictSerializable]);
        let (not, also) = ruled_out(&[AnomalyKind::GSingle, AnomalyKind::G2ItemRealtime]);
        assert_eq!(not, vec![M::RepeatableRead, M::SnapshotIsolation]);
        assert_eq!(also.len(), 3);
        let (not, also) = ruled_out(&[AnomalyKind::G1b]);
        assert_eq!(not, vec![M::ReadCommitted]);
        assert_eq!(also.len(), 5);
        let (not, _) = ruled_out(&[AnomalyKind::GSingleRealtime]);
        assert_eq!(not, vec![M::StrictSerializable]);
        // Internal: snapshot isolation and what implies it; repeatable read is kept (Elle).
        let (not, also) = ruled_out(&[AnomalyKind::Internal]);
        assert_eq!((not, also.len()), (vec![M::SnapshotIsolation], 3));
        assert_eq!(ruled_out(&[AnomalyKind::IncompatibleOrder]).0, vec![M::ReadCommitted]);
        assert_eq!(ruled_out(&[AnomalyKind::DuplicateElements]).0, vec![M::ReadUncommitted]);
        assert_eq!(ruled_out(&[AnomalyKind::GarbageRead]).0, vec![M::ReadUncommitted]);
        assert_eq!(AnomalyKind::GSingleProcess.name(), "G-single-process");
        assert_eq!("snapshot-isolation".parse::<M>().unwrap(), M::SnapshotIsolation);
        assert!("si".parse::<M>().is_err());
    }
}
