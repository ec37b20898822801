//! HTTP client of the reference node (docs/node-api.md): the client API (`/kv/...`) and the
//! admin API (`/admin/status`, `/admin/clock`).
//!
//! Outcome mapping, the part that decides what the checker may assume:
//! - 200 → ok;
//! - an error body with `definite: true` → the op certainly did not happen → fail;
//! - `definite: false`, a timeout after the request may have been sent, or a connection broken
//!   mid-request → info (unknown);
//! - a connection that could not be established → the request was never sent → fail.
//!
//! Connections are not pooled: a pooled connection to a node that was killed meanwhile would turn
//! a never-sent request into an ambiguous one.

use std::time::Duration;

use serde_json::{json, Value};

use super::{error_outcome, BoxFuture, Client, Completion, DataType, Op};

/// Why a call did not return 200.
#[derive(Clone, Debug, PartialEq)]
pub struct CallError {
    /// True when the request certainly had no effect.
    pub definite: bool,
    /// Short machine-friendly reason (`not-leader`, `timeout`, `connect`, ...).
    pub error: String,
    pub message: String,
}

/// A client of one cluster of reference nodes.
#[derive(Clone)]
pub struct NodeHttp {
    http: reqwest::Client,
    admin_token: String,
}

impl NodeHttp {
    pub fn new(timeout: Duration, admin_token: &str) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_millis(500)))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()?;
        Ok(NodeHttp { http, admin_token: admin_token.into() })
    }

    fn classify(e: &reqwest::Error) -> CallError {
        if e.is_connect() {
            CallError { definite: true, error: "connect".into(), message: e.to_string() }
        } else if e.is_timeout() {
            CallError { definite: false, error: "timeout".into(), message: e.to_string() }
        } else {
            CallError { definite: false, error: "connection".into(), message: e.to_string() }
        }
    }

    async fn finish(resp: Result<reqwest::Response, reqwest::Error>) -> Result<Value, CallError> {
        let resp = resp.map_err(|e| Self::classify(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| Self::classify(&e))?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        // Without a well-formed error body we cannot know whether the op happened.
        let definite = json.get("definite").and_then(Value::as_bool).unwrap_or(false);
        let error = json
            .get("error")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| format!("http-{}", status.as_u16()));
        let message = json.get("message").and_then(Value::as_str).unwrap_or("").to_string();
        Err(CallError { definite, error, message })
    }

    /// `POST http://ADDR/kv/<call>` with `body`.
    pub async fn kv(&self, addr: &str, call: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("http://{addr}/kv/{call}");
        Self::finish(self.http.post(url).json(body).send().await).await
    }

    /// `POST http://ADDR/set/<call>` with `body` (`add`: `{"key", "element"}`; `read`:
    /// `{"key"}` → `{"elements": [...]}`), the crdt role's set API.
    pub async fn set(&self, addr: &str, call: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("http://{addr}/set/{call}");
        Self::finish(self.http.post(url).json(body).send().await).await
    }

    /// `POST http://ADDR/counter/<call>` with `body` (`add`: `{"key", "delta"}`; `read`:
    /// `{"key"}` → `{"value": n}`), the crdt role's counter API.
    pub async fn counter(&self, addr: &str, call: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("http://{addr}/counter/{call}");
        Self::finish(self.http.post(url).json(body).send().await).await
    }

    /// `POST http://ADDR/txn` with `{"ops": [...]}` (the raft role's transactions).
    pub async fn txn(&self, addr: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("http://{addr}/txn");
        Self::finish(self.http.post(url).json(body).send().await).await
    }

    /// `GET /admin/status`.
    pub async fn status(&self, addr: &str) -> Result<Value, CallError> {
        let url = format!("http://{addr}/admin/status");
        Self::finish(self.http.get(url).bearer_auth(&self.admin_token).send().await).await
    }

    /// `GET /admin/<path>` (no body) or `POST` with `body`, bounded by `timeout` instead of the
    /// client's: admin calls such as a router's rebalance outlast an operation's timeout.
    pub async fn admin(
        &self,
        addr: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let url = format!("http://{addr}/admin/{path}");
        let req = match body {
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url),
        };
        Self::finish(req.bearer_auth(&self.admin_token).timeout(timeout).send().await).await
    }

    /// `POST /admin/clock` with `body` (`{"offset_ms": ..}` or `{"reset": true}`).
    pub async fn clock(&self, addr: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("http://{addr}/admin/clock");
        Self::finish(self.http.post(url).bearer_auth(&self.admin_token).json(body).send().await).await
    }
}
/// The reference node's client for one data type: registers through `/kv`, sets through
/// `/set`, counters through `/counter`, list-append and rw-register transactions through
/// `/txn` (docs/node-api.md). Which roles serve which API is the
/// role table's business; a role without the API answers 404, a definite fail.
#[derive(Clone)]
pub struct ReferenceClient {
    pub http: NodeHttp,
    pub data: DataType,
}

