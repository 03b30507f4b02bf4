//! DNS-name enforcement in the kernel, through BPF_PROG_TEST_RUN with real list files: names
//! under the program's random key (exact, subdomain, look-alike, case, trailing dot, label
//! lengths around the hash's word size, the 16-label cap, compressed and malformed names),
//! queries over UDP and TCP (streams: `verdict_dns_tcp.rs`) and in IPv4 and IPv6 first
//! fragments, names the walk cannot read (dropped only while a domain is blocked), keys that
//! differ from load to load, a blocked query copied before its drop is announced, a flow's
//! entry copied while its dropped queries are counted, and a new flow's query announced once
//! its name is judged.
//! Addresses, prefixes and ports are in `verdict.rs`. Needs root.

mod common;
mod verdict_common;

use agent_common::payload::DNS_UDP_MESSAGES;
use agent_common::{flow_flags, names, Counter};
use common::{dns_query_payload, tcp, v4, v6, wire, Addrs, Spec, L4};
use verdict_common::{copies_while_it_counts, first_fragment, first_fragment_v6, Lab, DROP, PASS};
use xdp_audit::loader::{LoadOptions, Loaded};
use xdp_audit::reader::Event;

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

/// A DNS query for `name` (dotted, or raw wire bytes via `qname`).
fn dns_query(qname: &[u8]) -> Vec<u8> {
    dns_query_from(5353, qname)
}

