//! The reference target: `faultline-node --role ROLE` (docs/node-api.md).

use crate::client::http::ReferenceClient;
use crate::client::{Client, DataType};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{NodeStatus, Target};
use crate::client::http::NodeHttp;
use crate::client::BoxFuture;
use crate::runtime::{Launch, NodeSpec};

/// `faultline-node` in one role.
pub struct ReferenceTarget {
    pub role: String,
    /// Role options (`--target-opt`, checked by [`super::roles::check_run`]), passed as `--KEY=VALUE`.
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
    fn client(&self, data: DataType) -> Result<Arc<dyn Client>, String> {
        Ok(Arc::new(ReferenceClient { http: self.http.clone(), data }))
    }
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

    fn checkers(&self) -> Vec<Box<dyn crate::checker::Checker>> {
        if self.role == "router" {
            return vec![crate::checker::checker("shard-balance", |h| super::router::balance_checker(h.target_stats))];
        }
        Vec::new()
    }

    fn has_leader(&self) -> bool {
        super::roles::role(&self.role).is_none_or(|r| !r.leaderless)
    }

    fn status<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<NodeStatus, String>> {
        Box::pin(async move {
            let v = self.http.status(addr).await.map_err(|e| format!("{}: {}", e.error, e.message))?;
            Ok(NodeStatus {
                state: v.get("state").and_then(Value::as_str).unwrap_or("unknown").to_string(),
                term: v.get("term").and_then(Value::as_u64),
                leader: v.get("leader").and_then(Value::as_str).map(String::from),
                clock_offset_ms: v.pointer("/clock/offset_ms").and_then(Value::as_i64),
            })
        })
    }

    fn set_clock<'a>(&'a self, addr: &'a str, offset_ms: Option<i64>) -> BoxFuture<'a, Result<i64, String>> {
        Box::pin(async move {
            let body = match offset_ms {
                Some(ms) => json!({ "offset_ms": ms }),
                None => json!({ "reset": true }),
            };
            let v = self.http.clock(addr, &body).await.map_err(|e| format!("{}: {}", e.error, e.message))?;
            v.get("offset_ms").and_then(Value::as_i64).ok_or_else(|| format!("clock answer without offset_ms: {v}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
