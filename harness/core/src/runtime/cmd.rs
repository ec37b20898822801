//! Running the system tools the local runtime drives (`ip`, `iptables`, `iptables-restore`),
//! with their stderr in the error so a failed step says why.

use std::io::Write;
use std::process::{Command, Stdio};

use super::RuntimeError;

/// Runs `program args...`, returns stdout; a non-zero exit is an error quoting stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, RuntimeError> {
    run_with_stdin(program, args, None)
}

/// Like [`run`], feeding `stdin` to the program.
pub fn run_with_stdin(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, RuntimeError> {
    let line = format!("{program} {}", args.join(" "));
    tracing::debug!(target: "faultline::cmd", "{line}");
    let mut command = Command::new(program);
    // Own process group: a Ctrl-C meant for the harness must not kill a teardown step midway.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RuntimeError::Command {
            line: line.clone(),
            message: format!("cannot start: {e}"),
        })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.as_bytes())
            .map_err(|e| RuntimeError::Command {
                line: line.clone(),
                message: format!("cannot write stdin: {e}"),
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RuntimeError::Command {
            line: line.clone(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // iptables-nft prints this warning on every call once legacy tables exist; it is noise.
        let stderr: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("iptables-legacy tables present"))
            .collect();
        return Err(RuntimeError::Command {
            line,
            message: format!("{} ({})", stderr.join("; ").trim(), out.status),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `program` can be found and started.
pub fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
