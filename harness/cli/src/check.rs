//! `faultline check`: reads a history (a history.jsonl, a run folder holding one, or an
//! imported Porcupine/Jepsen log), checks it for linearizability with `faultline-checker`, prints
//! the verdict and its explanation (text, or the report as JSON), and exits 0 valid, 1 invalid,
//! 2 unknown, 255 error. Malformed input is reported as `FILE:LINE: expected ..., found ...`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use faultline_checker::formats::Format;
use faultline_checker::{try_check_linearizable, CheckOptions, ModelKind};

use crate::EXIT_ERROR;

/// Bigger inputs are refused rather than read into memory.
const INPUT_BYTES_MAX: u64 = 4 << 30;

#[derive(clap::Args, Debug)]
#[command(after_help = "Exit codes: 0 valid, 1 invalid, 2 unknown (a budget ran out), 255 error (bad input or usage).\n\
The history format is described in docs/history-format.md.")]
pub struct CheckArgs {
    /// The model: register, cas-register, kv or set [default: kv for porcupine-kv, else cas-register].
    #[arg(long, value_parser = parse_model)]
    pub model: Option<ModelKind>,
    /// The input format: jsonl, porcupine-etcd, porcupine-kv or jepsen-edn.
    #[arg(long, default_value = "jsonl", value_parser = parse_format)]
    pub format: Format,
    /// Wall-clock budget in seconds; when it runs out the verdict is `unknown` (exit 2).
    #[arg(long, default_value_t = 60.0, value_parser = parse_seconds)]
    pub time_limit: f64,
    /// Memory budget of the search in MiB; when it runs out the verdict is `unknown` (exit 2).
    #[arg(long, default_value_t = 2048)]
    pub memory_limit_mib: u64,
    /// Judge every key even after one is found invalid (slower; complete report).
    #[arg(long)]
    pub all_keys: bool,
    /// Worker threads for the keys [default: the number of CPUs].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Register and cas-register: the value every register starts with instead of null
    /// (Knossos's histories start at 0).
    #[arg(long, allow_negative_numbers = true)]
    pub initial_value: Option<i64>,
    /// Also place the history on the consistency hierarchy (register and cas-register only):
    /// linearizable > sequential (per key) > session (read-your-writes + monotonic reads) >
    /// convergent, each weaker model checked only when the stronger one is not valid, under the
    /// same budgets. The exit code still follows the linearizability verdict. With --json the
    /// output is {"linearizability": REPORT, "consistency": BLOCK}.
    #[arg(long)]
    pub models: bool,
    /// The history file, or a run folder containing history.jsonl.
    pub file: PathBuf,
}

fn parse_model(s: &str) -> Result<ModelKind, String> {
    s.parse().map_err(|e: faultline_checker::model::UnknownModel| e.to_string())
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse().map_err(|e: faultline_checker::formats::UnknownFormat| e.to_string())
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number of seconds >= 0, found \"{s}\"")),
    }
}

/// The file to read: FILE itself, or FILE/history.jsonl for a run folder.
fn resolve(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_dir() {
        let h = path.join("history.jsonl");
        anyhow::ensure!(h.is_file(), "{}: a run folder must contain history.jsonl", path.display());
        Ok(h)
    } else {
        Ok(path.to_path_buf())
    }
}

pub fn main(args: CheckArgs) -> anyhow::Result<u8> {
    let path = resolve(&args.file)?;
    let shown = path.display().to_string();
    let size = std::fs::metadata(&path).with_context(|| format!("{shown}: cannot read"))?.len();
    anyhow::ensure!(size <= INPUT_BYTES_MAX, "{shown}: {size} bytes is more than the {INPUT_BYTES_MAX} this command reads");
    let bytes = std::fs::read(&path).with_context(|| format!("{shown}: cannot read"))?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            eprintln!("{shown}:{line}: expected UTF-8 text, found invalid bytes");
            return Ok(EXIT_ERROR);
        }
    };
    let parsed = match args.format.parse(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{shown}:{e}");
            return Ok(EXIT_ERROR);
        }
    };
    for w in &parsed.warnings {
        eprintln!("{shown}:{w} (warning)");
    }
    let model = args.model.unwrap_or_else(|| args.format.default_model());
    let opts = CheckOptions {
        time_limit: Some(Duration::from_secs_f64(args.time_limit)),
        memory_limit_bytes: Some(args.memory_limit_mib.saturating_mul(1 << 20)),
        stop_on_first_invalid: !args.all_keys,
        threads: args.threads.unwrap_or(CheckOptions::default().threads).max(1),
        initial_value: args.initial_value,
        ..CheckOptions::default()
    };
    anyhow::ensure!(!args.models || args.initial_value.is_none(), "--models takes registers starting at null: drop --initial-value");
    anyhow::ensure!(
        !args.models || matches!(model, ModelKind::Register | ModelKind::CasRegister),
        "--models places register histories only (--model register or cas-register), not {model}"
    );
    let report = match try_check_linearizable(&parsed.events, model, &opts) {
        Ok(r) => r,
        Err(e) => {
            let line = parsed.lines.get(e.position).copied().unwrap_or(0);
            eprintln!("{shown}:{line}: expected {}, found {}", e.expected, e.found);
            return Ok(EXIT_ERROR);
        }
    };
    let consistency = if args.models {
        let lin = faultline_core::workload::CheckerResult {
            name: "linearizable".into(),
            verdict: report.verdict.to_string(),
            reason: report.reason.clone(),
            details: serde_json::Value::Null,
        };
        Some(faultline_workloads::register::register_consistency(&parsed.events, &[lin], &CheckOptions { stop_on_first_invalid: true, ..opts }))
    } else {
        None
    };
    match (args.json, &consistency) {
        (true, None) => println!("{}", serde_json::to_string_pretty(&report).context("serializing the report")?),
        (true, Some(c)) => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "linearizability": report, "consistency": c }))
                .context("serializing the report")?
        ),
        (false, _) => {
            print!("{}", report.to_text());
            if let Some(c) = &consistency {
                let results = serde_json::json!({ "consistency": c });
                if let Some(t) = crate::run::consistency_table(&results) {
                    println!("{t}");
                }
            }
        }
    }
    Ok(report.verdict.exit_code())
}
