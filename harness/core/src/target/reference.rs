//! The reference target: `faultline-node --role ROLE` (docs/node-api.md).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{NodeStatus, Target};
use crate::client::http::NodeHttp;
use crate::client::BoxFuture;
use crate::runtime::{Launch, NodeSpec};

/// Roles of faultline-node this harness knows how to drive.
pub const ROLES: &[&str] = &["raft", "paxos", "quorum", "crdt"];
/// Roles where every node coordinates requests (no leader to wait for or to target).
pub const LEADERLESS_ROLES: &[&str] = &["paxos", "quorum", "crdt"];
/// Roles that refuse compare-and-set (501 `unsupported`): their register workload has no cas.
pub const NO_CAS_ROLES: &[&str] = &["quorum", "crdt"];

/// `faultline-node` in one role.
pub struct ReferenceTarget {
    pub role: String,
    pub program: PathBuf,
    pub bugs: Vec<String>,
    pub admin_token: String,
    pub http: NodeHttp,
    /// Seeds each node's own randomness (election timeouts) from the run seed.
    pub seed: u64,
}

impl Target for ReferenceTarget {
    fn name(&self) -> &str {
        &self.role
    }

    fn launch(&self, node: &NodeSpec, all: &[NodeSpec], data_dir: &Path, log: &Path) -> Launch {
        let peers: Vec<String> = all
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr()))
            .collect();
        let mut args = vec![
            "--role".to_string(),
            self.role.clone(),
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
        for bug in &self.bugs {
            args.push("--bug".into());
            args.push(bug.clone());
        }
        Launch {
            program: self.program.clone(),
            args,
            // The token goes through the environment so it does not show in `ps`.
            env: vec![("FAULTLINE_ADMIN_TOKEN".into(), self.admin_token.clone())],
            log: log.to_path_buf(),
        }
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
