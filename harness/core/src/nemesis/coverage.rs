//! The default schedule (`--nemesis all`): cover the sharp faults first, then draw.
//!
//! Independent random draws of a family and a kind per window (what [`Schedule::generate`]
//! does for an explicit list) rarely bring, in a 30–60 s run, the one fault a bug needs: the
//! leader cut off from the majority, every node killed at once, a clock jump under a partition.
//! Measured on raft with `--bug stale-read`, `no-fsync` and `lease`: 0 of 3 seeds each at 30 s.
//! So the default schedule:
//!
//! 1. runs shorter and more frequent windows: a fault lasts `interval` (one that cuts the
//!    leader off, and loss or delay on a leaderless target, lasts [`LEADER_ISOLATION_WINDOWS`]
//!    intervals), the quiet between two faults is `interval / 2` (the first fault starts after
//!    `interval / 2`, or a whole interval when a lone node's kill opens the schedule);
//! 2. opens with a **first wave**: every fault of [`LEADER_WAVE`] (targets that report a
//!    leader) or [`LEADERLESS_WAVE`] (others), in a seeded order, each once, before any repeat;
//! 3. then runs each fault the target declares ([`Shape::declared`]: leader churn on the
//!    reference Raft, [`CHURN_WINDOWS`] intervals long, left out when the run is too short);
//! 4. then draws (family, kind) pairs from a seeded bag of every kind the target can take (a
//!    declared one included), refilled when empty, so the rest of the fault space is covered
//!    before repeats too.
//!
//! A target that takes `rebalance` (a router under range or directory sharding) gets a
//! `rebalance:move` in every gap between two faults instead of quiet ([`moves_fill_gaps`]; `all`
//! on the command line never names it: other targets refuse it). A node that alone holds a role
//! ([`crate::target::Target::lone_nodes`]: a directory, a coordinator) is killed once, first:
//! it is the single point of failure a user does not know to aim at.
//!
//! Faults of families the target refuses ([`crate::target::Target::fault_support`]) and kinds
//! that cannot act on the cluster (a leader kind without a leader, a majorities ring of fewer
//! than 4 nodes) are left out rather than recorded as not applied. Every choice comes from the
//! seed, and the result is an ordinary [`Schedule`] recorded in test.json and replayable.

use rand::seq::SliceRandom;

use super::{churn, clock, draw_param, rebalance, Choice, Family, FaultSpec, Schedule, Scheduled};
use crate::generator::rng_for;

/// The first wave on targets with a leader: each fault a planted bug of the reference roles
/// needs (isolate-leader: `stale-read`; skew-isolate-leader: `lease`; kill of every node:
/// `no-fsync`; loss and leader pause/kill: failovers under contention).
pub const LEADER_WAVE: &[(Family, &str)] = &[
    (Family::Partition, "isolate-leader"),
    (Family::Clock, clock::SKEW_ISOLATE_LEADER),
    (Family::Kill, "all"),
    (Family::Loss, "all-links"),
    (Family::Pause, "leader"),
    (Family::Kill, "leader"),
];

/// The first wave on leaderless targets: a majority split off, every node killed, loss and
/// delay (replicas applying concurrent writes in different orders), a clock jump
/// (last-writer-wins), a ring of overlapping majorities, a minority paused.
pub const LEADERLESS_WAVE: &[(Family, &str)] = &[
    (Family::Partition, "halves"),
    (Family::Kill, "all"),
    (Family::Loss, "all-links"),
    (Family::Latency, "all-links"),
    (Family::Clock, "bump"),
    (Family::Partition, "majorities-ring"),
    (Family::Pause, "minority"),
];

/// How many intervals a window that cuts the leader off lasts (`partition:isolate-leader`,
/// `clock:skew-isolate-leader`). A stale read from a cut-off leader needs, inside one window,
/// the majority to elect a new leader (an election timeout), a write there, and then a read at
/// the old leader, whose clients are meanwhile stuck on writes it cannot commit until their
/// operation timeout (2 s by default). Measured on raft `--bug lease`, 60 s runs, 3 s windows:
/// caught 6 of 10; in the 4 missed runs the old leader served its last read 1.3–2 s before its
/// window ended (none in one run) and no read there followed a write of the same key.
pub const LEADER_ISOLATION_WINDOWS: f64 = 2.0;

