//! Syslog sink benchmark: `cargo bench -p xdp-audit --bench syslog`.
//!
//! Prints, measured in one run against a plain TCP reader on loopback that counts RFC 6587
//! octet-counted frames:
//! - records/s from `SyslogStage::write` to frames counted by the reader (every record sent,
//!   as with `--syslog-records`; the stage wraps a sink that discards);
//! - the record path (records written to the audit store's journal and synced) with the
//!   syslog stage in front of the store, against the same path without it: the time ratio;
//!   and the same with the enrich stage in front (with empty attribution tables: the least
//!   work it does per record), as the agent's records thread runs them.
//!
//! Each figure is the best of a few rounds, the two record-path variants alternating. The
//! record path is timed on its own thread's CPU clock as well as the wall clock: the sender
//! runs on another thread, and on a shared machine the wall ratio also measures how busy
//! the other cores are.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xdp_audit::enrich::inputs::Inputs;
use xdp_audit::enrich::stage::{EnrichStage, StageConfig};
use xdp_audit::record::FlowRecord;
use xdp_audit::sink::{RecordSink, SinkError};
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::{Store, StoreConfig};
use xdp_audit::syslog::{Records, SyslogConfig, SyslogStage, Target};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const N: usize = 300_000;
const ROUNDS: usize = 3;

struct Discard;

impl RecordSink for Discard {
    fn write(&mut self, _: &FlowRecord) -> Result<(), SinkError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A TCP reader on 127.0.0.1 counting octet-counted frames over all its connections.
fn receiver() -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
    let port = l.local_addr().expect("receiver address").port();
    let frames = Arc::new(AtomicU64::new(0));
    let count = frames.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { break };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::with_capacity(1 << 20, conn);
                let mut len = Vec::with_capacity(8);
                let mut body = vec![0u8; 1 << 16];
                loop {
                    len.clear();
                    match r.read_until(b' ', &mut len) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let n: usize = match std::str::from_utf8(&len[..len.len() - 1])
                        .ok()
                        .and_then(|s| s.parse().ok())
                    {
                        Some(n) => n,
                        None => panic!("bad frame length {:?}", String::from_utf8_lossy(&len)),
                    };
                    if body.len() < n {
                        body.resize(n, 0);
                    }
                    if r.read_exact(&mut body[..n]).is_err() {
                        break;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (port, frames)
}

fn config(port: u16) -> SyslogConfig {
    let mut c = SyslogConfig::new(Target::parse(&format!("tcp://127.0.0.1:{port}")).expect("url"));
    c.records = Records::All;
    // Room for every record: the figures are the cost of sending all of them, not of
    // dropping some.
    c.queue = N;
    c.close_timeout = Duration::from_secs(60);
    c
}

/// Waits until `frames` reaches `n`, with a deadline.
fn wait_frames(frames: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while frames.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "the receiver counted {} of {n} frames in 120 s",
            frames.load(Ordering::Relaxed)
        );
        std::thread::yield_now();
    }
}

