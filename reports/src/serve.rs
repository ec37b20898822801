//! The HTTP server behind `faultline serve`: a small blocking server on std's TcpListener.
//!
//! Serves the store read-only: `/` lists the runs (`?verdict=invalid` filters), and every
//! file under the store root is served as is. A run's report.html is rendered on request when
//! it is missing or older than the run's history or results. Bounded: at most
//! [`CONNECTIONS_MAX`] connections at once (more get 503), request heads of at most
//! [`HEAD_BYTES_MAX`] bytes, and read/write timeouts. Paths are resolved inside the store root
//! only (no `..`, no symlink escapes).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{render_run, store, RenderOptions};

pub const CONNECTIONS_MAX: usize = 32;
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// A bound server; call [`Server::run`] to serve.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    active: AtomicUsize,
    /// Renders write into run folders: one at a time.
    render_lock: Mutex<()>,
}

impl Server {
    /// Binds `addr` to serve the store at `store`.
    pub fn bind(store: &Path, addr: SocketAddr) -> std::io::Result<Server> {
        let root = store.canonicalize().map_err(|e| std::io::Error::new(e.kind(), format!("store {}: {e}", store.display())))?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!("store {} is not a directory", store.display())));
        }
        let listener = TcpListener::bind(addr)?;
        Ok(Server { listener, shared: Arc::new(Shared { root, active: AtomicUsize::new(0), render_lock: Mutex::new(()) }) })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process ends (or the listener fails).
    pub fn run(self) -> std::io::Result<()> {
        for stream in self.listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let shared = Arc::clone(&self.shared);
            if shared.active.fetch_add(1, Ordering::SeqCst) >= CONNECTIONS_MAX {
                shared.active.fetch_sub(1, Ordering::SeqCst);
                let _ = respond(&mut stream, 503, "text/plain; charset=utf-8", b"busy, try again\n", false);
                continue;
            }
            std::thread::spawn(move || {
                let _ = handle(&shared, stream);
                shared.active.fetch_sub(1, Ordering::SeqCst);
            });
        }
        Ok(())
    }
}

fn handle(shared: &Shared, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(HEAD_BYTES_MAX as u64));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the head (headers are not needed); a head that does not end in the limit is refused.
    let mut head_done = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if line == "\r\n" || line == "\n" {
            head_done = true;
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return respond(&mut stream, 400, "text/plain; charset=utf-8", b"bad request\n", false);
    };
    if !head_done {
        return respond(&mut stream, 431, "text/plain; charset=utf-8", b"request head too large or incomplete\n", false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(&mut stream, 405, "text/plain; charset=utf-8", b"only GET and HEAD\n", false);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(path) = percent_decode(path) else {
        return respond(&mut stream, 400, "text/plain; charset=utf-8", b"bad path encoding\n", head_only);
    };
    if path == "/" || path == "/index.html" {
        let verdict = query.split('&').find_map(|kv| kv.strip_prefix("verdict=")).filter(|v| !v.is_empty());
        let verdict = verdict.and_then(percent_decode);
        return match store::list_runs(&shared.root) {
            Ok(runs) => {
                let html = store::index_html(&shared.root, &runs, &store::list_campaigns(&shared.root), verdict.as_deref());
                respond(&mut stream, 200, "text/html; charset=utf-8", html.as_bytes(), head_only)
            }
            Err(e) => respond(&mut stream, 500, "text/plain; charset=utf-8", format!("{e}\n").as_bytes(), head_only),
        };
    }
    let Some(file) = resolve(&shared.root, &path) else {
        return respond(&mut stream, 404, "text/plain; charset=utf-8", b"not found\n", head_only);
    };
    if file.is_dir() {
        let location = format!("{}/report.html", path.trim_end_matches('/'));
        let head = format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return stream.write_all(head.as_bytes());
    }
    respond_file(shared, &mut stream, &file, head_only)
}

fn respond_file(shared: &Shared, stream: &mut TcpStream, file: &Path, head_only: bool) -> std::io::Result<()> {
    if file.file_name().is_some_and(|n| n == "report.html") {
        if let Some(run_dir) = file.parent() {
            if needs_render(run_dir) {
                let _guard = shared.render_lock.lock().unwrap_or_else(|p| p.into_inner());
                if needs_render(run_dir) {
                    if let Err(e) = render_run(run_dir, &RenderOptions::default()) {
                        let msg = format!("cannot render {}: {e}\n", run_dir.display());
                        return respond(stream, 500, "text/plain; charset=utf-8", msg.as_bytes(), head_only);
                    }
                }
            }
        }
    }
    let Ok(mut f) = std::fs::File::open(file) else {
        return respond(stream, 404, "text/plain; charset=utf-8", b"not found\n", head_only);
    };
    let len = f.metadata()?.len();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {len}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        content_type(file)
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        std::io::copy(&mut f, stream)?;
    }
    stream.flush()
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

fn respond(stream: &mut TcpStream, status: u16, ctype: &str, body: &[u8], head_only: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
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
