//! What an SSH run created and how to remove it: the run's state file on the control node, and
//! the one shell script that removes a run from a host.
//!
//! On each host a run owns exactly three kinds of things, all named by its run id `R`: node
//! processes whose command line holds `RD/R/` (their data dir), the iptables chain `Rin` with its
//! jump from INPUT, and the folder `RD/R/`. The removal script finds them by those names, so it
//! removes the same things after a clean run, an interrupted one, or a harness killed with
//! SIGKILL (then from `faultline cleanup`, via the state file in `STATE_DIR/ssh/R.json`, or by
//! scanning the hosts of a nodes file). The uploaded node binary `RD/bin/faultline-node` is a
//! cache shared by runs and is left in place.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ssh_conn::{sh_quote, Conn, HostAddr, SshOptions};
use super::state::{harness_alive, CleanupReport};

/// What one SSH run created, written before the first remote action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SshState {
    pub run_id: String,
    pub harness_pid: u32,
    pub harness_start: u64,
    /// Node id and host, in node order.
    pub hosts: Vec<(String, HostAddr)>,
    pub ssh: SshOptions,
}

/// The folder of SSH state files inside the state folder.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ssh")
}

/// The run's control-socket folder, private to the user: `$TMPDIR/<run id>.ssh` rather than in
/// the state folder, because a socket path (plus the 40-hex `%C` and ssh's temporary suffix)
/// must fit in 108 bytes.
pub fn ctl_dir(_state_dir: &Path, run_id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{run_id}.ssh"))
}

/// The run's iptables chain on every host.
pub fn chain(run_id: &str) -> String {
    format!("{run_id}in")
}

/// Makes the control-socket folder `dir` (in a shared temp folder): created 0700, or, when it
/// exists, accepted only as a real folder of this user that no one else may enter.
pub fn own_ctl_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let m = std::fs::symlink_metadata(dir)?;
            if !m.is_dir() || m.uid() != nix::unistd::geteuid().as_raw() || m.mode() & 0o077 != 0 {
                return Err(std::io::Error::other(format!(
                    "{} exists and is not a private folder of ours",
                    dir.display()
                )));
            }
            Ok(())
        }
        other => other,
    }
}

impl SshState {
    pub fn path(state_dir: &Path, run_id: &str) -> PathBuf {
        dir(state_dir).join(format!("{run_id}.json"))
    }

    /// Writes the state file (temp + rename, private), creating the folders.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        crate::secret::private_dir(state_dir)?;
        crate::secret::private_dir(&dir(state_dir))?;
        let tmp = dir(state_dir).join(format!(".{}.tmp", self.run_id));
        crate::secret::write_private(&tmp, &serde_json::to_vec_pretty(self).expect("state serializes"))?;
        std::fs::rename(tmp, Self::path(state_dir, &self.run_id))
    }

    /// Removes the state file and the control-socket folder.
    pub fn remove(state_dir: &Path, run_id: &str) {
        let _ = std::fs::remove_file(Self::path(state_dir, run_id));
        let _ = std::fs::remove_dir_all(ctl_dir(state_dir, run_id));
    }

    /// Every SSH state file; unreadable ones are reported.
    pub fn load_all(state_dir: &Path) -> (Vec<SshState>, Vec<String>) {
        let (mut states, mut problems) = (Vec::new(), Vec::new());
        let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
            return (states, problems);
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<SshState>(&b).map_err(|e| e.to_string()))
            {
                Ok(s) => states.push(s),
                Err(e) => problems.push(format!("{}: {e}", p.display())),
            }
        }
        (states, problems)
    }

    /// True when the harness that wrote this state still runs (on this control node).
    pub fn harness_alive(&self) -> bool {
        self.harness_pid != std::process::id() && harness_alive(self.harness_pid, self.harness_start)
    }
}

