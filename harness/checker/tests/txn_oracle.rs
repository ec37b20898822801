//! The transactional checker against a brute-force oracle on thousands of small random
//! histories made by simulated databases: strict serializable, serializable in a random order
//! (real time ignored), snapshot isolation (first committer wins), read committed, read
//! uncommitted with aborts, each with indeterminate transactions, and with planted anomalies
//! (garbage, duplicated, dropped and truncated read elements).
//!
//! The oracle searches every order of the committed transactions (indeterminate ones in or
//! out) for one that explains every read (serializable), one that also respects each process's
//! order (strong session serializable), and one that respects real time (strict
//! serializable). Each history ends with a read of every key, so every append that took effect
//! is read: for list-append the checker's three verdicts must then equal the oracle's. For rw-register the checker infers less, so only soundness is
//! required: when it rules a model out, the oracle must agree.

use std::collections::HashSet;

use faultline_checker::history::{Event, EventType, Process};
use faultline_checker::txn::{check, ConsistencyModel, TxnModel, TxnOptions};
use faultline_checker::Verdict;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Level {
    Strict,
    Shuffled,
    Snapshot,
    ReadCommitted,
    Dirty,
}

#[derive(Clone, Debug)]
enum Op {
    W(usize, i64),
    R(usize, Option<Vec<i64>>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum St {
    Ok,
    Info,
    Fail,
}

/// One transaction as the oracle sees it: times are event positions.
#[derive(Clone, Debug)]
struct Rec {
    process: u64,
    ops: Vec<Op>,
    status: St,
    invoke: usize,
    complete: Option<usize>,
}

type State = Vec<Vec<i64>>;

fn read_of(state: &State, k: usize, list: bool) -> Vec<i64> {
    if list {
        state[k].clone()
    } else {
        state[k].last().map(|v| vec![*v]).unwrap_or_default()
    }
}

/// Runs `ops` on `state` (its own writes visible), filling in reads; returns the writes.
fn run(ops: &mut [Op], state: &mut State, list: bool) {
    for op in ops.iter_mut() {
        match op {
            Op::W(k, v) => state[*k].push(*v),
            Op::R(k, r) => *r = Some(read_of(state, *k, list)),
        }
    }
}

struct Gen {
    rng: ChaCha8Rng,
    keys: usize,
    next_value: i64,
}

impl Gen {
    fn body(&mut self) -> Vec<Op> {
        let n = self.rng.random_range(1..=3);
        (0..n)
            .map(|_| {
                let k = self.rng.random_range(0..self.keys);
                if self.rng.random_bool(0.5) {
                    self.next_value += 1;
                    Op::W(k, self.next_value)
                } else {
                    Op::R(k, None)
                }
            })
            .collect()
    }
}

struct Open {
    rec: usize,
    step: usize,
    snapshot: State,
    start_commits: Vec<usize>,
    buffer: State,
    applied: bool,
}

/// A step-by-step simulation of `level` (all but `Shuffled`): the records in invocation order
/// and the final state.
fn simulate(g: &mut Gen, level: Level, n: usize, procs: u64, list: bool) -> (Vec<Rec>, State) {
    let mut recs: Vec<Rec> = Vec::new();
    let mut state: State = vec![Vec::new(); g.keys];
    let mut commits = vec![0usize; g.keys];
    let mut open: Vec<Option<Open>> = (0..procs).map(|_| None).collect();
    // Read committed holds write locks from its first step to its end (no dirty writes).
    let mut locks: Vec<Option<usize>> = vec![None; g.keys];
    let mut clock = 0;
    while recs.len() < n || open.iter().any(Option::is_some) {
        let p = g.rng.random_range(0..procs as usize);
        let Some(o) = open[p].as_mut() else {
            if recs.len() < n {
                recs.push(Rec { process: p as u64, ops: g.body(), status: St::Ok, invoke: clock, complete: None });
                clock += 1;
                let keys = g.keys;
                open[p] = Some(Open {
                    rec: recs.len() - 1,
                    step: 0,
                    snapshot: state.clone(),
                    start_commits: commits.clone(),
                    buffer: vec![Vec::new(); keys],
                    applied: false,
                });
            }
            continue;
        };
        let rec = &mut recs[o.rec];
        if level == Level::ReadCommitted && o.step == 0 {
            let written: Vec<usize> =
                rec.ops.iter().filter_map(|op| if let Op::W(k, _) = op { Some(*k) } else { None }).collect();
            if written.iter().any(|k| locks[*k].is_some_and(|holder| holder != p)) {
                continue;
            }
            for k in written {
                locks[k] = Some(p);
            }
        }
        if o.step < rec.ops.len() {
            step(level, o, rec, &mut state, list);
            continue;
        }
        finish(g, level, o, rec, &mut state, &mut commits, list);
        for l in locks.iter_mut().filter(|l| **l == Some(p)) {
            *l = None;
        }
        rec.complete = Some(clock);
        clock += 1;
        open[p] = None;
    }
    (recs, state)
}

fn step(level: Level, o: &mut Open, rec: &mut Rec, state: &mut State, list: bool) {
    match level {
        Level::Strict => {
            run(&mut rec.ops, state, list);
            o.step = rec.ops.len();
            o.applied = true;
        }
        Level::Dirty => {
            run(&mut rec.ops[o.step..o.step + 1], state, list);
            o.step += 1;
        }
        Level::Snapshot | Level::ReadCommitted => {
            let base = if level == Level::Snapshot { &o.snapshot } else { &*state };
            let mut view: State =
                base.iter().zip(&o.buffer).map(|(b, mine)| b.iter().chain(mine).copied().collect()).collect();
            let before: Vec<usize> = view.iter().map(Vec::len).collect();
            run(&mut rec.ops[o.step..o.step + 1], &mut view, list);
            for (k, l) in view.into_iter().enumerate() {
                o.buffer[k].extend_from_slice(&l[before[k]..]);
            }
            o.step += 1;
        }
        Level::Shuffled => unreachable!("shuffled histories are not stepped"),
    }
}

fn finish(
    g: &mut Gen,
    level: Level,
    o: &mut Open,
    rec: &mut Rec,
    state: &mut State,
    commits: &mut [usize],
    list: bool,
) {
    let outcome = g.rng.random_range(0..10);
    match level {
        Level::Strict => {
            rec.status = if outcome == 0 { St::Info } else { St::Ok };
        }
        Level::Dirty => {
            if outcome < 2 {
                // Abort: take back the appends (a register keeps the dirty value).
                let mine: Vec<i64> =
                    rec.ops.iter().filter_map(|op| if let Op::W(_, v) = op { Some(*v) } else { None }).collect();
                if list {
                    for l in state.iter_mut() {
                        l.retain(|v| !mine.contains(v));
                    }
                }
                rec.status = St::Fail;
            }
        }
        _ => {
            let conflict = level == Level::Snapshot
                && (0..g.keys).any(|k| !o.buffer[k].is_empty() && commits[k] != o.start_commits[k]);
            if conflict || outcome == 0 {
                rec.status = St::Fail;
                return;
            }
            for (k, mine) in o.buffer.iter().enumerate() {
                if !mine.is_empty() {
                    state[k].extend_from_slice(mine);
                    commits[k] += 1;
                }
            }
            rec.status = if outcome == 1 { St::Info } else { St::Ok };
        }
    }
}

/// Serializable but not strict: a serial execution in random order, with invocations and
/// completions interleaved at random (each process sequential).
fn shuffled(g: &mut Gen, n: usize, procs: u64, list: bool) -> (Vec<Rec>, State) {
    let mut recs: Vec<Rec> = (0..n)
        .map(|i| Rec { process: i as u64 % procs, ops: g.body(), status: St::Ok, invoke: 0, complete: None })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, g.rng.random_range(0..=i));
    }
    let mut state: State = vec![Vec::new(); g.keys];
    for &i in &order {
        match g.rng.random_range(0..10) {
            0 => recs[i].status = St::Info,
            1 => {
                recs[i].status = St::Info;
                continue;
            }
            _ => {}
        }
        run(&mut recs[i].ops, &mut state, list);
    }
    let mut queues: Vec<Vec<usize>> =
        (0..procs).map(|p| (0..n).filter(|i| recs[*i].process == p).rev().collect()).collect();
    let mut opened: Vec<Option<usize>> = vec![None; procs as usize];
    let mut clock = 0;
    while queues.iter().any(|q| !q.is_empty()) || opened.iter().any(Option::is_some) {
        let p = g.rng.random_range(0..procs as usize);
        if let Some(i) = opened[p].take() {
            recs[i].complete = Some(clock);
        } else if let Some(i) = queues[p].pop() {
            recs[i].invoke = clock;
            opened[p] = Some(i);
        } else {
            continue;
        }
        clock += 1;
    }
    recs.sort_by_key(|r| r.invoke);
    (recs, state)
}

