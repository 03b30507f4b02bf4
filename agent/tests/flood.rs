//! Flood-proof drops through BPF_PROG_TEST_RUN: while a rule's drop-record budget lasts, a
//! blocked new flow is created and its first drop announced; past it, blocked packets create
//! no flow and no event, and are counted in the rule's summary (packets, bytes, times, the
//! distinct-source sketch, the top sources); the agent's take starts the budget afresh. The
//! global budget binds across rules; blocked DNS names spend the same budgets. Needs root.

mod common;

use std::net::IpAddr;

use agent_common::Counter;
use common::prog::Prog;
use common::{dns_query_payload, tcp, v4, wire, Addrs, Spec, L4};
use xdp_audit::blocklist::{ListKind, ListSpec};
use xdp_audit::reader::Event;
use xdp_audit::sweeper::flood::{FloodBudget, RuleFlood};

const DROP: u32 = 1;
const TX: u32 = 3;

/// A budget of `per_cpu` drop records per rule and `total_per_cpu` in all on each CPU per
/// one-second window (0: no limit, every blocked flow recorded).
fn budget(per_cpu: u32, total_per_cpu: u32) -> FloodBudget {
    let cpus = aya::util::online_cpus().expect("online CPUs").len() as u32;
    FloodBudget {
        per_rule: per_cpu * cpus,
        total: total_per_cpu * cpus,
        window_ms: 1000,
    }
}

struct Lab {
    prog: Prog,
    dir: std::path::PathBuf,
}

impl Lab {
    fn new(tag: &str, block: &str, flood: FloodBudget) -> Self {
        Self::refusing(tag, block, flood, false)
    }

