//! The join: each source at the flow's start, names from payloads and DNS, NAT records.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use agent_common::proto;

use super::*;
use crate::enrich::inputs::{Inputs, LeaseUpdate};
use crate::enrich::leases::bindings::{Holder, Observation, Source};
use crate::enrich::leases::{Lease, LeaseFormat, LeaseState};
use crate::enrich::names::testdata::{records, Hello};
use crate::enrich::names::NameSource;
use crate::enrich::nat::parse::{CtEntry, CtKind, CtMessage};
use crate::enrich::nat::{NatUpdate, TableConfig};
use crate::enrich::subscribers::parse::ParsedSubscribers;
use crate::enrich::Validity;
use crate::store::testgen::Rng;

#[path = "carry_tests.rs"]
mod carry_tests;

const S: i64 = 1_000_000_000;
const LAPTOP: Mac = Mac([2, 0, 0, 0, 0, 1]);
const PHONE: Mac = Mac([2, 0, 0, 0, 0, 2]);
const GW_OUT: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

/// What the stage passed on.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<FlowRecord>>>);

impl RecordSink for Captured {
    fn write(&mut self, r: &FlowRecord) -> Result<(), SinkError> {
        self.0.lock().expect("capture lock").push(r.clone());
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> Vec<FlowRecord> {
        std::mem::take(&mut *self.0.lock().expect("capture lock"))
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Unix ns now: the stage's ticks read the real clock, so test times sit near it.
fn now() -> i64 {
    WallClock::measure().to_unix_ns(WallClock::ktime_now())
}

/// Unix ns an hour ago, or a second after boot on a machine up for less than an hour (a
/// fresh CI machine): payloads carry kernel times, which cannot precede the boot.
fn an_hour_ago() -> i64 {
    let boot = WallClock::measure().offset_ns();
    (now() - 3600 * S).max(boot + S)
}

fn subscribers(text: &str) -> Arc<SubscriberTable> {
    let parsed = ParsedSubscribers::parse(text.as_bytes()).expect("test subscribers parse");
    Arc::new(SubscriberTable::build([&parsed]))
}

fn stage(inputs: Inputs) -> (EnrichStage, Captured) {
    let out = Captured::default();
    let s = EnrichStage::new(Box::new(out.clone()), inputs, StageConfig::default());
    (s, out)
}

fn record(src: &str, sport: u16, dst: IpAddr, dport: u16, p: u8, start: i64) -> FlowRecord {
    FlowRecord {
        time_start_ns: start,
        time_end_ns: start + S,
        iface: "lan0".into(),
        ifindex: 3,
        vlan: None,
        vlan_inner: None,
        src_mac: LAPTOP,
        dst_mac: Mac([2, 0, 0, 0, 0, 0xfe]),
        proto: p,
        src_ip: ip(src),
        src_port: sport,
        dst_ip: dst,
        dst_port: dport,
        packets: 2,
        bytes: 200,
        resp_packets: 1,
        resp_bytes: 100,
        tcp_flags: 0,
        dropped: 0,
        rule: None,
        end_reason: EndReason::Idle,
        attr: Attribution::default(),
    }
}

fn lease(addr: &str, mac: Mac, host: &str, from: i64, to: i64) -> Observation {
    Observation {
        ip: ip(addr),
        holder: Holder {
            mac: Some(mac),
            client_id: None,
        },
        hostname: Some(host.into()),
        valid: Validity {
            from: Some(from),
            to: Some(to),
        },
        source: Source::Packet,
    }
}

#[test]
fn the_binding_valid_at_the_flows_start_wins_not_the_one_at_write_time() {
    let t0 = now() - 3600 * S;
    let subs = subscribers(
        "match,account\n02:00:00:00:00:01,laptop-owner\n02:00:00:00:00:02,phone-owner\n",
    );
    let (mut st, out) = stage(Inputs::fixed(subs, None, None));
    // 10.0.0.5 was the laptop's until t0+100s, then the phone's.
    st.bindings_mut()
        .observe(lease("10.0.0.5", LAPTOP, "laptop", t0, t0 + 100 * S), t0);
    st.bindings_mut().observe(
        lease("10.0.0.5", PHONE, "phone", t0 + 100 * S, t0 + 900 * S),
        t0 + 100 * S,
    );
    // Both records are written after the change; the packets' MAC is the gateway's side (a
    // relay), so only the binding can tell.
    let mut early = record("10.0.0.5", 40000, SERVER, 80, proto::TCP, t0 + 50 * S);
    early.src_mac = Mac([2, 0, 0, 0, 0, 0x99]);
    let mut late = record("10.0.0.5", 40001, SERVER, 80, proto::TCP, t0 + 150 * S);
    late.src_mac = early.src_mac;
    st.write(&early).expect("write");
    st.write(&late).expect("write");
    let got: Vec<_> = out
        .take()
        .into_iter()
        .map(|r| (r.attr.user, r.attr.hostname))
        .collect();
    assert_eq!(
        got,
        [
            (Some("laptop-owner".into()), Some("laptop".into())),
            (Some("phone-owner".into()), Some("phone".into()))
        ]
    );
    assert_eq!(st.status().fields.user.attributed, 2);
}

#[test]
fn a_lease_file_change_mid_run_applies_from_its_read_on() {
    let (tx, rx) = mpsc::channel();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, Some(rx)));
    let row = |mac: Mac, host: &str| Lease {
        ip: ip("10.0.0.9"),
        mac: Some(mac),
        client_id: None,
        hostname: Some(host.into()),
        valid: Validity {
            from: None,
            to: Some(now() + 3600 * S),
        },
        state: LeaseState::Bound,
        line: 1,
    };
    let send = |l: Lease| {
        tx.send(LeaseUpdate {
            file: 0,
            leases: vec![l],
            format: Some(LeaseFormat::Dnsmasq),
            skipped: 0,
        })
        .expect("stage holds the receiver")
    };
    send(row(LAPTOP, "alpha"));
    st.tick().expect("tick");
    let before = now();
    while now() <= before {}
    send(row(PHONE, "beta"));
    st.tick().expect("tick");
    let after = now();
    st.write(&record("10.0.0.9", 1, SERVER, 80, proto::TCP, before))
        .expect("write");
    // The phone's own frame (the laptop's, after its lease went to the phone, would name
    // the laptop: it held the address before).
    let mut phones = record("10.0.0.9", 2, SERVER, 80, proto::TCP, after);
    phones.src_mac = PHONE;
    st.write(&phones).expect("write");
    let hosts: Vec<_> = out.take().into_iter().map(|r| r.attr.hostname).collect();
    assert_eq!(hosts, [Some("alpha".into()), Some("beta".into())]);
    assert_eq!(st.status().dhcp.lease_reads, 2);
}

#[test]
fn an_ipv6_client_is_tied_to_its_user_by_mac() {
    let t0 = now() - 3600 * S;
    // No MAC row: the v6 address gets the user of the IPv4 address the same MAC leased.
    let subs = subscribers("match,account\n10.0.0.0/24,v4-pool-user\n");
    let (mut st, out) = stage(Inputs::fixed(subs, None, None));
    st.bindings_mut()
        .observe(lease("10.0.0.7", LAPTOP, "laptop", t0, t0 + 3600 * S), t0);
    let mut r = record("10.0.0.1", 1, SERVER, 443, proto::TCP, t0 + S);
    r.src_ip = ip("2001:db8::1234");
    r.dst_ip = ip("2001:db8:ffff::1");
    st.write(&r).expect("write");
    let mut other = r.clone();
    other.src_mac = PHONE;
    st.write(&other).expect("write");
    let got: Vec<_> = out.take().into_iter().map(|r| r.attr.user).collect();
    assert_eq!(got, [Some("v4-pool-user".into()), None]);
}

fn ct_entry(id: u32, src: &str, sport: u16, oport: u16) -> CtEntry {
    CtEntry::masqueraded_tcp(id, (ip(src), sport), (SERVER, 443), (GW_OUT, oport))
}

fn ct(table: &SharedNat, kind: CtKind, entry: CtEntry, seen_ns: i64) {
    table.lock().expect("nat lock").apply(NatUpdate::Message {
        msg: CtMessage { kind, entry },
        seen_ns,
    });
}

/// Feeds one payload snippet through the sink seam, as the records thread does: kernel time,
/// direction, bytes.
fn feed(st: &mut EnrichStage, key: &FlowKey, from_originator: bool, t: i64, seq: u32, data: &[u8]) {
    feed_as(st, key, from_originator, t, seq, data, None);
}

/// [`feed`], of a query a domain rule dropped as the program says it.
fn feed_as(
    st: &mut EnrichStage,
    key: &FlowKey,
    from_originator: bool,
    t: i64,
    seq: u32,
    data: &[u8],
    dropped: Option<crate::reader::DroppedQuery>,
) {
    let clock = WallClock::measure();
    st.set_clock(clock);
    let p = crate::reader::Payload {
        key: *key,
        dir: if from_originator {
            crate::reader::Direction::Originator
        } else {
            crate::reader::Direction::Responder
        },
        ts_ns: u64::try_from(t - clock.offset_ns()).expect("a time after boot"),
        seq,
        // As XDP says: the originator's stream starts after its SYN, the responder's is
        // unknown.
        stream_start: from_originator.then_some(1000),
        payload_len: u16::try_from(data.len()).expect("a snippet"),
        left: Some(3),
        src_mac: LAPTOP,
        dst_mac: LAPTOP,
        dropped,
        data: bytes::Bytes::copy_from_slice(data),
    };
    st.payload(&p);
}

/// Client 10.0.0.5 asks resolver 10.0.0.1 from `port` at `at` for `name`, answered 1 us later
/// with the server's address (198.51.100.7, TTL 300 s).
fn resolve(st: &mut EnrichStage, port: u16, name: &str, at: i64) {
    let resolver = ip("10.0.0.1");
    let key = flow_key(&record("10.0.0.5", port, resolver, 53, proto::UDP, at));
    let query = dns_message(name, [198, 51, 100, 7], 300, false);
    let answer = dns_message(name, [198, 51, 100, 7], 300, true);
    feed(st, &key, true, at, 0, &query);
    feed(st, &key, false, at + 1000, 0, &answer);
}

/// The domain and its source of each record written so far.
fn names(out: &Captured) -> Vec<(Option<String>, Option<NameSource>)> {
    out.take()
        .into_iter()
        .map(|r| (r.attr.domain, r.attr.domain_source))
        .collect()
}

/// A DNS response for `name` A -> `addr` with `ttl`, or the query alone.
fn dns_message(name: &str, addr: [u8; 4], ttl: u32, response: bool) -> Vec<u8> {
    let flags: u16 = if response { 0x8180 } else { 0x0100 };
    let mut m = Vec::new();
    for x in [0x4242u16, flags, 1, u16::from(response), 0, 0] {
        m.extend_from_slice(&x.to_be_bytes());
    }
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    if response {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&[0, 4]);
        m.extend_from_slice(&addr);
    }
    m
}

