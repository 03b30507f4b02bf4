//! List enforcement in the kernel by address and port, through BPF_PROG_TEST_RUN with real
//! list files: the verdict order (allow beats block; exact, prefix, port), IPv4 and IPv6,
//! every IPv4 rule found through the cover as the lists change, the per-flow verdict cache
//! following a reload, drop events with their rule, a flow's entry copied while its drops
//! are counted, the wan side (also past the role array), flows made from a blocked address,
//! packets the parser cannot read whole, and an edit too large for the tables. DNS names are
//! in `verdict_dns.rs`. Needs root.

mod common;
mod verdict_common;

use agent_common::Counter;
use common::{tcp, v4, v6, Addrs, Spec, L4};
use verdict_common::{
    copies_while_it_counts, first_fragment, first_fragment_v6, to, Lab, DROP, LO, PASS,
};

#[test]
fn allow_beats_block_and_exact_prefix_and_ports_drop() {
    let mut lab = Lab::new(
        "order",
        "# block\n203.0.113.9\n203.0.113.0/24\n192.0.2.0/25\nport tcp 25\n2001:db8:bad::/48\n2001:db8::66\n",
        "203.0.113.5\n",
    );
    assert_eq!(lab.run(&to(v4(203, 0, 113, 9), 80)), DROP, "exact /32");
    assert_eq!(
        lab.run(&to(v4(203, 0, 113, 77), 80)),
        DROP,
        "inside the /24"
    );
    assert_eq!(
        lab.run(&to(v4(203, 0, 113, 5), 80)),
        PASS,
        "allowlisted inside a blocked /24"
    );
    assert_eq!(
        lab.run(&to(v4(192, 0, 2, 127), 80)),
        DROP,
        "last address of the /25"
    );
    assert_eq!(
        lab.run(&to(v4(192, 0, 2, 128), 80)),
        PASS,
        "first address past the /25"
    );
    assert_eq!(
        lab.run(&to(v4(198, 18, 0, 1), 25)),
        DROP,
        "port tcp 25 anywhere"
    );
    assert_eq!(lab.run(&to(v4(198, 18, 0, 1), 587)), PASS, "another port");
    let udp25 = Spec::udp4(v4(198, 51, 100, 2), 40000, v4(198, 18, 0, 1), 25).build();
    assert_eq!(lab.run(&udp25), PASS, "the port rule is TCP only");
    let v6_to = |dst: [u8; 16]| {
        Spec::new(
            Addrs::V6(v6(2), dst),
            L4::Tcp {
                sport: 1,
                dport: 443,
                flags: tcp::SYN,
            },
        )
        .build()
    };
    let mut bad = v6(1);
    bad[4..6].copy_from_slice(&[0x0b, 0xad]);
    assert_eq!(lab.run(&v6_to(bad)), DROP, "inside 2001:db8:bad::/48");
    assert_eq!(lab.run(&v6_to(v6(0x66))), DROP, "exact /128");
    assert_eq!(lab.run(&v6_to(v6(0x67))), PASS, "next to it");
    assert!(lab.counter(Counter::DroppedByList) >= 6);
}

#[test]
fn the_first_drop_of_a_flow_is_announced_with_its_rule_and_later_drops_are_counted() {
    let mut lab = Lab::new("events", "# comment\n\n203.0.113.9\n", "");
    let f = to(v4(203, 0, 113, 9), 80);
    for _ in 0..3 {
        assert_eq!(lab.run(&f), DROP);
    }
    let drops = lab.drops();
    assert_eq!(drops.len(), 1, "one drop event per flow: {drops:?}");
    assert_eq!(
        lab.rule_line(drops[0].1),
        3,
        "the rule is line 3 of block.list"
    );
    let t = lab.loaded.flow_table();
    let v = t
        .get(&drops[0].0)
        .expect("lookup")
        .expect("the flow exists");
    assert_eq!((v.packets[0], v.drops), (3, 3));
    assert_eq!(lab.loaded.lists.hits(drops[0].1), 3, "per-rule hit counter");
}

/// The sweeper reads a blocked flow's entry while the program counts its packets on another
/// CPU: no copy may hold a packet without its drop (the sweeper would record a blocked packet
/// as passed). With the packet counted before its drop, some 16% of three million copies
/// did; a drop copied without its packet is allowed (the sweeper carries it).
#[test]
fn a_copy_of_a_blocked_flow_made_while_it_counts_never_holds_a_packet_without_its_drop() {
    let mut lab = Lab::new("torn", "203.0.113.9\n", "");
    let ack = Spec::tcp4(v4(198, 51, 100, 2), 40001, v4(203, 0, 113, 9), 80, tcp::ACK).build();
    copies_while_it_counts(&mut lab, &ack, 1_000_000);
}

