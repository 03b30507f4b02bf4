//! Payload events: bounded copies of the first data packets of flows on ports that carry
//! names (TLS ClientHello, HTTP request, QUIC Initial, DNS, DHCP), for the agent to reassemble
//! and read. One ring-buffer record per copied packet, never more than the flow's budget.
//!
//! Which flows, and how many packets each: [`PortBudget`] per port in the `PAYLOAD_PORTS`
//! array ([`crate::names::PAYLOAD_PORTS`]), which the loader fills from [`DEFAULT_PORTS`].
//! A flow takes its budget when it is created (the destination port first, then the source
//! port), keeps what is left per direction in [`crate::FlowValue::snippets_left`], and an
//! established flow whose budget is spent pays one compare per packet. A TCP budget counts
//! every packet after the SYN, payload or not (a pure ACK spends one too: the main program
//! does not look at payloads, the slow path it hands budgeted packets to does), so a flow
//! whose client goes quiet stops costing anything after a handful of packets.
//!
//! Record shape: a [`PayloadHead`] followed by `cap_len` bytes, in one of three fixed sizes
//! ([`PayloadEvent`] of [`SNIPPET_SMALL`], [`SNIPPET_MEDIUM`] or [`SNIPPET_MAX`] bytes, the
//! smallest that holds the copy): the ring only reserves sizes known when the program is
//! verified, and three classes keep a DNS query from taking a full packet's room.

use core::mem::size_of;

use crate::FlowKey;

/// Bytes copied at most from one packet: every TCP or UDP payload a 1500-byte MTU carries
/// (UDP over IPv4: 1472). A longer payload (jumbo frames) is cut; the event says how long it
/// was.
pub const SNIPPET_MAX: usize = 1472;
/// The smallest record class: DNS queries and most answers.
pub const SNIPPET_SMALL: usize = 160;
/// The middle record class: DHCP messages, long DNS answers, HTTP requests.
pub const SNIPPET_MEDIUM: usize = 416;

/// Bytes of a TCP stream worth copying: the reassembly budget of the agent's name parsers
/// (`enrich::names::payload::DEFAULT_BUDGET`). A segment that starts past it is counted
/// against the flow's budget but not copied.
pub const STREAM_BYTES: u32 = 4096;

/// A [`PortBudget`] count that is never used up: every packet is copied (DHCP, whose
/// broadcasts from every client share one flow).
pub const UNLIMITED: u8 = u8::MAX;

/// Bits of [`PayloadHead::flags`].
pub mod payload_flags {
    /// [`super::PayloadHead::stream_start`] holds the sequence number of the stream's first
    /// byte (the flow was created by this direction's SYN).
    pub const START_KNOWN: u8 = 1 << 0;
    /// A DNS query a domain rule dropped (or refused): it never reached its resolver, so
    /// the agent notes no question asked, and takes no answer to it.
    pub const DROPPED: u8 = 1 << 1;
}

/// The fixed part of a payload record; `cap_len` payload bytes follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadHead {
    /// [`crate::event_kind::PAYLOAD`], at the offset every record keeps its kind.
    pub kind: u8,
    /// The packet's direction in its flow: [`crate::DIR_ORIG`] (sent by endpoint `a`) or
    /// [`crate::DIR_RESP`].
    pub dir: u8,
    /// [`payload_flags`] bits.
    pub flags: u8,
    /// Packets of the flow in this direction still looked at after this one (each sends an
    /// event if it carries payload); [`UNLIMITED`] if there is no limit. 0 tells the agent
    /// no more will come.
    pub left: u8,
    /// Bytes copied after the head.
    pub cap_len: u16,
    /// The payload's length as the packet's headers give it: TCP, the segment's data (IP
    /// length less the headers); UDP, the datagram's (UDP length less 8, so a first IPv4
    /// fragment says how long the whole datagram is). More than `cap_len` when the packet
    /// was longer than [`SNIPPET_MAX`], cut short on the wire, or fragmented.
    pub payload_len: u16,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) when the packet was seen.
    pub ts_ns: u64,
    /// TCP: the sequence number of the first payload byte. UDP: 0.
    pub seq: u32,
    /// TCP with [`payload_flags::START_KNOWN`]: the sequence number of the stream's first
    /// byte (the SYN's plus one). Otherwise 0.
    pub stream_start: u32,
    /// The flow, in the flow's orientation (as [`crate::FlowEvent::key`]).
    pub key: FlowKey,
    /// Ethernet destination of this packet (in the order of the Ethernet header, so the
    /// program copies the two addresses in one go).
    pub dst_mac: [u8; 6],
    /// Ethernet source of this packet.
    pub src_mac: [u8; 6],
    /// A UDP DNS query a domain rule dropped: where in the copied bytes the question name
    /// the rule matched starts (12 for the first question), so its drop record names that
    /// question, not another one of the query. 0 otherwise.
    pub blocked_name: u16,
    /// Explicit padding.
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<PayloadHead>() == 88);

