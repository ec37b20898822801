//! Render benchmark: writes a synthetic run folder with N operations (default 100,000) and
//! times `render_run` on it. Not a timed test; figures go to docs/benchmarks.md.
//!
//! `cargo run --release -p faultline-reports --example render_bench -- [OPS] [RUNS] [KEEP_DIR]`

use std::time::Instant;

use faultline_reports::{render_run, synthetic, RenderOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let ops: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let keep = args.next();
    let tmp = tempfile::tempdir()?;
    let dir = keep.map(std::path::PathBuf::from).unwrap_or_else(|| tmp.path().join("run"));
    let t = Instant::now();
    synthetic::write_run(
        &dir,
        &synthetic::Spec { ops, processes: 10, keys: 8, think_ns: 2_000_000, ..Default::default() },
    )?;
    let history_bytes = std::fs::metadata(dir.join("history.jsonl"))?.len();
    println!("generated {ops} ops ({history_bytes} bytes of history) in {:.2} s", t.elapsed().as_secs_f64());
    let mut times = Vec::new();
    for i in 0..runs.max(1) {
        let summary = render_run(&dir, &RenderOptions::default())?;
        let s = summary.elapsed.as_secs_f64();
        println!(
            "render {}: {:.3} s, verdict {}, {} ops, {} files, {} warnings",
            i + 1,
            s,
            summary.verdict.map_or_else(|| "none".to_string(), |v| v.to_string()),
            summary.ops,
            summary.files.len(),
            summary.warnings.len()
        );
        times.push(s);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "min {:.3} s, median {:.3} s, max {:.3} s over {} renders",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
    Ok(())
}
