//! `faultline report` and `faultline serve` through the binary: exit codes, files written,
//! partial run folders, and the served store (listing, filtering, files, refusals).

mod report_support;

use faultline_reports::synthetic;
use report_support::{request, run, write_crashed_run, Served};

mod report_command {
    use super::*;

    #[test]
    fn renders_a_run_folder_and_lists_what_it_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        synthetic::write_run(&dir, &synthetic::Spec::default()).unwrap();
        let out = run(&["report", dir.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
        for f in ["report.html", "latency-raw.png", "latency-quantiles.png", "rate.png", "clock-skew.png"] {
            assert!(dir.join(f).is_file(), "{f} not written");
            assert!(stdout.contains(f), "{f} not listed in {stdout}");
        }
        assert!(stdout.contains("verdict invalid"), "{stdout}");
        // PNG magic number.
        let png = std::fs::read(dir.join("rate.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn renders_a_crashed_run_with_warnings_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("crashed");
        write_crashed_run(&dir);
        let out = run(&["report", dir.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
        assert!(stderr.contains("history.jsonl:7") && stderr.contains("truncated"), "{stderr}");
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(html.contains("no readable results.json"));
        assert!(html.contains("(never stopped)"), "the open partition lasts to the end");
        assert!(html.contains("1 pending"), "the last write never completed");
        assert!(!dir.join("clock-skew.png").exists());
    }

    #[test]
    fn a_missing_or_empty_folder_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let out = run(&["report", missing.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(255));
        assert!(String::from_utf8_lossy(&out.stderr).contains(missing.to_str().unwrap()));
        let out = run(&["report", tmp.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(255));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a run folder"));
    }
}

mod serve_command {
    use super::*;

    fn store() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let invalid = tmp.path().join("register/20261126T100000");
        synthetic::write_run(&invalid, &synthetic::Spec { ops: 300, ..Default::default() }).unwrap();
        let valid = tmp.path().join("register/20261126T090000");
        synthetic::write_run(&valid, &synthetic::Spec { ops: 300, ..Default::default() }).unwrap();
        // Make this one valid: rewrite its verdict.
        let results = valid.join("results.json");
        let mut r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
        r["verdict"] = "valid".into();
        std::fs::write(&results, r.to_string()).unwrap();
        write_crashed_run(&tmp.path().join("crashed/20261126T080000"));
        std::os::unix::fs::symlink("register/20261126T100000", tmp.path().join("latest")).unwrap();
        tmp
    }

    #[test]
    fn lists_runs_and_filters_by_verdict() {
        let tmp = store();
        let s = Served::start(tmp.path());
        let (code, ctype, body) = s.get("/");
        let page = String::from_utf8(body).unwrap();
        assert_eq!(code, 200);
        assert!(ctype.starts_with("text/html"));
        assert_eq!(page.matches(r#"<tr class="run "#).count(), 3, "{page}");
        let (_, _, body) = s.get("/?verdict=invalid");
        let page = String::from_utf8(body).unwrap();
        assert_eq!(page.matches(r#"<tr class="run "#).count(), 1);
        assert!(page.contains(r#"href="/register/20261126T100000/report.html""#));
        let (_, _, body) = s.get("/?verdict=none");
        let page = String::from_utf8(body).unwrap();
        assert_eq!(page.matches(r#"<tr class="run "#).count(), 1);
        assert!(page.contains("crashed"));
    }

    #[test]
    fn renders_reports_on_first_view_and_serves_their_plots() {
        let tmp = store();
        let run_dir = tmp.path().join("register/20261126T100000");
        assert!(!run_dir.join("report.html").exists());
        let s = Served::start(tmp.path());
        let (code, ctype, body) = s.get("/register/20261126T100000/report.html");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        assert!(ctype.starts_with("text/html"));
        assert!(String::from_utf8_lossy(&body).contains(r#"<span class="verdict invalid">invalid</span>"#));
        assert!(run_dir.join("report.html").is_file());
        let (code, ctype, body) = s.get("/register/20261126T100000/latency-raw.png");
        assert_eq!((code, ctype.as_str()), (200, "image/png"));
        assert_eq!(&body[..4], b"\x89PNG");
        // A run folder redirects to its report.
        let (code, _, _) = s.get("/register/20261126T100000");
        assert_eq!(code, 302);
    }

    #[test]
    fn refuses_paths_outside_the_store_and_other_methods() {
        let tmp = store();
        let s = Served::start(tmp.path());
        assert_eq!(s.get("/../../etc/passwd").0, 404);
        assert_eq!(s.get("/%2e%2e/%2e%2e/etc/passwd").0, 404);
        assert_eq!(s.get("/nothing-here").0, 404);
        assert_eq!(request(&s.base, "POST", "/").0, 405);
        assert_eq!(request(&s.base, "HEAD", "/").0, 200);
    }
}
