//! The node's HTTP API (docs/node-api.md): client API under `/kv/`, admin API under `/admin/`
//! (token checked), peer messages under `/peer/`. Request bodies are parsed by hand so that a
//! malformed request always gets a 400 with a reason in the documented error shape.

// Helpers return `Result<_, Response>` so handlers can `?`-style bail out with a ready answer;
// the size of `Response` does not matter on this path.
#![allow(clippy::result_large_err)]

use crate::api::{self, bad_request, check_key, error, not_found, parse, BODY_BYTES_MAX};
use crate::clock::NodeClock;
use crate::leaderless::{ClientOp, KvRole, PeerError, RoleReply};
use crate::raft_role::{Event, RaftHandle};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use faultline_protocols::raft::{Command, Envelope, NodeId, Reply, Role};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub const NO_FORWARD_HEADER: &str = "x-faultline-no-forward";
/// `x-faultline-not-after-ms: UNIX_MS`: propose the request only if the node's system time is
/// not past it, else answer 503 (definite). The `router` role sends it so that, once that time
/// has passed, no request of its can still enter a Raft log: a later write then orders after
/// every one of them (the rebalance fence relies on it; docs/targets.md).
pub const NOT_AFTER_HEADER: &str = "x-faultline-not-after-ms";

/// Whether the request's [`NOT_AFTER_HEADER`] deadline has passed (a malformed one counts as
/// passed: the sender asked for a bound it did not state).
pub fn expired(headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(NOT_AFTER_HEADER) else { return false };
    let Some(ms) = v.to_str().ok().and_then(|s| s.parse::<u128>().ok()) else { return true };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    now > ms
}
/// Longest a request waits for some leader to be known before answering 503.
const LEADER_WAIT_MAX: Duration = Duration::from_millis(1000);
/// Client requests in flight per node at most (waiting for Raft or for a forward).
pub const CLIENT_REQUESTS_MAX: usize = 4096;

/// What answers the client API: Raft (one leader; followers forward to it), or a leaderless
/// role (`paxos`, `quorum`) where every node coordinates requests itself.
pub enum Backend {
    Raft(RaftHandle),
    Leaderless(Arc<dyn KvRole>),
}

pub struct AppState {
    pub id: NodeId,
    pub role_name: &'static str,
    pub admin_token: String,
    pub clock: Arc<NodeClock>,
    pub backend: Backend,
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Bound to the node's address; used to forward client requests to the leader.
    pub forward_client: reqwest::Client,
    pub request_timeout: Duration,
    pub read_mode: &'static str,
    pub bugs: Vec<String>,
    /// Permits for client requests in flight ([`CLIENT_REQUESTS_MAX`]).
    pub client_slots: tokio::sync::Semaphore,
}

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/kv/read", post(kv_read))
        .route("/kv/write", post(kv_write))
        .route("/kv/cas", post(kv_cas))
        .route("/txn", post(txn))
        .route("/admin/status", get(admin_status))
        .route("/admin/clock", post(admin_clock))
        .route("/peer/msg", post(peer_msg))
        .route("/peer/rpc", post(peer_rpc))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

// ------------------------------------------------------------------------- errors

// ------------------------------------------------------------------------- client API

#[derive(Deserialize)]
struct ReadBody {
    key: String,
}
#[derive(Deserialize)]
struct WriteBody {
    key: String,
    value: i64,
}
#[derive(Deserialize)]
struct CasBody {
    key: String,
    /// The value the key must hold; `null`: the key must be absent. Required (not defaulted).
    #[serde(deserialize_with = "Option::deserialize")]
    from: Option<i64>,
    to: i64,
}

enum Op {
    Read(String),
    Write(Command),
}

async fn kv_read(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let b: ReadBody = match parse(&body, r#"{"key": string}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_key(&b.key) {
        return r;
    }
    dispatch(&s, "kv/read", Op::Read(b.key), &headers, body).await
}

async fn kv_write(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let b: WriteBody = match parse(&body, r#"{"key": string, "value": integer}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_key(&b.key) {
        return r;
    }
    dispatch(&s, "kv/write", Op::Write(Command::Write { key: b.key, value: b.value }), &headers, body).await
}

async fn kv_cas(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let b: CasBody = match parse(&body, r#"{"key": string, "from": integer or null, "to": integer}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_key(&b.key) {
        return r;
    }
    dispatch(&s, "kv/cas", Op::Write(Command::Cas { key: b.key, from: b.from, to: b.to }), &headers, body).await
}

