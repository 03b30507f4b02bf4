//! The agent's whole event path on one core (issue 14, item 6): flow events taken off the
//! ring buffer, decoded, noted by the sweeper, their records attributed by the enrich stage
//! and appended to the store's journal, all on this thread, in its CPU time. The events are
//! first-drop events of new blocked flows (the program writes one per flow, and the sweeper
//! writes its record at once), so each event is one record through every stage, and one
//! entry in the file of open flows the sweeper keeps (appended at each settle; on a tmpfs, as
//! the agent's default state directory is). Rows, in the
//! same run: the reader alone (drain and decode), the whole path with an empty table set,
//! and the whole path with 100,000 subscribers (half the sources: half the records attributed);
//! then what two optional stages cost this path (issue 13: alerts <= 3%; issue 12: syslog <=
//! 10%), each next to the empty-tables row: the alert stage with its thread running (every
//! record here is blocked: its worst case), and syslog of every record (`--syslog-records`)
//! to a loopback TCP reader (the timing ends at the journal's sync; the reader must then count
//! every record); last, the empty-tables path without the file of open flows (what keeping
//! it costs). The records thread is pinned to one core while it is timed, and every
//! other thread (the store's sealer, the alert and syslog threads, the reader of the syslog
//! stream) to the others, as the agent's threads would spread on a larger machine (on 2
//! cores, unpinned, the scheduler moved them onto the records thread's core at random
//! moments: the alert row's ratio ranged x1.02-x1.09 between runs of one build). The alert
//! thread's own CPU time, off the record path, is printed beside. Rounds are interleaved,
//! each round starting one row later (A B C, B C A, C A B ...: a row's place in the round,
//! after a larger or smaller heap, is not its cost); medians of [`ROUNDS`] are printed with
//! the load average. The alert row is then judged paired: [`ALERT_PAIRS`] more rounds of it
//! and the empty-tables row alone, back to back, and the median of the per-round ratios
//! with its 95% interval; the 3% line is met only when the whole interval is under it.
//! Last, the same path with and without the alert stage counted in instructions, which
//! repeat to the instruction (`support/callgrind.rs`; with `valgrind` installed): 50,000
//! events to one blocked destination and to 500 (each record's rule then differs from the
//! last one's, so the stage writes the rule's text at every hit).
//! Needs root. Run with `cargo bench -p xdp-audit --bench event_path`.

#[path = "support/callgrind.rs"]
mod callgrind;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/syslog_receiver.rs"]
mod syslog_receiver;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aya::programs::{TestRun, TestRunOptions};
use common::{v4, Spec};
use xdp_audit::alert::stage::AlertStage;
use xdp_audit::alert::{AlertConfig, Alerts};
use xdp_audit::blocklist::{Capacity, CompiledLists, ListKind, ListSet, ListSpec};
use xdp_audit::clock::{clock_ns, Timeline, WallClock};
use xdp_audit::daemon::queue::BATCH_EVENTS;
use xdp_audit::enrich::inputs::Inputs;
use xdp_audit::enrich::stage::{EnrichStage, StageConfig};
use xdp_audit::enrich::subscribers::parse::ParsedSubscribers;
use xdp_audit::enrich::subscribers::SubscriberTable;
use xdp_audit::loader::{LoadOptions, Loaded, Program};
use xdp_audit::reader::{Event, RingReader};
use xdp_audit::sink::RecordSink;
use xdp_audit::store::{Store, StoreConfig};
use xdp_audit::sweeper::flood::FloodBudget;
use xdp_audit::sweeper::spill::Spill;
use xdp_audit::sweeper::{Sweeper, Timeouts};
use xdp_audit::syslog::{Records, SyslogConfig, SyslogStage, Target};

