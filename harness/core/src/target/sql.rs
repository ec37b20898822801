//! The SQL targets: Debian's PostgreSQL 15 (`--target postgres`) and MariaDB 10.11
//! (`--target mariadb`): one server on node `n1` of the local runtime, in the node's network
//! namespace, and for PostgreSQL with `replicas=N` N streaming standbys on the next nodes
//! (copied from the primary by `pg_basebackup` at their first start). This module owns how
//! servers are initialised, started and asked whether they are up (and which is the primary);
//! the transactions themselves are the client's (client/sql.rs).
//!
//! Each node is `/bin/sh -c SCRIPT`: on first start the script creates the database cluster in
//! the run folder (`initdb`, or `mariadb-install-db`) as the unprivileged `postgres` / `mysql`
//! user, then `exec`s the server as that user through `setpriv`, so the node's pid is the
//! postmaster's (or mariadbd's) and `kill -9` is a crash of the server. A restart finds the
//! cluster and recovers from its WAL / redo log. Both keep the defaults that make an
//! acknowledged commit durable (`fsync` and `synchronous_commit` on;
//! `innodb_flush_log_at_trx_commit=1`). The server logs to stderr: the node log in the run
//! folder.
//!
//! The run folder may sit under directories only root can search (a test's 0700 temp dir), so
//! the unprivileged server keeps `CAP_DAC_READ_SEARCH` (ambient) to reach its data directory;
//! it owns that directory itself, as both servers require, and its temporary files go there too
//! (`TMPDIR`: the harness's own may not be writable by that user).
//!
//! Clock skew is refused: the machine's single system clock must not be set, and with one
//! server no protocol of the target depends on time (nothing would be tested).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::external::{find_program, ExternalError};
use super::redis::failing_launch;
use super::{NodeStatus, Target};
use crate::client::sql::{Db, Isolation, SqlClient, SqlSettings, APPEND_TABLES, REGISTER_TABLE};
use crate::client::{BoxFuture, Client, DataType};
use crate::nemesis::Family;
use crate::runtime::{Launch, NodeSpec};

/// Why clock faults are not applied (reported, never pretended).
pub const CLOCK_UNAVAILABLE: &str = "clock skew is unavailable for the SQL targets: the machine's single system \
clock must not be set, and a single server's transactions do not depend on its clock";

/// The programs and user of one database.
#[derive(Clone, Debug)]
pub struct SqlPrograms {
    /// `postgres` or `mariadbd`.
    pub server: PathBuf,
    /// `initdb` or `mariadb-install-db`.
    pub init: PathBuf,
    /// The unprivileged user the server runs as.
    pub user: String,
}

/// Options of a SQL target (`--target-opt`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SqlOptions {
    pub isolation: Isolation,
    /// MariaDB's `innodb_snapshot_isolation` (None: the server's default, off in 10.11).
    pub snapshot_isolation: Option<bool>,
    /// PostgreSQL streaming replicas (standbys) beside the primary `n1`.
    pub replicas: usize,
    /// Whether clients also send transactions to the standbys (else to the primary only).
    pub replica_reads: bool,
}

/// Streaming replicas at most (`replicas=N`).
pub const MAX_REPLICAS: usize = 4;

/// PostgreSQL or MariaDB on one node.
pub struct SqlTarget {
    pub db: Db,
    pub opts: SqlOptions,
    pub programs: SqlPrograms,
    pub client: SqlClient,
}

/// The node script: `$2` is the node's data directory (`$1` is `--data-dir`, the local runtime's
/// marker), the rest are the server's arguments. Creates the cluster once, then execs the server.
const POSTGRES_SCRIPT: &str = r#"d="$2"; shift 2; pg="$d/pgdata"
drop() { setpriv --reuid="$FL_USER" --regid="$FL_USER" --init-groups --inh-caps=+dac_read_search --ambient-caps=+dac_read_search -- "$@"; }
if [ ! -f "$pg/PG_VERSION" ]; then
  rm -rf "$pg" && mkdir -m 700 "$pg" && chown "$FL_USER:" "$pg" || exit 1
  TMPDIR="$pg" drop "$FL_INIT" -D "$pg" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >&2 || exit 1
  printf 'host all all 0.0.0.0/0 trust\nhost replication all 0.0.0.0/0 trust\n' >> "$pg/pg_hba.conf" || exit 1
  TMPDIR="$pg" drop "$FL_SERVER" --single -D "$pg" -j postgres < "$d/schema.sql" >&2 || exit 1
