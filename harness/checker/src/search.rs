//! The linearizability search for one key: Wing & Gong's backtracking search with Lowe's
//! improvements ("Testing for linearizability", Concurrency and Computation 2017, §3–4): the
//! history is a doubly linked list of call and return entries in real-time order; an operation
//! is linearized by *lifting* its two entries out of the list and undone by *unlifting* them
//! (dancing links), and a cache of (linearized set, state) configurations already explored cuts
//! the search (Lowe's just-in-time linearization with memoization, as in Porcupine).
//!
//! Indeterminate operations have a call entry and no return entry: they may be linearized at
//! any point after their call, or never. The search succeeds as soon as every completed
//! operation is linearized; indeterminate ones left over simply never took effect.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::cache::{mix, Cache, Window};
use crate::explain::{Candidate, Explanation, LinStep, PartialLinearization};
use crate::model::{KvModel, RegisterModel, SearchModel, SetModel, Span};
use crate::prepare::{KeyHistory, ModelOps};
use crate::{KeyReport, Procedure, Verdict};

/// The budget shared by all keys of one check.
pub(crate) struct Budget {
    pub deadline: Option<Instant>,
    pub memory_limit_bytes: Option<u64>,
    /// Bytes reserved by all running searches.
    pub memory_used: AtomicU64,
    /// Set when the check is to stop (a key was invalid in stop-on-first-invalid mode).
    pub cancel: AtomicBool,
}

