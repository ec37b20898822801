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

use std::str::FromStr;
use std::sync::Arc;

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
    /// Called on each configuration (`state` after an op, `linearized` including it) before
    /// it is cached. `None` prunes it: no completion of the search from it can succeed.
    /// `Some(s)` continues with state `s`, which may be a canonical representative of states
    /// that are equivalent in this configuration (every continuation succeeds from one iff it
    /// succeeds from the other). Must be sound; it only saves work.
    #[inline]
    fn refine(&mut self, state: u32, _linearized: &[u64]) -> Option<u32> {
        Some(state)
    }
    /// Why `refine` prunes this configuration, for explanations (`None` if it does not).
    fn prune_reason(&mut self, _state: u32, _linearized: &[u64]) -> Option<String> {
        None
    }
    fn describe_state(&self, state: u32) -> String;
    /// `true` if `op` never changes the state (a read): see the forced moves in `search`.
    fn is_observer(&self, op: usize) -> bool;
    /// Bytes held by the model (interned states, memo tables), for the memory budget.
    fn memory_bytes(&self) -> usize;
}

// ---------------------------------------------------------------------------------------------
// register / cas-register

/// A register operation over value ids (`0` = nil).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// With unread values merged: (the stand-in's id, the initial state's id).
    unread: Option<(u32, u32)>,
}

impl RegisterModel {
    pub fn exact(values: Vec<Option<i64>>, ops: Vec<RegOp>) -> Self {
        RegisterModel { values, ops, unread: None }
    }

    /// Merges every value that no operation can tell apart into one.
    ///
    /// Soundness (an exact abstraction): a register op looks at the state only by comparing it
    /// with a read's value, a cas's `from`, or a failed cas's `from`. A value that is none of
    /// these ("unread") compares unequal to all of them, so any two unread values behave the
    /// same under every sequence of operations, and replacing each by one stand-in changes no
    /// step's outcome. It lets the cache merge configurations that differ only in which unread
    /// value is held, and makes indeterminate writes of unread values identical ops, which the
    /// search's symmetry breaking then orders (only how many of them took effect matters).
    pub fn with_unread_values_merged(mut values: Vec<Option<i64>>, mut ops: Vec<RegOp>) -> Self {
        let mut read = vec![false; values.len()];
        for op in &ops {
            match *op {
                RegOp::Read(v) | RegOp::Cas(v, _) | RegOp::CasMismatch(v) => read[v as usize] = true,
                RegOp::Write(_) => {}
            }
        }
        if read.iter().all(|&r| r) {
            return RegisterModel::exact(values, ops);
        }
        let unread = values.len() as u32;
        values.push(None);
        let canon = |v: u32| if read[v as usize] { v } else { unread };
        for op in &mut ops {
            *op = match *op {
                RegOp::Write(v) => RegOp::Write(canon(v)),
                RegOp::Cas(from, to) => RegOp::Cas(from, canon(to)),
                other => other,
            };
        }
        let init = canon(0);
        RegisterModel { values, ops, unread: Some((unread, init)) }
    }
}

impl SearchModel for RegisterModel {
    fn is_observer(&self, op: usize) -> bool {
        matches!(self.ops[op], RegOp::Read(_) | RegOp::CasMismatch(_))
    }
    fn init(&mut self) -> u32 {
        self.unread.map_or(0, |(_, init)| init)
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
        if self.unread.is_some_and(|(u, _)| u == state) {
            return "(a value no operation reads)".to_string();
        }
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
        // The Arc's counts (16) and the allocator's overhead (about 16).
        self.bytes += size + 32;
        self.items.push(v.clone());
        self.ids.insert(v, id);
        id
    }
    /// Adds an item with an id of its own that no `intern` call returns (a sentinel).
    fn reserve_unmapped(&mut self, v: Arc<T>, size: usize) -> u32 {
        let id = u32::try_from(self.items.len()).expect("fewer than 2^32 distinct states");
        self.bytes += size + 32;
        self.items.push(v);
        id
    }
    fn get(&self, id: u32) -> &T {
        &self.items[id as usize]
    }
    fn memory_bytes(&self) -> usize {
        self.bytes + self.items.capacity() * 16 + self.ids.capacity() * 25
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
        self.0.capacity() * 17
    }
}

