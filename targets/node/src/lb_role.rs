//! The `lb` role: a front proxy for a cluster of reference nodes (docs/targets.md, "lb").
//!
//! Client requests (`/kv/*`, `/set/*`, `/counter/*`) are relayed to one backend chosen by the
//! balancer core (`faultline_protocols::lb`: round robin, least connections, smooth weighted
//! round robin), and the backend's answer is relayed back with the backend's id added (header
//! `x-faultline-backend` and, in a JSON object body, the field `backend`), so the client can
//! record which backend served each request. Active health checks (`GET /admin/status` every
//! `health_interval`, bounded by `health_timeout`) drop a backend after `fall` failures in a row
//! and re-admit it after `rise` successes. An attempt whose connection could not be established
//! is retried on another backend (at most `retries_max` times); nothing else is retried, since
//! the backend may have executed it (a duplicate write). Connections to backends are not pooled
//! for the same reason the harness's client does not pool them: a pooled connection to a backend
//! killed meanwhile turns a never-sent request into one that may have been sent.
//!
//! Optional stale cache (`--stale-cache true`): the last answer of `/kv/read` per key is kept,
//! as an HTTP cache keeps the last GET answer, and writes pass through without touching it. When
//! a read finds no backend to answer it (none healthy, every connection refused, or a `503
//! unavailable` answer), the cached value is answered instead, marked `"stale": true` and
//! `backend: "stale-cache"` — nginx's `proxy_cache_use_stale error http_503`. This keeps reads
//! available and is not linearizable: a write acknowledged after the cached read is not seen.
//!
//! The admin API (`/admin/status`, `/admin/clock`) is the node's usual one; the status carries
//! an `lb` object with per-backend counts (picks, answers, connect failures, health changes)
//! that the harness fetches at the end of a run.

#![allow(clippy::result_large_err)] // handlers bail out with a ready `Response`

use crate::api::{self, error, not_found, BODY_BYTES_MAX};
use crate::clock::NodeClock;
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use faultline_protocols::lb::{may_retry, AttemptFailure, Balancer, Bugs, Strategy, Thresholds, Transition};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The header naming the backend that answered.
pub const BACKEND_HEADER: &str = "x-faultline-backend";
/// The `backend` of an answer served from the stale cache.
pub const STALE_BACKEND: &str = "stale-cache";
/// Keys the stale cache holds at most; beyond, new keys are not cached (existing ones still
/// refresh), so memory stays bounded whatever the workload.
pub const CACHE_KEYS_MAX: usize = 100_000;
/// Health changes remembered for the status at most (the oldest are dropped).
pub const HEALTH_EVENTS_MAX: usize = 1000;
/// Client requests in flight at most; beyond, 503 at once.
pub const CLIENT_REQUESTS_MAX: usize = 4096;

pub struct LbConfig {
    pub id: String,
    pub listen: SocketAddr,
    pub admin_token: String,
    /// (id, address, weight) in the configured order.
    pub backends: Vec<(String, SocketAddr, u32)>,
    pub strategy: Strategy,
    pub thresholds: Thresholds,
    pub bugs: Bugs,
    pub bug_names: Vec<String>,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub request_timeout: Duration,
    pub retries_max: u32,
    pub stale_cache: bool,
    /// Bound to the node's address, no connection pooling.
    pub client: reqwest::Client,
}

/// Per-backend counters (the `lb.backends` entries of the status).
#[derive(Clone, Debug, Default, Serialize)]
struct Counters {
    /// Times the balancer picked it (retries included).
    picks: u64,
    /// Answers with a 2xx status.
    ok: u64,
    /// Answers with another status (relayed as they are).
    errors: u64,
    /// Connections that could not be established (retried elsewhere).
    connect_failures: u64,
    /// Attempts that timed out or broke after sending (never retried).
    indefinite: u64,
    checks_ok: u64,
    checks_failed: u64,
    drops: u64,
    readmits: u64,
}

#[derive(Clone, Debug, Serialize)]
struct HealthEvent {
    /// Milliseconds since the node started.
    at_ms: u64,
    backend: String,
    change: Transition,
}

