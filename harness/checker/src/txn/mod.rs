//! Transactional isolation checking in the manner of Elle (Kingsbury & Alvaro, VLDB 2020):
//! list-append and rw-register histories, their dependency graph, its cycles, and the
//! consistency models the anomalies rule out.
//!
//! Owns the entry point [`check`] and the report types. The parts:
//! - `parse`: events → transactions (pairing, micro-ops, bad input as [`TxnInputError`]);
//! - `list_append`, `register`: per model, the version orders, the anomalies found without a
//!   cycle (internal, garbage, duplicate elements, incompatible order, G1a, G1b, lost update)
//!   and the ww / wr / rw edges, each sound (it follows from the observations);
//! - this module: process-order and real-time edges (a real-time transitive reduction: each
//!   transaction gets edges from the completed transactions no later completion superseded);
//! - `graph`: the graph, iterative Tarjan components, shortest cycle through an edge;
//! - `cycles`: the staged cycle search and classification (G0 ... G2-item, `-process`,
//!   `-realtime`);
//! - [`models`]: the consistency-model map and which models each anomaly rules out;
//! - `explain`: each edge in words, the text report.
//!
//! Both histories formats reach this through [`crate::history::Event`]: history.jsonl, and
//! Jepsen/Elle EDN through [`crate::formats::Format::JepsenEdn`] (keywords become strings, so
//! `[:append 3 1]` reads as `["append", 3, 1]` and `nil` as `null`).

mod cycles;
mod explain;
mod graph;
mod list_append;
pub mod models;
mod parse;
mod register;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::history::Event;
use crate::Verdict;
pub use graph::EdgeKind;
pub use models::{AnomalyKind, ConsistencyModel, UnknownConsistencyModel};
pub use parse::TxnInputError;

use graph::{Edge, Graph};
use parse::{Status, Txns};

/// The data model of the transactions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum TxnModel {
    /// `["append", k, v]` and `["r", k, [v ...]]`.
    ListAppend,
    /// `["w", k, v]` and `["r", k, v]`.
    RwRegister,
}

impl TxnModel {
    pub fn name(self) -> &'static str {
        match self {
            TxnModel::ListAppend => "list-append",
            TxnModel::RwRegister => "rw-register",
        }
    }
}

impl std::str::FromStr for TxnModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "list-append" => Ok(TxnModel::ListAppend),
            "rw-register" => Ok(TxnModel::RwRegister),
            _ => Err(format!("unknown transaction model \"{s}\": expected list-append or rw-register")),
        }
    }
}

/// Budgets of [`check`].
#[derive(Clone, Debug)]
pub struct TxnOptions {
    /// Wall-clock budget; `None` = unbounded.
    pub time_limit: Option<Duration>,
    /// Budget for the graph (estimated at 40 bytes an edge); `None` = unbounded.
    pub memory_limit_bytes: Option<u64>,
    /// Edges the G-single search may examine in all (the one search that can be quadratic).
    pub search_steps_max: u64,
}

impl Default for TxnOptions {
    fn default() -> Self {
        TxnOptions {
            time_limit: Some(Duration::from_secs(60)),
            memory_limit_bytes: Some(2 << 30),
            search_steps_max: 200_000_000,
        }
    }
}

/// One edge of a reported cycle, transactions named by their history index.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CycleEdge {
    pub from: u64,
    pub to: u64,
    pub kind: EdgeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What was observed that forces the order, in words.
    pub explanation: String,
}

/// One anomaly: its kind, the transactions involved (history indices), and for a cycle its
/// edges in order (the last edge returns to the first transaction).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub txns: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<Vec<CycleEdge>>,
}

/// Edges of the dependency graph, by kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct EdgeCounts {
    pub ww: usize,
    pub wr: usize,
    pub rw: usize,
    pub process: usize,
    pub realtime: usize,
}

