//! Targets: what a node is. A [`Target`] says how to launch a node on a runtime, how to ask a
//! node for its status (readiness, leader) and how to set its clock.
//!
//! [`reference`] is the project's own `faultline-node` with a role (`raft`, ...); [`external`]
//! builds the targets the project did not write: [`etcd`], [`redis`], [`sql`] (PostgreSQL,
//! MariaDB) and [`file`] (TOML); [`lb`]
//! puts the reference `lb` role in front of a cluster of reference nodes; [`roles`] is the one
//! table of the reference roles (leaders, cas, workloads, options, bugs).

pub mod etcd;
pub mod external;
pub mod file;
pub mod lb;
pub mod promise;
pub mod redis;
pub mod reference;
pub mod roles;
pub mod router;
pub mod sql;

use std::sync::Arc;

use crate::client::{BoxFuture, Client, DataType};
use crate::runtime::{Launch, NodeSpec};

/// What a node says about itself.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct NodeStatus {
    pub state: String,
    pub term: Option<u64>,
    pub leader: Option<String>,
    pub clock_offset_ms: Option<i64>,
    /// The highest log index the node knows committed, where it says (leader churn watches a
    /// new leader's first commit, see `nemesis::churn`).
    pub commit_index: Option<u64>,
    /// The index of the last entry in the node's log, where it says (leader churn cuts a leader
    /// off together with the followers furthest along).
    pub last_index: Option<u64>,
}

/// Asks every node in `nodes` (id, address) for its status at once, each ask bounded by
/// `timeout_max`, so a paused or cut-off node stalls no one; the answers arrive in the returned
/// set as they come (`None`: no answer in time, or an error). The nemeses and the clock sampler
/// share it, each draining the set its own way.
pub fn ask_statuses(
    target: &Arc<dyn Target>,
    nodes: impl IntoIterator<Item = (String, String)>,
    timeout_max: std::time::Duration,
) -> tokio::task::JoinSet<Option<(String, NodeStatus)>> {
    let mut set = tokio::task::JoinSet::new();
    for (id, addr) in nodes {
        let target = target.clone();
        set.spawn(
            async move { tokio::time::timeout(timeout_max, target.status(&addr)).await.ok()?.ok().map(|s| (id, s)) },
        );
    }
    set
}

