//! The sweeper against the real flow table: flows fed through BPF_PROG_TEST_RUN are ended by
//! the right timeout with the right counters, and flows the LRU table evicts are written from
//! their last snapshot. Needs root. Flows whose start event the ring buffer lost are in
//! `sweeper_lost.rs`; what a kill in the middle of a sweep does is in `sweeper_kill.rs`.

mod common;

use std::time::Duration;

use aya::maps::RingBuf;
use common::prog::Prog;
use common::sweep::{blocking, drain, drain_into, flows_fd, load, run, sweeper, Memory, S};
use common::{tcp, v4, Spec};
use xdp_audit::clock::WallClock;
use xdp_audit::flowtable::FlowMaps;
use xdp_audit::loader::Loaded;
use xdp_audit::reader::Event;
use xdp_audit::record::EndReason;
use xdp_audit::sweeper::{Sweeper, Timeouts};

#[test]
fn flows_end_by_fin_idle_and_active_timeouts_with_exact_counters() {
    let mut l = load(1024, 1 << 16);
    let t = Timeouts {
        inactive: Duration::from_secs(30),
        active: Duration::from_secs(300),
        close_linger: Duration::from_secs(2),
    };
    let mut s = sweeper(t);
    let (c, srv) = (v4(10, 2, 0, 1), v4(10, 2, 0, 2));
    let closed = [
        Spec::tcp4(c, 1000, srv, 80, tcp::SYN).build(),
        Spec::tcp4(c, 1000, srv, 80, tcp::ACK).payload(200).build(),
        Spec::tcp4(c, 1000, srv, 80, tcp::FIN | tcp::ACK).build(),
    ];
    for f in &closed {
        run(&mut l, f);
    }
    let idle = Spec::udp4(c, 2000, srv, 53).payload(30).build();
    run(&mut l, &idle);
    drain(&mut l, &mut s);
    let mut sink = Memory::default();
    let now = WallClock::ktime_now();
    let fd = flows_fd(&l);
    let table = fd.table();

    s.sweep(table, &mut sink, &(), now).expect("sweep");
    assert!(sink.0.is_empty(), "nothing is due yet: {:?}", sink.0);

    s.sweep(table, &mut sink, &(), now + 3 * S).expect("sweep");
    assert_eq!(
        sink.0.len(),
        1,
        "the FIN flow ends after the linger: {:?}",
        sink.0
    );
    let fin = &sink.0[0];
    assert_eq!(fin.end_reason, EndReason::Fin);
    assert_eq!((fin.src_port, fin.dst_port), (1000, 80));
    assert_eq!(fin.packets, 3);
    assert_eq!(
        fin.bytes,
        closed.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(fin.iface, "test0");

    s.sweep(table, &mut sink, &(), now + 31 * S).expect("sweep");
    assert_eq!(sink.0.len(), 2);
    assert_eq!(sink.0[1].end_reason, EndReason::Idle);
    assert_eq!((sink.0[1].packets, sink.0[1].bytes), (1, idle.len() as u64));
    assert!(
        table.keys().expect("keys").is_empty(),
        "ended flows are deleted"
    );

    // A long flow: an interim record at the active timeout, then only what followed.
    let long = Spec::udp4(c, 3000, srv, 443).build();
    run(&mut l, &long);
    run(&mut l, &long);
    drain(&mut l, &mut s);
    let t0 = WallClock::ktime_now();
    s.sweep(table, &mut sink, &(), t0 + 301 * S).expect("sweep");
    // The flow's packets are older than the inactive timeout at t0+301 s, so the sweeper
    // ends it as idle rather than slicing it: a slice needs recent packets.
    assert_eq!(sink.0.last().map(|r| r.end_reason), Some(EndReason::Idle));
}

/// Three datagrams of one UDP flow from `10.3.NET.1:PORT` to `10.3.NET.2:443` through the
/// program, their start event drained into `s`; the frame, to send more.
fn three_datagrams(l: &mut Loaded, s: &mut Sweeper, net: u8, port: u16) -> Vec<u8> {
    let f = Spec::udp4(v4(10, 3, net, 1), port, v4(10, 3, net, 2), 443)
        .payload(10)
        .build();
    for _ in 0..3 {
        run(l, &f);
    }
    drain(l, s);
    f
}

#[test]
fn active_timeout_slices_a_busy_flow_and_slices_add_up() {
    let mut l = load(1024, 1 << 16);
    // Inactive longer than active, so a quiet test flow is sliced rather than idled.
    let t = Timeouts {
        inactive: Duration::from_secs(3600),
        active: Duration::from_secs(10),
        close_linger: Duration::from_secs(2),
    };
    let mut s = sweeper(t);
    let f = three_datagrams(&mut l, &mut s, 0, 4000);
    let fd = flows_fd(&l);
    let table = fd.table();
    let mut sink = Memory::default();
    s.sweep(table, &mut sink, &(), WallClock::ktime_now() + 11 * S)
        .expect("sweep");
    for _ in 0..2 {
        run(&mut l, &f);
    }
    s.sweep(table, &mut sink, &(), WallClock::ktime_now() + 11 * S)
        .expect("sweep");
    s.flush(table, &mut sink, &()).expect("flush");
    let reasons: Vec<EndReason> = sink.0.iter().map(|r| r.end_reason).collect();
    // Nothing followed the second slice, so shutdown writes no empty record.
    assert_eq!(reasons, [EndReason::Active, EndReason::Active]);
    let packets: Vec<u64> = sink.0.iter().map(|r| r.packets).collect();
    assert_eq!(
        packets,
        [3, 2],
        "each slice carries only what followed the last"
    );
}

/// A flow that goes quiet right after a slice still gets the line that ends it: a slice
/// reads "continued by the next line", and the flow's last line must say how it ended, with
/// no packets when the slice carried them all. A blocked flow's first-drop record that
/// carried its only packets is its last line.
#[test]
fn a_flow_ending_with_nothing_after_its_slice_gets_an_empty_last_line() {
    let mut l = load(1024, 1 << 16);
    let t = Timeouts {
        inactive: Duration::from_secs(30),
        active: Duration::from_secs(10),
        close_linger: Duration::from_secs(2),
    };
    let mut s = sweeper(t);
    let f = three_datagrams(&mut l, &mut s, 1, 4100);
    let fd = flows_fd(&l);
    let table = fd.table();
    let mut sink = Memory::default();
    let now = WallClock::ktime_now();
    s.sweep(table, &mut sink, &(), now + 11 * S).expect("sweep");
    s.sweep(table, &mut sink, &(), now + 41 * S).expect("sweep");
    let lines: Vec<(EndReason, u64, u64)> = sink
        .0
        .iter()
        .map(|r| (r.end_reason, r.packets, r.bytes))
        .collect();
    assert_eq!(
        lines,
        [
            (EndReason::Active, 3, 3 * f.len() as u64),
            (EndReason::Idle, 0, 0)
        ]
    );
    let (slice, end) = (&sink.0[0], &sink.0[1]);
    assert_eq!(
        end.time_start_ns, slice.time_end_ns,
        "the end line sits at the last packet"
    );
    assert_eq!(end.time_end_ns, slice.time_end_ns);
    assert!(
        table.keys().expect("keys").is_empty(),
        "the flow left the table"
    );
}

#[test]
fn a_flow_evicted_and_made_again_between_two_sweeps_is_a_new_flow() {
    // Inactive longer than active, so a quiet test flow is sliced rather than idled.
    let t = Timeouts {
        inactive: Duration::from_secs(3600),
        active: Duration::from_secs(10),
        close_linger: Duration::from_secs(2),
    };
    // Told of the new incarnation by its start event, or first by the sweep's walk.
    for start_event_first in [true, false] {
        let mut l = load(1024, 1 << 16);
        let mut s = sweeper(t);
        let f = Spec::udp4(v4(10, 3, 0, 1), 4001, v4(10, 3, 0, 2), 443)
            .payload(10)
            .build();
        let fd = flows_fd(&l);
        let table = fd.table();
        let mut sink = Memory::default();
        for _ in 0..3 {
            run(&mut l, &f);
        }
        drain(&mut l, &mut s);
        s.sweep(table, &mut sink, &(), WallClock::ktime_now() + 11 * S)
            .expect("sweep");
        assert_eq!(sink.0.len(), 1, "one interim slice");
        // The LRU evicts the flow; its next packets make the entry anew.
        let key = table.keys().expect("keys")[0];
        assert!(table.take(&key).expect("take").is_some());
        for _ in 0..2 {
            run(&mut l, &f);
        }
        if start_event_first {
            drain_into(&mut l, &mut s, &mut sink);
        }
        s.sweep(table, &mut sink, &(), WallClock::ktime_now() + 11 * S)
            .expect("sweep");
        s.flush(table, &mut sink, &()).expect("flush");
        let packets: Vec<u64> = sink.0.iter().map(|r| r.packets).collect();
        assert_eq!(
            packets,
            [3, 2],
            "the new flow's packets, not its remainder over the old one's slices \
             (start event first: {start_event_first}): {:?}",
            sink.0
        );
        assert_eq!(s.stats.evicted, 1, "the old flow counted as evicted");
        // Said by its eviction (its last slice carried everything, and an evicted flow gets
        // no line with nothing new), not by the shutdown of the new one: a shutdown ends no
        // flow for the stages after the sweeper.
        assert_eq!(sink.1, [key], "the old flow is said to have ended, once");
    }
}

/// A flow a DNS query made holds nothing until the slow path has judged the name: a walk in
/// between reads it empty. Gone by the next walk (the slow path took it out again, the
/// query past its drop-record budget), it is neither written nor counted as evicted: before,
/// the walk read the query counted and passed, and the next sweep wrote it as an evicted
/// flow whose query passed. (The slow path's slot is emptied here to hold the flow in
/// that moment.)
#[test]
fn a_query_flow_read_before_its_name_was_judged_and_gone_since_is_no_eviction() {
    let mut l = load(1024, 1 << 16);
    common::prog::empty_slow_path(&mut l);
    let mut s = sweeper(Timeouts::default());
    let mut sink = Memory::default();
    run(
        &mut l,
        &Spec::udp4(v4(10, 6, 0, 1), 5353, v4(10, 6, 0, 53), 53)
            .payload(30)
            .build(),
    );
    let fd = flows_fd(&l);
    let table = fd.table();
    let entries = table.entries().expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].1.packets, entries[0].1.drops), ([0, 0], 0));
    s.sweep(table, &mut sink, &(), WallClock::ktime_now())
        .expect("sweep");
    table.take(&entries[0].0).expect("taken out");
    s.sweep(table, &mut sink, &(), WallClock::ktime_now())
        .expect("sweep");
    assert!(sink.0.is_empty(), "nothing written: {:?}", sink.0);
    assert_eq!(sink.1, [entries[0].0], "said to have ended");
    assert_eq!(s.stats.evicted, 0, "{:?}", s.stats);
}

