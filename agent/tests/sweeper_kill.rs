//! A kill at any moment of a sweep, and the next agent adopting the pinned table and ledger:
//! every packet is written once, neither lost with the killed agent's buffer nor written
//! again by the next agent. The kill is a sink that dies at its n-th call, for each n in
//! turn. Needs root.

mod common;

use std::collections::HashMap;

use common::kill::{at_each_sink_call, Killable};
use common::prog::ledger;
use common::sweep::{blocking, drain, flows_fd, load, run, sweeper, Memory, S};
use common::{tcp, v4, Spec};
use xdp_audit::clock::WallClock;
use xdp_audit::flowtable::FlowTable;
use xdp_audit::loader::Loaded;
use xdp_audit::reader::Event;
use xdp_audit::sweeper::ledger::Ledger;
use xdp_audit::sweeper::{Sweeper, Timeouts};

/// Two datagrams to `srv`:53 from each of `flows` ports of `c` from `base` on.
fn two_datagrams_each(l: &mut Loaded, c: [u8; 4], srv: [u8; 4], base: u16, flows: u16) {
    for port in 0..flows {
        let f = Spec::udp4(c, base + port, srv, 53).payload(20).build();
        run(l, &f);
        run(l, &f);
    }
}

/// `first`'s sweep at kernel time `idle` and the records stage's settle after it, with a sink
/// that dies at its `kill_at`-th call: the sink, and how many calls it took if no kill came.
fn sweep_killed(
    mut first: Sweeper,
    table: FlowTable<'_>,
    idle: u64,
    kill_at: usize,
) -> (Killable, Option<usize>) {
    let mut sink = Killable {
        kill_at,
        ..Killable::default()
    };
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        first.sweep(table, &mut sink, &(), idle).expect("sweep");
        first.settle(&mut sink);
    }))
    .is_err();
    let calls = (!killed).then_some(sink.calls);
    (sink, calls)
}

/// Packets per source port in what a killed agent's file and the next agent's sink hold.
fn packets_by_port(killed: &Killable, next: &Memory) -> HashMap<u16, u64> {
    let mut packets = HashMap::new();
    for r in killed.file.iter().chain(&next.0) {
        *packets.entry(r.src_port).or_default() += r.packets;
    }
    packets
}

/// An agent killed at any moment of a sweep that ends flows, and the next one adopting the
/// table and the ledger: every packet is written once. Before, a flow taken out of the table
/// whose last record was still in the agent's buffer was lost with the kill.
#[test]
fn a_kill_at_any_moment_of_a_sweep_neither_loses_nor_repeats_an_ended_flow() {
    const FLOWS: u16 = 6;
    let t = Timeouts::default();
    let (c, srv) = (v4(10, 7, 0, 1), v4(10, 7, 0, 2));
    let mut l = load(1024, 1 << 16);
    let rounds = at_each_sink_call(|kill_at| {
        let base = 5000 + 100 * kill_at as u16;
        let (ledger, pin) = ledger();
        let mut first = sweeper(t);
        first.adopt(ledger);
        two_datagrams_each(&mut l, c, srv, base, FLOWS);
        drain(&mut l, &mut first);
        let fd = flows_fd(&l);
        let idle = WallClock::ktime_now() + t.inactive.as_nanos() as u64 + S;
        let (sink, calls) = sweep_killed(first, fd.table(), idle, kill_at);
        let mut next = sweeper(t);
        next.adopt(Ledger::new(pin).expect("ledger"));
        let mut after = Memory::default();
        next.sweep(fd.table(), &mut after, &(), idle)
            .expect("sweep");
        let want: HashMap<u16, u64> = (0..FLOWS).map(|p| (base + p, 2)).collect();
        assert_eq!(
            packets_by_port(&sink, &after),
            want,
            "killed at sink call {kill_at}: each flow's two packets once"
        );
        assert!(
            fd.table().keys().expect("keys").is_empty(),
            "every flow ended"
        );
        calls
    });
    assert!(
        rounds > FLOWS as usize + 2,
        "kills landed in the writes and the flushes: {rounds}"
    );
}

