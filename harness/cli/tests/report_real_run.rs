//! The report of a real run: `faultline run` (a 3-node Raft cluster in network namespaces, with
//! the planted `stale-read` bug and leader-isolating partitions), then `faultline report` on
//! `store/latest`, then headless Chromium on the page. Needs root, like every run test.

mod report_support;
mod run_support;

use report_support::{file_url, rendered_report, run, screenshot};

#[test]
fn report_of_a_real_run_shows_its_verdicts_faults_and_counterexample() {
    assert!(run_support::is_root(), "faultline run needs root (network namespaces, iptables)");
    let store = tempfile::tempdir().unwrap();
    let out = run_support::run(
        store.path(),
        &[
            "--nodes",
            "3",
            "--time-limit",
            "8",
            "--nemesis",
            "partition:isolate-leader",
            "--nemesis-interval",
            "2",
            "--rate",
            "200",
            "--recovery",
            "1",
            "--seed",
            "5",
            "--bug",
            "stale-read",
        ],
    );
    assert!(matches!(out.status.code(), Some(0..=2)), "run failed:\n{}", run_support::show(&out));
    let results = run_support::results(store.path());
    let verdict = results["verdict"].as_str().expect("results.json has a verdict").to_string();
    let latest = store.path().join("latest");
    let out = run(&["report", latest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["report.html", "latency-raw.png", "latency-quantiles.png", "rate.png"] {
        assert!(latest.join(f).is_file(), "{f} not written");
    }
    let dom = rendered_report(&latest);
    assert!(
        dom.contains(&format!(r#"<span id="verdict"><span class="verdict {verdict}">{verdict}</span></span>"#)),
        "overall verdict {verdict} not shown"
    );
    let checkers = results["checkers"].as_array().expect("checkers").len();
    assert_eq!(dom.matches(r#"<tr class="checker">"#).count(), checkers, "one row per checker");
    // The partitions of the run are in the history, so the page lists them.
    assert!(dom.contains("partition"), "faults not shown");
    if verdict == "invalid" {
        assert!(
            dom.contains(r#"id="counterexample""#) && dom.contains("could not be linearized"),
            "counterexample missing"
        );
    }
    screenshot(&file_url(&latest.join("report.html")), "report-real-run.png");
}
