//! The wire form of `POST /txn` (docs/node-api.md): parsing a request body into micro-ops, with
//! a 400 reason for anything malformed or out of bounds, and rendering a committed
//! transaction's micro-ops back as `[f, key, value]` triples. The Raft role runs transactions
//! (`faultline_protocols::raft::txn`); this module owns only their JSON.

use crate::api::KEY_BYTES_MAX;
use faultline_protocols::raft::txn::{validate, TXN_OPS_MAX};
use faultline_protocols::raft::{MicroOp, TxnValue};
use serde_json::{json, Value};

/// Bytes of a `/txn` request body at most (16 micro-ops with 256-byte keys fit easily).
pub const TXN_BODY_BYTES_MAX: usize = 64 << 10;

/// The shape a body must have, quoted in every 400.
pub const TXN_SHAPE: &str = r#"{"ops": [["append", key, integer] | ["w", key, integer] | ["r", key, null], ...]}"#;

/// Parses `{"ops": [[f, key, value], ...]}`; `Err` is the 400's reason.
pub fn parse_txn(body: &[u8]) -> Result<Vec<MicroOp>, String> {
    if body.len() > TXN_BODY_BYTES_MAX {
        return Err(format!("body of {} bytes; a transaction has at most {TXN_BODY_BYTES_MAX}", body.len()));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON ({e}); expected {TXN_SHAPE}"))?;
    let Some(Value::Array(raw)) = v.get("ops") else {
        return Err(format!("no \"ops\" array; expected {TXN_SHAPE}"));
    };
    if raw.is_empty() || raw.len() > TXN_OPS_MAX {
        return Err(format!("a transaction has 1 to {TXN_OPS_MAX} micro-ops, not {}", raw.len()));
    }
    let ops = raw
        .iter()
        .enumerate()
        .map(|(i, m)| micro_op(m).map_err(|e| format!("ops[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    validate(&ops)?;
    Ok(ops)
}

fn micro_op(m: &Value) -> Result<MicroOp, String> {
    let Some([f, key, value]) = m.as_array().map(Vec::as_slice) else {
        return Err("expected a [f, key, value] array".into());
    };
    let key = match key {
        Value::String(k) if !k.is_empty() && k.len() <= KEY_BYTES_MAX => k.clone(),
        Value::String(k) => return Err(format!("key: {} bytes; a key has 1 to {KEY_BYTES_MAX}", k.len())),
        _ => return Err("key: expected a string".into()),
    };
    let int = || value.as_i64().ok_or_else(|| format!("{f}: expected an integer value, found {value}"));
    match f.as_str() {
        Some("append") => Ok(MicroOp::Append { key, value: int()? }),
        Some("w") => Ok(MicroOp::Write { key, value: int()? }),
        Some("r") if value.is_null() => Ok(MicroOp::Read { key, value: None }),
        Some("r") => Err(format!("r: expected null, found {value}")),
        _ => Err(format!("f: expected \"append\", \"w\" or \"r\", found {f}")),
    }
}

/// A committed transaction's micro-ops as the answer's `ops`.
pub fn render(ops: &[MicroOp]) -> Value {
    let one = |op: &MicroOp| match op {
        MicroOp::Append { key, value } => json!(["append", key, value]),
        MicroOp::Write { key, value } => json!(["w", key, value]),
        MicroOp::Read { key, value: None } => json!(["r", key, null]),
        MicroOp::Read { key, value: Some(TxnValue::Int(v)) } => json!(["r", key, v]),
        MicroOp::Read { key, value: Some(TxnValue::List(l)) } => json!(["r", key, l]),
    };
    json!({ "ops": ops.iter().map(one).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_body_and_renders_the_answer() {
        let ops = parse_txn(br#"{"ops": [["append", "k", 3], ["r", "k", null], ["w", "j", 5]]}"#).unwrap();
        assert_eq!(ops[0], MicroOp::Append { key: "k".into(), value: 3 });
        assert_eq!(ops[2], MicroOp::Write { key: "j".into(), value: 5 });
        let done = vec![
            ops[0].clone(),
            MicroOp::Read { key: "k".into(), value: Some(TxnValue::List(vec![3])) },
            ops[2].clone(),
        ];
        assert_eq!(render(&done), json!({"ops": [["append", "k", 3], ["r", "k", [3]], ["w", "j", 5]]}));
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"nope", "invalid JSON"),
            (br#"{"ops": 3}"#, "no \"ops\" array"),
            (br#"{"ops": []}"#, "1 to 16 micro-ops"),
            (br#"{"ops": [["append", "k"]]}"#, "ops[0]: expected a [f, key, value]"),
            (br#"{"ops": [["append", "", 1]]}"#, "ops[0]: key: 0 bytes"),
            (br#"{"ops": [["append", 7, 1]]}"#, "key: expected a string"),
            (br#"{"ops": [["append", "k", 1.5]]}"#, "expected an integer"),
            (br#"{"ops": [["r", "k", 1]]}"#, "expected null"),
            (br#"{"ops": [["cas", "k", 1]]}"#, "f: expected"),
            (br#"{"ops": [["append", "k", 1], ["w", "k", 2]]}"#, "both appended to and written"),
        ];
        for (body, want) in cases {
            let e = parse_txn(body).unwrap_err();
            assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(body));
        }
        let many = format!(r#"{{"ops": [{}]}}"#, vec![r#"["r", "k", null]"#; 17].join(","));
        assert!(parse_txn(many.as_bytes()).unwrap_err().contains("not 17"));
        assert!(parse_txn(&vec![b' '; TXN_BODY_BYTES_MAX + 1]).unwrap_err().contains("at most"));
    }
}
