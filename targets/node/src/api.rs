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
pub fn error(
    status: StatusCode,
    code: &str,
    definite: bool,
    leader: Option<String>,
    message: impl Into<String>,
) -> Response {
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
    /// The value the key must hold; `null`: the key must be absent. Required (not defaulted).
    #[serde(deserialize_with = "Option::deserialize")]
    pub from: Option<i64>,
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

/// Admin calls need `Authorization: Bearer TOKEN`; anything else is a 401. The comparison
/// takes the same time wherever the first differing byte is (see [`constant_time_eq`]).
pub fn authorized(token: &str, headers: &HeaderMap) -> Result<(), Response> {
    let want = format!("Bearer {token}");
    match headers.get(header::AUTHORIZATION) {
        Some(v) if constant_time_eq(v.as_bytes(), want.as_bytes()) => Ok(()),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            true,
            None,
            "missing or wrong admin token (header Authorization: Bearer TOKEN)",
        )),
    }
}

/// `a == b` without an early exit: every byte of the longer input is looked at, so the time
/// taken tells nothing about how long a matching prefix was (only the lengths leak).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    // Keep the optimizer from turning the loop into an early-exit comparison.
    std::hint::black_box(diff) == 0
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
    let b: ClockBody =
        match parse(body, r#"{"offset_ms": integer, "drift_ppm": number} (both optional) or {"reset": true}"#) {
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
        // `unsigned_abs`: `abs` of i64::MIN overflows (it wrapped to itself and passed).
        if o.unsigned_abs() > OFFSET_MS_MAX.unsigned_abs() {
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
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            format!("{what} {id} is not a known member"),
        );
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
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                true,
                None,
                format!("cannot reach the {what} {id} at {addr}: {e}"),
            )
        }
        Err(_) => return timeout(request_timeout),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match tokio::time::timeout_at(deadline, resp.bytes()).await {
        Ok(Ok(b)) => (status, [(header::CONTENT_TYPE, "application/json")], b).into_response(),
        _ => timeout(request_timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OFFSET_MS_MAX;

    fn clock_status(body: &str) -> (u16, i64) {
        let c = NodeClock::default();
        let r = set_clock(&c, body.as_bytes());
        (r.status().as_u16(), c.view().offset_ms)
    }

    #[test]
    fn clock_offset_of_i64_min_does_not_overflow_past_the_limit() {
        assert_eq!(clock_status(&format!(r#"{{"offset_ms": {}}}"#, i64::MIN)), (400, 0));
        assert_eq!(clock_status(&format!(r#"{{"offset_ms": {}}}"#, i64::MAX)), (400, 0));
        assert_eq!(clock_status(&format!(r#"{{"offset_ms": {}}}"#, -OFFSET_MS_MAX - 1)), (400, 0));
        assert_eq!(clock_status(&format!(r#"{{"offset_ms": {}}}"#, -OFFSET_MS_MAX)), (200, -OFFSET_MS_MAX));
        assert_eq!(clock_status(&format!(r#"{{"offset_ms": {}}}"#, OFFSET_MS_MAX)), (200, OFFSET_MS_MAX));
        assert_eq!(clock_status(r#"{"drift_ppm": 1e308}"#).0, 400);
        assert_eq!(clock_status(r#"{"drift_ppm": -1000000.0}"#).0, 400);
        assert_eq!(clock_status(r#"{"offset_ms": 18446744073709551616}"#).0, 400);
    }

    #[test]
    fn token_comparison_refuses_prefixes_and_extensions() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abcd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"", b"Bearer abc"));
        // A shorter input padded with NULs is still a different length.
        assert!(!constant_time_eq(b"Bearer abc\0", b"Bearer abc"));
    }
}

/// Fuzzing of the request parsing (stable toolchain: proptest), bounded in time: seeds from
/// `fuzz/requests/` cut, altered and extended, plus arbitrary bytes, into every body parser and
/// the clock handler. Nothing may panic; every answer is 200 or 400; an accepted clock keeps
/// its offset within the documented limit.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::clock::OFFSET_MS_MAX;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::time::{Duration, Instant};

    /// How long the fuzz test runs.
    const BUDGET: Duration = Duration::from_secs(3);

    fn corpus() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/requests");
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .expect("fuzz/requests")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| std::fs::read(e.path()).expect("seed"))
            .collect();
        assert!(seeds.len() >= 5, "the corpus in {} is missing", dir.display());
        seeds.sort();
        seeds
    }

    fn parse_all(body: &[u8]) {
        let ok_or_400 = |r: Result<(), Response>| match r {
            Ok(()) => {}
            Err(r) => assert_eq!(r.status(), StatusCode::BAD_REQUEST),
        };
        ok_or_400(keyed_body::<KeyBody>(body, "k").map(|b| assert!(!b.key.is_empty() && b.key.len() <= KEY_BYTES_MAX)));
        ok_or_400(keyed_body::<WriteBody>(body, "w").map(drop));
        ok_or_400(keyed_body::<CasBody>(body, "c").map(drop));
        ok_or_400(keyed_body::<ElementBody>(body, "e").map(drop));
        ok_or_400(keyed_body::<DeltaBody>(body, "d").map(drop));
        let clock = NodeClock::default();
        let r = set_clock(&clock, body);
        assert!(matches!(r.status().as_u16(), 200 | 400), "clock answered {}", r.status());
        let v = clock.view();
        assert!(v.offset_ms.unsigned_abs() <= OFFSET_MS_MAX.unsigned_abs(), "offset {} accepted", v.offset_ms);
        assert!(v.drift_ppm.is_finite() && v.drift_ppm.abs() < crate::clock::DRIFT_PPM_MAX);
    }

    /// A seed with one edit: cut at `at`, byte `at` replaced by `b`, or `ins` inserted at `at`.
    fn mutate(seed: &[u8], how: u8, at: usize, b: u8, ins: &[u8]) -> Vec<u8> {
        let at = at % (seed.len() + 1);
        let mut out = seed.to_vec();
        match how % 3 {
            0 => out.truncate(at),
            1 if at < out.len() => out[at] = b,
            _ => {
                out.splice(at..at, ins.iter().copied());
            }
        }
        out
    }

    #[test]
    fn request_parsing_never_panics_nor_accepts_out_of_range_numbers() {
        let seeds = corpus();
        for s in &seeds {
            parse_all(s);
        }
        let numbers = prop_oneof![
            Just(b"-9223372036854775808".to_vec()),
            Just(b"9223372036854775807".to_vec()),
            Just(b"18446744073709551616".to_vec()),
            Just(b"1e308".to_vec()),
            Just(b"-0".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        let strategy = (0..seeds.len(), any::<u8>(), any::<usize>(), any::<u8>(), numbers);
        let mut runner = TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() });
        let deadline = Instant::now() + BUDGET;
        let mut rounds = 0;
        while Instant::now() < deadline {
            runner
                .run(&strategy, |(i, how, at, b, ins)| {
                    parse_all(&mutate(&seeds[i], how, at, b, &ins));
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{e}"));
            runner
                .run(&proptest::collection::vec(any::<u8>(), 0..64), |bytes| {
                    parse_all(&bytes);
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{e}"));
            rounds += 1;
        }
        assert!(rounds > 0);
    }
}
