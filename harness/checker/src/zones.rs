//! The polynomial decision procedure for register and cas-register keys whose written values
//! are unique: Gibbons & Korach's cluster/zone method ("Testing shared memories", SIAM J.
//! Comput. 26(4), 1997; surveyed by Lowe, "Testing for linearizability", 2017, §6), extended to
//! successful and failed compare-and-set and to indeterminate operations. It runs before the
//! search (`search`) on every register key and decides in O(n log n), or hands the key over.
//!
//! This module owns the procedure and its explanations; `witness` owns the independent check
//! of what it calls valid. It may say:
//! - **valid** only with a witness: a total order of the key's operations that
//!   `witness::verify_register` (a separate, one-pass checker of the definition) accepts;
//! - **invalid** only with a violation proven below, explained in the usual [`Explanation`]
//!   (the operation that cannot be placed, the linearized prefix reached, and why);
//! - otherwise nothing: the key falls back to the search (repeated written values, a failed
//!   cas it could not place, successful cas ops in a cycle).
//!
//! # The argument
//!
//! Let every written value be written by at most one operation (a `write v`, or a cas `a→v`),
//! the initial value never. Then in any linearization the value `v` holds from its write until
//! the next write, and never again: each read of `v` and each successful cas from `v` lies in
//! that stretch. So the *cluster* of `v` (its writer and the ops that read it) is a contiguous
//! block, and the blocks follow each other in write order, the initial value's first. A
//! successful cas `a→b` is the last op of block `a` and the first of block `b`: `b` follows `a`
//! immediately. Following these links from a value written by a plain `write` (or the initial
//! value) gives a *chain*; chains are contiguous too.
//!
//! Which ops must be placed: every completed op, and (transitively) the writer of every value
//! a placed op reads: an indeterminate write or cas whose value is read must take effect, and
//! behaves as a write whose interval never ends. One whose value nobody reads may be left out
//! (it never took effect). Leaving it out does not weaken the proofs below: if some
//! linearization applies it, it sits between two chains (inside block `a` an unread write would
//! hide `a` from the rest of the block; an unread cas `a→u` must end block `a`, and then `a` has
//! no other successful cas), so the chains of the placed ops stay contiguous.
//!
//! For a chain `C` let `f(C)` be the earliest return and `s(C)` the latest invocation among
//! its ops. If some op of `A` returned before some op of `B` was invoked (`f(A) < s(B)`), block
//! `A` precedes block `B` in every linearization. Hence the proofs of invalidity:
//! 1. an op reads (or a cas compares with) a value no op writes, other than the initial one;
//! 2. two successful cas ops change the same value (only one can find it);
//! 3. within a chain the order is forced (writer, its readers in any order, the cas leaving
//!    it, ...); an op that returned before an op forced earlier was invoked cannot be placed;
//! 4. two chains with `f(A) < s(B)` and `f(B) < s(A)` must each precede the other (Gibbons and
//!    Korach's overlapping forward zones, or a backward zone inside a forward one).
//!
//! Completeness without failed cas: place the chains one after the other, each chain's ops in
//! their forced order, each op at the earliest point its interval and the ops before it allow
//! (earliest is optimal for a fixed order: later ops only need points at or after it). Before
//! chain `C` the running point is the latest invocation among the chains placed so far, so an
//! op `x` of `C` fits iff that is before `ret(x)` and no op forced before `x` in `C` was invoked
//! after `x` returned: an order works iff it puts `A` before `B` whenever `f(A) < s(B)` and no
//! proof 3 applies. Take the zone order (by the zone's left end `min(f, s)`). If `x` of chain
//! `A` is blocked by an earlier chain `B` (its op `y` invoked last, `call(y) = s(B) > ret(x) ≥
//! f(A)`), then `min(f(B), s(B)) < min(f(A), s(A)) ≤ f(A) < s(B)` makes `min(f(B), s(B)) = f(B)`,
//! so `f(B) < s(A)`: proof 4 (the code checks both inequalities before claiming it). Otherwise
//! `x` is blocked by an op of its own chain placed before it, which is forced earlier (readers of
//! one value are placed in invocation order, so they never block each other): proof 3. So
//! without failed cas the procedure always decides, in O(n log n).
//!
//! Failed cas (`cas-mismatch`: "the value was not `from` at some point of the interval") are
//! observers placed afterwards into the witness where the value differs from `from`: at the
//! invocation, or just after the next write if that comes before the return. If one cannot be
//! placed, other chain orders that the constraints allow are tried (`write_order`: free chains
//! by their first write's return, midpoint or invocation), with local repairs (`repair`: move a
//! nearby chain to just after the chain of `from`), then all of it again with the unread
//! indeterminate writes placed as chains of their own (`f = ∞`: they never block an op and are
//! never part of a proof, but can end a value's stretch, as a failed cas may have seen). Every
//! such try ends in the verifier or in a proof checked as above; if none succeeds, the search
//! decides (it is complete). Whether failed cas keep the problem polynomial is not settled here.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::explain::{Candidate, Explanation, LinStep, PartialLinearization};
use crate::model::{RegOp, Span};
use crate::prepare::{KeyHistory, ModelOps};
use crate::search::Budget;
use crate::{KeyReport, Procedure, Verdict};

