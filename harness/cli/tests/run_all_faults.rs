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
