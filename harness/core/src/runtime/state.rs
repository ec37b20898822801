//! The state file of live runs: what each run created, so `faultline cleanup` can remove exactly
//! that after a harness was killed, and nothing else.
//!
//! One JSON file per run in the state folder (default `/run/faultline`, override with the
//! environment variable `FAULTLINE_STATE_DIR`). The runtime writes the intent *before* creating
//! an object, so a crash between the two leaves a record of something that may not exist, never
//! an object without a record; cleanup tolerates missing objects.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cmd;

/// Prefix of every name a local run creates: `fl` + 6 hex digits of the run id.
pub const NAME_PREFIX: &str = "fl";

/// The state folder: `$FAULTLINE_STATE_DIR`, else `/run/faultline` for root, else
/// `$TMPDIR/faultline-<uid>` (an unprivileged harness cannot write /run).
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FAULTLINE_STATE_DIR") {
        return PathBuf::from(dir);
    }
    let uid = nix::unistd::geteuid();
    let run_writable = nix::unistd::access("/run/faultline", nix::unistd::AccessFlags::W_OK).is_ok()
        || nix::unistd::access("/run", nix::unistd::AccessFlags::W_OK).is_ok();
    if uid.is_root() && run_writable {
        PathBuf::from("/run/faultline")
    } else {
        std::env::temp_dir().join(format!("faultline-{uid}"))
    }
}

/// What one run created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: String,
    /// The harness process; cleanup leaves runs whose harness still lives alone (unless forced).
    pub harness_pid: u32,
    /// The harness's start time (clock ticks since boot, /proc/PID/stat field 22), so a reused
    /// pid is not mistaken for the harness; 0 = unknown.
    #[serde(default)]
    pub harness_start: u64,
    pub netns: Vec<String>,
    /// Host-side links (veths, the bridge).
    pub links: Vec<String>,
    /// Host iptables rules, as the argument list after `-I`/`-D` (e.g. `FORWARD -i b -o b -j ACCEPT`).
    pub host_rules: Vec<Vec<String>>,
    /// Host iptables chains (filter table) created by the run.
    pub host_chains: Vec<String>,
    /// Node processes: pid and a string their /proc/PID/cmdline must contain to be ours.
    pub pids: Vec<(u32, String)>,
    /// The 10.77.x subnet octet (netns) or 127.77.x (loopback) the run uses.
    pub subnet: u8,
}

impl RunState {
    pub fn path(dir: &Path, run_id: &str) -> PathBuf {
        dir.join(format!("{run_id}.json"))
    }

    /// Writes the state file (temp + rename), 0600 in a folder created 0700: it names the
    /// harness and what it controls, which is no other user's business.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        crate::secret::private_dir(dir)?;
        let path = Self::path(dir, &self.run_id);
        let tmp = dir.join(format!(".{}.tmp", self.run_id));
        crate::secret::write_private(&tmp, &serde_json::to_vec_pretty(self).expect("state serializes"))?;
        std::fs::rename(tmp, path)
    }

    pub fn remove(dir: &Path, run_id: &str) {
        let _ = std::fs::remove_file(Self::path(dir, run_id));
    }

    /// Every state file in `dir`; unreadable files are reported, not fatal.
    pub fn load_all(dir: &Path) -> (Vec<RunState>, Vec<String>) {
        let mut states = Vec::new();
        let mut problems = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return (states, problems);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<RunState>(&b).map_err(|e| e.to_string()))
            {
                Ok(s) => states.push(s),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
        (states, problems)
    }
}

/// State letter and start time (ticks since boot) of `pid`, from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is the 20th after the name (fields 3.. start at index 0).
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// This process's start time, for [`RunState::harness_start`].
pub fn own_start_time() -> u64 {
    proc_stat(std::process::id()).map(|(_, s)| s).unwrap_or(0)
}

/// True when `pid` is a live process (a zombie is dead) that started at `start` (0 = any).
pub fn harness_alive(pid: u32, start: u64) -> bool {
    match proc_stat(pid) {
        Some(('Z', _)) | Some(('X', _)) | None => false,
        Some((_, s)) => start == 0 || s == start,
    }
}

