//! The local runtime: every node is a child process of the harness.
//!
//! With CAP_NET_ADMIN (root, as in CI) each node gets its own network namespace `fl<id>-nK`,
//! joined by a veth (`fl<id>nK`) to a per-run bridge `fl<id>br` on 10.77.X.0/24 (X chosen so as
//! not to clash with any address in use or any other live run). Inside each namespace two chains,
//! `FAULTLINE-IN` (from INPUT) and `FAULTLINE-OUT` (from OUTPUT), carry the network faults;
//! applying a fault state rewrites them atomically with `iptables-restore --noflush`. dockerd
//! sets the host's FORWARD policy to DROP, which would silently cut bridged traffic between the
//! namespaces: the runtime inserts `FORWARD -i BR -o BR -j ACCEPT` and removes it at teardown.
//!
//! Without namespaces the nodes run on 127.77.X.(10+K) in the host namespace; with iptables a
//! per-run chain `fl<id>in`, hooked from `INPUT -i lo`, drops between node addresses (the nodes
//! bind their outgoing sockets to their own address, docs/node-api.md), and a chain `fl<id>out`,
//! hooked from `OUTPUT -o lo`, queues delayed links to one NFQUEUE per run; without iptables
//! every network fault is refused with a reason, which the nemesis records as "not applied".
//!
//! Everything created is recorded in the run's state file before it is created
//! ([`super::state`]), so `faultline cleanup` can undo a killed run.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::Rng;

use super::nfq_delay::{CutState, Cuts, DelayQueue};
use super::state::{self, RunState};
use super::{cmd, netrules, Launch, NetFaults, NetMechanism, NodeSpec, Runtime, RuntimeError};

/// Which network mechanism to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MechanismChoice {
    /// Namespaces when the harness has CAP_NET_ADMIN and the tools exist, else loopback.
    Auto,
    Netns,
    LoopbackIptables,
    LoopbackNone,
}

impl std::str::FromStr for MechanismChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "netns" => Ok(Self::Netns),
            "loopback" | "loopback-iptables" => Ok(Self::LoopbackIptables),
            "loopback-none" | "none" => Ok(Self::LoopbackNone),
            other => Err(format!("unknown network mechanism {other:?}: expected auto, netns, loopback or none")),
        }
    }
}

/// Options of the local runtime.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    pub nodes: usize,
    pub port: u16,
    pub mechanism: MechanismChoice,
    pub state_dir: PathBuf,
}

struct NodeProc {
    child: Option<Child>,
    paused: bool,
}

/// The local runtime. Create with [`LocalRuntime::setup`]; always call [`Runtime::teardown`].
pub struct LocalRuntime {
    run_id: String,
    mechanism: NetMechanism,
    nodes: Vec<NodeSpec>,
    bridge: String,
    loopback_chain: String,
    /// The loopback mechanism's OUTPUT chain (latency: NFQUEUE rules).
    loopback_out_chain: String,
    state_dir: PathBuf,
    state: Mutex<RunState>,
    procs: Mutex<HashMap<String, NodeProc>>,
    /// Latency consumers by (node, delay ms).
    delays: Mutex<BTreeMap<(String, u64), DelayQueue>>,
    /// The links cut now, which the latency consumers drop rather than release.
    cuts: Cuts,
}

