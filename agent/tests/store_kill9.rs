//! Crash safety: a writer under steady load is killed with SIGKILL at 20 random moments.
//! After each kill the store verifies, and every record the writer acknowledged after an
//! fsync is found by query; the next start seals the torn leftover journal.
//!
//! The writer is this test binary re-executed with `XDP_AUDIT_KILL9_CHILD` set: it writes
//! records numbered 0, 1, 2, ... (`packets` = number, `ifindex` = run) and prints
//! `ACK <n>` once records 0..n are durable. Odd runs write records of a closed day, which the
//! sealer compacts after every seal.

mod cli_common;
#[path = "store_common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_common::Reaped;
use common::*;
use xdp_audit::store::query::{collect, Filter};
use xdp_audit::store::testgen::{Rng, TrafficGen};
use xdp_audit::store::verify::verify;
use xdp_audit::store::{Store, StoreConfig};

const CHILD_ENV: &str = "XDP_AUDIT_KILL9_CHILD";
const RUN_ENV: &str = "XDP_AUDIT_KILL9_RUN";

fn child(dir: &str, run: u32) -> ! {
    let mut cfg = StoreConfig::new(dir);
    cfg.fsync_interval = Duration::from_millis(5);
    cfg.segment_max_bytes = 48 * 1024; // seal often, so kills land inside seals too
    let mut store = Store::open(cfg).unwrap_or_else(|e| panic!("child open: {e}"));
    let mut g = TrafficGen::with_rate(u64::from(run), 0, 1000.0);
    // Odd runs date their records three days back, in a closed day: the sealer then merges
    // that day's segments after every seal, so kills land inside compactions too.
    let back = if run % 2 == 1 { 3 * DAY } else { 0 };
    let stdout = std::io::stdout();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i: u64 = 0;
    while Instant::now() < deadline {
        for _ in 0..20 {
            let mut r = g.next_record();
            r.time_start_ns = jiff::Timestamp::now().as_nanosecond() as i64 - back;
            r.time_end_ns = r.time_start_ns + 1000;
            r.ifindex = run;
            r.packets = i;
            store.append(&r);
            i += 1;
        }
        if store.sync_now() {
            let durable = store.status().durable;
            let mut out = stdout.lock();
            let _ = writeln!(out, "ACK {durable}");
            let _ = out.flush();
        }
        // A pace, not a wait: steady load rather than a spin, so the kills land all over
        // the writer's cycle of appends, syncs and seals.
        std::thread::sleep(Duration::from_micros(500));
    }
    std::process::exit(0)
}

#[test]
fn acknowledged_records_survive_kill_9_at_random_moments() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let run = std::env::var(RUN_ENV)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        child(&dir, run);
    }
    let dir = TempDir::new("kill9");
    let exe = std::env::current_exe().expect("current_exe");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut rng = Rng::new(seed);
    let mut acked: Vec<u64> = Vec::new();
    for run in 0..20u32 {
        // Killed and reaped on drop too, so a failing check leaves no writer running.
        let mut c = Reaped(
            Command::new(&exe)
                .args([
                    "--exact",
                    "acknowledged_records_survive_kill_9_at_random_moments",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, dir.path())
                .env(RUN_ENV, run.to_string())
                .env("RUST_LOG", "off")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn writer"),
        );
        let stdout = c.0.stdout.take().expect("child stdout");
        let (first_ack, got_first) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut last = 0u64;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("ACK ").and_then(|n| n.parse().ok()) {
                    if last == 0 {
                        let _ = first_ack.send(());
                    }
                    last = n;
                }
            }
            last
        });
        // Every fourth run is killed at a random moment after spawning (possibly while it
        // seals the previous run's journal at start); the others under load, a random time
        // after their first acknowledgement.
        let under_load = run % 4 != 3;
        if under_load {
            got_first
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!("run {run}: the writer never acknowledged (seed {seed})")
                });
        }
        let wait_ms = if under_load {
            20 + rng.below(400)
        } else {
            rng.below(300)
        };
        std::thread::sleep(Duration::from_millis(wait_ms));
        c.0.kill().expect("SIGKILL the writer"); // Child::kill sends SIGKILL
        c.0.wait().expect("reap writer");
        let n = reader.join().expect("reader thread");
        assert!(
            n > 0 || !under_load,
            "run {run}: no acknowledgement (seed {seed})"
        );
        acked.push(n);

        // After the kill: the chain verifies and every acknowledged record is found, in
        // sealed segments or the torn leftover journal (read up to its valid prefix).
        verify(dir.path(), None)
            .unwrap_or_else(|b| panic!("run {run}: verify after kill: {b} (seed {seed})"));
        check_all_found(dir.path(), &acked, run, seed);
    }
    // A last clean start seals the leftover journal; everything is still there.
    let store = Store::open(StoreConfig::new(dir.path())).expect("final open");
    drop(store);
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("final verify: {b}"));
    assert!(
        v.segments + v.compacted > 20,
        "expected many sealed segments, got {v:?}"
    );
    assert!(
        v.compacted > 0,
        "the odd runs' closed day was never merged: {v:?}"
    );
    check_all_found(dir.path(), &acked, 20, seed);
}

fn check_all_found(dir: &std::path::Path, acked: &[u64], run: u32, seed: u64) {
    let found: HashSet<(u32, u64)> = collect(dir, &Filter::default())
        .unwrap_or_else(|e| panic!("run {run}: query: {e} (seed {seed})"))
        .into_iter()
        .map(|r| (r.ifindex, r.packets))
        .collect();
    for (r, &n) in acked.iter().enumerate() {
        for i in 0..n {
            assert!(
                found.contains(&(r as u32, i)),
                "after run {run}: record {i} of run {r} was acknowledged ({n} acked) but is missing (seed {seed})"
            );
        }
    }
}
