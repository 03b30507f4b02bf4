//! The writer's own behaviour: frames handed over, flushes, the hourly rotation.

use super::*;
use crate::store::testgen::{journal_bytes, TrafficGen};

#[test]
fn write_framed_hands_over_the_bytes_the_journal_holds() {
    let tmp = crate::blocklist::tests::TempDir::new("framed");
    let dir = tmp.0.join("log");
    let t0 = 1_767_225_600_000_000_000;
    let mut g = TrafficGen::with_rate(5, t0, 1000.0);
    let recs: Vec<FlowRecord> = (0..500).map(|_| g.next_record()).collect();
    let mut store = Store::open_with_clock(StoreConfig::new(&dir), Box::new(FakeClock::new(t0)))
        .unwrap_or_else(|e| panic!("open the store in {}: {e}", dir.display()));
    let mut frames = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        // Every other record plain: the copy holds the framed ones only.
        let written = if i % 2 == 0 {
            store.write_framed(r, &mut frames)
        } else {
            store.write(r)
        };
        written.unwrap_or_else(|e| panic!("record {i}: {e}"));
    }
    assert!(store.sync_now(), "the journal is durable");
    let (all, starts) = journal_bytes(0, &recs);
    let want: Vec<u8> = (0..recs.len())
        .step_by(2)
        .flat_map(|i| &all[starts[i]..starts.get(i + 1).copied().unwrap_or(all.len())])
        .copied()
        .collect();
    assert_eq!(
        frames, want,
        "the copies are the journal's frames of the framed records"
    );
    let path = store.journal.path().to_owned();
    let on_disk =
        std::fs::read(&path).unwrap_or_else(|e| panic!("read the journal {}: {e}", path.display()));
    assert_eq!(
        on_disk[journal::HEADER_LEN as usize..],
        all[journal::HEADER_LEN as usize..],
        "the journal holds every record once"
    );
}

/// A record written through the sink is in the journal file once the sink is flushed, long
/// before the fsync interval: a killed agent loses nothing the kernel already forgot.
#[test]
fn a_flush_puts_the_buffered_records_in_the_journal_file_without_waiting_for_fsync() {
    let tmp = crate::blocklist::tests::TempDir::new("flush");
    let dir = tmp.0.join("log");
    let t0 = 1_767_225_600_000_000_000;
    let mut cfg = StoreConfig::new(&dir);
    cfg.fsync_interval = Duration::from_secs(3_600);
    let clock = FakeClock::new(t0);
    let mut store = Store::open_with_clock(cfg, Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("open the store in {}: {e}", dir.display()));
    let mut g = TrafficGen::with_rate(11, t0, 1000.0);
    let recs: Vec<FlowRecord> = (0..3).map(|_| g.next_record()).collect();
    let path = store.journal.path().to_owned();
    let on_disk = || {
        journal::read(&path)
            .unwrap_or_else(|e| panic!("read the live journal {}: {e}", path.display()))
            .records
    };
    for r in &recs {
        clock.advance(1_000_000);
        RecordSink::write(&mut store, r).unwrap_or_else(|e| panic!("write: {e}"));
    }
    assert!(
        on_disk().is_empty(),
        "the frames wait in memory before the flush"
    );
    RecordSink::flush(&mut store).unwrap_or_else(|e| panic!("flush: {e}"));
    assert_eq!(
        on_disk(),
        recs,
        "the journal file holds the flushed records"
    );
    let s = store.status();
    assert_eq!(
        (s.accepted, s.buffered, s.durable),
        (3, 0, 0),
        "written, not yet fsynced: {s:?}"
    );
}

