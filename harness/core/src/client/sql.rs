//! The SQL targets' client: list-append and rw-register transactions on PostgreSQL
//! ([`super::postgres`]) and MariaDB ([`super::mariadb`]). This module owns the transaction's
//! shape, its connection pool and the outcome rules; the drivers own the statements.
//!
//! **Schema**, as Jepsen's: list-append keeps each key's list as a comma-separated text column
//! in one of [`APPEND_TABLES`] (chosen by the key, so that transactions span tables), appended
//! with an upsert (`INSERT ... ON CONFLICT DO UPDATE` / `ON DUPLICATE KEY UPDATE`) and read
//! with `SELECT`; rw-register keeps one row per key in [`REGISTER_TABLE`].
//!
//! **Transactions.** Each op is `BEGIN` at the chosen isolation level (on a PostgreSQL standby,
//! which refuses SERIALIZABLE, REPEATABLE READ: [`SqlSettings::isolation_on`]), its micro-ops in
//! order, `COMMIT`. Outcomes:
//! - the connection could not be made, or anything failed before `COMMIT` was sent
//!   (a serialization failure, a deadlock, a lock wait timeout, a broken connection, the
//!   op's timeout): the transaction cannot have committed → `fail` (it is rolled back, or its
//!   connection is dropped, which makes the server roll it back);
//! - `COMMIT` answered with a server error (PostgreSQL's serialization failure at commit) →
//!   `fail`;
//! - `COMMIT` sent and then the connection broke or the timeout passed → `info`.
//!
//! **Connections.** One per concurrent operation, kept in a pool per address and reused (a
//! worker's next operation takes it again); a connection that saw a broken connection or a
//! timeout is dropped. At most one connection attempt per operation, bounded by the op's
//! timeout, and at most [`IDLE_MAX`] idle connections per address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::{timeout_at, Instant};

use super::{unsupported, BoxFuture, Client, Completion, DataType, Op};

/// Tables of list-append (a key's table is [`table_of`]).
pub const APPEND_TABLES: [&str; 3] = ["append0", "append1", "append2"];
/// The rw-register table.
pub const REGISTER_TABLE: &str = "registers";
/// Idle connections kept per address at most.
pub const IDLE_MAX: usize = 64;

/// Which database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Postgres,
    Mariadb,
}

impl Db {
    pub fn name(self) -> &'static str {
        match self {
            Db::Postgres => "postgres",
            Db::Mariadb => "mariadb",
        }
    }
}

/// A transaction isolation level (`--target-opt isolation=...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl Isolation {
    pub const NAMES: &'static str = "read-uncommitted, read-committed, repeatable-read, serializable";

    /// The SQL spelling (`REPEATABLE READ`).
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "READ UNCOMMITTED",
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read-uncommitted" => Ok(Isolation::ReadUncommitted),
            "read-committed" => Ok(Isolation::ReadCommitted),
            "repeatable-read" => Ok(Isolation::RepeatableRead),
            "serializable" => Ok(Isolation::Serializable),
            _ => Err(format!("isolation={s}: expected one of {}", Isolation::NAMES)),
        }
    }
}

/// One micro-op of a transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Micro {
    /// A list-append read: the key's list.
    ReadList(String),
    /// An rw-register read: the key's value or null.
    ReadRegister(String),
    Append(String, i64),
    Write(String, i64),
}

/// The list-append table of `key`.
pub fn table_of(key: &str) -> &'static str {
    let h = key.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
    APPEND_TABLES[h % APPEND_TABLES.len()]
}

