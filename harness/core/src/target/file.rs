//! User-described targets: `faultline run --target path/to/target.toml` tests a system described
//! in a TOML file (docs/targets-external.md): how to start each node (command, arguments and
//! environment with placeholders), how to probe it, which client protocol it speaks (the
//! reference node API, etcd's or Redis's) and which fault families it can take.
//!
//! Placeholders in `args`, `env` values and the probe's arguments: `{id}` (`n1`), `{ip}`,
//! `{port}`, `{addr}` (`ip:port`), `{data_dir}` (absolute), `{peers}` (every node rendered with
//! `start.peer`, joined by `start.peer_separator`); `start.peer` itself takes `{id}`, `{ip}`,
//! `{port}`, `{addr}`. An unknown placeholder is an error with the file and line.
//!
//! Stopping a node is the runtime's SIGKILL (teardown, kill faults), pausing is SIGSTOP.

use crate::client::http::ReferenceClient;
use crate::client::{Client, DataType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{NodeStatus, Target};
use crate::client::etcd::{EtcdClient, EtcdReads};
use crate::client::http::NodeHttp;
use crate::client::redis::{RedisClient, SentinelConf};
use crate::client::BoxFuture;
use crate::nemesis::Family;
use crate::runtime::{Launch, NodeSpec};

/// A target file that cannot be used: where and why.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    At { path: String, line: usize, message: String },
    #[error("{path}: {message}")]
    Toml { path: String, message: String },
}

/// The client protocol a described target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    /// docs/node-api.md (faultline-node or anything that implements it).
    Reference,
    Etcd,
    Redis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartSection {
    command: Spanned<String>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    #[serde(default = "default_peer")]
    peer: Spanned<String>,
    #[serde(default = "default_sep")]
    peer_separator: String,
}

