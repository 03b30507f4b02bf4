//! The N-record bench store of `query_speed`, built day by day on every core.
//!
//! Each of the 90 days is its own generator stream (`TrafficGen::stream`, from the day's
//! start, N/90 records), so the days are independent and the workers take them in turn.
//! The store as the agent keeps it (closed days merged) is written directly: each day's
//! records go through the writer compaction uses (`seal::write_file` with
//! `Layout::COMPACTED`, journal id 0 as a merged segment has), instead of hourly seals
//! then compaction, which read every hourly segment back (the 100 M-record store took 25
//! minutes to seal and did not finish compacting in an hour). The merged segments are
//! chained as segment entries (a compaction entry names inputs, and these have none);
//! `verify` checks the chain and every file's hash as for any store, and a query reads
//! merged and sealed segments alike. The hourly store (the "as sealed" baselines) is built
//! the same way, one segment per hour, for as many days as asked.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use xdp_audit::store::columns::Columns;
use xdp_audit::store::manifest::{Body, Manifest, SegmentInfo};
use xdp_audit::store::seal::write_file;
use xdp_audit::store::segment::Layout;
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::verify::verify;

use super::{cpu, rate, HOUR, T0};

/// Days the bench store spans.
pub const DAYS: i64 = 90;
const DAY: i64 = 24 * HOUR;
const SEED: u64 = 7;

/// Records of day `day` in the N-record store: N/90, the remainder spread over the first days.
fn day_rows(n: u64, day: i64) -> u64 {
    let days = DAYS as u64;
    n / days + u64::from((day as u64) < n % days)
}

/// Records of days `days` in the N-record store.
pub fn rows_of(n: u64, days: &Range<i64>) -> u64 {
    days.clone().map(|d| day_rows(n, d)).sum()
}

/// The generator of day `day` of the N-record store, at its start.
pub fn day_gen(n: u64, day: i64) -> TrafficGen {
    let per_sec = n as f64 / (DAYS as f64 * 86_400.0);
    TrafficGen::with_rate(SEED, T0 + day * DAY, per_sec).stream(day as u64)
}

/// The merged days' layout: `Layout::COMPACTED`, or with `XDP_AUDIT_BENCH_PAGE_ROWS` its
/// pages of that many rows (1,024 to 8,192, a power of two; the `dst_ip` pages kept),
/// to measure a page size's cost and speed before the format takes it.
pub fn daily_layout() -> Layout {
    let page_rows = std::env::var("XDP_AUDIT_BENCH_PAGE_ROWS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&p| (1024..=8192).contains(&p) && p.is_power_of_two());
    match page_rows {
        Some(page_rows) => Layout {
            page_rows,
            ..Layout::COMPACTED
        },
        None => Layout::COMPACTED,
    }
}

/// How a store cuts its days into segments.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// One merged segment per day, as compaction leaves a closed day.
    Daily,
    /// One segment per hour, as the sealer leaves them.
    Hourly,
}

/// The segments of one day: its records, cut as `cut` says, each written as a segment file
/// under a provisional chain position (the caller renames it to its real one).
fn write_day(dir: &Path, n: u64, day: i64, cut: Cut, provisional: u64) -> Vec<SegmentInfo> {
    let mut g = day_gen(n, day);
    let rows = day_rows(n, day);
    let layout = match cut {
        Cut::Daily => daily_layout(),
        Cut::Hourly => Layout::SEALED,
    };
    let mut out = Vec::new();
    let mut batch = Columns::with_capacity(match cut {
        Cut::Daily => rows as usize,
        Cut::Hourly => (rows / 24 + rows / 48) as usize,
    });
    let mut hour_end = T0 + day * DAY + HOUR;
    let flush = |batch: Columns, out: &mut Vec<SegmentInfo>| {
        let seq = provisional + out.len() as u64;
        // A merged day has journal id 0; an hour, its journal's (one per hour of the store).
        let journal_id = match cut {
            Cut::Daily => 0,
            Cut::Hourly => day as u64 * 24 + out.len() as u64 + 1,
        };
        let info = write_file(dir, batch, journal_id, seq, layout)
            .unwrap_or_else(|e| panic!("bench store, day {day}: {e}"));
        out.push(info);
    };
    for _ in 0..rows {
        let r = g.next_record();
        if cut == Cut::Hourly && r.time_start_ns >= hour_end {
            if !batch.is_empty() {
                flush(std::mem::take(&mut batch), &mut out);
            }
            while r.time_start_ns >= hour_end {
                hour_end += HOUR;
            }
        }
        batch.push_record(&r);
    }
    if !batch.is_empty() {
        flush(batch, &mut out);
    }
    out
}