#[test]
fn a_list_change_reaches_established_flows_at_their_next_packet() {
    let mut lab = Lab::new("cache", "192.0.2.1\n", "");
    let f = to(v4(203, 0, 113, 50), 443);
    assert_eq!(lab.run(&f), PASS);
    assert_eq!(lab.run(&f), PASS, "established, cached pass");
    lab.rewrite("block.list", "192.0.2.1\n203.0.113.50\n");
    assert_eq!(
        lab.run(&f),
        DROP,
        "the cached verdict is recomputed for the new generation"
    );
    lab.rewrite("block.list", "192.0.2.1\n");
    assert_eq!(lab.run(&f), PASS, "and unblocked again");
    lab.rewrite("allow.list", "203.0.113.50\n");
    lab.rewrite("block.list", "203.0.113.0/24\n");
    assert_eq!(lab.run(&f), PASS, "allowlisted");
    // The agent marks an empty allowlist for the program to skip, and unmarks it before it
    // fills it again: both ways the verdict follows the lists.
    lab.rewrite("allow.list", "# emptied\n");
    assert_eq!(lab.run(&f), DROP, "the allowlist emptied, the /24 blocks");
    lab.rewrite("allow.list", "203.0.113.50\n");
    assert_eq!(lab.run(&f), PASS, "allowlisted again");
}

/// The program looks an IPv4 address up only where its /24 is in the cover the agent writes
/// (`COVER4`): every rule must be found through it, before and after each edit, for prefixes
/// shorter and longer than /24, exact addresses, and allow rules.
#[test]
fn every_ipv4_rule_is_found_through_the_cover_as_the_lists_change() {
    let mut lab = Lab::new("cover", "10.0.0.0/8\n192.0.2.128/25\n198.51.100.77\n", "");
    let mut port = 1000u16;
    let mut check = |lab: &mut Lab, cases: &[([u8; 4], u32)], when: &str| {
        for &(dst, want) in cases {
            // A new flow each time: its own source port.
            port += 1;
            let f = Spec::tcp4(v4(100, 64, 0, 1), port, dst, 443, tcp::SYN).build();
            let got = lab.run(&f);
            assert_eq!(got, want, "{when}: {dst:?} got {got}, want {want}");
        }
    };
    check(
        &mut lab,
        &[
            (v4(10, 0, 0, 1), DROP),
            (v4(10, 255, 255, 254), DROP),
            (v4(9, 255, 255, 255), PASS),
            (v4(11, 0, 0, 0), PASS),
            (v4(192, 0, 2, 200), DROP),
            (v4(192, 0, 2, 5), PASS),
            (v4(198, 51, 100, 77), DROP),
            (v4(198, 51, 100, 78), PASS),
            (v4(203, 0, 113, 9), PASS),
        ],
        "loaded",
    );
    lab.rewrite("block.list", "192.0.2.128/25\n203.0.113.0/24\n");
    check(
        &mut lab,
        &[
            (v4(10, 0, 0, 1), PASS),
            (v4(198, 51, 100, 77), PASS),
            (v4(192, 0, 2, 200), DROP),
            (v4(203, 0, 113, 9), DROP),
        ],
        "the /8 and the address removed, a /24 added",
    );
    lab.rewrite("allow.list", "203.0.113.9\n");
    check(
        &mut lab,
        &[(v4(203, 0, 113, 9), PASS), (v4(203, 0, 113, 10), DROP)],
        "an address allowed inside a blocked /24",
    );
    lab.rewrite("block.list", "0.0.0.0/0\n");
    check(
        &mut lab,
        &[
            (v4(8, 8, 8, 8), DROP),
            (v4(255, 255, 255, 254), DROP),
            (v4(203, 0, 113, 9), PASS),
        ],
        "everything blocked but the allowed address",
    );
    lab.rewrite("block.list", "# emptied\n");
    lab.rewrite("allow.list", "# emptied\n");
    check(
        &mut lab,
        &[(v4(8, 8, 8, 8), PASS), (v4(10, 0, 0, 1), PASS)],
        "both lists emptied",
    );
}