fn default_peer() -> Spanned<String> {
    Spanned::new(0..0, "{id}={addr}".to_string())
}
fn default_sep() -> String {
    ",".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeSection {
    command: Spanned<String>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
    /// The node is the leader when the probe's stdout contains this; without it no node is
    /// reported leader (set `has_leader = false` for a leaderless system).
    leader_if_stdout_contains: Option<String>,
    #[serde(default = "default_probe_timeout")]
    timeout_ms: u64,
}

fn yes() -> bool {
    true
}

fn default_probe_timeout() -> u64 {
    2000
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdSection {
    reads: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisSection {
    sentinel_port: Option<u16>,
    #[serde(default = "default_master")]
    sentinel_master: String,
}

fn default_master() -> String {
    "mymaster".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    name: Option<String>,
    protocol: ProtocolName,
    faults: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    binds_source_address: bool,
    /// False for leaderless systems: setup waits for every node to answer, not for a leader.
    #[serde(default = "yes")]
    has_leader: bool,
    start: StartSection,
    probe: Option<ProbeSection>,
    #[serde(default)]
    etcd: EtcdSection,
    #[serde(default)]
    redis: RedisSection,
}

/// How the described target's clients talk to it.
#[derive(Clone)]
pub enum FileProtocol {
    Reference(NodeHttp),
    Etcd(EtcdClient),
    Redis(RedisClient),
}

/// A probe command.
#[derive(Clone, Debug)]
pub struct Probe {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub leader_marker: Option<String>,
    pub timeout: Duration,
}

/// A target described by a TOML file.
pub struct FileTarget {
    pub name: String,
    pub path: PathBuf,
    pub protocol: FileProtocol,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub peer: String,
    pub peer_separator: String,
    pub probe: Option<Probe>,
    /// Families the file does not list, with the reason reported.
    pub refused: BTreeMap<Family, String>,
    pub binds_source: bool,
    pub has_leader: bool,
    pub admin_token: String,
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

const NODE_PLACEHOLDERS: &[&str] = &["id", "ip", "port", "addr", "data_dir", "peers"];
const PEER_PLACEHOLDERS: &[&str] = &["id", "ip", "port", "addr"];

/// The placeholder names in `s` (`{name}`), or an error for an unclosed brace.
fn placeholders(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let j = after.find('}').ok_or_else(|| format!("unclosed `{{` in {s:?}"))?;
        out.push(after[..j].to_string());
        rest = &after[j + 1..];
    }
    Ok(out)
}

/// Replaces `{name}` by its value for every pair in `vars`.
pub fn expand(s: &str, vars: &[(&str, String)]) -> String {
    let mut out = s.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Finds `command`: an absolute path, a path relative to the file's folder, or a name in PATH.
pub fn resolve_program(command: &str, base: &Path) -> Option<PathBuf> {
    let p = Path::new(command);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    if command.contains('/') {
        let q = base.join(p);
        return q.is_file().then_some(q);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(command)).find(|c| c.is_file()))
}

impl FileTarget {
    /// Reads and validates `path`. `timeout` bounds every client call; `admin_token` and `http`
    /// serve the reference protocol.
    pub fn load(path: &Path, timeout: Duration, admin_token: &str, http: NodeHttp) -> Result<FileTarget, FileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| FileError::Read { path: shown.clone(), message: e.to_string() })?;
        // toml's message already names the line and column and quotes the text.
        let f: TargetFile =
            toml::from_str(&text).map_err(|e| FileError::Toml { path: shown.clone(), message: e.to_string() })?;
        let at = |span: std::ops::Range<usize>, message: String| FileError::At {
            path: shown.clone(),
            line: line_of(&text, span.start),
            message,
        };
        let check = |s: &Spanned<String>, allowed: &[&str], what: &str| -> Result<(), FileError> {
            for name in placeholders(s.get_ref()).map_err(|m| at(s.span(), m))? {
                if !allowed.contains(&name.as_str()) {
                    return Err(at(
                        s.span(),
                        format!(
                            "unknown placeholder {{{name}}} in {what}: expected one of {}",
                            allowed.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(" ")
                        ),
                    ));
                }
            }
            Ok(())
        };
        for a in &f.start.args {
            check(a, NODE_PLACEHOLDERS, "start.args")?;
        }
        for v in f.start.env.values() {
            check(v, NODE_PLACEHOLDERS, "start.env")?;
        }
        check(&f.start.peer, PEER_PLACEHOLDERS, "start.peer")?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let program = resolve_program(f.start.command.get_ref(), &base).ok_or_else(|| {
            at(
                f.start.command.span(),
                format!(
                    "start.command {:?} not found (absolute, relative to the file, or in PATH)",
                    f.start.command.get_ref()
                ),
            )
        })?;
        let probe = match &f.probe {
            None => None,
            Some(p) => {
                for a in &p.args {
                    check(a, NODE_PLACEHOLDERS, "probe.args")?;
                }
                let program = resolve_program(p.command.get_ref(), &base).ok_or_else(|| {
                    at(p.command.span(), format!("probe.command {:?} not found", p.command.get_ref()))
                })?;
                if !(100..=60_000).contains(&p.timeout_ms) {
                    return Err(FileError::Toml {
                        path: shown.clone(),
                        message: format!("probe.timeout_ms must be in [100, 60000], got {}", p.timeout_ms),
                    });
                }
                Some(Probe {
                    program,
                    args: p.args.iter().map(|a| a.get_ref().clone()).collect(),
                    leader_marker: p.leader_if_stdout_contains.clone(),
                    timeout: Duration::from_millis(p.timeout_ms),
                })
            }
        };
        let mut listed = Vec::new();
        if let Some(faults) = &f.faults {
            for s in faults {
                let fam: Family = s.get_ref().parse().map_err(|m: String| at(s.span(), m))?;
                listed.push(fam);
            }
        }
        let name = f.name.clone().unwrap_or_else(|| {
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into())
        });
        let mut refused = BTreeMap::new();
        for fam in Family::ALL {
            if f.faults.is_some() && !listed.contains(&fam) {
                refused.insert(fam, format!("{} is not among the faults {shown} lists", fam.as_str()));
            } else if fam == Family::Rebalance {
                refused.insert(fam, super::no_shards(&name));
            } else if fam == Family::Clock && f.protocol != ProtocolName::Reference {
                // Only the reference API has a settable clock; faking a process's clock from
                // outside (libfaketime) does not reach Go programs or Redis.
                refused.insert(
                    fam,
                    format!("clock skew is unavailable for {name}: only the reference node API has a settable clock"),
                );
            }
        }
        if f.protocol != ProtocolName::Etcd && f.etcd.reads.is_some() {
            return Err(FileError::Toml { path: shown, message: "[etcd] options need protocol = \"etcd\"".into() });
        }
        let protocol = match f.protocol {
            ProtocolName::Reference => FileProtocol::Reference(http),
            ProtocolName::Etcd => {
                let reads = match &f.etcd.reads {
                    None => EtcdReads::Linearizable,
                    Some(r) => r.get_ref().parse().map_err(|m: String| at(r.span(), m))?,
                };
                FileProtocol::Etcd(
                    EtcdClient::new(timeout, reads)
                        .map_err(|e| FileError::Toml { path: shown.clone(), message: e.to_string() })?,
                )
            }
            ProtocolName::Redis => FileProtocol::Redis(RedisClient {
                timeout,
                sentinel: f
                    .redis
                    .sentinel_port
                    .map(|port| SentinelConf { port, master: f.redis.sentinel_master.clone() }),
                data: crate::client::DataType::Register,
            }),
        };
        Ok(FileTarget {
            name,
            path: path.to_path_buf(),
            protocol,
            program,
            args: f.start.args.iter().map(|a| a.get_ref().clone()).collect(),
            env: f.start.env.iter().map(|(k, v)| (k.clone(), v.get_ref().clone())).collect(),
            peer: f.start.peer.get_ref().clone(),
            peer_separator: f.start.peer_separator.clone(),
            probe,
            refused,
            binds_source: f.binds_source_address,
            has_leader: f.has_leader,
            admin_token: admin_token.to_string(),
        })
    }

    fn vars(&self, node: &NodeSpec, all: &[NodeSpec], data_dir: &Path) -> Vec<(&'static str, String)> {
        let peers: Vec<String> = all
            .iter()
            .map(|n| {
                expand(
                    &self.peer,
                    &[("id", n.id.clone()), ("ip", n.ip.to_string()), ("port", n.port.to_string()), ("addr", n.addr())],
                )
            })
            .collect();
        let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        vec![
            ("id", node.id.clone()),
            ("ip", node.ip.to_string()),
            ("port", node.port.to_string()),
            ("addr", node.addr()),
            ("data_dir", dir.display().to_string()),
            ("peers", peers.join(&self.peer_separator)),
        ]
    }

    async fn probe_status(&self, probe: &Probe, addr: &str) -> Result<NodeStatus, String> {
        let (ip, port) = addr.rsplit_once(':').unwrap_or((addr, ""));
        let vars = [("ip", ip.to_string()), ("port", port.to_string()), ("addr", addr.to_string())];
        let args: Vec<String> = probe.args.iter().map(|a| expand(a, &vars)).collect();
        let mut cmd = tokio::process::Command::new(&probe.program);
        cmd.args(&args).stdin(std::process::Stdio::null()).kill_on_drop(true);
        let out = tokio::time::timeout(probe.timeout, cmd.output())
            .await
            .map_err(|_| format!("probe timed out after {} ms", probe.timeout.as_millis()))?
            .map_err(|e| format!("probe {}: {e}", probe.program.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "probe exited with {}: {}",
                out.status,
                err.trim().chars().take(200).collect::<String>()
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let leader = probe.leader_marker.as_deref().is_some_and(|m| stdout.contains(m));
        Ok(NodeStatus { state: if leader { "leader".into() } else { "ready".into() }, ..NodeStatus::default() })
    }
}

impl Target for FileTarget {
    fn client(&self, data: DataType) -> Result<Arc<dyn Client>, String> {
        match &self.protocol {
            FileProtocol::Reference(http) => Ok(Arc::new(ReferenceClient { http: http.clone(), data })),
            FileProtocol::Etcd(c) => Ok(Arc::new(c.for_data(data)?)),
            FileProtocol::Redis(c) => Ok(Arc::new(c.for_data(data)?)),
        }
    }
    fn name(&self) -> &str {
        &self.name
    }

    fn launch(&self, node: &NodeSpec, all: &[NodeSpec], data_dir: &Path, log: &Path) -> Launch {
        let vars = self.vars(node, all, data_dir);
        let args: Vec<String> = self.args.iter().map(|a| expand(a, &vars)).collect();
        let data = vars.iter().find(|(k, _)| *k == "data_dir").map(|(_, v)| v.clone()).unwrap_or_default();
        if !args.iter().any(|a| a.contains(&data)) {
            tracing::warn!(
                "{}: no argument names {{data_dir}}; `faultline cleanup` cannot recognise its processes",
                self.name
            );
        }
        let mut env: Vec<(String, String)> = self.env.iter().map(|(k, v)| (k.clone(), expand(v, &vars))).collect();
        if matches!(self.protocol, FileProtocol::Reference(_)) {
            env.push(("FAULTLINE_ADMIN_TOKEN".into(), self.admin_token.clone()));
        }
        Launch { program: self.program.clone(), args, env, log: log.to_path_buf() }
    }

    fn status<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<NodeStatus, String>> {
        Box::pin(async move {
            if let Some(p) = &self.probe {
                return self.probe_status(p, addr).await;
            }
            match &self.protocol {
                FileProtocol::Reference(http) => {
                    let v = http.status(addr).await.map_err(|e| format!("{}: {}", e.error, e.message))?;
                    Ok(super::reference::node_status_of(&v))
                }
                FileProtocol::Etcd(c) => super::etcd::etcd_status(c, addr).await,
                FileProtocol::Redis(c) => super::redis::redis_status(c, addr, 0).await,
            }
        })
    }

    fn set_clock<'a>(&'a self, addr: &'a str, offset_ms: Option<i64>) -> BoxFuture<'a, Result<i64, String>> {
        Box::pin(async move {
            if let Some(why) = self.refused.get(&Family::Clock) {
                return Err(why.clone());
            }
            let FileProtocol::Reference(http) = &self.protocol else {
                return Err("clock skew needs the reference node API".into());
            };
            let body = match offset_ms {
                Some(ms) => serde_json::json!({ "offset_ms": ms }),
                None => serde_json::json!({ "reset": true }),
            };
            let v = http.clock(addr, &body).await.map_err(|e| format!("{}: {}", e.error, e.message))?;
            v.get("offset_ms")
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| format!("clock answer without offset_ms: {v}"))
        })
    }

    fn fault_support(&self, family: Family) -> Result<(), String> {
        self.refused.get(&family).map_or(Ok(()), |why| Err(why.clone()))
    }

    fn binds_source_address(&self) -> bool {
        self.binds_source
    }

    fn has_leader(&self) -> bool {
        self.has_leader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<FileTarget, FileError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, text).unwrap();
        let http = NodeHttp::new(Duration::from_secs(1), "tok").unwrap();
        FileTarget::load(&p, Duration::from_secs(1), "tok", http)
    }

    const GOOD: &str = r#"
protocol = "etcd"
faults = ["partition", "kill"]
[start]
command = "/bin/sh"
args = ["--name", "{id}", "--data-dir", "{data_dir}", "--initial-cluster", "{peers}"]
peer = "{id}=http://{ip}:2380"
"#;

    #[test]
    fn a_good_file_loads_and_expands() {
        let t = load_str(GOOD).unwrap();
        assert_eq!(t.name, "t");
        assert!(t.fault_support(Family::Kill).is_ok());
        assert!(t.fault_support(Family::Pause).unwrap_err().contains("not among"));
        assert!(t.fault_support(Family::Clock).is_err());
        let nodes: Vec<NodeSpec> = (1..=2)
            .map(|k| NodeSpec { id: format!("n{k}"), ip: std::net::Ipv4Addr::new(10, 0, 0, k), port: 2379 })
            .collect();
        let l = t.launch(&nodes[1], &nodes, Path::new("/nonexistent/n2"), Path::new("/tmp/x.log"));
        assert_eq!(l.args[1], "n2");
        assert_eq!(l.args[3], "/nonexistent/n2");
        assert_eq!(l.args[5], "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380");
    }

    #[test]
    fn errors_name_the_line() {
        let bad = GOOD.replace("\"{id}\", \"--data-dir\"", "\"{idd}\", \"--data-dir\"");
        let e = load_str(&bad).err().unwrap().to_string();
        assert!(e.contains("t.toml:6:") && e.contains("{idd}") && e.contains("{data_dir}"), "{e}");
        let e = load_str(&GOOD.replace("\"kill\"", "\"flood\"")).err().unwrap().to_string();
        assert!(e.contains("t.toml:3:") && e.contains("flood"), "{e}");
        let e = load_str(&GOOD.replace("/bin/sh", "no-such-program-xyz")).err().unwrap().to_string();
        assert!(e.contains("t.toml:5:") && e.contains("not found"), "{e}");
        let e = load_str(&GOOD.replace("protocol = \"etcd\"", "protocol = \"zookeeper\"")).err().unwrap().to_string();
        assert!(e.contains("line 2") && e.contains("zookeeper"), "{e}");
        let e = load_str(&format!("{GOOD}\nbogus = 1\n")).err().unwrap().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = load_str(&GOOD.replace("{peers}", "{peers")).err().unwrap().to_string();
        assert!(e.contains("unclosed"), "{e}");
    }
}
