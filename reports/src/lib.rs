//! faultline-reports: what a person reads after a run.
//!
//! Owns the per-run report (`report.html` and the PNG plots written into a run folder), the
//! index of a run store and the small HTTP server behind `faultline serve`. It reads only the
//! files a run leaves behind (`history.jsonl`, `test.json`, `results.json`), never the cluster,
//! so any stored run, even a crashed one with a truncated history, can be rendered again.
//!
//! Map:
//! - [`run`]: load a run folder tolerantly (bad lines become warnings, not panics).
//! - [`ops`]: pair invocations with their completions into operations.
//! - [`intervals`]: fault intervals from the history's nemesis events.
//! - [`stats`]: quantiles, time windows, rates.
//! - [`clock`]: clock offsets per node, from results.json samples or nemesis clock events.
//! - [`counterexample`]: the failing op and longest partial linearization of an invalid key.
//! - [`isolation`]: the transactional map and each anomaly's cycle drawn (list-append, rw-register).
//! - [`html`]: escaping and the small SVG/HTML helpers; [`page`]: report.html itself.
//! - [`plots`]: latency-raw.png, latency-quantiles.png, rate.png, clock-skew.png.
//! - [`campaign`]: campaign.json, campaign.html and comparison.png of `faultline campaign`.
//! - [`store`]: the runs of a store, for the index page; [`serve`]: the HTTP server.
//! - [`synthetic`]: generated run folders for tests and the benchmark.

pub mod campaign;
pub mod clock;
pub mod counterexample;
pub mod html;
pub mod intervals;
pub mod isolation;
pub mod ops;
pub mod page;
pub mod plots;
pub mod run;
pub mod serve;
pub mod stats;
pub mod store;
pub mod synthetic;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Everything that can stop a report from being written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    // The io error is part of the message, not a `source`, so that `{:#}` chains print it once.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: not a run folder (expected a directory holding history.jsonl, test.json or results.json)")]
    NotARun { path: PathBuf },
    #[error("{path}: drawing the plot failed: {message}")]
    Plot { path: PathBuf, message: String },
}

impl ReportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ReportError::Io { path: path.to_path_buf(), error: source }
    }
}

/// Knobs of a report. The defaults suit a run of any size.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// At most this many operations are drawn in the timeline; the page says so when capped.
    pub timeline_ops_max: usize,
    /// At most this many operations are drawn in a counterexample picture.
    pub counterexample_ops_max: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { timeline_ops_max: 2_000, counterexample_ops_max: 200 }
    }
}

/// What a render wrote and how long it took.
#[derive(Clone, Debug)]
pub struct RenderSummary {
    /// report.html and every PNG written, in the run folder.
    pub files: Vec<PathBuf>,
    /// The verdict the report shows; `None` without a readable results.json.
    pub verdict: Option<faultline_results::Verdict>,
    pub ops: usize,
    /// Problems found in the inputs (bad history lines, unmatched fault events, ...).
    pub warnings: Vec<String>,
    pub elapsed: Duration,
}

/// Renders `report.html` and the PNG plots into `run_dir`, replacing earlier ones.
///
/// Fails only when the folder cannot be read or written; malformed inputs are reported inside
/// the page as warnings.
pub fn render_run(run_dir: &Path, options: &RenderOptions) -> Result<RenderSummary, ReportError> {
    let started = Instant::now();
    let run = run::RunData::load(run_dir)?;
    let analysis = page::Analysis::new(&run);
    let mut files = Vec::new();
    let plots = plots::write_all(run_dir, &analysis)?;
    files.extend(plots.iter().map(|p| p.path.clone()));
    let html = page::render(&run, &analysis, &plots, options);
    let report = run_dir.join("report.html");
    write_atomically(&report, html.as_bytes())?;
    files.insert(0, report);
    Ok(RenderSummary {
        files,
        verdict: run.results.as_ref().map(|r| r.verdict),
        ops: analysis.ops.ops.len(),
        warnings: analysis.warnings.clone(),
        elapsed: started.elapsed(),
    })
}

/// Writes through a temporary file and a rename so that a reader (the server, a browser) never
/// sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(|e| ReportError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ReportError::io(path, e))
}
