//! Kernel time to wall time. The program stamps packets with `bpf_ktime_get_ns`
//! (CLOCK_MONOTONIC); records carry UTC. The offset between the two clocks stays put while
//! nobody sets the wall clock (NTP slewing speeds or slows both alike) and jumps when someone
//! does: NTP's first sync on a gateway that booted without a good hardware clock, an operator's
//! `date -s`, a leap second.
//!
//! So the offset is not measured once: a [`ClockWatch`] re-measures it at every drain of the
//! ring buffer (every 50 ms at most) and reports each change, and a [`Timeline`] keeps the
//! offsets seen with the kernel time each took effect, so a timestamp is converted with the
//! offset in force when it was taken, however late its record is written. A change of
//! [`STEP_THRESHOLD`] or more is a step: logged once with the old and new offset, and counted
//! (`status`: `clock.steps`). Smaller changes are followed silently.
//!
//! A record is stamped on one timeline, the one in force at its last packet: a flow that
//! spans a step has its start moved to the new timeline with it, so its duration stays what
//! the monotonic clock measured and its end never precedes its start. (The wall clock is
//! stepped to correct it, so the new timeline is the better estimate of when the flow began;
//! converting the start with the old offset would, after a backward step, put it after the
//! end.) Timestamps taken between a step and the measurement that sees it (one drain interval)
//! are converted with the old offset.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tracing::warn;

/// A change of the wall-clock offset this large or larger is a step: logged and counted.
pub const STEP_THRESHOLD: std::time::Duration = std::time::Duration::from_secs(1);

/// Offset changes smaller than this are measurement noise, not a change of the clock.
const NOISE_NS: i64 = 100_000;
/// A measurement whose two monotonic reads are further apart than this was interrupted;
/// it is retried.
const GOOD_BRACKET_NS: u64 = 20_000;
/// Offsets kept by a [`Timeline`]; older ones are forgotten (timestamps older than the oldest
/// change kept are converted with it).
const KEEP_CHANGES: usize = 256;

/// The two clocks the conversion needs. The host's are [`HostClocks`]; tests step a fake one.
pub trait ClockSource: Send + Sync {
    /// CLOCK_REALTIME, Unix nanoseconds.
    fn realtime_ns(&self) -> i64;
    /// CLOCK_MONOTONIC nanoseconds, the clock the program stamps packets with.
    fn monotonic_ns(&self) -> u64;
}

/// Clock `id` (`libc::CLOCK_*`) now, in nanoseconds.
pub fn clock_ns(id: libc::clockid_t) -> i64 {
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

/// The host's CLOCK_REALTIME and CLOCK_MONOTONIC.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostClocks;

impl ClockSource for HostClocks {
    fn realtime_ns(&self) -> i64 {
        clock_ns(libc::CLOCK_REALTIME)
    }
    /// The host's, also when the agent runs in a time namespace (`unshare --time`): there
    /// CLOCK_MONOTONIC reads the namespace's offset more, while the program stamps with the
    /// host's clock, so every record would be off by the offset.
    fn monotonic_ns(&self) -> u64 {
        static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
        let offset = *OFFSET.get_or_init(|| {
            std::fs::read_to_string("/proc/self/timens_offsets")
                .map_or(0, |text| monotonic_offset_ns(&text))
        });
        clock_ns(libc::CLOCK_MONOTONIC).saturating_sub(offset) as u64
    }
}

/// The `monotonic` line of `/proc/self/timens_offsets` (`monotonic <s> <ns>`), ns; 0 when
/// absent or unreadable (no time namespace).
fn monotonic_offset_ns(text: &str) -> i64 {
    text.lines()
        .find_map(|line| {
            let mut f = line.split_whitespace();
            if f.next()? != "monotonic" {
                return None;
            }
            let s: i64 = f.next()?.parse().ok()?;
            let ns: i64 = f.next()?.parse().ok()?;
            Some(s.saturating_mul(1_000_000_000).saturating_add(ns))
        })
        .unwrap_or(0)
}

/// Converts CLOCK_MONOTONIC nanoseconds to Unix nanoseconds with one fixed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    offset_ns: i64,
}