/// A random history of `level`, ending with a read of every key on the final state.
fn history(g: &mut Gen, level: Level, list: bool) -> Vec<Rec> {
    let n = g.rng.random_range(2..=7);
    let procs = g.rng.random_range(2..=4);
    let (mut recs, state) = match level {
        Level::Shuffled => shuffled(g, n, procs, list),
        _ => simulate(g, level, n, procs, list),
    };
    let end = recs.iter().filter_map(|r| r.complete).max().unwrap_or(0) + 1;
    let ops = (0..g.keys).map(|k| Op::R(k, Some(read_of(&state, k, list)))).collect();
    recs.push(Rec { process: procs, ops, status: St::Ok, invoke: end, complete: Some(end + 1) });
    recs
}

/// Plants one anomaly in a committed read: a value nobody wrote, a duplicated element, a
/// dropped element, or a read cut short.
fn plant(g: &mut Gen, recs: &mut [Rec]) {
    let reads: Vec<(usize, usize)> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == St::Ok)
        .flat_map(|(i, r)| r.ops.iter().enumerate().filter(|(_, o)| matches!(o, Op::R(..))).map(move |(j, _)| (i, j)))
        .collect();
    if reads.is_empty() {
        return;
    }
    let (i, j) = reads[g.rng.random_range(0..reads.len())];
    let how = g.rng.random_range(0..4);
    if let Op::R(_, Some(l)) = &mut recs[i].ops[j] {
        match how {
            0 => l.push(1_000_000),
            1 if !l.is_empty() => l.push(l[0]),
            2 if !l.is_empty() => {
                let at = g.rng.random_range(0..l.len());
                l.remove(at);
            }
            _ if !l.is_empty() => {
                l.pop();
            }
            _ => l.push(1_000_001),
        }
    }
}

