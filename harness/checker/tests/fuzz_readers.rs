//! Fuzzing of every history reader (stable toolchain: proptest), bounded in time: the seeds in
//! `fuzz/<format>/` are read as they are, then cut, altered and spliced with junk (control
//! characters, numbers beyond 64 bits, deep brackets, long runs) for [`BUDGET`] per format.
//!
//! What must hold for any input: no panic; an error names a line of the input and quotes at most
//! a few hundred characters of it, with no raw control character; a history read for judging
//! (`parse_operations`) holds at least one client operation, and a dropped line is only ever
//! the last one, after events that were read.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use faultline_checker::formats::Format;
use faultline_checker::history::Process;
use faultline_checker::jsonl::QUOTED_CHARS_MAX;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// How long each format is fuzzed.
const BUDGET: Duration = Duration::from_secs(2);

fn seeds(format: Format) -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(format.name());
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).expect("seed is UTF-8"))
        .collect();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out.sort();
    out
}

fn check_one(format: Format, text: &str) {
    match format.parse_operations(text) {
        Ok(p) => {
            assert_eq!(p.events.len(), p.lines.len());
            assert!(
                p.events.iter().any(|e| e.process != Process::Nemesis),
                "{format}: judged a history without operations"
            );
            for w in p.warnings.iter().filter(|w| w.contains("truncated")) {
                let lines: Vec<&str> = text.lines().collect();
                let last = lines.iter().rposition(|l| !l.trim().is_empty()).map_or(0, |i| i + 1);
                assert!(w.starts_with(&format!("{last}:")), "{format}: dropped a line that is not the last: {w}");
            }
        }
        Err(e) => {
            let lines = text.split('\n').count().max(1);
            assert!(e.line >= 1 && e.line <= lines, "{format}: line {} of {lines}: {e}", e.line);
            for part in [&e.expected, &e.found] {
                assert!(
                    part.chars().count() <= QUOTED_CHARS_MAX + 1,
                    "{format}: {} chars quoted",
                    part.chars().count()
                );
                assert!(!part.chars().any(char::is_control), "{format}: control character in {part:?}");
            }
        }
    }
}

fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\u{1b}[2J".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("1e400".to_string()),
        Just("9".repeat(5000)),
        Just("[".repeat(300)),
        Just("a".repeat(5000)),
        Just("\n\n".to_string()),
        "(?s).{0,12}",
    ]
}

/// `seed` cut at `at`, with byte `at` replaced by `c`, or with `ins` spliced in at `at`.
fn mutate(seed: &str, how: u8, at: usize, c: char, ins: &str) -> String {
    let mut at = at % (seed.len() + 1);
    while !seed.is_char_boundary(at) {
        at -= 1;
    }
    match how % 3 {
        0 => seed[..at].to_string(),
        1 => {
            let mut s = seed.to_string();
            if let Some(old) = s[at..].chars().next() {
                s.replace_range(at..at + old.len_utf8(), c.encode_utf8(&mut [0; 4]));
            }
            s
        }
        _ => format!("{}{ins}{}", &seed[..at], &seed[at..]),
    }
}

fn fuzz(format: Format) {
    let seeds = seeds(format);
    for s in &seeds {
        check_one(format, s);
    }
    let strategy = (0..seeds.len(), any::<u8>(), any::<usize>(), any::<char>(), junk());
    let mut runner = TestRunner::new(Config { cases: 128, failure_persistence: None, ..Config::default() });
    let deadline = Instant::now() + BUDGET;
    while Instant::now() < deadline {
        runner
            .run(&strategy, |(i, how, at, c, ins)| {
                check_one(format, &mutate(&seeds[i], how, at, c, &ins));
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{format}: {e}"));
    }
}

#[test]
fn fuzz_jsonl_reader() {
    fuzz(Format::Jsonl);
}

#[test]
fn fuzz_porcupine_etcd_reader() {
    fuzz(Format::PorcupineEtcd);
}

#[test]
fn fuzz_porcupine_kv_reader() {
    fuzz(Format::PorcupineKv);
}

#[test]
fn fuzz_jepsen_edn_reader() {
    fuzz(Format::JepsenEdn);
}
