//! The transactional verdict placed on the consistency map: results.json `isolation`.
//!
//! The single-object ladder (`consistency`) does not describe transactions. A transactional
//! workload's checker (list-append, rw-register) reports the anomalies it found and the models
//! they rule out ([`TxnReport`]); [`Isolation`] is that report reduced to what a reader of a run
//! or a campaign compares: which models of the map were ruled out, which could not be settled,
//! and the strongest models kept (those no anomaly found rules out: not a proof that the system
//! provides them, only that this history shows nothing against them, as with Elle).

use std::collections::BTreeMap;

use faultline_checker::txn::{ConsistencyModel, TxnReport};
use serde::{Deserialize, Serialize};

use crate::CheckerResult;

/// The transactional models of one run, from its transactional checker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Isolation {
    /// The checker that judged it (`list-append`, `rw-register`).
    pub checker: String,
    /// The strongest models kept, strongest first: the maximal models of the map that no
    /// anomaly rules out and no exhausted budget left undecided (two when repeatable read and
    /// snapshot isolation, which are incomparable, are both the strongest kept).
    pub strongest: Vec<ConsistencyModel>,
    /// Every model ruled out (Elle's `:not` and `:also-not` together), weakest first.
    pub ruled_out: Vec<ConsistencyModel>,
    /// Models a budget left undecided, weakest first.
    pub undecided: Vec<ConsistencyModel>,
    /// Anomalies found, by kind, and how many of each.
    pub anomalies: BTreeMap<String, usize>,
}

impl Isolation {
    /// The summary of a transactional checker's report.
    pub fn from_report(checker: &str, r: &TxnReport) -> Isolation {
        let mut ruled_out: Vec<ConsistencyModel> = r.not.iter().chain(&r.also_not).copied().collect();
        ruled_out.sort();
        ruled_out.dedup();
        let mut undecided: Vec<ConsistencyModel> =
            r.undecided.iter().copied().filter(|m| !ruled_out.contains(m)).collect();
        undecided.sort();
        undecided.dedup();
        Isolation {
            checker: checker.to_string(),
            strongest: strongest_kept(&ruled_out, &undecided),
            ruled_out,
            undecided,
            anomalies: r.anomaly_counts.clone(),
        }
    }

    /// The first checker whose details are a transactional report, summarised; `None` for a
    /// run without transactions.
    pub fn from_checkers(checkers: &[CheckerResult]) -> Option<Isolation> {
        transactional_report(checkers).map(|(c, report)| Isolation::from_report(&c.name, &report))
    }

    /// Whether `m` is kept (neither ruled out nor undecided).
    pub fn keeps(&self, m: ConsistencyModel) -> bool {
        !self.ruled_out.contains(&m) && !self.undecided.contains(&m)
    }

    /// `serializable`, `repeatable-read / snapshot-isolation`, or `none` when even read
    /// uncommitted is ruled out.
    pub fn strongest_text(&self) -> String {
        if self.strongest.is_empty() {
            return "none".into();
        }
        self.strongest.iter().map(|m| m.name()).collect::<Vec<_>>().join(" / ")
    }
}

/// The first checker whose details are a transactional report, with that report. Only details
/// that look transactional are parsed (a register run's linearizability details are large).
pub fn transactional_report(checkers: &[CheckerResult]) -> Option<(&CheckerResult, TxnReport)> {
    checkers.iter().find_map(|c| {
        let looks_transactional = c.details.get("consistency_model").is_some() && c.details.get("not").is_some();
        if !looks_transactional {
            return None;
        }
        let report: TxnReport = serde_json::from_value(c.details.clone()).ok()?;
        Some((c, report))
    })
}

/// The maximal models (strongest first) among those neither ruled out nor undecided. A model
/// is kept only when every model it implies is kept too (the map is closed downwards), so a
/// model above an undecided or ruled-out one is never reported kept.
pub fn strongest_kept(ruled_out: &[ConsistencyModel], undecided: &[ConsistencyModel]) -> Vec<ConsistencyModel> {
    let kept = |m: ConsistencyModel| {
        ConsistencyModel::ALL.iter().all(|&w| !m.implies(w) || (!ruled_out.contains(&w) && !undecided.contains(&w)))
    };
    let kept_models: Vec<ConsistencyModel> = ConsistencyModel::ALL.iter().copied().filter(|&m| kept(m)).collect();
    let mut maximal: Vec<ConsistencyModel> =
        kept_models.iter().copied().filter(|&m| !kept_models.iter().any(|&s| s != m && s.implies(m))).collect();
    maximal.sort_by(|a, b| b.cmp(a));
    maximal
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsistencyModel::*;

    #[test]
    fn strongest_kept_is_the_top_of_the_map_below_what_is_ruled_out() {
        assert_eq!(strongest_kept(&[], &[]), vec![StrictSerializable]);
        // Write skew (G2-item): repeatable read and everything above it ruled out.
        let g2 = [RepeatableRead, Serializable, StrongSessionSerializable, StrictSerializable];
        assert_eq!(strongest_kept(&g2, &[]), vec![SnapshotIsolation]);
        // G-single: both middle models out, read committed is the strongest kept.
        let gs = [RepeatableRead, SnapshotIsolation, Serializable, StrongSessionSerializable, StrictSerializable];
        assert_eq!(strongest_kept(&gs, &[]), vec![ReadCommitted]);
        // Only the real-time variant: serializable and the session variant are kept.
        assert_eq!(strongest_kept(&[StrictSerializable], &[]), vec![StrongSessionSerializable]);
        // Undecided serializable (a budget ran out): both middle models are the top.
        let und = [Serializable, StrongSessionSerializable, StrictSerializable];
        assert_eq!(strongest_kept(&[], &und), vec![SnapshotIsolation, RepeatableRead]);
        // A garbage read rules out everything.
        assert_eq!(strongest_kept(&ConsistencyModel::ALL, &[]), Vec::<ConsistencyModel>::new());
    }

    /// Brute force over every subset of the map: the result is exactly the set of kept models
    /// that no other kept model implies, and a model above a ruled-out one is never in it.
    #[test]
    fn strongest_kept_agrees_with_brute_force_on_every_subset() {
        let all = ConsistencyModel::ALL;
        for mask in 0u32..(1 << all.len()) {
            let out: Vec<ConsistencyModel> = (0..all.len()).filter(|i| mask & (1 << i) != 0).map(|i| all[i]).collect();
            let got = strongest_kept(&out, &[]);
            let kept: Vec<ConsistencyModel> =
                all.iter().copied().filter(|&m| all.iter().all(|&w| !m.implies(w) || !out.contains(&w))).collect();
            for &m in &all {
                let is_max = kept.contains(&m) && !kept.iter().any(|&s| s != m && s.implies(m));
                assert_eq!(got.contains(&m), is_max, "ruled out {out:?}: {m} in {got:?}?");
            }
        }
    }
}
