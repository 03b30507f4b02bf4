//! Fast refusal in the kernel, through BPF_PROG_TEST_RUN with real list files: a blocked DNS
//! query of a refusing list comes back as an NXDOMAIN answer and a blocked TCP SYN as a
//! RST|ACK, both with XDP_TX, over IPv4 and IPv6, untagged, with one VLAN tag and with QinQ;
//! every answer is checked byte by byte (checksums recomputed here, the DNS message read with
//! the agent's own parser). What is not answered is dropped as before: a blocked packet that
//! is not a SYN or a UDP query, a shape the answer cannot reuse, a list that does not refuse.
//! Needs root.

mod common;

use std::path::PathBuf;

use agent_common::{flow_flags, rules, Counter, FlowValue};
use common::prog::Prog;
use common::{checksum, tcp, v4, v6, wire, Addrs, Spec, L4};
use xdp_audit::blocklist::{ListKind, ListSet, ListSpec};
use xdp_audit::enrich::names::dns;
use xdp_audit::reader::Event;

const DROP: u32 = 1;
const TX: u32 = 3;

/// The program with one blocklist, refusing or not.
struct Lab {
    dir: PathBuf,
    prog: Prog,
    _lists: ListSet,
}

impl Lab {
    fn new(tag: &str, block: &str, refuse: bool) -> Self {
        let dir =
            std::env::temp_dir().join(format!("xdp-audit-refuse-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("block.list"), block).expect("write the list");
        let spec = ListSpec {
            path: dir.join("block.list"),
            kind: ListKind::Block,
            refuse,
        };
        let (prog, lists) = Prog::with_lists(1024, [spec]);
        Self {
            dir,
            prog,
            _lists: lists,
        }
    }

    /// Runs one frame: the action and the frame as the program left it.
    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let (action, out, _) = self.prog.run_out(frame);
        (action, out)
    }

    fn counter(&self, c: Counter) -> u64 {
        self.prog.counter(c)
    }

    /// The flow-drop events in the ring: (flow value, rule as the program sent it).
    fn drops(&mut self) -> Vec<(FlowValue, u32)> {
        let events = self.prog.events();
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::FlowDrop(_, v, rule) => Some((v, rule)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a test frame is made of, so the answer can be checked against it.
#[derive(Clone, Copy, Debug)]
struct Shape {
    vlans: &'static [(u16, u16)],
    v6: bool,
}

const SHAPES: [Shape; 6] = [
    Shape {
        vlans: &[],
        v6: false,
    },
    Shape {
        vlans: &[(0x8100, 42)],
        v6: false,
    },
    Shape {
        vlans: &[(0x88a8, 100), (0x8100, 7)],
        v6: false,
    },
    Shape {
        vlans: &[],
        v6: true,
    },
    Shape {
        vlans: &[(0x8100, 42)],
        v6: true,
    },
    Shape {
        vlans: &[(0x88a8, 100), (0x8100, 7)],
        v6: true,
    },
];

const CLIENT4: [u8; 4] = v4(198, 51, 100, 2);
const SERVER4: [u8; 4] = v4(192, 0, 2, 80);

impl Shape {
    fn spec(self, l4: L4) -> Spec {
        let addrs = if self.v6 {
            Addrs::V6(v6(2), v6(0x80))
        } else {
            Addrs::V4(CLIENT4, SERVER4)
        };
        let mut s = Spec::new(addrs, l4);
        s.vlans = self.vlans.to_vec();
        s
    }

    fn l3(self) -> usize {
        14 + 4 * self.vlans.len()
    }

    fn ip_len(self) -> usize {
        if self.v6 {
            40
        } else {
            20
        }
    }

    /// Checks what every answer shares: MACs swapped, VLAN tags kept, addresses swapped,
    /// lengths, hop limit, IPv4 header checksum. Returns the transport segment and the
    /// pseudo-header sum of its checksum.
    fn check_ip<'a>(self, q: &[u8], a: &'a [u8], proto: u8, what: &str) -> (&'a [u8], u32) {
        let l3 = self.l3();
        assert_eq!(
            a[0..6],
            q[6..12],
            "{what}: destination MAC is the query's source"
        );
        assert_eq!(
            a[6..12],
            q[0..6],
            "{what}: source MAC is the query's destination"
        );
        assert_eq!(a[12..l3], q[12..l3], "{what}: VLAN tags and ethertype kept");
        let ip = &a[l3..];
        let l4_len = a.len() - l3 - self.ip_len();
        let words = |b: &[u8]| -> u32 {
            b.chunks(2)
                .map(|p| u32::from(p[0]) << 8 | u32::from(p[1]))
                .sum()
        };
        let pseudo = if self.v6 {
            let qip = &q[l3..];
            assert_eq!(
                ip[8..24],
                qip[24..40],
                "{what}: source is the query's destination"
            );
            assert_eq!(
                ip[24..40],
                qip[8..24],
                "{what}: destination is the query's source"
            );
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[4], ip[5]])),
                l4_len,
                "{what}: IPv6 payload length"
            );
            assert_eq!(
                (ip[6], ip[7]),
                (proto, 64),
                "{what}: next header, hop limit"
            );
            words(&ip[8..40])
        } else {
            let qip = &q[l3..];
            assert_eq!(
                ip[12..16],
                qip[16..20],
                "{what}: source is the query's destination"
            );
            assert_eq!(
                ip[16..20],
                qip[12..16],
                "{what}: destination is the query's source"
            );
            assert_eq!(ip[0], 0x45, "{what}: IPv4, 20-byte header");
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[2], ip[3]])),
                20 + l4_len,
                "{what}: IPv4 total length"
            );
            assert_eq!((ip[8], ip[9]), (64, proto), "{what}: TTL, protocol");
            assert_eq!(checksum(0, &ip[..20]), 0, "{what}: IPv4 header checksum");
            words(&ip[12..20])
        };
        let seg = &a[l3 + self.ip_len()..];
        (seg, pseudo + u32::from(proto) + seg.len() as u32)
    }
}

