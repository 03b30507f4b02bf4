//! The learner against real captures (dnsmasq and Kea talking to udhcpc and dhclient), the
//! lease files written in the same exchanges, and random and mutated payloads.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::*;
use crate::enrich::leases::{self, LeaseState};
use crate::store::testgen::Rng;

const T0: i64 = 1_800_000_000 * NS;

/// One DHCP datagram of a capture.
pub(crate) struct Datagram {
    pub(crate) payload: Vec<u8>,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) src_ip: IpAddr,
    pub(crate) eth_src: Mac,
    pub(crate) eth_dst: Mac,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/idents")
        .join(name)
}

/// The UDP datagrams of an untagged Ethernet capture (the lab's frames carry no VLAN tags or
/// IPv6 extension headers).
pub(crate) fn datagrams(name: &str) -> Vec<Datagram> {
    let frames = xdp_audit_lab::pcap::read(&fixture(name))
        .unwrap_or_else(|e| panic!("read capture {name}: {e:#}"));
    frames
        .iter()
        .filter_map(|f| {
            let d = &f.data;
            let eth_dst = Mac(d.get(..6)?.try_into().ok()?);
            let eth_src = Mac(d.get(6..12)?.try_into().ok()?);
            let (src_ip, udp) = match u16::from_be_bytes([*d.get(12)?, *d.get(13)?]) {
                0x0800 => {
                    let ihl = usize::from(d.get(14)? & 0x0f) * 4;
                    let src: [u8; 4] = d.get(26..30)?.try_into().ok()?;
                    (IpAddr::from(src), d.get(14 + ihl..)?)
                }
                0x86dd => {
                    let src: [u8; 16] = d.get(22..38)?.try_into().ok()?;
                    (IpAddr::from(src), d.get(54..)?)
                }
                _ => return None,
            };
            Some(Datagram {
                payload: udp.get(8..)?.to_vec(),
                src_port: u16::from_be_bytes([udp[0], udp[1]]),
                dst_port: u16::from_be_bytes([udp[2], udp[3]]),
                src_ip,
                eth_src,
                eth_dst,
            })
        })
        .collect()
}

/// Feeds a capture, one packet per second from `T0`.
fn replay(learner: &mut DhcpLearner, bindings: &mut Bindings, dgrams: &[Datagram]) {
    for (i, d) in dgrams.iter().enumerate() {
        learner.learn_sent(
            &DhcpPacket {
                payload: &d.payload,
                src_port: d.src_port,
                dst_port: d.dst_port,
                src_ip: d.src_ip,
                eth_dst: Some(d.eth_dst),
                t_ns: T0 + i as i64 * NS,
            },
            d.eth_src,
            bindings,
        );
    }
}

fn total(c: &DhcpCounters) -> u64 {
    c.v4_ack
        + c.v4_request
        + c.v4_release
        + c.v6_reply
        + c.v6_release
        + c.ignored
        + c.untrusted
        + c.truncated
        + c.not_dhcp
        + c.malformed
        + c.no_message_type
        + c.incomplete
        + c.decoder_panic
        + c.spoofed_requests
}

/// (address, MAC, host name) of every binding holding at `t`.
fn holding(b: &Bindings, ips: &[IpAddr], t: i64) -> Vec<(IpAddr, Option<Mac>, Option<String>)> {
    ips.iter()
        .filter_map(|&ip| {
            b.at(ip, t)
                .map(|s| (ip, s.holder.mac, s.hostname.as_deref().map(str::to_owned)))
        })
        .collect()
}

