//! Retention with a fake clock, the legal floor, query against a brute-force scan, restart
//! sealing, and DuckDB reading a segment.

#[path = "store_common/mod.rs"]
mod common;

use std::net::IpAddr;

use common::*;
use xdp_audit::record::FlowRecord;
use xdp_audit::store::address::ip_to_column;
use xdp_audit::store::manifest::{self, Body};
use xdp_audit::store::query::{collect, Cidr, Filter};
use xdp_audit::store::testgen::Rng;
use xdp_audit::store::verify::verify;
use xdp_audit::store::{FakeClock, Store, StoreError};

#[test]
fn retention_below_the_legal_floor_is_refused_naming_it() {
    let dir = TempDir::new("floor");
    let mut cfg = config(dir.path());
    cfg.retention_days = 89;
    match Store::open(cfg) {
        Err(e @ StoreError::Retention(_)) => {
            let msg = e.to_string();
            assert!(
                msg.contains("89") && msg.contains("90") && msg.contains("legal floor"),
                "{msg}"
            );
        }
        Err(e) => panic!("wrong error for 89 days: {e}"),
        Ok(_) => panic!("89 days of retention was accepted"),
    }
    let mut cfg = config(dir.path());
    cfg.retention_days = 90;
    Store::open(cfg).unwrap_or_else(|e| panic!("90 days refused: {e}"));
}

#[test]
fn expired_segments_are_deleted_daily_and_the_chain_still_verifies() {
    let dir = TempDir::new("retention");
    let clock = FakeClock::new(T0);
    let old = fill(dir.path(), &clock, T0, 3, 1.0, 1, true);
    let later = T0 + 10 * DAY;
    let young = fill(dir.path(), &clock, later, 2, 1.0, 2, true);
    let before = verify(dir.path(), None).unwrap_or_else(|b| panic!("before retention: {b}"));
    let mut cfg = config(dir.path());
    cfg.retention_days = 180;
    // Day 180 after the old records: nothing is old enough yet.
    clock.set(T0 + 180 * DAY);
    let mut store = Store::open_with_clock(cfg, Box::new(clock.clone())).expect("open");
    assert_eq!(
        verify(dir.path(), None).expect("verify").entries,
        before.entries,
        "pruned too early"
    );
    // A day later the old hours are past 180 days; retention runs at the daily tick.
    clock.advance(DAY + 4 * HOUR);
    store.tick_at(clock_now(&clock)).expect("tick");
    store.wait_idle(); // retention runs on the sealer thread
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("after retention: {b}"));
    assert_eq!(v.pruned, 4, "{v:?}"); // three hours from T0 touch four clock hours
    assert_eq!(
        v.entries,
        before.entries + 1,
        "one prune entry expected: {v:?}"
    );
    let got = canon(collect(dir.path(), &Filter::default()).expect("query"));
    assert_eq!(
        got,
        canon(young.clone()),
        "after pruning only the young records remain"
    );
    assert!(!old.is_empty());
    // The prune entry is last and names the files with their sealed hashes.
    let text = std::fs::read_to_string(dir.path().join(manifest::MANIFEST)).expect("read");
    let entries = manifest::parse(&dir.path().join(manifest::MANIFEST), &text).expect("parse");
    match &entries.last().expect("entries").body {
        Body::Prune(p) => {
            assert_eq!(p.retention_days, 180);
            assert_eq!(p.files.len(), 4);
            for f in &p.files {
                assert!(
                    !dir.path().join(&f.file).exists(),
                    "{} still on disk",
                    f.file
                );
            }
        }
        other => panic!("last entry is not a prune: {other:?}"),
    }
    // Within the same day nothing more happens, even when more expires.
    clock.advance(10 * DAY - 2 * DAY);
    store.tick_at(clock_now(&clock) - DAY + 1).expect("tick");
    store.wait_idle();
    assert_eq!(
        verify(dir.path(), None).expect("verify").entries,
        before.entries + 1
    );
    drop(store);
}

