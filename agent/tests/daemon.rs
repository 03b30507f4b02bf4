//! The daemon (`xdp_audit::daemon`) driven from tests, on the real program fed through
//! BPF_PROG_TEST_RUN: a million-line list reloaded during a burst of new flows loses no start
//! event, and records carry the wall time in force when their packets were seen across a step
//! of the wall clock. Needs root.

mod biglists;
mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent_common::Counter;
use aya::programs::{TestRun, TestRunOptions};
use common::wait::wait_until;
use common::{tcp, v4, Spec};
use xdp_audit::blocklist::{ListKind, ListSet};
use xdp_audit::clock::{ClockSource, FakeWallClock, HostClocks};
use xdp_audit::daemon::lists::{read_at_start, Reload};
use xdp_audit::daemon::{Control, Daemon, DaemonError, Interface, Settings, Summary};
use xdp_audit::loader::{LoadOptions, Loaded, Program};
use xdp_audit::reader::{Direction, Payload};
use xdp_audit::record::{EndReason, FlowRecord};
use xdp_audit::sink::{RecordSink, SinkError};
use xdp_audit::status::Snapshot;
use xdp_audit::store::{Store, StoreConfig};
use xdp_audit::sweeper::Timeouts;

/// A directory of its own, removed when the test ends (also when it fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "xdp-audit-daemon-{what}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        Self(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Records and payload copies kept in memory, readable while the daemon runs.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<FlowRecord>>>, Arc<Mutex<Vec<Payload>>>);

