//! `faultline run`: start a cluster, drive clients, inject faults, record and check the history.
//!
//! Parses and validates the flags, builds the runtime, target and workload, installs the
//! SIGINT/SIGTERM handler (which asks the runner to stop, heal, tear down and analyse), shows a
//! live progress line, and prints the final table, the run folder and the command that
//! reproduces the run. The exit code follows the verdict (0 valid, 1 invalid, 2 unknown, 255 a
//! harness failure).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use faultline_checker::hierarchy::{Consistency, Model};
use faultline_core::client::http::NodeHttp;
use faultline_core::nemesis::{parse_choices, replay, Choice, Schedule};
use faultline_core::progress::Progress;
use faultline_core::runner::{self, RunConfig, RunInputs};
use faultline_core::runtime::local::{LocalOptions, LocalRuntime, MechanismChoice};
use faultline_core::runtime::state::state_dir;
use faultline_core::runtime::Runtime;
use faultline_core::store::RunDir;
use faultline_core::target::lb::LbStats;
use faultline_core::target::reference::ReferenceTarget;
use faultline_core::target::roles::{self, RoleSpec};
use faultline_core::target::{external, lb, Target};
use faultline_core::workload::Workload;
use faultline_results::{Counts, Results};
use serde_json::{json, Value};

use crate::EXIT_ERROR;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The system under test: a role of faultline-node, `etcd`, `redis`, or a target file
    /// `path/to/target.toml` (docs/targets-external.md).
    #[arg(long, default_value = "raft")]
    pub target: String,
    /// An option of an external target (repeatable): `reads=serializable` (etcd);
    /// `down-after-ms=N`, `failover-timeout-ms=N`, `min-replicas=N` (redis).
    #[arg(long = "target-opt")]
    pub target_opts: Vec<String>,
    /// What the clients do and how the history is judged.
    #[arg(long, default_value = "register")]
    pub workload: String,
    /// Faults: `all`, `none`, a named schedule (`network` = partition,loss,latency; `process` =
    /// kill,pause; `leader` = isolate, kill or pause the leader), or a comma list of
    /// partition,kill,pause,clock,loss,latency, each optionally narrowed to kinds:
    /// `partition:isolate-leader+halves,kill:leader`.
    #[arg(long, default_value = "all")]
    pub nemesis: String,
    /// Cluster size.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Logical client processes.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Target rate of operations per second (all processes together).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Length of the main phase, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub time_limit: f64,
    /// Seconds a fault lasts; between two faults, the same (explicit lists) or half of it
    /// (`all`, the default coverage schedule).
    #[arg(long, default_value_t = 3.0)]
    pub nemesis_interval: f64,
    /// Replay an explicit fault schedule: a run's test.json or results.json, a run folder, or
    /// a file holding just a schedule. Its seed is the run's unless --seed is given.
    #[arg(long)]
    pub schedule: Option<PathBuf>,
    /// Seed of every random choice (ops, faults, node timers); random when not given.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where nodes run: `local` (child processes, one network namespace each), `docker`
    /// (containers of a per-run docker-compose project; docs/docker.md) or `ssh` (one node per
    /// host of --nodes-file; docs/multi-host.md).
    #[arg(long, default_value = "local")]
    pub runtime: String,
    /// Turn on a planted bug in the nodes (repeatable), e.g. `stale-read`.
    #[arg(long = "bug")]
    pub bugs: Vec<String>,
    /// The run store (runs go to STORE/<test-name>/<timestamp>/).
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Test name (default: <target>-<workload>).
    #[arg(long)]
    pub name: Option<String>,
    /// Quiet period after healing, before the final reads, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub recovery: f64,
    /// Client timeout per operation, in ms (a timed-out write or cas is recorded as info)
    /// [default: 2000; 5000 for operations invoked during a leader-churn window]. A reference
    /// node's request timeout follows the longest, 500 ms shorter, unless `--target-opt
    /// request-timeout-ms` says.
    #[arg(long)]
    pub op_timeout_ms: Option<u64>,
    /// Longest wait for the cluster to answer and elect a leader, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub setup_timeout: f64,
    /// Network mechanism of the local runtime: auto, netns, loopback, none.
    #[arg(long, default_value = "auto")]
    pub local_net: String,
    /// The faultline-node binary (default: $FAULTLINE_NODE_BIN, else next to this program).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Port every node listens on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// No progress line (the final table is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Register workload: keys in use at once [default: 3; 16 for --target router].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub active_keys: Option<u64>,
    /// Register workload: operations each worker sends to one key before moving on to fresh
    /// keys [default: 30]. A key gets up to concurrency × this many operations.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops_per_key: Option<u64>,
    #[command(flatten)]
    pub ssh: crate::ssh_args::SshArgs,
}

/// The register workload's shape from `base` and the --active-keys/--ops-per-key flags.
fn register_shape(
    args: &RunArgs,
    base: faultline_workloads::register::Register,
) -> faultline_workloads::register::Register {
    faultline_workloads::register::Register {
        active_keys: args.active_keys.unwrap_or(base.active_keys),
        ops_per_key: args.ops_per_key.unwrap_or(base.ops_per_key),
        ..base
    }
}

/// Validated settings.
pub(crate) struct Plan {
    nemesis: Vec<Choice>,
    /// The explicit schedule of `--schedule` (checked against the run's nodes and time limit).
    schedule: Option<Schedule>,
    seed: u64,
    mechanism: MechanismChoice,
    node_bin: PathBuf,
    name: String,
    /// A reference role's `--target-opt` pairs (external targets check theirs when built).
    role_options: Vec<(String, String)>,
    /// The clients' timeout per operation, and the shorter one outside leader-churn windows
    /// ([`op_timeouts_ms`]).
    op_timeout_ms: u64,
    op_timeout_outside_churn_ms: Option<u64>,
}

/// The client timeout when `--op-timeout-ms` is not given.
pub const OP_TIMEOUT_MS_DEFAULT: u64 = 2000;

