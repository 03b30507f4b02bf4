//! A full disk: the writer keeps accepting records (the agent keeps running and enforcing),
//! holds up to `buffer_records` in memory and counts what it drops beyond, reports the
//! condition at most once a minute, and writes everything it held once space returns.
//! Needs root (it mounts a small tmpfs).

#[path = "store_common/mod.rs"]
mod common;

use common::*;
use xdp_audit::store::query::{collect, Filter};
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::verify::verify;
use xdp_audit::store::{FakeClock, Store, StoreConfig};
use xdp_audit_lab::tmpfs::Tmpfs;

#[test]
fn a_full_disk_is_survived_reported_once_a_minute_and_writing_resumes() {
    let fs = Tmpfs::mount("256k");
    let dir = fs.path().join("log");
    let clock = FakeClock::new(T0);
    let mut cfg = StoreConfig::new(&dir);
    cfg.buffer_records = 2_000;
    cfg.segment_max_bytes = 1 << 30;
    let mut store =
        Store::open_with_clock(cfg, Box::new(clock.clone())).expect("open store on tmpfs");
    let mut g = TrafficGen::with_rate(8, T0, 100.0);
    let mut kept = Vec::new();

    // Fill the disk.
    let mut n = 0;
    while !store.status().degraded {
        n += 1;
        assert!(n < 200_000, "the 256 KiB tmpfs never filled up");
        let r = g.next_record();
        clock.set(r.time_start_ns);
        store.append(&r);
        kept.push(r);
    }
    let reports_at_full = store.status().reports;
    assert_eq!(
        reports_at_full, 1,
        "the condition is reported when it starts"
    );

    // Five minutes of load while full: accepted until the buffer bound, then dropped.
    let t_full = clock_now(&clock);
    let mut dropped_here = 0u64;
    for _ in 0..30_000 {
        let mut r = g.next_record();
        clock.advance(10_000_000);
        r.time_start_ns = clock_now(&clock);
        let before = store.status().dropped;
        store.append(&r);
        if store.status().dropped > before {
            dropped_here += 1;
        } else {
            kept.push(r);
        }
    }
    let s = store.status();
    let minutes = (clock_now(&clock) - t_full) / 60_000_000_000;
    assert!(s.degraded, "still full: {s:?}");
    assert!(
        s.buffered <= 2_000,
        "memory buffer exceeded its bound: {s:?}"
    );
    assert_eq!(s.dropped, dropped_here, "every drop is counted: {s:?}");
    assert!(
        dropped_here > 25_000,
        "records beyond the bound must be dropped: {s:?}"
    );
    assert!(
        s.reports <= 1 + minutes as u64 && s.reports >= minutes as u64,
        "{} reports in {minutes} minutes: at most one a minute, but not silent: {s:?}",
        s.reports
    );

    // Space returns: everything held is written, then writing goes on normally.
    fs.resize("64m");
    clock.advance(2_000_000_000);
    assert!(
        store.sync_now(),
        "writing did not resume after space returned: {:?}",
        store.status()
    );
    for _ in 0..100 {
        let r = g.next_record();
        clock.advance(10_000_000);
        store.append(&r);
        kept.push(r);
    }
    assert!(store.sync_now(), "sync after resuming");
    let s = store.status();
    assert!(!s.degraded && s.buffered == 0, "{s:?}");
    assert_eq!(
        s.durable,
        kept.len() as u64,
        "every kept record is durable: {s:?}"
    );
    assert!(store.seal_now(), "sealing after space returned");
    drop(store);
    verify(&dir, None).unwrap_or_else(|b| panic!("verify after disk full: {b}"));
    let got = canon(collect(&dir, &Filter::default()).expect("query"));
    assert_eq!(got.len(), kept.len(), "records found vs kept");
    assert_eq!(
        got,
        canon(kept),
        "the kept records are exactly the ones on disk"
    );
}

fn clock_now(c: &FakeClock) -> i64 {
    use xdp_audit::store::StoreClock;
    c.now_ns()
}

#[test]
fn a_store_that_cannot_seal_keeps_the_journal_and_seals_later() {
    let fs = Tmpfs::mount("1m");
    let dir = fs.path().join("log");
    let clock = FakeClock::new(T0);
    let mut store =
        Store::open_with_clock(StoreConfig::new(&dir), Box::new(clock.clone())).expect("open");
    let mut g = TrafficGen::with_rate(3, T0, 2.0);
    let mut all = Vec::new();
    for _ in 0..3_000 {
        let r = g.next_record();
        clock.set(r.time_start_ns);
        store.append(&r);
        all.push(r);
    }
    assert!(store.sync_now());
    // Fill the rest of the disk so the Parquet segment cannot be written.
    let filler = fs.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 2 << 20]);
    assert!(!store.seal_now(), "sealing cannot succeed on a full disk");
    assert_eq!(
        verify(&dir, None).map(|v| v.segments).unwrap_or(99),
        0,
        "no half segment may appear"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
    std::fs::remove_file(&filler).expect("free space");
    clock.advance(2_000_000_000);
    assert!(store.seal_now(), "sealing after space returned");
    drop(store);
    let v = verify(&dir, None).unwrap_or_else(|b| panic!("{b}"));
    assert!(v.segments >= 1, "{v:?}");
    assert_eq!(
        canon(collect(&dir, &Filter::default()).expect("query")),
        canon(all)
    );
}
