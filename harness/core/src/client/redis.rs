//! Client of Redis 7 through the `redis` crate (RESP2), with optional Redis Sentinel
//! discovery. Register operations:
//!
//! - `read` → `GET k` (nil → `null`);
//! - `write` → `SET k v`;
//! - `cas [from, to]` → a Lua script run atomically by `EVAL`: set `to` when the value is `from`
//!   (1), else nothing (0 → a definite fail).
//!
//! Set operations: `add e` → `SADD k e`; `read` → `SMEMBERS k` (sorted). Counter operations:
//! `add d` → `INCRBY k d`; `read` → `GET k` (nil → 0).
//!
//! With Sentinel (`sentinel_port`), each operation first asks the sentinel on the client's node
//! `SENTINEL get-master-addr-by-name NAME` and then talks to that primary, as Sentinel-aware
//! clients do. A client on the minority side of a partition therefore keeps writing to the old
//! primary its sentinel still believes in: that is how acknowledged writes get lost (Jepsen,
//! Redis, 2013).
//!
//! Every operation uses a fresh connection (no pooling, see client/http.rs) and is bounded by
//! the timeout. Outcomes: a connection that could not be made → fail (nothing was sent); an
//! error reply (`-READONLY`, `-MASTERDOWN`, `-LOADING`, `-NOSCRIPT`, ...) → fail (Redis rejected
//! the command before executing it); a timeout or a broken connection after sending → info; any
//! failed read → fail.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Value as Reply};
use serde_json::{json, Value};

use super::{BoxFuture, Client, Completion, DataType, Op};

/// The cas script: compare the value with ARGV[1], set ARGV[2] on equality.
pub const CAS_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]); return 1 else return 0 end";

/// Longest connection attempt: a refused or unreachable server must not use the whole
/// operation timeout.
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_millis(500);

/// Why a command did not succeed.
#[derive(Clone, Debug, PartialEq)]
pub struct CallError {
    /// True when the command certainly did not run.
    pub definite: bool,
    pub error: String,
}

/// Sentinel discovery settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SentinelConf {
    /// The sentinel listens on the node's IP at this port.
    pub port: u16,
    /// The monitored primary's name.
    pub master: String,
}

/// A client of one Redis deployment.
#[derive(Clone, Debug)]
pub struct RedisClient {
    pub timeout: Duration,
    pub sentinel: Option<SentinelConf>,
    /// What `invoke` speaks.
    pub data: DataType,
}

/// Facts from `INFO replication`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicationInfo {
    /// `master` or `slave`.
    pub role: String,
    /// For a replica: whether its link to the primary is up.
    pub link_up: bool,
    pub master_host: Option<String>,
    pub connected_replicas: u64,
}

/// Parses the text of `INFO replication`.
pub fn parse_replication(text: &str) -> ReplicationInfo {
    let field = |k: &str| {
        text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
    };
    ReplicationInfo {
        role: field("role").unwrap_or_default(),
        link_up: field("master_link_status").as_deref() == Some("up"),
        master_host: field("master_host"),
        connected_replicas: field("connected_slaves").and_then(|v| v.parse().ok()).unwrap_or(0),
    }
}

fn short(s: String) -> String {
    s.chars().take(80).collect()
}

