//! The rw-register workload (Elle's `rw-register`): transactions of writes of unique integers
//! to registers and reads, over a rotating pool of keys ([`crate::txn`]), then a read of every
//! key. Judged by the `rw-register` checker against strict serializability (version orders are
//! inferred only where reads force them, so it is sound but not complete: docs/transactions.md).
//!
//! The workload is [`crate::txn::TxnWorkload`] with this model; this module holds its tests.

#[cfg(test)]
mod tests {
    use crate::txn::TxnWorkload;
    use faultline_checker::history::Event;
    use faultline_checker::history::{EventType, Process};
    use faultline_checker::txn::TxnModel;
    use faultline_checker::Verdict;
    use faultline_core::checker::{check_all, History};
    use faultline_core::workload::Workload;
    use serde_json::{json, Value};

    fn ev(index: u64, kind: EventType, p: u64, value: Value) -> Event {
        Event {
            index,
            time: index * 1000,
            kind,
            process: Process::Client(p),
            f: "txn".into(),
            key: None,
            value,
            error: None,
            node: Some("n1".into()),
        }
    }

    #[test]
    fn writes_only_w_micro_ops_and_the_checker_catches_a_lost_update() {
        let mut g = TxnWorkload::new(TxnModel::RwRegister).generator(4, 1, 3);
        for _ in 0..200 {
            let op = g.next_op().unwrap();
            assert!(op.value.as_array().unwrap().iter().all(|m| m[0] == "w" || m[0] == "r"), "{op:?}");
        }
        use EventType::*;
        // Both read x = 1 and both wrote it: a lost update.
        let h = vec![
            ev(0, Invoke, 0, json!([["w", "x", 1]])),
            ev(1, Ok, 0, json!([["w", "x", 1]])),
            ev(2, Invoke, 1, json!([["r", "x", null], ["w", "x", 2]])),
            ev(3, Invoke, 2, json!([["r", "x", null], ["w", "x", 3]])),
            ev(4, Ok, 1, json!([["r", "x", 1], ["w", "x", 2]])),
            ev(5, Ok, 2, json!([["r", "x", 1], ["w", "x", 3]])),
        ];
        let r = check_all(&TxnWorkload::new(TxnModel::RwRegister).checkers(), &History::of(&h));
        assert_eq!((r[0].name.as_str(), r[0].verdict), ("rw-register", Verdict::Invalid), "{r:?}");
        assert!(r[0].reason.as_deref().unwrap().contains("lost-update"), "{:?}", r[0].reason);
        let ok = &h[..2];
        assert_eq!(
            check_all(&TxnWorkload::new(TxnModel::RwRegister).checkers(), &History::of(ok))[0].verdict,
            Verdict::Valid
        );
    }
}