#[test]
fn the_dnsmasq_capture_teaches_what_its_lease_file_says() {
    let dgrams = datagrams("dnsmasq-dhcp.pcap");
    let mut learner = DhcpLearner::new();
    let mut b = Bindings::default();
    replay(&mut learner, &mut b, &dgrams);
    let c = learner.counters();
    assert_eq!(
        total(&c),
        dgrams.len() as u64,
        "every packet counted once: {c:?}"
    );
    assert_eq!((c.v4_ack, c.v4_release, c.v6_reply), (2, 1, 1), "{c:?}");
    assert_eq!(
        c.truncated + c.malformed + c.not_dhcp + c.decoder_panic,
        0,
        "{c:?}"
    );

    // The lease file of the same run: each lease it still holds was learned from the packets,
    // with the same MAC and host name; the released one is gone from both.
    let file = leases::parse(
        &std::fs::read(fixture("dnsmasq.leases")).expect("leases"),
        None,
    )
    .expect("format");
    let end = T0 + dgrams.len() as i64 * NS;
    let mut ips: Vec<IpAddr> = file.leases.iter().map(|l| l.ip).collect();
    ips.push("10.77.0.147".parse().expect("ip"));
    let learned = holding(&b, &ips, end);
    let from_file: Vec<_> = file
        .leases
        .iter()
        .filter(|l| l.state == LeaseState::Bound)
        .map(|l| (l.ip, l.mac, l.hostname.as_deref().map(str::to_owned)))
        .collect();
    assert_eq!(learned, from_file);
    // Each lease the file holds was asked for on the link: a read of that file (which states
    // no start) starts the binding at the REQUEST, for a minute after it.
    for l in file.leases.iter().filter(|l| l.state == LeaseState::Bound) {
        let (Some(mac), IpAddr::V4(_)) = (l.mac, l.ip) else {
            continue;
        };
        let asked = learner.requested_at(mac, l.ip, end);
        assert!(asked.is_some_and(|t| (T0..=end).contains(&t)), "{l:?}");
        let later = asked.map_or(end, |t| t + 61 * NS);
        assert_eq!(learner.requested_at(mac, l.ip, later), None, "too old");
        let other: IpAddr = "10.77.0.250".parse().expect("ip");
        assert_eq!(learner.requested_at(mac, other, end), None);
    }
    // The released lease was held between its ACK and its RELEASE.
    let released: IpAddr = "10.77.0.147".parse().expect("ip");
    let ack = dgrams
        .iter()
        .rposition(|d| d.src_port == 67 && d.payload.get(16..20) == Some(&[10, 77, 0, 147]))
        .expect("an ACK for .147") as i64;
    let span = b.at(released, T0 + ack * NS).expect("bound from the ACK");
    assert!(
        b.at(released, T0 + (ack + 1) * NS).is_none(),
        "released by the next packet"
    );
    assert_eq!(span.hostname.as_deref(), Some("box-dhclient"));
}

#[test]
fn the_kea_capture_takes_host_names_from_requests() {
    let dgrams = datagrams("kea-dhcp.pcap");
    let mut learner = DhcpLearner::new();
    let mut b = Bindings::default();
    replay(&mut learner, &mut b, &dgrams);
    let c = learner.counters();
    assert_eq!(total(&c), dgrams.len() as u64, "{c:?}");
    assert!(
        c.v4_ack >= 2 && c.v4_request >= 2 && c.v6_reply == 1,
        "{c:?}"
    );
    let end = T0 + dgrams.len() as i64 * NS;
    let ips: Vec<IpAddr> = ["10.77.0.160", "10.77.0.161", "fd77::200"]
        .iter()
        .map(|s| s.parse().expect("ip"))
        .collect();
    let mac = |n| Some(Mac([2, 0, 0, 0x77, 0, n]));
    assert_eq!(
        holding(&b, &ips, end),
        [
            (ips[0], mac(2), Some("laptop-udhcpc".to_string())),
            (ips[2], mac(2), Some("phone6.lab.example".to_string())),
        ],
        ".161 was released"
    );
}

