//! Benchmark generator and runner for long single-key register histories (issue 18).
//!
//! Simulates one linearizable cas-register hammered by 30 clients: each operation is invoked,
//! takes effect at a random instant of its interval and completes later, so intervals overlap
//! heavily; 50 % reads, 30 % writes, 20 % cas (from the value the client last saw, so some
//! fail with `cas-mismatch`), 2 % of operations indeterminate (`info`, half of which took
//! effect; the process is retired). Written values are unique. `invalid` plants one stale read:
//! a read late in the history returns a value overwritten long before it was invoked.
//!
//! ```text
//! register_bench OPS SEED valid|invalid [--search] [--write FILE]
//! ```
//! checks the history in-process (zone procedure first; `--search`: the search alone) and
//! prints the verdict, the procedure and the check time; `--write FILE` writes it as JSON Lines
//! instead (for `faultline check --model cas-register FILE`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use faultline_checker::history::{Event, EventType, Process};
use faultline_checker::{check_linearizable, CheckOptions, ModelKind};

const CLIENTS: u64 = 30;
const INFO_PERCENT: u32 = 2;

/// One client's operation in flight.
struct Op {
    process: u64,
    f: &'static str,
    input: Value,
    output: Value,
    /// A cas whose compare failed.
    mismatch: bool,
    info: bool,
    /// An info op that never takes effect.
    skip: bool,
}

/// What happens at an instant: (time, client, phase: 0 effect, 1 complete, 2 invoke).
type Tick = Reverse<(u64, u64, u8)>;

struct Sim {
    rng: ChaCha8Rng,
    events: Vec<Event>,
    state: Value,
    next_value: i64,
    next_process: u64,
    /// The value each client last saw (its cas `from`).
    seen: Vec<Value>,
    ops: Vec<Option<Op>>,
    /// (time, value) of each write that took effect, for planting a stale read.
    history: Vec<(u64, Value)>,
}

impl Sim {
    fn push(&mut self, time: u64, kind: EventType, process: u64, f: &str, value: Value, error: Option<&str>) {
        let index = self.events.len() as u64;
        let (key, error) = (Some("r".to_string()), error.map(str::to_string));
        self.events.push(Event {
            index,
            time,
            kind,
            process: Process::Client(process),
            f: f.into(),
            key,
            value,
            error,
            node: None,
        });
    }

    fn invoke(&mut self, now: u64, c: usize) {
        let r = self.rng.random_range(0..100);
        let (f, input) = if r < 50 {
            ("read", Value::Null)
        } else if r < 80 {
            self.next_value += 1;
            ("write", json!(self.next_value))
        } else {
            self.next_value += 1;
            ("cas", json!([self.seen[c].clone(), self.next_value]))
        };
        let info = self.rng.random_range(0..100) < INFO_PERCENT;
        let skip = info && self.rng.random_bool(0.5);
        let process = match &self.ops[c] {
            Some(op) => op.process,
            None => c as u64,
        };
        self.push(now, EventType::Invoke, process, f, input.clone(), None);
        self.ops[c] = Some(Op { process, f, input, output: Value::Null, mismatch: false, info, skip });
    }

    fn effect(&mut self, now: u64, c: usize) {
        let Some(op) = self.ops[c].as_mut() else { return };
        if op.skip {
            return;
        }
        match op.f {
            "read" => op.output = self.state.clone(),
            "write" => {
                self.state = op.input.clone();
                self.history.push((now, self.state.clone()));
            }
            _ if self.state == op.input[0] => {
                self.state = op.input[1].clone();
                self.history.push((now, self.state.clone()));
            }
            _ => op.mismatch = true,
        }
        self.seen[c] = self.state.clone();
    }

    /// Completes the op; an info completion retires the process (it continues as a new one).
    fn complete(&mut self, now: u64, c: usize) {
        let Some(op) = self.ops[c].take() else { return };
        let mut next = op.process;
        if op.info {
            self.push(now, EventType::Info, op.process, op.f, op.input.clone(), Some("timeout"));
            next = self.next_process;
            self.next_process += 1;
        } else if op.mismatch {
            self.push(now, EventType::Fail, op.process, op.f, op.input.clone(), Some("cas-mismatch"));
        } else {
            let v = if op.f == "read" { op.output } else { op.input };
            self.push(now, EventType::Ok, op.process, op.f, v, None);
        }
        // Keep the (new) process id for the client's next op.
        self.ops[c] = Some(Op {
            process: next,
            f: "read",
            input: Value::Null,
            output: Value::Null,
            mismatch: false,
            info: false,
            skip: true,
        });
    }
}

