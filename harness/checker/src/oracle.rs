//! Brute-force reference checkers, for tests. [`is_linearizable`] tries every order of the
//! operations that respects real time, over the whole history at once (no split by key, no
//! cache, no pruning, states as plain JSON values); [`is_sequential`] tries every order of each
//! key's operations that respects program order; [`is_session`] tries every order of each
//! key's writes and places each process's reads greedily. Exponential: only for histories of a
//! handful of operations.
//!
//! It is written independently of the crate's `prepare` and `model` modules so that property
//! tests comparing them with the checkers also test those.

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
    process: u64,
    key: Option<String>,
    f: String,
    input: Value,
    output: Value,
    /// A failed cas that observed a value other than `from`.
    mismatch: bool,
}

/// `Ok(true)` if the history is linearizable under `model`; `Err` if it is malformed or too big.
pub fn is_linearizable(events: &[Event], model: ModelKind) -> Result<bool, String> {
    let kept = kept_ops(events, model)?;
    if kept.len() > OPS_MAX {
        return Err(format!("{} operations: the oracle takes at most {OPS_MAX}", kept.len()));
    }
    let mut done = vec![false; kept.len()];
    Ok(dfs(&kept, &mut done, &mut BTreeMap::new(), model))
}

/// The operations that can matter: completed ones, cas mismatches, and indeterminate ones
/// (failed ones did not happen).
fn kept_ops(events: &[Event], model: ModelKind) -> Result<Vec<Op>, String> {
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
                process: p,
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
    Ok(kept)
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
        (ModelKind::Set, "read") => (!definite || sorted_set(&op.output) == sorted_set(state)).then(|| state.clone()),
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

/// Register and cas-register only: the weak-model oracles below define their models for them.
fn register_keys(events: &[Event], model: ModelKind) -> Result<BTreeMap<Option<String>, Vec<Op>>, String> {
    if !matches!(model, ModelKind::Register | ModelKind::CasRegister) {
        return Err(format!("the weak-model oracles take register histories, not {model}"));
    }
    let mut keys: BTreeMap<Option<String>, Vec<Op>> = BTreeMap::new();
    for op in kept_ops(events, model)? {
        keys.entry(op.key.clone()).or_default().push(op);
    }
    if let Some((k, ops)) = keys.iter().find(|(_, ops)| ops.len() > OPS_MAX) {
        return Err(format!("key {k:?} has {} operations: the oracle takes at most {OPS_MAX}", ops.len()));
    }
    Ok(keys)
}

/// `Ok(true)` if every key's sub-history is sequentially consistent: some order of its
/// operations containing every completed one (and any indeterminate ones) is legal for
/// `model` and puts each completed operation after every completed operation its process
/// called earlier, and each indeterminate one after those too. Tries every such order.
pub fn is_sequential(events: &[Event], model: ModelKind) -> Result<bool, String> {
    let keys = register_keys(events, model)?;
    Ok(keys.values().all(|ops| {
        let mut done = vec![false; ops.len()];
        dfs_sequential(ops, &mut done, &initial(model), model)
    }))
}

fn dfs_sequential(ops: &[Op], done: &mut [bool], state: &Value, model: ModelKind) -> bool {
    if ops.iter().zip(done.iter()).all(|(op, &d)| d || op.ret.is_none()) {
        return true;
    }
    for i in 0..ops.len() {
        let waits = ops
            .iter()
            .zip(done.iter())
            .any(|(o, &d)| !d && o.ret.is_some() && o.process == ops[i].process && o.call < ops[i].call);
        if done[i] || waits {
            continue;
        }
        if let Some(after) = apply(model, state, &ops[i]) {
            done[i] = true;
            let ok = dfs_sequential(ops, done, &after, model);
            done[i] = false;
            if ok {
                return true;
            }
        }
    }
    false
}

/// Writes per key the session oracle enumerates the orders of, at most.
pub const SESSION_WRITES_MAX: usize = 8;

/// `Ok(true)` if every key's sub-history satisfies read-your-writes and monotonic reads as
/// `crate::session` defines them: tries every order `W` of every admissible set of writes
/// (all completed writes and cas, any subset of indeterminate ones) after the initial nil,
/// keeps those where each cas found its `from` just before it, and asks of each process, in
/// program order, for the lowest position each read can take: at or after its earlier reads
/// and its earlier completed writes, holding the value read (for a failed cas, a value other
/// than `from`); a cas's read is the position just before its own.
pub fn is_session(events: &[Event], model: ModelKind) -> Result<bool, String> {
    let keys = register_keys(events, model)?;
    for ops in keys.values() {
        let writes: Vec<usize> =
            (0..ops.len()).filter(|&i| ops[i].f == "write" || (ops[i].f == "cas" && !ops[i].mismatch)).collect();
        if writes.len() > SESSION_WRITES_MAX {
            return Err(format!("{} writes: the session oracle takes at most {SESSION_WRITES_MAX}", writes.len()));
        }
        let optional: Vec<usize> = writes.iter().copied().filter(|&i| ops[i].ret.is_none()).collect();
        let mandatory: Vec<usize> = writes.iter().copied().filter(|&i| ops[i].ret.is_some()).collect();
        let mut found = false;
        'subsets: for mask in 0u32..(1 << optional.len()) {
            let mut chosen = mandatory.clone();
            chosen.extend(optional.iter().enumerate().filter(|(b, _)| mask & (1 << b) != 0).map(|(_, &i)| i));
            let mut found_here = false;
            permutations(&mut chosen, 0, &mut |w| {
                if !found_here && session_order_fits(ops, w, model) {
                    found_here = true;
                }
            });
            if found_here {
                found = true;
                break 'subsets;
            }
        }
        if !found {
            return Ok(false);
        }
    }
    Ok(true)
}

