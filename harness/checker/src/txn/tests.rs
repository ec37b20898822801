//! Small hand-made histories, one per anomaly, each checked for its kind, the models ruled out
//! and the words of its edges.

use super::*;
use crate::history::{EventType, Process};
use serde_json::json;

/// Builds events: each transaction `(process, invoke value, completion type, completion
/// value)` runs alone, in order, unless `overlap` interleaves all invocations first.
fn history(txns: &[(u64, serde_json::Value, EventType, serde_json::Value)], overlap: bool) -> Vec<Event> {
    let mut ev = Vec::new();
    let mk = |i: usize, kind, p, v: &serde_json::Value| Event {
        index: i as u64,
        time: i as u64,
        kind,
        process: Process::Client(p),
        f: "txn".into(),
        key: None,
        value: v.clone(),
        error: None,
        node: None,
    };
    if overlap {
        for (p, inv, _, _) in txns {
            ev.push(mk(ev.len(), EventType::Invoke, *p, inv));
        }
        for (p, _, kind, done) in txns {
            ev.push(mk(ev.len(), *kind, *p, done));
        }
    } else {
        for (p, inv, kind, done) in txns {
            ev.push(mk(ev.len(), EventType::Invoke, *p, inv));
            ev.push(mk(ev.len(), *kind, *p, done));
        }
    }
    ev
}

fn ok(p: u64, done: serde_json::Value) -> (u64, serde_json::Value, EventType, serde_json::Value) {
    let inv = json!(done
        .as_array()
        .unwrap()
        .iter()
        .map(|m| if m[0] == "r" { json!(["r", m[1], null]) } else { m.clone() })
        .collect::<Vec<_>>());
    (p, inv, EventType::Ok, done)
}

fn la(events: &[Event], m: ConsistencyModel) -> TxnReport {
    try_check(events, TxnModel::ListAppend, m, &TxnOptions::default()).unwrap()
}

fn kinds(r: &TxnReport) -> Vec<String> {
    r.anomaly_counts.keys().cloned().collect()
}

#[test]
fn serial_history_is_strict_serializable() {
    let h = history(
        &[
            ok(0, json!([["append", "x", 1], ["r", "y", null]])),
            ok(1, json!([["r", "x", [1]], ["append", "y", 2]])),
            ok(0, json!([["r", "x", [1]], ["r", "y", [2]]])),
        ],
        false,
    );
    let r = la(&h, ConsistencyModel::StrictSerializable);
    assert_eq!(r.verdict, Verdict::Valid, "{}", r.to_text());
    assert!(r.anomalies.is_empty());
    assert_eq!((r.edges.wr, r.edges.rw, r.edges.ww), (3, 1, 0), "{:?}", r.edges);
}

#[test]
fn write_skew_is_g2_item_and_keeps_snapshot_isolation() {
    // Both read x and y empty, each appends to one: G2-item, both rw edges adjacent.
    let h = history(
        &[
            ok(0, json!([["r", "x", null], ["r", "y", null], ["append", "x", 1]])),
            ok(1, json!([["r", "x", null], ["r", "y", null], ["append", "y", 1]])),
            ok(2, json!([["r", "x", [1]], ["r", "y", [1]]])),
        ],
        true,
    );
    let r = la(&h, ConsistencyModel::Serializable);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(kinds(&r), vec!["G2-item"], "{}", r.to_text());
    assert_eq!(r.not, vec![ConsistencyModel::RepeatableRead]);
    assert!(!r.also_not.contains(&ConsistencyModel::SnapshotIsolation));
    assert_eq!(la(&h, ConsistencyModel::SnapshotIsolation).verdict, Verdict::Valid);
    let text = r.to_text();
    assert!(text.contains("T3 read y = [] before T4's append of 1 to y, which T3 did not see"), "{text}");
}

#[test]
fn read_skew_is_g_single() {
    // T1 appends to x and y; T2 sees x's append but not y's.
    let h = history(
        &[
            ok(0, json!([["append", "x", 1], ["append", "y", 1]])),
            ok(1, json!([["r", "x", [1]], ["r", "y", null]])),
            ok(2, json!([["r", "y", [1]]])),
        ],
        true,
    );
    let r = la(&h, ConsistencyModel::SnapshotIsolation);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(kinds(&r), vec!["G-single"], "{}", r.to_text());
    let cycle = r.anomalies[0].cycle.as_ref().unwrap();
    assert_eq!(cycle.len(), 2);
}

