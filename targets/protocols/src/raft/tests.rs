//! Deterministic tests of the Raft core on the simulated network of [`super::sim`], grouped by
//! the section of the Raft paper (Ongaro & Ousterhout 2014) or of Ongaro's thesis they exercise.
//! Election safety (§5.2) and state machine safety (§5.4.3) are checked by the simulator after
//! every step of every test. The randomized tests run 6 seeds by default; set RAFT_SIM_SEEDS
//! for more (`RAFT_SIM_SEEDS=200 cargo test --release -p faultline-protocols` passes).

use super::sim::Sim;
use super::*;
use std::cell::Cell;
use std::collections::BTreeMap;

fn w(key: &str, value: i64) -> Command {
    Command::Write { key: key.into(), value }
}

fn leader_of(sim: &mut Sim, steps_max: u64) -> NodeId {
    assert!(sim.run_until(steps_max, |s| s.leader().is_some()), "no leader within {steps_max} steps");
    sim.leader().expect("leader")
}

/// Writes through the current leader until one is acknowledged.
fn write_ok(sim: &mut Sim, key: &str, value: i64) {
    for _ in 0..20 {
        let l = leader_of(sim, 500);
        let req = sim.propose(&l, w(key, value));
        if sim.wait(req, 200) == Some(Reply::Done) {
            return;
        }
    }
    panic!("write {key}={value} never acknowledged");
}

// ------------------------------------------------------------------ §5.2 leader election

#[test]
fn s5_2_one_leader_is_elected_and_replaced_when_cut_off_despite_loss_and_reordering() {
    for seed in 0..10 {
        let mut sim = Sim::new(5, seed, |_| {});
        sim.loss = 0.1;
        sim.max_delay = 2;
        let l1 = leader_of(&mut sim, 500);
        let t1 = sim.node(&l1).hard_state().term;
        sim.isolate(&[&l1]);
        let other = sim.run_until(1000, |s| s.nodes.iter().any(|(id, r)| *id != l1 && r.role() == Role::Leader));
        assert!(other, "seed {seed}: the majority elected no new leader");
        let l2 = sim
            .nodes
            .iter()
            .find(|(id, r)| **id != l1 && r.role() == Role::Leader)
            .map(|(id, _)| id.clone())
            .expect("l2");
        assert!(sim.node(&l2).hard_state().term > t1, "seed {seed}: new leader must have a higher term");
        // CheckQuorum: the cut-off leader notices it lost its majority and steps down.
        assert!(sim.run_until(100, |s| s.node(&l1).role() != Role::Leader), "seed {seed}: isolated leader kept office");
        sim.heal();
        let agreed = sim.run_until(1000, |s| {
            let leaders: Vec<_> = s.nodes.values().map(|r| r.status().leader).collect();
            leaders.iter().all(|l| l.is_some() && *l == leaders[0])
        });
        assert!(agreed, "seed {seed}: nodes never agreed on a leader after healing");
    }
}

#[test]
fn s5_2_a_single_node_cluster_elects_itself_and_serves() {
    let mut sim = Sim::new(1, 1, |_| {});
    let l = leader_of(&mut sim, 100);
    let req = sim.propose(&l, w("k", 5));
    assert_eq!(sim.wait(req, 10), Some(Reply::Done));
    let req = sim.read(&l, "k");
    assert_eq!(sim.wait(req, 10), Some(Reply::Value(Some(5))));
}

/// Thesis §9.6: a node cut off from the cluster keeps timing out, but with pre-vote it never
/// raises its term, so when it rejoins the leader is not deposed.
#[test]
fn s9_6_prevote_keeps_a_rejoining_node_from_disrupting_the_leader() {
    for seed in 0..5 {
        let mut sim = Sim::new(3, seed, |_| {});
        let l = leader_of(&mut sim, 500);
        let term = sim.node(&l).hard_state().term;
        let f = sim.ids().into_iter().find(|id| *id != l).expect("follower");
        sim.isolate(&[&f]);
        sim.run(300); // ~20 election timeouts
        assert_eq!(sim.node(&f).hard_state().term, term, "seed {seed}: isolated node raised its term");
        sim.heal();
        sim.run(200);
        assert_eq!(sim.leader().as_ref(), Some(&l), "seed {seed}: leader was deposed by a rejoining node");
        assert_eq!(sim.node(&l).hard_state().term, term, "seed {seed}: term changed");
    }
}

// ------------------------------------------------------------------ §5.3 log replication

