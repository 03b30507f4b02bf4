//! Shipping to a real S3 server (`s3s-fs` on 127.0.0.1): objects, keys and SHA-256 match the
//! chain, a merged day replaces its hours remotely, re-uploads are identical or refused (the
//! sealed bytes left without their metadata by a cut-short PUT are created again), the shipper
//! survives kill -9 at random moments, a server outage grows and drains the backlog while
//! retention keeps unshipped segments, a live segment gone from disk is named while the others
//! ship, secrets never reach the log, and two gateways' stores read back with pyarrow's
//! dataset API give each store's row count.

#[path = "store_common/mod.rs"]
mod common;
mod ship_common;
mod ship_store;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ship_common::*;
use ship_store::*;
use xdp_audit::ship::remote::RemoteError;
use xdp_audit::ship::{cursor, ship_once, ShipError, Shipper};
use xdp_audit::store::manifest::read_entries;
use xdp_audit::store::testgen::Rng;
use xdp_audit::store::{FakeClock, Store};

const BIN: &str = env!("CARGO_BIN_EXE_xdp-audit");

#[test]
fn a_store_with_seals_and_a_merged_day_is_shipped_as_its_chain_says() {
    let dir = TempDir::new("ship-chain");
    let bucket = TempDir::new("ship-chain-s3");
    let s3 = S3Server::start(bucket.path());
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 30, 0.05, 3, true);
    let cfg = s3.config("fleet", "gw-a");

    let s = ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship: {e}"));
    let want = expected(dir.path(), "fleet", "gw-a");
    assert!(
        want.len() > 20,
        "several hourly seals expected: {}",
        want.len()
    );
    assert_eq!(s.shipped_segments, want.len() as u64, "{s:?}");
    assert_eq!(s.backlog_segments, 0, "{s:?}");
    assert_eq!(
        remote_segments(&s3, "fleet"),
        want,
        "objects differ from the chain"
    );
    let head = read_entries(dir.path()).expect("chain").len() as u64 - 1;
    assert_eq!(
        s3.objects("fleet/gateway=gw-a/manifest", ".jsonl"),
        vec![format!(
            "fleet/gateway=gw-a/manifest/manifest-{head:020}.jsonl"
        )]
    );

    // Day one closes: its hours merge into one segment; remotely the merged object replaces
    // the hour objects once it is acknowledged.
    let hours_before = want.len();
    let clock = FakeClock::new(T0 + 30 * HOUR);
    let mut store =
        Store::open_with_clock(compacting(dir.path()), Box::new(clock)).expect("reopen");
    assert!(store.wait_idle());
    drop(store);
    let merged = expected(dir.path(), "fleet", "gw-a");
    assert!(
        merged.len() < hours_before,
        "nothing was merged: {merged:?}"
    );
    ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship after merge: {e}"));
    assert_eq!(
        remote_segments(&s3, "fleet"),
        merged,
        "the hours were not replaced remotely"
    );
    let r = xdp_audit::ship::verify::verify_remote(dir.path(), &cfg).expect("verify remote");
    assert!(r.missing.is_empty() && r.checked == merged.len(), "{r:?}");
    // The new manifest copy holds the whole chain: the older one is gone.
    let newest = read_entries(dir.path()).expect("chain").len() as u64 - 1;
    assert!(newest > head, "the merge added chain entries");
    assert_eq!(
        s3.objects("fleet/gateway=gw-a/manifest", ".jsonl"),
        vec![format!(
            "fleet/gateway=gw-a/manifest/manifest-{newest:020}.jsonl"
        )]
    );

    // A lost cursor: every upload finds the identical object (conditional create) and takes it.
    std::fs::remove_file(dir.path().join(cursor::CURSOR)).expect("remove cursor");
    let again = ship_once(dir.path(), &cfg, &opts()).expect("ship again");
    assert_eq!(again.identical_reuploads, merged.len() as u64, "{again:?}");

    // An object changed in the bucket: verify --remote names it, and shipping never
    // overwrites it.
    let victim = &merged[0].0;
    std::fs::write(s3.root.join(BUCKET).join(victim), b"not a segment").expect("damage object");
    let r = xdp_audit::ship::verify::verify_remote(dir.path(), &cfg).expect("verify remote");
    assert_eq!(r.missing.len(), 1, "{r:?}");
    assert_eq!(&r.missing[0].key, victim);
    std::fs::remove_file(dir.path().join(cursor::CURSOR)).expect("remove cursor");
    match ship_once(dir.path(), &cfg, &opts()) {
        Err(ShipError::NotShipped(e)) => match &e[..] {
            [RemoteError::Conflict { key, .. }] => assert_eq!(key, victim),
            other => panic!("one conflict, got {other:?}"),
        },
        other => panic!("a differing object must be refused, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(s3.root.join(BUCKET).join(victim)).expect("read object"),
        b"not a segment",
        "the object was overwritten"
    );
}