fi
export TMPDIR="$pg"
exec setpriv --reuid="$FL_USER" --regid="$FL_USER" --init-groups --inh-caps=+dac_read_search --ambient-caps=+dac_read_search -- "$FL_SERVER" "$@""#;

/// A PostgreSQL standby: its first start copies the primary (`pg_basebackup -R`, retried every
/// 0.5 s, at most 60 times, while the primary starts), then it execs the server, which streams
/// the primary's WAL.
const STANDBY_SCRIPT: &str = r#"d="$2"; shift 2; pg="$d/pgdata"
drop() { setpriv --reuid="$FL_USER" --regid="$FL_USER" --init-groups --inh-caps=+dac_read_search --ambient-caps=+dac_read_search -- "$@"; }
n=0
until [ -f "$pg/PG_VERSION" ]; do
  rm -rf "$pg" && mkdir -m 700 "$pg" && chown "$FL_USER:" "$pg" || exit 1
  TMPDIR="$pg" drop "$FL_BASEBACKUP" -h "$FL_PRIMARY_HOST" -p "$FL_PRIMARY_PORT" -U postgres -D "$pg" -R -X stream >&2 && break
  rm -rf "$pg"; n=$((n+1)); [ $n -ge 60 ] && exit 1; sleep 0.5
done
export TMPDIR="$pg"
exec setpriv --reuid="$FL_USER" --regid="$FL_USER" --init-groups --inh-caps=+dac_read_search --ambient-caps=+dac_read_search -- "$FL_SERVER" "$@""#;

/// As [`POSTGRES_SCRIPT`], for MariaDB (the schema is the server's `--init-file`).
const MARIADB_SCRIPT: &str = r#"d="$2"; shift 2; m="$d/mariadb"
drop() { setpriv --reuid="$FL_USER" --regid="$FL_USER" --init-groups --inh-caps=+dac_read_search --ambient-caps=+dac_read_search -- "$@"; }
if [ ! -d "$m/mysql" ]; then
  rm -rf "$m" && mkdir -m 700 "$m" && chown "$FL_USER:" "$m" || exit 1
  TMPDIR="$m" drop "$FL_INIT" --no-defaults --datadir="$m" --auth-root-authentication-method=normal --skip-test-db >&2 || exit 1
fi
export TMPDIR="$m"
exec setpriv --reuid="$FL_USER" --regid="$FL_USER" --init-groups --inh-caps=+dac_read_search --ambient-caps=+dac_read_search -- "$FL_SERVER" "$@""#;

/// PostgreSQL's schema: the list-append tables and the registers.
pub fn postgres_schema() -> String {
    let mut s = String::new();
    for t in APPEND_TABLES {
        let _ = writeln!(s, "CREATE TABLE {t} (k text PRIMARY KEY, v text NOT NULL);");
    }
    let _ = writeln!(s, "CREATE TABLE {REGISTER_TABLE} (k text PRIMARY KEY, v bigint NOT NULL);");
    s
}

/// MariaDB's `--init-file` (run at every start, so idempotent): the database, a network user
/// without password, the tables.
pub fn mariadb_init() -> String {
    let mut s = String::from("CREATE DATABASE IF NOT EXISTS faultline;\n");
    s += "CREATE USER IF NOT EXISTS 'faultline'@'%';\nGRANT ALL ON faultline.* TO 'faultline'@'%';\n";
    for t in APPEND_TABLES {
        let _ = writeln!(
            s,
            "CREATE TABLE IF NOT EXISTS faultline.{t} (k VARCHAR(64) PRIMARY KEY, v TEXT NOT NULL) ENGINE=InnoDB;"
        );
    }
    let _ = writeln!(
        s,
        "CREATE TABLE IF NOT EXISTS faultline.{REGISTER_TABLE} (k VARCHAR(64) PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB;"
    );
    s
}

