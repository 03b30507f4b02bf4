//! A full disk: the writer keeps accepting records (the agent keeps running and enforcing),
//! holds up to `buffer_records` in memory and counts what it drops beyond, reports the
//! condition at most once a minute, and writes everything it held once space returns.
//! Needs root (it mounts a small tmpfs).

#[path = "store_common/mod.rs"]
mod common;

use common::*;
use xdp_audit::sink::RecordSink;
use xdp_audit::store::query::{collect, Filter};
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::verify::verify;
use xdp_audit::store::{FakeClock, Store, StoreConfig};
use xdp_audit::testlog::logged;
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

/// Fills the tmpfs with one file, page by page until it refuses more; returns the file.
fn fill_up(fs: &Tmpfs) -> std::path::PathBuf {
    let filler = fs.path().join("filler");
    let mut f = std::fs::File::create(&filler).expect("create the filler");
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    filler
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

/// Journal ids of the journals in `dir`, oldest first.
fn journal_ids(dir: &std::path::Path) -> Vec<u64> {
    xdp_audit::store::seal::list_journals(dir)
        .unwrap_or_else(|e| panic!("list the journals in {}: {e}", dir.display()))
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// A full disk is the store's condition, not the journal's fault: seals that fail on it again
/// and again never pass a journal over as unsealable (which would let the ones behind it seal
/// out of chain order); the store shows degraded meanwhile; once space returns every journal
/// seals, in order.
#[test]
fn seals_that_meet_a_full_disk_again_and_again_pass_no_journal_over_and_seal_in_order() {
    const PAGE: usize = 4096;
    let fs = Tmpfs::mount("1m");
    let dir = fs.path().join("log");
    let clock = FakeClock::new(T0);
    let mut store = open(&dir, &clock);
    let mut g = TrafficGen::with_rate(5, T0, 2.0);
    let mut all = Vec::new();
    // Twenty records (about 2 KB) fit in the page a new journal's header takes.
    let mut append = |store: &mut Store, all: &mut Vec<_>| {
        for _ in 0..20 {
            let r = g.next_record();
            clock.set(r.time_start_ns);
            store.append(&r);
            all.push(r);
        }
        assert!(store.sync_now(), "the journal's own page holds its records");
    };
    append(&mut store, &mut all);
    // Fill the disk with one-page files: removing one frees exactly a new journal's page.
    let mut fillers = Vec::new();
    loop {
        let f = fs.path().join(format!("filler-{}", fillers.len()));
        match std::fs::write(&f, [0u8; PAGE]) {
            Ok(()) => fillers.push(f),
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::ENOSPC),
                    "filling the disk: {e}"
                );
                let _ = std::fs::remove_file(&f);
                break;
            }
        }
        assert!(fillers.len() < 1024, "a 1 MiB tmpfs holds fewer pages");
    }
    for round in 1..=4 {
        let page = fillers.pop().expect("a filler page to free");
        std::fs::remove_file(&page).unwrap_or_else(|e| panic!("free {}: {e}", page.display()));
        clock.advance(2_000_000_000);
        assert!(
            !store.seal_now(),
            "round {round}: no segment fits on the full disk"
        );
        let s = store.status();
        assert_eq!(
            s.unsealable, 0,
            "round {round}: a full disk passes no journal over: {s:?}"
        );
        assert_eq!(
            s.unsealed, round,
            "round {round}: every journal waits: {s:?}"
        );
        assert!(s.degraded, "round {round}: the full disk shows: {s:?}");
        append(&mut store, &mut all);
    }
    let waiting = journal_ids(&dir);
    assert_eq!(waiting.len(), 5, "four waiting journals and the live one");
    for f in &fillers {
        std::fs::remove_file(f).unwrap_or_else(|e| panic!("free {}: {e}", f.display()));
    }
    clock.advance(2_000_000_000);
    assert!(store.seal_now(), "sealing after space returned");
    let s = store.status();
    assert_eq!(
        (s.sealed, s.unsealed, s.unsealable, s.degraded),
        (5, 0, 0, false),
        "{s:?}"
    );
    let sealed: Vec<u64> = live(&dir).iter().map(|seg| seg.journal_id).collect();
    assert_eq!(sealed, waiting, "the journals sealed in chain order");
    drop(store);
    verify(&dir, None).unwrap_or_else(|b| panic!("verify after the disk was full: {b}"));
    assert_eq!(
        canon(collect(&dir, &Filter::default()).expect("query")),
        canon(all)
    );
}

