//! The SSH runtime: one node per remote host, reached over SSH, as Jepsen deploys (docs/multi-host.md).
//!
//! Every action is a bounded shell script run on the host through its control master
//! ([`super::ssh_conn`]); no agent of ours runs there. On each host a run `R` keeps its files in
//! `RD/R/<node>/` (data, `node.log`, `pid`); the node binary is uploaded to `RD/bin/` only when
//! its sha256 differs and started detached (`setsid nohup`) with its pid in the pid file; kill,
//! pause and resume signal that pid after checking its command line still holds the run's
//! folder. Network faults are rules in the per-run chain `Rin`, jumped to from INPUT, on the
//! receiving host (the text comes from [`super::netrules::input_rules`]), rewritten at once with
//! `iptables-restore --noflush`; latency needs a packet-holding program on the host and is
//! refused ("not applied"). The clock is the reference nodes' admin API, as on every runtime.
//! At teardown the logs (and data) are copied into the run folder, then
//! [`super::ssh_state::removal_script`] removes what the run made on every host. The state file
//! is written before the first remote action, so `faultline cleanup` can finish a killed run.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::Rng;

use super::ssh_conn::{sh_quote, Conn, HostAddr, SshOptions};
use super::ssh_state::{self, SshState, Which};
use super::state::{self, CleanupReport};
use super::{cmd, netrules, Launch, NetFaults, NetMechanism, NodeSpec, Runtime, RuntimeError};

/// Options of the SSH runtime.
#[derive(Clone, Debug)]
pub struct SshRunOptions {
    pub hosts: Vec<HostAddr>,
    pub ssh: SshOptions,
    /// Port every node listens on.
    pub port: u16,
    pub state_dir: PathBuf,
}

/// Where a node's log and data go locally when the run ends.
#[derive(Clone, Debug)]
struct LocalCopy {
    log: PathBuf,
    data: Option<PathBuf>,
}

/// The SSH runtime. Create with [`SshRuntime::setup`]; always call [`Runtime::teardown`].
pub struct SshRuntime {
    run_id: String,
    nodes: Vec<NodeSpec>,
    conns: Vec<Conn>,
    ssh: SshOptions,
    state_dir: PathBuf,
    /// Hosts whose chain could not be made (no root, no sudo, no iptables), with the reason.
    no_net: Vec<(String, String)>,
    /// The local node binary's path and sha256.
    binary: Mutex<Option<(PathBuf, String)>>,
    /// Hosts that hold the current binary.
    uploaded: Mutex<HashSet<String>>,
    copies: Mutex<HashMap<String, LocalCopy>>,
    torn_down: Mutex<bool>,
}

/// The IPv4 address of `host` as the control node resolves it.
fn resolve(host: &HostAddr) -> Result<Ipv4Addr, RuntimeError> {
    if let Ok(ip) = host.host.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    let addrs = (host.host.as_str(), 22).to_socket_addrs().map_err(|e| RuntimeError::Node {
        id: host.to_string(),
        message: format!("cannot resolve {}: {e}", host.host),
    })?;
    addrs.filter_map(|a| if let std::net::SocketAddr::V4(v4) = a { Some(*v4.ip()) } else { None }).next().ok_or_else(
        || RuntimeError::Node { id: host.to_string(), message: format!("{} has no IPv4 address", host.host) },
    )
}

/// Shell prelude of a node's scripts: `D`, the node's folder `dir`, and `ours PID`: true when
/// PID is a live process (not a zombie) whose command line holds `$D/`, so a pid reused by
/// another program is never signalled.
fn node_prelude(dir: &str) -> String {
    format!(
        "D={}\nours() {{\n  st=$(sed 's/.*) //' \"/proc/$1/stat\" 2>/dev/null | cut -c1)\n  \
         c=$(tr '\\0' ' ' 2>/dev/null <\"/proc/$1/cmdline\")\n  \
         case \"$st:$c\" in Z:*|X:*|:*) return 1 ;; *\"$D/\"*) return 0 ;; *) return 1 ;; esac\n}}\n",
        sh_quote(dir)
    )
}

