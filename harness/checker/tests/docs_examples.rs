//! The examples in docs/history-format.md parse, and the register example is linearizable.

use faultline_checker::{check_linearizable, jsonl, CheckOptions, ModelKind, Verdict};

fn json_blocks() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/history-format.md");
    let text = std::fs::read_to_string(path).expect("docs/history-format.md is readable");
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match (&mut cur, line.trim()) {
            (None, "```json") => cur = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn every_json_example_parses() {
    let blocks = json_blocks();
    assert!(blocks.len() >= 5, "found {} json blocks", blocks.len());
    for b in &blocks {
        let p = jsonl::parse(b).unwrap_or_else(|e| panic!("{e} in\n{b}"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert!(!p.events.is_empty());
    }
}

#[test]
fn register_example_with_faults_is_linearizable() {
    let blocks = json_blocks();
    let text: String = blocks[..3].concat();
    let p = jsonl::parse(&text).unwrap();
    assert_eq!(p.events.len(), 15);
    let r = check_linearizable(&p.events, ModelKind::CasRegister, &CheckOptions::default());
    assert_eq!(r.verdict, Verdict::Valid, "{}", r.to_text());
    assert_eq!(r.nemesis_events, 2);
    assert_eq!(r.ops_fail, 2);
    assert_eq!(r.ops_info, 2);
    for (i, model) in [(3, ModelKind::Kv), (4, ModelKind::Set)] {
        let p = jsonl::parse(&blocks[i]).unwrap();
        assert_eq!(check_linearizable(&p.events, model, &CheckOptions::default()).verdict, Verdict::Valid);
    }
}

#[test]
fn transaction_example_is_strict_serializable() {
    use faultline_checker::txn::{try_check, ConsistencyModel, TxnModel, TxnOptions};
    let blocks = json_blocks();
    let b = blocks.iter().find(|b| b.contains("\"f\":\"txn\"")).expect("a transaction example");
    let events = jsonl::parse(b).expect("parses").events;
    let r = try_check(&events, TxnModel::ListAppend, ConsistencyModel::StrictSerializable, &TxnOptions::default())
        .expect("well formed");
    assert_eq!(r.verdict, Verdict::Valid, "{}", r.to_text());
    assert_eq!((r.txns, r.edges.wr, r.edges.rw), (2, 1, 1), "{:?}", r.edges);
}
