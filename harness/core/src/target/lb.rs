//! The `lb` target: a load balancer in front of a cluster of reference nodes (docs/targets.md).
//!
//! Topology: the first node (`n1`) runs `faultline-node --role lb` with every other node as its
//! backend, in order; the other nodes form one cluster of a reference role (`backend-role`,
//! default `raft`) that knows nothing of the balancer. Clients address the front only
//! ([`Target::client_nodes`]), so every operation goes through the balancer, and faults still
//! reach any node (`kill:leader` kills a backend, the Raft leader).
//!
//! Options (`--target-opt KEY=VALUE`): `backend-role` is the harness's; every other key is the
//! front's node flag (`strategy`, `weights`, `stale-cache`, health and retry settings). Bugs go
//! to the node they belong to (`naive-weighted` to the front, the rest to the backends).
//!
//! Beyond the workload's checkers the target adds `lb-distribution` for the strategies that
//! promise shares (round robin: equal; weighted: the weights), judged from the backend each ok
//! completion names (`faultline_checker::distribution`), and fetches the front's per-backend
//! counts at the end of the run (results.json `target_stats`).

use crate::client::{Client, DataType};
use std::path::Path;
use std::sync::Arc;

use faultline_checker::distribution::{check_distribution, DistributionOptions};
use faultline_checker::history::Event;
use serde_json::Value;

use super::reference::ReferenceTarget;
use super::{default_ready, NodeStatus, Target};
use crate::client::BoxFuture;
use crate::runtime::{Launch, NodeSpec};
use crate::workload::CheckerResult;

/// Options of the front node (each becomes `--KEY=VALUE`), as in `ROLE_OPTIONS`' lb row.
pub const FRONT_OPTIONS: &[&str] =
    &["strategy", "weights", "stale-cache", "health-interval-ms", "health-timeout-ms", "fall", "rise", "retries-max"];
/// The harness's own option: the role of the backends.
pub const BACKEND_ROLE_OPTION: &str = "backend-role";
/// Roles the backends may run (the linearizable ones the register workload judges).
pub const BACKEND_ROLES: &[&str] = &["raft", "paxos", "quorum"];
/// Bugs of the front node; every other bug goes to the backends.
pub const FRONT_BUGS: &[&str] = &["naive-weighted"];
pub const STRATEGIES: &[&str] = &["round-robin", "least-conn", "weighted"];
/// The front's request timeout: longer than the backends' own (1500 ms by default), so a
/// backend's definite answer reaches the client instead of the front giving up first.
pub const FRONT_REQUEST_TIMEOUT_MS: u64 = 1800;
/// Margin added to the health checks' re-admission time when judging the distribution: a killed
/// backend has to restart and answer its checks before it is picked again.
pub const GRACE_MARGIN_MS: u64 = 1000;

/// The backend role the options name (default `raft`), for choices made before the target
/// exists (a role without cas gets a register workload without cas).
pub fn backend_role(options: &[(String, String)]) -> &str {
    options.iter().find(|(k, _)| k == BACKEND_ROLE_OPTION).map_or("raft", |(_, v)| v.as_str())
}

/// A load balancer over a cluster.
pub struct LbTarget {
    front: ReferenceTarget,
    backend: ReferenceTarget,
    strategy: String,
    /// One per backend (all 1 unless `weights` is given).
    weights: Vec<u32>,
    grace_ms: u64,
}

fn number(
    options: &[(String, String)],
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    match options.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => match v.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(format!("--target-opt {key}={v}: expected an integer in [{}, {}]", range.start(), range.end())),
        },
    }
}

