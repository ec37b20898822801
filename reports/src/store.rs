//! The runs of a store (`store/<test>/<timestamp>/`) and its campaigns
//! (`store/campaigns/<name>/<timestamp>/`), for the index page of `faultline serve`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use faultline_results::{Results, Verdict};

use crate::html::truncate;
use crate::ReportError;
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// At most this many runs are listed (the newest).
pub const RUNS_MAX: usize = 10_000;
/// results.json files larger than this are not parsed for the index (their verdict shows as
/// `unread`); the report itself still renders them.
const RESULTS_BYTES_MAX: u64 = 64 << 20;

/// One run of the store.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEntry {
    pub test: String,
    pub stamp: String,
    pub dir: PathBuf,
    pub verdict: RunStatus,
    pub target: Option<String>,
    pub workload: Option<String>,
    pub nemesis: Option<String>,
    /// The run's seed (results.json, else test.json).
    pub seed: Option<u64>,
    /// The planted bug flags the run was started with (test.json's options).
    pub bugs: Vec<String>,
    pub has_report: bool,
}

/// What the index knows of a run's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// results.json's verdict.
    Judged(Verdict),
    /// No results.json (a run still going, or killed).
    NoResults,
    /// A results.json too large, unreadable or not of the results format.
    Unread,
}

impl RunStatus {
    /// `valid`, `invalid`, `unknown`, `none` or `unread`: the filter value and the CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Judged(Verdict::Valid) => "valid",
            RunStatus::Judged(Verdict::Invalid) => "invalid",
            RunStatus::Judged(Verdict::Unknown) => "unknown",
            RunStatus::NoResults => "none",
            RunStatus::Unread => "unread",
        }
    }
}

