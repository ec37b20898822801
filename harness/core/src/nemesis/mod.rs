//! Nemeses: faults, their heals, and the seeded schedule that orders them.
//!
//! A [`Schedule`] is computed up front from (seed, families, nodes, time limit, interval): which
//! fault starts when, of which kind, and every random choice it needs (a permutation of the
//! nodes, an offset, a probability). Only choices that depend on the live cluster (who leads)
//! are made when the fault starts. So the same seed and flags give the same fault schedule, and
//! test.json records it.
//!
//! A [`Nemesis`] applies one family of faults. `start` returns what happened ([`Applied`]):
//! a fault the runtime could not apply is reported `applied: false` with the reason, never
//! skipped silently. `heal_all` restores everything of its family and is idempotent.

pub mod churn;
pub mod clock;
pub mod coverage;
pub mod net;
pub mod process;
pub mod rebalance;
pub mod replay;

use std::sync::{Arc, Mutex};

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::client::BoxFuture;
use crate::generator::rng_for;
use crate::runtime::{Launch, Runtime};
use crate::target::Target;

/// Fault families, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Partition,
    Kill,
    Pause,
    Clock,
    Loss,
    Latency,
    /// Moves a range or directory entry between shard groups (targets with shards only).
    Rebalance,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Partition,
        Family::Kill,
        Family::Pause,
        Family::Clock,
        Family::Loss,
        Family::Latency,
        Family::Rebalance,
    ];

    /// What `--nemesis all` means: every fault any target can take. `rebalance` is asked for by
    /// name: only sharded targets can take it, and `all` on them would otherwise mean something
    /// else than on every other target.
    pub const GENERAL: [Family; 6] =
        [Family::Partition, Family::Kill, Family::Pause, Family::Clock, Family::Loss, Family::Latency];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Partition => "partition",
            Family::Kill => "kill",
            Family::Pause => "pause",
            Family::Clock => "clock",
            Family::Loss => "loss",
            Family::Latency => "latency",
            Family::Rebalance => "rebalance",
        }
    }

    /// The kinds a schedule draws from for this family.
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Family::Partition => &["halves", "isolate-one", "isolate-leader", "majorities-ring", "bridge", "one-way"],
            Family::Kill | Family::Pause => &["one", "minority", "leader", "all"],
            Family::Clock => &["bump", "strobe"],
            Family::Loss => &["all-links"],
            Family::Latency => &["all-links"],
            Family::Rebalance => &[rebalance::KIND_MOVE],
        }
    }

    /// Kinds accepted only when named (`clock:skew-isolate-leader`), never drawn for the bare
    /// family: they act beyond the family's name (a clock fault that also partitions), which
    /// `--nemesis clock` should not do by surprise, or they serve the targets that declare them
    /// (`loss:flapping`, `latency:flapping`: adding them to every default schedule would change
    /// every target's measured schedule).
    pub fn explicit_kinds(self) -> &'static [&'static str] {
        match self {
            Family::Clock => &[clock::SKEW_ISOLATE_LEADER],
            Family::Partition => &[churn::LEADER_CHURN],
            Family::Loss | Family::Latency => &[net::FLAPPING],
            _ => &[],
        }
    }
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Family::ALL
            .iter()
            .copied()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!("unknown nemesis {s:?}: expected partition, kill, pause, clock, loss, latency, rebalance, all, none, network, process, leader, clock-partition or leader-churn")
            })
    }
}

/// A family on the command line, optionally narrowed to some of its kinds
/// (`partition:isolate-leader+halves`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub family: Family,
    /// Empty = every kind of the family.
    pub kinds: Vec<String>,
}

impl Choice {
    fn kinds(&self) -> Vec<&str> {
        if self.kinds.is_empty() {
            self.family.kinds().to_vec()
        } else {
            self.kinds.iter().map(String::as_str).collect()
        }
    }
}