#[test]
fn g0_g1c_g1a_g1b() {
    // G0: x order [1 2] and y order [2 1] by the same two writers.
    let h = history(
        &[
            ok(0, json!([["append", "x", 1], ["append", "y", 1]])),
            ok(1, json!([["append", "x", 2], ["append", "y", 2]])),
            ok(2, json!([["r", "x", [1, 2]], ["r", "y", [2, 1]]])),
        ],
        true,
    );
    assert!(kinds(&la(&h, ConsistencyModel::ReadUncommitted)).contains(&"G0".to_string()));
    assert_eq!(la(&h, ConsistencyModel::ReadUncommitted).verdict, Verdict::Invalid);
    // G1c: each reads the other's append.
    let h = history(
        &[ok(0, json!([["append", "x", 1], ["r", "y", [1]]])), ok(1, json!([["append", "y", 1], ["r", "x", [1]]]))],
        true,
    );
    let r = la(&h, ConsistencyModel::ReadCommitted);
    assert_eq!(kinds(&r), vec!["G1c"], "{}", r.to_text());
    assert_eq!(la(&h, ConsistencyModel::ReadUncommitted).verdict, Verdict::Valid);
    // G1a: a failed append read; G1b: an intermediate append read.
    let failed = (0, json!([["append", "x", 1]]), EventType::Fail, json!([["append", "x", 1]]));
    let h = history(&[failed, ok(1, json!([["r", "x", [1]]]))], false);
    assert_eq!(kinds(&la(&h, ConsistencyModel::ReadCommitted)), vec!["G1a"]);
    let h = history(&[ok(0, json!([["append", "x", 1], ["append", "x", 2]])), ok(1, json!([["r", "x", [1]]]))], true);
    let r = la(&h, ConsistencyModel::ReadCommitted);
    assert!(kinds(&r).contains(&"G1b".to_string()), "{}", r.to_text());
}

#[test]
fn non_cycle_anomalies() {
    let h = history(&[ok(0, json!([["append", "x", 1], ["r", "x", [2]]]))], false);
    let r = la(&h, ConsistencyModel::ReadUncommitted);
    assert!(kinds(&r).contains(&"internal".to_string()), "{}", r.to_text());
    assert!(kinds(&r).contains(&"garbage-read".to_string()), "{}", r.to_text());
    let h = history(&[ok(0, json!([["append", "x", 1]])), ok(1, json!([["r", "x", [1, 1]]]))], false);
    assert!(kinds(&la(&h, ConsistencyModel::Serializable)).contains(&"duplicate-elements".to_string()));
    let h = history(
        &[
            ok(0, json!([["append", "x", 1]])),
            ok(1, json!([["append", "x", 2]])),
            ok(2, json!([["r", "x", [1, 2]]])),
            ok(3, json!([["r", "x", [2, 1]]])),
        ],
        false,
    );
    assert!(kinds(&la(&h, ConsistencyModel::Serializable)).contains(&"incompatible-order".to_string()));
    let h = history(
        &[ok(0, json!([["r", "x", null], ["append", "x", 1]])), ok(1, json!([["r", "x", null], ["append", "x", 2]]))],
        true,
    );
    let r = la(&h, ConsistencyModel::ReadCommitted);
    assert_eq!(r.verdict, Verdict::Valid);
    assert!(kinds(&r).contains(&"lost-update".to_string()), "{}", r.to_text());
    assert_eq!(la(&h, ConsistencyModel::SnapshotIsolation).verdict, Verdict::Invalid);
}

