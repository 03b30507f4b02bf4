//! Syslog sink benchmark: `cargo bench -p xdp-audit --bench syslog`.
//!
//! Prints, measured in one run against a plain TCP reader on loopback that counts RFC 6587
//! octet-counted frames:
//! - records/s from `SyslogStage::write` to frames counted by the reader (every record sent,
//!   as with `--syslog-records`; the stage wraps a sink that discards);
//! - the record path (records written to the audit store's journal and synced) with the
//!   syslog stage in front of the store, against the same path without it: the ratio of the
//!   records thread's CPU time (the sender runs on another thread); the same with only drop
//!   records sent (the default); and the same with the enrich stage in front (with empty
//!   attribution tables: the least work it does per record), as the agent's records thread
//!   runs them. Each syslog variant also runs with the store's frame hidden
//!   (`EncodeAgain`), so the record is encoded a second time for syslog: the previous way,
//!   measured in the same run.
//!
//! The send rate is the best of three rounds; the record-path figures are medians of
//! `ROUNDS` rounds, every variant once per round, each round starting at another variant.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xdp_audit::enrich::inputs::Inputs;
use xdp_audit::enrich::stage::{EnrichStage, StageConfig};
use xdp_audit::record::FlowRecord;
use xdp_audit::sink::{RecordSink, SinkError};
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::{Store, StoreConfig};
use xdp_audit::syslog::{Records, SyslogConfig, SyslogStage, Target};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/syslog_receiver.rs"]
mod syslog_receiver;

use syslog_receiver::{receiver, wait_frames};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const N: usize = 300_000;
const ROUNDS: usize = 5;

struct Discard;

