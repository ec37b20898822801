//! The HTTP server behind `faultline serve`: axum on hyper, served connection by connection.
//!
//! Serves the store read-only: `/` lists the runs (`?verdict=invalid` filters), and every
//! file under the store root is served as is. A run's report.html is rendered on request when
//! it is missing or older than the run's history or results. Bounded: at most
//! [`CONNECTIONS_MAX`] connections at once (more wait in the listen backlog until one ends),
//! each with [`HEAD_TIMEOUT`] to send its request head (hyper's header read timeout: a client
//! trickling a header line every few seconds is cut off, so slow clients cannot hold every slot),
//! heads of at most [`HEAD_BYTES_MAX`] bytes, no keep-alive, and [`CONNECTION_TIMEOUT`] for the
//! whole exchange (tower-http's timeout bounds the handler). Paths are resolved inside the store
//! root only (no `..`, no symlink escapes).

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use crate::{render_run, store, RenderOptions};

pub const CONNECTIONS_MAX: usize = 64;
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Longest a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one connection lives (a report render included).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// A bound server; call [`Server::run`] to serve.
pub struct Server {
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    /// Renders write into run folders: one at a time.
    render_lock: Mutex<()>,
}

impl Server {
    /// Binds `addr` to serve the store at `store`.
    pub fn bind(store: &Path, addr: SocketAddr) -> std::io::Result<Server> {
        let root = store
            .canonicalize()
            .map_err(|e| std::io::Error::new(e.kind(), format!("store {}: {e}", store.display())))?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!("store {} is not a directory", store.display())));
        }
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Server { listener, shared: Arc::new(Shared { root, render_lock: Mutex::new(()) }) })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process ends (or the listener fails).
    pub fn run(self) -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        rt.block_on(serve(self))
    }
}

/// The accept loop: one task per connection, at most [`CONNECTIONS_MAX`] at once.
async fn serve(server: Server) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(server.listener)?;
    let app = axum::Router::new()
        .fallback(handle)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, CONNECTION_TIMEOUT))
        .with_state(server.shared);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let permit = Arc::clone(&slots).acquire_owned().await.map_err(std::io::Error::other)?;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors and the like: wait a little rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(HEAD_BYTES_MAX)
                .keep_alive(false)
                // `Content-Type`, as browsers and simple clients expect to read it.
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], body.into())
        .into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let Some(path) = percent_decode(uri.path()) else {
        return text(StatusCode::BAD_REQUEST, "bad path encoding\n");
    };
    let query = uri.query().unwrap_or("").to_string();
    // Listing, rendering and resolving touch the disk: off the async workers.
    tokio::task::spawn_blocking(move || answer(&shared, &path, &query))
        .await
        .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))
}

fn answer(shared: &Shared, path: &str, query: &str) -> Response {
    if path == "/" || path == "/index.html" {
        let verdict = query.split('&').find_map(|kv| kv.strip_prefix("verdict=")).filter(|v| !v.is_empty());
        let verdict = verdict.and_then(percent_decode);
        return match store::list_runs(&shared.root) {
            Ok(runs) => {
                let html =
                    store::index_html(&shared.root, &runs, &store::list_campaigns(&shared.root), verdict.as_deref());
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], html)
                    .into_response()
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        };
    }
    let Some(file) = resolve(&shared.root, path) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    if file.is_dir() {
        let location = format!("{}/report.html", path.trim_end_matches('/'));
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    respond_file(shared, &file)
}

fn respond_file(shared: &Shared, file: &Path) -> Response {
    if file.file_name().is_some_and(|n| n == "report.html") {
        if let Some(run_dir) = file.parent() {
            if needs_render(run_dir) {
                let _guard = shared.render_lock.lock().unwrap_or_else(|p| p.into_inner());
                if needs_render(run_dir) {
                    if let Err(e) = render_run(run_dir, &RenderOptions::default()) {
                        return text(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("cannot render {}: {e}\n", run_dir.display()),
                        );
                    }
                }
            }
        }
    }
    let Ok(f) = std::fs::File::open(file) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let headers = [
        (header::CONTENT_TYPE, content_type(file).to_string()),
        (header::CONTENT_LENGTH, len.to_string()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    (headers, Body::from_stream(file_chunks(tokio::fs::File::from_std(f)))).into_response()
}

/// The file's bytes in 64 KiB chunks, read as the client takes them.
fn file_chunks(f: tokio::fs::File) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    futures_util::stream::unfold(Some(f), |f| async move {
        use tokio::io::AsyncReadExt as _;
        let mut f = f?;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// A run folder's report is stale when missing or older than its inputs.
fn needs_render(run_dir: &Path) -> bool {
    if !["history.jsonl", "results.json", "test.json"].iter().any(|f| run_dir.join(f).is_file()) {
        return false;
    }
    let mtime = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(report) = mtime(run_dir.join("report.html")) else { return true };
    ["history.jsonl", "results.json", "test.json"].iter().filter_map(|f| mtime(run_dir.join(f))).any(|t| t > report)
}

/// Maps a URL path onto a file inside `root`, refusing `..`, absolute components and symlinks
/// that lead outside.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let rel = Path::new(url_path.trim_start_matches('/'));
    let mut p = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(n) => p.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    match p.canonicalize() {
        Ok(canon) => canon.starts_with(root).then_some(canon),
        // A file that does not exist yet (a report rendered on request): its folder must.
        Err(_) => {
            let name = p.file_name()?.to_owned();
            let parent = p.parent()?.canonicalize().ok()?;
            parent.starts_with(root).then(|| parent.join(name))
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.contains('\0'))
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "jsonl" | "log" | "txt" | "edn" | "toml" => "text/plain; charset=utf-8",
        "css" => "text/css",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_stays_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("t/1")).unwrap();
        std::fs::write(root.join("t/1/report.html"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        assert_eq!(resolve(&root, "/t/1/report.html"), Some(root.join("t/1/report.html")));
        assert_eq!(resolve(&root, "/t/../t/1/report.html"), None);
        assert_eq!(resolve(&root, "/escape/passwd"), None);
        // Not there yet, but its folder is inside: resolved (a report rendered on request).
        assert_eq!(resolve(&root, "/t/1/new.html"), Some(root.join("t/1/new.html")));
        assert_eq!(resolve(&root, "/escape/new.html"), None);
        assert_eq!(resolve(&root, "/missing/x"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(percent_decode("/%2e%2e/x").as_deref(), Some("/../x"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%00"), None);
        assert_eq!(percent_decode("/%4"), None);
    }
}