/// Sends the signal called `name` (`INT`, `TERM`, `KILL`, `STOP`, `CONT`, with or without
/// `SIG`) to `pid`. For tools and tests that must not depend on procps' `kill`.
pub fn send_signal(pid: u32, name: &str) -> Result<(), String> {
    use std::str::FromStr;
    let full = if name.starts_with("SIG") { name.to_string() } else { format!("SIG{name}") };
    let sig = nix::sys::signal::Signal::from_str(&full).map_err(|_| format!("unknown signal {name:?}"))?;
    let pid = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).map_err(|e| format!("kill -{name} {pid}: {e}"))
}

/// True when `pid` is alive (not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    harness_alive(pid, 0)
}

/// The command line of `pid` with NULs as spaces, if it is alive.
pub fn cmdline(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok().map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

/// True when `name` looks like something a local run created (`fl` + 6 hex + suffix).
pub fn is_ours(name: &str) -> Option<String> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let id = rest.get(..6)?;
    if id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) && rest.len() > 6 {
        Some(format!("{NAME_PREFIX}{id}"))
    } else {
        None
    }
}

/// What a cleanup did.
#[derive(Debug, Default)]
pub struct CleanupReport {
    pub removed: Vec<String>,
    pub skipped_live: Vec<String>,
    pub errors: Vec<String>,
}

/// Removes everything recorded by `state` (processes first, then namespaces, links, rules,
/// chains). Missing objects are fine. Returns what was removed and what failed.
pub fn remove_run(state: &RunState, report: &mut CleanupReport) {
    kill_nodes(state, report);
    kill_netns_processes(state, report);
    wait_netns_empty(state);
    delete_links(state, report);
    delete_netns(state, report);
    for rule in &state.host_rules {
        delete_host_rule(rule, report);
    }
    delete_host_chains(state, report);
}

/// SIGKILLs (after a SIGCONT, for a paused one) every recorded node process still running.
fn kill_nodes(state: &RunState, report: &mut CleanupReport) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for (pid, marker) in &state.pids {
        if let Some(cl) = cmdline(*pid) {
            // Only kill a process that is still the node we started (pids are reused).
            if cl.contains(marker.as_str()) {
                let raw = i32::try_from(*pid).unwrap_or(i32::MAX);
                let _ = kill(Pid::from_raw(raw), Signal::SIGCONT);
                match kill(Pid::from_raw(raw), Signal::SIGKILL) {
                    Ok(()) => report.removed.push(format!("process {pid}")),
                    Err(e) => report.errors.push(format!("kill {pid}: {e}")),
                }
            }
        }
    }
}

/// SIGKILLs every process inside the run's namespaces.
fn kill_netns_processes(state: &RunState, report: &mut CleanupReport) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for ns in &state.netns {
        // Any process still inside the namespace (e.g. started by a killed harness mid-restart)
        // belongs to the run: kill it so the namespace can really go away.
        if let Ok(pids) = cmd::run("ip", &["netns", "pids", ns]) {
            for p in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                report.removed.push(format!("process {p} in {ns}"));
            }
        }
    }
}