/// A blocked SYN and nothing after it: its first drop's record carries its one packet, so
/// when it idles out there is nothing more to write; the sink still learns that it ended (the
/// enrich stage lets the flow's state go there).
#[test]
fn a_blocked_flow_that_ends_with_nothing_more_to_write_is_said_to_have_ended() {
    let (mut prog, _lists) = blocking("ended");
    let t = Timeouts::default();
    let mut s = sweeper(t);
    let mut sink = Memory::default();
    let syn = Spec::tcp4(v4(10, 6, 0, 1), 40000, v4(203, 0, 113, 9), 443, tcp::SYN).build();
    assert_eq!(prog.run(&syn), 1, "the SYN is dropped");
    let mut dropped = Vec::new();
    for ev in prog.events() {
        if let Event::FlowDrop(key, ..) = &ev {
            dropped.push(*key);
        }
        s.on_event(ev, &mut sink, &());
    }
    let [key] = dropped[..] else {
        panic!("one first-drop event: {dropped:?}")
    };
    assert_eq!(sink.0.len(), 1, "the first drop is written at once");
    assert_eq!(sink.0[0].end_reason, EndReason::Drop);
    let fd = flows_fd(&prog.loaded);
    let idle = WallClock::ktime_now() + t.inactive.as_nanos() as u64 + S;
    s.sweep(fd.table(), &mut sink, &(), idle).expect("sweep");
    assert!(
        fd.table().get(&key).expect("lookup").is_none(),
        "the flow is taken out of the table"
    );
    assert_eq!(sink.0.len(), 1, "nothing more to write: {:?}", sink.0);
    assert_eq!(sink.1, [key], "the sink learns that the flow ended");
}