/// §5.3 Log Matching: under loss, reordering, partitions and crashes, logs converge after
/// healing, and every acknowledged write is in the final log (§5.4 Leader Completeness).
#[test]
fn s5_3_logs_converge_and_keep_acknowledged_writes_under_loss_partitions_and_crashes() {
    let seeds: u64 = std::env::var("RAFT_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    for seed in 0..seeds {
        let mut sim = Sim::new(5, 100 + seed, |_| {});
        sim.loss = 0.15;
        sim.max_delay = 3;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        use rand::{Rng, SeedableRng};
        let mut writes: Vec<(ReqId, String, i64)> = Vec::new();
        let mut value = 0i64;
        for _round in 0..15 {
            sim.heal();
            match rng.random_range(0..4) {
                0 => {}
                1 => {
                    let ids = sim.ids();
                    let a = ids[rng.random_range(0..ids.len())].clone();
                    sim.isolate(&[&a]);
                }
                2 => {
                    let ids = sim.ids();
                    let (a, b) =
                        (ids[rng.random_range(0..ids.len())].clone(), ids[rng.random_range(0..ids.len())].clone());
                    sim.isolate(&[&a, &b]);
                }
                _ => {
                    let ids = sim.ids();
                    let a = ids[rng.random_range(0..ids.len())].clone();
                    if sim.nodes.contains_key(&a) && sim.nodes.len() > 3 {
                        sim.crash(&a);
                    }
                }
            }
            for _ in 0..40 {
                let leaders: Vec<NodeId> =
                    sim.nodes.iter().filter(|(_, r)| r.role() == Role::Leader).map(|(id, _)| id.clone()).collect();
                for l in leaders {
                    value += 1;
                    let key = format!("k{}", value % 4);
                    let req = sim.propose(&l, w(&key, value));
                    writes.push((req, key, value));
                }
                sim.step();
            }
            for id in sim.ids() {
                if !sim.nodes.contains_key(&id) && rng.random_bool(0.5) {
                    sim.restart(&id);
                }
            }
        }
        for id in sim.ids() {
            if !sim.nodes.contains_key(&id) {
                sim.restart(&id);
            }
        }
        sim.heal();
        sim.loss = 0.0;
        let converged = sim.run_until(2000, |s| {
            let sts: Vec<Status> = s.nodes.values().map(|r| r.status()).collect();
            s.leader().is_some()
                && sts.iter().all(|st| st.last_index == sts[0].last_index && st.applied_index == st.last_index)
        });
        assert!(converged, "seed {seed}: logs did not converge");
        let logs: Vec<&[Entry]> = sim.nodes.values().map(|r| r.log().entries()).collect();
        for l in &logs {
            assert_eq!(*l, logs[0], "seed {seed}: logs differ after convergence");
        }
        let acked: Vec<_> = writes.iter().filter(|(req, _, _)| sim.reply(*req) == Some(&Reply::Done)).collect();
        assert!(acked.len() > 20, "seed {seed}: only {} writes acknowledged; test too weak", acked.len());
        for (_, key, value) in acked {
            let found = logs[0].iter().any(|e| e.cmd == w(key, *value));
            assert!(found, "seed {seed}: acknowledged write {key}={value} missing from the final log");
        }
    }
}

/// §5.3: a follower with conflicting uncommitted entries has them truncated and replaced.
#[test]
fn s5_3_conflicting_uncommitted_entries_are_truncated() {
    let mut sim = Sim::new(3, 7, |_| {});
    let l = leader_of(&mut sim, 500);
    sim.run(5);
    sim.isolate(&[&l]);
    // These are appended only to the isolated leader's log and never commit.
    let lost: Vec<ReqId> = (0..5).map(|i| sim.propose(&l, w("x", 100 + i))).collect();
    let l2 = {
        let ok = sim.run_until(1000, |s| s.nodes.iter().any(|(id, r)| *id != l && r.role() == Role::Leader));
        assert!(ok);
        sim.nodes.iter().find(|(id, r)| **id != l && r.role() == Role::Leader).map(|(id, _)| id.clone()).expect("l2")
    };
    let req = sim.propose(&l2, w("x", 1));
    assert_eq!(sim.wait(req, 200), Some(Reply::Done));
    sim.heal();
    assert!(sim.run_until(1000, |s| s.node(&l).status().applied_index == s.node(&l2).status().applied_index));
    assert_eq!(sim.node(&l).log().entries(), sim.node(&l2).log().entries(), "old leader's log must match the new one");
    assert_eq!(sim.node(&l).kv().get("x"), Some(&1));
    for req in lost {
        assert_eq!(sim.reply(req), Some(&Reply::LostLeadership), "an unreplicated proposal is answered indefinitely");
    }
}