/// The program, shared with a sink's hook (a kill never lands while the hook holds it: the
/// sink dies before its hook runs).
fn lock(l: &std::sync::Mutex<Loaded>) -> std::sync::MutexGuard<'_, Loaded> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// A packet that lands between the walk's read of an ended flow and its take (here at the
/// flush before the take), and an agent killed at any moment of that sweep: the flow stays
/// in the table, and each packet is written once, by the agent or by the next one. Before,
/// the flow was taken with the packet, whose record sat in the agent until the next settle:
/// a kill at its write lost it (a chaos run lost a datagram so).
#[test]
fn a_packet_between_the_walk_and_the_take_is_written_once_whenever_the_agent_is_killed() {
    let t = Timeouts::default();
    let l = std::sync::Arc::new(std::sync::Mutex::new(load(1024, 1 << 16)));
    let fd = flows_fd(&lock(&l));
    let rounds = at_each_sink_call(|kill_at| {
        let port = 6000 + kill_at as u16;
        let f = Spec::udp4(v4(10, 7, 1, 1), port, v4(10, 7, 1, 2), 53)
            .payload(20)
            .build();
        let (ledger, pin) = ledger();
        let mut first = sweeper(t);
        first.adopt(ledger);
        run(&mut lock(&l), &f);
        drain(&mut lock(&l), &mut first);
        let late = l.clone();
        let mut sink = Killable {
            kill_at,
            at_first_flush: Some(Box::new(move || run(&mut lock(&late), &f))),
            ..Killable::default()
        };
        let idle = WallClock::ktime_now() + t.inactive.as_nanos() as u64 + S;
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            first
                .sweep(fd.table(), &mut sink, &(), idle)
                .expect("sweep");
            first.settle(&mut sink);
        }))
        .is_err();
        let sent = if sink.at_first_flush.is_none() { 2 } else { 1 };
        let mut next = sweeper(t);
        next.adopt(Ledger::new(pin).expect("ledger"));
        let mut after = Memory::default();
        next.sweep(fd.table(), &mut after, &(), idle)
            .expect("sweep");
        assert_eq!(
            packets_by_port(&sink, &after),
            HashMap::from([(port, sent)]),
            "killed at sink call {kill_at}: each packet once"
        );
        assert!(
            fd.table().keys().expect("keys").is_empty(),
            "the flow ended"
        );
        (!killed).then_some(sink.calls)
    });
    assert!(
        rounds >= 3,
        "kills landed in the writes and the flushes: {rounds}"
    );
}

/// Blocked flows whose first drops' events are still in the ring when a sweep ends them, and
/// an agent killed at any moment of that sweep or after it, before the drain: the next agent
/// drains the events and sweeps, and each packet is written once. Before, a kill after the
/// ledger forgot the flows made the next agent take each event for a new flow's and write
/// its packet again.
#[test]
fn a_kill_before_an_ended_flows_first_drop_is_drained_repeats_no_packet() {
    const FLOWS: u16 = 3;
    let (mut prog, _lists) = blocking("killdrop");
    let t = Timeouts::default();
    let fd = flows_fd(&prog.loaded);
    let rounds = at_each_sink_call(|kill_at| {
        let base = 7000 + 100 * kill_at as u16;
        let (ledger, pin) = ledger();
        let mut first = sweeper(t);
        first.adopt(ledger);
        for port in 0..FLOWS {
            let syn = Spec::tcp4(
                v4(10, 6, 1, 1),
                base + port,
                v4(203, 0, 113, 9),
                443,
                tcp::SYN,
            );
            assert_eq!(prog.run(&syn.build()), 1, "the SYN is dropped");
        }
        let idle = WallClock::ktime_now() + t.inactive.as_nanos() as u64 + S;
        let (sink, calls) = sweep_killed(first, fd.table(), idle, kill_at);
        let mut next = sweeper(t);
        next.adopt(Ledger::new(pin).expect("ledger"));
        let mut after = Memory::default();
        let events = prog.events();
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::FlowDrop(..)))
                .count(),
            usize::from(FLOWS),
            "premise: the first drops' events were still in the ring"
        );
        for ev in events {
            next.on_event(ev, &mut after, &());
        }
        next.sweep(fd.table(), &mut after, &(), idle)
            .expect("sweep");
        let want: HashMap<u16, u64> = (0..FLOWS).map(|p| (base + p, 1)).collect();
        assert_eq!(
            packets_by_port(&sink, &after),
            want,
            "killed at sink call {kill_at}: each SYN once"
        );
        assert!(
            fd.table().keys().expect("keys").is_empty(),
            "every flow ended"
        );
        calls
    });
    assert!(
        rounds > usize::from(FLOWS) + 2,
        "kills landed in the writes and the flushes: {rounds}"
    );
}

