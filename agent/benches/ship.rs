//! Shipping throughput to a loopback S3 server (`s3s-fs`), next to a plain upload of the same
//! bytes with the same client (object_store's S3 client, overwrite PUTs, no checksum, no
//! verification) in the same run; and the record path into the journal (store appends and
//! fsyncs) with and without a shipper working beside it. Run with
//! `cargo bench -p xdp-audit --bench ship` (needs `s3s-fs`: `cargo xtask setup`).

#[path = "../tests/store_common/mod.rs"]
mod common;
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

/// Rounds of each measurement; the fastest is reported.
const ROUNDS: usize = 3;
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

fn journal_rate(dir: &std::path::Path) -> f64 {
    let clock = FakeClock::new(T0);
    let mut store =
        Store::open_with_clock(common::config(dir), Box::new(clock.clone())).expect("open");
    let mut g = TrafficGen::with_rate(77, T0, 50.0);
    let recs: Vec<_> = (0..RECORDS).map(|_| g.next_record()).collect();
    let t = Instant::now();
    for r in &recs {
        store.append(r);
    }
    assert!(store.sync_now());
    let rate = RECORDS as f64 / t.elapsed().as_secs_f64();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
    rate
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
    let mut best_plain = Duration::MAX;
    let mut best_ship = Duration::MAX;
    for round in 0..ROUNDS {
        best_plain = best_plain.min(plain_upload(&s3, &files, round));
        let _ = std::fs::remove_file(data.path().join(cursor::CURSOR));
        let cfg = s3.config(&format!("ship{round}"), "bench");
        let t = Instant::now();
        let st = ship_once(data.path(), &cfg, &opts).expect("ship");
        best_ship = best_ship.min(t.elapsed());
        assert_eq!(st.shipped_segments, segs.len() as u64);
    }
    let mbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    println!(
        "ship: {} segments, {:.1} MB: plain upload {:.1} MB/s, shipping {:.1} MB/s = {:.2}x the plain upload (target >= 0.8x)",
        segs.len(),
        bytes as f64 / 1e6,
        mbps(best_plain),
        mbps(best_ship),
        best_plain.as_secs_f64() / best_ship.as_secs_f64()
    );

    // The record path into the journal, alone and with a shipper busy beside it.
    let scratch = TempDir::new("bench-ship-journal");
    let mut alone = 0f64;
    for i in 0..ROUNDS {
        alone = alone.max(journal_rate(&scratch.path().join(format!("a{i}"))));
    }
    let busy = Arc::new(AtomicBool::new(true));
    let shipping = {
        let (busy, dir, cfg) = (
            busy.clone(),
            data.path().to_owned(),
            s3.config("bg", "bench"),
        );
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
    };
    let mut beside = 0f64;
    for i in 0..ROUNDS {
        beside = beside.max(journal_rate(&scratch.path().join(format!("b{i}"))));
    }
    busy.store(false, Ordering::Relaxed);
    let passes = shipping.join().expect("shipping thread");
    println!(
        "record path into the journal: {:.0} records/s alone, {:.0} records/s while shipping ({} full passes) = {:.1}% slower (target <= 5%)",
        alone,
        beside,
        passes,
        (1.0 - beside / alone) * 100.0
    );
}
