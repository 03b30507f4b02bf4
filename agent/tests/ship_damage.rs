//! Shipping a damaged store to a real S3 server (`s3s-fs` on 127.0.0.1): a segment changed in
//! place or grown (sparse, to a terabyte: never read into memory) is named while every other
//! segment ships; and a day merged twice (a late hour sealed after its first compaction)
//! keeps its hour objects in the bucket until an object holding their rows is acknowledged,
//! and a chain that does not hold deletes nothing from it. A server that stops answering
//! mid-pass does not freeze the backlog the status shows.

#[path = "store_common/mod.rs"]
mod common;
mod ship_common;
mod ship_store;

use std::path::Path;
use std::time::Duration;

use common::*;
use ship_common::*;
use ship_store::*;
use xdp_audit::ship::layout::Layout;
use xdp_audit::ship::remote::RemoteError;
use xdp_audit::ship::{ship_once, ShipError, Shipper};
use xdp_audit::store::{FakeClock, Store};

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[test]
fn damaged_segments_are_named_and_every_other_one_ships() {
    let dir = TempDir::new("ship-damaged");
    let bucket = TempDir::new("ship-damaged-s3");
    let s3 = S3Server::start(bucket.path());
    let cfg = s3.config("fleet", "gw-a");
    fill(dir.path(), &FakeClock::new(T0), T0, 8, 0.05, 11, true);
    let segs = live(dir.path());
    assert!(segs.len() >= 6, "{segs:?}");
    let (changed, grown) = (segs[1].file.clone(), segs[3].file.clone());
    flip_byte(&dir.path().join(&changed));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(&grown))
        .expect("open the segment to grow");
    f.set_len(1 << 40)
        .expect("grow the segment, sparse, to 1 TiB");
    drop(f);

    let failed = ship_once(dir.path(), &cfg, &opts());
    let Err(ShipError::NotShipped(errs)) = &failed else {
        panic!("two damaged segments must fail the pass naming them, got {failed:?}");
    };
    let mut named: Vec<(String, &str)> = errs
        .iter()
        .map(|e| match e {
            RemoteError::LocalChanged { path, .. } => (path.clone(), "changed"),
            RemoteError::LocalSize { path, found, .. } => {
                assert_eq!(*found, 1 << 40, "{e}");
                (path.clone(), "size")
            }
            other => panic!("not a local fault: {other}"),
        })
        .collect();
    named.sort();
    let mut want = vec![
        (dir.path().join(&changed).display().to_string(), "changed"),
        (dir.path().join(&grown).display().to_string(), "size"),
    ];
    want.sort();
    assert_eq!(named, want);
    let message = failed.expect_err("failed").to_string();
    assert!(
        message.contains(&changed) && message.contains(&grown),
        "{message}"
    );
    let layout = Layout::new("fleet", "gw-a");
    let (bad_a, bad_b) = (layout.segment(&segs[1]), layout.segment(&segs[3]));
    let others: Vec<(String, String)> = expected(dir.path(), "fleet", "gw-a")
        .into_iter()
        .filter(|(k, _)| *k != bad_a && *k != bad_b)
        .collect();
    assert_eq!(
        remote_segments(&s3, "fleet"),
        others,
        "every other segment shipped"
    );
    assert!(
        s3.objects("fleet", ".jsonl").is_empty(),
        "no manifest while live segments are missing from the bucket"
    );
}

