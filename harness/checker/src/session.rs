//! Session guarantees for register histories: **read-your-writes and monotonic reads** (Terry,
//! Demers, Petersen, Spreitzer, Theimer, Welch, "Session Guarantees for Weakly Consistent
//! Replicated Data", PDIS 1994), per key, where a session is a Faultline process (a process
//! retires after an `info`, and its successor is a new session).
//!
//! Definition checked, per key. The history satisfies it iff there is a total order `W` of the
//! key's writes — the initial value (nil) first, then every acknowledged write and successful
//! cas, and any subset of the indeterminate ones — and a position in `W` for every read, such
//! that:
//! - each read returns the value of the write at its position (a cas that failed with
//!   `cas-mismatch` "reads" a position whose value differs from its `from`);
//! - a cas at position `c` in `W` found the value of position `c − 1` equal to its `from` (it
//!   is a read at `c − 1` and a write at `c`, atomically);
//! - **monotonic reads**: each process's reads (the read halves of its cas included), in its
//!   program order, are at non-decreasing positions;
//! - **read your writes**: each read of a process is at or after the position of every write
//!   (and cas) that process completed before calling the read. Writes are otherwise free: a
//!   process's write need not follow its earlier reads (that would be writes-follow-reads) nor
//!   its earlier writes (monotonic writes), neither of which is checked.
//!
//! The single order `W` stands for the order in which replicas apply writes (a leader's log,
//! timestamps); Terry et al. allow each server its own order, which for a register (where the
//! value read depends on the order) makes the guarantees nearly vacuous, so this definition is
//! the stronger, useful one. Sequential consistency per key implies it (take `W` from the
//! sequential order), so a register history is checked here only when it is not sequential.
//!
//! The search builds `W` from its start: at each configuration it may append a write (any
//! acknowledged one not yet placed, an indeterminate one, or a process's next cas), and a
//! process whose next operation is a read of the current last value reads it there. A
//! configuration is (how far each process's reads have got, which writes are placed, the
//! value), each explored once (memo), under the budget. Reductions, each sound and complete
//! (checked against the brute-force [`crate::oracle::is_session`] by property tests): forced
//! reads (a read the current value satisfies, whose process's earlier writes are placed, is
//! taken at once: any valid assignment can move it down to this position, which keeps every
//! lower bound), dead values merged and stuck processes pruned (as in [`crate::sequential`]),
//! identical writes placed in a fixed order (indeterminate writes of one value are
//! interchangeable; so are one process's acknowledged writes of one value, placing the one
//! called first first: the reads each gates still come after both), and an indeterminate
//! write placed only where it changes the value.

use rustc_hash::FxHashMap;

use crate::model::{ModelKind, RegOp};
use crate::orders::{
    self, compared, is_observer, step, written, Budget, Memo, OrderReport, Outcome, RegKey, SearchStats, Stop, DEAD,
};
use crate::CheckOptions;

/// Checks every key of a register history for read-your-writes and monotonic reads (see the
/// module documentation for the exact definition). A malformed history, or a model other than
/// `register`/`cas-register`, gives `unknown` with the reason.
pub fn check_session(events: &[crate::history::Event], model: ModelKind, opts: &CheckOptions) -> OrderReport {
    orders::check_keys(events, model, opts, "session", "read-your-writes and monotonic reads", search_key)
}