/// How many intervals a leader-churn window lasts when a target's default schedule holds one
/// ([`Shape::declared`]). One figure-8 sequence takes three elections and about 3 s (four a
/// 12 s window), and only some strand a client's write on the first leader's side, so the
/// window must hold several: measured on raft `commit-old-term` (default command, 60 s, the
/// detection campaign's seeds), 4 intervals caught 3 of 10 seeds, and 6 intervals caught 1 of
/// 4 of those missed.
pub const CHURN_WINDOWS: f64 = 6.0;

fn isolates_leader(family: Family, kind: &str) -> bool {
    matches!((family, kind), (Family::Partition, "isolate-leader") | (Family::Clock, clock::SKEW_ISOLATE_LEADER))
}

/// Whether a window lasts [`LEADER_ISOLATION_WINDOWS`] intervals: a leader cut off, and on a
/// leaderless target loss and delay. A leaderless bug shows when concurrent writes reach
/// replicas in different orders, which takes contention inside a degraded window: measured on
/// quorum `naive` (60 s, 10 seeds of `campaigns/detection.toml`, one 3 s loss window a run),
/// the first 6 seeds were caught 4 times, 3 of those anomalies inside a loss or latency window.
/// With latency in the wave and these windows long: 7 of the 10 seeds (the correct quorum 10 of
/// 10 valid); docs/targets.md, "Detection".
fn long_window(family: Family, kind: &str, has_leader: bool) -> bool {
    isolates_leader(family, kind) || (!has_leader && matches!(family, Family::Loss | Family::Latency))
}

/// How long a window of `kind` lasts, in intervals.
fn window_intervals(family: Family, kind: &str, has_leader: bool) -> f64 {
    if churn::is(family, kind) {
        CHURN_WINDOWS
    } else if long_window(family, kind, has_leader) {
        LEADER_ISOLATION_WINDOWS
    } else {
        1.0
    }
}

/// Most windows one schedule holds (a 24 h run at the smallest interval stays far below).
pub const MAX_WINDOWS: usize = 100_000;

/// Whether `choices` asks for the default schedule: every general family, none narrowed
/// (`all`, or the same families listed bare).
pub fn is_default(choices: &[Choice]) -> bool {
    choices.len() == Family::GENERAL.len()
        && Family::GENERAL.iter().all(|f| choices.iter().any(|c| c.family == *f && c.kinds.is_empty()))
}

/// Whether a (family, kind) pair can act on this cluster.
fn usable(family: Family, kind: &str, nodes: usize, has_leader: bool) -> bool {
    let leader_kind = kind == "leader" || kind.contains("isolate-leader") || churn::is(family, kind);
    if leader_kind && !has_leader {
        return false;
    }
    // Churn cuts a leader with companions and needs a majority left on the other side.
    if family == Family::Partition
        && ((kind == "majorities-ring" && nodes < 4) || (churn::is(family, kind) && nodes < 3))
    {
        return false;
    }
    // On one node no link can be cut, and the leader kinds are `one`.
    !(nodes < 2 && matches!(family, Family::Partition | Family::Loss | Family::Latency))
}

/// The default schedule. `supported` says which families the target takes.
pub fn generate(
    seed: u64,
    nodes: usize,
    has_leader: bool,
    supported: &dyn Fn(Family) -> bool,
    time_limit_s: f64,
    interval_s: f64,
) -> Schedule {
    generate_declaring(seed, nodes, has_leader, supported, &[], time_limit_s, interval_s)
}

