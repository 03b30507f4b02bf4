//! The sweeper's decisions, apart from any table.

use super::decide::TCP_FIN;
use super::*;
use agent_common::DIR_RESP;

const S: u64 = 1_000_000_000;

/// An IPv4 UDP flow's key on ifindex 1, from port `port` to 53.
pub(super) fn udp_key(port: u16) -> FlowKey {
    FlowKey {
        ifindex: 1,
        vlan: 0,
        vlan_inner: 0,
        proto: 17,
        family: agent_common::family::V4,
        _pad: [0; 2],
        port_a: port,
        port_b: 53,
        addr_a: [1, 0, 0, 0],
        addr_b: [2, 0, 0, 0],
    }
}

/// An entry of one packet seen from `first` to `last`.
pub(super) fn value(first: u64, last: u64, end: u64, flags: u8) -> FlowValue {
    FlowValue {
        first_seen_ns: first,
        last_seen_ns: last,
        end_seen_ns: end,
        packets: [1, 0],
        bytes: [60, 0],
        drops: 0,
        src_mac: [0; 6],
        dst_mac: [0; 6],
        tcp_flags: [0; 2],
        flags,
        verdict: 0,
        verdict_gen: 0,
        rule: agent_common::NO_RULE,
        isn: 0,
        snippets_left: [0; 2],
        last_tick: 0,
    }
}

#[test]
fn decisions_follow_the_timeouts() {
    let t = Timeouts::default();
    let none = Reported::default();
    // Fresh flow: kept.
    assert_eq!(
        decide(&value(100 * S, 100 * S, 0, 0), &none, 101 * S, &t),
        Action::Keep
    );
    // Idle for the inactive timeout: ends idle.
    assert_eq!(
        decide(&value(100 * S, 100 * S, 0, 0), &none, 130 * S, &t),
        Action::End(EndReason::Idle)
    );
    // Busy for the active timeout: interim record.
    assert_eq!(
        decide(&value(100 * S, 399 * S, 0, 0), &none, 400 * S, &t),
        Action::Active
    );
    // After an interim record the next slice starts at its last packet.
    let rep = Reported {
        last_seen_ns: 399 * S,
        ..Reported::default()
    };
    assert_eq!(
        decide(&value(100 * S, 420 * S, 0, 0), &rep, 421 * S, &t),
        Action::Keep
    );
    // FIN: lingers, then ends fin; RST wins over FIN.
    let fin = flow_flags::FIN_SEEN;
    assert_eq!(
        decide(&value(100 * S, 101 * S, 101 * S, fin), &none, 102 * S, &t),
        Action::Keep
    );
    assert_eq!(
        decide(&value(100 * S, 101 * S, 101 * S, fin), &none, 103 * S, &t),
        Action::End(EndReason::Fin)
    );
    // A half-close: the other side still sends 9 s after the first FIN.
    assert_eq!(
        decide(&value(100 * S, 110 * S, 101 * S, fin), &none, 111 * S, &t),
        Action::Keep
    );
    assert_eq!(
        decide(&value(100 * S, 110 * S, 101 * S, fin), &none, 112 * S, &t),
        Action::End(EndReason::Fin)
    );
    // Both directions audited: one side's FIN waits for the inactive timeout (the other
    // side may pause before its answer); both sides' FINs linger as before.
    let mut half = value(100 * S, 101 * S, 101 * S, fin);
    half.packets = [3, 2];
    half.tcp_flags = [TCP_FIN | 0x10, 0x10];
    assert_eq!(decide(&half, &none, 110 * S, &t), Action::Keep);
    assert_eq!(
        decide(&half, &none, 131 * S, &t),
        Action::End(EndReason::Fin)
    );
    half.tcp_flags[DIR_RESP] |= TCP_FIN;
    assert_eq!(
        decide(&half, &none, 103 * S, &t),
        Action::End(EndReason::Fin)
    );
    assert_eq!(
        decide(
            &value(100 * S, 101 * S, 101 * S, fin | flow_flags::RST_SEEN),
            &none,
            104 * S,
            &t
        ),
        Action::End(EndReason::Rst)
    );
}

#[test]
fn what_was_reported_never_moves_back() {
    let mut v = value(5, 5, 0, 0);
    v.drops = 1;
    let later = Reported {
        packets: [2, 1],
        bytes: [120, 40],
        drops: 2,
        last_seen_ns: 9,
    };
    assert_eq!(
        later.covering(&v),
        later,
        "an older value moves nothing back"
    );
    (v.packets, v.bytes, v.drops, v.last_seen_ns) = ([3, 1], [180, 40], 3, 12);
    assert_eq!(later.covering(&v), Reported::of(&v), "a newer one is taken");
}

/// The program counts a dropped packet's drop before the packet: a copy made in between
/// holds the drop alone, which goes with the packet's record, not the one before it.
#[test]
fn a_drop_copied_before_its_packet_goes_with_the_packets_record() {
    let written = Reported {
        packets: [1, 0],
        bytes: [60, 0],
        drops: 1,
        last_seen_ns: 1,
    };
    let mut v = value(1, 2, 0, 0);
    v.drops = 2; // the second packet's drop, not yet its count
    let after = written.covering(&v);
    assert_eq!(after.drops, 1, "no drop without a packet to carry it");
    let key = udp_key(0);
    let clock = crate::clock::WallClock::from_offset(0);
    let torn = FlowRecord::from_entry(&key, &v, "", &clock, &written, EndReason::Idle);
    assert_eq!((torn.packets, torn.dropped), (0, 0));
    (v.packets, v.bytes) = ([2, 0], [120, 0]);
    let next = FlowRecord::from_entry(&key, &v, "", &clock, &after, EndReason::Idle);
    assert_eq!(
        (next.packets, next.dropped),
        (1, 1),
        "the packet and its drop"
    );
    assert_eq!(after.covering(&v).drops, 2);
}

#[test]
fn a_replaced_programs_lost_starts_count_from_its_last_reading_and_add_to_the_new_ones() {
    let mut s = Sweeper::new(
        Timeouts::default(),
        Timeline::fixed(crate::clock::WallClock::from_offset(0)),
        Default::default(),
    );
    // Two old programs: 20 lost, 5 of them before the last reading; one never read (not
    // counted); one whose reading is another program's (above its counter: not counted).
    // 3 flows found in the old tables, 2 more known (moved, or revealed by events).
    s.count_retired_lost_starts(3, 2, &[(20, Some(5)), (7, None), (4, Some(9))]);
    assert_eq!((s.stats.lost_starts, s.stats.lost_unseen), (3, 10));
    // The new program's own, from its first reading on, add to them.
    s.note_lost_starts(4);
    s.count_lost_starts(1);
    assert_eq!(s.stats.lost_unseen, 10, "the first reading is the base");
    s.note_lost_starts(10);
    s.count_lost_starts(2);
    assert_eq!(
        (s.stats.lost_starts, s.stats.lost_unseen),
        (6, 14),
        "6 more lost, 2 found"
    );
}