#[test]
fn a_learner_trusting_no_one_believes_no_reply() {
    let dgrams = datagrams("dnsmasq-dhcp.pcap");
    let mut learner = DhcpLearner::trusting(Vec::new());
    let mut b = Bindings::default();
    replay(&mut learner, &mut b, &dgrams);
    assert_eq!(b.addresses(), 0);
    assert_eq!(learner.counters().untrusted, 3, "{:?}", learner.counters());
}

#[test]
fn only_trusted_servers_are_believed() {
    let dgrams = datagrams("dnsmasq-dhcp.pcap");
    let mut learner = DhcpLearner::trusting(vec!["192.0.2.1".parse().expect("ip")]);
    let mut b = Bindings::default();
    replay(&mut learner, &mut b, &dgrams);
    assert_eq!(b.addresses(), 0);
    assert_eq!(
        learner.counters().untrusted,
        3,
        "two ACKs and a Reply: {:?}",
        learner.counters()
    );
    let mut learner = DhcpLearner::trusting(vec![
        "10.77.0.1".parse().expect("ip"),
        "fe80::ff:fe77:1".parse().expect("ip"),
    ]);
    replay(&mut learner, &mut b, &dgrams);
    assert_eq!(learner.counters().untrusted, 0);
    assert_eq!(b.addresses(), 3);
}

#[test]
fn relay_replies_are_unwrapped() {
    let reply = datagrams("dnsmasq-dhcp.pcap")
        .into_iter()
        .rfind(|d| d.src_port == 547 && d.payload.first() == Some(&7))
        .expect("a DHCPv6 Reply");
    // Relay-Reply(hop 0, link, peer, Relay Message option holding the Reply), twice nested.
    let wrap = |inner: &[u8]| {
        let mut m = vec![13, 0];
        m.extend([0u8; 32]);
        m.extend(9u16.to_be_bytes());
        m.extend((inner.len() as u16).to_be_bytes());
        m.extend(inner);
        m
    };
    let relayed = wrap(&wrap(&reply.payload));
    let mut learner = DhcpLearner::new();
    let mut b = Bindings::default();
    learner.learn(
        &DhcpPacket {
            payload: &relayed,
            src_port: 547,
            dst_port: 547,
            src_ip: "2001:db8::547".parse().expect("ip"),
            eth_dst: Some(Mac([2, 0xee, 0, 0, 0, 1])),
            t_ns: T0,
        },
        &mut b,
    );
    assert_eq!(learner.counters().v6_reply, 1, "{:?}", learner.counters());
    let span = b.at("fd77::1fd".parse().expect("ip"), T0).expect("bound");
    assert_eq!(
        span.holder.mac,
        Some(Mac([2, 0, 0, 0x77, 0, 2])),
        "from the DUID, not the relay's MAC"
    );
    let mut cut = relayed.clone();
    cut.truncate(50);
    learner.learn(
        &DhcpPacket {
            payload: &cut,
            src_port: 547,
            dst_port: 547,
            src_ip: "2001:db8::547".parse().expect("ip"),
            eth_dst: None,
            t_ns: T0,
        },
        &mut b,
    );
    assert_eq!(learner.counters().truncated, 1);
}

/// A Reply straight to its client names the frame's destination, the client's MAC on
/// the link; a DUID-LLT keeps the MAC it was made with (a cloned image's, another card's),
/// so it names the client only where the frame cannot (relayed, or a group address).
#[test]
fn a_direct_reply_names_the_frames_destination_not_the_duids_mac() {
    let reply = datagrams("dnsmasq-dhcp.pcap")
        .into_iter()
        .rfind(|d| d.src_port == 547 && d.payload.first() == Some(&7))
        .expect("a DHCPv6 Reply");
    let card = Mac([2, 0xcc, 0, 0, 0, 9]);
    for (eth_dst, want) in [
        (Some(card), card),
        (
            Some(Mac([0x33, 0x33, 0, 1, 0, 2])),
            Mac([2, 0, 0, 0x77, 0, 2]),
        ),
        (None, Mac([2, 0, 0, 0x77, 0, 2])),
    ] {
        let mut learner = DhcpLearner::new();
        let mut b = Bindings::default();
        learner.learn(
            &DhcpPacket {
                payload: &reply.payload,
                src_port: 547,
                dst_port: 546,
                src_ip: "fe80::ff:fe77:1".parse().expect("ip"),
                eth_dst,
                t_ns: T0,
            },
            &mut b,
        );
        let span = b.at("fd77::1fd".parse().expect("ip"), T0).expect("bound");
        assert_eq!(span.holder.mac, Some(want), "frame to {eth_dst:?}");
    }
}