impl SshRuntime {
    /// Connects to every host and prepares it (run folder, chain). On error, whatever was
    /// created is removed again.
    pub fn setup(opts: &SshRunOptions) -> Result<Self, RuntimeError> {
        let ips = opts.hosts.iter().map(resolve).collect::<Result<Vec<_>, _>>()?;
        let run_id = format!("{}{:06x}", state::NAME_PREFIX, rand::rng().random::<u32>() & 0x00ff_ffff);
        let nodes: Vec<NodeSpec> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| NodeSpec { id: format!("n{}", i + 1), ip: *ip, port: opts.port })
            .collect();
        let st = SshState {
            run_id: run_id.clone(),
            harness_pid: std::process::id(),
            harness_start: state::own_start_time(),
            hosts: nodes.iter().map(|n| n.id.clone()).zip(opts.hosts.iter().cloned()).collect(),
            ssh: opts.ssh.clone(),
        };
        st.save(&opts.state_dir)?;
        let ctl = ssh_state::ctl_dir(&opts.state_dir, &run_id);
        ssh_state::own_ctl_dir(&ctl)?;
        let conns: Vec<Conn> = st.hosts.iter().map(|(id, h)| Conn::new(id, h.clone(), &opts.ssh, &ctl)).collect();
        let mut rt = SshRuntime {
            run_id,
            nodes,
            conns,
            ssh: opts.ssh.clone(),
            state_dir: opts.state_dir.clone(),
            no_net: Vec::new(),
            binary: Mutex::new(None),
            uploaded: Mutex::new(HashSet::new()),
            copies: Mutex::new(HashMap::new()),
            torn_down: Mutex::new(false),
        };
        match rt.prepare_hosts(&ctl) {
            Ok(no_net) => {
                rt.no_net = no_net;
                Ok(rt)
            }
            Err(e) => {
                let _ = rt.teardown();
                Err(e)
            }
        }
    }

    /// Opens each host's control master and makes the run's folder and chain; returns the hosts
    /// where the chain could not be made.
    fn prepare_hosts(&self, ctl: &Path) -> Result<Vec<(String, String)>, RuntimeError> {
        let script = format!(
            "{}set -e\nR={}\nmkdir -p \"$RD/$R\"\ncommand -v setsid >/dev/null || {{ echo 'setsid (util-linux) missing' >&2; exit 1; }}\n\
             if out=$($S iptables -w 5 -N \"${{R}}in\" 2>&1) && out=$($S iptables -w 5 -I INPUT -j \"${{R}}in\" 2>&1); \
             then echo net-ok; else echo \"net-no $out\"; fi\n",
            ssh_state::prelude(&self.ssh.remote_dir),
            self.run_id
        );
        let results = self.each_host(|c| {
            c.open_master(&ctl.join(format!("{}.log", c.node)))?;
            c.script(&script)
        });
        let mut no_net = Vec::new();
        for (c, r) in self.conns.iter().zip(results) {
            let out = r?;
            if let Some(why) = out.lines().find_map(|l| l.strip_prefix("net-no")) {
                no_net.push((c.dest.to_string(), why.trim().to_string()));
            }
        }
        Ok(no_net)
    }

    /// Runs `f` on every host at once; results in node order.
    fn each_host<T: Send>(&self, f: impl Fn(&Conn) -> Result<T, RuntimeError> + Sync) -> Vec<Result<T, RuntimeError>> {
        std::thread::scope(|sc| {
            let handles: Vec<_> = self.conns.iter().map(|c| sc.spawn(|| f(c))).collect();
            handles.into_iter().map(|h| h.join().expect("host thread")).collect()
        })
    }

    fn conn(&self, id: &str) -> Result<&Conn, RuntimeError> {
        self.conns.iter().find(|c| c.node == id).ok_or_else(|| RuntimeError::UnknownNode(id.into()))
    }

    /// The node's folder on its host.
    fn node_dir(&self, id: &str) -> String {
        format!("{}/{}/{id}", self.ssh.remote_dir, self.run_id)
    }

    fn remote_bin(&self) -> String {
        format!("{}/bin/faultline-node", self.ssh.remote_dir)
    }

    /// The sha256 of the local `program` (computed once).
    fn local_sha(&self, program: &Path) -> Result<String, RuntimeError> {
        let mut b = self.binary.lock().expect("binary lock");
        if let Some((p, sha)) = b.as_ref() {
            if p == program {
                return Ok(sha.clone());
            }
        }
        let out = cmd::run("sha256sum", &[&program.display().to_string()])?;
        let sha = out.split_whitespace().next().unwrap_or_default().to_string();
        *b = Some((program.to_path_buf(), sha.clone()));
        self.uploaded.lock().expect("uploaded lock").clear();
        Ok(sha)
    }

    /// Uploads `program` to the host of `c` unless the host's copy has the same sha256.
    fn ensure_binary(&self, c: &Conn, program: &Path) -> Result<(), RuntimeError> {
        let sha = self.local_sha(program)?;
        if self.uploaded.lock().expect("uploaded lock").contains(&c.node) {
            return Ok(());
        }
        let bin = sh_quote(&self.remote_bin());
        let remote_sha = c.script(&format!("sha256sum {bin} 2>/dev/null | cut -d' ' -f1; true\n"))?;
        if remote_sha.trim() != sha {
            let tmp = format!("{}/bin/.faultline-node.{}", self.ssh.remote_dir, self.run_id);
            c.script(&format!("mkdir -p {}\n", sh_quote(&format!("{}/bin", self.ssh.remote_dir))))?;
            c.copy(&program.display().to_string(), &c.remote(&tmp), false)?;
            c.script(&format!("chmod 755 {0} && mv -f {0} {bin}\n", sh_quote(&tmp)))?;
            tracing::info!("uploaded {} to {} ({sha})", program.display(), c.dest);
        }
        self.uploaded.lock().expect("uploaded lock").insert(c.node.clone());
        Ok(())
    }

    /// The launch's arguments for the host: `--data-dir` moves into the node's remote folder.
    fn remote_args(&self, id: &str, launch: &Launch) -> Result<(Vec<String>, Option<PathBuf>), RuntimeError> {
        let mut args = launch.args.clone();
        let mut local_data = None;
        if let Some(i) = args.iter().position(|a| a == "--data-dir") {
            let v = args.get_mut(i + 1).ok_or_else(|| RuntimeError::Node {
                id: id.into(),
                message: "--data-dir without a value in the node's command line".into(),
            })?;
            local_data = Some(PathBuf::from(std::mem::replace(v, format!("{}/data", self.node_dir(id)))));
        }
        Ok((args, local_data))
    }

    /// The start script: refuses a node already running, exports the environment (the script
    /// travels on stdin, so the admin token never shows in the host's process list), starts the
    /// binary detached and writes its pid.
    fn start_script(&self, id: &str, launch: &Launch, args: &[String]) -> Result<String, RuntimeError> {
        let mut s = format!(
            "{}set -e\nmkdir -p \"$D/data\"\n\
             if P=$(cat \"$D/pid\" 2>/dev/null) && ours \"$P\"; then echo 'already running' >&2; exit 3; fi\n",
            self.node_prelude(id)
        );
        for (k, v) in &launch.env {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(RuntimeError::Node { id: id.into(), message: format!("bad environment name {k:?}") });
            }
            s += &format!("export {k}={}\n", sh_quote(v));
        }
        let words: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
        s += &format!(
            "setsid nohup {} {} >>\"$D/node.log\" 2>&1 </dev/null &\necho $! >\"$D/pid\"\necho $!\n",
            sh_quote(&self.remote_bin()),
            words.join(" ")
        );
        Ok(s)
    }

    /// A script that sends `signals` (in order) to the node's process if its pid file names a
    /// live process of this run; `missing` is what to do when there is none (`exit 0` or an
    /// error exit).
    fn signal_script(&self, id: &str, signals: &[&str], missing: &str) -> String {
        let kills: Vec<String> = signals.iter().map(|s| format!("kill -{s} \"$P\"")).collect();
        format!(
            "{}if P=$(cat \"$D/pid\" 2>/dev/null) && ours \"$P\"; then {}; else {missing}; fi\n",
            self.node_prelude(id),
            kills.join(" && ")
        )
    }

    fn node_prelude(&self, id: &str) -> String {
        node_prelude(&self.node_dir(id))
    }

    /// Copies each node's log and data into the run folder (best effort: a failure is logged).
    fn fetch_outputs(&self) {
        let copies = self.copies.lock().expect("copies lock").clone();
        self.each_host(|c| {
            let Some(local) = copies.get(&c.node) else { return Ok(()) };
            let dir = self.node_dir(&c.node);
            if let Err(e) = c.copy(&c.remote(&format!("{dir}/node.log")), &local.log.display().to_string(), false) {
                tracing::warn!("cannot fetch the log of {}: {e}", c.node);
            }
            if let Some(data) = &local.data {
                if let Err(e) = c.copy(&c.remote(&format!("{dir}/data/*")), &data.display().to_string(), true) {
                    tracing::debug!("no data fetched from {}: {e}", c.node);
                }
            }
            Ok(())
        });
    }
}