#[test]
fn on_a_wan_interface_rules_match_the_source() {
    let mut lab = Lab::new("wan", "203.0.113.9\n", "");
    lab.loaded.lists.set_wan(LO).expect("set wan");
    let inbound = from_blocked_source(40000);
    assert_eq!(lab.run(&inbound), DROP, "from a blocked source");
    assert_eq!(
        lab.run(&to(v4(203, 0, 113, 9), 80)),
        PASS,
        "to it: the source is the local side"
    );
    lab.loaded.lists.set_roles(&[]).expect("set roles");
    let later = from_blocked_source(40009);
    assert_eq!(lab.run(&later), PASS, "lan again: the role removed");
}

/// A flow is made by its first packet. A datagram sent first *from* a blocked address
/// (spoofed by a client, say) makes a flow whose remote side is the client; the client's
/// packets to the blocked address are that flow's response direction, and their own remote
/// side must be judged too, or they would all pass.
#[test]
fn a_flow_made_by_a_packet_from_a_blocked_address_carries_nothing_to_it() {
    let mut lab = Lab::new("other-end", "203.0.113.9\n", "");
    let (client, blocked) = (v4(198, 51, 100, 2), v4(203, 0, 113, 9));
    let spoofed = Spec::udp4(blocked, 443, client, 5000).build();
    let out = Spec::udp4(client, 5000, blocked, 443).payload(20).build();
    assert_eq!(lab.run(&spoofed), PASS, "its remote side is the client");
    assert_eq!(lab.run(&out), DROP, "to the blocked address, the other way");
    assert_eq!(lab.run(&out), DROP, "and again, from the cached verdict");
    let drops = lab.drops();
    assert_eq!(drops.len(), 1, "one drop event: {drops:?}");
    assert_eq!(lab.rule_line(drops[0].1), 1, "with the rule that matched");
    let t = lab.loaded.flow_table();
    let v = t.get(&drops[0].0).expect("lookup").expect("one flow");
    assert_eq!((v.packets, v.drops), ([1, 2], 2), "counted on the one flow");

    // After a list change each direction's remote side is judged again at its next packet.
    lab.rewrite("block.list", "192.0.2.1\n");
    let other = Spec::udp4(client, 5001, blocked, 443).build();
    assert_eq!(
        lab.run(&Spec::udp4(blocked, 443, client, 5001).build()),
        PASS
    );
    assert_eq!(lab.run(&other), PASS, "unblocked");
    lab.rewrite("block.list", "192.0.2.1\n203.0.113.9\n");
    assert_eq!(
        lab.run(&other),
        DROP,
        "blocked again by the reload, at once"
    );

    // An allow rule speaks for its own side only: a flow made from an allowlisted address
    // still drops the other way's packets from a blocked one, and then the whole flow.
    let mut lab = Lab::new("other-end-allow", "203.0.113.0/24\n", "198.51.100.2\n");
    lab.loaded.lists.set_wan(LO).expect("set wan");
    let inbound = Spec::udp4(client, 7000, blocked, 7001).build();
    let back = Spec::udp4(blocked, 7001, client, 7000).build();
    assert_eq!(lab.run(&inbound), PASS, "wan: from an allowlisted source");
    assert_eq!(lab.run(&back), DROP, "the other way: from a blocked source");
    assert_eq!(lab.run(&inbound), DROP, "the whole flow after that");
}