#[test]
fn names_come_from_the_hello_in_two_segments_else_from_the_clients_dns_answer() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    // The client asks the resolver; the response (from port 53 to the client) fills its cache.
    let resolver = ip("10.0.0.1");
    resolve(&mut st, 5353, "plain.example", t0);

    // A TLS flow whose ClientHello (about 1.8 KB) spans two segments, second one first.
    let hello = records(
        &Hello::chrome_like("www.example.org", &mut Rng::new(7)).encode(),
        16384,
    );
    assert!(hello.len() > 1460, "the hello must need two segments");
    let tls = record("10.0.0.5", 40000, SERVER, 443, proto::TCP, t0 + S);
    let tls_key = flow_key(&tls);
    let (a, b) = hello.split_at(1448);
    feed(&mut st, &tls_key, true, t0 + S, 1000 + 1448, b);
    feed(&mut st, &tls_key, true, t0 + S, 1000, a);
    // A flow to the same server with no name of its own: the DNS answer names it.
    let bare = record("10.0.0.5", 40001, SERVER, 443, proto::TCP, t0 + 2 * S);
    // The same destination from another client, which never asked: no name.
    let stranger = record("10.0.0.6", 40002, SERVER, 443, proto::TCP, t0 + 2 * S);
    let dns_rec = record("10.0.0.5", 5353, resolver, 53, proto::UDP, t0);
    for r in [&tls, &bare, &stranger, &dns_rec] {
        st.write(r).expect("write");
    }
    let got = names(&out);
    assert_eq!(
        got[..3],
        [
            (Some("www.example.org".into()), Some(NameSource::Sni)),
            (Some("plain.example".into()), Some(NameSource::Dns)),
            (None, None)
        ]
    );
    let status = st.status();
    assert_eq!(status.payloads, 4);
    assert_eq!(status.dns_questions, 1);
    assert_eq!(status.flow_states, 0, "every flow ended, its state must go");
}

