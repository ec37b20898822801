//! faultline-checker: pure checkers over recorded histories (no tokio, no I/O).
//!
//! Owns the history types ([`history`]), the parsers of the history formats ([`jsonl`],
//! [`formats`]), the models a history is judged against ([`model`]), and the linearizability
//! checker ([`check_linearizable`]): a Wing–Gong/Lowe search (`search`) run per key
//! (P-compositionality: a history is linearizable iff each key's sub-history is), keys in
//! parallel, under a time and memory budget that ends in [`Verdict::Unknown`] instead of a crash.
//!
//! Before the search, register and cas-register keys whose written values are unique go to the
//! polynomial zone procedure (`zones`, Gibbons & Korach 1997): it says valid only with a witness
//! linearization that an independent verifier (`witness`) accepts, invalid only with a proven
//! violation, and hands anything else to the search; [`KeyReport::procedure`] says which
//! decided.
//!
//! The search caches explored configurations (`cache`, with subsumption on indeterminate ops)
//! and cuts the space with reductions that are each argued sound and complete where they are
//! made and checked against the brute-force [`oracle`] by property tests: forced observer
//! moves and the completed-first candidate order (`search`), symmetry breaking among identical
//! indeterminate ops and applying them only where they change the state (`search`), merged
//! unread register values, kv prefix pruning and dead-state merging (`model`).
//!
//! For systems that promise less than linearizability: [`set_full`] (Jepsen's set-full: lost,
//! stale and unexpected elements), [`counter`] (reads within the bounds the adds allow) and
//! [`convergence`] (every node's final read equal after heal and quiescence); for register
//! histories, [`sequential`] (sequential consistency per key) and [`session`] (read-your-writes
//! and monotonic reads), both exact searches under a budget, sharing `orders`; and
//! [`hierarchy`], which places a run's verdicts on the ladder linearizable > sequential (per
//! key) > session > convergent.
//! [`distribution`] judges a load balancer: do the backends serve the shares their weights promise?
//! [`txn`] checks transaction histories (list-append, rw-register) for isolation anomalies as
//! Elle does, and places them on the transactional map read-uncommitted ... strict-serializable.

mod cache;
pub mod convergence;
pub mod counter;
pub mod distribution;
pub mod edn;
pub mod explain;
pub mod formats;
pub mod hierarchy;
pub mod history;
pub mod jsonl;
pub mod model;
pub mod oracle;
pub mod orders;
mod prepare;
mod search;
pub mod sequential;
pub mod session;
pub mod set_full;
pub mod shard_balance;
pub mod txn;
mod witness;
mod zones;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use explain::{Candidate, Explanation, LinStep, OpRef, PartialLinearization};
pub use model::ModelKind;
pub use prepare::HistoryError;

/// The outcome of a check.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Invalid,
    /// The checker could not decide (budget exhausted, cancelled): never a guess.
    Unknown,
}

impl Verdict {
    /// The CLI exit-code contract: 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }

    /// Combines key verdicts: any invalid key makes the history invalid; otherwise any unknown
    /// key makes it unknown.
    fn combine(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Invalid, _) | (_, Verdict::Invalid) => Verdict::Invalid,
            (Verdict::Unknown, _) | (_, Verdict::Unknown) => Verdict::Unknown,
            _ => Verdict::Valid,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        })
    }
}

/// Budgets and modes of [`check_linearizable`].
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Wall-clock budget for the whole check; `None` = unbounded.
    pub time_limit: Option<Duration>,
    /// Budget for the search caches of all keys together; `None` = unbounded.
    pub memory_limit_bytes: Option<u64>,
    /// Once a key is invalid, cancel the others (they end `unknown`). `false` judges every key.
    pub stop_on_first_invalid: bool,
    /// Worker threads for the keys (at least 1).
    pub threads: usize,
    /// Try the polynomial zone procedure (`zones`) on register keys before the search. `false`
    /// runs the search alone (for comparisons and benchmarks); the verdicts are the same.
    pub zones: bool,
    /// Register and cas-register: the value every key starts with (`None`: nil). Knossos's
    /// histories use a register starting at 0.
    pub initial_value: Option<i64>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            time_limit: Some(Duration::from_secs(60)),
            memory_limit_bytes: Some(2 << 30),
            stop_on_first_invalid: true,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            zones: true,
            initial_value: None,
        }
    }
}

/// The verdict of one key's sub-history, with how far the search got.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct KeyReport {
    /// The key (`null` for events without a key).
    pub key: Option<String>,
    pub verdict: Verdict,
    /// Why the verdict is `invalid` (in one line) or `unknown`.
    pub reason: Option<String>,
    /// Operations checked for this key (after dropping failed and indeterminate reads).
    pub ops: usize,
    /// Of those, indeterminate (`info` or never completed) operations.
    pub info_ops: usize,
    /// Search steps (operations tentatively linearized).
    pub steps: u64,
    /// Distinct (linearized set, state) configurations cached.
    pub cache_entries: u64,
    /// The most operations linearized at once.
    pub max_linearized: usize,
    pub elapsed_ms: f64,
    /// For an invalid key: what could not be linearized.
    pub explanation: Option<Explanation>,
    /// Which procedure decided the key.
    #[serde(default)]
    pub procedure: Procedure,
}

/// The procedure that decided a key: the polynomial zone procedure (register keys whose
/// written values are unique, `zones`), or the search.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum Procedure {
    /// Gibbons & Korach's cluster/zone method with a verified witness or a proven violation.
    Zones,
    /// The Wing–Gong/Lowe search.
    #[default]
    Search,
}