/// Removes the metadata of every object in the bucket, as s3s-fs leaves an object whose PUT
/// was cut short between storing the body and saving its metadata; returns how many.
fn drop_metadata(s3: &S3Server) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(&s3.root).expect("list server root") {
        let path = e.expect("server root entry").path();
        if path.to_string_lossy().ends_with(".metadata.json") {
            std::fs::remove_file(&path).expect("remove object metadata");
            n += 1;
        }
    }
    n
}

#[test]
fn sealed_bytes_left_without_their_metadata_are_created_again_and_other_bytes_refused() {
    let dir = TempDir::new("ship-nometa");
    let bucket = TempDir::new("ship-nometa-s3");
    let s3 = S3Server::start(bucket.path());
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 4, 0.05, 5, true);
    let cfg = s3.config("m", "gw");
    ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship: {e}"));
    let want = expected(dir.path(), "m", "gw");
    assert!(
        drop_metadata(&s3) > want.len(),
        "segments and manifest lose their metadata"
    );
    let r = xdp_audit::ship::verify::verify_remote(dir.path(), &cfg).expect("verify remote");
    assert_eq!(
        r.missing.len(),
        want.len(),
        "verify --remote names each: {r:?}"
    );

    // A restart without its cursor finds every key taken by the sealed bytes alone: each
    // is read back, found to be the sealed bytes, and created again with its metadata.
    std::fs::remove_file(dir.path().join(cursor::CURSOR)).expect("remove cursor");
    let again = ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship again: {e}"));
    assert_eq!(again.identical_reuploads, 0, "{again:?}");
    assert_eq!(again.shipped_segments, want.len() as u64, "{again:?}");
    assert_eq!(
        remote_segments(&s3, "m"),
        want,
        "objects differ from the chain"
    );
    let r = xdp_audit::ship::verify::verify_remote(dir.path(), &cfg).expect("verify remote");
    assert!(r.missing.is_empty() && r.checked == want.len(), "{r:?}");

    // Other bytes of the same size without metadata: refused and left as they are.
    let victim = &want[0].0;
    let path = s3.root.join(BUCKET).join(victim);
    let mut other = std::fs::read(&path).expect("read object");
    other[100] ^= 0xff;
    std::fs::write(&path, &other).expect("change object");
    drop_metadata(&s3);
    std::fs::remove_file(dir.path().join(cursor::CURSOR)).expect("remove cursor");
    match ship_once(dir.path(), &cfg, &opts()) {
        Err(ShipError::NotShipped(e)) => match &e[..] {
            [RemoteError::Conflict { key, .. }] => assert_eq!(key, victim),
            other => panic!("one conflict, got {other:?}"),
        },
        other => panic!("other bytes must be refused, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).expect("read object"),
        other,
        "the object was replaced"
    );
}