/// Builds days `days` of the N-record store in `dir` (emptied first), cut as `cut` says,
/// on `threads` threads; returns the wall and CPU time (all threads).
pub fn build(
    dir: &Path,
    n: u64,
    days: Range<i64>,
    cut: Cut,
    threads: usize,
) -> (Duration, Duration) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let (t, c) = (Instant::now(), cpu());
    let next = AtomicI64::new(days.start);
    let written: Mutex<Vec<(i64, Vec<SegmentInfo>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let day = next.fetch_add(1, Ordering::Relaxed);
                if day >= days.end {
                    break;
                }
                // Provisional positions far apart per day: no two files share a name.
                let segs = write_day(dir, n, day, cut, 1_000_000 + day as u64 * 100);
                written
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((day, segs));
                eprint!(
                    "\rbench store: day {day} written ({:.0} s)",
                    t.elapsed().as_secs_f64()
                );
            });
        }
    });
    eprintln!();
    let mut written = written.into_inner().unwrap_or_else(|e| e.into_inner());
    written.sort_by_key(|(day, _)| *day);
    let mut manifest = Manifest::load(dir, None).expect("bench store manifest");
    for mut seg in written.into_iter().flat_map(|(_, segs)| segs) {
        // The file's chain position is its name's: renamed to the entry's (the bytes, and
        // so the hash, do not hold the name).
        let seq = manifest.entries().last().map_or(0, |e| e.seq + 1);
        let name = format!("seg-{seq:08}{}", &seg.file["seg-00000000".len()..]);
        std::fs::rename(dir.join(&seg.file), dir.join(&name)).expect("rename segment");
        seg.file = name;
        manifest
            .append(Body::Segment(seg))
            .expect("append segment entry");
    }
    (t.elapsed(), cpu() - c)
}

/// The store of days `days` at `dir`: reused while it verifies with the right rows and
/// segment count, else built (and the build time printed).
pub fn store(dir: &Path, n: u64, days: Range<i64>, cut: Cut) {
    let rows = rows_of(n, &days);
    let what = match cut {
        Cut::Daily => "merged days",
        Cut::Hourly => "hourly segments",
    };
    let segments = match cut {
        Cut::Daily => Some((days.end - days.start) as u64),
        Cut::Hourly => None,
    };
    if verify(dir, None).is_ok_and(|v| v.rows == rows && segments.is_none_or(|s| v.segments == s)) {
        println!(
            "query store ({what}): reusing {} ({rows} records, verified)",
            dir.display()
        );
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (wall, cpu_time) = build(dir, n, days.clone(), cut, threads);
    let t = Instant::now();
    let v = verify(dir, None)
        .unwrap_or_else(|e| panic!("{}: bench store does not verify: {e}", dir.display()));
    assert_eq!(v.rows, rows, "{}: rows of the bench store", dir.display());
    println!(
        "query store ({what}): built days {}..{} ({rows} records) in {:.0} s wall ({:.0} s CPU, \
         {threads} threads) = {}; verify (chain, every file's SHA-256) {:.1} s; load average {}",
        days.start,
        days.end,
        wall.as_secs_f64(),
        cpu_time.as_secs_f64(),
        rate(rows as f64, wall),
        t.elapsed().as_secs_f64(),
        load()
    );
}

/// The 1-minute load average, as `/proc/loadavg` gives it.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