impl std::fmt::Display for Procedure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Procedure::Zones => "zones",
            Procedure::Search => "search",
        })
    }
}

/// The result of [`check_linearizable`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LinearizabilityReport {
    pub verdict: Verdict,
    /// One line: which key is invalid, or why the verdict is unknown.
    pub reason: Option<String>,
    pub model: ModelKind,
    /// Per key, sorted by key.
    pub keys: Vec<KeyReport>,
    /// The first invalid key's explanation (also in its [`KeyReport`]).
    pub explanation: Option<Explanation>,
    /// Client operations in the history (invocations), including dropped ones.
    pub ops_total: usize,
    pub ops_ok: usize,
    pub ops_fail: usize,
    /// `info` completions plus invocations never completed.
    pub ops_info: usize,
    /// Nemesis events, ignored by this checker.
    pub nemesis_events: usize,
    pub elapsed_ms: f64,
}

impl LinearizabilityReport {
    /// A multi-line human-readable summary (the explanation included when invalid).
    pub fn to_text(&self) -> String {
        explain::report_text(self)
    }
}

/// Checks a history for linearizability against `model`. Never panics on bad input: a
/// malformed history gives `unknown` with the reason (use [`try_check_linearizable`] to get
/// the error instead).
pub fn check_linearizable(events: &[history::Event], model: ModelKind, opts: &CheckOptions) -> LinearizabilityReport {
    match try_check_linearizable(events, model, opts) {
        Ok(r) => r,
        Err(e) => LinearizabilityReport {
            verdict: Verdict::Unknown,
            reason: Some(format!("malformed history: {e}")),
            model,
            keys: Vec::new(),
            explanation: None,
            ops_total: 0,
            ops_ok: 0,
            ops_fail: 0,
            ops_info: 0,
            nemesis_events: 0,
            elapsed_ms: 0.0,
        },
    }
}

/// Like [`check_linearizable`], but a malformed history (completion without invocation,
/// value of the wrong shape for the model, ...) is an error naming the event.
pub fn try_check_linearizable(
    events: &[history::Event],
    model: ModelKind,
    opts: &CheckOptions,
) -> Result<LinearizabilityReport, HistoryError> {
    let started = Instant::now();
    let prepared = prepare::prepare_from(events, model, opts.initial_value)?;
    let deadline = opts.time_limit.map(|d| started + d);
    let budget = search::Budget {
        deadline,
        memory_limit_bytes: opts.memory_limit_bytes,
        memory_used: AtomicU64::new(0),
        cancel: AtomicBool::new(false),
    };
    // Small keys first: in stop-on-first-invalid mode an easy violation ends the check early,
    // and a hard key does not delay the easy ones.
    let mut order: Vec<usize> = (0..prepared.keys.len()).collect();
    order.sort_by_key(|&i| prepared.keys[i].ops.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<KeyReport>>> = Mutex::new(vec![None; prepared.keys.len()]);
    let threads = opts.threads.max(1).min(prepared.keys.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&k) = order.get(i) else { break };
                // The zone procedure first (register keys with unique written values); the
                // search decides whatever it hands over.
                let key = &prepared.keys[k];
                let fast = if opts.zones { zones::check_key(key, &budget) } else { None };
                let report = fast.unwrap_or_else(|| search::check_key(key, &budget));
                if report.verdict == Verdict::Invalid && opts.stop_on_first_invalid {
                    budget.cancel.store(true, Ordering::Relaxed);
                }
                results.lock().unwrap_or_else(|p| p.into_inner())[k] = Some(report);
            });
        }
    });
    let keys: Vec<KeyReport> = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every key is taken by exactly one worker"))
        .collect();
    let verdict = keys.iter().fold(Verdict::Valid, |v, k| v.combine(k.verdict));
    let reason = summarize_reason(verdict, &keys);
    let explanation = keys.iter().find(|k| k.verdict == Verdict::Invalid).and_then(|k| k.explanation.clone());
    Ok(LinearizabilityReport {
        verdict,
        reason,
        model,
        keys,
        explanation,
        ops_total: prepared.counts.total,
        ops_ok: prepared.counts.ok,
        ops_fail: prepared.counts.fail,
        ops_info: prepared.counts.info,
        nemesis_events: prepared.counts.nemesis,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

fn key_name(k: &Option<String>) -> String {
    match k {
        Some(k) => format!("{k:?}"),
        None => "(no key)".to_string(),
    }
}

fn summarize_reason(verdict: Verdict, keys: &[KeyReport]) -> Option<String> {
    match verdict {
        Verdict::Valid => None,
        Verdict::Invalid => {
            let bad: Vec<String> =
                keys.iter().filter(|k| k.verdict == Verdict::Invalid).map(|k| key_name(&k.key)).collect();
            let first = keys.iter().find(|k| k.verdict == Verdict::Invalid)?;
            Some(format!(
                "not linearizable: key{} {}: {}",
                if bad.len() > 1 { "s" } else { "" },
                bad.join(", "),
                first.reason.as_deref().unwrap_or("no linearization")
            ))
        }
        Verdict::Unknown => {
            let unknown: Vec<&KeyReport> = keys.iter().filter(|k| k.verdict == Verdict::Unknown).collect();
            let first = unknown.first()?;
            Some(format!(
                "{} of {} keys undecided; key {}: {}",
                unknown.len(),
                keys.len(),
                key_name(&first.key),
                first.reason.as_deref().unwrap_or("undecided")
            ))
        }
    }
}
