//! From events to operations: pairs each invocation with its completion, drops what cannot
//! affect linearizability, splits by key, and builds each key's model operations.
//!
//! Rules (docs/history-format.md): nemesis events are ignored; a `fail` did not happen and is
//! dropped, except a cas failed with error `"cas-mismatch"`, which observed a value other than
//! `from`; an `info` completion, or an invocation never completed, is indeterminate: open until
//! the end. Indeterminate reads/gets are dropped (they neither change nor constrain the state).

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::explain::OpRef;
use crate::history::{Event, EventType, Process};
use crate::model::{KvOp, ModelKind, RegOp, SetOp, Span};

/// A history that is not well formed for the chosen model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {index}: expected {expected}, found {found}")]
pub struct HistoryError {
    /// Position of the offending event in the slice given to the checker.
    pub position: usize,
    /// Its `index` field.
    pub index: u64,
    pub expected: String,
    pub found: String,
}

pub(crate) enum ModelOps {
    Register { values: Vec<Option<i64>>, ops: Vec<RegOp> },
    Kv(Vec<KvOp>),
    Set(Vec<SetOp>),
}

/// One key's sub-history, ready to search.
pub(crate) struct KeyHistory {
    pub key: Option<String>,
    /// The operations, in invocation order, for explanations.
    pub ops: Vec<OpRef>,
    pub spans: Vec<Span>,
    pub model: ModelOps,
}

#[derive(Default)]
pub(crate) struct Counts {
    pub total: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    pub nemesis: usize,
}

pub(crate) struct Prepared {
    /// Sorted by key.
    pub keys: Vec<KeyHistory>,
    pub counts: Counts,
}

/// One paired operation before it is turned into a model op.
struct Paired<'a> {
    call_pos: usize,
    invoke: &'a Event,
    completion: Option<(usize, &'a Event)>,
}

/// How a paired operation ended, as the per-model rules read it.
struct Completed<'a> {
    op: &'a Paired<'a>,
    inv: &'a Event,
    /// The completion's type; `Info` if the op never completed.
    outcome: EventType,
    /// The completion's value; null if the op never completed.
    out_value: &'a Value,
    /// Completed ok.
    definite: bool,
    /// A cas failed with error "cas-mismatch": it observed a value other than `from`.
    mismatch: bool,
}

impl<'a> Completed<'a> {
    /// Reads how `op` ended.
    fn of(op: &'a Paired<'a>) -> Self {
        let inv = op.invoke;
        let (outcome, out_value) = match op.completion {
            Some((_, c)) => (c.kind, &c.value),
            None => (EventType::Info, &Value::Null),
        };
        // A failed operation did not happen, except a cas that reports it observed a mismatch.
        let definite = outcome == EventType::Ok;
        let mismatch = inv.f == "cas"
            && outcome == EventType::Fail
            && op.completion.and_then(|(_, c)| c.error.as_deref()) == Some("cas-mismatch");
        Completed { op, inv, outcome, out_value, definite, mismatch }
    }

    /// The operation's `f`.
    fn f(&self) -> &'a str {
        self.inv.f.as_str()
    }

    /// Not failed: ok or indeterminate.
    fn happened(&self) -> bool {
        self.outcome != EventType::Fail
    }

    /// A malformed invoke value.
    fn bad(&self, expected: &str, found: &Value) -> HistoryError {
        err(self.op.call_pos, self.inv, expected, show(found))
    }

    /// An `f` the model does not know.
    fn bad_f(&self, expected: &str) -> HistoryError {
        err(self.op.call_pos, self.inv, expected, format!("\"{}\"", self.f()))
    }

    /// A malformed completion value (of a definite op).
    fn bad_output(&self, expected: &str) -> HistoryError {
        let (p, c) = self.op.completion.expect("definite ops are completed");
        err(p, c, expected, show(&c.value))
    }
}

