//! The Redis target: Debian's redis-server as a primary (`n1` at setup) and replicas, with one
//! redis-sentinel beside each server, all in the node's network namespace.
//!
//! Each node is `/bin/sh -c SCRIPT`: the script starts the sentinel under
//! `setpriv --pdeathsig KILL` (so it dies with the node) and then `exec`s redis-server, whose pid
//! is the node's. Killing the node kills both (a machine crash); pausing it stops only
//! redis-server (the sentinel keeps judging it, as Jepsen's pauses of the server process do).
//! Both read config files written into the node's data directory at setup, which they rewrite
//! themselves (a sentinel's failover `CONFIG REWRITE`s a demoted primary's `replicaof`), so a
//! restarted node comes back in the role the cluster last gave it.
//!
//! Persistence is an append-only file with `appendfsync always`: a crash of one server loses
//! nothing it acknowledged, so any lost write comes from asynchronous replication and failover.
//! Replication is asynchronous unless `min-replicas` is set (which Redis documents as limiting,
//! not preventing, the window of loss).
//!
//! Clock skew is unavailable: libfaketime hangs Debian's redis-server (a jemalloc clash,
//! libfaketime issue #130), and the machine's single system clock must not be set.

use crate::client::{Client, DataType};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{NodeStatus, Target};
use crate::client::redis::RedisClient;
use crate::client::BoxFuture;
use crate::nemesis::Family;
use crate::runtime::{Launch, NodeSpec};

/// Why clock faults cannot reach Redis (reported, never pretended).
pub const CLOCK_UNAVAILABLE: &str = "clock skew is unavailable for redis: libfaketime hangs Debian's redis-server \
(jemalloc clash, libfaketime issue #130) and the machine's single system clock must not be set";

/// The name sentinels monitor.
pub const MASTER_NAME: &str = "faultline";
/// Sentinel port on every node's IP.
pub const SENTINEL_PORT: u16 = 26379;

/// Shape of the Redis deployment.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub server: PathBuf,
    pub sentinel: PathBuf,
    /// Sentinel's `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// Sentinel's `failover-timeout`.
    pub failover_timeout_ms: u64,
    /// `min-replicas-to-write` (0 = off: fully asynchronous replication).
    pub min_replicas: u32,
}

/// Redis with Sentinel.
pub struct RedisTarget {
    pub opts: RedisOptions,
    pub client: RedisClient,
    /// Other sentinels each sentinel must know before its node counts as ready (nodes - 1).
    pub peers_expected: u64,
}

/// The script each node runs: `$2` is the data directory (`$1` is `--data-dir`, which the local
/// runtime uses as the node's marker).
const NODE_SCRIPT: &str = r#"d="$2"
setpriv --pdeathsig KILL -- "$FL_SENTINEL" "$d/sentinel.conf" &
exec "$FL_SERVER" "$d/redis.conf""#;

/// redis.conf of `node`; the first node starts as primary.
pub fn server_conf(node: &NodeSpec, all: &[NodeSpec], dir: &Path, min_replicas: u32) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "bind {}\nport {}\nprotected-mode no\ndaemonize no", node.ip, node.port);
    let _ = writeln!(c, "dir {}", dir.display());
    // The config path in the process title keeps the data directory in /proc/PID/cmdline, the
    // marker by which `faultline cleanup` recognises the process.
    let _ = writeln!(c, "proc-title-template \"{{title}} {{listen-addr}} {{server-mode}} {{config-file}}\"");
    let _ = writeln!(c, "save \"\"\nappendonly yes\nappendfsync always");
    let _ = writeln!(c, "repl-diskless-sync yes\nrepl-diskless-sync-delay 0");
    if min_replicas > 0 {
        let _ = writeln!(c, "min-replicas-to-write {min_replicas}\nmin-replicas-max-lag 10");
    }
    if let Some(primary) = all.first().filter(|p| p.id != node.id) {
        let _ = writeln!(c, "replicaof {} {}", primary.ip, primary.port);
    }
    c
}

/// sentinel.conf of `node`: monitor the first node, quorum a majority of sentinels.
pub fn sentinel_conf(node: &NodeSpec, all: &[NodeSpec], dir: &Path, o: &RedisOptions) -> String {
    let primary = &all[0];
    let quorum = all.len() / 2 + 1;
    let mut c = String::new();
    let _ =
        writeln!(c, "bind {}\nport {SENTINEL_PORT}\nprotected-mode no\ndaemonize no\ndir {}", node.ip, dir.display());
    let _ = writeln!(c, "sentinel monitor {MASTER_NAME} {} {} {quorum}", primary.ip, primary.port);
    let _ = writeln!(c, "sentinel down-after-milliseconds {MASTER_NAME} {}", o.down_after_ms);
    let _ = writeln!(c, "sentinel failover-timeout {MASTER_NAME} {}", o.failover_timeout_ms);
    let _ = writeln!(c, "sentinel parallel-syncs {MASTER_NAME} 1");
    c
}