#[derive(Clone, Copy, Debug)]
enum Move {
    /// Process `p`'s next cursor op (a read, failed cas or successful cas).
    Cursor(u32),
    /// Free op `f` placed in `W`.
    Free(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FreeKind {
    /// Acknowledged write: must be placed.
    OkWrite,
    /// Indeterminate write: may be placed.
    InfoWrite,
    /// Indeterminate cas: may be placed where the value is its `from` and its process's reads
    /// so far allow (`after` cursor ops done, its gating writes placed).
    InfoCas { proc: Option<usize>, after: u32 },
}

struct Free {
    op: usize,
    kind: FreeKind,
    /// The free op that must be placed before this one (symmetry breaking).
    twin: Option<usize>,
    /// The process's acknowledged writes called before it (free-op indices).
    gate: Vec<usize>,
}

/// A level of the search ([`orders::run_search`]).
type Frame = orders::Frame<Move>;

type Enter = orders::Enter<Move>;

struct Search<'k> {
    k: &'k RegKey,
    /// Per process (with cursor ops): its reads, failed cas and successful cas, in order.
    cursor: Vec<Vec<usize>>,
    /// Per cursor op (by op id): the acknowledged writes of its process called before it.
    gate: FxHashMap<usize, Vec<usize>>,
    free: Vec<Free>,
    pos: Vec<u32>,
    placed: Vec<u64>,
    /// Cursor ops not yet done plus acknowledged writes not yet placed.
    mandatory_left: usize,
    mandatory_total: usize,
    compare_count: Vec<u32>,
    writers_left: Vec<u32>,
    best: Option<(usize, Vec<usize>, u32)>,
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

impl Search<'_> {
    fn op_of(&self, mv: Move) -> usize {
        match mv {
            Move::Cursor(p) => self.cursor[p as usize][self.pos[p as usize] as usize],
            Move::Free(f) => self.free[f as usize].op,
        }
    }

    fn gated_ok(&self, gate: &[usize]) -> bool {
        gate.iter().all(|&f| bit(&self.placed, f))
    }

    fn apply(&mut self, mv: Move) {
        let op = self.op_of(mv);
        if let Some(v) = compared(self.k.ops[op]) {
            self.compare_count[v as usize] -= 1;
        }
        if let Some(v) = written(self.k.ops[op]) {
            self.writers_left[v as usize] -= 1;
        }
        match mv {
            Move::Cursor(p) => {
                self.pos[p as usize] += 1;
                self.mandatory_left -= 1;
            }
            Move::Free(f) => {
                self.placed[f as usize / 64] |= 1 << (f % 64);
                if self.free[f as usize].kind == FreeKind::OkWrite {
                    self.mandatory_left -= 1;
                }
            }
        }
    }

    fn undo(&mut self, mv: Move) {
        match mv {
            Move::Cursor(p) => {
                self.pos[p as usize] -= 1;
                self.mandatory_left += 1;
            }
            Move::Free(f) => {
                self.placed[f as usize / 64] &= !(1 << (f % 64));
                if self.free[f as usize].kind == FreeKind::OkWrite {
                    self.mandatory_left += 1;
                }
            }
        }
        let op = self.op_of(mv);
        if let Some(v) = compared(self.k.ops[op]) {
            self.compare_count[v as usize] += 1;
        }
        if let Some(v) = written(self.k.ops[op]) {
            self.writers_left[v as usize] += 1;
        }
    }

    fn heads(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.cursor.iter().enumerate().filter_map(|(p, ops)| ops.get(self.pos[p] as usize).map(|&o| (p, o)))
    }

    fn note_dead_end(&mut self, state: u32) {
        let done = self.mandatory_total - self.mandatory_left;
        if self.best.as_ref().is_none_or(|b| done > b.0) {
            let blocked: Vec<usize> = self.heads().map(|(_, o)| o).collect();
            self.best = Some((done, blocked, state));
        }
    }

    fn enter(&mut self, state: u32, memo: &mut Memo, key: &mut Vec<u32>) -> Result<Enter, Stop> {
        if self.mandatory_left == 0 {
            return Ok(Enter::Success);
        }
        let canon = if state != DEAD && self.compare_count[state as usize] == 0 { DEAD } else { state };
        let stuck = self.heads().any(|(_, o)| match self.k.ops[o] {
            RegOp::Read(v) | RegOp::Cas(v, _) => canon != v && self.writers_left[v as usize] == 0,
            _ => false,
        });
        if stuck {
            self.note_dead_end(canon);
            return Ok(Enter::Dead);
        }
        key.clear();
        key.extend_from_slice(&self.pos);
        key.extend(self.placed.iter().flat_map(|w| [*w as u32, (*w >> 32) as u32]));
        key.push(canon);
        if !memo.insert(key)? {
            return Ok(Enter::Dead);
        }
        let mut moves = Vec::new();
        for (p, o) in self.heads() {
            let op = self.k.ops[o];
            if !self.gated_ok(&self.gate[&o]) {
                continue;
            }
            if let Some(next) = step(canon, op) {
                if is_observer(op) {
                    moves.clear();
                    moves.push((Move::Cursor(p as u32), o, next));
                    return Ok(Enter::Frame(Frame { moves, next: 0, applied: None }, canon));
                }
                moves.push((Move::Cursor(p as u32), o, next));
            }
        }
        for (f, free) in self.free.iter().enumerate() {
            if bit(&self.placed, f) || free.twin.is_some_and(|t| !bit(&self.placed, t)) {
                continue;
            }
            if let FreeKind::InfoCas { proc, after } = free.kind {
                if proc.is_some_and(|p| self.pos[p] < after) || !self.gated_ok(&free.gate) {
                    continue;
                }
            }
            if let Some(next) = step(canon, self.k.ops[free.op]) {
                if free.kind != FreeKind::OkWrite && next == canon {
                    continue;
                }
                moves.push((Move::Free(f as u32), free.op, next));
            }
        }
        if moves.is_empty() {
            self.note_dead_end(canon);
            return Ok(Enter::Dead);
        }
        moves.sort_by_key(|m| m.1);
        Ok(Enter::Frame(Frame { moves, next: 0, applied: None }, canon))
    }
}

/// Searches one key for an order `W` of its writes with a position for every read.
fn search_key(k: &RegKey, budget: &Budget) -> (Outcome, SearchStats) {
    let Layout { cursor, gate, free } = layout(k);
    let (compare_count, writers_left) = orders::value_counts(k);
    let mandatory_total =
        cursor.iter().map(Vec::len).sum::<usize>() + free.iter().filter(|f| f.kind == FreeKind::OkWrite).count();
    let mut s = Search {
        k,
        pos: vec![0; cursor.len()],
        placed: vec![0; free.len().div_ceil(64)],
        cursor,
        gate,
        free,
        mandatory_left: mandatory_total,
        mandatory_total,
        compare_count,
        writers_left,
        best: None,
    };
    let mut stats = SearchStats {
        processes: k.process.iter().collect::<std::collections::BTreeSet<_>>().len(),
        ..Default::default()
    };
    let mut memo = Memo::new(budget);
    let outcome = orders::run_search(&mut s, &mut memo, &mut stats);
    stats.configurations = memo.len() as u64;
    let outcome = match outcome {
        Ok(true) => Outcome::Valid,
        Ok(false) => Outcome::Invalid(no_order_reason(&s)),
        Err(stop) => Outcome::Unknown(stop.reason("read-your-writes and monotonic reads", stats.steps, memo.len())),
    };
    (outcome, stats)
}

/// A key's operations sorted for the search: per process its cursor ops, per cursor op its
/// gating writes, and the free ops.
struct Layout {
    cursor: Vec<Vec<usize>>,
    gate: FxHashMap<usize, Vec<usize>>,
    free: Vec<Free>,
}

/// Sorts `k`'s operations (in call order) into cursor ops and free ops, each gated by its
/// process's acknowledged writes called before it, with twins for the symmetry breaking.
fn layout(k: &RegKey) -> Layout {
    let mut cursor_index: FxHashMap<u64, usize> = FxHashMap::default();
    let mut cursor: Vec<Vec<usize>> = Vec::new();
    let mut gate: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
    let mut free: Vec<Free> = Vec::new();
    // Per process: its acknowledged writes so far (free indices), in call order.
    let mut ok_writes: FxHashMap<u64, Vec<usize>> = FxHashMap::default();
    // Last free index per symmetry class.
    let mut last_info_write: FxHashMap<u32, usize> = FxHashMap::default();
    let mut last_ok_write: FxHashMap<(u64, u32), usize> = FxHashMap::default();
    for (o, &op) in k.ops.iter().enumerate() {
        let p = k.process[o];
        let own_writes = ok_writes.get(&p).cloned().unwrap_or_default();
        match (op, k.completed[o]) {
            (RegOp::Write(v), true) => {
                let f = free.len();
                let twin = last_ok_write.insert((p, v), f);
                free.push(Free { op: o, kind: FreeKind::OkWrite, twin, gate: vec![] });
                ok_writes.entry(p).or_default().push(f);
            }
            (RegOp::Write(v), false) => {
                let f = free.len();
                let twin = last_info_write.insert(v, f);
                free.push(Free { op: o, kind: FreeKind::InfoWrite, twin, gate: vec![] });
            }
            (RegOp::Cas(..), false) => {
                let proc = cursor_index.get(&p).copied();
                let after = proc.map_or(0, |ix| cursor[ix].len() as u32);
                free.push(Free { op: o, kind: FreeKind::InfoCas { proc, after }, twin: None, gate: own_writes });
            }
            (RegOp::Read(_) | RegOp::CasMismatch(_) | RegOp::Cas(..), true) => {
                let ix = *cursor_index.entry(p).or_insert_with(|| {
                    cursor.push(Vec::new());
                    cursor.len() - 1
                });
                cursor[ix].push(o);
                gate.insert(o, own_writes);
            }
            (RegOp::Read(_) | RegOp::CasMismatch(_), false) => {
                unreachable!("prepare drops indeterminate reads; a cas mismatch is completed")
            }
        }
    }
    Layout { cursor, gate, free }
}

/// Why a search that found no order failed: how far it got at best and what blocked it there.
fn no_order_reason(s: &Search) -> String {
    let (k, mandatory_total) = (s.k, s.mandatory_total);
    let (done, blocked, state) = s.best.clone().unwrap_or((0, vec![], 0));
    let unplaced: Vec<usize> = s.free.iter().filter(|f| f.kind == FreeKind::OkWrite).map(|f| f.op).collect();
    format!(
        "no order of the writes lets every process read its own writes with monotonic reads: at best {done} of {mandatory_total} reads and acknowledged writes are placed (value then {}), and then no process's next read can be served: {}{}",
        k.describe_value(state),
        if blocked.is_empty() { "(none left; an acknowledged write cannot be placed)".to_string() } else { k.describe_ops(&blocked) },
        if unplaced.is_empty() { String::new() } else { format!(" ({} acknowledged writes in all)", unplaced.len()) }
    )
}

impl orders::OrderSearch for Search<'_> {
    type Move = Move;
    // The inherent methods of the same names (path calls resolve to them first).
    fn enter(&mut self, state: u32, memo: &mut Memo, key: &mut Vec<u32>) -> Result<Enter, Stop> {
        Search::enter(self, state, memo, key)
    }
    fn apply(&mut self, mv: Move) {
        Search::apply(self, mv)
    }
    fn undo(&mut self, mv: Move) {
        Search::undo(self, mv)
    }
}

