//! What the two order-based weak-model checkers ([`crate::sequential`] and [`crate::session`])
//! share: the per-key register operations they search over, their report types, the budget
//! (time and memory, ending in `unknown` with a reason), the memo of explored configurations,
//! and the driver that runs a per-key search over every key of a history.
//!
//! Both checkers take the operations exactly as the linearizability checker prepares them
//! (`prepare`): nemesis events ignored, failed operations dropped except a cas failed with
//! `cas-mismatch` (it observed a value other than `from`), indeterminate (`info` or never
//! completed) reads dropped, indeterminate writes and cas optional.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::explain::OpRef;
use crate::history::{Event, Process};
use crate::model::{ModelKind, RegOp};
use crate::prepare::{self, ModelOps};
use crate::{CheckOptions, Verdict};

/// One key's verdict under a weak model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OrderKeyReport {
    pub key: Option<String>,
    pub verdict: Verdict,
    /// Why the verdict is `invalid` or `unknown`.
    pub reason: Option<String>,
    /// Operations searched (after dropping failed and indeterminate reads).
    pub ops: usize,
    /// Of those, indeterminate.
    pub info_ops: usize,
    /// Processes (sessions) with operations on this key.
    pub processes: usize,
    /// Search steps (moves tried).
    pub steps: u64,
    /// Distinct configurations explored (memo entries).
    pub configurations: u64,
    pub elapsed_ms: f64,
    /// For a valid key, the order the search found, as the invocation `index` of each
    /// operation: for `sequential` the total order, for `session` the order in which it built
    /// the write order and served the reads (a write appended, a read served at the current
    /// last write). Not serialized: tests check it against the model's definition.
    #[serde(skip)]
    pub witness: Option<Vec<u64>>,
}

/// The result of [`crate::sequential::check_sequential`] or [`crate::session::check_session`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OrderReport {
    /// `sequential` or `session`.
    pub model: String,
    pub verdict: Verdict,
    /// One line: the first invalid key and why, or why the verdict is unknown.
    pub reason: Option<String>,
    /// Per key, sorted by key.
    pub keys: Vec<OrderKeyReport>,
    pub elapsed_ms: f64,
}

/// How one key's search ended.
pub(crate) enum Outcome {
    Valid,
    Invalid(String),
    Unknown(String),
}

/// The budget shared by the keys of one check.
pub(crate) struct Budget {
    pub deadline: Option<Instant>,
    pub memory_limit_bytes: Option<u64>,
    pub memory_used: AtomicU64,
    pub cancel: AtomicBool,
}

/// Iterations between two looks at the clock and the cancel flag.
pub(crate) const BUDGET_CHECK_EVERY: u64 = 1024;

/// Memory a memo entry costs beyond its words: the boxed slice's header, the allocator's
/// overhead and the hash table's slot.
const ENTRY_OVERHEAD_BYTES: u64 = 48;

/// The configurations a search has explored (and found to lead nowhere, or is exploring), each
/// stored exactly (no hash-only keys: a collision must never cut a path to success), with the
/// bytes they hold reserved against the shared budget first.
pub(crate) struct Memo<'b> {
    set: FxHashSet<Box<[u32]>>,
    budget: &'b Budget,
    reserved: u64,
}

/// Why a search stops early.
pub(crate) enum Stop {
    Cancelled,
    Time,
    Memory,
}

impl<'b> Memo<'b> {
    pub fn new(budget: &'b Budget) -> Self {
        Memo { set: FxHashSet::default(), budget, reserved: 0 }
    }

    /// `Ok(true)` if `key` is new (and now stored), `Ok(false)` if explored before.
    pub fn insert(&mut self, key: &[u32]) -> Result<bool, Stop> {
        if self.set.contains(key) {
            return Ok(false);
        }
        let bytes = key.len() as u64 * 4 + ENTRY_OVERHEAD_BYTES;
        let prev = self.budget.memory_used.fetch_add(bytes, Ordering::Relaxed);
        if let Some(limit) = self.budget.memory_limit_bytes {
            if prev + bytes > limit {
                self.budget.memory_used.fetch_sub(bytes, Ordering::Relaxed);
                return Err(Stop::Memory);
            }
        }
        self.reserved += bytes;
        self.set.insert(key.into());
        Ok(true)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Looks at the clock and the cancel flag.
    pub fn check(&self) -> Result<(), Stop> {
        if self.budget.cancel.load(Ordering::Relaxed) {
            return Err(Stop::Cancelled);
        }
        if self.budget.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Stop::Time);
        }
        Ok(())
    }
}

