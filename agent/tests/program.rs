//! The XDP program tested for real: loaded into the kernel and fed crafted packets through
//! BPF_PROG_TEST_RUN. Each case asserts the verdict (XDP_PASS with no lists loaded, but for
//! a frame with more than two VLAN tags), the outcome counter, the flow-table entry and the
//! ring-buffer events. Needs root.

mod common;

use std::time::Duration;

use agent_common::{family, flow_flags, Counter, FlowKey};
use aya::maps::RingBuf;
use common::prog::{Prog, XDP_DROP, XDP_PASS};
use common::wait::wait_until;
use common::{tcp, v4, v6, Addrs, Spec, L4};
use xdp_audit::reader::Event;

fn port(raw: u16) -> u16 {
    u16::from_be(raw)
}

#[test]
fn a_tcp_conversation_is_one_flow_with_both_directions_counted() {
    let mut p = Prog::load(1 << 16);
    let (c, s) = (v4(198, 51, 100, 2), v4(203, 0, 113, 2));
    let syn = Spec::tcp4(c, 40000, s, 80, tcp::SYN).build();
    let synack = Spec::tcp4(s, 80, c, 40000, tcp::SYN | tcp::ACK).build();
    let data = Spec::tcp4(c, 40000, s, 80, tcp::ACK | tcp::PSH)
        .payload(100)
        .build();
    let fin = Spec::tcp4(c, 40000, s, 80, tcp::FIN | tcp::ACK).build();
    for f in [&syn, &synack, &data, &fin] {
        assert_eq!(p.run(f), XDP_PASS);
    }
    let flows = p.flows();
    assert_eq!(
        flows.len(),
        1,
        "both directions must share one entry: {flows:?}"
    );
    let (k, v) = flows[0];
    assert_eq!(k.family, family::V4);
    assert_eq!(k.proto, 6);
    assert_eq!(v.packets, [3, 1]);
    assert_eq!(
        v.bytes,
        [
            (syn.len() + data.len() + fin.len()) as u64,
            synack.len() as u64
        ]
    );
    assert_eq!(
        v.tcp_flags,
        [
            tcp::SYN | tcp::ACK | tcp::PSH | tcp::FIN,
            tcp::SYN | tcp::ACK
        ]
    );
    assert_ne!(v.flags & flow_flags::FIN_SEEN, 0);
    assert!(v.end_seen_ns >= v.first_seen_ns && v.end_seen_ns != 0);
    assert_eq!(v.src_mac, common::MAC_A);
    assert_eq!(v.dst_mac, common::MAC_B);
    // The key is oriented as the SYN: endpoint a is the originator.
    assert_eq!((port(k.port_a), port(k.port_b)), (40000, 80));
    assert_eq!(&FlowKey::addr_bytes(&k.addr_a)[..4], &c);

    let events = p.events();
    assert_eq!(
        events.len(),
        2,
        "one start and one end event, never per packet: {events:?}"
    );
    assert!(matches!(events[0], Event::FlowStart(key, val) if key == k && val.packets == [1, 0]));
    assert!(matches!(events[1], Event::FlowEnd(key, val) if key == k && val.packets == [3, 1]));
    assert_ne!(p.flows()[0].1.flags & flow_flags::START_ANNOUNCED, 0);
    assert_ne!(p.flows()[0].1.flags & flow_flags::END_ANNOUNCED, 0);
    assert_eq!(p.counter(Counter::ParsedTcp), 4);
}

#[test]
fn rst_ends_a_flow_and_only_the_first_close_is_announced() {
    let mut p = Prog::load(1 << 16);
    let (c, s) = (v4(10, 9, 0, 1), v4(10, 9, 0, 2));
    p.run(&Spec::tcp4(c, 1000, s, 443, tcp::SYN).build());
    p.run(&Spec::tcp4(s, 443, c, 1000, tcp::RST).build());
    p.run(&Spec::tcp4(c, 1000, s, 443, tcp::RST).build());
    let events = p.events();
    let ends = events
        .iter()
        .filter(|e| matches!(e, Event::FlowEnd(..)))
        .count();
    assert_eq!(ends, 1, "{events:?}");
    assert_ne!(p.flows()[0].1.flags & flow_flags::RST_SEEN, 0);
}

