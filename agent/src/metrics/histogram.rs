//! The one latency histogram: fixed bucket bounds, lock-free to record (the journal's fsync on
//! the records thread, seals and compactions on the sealer thread), read as a serialisable
//! [`Timing`] that `status.json` carries and `/metrics` renders as a Prometheus histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in nanoseconds: 100 µs (a fast fsync) to 5 min (a day's
/// compaction); slower observations fall into the last, unbounded bucket.
pub const BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    5_000_000_000,
    30_000_000_000,
    60_000_000_000,
    300_000_000_000,
];

/// Buckets: one per bound and one above the last.
const BUCKETS: usize = BOUNDS_NS.len() + 1;

/// A histogram of durations that any thread records into.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// What it holds now.
    pub fn timing(&self) -> Timing {
        Timing {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's figures at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Observations per bucket of [`BOUNDS_NS`] (not cumulative), the last one above the last
    /// bound; empty when nothing was recorded by an agent that knew no timings.
    pub buckets: Vec<u64>,
    /// Sum of the observations, ns.
    pub sum_ns: u64,
}

impl Timing {
    /// Observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// `(upper bound in ns, cumulative count)` for each bound, then `(None, count)`: the
    /// Prometheus buckets, `le` ascending, ending with `+Inf`.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let bounds = BOUNDS_NS
            .iter()
            .map(|&b| Some(b))
            .chain(std::iter::once(None));
        let mut acc = 0;
        bounds.enumerate().map(move |(i, b)| {
            acc += self.buckets.get(i).copied().unwrap_or(0);
            (b, acc)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_nanos(100_000)); // on a bound: that bucket (le is inclusive)
        h.observe(Duration::from_nanos(100_001));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(3600)); // above every bound
        let t = h.timing();
        assert_eq!(t.count(), 4);
        assert_eq!(t.buckets[0], 1, "100 µs belongs to le=0.0001");
        assert_eq!(t.buckets[1], 1, "100.001 µs belongs to le=0.00025");
        assert_eq!(t.buckets[5], 1, "3 ms belongs to le=0.005");
        assert_eq!(t.buckets[BUCKETS - 1], 1, "an hour belongs to +Inf only");
        assert_eq!(t.sum_ns, 100_000 + 100_001 + 3_000_000 + 3_600_000_000_000);
        let cum: Vec<_> = t.cumulative().collect();
        assert_eq!(cum.len(), BUCKETS);
        assert_eq!(cum[0], (Some(100_000), 1));
        assert_eq!(cum[5], (Some(5_000_000), 3));
        assert_eq!(cum[BUCKETS - 2].1, 3);
        assert_eq!(cum[BUCKETS - 1], (None, 4));
    }

    #[test]
    fn an_empty_timing_reads_as_zero_buckets() {
        let t = Timing::default();
        assert_eq!(t.count(), 0);
        assert!(t.cumulative().all(|(_, n)| n == 0));
        assert_eq!(t.cumulative().count(), BUCKETS);
    }
}