/// A compaction pass that meets a full disk reports the disk, not a day it could not merge
/// (which says "a changed or damaged segment, run verify"); it merges once space returns.
#[test]
fn a_compaction_that_meets_a_full_disk_fails_no_day_and_merges_once_space_returns() {
    use xdp_audit::store::compact;
    use xdp_audit::store::manifest::Manifest;
    let fs = Tmpfs::mount("4m");
    let dir = fs.path().join("log");
    // Three hours of one day, sealed hour by hour: one merge due once the day is over.
    let start = T0.div_euclid(DAY) * DAY + HOUR;
    let clock = FakeClock::new(start);
    let all = fill(&dir, &clock, start, 3, 2.0, 9, true);
    let segments = live(&dir).len();
    assert!(segments >= 3, "{segments} segments");
    let filler = fs.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 8 << 20]);
    let mut manifest = Manifest::load(&dir, None).expect("load the manifest");
    let later = start + 2 * DAY;
    let err = compact::run(&dir, &mut manifest, later, compact::DEFAULT_MAX_ROWS)
        .expect_err("no merged segment fits on the full disk");
    assert!(err.is_disk_full(), "reported as the disk being full: {err}");
    assert!(
        err.failed_groups().is_empty(),
        "no day counts as failed: {err}"
    );
    assert_eq!(live(&dir).len(), segments, "the segments stay as sealed");
    std::fs::remove_file(&filler).expect("free space");
    let merged = compact::run(&dir, &mut manifest, later, compact::DEFAULT_MAX_ROWS)
        .unwrap_or_else(|e| panic!("compaction after space returned: {e}"));
    assert_eq!(merged, 1, "the day is merged");
    verify(&dir, None).unwrap_or_else(|b| panic!("verify after the disk was full: {b}"));
    assert_eq!(
        canon(collect(&dir, &Filter::default()).expect("query")),
        canon(all)
    );
}

/// Bytes free on the filesystem of `path`.
fn free_bytes(path: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a zeroed statvfs is a valid out-parameter; `c` is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0, "statvfs");
    s.f_bavail * s.f_frsize
}

/// A compaction whose merged segment fits but whose manifest entry does not (the disk fills
/// between the two) leaves no unlisted file behind: tried at every page of free space around
/// the merged segment's size. The old code left the merged file unlisted at the chain's next
/// position; the next seal took that position and `verify` failed for good.
#[test]
fn a_compaction_whose_manifest_entry_meets_a_full_disk_leaves_no_unlisted_segment() {
    use xdp_audit::store::compact;
    use xdp_audit::store::manifest::Manifest;
    let fs = Tmpfs::mount("4m");
    let dir = fs.path().join("log");
    let start = T0.div_euclid(DAY) * DAY + HOUR;
    let clock = FakeClock::new(start);
    fill(&dir, &clock, start, 3, 0.5, 11, true);
    let inputs: u64 = live(&dir).iter().map(|s| s.size).sum();
    let later = start + 2 * DAY;
    let filler = fs.path().join("filler");
    let page = 4096;
    let mut merged = false;
    let mut tried = 0;
    // From well under the inputs' size (the merged file is a little smaller) up.
    let mut room = (inputs / 2) / page * page;
    while !merged && room < inputs + 64 * page {
        let _ = std::fs::remove_file(&filler);
        let free = free_bytes(fs.path());
        if free > room {
            std::fs::write(&filler, vec![0u8; (free - room) as usize]).expect("fill");
        }
        let mut manifest = Manifest::load(&dir, None).expect("load the manifest");
        match compact::run(&dir, &mut manifest, later, compact::DEFAULT_MAX_ROWS) {
            Ok(n) => merged = n == 1,
            Err(e) => assert!(e.is_disk_full(), "room {room}: {e}"),
        }
        tried += 1;
        let listed: std::collections::HashSet<String> =
            live(&dir).into_iter().map(|s| s.file).collect();
        let unlisted: Vec<String> = std::fs::read_dir(&dir)
            .expect("list")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("seg-") && !listed.contains(n))
            .collect();
        assert!(
            merged || unlisted.is_empty(),
            "room {room}: a failed compaction left {unlisted:?}"
        );
        room += page;
    }
    std::fs::remove_file(&filler).ok();
    assert!(merged && tried > 2, "merged after {tried} tries");
    verify(&dir, None).unwrap_or_else(|b| panic!("verify after the full disk: {b}"));
}