/// A stopping pinned agent writes a blocked flow's `shutdown` slice before the first drop's
/// event is drained (it lags in the ring): the drop, drained after, has nothing left to write
/// and must not move what the flow's records carried back to its one packet, else the next
/// record counts the second packet again.
#[test]
fn a_first_drop_drained_after_a_later_slice_counts_each_packet_once() {
    let (mut prog, _lists) = blocking("stale");
    let t = Timeouts::default();
    let mut s = sweeper(t);
    let mut sink = Memory::default();
    let syn = Spec::tcp4(v4(10, 6, 0, 2), 40001, v4(203, 0, 113, 9), 443, tcp::SYN).build();
    for _ in 0..2 {
        assert_eq!(prog.run(&syn), 1, "the SYN is dropped");
    }
    let fd = flows_fd(&prog.loaded);
    s.hand_over(fd.table(), &mut sink, &(), WallClock::ktime_now())
        .expect("hand over");
    assert_eq!(
        sink.0
            .iter()
            .map(|r| (r.end_reason, r.packets))
            .collect::<Vec<_>>(),
        [(EndReason::Shutdown, 2)],
        "the shutdown slice carries both packets"
    );
    let events = prog.events();
    assert!(
        events.iter().any(|e| matches!(e, Event::FlowDrop(..))),
        "premise: the first drop's event was still in the ring"
    );
    for ev in events {
        s.on_event(ev, &mut sink, &());
    }
    assert_eq!(prog.run(&syn), 1, "a third SYN is dropped");
    let idle = WallClock::ktime_now() + t.inactive.as_nanos() as u64 + S;
    s.sweep(fd.table(), &mut sink, &(), idle).expect("sweep");
    let slices: Vec<_> = sink.0.iter().map(|r| (r.end_reason, r.packets)).collect();
    assert_eq!(
        slices.iter().map(|s| s.1).sum::<u64>(),
        3,
        "the three SYNs are counted once each: {slices:?}"
    );
}