/// After the hour's rotation, records of flows that started in the hour before (written at
/// 10:00:0x, starting 09:59:5x) go into the new journal without making it a journal of the
/// old hour: one journal, sealed once, not one per tick.
#[test]
fn records_that_started_before_the_hour_do_not_rotate_the_new_journal_at_every_tick() {
    let tmp = crate::blocklist::tests::TempDir::new("hour-cascade");
    let dir = tmp.0.join("log");
    let ten = 1_767_225_600_000_000_000 + 10 * HOUR_NS;
    let clock = FakeClock::new(ten + 500_000_000);
    let mut store = Store::open_with_clock(StoreConfig::new(&dir), Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("open the store in {}: {e}", dir.display()));
    let mut g = TrafficGen::with_rate(12, ten, 1000.0);
    let mut recs = Vec::new();
    for i in 0..10 {
        let mut r = g.next_record();
        r.time_start_ns = ten - 10 * 1_000_000_000 + i * 1_000_000_000;
        r.time_end_ns = clock.now_ns();
        store.append(&r);
        recs.push(r);
        clock.advance(1_000_000_000);
        store
            .tick_at(clock.now_ns())
            .unwrap_or_else(|e| panic!("tick {i}: {e}"));
    }
    assert!(store.wait_idle(), "nothing left unsealed");
    assert_eq!(
        store.status().sealed,
        0,
        "no rotation within the hour: {:?}",
        store.status()
    );
    assert!(store.seal_now(), "seal the live journal");
    assert_eq!(store.status().sealed, 1, "one journal, one segment");
    let got = query::collect(&dir, &filter::Filter::default())
        .unwrap_or_else(|e| panic!("query {}: {e}", dir.display()));
    assert_eq!(got.len(), recs.len(), "every record in it");
}

/// A wall clock set back (NTP correcting a clock that ran ahead) does not stop the timers
/// until it catches up: the next tick fsyncs, and a journal of an hour now well ahead of
/// the clock is rotated rather than kept open until the clock reaches its hour again.
#[test]
fn a_clock_set_back_neither_delays_the_fsync_nor_holds_the_journal_open() {
    let tmp = crate::blocklist::tests::TempDir::new("clock-back");
    let dir = tmp.0.join("log");
    let ahead = 1_767_225_600_000_000_000 + 10 * HOUR_NS;
    let clock = FakeClock::new(ahead);
    let mut cfg = StoreConfig::new(&dir);
    cfg.fsync_interval = Duration::from_secs(1);
    let mut store = Store::open_with_clock(cfg, Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("open the store in {}: {e}", dir.display()));
    let mut g = TrafficGen::with_rate(15, ahead, 1000.0);
    let first = g.next_record();
    store.append(&first);
    store.tick_at(ahead + 2_000_000_000).expect("tick");
    assert_eq!(store.status().durable, 1, "fsynced at the interval");
    // Set back three hours: the next record and tick.
    clock.set(ahead - 3 * HOUR_NS);
    let mut late = g.next_record();
    (late.time_start_ns, late.time_end_ns) = (clock.now_ns() - 1, clock.now_ns());
    store.append(&late);
    store.tick_at(clock.now_ns()).expect("tick");
    assert!(store.wait_idle(), "nothing left unsealed");
    let s = store.status();
    assert_eq!(
        s.durable, 2,
        "fsynced at the first tick after the step: {s:?}"
    );
    assert_eq!(s.sealed, 1, "the journal of the hour ahead rotated: {s:?}");
}

/// A record too long for a journal frame is accepted, written shortened and counted, and the
/// seal finds it like any other.
#[test]
fn a_record_too_long_for_a_frame_is_kept_shortened_and_counted() {
    let tmp = crate::blocklist::tests::TempDir::new("long-record");
    let dir = tmp.0.join("log");
    let t0 = 1_767_225_600_000_000_000;
    let mut store = Store::open_with_clock(StoreConfig::new(&dir), Box::new(FakeClock::new(t0)))
        .unwrap_or_else(|e| panic!("open the store in {}: {e}", dir.display()));
    let mut g = TrafficGen::with_rate(14, t0, 1000.0);
    let mut recs: Vec<FlowRecord> = (0..3).map(|_| g.next_record()).collect();
    recs[1].dropped = 1;
    recs[1].rule = Some(format!("/{}/block.list:7", "x".repeat(5_000)));
    for r in &recs {
        store.append(r);
    }
    assert_eq!(store.status().shortened_records, 1, "{:?}", store.status());
    assert!(store.seal_now(), "sealed");
    assert_eq!(
        store.status().shortened_records,
        1,
        "still counted after the rotation"
    );
    let got = query::collect(&dir, &filter::Filter::default())
        .unwrap_or_else(|e| panic!("query {}: {e}", dir.display()));
    assert_eq!(got.len(), 3, "every record is in the segment");
    assert_eq!(store.status().journal_skipped_frames, 0);
}

mod open;
