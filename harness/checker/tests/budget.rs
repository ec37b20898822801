//! Budgets and modes: an exhausted time or memory budget ends in `unknown` with its reason
//! (never a crash), stop-on-first-invalid cancels the other keys, judge-every-key decides them,
//! and the report round-trips through JSON.

use std::time::{Duration, Instant};

use faultline_checker::history::{Event, EventType, Process};
use faultline_checker::{check_linearizable, CheckOptions, LinearizabilityReport, ModelKind, Verdict};
use serde_json::{json, Value};

fn ev(events: &mut Vec<Event>, kind: EventType, p: u64, f: &str, key: &str, value: Value) {
    let i = events.len() as u64;
    events.push(Event {
        index: i,
        time: i * 100,
        kind,
        process: Process::Client(p),
        f: f.into(),
        key: Some(key.into()),
        value,
        error: None,
        node: None,
    });
}

/// `n` concurrent writes of distinct values and `n` concurrent reads, one of each value, then a
/// read of a value nobody wrote: invalid, but only after some 3^n configurations (which writes
/// and reads took effect, and the value held) have been ruled out. One more concurrent write
/// repeats value 0, so the zone procedure (unique values only) hands the key to the search,
/// whose budgets these tests are about.
fn hard_key(events: &mut Vec<Event>, key: &str, n: u64, first_process: u64) {
    let repeat = first_process + 2 * n + 1;
    ev(events, EventType::Invoke, repeat, "write", key, json!(0));
    for p in 0..n {
        ev(events, EventType::Invoke, first_process + p, "write", key, json!(p));
        ev(events, EventType::Invoke, first_process + n + p, "read", key, Value::Null);
    }
    ev(events, EventType::Ok, repeat, "write", key, json!(0));
    for p in 0..n {
        ev(events, EventType::Ok, first_process + p, "write", key, json!(p));
        ev(events, EventType::Ok, first_process + n + p, "read", key, json!(p));
    }
    let last = first_process + 2 * n;
    ev(events, EventType::Invoke, last, "read", key, Value::Null);
    ev(events, EventType::Ok, last, "read", key, json!(999));
}

/// write 1 then read 2: invalid at once.
fn bad_key(events: &mut Vec<Event>, key: &str, p: u64) {
    ev(events, EventType::Invoke, p, "write", key, json!(1));
    ev(events, EventType::Ok, p, "write", key, json!(1));
    ev(events, EventType::Invoke, p, "read", key, Value::Null);
    ev(events, EventType::Ok, p, "read", key, json!(2));
}

fn good_key(events: &mut Vec<Event>, key: &str, p: u64) {
    ev(events, EventType::Invoke, p, "write", key, json!(1));
    ev(events, EventType::Ok, p, "write", key, json!(1));
    ev(events, EventType::Invoke, p, "read", key, Value::Null);
    ev(events, EventType::Ok, p, "read", key, json!(1));
}

fn opts() -> CheckOptions {
    CheckOptions { time_limit: Some(Duration::from_secs(30)), threads: 2, ..CheckOptions::default() }
}

#[test]
fn time_budget_ends_in_unknown_with_reason() {
    let mut h = Vec::new();
    hard_key(&mut h, "h", 16, 0);
    let started = Instant::now();
    let r = check_linearizable(
        &h,
        ModelKind::Register,
        &CheckOptions { time_limit: Some(Duration::from_millis(300)), ..opts() },
    );
    assert!(started.elapsed() < Duration::from_secs(5), "stopped near its budget: {:?}", started.elapsed());
    assert_eq!(r.verdict, Verdict::Unknown);
    let reason = r.reason.unwrap();
    assert!(reason.contains("time limit reached"), "{reason}");
    assert!(r.keys[0].steps > 0 && r.keys[0].cache_entries > 0);
}

#[test]
fn memory_budget_ends_in_unknown_with_reason() {
    let mut h = Vec::new();
    hard_key(&mut h, "h", 16, 0);
    let limit = 8 << 20;
    let r = check_linearizable(&h, ModelKind::Register, &CheckOptions { memory_limit_bytes: Some(limit), ..opts() });
    assert_eq!(r.verdict, Verdict::Unknown);
    let k = &r.keys[0];
    assert!(k.reason.as_deref().unwrap().contains("memory limit of 8 MiB reached"), "{:?}", k.reason);
    // The cache grew until the budget stopped it: the configurations it holds fit in it.
    assert!(k.cache_entries > 10_000, "{}", k.cache_entries);
    assert!(k.cache_entries * 16 < limit, "{}", k.cache_entries);
}