#[test]
fn dns_over_tcp_answers_across_segments_fill_the_cache_and_the_flow_keeps_its_question() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    let dns_rec = record("10.0.0.5", 40100, ip("10.0.0.1"), 53, proto::TCP, t0);
    let key = flow_key(&dns_rec);
    let framed = |m: Vec<u8>| {
        let mut f = u16::try_from(m.len())
            .expect("short")
            .to_be_bytes()
            .to_vec();
        f.extend(m);
        f
    };
    let query = framed(dns_message("tcp.example", [0; 4], 0, false));
    let answer = framed(dns_message("tcp.example", [198, 51, 100, 9], 300, true));
    // The query in two segments, the second first (the stream starts at 1000, after the SYN).
    feed(&mut st, &key, true, t0, 1005, &query[5..]);
    feed(&mut st, &key, true, t0, 1000, &query[..5]);
    // The answer in three segments, the length prefix cut in two.
    let server_seq = 0xffff_fff0u32;
    feed(&mut st, &key, false, t0 + 1000, server_seq, &answer[..1]);
    feed(
        &mut st,
        &key,
        false,
        t0 + 1000,
        server_seq + 1,
        &answer[1..20],
    );
    feed(
        &mut st,
        &key,
        false,
        t0 + 2000,
        server_seq.wrapping_add(20),
        &answer[20..],
    );
    let later = record(
        "10.0.0.5",
        40101,
        IpAddr::from([198, 51, 100, 9]),
        443,
        proto::TCP,
        t0 + S,
    );
    st.write(&later).expect("write");
    st.write(&dns_rec).expect("write");
    let got = out.take();
    assert_eq!(
        (got[0].attr.domain.as_deref(), got[0].attr.domain_source),
        (Some("tcp.example"), Some(NameSource::Dns)),
        "the answer over TCP names the client's later flow"
    );
    assert_eq!(got[1].attr.dns_qname.as_deref(), Some("tcp.example"));
    assert_eq!(got[1].attr.dns_qtype, Some(1));
    assert!(st.status().payload_failures.is_empty());
    assert_eq!(
        st.status().flow_states,
        0,
        "the DNS flow's state went with it"
    );
}

