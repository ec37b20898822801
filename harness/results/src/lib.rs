//! faultline-results: what a run concluded, as one typed value.
//!
//! Owns [`Results`], the serde type whose JSON form is a run folder's `results.json`: written
//! once by the runner and read back, through this type and never by string keys, by the
//! terminal summary, `faultline check` of a run folder, campaigns and reports. It also owns the
//! pure [`analysis`] that computes most of it from a recorded history (op counts, latency,
//! fault windows, availability, the combined verdict), so the runner, the reports and any
//! other reader derive fault windows and availability the same way.
//!
//! Every field has a default, so a results.json written by an interrupted run or by an older
//! version still loads; a field of the wrong type is an error that names it.

pub mod analysis;
pub mod isolation;

use std::collections::BTreeMap;

use faultline_checker::hierarchy::Consistency;
pub use faultline_checker::Verdict;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use analysis::{Availability, Counts, Latency, OpStats, Window};
pub use isolation::Isolation;

/// One checker's judgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckerResult {
    pub name: String,
    pub verdict: Verdict,
    /// Why (always set for invalid and unknown).
    #[serde(default)]
    pub reason: Option<String>,
    /// Checker-specific detail (an explanation, counts, shares), shown by the report.
    #[serde(default)]
    pub details: Value,
}

impl CheckerResult {
    /// A result with no details.
    pub fn new(name: &str, verdict: Verdict, reason: Option<String>) -> CheckerResult {
        CheckerResult { name: name.to_string(), verdict, reason, details: Value::Null }
    }
}

/// A fault as the run applied it (one per scheduled window).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// The family: `partition`, `kill`, `pause`, `clock`, `loss`, `latency`, `rebalance`.
    pub fault: String,
    pub kind: String,
    pub nodes: Vec<String>,
    pub start_ns: u64,
    /// When the fault ended (its stop, or the heal); `None` while it lasts.
    pub end_ns: Option<u64>,
    pub applied: bool,
    pub mechanism: String,
    pub error: Option<String>,
    pub stop_error: Option<String>,
    /// Kind-specific detail (links cut, offsets set, ...).
    pub detail: Value,
}

/// A clock offset observation (set by the clock nemesis or sampled from a node), for the plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockSample {
    pub time_ns: u64,
    pub node: String,
    pub offset_ms: i64,
}

/// Where the nodes ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeInfo {
    /// `local`, `docker`.
    pub kind: String,
    /// `netns`, `loopback-iptables`, `loopback-none`, `compose`.
    pub mechanism: String,
    pub run_id: String,
    /// The run re-ran itself in an unprivileged user namespace.
    pub userns: bool,
}

/// The final phase: one read of every key used (on every node, for convergence).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FinalReads {
    pub keys: usize,
    /// Final reads that succeeded.
    pub ok: u64,
    /// Reads that never succeeded within the final-read timeout: `key` or `key@node`.
    pub missed: Vec<String>,
}

/// Seconds each phase took; a phase that did not run has no entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teardown_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_s: Option<f64>,
}

fn unknown() -> Verdict {
    Verdict::Unknown
}

/// A run's results.json (docs/results.md, docs/architecture.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Results {
    /// The checkers combined ([`analysis::combine`]); `unknown` for an interrupted run that
    /// would otherwise be valid.
    #[serde(default = "unknown")]
    pub verdict: Verdict,
    pub interrupted: bool,
    /// The cluster never became ready: a harness failure (exit 255), nothing was tested.
    pub setup_failed: bool,
    pub checkers: Vec<CheckerResult>,
    /// The strongest model of the hierarchy the history kept (docs/results.md).
    pub consistency: Option<Consistency>,
    /// A transactional workload's verdict on the transactional map (models ruled out, the
    /// strongest kept); absent for single-object workloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    pub ops: OpStats,
    /// Latency by outcome: `ok`, `fail`, `info`.
    pub latency: BTreeMap<String, Latency>,
    pub availability: Availability,
    pub faults: Vec<FaultRecord>,
    pub faults_not_applied: usize,
    pub clock: Vec<ClockSample>,
    pub runtime: RuntimeInfo,
    /// The schedule's name (the `--nemesis` value it was drawn from).
    pub schedule: String,
    /// `None` when the final phase did not run (setup failed, interrupted).
    pub final_reads: Option<FinalReads>,
    /// What the target reports about itself at the end (`Target::final_stats`); its shape is
    /// the target's (the lb balancer's per-backend counts, the router's shards).
    pub target_stats: Option<Value>,
    pub seed: u64,
    pub repro: String,
    pub timings: Timings,
    pub history_warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl Default for Results {
    fn default() -> Self {
        Results {
            verdict: Verdict::Unknown,
            interrupted: false,
            setup_failed: false,
            checkers: Vec::new(),
            consistency: None,
            isolation: None,
            ops: OpStats::default(),
            latency: BTreeMap::new(),
            availability: Availability::default(),
            faults: Vec::new(),
            faults_not_applied: 0,
            clock: Vec::new(),
            runtime: RuntimeInfo::default(),
            schedule: String::new(),
            final_reads: None,
            target_stats: None,
            seed: 0,
            repro: String::new(),
            timings: Timings::default(),
            history_warnings: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl Results {
    /// Parses results.json text. The error names the field that does not fit (serde_json's
    /// message, with line and column).
    pub fn from_json(text: &str) -> Result<Results, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The checker named `name`, if it ran.
    pub fn checker(&self, name: &str) -> Option<&CheckerResult> {
        self.checkers.iter().find(|c| c.name == name)
    }

    /// Fault windows that were applied.
    pub fn faults_applied(&self) -> usize {
        self.faults.iter().filter(|f| f.applied).count()
    }
}
