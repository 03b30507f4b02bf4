//! The codec against messages a real kernel sent (captured in the netns lab of
//! `tests/nat.rs`), against an encoder written from the uapi headers, and against random and
//! mutated bytes: it never panics and never reads past what it was given.

use super::*;

/// Datagrams the listener received in the lab: new events for 100 TCP, 20 UDP and 2 ICMP
/// sessions masqueraded by the gateway, destroy events for the UDP ones, and periodic dumps.
/// Re-record with `XDP_AUDIT_RECORD_NAT_FIXTURES=1 cargo test -p xdp-audit --test nat`.
const LAB: &[u8] = include_bytes!("../../../tests/fixtures/nat/lab.bin");

fn all(buf: &[u8]) -> Vec<CtMessage> {
    messages(buf)
        .filter_map(|m| match m {
            Ok(NlItem::Conntrack(c)) => Some(c),
            Ok(_) => None,
            Err(e) => panic!("fixture does not parse: {e}"),
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

#[test]
fn lab_capture_parses_into_masqueraded_sessions() {
    let msgs = all(LAB);
    let count = |k| msgs.iter().filter(|m| m.kind == k).count();
    assert!(
        count(CtKind::New) >= 122,
        "new events: {}",
        count(CtKind::New)
    );
    assert!(
        count(CtKind::Destroy) >= 20,
        "destroy events: {}",
        count(CtKind::Destroy)
    );
    assert!(
        count(CtKind::Dumped) >= 100,
        "dumped entries: {}",
        count(CtKind::Dumped)
    );
    let clients = [ip("198.51.100.2"), ip("198.51.100.3")];
    let (gw, server) = (ip("203.0.113.1"), ip("203.0.113.2"));
    let mut icmp = 0;
    for m in &msgs {
        let e = &m.entry;
        assert!(clients.contains(&e.orig.src), "{e:?}");
        assert_eq!(
            (e.orig.dst, e.reply.src, e.reply.dst),
            (server, server, gw),
            "{e:?}"
        );
        assert!(e.status.src_nat() && e.status.confirmed(), "{e:?}");
        assert_eq!(e.reply.proto, e.orig.proto);
        match (e.orig.proto, e.orig.l4) {
            (6, L4::Ports { dst: 8080, .. }) | (17, L4::Ports { dst: 5353, .. }) => {}
            (1, L4::Icmp { ty: 8, code: 0, .. }) => {
                icmp += 1;
                assert!(
                    matches!(e.reply.l4, L4::Icmp { ty: 0, code: 0, .. }),
                    "{e:?}"
                );
            }
            _ => panic!("unexpected tuple {e:?}"),
        }
        match m.kind {
            // The kernel sends timestamps and counters only with destroy events and dumps.
            CtKind::New => assert!(e.start_ns.is_none() && e.counters_orig.is_none(), "{e:?}"),
            CtKind::Destroy => {
                let (start, stop) = (e.start_ns.expect("start"), e.stop_ns.expect("stop"));
                assert!(
                    stop >= start && start > 1_600_000_000_000_000_000,
                    "{start}..{stop}"
                );
                assert_eq!(e.counters_orig.map(|c| c.packets), Some(1), "{e:?}");
                assert_eq!(e.counters_reply.map(|c| c.packets), Some(1), "{e:?}");
            }
            CtKind::Dumped => assert!(e.start_ns.is_some() && e.counters_orig.is_some(), "{e:?}"),
            CtKind::Update => panic!("the listener does not subscribe to updates"),
        }
    }
    assert!(icmp >= 2, "ICMP entries: {icmp}");
}

#[test]
fn every_truncation_of_the_capture_is_an_error_or_a_prefix() {
    let whole = all(LAB);
    // Every byte of the first messages, then a stride (each cut re-parses the prefix).
    for cut in (0..2048).chain((2048..LAB.len()).step_by(61)) {
        let mut got = Vec::new();
        for item in messages(&LAB[..cut]) {
            match item {
                Ok(NlItem::Conntrack(m)) => got.push(m),
                Ok(_) => {}
                Err(e) => assert!(e.offset <= cut, "error offset {} past cut {cut}", e.offset),
            }
        }
        assert!(
            got.len() <= whole.len() && got[..] == whole[..got.len()],
            "cut at {cut}"
        );
    }
}

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bounded: at most one item per 16 bytes (the smallest message), and errors inside the input.
fn check_bounded(buf: &[u8]) {
    let mut n = 0;
    for item in messages(buf) {
        n += 1;
        if let Err(e) = item {
            assert!(
                e.offset <= buf.len(),
                "offset {} past {}",
                e.offset,
                buf.len()
            );
        }
    }
    assert!(
        n <= buf.len() / NLMSG_HDRLEN + 1,
        "{n} items from {} bytes",
        buf.len()
    );
}

#[test]
fn mutated_captures_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let start = rng.below(LAB.len());
        let len = 1 + rng.below(2048);
        let mut b = LAB[start..(start + len).min(LAB.len())].to_vec();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(b.len());
            match rng.below(4) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => b[at] = rng.next() as u8,
                2 => b.insert(at, rng.next() as u8),
                _ => {
                    b.remove(at);
                    if b.is_empty() {
                        b.push(0);
                    }
                }
            }
        }
        check_bounded(&b);
        // The same bytes behind a valid header, so attribute walks get the mutated input.
        let mut framed = header(16 + 4 + b.len(), (1 << 8) | 2, 0);
        framed.extend_from_slice(&[2, 0, 0, 0]);
        framed.extend_from_slice(&b);
        check_bounded(&framed);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        let b: Vec<u8> = (0..rng.below(512)).map(|_| rng.next() as u8).collect();
        check_bounded(&b);
    }
}