/// The result of [`check`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TxnReport {
    /// Valid: no anomaly rules out `consistency_model`; invalid: one does; unknown: a budget ran
    /// out before that was settled (`reason` says which).
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub model: TxnModel,
    pub consistency_model: ConsistencyModel,
    /// Every kind of anomaly found, and how many of each.
    pub anomaly_counts: BTreeMap<String, usize>,
    /// Examples: at most [`EXAMPLES_PER_KIND`] of each kind.
    pub anomalies: Vec<Anomaly>,
    /// The weakest models ruled out (Elle's `:not`) and those ruled out because they imply one
    /// of them (`:also-not`).
    pub not: Vec<ConsistencyModel>,
    pub also_not: Vec<ConsistencyModel>,
    /// Models the search could not settle (a budget ran out), other than those ruled out.
    pub undecided: Vec<ConsistencyModel>,
    pub txns: usize,
    pub txns_ok: usize,
    pub txns_info: usize,
    pub txns_fail: usize,
    pub nemesis_events: usize,
    pub edges: EdgeCounts,
    /// Strongly connected components (more than one transaction) of the whole graph, and the
    /// number of transactions in the largest.
    pub components: usize,
    pub largest_component: usize,
    pub elapsed_ms: f64,
}

impl TxnReport {
    /// A multi-line human-readable summary with each reported cycle in words.
    pub fn to_text(&self) -> String {
        explain::report_text(self)
    }
}

/// Anomalies of one kind kept in the report (all are counted).
pub const EXAMPLES_PER_KIND: usize = 8;

/// What a model's inference hands on: edges, anomalies without a cycle, and which
/// transactions are known to have committed (the graph's nodes that matter).
pub(crate) struct Inferred {
    pub edges: Vec<Edge>,
    pub anomalies: Vec<Anomaly>,
    pub included: Vec<bool>,
    /// At most this many edges are kept (the memory budget); past it `overflow` is set and the
    /// search is not run (edges are generated before the budget could otherwise be checked).
    pub edge_cap: usize,
    pub overflow: bool,
}

impl Inferred {
    fn new(n: usize, edge_cap: usize) -> Inferred {
        Inferred { edges: Vec::new(), anomalies: Vec::new(), included: vec![false; n], edge_cap, overflow: false }
    }

    pub fn push(&mut self, e: Edge) {
        if self.edges.len() < self.edge_cap {
            self.edges.push(e);
        } else {
            self.overflow = true;
        }
    }
}

/// Estimated bytes per edge of the graph (the edge, its sorted copy, adjacency).
const EDGE_BYTES: u64 = 40;

/// `[1 2 3]`, as Elle prints a list.
pub(crate) fn fmt_list(l: &[i64]) -> String {
    let items: Vec<String> = l.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(" "))
}

/// Checks a transaction history against `consistency_model`. Never panics on bad input: a
/// malformed history gives `unknown` with the reason ([`try_check`] returns the error).
pub fn check(events: &[Event], model: TxnModel, consistency_model: ConsistencyModel, opts: &TxnOptions) -> TxnReport {
    try_check(events, model, consistency_model, opts).unwrap_or_else(|e| TxnReport {
        verdict: Verdict::Unknown,
        reason: Some(format!("malformed history: {e}")),
        model,
        consistency_model,
        anomaly_counts: BTreeMap::new(),
        anomalies: Vec::new(),
        not: Vec::new(),
        also_not: Vec::new(),
        undecided: ConsistencyModel::ALL.to_vec(),
        txns: 0,
        txns_ok: 0,
        txns_info: 0,
        txns_fail: 0,
        nemesis_events: 0,
        edges: EdgeCounts::default(),
        components: 0,
        largest_component: 0,
        elapsed_ms: 0.0,
    })
}

