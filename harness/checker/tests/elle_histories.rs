//! Histories Elle publishes (github.com/jepsen-io/elle, `histories/`), judged as Elle judges them.
//!
//! The two small ones are restated here in Jepsen's EDN form, as `faultline check --format
//! jepsen-edn` reads them: the transactions, keys and values are Elle's, the comments ours.
//! Elle's 2.8 MB `huge-scc.edn` is not in this repository; docs/benchmarks.md gives the command
//! and what faultline concluded on it.

use faultline_checker::formats::Format;
use faultline_checker::txn::{try_check, AnomalyKind, ConsistencyModel, TxnModel, TxnOptions, TxnReport};
use faultline_checker::Verdict;

fn judge(edn: &str, m: ConsistencyModel) -> TxnReport {
    let parsed = Format::JepsenEdn.parse_operations(edn).expect("the history parses");
    try_check(&parsed.events, TxnModel::ListAppend, m, &TxnOptions::default()).expect("well formed")
}

fn kinds(r: &TxnReport) -> Vec<AnomalyKind> {
    r.anomalies.iter().map(|a| a.kind).collect()
}

/// Elle's `histories/si-without-g-single.edn`, which its `intermediate-sequential-extension-test`
/// checks for snapshot isolation and repeatable read: the anomalies are `[:G2-item]` and `:not`
/// is `#{:repeatable-read}` (a G2-item cycle with two adjacent anti-dependencies: snapshot
/// isolation allows it, so Elle must not claim a G-single).
const SI_WITHOUT_G_SINGLE: &str = r#"
; T1 appends 2 to 9; T4 reads it.
{:index 10, :time 0, :type :invoke, :process 2, :f :txn, :value [[:append 9 2]]}
{:index 11, :time 0, :type :ok, :process 2, :f :txn, :value [[:append 9 2]]}
; T2 appends 1 to 8 and does not see T1's append to 9.
{:index 20, :time 0, :type :invoke, :process 4, :f :txn, :value [[:append 8 1] [:r 9 nil]]}
{:index 21, :time 0, :type :ok, :process 4, :f :txn, :value [[:append 8 1] [:r 9 nil]]}
; T3 sees neither T2's append to 8 nor T4's to 6, and appends 5 to 9 after T1's 2.
{:index 30, :time 0, :type :invoke, :process 7, :f :txn, :value [[:r 6 nil] [:r 8 nil] [:append 9 5]]}
{:index 31, :time 0, :type :ok, :process 7, :f :txn, :value [[:r 6 nil] [:r 8 nil] [:append 9 5]]}
; T4 appends 2 to 6 and reads 9 = [2], without T3's 5.
{:index 40, :time 0, :type :invoke, :process 9, :f :txn, :value [[:append 6 2] [:r 9 nil]]}
{:index 41, :time 0, :type :ok, :process 9, :f :txn, :value [[:append 6 2] [:r 9 [2]]]}
"#;

#[test]
fn si_without_g_single_is_g2_item_only_and_keeps_snapshot_isolation() {
    let r = judge(SI_WITHOUT_G_SINGLE, ConsistencyModel::SnapshotIsolation);
    assert_eq!(r.verdict, Verdict::Valid, "{}", r.to_text());
    assert_eq!(kinds(&r), [AnomalyKind::G2Item], "{}", r.to_text());
    assert_eq!(r.not, [ConsistencyModel::RepeatableRead], "{}", r.to_text());
    let rr = judge(SI_WITHOUT_G_SINGLE, ConsistencyModel::RepeatableRead);
    assert_eq!(rr.verdict, Verdict::Invalid, "{}", rr.to_text());
}

/// The example of Elle's paper (Kingsbury & Alvaro, VLDB 2020), `histories/paper-example.edn`.
/// Elle's file gives neither `:process` nor `:f`; here each transaction has its own process (so
/// no process order is assumed) and `:f :txn`. T1 appended 8 to 255 and T2 read it; T2 read 256
/// = [1 2 4] without T3's append of 3; T3 read 255 = [2 3 4 5] without T1's 8: T1 wr T2 rw T3
/// rw T1, a G2-item cycle (two adjacent anti-dependencies): serializability and repeatable read
/// are ruled out, snapshot isolation is not.
const PAPER_EXAMPLE: &str = r#"
{:index 0, :process 0, :f :txn, :type :invoke, :value [[:append 253 1] [:append 253 3] [:append 253 4] [:append 255 2] [:append 255 3] [:append 255 4] [:append 255 5] [:append 256 1] [:append 256 2]]}
{:index 1, :process 0, :f :txn, :type :ok, :value [[:append 253 1] [:append 253 3] [:append 253 4] [:append 255 2] [:append 255 3] [:append 255 4] [:append 255 5] [:append 256 1] [:append 256 2]]}
{:index 2, :process 1, :f :txn, :type :invoke, :value [[:append 255 8] [:r 253 nil]]}
{:index 3, :process 1, :f :txn, :type :ok, :value [[:append 255 8] [:r 253 [1 3 4]]]}
{:index 4, :process 2, :f :txn, :type :invoke, :value [[:append 256 4] [:r 255 nil] [:r 256 nil] [:r 253 nil]]}
{:index 5, :process 2, :f :txn, :type :ok, :value [[:append 256 4] [:r 255 [2 3 4 5 8]] [:r 256 [1 2 4]] [:r 253 [1 3 4]]]}
{:index 6, :process 3, :f :txn, :type :invoke, :value [[:append 250 10] [:r 253 nil] [:r 255 nil] [:append 256 3]]}
{:index 7, :process 3, :f :txn, :type :ok, :value [[:append 250 10] [:r 253 [1 3 4]] [:r 255 [2 3 4 5]] [:append 256 3]]}
"#;

#[test]
fn the_paper_example_is_a_g2_item_cycle_of_three_transactions() {
    let r = judge(PAPER_EXAMPLE, ConsistencyModel::Serializable);
    assert_eq!(r.verdict, Verdict::Invalid, "{}", r.to_text());
    assert_eq!(kinds(&r), [AnomalyKind::G2Item], "{}", r.to_text());
    let cycle = r.anomalies[0].cycle.as_ref().expect("a cycle");
    let edges: Vec<&str> = cycle.iter().map(|e| e.kind.name()).collect();
    let mut sorted = edges.clone();
    sorted.sort();
    assert_eq!(sorted, ["rw", "rw", "wr"], "{}", r.to_text());
    assert_eq!(judge(PAPER_EXAMPLE, ConsistencyModel::SnapshotIsolation).verdict, Verdict::Valid);
    assert_eq!(judge(PAPER_EXAMPLE, ConsistencyModel::RepeatableRead).verdict, Verdict::Invalid);
}
