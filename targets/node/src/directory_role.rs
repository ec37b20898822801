//! `--role directory`: the directory of the router's planted bug `single-directory`, a
//! key/value map in one node's memory (no disk, no replica), so that losing this one node
//! loses the router's directory. The router's own directory lives replicated in shard group
//! 0's Raft log (router_role.rs); this role exists only to show what a single one costs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::json;

use crate::api::{self, error, not_found, parse, BODY_BYTES_MAX};
use crate::clock::NodeClock;
use crate::router_role::{CasBody, ReadBody, WriteBody};

/// `--role directory`: the bug `single-directory`'s directory, a key/value map in one node's
/// memory (no disk, no replica). Same `/kv/` API; honours the not-after header.
pub async fn serve_directory(id: String, listen: SocketAddr, admin_token: String) -> anyhow::Result<()> {
    struct Mem {
        id: String,
        token: String,
        map: Mutex<BTreeMap<String, i64>>,
        clock: NodeClock,
    }
    type M = Arc<Mem>;
    fn expired(h: &HeaderMap) -> Option<Response> {
        crate::server::expired(h).then(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                true,
                None,
                "request arrived after its not-after time",
            )
        })
    }
    async fn read(State(m): State<M>, body: Bytes) -> Response {
        let b: ReadBody = match parse(&body, r#"{"key": string}"#) {
            Ok(b) => b,
            Err(e) => return e,
        };
        Json(json!({"value": m.map.lock().expect("map").get(&b.key)})).into_response()
    }
    async fn write(State(m): State<M>, h: HeaderMap, body: Bytes) -> Response {
        let b: WriteBody = match parse(&body, r#"{"key": string, "value": integer}"#) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if let Some(r) = expired(&h) {
            return r;
        }
        m.map.lock().expect("map").insert(b.key, b.value);
        Json(json!({})).into_response()
    }
    async fn cas(State(m): State<M>, h: HeaderMap, body: Bytes) -> Response {
        let b: CasBody = match parse(&body, r#"{"key": string, "from": integer or null, "to": integer}"#) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if let Some(r) = expired(&h) {
            return r;
        }
        let mut map = m.map.lock().expect("map");
        match map.get(&b.key) {
            cur if cur.copied() == b.from => {
                map.insert(b.key, b.to);
                Json(json!({})).into_response()
            }
            cur => error(StatusCode::CONFLICT, "cas-mismatch", true, None, format!("the key holds {cur:?}")),
        }
    }
    async fn status(State(m): State<M>, h: HeaderMap) -> Response {
        if let Err(e) = api::authorized(&m.token, &h) {
            return e;
        }
        Json(json!({"id": m.id, "role": "directory", "state": "directory", "entries": m.map.lock().expect("map").len(), "clock": m.clock.view()})).into_response()
    }
    async fn clock(State(m): State<M>, h: HeaderMap, body: Bytes) -> Response {
        if let Err(e) = api::authorized(&m.token, &h) {
            return e;
        }
        api::set_clock(&m.clock, &body)
    }
    let m = Arc::new(Mem { id, token: admin_token, map: Mutex::new(BTreeMap::new()), clock: NodeClock::default() });
    let app = axum::Router::new()
        .route("/kv/read", post(read))
        .route("/kv/write", post(write))
        .route("/kv/cas", post(cas))
        .route("/admin/status", get(status))
        .route("/admin/clock", post(clock))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(m);
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    tracing::info!(addr = %listen, "serving the directory (memory only)");
    axum::serve(listener, app).await.context("HTTP server")?;
    Ok(())
}