#[test]
fn a_bad_host_name_does_not_cost_the_binding() {
    // dnsmasq's ACK to udhcpc, its options replaced by: message type ACK, a host name that is
    // not UTF-8, then the lease time and server id (a decoder that stops at the bad name
    // would lose the lease time).
    let ack = datagrams("dnsmasq-dhcp.pcap")
        .into_iter()
        .find(|d| d.src_port == 67 && d.payload.windows(13).any(|w| w == b"laptop-udhcpc"))
        .expect("an ACK with a host name");
    let mut payload = ack.payload[..240].to_vec();
    payload.extend([
        53, 1, 5, 12, 3, b'a', 0xff, b'b', 51, 4, 0, 0, 0, 120, 54, 4, 10, 77, 0, 1, 255,
    ]);
    let mut learner = DhcpLearner::new();
    let mut b = Bindings::default();
    learner.learn(
        &DhcpPacket {
            payload: &payload,
            src_port: 67,
            dst_port: 68,
            src_ip: "10.77.0.1".parse().expect("ip"),
            eth_dst: None,
            t_ns: T0,
        },
        &mut b,
    );
    assert_eq!(learner.counters().v4_ack, 1, "{:?}", learner.counters());
    let span = b
        .at("10.77.0.146".parse().expect("ip"), T0)
        .expect("bound without its name");
    assert_eq!(span.hostname, None);
    assert_eq!(span.valid.to, Some(T0 + 120 * NS));
}

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VICTIM: Mac = Mac([2, 0, 0, 0, 0, 0x10]);
const VICTIM_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);

/// The server's Ethernet address.
const SERVER_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);

/// The server's ACK of `VICTIM_IP` to `VICTIM` for an hour.
fn victim_ack() -> Vec<u8> {
    let mut opts = vec![51, 4, 0, 0, 0x0e, 0x10, 54, 4];
    opts.extend(SERVER.octets());
    v4_message(5, VICTIM, VICTIM_IP, Ipv4Addr::UNSPECIFIED, &opts)
}

/// `payload` as the server sends it to `VICTIM` at `t_ns`.
fn from_server(payload: &[u8], t_ns: i64) -> DhcpPacket<'_> {
    DhcpPacket {
        payload,
        src_port: 67,
        dst_port: 68,
        src_ip: IpAddr::V4(SERVER),
        eth_dst: Some(VICTIM),
        t_ns,
    }
}

/// A DHCPv4 message of type `kind` for client `chaddr`, relayed through `giaddr` (unspecified:
/// not relayed), `opts` after the message type.
fn v4_message(kind: u8, chaddr: Mac, yiaddr: Ipv4Addr, giaddr: Ipv4Addr, opts: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; BOOTP_LEN];
    p[0] = if kind == 5 { 2 } else { 1 };
    p[1] = 1;
    p[2] = 6;
    p[16..20].copy_from_slice(&yiaddr.octets());
    p[24..28].copy_from_slice(&giaddr.octets());
    p[28..34].copy_from_slice(&chaddr.0);
    p.extend(MAGIC);
    p.extend([53, 1, kind]);
    p.extend_from_slice(opts);
    p.push(255);
    p
}