#[test]
fn realtime_and_process_variants() {
    // T1 appends x 1 and completes; T2 starts later and reads x empty: fine serially, not in
    // real time.
    let h = history(
        &[ok(0, json!([["append", "x", 1]])), ok(1, json!([["r", "x", null]])), ok(2, json!([["r", "x", [1]]]))],
        false,
    );
    let r = la(&h, ConsistencyModel::StrictSerializable);
    assert_eq!(r.verdict, Verdict::Invalid, "{}", r.to_text());
    assert_eq!(kinds(&r), vec!["G-single-realtime"]);
    assert_eq!(la(&h, ConsistencyModel::StrongSessionSerializable).verdict, Verdict::Valid);
    assert_eq!(la(&h, ConsistencyModel::Serializable).verdict, Verdict::Valid);
    // The same on one process: a process-order cycle.
    let h = history(
        &[ok(0, json!([["append", "x", 1]])), ok(0, json!([["r", "x", null]])), ok(2, json!([["r", "x", [1]]]))],
        false,
    );
    let r = la(&h, ConsistencyModel::StrongSessionSerializable);
    assert_eq!(kinds(&r), vec!["G-single-process"], "{}", r.to_text());
}

#[test]
fn info_transactions_count_only_when_seen() {
    let info = (0, json!([["append", "x", 1]]), EventType::Info, serde_json::Value::Null);
    let h = history(&[info.clone(), ok(1, json!([["r", "x", null]]))], false);
    assert_eq!(la(&h, ConsistencyModel::StrictSerializable).verdict, Verdict::Valid);
    // Seen by a later read: it committed, after T3's read of x: fine.
    let h = history(&[info, ok(1, json!([["r", "x", null]])), ok(2, json!([["r", "x", [1]]]))], false);
    assert_eq!(la(&h, ConsistencyModel::StrictSerializable).verdict, Verdict::Valid);
}

#[test]
fn rw_register_inference() {
    let rr = |h: &[Event], m| try_check(h, TxnModel::RwRegister, m, &TxnOptions::default()).unwrap();
    // Read skew on registers: T2 sees T1's x but y's initial nil.
    let h =
        history(&[ok(0, json!([["w", "x", 1], ["w", "y", 1]])), ok(1, json!([["r", "x", 1], ["r", "y", null]]))], true);
    let r = rr(&h, ConsistencyModel::Serializable);
    assert_eq!(kinds(&r), vec!["G-single"], "{}", r.to_text());
    assert!(r.to_text().contains("read y = nil, the initial version"), "{}", r.to_text());
    // Lost update: both read x = 1 and wrote it.
    let h = history(
        &[
            ok(0, json!([["w", "x", 1]])),
            ok(1, json!([["r", "x", 1], ["w", "x", 2]])),
            ok(2, json!([["r", "x", 1], ["w", "x", 3]])),
        ],
        false,
    );
    let r = rr(&h, ConsistencyModel::SnapshotIsolation);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert!(kinds(&r).contains(&"lost-update".to_string()), "{}", r.to_text());
    // Two blind writes and reads of each: no order is forced, so nothing is reported.
    let h = history(
        &[
            ok(0, json!([["w", "x", 1]])),
            ok(1, json!([["w", "x", 2]])),
            ok(2, json!([["r", "x", 1]])),
            ok(3, json!([["r", "x", 2]])),
        ],
        false,
    );
    assert_eq!(rr(&h, ConsistencyModel::Serializable).verdict, Verdict::Valid);
}

#[test]
fn bad_input_is_an_error_with_a_quote() {
    let h = history(&[ok(0, json!([["append", "x", "one"]]))], false);
    let e = try_check(&h, TxnModel::ListAppend, ConsistencyModel::Serializable, &TxnOptions::default()).unwrap_err();
    assert_eq!(e.position, 0);
    assert!(e.expected.contains("integer"), "{e}");
    assert!(e.found.contains("one"), "{e}");
    let long = "z".repeat(1000);
    let h = history(&[ok(0, json!([["frob", long, 1]]))], false);
    let e = try_check(&h, TxnModel::ListAppend, ConsistencyModel::Serializable, &TxnOptions::default()).unwrap_err();
    assert!(e.found.chars().count() <= 200, "{}", e.found.len());
    let h = history(&[ok(0, json!([["append", "x", 1]])), ok(1, json!([["append", "x", 1]]))], false);
    let e = try_check(&h, TxnModel::ListAppend, ConsistencyModel::Serializable, &TxnOptions::default()).unwrap_err();
    assert_eq!((e.position, e.index), (2, 2));
    assert!(e.expected.contains("unique"), "{e}");
    let r = check(&h, TxnModel::ListAppend, ConsistencyModel::Serializable, &TxnOptions::default());
    assert_eq!(r.verdict, Verdict::Unknown);
}