/// [`generate`] for a target that declares `declared` ([`Shape::declared`]), as the reference
/// Raft does (`roles::role("raft").faults`).
pub fn generate_declaring(
    seed: u64,
    nodes: usize,
    has_leader: bool,
    supported: &dyn Fn(Family) -> bool,
    declared: &[(Family, &'static str)],
    time_limit_s: f64,
    interval_s: f64,
) -> Schedule {
    let shape = Shape { nodes, has_leader, supported, lone: &[], declared };
    generate_for(seed, &shape, time_limit_s, interval_s)
}

/// What the default schedule needs to know of the cluster before it starts.
pub struct Shape<'a> {
    pub nodes: usize,
    pub has_leader: bool,
    /// Which families the target takes.
    pub supported: &'a dyn Fn(Family) -> bool,
    /// Indexes of nodes that alone hold a role ([`crate::target::Target::lone_nodes`]).
    pub lone: &'a [usize],
    /// Faults the target declares matter to it ([`crate::target::Target::declared_faults`]):
    /// each joins the first wave after the common ones (so the common wave's order and timing
    /// stay what they are on other targets) and the bag drawn from after it.
    pub declared: &'a [(Family, &'static str)],
}

/// Why a move fills every gap on a target that can move shards: its own bugs (a write lost
/// between a key's copy and the flip) need many moves under load, and one move per wave did not
/// show them (router `unsafe-move`, 0 of 5 seeds at 30 s with one move a run). A move barely
/// dents availability (its keys wait about 1.5 s), so it takes the quiet's place.
pub fn moves_fill_gaps(supported: &dyn Fn(Family) -> bool) -> bool {
    supported(Family::Rebalance)
}

/// One fault the generator places: a family, a kind, and, for a fault aimed at a lone node,
/// that node's index (put first in the fault's order).
type Pick<'a> = (Family, &'a str, Option<usize>);

/// The first wave, in a seeded order, last to be drawn first (drawn with `pop()`). The kills of
/// lone nodes open it: a single point of failure is judged from a cluster that is serving (the
/// router's availability promise does not judge a crash during the recovery from an earlier
/// fault), and early, while a router has cached few directory entries (measured with
/// `single-directory`: kills of n2 at 3.6 s and 7.3 s served 0.00 and 0.12 of the usual ok rate,
/// later ones up to 0.89).
fn first_wave<'a>(rng: &mut impl rand::Rng, shape: &Shape, keep: &dyn Fn(Family, &str) -> bool) -> Vec<Pick<'a>> {
    let wave = if shape.has_leader { LEADER_WAVE } else { LEADERLESS_WAVE };
    let mut first: Vec<Pick> = wave.iter().map(|&(f, k)| (f, k, None)).filter(|(f, k, _)| keep(*f, k)).collect();
    first.shuffle(rng);
    let lone: Vec<Pick> = shape
        .lone
        .iter()
        .filter(|&&i| i < shape.nodes)
        .map(|&i| (Family::Kill, "one", Some(i)))
        .filter(|(f, k, _)| keep(*f, k))
        .collect();
    first.splice(0..0, lone);
    first.extend(
        shape.declared.iter().filter(|(f, k)| keep(*f, k) && !wave.contains(&(*f, *k))).map(|&(f, k)| (f, k, None)),
    );
    first.reverse();
    first
}