#[test]
fn a_rst_after_a_fin_says_the_flow_was_reset() {
    let mut p = Prog::load(1 << 16);
    let (c, s) = (v4(10, 9, 1, 1), v4(10, 9, 1, 2));
    p.run(&Spec::tcp4(c, 1001, s, 443, tcp::SYN).build());
    p.run(&Spec::tcp4(c, 1001, s, 443, tcp::FIN | tcp::ACK).build());
    assert_eq!(p.flows()[0].1.flags & flow_flags::RST_SEEN, 0, "a FIN only");
    p.run(&Spec::tcp4(s, 443, c, 1001, tcp::RST).build());
    let v = p.flows()[0].1;
    assert_ne!(
        v.flags & flow_flags::RST_SEEN,
        0,
        "RST wins over FIN: {v:?}"
    );
    assert_ne!(v.flags & flow_flags::FIN_SEEN, 0);
}

#[test]
fn flows_are_keyed_by_vlan_and_qinq_tags() {
    let mut p = Prog::load(1 << 16);
    let base = Spec::udp4(v4(10, 0, 0, 1), 5000, v4(10, 0, 0, 2), 53);
    let mut one = base.clone();
    one.vlans = vec![(0x8100, 100)];
    let mut qinq = base.clone();
    qinq.vlans = vec![(0x88a8, 200), (0x8100, 300)];
    p.expect_outcome(&base.build(), Counter::ParsedUdp, "untagged");
    p.expect_outcome(&one.build(), Counter::ParsedUdp, "802.1Q");
    p.expect_outcome(&qinq.build(), Counter::ParsedUdp, "QinQ");
    // Linux takes no 0x9100 tag for a VLAN's (nor the frame for IP): neither does the program.
    let mut old_qinq = base.clone();
    old_qinq.vlans = vec![(0x9100, 7)];
    p.expect_outcome(&old_qinq.build(), Counter::SkipNonIp, "a 0x9100 tag");
    // Three tags, VLAN 0 (which the host strips one after another, delivering the packet) or
    // not: nothing behind them is read, so the frame is dropped, not let by unjudged.
    for tags in [
        vec![(0x8100, 0), (0x8100, 0), (0x8100, 0)],
        vec![(0x88a8, 1), (0x8100, 2), (0x8100, 3)],
    ] {
        let mut three = base.clone();
        three.vlans = tags;
        let before = p.counter(Counter::SkipTooManyVlans);
        assert_eq!(p.run(&three.build()), XDP_DROP, "{:?}", three.vlans);
        assert_eq!(p.counter(Counter::SkipTooManyVlans), before + 1);
    }
    let mut tags: Vec<(u16, u16)> = p
        .flows()
        .iter()
        .map(|(k, _)| (k.vlan, k.vlan_inner))
        .collect();
    tags.sort();
    assert_eq!(tags, vec![(0, 0), (100, 0), (200, 300)]);
}