/// What the parser cannot read whole, but the host may still deliver, is judged by what it
/// can read: a first fragment too short for its TCP header (RFC 1858's tiny fragment) by its
/// address and its ports, which it holds (before, a blocked port passed: its later fragment
/// completed a SYN to port 22 the port rule never saw), and IPv6 extension chains longer
/// than the program walks by their addresses.
#[test]
fn packets_the_parser_cannot_read_whole_are_still_judged_by_address_and_ports() {
    let mut lab = Lab::new(
        "unparsed",
        "203.0.113.9\n2001:db8::66\nport tcp 22\nport udp 5060\n",
        "",
    );
    let to_port = Spec::tcp4(v4(198, 51, 100, 2), 40001, v4(198, 18, 0, 7), 22, tcp::SYN);
    assert_eq!(
        lab.run(&first_fragment(&to_port, 8)),
        DROP,
        "a tiny first fragment to a blocked port"
    );
    let allowed = Spec::tcp4(
        v4(198, 51, 100, 2),
        40002,
        v4(198, 18, 0, 7),
        2222,
        tcp::SYN,
    );
    assert_eq!(
        lab.run(&first_fragment(&allowed, 8)),
        PASS,
        "one to another port"
    );
    let mut tiny = Spec::tcp4(v4(198, 51, 100, 2), 40000, v4(203, 0, 113, 9), 22, tcp::SYN);
    tiny.ipv4_frag = (0, true);
    let mut frame = tiny.build();
    frame.truncate(14 + 20 + 8); // 8 bytes of TCP: ports, no flags
    frame[16..18].copy_from_slice(&28u16.to_be_bytes());
    assert_eq!(
        lab.run(&frame),
        DROP,
        "a tiny first fragment to a blocked address"
    );
    let mut chain = Spec::new(
        Addrs::V6(v6(2), v6(0x66)),
        L4::Udp {
            sport: 5000,
            dport: 443,
        },
    );
    chain.ipv6_ext = vec![(60, 8); agent_common::MAX_IPV6_EXT_HEADERS + 1];
    assert_eq!(
        lab.run(&chain.build()),
        DROP,
        "a chain past the walk's bound"
    );
    let mut long = chain.clone();
    long.ipv6_ext = vec![(60, 1024)];
    assert_eq!(
        lab.run(&long.build()),
        DROP,
        "a header reaching past the walk"
    );
    assert_eq!(lab.counter(Counter::SkipTruncatedL4), 3);
    assert_eq!(lab.counter(Counter::SkipIpv6ExtChainTooLong), 1);
    assert_eq!(lab.counter(Counter::SkipTruncatedIpv6Ext), 1);
    // To an unblocked address, its ports unread: dropped while a port (or domain) rule is
    // loaded, since it could carry a blocked port (a SYN to port 22 behind seven headers
    // reached its server); passed where no such rule is, or an allow rule passes it.
    chain.addrs = Addrs::V6(v6(2), v6(0x67));
    chain.l4 = L4::Tcp {
        sport: 5000,
        dport: 22,
        flags: tcp::SYN,
    };
    assert_eq!(
        lab.run(&chain.build()),
        DROP,
        "to another address, port rules loaded"
    );
    let mut open = Lab::new(
        "unparsed-open",
        "2001:db8::66
",
        "",
    );
    assert_eq!(open.run(&chain.build()), PASS, "no port or domain rule");
    let mut allowed = Lab::new(
        "unparsed-allow",
        "port tcp 22
",
        "2001:db8::67
",
    );
    assert_eq!(allowed.run(&chain.build()), PASS, "an allow rule passes it");

    // Whole packets whose transport header is cut short within the IP packet: a gateway
    // forwards them on their addresses, so they are judged by them (they passed unjudged).
    let mut four = Spec::tcp4(v4(198, 51, 100, 2), 40003, v4(203, 0, 113, 9), 80, tcp::SYN).build();
    four.truncate(14 + 20 + 4); // the ports alone
    four[16..18].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(lab.run(&four), DROP, "IPv4 TCP with 4 bytes of header");
    let mut udp = Spec::udp4(v4(198, 51, 100, 2), 5000, v4(203, 0, 113, 9), 53).build();
    udp.truncate(14 + 20 + 3);
    udp[16..18].copy_from_slice(&23u16.to_be_bytes());
    assert_eq!(lab.run(&udp), DROP, "IPv4 UDP with 3 bytes of header");
    let v6_tcp = Spec::new(
        Addrs::V6(v6(2), v6(0x66)),
        L4::Tcp {
            sport: 5000,
            dport: 80,
            flags: tcp::SYN,
        },
    );
    let mut empty = v6_tcp.build();
    empty.truncate(14 + 40);
    empty[18..20].copy_from_slice(&0u16.to_be_bytes()); // payload length 0
    assert_eq!(lab.run(&empty), DROP, "IPv6, next header TCP, no payload");
    let mut dstopts = v6_tcp.clone();
    dstopts.ipv6_ext = vec![(60, 8)];
    let mut cut = dstopts.build();
    cut.truncate(14 + 40 + 1); // inside the destination-options header
    cut[18..20].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(lab.run(&cut), DROP, "IPv6 cut inside an extension header");
    // Its first two bytes there, its length saying 48: the walk stepped past the payload and
    // read the header's next header (TCP) as the packet's protocol, a TCP flow with ports 0
    // that passed the port rule.
    let mut long = dstopts.build();
    long.truncate(14 + 40 + 2);
    long[18..20].copy_from_slice(&2u16.to_be_bytes());
    long[14 + 40 + 1] = 5;
    assert_eq!(
        lab.run(&long),
        DROP,
        "IPv6 extension header longer than its payload"
    );
    // The port rule still judges a TCP header cut after its ports.
    let mut to_22 = Spec::tcp4(v4(198, 51, 100, 2), 40004, v4(198, 18, 0, 7), 22, tcp::SYN).build();
    to_22.truncate(14 + 20 + 4);
    to_22[16..18].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(lab.run(&to_22), DROP, "a cut TCP header to a blocked port");
    let mut to_23 = Spec::tcp4(v4(198, 51, 100, 2), 40005, v4(198, 18, 0, 7), 23, tcp::SYN).build();
    to_23.truncate(14 + 20 + 4);
    to_23[16..18].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(lab.run(&to_23), PASS, "and passes one to another port");
    // A UDP header cut after its ports (6 of its 8 bytes) likewise: a router forwards it.
    for (dport, want) in [(5060, DROP), (5061, PASS)] {
        let mut cut = Spec::udp4(v4(198, 51, 100, 2), 40003, v4(198, 18, 0, 7), dport).build();
        cut.truncate(14 + 20 + 6);
        cut[16..18].copy_from_slice(&26u16.to_be_bytes());
        assert_eq!(lab.run(&cut), want, "a cut UDP header to port {dport}");
    }
    assert_eq!(lab.counter(Counter::SkipTruncatedL4), 9);
    assert_eq!(lab.counter(Counter::SkipTruncatedIpv6Ext), 4);
}