/// One payload record of capacity `N` ([`SNIPPET_SMALL`], [`SNIPPET_MEDIUM`] or
/// [`SNIPPET_MAX`]); only the first `head.cap_len` bytes of `data` are written.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PayloadEvent<const N: usize> {
    /// What was copied from where.
    pub head: PayloadHead,
    /// The payload's first bytes.
    pub data: [u8; N],
}
const _: () = assert!(size_of::<PayloadEvent<SNIPPET_SMALL>>() == 248);
const _: () = assert!(size_of::<PayloadEvent<SNIPPET_MEDIUM>>() == 504);
const _: () = assert!(size_of::<PayloadEvent<SNIPPET_MAX>>() == 1560);

/// Ring-buffer space one payload record of capacity `N` takes (its 8-byte ring header
/// included).
pub const fn ring_bytes(n: usize) -> usize {
    (size_of::<PayloadHead>() + n + 8 + 7) & !7
}
const _: () = assert!(ring_bytes(SNIPPET_SMALL) == 256);
const _: () = assert!(ring_bytes(SNIPPET_MEDIUM) == 512);
const _: () = assert!(ring_bytes(SNIPPET_MAX) == 1568);

/// The payload budget of one port: how many packets of a flow to copy, per protocol, for the
/// side that sends to the port (the client of a service) and the side that sends from it.
/// All zero: not a name port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortBudget {
    /// TCP: `[to the port, from the port]`. Counted in packets after the SYN, with or
    /// without payload; only flows whose first packet is a SYN (or SYN-ACK) get it, since
    /// only they start at the stream's start.
    pub tcp: [u8; 2],
    /// UDP: `[to the port, from the port]`, counted in datagrams.
    pub udp: [u8; 2],
}
const _: () = assert!(size_of::<PortBudget>() == 4);

impl PortBudget {
    /// A TCP budget: `to` packets of the client's, `from` of the server's.
    pub const fn tcp(to: u8, from: u8) -> Self {
        PortBudget {
            tcp: [to, from],
            udp: [0, 0],
        }
    }

    /// A UDP budget: `to` datagrams of the client's, `from` of the server's.
    pub const fn udp(to: u8, from: u8) -> Self {
        PortBudget {
            tcp: [0, 0],
            udp: [to, from],
        }
    }

    /// Both budgets of `self` and `other` (the larger of each count).
    pub const fn with(self, other: PortBudget) -> Self {
        const fn max(a: u8, b: u8) -> u8 {
            if a > b {
                a
            } else {
                b
            }
        }
        PortBudget {
            tcp: [
                max(self.tcp[0], other.tcp[0]),
                max(self.tcp[1], other.tcp[1]),
            ],
            udp: [
                max(self.udp[0], other.udp[0]),
                max(self.udp[1], other.udp[1]),
            ],
        }
    }
}

/// Packets of a TCP client after its SYN looked at on a name port: the handshake's ACK, then
/// a ClientHello of today's browsers (about 1.8 KB) is two segments, and two more cover a
/// retransmission or a hello of up to [`STREAM_BYTES`]; an HTTP request rarely needs more
/// than one.
pub const TCP_CLIENT_PACKETS: u8 = 5;
/// Packets of an SMTP client after its SYN: the server speaks first, so the client ACKs its
/// banner and sends EHLO and STARTTLS (each answered and ACKed) before its ClientHello.
pub const SMTP_CLIENT_PACKETS: u8 = 12;
/// QUIC Initials copied per connection: a ClientHello with a post-quantum key share spans
/// two client Initials, each in a datagram of its own.
pub const QUIC_CLIENT_DATAGRAMS: u8 = 2;
/// DNS messages copied per UDP flow and direction. A stub resolver asks from a fresh random
/// port per query (or per A/AAAA pair, with its retries): 16 covers that with room, and
/// bounds what one long-lived 5-tuple can put in the ring.
pub const DNS_UDP_MESSAGES: u8 = 16;
/// DNS-over-TCP packets looked at per direction after the SYN: the handshake, a query, and an
/// answer of up to a few segments.
pub const DNS_TCP_PACKETS: u8 = 6;

/// The budget of an HTTPS port: the client's TLS ClientHello over TCP, its QUIC Initials over
/// UDP.
pub const HTTPS: PortBudget =
    PortBudget::tcp(TCP_CLIENT_PACKETS, 0).with(PortBudget::udp(QUIC_CLIENT_DATAGRAMS, 0));