struct Lb {
    id: String,
    admin_token: String,
    addrs: Vec<SocketAddr>,
    ids: Vec<String>,
    weights: Vec<u32>,
    balancer: Mutex<Balancer>,
    counters: Mutex<Vec<Counters>>,
    events: Mutex<Vec<HealthEvent>>,
    cache: Mutex<HashMap<String, Value>>,
    stale_cache: bool,
    requests: AtomicU64,
    retries: AtomicU64,
    no_backend: AtomicU64,
    stale_served: AtomicU64,
    client: reqwest::Client,
    request_timeout: Duration,
    retries_max: u32,
    health_interval: Duration,
    health_timeout: Duration,
    thresholds: Thresholds,
    bug_names: Vec<String>,
    clock: NodeClock,
    started: Instant,
    client_slots: tokio::sync::Semaphore,
}

type Shared = Arc<Lb>;

pub async fn run(cfg: LbConfig) -> anyhow::Result<()> {
    let balancer = Balancer::new(
        cfg.backends.iter().map(|(id, _, w)| (id.clone(), *w)).collect(),
        cfg.strategy,
        cfg.thresholds,
        cfg.bugs,
    )
    .context("--backends/--weights")?;
    let n = cfg.backends.len();
    let lb = Arc::new(Lb {
        id: cfg.id.clone(),
        admin_token: cfg.admin_token,
        addrs: cfg.backends.iter().map(|b| b.1).collect(),
        ids: cfg.backends.iter().map(|b| b.0.clone()).collect(),
        weights: cfg.backends.iter().map(|b| b.2).collect(),
        balancer: Mutex::new(balancer),
        counters: Mutex::new(vec![Counters::default(); n]),
        events: Mutex::new(Vec::new()),
        cache: Mutex::new(HashMap::new()),
        stale_cache: cfg.stale_cache,
        requests: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        no_backend: AtomicU64::new(0),
        stale_served: AtomicU64::new(0),
        client: cfg.client,
        request_timeout: cfg.request_timeout,
        retries_max: cfg.retries_max,
        health_interval: cfg.health_interval,
        health_timeout: cfg.health_timeout,
        thresholds: cfg.thresholds,
        bug_names: cfg.bug_names,
        clock: NodeClock::default(),
        started: Instant::now(),
        client_slots: tokio::sync::Semaphore::new(CLIENT_REQUESTS_MAX),
    });
    tokio::spawn(health_loop(lb.clone()));
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    tracing::info!(addr = %cfg.listen, strategy = cfg.strategy.as_str(), backends = ?lb.ids, weights = ?lb.weights, stale_cache = cfg.stale_cache, "serving as load balancer");
    axum::serve(listener, router(lb)).await.context("HTTP server")?;
    Ok(())
}

fn router(lb: Shared) -> Router {
    Router::new()
        .route("/kv/{op}", post(|s: State<Shared>, p: Path<String>, b: Bytes| proxy(s, "kv", p, b)))
        .route("/set/{op}", post(|s: State<Shared>, p: Path<String>, b: Bytes| proxy(s, "set", p, b)))
        .route("/counter/{op}", post(|s: State<Shared>, p: Path<String>, b: Bytes| proxy(s, "counter", p, b)))
        .route("/admin/status", get(admin_status))
        .route("/admin/clock", post(admin_clock))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(lb)
}

// ------------------------------------------------------------------------- proxy

/// How one attempt on a backend ended.
enum Attempt {
    Answered { status: StatusCode, body: Bytes },
    Failed(AttemptFailure),
}

async fn attempt(lb: &Lb, ix: usize, path: &str, body: Bytes, deadline: Instant) -> Attempt {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Attempt::Failed(AttemptFailure::Timeout);
    }
    let sent = lb
        .client
        .post(format!("http://{}/{path}", lb.addrs[ix]))
        .header(header::CONTENT_TYPE, "application/json")
        .timeout(left)
        .body(body)
        .send()
        .await;
    let classify = |e: &reqwest::Error| {
        if e.is_connect() {
            AttemptFailure::Connect
        } else if e.is_timeout() {
            AttemptFailure::Timeout
        } else {
            AttemptFailure::Broken
        }
    };
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return Attempt::Failed(classify(&e)),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match tokio::time::timeout_at(deadline, resp.bytes()).await {
        Ok(Ok(body)) => Attempt::Answered { status, body },
        Ok(Err(e)) => Attempt::Failed(classify(&e)),
        Err(_) => Attempt::Failed(AttemptFailure::Timeout),
    }
}