#[test]
fn an_object_whose_metadata_matches_but_whose_bytes_differ_is_refused_and_never_acknowledged() {
    let dir = TempDir::new("ship-samemeta");
    let bucket = TempDir::new("ship-samemeta-s3");
    let s3 = S3Server::start(bucket.path());
    fill(dir.path(), &FakeClock::new(T0), T0, 2, 0.05, 7, true);
    let cfg = s3.config("d", "gw");
    let want = expected(dir.path(), "d", "gw");
    // The key already holds other bytes of the sealed size, with the sealed SHA-256 as its
    // metadata (what a server that stored something else than it was sent, and answered with
    // a wrong checksum, leaves for the next pass): made here by shipping, then changing the
    // stored bytes under their metadata.
    ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship: {e}"));
    let victim = &want[0].0;
    let path = s3.root.join(BUCKET).join(victim);
    let mut other = std::fs::read(&path).expect("read object");
    other[100] ^= 0xff;
    std::fs::write(&path, &other).expect("change object");
    let r = xdp_audit::ship::verify::verify_remote(dir.path(), &cfg).expect("verify remote");
    assert!(r.missing.is_empty(), "size and metadata still match: {r:?}");
    // Read back, the bytes give it away: `verify --remote-bytes` names the object, exit 1.
    let creds = credentials_file(dir.path());
    let v = Command::new(BIN)
        .arg("verify")
        .arg("--log-dir")
        .arg(dir.path())
        .args([
            "--remote-bytes",
            "--ship",
            "s3://audit/d",
            "--gateway-id",
            "gw",
        ])
        .args(["--ship-endpoint", &s3.endpoint()])
        .arg("--ship-credentials")
        .arg(&creds)
        .output()
        .expect("run verify --remote-bytes");
    let text = String::from_utf8_lossy(&v.stdout);
    assert_eq!(
        v.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        text.contains(&format!("BROKEN: remote {victim}: holds other bytes")),
        "{text}"
    );
    std::fs::remove_file(dir.path().join(cursor::CURSOR)).expect("remove cursor");

    match ship_once(dir.path(), &cfg, &opts()) {
        Err(ShipError::NotShipped(e)) if matches!(&e[..], [RemoteError::Conflict { .. }]) => {
            let text = e[0].to_string();
            assert!(
                text.contains(victim.as_str()) && text.contains("stored object differs"),
                "the error names the object and says it differs: {text}"
            );
        }
        other => panic!("other bytes under matching metadata must be refused, got {other:?}"),
    }
    let acked = cursor::read(dir.path()).expect("cursor");
    assert!(
        acked.is_none_or(|c| c.acked.values().all(|a| &a.key != victim)),
        "the cursor acknowledged an object whose bytes differ"
    );
    assert_eq!(
        std::fs::read(&path).expect("read object"),
        other,
        "the object was replaced"
    );
}

#[test]
fn an_outage_grows_the_backlog_retention_keeps_unshipped_segments_and_it_drains() {
    let dir = TempDir::new("ship-outage");
    let bucket = TempDir::new("ship-outage-s3");
    let port = free_port();
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 3, 0.05, 5, true);
    let first = live(dir.path()).len() as u64;
    // No server yet: the shipper fails, backs off, and counts the backlog.
    let cfg = ship_config(port, "p", "gw");
    let shipper = Shipper::spawn(dir.path(), &cfg, opts()).expect("spawn");
    wait_until(Duration::from_secs(30), "two failed passes", || {
        shipper.status().failures >= 2
    });
    assert_eq!(shipper.status().backlog_segments, first);
    assert!(shipper.status().last_error.is_some());
    fill(dir.path(), &clock, T0 + 3 * HOUR, 3, 0.05, 6, true);
    let total = live(dir.path()).len() as u64;
    assert!(total > first);
    wait_until(
        Duration::from_secs(30),
        "the backlog shows the new segments",
        || shipper.status().backlog_segments == total,
    );
    let st = shipper.status();
    assert!(st.backlog_bytes > 0 && st.oldest_age_s.is_some(), "{st:?}");

    // Retention far in the future keeps every unshipped segment.
    let late = T0 + 200 * DAY;
    let mut gated = config(dir.path());
    gated.ship_gate = Some(xdp_audit::ship::retention_gate(&cfg));
    let store = Store::open_with_clock(gated, Box::new(FakeClock::new(late))).expect("open");
    drop(store);
    assert_eq!(
        live(dir.path()).len() as u64,
        total,
        "retention deleted unshipped segments"
    );
    for s in live(dir.path()) {
        assert!(dir.path().join(&s.file).exists(), "{} deleted", s.file);
    }

    // The server comes back: the backlog drains.
    let _s3 = S3Server::start_on(bucket.path(), port);
    wait_until(Duration::from_secs(60), "the backlog drains", || {
        let s = shipper.status();
        s.backlog_segments == 0 && s.caught_up_at.is_some()
    });
    drop(shipper);
    // Shipped, but to another target than the one now configured (the gateway renamed):
    // the new target has none of them, so retention keeps them all.
    let mut renamed = config(dir.path());
    let other = ship_config(port, "p", "gw-renamed");
    renamed.ship_gate = Some(xdp_audit::ship::retention_gate(&other));
    drop(Store::open_with_clock(renamed, Box::new(FakeClock::new(late))).expect("open"));
    assert_eq!(
        live(dir.path()).len() as u64,
        total,
        "retention deleted segments the target in force never received"
    );
    // Shipped to the target in force: retention deletes them.
    let mut gated = config(dir.path());
    gated.ship_gate = Some(xdp_audit::ship::retention_gate(&cfg));
    drop(Store::open_with_clock(gated, Box::new(FakeClock::new(late))).expect("open"));
    assert!(
        live(dir.path()).is_empty(),
        "shipped expired segments should be pruned"
    );
}