/// The initial value's "writer", which precedes everything.
const VIRTUAL: u32 = u32::MAX;
const NONE: u32 = u32::MAX;
/// Placed ops between two looks at the clock and the cancel flag.
const BUDGET_CHECK_EVERY: usize = 1 << 16;
/// Bytes the procedure holds per op and per value, at most (reserved from the memory budget).
const BYTES_PER_OP: u64 = 96;
const BYTES_PER_VALUE: u64 = 32;

/// A proven reason why no linearization exists (numbered as in the module docs).
#[derive(Debug)]
enum Violation {
    /// 1: `op` needs `value`, which nothing writes.
    Unwritten { op: u32, value: u32 },
    /// 2: `first` and `second` are successful cas ops from the same value.
    TwoCas { first: u32, second: u32, value: u32 },
    /// 3: `blocked` returned before `earlier`, forced before it in its chain, was invoked.
    Forced { blocked: u32, earlier: u32 },
    /// 4: chains `a` (holding `blocked`, `late_a`) and `b` (holding `late`, `early_b`):
    /// `blocked` returned before `late` was invoked; `early_b` returned before `late_a` was
    /// invoked (`early_b` = `VIRTUAL`: `b` is the initial value's chain, which comes first).
    /// `desc_a`, `desc_b`: the chains' values, in words.
    Blocks { blocked: u32, late: u32, early_b: u32, late_a: u32, desc_a: String, desc_b: String },
}

/// What the procedure concluded: `None` from [`check_key`] means "ask the search".
enum Stop {
    Proof(Violation, Vec<u32>),
    Fallback,
    Unknown(String),
}

/// The key's chains: chain `c` is `seq[start[c]..start[c + 1]]`, in forced order.
struct Chains {
    seq: Vec<u32>,
    start: Vec<usize>,
}

struct Key<'a> {
    ops: &'a [RegOp],
    spans: &'a [Span],
    values: &'a [Option<i64>],
}

impl Key<'_> {
    fn call(&self, o: u32) -> i64 {
        if o == VIRTUAL {
            -1
        } else {
            i64::from(self.spans[o as usize].call)
        }
    }
    fn ret(&self, o: u32) -> i64 {
        if o == VIRTUAL {
            -1
        } else {
            self.spans[o as usize].ret.map_or(i64::MAX, i64::from)
        }
    }
    fn value(&self, id: u32) -> String {
        match self.values.get(id as usize).copied().flatten() {
            Some(v) => v.to_string(),
            None => "nil".into(),
        }
    }
    /// The value an op leaves (for writers) or reads (for reads): its block's value.
    fn written(&self, o: u32) -> Option<u32> {
        match self.ops[o as usize] {
            RegOp::Write(v) | RegOp::Cas(_, v) => Some(v),
            _ => None,
        }
    }
}