impl RecordSink for Discard {
    fn write(&mut self, _: &FlowRecord) -> Result<(), SinkError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
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

fn rate(n: usize, secs: f64) -> f64 {
    n as f64 / secs
}

/// Records/s from the stage to frames counted by the reader, per wall second and per CPU
/// second of the whole process (stage, sender and reader).
fn send_rate(recs: &[FlowRecord]) -> (f64, f64) {
    let (port, frames) = receiver();
    let mut stage = SyslogStage::start(Discard, config(port)).expect("start the stage");
    let (t, c) = (Instant::now(), cpu::process());
    for r in recs {
        stage.write(r).expect("write");
    }
    // The records thread syncs every sweep: the stage hands over its last batch then.
    stage.sync().expect("sync");
    wait_frames(&frames, recs.len() as u64);
    let (d, c) = (t.elapsed(), cpu::process() - c);
    let st = stage.syslog_status().expect("status");
    assert_eq!(st.dropped, 0, "{st:?}");
    stage.close().expect("close");
    (
        rate(recs.len(), d.as_secs_f64()),
        rate(recs.len(), c.as_secs_f64()),
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "xdp-audit-bench-syslog-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Thread-CPU time to write `recs` through `sink` and sync, in seconds.
fn record_path(sink: &mut dyn RecordSink, recs: &[FlowRecord]) -> f64 {
    let c = cpu::thread();
    for r in recs {
        sink.write(r).expect("write");
    }
    sink.sync().expect("sync");
    (cpu::thread() - c).as_secs_f64()
}

fn store(name: &str) -> (Store, PathBuf) {
    let dir = tmp(name);
    let mut cfg = StoreConfig::new(&dir);
    cfg.segment_max_bytes = u64::MAX;
    (Store::open(cfg).expect("open store"), dir)
}

/// The store behind a sink that keeps `RecordSink::write_framed`'s default: the syslog stage
/// in front of it then has each record encoded a second time, as before the store handed its
/// own frames over: the same-run baseline of that change. (That encoding adds the frame's
/// CRC-32, which the earlier batch format did not carry.)
struct EncodeAgain(Store);

impl RecordSink for EncodeAgain {
    fn write(&mut self, r: &FlowRecord) -> Result<(), SinkError> {
        self.0.write(r)
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        self.0.sync()
    }
    fn close(&mut self) -> Result<(), SinkError> {
        self.0.close()
    }
}

/// The record-path variants, each measured once per round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The journal alone.
    Store,
    /// Every record also queued for syslog, the store's frames copied.
    Syslog,
    /// The same, each record encoded again for syslog (the previous way).
    SyslogEncodeAgain,
    /// The default: drop records only.
    SyslogDrops,
    /// Enrich, then the journal.
    Enrich,
    /// Enrich, then every record also queued for syslog, then the journal.
    EnrichSyslog,
    /// The same, each record encoded again for syslog.
    EnrichSyslogEncodeAgain,
}

const VARIANTS: [Variant; 7] = [
    Variant::Store,
    Variant::Syslog,
    Variant::SyslogEncodeAgain,
    Variant::SyslogDrops,
    Variant::Enrich,
    Variant::EnrichSyslog,
    Variant::EnrichSyslogEncodeAgain,
];

/// One round of `v`: its records-thread CPU seconds; with syslog, waits until the receiver
/// counted every record sent.
fn run(v: Variant, recs: &[FlowRecord], round: usize) -> f64 {
    use Variant::*;
    let (s, dir) = store(&format!("v{}-{round}", v as u8));
    let syslog = !matches!(v, Store | Enrich);
    // Only the variants with syslog have a server to send to.
    let (port, frames) = if syslog {
        receiver()
    } else {
        (0, Arc::new(AtomicU64::new(0)))
    };
    let c = || {
        let mut c = config(port);
        if v == SyslogDrops {
            c.records = Records::Drops;
        }
        c
    };
    let mut sink: Box<dyn RecordSink> = match v {
        Store => Box::new(s),
        Enrich => Box::new(enrich(Box::new(s))),
        Syslog | SyslogDrops => Box::new(SyslogStage::start(s, c()).expect("start the stage")),
        SyslogEncodeAgain => Box::new(SyslogStage::start(EncodeAgain(s), c()).expect("start")),
        EnrichSyslog => Box::new(enrich(Box::new(
            SyslogStage::start(s, c()).expect("start the stage"),
        ))),
        EnrichSyslogEncodeAgain => Box::new(enrich(Box::new(
            SyslogStage::start(EncodeAgain(s), c()).expect("start the stage"),
        ))),
    };
    let t = record_path(&mut *sink, recs);
    if syslog {
        let want = if v == SyslogDrops {
            recs.iter().filter(|r| r.dropped > 0).count()
        } else {
            recs.len()
        };
        wait_frames(&frames, want as u64);
    }
    sink.close().expect("close");
    drop(sink);
    let _ = std::fs::remove_dir_all(&dir);
    t
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut g = TrafficGen::with_rate(7, T0, 1000.0);
    let recs: Vec<FlowRecord> = (0..N).map(|_| g.next_record()).collect();

    let (wall, per_cpu) = (0..3)
        .map(|_| send_rate(&recs))
        .fold((0.0, 0.0), |a, b| (f64::max(a.0, b.0), f64::max(a.1, b.1)));
    println!(
        "syslog: {N} records, every one sent over TCP to a loopback reader: {wall:.0} records/s \
         (target >= 100,000); {per_cpu:.0} records per CPU-second of stage, sender and reader together"
    );

    let mut times: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..ROUNDS {
        // Each round starts at another variant, so none always meets a warmer cache.
        for k in 0..VARIANTS.len() {
            let i = (k + round) % VARIANTS.len();
            times[i].push(run(VARIANTS[i], &recs, round));
        }
    }
    let med: Vec<f64> = times.iter().map(|t| cpu::median(t)).collect();
    let m = |v: Variant| med[v as usize];
    let drops = recs.iter().filter(|r| r.dropped > 0).count();
    println!(
        "record path (write + sync), {N} records, records-thread CPU, median of {ROUNDS} interleaved \
         rounds, load average {}:",
        cpu::load()
    );
    println!(
        "  journal alone {:.0} records/s; every record also to syslog: {:.0} records/s, ratio {:.3} \
         (target <= 1.10); encoding each record again for syslog (the previous way): ratio {:.3}",
        rate(N, m(Variant::Store)),
        rate(N, m(Variant::Syslog)),
        m(Variant::Syslog) / m(Variant::Store),
        m(Variant::SyslogEncodeAgain) / m(Variant::Store)
    );
    println!(
        "  the default (drop records only, {drops} of {N} sent): ratio {:.3}",
        m(Variant::SyslogDrops) / m(Variant::Store)
    );
    println!(
        "  enrich + journal {:.0} records/s; every record also to syslog: {:.0} records/s, ratio {:.3} \
         (target <= 1.10); encoding again: ratio {:.3}",
        rate(N, m(Variant::Enrich)),
        rate(N, m(Variant::EnrichSyslog)),
        m(Variant::EnrichSyslog) / m(Variant::Enrich),
        m(Variant::EnrichSyslogEncodeAgain) / m(Variant::Enrich)
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
