//! A brute-force reference checker, for tests: tries every order of the operations that
//! respects real time, over the whole history at once (no split by key, no cache, no pruning,
//! states as plain JSON values). Exponential: only for histories of a handful of operations.
//!
//! It is written independently of the crate's `prepare` and `model` modules so that property
//! tests comparing it with [`crate::check_linearizable`] also test those.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::history::{Event, EventType, Process};
use crate::model::ModelKind;

/// Operations beyond this are refused (the search is factorial).
pub const OPS_MAX: usize = 10;

struct Op {
    call: usize,
    /// `None`: indeterminate, may take effect any time after `call`, or never.
    ret: Option<usize>,
    key: Option<String>,
    f: String,
    input: Value,
    output: Value,
    /// A failed cas that observed a value other than `from`.
    mismatch: bool,
}

/// `Ok(true)` if the history is linearizable under `model`; `Err` if it is malformed or too big.
pub fn is_linearizable(events: &[Event], model: ModelKind) -> Result<bool, String> {
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut ops: Vec<Op> = Vec::new();
    let mut outcome: Vec<Option<(usize, &Event)>> = Vec::new();
    for (pos, e) in events.iter().enumerate() {
        let Process::Client(p) = e.process else { continue };
        if e.kind == EventType::Invoke {
            if open.insert(p, ops.len()).is_some() {
                return Err(format!("event {pos}: process {p} invoked twice"));
            }
            ops.push(Op {
                call: pos,
                ret: None,
                key: e.key.clone(),
                f: e.f.clone(),
                input: e.value.clone(),
                output: Value::Null,
                mismatch: false,
            });
            outcome.push(None);
        } else {
            let i = open.remove(&p).ok_or_else(|| format!("event {pos}: completion without invoke"))?;
            outcome[i] = Some((pos, e));
        }
    }
    let mut kept = Vec::new();
    for (mut op, out) in ops.into_iter().zip(outcome) {
        match out {
            Some((pos, e)) if e.kind == EventType::Ok => {
                op.ret = Some(pos);
                op.output = e.value.clone();
                kept.push(op);
            }
            Some((pos, e)) if e.kind == EventType::Fail => {
                if model == ModelKind::CasRegister && op.f == "cas" && e.error.as_deref() == Some("cas-mismatch") {
                    op.ret = Some(pos);
                    op.mismatch = true;
                    kept.push(op);
                }
                // Any other failed op did not happen.
            }
            _ => kept.push(op), // info or never completed
        }
    }
    if kept.len() > OPS_MAX {
        return Err(format!("{} operations: the oracle takes at most {OPS_MAX}", kept.len()));
    }
    let mut done = vec![false; kept.len()];
    Ok(dfs(&kept, &mut done, &mut BTreeMap::new(), model))
}

fn initial(model: ModelKind) -> Value {
    match model {
        ModelKind::Register | ModelKind::CasRegister => Value::Null,
        ModelKind::Kv => Value::String(String::new()),
        ModelKind::Set => Value::Array(Vec::new()),
    }
}

fn sorted_set(v: &Value) -> Option<Vec<i64>> {
    let mut s: Vec<i64> = v.as_array()?.iter().map(|x| x.as_i64()).collect::<Option<_>>()?;
    s.sort_unstable();
    s.dedup();
    Some(s)
}

/// The state after `op` on `state`, or `None` if `op` cannot take effect there. Indeterminate
/// reads observe nothing.
fn apply(model: ModelKind, state: &Value, op: &Op) -> Option<Value> {
    let definite = op.ret.is_some();
    match (model, op.f.as_str()) {
        (ModelKind::Register | ModelKind::CasRegister, "read") => {
            (!definite || op.output == *state).then(|| state.clone())
        }
        (ModelKind::Register | ModelKind::CasRegister, "write") => Some(op.input.clone()),
        (ModelKind::CasRegister, "cas") => {
            let from = &op.input[0];
            if op.mismatch {
                (state != from).then(|| state.clone())
            } else {
                (state == from).then(|| op.input[1].clone())
            }
        }
        (ModelKind::Kv, "get") => {
            let out = match &op.output {
                Value::Null => Value::String(String::new()),
                v => v.clone(),
            };
            (!definite || out == *state).then(|| state.clone())
        }
        (ModelKind::Kv, "put") => Some(op.input.clone()),
        (ModelKind::Kv, "append") => Some(Value::String(format!("{}{}", state.as_str()?, op.input.as_str()?))),
        (ModelKind::Set, "add") => {
            let mut s = sorted_set(state)?;
            s.push(op.input.as_i64()?);
            s.sort_unstable();
            s.dedup();
            Some(Value::from(s))
        }
        (ModelKind::Set, "read") => {
            (!definite || sorted_set(&op.output) == sorted_set(state)).then(|| state.clone())
        }
        _ => None,
    }
}

fn dfs(ops: &[Op], done: &mut [bool], states: &mut BTreeMap<Option<String>, Value>, model: ModelKind) -> bool {
    // Done when every completed op took effect; left-over indeterminate ops never did.
    if ops.iter().zip(done.iter()).all(|(op, &d)| d || op.ret.is_none()) {
        return true;
    }
    // An op may go next only if no pending completed op returned before it was called.
    let horizon = ops.iter().zip(done.iter()).filter(|(_, &d)| !d).filter_map(|(op, _)| op.ret).min();
    for i in 0..ops.len() {
        if done[i] || horizon.is_some_and(|h| h < ops[i].call) {
            continue;
        }
        let key = ops[i].key.clone();
        let before = states.get(&key).cloned().unwrap_or_else(|| initial(model));
        if let Some(after) = apply(model, &before, &ops[i]) {
            done[i] = true;
            states.insert(key.clone(), after);
            let ok = dfs(ops, done, states, model);
            states.insert(key, before);
            done[i] = false;
            if ok {
                return true;
            }
        }
    }
    false
}