/// A blocked flow's first drop is still in the ring when the sweeper ends the flow (its
/// last record carries the packet): drained after, it must not pass for a new flow's and be
/// written again. A new flow under the same key afterwards is counted from nothing.
#[test]
fn a_first_drop_drained_after_its_flow_ended_is_not_written_again() {
    let (mut prog, _lists) = blocking("late");
    let t = Timeouts::default();
    let mut s = sweeper(t);
    let mut sink = Memory::default();
    let syn = Spec::tcp4(v4(10, 6, 0, 3), 40002, v4(203, 0, 113, 9), 443, tcp::SYN).build();
    let fd = flows_fd(&prog.loaded);
    let later = |prog: &mut Prog, s: &mut Sweeper, sink: &mut Memory| {
        assert_eq!(prog.run(&syn), 1, "the SYN is dropped");
        let idle = WallClock::ktime_now() + t.inactive.as_nanos() as u64 + S;
        s.sweep(fd.table(), sink, &(), idle).expect("sweep");
        let events = prog.events();
        assert!(
            events.iter().any(|e| matches!(e, Event::FlowDrop(..))),
            "premise: the first drop's event was still in the ring"
        );
        for ev in events {
            s.on_event(ev, sink, &());
        }
    };
    later(&mut prog, &mut s, &mut sink);
    let slices: Vec<_> = sink.0.iter().map(|r| (r.end_reason, r.packets)).collect();
    assert_eq!(slices, [(EndReason::Idle, 1)], "the SYN is written once");
    later(&mut prog, &mut s, &mut sink);
    let slices: Vec<_> = sink.0.iter().map(|r| (r.end_reason, r.packets)).collect();
    assert_eq!(
        slices,
        [(EndReason::Idle, 1), (EndReason::Idle, 1)],
        "a new flow under the key is written whole, once"
    );
}