impl WallClock {
    /// Measures the offset between the host's CLOCK_REALTIME and CLOCK_MONOTONIC now.
    pub fn measure() -> Self {
        Self::from_offset(OffsetSample::measure(&HostClocks).offset_ns)
    }

    /// A clock with a fixed offset, for tests and replays.
    pub const fn from_offset(offset_ns: i64) -> Self {
        Self { offset_ns }
    }

    /// Unix nanoseconds minus CLOCK_MONOTONIC nanoseconds.
    pub const fn offset_ns(&self) -> i64 {
        self.offset_ns
    }

    /// Unix nanoseconds of a kernel timestamp.
    pub fn to_unix_ns(&self, ktime_ns: u64) -> i64 {
        self.offset_ns.saturating_add(ktime_ns as i64)
    }

    /// The kernel's CLOCK_MONOTONIC now, in the units the program stamps.
    pub fn ktime_now() -> u64 {
        HostClocks.monotonic_ns()
    }
}

/// One measurement of the offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetSample {
    /// CLOCK_MONOTONIC when it was taken.
    pub at_ktime: u64,
    /// Unix nanoseconds minus CLOCK_MONOTONIC nanoseconds.
    pub offset_ns: i64,
    /// How far apart the monotonic reads around the realtime read were: the offset is good to
    /// half of it.
    pub error_ns: u64,
}

impl OffsetSample {
    /// Measures `clocks`: the realtime read between two monotonic reads, offset against
    /// their midpoint; retried (three tries at most, the tightest kept) when interrupted.
    pub fn measure(clocks: &dyn ClockSource) -> Self {
        let mut best: Option<Self> = None;
        for _ in 0..3 {
            let m1 = clocks.monotonic_ns();
            let r = clocks.realtime_ns();
            let m2 = clocks.monotonic_ns();
            let width = m2.saturating_sub(m1);
            let mid = m1 + width / 2;
            let s = Self {
                at_ktime: mid,
                offset_ns: r.saturating_sub(mid as i64),
                error_ns: width,
            };
            if best.is_none_or(|b| s.error_ns < b.error_ns) {
                best = Some(s);
            }
            if width <= GOOD_BRACKET_NS {
                break;
            }
        }
        best.unwrap_or(Self {
            at_ktime: 0,
            offset_ns: 0,
            error_ns: u64::MAX,
        })
    }
}

/// Re-measures the offset and reports when it changed.
pub struct ClockWatch {
    clocks: std::sync::Arc<dyn ClockSource>,
    last_offset_ns: i64,
}

impl ClockWatch {
    /// A watch on `clocks`, with its first measurement (the start of a [`Timeline`]).
    pub fn new(clocks: std::sync::Arc<dyn ClockSource>) -> (Self, OffsetSample) {
        let first = OffsetSample::measure(clocks.as_ref());
        let watch = Self {
            clocks,
            last_offset_ns: first.offset_ns,
        };
        (watch, first)
    }

    /// The clocks watched.
    pub fn clocks(&self) -> &dyn ClockSource {
        self.clocks.as_ref()
    }

    /// Measures now; returns the sample if the offset moved by more than the noise and the
    /// measurement's own error.
    pub fn poll(&mut self) -> Option<OffsetSample> {
        let s = OffsetSample::measure(self.clocks.as_ref());
        let moved = s.offset_ns.abs_diff(self.last_offset_ns);
        if moved > NOISE_NS as u64 && moved > s.error_ns {
            self.last_offset_ns = s.offset_ns;
            Some(s)
        } else {
            None
        }
    }
}

/// A step of the wall clock, as `status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStep {
    /// When the agent saw it, RFC 3339 UTC on the new timeline.
    pub seen_at: String,
    /// The offset before, ns (Unix time minus CLOCK_MONOTONIC).
    pub old_offset_ns: i64,
    /// The offset after.
    pub new_offset_ns: i64,
}

