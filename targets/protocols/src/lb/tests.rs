use super::*;

const T: Thresholds = Thresholds { fall: 2, rise: 3 };

fn lb(weights: &[u32], strategy: Strategy, naive: bool) -> Balancer {
    let backends = weights.iter().enumerate().map(|(i, w)| (format!("b{i}"), *w)).collect();
    Balancer::new(backends, strategy, T, Bugs { naive_weighted: naive }).unwrap()
}

/// `n` picks, each released at once (no request in flight between picks).
fn picks(b: &mut Balancer, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| {
            let i = b.pick(&[]).expect("a backend");
            b.release(i);
            i
        })
        .collect()
}

fn counts(seq: &[usize], n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for &i in seq {
        c[i] += 1;
    }
    c
}

#[test]
fn round_robin_cycles_in_order_and_skips_dropped_backends() {
    let mut b = lb(&[1, 1, 1], Strategy::RoundRobin, false);
    assert_eq!(picks(&mut b, 7), vec![0, 1, 2, 0, 1, 2, 0]);
    // Drop b1 (two failed checks): the rotation goes on without it.
    assert_eq!(b.observe(1, false), None);
    assert_eq!(b.observe(1, false), Some(Transition::Dropped));
    assert_eq!(picks(&mut b, 4), vec![2, 0, 2, 0]);
}

#[test]
fn smooth_weighted_5_1_1_gives_the_nginx_sequence() {
    let mut b = lb(&[5, 1, 1], Strategy::Weighted, false);
    // nginx's documented example: a a b a c a a.
    assert_eq!(picks(&mut b, 7), vec![0, 0, 1, 0, 2, 0, 0]);
    // And it repeats exactly.
    assert_eq!(picks(&mut b, 7), vec![0, 0, 1, 0, 2, 0, 0]);
    let mut c = lb(&[4, 2, 1], Strategy::Weighted, false);
    assert_eq!(picks(&mut c, 7), vec![0, 1, 0, 2, 0, 1, 0]);
}

#[test]
fn smooth_weighted_follows_the_weights_over_many_picks() {
    for weights in [vec![5, 1, 1], vec![1, 1, 1], vec![3, 7], vec![10, 1, 4, 2]] {
        let mut b = lb(&weights, Strategy::Weighted, false);
        let total: u32 = weights.iter().sum();
        let rounds = 100;
        let c = counts(&picks(&mut b, (total * rounds) as usize), weights.len());
        let want: Vec<usize> = weights.iter().map(|w| (w * rounds) as usize).collect();
        assert_eq!(c, want, "weights {weights:?}");
        // Every window of sum(weights) picks is exact too (smoothness).
        let mut b = lb(&weights, Strategy::Weighted, false);
        let seq = picks(&mut b, (total * 5) as usize);
        for w in seq.chunks(total as usize) {
            assert_eq!(counts(w, weights.len()), weights.iter().map(|&x| x as usize).collect::<Vec<_>>());
        }
    }
}

#[test]
fn naive_weighted_does_not_follow_the_weights() {
    // The numbers of DESIGN.md: 66:2:2 in 70 picks for 5:1:1, 20:6:4 in 30 for 1:1:1.
    let mut b = lb(&[5, 1, 1], Strategy::Weighted, true);
    assert_eq!(counts(&picks(&mut b, 70), 3), vec![66, 2, 2]);
    let mut b = lb(&[1, 1, 1], Strategy::Weighted, true);
    assert_eq!(counts(&picks(&mut b, 30), 3), vec![20, 6, 4]);
    // The first seven picks all go to the heavy backend.
    let mut b = lb(&[5, 1, 1], Strategy::Weighted, true);
    assert_eq!(picks(&mut b, 7), vec![0; 7]);
}

#[test]
fn weighted_over_the_healthy_backends_only_and_a_readmitted_one_starts_fresh() {
    let mut b = lb(&[5, 1, 1], Strategy::Weighted, false);
    b.observe(0, false);
    b.observe(0, false);
    assert_eq!(b.healthy_count(), 2);
    let c = counts(&picks(&mut b, 20), 3);
    assert_eq!(c, vec![0, 10, 10]);
    for _ in 0..3 {
        b.observe(0, true);
    }
    assert_eq!(b.healthy_count(), 3);
    let c = counts(&picks(&mut b, 70), 3);
    assert_eq!(c, vec![50, 10, 10]);
}

