//! Client of etcd 3.4 through its v3 JSON gateway (`POST /v3/kv/range|put|txn`,
//! `POST /v3/maintenance/status`). Register operations:
//!
//! - `read`  → `range` of the key (linearizable by default; with [`EtcdReads::Serializable`] the
//!   member answers from its own state without a quorum round, which may be stale);
//! - `write` → `put`;
//! - `cas [from, to]` → a `txn` comparing the key's value with `from` and putting `to` on success.
//!   `succeeded: false` (proto3 omits false fields) means the compare failed: a definite fail.
//!
//! Set operations (a grow-only set is a key prefix, one etcd key per element):
//!
//! - `add e` → `put` of `<key>/e/<e>` (idempotent: adding twice leaves one element);
//! - `read`  → `range` over the prefix `<key>/e/`, keys only, the elements parsed back from the
//!   key names (same read modes as registers).
//!
//! etcd has no counter a client can increment atomically without a read-modify-write loop, so
//! there is no counter client: `--target etcd --workload counter` is refused up front.
//!
//! Keys and values travel base64-encoded (the gateway's JSON form of `bytes`); values are the
//! decimal text of the integer. Outcomes follow the reference client (client/http.rs): an
//! unreachable member (connect refused) → fail; a timeout, a broken connection or a gateway
//! error on a write or cas → info (etcd may have committed it); any failed read → fail.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use super::{BoxFuture, Client, Completion, DataType, Op};

/// How reads are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdReads {
    /// Quorum reads (etcd's default): strict-serializable with the writes.
    Linearizable,
    /// `serializable: true`: served from the member's local state, possibly stale.
    Serializable,
}

impl std::str::FromStr for EtcdReads {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linearizable" => Ok(Self::Linearizable),
            "serializable" => Ok(Self::Serializable),
            other => Err(format!("unknown etcd read mode {other:?}: expected linearizable or serializable")),
        }
    }
}

/// What a member says about itself (`/v3/maintenance/status`).
#[derive(Clone, Debug, PartialEq)]
pub struct EtcdStatus {
    pub member_id: String,
    pub leader_id: String,
    pub raft_term: Option<u64>,
    pub version: String,
}

/// A client of one etcd cluster (connections are not pooled, see client/http.rs).
#[derive(Clone)]
pub struct EtcdClient {
    http: reqwest::Client,
    pub reads: EtcdReads,
    /// What `invoke` speaks: [`DataType::Register`] or [`DataType::Set`].
    pub data: DataType,
}

/// The data types etcd's client speaks.
pub const ETCD_DATA_TYPES: [DataType; 2] = [DataType::Register, DataType::Set];