#[test]
fn flows_evicted_from_a_full_table_are_still_recorded() {
    let mut l = load(64, 1 << 20);
    let mut s = sweeper(Timeouts::default());
    let mut sink = Memory::default();
    for i in 0..300u16 {
        run(
            &mut l,
            &Spec::udp4(
                v4(10, 5, (i >> 8) as u8, i as u8),
                5000,
                v4(10, 5, 9, 9),
                53,
            )
            .build(),
        );
    }
    drain(&mut l, &mut s);
    let fd = flows_fd(&l);
    let table = fd.table();
    let in_table = table.keys().expect("keys").len();
    s.sweep(table, &mut sink, &(), WallClock::ktime_now())
        .expect("sweep");
    s.flush(table, &mut sink, &()).expect("flush");
    let st = s.stats;
    assert!(
        st.evicted > 0,
        "a 64-entry table cannot hold 300 flows: {st:?}"
    );
    assert_eq!(
        st.evicted as usize + in_table,
        300,
        "{st:?}, {in_table} in the table"
    );
    let evicted = sink
        .0
        .iter()
        .filter(|r| r.end_reason == EndReason::Evicted)
        .count() as u64;
    assert_eq!(evicted, st.evicted, "every eviction is written");
    let mut ports: Vec<_> = sink.0.iter().map(|r| r.src_ip).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(
        ports.len(),
        300,
        "each of the 300 flows written exactly once"
    );
    assert!(
        sink.0.iter().all(|r| r.packets == 1),
        "each flow had one packet"
    );
}

/// At a stop with no sweep since the flows started, the flush (program detached) and the
/// hand-over (program left attached) write the flows the LRU evicted meanwhile, known from
/// their start events alone: they wrote only what was still in the table.
#[test]
fn a_stop_writes_the_flows_evicted_since_the_last_sweep() {
    for hand_over in [false, true] {
        let mut l = load(64, 1 << 20);
        let mut s = sweeper(Timeouts::default());
        let mut sink = Memory::default();
        for i in 0..300u16 {
            let src = v4(10, 5, (i >> 8) as u8, i as u8);
            run(&mut l, &Spec::udp4(src, 5000, v4(10, 5, 9, 9), 53).build());
        }
        drain(&mut l, &mut s);
        let fd = flows_fd(&l);
        let table = fd.table();
        let in_table = table.keys().expect("keys").len();
        if hand_over {
            s.hand_over(table, &mut sink, &(), WallClock::ktime_now())
        } else {
            s.flush(table, &mut sink, &())
        }
        .expect("stop");
        let what = if hand_over { "hand-over" } else { "flush" };
        assert!(
            in_table < 300,
            "{what}: a 64-entry table cannot hold 300 flows"
        );
        assert_eq!(
            s.stats.evicted as usize + in_table,
            300,
            "{what}: {:?}, {in_table} in the table",
            s.stats
        );
        let mut sources: Vec<_> = sink.0.iter().map(|r| r.src_ip).collect();
        sources.sort();
        sources.dedup();
        assert_eq!(
            (sources.len(), sink.0.len()),
            (300, 300),
            "{what}: each of the 300 flows written once"
        );
    }
}