/// Events per measurement: new blocked flows, one first-drop event each.
const EVENTS: u64 = 200_000;
/// Interleaved rounds of each row; the median is reported.
const ROUNDS: usize = 11;
/// More rounds of the empty-tables row and the alert row alone, in pairs (issue 13's 3%).
const ALERT_PAIRS: usize = 30;
/// Subscribers of the attributed row (issue 10's size).
const SUBSCRIBERS: u32 = 100_000;
/// The blocked destination every generated flow goes to.
const BLOCKED: [u8; 4] = [198, 18, 0, 1];
/// The target.
const TARGET: f64 = 1_000_000.0;

/// This thread's CPU time in ns: on a shared machine, wall time counts other processes' turns.
fn cpu_ns() -> i64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The `i`th generated source, in 100.64.0.0/10.
fn source(i: u64) -> [u8; 4] {
    [100, 64 | ((i >> 16) as u8 & 0x3f), (i >> 8) as u8, i as u8]
}

/// The `r`th of the blocked destinations: `BLOCKED` and the addresses after it.
fn blocked(r: u32) -> [u8; 4] {
    (u32::from_be_bytes(BLOCKED) + r).to_be_bytes()
}

/// The program with a 128 MiB ring, a 1 M-flow table, `rules` blocked destinations in a
/// blocklist (a rule each), and no drop-record budget.
fn load(dir: &Path, rules: u32) -> (Program, RingReader, ListSet) {
    let path = dir.join("block.list");
    let list: String = (0..rules)
        .map(|r| format!("{}\n", Ipv4Addr::from(blocked(r))))
        .collect();
    std::fs::write(&path, list).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let capacity = Capacity::for_lists(&CompiledLists::default(), 1024);
    let mut loaded = Loaded::load(LoadOptions {
        flow_table_size: 1 << 20,
        ringbuf_bytes: 128 << 20,
        list_capacity: capacity.map_sizes(),
        domain_key: None,
        // No drop-record budget: every new blocked flow must reach the ring as its event.
        flood: FloodBudget {
            per_rule: 0,
            total: 0,
            ..FloodBudget::default()
        },
    })
    .unwrap_or_else(|e| panic!("load the XDP program (root?): {e}"));
    let key = loaded.lists.domain_key().expect("read the program's key");
    let spec = ListSpec {
        path,
        kind: ListKind::Block,
        refuse: false,
    };
    let mut lists = ListSet::of_specs([spec], key);
    lists.set_capacity(capacity);
    let (delta, problems) = lists.reload_all();
    assert!(problems.is_empty(), "the bench's blocklist: {problems:?}");
    loaded.lists.apply(&delta).expect("apply the blocklist");
    let (program, maps) = loaded.into_parts();
    let ring = RingReader::new(&maps.events).expect("the event ring");
    (program, ring, lists)
}

