//! The outputs of a campaign (`faultline campaign FILE.toml`): the record written as
//! campaign.json, the metrics of a cell read from its run's results.json, the per-target
//! comparison (availability during partitions against the strongest consistency model kept),
//! campaign.html and comparison.png.
//!
//! The campaign runner (harness/cli) fills a [`CampaignRecord`]; everything a person reads is
//! drawn from that record alone, so a campaign.json can be rendered again.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use faultline_checker::txn::ConsistencyModel;
use faultline_results::isolation::strongest_kept;
use faultline_results::{Isolation, Results, Verdict};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::html::truncate;
use crate::ReportError;

/// Values of results.json `consistency.strongest`, strongest first: the checker's hierarchy
/// ([`faultline_checker::hierarchy::Model::ALL`]), then `none` (the history satisfied none of
/// them). `unknown` (undecided, an older run, a cell that did not run) is never ranked.
pub const MODELS: &[&str] = &["linearizable", "sequential", "session", "convergent", "none"];

/// Rank of a model (higher = stronger); `None` for `unknown` and names this version does not
/// know, which are never taken for a guarantee.
pub fn model_rank(model: &str) -> Option<usize> {
    MODELS.iter().position(|m| *m == model).map(|i| MODELS.len() - 1 - i)
}

/// The rows of the transactional comparison, strongest first, then `none`. Repeatable read
/// and snapshot isolation are incomparable; they get a row each (snapshot isolation above).
pub const TXN_LEVELS: &[&str] = &[
    "strict-serializable",
    "strong-session-serializable",
    "serializable",
    "snapshot-isolation",
    "repeatable-read",
    "read-committed",
    "read-uncommitted",
    "none",
];

/// Rank of a transactional `strongest` text (higher = stronger): of `a / b`, the higher row.
pub fn txn_rank(text: &str) -> Option<usize> {
    text.split(" / ")
        .map(|m| TXN_LEVELS.iter().position(|l| *l == m.trim()).map(|i| TXN_LEVELS.len() - 1 - i))
        .collect::<Option<Vec<usize>>>()?
        .into_iter()
        .max()
}

/// One campaign, as written to campaign.json.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CampaignRecord {
    pub name: String,
    /// The campaign file, as given on the command line.
    pub file: String,
    /// The seed every cell's seed derives from.
    pub seed: u64,
    /// UTC start, RFC 3339.
    pub started: String,
    pub elapsed_s: f64,
    /// Stopped by Ctrl-C or SIGTERM: cells after the interrupted one did not run.
    pub interrupted: bool,
    /// The campaign's exit code (0 every cell as expected, 1 a mismatch, 255 a harness error).
    pub exit_code: u8,
    /// One line saying what the exit code means for this campaign.
    pub summary: String,
    pub cells: Vec<CellRecord>,
    /// One entry per target, in order of first appearance.
    pub comparison: Vec<TargetComparison>,
}

/// One cell of the matrix: a `faultline run` with its options, seed and outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// Unique within the campaign: `03-raft-register-partition-r1`; also the run's test name.
    pub id: String,
    pub target: String,
    pub workload: String,
    pub nemesis: String,
    /// Fault families the nemesis can inject (`partition`, `clock`, ...).
    pub fault_families: Vec<String>,
    /// 1-based repeat number.
    pub repeat: u32,
    pub seed: u64,
    /// The `faultline run` flags the cell set (beyond target, workload, nemesis, seed).
    pub options: Value,
    /// Accepted outcomes: `valid`, `invalid`, `unknown`, `error`, or `any` (any verdict).
    pub expect: Vec<String>,
    /// The command that reproduces the cell.
    pub command: String,
    /// `valid`, `invalid`, `unknown`, `error` (the run failed: exit 255, could not start, timed
    /// out), or `not-run` (the campaign was interrupted before it).
    pub outcome: String,
    /// The outcome is one the cell expects.
    pub matched: bool,
    pub exit_code: Option<i32>,
    /// Why the cell is an error (the run's own error line when it printed one).
    pub error: Option<String>,
    pub elapsed_s: f64,
    /// The run folder, relative to the campaign folder.
    pub run_dir: Option<String>,
    /// The child's stdout and stderr, relative to the campaign folder.
    pub log: Option<String>,
    #[serde(flatten)]
    pub metrics: CellMetrics,
}