    /// [`Lab::new`], the list answering what it blocks if `refuse`.
    fn refusing(tag: &str, block: &str, flood: FloodBudget, refuse: bool) -> Self {
        common::prog::pin_to_cpu0();
        let dir =
            std::env::temp_dir().join(format!("xdp-audit-flood-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("block.list");
        std::fs::write(&path, block).expect("write the list");
        let spec = ListSpec {
            path,
            kind: ListKind::Block,
            refuse,
        };
        let (prog, _lists) = Prog::with_lists_budget(1024, flood, [spec]);
        Lab { prog, dir }
    }

    /// A SYN from `src` to `dst`:80 (`len` payload bytes), its verdict.
    fn syn(&mut self, src: [u8; 4], dst: [u8; 4], len: usize) -> u32 {
        let frame = Spec::tcp4(src, 40000, dst, 80, tcp::SYN)
            .payload(len)
            .build();
        self.prog.run(&frame)
    }

    fn drop_events(&mut self) -> usize {
        let events = self.prog.events();
        events
            .iter()
            .filter(|e| matches!(e, Event::FlowDrop(..)))
            .count()
    }

    fn take(&mut self) -> Vec<RuleFlood> {
        self.prog
            .loaded
            .flood
            .take()
            .expect("take the flood summaries")
    }

    /// [`Lab::take`] as (recorded, packets) per rule.
    fn take_counts(&mut self) -> Vec<(u64, u64)> {
        counts(self.take())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Summaries as (recorded, packets) per rule.
fn counts(taken: Vec<RuleFlood>) -> Vec<(u64, u64)> {
    taken.iter().map(|f| (f.recorded, f.packets)).collect()
}

fn source(i: u32) -> [u8; 4] {
    let [_, b, c, d] = (0x0a00_0000 + i).to_be_bytes();
    v4(10, b, c, d)
}

#[test]
fn past_the_budget_blocked_packets_create_nothing_and_are_summarised() {
    let mut lab = Lab::new("budget", "203.0.113.7\n", budget(2, 1000));
    let target = v4(203, 0, 113, 7);
    for i in 0..2 {
        assert_eq!(lab.syn(source(i), target, 0), DROP);
    }
    assert_eq!(
        lab.prog.flows().len(),
        2,
        "within the budget: flows created"
    );
    assert_eq!(lab.drop_events(), 2, "and their first drops announced");

    // 200 sources once each, then one source 60 times: none of them gets a flow or an event.
    let frame_len = Spec::tcp4(source(0), 40000, target, 80, tcp::SYN)
        .payload(10)
        .build()
        .len() as u64;
    for i in 0..200 {
        assert_eq!(lab.syn(source(1000 + i), target, 10), DROP);
    }
    let heavy = v4(198, 51, 100, 99);
    for _ in 0..60 {
        assert_eq!(lab.syn(heavy, target, 10), DROP);
    }
    assert_eq!(
        lab.prog.flows().len(),
        2,
        "no flow-table insert past the budget"
    );
    assert_eq!(lab.drop_events(), 0, "no ring event past the budget");
    assert_eq!(lab.prog.counter(Counter::DroppedSummarised), 260);
    assert_eq!(lab.prog.counter(Counter::DroppedByList), 262);
    assert_eq!(lab.prog.counter(Counter::FloodUntracked), 0);

    let taken = lab.take();
    assert_eq!(taken.len(), 1, "one rule: {taken:?}");
    let f = &taken[0];
    assert_eq!(
        (f.recorded, f.packets, f.bytes),
        (2, 260, 260 * frame_len),
        "{f:?}"
    );
    assert!(f.first_ns != 0 && f.first_ns <= f.last_ns, "{f:?}");
    assert!(
        (140..=270).contains(&f.sources),
        "201 distinct sources estimated as {}",
        f.sources
    );
    assert_eq!(
        f.top[0].0,
        IpAddr::from(heavy),
        "top source first: {:?}",
        f.top
    );
    assert!(
        (30..=60).contains(&f.top[0].1),
        "its vote, a lower bound of its 60 packets: {:?}",
        f.top
    );
    let hits = lab.prog.loaded.lists.all_hits(u32::MAX);
    assert_eq!(
        hits.iter().map(|h| h.1).sum::<u64>(),
        262,
        "every blocked packet hit its rule: {hits:?}"
    );
    // Only the slots below the bound are read: the status asks for the ids its book names.
    let top = hits.iter().map(|h| h.0).max().expect("a rule was hit");
    assert_eq!(lab.prog.loaded.lists.all_hits(top + 1), hits);
    assert!(
        !lab.prog
            .loaded
            .lists
            .all_hits(top)
            .iter()
            .any(|h| h.0 == top),
        "rule {top} is past a bound of {top}"
    );

    // The take started the budget afresh: the next blocked new flow is recorded again.
    assert_eq!(lab.syn(source(5000), target, 0), DROP);
    assert_eq!(lab.prog.flows().len(), 3, "budget refilled by the take");
    assert_eq!(lab.drop_events(), 1);
    assert_eq!(lab.take_counts(), vec![(1, 0)], "the take is a delta");
}

#[test]
fn the_global_budget_binds_across_rules() {
    let mut lab = Lab::new("total", "203.0.113.7\n203.0.113.8\n", budget(5, 3));
    for i in 0..4 {
        assert_eq!(lab.syn(source(i), v4(203, 0, 113, 7), 0), DROP);
        assert_eq!(lab.syn(source(i), v4(203, 0, 113, 8), 0), DROP);
    }
    assert_eq!(
        lab.prog.flows().len(),
        3,
        "three records in all, whatever the rule"
    );
    assert_eq!(lab.prog.counter(Counter::DroppedSummarised), 5);
    let taken = lab.take();
    assert_eq!(taken.iter().map(|f| f.recorded).sum::<u64>(), 3);
    assert_eq!(taken.iter().map(|f| f.packets).sum::<u64>(), 5);
    // The window moved on: both budgets start afresh.
    assert_eq!(lab.syn(source(100), v4(203, 0, 113, 8), 0), DROP);
    assert_eq!(lab.prog.flows().len(), 4);
}

/// Blocked DNS names spend the same budget: a query that would make a flow, past its
/// rule's budget, makes none (its flow is taken out again), is neither copied nor announced,
/// and is summed in the rule's summary. A query of a flow that already exists creates
/// nothing and is dropped as before. Before, each blocked query on a new source port bought
/// a flow, a start event, a payload copy and a drop event.
#[test]
fn past_the_budget_blocked_dns_queries_create_copy_and_announce_nothing() {
    let mut lab = Lab::new("names", "example.com\n", budget(2, 1000));
    let query = |sport: u16| {
        let mut s = Spec::udp4(v4(198, 51, 100, 2), sport, v4(198, 18, 0, 53), 53);
        s.payload = dns_query_payload(&wire("www.example.com"));
        s.build()
    };
    for sport in 0..50 {
        assert_eq!(lab.prog.run(&query(40000 + sport)), DROP);
    }
    assert_eq!(lab.prog.flows().len(), 2, "flows within the budget alone");
    let kinds: Vec<_> = (lab.prog.events().iter())
        .map(|e| match e {
            Event::FlowStart(..) => "start",
            Event::FlowEnd(..) => "end",
            Event::FlowClosed(..) => "closed",
            Event::FlowDrop(..) => "drop",
            Event::Payload(..) => "payload",
        })
        .collect();
    assert_eq!(
        kinds,
        ["start", "payload", "drop", "start", "payload", "drop"],
        "events of the two"
    );
    assert_eq!(lab.prog.counter(Counter::DroppedSummarised), 48);
    assert_eq!(lab.prog.counter(Counter::DroppedByDomain), 50);
    // A second query on a recorded flow: dropped, counted there, nothing summarised.
    assert_eq!(lab.prog.run(&query(40000)), DROP);
    let counted: Vec<_> = (lab.prog.flows().into_iter())
        .map(|(k, v)| (u16::from_be(k.port_a), v.packets[0], v.drops))
        .collect();
    assert!(counted.contains(&(40000, 2, 2)), "{counted:?}");
    assert_eq!(
        lab.take_counts(),
        vec![(2, 48)],
        "two recorded, 48 summarised"
    );
    let hits = lab.prog.loaded.lists.all_hits(u32::MAX);
    assert_eq!(
        hits.iter().map(|h| h.1).sum::<u64>(),
        51,
        "every blocked query hit its rule: {hits:?}"
    );
    // IPv6 the same (its own flow table): the budget's two, then nothing.
    let mut lab = Lab::new("names-v6", "example.com\n", budget(2, 1000));
    for sport in 0..10 {
        let mut s = Spec::new(
            Addrs::V6(common::v6(2), common::v6(0x53)),
            L4::Udp {
                sport: 42000 + sport,
                dport: 53,
            },
        );
        s.payload = dns_query_payload(&wire("www.example.com"));
        assert_eq!(lab.prog.run(&s.build()), DROP);
    }
    assert_eq!(
        lab.prog.flows().len(),
        2,
        "IPv6: flows within the budget alone"
    );
    assert_eq!(lab.take_counts(), vec![(2, 8)]);
    // A list that refuses answers the queries within the budget alone.
    let mut lab = Lab::refusing("names-refused", "example.com\n", budget(2, 1000), true);
    let actions: Vec<u32> = (0..10).map(|i| lab.prog.run(&query(41000 + i))).collect();
    assert_eq!(
        actions,
        [TX, TX, DROP, DROP, DROP, DROP, DROP, DROP, DROP, DROP]
    );
    assert_eq!(lab.prog.counter(Counter::RefusedDns), 2);
}

#[test]
fn a_zero_budget_records_every_blocked_flow() {
    let off = budget(0, 0);
    let mut lab = Lab::new("off", "203.0.113.7\n", off);
    for i in 0..50 {
        assert_eq!(lab.syn(source(i), v4(203, 0, 113, 7), 0), DROP);
    }
    assert_eq!(lab.prog.flows().len(), 50);
    assert_eq!(lab.prog.counter(Counter::DroppedSummarised), 0);
    assert_eq!(
        lab.take_counts(),
        vec![(50, 0)],
        "every blocked flow recorded, nothing summarised"
    );
}

/// An agent killed after its take moved the window on and before it wrote the summaries of
/// the window that ended leaves them in the slots: the next agent (a second handle on the
/// same maps, as adopting the pins gives) writes them first, and only once: written slots are
/// cleared. The old code lost that window's summaries.
#[test]
fn summaries_taken_but_not_written_by_a_killed_agent_are_written_by_the_next_once() {
    let flood = budget(1, 1000);
    let mut lab = Lab::new(
        "left",
        "203.0.113.7
",
        flood,
    );
    let target = v4(203, 0, 113, 7);
    for i in 0..41 {
        assert_eq!(lab.syn(source(i), target, 0), DROP);
    }
    // A clean round first: its slots are cleared once written.
    assert_eq!(lab.take_counts(), vec![(1, 40)]);
    lab.prog
        .loaded
        .flood
        .forget_taken()
        .expect("clear the written slots");
    let next = |lab: &Lab| lab.prog.loaded.flood.reopen(flood).expect("reopen");
    assert_eq!(
        next(&lab).take_left().expect("left").len(),
        0,
        "nothing left after a write"
    );

    // The killed round: 30 summarised packets taken, never written.
    for i in 0..31 {
        assert_eq!(lab.syn(source(100 + i), target, 0), DROP);
    }
    assert_eq!(lab.take_counts(), vec![(1, 30)]);
    // Meanwhile the program goes on in the next window.
    for i in 0..6 {
        assert_eq!(lab.syn(source(200 + i), target, 0), DROP);
    }
    let mut agent = next(&lab);
    let left = counts(agent.take_left().expect("left"));
    assert_eq!(left, vec![(1, 30)], "the killed agent's window");
    agent.forget_taken().expect("clear the written slots");
    assert_eq!(
        next(&lab).take_left().expect("left").len(),
        0,
        "written once, not again by a third agent"
    );
    let now = counts(agent.take().expect("take"));
    assert_eq!(now, vec![(1, 5)], "the window in progress is untouched");
}

/// The agent moves the window while the program summarises a flood on another CPU: every
/// summarised packet is in some take. The program read the window twice in one run, and a
/// run that saw it move between the reads took a slot of the new window's half before that
/// half's count was cleared, so the next run reused the slot and the packets in it were lost.
#[test]
fn moving_the_window_under_a_flood_on_another_cpu_loses_no_summarised_packet() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let mut lab = Lab::new("race", "203.0.113.7\n", budget(1, 1000));
    let runner = lab.prog.run_handle();
    let frame = Spec::tcp4(v4(10, 0, 0, 1), 40000, v4(203, 0, 113, 7), 80, tcp::SYN)
        .payload(10)
        .build();
    let (stop, runs) = (AtomicBool::new(false), AtomicU64::new(0));
    let (mut taken, mut takes) = (0u64, 0u64);
    std::thread::scope(|s| {
        s.spawn(|| {
            /// Ends the take loop when the runner ends, also by a failed assertion.
            struct StopOnDrop<'a>(&'a AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = StopOnDrop(&stop);
            common::prog::pin_to(1);
            let start = std::time::Instant::now();
            // Long enough for hundreds of window moves mid-run (each take waits its grace).
            while start.elapsed() < std::time::Duration::from_secs(3) {
                assert_eq!(runner.run(&frame, 5000), DROP);
                runs.fetch_add(5000, Ordering::Relaxed);
            }
        });
        while !stop.load(Ordering::Relaxed) {
            taken += lab.take().iter().map(|f| f.packets).sum::<u64>();
            takes += 1;
        }
    });
    // Two more moves: the last window's half, then nothing.
    for _ in 0..2 {
        taken += lab.take().iter().map(|f| f.packets).sum::<u64>();
    }
    let summarised = lab.prog.counter(Counter::DroppedSummarised);
    assert!(takes > 50, "only {takes} window moves during the flood");
    assert!(
        summarised > runs.load(Ordering::Relaxed) / 2,
        "the flood was summarised: {summarised} of {} runs",
        runs.load(Ordering::Relaxed)
    );
    assert_eq!(
        lab.prog.counter(Counter::FloodUntracked),
        0,
        "every packet found a slot"
    );
    assert_eq!(
        taken,
        summarised,
        "{} packets summarised by the program were in no take ({takes} takes)",
        summarised as i64 - taken as i64
    );
}

/// A blocked SYN whose insert finds its flow's entry (EEXIST) and whose lookup then misses it
/// (the sweeper took it, or the LRU evicted it, in between) is dropped: it was passed.
#[test]
fn a_blocked_syn_whose_entry_vanishes_between_insert_and_lookup_is_still_dropped() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let off = budget(0, 0);
    let mut lab = Lab::new("eexist", "203.0.113.7\n", off);
    let frame = Spec::tcp4(v4(10, 0, 0, 1), 40000, v4(203, 0, 113, 7), 80, tcp::SYN).build();
    assert_eq!(lab.prog.run(&frame), DROP);
    let [(key, value)] = lab.prog.flows()[..] else {
        panic!("one flow: {:?}", lab.prog.flows())
    };
    let runner = lab.prog.run_handle();
    let maps = lab
        .prog
        .loaded
        .flow_maps()
        .try_clone()
        .expect("the flow maps");
    let stop = AtomicBool::new(false);
    let (mut runs, mut passed) = (0u64, 0u64);
    std::thread::scope(|s| {
        s.spawn(|| {
            common::prog::pin_to(0);
            let table = maps.table();
            // The entry comes and goes as fast as the maps allow.
            while !stop.load(Ordering::Relaxed) {
                let _ = table.insert(&key, &value);
                let _ = table.take(&key);
            }
        });
        common::prog::pin_to(1);
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(3) {
            runs += 1;
            if runner.run(&frame, 1) != DROP {
                passed += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        passed, 0,
        "{passed} of {runs} blocked SYNs were not dropped"
    );
}