#[test]
fn ipv4_options_fragments_and_bad_headers() {
    let mut p = Prog::load(1 << 16);
    let mut opts = Spec::tcp4(v4(10, 0, 0, 1), 1234, v4(10, 0, 0, 2), 22, tcp::SYN);
    opts.ipv4_options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    p.expect_outcome(&opts.build(), Counter::ParsedTcp, "IHL 6 with options");
    let k = p.flows()[0].0;
    assert_eq!(
        (
            port(k.port_a).min(port(k.port_b)),
            port(k.port_a).max(port(k.port_b))
        ),
        (22, 1234),
        "ports read past the options"
    );

    let mut first = Spec::udp4(v4(10, 0, 1, 1), 7000, v4(10, 0, 1, 2), 7001).payload(64);
    first.ipv4_frag = (0, true);
    p.expect_outcome(&first.build(), Counter::ParsedUdp, "first fragment");
    let mut later = first.clone();
    later.ipv4_frag = (9, false);
    p.expect_outcome(&later.build(), Counter::FragmentV4, "later fragment");
    let frag_flow = p
        .flows()
        .into_iter()
        .find(|(k, _)| k.proto == 17 && k.port_a == 0 && k.port_b == 0)
        .expect("a later fragment is a port-0 flow");
    assert_eq!(frag_flow.1.packets[0] + frag_flow.1.packets[1], 1);

    // A first fragment too short for its TCP header still reaches the host, reassembled:
    // it is counted on its ports' flow (its 8 bytes of TCP hold them, so port rules judge
    // it), its later fragment on the datagram's port-0 flow, as every later fragment.
    let mut tiny = Spec::tcp4(v4(10, 0, 2, 1), 7000, v4(10, 0, 2, 2), 22, tcp::SYN);
    tiny.ipv4_frag = (0, true);
    let mut tiny_first = tiny.build();
    tiny_first.truncate(14 + 20 + 8);
    tiny_first[16..18].copy_from_slice(&28u16.to_be_bytes());
    p.expect_outcome(&tiny_first, Counter::SkipTruncatedL4, "tiny first fragment");
    tiny.ipv4_frag = (1, false);
    p.expect_outcome(&tiny.build(), Counter::FragmentV4, "its later fragment");
    let mut tiny_flows: Vec<_> = p
        .flows()
        .into_iter()
        .filter(|(k, _)| k.proto == 6 && k.addr_b[0] == u32::from_ne_bytes(v4(10, 0, 2, 2)))
        .map(|(k, v)| ((u16::from_be(k.port_a), u16::from_be(k.port_b)), v.packets))
        .collect();
    tiny_flows.sort();
    assert_eq!(
        tiny_flows,
        [((0, 0), [1, 0]), ((7000, 22), [1, 0])],
        "the first fragment on its ports' flow, the later one on the port-0 flow"
    );

    // An IP packet with no room for its UDP header, padded to Ethernet's minimum: the
    // padding is no header, so the packet is counted in a port-0 flow of its addresses (a
    // gateway forwards it on them).
    let mut padded = Spec::udp4(v4(10, 0, 3, 1), 7001, v4(10, 0, 3, 2), 7002).build();
    padded.truncate(14 + 20);
    padded[16..18].copy_from_slice(&20u16.to_be_bytes());
    padded.resize(60, 0xab);
    p.expect_outcome(
        &padded,
        Counter::SkipTruncatedL4,
        "a UDP header in the padding",
    );
    let padded_flow: Vec<_> = p
        .flows()
        .into_iter()
        .filter(|(k, _)| k.proto == 17 && k.addr_b[0] == u32::from_ne_bytes(v4(10, 0, 3, 2)))
        .map(|(k, v)| ((k.port_a, k.port_b), v.packets))
        .collect();
    assert_eq!(
        padded_flow,
        [((0, 0), [1, 0])],
        "no ports read from the padding"
    );

    let mut frame = Spec::tcp4(v4(10, 0, 0, 1), 1, v4(10, 0, 0, 2), 2, 0).build();
    frame[14] = 0x44; // IHL 4: below the minimum
    p.expect_outcome(&frame, Counter::SkipBadIpv4Header, "IHL 4");
    frame[14] = 0x55; // version 5
    p.expect_outcome(&frame, Counter::SkipBadIpv4Header, "version 5");
    frame[14] = 0x4f; // IHL 15: 60 bytes of header that are not there
    frame[16..18].copy_from_slice(&80u16.to_be_bytes());
    p.expect_outcome(&frame, Counter::SkipTruncatedIpv4, "IHL past the end");
    let mut short_total = Spec::tcp4(v4(10, 0, 0, 1), 1, v4(10, 0, 0, 2), 2, 0).build();
    short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    p.expect_outcome(
        &short_total,
        Counter::SkipBadIpv4Header,
        "total length below IHL",
    );
}

