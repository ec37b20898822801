//! The flags of the SSH runtime (`--runtime ssh`), shared by `faultline run` and
//! `faultline cleanup`, and their validation into typed options before anything is created.

use std::path::PathBuf;

use anyhow::bail;
use faultline_core::runtime::ssh_conn::{self, HostAddr, HostKeys, SshOptions};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct SshArgs {
    /// `--runtime ssh`: the hosts, one `[user@]host[:port]` a line (`#` comments); node ids
    /// n1..nN in file order (docs/multi-host.md).
    #[arg(long)]
    pub nodes_file: Option<PathBuf>,
    /// `--runtime ssh`: login user for hosts whose line names none (default: as ssh config says).
    #[arg(long)]
    pub ssh_user: Option<String>,
    /// `--runtime ssh`: private key file (default: as ssh config / agent says).
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// `--runtime ssh`: SSH port for hosts whose line names none.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub ssh_port: Option<u16>,
    /// `--runtime ssh`: absolute folder on every host for the runs' files and the node binary.
    #[arg(long, default_value = ssh_conn::DEFAULT_REMOTE_DIR)]
    pub remote_dir: String,
    /// `--runtime ssh`: check host keys against this known-hosts file only (strictly). Default:
    /// a `known_hosts` file beside the nodes file when there is one (as the test bed writes),
    /// else as the user's OpenSSH config says.
    #[arg(long, conflicts_with = "ssh_insecure_host_keys")]
    pub ssh_known_hosts: Option<PathBuf>,
    /// `--runtime ssh`: do not check host keys at all. For a throwaway test bed only; never
    /// on hosts reached over a network you do not control.
    #[arg(long)]
    pub ssh_insecure_host_keys: bool,
}

impl SshArgs {
    /// True when any SSH flag was given (they need `--runtime ssh`).
    pub fn any(&self) -> bool {
        self.nodes_file.is_some()
            || self.ssh_user.is_some()
            || self.ssh_key.is_some()
            || self.ssh_port.is_some()
            || self.remote_dir != ssh_conn::DEFAULT_REMOTE_DIR
            || self.ssh_known_hosts.is_some()
            || self.ssh_insecure_host_keys
    }

    /// The hosts and connection options, every flag checked.
    pub fn resolve(&self) -> anyhow::Result<(Vec<HostAddr>, SshOptions)> {
        let Some(file) = &self.nodes_file else {
            bail!("--runtime ssh needs --nodes-file FILE (one [user@]host[:port] a line)");
        };
        let hosts = ssh_conn::read_nodes_file(file).map_err(|e| anyhow::anyhow!("--nodes-file {e}"))?;
        if let Some(u) = &self.ssh_user {
            if u.is_empty() || u.starts_with('-') || !u.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                bail!("--ssh-user {u:?}: not a user name");
            }
        }
        for (flag, f) in [("--ssh-key", &self.ssh_key), ("--ssh-known-hosts", &self.ssh_known_hosts)] {
            if let Some(f) = f {
                if !f.is_file() {
                    bail!("{flag} {}: not a readable file", f.display());
                }
            }
        }
        ssh_conn::check_remote_dir(&self.remote_dir).map_err(anyhow::Error::msg)?;
        let abs = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        // A known_hosts beside the nodes file pins the hosts' keys as --ssh-known-hosts would:
        // still strict checking, only against keys the user put there.
        let beside = file.parent().map(|d| d.join("known_hosts")).filter(|k| k.is_file());
        let host_keys = match (&self.ssh_known_hosts, self.ssh_insecure_host_keys, beside) {
            (Some(f), _, _) => HostKeys::KnownHosts(abs(f)),
            (None, true, _) => HostKeys::Insecure,
            (None, false, Some(k)) => HostKeys::KnownHosts(abs(&k)),
            (None, false, None) => HostKeys::Config,
        };
        let opts = SshOptions {
            user: self.ssh_user.clone(),
            key: self.ssh_key.as_ref().map(abs),
            port: self.ssh_port,
            remote_dir: self.remote_dir.trim_end_matches('/').to_string(),
            host_keys,
        };
        Ok((hosts, opts))
    }

    /// The flags again, for the command that reproduces a run.
    pub fn repro_words(&self) -> String {
        let mut s = String::new();
        let q = |p: &PathBuf| crate::run::shell_quote(&p.display().to_string());
        if let Some(f) = &self.nodes_file {
            s += &format!(" --nodes-file {}", q(f));
        }
        if let Some(u) = &self.ssh_user {
            s += &format!(" --ssh-user {u}");
        }
        if let Some(k) = &self.ssh_key {
            s += &format!(" --ssh-key {}", q(k));
        }
        if let Some(p) = self.ssh_port {
            s += &format!(" --ssh-port {p}");
        }
        if self.remote_dir != ssh_conn::DEFAULT_REMOTE_DIR {
            s += &format!(" --remote-dir {}", self.remote_dir);
        }
        if let Some(k) = &self.ssh_known_hosts {
            s += &format!(" --ssh-known-hosts {}", q(k));
        }
        if self.ssh_insecure_host_keys {
            s += " --ssh-insecure-host-keys";
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked_before_anything_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = dir.path().join("nodes.txt");
        std::fs::write(&nodes, "# bed\nroot@10.0.0.1\n10.0.0.2:2222\n").unwrap();
        let ok = SshArgs { nodes_file: Some(nodes.clone()), remote_dir: "/var/tmp/x/".into(), ..SshArgs::default() };
        let (hosts, opts) = ok.resolve().unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(opts.remote_dir, "/var/tmp/x");
        assert_eq!(opts.host_keys, HostKeys::Config, "host keys are checked by default");
        let err = |a: SshArgs| a.resolve().unwrap_err().to_string();
        assert!(err(SshArgs::default()).contains("--nodes-file"));
        assert!(err(SshArgs { remote_dir: "/".into(), ..ok.clone() }).contains("--remote-dir"));
        assert!(err(SshArgs { ssh_key: Some(dir.path().join("none")), ..ok.clone() }).contains("--ssh-key"));
        assert!(err(SshArgs { ssh_user: Some("-oX".into()), ..ok.clone() }).contains("--ssh-user"));
        std::fs::write(&nodes, "a\na\n").unwrap();
        assert!(err(ok.clone()).contains("twice"));
        assert!(!SshArgs { remote_dir: ssh_conn::DEFAULT_REMOTE_DIR.into(), ..SshArgs::default() }.any());
        // A known_hosts beside the nodes file is checked strictly, unless a flag says otherwise.
        std::fs::write(&nodes, "10.0.0.1\n").unwrap();
        let known = dir.path().join("known_hosts");
        std::fs::write(&known, "10.0.0.1 ssh-ed25519 AAAA\n").unwrap();
        let (_, opts) = ok.resolve().unwrap();
        assert_eq!(opts.host_keys, HostKeys::KnownHosts(std::fs::canonicalize(&known).unwrap()));
        let insecure = SshArgs { ssh_insecure_host_keys: true, ..ok.clone() };
        assert_eq!(insecure.resolve().unwrap().1.host_keys, HostKeys::Insecure);
    }
}
