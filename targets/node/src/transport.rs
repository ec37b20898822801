//! Peer transport: one bounded outbox and one sender task per peer, batching messages into
//! `POST /peer/msg` requests (a JSON array of envelopes: Raft's, or another role's
//! [`Addressed`] message type). Outgoing sockets are bound to the
//! node's own address so address-based firewall rules see the true source. A full outbox drops
//! messages and a failed or slow request drops its batch: Raft tolerates message loss, and no
//! partition may block the node.

use faultline_protocols::raft::{Envelope, NodeId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages queued per peer at most; beyond, new messages are dropped.
pub const OUTBOX_CAPACITY: usize = 2048;
/// Envelopes per request at most.
pub const BATCH_MAX: usize = 256;
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
pub const PEER_REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

/// A message that names its destination.
pub trait Addressed: serde::Serialize + Send + 'static {
    fn to(&self) -> &NodeId;
}

impl Addressed for Envelope {
    fn to(&self) -> &NodeId {
        &self.to
    }
}

impl Addressed for faultline_protocols::primary_backup::Envelope {
    fn to(&self) -> &NodeId {
        &self.to
    }
}

pub struct Transport<E: Addressed = Envelope> {
    outboxes: BTreeMap<NodeId, mpsc::Sender<E>>,
}

/// An HTTP client whose sockets are bound to `local` (the node's own address).
pub fn bound_client(
    local: Option<std::net::IpAddr>,
    connect: Duration,
    request: Duration,
) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true);
    if let Some(ip) = local {
        b = b.local_address(ip);
    }
    Ok(b.build()?)
}

impl<E: Addressed> Transport<E> {
    pub fn start(me: &NodeId, peers: &BTreeMap<NodeId, SocketAddr>, client: reqwest::Client) -> Transport<E> {
        let mut outboxes = BTreeMap::new();
        for (id, addr) in peers {
            if id == me {
                continue;
            }
            let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
            outboxes.insert(id.clone(), tx);
            tokio::spawn(sender(id.clone(), format!("http://{addr}/peer/msg"), client.clone(), rx));
        }
        Transport { outboxes }
    }

    /// Queues `env` for its destination; drops it if the outbox is full (counted in the log).
    pub fn send(&self, env: E) {
        if let Some(tx) = self.outboxes.get(env.to()) {
            if tx.try_send(env).is_err() {
                tracing::debug!("peer outbox full: message dropped");
            }
        }
    }
}

async fn sender<E: Addressed>(peer: NodeId, url: String, client: reqwest::Client, mut rx: mpsc::Receiver<E>) {
    let mut failures: u64 = 0;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        match client.post(&url).json(&batch).send().await {
            Ok(r) if r.status().is_success() => {
                if failures > 0 {
                    tracing::info!(%peer, failures, "peer reachable again");
                }
                failures = 0;
            }
            Ok(r) => {
                failures += 1;
                tracing::debug!(%peer, status = %r.status(), "peer refused a batch");
            }
            Err(e) => {
                failures += 1;
                // Log the first failure and then every 100th, not every one.
                #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; MSRV is 1.85
                let report = failures == 1 || failures % 100 == 0;
                if report {
                    tracing::info!(%peer, failures, error = %e, "peer unreachable; dropping messages");
                }
            }
        }
    }
}
