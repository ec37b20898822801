//! The list-append workload (Elle's `list-append`): transactions of appends of unique integers
//! to lists and reads of whole lists, over a rotating pool of keys ([`crate::txn`]), then a read
//! of every key. Judged by the `list-append` checker: Elle-style inference of the dependency
//! graph, its cycles named as anomalies (G0, G1a/b/c, G-single, G2-item, ...), and the verdict
//! for strict serializability; the checker's details hold the models ruled out.
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

    /// Two transactions that each read the other's key before the other's append: each missed
    /// the other's write (rw both ways), a G2-item cycle that rules out serializability.
    #[test]
    fn the_checker_passes_a_serial_history_and_names_write_skew() {
        use EventType::*;
        let good = vec![
            ev(0, Invoke, 0, json!([["append", "x", 1], ["r", "y", null]])),
            ev(1, Ok, 0, json!([["append", "x", 1], ["r", "y", []]])),
            ev(2, Invoke, 1, json!([["append", "y", 2], ["r", "x", null]])),
            ev(3, Ok, 1, json!([["append", "y", 2], ["r", "x", [1]]])),
        ];
        let r = check_all(&TxnWorkload::new(TxnModel::ListAppend).checkers(), &History::of(&good));
        assert_eq!((r[0].name.as_str(), r[0].verdict), ("list-append", Verdict::Valid), "{r:?}");
        assert!(r[0].reason.as_deref().unwrap().contains("2 transactions (2 ok"), "{r:?}");
        let mut bad = good.clone();
        bad[1] = ev(1, Invoke, 1, json!([["append", "y", 2], ["r", "x", null]]));
        bad[2] = ev(2, Ok, 0, json!([["append", "x", 1], ["r", "y", []]]));
        bad[3] = ev(3, Ok, 1, json!([["append", "y", 2], ["r", "x", []]]));
        let r = check_all(&TxnWorkload::new(TxnModel::ListAppend).checkers(), &History::of(&bad));
        assert_eq!(r[0].verdict, Verdict::Invalid, "{r:?}");
        let reason = r[0].reason.as_deref().unwrap();
        assert!(reason.contains("G2-item") && reason.contains("ruled out: "), "{reason}");
        assert!(r[0].details["not"].as_array().is_some_and(|a| !a.is_empty()), "{}", r[0].details);
        assert!(r[0].details["text"].as_str().is_some_and(|t| t.contains("x")), "{}", r[0].details);
    }
}
