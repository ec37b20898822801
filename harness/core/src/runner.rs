//! The runner: one test through Jepsen's lifecycle.
//!
//! setup (start nodes, wait — bounded — until the cluster answers and has a leader) → main phase
//! (`concurrency` workers beside the nemesis schedule, until the time limit) → heal every fault
//! → quiet recovery → final reads of every key → teardown → analysis (checkers over the recorded
//! history.jsonl → results.json).
//!
//! Heal and teardown run whatever happened before them (an error, a cancelled run); on
//! cancellation (SIGINT/SIGTERM, signalled through the `cancel` watch) the main phase stops,
//! in-flight operations finish (bounded by the client timeout), recovery and final reads are
//! skipped, and the analysis of what was recorded still runs. Nothing after the history needs
//! the cluster.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faultline_checker::hierarchy::Consistency;
use faultline_checker::history::{EventType, Process};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::analysis;
use crate::checker::{check_all, History};
use crate::client::{Client, Completion, Op};
use crate::generator::{Pacer, ProcessIds};
use crate::history::{EventParts, HistoryWriter};
use crate::nemesis::{nemesis_for, Applied, Choice, ClockSample, Family, Nemesis, NemesisCtx, Schedule};
use crate::progress::Progress;
use crate::runtime::{Launch, Runtime};
use crate::store::RunDir;
use crate::target::Target;
use crate::workload::{CheckerResult, Workload};
use faultline_checker::Verdict;
use faultline_results::{FinalReads, Results, RuntimeInfo, Timings};

/// Everything that shapes a run (test.json records it).
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    pub test_name: String,
    pub seed: u64,
    pub concurrency: usize,
    pub rate: f64,
    pub time_limit: Duration,
    pub nemesis_interval: Duration,
    pub nemesis: Vec<Choice>,
    pub recovery: Duration,
    /// The clients' own timeout per operation (the longest an operation waits).
    pub op_timeout: Duration,
    /// When set, an operation invoked while no leader-churn window runs is given up after this
    /// shorter time (recorded as a client's own `timeout` is: a read failed, anything else
    /// indeterminate). A write under leader churn may be answered only after three elections;
    /// elsewhere a short timeout frees the clients of a cut-off leader to read from it again
    /// (what `stale-read` and `lease` need: measured on raft `lease`, 60 s, 10 seeds, 5 caught
    /// with 5 s for every operation, 10 with 5 s only for those invoked during churn).
    pub op_timeout_outside_churn: Option<Duration>,
    pub setup_timeout: Duration,
    pub final_read_timeout: Duration,
    /// An explicit fault schedule to follow (`--schedule`, a replay); else one is generated.
    #[serde(skip)]
    pub schedule: Option<Schedule>,
    /// The exact command that reproduces this run.
    pub repro: String,
    /// The command-line options as given (recorded verbatim in test.json).
    pub options: Value,
}

/// The collaborators of a run.
pub struct RunInputs {
    pub runtime: Arc<dyn Runtime>,
    pub target: Arc<dyn Target>,
    pub workload: Arc<dyn Workload>,
    /// The target's client for the workload's data type ([`Target::client`]).
    pub client: Arc<dyn Client>,
    pub run_dir: RunDir,
    pub progress: Arc<Progress>,
    /// Flips to true on SIGINT/SIGTERM.
    pub cancel: watch::Receiver<bool>,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// `None` when the harness failed before it could judge (setup failed).
    pub verdict: Option<Verdict>,
    pub results: Results,
    pub interrupted: bool,
    /// Harness failures (setup, teardown, ...), also in results.json.
    pub errors: Vec<String>,
}

impl RunOutcome {
    /// A run that failed before anything could be recorded.
    fn harness_failure(errors: Vec<String>) -> RunOutcome {
        RunOutcome {
            verdict: None,
            results: Results { errors: errors.clone(), ..Results::default() },
            interrupted: false,
            errors,
        }
    }
}

pub use faultline_results::FaultRecord;

struct Shared {
    history: HistoryWriter,
    progress: Arc<Progress>,
    keys: Mutex<BTreeSet<String>>,
    max_process: AtomicU64,
    /// A leader-churn window is running (see [`RunConfig::op_timeout_outside_churn`]).
    churning: AtomicBool,
}

/// How long an operation may take before the harness gives up on it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OpBound {
    /// The client's own timeout decides; the harness's bound is a guard a second later.
    Client(Duration),
    /// Shorter than the client's own timeout: the harness gives up at this time.
    Short(Duration),
}

/// The outcome of an operation the harness gave up on: past a short bound, what a client's own
/// timeout gives ([`crate::client::error_outcome`]: a read changed nothing, anything else may
/// have happened); past the guard, indeterminate.
fn given_up(op: &Op, bound: OpBound, node: &str) -> Completion {
    match bound {
        OpBound::Short(_) => crate::client::error_outcome(op, false, "timeout".into(), node),
        OpBound::Client(_) => Completion::info(op.value.clone(), "harness-timeout", node),
    }
}

