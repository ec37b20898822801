//! Benchmark of the transactional checker (docs/benchmarks.md, "Transactional checker").
//!
//! Generates a list-append history the way Elle's generator does (transactions of 1–4
//! micro-ops, appends and reads in equal measure, over a pool of 10 active keys; a key
//! retires after 32 appends and a fresh one takes its place; values unique per key), run by 30
//! processes against a simulated database, then checks it and prints the timings.
//!
//! ```text
//! txn_bench [TXNS] [SEED] [MODE] [CONSISTENCY-MODEL] [OUT.jsonl]
//! ```
//! MODE `strict` (default): each transaction applies atomically at one instant between its
//! invocation and completion (a strict serializable database: the verdict must be valid).
//! MODE `stale`: reads see a snapshot up to 200 transactions old (plus their own appends)
//! while appends go to the latest state, so anti-dependencies point back in time all through
//! the history: one huge strongly connected component (lost updates, G-single).
//! MODE `snapshot`: the same snapshots, but a transaction aborts when another appended to one
//! of its keys since its snapshot (first committer wins): snapshot isolation, whose only
//! cycles are G2-item (write skew), again in one huge component. OUT.jsonl, if given, receives
//! the history (for `faultline check --model list-append`).

use std::time::Instant;

use faultline_checker::history::{Event, EventType, Process};
use faultline_checker::txn::{check, ConsistencyModel, TxnModel, TxnOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

const PROCESSES: usize = 30;
const ACTIVE_KEYS: usize = 10;
const WRITES_PER_KEY: u64 = 32;
const STALE_LAG_MAX: u64 = 200;

/// A transaction's micro-ops before they run: (is an append, key, value).
type Body = Vec<(bool, usize, u64)>;

/// A process's open transaction: its body and, once it ran, its completion.
type Open = Option<(Body, Option<(EventType, Value)>)>;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Strict,
    Stale,
    Snapshot,
}

struct Db {
    rng: ChaCha8Rng,
    mode: Mode,
    /// Every key's list, and per committed transaction (its sequence number, a key it
    /// appended to, that key's length before): an old snapshot of a key is a prefix.
    lists: Vec<Vec<u64>>,
    log: Vec<(u64, usize, usize)>,
    committed: u64,
    active: Vec<usize>,
    appends: Vec<u64>,
}

impl Db {
    fn body(&mut self) -> Body {
        let n = self.rng.random_range(1..=4);
        (0..n)
            .map(|_| {
                let slot = self.rng.random_range(0..ACTIVE_KEYS);
                let k = self.active[slot];
                if !self.rng.random_bool(0.5) {
                    return (false, k, 0);
                }
                self.appends[k] += 1;
                let v = self.appends[k];
                if v == WRITES_PER_KEY {
                    self.active[slot] = self.lists.len();
                    self.lists.push(Vec::new());
                    self.appends.push(0);
                }
                (true, k, v)
            })
            .collect()
    }

    /// The length of `k` before the last `lag` committed transactions, and whether any of
    /// them appended to it.
    fn old_len(&self, k: usize, lag: u64) -> (usize, bool) {
        let cutoff = self.committed.saturating_sub(lag);
        let mut len = self.lists[k].len();
        let mut changed = false;
        for &(seq, key, before) in self.log.iter().rev().take_while(|e| e.0 > cutoff) {
            if key == k && seq > cutoff {
                len = before;
                changed = true;
            }
        }
        (len, changed)
    }

    /// Runs a transaction at one instant: reads from a snapshot `lag` transactions old (the
    /// latest state when strict) plus its own appends; snapshot isolation aborts it when
    /// another transaction appended to one of its keys since the snapshot. `None` = aborted.
    fn apply(&mut self, body: &[(bool, usize, u64)]) -> Option<Value> {
        let lag = if self.mode == Mode::Strict { 0 } else { self.rng.random_range(0..=STALE_LAG_MAX) };
        let mut mine: Vec<(usize, u64)> = Vec::new();
        let mut ops: Vec<Value> = Vec::new();
        for &(append, k, v) in body {
            if append {
                mine.push((k, v));
                ops.push(json!(["append", k, v]));
                continue;
            }
            let (n, _) = self.old_len(k, lag);
            let mut seen = self.lists[k][..n].to_vec();
            seen.extend(mine.iter().filter(|m| m.0 == k).map(|m| m.1));
            ops.push(json!(["r", k, seen]));
        }
        if self.mode == Mode::Snapshot && mine.iter().any(|&(k, _)| self.old_len(k, lag).1) {
            return None;
        }
        self.committed += 1;
        for &(k, v) in &mine {
            if !self.log.iter().rev().take_while(|e| e.0 == self.committed).any(|e| e.1 == k) {
                self.log.push((self.committed, k, self.lists[k].len()));
            }
            self.lists[k].push(v);
        }
        Some(Value::Array(ops))
    }
}