/// The micro-ops of a `txn` op of `data`, or why they are not ones this client runs.
pub fn parse_txn(op: &Op, data: DataType) -> Result<Vec<Micro>, String> {
    if op.f != "txn" {
        return Err(format!("unknown-op:{}", op.f));
    }
    let ops = op.value.as_array().ok_or("bad-op: value is not a list")?;
    ops.iter()
        .map(|m| {
            let (f, k) = (m.get(0).and_then(Value::as_str), m.get(1).and_then(Value::as_str));
            let (Some(f), Some(k)) = (f, k) else { return Err(format!("bad-op: {m}")) };
            let v = m.get(2).and_then(Value::as_i64);
            match (f, v, data) {
                ("r", _, DataType::ListAppend) => Ok(Micro::ReadList(k.into())),
                ("r", _, _) => Ok(Micro::ReadRegister(k.into())),
                ("append", Some(v), DataType::ListAppend) => Ok(Micro::Append(k.into(), v)),
                ("w", Some(v), DataType::RwRegister) => Ok(Micro::Write(k.into(), v)),
                _ => Err(format!("bad-op: {m}")),
            }
        })
        .collect()
}

/// A list-append column's text (`1,2,3`) as its elements.
pub fn parse_list(text: &str) -> Result<Vec<i64>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',').map(|e| e.parse::<i64>().map_err(|_| format!("bad-value: list {text:?}"))).collect()
}

/// Why a statement failed.
#[derive(Clone, Debug, PartialEq)]
pub struct DbError {
    /// True when the server answered (the connection is still usable); false when the
    /// connection broke.
    pub server: bool,
    /// Short reason: `serialization-failure`, `deadlock`, `lock-wait-timeout`, `sql-CODE`,
    /// `connection`, `bad-value`.
    pub label: String,
    pub message: String,
}

impl DbError {
    pub fn connection(message: impl std::fmt::Display) -> Self {
        DbError { server: false, label: "connection".into(), message: message.to_string() }
    }
}

/// A value the server returned that is not the workload's (the connection still works).
pub fn bad_value(message: String) -> DbError {
    DbError { server: true, label: "bad-value".into(), message }
}

/// An open connection of either database.
pub enum Conn {
    Postgres(tokio_postgres::Client),
    Mariadb(mysql_async::Conn),
}

/// How a client reaches its database.
#[derive(Clone, Copy, Debug)]
pub struct SqlSettings {
    pub db: Db,
    pub isolation: Isolation,
    /// Bound of a whole operation (connecting included).
    pub timeout: Duration,
    /// The node whose server is the primary (`n1`). On any other node, a PostgreSQL standby,
    /// which refuses SERIALIZABLE, transactions asking for it run at REPEATABLE READ (a
    /// snapshot of the replayed state; writes fail there anyway).
    pub primary: &'static str,
}

impl SqlSettings {
    /// The level of transactions on `node`.
    pub fn isolation_on(&self, node: &str) -> Isolation {
        match self.isolation {
            Isolation::Serializable if node != self.primary => Isolation::RepeatableRead,
            level => level,
        }
    }
}

/// The SQL client of one run: settings, data type, and the shared pool.
#[derive(Clone)]
pub struct SqlClient {
    pub settings: SqlSettings,
    pub data: DataType,
    pool: Arc<Mutex<HashMap<String, Vec<Conn>>>>,
}

impl SqlClient {
    pub fn new(settings: SqlSettings) -> Self {
        SqlClient { settings, data: DataType::ListAppend, pool: Arc::default() }
    }

    /// This client for `data` (sharing the pool), or why the databases' schema has no such data.
    pub fn for_data(&self, data: DataType) -> Result<Self, String> {
        match data {
            DataType::ListAppend | DataType::RwRegister => Ok(SqlClient { data, ..self.clone() }),
            _ => Err(unsupported(self.settings.db.name(), data, &[DataType::ListAppend, DataType::RwRegister])),
        }
    }

    async fn connect(&self, addr: &str) -> Result<Conn, DbError> {
        match self.settings.db {
            Db::Postgres => super::postgres::connect(addr, self.settings.timeout).await.map(Conn::Postgres),
            Db::Mariadb => super::mariadb::connect(addr, &self.settings).await.map(Conn::Mariadb),
        }
    }

    /// An idle connection to `addr`, else a new one.
    async fn take(&self, addr: &str) -> Result<Conn, DbError> {
        let idle = self.pool.lock().expect("pool lock").get_mut(addr).and_then(Vec::pop);
        match idle {
            Some(Conn::Postgres(c)) if c.is_closed() => self.connect(addr).await,
            Some(c) => Ok(c),
            None => self.connect(addr).await,
        }
    }

