//! Clients: one logical process's connection to the cluster. A [`Client`] invokes an [`Op`] and
//! says how it ended ([`Completion`]): ok (took effect, with its result), fail (certainly did not
//! take effect) or info (unknown).
//!
//! [`http`] speaks the reference node's API (docs/node-api.md) and maps its error contract onto
//! these outcomes: `definite: true` → fail, `definite: false`, timeouts and broken connections
//! after sending → info. [`etcd`] (v3 JSON gateway) and [`redis`] (RESP, Sentinel) speak the
//! external targets' protocols with the same outcome rules.

pub mod etcd;
pub mod http;
pub mod redis;

use std::future::Future;
use std::pin::Pin;

use faultline_checker::history::EventType;

/// A boxed future, so traits with async methods stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One operation as the generator emits it and the history records its invocation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Op {
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: serde_json::Value,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// Ok, Fail or Info (never Invoke).
    pub kind: EventType,
    /// The result (ok) or the invoked value echoed (fail/info).
    pub value: serde_json::Value,
    pub error: Option<String>,
    /// The node that answered, when known.
    pub node: Option<String>,
}

impl Completion {
    pub fn ok(value: serde_json::Value, node: &str) -> Self {
        Completion {
            kind: EventType::Ok,
            value,
            error: None,
            node: Some(node.into()),
        }
    }
    pub fn fail(value: serde_json::Value, error: impl Into<String>, node: &str) -> Self {
        Completion {
            kind: EventType::Fail,
            value,
            error: Some(error.into()),
            node: Some(node.into()),
        }
    }
    pub fn info(value: serde_json::Value, error: impl Into<String>, node: &str) -> Self {
        Completion {
            kind: EventType::Info,
            value,
            error: Some(error.into()),
            node: Some(node.into()),
        }
    }
}

/// One logical process's connection.
pub trait Client: Send {
    /// Invokes `op`; must return within the client's timeout (bounded).
    fn invoke<'a>(&'a mut self, op: &'a Op) -> BoxFuture<'a, Completion>;
}