/// §5.3: after a rejection the leader moves `nextIndex` back and retries, which is all a lost
/// AppendEntries needs (the next heartbeat names the missing entry as its predecessor). On links
/// slower than a heartbeat round trip a new leader must neither resend its log from the start
/// nor fall silent behind the resends: here, with every message taking 3 ticks each way and a
/// heartbeat every 2, a leader elected after 300 committed writes sends no AppendEntries whose
/// predecessor lies before the followers' common commit, and commits its no-op within a few
/// round trips. (A rule that resent from the match point whenever a heartbeat saw no
/// acknowledgement shipped the log from index 1 at the start of every term; the reference node
/// under leader churn's 25–40 ms link delays lost its followers to election timeouts behind
/// those batches.)
#[test]
fn s5_3_a_new_leader_on_slow_links_does_not_resend_its_log_from_the_start() {
    let mut sim = Sim::new(3, 11, |c| c.election_ticks = 40);
    let first = leader_of(&mut sim, 2000);
    for i in 0..300 {
        let req = sim.propose(&first, w("x", i));
        assert_eq!(sim.wait(req, 200), Some(Reply::Done), "write {i}");
    }
    sim.run(20);
    let committed = sim.node(&first).status().commit_index;
    assert!(sim.ids().iter().all(|id| sim.node(id).status().commit_index == committed));
    let sent_from: std::rc::Rc<Cell<u64>> = std::rc::Rc::new(Cell::new(u64::MAX));
    let spy = sent_from.clone();
    sim.drop_if = Some(Box::new(move |env: &Envelope| {
        if let Message::Append { prev_index, .. } = &env.msg {
            spy.set(spy.get().min(*prev_index));
        }
        false
    }));
    sim.min_delay = 3;
    sim.crash(&first);
    let next = leader_of(&mut sim, 1000);
    assert!(
        sim.run_until(60, |s| s.node(&next).status().commit_index > committed),
        "the new leader's no-op commits within 10 round trips of 6 ticks"
    );
    sim.run(100);
    assert!(
        sent_from.get() >= committed,
        "{next} sent an AppendEntries after index {} although every follower holds {committed}",
        sent_from.get()
    );
}

// ------------------------------------------------------------------ §5.4.2 figure 8

/// What the figure-8 scenario leaves: the simulation after n5 overwrote index 2, n1's commit
/// index and value of `x` while it led term 3, and the answer to a read of `x` sent to n1 as
/// soon as it became leader (none: never answered).
struct Figure8 {
    sim: Sim,
    commit_n1: u64,
    x_on_n1: Option<i64>,
    read_on_n1: Option<Reply>,
    /// Whether (2, t1) reached n3 in term 3, putting it on a majority.
    old_entry_on_n3: bool,
    /// The answer to the client whose write x=1 became (2, t1), as it stood while n1 led term
    /// 3 (n1 stayed up, so the proposal was still waiting; none if n1 crashed in term 1).
    write_on_n1: Option<Reply>,
}

/// Whether n1, the term-1 leader, crashes after storing (2, t1) on n2 (the paper's figure) or
/// stays up, cut off, with its client's write still waiting for the entry to be applied.
#[derive(Clone, Copy, PartialEq)]
enum N1 {
    Crashes,
    StaysUp,
}

/// The scenario of the Raft paper's figure 8 (§5.4.2), with each leader's no-op playing the
/// role of its first entry. The entry (index 2, term 1) ends up on a majority while the term-3
/// leader n1 holds office; n1 must not commit it by counting replicas, because n5 (whose log
/// ends with term 2) can still be elected and overwrite it. With the `commit-old-term` bug n1
/// commits and applies it, and n5 later overwrites a committed entry. `batch` is the leader's
/// `max_batch_entries`.
fn figure8(bug: bool, batch: usize) -> Figure8 {
    figure8_with(bug, batch, N1::Crashes)
}