/// The client timeout of operations invoked during a leader-churn window when `--op-timeout-ms`
/// is not given. A write there may be answered only after three elections (the Raft paper's
/// figure 8: 1.8–3.6 s measured on raft `commit-old-term`, whose acknowledged-then-lost writes
/// are what shows the bug), longer than the usual 2 s.
pub const OP_TIMEOUT_MS_CHURN: u64 = 5000;

/// How much shorter than the client's timeout a reference node's request timeout is, so the
/// node answers (a definite outcome where it has one) before the client gives up.
pub const NODE_TIMEOUT_MARGIN_MS: u64 = 500;

/// The clients' timeout and, when shorter outside leader-churn windows, that one:
/// `--op-timeout-ms` for every operation; else, when the schedule holds leader churn (named,
/// replayed, or declared by the role for the default schedule), [`OP_TIMEOUT_MS_CHURN`] during
/// its windows and [`OP_TIMEOUT_MS_DEFAULT`] outside; else [`OP_TIMEOUT_MS_DEFAULT`].
fn op_timeouts_ms(
    a: &RunArgs,
    spec: Option<&RoleSpec>,
    nemesis: &[Choice],
    schedule: Option<&Schedule>,
) -> (u64, Option<u64>) {
    use faultline_core::nemesis::{churn, coverage, Family};
    if let Some(ms) = a.op_timeout_ms {
        return (ms, None);
    }
    let churns = match schedule {
        Some(s) => s.faults.iter().any(|f| f.spec.is_leader_churn()),
        // Whether the declared churn fits the run does not depend on the seed (the first wave's
        // length does not); a role that declares it takes no shard moves (raft).
        None if coverage::is_default(nemesis) => spec.is_some_and(|r| {
            let supported = |f: Family| f != Family::Rebalance;
            let s = coverage::generate_declaring(
                0,
                a.nodes,
                !r.leaderless,
                &supported,
                r.faults,
                a.time_limit,
                a.nemesis_interval,
            );
            r.faults.iter().any(|(f, k)| churn::is(*f, k)) && s.faults.iter().any(|f| f.spec.is_leader_churn())
        }),
        None => nemesis.iter().any(|c| c.kinds.iter().any(|k| churn::is(c.family, k))),
    };
    if churns {
        (OP_TIMEOUT_MS_CHURN, Some(OP_TIMEOUT_MS_DEFAULT))
    } else {
        (OP_TIMEOUT_MS_DEFAULT, None)
    }
}

/// A reference role's options with the node's request timeout following the client's
/// ([`NODE_TIMEOUT_MARGIN_MS`] shorter) where the role takes one and the user did not set it.
/// At the default client timeout nothing is added: the node's own default is that already.
fn with_node_timeout(
    spec: Option<&RoleSpec>,
    mut options: Vec<(String, String)>,
    op_timeout_ms: u64,
) -> Vec<(String, String)> {
    const KEY: &str = roles::TIMEOUT.key;
    let takes = spec.is_some_and(|r| r.options.iter().any(|o| o.key == KEY));
    if takes && op_timeout_ms != OP_TIMEOUT_MS_DEFAULT && !options.iter().any(|(k, _)| k == KEY) {
        let ms = op_timeout_ms.saturating_sub(NODE_TIMEOUT_MARGIN_MS).max(1);
        options.push((KEY.to_string(), ms.to_string()));
    }
    options
}

fn locate_node_bin(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidate = if let Some(p) = flag {
        p.to_path_buf()
    } else if let Some(p) = std::env::var_os("FAULTLINE_NODE_BIN") {
        PathBuf::from(p)
    } else {
        let exe = std::env::current_exe().context("cannot locate the faultline executable")?;
        exe.parent().map(|d| d.join("faultline-node")).unwrap_or_else(|| PathBuf::from("faultline-node"))
    };
    if !candidate.is_file() {
        bail!(
            "node binary {} not found: build it with `cargo build -p faultline-node` (it lands next to `faultline`), \
             or pass --node-bin PATH / set FAULTLINE_NODE_BIN",
            candidate.display()
        );
    }
    Ok(std::fs::canonicalize(&candidate).unwrap_or(candidate))
}

/// The reference role `--target` names, or `None` for an external target (etcd, redis, a
/// readable target file); anything else is a usage error.
fn target_role(a: &RunArgs) -> anyhow::Result<Option<&'static RoleSpec>> {
    if let Some(spec) = roles::role(&a.target) {
        return Ok(Some(spec));
    }
    if !external::is_external(&a.target) {
        bail!(
            "unknown target {:?}: expected one of {}, {} or a file *.toml",
            a.target,
            roles::names().collect::<Vec<_>>().join(", "),
            external::NAMED.join(", ")
        );
    }
    if a.target.ends_with(".toml") {
        let readable = std::fs::File::open(&a.target).and_then(|f| f.metadata()).map(|m| m.is_file());
        match readable {
            Ok(true) => {}
            Ok(false) => bail!("--target {}: not a file", a.target),
            Err(e) => bail!("--target {}: cannot read the target file: {e}", a.target),
        }
    }
    if let Some(b) = a.bugs.first() {
        bail!("--bug {b}: planted bugs are the reference roles' (--target {} has none)", a.target);
    }
    Ok(None)
}

/// `--target lb`'s own checks (strategy, weights per backend, a bug that needs a strategy),
/// made here, before anything starts, by building the target once without running it.
fn check_lb(a: &RunArgs, options: &[(String, String)]) -> anyhow::Result<()> {
    let http = NodeHttp::new(Duration::from_millis(a.op_timeout_ms.unwrap_or(OP_TIMEOUT_MS_DEFAULT)), "-")
        .context("HTTP client")?;
    let reference = ReferenceTarget {
        role: a.target.clone(),
        options: options.to_vec(),
        program: PathBuf::new(),
        bugs: a.bugs.clone(),
        admin_token: String::new(),
        http,
        seed: 0,
    };
    lb::LbTarget::new(reference, a.nodes).map(drop).map_err(anyhow::Error::msg)
}