/// Whether the default ports copy datagrams sent to `port` as QUIC Initials: a port of
/// [`DEFAULT_PORTS`] with the [`HTTPS`] budget. The agent reads as QUIC what this copies.
pub fn quic_port(port: u16) -> bool {
    DEFAULT_PORTS.iter().any(|&(p, b)| p == port && b == HTTPS)
}

/// The ports the loader writes into `PAYLOAD_PORTS` unless told otherwise.
///
/// | port | protocol | copied |
/// |---|---|---|
/// | 80, 8080 | TCP | HTTP requests (Host) |
/// | 443, 8443 | TCP | TLS ClientHello (SNI) |
/// | 443, 8443 | UDP | QUIC Initials (SNI) |
/// | 25, 465, 587 | TCP | SMTP: EHLO, and the ClientHello of STARTTLS or implicit TLS |
/// | 53 | UDP, TCP | DNS queries and answers, both directions |
/// | 67, 68 | UDP | DHCP, both directions, every packet |
/// | 546, 547 | UDP | DHCPv6, both directions, every packet |
pub const DEFAULT_PORTS: [(u16, PortBudget); 12] = {
    let tls = PortBudget::tcp(TCP_CLIENT_PACKETS, 0);
    let smtp = PortBudget::tcp(SMTP_CLIENT_PACKETS, 0);
    let https = HTTPS;
    let dhcp = PortBudget::udp(UNLIMITED, UNLIMITED);
    [
        (25, smtp),
        (
            53,
            PortBudget::tcp(DNS_TCP_PACKETS, DNS_TCP_PACKETS)
                .with(PortBudget::udp(DNS_UDP_MESSAGES, DNS_UDP_MESSAGES)),
        ),
        (67, dhcp),
        (68, dhcp),
        (80, tls),
        (443, https),
        (465, tls),
        (546, dhcp),
        (547, dhcp),
        (587, smtp),
        (8080, tls),
        (8443, https),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of};

    #[test]
    fn payload_head_layout_matches_the_kernel() {
        assert_eq!(size_of::<PayloadHead>(), 88);
        assert_eq!(align_of::<PayloadHead>(), 8);
        assert_eq!(offset_of!(PayloadHead, kind), 0);
        assert_eq!(offset_of!(PayloadHead, dir), 1);
        assert_eq!(offset_of!(PayloadHead, flags), 2);
        assert_eq!(offset_of!(PayloadHead, left), 3);
        assert_eq!(offset_of!(PayloadHead, cap_len), 4);
        assert_eq!(offset_of!(PayloadHead, payload_len), 6);
        assert_eq!(offset_of!(PayloadHead, ts_ns), 8);
        assert_eq!(offset_of!(PayloadHead, seq), 16);
        assert_eq!(offset_of!(PayloadHead, stream_start), 20);
        assert_eq!(offset_of!(PayloadHead, key), 24);
        assert_eq!(offset_of!(PayloadHead, dst_mac), 72);
        assert_eq!(offset_of!(PayloadHead, src_mac), 78);
        assert_eq!(offset_of!(PayloadHead, blocked_name), 84);
        assert_eq!(offset_of!(PayloadHead, _pad), 86);
        assert_eq!(offset_of!(PayloadEvent<SNIPPET_MAX>, data), 88);
    }

    #[test]
    fn the_kind_byte_sits_where_flow_events_keep_theirs() {
        assert_eq!(
            offset_of!(PayloadHead, kind),
            offset_of!(crate::FlowEvent, kind)
        );
    }

    #[test]
    fn port_budgets() {
        assert_eq!(size_of::<PortBudget>(), 4);
        assert_eq!(offset_of!(PortBudget, udp), 2);
        let of = |port| DEFAULT_PORTS.iter().find(|p| p.0 == port).map(|p| p.1);
        assert_eq!(
            of(443),
            Some(PortBudget {
                tcp: [TCP_CLIENT_PACKETS, 0],
                udp: [2, 0]
            })
        );
        assert_eq!(
            of(53),
            Some(PortBudget {
                tcp: [6, 6],
                udp: [16, 16]
            })
        );
        assert_eq!(of(67).map(|b| b.udp), Some([UNLIMITED; 2]));
        assert_eq!(of(22), None);
        assert!(quic_port(443) && quic_port(8443));
        assert!(!quic_port(53) && !quic_port(80) && !quic_port(22));
        let mut ports: [u16; DEFAULT_PORTS.len()] = core::array::from_fn(|i| DEFAULT_PORTS[i].0);
        ports.sort_unstable();
        assert!(ports.windows(2).all(|w| w[0] < w[1]), "each port once");
    }
}