/// A launch that fails visibly (the node exits at once, its log says why).
pub fn failing_launch(why: &str, log: &Path) -> Launch {
    Launch {
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".into(), "echo \"$1\" >&2; exit 1".into(), "faultline".into(), why.into()],
        env: vec![],
        log: log.to_path_buf(),
    }
}

/// Status of a Redis node: primary → leader; a replica linked to its primary → follower; a
/// replica without link, or a node whose sentinel does not know `peers_expected` other sentinels
/// and as many replicas yet → not ready (an error). So a run starts only once a failover is
/// possible.
pub async fn redis_status(client: &RedisClient, addr: &str, peers_expected: u64) -> Result<NodeStatus, String> {
    let r = client.replication(addr).await?;
    if client.sentinel.is_some() {
        let (peers, replicas) = client.sentinel_view(addr).await?;
        if peers < peers_expected {
            return Err(format!("its sentinel knows {peers} of {peers_expected} other sentinels"));
        }
        if replicas < peers_expected {
            // Without known replicas a failover aborts (`-failover-abort-no-good-slave`).
            return Err(format!("its sentinel knows {replicas} of {peers_expected} replicas"));
        }
    }
    let state = match r.role.as_str() {
        "master" => "leader",
        "slave" if r.link_up => "follower",
        "slave" => return Err(format!("replica not linked to its primary {}", r.master_host.unwrap_or_default())),
        other => return Err(format!("unknown role {other:?}")),
    };
    Ok(NodeStatus { state: state.into(), ..NodeStatus::default() })
}

impl Target for RedisTarget {
    fn client(&self, data: DataType) -> Result<Arc<dyn Client>, String> {
        Ok(Arc::new(self.client.for_data(data)?))
    }
    fn name(&self) -> &str {
        "redis"
    }

    fn launch(&self, node: &NodeSpec, all: &[NodeSpec], data_dir: &Path, log: &Path) -> Launch {
        // Absolute: sentinel rewrites its config file and both chdir to `dir`.
        let dir = match std::fs::canonicalize(data_dir) {
            Ok(d) => d,
            Err(e) => return failing_launch(&format!("faultline: data dir {}: {e}", data_dir.display()), log),
        };
        let files = [
            ("redis.conf", server_conf(node, all, &dir, self.opts.min_replicas)),
            ("sentinel.conf", sentinel_conf(node, all, &dir, &self.opts)),
        ];
        for (name, text) in files {
            if let Err(e) = std::fs::write(dir.join(name), text) {
                return failing_launch(&format!("faultline: cannot write {}: {e}", dir.join(name).display()), log);
            }
        }
        Launch {
            program: PathBuf::from("/bin/sh"),
            args: vec![
                "-c".into(),
                NODE_SCRIPT.into(),
                "faultline-redis-node".into(),
                "--data-dir".into(),
                dir.display().to_string(),
            ],
            env: vec![
                ("FL_SERVER".into(), self.opts.server.display().to_string()),
                ("FL_SENTINEL".into(), self.opts.sentinel.display().to_string()),
            ],
            log: log.to_path_buf(),
        }
    }

    fn status<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<NodeStatus, String>> {
        Box::pin(async move {
            // Every sentinel must know the others before a failover can be voted.
            redis_status(&self.client, addr, self.peers_expected).await
        })
    }

    fn set_clock<'a>(&'a self, _addr: &'a str, _offset_ms: Option<i64>) -> BoxFuture<'a, Result<i64, String>> {
        Box::pin(async { Err(CLOCK_UNAVAILABLE.to_string()) })
    }

    fn fault_support(&self, family: Family) -> Result<(), String> {
        match family {
            Family::Clock => Err(CLOCK_UNAVAILABLE.into()),
            Family::Rebalance => Err(super::no_shards(self.name())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<NodeSpec> {
        (1..=3)
            .map(|k| NodeSpec { id: format!("n{k}"), ip: std::net::Ipv4Addr::new(10, 77, 5, 10 + k), port: 6379 })
            .collect()
    }

    #[test]
    fn first_node_is_primary_others_replicate_it() {
        let n = nodes();
        let p = server_conf(&n[0], &n, Path::new("/d/n1"), 0);
        assert!(!p.contains("replicaof"));
        assert!(p.contains("bind 10.77.5.11\nport 6379"));
        let r = server_conf(&n[2], &n, Path::new("/d/n3"), 1);
        assert!(r.contains("replicaof 10.77.5.11 6379"));
        assert!(r.contains("min-replicas-to-write 1"));
    }

    #[test]
    fn sentinels_monitor_the_primary_with_a_majority_quorum() {
        let n = nodes();
        let o = RedisOptions {
            server: "redis-server".into(),
            sentinel: "redis-sentinel".into(),
            down_after_ms: 2000,
            failover_timeout_ms: 6000,
            min_replicas: 0,
        };
        let s = sentinel_conf(&n[1], &n, Path::new("/d/n2"), &o);
        assert!(s.contains("sentinel monitor faultline 10.77.5.11 6379 2"), "{s}");
        assert!(s.contains("bind 10.77.5.12\nport 26379"));
    }
}