impl Drop for Memo<'_> {
    fn drop(&mut self) {
        self.budget.memory_used.fetch_sub(self.reserved, Ordering::Relaxed);
    }
}

impl Stop {
    /// The `unknown` reason, with how far the search got.
    pub fn reason(&self, what: &str, steps: u64, configurations: usize) -> String {
        match self {
            Stop::Cancelled => format!("not finished: stopped because another key is not {what}"),
            Stop::Time => format!("time limit reached after {steps} steps ({configurations} configurations explored)"),
            Stop::Memory => {
                format!("memory limit reached after {steps} steps ({configurations} configurations explored)")
            }
        }
    }
}

/// The id standing for every value that no remaining operation compares with (a read of it, a
/// cas from it, a failed cas from it): such values behave alike under every remaining
/// operation, so the searches merge them (an exact abstraction, as the linearizability
/// checker's merged unread values).
pub(crate) const DEAD: u32 = u32::MAX;

/// The value `op` compares the state with, if any.
pub(crate) fn compared(op: RegOp) -> Option<u32> {
    match op {
        RegOp::Read(v) | RegOp::Cas(v, _) | RegOp::CasMismatch(v) => Some(v),
        RegOp::Write(_) => None,
    }
}

/// The value `op` writes, if any.
pub(crate) fn written(op: RegOp) -> Option<u32> {
    match op {
        RegOp::Write(v) | RegOp::Cas(_, v) => Some(v),
        RegOp::Read(_) | RegOp::CasMismatch(_) => None,
    }
}

/// The state after `op` from `state` (which may be [`DEAD`]), or `None` if `op` cannot take
/// effect there.
#[inline]
pub(crate) fn step(state: u32, op: RegOp) -> Option<u32> {
    match op {
        RegOp::Read(v) => (state == v).then_some(state),
        RegOp::Write(v) => Some(v),
        RegOp::Cas(from, to) => (state == from).then_some(to),
        RegOp::CasMismatch(from) => (state != from).then_some(state),
    }
}

/// `true` for operations that never change the state.
pub(crate) fn is_observer(op: RegOp) -> bool {
    matches!(op, RegOp::Read(_) | RegOp::CasMismatch(_))
}

/// One key's register operations, in invocation order.
pub(crate) struct RegKey {
    pub key: Option<String>,
    pub ops: Vec<RegOp>,
    /// `false` for indeterminate ops.
    pub completed: Vec<bool>,
    pub process: Vec<u64>,
    pub refs: Vec<OpRef>,
    /// `values[id]`; `values[0]` is nil.
    pub values: Vec<Option<i64>>,
}

impl RegKey {
    pub fn describe_value(&self, v: u32) -> String {
        if v == DEAD {
            return "(a value no remaining operation reads)".into();
        }
        match self.values.get(v as usize).copied().flatten() {
            Some(x) => x.to_string(),
            None => "nil".into(),
        }
    }

    /// The first few of `ops`, described, for reasons.
    pub fn describe_ops(&self, ops: &[usize]) -> String {
        const SHOWN_MAX: usize = 4;
        let mut parts: Vec<String> = ops.iter().take(SHOWN_MAX).map(|&o| self.refs[o].describe()).collect();
        if ops.len() > SHOWN_MAX {
            parts.push(format!("and {} more", ops.len() - SHOWN_MAX));
        }
        parts.join("; ")
    }
}

/// Prepares the register keys of a history; an error (the `unknown` reason) for a malformed
/// history or a model other than the registers'.
pub(crate) fn register_keys(events: &[Event], model: ModelKind) -> Result<Vec<RegKey>, String> {
    if !matches!(model, ModelKind::Register | ModelKind::CasRegister) {
        return Err(format!("only the register and cas-register models are supported, not {model}"));
    }
    let prepared = prepare::prepare(events, model).map_err(|e| format!("malformed history: {e}"))?;
    Ok(prepared
        .keys
        .into_iter()
        .map(|k| {
            let ModelOps::Register { values, ops } = k.model else {
                unreachable!("register models prepare register ops")
            };
            RegKey {
                key: k.key,
                completed: k.spans.iter().map(|s| s.ret.is_some()).collect(),
                process: k
                    .ops
                    .iter()
                    .map(|r| match r.process {
                        Process::Client(p) => p,
                        Process::Nemesis => unreachable!("prepare skips nemesis events"),
                    })
                    .collect(),
                refs: k.ops,
                ops,
                values,
            }
        })
        .collect())
}

