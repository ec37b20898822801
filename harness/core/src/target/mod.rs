//! Targets: what a node is. A [`Target`] says how to launch a node on a runtime, how to ask a
//! node for its status (readiness, leader) and how to set its clock.
//!
//! [`reference`] is the project's own `faultline-node` with a role (`raft`, ...); [`external`]
//! builds the targets the project did not write: [`etcd`], [`redis`] and [`file`] (TOML).

pub mod etcd;
pub mod external;
pub mod file;
pub mod redis;
pub mod reference;

use crate::client::BoxFuture;
use crate::runtime::{Launch, NodeSpec};

/// What a node says about itself.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NodeStatus {
    pub state: String,
    pub term: Option<u64>,
    pub leader: Option<String>,
    pub clock_offset_ms: Option<i64>,
}

/// A system under test.
pub trait Target: Send + Sync {
    /// `raft`, ...
    fn name(&self) -> &str;
    /// How to start `node` of the cluster `all`, with its data in `data_dir`, logging to `log`.
    fn launch(
        &self,
        node: &NodeSpec,
        all: &[NodeSpec],
        data_dir: &std::path::Path,
        log: &std::path::Path,
    ) -> Launch;
    /// The node's status through its admin interface (bounded by the client timeout).
    fn status<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<NodeStatus, String>>;
    /// Sets the node's clock: `Some(offset_ms)` or `None` to reset. Returns the new offset.
    fn set_clock<'a>(
        &'a self,
        addr: &'a str,
        offset_ms: Option<i64>,
    ) -> BoxFuture<'a, Result<i64, String>>;
    /// Whether faults of `family` can reach this target; `Err(why)` is reported, never pretended.
    fn fault_support(&self, _family: crate::nemesis::Family) -> Result<(), String> {
        Ok(())
    }
    /// True when nodes bind outgoing sockets to their own address (loopback partitions need it).
    fn binds_source_address(&self) -> bool {
        true
    }
    /// False for leaderless systems (every node coordinates): setup then waits only for every
    /// node to answer, not for a node claiming `leader`.
    fn has_leader(&self) -> bool {
        true
    }
}