/// An EDNS OPT record (RFC 6891): root name, type 41, UDP size 1232, a cookie option.
const OPT: [u8; 23] = [
    0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

/// A query for `name` from port `sport`: RD set, with `OPT` in the additional section if
/// `edns`, and `pad` bytes of Ethernet trailer after the IP packet.
fn query(shape: Shape, sport: u16, name: &str, edns: bool, pad: usize) -> Vec<u8> {
    let mut msg = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    msg.extend_from_slice(&wire(name));
    msg.extend_from_slice(&[0, 28, 0, 1]);
    if edns {
        msg.extend_from_slice(&OPT);
    }
    let mut s = shape.spec(L4::Udp { sport, dport: 53 });
    s.payload = msg;
    let mut f = s.build();
    f.extend(std::iter::repeat_n(0u8, pad));
    f
}

#[test]
fn refused_dns_queries_come_back_as_nxdomain_answers() {
    let mut lab = Lab::new("dns", "blocked.example\n", true);
    let mut answered = 0;
    for shape in SHAPES {
        // Odd and even name lengths (the checksum's last word), with and without EDNS (its
        // OPT record must go), with and without an Ethernet trailer.
        for (i, (name, edns, pad)) in [
            ("blocked.example", false, 0),
            ("www.blocked.example", true, 0),
            ("a.blocked.example", true, 7),
            ("ab.blocked.example", false, 3),
        ]
        .into_iter()
        .enumerate()
        {
            let what = format!("{shape:?} {name} edns={edns} pad={pad}");
            // A flow per query, so each has its drop event.
            let q = query(shape, 41_000 + i as u16, name, edns, pad);
            let (action, a) = lab.run(&q);
            assert_eq!(action, TX, "{what}: the query is answered, not dropped");
            answered += 1;
            let (udp, pseudo) = shape.check_ip(&q, &a, 17, &what);
            let qudp = &q[shape.l3() + shape.ip_len()..];
            assert_eq!(udp[0..2], qudp[2..4], "{what}: source port is 53");
            assert_eq!(
                udp[2..4],
                qudp[0..2],
                "{what}: destination port is the client's"
            );
            assert_eq!(
                usize::from(u16::from_be_bytes([udp[4], udp[5]])),
                udp.len(),
                "{what}: UDP length is the frame's"
            );
            assert_ne!(udp[6..8], [0, 0], "{what}: the UDP checksum is set");
            assert_eq!(checksum(pseudo, udp), 0, "{what}: UDP checksum");
            let msg = &udp[8..];
            assert_eq!(
                msg.len(),
                12 + wire(name).len() + 4,
                "{what}: header and question only"
            );
            assert_eq!(msg[..2], [0xbe, 0xef], "{what}: the query's id");
            assert_eq!(msg[2..4], [0x81, 0x83], "{what}: QR, RD, RA, NXDOMAIN");
            assert_eq!(
                msg[4..12],
                [0, 1, 0, 0, 0, 0, 0, 0],
                "{what}: one question, no records"
            );
            let parsed = dns::parse(msg).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert!(
                parsed.is_response && parsed.rcode == 3,
                "{what}: {parsed:?}"
            );
            let question = parsed
                .question
                .unwrap_or_else(|| panic!("{what}: no question"));
            assert_eq!(
                (question.name.as_str(), question.qtype),
                (name, 28),
                "{what}"
            );
        }
    }
    assert_eq!(lab.counter(Counter::RefusedDns), answered);
    assert_eq!(lab.counter(Counter::DroppedByDomain), answered);
    let drops = lab.drops();
    assert_eq!(drops.len() as u64, answered, "one drop event per flow");
    for (v, rule) in drops {
        assert!(
            v.flags & flow_flags::REFUSED != 0,
            "the drop says refused: {v:?}"
        );
        assert!(
            rules::refuses(rule),
            "the rule carries the list's refusal bit"
        );
    }
}

#[test]
fn refused_syns_come_back_as_rst_ack() {
    let mut lab = Lab::new("syn", "192.0.2.80\n2001:db8::80\n", true);
    let mut answered = 0;
    for shape in SHAPES {
        // A plain SYN, and one carrying data (Fast Open), which the answer acknowledges (as
        // Linux's RST for a closed port does) and must not echo.
        for data in [0usize, 33] {
            let what = format!("{shape:?} data={data}");
            let q = shape
                .spec(L4::Tcp {
                    sport: 41_000 + data as u16,
                    dport: 80,
                    flags: tcp::SYN,
                })
                .seq(0xfffffff0)
                .payload(data)
                .build();
            let (action, a) = lab.run(&q);
            assert_eq!(action, TX, "{what}: the SYN is answered");
            answered += 1;
            let (t, pseudo) = shape.check_ip(&q, &a, 6, &what);
            let qt = &q[shape.l3() + shape.ip_len()..];
            assert_eq!(t.len(), 20, "{what}: a bare 20-byte header");
            assert_eq!(t[0..2], qt[2..4], "{what}: source port");
            assert_eq!(t[2..4], qt[0..2], "{what}: destination port");
            assert_eq!(t[4..8], [0, 0, 0, 0], "{what}: seq 0");
            assert_eq!(
                t[8..12],
                0xfffffff1u32.wrapping_add(data as u32).to_be_bytes(),
                "{what}: ack = ISN + 1 + data"
            );
            assert_eq!((t[12], t[13]), (0x50, tcp::RST | tcp::ACK), "{what}");
            assert_eq!(checksum(pseudo, t), 0, "{what}: TCP checksum");
        }
    }
    assert_eq!(lab.counter(Counter::RefusedTcp), answered);
    assert_eq!(lab.counter(Counter::DroppedByList), answered);
    for (v, _) in lab.drops() {
        assert!(
            v.flags & flow_flags::REFUSED != 0,
            "the drop says refused: {v:?}"
        );
    }
}

#[test]
fn what_cannot_be_answered_is_dropped_as_before() {
    let list = "192.0.2.80\nblocked.example\nport udp 5000\n";
    let mut lab = Lab::new("drop", list, true);
    let shape = SHAPES[0];
    let tcp_to = |flags: u8| {
        shape
            .spec(L4::Tcp {
                sport: 41_001,
                dport: 80,
                flags,
            })
            .build()
    };
    // Flows of their own, so each reaches the first-packet path a refusal is made on.
    let fresh = |sport: u16, flags: u8| {
        shape
            .spec(L4::Tcp {
                sport,
                dport: 80,
                flags,
            })
            .build()
    };
    let mut options = shape.spec(L4::Tcp {
        sport: 41_002,
        dport: 80,
        flags: tcp::SYN,
    });
    options.ipv4_options = vec![1, 1, 1, 0]; // NOPs and the end of the list
    let mut dns_tcp = shape.spec(L4::Tcp {
        sport: 41_003,
        dport: 53,
        flags: tcp::ACK | tcp::PSH,
    });
    dns_tcp.addrs = Addrs::V4(CLIENT4, v4(198, 18, 0, 53));
    let mut msg = vec![0, 0, 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(&wire("blocked.example"));
    msg.extend_from_slice(&[0, 1, 0, 1]);
    let len = (msg.len() - 2) as u16;
    msg[..2].copy_from_slice(&len.to_be_bytes());
    dns_tcp.payload = msg;
    let mut two_questions = query(shape, 41_005, "blocked.example", false, 0);
    let count = shape.l3() + 20 + 8 + 5;
    two_questions[count] = 2;
    let cases: [(&str, Vec<u8>); 8] = [
        ("an ACK of a blocked address", tcp_to(tcp::ACK)),
        // RFC 9293: a segment carrying RST is never answered; a SYN with FIN asks nothing.
        (
            "a SYN|RST of a blocked address",
            fresh(41_006, tcp::SYN | tcp::RST),
        ),
        (
            "a SYN|FIN of a blocked address",
            fresh(41_007, tcp::SYN | tcp::FIN),
        ),
        (
            "a SYN|ACK of a blocked address",
            tcp_to(tcp::SYN | tcp::ACK),
        ),
        ("a SYN with IPv4 options", options.build()),
        (
            "a UDP datagram to a blocked port",
            shape
                .spec(L4::Udp {
                    sport: 41_004,
                    dport: 5000,
                })
                .payload(10)
                .build(),
        ),
        ("a blocked DNS query over TCP", dns_tcp.build()),
        ("a query with two questions", two_questions),
    ];
    for (what, frame) in cases {
        assert_eq!(lab.run(&frame).0, DROP, "{what}");
    }
    assert_eq!(lab.counter(Counter::RefusedDns), 0);
    assert_eq!(lab.counter(Counter::RefusedTcp), 0);
    for (v, _) in lab.drops() {
        assert_eq!(v.flags & flow_flags::REFUSED, 0, "not refused: {v:?}");
    }
}

#[test]
fn a_list_that_does_not_refuse_drops_queries_and_syns() {
    let mut lab = Lab::new("off", "192.0.2.80\nblocked.example\n", false);
    let shape = SHAPES[0];
    let syn = shape
        .spec(L4::Tcp {
            sport: 41_000,
            dport: 80,
            flags: tcp::SYN,
        })
        .build();
    assert_eq!(lab.run(&syn).0, DROP, "SYN");
    let q = query(shape, 41_000, "blocked.example", true, 0);
    let (action, out) = lab.run(&q);
    assert_eq!(action, DROP, "DNS query");
    assert_eq!(out, q, "a dropped query is left as it came");
    assert_eq!(
        lab.counter(Counter::RefusedDns) + lab.counter(Counter::RefusedTcp),
        0
    );
    for (v, rule) in lab.drops() {
        assert_eq!(v.flags & flow_flags::REFUSED, 0, "not refused: {v:?}");
        assert!(!rules::refuses(rule));
    }
}

/// A host never answers a packet to or from a group, and a forged group source would have
/// the answer sent to every host of the segment: such a blocked query or SYN is dropped
/// unanswered. So is a SYN whose data offset no host takes (its answer's ack would count
/// its header as data), and one in a first fragment (its ack would count that fragment's
/// data only).
#[test]
fn packets_to_or_from_a_group_and_malformed_syns_are_dropped_unanswered() {
    // Names and addresses in two labs: a query to a blocked address is dropped by address
    // before its name is looked at (and only a SYN is answered for an address).
    let mut names = Lab::new(
        "groupdns",
        "blocked.example
",
        true,
    );
    let mut addrs = Lab::new(
        "groupsyn",
        "192.0.2.80
2001:db8::80
224.0.0.0/4
ff00::/8
",
        true,
    );
    let mut queries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut syns: Vec<(String, Vec<u8>)> = Vec::new();
    for shape in [SHAPES[0], SHAPES[3]] {
        let syn = |sport: u16| {
            shape.spec(L4::Tcp {
                sport,
                dport: 80,
                flags: tcp::SYN,
            })
        };
        for (i, which) in ["destination", "source"].into_iter().enumerate() {
            let mut q = syn(42_000 + i as u16);
            if i == 0 {
                q.dst_mac = [0x01, 0x00, 0x5e, 0, 0, 0xfb];
            } else {
                q.src_mac = [0xff; 6];
            }
            syns.push((
                format!("{shape:?}: a SYN with a group {which} MAC"),
                q.build(),
            ));
            let mut f = query(shape, 42_010 + i as u16, "blocked.example", false, 0);
            f[i * 6..i * 6 + 6].copy_from_slice(&[0xff; 6]);
            queries.push((format!("{shape:?}: a query with a group {which} MAC"), f));
        }
        let group = if shape.v6 {
            Addrs::V6(
                v6(2),
                [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb],
            )
        } else {
            Addrs::V4(CLIENT4, v4(224, 0, 0, 251))
        };
        let mut to_group = syn(42_020);
        to_group.addrs = group;
        syns.push((
            format!("{shape:?}: a SYN to a multicast group"),
            to_group.build(),
        ));
        let mut mcast = query(shape, 42_021, "blocked.example", false, 0);
        let dst = shape.l3() + if shape.v6 { 24 } else { 16 };
        match group {
            Addrs::V6(_, g) => mcast[dst..dst + 16].copy_from_slice(&g),
            Addrs::V4(_, g) => {
                mcast[dst..dst + 4].copy_from_slice(&g);
                // The IPv4 header checksum is not checked; the address is what counts.
            }
        }
        queries.push((format!("{shape:?}: a query to a multicast group"), mcast));
        let mut short = syn(42_030).build();
        short[shape.l3() + shape.ip_len() + 12] = 0x40; // data offset 4
        syns.push((format!("{shape:?}: a SYN with data offset 4"), short));
        let mut fragment = syn(42_031);
        if shape.v6 {
            fragment.ipv6_ext = vec![(44, 8)];
        } else {
            fragment.ipv4_frag = (0, true);
        }
        syns.push((
            format!("{shape:?}: a SYN in a first fragment"),
            fragment.build(),
        ));
    }
    let mut broadcast = query(SHAPES[0], 42_040, "blocked.example", false, 0);
    broadcast[14 + 16..14 + 20].copy_from_slice(&[255; 4]);
    queries.push(("a query to the broadcast address".into(), broadcast));
    for (what, frame) in &queries {
        assert_eq!(names.run(frame).0, DROP, "{what}");
    }
    for (what, frame) in &syns {
        assert_eq!(addrs.run(frame).0, DROP, "{what}");
    }
    assert_eq!(names.counter(Counter::RefusedDns), 0, "no query answered");
    assert_eq!(addrs.counter(Counter::RefusedTcp), 0, "no SYN answered");
    // From one host to another the same shapes are answered: the cases above differ only in
    // what makes them unanswerable.
    for shape in [SHAPES[0], SHAPES[3]] {
        let plain = query(shape, 42_050, "blocked.example", false, 0);
        assert_eq!(
            names.run(&plain).0,
            TX,
            "{shape:?}: a unicast query is answered"
        );
        let syn = shape
            .spec(L4::Tcp {
                sport: 42_051,
                dport: 80,
                flags: tcp::SYN,
            })
            .build();
        assert_eq!(
            addrs.run(&syn).0,
            TX,
            "{shape:?}: a unicast SYN is answered"
        );
    }
}