/// A REQUEST of `chaddr` for `VICTIM_IP` (option 50) naming itself `name` (option 12).
fn request(chaddr: Mac, giaddr: Ipv4Addr, name: &str) -> Vec<u8> {
    let mut opts = vec![50, 4];
    opts.extend(VICTIM_IP.octets());
    opts.extend([12, name.len() as u8]);
    opts.extend(name.as_bytes());
    v4_message(3, chaddr, Ipv4Addr::UNSPECIFIED, giaddr, &opts)
}

/// An address no learner trusts.
const UNTRUSTED: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 66);

/// A REQUEST as a client (68 -> 67) or a relay (67 -> 67, from the giaddr it set) sends it.
fn request_packet(payload: &[u8], relayed: bool, t_ns: i64) -> DhcpPacket<'_> {
    let giaddr = payload
        .get(24..28)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from);
    DhcpPacket {
        payload,
        src_port: if relayed { 67 } else { 68 },
        dst_port: 67,
        src_ip: IpAddr::V4(if relayed {
            giaddr
        } else {
            Ipv4Addr::UNSPECIFIED
        }),
        eth_dst: None,
        t_ns,
    }
}

/// A REQUEST naming `VICTIM` is believed only from the victim's own MAC or from a relay;
/// the server's ACK (no host name of its own) then takes the host name, and a lease file
/// read later its start.
#[test]
fn a_request_is_believed_only_from_its_client_or_a_relay() {
    let relay = Ipv4Addr::new(10, 0, 1, 1);
    let none = Ipv4Addr::UNSPECIFIED;
    let other = Mac([2, 0, 0, 0, 0, 0x66]);
    let cases = [
        ("sent by another host", Some(other), none, false, false),
        ("sender unknown", None, none, false, false),
        ("sent by the client", Some(VICTIM), none, false, true),
        (
            "relayed",
            Some(Mac([2, 0, 0, 0, 0, 0xfe])),
            relay,
            true,
            true,
        ),
        // Any host can set giaddr, and send from port 67 with its own address in it: only a
        // trusted sender is a relay.
        ("giaddr set by a client", Some(other), relay, false, false),
        (
            "an untrusted host posing as a relay",
            Some(other),
            UNTRUSTED,
            true,
            false,
        ),
    ];
    let ack = victim_ack();
    for (why, eth_src, giaddr, from_relay, believed) in cases {
        let mut learner = DhcpLearner::trusting(vec![IpAddr::V4(SERVER), IpAddr::V4(relay)]);
        let mut b = Bindings::default();
        let req = request(VICTIM, giaddr, "ceo-laptop");
        let pkt = request_packet(&req, from_relay, T0);
        match eth_src {
            Some(mac) => learner.learn_sent(&pkt, mac, &mut b),
            None => learner.learn(&pkt, &mut b),
        }
        learner.learn_sent(&from_server(&ack, T0 + NS), SERVER_MAC, &mut b);
        let c = learner.counters();
        assert_eq!(
            (c.v4_request, c.spoofed_requests, c.v4_ack),
            (u64::from(believed), u64::from(!believed), 1),
            "{why}: {c:?}"
        );
        let span = b
            .at(IpAddr::V4(VICTIM_IP), T0 + NS)
            .expect("bound by the ACK");
        assert_eq!(
            span.hostname.as_deref(),
            believed.then_some("ceo-laptop"),
            "{why}"
        );
        assert_eq!(
            learner.requested_at(VICTIM, IpAddr::V4(VICTIM_IP), T0 + NS),
            believed.then_some(T0),
            "{why}: a lease start moved to the REQUEST"
        );
    }
}

/// A client MAC of the flood, `i` below 2^24.
fn flood_mac(i: usize) -> Mac {
    let [_, a, b, c] = (i as u32).to_be_bytes();
    Mac([2, 0, 0, a, b, c])
}

