//! `faultline`: the command line. A thin layer over the library crates: parse flags, call the
//! library, map its outcome to the exit-code contract.
//!
//! Exit codes (the contract scripts rely on): 0 valid, 1 invalid, 2 unknown, 255 error (harness
//! failure, bad input, bad usage).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` for what the user reads on stdout ([`out::line`]): a reader that closed the pipe
/// (`faultline campaign F --dry-run | head`) ends the output, not the process with a panic.
macro_rules! outln {
    () => { $crate::out::line(format_args!("")) };
    ($($t:tt)*) => { $crate::out::line(format_args!($($t)*)) };
}

mod campaign;
mod campaign_spec;
mod check;
mod check_input;
mod cleanup;
mod report;
mod run;
mod serve;
mod shrink;
mod ssh_args;

/// Standard output that a closed pipe does not crash.
pub mod out {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Set once stdout failed: nothing more is written (the reader is gone, or the disk full).
    static CLOSED: AtomicBool = AtomicBool::new(false);

    /// Writes one line to stdout. A reader that went away (`| head`) is its choice: the rest of
    /// the output is dropped and the command goes on to its exit code, as ripgrep does; SIGPIPE
    /// stays ignored, since the runtimes write to pipes of their own (iptables-restore, ssh).
    /// Any other failure is said once on stderr.
    pub fn line(args: std::fmt::Arguments) {
        if CLOSED.load(Ordering::Relaxed) {
            return;
        }
        let mut o = std::io::stdout().lock();
        if let Err(e) = writeln!(o, "{args}").and_then(|_| o.flush()) {
            CLOSED.store(true, Ordering::Relaxed);
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("faultline: cannot write to stdout: {e}");
            }
        }
    }
}

/// The verdict-to-exit-code contract.
pub const EXIT_VALID: u8 = 0;
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_UNKNOWN: u8 = 2;
pub const EXIT_ERROR: u8 = 255;

#[derive(Parser, Debug)]
#[command(
    name = "faultline",
    version,
    about = "Jepsen-style fault injection: run a cluster under faults, record the history, check it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once per process: the size of the largest variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Start a cluster, drive clients, inject faults, record and check the history.
    Run(Box<run::RunArgs>),
    /// Check a recorded history (a history.jsonl, a run folder, or an imported format).
    Check(check::CheckArgs),
    /// Remove whatever a killed run left behind (namespaces, links, firewall chains, processes).
    Cleanup(cleanup::CleanupArgs),
    /// Render (or re-render) a run folder's report.html and PNG plots.
    Report(report::ReportArgs),
    /// Run a campaign: a matrix of targets × workloads × nemeses × repeats from a TOML file,
    /// each cell a `faultline run`; writes campaign.json, campaign.html and a comparison plot.
    Campaign(campaign::CampaignArgs),
    /// Serve a run store on 127.0.0.1: the runs, filterable by verdict, each linked to its report.
    Serve(serve::ServeArgs),
    /// Re-run an invalid run with fewer fault windows, a shorter time limit and fewer clients,
    /// to find a smaller run that still fails (delta debugging; bounded by --budget-runs).
    Shrink(shrink::ShrinkArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own exit code is 2, which our contract reserves for "unknown".
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::from(EXIT_VALID)
                }
                _ => ExitCode::from(EXIT_ERROR),
            };
        }
    };
    let outcome = match cli.command {
        Command::Run(args) => run::main(*args),
        Command::Check(args) => check::main(args),
        Command::Cleanup(args) => cleanup::main(args),
        Command::Report(args) => report::main(args),
        Command::Serve(args) => serve::main(args),
        Command::Campaign(args) => campaign::main(args),
        Command::Shrink(args) => shrink::main(args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("faultline: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