/// `POST /txn`: a transaction, run by the Raft role through its log as one command
/// (docs/node-api.md); the leaderless roles answer 501.
async fn txn(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    match crate::txn_api::parse_txn(&body) {
        Ok(ops) => {
            dispatch(
                &s,
                "txn",
                Op::Write(Command::Txn { ops, reads_fixed: false, unchanged: Vec::new() }),
                &headers,
                body,
            )
            .await
        }
        Err(reason) => bad_request(reason),
    }
}

/// Waits (bounded) until some leader is known; `None` if none by `until`.
async fn known_leader(raft: &RaftHandle, until: Instant) -> Option<NodeId> {
    let mut rx = raft.status.clone();
    loop {
        if let Some(l) = rx.borrow_and_update().leader.clone() {
            return Some(l);
        }
        match tokio::time::timeout_at(until, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return None,
        }
    }
}

async fn dispatch(s: &AppState, path: &str, op: Op, headers: &HeaderMap, body: Bytes) -> Response {
    // Bounded: beyond this many client requests in flight on this node, refuse at once.
    let Ok(_slot) = s.client_slots.try_acquire() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            format!("more than {CLIENT_REQUESTS_MAX} client requests in flight"),
        );
    };
    let deadline = Instant::now() + s.request_timeout;
    let raft = match &s.backend {
        Backend::Raft(r) => r,
        Backend::Leaderless(role) => return leaderless_dispatch(s, role.as_ref(), op, deadline).await,
    };
    let no_forward = headers.get(NO_FORWARD_HEADER).is_some_and(|v| v.as_bytes() == b"1");
    let leader = known_leader(raft, (Instant::now() + LEADER_WAIT_MAX).min(deadline)).await;
    let Some(leader) = leader else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            "no leader known (election in progress or no quorum reachable)",
        );
    };
    if leader != s.id {
        return if no_forward { not_leader(s, Some(leader)) } else { forward(s, path, &leader, body, deadline).await };
    }
    // Checked just before the proposal enters the Raft task's queue (nothing awaits in between).
    if expired(headers) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            "request arrived after its not-after time; not proposed",
        );
    }
    let (tx, rx) = oneshot::channel();
    let ev = match op {
        Op::Read(key) => Event::Read { key, tx },
        Op::Write(cmd) => Event::Propose { cmd, tx },
    };
    if raft.tx.try_send(ev).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            "node overloaded: request queue full",
        );
    }
    let reply = match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "lost-leadership",
                false,
                None,
                "request dropped by the Raft task",
            )
        }
        Err(_) => return timeout(s),
    };
    match reply {
        Reply::NotLeader { leader: Some(l) } if l != s.id && !no_forward => forward(s, path, &l, body, deadline).await,
        other => reply_response(s, other),
    }
}

async fn leaderless_dispatch(s: &AppState, role: &dyn KvRole, op: Op, deadline: Instant) -> Response {
    let op = match op {
        Op::Read(key) => ClientOp::Read { key },
        Op::Write(Command::Write { key, value }) => ClientOp::Write { key, value },
        Op::Write(Command::Cas { key, from, to }) => ClientOp::Cas { key, from, to },
        Op::Write(Command::Txn { .. }) => {
            let msg = format!("the {} role runs no transactions; only the raft role does", s.role_name);
            return error(StatusCode::NOT_IMPLEMENTED, "unsupported", true, None, msg);
        }
        Op::Write(Command::Noop) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", true, None, "no-op is not a client operation")
        }
    };
    // The role bounds its own work by the deadline; this outer bound is a safety net.
    let reply = match tokio::time::timeout_at(deadline + Duration::from_millis(100), role.client(op, deadline)).await {
        Ok(r) => r,
        Err(_) => return timeout(s),
    };
    match reply {
        RoleReply::Value(v) => (StatusCode::OK, Json(json!({"value": v}))).into_response(),
        RoleReply::Done => (StatusCode::OK, Json(json!({}))).into_response(),
        RoleReply::CasMismatch { current } => reply_response(s, Reply::CasMismatch { current }),
        RoleReply::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, m),
        RoleReply::Timeout(m) => error(StatusCode::GATEWAY_TIMEOUT, "timeout", false, None, m),
        RoleReply::Unsupported(m) => error(StatusCode::NOT_IMPLEMENTED, "unsupported", true, None, m),
    }
}