// An encoder from the uapi headers, independent of the parser's code paths.

fn header(len: usize, ty: u16, flags: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&(len as u32).to_ne_bytes());
    h.extend_from_slice(&ty.to_ne_bytes());
    h.extend_from_slice(&flags.to_ne_bytes());
    h.extend_from_slice(&[0; 8]);
    h
}

fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&ty.to_ne_bytes());
    a.extend_from_slice(payload);
    while a.len() % 4 != 0 {
        a.push(0);
    }
    a
}

fn nested(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    attr(ty | 0x8000, &parts.concat())
}

fn tuple(t: &CtTuple) -> Vec<u8> {
    let addr = |a: IpAddr, v4_ty: u16| match a {
        IpAddr::V4(a) => attr(v4_ty, &a.octets()),
        IpAddr::V6(a) => attr(v4_ty + 2, &a.octets()),
    };
    let ips = vec![addr(t.src, 1), addr(t.dst, 2)];
    let mut proto = vec![attr(1, &[t.proto])];
    match t.l4 {
        L4::Ports { src, dst } => {
            proto.push(attr(2, &src.to_be_bytes()));
            proto.push(attr(3, &dst.to_be_bytes()));
        }
        L4::Icmp { id, ty, code } => {
            proto.push(attr(4, &id.to_be_bytes()));
            proto.push(attr(5, &[ty]));
            proto.push(attr(6, &[code]));
        }
        L4::None => {}
    }
    [nested(1, &ips), nested(2, &proto)].concat()
}