#[test]
fn a_day_merged_twice_keeps_its_hours_remote_until_the_merged_rows_are_acknowledged() {
    let dir = TempDir::new("ship-remerged");
    let bucket = TempDir::new("ship-remerged-s3");
    let s3 = S3Server::start(bucket.path());
    let cfg = s3.config("fleet", "gw-a");
    fill(dir.path(), &FakeClock::new(T0), T0, 30, 0.05, 12, true);
    ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship: {e}"));
    let day_end = (T0.div_euclid(DAY) + 1) * DAY;
    let layout = Layout::new("fleet", "gw-a");
    let hours: Vec<String> = live(dir.path())
        .iter()
        .filter(|s| s.time_min_ns < day_end)
        .map(|s| layout.segment(s))
        .collect();
    assert!(hours.len() >= 2, "{hours:?}");

    // The closed days merge, and nothing ships meanwhile.
    let later = T0 + 3 * DAY;
    let merge = |at| {
        let mut store =
            Store::open_with_clock(compacting(dir.path()), Box::new(FakeClock::new(at)))
                .expect("reopen to compact");
        assert!(store.wait_idle());
    };
    merge(later);
    // A late hour of the first day (flows a killed agent's ledger kept past midnight), then
    // the day is merged again: the first merged segment was never shipped.
    fill(
        dir.path(),
        &FakeClock::new(T0),
        T0 + 600_000_000_000,
        1,
        0.05,
        13,
        true,
    );
    merge(later + HOUR);
    let holder = live(dir.path())
        .into_iter()
        .find(|s| s.time_min_ns < day_end)
        .expect("the first day's segment");
    flip_byte(&dir.path().join(&holder.file));

    let failed = ship_once(dir.path(), &cfg, &opts());
    assert!(
        matches!(&failed, Err(ShipError::NotShipped(e)) if e.len() == 1),
        "{failed:?}"
    );
    let remote: Vec<String> = remote_segments(&s3, "fleet")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let kept: Vec<&String> = hours.iter().filter(|k| remote.contains(k)).collect();
    assert_eq!(
        kept.len(),
        hours.len(),
        "the first day's hour objects stay while no object holding their rows is acknowledged: {remote:?}"
    );
    // The other days settle meanwhile: each row once, the first day's in its hours.
    let holder_key = layout.segment(&holder);
    let mut want: Vec<String> = expected(dir.path(), "fleet", "gw-a")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| *k != holder_key)
        .chain(hours.iter().cloned())
        .collect();
    want.sort();
    assert_eq!(remote, want, "the later days' hour objects are deleted");

    flip_byte(&dir.path().join(&holder.file));
    ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship once repaired: {e}"));
    assert_eq!(
        remote_segments(&s3, "fleet"),
        expected(dir.path(), "fleet", "gw-a"),
        "once the holder is acknowledged, the bucket holds what the chain holds, each row once"
    );
}

