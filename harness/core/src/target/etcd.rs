//! The etcd target: Debian's etcd-server (3.4) as one member per node, each in its own network
//! namespace of the local runtime, clients through the v3 JSON gateway (client/etcd.rs).
//!
//! Members listen for clients on the node's address and for peers on the same IP at
//! [`peer_port`]. A killed member restarts with the same arguments and data directory; etcd then
//! ignores the `--initial-cluster*` flags and rejoins from its WAL. etcd dials its peers without
//! binding a source address (from 127.0.0.1 on loopback), so address rules on loopback cannot
//! cut it: partitions need one namespace per node (`--local-net netns`).
//!
//! Clock skew is unavailable: etcd is a Go program and reads the wall clock through the vDSO,
//! which libfaketime cannot intercept, and the machine's one system clock must not be set.

use crate::client::{Client, DataType};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{NodeStatus, Target};
use crate::client::etcd::EtcdClient;
use crate::client::BoxFuture;
use crate::nemesis::Family;
use crate::runtime::{Launch, NodeSpec};

/// Why clock faults cannot reach etcd (reported, never pretended).
pub const CLOCK_UNAVAILABLE: &str =
    "clock skew is unavailable for etcd: it is a Go program that reads the wall clock through \
the vDSO, which libfaketime cannot intercept, and the machine's single system clock must not be set";

/// The peer port of a member whose client port is `client_port`.
pub fn peer_port(client_port: u16) -> u16 {
    if client_port == 2380 {
        2381
    } else {
        2380
    }
}

/// `etcd` members.
pub struct EtcdTarget {
    pub program: PathBuf,
    pub client: EtcdClient,
    /// `--initial-cluster-token` (distinct per run so two clusters never merge).
    pub cluster_token: String,
}

/// The arguments of one member.
pub fn member_args(node: &NodeSpec, all: &[NodeSpec], data_dir: &Path, token: &str) -> Vec<String> {
    let peer = |n: &NodeSpec| format!("http://{}:{}", n.ip, peer_port(n.port));
    let cluster: Vec<String> = all.iter().map(|n| format!("{}={}", n.id, peer(n))).collect();
    let client = format!("http://{}", node.addr());
    [
        "--name",
        &node.id,
        "--data-dir",
        &data_dir.display().to_string(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer(node),
        "--initial-advertise-peer-urls",
        &peer(node),
        "--initial-cluster",
        &cluster.join(","),
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        token,
        "--logger",
        "zap",
        "--log-outputs",
        "stderr",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A member's status as a [`NodeStatus`].
pub async fn etcd_status(client: &EtcdClient, addr: &str) -> Result<NodeStatus, String> {
    let s = client.status(addr).await?;
    let leader = s.leader_id != "0" && s.leader_id == s.member_id;
    Ok(NodeStatus {
        state: if leader {
            "leader".into()
        } else if s.leader_id == "0" {
            "candidate".into()
        } else {
            "follower".into()
        },
        term: s.raft_term,
        leader: None,
        clock_offset_ms: None,
        ..NodeStatus::default()
    })
}

impl Target for EtcdTarget {
    fn client(&self, data: DataType) -> Result<Arc<dyn Client>, String> {
        Ok(Arc::new(self.client.for_data(data)?))
    }
    fn name(&self) -> &str {
        "etcd"
    }

    fn launch(&self, node: &NodeSpec, all: &[NodeSpec], data_dir: &Path, log: &Path) -> Launch {
        Launch {
            program: self.program.clone(),
            args: member_args(node, all, data_dir, &self.cluster_token),
            env: vec![],
            log: log.to_path_buf(),
        }
    }

    fn status<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<NodeStatus, String>> {
        Box::pin(etcd_status(&self.client, addr))
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

    fn binds_source_address(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_name_every_peer_and_listen_on_their_own_address() {
        let nodes: Vec<NodeSpec> = (1..=3)
            .map(|k| NodeSpec { id: format!("n{k}"), ip: std::net::Ipv4Addr::new(10, 77, 5, 10 + k), port: 2379 })
            .collect();
        let a = member_args(&nodes[1], &nodes, Path::new("/d/n2"), "tok");
        let get = |flag: &str| a.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone()).unwrap();
        assert_eq!(get("--name"), "n2");
        assert_eq!(get("--listen-client-urls"), "http://10.77.5.12:2379");
        assert_eq!(get("--listen-peer-urls"), "http://10.77.5.12:2380");
        assert_eq!(
            get("--initial-cluster"),
            "n1=http://10.77.5.11:2380,n2=http://10.77.5.12:2380,n3=http://10.77.5.13:2380"
        );
        assert_eq!(peer_port(2380), 2381);
    }
}
