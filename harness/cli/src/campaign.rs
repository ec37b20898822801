//! `faultline campaign FILE.toml`: run a matrix of cells (targets × workloads × nemeses ×
//! repeats), each a child `faultline run` storing into the campaign folder, and write
//! campaign.json, campaign.html, comparison.png and a terminal table.
//!
//! A child per cell keeps cells isolated (a crash, a leak or a stuck runtime ends with its
//! process) and reuses the run's exit codes, heal and teardown. A cell that fails to run is
//! recorded with its reason and the campaign goes on; Ctrl-C or SIGTERM stops the current
//! child (which heals and tears down itself), records what ran, and ends.
//!
//! Exit code: 0 every cell had an expected outcome (`valid` unless the cell says otherwise),
//! 1 some cell did not, 255 a harness error (a bad campaign file, a cell that failed to run
//! without expecting to, an interrupted campaign).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use faultline_reports::campaign::{self as report, CampaignRecord, CellMetrics, CellRecord};
use faultline_results::Results;
use serde_json::{Map, Value};

use crate::campaign_spec::{self, CellPlan};
use crate::{EXIT_ERROR, EXIT_INVALID, EXIT_VALID};

#[derive(clap::Args, Debug)]
pub struct CampaignArgs {
    /// The campaign file (TOML; see campaigns/ and README.md).
    pub file: PathBuf,
    /// The store; the campaign goes to STORE/campaigns/<name>/<timestamp>/.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Print the cells, their seeds and commands, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The campaign seed (overrides the file's `seed`; random when neither gives one).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// A cell may take this long beyond its configured phases before it is stopped.
const CELL_MARGIN: Duration = Duration::from_secs(180);
/// After SIGTERM, how long a child gets to heal, tear down and analyse before SIGKILL.
const CHILD_STOP_GRACE: Duration = Duration::from_secs(120);

pub fn main(args: CampaignArgs) -> anyhow::Result<u8> {
    let campaign = match campaign_spec::load(&args.file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("faultline: error: {e}");
            return Ok(EXIT_ERROR);
        }
    };
    let seed = args.seed.or(campaign.seed).unwrap_or_else(crate::run::rand_seed);
    let ids = cell_ids(&campaign.cells);
    if args.dry_run {
        outln!("campaign {} (seed {seed}): {} cells", campaign.name, campaign.cells.len());
        let mut b = tabled::builder::Builder::default();
        b.push_record(["cell", "seed", "expect", "command"]);
        for (c, id) in campaign.cells.iter().zip(&ids) {
            b.push_record([id.clone(), c.seed(seed).to_string(), c.expect.join(" or "), repro(c, c.seed(seed))]);
        }
        outln!("{}", b.build().with(tabled::settings::Style::rounded()));
        return Ok(EXIT_VALID);
    }
    let tokio_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    tokio_rt.block_on(run_campaign(&args, campaign, seed, ids))
}

/// `NN-target-workload-nemesis-rR`, unique and usable as a test name.
fn cell_ids(cells: &[CellPlan]) -> Vec<String> {
    let width = cells.len().to_string().len().max(2);
    cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let target =
                Path::new(&c.target).file_stem().map_or(c.target.clone(), |s| s.to_string_lossy().into_owned());
            let id = format!("{:0width$}-{}-{}-{}-r{}", i + 1, target, c.workload, c.nemesis, c.repeat);
            let id = campaign_spec::sanitize(&id);
            id.chars().take(120).collect()
        })
        .collect()
}

/// The command that reproduces a cell on its own (into the default store).
fn repro(c: &CellPlan, seed: u64) -> String {
    let mut s = String::from("faultline run");
    for w in c.run_words(seed) {
        s.push(' ');
        s.push_str(&crate::run::shell_quote(&w));
    }
    s
}

