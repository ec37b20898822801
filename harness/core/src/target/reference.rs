//! The reference target: `faultline-node --role ROLE` (docs/node-api.md).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{NodeStatus, Target};
use crate::client::http::NodeHttp;
use crate::client::BoxFuture;
use crate::runtime::{Launch, NodeSpec};

/// Roles of faultline-node this harness knows how to drive.
pub const ROLES: &[&str] = &["raft", "paxos", "quorum", "crdt", "available", "multi-primary", "primary-backup", "lb", "router"];
/// Roles where every node coordinates requests (no leader to wait for or to target).
pub const LEADERLESS_ROLES: &[&str] = &["paxos", "quorum", "crdt", "available", "multi-primary"];
/// Roles that refuse compare-and-set (501 `unsupported`): their register workload has no cas.
pub const NO_CAS_ROLES: &[&str] = &["quorum", "crdt", "available", "multi-primary"];

/// The `--target-opt KEY=VALUE` options each role takes. Each becomes the node argument
/// `--KEY=VALUE` (docs/node-api.md lists them), so a role's row names node flags it has.
pub const ROLE_OPTIONS: &[(&str, &[&str])] = &[
    ("raft", &["read-mode", "election-ms", "heartbeat-ms", "snapshot-entries", "request-timeout-ms"]),
    ("paxos", &["request-timeout-ms"]),
    ("quorum", &["request-timeout-ms"]),
    ("crdt", &["gossip-ms", "request-timeout-ms"]),
    ("available", &["anti-entropy-ms", "request-timeout-ms"]),
    ("multi-primary", &["resolve", "anti-entropy-ms", "request-timeout-ms"]),
    ("primary-backup", &["sync", "read-from", "election-ms", "heartbeat-ms", "request-timeout-ms"]),
    // `backend-role` is the harness's (target/lb.rs); the others are the front node's flags.
    ("lb", &["strategy", "weights", "stale-cache", "backend-role", "health-interval-ms", "health-timeout-ms", "fall", "rise", "retries-max"]),
    // The router's own flags; its shard groups' raft nodes keep their defaults.
    ("router", &["sharding", "split-points", "request-timeout-ms"]),
];

