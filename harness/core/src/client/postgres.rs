//! PostgreSQL's statements for the SQL client ([`super::sql`]): connecting as `postgres` to the
//! `postgres` database of the run's fresh cluster, `BEGIN ISOLATION LEVEL ...`, the micro-ops
//! and the mapping of errors (a SQLSTATE means the server answered and the connection is
//! usable; none means the connection broke).

use std::time::Duration;

use serde_json::{json, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::sql::{bad_value, parse_list, table_of, DbError, Isolation, Micro, REGISTER_TABLE};

/// Opens a connection to `addr` (`IP:PORT`) within `timeout`; its I/O task runs on the current
/// runtime and ends when the [`Client`] is dropped.
pub async fn connect(addr: &str, timeout: Duration) -> Result<Client, DbError> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| DbError::connection(format!("bad address {addr}")))?;
    let port: u16 = port.parse().map_err(|_| DbError::connection(format!("bad port in {addr}")))?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host).port(port).user("postgres").dbname("postgres").connect_timeout(timeout);
    let (client, connection) = cfg.connect(NoTls).await.map_err(|e| error(&e))?;
    tokio::spawn(async move {
        // Ends with an error when the server goes away; the client then reports it as closed.
        let _ = connection.await;
    });
    Ok(client)
}

/// The error as the SQL client sees it.
pub fn error(e: &tokio_postgres::Error) -> DbError {
    match e.code() {
        Some(code) => {
            let label = if *code == SqlState::T_R_SERIALIZATION_FAILURE {
                "serialization-failure".to_string()
            } else if *code == SqlState::T_R_DEADLOCK_DETECTED {
                "deadlock".to_string()
            } else {
                format!("sql-{}", code.code())
            };
            let message = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string());
            DbError { server: true, label, message }
        }
        None => DbError::connection(e),
    }
}

/// A statement without parameters or results (`COMMIT`, `ROLLBACK`, `SELECT 1`).
pub async fn simple(c: &Client, sql: &str) -> Result<(), DbError> {
    c.batch_execute(sql).await.map_err(|e| error(&e))
}

/// Whether the server is a standby replaying a primary's WAL.
pub async fn in_recovery(c: &Client) -> Result<bool, DbError> {
    let row = c.query_one("SELECT pg_is_in_recovery()", &[]).await.map_err(|e| error(&e))?;
    row.try_get(0).map_err(|e| bad_value(e.to_string()))
}

pub async fn begin(c: &Client, isolation: Isolation) -> Result<(), DbError> {
    simple(c, &format!("BEGIN ISOLATION LEVEL {}", isolation.sql())).await
}

/// Runs one micro-op; a read's value (a list, an integer or null), null for a write.
pub async fn micro(c: &Client, m: &Micro) -> Result<Value, DbError> {
    match m {
        Micro::Append(k, v) => {
            let t = table_of(k);
            let sql = format!(
                "INSERT INTO {t} AS t (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = t.v || ',' || $2"
            );
            c.execute(&sql, &[k, &v.to_string()]).await.map_err(|e| error(&e))?;
            Ok(Value::Null)
        }
        Micro::Write(k, v) => {
            let sql = format!(
                "INSERT INTO {REGISTER_TABLE} AS t (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2"
            );
            c.execute(&sql, &[k, v]).await.map_err(|e| error(&e))?;
            Ok(Value::Null)
        }
        Micro::ReadList(k) => read_list(c, k).await,
        Micro::ReadRegister(k) => read_register(c, k).await,
    }
}

/// An rw-register read: the key's value, null when it has no row.
async fn read_register(c: &Client, k: &str) -> Result<Value, DbError> {
    if let Some(row) =
        c.query_opt(&format!("SELECT v FROM {REGISTER_TABLE} WHERE k = $1"), &[&k]).await.map_err(|e| error(&e))?
    {
        let v: i64 = row.try_get(0).map_err(|e| bad_value(e.to_string()))?;
        return Ok(json!(v));
    }
    Ok(Value::Null)
}

/// A list-append read: the key's list, `[]` when it has no row.
async fn read_list(c: &Client, k: &str) -> Result<Value, DbError> {
    let row =
        c.query_opt(&format!("SELECT v FROM {} WHERE k = $1", table_of(k)), &[&k]).await.map_err(|e| error(&e))?;
    let text: String = match row {
        Some(r) => r.try_get(0).map_err(|e| bad_value(e.to_string()))?,
        None => String::new(),
    };
    let list = parse_list(&text).map_err(bad_value)?;
    Ok(json!(list))
}
