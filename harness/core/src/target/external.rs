//! Targets the project did not write: `etcd`, `redis`, `postgres`, `mariadb` and TOML-described
//! ones (`*.toml`).
//! [`build`] turns `--target` and its `--target-opt KEY=VALUE` options into a [`Target`] (whose
//! client speaks the system's protocol, [`Target::client`]; a workload it cannot serve is
//! refused here) and notes for the run output (faults the target cannot take). [`gate`] wraps the runtime so
//! that a fault the target cannot take is refused with the reason, which the nemesis records as
//! "not applied" in the history and results.json — never pretended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::etcd::EtcdTarget;
use super::file::FileTarget;
use super::redis::{RedisOptions, RedisTarget, MASTER_NAME, SENTINEL_PORT};
use super::Target;
use crate::client::etcd::{EtcdClient, EtcdReads};
use crate::client::http::NodeHttp;
use crate::client::redis::{RedisClient, SentinelConf};
use crate::client::sql::Db;
use crate::client::DataType;
use crate::nemesis::Family;
use crate::runtime::{Launch, NetFaults, NetMechanism, NodeSpec, Runtime, RuntimeError};
use crate::workload::Workload;

/// The script that installs the external systems.
pub const SETUP_SCRIPT: &str = "scripts/setup-external.sh";

/// Why an external target cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error("{program} not found in PATH: install it with {SETUP_SCRIPT} (Debian's {package})")]
    Missing { program: String, package: String },
    #[error("--target-opt {0}")]
    Option(String),
    // Transparent: with `{0}` and a source, `{:#}` printed the file's error twice.
    #[error(transparent)]
    File(#[from] super::file::FileError),
    #[error("{0}")]
    Unsupported(String),
}

/// True when `--target NAME` names an external target.
pub fn is_external(name: &str) -> bool {
    NAMED.contains(&name) || name.ends_with(".toml")
}

/// The external targets known by name.
pub const NAMED: [&str; 4] = ["etcd", "redis", "postgres", "mariadb"];

/// The node count a target always runs on, given its `--target-opt` pairs (the SQL targets: one
/// server and `replicas=N` standbys), if it has one. A bad value is left for [`build`] to refuse.
pub fn fixed_nodes(name: &str, options: &[String]) -> Option<usize> {
    if !matches!(name, "postgres" | "mariadb") {
        return None;
    }
    let replicas = options.iter().filter_map(|o| o.strip_prefix("replicas=")).next_back();
    Some(1 + replicas.and_then(|r| r.parse::<usize>().ok()).unwrap_or(0).min(super::sql::MAX_REPLICAS))
}

/// What [`build`] needs.
pub struct BuildInputs<'a> {
    pub target: &'a str,
    /// `KEY=VALUE` strings.
    pub options: &'a [String],
    pub workload: Arc<dyn Workload>,
    pub op_timeout: Duration,
    pub seed: u64,
    pub admin_token: String,
    pub http: NodeHttp,
    pub nodes: usize,
    pub runtime_kind: &'a str,
}

/// A built external target.
pub struct Built {
    pub target: Arc<dyn Target>,
    pub workload: Arc<dyn Workload>,
    /// One line per fault family the target cannot take (for the run output).
    pub notes: Vec<String>,
}

/// `program` from PATH (`$FAULTLINE_<NAME>_BIN` overrides), or an error naming the setup script.
pub fn find_program(program: &str, package: &str) -> Result<PathBuf, ExternalError> {
    let var = format!("FAULTLINE_{}_BIN", program.to_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&var) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
    }
    super::file::resolve_program(program, Path::new("/"))
        .ok_or_else(|| ExternalError::Missing { program: program.into(), package: package.into() })
}

fn parse_options(opts: &[String], known: &[&str], target: &str) -> Result<BTreeMap<String, String>, ExternalError> {
    let mut out = BTreeMap::new();
    for o in opts {
        let (k, v) = o.split_once('=').ok_or_else(|| ExternalError::Option(format!("{o:?}: expected KEY=VALUE")))?;
        if !known.contains(&k) {
            let expected = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            return Err(ExternalError::Option(format!(
                "{k:?} is not an option of target {target}: expected {expected}"
            )));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn number(
    opts: &BTreeMap<String, String>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ExternalError> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ExternalError::Option(format!(
                "{key}={v}: expected an integer in [{}, {}]",
                range.start(),
                range.end()
            ))),
        },
    }
}

