//! Transactions through the Raft core on the simulated network of [`super::sim`]: a committed
//! transaction is applied exactly once on every replica across leader crashes, partitions,
//! message loss and snapshots (its appends are neither lost nor duplicated).

use super::sim::Sim;
use super::*;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn append_txn(key: &str, value: i64) -> Command {
    let read = MicroOp::Read { key: key.into(), value: None };
    Command::Txn {
        reads_fixed: false,
        unchanged: Vec::new(),
        ops: vec![MicroOp::Append { key: key.into(), value }, read],
    }
}

/// Proposes one append transaction per step at each leader, with a fault every 40 steps.
fn faulty_rounds(sim: &mut Sim, seed: u64) -> Vec<(ReqId, String, i64)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut txns = Vec::new();
    let mut value = 0i64;
    for _round in 0..12 {
        sim.heal();
        let leader = sim.leader();
        match (rng.random_range(0..3), leader) {
            (0, Some(l)) if sim.nodes.len() > 3 => sim.crash(&l),
            (1, Some(l)) => sim.isolate(&[&l]),
            _ => {}
        }
        for _ in 0..40 {
            let leaders: Vec<NodeId> =
                sim.nodes.iter().filter(|(_, r)| r.role() == Role::Leader).map(|(id, _)| id.clone()).collect();
            for l in leaders {
                value += 1;
                let key = format!("k{}", value % 3);
                txns.push((sim.propose(&l, append_txn(&key, value)), key, value));
            }
            sim.step();
        }
        for id in sim.ids() {
            if !sim.nodes.contains_key(&id) {
                sim.restart(&id);
            }
        }
    }
    txns
}

#[test]
fn committed_transactions_survive_leader_failover_exactly_once() {
    for seed in 0..4 {
        let mut sim = Sim::new(5, 300 + seed, |c| c.snapshot_entries = 50);
        sim.loss = 0.1;
        sim.max_delay = 3;
        let txns = faulty_rounds(&mut sim, seed);
        sim.heal();
        sim.loss = 0.0;
        let converged = sim.run_until(3000, |s| {
            let sts: Vec<Status> = s.nodes.values().map(|r| r.status()).collect();
            s.leader().is_some()
                && sts.iter().all(|st| st.applied_index == sts[0].applied_index && st.applied_index == st.last_index)
        });
        assert!(converged, "seed {seed}: replicas did not converge");
        let lists: Vec<&BTreeMap<String, Vec<i64>>> = sim.nodes.values().map(|r| r.lists()).collect();
        assert!(lists.iter().all(|l| *l == lists[0]), "seed {seed}: replicas' lists differ");
        let mut seen = std::collections::BTreeSet::new();
        for (key, list) in lists[0] {
            for v in list {
                assert!(seen.insert(*v), "seed {seed}: {v} appended twice (at {key})");
            }
        }
        let mut acked = 0;
        for (req, key, value) in &txns {
            let Some(Reply::Txn { ops }) = sim.reply(*req) else {
                continue;
            };
            acked += 1;
            assert!(lists[0][key].contains(value), "seed {seed}: acknowledged append {value} to {key} lost");
            // The transaction's own read shows its append last: it saw its own write.
            let MicroOp::Read { value: Some(TxnValue::List(l)), .. } = &ops[1] else {
                panic!("seed {seed}: bad reply {ops:?}")
            };
            assert_eq!(l.last(), Some(value), "seed {seed}: read did not see the transaction's append");
        }
        assert!(acked > 50, "seed {seed}: only {acked} transactions acknowledged; test too weak");
        assert!(sim.nodes.values().any(|r| r.status().snapshot_index > 0), "seed {seed}: no snapshot taken");
    }
}