/// Like [`check`], but a malformed history is an error naming the event.
pub fn try_check(
    events: &[Event],
    model: TxnModel,
    consistency_model: ConsistencyModel,
    opts: &TxnOptions,
) -> Result<TxnReport, TxnInputError> {
    let started = Instant::now();
    let deadline = opts.time_limit.map(|d| started + d);
    let fill_index = |mut e: TxnInputError| {
        e.index = events.get(e.position).map_or(0, |ev| ev.index);
        e
    };
    let t = parse::transactions(events, model)?;
    let edge_cap =
        opts.memory_limit_bytes.map_or(usize::MAX, |m| usize::try_from(m / EDGE_BYTES).unwrap_or(usize::MAX));
    let mut inferred = match model {
        TxnModel::ListAppend => list_append::infer(&t, edge_cap),
        TxnModel::RwRegister => register::infer(&t, edge_cap),
    }
    .map_err(fill_index)?;
    session_edges(&t, &mut inferred);
    let Inferred { edges, anomalies: mut found, overflow, .. } = inferred;
    let mut report = empty_report(&t, model, consistency_model);
    let mut why_undecided = None;
    if overflow {
        why_undecided = Some(format!(
            "memory limit reached: the graph needs more than {edge_cap} edges (about {} MiB)",
            (edge_cap as u64).saturating_mul(EDGE_BYTES) >> 20
        ));
    } else if deadline.is_some_and(|d| Instant::now() >= d) {
        why_undecided = Some("time limit reached while inferring the graph".to_string());
    } else {
        let g = Graph::new(t.txns.len(), edges);
        report.edges = edge_counts(&g);
        let cycles = cycles::search(&g, deadline, opts.search_steps_max);
        report.components = cycles.components;
        report.largest_component = cycles.largest_component;
        for (kind, cycle) in &cycles.cycles {
            found.push(cycle_anomaly(&t, model, &g, *kind, cycle));
        }
        if cycles.deadline_hit {
            why_undecided = Some("time limit reached during the cycle search".to_string());
        } else if cycles.g_single_undecided > 0 {
            report.undecided.push(ConsistencyModel::SnapshotIsolation);
            why_undecided = Some(format!(
                "the G-single and G-nonadjacent searches ran out of steps ({}) in {} component(s): snapshot-isolation left undecided there",
                opts.search_steps_max, cycles.g_single_undecided
            ));
        }
    }
    if why_undecided.is_some() && report.undecided.is_empty() {
        report.undecided = ConsistencyModel::ALL.to_vec();
    }
    finish(&mut report, found, why_undecided);
    report.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(report)
}

fn empty_report(t: &Txns, model: TxnModel, consistency_model: ConsistencyModel) -> TxnReport {
    let count = |s: Status| t.txns.iter().filter(|x| x.status == s).count();
    TxnReport {
        verdict: Verdict::Valid,
        reason: None,
        model,
        consistency_model,
        anomaly_counts: BTreeMap::new(),
        anomalies: Vec::new(),
        not: Vec::new(),
        also_not: Vec::new(),
        undecided: Vec::new(),
        txns: t.txns.len(),
        txns_ok: count(Status::Ok),
        txns_info: count(Status::Info),
        txns_fail: count(Status::Fail),
        nemesis_events: t.nemesis_events,
        edges: EdgeCounts::default(),
        components: 0,
        largest_component: 0,
        elapsed_ms: 0.0,
    }
}

fn edge_counts(g: &Graph) -> EdgeCounts {
    EdgeCounts {
        ww: g.count(EdgeKind::Ww),
        wr: g.count(EdgeKind::Wr),
        rw: g.count(EdgeKind::Rw),
        process: g.count(EdgeKind::Process),
        realtime: g.count(EdgeKind::Realtime),
    }
}