impl LbTarget {
    /// Splits `reference` (role `lb`, its options and bugs) into the front and the backends of
    /// a cluster of `nodes` nodes; a usage error says what is wrong.
    pub fn new(reference: ReferenceTarget, nodes: usize) -> Result<Self, String> {
        if nodes < 2 {
            return Err(format!("--target lb needs at least 2 nodes (the balancer and a backend), got {nodes}"));
        }
        let backends = nodes - 1;
        let role = backend_role(&reference.options).to_string();
        if !BACKEND_ROLES.contains(&role.as_str()) {
            return Err(format!("--target-opt backend-role={role}: expected one of {}", BACKEND_ROLES.join(", ")));
        }
        let front_options: Vec<(String, String)> =
            reference.options.iter().filter(|(k, _)| k != BACKEND_ROLE_OPTION).cloned().collect();
        let get = |k: &str| front_options.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let strategy = get("strategy").unwrap_or("round-robin").to_string();
        if !STRATEGIES.contains(&strategy.as_str()) {
            return Err(format!("--target-opt strategy={strategy}: expected one of {}", STRATEGIES.join(", ")));
        }
        let weights: Vec<u32> = match get("weights") {
            None => vec![1; backends],
            Some(w) => {
                let parsed: Result<Vec<u32>, _> = w.split(',').map(|x| x.trim().parse::<u32>()).collect();
                match parsed {
                    Ok(v) if v.len() == backends && v.iter().all(|&x| (1..=1_000_000).contains(&x)) => v,
                    _ => {
                        return Err(format!(
                            "--target-opt weights={w}: expected {backends} comma-separated integers in [1, 1000000], one per backend (n2..n{nodes})"
                        ))
                    }
                }
            }
        };
        if get("weights").is_some() && strategy != "weighted" {
            return Err(format!(
                "--target-opt weights: only the weighted strategy uses weights (strategy is {strategy})"
            ));
        }
        if let Some(v) = get("stale-cache") {
            if v != "true" && v != "false" {
                return Err(format!("--target-opt stale-cache={v}: expected true or false"));
            }
        }
        let interval = number(&front_options, "health-interval-ms", 200, 1..=60_000)?;
        let timeout = number(&front_options, "health-timeout-ms", 150, 1..=60_000)?;
        let fall = number(&front_options, "fall", 2, 1..=1000)?;
        let rise = number(&front_options, "rise", 2, 1..=1000)?;
        number(&front_options, "retries-max", 2, 0..=16)?;
        let (front_bugs, backend_bugs): (Vec<String>, Vec<String>) =
            reference.bugs.iter().cloned().partition(|b| FRONT_BUGS.contains(&b.as_str()));
        if !front_bugs.is_empty() && strategy != "weighted" {
            return Err(format!("--bug naive-weighted replaces the weighted strategy: add --target-opt strategy=weighted (strategy is {strategy})"));
        }
        // Re-admission takes `rise` good checks after the backend answers again; one more
        // interval for the check in flight, and the timeout of the last failing one.
        let grace_ms = (rise + 1) * interval + timeout + fall * interval + GRACE_MARGIN_MS;
        let backend = ReferenceTarget {
            role,
            options: Vec::new(),
            program: reference.program.clone(),
            bugs: backend_bugs,
            admin_token: reference.admin_token.clone(),
            http: reference.http.clone(),
            seed: reference.seed,
        };
        let front = ReferenceTarget { options: front_options, bugs: front_bugs, ..reference };
        Ok(LbTarget { front, backend, strategy, weights, grace_ms })
    }

    pub fn backend_role(&self) -> &str {
        &self.backend.role
    }
}

impl Target for LbTarget {
    /// Clients talk to the balancer (n1) with the backends' API.
    fn client(&self, data: DataType) -> Result<Arc<dyn Client>, String> {
        self.front.client(data)
    }
    fn name(&self) -> &str {
        "lb"
    }

    fn launch(&self, node: &NodeSpec, all: &[NodeSpec], data_dir: &Path, log: &Path) -> Launch {
        let is_front = all.first().is_some_and(|f| f.id == node.id);
        if !is_front {
            return self.backend.launch(node, all.get(1..).unwrap_or(&[]), data_dir, log);
        }
        let mut l = self.front.launch(node, std::slice::from_ref(node), data_dir, log);
        let backends: Vec<String> = all.iter().skip(1).map(|n| format!("{}={}", n.id, n.addr())).collect();
        l.args.push(format!("--backends={}", backends.join(",")));
        l.args.push(format!("--request-timeout-ms={FRONT_REQUEST_TIMEOUT_MS}"));
        l
    }

    fn status<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<NodeStatus, String>> {
        self.front.status(addr)
    }

    fn set_clock<'a>(&'a self, addr: &'a str, offset_ms: Option<i64>) -> BoxFuture<'a, Result<i64, String>> {
        self.front.set_clock(addr, offset_ms)
    }

    fn has_leader(&self) -> bool {
        self.backend.has_leader()
    }

