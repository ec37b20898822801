//! Finding and removing what Docker runs left: labelled containers and networks, and compose
//! folders (`faultline cleanup`).

use std::collections::BTreeMap;
use std::path::Path;

use super::{call, engine_available, run_bounded, DOCKER_CALL_TIMEOUT, HARNESS_PID_FILE, LABEL_RUN, PROJECT_PREFIX};
use crate::runtime::state::{self, CleanupReport};
use crate::runtime::{cmd, RuntimeError};

/// A Docker object labelled as a faultline run's.
#[derive(Clone, Debug, PartialEq)]
pub struct Labelled {
    pub id: String,
    pub name: String,
    pub run_id: String,
    pub harness_pid: Option<u32>,
}

/// Parses `docker ps`/`docker network ls` lines `ID\tNAME\tRUN\tPID\tPROJECT`, keeping only
/// objects that are ours on both counts: the run label is a run id (`fl` + 6 hex digits) and the
/// compose project is `faultline-` + that run id.
pub fn parse_labelled(text: &str) -> Vec<Labelled> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [id, name, run, pid, project] = f[..] else {
                return None;
            };
            let run = run.trim();
            let ours = state::is_ours(&format!("{run}x")).as_deref() == Some(run) && run.len() == 8;
            if !ours || project.trim() != format!("{PROJECT_PREFIX}{run}") {
                return None;
            }
            Some(Labelled {
                id: id.trim().into(),
                name: name.trim().trim_start_matches('/').into(),
                run_id: run.into(),
                harness_pid: pid.trim().parse().ok(),
            })
        })
        .collect()
}

const LS_FORMAT: &str = "{{.ID}}\t{{.Names}}\t{{.Label \"faultline.run\"}}\t{{.Label \"faultline.harness-pid\"}}\t{{.Label \"com.docker.compose.project\"}}";
const NET_FORMAT: &str = "{{.ID}}\t{{.Name}}\t{{.Label \"faultline.run\"}}\t{{.Label \"faultline.harness-pid\"}}\t{{.Label \"com.docker.compose.project\"}}";

/// Containers and networks of faultline runs (all runs, or the run `only`).
pub fn list_labelled(only: Option<&str>) -> Result<(Vec<Labelled>, Vec<Labelled>), RuntimeError> {
    let filter = match only {
        Some(r) => format!("label={LABEL_RUN}={r}"),
        None => format!("label={LABEL_RUN}"),
    };
    let containers =
        parse_labelled(&call("docker", &["ps", "-a", "--no-trunc", "--filter", &filter, "--format", LS_FORMAT])?);
    let networks =
        parse_labelled(&call("docker", &["network", "ls", "--no-trunc", "--filter", &filter, "--format", NET_FORMAT])?);
    Ok((containers, networks))
}

/// Removes every container and network labelled with `run_id` (containers first: a network
/// with endpoints cannot go).
pub fn remove_labelled(run_id: &str, report: &mut CleanupReport) {
    let (containers, networks) = match list_labelled(Some(run_id)) {
        Ok(x) => x,
        Err(e) => {
            report.errors.push(e.to_string());
            return;
        }
    };
    remove_objects(&containers, &networks, report);
}