/// Flows ended by a pinned agent whose start events are still in the ring (an agent behind
/// under load), at its stop's walk or at a sweep before a kill: the next agent, draining the
/// events, writes nothing of them again. Before, it took each event for a flow the LRU had
/// evicted and wrote its first packets a second time, as `evicted` (a chaos run of SIGTERMs
/// under load found 79).
#[test]
fn flows_ended_before_a_stop_or_a_kill_are_not_written_again_from_their_start_events() {
    const FLOWS: u16 = 5;
    let t = Timeouts::default();
    let (c, srv) = (v4(10, 7, 2, 1), v4(10, 7, 2, 2));
    let mut l = load(1024, 1 << 16);
    let fd = flows_fd(&l);
    for (case, stop) in [("stop", true), ("kill", false)] {
        let base = if stop { 8000 } else { 8100 };
        let (ledger, pin) = ledger();
        let mut first = sweeper(t);
        first.adopt(ledger);
        two_datagrams_each(&mut l, c, srv, base, FLOWS);
        let idle = WallClock::ktime_now() + t.inactive.as_nanos() as u64 + S;
        let mut before = Memory::default();
        if stop {
            first.hand_over(fd.table(), &mut before, &(), idle)
        } else {
            first.sweep(fd.table(), &mut before, &(), idle)
        }
        .expect("walk");
        first.settle(&mut before);
        assert_eq!(
            before.0.len(),
            usize::from(FLOWS),
            "{case}: each flow ended"
        );
        drop(first);
        let mut next = sweeper(t);
        next.adopt(Ledger::new(pin).expect("ledger"));
        let mut after = Memory::default();
        common::sweep::drain_into(&mut l, &mut next, &mut after);
        next.sweep(fd.table(), &mut after, &(), idle)
            .expect("sweep");
        let again: Vec<_> = after.0.iter().map(|r| (r.src_port, r.end_reason)).collect();
        assert!(
            again.is_empty(),
            "{case}: written again by the next agent: {again:?}"
        );
        assert_eq!(next.stats.evicted, 0, "{case}: nothing taken for evicted");
    }
}