/// The default schedule for a cluster of `shape`.
pub fn generate_for(seed: u64, shape: &Shape, time_limit_s: f64, interval_s: f64) -> Schedule {
    assert!(interval_s > 0.0, "interval checked by the caller");
    let mut rng = rng_for(seed, "nemesis-coverage", 0);
    let keep = |f: Family, k: &str| (shape.supported)(f) && usable(f, k, shape.nodes, shape.has_leader);
    let mut first = first_wave(&mut rng, shape, &keep);
    let pool: Vec<(Family, &str)> = Family::GENERAL
        .iter()
        .flat_map(|f| f.kinds().iter().map(move |k| (*f, *k)))
        .chain(shape.has_leader.then_some((Family::Clock, clock::SKEW_ISOLATE_LEADER)))
        .chain(shape.declared.iter().copied().filter(|(f, k)| !f.kinds().contains(k)))
        .filter(|(f, k)| keep(*f, k))
        .collect();
    let moves = moves_fill_gaps(shape.supported);
    let gap = interval_s / 2.0;
    let mut bag: Vec<(Family, &str)> = Vec::new();
    let mut faults = Vec::new();
    // A lone node's kill (first) is judged from a serving cluster: give the cluster a whole
    // interval, not half, to start serving (a router waits out a request timeout, 1.5 s, before
    // its first directory read; measured: no completion in a router run's first 1.5 s).
    let mut t = if first.last().is_some_and(|p| p.2.is_some()) { interval_s } else { gap };
    let mut skipped = 0;
    while !pool.is_empty() && faults.len() < MAX_WINDOWS && t + interval_s <= time_limit_s - gap + 1e-9 {
        let (family, kind, aim) = first.pop().unwrap_or_else(|| {
            if bag.is_empty() {
                bag = pool.clone();
                bag.shuffle(&mut rng);
            }
            let (f, k) = bag.pop().expect("bag refilled");
            (f, k, None)
        });
        // A leader cut off needs longer: see LEADER_ISOLATION_WINDOWS. Shortened to what is
        // left of the run rather than dropped; but a churn window, which needs several elections
        // to act, is left out when it does not fit whole (a short run keeps its other draws).
        let wanted = window_intervals(family, kind, shape.has_leader) * interval_s;
        if churn::is(family, kind) && t + wanted > time_limit_s - gap + 1e-9 {
            skipped += 1;
            if skipped > pool.len() {
                break; // nothing else left to draw
            }
            continue;
        }
        skipped = 0;
        let order = seeded_order(&mut rng, shape.nodes, aim);
        let param = draw_param(&mut rng, family, kind);
        let length = wanted.min(time_limit_s - gap - t).max(interval_s);
        faults.push(Scheduled {
            start_s: t,
            end_s: t + length,
            spec: FaultSpec { family, kind: kind.to_string(), order, param },
        });
        t += length;
        if moves && t + gap <= time_limit_s - gap + 1e-9 {
            let order = seeded_order(&mut rng, shape.nodes, None);
            let param = draw_param(&mut rng, Family::Rebalance, rebalance::KIND_MOVE);
            let spec = FaultSpec { family: Family::Rebalance, kind: rebalance::KIND_MOVE.to_string(), order, param };
            faults.push(Scheduled { start_s: t, end_s: t + gap, spec });
        }
        t += gap;
    }
    Schedule { name: "all".into(), faults }
}