fn figure8_with(bug: bool, batch: usize, n1: N1) -> Figure8 {
    let mut sim = Sim::new(5, 8, |c| {
        c.max_batch_entries = batch;
        c.bugs.commit_old_term = bug;
    });
    sim.check_committed = false;
    let write = figure8_terms_1_and_2(&mut sim, n1);
    let read_on_n1 = figure8_term_3(&mut sim, n1);
    let write_on_n1 = sim.reply(write).cloned();
    let old_entry_on_n3 = sim.node("n3").log().term(2) == Some(1);
    let commit_n1 = sim.node("n1").status().commit_index;
    let x_on_n1 = sim.node("n1").kv().get("x").copied();
    // (d) n1 crashes; n5 restarts and, elected by n3 and n4, overwrites index 2 with its own.
    sim.crash("n1");
    sim.drop_if = None;
    sim.heal();
    sim.restart("n5");
    sim.isolate(&["n2"]);
    sim.tick_silently(&["n3", "n4", "n5"], 25);
    for _ in 0..2 {
        if sim.node("n5").role() != Role::Leader {
            sim.hup("n5");
            sim.deliver_due();
        }
    }
    assert_eq!(sim.node("n5").role(), Role::Leader);
    sim.run(10);
    assert_eq!(sim.node("n3").log().term(2), Some(2), "n5 overwrote index 2 on n3");
    Figure8 { sim, commit_n1, x_on_n1, read_on_n1, old_entry_on_n3, write_on_n1 }
}

/// Figure 8 (a) and (b): n1 leads term 1 and stores (2, t1) on n2 only, then n5 leads term 2
/// and stores (2, t2) on itself only. Returns the request of the client's write x=1.
fn figure8_terms_1_and_2(sim: &mut Sim, n1: N1) -> ReqId {
    // (a) (Nodes refuse votes during their first election timeout, so let that pass first.)
    sim.tick_silently(&["n1", "n2", "n3", "n4", "n5"], 10);
    sim.hup("n1");
    sim.run(5);
    assert_eq!(sim.leader().as_deref(), Some("n1"));
    sim.isolate(&["n1", "n2"]);
    let write = sim.propose("n1", w("x", 1));
    sim.deliver_due();
    assert_eq!(sim.node("n2").log().term(2), Some(1));
    // (b) n1 crashes (or is cut off alone); n5 is elected in term 2 by n3, n4 and appends
    // (2, t2) only locally.
    sim.heal();
    match n1 {
        N1::Crashes => sim.crash("n1"),
        N1::StaysUp => sim.isolate(&["n1"]),
    }
    sim.isolate(&["n2"]);
    sim.tick_silently(&["n3", "n4", "n5"], 25);
    sim.drop_if =
        Some(Box::new(|e| e.from == "n5" && matches!(&e.msg, Message::Append { entries, .. } if !entries.is_empty())));
    sim.hup("n5");
    sim.deliver_due();
    assert_eq!(sim.node("n5").role(), Role::Leader);
    assert_eq!((sim.node("n5").hard_state().term, sim.node("n5").log().term(2)), (2, Some(2)));
    write
}

/// Figure 8 (c): n5 crashes; n1 restarts and is elected in term 3; it replicates (2, t1) to n3,
/// so index 2 is on n1, n2, n3 (unless it travels with index 3, which is dropped), but its own
/// term-3 entry (index 3) reaches only n2. A client
/// reads `x` from n1 as soon as it leads; returns the answer, if any.
fn figure8_term_3(sim: &mut Sim, n1: N1) -> Option<Reply> {
    sim.crash("n5");
    sim.heal();
    if n1 == N1::Crashes {
        sim.restart("n1");
    }
    sim.tick_silently(&["n1", "n2", "n3", "n4"], 25);
    // Index 3 is dropped on its way to n3 and n4 once n3 was sent index 2; before that n3 gets
    // it once, when it carries no index 2, to reject it and prompt the resend of (2, t1).
    let sent_2_to_n3 = Cell::new(false);
    sim.drop_if = Some(Box::new(move |e| {
        let Message::Append { entries, .. } = &e.msg else { return false };
        if e.from != "n1" || e.to == "n2" {
            return false;
        }
        let carries = |i: u64| entries.iter().any(|x| x.index == i);
        if e.to == "n3" && carries(2) {
            sent_2_to_n3.set(true);
        }
        carries(3) && (e.to != "n3" || sent_2_to_n3.get())
    }));
    let mut read = None;
    for _ in 0..2 {
        if sim.node("n1").role() != Role::Leader {
            sim.hup("n1");
            while sim.node("n1").role() != Role::Leader && sim.deliver_round() {}
        }
        if sim.node("n1").role() == Role::Leader && read.is_none() {
            read = Some(sim.read("n1", "x"));
        }
        sim.deliver_due();
    }
    assert_eq!(sim.node("n1").role(), Role::Leader);
    assert_eq!(sim.node("n1").hard_state().term, 3);
    for n in ["n1", "n2"] {
        assert_eq!(sim.node(n).log().term(2), Some(1), "{n} holds (2, t1)");
    }
    assert_ne!(sim.node("n3").log().term(3), Some(3), "the term-3 no-op must not reach n3");
    sim.reply(read.expect("n1 led")).cloned()
}