fn encode(m: &CtMessage) -> Vec<u8> {
    let e = &m.entry;
    let mut attrs = vec![
        nested(CTA_TUPLE_ORIG, &[tuple(&e.orig)]),
        nested(CTA_TUPLE_REPLY, &[tuple(&e.reply)]),
        attr(CTA_STATUS, &e.status.0.to_be_bytes()),
        attr(CTA_MARK, &e.mark.to_be_bytes()),
        attr(CTA_ID, &e.id.to_be_bytes()),
        attr(CTA_ZONE, &e.zone.to_be_bytes()),
        // An attribute the parser does not know is skipped.
        attr(11, &1u32.to_be_bytes()),
    ];
    if let Some(t) = e.timeout_s {
        attrs.push(attr(CTA_TIMEOUT, &t.to_be_bytes()));
    }
    for (ty, c) in [
        (CTA_COUNTERS_ORIG, e.counters_orig),
        (CTA_COUNTERS_REPLY, e.counters_reply),
    ] {
        if let Some(c) = c {
            attrs.push(nested(
                ty,
                &[
                    attr(1, &c.packets.to_be_bytes()),
                    attr(2, &c.bytes.to_be_bytes()),
                ],
            ));
        }
    }
    let mut ts = Vec::new();
    if let Some(s) = e.start_ns {
        ts.push(attr(1, &(s as u64).to_be_bytes()));
    }
    if let Some(s) = e.stop_ns {
        ts.push(attr(2, &(s as u64).to_be_bytes()));
    }
    if !ts.is_empty() {
        attrs.push(nested(CTA_TIMESTAMP, &ts));
    }
    let (msg, flags) = match m.kind {
        CtKind::New => (0, NLM_F_CREATE | NLM_F_EXCL),
        CtKind::Update => (0, 0),
        CtKind::Dumped => (0, NLM_F_MULTI),
        CtKind::Destroy => (2, 0),
    };
    let body = attrs.concat();
    let mut out = header(NLMSG_HDRLEN + 4 + body.len(), (1 << 8) | msg, flags);
    out.extend_from_slice(&[2, 0, 0, 0]);
    out.extend_from_slice(&body);
    out
}