/// Builds the external target `inputs.target`.
pub fn build(i: BuildInputs<'_>) -> Result<Built, ExternalError> {
    if i.runtime_kind != "local" {
        return Err(ExternalError::Unsupported(format!(
            "--target {} runs on --runtime local only (its programs are the host's; the Docker image holds faultline-node alone)",
            i.target
        )));
    }
    let target: Arc<dyn Target> = match i.target {
        "etcd" => {
            let o = parse_options(i.options, &["reads"], "etcd")?;
            let reads: EtcdReads =
                o.get("reads").map_or(Ok(EtcdReads::Linearizable), |r| r.parse()).map_err(ExternalError::Option)?;
            let program = find_program("etcd", "etcd-server")?;
            let client = EtcdClient::new(i.op_timeout, reads).map_err(|e| ExternalError::Unsupported(e.to_string()))?;
            Arc::new(EtcdTarget { program, client, cluster_token: format!("faultline-{}", i.seed) })
        }
        "redis" => {
            let o = parse_options(i.options, &["down-after-ms", "failover-timeout-ms", "min-replicas"], "redis")?;
            let opts = RedisOptions {
                server: find_program("redis-server", "redis-server")?,
                sentinel: find_program("redis-sentinel", "redis-sentinel")?,
                down_after_ms: number(&o, "down-after-ms", 2000, 100..=600_000)?,
                failover_timeout_ms: number(&o, "failover-timeout-ms", 6000, 1000..=600_000)?,
                min_replicas: number(&o, "min-replicas", 0, 0..=(i.nodes.saturating_sub(1) as u64))? as u32,
            };
            find_program("setpriv", "util-linux")?;
            let sentinel = Some(SentinelConf { port: SENTINEL_PORT, master: MASTER_NAME.into() });
            let client = RedisClient { timeout: i.op_timeout, sentinel, data: DataType::Register };
            Arc::new(RedisTarget { opts, client, peers_expected: i.nodes.saturating_sub(1) as u64 })
        }
        "postgres" => {
            let o = parse_options(i.options, &["isolation", "replicas", "replica-reads"], "postgres")?;
            super::sql::build(Db::Postgres, &o, i.op_timeout, i.nodes)?
        }
        "mariadb" => {
            let o = parse_options(i.options, &["isolation", "snapshot-isolation", "replicas"], "mariadb")?;
            super::sql::build(Db::Mariadb, &o, i.op_timeout, i.nodes)?
        }
        path => {
            parse_options(i.options, &[], path)?;
            Arc::new(FileTarget::load(Path::new(path), i.op_timeout, &i.admin_token, i.http.clone())?)
        }
    };
    // The workload's operations must be ones the target's client speaks: refused here, before
    // anything is created.
    target.client(i.workload.data_type()).map_err(ExternalError::Unsupported)?;
    // `rebalance` is left out: only sharded targets take it and it is never part of `all`; when
    // asked for, the nemesis records the refusal itself.
    let notes = Family::GENERAL
        .iter()
        .filter_map(|f| {
            target.fault_support(*f).err().map(|why| format!("{}: not applied to {}: {why}", f.as_str(), target.name()))
        })
        .collect();
    Ok(Built { target, workload: i.workload, notes })
}

/// A runtime that refuses the faults its target cannot take.
pub struct GatedRuntime {
    inner: Arc<dyn Runtime>,
    refused: BTreeMap<Family, String>,
    /// Network faults on loopback need nodes that bind their outgoing sockets.
    loopback_blind: Option<String>,
}

/// Wraps `runtime` so that faults `target` cannot take fail with the reason.
pub fn gate(runtime: Arc<dyn Runtime>, target: &dyn Target) -> Arc<dyn Runtime> {
    let refused: BTreeMap<Family, String> =
        Family::ALL.iter().filter_map(|f| target.fault_support(*f).err().map(|w| (*f, w))).collect();
    let loopback_blind = (runtime.mechanism() != NetMechanism::Netns && !target.binds_source_address()).then(|| {
        format!(
            "{} does not bind its outgoing sockets to its node address, so rules on loopback addresses cannot cut its \
             traffic; network faults need one namespace per node (--local-net netns, as root)",
            target.name()
        )
    });
    Arc::new(GatedRuntime { inner: runtime, refused, loopback_blind })
}