impl CellRecord {
    /// The system under test as compared: the target, with its target options when it has any
    /// (`multi-primary resolve=vclock` is not the same system as `multi-primary`).
    pub fn system(&self) -> String {
        let opts: Vec<&str> =
            self.options["target_opts"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if opts.is_empty() {
            self.target.clone()
        } else {
            format!("{} {}", self.target, opts.join(" "))
        }
    }
}

/// What a cell's run measured, read from its results.json.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CellMetrics {
    pub checkers: Vec<CheckerVerdict>,
    /// ok / completed client operations whose completion fell in a fault window.
    pub availability_during_faults: Option<f64>,
    pub availability_outside_faults: Option<f64>,
    /// ok, fail, info completions during fault windows.
    pub during_faults: Option<[u64; 3]>,
    pub fault_windows: Option<u64>,
    /// ok operations per second of the main phase.
    pub throughput_ok_per_s: Option<f64>,
    pub latency_ok_p50_ms: Option<f64>,
    pub latency_ok_p99_ms: Option<f64>,
    /// results.json `consistency.strongest`, `unknown` when absent.
    pub consistency: String,
    /// results.json `isolation`: a transactional workload's place on the transactional map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
}

impl CellMetrics {
    /// The model shown for the cell: the transactional strongest kept for a transactional
    /// workload, else the single-object ladder's.
    pub fn model_shown(&self) -> String {
        self.isolation.as_ref().map_or_else(|| self.consistency.clone(), Isolation::strongest_text)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckerVerdict {
    pub name: String,
    pub verdict: Verdict,
    pub reason: Option<String>,
}

impl CellMetrics {
    /// Reads a run's results. Every field of [`Results`] has a default (a crashed or older
    /// run), so absent figures stay `None` here: availability only with fault windows or
    /// completions, latency only with ok completions. Availability and latency are the run's
    /// own figures (`availability`, `latency.ok`); throughput is `ops.completed.ok /
    /// timings.main_s`.
    pub fn from_results(r: &Results) -> CellMetrics {
        let checkers = r
            .checkers
            .iter()
            .map(|c| CheckerVerdict { name: c.name.clone(), verdict: c.verdict, reason: c.reason.clone() })
            .collect();
        let av = &r.availability;
        let d = &av.during_faults;
        let main_s = r.timings.main_s.filter(|s| *s > 0.0);
        let latency = r.latency.get("ok").filter(|l| l.count > 0);
        CellMetrics {
            checkers,
            availability_during_faults: av.during_faults_ok_fraction,
            availability_outside_faults: av.outside_faults_ok_fraction,
            during_faults: Some([d.ok, d.fail, d.info]),
            fault_windows: Some(av.fault_windows as u64),
            throughput_ok_per_s: main_s.map(|s| r.ops.completed.ok as f64 / s),
            latency_ok_p50_ms: latency.map(|l| l.p50_ms),
            latency_ok_p99_ms: latency.map(|l| l.p99_ms),
            consistency: r.consistency.as_ref().map_or("unknown", |c| c.strongest.name()).to_string(),
            isolation: r.isolation.clone().or_else(|| Isolation::from_checkers(&r.checkers)),
        }
    }
}

/// One target (with its target options: [`CellRecord::system`]) across the campaign: how available it stayed during partitions and which
/// consistency model it kept in every cell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetComparison {
    pub target: String,
    /// ok / completed operations during fault windows, summed over the cells counted.
    pub availability_during_partitions: Option<f64>,
    /// Which cells the availability comes from: `partition cells` (nemesis only partitions),
    /// `all fault cells` (the target has no partition-only cell), or `none`.
    pub availability_from: String,
    /// The weakest of the cells' strongest models: the guarantee kept under every fault tried.
    /// `unknown` when any cell that ran has no known model (it could be weaker).
    pub model_kept: String,
    /// Cells of this target that ran (not errors, not skipped).
    pub cells: usize,
    pub models: Vec<String>,
    /// For transactional cells: the strongest transactional models kept in every cell (the
    /// meet on the map of what each cell kept); `None` when a cell that ran has no
    /// transactional verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_kept: Option<String>,
}

/// The strongest models kept in every one of `cells` (a model is kept by all when no cell
/// rules it out or left it undecided); `None` when a cell has no transactional verdict.
fn isolation_kept(cells: &[&CellRecord]) -> Option<String> {
    if cells.is_empty() {
        return None;
    }
    let (mut out, mut undecided) = (Vec::<ConsistencyModel>::new(), Vec::<ConsistencyModel>::new());
    for c in cells {
        let i = c.metrics.isolation.as_ref()?;
        out.extend(&i.ruled_out);
        undecided.extend(&i.undecided);
    }
    let kept = strongest_kept(&out, &undecided);
    Some(if kept.is_empty() { "none".into() } else { kept.iter().map(|m| m.name()).collect::<Vec<_>>().join(" / ") })
}

/// Builds the per-target comparison from the cells that ran.
pub fn compare(cells: &[CellRecord]) -> Vec<TargetComparison> {
    let mut targets: Vec<String> = Vec::new();
    for c in cells {
        if !targets.contains(&c.system()) {
            targets.push(c.system());
        }
    }
    targets
        .into_iter()
        .map(|t| {
            let ran: Vec<&CellRecord> = cells
                .iter()
                .filter(|c| c.system() == t && matches!(c.outcome.as_str(), "valid" | "invalid" | "unknown"))
                .collect();
            let partition_only =
                |c: &&&CellRecord| !c.fault_families.is_empty() && c.fault_families.iter().all(|f| f == "partition");
            let sum = |cs: &[&&CellRecord]| {
                let (mut ok, mut total) = (0u64, 0u64);
                for c in cs {
                    if let Some([o, f, i]) = c.metrics.during_faults {
                        ok += o;
                        total += o + f + i;
                    }
                }
                (total > 0).then(|| ok as f64 / total as f64)
            };
            let part: Vec<&&CellRecord> = ran.iter().filter(partition_only).collect();
            let faulted: Vec<&&CellRecord> = ran.iter().filter(|c| !c.fault_families.is_empty()).collect();
            let (availability, from) = match (sum(&part), sum(&faulted)) {
                (Some(a), _) => (Some(a), "partition cells"),
                (None, Some(a)) => (Some(a), "all fault cells"),
                _ => (None, "none"),
            };
            let models: Vec<String> = ran.iter().map(|c| c.metrics.model_shown()).collect();
            let ranks: Vec<Option<usize>> = ran.iter().map(|c| model_rank(&c.metrics.consistency)).collect();
            let model_kept = if ranks.is_empty() || ranks.iter().any(Option::is_none) {
                "unknown".to_string()
            } else {
                let min = ranks.iter().flatten().min().copied().unwrap_or(0);
                MODELS[MODELS.len() - 1 - min].to_string()
            };
            TargetComparison {
                target: t,
                availability_during_partitions: availability,
                availability_from: from.to_string(),
                model_kept,
                cells: ran.len(),
                models,
                isolation_kept: isolation_kept(&ran),
            }
        })
        .collect()
}

/// Writes campaign.json, comparison.png and campaign.html into `dir`; returns their paths.
pub fn write_all(dir: &Path, record: &CampaignRecord) -> Result<Vec<PathBuf>, ReportError> {
    let json_path = dir.join("campaign.json");
    let json = serde_json::to_vec_pretty(record).map_err(|e| ReportError::io(&json_path, std::io::Error::other(e)))?;
    crate::write_atomically(&json_path, &json)?;
    let png = dir.join("comparison.png");
    let tmp = dir.join(".tmp-comparison.png");
    crate::plots::ensure_font();
    comparison_png(&tmp, &record.comparison)
        .map_err(|e| ReportError::Plot { path: png.clone(), message: e.to_string() })?;
    std::fs::rename(&tmp, &png).map_err(|e| ReportError::io(&png, e))?;
    let html_path = dir.join("campaign.html");
    crate::write_atomically(&html_path, render_html(dir, record).as_bytes())?;
    Ok(vec![json_path, html_path, png])
}

fn badge(v: &str) -> Markup {
    let class = match v {
        "valid" | "invalid" | "unknown" => v,
        "error" => "invalid",
        _ => "other",
    };
    html! { span class={ "verdict " (class) } { (v) } }
}

fn pct(v: Option<f64>) -> String {
    v.map(|f| format!("{:.0}%", f * 100.0)).unwrap_or_else(|| "–".into())
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map(|f| format!("{f:.decimals$}")).unwrap_or_else(|| "–".into())
}

/// The link to a cell's report, when its run folder holds one.
fn report_link(dir: &Path, c: &CellRecord, inner: Markup) -> Markup {
    match &c.run_dir {
        Some(rd) if dir.join(rd).join("report.html").is_file() => {
            html! { a class="report" href={ (rd) "/report.html" } { (inner) } }
        }
        _ => inner,
    }
}

/// Renders campaign.html; `dir` is the campaign folder (to link only reports that exist).
/// Written with maud: every value of the record is escaped by the template engine.
pub fn render_html(dir: &Path, r: &CampaignRecord) -> String {
    let (status, status_class) = match r.exit_code {
        0 => ("as expected", "valid"),
        1 => ("mismatch", "invalid"),
        _ => ("error", "unknown"),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (r.name) " — faultline campaign" }
                style { (PreEscaped(crate::page::CSS)) (PreEscaped(CAMPAIGN_CSS)) }
            }
            body {
                h1 { "faultline campaign: " (r.name) " " span #status class={ "verdict " (status_class) } { (status) } }
                p #summary { (r.summary) }
                (summary_table(r))
                (matrix(dir, r))
                (comparison(r))
                (cells(dir, r))
                p.note { "Rendered by faultline-reports " (env!("CARGO_PKG_VERSION")) ". Each cell's run folder holds its own report.html, history and results." }
                (PreEscaped(crate::page::SELF_CHECK))
            }
        }
    };
    page.into_string() + "\n"
}