impl Budget {
    pub(crate) fn try_reserve(&self, bytes: u64) -> bool {
        let prev = self.memory_used.fetch_add(bytes, Ordering::Relaxed);
        match self.memory_limit_bytes {
            Some(limit) if prev + bytes > limit => {
                self.memory_used.fetch_sub(bytes, Ordering::Relaxed);
                false
            }
            _ => true,
        }
    }
    pub(crate) fn release(&self, bytes: u64) {
        self.memory_used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Search iterations between two looks at the clock, the cancel flag and the model's memory.
const BUDGET_CHECK_EVERY: u64 = 1024;
/// How many longest partial linearizations an explanation keeps.
const LONGEST_KEPT_MAX: usize = 3;
/// States longer than this are shortened in explanations.
const STATE_SHOWN_CHARS_MAX: usize = 200;

enum Outcome {
    Valid,
    Invalid,
    Unknown(String),
}

#[derive(Default)]
struct Stats {
    steps: u64,
    cache_entries: u64,
    max_depth: usize,
}

/// A dead end of the search: the linearized prefix and the op whose return was reached.
struct DeadEnd {
    order: Vec<u32>,
    blocked: u32,
}

/// Judges one key's sub-history.
pub(crate) fn check_key(k: &KeyHistory, budget: &Budget) -> KeyReport {
    let started = Instant::now();
    let (outcome, stats, explanation) = match &k.model {
        ModelOps::Register { values, ops } => {
            let model = RegisterModel::with_unread_values_merged(values.clone(), ops.clone());
            let twins = info_twins(&model.ops, &k.spans);
            // Explanations show the real values, not the merged stand-in.
            let exact = || RegisterModel::exact(values.clone(), ops.clone());
            run(k, model, exact, &twins, budget)
        }
        ModelOps::Kv(ops) => {
            let fresh = || KvModel::new(ops.clone(), &k.spans);
            run(k, fresh(), fresh, &info_twins(ops, &k.spans), budget)
        }
        ModelOps::Set(ops) => {
            let fresh = || SetModel::new(ops.clone());
            run(k, fresh(), fresh, &info_twins(ops, &k.spans), budget)
        }
    };
    let (verdict, reason) = match outcome {
        Outcome::Valid => (Verdict::Valid, None),
        Outcome::Invalid => {
            let r = explanation.as_ref().and_then(|e| {
                e.ops.get(e.failed_op).map(|op| format!("cannot linearize #{} {}", e.failed_op, op.describe()))
            });
            (Verdict::Invalid, r.or_else(|| Some("no linearization".into())))
        }
        Outcome::Unknown(r) => (Verdict::Unknown, Some(r)),
    };
    KeyReport {
        key: k.key.clone(),
        verdict,
        reason,
        ops: k.spans.len(),
        info_ops: k.spans.iter().filter(|s| s.ret.is_none()).count(),
        steps: stats.steps,
        cache_entries: stats.cache_entries,
        max_linearized: stats.max_depth,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        explanation,
        procedure: Procedure::Search,
    }
}

/// For each indeterminate op, the latest-called earlier indeterminate op with the same effect
/// (`NONE` if none): the search linearizes an op only after its twin (symmetry breaking).
///
/// Soundness and completeness: take identical indeterminate ops A1..Ak in call order, and a
/// linearization that applies m of them at points t1 < .. < tm. At least i of them were called
/// by ti, so Ai was called by ti and may take effect there; applying A1..Am at t1..tm instead
/// gives the same sequence of effects. So a linearization exists iff one exists that applies a
/// prefix A1..Am of each chain, which is what "Ai only after Ai-1" allows.
fn info_twins<T: Eq + std::hash::Hash>(ops: &[T], spans: &[Span]) -> Vec<u32> {
    let mut last: rustc_hash::FxHashMap<&T, u32> = rustc_hash::FxHashMap::default();
    let mut order: Vec<usize> = (0..ops.len()).filter(|&i| spans[i].ret.is_none()).collect();
    order.sort_by_key(|&i| spans[i].call);
    let mut twins = vec![NONE; ops.len()];
    for i in order {
        if let Some(prev) = last.insert(&ops[i], i as u32) {
            twins[i] = prev;
        }
    }
    twins
}

fn shorten(s: String) -> String {
    match s.char_indices().nth(STATE_SHOWN_CHARS_MAX) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s,
    }
}

/// Searches with `model`; explains an invalid verdict with a fresh model from `explainer`
/// (same step outcomes, possibly more exact states to show).
fn run<M: SearchModel>(
    k: &KeyHistory,
    mut model: M,
    explainer: impl FnOnce() -> M,
    twins: &[u32],
    budget: &Budget,
) -> (Outcome, Stats, Option<Explanation>) {
    let mut dead_ends = Vec::new();
    let (outcome, stats) = search(&k.spans, twins, &mut model, budget, &mut dead_ends);
    let explanation = match outcome {
        Outcome::Invalid => {
            drop(model);
            let mut model = explainer();
            let longest: Vec<PartialLinearization> =
                dead_ends.iter().map(|d| explain_dead_end(d, &k.spans, twins, &mut model)).collect();
            Some(Explanation {
                key: k.key.clone(),
                ops: k.ops.clone(),
                failed_op: longest.first().map_or(0, |p| p.blocked_op),
                longest,
            })
        }
        _ => None,
    };
    (outcome, stats, explanation)
}

/// How many candidates a dead end's explanation lists.
const CANDIDATES_SHOWN_MAX: usize = 12;

/// Replays a dead end from the initial state (with real states: the search's own may be
/// canonical stand-ins, see `SearchModel::refine`) and says why each operation that could have
/// gone next did not.
fn explain_dead_end<M: SearchModel>(d: &DeadEnd, spans: &[Span], twins: &[u32], model: &mut M) -> PartialLinearization {
    let words = spans.len().div_ceil(64);
    let mut bits = vec![0u64; words];
    let mut state = model.init();
    let steps = d
        .order
        .iter()
        .map(|&op| {
            state = model.step(state, op as usize).expect("a recorded prefix replays");
            bits[op as usize / 64] |= 1 << (op % 64);
            LinStep { op: op as usize, state_after: shorten(model.describe_state(state)) }
        })
        .collect();
    let blocked_ret = spans[d.blocked as usize].ret.expect("a blocked op has a return");
    let mut candidates = Vec::new();
    for (op, span) in spans.iter().enumerate() {
        if bit(&bits, op) || span.call >= blocked_ret {
            continue;
        }
        if candidates.len() == CANDIDATES_SHOWN_MAX {
            break;
        }
        let twin = twins[op];
        let why = if twin != NONE && !bit(&bits, twin as usize) {
            format!("has the same effect as the earlier indeterminate #{twin}, which goes first")
        } else {
            match model.step(state, op) {
                None => "cannot take effect in this state".to_string(),
                Some(next) => {
                    bits[op / 64] |= 1 << (op % 64);
                    let why = match model.refine(next, &bits) {
                        None => model
                            .prune_reason(next, &bits)
                            .unwrap_or_else(|| "leads to a state no continuation can accept".into()),
                        Some(_) => format!(
                            "could take effect (state {}), but every continuation was tried and failed",
                            shorten(model.describe_state(next))
                        ),
                    };
                    bits[op / 64] &= !(1 << (op % 64));
                    why
                }
            }
        };
        candidates.push(Candidate { op, why });
    }
    PartialLinearization {
        steps,
        blocked_op: d.blocked as usize,
        final_state: shorten(model.describe_state(state)),
        candidates,
    }
}

const NONE: u32 = u32::MAX;

/// Which candidates a configuration is trying (see `search`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pass {
    Observers,
    Completed,
    Indeterminate,
}