/// Decides a register key by the zone procedure, or returns `None` for the search to decide.
pub(crate) fn check_key(k: &KeyHistory, budget: &Budget) -> Option<KeyReport> {
    let started = Instant::now();
    let ModelOps::Register { values, ops } = &k.model else { return None };
    let key = Key { ops, spans: &k.spans, values };
    let bytes = BYTES_PER_OP * ops.len() as u64 + BYTES_PER_VALUE * values.len() as u64;
    let outcome = if let Some(stop) = interrupted(budget) {
        Err(stop)
    } else if budget.try_reserve(bytes) {
        let o = decide(&key, budget);
        budget.release(bytes);
        o
    } else {
        Err(Stop::Unknown(format!(
            "memory limit of {} MiB reached (all keys together) before the zone procedure could start",
            budget.memory_limit_bytes.unwrap_or(0) >> 20
        )))
    };
    let info_ops = k.spans.iter().filter(|s| s.ret.is_none()).count();
    let mut report = KeyReport {
        key: k.key.clone(),
        verdict: Verdict::Valid,
        reason: None,
        ops: k.spans.len(),
        info_ops,
        steps: 0,
        cache_entries: 0,
        max_linearized: 0,
        elapsed_ms: 0.0,
        explanation: None,
        procedure: Procedure::Zones,
    };
    match outcome {
        Ok(witness_len) => {
            report.steps = witness_len as u64;
            report.max_linearized = witness_len;
        }
        Err(Stop::Fallback) => return None,
        Err(Stop::Unknown(why)) => {
            report.verdict = Verdict::Unknown;
            report.reason = Some(why);
        }
        Err(Stop::Proof(v, prefix)) => {
            let (e, why) = explain(&key, k, &v, &prefix);
            let failed = e.ops.get(e.failed_op).map(|op| op.describe()).unwrap_or_default();
            report.verdict = Verdict::Invalid;
            report.reason = Some(format!("cannot linearize #{} {failed}: {why}", e.failed_op));
            report.steps = prefix.len() as u64;
            report.max_linearized = prefix.len();
            report.explanation = Some(e);
        }
    }
    report.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    Some(report)
}

fn interrupted(budget: &Budget) -> Option<Stop> {
    if budget.cancel.load(Ordering::Relaxed) {
        return Some(Stop::Unknown("not finished: stopped because another key is not linearizable".into()));
    }
    if budget.deadline.is_some_and(|d| Instant::now() >= d) {
        return Some(Stop::Unknown("time limit reached during the zone procedure".into()));
    }
    None
}

/// The whole procedure: `Ok(length of the verified witness)` or why it stopped. A first pass
/// leaves out the indeterminate writes nobody reads; if a failed cas cannot then be placed, a
/// second pass places them too, each as a chain of its own (module docs: they never block
/// another op, and can end a value's stretch earlier, as a failed cas may have seen).
fn decide(key: &Key, budget: &Budget) -> Result<usize, Stop> {
    let writer = writers(key)?;
    let (kept, unwritten) = kept_ops(key, &writer)?;
    if let Some(read) = unwritten {
        return Err(unwritten_read(key, &writer, &kept, read, budget));
    }
    let spare = (0..key.ops.len()).any(|o| !kept[o] && matches!(key.ops[o], RegOp::Write(_)));
    for optional in [false, true] {
        if optional && !spare {
            break;
        }
        let chains = build_chains(key, &writer, &kept, optional)?;
        if let Some(s) = interrupted(budget) {
            return Err(s);
        }
        let zone = chains.zones(key);
        // Proofs come from the zone order (module docs); the other orders only serve failed cas.
        let mut witness = witness_by_repairs(key, &chains, &zone, zone_order(&zone), budget)?;
        for priority in WRITE_PRIORITIES {
            if witness.is_some() {
                break;
            }
            if let Some(by) = write_order(key, &chains, &zone, priority) {
                witness = witness_by_repairs(key, &chains, &zone, by, budget)?;
            }
        }
        let Some(witness) = witness else { continue };
        // The only way to "valid": the independent verifier accepts the witness.
        return match crate::witness::verify_register(key.ops, key.spans, &witness) {
            Ok(()) => Ok(witness.len()),
            Err(_) => Err(Stop::Fallback),
        };
    }
    Err(Stop::Fallback)
}

/// The writer of each value id (`NONE` if none); any value written twice (or the initial
/// value written at all) hands the key to the search.
fn writers(key: &Key) -> Result<Vec<u32>, Stop> {
    let mut writer = vec![NONE; key.values.len()];
    for o in 0..key.ops.len() as u32 {
        if let Some(v) = key.written(o) {
            let slot = writer.get_mut(v as usize).ok_or(Stop::Fallback)?;
            if v == 0 || *slot != NONE {
                return Err(Stop::Fallback);
            }
            *slot = o;
        }
    }
    Ok(writer)
}

/// Which ops are placed, and the first read of a value nothing writes: (the read, the value).
type Kept = (Vec<bool>, Option<(u32, u32)>);

