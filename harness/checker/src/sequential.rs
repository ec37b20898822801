//! Sequential consistency per key (Lamport 1979) for register histories: is there, for each
//! key, a total order of its operations that respects every process's program order and the
//! register's (or cas-register's) semantics? Unlike linearizability there is no real-time
//! constraint: an operation may be ordered before another that completed before it was called,
//! as long as each process sees its own operations in the order it issued them.
//!
//! Sequential consistency is not compositional (a history whose every key is sequentially
//! consistent may have no single order over all keys), so this is **sequential (per key)**,
//! weaker than sequential consistency of the whole history; it is what is checked and reported.
//!
//! Which operations count: as for linearizability (see `orders`). An indeterminate write or cas
//! may take effect or not; if it does, it comes after the operations its process completed
//! before calling it (program order). Faultline retires a process after an `info`, so such an
//! operation is its process's last; in other histories it does not hold back the process's
//! later operations (it may have taken effect at any time after its call).
//!
//! The search is a depth-first search over configurations (how far each process has got, which
//! indeterminate ops took effect, the register's value), each explored once (memo), under the
//! budget. Reductions, each sound and complete (argued where made, and checked against the
//! brute-force [`crate::oracle::is_sequential`] by property tests):
//! - forced observers: a process whose next operation is a read (or a failed cas) that the
//!   current value satisfies takes it now, and nothing else is tried here (moving that read
//!   earlier in any valid order to this point keeps the order valid: it changes nothing, its
//!   process's earlier operations are all placed, and its later ones still follow);
//! - dead values: values no remaining operation compares with are merged into one (`orders::DEAD`);
//! - stuck processes: a configuration where some process's next operation needs the value `v`
//!   (a read of `v`, a cas from `v`) while the register holds another and no remaining
//!   operation that may come before it writes `v` (its own later operations may not) leads
//!   nowhere;
//! - an indeterminate op is applied only where it changes the value (dropping one that changes
//!   nothing from a valid order leaves a valid order: nothing waits for it).

use rustc_hash::FxHashMap;

use crate::model::{ModelKind, RegOp};
use crate::orders::{
    self, compared, is_observer, step, written, Budget, Memo, OrderReport, Outcome, RegKey, SearchStats, Stop, DEAD,
};
use crate::CheckOptions;

/// Checks every key of a register history for sequential consistency (per key). Never panics
/// on bad input: a malformed history, or a model other than `register`/`cas-register`, gives
/// `unknown` with the reason.
pub fn check_sequential(events: &[crate::history::Event], model: ModelKind, opts: &CheckOptions) -> OrderReport {
    orders::check_keys(events, model, opts, "sequential", "sequentially consistent (per key)", search_key)
}

#[derive(Clone, Copy, Debug)]
enum Move {
    /// The next completed op of process `p`.
    Proc(u32),
    /// Indeterminate op `i` (index into `infos`).
    Info(u32),
}

/// A level of the search ([`orders::run_search`]).
type Frame = orders::Frame<Move>;

struct Info {
    op: usize,
    /// Index into `procs` of its process, if that process completed any op.
    proc: Option<usize>,
    /// How many of its process's completed ops were called before it.
    after: u32,
}

type Enter = orders::Enter<Move>;

struct Search<'k> {
    k: &'k RegKey,
    procs: Vec<Vec<usize>>,
    infos: Vec<Info>,
    pos: Vec<u32>,
    info_bits: Vec<u64>,
    remaining: usize,
    compare_count: Vec<u32>,
    writers_left: Vec<u32>,
    /// Per process, per value: its completed ops not yet placed that write the value (they
    /// must come after its next op, so they cannot give that op its value).
    own_writers_left: Vec<Vec<u32>>,
    /// The deepest dead end: (completed ops placed, the ops that could not follow, the value).
    best: Option<(usize, Vec<usize>, u32)>,
    completed_total: usize,
}