/// A store opened on a disk that is already full (the agent restarted while it was): the open
/// succeeds (the agent must start and enforce its lists), the store shows degraded and holds
/// records in memory, and once space returns they are written behind the earlier records and
/// the chain verifies.
#[test]
fn a_store_opened_on_a_full_disk_starts_degraded_and_writes_once_space_returns() {
    let fs = Tmpfs::mount("1m");
    let dir = fs.path().join("log");
    let clock = FakeClock::new(T0);
    let mut g = TrafficGen::with_rate(5, T0, 2.0);
    let mut all = Vec::new();
    {
        let mut store = open(&dir, &clock);
        for _ in 0..500 {
            let r = g.next_record();
            clock.set(r.time_start_ns);
            store.append(&r);
            all.push(r);
        }
        assert!(store.sync_now(), "the first run writes");
    }
    let filler = fill_up(&fs);
    clock.advance(1_000_000_000);
    let mut store = Store::open_with_clock(StoreConfig::new(&dir), Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("a full disk must not stop the store from opening: {e}"));
    for _ in 0..300 {
        let mut r = g.next_record();
        clock.advance(10_000_000);
        r.time_start_ns = clock_now(&clock);
        store.append(&r);
        all.push(r);
    }
    assert!(!store.sync_now(), "nothing can be written yet");
    let s = store.status();
    assert!(s.degraded && s.buffered == 300 && s.dropped == 0, "{s:?}");
    // The records stage keeps the flow table and its ledger while this fails.
    assert!(
        RecordSink::flush(&mut store).is_err(),
        "a flush says the records are held in memory"
    );
    std::fs::remove_file(&filler).expect("free the disk");
    clock.advance(2_000_000_000);
    assert!(store.sync_now(), "writing resumes: {:?}", store.status());
    RecordSink::flush(&mut store).expect("a flush with nothing held in memory");
    assert_eq!(store.status().durable, 300, "{:?}", store.status());
    assert!(store.seal_now(), "sealing after space returned");
    drop(store);
    verify(&dir, None).unwrap_or_else(|b| panic!("verify after a start on a full disk: {b}"));
    assert_eq!(
        canon(collect(&dir, &Filter::default()).expect("query")),
        canon(all)
    );
}

/// A store stopped (or killed) on a full disk before its journal could be made leaves no
/// empty journal: a journal is named only once its header is on disk, so the next start
/// sets nothing aside into `quarantine/` (which raises `XA-STORE-DAMAGED`) and leaves no
/// temporary file.
#[test]
fn a_stop_on_a_full_disk_before_the_journal_was_made_leaves_nothing_to_set_aside() {
    let fs = Tmpfs::mount("1m");
    let dir = fs.path().join("log");
    let clock = FakeClock::new(T0);
    let mut g = TrafficGen::with_rate(6, T0, 2.0);
    let mut written = Vec::new();
    {
        let mut store = open(&dir, &clock);
        for _ in 0..200 {
            let r = g.next_record();
            clock.set(r.time_start_ns);
            store.append(&r);
            written.push(r);
        }
        assert!(store.sync_now(), "the first run writes");
    }
    let filler = fill_up(&fs);
    clock.advance(1_000_000_000);
    {
        let mut store = open(&dir, &clock);
        for _ in 0..100 {
            let mut r = g.next_record();
            clock.advance(10_000_000);
            r.time_start_ns = clock_now(&clock);
            store.append(&r);
        }
        assert!(!store.sync_now(), "nothing can be written yet");
    }
    let names = |d: &std::path::Path| -> Vec<(String, u64)> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| {
                    let e = e.ok()?;
                    Some((e.file_name().into_string().ok()?, e.metadata().ok()?.len()))
                })
                .collect()
            })
            .unwrap_or_default()
    };
    let left = names(&dir);
    assert!(
        !left
            .iter()
            .any(|(n, len)| n.starts_with(".tmp-") || (n.starts_with("journal-") && *len == 0)),
        "an empty journal or a temporary file left by the stop: {left:?}"
    );
    std::fs::remove_file(&filler).expect("free the disk");
    clock.advance(1_000_000_000);
    let mut store = open(&dir, &clock);
    assert!(store.seal_now(), "sealing after space returned");
    drop(store);
    let aside = names(&dir.join("quarantine"));
    assert!(aside.is_empty(), "set aside at the next start: {aside:?}");
    verify(&dir, None).unwrap_or_else(|b| panic!("verify: {b}"));
    assert_eq!(
        canon(collect(&dir, &Filter::default()).expect("query")),
        canon(written),
        "the first run's records, and none of those the disk refused"
    );
}

