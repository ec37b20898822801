//! The sequential specifications a history is judged against, and their compact search form.
//!
//! This module owns [`ModelKind`] (the names users choose) and the per-key models the search
//! steps through. Every model state is a `u32` id: register values are numbered when the
//! history is prepared, kv strings and set contents are hash-consed (interned) so the search
//! cache stores small ids instead of strings, and transitions of the interned models are
//! memoized.
//!
//! Indeterminate (`info`) operations use the same step as completed ones: the search treats
//! them as optional (possibly applied at any point after their call, or never), so a model only
//! describes what the operation does *if* it takes effect. A `cas` that would not match is then
//! simply "not taken effect", which the search covers by not linearizing it.

use std::sync::Arc;
use std::str::FromStr;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// The model a history is checked against.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// One register per key: `read`, `write`; initial value nil (`null`).
    Register,
    /// `register` plus `cas` with value `[from, to]`. A `fail` cas whose `error` is
    /// `"cas-mismatch"` observed a value other than `from`; any other `fail` did not happen.
    CasRegister,
    /// One string per key: `get`, `put`, `append`; initial value `""`.
    Kv,
    /// One set of integers per key: `add`, `read`; initially empty.
    Set,
}

impl ModelKind {
    pub const ALL: [ModelKind; 4] = [ModelKind::Register, ModelKind::CasRegister, ModelKind::Kv, ModelKind::Set];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::Kv => "kv",
            ModelKind::Set => "set",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`ModelKind::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model \"{0}\": expected one of register, cas-register, kv, set")]
pub struct UnknownModel(pub String);

impl FromStr for ModelKind {
    type Err = UnknownModel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownModel(s.to_string()))
    }
}

/// What the search needs from a model. States are ids; `step` returns the state after `op`
/// is applied to `state`, or `None` if `op` cannot be linearized in `state`.
pub(crate) trait SearchModel {
    fn init(&mut self) -> u32;
    fn step(&mut self, state: u32, op: usize) -> Option<u32>;
    /// `true` if no completion of the search from (`state`, `linearized`) can succeed. Must be
    /// sound (never prune a configuration that has a linearization); it only saves work.
    fn prune(&mut self, _state: u32, _linearized: &[u64]) -> bool {
        false
    }
    fn describe_state(&self, state: u32) -> String;
    /// Bytes held by the model (interned states, memo tables), for the memory budget.
    fn memory_bytes(&self) -> usize;
}

// ---------------------------------------------------------------------------------------------
// register / cas-register

/// A register operation over value ids (`0` = nil).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegOp {
    Read(u32),
    Write(u32),
    Cas(u32, u32),
    /// A cas that failed because the value was not `from`: observes `state != from`.
    CasMismatch(u32),
}

pub(crate) struct RegisterModel {
    /// `values[id]`; `values[0]` is nil.
    pub values: Vec<Option<i64>>,
    pub ops: Vec<RegOp>,
}

impl SearchModel for RegisterModel {
    fn init(&mut self) -> u32 {
        0
    }
    #[inline]
    fn step(&mut self, state: u32, op: usize) -> Option<u32> {
        match self.ops[op] {
            RegOp::Read(v) => (state == v).then_some(state),
            RegOp::Write(v) => Some(v),
            RegOp::Cas(from, to) => (state == from).then_some(to),
            RegOp::CasMismatch(from) => (state != from).then_some(state),
        }
    }
    fn describe_state(&self, state: u32) -> String {
        match self.values.get(state as usize).copied().flatten() {
            Some(v) => v.to_string(),
            None => "nil".to_string(),
        }
    }
    fn memory_bytes(&self) -> usize {
        self.values.capacity() * 16 + self.ops.capacity() * 12
    }
}

// ---------------------------------------------------------------------------------------------
// interning

/// Hash-consing of states: each distinct content gets one id; ids index `items`.
pub(crate) struct Interner<T: ?Sized + Eq + std::hash::Hash> {
    items: Vec<Arc<T>>,
    ids: FxHashMap<Arc<T>, u32>,
    bytes: usize,
}

impl<T: ?Sized + Eq + std::hash::Hash> Interner<T> {
    fn new() -> Self {
        Interner { items: Vec::new(), ids: FxHashMap::default(), bytes: 0 }
    }
    fn intern(&mut self, v: Arc<T>, size: usize) -> u32 {
        if let Some(&id) = self.ids.get(&v) {
            return id;
        }
        let id = u32::try_from(self.items.len()).expect("fewer than 2^32 distinct states");
        self.bytes += size + 48;
        self.items.push(v.clone());
        self.ids.insert(v, id);
        id
    }
    fn get(&self, id: u32) -> &T {
        &self.items[id as usize]
    }
    fn memory_bytes(&self) -> usize {
        self.bytes + self.items.capacity() * 16 + self.ids.capacity() * 24
    }
}

/// Memo of transitions (state, op) → state (`u32::MAX` = not allowed).
#[derive(Default)]
struct Transitions(FxHashMap<u64, u32>);

impl Transitions {
    #[inline]
    fn key(state: u32, op: usize) -> u64 {
        (u64::from(state) << 32) | op as u64
    }
    fn memory_bytes(&self) -> usize {
        self.0.capacity() * 13
    }
}

// ---------------------------------------------------------------------------------------------
// kv (get / put / append over strings)

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KvOp {
    Get(Arc<str>),
    Put(Arc<str>),
    Append(Arc<str>),
}

/// Where an operation sits in the history (positions of its events), for pruning.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub call: u32,
    /// `None` = indeterminate (open until the end of the history).
    pub ret: Option<u32>,
}

pub(crate) struct KvModel {
    ops: Vec<KvOp>,
    states: Interner<str>,
    memo: Transitions,
    /// Completed gets, sorted by return position: (op, return position).
    gets_by_ret: Vec<(usize, u32)>,
    /// Puts (completed or not): (op, call position).
    puts: Vec<(usize, u32)>,
}

impl KvModel {
    pub fn new(ops: Vec<KvOp>, spans: &[Span]) -> Self {
        let mut gets_by_ret: Vec<(usize, u32)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| match (op, spans[i].ret) {
                (KvOp::Get(_), Some(r)) => Some((i, r)),
                _ => None,
            })
            .collect();
        gets_by_ret.sort_by_key(|&(_, r)| r);
        let puts = ops
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, KvOp::Put(_)))
            .map(|(i, _)| (i, spans[i].call))
            .collect();
        KvModel { ops, states: Interner::new(), memo: Transitions::default(), gets_by_ret, puts }
    }
}

#[inline]
fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

/// How many not-yet-linearized gets the kv prefix pruning looks at per step (the earliest
/// returning ones). Looking at fewer is still sound; this bounds the cost of a step.
const KV_PRUNE_GETS_MAX: usize = 4;

impl SearchModel for KvModel {
    fn init(&mut self) -> u32 {
        self.states.intern(Arc::from(""), 0)
    }
    fn step(&mut self, state: u32, op: usize) -> Option<u32> {
        let k = Transitions::key(state, op);
        if let Some(&r) = self.memo.0.get(&k) {
            return (r != u32::MAX).then_some(r);
        }
        let r = match &self.ops[op] {
            KvOp::Get(v) => (*self.states.get(state) == **v).then_some(state),
            KvOp::Put(v) => Some(self.states.intern(v.clone(), v.len())),
            KvOp::Append(v) => {
                if v.is_empty() {
                    Some(state)
                } else {
                    let s = format!("{}{}", self.states.get(state), v);
                    let n = s.len();
                    Some(self.states.intern(Arc::from(s), n))
                }
            }
        };
        self.memo.0.insert(k, r.unwrap_or(u32::MAX));
        r
    }

    /// Prefix pruning. Soundness: a completed get `g` not yet linearized must be linearized
    /// later, after the current state `s`, and only not-yet-linearized operations can come in
    /// between. Gets leave the state unchanged and appends only extend it, so unless a put is
    /// linearized in between, `g`'s output must start with `s`. A put `p` can be linearized
    /// before `g` only if `p` was called before `g` returned (real-time order). So if every
    /// not-yet-linearized put was called after `g` returned (or there is none), `s` must be a
    /// prefix of `g`'s output, else no linearization extends this configuration.
    fn prune(&mut self, state: u32, linearized: &[u64]) -> bool {
        // The earliest call among puts not yet linearized: only gets returning before it are
        // constrained.
        let put_call_min =
            self.puts.iter().filter(|&&(p, _)| !bit(linearized, p)).map(|&(_, c)| c).min().unwrap_or(u32::MAX);
        let s = self.states.get(state);
        let mut looked = 0;
        for &(g, ret) in &self.gets_by_ret {
            if ret >= put_call_min || looked == KV_PRUNE_GETS_MAX {
                break;
            }
            if bit(linearized, g) {
                continue;
            }
            looked += 1;
            let KvOp::Get(out) = &self.ops[g] else { unreachable!("gets_by_ret holds gets only") };
            if !out.starts_with(s) {
                return true;
            }
        }
        false
    }

    fn describe_state(&self, state: u32) -> String {
        format!("{:?}", self.states.get(state))
    }
    fn memory_bytes(&self) -> usize {
        self.states.memory_bytes() + self.memo.memory_bytes() + self.ops.capacity() * 24
    }
}

// ---------------------------------------------------------------------------------------------
// set (add / read)

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SetOp {
    Add(i64),
    /// The full content read, sorted and deduplicated.
    Read(Arc<[i64]>),
}

pub(crate) struct SetModel {
    ops: Vec<SetOp>,
    states: Interner<[i64]>,
    memo: Transitions,
}

impl SetModel {
    pub fn new(ops: Vec<SetOp>) -> Self {
        SetModel { ops, states: Interner::new(), memo: Transitions::default() }
    }
}

impl SearchModel for SetModel {
    fn init(&mut self) -> u32 {
        self.states.intern(Arc::from(Vec::new()), 0)
    }
    fn step(&mut self, state: u32, op: usize) -> Option<u32> {
        let k = Transitions::key(state, op);
        if let Some(&r) = self.memo.0.get(&k) {
            return (r != u32::MAX).then_some(r);
        }
        let r = match &self.ops[op] {
            SetOp::Read(v) => (*self.states.get(state) == **v).then_some(state),
            SetOp::Add(x) => {
                let cur = self.states.get(state);
                match cur.binary_search(x) {
                    Ok(_) => Some(state),
                    Err(pos) => {
                        let mut next = Vec::with_capacity(cur.len() + 1);
                        next.extend_from_slice(&cur[..pos]);
                        next.push(*x);
                        next.extend_from_slice(&cur[pos..]);
                        let n = next.len() * 8;
                        Some(self.states.intern(Arc::from(next), n))
                    }
                }
            }
        };
        self.memo.0.insert(k, r.unwrap_or(u32::MAX));
        r
    }
    fn describe_state(&self, state: u32) -> String {
        let items: Vec<String> = self.states.get(state).iter().map(|x| x.to_string()).collect();
        format!("#{{{}}}", items.join(" "))
    }
    fn memory_bytes(&self) -> usize {
        self.states.memory_bytes() + self.memo.memory_bytes() + self.ops.capacity() * 24
    }
}