/// The server's arguments for `node`, its data in `dir`.
pub fn server_args(db: Db, opts: &SqlOptions, node: &NodeSpec, dir: &Path) -> Vec<String> {
    match db {
        Db::Postgres => {
            let pg = dir.join("pgdata").display().to_string();
            let mut a: Vec<String> = vec!["-D".into(), pg, "-p".into(), node.port.to_string()];
            for c in [
                format!("listen_addresses={}", node.ip),
                // No Unix socket: clients use TCP, and a run folder's path may exceed the
                // socket path limit (107 bytes).
                "unix_socket_directories=".into(),
                "fsync=on".into(),
                "synchronous_commit=on".into(),
            ] {
                a.extend(["-c".into(), c]);
            }
            a
        }
        Db::Mariadb => {
            let m = dir.join("mariadb").display().to_string();
            let mut a = vec![
                "--no-defaults".to_string(),
                format!("--datadir={m}"),
                // Relative to the data directory (mariadbd's working directory): a run folder's
                // path may exceed the socket path limit (107 bytes). Clients use TCP.
                "--socket=mariadb.sock".into(),
                format!("--pid-file={m}/mariadb.pid"),
                format!("--port={}", node.port),
                format!("--bind-address={}", node.ip),
                "--skip-name-resolve".into(),
                format!("--init-file={}", dir.join("init.sql").display()),
                "--innodb-flush-log-at-trx-commit=1".into(),
                format!("--transaction-isolation={}", opts.isolation.sql().replace(' ', "-")),
            ];
            if let Some(on) = opts.snapshot_isolation {
                a.push(format!("--innodb-snapshot-isolation={}", if on { "ON" } else { "OFF" }));
            }
            a
        }
    }
}

/// The options of `db` from `--target-opt` pairs (keys already checked), or why not.
pub fn parse_options(db: Db, o: &BTreeMap<String, String>) -> Result<SqlOptions, String> {
    let isolation = o.get("isolation").map_or(Ok(Isolation::Serializable), |v| v.parse())?;
    let snapshot_isolation = match (db, o.get("snapshot-isolation").map(String::as_str)) {
        (_, None) => None,
        (Db::Mariadb, Some("on")) => Some(true),
        (Db::Mariadb, Some("off")) => Some(false),
        (_, Some(v)) => return Err(format!("snapshot-isolation={v}: expected on or off")),
    };
    let replicas = match o.get("replicas").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) if n <= MAX_REPLICAS && (n == 0 || db == Db::Postgres) => n,
        Some(Ok(_)) if db == Db::Mariadb => {
            return Err("replicas: MariaDB replication (Galera) is not implemented; replicas=N is PostgreSQL's".into())
        }
        Some(_) => return Err(format!("replicas={}: expected an integer in [0, {MAX_REPLICAS}]", o["replicas"])),
    };
    let replica_reads = match o.get("replica-reads").map(String::as_str) {
        None | Some("off") => false,
        Some("on") if replicas > 0 => true,
        Some("on") => return Err("replica-reads=on needs replicas=N (N ≥ 1)".into()),
        Some(v) => return Err(format!("replica-reads={v}: expected on or off")),
    };
    Ok(SqlOptions { isolation, snapshot_isolation, replicas, replica_reads })
}

