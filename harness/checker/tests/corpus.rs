//! Porcupine's test histories (../shared/data/porcupine, 109 files with EXPECTED.tsv): every
//! file must get the verdict Porcupine's own tests assert.

use std::path::PathBuf;
use std::time::Duration;

use faultline_checker::formats::Format;
use faultline_checker::{CheckOptions, ModelKind, Verdict};

/// `<repo>/../shared/data/porcupine`: CI clones the repo beside a copy of shared/.
fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/porcupine");
    assert!(
        dir.join("EXPECTED.tsv").is_file(),
        "the Porcupine corpus is missing: expected {}/EXPECTED.tsv (shared/ must sit beside the repository)",
        dir.display()
    );
    dir
}

struct Row {
    file: String,
    model: String,
    expected: String,
}

fn rows() -> Vec<Row> {
    let text = std::fs::read_to_string(corpus_dir().join("EXPECTED.tsv")).expect("EXPECTED.tsv is readable");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert!(c.len() >= 3, "EXPECTED.tsv row with fewer than 3 columns: {l:?}");
            Row { file: c[0].to_string(), model: c[1].to_string(), expected: c[2].to_string() }
        })
        .collect()
}

fn check_file(row: &Row, opts: &CheckOptions) -> faultline_checker::LinearizabilityReport {
    let (format, model) = match row.model.as_str() {
        "etcd_register" => (Format::PorcupineEtcd, ModelKind::CasRegister),
        "kv_append" => (Format::PorcupineKv, ModelKind::Kv),
        other => panic!("{}: unknown model {other} in EXPECTED.tsv", row.file),
    };
    let text = std::fs::read_to_string(corpus_dir().join(&row.file)).expect("corpus file is readable");
    let parsed = format.parse(&text).unwrap_or_else(|e| panic!("{}:{e}", row.file));
    assert!(parsed.warnings.is_empty(), "{}: {:?}", row.file, parsed.warnings);
    faultline_checker::try_check_linearizable(&parsed.events, model, opts)
        .unwrap_or_else(|e| panic!("{}: {e}", row.file))
}

#[test]
fn every_corpus_history_gets_its_expected_verdict() {
    let rows = rows();
    assert_eq!(rows.len(), 109, "EXPECTED.tsv lists 109 histories");
    let opts = CheckOptions { time_limit: Some(Duration::from_secs(60)), ..CheckOptions::default() };
    let mut wrong = Vec::new();
    for row in &rows {
        let r = check_file(row, &opts);
        let want = match row.expected.as_str() {
            "linearizable" => Verdict::Valid,
            "not_linearizable" => Verdict::Invalid,
            other => panic!("{}: unknown expectation {other}", row.file),
        };
        if r.verdict != want {
            wrong.push(format!("{}: expected {want:?}, got {:?} ({:?})", row.file, r.verdict, r.reason));
        }
        if r.verdict == Verdict::Invalid {
            let e = r.explanation.as_ref().unwrap_or_else(|| panic!("{}: invalid without explanation", row.file));
            assert!(!e.longest.is_empty(), "{}: no partial linearization", row.file);
            assert!(e.failed_op < e.ops.len(), "{}: failed op out of range", row.file);
        }
    }
    assert!(wrong.is_empty(), "{} wrong verdicts:\n{}", wrong.len(), wrong.join("\n"));
}

/// kv/c50-bad judged key by key (no early stop): every key decided (Porcupine leaves keys 0 and
/// 9 undecided after 20 s), and key 0's explanation names the get that rules it out: a late
/// get that reads "" although appends completed before it was called.
#[test]
fn c50_bad_every_key_decided_and_explained() {
    let row = Row { file: "kv/c50-bad.txt".into(), model: "kv_append".into(), expected: "not_linearizable".into() };
    let opts = CheckOptions {
        time_limit: Some(Duration::from_secs(60)),
        stop_on_first_invalid: false,
        ..CheckOptions::default()
    };
    let r = check_file(&row, &opts);
    assert_eq!(r.keys.len(), 10);
    for k in &r.keys {
        assert_eq!(k.verdict, Verdict::Invalid, "key {:?}: {:?}", k.key, k.reason);
    }
    let k0 = r.keys.iter().find(|k| k.key.as_deref() == Some("0")).unwrap();
    let e = k0.explanation.as_ref().unwrap();
    let text = e.to_text();
    assert!(text.contains("(→ \"\") must come later"), "{text}");
    let p = &e.longest[0];
    assert!(!p.candidates.is_empty());
    assert!(p.candidates.iter().any(|c| c.op == e.failed_op), "the blocked op is among the candidates");
}