/// Flows ended while the sink cannot write their records (a full disk), then either the
/// agent killed (the next one adopts the table and the ledger) or the disk freed: each
/// packet is written once. Before, the sweep took the ended flows out of the table and the
/// ledger followed records that were in the agent's memory only: a kill lost them.
#[test]
fn flows_ended_while_the_disk_refuses_writes_are_written_once_after_a_kill_or_a_recovery() {
    const FLOWS: u16 = 4;
    let t = Timeouts::default();
    let (c, srv) = (v4(10, 7, 3, 1), v4(10, 7, 3, 2));
    let mut l = load(1024, 1 << 16);
    let fd = flows_fd(&l);
    for (case, recovers, evicted) in [
        ("kill", false, false),
        ("recovery", true, false),
        ("eviction, then recovery", true, true),
    ] {
        let base = 9000 + 100 * u16::from(recovers) + 100 * u16::from(evicted);
        let (ledger, pin) = ledger();
        let mut first = sweeper(t);
        first.adopt(ledger);
        two_datagrams_each(&mut l, c, srv, base, FLOWS);
        drain(&mut l, &mut first);
        let idle = WallClock::ktime_now() + t.inactive.as_nanos() as u64 + S;
        let mut sink = Killable {
            refusing: true,
            ..Killable::default()
        };
        first
            .sweep(fd.table(), &mut sink, &(), idle)
            .expect("sweep");
        assert!(
            !first.settle(&mut sink),
            "{case}: the settle says it failed"
        );
        assert_eq!(sink.held.len(), usize::from(FLOWS), "{case}: premise");
        assert_eq!(
            fd.table().keys().expect("keys").len(),
            usize::from(FLOWS),
            "{case}: ended flows whose records are in memory only stay in the table"
        );
        let mut after = Memory::default();
        if evicted {
            // The LRU evicts them meanwhile (full of such flows): no loss, nothing new. A
            // datagram then makes each anew, a flow of its own.
            for key in fd.table().keys().expect("keys") {
                fd.table().take(&key).expect("take");
            }
            for port in 0..FLOWS {
                run(
                    &mut l,
                    &Spec::udp4(c, base + port, srv, 53).payload(20).build(),
                );
            }
            drain(&mut l, &mut first);
            first
                .sweep(fd.table(), &mut sink, &(), idle)
                .expect("sweep");
            assert_eq!(first.stats.evicted, 0, "{case}: no flow counted evicted");
        }
        if recovers {
            sink.refusing = false;
            first
                .sweep(fd.table(), &mut sink, &(), idle)
                .expect("sweep");
            assert!(first.settle(&mut sink), "{case}: the settle succeeds");
        } else {
            drop(first);
            sink.held.clear(); // killed: what it held is gone
            let mut next = sweeper(t);
            next.adopt(Ledger::new(pin).expect("ledger"));
            next.sweep(fd.table(), &mut after, &(), idle)
                .expect("sweep");
        }
        let sent = 2 + u64::from(evicted);
        let want: HashMap<u16, u64> = (0..FLOWS).map(|p| (base + p, sent)).collect();
        assert_eq!(
            packets_by_port(&sink, &after),
            want,
            "{case}: each packet once"
        );
        assert!(
            fd.table().keys().expect("keys").is_empty(),
            "{case}: every flow ended"
        );
    }
}

/// While the sink cannot write, the ledger's waiting updates are folded one per key, and once
/// they hold more keys than its map (a disk full for long) the settle commits them all the
/// same: memory stays bounded. Before, updates waited in a list that grew with every one.
#[test]
fn a_ledger_whose_commits_wait_holds_one_update_per_key_until_it_outgrows_its_map() {
    const ENTRIES: u32 = 4096;
    let key = |i: u32| agent_common::FlowKey {
        ifindex: 1,
        vlan: 0,
        vlan_inner: 0,
        proto: 17,
        family: agent_common::family::V4,
        _pad: [0; 2],
        port_a: 53,
        port_b: 53,
        addr_a: [i, 0, 0, 0],
        addr_b: [0; 4],
    };
    let reported = |n: u64| xdp_audit::record::Reported {
        packets: [n, 0],
        ..Default::default()
    };
    let (mut ledger, pin) = common::prog::ledger_sized(ENTRIES);
    for round in 1..=3 {
        for i in 0..ENTRIES {
            ledger.set(&key(i), &reported(round));
        }
        ledger.prepare();
        assert_eq!(ledger.pending(), 0, "round {round}: folded");
        assert!(!ledger.overdue(), "round {round}: one update per key");
    }
    // A flow forgotten (evicted) that the map never held: one key more than it holds.
    ledger.remove(&key(ENTRIES));
    ledger.prepare();
    assert!(ledger.overdue(), "more keys than the map holds");
    // A sweeper holding it commits through a sink that cannot write.
    let mut first = sweeper(Timeouts::default());
    first.adopt(ledger);
    let mut sink = Killable {
        refusing: true,
        ..Killable::default()
    };
    first.settle(&mut sink);
    let next = Ledger::new(pin).expect("ledger");
    let entries = next.entries();
    assert_eq!(entries.len(), ENTRIES as usize, "committed");
    assert!(
        entries.iter().all(|(_, r)| r.packets[0] == 3),
        "each key's last update"
    );
}