// ---------------------------------------------------------------------------------------------
// kv (get / put / append over strings)

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
    /// Words of an op bitset.
    words: usize,
    /// Completed gets (bitset over ops).
    gets: Vec<u64>,
    /// Completed gets that no put can reset the state for (no enabling put, see `refine`).
    gets_free: Vec<u64>,
    /// Completed gets with enabling puts: (get, its enabling puts).
    gets_enabled: Vec<(usize, Vec<usize>)>,
    /// Per state id, the completed gets whose output starts with the state (bitset over ops),
    /// computed when the state is first met; empty until then.
    prefix_of: Vec<Vec<u64>>,
}

/// The id of the dead state (see `KvModel::refine`): interned first, so it is 0.
const KV_DEAD: u32 = 0;
/// The content shown for the dead state; its id is a sentinel that interning never returns.
const KV_DEAD_TEXT: &str = "\u{0}<dead>";

impl KvModel {
    pub fn new(ops: Vec<KvOp>, spans: &[Span]) -> Self {
        let words = ops.len().div_ceil(64).max(1);
        let mut gets = vec![0u64; words];
        let mut gets_free = vec![0u64; words];
        let mut gets_enabled = Vec::new();
        for (g, op) in ops.iter().enumerate() {
            let (KvOp::Get(out), Some(ret)) = (op, spans[g].ret) else { continue };
            gets[g / 64] |= 1 << (g % 64);
            let enabling: Vec<usize> = ops
                .iter()
                .enumerate()
                .filter(|&(p, put)| matches!(put, KvOp::Put(v) if out.starts_with(&**v)) && spans[p].call < ret)
                .map(|(p, _)| p)
                .collect();
            if enabling.is_empty() {
                gets_free[g / 64] |= 1 << (g % 64);
            } else {
                gets_enabled.push((g, enabling));
            }
        }
        let mut m = KvModel {
            ops,
            states: Interner::new(),
            memo: Transitions::default(),
            words,
            gets,
            gets_free,
            gets_enabled,
            prefix_of: Vec::new(),
        };
        let dead = m.states.reserve_unmapped(Arc::from(KV_DEAD_TEXT), KV_DEAD_TEXT.len());
        assert_eq!(dead, KV_DEAD);
        m.prefix_of.push(vec![0; words]);
        m
    }

    fn intern(&mut self, s: Arc<str>) -> u32 {
        let n = s.len();
        let id = self.states.intern(s, n);
        if id as usize == self.prefix_of.len() {
            let text = self.states.get(id);
            let mut mask = vec![0u64; self.words];
            for (g, op) in self.ops.iter().enumerate() {
                if let KvOp::Get(out) = op {
                    if self.gets[g / 64] & (1 << (g % 64)) != 0 && out.starts_with(text) {
                        mask[g / 64] |= 1 << (g % 64);
                    }
                }
            }
            self.prefix_of.push(mask);
        }
        id
    }
}

#[inline]
fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

impl SearchModel for KvModel {
    fn is_observer(&self, op: usize) -> bool {
        matches!(self.ops[op], KvOp::Get(_))
    }
    fn init(&mut self) -> u32 {
        self.intern(Arc::from(""))
    }
    fn step(&mut self, state: u32, op: usize) -> Option<u32> {
        if state == KV_DEAD {
            // Appends keep a dead state dead; no get can see it; a put revives.
            return match &self.ops[op] {
                KvOp::Get(_) => None,
                KvOp::Append(_) => Some(KV_DEAD),
                KvOp::Put(v) => Some(self.intern(v.clone())),
            };
        }
        let k = Transitions::key(state, op);
        if let Some(&r) = self.memo.0.get(&k) {
            return (r != u32::MAX).then_some(r);
        }
        let r = match &self.ops[op] {
            KvOp::Get(v) => (*self.states.get(state) == **v).then_some(state),
            KvOp::Put(v) => Some(self.intern(v.clone())),
            KvOp::Append(v) => {
                if v.is_empty() {
                    Some(state)
                } else {
                    let s = format!("{}{}", self.states.get(state), v);
                    Some(self.intern(Arc::from(s)))
                }
            }
        };
        self.memo.0.insert(k, r.unwrap_or(u32::MAX));
        r
    }