/// A cursor that names an expired segment with another SHA-256 (stale, or restored from
/// another copy of the store) does not let retention delete it: the gate compares the sealed
/// SHA-256, as the worker's `Cursor::holds` does. The segment acknowledged with its own
/// SHA-256 is deleted.
#[test]
fn retention_keeps_a_segment_the_cursor_acknowledged_with_another_sha256() {
    let dir = TempDir::new("ship-stale-cursor");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 3, 0.05, 5, true);
    let segs = live(dir.path());
    assert!(
        segs.len() >= 2,
        "the test needs two segments, got {}",
        segs.len()
    );
    let cfg = ship_config(free_port(), "p", "gw");
    let target = xdp_audit::ship::target_name(&cfg);
    let mut c = cursor::Cursor::load(dir.path(), &target).expect("an empty cursor");
    for (i, s) in segs.iter().enumerate() {
        let sha256 = if i == 0 {
            s.sha256.clone()
        } else {
            "0".repeat(64)
        };
        let acked = cursor::Acked {
            key: s.file.clone(),
            size: s.size,
            sha256,
        };
        c.acked.insert(s.file.clone(), acked);
    }
    c.save(dir.path()).expect("save the cursor");

    let mut gated = config(dir.path());
    gated.ship_gate = Some(xdp_audit::ship::retention_gate(&cfg));
    let late = Box::new(FakeClock::new(T0 + 200 * DAY));
    drop(Store::open_with_clock(gated, late).expect("open"));
    let left: Vec<String> = live(dir.path()).into_iter().map(|s| s.file).collect();
    let kept: Vec<String> = segs[1..].iter().map(|s| s.file.clone()).collect();
    assert_eq!(
        left, kept,
        "retention deleted segments the cursor acknowledged with another SHA-256"
    );
    for f in &kept {
        assert!(dir.path().join(f).exists(), "{f} deleted");
    }
    assert!(
        !dir.path().join(&segs[0].file).exists(),
        "the segment acknowledged with its SHA-256 is deleted by retention"
    );
}