/// The text of a bulk or simple string reply.
fn text(r: &Reply) -> Option<String> {
    match r {
        Reply::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Reply::SimpleString(s) => Some(s.clone()),
        Reply::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// A command's error: an error reply (it has a code: `READONLY`, `MASTERDOWN`, ...) means
/// Redis rejected the command without running it; anything else happened after sending.
fn classify(e: &RedisError) -> CallError {
    match e.code() {
        Some(code) => CallError { definite: true, error: code.to_string() },
        None if e.is_timeout() => CallError { definite: false, error: "timeout".into() },
        None => CallError { definite: false, error: short(format!("connection: {e}")) },
    }
}

/// Opens a connection to `addr` (`host:port`); nothing is sent yet, so every failure is
/// definite.
async fn connect(addr: &str, timeout: Duration) -> Result<MultiplexedConnection, CallError> {
    let refused = |e: RedisError| CallError { definite: true, error: short(format!("connect: {e}")) };
    let client = redis::Client::open(format!("redis://{addr}/")).map_err(refused)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(timeout.min(CONNECT_TIMEOUT_MAX))
        .set_response_timeout(timeout);
    client.get_multiplexed_async_connection_with_config(&config).await.map_err(refused)
}

/// Sends one command (`args[0]` the name) and returns its reply.
async fn call(c: &mut MultiplexedConnection, args: &[&str]) -> Result<Reply, CallError> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async::<Reply>(c).await.map_err(|e| classify(&e))
}

/// The data types the Redis client speaks (no transactions: MULTI/EXEC is not isolation).
pub const REDIS_DATA_TYPES: [DataType; 3] = [DataType::Register, DataType::Set, DataType::Counter];

impl RedisClient {
    /// The same client for `data`; `Err` for a data type it does not speak.
    pub fn for_data(&self, data: DataType) -> Result<RedisClient, String> {
        if !REDIS_DATA_TYPES.contains(&data) {
            return Err(super::unsupported("redis", data, &REDIS_DATA_TYPES));
        }
        Ok(RedisClient { data, ..self.clone() })
    }

    /// The primary the sentinel at `sentinel_addr` names.
    async fn master_addr(&self, sentinel_addr: &str, conf: &SentinelConf) -> Result<String, CallError> {
        let mut c = connect(sentinel_addr, self.timeout).await?;
        match call(&mut c, &["SENTINEL", "get-master-addr-by-name", &conf.master]).await? {
            Reply::Array(v) if v.len() == 2 => match (text(&v[0]), text(&v[1])) {
                (Some(h), Some(p)) => Ok(format!("{h}:{p}")),
                _ => Err(CallError { definite: true, error: "sentinel: bad master address".into() }),
            },
            other => Err(CallError { definite: true, error: short(format!("sentinel: no master ({other:?})")) }),
        }
    }

    /// Where `node`'s clients send commands: the node itself, or the primary its sentinel names.
    async fn resolve(&self, addr: &str) -> Result<String, CallError> {
        match &self.sentinel {
            None => Ok(addr.to_string()),
            Some(conf) => {
                let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
                self.master_addr(&format!("{ip}:{}", conf.port), conf).await
            }
        }
    }

    async fn invoke_inner(&self, addr: &str, op: &Op) -> Result<Value, CallError> {
        let target = self.resolve(addr).await?;
        let mut c = connect(&target, self.timeout).await?;
        let key = op.key.clone().unwrap_or_default();
        match self.data {
            DataType::Register => register_cmd(&mut c, &key, op).await,
            DataType::Set => set_cmd(&mut c, &key, op).await,
            DataType::Counter => counter_cmd(&mut c, &key, op).await,
            DataType::ListAppend | DataType::RwRegister => {
                Err(CallError { definite: true, error: super::unsupported("redis", self.data, &REDIS_DATA_TYPES) })
            }
        }
    }

    /// Performs an op of the client's data type through the node at `addr` (bounded by the
    /// timeout).
    pub async fn invoke(&self, addr: &str, node: &str, op: &Op) -> Completion {
        let result = match tokio::time::timeout(self.timeout, self.invoke_inner(addr, op)).await {
            Ok(r) => r,
            Err(_) => Err(CallError { definite: false, error: "timeout".into() }),
        };
        match result {
            Ok(v) => Completion::ok(v, node),
            Err(e) => super::error_outcome(op, e.definite, e.error, node),
        }
    }

    /// `INFO replication` of the server at `addr`.
    pub async fn replication(&self, addr: &str) -> Result<ReplicationInfo, String> {
        let fut = async {
            let mut c = connect(addr, self.timeout).await.map_err(|e| e.error)?;
            let r = call(&mut c, &["INFO", "replication"]).await.map_err(|e| e.error)?;
            text(&r).map(|t| parse_replication(&t)).ok_or_else(|| format!("INFO: unexpected reply {r:?}"))
        };
        tokio::time::timeout(self.timeout, fut).await.unwrap_or_else(|_| Err("timeout".into()))
    }

    /// What the sentinel on `addr`'s node knows of the deployment: (other sentinels, replicas).
    /// A failover needs both: votes from the other sentinels and a replica to promote (sentinels
    /// learn replicas from the primary's `INFO`, every 10 s).
    pub async fn sentinel_view(&self, addr: &str) -> Result<(u64, u64), String> {
        let Some(conf) = &self.sentinel else { return Ok((0, 0)) };
        let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
        let saddr = format!("{ip}:{}", conf.port);
        let fut = async {
            let mut c = connect(&saddr, self.timeout).await.map_err(|e| format!("sentinel {}", e.error))?;
            match call(&mut c, &["SENTINEL", "master", &conf.master])
                .await
                .map_err(|e| format!("sentinel: {}", e.error))?
            {
                Reply::Array(items) => sentinel_fields(&items),
                other => Err(format!("sentinel: unexpected reply {other:?}")),
            }
        };
        tokio::time::timeout(self.timeout, fut).await.unwrap_or_else(|_| Err("sentinel timeout".into()))
    }
}

/// (other sentinels, replicas) from `SENTINEL master`'s flat list of name/value pairs.
fn sentinel_fields(items: &[Reply]) -> Result<(u64, u64), String> {
    let texts: Vec<String> = items.iter().map(|r| text(r).unwrap_or_default()).collect();
    let field = |name: &str| -> Result<u64, String> {
        texts
            .chunks(2)
            .find(|kv| kv[0] == name)
            .and_then(|kv| kv.get(1))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("sentinel master: no {name}"))
    };
    Ok((field("num-other-sentinels")?, field("num-slaves")?))
}