fn create_campaign_dir(store: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let parent = store.join("campaigns").join(name);
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S").to_string();
    for n in 1..=1000u32 {
        let leaf = if n == 1 { stamp.clone() } else { format!("{stamp}-{n}") };
        let dir = parent.join(leaf);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    anyhow::bail!("more than 1000 campaigns named {name} in one second under {}", parent.display())
}

async fn run_campaign(
    args: &CampaignArgs,
    campaign: campaign_spec::Campaign,
    seed: u64,
    ids: Vec<String>,
) -> anyhow::Result<u8> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let dir = create_campaign_dir(&args.store, &campaign.name)?;
    let runs = dir.join("runs");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&runs).with_context(|| format!("cannot create {}", runs.display()))?;
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let exe = std::env::current_exe().context("cannot locate the faultline executable")?;
    eprintln!(
        "faultline: campaign {} (seed {seed}): {} cells, folder {}",
        campaign.name,
        campaign.cells.len(),
        dir.display()
    );
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut stopped = false;
    let mut cells: Vec<CellRecord> = Vec::new();
    let total = campaign.cells.len();
    for (i, (plan, id)) in campaign.cells.iter().zip(&ids).enumerate() {
        let mut rec = new_cell_record(plan, id, plan.seed(seed));
        // A signal that came between two cells stops the campaign before the next one starts.
        if !stopped && signal_pending(&mut interrupt, &mut term).await {
            eprintln!("\nfaultline: interrupted; the remaining cells are not run");
            stopped = true;
        }
        if stopped {
            rec.matched = false;
            cells.push(rec);
            continue;
        }
        eprintln!("[{}/{total}] {id}: {}", i + 1, rec.command);
        if run_and_judge_cell(&mut rec, &exe, plan, &dir, &runs, &mut interrupt, &mut term).await {
            stopped = true;
        }
        eprintln!(
            "[{}/{total}] {id}: {}{} in {:.1} s{}",
            i + 1,
            rec.outcome,
            if rec.matched { " (as expected)" } else { " (NOT as expected)" },
            rec.elapsed_s,
            rec.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
        cells.push(rec);
    }
    let interrupted = stopped;
    let exit_code = exit_code(&cells, interrupted);
    let record = CampaignRecord {
        name: campaign.name.clone(),
        file: args.file.display().to_string(),
        seed,
        started: started_at,
        elapsed_s: started.elapsed().as_secs_f64(),
        interrupted,
        exit_code,
        summary: summary(&cells, interrupted, exit_code),
        comparison: report::compare(&cells),
        cells,
    };
    print_table(&record);
    if !write_outputs(&dir, &record) {
        return Ok(EXIT_ERROR);
    }
    outln!("{}", record.summary);
    Ok(exit_code)
}

/// A cell's record before it runs: what it is and how to reproduce it, outcome `not-run`.
fn new_cell_record(plan: &CellPlan, id: &str, cell_seed: u64) -> CellRecord {
    CellRecord {
        id: id.to_string(),
        target: plan.target.clone(),
        workload: plan.workload.clone(),
        nemesis: plan.nemesis.clone(),
        fault_families: plan.fault_families.clone(),
        repeat: plan.repeat,
        seed: cell_seed,
        options: options_json(plan),
        expect: plan.expect.clone(),
        command: repro(plan, cell_seed),
        outcome: "not-run".into(),
        metrics: CellMetrics { consistency: "unknown".into(), ..Default::default() },
        ..Default::default()
    }
}

/// Whether SIGINT or SIGTERM came already (does not wait).
async fn signal_pending(interrupt: &mut tokio::signal::unix::Signal, term: &mut tokio::signal::unix::Signal) -> bool {
    tokio::select! {
        biased;
        _ = interrupt.recv() => true,
        _ = term.recv() => true,
        _ = std::future::ready(()) => false,
    }
}

