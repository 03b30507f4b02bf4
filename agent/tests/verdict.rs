//! List enforcement in the kernel, through BPF_PROG_TEST_RUN with real list files: the
//! verdict order (allow beats block; exact, prefix, port), IPv4 and IPv6, DNS names under the
//! program's random key (exact, subdomain, look-alike, case, trailing dot, label lengths
//! around the hash's word size, the 16-label cap, compressed and malformed names), keys that
//! differ from load to load, the per-flow verdict cache following a reload, drop events with
//! their rule, the wan side, and an edit too large for the tables. Needs root.

mod common;

use std::path::PathBuf;

use agent_common::payload::DNS_UDP_MESSAGES;
use agent_common::{Counter, FlowKey};
use aya::maps::RingBuf;
use aya::programs::{TestRun, TestRunOptions};
use common::{tcp, v4, v6, Addrs, Spec, L4};
use xdp_audit::blocklist::{Capacity, CompiledLists, ListKind, ListSet};
use xdp_audit::loader::{LoadOptions, Loaded};
use xdp_audit::reader::{decode, Event};

const PASS: u32 = 2;
const DROP: u32 = 1;
/// BPF_PROG_TEST_RUN runs the program as if on `lo`.
const LO: u32 = 1;

struct Lab {
    dir: PathBuf,
    lists: ListSet,
    loaded: Loaded,
}

impl Lab {
    /// The program loaded with a key of its own (the loader draws it), read back from its map
    /// for the list set, as an agent adopting a running program would; tables of 1,024
    /// entries.
    fn new(tag: &str, block: &str, allow: &str) -> Self {
        Self::sized(tag, block, allow, &[])
    }

    /// [`Lab::new`] with some maps' sizes set (`(name, entries)`).
    fn sized(tag: &str, block: &str, allow: &str, sizes: &[(&'static str, u32)]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("xdp-audit-verdict-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("block.list"), block).expect("write");
        std::fs::write(dir.join("allow.list"), allow).expect("write");
        let capacity = Capacity::for_lists(&CompiledLists::default(), 1024);
        let mut loaded = Loaded::load(LoadOptions {
            flow_table_size: 1024,
            ringbuf_bytes: 1 << 16,
            list_capacity: [capacity.map_sizes(), sizes.to_vec()].concat(),
            domain_key: None,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("load the XDP program (root?): {e}"));
        let key = loaded.lists.domain_key().expect("read the program's key");
        let mut lists = ListSet::new(
            [
                (dir.join("block.list"), ListKind::Block),
                (dir.join("allow.list"), ListKind::Allow),
            ],
            key,
        );
        lists.set_capacity(capacity);
        let (delta, problems) = lists.reload_all();
        assert!(problems.is_empty(), "{problems:?}");
        loaded.lists.apply(&delta).expect("apply lists");
        Self { dir, lists, loaded }
    }

    fn run(&mut self, frame: &[u8]) -> u32 {
        let prog = self.loaded.program_mut().expect("program");
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN")
        .return_value
    }

    fn rewrite(&mut self, file: &str, text: &str) {
        let path = self.dir.join(file);
        std::fs::write(&path, text).expect("write");
        let delta = self.lists.reload(&path).expect("the edit is valid");
        self.loaded.lists.apply(&delta).expect("apply");
    }

    fn counter(&self, c: Counter) -> u64 {
        xdp_audit::stats::read(&self.loaded.stats)
            .expect("stats")
            .into_iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, n)| n)
    }

    fn drops(&mut self) -> Vec<(FlowKey, u32)> {
        let mut ring = RingBuf::try_from(&mut self.loaded.events).expect("ring");
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            if let Event::FlowDrop(k, _, rule) = decode(&item).expect("event") {
                out.push((k, rule));
            }
        }
        out
    }

