//! SSH connections of the ssh runtime: the nodes file, the connection options, and one
//! [`Conn`] per host that runs bounded shell scripts and copies files.
//!
//! Why the system `ssh` binary and not a crate: the [`super::Runtime`] trait is synchronous, and
//! the well-kept OpenSSH crate (`openssh`) is async-only (it would need a tokio runtime inside
//! each call, nested in the harness's own); `russh` would re-implement the user's OpenSSH
//! configuration (keys, agents, `~/.ssh/config`, known hosts, jump hosts). The system client
//! reads all of that as the user expects, and multiplexing gives the crate's main benefit: one
//! control master per host (`ssh -M -N -f`, its socket in the run's private control folder) that
//! every command reuses. Each command is a child run through [`super::cmd::run_bounded`] (a
//! timeout, its own process group); `ConnectTimeout` and `ServerAlive*` make a lost host fail
//! fast, and every error names the host.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cmd::{self, Call};
use super::RuntimeError;

/// How long one remote script may run (node start, rules, cleanup: well under a second).
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a copy may take (the node binary is a few MB).
pub const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// One line of a nodes file: `[user@]host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAddr {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

fn safe_word(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl std::str::FromStr for HostAddr {
    type Err = String;
    fn from_str(line: &str) -> Result<Self, String> {
        let (user, rest) = match line.split_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, line),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => {
                let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port {p:?}"))?;
                (h.to_string(), Some(port))
            }
            None => (rest.to_string(), None),
        };
        if user.as_deref().is_some_and(|u| !safe_word(u)) {
            return Err(format!("bad user name {:?}", user.unwrap_or_default()));
        }
        if !safe_word(&host) {
            return Err(format!("bad host name {host:?} (expected a name or IPv4 address)"));
        }
        Ok(HostAddr { user, host, port })
    }
}

/// The hosts of a nodes file's text, in order: one `[user@]host[:port]` a line; blank lines and
/// `#` comments (whole-line or trailing) are skipped; a host may appear once.
pub fn parse_nodes(text: &str) -> Result<Vec<HostAddr>, String> {
    let mut hosts: Vec<HostAddr> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let h: HostAddr = line.parse().map_err(|e| format!("line {}: {e}", i + 1))?;
        if hosts.iter().any(|o| o.host == h.host) {
            return Err(format!("line {}: host {} listed twice (one node per host)", i + 1, h.host));
        }
        hosts.push(h);
    }
    if hosts.is_empty() {
        return Err("no hosts".into());
    }
    if hosts.len() > 20 {
        return Err(format!("{} hosts; at most 20", hosts.len()));
    }
    Ok(hosts)
}

/// Reads and parses a nodes file.
pub fn read_nodes_file(path: &Path) -> Result<Vec<HostAddr>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_nodes(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// How host keys are checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostKeys {
    /// As the user's OpenSSH configuration says (the default).
    Config,
    /// Only keys in this known-hosts file, strictly.
    KnownHosts(PathBuf),
    /// Not checked at all: for a throwaway test bed only.
    Insecure,
}

/// Options of every connection of a run (recorded in its state file for cleanup).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshOptions {
    pub user: Option<String>,
    pub key: Option<PathBuf>,
    pub port: Option<u16>,
    /// Absolute folder on every host under which a run keeps its files (`RD/<run id>/`) and the
    /// uploaded node binary (`RD/bin/`).
    pub remote_dir: String,
    pub host_keys: HostKeys,
}

/// The default remote folder.
pub const DEFAULT_REMOTE_DIR: &str = "/var/tmp/faultline";

/// A remote folder is absolute, not `/`, without `..`, of plain characters (it is pasted into
/// shell scripts and removed with `rm -rf` below it).
pub fn check_remote_dir(d: &str) -> Result<(), String> {
    let plain = d.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if !d.starts_with('/') || d.trim_end_matches('/').is_empty() || d.split('/').any(|p| p == "..") || !plain {
        return Err(format!("--remote-dir {d:?}: expected an absolute path of letters, digits, / . _ -, not /"));
    }
    Ok(())
}