/// Named schedules: shorthands for common `--nemesis` lists.
pub const NAMED: &[(&str, &str)] = &[
    ("network", "partition,loss,latency"),
    ("process", "kill,pause"),
    ("leader", "partition:isolate-leader,kill:leader,pause:leader"),
    // Overlapping faults: the leader's clock set back while it is cut off (see clock.rs).
    ("clock-partition", "clock:skew-isolate-leader"),
    // Each new leader cut off as soon as seen or at its first commit (see churn.rs).
    ("leader-churn", "partition:leader-churn"),
];

/// Parses `--nemesis`: `all`, `none`, a named schedule ([`NAMED`]), or a comma list of
/// `family[:kind+kind...]`.
pub fn parse_choices(s: &str) -> Result<Vec<Choice>, String> {
    if let Some((_, expansion)) = NAMED.iter().find(|(name, _)| *name == s.trim()) {
        return parse_choices(expansion);
    }
    match s.trim() {
        "none" | "" => Ok(vec![]),
        "all" => Ok(Family::GENERAL.iter().map(|f| Choice { family: *f, kinds: vec![] }).collect()),
        list => {
            let mut out: Vec<Choice> = Vec::new();
            for part in list.split(',') {
                let (fam, kinds) = match part.trim().split_once(':') {
                    Some((f, k)) => (f, k.split('+').map(|k| k.trim().to_string()).collect::<Vec<_>>()),
                    None => (part.trim(), vec![]),
                };
                let family: Family = fam.parse()?;
                for k in &kinds {
                    let known = family.kinds().iter().chain(family.explicit_kinds());
                    if !family.kinds().contains(&k.as_str()) && !family.explicit_kinds().contains(&k.as_str()) {
                        return Err(format!(
                            "unknown {} kind {k:?}: expected one of {}",
                            family.as_str(),
                            known.copied().collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
                if !out.iter().any(|c| c.family == family) {
                    out.push(Choice { family, kinds });
                }
            }
            Ok(out)
        }
    }
}

/// Parses `--nemesis` into families only (kinds unrestricted).
pub fn parse_families(s: &str) -> Result<Vec<Family>, String> {
    Ok(parse_choices(s)?.into_iter().map(|c| c.family).collect())
}

/// One fault with every seeded choice made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    pub family: Family,
    pub kind: String,
    /// A seeded permutation of node indexes; kinds take their nodes from its front.
    pub order: Vec<usize>,
    /// Clock offset in ms (clock; negative for skew-isolate-leader), drop probability (loss),
    /// delay in ms (latency, and leader-churn's links), what to move (rebalance); else 0.
    pub param: f64,
}

impl FaultSpec {
    /// Whether this fault is leader churn ([`churn::is`]).
    pub fn is_leader_churn(&self) -> bool {
        churn::is(self.family, &self.kind)
    }
}

/// A fault and its window, in seconds from the start of the main phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scheduled {
    pub start_s: f64,
    pub end_s: f64,
    pub spec: FaultSpec,
}

/// A named, seeded fault schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub faults: Vec<Scheduled>,
}

impl Schedule {
    /// The schedule a run follows: `explicit` as given (a replay, checked by the caller with
    /// [`replay::check`]); for `all` the default coverage schedule ([`coverage`]), which leaves
    /// out what `target` refuses or cannot take; else [`Schedule::generate_choices`].
    pub fn for_run(
        explicit: Option<&Schedule>,
        seed: u64,
        choices: &[Choice],
        nodes: usize,
        target: &dyn Target,
        time_limit_s: f64,
        interval_s: f64,
    ) -> Schedule {
        if let Some(s) = explicit {
            return s.clone();
        }
        if coverage::is_default(choices) {
            let supported = |f: Family| target.fault_support(f).is_ok();
            let lone = target.lone_nodes(nodes);
            let declared = target.declared_faults();
            let shape = coverage::Shape {
                nodes,
                has_leader: target.has_leader(),
                supported: &supported,
                lone: &lone,
                declared: &declared,
            };
            return coverage::generate_for(seed, &shape, time_limit_s, interval_s);
        }
        Self::generate_choices(seed, choices, nodes, time_limit_s, interval_s)
    }

    /// The families this schedule uses, as `--nemesis` choices (unnarrowed).
    pub fn families(&self) -> Vec<Choice> {
        let mut fams: Vec<Family> = self.faults.iter().map(|f| f.spec.family).collect();
        fams.sort();
        fams.dedup();
        fams.into_iter().map(|family| Choice { family, kinds: vec![] }).collect()
    }

    /// Quiet `interval`, fault `interval`, quiet `interval`, ... up to `time_limit`, every fault
    /// ending at least `interval/2` before the limit. Families are drawn at random (seeded) but
    /// cycle so that each listed family appears before any repeats.
    pub fn generate(seed: u64, families: &[Family], nodes: usize, time_limit_s: f64, interval_s: f64) -> Schedule {
        let choices: Vec<Choice> = families.iter().map(|f| Choice { family: *f, kinds: vec![] }).collect();
        Self::generate_choices(seed, &choices, nodes, time_limit_s, interval_s)
    }

    /// [`Schedule::generate`] with families narrowed to some kinds.
    pub fn generate_choices(
        seed: u64,
        choices: &[Choice],
        nodes: usize,
        time_limit_s: f64,
        interval_s: f64,
    ) -> Schedule {
        assert!(interval_s > 0.0, "interval checked by the caller");
        let families: Vec<Family> = choices.iter().map(|c| c.family).collect();
        let name = if choices.is_empty() {
            "none".to_string()
        } else {
            choices
                .iter()
                .map(|c| {
                    if c.kinds.is_empty() {
                        c.family.as_str().to_string()
                    } else {
                        format!("{}:{}", c.family.as_str(), c.kinds.join("+"))
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut rng = rng_for(seed, "nemesis", 0);
        let mut faults = Vec::new();
        let mut bag: Vec<Family> = Vec::new();
        let mut t = interval_s;
        while !families.is_empty() && t + interval_s <= time_limit_s - interval_s / 2.0 + 1e-9 {
            if bag.is_empty() {
                bag = families.to_vec();
                bag.shuffle(&mut rng);
            }
            let family = bag.pop().expect("bag refilled");
            let kinds = choices.iter().find(|c| c.family == family).expect("family from choices").kinds();
            let kind = kinds[rng.random_range(0..kinds.len())].to_string();
            let mut order: Vec<usize> = (0..nodes).collect();
            order.shuffle(&mut rng);
            let param = draw_param(&mut rng, family, &kind);
            faults.push(Scheduled {
                start_s: t,
                end_s: t + interval_s,
                spec: FaultSpec { family, kind, order, param },
            });
            t += 2.0 * interval_s;
        }
        Schedule { name, faults }
    }
}

/// The seeded parameter of a fault of `family` and `kind` (see [`FaultSpec::param`]).
pub(crate) fn draw_param(rng: &mut impl Rng, family: Family, kind: &str) -> f64 {
    match family {
        // Set back by whole seconds, enough to outlast a usual fault window: the lease
        // of the cut-off leader then holds that much longer (clock.rs).
        Family::Clock if kind == clock::SKEW_ISOLATE_LEADER => {
            -(rng.random_range(clock::SKEW_ISOLATE_OFFSET_S_MIN..=clock::SKEW_ISOLATE_OFFSET_S_MAX) as f64 * 1000.0)
        }
        // The delay on every link between nodes while leaders are chased (churn.rs).
        Family::Partition if kind == churn::LEADER_CHURN => {
            rng.random_range(churn::LINK_DELAY_MS_MIN..=churn::LINK_DELAY_MS_MAX) as f64
        }
        // Log-uniform from 1 ms to 10 min, either sign: bumps of every magnitude.
        Family::Clock => {
            let mag = 10f64.powf(rng.random_range(0.0..(600_000f64).log10())).round();
            if rng.random_bool(0.5) {
                mag
            } else {
                -mag
            }
        }
        Family::Loss => (rng.random_range(0.1..0.5f64) * 100.0).round() / 100.0,
        Family::Latency => rng.random_range(20..200u32) as f64,
        // The seeded choice of what moves (the target maps it to a key or range).
        Family::Rebalance => rng.random_range(0..1_000_000u32) as f64,
        _ => 0.0,
    }
}

/// What starting a fault did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub applied: bool,
    /// Nodes the fault acted on.
    pub nodes: Vec<String>,
    /// How it was applied: `netns-iptables`, `sigkill`, `admin-api`, ...
    pub mechanism: String,
    pub error: Option<String>,
    /// Kind-specific detail (links cut, offsets set, ...).
    pub detail: serde_json::Value,
}

pub use faultline_results::ClockSample;

/// Longest wait for one node's status when looking for the leader.
pub const LEADER_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Longest wait for a leader to appear when a leader-targeted fault starts on a target that has
/// one (e.g. right after a kill of every node, the restarted cluster is still electing).
pub const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What a nemesis can use.
pub struct NemesisCtx {
    pub runtime: Arc<dyn Runtime>,
    pub target: Arc<dyn Target>,
    /// How to (re)start each node, by node id.
    pub launches: Vec<(String, Launch)>,
    pub clock_samples: Arc<Mutex<Vec<ClockSample>>>,
    /// Nanoseconds since the test began (the history clock).
    pub now_ns: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Records a nemesis event in the history (what a fault that acts during its window did).
    pub event: EventHook,
}

/// Writes one nemesis `info` event (its `f` and `value`) to the history.
pub type EventHook = Arc<dyn Fn(&str, serde_json::Value) + Send + Sync>;

impl NemesisCtx {
    pub fn node_ids(&self) -> Vec<String> {
        self.runtime.nodes().iter().map(|n| n.id.clone()).collect()
    }

    /// (id, address) of every node, as the status probes take them ([`crate::target::ask_statuses`]).
    pub fn node_addrs(&self) -> Vec<(String, String)> {
        self.runtime.nodes().iter().map(|n| (n.id.clone(), n.addr())).collect()
    }

    /// The node ids in `spec.order`.
    pub fn ordered(&self, spec: &FaultSpec) -> Vec<String> {
        let ids = self.node_ids();
        spec.order.iter().filter_map(|&i| ids.get(i).cloned()).collect()
    }

    /// The leader, as the live nodes report it (see [`NemesisCtx::leader_now`]). On a target
    /// with a leader, asks again every 100 ms until one answers, for at most [`LEADER_WAIT`].
    pub async fn leader(&self) -> Option<String> {
        let wait = if self.target.has_leader() { LEADER_WAIT } else { std::time::Duration::ZERO };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(l) = self.leader_now().await {
                return Some(l);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The leader, as the live nodes report it now: the claim of the highest term wins. Nodes are
    /// asked concurrently, each bounded by [`LEADER_QUERY_TIMEOUT`], so a paused or cut-off node
    /// cannot stall the nemesis.
    pub async fn leader_now(&self) -> Option<String> {
        let mut set = crate::target::ask_statuses(&self.target, self.node_addrs(), LEADER_QUERY_TIMEOUT);
        let mut best: Option<(u64, String)> = None;
        while let Some(r) = set.join_next().await {
            let Ok(Some((id, s))) = r else { continue };
            let term = s.term.unwrap_or(0);
            if s.state == "leader" && best.as_ref().is_none_or(|(t, b)| term > *t || (term == *t && id < *b)) {
                best = Some((term, id));
            }
        }
        best.map(|(_, id)| id)
    }

    pub fn launch(&self, id: &str) -> Option<&Launch> {
        self.launches.iter().find(|(n, _)| n == id).map(|(_, l)| l)
    }
}

/// One family of faults.
pub trait Nemesis: Send + Sync {
    fn family(&self) -> Family;
    /// Starts the fault; never panics, reports failure in [`Applied`].
    fn start<'a>(&'a self, ctx: &'a NemesisCtx, spec: &'a FaultSpec) -> BoxFuture<'a, Applied>;
    /// Ends the fault that `start` reported.
    fn stop<'a>(
        &'a self,
        ctx: &'a NemesisCtx,
        spec: &'a FaultSpec,
        applied: &'a Applied,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Undoes every fault of this family (idempotent).
    fn heal_all<'a>(&'a self, ctx: &'a NemesisCtx) -> BoxFuture<'a, Result<(), String>>;
}

/// The nemesis of each family.
pub fn nemesis_for(family: Family) -> Box<dyn Nemesis> {
    match family {
        Family::Partition | Family::Loss | Family::Latency => Box::new(net::NetNemesis::new(family)),
        Family::Kill => Box::new(process::KillNemesis),
        Family::Pause => Box::new(process::PauseNemesis),
        Family::Clock => Box::new(clock::ClockNemesis::default()),
        Family::Rebalance => Box::new(rebalance::RebalanceNemesis),
    }
}

/// Picks nodes for kill/pause kinds: one, minority, leader, all.
pub async fn pick_nodes(ctx: &NemesisCtx, spec: &FaultSpec) -> (Vec<String>, Option<String>) {
    let ordered = ctx.ordered(spec);
    let n = ordered.len();
    match spec.kind.as_str() {
        "one" => (ordered.into_iter().take(1).collect(), None),
        "minority" => (ordered.into_iter().take((n.saturating_sub(1) / 2).max(1)).collect(), None),
        "all" => (ordered, None),
        "leader" | "isolate-leader" => match ctx.leader().await {
            Some(l) => (vec![l], None),
            // No leader known: fall back to the seeded choice and say so.
            None => (ordered.into_iter().take(1).collect(), Some("no leader known; took a seeded node".into())),
        },
        other => (vec![], Some(format!("unknown kind {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule_other_seed_other_schedule() {
        let fams = Family::GENERAL.to_vec();
        let a = Schedule::generate(42, &fams, 5, 60.0, 5.0);
        let b = Schedule::generate(42, &fams, 5, 60.0, 5.0);
        let c = Schedule::generate(43, &fams, 5, 60.0, 5.0);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.name, "partition,kill,pause,clock,loss,latency");
    }

    #[test]
    fn windows_alternate_and_end_before_the_limit() {
        let s = Schedule::generate(1, &[Family::Partition, Family::Kill], 5, 60.0, 5.0);
        // 5..10, 15..20, 25..30, 35..40, 45..50 (55..60 would end at the limit).
        assert_eq!(s.faults.len(), 5);
        for (i, f) in s.faults.iter().enumerate() {
            assert_eq!(f.start_s, 5.0 + 10.0 * i as f64);
            assert_eq!(f.end_s - f.start_s, 5.0);
            assert!(f.end_s <= 57.5);
            let mut order = f.spec.order.clone();
            order.sort();
            assert_eq!(order, vec![0, 1, 2, 3, 4], "order is a permutation");
        }
        // Both families appear in the first two windows (bag draw).
        let first: Vec<Family> = s.faults[..2].iter().map(|f| f.spec.family).collect();
        assert!(first.contains(&Family::Partition) && first.contains(&Family::Kill));
    }

    #[test]
    fn parameters_stay_in_their_ranges() {
        let s = Schedule::generate(9, &[Family::Clock, Family::Loss, Family::Latency], 3, 600.0, 1.0);
        assert!(s.faults.len() > 100);
        for f in &s.faults {
            match f.spec.family {
                Family::Clock => {
                    assert!(f.spec.param.abs() >= 1.0 && f.spec.param.abs() <= 600_000.0)
                }
                Family::Loss => assert!(f.spec.param >= 0.1 && f.spec.param <= 0.5),
                Family::Latency => assert!(f.spec.param >= 20.0 && f.spec.param < 200.0),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn no_faults_without_families_or_time() {
        assert!(Schedule::generate(1, &[], 5, 60.0, 5.0).faults.is_empty());
        assert!(Schedule::generate(1, &[Family::Kill], 5, 10.0, 5.0).faults.is_empty());
    }

    #[test]
    fn skew_isolate_leader_is_explicit_only_and_sets_the_clock_back_seconds() {
        // Never drawn for the bare family...
        let bare = Schedule::generate(5, &[Family::Clock], 3, 600.0, 1.0);
        assert!(bare.faults.iter().all(|f| f.spec.kind != clock::SKEW_ISOLATE_LEADER));
        // ...but accepted by name, and under the named schedule.
        let named = parse_choices("clock-partition").unwrap();
        assert_eq!(named, parse_choices("clock:skew-isolate-leader").unwrap());
        let s = Schedule::generate_choices(5, &named, 3, 600.0, 1.0);
        assert_eq!(s.name, "clock:skew-isolate-leader");
        assert!(s.faults.len() > 100);
        let (min, max) =
            (clock::SKEW_ISOLATE_OFFSET_S_MIN as f64 * 1000.0, clock::SKEW_ISOLATE_OFFSET_S_MAX as f64 * 1000.0);
        for f in &s.faults {
            assert_eq!(f.spec.kind, clock::SKEW_ISOLATE_LEADER);
            assert!(-f.spec.param >= min && -f.spec.param <= max, "{}", f.spec.param);
            assert_eq!(f.spec.param % 1000.0, 0.0, "whole seconds");
        }
        let err = parse_choices("partition:skew-isolate-leader").unwrap_err();
        assert!(err.contains("unknown partition kind"), "{err}");
        let err = parse_choices("clock:skew").unwrap_err();
        assert!(err.contains("strobe") && err.contains("skew-isolate-leader"), "{err}");
    }

    #[test]
    fn rebalance_is_named_not_part_of_all_and_draws_a_pick() {
        assert!(!parse_families("all").unwrap().contains(&Family::Rebalance));
        assert_eq!(parse_families("rebalance").unwrap(), vec![Family::Rebalance]);
        assert_eq!(parse_choices("rebalance:move").unwrap()[0].kinds, vec!["move"]);
        let s = Schedule::generate(3, &[Family::Rebalance, Family::Kill], 7, 60.0, 2.0);
        let picks: Vec<f64> =
            s.faults.iter().filter(|f| f.spec.family == Family::Rebalance).map(|f| f.spec.param).collect();
        assert!(picks.len() > 3 && picks.iter().all(|p| *p >= 0.0 && *p < 1e6 && p.fract() == 0.0), "{picks:?}");
        // Families without a parameter keep 0 beside it.
        let plain = Schedule::generate(3, &[Family::Kill], 7, 60.0, 2.0);
        assert!(plain.faults.iter().all(|f| f.spec.param == 0.0));
    }

    #[test]
    fn nemesis_flag_parsing() {
        assert_eq!(parse_families("none").unwrap(), vec![]);
        assert_eq!(parse_families("all").unwrap().len(), 6);
        assert_eq!(parse_families("kill,partition,kill").unwrap(), vec![Family::Kill, Family::Partition]);
        let err = parse_families("partition,flood").unwrap_err();
        assert!(err.contains("flood") && err.contains("expected"), "{err}");
        let c = parse_choices("partition:isolate-leader+halves,kill").unwrap();
        assert_eq!(c[0].kinds, vec!["isolate-leader", "halves"]);
        assert!(c[1].kinds.is_empty());
        let err = parse_choices("kill:everything").unwrap_err();
        assert!(err.contains("everything") && err.contains("minority"), "{err}");
        let leader = parse_choices("leader").unwrap();
        assert_eq!(leader.len(), 3);
        assert!(leader.iter().all(|c| c.kinds.len() == 1 && c.kinds[0].contains("leader")));
        assert_eq!(parse_families("network").unwrap(), vec![Family::Partition, Family::Loss, Family::Latency]);
        let s = Schedule::generate_choices(3, &c[..1], 5, 60.0, 5.0);
        assert_eq!(s.name, "partition:isolate-leader+halves");
        assert!(s.faults.iter().all(|f| f.spec.kind == "isolate-leader" || f.spec.kind == "halves"));
    }
}
