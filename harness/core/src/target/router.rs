//! The `router` reference target's cluster shape: a sharded key/value service built from
//! `faultline-node` roles (docs/targets.md).
//!
//! [`topology`] splits the run's nodes: the first is the router (the only node clients
//! address), under the bug `single-directory` the second holds the directory in memory
//! (`--role directory`), and the rest form shard groups of `raft` nodes (each group's peers are
//! its own members only). There are `max(2, rest / 3)` groups, of sizes differing by at most
//! one: 7 nodes → router + 2 groups of 3; 10 → router + 3 groups of 3; 5 → router + 2 groups
//! of 2 (a group of 2 tolerates no failure); fewer than 3 nodes (4 with `single-directory`) is
//! a usage error. The router learns the groups through `--shard-group`.
//!
//! Readiness: the router (and the directory node) answer and every group has a leader. The
//! final stats are the router's `/admin/shards` (per-shard keys and requests, moves), judged by
//! the shard-balance checker (`faultline_checker::shard_balance`).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::reference::ReferenceTarget;
use super::NodeStatus;
use crate::client::BoxFuture;
use crate::runtime::{Launch, NodeSpec};
use crate::workload::CheckerResult;
use faultline_checker::Verdict;

/// Nodes per shard group aimed at (a Raft group of 3 survives one failure).
pub const GROUP_SIZE: usize = 3;
/// Keys the register workload uses at once on this target (3 elsewhere): each key gets fewer
/// operations, and a 10 s run touches a few dozen keys, enough for shard-balance to judge.
pub const ACTIVE_KEYS: u64 = 16;
/// Bugs of the router itself (the group members run plain `raft`).
pub const ROUTER_BUGS: &[&str] = &["naive-hash", "single-directory", "unsafe-move"];
/// Longest a rebalance call may take: starting one waits for an earlier move to end; waiting
/// for one covers the router's not-after horizon, fences, copies and the flip, each bounded.
pub const REBALANCE_TIMEOUT: Duration = Duration::from_secs(20);
/// Within the runner's bound on `final_stats` (twice the op timeout, at least 200 ms).
const SHARDS_TIMEOUT: Duration = Duration::from_secs(3);

/// Who does what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub router: String,
    /// The `--role directory` node (bug `single-directory`).
    pub directory: Option<String>,
    pub groups: Vec<Vec<String>>,
}

/// Where the `single-directory` node sits in the run's node order (n2), right after the router.
const DIRECTORY_INDEX: usize = 1;

/// The nodes that alone hold a role ([`super::Target::lone_nodes`]): the directory node under
/// `single-directory`, else none (the replicated directory lives in group 0's Raft log).
pub fn lone_nodes(single_directory: bool, nodes: usize) -> Vec<usize> {
    if single_directory && nodes > DIRECTORY_INDEX {
        vec![DIRECTORY_INDEX]
    } else {
        Vec::new()
    }
}

/// Splits `ids` (the run's nodes, in order) into router, directory node and shard groups.
pub fn topology(ids: &[String], single_directory: bool) -> Result<Topology, String> {
    let front = 1 + usize::from(single_directory);
    if ids.len() < front + 2 {
        return Err(format!(
            "--target router needs at least {} nodes (the router{}, then two shard groups of at least one node), got {}; \
             --nodes 7 gives two groups of 3",
            front + 2,
            if single_directory { ", the directory node" } else { "" },
            ids.len()
        ));
    }
    let rest = &ids[front..];
    let g = (rest.len() / GROUP_SIZE).max(2);
    let mut groups = Vec::with_capacity(g);
    let mut at = 0;
    for i in 0..g {
        let size = rest.len() / g + usize::from(i < rest.len() % g);
        groups.push(rest[at..at + size].to_vec());
        at += size;
    }
    Ok(Topology { router: ids[0].clone(), directory: single_directory.then(|| ids[DIRECTORY_INDEX].clone()), groups })
}

/// What the router promises about availability ([`super::promise`]): the crash of one node other
/// than the router (a group member, a directory node) leaves, once failed over, at least 70% of
/// the usual ok rate. Measured (`--nodes 7|8 --target-opt sharding=range|directory`, 60 s, the
/// default schedule and `--nemesis kill:one`, 32 runs): a correct router's second half of each
/// kill of one group node served 0.99–3.8 of the usual ok rate (the usual time includes the
/// slow recoveries after whole-cluster faults); with `single-directory` 10 kills of n2 served
/// 0.00–0.89 (7 of them below 0.7).
pub fn availability_promise(all: &[NodeSpec]) -> super::promise::Promise {
    let fronts = all.first().map(|n| vec![n.id.clone()]).unwrap_or_default();
    super::promise::Promise { fronts, rate_of_usual_min: 0.7 }
}

