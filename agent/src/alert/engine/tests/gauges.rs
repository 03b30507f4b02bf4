//! What a sweep's snapshot says: program and sweeper counters (losses, start losses,
//! evictions), shipping failures, and conditions that hold while the snapshot says so.

use super::*;

#[test]
fn counters_alert_on_increases_and_program_counters_from_the_first_snapshot() {
    let mut e = engine();
    let mut out = Vec::new();
    let g = Gauges {
        ring_lost: 50,
        insert_failed: 7,
        vlan_stacked: 5,
        ..Gauges::default()
    };
    e.observe(g, 0, &mut out);
    assert!(
        out.is_empty(),
        "losses before this agent are history: {out:?}"
    );
    for t in 1..4 {
        let g = Gauges {
            ring_lost: 50 + t as u64 * 10,
            vlan_stacked: 5 + t as u64,
            lost_starts: t as u64,
            store_refused: 2,
            store_skipped_frames: 3,
            ship_failures: t as u64,
            ship_backlog: 5,
            syslog_dropped: 4 * t as u64,
            ..g
        };
        e.observe(g, t * S, &mut out);
    }
    assert_eq!(
        ids(&out),
        [
            (AlertId::RingLoss, AlertState::Raised),
            (AlertId::VlanStack, AlertState::Raised),
            (AlertId::FlowStartLoss, AlertState::Raised),
            (AlertId::StoreRefused, AlertState::Raised),
            (AlertId::StoreDamaged, AlertState::Raised),
            (AlertId::ShipFailing, AlertState::Raised),
            (AlertId::SyslogLoss, AlertState::Raised),
        ]
    );
    let st = e.status();
    let count = |id| st.active.iter().find(|a| a.id == id).map(|a| a.count);
    assert_eq!(count(AlertId::RingLoss), Some(30));
    assert_eq!(count(AlertId::FlowStartLoss), Some(3));
    assert_eq!(count(AlertId::StoreRefused), Some(2));
    assert_eq!(
        count(AlertId::StoreDamaged),
        Some(3),
        "the damage is counted once"
    );
    assert_eq!(count(AlertId::ShipFailing), Some(3));
    assert_eq!(count(AlertId::SyslogLoss), Some(12));
    // Frames dropped behind a third VLAN tag, an evasion attempt: as a snapshot names them.
    assert_eq!(count(AlertId::VlanStack), Some(3));
    let counters = [("skip_too_many_vlans".to_owned(), 4)]
        .into_iter()
        .collect();
    assert_eq!(Gauges::program(&counters).vlan_stacked, 4);
}

/// One shipping outage is one alert while its passes keep failing, however far apart the
/// retries (they back off to a minute, more than a short window: the one outage was raised
/// and resolved again and again); it resolves once a pass succeeded and the window passed.
#[test]
fn a_shipping_outage_is_one_alert_while_the_last_pass_failed() {
    let mut e = engine();
    let mut out = Vec::new();
    let g = |ship_failures, ship_failing| Gauges {
        ship_failures,
        ship_backlog: 3,
        ship_failing,
        ..Gauges::default()
    };
    e.observe(g(0, false), 0, &mut out);
    e.observe(g(1, true), S, &mut out);
    for t in 2..300 {
        e.observe(g(1, true), t * S, &mut out);
        e.tick(t * S, &mut out);
    }
    assert_eq!(ids(&out), [(AlertId::ShipFailing, AlertState::Raised)]);
    for t in 300..400 {
        e.observe(g(1, false), t * S, &mut out);
        e.tick(t * S, &mut out);
    }
    assert_eq!(
        ids(&out),
        [
            (AlertId::ShipFailing, AlertState::Raised),
            (AlertId::ShipFailing, AlertState::Resolved)
        ]
    );
}

/// A pinned program counts on while no agent runs: its losses since the last agent's final
/// snapshot are alerted at this agent's first; a program whose counters went back (a new
/// one) is counted from this agent's first snapshot, as before.
#[test]
fn program_losses_while_no_agent_ran_are_counted_from_the_last_agents_figures() {
    let prev = Gauges {
        ring_lost: 50,
        insert_failed: 7,
        lost_starts: 9,
        ..Gauges::default()
    };
    let now = Gauges {
        ring_lost: 80,
        insert_failed: 7,
        ..Gauges::default()
    };
    let mut e = engine();
    let mut out = Vec::new();
    e.previous_run(prev);
    e.observe(now, 0, &mut out);
    assert_eq!(ids(&out), [(AlertId::RingLoss, AlertState::Raised)]);
    assert_eq!(
        out[0].count, 30,
        "the losses since the last agent's snapshot"
    );

    let mut e = engine();
    let mut out = Vec::new();
    e.previous_run(Gauges {
        ring_lost: 500,
        ..prev
    });
    e.observe(now, 0, &mut out);
    assert!(out.is_empty(), "another program's figures: {out:?}");
}

#[test]
fn states_alert_while_they_hold_and_resolve_after_the_window() {
    let mut e = engine();
    let mut out = Vec::new();
    let bad = Gauges {
        table_entries: 901,
        store_degraded: true,
        clock_unsynced: true,
        ..Gauges::default()
    };
    let edge = Gauges {
        table_entries: 900,
        ..Gauges::default()
    };
    e.observe(edge, 0, &mut out);
    assert!(out.is_empty(), "90% is not over 90%: {out:?}");
    for t in 1..5 {
        e.observe(bad, t * S, &mut out);
    }
    assert_eq!(out.len(), 3, "{out:?}");
    out.clear();
    e.observe(edge, 5 * S, &mut out);
    e.tick(63 * S, &mut out);
    assert!(out.is_empty(), "not yet quiet for the window: {out:?}");
    e.tick(64 * S, &mut out);
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out
        .iter()
        .all(|a| a.state == AlertState::Resolved && a.count == 4));
    assert!(e.status().active.is_empty());
}

/// A table that evicts is full whatever its count at a sweep (an LRU table evicts before it
/// reaches its size): its evictions raise `XA-FLOW-TABLE-FULL`, counted; and flows evicted
/// before a sweep found them, which no record holds, count in `XA-FLOW-START-LOSS`.
#[test]
fn evictions_say_the_table_is_full_and_unseen_flows_are_start_losses() {
    let mut e = engine();
    let mut out = Vec::new();
    e.observe(Gauges::default(), 0, &mut out);
    let evicting = Gauges {
        table_entries: 700,
        evicted: 40,
        lost_unseen: 12,
        ..Gauges::default()
    };
    e.observe(evicting, S, &mut out);
    let got: Vec<_> = out.iter().map(|a| (a.id, a.state, a.count)).collect();
    assert_eq!(
        got,
        [
            (AlertId::FlowStartLoss, AlertState::Raised, 12),
            (AlertId::FlowTableFull, AlertState::Raised, 40)
        ],
        "{out:?}"
    );
    assert!(out[0].text.contains("no record"), "{}", out[0].text);
    out.clear();
    e.observe(
        Gauges {
            evicted: 45,
            ..evicting
        },
        2 * S,
        &mut out,
    );
    assert!(out.is_empty(), "counted into the active alert: {out:?}");
    let active = e.status().active;
    let full = active.iter().find(|a| a.id == AlertId::FlowTableFull);
    assert_eq!(full.map(|a| a.count), Some(45));
}
