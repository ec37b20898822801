//! `faultline report RUN_DIR`: (re-)render a run folder's report.html and PNG plots.
//!
//! Works on any stored run, finished or crashed: the report shows what the folder holds.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The run folder (store/<test>/<timestamp>, or store/latest).
    pub run_dir: PathBuf,
    /// At most this many operations in the HTML timeline (the page says when it is capped).
    #[arg(long, default_value_t = 2_000)]
    pub timeline_ops_max: usize,
}

pub fn main(args: ReportArgs) -> anyhow::Result<u8> {
    let options = faultline_reports::RenderOptions { timeline_ops_max: args.timeline_ops_max, ..Default::default() };
    let summary = faultline_reports::render_run(&args.run_dir, &options)
        .with_context(|| format!("cannot render the report of {}", args.run_dir.display()))?;
    for w in summary.warnings.iter().take(10) {
        eprintln!("faultline: warning: {w}");
    }
    if summary.warnings.len() > 10 {
        eprintln!("faultline: warning: {} more warnings in the report", summary.warnings.len() - 10);
    }
    outln!(
        "rendered {} ({} ops, verdict {}) in {:.2} s:",
        args.run_dir.display(),
        summary.ops,
        summary.verdict.map_or_else(|| "none".to_string(), |v| v.to_string()),
        summary.elapsed.as_secs_f64()
    );
    for f in &summary.files {
        outln!("  {}", f.display());
    }
    Ok(crate::EXIT_VALID)
}