/// A wall clock with a boot clock beside it, and the kernel's word on its synchronisation.
#[derive(Clone)]
struct SteppedClock {
    wall: FakeClock,
    boot_ns: std::sync::Arc<std::sync::atomic::AtomicI64>,
    synced: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl xdp_audit::store::StoreClock for SteppedClock {
    fn now_ns(&self) -> i64 {
        clock_now(&self.wall)
    }

    fn trust(&self) -> Option<xdp_audit::store::retention::Trust> {
        use std::sync::atomic::Ordering::SeqCst;
        Some(xdp_audit::store::retention::Trust {
            boot_ns: self.boot_ns.load(SeqCst),
            boot_id: 0xb007,
            synced: self.synced.load(SeqCst),
        })
    }
}

/// A wall clock set 190 days ahead of the store's last entry, an hour after the boot, with
/// the kernel not calling it synchronised: retention deletes nothing, at the start nor at
/// the next day's pass. Once the clock is synchronised (and corrected), it prunes what is
/// truly expired.
#[test]
fn a_clock_set_ahead_expires_nothing_until_it_is_synchronised() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = TempDir::new("retention-ahead");
    let filled = FakeClock::new(T0);
    fill(dir.path(), &filled, T0, 3, 1.0, 1, true);
    fill(dir.path(), &filled, T0 + 10 * DAY, 2, 1.0, 2, true);
    let sealed = live(dir.path()).len();
    let clock = SteppedClock {
        wall: FakeClock::new(T0 + 200 * DAY),
        boot_ns: std::sync::Arc::new(HOUR.into()),
        synced: Default::default(),
    };
    let mut cfg = config(dir.path());
    cfg.retention_days = 180;
    let mut store = Store::open_with_clock(cfg, Box::new(clock.clone())).expect("open");
    store.wait_idle();
    assert_eq!(
        live(dir.path()).len(),
        sealed,
        "pruned at the start on a clock set ahead"
    );
    // Hourly, the clock is kept in the store, for a reboot to go on from.
    let kept = || -> serde_json::Value {
        let path = dir.path().join(xdp_audit::store::retention::CLOCK_FILE);
        serde_json::from_slice(&std::fs::read(&path).expect("the kept clock")).expect("json")
    };
    clock.wall.advance(2 * HOUR);
    clock.boot_ns.fetch_add(2 * HOUR, SeqCst);
    store.tick_at(clock_now(&clock.wall)).expect("tick");
    store.wait_idle();
    assert_eq!(kept()["boot_ns"], 3 * HOUR, "kept at the hour's tick");
    // A day later by both clocks: the daily pass, still on the clock set ahead.
    clock.wall.advance(DAY + HOUR);
    clock.boot_ns.fetch_add(DAY + HOUR, SeqCst);
    store.tick_at(clock_now(&clock.wall)).expect("tick");
    store.wait_idle();
    assert_eq!(live(dir.path()).len(), sealed, "pruned at the daily pass");
    // A record of the clock set ahead, sealed: then a restart in the same boot.
    let mut g = xdp_audit::store::testgen::TrafficGen::with_rate(3, clock_now(&clock.wall), 10.0);
    store.append(&g.next_record());
    assert!(store.seal_now(), "sealed");
    drop(store);
    let sealed = live(dir.path()).len();
    clock.boot_ns.fetch_add(60_000_000_000, SeqCst);
    let mut cfg = config(dir.path());
    cfg.retention_days = 180;
    let mut store = Store::open_with_clock(cfg, Box::new(clock.clone())).expect("reopen");
    store.wait_idle();
    assert_eq!(
        live(dir.path()).len(),
        sealed,
        "pruned at a restart on the clock set ahead"
    );
    drop(store);
    // Corrected and synchronised: T0's hours are expired, T0 + 10 days' are not.
    clock.wall.set(T0 + 185 * DAY);
    clock.synced.store(true, SeqCst);
    let mut cfg = config(dir.path());
    cfg.retention_days = 180;
    drop(Store::open_with_clock(cfg, Box::new(clock)).expect("open"));
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("after retention: {b}"));
    assert_eq!(v.pruned, 4, "{v:?}");
    assert_eq!(live(dir.path()).len(), sealed - 4);
}

fn clock_now(c: &FakeClock) -> i64 {
    use xdp_audit::store::StoreClock;
    c.now_ns()
}

fn brute(all: &[FlowRecord], f: &Filter) -> Vec<FlowRecord> {
    all.iter().filter(|r| f.matches(r)).cloned().collect()
}