/// The bound of an operation a worker invokes now.
fn op_bound(cfg: &RunConfig, churning: bool) -> OpBound {
    match cfg.op_timeout_outside_churn {
        Some(t) if !churning && t < cfg.op_timeout => OpBound::Short(t),
        _ => OpBound::Client(cfg.op_timeout),
    }
}

impl Shared {
    fn record(&self, parts: EventParts) {
        if let Err(e) = self.history.record(parts) {
            // The history is the product of the run: losing it is a harness failure.
            tracing::error!("history write failed: {e}");
        }
    }

    fn nemesis_event(&self, f: &str, value: Value) {
        self.record(EventParts {
            kind: EventType::Info,
            process: Process::Nemesis,
            f: f.into(),
            key: None,
            value,
            error: None,
            node: None,
        });
    }
}

fn cancelled(c: &watch::Receiver<bool>) -> bool {
    *c.borrow()
}

/// Sleeps `d` or until cancelled; returns false when cancelled.
async fn sleep_or_cancel(d: Duration, cancel: &mut watch::Receiver<bool>) -> bool {
    if cancelled(cancel) {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => !cancelled(cancel),
        _ = cancel.changed() => false,
    }
}

/// The keys an operation touches (what the final phase reads): its `key`, or for a transaction
/// (`f` `txn`, no key) the key of each `[f, key, value]` micro-op.
fn op_keys(op: &Op) -> Vec<String> {
    match (&op.key, op.value.as_array()) {
        (Some(k), _) => vec![k.clone()],
        (None, Some(micro)) if op.f == "txn" => {
            micro.iter().filter_map(|m| m.get(1)?.as_str().map(String::from)).collect()
        }
        _ => Vec::new(),
    }
}

