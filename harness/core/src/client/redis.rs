//! Client of Redis 7 (RESP2 over TCP, written by hand: the harness needs a few commands), with
//! optional Redis Sentinel discovery. Register operations:
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
//! Every operation uses fresh connections (no pooling, see client/http.rs) and is bounded by the
//! timeout. Outcomes: connection refused → fail; `-READONLY`, `-MASTERDOWN`, `-LOADING`,
//! `-NOSCRIPT` and other error replies → fail (Redis rejected the command before executing
//! it); a timeout or a broken connection after sending → info; any failed read → fail.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{BoxFuture, Client, Completion, DataType, Op};

/// Longest bulk string or array accepted from a server (bounds memory on a bad reply).
pub const REPLY_LEN_MAX: i64 = 16 * 1024 * 1024;
/// Deepest nesting of arrays accepted.
const DEPTH_MAX: usize = 8;

/// The cas script: compare the value with ARGV[1], set ARGV[2] on equality.
pub const CAS_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]); return 1 else return 0 end";

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut line = Vec::new();
    // Bounded: a line longer than this is not RESP this client understands.
    let n = (&mut *r).take(64 * 1024).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    if !line.ends_with(b"\r\n") {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "RESP line without CRLF"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "RESP line not UTF-8"))
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Reads one reply.
pub async fn read_reply<R: AsyncBufRead + Unpin + Send>(r: &mut R) -> std::io::Result<Reply> {
    read_reply_depth(r, 0).await
}

fn read_reply_depth<'a, R: AsyncBufRead + Unpin + Send>(
    r: &'a mut R,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Reply>> + Send + 'a>> {
    Box::pin(async move {
        if depth > DEPTH_MAX {
            return Err(bad("RESP arrays nested too deep".into()));
        }
        let line = read_line(r).await?;
        let (tag, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
        let int = |s: &str| s.parse::<i64>().map_err(|_| bad(format!("RESP: bad integer {s:?}")));
        match tag {
            "+" => Ok(Reply::Simple(rest.into())),
            "-" => Ok(Reply::Error(rest.into())),
            ":" => Ok(Reply::Int(int(rest)?)),
            "$" => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                if n > REPLY_LEN_MAX {
                    return Err(bad(format!("RESP bulk of {n} bytes exceeds the limit")));
                }
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).await?;
                if !buf.ends_with(b"\r\n") {
                    return Err(bad("RESP bulk not followed by CRLF".into()));
                }
                buf.truncate(n as usize);
                Ok(Reply::Bulk(Some(buf)))
            }
            "*" => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                if n > REPLY_LEN_MAX / 16 {
                    return Err(bad(format!("RESP array of {n} items exceeds the limit")));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply_depth(r, depth + 1).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            other => Err(bad(format!("RESP: unknown reply type {other:?}"))),
        }
    })
}

/// Why a command did not get a reply.
#[derive(Clone, Debug, PartialEq)]
pub struct CallError {
    /// The command certainly was not executed.
    pub definite: bool,
    pub error: String,
}

/// One connection, used for a few commands then dropped.
pub struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Conn, CallError> {
        match tokio::time::timeout(timeout.min(Duration::from_millis(500)), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(Conn { stream: BufReader::new(s) })
            }
            // Nothing was sent: the command cannot have run.
            Ok(Err(e)) => Err(CallError { definite: true, error: format!("connect: {e}").chars().take(80).collect() }),
            Err(_) => Err(CallError { definite: true, error: "connect-timeout".into() }),
        }
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&str]) -> Result<Reply, CallError> {
        let indefinite = |e: std::io::Error| CallError { definite: false, error: format!("connection: {e}") };
        self.stream.get_mut().write_all(&encode(args)).await.map_err(indefinite)?;
        read_reply(&mut self.stream).await.map_err(indefinite)
    }
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

impl Client for RedisClient {
    fn invoke<'a>(&'a self, addr: &'a str, node: &'a str, op: &'a Op) -> BoxFuture<'a, Completion> {
        Box::pin(RedisClient::invoke(self, addr, node, op))
    }
}

fn int_arg(v: &Value) -> Result<String, CallError> {
    v.as_i64().map(|i| i.to_string()).ok_or_else(|| CallError { definite: true, error: "bad-op".into() })
}