/// A system under test.
pub trait Target: Send + Sync {
    /// `raft`, ...
    fn name(&self) -> &str;
    /// How to start `node` of the cluster `all`, with its data in `data_dir`, logging to `log`.
    fn launch(&self, node: &NodeSpec, all: &[NodeSpec], data_dir: &std::path::Path, log: &std::path::Path) -> Launch;
    /// The client that performs a workload's operations on this system, for the data type
    /// they act on (Jepsen pairs a db with its client); `Err(why)` when the system cannot
    /// express them, which refuses the run before anything starts.
    fn client(&self, data: DataType) -> Result<Arc<dyn Client>, String>;
    /// The node's status through its admin interface (bounded by the client timeout).
    fn status<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<NodeStatus, String>>;
    /// Sets the node's clock: `Some(offset_ms)` or `None` to reset. Returns the new offset.
    fn set_clock<'a>(&'a self, addr: &'a str, offset_ms: Option<i64>) -> BoxFuture<'a, Result<i64, String>>;
    /// Whether faults of `family` can reach this target; `Err(why)` is reported, never pretended.
    /// By default every family but `rebalance`, which needs shards.
    fn fault_support(&self, family: crate::nemesis::Family) -> Result<(), String> {
        match family {
            crate::nemesis::Family::Rebalance => Err(no_shards(self.name())),
            _ => Ok(()),
        }
    }
    /// Starts moving a range or directory entry between shard groups (the `rebalance` nemesis);
    /// `pick` is the schedule's seeded choice. Returns what moves, once it is frozen.
    fn rebalance<'a>(&'a self, _all: &'a [NodeSpec], _pick: u64) -> BoxFuture<'a, Result<serde_json::Value, String>> {
        Box::pin(async move { Err(no_shards(self.name())) })
    }
    /// Waits for the move that [`Target::rebalance`] started (`started` is what it returned) to
    /// end; `Err(why)` when it failed.
    fn rebalance_done<'a>(
        &'a self,
        _all: &'a [NodeSpec],
        _started: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    /// Indexes (in the run's node order) of nodes that alone hold a role, clients' front nodes
    /// excepted: a directory or coordinator kept on one node. The default schedule kills each
    /// once, before any other fault ([`crate::nemesis::coverage`]). None by default.
    fn lone_nodes(&self, _nodes: usize) -> Vec<usize> {
        Vec::new()
    }
    /// Faults the target declares matter to it beyond the default schedule's common wave (a
    /// Raft that must survive figure 8 declares `partition:leader-churn`): the default schedule
    /// runs each once after that wave and draws them later like any kind. None by default: the
    /// default schedule must find bugs in targets that declare nothing.
    fn declared_faults(&self) -> Vec<(crate::nemesis::Family, &'static str)> {
        Vec::new()
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
    /// The ids of the nodes clients address (workers and final reads), in `all`'s order. By
    /// default every node; a target whose cluster has a front (a router, a load balancer) and
    /// back ends returns only the front.
    fn client_nodes(&self, all: &[NodeSpec]) -> Vec<String> {
        all.iter().map(|n| n.id.clone()).collect()
    }
    /// Whether setup may end, given every node's status answer (in `runtime.nodes()` order).
    /// `Err(why)` says why not yet. By default: every node answered and, for a target with a
    /// leader, some node says it is the leader.
    fn ready(&self, statuses: &[(String, Result<NodeStatus, String>)]) -> Result<(), String> {
        default_ready(self.has_leader(), statuses)
    }
    /// What the target reports about itself at the end of a run (after the final reads, before
    /// teardown), kept in results.json as `target_stats`: e.g. a load balancer's per-backend
    /// counts. `None` (the default) when it has nothing to add.
    fn final_stats<'a>(&'a self, _all: &'a [NodeSpec]) -> BoxFuture<'a, Option<serde_json::Value>> {
        Box::pin(async { None })
    }
    /// Checkers of what this target promises beyond the workload's, judged from the recorded
    /// history, the cluster and what [`Target::final_stats`] returned
    /// ([`crate::checker::History`]; no stats: nothing, or they could not be fetched): e.g. a
    /// load balancer's distribution over its backends, a router's shard balance, the recency
    /// of a primary-backup set's reads. `data` is what the workload's operations act on (a
    /// promise about sets is judged only on a set workload). None by default.
    fn checkers(&self, _data: DataType) -> Vec<Box<dyn crate::checker::Checker>> {
        Vec::new()
    }
}

/// Why a target without shards refuses the `rebalance` nemesis.
pub fn no_shards(target: &str) -> String {
    format!("target {target} has no shards to move (rebalance needs --target router)")
}

/// [`Target::ready`]'s default, for targets that refine it.
pub fn default_ready(has_leader: bool, statuses: &[(String, Result<NodeStatus, String>)]) -> Result<(), String> {
    if let Some((id, Err(e))) = statuses.iter().find(|(_, s)| s.is_err()) {
        return Err(format!("{id}: {e}"));
    }
    if has_leader && !statuses.iter().any(|(_, s)| matches!(s, Ok(st) if st.state == "leader")) {
        return Err("all nodes answer, no leader yet".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(state: &str) -> Result<NodeStatus, String> {
        Ok(NodeStatus { state: state.into(), ..NodeStatus::default() })
    }

    #[test]
    fn default_ready_needs_every_answer_and_a_leader_when_there_is_one() {
        let all = vec![("n1".to_string(), st("follower")), ("n2".to_string(), st("leader"))];
        assert_eq!(default_ready(true, &all), Ok(()));
        let no_leader = vec![("n1".to_string(), st("follower")), ("n2".to_string(), st("candidate"))];
        assert_eq!(default_ready(true, &no_leader), Err("all nodes answer, no leader yet".into()));
        assert_eq!(default_ready(false, &no_leader), Ok(()));
        let silent = vec![("n1".to_string(), st("leader")), ("n2".to_string(), Err("connect".to_string()))];
        assert_eq!(default_ready(true, &silent), Err("n2: connect".into()));
        assert_eq!(default_ready(false, &silent), Err("n2: connect".into()));
    }
}