/// An evicted flow is written from the last snapshot the sweeper had of it: a sweep's walk
/// counts more than its start event, and a flow whose start event the ring lost has only
/// the walk's.
#[test]
fn an_evicted_flow_is_written_with_what_the_last_sweep_saw() {
    // A 4 KiB ring cannot hold 60 flows' start events: most are lost.
    let mut l = load(1024, 4096);
    let mut s = sweeper(Timeouts::default());
    let fd = flows_fd(&l);
    let table = fd.table();
    let mut sink = Memory::default();
    for i in 0..60u8 {
        let f = Spec::udp4(v4(10, 3, 8, i), 4001, v4(10, 3, 8, 250), 443)
            .payload(10)
            .build();
        for _ in 0..5 {
            run(&mut l, &f);
        }
    }
    drain(&mut l, &mut s);
    s.sweep(table, &mut sink, &(), WallClock::ktime_now())
        .expect("sweep");
    assert!(sink.0.is_empty(), "nothing due yet: {:?}", sink.0);
    let entries = table.entries().expect("entries");
    let lost = entries
        .iter()
        .filter(|(_, v)| v.flags & agent_common::flow_flags::START_ANNOUNCED == 0)
        .count();
    assert!(
        lost > 0 && lost < 60,
        "some start events lost, some announced: {lost}"
    );
    // The LRU evicts every flow (taken here as it would be).
    for (k, _) in &entries {
        table.take(k).expect("take");
    }
    s.sweep(table, &mut sink, &(), WallClock::ktime_now())
        .expect("sweep");
    assert_eq!(s.stats.evicted, 60, "{:?}", s.stats);
    let written: Vec<_> = sink.0.iter().map(|r| (r.end_reason, r.packets)).collect();
    assert_eq!(
        written,
        vec![(EndReason::Evicted, 5); 60],
        "each flow written once, with the five packets the walk saw"
    );
}

#[test]
fn batched_reads_return_exactly_what_a_key_by_key_walk_sees() {
    // More flows than one batch (4,096) in the IPv4 table, a few in the IPv6 one.
    let mut l = load(16_384, 1 << 22);
    for i in 0..10_000u32 {
        let [_, _, c, d] = i.to_be_bytes();
        run(
            &mut l,
            &Spec::tcp4(
                v4(10, 20, c, d),
                1000 + (i % 50) as u16,
                v4(10, 30, 0, 1),
                80,
                tcp::ACK,
            )
            .build(),
        );
    }
    for i in 0..3u16 {
        let f = common::Spec::new(
            common::Addrs::V6(common::v6(1 + i), common::v6(100)),
            common::L4::Tcp {
                sport: 5000,
                dport: 443,
                flags: tcp::ACK,
            },
        )
        .build();
        run(&mut l, &f);
        run(&mut l, &f);
    }
    let fd = flows_fd(&l);
    let table = fd.table();
    let mut batched = table.entries().expect("batch read");
    let mut walked: Vec<_> = table
        .keys()
        .expect("keys")
        .into_iter()
        .map(|k| (k, table.get(&k).expect("get").expect("present")))
        .collect();
    assert_eq!(batched.len(), 10_003);
    let order = |a: &(agent_common::FlowKey, agent_common::FlowValue),
                 b: &(agent_common::FlowKey, agent_common::FlowValue)| {
        (a.0.addr_a, a.0.addr_b, a.0.port_a).cmp(&(b.0.addr_a, b.0.addr_b, b.0.port_a))
    };
    batched.sort_by(order);
    walked.sort_by(order);
    for (b, w) in batched.iter().zip(&walked) {
        assert_eq!(b.0, w.0, "same keys");
        assert_eq!(
            (b.1.packets, b.1.bytes, b.1.first_seen_ns),
            (w.1.packets, w.1.bytes, w.1.first_seen_ns),
            "same values for {:?}",
            b.0
        );
    }
    let v6_packets: Vec<_> = batched
        .iter()
        .filter(|(k, _)| k.family == agent_common::family::V6)
        .map(|(_, v)| v.packets)
        .collect();
    assert_eq!(v6_packets, [[2, 0]; 3]);
}