fn events(recs: &[Rec], list: bool) -> Vec<Event> {
    let mut at: Vec<(usize, usize, bool)> = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        at.push((r.invoke, i, false));
        if let Some(c) = r.complete {
            at.push((c, i, true));
        }
    }
    at.sort_unstable();
    let w = if list { "append" } else { "w" };
    at.iter()
        .enumerate()
        .map(|(index, &(_, i, done))| {
            let r = &recs[i];
            let value: Vec<Value> = r
                .ops
                .iter()
                .map(|op| match op {
                    Op::W(k, v) => json!([w, k, v]),
                    Op::R(k, Some(l)) if done && r.status == St::Ok && list => json!(["r", k, l]),
                    Op::R(k, Some(l)) if done && r.status == St::Ok => json!(["r", k, l.first()]),
                    Op::R(k, _) => json!(["r", k, null]),
                })
                .collect();
            let kind = match (done, r.status) {
                (false, _) => EventType::Invoke,
                (true, St::Ok) => EventType::Ok,
                (true, St::Info) => EventType::Info,
                (true, St::Fail) => EventType::Fail,
            };
            Event {
                index: index as u64,
                time: index as u64,
                kind,
                process: Process::Client(r.process),
                f: "txn".into(),
                key: None,
                value: json!(value),
                error: None,
                node: None,
            }
        })
        .collect()
}

/// Which precedence a serial order must respect besides the reads.
#[derive(Clone, Copy, PartialEq)]
enum Respect {
    Nothing,
    /// Each process's order (strong session serializable).
    Process,
    /// Real time (strict serializable).
    RealTime,
}

/// Is there an order of the committed transactions (indeterminate ones in or out) that
/// explains every committed read and respects `respect`?
fn oracle(recs: &[Rec], keys: usize, list: bool, respect: Respect) -> bool {
    let mut dead: HashSet<(u32, State)> = HashSet::new();
    search(recs, list, respect, 0, &vec![Vec::new(); keys], &mut dead)
}