/// Kills the child on drop: a command that never exits must not outlive its test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_live_segment_gone_from_disk_is_named_while_the_others_ship_and_merged_days_settle() {
    let dir = TempDir::new("ship-gone");
    let bucket = TempDir::new("ship-gone-s3");
    let s3 = S3Server::start(bucket.path());
    let cfg = s3.config("fleet", "gw-a");
    fill(dir.path(), &FakeClock::new(T0), T0, 30, 0.05, 3, true);
    ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship: {e}"));
    // The two closed days merge (their hour objects are in the bucket), then more hours seal.
    let later = T0 + 30 * HOUR;
    let mut store = Store::open_with_clock(compacting(dir.path()), Box::new(FakeClock::new(later)))
        .expect("reopen");
    assert!(store.wait_idle());
    drop(store);
    fill(dir.path(), &FakeClock::new(later), later, 3, 0.05, 4, true);
    let new: Vec<_> = live(dir.path())
        .into_iter()
        .filter(|s| s.time_min_ns >= later)
        .collect();
    assert!(new.len() >= 2, "hours after the victim must ship: {new:?}");
    let victim = new[0].file.clone();
    std::fs::remove_file(dir.path().join(&victim)).expect("delete the segment");
    let victim_key = xdp_audit::ship::layout::Layout::new("fleet", "gw-a").segment(&new[0]);
    let want: Vec<(String, String)> = expected(dir.path(), "fleet", "gw-a")
        .into_iter()
        .filter(|(k, _)| *k != victim_key)
        .collect();

    // In a thread of its own: a pass that never ends must fail the test, not hang it.
    let (tx, rx) = std::sync::mpsc::channel();
    let (d, c) = (dir.path().to_owned(), cfg.clone());
    std::thread::spawn(move || {
        let _ = tx.send(ship_once(&d, &c, &opts()));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Err(ShipError::Missing { files, .. })) => {
            assert_eq!(files, std::slice::from_ref(&victim))
        }
        Ok(other) => panic!("a missing segment must fail the pass by name, got {other:?}"),
        Err(e) => panic!("ship_once did not return with a segment file gone: {e}"),
    }
    assert_eq!(
        remote_segments(&s3, "fleet"),
        want,
        "every other segment shipped, and the merged days' hour objects deleted"
    );

    // The agent's thread: failed passes, counted, naming it (with backoff, not a spin).
    let shipper = Shipper::spawn(dir.path(), &cfg, opts()).expect("spawn");
    wait_until(
        Duration::from_secs(30),
        "two failed passes naming the segment",
        || {
            let s = shipper.status();
            s.failures >= 2 && s.last_error.is_some_and(|e| e.contains(&victim))
        },
    );
    drop(shipper);

    // `xdp-audit ship`: a non-zero exit naming it.
    let child = Command::new(BIN)
        .arg("ship")
        .arg("--log-dir")
        .arg(dir.path())
        .args(["--ship", "s3://audit/fleet", "--gateway-id", "gw-a"])
        .args(["--ship-endpoint", &s3.endpoint()])
        .arg("--ship-credentials")
        .arg(credentials_file(dir.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run xdp-audit ship");
    let mut child = KillOnDrop(child);
    let mut exit = None;
    wait_until(Duration::from_secs(60), "xdp-audit ship exits", || {
        exit = child.0.try_wait().expect("wait for xdp-audit ship");
        exit.is_some()
    });
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).expect("read stderr");
    }
    assert!(
        exit.is_some_and(|s| !s.success()) && stderr.contains(&victim),
        "{exit:?}: {stderr}"
    );
}

#[test]
fn kill_9_at_random_moments_while_shipping_then_a_clean_run_ships_everything() {
    let dir = TempDir::new("ship-kill");
    let bucket = TempDir::new("ship-kill-s3");
    let s3 = S3Server::start(bucket.path());
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 40, 0.05, 9, true);
    // Big hours: segments over the multipart threshold, uploaded in parts.
    fill(dir.path(), &clock, T0 + 41 * HOUR, 2, 80.0, 10, true);
    assert!(
        live(dir.path()).iter().any(|s| s.size >= 5 << 20),
        "no segment reaches the 5 MiB multipart threshold"
    );
    let creds = credentials_file(dir.path());
    let ship_cmd = || {
        let mut c = Command::new(BIN);
        c.arg("ship")
            .arg("--log-dir")
            .arg(dir.path())
            .args(["--ship", "s3://audit/k", "--gateway-id", "gw"])
            .args(["--ship-endpoint", &s3.endpoint()])
            .arg("--ship-credentials")
            .arg(&creds)
            .args(["--ship-multipart-bytes", &(5u64 << 20).to_string()]);
        c
    };
    let mut rng = Rng::new(0x5eed);
    // Kills that came while segments were still to be shipped (the premise, checked below).
    let mut in_flight = 0;
    for i in 0..10 {
        let mut child = ship_cmd()
            .arg("--follow")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start xdp-audit ship");
        // A random moment; in every other round the server is paused first, so requests are
        // in flight (and stay there) when the kill comes.
        let pause = i % 2 == 1;
        std::thread::sleep(Duration::from_millis(rng.below(150)));
        if pause {
            s3.signal(libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(rng.below(150)));
        }
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        if pause {
            s3.signal(libc::SIGCONT);
        }
        let acked = cursor::read(dir.path())
            .expect("cursor")
            .map_or(0, |c| c.acked.len());
        in_flight += usize::from(acked < live(dir.path()).len());
    }
    // The premise: most kills came while there was still work to ship (a faster shipper
    // finishes the store in fewer rounds; then the store must be bigger).
    assert!(
        in_flight >= 5,
        "premise: only {in_flight} of 10 kills came before everything was shipped; the store must be bigger"
    );
    let out = ship_cmd().output().expect("run xdp-audit ship");
    assert!(
        out.status.success(),
        "clean run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = expected(dir.path(), "k", "gw");
    assert_eq!(
        remote_segments(&s3, "k"),
        want,
        "missing, extra or half-written objects"
    );
    eprintln!("kill -9 test: {in_flight} of 10 kills came with segments still to ship");
    let v = Command::new(BIN)
        .arg("verify")
        .arg("--log-dir")
        .arg(dir.path())
        .args(["--remote", "--ship", "s3://audit/k", "--gateway-id", "gw"])
        .args(["--ship-endpoint", &s3.endpoint()])
        .arg("--ship-credentials")
        .arg(&creds)
        .output()
        .expect("run verify --remote");
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success(),
        "verify --remote failed: {text}{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(text.contains("ok remote"), "{text}");
}