/// Retention that meets a full disk (its manifest entry needs room before a file can go) is
/// tried again every minute, not the next day: once space returns, the expired segments go
/// within a minute and the store verifies.
#[test]
fn retention_that_meets_a_full_disk_runs_again_within_a_minute_of_space_returning() {
    let fs = Tmpfs::mount("4m");
    let dir = fs.path().join("log");
    let clock = FakeClock::new(T0);
    fill(&dir, &clock, T0, 3, 2.0, 11, true);
    let old = live(&dir).len();
    assert!(old >= 3, "{old} segments");
    // The empty journal the fill's store left: the sealer thread's deleting it would free
    // the page the retention pass needs.
    for e in std::fs::read_dir(&dir).expect("list the store") {
        let path = e.expect("an entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("journal-"))
        {
            std::fs::remove_file(&path)
                .unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
        }
    }
    let filler = fs.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 8 << 20]);
    // Ninety-two days on: every segment is past a 90-day retention; the open's retention
    // pass fails on the full disk.
    clock.set(T0 + 92 * DAY);
    let mut cfg = config(&dir);
    cfg.retention_days = 90;
    let mut store = Store::open_with_clock(cfg, Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("open on the full disk: {e}"));
    assert!(store.wait_idle(), "the sealer thread answers");
    assert_eq!(live(&dir).len(), old, "nothing could be pruned yet");
    std::fs::remove_file(&filler).expect("free the disk");
    clock.advance(61_000_000_000);
    store
        .tick_at(clock_now(&clock))
        .unwrap_or_else(|e| panic!("timers: {e}"));
    assert!(store.wait_idle(), "the sealer thread answers");
    assert_eq!(
        live(&dir).len(),
        0,
        "the expired segments went a minute later"
    );
    drop(store);
    verify(&dir, None).unwrap_or_else(|b| panic!("verify after the retried retention: {b}"));
}

/// A store closed while the disk still refuses its buffered records reports the close as
/// failed and counts them as lost at the stop, for the status and the next agent's alert.
#[test]
fn records_held_at_a_close_on_a_full_disk_are_counted_lost() {
    use xdp_audit::sink::RecordSink as _;
    let fs = Tmpfs::mount("1m");
    let dir = fs.path().join("log");
    let clock = FakeClock::new(T0);
    let mut store = open(&dir, &clock);
    fill_up(&fs);
    let mut g = TrafficGen::with_rate(6, T0, 2.0);
    for _ in 0..200 {
        let r = g.next_record();
        clock.set(r.time_start_ns);
        store.append(&r);
    }
    assert!(!store.sync_now(), "nothing can be written");
    let held = store.status().buffered;
    assert!(held > 0, "{:?}", store.status());
    let e = store
        .close()
        .expect_err("the close cannot write what it holds");
    assert!(
        e.to_string().contains("could not be written at shutdown"),
        "{e}"
    );
    assert_eq!(store.status().lost_at_stop, held, "{:?}", store.status());
    // The close's error is the report: the drop after it does not say it again.
    let ((), text) = logged(|| drop(store));
    assert!(
        !text.contains("shutdown"),
        "said again at the drop:\n{text}"
    );
}

/// With the flow table and its ledger pinned, the records a close on a full disk still holds
/// are kept there for the next agent: the close says so (`SinkError::Kept`, which the agent
/// does not count as a failed stop) and counts nothing lost. Only records nothing else keeps
/// (`nat`, `evicted`, `summarised`) are counted lost.
#[test]
fn records_held_at_a_close_on_a_full_disk_are_lost_only_where_no_pin_keeps_them() {
    use xdp_audit::record::EndReason;
    use xdp_audit::sink::SinkError;
    let fs = Tmpfs::mount("1m");
    let clock = FakeClock::new(T0);
    for (case, nat) in [("kept", 0), ("nat", 3)] {
        let dir = fs.path().join(case);
        let mut cfg = config(&dir);
        cfg.kept_by_pins = true;
        let mut store = Store::open_with_clock(cfg, Box::new(clock.clone()))
            .unwrap_or_else(|e| panic!("open store {}: {e}", dir.display()));
        let filler = fill_up(&fs);
        let mut g = TrafficGen::with_rate(6, T0, 2.0);
        for i in 0..200 {
            let mut r = g.next_record();
            if i < nat {
                r.end_reason = EndReason::Nat;
            } else if matches!(
                r.end_reason,
                EndReason::Nat | EndReason::Evicted | EndReason::Summarised
            ) {
                r.end_reason = EndReason::Idle;
            }
            clock.set(r.time_start_ns);
            store.append(&r);
        }
        assert!(!store.sync_now(), "{case}: nothing can be written");
        let status = store.status();
        let lost = nat as u64;
        assert!(status.buffered > 0, "{case}: {status:?}");
        assert_eq!(status.buffered_unkept, Some(lost), "{case}: {status:?}");
        let e = store
            .close()
            .expect_err("the close cannot write what it holds");
        assert_eq!(
            store.status().lost_at_stop,
            lost,
            "{case}: {:?}",
            store.status()
        );
        match (lost, &e) {
            (0, SinkError::Kept { records, .. }) => assert_eq!(*records, status.buffered),
            (n, SinkError::Write { .. }) if n > 0 => assert!(
                e.to_string()
                    .contains(&format!("{n} records could not be written at shutdown")),
                "{case}: {e}"
            ),
            _ => panic!("{case}: {lost} lost, but the close said {e:?}"),
        }
        drop(store);
        std::fs::remove_file(&filler).expect("free the disk");
        std::fs::remove_dir_all(&dir).expect("clear the case's store");
    }
}

