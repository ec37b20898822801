//! The Docker runtime: every node is a container of a per-run docker-compose project, and the
//! harness stays on the host.
//!
//! * **Image.** `faultline-node:local`, `FROM scratch` with a static `faultline-node`
//!   (docker/Dockerfile, built by scripts/docker-image.sh; no registry is involved). The image
//!   carries the label `faultline.source-hash`, a hash of the node's sources ([`source_hash`]);
//!   [`ensure_image`] rebuilds it, with a time bound, when it is missing or the label differs.
//! * **Cluster.** Each run writes its own compose file (file format 2.4, docker-compose 1.29 v1)
//!   under `STATE_DIR/docker/RUN_ID/`: project `faultline-RUN_ID`, one service per node with
//!   the target's command line, an `internal` network on a free 10.79.X.0/24 and fixed addresses
//!   10.79.X.(10+K), `init: true` (so SIGTERM reaches the node), the node's data folder of the
//!   run bind-mounted at `/data`. Containers and the network carry the labels `faultline.run`
//!   and `faultline.harness-pid`, which is how `faultline cleanup` finds them
//!   ([`cleanup_leftovers`]). Clients run on the host and reach the containers' addresses
//!   through the network's bridge (the host holds its gateway address).
//! * **Faults.** Kill = `docker kill` (SIGKILL), restart = `docker start` (same address, same
//!   data). Pause = `docker pause` (cgroup freezer): `docker kill -s STOP` would stop only the
//!   init process while the node keeps serving. Network faults are iptables rules *inside each
//!   container's network namespace*, entered from the host with `nsenter -t PID -n` (no
//!   NET_ADMIN in the container): chains `FAULTLINE-IN`/`FAULTLINE-OUT` hooked from
//!   INPUT/OUTPUT of the container's filter table, rewritten atomically by
//!   `iptables-restore --noflush`; the container's nat table (Docker's embedded DNS) is never
//!   touched. Latency is the NFQUEUE consumer of [`super::nfq_delay`], run by the harness on a
//!   thread that entered the container's namespace (`/proc/PID/ns/net`). A restarted container
//!   has a new namespace: the chains, the current fault state and the delay consumers are
//!   re-applied right after `docker start`. No rule is added on the host: Docker's own FORWARD
//!   rules already accept traffic inside the bridge.
//! * **Teardown** dumps each container's log into the run's `nodes/NODE.log`, runs
//!   `docker-compose down` (containers, network and Docker's rules for it) and checks by label
//!   that nothing is left.
//!
//! This file holds the runtime itself; [`image`] the image, [`compose`] the compose file,
//! [`cleanup`] finding and removing what runs left.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use super::cmd::{self, clean_stderr};
use super::nfq_delay::{CutState, Cuts, DelayQueue};
use super::state::{self, CleanupReport};
use super::{netrules, Launch, NetFaults, NetMechanism, NodeSpec, Runtime, RuntimeError};

mod cleanup;
mod compose;
mod image;

pub use cleanup::{cleanup_leftovers, list_labelled, parse_labelled, remove_labelled, Labelled};
use compose::{compose_text, container_name, service_for, Service};
pub use image::{ensure_image, find_repo, source_hash, ImageReport};

/// The image every run uses (the one docker-compose.yml's demo uses too).
pub const IMAGE: &str = "faultline-node:local";
/// Where the node binary lives inside the image.
pub const IMAGE_NODE_PATH: &str = "/faultline-node";
/// Every compose project of a run is named `faultline-RUN_ID`.
pub const PROJECT_PREFIX: &str = "faultline-";
/// Label: the run id (`fl` + 6 hex digits).
pub const LABEL_RUN: &str = "faultline.run";
/// Label: the pid of the harness that owns the run.
pub const LABEL_HARNESS_PID: &str = "faultline.harness-pid";
/// Image label: [`source_hash`] of the sources the image was built from.
pub const LABEL_SOURCE_HASH: &str = "faultline.source-hash";
/// In the run's compose folder: the harness pid, so cleanup can tell a live run's folder.
const HARNESS_PID_FILE: &str = "harness.pid";
/// The node's data folder inside its container.
const CONTAINER_DATA_DIR: &str = "/data";
/// Bound of every docker / docker-compose call but the image build.
const DOCKER_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound of `docker kill` + waiting for the container to be gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(20);