/// Which ops every linearization places: completed ops, and the writers (transitively) of the
/// values they read. Proof 1 when a needed value has no writer (for a read: returned beside
/// `kept`, the read left out, to be explained by `unwritten_read`).
fn kept_ops(key: &Key, writer: &[u32]) -> Result<Kept, Stop> {
    let n = key.ops.len();
    // A read of a value nothing writes: (the read, the value); left out of `kept`.
    let mut unwritten = None;
    let mut kept = vec![false; n];
    let mut needed = vec![false; key.values.len()];
    let mut stack: Vec<(u32, u32)> = Vec::new();
    let reads = |op: RegOp| match op {
        RegOp::Read(v) | RegOp::Cas(v, _) => Some(v),
        _ => None,
    };
    for (o, (k, span)) in kept.iter_mut().zip(key.spans).enumerate() {
        if span.ret.is_some() {
            *k = true;
            stack.extend(reads(key.ops[o]).map(|v| (v, o as u32)));
        }
    }
    while let Some((v, by)) = stack.pop() {
        if std::mem::replace(&mut needed[v as usize], true) || v == 0 {
            continue;
        }
        let w = writer[v as usize];
        if w == NONE && matches!(key.ops[by as usize], RegOp::Read(_)) {
            // Proof 1, explained after placing the other ops (see `unwritten_read`).
            kept[by as usize] = false;
            unwritten.get_or_insert((by, v));
            continue;
        }
        if w == NONE {
            return Err(Stop::Proof(Violation::Unwritten { op: by, value: v }, Vec::new()));
        }
        if !kept[w as usize] {
            kept[w as usize] = true;
            stack.extend(reads(key.ops[w as usize]).map(|a| (a, w)));
        }
    }
    Ok((kept, unwritten))
}

/// Proof 1 for a read of a value nothing writes, explained like the search's dead ends: the
/// other ops are placed (zone order) and the prefix placed before the read was invoked is shown.
/// If placing them stops on a proof of its own, that proof is given instead (equally sound).
fn unwritten_read(key: &Key, writer: &[u32], kept: &[bool], (op, value): (u32, u32), budget: &Budget) -> Stop {
    let violation = Violation::Unwritten { op, value };
    let placed = build_chains(key, writer, kept, false).and_then(|chains| {
        let zone = chains.zones(key);
        place(key, &chains, &zone, &zone_order(&zone), budget)
    });
    match placed {
        Ok((order, points)) => {
            let before = points.partition_point(|&p| p < key.call(op));
            Stop::Proof(violation, order[..before].to_vec())
        }
        Err(Stop::Fallback) => Stop::Proof(violation, Vec::new()),
        Err(other) => other,
    }
}

/// The chains, each in forced order (readers of a value in invocation order). Proof 2 for two
/// cas ops from one value; a cycle of cas ops (no chain reaches them) hands over to the search.
fn build_chains(key: &Key, writer: &[u32], kept: &[bool], optional: bool) -> Result<Chains, Stop> {
    let nv = key.values.len();
    let mut next_cas = vec![NONE; nv];
    // Readers of each value, as a linked list in invocation order (ops are in invocation order).
    let (mut first_reader, mut last_reader) = (vec![NONE; nv], vec![NONE; nv]);
    let mut next_reader = vec![NONE; key.ops.len()];
    let mut kept_cas = 0usize;
    for o in 0..key.ops.len() as u32 {
        if !kept[o as usize] {
            continue;
        }
        match key.ops[o as usize] {
            RegOp::Cas(a, _) => {
                kept_cas += 1;
                let prev = std::mem::replace(&mut next_cas[a as usize], o);
                if prev != NONE {
                    return Err(Stop::Proof(Violation::TwoCas { first: prev, second: o, value: a }, Vec::new()));
                }
            }
            RegOp::Read(v) => {
                let v = v as usize;
                match last_reader[v] {
                    NONE => first_reader[v] = o,
                    l => next_reader[l as usize] = o,
                }
                last_reader[v] = o;
            }
            _ => {}
        }
    }
    let heads = std::iter::once((0u32, VIRTUAL)).chain(
        (0..key.ops.len() as u32)
            .filter(|&o| kept[o as usize] || optional)
            .filter(|&o| matches!(key.ops[o as usize], RegOp::Write(_)))
            .filter_map(|o| key.written(o).map(|v| (v, o))),
    );
    let mut chains = Chains { seq: Vec::with_capacity(key.ops.len() + 1), start: Vec::new() };
    let mut linked = 0usize;
    for (head, w) in heads {
        debug_assert!(w == VIRTUAL || writer[head as usize] == w);
        chains.start.push(chains.seq.len());
        chains.seq.push(w);
        let mut v = head;
        loop {
            let mut r = first_reader[v as usize];
            while r != NONE {
                chains.seq.push(r);
                r = next_reader[r as usize];
            }
            let c = next_cas[v as usize];
            if c == NONE || linked == kept_cas {
                break;
            }
            linked += 1;
            chains.seq.push(c);
            v = key.written(c).ok_or(Stop::Fallback)?;
        }
    }
    chains.start.push(chains.seq.len());
    if linked != kept_cas {
        return Err(Stop::Fallback);
    }
    Ok(chains)
}

