//! Explanations of a verdict, as a serializable structure (for the HTML report, which draws
//! each key's operations as bars and the longest partial linearizations over them) and as text.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{EventType, Process};
use crate::{LinearizabilityReport, Verdict};

/// The text form shows the last this-many steps of a partial linearization.
const TEXT_STEPS_SHOWN_MAX: usize = 30;

/// One operation of a key's sub-history, with what is needed to draw it as a bar.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OpRef {
    pub process: Process,
    pub f: String,
    /// How it completed: `ok`, `fail` (a cas that observed a mismatch) or `info` (also for an
    /// invocation that never completed).
    pub kind: EventType,
    /// The invocation's value.
    pub value_in: Value,
    /// The completion's value (`null` if none).
    pub value_out: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `index` of the invoke event.
    pub call_index: u64,
    /// `index` of the completion event; `None` if it never completed.
    pub return_index: Option<u64>,
    /// ns since the test began.
    pub call_time: u64,
    pub return_time: Option<u64>,
}

impl OpRef {
    /// `p3 cas [1,2] → ok`-style one-liner.
    pub fn describe(&self) -> String {
        let p = match self.process {
            Process::Client(p) => format!("p{p}"),
            Process::Nemesis => "nemesis".into(),
        };
        let kind = match self.kind {
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
            EventType::Invoke => "invoke",
        };
        let ret = match self.return_index {
            Some(r) => r.to_string(),
            None => "∞".into(),
        };
        let val = match self.f.as_str() {
            "read" | "get" => format!("→ {}", self.value_out),
            _ => self.value_in.to_string(),
        };
        format!("{p} {} {val} ({kind}, events {}..{ret})", self.f, self.call_index)
    }
}

/// One step of a partial linearization: the operation (index into [`Explanation::ops`]) and
/// the model state after it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LinStep {
    pub op: usize,
    pub state_after: String,
}

/// An operation that could have taken effect after a partial linearization, and why it did not.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Index into [`Explanation::ops`].
    pub op: usize,
    pub why: String,
}

/// A prefix of a linearization that the search could not extend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PartialLinearization {
    pub steps: Vec<LinStep>,
    /// The operation whose return was reached while it was still not linearized: it had to
    /// take effect next, and no candidate led anywhere (index into [`Explanation::ops`]).
    pub blocked_op: usize,
    /// The state at the end of the prefix (the initial state when `steps` is empty).
    pub final_state: String,
    /// The operations that could have gone next (called before `blocked_op` returned), with why
    /// each did not (the first few).
    pub candidates: Vec<Candidate>,
}

/// Why one key is not linearizable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Explanation {
    pub key: Option<String>,
    /// Every operation of the key, in invocation order.
    pub ops: Vec<OpRef>,
    /// The operation that could not be linearized (index into `ops`): the blocked op of the
    /// first longest partial linearization.
    pub failed_op: usize,
    /// The longest partial linearizations reached (up to a few, all of the same length).
    pub longest: Vec<PartialLinearization>,
}

impl Explanation {
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let key = match &self.key {
            Some(k) => format!("{k:?}"),
            None => "(no key)".into(),
        };
        let _ = writeln!(t, "key {key}: not linearizable ({} operations)", self.ops.len());
        if let Some(op) = self.ops.get(self.failed_op) {
            let _ = writeln!(t, "  cannot linearize: #{} {}", self.failed_op, op.describe());
        }
        for (i, p) in self.longest.iter().enumerate() {
            let _ = writeln!(
                t,
                "  longest partial linearization {} ({} of {} operations):",
                i + 1,
                p.steps.len(),
                self.ops.len()
            );
            let skipped = p.steps.len().saturating_sub(TEXT_STEPS_SHOWN_MAX);
            if skipped > 0 {
                let _ = writeln!(t, "    ... {skipped} earlier steps (all of them in the JSON report)");
            }
            for s in &p.steps[skipped..] {
                let d = self.ops.get(s.op).map(OpRef::describe).unwrap_or_default();
                let _ = writeln!(t, "    #{} {d}  ⇒ {}", s.op, s.state_after);
            }
            let blocked = self.ops.get(p.blocked_op).map(OpRef::describe).unwrap_or_default();
            let _ = writeln!(
                t,
                "    then state {}: no pending operation can take effect before #{} {blocked} returns:",
                p.final_state, p.blocked_op
            );
            for c in &p.candidates {
                let d = self.ops.get(c.op).map(OpRef::describe).unwrap_or_default();
                let _ = writeln!(t, "      #{} {d}: {}", c.op, c.why);
            }
        }
        t
    }
}

pub(crate) fn report_text(r: &LinearizabilityReport) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} ({} model, {} keys, {} ops: {} ok, {} fail, {} info; {} nemesis events; {:.1} ms)",
        r.verdict,
        r.model,
        r.keys.len(),
        r.ops_total,
        r.ops_ok,
        r.ops_fail,
        r.ops_info,
        r.nemesis_events,
        r.elapsed_ms
    );
    if let Some(reason) = &r.reason {
        let _ = writeln!(t, "{reason}");
    }
    for k in &r.keys {
        if k.verdict == Verdict::Valid && r.verdict == Verdict::Valid && r.keys.len() > 20 {
            continue;
        }
        let key = match &k.key {
            Some(k) => format!("{k:?}"),
            None => "(no key)".into(),
        };
        let _ = writeln!(
            t,
            "  key {key}: {} ({} ops, {} info; {}: {} steps, {} cached, {} max linearized; {:.1} ms){}",
            k.verdict,
            k.ops,
            k.info_ops,
            k.procedure,
            k.steps,
            k.cache_entries,
            k.max_linearized,
            k.elapsed_ms,
            match (&k.reason, k.verdict) {
                (Some(r), Verdict::Unknown) => format!(": {r}"),
                _ => String::new(),
            }
        );
    }
    for k in &r.keys {
        if let Some(e) = &k.explanation {
            t.push_str(&e.to_text());
        }
    }
    t
}