/// Counts, examples, the models ruled out, and the verdict for `report.consistency_model`.
fn finish(report: &mut TxnReport, mut found: Vec<Anomaly>, why_undecided: Option<String>) {
    found.sort_by_key(|a| a.kind);
    let kinds: Vec<AnomalyKind> = {
        let mut k: Vec<AnomalyKind> = found.iter().map(|a| a.kind).collect();
        k.dedup();
        k
    };
    let (not, also_not) = models::ruled_out(&kinds);
    let mut per_kind: BTreeMap<AnomalyKind, usize> = BTreeMap::new();
    for a in found {
        let n = per_kind.entry(a.kind).or_default();
        *n += 1;
        if *n <= EXAMPLES_PER_KIND {
            report.anomalies.push(a);
        }
    }
    report.anomaly_counts = per_kind.into_iter().map(|(k, n)| (k.name(), n)).collect();
    let m = report.consistency_model;
    let ruled_out = not.contains(&m) || also_not.contains(&m);
    report.undecided.retain(|u| !not.contains(u) && !also_not.contains(u));
    report.not = not;
    report.also_not = also_not;
    if ruled_out {
        report.verdict = Verdict::Invalid;
        let kinds: Vec<String> =
            kinds.iter().filter(|k| k.proscribed_by().iter().any(|p| m.implies(*p))).map(|k| k.name()).collect();
        report.reason = Some(format!("not {m}: {}", kinds.join(", ")));
    } else if report.undecided.contains(&m) {
        report.verdict = Verdict::Unknown;
        report.reason = why_undecided;
    } else {
        report.verdict = Verdict::Valid;
        report.reason = why_undecided;
    }
}

fn cycle_anomaly(t: &Txns, model: TxnModel, g: &Graph, kind: AnomalyKind, cycle: &[usize]) -> Anomaly {
    let edges: Vec<CycleEdge> = cycle
        .iter()
        .map(|&i| {
            let e = &g.edges[i];
            CycleEdge {
                from: t.txns[e.from as usize].label,
                to: t.txns[e.to as usize].label,
                kind: e.kind,
                key: t.keys.get(e.key as usize).cloned(),
                explanation: explain::edge_text(t, model, e),
            }
        })
        .collect();
    let txns: Vec<u64> = edges.iter().map(|e| e.from).collect();
    let names: Vec<String> = txns.iter().map(|l| format!("T{l}")).collect();
    let kinds: Vec<&str> = edges.iter().map(|e| e.kind.name()).collect();
    let description =
        format!("a cycle of {} transactions ({}) over {} edges", txns.len(), names.join(", "), kinds.join(", "));
    Anomaly { kind, txns, key: None, description, cycle: Some(edges) }
}

/// Process-order and real-time edges between the transactions in the graph (`included`).
/// Only a committed (`ok`) transaction has a known completion, so only it can precede.
fn session_edges(t: &Txns, out: &mut Inferred) {
    let included = out.included.clone();
    let mut last_ok: rustc_hash::FxHashMap<crate::history::Process, usize> = Default::default();
    for (i, txn) in t.txns.iter().enumerate() {
        if !included[i] {
            continue;
        }
        if let Some(&p) = last_ok.get(&txn.process) {
            out.push(Edge::order(p, i, EdgeKind::Process));
        }
        if txn.status == Status::Ok {
            last_ok.insert(txn.process, i);
        }
    }
    // Events in history order: at an invocation, an edge from each transaction of the
    // frontier (completed, not yet superseded); at a completion, the transaction replaces in
    // the frontier those it has edges from (they precede it, so they reach later ones
    // through it).
    let mut at: Vec<(usize, usize, bool)> = Vec::new();
    for (i, txn) in t.txns.iter().enumerate().filter(|(i, _)| included[*i]) {
        at.push((txn.invoke_pos, i, false));
        if let (Some(c), Status::Ok) = (txn.complete_pos, txn.status) {
            at.push((c, i, true));
        }
    }
    at.sort_unstable();
    let mut frontier: Vec<usize> = Vec::new();
    let mut preds: rustc_hash::FxHashMap<usize, Vec<usize>> = Default::default();
    for (_, i, completes) in at {
        if completes {
            let before = preds.remove(&i).unwrap_or_default();
            frontier.retain(|f| !before.contains(f));
            frontier.push(i);
        } else {
            for &f in &frontier {
                out.push(Edge::order(f, i, EdgeKind::Realtime));
            }
            preds.insert(i, frontier.clone());
        }
    }
}

#[cfg(test)]
mod tests;