fn rejected(e: &str) -> CallError {
    CallError { definite: true, error: error_tag(e) }
}

/// An unexpected reply to a sent update: it may have happened.
fn unexpected(r: &Reply) -> CallError {
    CallError { definite: false, error: format!("bad-answer: {r:?}").chars().take(80).collect() }
}

fn parse_int(r: &Reply) -> Result<i64, CallError> {
    let t = bulk_text(r).ok_or_else(|| CallError { definite: true, error: format!("bad-answer: {r:?}") })?;
    t.parse::<i64>().map_err(|_| CallError { definite: true, error: format!("bad-answer: {t:?}") })
}

async fn register_cmd(c: &mut Conn, key: &str, op: &Op) -> Result<Value, CallError> {
    match op.f.as_str() {
        "read" => match c.call(&["GET", key]).await? {
            Reply::Bulk(None) => Ok(Value::Null),
            Reply::Error(e) => Err(rejected(&e)),
            r => parse_int(&r).map(|i| json!(i)),
        },
        "write" => match c.call(&["SET", key, &int_arg(&op.value)?]).await? {
            Reply::Simple(s) if s == "OK" => Ok(op.value.clone()),
            Reply::Error(e) => Err(rejected(&e)),
            r => Err(unexpected(&r)),
        },
        "cas" => {
            let from = int_arg(op.value.get(0).unwrap_or(&Value::Null))?;
            let to = int_arg(op.value.get(1).unwrap_or(&Value::Null))?;
            match c.call(&["EVAL", CAS_SCRIPT, "1", key, &from, &to]).await? {
                Reply::Int(1) => Ok(op.value.clone()),
                Reply::Int(0) => Err(CallError { definite: true, error: "cas-mismatch".into() }),
                Reply::Error(e) => Err(rejected(&e)),
                r => Err(unexpected(&r)),
            }
        }
        other => Err(CallError { definite: true, error: format!("unknown-op:{other}") }),
    }
}

async fn set_cmd(c: &mut Conn, key: &str, op: &Op) -> Result<Value, CallError> {
    match op.f.as_str() {
        "add" => match c.call(&["SADD", key, &int_arg(&op.value)?]).await? {
            Reply::Int(_) => Ok(op.value.clone()),
            Reply::Error(e) => Err(rejected(&e)),
            r => Err(unexpected(&r)),
        },
        "read" => match c.call(&["SMEMBERS", key]).await? {
            Reply::Array(Some(items)) => {
                let mut out = items.iter().map(parse_int).collect::<Result<Vec<i64>, _>>()?;
                out.sort_unstable();
                Ok(json!(out))
            }
            Reply::Error(e) => Err(rejected(&e)),
            r => Err(CallError { definite: true, error: format!("bad-answer: {r:?}").chars().take(80).collect() }),
        },
        other => Err(CallError { definite: true, error: format!("unknown-op:{other}") }),
    }
}

async fn counter_cmd(c: &mut Conn, key: &str, op: &Op) -> Result<Value, CallError> {
    match op.f.as_str() {
        "add" => match c.call(&["INCRBY", key, &int_arg(&op.value)?]).await? {
            Reply::Int(_) => Ok(op.value.clone()),
            Reply::Error(e) => Err(rejected(&e)),
            r => Err(unexpected(&r)),
        },
        "read" => match c.call(&["GET", key]).await? {
            Reply::Bulk(None) => Ok(json!(0)),
            Reply::Error(e) => Err(rejected(&e)),
            r => parse_int(&r).map(|i| json!(i)),
        },
        other => Err(CallError { definite: true, error: format!("unknown-op:{other}") }),
    }
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
    let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()));
    ReplicationInfo {
        role: field("role").unwrap_or_default(),
        link_up: field("master_link_status").as_deref() == Some("up"),
        master_host: field("master_host"),
        connected_replicas: field("connected_slaves").and_then(|v| v.parse().ok()).unwrap_or(0),
    }
}

fn bulk_text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(Some(b)) => String::from_utf8(b.clone()).ok(),
        Reply::Simple(s) => Some(s.clone()),
        _ => None,
    }
}

