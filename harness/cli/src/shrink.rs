//! `faultline shrink RUN_DIR [--budget-runs N]`: a smaller run that still fails.
//!
//! Takes an invalid run and re-runs it (each attempt a child `faultline run` with the run's
//! flags, its seed, and an explicit `--schedule`), searching for a smaller reproduction:
//!
//! 1. the schedule without any fault (some bugs need none);
//! 2. delta debugging (Zeller's ddmin) over the fault windows: subsets, then complements, at
//!    finer and finer granularity, keeping the first smaller schedule whose run is invalid;
//! 3. a shorter time limit: the last kept window's end plus one interval (or half the limit
//!    when no window is left, not below [`MIN_TIME_LIMIT_S`]);
//! 4. fewer clients: half the concurrency, while it stays invalid.
//!
//! At most `--budget-runs` attempts ([`MAX_BUDGET`]). Every attempt is an ordinary run in the
//! store (test name `<name>-shrink`); its schedule file and output, and `shrink.json` (every
//! attempt: what it tried, its run folder and verdict), go to `RUN_DIR/shrink/`. The node count
//! is kept: the schedule names node indexes. Exit code: 0 when the search ran (its result may
//! be the run itself, said so), 255 when the run cannot be shrunk (not invalid, no test.json).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use faultline_core::nemesis::Schedule;
use serde_json::{json, Value};

use crate::run::shell_quote;
use crate::{EXIT_ERROR, EXIT_INVALID, EXIT_VALID};

/// Most attempts one shrink may run.
pub const MAX_BUDGET: usize = 200;
/// Shortest time limit a shrink tries, in seconds.
pub const MIN_TIME_LIMIT_S: f64 = 4.0;

#[derive(clap::Args, Debug)]
pub struct ShrinkArgs {
    /// The folder of an invalid run (store/<test>/<timestamp>).
    pub run_dir: PathBuf,
    /// Most re-runs the search may make.
    #[arg(long, default_value_t = 12)]
    pub budget_runs: usize,
}

/// One way to run the test again: a subset of the windows, a time limit, a client count.
#[derive(Clone, Debug, PartialEq)]
struct Shape {
    windows: Vec<usize>,
    time_limit: f64,
    concurrency: u64,
}

/// The run being shrunk and the attempts made so far.
struct Search {
    run_dir: PathBuf,
    store: PathBuf,
    name: String,
    seed: u64,
    options: Value,
    schedule: Schedule,
    interval: f64,
    budget: usize,
    attempts: Vec<Value>,
    /// The newest attempt that ended invalid: (its shape, its run folder, its repro).
    best: Option<(Shape, PathBuf, String)>,
}

/// Delta debugging (ddmin) of `items`, which `fails` is assumed to hold for: the smallest
/// subset found (1-minimal when the budget allowed) on which `fails` still holds. `fails`
/// returns `None` once the budget is spent, which ends the search.
pub fn ddmin(items: &[usize], fails: &mut dyn FnMut(&[usize]) -> Option<bool>) -> Vec<usize> {
    let mut cur = items.to_vec();
    let mut n = 2usize;
    'outer: while cur.len() >= 2 {
        let chunk = cur.len().div_ceil(n);
        let parts: Vec<Vec<usize>> = cur.chunks(chunk).map(<[usize]>::to_vec).collect();
        for p in &parts {
            match fails(p) {
                None => break 'outer,
                Some(true) => {
                    cur = p.clone();
                    n = 2;
                    continue 'outer;
                }
                Some(false) => {}
            }
        }
        if parts.len() > 2 {
            for i in 0..parts.len() {
                let rest: Vec<usize> =
                    parts.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, p)| p.iter().copied()).collect();
                match fails(&rest) {
                    None => break 'outer,
                    Some(true) => {
                        cur = rest;
                        n = (n - 1).max(2);
                        continue 'outer;
                    }
                    Some(false) => {}
                }
            }
        }
        if n >= cur.len() {
            break;
        }
        n = (2 * n).min(cur.len());
    }
    cur
}

fn read_json(p: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
}

impl Search {
    fn open(run_dir: &Path, budget: usize) -> anyhow::Result<Search> {
        let run_dir = std::fs::canonicalize(run_dir).with_context(|| format!("no run folder {}", run_dir.display()))?;
        let results = read_json(&run_dir.join("results.json"))?;
        if results["verdict"] != "invalid" {
            bail!("{} ended {}, not invalid: there is no failure to shrink", run_dir.display(), results["verdict"]);
        }
        let test = read_json(&run_dir.join("test.json"))?;
        let schedule: Schedule =
            serde_json::from_value(test["schedule"].clone()).context("test.json has no schedule")?;
        let options = test["options"].clone();
        let num = |k: &str| options[k].as_f64().with_context(|| format!("test.json options lack {k}"));
        let store =
            run_dir.parent().and_then(Path::parent).context("a run folder lies in STORE/<test>/")?.to_path_buf();
        Ok(Search {
            name: format!("{}-shrink", test["name"].as_str().unwrap_or("run")),
            seed: test["seed"].as_u64().context("test.json has no seed")?,
            interval: num("nemesis_interval")?,
            store,
            options,
            schedule,
            budget: budget.min(MAX_BUDGET),
            attempts: Vec::new(),
            best: None,
            run_dir,
        })
    }