/// Two IPv6 packets a host delivers whole though the walk cannot reach their transport
/// header: one behind an extension header ending past the walk's reach, and a jumbogram
/// (payload length 0 with a Hop-by-Hop header: the kernel takes the packet's own length).
/// Both used to pass a blocked port as a TCP flow with ports 0 (and a DNS query with its
/// name unread); now they are flows of an extension header, dropped while a port or domain
/// rule is loaded, and recorded: the drop has a flow and a first-drop event.
#[test]
fn an_ipv6_transport_header_out_of_the_walks_reach_cannot_pass_a_port_rule() {
    let mut lab = Lab::new("v6-reach", "port tcp 22\n", "");
    let syn = Spec::new(
        Addrs::V6(v6(2), v6(0x67)),
        L4::Tcp {
            sport: 5001,
            dport: 22,
            flags: tcp::SYN,
        },
    );
    let mut far = syn.clone();
    far.ipv6_ext = vec![(60, 1032)];
    assert_eq!(lab.run(&far.build()), DROP, "behind 1,032 bytes of options");
    let mut jumbo = syn.clone();
    jumbo.ipv6_ext = vec![(0, 8)];
    jumbo.l4 = L4::Tcp {
        sport: 5002,
        dport: 22,
        flags: tcp::SYN,
    };
    let mut frame = jumbo.build();
    frame[18..20].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(lab.run(&frame), DROP, "a jumbogram");
    let mut to_80 = syn.clone();
    to_80.ipv6_ext = vec![(60, 8)];
    to_80.l4 = L4::Tcp {
        sport: 5003,
        dport: 80,
        flags: tcp::SYN,
    };
    assert_eq!(lab.run(&to_80.build()), PASS, "a short chain is walked");
    assert_eq!(lab.counter(Counter::SkipTruncatedIpv6Ext), 2);
    assert_eq!(lab.counter(Counter::FloodUntracked), 0);
    let drops: Vec<u8> = lab.drops().iter().map(|d| d.0.proto).collect();
    assert_eq!(drops, [60, 0], "each drop a flow of its extension header");
}

