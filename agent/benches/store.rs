//! Audit-store benchmark: `cargo bench -p xdp-audit --bench store`.
//!
//! Prints, each with a baseline measured in the same run where one makes sense:
//! - records/s from decoded record to journal on one core (baseline: plain sequential write
//!   of the same bytes);
//! - sealing records/s (journal -> Parquet segment + manifest entry);
//! - bytes per record sealed on the generated mix (`xdp_audit::store::testgen`), against the
//!   journal and JSON Lines sizes of the same records;
//! - `query --ip` time over N records spread over 90 days (N from `XDP_AUDIT_BENCH_RECORDS`,
//!   default 100,000,000), as the agent keeps them (closed days merged into one segment
//!   each), warm and cold page cache, wall and CPU time, the best of 3 warm runs (baselines:
//!   the same query over hourly segments as sealed, and over them ignoring the address
//!   index; reading every segment file whole); and the time the store took to build;
//! - identity point lookups (`--ip`, `--mac`, `--port`, `--user`, `--domain`, `--nat`) over the
//!   merged days next to DuckDB on the same files, rows and count, and DuckDB on a copy
//!   without the Bloom filters (`store/lookups.rs`).
//!
//! - a restart after a crash: how long the store's open holds the start with a 1,000,000-record
//!   journal an earlier agent left, against the time the sealer thread then takes to seal it;
//!
//! `cargo bench -p xdp-audit --bench store -- journal seal reopen size query sealparts` selects parts
//! (`sealparts`: decode/sort/write breakdown of one seal; `XDP_AUDIT_BENCH_WARM_ONLY=1`: no
//! cold-cache runs). The N-record store of merged days is built once, day by day on every
//! core (`store/build.rs`), under `XDP_AUDIT_BENCH_DIR` (default
//! `/var/tmp/xdp-audit-bench-v8-N`, v8 = segment format 6 with name Bloom filters at 4 %) and
//! reused while it verifies; the hourly store beside it (`...-hourly-Dd`) holds the first D
//! days (`XDP_AUDIT_BENCH_HOURLY_DAYS`; default all 90 up to 10 M records, else 9).
//! `XDP_AUDIT_BENCH_DAYS=D` builds and queries only the first D days (suffix `-Dd`);
//! `XDP_AUDIT_BENCH_PAGE_ROWS` writes the merged days with pages of that many rows (directory
//! suffix `-pROWS`), to weigh a page size before the format takes it.

#[path = "store/build.rs"]
mod build;
#[path = "store/lookups.rs"]
mod lookups;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xdp_audit::record::FlowRecord;
use xdp_audit::store::columns::Columns;
use xdp_audit::store::journal::{self, encode_frame, frame};
use xdp_audit::store::manifest::Manifest;
use xdp_audit::store::query::{scan, Cidr, Filter, NatFilter};
use xdp_audit::store::seal::{seal_journal, write_segment};
use xdp_audit::store::segment;
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::verify::verify;
use xdp_audit::store::{compact, Store, StoreConfig};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const HOUR: i64 = 3_600_000_000_000;