    /// Every ring event, drained, in the order the program wrote them.
    fn events(&mut self) -> Vec<Event> {
        let mut ring = RingBuf::try_from(&mut self.loaded.events).expect("ring");
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            out.push(decode(&item).expect("a decodable event"));
        }
        out
    }

    fn rule_line(&self, id: u32) -> u32 {
        self.lists.origin(id).map_or(0, |o| o.line)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn to(dst: [u8; 4], dport: u16) -> Vec<u8> {
    Spec::tcp4(v4(198, 51, 100, 2), 40000, dst, dport, tcp::SYN).build()
}

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

/// The same for a query its name drops, in the slow path: the main program once counted the
/// packet, the slow path its drop (142,399 of 922,234 copies held the packet alone). Every
/// query is counted once, passed or dropped.
#[test]
fn a_copy_of_a_flow_whose_queries_are_dropped_by_name_never_holds_a_query_without_its_drop() {
    let mut lab = Lab::new("torndns", "example.com\n", "");
    copies_while_it_counts(&mut lab, &dns_query(&wire("www.example.com")), 200_000);
    // A name that passes, on a flow of its own: each query counted once.
    let pass = dns_query_from(5354, &wire("example.org"));
    for _ in 0..3 {
        assert_eq!(lab.run(&pass), PASS);
    }
    let counts: Vec<_> = lab
        .loaded
        .flow_table()
        .entries()
        .expect("entries")
        .into_iter()
        .filter(|(k, _)| u16::from_be(k.port_a) == 5354)
        .map(|(_, v)| (v.packets[0], v.drops))
        .collect();
    assert_eq!(counts, [(3, 0)], "the passing queries' flow");
}

/// Runs `frame`, which its flow's verdict drops, once, then 5 x `repeat` times while a
/// thread copies the flow's entry; no copy may hold more packets than drops, and the entry
/// ends with every run counted once, as a packet and as a drop.
fn copies_while_it_counts(lab: &mut Lab, frame: &[u8], repeat: u32) {
    assert_eq!(lab.run(frame), DROP);
    let [(key, _)] = lab.drops()[..] else {
        panic!("one first drop")
    };
    let maps = lab.loaded.flow_maps().try_clone().expect("second handles");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = stop.clone();
    let reader = std::thread::spawn(move || {
        let (mut copies, mut torn) = (0u64, 0u64);
        while !reading.load(std::sync::atomic::Ordering::Relaxed) {
            let v = maps.table().get(&key).expect("lookup").expect("the flow");
            copies += 1;
            torn += u64::from(v.packets[0] > v.drops);
        }
        (copies, torn)
    });
    let prog = lab.loaded.program_mut().expect("program");
    for _ in 0..5 {
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (copies, torn) = reader.join().expect("reader");
    assert!(
        copies > 10_000,
        "premise: copies made while it ran: {copies}"
    );
    assert_eq!(
        torn, 0,
        "copies with a packet and not its drop, of {copies}"
    );
    let v = lab
        .loaded
        .flow_table()
        .get(&key)
        .expect("lookup")
        .expect("the flow");
    let runs = 1 + 5 * u64::from(repeat);
    assert_eq!((v.packets[0], v.drops), (runs, runs), "packets and drops");
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
    lab.rewrite("allow.list", "");
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
    lab.rewrite("block.list", "");
    lab.rewrite("allow.list", "");
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
    let mut lab = Lab::new("unparsed", "203.0.113.9\n2001:db8::66\nport tcp 22\n", "");
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
    chain.addrs = Addrs::V6(v6(2), v6(0x67));
    assert_eq!(lab.run(&chain.build()), PASS, "to another address");
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

/// A DNS query for `name` (dotted, or raw wire bytes via `qname`).
fn dns_query(qname: &[u8]) -> Vec<u8> {
    dns_query_from(5353, qname)
}

fn dns_query_from(port: u16, qname: &[u8]) -> Vec<u8> {
    let mut s = Spec::udp4(v4(198, 51, 100, 2), port, v4(198, 18, 0, 53), 53);
    s.payload = dns_query_payload(qname);
    s.build()
}

/// A DNS message asking one A question for `qname` (wire form).
fn dns_query_payload(qname: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    payload.extend_from_slice(qname);
    payload.extend_from_slice(&[0, 1, 0, 1]);
    payload
}

fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

#[test]
fn dns_queries_are_dropped_by_name_suffix_and_unwalkable_names_too() {
    let mut lab = Lab::new(
        "dns",
        "example.com\n||ads.example.net^\n",
        "good.example.com\n",
    );
    assert_eq!(
        lab.run(&dns_query(&wire("example.com"))),
        DROP,
        "exact name"
    );
    assert_eq!(
        lab.run(&dns_query(&wire("www.example.com"))),
        DROP,
        "subdomain"
    );
    assert_eq!(
        lab.run(&dns_query(&wire("a.b.c.WWW.Example.COM"))),
        DROP,
        "deep and mixed case"
    );
    assert_eq!(
        lab.run(&dns_query(&wire("badexample.com"))),
        PASS,
        "look-alike is not a suffix"
    );
    assert_eq!(
        lab.run(&dns_query(&wire("example.com.evil.org"))),
        PASS,
        "prefix is not a suffix"
    );
    assert_eq!(
        lab.run(&dns_query(&wire("good.example.com"))),
        PASS,
        "allowlisted subdomain"
    );
    assert_eq!(
        lab.run(&dns_query(&wire("x.good.example.com"))),
        PASS,
        "under the allowed name"
    );
    assert_eq!(
        lab.run(&dns_query(&wire("x.ads.example.net"))),
        DROP,
        "adblock-style rule"
    );
    let deep: Vec<String> = (0..40).map(|i| format!("l{i}")).collect();
    let deep = format!("{}.example.com", deep.join("."));
    assert_eq!(
        lab.run(&dns_query(&wire(&deep))),
        DROP,
        "more labels than the ring holds"
    );

    // Names the walk cannot read are dropped while a domain is blocked: the server would
    // read a name no rule judged (a resolver follows a pointer in a query).
    let before = lab.counter(Counter::DnsNameUnparsed);
    for (query, what) in unwalkable_queries() {
        assert_eq!(lab.run(&query), DROP, "{what}");
    }
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), before + 5);

    let mut response = dns_query(&wire("example.com"));
    response[14 + 20 + 8 + 2] |= 0x80;
    assert_eq!(lab.run(&response), PASS, "responses are not queries");
    assert_eq!(lab.run(&dns_query(&[0])), PASS, "the root name");
    let mut empty = Spec::udp4(v4(198, 51, 100, 2), 5354, v4(198, 18, 0, 53), 53);
    empty.payload.clear();
    assert_eq!(lab.run(&empty.build()), PASS, "an empty datagram");
    let syn = Spec::tcp4(v4(198, 51, 100, 2), 5355, v4(198, 18, 0, 53), 53, tcp::SYN);
    assert_eq!(lab.run(&syn.build()), PASS, "a SYN to port 53 (no data)");

    // DNS over TCP: a segment holding a whole message from its start is judged; one that
    // does not (a length prefix sent alone, a probe's byte) passes, as a client's stream
    // goes on.
    let blocked = dns_query_payload(&wire("www.example.com"));
    assert_eq!(
        lab.run(&dns_tcp(5360, &blocked)),
        DROP,
        "a blocked name over TCP"
    );
    let compressed = dns_query_payload(&[3, b'w', b'w', b'w', 0xc0, 0x0c]);
    assert_eq!(
        lab.run(&dns_tcp(5361, &compressed)),
        DROP,
        "a compressed name in a whole message over TCP"
    );
    let mut prefix_alone = Spec::tcp4(v4(198, 51, 100, 2), 5362, v4(198, 18, 0, 53), 53, tcp::ACK);
    prefix_alone.payload = (blocked.len() as u16).to_be_bytes().to_vec();
    assert_eq!(
        lab.run(&prefix_alone.build()),
        PASS,
        "a length prefix sent alone"
    );
    let mut probe = prefix_alone.clone();
    probe.payload = vec![0];
    assert_eq!(lab.run(&probe.build()), PASS, "a keepalive's byte");
    // An IPv4 first fragment of a segment (the rest, with the name, in its later fragment).
    let mut fragmented = Spec::tcp4(v4(198, 51, 100, 2), 5363, v4(198, 18, 0, 53), 53, tcp::ACK);
    fragmented.payload = (blocked.len() as u16).to_be_bytes().to_vec();
    fragmented.payload.extend_from_slice(&blocked);
    assert_eq!(
        lab.run(&first_fragment(&fragmented, 32)),
        DROP,
        "an IPv4 first fragment of a segment to port 53"
    );
    // The same over IPv6: a Fragment header first, then one behind a hop-by-hop header.
    let mut v6 = Spec::new(
        Addrs::V6(v6(2), v6(0x53)),
        L4::Tcp {
            sport: 5364,
            dport: 53,
            flags: tcp::ACK,
        },
    );
    v6.payload = fragmented.payload.clone();
    assert_eq!(
        lab.run(&first_fragment_v6(&v6, &[(44, 8)], 32)),
        DROP,
        "an IPv6 first fragment of a segment to port 53"
    );
    assert_eq!(
        lab.run(&first_fragment_v6(&v6, &[(0, 8), (44, 8)], 32)),
        DROP,
        "an IPv6 first fragment behind a hop-by-hop header"
    );
    // An atomic fragment (no M) holds the whole segment: its name is walked and judged.
    v6.ipv6_ext = vec![(44, 8)];
    assert_eq!(
        lab.run(&v6.build()),
        DROP,
        "an atomic IPv6 fragment of a blocked query"
    );
    let passed = dns_query_payload(&wire("www.example.org"));
    v6.payload = (passed.len() as u16).to_be_bytes().to_vec();
    v6.payload.extend_from_slice(&passed);
    assert_eq!(
        lab.run(&v6.build()),
        PASS,
        "an atomic IPv6 fragment of a query no rule blocks"
    );
    assert!(lab.counter(Counter::DroppedByDomain) >= 16);
}

/// The first IPv6 fragment of `spec` with the extension headers `ext` (one a Fragment
/// header, its M set), holding `l4_bytes` of the transport header and data.
fn first_fragment_v6(spec: &Spec, ext: &[(u8, usize)], l4_bytes: usize) -> Vec<u8> {
    let mut s = spec.clone();
    s.ipv6_ext = ext.to_vec();
    let mut f = s.build();
    let mut at = 14 + 40;
    for &(ty, len) in ext {
        if ty == 44 {
            f[at + 3] |= 1;
        }
        at += len;
    }
    f.truncate(at + l4_bytes);
    let payload = (at - 14 - 40 + l4_bytes) as u16;
    f[18..20].copy_from_slice(&payload.to_be_bytes());
    f
}

/// The first IPv4 fragment of `spec`'s untagged datagram, holding `l4_bytes` of it past the
/// IP header (a multiple of 8; the rest would follow in later fragments).
fn first_fragment(spec: &Spec, l4_bytes: usize) -> Vec<u8> {
    let mut s = spec.clone();
    s.ipv4_frag = (0, true);
    let mut f = s.build();
    f.truncate(14 + 20 + l4_bytes);
    f[16..18].copy_from_slice(&(20 + l4_bytes as u16).to_be_bytes());
    f
}

/// A TCP segment to port 53 from `sport` carrying `message` behind its length prefix.
fn dns_tcp(sport: u16, message: &[u8]) -> Vec<u8> {
    let mut s = Spec::tcp4(v4(198, 51, 100, 2), sport, v4(198, 18, 0, 53), 53, tcp::ACK);
    s.payload = (message.len() as u16).to_be_bytes().to_vec();
    s.payload.extend_from_slice(message);
    s.build()
}

/// Queries the name walk cannot read, each with what it is.
fn unwalkable_queries() -> Vec<(Vec<u8>, &'static str)> {
    let mut compressed = vec![3, b'w', b'w', b'w', 0xc0, 0x0c];
    compressed.extend_from_slice(&[0, 1]);
    let mut cut = dns_query(&wire("www.example.com"));
    cut.truncate(cut.len() - 12);
    // A first fragment holding the UDP header alone: its later fragment carries the query
    // (the UDP length says so). Then one cut inside the name.
    let mut spec = Spec::udp4(v4(198, 51, 100, 2), 5356, v4(198, 18, 0, 53), 53);
    spec.payload = dns_query_payload(&wire("www.example.com"));
    vec![
        (dns_query(&compressed), "compression pointer in a query"),
        (cut, "name cut short by the packet's end"),
        (dns_query(&[70, b'x']), "label length over 63"),
        (
            first_fragment(&spec, 8),
            "a first fragment with the UDP header alone",
        ),
        (
            first_fragment(&spec, 8 + 16),
            "a first fragment cut inside the name",
        ),
    ]
}

/// Without a blocked domain, a query the walk cannot read passes, counted: nothing is
/// judged by name.
#[test]
fn unwalkable_queries_pass_when_no_domain_is_blocked() {
    let mut lab = Lab::new("nodomains", "203.0.113.9\n", "");
    let before = lab.counter(Counter::DnsNameUnparsed);
    for (query, what) in unwalkable_queries() {
        assert_eq!(lab.run(&query), PASS, "{what}");
    }
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), before + 5);
    assert_eq!(lab.counter(Counter::DroppedByDomain), 0);
}