/// One datagram from port 53 crosses XDP without a handshake. Once a client's queries are
/// seen, an answer it was not seen asking for (another id, name or type) must not name its
/// flows; a client whose queries are not seen keeps taking answers on trust.
#[test]
fn a_spoofed_dns_answer_does_not_name_the_flows_of_a_client_seen_asking() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    let resolver = ip("10.0.0.1");
    let asking = flow_key(&record("10.0.0.5", 5353, resolver, 53, proto::UDP, t0));
    feed(
        &mut st,
        &asking,
        true,
        t0,
        0,
        &dns_message("real.example", [0; 4], 0, false),
    );
    // Spoofed, from port 53 of an address never asked: another id, then the asked id with
    // another name; both bind SERVER.
    let attacker = ip("192.0.2.66");
    let spoofed = flow_key(&record("10.0.0.5", 40000, attacker, 53, proto::UDP, t0));
    let octets = |a: IpAddr| match a {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(_) => [0; 4],
    };
    let mut other_id = dns_message("evil.example", octets(SERVER), 300, true);
    other_id[..2].copy_from_slice(&0x1234u16.to_be_bytes());
    feed(&mut st, &spoofed, false, t0 + 1000, 0, &other_id);
    let other_name = dns_message("evil.example", octets(SERVER), 300, true);
    feed(&mut st, &spoofed, false, t0 + 2000, 0, &other_name);
    // To the victim's address in its IPv4-mapped form, which the name cache takes for it:
    // it passed as to a client never seen asking.
    let mapped = flow_key(&record(
        "::ffff:10.0.0.5",
        40000,
        ip("2001:db8::66"),
        53,
        proto::UDP,
        t0,
    ));
    feed(&mut st, &mapped, false, t0 + 2500, 0, &other_name);
    // A client never seen asking takes its answer as before.
    let quiet = flow_key(&record("10.0.0.7", 5353, resolver, 53, proto::UDP, t0));
    feed(
        &mut st,
        &quiet,
        false,
        t0 + 3000,
        0,
        &dns_message("trusted.example", octets(SERVER), 300, true),
    );
    let victim = record("10.0.0.5", 40001, SERVER, 22, proto::TCP, t0 + S);
    let unseen = record("10.0.0.7", 40002, SERVER, 22, proto::TCP, t0 + S);
    st.write(&victim).expect("write");
    st.write(&unseen).expect("write");
    let got: Vec<_> = out.take().into_iter().map(|r| r.attr.domain).collect();
    assert_eq!(got, [None, Some("trusted.example".into())]);
    assert_eq!(
        st.status().payload_failures.get("dns_unasked"),
        Some(&3),
        "{:?}",
        st.status().payload_failures
    );
}

