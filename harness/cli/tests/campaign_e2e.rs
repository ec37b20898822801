//! A real campaign: campaigns/smoke.toml (a cell that cannot get ready, then a Raft register
//! and a CRDT set cell of ~10 s each, 3 nodes in network namespaces) through `faultline
//! campaign`; campaign.json checked field by field, campaign.html opened in headless Chromium
//! (screenshot kept in <target>/test-artifacts/campaign.png); and a campaign interrupted with
//! SIGINT mid-cell. Needs root, like every run test.

mod report_support;
mod run_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run_support::{is_root, node_bin, processes_with, show, Store};
use serde_json::Value;

fn smoke() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../campaigns/smoke.toml")
}

fn campaign_dir(store: &Path) -> PathBuf {
    let parent = store.join("campaigns/smoke");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&parent).expect("campaign folder").flatten().map(|e| e.path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

#[test]
fn smoke_campaign_runs_every_cell_carries_on_past_a_failing_one_and_reports() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    node_bin();
    let store = Store::new();
    let started = Instant::now();
    let out = Command::new(run_support::faultline())
        .args(["campaign", smoke().to_str().unwrap(), "--store", store.path().to_str().unwrap()])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(elapsed < Duration::from_secs(90), "the smoke campaign took {elapsed:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The terminal table: every cell, then the per-target comparison.
    for needle in [
        "01-raft-register-none-r1",
        "02-raft-register-partition-r1",
        "03-crdt-set-partition-r1",
        "avail. during partitions",
        "exit 0",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in the output:\n{stdout}");
    }
    let dir = campaign_dir(store.path());
    let c: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("campaign.json")).unwrap()).unwrap();
    assert_eq!((c["name"].as_str(), c["seed"].as_u64(), c["exit_code"].as_u64()), (Some("smoke"), Some(11), Some(0)));
    assert_eq!(c["interrupted"], false);
    let cells = c["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3);

    // The cell that cannot get ready: an error with its reason, expected, and the campaign went on.
    let bad = &cells[0];
    assert_eq!(
        (bad["outcome"].as_str(), bad["matched"].as_bool(), bad["exit_code"].as_i64()),
        (Some("error"), Some(true), Some(255)),
        "{bad:#}"
    );
    assert!(bad["error"].as_str().unwrap().contains("not ready"), "{bad:#}");

    for (cell, target, workload) in [(&cells[1], "raft", "register"), (&cells[2], "crdt", "set")] {
        let what = format!("{cell:#}");
        assert_eq!(
            (cell["target"].as_str(), cell["workload"].as_str(), cell["nemesis"].as_str()),
            (Some(target), Some(workload), Some("partition"))
        );
        assert_eq!(
            (cell["outcome"].as_str(), cell["matched"].as_bool(), cell["exit_code"].as_i64()),
            (Some("valid"), Some(true), Some(0)),
            "{what}"
        );
        assert_eq!(cell["fault_families"], serde_json::json!(["partition"]));
        assert_eq!(cell["options"]["nodes"], 3);
        assert_eq!(cell["options"]["time_limit"], 6);
        // The seed is recorded, is the run's, and is in the reproduce command.
        let seed = cell["seed"].as_u64().unwrap();
        assert!(cell["command"].as_str().unwrap().contains(&format!("--seed {seed} ")), "{what}");
        let run_dir = dir.join(cell["run_dir"].as_str().expect("run folder recorded"));
        let results: Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("results.json")).unwrap()).unwrap();
        assert_eq!(results["seed"].as_u64(), Some(seed));
        assert!(run_dir.join("report.html").is_file(), "the run's report");
        // Metrics are the run's own figures.
        assert_eq!(cell["availability_during_faults"], results["availability"]["during_faults_ok_fraction"], "{what}");
        assert_eq!(cell["latency_ok_p99_ms"], results["latency"]["ok"]["p99_ms"], "{what}");
        assert!(cell["throughput_ok_per_s"].as_f64().unwrap() > 1.0, "{what}");
        assert!(cell["latency_ok_p50_ms"].as_f64().unwrap() <= cell["latency_ok_p99_ms"].as_f64().unwrap(), "{what}");
        let checkers = cell["checkers"].as_array().unwrap();
        assert_eq!(checkers.len(), results["checkers"].as_array().unwrap().len());
        assert!(checkers.iter().all(|k| k["verdict"] == "valid"), "{what}");
        let expected_model = results["consistency"]["strongest"].as_str().unwrap_or("unknown");
        assert_eq!(cell["consistency"].as_str(), Some(expected_model), "{what}");
        assert!(dir.join(cell["log"].as_str().unwrap()).is_file());
    }
    let cmp = c["comparison"].as_array().unwrap();
    assert_eq!(cmp.iter().map(|t| t["target"].as_str().unwrap()).collect::<Vec<_>>(), ["raft", "crdt"]);
    assert!(cmp.iter().all(|t| t["availability_from"] == "partition cells" && t["cells"] == 1), "{cmp:?}");
    assert_eq!(&std::fs::read(dir.join("comparison.png")).unwrap()[..8], b"\x89PNG\r\n\x1a\n");

    // campaign.html in a real browser: no console messages, the plot loaded, verdicts and
    // links to each run's report shown.
    let url = report_support::file_url(&dir.join("campaign.html"));
    let (dom, console) = report_support::chromium_run(&url, "--dump-dom");
    assert!(console.is_empty(), "console messages in campaign.html:\n{}", console.join("\n"));
    assert!(
        dom.contains(r#"data-selfcheck="ok""#) && dom.contains(r#"data-images-loaded="1""#),
        "self-check: {}",
        &dom[..dom.len().min(3000)]
    );
    assert!(dom.contains(r#"<span id="status" class="verdict valid">as expected</span>"#), "campaign status");
    assert!(dom.matches(r#"<span class="verdict valid">valid</span>"#).count() >= 2, "the valid cells' verdicts");
    assert!(dom.contains(r#"<span class="verdict invalid">error</span>"#), "the failing cell's outcome");
    for cell in &cells[1..] {
        let href = format!(r#"href="{}/report.html""#, cell["run_dir"].as_str().unwrap());
        assert!(dom.contains(&href), "no link {href}");
    }
    assert_eq!(dom.matches(r#"<tr class="target">"#).count(), 2);
    report_support::screenshot(&url, "campaign.png");

    // `faultline serve` lists the campaign on its index and serves its page.
    let served = report_support::Served::start(store.path());
    let (code, _, body) = served.get("/");
    let index = String::from_utf8_lossy(&body);
    let stamp = dir.file_name().unwrap().to_str().unwrap();
    let link = format!("/campaigns/smoke/{stamp}/campaign.html");
    assert_eq!(code, 200);
    assert!(index.contains(&format!(r#"href="{link}""#)) && index.contains("as expected"), "{index}");
    assert_eq!(served.get(&link).0, 200);
}

#[test]
fn sigint_stops_the_campaign_after_the_current_cell_heals_and_records_what_ran() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    node_bin();
    let store = Store::new();
    let child = Command::new(run_support::faultline())
        .args(["campaign", smoke().to_str().unwrap(), "--store", store.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the second cell (the Raft one) has started its main phase.
    let deadline = Instant::now() + Duration::from_secs(40);
    let history = loop {
        // store/campaigns/smoke/<stamp>/runs/02-raft-register-partition-r1/<stamp>/history.jsonl
        let found = std::fs::read_dir(store.path().join("campaigns/smoke"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::read_dir(e.path().join("runs/02-raft-register-partition-r1")).ok())
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("history.jsonl"))
            .filter(|h| std::fs::read_to_string(h).is_ok_and(|t| t.lines().count() > 20));
        if let Some(h) = found {
            break h;
        }
        assert!(Instant::now() < deadline, "the second cell did not start within 40 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let run_dir = history.parent().unwrap().canonicalize().unwrap();
    faultline_core::runtime::state::send_signal(child.id(), "INT").unwrap();
    let out = report_support::wait_bounded(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(255), "an interrupted campaign is an error\n{}", show(&out));
    assert!(
        processes_with(run_dir.to_str().unwrap()).is_empty(),
        "node processes left: {:?}",
        processes_with(run_dir.to_str().unwrap())
    );
    let dir = campaign_dir(store.path());
    let c: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("campaign.json")).unwrap()).unwrap();
    assert_eq!(c["interrupted"], true);
    let outcomes: Vec<&str> = c["cells"].as_array().unwrap().iter().map(|x| x["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["error", "error", "not-run"], "{c:#}");
    let cut = &c["cells"][1];
    assert!(cut["error"].as_str().unwrap().contains("interrupted"), "{cut:#}");
    // The stopped run healed, tore down and judged what it had recorded.
    let results: Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["interrupted"], true);
    assert!(dir.join("campaign.html").is_file());
}