    /// The child's flags, from the run's options, but for what an attempt changes.
    fn base_args(&self) -> Vec<String> {
        let o = &self.options;
        let mut a: Vec<String> = vec!["run".into()];
        for (flag, key) in [
            ("--target", "target"),
            ("--workload", "workload"),
            ("--nodes", "nodes"),
            ("--rate", "rate"),
            ("--nemesis-interval", "nemesis_interval"),
            ("--runtime", "runtime"),
            ("--recovery", "recovery"),
            ("--op-timeout-ms", "op_timeout_ms"),
            ("--setup-timeout", "setup_timeout"),
            ("--local-net", "local_net"),
            ("--port", "port"),
        ] {
            match &o[key] {
                Value::String(s) => a.extend([flag.into(), s.clone()]),
                Value::Number(n) => a.extend([flag.into(), n.to_string()]),
                _ => {}
            }
        }
        for (flag, key) in [("--bug", "bugs"), ("--target-opt", "target_opts")] {
            for v in o[key].as_array().into_iter().flatten().filter_map(Value::as_str) {
                a.extend([flag.into(), v.into()]);
            }
        }
        if let Some(b) = o["node_bin"].as_str().filter(|b| !b.is_empty() && o["runtime"] == "local") {
            a.extend(["--node-bin".into(), b.into()]);
        }
        a
    }

    /// Runs one attempt; `None` once the budget is spent, else whether it ended invalid.
    fn attempt(&mut self, shape: &Shape, what: &str) -> anyhow::Result<Option<bool>> {
        if self.attempts.len() >= self.budget {
            return Ok(None);
        }
        let k = self.attempts.len() + 1;
        let dir = self.run_dir.join("shrink");
        std::fs::create_dir_all(&dir)?;
        let sched = Schedule {
            name: format!("shrink of {}", self.schedule.name),
            faults: shape.windows.iter().map(|&i| self.schedule.faults[i].clone()).collect(),
        };
        let sched_file = dir.join(format!("attempt-{k}.schedule.json"));
        std::fs::write(&sched_file, serde_json::to_string_pretty(&sched)?)?;
        let test_dir = self.store.join(&self.name);
        let before = list_dirs(&test_dir);
        let mut args = self.base_args();
        args.extend([
            "--schedule".into(),
            sched_file.display().to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--time-limit".into(),
            shape.time_limit.to_string(),
            "--concurrency".into(),
            shape.concurrency.to_string(),
            "--name".into(),
            self.name.clone(),
            "--store".into(),
            self.store.display().to_string(),
            "--quiet".into(),
        ]);
        eprintln!(
            "faultline shrink: attempt {k}/{}: {what}: {} window(s), {} s, {} client(s)",
            self.budget,
            shape.windows.len(),
            shape.time_limit,
            shape.concurrency
        );
        let out = Command::new(std::env::current_exe()?).args(&args).output()?;
        let log = [out.stdout.as_slice(), b"\n--- stderr ---\n", out.stderr.as_slice()].concat();
        std::fs::write(dir.join(format!("attempt-{k}.log")), log)?;
        let run = list_dirs(&test_dir).into_iter().find(|d| !before.contains(d));
        let code = out.status.code();
        let failed = code == Some(i32::from(EXIT_INVALID));
        let repro = run
            .as_ref()
            .and_then(|d| read_json(&d.join("test.json")).ok())
            .and_then(|t| t["repro"].as_str().map(String::from))
            .unwrap_or_else(|| {
                format!("faultline {}", args.iter().map(|s| shell_quote(s)).collect::<Vec<_>>().join(" "))
            });
        eprintln!("faultline shrink: attempt {k}: exit {code:?}{}", if failed { " (invalid: kept)" } else { "" });
        self.attempts.push(json!({
            "attempt": k, "tried": what, "windows": shape.windows, "time_limit": shape.time_limit,
            "concurrency": shape.concurrency, "schedule_file": sched_file, "run_dir": run,
            "exit_code": code, "invalid": failed, "repro": repro,
        }));
        if failed {
            if let Some(d) = run {
                self.best = Some((shape.clone(), d, repro));
            }
        }
        Ok(Some(failed))
    }
}

/// The sub-folders of `dir` (none when it does not exist).
fn list_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).filter(|p| p.is_dir() && !p.is_symlink()).collect())
        .unwrap_or_default()
}