#[test]
fn ipv6_extension_chains_are_walked_up_to_the_bound() {
    let mut p = Prog::load(1 << 16);
    let base = Spec::new(
        Addrs::V6(v6(1), v6(2)),
        L4::Udp {
            sport: 5353,
            dport: 53,
        },
    );
    let mut chain = base.clone();
    chain.ipv6_ext = vec![(0, 8), (60, 16), (43, 8), (44, 8), (51, 12)];
    p.expect_outcome(
        &chain.build(),
        Counter::ParsedUdp,
        "hop-by-hop, dstopts, routing, fragment, AH",
    );
    let k = p
        .flows()
        .into_iter()
        .find(|(k, _)| k.proto == 17)
        .expect("UDP flow behind the chain")
        .0;
    assert_eq!(
        (
            port(k.port_a).min(port(k.port_b)),
            port(k.port_a).max(port(k.port_b))
        ),
        (53, 5353)
    );

    let mut bound = base.clone();
    bound.ipv6_ext = vec![(60, 8); agent_common::MAX_IPV6_EXT_HEADERS];
    p.expect_outcome(&bound.build(), Counter::ParsedUdp, "exactly the bound");
    let mut too_long = base.clone();
    too_long.ipv6_ext = vec![(60, 8); agent_common::MAX_IPV6_EXT_HEADERS + 1];
    p.expect_outcome(
        &too_long.build(),
        Counter::SkipIpv6ExtChainTooLong,
        "one past the bound",
    );
    // Still a packet the host delivers: a flow of its addresses, the first header not walked
    // as its protocol, so the lists judge it and its record exists.
    assert!(
        p.flows()
            .iter()
            .any(|(k, v)| k.proto == 60 && k.port_a == 0 && v.packets == [1, 0]),
        "a flow for the chain past the bound: {:?}",
        p.flows()
    );

    let mut later = base.clone();
    later.ipv6_ext = vec![(44, 8)];
    later.ipv6_frag_offset = 100;
    p.expect_outcome(&later.build(), Counter::FragmentV6, "later IPv6 fragment");

    let mut cut = chain.build();
    cut.truncate(14 + 40 + 8 + 4); // inside the destination-options header
    cut[18..20].copy_from_slice(&12u16.to_be_bytes());
    p.expect_outcome(
        &cut,
        Counter::SkipTruncatedIpv6Ext,
        "cut inside an extension header",
    );

    let mut bad = base.build();
    bad[14] = 0x40;
    p.expect_outcome(
        &bad,
        Counter::SkipBadIpv6Header,
        "IPv6 ethertype with version 4",
    );
}

#[test]
fn icmp_other_protocols_and_non_ip() {
    let mut p = Prog::load(1 << 16);
    p.expect_outcome(
        &Spec::new(
            Addrs::V4(v4(10, 0, 0, 1), v4(10, 0, 0, 2)),
            L4::Icmp { ty: 8, code: 0 },
        )
        .build(),
        Counter::ParsedIcmp,
        "echo request",
    );
    p.expect_outcome(
        &Spec::new(Addrs::V6(v6(1), v6(2)), L4::Icmp { ty: 128, code: 0 }).build(),
        Counter::ParsedIcmpv6,
        "ICMPv6 echo request",
    );
    p.expect_outcome(
        &Spec::new(Addrs::V4(v4(10, 0, 0, 1), v4(10, 0, 0, 2)), L4::Other(47)).build(),
        Counter::ParsedOtherProto,
        "GRE",
    );
    let icmp = p
        .flows()
        .into_iter()
        .find(|(k, _)| k.proto == 1)
        .expect("ICMP flow")
        .0;
    let types: Vec<u16> = vec![port(icmp.port_a), port(icmp.port_b)];
    assert!(
        types.contains(&8) && types.contains(&0),
        "type/code stand in for ports: {types:?}"
    );
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&common::MAC_A);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    p.expect_outcome(&arp, Counter::SkipNonIp, "ARP");
    assert_eq!(p.flows().len(), 3, "skipped packets create no flow");
}

#[test]
fn a_full_ring_buffer_loses_events_but_never_flows() {
    let mut p = Prog::load(4096);
    // 4 KiB holds fewer than 30 events of 136 bytes (+8 header each).
    for i in 0..100u16 {
        p.run(&Spec::udp4(v4(10, 1, 0, 1), 10000 + i, v4(10, 1, 0, 2), 53).build());
    }
    let lost = p.counter(Counter::LostFlowStart);
    assert!(lost > 0, "a 4 KiB ring cannot hold 100 start events");
    let flows = p.flows();
    assert_eq!(
        flows.len(),
        100,
        "every flow is in the table even when its event was lost"
    );
    let unannounced = flows
        .iter()
        .filter(|(_, v)| v.flags & flow_flags::START_ANNOUNCED == 0)
        .count() as u64;
    assert_eq!(
        unannounced, lost,
        "the entry remembers which starts were lost"
    );
    let starts = p
        .events()
        .iter()
        .filter(|e| matches!(e, Event::FlowStart(..)))
        .count() as u64;
    assert_eq!(starts + lost, 100);
}

