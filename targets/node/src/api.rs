//! The answer shapes every role's HTTP API shares (docs/node-api.md): the error body, request
//! parsing with a 400 that says what was expected, the key rule, the admin token check and the
//! clock call. Roles own their routes; this module owns what must read the same across them.

// Helpers return `Result<_, Response>` so handlers can bail out with a ready answer; the size of
// `Response` does not matter on this path.
#![allow(clippy::result_large_err)]

use crate::clock::{NodeClock, DRIFT_PPM_MAX, OFFSET_MS_MAX};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Keys longer than this are refused (docs/node-api.md).
pub const KEY_BYTES_MAX: usize = 256;
/// Request bodies larger than this are refused (peer batches with snapshots are the largest).
pub const BODY_BYTES_MAX: usize = 64 << 20;

/// The documented error body: `{"error", "definite", "leader", "message"}`.
pub fn error(status: StatusCode, code: &str, definite: bool, leader: Option<String>, message: impl Into<String>) -> Response {
    let body = json!({"error": code, "definite": definite, "leader": leader, "message": message.into()});
    (status, Json(body)).into_response()
}

pub fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "bad-request", true, None, message)
}

pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not-found", true, None, "no such route; see docs/node-api.md")
}

/// Parses a JSON body; a malformed one is a 400 naming what was `expected`.
pub fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], expected: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("request body: {e}; expected {expected}")))
}

/// Strict client request bodies (an unknown field is a 400), shared by the roles whose API
/// takes them: `{"key"}`, `{"key", "value"}`, `{"key", "from", "to"}`, `{"key", "element"}`,
/// `{"key", "delta"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    pub key: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBody {
    pub key: String,
    pub value: i64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasBody {
    pub key: String,
    pub from: i64,
    pub to: i64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementBody {
    pub key: String,
    pub element: i64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaBody {
    pub key: String,
    pub delta: i64,
}

/// A request body that names a key.
pub trait Keyed {
    fn key(&self) -> &str;
}
macro_rules! keyed {
    ($($t:ty),*) => { $(impl Keyed for $t { fn key(&self) -> &str { &self.key } })* };
}
keyed!(KeyBody, WriteBody, CasBody, ElementBody, DeltaBody);

/// Parses a client request body of the shape `expected` and checks its key (the 400 otherwise).
pub fn keyed_body<T: Keyed + for<'de> Deserialize<'de>>(body: &[u8], expected: &str) -> Result<T, Response> {
    let b: T = parse(body, expected)?;
    check_key(b.key())?;
    Ok(b)
}

/// `body!(Type, bytes, expected)` in a handler: [`keyed_body`], returning its 400 answer.
macro_rules! body {
    ($t:ty, $body:expr, $expected:expr) => {
        match $crate::api::keyed_body::<$t>(&$body, $expected) {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
}
pub(crate) use body;

pub fn check_key(key: &str) -> Result<(), Response> {
    if key.is_empty() {
        return Err(bad_request("key: must be a non-empty string"));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(bad_request(format!("key: {} bytes, at most {KEY_BYTES_MAX} allowed", key.len())));
    }
    Ok(())
}

/// Admin calls need `Authorization: Bearer TOKEN`; anything else is a 401.
pub fn authorized(token: &str, headers: &HeaderMap) -> Result<(), Response> {
    let want = format!("Bearer {token}");
    match headers.get(header::AUTHORIZATION) {
        Some(v) if v.as_bytes() == want.as_bytes() => Ok(()),
        _ => Err(error(StatusCode::UNAUTHORIZED, "unauthorized", true, None, "missing or wrong admin token (header Authorization: Bearer TOKEN)")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    offset_ms: Option<i64>,
    drift_ppm: Option<f64>,
    reset: Option<bool>,
}

/// `POST /admin/clock` after the token check: set or reset the node clock, answer its view.
pub fn set_clock(clock: &NodeClock, body: &[u8]) -> Response {
    let b: ClockBody = match parse(body, r#"{"offset_ms": integer, "drift_ppm": number} (both optional) or {"reset": true}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if b.reset == Some(true) {
        if b.offset_ms.is_some() || b.drift_ppm.is_some() {
            return bad_request("reset: cannot be combined with offset_ms or drift_ppm");
        }
        return Json(clock.reset()).into_response();
    }
    if let Some(o) = b.offset_ms {
        if o.abs() > OFFSET_MS_MAX {
            return bad_request(format!("offset_ms: {o} is beyond ±{OFFSET_MS_MAX}"));
        }
    }
    if let Some(d) = b.drift_ppm {
        if !d.is_finite() || d.abs() >= DRIFT_PPM_MAX {
            return bad_request(format!("drift_ppm: {d} must be finite and within ±{DRIFT_PPM_MAX} (exclusive)"));
        }
    }
    let view = clock.set(b.offset_ms, b.drift_ppm);
    tracing::info!(offset_ms = view.offset_ms, drift_ppm = view.drift_ppm, "clock set");
    Json(view).into_response()
}

/// 504 `timeout` (indefinite): no outcome within the node's request timeout.
pub fn timeout(request_timeout: Duration) -> Response {
    error(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        false,
        None,
        format!("no outcome within {} ms; the operation may or may not take effect", request_timeout.as_millis()),
    )
}

/// Forwards a client request one hop to the node `id` (this role's `what`: "leader",
/// "primary"), marked so that node answers itself rather than forwarding again, bounded by the
/// request's `deadline`; its answer is relayed. A request that never connected is a definite
/// 503; one whose answer did not come back in time is a 504 (it may have taken effect).
#[allow(clippy::too_many_arguments)] // each is a distinct part of the hop; a struct would only rename them
pub async fn forward_once(
    client: &reqwest::Client,
    what: &str,
    id: &str,
    addr: Option<&SocketAddr>,
    url_path: &str,
    body: axum::body::Bytes,
    deadline: Instant,
    request_timeout: Duration,
) -> Response {
    let Some(addr) = addr else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, format!("{what} {id} is not a known member"));
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let res = client
        .post(format!("http://{addr}/{url_path}"))
        .header(crate::server::NO_FORWARD_HEADER, "1")
        .header(header::CONTENT_TYPE, "application/json")
        .timeout(left)
        .body(body)
        .send()
        .await;
    let resp = match res {
        Ok(r) => r,
        // Not connected: the request never reached that node.
        Err(e) if e.is_connect() => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, format!("cannot reach the {what} {id} at {addr}: {e}"))
        }
        Err(_) => return timeout(request_timeout),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match tokio::time::timeout_at(deadline, resp.bytes()).await {
        Ok(Ok(b)) => (status, [(header::CONTENT_TYPE, "application/json")], b).into_response(),
        _ => timeout(request_timeout),
    }
}
