//! From history events to transactions: pairs each `txn` invocation with its completion and
//! reads its micro-ops (docs/history-format.md, "Transactions").
//!
//! Owns the transaction types the rest of `txn` works on. A micro-op is `["append", k, v]`,
//! `["w", k, v]` or `["r", k, x]`; keys are strings or integers (interned to `u32`), values
//! integers. A read is kept as a list for both models: list-append `null` is the empty list,
//! rw-register `null` is `[]` and `v` is `[v]`. An invocation's reads are ignored; an `ok`
//! completion supplies them. `info` completions and invocations never completed are
//! indeterminate (their reads unknown); `fail` ones did not happen. Nemesis events are skipped.
//! Bad input is a [`TxnInputError`] naming the event, what was expected and a short escaped
//! quote of what was found.

use rustc_hash::FxHashMap;
use serde_json::Value;

use super::TxnModel;
use crate::history::{Event, EventType, Process};

/// A history that is not a well-formed transaction history for the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {index}: expected {expected}, found {found}")]
pub struct TxnInputError {
    /// Position of the offending event in the slice given to the checker.
    pub position: usize,
    /// Its `index` field.
    pub index: u64,
    pub expected: String,
    pub found: String,
}

/// How much of the input an error quotes, in characters (escapes included).
const QUOTE_CHARS_MAX: usize = 200;

/// A short escaped quote of a JSON value: at most [`QUOTE_CHARS_MAX`] characters.
pub(crate) fn quote(v: &Value) -> String {
    let text = v.to_string();
    let escaped: String = text.escape_debug().collect();
    match escaped.char_indices().nth(QUOTE_CHARS_MAX - 3) {
        Some((i, _)) => format!("`{}…`", &escaped[..i]),
        None => format!("`{escaped}`"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    Info,
    Fail,
}

/// One micro-op. Reads hold a list (see the module docs); `None` = not known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mop {
    Write { key: u32, value: i64 },
    Read { key: u32, value: Option<Vec<i64>> },
}

#[derive(Clone, Debug)]
pub(crate) struct Txn {
    pub process: Process,
    pub status: Status,
    /// Positions of its events in the slice (the completion = `None` if never completed).
    pub invoke_pos: usize,
    pub complete_pos: Option<usize>,
    /// The `index` field used to name it (`T12`): the completion's, else the invocation's.
    pub label: u64,
    pub mops: Vec<Mop>,
}

/// The transactions of a history, in invocation order.
pub(crate) struct Txns {
    pub txns: Vec<Txn>,
    /// Interned key names.
    pub keys: Vec<String>,
    pub nemesis_events: usize,
}

struct Ctx<'a> {
    events: &'a [Event],
    model: TxnModel,
    key_ids: FxHashMap<String, u32>,
    keys: Vec<String>,
}