/// Checks every flag before anything is created (the same checks serve `run`, `campaign` and
/// `campaign --dry-run`) and settles what the run needs: nemesis, seed, schedule, node binary.
pub(crate) fn validate(a: &RunArgs) -> anyhow::Result<Plan> {
    let spec = target_role(a)?;
    check_names(a, spec)?;
    let nemesis = parse_choices(&a.nemesis).map_err(|e| anyhow::anyhow!("--nemesis: {e}"))?;
    check_ranges(a)?;
    // Bugs, options (key and value) and workload against the role's row of the table.
    let role_options = match spec {
        Some(spec) => roles::check_run(spec, &a.workload, &a.bugs, &a.target_opts).map_err(anyhow::Error::msg)?,
        None => Vec::new(), // external targets check their options when built
    };
    check_shape(a, &role_options)?;
    let mechanism: MechanismChoice = a.local_net.parse().map_err(|e: String| anyhow::anyhow!("--local-net: {e}"))?;
    let short = Path::new(&a.target).file_stem().map_or(a.target.clone(), |s| s.to_string_lossy().into_owned());
    let name = a.name.clone().unwrap_or_else(|| format!("{short}-{}", a.workload));
    // Docker nodes run the image's static binary (built from the sources), not a host binary.
    let node_bin = if a.runtime == "docker" {
        PathBuf::from(faultline_core::runtime::docker::IMAGE_NODE_PATH)
    } else if external::is_external(&a.target) {
        PathBuf::new() // external targets run their own programs
    } else {
        locate_node_bin(a.node_bin.as_deref())?
    };
    let replay = match &a.schedule {
        Some(p) => Some(replay_schedule(p, a)?),
        None => None,
    };
    let seed = a.seed.or(replay.as_ref().and_then(|r| r.seed)).unwrap_or_else(rand_seed);
    let schedule = replay.map(|r| r.schedule);
    let (op_timeout_ms, op_timeout_outside_churn_ms) = op_timeouts_ms(a, spec, &nemesis, schedule.as_ref());
    let role_options = with_node_timeout(spec, role_options, op_timeout_ms);
    // A replay's families are what the run uses (the clock sampler follows them).
    let nemesis = schedule.as_ref().map_or(nemesis, Schedule::families);
    Ok(Plan {
        nemesis,
        schedule,
        seed,
        mechanism,
        node_bin,
        name,
        role_options,
        op_timeout_ms,
        op_timeout_outside_churn_ms,
    })
}

/// The port, the workload and the runtime are ones this version knows, and fit the target.
fn check_names(a: &RunArgs, spec: Option<&RoleSpec>) -> anyhow::Result<()> {
    if a.port == 0 {
        bail!("--port must be in [1, 65535], got 0");
    }
    if a.workload != "register" && (a.active_keys.is_some() || a.ops_per_key.is_some()) {
        bail!("--active-keys and --ops-per-key shape the register workload, not {:?}", a.workload);
    }
    if !faultline_workloads::NAMES.contains(&a.workload.as_str()) {
        bail!("unknown workload {:?}: expected one of {}", a.workload, faultline_workloads::NAMES.join(", "));
    }
    if !["local", "docker", "ssh"].contains(&a.runtime.as_str()) {
        bail!("unknown runtime {:?}: expected local, docker or ssh", a.runtime);
    }
    check_ssh(a, spec)?;
    if a.runtime == "docker" && spec.is_none() {
        bail!(
            "--runtime docker runs only the reference node (its image holds faultline-node); \
             --target {:?} needs --runtime local",
            a.target
        );
    }
    Ok(())
}

/// `--runtime ssh`: its flags (and only with it), a reference role other than the router, and a
/// node count that is the nodes file's.
fn check_ssh(a: &RunArgs, spec: Option<&RoleSpec>) -> anyhow::Result<()> {
    if a.runtime != "ssh" {
        if a.ssh.any() {
            bail!("--nodes-file, --ssh-* and --remote-dir need --runtime ssh");
        }
        return Ok(());
    }
    if spec.is_none() || a.target == "router" {
        bail!(
            "--runtime ssh runs the reference roles (not the router) for now; --target {:?} needs --runtime local",
            a.target
        );
    }
    let (hosts, _) = a.ssh.resolve()?;
    if hosts.len() != a.nodes {
        bail!("--nodes {} but --nodes-file lists {} hosts (one node per host)", a.nodes, hosts.len());
    }
    Ok(())
}

/// With `--runtime ssh`, the cluster size is the nodes file's (when it can be read; validation
/// reports the file's problems).
pub(crate) fn nodes_from_file(mut args: RunArgs) -> RunArgs {
    if args.runtime == "ssh" {
        if let Ok((hosts, _)) = args.ssh.resolve() {
            args.nodes = hosts.len();
        }
    }
    args
}

/// Every number within its bound (so that nothing downstream overflows or waits forever).
fn check_ranges(a: &RunArgs) -> anyhow::Result<()> {
    let secs =
        |v: f64, lo: f64, hi: f64, lo_open: bool| v.is_finite() && (if lo_open { v > lo } else { v >= lo }) && v <= hi;
    if !(1..=20).contains(&a.nodes) {
        bail!("--nodes must be between 1 and 20, got {}", a.nodes);
    }
    if !(1..=1000).contains(&a.concurrency) {
        bail!("--concurrency must be between 1 and 1000, got {}", a.concurrency);
    }
    if !secs(a.rate, 0.0, 100_000.0, true) {
        bail!("--rate must be a number of ops/s in (0, 100000], got {}", a.rate);
    }
    if !secs(a.time_limit, 0.0, 86_400.0, true) {
        bail!("--time-limit must be seconds in (0, 86400], got {}", a.time_limit);
    }
    if !secs(a.nemesis_interval, 0.1, 3600.0, false) {
        bail!("--nemesis-interval must be seconds in [0.1, 3600], got {}", a.nemesis_interval);
    }
    if !secs(a.recovery, 0.0, 600.0, false) {
        bail!("--recovery must be seconds in [0, 600], got {}", a.recovery);
    }
    if !secs(a.setup_timeout, 0.0, 600.0, true) {
        bail!("--setup-timeout must be seconds in (0, 600], got {}", a.setup_timeout);
    }
    if let Some(ms) = a.op_timeout_ms.filter(|ms| !(100..=600_000).contains(ms)) {
        bail!("--op-timeout-ms must be in [100, 600000], got {ms}");
    }
    Ok(())
}

