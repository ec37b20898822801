//! Running the system tools the runtimes drive (`ip`, `iptables`, `iptables-restore`, `docker`,
//! `docker-compose`, `nsenter`): one bounded subprocess helper. Every call has a timeout (a
//! hung tool must not hang the harness), runs in its own process group (a Ctrl-C meant for
//! the harness must not kill a teardown step midway, and a timeout kills the whole group), and
//! a failure quotes the tool's stderr so a failed step says why.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::RuntimeError;

/// How long a network or process tool may take (`ip`, `iptables-restore -w 5`, ...): far more
/// than the milliseconds they need, little enough that a hung one fails the step.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `program args...` (bounded by [`TOOL_TIMEOUT`]), returns stdout; a non-zero exit is an
/// error quoting stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, RuntimeError> {
    run_with_stdin(program, args, None)
}

/// Like [`run`], feeding `stdin` to the program.
pub fn run_with_stdin(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, RuntimeError> {
    let out = run_bounded(&Call { program, args, stdin, timeout: TOOL_TIMEOUT, ..Call::default() })?;
    if !out.ok {
        return Err(RuntimeError::Command {
            line: format!("{program} {}", args.join(" ")),
            message: format!("{} ({})", clean_stderr(&out.stderr), out.status),
        });
    }
    Ok(out.stdout)
}

/// One subprocess call.
#[derive(Default)]
pub struct Call<'a> {
    pub program: &'a str,
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    pub cwd: Option<&'a Path>,
    pub stdin: Option<&'a str>,
    pub timeout: Duration,
    /// Killed as soon as this turns true (a Ctrl-C during a long image build).
    pub cancel: Option<&'a tokio::sync::watch::Receiver<bool>>,
}

/// What a finished call printed and how it exited.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub status: String,
}

fn err(line: &str, message: String) -> RuntimeError {
    RuntimeError::Command { line: line.to_string(), message }
}

/// Runs `c`, killing it and its process group after `c.timeout` or when `c.cancel` turns true.
pub fn run_bounded(c: &Call) -> Result<Output, RuntimeError> {
    let line = format!("{} {}", c.program, c.args.join(" "));
    tracing::debug!(target: "faultline::cmd", "{line}");
    let mut command = Command::new(c.program);
    command.args(c.args).stdin(if c.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in c.env {
        command.env(k, v);
    }
    if let Some(d) = c.cwd {
        command.current_dir(d);
    }
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|e| err(&line, format!("cannot start: {e}")))?;
    // Readers on their own threads: a full pipe would otherwise block the child forever.
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = pipe.read_to_end(&mut s);
            s
        })
    };
    let out_t = read_all(Box::new(child.stdout.take().expect("stdout piped")));
    let err_t = read_all(Box::new(child.stderr.take().expect("stderr piped")));
    if let Some(input) = c.stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        pipe.write_all(input.as_bytes()).map_err(|e| err(&line, format!("cannot write stdin: {e}")))?;
    }
    let status = wait_bounded(&mut child, c, &line)?;
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Ok(Output { ok: status.success(), stdout, stderr, status: status.to_string() })
}

/// Waits for `child` (its stdin closed first); kills its group on timeout or cancel.
fn wait_bounded(
    child: &mut std::process::Child,
    c: &Call,
    line: &str,
) -> Result<std::process::ExitStatus, RuntimeError> {
    drop(child.stdin.take());
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        let cancelled = c.cancel.is_some_and(|c| *c.borrow());
        if started.elapsed() >= c.timeout || cancelled {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            let why = if cancelled {
                "cancelled".to_string()
            } else {
                format!("timed out after {:.0} s", c.timeout.as_secs_f64())
            };
            return Err(err(line, why));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// stderr without the noise iptables-nft repeats once legacy tables exist, on one line.
pub fn clean_stderr(s: &str) -> String {
    s.lines()
        .filter(|l| !l.contains("iptables-legacy tables present"))
        .collect::<Vec<_>>()
        .join("; ")
        .trim()
        .to_string()
}

/// True when `program` can be found and started.
pub fn available(program: &str) -> bool {
    run_bounded(&Call { program, args: &["--version"], timeout: TOOL_TIMEOUT, ..Call::default() }).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_stdin_failure_and_timeout() {
        assert_eq!(run_with_stdin("cat", &[], Some("abc")).unwrap(), "abc");
        let e = run("sh", &["-c", "echo oops >&2; exit 3"]).unwrap_err().to_string();
        assert!(e.contains("oops") && e.contains("3"), "{e}");
        let started = Instant::now();
        let slow = run_bounded(&Call {
            program: "sleep",
            args: &["5"],
            timeout: Duration::from_millis(200),
            ..Call::default()
        });
        assert!(slow.err().map(|e| e.to_string()).unwrap_or_default().contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(3), "killed at the timeout, not waited for");
        assert!(!available("no-such-program-faultline"));
    }
}