/// The backend's answer with the backend named in a header and, for a JSON object, a field.
fn relay(status: StatusCode, body: Bytes, backend: &str) -> Response {
    let body = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut m)) => {
            m.insert("backend".into(), json!(backend));
            Bytes::from(serde_json::to_vec(&Value::Object(m)).unwrap_or_default())
        }
        _ => body,
    };
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(backend) {
        r.headers_mut().insert(BACKEND_HEADER, v);
    }
    r
}

/// `{"key": "..."}` of a request body, if it has one.
fn key_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body).ok()?.get("key")?.as_str().map(String::from)
}

async fn proxy(State(lb): State<Shared>, api: &'static str, Path(op): Path<String>, body: Bytes) -> Response {
    let Ok(_slot) = lb.client_slots.try_acquire() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            true,
            None,
            format!("more than {CLIENT_REQUESTS_MAX} client requests in flight"),
        );
    };
    lb.requests.fetch_add(1, Ordering::Relaxed);
    let path = format!("{api}/{op}");
    let is_read = api == "kv" && op == "read";
    let deadline = Instant::now() + lb.request_timeout;
    let mut tried: Vec<usize> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    // The answer to relay, or why there is none.
    let mut unavailable: Option<(StatusCode, Bytes, usize)> = None;
    loop {
        let picked = lb.balancer.lock().expect("balancer lock").pick(&tried);
        let Some(ix) = picked else { break };
        if !tried.is_empty() {
            lb.retries.fetch_add(1, Ordering::Relaxed);
        }
        tried.push(ix);
        lb.counters.lock().expect("counters lock")[ix].picks += 1;
        let outcome = attempt(&lb, ix, &path, body.clone(), deadline).await;
        lb.balancer.lock().expect("balancer lock").release(ix);
        match outcome {
            Attempt::Answered { status, body: answer } => {
                {
                    let mut c = lb.counters.lock().expect("counters lock");
                    if status.is_success() {
                        c[ix].ok += 1;
                    } else {
                        c[ix].errors += 1;
                    }
                }
                if is_read && lb.stale_cache {
                    if status.is_success() {
                        remember(&lb, &body, &answer);
                    } else if status == StatusCode::SERVICE_UNAVAILABLE {
                        // The backend could not serve it (no leader, no quorum): stale-if-error.
                        unavailable = Some((status, answer, ix));
                        break;
                    }
                }
                return relay(status, answer, &lb.ids[ix]);
            }
            Attempt::Failed(f) => {
                let mut c = lb.counters.lock().expect("counters lock");
                if may_retry(f) {
                    c[ix].connect_failures += 1;
                    refused.push(lb.ids[ix].clone());
                    if tried.len() > lb.retries_max as usize {
                        break;
                    }
                    continue;
                }
                c[ix].indefinite += 1;
                drop(c);
                // May have executed: never retried, and the client must treat it as unknown.
                let what = if f == AttemptFailure::Timeout { "timed out" } else { "broke" };
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    false,
                    None,
                    format!(
                        "the request to backend {} {what} after it may have been sent; it may or may not take effect",
                        lb.ids[ix]
                    ),
                );
            }
        }
    }
    if is_read && lb.stale_cache {
        if let Some(key) = key_of(&body) {
            let cached = lb.cache.lock().expect("cache lock").get(&key).cloned();
            if let Some(v) = cached {
                lb.stale_served.fetch_add(1, Ordering::Relaxed);
                let mut r = Json(json!({"value": v, "stale": true, "backend": STALE_BACKEND})).into_response();
                r.headers_mut().insert(BACKEND_HEADER, HeaderValue::from_static(STALE_BACKEND));
                return r;
            }
        }
    }
    if let Some((status, answer, ix)) = unavailable {
        return relay(status, answer, &lb.ids[ix]);
    }
    lb.no_backend.fetch_add(1, Ordering::Relaxed);
    let msg = if refused.is_empty() {
        "no healthy backend".to_string()
    } else {
        format!("no backend accepted the connection (tried {})", refused.join(", "))
    };
    // Never sent to any backend: certainly not executed.
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", true, None, msg)
}

/// Keeps the value of a successful read answer in the stale cache (bounded by
/// [`CACHE_KEYS_MAX`]).
fn remember(lb: &Lb, request: &[u8], answer: &[u8]) {
    let Some(key) = key_of(request) else { return };
    let Some(value) = serde_json::from_slice::<Value>(answer).ok().and_then(|v| v.get("value").cloned()) else {
        return;
    };
    let mut cache = lb.cache.lock().expect("cache lock");
    if cache.len() < CACHE_KEYS_MAX || cache.contains_key(&key) {
        cache.insert(key, value);
    }
}