fn search(
    recs: &[Rec],
    list: bool,
    respect: Respect,
    placed: u32,
    state: &State,
    dead: &mut HashSet<(u32, State)>,
) -> bool {
    let all_ok = recs.iter().enumerate().all(|(i, r)| r.status != St::Ok || placed & (1 << i) != 0);
    if all_ok {
        return true;
    }
    if dead.contains(&(placed, state.clone())) {
        return false;
    }
    for (i, r) in recs.iter().enumerate() {
        if r.status == St::Fail || placed & (1 << i) != 0 {
            continue;
        }
        // Every committed transaction completed before this one began (on the same process,
        // for process order) goes first.
        let blocked = respect != Respect::Nothing
            && recs.iter().enumerate().any(|(j, q)| {
                q.status == St::Ok
                    && placed & (1 << j) == 0
                    && q.complete.is_some_and(|c| c < r.invoke)
                    && (respect == Respect::RealTime || q.process == r.process)
            });
        if blocked {
            continue;
        }
        let mut next = state.clone();
        let mut fits = true;
        for op in &r.ops {
            match op {
                Op::W(k, v) => next[*k].push(*v),
                Op::R(k, Some(seen)) if r.status == St::Ok => fits &= *seen == read_of(&next, *k, list),
                Op::R(..) => {}
            }
        }
        if fits && search(recs, list, respect, placed | (1 << i), &next, dead) {
            return true;
        }
    }
    dead.insert((placed, state.clone()));
    false
}

fn verdict_ok(recs: &[Rec], model: TxnModel, m: ConsistencyModel, list: bool) -> bool {
    let r = check(&events(recs, list), model, m, &TxnOptions::default());
    assert_ne!(r.verdict, Verdict::Unknown, "{}", r.to_text());
    r.verdict == Verdict::Valid
}

const LEVELS: [Level; 5] = [Level::Strict, Level::Shuffled, Level::Snapshot, Level::ReadCommitted, Level::Dirty];

/// Runs `cases` histories per level (half with a planted anomaly); returns per level how
/// many the oracle found serializable, strict serializable, and how many cases ran.
fn run_cases(list: bool, cases: usize, seed: u64) -> Vec<(Level, usize, usize, usize)> {
    let model = if list { TxnModel::ListAppend } else { TxnModel::RwRegister };
    let mut tally = Vec::new();
    for (li, level) in LEVELS.into_iter().enumerate() {
        let mut g = Gen { rng: ChaCha8Rng::seed_from_u64(seed + li as u64), keys: 2, next_value: 0 };
        let (mut ser, mut strict, mut caught) = (0, 0, 0);
        for case in 0..cases {
            g.keys = g.rng.random_range(1..=3);
            let mut recs = history(&mut g, level, list);
            if case % 2 == 1 {
                plant(&mut g, &mut recs);
            }
            let want_ser = oracle(&recs, g.keys, list, Respect::Nothing);
            let want_session = oracle(&recs, g.keys, list, Respect::Process);
            let want_strict = oracle(&recs, g.keys, list, Respect::RealTime);
            let got_ser = verdict_ok(&recs, model, ConsistencyModel::Serializable, list);
            let got_session = verdict_ok(&recs, model, ConsistencyModel::StrongSessionSerializable, list);
            let got_strict = verdict_ok(&recs, model, ConsistencyModel::StrictSerializable, list);
            let shown = || serde_json::to_string(&events(&recs, list)).unwrap_or_default();
            if list {
                assert_eq!(
                    got_session,
                    want_session,
                    "strong session serializable, {level:?} case {case}: {}",
                    shown()
                );
                assert_eq!(got_ser, want_ser, "serializable, {level:?} case {case}: {}", shown());
                assert_eq!(got_strict, want_strict, "strict serializable, {level:?} case {case}: {}", shown());
            } else {
                assert!(got_session || !want_session, "unsound session verdict, {level:?} case {case}: {}", shown());
                assert!(got_ser || !want_ser, "unsound serializable verdict, {level:?} case {case}: {}", shown());
                assert!(got_strict || !want_strict, "unsound strict verdict, {level:?} case {case}: {}", shown());
            }
            ser += want_ser as usize;
            strict += want_strict as usize;
            caught += !got_ser as usize;
        }
        if !list {
            eprintln!(
                "rw-register {level:?}: {} of {cases} not serializable, the checker ruled out {caught}",
                cases - ser
            );
        }
        tally.push((level, ser, strict, cases));
    }
    tally
}

#[test]
fn list_append_verdicts_equal_the_oracle() {
    let tally = run_cases(true, 2000, 1);
    eprintln!("list-append (level, serializable, strict, cases): {tally:?}");
    // Both outcomes occur at every level that can produce both, so the comparison has teeth.
    for (level, ser, strict, n) in &tally {
        assert!(*ser > 0 && *strict < *n, "{level:?}: {tally:?}");
    }
    let (_, ser, strict, n) = tally[1];
    assert!(strict < ser && ser < n, "shuffled histories: some serializable, not all strict: {tally:?}");
}

