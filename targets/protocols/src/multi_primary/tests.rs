//! The multi-primary replica: merge is a join in both modes (replicas converge after any
//! exchange order); vclock mode loses no set add and keeps at most one sibling per writer;
//! LWW mode loses acknowledged adds under clock skew (the Riak demonstration, deterministic).

use super::*;
use proptest::prelude::*;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn members() -> BTreeSet<String> {
    NODES.iter().map(|s| s.to_string()).collect()
}

#[derive(Clone, Debug)]
enum Step {
    Write(usize, u8, i64, i64),
    Add(usize, u8, i64, i64),
    /// Replica `a` merges every entry of replica `b`.
    Exchange(usize, usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3usize, 0..2u8, 0..20i64, 0..100i64).prop_map(|(n, k, t, v)| Step::Write(n, k, t, v)),
        (0..3usize, 0..2u8, 0..20i64, 0..1000i64).prop_map(|(n, k, t, e)| Step::Add(n, k, t, e)),
        (0..3usize, 0..3usize).prop_map(|(a, b)| Step::Exchange(a, b)),
    ]
}

fn exchange(rs: &mut [Replica], a: usize, b: usize) {
    let entries: Vec<_> = rs[b].slots.iter().map(|(s, e)| (s.clone(), e.clone())).collect();
    for (s, e) in &entries {
        rs[a].merge(s, e);
    }
}

/// Runs `steps` (timestamps from each step: arbitrary skew) and a full exchange in `order`,
/// twice; returns the replicas and every acknowledged add.
fn play(resolve: Resolve, steps: &[Step], order: &[(usize, usize)]) -> (Vec<Replica>, BTreeMap<String, BTreeSet<i64>>) {
    let mut rs: Vec<Replica> = NODES.iter().map(|n| Replica::new(n, resolve)).collect();
    let mut added: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for s in steps {
        match *s {
            Step::Write(n, k, t, v) => {
                rs[n].write(&format!("k{k}"), v, t);
            }
            Step::Add(n, k, t, e) => {
                let (_, pushed) = rs[n].set_add(&format!("s{k}"), e, t);
                pushed.validate(&members(), resolve).expect("own versions are valid");
                added.entry(format!("s{k}")).or_default().insert(e);
            }
            Step::Exchange(a, b) => exchange(&mut rs, a, b),
        }
        for r in &rs {
            for (slot, e) in &r.slots {
                // At most one sibling per writer, so at most one per member.
                assert!(e.versions() <= NODES.len(), "{slot:?}: {e:?}");
                if resolve == Resolve::Lww {
                    assert!(e.versions() <= 1);
                }
            }
        }
    }
    for _ in 0..2 {
        for &(a, b) in order {
            exchange(&mut rs, a, b);
        }
    }
    (rs, added)
}

fn orders() -> impl Strategy<Value = Vec<(usize, usize)>> {
    Just(vec![(0usize, 1usize), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]).prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn vclock_mode_converges_and_loses_no_add(steps in proptest::collection::vec(step(), 1..50), order in orders()) {
        let (rs, added) = play(Resolve::Vclock, &steps, &order);
        prop_assert_eq!(&rs[0].slots, &rs[1].slots);
        prop_assert_eq!(&rs[1].slots, &rs[2].slots);
        for (k, els) in &added {
            prop_assert_eq!(rs[0].set_read(k), els.iter().copied().collect::<Vec<_>>());
        }
    }

    #[test]
    fn lww_mode_converges(steps in proptest::collection::vec(step(), 1..50), order in orders()) {
        let (rs, added) = play(Resolve::Lww, &steps, &order);
        prop_assert_eq!(&rs[0].slots, &rs[1].slots);
        prop_assert_eq!(&rs[1].slots, &rs[2].slots);
        // Whatever survived was added by someone.
        for k in added.keys() {
            prop_assert!(rs[0].set_read(k).iter().all(|e| added[k].contains(e)));
        }
    }

    /// The sibling merge is a join: merging entries in any order, any grouping, twice, gives
    /// the same siblings.
    #[test]
    fn sibling_merge_is_commutative_associative_idempotent(steps in proptest::collection::vec(step(), 1..40)) {
        // Independent replicas (no exchange): their entries are concurrent or ordered by writer.
        let steps: Vec<Step> = steps.into_iter().filter(|s| !matches!(s, Step::Exchange(..))).collect();
        let (rs, _) = play(Resolve::Vclock, &steps, &[]);
        let slots: BTreeSet<Slot> = rs.iter().flat_map(|r| r.slots.keys().cloned()).collect();
        for slot in &slots {
            let es: Vec<&Entry> = rs.iter().filter_map(|r| r.slots.get(slot)).collect();
            let join = |ix: &[usize]| {
                let mut r = Replica::new("n9", Resolve::Vclock);
                for &i in ix {
                    if let Some(e) = es.get(i) {
                        r.merge(slot, e);
                    }
                }
                r.slots.get(slot).cloned()
            };
            let a = join(&[0, 1, 2]);
            prop_assert_eq!(&a, &join(&[2, 1, 0]));
            prop_assert_eq!(&a, &join(&[1, 0, 2, 1, 0]));
            prop_assert_eq!(&a, &join(&[0, 0, 2, 1, 2]));
        }
    }
}