/// Sends `events` new blocked UDP flows through the program: sources 0 to `events` - 1 (the
/// first `SUBSCRIBERS` of them are subscribers), flow `i` to the blocked destination `i` mod
/// `rules`, each fill from its own source port `sport` so its flows are new; the ring then
/// holds one first-drop event each.
fn fill(p: &mut Program, sport: u16, events: u64, rules: u32) {
    let mut frame = Spec::udp4(v4(100, 64, 0, 0), sport, BLOCKED, 443).build();
    let prog = p.program_mut().expect("program");
    for i in 0..events {
        frame[26..30].copy_from_slice(&source(i));
        frame[30..34].copy_from_slice(&blocked((i % u64::from(rules)) as u32));
        common::seal(&mut frame);
        prog.test_run(TestRunOptions {
            data_in: Some(&frame),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    }
}

/// Drains the ring in the daemon's batches; `each` takes every event.
fn drain(r: &mut RingReader, mut each: impl FnMut(Event)) -> u64 {
    let (mut n, mut batch) = (0, Vec::with_capacity(BATCH_EVENTS));
    while r.drain_released(&mut batch, BATCH_EVENTS).records > 0 {
        n += batch.len() as u64;
        batch.drain(..).for_each(&mut each);
    }
    n
}

/// Events a callgrind run puts through the path (it runs some 50 times slower).
const CALLGRIND_EVENTS: u64 = 50_000;
/// Blocked destinations of callgrind's many-rules variants: each record's rule differs from
/// the last one's (the alert stage's worst case: it writes the rule's text at each hit).
const CALLGRIND_RULES: u32 = 500;

/// The path's stages in front of `inner`: the enrich stage (subscribers `table`) and a new
/// sweeper keeping its file of open flows in `state`, as the agent's does (each first drop
/// saved there at the settle after its record).
fn path(
    inner: Box<dyn RecordSink>,
    table: Arc<SubscriberTable>,
    state: Option<&Path>,
) -> (EnrichStage, Sweeper) {
    let sink = EnrichStage::new(
        inner,
        Inputs::fixed(table, None, None),
        StageConfig::default(),
    );
    let mut sweeper = Sweeper::new(
        Timeouts::default(),
        Timeline::fixed(WallClock::measure()),
        [(1, "lo".to_owned())].into(),
    );
    if let Some(state) = state {
        std::fs::create_dir_all(state).expect("create the state directory");
        let (spill, saved) = Spill::open(state);
        assert!(saved.is_empty(), "a fresh state directory");
        sweeper.restore(spill, saved);
    }
    (sink, sweeper)
}

/// Drains the ring through the path into `sink` and makes the records durable: what
/// callgrind counts (by this name).
#[inline(never)]
fn counted_path(
    reader: &mut RingReader,
    sweeper: &mut Sweeper,
    sink: &mut dyn RecordSink,
    lists: &ListSet,
) -> u64 {
    let n = drain(reader, |ev| sweeper.on_event(ev, sink, lists));
    sink.sync().expect("sync the journal");
    n
}

/// The process callgrind runs (`plain:RULES` or `alerts:RULES`): the path with empty tables,
/// with or without the alert stage, over `CALLGRIND_EVENTS` events to `RULES` blocked
/// destinations.
fn callgrind_child(spec: &str) {
    callgrind::child_setup();
    let (variant, rules) = spec.split_once(':').expect("VARIANT:RULES");
    let rules: u32 = rules.parse().expect("RULES");
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "xdp-audit-bench-event-path-cg-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&scratch.0);
    std::fs::create_dir_all(&scratch.0).expect("create the bench directory");
    let (mut program, mut reader, lists) = load(&scratch.0, rules);
    fill(&mut program, 1000, CALLGRIND_EVENTS, rules);
    let dir = scratch.0.join("store");
    let store = Store::open(StoreConfig::new(&dir))
        .unwrap_or_else(|e| panic!("open the store in {}: {e}", dir.display()));
    let alert_thread = match variant {
        "plain" => None,
        "alerts" => Some(
            Alerts::start(&AlertConfig::default(), 1 << 20, Vec::new())
                .expect("start the alert thread"),
        ),
        other => panic!("{}: unknown variant {other}", callgrind::ENV),
    };
    // Boxed once, as `run` does.
    let inner: Box<dyn RecordSink> = match &alert_thread {
        Some(a) => Box::new(AlertStage::new(store, a.handle())),
        None => Box::new(store),
    };
    let empty = Arc::new(SubscriberTable::build(
        std::iter::empty::<&ParsedSubscribers>(),
    ));
    let state = state_scratch("xdp-audit-bench-event-path-cg-state");
    let (mut sink, mut sweeper) = path(inner, empty, Some(&state.0.join("state")));
    let n = counted_path(&mut reader, &mut sweeper, &mut sink, &lists);
    assert_eq!(n, CALLGRIND_EVENTS, "the ring held every event");
    sink.close().expect("close the sink");
    if let Some(a) = alert_thread {
        a.stop();
    }
}

/// The records thread's instructions through the path with and without the alert stage, and
/// their ratio, for one rule and for many.
fn print_instructions() {
    for rules in [1, CALLGRIND_RULES] {
        let count =
            |v: &str| callgrind::count("event_path", "counted_path", &format!("{v}:{rules}"));
        let (Some(plain), Some(alerts)) = (count("plain"), count("alerts")) else {
            return;
        };
        println!(
            "  instructions (callgrind, {CALLGRIND_EVENTS} events to {rules} blocked destination(s), the records thread only): the path {plain}, with the alert stage {alerts}; x{:.4} ({:.1} instructions a record more; target <= 1.03): {}",
            alerts as f64 / plain as f64,
            (alerts as f64 - plain as f64) / CALLGRIND_EVENTS as f64,
            if alerts as f64 <= plain as f64 * 1.03 { "met" } else { "NOT MET" }
        );
    }
}

/// 100,000 subscribers by address: the generated sources.
fn subscribers() -> Arc<SubscriberTable> {
    let mut csv = String::from("match,account\n");
    for i in 0..u64::from(SUBSCRIBERS) {
        csv.push_str(&format!("{},acct-{i}\n", Ipv4Addr::from(source(i))));
    }
    let parsed = ParsedSubscribers::parse(csv.as_bytes()).expect("generated subscribers parse");
    Arc::new(SubscriberTable::build([&parsed]))
}

/// One row of the table: a name and the CPU seconds of each round.
struct Row {
    name: &'static str,
    secs: Vec<f64>,
}

impl Row {
    fn rate(&self) -> f64 {
        let mut v = self.secs.clone();
        v.sort_by(f64::total_cmp);
        EVENTS as f64 / v[v.len() / 2]
    }

    /// The fastest round's rate: other work only ever adds CPU time to a round, so the
    /// minimum is the steadier estimate of a stage's own cost.
    fn best_rate(&self) -> f64 {
        EVENTS as f64 / self.secs.iter().copied().fold(f64::MAX, f64::min)
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set; the call writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(
        rc,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Lets this thread (and the threads it starts from now on) run on `cpus` only.
fn pin(cpus: &[usize]) {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: `c` came from `allowed_cpus`, below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: as in `allowed_cpus`.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity {cpus:?}: {}",
        std::io::Error::last_os_error()
    );
}

/// Removes the bench's directory however the bench ends.
struct Scratch(PathBuf);

/// A directory for the sweepers' files of open flows, on a tmpfs where there is one
/// (`/dev/shm`): the agent's default `--state-dir` is `/run/xdp-audit`, a tmpfs, and a file
/// system on a disk adds block allocation and journaling to every append.
fn state_scratch(name: &str) -> Scratch {
    let name = format!("{name}-{}", std::process::id());
    let shm = Path::new("/dev/shm").join(&name);
    let dir = if std::fs::create_dir_all(&shm).is_ok() {
        shm
    } else {
        std::env::temp_dir().join(name)
    };
    std::fs::create_dir_all(&dir).expect("create the state scratch directory");
    Scratch(dir)
}

fn main() {
    if let Ok(spec) = std::env::var(callgrind::ENV) {
        callgrind_child(&spec);
        return;
    }
    let scratch = Scratch(
        std::env::temp_dir().join(format!("xdp-audit-bench-event-path-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&scratch.0);
    std::fs::create_dir_all(&scratch.0).expect("create the bench directory");
    let (mut program, mut reader, lists) = load(&scratch.0, 1);
    let states = state_scratch("xdp-audit-bench-event-path-state");
    let subs = subscribers();
    let empty = Arc::new(SubscriberTable::build(
        std::iter::empty::<&ParsedSubscribers>(),
    ));
    let mut rows = [
        Row {
            name: "reader: drain and decode",
            secs: Vec::new(),
        },
        Row {
            name: "event path, empty tables",
            secs: Vec::new(),
        },
        Row {
            name: "event path, 100,000 subscribers",
            secs: Vec::new(),
        },
        Row {
            name: "event path + alert stage",
            secs: Vec::new(),
        },
        Row {
            name: "event path + syslog of every record",
            secs: Vec::new(),
        },
        Row {
            name: "event path, no file of open flows",
            secs: Vec::new(),
        },
    ];
    let mut sport = 1000u16;
    let mut attributed = Vec::new();
    // The records thread's core, and the others' (none: a one-CPU machine, nothing pinned).
    let cpus = allowed_cpus();
    let (records_cpu, others) = match cpus.split_first() {
        Some((first, rest)) if !rest.is_empty() => (vec![*first], rest.to_vec()),
        _ => (Vec::new(), Vec::new()),
    };
    let pin_to = |set: &[usize]| {
        if !set.is_empty() {
            pin(set)
        }
    };
    // Per round: the alert row's records thread and its alert thread, in seconds.
    let mut alert_total = Row {
        name: "alert stage and alert thread",
        secs: Vec::new(),
    };
    // One round of row `i` (its store named by `round`): the records thread's CPU seconds.
    let mut measure = |i: usize, round: usize| -> f64 {
        fill(&mut program, sport, EVENTS, 1);
        sport += 1;
        if i == 0 {
            let t = cpu_ns();
            let n = drain(&mut reader, |ev| {
                std::hint::black_box(ev);
            });
            assert_eq!(n, EVENTS, "the ring held every event");
            return (cpu_ns() - t) as f64 / 1e9;
        }
        // The stages' threads start on the other cores.
        pin_to(&others);
        let table = if i == 2 { subs.clone() } else { empty.clone() };
        let dir = scratch.0.join(format!("store-{round}-{i}"));
        let store = Store::open(StoreConfig::new(&dir))
            .unwrap_or_else(|e| panic!("open the store in {}: {e}", dir.display()));
        // The agent's order: enrich -> alerts -> syslog -> store (`cmd/run.rs`).
        let (alerts, syslog) = (i == 3, i == 4);
        let receiver = syslog.then(syslog_receiver::receiver);
        let alert_thread = alerts.then(|| {
            Alerts::start(&AlertConfig::default(), 1 << 20, Vec::new())
                .expect("start the alert thread")
        });
        // Boxed once, as `run` does.
        let inner: Box<dyn RecordSink> = match (&receiver, &alert_thread) {
            (Some((port, _)), _) => {
                let url = format!("tcp://127.0.0.1:{port}");
                let mut c = SyslogConfig::new(Target::parse(&url).expect("syslog url"));
                c.records = Records::All;
                c.queue = EVENTS as usize;
                Box::new(SyslogStage::start(store, c).expect("start the syslog stage"))
            }
            (None, Some(a)) => Box::new(AlertStage::new(store, a.handle())),
            (None, None) => Box::new(store),
        };
        let state = states.0.join(format!("state-{round}-{i}"));
        // The last row: the agent's path as it was before the file of open flows.
        let (mut sink, mut sweeper) = path(inner, table, (i != 5).then_some(state.as_path()));
        pin_to(&records_cpu);
        let t = cpu_ns();
        let n = drain(&mut reader, |ev| sweeper.on_event(ev, &mut sink, &lists));
        sink.sync().expect("sync the journal");
        let secs = (cpu_ns() - t) as f64 / 1e9;
        pin_to(&cpus);
        assert_eq!(n, EVENTS, "the ring held every event");
        let accepted = sink.store_status().map(|s| s.accepted);
        assert_eq!(
            accepted,
            Some(EVENTS),
            "every event's record reached the journal ({})",
            dir.display()
        );
        if i == 2 {
            attributed.push(sink.status().fields.user.attributed);
        }
        if let Some((_, frames)) = &receiver {
            syslog_receiver::wait_frames(frames, EVENTS);
        }
        sink.close().expect("close the sink");
        if let Some(a) = alert_thread {
            let handle = a.handle();
            assert_eq!(
                handle.status().queue_full,
                0,
                "the alert queue took every blocked record"
            );
            // Stopped first: it has then counted every batch.
            a.stop();
            alert_total
                .secs
                .push(secs + handle.thread_cpu().as_secs_f64());
        }
        drop(sink);
        drop(sweeper);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&state);
        secs
    };
    for round in 0..ROUNDS {
        for k in 0..rows.len() {
            let i = (k + round) % rows.len();
            let secs = measure(i, round);
            rows[i].secs.push(secs);
        }
    }
    // Issue 13's <= 3%, paired: per round, the alert row's time over the empty-tables row's,
    // from the rounds above and from `ALERT_PAIRS` more rounds of those two rows alone (their
    // order alternating). A ratio of two runs minutes apart carries the machine's drift; a
    // pair's does not, and the median of many pairs has an interval narrow enough to judge a
    // 3% line.
    let mut pairs: Vec<f64> = rows[3]
        .secs
        .iter()
        .zip(&rows[1].secs)
        .map(|(a, b)| a / b)
        .collect();
    for p in 0..ALERT_PAIRS {
        let (first, second) = if p % 2 == 0 { (1, 3) } else { (3, 1) };
        let a = measure(first, ROUNDS + p);
        let b = measure(second, ROUNDS + p);
        let (base, alert) = if first == 1 { (a, b) } else { (b, a) };
        pairs.push(alert / base);
    }
    assert!(
        attributed.iter().all(|&n| n == u64::from(SUBSCRIBERS)),
        "the subscribers row attributes the {SUBSCRIBERS} subscribers' records of each round: {attributed:?}"
    );
    println!(
        "event path: {EVENTS} first-drop events per round (ring -> decode -> sweeper -> enrich -> journal), one thread, CPU time, median of {ROUNDS} interleaved rounds; load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let base = rows[0].rate();
    for row in &rows {
        let r = row.rate();
        println!(
            "  {:<34} {:>10.0} events/s/core {:>7.1} ns/event  x{:.2} the reader's time",
            row.name,
            r,
            1e9 / r,
            base / r
        );
    }
    for (row, target) in [(&rows[3], 1.03), (&rows[4], 1.10)] {
        let ratio = rows[1].rate() / row.rate();
        println!(
            "  {}: x{ratio:.3} the empty-tables path's CPU time (target <= {target}): {} (fastest rounds: x{:.3})",
            row.name,
            if ratio <= target { "met" } else { "NOT MET" },
            rows[1].best_rate() / row.best_rate()
        );
    }
    println!(
        "  the file of open flows: x{:.3} the path's CPU time without it ({:+.1} ns an event; fastest rounds x{:.3})",
        rows[5].rate() / rows[1].rate(),
        1e9 / rows[1].rate() - 1e9 / rows[5].rate(),
        rows[5].best_rate() / rows[1].best_rate()
    );
    let (m, lo, hi) = cpu::median_ci(&pairs);
    println!(
        "  {}, paired ({} pairs of rounds): x{m:.3}, 95% interval of the median x{lo:.3}-x{hi:.3} (target <= 1.03): {}",
        rows[3].name,
        pairs.len(),
        if hi <= 1.03 {
            "met"
        } else if lo > 1.03 {
            "NOT MET"
        } else {
            "undecided (the interval straddles the line)"
        }
    );
    // Off the record path, on another core: every record here is a new (client, rule), so
    // each raises an alert of its own (the engine's worst case).
    let thread_ns = 1e9 / alert_total.rate() - 1e9 / rows[3].rate();
    println!(
        "  the alert thread besides: {thread_ns:.1} ns of CPU per blocked record (x{:.3} with the records thread's); at the default drop-record budget (20,000 a second) at most {:.2}% of a core",
        rows[1].rate() / alert_total.rate(),
        thread_ns * 20_000.0 / 1e9 * 100.0
    );
    print_instructions();
    let worst = rows[1].rate().min(rows[2].rate());
    println!(
        "  target >= 1,000,000 events/s/core through the whole path: {}",
        if worst >= TARGET { "met" } else { "NOT MET" }
    );
}