/// The cluster shapes of the targets that have one: the lb's strategy and weights, the
/// router's shard groups.
fn check_shape(a: &RunArgs, role_options: &[(String, String)]) -> anyhow::Result<()> {
    if a.target == "lb" {
        check_lb(a, role_options)?;
    }
    if a.target == "router" {
        // The cluster's shape is the target's (router, shard groups): refuse sizes it cannot use.
        let ids: Vec<String> = (1..=a.nodes).map(|i| format!("n{i}")).collect();
        faultline_core::target::router::topology(&ids, a.bugs.iter().any(|b| b == "single-directory"))
            .map_err(anyhow::Error::msg)?;
        if a.runtime == "docker" {
            bail!("--target router runs on --runtime local only");
        }
    }
    Ok(())
}

/// Reads and checks `--schedule`.
fn replay_schedule(p: &Path, a: &RunArgs) -> anyhow::Result<replay::Loaded> {
    let loaded = replay::load(p).map_err(|e| anyhow::anyhow!("--schedule: {e}"))?;
    replay::check(&loaded.schedule, a.nodes, a.time_limit)
        .map_err(|e| anyhow::anyhow!("--schedule {}: {e}", loaded.source.display()))?;
    Ok(loaded)
}

pub(crate) fn rand_seed() -> u64 {
    // Only the choice of seed is random; everything after derives from it.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    faultline_core::generator::derive_seed(t.as_nanos() as u64, "seed", u64::from(std::process::id())) % 1_000_000_000
}

/// The command that reproduces the run: every flag that shapes it, seed included.
fn repro(a: &RunArgs, p: &Plan) -> String {
    let mut s = format!(
        "faultline run --target {} --workload {} --nemesis {} --nodes {} --concurrency {} --rate {} --time-limit {} \
         --nemesis-interval {} --seed {} --runtime {} --recovery {}",
        a.target,
        a.workload,
        faultline_core::nemesis::Schedule::generate_choices(0, &p.nemesis, 1, 0.0, 1.0).name,
        a.nodes,
        a.concurrency,
        a.rate,
        a.time_limit,
        a.nemesis_interval,
        p.seed,
        a.runtime,
        a.recovery,
    );
    // Given only when given: unset, the timeouts follow from the schedule as they did here.
    if let Some(ms) = a.op_timeout_ms {
        s += &format!(" --op-timeout-ms {ms}");
    }
    if let Some(p) = &a.schedule {
        let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        s += &format!(" --schedule {}", shell_quote(&p.display().to_string()));
    }
    for o in &a.target_opts {
        s += &format!(" --target-opt {o}");
    }
    s += &a.ssh.repro_words();
    if let Some(k) = a.active_keys {
        s += &format!(" --active-keys {k}");
    }
    if let Some(n) = a.ops_per_key {
        s += &format!(" --ops-per-key {n}");
    }
    for b in &a.bugs {
        s += &format!(" --bug {}", shell_quote(b));
    }
    if a.local_net != "auto" {
        s += &format!(" --local-net {}", shell_quote(&a.local_net));
    }
    if a.port != 8080 {
        s += &format!(" --port {}", a.port);
    }
    if let Some(n) = &a.name {
        s += &format!(" --name {}", shell_quote(n));
    }
    if let Some(b) = &a.node_bin {
        s += &format!(" --node-bin {}", shell_quote(&b.display().to_string()));
    }
    s += &format!(" --store {}", shell_quote(&a.store.display().to_string()));
    s
}

/// `s` as one shell word: unchanged when it is plain, else single-quoted.
pub(crate) fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./:,+=@%-".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn init_log(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,faultline=debug,faultline_core=debug"));
    // A second run in the same process (tests) keeps the first subscriber: ignore the error.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
    Ok(())
}

/// Set in the environment of the re-run inside a user namespace (and read by the runner).
const USERNS_ENV: &str = "FAULTLINE_USERNS";

/// Without CAP_NET_ADMIN, re-runs this very command inside a new unprivileged user and network
/// namespace, where the kernel allows it: there the harness is root of its own network and can
/// filter packets between nodes on loopback (mechanism `loopback-iptables`). Returns `None` when
/// that is not needed or not possible; the run then goes on here, and network faults it cannot
/// apply are reported as not applied.
fn rerun_in_userns(args: &RunArgs) -> anyhow::Result<Option<u8>> {
    use faultline_core::runtime::local::has_net_admin;
    if args.runtime != "local" || args.local_net != "auto" || has_net_admin() || std::env::var_os(USERNS_ENV).is_some()
    {
        return Ok(None);
    }
    let userns = ["--user", "--map-root-user", "--net"];
    let probe = std::process::Command::new("unshare")
        .args(userns)
        .arg("true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        return Ok(None);
    }
    let exe = std::env::current_exe().context("cannot locate the faultline executable")?;
    eprintln!("faultline: no CAP_NET_ADMIN; re-running inside an unprivileged user and network namespace");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        // `unshare` without --fork execs faultline: the child's pid is the harness's.
        let mut child = tokio::process::Command::new("unshare")
            .args(userns)
            .arg("--")
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env(USERNS_ENV, "1")
            // Inside, the mapped root would pick a state folder by its new uid 0; keep the
            // caller's, so `faultline cleanup` run by the same user finds the run.
            .env("FAULTLINE_STATE_DIR", state_dir())
            .spawn()
            .context("cannot start unshare")?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status?;
                    return Ok(Some(status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(EXIT_ERROR)));
                }
                // Ctrl-C reaches the child too (same process group); wait for its teardown.
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {
                    if let Some(pid) = child.id() {
                        let _ = faultline_core::runtime::state::send_signal(pid, "TERM");
                    }
                }
            }
        }
    })
}

