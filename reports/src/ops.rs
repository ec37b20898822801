//! Operations: each client invocation paired with its completion.
//!
//! A client process has at most one operation outstanding (Jepsen's model), so the completion of
//! process p is the next ok/fail/info event of p after its invoke. An invocation that never
//! completes (the run ended or crashed) is `Pending` and lasts to the end of the history.

use std::collections::HashMap;

use faultline_checker::history::{Event, EventType, Process};

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Fail,
    Info,
    /// No completion in the history.
    Pending,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Ok, Outcome::Fail, Outcome::Info, Outcome::Pending];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
            Outcome::Pending => "pending",
        }
    }
}

/// One client operation.
#[derive(Clone, Debug)]
pub struct Op {
    pub process: u64,
    /// Index into [`Ops::fs`].
    pub f: usize,
    pub key: Option<String>,
    /// History index of the invoke event (and of the completion, when there is one).
    pub invoke_index: u64,
    pub complete_index: Option<u64>,
    pub invoke_ns: u64,
    /// Completion time; `None` when pending.
    pub complete_ns: Option<u64>,
    pub outcome: Outcome,
    pub invoke_value: serde_json::Value,
    pub complete_value: serde_json::Value,
    pub error: Option<String>,
    pub node: Option<String>,
}

impl Op {
    /// Latency in nanoseconds, for completed ops.
    pub fn latency_ns(&self) -> Option<u64> {
        self.complete_ns.map(|c| c.saturating_sub(self.invoke_ns))
    }

    /// The end used for drawing: the completion, or `end_ns` when pending.
    pub fn end_ns(&self, end_ns: u64) -> u64 {
        self.complete_ns.unwrap_or(end_ns).max(self.invoke_ns)
    }
}

/// All client operations of a history, in invocation order.
#[derive(Clone, Debug, Default)]
pub struct Ops {
    pub ops: Vec<Op>,
    /// Distinct `f` names, in order of first appearance.
    pub fs: Vec<String>,
    /// Time of the last event (ns since start).
    pub end_ns: u64,
    /// History index (of invoke or completion) → position in `ops`.
    pub by_index: HashMap<u64, usize>,
    pub warnings: Vec<String>,
}

/// At most this many pairing problems are kept verbatim.
const PAIRING_WARNINGS_MAX: usize = 10;

/// The pairing of invocations with completions while [`Ops::from_events`] reads a history.
#[derive(Default)]
struct Pairing<'e> {
    out: Ops,
    /// `f` name → its position in `out.fs`.
    f_ids: HashMap<&'e str, usize>,
    /// Process → position in `out.ops` of its op not completed yet.
    open: HashMap<u64, usize>,
    /// Pairing problems seen so far (only the first [`PAIRING_WARNINGS_MAX`] are kept).
    problems: usize,
}

impl<'e> Pairing<'e> {
    /// Keeps a pairing problem, or says once that more are not shown.
    fn warn(&mut self, msg: String) {
        self.problems += 1;
        if self.problems <= PAIRING_WARNINGS_MAX {
            self.out.warnings.push(msg);
        } else if self.problems == PAIRING_WARNINGS_MAX + 1 {
            self.out.warnings.push("history: more pairing problems not shown".into());
        }
    }

    /// Process `p` invokes: a new pending op (an op it left open stays pending).
    fn invoke(&mut self, e: &'e Event, p: u64) {
        if let Some(prev) = self.open.remove(&p) {
            let idx = self.out.ops[prev].invoke_index;
            self.warn(format!(
                "history index {}: process {p} invoked again before op at index {idx} completed; that op is drawn as pending",
                e.index
            ));
        }
        let next = self.f_ids.len();
        let out = &mut self.out;
        let f = *self.f_ids.entry(e.f.as_str()).or_insert_with(|| {
            out.fs.push(e.f.clone());
            next
        });
        self.out.by_index.insert(e.index, self.out.ops.len());
        self.open.insert(p, self.out.ops.len());
        self.out.ops.push(Op {
            process: p,
            f,
            key: e.key.clone(),
            invoke_index: e.index,
            complete_index: None,
            invoke_ns: e.time,
            complete_ns: None,
            outcome: Outcome::Pending,
            invoke_value: e.value.clone(),
            complete_value: serde_json::Value::Null,
            error: None,
            node: e.node.clone(),
        });
    }

