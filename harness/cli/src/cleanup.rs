//! `faultline cleanup`: removes what killed runs left behind — node processes, network
//! namespaces, veths, bridges, iptables rules and chains — and nothing else.
//!
//! What is ours: first, everything recorded in the state files of runs (/run/faultline, or
//! $FAULTLINE_STATE_DIR) whose harness process is gone; second, objects named with our prefix
//! (`fl` + 6 hex digits + suffix) that no live run claims (their state file was lost). Runs whose
//! harness still lives are left alone unless `--force`.

use std::collections::BTreeMap;

use faultline_core::runtime::state::{self, is_ours, CleanupReport, RunState};

#[derive(clap::Args, Debug)]
pub struct CleanupArgs {
    /// Only these runs (run ids like fl1a2b3c, as in results.json `runtime.run_id`); repeatable.
    #[arg(long = "run")]
    pub runs: Vec<String>,
    /// Also remove runs whose harness process is still alive (only with --run: never all).
    #[arg(long, requires = "runs")]
    pub force: bool,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// `ssh`: also look on the hosts of --nodes-file for runs whose state file is gone (recorded
    /// SSH runs are always cleaned, on the hosts they name).
    #[arg(long)]
    pub runtime: Option<String>,
    #[command(flatten)]
    pub ssh: crate::ssh_args::SshArgs,
}

pub fn main(args: CleanupArgs) -> anyhow::Result<u8> {
    let dir = state::state_dir();
    check_run_ids(&args.runs)?;
    let wanted = |id: &str| args.runs.is_empty() || args.runs.iter().any(|r| r == id);
    let (states, problems) = RunState::load_all(&dir);
    let states: Vec<RunState> = states.into_iter().filter(|s| wanted(&s.run_id)).collect();
    for p in &problems {
        eprintln!("faultline cleanup: unreadable state file {p}");
    }
    let mut report = CleanupReport::default();
    let (live_ids, dead) = split_live(states, args.force, &mut report);
    // Leftovers without a state file, grouped by run id.
    let recorded: Vec<String> = dead.iter().map(|s| s.run_id.clone()).collect();
    let skip: Vec<String> = live_ids.iter().chain(recorded.iter()).cloned().collect();
    let orphans = scan_orphans(&skip, &wanted);
    // Rules first so chains can be deleted; a state's host_rules already lists its own.
    let all: Vec<RunState> = dead.into_iter().chain(orphans.into_values()).collect();
    // Docker runs: containers and networks labelled faultline.run (docs/docker.md).
    let docker_planned =
        faultline_core::runtime::docker::cleanup_leftovers(&dir, &args.runs, args.force, args.dry_run, &mut report);
    for p in &docker_planned {
        outln!("would remove {p}");
    }
    cleanup_ssh(&args, &dir, &mut report)?;
    if all.is_empty() && docker_planned.is_empty() && report.removed.is_empty() && report.errors.is_empty() {
        outln!("faultline cleanup: nothing to remove");
    }
    remove_runs(&all, &dir, args.dry_run, &mut report);
    Ok(print_report(&report))
}

/// SSH runs: the recorded ones on their hosts, and with `--runtime ssh --nodes-file F` every
/// run found on F's hosts whose harness is gone (docs/multi-host.md).
fn cleanup_ssh(args: &CleanupArgs, dir: &std::path::Path, report: &mut CleanupReport) -> anyhow::Result<()> {
    use faultline_core::runtime::ssh_state;
    match args.runtime.as_deref() {
        None if args.ssh.any() => anyhow::bail!("--nodes-file, --ssh-* and --remote-dir need --runtime ssh"),
        None => {}
        Some("ssh") => {
            let (hosts, opts) = args.ssh.resolve()?;
            ssh_state::cleanup_hosts(dir, &hosts, &opts, &args.runs, args.dry_run, report)?;
        }
        Some(other) => {
            anyhow::bail!("cleanup --runtime {other:?}: only ssh takes hosts (local and docker runs are found here)")
        }
    }
    ssh_state::cleanup_recorded(dir, &args.runs, args.force, args.dry_run, report);
    Ok(())
}