#[test]
fn quic_initials_are_named_on_every_port_xdp_copies_them_from() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    let initial: &[u8] =
        include_bytes!("../../../tests/fixtures/names/rfc9001-a2-client-initial.bin");
    for (i, port) in [443u16, 8443].into_iter().enumerate() {
        let sport = 50000 + i as u16;
        let r = record("10.0.0.5", sport, SERVER, port, proto::UDP, t0);
        feed(&mut st, &flow_key(&r), true, t0, 0, initial);
        st.write(&r).expect("write");
    }
    let got: Vec<_> = out
        .take()
        .into_iter()
        .map(|r| (r.dst_port, r.attr.domain, r.attr.domain_source))
        .collect();
    let named = |port| (port, Some("example.com".into()), Some(NameSource::QuicSni));
    assert_eq!(got, [named(443), named(8443)]);
}

#[test]
fn a_dns_over_tcp_answer_whose_second_segment_comes_first_is_read() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    let dns_rec = record("10.0.0.5", 40102, ip("10.0.0.1"), 53, proto::TCP, t0);
    let key = flow_key(&dns_rec);
    let mut answer = dns_message("tcp.example", [198, 51, 100, 10], 300, true);
    let len = u16::try_from(answer.len()).expect("short").to_be_bytes();
    answer.splice(0..0, len);
    // The responder's start is unknown: its later segment, first, is the lowest seen. It
    // starts with the record's type, 1, read as a length prefix: a one-byte message.
    assert_eq!(answer[33..35], [0, 1]);
    let server_seq = 0xffff_fff0u32;
    feed(
        &mut st,
        &key,
        false,
        t0,
        server_seq.wrapping_add(33),
        &answer[33..],
    );
    feed(&mut st, &key, false, t0 + 1000, server_seq, &answer[..33]);
    let later = record(
        "10.0.0.5",
        40103,
        IpAddr::from([198, 51, 100, 10]),
        443,
        proto::TCP,
        t0 + S,
    );
    st.write(&later).expect("write");
    let got = out.take();
    assert_eq!(
        (got[0].attr.domain.as_deref(), got[0].attr.domain_source),
        (Some("tcp.example"), Some(NameSource::Dns)),
        "failures: {:?}",
        st.status().payload_failures
    );
    assert!(st.status().payload_failures.is_empty());
}

