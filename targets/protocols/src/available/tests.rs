//! The available replica: HLC stamps never go back and pass every stamp seen; merge is a join
//! (replicas converge after exchanging everything, in any order, with duplicates); sets lose no
//! add; the anti-entropy walk visits every slot within its bound.

use super::*;
use proptest::prelude::*;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

#[derive(Clone, Debug)]
enum Step {
    Write(usize, u8, i64, i64),
    Add(usize, u8, i64),
    /// Replica `a` merges every entry of replica `b`.
    Exchange(usize, usize),
    /// Replica `a` merges one anti-entropy batch of `b` (small bound).
    Batch(usize, usize, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3usize, 0..3u8, -50..50i64, 0..100i64).prop_map(|(n, k, t, v)| Step::Write(n, k, t, v)),
        (0..3usize, 0..2u8, 0..1000i64).prop_map(|(n, k, e)| Step::Add(n, k, e)),
        (0..3usize, 0..3usize).prop_map(|(a, b)| Step::Exchange(a, b)),
        (0..3usize, 0..3usize, 0..5u8).prop_map(|(a, b, c)| Step::Batch(a, b, c)),
    ]
}

fn exchange(rs: &mut [Replica], a: usize, b: usize) {
    let entries: Vec<_> = rs[b].slots.iter().map(|(s, e)| (s.clone(), e.clone())).collect();
    for (s, e) in &entries {
        rs[a].merge(s, e);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn replicas_converge_and_lose_no_add(steps in proptest::collection::vec(step(), 1..60), order in Just(vec![(0usize, 1usize), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]).prop_shuffle()) {
        let mut rs: Vec<Replica> = NODES.iter().map(|n| Replica::new(n)).collect();
        let mut added: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        let mut cursors: Vec<Option<Slot>> = vec![None; 3];
        for s in &steps {
            match *s {
                Step::Write(n, k, t, v) => {
                    let seen = rs[n].slots.values().filter_map(|e| match e { Entry::Register { stamp, .. } => Some(stamp.clone()), _ => None }).max();
                    let (slot, e) = rs[n].write(&format!("k{k}"), v, t);
                    let Entry::Register { stamp, .. } = &e else { unreachable!() };
                    // The new stamp is above everything this replica has seen, whatever its clock says.
                    prop_assert!(seen.is_none_or(|s| *stamp > s));
                    prop_assert_eq!(rs[n].read(slot.key()), Some(v));
                }
                Step::Add(n, k, e) => {
                    rs[n].set_add(&format!("s{k}"), e);
                    added.entry(format!("s{k}")).or_default().insert(e);
                }
                Step::Exchange(a, b) => exchange(&mut rs, a, b),
                Step::Batch(a, b, c) => {
                    let (batch, next) = rs[b].batch_after(cursors[a].as_ref(), 1 + c as usize);
                    cursors[a] = next;
                    for (s, e) in &batch {
                        rs[a].merge(s, e);
                    }
                }
            }
        }
        // A full exchange in a random order, twice over (duplicates are harmless), converges.
        for _ in 0..2 {
            for &(a, b) in &order {
                exchange(&mut rs, a, b);
            }
        }
        prop_assert_eq!(&rs[0].slots, &rs[1].slots);
        prop_assert_eq!(&rs[1].slots, &rs[2].slots);
        for (k, els) in &added {
            prop_assert_eq!(rs[0].set_read(k), els.iter().copied().collect::<Vec<_>>());
        }
    }
}

#[test]
fn hlc_never_goes_back_with_the_wall_clock_and_passes_merged_stamps() {
    let mut a = Replica::new("n1");
    let (_, e1) = a.write("k", 1, 1000);
    // The wall clock jumps back 10 s: the stamp still grows (same l, higher c).
    let (_, e2) = a.write("k", 2, -9000);
    let (Entry::Register { stamp: s1, .. }, Entry::Register { stamp: s2, .. }) = (&e1, &e2) else { panic!() };
    assert!(s2 > s1 && s2.l_ms == 1000 && s2.c == 1);
    // A node whose clock is far behind still supersedes what it has merged.
    let mut b = Replica::new("n2");
    b.merge(&Slot::Register("k".into()), &e2);
    b.write("k", 3, 0);
    assert_eq!(b.read("k"), Some(3));
    // Concurrent writes: the greater stamp wins on both sides, whatever the merge order.
    let mut c = Replica::new("n3");
    let (slot, e3) = c.write("k", 4, 5000);
    a.merge(&slot, &e3);
    b.merge(&slot, &b.slots[&slot].clone());
    b.merge(&slot, &e3);
    assert_eq!((a.read("k"), b.read("k")), (Some(4), Some(4)));
    // An entry of the wrong kind for its slot changes nothing.
    assert!(!a.merge(&Slot::Set("k".into()), &e3));
    assert_eq!(a.set_read("k"), Vec::<i64>::new());
}

#[test]
fn the_anti_entropy_walk_visits_every_slot_within_its_bound_and_wraps() {
    let mut r = Replica::new("n1");
    for i in 0..10 {
        r.write(&format!("k{i}"), i, 1);
    }
    for e in 0..7 {
        r.set_add("big", e);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..20 {
        let (batch, next) = r.batch_after(cursor.as_ref(), 4);
        let items: usize = batch.iter().map(|(_, e)| e.items()).sum();
        // At most 4 items, except a single entry larger than the bound (the 7-element set).
        assert!(items <= 4 || batch.len() == 1, "{batch:?}");
        seen.extend(batch.into_iter().map(|(s, _)| s));
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "the walk must wrap");
    assert_eq!(seen, r.slots.keys().cloned().collect::<Vec<_>>());
    assert_eq!(Replica::new("n1").batch_after(None, 4), (vec![], None));
}

#[test]
fn a_replica_round_trips_through_json() {
    let mut r = Replica::new("n1");
    r.write("k", 1, 5);
    r.set_add("k", 2);
    let back: Replica = serde_json::from_slice(&serde_json::to_vec(&r).expect("serializes")).expect("parses");
    assert_eq!(back, r);
}
