//! The SSH runtime end to end, on a bed of real sshd hosts (scripts/ssh-testbed.sh: one network
//! namespace and one sshd per host, each with its own remote dir): a run under partition, kill,
//! pause and clock is valid; a planted bug is caught; and after a run, a Ctrl-C, or a SIGKILL of
//! the harness followed by `faultline cleanup`, the hosts hold no node process, iptables chain
//! or run folder (checked over SSH, as a user with real hosts would).
//!
//! Needs root (namespaces) and openssh-server (CI installs it with scripts/setup.sh); skipped
//! with a printed reason otherwise. The tests share the machine's two cores: they run one at a
//! time.

mod run_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use run_support::*;

static SERIAL: Mutex<()> = Mutex::new(());

/// A test bed of `n` hosts, brought down on drop.
struct Bed {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Bed {
    fn up(n: usize) -> Option<Bed> {
        if !is_root() {
            eprintln!("skipped: needs root (network namespaces), as in CI");
            return None;
        }
        if !Path::new("/usr/sbin/sshd").exists() || Command::new("ssh").arg("-V").output().is_err() {
            eprintln!("skipped: openssh-server/openssh-client not installed (scripts/setup.sh installs them)");
            return None;
        }
        let tmp = tempfile::Builder::new().prefix("fl-ssh-bed-").tempdir().unwrap();
        let dir = tmp.path().join("bed");
        let out = Command::new(script()).args(["up", &n.to_string(), dir.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "testbed up failed: {}", show(&out));
        Some(Bed { dir, _tmp: tmp })
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn state_dir(&self) -> String {
        self.file("state")
    }

    /// The flags that point a run (or cleanup) at the bed.
    fn flags(&self) -> Vec<String> {
        [
            "--runtime",
            "ssh",
            "--nodes-file",
            &self.file("nodes.txt"),
            "--ssh-key",
            &self.file("id_ed25519"),
            "--ssh-known-hosts",
            &self.file("known_hosts"),
            "--remote-dir",
            &self.file("remote"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn hosts(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("nodes.txt")).unwrap();
        text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(String::from).collect()
    }

    /// What runs left on each host, seen over SSH: processes whose command line holds the remote
    /// dir's run folders, our iptables chains and jumps, entries of the remote dir but `bin`.
    fn leftovers(&self) -> Vec<String> {
        let rd = self.file("remote");
        let script = format!(
            "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' 2>/dev/null <$p/cmdline) || continue; \
             case \"$c\" in *'{rd}/fl'*) echo \"process ${{p#/proc/}}: $c\" ;; esac; done\n\
             iptables -w 5 -S | grep -E 'fl[0-9a-f]{{6}}in' | sed 's/^/iptables /'\n\
             ls -A '{rd}' | grep -vx bin | sed 's/^/file /'\ntrue\n"
        );
        let mut found = Vec::new();
        for h in self.hosts() {
            let mut c = Command::new("ssh");
            c.args(["-i", &self.file("id_ed25519"), "-o", "BatchMode=yes", "-o"])
                .arg(format!("UserKnownHostsFile={}", self.file("known_hosts")))
                .args([&h, "sh", "-s"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            let mut child = c.spawn().unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "cannot look at {h}");
            found.extend(String::from_utf8_lossy(&out.stdout).lines().map(|l| format!("{h}: {l}")));
        }
        found
    }

    fn run(&self, store: &Path, args: &[&str]) -> Output {
        let mut a: Vec<String> = self.flags();
        a.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let node = node_bin();
        Command::new(faultline())
            .arg("run")
            .args(&refs)
            .args(["--store", store.to_str().unwrap(), "--node-bin", node.to_str().unwrap(), "--quiet"])
            .env("FAULTLINE_STATE_DIR", self.state_dir())
            .output()
            .expect("faultline starts")
    }

    fn spawn(&self, store: &Path, seed: u64) -> Child {
        Command::new(faultline())
            .arg("run")
            .args(self.flags())
            .args(["--nemesis", "partition,kill,pause", "--time-limit", "60", "--nemesis-interval", "1", "--quiet"])
            .args(["--seed", &seed.to_string(), "--store", store.to_str().unwrap()])
            .args(["--node-bin", node_bin().to_str().unwrap()])
            .env("FAULTLINE_STATE_DIR", self.state_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn cleanup(&self, args: &[&str]) -> Output {
        Command::new(faultline())
            .arg("cleanup")
            .args(args)
            .env("FAULTLINE_STATE_DIR", self.state_dir())
            .output()
            .unwrap()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let out = Command::new(script()).args(["down", self.dir.to_str().unwrap()]).output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!("testbed down failed: {}", show(&o));
            }
        }
    }
}

/// Where a run's control sockets live (the harness runs with this test's TMPDIR).
fn ctl_dir(run_id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{run_id}.ssh"))
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ssh-testbed.sh")
}

/// Waits until the run in `store` has recorded a fault and some operations; returns its run id.
fn wait_for_faults(store: &Path, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(store.join("latest/history.jsonl")).unwrap_or_default();
        if text.contains("\"start-") && text.lines().count() > 50 {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the run ended early ({st})");
        }
        assert!(Instant::now() < deadline, "no fault within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(store.join("latest/test.json")).unwrap()).unwrap();
    test["runtime"]["run_id"].as_str().unwrap().to_string()
}

#[test]
fn five_hosts_under_partition_kill_pause_and_clock_are_valid_and_left_clean() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(bed) = Bed::up(5) else { return };
    let store = Store::new();
    let started = Instant::now();
    let out = bed.run(
        store.path(),
        &["--nemesis", "partition,kill,pause,clock", "--time-limit", "30", "--nemesis-interval", "2", "--seed", "3"],
    );
    eprintln!("run took {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = results(store.path());
    assert_eq!(r["runtime"]["kind"], "ssh");
    let faults = r["faults"].as_array().unwrap();
    let applied: Vec<&str> =
        faults.iter().filter(|f| f["applied"] == true).map(|f| f["fault"].as_str().unwrap()).collect();
    for family in ["partition", "kill", "pause", "clock"] {
        assert!(applied.contains(&family), "{family} not applied over SSH; applied: {applied:?}");
    }
    // Node logs came back from the hosts.
    let log = std::fs::read_to_string(store.path().join("latest/nodes/n1.log")).unwrap();
    assert!(!log.is_empty(), "n1's log fetched");
    assert_eq!(bed.leftovers(), Vec::<String>::new(), "the run left something on the hosts");
    let run_id = r["runtime"]["run_id"].as_str().unwrap();
    assert!(!ctl_dir(run_id).exists(), "control-socket folder removed");
    assert!(std::fs::read_dir(bed.file("state") + "/ssh").map(|d| d.count()).unwrap_or(0) == 0, "state file removed");
}

#[test]
fn stale_reads_under_leader_isolation_are_caught_over_ssh() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(bed) = Bed::up(5) else { return };
    let mut codes = Vec::new();
    for seed in 1..=3u64 {
        let store = Store::new();
        let out = bed.run(
            store.path(),
            &[
                "--bug",
                "stale-read",
                "--nemesis",
                "partition:isolate-leader",
                // As run_bug.rs: two 3 s windows, enough reads to reach the isolated leader.
                "--time-limit",
                "14",
                "--nemesis-interval",
                "3",
                "--recovery",
                "1",
                "--concurrency",
                "20",
                "--rate",
                "200",
                "--seed",
                &seed.to_string(),
            ],
        );
        codes.push(out.status.code());
        eprintln!("stale-read over SSH, seed {seed}: exit {:?}", out.status.code());
        if out.status.code() == Some(1) {
            assert_eq!(bed.leftovers(), Vec::<String>::new());
            return;
        }
        assert!(matches!(out.status.code(), Some(0) | Some(2)), "{}", show(&out));
    }
    panic!("stale-read not caught in 3 seeds over SSH: exit codes {codes:?}");
}

#[test]
fn ctrl_c_leaves_no_process_rule_or_file_on_the_hosts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(bed) = Bed::up(3) else { return };
    let store = Store::new();
    let mut child = bed.spawn(store.path(), 5);
    wait_for_faults(store.path(), &mut child);
    assert!(!bed.leftovers().is_empty(), "a live run has nodes on the hosts");
    faultline_core::runtime::state::send_signal(child.id(), "INT").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.code().is_some_and(|c| c != 255), "{}", show(&out));
    assert_eq!(bed.leftovers(), Vec::<String>::new(), "Ctrl-C left something on the hosts");
}

#[test]
fn after_a_sigkilled_harness_cleanup_removes_the_run_from_the_hosts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(bed) = Bed::up(3) else { return };
    // First through the recorded state file, then, with the state lost, by scanning the hosts.
    for (seed, lose_state) in [(7u64, false), (8, true)] {
        let store = Store::new();
        let mut child = bed.spawn(store.path(), seed);
        let run_id = wait_for_faults(store.path(), &mut child);
        child.kill().unwrap();
        child.wait().unwrap();
        let left = bed.leftovers();
        assert!(left.iter().any(|l| l.contains("process")), "a killed harness leaves its nodes: {left:?}");
        let out = if lose_state {
            std::fs::remove_dir_all(bed.file("state")).unwrap();
            let mut a = vec!["--run".to_string(), run_id.clone()];
            a.extend(bed.flags());
            bed.cleanup(&a.iter().map(String::as_str).collect::<Vec<_>>())
        } else {
            bed.cleanup(&["--run", &run_id])
        };
        assert!(out.status.success(), "{}", show(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("removed iptables chain {run_id}in")), "{said}");
        assert_eq!(bed.leftovers(), Vec::<String>::new(), "cleanup left something (lost state: {lose_state})");
        assert!(!ctl_dir(&run_id).exists(), "control-socket folder removed (lost state: {lose_state})");
    }
}

#[test]
fn a_host_that_does_not_answer_is_an_error_naming_it_and_the_others_are_left_clean() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(bed) = Bed::up(2) else { return };
    // A third line for an address on the bed's subnet where no host lives.
    let text = std::fs::read_to_string(bed.dir.join("nodes.txt")).unwrap();
    let first = bed.hosts()[0].clone();
    let lost = format!("{}.99", first.rsplit_once('.').unwrap().0);
    std::fs::write(bed.dir.join("nodes.txt"), format!("{text}{lost}\n")).unwrap();
    let store = Store::new();
    let started = Instant::now();
    let out = bed.run(store.path(), &["--nemesis", "none", "--time-limit", "5"]);
    let took = started.elapsed();
    std::fs::write(bed.dir.join("nodes.txt"), text).unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("host {lost}")), "the error names the lost host: {err}");
    assert!(took < Duration::from_secs(45), "bounded: {took:?}");
    assert_eq!(bed.leftovers(), Vec::<String>::new(), "setup failure left something on the other hosts");
}
