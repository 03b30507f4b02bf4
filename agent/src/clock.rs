//! Kernel time to wall time. The program stamps packets with `bpf_ktime_get_ns`
//! (CLOCK_MONOTONIC); records carry UTC, so the agent converts with an offset measured once.

/// Converts CLOCK_MONOTONIC nanoseconds to Unix nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    offset_ns: i64,
}

fn clock_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

impl WallClock {
    /// Measures the offset between CLOCK_REALTIME and CLOCK_MONOTONIC now.
    pub fn measure() -> Self {
        // Bracket the realtime read with two monotonic reads and take their midpoint, so the
        // offset is good to well under a microsecond.
        let m1 = clock_ns(libc::CLOCK_MONOTONIC);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let m2 = clock_ns(libc::CLOCK_MONOTONIC);
        Self {
            offset_ns: r - (m1 + (m2 - m1) / 2),
        }
    }

    /// A clock with a fixed offset, for tests and replays.
    pub const fn from_offset(offset_ns: i64) -> Self {
        Self { offset_ns }
    }

    /// Unix nanoseconds of a kernel timestamp.
    pub fn to_unix_ns(&self, ktime_ns: u64) -> i64 {
        self.offset_ns.saturating_add(ktime_ns as i64)
    }

    /// The kernel's CLOCK_MONOTONIC now, in the units the program stamps.
    pub fn ktime_now() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_offset_maps_now_to_now() {
        let clock = WallClock::measure();
        let unix = clock.to_unix_ns(WallClock::ktime_now());
        let real = clock_ns(libc::CLOCK_REALTIME);
        assert!((unix - real).abs() < 50_000_000, "{unix} vs {real}");
    }
}
