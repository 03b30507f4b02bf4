//! An agent killed with open flows it read and had not written, whose entries the flow table
//! then lost (a full LRU table evicts them while no agent runs): the next agent writes each
//! from the file of open flows the killed one kept, once. Before, they were in no record and
//! no counter. Needs root.

mod common;

use std::collections::HashMap;

use common::kill::Killable;
use common::prog::ledger;
use common::sweep::{drain, drain_into, flows_fd, load, run, sweeper, Memory, S};
use common::{tcp, v4, Spec};
use xdp_audit::clock::WallClock;
use xdp_audit::record::EndReason;
use xdp_audit::sweeper::ledger::Ledger;
use xdp_audit::sweeper::spill::{self, Spill};
use xdp_audit::sweeper::{Sweeper, Timeouts};
use xdp_audit_lab::lab::TempDir;

/// The client's port of a flow to port 53 (the key holds its endpoints in either order).
fn client_port(k: &agent_common::FlowKey) -> u16 {
    let [a, b] = [k.port_a, k.port_b].map(u16::from_be);
    if a == 53 {
        b
    } else {
        a
    }
}

const FLOWS: u16 = 8;

/// A sweeper keeping its file of open flows in `dir`, after taking in what is there.
fn restoring(t: Timeouts, ledger: Ledger, dir: &std::path::Path) -> (Sweeper, usize) {
    let mut s = sweeper(t);
    s.adopt(ledger);
    let (spill, saved) = Spill::open(dir);
    let n = s.restore(spill, saved);
    (s, n)
}

/// Packets per source port in `records`.
fn packets_by_port<'a>(
    records: impl Iterator<Item = &'a xdp_audit::record::FlowRecord>,
) -> HashMap<u16, u64> {
    let mut packets = HashMap::new();
    for r in records {
        *packets.entry(r.src_port).or_default() += r.packets;
    }
    packets
}

#[test]
fn open_flows_a_killed_agent_read_are_written_once_when_the_table_lost_them() {
    let t = Timeouts::default();
    let dir = TempDir::new("restore").expect("state dir");
    let (c, srv) = (v4(10, 7, 9, 1), v4(10, 7, 9, 2));
    let mut l = load(1024, 1 << 16);
    let fd = flows_fd(&l);
    let (ledger, pin) = ledger();
    let (mut first, n) = restoring(t, ledger, dir.path());
    assert_eq!(n, 0, "no file at the first start");
    let frame = |port: u16| Spec::udp4(c, port, srv, 53).payload(20).build();
    for port in 9000..9000 + FLOWS {
        run(&mut l, &frame(port));
    }
    drain(&mut l, &mut first);
    // A second packet of each, which only a walk's snapshot holds.
    for port in 9000..9000 + FLOWS {
        run(&mut l, &frame(port));
    }
    let now = WallClock::ktime_now();
    let mut before = Memory::default();
    first
        .sweep(fd.table(), &mut before, &(), now)
        .expect("walk");
    first.settle(&mut before);
    assert!(before.0.is_empty(), "nothing ended yet: {:?}", before.0);
    assert!(
        dir.path().join(spill::FILE_NAME).exists(),
        "the open flows are saved"
    );
    // The kill: the agent is gone without a stop. Then the table loses half the flows (the
    // LRU, under a flood of new ones), and one of those ports starts a flow anew.
    drop(first);
    let keys = fd.table().keys().expect("keys");
    let lost: Vec<_> = (keys.iter())
        .map(client_port)
        .filter(|p| p.is_multiple_of(2))
        .collect();
    for k in keys.iter().filter(|k| client_port(k).is_multiple_of(2)) {
        fd.table().take(k).expect("take").expect("there");
    }
    assert_eq!(lost.len(), usize::from(FLOWS / 2));
    run(&mut l, &frame(9000));

    let (mut next, n) = restoring(t, Ledger::new(pin).expect("ledger"), dir.path());
    assert_eq!(n, usize::from(FLOWS), "every open flow was in the file");
    let mut after = Memory::default();
    drain_into(&mut l, &mut next, &mut after);
    let idle = WallClock::ktime_now() + t.inactive.as_nanos() as u64 + S;
    next.sweep(fd.table(), &mut after, &(), idle)
        .expect("sweep");
    next.settle(&mut after);

    let mut want: HashMap<u16, u64> = (9000..9000 + FLOWS).map(|p| (p, 2)).collect();
    *want.get_mut(&9000).expect("port") += 1; // the flow made anew, a record of its own
    assert_eq!(
        packets_by_port(after.0.iter()),
        want,
        "each flow's packets once: {:#?}",
        after.0
    );
    let evicted: Vec<u16> = (after.0.iter())
        .filter(|r| r.end_reason == EndReason::Evicted)
        .map(|r| r.src_port)
        .collect();
    assert_eq!(
        evicted.len(),
        lost.len(),
        "the lost ones written as evicted: {evicted:?}"
    );
    assert_eq!(next.stats.evicted, lost.len() as u64);
    assert_eq!(next.stats.restored, u64::from(FLOWS));

    // A kill of this agent now: its file names no open flow, so a third writes nothing.
    drop(next);
    let (mut third, n) = restoring(t, common::prog::ledger().0, dir.path());
    assert_eq!(n, 0, "every flow ended and the file says so");
    let mut last = Memory::default();
    third
        .sweep(fd.table(), &mut last, &(), idle)
        .expect("sweep");
    assert!(last.0.is_empty(), "written again: {:?}", last.0);
}

