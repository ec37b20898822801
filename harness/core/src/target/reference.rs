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

impl ReferenceTarget {
    /// Primary-backup with `sync=true` and reads from the primary promises what a linearizable
    /// set does: an add is acknowledged only once every node holds it, and reads go to the
    /// primary, so a read invoked after an add was acknowledged must contain the element.
    /// (Eventually consistent sets, `read-from=replica` and the asynchronous mode promise only
    /// convergence: set-full reports their stale reads without judging them.)
    fn promises_fresh_sets(&self) -> bool {
        let opt = |k: &str| self.options.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        self.role == "primary-backup" && opt("sync") == Some("true") && opt("read-from") != Some("replica")
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

    fn lone_nodes(&self, nodes: usize) -> Vec<usize> {
        let single_directory = self.role == "router" && self.bugs.iter().any(|b| b == "single-directory");
        super::router::lone_nodes(single_directory, nodes)
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

    fn checkers(&self, data: DataType) -> Vec<Box<dyn crate::checker::Checker>> {
        if self.role == "router" {
            return vec![
                crate::checker::checker("shard-balance", |h| super::router::balance_checker(h.target_stats)),
                crate::checker::checker("availability-promise", |h| {
                    super::promise::check(h.events, &super::router::availability_promise(h.nodes))
                }),
            ];
        }
        if data == DataType::Set && self.promises_fresh_sets() {
            return vec![crate::checker::checker("set-fresh", |h| fresh_set_checker(h.events))];
        }
        Vec::new()
    }

    fn has_leader(&self) -> bool {
        super::roles::role(&self.role).is_none_or(|r| !r.leaderless)
    }

    fn declared_faults(&self) -> Vec<(crate::nemesis::Family, &'static str)> {
        super::roles::role(&self.role).map_or_else(Vec::new, |r| r.faults.to_vec())
    }

    fn status<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<NodeStatus, String>> {
        Box::pin(async move {
            let v = self.http.status(addr).await.map_err(|e| format!("{}: {}", e.error, e.message))?;
            Ok(node_status_of(&v))
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

/// A reference node's `GET /admin/status` answer as a [`NodeStatus`] (fields it lacks are
/// `None`; a missing state is `unknown`). Shared with TOML targets that speak the same API.
pub fn node_status_of(v: &Value) -> NodeStatus {
    NodeStatus {
        state: v.get("state").and_then(Value::as_str).unwrap_or("unknown").to_string(),
        term: v.get("term").and_then(Value::as_u64),
        leader: v.get("leader").and_then(Value::as_str).map(String::from),
        clock_offset_ms: v.pointer("/clock/offset_ms").and_then(Value::as_i64),
        commit_index: v.get("commit_index").and_then(Value::as_u64),
        last_index: v.get("last_index").and_then(Value::as_u64),
    }
}

/// `set-fresh`: every read invoked after an add was acknowledged contains the element (the
/// `stale` elements of set-full, judged). Invalid names the keys and elements read stale.
pub fn fresh_set_checker(events: &[faultline_checker::history::Event]) -> crate::workload::CheckerResult {
    use faultline_checker::Verdict;
    let report = match faultline_checker::set_full::try_check_set(events) {
        Ok(r) => r,
        Err(e) => return crate::workload::CheckerResult::new("set-fresh", Verdict::Unknown, Some(e.to_string())),
    };
    let stale: Vec<(String, Vec<i64>)> = report
        .keys
        .iter()
        .filter(|k| k.stale > 0)
        .map(|k| (k.key.clone().unwrap_or_default(), k.stale_examples.clone()))
        .collect();
    let details = json!({"stale": report.stale, "acknowledged": report.acknowledged, "keys": stale});
    let (verdict, reason) = if report.stale > 0 {
        let shown: Vec<String> = stale.iter().take(5).map(|(k, es)| format!("key {k}: {es:?}")).collect();
        let why = format!(
            "{} acknowledged elements were missing from a read invoked after their add was acknowledged ({}); primary-backup with sync=true promises reads that see every acknowledged add",
            report.stale,
            shown.join("; ")
        );
        (Verdict::Invalid, Some(why))
    } else if report.acknowledged == 0 {
        (Verdict::Unknown, Some("no add was acknowledged: nothing to judge".to_string()))
    } else {
        (Verdict::Valid, None)
    };
    crate::workload::CheckerResult { name: "set-fresh".into(), verdict, reason, details }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::{Event, EventType, Process};

    #[test]
    fn a_status_answer_gives_the_log_indexes_where_the_node_has_them() {
        let raft = json!({"state": "leader", "term": 4, "leader": "n2", "commit_index": 17, "last_index": 19,
                          "clock": {"offset_ms": -5}});
        let s = node_status_of(&raft);
        assert_eq!((s.state.as_str(), s.term, s.leader.as_deref()), ("leader", Some(4), Some("n2")));
        assert_eq!((s.commit_index, s.last_index, s.clock_offset_ms), (Some(17), Some(19), Some(-5)));
        let leaderless = node_status_of(&json!({"state": "replica", "term": null}));
        assert_eq!(leaderless, NodeStatus { state: "replica".into(), ..NodeStatus::default() });
        assert_eq!(node_status_of(&json!({})).state, "unknown");
    }
    use faultline_checker::Verdict;

    fn e(index: u64, ms: u64, kind: EventType, p: u64, f: &str, value: Value, node: &str) -> Event {
        let process = if f == "heal" { Process::Nemesis } else { Process::Client(p) };
        let key = (f != "heal").then(|| "s".to_string());
        Event {
            index,
            time: ms * 1_000_000,
            kind,
            process,
            f: f.into(),
            key,
            value,
            error: None,
            node: Some(node.into()),
        }
    }

    /// add 7 acknowledged at 10 ms; a read invoked at 20 ms on n2 lacks it: stale. The final
    /// reads after the heal have it on both nodes (so set-full itself is valid).
    fn history(stale: bool) -> Vec<Event> {
        use EventType::*;
        let early = if stale { json!([]) } else { json!([7]) };
        vec![
            e(0, 0, Invoke, 0, "add", json!(7), "n1"),
            e(1, 10, Ok, 0, "add", json!(7), "n1"),
            e(2, 20, Invoke, 1, "read", Value::Null, "n2"),
            e(3, 30, Ok, 1, "read", early, "n2"),
            e(4, 60, Info, 0, "heal", json!({}), "n1"),
            e(5, 70, Invoke, 5, "read", Value::Null, "n1"),
            e(6, 80, Ok, 5, "read", json!([7]), "n1"),
            e(7, 90, Invoke, 6, "read", Value::Null, "n2"),
            e(8, 100, Ok, 6, "read", json!([7]), "n2"),
        ]
    }

    fn target(role: &str, options: &[(&str, &str)]) -> ReferenceTarget {
        ReferenceTarget {
            role: role.into(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            program: PathBuf::from("faultline-node"),
            bugs: vec![],
            admin_token: "t".into(),
            http: NodeHttp::new(std::time::Duration::from_secs(1), "t").unwrap(),
            seed: 1,
        }
    }

    #[test]
    fn a_stale_read_of_an_acknowledged_add_is_invalid_where_the_role_promises_fresh_reads() {
        let bad = fresh_set_checker(&history(true));
        assert_eq!(bad.verdict, Verdict::Invalid, "{bad:?}");
        assert!(bad.reason.as_deref().unwrap().contains("key s: [7]"), "{bad:?}");
        assert_eq!(fresh_set_checker(&history(false)).verdict, Verdict::Valid);
        let no_add: Vec<Event> = history(true).into_iter().filter(|e| e.f != "add").collect();
        assert_eq!(fresh_set_checker(&no_add).verdict, Verdict::Unknown, "no add: nothing to judge");
        // Only primary-backup with sync=true and reads from the primary promises it, and only
        // a set workload is judged by it.
        let names =
            |t: &ReferenceTarget, d: DataType| t.checkers(d).iter().map(|c| c.name().to_string()).collect::<Vec<_>>();
        assert_eq!(names(&target("primary-backup", &[("sync", "true")]), DataType::Set), ["set-fresh"]);
        assert!(names(&target("primary-backup", &[("sync", "true")]), DataType::Register).is_empty());
        assert!(names(&target("primary-backup", &[]), DataType::Set).is_empty());
        assert!(
            names(&target("primary-backup", &[("sync", "true"), ("read-from", "replica")]), DataType::Set).is_empty()
        );
        assert!(names(&target("crdt", &[("sync", "true")]), DataType::Set).is_empty());
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