/// Runs the cell of `rec` (its log in logs/ID.log, its run under `runs`) and fills in its
/// outcome, metrics and error; returns whether a signal interrupted it.
async fn run_and_judge_cell(
    rec: &mut CellRecord,
    exe: &Path,
    plan: &CellPlan,
    dir: &Path,
    runs: &Path,
    interrupt: &mut tokio::signal::unix::Signal,
    term: &mut tokio::signal::unix::Signal,
) -> bool {
    let id = rec.id.clone();
    let log_rel = format!("logs/{id}.log");
    rec.log = Some(log_rel.clone());
    let cell_started = Instant::now();
    let result = run_cell(exe, plan, rec.seed, &id, runs, &dir.join(&log_rel), interrupt, term).await;
    rec.elapsed_s = cell_started.elapsed().as_secs_f64();
    let mut interrupted = false;
    let (code, problem) = match result {
        Ok(CellEnd::Exited(code)) => (code, None),
        Ok(CellEnd::TimedOut(code, after)) => {
            (code, Some(format!("stopped after {:.0} s: the cell ran past its time budget", after.as_secs_f64())))
        }
        Ok(CellEnd::Interrupted(code)) => {
            interrupted = true;
            (
                code,
                Some(
                    "interrupted (Ctrl-C or SIGTERM): the run was stopped, healed and judged on what it had recorded"
                        .to_string(),
                ),
            )
        }
        Err(e) => (None, Some(format!("could not run the cell: {e:#}"))),
    };
    rec.exit_code = code;
    judge_cell(rec, code, problem, dir, runs, &log_rel);
    interrupted
}

/// Fills in a finished cell's run folder, metrics (from its results.json), outcome (from its
/// exit `code`, an error when there was a `problem`), error and whether it matched.
fn judge_cell(
    rec: &mut CellRecord,
    code: Option<i32>,
    problem: Option<String>,
    dir: &Path,
    runs: &Path,
    log_rel: &str,
) {
    rec.run_dir = find_run_dir(&runs.join(&rec.id)).map(|p| p.strip_prefix(dir).unwrap_or(&p).display().to_string());
    let results: Option<Results> = rec
        .run_dir
        .as_ref()
        .and_then(|rd| std::fs::read_to_string(dir.join(rd).join("results.json")).ok())
        .and_then(|t| Results::from_json(&t).ok());
    if let Some(r) = &results {
        rec.metrics = CellMetrics::from_results(r);
    }
    rec.outcome = match (code, &problem) {
        (_, Some(_)) => "error".into(),
        (Some(0), None) => "valid".into(),
        (Some(1), None) => "invalid".into(),
        (Some(2), None) => "unknown".into(),
        _ => "error".into(),
    };
    if rec.outcome == "error" {
        rec.error = Some(problem.unwrap_or_else(|| error_reason(code, results.as_ref(), &dir.join(log_rel))));
    }
    rec.matched = matches(&rec.expect, &rec.outcome);
}

/// Writes the campaign's outputs (campaign.json first) and prints their paths; false (said on
/// stderr) when not all were written.
fn write_outputs(dir: &Path, record: &CampaignRecord) -> bool {
    match report::write_all(dir, record) {
        Ok(files) => {
            for f in files {
                outln!("{}", f.display());
            }
            true
        }
        Err(e) => {
            // campaign.json is written first: the record survives a drawing failure.
            eprintln!("faultline: error: campaign outputs not all written: {e}");
            false
        }
    }
}

/// The `faultline run` flags a cell set, as JSON (repeatable flags as arrays).
fn options_json(plan: &CellPlan) -> Value {
    let mut m = Map::new();
    for (flag, value) in &plan.flags {
        let key = flag.replace('-', "_");
        if flag == "bug" || flag == "target-opt" {
            let arr = m.entry(format!("{key}s")).or_insert_with(|| Value::Array(vec![]));
            if let Value::Array(a) = arr {
                a.push(Value::String(value.clone()));
            }
        } else {
            let v = if let Ok(n) = value.parse::<u64>() {
                Value::from(n)
            } else {
                value
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::String(value.clone()))
            };
            m.insert(key, v);
        }
    }
    Value::Object(m)
}

/// An outcome is expected when listed, or, for `any`, when it is a verdict.
pub fn matches(expect: &[String], outcome: &str) -> bool {
    expect.iter().any(|e| e == outcome || (e == "any" && matches!(outcome, "valid" | "invalid" | "unknown")))
}

/// 255 when interrupted or a cell errored without expecting to; else 1 when a cell's outcome
/// was not expected; else 0.
pub fn exit_code(cells: &[CellRecord], interrupted: bool) -> u8 {
    if interrupted || cells.iter().any(|c| c.outcome == "error" && !c.matched) {
        EXIT_ERROR
    } else if cells.iter().any(|c| !c.matched) {
        EXIT_INVALID
    } else {
        EXIT_VALID
    }
}