impl Chains {
    fn ops_of(&self, c: usize) -> &[u32] {
        &self.seq[self.start[c]..self.start[c + 1]]
    }
    fn len(&self) -> usize {
        self.start.len() - 1
    }
    /// `(f, s)` of each chain: its earliest return and latest invocation.
    fn zones(&self, key: &Key) -> Vec<(i64, i64)> {
        (0..self.len())
            .map(|c| {
                let f = self.ops_of(c).iter().map(|&o| key.ret(o)).min().unwrap_or(i64::MAX);
                let s = self.ops_of(c).iter().map(|&o| key.call(o)).max().unwrap_or(-1);
                (f, s)
            })
            .collect()
    }
}

/// The chains in zone order: by the left end of their zone, `min(f, s)`.
fn zone_order(zone: &[(i64, i64)]) -> Vec<usize> {
    let mut by_zone: Vec<usize> = (0..zone.len()).collect();
    by_zone.sort_by_key(|&c| (zone[c].0.min(zone[c].1), c));
    by_zone
}

/// How [`write_order`] picks among the chains free to go next: by their first write's return,
/// midpoint or invocation (the first write's return first: it took effect by then).
const WRITE_PRIORITIES: [fn(i64, i64) -> i64; 3] = [|_, r| r, |c, r| c / 2 + r / 2, |c, _| c];

/// Another order of the chains that every linearization's constraints allow (`A` before `B`
/// whenever `f(A) < s(B)`), taking among the chains free to go next the one whose first write
/// comes first by `priority(call, return)`: closer to the order the writes took effect in,
/// which gives failed cas ops more room. `None` if the constraints are cyclic. O(n log n): a
/// chain `B` is free when `s(B)` is below the smallest `f` of the other chains not yet taken.
fn write_order(key: &Key, chains: &Chains, zone: &[(i64, i64)], priority: fn(i64, i64) -> i64) -> Option<Vec<usize>> {
    let n = zone.len();
    let mut by_f: Vec<usize> = (0..n).collect();
    by_f.sort_by_key(|&c| zone[c].0);
    let mut by_s: Vec<usize> = (0..n).collect();
    by_s.sort_by_key(|&c| zone[c].1);
    let (mut taken, mut pooled) = (vec![false; n], vec![false; n]);
    let mut pool: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let first = |c: usize| {
        let o = chains.ops_of(c)[0];
        priority(key.call(o), key.ret(o))
    };
    let (mut fp, mut fp2, mut sp) = (0usize, 1usize, 0usize);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        while fp < n && taken[by_f[fp]] {
            fp += 1;
        }
        fp2 = fp2.max(fp + 1);
        while fp2 < n && taken[by_f[fp2]] {
            fp2 += 1;
        }
        let m1 = by_f.get(fp).map_or(i64::MAX, |&c| zone[c].0);
        let m2 = by_f.get(fp2).map_or(i64::MAX, |&c| zone[c].0);
        while sp < n && zone[by_s[sp]].1 < m1 {
            let c = by_s[sp];
            if !taken[c] && !std::mem::replace(&mut pooled[c], true) {
                pool.push(Reverse((first(c), c)));
            }
            sp += 1;
        }
        if let Some(&c1) = by_f.get(fp) {
            if zone[c1].1 < m2 && !std::mem::replace(&mut pooled[c1], true) {
                pool.push(Reverse((first(c1), c1)));
            }
        }
        let Reverse((_, c)) = pool.pop()?;
        taken[c] = true;
        out.push(c);
    }
    Some(out)
}