/// A merged day's hour objects are deleted from the bucket on the chain's word only if the
/// chain holds, as local retention deletes files: a changed entry stops the settling.
#[test]
fn a_chain_that_does_not_hold_deletes_nothing_from_the_bucket() {
    let dir = TempDir::new("ship-broken-chain");
    let bucket = TempDir::new("ship-broken-chain-s3");
    let s3 = S3Server::start(bucket.path());
    let cfg = s3.config("fleet", "gw-a");
    fill(dir.path(), &FakeClock::new(T0), T0, 30, 0.05, 14, true);
    ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship: {e}"));
    let hours: Vec<(String, String)> = remote_segments(&s3, "fleet");
    let mut store = Store::open_with_clock(
        compacting(dir.path()),
        Box::new(FakeClock::new(T0 + 3 * DAY)),
    )
    .expect("reopen to compact");
    assert!(store.wait_idle());
    drop(store);
    // The first entry claims other rows: its hash no longer matches.
    let path = dir.path().join("manifest.jsonl");
    let text = std::fs::read_to_string(&path).expect("read the manifest");
    let first = text.lines().next().expect("an entry");
    let rows = first
        .split("\"rows\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .expect("the entry's rows");
    let changed = first.replacen(&format!("\"rows\":{rows}"), "\"rows\":1", 1);
    assert_ne!(changed, first);
    std::fs::write(&path, text.replacen(first, &changed, 1)).expect("change the entry");

    let failed = ship_once(dir.path(), &cfg, &opts());
    let message = format!("{failed:?}");
    assert!(
        matches!(&failed, Err(ShipError::Manifest(m)) if m.contains("entry 0") && m.contains("no bucket object is deleted")),
        "{message}"
    );
    let remote = remote_segments(&s3, "fleet");
    assert!(
        hours.iter().all(|h| remote.contains(h)),
        "every hour object stays: {remote:?}"
    );
}

/// A server that accepts a request and then stops answering holds the pass in its upload up
/// to the idle timeout: meanwhile the status counts what waits now, segments sealed since the
/// pass began too (it showed the count the pass started with, for up to a minute per request
/// by default, and `XA-SHIP-FAILING` carried it).
#[test]
fn a_stalled_request_does_not_freeze_the_backlog_the_status_shows() {
    let dir = TempDir::new("ship-stall");
    let bucket = TempDir::new("ship-stall-s3");
    let mut s3 = S3Server::start(bucket.path());
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 2, 0.05, 21, true);
    let mut cfg = s3.config("p", "gw");
    // Long enough that the stall outlasts the test's wait: no failed pass ends it.
    cfg.request_timeout = Duration::from_secs(300);
    cfg.idle_timeout = Duration::from_secs(300);
    // Records from years ago: a retention past them keeps them far from its cutoff, so no
    // acknowledged segment is looked for again (a HEAD the stopped server would hold too).
    let age_days = u32::try_from((now_ns() - T0) / DAY).expect("days");
    let far = xdp_audit::ship::ShipOptions {
        retention_days: age_days + 30,
        ..opts()
    };
    let shipper = Shipper::spawn(dir.path(), &cfg, far).expect("spawn");
    wait_until(Duration::from_secs(30), "caught up", || {
        let s = shipper.status();
        s.caught_up_at.is_some() && s.backlog_segments == 0
    });
    s3.signal(libc::SIGSTOP);
    let shipped = live(dir.path()).len() as u64;
    fill(dir.path(), &clock, T0 + 2 * HOUR, 2, 0.05, 22, true);
    let first = live(dir.path()).len() as u64 - shipped;
    wait_until(
        Duration::from_secs(30),
        "a pass counts the new segments",
        || shipper.status().backlog_segments == first,
    );
    // The pass is in its upload, which waits on the stopped server; more are sealed.
    fill(dir.path(), &clock, T0 + 4 * HOUR, 3, 0.05, 23, true);
    let waiting = live(dir.path()).len() as u64 - shipped;
    assert!(
        waiting > first,
        "{waiting} segments wait, {first} at the pass's start"
    );
    wait_until(
        Duration::from_secs(30),
        "the status counts the segments sealed during the stall",
        || shipper.status().backlog_segments == waiting,
    );
    let st = shipper.status();
    assert_eq!(
        st.failures, 0,
        "counted during the stall, not by a retry: {st:?}"
    );
    // The server goes (its requests fail at once), and with it the stall.
    s3.stop();
    drop(shipper);
}

