//! `faultline campaign` without running clusters: campaign files refused up front with
//! `file:line` and exit 255, and the shipped campaigns (campaigns/*.toml) valid, expanded by
//! `--dry-run` into their cells, compare.toml covering every reference role.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        // Validation looks for the node binary, as `faultline run` does; nothing runs it here.
        .env("FAULTLINE_NODE_BIN", "/bin/true")
        .output()
        .expect("faultline starts")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_bad_campaign_file_is_refused_with_file_line_and_255_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let cases = [
        ("bad-target.toml", "[[matrix]]\ntargets = [\"raft\",\n  \"zookeeper\"]\nworkloads = [\"register\"]\nnemeses = [\"none\"]\n", 3, "unknown target \"zookeeper\""),
        ("bad-nodes.toml", "[defaults]\nnodes = 99\n[[matrix]]\ntarget = \"raft\"\nworkload = \"register\"\nnemesis = \"none\"\n", 2, "--nodes must be between 1 and 20"),
        ("bad-syntax.toml", "[[matrix]]\ntarget = \"raft\"\nworkload = register\n", 3, ""),
        ("bad-key.toml", "[[matrix]]\ntarget = \"raft\"\nworkload = \"register\"\nnemesis = \"none\"\ntimelimit = 5\n", 5, "unknown field `timelimit`"),
        ("bad-nemesis.toml", "[[matrix]]\ntarget = \"raft\"\nworkload = \"register\"\nnemeses = [\"partition\", \"partition:sideways\"]\n", 4, "partition:sideways"),
    ];
    for (name, text, line, needle) in cases {
        let file = tmp.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = faultline(&["campaign", file.to_str().unwrap(), "--store", store.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(255), "{name}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let at = format!("{}:{line}: ", file.display());
        assert!(stderr.contains(&at), "{name}: expected {at:?} in:\n{stderr}");
        assert!(stderr.contains(needle), "{name}: expected {needle:?} in:\n{stderr}");
    }
    assert!(!store.exists(), "a refused campaign must not create its folder");
    let out = faultline(&["campaign", tmp.path().join("missing.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml: cannot read"), "{}", show(&out));
}

#[test]
fn the_shipped_campaigns_are_valid_and_dry_run_lists_their_cells_with_seeds() {
    let out = faultline(&["campaign", repo().join("campaigns/smoke.toml").to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("campaign smoke (seed 11): 3 cells"), "{stdout}");
    // Each cell's command carries the cell's own seed, derived from the campaign's.
    let seeds: Vec<&str> =
        stdout.lines().filter_map(|l| l.split(" --seed ").nth(1)).filter_map(|r| r.split_whitespace().next()).collect();
    assert_eq!(seeds.len(), 3, "{stdout}");
    assert!(seeds.iter().all(|s| *s != "11"), "cell seeds derive from the campaign seed: {seeds:?}");
    // --seed changes every derived seed; the same seed gives the same cells.
    let again = faultline(&["campaign", repo().join("campaigns/smoke.toml").to_str().unwrap(), "--dry-run"]);
    assert_eq!(again.stdout, out.stdout, "a dry run is deterministic");
    let other =
        faultline(&["campaign", repo().join("campaigns/smoke.toml").to_str().unwrap(), "--dry-run", "--seed", "12"]);
    assert_ne!(other.stdout, out.stdout);
}

#[test]
fn compare_toml_covers_every_reference_role_under_partitions_and_clock_skew() {
    let out = faultline(&["campaign", repo().join("campaigns/compare.toml").to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for role in faultline_core::target::roles::names() {
        for nemesis in ["partition", "clock"] {
            let needle = format!("--target {role} ");
            // `--nemesis partition` or narrowed to kinds (`--nemesis partition:halves+...`).
            let found = stdout.lines().any(|l| {
                l.contains(&needle)
                    && (l.contains(&format!("--nemesis {nemesis} ")) || l.contains(&format!("--nemesis {nemesis}:")))
            });
            assert!(found, "campaigns/compare.toml has no cell of role {role} under {nemesis}: add a [[matrix]] block for it\n{stdout}");
        }
    }
    assert!(
        stdout.contains("--target crdt --workload set") && stdout.contains("--target crdt --workload counter"),
        "{stdout}"
    );
}

/// A reader that closes the pipe (`faultline campaign F --dry-run | head`) ends the listing,
/// not the process: no panic, and the exit code is the command's own.
#[test]
fn a_closed_stdout_ends_the_listing_without_a_panic() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["campaign", repo().join("campaigns/detection.toml").to_str().unwrap(), "--dry-run"])
        .env("FAULTLINE_NODE_BIN", "/bin/true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("faultline starts");
    // The read end closes before anything is written: the first write meets a closed pipe.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "nothing to say about a reader that left: {stderr}");
}