/// Waits (bounded) for killed processes to disappear before deleting their namespaces.
fn wait_netns_empty(state: &RunState) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline
        && state
            .netns
            .iter()
            .any(|ns| cmd::run("ip", &["netns", "pids", ns]).map(|p| !p.trim().is_empty()).unwrap_or(false))
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Deletes the run's links (bridge, veths) that exist.
fn delete_links(state: &RunState, report: &mut CleanupReport) {
    for link in &state.links {
        if link_exists(link) {
            match cmd::run("ip", &["link", "del", link]) {
                Ok(_) => report.removed.push(format!("link {link}")),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
}

/// Deletes the run's namespaces that exist.
fn delete_netns(state: &RunState, report: &mut CleanupReport) {
    for ns in &state.netns {
        if netns_exists(ns) {
            match cmd::run("ip", &["netns", "del", ns]) {
                Ok(_) => report.removed.push(format!("netns {ns}")),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
}

/// Deletes a host iptables rule of the run, every copy of it.
fn delete_host_rule(rule: &[String], report: &mut CleanupReport) {
    let mut check: Vec<&str> = vec!["-w", "5", "-C"];
    check.extend(rule.iter().map(String::as_str));
    // Delete every copy (a rule inserted twice by a retried setup).
    for _ in 0..8 {
        if cmd::run("iptables", &check).is_err() {
            break;
        }
        let mut del: Vec<&str> = vec!["-w", "5", "-D"];
        del.extend(rule.iter().map(String::as_str));
        match cmd::run("iptables", &del) {
            Ok(_) => report.removed.push(format!("iptables rule {}", rule.join(" "))),
            Err(e) => {
                report.errors.push(e.to_string());
                break;
            }
        }
    }
}

/// Flushes and deletes the run's host iptables chains that exist.
fn delete_host_chains(state: &RunState, report: &mut CleanupReport) {
    for chain in &state.host_chains {
        if cmd::run("iptables", &["-w", "5", "-L", chain, "-n"]).is_ok() {
            let flushed = cmd::run("iptables", &["-w", "5", "-F", chain]);
            match flushed.and_then(|_| cmd::run("iptables", &["-w", "5", "-X", chain])) {
                Ok(_) => report.removed.push(format!("iptables chain {chain}")),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
}

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Names of existing netns, links and host chains that carry our prefix (for the scan of
/// leftovers whose state file is gone).
pub fn scan_ours() -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut netns = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if is_ours(&n).is_some() {
                netns.push(n);
            }
        }
    }
    let mut links = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if is_ours(&n).is_some() {
                links.push(n);
            }
        }
    }
    let mut chains = Vec::new();
    if let Ok(out) = cmd::run("iptables", &["-w", "5", "-S"]) {
        for line in out.lines() {
            if let Some(name) = line.strip_prefix("-N ") {
                if is_ours(name).is_some() {
                    chains.push(name.to_string());
                }
            }
        }
    }
    netns.sort();
    links.sort();
    chains.sort();
    (netns, links, chains)
}

/// Host iptables rules (as `-S` argument lists without the leading `-A`) that mention one of
/// our names (a jump to our chain or an interface of ours).
pub fn scan_our_rules() -> Vec<Vec<String>> {
    let mut rules = Vec::new();
    if let Ok(out) = cmd::run("iptables", &["-w", "5", "-S"]) {
        for line in out.lines() {
            let Some(rest) = line.strip_prefix("-A ") else {
                continue;
            };
            let words: Vec<String> = rest.split_whitespace().map(String::from).collect();
            if words.iter().any(|w| is_ours(w).is_some()) {
                rules.push(words);
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_recognises_only_our_names() {
        assert_eq!(is_ours("fl0a1b2cbr").as_deref(), Some("fl0a1b2c"));
        assert_eq!(is_ours("fl0a1b2c-n1").as_deref(), Some("fl0a1b2c"));
        assert_eq!(is_ours("fl0a1b2c"), None, "a bare id is not a name we create");
        assert_eq!(is_ours("flannel.1"), None);
        assert_eq!(is_ours("docker0"), None);
        assert_eq!(is_ours("flABCDEFx"), None);
    }

    #[test]
    fn liveness_checks_start_time_and_zombies() {
        let me = std::process::id();
        let start = own_start_time();
        assert!(start > 0);
        assert!(harness_alive(me, start));
        assert!(harness_alive(me, 0));
        assert!(!harness_alive(me, start + 1), "a reused pid must not count as the harness");
        assert!(!harness_alive(u32::MAX - 1, 0));
        // A zombie: a child that exited and was not reaped yet.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!harness_alive(pid, 0), "zombie counted as alive");
        child.wait().unwrap();
    }

    #[test]
    fn state_round_trips_through_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let s = RunState {
            run_id: "fl00aa11".into(),
            harness_pid: 1,
            harness_start: 5,
            netns: vec!["fl00aa11-n1".into()],
            links: vec!["fl00aa11br".into()],
            host_rules: vec![vec!["FORWARD".into(), "-i".into(), "fl00aa11br".into()]],
            host_chains: vec![],
            pids: vec![(12, "fl00aa11".into())],
            subnet: 3,
        };
        s.save(dir.path()).unwrap();
        std::fs::write(dir.path().join("junk.json"), "{").unwrap();
        let (all, problems) = RunState::load_all(dir.path());
        assert_eq!(all, vec![s]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("junk.json"));
        RunState::remove(dir.path(), "fl00aa11");
        assert!(RunState::load_all(dir.path()).0.is_empty());
    }

    #[test]
    fn state_files_are_not_readable_by_other_users() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("faultline");
        let s = RunState { run_id: "fl00bb22".into(), harness_pid: 1, ..RunState::default() };
        s.save(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&RunState::path(&dir, "fl00bb22")), 0o600);
    }
}