/// CPU time of the whole process (all threads), user + system.
fn cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rate(n: f64, d: Duration) -> String {
    let r = n / d.as_secs_f64();
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("xdp-audit-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

fn dir_bytes(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn journal_throughput() {
    let n = 2_000_000usize;
    let mut g = TrafficGen::with_rate(1, T0, 1000.0);
    let recs: Vec<FlowRecord> = (0..n).map(|_| g.next_record()).collect();
    let dir = tmp("journal");
    let mut cfg = StoreConfig::new(&dir);
    cfg.segment_max_bytes = u64::MAX;
    let mut store = Store::open(cfg).expect("open store");
    let (t, c) = (Instant::now(), cpu());
    for r in &recs {
        store.append(r);
    }
    assert!(store.sync_now(), "sync");
    let (d_store, c_store) = (t.elapsed(), cpu() - c);
    let bytes = dir_bytes(&dir, "journal-");
    drop(store);
    // Baseline: the same bytes written sequentially in 256 KiB chunks, then one fsync.
    let mut buf = Vec::with_capacity(bytes as usize);
    for r in &recs {
        encode_frame(r, &mut buf);
    }
    let raw = dir.join("raw");
    let t = Instant::now();
    let mut f = std::fs::File::create(&raw).expect("create raw");
    for c in buf.chunks(256 * 1024) {
        f.write_all(c).expect("write raw");
    }
    f.sync_all().expect("fsync raw");
    let d_raw = t.elapsed();
    println!(
        "journal: {n} records in {:.3} s = {} on one core ({} per CPU-second, {:.1} bytes/record); \
         raw sequential write of the same {:.1} MB: {:.3} s = {:.0} MB/s; journal/raw time ratio {:.2}",
        d_store.as_secs_f64(),
        rate(n as f64, d_store),
        rate(n as f64, c_store),
        bytes as f64 / n as f64,
        buf.len() as f64 / 1e6,
        d_raw.as_secs_f64(),
        buf.len() as f64 / 1e6 / d_raw.as_secs_f64(),
        d_store.as_secs_f64() / d_raw.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A crash left a 1,000,000-record journal: the open returns (the agent can attach and
/// record) before the sealer thread has read it; the seal's own time is the baseline.
fn reopen_with_leftover() {
    let n = 1_000_000usize;
    let dir = tmp("reopen");
    let config = || {
        let mut cfg = StoreConfig::new(&dir);
        cfg.segment_max_bytes = u64::MAX;
        cfg
    };
    let mut store = Store::open(config()).expect("open store");
    let mut g = TrafficGen::with_rate(3, T0, 1000.0);
    for _ in 0..n {
        store.append(&g.next_record());
    }
    assert!(store.sync_now(), "sync");
    let bytes = dir_bytes(&dir, "journal-");
    drop(store); // no close, no seal: what a kill leaves
    let t = Instant::now();
    let mut store = Store::open(config()).expect("reopen store");
    let opened = t.elapsed();
    assert_eq!(store.left_at_open(), 1, "the journal left");
    assert!(store.wait_idle(), "the sealer thread seals it");
    let sealed = t.elapsed();
    assert_eq!(store.status().sealed, 1, "sealed once");
    drop(store);
    println!(
        "reopen after a crash: a {n}-record journal ({:.1} MB) left; the open returned in {:.3} s, \
         the sealer thread sealed it {:.3} s after the open began; open/seal time ratio {:.4}",
        bytes as f64 / 1e6,
        opened.as_secs_f64(),
        sealed.as_secs_f64(),
        opened.as_secs_f64() / sealed.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rounds of each seal measurement; the minimum is the figure (the machine is shared, so
/// other rounds measure the neighbours as much as the seal).
const SEAL_ROUNDS: usize = 5;

fn seal_throughput() {
    // One hour of a busy gateway (300 flows/s), sealed from a journal on disk.
    let src = tmp("seal-src");
    let mut g = TrafficGen::with_rate(2, T0, 300.0);
    let mut cfg = StoreConfig::new(&src);
    cfg.segment_max_bytes = u64::MAX;
    let mut store = Store::open(cfg).expect("open store");
    let mut n = 0u64;
    while g.now_ns() < T0 + HOUR - 1_000_000_000 {
        store.append(&g.next_record());
        n += 1;
    }
    assert!(store.sync_now());
    drop(store);
    let journal = std::fs::read_dir(&src)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".wal"))
        .expect("journal");
    let name = journal.file_name().expect("journal name").to_owned();
    let mut rounds = Vec::new();
    let mut size = 0;
    for round in 0..SEAL_ROUNDS {
        let dir = tmp(&format!("seal-{round}"));
        std::fs::copy(&journal, dir.join(&name)).expect("copy journal");
        let mut manifest = Manifest::load(&dir, None).expect("manifest");
        let (t, c) = (Instant::now(), cpu());
        let info = seal_journal(&dir, &dir.join(&name), &mut manifest)
            .expect("seal")
            .segment
            .expect("segment");
        rounds.push((t.elapsed(), cpu() - c));
        size = info.size;
        let _ = std::fs::remove_dir_all(&dir);
    }
    let d = rounds.iter().map(|r| r.0).min().unwrap_or_default();
    let dc = rounds.iter().map(|r| r.1).min().unwrap_or_default();
    let all: Vec<String> = rounds
        .iter()
        .map(|(w, c)| format!("{:.3}/{:.3}", w.as_secs_f64(), c.as_secs_f64()))
        .collect();
    println!(
        "seal: {n} records (one hour at 300 flows/s), min of {SEAL_ROUNDS} rounds: {:.3} s = {} wall, \
         {:.3} s CPU on all threads = {} per CPU-second (read+decode journal, sort, Parquet zstd \
         write with columns encoded in parallel, SHA-256, fsync, manifest append); {:.2} \
         bytes/record; rounds wall/CPU s: {}",
        d.as_secs_f64(),
        rate(n as f64, d),
        dc.as_secs_f64(),
        rate(n as f64, dc),
        size as f64 / n as f64,
        all.join(" ")
    );
    let _ = std::fs::remove_dir_all(&src);
}

/// Decode / sort / write breakdown of sealing 1,000,000 records, min of [`SEAL_ROUNDS`];
/// baseline in the same run: decoding the same journal into records (the query path).
fn seal_parts() {
    let mut g = TrafficGen::with_rate(2, T0, 300.0);
    let mut buf = frame::header(0).to_vec();
    for _ in 0..1_000_000 {
        encode_frame(&g.next_record(), &mut buf);
    }
    let dir = tmp("parts");
    let min = |v: &[(Duration, Duration)]| {
        (
            v.iter().map(|r| r.0).min().unwrap_or_default(),
            v.iter().map(|r| r.1).min().unwrap_or_default(),
        )
    };
    let (mut records, mut decode, mut sort, mut write) = (vec![], vec![], vec![], vec![]);
    for _ in 0..SEAL_ROUNDS {
        let (t, c) = (Instant::now(), cpu());
        let s = journal::scan::<Vec<FlowRecord>>(&buf);
        records.push((t.elapsed(), cpu() - c));
        drop(s);
        let (t, c) = (Instant::now(), cpu());
        let s = journal::scan::<Columns>(&buf);
        decode.push((t.elapsed(), cpu() - c));
        let (t, c) = (Instant::now(), cpu());
        let rows = s.records.into_row_order().expect("order");
        sort.push((t.elapsed(), cpu() - c));
        let (t, c) = (Instant::now(), cpu());
        segment::write(&dir.join("x.parquet"), &rows, 1, segment::Layout::SEALED).expect("write");
        write.push((t.elapsed(), cpu() - c));
    }
    for (what, v) in [
        ("decode journal into columns", &decode),
        ("sort (order + gather columns)", &sort),
        ("write (encode, zstd, fsync)", &write),
        ("baseline: decode journal into records", &records),
    ] {
        let (w, c) = min(v);
        println!(
            "sealparts: 1M records, {what}: {:.3} s wall, {:.3} s CPU (min of {SEAL_ROUNDS})",
            w.as_secs_f64(),
            c.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn size_per_record() {
    let dir = tmp("size");
    for (label, per_sec) in [
        ("13 flows/s (100 M records in 90 days)", 13.0),
        ("100 flows/s", 100.0),
        ("1000 flows/s", 1000.0),
    ] {
        // Baseline in the same run: the same records without the attribution (the records
        // of segment format 4).
        let mut bare = TrafficGen::with_rate(3, T0, per_sec).without_attribution();
        let mut bare_recs = Vec::new();
        while bare.now_ns() < T0 + HOUR {
            bare_recs.push(bare.next_record());
        }
        let mut manifest = Manifest::load(&dir, None).expect("manifest");
        let bare_info =
            write_segment(&dir, bare_recs.iter().collect(), 1, &mut manifest).expect("segment");
        let bare_per = bare_info.size as f64 / bare_recs.len() as f64;
        let mut g = TrafficGen::with_rate(3, T0, per_sec);
        let mut recs = Vec::new();
        while g.now_ns() < T0 + HOUR {
            recs.push(g.next_record());
        }
        let n = recs.len();
        let mut journal = Vec::new();
        let mut jsonl = Vec::new();
        for r in &recs {
            encode_frame(r, &mut journal);
            serde_json::to_writer(&mut jsonl, r).expect("json");
            jsonl.push(b'\n');
        }
        let info = write_segment(&dir, recs.iter().collect(), 2, &mut manifest).expect("segment");
        let per = info.size as f64 / n as f64;
        if per_sec == 13.0 {
            // Baseline in the same run: the same records with the outside port drawn at
            // random, as the generator drew it before it modelled MASQUERADE.
            let mut rng = xdp_audit::store::testgen::Rng::new(99);
            let random: Vec<FlowRecord> = recs
                .iter()
                .cloned()
                .map(|mut r| {
                    if r.attr.nat_port.is_some() {
                        r.attr.nat_port = Some(1024 + rng.below(65536 - 1024) as u16);
                    }
                    r
                })
                .collect();
            let base =
                write_segment(&dir, random.iter().collect(), 3, &mut manifest).expect("segment");
            let (now, before) = (
                column_bytes(&dir.join(&info.file)),
                column_bytes(&dir.join(&base.file)),
            );
            let parts: Vec<String> = now
                .iter()
                .zip(&before)
                .map(|((c, b), (_, b0))| {
                    let (x, x0) = (*b as f64 / n as f64, *b0 as f64 / n as f64);
                    if (x - x0).abs() >= 0.005 {
                        format!("{c} {x:.3} (random outside ports: {x0:.3})")
                    } else {
                        format!("{c} {x:.3}")
                    }
                })
                .collect();
            println!(
                "size: bytes/record by part, one hour at {label}: {}; total {per:.2} \
                 (random outside ports: {:.2})",
                parts.join(", "),
                base.size as f64 / n as f64
            );
        }
        println!(
            "size: one hourly segment at {label}: {n} records, {:.2} bytes/record sealed \
             (without the attribution: {bare_per:.2}, x{:.3}); \
             journal {:.1} B/rec (x{:.1}), JSON Lines {:.1} B/rec (x{:.1})",
            per,
            per / bare_per,
            journal.len() as f64 / n as f64,
            journal.len() as f64 / info.size as f64,
            jsonl.len() as f64 / n as f64,
            jsonl.len() as f64 / info.size as f64
        );
    }
    size_of_a_merged_day();
    println!(
        "size: mix = 250 LAN clients, 20,000 remote hosts (skewed), 20% IPv6, 70% TCP / 25% UDP / 5% ICMP, \
         10% VLAN-tagged, 2 interfaces, ns timestamps, heavy-tailed packet counts (see store::testgen)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bytes of each column chunk (summed over row groups, page headers included), of the tail
/// blobs and of the footer of the segment at `path`.
fn column_bytes(path: &Path) -> Vec<(String, u64)> {
    use parquet::file::reader::FileReader;
    let f = std::fs::File::open(path).expect("open segment");
    let size = f.metadata().expect("stat").len();
    let r = parquet::file::reader::SerializedFileReader::new(f).expect("parquet");
    let meta = r.metadata();
    let mut out: Vec<(String, u64)> = (0..segment::col::COUNT)
        .map(|c| {
            let bytes = meta
                .row_groups()
                .iter()
                .map(|g| g.column(c).byte_range().1)
                .sum();
            (segment::column_name(c).to_owned(), bytes)
        })
        .collect();
    let mut data_end = out.iter().map(|c| c.1).sum::<u64>() + 4;
    // The identity columns' Bloom filters (`segment::bloom`), between the row groups.
    let blooms: u64 = meta
        .row_groups()
        .iter()
        .flat_map(|g| g.columns())
        .filter_map(|c| c.bloom_filter_length())
        .map(|l| l.max(0) as u64)
        .sum();
    data_end += blooms;
    out.push(("bloom".to_owned(), blooms));
    for key in ["xdp-audit.addr-index", "xdp-audit.page-table"] {
        let len = meta
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == key))
            .and_then(|kv| kv.value.as_deref()?.split_once('+')?.1.parse::<u64>().ok())
            .unwrap_or(0);
        data_end += len;
        out.push((key.trim_start_matches("xdp-audit.").to_owned(), len));
    }
    out.push(("footer".to_owned(), size.saturating_sub(data_end)));
    out
}

/// Bytes per record of one day at 13 flows/s (the density of the 100 M-record store) sealed
/// hourly and merged as the agent merges a closed day, with and without the attribution (the
/// baseline: the records of segment format 4), so the size target is measured where it
/// applies without building the 100 M-record store.
fn size_of_a_merged_day() {
    let mut per = Vec::new();
    for attr in [false, true] {
        let dir = tmp(&format!("day-{attr}"));
        let mut g = TrafficGen::with_rate(3, T0, 13.0);
        if !attr {
            g = g.without_attribution();
        }
        let mut manifest = Manifest::load(&dir, None).expect("manifest");
        let mut n = 0u64;
        for h in 0..24 {
            let mut batch = Columns::default();
            while g.now_ns() < T0 + (h + 1) * HOUR {
                batch.push_record(&g.next_record());
                n += 1;
            }
            let id = manifest.entries().len() as u64 + 1;
            write_segment(&dir, batch, id, &mut manifest).expect("segment");
        }
        let hourly = dir_bytes(&dir, "seg-");
        let now = T0 + 2 * 24 * HOUR;
        compact::run(&dir, &mut manifest, now, compact::DEFAULT_MAX_ROWS).expect("compact");
        compact::run(&dir, &mut manifest, now, compact::DEFAULT_MAX_ROWS).expect("delete inputs");
        let merged = dir_bytes(&dir, "seg-");
        per.push((hourly as f64 / n as f64, merged as f64 / n as f64, n));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let ((bare_h, bare_m, _), (h, m, n)) = (per[0], per[1]);
    println!(
        "size: one day at 13 flows/s ({n} records) with the attribution: {h:.2} bytes/record in \
         hourly segments, {m:.2} merged; without it: {bare_h:.2} hourly, {bare_m:.2} merged \
         (x{:.3} merged)",
        m / bare_m
    );
}

fn drop_caches() -> bool {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", b"3\n").is_ok()
}

/// Wall time, CPU time (all threads) and matches of one query.
fn time_query(dir: &Path, f: &Filter) -> (Duration, Duration, u64) {
    let (t, c) = (Instant::now(), cpu());
    let mut n = 0u64;
    scan(
        dir,
        f,
        xdp_audit::store::query::default_threads(),
        &mut |_| {
            n += 1;
            Ok(())
        },
        &mut |_, _| {},
    )
    .expect("query");
    (t.elapsed(), cpu() - c, n)
}

/// Wall time, CPU time (all threads) and matches of one `query --count`.
fn time_count(dir: &Path, f: &Filter) -> (Duration, Duration, u64) {
    let (t, c) = (Instant::now(), cpu());
    let stats = xdp_audit::store::query::count(
        dir,
        f,
        xdp_audit::store::query::default_threads(),
        &mut |_, _| {},
    )
    .expect("count");
    (t.elapsed(), cpu() - c, stats.matched)
}

/// The fastest of `rounds` runs (the machine is shared: the minimum is the least disturbed),
/// with the spread of wall times, so the noise is visible.
fn best_of(rounds: usize, run: &mut dyn FnMut() -> (Duration, Duration, u64)) -> String {
    let mut runs: Vec<(Duration, Duration, u64)> = (0..rounds).map(|_| run()).collect();
    runs.sort();
    let (d, c, m) = runs[0];
    let max = runs[runs.len() - 1].0;
    format!(
        "{:.3} s wall ({:.3} s CPU; min of {rounds}, max {:.3} s), {m} matches",
        d.as_secs_f64(),
        c.as_secs_f64(),
        max.as_secs_f64()
    )
}

fn query_speed() {
    let n: u64 = std::env::var("XDP_AUDIT_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(100_000_000);
    // `XDP_AUDIT_BENCH_DAYS=D`: only the first D days of the N-record store (at its
    // density), for A/B runs of a layout that cost a tenth of the whole.
    let days: i64 = std::env::var("XDP_AUDIT_BENCH_DAYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(build::DAYS)
        .clamp(1, build::DAYS);
    let records = build::rows_of(n, &(0..days));
    let daily = std::env::var_os("XDP_AUDIT_BENCH_DIR")
        .map(PathBuf::from)
        // The segment format version is in the name, so a store of an older format is not
        // reused (it would still verify, and be timed without its index).
        .unwrap_or_else(|| {
            let layout = build::daily_layout();
            let pages = if layout == segment::Layout::COMPACTED {
                String::new()
            } else {
                format!("-p{}", layout.page_rows)
            };
            let part = if days < build::DAYS {
                format!("-{days}d")
            } else {
                String::new()
            };
            PathBuf::from(format!("/var/tmp/xdp-audit-bench-v8-{n}{part}{pages}"))
        });
    // The hourly store (the "as sealed" baselines) holds the first days only past 10 M
    // records (its build and its disk are the merged store's again): 9 days = 10 %.
    let hourly_days: i64 = std::env::var("XDP_AUDIT_BENCH_HOURLY_DAYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if n > 10_000_000 { 9 } else { build::DAYS })
        .clamp(1, days);
    let mut hourly = daily.as_os_str().to_owned();
    hourly.push(format!("-hourly-{hourly_days}d"));
    let hourly = PathBuf::from(hourly);
    let hourly_what = format!(
        "hourly segments of days 0..{hourly_days} ({} records)",
        build::rows_of(n, &(0..hourly_days))
    );
    build::store(&daily, n, 0..days, build::Cut::Daily);
    build::store(&hourly, n, 0..hourly_days, build::Cut::Hourly);
    for (dir, what) in [(&daily, "merged days"), (&hourly, hourly_what.as_str())] {
        let v = verify(dir, None).expect("bench store verifies");
        let seg_bytes = dir_bytes(dir, "seg-");
        println!(
            "query store ({what}): {} records in {} segments, {:.2} GB, {:.2} bytes/record",
            v.rows,
            v.segments,
            seg_bytes as f64 / 1e9,
            seg_bytes as f64 / v.rows as f64
        );
    }
    // Baseline: read every segment file whole (what a scan without pruning must at least do).
    let read_all = |dir: &Path| {
        let t = Instant::now();
        for e in std::fs::read_dir(dir).expect("list").filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with("seg-") {
                let _ = std::fs::read(e.path()).expect("read");
            }
        }
        t.elapsed()
    };
    let client: std::net::IpAddr = "10.0.0.20".parse().expect("ip");
    let mut g = TrafficGen::with_rate(7, T0, 1.0);
    let remote = (0..50)
        .map(|_| g.next_record().dst_ip)
        .last()
        .expect("remote");
    let absent: std::net::IpAddr = "198.51.100.77".parse().expect("ip");
    let nat = nat_sample(n, days / 2);
    let cases = [
        ("LAN client (in every hour)", client),
        ("remote host", remote),
        ("absent address", absent),
    ];
    // `XDP_AUDIT_BENCH_WARM_ONLY=1` skips the cold-cache runs (dropping the page cache slows
    // everything else on a shared machine).
    let warm_only = std::env::var_os("XDP_AUDIT_BENCH_WARM_ONLY").is_some();
    for cold in [false, true] {
        if cold && warm_only {
            continue;
        }
        if cold && !drop_caches() {
            println!("query (cold cache): skipped, cannot write /proc/sys/vm/drop_caches");
            continue;
        }
        let base = read_all(&daily);
        let label = if cold { "cold" } else { "warm" };
        let rounds = if cold { 1 } else { 3 };
        let timed = |dir: &Path, f: &Filter| {
            best_of(rounds, &mut || {
                if cold {
                    drop_caches();
                }
                time_query(dir, f)
            })
        };
        for (what, ip) in cases {
            let f = Filter {
                cidr: Some(Cidr::host(ip)),
                ..Filter::default()
            };
            // Baselines in the same run: the hourly segments as sealed, with and without
            // their address index (the path of segments written before the index).
            let full = Filter {
                ignore_index: true,
                ..f.clone()
            };
            let compacted = timed(&daily, &f);
            let as_sealed = timed(&hourly, &f);
            let unindexed = timed(&hourly, &full);
            println!(
                "query --ip {ip} ({what}), {label} cache, over {records} records: compacted {compacted}; \
                 baselines: {hourly_what} {as_sealed}; the same without the index {unindexed}; \
                 read of all compacted segment bytes: {:.3} s",
                base.as_secs_f64(),
            );
        }
        // The NAT question, with and without the instant; baseline in the same run: the
        // `--ip` query of the LAN client above.
        // Baseline in the same run: the same query without the index (`--nat` as main
        // answers it: the nat_ip and nat_port columns scanned in every row group).
        for (what, f) in nat_cases(&nat) {
            let full = Filter {
                ignore_index: true,
                ..f.clone()
            };
            let compacted = timed(&daily, &f);
            let unindexed = timed(&daily, &full);
            let as_sealed = timed(&hourly, &f);
            println!(
                "query {what}, {label} cache, over {records} records: compacted {compacted}; \
                 baselines: compacted without the index {unindexed}; {hourly_what} {as_sealed}"
            );
        }
        if !cold {
            let sample = identity_sample(n, days / 2);
            let mut ls = lookups::lookups(&sample, &nat);
            ls.push(lookups::ip("remote host", remote));
            ls.push(lookups::ip("absent address", absent));
            lookups::report(&daily, records, &ls, &mut |f, rounds, count| {
                if count {
                    best_of(rounds, &mut || time_count(&daily, f))
                } else {
                    best_of(rounds, &mut || time_query(&daily, f))
                }
            });
        }
        // The lawful question: one address in a two-hour window.
        let f = Filter {
            cidr: Some(Cidr::host(client)),
            since_ns: Some(T0 + 40 * 24 * HOUR + 14 * HOUR),
            until_ns: Some(T0 + 40 * 24 * HOUR + 16 * HOUR),
            ..Filter::default()
        };
        let compacted = timed(&daily, &f);
        let as_sealed = timed(&hourly, &f);
        println!(
            "query --ip {client} --since day40T14:00 --until day40T16:00, {label} cache: \
             compacted {compacted}; {hourly_what} {as_sealed}"
        );
    }
}

/// The first record of day `day` of the bench store (the middle of its days) that `want`s.
fn sample(n: u64, day: i64, want: impl Fn(&FlowRecord) -> bool) -> FlowRecord {
    let mut g = build::day_gen(n, day);
    loop {
        let r = g.next_record();
        if want(&r) {
            return r;
        }
    }
}

/// A record with a NAT outside tuple: the `--nat` cases.
fn nat_sample(n: u64, day: i64) -> FlowRecord {
    sample(n, day, |r| r.attr.nat_port.is_some())
}

/// A record with a NAT outside tuple, an account and a domain: the identity lookups.
fn identity_sample(n: u64, day: i64) -> FlowRecord {
    sample(n, day, |r| {
        r.attr.nat_port.is_some() && r.attr.user.is_some() && r.attr.domain.is_some()
    })
}

/// `--nat IP:PORT` over the whole store, with `--at` the flow's start, and a port no flow has.
fn nat_cases(r: &FlowRecord) -> Vec<(String, Filter)> {
    let (Some(ip), Some(port)) = (r.attr.nat_ip, r.attr.nat_port) else {
        return Vec::new();
    };
    let tuple = |port| Some(NatFilter { ip, port });
    vec![
        (
            format!("--nat {ip}:{port}"),
            Filter {
                nat: tuple(Some(port)),
                ..Filter::default()
            },
        ),
        (
            format!("--nat {ip}:{port} --at (a flow's start)"),
            Filter {
                nat: tuple(Some(port)),
                since_ns: Some(r.time_start_ns),
                until_ns: Some(r.time_start_ns + 1),
                ..Filter::default()
            },
        ),
        (
            "--nat 198.51.100.9:4242 (an absent outside address)".to_owned(),
            Filter {
                nat: Some(NatFilter {
                    ip: "198.51.100.9".parse().expect("ip"),
                    port: Some(4242),
                }),
                ..Filter::default()
            },
        ),
    ]
}

fn main() {
    // `cargo bench` passes `--bench`; other arguments select parts (journal, seal, reopen, size,
    // query).
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |p: &str| args.is_empty() || args.iter().any(|a| a == p);
    println!(
        "xdp-audit store benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if want("journal") {
        journal_throughput();
    }
    if want("seal") {
        seal_throughput();
    }
    if want("reopen") {
        reopen_with_leftover();
    }
    if want("sealparts") {
        seal_parts();
    }
    if want("size") {
        size_per_record();
    }
    if want("query") {
        query_speed();
    }
}