#[inline]
fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

/// The entry list: node 0 is the head sentinel; nodes 1.. are call and return entries.
struct Entries {
    prev: Vec<u32>,
    next: Vec<u32>,
    op: Vec<u32>,
    /// For a call node, its return node (`NONE` for indeterminate ops); for a return, `NONE`.
    ret_of: Vec<u32>,
    is_call: Vec<bool>,
}

impl Entries {
    fn build(spans: &[Span]) -> Entries {
        // (position, is_call, op): positions are distinct event positions.
        let mut raw: Vec<(u32, bool, u32)> = Vec::with_capacity(spans.len() * 2);
        for (i, s) in spans.iter().enumerate() {
            raw.push((s.call, true, i as u32));
            if let Some(r) = s.ret {
                assert!(r > s.call, "a return follows its call");
                raw.push((r, false, i as u32));
            }
        }
        raw.sort_unstable_by_key(|&(pos, _, _)| pos);
        let n = raw.len() + 1;
        let mut e = Entries {
            prev: (0..n as u32).map(|i| if i == 0 { n as u32 - 1 } else { i - 1 }).collect(),
            next: (0..n as u32).map(|i| if i as usize == n - 1 { 0 } else { i + 1 }).collect(),
            op: vec![NONE; n],
            ret_of: vec![NONE; n],
            is_call: vec![false; n],
        };
        let mut call_node = vec![NONE; spans.len()];
        for (j, &(_, is_call, op)) in raw.iter().enumerate() {
            let node = j + 1;
            e.op[node] = op;
            e.is_call[node] = is_call;
            if is_call {
                call_node[op as usize] = node as u32;
            } else {
                e.ret_of[call_node[op as usize] as usize] = node as u32;
            }
        }
        e
    }

    #[inline]
    fn unlink(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = n;
        self.prev[n as usize] = p;
    }

    #[inline]
    fn relink(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = x;
        self.prev[n as usize] = x;
    }

    /// Removes a call entry and its return entry.
    #[inline]
    fn lift(&mut self, call: u32) {
        self.unlink(call);
        let r = self.ret_of[call as usize];
        if r != NONE {
            self.unlink(r);
        }
    }

    /// Undoes [`Entries::lift`] (in reverse order, as dancing links require).
    #[inline]
    fn unlift(&mut self, call: u32) {
        let r = self.ret_of[call as usize];
        if r != NONE {
            self.relink(r);
        }
        self.relink(call);
    }
}

/// What looking at one call entry led to.
enum Tried {
    /// The op is not a candidate in this pass, or cannot take effect here: try the next entry.
    Next,
    /// The op was linearized: the search goes on from the new configuration.
    Linearized,
    /// This configuration's forced move was explored before and led nowhere: backtrack.
    ForcedFailed,
    /// The search is over.
    Stop(Outcome),
}

/// The search's state: the entry list, the current configuration (linearized ops and model
/// state) with the stack of moves that led to it, the cache, and the memory reserved.
struct Search<'a, M: SearchModel> {
    spans: &'a [Span],
    twins: &'a [u32],
    model: &'a mut M,
    budget: &'a Budget,
    entries: Entries,
    /// Each op's number among the completed ops, or among the indeterminate ones.
    rank: Vec<u32>,
    /// The completed ops linearized, by rank.
    done: Vec<u64>,
    /// The indeterminate ops linearized, by rank.
    info: Vec<u64>,
    zobrist: Vec<u64>,
    /// All linearized ops (what models see).
    bits: Vec<u64>,
    /// Hash of `done`.
    hash: u64,
    cache: Cache,
    /// Words [0, lo) of `done` are all ones; words [hi, ..) are zero.
    lo: usize,
    hi: usize,
    state: u32,
    /// (call node, state before) per linearized op.
    stack: Vec<(u32, u32)>,
    /// Per frame of `stack`: whether it was forced.
    forced: Vec<bool>,
    /// Completed ops not linearized yet.
    remaining: usize,
    pass: Pass,
    /// The entry to look at next.
    node: u32,
    /// Set when the current configuration is known to lead nowhere.
    backtrack: bool,
    stats: Stats,
    reserved: u64,
    model_bytes_reserved: u64,
    cache_bytes_reserved: u64,
}

