//! Helpers shared by the report tests: the binary, run folders, a served store, HTTP GETs,
//! headless Chromium.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn faultline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
}

/// Runs `faultline ARGS`, bounded to 120 s.
pub fn run(args: &[&str]) -> Output {
    let child =
        faultline().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("faultline binary starts");
    wait_bounded(child, Duration::from_secs(120))
}

/// Waits for `child` at most `limit`, then kills it (by its pid) and fails the test. Output is
/// read while waiting: a child that fills its stdout pipe (Chromium's --dump-dom) must not block.
pub fn wait_bounded(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("child output"),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            let out = rx.recv_timeout(Duration::from_secs(10));
            let stderr = out.ok().and_then(Result::ok).map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
            panic!("process {pid} did not finish within {limit:?}; stderr:\n{}", stderr.unwrap_or_default());
        }
    }
}

/// The cargo target directory (the binary lives in <target>/<profile>/faultline).
pub fn target_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_faultline"));
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).expect("binary inside a target dir")
}

/// Where tests keep what a person may want to look at afterwards (screenshots).
pub fn artifacts_dir() -> PathBuf {
    let d = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&d).expect("create test-artifacts");
    d
}

/// A crashed run: a history whose last line is cut, a partition never healed, no results.json.
pub fn write_crashed_run(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let lines = [
        r#"{"index":0,"time":0,"type":"invoke","process":0,"f":"write","key":"a","value":1}"#,
        r#"{"index":1,"time":2000000,"type":"ok","process":0,"f":"write","key":"a","value":1}"#,
        r#"{"index":2,"time":3000000,"type":"info","process":"nemesis","f":"start-partition","value":{"groups":[["n1"],["n2","n3"]]}}"#,
        r#"{"index":3,"time":4000000,"type":"invoke","process":1,"f":"read","key":"a","value":null}"#,
        r#"{"index":4,"time":9000000,"type":"ok","process":1,"f":"read","key":"a","value":1}"#,
        r#"{"index":5,"time":9500000,"type":"invoke","process":0,"f":"write","key":"a","value":2}"#,
    ];
    let mut text = lines.join("\n");
    text.push_str("\n{\"index\":6,\"time\":99");
    std::fs::write(dir.join("history.jsonl"), text).unwrap();
    std::fs::write(dir.join("test.json"), r#"{"name":"crashed","seed":1,"options":{"target":"raft"}}"#).unwrap();
}

/// A `faultline serve` child, killed when dropped.
pub struct Served {
    child: Child,
    pub base: String,
}

impl Served {
    pub fn start(store: &Path) -> Served {
        let mut child = faultline()
            .args(["serve", "--store", store.to_str().unwrap(), "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("faultline serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("faultline serve printed no address within 30 s");
            }
        };
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Served { child, base }
    }

    /// GET `path` (bounded to 60 s): status, content type, body.
    pub fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        request(&self.base, "GET", path)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn request(base: &str, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status code");
    let ctype = head.lines().find_map(|l| l.strip_prefix("Content-Type: ")).unwrap_or("").to_string();
    (status, ctype, body)
}

// ---- headless Chromium ----

pub fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "headless Chromium not found (looked for `chromium` and `chromium-browser` in PATH, and $CHROMIUM): \
         run scripts/install-chromium.sh to install Debian's chromium package"
    );
}

/// Runs Chromium headless on `url` with `mode` (`--dump-dom` or `--screenshot=FILE`); returns
/// stdout and the console messages it logged.
pub fn chromium_run(url: &str, mode: &str) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new(chromium())
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--window-size=1200,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let out = wait_bounded(child, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // With --enable-logging=stderr every console message (log, warning, error, uncaught
    // exception) is a line `...:INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)`.
    let console: Vec<String> = stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect();
    assert!(out.status.success(), "chromium failed ({:?}):\n{stderr}", out.status);
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

pub fn screenshot(url: &str, name: &str) -> PathBuf {
    let file = artifacts_dir().join(name);
    let _ = std::fs::remove_file(&file);
    let (_, console) = chromium_run(url, &format!("--screenshot={}", file.display()));
    assert!(console.is_empty(), "console messages while taking {name}:\n{}", console.join("\n"));
    let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert!(len > 10_000, "screenshot {} missing or blank ({len} bytes)", file.display());
    file
}

pub fn file_url(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

/// The rendered DOM of report.html, after its self-check ran.
pub fn rendered_report(dir: &Path) -> String {
    let (dom, console) = chromium_run(&file_url(&dir.join("report.html")), "--dump-dom");
    assert!(console.is_empty(), "console messages in {}:\n{}", dir.display(), console.join("\n"));
    assert!(
        dom.contains(r#"data-selfcheck="ok""#),
        "the page's self-check did not pass:\n{}",
        &dom[..dom.len().min(2000)]
    );
    dom
}