/// `unkept` reaches the store through the alert stage in front of it (as `run` chains them),
/// and holds from then on: records written after it are unkept too, until the store holds
/// nothing.
#[test]
fn records_held_after_unkept_are_all_counted_lost_through_the_alert_stage() {
    use xdp_audit::alert::stage::AlertStage;
    use xdp_audit::alert::Alerts;
    let fs = Tmpfs::mount("1m");
    let clock = FakeClock::new(T0);
    let dir = fs.path().join("log");
    let mut cfg = config(&dir);
    cfg.kept_by_pins = true;
    let store = Store::open_with_clock(cfg, Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("open store {}: {e}", dir.display()));
    let alerts = Alerts::start(&Default::default(), 0, Vec::new()).expect("the alert thread");
    let mut stage = AlertStage::new(store, alerts.handle());
    fill_up(&fs);
    let mut g = TrafficGen::with_rate(6, T0, 2.0);
    let mut write = |stage: &mut AlertStage<Store>, n: usize| {
        for _ in 0..n {
            let mut r = g.next_record();
            r.end_reason = xdp_audit::record::EndReason::Idle;
            clock.set(r.time_start_ns);
            stage.write(&r).expect("held");
        }
    };
    write(&mut stage, 50);
    assert!(stage.flush().is_err(), "nothing can be written");
    let status = stage.inner().status();
    assert_eq!((status.buffered, status.buffered_unkept), (50, Some(0)));
    stage.unkept();
    write(&mut stage, 30);
    assert!(stage.flush().is_err(), "nothing can be written");
    let status = stage.inner().status();
    assert_eq!(
        (status.buffered, status.buffered_unkept),
        (80, Some(80)),
        "all unkept, also those written after"
    );
    let e = stage
        .close()
        .expect_err("the close cannot write what it holds");
    assert!(
        e.to_string()
            .contains("80 records could not be written at shutdown"),
        "{e}"
    );
    assert_eq!(stage.inner().status().lost_at_stop, 80);
    alerts.stop();
}

/// An operator-log line the full disk refuses part way is cut back at once: the log keeps its
/// whole lines only (before, the torn bytes stayed for the next append to cut, which then
/// logged a crash that never was, once a retry).
#[test]
fn a_log_line_a_full_disk_refuses_part_way_leaves_no_torn_bytes() {
    use xdp_audit::store::oplog::{self, AccessInfo, OpBody, OpEntry, Who};
    let entry = |command: String| OpEntry {
        at_ns: T0,
        who: Who::default(),
        body: OpBody::Access(AccessInfo {
            command,
            ..Default::default()
        }),
    };
    let fs = Tmpfs::mount("64k");
    let dir = fs.path().join("log");
    std::fs::create_dir_all(&dir).expect("store dir");
    oplog::append(&dir, entry("query".into())).expect("the first line");
    let log = dir.join(oplog::LOG);
    let len = || std::fs::metadata(&log).expect("stat the log").len();
    let before = len();
    let _filler = fill_up(&fs);
    // Longer than what the log's last page has left, so part of it fits.
    let refused = oplog::append(&dir, entry("x".repeat(8_000)));
    assert!(refused.is_err(), "the disk is full: {refused:?}");
    assert_eq!(len(), before, "no torn bytes left in the log");
    let scan = oplog::scan(&dir).expect("the log reads");
    assert_eq!(
        (scan.lines.len(), scan.incomplete),
        (1, 0),
        "its one whole line"
    );
}
