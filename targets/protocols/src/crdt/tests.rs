//! Laws of the CvRDTs (Shapiro et al. 2011, §2.2: a state-based object converges when its
//! states form a join-semilattice and merge is the join): merge is commutative, associative and
//! idempotent, and monotone (updates only move a state up). Plus the specification of each
//! type's queries, and the `bad-merge` bug breaking idempotence.

use super::*;
use proptest::prelude::*;

const REPLICAS: [&str; 3] = ["n1", "n2", "n3"];

/// An update on a [`Store`], issued at one replica.
#[derive(Clone, Debug)]
enum Update {
    SetAdd(usize, u8, i64),
    SetRemove(u8, i64),
    CounterAdd(usize, u8, i64),
    RegisterWrite(usize, u8, i64, i64),
}

fn update() -> impl Strategy<Value = Update> {
    prop_oneof![
        (0..3usize, 0..2u8, 0..6i64).prop_map(|(r, k, e)| Update::SetAdd(r, k, e)),
        (0..2u8, 0..6i64).prop_map(|(k, e)| Update::SetRemove(k, e)),
        (0..3usize, 0..2u8, -5..10i64).prop_map(|(r, k, d)| Update::CounterAdd(r, k, d)),
        (0..3usize, 0..2u8, 0..20i64, 0..5i64).prop_map(|(r, k, t, v)| Update::RegisterWrite(r, k, t, v)),
    ]
}

fn apply(s: &mut Store, u: &Update) {
    match u {
        Update::SetAdd(r, k, e) => s.set_add(REPLICAS[*r], &format!("s{k}"), *e),
        Update::SetRemove(k, e) => s.set_remove(&format!("s{k}"), *e),
        Update::CounterAdd(r, k, d) => s.counter_add(REPLICAS[*r], &format!("c{k}"), *d),
        Update::RegisterWrite(r, k, t, v) => s.register_write(REPLICAS[*r], &format!("r{k}"), *t, *v),
    }
}

/// A state reached by a sequence of updates issued at any of the replicas. (Two such states
/// drawn independently may reuse an OR-Set tag, which a real run never does; the laws hold
/// regardless, as every component merges by union or maximum.)
fn reachable(bugs: Bugs) -> impl Strategy<Value = Store> {
    proptest::collection::vec(update(), 0..12).prop_map(move |us| {
        let mut s = Store::new(bugs);
        for u in &us {
            apply(&mut s, u);
        }
        s
    })
}

fn merged(a: &Store, b: &Store) -> Store {
    let mut m = a.clone();
    m.merge(b);
    m
}

proptest! {
    #[test]
    fn merge_is_commutative(a in reachable(Bugs::default()), b in reachable(Bugs::default())) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
    }

    #[test]
    fn merge_is_associative(a in reachable(Bugs::default()), b in reachable(Bugs::default()), c in reachable(Bugs::default())) {
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    }

    #[test]
    fn merge_is_idempotent(a in reachable(Bugs::default()), b in reachable(Bugs::default())) {
        prop_assert_eq!(merged(&a, &a), a.clone());
        let ab = merged(&a, &b);
        prop_assert_eq!(merged(&ab, &b), ab);
    }

    /// Merge is an upper bound: everything each side had is still there (sets keep their
    /// elements unless removed on either side; counters' per-replica entries never decrease).
    #[test]
    fn merge_is_an_upper_bound(a in reachable(Bugs::default()), b in reachable(Bugs::default())) {
        let m = merged(&a, &b);
        prop_assert_eq!(merged(&m, &a), m.clone());
        prop_assert_eq!(merged(&m, &b), m.clone());
        for (k, c) in a.counters.iter().chain(b.counters.iter()) {
            for (r, n) in &c.p.counts {
                prop_assert!(m.counters[k].p.counts[r] >= *n);
            }
        }
    }

    /// Three replicas, each with its own updates, gossiping in a random order: once every pair
    /// has exchanged states in both directions (a full round after the last update), all agree
    /// and the counters equal the sum of all deltas.
    #[test]
    fn replicas_converge_after_a_full_exchange(
        per_replica in proptest::collection::vec(proptest::collection::vec((0..2u8, -5..10i64, 0..6i64), 0..8), 3),
        order in proptest::collection::vec((0..3usize, 0..3usize), 0..10),
    ) {
        let mut nodes: Vec<Store> = (0..3).map(|_| Store::new(Bugs::default())).collect();
        let mut sums = [0i64; 2];
        let mut elements = [BTreeSet::new(), BTreeSet::new()];
        for (r, ups) in per_replica.iter().enumerate() {
            for &(k, d, e) in ups {
                nodes[r].counter_add(REPLICAS[r], &format!("c{k}"), d);
                nodes[r].set_add(REPLICAS[r], &format!("s{k}"), e);
                sums[k as usize] += d;
                elements[k as usize].insert(e);
            }
        }
        for &(from, to) in &order {
            let s = nodes[from].clone();
            nodes[to].merge(&s);
        }
        for from in 0..3 {
            for to in 0..3 {
                let s = nodes[from].clone();
                nodes[to].merge(&s);
            }
        }
        for from in 0..3 {
            for to in 0..3 {
                let s = nodes[from].clone();
                nodes[to].merge(&s);
            }
        }
        prop_assert_eq!(&nodes[0], &nodes[1]);
        prop_assert_eq!(&nodes[1], &nodes[2]);
        for k in 0..2 {
            prop_assert_eq!(nodes[0].counter_read(&format!("c{k}")), sums[k]);
            prop_assert_eq!(nodes[0].set_read(&format!("s{k}")), elements[k].iter().copied().collect::<Vec<_>>());
        }
    }
}