/// Which runs the removal script removes on a host.
pub enum Which<'a> {
    /// Exactly these run ids.
    Runs(&'a [String]),
    /// Every run found on the host (a folder `RD/flXXXXXX` or a chain `flXXXXXXin`) but these.
    AllBut(&'a [String]),
}

/// Shell prelude of every remote script: the remote dir and how to run iptables (as root, or
/// through passwordless sudo).
pub fn prelude(remote_dir: &str) -> String {
    format!("RD={}\nS=\n[ \"$(id -u)\" = 0 ] || S='sudo -n'\n", sh_quote(remote_dir))
}

/// The removal script: kills every process whose command line holds `RD/R/` (after a SIGCONT),
/// removes the jump to chain `Rin` and the chain, then the folder `RD/R`. It prints one line
/// per removed thing and exits non-zero when a removal failed; `dry_run` only lists runs.
pub fn removal_script(remote_dir: &str, which: &Which, dry_run: bool) -> String {
    let mut s = prelude(remote_dir);
    s += r#"fail=0
clean() {
  r=$1; D="$RD/$r"
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    c=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    case "$c" in *"$D/"*)
      kill -CONT "$pid" 2>/dev/null
      if kill -9 "$pid" 2>/dev/null; then echo "removed process $pid of $r"; fi ;;
    esac
  done
  if $S iptables -w 5 -n -L "${r}in" >/dev/null 2>&1; then
    while $S iptables -w 5 -D INPUT -j "${r}in" 2>/dev/null; do :; done
    if $S iptables -w 5 -F "${r}in" && $S iptables -w 5 -X "${r}in"; then echo "removed iptables chain ${r}in"
    else echo "cannot remove iptables chain ${r}in" >&2; fail=1; fi
  fi
  if [ -e "$D" ]; then
    if rm -rf "$D"; then echo "removed $D"; else echo "cannot remove $D" >&2; fail=1; fi
  fi
}
"#;
    let act = if dry_run { "echo \"would remove run $r\"" } else { "clean \"$r\"" };
    match which {
        Which::Runs(ids) => {
            s += &format!("for r in {}; do {act}; done\n", ids.join(" "));
        }
        Which::AllBut(keep) => {
            s += r#"runs=$( { ls -1 "$RD" 2>/dev/null; $S iptables -w 5 -S 2>/dev/null | sed -n 's/^-N \(fl[0-9a-f]\{6\}\)in$/\1/p'; } | grep -E '^fl[0-9a-f]{6}$' | sort -u)
"#;
            s += &format!(
                "for r in $runs; do case ' {} ' in *\" $r \"*) echo \"left alone live run $r\" ;; *) {act} ;; esac; done\n",
                keep.join(" ")
            );
        }
    }
    s + "exit $fail\n"
}