fn remove_objects(containers: &[Labelled], networks: &[Labelled], report: &mut CleanupReport) {
    for c in containers {
        // A paused container cannot be removed by force in every Docker version: unpause first.
        let _ = run_bounded("docker", &["unpause", &c.id], &[], None, DOCKER_CALL_TIMEOUT, None);
        match call("docker", &["rm", "-f", "-v", &c.id]) {
            Ok(_) => report.removed.push(format!("container {}", c.name)),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    for n in networks {
        match call("docker", &["network", "rm", &n.id]) {
            Ok(_) => report.removed.push(format!("network {}", n.name)),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
}

/// `faultline cleanup`'s Docker part: removes the containers and networks of runs whose
/// harness is gone (or also live ones with `force`), only of the runs in `only` when it is not
/// empty, and their compose folders in
/// `STATE_DIR/docker/`. Touches only objects labelled `faultline.run=RUN_ID` whose compose
/// project is `faultline-RUN_ID`. No Docker engine = nothing to do. With `dry_run`, removes
/// nothing and returns what it would remove.
pub fn cleanup_leftovers(
    state_dir: &Path,
    only: &[String],
    force: bool,
    dry_run: bool,
    report: &mut CleanupReport,
) -> Vec<String> {
    let runs = labelled_runs(only, report);
    // Compose folders of runs with no object left (a run killed before `up`).
    let compose_root = state_dir.join("docker");
    let dirs = compose_dirs(&compose_root, only);
    let mut sweep = Sweep { force, dry_run, report, planned: Vec::new() };
    for (run, objects) in &runs {
        sweep.objects(run, objects);
    }
    for run in dirs {
        sweep.compose_dir(&compose_root, &run, runs.get(&run));
    }
    sweep.planned
}

/// A run's containers and networks, and whether its harness is live.
#[derive(Default)]
struct RunObjects {
    containers: Vec<Labelled>,
    networks: Vec<Labelled>,
    live: bool,
}

/// True when `run` is one of `only`, or `only` is empty.
fn wanted(only: &[String], run: &str) -> bool {
    only.is_empty() || only.iter().any(|r| r == run)
}

/// A harness is live when its pid runs a faultline program (a reused pid does not count).
fn harness_live(pid: Option<u32>) -> bool {
    let me = std::process::id();
    pid.is_some_and(|p| p != me && state::cmdline(p).is_some_and(|c| c.contains("faultline")))
}

/// The Docker objects of the wanted runs, by run (none without a Docker engine).
fn labelled_runs(only: &[String], report: &mut CleanupReport) -> BTreeMap<String, RunObjects> {
    let mut runs: BTreeMap<String, RunObjects> = BTreeMap::new();
    if cmd::available("docker") && engine_available() {
        match list_labelled(None) {
            Ok((containers, networks)) => {
                for c in containers.into_iter().filter(|c| wanted(only, &c.run_id)) {
                    let e = runs.entry(c.run_id.clone()).or_default();
                    e.live |= harness_live(c.harness_pid);
                    e.containers.push(c);
                }
                for n in networks.into_iter().filter(|n| wanted(only, &n.run_id)) {
                    let e = runs.entry(n.run_id.clone()).or_default();
                    e.live |= harness_live(n.harness_pid);
                    e.networks.push(n);
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    runs
}

/// The run ids of the wanted runs' compose folders under `compose_root`.
fn compose_dirs(compose_root: &Path, only: &[String]) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(compose_root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 8
                && state::is_ours(&format!("{name}x")).as_deref() == Some(name.as_str())
                && wanted(only, &name)
            {
                dirs.push(name);
            }
        }
    }
    dirs
}

/// One pass of [`cleanup_leftovers`]: its options, and what it would remove (`dry_run`).
struct Sweep<'a> {
    force: bool,
    dry_run: bool,
    report: &'a mut CleanupReport,
    planned: Vec<String>,
}

impl Sweep<'_> {
    /// Removes (or plans) the containers and networks of `run`, unless its harness is live.
    fn objects(&mut self, run: &str, objects: &RunObjects) {
        if objects.live && !self.force {
            self.report.skipped_live.push(format!("docker run {run} (its harness is alive; use --force)"));
            return;
        }
        if self.dry_run {
            for c in &objects.containers {
                self.planned.push(format!("container {} (run {run})", c.name));
            }
            for n in &objects.networks {
                self.planned.push(format!("network {} (run {run})", n.name));
            }
        } else {
            remove_objects(&objects.containers, &objects.networks, self.report);
        }
    }

    /// Removes (or plans) the compose folder of `run` (whose objects were `objects`), unless
    /// its harness is live.
    fn compose_dir(&mut self, compose_root: &Path, run: &str, objects: Option<&RunObjects>) {
        if objects.is_some_and(|r| r.live && !self.force) {
            return;
        }
        if objects.is_none() && !self.force {
            // No object left: the folder of a run that may be starting right now (between
            // setup and `up`) looks the same; leave it unless its harness is gone.
            let pid = std::fs::read_to_string(compose_root.join(run).join(HARNESS_PID_FILE))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if harness_live(pid) {
                return;
            }
        }
        let path = compose_root.join(run);
        if self.dry_run {
            self.planned.push(format!("compose folder {}", path.display()));
        } else {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => self.report.removed.push(format!("compose folder {}", path.display())),
                Err(e) => self.report.errors.push(format!("{}: {e}", path.display())),
            }
        }
    }
}
