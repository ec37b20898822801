//! Every fault family applied for real in one short run (`--nemesis all`, the default coverage
//! schedule): its first wave and the draws after it, each applied with its mechanism, start and
//! stop recorded in the history, clock offsets recorded, and the run still valid.

mod run_support;

use faultline_checker::history::Process;
use faultline_core::nemesis::{coverage, Family};
use run_support::*;

/// The faults the reference Raft declares (its default schedule holds them).
const RAFT: &[(Family, &str)] = faultline_core::target::roles::RAFT_FAULTS;

/// The first seed whose default schedule (5 nodes, 13 s, interval 1) holds every family: the
/// first wave has no latency, a later draw must bring it.
fn seed_with_every_family() -> u64 {
    (1..1000)
        .find(|&seed| {
            let s = coverage::generate_declaring(seed, 5, true, &|f| f != Family::Rebalance, RAFT, 13.0, 1.0);
            Family::GENERAL.iter().all(|f| s.faults.iter().any(|w| w.spec.family == *f))
        })
        .expect("some seed draws every family")
}

#[test]
fn every_fault_family_is_applied_and_recorded() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let store = Store::new();
    let seed = seed_with_every_family().to_string();
    let out = run(
        store.path(),
        &[
            "--nemesis",
            "all",
            "--nodes",
            "5",
            "--concurrency",
            "5",
            "--rate",
            "50",
            "--time-limit",
            "13",
            "--nemesis-interval",
            "1",
            "--recovery",
            "1",
            "--seed",
            &seed,
        ],
    );
    let r = results(store.path());
    assert_eq!(out.status.code(), Some(0), "{}\n{r:#}", show(&out));
    let faults = r["faults"].as_array().unwrap();
    let mut families: Vec<&str> = faults.iter().map(|f| f["fault"].as_str().unwrap()).collect();
    families.sort();
    families.dedup();
    // 1 s windows 0.5 s apart from 0.5 s (2 s for a leader cut off), ending by 12.5 s.
    let planned =
        coverage::generate_declaring(seed.parse().unwrap(), 5, true, &|f| f != Family::Rebalance, RAFT, 13.0, 1.0);
    assert!((6..=8).contains(&planned.faults.len()), "{planned:?}");
    assert_eq!(faults.len(), planned.faults.len(), "{faults:#?}");
    assert_eq!(families, ["clock", "kill", "latency", "loss", "partition", "pause"], "{faults:#?}");
    for f in faults {
        assert_eq!(f["applied"], true, "{f:#}");
        assert!(f["stop_error"].is_null(), "{f:#}");
        let want = match f["fault"].as_str().unwrap() {
            "partition" | "loss" => "netns-iptables",
            "latency" => "netns-nfqueue",
            "kill" => "sigkill",
            "pause" => "sigstop",
            _ => "admin-api",
        };
        // skew-isolate-leader sets a clock and cuts links: `admin-api+netns-iptables`.
        let got = f["mechanism"].as_str().unwrap();
        assert!(got == want || (want == "admin-api" && got.starts_with(want)), "{f:#}");
    }
    assert!(!r["clock"].as_array().unwrap().is_empty(), "no clock offsets recorded");
    let h = history(store.path());
    for fam in ["partition", "kill", "pause", "clock", "loss", "latency"] {
        for edge in ["start", "stop"] {
            let f = format!("{edge}-{fam}");
            assert!(h.iter().any(|e| e.process == Process::Nemesis && e.f == f), "no {f} event");
        }
    }
    assert_eq!(r["verdict"], "valid");
}

/// `loss:flapping` and `latency:flapping` (the faults the reference quorum declares) switch on
/// and off every `FLAP_MS` for their whole window, each switch applied and recorded as a `flap`
/// event inside the window, off and on in turn; the correct quorum (ABD) stays linearizable.
#[test]
fn flapping_loss_and_latency_switch_every_half_second_and_abd_stays_valid() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let store = Store::new();
    let args = ["--target", "quorum", "--nemesis", "loss:flapping,latency:flapping", "--nodes", "3"];
    // Quiet 2 s, a window of 2 s, quiet, the other window, quiet: both families, once each.
    let shape = ["--time-limit", "10", "--nemesis-interval", "2", "--recovery", "1", "--seed", "1"];
    let out = run(store.path(), &[&args[..], &shape[..]].concat());
    let r = results(store.path());
    assert_eq!(out.status.code(), Some(0), "{}\n{r:#}", show(&out));
    let faults = r["faults"].as_array().unwrap();
    let kinds: Vec<&str> = faults.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["flapping", "flapping"], "{faults:#?}");
    let h = history(store.path());
    let nemesis: Vec<_> = h.iter().filter(|e| e.process == Process::Nemesis).collect();
    let flap_ms = faultline_core::nemesis::net::FLAP_MS as f64;
    for fam in ["loss", "latency"] {
        let at = |f: String| nemesis.iter().find(|e| e.f == f).unwrap_or_else(|| panic!("no {f}")).time;
        let (start, stop) = (at(format!("start-{fam}")), at(format!("stop-{fam}")));
        let switches: Vec<_> = nemesis.iter().filter(|e| e.f == "flap" && e.time > start && e.time < stop).collect();
        // A 2 s window switches every 0.5 s: 3 switches, give or take one at its edges.
        let window_ms = (stop - start) as f64 / 1e6;
        assert!(switches.len() as f64 >= window_ms / flap_ms - 2.0, "{fam}: {switches:#?}");
        for (i, e) in switches.iter().enumerate() {
            assert_eq!(e.value["on"], i % 2 == 1, "{fam}: off first, then on: {switches:#?}");
            assert!(e.value["error"].is_null(), "{e:?}");
        }
    }
    assert!(
        !nemesis.iter().any(|e| e.f == "flap" && !inside_a_window(&nemesis, e.time)),
        "a switch outside its window"
    );
    assert_eq!(r["verdict"], "valid");
}

/// Whether `t` falls between a `start-*` event and the next `stop-*` one.
fn inside_a_window(nemesis: &[&faultline_checker::history::Event], t: u64) -> bool {
    let mut open = None;
    for e in nemesis {
        if e.f.starts_with("start-") {
            open = Some(e.time);
        } else if e.f.starts_with("stop-") {
            if open.is_some_and(|s| s < t && t < e.time) {
                return true;
            }
            open = None;
        }
    }
    false
}