/// Riak's classic: n2's clock is 10 s behind. n1 adds 1; n2 reads {1} (replicated) and adds
/// 2, stamping its version 10 s before n1's: LWW keeps n1's {1} and the acknowledged 2 is
/// lost on every replica, n2's own included. Vector clocks see n2's version descends from n1's
/// and keep it.
#[test]
fn lww_loses_an_acknowledged_add_under_clock_skew_and_vclock_keeps_it() {
    for resolve in [Resolve::Lww, Resolve::Vclock] {
        let mut n1 = Replica::new("n1", resolve);
        let mut n2 = Replica::new("n2", resolve);
        let (slot, v1) = n1.set_add("s", 1, 100_000);
        n2.merge(&slot, &v1);
        let (_, v2) = n2.set_add("s", 2, 90_000);
        n1.merge(&slot, &v2);
        let expect = if resolve == Resolve::Lww { vec![1] } else { vec![1, 2] };
        assert_eq!(n1.set_read("s"), expect, "{resolve:?}");
        assert_eq!(n2.set_read("s"), expect, "{resolve:?}");
    }
}

/// Concurrent adds on two nodes (no skew): LWW keeps one, vclock keeps both as siblings, the
/// read is their union and the next add replaces them with one version holding everything.
#[test]
fn concurrent_adds_become_siblings_and_the_next_write_merges_them() {
    let mut n1 = Replica::new("n1", Resolve::Vclock);
    let mut n2 = Replica::new("n2", Resolve::Vclock);
    let (slot, a) = n1.set_add("s", 1, 10);
    let (_, b) = n2.set_add("s", 2, 11);
    n1.merge(&slot, &b);
    n2.merge(&slot, &a);
    assert_eq!((n1.siblings(&slot), n1.set_read("s")), (2, vec![1, 2]));
    assert_eq!(n1.slots, n2.slots);
    let (_, c) = n2.set_add("s", 3, 12);
    assert_eq!(n2.siblings(&slot), 1);
    n1.merge(&slot, &c);
    assert_eq!((n1.siblings(&slot), n1.set_read("s")), (1, vec![1, 2, 3]));
    // Registers: siblings are kept; a read returns the greatest stamp's value.
    let (rs, x) = n1.write("k", 5, 50);
    let (_, y) = n2.write("k", 6, 40);
    n1.merge(&rs, &y);
    n2.merge(&rs, &x);
    assert_eq!((n1.read("k"), n2.read("k"), n1.siblings(&rs)), (Some(5), Some(5), 2));
    n2.write("k", 7, 1);
    assert_eq!((n2.read("k"), n2.siblings(&rs)), (Some(7), 1));

    let mut m1 = Replica::new("n1", Resolve::Lww);
    let mut m2 = Replica::new("n2", Resolve::Lww);
    let (slot, a) = m1.set_add("s", 1, 10);
    let (_, b) = m2.set_add("s", 2, 11);
    m1.merge(&slot, &b);
    m2.merge(&slot, &a);
    assert_eq!((m1.set_read("s"), m2.set_read("s")), (vec![2], vec![2]));
}

#[test]
fn received_entries_are_validated() {
    let m = members();
    let v = |node: &str, clock: &[(&str, u64)]| Version {
        stamp: Stamp { ts_ms: 1, node: node.into(), seq: 1 },
        clock: clock.iter().map(|(n, c)| (n.to_string(), *c)).collect::<BTreeMap<_, _>>().into(),
        value: 1i64,
    };
    assert!(Entry::Register(vec![v("n1", &[("n1", 1)])]).validate(&m, Resolve::Vclock).is_ok());
    assert!(Entry::Register(vec![]).validate(&m, Resolve::Vclock).unwrap_err().contains("at least one"));
    assert!(Entry::Register(vec![v("n7", &[("n7", 1)])])
        .validate(&m, Resolve::Vclock)
        .unwrap_err()
        .contains("not a member"));
    assert!(Entry::Register(vec![v("n1", &[("n1", 1), ("x", 2)])])
        .validate(&m, Resolve::Vclock)
        .unwrap_err()
        .contains("not a member"));
    assert!(Entry::Register(vec![v("n1", &[("n2", 1)])])
        .validate(&m, Resolve::Vclock)
        .unwrap_err()
        .contains("does not count"));
    assert!(Entry::Register(vec![v("n1", &[]), v("n2", &[])])
        .validate(&m, Resolve::Lww)
        .unwrap_err()
        .contains("at most 1"));
    assert!(Entry::Register(vec![v("n1", &[("n1", 1)]); 4])
        .validate(&m, Resolve::Vclock)
        .unwrap_err()
        .contains("at most 3"));
    // The wrong kind for the slot is ignored by merge.
    let mut r = Replica::new("n1", Resolve::Vclock);
    assert!(!r.merge(&Slot::Set("k".into()), &Entry::Register(vec![v("n1", &[("n1", 1)])])));
}

#[test]
fn a_replica_round_trips_through_json() {
    for resolve in [Resolve::Lww, Resolve::Vclock] {
        let mut r = Replica::new("n1", resolve);
        r.write("k", 1, 5);
        r.set_add("k", 2, 6);
        let back: Replica = serde_json::from_slice(&serde_json::to_vec(&r).expect("serializes")).expect("parses");
        assert_eq!(back, r);
    }
}