/// The search: no faults, ddmin over the windows, a shorter limit, fewer clients.
fn search(s: &mut Search) -> anyhow::Result<Shape> {
    let o = &s.options;
    let mut cur = Shape {
        windows: (0..s.schedule.faults.len()).collect(),
        time_limit: o["time_limit"].as_f64().context("test.json options lack time_limit")?,
        concurrency: o["concurrency"].as_u64().context("test.json options lack concurrency")?,
    };
    if !cur.windows.is_empty() {
        let none = Shape { windows: vec![], ..cur.clone() };
        if s.attempt(&none, "no fault")? == Some(true) {
            cur = none;
        }
    }
    if cur.windows.len() >= 2 {
        let mut err = None;
        let base = cur.clone();
        let kept = ddmin(&base.windows, &mut |w| {
            let shape = Shape { windows: w.to_vec(), ..base.clone() };
            s.attempt(&shape, "a subset of the windows").unwrap_or_else(|e| {
                err = Some(e);
                None
            })
        });
        if let Some(e) = err {
            return Err(e);
        }
        // ddmin keeps a subset only once a run of it ended invalid.
        cur.windows = kept;
    }
    let last_end = cur.windows.iter().map(|&i| s.schedule.faults[i].end_s).fold(0.0, f64::max);
    let shorter = if cur.windows.is_empty() {
        (cur.time_limit / 2.0).max(MIN_TIME_LIMIT_S)
    } else {
        (last_end + s.interval).ceil().max(MIN_TIME_LIMIT_S)
    };
    if shorter < cur.time_limit {
        let t = Shape { time_limit: shorter, ..cur.clone() };
        if s.attempt(&t, "a shorter time limit")? == Some(true) {
            cur = t;
        }
    }
    while cur.concurrency > 1 {
        let c = Shape { concurrency: cur.concurrency / 2, ..cur.clone() };
        match s.attempt(&c, "fewer clients")? {
            Some(true) => cur = c,
            _ => break,
        }
    }
    Ok(cur)
}

pub fn main(args: ShrinkArgs) -> anyhow::Result<u8> {
    if args.budget_runs == 0 {
        bail!("--budget-runs must be at least 1");
    }
    let mut s = match Search::open(&args.run_dir, args.budget_runs) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("faultline shrink: {e:#}");
            return Ok(EXIT_ERROR);
        }
    };
    let from = s.schedule.faults.len();
    let result = search(&mut s);
    let best = s.best.clone();
    let summary = json!({
        "run_dir": s.run_dir, "budget_runs": s.budget, "runs_used": s.attempts.len(),
        "windows_before": from, "attempts": s.attempts,
        "shrunk": best.as_ref().map(|(shape, dir, repro)| json!({
            "windows": shape.windows.len(), "time_limit": shape.time_limit,
            "concurrency": shape.concurrency, "run_dir": dir, "repro": repro })),
    });
    let out = s.run_dir.join("shrink").join("shrink.json");
    std::fs::create_dir_all(s.run_dir.join("shrink"))?;
    std::fs::write(&out, serde_json::to_string_pretty(&summary)?)?;
    result?;
    outln!("runs: {} of {} (every attempt: {})", s.attempts.len(), s.budget, out.display());
    match best {
        Some((shape, dir, repro)) => {
            outln!(
                "shrunk: {from} → {} fault window(s), time limit {} s, {} client(s); run {}",
                shape.windows.len(),
                shape.time_limit,
                shape.concurrency,
                dir.display()
            );
            outln!("reproduce: {repro}");
        }
        None => {
            outln!("not shrunk: no smaller attempt ended invalid; the run itself is the smallest found");
            let repro = read_json(&s.run_dir.join("test.json"))?["repro"].as_str().unwrap_or("").to_string();
            outln!("reproduce: {repro}");
        }
    }
    Ok(EXIT_VALID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_ddmin(n: usize, fails_if: impl Fn(&[usize]) -> bool, budget: usize) -> (Vec<usize>, usize) {
        let items: Vec<usize> = (0..n).collect();
        let mut used = 0;
        let got = ddmin(&items, &mut |w| {
            if used >= budget {
                return None;
            }
            used += 1;
            Some(fails_if(w))
        });
        (got, used)
    }

    #[test]
    fn ddmin_finds_the_one_window_that_matters() {
        let (got, used) = run_ddmin(13, |w| w.contains(&7), 100);
        assert_eq!(got, vec![7]);
        assert!(used <= 13, "{used} runs");
    }

    #[test]
    fn ddmin_finds_a_pair_that_only_fails_together() {
        let (got, _) = run_ddmin(10, |w| w.contains(&2) && w.contains(&8), 200);
        assert_eq!(got, vec![2, 8]);
    }

    #[test]
    fn ddmin_stops_at_the_budget_with_what_it_kept() {
        let (got, used) = run_ddmin(16, |w| w.contains(&3) && w.contains(&12), 2);
        assert_eq!(used, 2);
        assert!(got.contains(&3) && got.contains(&12));
        // Nothing smaller fails: the whole set comes back.
        let (got, _) = run_ddmin(6, |w| w.len() == 6, 100);
        assert_eq!(got.len(), 6);
    }
}
