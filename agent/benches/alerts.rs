//! Alert-stage benchmark: `cargo bench -p xdp-audit --bench alerts`.
//!
//! What the alert stage costs the record path: the records thread's CPU time to write the
//! same records into the audit store directly (the baseline) and through the `AlertStage`
//! (each blocked record handed to the running alert thread by `try_send`), in the same run,
//! alternating, the median of several rounds each. Two mixes: one record in ten blocked (a
//! gateway under heavy blocking) and every record blocked (the worst case; the queue then
//! fills and the surplus is counted, never waited for). A third variant stops the alert
//! thread first, so its batches are dropped: the stage's own work on the records thread,
//! without the other thread reading the batches. The store write alone is the cheapest stage
//! of the record path; the target (<= 3% of the record path, ring buffer -> journal)
//! is measured against the whole path in `event_path.rs`.
//!
//! Timed ratios on these shared 2-core machines spread by several percent between runs, wider
//! than the 3% target. So the same rows are also counted in instructions: the bench runs
//! itself under Valgrind's callgrind (when `valgrind` is installed) once per variant, with
//! collection on only inside [`counted_writes`] and per thread, and prints the records
//! thread's instruction counts and their ratio, which repeat to the instruction. They weigh
//! every instruction alike (a cache miss or a futex wake counts as what it executes), so they
//! sit beside the timed ratio, not in its place.

use std::path::PathBuf;
use std::time::Duration;

use xdp_audit::alert::stage::AlertStage;
use xdp_audit::alert::{AlertConfig, Alerts};
use xdp_audit::record::FlowRecord;
use xdp_audit::sink::RecordSink;
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::{Store, StoreConfig};

#[path = "support/callgrind.rs"]
mod callgrind;
#[path = "support/cpu.rs"]
mod cpu;

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const RECORDS: usize = 400_000;
const ROUNDS: usize = 7;

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "xdp-audit-bench-alerts-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn store(name: &str) -> (Store, PathBuf) {
    let dir = tmp(name);
    let mut cfg = StoreConfig::new(&dir);
    cfg.segment_max_bytes = u64::MAX;
    (Store::open(cfg).expect("open the bench store"), dir)
}

/// CPU time of the records thread writing `recs` into `sink`, made durable.
fn write_all(sink: &mut dyn RecordSink, recs: &[FlowRecord]) -> Duration {
    let c = cpu::thread();
    counted_writes(sink, recs);
    cpu::thread() - c
}

/// Writes `recs` into `sink` and makes them durable: what callgrind counts (by this name).
#[inline(never)]
fn counted_writes(sink: &mut dyn RecordSink, recs: &[FlowRecord]) {
    for r in recs {
        sink.write(r).expect("write");
    }
    sink.sync().expect("sync");
}

/// Records a callgrind run writes (it runs some 50 times slower).
const CALLGRIND_RECORDS: usize = 50_000;