/// Read-your-writes and monotonic reads for grow-only sets (the `set` workload: `add` of an
/// integer, `read` of the whole set), per key and process. Adds commute, so no write order is
/// needed and this is exactly Terry et al.'s definition: each ok read of a process contains
/// every element the process added (ok) before calling it, and every element of the process's
/// earlier ok reads; and no read contains an element that no add (other than definitely failed
/// ones) added. A malformed history gives `unknown`.
pub fn check_grow_only_set(events: &[crate::history::Event]) -> OrderReport {
    use std::collections::BTreeMap;

    use crate::convergence::client_ops;
    use crate::orders::OrderKeyReport;
    use crate::Verdict;

    let started = std::time::Instant::now();
    let report = |verdict, reason, keys| OrderReport {
        model: "session".into(),
        verdict,
        reason,
        keys,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    };
    let ops = match client_ops(events) {
        Ok(o) => o,
        Err(e) => return report(Verdict::Unknown, Some(format!("malformed history: {e}")), vec![]),
    };
    let mut by_key: BTreeMap<Option<String>, Vec<&crate::convergence::ClientOp>> = BTreeMap::new();
    for o in &ops {
        by_key.entry(o.key.clone()).or_default().push(o);
    }
    let mut keys = Vec::new();
    for (key, ops) in by_key {
        match grow_only_set_key(key, &ops) {
            Ok(k) => keys.push(k),
            Err(malformed) => return report(Verdict::Unknown, Some(malformed), vec![]),
        }
    }
    let bad: Vec<&OrderKeyReport> = keys.iter().filter(|k| k.verdict == Verdict::Invalid).collect();
    let reason = bad.first().map(|k| {
        format!(
            "not read-your-writes and monotonic reads: key {:?}: {}",
            k.key.clone().unwrap_or_default(),
            k.reason.clone().unwrap_or_default()
        )
    });
    let verdict = if bad.is_empty() { Verdict::Valid } else { Verdict::Invalid };
    report(verdict, reason, keys)
}