impl Runtime for SshRuntime {
    fn kind(&self) -> &'static str {
        "ssh"
    }
    fn mechanism(&self) -> NetMechanism {
        NetMechanism::Ssh
    }
    fn run_id(&self) -> &str {
        &self.run_id
    }
    fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    fn start_node(&self, id: &str, launch: &Launch) -> Result<u32, RuntimeError> {
        let c = self.conn(id)?;
        self.ensure_binary(c, &launch.program)?;
        let (args, data) = self.remote_args(id, launch)?;
        self.copies.lock().expect("copies lock").insert(id.into(), LocalCopy { log: launch.log.clone(), data });
        let out = c.script(&self.start_script(id, launch, &args)?)?;
        out.trim().parse::<u32>().map_err(|_| RuntimeError::Node {
            id: id.into(),
            message: format!("host {}: no pid from the start script: {out:?}", c.dest),
        })
    }

    fn start_nodes(&self, launches: &[(String, Launch)]) -> Result<(), RuntimeError> {
        // Every host at once (upload and start), so a 5-host cluster comes up together.
        let by_id: HashMap<&str, &Launch> = launches.iter().map(|(id, l)| (id.as_str(), l)).collect();
        let results = self.each_host(|c| match by_id.get(c.node.as_str()) {
            Some(l) => self.start_node(&c.node, l).map(drop),
            None => Ok(()),
        });
        results.into_iter().collect()
    }

    fn kill_node(&self, id: &str) -> Result<(), RuntimeError> {
        let c = self.conn(id)?;
        let mut s = self.signal_script(id, &["CONT", "KILL"], "exit 0");
        // Bounded wait until the process is gone (a zombie counts as gone), then the pid file.
        s += "i=0\nwhile [ $i -lt 100 ]; do st=$(sed 's/.*) //' \"/proc/$P/stat\" 2>/dev/null | cut -c1)\n\
              case \"$st\" in ''|Z|X) break ;; esac; sleep 0.05; i=$((i+1)); done\nrm -f \"$D/pid\"\n";
        c.script(&s).map(drop)
    }

    fn pause_node(&self, id: &str) -> Result<(), RuntimeError> {
        let c = self.conn(id)?;
        c.script(&self.signal_script(id, &["STOP"], "echo 'not running' >&2; exit 3")).map(drop)
    }

    fn resume_node(&self, id: &str) -> Result<(), RuntimeError> {
        let c = self.conn(id)?;
        c.script(&self.signal_script(id, &["CONT"], "exit 0")).map(drop)
    }

    fn is_running(&self, id: &str) -> bool {
        let Ok(c) = self.conn(id) else { return false };
        let s = self.signal_script(id, &["0"], "echo stopped; exit 0") + "echo running\n";
        match c.script(&s) {
            Ok(out) => out.trim() == "running",
            Err(e) => {
                tracing::warn!("is_running {id}: {e}");
                false
            }
        }
    }

    fn apply_net(&self, faults: &NetFaults) -> Result<(), RuntimeError> {
        for l in faults.links() {
            super::find_node(&self.nodes, &l.from)?;
            super::find_node(&self.nodes, &l.to)?;
        }
        let unsupported = |what: &str, why: String| RuntimeError::Unsupported {
            mechanism: NetMechanism::Ssh.as_str().into(),
            what: what.into(),
            why,
        };
        if !faults.delay.is_empty() {
            return Err(unsupported(
                "latency",
                "holding packets needs a program on the host (no agent of ours runs there)".into(),
            ));
        }
        if !faults.is_empty() && !self.no_net.is_empty() {
            let hosts: Vec<String> = self.no_net.iter().map(|(h, why)| format!("{h}: {why}")).collect();
            return Err(unsupported("network faults", format!("no iptables chain on {}", hosts.join("; "))));
        }
        if !self.no_net.is_empty() {
            return Ok(()); // healing what could never be applied
        }
        let chain = ssh_state::chain(&self.run_id);
        let ip_of = |n: &str| super::find_node(&self.nodes, n).map(|s| s.ip.to_string());
        let results = self.each_host(|c| {
            let rules = netrules::input_rules(&chain, &c.node, faults, &ip_of)?;
            let s = format!(
                "{}$S iptables-restore -w 5 --noflush <<'EOF'\n*filter\n-F {chain}\n{rules}COMMIT\nEOF\n",
                ssh_state::prelude(&self.ssh.remote_dir)
            );
            c.script(&s).map(drop)
        });
        results.into_iter().collect()
    }

    fn teardown(&self) -> Result<(), RuntimeError> {
        let mut done = self.torn_down.lock().expect("teardown lock");
        if *done {
            return Ok(());
        }
        self.fetch_outputs();
        let mut report = CleanupReport::default();
        let ids = [self.run_id.clone()];
        ssh_state::remove_on_hosts(&self.conns, &self.ssh.remote_dir, &Which::Runs(&ids), false, &mut report);
        for r in &report.removed {
            tracing::debug!("teardown: {r}");
        }
        *done = true;
        // The masters are closed: their socket folder goes in any case (the state file stays
        // while a host could not be cleaned, for `faultline cleanup`).
        let _ = std::fs::remove_dir_all(ssh_state::ctl_dir(&self.state_dir, &self.run_id));
        match report.errors.into_iter().next() {
            Some(e) => Err(RuntimeError::Command { line: "ssh teardown".into(), message: e }),
            None => {
                SshState::remove(&self.state_dir, &self.run_id);
                Ok(())
            }
        }
    }
}