/// Places every chain's ops at their earliest points, chains in the order `by`: the placed
/// order and each op's point (an event position). Proofs 3 and 4 when an op cannot be placed.
fn place(
    key: &Key,
    chains: &Chains,
    zone: &[(i64, i64)],
    by: &[usize],
    budget: &Budget,
) -> Result<(Vec<u32>, Vec<i64>), Stop> {
    let ops_of = |c: usize| chains.ops_of(c);
    let mut order = Vec::with_capacity(chains.seq.len());
    let mut points = Vec::with_capacity(chains.seq.len());
    // The latest invocation among the chains placed so far: (position, op, chain).
    let mut before: (i64, u32, usize) = (-1, VIRTUAL, usize::MAX);
    for &c in by {
        let mut inside: (i64, u32) = (-1, VIRTUAL);
        for &o in ops_of(c) {
            if o == VIRTUAL {
                continue;
            }
            let ret = key.ret(o);
            if before.0 > ret {
                return Err(Stop::Proof(blocks(key, o, before, c, zone, ops_of)?, order));
            }
            if inside.0 > ret {
                return Err(Stop::Proof(Violation::Forced { blocked: o, earlier: inside.1 }, order));
            }
            if key.call(o) > inside.0 {
                inside = (key.call(o), o);
            }
            order.push(o);
            points.push(before.0.max(inside.0));
            if order.len().is_multiple_of(BUDGET_CHECK_EVERY) {
                if let Some(s) = interrupted(budget) {
                    return Err(s);
                }
            }
        }
        if inside.0 > before.0 {
            before = (inside.0, inside.1, c);
        }
    }
    Ok((order, points))
}

/// Proof 4 for `blocked` (in chain `a`), which returned before `late` (chain `b`) was invoked:
/// finds and checks the reverse pair. The module docs show it exists; if the check ever
/// failed, the procedure would not claim anything.
fn blocks<'c>(
    key: &Key,
    blocked: u32,
    (_, late, b): (i64, u32, usize),
    a: usize,
    zone: &[(i64, i64)],
    ops_of: impl Fn(usize) -> &'c [u32],
) -> Result<Violation, Stop> {
    let early_b = *ops_of(b).iter().min_by_key(|&&o| key.ret(o)).ok_or(Stop::Fallback)?;
    let late_a = *ops_of(a).iter().max_by_key(|&&o| key.call(o)).ok_or(Stop::Fallback)?;
    let proven = key.ret(blocked) < key.call(late)
        && key.ret(early_b) == zone[b].0
        && key.call(late_a) == zone[a].1
        && zone[b].0 < zone[a].1;
    if !proven {
        return Err(Stop::Fallback);
    }
    let (desc_a, desc_b) = (chain_desc(key, ops_of(a)), chain_desc(key, ops_of(b)));
    Ok(Violation::Blocks { blocked, late, early_b, late_a, desc_a, desc_b })
}

/// Adds each failed cas (mismatch) to the placed order where the value differs from its
/// `from`; if one cannot be placed there, `Err((it, index in order of the write of its from))`
/// (`None`: the initial value) for each that cannot.
fn add_mismatches(key: &Key, order: &[u32], points: &[i64]) -> Result<Vec<u32>, Vec<(u32, Option<usize>)>> {
    // (index in `order`, value after) of each write, in order.
    let writes: Vec<(usize, u32)> =
        order.iter().enumerate().filter_map(|(i, &o)| key.written(o).map(|v| (i, v))).collect();
    let mut inserts: Vec<(usize, u32)> = Vec::new();
    let mut failed = Vec::new();
    for m in 0..key.ops.len() as u32 {
        let RegOp::CasMismatch(from) = key.ops[m as usize] else { continue };
        let (call, ret) = (key.call(m), key.ret(m));
        let at = points.partition_point(|&p| p < call);
        let w = writes.partition_point(|&(i, _)| i < at);
        let value = if w == 0 { 0 } else { writes[w - 1].1 };
        if value != from {
            inserts.push((at, m));
        } else if let Some(&(i, _)) = writes.get(w).filter(|&&(i, _)| points[i] < ret) {
            inserts.push((i + 1, m));
        } else {
            failed.push((m, w.checked_sub(1).map(|x| writes[x].0)));
        }
    }
    if !failed.is_empty() {
        return Err(failed);
    }
    if inserts.is_empty() {
        return Ok(order.to_vec());
    }
    inserts.sort_unstable();
    let mut witness = Vec::with_capacity(order.len() + inserts.len());
    let mut next = inserts.iter().peekable();
    for (i, &o) in order.iter().enumerate() {
        while let Some(&&(_, m)) = next.peek().filter(|&&&(at, _)| at == i) {
            witness.push(m);
            next.next();
        }
        witness.push(o);
    }
    witness.extend(next.map(|&(_, m)| m));
    Ok(witness)
}

/// Rounds of repairs of the chain order per pass before the key is handed over.
const REPAIR_ROUNDS_MAX: usize = 32;
/// How many chains before and after a value's chain a repair looks at.
const REPAIR_WINDOW: usize = 64;