#[test]
fn secrets_never_reach_the_log_and_open_credential_files_are_refused() {
    let dir = TempDir::new("ship-secret");
    let bucket = TempDir::new("ship-secret-s3");
    let s3 = S3Server::start(bucket.path());
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 2, 0.05, 4, true);
    let creds = credentials_file(dir.path());
    let run = |creds: &Path| {
        Command::new(BIN)
            .args(["--log", "trace", "ship", "--log-dir"])
            .arg(dir.path())
            .args(["--ship", "s3://audit/s", "--gateway-id", "gw"])
            .args(["--ship-endpoint", &s3.endpoint()])
            .arg("--ship-credentials")
            .arg(creds)
            .output()
            .expect("run xdp-audit ship")
    };
    let out = run(&creds);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("segment shipped"), "trace log expected: {all}");
    assert!(!all.contains(SECRET_KEY), "the secret key was logged");
    // A wrong secret: the error names the request, not the secret.
    let wrong = dir.path().join("wrong.credentials");
    std::fs::write(
        &wrong,
        format!("aws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = WrongSecretValue123\n"),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::remove_file(dir.path().join(cursor::CURSOR)).expect("remove cursor");
    let out = run(&wrong);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a wrong secret must fail: {all}");
    assert!(
        !all.contains("WrongSecretValue123"),
        "the secret was logged: {all}"
    );
    // Readable by others: refused before anything is sent.
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = run(&creds);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a world-readable credentials file was accepted"
    );
    assert!(
        err.contains("--ship-credentials") && err.contains("s3.credentials"),
        "{err}"
    );
}