impl Ctx<'_> {
    fn err(&self, pos: usize, expected: impl Into<String>, found: String) -> TxnInputError {
        TxnInputError { position: pos, index: self.events[pos].index, expected: expected.into(), found }
    }

    fn key(&mut self, pos: usize, v: &Value) -> Result<u32, TxnInputError> {
        let name = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            other => return Err(self.err(pos, "a key: a string or an integer", quote(other))),
        };
        if let Some(&id) = self.key_ids.get(&name) {
            return Ok(id);
        }
        let id = self.keys.len() as u32;
        self.keys.push(name.clone());
        self.key_ids.insert(name, id);
        Ok(id)
    }

    /// An integer value; `i64::MIN` is refused (the checkers use it for "never written").
    fn int(&self, pos: usize, v: &Value, what: &str) -> Result<i64, TxnInputError> {
        match v.as_i64() {
            Some(i64::MIN) => Err(self.err(pos, format!("{what}: an integer above {}", i64::MIN), quote(v))),
            Some(i) => Ok(i),
            None => Err(self.err(pos, format!("{what}: an integer"), quote(v))),
        }
    }

    fn read_value(&self, pos: usize, v: &Value) -> Result<Vec<i64>, TxnInputError> {
        match (self.model, v) {
            (_, Value::Null) => Ok(Vec::new()),
            (TxnModel::RwRegister, v) => Ok(vec![self.int(pos, v, "a register read")?]),
            (TxnModel::ListAppend, Value::Array(items)) => {
                items.iter().map(|x| self.int(pos, x, "a list element")).collect()
            }
            (TxnModel::ListAppend, other) => {
                Err(self.err(pos, "a list-append read: null or an array of integers", quote(other)))
            }
        }
    }

    /// One micro-op; `with_reads` = an `ok` completion (reads are observations).
    fn mop(&mut self, pos: usize, v: &Value, with_reads: bool) -> Result<Mop, TxnInputError> {
        let write_f = match self.model {
            TxnModel::ListAppend => "append",
            TxnModel::RwRegister => "w",
        };
        let expected = format!("a micro-op [\"{write_f}\", key, value] or [\"r\", key, value]");
        let Some([f, k, x]) = v.as_array().map(Vec::as_slice) else {
            return Err(self.err(pos, expected, quote(v)));
        };
        match f.as_str() {
            Some("r") => {
                let key = self.key(pos, k)?;
                let value = if with_reads { Some(self.read_value(pos, x)?) } else { None };
                Ok(Mop::Read { key, value })
            }
            Some(w) if w == write_f => {
                let key = self.key(pos, k)?;
                Ok(Mop::Write { key, value: self.int(pos, x, "a written value")? })
            }
            _ => Err(self.err(pos, expected, quote(v))),
        }
    }

    fn mops(&mut self, pos: usize, with_reads: bool) -> Result<Vec<Mop>, TxnInputError> {
        let v = &self.events[pos].value;
        let Some(items) = v.as_array() else {
            return Err(self.err(pos, "a transaction: an array of micro-ops", quote(v)));
        };
        items.iter().map(|m| self.mop(pos, m, with_reads)).collect()
    }
}

/// Pairs invocations with completions and reads every transaction.
pub(crate) fn transactions(events: &[Event], model: TxnModel) -> Result<Txns, TxnInputError> {
    let mut cx = Ctx { events, model, key_ids: FxHashMap::default(), keys: Vec::new() };
    let mut txns: Vec<Txn> = Vec::new();
    let mut open: FxHashMap<u64, usize> = FxHashMap::default();
    let mut nemesis_events = 0;
    for (pos, e) in events.iter().enumerate() {
        let Process::Client(p) = e.process else {
            nemesis_events += 1;
            continue;
        };
        if e.f != "txn" {
            return Err(cx.err(pos, "f \"txn\" (a transaction history)", quote(&Value::String(e.f.clone()))));
        }
        if e.kind == EventType::Invoke {
            if open.contains_key(&p) {
                return Err(cx.err(pos, format!("a completion of process {p}'s open transaction"), "an invoke".into()));
            }
            let mops = cx.mops(pos, false)?;
            open.insert(p, txns.len());
            let label = e.index;
            txns.push(Txn {
                process: e.process,
                status: Status::Info,
                invoke_pos: pos,
                complete_pos: None,
                label,
                mops,
            });
            continue;
        }
        let Some(t) = open.remove(&p) else {
            return Err(cx.err(pos, format!("an invoke by process {p} before its completion"), quote(&e.value)));
        };
        complete(&mut cx, &mut txns[t], pos)?;
    }
    Ok(Txns { txns, keys: cx.keys, nemesis_events })
}

fn complete(cx: &mut Ctx<'_>, txn: &mut Txn, pos: usize) -> Result<(), TxnInputError> {
    let e = &cx.events[pos];
    txn.complete_pos = Some(pos);
    txn.label = e.index;
    txn.status = match e.kind {
        EventType::Ok => Status::Ok,
        EventType::Fail => Status::Fail,
        _ => Status::Info,
    };
    if txn.status != Status::Ok {
        return Ok(());
    }
    let done = cx.mops(pos, true)?;
    let same_shape = done.len() == txn.mops.len()
        && done.iter().zip(&txn.mops).all(|(a, b)| match (a, b) {
            (Mop::Write { key: k1, value: v1 }, Mop::Write { key: k2, value: v2 }) => k1 == k2 && v1 == v2,
            (Mop::Read { key: k1, .. }, Mop::Read { key: k2, .. }) => k1 == k2,
            _ => false,
        });
    if !same_shape {
        return Err(cx.err(
            pos,
            "the invoked micro-ops (same keys and written values), with reads filled in",
            quote(&e.value),
        ));
    }
    txn.mops = done;
    Ok(())
}