impl Client for RedisClient {
    fn invoke<'a>(&'a self, addr: &'a str, node: &'a str, op: &'a Op) -> BoxFuture<'a, Completion> {
        Box::pin(RedisClient::invoke(self, addr, node, op))
    }
}

fn int_arg(v: &Value) -> Result<String, CallError> {
    v.as_i64().map(|i| i.to_string()).ok_or_else(|| CallError { definite: true, error: "bad-op".into() })
}

/// An unexpected reply to a sent update: it may have happened.
fn unexpected(r: &Reply) -> CallError {
    CallError { definite: false, error: short(format!("bad-answer: {r:?}")) }
}

/// An integer reply, or the integer in a string reply (`GET` of a counter or register).
fn parse_int(r: &Reply) -> Result<i64, CallError> {
    if let Reply::Int(i) = r {
        return Ok(*i);
    }
    let t = text(r).ok_or_else(|| CallError { definite: true, error: short(format!("bad-answer: {r:?}")) })?;
    t.parse::<i64>().map_err(|_| CallError { definite: true, error: short(format!("bad-answer: {t:?}")) })
}

async fn register_cmd(c: &mut MultiplexedConnection, key: &str, op: &Op) -> Result<Value, CallError> {
    match op.f.as_str() {
        "read" => match call(c, &["GET", key]).await? {
            Reply::Nil => Ok(Value::Null),
            r => parse_int(&r).map(|i| json!(i)),
        },
        "write" => match call(c, &["SET", key, &int_arg(&op.value)?]).await? {
            Reply::Okay => Ok(op.value.clone()),
            Reply::SimpleString(s) if s == "OK" => Ok(op.value.clone()),
            r => Err(unexpected(&r)),
        },
        "cas" => {
            let from = int_arg(op.value.get(0).unwrap_or(&Value::Null))?;
            let to = int_arg(op.value.get(1).unwrap_or(&Value::Null))?;
            match call(c, &["EVAL", CAS_SCRIPT, "1", key, &from, &to]).await? {
                Reply::Int(1) => Ok(op.value.clone()),
                Reply::Int(0) => Err(CallError { definite: true, error: "cas-mismatch".into() }),
                r => Err(unexpected(&r)),
            }
        }
        other => Err(CallError { definite: true, error: format!("unknown-op:{other}") }),
    }
}