fn cidr_of(ip: IpAddr, len: u8) -> Cidr {
    let c = Cidr::containing(ip, len);
    let s = c.to_string();
    assert_eq!(s.parse::<Cidr>(), Ok(c), "{s} parses back");
    c
}

#[test]
fn query_matches_a_brute_force_scan_over_segments_and_the_live_journal() {
    let dir = TempDir::new("query");
    let clock = FakeClock::new(T0);
    // Four sealed hours and a live journal.
    let all = fill(dir.path(), &clock, T0, 4, 4.0, 11, false);
    let n_seg = verify(dir.path(), None).expect("verify").segments;
    assert!(n_seg >= 4, "expected sealed segments, got {n_seg}");
    let everything = canon(collect(dir.path(), &Filter::default()).expect("query all"));
    assert_eq!(
        everything,
        canon(all.clone()),
        "unfiltered query must return every record exactly"
    );

    let mut rng = Rng::new(99);
    let pick = |rng: &mut Rng| &all[rng.below(all.len() as u64) as usize];
    for round in 0..60 {
        let mut f = Filter::default();
        let r = pick(&mut rng).clone();
        match round % 6 {
            0 => {
                f.cidr = Some(Cidr::host(if rng.chance(0.5) {
                    r.src_ip
                } else {
                    r.dst_ip
                }))
            }
            1 => {
                let ip = r.dst_ip;
                let len = if ip.is_ipv4() {
                    8 + rng.below(25) as u8
                } else {
                    16 + rng.below(113) as u8
                };
                f.cidr = Some(cidr_of(ip, len));
            }
            2 => {
                f.port = Some(r.dst_port);
                f.proto = Some(r.proto);
            }
            3 => f.mac = Some(r.src_mac),
            4 => {
                let a = T0 + rng.below(5 * HOUR as u64) as i64;
                f.since_ns = Some(a);
                f.until_ns = Some(a + rng.below(HOUR as u64) as i64 + 1);
            }
            _ => {
                f.cidr = Some(Cidr::host(r.src_ip));
                f.since_ns = Some(r.time_start_ns - HOUR / 2);
                f.until_ns = Some(r.time_start_ns + HOUR);
                f.port = rng.chance(0.5).then_some(r.dst_port);
            }
        }
        let want = canon(brute(&all, &f));
        let got = canon(collect(dir.path(), &f).unwrap_or_else(|e| panic!("round {round}: {e}")));
        assert_eq!(got.len(), want.len(), "round {round}: {f:?}");
        assert_eq!(got, want, "round {round}: {f:?}");
    }
    // An address that is nowhere matches nothing (and prunes every row group).
    let none = Filter {
        cidr: Some(Cidr::host("198.51.100.254".parse().expect("ip"))),
        ..Filter::default()
    };
    assert!(collect(dir.path(), &none).expect("query").is_empty());
    // The 16-byte form used by the columns maps IPv4 into ::ffff:0:0/96.
    assert_eq!(
        ip_to_column("1.2.3.4".parse().expect("ip"))[10..12],
        [0xff, 0xff]
    );
}

#[test]
fn a_leftover_journal_is_sealed_at_start() {
    let dir = TempDir::new("leftover");
    let clock = FakeClock::new(T0);
    let all = fill(dir.path(), &clock, T0, 1, 2.0, 3, false); // live journal left behind
    let before = verify(dir.path(), None).expect("verify").segments;
    let store = open(dir.path(), &clock);
    drop(store);
    let v = verify(dir.path(), None).expect("verify");
    assert_eq!(
        v.segments,
        before + 1,
        "the leftover journal was not sealed"
    );
    assert_eq!(
        canon(collect(dir.path(), &Filter::default()).expect("query")),
        canon(all)
    );
}