pub fn main(args: RunArgs) -> anyhow::Result<u8> {
    let mut args = nodes_from_file(args);
    // A target that runs on a fixed number of nodes (the SQL targets: one server) sets it.
    if let Some(n) = external::fixed_nodes(&args.target, &args.target_opts).filter(|n| *n != args.nodes) {
        eprintln!("faultline: --target {} runs on {n} node(s): --nodes {} becomes {n}", args.target, args.nodes);
        args.nodes = n;
    }
    let plan = validate(&args)?;
    if let Some(code) = rerun_in_userns(&args)? {
        return Ok(code);
    }
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    tokio_rt.block_on(run_async(args, plan))
}

async fn run_async(args: RunArgs, plan: Plan) -> anyhow::Result<u8> {
    // The test first: building it creates nothing outside this process, so a target that
    // cannot be built leaves no folder, namespace or container behind.
    let test = Test::build(&args, &plan)?;
    let repro = repro(&args, &plan);
    let run_dir = RunDir::create_now(&args.store, &plan.name)?;
    init_log(&run_dir.harness_log())?;
    tracing::info!("faultline run: {repro}");
    if !args.quiet {
        eprintln!("faultline: seed {}, run folder {}", plan.seed, run_dir.dir().display());
    }
    for n in &test.notes {
        eprintln!("faultline: {n}");
        tracing::warn!("{n}");
    }
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let signals = watch_signals(cancel_tx);
    let runtime = build_runtime(&args, &plan, cancel_rx.clone()).await?;
    let runtime = test.gate(runtime);
    let cfg = run_config(&args, &plan, &repro);
    let progress = Arc::new(Progress::default());
    let bar = progress_line(progress.clone(), args.time_limit, args.quiet);
    let inputs = RunInputs {
        runtime,
        target: test.target,
        workload: test.workload,
        client: test.client,
        run_dir: run_dir.clone(),
        progress,
        cancel: cancel_rx,
    };
    let outcome = runner::run(cfg, inputs).await;
    bar.abort();
    let _ = bar.await;
    signals.abort();
    Ok(report_outcome(&outcome, &run_dir, &repro))
}

/// Flips the cancel watch on SIGINT or SIGTERM: the run then stops its main phase, heals,
/// tears down and analyses what it recorded.
fn watch_signals(cancel_tx: tokio::sync::watch::Sender<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("\nfaultline: interrupted; healing, tearing down and analysing what was recorded");
        tracing::warn!("interrupted by signal");
        let _ = cancel_tx.send(true);
    })
}