#[test]
fn a_map_of_the_wrong_shape_is_refused_as_a_flow_table() {
    use aya::maps::MapData;
    use std::os::fd::AsFd;
    let l = load(64, 4096);
    let maps = l.flow_maps().try_clone().expect("second handles");
    assert!(
        maps.table()
            .keys()
            .expect("the flow tables read")
            .is_empty(),
        "nothing ran yet"
    );
    // The ring buffer handed over as both flow tables: the kernel's map info says what it is.
    let ring = RingBuf::try_from(l.events).expect("ring");
    let open = || MapData::from_fd(ring.as_fd().try_clone_to_owned().expect("dup")).expect("map");
    let err = FlowMaps::new(open(), open())
        .err()
        .expect("a ring buffer is no flow table");
    let msg = err.to_string();
    assert!(
        msg.contains("FLOWS") && msg.contains("48-byte keys") && msg.contains("RingBuf"),
        "names the table, what the map is and the shape it needs: {msg}"
    );
}

/// A pinned agent's stop within a closed flow's linger writes it as it closed (`fin`, `rst`)
/// and takes it from the table, as the unpinned flush does: it wrote `shutdown`, and the next
/// agent, with nothing new to write, left that as the flow's last word. One side's FIN is no
/// close for good: a half-close (the other side seen still sending), or one way as a
/// gateway's interface sees it, stays open for the next agent.
#[test]
fn a_stop_in_a_closed_flows_linger_writes_how_it_closed() {
    let mut l = load(1024, 1 << 16);
    let mut s = sweeper(Timeouts::default());
    let (c, srv) = (v4(10, 7, 0, 1), v4(10, 7, 0, 2));
    // Both FINs seen.
    run(&mut l, &Spec::tcp4(c, 1001, srv, 80, tcp::SYN).build());
    run(
        &mut l,
        &Spec::tcp4(srv, 80, c, 1001, tcp::SYN | tcp::ACK).build(),
    );
    run(
        &mut l,
        &Spec::tcp4(c, 1001, srv, 80, tcp::FIN | tcp::ACK).build(),
    );
    run(
        &mut l,
        &Spec::tcp4(srv, 80, c, 1001, tcp::FIN | tcp::ACK).build(),
    );
    // One way, as a gateway's LAN side sees it: the client's SYN, data, FIN.
    for flags in [tcp::SYN, tcp::ACK, tcp::FIN | tcp::ACK] {
        run(&mut l, &Spec::tcp4(c, 1004, srv, 80, flags).build());
    }
    run(&mut l, &Spec::tcp4(c, 1002, srv, 80, tcp::SYN).build());
    run(&mut l, &Spec::tcp4(c, 1002, srv, 80, tcp::RST).build());
    // A half-close: the client's FIN, and the server seen answering after it.
    run(&mut l, &Spec::tcp4(c, 1003, srv, 80, tcp::SYN).build());
    run(
        &mut l,
        &Spec::tcp4(srv, 80, c, 1003, tcp::SYN | tcp::ACK).build(),
    );
    run(
        &mut l,
        &Spec::tcp4(c, 1003, srv, 80, tcp::FIN | tcp::ACK).build(),
    );
    run(
        &mut l,
        &Spec::tcp4(srv, 80, c, 1003, tcp::ACK).payload(100).build(),
    );
    drain(&mut l, &mut s);
    let mut sink = Memory::default();
    let fd = flows_fd(&l);
    s.hand_over(fd.table(), &mut sink, &(), WallClock::ktime_now())
        .expect("hand over");
    let mut got: Vec<(u16, EndReason)> =
        sink.0.iter().map(|r| (r.src_port, r.end_reason)).collect();
    got.sort_by_key(|g| g.0);
    assert_eq!(
        got,
        [
            (1001, EndReason::Fin),
            (1002, EndReason::Rst),
            (1003, EndReason::Shutdown),
            (1004, EndReason::Shutdown)
        ],
        "{:?}",
        sink.0
    );
    assert_eq!(
        fd.table().keys().expect("keys").len(),
        2,
        "the half-closed and the one-way flows stay for the next agent"
    );
}