/// The CPU time of `clock` (`CLOCK_THREAD_CPUTIME_ID`, `CLOCK_PROCESS_CPUTIME_ID`).
fn cpu(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock})");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Records/s from the stage to frames counted by the reader, per wall second and per CPU
/// second of the whole process (stage, sender and reader).
fn send_rate(recs: &[FlowRecord]) -> (f64, f64) {
    let (port, frames) = receiver();
    let mut stage = SyslogStage::start(Discard, config(port)).expect("start the stage");
    let (t, c) = (Instant::now(), cpu(libc::CLOCK_PROCESS_CPUTIME_ID));
    for r in recs {
        stage.write(r).expect("write");
    }
    // The records thread syncs every sweep: the stage hands over its last batch then.
    stage.sync().expect("sync");
    wait_frames(&frames, recs.len() as u64);
    let (d, c) = (t.elapsed(), cpu(libc::CLOCK_PROCESS_CPUTIME_ID) - c);
    let st = stage.syslog_status().expect("status");
    assert_eq!(st.dropped, 0, "{st:?}");
    stage.close().expect("close");
    (rate(recs.len(), d), rate(recs.len(), c))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "xdp-audit-bench-syslog-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Wall and thread-CPU time to write `recs` through `sink` and sync.
fn record_path(sink: &mut dyn RecordSink, recs: &[FlowRecord]) -> (Duration, Duration) {
    let (t, c) = (Instant::now(), cpu(libc::CLOCK_THREAD_CPUTIME_ID));
    for r in recs {
        sink.write(r).expect("write");
    }
    sink.sync().expect("sync");
    (t.elapsed(), cpu(libc::CLOCK_THREAD_CPUTIME_ID) - c)
}

fn min(a: (Duration, Duration), b: (Duration, Duration)) -> (Duration, Duration) {
    (a.0.min(b.0), a.1.min(b.1))
}

fn store(name: &str) -> (Store, PathBuf) {
    let dir = tmp(name);
    let mut cfg = StoreConfig::new(&dir);
    cfg.segment_max_bytes = u64::MAX;
    (Store::open(cfg).expect("open store"), dir)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut g = TrafficGen::with_rate(7, T0, 1000.0);
    let recs: Vec<FlowRecord> = (0..N).map(|_| g.next_record()).collect();

    let (wall, per_cpu) = (0..ROUNDS)
        .map(|_| send_rate(&recs))
        .fold((0.0, 0.0), |a, b| (f64::max(a.0, b.0), f64::max(a.1, b.1)));
    println!(
        "syslog: {N} records, every one sent over TCP to a loopback reader: {wall:.0} records/s \
         (target >= 100,000); {per_cpu:.0} records per CPU-second of stage, sender and reader together"
    );

    let far = (Duration::MAX, Duration::MAX);
    let (mut plain, mut with, mut drops) = (far, far, far);
    let (mut enrich_plain, mut enrich_with) = (far, far);
    let (mut sent, mut drops_sent) = (0, 0);
    for round in 0..ROUNDS {
        let (mut s, dir) = store(&format!("plain{round}"));
        plain = min(plain, record_path(&mut s, &recs));
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);

        let (port, frames) = receiver();
        let (s, dir) = store(&format!("with{round}"));
        let mut stage = SyslogStage::start(s, config(port)).expect("start the stage");
        with = min(with, record_path(&mut stage, &recs));
        wait_frames(&frames, recs.len() as u64);
        sent = stage.syslog_status().map_or(0, |s| s.sent);
        stage.close().expect("close");
        drop(stage);
        let _ = std::fs::remove_dir_all(&dir);

        // The default: drop records only.
        let (port, frames) = receiver();
        let (s, dir) = store(&format!("drops{round}"));
        let mut c = config(port);
        c.records = Records::Drops;
        let mut stage = SyslogStage::start(s, c).expect("start the stage");
        drops = min(drops, record_path(&mut stage, &recs));
        let n_drops = recs.iter().filter(|r| r.dropped > 0).count() as u64;
        wait_frames(&frames, n_drops);
        drops_sent = n_drops;
        stage.close().expect("close");
        drop(stage);
        let _ = std::fs::remove_dir_all(&dir);

        // The records thread's stages: enrich, then the store, without and with syslog.
        let (s, dir) = store(&format!("enrich{round}"));
        let mut e = enrich(Box::new(s));
        enrich_plain = min(enrich_plain, record_path(&mut e, &recs));
        e.close().expect("close");
        drop(e);
        let _ = std::fs::remove_dir_all(&dir);
        let (port, frames) = receiver();
        let (s, dir) = store(&format!("enrich-with{round}"));
        let stage = SyslogStage::start(s, config(port)).expect("start the stage");
        let mut e = enrich(Box::new(stage));
        enrich_with = min(enrich_with, record_path(&mut e, &recs));
        wait_frames(&frames, recs.len() as u64);
        e.close().expect("close");
        drop(e);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "record path (write + sync to the journal), {N} records, every one also queued for syslog \
         ({sent} sent): records thread CPU {:.0} records/s without syslog, {:.0} with: ratio {:.3} \
         (target <= 1.10); wall {:.0} and {:.0} records/s: ratio {:.3}",
        rate(N, plain.1),
        rate(N, with.1),
        with.1.as_secs_f64() / plain.1.as_secs_f64(),
        rate(N, plain.0),
        rate(N, with.0),
        with.0.as_secs_f64() / plain.0.as_secs_f64()
    );
    println!(
        "record path with the default (drop records only, {drops_sent} of {N} sent): records thread CPU \
         ratio {:.3}, wall ratio {:.3}",
        drops.1.as_secs_f64() / plain.1.as_secs_f64(),
        drops.0.as_secs_f64() / plain.0.as_secs_f64()
    );
    println!(
        "records thread (enrich + journal), every record also queued for syslog: records thread CPU \
         {:.0} records/s without syslog, {:.0} with: ratio {:.3} (target <= 1.10); wall ratio {:.3}",
        rate(N, enrich_plain.1),
        rate(N, enrich_with.1),
        enrich_with.1.as_secs_f64() / enrich_plain.1.as_secs_f64(),
        enrich_with.0.as_secs_f64() / enrich_plain.0.as_secs_f64()
    );
}

/// The enrich stage in front of `inner`, with empty attribution tables.
fn enrich(inner: Box<dyn RecordSink>) -> EnrichStage {
    EnrichStage::new(
        inner,
        Inputs::fixed(Default::default(), None, None),
        StageConfig::default(),
    )
}