fn ids(all: &[NodeSpec]) -> Vec<String> {
    all.iter().map(|n| n.id.clone()).collect()
}

impl ReferenceTarget {
    fn router_topology(&self, all: &[NodeSpec]) -> Result<Topology, String> {
        topology(&ids(all), self.bugs.iter().any(|b| b == "single-directory"))
    }
}

/// [`ReferenceTarget::launch`] for `--target router`.
pub fn launch(t: &ReferenceTarget, node: &NodeSpec, all: &[NodeSpec], data_dir: &Path, log: &Path) -> Launch {
    // Checked by `faultline run` before any node starts (usage error); a fallback keeps this total.
    let topo = t.router_topology(all).unwrap_or_else(|_| Topology {
        router: all[0].id.clone(),
        directory: None,
        groups: vec![],
    });
    let peers_of = |members: &[String]| -> Vec<&NodeSpec> { all.iter().filter(|n| members.contains(&n.id)).collect() };
    if node.id == topo.router {
        let everyone: Vec<&NodeSpec> = all.iter().collect();
        let mut extra: Vec<String> =
            topo.groups.iter().flat_map(|g| ["--shard-group".to_string(), g.join("+")]).collect();
        if let Some(d) = &topo.directory {
            extra.extend(["--directory-node".to_string(), d.clone()]);
        }
        let bugs: Vec<String> = t.bugs.iter().filter(|b| ROUTER_BUGS.contains(&b.as_str())).cloned().collect();
        return t.launch_as("router", node, &everyone, all, &bugs, &t.options, extra, data_dir, log);
    }
    if topo.directory.as_deref() == Some(node.id.as_str()) {
        return t.launch_as("directory", node, &[node], all, &[], &[], vec![], data_dir, log);
    }
    let group = topo.groups.iter().find(|g| g.contains(&node.id)).cloned().unwrap_or_else(|| vec![node.id.clone()]);
    t.launch_as("raft", node, &peers_of(&group), all, &[], &[], vec![], data_dir, log)
}

/// Ready when the router and directory node answer and every group has a leader.
pub fn ready(t: &ReferenceTarget, statuses: &[(String, Result<NodeStatus, String>)]) -> Result<(), String> {
    let all: Vec<String> = statuses.iter().map(|(id, _)| id.clone()).collect();
    let topo = topology(&all, t.bugs.iter().any(|b| b == "single-directory"))?;
    let st = |id: &str| statuses.iter().find(|(n, _)| n == id).map(|(_, s)| s);
    for front in std::iter::once(&topo.router).chain(topo.directory.iter()) {
        if let Some(Err(e)) = st(front) {
            return Err(format!("{front}: {e}"));
        }
    }
    for (i, g) in topo.groups.iter().enumerate() {
        if !g.iter().any(|id| matches!(st(id), Some(Ok(s)) if s.state == "leader")) {
            return Err(format!("shard group {i} ({}) has no leader yet", g.join(", ")));
        }
    }
    Ok(())
}

pub fn client_nodes(t: &ReferenceTarget, all: &[NodeSpec]) -> Vec<String> {
    match t.router_topology(all) {
        Ok(topo) => vec![topo.router],
        Err(_) => vec![],
    }
}

fn router_addr(t: &ReferenceTarget, all: &[NodeSpec]) -> Result<String, String> {
    let topo = t.router_topology(all)?;
    all.iter().find(|n| n.id == topo.router).map(|n| n.addr()).ok_or_else(|| "no router node".to_string())
}

pub fn rebalance<'a>(t: &'a ReferenceTarget, all: &'a [NodeSpec], pick: u64) -> BoxFuture<'a, Result<Value, String>> {
    Box::pin(async move {
        let addr = router_addr(t, all)?;
        t.http
            .admin(&addr, "rebalance", Some(&json!({ "pick": pick })), REBALANCE_TIMEOUT)
            .await
            .map_err(|e| format!("{}: {}", e.error, e.message))
    })
}

pub fn rebalance_done<'a>(
    t: &'a ReferenceTarget,
    all: &'a [NodeSpec],
    started: &'a Value,
) -> BoxFuture<'a, Result<(), String>> {
    Box::pin(async move {
        let addr = router_addr(t, all)?;
        let id = started.get("id").and_then(Value::as_u64).ok_or_else(|| format!("no move id in {started}"))?;
        t.http
            .admin(&addr, "rebalance/wait", Some(&json!({ "id": id })), REBALANCE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|e| format!("{}: {}", e.error, e.message))
    })
}

/// The router's `/admin/shards` (results.json `target_stats`); `None` if it did not answer.
pub fn final_stats<'a>(t: &'a ReferenceTarget, all: &'a [NodeSpec]) -> BoxFuture<'a, Option<Value>> {
    Box::pin(async move {
        let addr = router_addr(t, all).ok()?;
        match t.http.admin(&addr, "shards", None, SHARDS_TIMEOUT).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("router /admin/shards: {}: {}", e.error, e.message);
                None
            }
        }
    })
}

