//! `faultline-node`: the reference node binary. `--role` picks the system; this binary owns the
//! shared plumbing (command line, HTTP server, admin API and node clock, WAL, peer transport,
//! tick loop) and runs the pure protocol core of the chosen role (`faultline-protocols`).
//! The command line and the HTTP API are documented in docs/node-api.md.

mod api;
mod available_role;
mod clock;
mod crdt_role;
mod directory_role;
mod driver;
mod lb_role;
mod leaderless;
mod multi_primary_role;
mod paxos_role;
mod primary_backup_role;
mod quorum_role;
mod raft_role;
mod replicated;
mod router_role;
mod server;
mod transport;
mod txn_api;
mod wal;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use faultline_protocols::raft::{Bugs, Config, NodeId, ReadMode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Raft,
    /// CASPaxos per key; any node proposes (docs/targets.md).
    Paxos,
    /// ABD majority-quorum registers, CP; no cas (docs/targets.md).
    Quorum,
    /// State-based CRDTs (sets, counters, LWW registers) gossiped between replicas; any node
    /// answers at once (docs/targets.md).
    Crdt,
    /// AP: any node answers at once from its own replica (HLC last-writer-wins registers,
    /// grow-only sets); push and anti-entropy reconcile (docs/targets.md).
    Available,
    /// Master–master: every node accepts writes and replicates them; conflicts resolved by
    /// `--resolve lww|vclock` (docs/targets.md).
    MultiPrimary,
    /// Primary–backup (master–slave) replication with failover, no consensus (docs/targets.md).
    PrimaryBackup,
    /// A front proxy over backend nodes (--backends): round robin, least connections or smooth
    /// weighted round robin, active health checks, optional stale cache (docs/targets.md).
    Lb,
    /// The front of a sharded key/value service: forwards each key to its shard group's leader
    /// (docs/targets.md).
    Router,
    /// The `single-directory` bug's directory: a key/value map in this node's memory only.
    Directory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BugArg {
    /// Acknowledge before persisting: the WAL is buffered in memory and never fsynced.
    NoFsync,
    /// The leader answers reads locally without confirming leadership.
    StaleRead,
    /// Serve reads under a clock-based lease (same as `--read-mode lease`).
    Lease,
    /// Commit old-term entries by counting replicas (Raft paper, figure 8).
    CommitOldTerm,
    /// Transactions read at proposal time, write at apply unvalidated (read skew, lost update).
    TxnReadCommitted,
    /// Transactions read a snapshot at proposal time; first committer wins (write skew).
    TxnSnapshot,
    /// Transactions read writes of unanswered transactions, which may abort (G1a).
    TxnDirty,
    /// paxos: the proposer ignores the accepted values in promises and uses its own cache.
    PaxosIgnoreAccepted,
    /// quorum: the textbook version: write to all and count, read the most common value; no
    /// versions, no write-back.
    Naive,
    /// crdt: the counter merge adds per-replica counts instead of taking their maximum.
    BadMerge,
    /// available: no periodic anti-entropy; what a push missed is never reconciled.
    NoAntiEntropy,
    /// lb: the seed's weighted round robin, whose picks do not follow the weights.
    NaiveWeighted,
    /// primary-backup: `--sync true` stops waiting for a backup silent for a failover timeout
    /// (MySQL semi-sync's fallback to asynchronous replication).
    SyncFallback,
    /// router: hash keys by the sum of their characters.
    NaiveHash,
    /// router: keep the directory in the memory of one `--role directory` node (--directory-node).
    SingleDirectory,
    /// router: move keys between groups without freezing them, waiting or fencing.
    UnsafeMove,
}

impl BugArg {
    /// The role a bug belongs to. The harness's copy is `ROLE_SPECS` in
    /// harness/core/src/target/roles.rs (keep the two in step): this crate cannot use it, as
    /// depending on faultline-core would pull the harness's control plane into the static node.
    fn role(self) -> RoleArg {
        match self {
            BugArg::NoFsync
            | BugArg::StaleRead
            | BugArg::Lease
            | BugArg::CommitOldTerm
            | BugArg::TxnReadCommitted
            | BugArg::TxnSnapshot
            | BugArg::TxnDirty => RoleArg::Raft,
            BugArg::PaxosIgnoreAccepted => RoleArg::Paxos,
            BugArg::Naive => RoleArg::Quorum,
            BugArg::BadMerge => RoleArg::Crdt,
            BugArg::NoAntiEntropy => RoleArg::Available,
            BugArg::NaiveWeighted => RoleArg::Lb,
            BugArg::SyncFallback => RoleArg::PrimaryBackup,
            BugArg::NaiveHash | BugArg::SingleDirectory | BugArg::UnsafeMove => RoleArg::Router,
        }
    }
}

/// primary-backup: where reads are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReadFromArg {
    /// The primary (a backup forwards the read).
    Primary,
    /// The node asked, from its own copy (possibly stale).
    Replica,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReadModeArg {
    ReadIndex,
    Lease,
}

#[derive(Parser, Debug)]
#[command(name = "faultline-node", about = "faultline's reference node (docs/node-api.md)")]
struct Args {
    /// Which system this node runs.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// This node's id; must appear in --peers.
    #[arg(long)]
    id: String,
    /// Address to serve on (clients, admin, peers); outgoing sockets are bound to its IP.
    #[arg(long)]
    listen: SocketAddr,
    /// Every member, this node included: ID=IP:PORT,ID=IP:PORT,...
    #[arg(long, value_delimiter = ',', required = true)]
    peers: Vec<String>,
    /// Where the WAL and snapshots live.
    #[arg(long)]
    data_dir: PathBuf,
    /// Token required by the admin API (Authorization: Bearer TOKEN).
    #[arg(long, env = "FAULTLINE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Turn on a documented bug (repeatable); see docs/targets.md.
    #[arg(long = "bug", value_enum)]
    bugs: Vec<BugArg>,
    /// How the leader confirms reads.
    #[arg(long, value_enum, default_value = "read-index")]
    read_mode: ReadModeArg,
    /// Seed of the election-timeout RNG (default: derived from --id).
    #[arg(long)]
    seed: Option<u64>,
    /// Length of a protocol tick.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// Leader heartbeat interval.
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// Minimum election timeout; each timeout is drawn from [min, 2*min).
    #[arg(long, default_value_t = 300)]
    election_ms: u64,
    /// Entries applied between snapshots (log compaction).
    #[arg(long, default_value_t = 10_000)]
    snapshot_entries: u64,
    /// Longest a client request waits for an outcome before answering 504 timeout.
    #[arg(long, default_value_t = 1500)]
    request_timeout_ms: u64,
    /// crdt: interval between two gossip rounds (full state to every peer).
    #[arg(long, default_value_t = 100)]
    gossip_ms: u64,
    /// available, multi-primary: interval between two anti-entropy batches to every peer.
    #[arg(long, default_value_t = 100)]
    anti_entropy_ms: u64,
    /// multi-primary: conflict resolution, last writer wins by node clock or vector-clock siblings.
    #[arg(long, value_enum, default_value = "lww")]
    resolve: ResolveArg,
    /// primary-backup: acknowledge a write only once every backup has it (`--sync true`);
    /// default false (asynchronous replication).
    #[arg(long, action = clap::ArgAction::Set)]
    sync: Option<bool>,
    /// primary-backup: serve reads from the primary (default) or from any replica.
    #[arg(long, value_enum)]
    read_from: Option<ReadFromArg>,
    /// lb: the backends, in order: ID=IP:PORT,ID=IP:PORT,...
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
    /// lb: how a backend is chosen: round-robin, least-conn or weighted [default: round-robin].
    #[arg(long)]
    strategy: Option<String>,
    /// lb: one weight per backend, in --backends order (`5,1,1`) [default: all 1].
    #[arg(long, value_delimiter = ',')]
    weights: Vec<u32>,
    /// lb: answer reads from the last value seen when no backend can (not linearizable).
    #[arg(long)]
    stale_cache: Option<bool>,
    /// lb: interval between two health checks of every backend [default: 200].
    #[arg(long)]
    health_interval_ms: Option<u64>,
    /// lb: longest a health check waits for its answer [default: 150].
    #[arg(long)]
    health_timeout_ms: Option<u64>,
    /// lb: failed checks in a row that drop a backend [default: 2].
    #[arg(long)]
    fall: Option<u32>,
    /// lb: successful checks in a row that re-admit a dropped backend [default: 2].
    #[arg(long)]
    rise: Option<u32>,
    /// lb: retries on another backend of a request whose connection was refused [default: 2].
    #[arg(long)]
    retries_max: Option<u32>,
    /// router: how keys map to shard groups: range, hash, directory, consistent-hash.
    #[arg(long, default_value = "hash")]
    sharding: String,
    /// router: range split points, comma-separated and increasing (default: tuned to the
    /// register workload's `k<number>` keys).
    #[arg(long, value_delimiter = ',')]
    split_points: Option<Vec<String>>,
    /// router: one shard group's members, `n2+n3+n4` (repeatable; group 0 first).
    #[arg(long = "shard-group")]
    shard_groups: Vec<String>,
    /// router with --bug single-directory: the `--role directory` node holding the directory.
    #[arg(long)]
    directory_node: Option<String>,
}

/// The lb role's settings from the command line (every one refused for other roles).
fn lb_config(
    args: &Args,
    local_ip: Option<std::net::IpAddr>,
    request_timeout: Duration,
    bug_names: Vec<String>,
) -> anyhow::Result<Option<lb_role::LbConfig>> {
    let given: Vec<&str> = [
        ("--backends", !args.backends.is_empty()),
        ("--strategy", args.strategy.is_some()),
        ("--weights", !args.weights.is_empty()),
        ("--stale-cache", args.stale_cache.is_some()),
        ("--health-interval-ms", args.health_interval_ms.is_some()),
        ("--health-timeout-ms", args.health_timeout_ms.is_some()),
        ("--fall", args.fall.is_some()),
        ("--rise", args.rise.is_some()),
        ("--retries-max", args.retries_max.is_some()),
    ]
    .iter()
    .filter(|(_, g)| *g)
    .map(|(n, _)| *n)
    .collect();
    if !matches!(args.role, RoleArg::Lb) {
        if !given.is_empty() {
            bail!("{}: options of --role lb only", given.join(", "));
        }
        return Ok(None);
    }
    if args.backends.is_empty() {
        bail!("--backends: --role lb needs at least one backend ID=IP:PORT");
    }
    let backends = parse_peers(&args.backends)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace("--peers", "--backends")))?;
    // parse_peers sorts by id; keep the order as given (weights follow it).
    let order: Vec<String> =
        args.backends.iter().filter_map(|s| s.split_once('=').map(|(id, _)| id.to_string())).collect();
    if !args.weights.is_empty() && args.weights.len() != order.len() {
        bail!(
            "--weights: {} weights for {} backends; give one per backend, in --backends order",
            args.weights.len(),
            order.len()
        );
    }
    let strategy: faultline_protocols::lb::Strategy =
        args.strategy.as_deref().unwrap_or("round-robin").parse().map_err(|e| anyhow::anyhow!("--strategy: {e}"))?;
    let naive = args.bugs.contains(&BugArg::NaiveWeighted);
    if naive && strategy != faultline_protocols::lb::Strategy::Weighted {
        bail!("--bug naive-weighted: replaces the weighted strategy; it needs --strategy weighted");
    }
    let ms = |v: Option<u64>, default: u64, name: &str| -> anyhow::Result<Duration> {
        let v = v.unwrap_or(default);
        if !(1..=60_000).contains(&v) {
            bail!("{name}: {v} is outside [1, 60000]");
        }
        Ok(Duration::from_millis(v))
    };
    let health_interval = ms(args.health_interval_ms, 200, "--health-interval-ms")?;
    let health_timeout = ms(args.health_timeout_ms, 150, "--health-timeout-ms")?;
    let retries_max = args.retries_max.unwrap_or(2);
    if retries_max > 16 {
        bail!("--retries-max: {retries_max} is more than 16");
    }
    let list = order
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), backends[id], args.weights.get(i).copied().unwrap_or(1)))
        .collect();
    // No pooling: see lb_role's module docs. The connect timeout is short: a backend that does
    // not complete the handshake in time is skipped and the request retried elsewhere.
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(200).min(request_timeout))
        .pool_max_idle_per_host(0)
        .tcp_nodelay(true)
        .no_proxy();
    let client = match local_ip {
        Some(ip) => client.local_address(ip),
        None => client,
    }
    .build()?;
    Ok(Some(lb_role::LbConfig {
        id: args.id.clone(),
        listen: args.listen,
        admin_token: args.admin_token.clone(),
        backends: list,
        strategy,
        thresholds: faultline_protocols::lb::Thresholds { fall: args.fall.unwrap_or(2), rise: args.rise.unwrap_or(2) },
        bugs: faultline_protocols::lb::Bugs { naive_weighted: naive },
        bug_names,
        health_interval,
        health_timeout,
        request_timeout,
        retries_max,
        stale_cache: args.stale_cache.unwrap_or(false),
        client,
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ResolveArg {
    Lww,
    Vclock,
}

fn parse_peers(specs: &[String]) -> anyhow::Result<BTreeMap<NodeId, SocketAddr>> {
    let mut peers = BTreeMap::new();
    for spec in specs {
        let (id, addr) = spec.split_once('=').with_context(|| format!("--peers: `{spec}` is not ID=IP:PORT"))?;
        if id.is_empty() {
            bail!("--peers: `{spec}` has an empty id");
        }
        let addr: SocketAddr =
            addr.parse().with_context(|| format!("--peers: `{addr}` (in `{spec}`) is not IP:PORT"))?;
        if peers.insert(id.to_string(), addr).is_some() {
            bail!("--peers: id `{id}` listed twice");
        }
    }
    Ok(peers)
}

/// FNV-1a of the id: a stable per-node default seed.
fn seed_from_id(id: &str) -> u64 {
    id.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain (no backtrace, whatever RUST_BACKTRACE says).
            eprintln!("faultline-node: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // Fail-stop: a panic anywhere (an assertion on a Raft invariant) ends the process instead of
    // leaving a node that serves HTTP with a dead protocol task.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));
    let args = Args::parse();
    let peers = parse_peers(&args.peers)?;
    let Some(own) = peers.get(&args.id) else { bail!("--id {} does not appear in --peers", args.id) };
    if *own != args.listen {
        tracing::warn!(listen = %args.listen, peers_entry = %own, "--listen differs from this node's --peers entry");
    }
    if args.admin_token.is_empty() {
        bail!("--admin-token: must not be empty");
    }
    // Timers count whole ticks, so compare them in ticks.
    let (heartbeat_ticks, election_ticks) =
        (args.heartbeat_ms / args.tick_ms.max(1), args.election_ms / args.tick_ms.max(1));
    if args.tick_ms == 0
        || heartbeat_ticks == 0
        || election_ticks <= heartbeat_ticks
        || election_ticks > u32::MAX as u64 / 2
    {
        bail!(
            "timing: need 0 < --tick-ms <= --heartbeat-ms < --election-ms, at least one tick apart (got {} ms, {} ms, {} ms)",
            args.tick_ms,
            args.heartbeat_ms,
            args.election_ms
        );
    }
    let has = |b: BugArg| args.bugs.contains(&b);
    for b in &args.bugs {
        if std::mem::discriminant(&b.role()) != std::mem::discriminant(&args.role) {
            bail!(
                "--bug {}: applies to --role {:?}, not {:?}",
                b.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default(),
                b.role(),
                args.role
            );
        }
    }
    let read_mode =
        if args.read_mode == ReadModeArg::Lease || has(BugArg::Lease) { ReadMode::Lease } else { ReadMode::ReadIndex };
    let mut bug_names: Vec<String> =
        args.bugs.iter().map(|b| b.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()).collect();
    bug_names.sort();
    let local_ip = (!args.listen.ip().is_unspecified()).then(|| args.listen.ip());
    let request_timeout = Duration::from_millis(args.request_timeout_ms);
    if !matches!(args.role, RoleArg::PrimaryBackup) && (args.sync.is_some() || args.read_from.is_some()) {
        bail!("--sync and --read-from apply to --role primary-backup only");
    }
    if let Some(cfg) = lb_config(&args, local_ip, request_timeout, bug_names.clone())? {
        return lb_role::run(cfg).await;
    }
    let leaderless: Option<(&'static str, Arc<dyn leaderless::KvRole>)> = match args.role {
        RoleArg::Raft => None,
        RoleArg::Directory => {
            return directory_role::serve_directory(args.id.clone(), args.listen, args.admin_token.clone()).await
        }
        RoleArg::Router => {
            let strategy: faultline_protocols::sharding::Strategy =
                args.sharding.parse().map_err(|e| anyhow::anyhow!("--sharding: {e}"))?;
            let mut groups = router_role::parse_groups(&args.shard_groups, &peers)?;
            let hash = if has(BugArg::NaiveHash) {
                faultline_protocols::sharding::HashFn::NaiveSum
            } else {
                faultline_protocols::sharding::HashFn::Mixed
            };
            let sharding =
                faultline_protocols::sharding::Sharding::new(strategy, groups.len(), hash, args.split_points.clone())
                    .map_err(|e| anyhow::anyhow!("--sharding/--split-points: {e}"))?;
            let directory = match (&args.directory_node, has(BugArg::SingleDirectory)) {
                (Some(d), true) => {
                    let addr = *peers.get(d).with_context(|| format!("--directory-node {d} is not in --peers"))?;
                    router_role::DirectoryHome::Node(d.clone(), addr)
                }
                (None, true) => bail!("--bug single-directory needs --directory-node ID"),
                (Some(_), false) => bail!("--directory-node is only used with --bug single-directory"),
                (None, false) => router_role::DirectoryHome::Group0,
            };
            groups.iter_mut().for_each(|g| g.sort());
            return router_role::run(router_role::RouterConfig {
                id: args.id.clone(),
                listen: args.listen,
                data_dir: args.data_dir.clone(),
                admin_token: args.admin_token.clone(),
                sharding,
                groups,
                directory,
                request_timeout,
                local_ip,
                bug_names,
                unsafe_move: has(BugArg::UnsafeMove),
            })
            .await;
        }
        RoleArg::Lb => unreachable!("--role lb returned above"),
        RoleArg::Crdt => {
            if args.gossip_ms == 0 {
                bail!("--gossip-ms: must be at least 1");
            }
            let gossip = Duration::from_millis(args.gossip_ms);
            let peer_client =
                transport::bound_client(local_ip, transport::PEER_CONNECT_TIMEOUT, transport::PEER_REQUEST_TIMEOUT)?;
            return crdt_role::run(crdt_role::CrdtConfig {
                id: args.id.clone(),
                listen: args.listen,
                peers,
                data_dir: args.data_dir.clone(),
                admin_token: args.admin_token.clone(),
                bugs: faultline_protocols::crdt::Bugs { bad_merge: has(BugArg::BadMerge) },
                bug_names,
                gossip,
                request_timeout,
                peer_client,
            })
            .await;
        }
        RoleArg::Available | RoleArg::MultiPrimary => {
            if args.anti_entropy_ms == 0 {
                bail!("--anti-entropy-ms: must be at least 1");
            }
            let peer_client =
                transport::bound_client(local_ip, transport::PEER_CONNECT_TIMEOUT, transport::PEER_REQUEST_TIMEOUT)?;
            // A macro, not a closure: the config's entry type differs per role.
            macro_rules! cfg {
                ($role:expr) => {
                    replicated::Config {
                        role: $role,
                        id: args.id.clone(),
                        listen: args.listen,
                        peers: peers.clone(),
                        data_dir: args.data_dir.clone(),
                        admin_token: args.admin_token.clone(),
                        bug_names: bug_names.clone(),
                        anti_entropy: (!has(BugArg::NoAntiEntropy))
                            .then(|| Duration::from_millis(args.anti_entropy_ms)),
                        request_timeout,
                        peer_client: peer_client.clone(),
                        // Each role sets its own.
                        validate: std::sync::Arc::new(|_: &_, _: &_| Ok(())),
                    }
                };
            }
            return match args.role {
                RoleArg::Available => available_role::run(cfg!("available")).await,
                _ => {
                    let resolve = match args.resolve {
                        ResolveArg::Lww => faultline_protocols::multi_primary::Resolve::Lww,
                        ResolveArg::Vclock => faultline_protocols::multi_primary::Resolve::Vclock,
                    };
                    multi_primary_role::run(cfg!("multi-primary"), resolve).await
                }
            };
        }
        RoleArg::PrimaryBackup => {
            return primary_backup_role::run(primary_backup_role::PbConfig {
                id: args.id.clone(),
                listen: args.listen,
                peers,
                data_dir: args.data_dir.clone(),
                admin_token: args.admin_token.clone(),
                sync: args.sync.unwrap_or(false),
                read_from_replica: args.read_from == Some(ReadFromArg::Replica),
                bugs: faultline_protocols::primary_backup::Bugs { sync_fallback: has(BugArg::SyncFallback) },
                bug_names,
                tick: Duration::from_millis(args.tick_ms),
                heartbeat_ticks: heartbeat_ticks as u32,
                failover_ticks: election_ticks as u32,
                request_timeout,
                peer_client: transport::bound_client(
                    local_ip,
                    transport::PEER_CONNECT_TIMEOUT,
                    transport::PEER_REQUEST_TIMEOUT,
                )?,
                forward_client: transport::bound_client(local_ip, transport::PEER_CONNECT_TIMEOUT, request_timeout)?,
            })
            .await;
        }
        RoleArg::Paxos => {
            let client =
                transport::bound_client(local_ip, transport::PEER_CONNECT_TIMEOUT, leaderless::PEER_RPC_TIMEOUT)?;
            let bugs = faultline_protocols::paxos::Bugs { ignore_accepted: has(BugArg::PaxosIgnoreAccepted) };
            Some((
                "paxos",
                paxos_role::start(args.id.clone(), &peers, &args.data_dir, client, bugs)
                    .context("opening the data directory")?,
            ))
        }
        RoleArg::Quorum => {
            let client =
                transport::bound_client(local_ip, transport::PEER_CONNECT_TIMEOUT, leaderless::PEER_RPC_TIMEOUT)?;
            Some((
                "quorum",
                quorum_role::start(args.id.clone(), &peers, &args.data_dir, client, has(BugArg::Naive))
                    .context("opening the data directory")?,
            ))
        }
    };
    if let Some((role_name, role)) = leaderless {
        let state = Arc::new(server::AppState {
            id: args.id.clone(),
            role_name,
            admin_token: args.admin_token.clone(),
            clock: Arc::new(clock::NodeClock::default()),
            backend: server::Backend::Leaderless(role),
            forward_client: transport::bound_client(local_ip, transport::PEER_CONNECT_TIMEOUT, request_timeout)?,
            peers,
            request_timeout,
            read_mode: "none",
            bugs: bug_names,
            client_slots: tokio::sync::Semaphore::new(server::CLIENT_REQUESTS_MAX),
        });
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        tracing::info!(addr = %args.listen, role = role_name, "serving");
        axum::serve(listener, server::router(state)).await.context("HTTP server")?;
        return Ok(());
    }
    let mut cfg = Config::new(args.id.clone(), peers.keys().cloned().collect());
    cfg.tick_ms = args.tick_ms;
    cfg.heartbeat_ticks = heartbeat_ticks as u32;
    cfg.election_ticks = election_ticks as u32;
    cfg.seed = args.seed.unwrap_or_else(|| seed_from_id(&args.id));
    cfg.read_mode = read_mode;
    cfg.bugs = Bugs {
        stale_read: has(BugArg::StaleRead),
        commit_old_term: has(BugArg::CommitOldTerm),
        no_fsync: has(BugArg::NoFsync),
    };
    cfg.snapshot_entries = args.snapshot_entries.max(1);

    let (wal, restore, scan) =
        wal::Wal::open(&args.data_dir, has(BugArg::NoFsync)).context("opening the data directory")?;
    tracing::info!(
        id = %args.id,
        listen = %args.listen,
        term = restore.hard_state.term,
        entries = restore.entries.len(),
        snapshot_index = restore.snapshot.as_ref().map(|s| s.index).unwrap_or(0),
        wal_records = scan.records,
        bugs = ?args.bugs,
        read_mode = ?read_mode,
        "starting raft node"
    );

    let peer_client =
        transport::bound_client(local_ip, transport::PEER_CONNECT_TIMEOUT, transport::PEER_REQUEST_TIMEOUT)?;
    let forward_client = transport::bound_client(local_ip, transport::PEER_CONNECT_TIMEOUT, request_timeout)?;
    let transport = transport::Transport::start(&args.id, &peers, peer_client);
    let clock = Arc::new(clock::NodeClock::default());
    let txn_bugs = raft_role::TxnBugs {
        read_committed: has(BugArg::TxnReadCommitted),
        snapshot: has(BugArg::TxnSnapshot),
        dirty: has(BugArg::TxnDirty),
    };
    let handle =
        raft_role::spawn(cfg, wal, restore, transport, clock.clone(), Duration::from_millis(args.tick_ms), txn_bugs);

    let state = Arc::new(server::AppState {
        id: args.id.clone(),
        role_name: "raft",
        admin_token: args.admin_token.clone(),
        clock,
        backend: server::Backend::Raft(handle),
        peers,
        forward_client,
        request_timeout,
        read_mode: if read_mode == ReadMode::Lease { "lease" } else { "read-index" },
        bugs: bug_names,
        client_slots: tokio::sync::Semaphore::new(server::CLIENT_REQUESTS_MAX),
    });
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %args.listen, "serving");
    axum::serve(listener, server::router(state)).await.context("HTTP server")?;
    Ok(())
}