impl Shared {
    fn records(&self) -> Vec<FlowRecord> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn payloads(&self) -> Vec<Payload> {
        self.1.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl RecordSink for Shared {
    fn write(&mut self, r: &FlowRecord) -> Result<(), SinkError> {
        if let Ok(mut v) = self.0.lock() {
            v.push(r.clone());
        }
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn payload(&mut self, p: &Payload) {
        if let Ok(mut v) = self.1.lock() {
            v.push(p.clone());
        }
    }
}

/// The program with a 1,024-flow table and a 64 KiB ring.
fn small_program() -> (xdp_audit::loader::Program, xdp_audit::loader::Maps) {
    Loaded::load(LoadOptions {
        flow_table_size: 1024,
        ringbuf_bytes: 1 << 16,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("load the XDP program (root?): {e}"))
    .into_parts()
}

/// The daemon on a thread of its own (run, then finish); stopped and joined on drop if the
/// test did not get that far.
struct Running {
    control: Control,
    thread: Option<JoinHandle<Result<Summary, DaemonError>>>,
}

impl Running {
    /// The daemon on `maps` with no lists, writing to `sink`, on the host's clocks.
    fn without_lists(
        settings: Settings,
        maps: xdp_audit::loader::Maps,
        sink: Box<dyn RecordSink>,
    ) -> Self {
        let lists = ListSet::new([], maps.lists.domain_key().expect("the domain key"));
        let (daemon, control) = Daemon::start(settings, maps, lists, sink, Arc::new(HostClocks))
            .unwrap_or_else(|e| panic!("start the daemon: {e}"));
        Self::start(daemon, control)
    }

    fn start(mut daemon: Daemon, control: Control) -> Self {
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(DaemonError::Poll)?;
            rt.block_on(daemon.run())?;
            drop(rt);
            daemon.finish()
        });
        Self {
            control,
            thread: Some(thread),
        }
    }

    /// Stops the daemon (the program is never attached: nothing to detach) and returns what
    /// it did.
    fn stop(mut self) -> Summary {
        self.control.stop();
        let thread = self
            .thread
            .take()
            .expect("the daemon's thread is joined once");
        thread
            .join()
            .expect("the daemon's thread panicked")
            .unwrap_or_else(|e| panic!("the daemon failed: {e}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.control.stop();
            let _ = t.join();
        }
    }
}

/// BPF_PROG_TEST_RUN runs the program as if on `lo` (ifindex 1).
fn lo() -> Vec<Interface> {
    vec![Interface {
        name: "lo".into(),
        ifindex: 1,
    }]
}

/// A block list in `tmp` of the one rule `rule`.
fn blocking(tmp: &TempDir, rule: &str) -> xdp_audit::blocklist::ListSpec {
    let path = tmp.path().join("block.list");
    std::fs::write(&path, format!("{rule}\n")).expect("write the list");
    xdp_audit::blocklist::ListSpec {
        path,
        kind: ListKind::Block,
        refuse: false,
    }
}

/// The program's verdict on `frame`.
fn verdict(p: &mut Program, frame: &[u8]) -> u32 {
    let frame = common::sealed(frame);
    p.program_mut()
        .expect("the loaded program")
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"))
        .return_value
}

fn run(p: &mut Program, frame: &[u8]) {
    assert_eq!(verdict(p, frame), 2, "the program passes test traffic");
}

fn counter(s: &Summary, c: Counter) -> u64 {
    s.counters
        .as_ref()
        .and_then(|all| all.iter().find(|(k, _)| *k == c))
        .map_or_else(
            || panic!("the summary has no counter {}", c.name()),
            |(_, n)| *n,
        )
}

const S: i64 = 1_000_000_000;

#[test]
fn records_carry_the_wall_time_in_force_when_their_packets_were_seen_across_a_clock_step() {
    let tmp = TempDir::new("clock");
    let state = tmp.path().join("state");
    // The wall clock shows 2023-11-14T22:13:20Z now, then is set an hour ahead.
    let start_offset = 1_700_000_000 * S - HostClocks.monotonic_ns() as i64;
    let clock = Arc::new(FakeWallClock::new(start_offset));
    let (mut program, maps) = small_program();
    let settings = Settings {
        timeouts: Timeouts {
            inactive: Duration::from_secs(3600),
            active: Duration::from_secs(3600),
            close_linger: Duration::from_millis(1),
        },
        sweep_interval: Duration::from_millis(20),
        watch_lists: false,
        ..Settings::new(state.clone(), lo())
    };
    let sink = Shared::default();
    let empty_lists = ListSet::new(
        [],
        maps.lists
            .domain_key()
            .expect("read the program's domain key"),
    );
    let (daemon, control) = Daemon::start(
        settings,
        maps,
        empty_lists,
        Box::new(sink.clone()),
        clock.clone(),
    )
    .unwrap_or_else(|e| panic!("start the daemon: {e}"));
    let running = Running::start(daemon, control);
    let (c, srv) = (v4(10, 7, 0, 1), v4(10, 7, 0, 2));
    let mono = || HostClocks.monotonic_ns() as i64;

    // A: opened and closed before the step, written at the sweep after its close.
    let a = (mono(), 0);
    run(
        &mut program,
        &Spec::tcp4(c, 1001, srv, 80, tcp::SYN).build(),
    );
    run(
        &mut program,
        &Spec::tcp4(c, 1001, srv, 80, tcp::FIN | tcp::ACK).build(),
    );
    let a = (a.0, mono());
    wait_until(Duration::from_secs(10), "flow A is written", || {
        sink.records().iter().any(|r| r.src_port == 1001)
    });
    // B: one packet before the step; written at shutdown, long after the step.
    let b = (mono(), 0);
    run(&mut program, &Spec::udp4(c, 1002, srv, 53).build());
    let b = (b.0, mono());
    clock.step(3_600 * S);
    let steps = || Snapshot::read(&state).map_or(0, |s| s.clock.steps);
    wait_until(
        Duration::from_secs(10),
        "the daemon has seen the step",
        || steps() == 1,
    );
    // C: after the step (the daemon has seen it).
    let cc = (mono(), 0);
    run(&mut program, &Spec::udp4(c, 1003, srv, 53).build());
    let cc = (cc.0, mono());
    // Measurements go on after the step: it is still counted once.
    let seen = Snapshot::read(&state).map_or_else(|_| String::new(), |s| s.written_at);
    wait_until(
        Duration::from_secs(10),
        "a later status snapshot is written",
        || Snapshot::read(&state).is_ok_and(|s| s.written_at != seen),
    );
    assert_eq!(steps(), 1, "one step, counted once");
    let summary = running.stop();

    let records = sink.records();
    let by_port = |port: u16| {
        records
            .iter()
            .find(|r| r.src_port == port)
            .unwrap_or_else(|| panic!("no record of source port {port}: {records:?}"))
    };
    // Each record's times lie between the monotonic readings around its packets, converted
    // with the offset in force then (good to a millisecond: the offset is measured).
    let within = |r: &FlowRecord, (lo, hi): (i64, i64), offset: i64, name: &str| {
        for (what, t) in [("start", r.time_start_ns), ("end", r.time_end_ns)] {
            assert!(
                t >= offset + lo - S / 1000 && t <= offset + hi + S / 1000,
                "{name}'s {what} {t} is outside [{}, {}] (offset {offset}): {r:?}",
                offset + lo,
                offset + hi
            );
        }
    };
    let after = start_offset + 3_600 * S;
    let ra = by_port(1001);
    assert_eq!(ra.end_reason, EndReason::Fin);
    within(ra, a, start_offset, "A (written before the step)");
    let rb = by_port(1002);
    assert_eq!(rb.end_reason, EndReason::Shutdown);
    within(
        rb,
        b,
        start_offset,
        "B (seen before the step, written after)",
    );
    within(by_port(1003), cc, after, "C (seen after the step)");
    assert_eq!(summary.clock.steps, 1, "{:?}", summary.clock);
    let step = summary.clock.last_step.expect("the step is described");
    assert!(
        step.old_offset_ns.abs_diff(start_offset) < 1_000_000
            && step.new_offset_ns.abs_diff(after) < 1_000_000,
        "old and new offsets: {step:?}"
    );
}

#[test]
fn payload_copies_reach_the_sink_in_ring_order_and_make_no_record() {
    let tmp = TempDir::new("payload");
    let (mut program, maps) = small_program();
    let settings = Settings {
        sweep_interval: Duration::from_millis(20),
        watch_lists: false,
        ..Settings::new(tmp.path().join("state"), lo())
    };
    let sink = Shared::default();
    let running = Running::without_lists(settings, maps, Box::new(sink.clone()));
    let (c, srv) = (v4(10, 9, 0, 1), v4(10, 9, 0, 53));
    let queries: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 30 + usize::from(i)]).collect();
    for q in &queries {
        run(&mut program, &Spec::udp4(c, 5353, srv, 53).data(q).build());
    }
    run(
        &mut program,
        &Spec::udp4(srv, 53, c, 5353).data(&[9; 80]).build(),
    );
    wait_until(
        Duration::from_secs(10),
        "four payloads reach the sink",
        || sink.payloads().len() == 4,
    );
    let summary = running.stop();
    let got = sink.payloads();
    for (i, q) in queries.iter().enumerate() {
        assert_eq!(&got[i].data[..], &q[..], "query {i}, in the order sent");
        assert_eq!(got[i].dir, Direction::Originator);
    }
    assert_eq!((got[3].dir, got[3].data.len()), (Direction::Responder, 80));
    assert_eq!(counter(&summary, Counter::PayloadCopied), 4);
    // One flow, one record: payloads are not flows.
    let records = sink.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!((records[0].packets, records[0].resp_packets), (4, 1));
}

/// The records a batch of events or a sweep wrote are in the journal file right after it,
/// with an fsync interval of an hour: the kernel has forgotten them by then (the flow taken
/// out of the table, a blocked flow's one packet written), so a killed agent must not hold
/// them only in memory.
#[test]
fn records_are_in_the_journal_file_after_each_batch_and_sweep_long_before_fsync() {
    let tmp = TempDir::new("flush");
    let spec = blocking(&tmp, "203.0.113.9");
    let (prog, lists) = common::prog::Prog::with_lists(1024, [spec]);
    let (mut program, maps) = prog.loaded.into_parts();
    let log = tmp.path().join("log");
    let mut cfg = StoreConfig::new(&log);
    cfg.fsync_interval = Duration::from_secs(3_600);
    let store = Store::open(cfg).expect("open the store");
    let settings = Settings {
        timeouts: Timeouts {
            inactive: Duration::from_millis(300),
            active: Duration::from_secs(3600),
            close_linger: Duration::from_millis(1),
        },
        sweep_interval: Duration::from_millis(50),
        watch_lists: false,
        ..Settings::new(tmp.path().join("state"), lo())
    };
    let (daemon, control) =
        Daemon::start(settings, maps, lists, Box::new(store), Arc::new(HostClocks))
            .unwrap_or_else(|e| panic!("start the daemon: {e}"));
    let running = Running::start(daemon, control);
    let in_journal = |port: u16, reason: EndReason| {
        xdp_audit::store::query::collect(&log, &xdp_audit::store::query::Filter::default())
            .unwrap_or_else(|e| panic!("read the live journal in {}: {e}", log.display()))
            .iter()
            .any(|r| r.src_port == port && r.end_reason == reason)
    };
    let (c, blocked, srv) = (v4(10, 8, 0, 1), v4(203, 0, 113, 9), v4(10, 8, 0, 2));
    let syn = Spec::tcp4(c, 4001, blocked, 443, tcp::SYN).build();
    assert_eq!(
        verdict(&mut program, &syn),
        1,
        "the SYN to the blocked address is dropped"
    );
    wait_until(
        Duration::from_secs(10),
        "the first drop's record is in the journal file",
        || in_journal(4001, EndReason::Drop),
    );
    run(&mut program, &Spec::udp4(c, 4002, srv, 53).build());
    wait_until(
        Duration::from_secs(10),
        "the idle flow's record is in the journal file",
        || in_journal(4002, EndReason::Idle),
    );
    let summary = running.stop();
    let store = summary.store.expect("the store's counters");
    assert_eq!(
        store.accepted, 2,
        "the drop and the idle flow, once each: {store:?}"
    );
}

/// New flows per second the burst runs at: half the rate the default ring is sized for
/// (README), because a debug build's records stage takes about 100,000 events a second on a
/// busy 2-CPU machine (the pipeline benchmark measures the release build).
const BURST_RATE: u64 = 50_000;
/// The ring of the test: 4 MiB, the old default, 26,000 events. A reader stalled for a
/// quarter of a second at the burst's rate would lose start events.
const TEST_RING_BYTES: u32 = 4 << 20;
/// New flows in the burst: four seconds at BURST_RATE, all of them started while the reload
/// runs (or until it ends), in a table that holds them all.
const BURST_FLOWS: u64 = 200_000;

/// The most flows sent and not yet taken by the records stage: under the queue to it (about
/// 100,000 events and more) so that a records stage slower than BURST_RATE (a debug build on a
/// loaded machine) holds the burst back instead of backing it up into the ring, which the
/// test's reader, not the records stage, must keep from losing events.
const MAX_BACKLOG: u64 = 100_000;
/// How long the burst may take, held back by a slow records stage.
const BURST_DEADLINE: Duration = Duration::from_secs(300);

/// A UDP datagram of flow `i`: its own source address (4 Mi of them in 100.64.0.0/10) and
/// port.
fn new_flow_frame(template: &[u8], i: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(template);
    // The IPv4 source address and the UDP source port of an untagged frame.
    out[26..30].copy_from_slice(&[100, 64 | (i >> 16) as u8 & 0x3f, (i >> 8) as u8, i as u8]);
    out[34..36].copy_from_slice(&(1024 + (i >> 22) as u16).to_be_bytes());
}

#[test]
fn a_million_line_reload_during_a_burst_of_new_flows_loses_no_start_event() {
    xdp_audit::blocklist::use_mmap_for_large_buffers();
    let tmp = TempDir::new("burst");
    let list = tmp.path().join("block.list");
    let big = tmp.path().join("big.list");
    std::fs::write(&list, "").expect("write the empty list");
    biglists::write_million_lines(&big);
    // Tables sized as an agent started with the big list would size them.
    let key = xdp_audit::blocklist::random_key().expect("getrandom");
    let (_, _, capacity) = read_at_start([(big.clone(), ListKind::Block)], key, 65_536, None);
    let (mut lists, delta, _) = read_at_start([(list.clone(), ListKind::Block)], key, 65_536, None);
    lists.set_capacity(capacity);
    let mut loaded = Loaded::load(LoadOptions {
        flow_table_size: 1 << 19,
        ringbuf_bytes: TEST_RING_BYTES,
        list_capacity: capacity.map_sizes(),
        domain_key: Some(key),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("load the XDP program (root?): {e}"));
    loaded.lists.apply(&delta).expect("apply the empty list");
    let generation = lists.compiled().generation;
    let (mut program, maps) = loaded.into_parts();
    let store = Store::open(StoreConfig::new(tmp.path().join("log"))).expect("open the store");
    let settings = Settings {
        timeouts: Timeouts {
            inactive: Duration::from_secs(3600),
            active: Duration::from_secs(3600),
            close_linger: Duration::from_secs(2),
        },
        // The sweep reads the whole table on the records thread: what it costs is the records
        // stage's capacity (see the pipeline benchmark), not what this test is about.
        sweep_interval: Duration::from_secs(5),
        watch_lists: false,
        ..Settings::new(tmp.path().join("state"), lo())
    };
    let (daemon, control) =
        Daemon::start(settings, maps, lists, Box::new(store), Arc::new(HostClocks))
            .unwrap_or_else(|e| panic!("start the daemon: {e}"));
    let running = Running::start(daemon, control.clone());

    let template = Spec::udp4(v4(100, 64, 0, 0), 5000, v4(198, 18, 0, 1), 443).build();
    let mut frame = Vec::with_capacity(template.len());
    // The burst starts with the reload and ends after BURST_FLOWS, paced at BURST_RATE and
    // held back while MAX_BACKLOG flows wait for the records stage.
    std::fs::rename(&big, &list).expect("put the big list in place");
    let reload = control.reload(Reload::All);
    let started = Instant::now();
    let (mut sent, mut outcome, mut during) = (0u64, None, None);
    while sent < BURST_FLOWS {
        let due = (started.elapsed().as_secs_f64() * BURST_RATE as f64) as u64;
        let pipeline = control.pipeline();
        let allowed = pipeline.processed + MAX_BACKLOG;
        assert!(
            sent < allowed || started.elapsed() < BURST_DEADLINE,
            "the records stage took {} of {sent} flows within {BURST_DEADLINE:?}: {pipeline:?}",
            pipeline.processed
        );
        while sent < due.min(allowed).min(BURST_FLOWS) {
            new_flow_frame(&template, sent, &mut frame);
            run(&mut program, &frame);
            sent += 1;
        }
        if outcome.is_none() {
            if let Ok(o) = reload.try_recv() {
                outcome = Some(o);
                during = Some(sent);
            }
        }
        // Pacing, not waiting for a condition: a millisecond's worth of flows at a time (or
        // a millisecond's work of the records stage, while the backlog is full).
        std::thread::sleep(Duration::from_millis(1));
    }
    let burst = started.elapsed();
    let during = during.unwrap_or(sent);
    let outcome = match outcome {
        Some(o) => o,
        None => reload
            .recv_timeout(Duration::from_secs(300))
            .expect("the reload finished within five minutes"),
    };
    let summary = running.stop();
    eprintln!(
        "burst: {sent} new flows in {burst:?} (paced at {BURST_RATE}/s), {during} of them \
         during the reload; {:?}",
        summary.pipeline
    );
    assert!(
        outcome.applied && outcome.problems == 0 && outcome.generation > generation,
        "the million lines were applied: {outcome:?}"
    );
    let ring_events = u64::from(TEST_RING_BYTES) / agent_common::RING_RECORD_BYTES as u64;
    assert!(
        during > ring_events,
        "only {during} flows started during the reload ({outcome:?}), which the ring \
         ({ring_events} events) holds anyway: the test proves nothing on this machine"
    );
    assert_eq!(
        counter(&summary, Counter::LostFlowStart),
        0,
        "the ring buffer lost start events during the reload ({during} flows started meanwhile): {summary:?}"
    );
    let f = summary.flows;
    assert_eq!(
        f.starts, sent,
        "every start event reached the sweeper: {summary:?}"
    );
    assert_eq!(f.lost_starts, 0, "{summary:?}");
    assert_eq!(
        f.records, sent,
        "every flow written once, at shutdown: {summary:?}"
    );
    let store = summary.store.expect("the store's counters");
    assert_eq!((store.accepted, store.dropped), (sent, 0), "{store:?}");
}

/// A stop writes the flood summaries of the window the program was filling (no sweep took
/// them) and a last status snapshot that counts them: both were left to a sweep that never
/// came, so a flood in the last second before a stop was in no record.
#[test]
fn a_stop_writes_the_last_flood_summaries_and_a_status_that_counts_them() {
    let tmp = TempDir::new("floodstop");
    let spec = blocking(&tmp, "203.0.113.9");
    common::prog::pin_to_cpu0();
    let cpus = aya::util::online_cpus().expect("online CPUs").len() as u32;
    // One drop record per rule and CPU a window: the rest is summarised.
    let budget = xdp_audit::sweeper::flood::FloodBudget {
        per_rule: cpus,
        total: 1000 * cpus,
        window_ms: 1000,
    };
    let (prog, lists) = common::prog::Prog::with_lists_budget(1024, budget, [spec]);
    let (mut program, maps) = prog.loaded.into_parts();
    let shared = Shared::default();
    let state = tmp.path().join("state");
    let settings = Settings {
        // No sweep after the first (at start): only the stop can take the summaries.
        sweep_interval: Duration::from_secs(3_600),
        watch_lists: false,
        ..Settings::new(state.clone(), lo())
    };
    let (daemon, control) = Daemon::start(
        settings,
        maps,
        lists,
        Box::new(shared.clone()),
        Arc::new(HostClocks),
    )
    .unwrap_or_else(|e| panic!("start the daemon: {e}"));
    let running = Running::start(daemon, control);
    let before = Snapshot::read(&state).ok();
    for i in 0..20u8 {
        let syn = Spec::tcp4(v4(10, 8, 1, i), 4001, v4(203, 0, 113, 9), 443, tcp::SYN).build();
        assert_eq!(
            verdict(&mut program, &syn),
            1,
            "SYN {i} to the blocked address is dropped"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "the first blocked flow's drop record",
        || {
            shared
                .records()
                .iter()
                .any(|r| r.end_reason == EndReason::Drop)
        },
    );
    running.stop();
    let summarised: Vec<FlowRecord> = shared
        .records()
        .into_iter()
        .filter(|r| r.end_reason == EndReason::Summarised)
        .collect();
    assert_eq!(
        summarised.iter().map(|r| r.packets).sum::<u64>(),
        19,
        "the 19 SYNs past the budget are in the stop's summary records: {summarised:?}"
    );
    let after = Snapshot::read(&state).expect("a status snapshot after the stop");
    assert_eq!(
        after.flood.summarised,
        19,
        "the last snapshot counts them (the one before: {:?})",
        before.map(|b| b.flood.summarised)
    );
}

/// A reload that moves a rule to another line without changing any table (a comment added
/// above it) still changes the name drop records give it: the records stage kept naming the
/// old line until some later reload changed the tables.
#[test]
fn a_reload_that_only_moves_a_rule_renames_it_in_later_drop_records() {
    let tmp = TempDir::new("moved");
    let spec = blocking(&tmp, "# feed\n203.0.113.9");
    let list = spec.path.clone();
    let (prog, lists) = common::prog::Prog::with_lists(1024, [spec]);
    let (mut program, maps) = prog.loaded.into_parts();
    let shared = Shared::default();
    let settings = Settings {
        sweep_interval: Duration::from_millis(100),
        watch_lists: false,
        ..Settings::new(tmp.path().join("state"), lo())
    };
    let (daemon, control) = Daemon::start(
        settings,
        maps,
        lists,
        Box::new(shared.clone()),
        Arc::new(HostClocks),
    )
    .unwrap_or_else(|e| panic!("start the daemon: {e}"));
    let running = Running::start(daemon, control.clone());
    let drops = |shared: &Shared| -> Vec<Option<String>> {
        shared
            .records()
            .into_iter()
            .filter(|r| r.end_reason == EndReason::Drop)
            .map(|r| r.rule)
            .collect()
    };
    let syn = |sport| Spec::tcp4(v4(10, 8, 1, 1), sport, v4(203, 0, 113, 9), 443, tcp::SYN);
    assert_eq!(verdict(&mut program, &syn(4001).build()), 1, "dropped");
    wait_until(Duration::from_secs(10), "the first drop record", || {
        drops(&shared).len() == 1
    });
    std::fs::write(&list, "# feed\n# moved down a line\n203.0.113.9\n").expect("edit the list");
    let outcome = control
        .reload(Reload::All)
        .recv_timeout(Duration::from_secs(60))
        .expect("the reload finished");
    assert!(outcome.applied, "{outcome:?}");
    assert_eq!(verdict(&mut program, &syn(4002).build()), 1, "dropped");
    wait_until(Duration::from_secs(10), "the second drop record", || {
        drops(&shared).len() == 2
    });
    running.stop();
    let name = |line: u32| Some(format!("{}:{line}", list.display()));
    assert_eq!(drops(&shared)[..2], [name(2), name(3)]);
}

/// A sink whose flushes fail while `refusing` (a full disk): what it was given stays with it.
#[derive(Clone, Default)]
struct Refusing {
    refusing: Arc<std::sync::atomic::AtomicBool>,
    records: Shared,
}

impl RecordSink for Refusing {
    fn write(&mut self, r: &FlowRecord) -> Result<(), SinkError> {
        self.records.write(r)
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        if self.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SinkError::Write {
                path: "journal".into(),
                cause: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Events handled while the disk refuses records stay in the ring (a kill would leave them
/// for the next agent): their space goes back to the program only after a settle that
/// succeeded. Before, the reader gave it back as it read.
#[test]
fn ring_space_read_while_the_disk_refuses_goes_back_only_once_a_settle_succeeds() {
    let tmp = TempDir::new("refusing");
    let (mut program, maps) = small_program();
    // A second view of the ring's positions; it gives nothing back.
    let probe = xdp_audit::reader::RingReader::new(&maps.events).expect("map the ring");
    let state = tmp.path().join("state");
    let settings = Settings {
        sweep_interval: Duration::from_millis(20),
        watch_lists: false,
        ..Settings::new(state.clone(), lo())
    };
    let sink = Refusing::default();
    sink.refusing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let running = Running::without_lists(settings, maps, Box::new(sink.clone()));
    for i in 0..10u8 {
        run(
            &mut program,
            &Spec::udp4(v4(10, 9, 1, i), 4000, v4(10, 9, 0, 53), 53).build(),
        );
    }
    // A sweep's status after the records stage took the ten: their batch was handled (and
    // its settle failed) before that sweep.
    wait_until(
        Duration::from_secs(10),
        "a sweep after the ten start events were handled",
        || Snapshot::read(&state).is_ok_and(|s| s.pipeline.processed >= 10),
    );
    let (held, _) = probe.release().fill();
    assert!(held > 0, "the ring still holds the events read");
    sink.refusing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_until(
        Duration::from_secs(10),
        "the space given back after a settle that succeeded",
        || probe.release().fill().0 == 0,
    );
    running.stop();
}