impl Drop for SshRuntime {
    /// Last resort: a runtime dropped without teardown (a panic) still removes what it made.
    fn drop(&mut self) {
        if !*self.torn_down.lock().expect("teardown lock") {
            let _ = self.teardown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ours` (run with the local sh): a live process holding the folder is ours; another
    /// process, a dead pid and a zombie are not.
    #[test]
    fn only_a_live_process_of_the_node_folder_is_ours() {
        let dir = "/tmp/fl-ssh-unit/fl00cc33/n1";
        let ours = |pid: u32| {
            let script = format!("{}ours {pid} && echo yes || echo no\n", node_prelude(dir));
            cmd::run_with_stdin("sh", &["-s"], Some(&script)).unwrap().trim().to_string()
        };
        let spawn = |marker: &str| {
            std::process::Command::new("sh").args(["-c", "while :; do sleep 1; done", marker]).spawn().unwrap()
        };
        let mut node = spawn(&format!("{dir}/data"));
        let mut other = spawn("/tmp/fl-ssh-unit/fl00cc33/n2/data");
        assert_eq!(ours(node.id()), "yes");
        assert_eq!(ours(other.id()), "no", "another node's process");
        assert_eq!(ours(u32::MAX - 7), "no", "no such process");
        node.kill().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(ours(node.id()), "no", "a zombie is not running");
        node.wait().unwrap();
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