/// Why a gateway call did not succeed.
struct CallError {
    /// The request certainly had no effect.
    definite: bool,
    error: String,
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

/// The integer stored in a base64 value; `Err` for anything this harness did not write.
fn decode_int(v: &str) -> Result<i64, String> {
    let bytes = B64.decode(v).map_err(|e| format!("value is not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "value is not UTF-8".to_string())?;
    text.parse::<i64>().map_err(|_| format!("value {text:?} is not an integer"))
}

/// The value of a range answer: `null` when the key is absent.
pub fn range_value(answer: &Value) -> Result<Value, String> {
    match answer.get("kvs").and_then(Value::as_array).and_then(|kvs| kvs.first()) {
        None => Ok(Value::Null),
        Some(kv) => {
            // An empty value is omitted by the gateway; the harness never writes one.
            let v = kv.get("value").and_then(Value::as_str).ok_or("range answer: kv without value")?;
            Ok(json!(decode_int(v)?))
        }
    }
}

/// The elements of a set read: the integers after `prefix` in the keys of a range answer,
/// sorted. `Err` for a key this harness did not write.
pub fn set_elements(answer: &Value, prefix: &str) -> Result<Value, String> {
    let kvs = answer.get("kvs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        let k = kv.get("key").and_then(Value::as_str).ok_or("range answer: kv without key")?;
        let bytes = B64.decode(k).map_err(|e| format!("key is not base64: {e}"))?;
        let text = String::from_utf8(bytes).map_err(|_| "key is not UTF-8".to_string())?;
        let e = text.strip_prefix(prefix).and_then(|e| e.parse::<i64>().ok());
        out.push(e.ok_or_else(|| format!("key {text:?} is not an element of {prefix:?}"))?);
    }
    out.sort_unstable();
    Ok(json!(out))
}

fn u64_field(v: &Value) -> Option<u64> {
    // The gateway renders uint64 as strings.
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl EtcdClient {
    pub fn new(timeout: Duration, reads: EtcdReads) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_millis(500)))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()?;
        Ok(EtcdClient { http, reads, data: DataType::Register })
    }

    async fn call(&self, addr: &str, path: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("http://{addr}/v3/{path}");
        let resp = self.http.post(url).json(body).send().await.map_err(|e| classify(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| classify(&e))?;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() && json.get("error").is_none() {
            return Ok(json);
        }
        // A gRPC error through the gateway: `{"error": "...", "code": N, "message": "..."}`.
        // Which of them guarantee "not applied" is not documented for the gateway, so none is
        // treated as definite; reads turn every error into fail anyway.
        let message = json.get("message").or_else(|| json.get("error")).and_then(Value::as_str).unwrap_or("");
        let error = if message.is_empty() { format!("http-{}", status.as_u16()) } else { short(message) };
        Err(CallError { definite: false, error })
    }

    /// The same cluster's client for `data`; `Err` for a data type etcd cannot express.
    pub fn for_data(&self, data: DataType) -> Result<EtcdClient, String> {
        if !ETCD_DATA_TYPES.contains(&data) {
            return Err(super::unsupported("etcd", data, &ETCD_DATA_TYPES));
        }
        Ok(EtcdClient { data, ..self.clone() })
    }

    fn range_body(&self, key: String, range_end: Option<String>) -> Value {
        let mut body = json!({ "key": key });
        if let Some(end) = range_end {
            body["range_end"] = json!(end);
            body["keys_only"] = json!(true);
        }
        if self.reads == EtcdReads::Serializable {
            body["serializable"] = json!(true);
        }
        body
    }

    /// Performs a set op (`add`, `read`) on the member at `addr`.
    async fn set_op(&self, addr: &str, node: &str, op: &Op) -> Completion {
        let prefix = format!("{}/e/", op.key.as_deref().unwrap_or_default());
        match op.f.as_str() {
            "add" => {
                let Some(e) = op.value.as_i64() else {
                    return Completion::fail(op.value.clone(), "bad-op: add element must be an integer", node);
                };
                let body = json!({ "key": b64(&format!("{prefix}{e}")), "value": b64("1") });
                match self.call(addr, "kv/put", &body).await {
                    Ok(_) => Completion::ok(op.value.clone(), node),
                    Err(e) => outcome(op, e, node),
                }
            }
            "read" => {
                // The range end is the prefix with its last byte ('/') incremented ('0').
                let end = format!("{}0", &prefix[..prefix.len() - 1]);
                match self.call(addr, "kv/range", &self.range_body(b64(&prefix), Some(b64(&end)))).await {
                    Ok(answer) => match set_elements(&answer, &prefix) {
                        Ok(v) => Completion::ok(v, node),
                        Err(e) => Completion::fail(Value::Null, format!("bad-answer: {e}"), node),
                    },
                    Err(e) => Completion::fail(Value::Null, e.error, node),
                }
            }
            other => Completion::fail(op.value.clone(), format!("unknown-op:{other}"), node),
        }
    }

    /// Performs an op of the client's data type on the member at `addr`.
    pub async fn invoke(&self, addr: &str, node: &str, op: &Op) -> Completion {
        match self.data {
            DataType::Set => self.set_op(addr, node, op).await,
            _ => self.register_op(addr, node, op).await,
        }
    }

    /// Performs a register op on the member at `addr`.
    async fn register_op(&self, addr: &str, node: &str, op: &Op) -> Completion {
        let key = op.key.clone().unwrap_or_default();
        let k = b64(&key);
        match op.f.as_str() {
            "read" => {
                match self.call(addr, "kv/range", &self.range_body(k, None)).await {
                    Ok(answer) => match range_value(&answer) {
                        Ok(v) => Completion::ok(v, node),
                        Err(e) => Completion::fail(Value::Null, format!("bad-answer: {e}"), node),
                    },
                    // A read changes nothing: recording a failed read as fail hides nothing.
                    Err(e) => Completion::fail(Value::Null, e.error, node),
                }
            }
            "write" => {
                let Some(v) = op.value.as_i64() else {
                    return Completion::fail(op.value.clone(), "bad-op: write value must be an integer", node);
                };
                let body = json!({ "key": k, "value": b64(&v.to_string()) });
                match self.call(addr, "kv/put", &body).await {
                    Ok(_) => Completion::ok(op.value.clone(), node),
                    Err(e) => outcome(op, e, node),
                }
            }
            "cas" => {
                let (Some(from), Some(to)) =
                    (op.value.get(0).and_then(Value::as_i64), op.value.get(1).and_then(Value::as_i64))
                else {
                    return Completion::fail(op.value.clone(), "bad-op: cas value must be [from, to]", node);
                };
                let body = json!({
                    "compare": [{ "key": k, "target": "VALUE", "result": "EQUAL", "value": b64(&from.to_string()) }],
                    "success": [{ "requestPut": { "key": k, "value": b64(&to.to_string()) } }],
                });
                match self.call(addr, "kv/txn", &body).await {
                    Ok(answer) if answer.get("succeeded").and_then(Value::as_bool) == Some(true) => {
                        Completion::ok(op.value.clone(), node)
                    }
                    Ok(_) => Completion::fail(op.value.clone(), "cas-mismatch", node),
                    Err(e) => outcome(op, e, node),
                }
            }
            other => Completion::fail(op.value.clone(), format!("unknown-op:{other}"), node),
        }
    }

    /// The member's status.
    pub async fn status(&self, addr: &str) -> Result<EtcdStatus, String> {
        let v = self.call(addr, "maintenance/status", &json!({})).await.map_err(|e| e.error)?;
        let member_id = v.pointer("/header/member_id").and_then(u64_field).ok_or("status without header.member_id")?;
        let leader_id = v.get("leader").and_then(u64_field).unwrap_or(0);
        Ok(EtcdStatus {
            member_id: member_id.to_string(),
            leader_id: leader_id.to_string(),
            raft_term: v
                .get("raftTerm")
                .and_then(u64_field)
                .or_else(|| v.pointer("/header/raft_term").and_then(u64_field)),
            version: v.get("version").and_then(Value::as_str).unwrap_or("").to_string(),
        })
    }
}

impl Client for EtcdClient {
    fn invoke<'a>(&'a self, addr: &'a str, node: &'a str, op: &'a Op) -> BoxFuture<'a, Completion> {
        Box::pin(EtcdClient::invoke(self, addr, node, op))
    }
}

fn classify(e: &reqwest::Error) -> CallError {
    if e.is_connect() {
        CallError { definite: true, error: "connect".into() }
    } else if e.is_timeout() {
        CallError { definite: false, error: "timeout".into() }
    } else {
        CallError { definite: false, error: "connection".into() }
    }
}

fn outcome(op: &Op, e: CallError, node: &str) -> Completion {
    if e.definite {
        Completion::fail(op.value.clone(), e.error, node)
    } else {
        Completion::info(op.value.clone(), e.error, node)
    }
}

/// A short error tag from an etcd message (`etcdserver: request timed out` → `request timed out`).
fn short(message: &str) -> String {
    let m = message.trim_start_matches("etcdserver: ");
    m.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_answers_decode() {
        assert_eq!(range_value(&json!({ "header": {}, "count": "0" })).unwrap(), Value::Null);
        let a = json!({ "kvs": [{ "key": b64("k1"), "value": b64("42") }], "count": "1" });
        assert_eq!(range_value(&a).unwrap(), json!(42));
        let bad = json!({ "kvs": [{ "key": b64("k1"), "value": b64("x") }] });
        assert!(range_value(&bad).unwrap_err().contains("not an integer"));
        let novalue = json!({ "kvs": [{ "key": b64("k1") }] });
        assert!(range_value(&novalue).is_err());
    }

    #[test]
    fn set_reads_decode_from_key_names() {
        let a = json!({ "kvs": [{ "key": b64("k1/e/12") }, { "key": b64("k1/e/3") }], "count": "2" });
        assert_eq!(set_elements(&a, "k1/e/").unwrap(), json!([3, 12]));
        assert_eq!(set_elements(&json!({}), "k1/e/").unwrap(), json!([]));
        let foreign = json!({ "kvs": [{ "key": b64("k1/e/x") }] });
        assert!(set_elements(&foreign, "k1/e/").unwrap_err().contains("not an element"));
    }

    #[test]
    fn etcd_has_no_counter_client() {
        let c = EtcdClient::new(Duration::from_millis(100), EtcdReads::Linearizable).unwrap();
        assert_eq!(c.for_data(DataType::Set).unwrap().data, DataType::Set);
        let err = c.for_data(DataType::Counter).err().expect("etcd has no counter client");
        assert!(err.contains("speaks register, set"), "{err}");
        for d in [DataType::ListAppend, DataType::RwRegister] {
            let err = c.for_data(d).err().expect("etcd runs no transactions here");
            assert!(err.contains(&format!("no client for the {} workload", d.name())), "{err}");
        }
    }

    #[test]
    fn read_modes_parse() {
        assert_eq!("serializable".parse::<EtcdReads>().unwrap(), EtcdReads::Serializable);
        assert!("stale".parse::<EtcdReads>().unwrap_err().contains("expected"));
    }

    #[test]
    fn uint64_strings() {
        assert_eq!(u64_field(&json!("18446744073709551615")), Some(u64::MAX));
        assert_eq!(u64_field(&json!(7)), Some(7));
    }
}
