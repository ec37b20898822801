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
//! MODE `stale`: reads return a snapshot up to 200 commits old while writes apply to the
//! latest state, so anti-dependencies point back in time all through the history: one huge
//! strongly connected component. OUT.jsonl, if given, receives the history (for
//! `faultline check --model list-append`).

use std::time::Instant;

use faultline_checker::history::{Event, EventType, Process};
use faultline_checker::txn::{check, ConsistencyModel, TxnModel, TxnOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

const PROCESSES: usize = 30;
const ACTIVE_KEYS: usize = 10;
const WRITES_PER_KEY: u64 = 32;
const STALE_LAG_MAX: usize = 200;

/// A transaction's micro-ops before they run: (is an append, key, value).
type Body = Vec<(bool, usize, u64)>;

struct Db {
    rng: ChaCha8Rng,
    /// Every key's list; and for `stale`, each commit's (key, length after) so an old
    /// snapshot of a key is a prefix of its list.
    lists: Vec<Vec<u64>>,
    log: Vec<(usize, usize)>,
    active: Vec<usize>,
    appends: Vec<u64>,
    stale: bool,
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

    /// The length of `k` as of `lag` commits ago.
    fn old_len(&self, k: usize, lag: usize) -> usize {
        let mut len = self.lists[k].len();
        for &(key, after) in self.log.iter().rev().take(lag) {
            if key == k {
                len = after - 1;
            }
        }
        len
    }

    /// Applies a transaction atomically; returns its completed micro-ops.
    fn apply(&mut self, body: &[(bool, usize, u64)]) -> Value {
        let lag = if self.stale {
            self.rng.random_range(0..=STALE_LAG_MAX)
        } else {
            0
        };
        let mut mine: Vec<usize> = Vec::new();
        let ops: Vec<Value> = body
            .iter()
            .map(|&(append, k, v)| {
                if append {
                    self.lists[k].push(v);
                    self.log.push((k, self.lists[k].len()));
                    mine.push(k);
                    json!(["append", k, v])
                } else if mine.contains(&k) {
                    json!(["r", k, self.lists[k]])
                } else {
                    let n = self.old_len(k, lag);
                    json!(["r", k, self.lists[k][..n]])
                }
            })
            .collect();
        Value::Array(ops)
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
        body.iter()
            .map(|&(a, k, v)| {
                if a {
                    json!(["append", k, v])
                } else {
                    json!(["r", k, null])
                }
            })
            .collect(),
    )
}

fn generate(n: usize, seed: u64, stale: bool) -> Vec<Event> {
    let mut db = Db {
        rng: ChaCha8Rng::seed_from_u64(seed),
        lists: vec![Vec::new(); ACTIVE_KEYS],
        log: Vec::new(),
        active: (0..ACTIVE_KEYS).collect(),
        appends: vec![0; ACTIVE_KEYS],
        stale,
    };
    // Per process: the open transaction's body and, once applied, its completed value.
    let mut open: Vec<Option<(Body, Option<Value>)>> = vec![None; PROCESSES];
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
                let done = db.apply(&body);
                open[p] = Some((body, Some(done)));
            }
            Some((_, Some(done))) => events.push(event(events.len(), EventType::Ok, p, done)),
        }
    }
    events
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let stale = args.get(2).is_some_and(|m| m == "stale");
    let model: ConsistencyModel = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(ConsistencyModel::StrictSerializable);
    let t0 = Instant::now();
    let events = generate(n, seed, stale);
    let generated = t0.elapsed();
    if let Some(out) = args.get(4) {
        std::fs::write(out, faultline_checker::jsonl::to_string(&events)).expect("history written");
    }
    let t1 = Instant::now();
    let opts = TxnOptions {
        time_limit: None,
        memory_limit_bytes: None,
        ..TxnOptions::default()
    };
    let r = check(&events, TxnModel::ListAppend, model, &opts);
    let checked = t1.elapsed();
    println!(
        "{n} txns, {} events, seed {seed}, {}: generated in {:.3} s, checked in {:.3} s",
        events.len(),
        if stale {
            "stale reads"
        } else {
            "strict serializable"
        },
        generated.as_secs_f64(),
        checked.as_secs_f64()
    );
    println!(
        "verdict {} for {model}; not {:?}, also not {:?}; undecided {:?}",
        r.verdict, r.not, r.also_not, r.undecided
    );
    println!(
        "edges {:?}; {} nontrivial components, largest {} txns",
        r.edges, r.components, r.largest_component
    );
    println!("anomalies {:?}", r.anomaly_counts);
    if let Some(reason) = r.reason {
        println!("reason: {reason}");
    }
}