impl Search<'_> {
    fn op_of(&self, mv: Move) -> usize {
        match mv {
            Move::Proc(p) => self.procs[p as usize][self.pos[p as usize] as usize],
            Move::Info(i) => self.infos[i as usize].op,
        }
    }

    fn take(&mut self, op: usize) {
        if let Some(v) = compared(self.k.ops[op]) {
            self.compare_count[v as usize] -= 1;
        }
        if let Some(v) = written(self.k.ops[op]) {
            self.writers_left[v as usize] -= 1;
        }
    }

    fn untake(&mut self, op: usize) {
        if let Some(v) = compared(self.k.ops[op]) {
            self.compare_count[v as usize] += 1;
        }
        if let Some(v) = written(self.k.ops[op]) {
            self.writers_left[v as usize] += 1;
        }
    }

    fn apply(&mut self, mv: Move) {
        let op = self.op_of(mv);
        self.take(op);
        match mv {
            Move::Proc(p) => {
                if let Some(v) = written(self.k.ops[op]) {
                    self.own_writers_left[p as usize][v as usize] -= 1;
                }
                self.pos[p as usize] += 1;
                self.remaining -= 1;
            }
            Move::Info(i) => self.info_bits[i as usize / 64] |= 1 << (i % 64),
        }
    }

    fn undo(&mut self, mv: Move) {
        match mv {
            Move::Proc(p) => {
                self.pos[p as usize] -= 1;
                self.remaining += 1;
                let op = self.procs[p as usize][self.pos[p as usize] as usize];
                if let Some(v) = written(self.k.ops[op]) {
                    self.own_writers_left[p as usize][v as usize] += 1;
                }
            }
            Move::Info(i) => self.info_bits[i as usize / 64] &= !(1 << (i % 64)),
        }
        let op = self.op_of(mv);
        self.untake(op);
    }

    fn heads(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.procs.iter().enumerate().filter_map(|(p, ops)| ops.get(self.pos[p] as usize).map(|&o| (p, o)))
    }

    fn note_dead_end(&mut self, state: u32) {
        let done = self.completed_total - self.remaining;
        if self.best.as_ref().is_none_or(|b| done > b.0) {
            let blocked: Vec<usize> = self.heads().map(|(_, o)| o).collect();
            self.best = Some((done, blocked, state));
        }
    }

    fn enter(&mut self, state: u32, memo: &mut Memo, key: &mut Vec<u32>) -> Result<Enter, Stop> {
        if self.remaining == 0 {
            return Ok(Enter::Success);
        }
        let canon = if state != DEAD && self.compare_count[state as usize] == 0 { DEAD } else { state };
        // Writers of `v` that can still come before process `p`'s next op: not its own
        // (those follow it in program order).
        let stuck = self.heads().any(|(p, o)| match self.k.ops[o] {
            RegOp::Read(v) | RegOp::Cas(v, _) => {
                canon != v && self.writers_left[v as usize] == self.own_writers_left[p][v as usize]
            }
            _ => false,
        });
        if stuck {
            self.note_dead_end(canon);
            return Ok(Enter::Dead);
        }
        key.clear();
        key.extend_from_slice(&self.pos);
        key.extend(self.info_bits.iter().flat_map(|w| [*w as u32, (*w >> 32) as u32]));
        key.push(canon);
        if !memo.insert(key)? {
            return Ok(Enter::Dead);
        }
        let mut moves = Vec::new();
        for (p, o) in self.heads() {
            let op = self.k.ops[o];
            if let Some(next) = step(canon, op) {
                if is_observer(op) {
                    moves.clear();
                    moves.push((Move::Proc(p as u32), o, next));
                    return Ok(Enter::Frame(Frame { moves, next: 0, applied: None }, canon));
                }
                moves.push((Move::Proc(p as u32), o, next));
            }
        }
        for (i, info) in self.infos.iter().enumerate() {
            if self.info_bits[i / 64] & (1 << (i % 64)) != 0 {
                continue;
            }
            if info.proc.is_some_and(|p| self.pos[p] < info.after) {
                continue;
            }
            if let Some(next) = step(canon, self.k.ops[info.op]) {
                if next != canon {
                    moves.push((Move::Info(i as u32), info.op, next));
                }
            }
        }
        if moves.is_empty() {
            self.note_dead_end(canon);
            return Ok(Enter::Dead);
        }
        // Earliest-called first: a history that is nearly linearizable is ordered at once.
        moves.sort_by_key(|m| m.1);
        Ok(Enter::Frame(Frame { moves, next: 0, applied: None }, canon))
    }
}

/// Searches one key for a sequential order of its operations.
fn search_key(k: &RegKey, budget: &Budget) -> (Outcome, SearchStats) {
    let (procs, infos) = processes_and_infos(k);
    let (compare_count, writers_left) = orders::value_counts(k);
    let completed_total = k.completed.iter().filter(|c| **c).count();
    let own_writers_left = own_writers_left(k, &procs);
    let mut s = Search {
        own_writers_left,
        k,
        pos: vec![0; procs.len()],
        info_bits: vec![0; infos.len().div_ceil(64)],
        procs,
        infos,
        remaining: completed_total,
        compare_count,
        writers_left,
        best: None,
        completed_total,
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
        Ok(false) => {
            let (done, blocked, state) = s.best.clone().unwrap_or((0, vec![], 0));
            Outcome::Invalid(format!(
                "no order of the {} operations respects every process's order and the register: at best {done} of {} completed ones are ordered (value then {}), and then no process's next operation can follow: {}",
                k.ops.len(),
                completed_total,
                k.describe_value(state),
                k.describe_ops(&blocked)
            ))
        }
        Err(stop) => Outcome::Unknown(stop.reason("sequentially consistent", stats.steps, memo.len())),
    };
    (outcome, stats)
}

/// Per process (in order of its first completed op): its completed ops, in call order; and the
/// indeterminate ops, each with its process and how many of that process's completed ops were
/// called before it.
fn processes_and_infos(k: &RegKey) -> (Vec<Vec<usize>>, Vec<Info>) {
    let mut index: FxHashMap<u64, usize> = FxHashMap::default();
    let mut procs: Vec<Vec<usize>> = Vec::new();
    let mut infos = Vec::new();
    let mut pending_infos: Vec<(usize, u64)> = Vec::new();
    for (o, &done) in k.completed.iter().enumerate() {
        let p = k.process[o];
        if done {
            let ix = *index.entry(p).or_insert_with(|| {
                procs.push(Vec::new());
                procs.len() - 1
            });
            procs[ix].push(o);
        } else {
            pending_infos.push((o, p));
        }
    }
    for (o, p) in pending_infos {
        let proc = index.get(&p).copied();
        // Completed ops of the process called before this one (ops are in call order).
        let after = proc.map_or(0, |ix| procs[ix].iter().filter(|&&c| c < o).count() as u32);
        infos.push(Info { op: o, proc, after });
    }
    (procs, infos)
}

/// Per process, per value: how many of its completed ops write the value.
fn own_writers_left(k: &RegKey, procs: &[Vec<usize>]) -> Vec<Vec<u32>> {
    let nvals = k.values.len();
    procs
        .iter()
        .map(|ops| {
            let mut own = vec![0u32; nvals];
            for &o in ops {
                if let Some(v) = written(k.ops[o]) {
                    own[v as usize] += 1;
                }
            }
            own
        })
        .collect()
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