/// A SYN on a closed flow's key takes it over only when the ring takes the closed flow's
/// last snapshot: with the ring full, it is counted into the closed flow (one record of two
/// connections, nothing lost), and the snapshot's loss is counted.
#[test]
fn a_syn_on_a_closed_flow_with_the_ring_full_is_counted_into_it() {
    let mut p = Prog::load(4096);
    let (c, s) = (v4(10, 7, 2, 1), v4(10, 7, 2, 2));
    let syn = Spec::tcp4(c, 40003, s, 80, tcp::SYN).build();
    let fin = Spec::tcp4(c, 40003, s, 80, tcp::FIN | tcp::ACK).build();
    p.run(&syn);
    p.run(&fin);
    for i in 0..100u16 {
        p.run(&Spec::udp4(v4(10, 7, 3, 1), 10000 + i, v4(10, 7, 3, 2), 53).build());
    }
    assert!(
        p.counter(Counter::LostFlowStart) > 0,
        "premise: the ring is full"
    );
    let lost = p.counter(Counter::LostFlowEnd);
    p.run(&syn);
    assert_eq!(
        p.counter(Counter::LostFlowEnd),
        lost + 1,
        "the snapshot's loss"
    );
    let v = (p.flows().into_iter())
        .find(|(k, _)| port(k.port_a) == 40003)
        .map(|(_, v)| v)
        .expect("the flow");
    assert_eq!(v.packets, [3, 0], "counted into the closed flow: {v:?}");
}

/// A small deterministic generator, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn hostile_frames_are_all_passed_and_each_counted_once() {
    let mut p = Prog::load(1 << 16);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let valid = [
        Spec::tcp4(v4(10, 0, 0, 1), 1, v4(10, 0, 0, 2), 53, tcp::SYN)
            .payload(40)
            .build(),
        Spec::new(
            Addrs::V6(v6(1), v6(2)),
            L4::Udp {
                sport: 1,
                dport: 53,
            },
        )
        .payload(40)
        .build(),
        {
            let mut s = Spec::udp4(v4(10, 0, 0, 1), 1, v4(10, 0, 0, 2), 53).payload(40);
            s.vlans = vec![(0x88a8, 1), (0x8100, 2)];
            s.build()
        },
    ];
    let runs = 3000u64;
    let before = p.outcome_total();
    for i in 0..runs {
        // Start from a valid frame and corrupt a few bytes and the length, so the parser
        // goes deep before it meets the damage.
        let mut f = valid[(i % 3) as usize].clone();
        for _ in 0..(1 + rng.next() % 6) {
            let at = (rng.next() as usize) % f.len();
            f[at] = rng.next() as u8;
        }
        let len = 14 + (rng.next() as usize) % (f.len() - 13);
        f.truncate(len);
        let vlans = p.counter(Counter::SkipTooManyVlans);
        let action = p.run(&f);
        let expected = if p.counter(Counter::SkipTooManyVlans) > vlans {
            XDP_DROP
        } else {
            XDP_PASS
        };
        assert_eq!(
            action, expected,
            "frame {i} must pass with no lists loaded (but behind three VLAN tags): {f:02x?}"
        );
    }
    assert_eq!(
        p.outcome_total() - before,
        runs,
        "exactly one outcome per frame"
    );
}

/// `clock` now, and the kernel tick (the coarse clock's resolution).
fn clock(clock: libc::clockid_t) -> (u64, u64) {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let mut res = now;
    // SAFETY: valid out-pointers to timespecs.
    let rc = unsafe {
        libc::clock_gettime(clock, &mut now)
            | libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res)
    };
    assert_eq!(rc, 0, "clock_gettime/clock_getres failed");
    let ns = |t: libc::timespec| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
    (ns(now), ns(res))
}

/// CLOCK_MONOTONIC, the clock `last_seen_ns` is.
fn precise() -> u64 {
    clock(libc::CLOCK_MONOTONIC).0
}

