//! The latency histogram behind every per-operation duration figure.
//!
//! Fixed log-scale buckets (50 µs doubling up to ~105 s, plus `+Inf`) with
//! exact count, sum, min and max. Quantiles are estimated as the upper bound
//! of the bucket that holds the rank, clamped to the observed min/max, so an
//! estimate is never below the true value and at most twice it. Recording is
//! allocation-free. This module only counts nanoseconds: units, JSON and the
//! Prometheus exposition live in `summary` and `prometheus`.

/// Histogram bucket upper bounds in nanoseconds: 50 µs doubling up to ~105 s.
/// One more implicit bucket (`+Inf`) catches everything larger.
pub(super) const BUCKET_BOUNDS_NS: [u64; 22] = {
    let mut b = [0u64; 22];
    let mut i = 0;
    while i < b.len() {
        b[i] = 50_000u64 << i;
        i += 1;
    }
    b
};

/// Number of buckets, the `+Inf` one included.
pub(super) const NUM_BUCKETS: usize = BUCKET_BOUNDS_NS.len() + 1;

/// Fixed log-scale latency histogram with exact count/sum/min/max.
#[derive(Clone, Debug)]
pub(super) struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    pub(super) buckets: [u64; NUM_BUCKETS],
    pub(super) count: u64,
    pub(super) sum_ns: u128,
    min_ns: u64,
    pub(super) max_ns: u64,
}

impl Histogram {
    pub(super) const fn new() -> Self {
        Histogram {
            buckets: [0; NUM_BUCKETS],
            count: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }

    pub(super) fn observe(&mut self, ns: u64) {
        let idx = BUCKET_BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[idx] += 1;
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Smallest observation; 0 when empty.
    pub(super) fn min_ns(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min_ns
        }
    }

    /// Mean observation; 0.0 when empty.
    pub(super) fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// Estimated `q` quantile (0..=1) in nanoseconds; 0 when empty.
    pub(super) fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let upper = BUCKET_BOUNDS_NS.get(i).copied().unwrap_or(self.max_ns);
                return upper.min(self.max_ns).max(self.min_ns);
            }
        }
        self.max_ns
    }

    /// `(upper bound in ns or None for +Inf, cumulative count)` per bucket,
    /// in bucket order, as the Prometheus exposition wants them.
    pub(super) fn cumulative_buckets(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .scan(0u64, |cumulative, (i, &c)| {
                *cumulative += c;
                Some((BUCKET_BOUNDS_NS.get(i).copied(), *cumulative))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_capped_by_min_and_max() {
        let mut h = Histogram::new();
        h.observe(70_000); // 70 µs: bucket (50, 100] µs
        assert_eq!(h.quantile_ns(0.5), 70_000);
        assert_eq!(h.quantile_ns(1.0), 70_000);
        h.observe(1_000); // tiny: first bucket, estimated by its 50 µs bound
        assert_eq!(h.quantile_ns(0.0), 50_000);
        assert_eq!(h.quantile_ns(1.0), 70_000);
        let mut tiny = Histogram::new();
        tiny.observe(1_000);
        assert_eq!(tiny.quantile_ns(0.5), 1_000, "capped at max");
        let mut big = Histogram::new();
        big.observe(500 * 1_000_000_000); // beyond the last bound: +Inf bucket
        assert_eq!(big.quantile_ns(0.99), 500 * 1_000_000_000);
        assert_eq!(big.buckets[NUM_BUCKETS - 1], 1);
    }

    #[test]
    fn bucket_boundaries_are_inclusive_upper_bounds() {
        let mut h = Histogram::new();
        h.observe(50_000);
        h.observe(50_001);
        h.observe(100_000);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 2);
        assert!(*BUCKET_BOUNDS_NS.last().unwrap() >= 60 * 1_000_000_000);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let h = Histogram::new();
        assert_eq!(h.min_ns(), 0);
        assert_eq!(h.mean_ns(), 0.0);
        assert_eq!(h.quantile_ns(0.99), 0);
        assert!(h.cumulative_buckets().all(|(_, c)| c == 0));
    }

    #[test]
    fn cumulative_buckets_end_with_inf_and_total() {
        let mut h = Histogram::new();
        for ns in [10_000, 60_000, 60_000, 200 * 1_000_000_000] {
            h.observe(ns);
        }
        let buckets: Vec<_> = h.cumulative_buckets().collect();
        assert_eq!(buckets.len(), NUM_BUCKETS);
        assert_eq!(buckets[0], (Some(50_000), 1));
        assert_eq!(buckets[1], (Some(100_000), 3));
        assert_eq!(buckets[NUM_BUCKETS - 2].1, 3);
        assert_eq!(buckets[NUM_BUCKETS - 1], (None, 4));
        assert_eq!(h.mean_ns(), (10_000.0 + 120_000.0 + 200e9) / 4.0);
    }
}