    fn client_nodes(&self, all: &[NodeSpec]) -> Vec<String> {
        all.iter().take(1).map(|n| n.id.clone()).collect()
    }

    fn ready(&self, statuses: &[(String, Result<NodeStatus, String>)]) -> Result<(), String> {
        // The front says `lb`, never `leader`: the backends' leader is what the default seeks.
        default_ready(self.has_leader(), statuses)?;
        // And the balancer must have every backend in rotation (a backend that started after
        // the balancer's first checks is dropped until it passes `rise` checks), or the first
        // seconds of the run would skew the distribution.
        match statuses.first() {
            Some((_, Ok(s))) if s.state == "lb" => Ok(()),
            Some((id, Ok(s))) => Err(format!("balancer {id}: {}, not every backend in rotation yet", s.state)),
            _ => Err("no balancer status".into()),
        }
    }

    fn final_stats<'a>(&'a self, all: &'a [NodeSpec]) -> BoxFuture<'a, Option<Value>> {
        Box::pin(async move {
            let front = all.first()?;
            match self.front.http.status(&front.addr()).await {
                Ok(v) => v.get("lb").cloned(),
                Err(e) => {
                    tracing::warn!("lb stats not fetched from {}: {}: {}", front.id, e.error, e.message);
                    None
                }
            }
        })
    }

    fn checkers(&self, _data: DataType) -> Vec<Box<dyn crate::checker::Checker>> {
        // Least connections follows the backends' speed, not a share: nothing to judge.
        if self.strategy == "least-conn" {
            return Vec::new();
        }
        let (strategy, weights, grace_ms) = (self.strategy.clone(), self.weights.clone(), self.grace_ms);
        vec![crate::checker::checker("lb-distribution", move |h| {
            distribution_checker(&strategy, &weights, grace_ms, h.nodes, h.events)
        })]
    }
}

/// The lb-distribution checker: do the backends (every node but the balancer n1) serve the
/// shares their weights promise, outside fault windows?
fn distribution_checker(
    strategy: &str,
    weights: &[u32],
    grace_ms: u64,
    all: &[NodeSpec],
    events: &[Event],
) -> CheckerResult {
    {
        let weights: Vec<(String, u32)> =
            all.iter().skip(1).map(|n| n.id.clone()).zip(weights.iter().copied()).collect();
        let windows: Vec<(u64, u64)> =
            crate::analysis::fault_windows(events).iter().map(|w| (w.start_ns, w.end_ns)).collect();
        let opts = DistributionOptions { grace_ns: grace_ms * 1_000_000, ..Default::default() };
        let r = check_distribution(events, &weights, &windows, opts);
        let mut details = serde_json::to_value(&r).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut details {
            m.insert("strategy".into(), Value::String(strategy.to_string()));
        }
        CheckerResult { name: "lb-distribution".into(), verdict: r.verdict, reason: r.reason, details }
    }
}

/// The balancer's report (`/admin/status`'s `lb` block), as results.json's `target_stats`
/// holds it for this target; the parts the terminal summary shows.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct LbStats {
    pub strategy: String,
    pub requests: u64,
    /// Requests retried on another backend after a refused connection.
    pub retries: u64,
    /// Requests answered 503 because no backend was in rotation.
    pub no_backend: u64,
    pub stale_served: u64,
    pub backends: Vec<LbBackend>,
}

