//! Runtimes: where nodes live. A [`Runtime`] starts, kills, pauses and resumes node processes
//! and applies and heals network faults between them.
//!
//! Network faults are given as a whole desired state ([`NetFaults`]): applying one replaces what
//! was applied before, and [`Runtime::heal_net`] is `apply_net(&NetFaults::default())`, so heal
//! is idempotent by construction.

pub mod cmd;
pub mod docker;
pub mod local;
pub mod netrules;
pub mod nfq_delay;
pub mod ssh;
pub mod ssh_conn;
pub mod ssh_state;
pub mod state;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Errors of a runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("`{line}` failed: {message}")]
    Command { line: String, message: String },
    #[error("unknown node {0}")]
    UnknownNode(String),
    #[error("node {id}: {message}")]
    Node { id: String, message: String },
    #[error("{mechanism} cannot apply {what}: {why}")]
    Unsupported { mechanism: String, what: String, why: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One node's identity and address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// `n1`, `n2`, ...
    pub id: String,
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// The node `id` of `nodes`, or [`RuntimeError::UnknownNode`].
pub fn find_node<'a>(nodes: &'a [NodeSpec], id: &str) -> Result<&'a NodeSpec, RuntimeError> {
    nodes.iter().find(|n| n.id == id).ok_or_else(|| RuntimeError::UnknownNode(id.into()))
}

impl NodeSpec {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// How to start a node process (the target decides; the runtime places it).
#[derive(Clone, Debug)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// stdout and stderr are appended here (across restarts).
    pub log: PathBuf,
}

/// Which network mechanism a runtime uses; recorded in results.json.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetMechanism {
    /// One network namespace per node, veths on a per-run bridge, iptables inside each namespace.
    Netns,
    /// Nodes on 127.77.x.y in the host namespace; a per-run chain hooked from `INPUT -i lo`.
    LoopbackIptables,
    /// Nodes on 127.77.x.y with no way to filter packets: network faults are reported not applied.
    LoopbackNone,
    /// Nodes on remote hosts reached over SSH; a per-run chain on each host's INPUT.
    Ssh,
}

impl NetMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            NetMechanism::Netns => "netns",
            NetMechanism::LoopbackIptables => "loopback-iptables",
            NetMechanism::LoopbackNone => "loopback-none",
            NetMechanism::Ssh => "ssh",
        }
    }
}

/// A directed link: packets sent by `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Link {
    pub from: String,
    pub to: String,
}

/// The complete network fault state between nodes. Empty = healthy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetFaults {
    /// Links whose packets are all dropped.
    pub drop: Vec<Link>,
    /// Links whose packets are dropped with this probability.
    pub loss: Vec<(Link, f64)>,
    /// Links whose packets are held this many ms.
    pub delay: Vec<(Link, u64)>,
    /// Cut links refuse TCP with a reset instead of dropping it silently, so a sender's request
    /// fails at once rather than hanging until its own timeout, and a heal takes effect at once
    /// (leader churn, `nemesis::churn`, cuts and heals several times a second).
    #[serde(default)]
    pub refuse_tcp: bool,
}

impl NetFaults {
    /// Every link the faults act on (cut, lossy or delayed).
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.drop.iter().chain(self.loss.iter().map(|(l, _)| l)).chain(self.delay.iter().map(|(l, _)| l))
    }

    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.loss.is_empty() && self.delay.is_empty()
    }
}

/// Where nodes live. Methods are synchronous: each is a handful of short system calls or tool
/// invocations (milliseconds), and callers in async code accept that.
pub trait Runtime: Send + Sync {
    /// `local`, `docker`, ...
    fn kind(&self) -> &'static str;
    fn mechanism(&self) -> NetMechanism;
    /// Per-run identifier that prefixes every name the runtime creates.
    fn run_id(&self) -> &str;
    fn nodes(&self) -> &[NodeSpec];
    /// The address the harness's clients use to reach `node`.
    fn client_addr(&self, node: &str) -> Result<String, RuntimeError> {
        find_node(self.nodes(), node).map(NodeSpec::addr)
    }
    /// Starts (or restarts) a node process.
    fn start_node(&self, id: &str, launch: &Launch) -> Result<u32, RuntimeError>;
    /// Starts several nodes; a runtime that can start them together (one `docker-compose up`)
    /// overrides this. Stops at the first error.
    fn start_nodes(&self, launches: &[(String, Launch)]) -> Result<(), RuntimeError> {
        launches.iter().try_for_each(|(id, l)| self.start_node(id, l).map(|_| ()))
    }
    /// `kill -9` the node and reap it. Killing a dead node is not an error.
    fn kill_node(&self, id: &str) -> Result<(), RuntimeError>;
    /// SIGSTOP.
    fn pause_node(&self, id: &str) -> Result<(), RuntimeError>;
    /// SIGCONT. Resuming a running node is not an error.
    fn resume_node(&self, id: &str) -> Result<(), RuntimeError>;
    /// How this runtime kills or pauses a node, as results.json records it.
    fn process_mechanism(&self, family: crate::nemesis::Family) -> &'static str {
        match family {
            crate::nemesis::Family::Pause => "sigstop",
            _ => "sigkill",
        }
    }
    /// True when the node's process is alive (paused counts as alive).
    fn is_running(&self, id: &str) -> bool;
    /// Replaces the network fault state with `faults`.
    fn apply_net(&self, faults: &NetFaults) -> Result<(), RuntimeError>;
    /// Removes every network fault (idempotent).
    fn heal_net(&self) -> Result<(), RuntimeError> {
        self.apply_net(&NetFaults::default())
    }
    /// Kills every node and removes everything the runtime created. Idempotent; best effort:
    /// every step is attempted and the first error is returned.
    fn teardown(&self) -> Result<(), RuntimeError>;
}
