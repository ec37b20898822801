//! Synthetic run folders, for tests, the browser test and the render benchmark.
//!
//! Deterministic for a given [`Spec`]: a register workload on a few keys driven by a few
//! processes, partition and kill faults (slower and failing ops while they last), clock skew,
//! and a results.json whose linearizability checker says `invalid` with an explanation that
//! names real history indices. Nothing here claims to be a real system's behaviour.

use std::io::Write;
use std::path::Path;

use faultline_results::{Availability, CheckerResult, FaultRecord, Results, Verdict};
use serde_json::{json, Value};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    pub ops: usize,
    pub processes: u64,
    pub keys: usize,
    /// Mean gap between a process's operations, ns.
    pub think_ns: u64,
    pub seed: u64,
    /// Write results.json (with an invalid linearizability verdict and its explanation).
    pub results: bool,
    /// Skew clocks through nemesis clock events.
    pub clock_skew: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec { ops: 2_000, processes: 5, keys: 3, think_ns: 5_000_000, seed: 7, results: true, clock_skew: true }
    }
}

/// xorshift64*: enough randomness for pictures, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Writes history.jsonl, test.json and (per `spec`) results.json into `dir` (created).
pub fn write_run(dir: &Path, spec: &Spec) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let duration_ns = (spec.ops as u64 / spec.processes.max(1)).max(1) * spec.think_ns;
    // Faults: a partition in the 2nd fifth, a kill in the 4th fifth, a clock skew across the middle.
    let fifth = duration_ns / 5;
    let partition = (fifth, 2 * fifth);
    let kill = (3 * fifth + fifth / 4, 4 * fifth);
    let mut raw = RawEvents { raw: Vec::with_capacity(spec.ops * 2 + 8), order: 0 };
    push_nemesis_events(&mut raw, spec, fifth, partition, kill);
    push_client_ops(&mut raw, spec, partition, kill);
    let events = write_history(dir, raw.raw)?;
    let repro = format!(
        "faultline run --target synthetic --workload register --nemesis partition,kill,clock --seed {}",
        spec.seed
    );
    let test = json!({
        "name": "synthetic-register",
        "seed": spec.seed,
        "repro": repro,
        "options": {"target": "synthetic", "workload": "register", "nemesis": "partition,kill,clock",
                     "concurrency": spec.processes, "nodes": 3, "runtime": "none"}
    });
    std::fs::write(dir.join("test.json"), serde_json::to_vec_pretty(&test)?)?;
    if spec.results {
        let results = results_json(&events, spec, &repro, partition, kill);
        std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(&results)?)?;
    }
    Ok(())
}

/// An event before sorting: its time, and the order it was made in (ties keep that order).
struct Raw {
    time: u64,
    order: u64,
    v: Value,
}

/// The events made so far, and the order number of the next.
struct RawEvents {
    raw: Vec<Raw>,
    order: u64,
}

impl RawEvents {
    /// Adds event `v` at `time`.
    fn push(&mut self, time: u64, v: Value) {
        self.raw.push(Raw { time, order: self.order, v });
        self.order += 1;
    }
}

/// The nemesis's events: the partition and the kill, and (per `spec`) the clock skew.
fn push_nemesis_events(raw: &mut RawEvents, spec: &Spec, fifth: u64, partition: (u64, u64), kill: (u64, u64)) {
    let nemesis = [
        (partition.0, "start-partition", json!({"groups": [["n1"], ["n2", "n3"]], "mechanism": "synthetic"})),
        (partition.1, "stop-partition", Value::Null),
        (kill.0, "start-kill", json!({"nodes": ["n2"]})),
        (kill.1, "stop-kill", json!({"nodes": ["n2"]})),
    ];
    for (t, f, v) in nemesis {
        raw.push(t, json!({"type": "info", "process": "nemesis", "f": f, "value": v}));
    }
    if spec.clock_skew {
        raw.push(2 * fifth + fifth / 2, json!({"type": "info", "process": "nemesis", "f": "start-clock", "value": {"offsets_ms": {"n1": 350, "n3": -120}}}));
        raw.push(3 * fifth, json!({"type": "info", "process": "nemesis", "f": "stop-clock", "value": Value::Null}));
    }
}