/// Runs the removal script on every host of `hosts` (in parallel), closing each control master
/// afterwards; what each host printed goes to `report` prefixed with its name.
pub fn remove_on_hosts(conns: &[Conn], remote_dir: &str, which: &Which, dry_run: bool, report: &mut CleanupReport) {
    let script = removal_script(remote_dir, which, dry_run);
    let results: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = conns.iter().map(|c| sc.spawn(|| c.script(&script))).collect();
        handles.into_iter().map(|h| h.join().expect("removal thread")).collect()
    });
    for (c, r) in conns.iter().zip(results) {
        c.close_master();
        match r {
            Ok(out) => {
                for line in out.lines().filter(|l| !l.trim().is_empty()) {
                    let line = line.trim();
                    if line.starts_with("left alone") {
                        report.skipped_live.push(format!(
                            "{} on {}",
                            line.trim_start_matches("left alone live run "),
                            c.dest
                        ));
                    } else {
                        report.removed.push(format!("{}: {line}", c.dest));
                    }
                }
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
}

/// `faultline cleanup`: removes, on their hosts, every recorded SSH run whose harness is gone
/// (or only `runs`, when given; live ones only with `force`). Returns what would go, on a dry run.
pub fn cleanup_recorded(state_dir: &Path, runs: &[String], force: bool, dry_run: bool, report: &mut CleanupReport) {
    let (states, problems) = SshState::load_all(state_dir);
    report.errors.extend(problems.into_iter().map(|p| format!("unreadable SSH state file {p}")));
    for s in states.into_iter().filter(|s| runs.is_empty() || runs.contains(&s.run_id)) {
        if s.harness_alive() && !force {
            report.skipped_live.push(format!("{} (harness pid {} is alive; use --force)", s.run_id, s.harness_pid));
            continue;
        }
        let ctl = ctl_dir(state_dir, &s.run_id);
        if let Err(e) = own_ctl_dir(&ctl) {
            report.errors.push(format!("{}: {e}", ctl.display()));
            continue;
        }
        let conns: Vec<Conn> = s.hosts.iter().map(|(id, h)| Conn::new(id, h.clone(), &s.ssh, &ctl)).collect();
        let before = report.errors.len();
        let ids = [s.run_id.clone()];
        remove_on_hosts(&conns, &s.ssh.remote_dir, &Which::Runs(&ids), dry_run, report);
        if !dry_run && report.errors.len() == before {
            SshState::remove(state_dir, &s.run_id);
        }
    }
}

/// `faultline cleanup --runtime ssh --nodes-file F`: removes every run found on these hosts
/// except those of live harnesses recorded here (or only `runs`, when given).
pub fn cleanup_hosts(
    state_dir: &Path,
    hosts: &[HostAddr],
    opts: &SshOptions,
    runs: &[String],
    dry_run: bool,
    report: &mut CleanupReport,
) -> std::io::Result<()> {
    let live: Vec<String> =
        SshState::load_all(state_dir).0.into_iter().filter(SshState::harness_alive).map(|s| s.run_id).collect();
    // A private control folder for this cleanup's own connections.
    let ctl = std::env::temp_dir().join(format!("fl-cleanup-{}.ssh", std::process::id()));
    own_ctl_dir(&ctl)?;
    let conns: Vec<Conn> =
        hosts.iter().enumerate().map(|(i, h)| Conn::new(&format!("n{}", i + 1), h.clone(), opts, &ctl)).collect();
    let wanted: Vec<String> = runs.iter().filter(|r| !live.contains(r)).cloned().collect();
    let which = if runs.is_empty() { Which::AllBut(&live) } else { Which::Runs(&wanted) };
    let before = report.removed.len();
    remove_on_hosts(&conns, &opts.remote_dir, &which, dry_run, report);
    let _ = std::fs::remove_dir_all(&ctl);
    // The control-socket folders of the runs removed here (their masters have exited or will
    // at their idle timeout).
    for id in report.removed[before..].iter().flat_map(|l| run_ids_in(l)) {
        let _ = std::fs::remove_dir_all(ctl_dir(state_dir, &id));
    }
    // Recorded runs removed here need no state file any more.
    if !dry_run && report.errors.is_empty() {
        for s in SshState::load_all(state_dir).0.iter().filter(|s| !s.harness_alive()) {
            if s.hosts.iter().all(|(_, h)| hosts.iter().any(|o| o.host == h.host)) {
                SshState::remove(state_dir, &s.run_id);
            }
        }
    }
    Ok(())
}

/// The run ids (`fl` + 6 lowercase hex) named in a line of the removal script's output: as a
/// word, a path component, or a chain name (`<id>in`).
fn run_ids_in(line: &str) -> Vec<String> {
    let is_id =
        |w: &str| w.len() == 8 && w.starts_with("fl") && w[2..].chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
    let mut ids: Vec<String> = line
        .split([' ', '/', ':'])
        .map(|w| w.strip_suffix("in").filter(|w| is_id(w)).unwrap_or(w))
        .filter(|w| is_id(w))
        .map(String::from)
        .collect();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_read_back_from_the_removal_output() {
        assert_eq!(run_ids_in("root@h: removed iptables chain fl00aa11in"), vec!["fl00aa11"]);
        assert_eq!(run_ids_in("root@h: removed /var/tmp/fl/fl00aa11"), vec!["fl00aa11"]);
        assert_eq!(run_ids_in("root@h: removed process 12 of fl00aa11"), vec!["fl00aa11"]);
        assert!(run_ids_in("root@h: removed /var/tmp/flannel").is_empty());
    }

    #[test]
    fn the_removal_script_names_only_the_runs_asked_for() {
        let ids = vec!["fl00aa11".to_string()];
        let s = removal_script("/var/tmp/fl", &Which::Runs(&ids), false);
        assert!(s.starts_with("RD='/var/tmp/fl'\n"), "{s}");
        assert!(s.contains("for r in fl00aa11; do clean \"$r\"; done"), "{s}");
        let keep = vec!["fl00bb22".to_string()];
        let all = removal_script("/x", &Which::AllBut(&keep), true);
        assert!(all.contains("case ' fl00bb22 ' in") && all.contains("would remove run"), "{all}");
    }

    /// A long-lived process whose command line holds `marker`.
    fn fake_node(marker: &str) -> std::io::Result<std::process::Child> {
        std::process::Command::new("sh").args(["-c", "while :; do sleep 1; done", marker]).spawn()
    }

    #[test]
    fn the_removal_script_removes_a_run_folder_and_its_processes_but_nothing_else() {
        // Run locally with plain sh: a fake node whose command line holds the run folder dies,
        // another process and another run's folder stay.
        let tmp = tempfile::tempdir().unwrap();
        let rd = tmp.path().to_str().unwrap().to_string();
        for d in ["fl00aa11/n1/data", "fl00bb22/n1/data", "bin"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        let ours = fake_node(&format!("{rd}/fl00aa11/n1/data"));
        let mut ours = ours.unwrap();
        let mut other = fake_node(&format!("{rd}/fl00bb22/n1/data")).unwrap();
        let ids = vec!["fl00aa11".to_string()];
        let out =
            crate::runtime::cmd::run_with_stdin("sh", &["-s"], Some(&removal_script(&rd, &Which::Runs(&ids), false)))
                .unwrap();
        assert!(out.contains(&format!("removed process {}", ours.id())), "{out}");
        assert!(ours.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(!tmp.path().join("fl00aa11").exists() && tmp.path().join("fl00bb22").exists());
        assert!(tmp.path().join("bin").exists());
        assert!(other.try_wait().unwrap().is_none(), "another run's process left alone");
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