/// A flow whose slice a killed agent wrote, then whose FIN it read, and whose entry the
/// table then lost: the next agent writes what followed the slice, as evicted, and nothing of
/// the slice again.
#[test]
fn a_killed_agents_sliced_flow_lost_by_the_table_is_written_from_its_last_slice_on() {
    let t = Timeouts {
        active: std::time::Duration::from_secs(5),
        ..Timeouts::default()
    };
    let dir = TempDir::new("restore-slice").expect("state dir");
    let (c, srv) = (v4(10, 7, 9, 3), v4(10, 7, 9, 4));
    let mut l = load(1024, 1 << 16);
    let fd = flows_fd(&l);
    let (ledger, pin) = ledger();
    let (mut first, _) = restoring(t, ledger, dir.path());
    let segment = |flags: u8| Spec::tcp4(c, 9100, srv, 80, flags).build();
    run(&mut l, &segment(tcp::SYN));
    run(&mut l, &segment(tcp::ACK));
    run(&mut l, &segment(tcp::ACK));
    drain(&mut l, &mut first);
    let mut before = Memory::default();
    // Past the active timeout: a slice of 3 packets.
    let sliced = WallClock::ktime_now() + 6 * S;
    first
        .sweep(fd.table(), &mut before, &(), sliced)
        .expect("walk");
    first.settle(&mut before);
    assert_eq!(packets_by_port(before.0.iter()), HashMap::from([(9100, 3)]));
    // Its FIN, read from the ring (no walk since).
    run(&mut l, &segment(tcp::FIN | tcp::ACK));
    drain(&mut l, &mut first);
    first.settle(&mut before);
    assert_eq!(before.0.len(), 1, "{:?}", before.0);
    drop(first);
    for k in fd.table().keys().expect("keys") {
        fd.table().take(&k).expect("take");
    }
    let (mut next, _) = restoring(t, Ledger::new(pin).expect("ledger"), dir.path());
    let mut after = Memory::default();
    next.sweep(fd.table(), &mut after, &(), sliced + S)
        .expect("sweep");
    next.settle(&mut after);
    assert_eq!(
        (after.0.iter())
            .map(|r| (r.src_port, r.packets, r.end_reason))
            .collect::<Vec<_>>(),
        vec![(9100, 1, EndReason::Evicted)],
        "what followed the slice, once"
    );
}