/// `s` as one single-quoted shell word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One host's connection: its node id, address, and the run's control socket folder.
#[derive(Clone, Debug)]
pub struct Conn {
    pub node: String,
    pub dest: HostAddr,
    opts: SshOptions,
    ctl_dir: PathBuf,
}

impl Conn {
    pub fn new(node: &str, dest: HostAddr, opts: &SshOptions, ctl_dir: &Path) -> Conn {
        Conn { node: node.into(), dest, opts: opts.clone(), ctl_dir: ctl_dir.to_path_buf() }
    }

    /// Options common to `ssh` and `scp` (`port_flag` is `-p` or `-P`).
    fn common(&self, port_flag: &str) -> Vec<String> {
        let mut a: Vec<String> =
            ["BatchMode=yes", "ConnectTimeout=10", "ServerAliveInterval=5", "ServerAliveCountMax=3"]
                .iter()
                .flat_map(|o| ["-o".to_string(), o.to_string()])
                .collect();
        a.extend(["-o".into(), format!("ControlPath={}/%C", self.ctl_dir.display())]);
        match &self.opts.host_keys {
            HostKeys::Config => {}
            HostKeys::KnownHosts(f) => a.extend([
                "-o".into(),
                format!("UserKnownHostsFile={}", f.display()),
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
            ]),
            HostKeys::Insecure => a.extend(
                ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]
                    .iter()
                    .flat_map(|o| ["-o".to_string(), o.to_string()]),
            ),
        }
        if let Some(k) = &self.opts.key {
            a.extend(["-i".into(), k.display().to_string(), "-o".into(), "IdentitiesOnly=yes".into()]);
        }
        if let Some(p) = self.dest.port.or(self.opts.port) {
            a.extend([port_flag.to_string(), p.to_string()]);
        }
        if let Some(u) = self.dest.user.as_ref().or(self.opts.user.as_ref()) {
            a.extend(["-o".into(), format!("User={u}")]);
        }
        a
    }

    fn fail(&self, message: impl fmt::Display) -> RuntimeError {
        RuntimeError::Node { id: self.node.clone(), message: format!("host {}: {message}", self.dest) }
    }

    /// Opens the control master (backgrounded by `ssh -f` once authenticated). Its output goes
    /// to `log`, not to a pipe, so no reader waits on the long-lived process. It exits after 60 s
    /// without a command (so a killed harness leaves none for long); a command after that
    /// connects directly (`ControlMaster=no` falls back to a plain connection).
    pub fn open_master(&self, log: &Path) -> Result<(), RuntimeError> {
        let mut args = self.common("-p");
        args.extend(["-o".into(), "ControlMaster=yes".into(), "-o".into(), "ControlPersist=60".into()]);
        args.extend(["-f".into(), "-N".into(), self.dest.host.clone()]);
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut c = Command::new("ssh");
        c.args(&args).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let mut child = c.spawn().map_err(|e| self.fail(format!("cannot start ssh: {e}")))?;
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if started.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.fail("no SSH connection within 15 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !status.success() {
            let why = std::fs::read_to_string(log).unwrap_or_default();
            let last = why.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
            return Err(self.fail(format!("cannot connect ({status}): {last}")));
        }
        Ok(())
    }

    /// Asks the control master to exit (nothing if there is none).
    pub fn close_master(&self) {
        let mut args = self.common("-p");
        args.extend(["-O".into(), "exit".into(), self.dest.host.clone()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = cmd::run_bounded(&Call { program: "ssh", args: &refs, timeout: SCRIPT_TIMEOUT, ..Call::default() });
    }

    /// Runs `script` with `sh -s` on the host (the script travels on stdin, so secrets in it do
    /// not show in the host's process list); returns stdout, or an error naming the host.
    pub fn script(&self, script: &str) -> Result<String, RuntimeError> {
        let mut args = self.common("-p");
        args.extend(["-o".into(), "ControlMaster=no".into(), self.dest.host.clone(), "sh -s".into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cmd::run_bounded(&Call {
            program: "ssh",
            args: &refs,
            stdin: Some(script),
            timeout: SCRIPT_TIMEOUT,
            ..Call::default()
        })
        .map_err(|e| self.fail(e))?;
        if !out.ok {
            return Err(self.fail(format!("{} ({})", cmd::clean_stderr(&out.stderr), out.status)));
        }
        Ok(out.stdout)
    }

    /// Copies with `scp` through the control master (`from` and `to` as scp takes them; a remote
    /// side is written [`Conn::remote`]).
    pub fn copy(&self, from: &str, to: &str, recursive: bool) -> Result<(), RuntimeError> {
        let mut args = self.common("-P");
        args.extend(["-o".into(), "ControlMaster=no".into(), "-q".into()]);
        if recursive {
            args.push("-r".into());
        }
        args.extend([from.to_string(), to.to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cmd::run_bounded(&Call { program: "scp", args: &refs, timeout: COPY_TIMEOUT, ..Call::default() })
            .map_err(|e| self.fail(e))?;
        if !out.ok {
            return Err(self.fail(format!("scp {from} {to}: {} ({})", cmd::clean_stderr(&out.stderr), out.status)));
        }
        Ok(())
    }

    /// `host:path` for scp.
    pub fn remote(&self, path: &str) -> String {
        format!("{}:{path}", self.dest.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_files_parse_in_order_with_comments_and_refuse_bad_lines() {
        let hosts = parse_nodes("# bed\nroot@10.0.0.1\n\n  db2.example:2222  # second\nadmin@db3\n").unwrap();
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0], HostAddr { user: Some("root".into()), host: "10.0.0.1".into(), port: None });
        assert_eq!(hosts[1], HostAddr { user: None, host: "db2.example".into(), port: Some(2222) });
        assert_eq!(hosts[2].to_string(), "admin@db3");
        assert!(parse_nodes("# nothing\n").unwrap_err().contains("no hosts"));
        assert!(parse_nodes("a\nb:0\n").unwrap_err().contains("line 2"));
        assert!(parse_nodes("a\nroot@a\n").unwrap_err().contains("twice"));
        assert!(parse_nodes("-oProxyCommand=x\n").is_err(), "an option smuggled as a host is refused");
        assert!(parse_nodes("a b\n").is_err());
        assert!(parse_nodes("x;rm@h\n").is_err());
    }

    #[test]
    fn remote_dirs_must_be_plain_absolute_paths_and_quoting_is_shell_safe() {
        assert!(check_remote_dir("/var/tmp/faultline").is_ok());
        for bad in ["/", "//", "relative", "/a/../b", "/a b", "/a;b", ""] {
            assert!(check_remote_dir(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn options_reach_the_command_line() {
        let opts = SshOptions {
            user: Some("ops".into()),
            key: Some("/k/id".into()),
            port: Some(2200),
            remote_dir: DEFAULT_REMOTE_DIR.into(),
            host_keys: HostKeys::KnownHosts("/k/known".into()),
        };
        let c = Conn::new("n1", "10.0.0.1:22".parse().unwrap(), &opts, Path::new("/ctl"));
        let a = c.common("-p").join(" ");
        assert!(a.contains("-p 22"), "the line's port wins over --ssh-port: {a}");
        assert!(a.contains("User=ops") && a.contains("-i /k/id") && a.contains("ControlPath=/ctl/%C"), "{a}");
        assert!(a.contains("UserKnownHostsFile=/k/known") && a.contains("StrictHostKeyChecking=yes"), "{a}");
        let insecure = Conn::new(
            "n1",
            "h".parse().unwrap(),
            &SshOptions { host_keys: HostKeys::Insecure, ..opts },
            Path::new("/c"),
        );
        assert!(insecure.common("-P").join(" ").contains("StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"));
        assert!(insecure.common("-P").join(" ").contains("-P 2200"));
    }
}