#[test]
fn a_blocked_query_is_copied_before_its_drop_is_announced_and_within_its_budget() {
    let mut lab = Lab::new("dnscopy", "example.com\n", "");
    let query = dns_query(&wire("www.example.com"));
    // Ethernet, IPv4 and UDP headers: 42 bytes before the DNS message.
    let message = &query[42..];
    assert_eq!(lab.run(&query), DROP, "a blocked name");
    let events = lab.events();
    let copied = events
        .iter()
        .position(|e| matches!(e, Event::Payload(p) if &p.data[..] == message))
        .unwrap_or_else(|| panic!("the blocked query's payload event is missing: {events:?}"));
    let dropped = events
        .iter()
        .position(|e| matches!(e, Event::FlowDrop(..)))
        .unwrap_or_else(|| panic!("the flow's drop event is missing: {events:?}"));
    assert!(
        copied < dropped,
        "the payload event comes before the drop event, so the drop record can name the query: {events:?}"
    );
    // The flow's budget still bounds the copies: a flood of blocked queries is dropped
    // whole, and copied only as far as the budget reaches.
    for _ in 0..DNS_UDP_MESSAGES + 4 {
        assert_eq!(lab.run(&query), DROP, "every blocked query is dropped");
    }
    let copies = lab
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Payload(_)))
        .count();
    assert_eq!(
        copies,
        usize::from(DNS_UDP_MESSAGES) - 1,
        "copies after the first stop at the flow's budget"
    );
}

