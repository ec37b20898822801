//! Clients: how operations reach a system. A [`Client`] invokes an [`Op`] on a node and says how
//! it ended ([`Completion`]): ok (took effect, with its result), fail (certainly did not take
//! effect) or info (unknown).
//!
//! As in Jepsen, where a test pairs its db with its client, clients belong to targets: a
//! workload names the [`DataType`] its operations act on, and the target gives the client that
//! speaks it in its own protocol ([`crate::target::Target::client`]), or refuses with a reason
//! before anything starts. [`http`] speaks the reference node's API (docs/node-api.md) and maps
//! its error contract onto these outcomes: `definite: true` → fail, `definite: false`, timeouts
//! and broken connections after sending → info. [`etcd`] (v3 JSON gateway) and [`redis`] (RESP,
//! Sentinel) speak the external targets' protocols with the same outcome rules
//! ([`error_outcome`]); [`sql`] runs transactions on PostgreSQL ([`postgres`]) and MariaDB
//! ([`mariadb`]).

pub mod etcd;
pub mod http;
pub mod mariadb;
pub mod postgres;
pub mod redis;
pub mod sql;

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
        Completion { kind: EventType::Ok, value, error: None, node: Some(node.into()) }
    }
    pub fn fail(value: serde_json::Value, error: impl Into<String>, node: &str) -> Self {
        Completion { kind: EventType::Fail, value, error: Some(error.into()), node: Some(node.into()) }
    }
    pub fn info(value: serde_json::Value, error: impl Into<String>, node: &str) -> Self {
        Completion { kind: EventType::Info, value, error: Some(error.into()), node: Some(node.into()) }
    }
}

/// What a workload's operations act on. A target's client speaks some of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataType {
    /// Integer registers per key: `read`, `write`, `cas`.
    Register,
    /// Grow-only sets of integers per key: `add`, `read` (every element).
    Set,
    /// Integer counters per key: `add` (a delta), `read`.
    Counter,
    /// Transactions over lists of integers: `f` `txn`, `value` a list of `["append", k, v]` and
    /// `["r", k, null]` micro-ops (docs/history-format.md#transactions).
    ListAppend,
    /// Transactions over integer registers: `txn` of `["w", k, v]` and `["r", k, null]`.
    RwRegister,
}

impl DataType {
    pub fn name(self) -> &'static str {
        match self {
            DataType::Register => "register",
            DataType::Set => "set",
            DataType::Counter => "counter",
            DataType::ListAppend => "list-append",
            DataType::RwRegister => "rw-register",
        }
    }
}

/// Why a target has no client for a data type.
pub fn unsupported(target: &str, data: DataType, speaks: &[DataType]) -> String {
    let names: Vec<&str> = speaks.iter().map(|d| d.name()).collect();
    format!(
        "target {target} has no client for the {} workload's operations (it speaks {})",
        data.name(),
        names.join(", ")
    )
}

/// A system's client: performs operations on the node the caller names. Shared by every
/// worker of a run (one connection pool), so `&self`.
pub trait Client: Send + Sync {
    /// Invokes `op` on `node` (reachable at `addr`); returns within the client's timeout.
    fn invoke<'a>(&'a self, addr: &'a str, node: &'a str, op: &'a Op) -> BoxFuture<'a, Completion>;
}

/// The outcome of an operation that ended in an error, the same for every protocol: a read
/// changes nothing, so an unanswered read is recorded as not having happened (fail) without
/// hiding anything from the checker; a definite error is fail; anything else may have taken
/// effect (info).
pub fn error_outcome(op: &Op, definite: bool, error: String, node: &str) -> Completion {
    if op.f == "read" {
        Completion::fail(serde_json::Value::Null, error, node)
    } else if definite {
        Completion::fail(op.value.clone(), error, node)
    } else {
        Completion::info(op.value.clone(), error, node)
    }
}