impl RunEntry {
    /// URL path of the run folder, relative to the store root.
    pub fn url(&self) -> String {
        format!("{}/{}/", url_encode(&self.test), url_encode(&self.stamp))
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn is_run_dir(p: &Path) -> bool {
    ["history.jsonl", "results.json", "test.json"].iter().any(|f| p.join(f).is_file())
}

fn hidden_or_latest(name: &str) -> bool {
    name.starts_with('.') || name == "latest"
}

/// Lists the runs of `store`, newest first.
pub fn list_runs(store: &Path) -> Result<Vec<RunEntry>, ReportError> {
    let mut runs = Vec::new();
    let tests = std::fs::read_dir(store).map_err(|e| ReportError::io(store, e))?;
    for t in tests.flatten() {
        let test = t.file_name().to_string_lossy().into_owned();
        let Ok(ft) = t.file_type() else { continue };
        if hidden_or_latest(&test) || !ft.is_dir() {
            continue;
        }
        let Ok(stamps) = std::fs::read_dir(t.path()) else { continue };
        for r in stamps.flatten() {
            let stamp = r.file_name().to_string_lossy().into_owned();
            let dir = r.path();
            if hidden_or_latest(&stamp) || !r.file_type().is_ok_and(|f| f.is_dir()) || !is_run_dir(&dir) {
                continue;
            }
            runs.push(entry(test.clone(), stamp, dir));
        }
    }
    runs.sort_by(|a, b| b.stamp.cmp(&a.stamp).then_with(|| a.test.cmp(&b.test)));
    runs.truncate(RUNS_MAX);
    Ok(runs)
}

fn entry(test: String, stamp: String, dir: PathBuf) -> RunEntry {
    let results_path = dir.join("results.json");
    let (verdict, results) = match std::fs::metadata(&results_path) {
        Err(_) => (RunStatus::NoResults, None),
        Ok(m) if m.len() > RESULTS_BYTES_MAX => (RunStatus::Unread, None),
        Ok(_) => match std::fs::read_to_string(&results_path).ok().and_then(|t| Results::from_json(&t).ok()) {
            Some(r) => (RunStatus::Judged(r.verdict), Some(r)),
            None => (RunStatus::Unread, None),
        },
    };
    let test_json =
        std::fs::read_to_string(dir.join("test.json")).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let options = test_json.as_ref().and_then(|t| t.get("options"));
    let field = |name: &str| -> Option<String> {
        [test_json.as_ref(), options].into_iter().flatten().find_map(|v| v.get(name).filter(|x| !x.is_null())).map(
            |v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        )
    };
    let bugs: Vec<String> =
        options.and_then(|o| o.get("bugs")).and_then(|b| serde_json::from_value(b.clone()).ok()).unwrap_or_default();
    // A results.json without a repro line was not written by a run (its seed is a default).
    let seed = results
        .filter(|r| !r.repro.is_empty())
        .map(|r| r.seed)
        .or_else(|| test_json.as_ref().and_then(|t| t.get("seed")).and_then(Value::as_u64));
    RunEntry {
        target: field("target"),
        workload: field("workload"),
        nemesis: field("nemesis"),
        seed,
        bugs,
        has_report: dir.join("report.html").is_file(),
        test,
        stamp,
        dir,
        verdict,
    }
}

/// At most this many campaigns are listed (the newest).
pub const CAMPAIGNS_MAX: usize = 1_000;

/// One campaign of the store (`store/campaigns/<name>/<timestamp>/campaign.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignEntry {
    pub name: String,
    pub stamp: String,
    /// campaign.json's exit code; `None` when it cannot be read (a campaign still running).
    pub exit_code: Option<u64>,
    pub summary: String,
}

impl CampaignEntry {
    pub fn url(&self) -> String {
        format!("campaigns/{}/{}/campaign.html", url_encode(&self.name), url_encode(&self.stamp))
    }
}

/// Lists the campaigns of `store`, newest first; a store without campaigns has none.
pub fn list_campaigns(store: &Path) -> Vec<CampaignEntry> {
    let mut out = Vec::new();
    let Ok(names) = std::fs::read_dir(store.join("campaigns")) else { return out };
    for n in names.flatten() {
        let name = n.file_name().to_string_lossy().into_owned();
        if hidden_or_latest(&name) || !n.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(stamps) = std::fs::read_dir(n.path()) else { continue };
        for st in stamps.flatten() {
            let stamp = st.file_name().to_string_lossy().into_owned();
            let json = st.path().join("campaign.json");
            if hidden_or_latest(&stamp)
                || !st.file_type().is_ok_and(|t| t.is_dir())
                || !st.path().join("campaign.html").is_file()
            {
                continue;
            }
            let record = std::fs::metadata(&json)
                .ok()
                .filter(|m| m.len() <= RESULTS_BYTES_MAX)
                .and_then(|_| std::fs::read_to_string(&json).ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            out.push(CampaignEntry {
                name: name.clone(),
                stamp,
                exit_code: record.as_ref().and_then(|r| r["exit_code"].as_u64()),
                summary: record.as_ref().and_then(|r| r["summary"].as_str()).unwrap_or("").to_string(),
            });
        }
    }
    out.sort_by(|a, b| b.stamp.cmp(&a.stamp).then_with(|| a.name.cmp(&b.name)));
    out.truncate(CAMPAIGNS_MAX);
    out
}

/// The index page: runs (optionally only those with `verdict`), each linked to its report,
/// then the campaigns, each linked to its campaign.html.
pub fn index_html(store: &Path, runs: &[RunEntry], campaigns: &[CampaignEntry], verdict: Option<&str>) -> String {
    let count = |v: &str| runs.iter().filter(|r| r.verdict.as_str() == v).count();
    let shown: Vec<&RunEntry> = runs.iter().filter(|r| verdict.is_none_or(|v| r.verdict.as_str() == v)).collect();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "faultline runs" } style { (PreEscaped(INDEX_CSS)) } }
            body {
                h1 { "faultline runs " span.note { (store.display().to_string()) } }
                p.filters {
                    "Show: "
                    a href="/" class=[verdict.is_none().then_some("on")] { "all (" (runs.len()) ")" }
                    @for v in ["valid", "invalid", "unknown", "none"] {
                        " · " a href={ "/?verdict=" (v) } class=[(verdict == Some(v)).then_some("on")] { (v) " (" (count(v)) ")" }
                    }
                }
                @if shown.is_empty() { p.note #empty { "No runs." } } @else { (runs_table(&shown)) }
                @if !campaigns.is_empty() { (campaigns_table(campaigns)) }
            }
        }
    };
    page.into_string() + "\n"
}