impl GatedRuntime {
    fn refuse(&self, family: Family, what: &str) -> Result<(), RuntimeError> {
        match self.refused.get(&family) {
            Some(why) => {
                Err(RuntimeError::Unsupported { mechanism: "target".into(), what: what.into(), why: why.clone() })
            }
            None => Ok(()),
        }
    }
}

impl Runtime for GatedRuntime {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn mechanism(&self) -> NetMechanism {
        self.inner.mechanism()
    }
    fn run_id(&self) -> &str {
        self.inner.run_id()
    }
    fn nodes(&self) -> &[NodeSpec] {
        self.inner.nodes()
    }
    fn client_addr(&self, node: &str) -> Result<String, RuntimeError> {
        self.inner.client_addr(node)
    }
    fn start_node(&self, id: &str, launch: &Launch) -> Result<u32, RuntimeError> {
        self.inner.start_node(id, launch)
    }
    fn start_nodes(&self, launches: &[(String, Launch)]) -> Result<(), RuntimeError> {
        self.inner.start_nodes(launches)
    }
    fn kill_node(&self, id: &str) -> Result<(), RuntimeError> {
        self.refuse(Family::Kill, "kill")?;
        self.inner.kill_node(id)
    }
    fn pause_node(&self, id: &str) -> Result<(), RuntimeError> {
        self.refuse(Family::Pause, "pause")?;
        self.inner.pause_node(id)
    }
    fn resume_node(&self, id: &str) -> Result<(), RuntimeError> {
        self.inner.resume_node(id)
    }
    fn is_running(&self, id: &str) -> bool {
        self.inner.is_running(id)
    }
    fn apply_net(&self, faults: &NetFaults) -> Result<(), RuntimeError> {
        if !faults.drop.is_empty() {
            self.refuse(Family::Partition, "partition")?;
        }
        if !faults.loss.is_empty() {
            self.refuse(Family::Loss, "loss")?;
        }
        if !faults.delay.is_empty() {
            self.refuse(Family::Latency, "latency")?;
        }
        if let (Some(why), false) = (&self.loopback_blind, faults.is_empty()) {
            return Err(RuntimeError::Unsupported {
                mechanism: self.inner.mechanism().as_str().into(),
                what: "network faults".into(),
                why: why.clone(),
            });
        }
        self.inner.apply_net(faults)
    }
    fn heal_net(&self) -> Result<(), RuntimeError> {
        self.inner.heal_net()
    }
    fn teardown(&self) -> Result<(), RuntimeError> {
        self.inner.teardown()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let known = ["reads"];
        assert_eq!(parse_options(&["reads=serializable".into()], &known, "etcd").unwrap()["reads"], "serializable");
        let e = parse_options(&["read=x".into()], &known, "etcd").unwrap_err().to_string();
        assert!(e.contains("\"read\"") && e.contains("expected reads"), "{e}");
        assert!(parse_options(&["reads".into()], &known, "etcd").unwrap_err().to_string().contains("KEY=VALUE"));
        let mut m = BTreeMap::new();
        m.insert("min-replicas".to_string(), "9".to_string());
        assert!(number(&m, "min-replicas", 0, 0..=2).unwrap_err().to_string().contains("[0, 2]"));
    }

    #[test]
    fn missing_programs_name_the_setup_script() {
        let e = find_program("no-such-program-faultline", "no-such-package").unwrap_err().to_string();
        assert!(e.contains(SETUP_SCRIPT) && e.contains("no-such-package"), "{e}");
    }

    #[test]
    fn external_names() {
        assert!(is_external("etcd") && is_external("redis") && is_external("x/y.toml"));
        assert!(is_external("postgres") && is_external("mariadb"));
        assert_eq!((fixed_nodes("postgres", &[]), fixed_nodes("etcd", &[])), (Some(1), None));
        assert_eq!(fixed_nodes("postgres", &["replicas=2".into()]), Some(3));
        assert!(!is_external("raft"));
    }
}