/// The wall clock as `status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStats {
    /// The offset in force, ns (Unix time minus CLOCK_MONOTONIC).
    pub offset_ns: i64,
    /// Changes of the offset of [`STEP_THRESHOLD`] or more since the agent started.
    pub steps: u64,
    /// Smaller changes, followed without a warning.
    pub adjustments: u64,
    /// The latest step.
    pub last_step: Option<ClockStep>,
}

/// The offsets in force since the agent started, each with the kernel time it took effect.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// Oldest first; never empty.
    changes: VecDeque<OffsetSample>,
    stats: ClockStats,
}

impl Timeline {
    /// A timeline starting with `first`.
    pub fn new(first: OffsetSample) -> Self {
        Self {
            changes: VecDeque::from([first]),
            stats: ClockStats {
                offset_ns: first.offset_ns,
                ..ClockStats::default()
            },
        }
    }

    /// A timeline with one offset for all time (tests, replays).
    pub fn fixed(clock: WallClock) -> Self {
        Self::new(OffsetSample {
            at_ktime: 0,
            offset_ns: clock.offset_ns(),
            error_ns: 0,
        })
    }

    /// Takes a new measurement into account: from its kernel time on, timestamps convert with
    /// its offset. A step ([`STEP_THRESHOLD`] or more) is logged and counted; returns whether
    /// `s` was one.
    pub fn apply(&mut self, s: OffsetSample) -> bool {
        let current = self.current();
        if s.offset_ns == current.offset_ns || s.at_ktime < current.at_ktime {
            return false;
        }
        let step = u128::from(s.offset_ns.abs_diff(current.offset_ns)) >= STEP_THRESHOLD.as_nanos();
        if step {
            let seen_at = crate::record::rfc3339_ns(
                WallClock::from_offset(s.offset_ns).to_unix_ns(s.at_ktime),
            );
            warn!(
                old_offset_ns = current.offset_ns,
                new_offset_ns = s.offset_ns,
                step_ms = (s.offset_ns - current.offset_ns) / 1_000_000,
                seen_at = %seen_at,
                "the wall clock was set; records of packets from here on carry the new time"
            );
            self.stats.steps += 1;
            self.stats.last_step = Some(ClockStep {
                seen_at,
                old_offset_ns: current.offset_ns,
                new_offset_ns: s.offset_ns,
            });
        } else {
            self.stats.adjustments += 1;
        }
        self.stats.offset_ns = s.offset_ns;
        if self.changes.len() == KEEP_CHANGES {
            self.changes.pop_front();
        }
        self.changes.push_back(s);
        step
    }

    fn current(&self) -> OffsetSample {
        // `changes` is never empty: `new` puts one in and `apply` pops only to push.
        self.changes[self.changes.len() - 1]
    }

    /// The conversion in force at kernel time `ktime`.
    pub fn at(&self, ktime: u64) -> WallClock {
        let i = self.changes.partition_point(|c| c.at_ktime <= ktime);
        WallClock::from_offset(self.changes[i.saturating_sub(1)].offset_ns)
    }

    /// Offset, steps and adjustments so far.
    pub fn stats(&self) -> &ClockStats {
        &self.stats
    }
}

/// A wall clock tests set by hand on top of the host's monotonic clock (which the program
/// stamps packets with): `step` moves the wall time as `date -s` would.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug)]
pub struct FakeWallClock {
    offset_ns: std::sync::atomic::AtomicI64,
}

#[cfg(any(test, feature = "testing"))]
impl FakeWallClock {
    /// A clock whose wall time is the monotonic time plus `offset_ns`.
    pub fn new(offset_ns: i64) -> Self {
        Self {
            offset_ns: std::sync::atomic::AtomicI64::new(offset_ns),
        }
    }