#[test]
fn partial_streams_of_many_flows_stay_within_the_byte_budget_and_refusals_are_counted() {
    let t0 = an_hour_ago();
    let budget = 64 << 10;
    let config = StageConfig {
        payload_state_bytes: budget,
        ..StageConfig::default()
    };
    let out = Captured::default();
    let mut st = EnrichStage::new(
        Box::new(out.clone()),
        Inputs::fixed(Arc::default(), None, None),
        config,
    );
    let hello = records(
        &Hello::chrome_like("www.example.org", &mut Rng::new(7)).encode(),
        16384,
    );
    let answer = {
        let m = dns_message("held.example", [198, 51, 100, 11], 300, true);
        let mut f = u16::try_from(m.len())
            .expect("short")
            .to_be_bytes()
            .to_vec();
        f.extend(m);
        f
    };
    // Flows that each stop half way: a hello's first segment, a DNS answer's first bytes
    // (in both directions of a TCP/53 flow).
    let mut flows = Vec::new();
    for i in 0..200u16 {
        let tls = record("10.0.1.5", 20000 + i, SERVER, 443, proto::TCP, t0);
        feed(&mut st, &flow_key(&tls), true, t0, 1000, &hello[..1448]);
        let dns = record("10.0.1.5", 30000 + i, ip("10.0.0.1"), 53, proto::TCP, t0);
        feed(&mut st, &flow_key(&dns), true, t0, 1000, &answer[..20]);
        feed(&mut st, &flow_key(&dns), false, t0, 7, &answer[..20]);
        flows.extend([tls, dns]);
    }
    let status = st.status();
    assert!(
        status.payload_state_bytes <= budget as u64
            && status.payload_state_bytes > budget as u64 / 2,
        "{} bytes held for a budget of {budget}",
        status.payload_state_bytes
    );
    assert!(status.payload_state_refused > 0, "{status:?}");
    // A DNS answer read whole keeps none of its bytes, only its stream's small struct (more
    // messages may follow), though its flow's state stays for its record.
    let before = st.status().payload_state_bytes;
    let dns = record("10.0.1.6", 40000, ip("10.0.0.1"), 53, proto::TCP, t0);
    feed(&mut st, &flow_key(&dns), false, t0, 7, &answer);
    assert_eq!(
        st.status().payload_state_bytes - before,
        std::mem::size_of::<DnsTcpStream>() as u64
    );
    // Every flow's end gives its bytes back.
    for r in flows.iter().chain([&dns]) {
        st.write(r).expect("write");
    }
    assert_eq!(st.status().payload_state_bytes, 0);
    assert_eq!(st.status().flow_states, 0);
}

#[test]
fn a_dns_flow_carries_its_question_and_garbage_is_counted() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    let r = record("10.0.0.5", 5353, ip("10.0.0.1"), 53, proto::UDP, t0);
    let key = flow_key(&r);
    let query = dns_message("Q.Example.NET", [0; 4], 0, false);
    feed(&mut st, &key, true, t0, 0, &query);
    feed(&mut st, &key, true, t0, 0, &[0xc0; 40]);
    st.write(&r).expect("write");
    let got = out.take();
    assert_eq!(got[0].attr.dns_qname.as_deref(), Some("q.example.net"));
    assert_eq!(got[0].attr.dns_qtype, Some(1));
    let failures: u64 = st.status().payload_failures.values().sum();
    assert_eq!(failures, 1, "{:?}", st.status().payload_failures);
}

#[test]
fn later_records_of_a_flow_keep_the_attribution_of_its_start() {
    let t0 = now() - 3600 * S;
    let subs = subscribers("match,account\n02:00:00:00:00:01,laptop-owner\n");
    let (mut st, out) = stage(Inputs::fixed(subs, None, None));
    let mut first = record("10.0.0.5", 40000, SERVER, 443, proto::TCP, t0);
    first.end_reason = EndReason::Active;
    let mut next = first.clone();
    next.time_start_ns = t0 + 300 * S;
    // The device changed hands since (another MAC on the packets would name another user).
    next.src_mac = PHONE;
    next.end_reason = EndReason::Fin;
    st.write(&first).expect("write");
    st.write(&next).expect("write");
    let users: Vec<_> = out.take().into_iter().map(|r| r.attr.user).collect();
    assert_eq!(
        users,
        [Some("laptop-owner".into()), Some("laptop-owner".into())]
    );
    assert_eq!(st.status().flow_states, 0);
}

