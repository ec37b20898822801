//! Options are checked before anything starts (issue 19, findings 8–9): every bad combination
//! of target, workload, bug, option, port and target file exits 255 within a second with one
//! line, and creates no run folder and no state file; a campaign with such a cell is refused
//! before any cell runs, naming FILE:LINE, with and without `--dry-run`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn faultline(args: &[&str], state: &Path) -> (Output, Duration) {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env("FAULTLINE_STATE_DIR", state)
        .output()
        .expect("faultline runs");
    (o, t.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const BAD: &[(&[&str], &str)] = &[
    (&["--target", "paxos", "--bug", "lease"], "--bug lease is a bug of role raft, not of --target paxos"),
    (&["--target-opt", "read-mode=bogus"], "--target-opt read-mode=bogus: expected one of read-index, lease"),
    (&["--target-opt", "election-ms=0"], "--target-opt election-ms=0: expected an integer"),
    (&["--port", "0"], "--port must be in [1, 65535]"),
    (&["--target", "nonexistent.toml"], "--target nonexistent.toml: cannot read the target file"),
    (&["--target", "raft", "--workload", "set"], "--target raft serves no set API"),
    (&["--target", "raft", "--workload", "counter"], "--target raft serves no counter API"),
    (&["--target", "lb", "--bug", "naive-weighted"], "add --target-opt strategy=weighted"),
    (&["--target", "etcd", "--bug", "stale-read"], "planted bugs are the reference roles'"),
];

#[test]
fn bad_options_exit_255_at_once_with_one_line_and_create_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (store, state) = (d.path().join("store"), d.path().join("state"));
    for (flags, message) in BAD {
        let mut args = vec!["run", "--store", store.to_str().unwrap(), "--time-limit", "2", "--nodes", "3"];
        args.extend_from_slice(flags);
        let (o, took) = faultline(&args, &state);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(255), "{flags:?}: {err}");
        assert!(took < Duration::from_secs(1), "{flags:?} took {took:?}");
        assert!(err.contains(message), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{flags:?}: {err}");
        assert!(!store.exists() && !state.exists(), "{flags:?} created a folder");
    }
}

#[test]
fn an_error_is_printed_once() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let store = file.join("store");
    let args = ["run", "--store", store.to_str().unwrap(), "--nodes", "1", "--nemesis", "none", "--time-limit", "1"];
    let (o, _) = faultline(&args, &d.path().join("state"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(255), "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
}

#[test]
fn a_campaign_with_a_bad_cell_is_refused_before_any_cell_runs() {
    let d = tempfile::tempdir().unwrap();
    let (store, state) = (d.path().join("store"), d.path().join("state"));
    let file = d.path().join("c.toml");
    let text = "seed = 1\n[defaults]\ntime-limit = 1\nnemesis = \"none\"\nnodes = 3\n\n\
                [[matrix]]\ntarget = \"raft\"\nworkload = \"register\"\n\n\
                [[matrix]]\ntarget = \"paxos\"\nworkload = \"register\"\nbugs = [\"lease\"]\n";
    std::fs::write(&file, text).unwrap();
    for dry in [true, false] {
        let mut args = vec!["campaign", file.to_str().unwrap(), "--store", store.to_str().unwrap()];
        if dry {
            args.push("--dry-run");
        }
        let (o, took) = faultline(&args, &state);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(255), "{err}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert!(
            err.contains(&format!("{}:14:", file.display())) && err.contains("--bug lease is a bug of role raft"),
            "{err}"
        );
        assert!(!store.exists() && !state.exists(), "a cell ran");
    }
}