/// Searches for a linearization of `spans`, keeping the longest dead ends in `dead_ends`.
/// The loop is [`Search::run`]; its moves are `Search`'s methods, all `#[inline]` (the
/// per-entry ones are the hot path: the corpus bench shows no slowdown from the split).
fn search<M: SearchModel>(
    spans: &[Span],
    twins: &[u32],
    model: &mut M,
    budget: &Budget,
    dead_ends: &mut Vec<DeadEnd>,
) -> (Outcome, Stats) {
    let remaining = spans.iter().filter(|s| s.ret.is_some()).count();
    if remaining == 0 {
        return (Outcome::Valid, Stats::default());
    }
    let mut s = Search::new(spans, twins, model, budget, remaining);
    let outcome = s.run(dead_ends);
    s.stats.cache_entries = s.cache.len() as u64;
    budget.release(s.reserved);
    (outcome, s.stats)
}

impl<'a, M: SearchModel> Search<'a, M> {
    /// The initial configuration: nothing linearized, the model in its initial state.
    fn new(spans: &'a [Span], twins: &'a [u32], model: &'a mut M, budget: &'a Budget, remaining: usize) -> Self {
        let n = spans.len();
        let entries = Entries::build(spans);
        // Completed and indeterminate ops are numbered apart: the cache keys on the set of
        // completed ops linearized (`done`, compressed as a window) and subsumes on the set of
        // indeterminate ones (`info`), see cache.rs.
        let (mut n_done, mut n_info) = (0u32, 0u32);
        let rank: Vec<u32> = spans
            .iter()
            .map(|sp| {
                let c = if sp.ret.is_some() { &mut n_done } else { &mut n_info };
                *c += 1;
                *c - 1
            })
            .collect();
        let info = vec![0u64; (n_info as usize).div_ceil(64)];
        let state = model.init();
        Search {
            spans,
            twins,
            model,
            budget,
            node: entries.next[0],
            entries,
            rank,
            done: vec![0u64; (n_done as usize).div_ceil(64)],
            cache: Cache::new(info.len()),
            info,
            zobrist: (0..n as u64).map(|i| mix(i ^ 0x005E_ED0F_F417_u64)).collect(),
            bits: vec![0u64; n.div_ceil(64)],
            hash: 0,
            lo: 0,
            hi: 0,
            state,
            stack: Vec::with_capacity(n),
            forced: Vec::with_capacity(n),
            remaining,
            pass: Pass::Observers,
            backtrack: false,
            stats: Stats::default(),
            reserved: 0,
            model_bytes_reserved: 0,
            cache_bytes_reserved: 0,
        }
    }

    /// The search loop, until every completed op is linearized, no configuration is left, or
    /// the budget runs out.
    ///
    /// The candidates of a configuration (the call entries before the first return entry) are
    /// tried in passes: completed observers (ops that never change the state), other completed
    /// ops, then indeterminate ones. Any order is complete; this one reaches each (completed
    /// set, state) first with few indeterminate ops applied, so the cache's subsumption cuts the
    /// variants that applied more.
    ///
    /// An observer that can take effect now is *forced*: no other candidate is tried in this
    /// configuration, and if it leads nowhere neither does the configuration. Sound and
    /// complete: if a linearization from here places that observer later, moving it to now
    /// leaves a linearization (it changes no state, it is a candidate so every op that returned
    /// before its call is already linearized, and ops that must follow it still do).
    fn run(&mut self, dead_ends: &mut Vec<DeadEnd>) -> Outcome {
        let mut iterations: u64 = 0;
        loop {
            iterations += 1;
            if iterations.is_multiple_of(BUDGET_CHECK_EVERY) {
                if let Some(stop) = self.over_budget() {
                    return stop;
                }
            }
            if !self.backtrack {
                let node = self.node;
                if node == 0 {
                    // Only indeterminate calls were left to try: no completed op remains here,
                    // which the `remaining == 0` test in `linearize` would have caught.
                    unreachable!("the list ends with the return entry of a pending completed op");
                }
                if self.entries.is_call[node as usize] {
                    match self.try_candidate(node) {
                        Tried::Next => {
                            self.node = self.entries.next[node as usize];
                            continue;
                        }
                        Tried::Linearized => continue,
                        Tried::ForcedFailed => {}
                        Tried::Stop(outcome) => return outcome,
                    }
                } else if self.pass != Pass::Indeterminate {
                    // This pass's candidates are exhausted: on to the next.
                    self.pass = if self.pass == Pass::Observers { Pass::Completed } else { Pass::Indeterminate };
                    self.node = self.entries.next[0];
                    continue;
                }
            }
            // The return of an op not linearized yet (or a forced move that failed): this
            // prefix cannot be extended. Only the former is a dead end worth explaining.
            if !self.backtrack {
                self.record_dead_end(dead_ends);
            }
            self.backtrack = false;
            if !self.undo_last() {
                return Outcome::Invalid;
            }
        }
    }