/// Options of the Docker runtime.
#[derive(Clone, Debug)]
pub struct DockerOptions {
    pub nodes: usize,
    pub port: u16,
    /// The compose file of the run goes to `STATE_DIR/docker/RUN_ID/`.
    pub state_dir: PathBuf,
    /// The repository (for building the image); `None` = [`find_repo`].
    pub repo: Option<PathBuf>,
    /// Longest the image build may take.
    pub build_timeout: Duration,
    /// When set and it becomes true (SIGINT), the image build is abandoned.
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

/// One container as the runtime knows it.
#[derive(Clone, Debug)]
struct Container {
    name: String,
    /// Host pid of the container's init process and its start time (field 22 of
    /// /proc/PID/stat), which tells a live container from a reused pid. `None` = not running.
    pid: Option<(u32, u64)>,
    paused: bool,
    log: PathBuf,
}

/// The Docker runtime. Create with [`DockerRuntime::setup`]; always call [`Runtime::teardown`].
pub struct DockerRuntime {
    run_id: String,
    project: String,
    nodes: Vec<NodeSpec>,
    subnet: u8,
    compose_dir: PathBuf,
    /// Services written to the compose file so far, by node id (command line, env, data dir).
    services: Mutex<BTreeMap<String, Service>>,
    containers: Mutex<HashMap<String, Container>>,
    /// The fault state last asked for; re-applied to a container after it restarts.
    faults: Mutex<NetFaults>,
    /// Latency consumers by (node, delay ms), with the container pid whose namespace they are in.
    delays: Mutex<BTreeMap<(String, u64), (u32, DelayQueue)>>,
    /// The links cut now, which the latency consumers drop rather than release.
    cuts: Cuts,
    torn_down: Mutex<bool>,
    /// How the image was obtained (recorded in the harness log).
    pub image: ImageReport,
}

fn err(line: impl Into<String>, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Command { line: line.into(), message: message.into() }
}

/// The shared bounded subprocess helper ([`cmd::run_bounded`]) with the Docker runtime's
/// arguments: a hung dockerd or build must not hang the harness.
pub(super) fn run_bounded(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    cwd: Option<&Path>,
    timeout: Duration,
    cancel: Option<&tokio::sync::watch::Receiver<bool>>,
) -> Result<cmd::Output, RuntimeError> {
    cmd::run_bounded(&cmd::Call { program, args, env, cwd, stdin: None, timeout, cancel })
}

/// [`run_bounded`] with [`DOCKER_CALL_TIMEOUT`]; a non-zero exit is an error quoting stderr.
fn call(program: &str, args: &[&str]) -> Result<String, RuntimeError> {
    let out = run_bounded(program, args, &[], None, DOCKER_CALL_TIMEOUT, None)?;
    if !out.ok {
        return Err(err(
            format!("{program} {}", args.join(" ")),
            format!("{} ({})", clean_stderr(&out.stderr), out.status),
        ));
    }
    Ok(out.stdout)
}

/// Runs `iptables-restore --noflush` inside the network namespace of host pid `pid`.
fn ns_restore(pid: u32, rules: &str) -> Result<(), RuntimeError> {
    let pid_s = pid.to_string();
    let args = ["-t", &pid_s, "-n", "iptables-restore", "-w", "5", "--noflush"];
    let line = format!("nsenter {}", args.join(" "));
    tracing::debug!(target: "faultline::cmd", "{line} <<< {}", rules.replace('\n', " | "));
    let mut command = Command::new("nsenter");
    // Own process group: a Ctrl-C meant for the harness must not kill a heal midway.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(&line, format!("cannot start: {e}")))?;
    child.stdin.take().expect("stdin piped").write_all(rules.as_bytes()).map_err(|e| err(&line, e.to_string()))?;
    // iptables-restore -w 5 bounds its own wait for the xtables lock.
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(err(line, format!("{} ({})", clean_stderr(&String::from_utf8_lossy(&out.stderr)), out.status)));
    }
    Ok(())
}

