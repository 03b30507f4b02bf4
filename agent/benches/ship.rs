//! Shipping throughput to a loopback S3 server (`s3s-fs`), next to a plain upload of the same
//! bytes with the same client (object_store's S3 client, overwrite PUTs one after the other,
//! no checksum, no verification) in the same run; and the record path into the journal (store
//! appends and fsyncs) with and without a shipper working beside it. Rounds of the two
//! variants alternate; each figure is the median of the rounds, as wall time and as CPU time
//! (the bench process and the server process together: on a shared machine the wall figure
//! also measures the neighbours). Run with `cargo bench -p xdp-audit --bench ship` (needs
//! `s3s-fs`: `cargo xtask setup`).

#[path = "../tests/store_common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/ship_common/mod.rs"]
mod ship_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fill, live, TempDir, T0};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::ObjectStoreExt as _;
use ship_common::*;
use xdp_audit::ship::{cursor, ship_once, ShipOptions};
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::{FakeClock, Store};

/// Rounds of each measurement; the median is reported.
const ROUNDS: usize = 7;
/// Records appended per record-path measurement.
const RECORDS: usize = 400_000;

fn plain_upload(s3: &S3Server, files: &[std::path::PathBuf], round: usize) -> Duration {
    // What `ship::remote` does before its client: reqwest's TLS uses rustls with ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .build()
        .expect("plain client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t = Instant::now();
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).expect("read segment");
        rt.block_on(store.put(&Key::from(format!("plain/{round}/{i}")), bytes.into()))
            .expect("plain put");
    }
    t.elapsed()
}

/// Wall and records-thread CPU seconds to append `RECORDS` records to a new store in `dir`
/// and make them durable.
fn journal_rate(dir: &std::path::Path) -> (f64, f64) {
    let clock = FakeClock::new(T0);
    let mut store =
        Store::open_with_clock(common::config(dir), Box::new(clock.clone())).expect("open");
    let mut g = TrafficGen::with_rate(77, T0, 50.0);
    let recs: Vec<_> = (0..RECORDS).map(|_| g.next_record()).collect();
    let (t, c) = (Instant::now(), cpu::thread());
    for r in &recs {
        store.append(r);
    }
    assert!(store.sync_now());
    let took = (t.elapsed().as_secs_f64(), (cpu::thread() - c).as_secs_f64());
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
    took
}

/// Wall and CPU time (this process and the server) of `f`.
fn timed(s3: &S3Server, f: impl FnOnce()) -> (f64, f64) {
    let (t, me, server) = (Instant::now(), cpu::process(), cpu::of_pid(s3.pid()));
    f();
    let cpu = (cpu::process() - me) + (cpu::of_pid(s3.pid()) - server);
    (t.elapsed().as_secs_f64(), cpu.as_secs_f64())
}

fn main() {
    let data = TempDir::new("bench-ship-store");
    let bucket = TempDir::new("bench-ship-s3");
    let s3 = S3Server::start(bucket.path());
    let clock = FakeClock::new(T0);
    // Six busy hours: segments of several MB each (some above the multipart threshold).
    fill(data.path(), &clock, T0, 6, 40.0, 1, true);
    let segs = live(data.path());
    let files: Vec<_> = segs.iter().map(|s| data.path().join(&s.file)).collect();
    let bytes: u64 = segs.iter().map(|s| s.size).sum();
    let opts = ShipOptions::default();
    let (mut plain, mut ship) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut runs: [&mut dyn FnMut(); 2] = [
            &mut || {
                plain.push(timed(&s3, || {
                    let _ = plain_upload(&s3, &files, round);
                }))
            },
            &mut || {
                let _ = std::fs::remove_file(data.path().join(cursor::CURSOR));
                let cfg = s3.config(&format!("ship{round}"), "bench");
                ship.push(timed(&s3, || {
                    let st = ship_once(data.path(), &cfg, &opts).expect("ship");
                    assert_eq!(st.shipped_segments, segs.len() as u64);
                }));
            },
        ];
        if round % 2 == 1 {
            runs.reverse();
        }
        for run in runs {
            run();
        }
    }
    let med = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        cpu::median(&v.iter().map(f).collect::<Vec<_>>())
    };
    let (pw, pc) = (med(&plain, |r| r.0), med(&plain, |r| r.1));
    let (sw, sc) = (med(&ship, |r| r.0), med(&ship, |r| r.1));
    let mb = bytes as f64 / 1e6;
    println!(
        "ship: {} segments, {mb:.1} MB, median of {ROUNDS} alternating rounds, load average {}: \
         wall: plain upload {:.1} MB/s, shipping {:.1} MB/s = {:.2}x the plain upload (target >= 0.8x); \
         CPU (client and server): plain {:.1} MB per CPU-second, shipping {:.1} = {:.2}x",
        segs.len(),
        cpu::load(),
        mb / pw,
        mb / sw,
        pw / sw,
        mb / pc,
        mb / sc,
        pc / sc
    );
    // The record path into the journal, alone and with a shipper busy beside it.
    let scratch = TempDir::new("bench-ship-journal");
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    let mut passes = 0;
    for round in 0..ROUNDS {
        let mut runs: [&mut dyn FnMut(); 2] = [
            &mut || alone.push(journal_rate(&scratch.path().join(format!("a{round}")))),
            &mut || {
                let busy = Arc::new(AtomicBool::new(true));
                let shipping = background_ship(&s3, data.path(), round, busy.clone());
                beside.push(journal_rate(&scratch.path().join(format!("b{round}"))));
                busy.store(false, Ordering::Relaxed);
                passes += shipping.join().expect("shipping thread");
            },
        ];
        if round % 2 == 1 {
            runs.reverse();
        }
        for run in runs {
            run();
        }
    }
    let (aw, ac) = (med(&alone, |r| r.0), med(&alone, |r| r.1));
    let (bw, bc) = (med(&beside, |r| r.0), med(&beside, |r| r.1));
    println!(
        "record path into the journal ({RECORDS} records, median of {ROUNDS} alternating rounds, load average {}): \
         wall {:.0} records/s alone, {:.0} while shipping ({passes} full passes) = {:.1}% slower; \
         records thread CPU {:.0} and {:.0} records/s = {:.1}% slower (target <= 5%)",
        cpu::load(),
        RECORDS as f64 / aw,
        RECORDS as f64 / bw,
        (bw / aw - 1.0) * 100.0,
        RECORDS as f64 / ac,
        RECORDS as f64 / bc,
        (bc / ac - 1.0) * 100.0
    );
}

/// A thread shipping the store in `dir` again and again (each pass to a new gateway id, so
/// every pass uploads everything) while `busy`; returns its passes.
fn background_ship(
    s3: &S3Server,
    dir: &std::path::Path,
    round: usize,
    busy: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let (dir, cfg) = (dir.to_owned(), s3.config(&format!("bg{round}"), "bench"));
    std::thread::spawn(move || {
        let mut n = 0u64;
        while busy.load(Ordering::Relaxed) {
            let _ = std::fs::remove_file(dir.join(cursor::CURSOR));
            let cfg = xdp_audit::ship::config::ShipConfig {
                gateway_id: format!("bench{n}"),
                ..cfg.clone()
            };
            ship_once(&dir, &cfg, &ShipOptions::default()).expect("background ship");
            n += 1;
        }
        n
    })
}
