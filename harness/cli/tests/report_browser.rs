//! The reports in a real browser: headless Chromium (Debian's `chromium`, installed by
//! scripts/install-chromium.sh) opens report.html from disk and the store index through
//! `faultline serve`, and the test checks that they render without console messages and show
//! the verdicts. Screenshots are kept under <target>/test-artifacts/.
//!
//! Without Chromium these tests fail (they do not skip): run scripts/install-chromium.sh.

mod report_support;

use faultline_reports::synthetic;
use report_support::{chromium_run, file_url, rendered_report, run, screenshot, write_crashed_run, Served};

#[test]
fn report_of_an_invalid_run_renders_with_its_verdicts_and_counterexample() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    synthetic::write_run(&dir, &synthetic::Spec { ops: 3_000, ..Default::default() }).unwrap();
    let out = run(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let dom = rendered_report(&dir);
    assert!(
        dom.contains(r#"<span id="verdict"><span class="verdict invalid">invalid</span></span>"#),
        "overall verdict not shown"
    );
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
    synthetic::write_run(
        &tmp.path().join("register/20261126T100000"),
        &synthetic::Spec { ops: 500, ..Default::default() },
    )
    .unwrap();
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