    /// Process `p` completes its open op (a completion with none open is skipped, with a warning).
    fn complete(&mut self, e: &Event, p: u64) {
        let Some(i) = self.open.remove(&p) else {
            self.warn(format!(
                "history index {}: {} for process {p} without an open invocation; skipped",
                e.index,
                outcome_of(e.kind).name()
            ));
            return;
        };
        let op = &mut self.out.ops[i];
        op.complete_index = Some(e.index);
        op.complete_ns = Some(e.time.max(op.invoke_ns));
        op.outcome = outcome_of(e.kind);
        op.complete_value = e.value.clone();
        op.error = e.error.clone();
        if e.node.is_some() {
            op.node = e.node.clone();
        }
        self.out.by_index.insert(e.index, i);
    }
}

impl Ops {
    pub fn from_events(events: &[Event]) -> Ops {
        let mut pairing = Pairing::default();
        for e in events {
            pairing.out.end_ns = pairing.out.end_ns.max(e.time);
            let Process::Client(p) = e.process else { continue };
            match e.kind {
                EventType::Invoke => pairing.invoke(e, p),
                EventType::Ok | EventType::Fail | EventType::Info => pairing.complete(e, p),
            }
        }
        pairing.out
    }

    pub fn f_name(&self, op: &Op) -> &str {
        &self.fs[op.f]
    }

    /// Distinct client processes, sorted.
    pub fn processes(&self) -> Vec<u64> {
        let mut ps: Vec<u64> = self.ops.iter().map(|o| o.process).collect();
        ps.sort_unstable();
        ps.dedup();
        ps
    }
}

fn outcome_of(kind: EventType) -> Outcome {
    match kind {
        EventType::Ok => Outcome::Ok,
        EventType::Fail => Outcome::Fail,
        EventType::Info => Outcome::Info,
        EventType::Invoke => Outcome::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, time: u64, kind: &str, process: u64, f: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "index": index, "time": time, "type": kind, "process": process, "f": f, "value": null
        }))
        .unwrap()
    }

    #[test]
    fn pairs_by_process_and_leaves_unfinished_ops_pending() {
        let events = vec![
            ev(0, 0, "invoke", 0, "write"),
            ev(1, 5, "invoke", 1, "read"),
            ev(2, 7, "ok", 1, "read"),
            ev(3, 9, "fail", 0, "write"),
            ev(4, 10, "invoke", 1, "cas"),
        ];
        let ops = Ops::from_events(&events);
        assert_eq!(ops.ops.len(), 3);
        assert_eq!(ops.ops[0].outcome, Outcome::Fail);
        assert_eq!(ops.ops[0].latency_ns(), Some(9));
        assert_eq!(ops.ops[1].outcome, Outcome::Ok);
        assert_eq!(ops.ops[1].latency_ns(), Some(2));
        assert_eq!(ops.ops[2].outcome, Outcome::Pending);
        assert_eq!(ops.ops[2].end_ns(ops.end_ns), 10);
        assert_eq!(ops.fs, vec!["write", "read", "cas"]);
        assert_eq!(ops.by_index[&3], 0);
        assert!(ops.warnings.is_empty());
    }

    #[test]
    fn orphan_completion_is_warned_not_paired() {
        let ops = Ops::from_events(&[ev(0, 0, "ok", 3, "read")]);
        assert!(ops.ops.is_empty());
        assert_eq!(ops.warnings.len(), 1);
        assert!(ops.warnings[0].contains("index 0"), "{}", ops.warnings[0]);
    }
}