#[test]
fn rw_register_verdicts_are_sound() {
    let tally = run_cases(false, 1000, 100);
    eprintln!("rw-register (level, serializable, strict, cases): {tally:?}");
    assert!(tally.iter().any(|(_, ser, _, n)| ser < n), "{tally:?}");
}

/// Histories of a level are never judged below it (snapshot isolation keeps
/// snapshot-isolation, read committed keeps read-committed), and each level shows the
/// anomalies it is known for: write skew (G2-item) under snapshot isolation, read skew
/// (G-single) or lost updates under read committed, aborted or intermediate reads (G1a, G1b)
/// with dirty reads.
#[test]
fn each_level_keeps_its_model_and_shows_its_anomalies() {
    let expect: [(Level, ConsistencyModel, &[&str]); 3] = [
        (Level::Snapshot, ConsistencyModel::SnapshotIsolation, &["G2-item"]),
        (Level::ReadCommitted, ConsistencyModel::ReadCommitted, &["G-single", "lost-update"]),
        (Level::Dirty, ConsistencyModel::ReadUncommitted, &["G1a", "G1b"]),
    ];
    for (list, model) in [(true, TxnModel::ListAppend), (false, TxnModel::RwRegister)] {
        for (li, (level, keeps, shows)) in expect.iter().enumerate() {
            let mut g = Gen { rng: ChaCha8Rng::seed_from_u64(500 + li as u64), keys: 2, next_value: 0 };
            let mut seen: HashSet<String> = HashSet::new();
            for case in 0..1500 {
                g.keys = g.rng.random_range(1..=3);
                let recs = history(&mut g, *level, list);
                let r = check(&events(&recs, list), model, *keeps, &TxnOptions::default());
                let kept = r.verdict == Verdict::Valid || *level == Level::Dirty;
                assert!(kept, "{level:?} case {case} judged below {keeps}: {}", r.to_text());
                seen.extend(r.anomaly_counts.keys().cloned());
            }
            assert!(shows.iter().any(|s| seen.contains(*s)), "{model:?} {level:?}: none of {shows:?} in {seen:?}");
        }
    }
}

/// A random JSON value of small depth: what a corrupted history might hold.
fn junk(rng: &mut ChaCha8Rng, depth: u32) -> Value {
    match rng.random_range(0..if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random_range(-3i64..4)),
        2 => json!(i64::MAX),
        3 => json!(1.5),
        4 => json!(["append", "r", "w", "x"][rng.random_range(0..4)]),
        5 => json!(true),
        _ => Value::Array((0..rng.random_range(0..4)).map(|_| junk(rng, depth - 1)).collect()),
    }
}

/// Corrupted histories (a micro-op, a value or a whole transaction replaced by random JSON,
/// completions dropped or swapped) give a report or an input error, never a panic.
#[test]
fn corrupted_histories_never_panic() {
    let mut g = Gen { rng: ChaCha8Rng::seed_from_u64(900), keys: 2, next_value: 0 };
    let mut errors = 0;
    for case in 0..3000 {
        let list = case % 2 == 0;
        let recs = history(&mut g, LEVELS[case % LEVELS.len()], list);
        let mut ev = events(&recs, list);
        for _ in 0..g.rng.random_range(1..4) {
            let i = g.rng.random_range(0..ev.len());
            match g.rng.random_range(0..4) {
                0 => ev[i].value = junk(&mut g.rng, 3),
                1 => {
                    if let Some(ops) = ev[i].value.as_array_mut().filter(|o| !o.is_empty()) {
                        let j = g.rng.random_range(0..ops.len());
                        ops[j] = junk(&mut g.rng, 2);
                    }
                }
                2 => {
                    ev.remove(i);
                }
                _ => {
                    let j = g.rng.random_range(0..ev.len());
                    ev.swap(i, j);
                }
            }
        }
        let model = if list { TxnModel::ListAppend } else { TxnModel::RwRegister };
        for m in [ConsistencyModel::ReadCommitted, ConsistencyModel::StrictSerializable] {
            let r = check(&ev, model, m, &TxnOptions::default());
            errors += r.reason.as_deref().is_some_and(|s| s.starts_with("malformed")) as usize;
        }
    }
    assert!(errors > 0, "some corruptions must be input errors");
}