/// Places the chains in the order `by` and adds the failed cas ops; for each that cannot be
/// placed (its `from` holds over its whole interval), moves a nearby chain to just after the
/// chain of `from` (see [`repair`]), latest first, and tries again. `None`: no witness found
/// this way. Each round is O(n log n); a repair moves at most `REPAIR_WINDOW` entries.
fn witness_by_repairs(
    key: &Key,
    chains: &Chains,
    zone: &[(i64, i64)],
    mut by: Vec<usize>,
    budget: &Budget,
) -> Result<Option<Vec<u32>>, Stop> {
    for _ in 0..REPAIR_ROUNDS_MAX {
        let (order, points) = place(key, chains, zone, &by, budget)?;
        let mut failed = match add_mismatches(key, &order, &points) {
            Ok(w) => return Ok(Some(w)),
            Err(failed) => failed,
        };
        // Where each chain of `by` ends in the placed order.
        let ends: Vec<usize> = by
            .iter()
            .scan(0, |end, &c| {
                *end += chains.ops_of(c).iter().filter(|&&o| o != VIRTUAL).count();
                Some(*end)
            })
            .collect();
        failed.sort_unstable_by_key(|&(_, iw)| std::cmp::Reverse(iw));
        let mut repaired = false;
        for (m, iw) in failed {
            let Some(iw) = iw else { return Ok(None) };
            repaired |= repair(key, chains, zone, &mut by, (&order, &points, &ends), m, iw);
        }
        if !repaired {
            return Ok(None);
        }
        if let Some(s) = interrupted(budget) {
            return Err(s);
        }
    }
    Ok(None)
}

/// Moves one chain `X` to just after the chain `A` holding the write at `iw` (placed order
/// index), so that `X`'s first write ends `A`'s last value before the failed cas `m` returns.
/// Keeps the order one that the constraints allow: `X` moves back over chains `Y` only if
/// `f(Y) > s(X)`, forward only if `f(X) > s(Y)`. `false` if no chain in the window fits.
fn repair(
    key: &Key,
    chains: &Chains,
    zone: &[(i64, i64)],
    by: &mut [usize],
    (order, points, ends): (&[u32], &[i64], &[usize]),
    m: u32,
    iw: usize,
) -> bool {
    // The position of A in `by` (as placed; earlier repairs of this round moved only chains
    // after it or near it, and every move below is checked on the current `by`), and the end
    // of its ops in the placed order.
    let pa = ends.partition_point(|&e| e <= iw);
    let Some(&end) = ends.get(pa) else { return false };
    // The write at `iw` must be A's last: a cas after it in A is forced and cannot be helped.
    if order[iw + 1..end.min(order.len())].iter().any(|&o| key.written(o).is_some()) {
        return false;
    }
    let ret = key.ret(m);
    let t = end.checked_sub(1).map_or(-1, |i| points[i]);
    if t >= ret {
        return false;
    }
    let head_call = |c: usize| key.call(chains.ops_of(c)[0]);
    let mut min_f = i64::MAX;
    for q in pa + 1..(pa + 1 + REPAIR_WINDOW).min(by.len()) {
        let x = by[q];
        if q > pa + 1 && min_f > zone[x].1 && head_call(x) < ret && chains.ops_of(x)[0] != VIRTUAL {
            by[pa + 1..=q].rotate_right(1);
            return true;
        }
        min_f = min_f.min(zone[x].0);
    }
    let mut max_s = i64::MIN;
    for q in (pa.saturating_sub(REPAIR_WINDOW)..=pa).rev() {
        let x = by[q];
        if q < pa && zone[x].0 > max_s && head_call(x) < ret && chains.ops_of(x)[0] != VIRTUAL {
            by[q..=pa].rotate_left(1);
            return true;
        }
        max_s = max_s.max(zone[x].1);
    }
    false
}

/// The explanation of a proven violation: the placed prefix, the op that cannot be placed,
/// and the ops that prove it (as candidates, each with its part of the proof); and a one-line
/// reason.
fn explain(key: &Key, k: &KeyHistory, v: &Violation, prefix: &[u32]) -> (Explanation, String) {
    let (failed, why, candidates) = proof_text(key, k, v);
    let mut state = 0u32;
    let steps = prefix
        .iter()
        .map(|&o| {
            state = key.written(o).unwrap_or(state);
            LinStep { op: o as usize, state_after: key.value(state) }
        })
        .collect();
    let partial =
        PartialLinearization { steps, blocked_op: failed as usize, final_state: key.value(state), candidates };
    let e = Explanation { key: k.key.clone(), ops: k.ops.clone(), failed_op: failed as usize, longest: vec![partial] };
    (e, why)
}