/// Field 22 (start time) of /proc/PID/stat, if the process lives and is not a zombie.
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 19.
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// True when a Docker engine answers (`docker info` within 10 s).
pub fn engine_available() -> bool {
    run_bounded("docker", &["info", "--format", "{{.ServerVersion}}"], &[], None, Duration::from_secs(10), None)
        .map(|o| o.ok)
        .unwrap_or(false)
}

/// Third octets of 10.79.X.0/24 subnets in use by host addresses or Docker networks.
fn used_subnets() -> Vec<u8> {
    let mut text = call("ip", &["-o", "-4", "addr", "show"]).unwrap_or_default();
    if let Ok(ids) = call("docker", &["network", "ls", "-q"]) {
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"];
            args.extend(ids);
            text += &call("docker", &args).unwrap_or_default();
        }
    }
    let mut used = Vec::new();
    for word in text.split_whitespace() {
        if let Some(rest) = word.strip_prefix("10.79.") {
            if let Some(x) = rest.split('.').next().and_then(|x| x.parse::<u8>().ok()) {
                used.push(x);
            }
        }
    }
    used
}

/// The tools the runtime calls must exist and a Docker engine must answer.
fn check_engine() -> Result<(), RuntimeError> {
    for tool in ["docker", "docker-compose", "nsenter", "iptables-restore"] {
        if !super::cmd::available(tool) {
            return Err(RuntimeError::Unsupported {
                mechanism: "docker".into(),
                what: "the runtime".into(),
                why: format!(
                    "`{tool}` not found (Debian: apt-get install docker.io docker-compose util-linux iptables)"
                ),
            });
        }
    }
    if !engine_available() {
        return Err(RuntimeError::Unsupported {
            mechanism: "docker".into(),
            what: "the runtime".into(),
            why: "no Docker engine answers `docker info` (is dockerd running?)".into(),
        });
    }
    Ok(())
}

/// A third octet X for the run's 10.79.X.0/24 that nothing uses, searched from a random start.
fn free_subnet(rng: &mut impl Rng) -> Result<u8, RuntimeError> {
    let used = used_subnets();
    let start: u16 = rng.random_range(1..=250);
    (0..250u16).map(|i| ((start - 1 + i) % 250 + 1) as u8).find(|x| !used.contains(x)).ok_or_else(|| {
        RuntimeError::Unsupported {
            mechanism: "docker".into(),
            what: "address allocation".into(),
            why: "all 250 subnets 10.79.1-250.0/24 are in use".into(),
        }
    })
}

/// Creates the run's compose folder `STATE_DIR/docker/RUN_ID/` with the harness pid file.
fn create_compose_dir(state_dir: &Path, run_id: &str) -> Result<PathBuf, RuntimeError> {
    let compose_dir = state_dir.join("docker").join(run_id);
    // The compose file will hold the admin token: the folder is the owner's only.
    crate::secret::private_dir(&compose_dir)
        .and_then(|()| std::fs::write(compose_dir.join(HARNESS_PID_FILE), std::process::id().to_string()))
        .map_err(|e| err(format!("create {}", compose_dir.display()), e.to_string()))?;
    Ok(compose_dir)
}

impl DockerRuntime {
    /// Checks the engine, makes sure the image is current, and picks the run's names and
    /// addresses. Containers are created by [`Runtime::start_nodes`].
    pub fn setup(opts: &DockerOptions) -> Result<Self, RuntimeError> {
        assert!(opts.nodes >= 1 && opts.nodes <= 99, "node count checked by the caller");
        check_engine()?;
        let image = ensure_image(opts.repo.as_deref(), opts.build_timeout, opts.cancel.as_ref())?;
        tracing::info!("docker image: {image:?}");
        let mut rng = rand::rng();
        let run_id = format!("{}{:06x}", state::NAME_PREFIX, rng.random::<u32>() & 0x00ff_ffff);
        let subnet = free_subnet(&mut rng)?;
        let nodes: Vec<NodeSpec> = (1..=opts.nodes)
            .map(|k| NodeSpec { id: format!("n{k}"), ip: Ipv4Addr::new(10, 79, subnet, 10 + k as u8), port: opts.port })
            .collect();
        let compose_dir = create_compose_dir(&opts.state_dir, &run_id)?;
        Ok(DockerRuntime {
            project: format!("{PROJECT_PREFIX}{run_id}"),
            run_id,
            nodes,
            subnet,
            compose_dir,
            services: Mutex::new(BTreeMap::new()),
            containers: Mutex::new(HashMap::new()),
            faults: Mutex::new(NetFaults::default()),
            delays: Mutex::new(BTreeMap::new()),
            cuts: Cuts::default(),
            torn_down: Mutex::new(false),
            image,
        })
    }

