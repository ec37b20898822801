//! results.json keeps its shape through the typed [`Results`]: a file written by the untyped
//! runner before the type existed (main at 09806d7: `faultline run --time-limit 8 --seed 7
//! --nodes 3 --nemesis partition,kill,clock --nemesis-interval 2 --recovery 1`) loads, and
//! serializes back to the same JSON, field by field.

use faultline_results::{Results, Verdict};
use serde_json::Value;

const BEFORE: &str = include_str!("fixtures/results-raft-09806d7.json");

/// Every path where `a` and `b` differ, e.g. `/availability/during_faults/ok: 25 != 26`.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (va, vb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                if x.contains_key(k) != y.contains_key(k) {
                    out.push(format!("{path}/{k}: present in only one"));
                } else {
                    differences(&format!("{path}/{k}"), va, vb, out);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}

#[test]
fn a_results_json_from_before_the_type_round_trips_field_by_field() {
    let before: Value = serde_json::from_str(BEFORE).unwrap();
    let typed = Results::from_json(BEFORE).expect("the old file loads");
    assert_eq!(typed.verdict, Verdict::Valid);
    assert_eq!(typed.seed, 7);
    assert!(!typed.checkers.is_empty() && typed.ops.completed.ok > 0);
    let after = serde_json::to_value(&typed).unwrap();
    let mut diffs = Vec::new();
    differences("", &before, &after, &mut diffs);
    assert!(diffs.is_empty(), "results.json changed shape:\n{}", diffs.join("\n"));
}

#[test]
fn the_comparison_finds_a_changed_field() {
    // The test above would pass vacuously if `differences` saw nothing.
    let before: Value = serde_json::from_str(BEFORE).unwrap();
    let mut after = before.clone();
    after["availability"]["during_faults"]["ok"] = Value::from(123_456);
    after.as_object_mut().unwrap().remove("seed");
    let mut diffs = Vec::new();
    differences("", &before, &after, &mut diffs);
    assert_eq!(diffs.len(), 2, "{diffs:?}");
}

#[test]
fn a_partial_or_older_results_json_loads_with_defaults_and_a_wrong_type_is_an_error() {
    let r = Results::from_json(r#"{"verdict": "invalid", "interrupted": true}"#).unwrap();
    assert_eq!((r.verdict, r.interrupted, r.checkers.len()), (Verdict::Invalid, true, 0));
    assert_eq!(Results::from_json("{}").unwrap().verdict, Verdict::Unknown, "no verdict is never valid");
    let e = Results::from_json(r#"{"verdict": "maybe"}"#).unwrap_err().to_string();
    assert!(e.contains("maybe") || e.contains("variant"), "{e}");
    assert!(Results::from_json(r#"{"seed": "seven"}"#).is_err());
}