/// An acknowledged object deleted from the bucket (a lifecycle rule, a mistake, an intruder)
/// is looked for once more when retention's cutoff comes within a day of its segment: found
/// gone, it is shipped again, and counted. Segments far from the cutoff are not looked at.
#[test]
fn an_acknowledged_object_gone_from_the_bucket_is_shipped_again_before_retention() {
    let dir = TempDir::new("ship-gone");
    let bucket = TempDir::new("ship-gone-s3");
    let s3 = S3Server::start(bucket.path());
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 3, 0.05, 31, true);
    let cfg = s3.config("p", "gw");
    let want = expected(dir.path(), "p", "gw");
    ship_once(dir.path(), &cfg, &opts()).expect("ship");
    assert_eq!(remote_segments(&s3, "p"), want);
    let victim = &want[0].0;
    std::fs::remove_file(s3.root.join(BUCKET).join(victim)).expect("delete an object");
    // The segments' records are from T0, years ago: with a retention that reaches back past
    // them by more than a day, none is near its cutoff, and nothing is looked at.
    let age_days = u32::try_from((now_ns() - T0) / DAY).expect("days");
    let far = xdp_audit::ship::ShipOptions {
        retention_days: age_days + 30,
        ..opts()
    };
    let s = ship_once(dir.path(), &cfg, &far).expect("ship, far from the cutoff");
    assert_eq!((s.gone_from_bucket, s.shipped_segments), (0, 0), "{s:?}");
    // Within a day of the cutoff: the gone object is found and shipped again.
    let near = xdp_audit::ship::ShipOptions {
        retention_days: age_days,
        ..opts()
    };
    let s = ship_once(dir.path(), &cfg, &near).expect("ship, near the cutoff");
    assert_eq!((s.gone_from_bucket, s.shipped_segments), (1, 1), "{s:?}");
    assert!(
        s.summary().contains("gone from the bucket"),
        "{}",
        s.summary()
    );
    assert_eq!(remote_segments(&s3, "p"), want, "the object is back");
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A store rolled back to an older copy (its cursor kept) is refused by the shipper, which
/// would otherwise lower the cursor `compliance` reads as the evidence, upload the older
/// manifest beside the newer one, and drop the newer segments' acknowledgements.
#[test]
fn a_store_rolled_back_below_what_the_bucket_acknowledged_is_not_shipped() {
    let dir = TempDir::new("ship-rollback");
    let older = TempDir::new("ship-rollback-copy");
    let bucket = TempDir::new("ship-rollback-s3");
    let s3 = S3Server::start(bucket.path());
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 2, 0.05, 41, true);
    copy_dir(dir.path(), older.path());
    fill(dir.path(), &clock, T0 + 2 * HOUR, 2, 0.05, 42, true);
    let cfg = s3.config("p", "gw");
    ship_once(dir.path(), &cfg, &opts()).expect("ship");
    let acked = xdp_audit::ship::cursor::read(dir.path())
        .expect("cursor")
        .expect("a cursor");
    // The older copy's files in place of the store's; the cursor stays.
    for e in std::fs::read_dir(dir.path()).expect("read store") {
        let p = e.expect("entry").path();
        if p.file_name() != Some(xdp_audit::ship::cursor::CURSOR.as_ref()) && p.is_file() {
            std::fs::remove_file(&p).expect("remove");
        }
    }
    copy_dir(older.path(), dir.path());
    match ship_once(dir.path(), &cfg, &opts()) {
        Err(e @ ShipError::RolledBack { .. }) => {
            let text = e.to_string();
            assert!(text.contains("rolled back or replaced"), "{text}");
        }
        other => panic!("a rolled-back store must be refused, got {other:?}"),
    }
    let kept = xdp_audit::ship::cursor::read(dir.path())
        .expect("cursor")
        .expect("a cursor");
    assert_eq!(
        kept, acked,
        "the cursor is left as the bucket acknowledged it"
    );
    let manifests = s3.objects("p/gateway=gw/manifest", ".jsonl");
    assert_eq!(
        manifests.len(),
        1,
        "no older manifest uploaded: {manifests:?}"
    );

    // Another store's chain, longer than the acknowledged one, under the same cursor: its
    // entry at the acknowledged position is another, so it was replaced.
    let other = TempDir::new("ship-replaced");
    fill(other.path(), &clock, T0 + 9 * HOUR, 6, 0.05, 43, true);
    std::fs::copy(
        dir.path().join(xdp_audit::ship::cursor::CURSOR),
        other.path().join(xdp_audit::ship::cursor::CURSOR),
    )
    .expect("the cursor");
    match ship_once(other.path(), &cfg, &opts()) {
        Err(e @ ShipError::RolledBack { replaced: true, .. }) => {
            let text = e.to_string();
            assert!(text.contains("holds another entry there"), "{text}");
        }
        other => panic!("a replaced store must be refused, got {other:?}"),
    }
    assert_eq!(s3.objects("p/gateway=gw/manifest", ".jsonl"), manifests);
}

/// Copies the regular files of `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            let name = p.file_name().expect("a name");
            std::fs::copy(&p, to.join(name)).expect("copy");
        }
    }
}