/// The clients' operations, invocation and completion each: slower and failing while a fault
/// lasts, a process retired after `info`.
fn push_client_ops(raw: &mut RawEvents, spec: &Spec, partition: (u64, u64), kill: (u64, u64)) {
    let mut rng = Rng(spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Per process: time of its next invocation.
    let mut next_ns: Vec<u64> = (0..spec.processes).map(|p| p * 1_000_000).collect();
    let in_fault = |t: u64| (t >= partition.0 && t < partition.1) || (t >= kill.0 && t < kill.1);
    let mut process_ids: Vec<u64> = (0..spec.processes).collect();
    let mut next_process_id = spec.processes;
    for i in 0..spec.ops {
        let slot = (i as u64 % spec.processes.max(1)) as usize;
        let p = process_ids[slot];
        let t = next_ns[slot];
        let key = format!("k{}", rng.below(spec.keys as u64));
        let (f, value) = match rng.below(10) {
            0..=4 => ("read", Value::Null),
            5..=7 => ("write", json!(rng.below(5))),
            _ => ("cas", json!([rng.below(5), rng.below(5)])),
        };
        let faulty = in_fault(t);
        let base_ms = 0.3 + 2.0 * rng.unit().powi(3) + if faulty { 40.0 * rng.unit() } else { 0.0 };
        let latency = (base_ms * 1e6) as u64 + 10_000;
        let roll = rng.unit();
        let outcome = if faulty && roll < 0.15 {
            "info"
        } else if (faulty && roll < 0.4) || (f == "cas" && roll < 0.5) {
            "fail"
        } else {
            "ok"
        };
        raw.push(t, json!({"type": "invoke", "process": p, "f": f, "key": key, "value": value, "node": format!("n{}", 1 + p % 3)}));
        let result = if f == "read" && outcome == "ok" { json!(rng.below(5)) } else { value.clone() };
        let mut done = json!({"type": outcome, "process": p, "f": f, "key": key, "value": result, "node": format!("n{}", 1 + p % 3)});
        if outcome != "ok" {
            done["error"] = json!(if outcome == "info" {
                "timeout"
            } else if f == "cas" {
                "cas-mismatch"
            } else {
                "unavailable"
            });
        }
        raw.push(t + latency, done);
        next_ns[slot] = t + latency + spec.think_ns / 2 + rng.below(spec.think_ns);
        if outcome == "info" {
            // Jepsen's rule: a process that saw `info` is retired; a fresh one takes its place.
            process_ids[slot] = next_process_id;
            next_process_id += 1;
        }
    }
}

/// Sorts the events by time, numbers them and writes them to `dir`/history.jsonl; returns them
/// as written.
fn write_history(dir: &Path, mut raw: Vec<Raw>) -> std::io::Result<Vec<serde_json::Map<String, Value>>> {
    raw.sort_by_key(|r| (r.time, r.order));
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("history.jsonl"))?);
    let mut events = Vec::with_capacity(raw.len());
    for (index, r) in raw.into_iter().enumerate() {
        let mut v = r.v;
        let obj = v.as_object_mut().expect("synthetic events are objects");
        let mut e = serde_json::Map::new();
        e.insert("index".into(), json!(index));
        e.insert("time".into(), json!(r.time));
        e.extend(std::mem::take(obj));
        serde_json::to_writer(&mut out, &e)?;
        out.write_all(b"\n")?;
        events.push(e);
    }
    out.flush()?;
    Ok(events)
}

/// An invalid verdict whose explanation (in the checker's `Explanation` JSON form) names a real
/// read as the op that could not be linearized and the three ok operations on its key that
/// complete before it as the longest partial linearization. Synthetic: not checked.
fn results_json(
    events: &[serde_json::Map<String, Value>],
    spec: &Spec,
    repro: &str,
    partition: (u64, u64),
    kill: (u64, u64),
) -> Value {
    let explanation = synthetic_explanation(ops_by_key(events));
    let verdict = if explanation.is_some() { Verdict::Invalid } else { Verdict::Valid };
    let reason = explanation
        .as_ref()
        .map(|e| format!("not linearizable: key {:?} (synthetic)", e["key"].as_str().unwrap_or("")));
    let results = Results {
        verdict,
        seed: spec.seed,
        repro: repro.to_string(),
        checkers: vec![
            CheckerResult {
                name: "linearizable".into(),
                verdict,
                reason,
                details: json!({"verdict": verdict, "explanation": explanation}),
            },
            CheckerResult::new("stats", Verdict::Valid, None),
        ],
        availability: Availability {
            fault_windows: 2,
            during_faults_ok_fraction: Some(0.6),
            outside_faults_ok_fraction: Some(0.99),
            ..Availability::default()
        },
        faults: vec![
            fault_record("partition", "halves", &["n1", "n2", "n3"], partition),
            fault_record("kill", "one", &["n2"], kill),
        ],
        ..Results::default()
    };
    serde_json::to_value(results).unwrap_or(Value::Null)
}