/// A seeded permutation of the nodes, `aim` (when given) moved to the front.
fn seeded_order(rng: &mut impl rand::Rng, nodes: usize, aim: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(rng);
    if let Some(i) = aim.and_then(|a| order.iter().position(|&n| n == a)) {
        order[..=i].rotate_right(1);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family a router under range sharding takes but `rebalance`.
    fn every(f: Family) -> bool {
        f != Family::Rebalance
    }

    fn pairs(s: &Schedule) -> Vec<(Family, String)> {
        s.faults.iter().map(|f| (f.spec.family, f.spec.kind.clone())).collect()
    }

    #[test]
    fn the_first_wave_comes_first_in_a_seeded_order_then_every_kind() {
        let a = generate(1, 5, true, &every, 60.0, 3.0);
        let b = generate(1, 5, true, &every, 60.0, 3.0);
        let c = generate(2, 5, true, &every, 60.0, 3.0);
        assert_eq!(a, b);
        assert_ne!(pairs(&a), pairs(&c), "the order depends on the seed");
        // Windows of 3 s 1.5 s apart from 1.5 s, ending by 58.5 s; a leader cut off for 6 s.
        assert_eq!(a.faults[0].start_s, 1.5);
        for w in a.faults.windows(2) {
            assert_eq!(w[1].start_s, w[0].end_s + 1.5, "{w:?}");
        }
        assert!(a.faults.last().unwrap().end_s <= 58.5);
        for f in &a.faults {
            let want = if isolates_leader(f.spec.family, &f.spec.kind) { 6.0 } else { 3.0 };
            assert_eq!(f.end_s - f.start_s, want, "{f:?}");
        }
        assert!(a.faults.iter().any(|f| isolates_leader(f.spec.family, &f.spec.kind)));
        assert!((10..=13).contains(&a.faults.len()), "{}", a.faults.len());
        for s in [&a, &c] {
            let mut head: Vec<(Family, String)> = pairs(s)[..LEADER_WAVE.len()].to_vec();
            let mut want: Vec<(Family, String)> = LEADER_WAVE.iter().map(|(f, k)| (*f, k.to_string())).collect();
            head.sort();
            want.sort();
            assert_eq!(head, want, "the whole wave, once each, first");
        }
        // A 30 s run at the default interval still holds the whole wave (the two leader cuts
        // of 6 s included: 1.5 + 2 × 7.5 + 4 × 4.5 = 34.5 would not fit, so the last window is
        // shortened or the wave is cut at the run's end; every one that fits starts).
        let short = generate(3, 5, true, &every, 30.0, 3.0);
        assert!(short.faults.len() >= 5 && short.faults.last().unwrap().end_s <= 28.5 + 1e-9, "{short:?}");
        assert!(is_default(&super::super::parse_choices("all").unwrap()));
        assert!(!is_default(&super::super::parse_choices("partition,kill").unwrap()));
        assert!(!is_default(&super::super::parse_choices("partition:halves,kill,pause,clock,loss,latency").unwrap()));
    }

    #[test]
    fn leaderless_and_refused_families_are_left_out() {
        let no_clock = |f: Family| f != Family::Clock;
        for seed in 0..20 {
            let s = generate(seed, 3, false, &no_clock, 120.0, 2.0);
            assert!(s.faults.len() > 20);
            for (f, k) in pairs(&s) {
                assert_ne!(f, Family::Clock);
                assert!(!k.contains("leader"), "{k}");
                assert_ne!(k, "majorities-ring", "3 nodes: cuts nothing");
            }
            for f in s.faults.iter().filter(|f| matches!(f.spec.family, Family::Loss | Family::Latency)) {
                assert!(f.end_s - f.start_s == 4.0 || f.end_s >= 120.0 - 1.0 - 2.0, "long on leaderless: {f:?}");
            }
            let kinds: Vec<(Family, String)> = pairs(&s);
            for want in [(Family::Latency, "all-links"), (Family::Pause, "all")] {
                assert!(kinds.contains(&(want.0, want.1.to_string())), "{want:?}");
            }
        }
        // A router that can move shards gets a move in every gap (see the test below).
        let router = generate(6, 7, true, &|_| true, 120.0, 3.0);
        assert_eq!(router.faults[1].spec.family, Family::Rebalance, "{router:?}");
        // Nothing the target takes: no windows rather than refused ones.
        assert!(generate(1, 5, true, &|_| false, 60.0, 3.0).faults.is_empty());
    }

    #[test]
    fn moves_fill_every_gap_on_a_target_that_can_move_shards_and_only_there() {
        for seed in 0..10 {
            let s = generate(seed, 7, true, &|_| true, 60.0, 3.0);
            // fault, move, fault, move, ...: each move starts when the fault before it ends
            // and lasts the gap; the next fault starts when the move's window ends.
            for (i, w) in s.faults.windows(2).enumerate() {
                let (a, b) = (&w[0], &w[1]);
                assert_eq!(b.start_s, a.end_s, "{seed}: {w:?}");
                assert_eq!(a.spec.family == Family::Rebalance, i % 2 == 1, "{seed}: {w:?}");
            }
            let moves = s.faults.iter().filter(|f| f.spec.family == Family::Rebalance).count();
            assert!(moves >= 9, "{seed}: {moves} moves in 60 s");
            assert!(s.faults.iter().all(|f| f.end_s <= 58.5 + 1e-9));
            assert!(s.faults.iter().filter(|f| f.spec.family == Family::Rebalance).all(|f| f.end_s - f.start_s == 1.5));
            // The first wave is whole without the move in it.
            let faults: Vec<(Family, String)> =
                pairs(&s).into_iter().filter(|(f, _)| *f != Family::Rebalance).take(LEADER_WAVE.len()).collect();
            let mut want: Vec<(Family, String)> = LEADER_WAVE.iter().map(|(f, k)| (*f, k.to_string())).collect();
            let mut head = faults.clone();
            head.sort();
            want.sort();
            assert_eq!(head, want);
        }
        // Targets that cannot move: the same schedule as before moves existed (no move, gaps quiet).
        let s = generate(1, 5, true, &every, 60.0, 3.0);
        assert!(s.faults.iter().all(|f| f.spec.family != Family::Rebalance));
        assert!(s.faults.windows(2).all(|w| w[1].start_s == w[0].end_s + 1.5));
    }

    #[test]
    fn a_lone_node_is_killed_once_in_the_first_wave() {
        for seed in 0..20 {
            let shape = Shape { nodes: 8, has_leader: true, supported: &every, lone: &[1], declared: &[] };
            let s = generate_for(seed, &shape, 120.0, 3.0);
            let head = &s.faults[..LEADER_WAVE.len() + 1];
            let aimed: Vec<&Scheduled> = head
                .iter()
                .filter(|f| f.spec.family == Family::Kill && f.spec.kind == "one" && f.spec.order[0] == 1)
                .collect();
            assert_eq!(aimed.len(), 1, "{seed}: {head:?}");
            assert_eq!(aimed[0], &s.faults[0], "{seed}: the lone node's kill opens the schedule");
            assert_eq!(s.faults[0].start_s, 3.0, "after a whole interval of service");
            let mut order = aimed[0].spec.order.clone();
            order.sort();
            assert_eq!(order, (0..8).collect::<Vec<_>>(), "still a permutation");
            // Without a lone node, the same seed's first wave is the plain wave.
            let plain = generate(seed, 8, true, &every, 120.0, 3.0);
            assert_eq!(plain.faults[..LEADER_WAVE.len()].len(), LEADER_WAVE.len());
            assert!(plain.faults[..LEADER_WAVE.len()]
                .iter()
                .all(|f| (f.spec.family, f.spec.kind.as_str()) != (Family::Kill, "one")));
        }
        // A lone index beyond the cluster is ignored rather than aimed at nothing.
        let shape = Shape { nodes: 3, has_leader: true, supported: &every, lone: &[7], declared: &[] };
        assert_eq!(generate_for(1, &shape, 60.0, 3.0), generate(1, 3, true, &every, 60.0, 3.0));
    }

    /// The reference quorum declares flapping loss and latency: in a default 60 s run both come
    /// after the leaderless wave (unchanged), each two intervals long like the wave's loss and
    /// delay, and fit; the bare families never draw them.
    #[test]
    fn a_leaderless_target_gets_its_declared_flapping_windows_after_the_wave() {
        let declared = crate::target::roles::QUORUM_FAULTS;
        for seed in 0..20 {
            let plain = generate(seed, 5, false, &every, 60.0, 3.0);
            let shape = Shape { nodes: 5, has_leader: false, supported: &every, lone: &[], declared };
            let s = generate_for(seed, &shape, 60.0, 3.0);
            let n = LEADERLESS_WAVE.len();
            assert_eq!(s.faults[..n], plain.faults[..n], "{seed}");
            let next: Vec<(Family, &str)> =
                s.faults[n..n + 2].iter().map(|f| (f.spec.family, f.spec.kind.as_str())).collect();
            assert_eq!(next.len(), 2, "{seed}: {s:?}");
            assert!(declared.iter().all(|d| next.contains(d)), "{seed}: {next:?}");
            for f in &s.faults[n..n + 2] {
                assert_eq!(f.end_s - f.start_s, 6.0, "{seed}: {f:?}");
                assert!(f.end_s <= 60.0 - 1.5, "{seed}: {f:?}");
            }
            assert!(plain.faults.iter().all(|f| f.spec.kind != super::super::net::FLAPPING), "{seed}");
        }
    }

    #[test]
    fn a_declared_fault_follows_the_common_wave_which_keeps_its_schedule() {
        let churn = (Family::Partition, churn::LEADER_CHURN);
        for seed in 0..20 {
            let plain = generate(seed, 5, true, &every, 60.0, 3.0);
            let shape = Shape { nodes: 5, has_leader: true, supported: &every, lone: &[], declared: &[churn] };
            let s = generate_for(seed, &shape, 60.0, 3.0);
            let n = LEADER_WAVE.len();
            // The common wave is unchanged, window for window; the declared fault comes next,
            // CHURN_WINDOWS intervals long, and fits a 60 s run.
            assert_eq!(s.faults[..n], plain.faults[..n], "{seed}");
            let next = &s.faults[n];
            assert_eq!((next.spec.family, next.spec.kind.as_str()), churn, "{seed}: {next:?}");
            assert_eq!(next.start_s, plain.faults[n - 1].end_s + 1.5);
            assert_eq!(next.end_s - next.start_s, CHURN_WINDOWS * 3.0, "{seed}");
            assert!(next.end_s <= 58.5);
            assert!((25.0..=40.0).contains(&next.spec.param), "a link delay in range: {}", next.spec.param);
            // Not on a target that declares nothing, nor where it cannot act.
            assert!(plain.faults.iter().all(|f| !f.spec.is_leader_churn()));
            let leaderless = Shape { nodes: 5, has_leader: false, supported: &every, lone: &[], declared: &[churn] };
            assert!(generate_for(seed, &leaderless, 60.0, 3.0).faults.iter().all(|f| !f.spec.is_leader_churn()));
            let two = Shape { nodes: 2, has_leader: true, supported: &every, lone: &[], declared: &[churn] };
            assert!(generate_for(seed, &two, 60.0, 3.0).faults.iter().all(|f| !f.spec.is_leader_churn()));
        }
        // A run too short for a whole churn window leaves it out and keeps drawing the rest.
        let short = generate_declaring(1, 5, true, &every, &[churn], 13.0, 1.0);
        assert!(short.faults.iter().all(|f| !f.spec.is_leader_churn()), "{short:?}");
        assert!(short.faults.len() > LEADER_WAVE.len(), "a draw after the wave: {short:?}");
        let only = |f: Family| f == Family::Partition;
        let s = generate_declaring(1, 5, true, &only, &[churn], 10.0, 3.0);
        assert!(s.faults.iter().all(|f| !f.spec.is_leader_churn()), "ends: {s:?}");
        // Longer runs draw it again from the bag, like any kind.
        let shape = Shape { nodes: 5, has_leader: true, supported: &every, lone: &[], declared: &[churn] };
        let long = generate_for(1, &shape, 1200.0, 3.0);
        let churns = long.faults.iter().filter(|f| f.spec.is_leader_churn()).count();
        assert!(churns >= 3, "{churns} churn windows in 20 minutes");
    }

    #[test]
    fn parameters_follow_the_kind() {
        let s = generate(4, 5, true, &every, 3000.0, 1.0);
        for f in &s.faults {
            match (f.spec.family, f.spec.kind.as_str()) {
                (Family::Clock, clock::SKEW_ISOLATE_LEADER) => {
                    assert!(f.spec.param <= -5000.0 && f.spec.param >= -15000.0)
                }
                (Family::Loss, _) => assert!(f.spec.param >= 0.1 && f.spec.param <= 0.5),
                (Family::Kill, _) | (Family::Pause, _) | (Family::Partition, _) => {
                    assert_eq!(f.spec.param, 0.0)
                }
                _ => {}
            }
            let mut o = f.spec.order.clone();
            o.sort();
            assert_eq!(o, vec![0, 1, 2, 3, 4]);
        }
    }
}