#[test]
fn s5_4_2_figure8_an_old_term_entry_on_a_majority_is_not_committed_by_counting() {
    let f = figure8(false, 1);
    assert!(f.old_entry_on_n3, "(2, t1) is on a majority");
    // (n1 restarted with commit 0; index 1 is of term 1 too, so it stays uncommitted as well.)
    assert!(f.commit_n1 < 2, "n1 must not commit (2, t1) by counting replicas (commit {})", f.commit_n1);
    assert_eq!(f.x_on_n1, None);
    assert_eq!(f.read_on_n1, None, "a read waits for the term's no-op, which never commits");
    assert!(f.sim.violations.is_empty(), "{:?}", f.sim.violations);
}

#[test]
fn s5_4_2_figure8_bug_commit_old_term_loses_a_committed_entry() {
    let f = figure8(true, 1);
    assert!(f.old_entry_on_n3);
    assert_eq!(f.commit_n1, 2, "with the bug n1 commits (2, t1)");
    assert_eq!(f.x_on_n1, Some(1), "and applies x=1");
    assert!(!f.sim.violations.is_empty(), "n5 then overwrites the committed entry: state machine safety broken");
    assert_eq!(f.sim.node("n5").kv().get("x"), None, "the applied write is gone");
}

/// With the default batch size a correct leader ships (2, t1) and its no-op in one message, so
/// the old entry never reaches a majority alone, and a client sees nothing of it.
#[test]
fn s5_4_2_figure8_default_batches_an_old_entry_travels_with_the_no_op() {
    let f = figure8(false, Config::new("n1", vec!["n1".into()]).max_batch_entries);
    assert!(!f.old_entry_on_n3, "(2, t1) reaches n3 only with the no-op, which is dropped");
    assert_eq!((f.commit_n1, f.x_on_n1, f.read_on_n1), (0, None, None));
    assert_eq!(f.sim.node("n3").log().term(2), Some(2));
    assert!(f.sim.violations.is_empty(), "{:?}", f.sim.violations);
}

/// The bug as a client sees it, with the default batch size: n1 ships its predecessors' entries
/// before its own term's and counts them committed, so it answers a read with x=1 before its
/// no-op reaches a majority; n5 then overwrites the entry and answers x absent. x=1 was never
/// acknowledged (n1 of term 1 crashed), yet a read returned it and a later read does not: not
/// linearizable, what `faultline run` must catch.
#[test]
fn s5_4_2_figure8_bug_commit_old_term_a_client_reads_a_value_that_later_disappears() {
    let mut f = figure8(true, Config::new("n1", vec!["n1".into()]).max_batch_entries);
    assert!(f.old_entry_on_n3, "(2, t1) reached n3 alone");
    assert_eq!(f.commit_n1, 2);
    assert_eq!(f.read_on_n1, Some(Reply::Value(Some(1))), "n1 serves x=1 from the counted entry");
    let req = f.sim.read("n5", "x");
    assert_eq!(f.sim.wait(req, 50), Some(Reply::Value(None)), "after n5 overwrote index 2, x is gone");
    assert!(!f.sim.violations.is_empty());
}

/// The bug as the paper's figure tells it, with the term-1 leader cut off instead of crashed:
/// its client's write x=1, waiting for (2, t1) to be applied, is acknowledged when n1, leader
/// again in term 3, counts (2, t1) onto a majority; n5 then overwrites it. An acknowledged write
/// is lost, and the final state has no x.
#[test]
fn s5_4_2_figure8_bug_commit_old_term_acknowledges_a_write_a_later_leader_erases() {
    let batch = Config::new("n1", vec!["n1".into()]).max_batch_entries;
    let mut f = figure8_with(true, batch, N1::StaysUp);
    assert!(f.old_entry_on_n3, "(2, t1) reached n3 alone");
    assert_eq!(f.write_on_n1, Some(Reply::Done), "n1 acknowledges x=1 once it counts (2, t1) as committed");
    let req = f.sim.read("n5", "x");
    assert_eq!(f.sim.wait(req, 50), Some(Reply::Value(None)), "the acknowledged x=1 is gone");
    assert!(!f.sim.violations.is_empty());
}