/// A violation in words: the op that cannot be placed, why (one line), and the ops that prove
/// it with their part of the proof.
fn proof_text(key: &Key, k: &KeyHistory, v: &Violation) -> (u32, String, Vec<Candidate>) {
    let ev = |o: u32, ret: bool| {
        let r = &k.ops[o as usize];
        match (ret, r.return_index) {
            (true, Some(i)) => format!("event {i}"),
            (true, None) => "never".into(),
            (false, _) => format!("event {}", r.call_index),
        }
    };
    match *v {
        Violation::Unwritten { op, value } => (
            op,
            format!(
                "it needs the value {}, which no operation writes and the register does not start with",
                key.value(value)
            ),
            Vec::new(),
        ),
        Violation::TwoCas { first, second, value } => {
            let why = format!(
                "#{first} and #{second} are both successful cas from {v}; {v} is written once, so only one of them can find it",
                v = key.value(value)
            );
            (second, why.clone(), vec![Candidate { op: first as usize, why }])
        }
        Violation::Forced { blocked, earlier } => {
            let rel = forced_relation(key, blocked, earlier);
            let why = format!(
                "#{earlier} must take effect before it ({rel}), but was invoked ({}) after it returned ({})",
                ev(earlier, false),
                ev(blocked, true)
            );
            (blocked, why.clone(), vec![Candidate { op: earlier as usize, why }])
        }
        Violation::Blocks { blocked, late, early_b, late_a, ref desc_a, ref desc_b } => {
            let (va, vb) = (desc_a, desc_b);
            let first = format!(
                "it returned ({}) before #{late} was invoked ({}), so the block of {va} comes before the block of {vb}",
                ev(blocked, true),
                ev(late, false)
            );
            let second = if early_b == VIRTUAL {
                format!("but the block of {vb} holds the initial value and comes first")
            } else {
                format!(
                    "but #{early_b} returned ({}) before #{late_a} was invoked ({}), so the block of {vb} comes before the block of {va}",
                    ev(early_b, true),
                    ev(late_a, false)
                )
            };
            let why = format!(
                "{first}; {second} (each value is written once, so its write and reads are one block of any linearization: Gibbons & Korach 1997)"
            );
            let mut c = vec![Candidate { op: late as usize, why: first }];
            if early_b != VIRTUAL {
                c.push(Candidate { op: early_b as usize, why: second });
            }
            (blocked, why, c)
        }
    }
}

/// Why `earlier` is forced before `blocked` in their chain, in words.
fn forced_relation(key: &Key, blocked: u32, earlier: u32) -> String {
    let reads = |o: u32| match key.ops[o as usize] {
        RegOp::Read(v) | RegOp::Cas(v, _) => Some(v),
        _ => None,
    };
    match (reads(blocked), key.written(earlier), reads(earlier), key.written(blocked)) {
        (Some(v), Some(w), _, _) if v == w => {
            format!("it writes {}, which #{blocked} reads and no other operation writes", key.value(v))
        }
        (_, _, Some(v), Some(_)) if reads(blocked) == Some(v) => format!(
            "it reads {}, which #{blocked} overwrites with a cas, and no operation writes {} again",
            key.value(v),
            key.value(v)
        ),
        _ => "successful cas ops link their values in this order, and each value is written once".into(),
    }
}

/// How many values of a chain its description names.
const CHAIN_VALUES_SHOWN_MAX: usize = 4;

/// The values a chain writes, in words: "value 3", or "values 3, 4, 5 (linked by successful cas)".
fn chain_desc(key: &Key, ops: &[u32]) -> String {
    let written = ops.iter().filter_map(|&o| if o == VIRTUAL { Some(0) } else { key.written(o) });
    let all: Vec<u32> = written.collect();
    let mut shown: Vec<String> = all.iter().take(CHAIN_VALUES_SHOWN_MAX).map(|&v| key.value(v)).collect();
    if all.len() > CHAIN_VALUES_SHOWN_MAX {
        shown.push(format!("… ({} values)", all.len()));
    }
    match all.len() {
        1 => format!("value {}", shown.join("")),
        _ => format!("values {} (linked by successful cas)", shown.join(", ")),
    }
}
