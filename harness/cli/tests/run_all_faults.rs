//! Every fault family applied for real in one short run (`--nemesis all`): six windows, one per
//! family, each applied with its mechanism, start and stop recorded in the history, clock
//! offsets recorded, and the run still valid.

mod run_support;

use faultline_checker::history::Process;
use run_support::*;

#[test]
fn every_fault_family_is_applied_and_recorded() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces), as in CI");
        return;
    }
    let store = Store::new();
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
            "3",
        ],
    );
    let r = results(store.path());
    assert_eq!(out.status.code(), Some(0), "{}\n{r:#}", show(&out));
    let faults = r["faults"].as_array().unwrap();
    let mut families: Vec<&str> = faults
        .iter()
        .map(|f| f["fault"].as_str().unwrap())
        .collect();
    families.sort();
    assert_eq!(
        families,
        ["clock", "kill", "latency", "loss", "partition", "pause"],
        "{faults:#?}"
    );
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
        assert_eq!(f["mechanism"], want, "{f:#}");
    }
    assert!(
        !r["clock"].as_array().unwrap().is_empty(),
        "no clock offsets recorded"
    );
    let h = history(store.path());
    for fam in ["partition", "kill", "pause", "clock", "loss", "latency"] {
        for edge in ["start", "stop"] {
            let f = format!("{edge}-{fam}");
            assert!(
                h.iter().any(|e| e.process == Process::Nemesis && e.f == f),
                "no {f} event"
            );
        }
    }
    assert_eq!(r["verdict"], "valid");
}
