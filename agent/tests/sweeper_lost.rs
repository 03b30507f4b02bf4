//! Flows whose start event the ring buffer lost, against the real flow table: still written
//! from the table, and those the LRU evicted before a walk found them counted as lost unseen,
//! by a sweep, a stop's walk, or the next agent. Needs root.

mod common;

use agent_common::FlowKey;
use common::prog::Prog;
use common::sweep::{drain, flows_fd, load, run, sweeper, Memory};
use common::{v4, Spec};
use xdp_audit::clock::WallClock;
use xdp_audit::loader::Loaded;
use xdp_audit::sweeper::Timeouts;

#[test]
fn flows_whose_start_event_was_lost_are_still_recorded() {
    lost_starts_case(false, Walk::Sweep);
}

/// A stop's walk (a pinned agent's hand-over, an unpinned one's flush) counts the starts
/// lost since the last sweep as a sweep does: they were counted by no agent before.
#[test]
fn a_stop_counts_the_flows_lost_unseen_since_the_last_sweep() {
    lost_starts_case(false, Walk::HandOver);
    lost_starts_case(false, Walk::Flush);
}

/// The walk after the flows: a sweep (then the stop's flush), or a stop's walk alone.
enum Walk {
    Sweep,
    HandOver,
    Flush,
}

/// An agent that adopts the program counts the flows lost unseen while no agent ran from
/// the last agent's reading of the counter, not from its own first sweep, where they
/// would vanish into the base.
#[test]
fn flows_lost_unseen_while_no_agent_ran_are_counted_by_the_next() {
    lost_starts_case(true, Walk::Sweep);
}

/// A hundred new flows through a 4 KiB ring, five of the unannounced ones evicted before
/// a sweep: the sweeper records the rest and counts the five. `adopted`: the counting
/// starts from a last agent's reading taken before the flows (no sweep of this one).
fn lost_starts_case(adopted: bool, walk: Walk) {
    let mut l = load(1024, 4096);
    let mut s = sweeper(Timeouts::default());
    let mut sink = Memory::default();
    let fd = flows_fd(&l);
    let table = fd.table();
    let lost_starts = |l: &Loaded| {
        xdp_audit::stats::read_one(&l.stats, agent_common::Counter::LostFlowStart).expect("stats")
    };
    if adopted {
        s.lost_starts_before(lost_starts(&l));
    } else {
        // The first sweep is where the count of flows lost unseen starts from.
        s.note_lost_starts(lost_starts(&l));
        s.sweep(table, &mut sink, &(), WallClock::ktime_now())
            .expect("sweep");
    }
    for i in 0..100u16 {
        run(
            &mut l,
            &Spec::udp4(v4(10, 4, 0, i as u8), 5000, v4(10, 4, 9, 9), 53).build(),
        );
    }
    drain(&mut l, &mut s);
    let lost = lost_starts(&l);
    assert!(lost > 5, "a 4 KiB ring cannot hold 100 start events");
    // The LRU evicts five of those flows before the sweep sees them: nothing can write
    // them, and the sweeper counts them.
    let unannounced: Vec<FlowKey> = table
        .entries()
        .expect("entries")
        .into_iter()
        .filter(|(_, v)| v.flags & agent_common::flow_flags::START_ANNOUNCED == 0)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(unannounced.len() as u64, lost);
    for k in &unannounced[..5] {
        assert!(table.take(k).expect("take").is_some());
    }
    s.note_lost_starts(lost);
    let now = WallClock::ktime_now();
    match walk {
        Walk::Sweep => s.sweep(table, &mut sink, &(), now).expect("sweep"),
        Walk::HandOver => s.hand_over(table, &mut sink, &(), now).expect("hand over"),
        Walk::Flush => s.flush(table, &mut sink, &()).expect("flush"),
    }
    assert_eq!(
        s.stats.lost_starts,
        lost - 5,
        "the sweeper notices each lost start still in the table"
    );
    assert_eq!(s.stats.lost_unseen, 5, "and counts those it never saw");
    if matches!(walk, Walk::Sweep) {
        s.flush(table, &mut sink, &()).expect("flush");
    }
    assert_eq!(sink.0.len(), 95, "every flow left is written");
}
/// The program counts in `lost_flow_start` every flow it leaves unannounced, a blocked one
/// whose first drop (its announcement) the ring lost included: the sweeper's count of
/// flows lost unseen is that counter less the unannounced flows it finds, and a blocked one
/// counted elsewhere made up for a flow really lost.
#[test]
fn every_unannounced_flow_is_a_lost_start_blocked_or_not() {
    let list = std::env::temp_dir().join(format!("xdp-audit-lost-{}.list", std::process::id()));
    std::fs::write(&list, "203.0.113.9\n").expect("write the list");
    let spec = xdp_audit::blocklist::ListSpec {
        path: list.clone(),
        kind: xdp_audit::blocklist::ListKind::Block,
        refuse: false,
    };
    // Every blocked flow recorded (no flood budget), in a table that holds them all.
    let off = xdp_audit::sweeper::flood::FloodBudget {
        per_rule: 0,
        total: 0,
        window_ms: 1000,
    };
    let (mut p, _lists) = Prog::with_lists_budget(1 << 14, off, [spec]);
    let _ = std::fs::remove_file(&list);
    // Nothing drains the 64 KiB ring: it fills part way through.
    for i in 0..3000u16 {
        let src = v4(10, 6, (i >> 8) as u8, i as u8);
        let dst = if i % 2 == 0 {
            v4(203, 0, 113, 9)
        } else {
            v4(10, 6, 99, 9)
        };
        p.run(&Spec::udp4(src, 5000, dst, 53).build());
    }
    let unannounced = p
        .flows()
        .iter()
        .filter(|(_, v)| v.flags & agent_common::flow_flags::START_ANNOUNCED == 0)
        .count() as u64;
    let blocked_unannounced = p
        .flows()
        .iter()
        .filter(|(_, v)| v.flags & agent_common::flow_flags::START_ANNOUNCED == 0 && v.drops > 0)
        .count();
    assert_eq!(p.flows().len(), 3000, "the table holds every flow");
    assert!(
        blocked_unannounced > 100,
        "the ring filled before the blocked flows ended: {blocked_unannounced}"
    );
    assert_eq!(
        p.counter(agent_common::Counter::LostFlowStart),
        unannounced,
        "lost_flow_start counts each unannounced flow ({blocked_unannounced} of them blocked)"
    );
}
