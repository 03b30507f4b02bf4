//! The parser's checks of IP headers, tested for real (loaded into the kernel, fed crafted
//! packets through BPF_PROG_TEST_RUN): what the host itself drops (a frame short of its IP
//! length, a wrong IPv4 header checksum, a martian source) is counted and makes no flow, and a
//! transport header cut at every boundary is counted as such. Needs root.

mod common;

use agent_common::Counter;
use common::prog::{Prog, XDP_PASS};
use common::{tcp, v4, v6, Addrs, Spec, L4};

/// `frame[..len]` with its IP length field (the header at `ip_off`) saying the packet ends
/// with the frame, where the field is in the cut and the length is one the parser takes as
/// such (an IPv6 payload length 0 is a jumbogram's).
fn cut_whole(frame: &[u8], ip_off: usize, len: usize) -> Vec<u8> {
    let mut f = frame[..len].to_vec();
    let v6 = frame[ip_off] >> 4 == 6;
    if v6 && len > ip_off + 40 {
        let payload = (len - ip_off - 40) as u16;
        f[ip_off + 4..ip_off + 6].copy_from_slice(&payload.to_be_bytes());
    } else if !v6 && len >= ip_off + 20 {
        let total = (len - ip_off) as u16;
        f[ip_off + 2..ip_off + 4].copy_from_slice(&total.to_be_bytes());
    }
    f
}

#[test]
fn truncation_at_every_header_boundary_is_passed_and_counted() {
    let mut p = Prog::load(1 << 16);
    /// A frame, where its IP header starts and, for each cut length from which it applies,
    /// the expected outcome of the cut packet (its IP length saying where it ends).
    type Case = (Vec<u8>, usize, Vec<(usize, Counter)>);
    let cases: Vec<Case> = vec![
        (
            Spec::tcp4(v4(10, 0, 0, 1), 1, v4(10, 0, 0, 2), 2, tcp::SYN).build(),
            14,
            vec![
                (14, Counter::SkipTruncatedIpv4),
                (34, Counter::SkipTruncatedL4),
                (54, Counter::ParsedTcp),
            ],
        ),
        (
            Spec::udp4(v4(10, 0, 0, 1), 1, v4(10, 0, 0, 2), 2).build(),
            14,
            vec![
                (14, Counter::SkipTruncatedIpv4),
                (34, Counter::SkipTruncatedL4),
                (42, Counter::ParsedUdp),
            ],
        ),
        (
            Spec::new(
                Addrs::V6(v6(1), v6(2)),
                L4::Tcp {
                    sport: 1,
                    dport: 2,
                    flags: tcp::SYN,
                },
            )
            .build(),
            14,
            vec![
                (14, Counter::SkipTruncatedIpv6),
                // At 54 the payload length (20) is not the cut's: the frame is short of it.
                (55, Counter::SkipTruncatedL4),
                (74, Counter::ParsedTcp),
            ],
        ),
        (
            {
                let mut s = Spec::udp4(v4(10, 0, 0, 1), 1, v4(10, 0, 0, 2), 2);
                s.vlans = vec![(0x88a8, 5), (0x8100, 6)];
                s.build()
            },
            22,
            vec![
                (14, Counter::SkipTruncatedVlan),
                (18, Counter::SkipTruncatedVlan),
                (22, Counter::SkipTruncatedIpv4),
                (42, Counter::SkipTruncatedL4),
                (50, Counter::ParsedUdp),
            ],
        ),
    ];
    // BPF_PROG_TEST_RUN refuses XDP frames shorter than an Ethernet header, so cuts start at
    // 14 bytes; the program's own Ethernet check is covered by the kernel's refusal.
    for (frame, ip_off, bounds) in cases {
        for len in 14..=frame.len() {
            let expected = bounds
                .iter()
                .rev()
                .find(|(from, _)| len >= *from)
                .map(|(_, c)| *c)
                .expect("a bound for every length");
            p.expect_outcome(
                &cut_whole(&frame, ip_off, len),
                expected,
                &format!("cut at {len} of {}", frame.len()),
            );
        }
    }
}

/// A frame shorter than the IP length it carries is dropped by the host's IP layer (a
/// server never sees it): counted as a cut IP header, never a flow, whatever it holds.
#[test]
fn a_frame_short_of_its_ip_length_is_no_flow() {
    let mut p = Prog::load(1 << 16);
    let v4_syn = Spec::tcp4(v4(10, 0, 9, 1), 4000, v4(10, 0, 9, 2), 80, tcp::SYN).build();
    let v6_udp = Spec::new(
        Addrs::V6(v6(1), v6(2)),
        L4::Udp {
            sport: 4000,
            dport: 53,
        },
    )
    .payload(40)
    .build();
    // Each cut one byte short, and to the end of its IP header.
    for (frame, outcome, header_end) in [
        (&v4_syn, Counter::SkipTruncatedIpv4, 14 + 20),
        (&v6_udp, Counter::SkipTruncatedIpv6, 14 + 40),
    ] {
        for len in [frame.len() - 1, header_end] {
            p.expect_outcome(&frame[..len], outcome, &format!("cut at {len}"));
        }
    }
    assert_eq!(p.flows().len(), 0, "no flow: {:?}", p.flows());
    // The same packets whole, and padded past their IP length, are flows.
    let mut padded = v4_syn.clone();
    padded.extend_from_slice(&[0xab; 6]);
    p.expect_outcome(&padded, Counter::ParsedTcp, "padded past its IP length");
    p.expect_outcome(&v6_udp, Counter::ParsedUdp, "whole");
    assert_eq!(p.flows().len(), 2, "one flow each: {:?}", p.flows());
}