/// A full table scans itself for expired entries at most once a second of packet time: in
/// between, a new client is refused even when expired entries would make room.
#[test]
fn a_full_table_lets_go_of_expired_entries_at_most_once_a_second() {
    let mut w = Waiting::<()>::default();
    // Entry i noted at T0 + i ns: it has expired from T0 + PENDING_NS + i.
    for i in 0..MAX_PENDING {
        assert!(w.insert(flood_mac(i), (), T0 + i as i64));
    }
    let mut next = MAX_PENDING;
    let mut new_client = |w: &mut Waiting<()>, t: i64| {
        next += 1;
        w.insert(flood_mac(next), (), t)
    };
    assert!(!new_client(&mut w, T0 + NS), "full of live entries");
    // Entries 0..=9 have expired: a second after the last scan, one scan makes room for 10.
    let t = T0 + PENDING_NS + 9;
    for n in 0..10 {
        assert!(new_client(&mut w, t + n), "new client {n} after the scan");
    }
    assert_eq!(w.entries.len(), MAX_PENDING);
    // 2,000 more have expired, but the last scan was under a second ago: no scan, refused.
    let soon = T0 + PENDING_NS + 2_000;
    assert!(!new_client(&mut w, soon), "scanned again within a second");
    assert!(
        !new_client(&mut w, t + NS - 1),
        "scanned again within a second"
    );
    assert!(
        w.insert(flood_mac(3_000), (), soon),
        "a known client updates"
    );
    assert!(new_client(&mut w, t + NS), "a second later, scanned again");
    assert!(w.entries.len() < MAX_PENDING, "2,000 expired entries went");
}

/// A clock stepped back by more than the pending window: a full table's entries, dated ahead
/// of it, go at the next scan (they held their places until the clock caught up, and every
/// new client's host name was refused meanwhile).
#[test]
fn a_full_table_lets_go_of_entries_dated_ahead_of_a_clock_stepped_back() {
    let mut w = Waiting::<()>::default();
    for i in 0..MAX_PENDING {
        assert!(w.insert(flood_mac(i), (), T0 + i as i64));
    }
    let back = T0 - 2 * PENDING_NS;
    assert!(w.insert(flood_mac(MAX_PENDING), (), back), "room made");
    assert_eq!(w.entries.len(), 1);
}

/// A REQUEST flood (every frame from its own chaddr, as an attacker can send) fills the
/// tables to their bound, and what they refuse is counted.
#[test]
fn a_request_flood_stops_at_the_bound_and_is_counted() {
    let mut learner = DhcpLearner::new();
    let mut b = Bindings::default();
    let extra = 10;
    for i in 0..MAX_PENDING + extra {
        let mac = flood_mac(i);
        let req = request(mac, Ipv4Addr::UNSPECIFIED, "flood");
        learner.learn_sent(&request_packet(&req, false, T0), mac, &mut b);
    }
    let c = learner.counters();
    assert_eq!(c.v4_request, (MAX_PENDING + extra) as u64, "{c:?}");
    assert_eq!(c.pending_full, extra as u64, "{c:?}");
    assert_eq!(learner.pending.entries.len(), MAX_PENDING);
    assert_eq!(learner.requested.entries.len(), MAX_PENDING);
}