/// The same interleaving without the bug: (2, t1) travels with n1's no-op, which never reaches
/// a majority, so x=1 is never acknowledged; n5 overwrites it and the waiting client is told the
/// outcome is unknown, which is true (it could have been committed).
#[test]
fn s5_4_2_figure8_a_waiting_write_is_acknowledged_only_if_its_entry_commits() {
    let batch = Config::new("n1", vec!["n1".into()]).max_batch_entries;
    let f = figure8_with(false, batch, N1::StaysUp);
    assert_eq!(f.write_on_n1, None, "x=1 not acknowledged while n1 leads term 3");
    assert!(f.commit_n1 < 2, "commit {}", f.commit_n1);
    assert!(f.sim.violations.is_empty(), "{:?}", f.sim.violations);
}

/// A leader deposed before it learns that its entry reached a majority still answers its client
/// with the entry's result once a later leader commits it and the old leader applies it.
#[test]
fn s5_3_a_deposed_leaders_proposal_is_answered_when_a_later_leader_commits_it() {
    let mut sim = Sim::new(5, 9, |_| {});
    sim.tick_silently(&["n1", "n2", "n3", "n4", "n5"], 10);
    sim.hup("n1");
    sim.run(5);
    assert_eq!(sim.leader().as_deref(), Some("n1"));
    // Every follower stores the entry; n1 hears none of their answers and is then cut off.
    sim.drop_if = Some(Box::new(|e| e.to == "n1" && matches!(e.msg, Message::AppendResp { .. })));
    let req = sim.propose("n1", w("x", 7));
    sim.deliver_due();
    sim.drop_if = None;
    sim.isolate(&["n1"]);
    sim.tick_silently(&["n2", "n3", "n4", "n5"], 25);
    sim.hup("n2");
    assert!(sim.run_until(200, |s| s.node("n2").role() == Role::Leader), "n2 elected");
    assert_eq!(sim.reply(req), None, "not answered while cut off");
    sim.heal();
    assert_eq!(sim.wait(req, 200), Some(Reply::Done), "answered with the entry's result");
    assert_ne!(sim.node("n1").role(), Role::Leader);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

// ------------------------------------------------------------------ §7 snapshots

#[test]
fn s7_a_lagging_follower_catches_up_by_install_snapshot_and_restarts_from_it() {
    let mut sim = Sim::new(3, 3, |c| c.snapshot_entries = 20);
    let l = leader_of(&mut sim, 500);
    let f = sim.ids().into_iter().find(|id| *id != l).expect("follower");
    sim.run(5);
    sim.crash(&f);
    for i in 0..100 {
        write_ok(&mut sim, &format!("k{}", i % 7), i);
    }
    let lst = sim.node(&l).status();
    assert!(lst.snapshot_index >= 80, "leader compacted its log (snapshot at {})", lst.snapshot_index);
    sim.restart(&f);
    let caught_up = sim.run_until(500, |s| s.node(&f).status().applied_index >= lst.applied_index);
    assert!(caught_up, "follower did not catch up");
    let fst = sim.node(&f).status();
    assert!(fst.snapshot_index >= lst.snapshot_index, "follower installed the leader's snapshot");
    assert_eq!(sim.node(&f).kv(), sim.node(&l).kv());
    assert!(sim.disks[&f].snapshot.is_some(), "the installed snapshot was persisted");
    // Restart from the persisted snapshot and log.
    let kv = sim.node(&f).kv().clone();
    sim.crash(&f);
    sim.restart(&f);
    assert_eq!(sim.node(&f).status().applied_index, sim.disks[&f].snapshot.as_ref().expect("snap").index);
    assert!(sim.run_until(300, |s| s.node(&f).kv() == &kv && s.node(&f).status().applied_index >= lst.applied_index));
}

// ------------------------------------------------------------------ thesis §6.4 reads

/// Thesis §6.4: a deposed leader cut off from the majority cannot confirm a read index, so it
/// never answers with the old value. With the `stale-read` bug it does.
#[test]
fn s6_4_read_index_never_answers_from_a_deposed_leader_and_the_stale_read_bug_does() {
    for bug in [false, true] {
        let mut sim = Sim::new(5, 11, |c| c.bugs.stale_read = bug);
        write_ok(&mut sim, "k", 1);
        let old = sim.leader().expect("leader");
        sim.isolate(&[&old]);
        let ok = sim.run_until(1000, |s| s.nodes.iter().any(|(id, r)| *id != old && r.role() == Role::Leader));
        assert!(ok, "no new leader");
        let new = sim
            .nodes
            .iter()
            .find(|(id, r)| **id != old && r.role() == Role::Leader)
            .map(|(id, _)| id.clone())
            .expect("new");
        let req = sim.propose(&new, w("k", 2));
        assert_eq!(sim.wait(req, 200), Some(Reply::Done));
        let req = sim.read(&old, "k");
        let got = sim.wait(req, 200);
        if bug {
            assert_eq!(got, Some(Reply::Value(Some(1))), "stale-read bug: the deposed leader answers the old value");
        } else {
            assert!(
                matches!(got, Some(Reply::NotLeader { .. })),
                "read-index: the deposed leader refuses, got {got:?}"
            );
        }
        let req = sim.read(&new, "k");
        assert_eq!(sim.wait(req, 200), Some(Reply::Value(Some(2))));
    }
}

/// Thesis §6.4.1: lease reads are safe while clocks agree, because the lease (0.9 election
/// timeouts from a heartbeat a majority acknowledged) ends before followers can elect anyone.
/// When the old leader's clock is set back, or ran ahead earlier, its lease seems to hold on,
/// and it answers the old value after a new leader has accepted a write: the documented
/// clock-skew anomaly.
#[test]
fn s6_4_1_lease_reads_are_safe_with_honest_clocks_and_stale_after_leader_clock_skew() {
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Skew {
        None,
        /// Set back by 10 s while cut off.
        Back,
        /// Ahead by 10 s for a while, then reset, then cut off (the lease outlives the reset).
        AheadThenReset,
    }
    for skew in [Skew::None, Skew::Back, Skew::AheadThenReset] {
        let mut sim = Sim::new(5, 12, |c| c.read_mode = ReadMode::Lease);
        write_ok(&mut sim, "k", 1);
        let old = sim.leader().expect("leader");
        sim.run(5);
        let req = sim.read(&old, "k");
        assert_eq!(sim.wait(req, 20), Some(Reply::Value(Some(1))));
        if skew == Skew::AheadThenReset {
            *sim.clocks.get_mut(&old).expect("clock") += 10_000; // offset_ms +10000
            sim.run(10);
            *sim.clocks.get_mut(&old).expect("clock") -= 10_000; // reset
            sim.run(5);
        }
        sim.isolate(&[&old]);
        if skew == Skew::Back {
            *sim.clocks.get_mut(&old).expect("clock") -= 10_000; // offset_ms -10000
        }
        let ok = sim.run_until(1000, |s| s.nodes.iter().any(|(id, r)| *id != old && r.role() == Role::Leader));
        assert!(ok, "no new leader");
        let new = sim
            .nodes
            .iter()
            .find(|(id, r)| **id != old && r.role() == Role::Leader)
            .map(|(id, _)| id.clone())
            .expect("new");
        let req = sim.propose(&new, w("k", 2));
        assert_eq!(sim.wait(req, 200), Some(Reply::Done));
        let req = sim.read(&old, "k");
        let got = sim.wait(req, 200);
        if skew == Skew::None {
            assert!(matches!(got, Some(Reply::NotLeader { .. })), "honest lease: no stale read, got {got:?}");
        } else {
            assert_eq!(got, Some(Reply::Value(Some(1))), "{skew:?}: stale read of the old value");
        }
    }
}

/// Runs reads and unique-valued writes of one register at every node that believes it leads,
/// under loss, reordering, partitions and crashes; returns the linearizability violations
/// found. Raft's linearization order is log order, so with unique values a history is
/// linearizable iff every read returns a committed value whose log index is at least that of
/// every write acknowledged before the read began, and reads ordered in real time see
/// non-decreasing indices.
fn register_violations(seed: u64, tweak: impl Fn(&mut Config)) -> (Vec<String>, usize) {
    use rand::{Rng, SeedableRng};
    let mut sim = Sim::new(5, 300 + seed, tweak);
    sim.loss = 0.1;
    sim.max_delay = 2;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut writes: Vec<(ReqId, i64)> = Vec::new();
    let mut reads: Vec<ReqId> = Vec::new();
    let mut value = 0;
    for _round in 0..12 {
        sim.heal();
        let ids = sim.ids();
        match rng.random_range(0..3) {
            0 => {}
            1 => {
                // Cut off the current leader: the case where stale reads would show.
                if let Some(l) = sim.leader() {
                    sim.isolate(&[&l]);
                }
            }
            _ => {
                let a = ids[rng.random_range(0..ids.len())].clone();
                if sim.nodes.contains_key(&a) && sim.nodes.len() > 3 {
                    sim.crash(&a);
                }
            }
        }
        for _ in 0..40 {
            let leaders: Vec<NodeId> =
                sim.nodes.iter().filter(|(_, r)| r.role() == Role::Leader).map(|(id, _)| id.clone()).collect();
            for l in leaders {
                if rng.random_bool(0.5) {
                    value += 1;
                    writes.push((sim.propose(&l, w("r", value)), value));
                } else {
                    reads.push(sim.read(&l, "r"));
                }
            }
            sim.step();
        }
        for id in sim.ids() {
            if !sim.nodes.contains_key(&id) {
                sim.restart(&id);
            }
        }
    }
    sim.heal();
    sim.loss = 0.0;
    let l = leader_of(&mut sim, 2000);
    let req = sim.propose(&l, Command::Noop); // commits everything of earlier terms
    assert!(sim.wait(req, 500).is_some(), "final no-op not answered");
    let index_of: BTreeMap<i64, u64> = sim
        .node(&l)
        .log()
        .entries()
        .iter()
        .filter_map(|e| match &e.cmd {
            Command::Write { value, .. } if e.index <= sim.node(&l).status().commit_index => Some((*value, e.index)),
            _ => None,
        })
        .collect();
    let mut v = Vec::new();
    let mut acked_writes = Vec::new();
    for (req, val) in &writes {
        if sim.reply(*req) == Some(&Reply::Done) {
            match index_of.get(val) {
                Some(i) => acked_writes.push((sim.answered_at[req], *i)),
                None => v.push(format!("acknowledged write {val} is not committed")),
            }
        }
    }
    let mut done_reads = Vec::new();
    for req in &reads {
        let Some(Reply::Value(got)) = sim.reply(*req) else { continue };
        let idx = match got {
            None => 0,
            Some(x) => match index_of.get(x) {
                Some(i) => *i,
                None => {
                    v.push(format!("read returned {x}, which never committed"));
                    continue;
                }
            },
        };
        let (inv, ret) = (sim.invoked_at[req], sim.answered_at[req]);
        for (w_ret, w_idx) in &acked_writes {
            if *w_ret < inv && *w_idx > idx {
                v.push(format!("stale read at t={inv}: saw index {idx}, but a write at index {w_idx} was acknowledged at t={w_ret}"));
            }
        }
        done_reads.push((inv, ret, idx));
    }
    for (_, r1_ret, i1) in &done_reads {
        for (r2_inv, _, i2) in &done_reads {
            if r1_ret < r2_inv && i2 < i1 {
                v.push(format!(
                    "non-monotonic reads: index {i1} seen by t={r1_ret}, then index {i2} read from t={r2_inv}"
                ));
            }
        }
    }
    (v, done_reads.len())
}

#[test]
fn s6_4_register_histories_are_linearizable_under_random_faults() {
    let seeds: u64 = std::env::var("RAFT_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    for seed in 0..seeds {
        let (violations, reads) = register_violations(seed, |_| {});
        assert!(reads > 50, "seed {seed}: only {reads} reads answered; test too weak");
        assert!(violations.is_empty(), "seed {seed}: {violations:?}");
    }
}

#[test]
fn s6_4_the_stale_read_bug_is_caught_by_the_same_check() {
    let found = (0..6).any(|seed| !register_violations(seed, |c| c.bugs.stale_read = true).0.is_empty());
    assert!(found, "stale-read bug produced no linearizability violation in 6 seeds");
}

/// Thesis §6.4.1, lease safety across restarts: a follower may acknowledge a leader's heartbeat
/// (extending its lease), crash and restart with no memory of it, so a restarted node grants no
/// (pre-)vote during its first election timeout.
#[test]
fn s6_4_1_a_restarted_node_grants_no_vote_during_its_first_election_timeout() {
    let mut sim = Sim::new(3, 21, |_| {});
    let l = leader_of(&mut sim, 500);
    sim.run(5);
    let others: Vec<NodeId> = sim.ids().into_iter().filter(|id| *id != l).collect();
    let (a, b) = (others[0].clone(), others[1].clone());
    sim.isolate(&[&l]);
    sim.crash(&a);
    sim.restart(&a);
    sim.tick_silently(&[&b], 25); // b's own stickiness lapses; a has not ticked at all
    sim.hup(&b);
    sim.deliver_due();
    assert_ne!(sim.node(&b).role(), Role::Leader, "a just-restarted node helped elect a leader");
    sim.tick_silently(&[&a], 10);
    sim.hup(&b);
    sim.deliver_due();
    assert_eq!(sim.node(&b).role(), Role::Leader, "after its first election timeout it votes again");
}