/// The shard-balance checker over the router's `/admin/shards` answer.
pub fn balance_checker(fetched: Option<&Value>) -> CheckerResult {
    let name = "shard-balance".to_string();
    let Some(v) = fetched else {
        return CheckerResult {
            name,
            verdict: Verdict::Unknown,
            reason: Some("the router's /admin/shards was not fetched (see harness.log)".into()),
            details: json!(null),
        };
    };
    let shards = v.get("shards").and_then(Value::as_array).cloned().unwrap_or_default();
    let counts: Option<Vec<u64>> = shards.iter().map(|s| s.get("keys").and_then(Value::as_u64)).collect();
    let Some(counts) = counts.filter(|c| !c.is_empty()) else {
        return CheckerResult {
            name,
            verdict: Verdict::Unknown,
            reason: Some(format!("router report without per-shard key counts: {v}")),
            details: json!(null),
        };
    };
    let requests: Vec<u64> = shards.iter().map(|s| s.get("requests").and_then(Value::as_u64).unwrap_or(0)).collect();
    let total: u64 = requests.iter().sum();
    let b = faultline_checker::shard_balance::check(&counts);
    // Range sharding places keys where the split points say, not by chance: the binomial bound
    // does not apply (sequential `k<number>` names crowd below the first split point). Shares
    // are reported, not judged.
    let (verdict, reason) = if v.get("sharding").and_then(Value::as_str) == Some("range") {
        (
            Verdict::Valid,
            format!(
                "not judged: range sharding follows its split points (largest share {:.0}% of {} keys)",
                b.max_share * 100.0,
                b.keys
            ),
        )
    } else {
        (b.verdict, b.reason.clone())
    };
    CheckerResult {
        name,
        verdict,
        reason: Some(reason),
        details: json!({
            "keys": counts,
            "key_shares": b.shares,
            "max_share": b.max_share,
            "bound": b.bound,
            "requests": requests,
            "request_shares": requests.iter().map(|&r| if total == 0 { 0.0 } else { r as f64 / total as f64 }).collect::<Vec<_>>(),
            "sharding": v.get("sharding"),
            "hash": v.get("hash"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::Verdict;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn nodes_split_into_router_and_groups() {
        let t = topology(&names(7), false).unwrap();
        assert_eq!(t.router, "n1");
        assert_eq!(t.groups, vec![vec!["n2", "n3", "n4"], vec!["n5", "n6", "n7"]]);
        let t = topology(&names(10), false).unwrap();
        assert_eq!(t.groups.len(), 3);
        let t = topology(&names(8), false).unwrap();
        assert_eq!(t.groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 3]);
        let t = topology(&names(3), false).unwrap();
        assert_eq!(t.groups, vec![vec!["n2"], vec!["n3"]]);
        let t = topology(&names(8), true).unwrap();
        assert_eq!(t.directory.as_deref(), Some("n2"));
        assert_eq!(t.groups, vec![vec!["n3", "n4", "n5"], vec!["n6", "n7", "n8"]]);
        // The lone node the default schedule kills first is that directory node, and only then.
        let lone: Vec<String> = lone_nodes(true, 8).iter().map(|&i| names(8)[i].clone()).collect();
        assert_eq!(lone, vec![t.directory.clone().unwrap()]);
        assert!(lone_nodes(false, 8).is_empty());
        let e = topology(&names(2), false).unwrap_err();
        assert!(e.contains("at least 3 nodes"), "{e}");
        assert!(topology(&names(3), true).unwrap_err().contains("at least 4 nodes"));
    }

    #[test]
    fn balance_checker_judges_the_router_report() {
        let v = json!({"shards": [{"keys": 40, "requests": 400}, {"keys": 0, "requests": 0}], "sharding": "hash"});
        let c = balance_checker(Some(&v));
        assert_eq!(c.verdict, Verdict::Invalid, "{c:?}");
        assert_eq!(c.details["request_shares"][0], 1.0);
        let v = json!({"shards": [{"keys": 21, "requests": 10}, {"keys": 19, "requests": 10}]});
        assert_eq!(balance_checker(Some(&v)).verdict, Verdict::Valid);
        assert_eq!(balance_checker(None).verdict, Verdict::Unknown);
        let range = json!({"sharding": "range", "shards": [{"keys": 40, "requests": 1}, {"keys": 0, "requests": 0}]});
        let c = balance_checker(Some(&range));
        assert_eq!(c.verdict, Verdict::Valid);
        assert!(c.reason.unwrap().starts_with("not judged: range sharding"));
        assert_eq!(balance_checker(Some(&json!({"shards": []}))).verdict, Verdict::Unknown);
    }
}