fn err(position: usize, e: &Event, expected: impl Into<String>, found: impl Into<String>) -> HistoryError {
    HistoryError { position, index: e.index, expected: expected.into(), found: found.into() }
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

pub(crate) fn prepare(events: &[Event], model: ModelKind) -> Result<Prepared, HistoryError> {
    prepare_from(events, model, None)
}

/// [`prepare`] with registers starting at `initial` (an integer) instead of nil: value id 0
/// is then `initial`, and nil, if some op reads it, a value like any other.
pub(crate) fn prepare_from(events: &[Event], model: ModelKind, initial: Option<i64>) -> Result<Prepared, HistoryError> {
    let mut counts = Counts::default();
    let mut pending: FxHashMap<u64, usize> = FxHashMap::default();
    let mut paired: Vec<Paired> = Vec::new();
    assert!(events.len() < u32::MAX as usize, "history positions fit in u32");
    for (pos, e) in events.iter().enumerate() {
        let p = match e.process {
            Process::Nemesis => {
                counts.nemesis += 1;
                continue;
            }
            Process::Client(p) => p,
        };
        match e.kind {
            EventType::Invoke => {
                if let Some(&open) = pending.get(&p) {
                    let at = paired[open].invoke.index;
                    return Err(err(
                        pos,
                        e,
                        format!("process {p} to complete its operation invoked at event {at} first"),
                        "a second invoke",
                    ));
                }
                counts.total += 1;
                pending.insert(p, paired.len());
                paired.push(Paired { call_pos: pos, invoke: e, completion: None });
            }
            EventType::Ok | EventType::Fail | EventType::Info => {
                let Some(open) = pending.remove(&p) else {
                    return Err(err(pos, e, format!("an invoke by process {p} before this completion"), "none"));
                };
                let inv = paired[open].invoke;
                if inv.f != e.f {
                    return Err(err(pos, e, format!("f \"{}\" as in the invoke", inv.f), format!("\"{}\"", e.f)));
                }
                if e.key.is_some() && e.key != inv.key {
                    return Err(err(pos, e, format!("key {:?} as in the invoke", inv.key), format!("{:?}", e.key)));
                }
                match e.kind {
                    EventType::Ok => counts.ok += 1,
                    EventType::Fail => counts.fail += 1,
                    _ => counts.info += 1,
                }
                paired[open].completion = Some((pos, e));
            }
        }
    }
    counts.info += pending.len();

    let mut by_key: FxHashMap<Option<String>, KeyBuilder> = FxHashMap::default();
    for op in &paired {
        let b = by_key.entry(op.invoke.key.clone()).or_insert_with(|| KeyBuilder::new(model).starting_at(initial));
        b.add(op)?;
    }
    let mut keys: Vec<KeyHistory> =
        by_key.into_iter().map(|(key, b)| KeyHistory { key, ops: b.refs, spans: b.spans, model: b.model }).collect();
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Prepared { keys, counts })
}

struct KeyBuilder {
    kind: ModelKind,
    refs: Vec<OpRef>,
    spans: Vec<Span>,
    model: ModelOps,
    value_ids: FxHashMap<Option<i64>, u32>,
}

fn int_or_nil(v: &Value) -> Option<Option<i64>> {
    match v {
        Value::Null => Some(None),
        Value::Number(n) => n.as_i64().map(Some),
        _ => None,
    }
}

fn ints(v: &Value) -> Option<Vec<i64>> {
    v.as_array()?.iter().map(|x| x.as_i64()).collect()
}

impl KeyBuilder {
    fn new(kind: ModelKind) -> Self {
        let model = match kind {
            ModelKind::Register | ModelKind::CasRegister => ModelOps::Register { values: vec![None], ops: Vec::new() },
            ModelKind::Kv => ModelOps::Kv(Vec::new()),
            ModelKind::Set => ModelOps::Set(Vec::new()),
        };
        KeyBuilder { kind, refs: Vec::new(), spans: Vec::new(), model, value_ids: FxHashMap::default() }
    }

    /// Registers start at `initial` (id 0) instead of nil.
    fn starting_at(mut self, initial: Option<i64>) -> Self {
        if let ModelOps::Register { values, .. } = &mut self.model {
            values[0] = initial;
            self.value_ids.insert(initial, 0);
        }
        self
    }

    fn value_id(&mut self, v: Option<i64>) -> u32 {
        if self.value_ids.is_empty() && v.is_none() {
            return 0;
        }
        let ModelOps::Register { values, .. } = &mut self.model else { unreachable!("register values") };
        *self.value_ids.entry(v).or_insert_with(|| {
            values.push(v);
            (values.len() - 1) as u32
        })
    }

    /// Turns one paired operation into a model op (or drops it).
    fn add(&mut self, op: &Paired) -> Result<(), HistoryError> {
        let o = Completed::of(op);
        // `ret` = None for indeterminate ops (open until the end).
        let ret = if o.definite || o.mismatch { op.completion.map(|(pos, _)| pos) } else { None };
        let kept = match self.kind {
            ModelKind::Register | ModelKind::CasRegister => self.add_register_op(&o)?,
            ModelKind::Kv => self.add_kv_op(&o)?,
            ModelKind::Set => self.add_set_op(&o)?,
        };
        if kept {
            self.record(op, ret);
        }
        Ok(())
    }