/// One key of [`check_grow_only_set`]: its first problem, if any, in its report; `Err` (why)
/// when a read's value is not an array of integers.
fn grow_only_set_key(
    key: Option<String>,
    ops: &[&crate::convergence::ClientOp],
) -> Result<crate::orders::OrderKeyReport, String> {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::convergence::Outcome as OpOutcome;
    use crate::Verdict;

    let key_started = std::time::Instant::now();
    let possible: BTreeSet<i64> = ops
        .iter()
        .filter(|o| o.f == "add" && o.outcome != OpOutcome::Fail)
        .filter_map(|o| o.invoke_value.as_i64())
        .collect();
    // Per process: what its next read must contain.
    let mut must: BTreeMap<u64, BTreeSet<i64>> = BTreeMap::new();
    let mut problem: Option<String> = None;
    for o in ops {
        if o.outcome != OpOutcome::Ok {
            continue;
        }
        let m = must.entry(o.process).or_default();
        match o.f.as_str() {
            "add" => {
                if let Some(e) = o.invoke_value.as_i64() {
                    m.insert(e);
                }
            }
            "read" => {
                let Some(read) =
                    o.value.as_array().and_then(|a| a.iter().map(|v| v.as_i64()).collect::<Option<BTreeSet<i64>>>())
                else {
                    return Err(format!(
                        "malformed history: event {}: a set read's value is not an array of integers",
                        o.index
                    ));
                };
                if problem.is_none() {
                    if let Some(e) = read.iter().find(|e| !possible.contains(e)) {
                        problem =
                            Some(format!("read at event {} (p{}) has {e}, which no add added", o.index, o.process));
                    } else if let Some(e) = m.iter().find(|e| !read.contains(e)) {
                        problem = Some(format!(
                            "read at event {} (p{}) lacks {e}, which the same process added or read before (read-your-writes / monotonic reads)",
                            o.index, o.process
                        ));
                    }
                }
                m.extend(read);
            }
            _ => {}
        }
    }
    Ok(crate::orders::OrderKeyReport {
        key,
        verdict: if problem.is_some() { Verdict::Invalid } else { Verdict::Valid },
        reason: problem,
        ops: ops.len(),
        info_ops: ops.iter().filter(|o| o.outcome == OpOutcome::Info).count(),
        processes: ops.iter().map(|o| o.process).collect::<BTreeSet<_>>().len(),
        steps: 0,
        configurations: 0,
        elapsed_ms: key_started.elapsed().as_secs_f64() * 1e3,
        witness: None,
    })
}
