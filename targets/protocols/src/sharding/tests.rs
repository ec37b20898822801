use super::*;

/// The register workload's key names (`k` and a generation-slot number).
fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

fn shares(s: &Sharding, ks: &[String]) -> Vec<f64> {
    let mut c = vec![0usize; s.shards];
    for k in ks {
        c[s.owner(k, &Overrides::default())] += 1;
    }
    c.iter().map(|&x| x as f64 / ks.len() as f64).collect()
}

/// The bound the shard-balance checker uses (harness/checker/src/shard_balance.rs): the ideal
/// share plus four binomial standard deviations. For a hash that behaves like a random function,
/// one shard's share exceeds it with probability about 3e-5.
fn bound(n: usize, shards: usize) -> f64 {
    let p = 1.0 / shards as f64;
    p + 4.0 * (p * (1.0 - p) / n as f64).sqrt()
}

#[test]
fn the_mixed_hash_spreads_the_projects_keys_within_the_bound_and_the_naive_sum_does_not() {
    for n in [40, 200, 1000] {
        let ks = keys(n);
        for shards in 2..=8 {
            for strategy in [Strategy::Hash, Strategy::ConsistentHash, Strategy::Directory] {
                let good = Sharding::new(strategy, shards, HashFn::Mixed, None).unwrap();
                let max = shares(&good, &ks).into_iter().fold(0.0, f64::max);
                assert!(
                    max <= bound(n, shards),
                    "{strategy:?} {shards} shards, {n} keys: max share {max:.3} > {:.3}",
                    bound(n, shards)
                );
                let naive = Sharding::new(strategy, shards, HashFn::NaiveSum, None).unwrap();
                let max = shares(&naive, &ks).into_iter().fold(0.0, f64::max);
                assert!(
                    max > bound(n, shards),
                    "naive {strategy:?} {shards} shards, {n} keys: max share {max:.3} within the bound"
                );
            }
        }
    }
}

/// Every prefix k0..k(n-1) a short run can produce stays within the checker's bound under the
/// mixed hash on 2 and 3 shards, and the naive sum exceeds it once the bound is below 1: the
/// end-to-end shard-balance runs (harness/cli/tests/router_e2e.rs) rest on this.
#[test]
fn every_key_prefix_of_a_short_run_is_judged_alike() {
    for shards in [2usize, 3] {
        for n in 1..=400 {
            let ks = keys(n);
            let b = bound(n, shards);
            let good = Sharding::new(Strategy::Hash, shards, HashFn::Mixed, None).unwrap();
            let max = shares(&good, &ks).into_iter().fold(0.0, f64::max);
            assert!(max <= b, "{shards} shards, {n} keys: {max:.3} > {b:.3}");
            let naive = Sharding::new(Strategy::Hash, shards, HashFn::NaiveSum, None).unwrap();
            let max = shares(&naive, &ks).into_iter().fold(0.0, f64::max);
            assert!(b >= 1.0 || max > b, "naive, {shards} shards, {n} keys: {max:.3} within {b:.3}");
        }
    }
}

#[test]
fn the_mixed_hash_passes_a_chi_square_test_on_256_buckets() {
    // 100 000 keys into 256 buckets: chi-square with 255 degrees of freedom has mean 255 and
    // standard deviation ~22.6; 400 is beyond 6 standard deviations.
    let mut c = [0u64; 256];
    let n = 100_000;
    for k in keys(n) {
        c[reduce(hash64(&k), 256)] += 1;
    }
    let e = n as f64 / 256.0;
    let chi: f64 = c.iter().map(|&x| (x as f64 - e).powi(2) / e).sum();
    assert!(chi < 400.0, "chi-square {chi:.1}");
    // The naive sum of 'k' and up to five digits stays below 400: every key in bucket 0.
    let mut naive = [0u64; 256];
    for k in keys(n) {
        naive[reduce(naive_hash(&k), 256)] += 1;
    }
    assert_eq!(naive[0], n as u64);
}

#[test]
fn hashes_are_stable_across_releases() {
    // Fixed values: the placement of keys must not change when the toolchain does.
    assert_eq!(naive_hash("k10"), 107 + 49 + 48);
    assert_eq!(hash64(""), fmix64(0xcbf2_9ce4_8422_2325));
    assert_eq!(hash64("k0"), hash64("k0"));
    assert_ne!(hash64("k01"), hash64("k10"), "anagrams differ (the sum cannot tell them apart)");
    assert_eq!(naive_hash("k01"), naive_hash("k10"));
    assert_eq!(reduce(u64::MAX, 3), 2);
    assert_eq!(reduce(0, 3), 0);
}