    fn give_back(&self, addr: &str, conn: Conn) {
        let mut pool = self.pool.lock().expect("pool lock");
        let idle = pool.entry(addr.to_string()).or_default();
        if idle.len() < IDLE_MAX {
            idle.push(conn);
        }
    }

    /// Connects to `addr` and asks whether the server is a standby (PostgreSQL's
    /// `pg_is_in_recovery()`; MariaDB runs `SELECT 1` and is never one), within the timeout:
    /// the target's readiness.
    pub async fn ping(&self, addr: &str) -> Result<bool, String> {
        let deadline = Instant::now() + self.settings.timeout;
        let run = async {
            let mut c = self.take(addr).await?;
            let standby = ping_conn(&mut c).await?;
            Ok::<(Conn, bool), DbError>((c, standby))
        };
        match timeout_at(deadline, run).await {
            Ok(Ok((c, standby))) => {
                self.give_back(addr, c);
                Ok(standby)
            }
            Ok(Err(e)) => Err(format!("{}: {}", e.label, e.message)),
            Err(_) => Err(format!("no answer within {:?}", self.settings.timeout)),
        }
    }

    /// Runs `op` as one transaction on `addr` (see the module doc for the outcomes).
    async fn transaction(&self, addr: &str, node: &str, op: &Op) -> Completion {
        let micro = match parse_txn(op, self.data) {
            Ok(m) => m,
            Err(e) => return Completion::fail(op.value.clone(), e, node),
        };
        let deadline = Instant::now() + self.settings.timeout;
        let mut conn = match timeout_at(deadline, self.take(addr)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Completion::fail(op.value.clone(), format!("connect: {}", e.message), node),
            Err(_) => return Completion::fail(op.value.clone(), "connect-timeout", node),
        };
        let done = match timeout_at(deadline, body(&mut conn, self.settings.isolation_on(node), &micro)).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                // Never committed: roll back (bounded) and keep the connection if it still works.
                if e.server && timeout_at(deadline, rollback(&mut conn)).await.is_ok_and(|r| r.is_ok()) {
                    self.give_back(addr, conn);
                }
                return Completion::fail(op.value.clone(), e.label, node);
            }
            // Dropping the connection makes the server roll the transaction back.
            Err(_) => return Completion::fail(op.value.clone(), "timeout", node),
        };
        match timeout_at(deadline, commit(&mut conn)).await {
            Ok(Ok(())) => {
                self.give_back(addr, conn);
                Completion::ok(Value::Array(done), node)
            }
            Ok(Err(e)) if e.server => {
                self.give_back(addr, conn);
                Completion::fail(op.value.clone(), e.label, node)
            }
            Ok(Err(e)) => Completion::info(op.value.clone(), format!("commit: {}", e.label), node),
            Err(_) => Completion::info(op.value.clone(), "commit: timeout", node),
        }
    }
}

/// `BEGIN` and the micro-ops; the micro-ops as they ended (reads filled in).
async fn body(conn: &mut Conn, isolation: Isolation, micro: &[Micro]) -> Result<Vec<Value>, DbError> {
    match conn {
        Conn::Postgres(c) => super::postgres::begin(c, isolation).await?,
        Conn::Mariadb(c) => super::mariadb::begin(c).await?,
    }
    let mut done = Vec::with_capacity(micro.len());
    for m in micro {
        let v = match conn {
            Conn::Postgres(c) => super::postgres::micro(c, m).await?,
            Conn::Mariadb(c) => super::mariadb::micro(c, m).await?,
        };
        done.push(match m {
            Micro::ReadList(k) | Micro::ReadRegister(k) => json!(["r", k, v]),
            Micro::Append(k, x) => json!(["append", k, x]),
            Micro::Write(k, x) => json!(["w", k, x]),
        });
    }
    Ok(done)
}

async fn commit(conn: &mut Conn) -> Result<(), DbError> {
    match conn {
        Conn::Postgres(c) => super::postgres::simple(c, "COMMIT").await,
        Conn::Mariadb(c) => super::mariadb::simple(c, "COMMIT").await,
    }
}

