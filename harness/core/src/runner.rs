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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faultline_checker::hierarchy::Consistency;
use faultline_checker::history::{EventType, Process};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::analysis;
use crate::client::http::NodeHttp;
use crate::client::{Completion, Op};
use crate::generator::{Pacer, ProcessIds};
use crate::history::{EventParts, HistoryWriter};
use crate::nemesis::{
    nemesis_for, Applied, Choice, ClockSample, Family, Nemesis, NemesisCtx, Schedule,
};
use crate::progress::Progress;
use crate::runtime::{Launch, Runtime};
use crate::store::RunDir;
use crate::target::Target;
use crate::workload::{CheckerResult, Workload};

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
    pub op_timeout: Duration,
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
    pub http: NodeHttp,
    pub run_dir: RunDir,
    pub progress: Arc<Progress>,
    /// Flips to true on SIGINT/SIGTERM.
    pub cancel: watch::Receiver<bool>,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// `valid`, `invalid` or `unknown`; `None` when the harness failed before it could judge.
    pub verdict: Option<String>,
    pub results: Value,
    pub interrupted: bool,
    /// Harness failures (setup, teardown, ...), also in results.json.
    pub errors: Vec<String>,
}

/// A fault as results.json records it.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub fault: String,
    pub kind: String,
    pub nodes: Vec<String>,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub applied: bool,
    pub mechanism: String,
    pub error: Option<String>,
    pub stop_error: Option<String>,
    pub detail: Value,
}