impl ReferenceClient {
    async fn register(&self, addr: &str, node: &str, op: &Op, key: String) -> Completion {
        let body = match op.f.as_str() {
            "read" => json!({ "key": key }),
            "write" => json!({ "key": key, "value": op.value }),
            "cas" => json!({ "key": key, "from": op.value[0], "to": op.value[1] }),
            other => return Completion::fail(op.value.clone(), format!("unknown-op:{other}"), node),
        };
        match self.http.kv(addr, &op.f, &body).await {
            Ok(answer) => {
                let value =
                    if op.f == "read" { answer.get("value").cloned().unwrap_or(Value::Null) } else { op.value.clone() };
                // A load balancer names the backend that served the request (the `lb` role's
                // `backend` field); its distribution is judged from this.
                let served_by = answer.get("backend").and_then(Value::as_str).unwrap_or(node);
                Completion::ok(value, served_by)
            }
            Err(e) => error_outcome(op, e.definite, e.error, node),
        }
    }

    async fn set(&self, addr: &str, node: &str, op: &Op, key: String) -> Completion {
        let body = match op.f.as_str() {
            "add" => json!({ "key": key, "element": op.value }),
            "read" => json!({ "key": key }),
            other => return Completion::fail(op.value.clone(), format!("unknown-op:{other}"), node),
        };
        match self.http.set(addr, &op.f, &body).await {
            Ok(answer) if op.f == "read" => match answer.get("elements") {
                Some(Value::Array(a)) => Completion::ok(Value::Array(a.clone()), node),
                // The node answered 200 with something else: the read tells nothing.
                _ => Completion::fail(Value::Null, "bad-answer", node),
            },
            Ok(_) => Completion::ok(op.value.clone(), node),
            Err(e) => error_outcome(op, e.definite, e.error, node),
        }
    }

    async fn counter(&self, addr: &str, node: &str, op: &Op, key: String) -> Completion {
        let body = match op.f.as_str() {
            "add" => json!({ "key": key, "delta": op.value }),
            "read" => json!({ "key": key }),
            other => return Completion::fail(op.value.clone(), format!("unknown-op:{other}"), node),
        };
        match self.http.counter(addr, &op.f, &body).await {
            Ok(answer) if op.f == "read" => match answer.get("value").and_then(Value::as_i64) {
                Some(v) => Completion::ok(json!(v), node),
                None => Completion::fail(Value::Null, "bad-answer", node),
            },
            Ok(_) => Completion::ok(op.value.clone(), node),
            Err(e) => error_outcome(op, e.definite, e.error, node),
        }
    }
}

/// A transaction (`f` `txn`, `value` its micro-ops): ok with the node's micro-ops (reads filled
/// in); a definite error → fail, anything else → info, both with the invoked micro-ops. A 200
/// whose `ops` do not match the invocation's shape may still have committed: info.
async fn txn(http: &NodeHttp, addr: &str, node: &str, op: &Op) -> Completion {
    if op.f != "txn" {
        return Completion::fail(op.value.clone(), format!("unknown-op:{}", op.f), node);
    }
    match http.txn(addr, &json!({ "ops": op.value })).await {
        Ok(answer) => match answer.get("ops") {
            Some(Value::Array(done)) if same_shape(&op.value, done) => Completion::ok(Value::Array(done.clone()), node),
            _ => Completion::info(op.value.clone(), "bad-answer", node),
        },
        Err(e) => error_outcome(op, e.definite, e.error, node),
    }
}

/// Whether the answer's micro-ops are the invoked ones in order (same `f` and key each).
fn same_shape(invoked: &Value, done: &[Value]) -> bool {
    let Some(inv) = invoked.as_array() else { return false };
    inv.len() == done.len() && inv.iter().zip(done).all(|(a, b)| a.get(0) == b.get(0) && a.get(1) == b.get(1))
}

impl Client for ReferenceClient {
    fn invoke<'a>(&'a self, addr: &'a str, node: &'a str, op: &'a Op) -> BoxFuture<'a, Completion> {
        Box::pin(async move {
            let key = op.key.clone().unwrap_or_default();
            match self.data {
                DataType::Register => self.register(addr, node, op, key).await,
                DataType::Set => self.set(addr, node, op, key).await,
                DataType::Counter => self.counter(addr, node, op, key).await,
                DataType::ListAppend | DataType::RwRegister => txn(&self.http, addr, node, op).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_counts_only_with_the_invoked_micro_ops_in_order() {
        let inv = json!([["append", "k1", 3], ["r", "k1", null]]);
        assert!(same_shape(&inv, json!([["append", "k1", 3], ["r", "k1", [3]]]).as_array().unwrap()));
        assert!(!same_shape(&inv, json!([["append", "k1", 3]]).as_array().unwrap()));
        assert!(!same_shape(&inv, json!([["r", "k1", [3]], ["append", "k1", 3]]).as_array().unwrap()));
        assert!(!same_shape(&inv, json!([["append", "k2", 3], ["r", "k1", []]]).as_array().unwrap()));
        assert!(!same_shape(&json!(null), &[]));
    }

    #[tokio::test]
    async fn an_unreachable_node_fails_a_transaction_with_its_invoked_value() {
        let http = NodeHttp::new(Duration::from_millis(300), "t").unwrap();
        let op = Op { f: "txn".into(), key: None, value: json!([["w", "x", 1]]) };
        // Nothing listens on port 1 of loopback: the connection is refused, never sent.
        let c = txn(&http, "127.0.0.1:1", "n1", &op).await;
        assert_eq!((c.kind, c.value), (faultline_checker::history::EventType::Fail, op.value.clone()));
        let bad = Op { f: "read".into(), ..op };
        assert_eq!(txn(&http, "127.0.0.1:1", "n1", &bad).await.error.as_deref(), Some("unknown-op:read"));
    }
}