/// What a per-key search returns besides its outcome.
#[derive(Default)]
pub(crate) struct SearchStats {
    pub steps: u64,
    pub configurations: u64,
    pub processes: usize,
    /// For a valid key: the ops (ids) in the order the search took them.
    pub witness: Option<Vec<usize>>,
}

/// Runs `search` on every key of `events` under `opts`' budget, keys in parallel (smallest
/// first), and combines: any invalid key makes the history invalid, else any unknown key
/// unknown. A malformed history, or a model the search does not support, is `unknown`.
pub(crate) fn check_keys(
    events: &[Event],
    model: ModelKind,
    opts: &CheckOptions,
    name: &str,
    what: &str,
    search: impl Fn(&RegKey, &Budget) -> (Outcome, SearchStats) + Sync,
) -> OrderReport {
    let started = Instant::now();
    let keys = match register_keys(events, model) {
        Ok(k) => k,
        Err(e) => {
            return OrderReport {
                model: name.into(),
                verdict: Verdict::Unknown,
                reason: Some(e),
                keys: vec![],
                elapsed_ms: 0.0,
            }
        }
    };
    let budget = Budget {
        deadline: opts.time_limit.map(|d| started + d),
        memory_limit_bytes: opts.memory_limit_bytes,
        memory_used: AtomicU64::new(0),
        cancel: AtomicBool::new(false),
    };
    let keys = search_keys_in_parallel(&keys, opts, &budget, &search);
    let verdict = keys.iter().fold(Verdict::Valid, |v, k| v.combine(k.verdict));
    let reason = combined_reason(&keys, verdict, what);
    OrderReport { model: name.into(), verdict, reason, keys, elapsed_ms: started.elapsed().as_secs_f64() * 1e3 }
}

/// Runs `search` on every key on `opts.threads` workers (at most one per key), smallest key
/// first; the reports come back in the keys' order.
fn search_keys_in_parallel(
    keys: &[RegKey],
    opts: &CheckOptions,
    budget: &Budget,
    search: &(impl Fn(&RegKey, &Budget) -> (Outcome, SearchStats) + Sync),
) -> Vec<OrderKeyReport> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| keys[i].ops.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<OrderKeyReport>>> = Mutex::new(vec![None; keys.len()]);
    let threads = opts.threads.max(1).min(keys.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&k) = order.get(i) else { break };
                let report = search_key_report(&keys[k], opts, budget, search);
                results.lock().unwrap_or_else(|p| p.into_inner())[k] = Some(report);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every key is taken by exactly one worker"))
        .collect()
}

/// Searches one key and reports it; an invalid key cancels the other keys' searches when
/// `opts.stop_on_first_invalid`.
fn search_key_report(
    key: &RegKey,
    opts: &CheckOptions,
    budget: &Budget,
    search: &impl Fn(&RegKey, &Budget) -> (Outcome, SearchStats),
) -> OrderKeyReport {
    let key_started = Instant::now();
    let (outcome, stats) = search(key, budget);
    let (verdict, reason) = match outcome {
        Outcome::Valid => (Verdict::Valid, None),
        Outcome::Invalid(r) => (Verdict::Invalid, Some(r)),
        Outcome::Unknown(r) => (Verdict::Unknown, Some(r)),
    };
    if verdict == Verdict::Invalid && opts.stop_on_first_invalid {
        budget.cancel.store(true, Ordering::Relaxed);
    }
    OrderKeyReport {
        key: key.key.clone(),
        verdict,
        reason,
        ops: key.ops.len(),
        info_ops: key.completed.iter().filter(|c| !**c).count(),
        processes: stats.processes,
        steps: stats.steps,
        configurations: stats.configurations,
        elapsed_ms: key_started.elapsed().as_secs_f64() * 1e3,
        witness: stats.witness.map(|w| w.iter().map(|&o| key.refs[o].call_index).collect()),
    }
}