/// Two connections on the same ports within the close linger are two flows, each with its
/// own packets, closed `fin`, and no eviction: the closed one's last snapshot, drained before
/// the walk that finds the new connection, is its last record; drained after it, the walk
/// has written the closed one from its last snapshot, and the late one adds what it counted
/// since (an ACK after its FIN). Before, the second connection was counted into the first.
#[test]
fn a_connection_on_a_closed_flows_ports_is_a_flow_of_its_own() {
    for snapshot_first in [true, false] {
        let mut l = load(1024, 1 << 16);
        let mut s = sweeper(Timeouts::default());
        let (c, srv) = (v4(10, 3, 1, 1), v4(10, 3, 1, 2));
        let syn = Spec::tcp4(c, 40010, srv, 80, tcp::SYN).build();
        let data = Spec::tcp4(c, 40010, srv, 80, tcp::ACK).payload(100).build();
        let fin = Spec::tcp4(c, 40010, srv, 80, tcp::FIN | tcp::ACK).build();
        let ack = Spec::tcp4(c, 40010, srv, 80, tcp::ACK).build();
        let fd = flows_fd(&l);
        let table = fd.table();
        let mut sink = Memory::default();
        for f in [&syn, &data, &fin] {
            run(&mut l, f);
        }
        drain_into(&mut l, &mut s, &mut sink);
        // Within the linger: nothing written yet.
        s.sweep(table, &mut sink, &(), WallClock::ktime_now())
            .expect("sweep");
        assert!(sink.0.is_empty(), "{:?}", sink.0);
        for f in [&ack, &syn, &data, &data, &fin] {
            run(&mut l, f);
        }
        if snapshot_first {
            drain_into(&mut l, &mut s, &mut sink);
        }
        s.sweep(table, &mut sink, &(), WallClock::ktime_now())
            .expect("sweep");
        drain_into(&mut l, &mut s, &mut sink);
        s.flush(table, &mut sink, &()).expect("flush");
        let got: Vec<_> = sink.0.iter().map(|r| (r.end_reason, r.packets)).collect();
        let fin = EndReason::Fin;
        // The walk's record of the closed flow, then what it counted since (its ACK after the
        // FIN), continuing it, then the new connection's.
        let want: &[(EndReason, u64)] = if snapshot_first {
            &[(fin, 4), (fin, 4)]
        } else {
            &[(fin, 3), (fin, 1), (fin, 4)]
        };
        assert_eq!(got, want, "snapshot first: {snapshot_first}: {:?}", sink.0);
        if !snapshot_first {
            assert_eq!(sink.0[1].time_start_ns, sink.0[0].time_end_ns, "continued");
        }
        assert!(sink
            .0
            .last()
            .is_some_and(|n| n.time_start_ns > sink.0[0].time_end_ns));
        assert_eq!(s.stats.evicted, 0, "no eviction: {:?}", s.stats);
    }
}

/// A closed connection the LRU evicts before any walk read it is written with what its first
/// FIN's event carried, not its start's alone (before: its SYN, one packet of four).
#[test]
fn a_closed_flow_evicted_before_a_walk_is_written_with_its_counts_to_its_fin() {
    let mut l = load(1024, 1 << 16);
    let mut s = sweeper(Timeouts::default());
    let fd = flows_fd(&l);
    let table = fd.table();
    let mut sink = Memory::default();
    let (c, srv) = (v4(10, 3, 2, 1), v4(10, 3, 2, 2));
    for (flags, n) in [(tcp::SYN, 0), (tcp::ACK, 50), (tcp::ACK, 50)] {
        run(
            &mut l,
            &Spec::tcp4(c, 40020, srv, 80, flags).payload(n).build(),
        );
    }
    run(
        &mut l,
        &Spec::tcp4(c, 40020, srv, 80, tcp::FIN | tcp::ACK).build(),
    );
    drain_into(&mut l, &mut s, &mut sink);
    // The LRU evicts it (taken here as it would be).
    let key = table.keys().expect("keys")[0];
    assert!(table.take(&key).expect("take").is_some());
    s.sweep(table, &mut sink, &(), WallClock::ktime_now())
        .expect("sweep");
    let got: Vec<_> = sink.0.iter().map(|r| (r.end_reason, r.packets)).collect();
    assert_eq!(got, [(EndReason::Evicted, 4)], "{:?}", sink.0);
}