fn permutations(items: &mut Vec<usize>, k: usize, visit: &mut dyn FnMut(&[usize])) {
    if k == items.len() {
        visit(items);
        return;
    }
    for i in k..items.len() {
        items.swap(k, i);
        permutations(items, k + 1, visit);
        items.swap(k, i);
    }
}

/// Whether the write order `w` (op indices; position `i + 1`, after the initial nil) explains
/// every process's reads.
fn session_order_fits(ops: &[Op], w: &[usize], model: ModelKind) -> bool {
    let mut values = vec![initial(model)];
    for &i in w {
        values.push(if ops[i].f == "cas" { ops[i].input[1].clone() } else { ops[i].input.clone() });
    }
    let position = |op: usize| w.iter().position(|&x| x == op).map(|p| p + 1);
    for (p, &i) in w.iter().enumerate() {
        if ops[i].f == "cas" && values[p] != ops[i].input[0] {
            return false;
        }
    }
    let processes: std::collections::BTreeSet<u64> = ops.iter().map(|o| o.process).collect();
    for proc in processes {
        // Lowest position the process's next read may take.
        let mut low = 0usize;
        for (i, op) in ops.iter().enumerate().filter(|(_, o)| o.process == proc) {
            let completed = op.ret.is_some();
            match op.f.as_str() {
                "read" if completed => match (low..values.len()).find(|&j| values[j] == op.output) {
                    Some(j) => low = j,
                    None => return false,
                },
                "read" => {} // indeterminate: observed nothing
                "cas" if op.mismatch => match (low..values.len()).find(|&j| values[j] != op.input[0]) {
                    Some(j) => low = j,
                    None => return false,
                },
                "write" | "cas" => match position(i) {
                    Some(c) if op.f == "cas" => {
                        if c - 1 < low {
                            return false;
                        }
                        if completed {
                            low = c;
                        }
                    }
                    Some(c) if completed => low = low.max(c),
                    _ => {} // an indeterminate write, or an indeterminate cas left out of W
                },
                _ => return false,
            }
        }
    }
    true
}