/// An IPv6 first fragment whose header chain ends where the fragment does: its transport
/// header, ports and all, comes in the next fragment, which no port or domain rule can
/// judge. A host that reassembles it (Linux discards it, RFC 7112; others need not) got a
/// SYN to a blocked port. Dropped while a port or domain rule is loaded, as a header past
/// the walk is; one holding its ports is judged by them.
#[test]
fn an_ipv6_first_fragment_without_its_ports_cannot_pass_a_port_rule() {
    let syn = |dport| {
        Spec::new(
            Addrs::V6(v6(2), v6(0x68)),
            L4::Tcp {
                sport: 5010,
                dport,
                flags: tcp::SYN,
            },
        )
    };
    let headers_only = [(44, 8), (60, 8)];
    let mut lab = Lab::new("v6-frag-ports", "port tcp 22\n", "");
    assert_eq!(
        lab.run(&first_fragment_v6(&syn(22), &headers_only, 0)),
        DROP,
        "the chain ends with the fragment"
    );
    assert_eq!(
        lab.run(&first_fragment_v6(&syn(22), &[(44, 8)], 0)),
        DROP,
        "nothing past the Fragment header"
    );
    assert_eq!(
        lab.run(&first_fragment_v6(&syn(22), &headers_only, 8)),
        DROP,
        "its ports there, the port blocked"
    );
    assert_eq!(
        lab.run(&first_fragment_v6(&syn(80), &headers_only, 8)),
        PASS,
        "its ports there, another port"
    );
    assert_eq!(lab.counter(Counter::SkipTruncatedIpv6Ext), 2);
    let drops: Vec<u8> = lab.drops().iter().map(|d| d.0.proto).collect();
    // The first two are one flow (the addresses' with ports 0), of an extension header.
    assert_eq!(drops, [60, 6], "first drops");
    // With no port or domain rule, nothing could be judged by its ports: it passes.
    let mut open = Lab::new("v6-frag-open", "203.0.113.9\n", "");
    assert_eq!(
        open.run(&first_fragment_v6(&syn(22), &headers_only, 0)),
        PASS,
        "no port rule loaded"
    );
}

/// An ACK from 203.0.113.9:443 to a client's port `port`: a new flow each port.
fn from_blocked_source(port: u16) -> Vec<u8> {
    Spec::tcp4(v4(203, 0, 113, 9), 443, v4(198, 51, 100, 2), port, tcp::ACK).build()
}

/// An interface past the role array's end (a host that made thousands of devices) has its
/// role in the hash beside it: `lo` made one by an array of one slot.
#[test]
fn past_the_role_array_a_wan_interface_still_matches_the_source() {
    let sizes = [(agent_common::names::IFACE_ROLES, LO)];
    let mut lab = Lab::sized("wan-far", "203.0.113.9\n", "", &sizes);
    let inbound = from_blocked_source(40001);
    assert_eq!(lab.run(&inbound), PASS, "lan: the source is the local side");
    lab.loaded.lists.set_roles(&[LO]).expect("set roles");
    let again = from_blocked_source(40002);
    assert_eq!(lab.run(&again), DROP, "wan: from a blocked source");
    lab.loaded.lists.set_roles(&[]).expect("set roles");
    let third = from_blocked_source(40003);
    assert_eq!(lab.run(&third), PASS, "lan again: the role removed");
}

#[test]
fn a_reload_too_large_for_the_tables_changes_nothing_and_later_edits_still_apply() {
    let mut lab = Lab::new("toolarge", "203.0.113.7\n", "");
    let block = lab.dir.join("block.list");
    // 2,001 addresses (and the one they replace, until it is removed): over the 1,024
    // entries the tables were created with.
    let mut big = String::from("203.0.113.8\n");
    for i in 0..2000u32 {
        let [_, _, c, d] = i.to_be_bytes();
        big.push_str(&format!("10.9.{c}.{d}\n"));
    }
    std::fs::write(&block, &big).expect("write");
    let diags = lab
        .lists
        .reload(&block)
        .expect_err("the list set refuses what the tables cannot hold");
    let msg = diags[0].to_string();
    assert!(
        diags.len() == 1
            && msg.starts_with(&format!("{}: not applied", block.display()))
            && msg.contains("2002 entries in map BLOCK_V4, which holds 1024")
            && msg.contains("last good version"),
        "{diags:?}"
    );
    assert_eq!(
        lab.run(&to(v4(203, 0, 113, 7), 80)),
        DROP,
        "old list in force"
    );
    assert_eq!(
        lab.run(&to(v4(10, 9, 0, 1), 80)),
        PASS,
        "nothing of the big file"
    );
    assert_eq!(lab.run(&to(v4(203, 0, 113, 8), 80)), PASS);

    // A later edit builds on the last good version and applies.
    lab.rewrite("block.list", "203.0.113.7\n203.0.113.9\n");
    assert_eq!(
        lab.run(&to(v4(203, 0, 113, 9), 81)),
        DROP,
        "the edit applies"
    );
    assert_eq!(lab.run(&to(v4(203, 0, 113, 7), 81)), DROP);
    let drops = lab.drops();
    let lines: Vec<u32> = drops.iter().map(|d| lab.rule_line(d.1)).collect();
    assert!(
        lines.contains(&1) && lines.contains(&2),
        "rules keep their lines: {lines:?}"
    );
}
