//! CPU clocks and medians for the benchmarks (included with `#[path]`). On a machine other
//! work shares, wall time measures the neighbours as much as the code: the figures that
//! compare two variants use CPU time of the threads or processes doing the work, rounds of
//! the variants interleaved, and the median of the rounds.
#![allow(dead_code)]

use std::time::Duration;

fn clock(id: libc::clockid_t) -> Duration {
    try_clock(id).unwrap_or_else(|| panic!("clock_gettime({id}) failed"))
}

fn try_clock(id: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// CPU time of the calling thread.
pub fn thread() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of this process (all its threads).
pub fn process() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time of another process (all its threads), in nanoseconds: Linux's CPU clock of a
/// pid (`((~pid) << 3) | CPUCLOCK_SCHED`, what glibc's `clock_getcpuclockid` builds).
pub fn of_pid(pid: i32) -> Duration {
    clock((!pid << 3) | 2)
}

/// CPU time of this process's threads whose name starts with `prefix` (`/proc/self/task`;
/// names are cut at 15 bytes), summed, each read from its per-thread CPU clock
/// (`((~tid) << 3) | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED`).
pub fn threads_named(prefix: &str) -> Duration {
    let dir =
        std::fs::read_dir("/proc/self/task").unwrap_or_else(|e| panic!("/proc/self/task: {e}"));
    dir.flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
        // A thread that ended meanwhile has no clock left: it counts nothing.
        .filter_map(|tid| try_clock((!tid << 3) | 4 | 2))
        .sum()
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    assert!(!v.is_empty(), "the median of no rounds");
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// The median of `v` and a 95% confidence interval for it that assumes no distribution: the
/// order statistics `n/2 -+ 0.98 sqrt(n)` (the binomial's normal approximation; the sorted
/// samples' ends when `v` is too short for that). A comparison whose whole interval is under
/// (or over) a line is judged by it; one that straddles the line is not.
pub fn median_ci(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let half = 0.98 * n.sqrt();
    let lo = ((n / 2.0 - half).floor().max(0.0)) as usize;
    let hi = ((n / 2.0 + half).ceil() as usize).min(s.len() - 1);
    (median(v), s[lo], s[hi])
}

/// The current 1-minute load average, to print beside the figures.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