#[test]
fn first_invalid_key_cancels_the_others() {
    let mut h = Vec::new();
    hard_key(&mut h, "hard", 16, 100);
    bad_key(&mut h, "bad", 0);
    let r = check_linearizable(&h, ModelKind::Register, &opts());
    assert_eq!(r.verdict, Verdict::Invalid);
    let hard = r.keys.iter().find(|k| k.key.as_deref() == Some("hard")).unwrap();
    assert_eq!(hard.verdict, Verdict::Unknown);
    assert!(hard.reason.as_deref().unwrap().contains("another key is not linearizable"), "{:?}", hard.reason);
    assert!(r.reason.unwrap().contains("\"bad\""));
}

#[test]
fn all_keys_mode_judges_every_key() {
    let mut h = Vec::new();
    hard_key(&mut h, "hard", 7, 100);
    bad_key(&mut h, "bad", 0);
    bad_key(&mut h, "bad2", 1);
    good_key(&mut h, "good", 2);
    let r = check_linearizable(&h, ModelKind::Register, &CheckOptions { stop_on_first_invalid: false, ..opts() });
    assert_eq!(r.verdict, Verdict::Invalid);
    let verdicts: Vec<(String, Verdict)> = r.keys.iter().map(|k| (k.key.clone().unwrap(), k.verdict)).collect();
    assert_eq!(
        verdicts,
        vec![
            ("bad".into(), Verdict::Invalid),
            ("bad2".into(), Verdict::Invalid),
            ("good".into(), Verdict::Valid),
            ("hard".into(), Verdict::Invalid)
        ]
    );
    assert!(r.keys.iter().filter(|k| k.verdict == Verdict::Invalid).all(|k| k.explanation.is_some()));
    let text = r.to_text();
    assert!(text.contains("key \"hard\": not linearizable"), "{text}");
}

#[test]
fn report_round_trips_through_json() {
    let mut h = Vec::new();
    bad_key(&mut h, "bad", 0);
    good_key(&mut h, "good", 1);
    let r = check_linearizable(&h, ModelKind::CasRegister, &CheckOptions { stop_on_first_invalid: false, ..opts() });
    let s = serde_json::to_string(&r).unwrap();
    let mut back: LinearizabilityReport = serde_json::from_str(&s).unwrap();
    // Floats may come back one ulp off (serde_json without float_roundtrip): compare the rest.
    let mut r2 = r.clone();
    for rep in [&mut back, &mut r2] {
        rep.elapsed_ms = 0.0;
        rep.keys.iter_mut().for_each(|k| k.elapsed_ms = 0.0);
    }
    assert_eq!(back, r2);
    let v: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["verdict"], "invalid");
    assert_eq!(v["model"], "cas-register");
    assert_eq!(v["explanation"]["longest"][0]["blocked_op"], 1);
    assert_eq!(v["explanation"]["ops"][1]["call_index"], 2);
    assert_eq!(v["explanation"]["ops"][1]["process"], 0);
}

#[test]
fn malformed_history_is_unknown_not_a_panic() {
    let mut h = Vec::new();
    ev(&mut h, EventType::Ok, 0, "write", "k", json!(1));
    let r = check_linearizable(&h, ModelKind::Register, &opts());
    assert_eq!(r.verdict, Verdict::Unknown);
    assert!(r.reason.unwrap().starts_with("malformed history: event 0: expected an invoke by process 0"));
}

#[test]
fn empty_and_nemesis_only_histories_are_valid() {
    let r = check_linearizable(&[], ModelKind::CasRegister, &opts());
    assert_eq!(r.verdict, Verdict::Valid);
    let nemesis = Event {
        index: 0,
        time: 0,
        kind: EventType::Info,
        process: Process::Nemesis,
        f: "start-partition".into(),
        key: None,
        value: json!({"kind": "halves"}),
        error: None,
        node: None,
    };
    let r = check_linearizable(&[nemesis], ModelKind::CasRegister, &opts());
    assert_eq!((r.verdict, r.nemesis_events), (Verdict::Valid, 1));
}