fn random_packet(rng: &mut Rng, seeds: &[Datagram]) -> (Vec<u8>, u16, u16) {
    let ports = [
        (67, 68),
        (68, 67),
        (67, 67),
        (547, 546),
        (546, 547),
        (547, 547),
    ];
    let (sp, dp) = ports[rng.below(ports.len() as u64) as usize];
    if seeds.is_empty() || rng.chance(0.2) {
        let len = rng.below(600) as usize;
        return ((0..len).map(|_| rng.below(256) as u8).collect(), sp, dp);
    }
    let seed = &seeds[rng.below(seeds.len() as u64) as usize];
    let mut p = seed.payload.clone();
    match rng.below(4) {
        0 => p.truncate(rng.below(p.len() as u64 + 1) as usize),
        1 => {
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(p.len().max(1) as u64) as usize;
                if let Some(b) = p.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            // Option lengths are where decoders go wrong: overwrite bytes past the fixed part
            // with small and large values.
            for _ in 0..1 + rng.below(4) {
                let start = if seed.src_port >= 546 { 4 } else { 240 };
                if p.len() > start {
                    let at = start + rng.below((p.len() - start) as u64) as usize;
                    p[at] = [0, 1, 2, 0x7f, 0xff][rng.below(5) as usize];
                }
            }
        }
        _ => {
            let at = rng.below(p.len() as u64 + 1) as usize;
            let extra: Vec<u8> = (0..rng.below(40)).map(|_| rng.below(256) as u8).collect();
            p.splice(at..at, extra);
        }
    }
    (p, seed.src_port, seed.dst_port)
}

/// Random bytes and mutations of the real captures: never a panic (not even one the guard
/// would catch), every packet counted once. `XDP_AUDIT_FUZZ_ITERS` runs more.
#[test]
fn random_and_mutated_payloads_are_counted_never_fatal() {
    let iters: u64 = std::env::var("XDP_AUDIT_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let mut seeds = datagrams("dnsmasq-dhcp.pcap");
    seeds.extend(datagrams("kea-dhcp.pcap"));
    let mut rng = Rng::new(2026);
    let mut learner = DhcpLearner::new();
    let mut b = Bindings::default();
    for i in 0..iters {
        let (payload, sp, dp) = random_packet(&mut rng, &seeds);
        learner.learn(
            &DhcpPacket {
                payload: &payload,
                src_port: sp,
                dst_port: dp,
                src_ip: "10.77.0.1".parse().expect("ip"),
                eth_dst: Some(Mac([2, 0, 0, 0, 0, 9])),
                t_ns: T0 + i as i64,
            },
            &mut b,
        );
    }
    let c = learner.counters();
    assert_eq!(total(&c), iters, "{c:?}");
    assert_eq!(c.decoder_panic, 0, "the decoder panicked: {c:?}");
    assert!(
        c.truncated > 0 && c.malformed + c.not_dhcp > 0 && c.v4_ack > 0,
        "{c:?}"
    );
}

/// A RELEASE is believed as a REQUEST is: a LAN host sending one with another client's
/// chaddr and address (from its own MAC) ended that client's binding.
#[test]
fn a_release_from_another_mac_ends_nothing() {
    let mut learner = DhcpLearner::trusting(vec![IpAddr::V4(SERVER)]);
    let mut b = Bindings::default();
    let none = Ipv4Addr::UNSPECIFIED;
    let ack = victim_ack();
    learner.learn_sent(&from_server(&ack, T0), SERVER_MAC, &mut b);
    let mut release = v4_message(7, VICTIM, none, none, &[]);
    release[12..16].copy_from_slice(&VICTIM_IP.octets());
    let release_pkt = |t_ns| DhcpPacket {
        payload: &release,
        src_port: 68,
        dst_port: 67,
        src_ip: IpAddr::V4(VICTIM_IP),
        eth_dst: None,
        t_ns,
    };
    learner.learn_sent(&release_pkt(T0 + NS), Mac([2, 0, 0, 0, 0, 0x66]), &mut b);
    let c = learner.counters();
    assert_eq!((c.v4_release, c.spoofed_requests), (0, 1), "{c:?}");
    assert!(
        b.at(IpAddr::V4(VICTIM_IP), T0 + 2 * NS).is_some(),
        "still bound"
    );
    learner.learn_sent(&release_pkt(T0 + 3 * NS), VICTIM, &mut b);
    assert_eq!(learner.counters().v4_release, 1);
    assert!(
        b.at(IpAddr::V4(VICTIM_IP), T0 + 4 * NS).is_none(),
        "released by its client"
    );
}