/// More flows than one settle's worth evicted while the agent runs, and the agent killed at
/// each sink call of the walk that writes them around the settle inside it (the 1,024th
/// record): the next agent, from the file of open flows, writes each flow's packets once.
/// Before, the file learned a flow was gone before its record was written, and a settle in
/// between (every 1,024 records) had a kill lose it.
#[test]
fn flows_evicted_while_the_agent_runs_are_written_once_whenever_it_is_killed() {
    const MANY: u16 = 1_100;
    let t = Timeouts::default();
    let (c, srv) = (v4(10, 7, 9, 5), v4(10, 7, 9, 6));
    let mut l = load(4096, 1 << 20);
    let fd = flows_fd(&l);
    let frame = |port: u16| Spec::udp4(c, port, srv, 53).payload(20).build();
    let mut base = 20_000u16;
    // Kills around the settle inside the walk (writes 1-1,024, the flush, then the rest),
    // at the walk's last calls, and none.
    for kill_at in [
        1,
        1_024,
        1_025,
        1_026,
        1_027,
        1_100,
        1_101,
        1_102,
        usize::MAX,
    ] {
        let dir = TempDir::new("restore-kill").expect("state dir");
        let (ledger, pin) = ledger();
        let (mut first, _) = restoring(t, ledger, dir.path());
        for port in base..base + MANY {
            run(&mut l, &frame(port));
        }
        drain(&mut l, &mut first);
        let mut nothing = Memory::default();
        first.settle(&mut nothing);
        // The LRU evicts them all while this agent runs; its next walk writes them.
        for k in fd.table().keys().expect("keys") {
            fd.table().take(&k).expect("take");
        }
        let mut sink = Killable {
            kill_at,
            ..Killable::default()
        };
        let now = WallClock::ktime_now();
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            first.sweep(fd.table(), &mut sink, &(), now).expect("sweep");
            first.settle(&mut sink);
        }))
        .is_err();
        assert_eq!(killed, kill_at != usize::MAX, "killed at {kill_at}");
        let (mut next, _) = restoring(t, Ledger::new(pin).expect("ledger"), dir.path());
        let mut after = Memory::default();
        next.sweep(fd.table(), &mut after, &(), now + S)
            .expect("sweep");
        let packets = packets_by_port(sink.file.iter().chain(&after.0));
        let wrong: Vec<_> = (base..base + MANY)
            .filter(|p| packets.get(p) != Some(&1))
            .map(|p| (p, packets.get(&p).copied()))
            .collect();
        assert!(
            wrong.is_empty(),
            "killed at sink call {kill_at}: flows not written once: {:?}",
            &wrong[..wrong.len().min(5)]
        );
        base += MANY;
    }
}

/// A flow whose packets a walk saw within 10 s of its last save, then nothing more: a later
/// walk saves that snapshot, so the next agent after a kill writes every packet the walks saw.
#[test]
fn a_snapshot_a_walk_held_back_is_saved_by_a_later_walk() {
    let t = Timeouts::default();
    let dir = TempDir::new("restore-late").expect("state dir");
    let (c, srv) = (v4(10, 7, 9, 7), v4(10, 7, 9, 8));
    let mut l = load(1024, 1 << 16);
    let fd = flows_fd(&l);
    let (ledger, pin) = ledger();
    let (mut first, _) = restoring(t, ledger, dir.path());
    let frame = Spec::udp4(c, 9200, srv, 53).payload(20).build();
    run(&mut l, &frame);
    drain(&mut l, &mut first);
    run(&mut l, &frame);
    let now = WallClock::ktime_now();
    let mut sink = Memory::default();
    // Saved at 2 packets; then 2 more, seen 1 s later (held back), then 10 s later (saved).
    for (at, more) in [(0, 2), (S, 0), (11 * S, 0)] {
        for _ in 0..more {
            run(&mut l, &frame);
        }
        first
            .sweep(fd.table(), &mut sink, &(), now + at)
            .expect("walk");
        first.settle(&mut sink);
    }
    assert!(sink.0.is_empty(), "nothing ended: {:?}", sink.0);
    drop(first);
    for k in fd.table().keys().expect("keys") {
        fd.table().take(&k).expect("take");
    }
    let (mut next, _) = restoring(t, Ledger::new(pin).expect("ledger"), dir.path());
    let mut after = Memory::default();
    next.sweep(fd.table(), &mut after, &(), now + 12 * S)
        .expect("sweep");
    assert_eq!(
        (after.0.iter())
            .map(|r| (r.src_port, r.packets))
            .collect::<Vec<_>>(),
        vec![(9200, 4)],
        "every packet a walk saw"
    );
}