fn summary(cells: &[CellRecord], interrupted: bool, code: u8) -> String {
    let count = |o: &str| cells.iter().filter(|c| c.outcome == o).count();
    let unexpected = cells.iter().filter(|c| !c.matched && c.outcome != "not-run").count();
    let mut s = format!(
        "{} cells: {} valid, {} invalid, {} unknown, {} error{}; {} not as expected",
        cells.len(),
        count("valid"),
        count("invalid"),
        count("unknown"),
        count("error"),
        if count("not-run") > 0 { format!(", {} not run", count("not-run")) } else { String::new() },
        unexpected
    );
    s += &match code {
        EXIT_VALID => " → exit 0 (every cell as expected)".to_string(),
        EXIT_INVALID => " → exit 1 (a cell's outcome was not the expected one)".to_string(),
        _ if interrupted => " → exit 255 (interrupted)".to_string(),
        _ => " → exit 255 (a cell failed to run)".to_string(),
    };
    s
}

enum CellEnd {
    Exited(Option<i32>),
    TimedOut(Option<i32>, Duration),
    Interrupted(Option<i32>),
}

#[allow(clippy::too_many_arguments)]
async fn run_cell(
    exe: &Path,
    plan: &CellPlan,
    seed: u64,
    id: &str,
    runs: &Path,
    log: &Path,
    interrupt: &mut tokio::signal::unix::Signal,
    term: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<CellEnd> {
    let log_file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err_file = log_file.try_clone()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("run")
        .args(plan.run_words(seed))
        .arg("--store")
        .arg(runs)
        .args(["--name", id, "--quiet"])
        .stdin(std::process::Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let budget = cell_budget(plan);
    let deadline = tokio::time::sleep(budget);
    tokio::pin!(deadline);
    let pid = child.id();
    let code = |s: std::process::ExitStatus| s.code();
    tokio::select! {
        status = child.wait() => return Ok(CellEnd::Exited(code(status?))),
        _ = &mut deadline => {
            let status = stop_child(&mut child, pid).await?;
            return Ok(CellEnd::TimedOut(status.and_then(code), budget));
        }
        _ = interrupt.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!(
        "\nfaultline: interrupted; stopping the current cell (it heals and tears down), then writing the campaign"
    );
    let status = stop_child(&mut child, pid).await?;
    Ok(CellEnd::Interrupted(status.and_then(code)))
}

/// SIGTERM (the run heals, tears down and analyses), then SIGKILL after the grace period.
async fn stop_child(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    if let Some(pid) = pid {
        let _ = faultline_core::runtime::state::send_signal(pid, "TERM");
    }
    match tokio::time::timeout(CHILD_STOP_GRACE, child.wait()).await {
        Ok(s) => Ok(Some(s?)),
        Err(_) => {
            eprintln!("faultline: the cell did not stop within {CHILD_STOP_GRACE:?}; killing it (run `faultline cleanup` if it left anything behind)");
            let _ = child.kill().await;
            Ok(None)
        }
    }
}

/// The cell's phases (with the run's defaults) plus a margin.
fn cell_budget(plan: &CellPlan) -> Duration {
    let flag = |name: &str, default: f64| {
        plan.flags.iter().find(|(f, _)| f == name).and_then(|(_, v)| v.parse::<f64>().ok()).unwrap_or(default)
    };
    let secs = flag("time-limit", 60.0) + flag("setup-timeout", 30.0) + flag("recovery", 5.0) + 30.0 /* final reads */;
    Duration::from_secs_f64(secs) + CELL_MARGIN
}

/// The one run folder under `runs/<cell-id>/` (the newest if several).
fn find_run_dir(test_dir: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(test_dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Why a cell failed: the run's recorded errors, else its last error line, else its exit.
fn error_reason(code: Option<i32>, results: Option<&Results>, log: &Path) -> String {
    if let Some(errors) = results.map(|r| &r.errors).filter(|e| !e.is_empty()) {
        return errors.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if let Some(line) = text.lines().rev().find_map(|l| l.strip_prefix("faultline: error: ")) {
        return line.to_string();
    }
    match code {
        Some(c) => format!("faultline run exited {c}"),
        None => "faultline run was killed by a signal".into(),
    }
}

fn print_table(r: &CampaignRecord) {
    use tabled::builder::Builder;
    let pct = |v: Option<f64>| v.map(|f| format!("{:.0}%", f * 100.0)).unwrap_or_else(|| "-".into());
    let num = |v: Option<f64>| v.map(|f| format!("{f:.1}")).unwrap_or_else(|| "-".into());
    let mut b = Builder::default();
    b.push_record(["cell", "seed", "outcome", "expected", "avail. in faults", "ok ops/s", "p50 ms", "p99 ms", "model"]);
    for c in &r.cells {
        b.push_record([
            c.id.clone(),
            c.seed.to_string(),
            if c.matched { c.outcome.clone() } else { format!("{} ✗", c.outcome) },
            c.expect.join("|"),
            pct(c.metrics.availability_during_faults),
            num(c.metrics.throughput_ok_per_s),
            num(c.metrics.latency_ok_p50_ms),
            num(c.metrics.latency_ok_p99_ms),
            c.metrics.consistency.clone(),
        ]);
    }
    outln!("{}", b.build().with(tabled::settings::Style::rounded()));
    let mut t = Builder::default();
    t.push_record(["target", "avail. during partitions", "model kept", "cells"]);
    for x in &r.comparison {
        t.push_record([
            x.target.clone(),
            pct(x.availability_during_partitions),
            x.model_kept.clone(),
            x.cells.to_string(),
        ]);
    }
    outln!("{}", t.build().with(tabled::settings::Style::rounded()));
    for c in r.cells.iter().filter(|c| c.error.is_some()) {
        outln!("{}: {}", c.id, c.error.as_deref().unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(outcome: &str, expect: &[&str]) -> CellRecord {
        let expect: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
        CellRecord { matched: matches(&expect, outcome), outcome: outcome.into(), expect, ..Default::default() }
    }

    #[test]
    fn expectations_and_the_exit_code() {
        assert!(matches(&["valid".into()], "valid"));
        assert!(!matches(&["valid".into()], "unknown"));
        assert!(matches(&["any".into()], "invalid"));
        assert!(!matches(&["any".into()], "error"), "`any` is any verdict, not a harness failure");
        assert!(matches(&["invalid".into(), "unknown".into()], "unknown"));
        assert_eq!(exit_code(&[cell("valid", &["valid"]), cell("invalid", &["invalid"])], false), 0);
        assert_eq!(exit_code(&[cell("valid", &["valid"]), cell("error", &["error"])], false), 0, "an expected error");
        assert_eq!(exit_code(&[cell("valid", &["valid"]), cell("unknown", &["valid"])], false), 1);
        assert_eq!(
            exit_code(&[cell("invalid", &["valid"]), cell("error", &["valid"])], false),
            255,
            "a harness error wins"
        );
        assert_eq!(exit_code(&[cell("valid", &["valid"])], true), 255, "interrupted");
    }

    #[test]
    fn cell_ids_are_unique_names() {
        let plan = |t: &str, n: &str, r: u32| CellPlan {
            target: t.into(),
            workload: "register".into(),
            nemesis: n.into(),
            fault_families: vec![],
            repeat: r,
            fixed_seed: None,
            expect: vec![],
            flags: vec![],
            line: 1,
        };
        let ids = cell_ids(&[plan("raft", "partition:isolate-leader", 1), plan("/x/my target.toml", "clock", 2)]);
        assert_eq!(ids, ["01-raft-register-partition-isolate-leader-r1", "02-my-target-register-clock-r2"]);
        let o = options_json(&CellPlan {
            flags: vec![
                ("nodes".into(), "3".into()),
                ("bug".into(), "a".into()),
                ("bug".into(), "b".into()),
                ("runtime".into(), "local".into()),
            ],
            ..plan("raft", "none", 1)
        });
        assert_eq!(o, serde_json::json!({"nodes": 3, "bugs": ["a", "b"], "runtime": "local"}));
    }
}
