//! `faultline check`: reads a history (a history.jsonl, a run folder holding one, or an
//! imported Porcupine/Jepsen log), checks it for linearizability with `faultline-checker`, prints
//! the verdict and its explanation (text, or the report as JSON), and exits 0 valid, 1 invalid,
//! 2 unknown, 255 error. Malformed input is reported as `FILE:LINE: expected ..., found ...`.
//! With `--model list-append` or `rw-register` the history is a transaction history, judged
//! by the transactional checker (`faultline_checker::txn`) against `--consistency-model`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use faultline_checker::formats::Format;
use faultline_checker::jsonl::{clip, Parsed};
use faultline_checker::txn::{self, ConsistencyModel, TxnModel, TxnOptions};
use faultline_checker::{try_check_linearizable, CheckOptions, ModelKind};

use crate::{check_input, EXIT_ERROR};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 valid, 1 invalid, 2 unknown (a budget ran out), 255 error (bad input or usage).\n\
The history format is described in docs/history-format.md."
)]
pub struct CheckArgs {
    /// The model: register, cas-register, kv or set [default: kv for porcupine-kv, else
    /// cas-register]; or list-append or rw-register for transaction histories.
    #[arg(long, value_parser = parse_model)]
    pub model: Option<CheckModel>,
    /// For list-append and rw-register: the transactional model the history must satisfy:
    /// read-uncommitted, read-committed, repeatable-read, snapshot-isolation, serializable,
    /// strong-session-serializable or strict-serializable [default: strict-serializable, what
    /// faultline's transactional targets promise; pass serializable for an imported history
    /// whose real-time order is not trustworthy].
    #[arg(long, value_parser = parse_consistency_model)]
    pub consistency_model: Option<ConsistencyModel>,
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

/// A single-object model (linearizability and the hierarchy) or a transaction model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckModel {
    Object(ModelKind),
    Txn(TxnModel),
}

fn parse_model(s: &str) -> Result<CheckModel, String> {
    if let Ok(m) = s.parse::<TxnModel>() {
        return Ok(CheckModel::Txn(m));
    }
    s.parse().map(CheckModel::Object).map_err(|e: faultline_checker::model::UnknownModel| {
        format!("{e} (or list-append, rw-register for transaction histories)")
    })
}

fn parse_consistency_model(s: &str) -> Result<ConsistencyModel, String> {
    s.parse().map_err(|e: txn::UnknownConsistencyModel| e.to_string())
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

/// For a run folder of a transactional workload (its test.json says `"workload":
/// "list-append"` or `"rw-register"`), that model: `faultline check store/latest` re-judges a
/// transactional run as the run did, without `--model`.
fn run_folder_txn_model(path: &Path) -> Option<CheckModel> {
    const TEST_JSON_BYTES_MAX: u64 = 1 << 20;
    let test = path.join("test.json");
    if !path.is_dir() || test.metadata().ok()?.len() > TEST_JSON_BYTES_MAX {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(test).ok()?).ok()?;
    v.get("workload")?.as_str()?.parse::<TxnModel>().ok().map(CheckModel::Txn)
}

/// Reads and parses the input: `Ok(Err(code))` when it was bad input, already reported.
fn load(args: &CheckArgs) -> anyhow::Result<Result<(String, Parsed), u8>> {
    let path = resolve(&args.file)?;
    let shown = path.display().to_string();
    let limit = check_input::byte_limit(args.memory_limit_mib.saturating_mul(1 << 20));
    let text = match check_input::read_text(&path, limit) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{shown}:{e}");
            return Ok(Err(EXIT_ERROR));
        }
    };
    let parsed = match args.format.parse_operations(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{shown}:{e}");
            return Ok(Err(EXIT_ERROR));
        }
    };
    for w in &parsed.warnings {
        eprintln!("{shown}:{} (warning)", clip(w));
    }
    Ok(Ok((shown, parsed)))
}

pub fn main(args: CheckArgs) -> anyhow::Result<u8> {
    // --time-limit is the budget of the whole invocation (reading, linearizability, --models).
    let started = std::time::Instant::now();
    if let Some(CheckModel::Txn(model)) = args.model.or_else(|| run_folder_txn_model(&args.file)) {
        return txn_main(&args, model);
    }
    anyhow::ensure!(
        args.consistency_model.is_none(),
        "--consistency-model applies to transaction histories only (--model list-append or rw-register)"
    );
    let (shown, parsed) = match load(&args)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let model = match args.model {
        Some(CheckModel::Object(m)) => m,
        _ => args.format.default_model(),
    };
    let opts = CheckOptions {
        time_limit: Some(Duration::from_secs_f64(args.time_limit).saturating_sub(started.elapsed())),
        memory_limit_bytes: Some(args.memory_limit_mib.saturating_mul(1 << 20)),
        stop_on_first_invalid: !args.all_keys,
        threads: args.threads.unwrap_or(CheckOptions::default().threads).max(1),
        initial_value: args.initial_value,
        ..CheckOptions::default()
    };
    anyhow::ensure!(
        !args.models || args.initial_value.is_none(),
        "--models takes registers starting at null: drop --initial-value"
    );
    anyhow::ensure!(
        !args.models || matches!(model, ModelKind::Register | ModelKind::CasRegister),
        "--models places register histories only (--model register or cas-register), not {model}"
    );
    let report = match try_check_linearizable(&parsed.events, model, &opts) {
        Ok(r) => r,
        Err(e) => {
            let line = parsed.lines.get(e.position).copied().unwrap_or(0);
            eprintln!("{shown}:{line}: expected {}, found {}", clip(&e.expected), clip(&e.found));
            return Ok(EXIT_ERROR);
        }
    };
    let consistency = if args.models {
        let lin = faultline_core::workload::CheckerResult::new("linearizable", report.verdict, report.reason.clone());
        let left = Duration::from_secs_f64(args.time_limit).saturating_sub(started.elapsed());
        let opts = CheckOptions { stop_on_first_invalid: true, time_limit: Some(left), ..opts };
        Some(faultline_workloads::register::register_consistency(&parsed.events, &[lin], &opts))
    } else {
        None
    };
    match (args.json, &consistency) {
        (true, None) => outln!("{}", serde_json::to_string_pretty(&report).context("serializing the report")?),
        (true, Some(c)) => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "linearizability": report, "consistency": c }))
                .context("serializing the report")?
        ),
        (false, _) => {
            print!("{}", report.to_text());
            if let Some(c) = &consistency {
                outln!("{}", crate::run::consistency_table(c));
            }
        }
    }
    Ok(report.verdict.exit_code())
}

/// `faultline check --model list-append|rw-register`: the transactional checker.
fn txn_main(args: &CheckArgs, model: TxnModel) -> anyhow::Result<u8> {
    anyhow::ensure!(!args.models, "--models places single-object histories only, not {}", model.name());
    let (shown, parsed) = match load(args)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let consistency = args.consistency_model.unwrap_or(ConsistencyModel::StrictSerializable);
    let opts = TxnOptions {
        time_limit: Some(Duration::from_secs_f64(args.time_limit)),
        memory_limit_bytes: Some(args.memory_limit_mib.saturating_mul(1 << 20)),
        ..TxnOptions::default()
    };
    let report = match txn::try_check(&parsed.events, model, consistency, &opts) {
        Ok(r) => r,
        Err(e) => {
            let line = parsed.lines.get(e.position).copied().unwrap_or(0);
            eprintln!("{shown}:{line}: expected {}, found {}", e.expected, e.found);
            return Ok(EXIT_ERROR);
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report).context("serializing the report")?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(report.verdict.exit_code())
}