#[test]
fn least_conn_takes_the_least_loaded_and_shares_ties() {
    let mut b = lb(&[1, 1, 1], Strategy::LeastConn, false);
    // Nothing in flight: ties everywhere, taken in turn (not always b0).
    assert_eq!(picks(&mut b, 6), vec![0, 1, 2, 0, 1, 2]);
    // Hold requests: b1 has 2 in flight, b2 has 1, b0 none → b0, then a tie b0/b2.
    let mut b = lb(&[1, 1, 1], Strategy::LeastConn, false);
    assert_eq!(b.pick(&[]), Some(0));
    assert_eq!(b.pick(&[]), Some(1));
    assert_eq!(b.pick(&[]), Some(2));
    assert_eq!(b.pick(&[]), Some(0));
    b.release(0);
    b.release(0);
    // In flight: b0 0, b1 1, b2 1.
    assert_eq!(b.pick(&[]), Some(0));
    // b0 1, b1 1, b2 1: a three-way tie, resumed after the cursor (at b1).
    assert_eq!(b.pick(&[]), Some(1));
    assert_eq!(b.backends().iter().map(|x| x.in_flight).collect::<Vec<_>>(), vec![1, 2, 1]);
    // b1 is the most loaded; the tie b0/b2 goes to b2 (after the cursor), then b0.
    assert_eq!(b.pick(&[]), Some(2));
    assert_eq!(b.pick(&[]), Some(0));
}

#[test]
fn tried_backends_are_excluded_and_none_when_nothing_is_left() {
    for s in [Strategy::RoundRobin, Strategy::LeastConn, Strategy::Weighted] {
        let mut b = lb(&[2, 1], s, false);
        let first = b.pick(&[]).unwrap();
        let second = b.pick(&[first]).unwrap();
        assert_ne!(first, second, "{s:?}");
        assert_eq!(b.pick(&[first, second]), None, "{s:?}");
        // Everything dropped: nothing to pick.
        for i in 0..2 {
            b.observe(i, false);
            b.observe(i, false);
        }
        assert_eq!(b.pick(&[]), None);
    }
}

#[test]
fn health_needs_fall_failures_and_rise_successes_in_a_row() {
    let mut b = lb(&[1], Strategy::RoundRobin, false);
    // One failure, then a success: the streak resets, still healthy.
    assert_eq!(b.observe(0, false), None);
    assert_eq!(b.observe(0, true), None);
    assert_eq!(b.observe(0, false), None);
    assert!(b.backends()[0].health.healthy);
    assert_eq!(b.observe(0, false), Some(Transition::Dropped));
    assert!(!b.backends()[0].health.healthy);
    // Two successes and a failure do not re-admit; three in a row do.
    b.observe(0, true);
    b.observe(0, true);
    assert_eq!(b.observe(0, false), None);
    assert_eq!(b.observe(0, true), None);
    assert_eq!(b.observe(0, true), None);
    assert_eq!(b.observe(0, true), Some(Transition::Readmitted));
    assert!(b.backends()[0].health.healthy);
    assert_eq!(b.observe(7, true), None, "an unknown index is ignored");
}

#[test]
fn only_a_connection_never_made_is_retried() {
    assert!(may_retry(AttemptFailure::Connect));
    assert!(!may_retry(AttemptFailure::Timeout));
    assert!(!may_retry(AttemptFailure::Broken));
}

#[test]
fn bad_configurations_are_refused() {
    let t = T;
    assert_eq!(Balancer::new(vec![], Strategy::RoundRobin, t, Bugs::default()).unwrap_err(), LbError::NoBackends);
    let dup = vec![("a".to_string(), 1), ("a".to_string(), 2)];
    assert_eq!(
        Balancer::new(dup, Strategy::RoundRobin, t, Bugs::default()).unwrap_err(),
        LbError::DuplicateBackend("a".into())
    );
    let zero = vec![("a".to_string(), 0)];
    assert!(matches!(Balancer::new(zero, Strategy::Weighted, t, Bugs::default()), Err(LbError::BadWeight { .. })));
    let one = vec![("a".to_string(), 1)];
    let bad = Thresholds { fall: 0, rise: 1 };
    assert!(matches!(Balancer::new(one, Strategy::Weighted, bad, Bugs::default()), Err(LbError::BadThresholds { .. })));
    assert_eq!("weighted".parse::<Strategy>(), Ok(Strategy::Weighted));
    assert!("random".parse::<Strategy>().unwrap_err().to_string().contains("round-robin"));
    for n in Strategy::NAMES {
        assert_eq!(n.parse::<Strategy>().unwrap().as_str(), *n);
    }
}