/// One row per run, linked to its report, history and results.
fn runs_table(shown: &[&RunEntry]) -> Markup {
    html! {
        table #runs {
            tr { @for h in ["run", "test", "verdict", "target", "workload", "nemesis", "bugs", "seed", "files"] { th { (h) } } }
            @for r in shown {
                @let url = r.url();
                tr class={ "run " (r.verdict.as_str()) } {
                    td { a href={ "/" (url) "report.html" } { (r.stamp) } }
                    td { (r.test) }
                    td { span class={ "verdict " (r.verdict.as_str()) } { (r.verdict.as_str()) } }
                    td { (truncate(r.target.as_deref().unwrap_or(""), 60)) }
                    td { (truncate(r.workload.as_deref().unwrap_or(""), 60)) }
                    td { (truncate(r.nemesis.as_deref().unwrap_or(""), 60)) }
                    td.bugs { (truncate(&r.bugs.join(" "), 60)) }
                    td.num { (r.seed.map(|s| s.to_string()).unwrap_or_default()) }
                    td {
                        a href={ "/" (url) "history.jsonl" } { "history" } " · " a href={ "/" (url) "results.json" } { "results" }
                        @if !r.has_report { " " span.note { "(report rendered on first view)" } }
                    }
                }
            }
        }
    }
}

/// One row per campaign, linked to its campaign.html.
fn campaigns_table(campaigns: &[CampaignEntry]) -> Markup {
    html! {
        h2 { "Campaigns" }
        table #campaigns {
            tr { th { "campaign" } th { "started" } th { "status" } th { "summary" } }
            @for c in campaigns {
                @let (class, status) = match c.exit_code {
                    Some(0) => ("valid", "as expected"),
                    Some(1) => ("invalid", "mismatch"),
                    Some(_) => ("unknown", "error"),
                    None => ("none", "unread"),
                };
                tr.campaign {
                    td { a href={ "/" (c.url()) } { (c.name) } }
                    td { (c.stamp) }
                    td { span class={ "verdict " (class) } { (status) } }
                    td { (truncate(&c.summary, 300)) }
                }
            }
        }
    }
}