async fn rollback(conn: &mut Conn) -> Result<(), DbError> {
    match conn {
        Conn::Postgres(c) => super::postgres::simple(c, "ROLLBACK").await,
        Conn::Mariadb(c) => super::mariadb::simple(c, "ROLLBACK").await,
    }
}

async fn ping_conn(conn: &mut Conn) -> Result<bool, DbError> {
    match conn {
        Conn::Postgres(c) => super::postgres::in_recovery(c).await,
        Conn::Mariadb(c) => super::mariadb::simple(c, "SELECT 1").await.map(|()| false),
    }
}

impl Client for SqlClient {
    fn invoke<'a>(&'a self, addr: &'a str, node: &'a str, op: &'a Op) -> BoxFuture<'a, Completion> {
        Box::pin(self.transaction(addr, node, op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::EventType;

    fn txn(value: Value) -> Op {
        Op { f: "txn".into(), key: None, value }
    }

    #[test]
    fn micro_ops_must_be_the_data_types() {
        let la = txn(json!([["append", "k1", 3], ["r", "k2", null]]));
        assert_eq!(
            parse_txn(&la, DataType::ListAppend).unwrap(),
            vec![Micro::Append("k1".into(), 3), Micro::ReadList("k2".into())]
        );
        assert!(parse_txn(&la, DataType::RwRegister).unwrap_err().starts_with("bad-op"));
        let rw = txn(json!([["w", "k1", 3], ["r", "k1", null]]));
        assert_eq!(
            parse_txn(&rw, DataType::RwRegister).unwrap(),
            vec![Micro::Write("k1".into(), 3), Micro::ReadRegister("k1".into())]
        );
        let read = Op { f: "read".into(), key: Some("k".into()), value: Value::Null };
        assert_eq!(parse_txn(&read, DataType::ListAppend).unwrap_err(), "unknown-op:read");
    }

    #[test]
    fn lists_parse_and_keys_spread_over_the_tables() {
        assert_eq!(parse_list("").unwrap(), Vec::<i64>::new());
        assert_eq!(parse_list("1,20,3").unwrap(), vec![1, 20, 3]);
        assert!(parse_list("1,,2").is_err());
        let tables: std::collections::BTreeSet<&str> = (0..30).map(|i| table_of(&format!("k{i}"))).collect();
        assert_eq!(tables.len(), APPEND_TABLES.len());
        assert_eq!(table_of("k7"), table_of("k7"));
    }

    #[test]
    fn isolation_levels_parse_and_bad_values_name_the_choices() {
        assert_eq!("repeatable-read".parse::<Isolation>(), Ok(Isolation::RepeatableRead));
        assert!("snapshot".parse::<Isolation>().unwrap_err().contains(Isolation::NAMES));
        assert_eq!(Isolation::ReadUncommitted.sql(), "READ UNCOMMITTED");
        let s = SqlSettings {
            db: Db::Postgres,
            isolation: Isolation::Serializable,
            timeout: Duration::ZERO,
            primary: "n1",
        };
        assert_eq!((s.isolation_on("n1"), s.isolation_on("n2")), (Isolation::Serializable, Isolation::RepeatableRead));
        let rc = SqlSettings { isolation: Isolation::ReadCommitted, ..s };
        assert_eq!(rc.isolation_on("n2"), Isolation::ReadCommitted);
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_the_transaction_it_never_sent() {
        for db in [Db::Postgres, Db::Mariadb] {
            let s = SqlSettings {
                db,
                isolation: Isolation::Serializable,
                timeout: Duration::from_millis(500),
                primary: "n1",
            };
            let c = SqlClient::new(s);
            // Nothing listens on port 1 of loopback: refused, never sent.
            let op = txn(json!([["append", "k1", 1]]));
            let done = c.invoke("127.0.0.1:1", "n1", &op).await;
            assert_eq!((done.kind, done.value), (EventType::Fail, op.value.clone()), "{db:?}");
            assert!(c.ping("127.0.0.1:1").await.is_err());
        }
    }
}