#[test]
fn consistent_hashing_moves_about_one_nth_of_the_keys_when_a_shard_is_added() {
    let ks = keys(20_000);
    for n in [2usize, 4, 7] {
        let before = Ring::new(n, VNODES_DEFAULT, HashFn::Mixed);
        let after = Ring::new(n + 1, VNODES_DEFAULT, HashFn::Mixed);
        let mut moved = 0;
        for k in &ks {
            let (a, b) = (before.owner_of_hash(hash64(k)), after.owner_of_hash(hash64(k)));
            if a != b {
                assert_eq!(b, n, "a key moved between old shards ({a} -> {b})");
                moved += 1;
            }
        }
        let frac = moved as f64 / ks.len() as f64;
        let ideal = 1.0 / (n + 1) as f64;
        assert!((frac - ideal).abs() < 0.35 * ideal, "{n}->{}: moved {frac:.3}, ideal {ideal:.3}", n + 1);
        // Hashing modulo the shard count moves far more: n/(n+1) of the keys change shard.
        let plain =
            ks.iter().filter(|k| hash64(k) % n as u64 != hash64(k) % (n as u64 + 1)).count() as f64 / ks.len() as f64;
        assert!(plain > 2.0 * frac, "plain {plain:.3} vs consistent {frac:.3}");
    }
}

#[test]
fn ranges_split_at_their_points() {
    let r = Ranges::new(vec!["k4".into(), "k7".into()]).unwrap();
    assert_eq!(r.count(), 3);
    assert_eq!(r.range_of("a"), 0);
    assert_eq!(r.range_of("k39"), 0);
    assert_eq!(r.range_of("k4"), 1, "a split point starts its range");
    assert_eq!(r.range_of("k69"), 1);
    assert_eq!(r.range_of("k7"), 2);
    assert_eq!(r.range_of("z"), 2);
    assert!(Ranges::new(vec!["b".into(), "a".into()]).is_err());
    assert!(Ranges::new(vec!["a".into(), "a".into()]).is_err());
    assert!(Ranges::new(vec!["".into()]).is_err());
    assert_eq!(Ranges::default_for(2).split, vec!["k5"]);
    assert_eq!(Ranges::default_for(3).split, vec!["k4", "k7"]);
    assert!(Ranges::default_for(1).split.is_empty());
    let s = Sharding::new(Strategy::Range, 2, HashFn::Mixed, Some(vec!["m".into()])).unwrap();
    assert_eq!(s.owner("apple", &Overrides::default()), 0);
    assert_eq!(s.owner("zebra", &Overrides::default()), 1);
    // Five ranges over two shards: contiguous runs.
    let s =
        Sharding::new(Strategy::Range, 2, HashFn::Mixed, Some(vec!["b".into(), "c".into(), "d".into(), "e".into()]))
            .unwrap();
    let owners: Vec<usize> = (0..5).map(|r| s.default_range_owner(r)).collect();
    assert_eq!(owners, vec![0, 0, 0, 1, 1]);
    assert!(Sharding::new(Strategy::Range, 0, HashFn::Mixed, None).is_err());
    assert_eq!("consistent-hash".parse::<Strategy>().unwrap(), Strategy::ConsistentHash);
    assert!("modulo".parse::<Strategy>().unwrap_err().to_string().contains("expected range"));
}

#[test]
fn default_ranges_balance_the_register_keys() {
    let s = Sharding::new(Strategy::Range, 2, HashFn::Mixed, None).unwrap();
    let sh = shares(&s, &keys(1000));
    assert!(sh.iter().all(|&x| (0.4..=0.6).contains(&x)), "{sh:?}");
}

#[test]
fn moves_change_exactly_what_they_name() {
    let ks = keys(50);
    let s = Sharding::new(Strategy::Directory, 3, HashFn::Mixed, None).unwrap();
    let mut o = Overrides::default();
    for pick in 0..30u64 {
        let m = plan_move(&s, &o, pick, &ks[..5], &ks).unwrap();
        let Move::Key { key, from, to } = m.clone() else { panic!("{m:?}") };
        assert_eq!(from, s.owner(&key, &o));
        assert_ne!(from, to);
        let before: Vec<usize> = ks.iter().map(|k| s.owner(k, &o)).collect();
        apply_move(&mut o, &m);
        for (k, b) in ks.iter().zip(before) {
            assert_eq!(s.owner(k, &o), if *k == key { to } else { b });
        }
    }
    let s = Sharding::new(Strategy::Range, 2, HashFn::Mixed, None).unwrap();
    let mut o = Overrides::default();
    let m = plan_move(&s, &o, 1, &[], &ks).unwrap();
    let Move::Range { range, from, to, keys: moved } = m.clone() else { panic!("{m:?}") };
    assert_eq!((range, from, to), (1, 1, 0));
    assert!(!moved.is_empty() && moved.iter().all(|k| s.ranges.range_of(k) == 1));
    apply_move(&mut o, &m);
    assert!(ks.iter().all(|k| s.owner(k, &o) == 0), "both ranges on shard 0 now");
    for strategy in [Strategy::Hash, Strategy::ConsistentHash] {
        let s = Sharding::new(strategy, 2, HashFn::Mixed, None).unwrap();
        assert!(plan_move(&s, &Overrides::default(), 0, &ks, &ks).unwrap_err().contains("fixed function"));
    }
    let one = Sharding::new(Strategy::Directory, 1, HashFn::Mixed, None).unwrap();
    assert!(plan_move(&one, &Overrides::default(), 0, &ks, &ks).is_err());
    let s = Sharding::new(Strategy::Directory, 2, HashFn::Mixed, None).unwrap();
    assert!(plan_move(&s, &Overrides::default(), 0, &[], &ks).unwrap_err().contains("nothing to move"));
}