/// The client operations of `events`, paired invocation with completion, per key (an op never
/// completed is left out).
fn ops_by_key(
    events: &[serde_json::Map<String, Value>],
) -> std::collections::BTreeMap<String, Vec<faultline_checker::explain::OpRef>> {
    use faultline_checker::explain::OpRef;
    use faultline_checker::history::{Event, EventType, Process};
    let parsed: Vec<Event> =
        events.iter().filter_map(|e| serde_json::from_value(Value::Object(e.clone())).ok()).collect();
    // Pair into OpRefs per key.
    let mut open: std::collections::HashMap<u64, OpRef> = Default::default();
    let mut by_key: std::collections::BTreeMap<String, Vec<OpRef>> = Default::default();
    for e in &parsed {
        let Process::Client(p) = e.process else { continue };
        if e.kind == EventType::Invoke {
            open.insert(
                p,
                OpRef {
                    process: e.process,
                    f: e.f.clone(),
                    kind: EventType::Info,
                    value_in: e.value.clone(),
                    value_out: Value::Null,
                    error: None,
                    call_index: e.index,
                    return_index: None,
                    call_time: e.time,
                    return_time: None,
                },
            );
        } else if let Some(mut op) = open.remove(&p) {
            op.kind = e.kind;
            op.value_out = e.value.clone();
            op.error = e.error.clone();
            op.return_index = Some(e.index);
            op.return_time = Some(e.time);
            by_key.entry(e.key.clone().unwrap_or_default()).or_default().push(op);
        }
    }
    by_key
}

/// The explanation, on the key with the most operations: an ok read in its second half that
/// "could not be linearized", the (up to) three ok operations completing before it invoked as
/// the partial linearization, and the (up to) two operations invoked after it while it ran as
/// candidates. `None` when that key has no such read.
fn synthetic_explanation(
    by_key: std::collections::BTreeMap<String, Vec<faultline_checker::explain::OpRef>>,
) -> Option<Value> {
    use faultline_checker::history::EventType;
    // Built as JSON (not the checker's struct literal) so that this generator does not break
    // when the checker adds fields; readers ignore what they do not know.
    by_key.into_iter().max_by_key(|(_, ops)| ops.len()).and_then(|(key, mut ops)| {
        ops.sort_by_key(|o| o.call_index);
        let failed = (ops.len() / 2..ops.len()).find(|&i| ops[i].f == "read" && ops[i].kind == EventType::Ok)?;
        let ret = ops[failed].call_time;
        let mut before: Vec<usize> = (0..failed)
            .rev()
            .filter(|&i| ops[i].kind == EventType::Ok && ops[i].return_time.is_some_and(|t| t < ret))
            .take(3)
            .collect();
        before.reverse();
        let steps: Vec<Value> =
            before.iter().map(|&i| json!({"op": i, "state_after": ops[i].value_in.to_string()})).collect();
        let candidates: Vec<Value> = (failed + 1..ops.len())
            .filter(|&i| ops[i].call_time < ops[failed].return_time.unwrap_or(u64::MAX))
            .take(2)
            .map(|i| json!({"op": i, "why": "synthetic: would not lead to a linearization"}))
            .collect();
        Some(json!({
            "key": key,
            "ops": ops,
            "failed_op": failed,
            "longest": [{"steps": steps, "blocked_op": failed, "final_state": "synthetic", "candidates": candidates}],
        }))
    })
}

/// A fault that was applied over `start_ns..end_ns` by the synthetic mechanism.
fn fault_record(fault: &str, kind: &str, nodes: &[&str], (start_ns, end_ns): (u64, u64)) -> FaultRecord {
    FaultRecord {
        fault: fault.into(),
        kind: kind.into(),
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        start_ns,
        end_ns: Some(end_ns),
        applied: true,
        mechanism: "synthetic".into(),
        error: None,
        stop_error: None,
        detail: Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_runs_render_with_a_counterexample() {
        let tmp = tempfile::tempdir().unwrap();
        write_run(tmp.path(), &Spec::default()).unwrap();
        let summary = crate::render_run(tmp.path(), &crate::RenderOptions::default()).unwrap();
        assert_eq!(summary.verdict, Some(Verdict::Invalid));
        assert_eq!(summary.ops, 2_000);
        assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
        for f in ["report.html", "latency-raw.png", "latency-quantiles.png", "rate.png", "clock-skew.png"] {
            let p = tmp.path().join(f);
            assert!(p.metadata().map(|m| m.len() > 1000).unwrap_or(false), "{f} missing or tiny");
        }
        let html = std::fs::read_to_string(tmp.path().join("report.html")).unwrap();
        assert!(html.contains(r#"id="counterexample""#));
        assert!(html.contains("could not be linearized"));
        assert!(!html.contains("timeline-capped"), "2000 ops fit the default timeline");
    }

    #[test]
    fn a_capped_timeline_centres_on_the_failing_op() {
        let tmp = tempfile::tempdir().unwrap();
        write_run(tmp.path(), &Spec::default()).unwrap();
        let opts = crate::RenderOptions { timeline_ops_max: 300, ..Default::default() };
        crate::render_run(tmp.path(), &opts).unwrap();
        let html = std::fs::read_to_string(tmp.path().join("report.html")).unwrap();
        let timeline = &html[html.find(r#"<h2 id="timeline">"#).unwrap()..];
        assert!(timeline.contains("around the operation that could not be linearized"), "note missing");
        assert!(!timeline.contains("showing operations 1 to"), "the failing op is in the second half");
        assert_eq!(timeline.matches(r##"stroke="#b71c1c""##).count(), 1, "the failing op is outlined once");
    }
}