/// One backend's counters.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct LbBackend {
    pub id: String,
    pub weight: u64,
    pub picks: u64,
    pub ok: u64,
    pub errors: u64,
    pub connect_failures: u64,
    pub drops: u64,
    pub readmits: u64,
    pub healthy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::http::NodeHttp;
    use faultline_checker::Verdict;
    use std::path::PathBuf;

    fn reference(options: &[(&str, &str)], bugs: &[&str]) -> ReferenceTarget {
        ReferenceTarget {
            role: "lb".into(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            program: PathBuf::from("/bin/faultline-node"),
            bugs: bugs.iter().map(|b| b.to_string()).collect(),
            admin_token: "t".into(),
            http: NodeHttp::new(std::time::Duration::from_millis(100), "t").unwrap(),
            seed: 1,
        }
    }

    fn nodes(n: u16) -> Vec<NodeSpec> {
        (1..=n)
            .map(|i| NodeSpec { id: format!("n{i}"), ip: std::net::Ipv4Addr::new(10, 0, 0, i as u8), port: 8080 })
            .collect()
    }

    #[test]
    fn the_first_node_balances_over_the_others_which_form_the_backend_cluster() {
        let t = LbTarget::new(
            reference(
                &[("strategy", "weighted"), ("weights", "5,1,1"), ("backend-role", "paxos")],
                &["naive-weighted", "stale-read"],
            ),
            4,
        )
        .unwrap();
        let all = nodes(4);
        let front = t.launch(&all[0], &all, Path::new("/d"), Path::new("/l"));
        let a = front.args.join(" ");
        assert!(a.contains("--role lb") && a.contains("--peers n1=10.0.0.1:8080"), "{a}");
        assert!(a.contains("--backends=n2=10.0.0.2:8080,n3=10.0.0.3:8080,n4=10.0.0.4:8080"), "{a}");
        assert!(
            a.contains("--strategy=weighted") && a.contains("--weights=5,1,1") && a.contains("--bug naive-weighted"),
            "{a}"
        );
        assert!(!a.contains("backend-role") && !a.contains("stale-read"), "{a}");
        let back = t.launch(&all[2], &all, Path::new("/d"), Path::new("/l")).args.join(" ");
        assert!(
            back.contains("--role paxos")
                && back.contains("--peers n2=10.0.0.2:8080,n3=10.0.0.3:8080,n4=10.0.0.4:8080"),
            "{back}"
        );
        assert!(
            back.contains("--bug stale-read") && !back.contains("naive-weighted") && !back.contains("--strategy"),
            "{back}"
        );
        assert_eq!(t.client_nodes(&all), vec!["n1".to_string()]);
        assert!(!t.has_leader(), "paxos backends have no leader");
        let st = |state: &str| Ok(NodeStatus { state: state.into(), ..NodeStatus::default() });
        let backs = [("n2".to_string(), st("follower")), ("n3".to_string(), st("follower"))];
        let with = |front: &str| {
            std::iter::once(("n1".to_string(), st(front))).chain(backs.iter().cloned()).collect::<Vec<_>>()
        };
        assert_eq!(t.ready(&with("lb")), Ok(()));
        assert!(t.ready(&with("lb-degraded")).unwrap_err().contains("not every backend"));
        assert_eq!(t.backend_role(), "paxos");
    }

    #[test]
    fn bad_options_are_usage_errors() {
        let e = |opts: &[(&str, &str)], bugs: &[&str], n: usize| {
            LbTarget::new(reference(opts, bugs), n).err().unwrap_or_default()
        };
        assert!(e(&[], &[], 1).contains("at least 2 nodes"));
        assert!(e(&[("strategy", "random")], &[], 3).contains("expected one of round-robin"));
        assert!(e(&[("strategy", "weighted"), ("weights", "5,1")], &[], 4).contains("expected 3 comma-separated"));
        assert!(e(&[("strategy", "weighted"), ("weights", "5,0,1")], &[], 4).contains("[1, 1000000]"));
        assert!(e(&[("weights", "5,1,1")], &[], 4).contains("only the weighted strategy"));
        assert!(e(&[], &["naive-weighted"], 4).contains("strategy=weighted"));
        assert!(e(&[("backend-role", "crdt")], &[], 4).contains("raft, paxos, quorum"));
        assert!(e(&[("stale-cache", "yes")], &[], 4).contains("true or false"));
        assert!(e(&[("fall", "0")], &[], 4).contains("fall=0"));
        assert!(LbTarget::new(reference(&[("stale-cache", "true")], &[]), 2).is_ok());
    }

    #[test]
    fn distribution_is_judged_for_weighted_and_round_robin_only() {
        let all = nodes(3);
        let t = LbTarget::new(reference(&[("strategy", "least-conn")], &[]), 3).unwrap();
        assert!(t.checkers(DataType::Register).is_empty());
        let t = LbTarget::new(reference(&[], &[]), 3).unwrap();
        let h = crate::checker::History { events: &[], nodes: &all, target_stats: None };
        let c = crate::checker::check_all(&t.checkers(DataType::Register), &h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "lb-distribution");
        assert_eq!(c[0].verdict, Verdict::Unknown, "no operations: nothing to judge");
        assert_eq!(c[0].details["backends"].as_array().unwrap().len(), 2);
    }
}
