//! Replay: an explicit fault schedule read from a file (`faultline run --schedule FILE`).
//!
//! Accepted: a run's `test.json` (its `schedule` object, and its `seed`), a run's
//! `results.json` (which names the schedule only: its sibling `test.json` is read), a run
//! folder (its `test.json`), or a file holding just a [`Schedule`] (`{"name", "faults"}`), as
//! `faultline shrink` writes. [`check`] refuses a schedule this run cannot follow (a fault past
//! the time limit, a node index beyond the cluster, an unknown kind, overlapping windows).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Family, Schedule};

/// Largest schedule file read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Most faults a replayed schedule may hold.
pub const MAX_FAULTS: usize = 100_000;

/// A schedule read from a file, with the seed of the run it came from when the file has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub schedule: Schedule,
    pub seed: Option<u64>,
    /// The file the schedule was read from (a run folder resolves to its test.json).
    pub source: PathBuf,
}

fn read_json(path: &Path) -> Result<Value, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{}: {} bytes, more than the {MAX_FILE_BYTES} a schedule file may have",
            path.display(),
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// Reads the schedule in `path` (see the module doc for what is accepted).
pub fn load(path: &Path) -> Result<Loaded, String> {
    let file = if path.is_dir() { path.join("test.json") } else { path.to_path_buf() };
    let v = read_json(&file)?;
    let seed = v.get("seed").and_then(Value::as_u64);
    let (schedule, source, seed) = match v.get("schedule") {
        Some(s @ Value::Object(_)) => (s.clone(), file, seed),
        Some(_) => {
            // results.json names the schedule; the schedule itself is in test.json beside it.
            let test = file.with_file_name("test.json");
            let t = read_json(&test)
                .map_err(|e| format!("{} names its schedule only, and its test.json: {e}", file.display()))?;
            let s = t
                .get("schedule")
                .filter(|s| s.is_object())
                .cloned()
                .ok_or_else(|| format!("{} has no schedule object", test.display()))?;
            (s, test, t.get("seed").and_then(Value::as_u64).or(seed))
        }
        None if v.get("faults").is_some() => (v, file, None),
        None => {
            return Err(format!(
                "{}: no schedule: expected a run's test.json or results.json, or {{\"name\", \"faults\"}}",
                file.display()
            ))
        }
    };
    let schedule: Schedule =
        serde_json::from_value(schedule).map_err(|e| format!("{}: bad schedule: {e}", source.display()))?;
    Ok(Loaded { schedule, seed, source })
}

/// Refuses a schedule that a run of `nodes` nodes and `time_limit_s` seconds cannot follow.
pub fn check(s: &Schedule, nodes: usize, time_limit_s: f64) -> Result<(), String> {
    if s.faults.len() > MAX_FAULTS {
        return Err(format!("{} faults, more than {MAX_FAULTS}", s.faults.len()));
    }
    let mut prev_end = 0.0f64;
    for (i, f) in s.faults.iter().enumerate() {
        let at = format!("fault {} ({}:{})", i + 1, f.spec.family.as_str(), f.spec.kind);
        if !(f.start_s.is_finite() && f.end_s.is_finite() && f.spec.param.is_finite()) {
            return Err(format!("{at}: times and parameter must be finite numbers"));
        }
        if f.start_s < prev_end || f.end_s <= f.start_s {
            return Err(format!(
                "{at}: windows must be in order and not overlap ({} s to {} s after one ending at {prev_end} s)",
                f.start_s, f.end_s
            ));
        }
        if f.end_s > time_limit_s {
            return Err(format!(
                "{at} ends at {} s, after the time limit ({time_limit_s} s): raise --time-limit",
                f.end_s
            ));
        }
        if !kind_exists(f.spec.family, &f.spec.kind) {
            return Err(format!("{at}: no such kind"));
        }
        if let Some(bad) = f.spec.order.iter().find(|&&n| n >= nodes) {
            return Err(format!(
                "{at}: node index {bad} is beyond the {nodes} nodes of this run (the schedule was made for more: set --nodes)"
            ));
        }
        let mut order = f.spec.order.clone();
        order.sort_unstable();
        order.dedup();
        if order.len() != f.spec.order.len() {
            return Err(format!("{at}: a node appears twice in its order"));
        }
        prev_end = f.end_s;
    }
    Ok(())
}

fn kind_exists(family: Family, kind: &str) -> bool {
    family.kinds().contains(&kind) || family.explicit_kinds().contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nemesis::{coverage, Family};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fl-replay-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_test_json_results_json_a_run_folder_and_a_bare_schedule() {
        let s = coverage::generate(7, 5, true, &|_: Family| true, 30.0, 3.0);
        let d = tmp("forms");
        let test = serde_json::json!({ "seed": 7, "schedule": s, "name": "raft-register" });
        std::fs::write(d.join("test.json"), test.to_string()).unwrap();
        std::fs::write(d.join("results.json"), r#"{"schedule": "all", "seed": 7}"#).unwrap();
        std::fs::write(d.join("bare.json"), serde_json::to_string(&s).unwrap()).unwrap();
        for p in [d.join("test.json"), d.join("results.json"), d.clone()] {
            let l = load(&p).unwrap();
            assert_eq!((l.schedule.clone(), l.seed), (s.clone(), Some(7)), "{p:?}");
            assert_eq!(l.source, d.join("test.json"));
        }
        let bare = load(&d.join("bare.json")).unwrap();
        assert_eq!((bare.schedule, bare.seed), (s.clone(), None));
        std::fs::write(d.join("other.json"), r#"{"verdict": "valid"}"#).unwrap();
        assert!(load(&d.join("other.json")).unwrap_err().contains("no schedule"));
        std::fs::remove_file(d.join("test.json")).unwrap();
        assert!(load(&d.join("results.json")).unwrap_err().contains("test.json"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn check_refuses_what_the_run_cannot_follow() {
        let s = coverage::generate(3, 5, true, &|_: Family| true, 30.0, 3.0);
        assert!(check(&s, 5, 30.0).is_ok());
        assert!(check(&s, 3, 30.0).unwrap_err().contains("beyond the 3 nodes"));
        assert!(check(&s, 5, 20.0).unwrap_err().contains("raise --time-limit"));
        let mut bad = s.clone();
        bad.faults[1].start_s = bad.faults[0].start_s;
        assert!(check(&bad, 5, 30.0).unwrap_err().contains("overlap"));
        let mut bad = s.clone();
        bad.faults[0].spec.kind = "sideways".into();
        assert!(check(&bad, 5, 30.0).unwrap_err().contains("no such kind"));
        let mut bad = s.clone();
        bad.faults[0].spec.order = vec![1, 1];
        assert!(check(&bad, 5, 30.0).unwrap_err().contains("twice"));
        // A subset of the windows (what shrink runs) is still a schedule.
        let mut sub = s.clone();
        sub.faults.remove(0);
        sub.faults.remove(1);
        assert!(check(&sub, 5, 30.0).is_ok());
    }
}