struct Shared {
    history: HistoryWriter,
    progress: Arc<Progress>,
    keys: Mutex<BTreeSet<String>>,
    max_process: AtomicU64,
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

/// Invokes `op` as `process` on `node`, recording invoke and completion.
#[allow(clippy::too_many_arguments)] // each is a distinct collaborator; a struct would only rename them
async fn invoke_recorded(
    shared: &Shared,
    workload: &dyn Workload,
    http: &NodeHttp,
    runtime: &dyn Runtime,
    node: &str,
    process: u64,
    op: &Op,
    timeout: Duration,
) -> Completion {
    shared.max_process.fetch_max(process, Ordering::Relaxed);
    if let Some(k) = &op.key {
        shared.keys.lock().expect("keys lock").insert(k.clone());
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
    // The HTTP client has its own timeout; this outer bound guards against anything else.
    let completion = match tokio::time::timeout(
        timeout + Duration::from_secs(1),
        workload.invoke(http, &addr, node, op),
    )
    .await
    {
        Ok(c) => c,
        Err(_) => Completion::info(op.value.clone(), "harness-timeout", node),
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
    runtime: Arc<dyn Runtime>,
    http: NodeHttp,
    nodes: Arc<Vec<String>>,
    deadline: Instant,
    mut cancel: watch::Receiver<bool>,
) -> ProcessIds {
    let mut generator = workload.generator(cfg.seed, worker, cfg.concurrency);
    let mut pacer = Pacer::new(cfg.seed, worker, cfg.rate, cfg.concurrency);
    let mut procs = ProcessIds::new(worker, cfg.concurrency as u64);
    let mut node_ix = worker as usize % nodes.len();
    loop {
        let delay = pacer.next_delay();
        let now = Instant::now();
        if now + delay >= deadline || !sleep_or_cancel(delay, &mut cancel).await {
            break;
        }
        let Some(op) = generator.next_op() else { break };
        let c = invoke_recorded(
            &shared,
            workload.as_ref(),
            &http,
            runtime.as_ref(),
            &nodes[node_ix],
            procs.current(),
            &op,
            cfg.op_timeout,
        )
        .await;
        match c.kind {
            EventType::Info => {
                procs.retire();
            }
            // A node that refuses connections is down: try the next one.
            EventType::Fail if c.error.as_deref() == Some("connect") => {
                node_ix = (node_ix + 1) % nodes.len()
            }
            _ => {}
        }
    }
    procs
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
        let label = format!("{fam}:{}", s.spec.kind);
        if applied.applied {
            shared.progress.fault_started(&label);
            tracing::info!(
                "start {label} on {:?} via {}",
                applied.nodes,
                applied.mechanism
            );
        } else {
            tracing::warn!(
                "fault {label} NOT applied: {}",
                applied.error.as_deref().unwrap_or("?")
            );
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
        let finished =
            sleep_or_cancel(until.saturating_duration_since(Instant::now()), &mut cancel).await;
        if finished {
            let stopped = nem.stop(&ctx, &s.spec, &applied).await;
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
        let mut set = tokio::task::JoinSet::new();
        for n in ctx.runtime.nodes() {
            let target = ctx.target.clone();
            let (id, addr) = (n.id.clone(), n.addr());
            set.spawn(async move {
                match tokio::time::timeout(period / 2, target.status(&addr)).await {
                    Ok(Ok(s)) => s.clock_offset_ms.map(|o| (id, o)),
                    _ => None,
                }
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Some((node, offset_ms))) = r {
                let time_ns = (ctx.now_ns)();
                if let Ok(mut s) = ctx.clock_samples.lock() {
                    if s.len() < crate::nemesis::clock::SAMPLES_MAX {
                        s.push(ClockSample {
                            time_ns,
                            node,
                            offset_ms,
                        });
                    }
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
                return Err(format!(
                    "node {} exited during setup (see nodes/{}.log)",
                    n.id, n.id
                ));
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
    Err(format!(
        "cluster not ready within {:.0} s: {last}",
        timeout.as_secs_f64()
    ))
}

/// Runs one test. Never returns without having torn the runtime down.
pub async fn run(cfg: RunConfig, inputs: RunInputs) -> RunOutcome {
    let cfg = Arc::new(cfg);
    let RunInputs {
        runtime,
        target,
        workload,
        http,
        run_dir,
        progress,
        mut cancel,
    } = inputs;
    let mut errors: Vec<String> = Vec::new();
    let t0 = Instant::now();
    let nodes_n = runtime.nodes().len();
    let schedule = Schedule::for_run(
        cfg.schedule.as_ref(),
        cfg.seed,
        &cfg.nemesis,
        nodes_n,
        target.as_ref(),
        cfg.time_limit.as_secs_f64(),
        cfg.nemesis_interval.as_secs_f64(),
    );
    let test_json = json!({
        "name": cfg.test_name,
        "seed": cfg.seed,
        "options": cfg.options,
        "config": &*cfg,
        "schedule": schedule,
        "runtime": { "kind": runtime.kind(), "mechanism": runtime.mechanism().as_str(), "run_id": runtime.run_id(),
                      "nodes": runtime.nodes() },
        "target": target.name(),
        "workload": workload.name(),
        "versions": { "faultline": env!("CARGO_PKG_VERSION") },
        "started_at": chrono::Utc::now().to_rfc3339(),
        "repro": cfg.repro,
    });
    if let Err(e) = run_dir.write_json("test.json", &test_json) {
        errors.push(e.to_string());
    }
    let history = match HistoryWriter::create(&run_dir.history()) {
        Ok(h) => h,
        Err(e) => {
            errors.push(e.to_string());
            let _ = runtime.teardown();
            return RunOutcome {
                verdict: None,
                results: json!({ "errors": errors }),
                interrupted: false,
                errors,
            };
        }
    };
    let shared = Arc::new(Shared {
        history,
        progress: progress.clone(),
        keys: Mutex::new(BTreeSet::new()),
        max_process: AtomicU64::new(0),
    });

    // Setup.
    progress.set_phase("setup");
    let mut launches: Vec<(String, Launch)> = Vec::new();
    let mut setup_ok = true;
    for n in runtime.nodes() {
        let data = run_dir.node_data(&n.id);
        if let Err(e) = std::fs::create_dir_all(&data) {
            errors.push(format!("cannot create {}: {e}", data.display()));
            setup_ok = false;
            break;
        }
        let launch = target.launch(n, runtime.nodes(), &data, &run_dir.node_log(&n.id));
        launches.push((n.id.clone(), launch));
    }
    // All at once: the Docker runtime creates every container with one compose call.
    if setup_ok {
        if let Err(e) = runtime.start_nodes(&launches) {
            errors.push(format!("setup: {e}"));
            setup_ok = false;
        }
    }
    let mut timings = serde_json::Map::new();
    if setup_ok {
        match wait_ready(
            runtime.as_ref(),
            target.as_ref(),
            cfg.setup_timeout,
            &mut cancel,
        )
        .await
        {
            Ok(d) => {
                timings.insert("ready_s".into(), json!(d.as_secs_f64()));
                tracing::info!("cluster ready after {:.2} s", d.as_secs_f64());
            }
            Err(e) => {
                if !cancelled(&cancel) {
                    errors.push(format!("setup: {e}"));
                }
                setup_ok = false;
            }
        }
    }

    // The nodes clients address: every node, or a target's front (router, load balancer).
    let client_nodes: Arc<Vec<String>> = Arc::new(target.client_nodes(runtime.nodes()));
    if setup_ok && (client_nodes.is_empty() || client_nodes.iter().any(|c| !runtime.nodes().iter().any(|n| &n.id == c))) {
        errors.push(format!("setup: target {} names client nodes {client_nodes:?} outside the cluster", target.name()));
        setup_ok = false;
    }

    let clock_samples: Arc<Mutex<Vec<ClockSample>>> = Arc::new(Mutex::new(Vec::new()));
    let shared_for_clock = shared.clone();
    let ctx = Arc::new(NemesisCtx {
        runtime: runtime.clone(),
        target: target.clone(),
        launches,
        clock_samples: clock_samples.clone(),
        now_ns: Arc::new(move || shared_for_clock.history.now_ns()),
    });
    // One nemesis per family, shared by the schedule and the heal (the clock nemesis owns its
    // strobe task, which the heal must stop).
    let nemeses: Arc<Vec<Box<dyn Nemesis>>> =
        Arc::new(Family::ALL.iter().map(|f| nemesis_for(*f)).collect());
    // Heal order: restart killed nodes, resume paused ones, then the network (partition, loss
    // and latency share one heal), then clocks (a node must run to have its clock reset).
    let heal_order = [
        Family::Kill,
        Family::Pause,
        Family::Partition,
        Family::Clock,
    ];

    let mut fault_records = Vec::new();
    if setup_ok {
        // Main phase.
        progress.set_phase("main");
        let main_start = Instant::now();
        let deadline = main_start + cfg.time_limit;
        let workers: Vec<_> = (0..cfg.concurrency as u64)
            .map(|w| {
                tokio::spawn(worker(
                    w,
                    cfg.clone(),
                    shared.clone(),
                    workload.clone(),
                    runtime.clone(),
                    http.clone(),
                    client_nodes.clone(),
                    deadline,
                    cancel.clone(),
                ))
            })
            .collect();
        let nem = tokio::spawn(nemesis_task(
            schedule.clone(),
            ctx.clone(),
            nemeses.clone(),
            shared.clone(),
            main_start,
            cancel.clone(),
        ));
        // Only when clocks are skewed is there something to plot; sample what nodes report.
        let sampler = cfg
            .nemesis
            .iter()
            .any(|c| c.family == Family::Clock)
            .then(|| tokio::spawn(clock_sampler(ctx.clone(), CLOCK_SAMPLE_PERIOD)));
        for w in workers {
            if let Err(e) = w.await {
                errors.push(format!("worker failed: {e}"));
            }
        }
        match nem.await {
            Ok(r) => fault_records = r,
            Err(e) => errors.push(format!("nemesis failed: {e}")),
        }
        if let Some(s) = sampler {
            s.abort();
        }
        timings.insert("main_s".into(), json!(main_start.elapsed().as_secs_f64()));
        let killed: BTreeSet<String> = fault_records
            .iter()
            .filter(|r| r.fault == "kill" && r.end_ns.is_none())
            .flat_map(|r| r.nodes.clone())
            .collect();
        let not_running_before_heal: Vec<String> = runtime
            .nodes()
            .iter()
            .filter(|n| !runtime.is_running(&n.id) && !killed.contains(&n.id))
            .map(|n| n.id.clone())
            .collect();
        if !not_running_before_heal.is_empty() {
            errors.push(format!("nodes {not_running_before_heal:?} exited on their own during the run (see nodes/*.log)"));
        }
    }

    // Heal everything (idempotent), whatever happened in the main phase. Without a main phase
    // (setup failed or was interrupted) no fault was ever applied, and "healing" would only
    // restart nodes that failed to start.
    if setup_ok {
        progress.set_phase("heal");
        let mut heal_errors = Vec::new();
        for n in heal_order
            .iter()
            .filter_map(|f| nemeses.iter().find(|n| n.family() == *f))
        {
            if let Err(e) = n.heal_all(&ctx).await {
                heal_errors.push(format!("{}: {e}", n.family().as_str()));
            }
        }
        progress.clear_faults();
        shared.nemesis_event(
            "heal",
            json!({ "ok": heal_errors.is_empty(), "errors": heal_errors }),
        );
        for r in &mut fault_records {
            if r.end_ns.is_none() {
                r.end_ns = Some(shared.history.now_ns());
            }
        }
        if !heal_errors.is_empty() {
            tracing::warn!("heal: {heal_errors:?}");
        }
    }

    let interrupted = cancelled(&cancel);
    if setup_ok && !interrupted {
        // Quiet recovery, then a final read of every key.
        progress.set_phase("recovery");
        sleep_or_cancel(cfg.recovery, &mut cancel).await;
    }
    let mut final_reads = json!(null);
    if setup_ok && !cancelled(&cancel) {
        progress.set_phase("final reads");
        final_reads = final_phase(
            &cfg,
            &shared,
            workload.as_ref(),
            &http,
            runtime.as_ref(),
            &client_nodes,
            &mut cancel,
        )
        .await;
    }
    let interrupted = cancelled(&cancel);
    // Asked while the cluster still runs; bounded so a hung node cannot stall the teardown.
    let target_stats = if setup_ok {
        tokio::time::timeout(cfg.op_timeout * 2, target.final_stats(runtime.nodes())).await.ok().flatten()
    } else {
        None
    };

    // Teardown.
    progress.set_phase("teardown");
    let td = Instant::now();
    if let Err(e) = runtime.teardown() {
        errors.push(format!("teardown: {e}"));
    }
    timings.insert("teardown_s".into(), json!(td.elapsed().as_secs_f64()));

    // Analysis of what was recorded.
    progress.set_phase("analysis");
    let an = Instant::now();
    let text = std::fs::read_to_string(run_dir.history()).unwrap_or_default();
    let (events, parse_warnings) = match faultline_checker::jsonl::parse(&text) {
        Ok(p) => (p.events, p.warnings),
        Err(e) => {
            errors.push(format!("history.jsonl:{e}"));
            (Vec::new(), Vec::new())
        }
    };
    let stats = analysis::op_stats(&events);
    let avail = analysis::availability(&events);
    let mut checkers: Vec<CheckerResult> = if events.is_empty() {
        Vec::new()
    } else {
        workload.check(&events)
    };
    let models_started = Instant::now();
    let consistency = if events.is_empty() {
        Consistency::not_checked("no history was recorded")
    } else {
        workload.consistency(&events, &checkers)
    };
    timings.insert(
        "consistency_s".into(),
        json!(models_started.elapsed().as_secs_f64()),
    );
    // The target's own promises (a balancer's distribution, a router's key balance).
    checkers.extend(target.checkers(runtime.nodes(), &events, target_stats.as_ref()));
    checkers.push(analysis::availability_checker(&avail, &stats));
    let mut verdict = analysis::combine(&checkers).to_string();
    if interrupted && verdict == "valid" {
        // The planned test did not complete; valid so far is not a verdict on the test.
        verdict = "unknown".into();
    }
    let unapplied = fault_records.iter().filter(|r| !r.applied).count();
    timings.insert("analysis_s".into(), json!(an.elapsed().as_secs_f64()));
    timings.insert("total_s".into(), json!(t0.elapsed().as_secs_f64()));
    let setup_failed = !setup_ok && !interrupted;
    let mut clock = clock_samples.lock().expect("clock lock").clone();
    clock.sort_by_key(|s| s.time_ns);
    let results = json!({
        "verdict": verdict,
        "interrupted": interrupted,
        // The cluster never became ready: a harness failure (exit 255), nothing was tested.
        "setup_failed": setup_failed,
        "checkers": checkers,
        // The strongest model of the hierarchy the history kept (docs/results.md).
        "consistency": consistency,
        "ops": stats,
        "latency": analysis::latencies(&events),
        "availability": avail,
        "faults": fault_records,
        "faults_not_applied": unapplied,
        "clock": clock,
        "runtime": { "kind": runtime.kind(), "mechanism": runtime.mechanism().as_str(), "run_id": runtime.run_id(),
                      // Set by `faultline run` when it re-ran itself in an unprivileged user namespace.
                      "userns": std::env::var_os("FAULTLINE_USERNS").is_some() },
        "schedule": schedule.name,
        "final_reads": final_reads,
        "target_stats": target_stats,
        "seed": cfg.seed,
        "repro": cfg.repro,
        "timings": timings,
        "history_warnings": parse_warnings,
        "errors": errors,
    });
    if let Err(e) = run_dir.write_json("results.json", &results) {
        errors.push(e.to_string());
    }
    progress.set_phase("done");
    RunOutcome {
        verdict: if setup_failed { None } else { Some(verdict) },
        results,
        interrupted,
        errors,
    }
}

/// Reads every key once more through a healthy cluster, retrying (bounded) until each read
/// succeeds. Runs as fresh processes after every worker's.
async fn final_phase(
    cfg: &RunConfig,
    shared: &Shared,
    workload: &dyn Workload,
    http: &NodeHttp,
    runtime: &dyn Runtime,
    nodes: &[String],
    cancel: &mut watch::Receiver<bool>,
) -> Value {
    let keys: Vec<String> = shared
        .keys
        .lock()
        .expect("keys lock")
        .iter()
        .cloned()
        .collect();
    let ops = workload.final_ops(&keys);
    let deadline = Instant::now() + cfg.final_read_timeout;
    let mut process = shared.max_process.load(Ordering::Relaxed) + 1;
    let (mut ok, mut missed) = (0u64, Vec::new());
    let mut node_ix = 0usize;
    // (op, the node it must run on, if pinned): every node in turn when the workload asks.
    let pinned: Vec<(&Op, Option<usize>)> = if workload.final_ops_on_every_node() {
        ops.iter()
            .flat_map(|op| (0..nodes.len()).map(move |n| (op, Some(n))))
            .collect()
    } else {
        ops.iter().map(|op| (op, None)).collect()
    };
    for (op, pin) in pinned {
        let mut done = false;
        while Instant::now() < deadline && !cancelled(cancel) {
            let c = invoke_recorded(
                shared,
                workload,
                http,
                runtime,
                &nodes[pin.unwrap_or(node_ix) % nodes.len()],
                process,
                op,
                cfg.op_timeout,
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
    json!({ "keys": keys.len(), "ok": ok, "missed": missed })
}