/// Refuses a `--run` that is not a faultline run id.
fn check_run_ids(runs: &[String]) -> anyhow::Result<()> {
    for r in runs {
        if is_ours(&format!("{r}x")).as_deref() != Some(r.as_str()) {
            anyhow::bail!("--run {r:?} is not a faultline run id (fl + 6 lowercase hex digits)");
        }
    }
    Ok(())
}

/// Splits the recorded runs into the ids of those whose harness still lives (left alone, noted
/// in `report`, unless `force`) and those to remove.
fn split_live(states: Vec<RunState>, force: bool, report: &mut CleanupReport) -> (Vec<String>, Vec<RunState>) {
    let mut live_ids = Vec::new();
    let mut dead = Vec::new();
    for s in states {
        if s.harness_pid != std::process::id() && state::harness_alive(s.harness_pid, s.harness_start) && !force {
            report.skipped_live.push(format!("{} (harness pid {} is alive; use --force)", s.run_id, s.harness_pid));
            live_ids.push(s.run_id.clone());
        } else {
            dead.push(s);
        }
    }
    (live_ids, dead)
}

/// Our network namespaces, links, chains and rules that no run in `skip` claims, grouped by
/// the run id in their names (only `wanted` runs).
fn scan_orphans(skip: &[String], wanted: &dyn Fn(&str) -> bool) -> BTreeMap<String, RunState> {
    let (netns, links, chains) = state::scan_ours();
    let rules = state::scan_our_rules();
    let mut orphans: BTreeMap<String, RunState> = BTreeMap::new();
    for n in netns {
        if let Some(s) = orphan(&mut orphans, skip, wanted, &n) {
            s.netns.push(n);
        }
    }
    for l in links {
        if let Some(s) = orphan(&mut orphans, skip, wanted, &l) {
            s.links.push(l);
        }
    }
    for c in chains {
        if let Some(s) = orphan(&mut orphans, skip, wanted, &c) {
            s.host_chains.push(c);
        }
    }
    for r in rules {
        let owner = r.iter().find_map(|w| is_ours(w).map(|_| w.clone()));
        if let Some(w) = owner {
            if let Some(s) = orphan(&mut orphans, skip, wanted, &w) {
                s.host_rules.push(r);
            }
        }
    }
    orphans
}

/// The orphan run that object `name` belongs to (created on first use), unless it is not ours,
/// its run is in `skip`, or not `wanted`.
fn orphan<'a>(
    orphans: &'a mut BTreeMap<String, RunState>,
    skip: &[String],
    wanted: &dyn Fn(&str) -> bool,
    name: &str,
) -> Option<&'a mut RunState> {
    let id = is_ours(name)?;
    if skip.contains(&id) || !wanted(&id) {
        return None;
    }
    Some(orphans.entry(id.clone()).or_insert_with(|| RunState { run_id: id, ..RunState::default() }))
}

/// Removes each run (or, when `dry_run`, says what would go); a run's state file goes only
/// while no removal has failed.
fn remove_runs(all: &[RunState], dir: &std::path::Path, dry_run: bool, report: &mut CleanupReport) {
    for s in all {
        if dry_run {
            outln!(
                "would remove run {}: netns {:?}, links {:?}, rules {:?}, chains {:?}, processes {:?}",
                s.run_id,
                s.netns,
                s.links,
                s.host_rules,
                s.host_chains,
                s.pids
            );
            continue;
        }
        state::remove_run(s, report);
        if report.errors.is_empty() {
            RunState::remove(dir, &s.run_id);
        }
    }
}

/// Prints what was removed, left alone and failed; the exit code (an error if anything failed).
fn print_report(report: &CleanupReport) -> u8 {
    for r in &report.removed {
        outln!("removed {r}");
    }
    for s in &report.skipped_live {
        outln!("left alone live run {s}");
    }
    for e in &report.errors {
        eprintln!("faultline cleanup: {e}");
    }
    if report.errors.is_empty() {
        crate::EXIT_VALID
    } else {
        crate::EXIT_ERROR
    }
}
