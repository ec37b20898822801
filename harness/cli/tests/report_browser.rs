//! The reports in a real browser: headless Chromium (Debian's `chromium`, installed by
//! scripts/install-chromium.sh) opens report.html from disk and the store index through
//! `faultline serve`, and the test checks that they render without console messages and show
//! the verdicts. Screenshots are kept under <target>/test-artifacts/.
//!
//! Without Chromium these tests fail (they do not skip): run scripts/install-chromium.sh.

mod report_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use faultline_reports::synthetic;
use report_support::{artifacts_dir, run, wait_bounded, write_crashed_run, Served};

fn chromium() -> PathBuf {
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
fn chromium_run(url: &str, mode: &str) -> (String, Vec<String>) {
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

fn screenshot(url: &str, name: &str) -> PathBuf {
    let file = artifacts_dir().join(name);
    let _ = std::fs::remove_file(&file);
    let (_, console) = chromium_run(url, &format!("--screenshot={}", file.display()));
    assert!(console.is_empty(), "console messages while taking {name}:\n{}", console.join("\n"));
    let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert!(len > 10_000, "screenshot {} missing or blank ({len} bytes)", file.display());
    file
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

/// The rendered DOM of report.html, after its self-check ran.
fn rendered_report(dir: &Path) -> String {
    let (dom, console) = chromium_run(&file_url(&dir.join("report.html")), "--dump-dom");
    assert!(console.is_empty(), "console messages in {}:\n{}", dir.display(), console.join("\n"));
    assert!(dom.contains(r#"data-selfcheck="ok""#), "the page's self-check did not pass:\n{}", &dom[..dom.len().min(2000)]);
    dom
}

#[test]
fn report_of_an_invalid_run_renders_with_its_verdicts_and_counterexample() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    synthetic::write_run(&dir, &synthetic::Spec { ops: 3_000, ..Default::default() }).unwrap();
    let out = run(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let dom = rendered_report(&dir);
    assert!(dom.contains(r#"<span id="verdict"><span class="verdict invalid">invalid</span></span>"#), "overall verdict not shown");
    assert_eq!(dom.matches(r#"<tr class="checker">"#).count(), 2, "one row per checker");
    assert!(dom.contains(r#"<span class="verdict valid">valid</span>"#), "the valid checker's verdict");
    assert!(dom.contains(r#"data-images-loaded="4""#), "all four plots loaded");
    assert!(dom.contains(r#"id="counterexample""#) && dom.contains("could not be linearized"));
    assert!(dom.contains(r#"id="timeline-capped""#), "3000 ops exceed the 2000-op timeline cap");
    screenshot(&file_url(&dir.join("report.html")), "report-invalid.png");
}

#[test]
fn report_of_a_crashed_run_renders_without_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("crashed");
    write_crashed_run(&dir);
    let out = run(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let dom = rendered_report(&dir);
    assert!(dom.contains(r#"<span class="verdict none">none</span>"#));
    assert!(dom.contains(r#"data-images-loaded="3""#), "latency-raw, quantiles, rate (no clock skew)");
    screenshot(&file_url(&dir.join("report.html")), "report-crashed.png");
}

#[test]
fn served_index_and_report_render_in_the_browser() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic::write_run(&tmp.path().join("register/20261126T100000"), &synthetic::Spec { ops: 500, ..Default::default() }).unwrap();
    write_crashed_run(&tmp.path().join("crashed/20261126T090000"));
    let s = Served::start(tmp.path());
    let (dom, console) = chromium_run(&format!("{}/?verdict=invalid", s.base), "--dump-dom");
    assert!(console.is_empty(), "console messages on the index:\n{}", console.join("\n"));
    assert_eq!(dom.matches(r#"<tr class="run "#).count(), 1, "only the invalid run");
    assert!(dom.contains(r#"<span class="verdict invalid">invalid</span>"#));
    screenshot(&format!("{}/", s.base), "serve-index.png");
    let (dom, console) = chromium_run(&format!("{}/register/20261126T100000/report.html", s.base), "--dump-dom");
    assert!(console.is_empty(), "console messages on the served report:\n{}", console.join("\n"));
    assert!(dom.contains(r#"data-selfcheck="ok""#) && dom.contains(r#"data-images-loaded="4""#));
}