fn timeout(s: &AppState) -> Response {
    api::timeout(s.request_timeout)
}

fn not_leader(s: &AppState, leader: Option<NodeId>) -> Response {
    let addr = leader.as_ref().and_then(|l| s.peers.get(l)).map(|a| a.to_string());
    let msg = match &leader {
        Some(l) => format!("not the leader; the leader is {l}"),
        None => "not the leader; no leader known".to_string(),
    };
    error(StatusCode::MISDIRECTED_REQUEST, "not-leader", true, addr, msg)
}

fn reply_response(s: &AppState, reply: Reply) -> Response {
    match reply {
        Reply::Value(v) => (StatusCode::OK, Json(json!({"value": v}))).into_response(),
        Reply::Done => (StatusCode::OK, Json(json!({}))).into_response(),
        Reply::CasMismatch { current } => {
            let msg = match current {
                Some(c) => format!("the key holds {c}"),
                None => "the key was never written".to_string(),
            };
            error(StatusCode::CONFLICT, "cas-mismatch", true, None, msg)
        }
        Reply::NotLeader { leader } => not_leader(s, leader),
        Reply::Unavailable { reason } => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, reason),
        Reply::LostLeadership => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "lost-leadership",
            false,
            None,
            "proposed, then leadership was lost before the outcome was known",
        ),
        Reply::Txn { ops } => (StatusCode::OK, Json(crate::txn_api::render(&ops))).into_response(),
        Reply::TxnFailed { reason } => error(StatusCode::CONFLICT, "txn-failed", true, None, reason),
    }
}

/// One hop to the leader, bounded by the request's deadline; the leader's answer is relayed.
async fn forward(s: &AppState, path: &str, leader: &NodeId, body: Bytes, deadline: Instant) -> Response {
    api::forward_once(&s.forward_client, "leader", leader, s.peers.get(leader), path, body, deadline, s.request_timeout)
        .await
}

// ------------------------------------------------------------------------- admin API

fn authorized(s: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    api::authorized(&s.admin_token, headers)
}

async fn admin_status(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    let raft = match &s.backend {
        Backend::Raft(r) => r,
        Backend::Leaderless(role) => {
            let mut m = serde_json::Map::new();
            m.insert("id".into(), json!(s.id));
            m.insert("role".into(), json!(s.role_name));
            m.extend(role.status());
            m.insert("bugs".into(), json!(s.bugs));
            m.insert("clock".into(), json!(s.clock.view()));
            return Json(serde_json::Value::Object(m)).into_response();
        }
    };
    let st = raft.status.borrow().clone();
    let leader_addr = st.leader.as_ref().and_then(|l| s.peers.get(l)).map(|a| a.to_string());
    let state = match st.role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    };
    Json(json!({
        "id": s.id,
        "role": s.role_name,
        "state": state,
        "term": st.term,
        "leader": st.leader,
        "leader_addr": leader_addr,
        "commit_index": st.commit_index,
        "applied_index": st.applied_index,
        "last_index": st.last_index,
        "snapshot_index": st.snapshot_index,
        "read_mode": s.read_mode,
        "bugs": s.bugs,
        "clock": s.clock.view(),
    }))
    .into_response()
}

async fn admin_clock(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    api::set_clock(&s.clock, &body)
}

// ------------------------------------------------------------------------- peers

async fn peer_msg(State(s): State<Shared>, body: Bytes) -> Response {
    let Backend::Raft(raft) = &s.backend else {
        return not_found().await;
    };
    let envs: Vec<Envelope> = match parse(&body, "a JSON array of Raft envelopes") {
        Ok(e) => e,
        Err(r) => return r,
    };
    match raft.tx.try_send(Event::Peer(envs)) {
        Ok(()) => Json(json!({})).into_response(),
        Err(mpsc::error::TrySendError::Full(_)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, "event queue full; messages dropped")
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, "raft task stopped")
        }
    }
}

/// Request/response RPCs of the leaderless roles (their own JSON bodies; internal).
async fn peer_rpc(State(s): State<Shared>, body: Bytes) -> Response {
    let Backend::Leaderless(role) = &s.backend else {
        return not_found().await;
    };
    match role.peer(body).await {
        Ok(v) => Json(v).into_response(),
        Err(PeerError::Bad(m)) => bad_request(m),
        Err(PeerError::Busy(m)) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, m),
    }
}