    /// Sets the wall clock forward (or back, if negative) by `ns`.
    pub fn step(&self, ns: i64) {
        self.offset_ns
            .fetch_add(ns, std::sync::atomic::Ordering::SeqCst);
    }

    /// The wall time's offset from the monotonic clock now.
    pub fn offset_ns(&self) -> i64 {
        self.offset_ns.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(any(test, feature = "testing"))]
impl ClockSource for FakeWallClock {
    fn realtime_ns(&self) -> i64 {
        (HostClocks.monotonic_ns() as i64).saturating_add(self.offset_ns())
    }
    fn monotonic_ns(&self) -> u64 {
        HostClocks.monotonic_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_time_namespaces_monotonic_offset_is_read() {
        let ns = "monotonic     8640000         5\nboottime            0         0\n";
        assert_eq!(monotonic_offset_ns(ns), 8_640_000_000_000_005);
        assert_eq!(monotonic_offset_ns("monotonic -2 0\n"), -2_000_000_000);
        assert_eq!(monotonic_offset_ns("boottime 5 0\n"), 0);
        assert_eq!(monotonic_offset_ns("monotonic x 0\n"), 0);
    }

    #[test]
    fn measured_offset_maps_now_to_now() {
        let clock = WallClock::measure();
        let unix = clock.to_unix_ns(WallClock::ktime_now());
        let real = clock_ns(libc::CLOCK_REALTIME);
        assert!((unix - real).abs() < 50_000_000, "{unix} vs {real}");
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn the_watch_reports_a_step_once_and_ignores_noise() {
        let fake = Arc::new(FakeWallClock::new(1_000 * S));
        let (mut watch, first) = ClockWatch::new(fake.clone());
        // The fake reads the host's monotonic clock for each reading: good to the bracket.
        let near = |s: OffsetSample, want: i64| s.offset_ns.abs_diff(want) <= s.error_ns;
        assert!(near(first, 1_000 * S), "{first:?}");
        assert_eq!(watch.poll(), None, "an unchanged clock reports nothing");
        fake.step(3_600 * S);
        let s = watch.poll().expect("the step is reported");
        assert!(near(s, 4_600 * S), "{s:?}");
        assert_eq!(watch.poll(), None, "and only once");
        fake.step(50_000);
        assert_eq!(watch.poll(), None, "50 us is below the noise floor");
    }

    #[test]
    fn timestamps_convert_with_the_offset_in_force_when_taken() {
        let at = |k: u64, off: i64| OffsetSample {
            at_ktime: k,
            offset_ns: off,
            error_ns: 0,
        };
        let mut t = Timeline::new(at(100, 1_000 * S));
        assert!(
            !t.apply(at(200, 1_000 * S + 5_000_000)),
            "5 ms is followed, not a step"
        );
        assert!(t.apply(at(300, 5_000 * S)), "4000 s is a step");
        assert!(t.apply(at(400, 2_000 * S)), "so is a step back");
        assert!(
            !t.apply(at(350, 9 * S)),
            "a measurement older than the latest is ignored"
        );
        assert_eq!(
            t.at(50).offset_ns(),
            1_000 * S,
            "before the first: the first"
        );
        assert_eq!(t.at(150).offset_ns(), 1_000 * S);
        assert_eq!(t.at(250).offset_ns(), 1_000 * S + 5_000_000);
        assert_eq!(
            t.at(300).offset_ns(),
            5_000 * S,
            "from the step's kernel time on"
        );
        assert_eq!(t.at(399).offset_ns(), 5_000 * S);
        assert_eq!(t.at(u64::MAX).offset_ns(), 2_000 * S);
        let st = t.stats();
        assert_eq!((st.steps, st.adjustments, st.offset_ns), (2, 1, 2_000 * S));
        let last = st.last_step.as_ref().expect("last step");
        assert_eq!(
            (last.old_offset_ns, last.new_offset_ns),
            (5_000 * S, 2_000 * S)
        );
    }
}