/// An IPv4 header whose checksum is wrong (options included) is dropped by the host's IP
/// layer, as the kernel counts it in InHdrErrors: such a packet is counted as a bad header
/// and is in no flow, a new one or one already made (a checksum field of 0 aside: hand-made
/// frames leave it so). So is a multicast or broadcast source.
#[test]
fn a_wrong_header_checksum_or_a_martian_source_is_a_bad_header_in_no_flow() {
    let mut p = Prog::load(1 << 16);
    let syn = Spec::tcp4(v4(10, 0, 8, 1), 4100, v4(10, 0, 8, 2), 80, tcp::SYN).build();
    let ack = Spec::tcp4(v4(10, 0, 8, 1), 4100, v4(10, 0, 8, 2), 80, tcp::ACK).build();
    let mut opts = Spec::udp4(v4(10, 0, 8, 1), 4101, v4(10, 0, 8, 2), 53).payload(20);
    opts.ipv4_options = vec![7, 7, 4, 0, 0, 0, 0, 0]; // record route, one slot
    let opts = opts.build();
    let bad = |frame: &[u8], at: usize| {
        let mut f = frame.to_vec();
        f[at] ^= 0x10;
        f
    };
    let run_bad = |p: &mut Prog, frame: &[u8], what: &str| {
        let before = (p.counter(Counter::SkipBadIpv4Header), p.outcome_total());
        assert_eq!(p.run_as_is(frame).0, XDP_PASS, "{what}: passed to the host");
        assert_eq!(
            (p.counter(Counter::SkipBadIpv4Header), p.outcome_total()),
            (before.0 + 1, before.1 + 1),
            "{what}: counted once, as a bad header"
        );
    };
    // The checksum itself, an address, an option byte: each leaves the sum wrong.
    run_bad(&mut p, &bad(&syn, 24), "checksum");
    run_bad(&mut p, &bad(&syn, 29), "source address");
    run_bad(&mut p, &bad(&opts, 14 + 24), "an option");
    assert_eq!(p.flows().len(), 0, "no flow: {:?}", p.flows());
    assert!(p.events().is_empty(), "no event, no payload copy");
    // Right sums, options included, make flows; a wrong one later is not in its flow.
    for (frame, what) in [(&syn, "the SYN"), (&opts, "with options")] {
        assert_eq!(p.run_as_is(frame).0, XDP_PASS, "{what}");
    }
    assert_eq!(p.flows().len(), 2, "a flow each: {:?}", p.flows());
    run_bad(&mut p, &bad(&ack, 24), "an ACK of the flow");
    let packets: Vec<[u64; 2]> = p
        .flows()
        .iter()
        .filter(|(k, _)| k.proto == 6)
        .map(|(_, v)| v.packets)
        .collect();
    assert_eq!(packets, [[1, 0]], "the SYN alone in its flow");
    // A checksum field of 0 is taken for one never filled in (hand-made frames leave it so):
    // judged and recorded.
    let mut unfilled = Spec::udp4(v4(10, 0, 8, 1), 4102, v4(10, 0, 8, 2), 9).build();
    unfilled[24..26].fill(0);
    let parsed = p.counter(Counter::ParsedUdp);
    assert_eq!(p.run_as_is(&unfilled).0, XDP_PASS);
    assert_eq!(
        p.counter(Counter::ParsedUdp),
        parsed + 1,
        "a checksum never filled in"
    );
    assert_eq!(p.flows().len(), 3, "its flow: {:?}", p.flows());

    // Sources no host may send from, which the host drops as martians (or, for IPv6, as
    // header errors), checksums right.
    let mut ff02 = [0u8; 16];
    ff02[0] = 0xff;
    ff02[1] = 0x02;
    ff02[15] = 1;
    let flows = p.flows().len();
    for (frame, outcome, what) in [
        (
            Spec::udp4(v4(224, 0, 0, 1), 5000, v4(10, 0, 8, 2), 9).build(),
            Counter::SkipBadIpv4Header,
            "a multicast source",
        ),
        (
            Spec::udp4(v4(255, 255, 255, 255), 5000, v4(10, 0, 8, 2), 9).build(),
            Counter::SkipBadIpv4Header,
            "the broadcast source",
        ),
        (
            Spec::new(
                Addrs::V6(ff02, v6(2)),
                L4::Udp {
                    sport: 5000,
                    dport: 9,
                },
            )
            .build(),
            Counter::SkipBadIpv6Header,
            "an IPv6 multicast source",
        ),
    ] {
        p.expect_outcome(&frame, outcome, what);
    }
    assert_eq!(p.flows().len(), flows, "no flow: {:?}", p.flows());
}
