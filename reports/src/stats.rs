//! Quantiles, time windows and rates for the plots.

/// The `q`-quantile (0 ≤ q ≤ 1) of an ascending slice, by the nearest-rank method: the smallest
/// value such that at least `q` of the samples are ≤ it. `None` for an empty slice.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "quantile needs sorted input");
    let q = q.clamp(0.0, 1.0);
    let n = sorted.len();
    let rank = (q * n as f64).ceil() as usize; // 1-based
    Some(sorted[rank.clamp(1, n) - 1])
}

/// A window width for `duration_ns`: about `target` windows, rounded to 1, 2 or 5 × 10^k ns,
/// at least 1 ms.
pub fn window_ns(duration_ns: u64, target: u64) -> u64 {
    let raw = (duration_ns / target.max(1)).max(1_000_000);
    let mut step = 1u64;
    while step.saturating_mul(10) <= raw {
        step = step.saturating_mul(10);
    }
    for m in [1u64, 2, 5, 10] {
        if step.saturating_mul(m) >= raw {
            return step.saturating_mul(m);
        }
    }
    step.saturating_mul(10)
}

/// Latency quantiles of one window.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowQuantiles {
    /// Middle of the window, ns.
    pub mid_ns: u64,
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Groups `(time_ns, value)` samples into windows of `width_ns` and gives each non-empty window
/// its p50, p95, p99 and max.
pub fn windowed_quantiles(samples: &[(u64, f64)], width_ns: u64) -> Vec<WindowQuantiles> {
    assert!(width_ns > 0, "window width must be positive");
    let mut buckets: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
    for &(t, v) in samples {
        if v.is_finite() {
            buckets.entry(t / width_ns).or_default().push(v);
        }
    }
    buckets
        .into_iter()
        .map(|(w, mut vs)| {
            vs.sort_by(f64::total_cmp);
            WindowQuantiles {
                mid_ns: w * width_ns + width_ns / 2,
                count: vs.len(),
                p50: quantile(&vs, 0.50).unwrap_or(0.0),
                p95: quantile(&vs, 0.95).unwrap_or(0.0),
                p99: quantile(&vs, 0.99).unwrap_or(0.0),
                max: *vs.last().unwrap_or(&0.0),
            }
        })
        .collect()
}

/// Events per second in each window from 0 to `end_ns`, including empty windows (a rate that
/// drops to zero during a fault is the point of the plot). Returns `(window mid ns, rate)`.
pub fn rates(times_ns: &[u64], width_ns: u64, end_ns: u64) -> Vec<(u64, f64)> {
    assert!(width_ns > 0, "window width must be positive");
    let windows = (end_ns / width_ns + 1) as usize;
    let mut counts = vec![0u64; windows];
    for &t in times_ns {
        let w = ((t / width_ns) as usize).min(windows - 1);
        counts[w] += 1;
    }
    let per_s = 1e9 / width_ns as f64;
    counts.into_iter().enumerate().map(|(w, c)| (w as u64 * width_ns + width_ns / 2, c as f64 * per_s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.95), Some(95.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
        // Small samples: p50 of 4 values is the 2nd, p95 is the 4th.
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.95), Some(4.0));
    }

    #[test]
    fn windows_are_round_and_bounded_below() {
        assert_eq!(window_ns(10_000_000_000, 100), 100_000_000);
        assert_eq!(window_ns(30_000_000_000, 100), 500_000_000);
        assert_eq!(window_ns(7_000_000_000, 100), 100_000_000);
        assert_eq!(window_ns(1_000, 100), 1_000_000);
        assert_eq!(window_ns(0, 100), 1_000_000);
    }

    #[test]
    fn windowed_quantiles_group_by_window() {
        let mut s: Vec<(u64, f64)> = (0..100).map(|i| (5, f64::from(i))).collect();
        s.push((25, 1000.0));
        s.push((26, f64::NAN));
        let w = windowed_quantiles(&s, 10);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].mid_ns, w[0].count, w[0].p50, w[0].p99, w[0].max), (5, 100, 49.0, 98.0, 99.0));
        assert_eq!((w[1].mid_ns, w[1].count, w[1].p50, w[1].max), (25, 1, 1000.0, 1000.0));
    }

    #[test]
    fn rates_include_empty_windows() {
        let r = rates(&[0, 1, 2, 250_000_000], 100_000_000, 399_000_000);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0], (50_000_000, 30.0));
        assert_eq!(r[1].1, 0.0);
        assert_eq!(r[2].1, 10.0);
        assert_eq!(r[3].1, 0.0);
    }
}