/// Where the nodes live: the per-run Docker project or the local namespaces (created here).
async fn build_runtime(
    args: &RunArgs,
    plan: &Plan,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Arc<dyn Runtime>> {
    let runtime: Arc<dyn Runtime> = if args.runtime == "docker" {
        let opts = faultline_core::runtime::docker::DockerOptions {
            nodes: args.nodes,
            port: args.port,
            state_dir: state_dir(),
            repo: None,
            build_timeout: Duration::from_secs(900),
            cancel: Some(cancel),
        };
        let setup = tokio::task::spawn_blocking(move || faultline_core::runtime::docker::DockerRuntime::setup(&opts));
        Arc::new(setup.await?.context("docker runtime setup")?)
    } else if args.runtime == "ssh" {
        use faultline_core::runtime::ssh::{SshRunOptions, SshRuntime};
        let (hosts, ssh) = args.ssh.resolve()?;
        let opts = SshRunOptions { hosts, ssh, port: args.port, state_dir: state_dir() };
        Arc::new(tokio::task::spawn_blocking(move || SshRuntime::setup(&opts)).await?.context("ssh runtime setup")?)
    } else {
        let local =
            LocalOptions { nodes: args.nodes, port: args.port, mechanism: plan.mechanism, state_dir: state_dir() };
        Arc::new(
            tokio::task::spawn_blocking(move || LocalRuntime::setup(&local)).await?.context("local runtime setup")?,
        )
    };
    tracing::info!(
        "runtime {}: mechanism {}, run id {}, nodes {:?}",
        runtime.kind(),
        runtime.mechanism().as_str(),
        runtime.run_id(),
        runtime.nodes().iter().map(|n| n.addr()).collect::<Vec<_>>()
    );
    Ok(runtime)
}

/// What shapes the run, recorded in test.json.
fn run_config(args: &RunArgs, plan: &Plan, repro: &str) -> RunConfig {
    let options: Value = json!({
        "target": args.target, "workload": args.workload, "nemesis": args.nemesis, "nodes": args.nodes,
        "concurrency": args.concurrency, "rate": args.rate, "time_limit": args.time_limit,
        "nemesis_interval": args.nemesis_interval, "schedule": args.schedule, "seed": plan.seed, "runtime": args.runtime, "bugs": args.bugs,
        "target_opts": args.target_opts, "store": args.store, "recovery": args.recovery, "op_timeout_ms": args.op_timeout_ms,
        "client_timeout_ms": plan.op_timeout_ms, "client_timeout_outside_churn_ms": plan.op_timeout_outside_churn_ms,
        "setup_timeout": args.setup_timeout, "local_net": args.local_net, "node_bin": plan.node_bin, "port": args.port,
    });
    RunConfig {
        test_name: plan.name.clone(),
        seed: plan.seed,
        concurrency: args.concurrency,
        rate: args.rate,
        time_limit: Duration::from_secs_f64(args.time_limit),
        nemesis_interval: Duration::from_secs_f64(args.nemesis_interval),
        nemesis: plan.nemesis.clone(),
        schedule: plan.schedule.clone(),
        recovery: Duration::from_secs_f64(args.recovery),
        op_timeout: Duration::from_millis(plan.op_timeout_ms),
        op_timeout_outside_churn: plan.op_timeout_outside_churn_ms.map(Duration::from_millis),
        setup_timeout: Duration::from_secs_f64(args.setup_timeout),
        final_read_timeout: Duration::from_secs(30),
        repro: repro.to_string(),
        options,
    }
}

/// The summary, report.html and the harness's errors; returns the exit code.
fn report_outcome(outcome: &runner::RunOutcome, run_dir: &RunDir, repro: &str) -> u8 {
    print_summary(&outcome.results, run_dir.dir(), repro);
    // The report is part of the run's product, but a failure to draw it must not change the
    // verdict's exit code: warn and point at `faultline report`.
    match faultline_reports::render_run(run_dir.dir(), &Default::default()) {
        Ok(r) => outln!("report: {}", r.files[0].display()),
        Err(e) => eprintln!(
            "faultline: warning: report not written ({e}); try `faultline report {}`",
            run_dir.dir().display()
        ),
    }
    for e in &outcome.errors {
        eprintln!("faultline: {e}");
    }
    outcome.verdict.map_or(EXIT_ERROR, |v| v.exit_code())
}

/// A test as Jepsen's test map has it: the target (with its client for the workload's data
/// type) and the workload, assembled from validated flags. The runtime is made afterwards,
/// by [`build_runtime`], and gated by the target ([`Test::gate`]).
pub(crate) struct Test {
    target: Arc<dyn Target>,
    workload: Arc<dyn Workload>,
    client: Arc<dyn faultline_core::client::Client>,
    /// The fault families an external target cannot take, one line each.
    notes: Vec<String>,
    external: bool,
}

impl Test {
    /// Builds the test: the reference role (or the lb in front of it), or an external target;
    /// the workload in the shape the role needs; the target's client for it.
    pub(crate) fn build(args: &RunArgs, plan: &Plan) -> anyhow::Result<Test> {
        let op_timeout = Duration::from_millis(plan.op_timeout_ms);
        // From the OS's entropy: never from the seed, which world-readable files record.
        let admin_token = faultline_core::secret::admin_token()?;
        let http = NodeHttp::new(op_timeout, &admin_token).context("HTTP client")?;
        let reference = ReferenceTarget {
            role: args.target.clone(),
            options: plan.role_options.clone(),
            program: plan.node_bin.clone(),
            bugs: args.bugs.clone(),
            admin_token: admin_token.clone(),
            http: http.clone(),
            seed: plan.seed,
        };
        let workload = workload_for(args, plan)?;
        let (target, notes, external): (Arc<dyn Target>, Vec<String>, bool) = if external::is_external(&args.target) {
            let inputs = external::BuildInputs {
                target: &args.target,
                options: &args.target_opts,
                workload: workload.clone(),
                op_timeout,
                seed: plan.seed,
                admin_token,
                http,
                nodes: args.nodes,
                runtime_kind: &args.runtime,
            };
            let built = external::build(inputs)?;
            (built.target, built.notes, true)
        } else if args.target == "lb" {
            (Arc::new(lb::LbTarget::new(reference, args.nodes).map_err(anyhow::Error::msg)?), Vec::new(), false)
        } else {
            (Arc::new(reference), Vec::new(), false)
        };
        let client = target.client(workload.data_type()).map_err(anyhow::Error::msg)?;
        Ok(Test { target, workload, client, notes, external })
    }

    /// The runtime as this test's target allows it: an external target refuses the faults it
    /// cannot take (recorded as not applied, never pretended).
    fn gate(&self, runtime: Arc<dyn Runtime>) -> Arc<dyn Runtime> {
        if self.external {
            external::gate(runtime, self.target.as_ref())
        } else {
            runtime
        }
    }
}

/// The workload, in the shape the role needs.
fn workload_for(args: &RunArgs, plan: &Plan) -> anyhow::Result<Arc<dyn Workload>> {
    use faultline_workloads::register::Register;
    if args.workload != "register" {
        return faultline_workloads::by_name(&args.workload).map_err(anyhow::Error::msg);
    }
    // The role that holds the data: the backends' behind a load balancer.
    let data_role = if args.target == "lb" { lb::backend_role(&plan.role_options) } else { args.target.as_str() };
    let base = if roles::role(data_role).is_some_and(|r| !r.cas) {
        // The role refuses cas (501): reads and writes only, half and half.
        Register { read_pct: 50, write_pct: 50, ..Default::default() }
    } else if args.target == "router" {
        // More keys at once, so that a short run spreads enough keys over the shard groups for
        // the shard-balance checker to judge (docs/targets.md).
        Register { active_keys: faultline_core::target::router::ACTIVE_KEYS, ..Default::default() }
    } else {
        Register::default()
    };
    Ok(Arc::new(register_shape(args, base)))
}

/// The live line: elapsed time, ok/fail/info counts, phase and active faults. indicatif draws
/// nothing when stderr is not a terminal.
fn progress_line(progress: Arc<Progress>, time_limit: f64, quiet: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if quiet {
            return;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        let mut main_started: Option<Instant> = None;
        struct Finish(indicatif::ProgressBar);
        impl Drop for Finish {
            fn drop(&mut self) {
                self.0.finish_and_clear();
            }
        }
        let _finish = Finish(bar.clone());
        loop {
            let s = progress.snapshot();
            if s.phase == "main" && main_started.is_none() {
                main_started = Some(Instant::now());
            }
            let main = match main_started {
                Some(m) if s.phase == "main" => {
                    format!(" {:.0}/{time_limit:.0}s", m.elapsed().as_secs_f64())
                }
                _ => String::new(),
            };
            let faults = if s.active_faults.is_empty() { "none".to_string() } else { s.active_faults.join(", ") };
            bar.set_message(format!(
                "{}{main} | ok {} fail {} info {} | faults: {faults}",
                s.phase, s.ok, s.fail, s.info
            ));
            bar.tick();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn print_summary(results: &Results, dir: &Path, repro: &str) {
    use tabled::builder::Builder;
    let mut b = Builder::default();
    b.push_record(["checker", "verdict", "reason"]);
    for c in &results.checkers {
        b.push_record([c.name.clone(), c.verdict.to_string(), truncate(c.reason.as_deref().unwrap_or(""), 100)]);
    }
    outln!("{}", b.build().with(tabled::settings::Style::rounded()));
    match (&results.isolation, &results.consistency) {
        (Some(i), _) => outln!("{}", isolation_table(i)),
        (None, Some(c)) => outln!("{}", consistency_table(c)),
        (None, None) => {}
    }
    outln!("{}", ops_table(results));
    if let Some(t) = results.target_stats.as_ref().and_then(|s| backend_table(results, s)) {
        outln!("{t}");
    }
    outln!("{}", verdict_table(results, dir).with(tabled::settings::Style::rounded()));
    outln!("reproduce: {repro}");
}

/// ok/fail/info counts of the whole run, during and outside the fault windows.
fn ops_table(results: &Results) -> String {
    use tabled::builder::Builder;
    let pct = |f: Option<f64>| f.map(|f| format!("{:.0}%", f * 100.0)).unwrap_or_else(|| "-".into());
    let row = |label: &str, c: &Counts, share: String| {
        [label.to_string(), c.ok.to_string(), c.fail.to_string(), c.info.to_string(), share]
    };
    let av = &results.availability;
    let mut t = Builder::default();
    t.push_record(["", "ok", "fail", "info", "ok share"]);
    t.push_record(row("all ops", &results.ops.completed, String::new()));
    t.push_record(row("during faults", &av.during_faults, pct(av.during_faults_ok_fraction)));
    t.push_record(row("outside faults", &av.outside_faults, pct(av.outside_faults_ok_fraction)));
    t.build().with(tabled::settings::Style::rounded()).to_string()
}

/// The verdict, faults, latency, runtime and run folder.
fn verdict_table(results: &Results, dir: &Path) -> tabled::Table {
    let mut summary = tabled::builder::Builder::default();
    summary.push_record(["verdict".to_string(), results.verdict.to_string()]);
    if results.interrupted {
        summary.push_record(["interrupted".to_string(), "yes (partial history analysed)".into()]);
    }
    let (n, applied) = (results.faults.len(), results.faults_applied());
    summary.push_record([
        "faults".to_string(),
        format!("{n} scheduled windows, {applied} applied, {} not applied (see results.json)", n - applied),
    ]);
    if let Some(l) = results.latency.get("ok").filter(|l| l.count > 0) {
        summary.push_record([
            "ok latency".to_string(),
            format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", l.p50_ms, l.p99_ms, l.max_ms),
        ]);
    }
    summary.push_record(["runtime".to_string(), format!("{} ({})", results.runtime.kind, results.runtime.mechanism)]);
    summary.push_record(["run folder".to_string(), dir.display().to_string()]);
    summary.build()
}

/// The consistency block (results.json `consistency`) as a table: one row per model of the
/// hierarchy, the strongest one kept in the header.
pub fn consistency_table(c: &Consistency) -> String {
    use tabled::builder::Builder;
    let mut b = Builder::default();
    b.push_record([
        format!("consistency (strongest: {})", c.strongest.name()),
        "verdict".to_string(),
        "reason".to_string(),
    ]);
    for m in &c.models {
        let model = if m.model == Model::Sequential { m.model.label() } else { m.model.name() };
        b.push_record([model.to_string(), m.verdict.name().to_string(), truncate(&m.reason, 100)]);
    }
    b.build().with(tabled::settings::Style::rounded()).to_string()
}

/// The transactional map (results.json `isolation`): one row per model, weakest first, kept,
/// ruled out or undecided; the strongest kept and the anomalies found in the header.
pub fn isolation_table(i: &faultline_results::Isolation) -> String {
    use faultline_checker::txn::ConsistencyModel;
    use tabled::builder::Builder;
    let mut b = Builder::default();
    b.push_record([format!("isolation (strongest kept: {})", i.strongest_text()), "verdict".to_string()]);
    for m in ConsistencyModel::ALL {
        let verdict = if i.ruled_out.contains(&m) {
            "ruled out"
        } else if i.undecided.contains(&m) {
            "undecided (budget)"
        } else {
            "kept"
        };
        b.push_record([m.name().to_string(), verdict.to_string()]);
    }
    if !i.anomalies.is_empty() {
        let found: Vec<String> = i.anomalies.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        b.push_record(["anomalies".to_string(), truncate(&found.join(", "), 100)]);
    }
    b.build().with(tabled::settings::Style::rounded()).to_string()
}

/// A load balancer's per-backend counts (results.json `target_stats`, the shape of
/// [`LbStats`]), with the shares the `lb-distribution` checker observed and expected when it
/// ran. `None` for other targets' stats.
fn backend_table(results: &Results, stats: &Value) -> Option<String> {
    use tabled::builder::Builder;
    let stats: LbStats = serde_json::from_value(stats.clone()).ok()?;
    if stats.backends.is_empty() {
        return None;
    }
    let shares: Vec<BackendShare> = results
        .checker("lb-distribution")
        .and_then(|c| serde_json::from_value::<Shares>(c.details.clone()).ok())
        .map(|s| s.backends)
        .unwrap_or_default();
    let mut t = Builder::default();
    t.push_record([
        "backend",
        "weight",
        "picks",
        "ok",
        "errors",
        "refused",
        "drops",
        "readmits",
        "healthy",
        "share (expected)",
    ]);
    for b in &stats.backends {
        let share = shares
            .iter()
            .find(|x| x.backend == b.id)
            .map(|x| format!("{:.1}% ({:.1}%)", x.observed * 100.0, x.expected * 100.0))
            .unwrap_or_else(|| "-".into());
        let counts = [b.weight, b.picks, b.ok, b.errors, b.connect_failures, b.drops, b.readmits];
        let mut row = vec![b.id.clone()];
        row.extend(counts.iter().map(u64::to_string));
        row.push(if b.healthy { "yes".into() } else { "no".into() });
        row.push(share);
        t.push_record(row);
    }
    Some(format!(
        "{}\nlb {}: {} requests, {} retried after a refused connection, {} with no backend, {} stale reads served",
        t.build().with(tabled::settings::Style::rounded()),
        stats.strategy,
        stats.requests,
        stats.retries,
        stats.no_backend,
        stats.stale_served
    ))
}

/// The `lb-distribution` checker's details, as far as the backend table needs them.
#[derive(serde::Deserialize)]
struct Shares {
    backends: Vec<BackendShare>,
}

#[derive(serde::Deserialize)]
struct BackendShare {
    backend: String,
    observed: f64,
    expected: f64,
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(words: &[&str]) -> RunArgs {
        Wrap::try_parse_from(std::iter::once("run").chain(words.iter().copied())).unwrap().run
    }

    fn plan(a: &RunArgs, seed: u64) -> Plan {
        Plan {
            nemesis: parse_choices(&a.nemesis).unwrap(),
            schedule: None,
            seed,
            mechanism: MechanismChoice::Auto,
            node_bin: PathBuf::from("/x/faultline-node"),
            name: "t".into(),
            role_options: vec![],
            op_timeout_ms: OP_TIMEOUT_MS_DEFAULT,
            op_timeout_outside_churn_ms: None,
        }
    }

    #[test]
    fn clients_wait_longer_when_the_schedule_follows_elections_and_nodes_follow_clients() {
        let timeout = |words: &[&str]| {
            let a = parse(words);
            let spec = roles::role(&a.target);
            let nemesis = parse_choices(&a.nemesis).unwrap();
            let (ms, outside) = op_timeouts_ms(&a, spec, &nemesis, None);
            (ms, outside, with_node_timeout(spec, vec![], ms))
        };
        let node = |ms: u64| vec![("request-timeout-ms".to_string(), ms.to_string())];
        // Raft declares leader churn: its default schedule holds it, so clients wait 5 s and
        // its nodes 4.5 s; a role that declares nothing keeps 2 s and the node's own default.
        let short = Some(OP_TIMEOUT_MS_DEFAULT);
        assert_eq!(timeout(&[]), (OP_TIMEOUT_MS_CHURN, short, node(4500)));
        assert_eq!(timeout(&["--target", "paxos"]), (OP_TIMEOUT_MS_DEFAULT, None, vec![]));
        assert_eq!(timeout(&["--nemesis", "partition,kill"]), (OP_TIMEOUT_MS_DEFAULT, None, vec![]));
        // A default raft run too short for a whole churn window has none, and the usual timeout.
        assert_eq!(timeout(&["--time-limit", "30"]), (OP_TIMEOUT_MS_DEFAULT, None, vec![]));
        // Named churn on any role with a leader; a given timeout is every operation's, and a
        // given node timeout wins.
        assert_eq!(timeout(&["--target", "paxos", "--nemesis", "leader-churn"]), (5000, short, node(4500)));
        assert_eq!(timeout(&["--nemesis", "leader-churn", "--op-timeout-ms", "3000"]), (3000, None, node(2500)));
        assert_eq!(timeout(&["--target", "paxos", "--op-timeout-ms", "2000"]), (2000, None, vec![]));
        let a = parse(&["--target-opt", "request-timeout-ms=900"]);
        let given = vec![("request-timeout-ms".to_string(), "900".to_string())];
        assert_eq!(with_node_timeout(roles::role(&a.target), given.clone(), 5000), given);
        // lb's front takes no request timeout option: nothing is added for it.
        assert_eq!(with_node_timeout(roles::role("lb"), vec![], 5000), vec![]);
        // A replayed schedule decides by its faults.
        let s = Schedule::generate_choices(1, &parse_choices("leader-churn").unwrap(), 5, 60.0, 12.0);
        let a = parse(&["--target", "paxos"]);
        assert_eq!(op_timeouts_ms(&a, roles::role("paxos"), &[], Some(&s)), (OP_TIMEOUT_MS_CHURN, short));
        let s = Schedule::generate_choices(1, &parse_choices("kill").unwrap(), 5, 60.0, 3.0);
        assert_eq!(op_timeouts_ms(&a, roles::role("paxos"), &[], Some(&s)), (OP_TIMEOUT_MS_DEFAULT, None));
    }

    #[test]
    fn the_reproduce_command_parses_back_to_the_same_run() {
        let a = parse(&[
            "--nemesis",
            "partition:isolate-leader,kill",
            "--nodes",
            "3",
            "--concurrency",
            "7",
            "--rate",
            "12.5",
            "--time-limit",
            "9",
            "--nemesis-interval",
            "1.5",
            "--bug",
            "stale-read",
            "--port",
            "9000",
            "--local-net",
            "loopback",
            "--recovery",
            "2",
        ]);
        let r = repro(&a, &plan(&a, 1234));
        let words: Vec<&str> = r.split_whitespace().collect();
        assert_eq!(&words[..2], ["faultline", "run"]);
        let b = parse(&words[2..]);
        assert_eq!(b.seed, Some(1234));
        assert_eq!(parse_choices(&b.nemesis).unwrap(), parse_choices(&a.nemesis).unwrap());
        assert_eq!(
            (b.nodes, b.concurrency, b.rate, b.time_limit, b.nemesis_interval, b.recovery, b.port),
            (a.nodes, a.concurrency, a.rate, a.time_limit, a.nemesis_interval, a.recovery, a.port)
        );
        assert_eq!(
            (b.bugs, b.local_net, b.target, b.workload, b.runtime),
            (a.bugs, a.local_net, a.target, a.workload, a.runtime)
        );
    }

    #[test]
    fn register_shape_flags_reach_the_workload_and_the_reproduce_command() {
        let a = parse(&["--active-keys", "1", "--ops-per-key", "5000"]);
        let shape = register_shape(&a, faultline_workloads::register::Register::default());
        assert_eq!((shape.active_keys, shape.ops_per_key), (1, 5000));
        let r = repro(&a, &plan(&a, 7));
        let words: Vec<&str> = r.split_whitespace().collect();
        let b = parse(&words[2..]);
        assert_eq!((b.active_keys, b.ops_per_key), (Some(1), Some(5000)));
        let d = parse(&[]);
        let shape = register_shape(&d, faultline_workloads::register::Register::default());
        assert_eq!((shape.active_keys, shape.ops_per_key), (3, 30));
        let set = parse(&["--workload", "set", "--ops-per-key", "5"]);
        assert!(validate(&set).err().map(|e| e.to_string()).unwrap_or_default().contains("--ops-per-key"));
        assert!(Wrap::try_parse_from(["run", "--active-keys", "0"]).is_err());
    }

    #[test]
    fn shell_quoting_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("store/raft-1"), "store/raft-1");
        assert_eq!(shell_quote("my store"), "'my store'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