fn dns_query_from(port: u16, qname: &[u8]) -> Vec<u8> {
    let mut s = Spec::udp4(v4(198, 51, 100, 2), port, v4(198, 18, 0, 53), 53);
    s.payload = dns_query_payload(qname);
    s.build()
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

    // DNS over TCP: a segment holding a whole message from its start is judged; a length
    // sent alone passes (its message, next, is judged: `verdict_dns_tcp.rs`), and so does a
    // keepalive's byte, one already judged. Each connection opened by its SYN (without one,
    // where a message starts is not known).
    for sport in [5360, 5361, 5362] {
        let syn = Spec::tcp4(v4(198, 51, 100, 2), sport, v4(198, 18, 0, 53), 53, tcp::SYN);
        assert_eq!(lab.run(&syn.seq(0).build()), PASS, "the SYN from {sport}");
    }
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
    assert_eq!(
        lab.run(&first_fragment_v6(&v6, &[(44, 8), (60, 8)], 0)),
        DROP,
        "an IPv6 first fragment that ends before its TCP header"
    );
    // An atomic fragment (no M) holds the whole segment: its name is walked and judged. A
    // connection of its own (a SYN into the flow above, whose client acknowledged already,
    // opens no stream).
    v6.l4 = L4::Tcp {
        sport: 5365,
        dport: 53,
        flags: tcp::ACK,
    };
    let mut syn = v6.clone().seq(0);
    syn.payload.clear();
    syn.l4 = L4::Tcp {
        sport: 5365,
        dport: 53,
        flags: tcp::SYN,
    };
    assert_eq!(lab.run(&syn.build()), PASS, "its connection's SYN");
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
    let total = (cut.len() - 14) as u16;
    cut[16..18].copy_from_slice(&total.to_be_bytes());
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

/// A blocked query's copy says it was dropped, and where the name its rule matched starts:
/// behind an innocent first question, the second one's, which its drop record is then named
/// by. A query no rule blocks says neither; one dropped unread right after a blocked one
/// (its name never walked, the scratch still the last walk's) names no offset.
#[test]
fn a_blocked_querys_copy_says_which_question_the_rule_matched() {
    let mut lab = Lab::new("dnsnamed", "example.com\n", "");
    let (first, second) = (wire("innocent.org"), wire("www.example.com"));
    let mut two = Spec::udp4(v4(198, 51, 100, 2), 5370, v4(198, 18, 0, 53), 53);
    two.payload = dns_query_payload(&first);
    two.payload[5] = 2; // QDCOUNT
    two.payload.extend_from_slice(&second);
    two.payload.extend_from_slice(&[0, 1, 0, 1]);
    assert_eq!(lab.run(&two.build()), DROP, "the second question blocked");
    assert_eq!(lab.run(&dns_query(&wire("www.example.com"))), DROP);
    assert_eq!(lab.run(&dns_query_from(5371, &first)), PASS);
    assert_eq!(
        lab.run(&two.build()),
        DROP,
        "blocked again, a walk on this CPU"
    );
    // A first fragment: turned away before any walk.
    let mut unread = two.clone();
    unread.l4 = L4::Udp {
        sport: 5372,
        dport: 53,
    };
    assert_eq!(
        lab.run(&first_fragment(&unread, 8 + 16)),
        DROP,
        "a first fragment, its name unread"
    );
    let named: Vec<Option<Option<u16>>> = (lab.events().iter())
        .filter_map(|e| match e {
            Event::Payload(p) => Some(p.dropped.map(|d| d.name_at)),
            _ => None,
        })
        .collect();
    let behind = Some(u16::try_from(12 + first.len() + 4).expect("short"));
    // Each dropped one says it was (its resolver never saw it), the passing one does not.
    let want = [Some(behind), Some(Some(12)), None, Some(behind), Some(None)];
    assert_eq!(named, want);
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

/// A resolver that asks again for a blocked name from the same port (dig does, three tries):
/// the flow's later record carries the drops past the first, and names the domain rule as
/// the first drop's record does (it named none: the flow's own verdict is a pass).
#[test]
fn every_record_of_a_flow_whose_queries_a_name_drops_names_its_rule() {
    use common::sweep::{sweeper, Memory, S};
    use xdp_audit::clock::WallClock;
    use xdp_audit::sweeper::Timeouts;
    let mut lab = Lab::new("dnsrule", "example.com\n", "");
    let query = dns_query(&wire("www.example.com"));
    let t = Timeouts::default();
    let mut s = sweeper(t);
    let mut sink = Memory::default();
    for _ in 0..3 {
        assert_eq!(lab.run(&query), DROP, "a blocked name");
    }
    for ev in lab.events() {
        s.on_event(ev, &mut sink, &());
    }
    let idle = WallClock::ktime_now() + t.inactive.as_nanos() as u64 + S;
    s.sweep(lab.loaded.flow_table(), &mut sink, &(), idle)
        .expect("sweep");
    let drops: Vec<(u64, Option<String>)> =
        sink.0.iter().map(|r| (r.dropped, r.rule.clone())).collect();
    assert_eq!(drops.iter().map(|d| d.0).sum::<u64>(), 3, "{drops:?}");
    assert!(
        drops.len() == 2 && drops[0].1.is_some() && drops[1].1 == drops[0].1,
        "the first drop's record and the flow's end, both naming the rule: {drops:?}"
    );
}

/// A new flow's first query is announced once its name is judged, by its start before the
/// payload copy (as every flow): holding the query if the name passes, nothing if it drops
/// it (the drop, after the copy, holds it). A start event written before the name check
/// said a query passed that its name then dropped, and were the drop's event lost and the
/// entry evicted before a sweep read it, the record said so. A full ring loses the start, a
/// lost start, and leaves the entry unmarked for the sweeper to record.
#[test]
fn a_new_flows_query_is_announced_once_its_name_is_judged() {
    let mut lab = Lab::sized("announce", "example.com\n", "", &[(names::EVENTS, 4096)]);
    let kinds = |events: &[Event]| -> Vec<(&'static str, [u64; 2], u64)> {
        (events.iter())
            .map(|e| match e {
                Event::FlowStart(_, v) => ("start", v.packets, v.drops),
                Event::FlowDrop(_, v, _) => ("drop", v.packets, v.drops),
                Event::FlowEnd(_, v) => ("end", v.packets, v.drops),
                Event::FlowClosed(_, v) => ("closed", v.packets, v.drops),
                Event::Payload(_) => ("payload", [0, 0], 0),
            })
            .collect()
    };
    assert_eq!(lab.run(&dns_query(&wire("www.example.com"))), DROP);
    assert_eq!(
        kinds(&lab.events()),
        [
            ("start", [0, 0], 0),
            ("payload", [0, 0], 0),
            ("drop", [1, 0], 1)
        ],
        "a blocked query: a start holding nothing, the copy, then its drop"
    );
    assert_eq!(lab.run(&dns_query_from(5400, &wire("example.org"))), PASS);
    assert_eq!(
        kinds(&lab.events()),
        [("start", [1, 0], 0), ("payload", [0, 0], 0)],
        "a passed query: its start holding it, then the copy"
    );
    // Other flows' starts fill the ring.
    let mut n = 0u8;
    while lab.counter(Counter::LostFlowStart) == 0 {
        assert!(n < 200, "a 4 KiB ring holds fewer than 200 starts");
        let filler = Spec::udp4(v4(10, 7, 0, n), 9999, v4(10, 7, 1, 1), 9999).build();
        assert_eq!(lab.run(&filler), PASS);
        n += 1;
    }
    let lost = |lab: &Lab| [Counter::LostFlowStart, Counter::LostFlowDrop].map(|c| lab.counter(c));
    let before = lost(&lab);
    assert_eq!(
        lab.run(&dns_query_from(5401, &wire("www.example.com"))),
        DROP
    );
    let after = lost(&lab);
    assert_eq!(
        [after[0] - before[0], after[1] - before[1]],
        [1, 1],
        "its start and its drop lost"
    );
    let entry = |lab: &Lab, port: u16| {
        (lab.loaded
            .flow_table()
            .entries()
            .expect("entries")
            .into_iter())
        .find(|(k, _)| u16::from_be(k.port_a) == port)
        .map(|(_, v)| (v.packets, v.drops, v.flags & flow_flags::START_ANNOUNCED))
    };
    assert_eq!(
        entry(&lab, 5401),
        Some(([1, 0], 1, 0)),
        "its entry, unmarked"
    );
    // Until the name is judged the flow holds nothing: a walk of the table meanwhile reads
    // no query passed. With the slow path's slot emptied (a tail call that fails, counted),
    // that is how the query leaves it.
    common::prog::empty_slow_path(&mut lab.loaded);
    let lost = lab.counter(Counter::LostPayload);
    assert_eq!(
        lab.run(&dns_query_from(5402, &wire("www.example.com"))),
        PASS
    );
    assert_eq!(
        lab.counter(Counter::LostPayload),
        lost + 1,
        "the failed tail call"
    );
    assert_eq!(
        entry(&lab, 5402),
        Some(([0, 0], 0, flow_flags::START_ANNOUNCED))
    );
}