/// PostgreSQL's `postgres` and `initdb`: `$FAULTLINE_POSTGRES_BIN` / PATH, else Debian's
/// `/usr/lib/postgresql/<newest>/bin`.
fn postgres_programs() -> Result<(PathBuf, PathBuf), ExternalError> {
    if let Ok(server) = find_program("postgres", "postgresql-15") {
        // Through links in PATH to Debian's bin directory, which holds initdb and pg_basebackup.
        let server = std::fs::canonicalize(&server).unwrap_or(server);
        let init = server.with_file_name("initdb");
        if init.is_file() {
            return Ok((server, init));
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("postgres").is_file() && bin.join("initdb").is_file())
        .collect();
    versions.sort();
    let (_, bin) = versions
        .pop()
        .ok_or_else(|| ExternalError::Missing { program: "postgres".into(), package: "postgresql-15".into() })?;
    Ok((bin.join("postgres"), bin.join("initdb")))
}

/// The target `db` with options `o` (keys already checked): checked before anything is created.
pub fn build(
    db: Db,
    o: &BTreeMap<String, String>,
    op_timeout: Duration,
    nodes: usize,
) -> Result<Arc<dyn Target>, ExternalError> {
    let opts = parse_options(db, o).map_err(ExternalError::Option)?;
    if nodes != 1 + opts.replicas {
        return Err(ExternalError::Unsupported(format!(
            "--target {} runs one server and replicas=N standbys: --nodes {}, got --nodes {nodes}",
            db.name(),
            1 + opts.replicas
        )));
    }
    let (server, init, user) = match db {
        Db::Postgres => {
            let (server, init) = postgres_programs()?;
            (server, init, "postgres")
        }
        Db::Mariadb => (
            find_program("mariadbd", "mariadb-server")?,
            find_program("mariadb-install-db", "mariadb-server")?,
            "mysql",
        ),
    };
    find_program("setpriv", "util-linux")?;
    if opts.replicas > 0 && !init.with_file_name("pg_basebackup").is_file() {
        return Err(ExternalError::Missing { program: "pg_basebackup".into(), package: "postgresql-15".into() });
    }
    // The runtimes name nodes n1..nN in order; the first is the primary (see `launch`).
    let settings = SqlSettings { db, isolation: opts.isolation, timeout: op_timeout, primary: "n1" };
    let client = SqlClient::new(settings);
    let programs = SqlPrograms { server, init, user: user.into() };
    Ok(Arc::new(SqlTarget { db, opts, programs, client }))
}

impl SqlTarget {
    fn write_files(&self, dir: &Path) -> Result<(), String> {
        let (name, text) = match self.db {
            Db::Postgres => ("schema.sql", postgres_schema()),
            Db::Mariadb => ("init.sql", mariadb_init()),
        };
        std::fs::write(dir.join(name), text)
            .map_err(|e| format!("faultline: cannot write {}: {e}", dir.join(name).display()))
    }
}

impl Target for SqlTarget {
    fn name(&self) -> &str {
        self.db.name()
    }

    fn launch(&self, node: &NodeSpec, all: &[NodeSpec], data_dir: &Path, log: &Path) -> Launch {
        let dir = match std::fs::canonicalize(data_dir) {
            Ok(d) => d,
            Err(e) => return failing_launch(&format!("faultline: data dir {}: {e}", data_dir.display()), log),
        };
        if let Err(why) = self.write_files(&dir) {
            return failing_launch(&why, log);
        }
        // The first node is the primary; the others are standbys of it.
        let primary = all.first().filter(|p| p.id != node.id);
        let script = match (self.db, primary) {
            (Db::Postgres, None) => POSTGRES_SCRIPT,
            (Db::Postgres, Some(_)) => STANDBY_SCRIPT,
            (Db::Mariadb, _) => MARIADB_SCRIPT,
        };
        let mut args = vec![
            "-c".to_string(),
            script.into(),
            format!("faultline-{}-node", self.db.name()),
            "--data-dir".into(),
            dir.display().to_string(),
        ];
        args.extend(server_args(self.db, &self.opts, node, &dir));
        let mut env = vec![
            ("FL_USER".to_string(), self.programs.user.clone()),
            ("FL_SERVER".to_string(), self.programs.server.display().to_string()),
            ("FL_INIT".to_string(), self.programs.init.display().to_string()),
        ];
        if let Some(p) = primary {
            env.push((
                "FL_BASEBACKUP".into(),
                self.programs.init.with_file_name("pg_basebackup").display().to_string(),
            ));
            env.push(("FL_PRIMARY_HOST".into(), p.ip.to_string()));
            env.push(("FL_PRIMARY_PORT".into(), p.port.to_string()));
        }
        Launch { program: PathBuf::from("/bin/sh"), args, env, log: log.to_path_buf() }
    }

    fn client(&self, data: DataType) -> Result<Arc<dyn Client>, String> {
        Ok(Arc::new(self.client.for_data(data)?))
    }

    /// Up when a connection answers; the primary is the leader, a standby a follower.
    fn status<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<NodeStatus, String>> {
        Box::pin(async move {
            let state = if self.client.ping(addr).await? { "follower" } else { "leader" };
            Ok(NodeStatus { state: state.into(), ..NodeStatus::default() })
        })
    }

    /// The primary only, unless `replica-reads=on` (then every node: transactions that write
    /// fail on a standby, read-only ones read its possibly stale state).
    fn client_nodes(&self, all: &[NodeSpec]) -> Vec<String> {
        let n = if self.opts.replica_reads { all.len() } else { 1 };
        all.iter().take(n).map(|n| n.id.clone()).collect()
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

    fn node() -> NodeSpec {
        NodeSpec { id: "n1".into(), ip: std::net::Ipv4Addr::new(10, 77, 5, 11), port: 5432 }
    }

    #[test]
    fn postgres_listens_on_the_node_address_and_syncs_its_commits() {
        let o = SqlOptions {
            isolation: Isolation::RepeatableRead,
            snapshot_isolation: None,
            replicas: 0,
            replica_reads: false,
        };
        let a = server_args(Db::Postgres, &o, &node(), Path::new("/r/data/n1")).join(" ");
        assert!(a.starts_with("-D /r/data/n1/pgdata -p 5432"), "{a}");
        assert!(a.contains("-c listen_addresses=10.77.5.11") && a.contains("fsync=on"), "{a}");
    }

    #[test]
    fn mariadb_takes_no_defaults_file_and_sets_snapshot_isolation_only_when_asked() {
        let o = SqlOptions {
            isolation: Isolation::ReadCommitted,
            snapshot_isolation: Some(true),
            replicas: 0,
            replica_reads: false,
        };
        let a = server_args(Db::Mariadb, &o, &node(), Path::new("/r/data/n1"));
        assert_eq!(a[0], "--no-defaults");
        assert!(a.contains(&"--bind-address=10.77.5.11".to_string()) && a.contains(&"--port=5432".to_string()));
        assert!(a.contains(&"--transaction-isolation=READ-COMMITTED".to_string()), "{a:?}");
        assert!(a.contains(&"--innodb-snapshot-isolation=ON".to_string()));
        let plain = SqlOptions { snapshot_isolation: None, ..o };
        assert!(!server_args(Db::Mariadb, &plain, &node(), Path::new("/d")).join(" ").contains("snapshot"));
    }

    #[test]
    fn options_are_checked_before_anything_is_built() {
        let m = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let d = parse_options(Db::Postgres, &m(&[])).unwrap();
        assert_eq!((d.isolation, d.snapshot_isolation), (Isolation::Serializable, None));
        let si = parse_options(Db::Mariadb, &m(&[("isolation", "repeatable-read"), ("snapshot-isolation", "on")]));
        let si = si.unwrap();
        assert_eq!((si.isolation, si.snapshot_isolation), (Isolation::RepeatableRead, Some(true)));
        let r = parse_options(Db::Postgres, &m(&[("replicas", "2"), ("replica-reads", "on")])).unwrap();
        assert_eq!((r.replicas, r.replica_reads), (2, true));
        assert!(parse_options(Db::Postgres, &m(&[("replica-reads", "on")])).unwrap_err().contains("needs replicas"));
        assert!(parse_options(Db::Postgres, &m(&[("replicas", "9")])).unwrap_err().contains("[0, 4]"));
        assert!(parse_options(Db::Mariadb, &m(&[("replicas", "2")])).unwrap_err().contains("Galera"));
        assert!(parse_options(Db::Mariadb, &m(&[("snapshot-isolation", "yes")])).unwrap_err().contains("on or off"));
        assert!(parse_options(Db::Postgres, &m(&[("isolation", "snapshot")])).unwrap_err().contains("serializable"));
        let three = build(Db::Postgres, &m(&[]), Duration::from_secs(1), 3).err().unwrap().to_string();
        assert!(three.contains("--nodes 1"), "{three}");
        let two = build(Db::Postgres, &m(&[("replicas", "2")]), Duration::from_secs(1), 2).err().unwrap().to_string();
        assert!(two.contains("--nodes 3"), "{two}");
    }

    #[test]
    fn schemas_hold_every_table() {
        for t in APPEND_TABLES.iter().chain([&REGISTER_TABLE]) {
            assert!(postgres_schema().contains(&format!("CREATE TABLE {t} ")));
            assert!(mariadb_init().contains(&format!("faultline.{t} ")));
        }
    }
}