// ------------------------------------------------------------------------- health checks

async fn check(lb: &Lb, ix: usize) -> bool {
    let req = lb
        .client
        .get(format!("http://{}/admin/status", lb.addrs[ix]))
        .bearer_auth(&lb.admin_token)
        .timeout(lb.health_timeout)
        .send();
    matches!(tokio::time::timeout(lb.health_timeout, req).await, Ok(Ok(r)) if r.status().is_success())
}

/// Checks every backend (concurrently) each `health_interval`, forever.
async fn health_loop(lb: Shared) {
    let mut tick = tokio::time::interval(lb.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut set = tokio::task::JoinSet::new();
        for ix in 0..lb.addrs.len() {
            let lb = lb.clone();
            set.spawn(async move { (ix, check(&lb, ix).await) });
        }
        while let Some(r) = set.join_next().await {
            let Ok((ix, ok)) = r else { continue };
            let change = lb.balancer.lock().expect("balancer lock").observe(ix, ok);
            let mut c = lb.counters.lock().expect("counters lock");
            if ok {
                c[ix].checks_ok += 1;
            } else {
                c[ix].checks_failed += 1;
            }
            let Some(change) = change else { continue };
            match change {
                Transition::Dropped => c[ix].drops += 1,
                Transition::Readmitted => c[ix].readmits += 1,
            }
            drop(c);
            tracing::info!(backend = %lb.ids[ix], ?change, "backend health changed");
            let mut ev = lb.events.lock().expect("events lock");
            if ev.len() >= HEALTH_EVENTS_MAX {
                ev.remove(0);
            }
            ev.push(HealthEvent {
                at_ms: lb.started.elapsed().as_millis() as u64,
                backend: lb.ids[ix].clone(),
                change,
            });
        }
    }
}

// ------------------------------------------------------------------------- admin API

async fn admin_status(State(lb): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = api::authorized(&lb.admin_token, &headers) {
        return r;
    }
    let (strategy, views) = {
        let b = lb.balancer.lock().expect("balancer lock");
        (b.strategy(), b.backends().iter().map(|x| (x.health.healthy, x.in_flight)).collect::<Vec<_>>())
    };
    let counters = lb.counters.lock().expect("counters lock").clone();
    let backends: Vec<Value> = (0..lb.ids.len())
        .map(|i| {
            let mut v = serde_json::to_value(&counters[i]).unwrap_or_default();
            if let Value::Object(m) = &mut v {
                m.insert("id".into(), json!(lb.ids[i]));
                m.insert("addr".into(), json!(lb.addrs[i].to_string()));
                m.insert("weight".into(), json!(lb.weights[i]));
                m.insert("healthy".into(), json!(views[i].0));
                m.insert("in_flight".into(), json!(views[i].1));
            }
            v
        })
        .collect();
    let healthy = views.iter().filter(|v| v.0).count();
    Json(json!({
        "id": lb.id,
        "role": "lb",
        // `lb` when every backend is in rotation, `lb-degraded` when some are dropped: the
        // harness waits for `lb` before it starts the clients.
        "state": if healthy == views.len() { "lb" } else { "lb-degraded" },
        "bugs": lb.bug_names,
        "clock": lb.clock.view(),
        "lb": {
            "strategy": strategy.as_str(),
            "healthy_backends": healthy,
            "backends": backends,
            "requests": lb.requests.load(Ordering::Relaxed),
            "retries": lb.retries.load(Ordering::Relaxed),
            "retries_max": lb.retries_max,
            "no_backend": lb.no_backend.load(Ordering::Relaxed),
            "stale_cache": lb.stale_cache,
            "stale_served": lb.stale_served.load(Ordering::Relaxed),
            "cache_keys": lb.cache.lock().expect("cache lock").len(),
            "health": {
                "interval_ms": lb.health_interval.as_millis() as u64,
                "timeout_ms": lb.health_timeout.as_millis() as u64,
                "fall": lb.thresholds.fall,
                "rise": lb.thresholds.rise,
            },
            "health_events": lb.events.lock().expect("events lock").clone(),
        },
    }))
    .into_response()
}

async fn admin_clock(State(lb): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = api::authorized(&lb.admin_token, &headers) {
        return r;
    }
    api::set_clock(&lb.clock, &body)
}