fn summary_table(r: &CampaignRecord) -> Markup {
    let rows = [
        ("campaign file", r.file.clone()),
        ("campaign seed", r.seed.to_string()),
        ("started", r.started.clone()),
        ("elapsed", format!("{:.1} s", r.elapsed_s)),
        ("cells", r.cells.len().to_string()),
        ("exit code", r.exit_code.to_string()),
    ];
    html! {
        table.summary {
            @for (k, v) in &rows { tr { th { (k) } td { (v) } } }
            @if r.interrupted { tr { th { "interrupted" } td { "yes: the cells after the interrupted one did not run" } } }
        }
    }
}

const CAMPAIGN_CSS: &str = r#"
td.cell{white-space:nowrap} td.cell .model{font-size:11px;color:#555;display:block}
tr.mismatch td{background:#fff3f3} code{font-size:11px;word-break:break-all}
"#;

/// Targets down, (workload, nemesis) across; a cell shows each repeat's outcome, linked to its
/// report, and the strongest model.
fn matrix(dir: &Path, r: &CampaignRecord) -> Markup {
    let mut targets: Vec<String> = Vec::new();
    let mut cols: Vec<(&str, &str)> = Vec::new();
    for c in &r.cells {
        if !targets.contains(&c.system()) {
            targets.push(c.system());
        }
        if !cols.contains(&(c.workload.as_str(), c.nemesis.as_str())) {
            cols.push((&c.workload, &c.nemesis));
        }
    }
    let in_cell = |t: &str, w: &str, n: &str| -> Vec<&CellRecord> {
        r.cells.iter().filter(|c| c.system() == t && c.workload == w && c.nemesis == n).collect()
    };
    html! {
        h2 #matrix { "Matrix" }
        table.matrix {
            tr { th { "target" } @for (w, n) in &cols { th { (w) br; (n) } } }
            @for t in &targets {
                tr {
                    th { (t) }
                    @for (w, n) in &cols {
                        td.cell {
                            @for c in in_cell(t, w, n) {
                                span title=(c.id) { (report_link(dir, c, badge(&c.outcome))) @if !c.matched { " ✗" } }
                                " "
                                span.model { (c.metrics.model_shown()) }
                            }
                        }
                    }
                }
            }
        }
        p.note { "✗: not the outcome the cell expects. Under each outcome, the strongest consistency model the run's history satisfied." }
    }
}

fn comparison(r: &CampaignRecord) -> Markup {
    let missing: Vec<&str> =
        r.comparison.iter().filter(|t| t.availability_during_partitions.is_none()).map(|t| t.target.as_str()).collect();
    html! {
        h2 #comparison { "Comparison" }
        figure {
            img.plot src="comparison.png" alt="comparison" width="900" height="520";
            figcaption.note { "One point per target: availability during partitions (ok share of the operations completed during fault windows) against the strongest consistency model kept in every cell of that target." }
        }
        table {
            tr { th { "target" } th { "availability during partitions" } th { "from" } th { "model kept" } th { "cells" } th { "strongest model per cell" } }
            @for t in &r.comparison {
                tr.target {
                    td { (t.target) }
                    td.num { (pct(t.availability_during_partitions)) }
                    td { (t.availability_from) }
                    td { (t.isolation_kept.clone().unwrap_or_else(|| t.model_kept.clone())) }
                    td.num { (t.cells) }
                    td { (t.models.join(", ")) }
                }
            }
        }
        @if !missing.is_empty() {
            p.note { "Not plotted (no operation completed during a fault window): " (missing.join(", ")) "." }
        }
    }
}

fn cells(dir: &Path, r: &CampaignRecord) -> Markup {
    html! {
        h2 #cells { "Cells" }
        table.cells {
            tr {
                @for h in ["cell", "outcome", "expected", "checkers", "avail. during faults", "ok ops/s", "p50 ms", "p99 ms", "model", "seed", "time"] { th { (h) } }
            }
            @for c in &r.cells { (cell_rows(dir, c)) }
        }
    }
}

/// A cell's row, and the row under it with the command that reproduces it.
fn cell_rows(dir: &Path, c: &CellRecord) -> Markup {
    let m = &c.metrics;
    html! {
        tr class={ "cell-row" @if !c.matched { " mismatch" } } id={ "cell-" (c.id) } {
            td { (report_link(dir, c, html! { (c.id) })) br; span.note { (c.target) " · " (c.workload) " · " (c.nemesis) " · repeat " (c.repeat) } }
            td { (badge(&c.outcome)) }
            td { (c.expect.join(" or ")) }
            td { @for (i, k) in m.checkers.iter().enumerate() { @if i > 0 { br; } (k.name) " " (badge(&k.verdict.to_string())) } }
            td.num { (pct(m.availability_during_faults)) }
            td.num { (num(m.throughput_ok_per_s, 1)) }
            td.num { (num(m.latency_ok_p50_ms, 1)) }
            td.num { (num(m.latency_ok_p99_ms, 1)) }
            td { (m.model_shown()) }
            td.num { (c.seed) }
            td.num { (format!("{:.1} s", c.elapsed_s)) }
        }
        tr.repro {
            td colspan="11" {
                code { (c.command) }
                @if let Some(e) = &c.error { br; span.warn { (truncate(e, 500)) } }
                @if let Some(l) = &c.log { " " a href=(l) { "log" } }
            }
        }
    }
}

/// comparison.png: x = availability during partitions (0–100 %), y = the model kept (ordinal,
/// `unknown` below `none`); one labelled point per target. Targets with no availability are
/// left out (the page lists them). When every plotted target ran transactions, y is the
/// transactional map ([`TXN_LEVELS`]); else the single-object ladder ([`MODELS`]).
fn comparison_png(path: &Path, targets: &[TargetComparison]) -> Result<(), Box<dyn std::error::Error>> {
    let plotted: Vec<&TargetComparison> =
        targets.iter().filter(|t| t.availability_during_partitions.is_some()).collect();
    let transactional = !plotted.is_empty() && plotted.iter().all(|t| t.isolation_kept.is_some());
    let (levels, caption) = if transactional {
        (TXN_LEVELS, "Availability during partitions vs transactional isolation kept")
    } else {
        (MODELS, "Availability during partitions vs consistency kept")
    };
    let model_of = |t: &TargetComparison| {
        if transactional {
            t.isolation_kept.clone().unwrap_or_default()
        } else {
            t.model_kept.clone()
        }
    };
    let rank = |m: &str| if transactional { txn_rank(m) } else { model_rank(m) };
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    // y positions: unknown = 0, the weakest level (none) = 1, ..., the strongest = levels.len().
    let y_of = |m: &str| rank(m).map(|r| r as f64 + 1.0).unwrap_or(0.0);
    let label_of = |y: f64| -> String {
        let i = y.round() as i64;
        if (y - i as f64).abs() > 1e-6 {
            return String::new();
        }
        match i {
            0 => "unknown".into(),
            i if (1..=levels.len() as i64).contains(&i) => short_level(levels[levels.len() - i as usize]).into(),
            _ => String::new(),
        }
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, crate::plots::font(20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(110)
        .build_cartesian_2d(-0.02f64..1.08f64, -0.6f64..(levels.len() as f64 + 0.6))?;
    chart
        .configure_mesh()
        .x_desc("availability during partitions (ok share of operations in fault windows)")
        .y_desc("strongest model kept")
        .x_label_formatter(&|v| format!("{:.0}%", v * 100.0))
        .y_labels(levels.len() + 1)
        .y_label_formatter(&|v| label_of(*v))
        .label_style(crate::plots::font(13))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let points: Vec<(String, f64, f64)> = targets
        .iter()
        .filter_map(|t| t.availability_during_partitions.map(|a| (t.target.clone(), a, y_of(&model_of(t)))))
        .collect();
    for (k, p) in layout(&points).into_iter().enumerate() {
        let color = crate::plots::F_COLORS[k % crate::plots::F_COLORS.len()];
        let label = p.label();
        let dx = if p.left { -10 - (CHAR_PX as i32) * label.chars().count() as i32 } else { 10 };
        // The label in its point's colour, so a label set above or below is read as its own.
        let style = crate::plots::font(14).color(&color);
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((p.x, p.y))
                    + Circle::new((0, 0), 6, color.filled())
                    + Text::new(label, (dx, p.dy), style),
            ))?
            .label(p.names.join(", "))
            .legend(move |(x, y)| Circle::new((x + 7, y), 4, color.filled()));
    }
    root.present()?;
    Ok(())
}

/// A y label that fits the 110 px label area (the transactional names are long).
fn short_level(level: &str) -> &str {
    match level {
        "strict-serializable" => "strict-serial.",
        "strong-session-serializable" => "strong-sess.-ser.",
        "snapshot-isolation" => "snapshot-iso.",
        "repeatable-read" => "repeatable-read",
        "read-committed" => "read-committed",
        "read-uncommitted" => "read-uncomm.",
        other => other,
    }
}

/// A point of comparison.png: where it is (exactly the target's availability and model) and
/// where its label goes.
#[derive(Clone, Debug, PartialEq)]
struct Placed {
    /// The targets at this point: coinciding points are one point with a list.
    names: Vec<String>,
    x: f64,
    y: f64,
    /// Label offset in pixels from the point: always within a third of a model row (about 57
    /// px), so a label never reads as belonging to another row.
    dy: i32,
    /// Label on the left of the point.
    left: bool,
}

/// Availabilities closer than this are one point.
const COINCIDE: f64 = 0.005;
/// Label slots, in order of preference: level, above, below on the right; then on the left.
const SLOTS: [(i32, bool); 6] = [(-7, false), (-24, false), (10, false), (-7, true), (-24, true), (10, true)];
/// The chart's x range and its width in pixels (900 px image less margins and the y labels).
const X_MIN: f64 = -0.02;
const X_MAX: f64 = 1.08;
const PLOT_PX: f64 = 690.0;
/// A label's text is 14 px high; DejaVu at 14 px is about 8 px a character.
const TEXT_PX: i32 = 14;
const CHAR_PX: f64 = 8.0;

impl Placed {
    fn label(&self) -> String {
        truncate(&self.names.join(", "), 60)
    }

    /// The label's horizontal span, in chart units, for a slot on `left` or the right.
    fn span(&self, left: bool) -> (f64, f64) {
        let w = (CHAR_PX * self.label().chars().count() as f64) / PLOT_PX * (X_MAX - X_MIN);
        let gap = 10.0 / PLOT_PX * (X_MAX - X_MIN);
        if left {
            (self.x - gap - w, self.x - gap)
        } else {
            (self.x + gap, self.x + gap + w)
        }
    }
}

/// Places the points of comparison.png: coinciding points merge (names listed), every point
/// stays exactly at its (availability, model), and each label takes the first slot around its
/// point that fits in the chart and overlaps no label or point already placed on its row.
fn layout(points: &[(String, f64, f64)]) -> Vec<Placed> {
    let mut placed: Vec<Placed> = Vec::new();
    for (name, x, y) in points {
        if let Some(p) = placed.iter_mut().find(|p| p.y == *y && (p.x - x).abs() < COINCIDE) {
            p.names.push(name.clone());
            continue;
        }
        placed.push(Placed { names: vec![name.clone()], x: *x, y: *y, dy: 0, left: false });
    }
    for k in 0..placed.len() {
        let p = &placed[k];
        let fits = |left: bool| {
            let (a, b) = p.span(left);
            a >= X_MIN && b <= X_MAX
        };
        let free = |dy: i32, left: bool| {
            let (a, b) = p.span(left);
            let row = placed.iter().enumerate().filter(|(i, q)| *i != k && q.y == p.y);
            // A level label would cover the points inside its span; others' labels, when
            // their spans and bands overlap.
            let over_points = dy == -7 && row.clone().any(|(_, q)| q.x >= a && q.x <= b);
            let over_labels = row.filter(|(i, _)| *i < k).any(|(_, q)| {
                let (c, d) = q.span(q.left);
                (q.dy - dy).abs() < TEXT_PX && c < b && a < d
            });
            !over_points && !over_labels
        };
        let fitting: Vec<(i32, bool)> = SLOTS.iter().copied().filter(|&(_, l)| fits(l)).collect();
        let (dy, left) =
            fitting.iter().copied().find(|&(dy, l)| free(dy, l)).or(fitting.first().copied()).unwrap_or(SLOTS[3]);
        placed[k].dy = dy;
        placed[k].left = left;
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cell(
        target: &str,
        nemesis: &str,
        families: &[&str],
        outcome: &str,
        during: [u64; 3],
        model: &str,
    ) -> CellRecord {
        CellRecord {
            id: format!("{target}-{nemesis}"),
            target: target.into(),
            workload: "register".into(),
            nemesis: nemesis.into(),
            fault_families: families.iter().map(|s| s.to_string()).collect(),
            repeat: 1,
            outcome: outcome.into(),
            matched: true,
            expect: vec!["valid".into()],
            metrics: CellMetrics { during_faults: Some(during), consistency: model.into(), ..Default::default() },
            ..Default::default()
        }
    }

    fn isolation(ruled_out: &[ConsistencyModel]) -> Isolation {
        let ruled_out = ruled_out.to_vec();
        Isolation {
            checker: "list-append".into(),
            strongest: strongest_kept(&ruled_out, &[]),
            ruled_out,
            undecided: vec![],
            anomalies: Default::default(),
        }
    }

    /// Two cells of one database: one kept serializable, the other showed write skew (G2-item):
    /// in every cell only snapshot isolation is kept. A third target with a cell that has no
    /// transactional verdict gets none.
    #[test]
    fn the_isolation_kept_is_the_meet_of_the_cells_and_the_plot_uses_the_transactional_map() {
        use ConsistencyModel::*;
        let g2 = [RepeatableRead, Serializable, StrongSessionSerializable, StrictSerializable];
        let mut a = cell("postgres", "none", &[], "valid", [0, 0, 0], "unknown");
        a.metrics.isolation = Some(isolation(&[StrictSerializable]));
        let mut b = cell("postgres", "kill", &["kill"], "invalid", [3, 1, 0], "unknown");
        b.metrics.isolation = Some(isolation(&g2));
        let mut c = cell("mariadb", "kill", &["kill"], "invalid", [5, 0, 0], "unknown");
        c.metrics.isolation = Some(isolation(&[
            RepeatableRead,
            SnapshotIsolation,
            Serializable,
            StrongSessionSerializable,
            StrictSerializable,
        ]));
        let d = cell("raft", "kill", &["kill"], "valid", [5, 0, 0], "linearizable");
        let cmp = compare(&[a.clone(), b, c, d]);
        let kept: Vec<Option<&str>> = cmp.iter().map(|t| t.isolation_kept.as_deref()).collect();
        assert_eq!(kept, [Some("snapshot-isolation"), Some("read-committed"), None]);
        assert_eq!(cmp[0].models, ["strong-session-serializable", "snapshot-isolation"]);
        assert!(txn_rank("snapshot-isolation").unwrap() > txn_rank("repeatable-read").unwrap());
        assert_eq!(txn_rank("snapshot-isolation / repeatable-read"), txn_rank("snapshot-isolation"));
        assert_eq!(txn_rank("linearizable"), None);
        // The page shows the transactional model kept; the plot is drawn.
        let dir = tempfile::tempdir().unwrap();
        let record = CampaignRecord { cells: vec![a], comparison: cmp, ..Default::default() };
        let page = render_html(dir.path(), &record);
        assert!(page.contains("<td>snapshot-isolation</td>"), "{page}");
        write_all(dir.path(), &record).unwrap();
        assert!(dir.path().join("comparison.png").metadata().unwrap().len() > 1000);
    }

    #[test]
    fn the_ranking_is_the_checkers_hierarchy() {
        let names: Vec<&str> = faultline_checker::hierarchy::Model::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(&MODELS[..names.len()], &names[..]);
        assert_eq!(MODELS[names.len()..], ["none"]);
    }

    #[test]
    fn metrics_come_from_the_runs_own_figures() {
        let r = json!({
            "verdict": "valid",
            "checkers": [{"name": "linearizable", "verdict": "valid", "reason": null}, {"name": "availability", "verdict": "unknown", "reason": "no ok"}],
            "availability": {"during_faults": {"ok": 24, "fail": 8, "info": 2}, "during_faults_ok_fraction": 0.7, "outside_faults_ok_fraction": 0.8, "fault_windows": 1},
            "latency": {"ok": {"count": 171, "p50_ms": 4.5, "p99_ms": 16.0}},
            "ops": {"completed": {"ok": 171, "fail": 41, "info": 2}},
            "timings": {"main_s": 6.0},
            "consistency": {"strongest": "sequential", "models": []}
        });
        let m = CellMetrics::from_results(&serde_json::from_value(r).unwrap());
        assert_eq!(m.checkers.len(), 2);
        assert_eq!(m.checkers[1].reason.as_deref(), Some("no ok"));
        assert_eq!(m.availability_during_faults, Some(0.7));
        assert_eq!(m.during_faults, Some([24, 8, 2]));
        assert_eq!(m.throughput_ok_per_s, Some(28.5));
        assert_eq!((m.latency_ok_p50_ms, m.latency_ok_p99_ms), (Some(4.5), Some(16.0)));
        assert_eq!(m.consistency, "sequential");
        // An older run: no consistency block, no latency; nothing invented.
        let old = CellMetrics::from_results(
            &serde_json::from_value(json!({"latency": {"ok": {"count": 0, "p50_ms": 0.0}}})).unwrap(),
        );
        assert_eq!(old.consistency, "unknown");
        assert_eq!(
            (old.latency_ok_p50_ms, old.throughput_ok_per_s, old.availability_during_faults),
            (None, None, None)
        );
    }

    #[test]
    fn points_stay_where_their_figures_are_and_coinciding_points_are_one() {
        let pts = vec![
            ("raft".to_string(), 0.82, 5.0),
            ("router".to_string(), 0.85, 5.0),
            ("lb strategy=weighted".to_string(), 0.86, 5.0),
            ("paxos".to_string(), 0.82, 5.0),
            ("multi-primary".to_string(), 1.0, 2.0),
            ("primary-backup".to_string(), 0.98, 2.0),
        ];
        let placed = layout(&pts);
        for (name, x, y) in &pts {
            let p = placed.iter().find(|p| p.names.contains(name)).unwrap();
            assert_eq!((p.x, p.y), (*x, *y), "{name} drawn away from its figures");
        }
        let raft = placed.iter().find(|p| p.names.contains(&"raft".to_string())).unwrap();
        assert_eq!(raft.names, vec!["raft", "paxos"], "coinciding points are one point with a list");
        assert_eq!(placed.len(), 5);
        assert!(placed.iter().all(|p| p.dy.abs() <= 24), "a label stays within its row: {placed:?}");
        let row5: Vec<(i32, bool)> = placed.iter().filter(|p| p.y == 5.0).map(|p| (p.dy, p.left)).collect();
        let mut distinct = row5.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), row5.len(), "near labels take different slots: {row5:?}");
    }

    #[test]
    fn the_model_kept_is_the_weakest_and_unknown_is_never_a_guarantee() {
        let cells = vec![
            cell("raft", "partition", &["partition"], "valid", [90, 10, 0], "linearizable"),
            cell("raft", "clock", &["clock"], "valid", [0, 100, 0], "sequential"),
            cell("crdt", "partition", &["partition"], "valid", [100, 0, 0], "convergent"),
            cell("crdt", "partition", &["partition"], "error", [0, 0, 0], "unknown"),
            cell("paxos", "partition", &["partition"], "valid", [50, 50, 0], "linearizable"),
            cell("paxos", "clock", &["clock"], "invalid", [100, 0, 0], "unknown"),
            cell("quorum", "none", &[], "valid", [0, 0, 0], "linearizable"),
        ];
        let c = compare(&cells);
        let by = |t: &str| c.iter().find(|x| x.target == t).unwrap().clone();
        let raft = by("raft");
        assert_eq!(raft.model_kept, "sequential", "the weaker of the two cells");
        assert_eq!(raft.availability_during_partitions, Some(0.9), "partition cells only");
        assert_eq!(raft.availability_from, "partition cells");
        let crdt = by("crdt");
        assert_eq!((crdt.cells, crdt.model_kept.as_str()), (1, "convergent"), "the error cell is not counted");
        assert_eq!(by("paxos").model_kept, "unknown", "a cell with no known model could be weaker");
        let quorum = by("quorum");
        assert_eq!((quorum.availability_during_partitions, quorum.availability_from.as_str()), (None, "none"));
        assert_eq!(c.iter().map(|t| t.target.as_str()).collect::<Vec<_>>(), ["raft", "crdt", "paxos", "quorum"]);
        // The same target with target options is another system.
        let mut lww = cell("multi-primary", "partition", &["partition"], "invalid", [10, 0, 0], "none");
        let mut vclock = lww.clone();
        vclock.options = json!({"target_opts": ["resolve=vclock"]});
        vclock.metrics.consistency = "convergent".into();
        lww.options = json!({"nodes": 3.0});
        let c = compare(&[lww, vclock]);
        assert_eq!(
            c.iter().map(|t| (t.target.as_str(), t.model_kept.as_str())).collect::<Vec<_>>(),
            [("multi-primary", "none"), ("multi-primary resolve=vclock", "convergent")]
        );
        assert_eq!(model_rank("linearizable"), Some(4));
        assert_eq!(model_rank("none"), Some(0));
        assert_eq!(model_rank("bogus"), None);
    }

    #[test]
    fn the_page_escapes_and_links_only_existing_reports() {
        let tmp = tempfile::tempdir().unwrap();
        let evil = "<script>x</script>";
        let mut a = cell(evil, evil, &["partition"], "valid", [1, 0, 0], evil);
        a.run_dir = Some("runs/a/1".into());
        a.command = format!("faultline run --target '{evil}'");
        std::fs::create_dir_all(tmp.path().join("runs/a/1")).unwrap();
        std::fs::write(tmp.path().join("runs/a/1/report.html"), "x").unwrap();
        let mut b = cell("raft", "partition", &["partition"], "error", [0, 0, 0], "unknown");
        b.run_dir = Some("runs/b/1".into()); // no report.html there
        b.error = Some(evil.into());
        b.matched = false;
        let mut rec = CampaignRecord {
            name: evil.into(),
            summary: evil.into(),
            exit_code: 255,
            cells: vec![a, b],
            ..Default::default()
        };
        rec.comparison = compare(&rec.cells);
        let html = render_html(tmp.path(), &rec);
        assert!(!html.contains("<script>x"), "unescaped");
        assert!(html.contains(r#"href="runs/a/1/report.html""#));
        assert!(!html.contains("runs/b/1/report.html"), "link to a report that does not exist");
        assert!(html.contains(r#"<tr class="cell-row mismatch""#));
        assert_eq!(html.matches(r#"<tr class="target">"#).count(), 2);
        let files = write_all(tmp.path(), &rec).unwrap();
        assert_eq!(files.len(), 3);
        let back: CampaignRecord =
            serde_json::from_slice(&std::fs::read(tmp.path().join("campaign.json")).unwrap()).unwrap();
        assert_eq!(back, rec);
        assert_eq!(&std::fs::read(tmp.path().join("comparison.png")).unwrap()[..4], b"\x89PNG");
    }
}