/// `last_seen_ns` is the clock at the flow's first packet of a tick: never before the packets
/// of a round sent a tick after the last (a capture's time of the last packet is at most a
/// tick later). It was the coarse clock, up to two ticks early.
#[test]
fn last_seen_follows_the_clock_tick_by_tick_though_read_once_per_tick() {
    let mut p = Prog::load(1 << 16);
    let (c, s) = (v4(198, 51, 100, 9), v4(203, 0, 113, 9));
    let syn = Spec::tcp4(c, 40009, s, 80, tcp::SYN).build();
    let ack = Spec::tcp4(c, 40009, s, 80, tcp::ACK).build();
    let reply = Spec::tcp4(s, 80, c, 40009, tcp::ACK).build();
    assert_eq!(p.run(&syn), XDP_PASS);
    let mut last = p.flows()[0].1.last_seen_ns;
    for (round, frame) in [&ack, &reply, &ack, &ack].into_iter().enumerate() {
        // Two ticks on by the coarse clock, which moves only when the kernel's tick does: the
        // round's first packet is in a later tick than the last read (the precise clock can
        // run ahead of a tick that a busy host delays).
        let (_, tick) = clock(libc::CLOCK_MONOTONIC_COARSE);
        wait_until(
            Duration::from_secs(5),
            "the coarse clock is two ticks past the flow's last packet",
            || clock(libc::CLOCK_MONOTONIC_COARSE).0 >= last + 2 * tick,
        );
        let before = precise();
        // Several packets in one tick: the first reads the clock, the others skip it.
        for _ in 0..3 {
            assert_eq!(p.run(frame), XDP_PASS);
        }
        let after = precise();
        let v = p.flows()[0].1;
        assert!(
            v.last_seen_ns >= before && v.last_seen_ns <= after,
            "round {round}: last_seen_ns {} not read while the packets were sent, between \
             {before} and {after} (tick {tick} ns)",
            v.last_seen_ns
        );
        last = v.last_seen_ns;
    }
    assert_eq!(p.flows()[0].1.packets, [10, 3], "every packet counted");
}

#[test]
fn a_retransmitted_syn_counts_into_its_flow_and_is_announced_once() {
    let mut p = Prog::load(1 << 16);
    let syn = Spec::tcp4(v4(10, 7, 0, 1), 40001, v4(10, 7, 0, 2), 80, tcp::SYN).build();
    for _ in 0..3 {
        assert_eq!(p.run(&syn), XDP_PASS);
    }
    let flows = p.flows();
    assert_eq!(flows.len(), 1, "retransmits share the flow: {flows:?}");
    assert_eq!(flows[0].1.packets, [3, 0]);
    assert_ne!(flows[0].1.flags & flow_flags::START_ANNOUNCED, 0);
    let events = p.events();
    assert_eq!(
        events.len(),
        1,
        "one start; a retransmit writes nothing to the ring: {events:?}"
    );
    assert!(matches!(events[0], Event::FlowStart(_, v) if v.packets == [1, 0]));
    assert_eq!(p.counter(Counter::ParsedTcp), 3);
}

/// A SYN on the key of a flow that closed opens a flow of its own (the client's port used
/// again within the close linger): the closed flow's last snapshot goes to the ring for its
/// record, and the new connection's entry and start replace it. Before, the second
/// connection was counted into the first, and the two were one record.
#[test]
fn a_syn_on_a_closed_flows_ports_opens_a_new_flow() {
    let mut p = Prog::load(1 << 16);
    let (c, s) = (v4(10, 7, 1, 1), v4(10, 7, 1, 2));
    let syn = Spec::tcp4(c, 40002, s, 80, tcp::SYN).build();
    let ack = Spec::tcp4(c, 40002, s, 80, tcp::ACK).payload(10).build();
    let fin = Spec::tcp4(c, 40002, s, 80, tcp::FIN | tcp::ACK).build();
    let rst = Spec::tcp4(c, 40002, s, 80, tcp::RST).build();
    for f in [&syn, &ack, &fin] {
        assert_eq!(p.run(f), XDP_PASS);
    }
    let first = p.flows()[0].1;
    assert_eq!(first.packets, [3, 0]);
    assert_eq!(p.run(&syn), XDP_PASS, "the same ports again");
    let flows = p.flows();
    assert_eq!(flows.len(), 1, "{flows:?}");
    let (k, v) = flows[0];
    assert_eq!(v.packets, [1, 0], "the new connection alone: {v:?}");
    assert_eq!(v.bytes, [syn.len() as u64, 0]);
    assert_eq!(v.flags & (flow_flags::FIN_SEEN | flow_flags::RST_SEEN), 0);
    assert_ne!(v.flags & flow_flags::START_ANNOUNCED, 0);
    assert!(v.first_seen_ns > first.first_seen_ns);
    let events = p.events();
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(matches!(events[0], Event::FlowStart(..)));
    assert!(matches!(events[1], Event::FlowEnd(..)));
    assert!(
        matches!(events[2], Event::FlowClosed(key, last) if key == k && last == first),
        "the closed flow's last snapshot: {:?}",
        events[2]
    );
    assert!(
        matches!(events[3], Event::FlowStart(key, new) if key == k && new.packets == [1, 0] && new.first_seen_ns == v.first_seen_ns),
        "{:?}",
        events[3]
    );
    // A retransmit of the new SYN is counted into it; a RST then ends it, and the next SYN
    // opens a third flow.
    assert_eq!(p.run(&syn), XDP_PASS);
    assert_eq!(p.flows()[0].1.packets, [2, 0]);
    assert_eq!(p.events().len(), 0, "a retransmit writes nothing");
    assert_eq!(p.run(&rst), XDP_PASS);
    assert_eq!(p.run(&syn), XDP_PASS);
    let events = p.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::FlowClosed(_, last) if last.packets == [3, 0])),
        "{events:?}"
    );
    assert_eq!(p.flows()[0].1.packets, [1, 0]);
    // A SYN with another sequence number on a flow a SYN opened is a new connection attempt
    // (the last one refused by a RST another interface received): a flow of its own.
    let again = Spec::tcp4(c, 40002, s, 80, tcp::SYN).seq(777).build();
    assert_eq!(p.run(&again), XDP_PASS);
    assert_eq!(p.flows()[0].1.packets, [1, 0], "a new attempt");
    assert!(
        (p.events().iter())
            .any(|e| matches!(e, Event::FlowClosed(_, last) if last.packets == [1, 0])),
        "the last attempt's snapshot"
    );
}