#[test]
fn g_counter_value_is_the_sum_of_replica_entries_and_merge_takes_the_max() {
    let mut a = GCounter::default();
    a.increment("n1", 3);
    let mut b = a.clone();
    b.increment("n2", 4);
    a.increment("n1", 1);
    a.merge(&b);
    assert_eq!(a.value(), 8);
    a.merge(&b);
    assert_eq!(a.value(), 8, "merging the same state twice changes nothing");
}

#[test]
fn bad_merge_is_not_idempotent_and_overcounts() {
    let bugs = Bugs { bad_merge: true };
    let mut a = PnCounter::with_bugs(bugs);
    a.add("n1", 5);
    let mut b = PnCounter::with_bugs(bugs);
    b.merge(&a);
    assert_eq!(b.value(), 5, "the first merge into an empty state is still right");
    a.merge(&b);
    assert_eq!(a.value(), 10, "gossip echoing n1's own entry back doubles it");
    let mut g = GCounter::with_bugs(bugs);
    g.increment("n1", 1);
    let s = g.clone();
    g.merge(&s);
    assert_ne!(g, s, "bad-merge breaks idempotence");
}

#[test]
fn pn_counter_handles_negative_deltas() {
    let mut c = PnCounter::default();
    c.add("n1", 5);
    c.add("n2", -7);
    assert_eq!(c.value(), -2);
    let mut d = PnCounter::default();
    d.add("n2", -1);
    d.merge(&c);
    assert_eq!(d.value(), -2, "n2's decrement entry is max(1, 7) = 7");
}

#[test]
fn or_set_concurrent_add_survives_a_remove_that_did_not_observe_it() {
    let mut a = OrSet::default();
    a.add("n1", 1);
    let mut b = a.clone();
    b.remove(1); // b saw n1's add
    a.add("n1", 1); // a fresh tag b has not seen
    let mut m = a.clone();
    m.merge(&b);
    assert_eq!(m.read(), vec![1], "add wins over a concurrent remove");
    let mut only_seen = OrSet::default();
    only_seen.add("n2", 2);
    let mut r = only_seen.clone();
    r.remove(2);
    only_seen.merge(&r);
    assert!(only_seen.read().is_empty(), "a remove of every observed tag removes the element");
}

#[test]
fn or_set_never_reuses_a_tag_after_merging_its_own_state_back() {
    let mut a = OrSet::default();
    a.add("n1", 1);
    let mut b = a.clone();
    b.remove(1);
    a.merge(&b);
    // a's next add must get a tag b never tombstoned.
    a.add("n1", 1);
    assert!(a.contains(1));
}

#[test]
fn lww_register_later_timestamp_wins_and_skew_loses_writes() {
    let mut a = LwwRegister::default();
    a.write("n1", 100, 1);
    let mut b = LwwRegister::default();
    // n2's clock is 1 s behind: its write, made later in real time, carries a smaller stamp.
    b.write("n2", 50, 2);
    let mut m = a.clone();
    m.merge(&b);
    assert_eq!(m.read(), Some(1));
    let mut m2 = b.clone();
    m2.merge(&a);
    assert_eq!(m2, m);
    // Equal timestamps: the greater replica id wins, the same way on both sides.
    let mut c = LwwRegister::default();
    c.write("n3", 100, 3);
    let mut x = a.clone();
    x.merge(&c);
    let mut y = c.clone();
    y.merge(&a);
    assert_eq!(x.read(), Some(3));
    assert_eq!(x, y);
}

#[test]
fn lww_write_supersedes_what_the_replica_has_seen() {
    // Two writes in the same millisecond on one node: the second wins.
    let mut r = LwwRegister::default();
    r.write("n1", 100, 5);
    r.write("n1", 100, 3);
    assert_eq!(r.read(), Some(3));
    // A node with a slow clock that has seen a fast clock's write still overwrites it.
    let mut fast = LwwRegister::default();
    fast.write("n2", 10_000, 1);
    let mut slow = fast.clone();
    slow.write("n1", 50, 2);
    let mut m = fast.clone();
    m.merge(&slow);
    assert_eq!(m.read(), Some(2), "causally later write wins");
}