#[test]
fn duckdb_reads_a_segment() {
    let dir = TempDir::new("duckdb");
    let clock = FakeClock::new(T0);
    let start = T0 - T0 % HOUR;
    let all = fill(dir.path(), &clock, start, 1, 5.0, 4, true);
    // The last record generated may start the next hour, in the next segment.
    let all: Vec<FlowRecord> = all
        .into_iter()
        .filter(|r| r.time_start_ns < start + HOUR)
        .collect();
    let text = std::fs::read_to_string(dir.path().join(manifest::MANIFEST)).expect("read");
    let entries = manifest::parse(&dir.path().join(manifest::MANIFEST), &text).expect("parse");
    let Body::Segment(seg) = &entries[0].body else {
        panic!("first entry is not a segment")
    };
    let path = dir.path().join(&seg.file);
    let script = r#"
import sys, duckdb
p = sys.argv[1]
# A query over 2 s (a loaded machine) draws a progress bar on stdout, into the answer.
duckdb.sql("SET enable_progress_bar = false")
# The macro the README documents for showing IPv4 addresses.
duckdb.sql("""CREATE MACRO ip4(b) AS concat_ws('.', ('0x'||hex(b[13:13]))::INT,
    ('0x'||hex(b[14:14]))::INT, ('0x'||hex(b[15:15]))::INT, ('0x'||hex(b[16:16]))::INT)""")
q = f"""SELECT count(*), sum(bytes)::BIGINT, min(epoch_ns(time_start)), max(epoch_ns(time_end)),
        count(*) FILTER (WHERE dst_port = 443), count(*) FILTER (WHERE vlan IS NOT NULL),
        count(*) FILTER (WHERE ip_version = 6), count(DISTINCT iface), sum(src_port)::BIGINT,
        count(*) FILTER (WHERE ip_version IN (4, 46) AND ip4(src_ip) = '10.0.0.20')
        FROM read_parquet('{p}')"""
print(",".join(str(v) for v in duckdb.sql(q).fetchall()[0]))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 not runnable ({e}); install python3 and `pip install duckdb`")
        });
    assert!(
        out.status.success(),
        "duckdb could not read {}: {} (is the duckdb Python package installed? `pip install duckdb`)",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let want = format!(
        "{},{},{},{},{},{},{},{},{},{}",
        all.len(),
        all.iter().map(|r| r.bytes).sum::<u64>(),
        all.iter().map(|r| r.time_start_ns).min().unwrap_or(0),
        all.iter().map(|r| r.time_end_ns).max().unwrap_or(0),
        all.iter().filter(|r| r.dst_port == 443).count(),
        all.iter().filter(|r| r.vlan.is_some()).count(),
        all.iter().filter(|r| r.src_ip.is_ipv6()).count(),
        all.iter()
            .map(|r| r.iface.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len(),
        all.iter().map(|r| u64::from(r.src_port)).sum::<u64>(),
        all.iter()
            .filter(|r| r.src_ip == "10.0.0.20".parse::<IpAddr>().expect("ip"))
            .count(),
    );
    assert_eq!(
        got, want,
        "DuckDB's aggregates differ from the records written"
    );
}

#[test]
fn a_corrupt_segment_gives_an_error_naming_it_and_changes_nothing() {
    let dir = TempDir::new("corrupt");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0 - T0 % HOUR, 2, 2.0, 6, true);
    let text = std::fs::read_to_string(dir.path().join(manifest::MANIFEST)).expect("read");
    let entries = manifest::parse(&dir.path().join(manifest::MANIFEST), &text).expect("parse");
    let Body::Segment(seg) = &entries[0].body else {
        panic!("first entry is not a segment")
    };
    let path = dir.path().join(&seg.file);
    let pristine = std::fs::read(&path).expect("read segment");
    let mut rng = Rng::new(5);
    let mut errors = 0;
    for round in 0..40 {
        let mut bytes = pristine.clone();
        // Damage a run of bytes somewhere in the file (data pages, dictionaries or footer).
        let at = rng.below(bytes.len() as u64 - 16) as usize;
        for b in &mut bytes[at..at + 16] {
            *b = rng.next_u64() as u8;
        }
        std::fs::write(&path, &bytes).expect("write damaged segment");
        let before: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        match collect(dir.path(), &Filter::default()) {
            Ok(_) => {} // the damage hit bytes no decoder checks (a page header's statistics); verify catches it
            Err(e) => {
                errors += 1;
                assert!(
                    e.to_string().contains(&seg.file),
                    "round {round} (offset {at}): error does not name the file: {e}"
                );
            }
        }
        let after: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            before, after,
            "round {round}: a failed query changed the directory"
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            bytes,
            "round {round}: the query changed the file"
        );
        let b = verify(dir.path(), None)
            .err()
            .map(|b| b.file.display().to_string())
            .unwrap_or_default();
        assert!(
            b.ends_with(&seg.file),
            "round {round}: verify did not blame {}: {b:?}",
            seg.file
        );
    }
    assert!(
        errors > 20,
        "only {errors} of 40 damaged files gave a query error"
    );
}

