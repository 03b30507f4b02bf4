//! How fast the agent takes events off the ring buffer, next to the floor of consuming the
//! ring without reading its records, measured in the same run: the reader alone (drain and
//! decode), the sweeper alone without and with its file of open flows (what that file costs
//! the event path), and the whole way to the sweeper (reader, queue, records stage). Also what the
//! program costs per new flow, whose events these are. The default ring is sized from these
//! figures (README: one second of new flows at the rate the defaults are sized for). Needs
//! root. Run with `cargo bench -p xdp-audit --bench pipeline`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use aya::maps::RingBuf;
use common::newflows::{fill, load, start_daemon, Discard};
use xdp_audit::clock::{clock_ns, Timeline, WallClock};
use xdp_audit::daemon::queue::BATCH_EVENTS;
use xdp_audit::daemon::{Interface, Settings};
use xdp_audit::reader::{Event, RingReader};
use xdp_audit::sweeper::spill::Spill;
use xdp_audit::sweeper::{Sweeper, Timeouts};

/// Events per measurement: new flows, one start event each.
const EVENTS: u64 = 400_000;
/// Rounds of each measurement; the fastest is reported.
const ROUNDS: usize = 3;

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// CPU time of the calling thread: on a shared machine, wall time also counts the other
/// processes' turns.
fn thread_cpu() -> Duration {
    Duration::from_nanos(clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) as u64)
}

/// Wall and CPU time of `f` on this thread.
fn timed(f: impl FnOnce()) -> (Duration, Duration) {
    let (w, c) = (Instant::now(), thread_cpu());
    f();
    (w.elapsed(), thread_cpu() - c)
}

fn main() {
    let (mut floor, mut reader, mut sweeper) = (Best::default(), Best::default(), Best::default());
    let mut saving = Best::default();
    let mut pipeline = 0f64;
    let mut per_flow = f64::MAX;
    for round in 0..ROUNDS as u64 {
        // The floor and the reader, on one program: the ring filled twice.
        let (mut program, maps) = load(1 << 20).into_parts();
        per_flow = per_flow.min(fill(&mut program, 0, EVENTS));
        let mut events = maps.events;
        let mut ring = RingBuf::try_from(&mut events).expect("ring");
        let mut n = 0u64;
        let (wall, cpu) = timed(|| {
            while let Some(item) = ring.next() {
                std::hint::black_box(&*item);
                n += 1;
            }
        });
        drop(ring);
        assert_eq!(n, EVENTS, "the ring held every event");
        floor.note(wall, cpu);
        fill(&mut program, EVENTS, EVENTS);
        let mut r = RingReader::new(&events).expect("ring");
        // In batches of the daemon's size, each in a buffer of its own, as the reader sends them.
        let mut batches: Vec<Vec<Event>> = Vec::new();
        let (wall, cpu) = timed(|| loop {
            let mut batch = Vec::with_capacity(BATCH_EVENTS);
            if r.drain_released(&mut batch, BATCH_EVENTS).records == 0 {
                break;
            }
            batches.push(batch);
        });
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>() as u64, EVENTS);
        reader.note(wall, cpu);
        drop((r, program));
        // The sweeper alone, on the same events, on this thread, settled after each batch as
        // the records stage does; then (or first, every other round) the same keeping its
        // file of open flows, in a directory of `/dev/shm` (a tmpfs, as `/run` is).
        let mut order = [false, true];
        if round % 2 == 1 {
            order.reverse();
        }
        for keep in order {
            let mut s = Sweeper::new(
                Timeouts::default(),
                Timeline::fixed(WallClock::from_offset(0)),
                Default::default(),
            );
            let dir = std::path::Path::new("/dev/shm").join(format!(
                "xdp-audit-bench-pipeline-spill-{}",
                std::process::id()
            ));
            if keep {
                std::fs::create_dir_all(&dir).expect("create the state directory");
                let (spill, saved) = Spill::open(&dir);
                s.restore(spill, saved);
            }
            let events = batches.clone();
            let (wall, cpu) = timed(|| {
                for batch in events {
                    for ev in batch {
                        s.on_event(ev, &mut Discard, &());
                    }
                    s.settle(&mut Discard);
                }
            });
            if keep {
                let len = std::fs::metadata(dir.join(xdp_audit::sweeper::spill::FILE_NAME))
                    .map_or(0, |m| m.len());
                assert!(
                    len > EVENTS * 100,
                    "the file holds every open flow: {len} bytes"
                );
                let _ = std::fs::remove_dir_all(&dir);
                saving.note(wall, cpu);
            } else {
                sweeper.note(wall, cpu);
            }
        }
        drop(batches);

        // The whole way to the sweeper: the daemon started on a full ring.
        let (mut program, maps) = load(1 << 20).into_parts();
        fill(&mut program, round * EVENTS, EVENTS);
        let settings = Settings {
            sweep_interval: Duration::from_secs(3600),
            watch_lists: false,
            ..Settings::new(
                std::env::temp_dir()
                    .join(format!("xdp-audit-bench-pipeline-{}", std::process::id())),
                vec![Interface {
                    name: "lo".into(),
                    ifindex: 1,
                }],
            )
        };
        let (mut daemon, control) = start_daemon(settings, maps);
        let t = Instant::now();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(daemon.run()).expect("run");
            drop(rt);
            daemon.finish().expect("finish")
        });
        while control.pipeline().processed < EVENTS {
            std::thread::sleep(Duration::from_micros(200));
        }
        pipeline = pipeline.max(rate(EVENTS, t.elapsed()));
        control.stop();
        let summary = thread.join().expect("daemon thread");
        assert_eq!(
            summary.flows.starts, EVENTS,
            "every start reached the sweeper"
        );
        drop(program);
    }
    println!(
        "pipeline: {EVENTS} new-flow events, fastest of {ROUNDS} rounds; the program's cost per new flow {per_flow:.0} ns ({:.2} M flows/s per CPU)",
        1e3 / per_flow
    );
    println!(
        "{:<46} {:>14} {:>9} {:>14} {:>9}",
        "stage", "events/s wall", "vs floor", "events/s CPU", "vs floor"
    );
    for (name, b) in [
        ("floor: consume the ring, records unread", &floor),
        ("reader: drain and decode", &reader),
        ("sweeper alone: take note of each start", &sweeper),
        ("sweeper alone, keeping its file of open flows", &saving),
    ] {
        println!(
            "{name:<46} {:>14.0} {:>8.2}x {:>14.0} {:>8.2}x",
            b.wall,
            floor.wall / b.wall,
            b.cpu,
            floor.cpu / b.cpu
        );
    }
    println!(
        "{:<46} {pipeline:>14.0} {:>8.2}x   (two threads: wall time only)",
        "reader + queue + sweeper (the daemon)",
        floor.wall / pipeline
    );
    println!(
        "the file of open flows costs the sweeper x{:.3} in CPU time, x{:.3} in wall time (same run, fastest of {ROUNDS})",
        sweeper.cpu / saving.cpu,
        sweeper.wall / saving.wall
    );
}

/// The best rate seen, by wall time and by CPU time.
#[derive(Default)]
struct Best {
    wall: f64,
    cpu: f64,
}

impl Best {
    fn note(&mut self, wall: Duration, cpu: Duration) {
        self.wall = self.wall.max(rate(EVENTS, wall));
        self.cpu = self.cpu.max(rate(EVENTS, cpu));
    }
}