const INDEX_CSS: &str = r#"body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;padding:16px;color:#222}
h1{font-size:22px} h2{font-size:18px;margin-top:24px} table{border-collapse:collapse;font-size:13px} th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f5f5f5} .note{color:#666;font-size:13px;font-weight:normal} .filters a{margin:0 2px} .filters a.on{font-weight:700}
.verdict{display:inline-block;padding:1px 10px;border-radius:10px;color:#fff;font-weight:600}
.verdict.valid{background:#2e8b3a}.verdict.invalid{background:#c62828}.verdict.unknown{background:#d98c00}.verdict.none,.verdict.unread{background:#777}"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn make_run(store: &Path, test: &str, stamp: &str, results: Option<&str>) {
        let d = store.join(test).join(stamp);
        std::fs::create_dir_all(d.join("nodes")).unwrap();
        std::fs::write(d.join("history.jsonl"), "").unwrap();
        if let Some(r) = results {
            std::fs::write(d.join("results.json"), r).unwrap();
        }
    }

    #[test]
    fn lists_runs_newest_first_and_filters_by_verdict() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path();
        make_run(
            store,
            "reg",
            "20261126T090000",
            Some(r#"{"verdict":"valid","seed":3,"repro":"faultline run --seed 3"}"#),
        );
        std::fs::write(
            store.join("reg/20261126T090000/test.json"),
            r#"{"target":"raft","seed":3,"options":{"bugs":["stale-read"],"seed":3}}"#,
        )
        .unwrap();
        make_run(store, "reg", "20261126T100000", Some(r#"{"verdict":"invalid"}"#));
        make_run(store, "other", "20261126T080000", None);
        make_run(store, "bad", "20261126T070000", Some("{not json"));
        std::fs::create_dir_all(store.join("reg").join("not-a-run")).unwrap();
        std::os::unix::fs::symlink("reg/20261126T100000", store.join("latest")).unwrap();
        let runs = list_runs(store).unwrap();
        let names: Vec<(&str, &str)> = runs.iter().map(|r| (r.stamp.as_str(), r.verdict.as_str())).collect();
        assert_eq!(
            names,
            vec![
                ("20261126T100000", "invalid"),
                ("20261126T090000", "valid"),
                ("20261126T080000", "none"),
                ("20261126T070000", "unread")
            ]
        );
        assert_eq!(runs[1].target.as_deref(), Some("raft"));
        assert_eq!((runs[1].seed, runs[1].bugs.clone()), (Some(3), vec!["stale-read".to_string()]));
        assert_eq!((runs[0].seed, runs[0].bugs.len()), (None, 0), "no seed invented");
        let all = index_html(store, &runs, &[], None);
        assert_eq!(all.matches(r#"<tr class="run "#).count(), 4);
        let bad = index_html(store, &runs, &[], Some("invalid"));
        assert_eq!(bad.matches(r#"<tr class="run "#).count(), 1);
        assert!(bad.contains(r#"href="/reg/20261126T100000/report.html""#));
        assert!(index_html(store, &runs, &[], Some("unknown")).contains(r#"id="empty""#));
    }

    #[test]
    fn campaigns_are_listed_and_linked() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path();
        assert!(list_campaigns(store).is_empty());
        for (stamp, json) in
            [("20261126T100000", Some(r#"{"exit_code": 1, "summary": "2 cells <b>"}"#)), ("20261126T110000", None)]
        {
            let d = store.join("campaigns/cmp").join(stamp);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("campaign.html"), "x").unwrap();
            if let Some(j) = json {
                std::fs::write(d.join("campaign.json"), j).unwrap();
            }
        }
        std::fs::create_dir_all(store.join("campaigns/cmp/20261126T120000")).unwrap(); // no page yet
        let c = list_campaigns(store);
        assert_eq!(
            c.iter().map(|x| (x.stamp.as_str(), x.exit_code)).collect::<Vec<_>>(),
            [("20261126T110000", None), ("20261126T100000", Some(1))]
        );
        // The campaigns folder is not mistaken for a test of runs.
        assert!(list_runs(store).unwrap().is_empty());
        let html = index_html(store, &[], &c, None);
        assert!(html.contains(r#"href="/campaigns/cmp/20261126T100000/campaign.html""#));
        assert!(
            html.contains(r#"<span class="verdict invalid">mismatch</span>"#) && html.contains("2 cells &lt;b&gt;")
        );
    }

    #[test]
    fn names_are_escaped_and_url_encoded() {
        assert_eq!(url_encode("a b<"), "a%20b%3C");
        let r = RunEntry {
            test: "<t>".into(),
            stamp: "s".into(),
            dir: PathBuf::new(),
            verdict: RunStatus::Judged(Verdict::Valid),
            target: Some("<b>".into()),
            workload: None,
            nemesis: None,
            seed: Some(42),
            bugs: vec!["stale-read".into(), "<x>".into()],
            has_report: true,
        };
        let html = index_html(Path::new("/s"), &[r], &[], None);
        assert!(!html.contains("<t>") && !html.contains("<b>") && !html.contains("<x>"));
        assert!(
            html.contains(r#"<td class="bugs">stale-read &lt;x&gt;</td><td class="num">42</td>"#),
            "bugs and seed shown: {html}"
        );
        assert!(html.contains("/%3Ct%3E/s/report.html"));
    }
}