async fn set_cmd(c: &mut MultiplexedConnection, key: &str, op: &Op) -> Result<Value, CallError> {
    match op.f.as_str() {
        "add" => match call(c, &["SADD", key, &int_arg(&op.value)?]).await? {
            Reply::Int(_) => Ok(op.value.clone()),
            r => Err(unexpected(&r)),
        },
        "read" => match call(c, &["SMEMBERS", key]).await? {
            Reply::Array(items) | Reply::Set(items) => {
                let mut out = items.iter().map(parse_int).collect::<Result<Vec<i64>, _>>()?;
                out.sort_unstable();
                Ok(json!(out))
            }
            r => Err(CallError { definite: true, error: short(format!("bad-answer: {r:?}")) }),
        },
        other => Err(CallError { definite: true, error: format!("unknown-op:{other}") }),
    }
}

async fn counter_cmd(c: &mut MultiplexedConnection, key: &str, op: &Op) -> Result<Value, CallError> {
    match op.f.as_str() {
        "add" => match call(c, &["INCRBY", key, &int_arg(&op.value)?]).await? {
            Reply::Int(_) => Ok(op.value.clone()),
            r => Err(unexpected(&r)),
        },
        "read" => match call(c, &["GET", key]).await? {
            Reply::Nil => Ok(json!(0)),
            r => parse_int(&r).map(|i| json!(i)),
        },
        other => Err(CallError { definite: true, error: format!("unknown-op:{other}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_are_refused_with_the_types_redis_speaks() {
        let c = RedisClient { timeout: Duration::from_millis(500), sentinel: None, data: DataType::Register };
        assert_eq!(c.for_data(DataType::Counter).unwrap().data, DataType::Counter);
        for d in [DataType::ListAppend, DataType::RwRegister] {
            let Err(e) = c.for_data(d).map(|c| c.data) else { panic!("redis runs no transactions") };
            assert!(
                e.contains(&format!("no client for the {} workload", d.name())) && e.contains("register, set, counter"),
                "{e}"
            );
        }
    }

    #[test]
    fn replication_info_parses() {
        let r = parse_replication("# Replication\r\nrole:slave\r\nmaster_host:10.77.1.11\r\nmaster_link_status:up\r\n");
        assert_eq!(r.role, "slave");
        assert!(r.link_up);
        assert_eq!(r.master_host.as_deref(), Some("10.77.1.11"));
        let m = parse_replication("role:master\r\nconnected_slaves:2\r\n");
        assert_eq!((m.role.as_str(), m.connected_replicas, m.link_up), ("master", 2, false));
    }

    #[test]
    fn replies_read_as_integers_or_errors_never_panics() {
        assert_eq!(parse_int(&Reply::BulkString(b"42".to_vec())), Ok(42));
        assert_eq!(parse_int(&Reply::Int(-3)), Ok(-3));
        assert!(parse_int(&Reply::BulkString(b"x".to_vec())).unwrap_err().definite);
        assert!(parse_int(&Reply::Nil).is_err());
        let pairs: Vec<Reply> = ["name", "m", "num-slaves", "2", "num-other-sentinels", "1"]
            .iter()
            .map(|s| Reply::BulkString(s.as_bytes().to_vec()))
            .collect();
        assert_eq!(sentinel_fields(&pairs), Ok((1, 2)));
        assert!(sentinel_fields(&pairs[..2]).unwrap_err().contains("no num-other-sentinels"));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_definite_fail() {
        // Port 1 on loopback: nothing listens, so the connection is refused and nothing sent.
        let c = RedisClient { timeout: Duration::from_millis(500), sentinel: None, data: DataType::Register };
        let op = Op { f: "write".into(), key: Some("k".into()), value: json!(1) };
        let done = c.invoke("127.0.0.1:1", "n1", &op).await;
        assert_eq!(done.kind, faultline_checker::history::EventType::Fail, "{done:?}");
        assert!(done.error.as_deref().unwrap_or("").starts_with("connect"), "{done:?}");
    }
}