#[test]
fn dhcp_packets_in_payloads_teach_bindings_the_join_reads() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    // The real exchange of dnsmasq with udhcpc and dhclient, as XDP would copy it.
    let dgrams = crate::enrich::dhcp::tests::datagrams("dnsmasq-dhcp.pcap");
    let mut fed = 0;
    for (i, d) in dgrams.iter().enumerate() {
        let IpAddr::V4(src) = d.src_ip else { continue };
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&src.octets());
        let mut broadcast = [0u8; 16];
        broadcast[..4].copy_from_slice(&[255; 4]);
        let key = FlowKey {
            ifindex: 3,
            vlan: 0,
            vlan_inner: 0,
            proto: proto::UDP,
            family: agent_common::family::V4,
            _pad: [0; 2],
            port_a: d.src_port.to_be(),
            port_b: d.dst_port.to_be(),
            addr_a: FlowKey::addr_words(&b),
            addr_b: FlowKey::addr_words(&broadcast),
        };
        feed(&mut st, &key, true, t0 + i as i64 * S, 0, &d.payload);
        fed += 1;
    }
    assert!(fed > 0, "the capture holds DHCPv4 datagrams");
    let mut r = record("10.77.0.146", 40000, SERVER, 443, proto::TCP, t0 + 100 * S);
    r.src_mac = Mac([2, 0, 0, 0x77, 0, 2]);
    st.write(&r).expect("write");
    let got = out.take();
    assert_eq!(got[0].attr.hostname.as_deref(), Some("laptop-udhcpc"));
    let dhcp = st.status().dhcp;
    assert!(dhcp.learned >= 2 && dhcp.bad_packets == 0, "{dhcp:?}");
}

/// A flood of one-packet blocked flows: each first-drop record leaves its attribution for
/// the flow's later records, but the flows end with nothing more to write (the sweeper skips
/// a record of no packets) and say so through `flow_ended`; past the table's bound the
/// attributions are refused and counted, so names still come for the flows that carry them.
#[test]
fn blocked_flows_that_end_with_nothing_more_to_write_leave_no_state() {
    let t0 = an_hour_ago();
    let config = StageConfig {
        max_flow_states: 64,
        ..StageConfig::default()
    };
    let out = Captured::default();
    let mut st = EnrichStage::new(
        Box::new(out.clone()),
        Inputs::fixed(Arc::default(), None, None),
        config,
    );
    let drops: Vec<FlowRecord> = (0..100u16)
        .map(|i| {
            let mut r = record("10.0.0.5", 10_000 + i, SERVER, 443, proto::TCP, t0);
            r.packets = 1;
            r.end_reason = EndReason::Drop;
            r
        })
        .collect();
    for r in &drops {
        st.write(r).expect("write");
    }
    assert_eq!(out.take().len(), drops.len(), "every drop record passed on");
    let s = st.status();
    assert_eq!(
        (s.flow_states, s.flow_states_full),
        (64, 36),
        "the attributions kept within the bound, the rest counted: {s:?}"
    );
    for r in &drops {
        st.flow_ended(&flow_key(r));
    }
    assert_eq!(
        st.status().flow_states,
        0,
        "every ended flow's state is gone"
    );
}

/// A subscribers file edited while a flow is open: the flow's first record (written after
/// the reload) names the account in force when it started; a flow started after the reload
/// names the new one.
#[test]
fn a_subscribers_reload_attributes_flows_by_the_table_in_force_when_they_started() {
    let (mut st, out) = stage(Inputs::fixed(
        subscribers("match,account\n10.0.0.5,alice\n"),
        None,
        None,
    ));
    let before = now() - 60 * S;
    st.inputs
        .subscribers
        .publish(subscribers("match,account\n10.0.0.5,bob\n"));
    st.tick().expect("tick");
    let after = now() + S;
    for (port, start) in [(40000, before), (40001, after)] {
        let mut r = record("10.0.0.5", port, SERVER, 443, proto::TCP, start);
        r.end_reason = EndReason::Fin;
        st.write(&r).expect("write");
    }
    let users: Vec<_> = out
        .take()
        .iter()
        .map(|r| (r.src_port, r.attr.user.clone()))
        .collect();
    assert_eq!(
        users,
        vec![(40000, Some("alice".into())), (40001, Some("bob".into()))],
        "the flow open across the reload keeps the account it started under"
    );
}

mod names;
mod nat;
mod unattributed;