/// A short tag of an error reply: its first word (`READONLY`, `MASTERDOWN`, ...).
fn error_tag(e: &str) -> String {
    e.split_whitespace().next().unwrap_or("ERR").to_string()
}

impl RedisClient {
    /// The primary the sentinel at `sentinel_addr` names.
    async fn master_addr(&self, sentinel_addr: &str, conf: &SentinelConf) -> Result<String, CallError> {
        let mut c = Conn::connect(sentinel_addr, self.timeout).await?;
        match c.call(&["SENTINEL", "get-master-addr-by-name", &conf.master]).await? {
            Reply::Array(Some(v)) if v.len() == 2 => match (bulk_text(&v[0]), bulk_text(&v[1])) {
                (Some(h), Some(p)) => Ok(format!("{h}:{p}")),
                _ => Err(CallError { definite: true, error: "sentinel: bad master address".into() }),
            },
            other => Err(CallError { definite: true, error: format!("sentinel: no master ({other:?})").chars().take(80).collect() }),
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
        let mut c = Conn::connect(&target, self.timeout).await?;
        let key = op.key.clone().unwrap_or_default();
        match self.data {
            DataType::Register => register_cmd(&mut c, &key, op).await,
            DataType::Set => set_cmd(&mut c, &key, op).await,
            DataType::Counter => counter_cmd(&mut c, &key, op).await,
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
            let mut c = Conn::connect(addr, self.timeout).await.map_err(|e| e.error)?;
            match c.call(&["INFO", "replication"]).await.map_err(|e| e.error)? {
                r @ Reply::Bulk(Some(_)) => Ok(parse_replication(&bulk_text(&r).unwrap_or_default())),
                Reply::Error(e) => Err(e),
                other => Err(format!("INFO: unexpected reply {other:?}")),
            }
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
            let mut c = Conn::connect(&saddr, self.timeout).await.map_err(|e| format!("sentinel {}", e.error))?;
            match c.call(&["SENTINEL", "master", &conf.master]).await.map_err(|e| e.error)? {
                Reply::Array(Some(items)) => {
                    let texts: Vec<String> = items.iter().map(|r| bulk_text(r).unwrap_or_default()).collect();
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
                Reply::Error(e) => Err(format!("sentinel: {e}")),
                other => Err(format!("sentinel: unexpected reply {other:?}")),
            }
        };
        tokio::time::timeout(self.timeout, fut).await.unwrap_or_else(|_| Err("sentinel timeout".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> std::io::Result<Reply> {
        let mut r = BufReader::new(bytes);
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn resp_replies_parse() {
        assert_eq!(parse(b"+OK\r\n").await.unwrap(), Reply::Simple("OK".into()));
        assert_eq!(parse(b"-READONLY You can't write\r\n").await.unwrap(), Reply::Error("READONLY You can't write".into()));
        assert_eq!(parse(b":1\r\n").await.unwrap(), Reply::Int(1));
        assert_eq!(parse(b"$-1\r\n").await.unwrap(), Reply::Bulk(None));
        assert_eq!(parse(b"$2\r\n42\r\n").await.unwrap(), Reply::Bulk(Some(b"42".to_vec())));
        assert!(
            parse(b"*2\r\n$9\r\n10.77.1.12\r\n$4\r\n6379\r\n").await.is_err(),
            "a bulk whose length is wrong must not parse as the next item"
        );
        assert_eq!(
            parse(b"*2\r\n$10\r\n10.77.1.12\r\n$4\r\n6379\r\n").await.unwrap(),
            Reply::Array(Some(vec![Reply::Bulk(Some(b"10.77.1.12".to_vec())), Reply::Bulk(Some(b"6379".to_vec()))]))
        );
    }

    #[tokio::test]
    async fn bad_replies_are_errors_not_panics() {
        for b in [&b""[..], b"?x\r\n", b"$abc\r\n", b"+no-crlf", b"$999999999999\r\n", b"*-x\r\n", b"$5\r\nab"] {
            assert!(parse(b).await.is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        let deep = "*1\r\n".repeat(20) + ":1\r\n";
        assert!(parse(deep.as_bytes()).await.is_err());
    }

    #[test]
    fn commands_encode_as_bulk_arrays() {
        assert_eq!(encode(&["SET", "k1", "3"]), b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$1\r\n3\r\n".to_vec());
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
}