#[test]
fn non_repeatable_read_keeps_read_committed_only() {
    // T reads x twice around another transaction's append: fine under read committed.
    let h = history(
        &[
            (0, json!([["r", "x", null], ["r", "x", null]]), EventType::Ok, json!([["r", "x", []], ["r", "x", [1]]])),
            ok(1, json!([["append", "x", 1]])),
        ],
        true,
    );
    let r = la(&h, ConsistencyModel::ReadCommitted);
    assert_eq!(r.verdict, Verdict::Valid, "{}", r.to_text());
    assert_eq!(kinds(&r), vec!["non-repeatable-read"]);
    assert_eq!(r.not, vec![ConsistencyModel::RepeatableRead, ConsistencyModel::SnapshotIsolation]);
}

#[test]
fn an_exhausted_g_single_search_leaves_snapshot_isolation_undecided() {
    let h = history(
        &[
            ok(0, json!([["r", "x", null], ["r", "y", null], ["append", "x", 1]])),
            ok(1, json!([["r", "x", null], ["r", "y", null], ["append", "y", 1]])),
            ok(2, json!([["r", "x", [1]], ["r", "y", [1]]])),
        ],
        true,
    );
    let opts = TxnOptions { search_steps_max: 0, ..TxnOptions::default() };
    let si = try_check(&h, TxnModel::ListAppend, ConsistencyModel::SnapshotIsolation, &opts).unwrap();
    assert_eq!(si.verdict, Verdict::Unknown, "{}", si.to_text());
    assert_eq!(si.undecided, vec![ConsistencyModel::SnapshotIsolation]);
    assert!(si.reason.as_deref().unwrap_or("").contains("ran out of steps"), "{:?}", si.reason);
    // The G2-item cycle is still found: serializable is decided.
    let ser = try_check(&h, TxnModel::ListAppend, ConsistencyModel::Serializable, &opts).unwrap();
    assert_eq!(ser.verdict, Verdict::Invalid);
    let zero = TxnOptions { time_limit: Some(Duration::ZERO), ..TxnOptions::default() };
    let r = try_check(&h, TxnModel::ListAppend, ConsistencyModel::Serializable, &zero).unwrap();
    assert_eq!(r.verdict, Verdict::Unknown, "{}", r.to_text());
}

#[test]
fn a_graph_over_the_memory_budget_is_unknown() {
    let h = history(
        &[
            ok(0, json!([["append", "x", 1]])),
            ok(1, json!([["r", "x", [1]], ["append", "y", 1]])),
            ok(2, json!([["r", "y", [1]]])),
        ],
        false,
    );
    let tiny = TxnOptions { memory_limit_bytes: Some(EDGE_BYTES), ..TxnOptions::default() };
    let r = try_check(&h, TxnModel::ListAppend, ConsistencyModel::Serializable, &tiny).unwrap();
    assert_eq!(r.verdict, Verdict::Unknown, "{}", r.to_text());
    assert!(r.reason.as_deref().unwrap_or("").contains("memory limit"), "{:?}", r.reason);
    assert_eq!(la(&h, ConsistencyModel::Serializable).verdict, Verdict::Valid);
}

#[test]
fn nonadjacent_rw_edges_rule_out_snapshot_isolation() {
    // T1 -rw(x)-> T2 -wr(y)-> T3 -rw(z)-> T4 -wr(w)-> T1: two rw edges, never adjacent.
    let h = history(
        &[
            ok(0, json!([["r", "x", []], ["r", "w", [1]]])),
            ok(1, json!([["append", "x", 1], ["append", "y", 1]])),
            ok(2, json!([["r", "y", [1]], ["r", "z", []]])),
            ok(3, json!([["append", "z", 1], ["append", "w", 1]])),
        ],
        true,
    );
    let r = la(&h, ConsistencyModel::SnapshotIsolation);
    assert_eq!(kinds(&r), vec!["G-nonadjacent"], "{}", r.to_text());
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.anomalies[0].cycle.as_ref().map(Vec::len), Some(4));
}