    /// Pushes a register op (read, write, cas); false if the op is dropped.
    fn add_register_op(&mut self, o: &Completed) -> Result<bool, HistoryError> {
        let inv = o.inv;
        let cas_allowed = self.kind == ModelKind::CasRegister;
        let rop = match o.f() {
            "read" => {
                if !o.definite {
                    None
                } else {
                    let v = int_or_nil(o.out_value).ok_or_else(|| o.bad_output("a read value: an integer or null"))?;
                    Some(RegOp::Read(self.value_id(v)))
                }
            }
            "write" => {
                let v = match int_or_nil(&inv.value) {
                    Some(Some(v)) => v,
                    _ => return Err(o.bad("a write value: an integer", &inv.value)),
                };
                o.happened().then(|| RegOp::Write(self.value_id(Some(v))))
            }
            "cas" if cas_allowed => {
                let pair = inv.value.as_array().filter(|a| a.len() == 2);
                let (from, to) = match pair.map(|a| (int_or_nil(&a[0]), int_or_nil(&a[1]))) {
                    Some((Some(from), Some(Some(to)))) => (from, to),
                    _ => return Err(o.bad("a cas value: [from, to] with integers (from may be null)", &inv.value)),
                };
                let (from, to) = (self.value_id(from), self.value_id(Some(to)));
                if o.mismatch {
                    Some(RegOp::CasMismatch(from))
                } else {
                    o.happened().then_some(RegOp::Cas(from, to))
                }
            }
            _ => {
                let expected = if cas_allowed {
                    "f: read, write or cas"
                } else {
                    "f: read or write (cas needs --model cas-register)"
                };
                return Err(o.bad_f(expected));
            }
        };
        let kept = rop.is_some();
        if let (Some(r), ModelOps::Register { ops, .. }) = (rop, &mut self.model) {
            ops.push(r);
        }
        Ok(kept)
    }

    /// Pushes a kv op (get, put, append); false if the op is dropped.
    fn add_kv_op(&mut self, o: &Completed) -> Result<bool, HistoryError> {
        let s = |v: &Value| -> Option<Arc<str>> {
            match v {
                Value::String(s) => Some(Arc::from(s.as_str())),
                Value::Null => Some(Arc::from("")),
                _ => None,
            }
        };
        let f = o.f();
        let kop = match f {
            "get" => {
                if !o.definite {
                    None
                } else {
                    let v = s(o.out_value).ok_or_else(|| o.bad_output("a get value: a string or null"))?;
                    Some(KvOp::Get(v))
                }
            }
            "put" | "append" => {
                let v = match &o.inv.value {
                    Value::String(v) => Arc::from(v.as_str()),
                    other => return Err(o.bad(&format!("a {f} value: a string"), other)),
                };
                o.happened().then(|| if f == "put" { KvOp::Put(v) } else { KvOp::Append(v) })
            }
            _ => return Err(o.bad_f("f: get, put or append")),
        };
        let kept = kop.is_some();
        if let (Some(k), ModelOps::Kv(ops)) = (kop, &mut self.model) {
            ops.push(k);
        }
        Ok(kept)
    }

    /// Pushes a set op (add, read); false if the op is dropped.
    fn add_set_op(&mut self, o: &Completed) -> Result<bool, HistoryError> {
        let sop = match o.f() {
            "read" => {
                if !o.definite {
                    None
                } else {
                    let mut v =
                        ints(o.out_value).ok_or_else(|| o.bad_output("a set read value: an array of integers"))?;
                    v.sort_unstable();
                    v.dedup();
                    Some(SetOp::Read(Arc::from(v)))
                }
            }
            "add" => {
                let v = o.inv.value.as_i64().ok_or_else(|| o.bad("an add value: an integer", &o.inv.value))?;
                o.happened().then_some(SetOp::Add(v))
            }
            _ => return Err(o.bad_f("f: add or read")),
        };
        let kept = sop.is_some();
        if let (Some(x), ModelOps::Set(ops)) = (sop, &mut self.model) {
            ops.push(x);
        }
        Ok(kept)
    }

    /// Records a kept op's span (`ret` None if indeterminate) and its reference for explanations.
    fn record(&mut self, op: &Paired, ret: Option<usize>) {
        let inv = op.invoke;
        let completion = op.completion.map(|(_, c)| c);
        self.spans.push(Span { call: op.call_pos as u32, ret: ret.map(|r| r as u32) });
        self.refs.push(OpRef {
            process: inv.process,
            f: inv.f.clone(),
            kind: match completion {
                Some(c) => c.kind,
                None => EventType::Info,
            },
            value_in: inv.value.clone(),
            value_out: completion.map(|c| c.value.clone()).unwrap_or(Value::Null),
            error: completion.and_then(|c| c.error.clone()),
            call_index: inv.index,
            return_index: completion.map(|c| c.index),
            call_time: inv.time,
            return_time: completion.map(|c| c.time),
        });
    }
}