/// Checks `--target-opt` strings against `role`'s row of [`ROLE_OPTIONS`]; returns the pairs
/// in the order given, or a usage error naming the option and the known keys.
pub fn parse_role_options(role: &str, opts: &[String]) -> Result<Vec<(String, String)>, String> {
    let known: &[&str] = ROLE_OPTIONS.iter().find(|(r, _)| *r == role).map(|(_, k)| *k).unwrap_or(&[]);
    let mut out: Vec<(String, String)> = Vec::with_capacity(opts.len());
    for o in opts {
        let Some((k, v)) = o.split_once('=') else {
            return Err(format!("--target-opt {o:?}: expected KEY=VALUE"));
        };
        if !known.contains(&k) {
            let expected = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            return Err(format!("--target-opt {k:?} is not an option of role {role}: expected {expected}"));
        }
        if v.is_empty() {
            return Err(format!("--target-opt {k}: empty value"));
        }
        if out.iter().any(|(seen, _)| seen == k) {
            return Err(format!("--target-opt {k}: given twice"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// `faultline-node` in one role.
pub struct ReferenceTarget {
    pub role: String,
    /// Role options (`--target-opt`, checked by [`parse_role_options`]), passed as `--KEY=VALUE`.
    pub options: Vec<(String, String)>,
    pub program: PathBuf,
    pub bugs: Vec<String>,
    pub admin_token: String,
    pub http: NodeHttp,
    /// Seeds each node's own randomness (election timeouts) from the run seed.
    pub seed: u64,
}

impl ReferenceTarget {
    /// `node` as a `faultline-node --role ROLE` among `peers` (its Raft group, or everyone),
    /// with `bugs`, `options` (as `--KEY=VALUE`) and `extra` arguments; the seed comes from the
    /// node's position in the whole cluster `all`.
    #[allow(clippy::too_many_arguments)] // each is a distinct part of the command line
    pub(crate) fn launch_as(
        &self,
        role: &str,
        node: &NodeSpec,
        peers: &[&NodeSpec],
        all: &[NodeSpec],
        bugs: &[String],
        options: &[(String, String)],
        extra: Vec<String>,
        data_dir: &Path,
        log: &Path,
    ) -> Launch {
        let peers: Vec<String> = peers.iter().map(|n| format!("{}={}", n.id, n.addr())).collect();
        let mut args = vec![
            "--role".to_string(),
            role.to_string(),
            "--id".into(),
            node.id.clone(),
            "--listen".into(),
            node.addr(),
            "--peers".into(),
            peers.join(","),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        let k = all.iter().position(|n| n.id == node.id).unwrap_or(0) as u64;
        args.push("--seed".into());
        args.push(crate::generator::derive_seed(self.seed, "node", k).to_string());
        for bug in bugs {
            args.push("--bug".into());
            args.push(bug.clone());
        }
        // `--KEY=VALUE` in one argument, so a value starting with `-` is not read as a flag.
        args.extend(options.iter().map(|(k, v)| format!("--{k}={v}")));
        args.extend(extra);
        Launch {
            program: self.program.clone(),
            args,
            // The token goes through the environment so it does not show in `ps`.
            env: vec![("FAULTLINE_ADMIN_TOKEN".into(), self.admin_token.clone())],
            log: log.to_path_buf(),
        }
    }
}

impl Target for ReferenceTarget {
    fn name(&self) -> &str {
        &self.role
    }

    fn launch(&self, node: &NodeSpec, all: &[NodeSpec], data_dir: &Path, log: &Path) -> Launch {
        if self.role == "router" {
            return super::router::launch(self, node, all, data_dir, log);
        }
        let everyone: Vec<&NodeSpec> = all.iter().collect();
        self.launch_as(&self.role, node, &everyone, all, &self.bugs, &self.options, vec![], data_dir, log)
    }

    fn client_nodes(&self, all: &[NodeSpec]) -> Vec<String> {
        if self.role == "router" {
            return super::router::client_nodes(self, all);
        }
        all.iter().map(|n| n.id.clone()).collect()
    }

    fn ready(&self, statuses: &[(String, Result<NodeStatus, String>)]) -> Result<(), String> {
        if self.role == "router" {
            return super::router::ready(self, statuses);
        }
        super::default_ready(self.has_leader(), statuses)
    }

    fn fault_support(&self, family: crate::nemesis::Family) -> Result<(), String> {
        match family {
            crate::nemesis::Family::Rebalance if self.role != "router" => Err(super::no_shards(&self.role)),
            // Under hash placement the owner is a fixed function of the key: nothing can move
            // (the router would answer 409). Said here, so the default schedule leaves it out.
            crate::nemesis::Family::Rebalance if !self.options.iter().any(|(k, v)| k == "sharding" && (v == "range" || v == "directory")) => {
                Err("a router moves keys only under range or directory sharding (--target-opt sharding=range|directory)".into())
            }
            _ => Ok(()),
        }
    }

    fn rebalance<'a>(&'a self, all: &'a [NodeSpec], pick: u64) -> BoxFuture<'a, Result<Value, String>> {
        if self.role == "router" {
            return super::router::rebalance(self, all, pick);
        }
        Box::pin(async move { Err(super::no_shards(&self.role)) })
    }

    fn rebalance_done<'a>(&'a self, all: &'a [NodeSpec], started: &'a Value) -> BoxFuture<'a, Result<(), String>> {
        if self.role == "router" {
            return super::router::rebalance_done(self, all, started);
        }
        Box::pin(async { Ok(()) })
    }

    fn final_stats<'a>(&'a self, all: &'a [NodeSpec]) -> BoxFuture<'a, Option<Value>> {
        if self.role == "router" {
            return super::router::final_stats(self, all);
        }
        Box::pin(async { None })
    }

    fn checkers(&self, _all: &[NodeSpec], _events: &[faultline_checker::history::Event], stats: Option<&Value>) -> Vec<crate::workload::CheckerResult> {
        if self.role == "router" {
            return vec![super::router::balance_checker(stats)];
        }
        Vec::new()
    }

    fn has_leader(&self) -> bool {
        !LEADERLESS_ROLES.contains(&self.role.as_str())
    }

    fn status<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<NodeStatus, String>> {
        Box::pin(async move {
            let v = self
                .http
                .status(addr)
                .await
                .map_err(|e| format!("{}: {}", e.error, e.message))?;
            Ok(NodeStatus {
                state: v
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
                term: v.get("term").and_then(Value::as_u64),
                leader: v.get("leader").and_then(Value::as_str).map(String::from),
                clock_offset_ms: v.pointer("/clock/offset_ms").and_then(Value::as_i64),
            })
        })
    }

    fn set_clock<'a>(
        &'a self,
        addr: &'a str,
        offset_ms: Option<i64>,
    ) -> BoxFuture<'a, Result<i64, String>> {
        Box::pin(async move {
            let body = match offset_ms {
                Some(ms) => json!({ "offset_ms": ms }),
                None => json!({ "reset": true }),
            };
            let v = self
                .http
                .clock(addr, &body)
                .await
                .map_err(|e| format!("{}: {}", e.error, e.message))?;
            v.get("offset_ms")
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("clock answer without offset_ms: {v}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_an_options_row() {
        for role in ROLES {
            assert!(ROLE_OPTIONS.iter().any(|(r, _)| r == role), "{role} has no ROLE_OPTIONS row");
        }
    }

    #[test]
    fn options_are_checked_and_kept_in_order() {
        let opts = vec!["read-mode=lease".to_string(), "election-ms=500".to_string()];
        assert_eq!(
            parse_role_options("raft", &opts).unwrap(),
            vec![("read-mode".to_string(), "lease".to_string()), ("election-ms".to_string(), "500".to_string())]
        );
        assert!(parse_role_options("raft", &["read-mode=a".into(), "read-mode=b".into()]).unwrap_err().contains("given twice"));
        assert!(parse_role_options("paxos", &["read-mode=lease".into()]).unwrap_err().contains("expected request-timeout-ms"));
        assert!(parse_role_options("nosuchrole", &["x=1".into()]).unwrap_err().contains("expected none"));
        assert_eq!(parse_role_options("raft", &[]).unwrap(), vec![]);
    }

    #[test]
    fn options_become_node_arguments() {
        let t = ReferenceTarget {
            role: "raft".into(),
            options: vec![("read-mode".into(), "lease".into()), ("election-ms".into(), "-1".into())],
            program: PathBuf::from("/bin/faultline-node"),
            bugs: vec![],
            admin_token: "t".into(),
            http: NodeHttp::new(std::time::Duration::from_millis(100), "t").unwrap(),
            seed: 1,
        };
        let n = NodeSpec { id: "n1".into(), ip: std::net::Ipv4Addr::LOCALHOST, port: 7001 };
        let l = t.launch(&n, std::slice::from_ref(&n), Path::new("/tmp/d"), Path::new("/tmp/l"));
        assert!(l.args.contains(&"--read-mode=lease".to_string()), "{:?}", l.args);
        // One argument each: a value starting with '-' cannot be read as a flag.
        assert!(l.args.contains(&"--election-ms=-1".to_string()), "{:?}", l.args);
    }
}