    /// Checks the budget: the cancel flag, the clock, and the model's memory (reserved here).
    #[inline]
    fn over_budget(&mut self) -> Option<Outcome> {
        if self.budget.cancel.load(Ordering::Relaxed) {
            return Some(Outcome::Unknown("not finished: stopped because another key is not linearizable".into()));
        }
        if self.budget.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(Outcome::Unknown(format!(
                "time limit reached after {} steps ({} configurations cached, at most {} of {} ops linearized)",
                self.stats.steps,
                self.cache.len(),
                self.stats.max_depth,
                self.spans.len()
            )));
        }
        let mb = self.model.memory_bytes() as u64;
        if mb > self.model_bytes_reserved {
            if !self.budget.try_reserve(mb - self.model_bytes_reserved) {
                return Some(memory_exhausted(&self.stats, &self.cache, self.spans.len(), self.budget));
            }
            self.reserved += mb - self.model_bytes_reserved;
            self.model_bytes_reserved = mb;
        }
        None
    }

    /// Tries to linearize the op whose call entry is `node`, if it is a candidate of this pass.
    #[inline]
    fn try_candidate(&mut self, node: u32) -> Tried {
        let op = self.entries.op[node as usize] as usize;
        let definite = self.spans[op].ret.is_some();
        let twin = self.twins[op];
        let op_pass = if !definite {
            Pass::Indeterminate
        } else if self.model.is_observer(op) {
            Pass::Observers
        } else {
            Pass::Completed
        };
        if op_pass != self.pass || (twin != NONE && !bit(&self.bits, twin as usize)) {
            return Tried::Next;
        }
        self.stats.steps += 1;
        let Some(next_state) = self.model.step(self.state, op) else {
            return Tried::Next;
        };
        self.bits[op / 64] |= 1 << (op % 64);
        // An indeterminate op is applied only where it changes the (canonical) state:
        // dropping one that changes nothing from a linearization leaves a linearization
        // (no op sees a difference, and it need not take effect), and the symmetry
        // breaking still applies to what is left (it keeps the sequence of effects).
        let Some(next_state) = self.model.refine(next_state, &self.bits).filter(|&s| s != self.state || definite)
        else {
            self.bits[op / 64] &= !(1 << (op % 64));
            return Tried::Next;
        };
        let r = self.rank[op] as usize;
        let (h, lo2, hi2) = self.mark(op, r, definite);
        let key = h ^ mix(u64::from(next_state));
        if !self.reserve_cache_growth(hi2 - lo2) {
            return Tried::Stop(memory_exhausted(&self.stats, &self.cache, self.spans.len(), self.budget));
        }
        let window = Window { first: lo2, window: &self.done[lo2..hi2] };
        let is_new = self.cache.insert(key, window, next_state, &self.info);
        if is_new {
            (self.lo, self.hi) = (lo2, hi2);
            self.hash = h;
            return self.linearize(node, next_state, definite);
        }
        self.bits[op / 64] &= !(1 << (op % 64));
        if self.pass == Pass::Observers {
            // The forced move was explored and led nowhere: neither does this
            // configuration.
            self.done[r / 64] &= !(1 << (r % 64));
            self.backtrack = true;
            return Tried::ForcedFailed;
        }
        if definite {
            self.done[r / 64] &= !(1 << (r % 64));
        } else {
            self.info[r / 64] &= !(1 << (r % 64));
        }
        Tried::Next
    }

    /// Sets `op`'s bit (rank `r`) in `done` or `info`: the hash of `done` and its window
    /// `[lo, hi)` with the op linearized.
    #[inline]
    fn mark(&mut self, op: usize, r: usize, definite: bool) -> (u64, usize, usize) {
        if definite {
            self.done[r / 64] |= 1 << (r % 64);
            let hi2 = self.hi.max(r / 64 + 1);
            let mut lo2 = self.lo;
            while lo2 < hi2 && self.done[lo2] == u64::MAX {
                lo2 += 1;
            }
            (self.hash ^ self.zobrist[op], lo2, hi2)
        } else {
            self.info[r / 64] |= 1 << (r % 64);
            (self.hash, self.lo, self.hi)
        }
    }

    /// Reserves what a cache insert with a `window_words`-word window may allocate, before
    /// allocating it; false if the budget has no room.
    #[inline]
    fn reserve_cache_growth(&mut self, window_words: usize) -> bool {
        let cache_bytes_needed = (self.cache.memory_bytes() + self.cache.growth_bytes(window_words)) as u64;
        if cache_bytes_needed > self.cache_bytes_reserved {
            if !self.budget.try_reserve(cache_bytes_needed - self.cache_bytes_reserved) {
                return false;
            }
            self.reserved += cache_bytes_needed - self.cache_bytes_reserved;
            self.cache_bytes_reserved = cache_bytes_needed;
        }
        true
    }

    /// Moves to the configuration where `node`'s op is linearized (its bits already set),
    /// in state `next_state`; the search is over (valid) if no completed op remains.
    #[inline]
    fn linearize(&mut self, node: u32, next_state: u32, definite: bool) -> Tried {
        self.forced.push(self.pass == Pass::Observers);
        self.stack.push((node, self.state));
        self.state = next_state;
        self.entries.lift(node);
        if definite {
            self.remaining -= 1;
            if self.remaining == 0 {
                return Tried::Stop(Outcome::Valid);
            }
        }
        self.stats.max_depth = self.stats.max_depth.max(self.stack.len());
        self.node = self.entries.next[0];
        self.pass = Pass::Observers;
        Tried::Linearized
    }

    /// Keeps the current prefix, blocked at the return entry `self.node`, if it is among the
    /// longest dead ends found so far.
    #[inline]
    fn record_dead_end(&self, dead_ends: &mut Vec<DeadEnd>) {
        let depth = self.stack.len();
        let best = dead_ends.first().map(|d| d.order.len());
        if best.is_none_or(|b| depth > b) || (best == Some(depth) && dead_ends.len() < LONGEST_KEPT_MAX) {
            if best.is_some_and(|b| depth > b) {
                dead_ends.clear();
            }
            let order: Vec<u32> = self.stack.iter().map(|&(c, _)| self.entries.op[c as usize]).collect();
            if !dead_ends.iter().any(|d| d.order == order) {
                dead_ends.push(DeadEnd { order, blocked: self.entries.op[self.node as usize] });
            }
        }
    }

    /// Undoes the last linearized op and resumes after its call entry; false if nothing
    /// is linearized (the search is exhausted).
    #[inline]
    fn undo_last(&mut self) -> bool {
        let Some((call, prev_state)) = self.stack.pop() else {
            return false;
        };
        let was_forced = self.forced.pop().expect("one flag per frame");
        let op = self.entries.op[call as usize] as usize;
        let definite = self.spans[op].ret.is_some();
        self.entries.unlift(call);
        self.bits[op / 64] &= !(1 << (op % 64));
        let r = self.rank[op] as usize;
        if definite {
            self.done[r / 64] &= !(1 << (r % 64));
            self.lo = self.lo.min(r / 64);
            while self.hi > self.lo && self.done[self.hi - 1] == 0 {
                self.hi -= 1;
            }
            self.hash ^= self.zobrist[op];
            self.remaining += 1;
        } else {
            self.info[r / 64] &= !(1 << (r % 64));
        }
        self.state = prev_state;
        self.pass = if !definite {
            Pass::Indeterminate
        } else if was_forced {
            // The configuration's forced move failed: so does the configuration.
            self.backtrack = true;
            Pass::Observers
        } else {
            Pass::Completed
        };
        self.node = self.entries.next[call as usize];
        true
    }
}

fn memory_exhausted(stats: &Stats, cache: &Cache, n: usize, budget: &Budget) -> Outcome {
    Outcome::Unknown(format!(
        "memory limit of {} MiB reached (all keys together) after {} steps ({} configurations cached, {} MiB, at most {} of {} ops linearized)",
        budget.memory_limit_bytes.unwrap_or(0) >> 20,
        stats.steps,
        cache.len(),
        cache.memory_bytes() >> 20,
        stats.max_depth,
        n
    ))
}