#[test]
fn two_gateways_in_one_bucket_read_back_with_pyarrow_give_each_stores_row_count() {
    let bucket = TempDir::new("ship-fleet-s3");
    let s3 = S3Server::start(bucket.path());
    let mut counts = Vec::new();
    let mut dirs = Vec::new();
    for (gw, seed, hours) in [("gw-a", 21, 5), ("gw-b", 22, 3)] {
        let dir = TempDir::new(&format!("ship-fleet-{gw}"));
        let clock = FakeClock::new(T0);
        fill(dir.path(), &clock, T0, hours, 0.1, seed, true);
        ship_once(dir.path(), &s3.config("fleet", gw), &opts())
            .unwrap_or_else(|e| panic!("ship {gw}: {e}"));
        // The count `xdp-audit query` prints (CSV rows without the header).
        let q = Command::new(BIN)
            .args(["query", "--format", "csv", "--log-dir"])
            .arg(dir.path())
            .output()
            .expect("run xdp-audit query");
        assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
        let rows = String::from_utf8_lossy(&q.stdout).lines().count() - 1;
        assert!(rows > 0);
        counts.push((gw, rows));
        dirs.push(dir);
    }
    let script = format!(
        r#"
import pyarrow.dataset as ds, pyarrow.fs as fs
s3 = fs.S3FileSystem(access_key="{ACCESS_KEY}", secret_key="{SECRET_KEY}",
                     endpoint_override="127.0.0.1:{port}", scheme="http", region="us-east-1")
# A selector, not ds.dataset("audit/fleet"): s3s-fs answers a HEAD of the "directory" key with
# 500 where S3 says 404. The manifest folder is skipped by its name.
opts = ds.FileSystemFactoryOptions(partitioning=ds.HivePartitioning.discover(),
                                   partition_base_dir="{BUCKET}/fleet",
                                   selector_ignore_prefixes=[".", "_", "manifest"])
d = ds.FileSystemDatasetFactory(s3, fs.FileSelector("{BUCKET}/fleet", recursive=True),
                                ds.ParquetFileFormat(), opts).finish()
for gw in ["gw-a", "gw-b"]:
    print(gw, d.count_rows(filter=ds.field("gateway") == gw))
"#,
        port = s3.port
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 (Debian package python3) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pyarrow failed (install it with `cargo xtask setup`: python3 -m pip install pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (gw, rows) in counts {
        assert!(
            text.contains(&format!("{gw} {rows}\n")),
            "{gw} should have {rows} rows: {text}"
        );
    }
}

/// A manifest deleted (segments left) or emptied fails the pass and leaves the cursor as it
/// was: read as an empty chain, the pass dropped every acknowledgement from the cursor, said
/// it had caught up, and shipped everything again once the manifest was restored.
#[test]
fn a_manifest_gone_or_emptied_fails_the_pass_and_keeps_the_cursor() {
    let dir = TempDir::new("ship-no-manifest");
    let bucket = TempDir::new("ship-no-manifest-s3");
    let s3 = S3Server::start(bucket.path());
    let cfg = s3.config("fleet", "gw-a");
    fill(dir.path(), &FakeClock::new(T0), T0, 3, 0.05, 9, true);
    ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship: {e}"));
    let acked = |d: &Path| {
        cursor::read(d)
            .expect("read the cursor")
            .map_or(0, |c| c.acked.len())
    };
    let before = acked(dir.path());
    assert!(before >= 3, "{before} segments acknowledged");
    let path = dir.path().join(xdp_audit::store::manifest::MANIFEST);
    let original = std::fs::read(&path).expect("read the manifest");
    for (what, damage) in [("deleted", None), ("emptied", Some(""))] {
        match damage {
            None => std::fs::remove_file(&path).expect("delete the manifest"),
            Some(text) => std::fs::write(&path, text).expect("empty the manifest"),
        }
        match ship_once(dir.path(), &cfg, &opts()) {
            Err(e @ ShipError::Manifest(_)) => {
                assert!(e.to_string().contains("manifest.jsonl"), "{what}: {e}")
            }
            other => panic!("{what}: the pass must fail, got {other:?}"),
        }
        assert_eq!(acked(dir.path()), before, "{what}: the cursor kept");
        std::fs::write(&path, &original).expect("restore the manifest");
    }
}

/// A segment of a few MB shipped again after its cursor was lost: s3s-fs refuses the
/// conditional create before it has read the body and drops the connection, which reads as
/// a failed request; the shipper finds the identical object there and takes it (a 5 MB
/// segment failed the pass 8 times in 10).
#[test]
fn a_lost_cursor_reships_segments_of_a_few_mb_without_a_failed_pass() {
    let dir = TempDir::new("ship-big-again");
    let bucket = TempDir::new("ship-big-again-s3");
    let s3 = S3Server::start(bucket.path());
    let mut cfg = s3.config("fleet", "gw-a");
    cfg.multipart_bytes = 64 << 20;
    fill(dir.path(), &FakeClock::new(T0), T0, 1, 100.0, 11, true);
    let want = expected(dir.path(), "fleet", "gw-a");
    let biggest = (std::fs::read_dir(dir.path()).expect("list the store"))
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    assert!(biggest > 4 << 20, "a segment of a few MB: {biggest} bytes");
    ship_once(dir.path(), &cfg, &opts()).unwrap_or_else(|e| panic!("ship: {e}"));
    for round in 0..4 {
        std::fs::remove_file(dir.path().join(cursor::CURSOR)).expect("remove cursor");
        let again = ship_once(dir.path(), &cfg, &opts())
            .unwrap_or_else(|e| panic!("round {round}: the pass failed: {e}"));
        assert_eq!(again.identical_reuploads, want.len() as u64, "{again:?}");
    }
    assert_eq!(remote_segments(&s3, "fleet"), want);
}