fn event(index: usize, kind: EventType, p: usize, value: Value) -> Event {
    Event {
        index: index as u64,
        time: index as u64,
        kind,
        process: Process::Client(p as u64),
        f: "txn".into(),
        key: None,
        value,
        error: None,
        node: None,
    }
}

fn invocation(body: &[(bool, usize, u64)]) -> Value {
    Value::Array(
        body.iter().map(|&(a, k, v)| if a { json!(["append", k, v]) } else { json!(["r", k, null]) }).collect(),
    )
}

fn generate(n: usize, seed: u64, mode: Mode) -> Vec<Event> {
    let mut db = Db {
        rng: ChaCha8Rng::seed_from_u64(seed),
        mode,
        lists: vec![Vec::new(); ACTIVE_KEYS],
        log: Vec::new(),
        committed: 0,
        active: (0..ACTIVE_KEYS).collect(),
        appends: vec![0; ACTIVE_KEYS],
    };
    // Per process: the open transaction's body and, once it ran, its completion.
    let mut open: Vec<Open> = vec![None; PROCESSES];
    let (mut started, mut events) = (0, Vec::with_capacity(2 * n));
    while started < n || open.iter().any(Option::is_some) {
        let p = db.rng.random_range(0..PROCESSES);
        match open[p].take() {
            None if started < n => {
                let body = db.body();
                events.push(event(events.len(), EventType::Invoke, p, invocation(&body)));
                open[p] = Some((body, None));
                started += 1;
            }
            None => {}
            Some((body, None)) => {
                let done = match db.apply(&body) {
                    Some(v) => (EventType::Ok, v),
                    None => (EventType::Fail, invocation(&body)),
                };
                open[p] = Some((body, Some(done)));
            }
            Some((_, Some((kind, v)))) => events.push(event(events.len(), kind, p, v)),
        }
    }
    events
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mode = match args.get(2).map(String::as_str) {
        Some("stale") => Mode::Stale,
        Some("snapshot") => Mode::Snapshot,
        _ => Mode::Strict,
    };
    let model: ConsistencyModel =
        args.get(3).and_then(|s| s.parse().ok()).unwrap_or(ConsistencyModel::StrictSerializable);
    let t0 = Instant::now();
    let events = generate(n, seed, mode);
    let generated = t0.elapsed();
    if let Some(out) = args.get(4) {
        std::fs::write(out, faultline_checker::jsonl::to_string(&events)).expect("history written");
    }
    let t1 = Instant::now();
    let opts = TxnOptions { time_limit: None, memory_limit_bytes: None, ..TxnOptions::default() };
    let r = check(&events, TxnModel::ListAppend, model, &opts);
    let checked = t1.elapsed();
    println!(
        "{n} txns, {} events, seed {seed}, {}: generated in {:.3} s, checked in {:.3} s",
        events.len(),
        match mode {
            Mode::Strict => "strict serializable",
            Mode::Stale => "stale reads",
            Mode::Snapshot => "snapshot isolation",
        },
        generated.as_secs_f64(),
        checked.as_secs_f64()
    );
    println!(
        "verdict {} for {model}; not {:?}, also not {:?}; undecided {:?}",
        r.verdict, r.not, r.also_not, r.undecided
    );
    println!("edges {:?}; {} nontrivial components, largest {} txns", r.edges, r.components, r.largest_component);
    println!("anomalies {:?}", r.anomaly_counts);
    if let Some(reason) = r.reason {
        println!("reason: {reason}");
    }
}