/// `n` labels `d0 .. d{n-1}`.
fn labels(n: usize) -> String {
    (0..n)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn dns_names_match_under_the_programs_key_at_every_label_length_and_depth() {
    // Labels of 7, 8, 9, 16 and 63 bytes: the program hashes labels 8 bytes at a time.
    let l63 = "a".repeat(63);
    let block = format!(
        "seven77.example\nexactly8.example\nnine-byte.example\nsixteen-bytes-ab.example\n\
         {l63}.example\ntrailing.example.\n{}\n",
        labels(16)
    );
    let mut lab = Lab::new("dnskey", &block, "");
    let l62b = format!("{}b.example", "a".repeat(62));
    let l63_up = format!("{}.EXAMPLE", "A".repeat(63));
    let deep17 = format!("x.{}", labels(16));
    let deep18 = format!("y.x.{}", labels(16));
    let shallow15 = labels(16)
        .split_once('.')
        .map(|(_, r)| r.to_owned())
        .expect("labels");
    let wrong_tail = format!("{}.extra", labels(16));
    let cases: Vec<(&str, u32, &str)> = vec![
        ("seven77.example", DROP, "a 7-byte label: tail word only"),
        ("EXACTLY8.Example", DROP, "one full word, any case"),
        (
            "exactly9.example",
            PASS,
            "the full word's last byte differs",
        ),
        ("xexactly8.example", PASS, "look-alike with a byte in front"),
        ("x.nine-byte.example", DROP, "under a 9-byte label"),
        ("NINE-BYTE.EXAMPLE", DROP, "a word and a tail, upper case"),
        ("nine-bytf.example", PASS, "the tail byte differs"),
        ("sixteen-bytes-ab.example", DROP, "two full words"),
        ("Sixteen-Bytes-aB.example", DROP, "case in both words"),
        ("sixteen-bytes-ac.example", PASS, "the second word differs"),
        (&l63_up, DROP, "a 63-byte label, upper case"),
        (&l62b, PASS, "a 63-byte look-alike"),
        (
            "trailing.example",
            DROP,
            "a rule written with a trailing dot",
        ),
        ("example", PASS, "the parent of the rules"),
        ("example.example", PASS, "a sibling"),
        (&deep17, DROP, "17 labels end in the 16-label rule"),
        (&deep18, DROP, "18 labels end in the 16-label rule"),
        (&shallow15, PASS, "15 labels are only a suffix of the rule"),
        (&wrong_tail, PASS, "the rule's labels, not at the end"),
    ];
    for (name, want, why) in cases {
        assert_eq!(lab.run(&dns_query(&wire(name))), want, "{name}: {why}");
    }
    assert_eq!(
        lab.run(&dns_query(&wire(&labels(16)))),
        DROP,
        "the 16-label rule itself"
    );
}

#[test]
fn every_load_keys_domain_hashes_its_own_way() {
    let mut a = Lab::new("key-a", "example.com\n", "");
    let mut b = Lab::new("key-b", "example.com\n", "");
    let (ka, kb) = (a.lists.domain_key(), b.lists.domain_key());
    assert_ne!(ka, kb, "each load draws its own key");
    let table = |lab: &Lab| -> Vec<(u64, u32)> { lab.lists.compiled().block.domains.clone() };
    let (ta, tb) = (table(&a), table(&b));
    assert_eq!((ta.len(), tb.len()), (1, 1));
    assert_ne!(ta[0].0, tb[0].0, "one rule, another table key per load");
    let query = dns_query(&wire("www.example.com"));
    assert_eq!(a.run(&query), DROP);
    assert_eq!(b.run(&query), DROP);

    // Program `a` given the table key of `b`: nothing matches, the program hashes with the
    // key in its own map.
    let mut swap = xdp_audit::blocklist::Delta {
        generation: a.lists.compiled().generation + 1,
        ..Default::default()
    };
    swap.block.domains.upsert.push(tb[0]);
    swap.block.domains.remove.push(ta[0].0);
    a.loaded.lists.apply(&swap).expect("apply");
    assert_eq!(a.run(&query), PASS, "b's hash means nothing to a");

    // A key handed to the loader is the key in the map.
    let loaded = Loaded::load(LoadOptions {
        flow_table_size: 1024,
        ringbuf_bytes: 1 << 16,
        domain_key: Some(ka),
        ..Default::default()
    })
    .expect("load");
    assert_eq!(loaded.lists.domain_key().expect("read back"), ka);
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
