//! MariaDB's statements for the SQL client ([`super::sql`]): connecting as `faultline` to the
//! `faultline` database (both made by the target's init file), the session's isolation level,
//! `START TRANSACTION`, the micro-ops and the mapping of errors (a server error code means the
//! server answered; anything else means the connection broke).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use serde_json::{json, Value};

use super::sql::{bad_value, parse_list, table_of, DbError, Micro, SqlSettings, REGISTER_TABLE};

/// InnoDB's deadlock (the transaction is rolled back).
pub const ER_LOCK_DEADLOCK: u16 = 1213;
/// InnoDB's lock wait timeout (the statement is rolled back; the client rolls back the rest).
pub const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
/// "Record has changed since last read": a write conflict under `innodb_snapshot_isolation`.
pub const ER_CHECKREAD: u16 = 1020;

/// Opens a connection to `addr` (`IP:PORT`) at the settings' isolation level, within the
/// settings' timeout. Always over TCP: a Unix socket would bypass the network faults.
pub async fn connect(addr: &str, s: &SqlSettings) -> Result<Conn, DbError> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| DbError::connection(format!("bad address {addr}")))?;
    let port: u16 = port.parse().map_err(|_| DbError::connection(format!("bad port in {addr}")))?;
    let opts = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some("faultline"))
        .db_name(Some("faultline"))
        .prefer_socket(false)
        .init(vec![format!("SET SESSION TRANSACTION ISOLATION LEVEL {}", s.isolation.sql())]);
    match tokio::time::timeout(s.timeout, Conn::new(opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(error(e)),
        Err(_) => Err(DbError::connection(format!("no connection within {:?}", s.timeout))),
    }
}

/// The error as the SQL client sees it.
pub fn error(e: mysql_async::Error) -> DbError {
    match e {
        mysql_async::Error::Server(s) => {
            let label = match s.code {
                ER_LOCK_DEADLOCK => "deadlock".to_string(),
                ER_LOCK_WAIT_TIMEOUT => "lock-wait-timeout".to_string(),
                ER_CHECKREAD => "record-changed".to_string(),
                code => format!("sql-{code}"),
            };
            DbError { server: true, label, message: s.message }
        }
        other => DbError::connection(other),
    }
}

/// A statement without parameters or results (`COMMIT`, `ROLLBACK`, `SELECT 1`).
pub async fn simple(c: &mut Conn, sql: &str) -> Result<(), DbError> {
    c.query_drop(sql).await.map_err(error)
}

/// `START TRANSACTION` (the isolation level is the session's, set at connect).
pub async fn begin(c: &mut Conn) -> Result<(), DbError> {
    simple(c, "START TRANSACTION").await
}

/// Runs one micro-op; a read's value (a list, an integer or null), null for a write.
pub async fn micro(c: &mut Conn, m: &Micro) -> Result<Value, DbError> {
    match m {
        Micro::Append(k, v) => {
            let sql = format!(
                "INSERT INTO {} (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = CONCAT(v, ',', ?)",
                table_of(k)
            );
            c.exec_drop(sql, (k.as_str(), v.to_string(), v.to_string())).await.map_err(error)?;
            Ok(Value::Null)
        }
        Micro::Write(k, v) => {
            let sql = format!("INSERT INTO {REGISTER_TABLE} (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = ?");
            c.exec_drop(sql, (k.as_str(), *v, *v)).await.map_err(error)?;
            Ok(Value::Null)
        }
        Micro::ReadList(k) => {
            let sql = format!("SELECT v FROM {} WHERE k = ?", table_of(k));
            let text: Option<String> = c.exec_first(sql, (k.as_str(),)).await.map_err(error)?;
            Ok(json!(parse_list(text.as_deref().unwrap_or("")).map_err(bad_value)?))
        }
        Micro::ReadRegister(k) => {
            let sql = format!("SELECT v FROM {REGISTER_TABLE} WHERE k = ?");
            let v: Option<i64> = c.exec_first(sql, (k.as_str(),)).await.map_err(error)?;
            Ok(v.map_or(Value::Null, |v| json!(v)))
        }
    }
}
