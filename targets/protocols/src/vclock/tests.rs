//! The laws of vector clocks, property-tested on clocks over three nodes with small counts (so
//! that equal, ordered and concurrent pairs all occur often).

use super::*;
use proptest::prelude::*;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn clock() -> impl Strategy<Value = VClock> {
    proptest::collection::vec(0..4u64, 3)
        .prop_map(|v| NODES.iter().zip(v).map(|(n, c)| (n.to_string(), c)).collect::<BTreeMap<_, _>>().into())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compare_is_antisymmetric_and_equal_means_equal(a in clock(), b in clock()) {
        prop_assert_eq!(a.compare(&b), b.compare(&a).reverse());
        prop_assert_eq!(a.compare(&b) == Causality::Equal, a == b);
        prop_assert_eq!(a.compare(&a), Causality::Equal);
    }

    #[test]
    fn before_is_transitive(a in clock(), b in clock(), c in clock()) {
        if a.compare(&b) == Causality::Before && b.compare(&c) == Causality::Before {
            prop_assert_eq!(a.compare(&c), Causality::Before);
        }
    }

    #[test]
    fn concurrent_means_neither_descends(a in clock(), b in clock()) {
        prop_assert_eq!(a.compare(&b) == Causality::Concurrent, !a.descends(&b) && !b.descends(&a));
    }

    #[test]
    fn merge_is_commutative_associative_idempotent(a in clock(), b in clock(), c in clock()) {
        prop_assert_eq!(a.merged(&b), b.merged(&a));
        prop_assert_eq!(a.merged(&b).merged(&c), a.merged(&b.merged(&c)));
        prop_assert_eq!(a.merged(&a), a.clone());
    }

    #[test]
    fn merge_is_the_least_upper_bound(a in clock(), b in clock(), c in clock()) {
        let m = a.merged(&b);
        prop_assert!(m.descends(&a) && m.descends(&b));
        if c.descends(&a) && c.descends(&b) {
            prop_assert!(c.descends(&m));
        }
        // Merging with something earlier changes nothing.
        if a.descends(&b) {
            prop_assert_eq!(m, a.clone());
        }
    }

    #[test]
    fn increment_moves_strictly_after_and_past_everything_merged(a in clock(), b in clock(), n in 0..3usize) {
        let mut w = a.merged(&b);
        w.increment(NODES[n]);
        prop_assert_eq!(w.compare(&a), Causality::After);
        prop_assert_eq!(w.compare(&b), Causality::After);
        prop_assert_eq!(w.get(NODES[n]), a.get(NODES[n]).max(b.get(NODES[n])) + 1);
    }
}

#[test]
fn the_four_relations_on_examples() {
    let c =
        |v: &[(&str, u64)]| -> VClock { v.iter().map(|(n, c)| (n.to_string(), *c)).collect::<BTreeMap<_, _>>().into() };
    assert_eq!(c(&[("n1", 1)]).compare(&c(&[("n1", 2)])), Causality::Before);
    assert_eq!(c(&[("n1", 2), ("n2", 1)]).compare(&c(&[("n1", 2)])), Causality::After);
    assert_eq!(c(&[("n1", 1)]).compare(&c(&[("n2", 1)])), Causality::Concurrent);
    // A zero entry is a missing entry, on parse too.
    assert_eq!(c(&[("n1", 1), ("n2", 0)]), c(&[("n1", 1)]));
    let parsed: VClock = serde_json::from_str(r#"{"n1": 1, "n2": 0}"#).expect("parses");
    assert_eq!(parsed, c(&[("n1", 1)]));
    assert_eq!(serde_json::to_string(&parsed).expect("serializes"), r#"{"n1":1}"#);
    assert_eq!(VClock::new().compare(&VClock::new()), Causality::Equal);
}