/// The process callgrind runs: one variant's writes, nothing else.
fn callgrind_child(spec: &str) {
    callgrind::child_setup();
    let (variant, every) = spec.split_once(':').expect("VARIANT:N");
    let every: usize = every.parse().expect("N");
    let mut recs = records(every);
    recs.truncate(CALLGRIND_RECORDS);
    let (s, dir) = store(variant);
    match variant {
        "direct" => {
            let mut s = s;
            counted_writes(&mut s, &recs);
        }
        "stage" => {
            let alerts = Alerts::start(&AlertConfig::default(), 262_144, Vec::new())
                .expect("start the alert thread");
            let mut stage = AlertStage::new(s, alerts.handle());
            counted_writes(&mut stage, &recs);
            drop(stage);
            alerts.stop();
        }
        other => panic!("{}: unknown variant {other}", callgrind::ENV),
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn records(blocked_every: usize) -> Vec<FlowRecord> {
    let mut g = TrafficGen::with_rate(7, T0, 1000.0);
    (0..RECORDS)
        .map(|i| {
            let mut r = g.next_record();
            if i % blocked_every == 0 {
                r.dropped = r.packets.max(1);
                r.rule = Some(format!("/etc/xdp-audit/block.list:{}", i % 500 + 1));
            } else {
                r.dropped = 0;
            }
            r
        })
        .collect()
}

fn main() {
    if let Ok(spec) = std::env::var(callgrind::ENV) {
        callgrind_child(&spec);
        return;
    }
    for (label, every) in [("1 in 10 blocked", 10), ("all blocked", 1)] {
        let recs = records(every);
        let (mut base, mut with, mut alone) = (Vec::new(), Vec::new(), Vec::new());
        // The alert thread's CPU per blocked record it counted, off the record path.
        let mut per_hit = Vec::new();
        let blocked = RECORDS.div_ceil(every) as u64;
        let mut lost = 0;
        for round in 0..ROUNDS {
            let mut runs: [&mut dyn FnMut(); 3] = [
                &mut || {
                    let (s, dir) = store("alone");
                    let alerts = Alerts::start(&AlertConfig::default(), 262_144, Vec::new())
                        .expect("start the alert thread");
                    let h = alerts.handle();
                    alerts.stop();
                    let mut stage = AlertStage::new(s, h);
                    alone.push(write_all(&mut stage, &recs).as_secs_f64());
                    drop(stage);
                    let _ = std::fs::remove_dir_all(dir);
                },
                &mut || {
                    let (mut s, dir) = store("base");
                    base.push(write_all(&mut s, &recs).as_secs_f64());
                    drop(s);
                    let _ = std::fs::remove_dir_all(dir);
                },
                &mut || {
                    let (s, dir) = store("alerts");
                    let alerts = Alerts::start(&AlertConfig::default(), 262_144, Vec::new())
                        .expect("start the alert thread");
                    let mut stage = AlertStage::new(s, alerts.handle());
                    with.push(write_all(&mut stage, &recs).as_secs_f64());
                    let handle = alerts.handle();
                    drop(stage);
                    // Stopped first: it has then counted every batch it was handed.
                    alerts.stop();
                    let full = handle.status().queue_full;
                    lost = lost.max(full);
                    let counted = blocked.saturating_sub(full).max(1);
                    per_hit.push(handle.thread_cpu().as_secs_f64() / counted as f64);
                    let _ = std::fs::remove_dir_all(dir);
                },
            ];
            // Alternate which goes first, so neither always meets a warmer page cache.
            if round % 2 == 1 {
                runs.reverse();
            }
            for run in runs {
                run();
            }
        }
        let (base, with) = (cpu::median(&base), cpu::median(&with));
        println!(
            "alerts ({label}): {RECORDS} records into the store, records-thread CPU, median of {ROUNDS} \
             alternating rounds, load average {}: direct {:.3} s, through the alert stage {:.3} s; \
             ratio {:.3}; the stage alone (its thread stopped: batches dropped, no other thread \
             at work) {:.3}; {lost} hits dropped by a full alert queue (counted); the alert \
             thread besides: {:.1} ns of CPU per blocked record",
            cpu::load(),
            base,
            with,
            with / base,
            cpu::median(&alone) / base,
            cpu::median(&per_hit) * 1e9
        );
        if let (Some(direct), Some(stage)) = (
            callgrind::count("alerts", "counted_writes", &format!("direct:{every}")),
            callgrind::count("alerts", "counted_writes", &format!("stage:{every}")),
        ) {
            println!(
                "alerts ({label}), instructions (callgrind, {CALLGRIND_RECORDS} records, the \
                 records thread only): direct {direct}, through the alert stage {stage}; ratio \
                 {:.4} ({:.1} instructions a record more)",
                stage as f64 / direct as f64,
                (stage as f64 - direct as f64) / CALLGRIND_RECORDS as f64
            );
        }
    }
}