/// True when this process has CAP_NET_ADMIN (bit 12 of CapEff).
pub fn has_net_admin() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// True when this process can create named network namespaces: `ip netns add` mounts them
/// under /run/netns, which needs write access to /run (not the case for the mapped root of an
/// unprivileged user namespace).
pub fn can_name_netns() -> bool {
    let dir = if Path::new("/run/netns").exists() { "/run/netns" } else { "/run" };
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

fn pick_mechanism(choice: MechanismChoice) -> Result<NetMechanism, RuntimeError> {
    let admin = has_net_admin();
    let ip = cmd::available("ip") && (choice != MechanismChoice::Auto || can_name_netns());
    let ipt = cmd::available("iptables");
    let need = |m: NetMechanism, ok: bool, why: &str| {
        if ok {
            Ok(m)
        } else {
            Err(RuntimeError::Unsupported { mechanism: m.as_str().into(), what: "the runtime".into(), why: why.into() })
        }
    };
    match choice {
        MechanismChoice::Netns => need(
            NetMechanism::Netns,
            admin && ip && ipt,
            "needs CAP_NET_ADMIN and the `ip` (iproute2) and `iptables` tools",
        ),
        MechanismChoice::LoopbackIptables => {
            need(NetMechanism::LoopbackIptables, admin && ipt, "needs CAP_NET_ADMIN and `iptables`")
        }
        MechanismChoice::LoopbackNone => Ok(NetMechanism::LoopbackNone),
        MechanismChoice::Auto => Ok(if admin && ip && ipt {
            NetMechanism::Netns
        } else if admin && ipt {
            NetMechanism::LoopbackIptables
        } else {
            NetMechanism::LoopbackNone
        }),
    }
}

/// Third octets already used by 10.77.X.0/24 or 127.77.X.0/24 addresses or by live runs.
fn used_subnets(state_dir: &Path) -> Vec<u8> {
    let mut used = Vec::new();
    if let Ok(out) = cmd::run("ip", &["-o", "-4", "addr", "show"]) {
        for word in out.split_whitespace() {
            for prefix in ["10.77.", "127.77."] {
                if let Some(rest) = word.strip_prefix(prefix) {
                    if let Some(x) = rest.split('.').next().and_then(|x| x.parse::<u8>().ok()) {
                        used.push(x);
                    }
                }
            }
        }
    }
    for s in RunState::load_all(state_dir).0 {
        used.push(s.subnet);
    }
    used
}

/// A third octet X for the run's subnet that no address and no live run uses, searched from a
/// random start (call under the state folder's lock).
fn free_subnet(state_dir: &Path, rng: &mut impl Rng, mechanism: NetMechanism) -> Result<u8, RuntimeError> {
    let used = used_subnets(state_dir);
    let start: u8 = rng.random_range(1..=250);
    (0..250u16).map(|i| ((u16::from(start) - 1 + i) % 250 + 1) as u8).find(|x| !used.contains(x)).ok_or_else(|| {
        RuntimeError::Unsupported {
            mechanism: mechanism.as_str().into(),
            what: "address allocation".into(),
            why: "all 250 subnets 10.77.1-250.0/24 are in use".into(),
        }
    })
}

/// The nodes n1..nN: 10.77.X.(10+K) in namespaces, else 127.77.X.(10+K).
fn node_specs(mechanism: NetMechanism, subnet: u8, opts: &LocalOptions) -> Vec<NodeSpec> {
    (1..=opts.nodes)
        .map(|k| NodeSpec {
            id: format!("n{k}"),
            ip: match mechanism {
                NetMechanism::Netns => Ipv4Addr::new(10, 77, subnet, 10 + k as u8),
                _ => Ipv4Addr::new(127, 77, subnet, 10 + k as u8),
            },
            port: opts.port,
        })
        .collect()
}

impl LocalRuntime {
    /// Creates the network for `opts.nodes` nodes (no processes yet). On error, whatever was
    /// created is removed again.
    pub fn setup(opts: &LocalOptions) -> Result<Self, RuntimeError> {
        assert!(opts.nodes >= 1 && opts.nodes <= 99, "node count checked by the caller");
        let mechanism = pick_mechanism(opts.mechanism)?;
        let mut rng = rand::rng();
        // The run id names infrastructure only; it is deliberately not derived from the test
        // seed, so two runs with the same seed never clash.
        let run_id = format!("{}{:06x}", state::NAME_PREFIX, rng.random::<u32>() & 0x00ff_ffff);
        // Two runs starting at once must not pick the same subnet: choose it and record it in
        // the state file under an exclusive lock on the state folder (released on return).
        crate::secret::private_dir(&opts.state_dir)?;
        let lock =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(opts.state_dir.join(".lock"))?;
        lock.lock()?;
        let subnet = free_subnet(&opts.state_dir, &mut rng, mechanism)?;
        let nodes = node_specs(mechanism, subnet, opts);
        let rt = LocalRuntime::new(run_id, mechanism, nodes, subnet, &opts.state_dir);
        rt.save_state()?;
        drop(lock);
        let built = match mechanism {
            NetMechanism::Netns => rt.setup_netns(subnet),
            NetMechanism::LoopbackIptables => rt.setup_loopback_chain(),
            // The SSH mechanism is never picked here.
            NetMechanism::LoopbackNone | NetMechanism::Ssh => Ok(()),
        };
        if let Err(e) = built {
            let _ = rt.teardown();
            return Err(e);
        }
        Ok(rt)
    }

    /// The runtime of a new run, its state not yet saved and its network not yet built.
    fn new(
        run_id: String,
        mechanism: NetMechanism,
        nodes: Vec<NodeSpec>,
        subnet: u8,
        state_dir: &Path,
    ) -> LocalRuntime {
        LocalRuntime {
            bridge: format!("{run_id}br"),
            loopback_chain: format!("{run_id}in"),
            loopback_out_chain: format!("{run_id}out"),
            run_id: run_id.clone(),
            mechanism,
            nodes,
            state_dir: state_dir.to_path_buf(),
            state: Mutex::new(RunState {
                run_id,
                harness_pid: std::process::id(),
                harness_start: state::own_start_time(),
                subnet,
                ..RunState::default()
            }),
            procs: Mutex::new(HashMap::new()),
            delays: Mutex::new(BTreeMap::new()),
            cuts: Cuts::default(),
        }
    }

    fn save_state(&self) -> Result<(), RuntimeError> {
        let s = self.state.lock().expect("state lock").clone();
        s.save(&self.state_dir).map_err(|e| RuntimeError::Command {
            line: format!("write state file in {}", self.state_dir.display()),
            message: e.to_string(),
        })
    }

    fn record(&self, f: impl FnOnce(&mut RunState)) -> Result<(), RuntimeError> {
        f(&mut self.state.lock().expect("state lock"));
        self.save_state()
    }

    fn netns_name(&self, node: &str) -> String {
        format!("{}-{node}", self.run_id)
    }

    fn setup_netns(&self, subnet: u8) -> Result<(), RuntimeError> {
        let br = self.bridge.clone();
        self.record(|s| s.links.push(br.clone()))?;
        cmd::run("ip", &["link", "add", &br, "type", "bridge"])?;
        cmd::run("ip", &["addr", "add", &format!("10.77.{subnet}.1/24"), "dev", &br])?;
        cmd::run("ip", &["link", "set", &br, "up"])?;
        let rule: Vec<String> =
            ["FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"].iter().map(|s| s.to_string()).collect();
        self.record(|s| s.host_rules.push(rule.clone()))?;
        let mut args = vec!["-w", "5", "-I"];
        args.extend(rule.iter().map(String::as_str));
        cmd::run("iptables", &args)?;
        for node in self.nodes.clone() {
            let ns = self.netns_name(&node.id);
            let veth = format!("{}{}", self.run_id, node.id);
            self.record(|s| {
                s.netns.push(ns.clone());
                s.links.push(veth.clone());
            })?;
            cmd::run("ip", &["netns", "add", &ns])?;
            cmd::run("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            cmd::run("ip", &["link", "set", &veth, "master", &br])?;
            cmd::run("ip", &["link", "set", &veth, "up"])?;
            cmd::run("ip", &["-n", &ns, "addr", "add", &format!("{}/24", node.ip), "dev", "eth0"])?;
            cmd::run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            cmd::run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            // No fault yet: the chains are created and hooked, empty (no address is looked up).
            let rules = netrules::setup_text(&node.id, &NetFaults::default(), false, |n| {
                Err(RuntimeError::UnknownNode(n.into()))
            })?;
            cmd::run_with_stdin("ip", &["netns", "exec", &ns, "iptables-restore", "-w", "5"], Some(&rules))?;
        }
        Ok(())
    }

    fn setup_loopback_chain(&self) -> Result<(), RuntimeError> {
        // A fresh network namespace (the unprivileged re-run) starts with `lo` down; bringing
        // an up `lo` up is a no-op.
        if cmd::available("ip") {
            let _ = cmd::run("ip", &["link", "set", "lo", "up"]);
        }
        for (chain, hook, dir) in
            [(self.loopback_chain.clone(), "INPUT", "-i"), (self.loopback_out_chain.clone(), "OUTPUT", "-o")]
        {
            self.record(|s| s.host_chains.push(chain.clone()))?;
            cmd::run("iptables", &["-w", "5", "-N", &chain])?;
            let rule: Vec<String> = [hook, dir, "lo", "-j", &chain].iter().map(|s| s.to_string()).collect();
            self.record(|s| s.host_rules.push(rule.clone()))?;
            let mut args = vec!["-w", "5", "-I"];
            args.extend(rule.iter().map(String::as_str));
            cmd::run("iptables", &args)?;
        }
        Ok(())
    }

    /// NFQUEUE number of the loopback mechanism: shared host namespace, so one per run (its
    /// subnet octet is unique among live runs).
    fn loopback_queue(&self) -> u16 {
        20_000 + u16::from(self.state.lock().expect("state lock").subnet)
    }

    fn node(&self, id: &str) -> Result<&NodeSpec, RuntimeError> {
        super::find_node(&self.nodes, id)
    }

    fn ip_of(&self, id: &str) -> Result<Ipv4Addr, RuntimeError> {
        Ok(self.node(id)?.ip)
    }

    fn pid(&self, id: &str) -> Option<Pid> {
        let procs = self.procs.lock().expect("procs lock");
        procs.get(id).and_then(|p| p.child.as_ref()).map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Every link of `faults` must join two nodes of this run.
    fn check_links(&self, faults: &NetFaults) -> Result<(), RuntimeError> {
        for l in faults.links() {
            self.node(&l.from)?;
            self.node(&l.to)?;
        }
        Ok(())
    }

    /// Without iptables: only "no fault" can be applied.
    fn apply_net_none(&self, faults: &NetFaults) -> Result<(), RuntimeError> {
        if faults.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::Unsupported {
                mechanism: self.mechanism.as_str().into(),
                what: "network faults".into(),
                why: "the harness has no CAP_NET_ADMIN or no iptables, so it cannot filter packets".into(),
            })
        }
    }

    /// Loopback with iptables: the run's delay consumer, then its two host chains rewritten.
    fn apply_net_loopback(&self, faults: &NetFaults) -> Result<(), RuntimeError> {
        let mut delays_ms: Vec<u64> = faults.delay.iter().map(|(_, ms)| *ms).collect();
        delays_ms.sort();
        delays_ms.dedup();
        if delays_ms.len() > 1 {
            return Err(RuntimeError::Unsupported {
                mechanism: self.mechanism.as_str().into(),
                what: "latency".into(),
                why: format!("one delay at a time on loopback (one queue per run), asked for {delays_ms:?} ms"),
            });
        }
        {
            // Consumer first (--queue-bypass covers the gap anyway).
            let mut delays = self.delays.lock().expect("delays lock");
            let key = delays_ms.first().map(|ms| ("host".to_string(), *ms));
            delays.retain(|k, _| Some(k) == key.as_ref());
            if let Some(k) = key {
                if let std::collections::btree_map::Entry::Vacant(slot) = delays.entry(k) {
                    let ms = slot.key().1;
                    slot.insert(DelayQueue::start(None, self.loopback_queue(), ms, self.cuts.clone())?);
                }
            }
        }
        let rules = self.loopback_rules(faults)?;
        cmd::run_with_stdin("iptables-restore", &["-w", "5", "--noflush"], Some(&rules))?;
        Ok(())
    }

    /// The iptables-restore text of the loopback chains for `faults`.
    fn loopback_rules(&self, faults: &NetFaults) -> Result<String, RuntimeError> {
        let c = &self.loopback_chain;
        let out = &self.loopback_out_chain;
        let mut rules = format!("*filter\n-F {c}\n-F {out}\n");
        for (l, _) in &faults.delay {
            rules += &format!(
                "-A {out} -s {} -d {} -j NFQUEUE --queue-num {} --queue-bypass\n",
                self.ip_of(&l.from)?,
                self.ip_of(&l.to)?,
                self.loopback_queue()
            );
        }
        for l in &faults.drop {
            let (from, to) = (self.ip_of(&l.from)?, self.ip_of(&l.to)?);
            if faults.refuse_tcp {
                rules += &format!("-A {c} -s {from} -d {to} -p tcp -j REJECT --reject-with tcp-reset\n");
            }
            rules += &format!("-A {c} -s {from} -d {to} -j DROP\n");
        }
        for (l, p) in &faults.loss {
            rules += &format!(
                "-A {c} -s {} -d {} -m statistic --mode random --probability {p:.4} -j DROP\n",
                self.ip_of(&l.from)?,
                self.ip_of(&l.to)?
            );
        }
        rules += "COMMIT\n";
        Ok(rules)
    }

    /// Namespaces: the delay consumers, then every node's chains rewritten (all nodes are
    /// tried; the first error is returned).
    fn apply_net_netns(&self, faults: &NetFaults) -> Result<(), RuntimeError> {
        let wanted: Vec<(String, u64)> = {
            let mut w: Vec<(String, u64)> = faults.delay.iter().map(|(l, ms)| (l.from.clone(), *ms)).collect();
            w.sort();
            w.dedup();
            w
        };
        // Consumers first, so queued packets never wait on a missing consumer (and
        // --queue-bypass covers the gap anyway).
        let started = self.set_delays(&wanted);
        let mut first_err = started.err();
        let with_delay = first_err.is_none();
        let mut jobs = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let ip_of = |n: &str| self.ip_of(n).map(|ip| ip.to_string());
            jobs.push((self.netns_name(&node.id), netrules::restore_text(&node.id, faults, with_delay, ip_of)?));
        }
        // One iptables-restore per namespace, all at once: a state that follows the cluster
        // (leader churn, churn.rs) must land on every node within a fraction of a link delay,
        // and one after another they take ~5 ms each.
        let results: Vec<Result<String, RuntimeError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(ns, rules)| {
                    scope.spawn(move || {
                        cmd::run_with_stdin(
                            "ip",
                            &["netns", "exec", ns, "iptables-restore", "-w", "5", "--noflush"],
                            Some(rules.as_str()),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(RuntimeError::Command {
                            line: "iptables-restore".into(),
                            message: "thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        for r in results {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        if wanted.is_empty() {
            self.delays.lock().expect("delays lock").clear();
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Sets the latency consumers to exactly `wanted` (node, delay ms) pairs.
    fn set_delays(&self, wanted: &[(String, u64)]) -> Result<(), RuntimeError> {
        let mut delays = self.delays.lock().expect("delays lock");
        delays.retain(|k, _| wanted.contains(k));
        for (node, ms) in wanted {
            if delays.contains_key(&(node.clone(), *ms)) {
                continue;
            }
            let queue = netrules::queue_num(*ms);
            let ns = PathBuf::from("/run/netns").join(self.netns_name(node));
            let q = DelayQueue::start(Some(ns), queue, *ms, self.cuts.clone())?;
            delays.insert((node.clone(), *ms), q);
        }
        Ok(())
    }
}

impl Runtime for LocalRuntime {
    fn kind(&self) -> &'static str {
        "local"
    }
    fn mechanism(&self) -> NetMechanism {
        self.mechanism
    }
    fn run_id(&self) -> &str {
        &self.run_id
    }
    fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    fn start_node(&self, id: &str, launch: &Launch) -> Result<u32, RuntimeError> {
        self.node(id)?;
        let mut procs = self.procs.lock().expect("procs lock");
        if let Some(p) = procs.get_mut(id) {
            if let Some(c) = p.child.as_mut() {
                if c.try_wait()?.is_none() {
                    return Err(RuntimeError::Node { id: id.into(), message: "already running".into() });
                }
            }
        }
        let log = OpenOptions::new().create(true).append(true).open(&launch.log)?;
        let log2 = log.try_clone()?;
        let mut command = match self.mechanism {
            NetMechanism::Netns => {
                // `ip netns exec` enters the namespace and execs the program: same pid.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.netns_name(id)]).arg(&launch.program);
                c
            }
            _ => Command::new(&launch.program),
        };
        command.args(&launch.args).envs(launch.env.iter().cloned());
        command.stdin(Stdio::null()).stdout(log).stderr(log2);
        // Own process group: a Ctrl-C on the terminal reaches the harness only, which then
        // heals and tears down in order.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(|e| RuntimeError::Node {
            id: id.into(),
            message: format!("cannot start {}: {e}", launch.program.display()),
        })?;
        let pid = child.id();
        // The marker proves later (cleanup) that a pid is still this node: its data dir.
        let marker = launch
            .args
            .windows(2)
            .find(|w| w[0] == "--data-dir")
            .map(|w| w[1].clone())
            .unwrap_or_else(|| launch.program.display().to_string());
        procs.insert(id.into(), NodeProc { child: Some(child), paused: false });
        drop(procs);
        self.record(|s| {
            s.pids.retain(|(_, m)| *m != marker);
            s.pids.push((pid, marker.clone()));
        })?;
        Ok(pid)
    }

    fn kill_node(&self, id: &str) -> Result<(), RuntimeError> {
        self.node(id)?;
        let mut procs = self.procs.lock().expect("procs lock");
        if let Some(p) = procs.get_mut(id) {
            if let Some(mut child) = p.child.take() {
                if child.try_wait()?.is_none() {
                    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                }
                // SIGKILL cannot be ignored, even by a stopped process: wait returns promptly.
                child.wait()?;
            }
            p.paused = false;
        }
        Ok(())
    }

    fn pause_node(&self, id: &str) -> Result<(), RuntimeError> {
        let pid = self.pid(id).ok_or_else(|| RuntimeError::Node { id: id.into(), message: "not running".into() })?;
        kill(pid, Signal::SIGSTOP)
            .map_err(|e| RuntimeError::Node { id: id.into(), message: format!("SIGSTOP: {e}") })?;
        if let Some(p) = self.procs.lock().expect("procs lock").get_mut(id) {
            p.paused = true;
        }
        Ok(())
    }

    fn resume_node(&self, id: &str) -> Result<(), RuntimeError> {
        if let Some(pid) = self.pid(id) {
            let _ = kill(pid, Signal::SIGCONT);
        }
        if let Some(p) = self.procs.lock().expect("procs lock").get_mut(id) {
            p.paused = false;
        }
        Ok(())
    }

    fn is_running(&self, id: &str) -> bool {
        let mut procs = self.procs.lock().expect("procs lock");
        match procs.get_mut(id).and_then(|p| p.child.as_mut()) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn apply_net(&self, faults: &NetFaults) -> Result<(), RuntimeError> {
        self.check_links(faults)?;
        // First, and at once: the latency consumers hold back packets on a link now cut until
        // the rules below are in force (nfq_delay's module doc).
        let cut: Result<_, RuntimeError> =
            faults.drop.iter().map(|l| Ok((self.ip_of(&l.from)?, self.ip_of(&l.to)?))).collect();
        *self.cuts.write().expect("cuts lock") = CutState { links: cut?, installed: false };
        let applied = match self.mechanism {
            NetMechanism::LoopbackNone | NetMechanism::Ssh => self.apply_net_none(faults),
            NetMechanism::LoopbackIptables => self.apply_net_loopback(faults),
            NetMechanism::Netns => self.apply_net_netns(faults),
        };
        // Even after an error: held packets must not wait for rules that will not come.
        self.cuts.write().expect("cuts lock").installed = true;
        applied
    }

    fn teardown(&self) -> Result<(), RuntimeError> {
        let mut first_err: Option<RuntimeError> = None;
        let ids: Vec<String> = self.nodes.iter().map(|n| n.id.clone()).collect();
        for id in &ids {
            if let Err(e) = self.kill_node(id) {
                first_err.get_or_insert(e);
            }
        }
        self.delays.lock().expect("delays lock").clear();
        let st = self.state.lock().expect("state lock").clone();
        let mut report = state::CleanupReport::default();
        state::remove_run(&st, &mut report);
        for r in &report.removed {
            tracing::debug!("teardown: removed {r}");
        }
        if let Some(e) = report.errors.first() {
            first_err.get_or_insert(RuntimeError::Command { line: "teardown".into(), message: e.clone() });
        } else {
            RunState::remove(&self.state_dir, &self.run_id);
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for LocalRuntime {
    /// Last resort: a runtime dropped without teardown (a panic) still removes what it made.
    fn drop(&mut self) {
        if state::RunState::path(&self.state_dir, &self.run_id).exists() {
            let _ = self.teardown();
        }
    }
}