/// On an interface that receives the server's side only (a gateway's `wan`), a flow begins
/// with the server's SYN-ACK. Another SYN-ACK on its key once it closed is the server
/// accepting a new connection on reused ports: a flow of its own, as a SYN is on the
/// client's side. A SYN-ACK retransmitted on an open flow, or one answering in the reverse
/// orientation of a flow a SYN opened (`lo`, a mirror port), counts into its flow.
#[test]
fn a_syn_ack_on_a_closed_flows_ports_opens_a_new_flow() {
    let mut p = Prog::load(1 << 16);
    let (c, s) = (v4(10, 7, 2, 1), v4(10, 7, 2, 2));
    let syn_ack = |seq| {
        Spec::tcp4(s, 80, c, 40002, tcp::SYN | tcp::ACK)
            .seq(seq)
            .build()
    };
    let data = Spec::tcp4(s, 80, c, 40002, tcp::ACK).payload(100).build();
    let fin = Spec::tcp4(s, 80, c, 40002, tcp::FIN | tcp::ACK).build();
    let first = syn_ack(1000);
    for f in [&first, &first, &data, &fin] {
        assert_eq!(p.run(f), XDP_PASS);
    }
    let closed = p.flows()[0].1;
    assert_eq!(
        closed.packets,
        [4, 0],
        "a retransmitted SYN-ACK counts into its flow"
    );
    let events = p.events();
    assert!(
        matches!(events[..], [Event::FlowStart(..), Event::FlowEnd(..)]),
        "one start, then the FIN's close: {events:?}"
    );
    let second = syn_ack(5000);
    assert_eq!(
        p.run(&second),
        XDP_PASS,
        "the server accepts on the same ports again"
    );
    let flows = p.flows();
    assert_eq!(flows.len(), 1, "{flows:?}");
    let (k, v) = flows[0];
    assert_eq!(v.packets, [1, 0], "the new connection alone: {v:?}");
    assert_eq!(v.bytes, [second.len() as u64, 0]);
    assert_eq!(v.flags & (flow_flags::FIN_SEEN | flow_flags::RST_SEEN), 0);
    let events = p.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(events[0], Event::FlowClosed(key, last) if key == k && last == closed),
        "the closed flow's last snapshot: {:?}",
        events[0]
    );
    assert!(
        matches!(events[1], Event::FlowStart(key, new) if key == k && new.packets == [1, 0]),
        "{:?}",
        events[1]
    );
    // A connection its client aborted (the RST went out another interface: nothing closed
    // here), then the same ports again: the new SYN-ACK's other sequence number is a new
    // connection; the old one's number again is a retransmission.
    let abort = |seq| {
        Spec::tcp4(s, 80, c, 40004, tcp::SYN | tcp::ACK)
            .seq(seq)
            .build()
    };
    let more = Spec::tcp4(s, 80, c, 40004, tcp::ACK).payload(1000).build();
    for f in [&abort(7000), &more, &more, &abort(7000)] {
        assert_eq!(p.run(f), XDP_PASS);
    }
    let of = |p: &Prog, port: u16| {
        (p.flows().into_iter())
            .find(|(k, _)| k.port_b == port.to_be())
            .map(|(_, v)| v.packets)
    };
    assert_eq!(
        of(&p, 40004),
        Some([4, 0]),
        "one connection, retransmission in"
    );
    p.events();
    assert_eq!(p.run(&abort(9000)), XDP_PASS);
    assert_eq!(of(&p, 40004), Some([1, 0]), "the new connection alone");
    let events = p.events();
    assert!(
        matches!(events[..], [Event::FlowClosed(_, last), Event::FlowStart(..)] if last.packets == [4, 0]),
        "the aborted one's last snapshot, then the new start: {events:?}"
    );
    // A SYN-ACK answering a SYN seen on the same interface counts into the SYN's flow.
    let (c2, port) = (v4(10, 7, 2, 3), 40003);
    let syn = Spec::tcp4(c2, port, s, 80, tcp::SYN).build();
    let answer = Spec::tcp4(s, 80, c2, port, tcp::SYN | tcp::ACK).build();
    assert_eq!(p.run(&syn), XDP_PASS);
    assert_eq!(p.run(&answer), XDP_PASS);
    let both = p.flows();
    let v = (both.iter())
        .find(|(k, _)| k.port_a == port.to_be() || k.port_b == port.to_be())
        .map(|(_, v)| v.packets);
    assert_eq!(v, Some([1, 1]), "{both:?}");
}