/// A bit flipped anywhere in a segment's Parquet footer is an error naming the file: the
/// footer's statistics decide which row groups a query reads, so a flip there that still
/// decodes would otherwise drop or keep rows without a word.
#[test]
fn a_flipped_bit_in_a_segment_footer_is_an_error_never_another_answer() {
    let dir = TempDir::new("footer");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0 - T0 % HOUR, 2, 2.0, 6, true);
    let segs = live(dir.path());
    let seg = &segs[0];
    let path = dir.path().join(&seg.file);
    let pristine = std::fs::read(&path).expect("read segment");
    let n = pristine.len();
    let meta_len = u32::from_le_bytes(pristine[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let footer = n - 8 - meta_len..n - 4;
    let stride = (footer.len() / 300).max(1);
    let mut tried = 0;
    for at in footer.step_by(stride) {
        let mut bytes = pristine.clone();
        bytes[at] ^= 1 << (at % 8);
        std::fs::write(&path, &bytes).expect("write damaged segment");
        tried += 1;
        match collect(dir.path(), &Filter::default()) {
            Ok(rows) => panic!(
                "a bit flipped at byte {at} of {n} (footer {meta_len} bytes) was not caught; \
                 the query answered {} rows",
                rows.len()
            ),
            Err(e) => assert!(
                e.to_string().contains(&seg.file),
                "byte {at}: the error does not name the file: {e}"
            ),
        }
    }
    assert!(tried > 50, "only {tried} footer bytes tried");
    std::fs::write(&path, &pristine).expect("restore");
    collect(dir.path(), &Filter::default()).expect("the restored segment answers");
}

/// A segment lost, cut short, a directory in its place, swapped for another segment or with
/// another row count than its entry, and a manifest cut short or with entries taken away: each
/// is an error naming the file, never an answer from fewer or other rows.
#[test]
fn a_lost_or_swapped_segment_and_a_cut_manifest_are_errors_not_other_rows() {
    let dir = TempDir::new("swapped");
    let clock = FakeClock::new(T0);
    let all = fill(dir.path(), &clock, T0 - T0 % HOUR, 2, 2.0, 8, true);
    assert_eq!(
        collect(dir.path(), &Filter::default())
            .expect("query")
            .len(),
        all.len()
    );
    let segs = live(dir.path());
    assert!(segs.len() >= 2, "two segments: {segs:?}");
    let (a, b) = (
        dir.path().join(&segs[0].file),
        dir.path().join(&segs[1].file),
    );
    let pristine = std::fs::read(&a).expect("read segment");
    let expect_error = |what: &str, needle: &str| {
        let e = collect(dir.path(), &Filter::default())
            .err()
            .unwrap_or_else(|| panic!("{what}: the query answered"));
        let msg = e.to_string();
        assert!(
            msg.contains(&segs[0].file) && msg.contains(needle),
            "{what}: {msg}"
        );
    };
    std::fs::remove_file(&a).expect("remove");
    expect_error("lost", "stat");
    // The last segment lost: the answer fails before its first record, not after the
    // records of the segments before it (their rows printed, then the error).
    let last = dir.path().join(&segs[segs.len() - 1].file);
    std::fs::rename(&last, dir.path().join("aside")).expect("move the last aside");
    std::fs::write(&a, &pristine).expect("restore the first");
    let mut printed = 0;
    let scanned = xdp_audit::store::query::scan(
        dir.path(),
        &Filter::default(),
        2,
        &mut |_| {
            printed += 1;
            Ok(())
        },
        &mut |_, _| {},
    );
    assert!(scanned.is_err(), "the last segment lost: answered");
    assert_eq!(printed, 0, "records printed before the error");
    std::fs::rename(dir.path().join("aside"), &last).expect("put the last back");
    std::fs::remove_file(&a).expect("remove");
    std::fs::create_dir(&a).expect("mkdir");
    expect_error("a directory in its place", "not a regular file");
    std::fs::remove_dir(&a).expect("rmdir");
    std::fs::copy(&b, &a).expect("copy");
    expect_error("another segment in its place", "where the manifest records");
    std::fs::write(&a, &pristine[..pristine.len() / 2]).expect("cut");
    expect_error("cut short", "where the manifest records");
    // A link to an identical copy outside the store: not the file the seal wrote.
    let outside = std::env::temp_dir().join(format!(
        "xdp-audit-linked-{}-{}",
        std::process::id(),
        segs[0].file
    ));
    std::fs::write(&outside, &pristine).expect("copy outside");
    std::fs::remove_file(&a).expect("remove");
    std::os::unix::fs::symlink(&outside, &a).expect("link");
    expect_error("a link to a copy", "symbolic link");
    let v = verify(dir.path(), None);
    assert!(
        v.as_ref()
            .is_err_and(|b| b.reason.contains("symbolic link")),
        "verify of a link in a segment's place: {v:?}"
    );
    std::fs::remove_file(&a).expect("unlink");
    std::fs::remove_file(&outside).expect("remove the copy");
    std::fs::write(&a, &pristine).expect("restore");
    collect(dir.path(), &Filter::default()).expect("restored");

    let mpath = dir.path().join(manifest::MANIFEST);
    let text = std::fs::read_to_string(&mpath).expect("read manifest");
    let rows = format!("\"rows\":{},", segs[0].rows);
    assert!(text.contains(&rows), "{rows} in {text}");
    let other_rows = text.replacen(&rows, &format!("\"rows\":{},", segs[0].rows + 1), 1);
    std::fs::write(&mpath, other_rows).expect("write");
    expect_error("another row count", "rows where the manifest records");

    let lines: Vec<&str> = text.lines().collect();
    let (head, entries) = lines.split_last().expect("lines");
    for (what, damaged, needle) in [
        ("emptied", String::new(), "no head line"),
        (
            "cut before its head",
            entries.join("\n") + "\n",
            "no head line",
        ),
        (
            "its last entry taken away",
            format!("{}\n{head}\n", entries[..entries.len() - 1].join("\n")),
            "entries were taken away",
        ),
        (
            "an entry repeated",
            format!("{}\n{}\n{head}\n", entries[0], entries.join("\n")),
            "entry 1 has seq 0: entries were deleted, repeated or reordered",
        ),
        (
            "an entry in the middle taken away",
            format!("{}\n{}\n{head}\n", entries[0], entries[2..].join("\n")),
            "entry 1 has seq 2",
        ),
        (
            "the head line's hash changed",
            format!(
                "{}\n{}\n",
                entries.join("\n"),
                head.replacen("\"hash\":\"", "\"hash\":\"0", 1)
            ),
            "the head line's hash is not that of the last entry",
        ),
    ] {
        std::fs::write(&mpath, damaged).expect("write");
        let e = collect(dir.path(), &Filter::default())
            .err()
            .unwrap_or_else(|| panic!("{what}: the query answered"));
        let msg = e.to_string();
        assert!(
            msg.contains(manifest::MANIFEST) && msg.contains(needle),
            "{what}: {msg}"
        );
    }
    // Deleted: read as no manifest, the store answered as empty.
    std::fs::remove_file(&mpath).expect("delete the manifest");
    let e = collect(dir.path(), &Filter::default())
        .err()
        .unwrap_or_else(|| panic!("deleted: the query answered"));
    assert!(
        e.to_string().contains("the manifest was deleted"),
        "deleted: {e}"
    );
    std::fs::write(&mpath, &text).expect("restore");
    assert_eq!(
        collect(dir.path(), &Filter::default())
            .expect("query")
            .len(),
        all.len()
    );
}

/// Segments are scanned on several threads and handed out in chain order as each is done:
/// the records come out exactly as one thread gives them, the progress counts every segment
/// once, and an output that fails stops the scan (the threads waiting to run ahead end).
#[test]
fn a_scan_on_several_threads_keeps_chain_order_and_stops_at_an_output_error() {
    use xdp_audit::store::query::{scan, QueryError};
    let dir = TempDir::new("query-order");
    let clock = FakeClock::new(T0);
    let all = fill(dir.path(), &clock, T0, 40, 0.2, 17, true);
    let segments = live(dir.path()).len();
    assert!(segments >= 40, "expected 40 sealed hours, got {segments}");
    let run = |f: &Filter, threads: usize| {
        let mut got = Vec::new();
        let mut shown = Vec::new();
        scan(
            dir.path(),
            f,
            threads,
            &mut |r| {
                got.push(r.clone());
                Ok(())
            },
            &mut |done, total| shown.push((done, total)),
        )
        .unwrap_or_else(|e| panic!("{threads} threads: {e}"));
        let want: Vec<(usize, usize)> = (1..=segments).map(|d| (d, segments)).collect();
        assert_eq!(shown, want, "{threads} threads: progress");
        got
    };
    let one = run(&Filter::default(), 1);
    assert_eq!(
        canon(one.clone()),
        canon(all.clone()),
        "one thread: every record"
    );
    for threads in [2, 3, 7] {
        assert!(
            run(&Filter::default(), threads) == one,
            "{threads} threads: order"
        );
    }
    let port = Filter {
        port: Some(all[all.len() / 2].dst_port),
        ..Filter::default()
    };
    let one = run(&port, 1);
    assert!(!one.is_empty());
    assert!(run(&port, 4) == one, "a filter on 4 threads: order");

    let mut emitted = 0;
    let r = scan(
        dir.path(),
        &Filter::default(),
        2,
        &mut |_| {
            emitted += 1;
            if emitted == 100 {
                return Err(std::io::Error::other("the reader went away"));
            }
            Ok(())
        },
        &mut |_, _| {},
    );
    assert!(matches!(r, Err(QueryError::Output(_))), "{r:?}");
    assert_eq!(emitted, 100, "nothing is written after the output failed");
}

/// A panic in the output (the caller's callback) ends the scan: the threads waiting to run
/// ahead are released, so the panic reaches the caller instead of the process hanging.
#[test]
fn a_panic_in_the_output_of_a_threaded_scan_reaches_the_caller() {
    use xdp_audit::store::query::scan;
    let dir = TempDir::new("query-panic");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 20, 0.2, 23, true);
    let segments = live(dir.path()).len();
    assert!(segments >= 20, "expected 20 sealed hours, got {segments}");
    let path = dir.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| {
            scan(
                &path,
                &Filter::default(),
                2,
                &mut |_| panic!("the output panicked"),
                &mut |_, _| {},
            )
        });
        let _ = tx.send(r.is_err());
    });
    let panicked = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the scan hung after its output panicked"));
    assert!(panicked, "the output's panic reaches the caller");
}