    /// Two sound reductions, both about the completed gets not yet linearized ("pending").
    ///
    /// Prefix pruning: a pending get `g` is linearized later than the current state `s`, and
    /// only not-yet-linearized operations can come in between. Gets leave the state unchanged,
    /// appends only extend it and a put replaces it, so `g`'s output is `b ++ (appended
    /// values)` where `b` is the value of the last put linearized between now and `g`, or `s`
    /// if there is none. Such a put was called before `g` returned (real time) and, as `b` is a
    /// prefix of the output, is one of `g`'s enabling puts. So if every enabling put of `g` is
    /// already linearized, `s` must be a prefix of `g`'s output, else prune.
    ///
    /// Dead states: if `s` is a prefix of no pending get's output, then no pending get can be
    /// linearized before a put (a get needs the state to equal its output, appends keep `s` a
    /// non-prefix, and the set of pending gets only shrinks), so until the next put only
    /// appends are linearized, and what they do to the state is erased by that put. Every such
    /// `s` is thus equivalent, in this configuration and all its extensions up to the next put,
    /// to the single state `KV_DEAD` (which `step` treats accordingly): the cache then merges
    /// the many orders of appends that a later put overwrites.
    fn refine(&mut self, state: u32, linearized: &[u64]) -> Option<u32> {
        let prefix = &self.prefix_of[state as usize];
        let mut alive = false;
        for w in 0..self.words {
            let pending = !linearized[w];
            if self.gets_free[w] & pending & !prefix[w] != 0 {
                return None;
            }
            alive |= self.gets[w] & pending & prefix[w] != 0;
        }
        for (g, puts) in &self.gets_enabled {
            if !bit(linearized, *g) && !bit(prefix, *g) && puts.iter().all(|&p| bit(linearized, p)) {
                return None;
            }
        }
        Some(if alive { state } else { KV_DEAD })
    }

    fn prune_reason(&mut self, state: u32, linearized: &[u64]) -> Option<String> {
        let prefix = &self.prefix_of[state as usize];
        let shown = self.describe_state(state);
        let shown = match shown.char_indices().nth(80) {
            Some((i, _)) => format!("{}…", &shown[..i]),
            None => shown,
        };
        let get_text = |g: usize| match &self.ops[g] {
            KvOp::Get(out) => {
                let o = format!("{out:?}");
                match o.char_indices().nth(80) {
                    Some((i, _)) => format!("{}…", &o[..i]),
                    None => o,
                }
            }
            _ => String::new(),
        };
        for w in 0..self.words {
            let bad = self.gets_free[w] & !linearized[w] & !prefix[w];
            if bad != 0 {
                let g = w * 64 + bad.trailing_zeros() as usize;
                return Some(format!(
                    "would make the value {shown}, but get #{g} (→ {}) must come later and its output does not start with it, and no put can reset the value first",
                    get_text(g)
                ));
            }
        }
        for (g, puts) in &self.gets_enabled {
            if !bit(linearized, *g) && !bit(prefix, *g) && puts.iter().all(|&p| bit(linearized, p)) {
                return Some(format!(
                    "would make the value {shown}, but get #{g} (→ {}) must come later and its output does not start with it, and the puts that could reset the value first are already linearized",
                    get_text(*g)
                ));
            }
        }
        None
    }

    fn describe_state(&self, state: u32) -> String {
        if state == KV_DEAD {
            return "(any value no pending get can read; a put must come first)".into();
        }
        format!("{:?}", self.states.get(state))
    }
    fn memory_bytes(&self) -> usize {
        self.states.memory_bytes()
            + self.memo.memory_bytes()
            + self.ops.capacity() * 24
            + self.prefix_of.capacity() * 24
            + self.prefix_of.len() * self.words * 8
    }
}

// ---------------------------------------------------------------------------------------------
// set (add / read)

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
    fn is_observer(&self, op: usize) -> bool {
        matches!(self.ops[op], SetOp::Read(_))
    }
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