#[test]
fn the_agent_is_woken_when_the_backlog_crosses_a_quarter_of_the_ring_not_per_event() {
    use std::os::fd::AsRawFd;
    use std::sync::mpsc;
    use std::time::Duration;

    // 64 KiB ring: the loader sets the threshold to 16 KiB; `below` events of
    // RING_RECORD_BYTES (event and header) stay below it and the next one crosses it.
    let below = (16384 - 1) / agent_common::RING_RECORD_BYTES as u16;
    let mut p = Prog::load(1 << 16);
    let fd = RingBuf::try_from(&mut p.loaded.events)
        .expect("ring buffer")
        .as_raw_fd();
    let (tx, rx) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        // SAFETY: gettid(2) has no preconditions.
        let _ = tid_tx.send(unsafe { libc::gettid() });
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // No timeout: a timeout that ran out on a slow machine would read as a wake-up (0)
        // before the crossing. The test's receives bound its waits; the crossing ends this
        // thread, and a failed test leaves it asleep until the test binary exits.
        // SAFETY: one valid pollfd; the ring's fd outlives this thread on the passing path
        // (joined below), and a sleeping ppoll holds its own reference to the ring's file.
        let n = unsafe { libc::ppoll(&mut pfd, 1, std::ptr::null(), std::ptr::null()) };
        let _ = tx.send(n);
    });
    let tid = tid_rx.recv().expect("the waiter's thread id");
    // The waiter must be asleep on the empty ring before the events come: a thread blocked in
    // a system call shows its number in /proc (a running one shows `running`).
    let syscall = format!("/proc/self/task/{tid}/syscall");
    wait_until(
        Duration::from_secs(5),
        "the waiter sleeps in ppoll(2) on the empty ring",
        || {
            std::fs::read_to_string(&syscall)
                .is_ok_and(|s| s.split_whitespace().next() == Some(&libc::SYS_ppoll.to_string()))
        },
    );
    let flow = |i: u16| Spec::udp4(v4(10, 8, 0, 1), 20000 + i, v4(10, 8, 0, 2), 53).build();
    for i in 0..below {
        p.run(&flow(i));
    }
    // A wake-up comes from the kernel's irq_work shortly after the event that causes it, not
    // during the run: a quiet half second is what shows that none came.
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "events below the threshold must not wake the agent"
    );
    p.run(&flow(below));
    let woken = rx.recv_timeout(Duration::from_secs(5));
    assert_eq!(
        woken,
        Ok(1),
        "the event that crosses the threshold wakes the agent"
    );
    waiter.join().expect("waiter thread");
    assert_eq!(p.events().len(), usize::from(below) + 1);
}