/// Retention prunes segments while a query reads them: the query says the store changed
/// under it and to run it again (it failed with "No such file or directory", which reads
/// as damage).
#[test]
fn a_segment_pruned_while_a_query_reads_is_said_as_a_change_not_damage() {
    let dir = TempDir::new("prune-under-query");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 12, 0.2, 3, true);
    let mut pruned = false;
    let result =
        xdp_audit::store::query::count(dir.path(), &Filter::default(), 1, &mut |done, _| {
            if done == 1 && !pruned {
                // Far past retention: the open prunes every segment.
                let late = FakeClock::new(T0 + 400 * DAY);
                drop(Store::open_with_clock(config(dir.path()), Box::new(late)).expect("open"));
                pruned = true;
            }
        });
    assert!(pruned, "the query read a segment");
    match result {
        Err(e @ xdp_audit::store::query::QueryError::Changed { .. }) => {
            assert!(e.to_string().contains("run the query again"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// The same for `sql`: a segment pruned after the session opened and before its statement
/// read it is a change to run again (the engine, finding the file gone, read its path as an
/// empty folder and answered without its rows, exit 0).
#[test]
fn a_segment_pruned_under_a_sql_statement_is_said_as_a_change_not_damage() {
    use xdp_audit::sql::{Session, SqlError};
    let dir = TempDir::new("prune-under-sql");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 6, 0.2, 5, true);
    let session = Session::open(dir.path(), 256 << 20).expect("session");
    let late = FakeClock::new(T0 + 400 * DAY);
    drop(Store::open_with_clock(config(dir.path()), Box::new(late)).expect("open"));
    assert!(
        live(dir.path()).is_empty(),
        "retention pruned every segment"
    );
    let mut out = Vec::new();
    match session.run(
        "SELECT sum(bytes) FROM flows_raw",
        xdp_audit::store::export::Format::Csv,
        &mut out,
    ) {
        Err(e @ SqlError::Store(xdp_audit::store::query::QueryError::Changed { .. })) => {
            assert!(e.to_string().contains("run the query again"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