/// The history's reason under the combined `verdict`: the invalid keys and the first one's
/// reason, or how many keys are undecided and the first one's reason.
fn combined_reason(keys: &[OrderKeyReport], verdict: Verdict, what: &str) -> Option<String> {
    let name_of = |k: &OrderKeyReport| match &k.key {
        Some(k) => format!("{k:?}"),
        None => "(no key)".into(),
    };
    match verdict {
        Verdict::Valid => None,
        Verdict::Invalid => {
            let bad: Vec<&OrderKeyReport> = keys.iter().filter(|k| k.verdict == Verdict::Invalid).collect();
            Some(format!(
                "not {what}: key{} {}: {}",
                if bad.len() > 1 { "s" } else { "" },
                bad.iter().map(|k| name_of(k)).collect::<Vec<_>>().join(", "),
                bad[0].reason.as_deref().unwrap_or("no order")
            ))
        }
        Verdict::Unknown => {
            let unknown: Vec<&OrderKeyReport> = keys.iter().filter(|k| k.verdict == Verdict::Unknown).collect();
            Some(format!(
                "{} of {} keys undecided; key {}: {}",
                unknown.len(),
                keys.len(),
                name_of(unknown[0]),
                unknown[0].reason.as_deref().unwrap_or("undecided")
            ))
        }
    }
}

/// Per value of `k`: how many of its ops compare the state with it, and how many write it.
pub(crate) fn value_counts(k: &RegKey) -> (Vec<u32>, Vec<u32>) {
    let nvals = k.values.len();
    let mut compare_count = vec![0u32; nvals];
    let mut writers_left = vec![0u32; nvals];
    for &op in &k.ops {
        if let Some(v) = compared(op) {
            compare_count[v as usize] += 1;
        }
        if let Some(v) = written(op) {
            writers_left[v as usize] += 1;
        }
    }
    (compare_count, writers_left)
}

/// One level of the depth-first searches of [`crate::sequential`] and [`crate::session`]: the
/// moves to try from a configuration, each `(move, its op id, the value after it)` in the order
/// tried, the next to try, and the move applied from here with the value before it.
pub(crate) struct Frame<M> {
    pub moves: Vec<(M, usize, u32)>,
    pub next: usize,
    pub applied: Option<(M, u32)>,
}

/// What entering a configuration found: every op placed, a configuration already explored (or
/// one with no way on), or the moves to try from it with its canonical value.
pub(crate) enum Enter<M> {
    Success,
    Dead,
    Frame(Frame<M>, u32),
}

/// A search over orders of a key's operations, as [`run_search`] drives it.
pub(crate) trait OrderSearch {
    type Move: Copy;
    /// Enters the configuration reached with value `state` (memoized in `memo`, `key` a scratch
    /// buffer for its memo key).
    fn enter(&mut self, state: u32, memo: &mut Memo, key: &mut Vec<u32>) -> Result<Enter<Self::Move>, Stop>;
    fn apply(&mut self, mv: Self::Move);
    fn undo(&mut self, mv: Self::Move);
}

/// The depth-first search from the initial value (nil): `Ok(true)` if an order exists, with its
/// op ids in `stats.witness`; `Err` when the budget ran out. Iterative (an explicit stack of
/// frames), so a long history cannot overflow the thread's stack.
pub(crate) fn run_search<S: OrderSearch>(s: &mut S, memo: &mut Memo, stats: &mut SearchStats) -> Result<bool, Stop> {
    let mut key = Vec::new();
    let mut state = 0u32; // nil
    let mut frames: Vec<Frame<S::Move>> = Vec::new();
    match s.enter(state, memo, &mut key)? {
        Enter::Success => {
            stats.witness = Some(Vec::new());
            return Ok(true);
        }
        Enter::Dead => return Ok(false),
        Enter::Frame(f, canon) => {
            state = canon;
            frames.push(f);
        }
    }
    while let Some(top) = frames.last_mut() {
        if let Some((mv, prev)) = top.applied.take() {
            s.undo(mv);
            state = prev;
        }
        let Some(&(mv, _, next)) = top.moves.get(top.next) else {
            frames.pop();
            continue;
        };
        top.next += 1;
        stats.steps += 1;
        if stats.steps.is_multiple_of(BUDGET_CHECK_EVERY) {
            memo.check()?;
        }
        s.apply(mv);
        top.applied = Some((mv, state));
        state = next;
        match s.enter(state, memo, &mut key)? {
            Enter::Success => {
                // The path: each frame's applied move (the one before `next`).
                stats.witness =
                    Some(frames.iter().filter(|f| f.applied.is_some()).map(|f| f.moves[f.next - 1].1).collect());
                return Ok(true);
            }
            Enter::Dead => {}
            Enter::Frame(f, canon) => {
                state = canon;
                frames.push(f);
            }
        }
    }
    Ok(false)
}
