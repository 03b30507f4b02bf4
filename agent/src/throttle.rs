//! Rate-limited warnings. A line per lost start event, evicted flow or undecodable record
//! would flood the log exactly when the gateway is busiest; each of those is counted (see
//! `status`), and the log gets at most one line per interval saying how many happened since
//! the last one.

use std::time::{Duration, Instant};

/// How often a throttled warning is logged at most, unless told otherwise.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);

/// One kind of warning's rate limit.
#[derive(Clone, Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(DEFAULT_EVERY)
    }
}

impl Throttle {
    /// At most one line per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held: 0,
        }
    }

    /// Notes `n` occurrences now; returns how many to report if a line is due (the first
    /// occurrence always is), counting those held back since the last line.
    pub fn hit(&mut self, n: u64) -> Option<u64> {
        self.hit_at(Instant::now(), n)
    }

    /// [`Throttle::hit`] at a given instant.
    pub fn hit_at(&mut self, now: Instant, n: u64) -> Option<u64> {
        self.held += n;
        if self.held == 0
            || self
                .last
                .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_carries_what_was_held_back() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.hit_at(t0, 1), Some(1), "the first is reported at once");
        for i in 1..=5 {
            assert_eq!(t.hit_at(t0 + Duration::from_secs(i), 1), None);
        }
        assert_eq!(t.hit_at(t0 + Duration::from_secs(9), 2), None);
        assert_eq!(
            t.hit_at(t0 + Duration::from_secs(10), 1),
            Some(8),
            "five + two + this one"
        );
        assert_eq!(
            t.hit_at(t0 + Duration::from_secs(30), 0),
            None,
            "nothing held"
        );
        assert_eq!(t.hit_at(t0 + Duration::from_secs(31), 3), Some(3));
    }
}
