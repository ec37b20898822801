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
    PartialLinearization { steps, blocked_op: d.blocked as usize, final_state: shorten(model.describe_state(state)), candidates }
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

fn search<M: SearchModel>(
    spans: &[Span],
    twins: &[u32],
    model: &mut M,
    budget: &Budget,
    dead_ends: &mut Vec<DeadEnd>,
) -> (Outcome, Stats) {
    let mut stats = Stats::default();
    let mut remaining = spans.iter().filter(|s| s.ret.is_some()).count();
    if remaining == 0 {
        return (Outcome::Valid, stats);
    }
    let n = spans.len();
    let words = n.div_ceil(64);
    let mut entries = Entries::build(spans);
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
    let mut done = vec![0u64; (n_done as usize).div_ceil(64)];
    let mut info = vec![0u64; (n_info as usize).div_ceil(64)];
    let zobrist: Vec<u64> = (0..n as u64).map(|i| mix(i ^ 0x005E_ED0F_F417_u64)).collect();
    // All linearized ops (what models see).
    let mut bits = vec![0u64; words];
    // Hash of `done`.
    let mut hash = 0u64;
    let mut cache = Cache::new(info.len());
    // Words [0, lo) of `done` are all ones; words [hi, ..) are zero.
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut state = model.init();
    // (call node, state before) per linearized op.
    let mut stack: Vec<(u32, u32)> = Vec::with_capacity(n);
    let mut reserved: u64 = 0;
    let mut model_bytes_reserved: u64 = 0;
    let mut cache_bytes_reserved: u64 = 0;
    let mut iterations: u64 = 0;
    let mut node = entries.next[0];
    // The candidates of a configuration (the call entries before the first return entry) are
    // tried in passes: completed observers (ops that never change the state), other completed
    // ops, then indeterminate ones. Any order is complete; this one reaches each (completed
    // set, state) first with few indeterminate ops applied, so the cache's subsumption cuts the
    // variants that applied more.
    //
    // An observer that can take effect now is *forced*: no other candidate is tried in this
    // configuration, and if it leads nowhere neither does the configuration. Sound and
    // complete: if a linearization from here places that observer later, moving it to now
    // leaves a linearization (it changes no state, it is a candidate so every op that returned
    // before its call is already linearized, and ops that must follow it still do).
    let mut pass = Pass::Observers;
    // Per frame of `stack`: whether it was forced.
    let mut forced: Vec<bool> = Vec::with_capacity(n);
    // Set when the current configuration is known to lead nowhere.
    let mut backtrack = false;

    let outcome = loop {
        iterations += 1;
        if iterations.is_multiple_of(BUDGET_CHECK_EVERY) {
            if budget.cancel.load(Ordering::Relaxed) {
                break Outcome::Unknown("not finished: stopped because another key is not linearizable".into());
            }
            if budget.deadline.is_some_and(|d| Instant::now() >= d) {
                break Outcome::Unknown(format!(
                    "time limit reached after {} steps ({} configurations cached, at most {} of {} ops linearized)",
                    stats.steps,
                    cache.len(),
                    stats.max_depth,
                    n
                ));
            }
            let mb = model.memory_bytes() as u64;
            if mb > model_bytes_reserved {
                if !budget.try_reserve(mb - model_bytes_reserved) {
                    break memory_exhausted(&stats, &cache, n, budget);
                }
                reserved += mb - model_bytes_reserved;
                model_bytes_reserved = mb;
            }
        }
        if backtrack {
            // Fall through to the backtracking below without looking at `node`.
        } else if node == 0 {
            // Only indeterminate calls were left to try: no completed op remains here, which
            // the `remaining == 0` test below would have caught.
            unreachable!("the list ends with the return entry of a pending completed op");
        }
        if backtrack {
        } else if entries.is_call[node as usize] {
            let op = entries.op[node as usize] as usize;
            let definite = spans[op].ret.is_some();
            let twin = twins[op];
            let op_pass = if !definite {
                Pass::Indeterminate
            } else if model.is_observer(op) {
                Pass::Observers
            } else {
                Pass::Completed
            };
            if op_pass != pass || (twin != NONE && !bit(&bits, twin as usize)) {
                node = entries.next[node as usize];
                continue;
            }
            stats.steps += 1;
            if let Some(next_state) = model.step(state, op) {
                bits[op / 64] |= 1 << (op % 64);
                // An indeterminate op is applied only where it changes the (canonical) state:
                // dropping one that changes nothing from a linearization leaves a linearization
                // (no op sees a difference, and it need not take effect), and the symmetry
                // breaking still applies to what is left (it keeps the sequence of effects).
                let Some(next_state) = model.refine(next_state, &bits).filter(|&s| s != state || definite) else {
                    bits[op / 64] &= !(1 << (op % 64));
                    node = entries.next[node as usize];
                    continue;
                };
                let r = rank[op] as usize;
                let (h, lo2, hi2) = if definite {
                    done[r / 64] |= 1 << (r % 64);
                    let hi2 = hi.max(r / 64 + 1);
                    let mut lo2 = lo;
                    while lo2 < hi2 && done[lo2] == u64::MAX {
                        lo2 += 1;
                    }
                    (hash ^ zobrist[op], lo2, hi2)
                } else {
                    info[r / 64] |= 1 << (r % 64);
                    (hash, lo, hi)
                };
                let key = h ^ mix(u64::from(next_state));
                // Reserve what the insert may allocate before allocating it.
                let cache_bytes_needed = (cache.memory_bytes() + cache.growth_bytes(hi2 - lo2)) as u64;
                if cache_bytes_needed > cache_bytes_reserved {
                    if !budget.try_reserve(cache_bytes_needed - cache_bytes_reserved) {
                        break memory_exhausted(&stats, &cache, n, budget);
                    }
                    reserved += cache_bytes_needed - cache_bytes_reserved;
                    cache_bytes_reserved = cache_bytes_needed;
                }
                let window = Window { first: lo2, window: &done[lo2..hi2] };
                let is_new = cache.insert(key, window, next_state, &info);
                if !is_new && pass == Pass::Observers {
                    // The forced move was explored and led nowhere: neither does this
                    // configuration.
                    bits[op / 64] &= !(1 << (op % 64));
                    done[r / 64] &= !(1 << (r % 64));
                    backtrack = true;
                } else if is_new {
                    (lo, hi) = (lo2, hi2);
                    forced.push(pass == Pass::Observers);
                    stack.push((node, state));
                    state = next_state;
                    hash = h;
                    entries.lift(node);
                    if definite {
                        remaining -= 1;
                        if remaining == 0 {
                            break Outcome::Valid;
                        }
                    }
                    stats.max_depth = stats.max_depth.max(stack.len());
                    node = entries.next[0];
                    pass = Pass::Observers;
                    continue;
                } else {
                    bits[op / 64] &= !(1 << (op % 64));
                    if definite {
                        done[r / 64] &= !(1 << (r % 64));
                    } else {
                        info[r / 64] &= !(1 << (r % 64));
                    }
                }
            }
            if !backtrack {
                node = entries.next[node as usize];
                continue;
            }
        } else if pass != Pass::Indeterminate {
            // This pass's candidates are exhausted: on to the next.
            pass = if pass == Pass::Observers { Pass::Completed } else { Pass::Indeterminate };
            node = entries.next[0];
            continue;
        }
        {
            // The return of an op not linearized yet (or a forced move that failed): this
            // prefix cannot be extended. Only the former is a dead end worth explaining.
            let at_return = !backtrack;
            backtrack = false;
            let depth = stack.len();
            let best = dead_ends.first().map(|d| d.order.len());
            if at_return
                && (best.is_none_or(|b| depth > b) || (best == Some(depth) && dead_ends.len() < LONGEST_KEPT_MAX))
            {
                if best.is_some_and(|b| depth > b) {
                    dead_ends.clear();
                }
                let order: Vec<u32> = stack.iter().map(|&(c, _)| entries.op[c as usize]).collect();
                if !dead_ends.iter().any(|d| d.order == order) {
                    dead_ends.push(DeadEnd { order, blocked: entries.op[node as usize] });
                }
            }
            let Some((call, prev_state)) = stack.pop() else {
                break Outcome::Invalid;
            };
            let was_forced = forced.pop().expect("one flag per frame");
            let op = entries.op[call as usize] as usize;
            let definite = spans[op].ret.is_some();
            entries.unlift(call);
            bits[op / 64] &= !(1 << (op % 64));
            let r = rank[op] as usize;
            if definite {
                done[r / 64] &= !(1 << (r % 64));
                lo = lo.min(r / 64);
                while hi > lo && done[hi - 1] == 0 {
                    hi -= 1;
                }
                hash ^= zobrist[op];
                remaining += 1;
            } else {
                info[r / 64] &= !(1 << (r % 64));
            }
            state = prev_state;
            pass = if !definite {
                Pass::Indeterminate
            } else if was_forced {
                // The configuration's forced move failed: so does the configuration.
                backtrack = true;
                Pass::Observers
            } else {
                Pass::Completed
            };
            node = entries.next[call as usize];
        }
    };
    stats.cache_entries = cache.len() as u64;
    budget.release(reserved);
    (outcome, stats)
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