/// Invokes `op` as `process` on `node`, recording invoke and completion.
#[allow(clippy::too_many_arguments)] // each is a distinct collaborator; a struct would only rename them
async fn invoke_recorded(
    shared: &Shared,
    client: &dyn Client,
    runtime: &dyn Runtime,
    node: &str,
    process: u64,
    op: &Op,
    bound: OpBound,
) -> Completion {
    shared.max_process.fetch_max(process, Ordering::Relaxed);
    let keys = op_keys(op);
    if !keys.is_empty() {
        shared.keys.lock().expect("keys lock").extend(keys);
    }
    shared.record(EventParts {
        kind: EventType::Invoke,
        process: Process::Client(process),
        f: op.f.clone(),
        key: op.key.clone(),
        value: op.value.clone(),
        error: None,
        node: Some(node.into()),
    });
    let addr = runtime.client_addr(node).unwrap_or_default();
    // The HTTP client has its own timeout; the guard a second later bounds anything else.
    let limit = match bound {
        OpBound::Client(t) => t + Duration::from_secs(1),
        OpBound::Short(t) => t,
    };
    let completion = match tokio::time::timeout(limit, client.invoke(&addr, node, op)).await {
        Ok(c) => c,
        Err(_) => given_up(op, bound, node),
    };
    let counter = match completion.kind {
        EventType::Ok => &shared.progress.ok,
        EventType::Fail => &shared.progress.fail,
        _ => &shared.progress.info,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    shared.record(EventParts {
        kind: completion.kind,
        process: Process::Client(process),
        f: op.f.clone(),
        key: op.key.clone(),
        value: completion.value.clone(),
        error: completion.error.clone(),
        node: completion.node.clone().or_else(|| Some(node.into())),
    });
    completion
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    worker: u64,
    cfg: Arc<RunConfig>,
    shared: Arc<Shared>,
    workload: Arc<dyn Workload>,
    client: Arc<dyn Client>,
    runtime: Arc<dyn Runtime>,
    nodes: Arc<Vec<String>>,
    deadline: Instant,
    mut cancel: watch::Receiver<bool>,
) -> ProcessIds {
    let mut generator = workload.generator(cfg.seed, worker, cfg.concurrency);
    let mut pacer = Pacer::new(cfg.seed, worker, cfg.rate, cfg.concurrency);
    let mut procs = ProcessIds::new(worker, cfg.concurrency as u64);
    let mut choice = NodeChoice::new(worker, nodes.len());
    loop {
        let delay = pacer.next_delay();
        let now = Instant::now();
        if now + delay >= deadline || !sleep_or_cancel(delay, &mut cancel).await {
            break;
        }
        let Some(op) = generator.next_op() else { break };
        let c = invoke_recorded(
            &shared,
            client.as_ref(),
            runtime.as_ref(),
            &nodes[choice.current(Instant::now())],
            procs.current(),
            &op,
            op_bound(&cfg, shared.churning.load(Ordering::Relaxed)),
        )
        .await;
        match c.kind {
            EventType::Info => {
                procs.retire();
            }
            EventType::Fail if c.error.as_deref() == Some("connect") => choice.refused(Instant::now()),
            _ => {}
        }
    }
    procs
}

/// How long a worker that left its home node stays away before trying it again.
const HOME_RETRY: Duration = Duration::from_millis(1000);

/// Which node a worker sends its next operation to. Worker `w` lives on node `w mod nodes`, so
/// the clients are spread over the nodes; a node that refuses connections is down, and the
/// worker tries the next one, but it goes home again once [`HOME_RETRY`] has passed since it
/// left. Without the return, a kill of every node sent each worker on to whichever node came
/// back first, and it stayed there for the rest of the run: in one 60 s raft run 6 of 10 workers
/// ended on one node and none on the node that a later fault cut off as leader, which then had
/// no client to serve a stale read to.
#[derive(Debug)]
struct NodeChoice {
    home: usize,
    ix: usize,
    nodes: usize,
    left_home_at: Option<Instant>,
}

impl NodeChoice {
    fn new(worker: u64, nodes: usize) -> Self {
        let home = worker as usize % nodes.max(1);
        NodeChoice { home, ix: home, nodes: nodes.max(1), left_home_at: None }
    }

    /// The node for an operation sent at `now`.
    fn current(&mut self, now: Instant) -> usize {
        if self.left_home_at.is_some_and(|t| now.saturating_duration_since(t) >= HOME_RETRY) {
            self.ix = self.home;
            self.left_home_at = None;
        }
        self.ix
    }

    /// The current node refused the connection at `now`: on to the next one.
    fn refused(&mut self, now: Instant) {
        self.ix = (self.ix + 1) % self.nodes;
        self.left_home_at.get_or_insert(now);
    }
}

/// Runs the nemesis schedule; returns the fault records.
async fn nemesis_task(
    schedule: Schedule,
    ctx: Arc<NemesisCtx>,
    nemeses: Arc<Vec<Box<dyn Nemesis>>>,
    shared: Arc<Shared>,
    started: Instant,
    mut cancel: watch::Receiver<bool>,
) -> Vec<FaultRecord> {
    let mut records = Vec::new();
    for s in schedule.faults {
        let at = started + Duration::from_secs_f64(s.start_s);
        if !sleep_or_cancel(at.saturating_duration_since(Instant::now()), &mut cancel).await {
            break;
        }
        let Some(nem) = nemeses.iter().find(|n| n.family() == s.spec.family) else {
            continue;
        };
        let fam = s.spec.family.as_str();
        let applied: Applied = nem.start(&ctx, &s.spec).await;
        let churn = applied.applied && s.spec.is_leader_churn();
        shared.churning.store(churn, Ordering::Relaxed);
        let label = format!("{fam}:{}", s.spec.kind);
        if applied.applied {
            shared.progress.fault_started(&label);
            tracing::info!("start {label} on {:?} via {}", applied.nodes, applied.mechanism);
        } else {
            tracing::warn!("fault {label} NOT applied: {}", applied.error.as_deref().unwrap_or("?"));
        }
        let start_ns = shared.history.now_ns();
        shared.nemesis_event(
            &format!("start-{fam}"),
            json!({ "kind": s.spec.kind, "nodes": applied.nodes, "applied": applied.applied,
                    "mechanism": applied.mechanism, "error": applied.error, "detail": applied.detail }),
        );
        let mut rec = FaultRecord {
            fault: fam.into(),
            kind: s.spec.kind.clone(),
            nodes: applied.nodes.clone(),
            start_ns,
            end_ns: None,
            applied: applied.applied,
            mechanism: applied.mechanism.clone(),
            error: applied.error.clone(),
            stop_error: None,
            detail: applied.detail.clone(),
        };
        let until = started + Duration::from_secs_f64(s.end_s);
        let finished = sleep_or_cancel(until.saturating_duration_since(Instant::now()), &mut cancel).await;
        if finished {
            let stopped = nem.stop(&ctx, &s.spec, &applied).await;
            shared.churning.store(false, Ordering::Relaxed);
            rec.end_ns = Some(shared.history.now_ns());
            shared.nemesis_event(
                &format!("stop-{fam}"),
                json!({ "kind": s.spec.kind, "nodes": applied.nodes, "healed": stopped.is_ok(), "error": stopped.as_ref().err() }),
            );
            rec.stop_error = stopped.err();
            shared.progress.fault_stopped(&label);
        }
        records.push(rec);
        if !finished {
            break; // cancelled: the heal-all below ends the fault
        }
    }
    records
}

/// How often the clock sampler asks every node for its clock during the main phase.
pub const CLOCK_SAMPLE_PERIOD: Duration = Duration::from_millis(1000);

/// Records each node's reported clock offset (`/admin/status`) every `period`, all nodes
/// concurrently, each bounded so a paused node cannot stall it. Runs until aborted.
async fn clock_sampler(ctx: Arc<NemesisCtx>, period: Duration) {
    loop {
        let mut set = crate::target::ask_statuses(&ctx.target, ctx.node_addrs(), period / 2);
        while let Some(r) = set.join_next().await {
            let Ok(Some((node, status))) = r else { continue };
            let Some(offset_ms) = status.clock_offset_ms else { continue };
            let time_ns = (ctx.now_ns)();
            if let Ok(mut s) = ctx.clock_samples.lock() {
                if s.len() < crate::nemesis::clock::SAMPLES_MAX {
                    s.push(ClockSample { time_ns, node, offset_ms });
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Waits until the target says the cluster is ready ([`Target::ready`]); bounded.
async fn wait_ready(
    runtime: &dyn Runtime,
    target: &dyn Target,
    timeout: Duration,
    cancel: &mut watch::Receiver<bool>,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < timeout {
        for n in runtime.nodes() {
            if !runtime.is_running(&n.id) {
                return Err(format!("node {} exited during setup (see nodes/{}.log)", n.id, n.id));
            }
        }
        let mut statuses = Vec::with_capacity(runtime.nodes().len());
        for n in runtime.nodes() {
            statuses.push((n.id.clone(), target.status(&n.addr()).await));
        }
        match target.ready(&statuses) {
            Ok(()) => return Ok(started.elapsed()),
            Err(why) => last = why,
        }
        if !sleep_or_cancel(Duration::from_millis(100), cancel).await {
            return Err("cancelled during setup".into());
        }
    }
    Err(format!("cluster not ready within {:.0} s: {last}", timeout.as_secs_f64()))
}

/// Runs one test. Never returns without having torn the runtime down.
///
/// The bracket, as Jepsen's `run!`: test.json and the history writer; [`setup`]; while the
/// cluster is up, [`main_phase`] → [`heal`] → [`recovery_and_final_reads`] → the target's
/// final stats; [`ClusterGuard::teardown`] on every path (its `Drop` tears down too, should
/// anything in between panic); then [`analyse`] over the history read back from disk.
pub async fn run(cfg: RunConfig, inputs: RunInputs) -> RunOutcome {
    let t0 = Instant::now();
    let schedule = Schedule::for_run(
        cfg.schedule.as_ref(),
        cfg.seed,
        &cfg.nemesis,
        inputs.runtime.nodes().len(),
        inputs.target.as_ref(),
        cfg.time_limit.as_secs_f64(),
        cfg.nemesis_interval.as_secs_f64(),
    );
    let mut errors = Vec::new();
    if let Err(e) = write_test_json(&cfg, &inputs, &schedule) {
        errors.push(e);
    }
    let guard = ClusterGuard::new(inputs.runtime.clone());
    let history = match HistoryWriter::create(&inputs.run_dir.history()) {
        Ok(h) => h,
        Err(e) => {
            errors.push(e.to_string());
            if let Err(e) = guard.teardown() {
                errors.push(format!("teardown: {e}"));
            }
            return RunOutcome::harness_failure(errors);
        }
    };
    let mut r = RunState::new(cfg, inputs, history, errors);
    let mut up = UpPhase::default();
    if let Some(cluster) = setup(&mut r).await {
        up = cluster_up(&mut r, &cluster, &schedule).await;
    }
    r.inputs.progress.set_phase("teardown");
    let td = Instant::now();
    if let Err(e) = guard.teardown() {
        r.errors.push(format!("teardown: {e}"));
    }
    r.timings.teardown_s = Some(td.elapsed().as_secs_f64());
    finish(r, up, &schedule, t0)
}

/// Everything a run accumulates between its phases.
struct RunState {
    cfg: Arc<RunConfig>,
    inputs: RunInputs,
    shared: Arc<Shared>,
    errors: Vec<String>,
    timings: Timings,
}

impl RunState {
    fn new(cfg: RunConfig, inputs: RunInputs, history: HistoryWriter, errors: Vec<String>) -> RunState {
        let shared = Arc::new(Shared {
            history,
            progress: inputs.progress.clone(),
            keys: Mutex::new(BTreeSet::new()),
            max_process: AtomicU64::new(0),
            churning: AtomicBool::new(false),
        });
        RunState { cfg: Arc::new(cfg), inputs, shared, errors, timings: Timings::default() }
    }

    fn cancelled(&self) -> bool {
        cancelled(&self.inputs.cancel)
    }
}

/// Tears the runtime down exactly once: by [`ClusterGuard::teardown`] on the normal paths, or
/// on drop (a panic between setup and teardown), so no run leaves nodes, namespaces or rules.
pub struct ClusterGuard {
    runtime: Option<Arc<dyn Runtime>>,
}

impl ClusterGuard {
    pub fn new(runtime: Arc<dyn Runtime>) -> ClusterGuard {
        ClusterGuard { runtime: Some(runtime) }
    }

    /// Tears down now.
    pub fn teardown(mut self) -> Result<(), crate::runtime::RuntimeError> {
        match self.runtime.take() {
            Some(rt) => rt.teardown(),
            None => Ok(()),
        }
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            if let Err(e) = rt.teardown() {
                tracing::error!("teardown after an early exit: {e}");
            }
        }
    }
}

fn write_test_json(cfg: &RunConfig, inputs: &RunInputs, schedule: &Schedule) -> Result<(), String> {
    let runtime = &inputs.runtime;
    let test_json = json!({
        "name": cfg.test_name,
        "seed": cfg.seed,
        "options": cfg.options,
        "config": cfg,
        "schedule": schedule,
        "runtime": { "kind": runtime.kind(), "mechanism": runtime.mechanism().as_str(), "run_id": runtime.run_id(),
                      "nodes": runtime.nodes() },
        "target": inputs.target.name(),
        "workload": inputs.workload.name(),
        "versions": { "faultline": env!("CARGO_PKG_VERSION") },
        "started_at": chrono::Utc::now().to_rfc3339(),
        "repro": cfg.repro,
    });
    inputs.run_dir.write_json("test.json", &test_json).map_err(|e| e.to_string())
}

/// A cluster that came up: how to (re)start each node, and the nodes clients address.
struct Cluster {
    launches: Vec<(String, Launch)>,
    client_nodes: Arc<Vec<String>>,
}

/// Starts every node and waits (bounded) until the target says the cluster is ready. `None`
/// when setup failed (the error is recorded) or was interrupted.
async fn setup(r: &mut RunState) -> Option<Cluster> {
    r.inputs.progress.set_phase("setup");
    let (runtime, target, run_dir) = (&r.inputs.runtime, &r.inputs.target, &r.inputs.run_dir);
    let mut launches: Vec<(String, Launch)> = Vec::new();
    for n in runtime.nodes() {
        let data = run_dir.node_data(&n.id);
        if let Err(e) = std::fs::create_dir_all(&data) {
            r.errors.push(format!("cannot create {}: {e}", data.display()));
            return None;
        }
        launches.push((n.id.clone(), target.launch(n, runtime.nodes(), &data, &run_dir.node_log(&n.id))));
    }
    // All at once: the Docker runtime creates every container with one compose call.
    if let Err(e) = runtime.start_nodes(&launches) {
        r.errors.push(format!("setup: {e}"));
        return None;
    }
    match wait_ready(runtime.as_ref(), target.as_ref(), r.cfg.setup_timeout, &mut r.inputs.cancel).await {
        Ok(d) => {
            r.timings.ready_s = Some(d.as_secs_f64());
            tracing::info!("cluster ready after {:.2} s", d.as_secs_f64());
        }
        Err(e) => {
            if !r.cancelled() {
                r.errors.push(format!("setup: {e}"));
            }
            return None;
        }
    }
    // The nodes clients address: every node, or a target's front (router, load balancer).
    let client_nodes = target.client_nodes(runtime.nodes());
    if client_nodes.is_empty() || client_nodes.iter().any(|c| !runtime.nodes().iter().any(|n| &n.id == c)) {
        r.errors
            .push(format!("setup: target {} names client nodes {client_nodes:?} outside the cluster", target.name()));
        return None;
    }
    Some(Cluster { launches, client_nodes: Arc::new(client_nodes) })
}

/// What the phases with a live cluster produced.
#[derive(Default)]
struct UpPhase {
    setup_ok: bool,
    faults: Vec<FaultRecord>,
    clock: Vec<ClockSample>,
    final_reads: Option<FinalReads>,
    target_stats: Option<Value>,
}

/// The phases that need the cluster: main phase, heal, recovery and final reads, final stats.
async fn cluster_up(r: &mut RunState, cluster: &Cluster, schedule: &Schedule) -> UpPhase {
    let clock_samples: Arc<Mutex<Vec<ClockSample>>> = Arc::new(Mutex::new(Vec::new()));
    let shared_for_clock = r.shared.clone();
    let shared_for_events = r.shared.clone();
    let ctx = Arc::new(NemesisCtx {
        runtime: r.inputs.runtime.clone(),
        target: r.inputs.target.clone(),
        launches: cluster.launches.clone(),
        clock_samples: clock_samples.clone(),
        now_ns: Arc::new(move || shared_for_clock.history.now_ns()),
        event: Arc::new(move |f, value| shared_for_events.nemesis_event(f, value)),
    });
    // One nemesis per family, shared by the schedule and the heal (the clock nemesis owns its
    // strobe task, which the heal must stop).
    let nemeses: Arc<Vec<Box<dyn Nemesis>>> = Arc::new(Family::ALL.iter().map(|f| nemesis_for(*f)).collect());
    let mut faults = main_phase(r, cluster, schedule, &ctx, &nemeses).await;
    heal(r, &ctx, &nemeses, &mut faults).await;
    let final_reads = recovery_and_final_reads(r, cluster).await;
    // Asked while the cluster still runs; bounded so a hung node cannot stall the teardown.
    let stats = r.inputs.target.final_stats(r.inputs.runtime.nodes());
    let target_stats = tokio::time::timeout(r.cfg.op_timeout * 2, stats).await.ok().flatten();
    let mut clock = clock_samples.lock().expect("clock lock").clone();
    clock.sort_by_key(|s| s.time_ns);
    UpPhase { setup_ok: true, faults, clock, final_reads, target_stats }
}

/// `concurrency` workers beside the nemesis schedule (and the clock sampler when clocks are
/// skewed) until the time limit or a cancel; returns the fault records.
async fn main_phase(
    r: &mut RunState,
    cluster: &Cluster,
    schedule: &Schedule,
    ctx: &Arc<NemesisCtx>,
    nemeses: &Arc<Vec<Box<dyn Nemesis>>>,
) -> Vec<FaultRecord> {
    r.inputs.progress.set_phase("main");
    let main_start = Instant::now();
    let deadline = main_start + r.cfg.time_limit;
    let workers: Vec<_> = (0..r.cfg.concurrency as u64)
        .map(|w| {
            tokio::spawn(worker(
                w,
                r.cfg.clone(),
                r.shared.clone(),
                r.inputs.workload.clone(),
                r.inputs.client.clone(),
                r.inputs.runtime.clone(),
                cluster.client_nodes.clone(),
                deadline,
                r.inputs.cancel.clone(),
            ))
        })
        .collect();
    let nem = tokio::spawn(nemesis_task(
        schedule.clone(),
        ctx.clone(),
        nemeses.clone(),
        r.shared.clone(),
        main_start,
        r.inputs.cancel.clone(),
    ));
    // Only when clocks are skewed is there something to plot; sample what nodes report.
    let sampler = r
        .cfg
        .nemesis
        .iter()
        .any(|c| c.family == Family::Clock)
        .then(|| tokio::spawn(clock_sampler(ctx.clone(), CLOCK_SAMPLE_PERIOD)));
    for w in workers {
        if let Err(e) = w.await {
            r.errors.push(format!("worker failed: {e}"));
        }
    }
    let faults = nem.await.unwrap_or_else(|e| {
        r.errors.push(format!("nemesis failed: {e}"));
        Vec::new()
    });
    if let Some(s) = sampler {
        s.abort();
    }
    r.timings.main_s = Some(main_start.elapsed().as_secs_f64());
    note_crashed_nodes(r, &faults);
    faults
}

/// Records nodes that stopped running on their own (not killed by a fault still in force).
fn note_crashed_nodes(r: &mut RunState, faults: &[FaultRecord]) {
    let killed: BTreeSet<&String> =
        faults.iter().filter(|f| f.fault == "kill" && f.end_ns.is_none()).flat_map(|f| f.nodes.iter()).collect();
    let runtime = &r.inputs.runtime;
    let crashed: Vec<String> = runtime
        .nodes()
        .iter()
        .filter(|n| !runtime.is_running(&n.id) && !killed.contains(&n.id))
        .map(|n| n.id.clone())
        .collect();
    if !crashed.is_empty() {
        r.errors.push(format!("nodes {crashed:?} exited on their own during the run (see nodes/*.log)"));
    }
}

/// Heals everything (idempotent), whatever happened in the main phase, recorded as one `heal`
/// event; closes the records of faults still in force. Order: restart killed nodes, resume
/// paused ones, then the network (partition, loss and latency share one heal), then clocks (a
/// node must run to have its clock reset).
async fn heal(r: &RunState, ctx: &NemesisCtx, nemeses: &[Box<dyn Nemesis>], faults: &mut [FaultRecord]) {
    r.inputs.progress.set_phase("heal");
    let heal_order = [Family::Kill, Family::Pause, Family::Partition, Family::Clock];
    let mut heal_errors = Vec::new();
    for n in heal_order.iter().filter_map(|f| nemeses.iter().find(|n| n.family() == *f)) {
        if let Err(e) = n.heal_all(ctx).await {
            heal_errors.push(format!("{}: {e}", n.family().as_str()));
        }
    }
    r.inputs.progress.clear_faults();
    r.shared.nemesis_event("heal", json!({ "ok": heal_errors.is_empty(), "errors": heal_errors }));
    let now = r.shared.history.now_ns();
    for f in faults.iter_mut().filter(|f| f.end_ns.is_none()) {
        f.end_ns = Some(now);
    }
    if !heal_errors.is_empty() {
        tracing::warn!("heal: {heal_errors:?}");
    }
}

/// A quiet recovery period, then a final read of every key; skipped once cancelled.
async fn recovery_and_final_reads(r: &mut RunState, cluster: &Cluster) -> Option<FinalReads> {
    if r.cancelled() {
        return None;
    }
    r.inputs.progress.set_phase("recovery");
    sleep_or_cancel(r.cfg.recovery, &mut r.inputs.cancel).await;
    if r.cancelled() {
        return None;
    }
    r.inputs.progress.set_phase("final reads");
    let RunState { cfg, inputs, shared, .. } = r;
    let final_reads = final_phase(
        cfg,
        shared,
        inputs.workload.as_ref(),
        inputs.client.as_ref(),
        inputs.runtime.as_ref(),
        &cluster.client_nodes,
        &mut inputs.cancel,
    )
    .await;
    Some(final_reads)
}

/// Reads the history back, analyses it and writes results.json.
fn finish(mut r: RunState, up: UpPhase, schedule: &Schedule, t0: Instant) -> RunOutcome {
    r.inputs.progress.set_phase("analysis");
    let an = Instant::now();
    let interrupted = r.cancelled();
    let text = std::fs::read_to_string(r.inputs.run_dir.history()).unwrap_or_default();
    let (events, parse_warnings) = match faultline_checker::jsonl::parse(&text) {
        Ok(p) => (p.events, p.warnings),
        Err(e) => {
            r.errors.push(format!("history.jsonl:{e}"));
            (Vec::new(), Vec::new())
        }
    };
    let input = AnalysisInput {
        workload: r.inputs.workload.as_ref(),
        target: r.inputs.target.as_ref(),
        nodes: r.inputs.runtime.nodes(),
        target_stats: up.target_stats.as_ref(),
        interrupted,
    };
    let mut results = analyse(&events, &input, &mut r.timings);
    results.setup_failed = !up.setup_ok && !interrupted;
    results.history_warnings = parse_warnings;
    results.faults_not_applied = up.faults.iter().filter(|f| !f.applied).count();
    results.faults = up.faults;
    results.clock = up.clock;
    results.final_reads = up.final_reads;
    results.target_stats = up.target_stats;
    results.runtime = runtime_info(r.inputs.runtime.as_ref());
    results.schedule = schedule.name.clone();
    results.seed = r.cfg.seed;
    results.repro = r.cfg.repro.clone();
    r.timings.analysis_s = Some(an.elapsed().as_secs_f64());
    r.timings.total_s = Some(t0.elapsed().as_secs_f64());
    results.timings = r.timings;
    results.errors = std::mem::take(&mut r.errors);
    if let Err(e) = r.inputs.run_dir.write_json("results.json", &results) {
        results.errors.push(e.to_string());
    }
    r.inputs.progress.set_phase("done");
    RunOutcome {
        verdict: (!results.setup_failed).then_some(results.verdict),
        interrupted,
        errors: results.errors.clone(),
        results,
    }
}

fn runtime_info(runtime: &dyn Runtime) -> RuntimeInfo {
    RuntimeInfo {
        kind: runtime.kind().to_string(),
        mechanism: runtime.mechanism().as_str().to_string(),
        run_id: runtime.run_id().to_string(),
        // Set by `faultline run` when it re-ran itself in an unprivileged user namespace.
        userns: std::env::var_os("FAULTLINE_USERNS").is_some(),
    }
}

/// What [`analyse`] judges a history with.
pub struct AnalysisInput<'a> {
    pub workload: &'a dyn Workload,
    pub target: &'a dyn Target,
    pub nodes: &'a [crate::runtime::NodeSpec],
    /// The target's own final report ([`Target::final_stats`]).
    pub target_stats: Option<&'a Value>,
    /// The run was cancelled: valid so far is not a verdict on the planned test.
    pub interrupted: bool,
}

/// The pure analysis of a recorded history: op counts, latency, availability, the workload's
/// and the target's checkers, the consistency ladder and the combined verdict. Needs no
/// cluster; fills `timings.consistency_s`.
pub fn analyse(events: &[faultline_checker::history::Event], input: &AnalysisInput, timings: &mut Timings) -> Results {
    let stats = analysis::op_stats(events);
    let avail = analysis::availability(events);
    let h = History { events, nodes: input.nodes, target_stats: input.target_stats };
    let mut checkers: Vec<CheckerResult> =
        if events.is_empty() { Vec::new() } else { check_all(&input.workload.checkers(), &h) };
    let models_started = Instant::now();
    let consistency = if events.is_empty() {
        Consistency::not_checked("no history was recorded")
    } else {
        input.workload.consistency(events, &checkers)
    };
    timings.consistency_s = Some(models_started.elapsed().as_secs_f64());
    // The target's own promises (a balancer's distribution, a router's key balance).
    checkers.extend(check_all(&input.target.checkers(input.workload.data_type()), &h));
    checkers.push(analysis::availability_checker(&avail, &stats));
    let mut verdict = analysis::combine(&checkers);
    let isolation = faultline_results::Isolation::from_checkers(&checkers);
    if input.interrupted && verdict == Verdict::Valid {
        // The planned test did not complete; valid so far is not a verdict on the test.
        verdict = Verdict::Unknown;
    }
    Results {
        verdict,
        interrupted: input.interrupted,
        checkers,
        consistency: Some(consistency),
        isolation,
        ops: stats,
        latency: analysis::latencies(events),
        availability: avail,
        ..Results::default()
    }
}

/// Reads every key once more through a healthy cluster, retrying (bounded) until each read
/// succeeds. Runs as fresh processes after every worker's.
async fn final_phase(
    cfg: &RunConfig,
    shared: &Shared,
    workload: &dyn Workload,
    client: &dyn Client,
    runtime: &dyn Runtime,
    nodes: &[String],
    cancel: &mut watch::Receiver<bool>,
) -> FinalReads {
    let keys: Vec<String> = shared.keys.lock().expect("keys lock").iter().cloned().collect();
    let ops = workload.final_ops(&keys);
    let deadline = Instant::now() + cfg.final_read_timeout;
    let mut process = shared.max_process.load(Ordering::Relaxed) + 1;
    let (mut ok, mut missed) = (0u64, Vec::new());
    let mut node_ix = 0usize;
    // (op, the node it must run on, if pinned): every node in turn when the workload asks.
    let pinned: Vec<(&Op, Option<usize>)> = if workload.final_ops_on_every_node() {
        ops.iter().flat_map(|op| (0..nodes.len()).map(move |n| (op, Some(n)))).collect()
    } else {
        ops.iter().map(|op| (op, None)).collect()
    };
    for (op, pin) in pinned {
        let mut done = false;
        while Instant::now() < deadline && !cancelled(cancel) {
            let c = invoke_recorded(
                shared,
                client,
                runtime,
                &nodes[pin.unwrap_or(node_ix) % nodes.len()],
                process,
                op,
                OpBound::Client(cfg.op_timeout),
            )
            .await;
            match c.kind {
                EventType::Ok => {
                    done = true;
                    break;
                }
                EventType::Info => process += 1, // retired; fresh ids stay above every worker's
                _ => {}
            }
            node_ix += 1;
            sleep_or_cancel(Duration::from_millis(100), cancel).await;
        }
        if done {
            ok += 1;
        } else {
            let key = op.key.clone().unwrap_or_default();
            missed.push(match pin {
                Some(n) => format!("{key}@{}", nodes[n]),
                None => key,
            });
        }
    }
    FinalReads { keys: keys.len(), ok, missed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_moves_on_from_a_refusing_node_and_goes_home_after_a_while() {
        let t0 = Instant::now();
        let mut c = NodeChoice::new(8, 5);
        assert_eq!(c.current(t0), 3, "worker 8 of 5 nodes lives on node 3");
        c.refused(t0);
        assert_eq!(c.current(t0), 4);
        c.refused(t0 + Duration::from_millis(10));
        assert_eq!(c.current(t0 + Duration::from_millis(20)), 0, "wraps around");
        assert_eq!(c.current(t0 + HOME_RETRY - Duration::from_millis(1)), 0, "away until the retry");
        assert_eq!(c.current(t0 + HOME_RETRY), 3, "home again, timed from when it left");
        c.refused(t0 + HOME_RETRY);
        assert_eq!(c.current(t0 + HOME_RETRY + Duration::from_millis(500)), 4, "home still down");
        assert_eq!(c.current(t0 + 2 * HOME_RETRY), 3);
        assert_eq!(c.current(t0 + 3 * HOME_RETRY), 3, "stays home");
    }

    #[test]
    fn operations_wait_longer_only_while_leaders_churn() {
        let cfg = |outside: Option<u64>| RunConfig {
            test_name: "t".into(),
            seed: 1,
            concurrency: 1,
            rate: 1.0,
            time_limit: Duration::from_secs(1),
            nemesis_interval: Duration::from_secs(1),
            nemesis: vec![],
            recovery: Duration::ZERO,
            op_timeout: Duration::from_millis(5000),
            op_timeout_outside_churn: outside.map(Duration::from_millis),
            setup_timeout: Duration::from_secs(1),
            final_read_timeout: Duration::from_secs(1),
            schedule: None,
            repro: String::new(),
            options: Value::Null,
        };
        let (five, two) = (Duration::from_millis(5000), Duration::from_millis(2000));
        assert_eq!(op_bound(&cfg(Some(2000)), false), OpBound::Short(two));
        assert_eq!(op_bound(&cfg(Some(2000)), true), OpBound::Client(five));
        assert_eq!(op_bound(&cfg(None), false), OpBound::Client(five), "one timeout for all");
        assert_eq!(op_bound(&cfg(Some(9000)), false), OpBound::Client(five), "never past the client's own");
    }

    #[test]
    fn a_short_bound_gives_up_as_a_client_timeout_would_and_the_guard_as_before() {
        let two = OpBound::Short(Duration::from_millis(2000));
        let op = |f: &str| Op { f: f.into(), key: Some("k".into()), value: serde_json::json!(3) };
        let read = given_up(&op("read"), two, "n1");
        assert_eq!((read.kind, read.error.as_deref()), (EventType::Fail, Some("timeout")), "a read changed nothing");
        let write = given_up(&op("write"), two, "n1");
        assert_eq!(
            (write.kind, write.error.as_deref()),
            (EventType::Info, Some("timeout")),
            "a write may have happened"
        );
        let guard = given_up(&op("read"), OpBound::Client(Duration::from_secs(5)), "n1");
        assert_eq!((guard.kind, guard.error.as_deref()), (EventType::Info, Some("harness-timeout")));
    }

    #[test]
    fn the_final_phase_learns_the_keys_of_transactions_too() {
        let op = |f: &str, key: Option<&str>, value: serde_json::Value| Op {
            f: f.into(),
            key: key.map(String::from),
            value,
        };
        assert_eq!(op_keys(&op("write", Some("k1"), serde_json::json!(3))), vec!["k1"]);
        let txn = op("txn", None, serde_json::json!([["append", "k2", 1], ["r", "k3", null], ["bad"]]));
        assert_eq!(op_keys(&txn), vec!["k2", "k3"]);
        assert!(op_keys(&op("add", None, serde_json::json!([["r", "k", null]]))).is_empty());
    }
}