proptest! {
    /// G-Set and LWW-Register alone (the store's tests cover the OR-Set and the counters).
    #[test]
    fn g_set_and_lww_merges_are_semilattice_joins(
        a in proptest::collection::btree_set(0..20i64, 0..8),
        b in proptest::collection::btree_set(0..20i64, 0..8),
        c in proptest::collection::btree_set(0..20i64, 0..8),
        ws in proptest::collection::vec((0..3usize, 0..50i64, 0..5i64), 0..9),
    ) {
        let set = |e: &BTreeSet<i64>| GSet { elements: e.clone() };
        let j = |x: &GSet, y: &GSet| { let mut m = x.clone(); m.merge(y); m };
        let (a, b, c) = (set(&a), set(&b), set(&c));
        prop_assert_eq!(j(&a, &b), j(&b, &a));
        prop_assert_eq!(j(&j(&a, &b), &c), j(&a, &j(&b, &c)));
        prop_assert_eq!(j(&a, &a), a.clone());
        let mut regs = vec![LwwRegister::default(); 3];
        for (k, &(r, t, v)) in ws.iter().enumerate() {
            regs[k % 3].write(REPLICAS[r], t, v);
        }
        let jr = |x: &LwwRegister, y: &LwwRegister| { let mut m = x.clone(); m.merge(y); m };
        prop_assert_eq!(jr(&regs[0], &regs[1]), jr(&regs[1], &regs[0]));
        prop_assert_eq!(jr(&jr(&regs[0], &regs[1]), &regs[2]), jr(&regs[0], &jr(&regs[1], &regs[2])));
        prop_assert_eq!(jr(&regs[0], &regs[0]), regs[0].clone());
    }
}

#[test]
fn g_set_merge_is_union() {
    let mut a = GSet::default();
    a.add(1);
    let mut b = GSet::default();
    b.add(2);
    a.merge(&b);
    assert_eq!(a.read(), vec![1, 2]);
}

#[test]
fn store_round_trips_through_json() {
    let mut s = Store::new(Bugs::default());
    s.set_add("n1", "s", 4);
    s.counter_add("n2", "c", -3);
    s.register_write("n3", "r", 7, 9);
    let j = serde_json::to_string(&s).unwrap();
    let t: Store = serde_json::from_str(&j).unwrap();
    assert_eq!(s, t);
}

/// Three replicas gossiping full states asynchronously (one directed exchange at a time, in a
/// seeded random order) with bad-merge never settle: every exchange re-adds what the receiver
/// knew, values keep growing past 2^64 (wrapping) with no common fixed point, and the replicas
/// disagree — what the convergence checker sees after a heal.
#[test]
fn bad_merge_replicas_never_converge_even_past_overflow() {
    use rand::{Rng, SeedableRng};
    let bugs = Bugs { bad_merge: true };
    let mut nodes: Vec<Store> = (0..3).map(|_| Store::new(bugs)).collect();
    nodes[0].counter_add("n1", "c", 3);
    nodes[1].counter_add("n2", "c", 1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (mut agree, mut checks, mut overflowed) = (0, 0, false);
    for step in 0..3000 {
        let from = rng.random_range(0..3);
        let to = (from + rng.random_range(1..3)) % 3;
        let s = nodes[from].clone();
        let before = nodes[to].counter_read("c");
        nodes[to].merge(&s);
        assert_ne!(
            nodes[to].counter_read("c"),
            before,
            "step {step}: a bad merge of a non-empty state changes the value"
        );
        overflowed |= nodes[to].counters["c"].p.counts.values().any(|&c| c > u64::MAX / 2);
        if step >= 10 {
            checks += 1;
            let v: Vec<i64> = nodes.iter().map(|n| n.counter_read("c")).collect();
            agree += (v[0] == v[1] && v[1] == v[2]) as usize;
        }
    }
    assert!(overflowed, "the run reaches overflow");
    assert_eq!(agree, 0, "replicas agreed at {agree} of {checks} checkpoints");
    // The correct merge settles on 4 after one exchange.
    let mut ok: Vec<Store> = (0..3).map(|_| Store::new(Bugs::default())).collect();
    ok[0].counter_add("n1", "c", 3);
    ok[1].counter_add("n2", "c", 1);
    let states = ok.clone();
    for n in ok.iter_mut() {
        for s in &states {
            n.merge(s);
        }
    }
    assert!(ok.iter().all(|n| n.counter_read("c") == 4));
}
