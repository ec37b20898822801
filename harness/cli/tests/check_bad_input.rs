//! `faultline check` on input that is not a history (issue 19, findings 4–7): pipes and
//! devices are refused at once, garbage and empty files are errors (255) with the reason in
//! every format, messages quote little and escape control characters, and `--models` keeps to
//! `--time-limit` as a whole.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const FORMATS: [&str; 4] = ["jsonl", "porcupine-etcd", "porcupine-kv", "jepsen-edn"];

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline")).args(args).output().expect("faultline runs")
}

fn check(format: &str, file: &Path, extra: &[&str]) -> (i32, String, Duration) {
    let t = Instant::now();
    let mut args = vec!["check", "--format", format, "--time-limit", "5"];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    let o = faultline(&args);
    (o.status.code().expect("exited"), String::from_utf8_lossy(&o.stderr).into_owned(), t.elapsed())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("temp file written");
    p
}

#[test]
fn a_fifo_or_a_device_does_not_hang_or_read_forever() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for format in FORMATS {
        for file in [fifo.as_path(), Path::new("/dev/zero"), Path::new("/dev/null")] {
            let (code, err, took) = check(format, file, &[]);
            assert_eq!(code, 255, "{format} {}: {err}", file.display());
            assert!(err.contains("not a regular file"), "{format} {}: {err}", file.display());
            assert!(took < Duration::from_secs(2), "{format} {}: {took:?}", file.display());
        }
    }
}

#[test]
fn input_beyond_the_memory_budget_is_refused_unread() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "big.jsonl", &vec![b'a'; 17 << 20]);
    let (code, err, _) = check("jsonl", &f, &["--memory-limit-mib", "16"]);
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("--memory-limit-mib"), "{err}");
}

#[test]
fn garbage_or_empty_input_is_an_error_not_a_valid_history() {
    let d = tempfile::tempdir().unwrap();
    let inputs: [(&str, Vec<u8>); 5] = [
        ("garbage", b"this is not json".to_vec()),
        ("empty", Vec::new()),
        ("blank", b"\n \n\n".to_vec()),
        ("letters", vec![b'a'; 1 << 20]),
        ("brackets", vec![b'['; 1 << 20]),
    ];
    for (name, bytes) in &inputs {
        let f = write(d.path(), name, bytes);
        for format in FORMATS {
            let (code, err, _) = check(format, &f, &[]);
            assert_eq!(code, 255, "{format} {name}: {err}");
            assert!(err.contains(&format!("{}:1: expected", f.display())), "{format} {name}: {err}");
        }
    }
    // A truncated last line after valid events stays a warning.
    let ok = "{\"index\":0,\"time\":1,\"type\":\"invoke\",\"process\":0,\"f\":\"read\",\"key\":\"r\",\"value\":null}\n\
              {\"index\":1,\"time\":2,\"type\":\"ok\",\"process\":0,\"f\":\"read\",\"key\":\"r\",\"value\":null}\n{\"ind";
    let f = write(d.path(), "cut.jsonl", ok.as_bytes());
    let (code, err, _) = check("jsonl", &f, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("3: truncated last line ignored"), "{err}");
}

#[test]
fn error_messages_quote_at_most_a_few_hundred_escaped_characters() {
    let d = tempfile::tempdir().unwrap();
    let long = format!(
        "{{\"index\":0,\"time\":0,\"type\":\"ok\",\"process\":0,\"f\":\"\u{1b}[31m{}\"}}\n",
        "x".repeat(5 << 20)
    );
    let f = write(d.path(), "long", long.as_bytes());
    let edn = write(d.path(), "num.edn", b"{:type :invoke, :f :write, :value 18446744073709551616, :process 0}\n");
    for format in FORMATS {
        let (code, err, _) = check(format, &f, &[]);
        assert_eq!(code, 255, "{format}");
        assert!(err.len() < 1000, "{format}: {} bytes on stderr", err.len());
        assert!(!err.trim_end().chars().any(char::is_control), "{format}: {err:?}");
    }
    let (code, err, _) = check("jepsen-edn", &edn, &[]);
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("found \"18446744073709551616\""), "{err}");
}

/// 16 concurrent writes of 1..=16, each value written twice (by two processes: with repeated
/// values the polynomial procedure for unique-value registers hands the key to the search,
/// which it would otherwise decide in a millisecond); reader j reads j then j+1, and one reader
/// reads 16 then 1: a cycle in the write order that the linearizability, sequential and session
/// searches each need far more than a second to find (measured: about 2 s each at
/// `--time-limit 2`, 6.3 s in all before the budget was shared).
fn hard_history() -> String {
    let n = 16u64;
    let mut i = 0;
    let mut s = String::new();
    let mut ev = |kind: &str, p: u64, f: &str, v: String| {
        s += &format!("{{\"index\":{i},\"time\":{},\"type\":\"{kind}\",\"process\":{p},\"f\":\"{f}\",\"key\":\"r\",\"value\":{v}}}\n", i * 1000);
        i += 1;
    };
    for p in 0..n {
        ev("invoke", p, "write", (p + 1).to_string());
        ev("invoke", 3 * n + p, "write", (p + 1).to_string());
    }
    let pairs: Vec<(u64, u64)> = (1..n).map(|j| (j, j + 1)).chain([(n, 1)]).collect();
    for step in 0..2 {
        for r in 0..n {
            ev("invoke", n + r, "read", "null".into());
        }
        for (r, (a, b)) in pairs.iter().enumerate() {
            ev("ok", n + r as u64, "read", if step == 0 { a } else { b }.to_string());
        }
    }
    for p in 0..n {
        ev("ok", p, "write", (p + 1).to_string());
        ev("ok", 3 * n + p, "write", (p + 1).to_string());
    }
    s
}

#[test]
fn models_keeps_to_the_time_limit_of_the_whole_invocation() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "hard.jsonl", hard_history().as_bytes());
    let t = Instant::now();
    let o = faultline(&["check", "--models", "--time-limit", "2", f.to_str().unwrap()]);
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(took < Duration::from_millis(3500), "--time-limit 2 with --models took {took:?}");
}