fn random_entry(rng: &mut Rng) -> CtMessage {
    let v6 = rng.below(2) == 1;
    let addr = |rng: &mut Rng| {
        if v6 {
            IpAddr::V6(Ipv6Addr::from(
                (u128::from(rng.next()) << 64) | u128::from(rng.next()),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
        }
    };
    let t = |rng: &mut Rng| {
        let l4 = match rng.below(3) {
            0 => L4::Ports {
                src: rng.next() as u16,
                dst: rng.next() as u16,
            },
            1 => L4::Icmp {
                id: rng.next() as u16,
                ty: rng.next() as u8,
                code: rng.next() as u8,
            },
            _ => L4::None,
        };
        CtTuple {
            proto: rng.next() as u8,
            src: addr(rng),
            dst: addr(rng),
            l4,
        }
    };
    let maybe = |rng: &mut Rng| (rng.below(2) == 1).then(|| (rng.next() >> 2) as i64);
    let counters = |rng: &mut Rng| {
        (rng.below(2) == 1).then(|| Counters {
            packets: rng.next(),
            bytes: rng.next(),
        })
    };
    let entry = CtEntry {
        id: rng.next() as u32,
        orig: t(rng),
        reply: t(rng),
        status: CtStatus(rng.next() as u32),
        zone: rng.next() as u16,
        mark: rng.next() as u32,
        timeout_s: (rng.below(2) == 1).then(|| rng.next() as u32),
        start_ns: maybe(rng),
        stop_ns: maybe(rng),
        counters_orig: counters(rng),
        counters_reply: counters(rng),
    };
    let kind = [CtKind::New, CtKind::Update, CtKind::Destroy, CtKind::Dumped][rng.below(4)];
    CtMessage { kind, entry }
}

#[test]
fn encoded_entries_parse_back_exactly() {
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        let batch: Vec<CtMessage> = (0..1 + rng.below(4))
            .map(|_| random_entry(&mut rng))
            .collect();
        let mut dgram: Vec<u8> = batch.iter().flat_map(encode).collect();
        dgram.extend_from_slice(&header(NLMSG_HDRLEN, NLMSG_DONE, 2));
        let mut got = messages(&dgram).map(|m| m.unwrap_or_else(|e| panic!("{e}")));
        for want in &batch {
            assert_eq!(got.next(), Some(NlItem::Conntrack(*want)));
        }
        assert_eq!(got.next(), Some(NlItem::Done));
        assert_eq!(got.next(), None);
    }
}

fn one(dgram: &[u8]) -> Result<NlItem, ParseError> {
    messages(dgram).next().expect("one item")
}

#[test]
fn malformed_messages_name_the_field_at_fault() {
    let mut rng = Rng(3);
    let mut m = random_entry(&mut rng);
    m.entry.orig.l4 = L4::Ports { src: 1, dst: 2 };
    let good = encode(&m);
    assert!(one(&good).is_ok());

    let mut short = good.clone();
    short[0..4].copy_from_slice(&((good.len() + 4) as u32).to_ne_bytes());
    assert_eq!(
        one(&short).map_err(|e| e.what),
        Err("nlmsg_len runs past the datagram")
    );

    let mut tiny = good.clone();
    tiny[0..4].copy_from_slice(&8u32.to_ne_bytes());
    assert_eq!(
        one(&tiny).map_err(|e| e.what),
        Err("nlmsg_len below the header size")
    );

    // The first attribute (CTA_TUPLE_ORIG) claims more than the message holds.
    let mut long_attr = good.clone();
    long_attr[20..22].copy_from_slice(&u16::MAX.to_ne_bytes());
    let e = one(&long_attr).expect_err("attribute past its parent");
    assert_eq!((e.offset, e.what), (20, "attribute runs past its parent"));

    let mut zero_attr = good.clone();
    zero_attr[20..22].copy_from_slice(&2u16.to_ne_bytes());
    assert_eq!(
        one(&zero_attr).map_err(|e| e.what),
        Err("attribute length below its header")
    );

    // Without the original tuple.
    let orig_len = u16::from_ne_bytes([good[20], good[21]]) as usize;
    let mut no_orig = good[..20].to_vec();
    no_orig.extend_from_slice(&good[20 + align4(orig_len)..]);
    let len = no_orig.len() as u32;
    no_orig[0..4].copy_from_slice(&len.to_ne_bytes());
    assert_eq!(one(&no_orig).map_err(|e| e.what), Err("no CTA_TUPLE_ORIG"));

    let mut mixed = m;
    mixed.entry.orig.dst = ip("2001:db8::1");
    mixed.entry.orig.src = ip("192.0.2.1");
    assert_eq!(
        one(&encode(&mixed)).map_err(|e| e.what),
        Err("tuple mixes IPv4 and IPv6 addresses")
    );

    let mut bad_status = m;
    bad_status.kind = CtKind::Destroy;
    let mut b = encode(&bad_status);
    let at = find_attr(&b, CTA_STATUS);
    b[at..at + 2].copy_from_slice(&6u16.to_ne_bytes());
    assert_eq!(
        one(&b).map_err(|e| e.what),
        Err("CTA_STATUS is not 4 bytes")
    );
}

/// Offset of the top-level attribute `ty` in an encoded message.
fn find_attr(msg: &[u8], ty: u16) -> usize {
    let mut at = NLMSG_HDRLEN + NFGENMSG_LEN;
    loop {
        let len = u16::from_ne_bytes([msg[at], msg[at + 1]]) as usize;
        if u16::from_ne_bytes([msg[at + 2], msg[at + 3]]) & NLA_TYPE_MASK == ty {
            return at;
        }
        at += align4(len);
    }
}

#[test]
fn errors_and_expectations_are_reported_not_parsed() {
    let mut err = header(NLMSG_HDRLEN + 4, NLMSG_ERROR, 0);
    err.extend_from_slice(&(-1i32).to_ne_bytes());
    assert_eq!(one(&err), Ok(NlItem::Error(-1)));
    // NFNL_SUBSYS_CTNETLINK_EXP: an expectation, skipped.
    let exp = header(NLMSG_HDRLEN + 4, 2 << 8, 0);
    assert_eq!(
        one(&[exp, vec![2, 0, 0, 0]].concat()),
        Ok(NlItem::Other(2 << 8))
    );
}

#[test]
fn dump_request_is_a_ctnetlink_get_with_dump_flags() {
    let r = dump_request(7, 0);
    assert_eq!(u32::from_ne_bytes([r[0], r[1], r[2], r[3]]), 20);
    assert_eq!(u16::from_ne_bytes([r[4], r[5]]), (1 << 8) | 1);
    assert_eq!(u16::from_ne_bytes([r[6], r[7]]), NLM_F_REQUEST | NLM_F_DUMP);
    assert_eq!(u32::from_ne_bytes([r[8], r[9], r[10], r[11]]), 7);
    assert_eq!(&r[16..20], &[0, NFNETLINK_V0, 0, 0]);
}