    /// The compose file of the run.
    pub fn compose_file(&self) -> PathBuf {
        self.compose_dir.join("docker-compose.yml")
    }

    /// The compose project name (`faultline-RUN_ID`).
    pub fn project(&self) -> &str {
        &self.project
    }

    fn compose(&self, args: &[&str]) -> Result<String, RuntimeError> {
        let file = self.compose_file().to_string_lossy().into_owned();
        let mut all = vec!["--no-ansi", "-p", &self.project, "-f", &file];
        all.extend_from_slice(args);
        call("docker-compose", &all)
    }

    fn node(&self, id: &str) -> Result<&NodeSpec, RuntimeError> {
        super::find_node(&self.nodes, id)
    }

    fn ip_of(&self, id: &str) -> Result<Ipv4Addr, RuntimeError> {
        Ok(self.node(id)?.ip)
    }

    fn container(&self, id: &str) -> Option<Container> {
        self.containers.lock().expect("containers lock").get(id).cloned()
    }

    /// The live pid of `id`'s container, if it runs.
    fn live_pid(&self, id: &str) -> Option<u32> {
        let c = self.container(id)?;
        let (pid, start) = c.pid?;
        (proc_start_time(pid) == Some(start)).then_some(pid)
    }

    /// After `docker start`/`up`: learns each container's pid, installs the fault chains in its
    /// new namespace with the current fault state, and (re)starts its delay consumers.
    fn after_start(&self, ids: &[String]) -> Result<(), RuntimeError> {
        let names: Vec<String> = ids.iter().map(|id| container_name(&self.run_id, id)).collect();
        let mut args = vec!["inspect", "-f", "{{.Name}} {{.State.Pid}} {{.State.Running}}"];
        args.extend(names.iter().map(String::as_str));
        let out = call("docker", &args)?;
        let mut first_err = None;
        for line in out.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let [name, pid, running] = w[..] else {
                continue;
            };
            let name = name.trim_start_matches('/');
            let Some(id) = ids.iter().find(|id| container_name(&self.run_id, id) == name) else {
                continue;
            };
            let pid: u32 = pid.parse().unwrap_or(0);
            if running != "true" || pid == 0 {
                first_err.get_or_insert(RuntimeError::Node {
                    id: id.clone(),
                    message: format!("container {name} is not running after start"),
                });
                continue;
            }
            let Some(start) = proc_start_time(pid) else {
                first_err.get_or_insert(RuntimeError::Node {
                    id: id.clone(),
                    message: format!("container {name} exited right after start"),
                });
                continue;
            };
            if let Some(c) = self.containers.lock().expect("containers lock").get_mut(id) {
                c.pid = Some((pid, start));
                c.paused = false;
            }
            let faults = self.faults.lock().expect("faults lock").clone();
            let rules = netrules::setup_text(id, &faults, true, |n| self.ip_of(n).map(|ip| ip.to_string()))?;
            if let Err(e) = ns_restore(pid, &rules) {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self.sync_delays() {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Makes the delay consumers match the wanted (node, ms) pairs of the current fault state,
    /// each in the namespace of its container's current pid.
    fn sync_delays(&self) -> Result<(), RuntimeError> {
        let wanted: Vec<(String, u64)> = {
            let f = self.faults.lock().expect("faults lock");
            let mut w: Vec<(String, u64)> = f.delay.iter().map(|(l, ms)| (l.from.clone(), *ms)).collect();
            w.sort();
            w.dedup();
            w
        };
        let pids: HashMap<String, Option<u32>> = wanted.iter().map(|(n, _)| (n.clone(), self.live_pid(n))).collect();
        let mut delays = self.delays.lock().expect("delays lock");
        // Drop consumers no longer wanted or left in a dead namespace.
        delays.retain(|(node, ms), (pid, _)| {
            wanted.contains(&(node.clone(), *ms)) && pids.get(node) == Some(&Some(*pid))
        });
        let mut first_err = None;
        for (node, ms) in &wanted {
            if delays.contains_key(&(node.clone(), *ms)) {
                continue;
            }
            // A node that is down gets its consumer when it restarts (after_start).
            let Some(Some(pid)) = pids.get(node) else {
                continue;
            };
            let ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
            match DelayQueue::start(Some(ns), netrules::queue_num(*ms), *ms, self.cuts.clone()) {
                Ok(q) => {
                    delays.insert((node.clone(), *ms), (*pid, q));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Appends each container's log (`docker logs`) to its node log file.
    fn dump_logs(&self) {
        let containers: Vec<Container> = self.containers.lock().expect("containers lock").values().cloned().collect();
        for c in containers {
            if let Err(e) = append_logs(&c.name, &c.log) {
                tracing::warn!("docker logs {}: {e}", c.name);
            }
        }
    }

    /// The latency consumers, then every running container's rules, for `faults`.
    fn apply_rules(&self, faults: &NetFaults) -> Result<(), RuntimeError> {
        // Consumers first, so queued packets never wait on a missing consumer (and
        // --queue-bypass covers the gap anyway).
        let started = self.sync_delays();
        let with_delay = started.is_ok();
        let mut first_err = started.err();
        for node in &self.nodes {
            // A container that is down gets the state when it restarts (after_start).
            let Some(pid) = self.live_pid(&node.id) else {
                continue;
            };
            let rules =
                netrules::restore_text(&node.id, faults, with_delay, |n| self.ip_of(n).map(|ip| ip.to_string()))?;
            if let Err(e) = ns_restore(pid, &rules) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Appends `docker logs NAME` (stdout and stderr) to `log`, streamed straight into the file so
/// a long run's log never sits in memory; bounded by [`DOCKER_CALL_TIMEOUT`].
fn append_logs(name: &str, log: &Path) -> Result<(), RuntimeError> {
    let line = format!("docker logs {name}");
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut command = Command::new("docker");
    command.args(["logs", name]).stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|e| err(&line, format!("cannot start: {e}")))?;
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return if st.success() { Ok(()) } else { Err(err(line, st.to_string())) };
        }
        if started.elapsed() >= DOCKER_CALL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(line, "timed out"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Runtime for DockerRuntime {
    fn kind(&self) -> &'static str {
        "docker"
    }
    /// One network namespace per node, with iptables inside it: the same mechanism as the local
    /// runtime's, entered with nsenter instead of `ip netns exec`.
    fn mechanism(&self) -> NetMechanism {
        NetMechanism::Netns
    }
    fn run_id(&self) -> &str {
        &self.run_id
    }
    /// `docker kill` (SIGKILL to the container's init, which takes the node with it) and
    /// `docker pause` (the cgroup freezer, whole container).
    fn process_mechanism(&self, family: crate::nemesis::Family) -> &'static str {
        match family {
            crate::nemesis::Family::Pause => "docker-pause",
            _ => "docker-kill",
        }
    }
    fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    fn start_node(&self, id: &str, launch: &Launch) -> Result<u32, RuntimeError> {
        self.start_nodes(&[(id.to_string(), launch.clone())])?;
        self.container(id)
            .and_then(|c| c.pid)
            .map(|(p, _)| p)
            .ok_or_else(|| RuntimeError::Node { id: id.into(), message: "no pid after start".into() })
    }

    /// New nodes are created together by one `docker-compose up -d` (one compose call instead
    /// of one per node: each costs seconds); nodes whose container exists are `docker start`ed.
    fn start_nodes(&self, launches: &[(String, Launch)]) -> Result<(), RuntimeError> {
        let mut fresh = Vec::new();
        let mut existing = Vec::new();
        for (id, launch) in launches {
            self.node(id)?;
            if self.live_pid(id).is_some() {
                return Err(RuntimeError::Node { id: id.clone(), message: "already running".into() });
            }
            if self.container(id).is_some() {
                existing.push(id.clone());
            } else {
                let service = service_for(launch)?;
                self.services.lock().expect("services lock").insert(id.clone(), service);
                fresh.push(id.clone());
                self.containers.lock().expect("containers lock").insert(
                    id.clone(),
                    Container {
                        name: container_name(&self.run_id, id),
                        pid: None,
                        paused: false,
                        log: launch.log.clone(),
                    },
                );
            }
        }
        if !fresh.is_empty() {
            let text = compose_text(
                &self.run_id,
                std::process::id(),
                self.subnet,
                &self.nodes,
                &self.services.lock().expect("services lock"),
            );
            let file = self.compose_file();
            // The file holds the admin token: 0600 from the moment it exists.
            crate::secret::write_private(&file, text.as_bytes())
                .map_err(|e| err(format!("write {}", file.display()), e.to_string()))?;
            let mut args = vec!["up", "-d", "--no-deps", "--no-color"];
            args.extend(fresh.iter().map(String::as_str));
            self.compose(&args)?;
        }
        if !existing.is_empty() {
            let mut args = vec!["start"];
            let names: Vec<String> = existing.iter().map(|id| container_name(&self.run_id, id)).collect();
            args.extend(names.iter().map(String::as_str));
            call("docker", &args)?;
        }
        let all: Vec<String> = fresh.into_iter().chain(existing).collect();
        self.after_start(&all)
    }

    fn kill_node(&self, id: &str) -> Result<(), RuntimeError> {
        self.node(id)?;
        let Some(c) = self.container(id) else {
            return Ok(());
        };
        let Some(pid) = self.live_pid(id) else {
            if let Some(c) = self.containers.lock().expect("containers lock").get_mut(id) {
                c.pid = None;
                c.paused = false;
            }
            return Ok(());
        };
        if c.paused {
            // Thaw first, so Docker's paused state and ours are cleared together (Docker 20.10
            // would also kill the frozen container).
            call("docker", &["unpause", &c.name])?;
        }
        if let Err(e) = call("docker", &["kill", &c.name]) {
            // It may have died between the check and the kill.
            if self.live_pid(id).is_some() {
                return Err(e);
            }
        }
        // Wait (bounded) until Docker reports it stopped, so a following `docker start` is not
        // a no-op on a container that is still going down.
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            let gone = proc_start_time(pid).is_none();
            if gone {
                let state = call("docker", &["inspect", "-f", "{{.State.Running}}", &c.name]).unwrap_or_default();
                if state.trim() == "false" {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::Node {
                    id: id.into(),
                    message: format!("container {} still running after docker kill", c.name),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(c) = self.containers.lock().expect("containers lock").get_mut(id) {
            c.pid = None;
            c.paused = false;
        }
        // Its delay consumers sat in the namespace that just died.
        let _ = self.sync_delays();
        Ok(())
    }

    fn pause_node(&self, id: &str) -> Result<(), RuntimeError> {
        self.node(id)?;
        let c =
            self.container(id).ok_or_else(|| RuntimeError::Node { id: id.into(), message: "not running".into() })?;
        if self.live_pid(id).is_none() {
            return Err(RuntimeError::Node { id: id.into(), message: "not running".into() });
        }
        if c.paused {
            return Ok(());
        }
        call("docker", &["pause", &c.name])?;
        if let Some(c) = self.containers.lock().expect("containers lock").get_mut(id) {
            c.paused = true;
        }
        Ok(())
    }

    fn resume_node(&self, id: &str) -> Result<(), RuntimeError> {
        self.node(id)?;
        let Some(c) = self.container(id) else {
            return Ok(());
        };
        if !c.paused {
            return Ok(());
        }
        call("docker", &["unpause", &c.name])?;
        if let Some(c) = self.containers.lock().expect("containers lock").get_mut(id) {
            c.paused = false;
        }
        Ok(())
    }

    fn is_running(&self, id: &str) -> bool {
        self.live_pid(id).is_some()
    }

    fn apply_net(&self, faults: &NetFaults) -> Result<(), RuntimeError> {
        for l in faults.links() {
            self.node(&l.from)?;
            self.node(&l.to)?;
        }
        *self.faults.lock().expect("faults lock") = faults.clone();
        let cut: Result<_, RuntimeError> =
            faults.drop.iter().map(|l| Ok((self.ip_of(&l.from)?, self.ip_of(&l.to)?))).collect();
        // The latency consumers hold back packets on a link now cut until the rules below are
        // in force (nfq_delay's module doc); even after an error they must not wait longer.
        *self.cuts.write().expect("cuts lock") = CutState { links: cut?, installed: false };
        let applied = self.apply_rules(faults);
        self.cuts.write().expect("cuts lock").installed = true;
        applied
    }

    fn teardown(&self) -> Result<(), RuntimeError> {
        {
            let mut done = self.torn_down.lock().expect("teardown lock");
            if *done {
                return Ok(());
            }
            *done = true;
        }
        let mut first_err: Option<RuntimeError> = None;
        self.delays.lock().expect("delays lock").clear();
        let created = !self.containers.lock().expect("containers lock").is_empty();
        if created {
            let paused: Vec<String> = self
                .containers
                .lock()
                .expect("containers lock")
                .values()
                .filter(|c| c.paused)
                .map(|c| c.name.clone())
                .collect();
            for name in paused {
                let _ = call("docker", &["unpause", &name]);
            }
            self.dump_logs();
            if self.compose_file().is_file() {
                if let Err(e) = self.compose(&["down", "--volumes", "--remove-orphans", "-t", "1"]) {
                    tracing::warn!("docker-compose down: {e}; removing by label");
                    first_err.get_or_insert(e);
                }
            }
        }
        // Whatever compose did, nothing labelled with this run may remain.
        let mut report = CleanupReport::default();
        remove_labelled(&self.run_id, &mut report);
        for r in &report.removed {
            tracing::debug!("teardown: removed {r}");
        }
        if report.errors.is_empty() {
            // compose's failure is moot when nothing is left.
            first_err = None;
        } else if let Some(e) = report.errors.first() {
            first_err.get_or_insert(err("teardown", e.clone()));
        }
        if first_err.is_none() {
            let _ = std::fs::remove_dir_all(&self.compose_dir);
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for DockerRuntime {
    /// Last resort: a runtime dropped without teardown (a panic) still removes what it made.
    fn drop(&mut self) {
        if !*self.torn_down.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = self.teardown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<NodeSpec> {
        (1..=n)
            .map(|k| NodeSpec { id: format!("n{k}"), ip: Ipv4Addr::new(10, 79, 7, 10 + k as u8), port: 8080 })
            .collect()
    }

    #[test]
    fn compose_file_quotes_every_value_and_escapes_interpolation() {
        let mut services = BTreeMap::new();
        services.insert(
            "n1".to_string(),
            Service {
                args: vec!["--role".into(), "raft".into(), "--data-dir".into(), "/data".into(), "a$b \"q\"".into()],
                env: vec![("FAULTLINE_ADMIN_TOKEN".into(), "t$ok".into())],
                data_dir: Some(PathBuf::from("/tmp/run 1/n1")),
            },
        );
        let y = compose_text("fl0a1b2c", 42, 7, &nodes(2), &services);
        assert!(y.starts_with("# Generated"), "{y}");
        assert!(y.contains("version: \"2.4\""));
        assert!(y.contains("container_name: \"faultline-fl0a1b2c-n1\""), "{y}");
        assert!(y.contains(r#"command: ["--role", "raft", "--data-dir", "/data", "a$$b \"q\""]"#), "{y}");
        assert!(y.contains(r#"environment: {"FAULTLINE_ADMIN_TOKEN": "t$$ok"}"#), "{y}");
        assert!(y.contains(r#"volumes: ["/tmp/run 1/n1:/data"]"#), "{y}");
        assert!(y.contains(r#"ipv4_address: "10.79.7.11""#), "{y}");
        assert!(y.contains(r#""faultline.run": "fl0a1b2c", "faultline.harness-pid": "42""#), "{y}");
        assert!(y.contains("init: true") && y.contains("internal: true"));
        assert!(y.contains(r#"subnet: "10.79.7.0/24""#));
        // n2 has no launch yet: no service for it.
        assert!(!y.contains("  n2:"), "{y}");
    }

    #[test]
    fn data_dir_is_rewritten_to_the_mount_point() {
        let dir = tempfile::tempdir().unwrap();
        let launch = Launch {
            program: PathBuf::from(IMAGE_NODE_PATH),
            args: vec!["--id".into(), "n1".into(), "--data-dir".into(), dir.path().to_string_lossy().into_owned()],
            env: vec![],
            log: dir.path().join("n1.log"),
        };
        let s = service_for(&launch).unwrap();
        assert_eq!(s.args, vec!["--id", "n1", "--data-dir", "/data"]);
        assert_eq!(s.data_dir.as_deref(), Some(std::fs::canonicalize(dir.path()).unwrap().as_path()));
        let bad = Launch { args: vec!["--data-dir".into(), "/does/not/exist/x".into()], ..launch.clone() };
        let e = service_for(&bad).unwrap_err().to_string();
        assert!(e.contains("/does/not/exist/x"), "{e}");
        let dangling = Launch { args: vec!["--data-dir".into()], ..launch.clone() };
        assert!(service_for(&dangling).unwrap_err().to_string().contains("without a value"));
        let other = Launch { program: PathBuf::from("/usr/bin/etcd"), ..launch };
        let e = service_for(&other).unwrap_err().to_string();
        assert!(e.contains("/usr/bin/etcd") && e.contains(IMAGE_NODE_PATH), "{e}");
    }

    #[test]
    fn only_objects_labelled_and_named_as_ours_are_listed() {
        let text = "aaa\t/faultline-fl0a1b2c-n1\tfl0a1b2c\t123\tfaultline-fl0a1b2c\n\
                    bbb\tother\tfl0a1b2c\t123\tsomeone-else\n\
                    ccc\tx\tflannel1\t1\tfaultline-flannel1\n\
                    ddd\ty\tfl0a1b2c\t\tfaultline-fl0a1b2c\n\
                    short line\n";
        let l = parse_labelled(text);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(
            l[0],
            Labelled {
                id: "aaa".into(),
                name: "faultline-fl0a1b2c-n1".into(),
                run_id: "fl0a1b2c".into(),
                harness_pid: Some(123)
            }
        );
        assert_eq!(l[1].harness_pid, None);
    }

    #[test]
    fn source_hash_follows_the_node_sources_only() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        for d in ["docker", "scripts", "targets/node/src", "targets/protocols/src", "harness/core/src"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("targets/node/src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(r.join("docker/Dockerfile"), "FROM scratch").unwrap();
        let h1 = source_hash(r);
        assert_eq!(h1, source_hash(r), "deterministic");
        assert_eq!(h1.len(), 16);
        std::fs::write(r.join("harness/core/src/lib.rs"), "// harness change").unwrap();
        assert_eq!(h1, source_hash(r), "harness sources do not go into the image");
        std::fs::write(r.join("targets/node/src/main.rs"), "fn main() { }").unwrap();
        let h2 = source_hash(r);
        assert_ne!(h1, h2, "a node source change makes the image stale");
        std::fs::write(r.join("targets/protocols/src/lib.rs"), "").unwrap();
        assert_ne!(h2, source_hash(r), "a new file of a dependency counts");
    }

    #[test]
    fn proc_start_time_reads_this_process_and_rejects_the_dead() {
        let me = std::process::id();
        let t = proc_start_time(me).expect("this process lives");
        assert_eq!(proc_start_time(me), Some(t), "stable");
        assert_eq!(proc_start_time(u32::MAX - 1), None);
    }

    #[test]
    fn bounded_commands_time_out_and_report_failures() {
        let t0 = Instant::now();
        let e = run_bounded("sleep", &["5"], &[], None, Duration::from_millis(200), None).err().unwrap().to_string();
        assert!(e.contains("timed out"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(3));
        let o = run_bounded("sh", &["-c", "echo out; echo err >&2; exit 3"], &[], None, Duration::from_secs(5), None)
            .unwrap();
        assert!(!o.ok);
        assert_eq!(o.stdout.trim(), "out");
        assert_eq!(o.stderr.trim(), "err");
        let e = call("sh", &["-c", "echo boom >&2; exit 1"]).unwrap_err().to_string();
        assert!(e.contains("boom"), "{e}");
    }
}