/// A history of `ops` operations on one register (see the module docs).
fn generate(ops: u64, seed: u64) -> (Vec<Event>, Vec<(u64, Value)>) {
    let mut sim = Sim {
        rng: ChaCha8Rng::seed_from_u64(seed),
        events: Vec::with_capacity(2 * ops as usize),
        state: Value::Null,
        next_value: 0,
        next_process: CLIENTS,
        seen: vec![Value::Null; CLIENTS as usize],
        ops: (0..CLIENTS).map(|_| None).collect(),
        history: Vec::new(),
    };
    let mut queue: BinaryHeap<Tick> = (0..CLIENTS).map(|c| Reverse((c, c, 2))).collect();
    let mut invoked = 0;
    while let Some(Reverse((now, c, phase))) = queue.pop() {
        let ci = c as usize;
        match phase {
            2 if invoked < ops => {
                sim.invoke(now, ci);
                invoked += 1;
                // Effect and completion at random instants of a 10..1000-tick interval.
                let d = sim.rng.random_range(10..1000);
                let at = now + sim.rng.random_range(1..d);
                queue.push(Reverse((at, c, 0)));
                queue.push(Reverse((now + d, c, 1)));
            }
            0 => sim.effect(now, ci),
            1 => {
                sim.complete(now, ci);
                queue.push(Reverse((now + sim.rng.random_range(1..50), c, 2)));
            }
            _ => {}
        }
    }
    (sim.events, sim.history)
}

/// Makes one ok read in the last third of the history return a value overwritten at least 200
/// writes before the read was invoked; returns its event index.
fn plant_stale_read(events: &mut [Event], writes: &[(u64, Value)], rng: &mut ChaCha8Rng) -> Option<u64> {
    let n = events.len();
    for _ in 0..1000 {
        let i = rng.random_range(2 * n / 3..n);
        if events[i].kind != EventType::Ok || events[i].f != "read" {
            continue;
        }
        let call = events[..i].iter().rposition(|e| e.process == events[i].process && e.kind == EventType::Invoke)?;
        let before = writes.partition_point(|(t, _)| *t < events[call].time);
        if before > 200 {
            events[i].value = writes[before - 200].1.clone();
            return Some(events[i].index);
        }
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: register_bench OPS SEED valid|invalid [--search] [--write FILE]";
    let (Some(ops), Some(seed), Some(mode)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(255);
    };
    let (ops, seed): (u64, u64) = (ops.parse().expect("OPS"), seed.parse().expect("SEED"));
    let t = Instant::now();
    let (mut events, writes) = generate(ops, seed);
    if mode == "invalid" {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5157);
        let at = plant_stale_read(&mut events, &writes, &mut rng).expect("a read to make stale");
        eprintln!("planted a stale read at event {at}");
    }
    eprintln!("generated {} events in {:.2} s", events.len(), t.elapsed().as_secs_f64());
    if let Some(i) = args.iter().position(|a| a == "--write") {
        let path = args.get(i + 1).expect("--write FILE");
        std::fs::write(path, faultline_checker::jsonl::to_string(&events)).expect("write the history");
        return;
    }
    let zones = !args.iter().any(|a| a == "--search");
    let opts = CheckOptions { time_limit: Some(Duration::from_secs(120)), zones, ..CheckOptions::default() };
    let t = Instant::now();
    let r = check_linearizable(&events, ModelKind::CasRegister, &opts);
    let secs = t.elapsed().as_secs_f64();
    let k = r.keys.first();
    println!(
        "{} ops, seed {seed}, {mode}: {} by {} in {secs:.3} s ({})",
        r.ops_total,
        r.verdict,
        k.map_or("-".to_string(), |k| k.procedure.to_string()),
        r.reason.unwrap_or_default()
    );
}
