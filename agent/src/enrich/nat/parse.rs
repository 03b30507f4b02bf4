//! The conntrack netlink codec: messages ctnetlink sends (events and dump replies) parsed
//! into [`CtMessage`], and the one request we send (a table dump).
//!
//! Hand-written rather than `netlink-packet-netfilter` 0.4, which lacks `CTA_ID`,
//! `CTA_TIMESTAMP`, `CTA_COUNTERS_*`, `CTA_ZONE` and the ICMP id, and allocates a vector per
//! nested attribute: this parser reads the ~20 fixed-shape attributes it needs into one
//! stack value, without allocating. Bounds discipline: every read goes through
//! [`slice::get`], every length is checked against what remains before it is used, and an
//! error names the byte offset and the attribute at fault.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `nlmsghdr` length.
const NLMSG_HDRLEN: usize = 16;
/// `nfgenmsg` length (family, version, resource id).
const NFGENMSG_LEN: usize = 4;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
/// `NFNL_SUBSYS_CTNETLINK`: the high byte of a conntrack message type.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NFNETLINK_V0: u8 = 0;
/// Attribute type bits that are flags, not type (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TIMESTAMP: u16 = 20;
// enum ctattr_tuple
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
// enum ctattr_ip
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
// enum ctattr_l4proto
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;
// enum ctattr_counters
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_COUNTERS32_PACKETS: u16 = 3;
const CTA_COUNTERS32_BYTES: u16 = 4;
// enum ctattr_tstamp
const CTA_TIMESTAMP_START: u16 = 1;
const CTA_TIMESTAMP_STOP: u16 = 2;

/// A malformed netlink message: where it is and what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("conntrack netlink message: byte {offset}: {what}")]
pub struct ParseError {
    /// Offset in the datagram of the header or attribute at fault.
    pub offset: usize,
    /// The field or attribute and what is wrong with it.
    pub what: &'static str,
}

/// Conntrack status bits (`IPS_*` in `nf_conntrack_common.h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtStatus(pub u32);

impl CtStatus {
    /// `IPS_ASSURED`: traffic seen both ways, the entry is not an early-drop candidate.
    pub const ASSURED: u32 = 1 << 2;
    /// `IPS_CONFIRMED`: the entry is in the table.
    pub const CONFIRMED: u32 = 1 << 3;
    /// `IPS_SRC_NAT`: the source was translated (SNAT, MASQUERADE).
    pub const SRC_NAT: u32 = 1 << 4;
    /// `IPS_DST_NAT`: the destination was translated (DNAT, port forwards).
    pub const DST_NAT: u32 = 1 << 5;
    /// `IPS_NAT_CLASH` (the bit of `IPS_UNTRACKED`): a UDP entry that lost an insertion race
    /// and shares its original tuple with the winner (parallel A and AAAA queries).
    pub const NAT_CLASH: u32 = 1 << 12;

    /// Whether the source was translated.
    pub const fn src_nat(self) -> bool {
        self.0 & Self::SRC_NAT != 0
    }
    /// Whether the destination was translated.
    pub const fn dst_nat(self) -> bool {
        self.0 & Self::DST_NAT != 0
    }
    /// Whether the entry is confirmed (in the table).
    pub const fn confirmed(self) -> bool {
        self.0 & Self::CONFIRMED != 0
    }
    /// Whether the entry is assured.
    pub const fn assured(self) -> bool {
        self.0 & Self::ASSURED != 0
    }
}

/// The layer-4 part of a conntrack tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP, UDP, SCTP, DCCP, UDP-Lite: ports.
    Ports {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP or ICMPv6 query: the identifier (what NAT rewrites) with type and code.
    Icmp {
        /// Echo identifier.
        id: u16,
        /// ICMP type.
        ty: u8,
        /// ICMP code.
        code: u8,
    },
    /// A protocol conntrack tracks by addresses alone (GRE without helper, ESP, ...).
    None,
}

/// One direction of a conntrack entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtTuple {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Ports or ICMP identifier.
    pub l4: L4,
}

impl CtTuple {
    /// The source port, or the ICMP identifier (what NAT translates in its place); 0 if none.
    pub const fn src_port(&self) -> u16 {
        match self.l4 {
            L4::Ports { src, .. } => src,
            L4::Icmp { id, .. } => id,
            L4::None => 0,
        }
    }
    /// The destination port, or the ICMP identifier; 0 if none.
    pub const fn dst_port(&self) -> u16 {
        match self.l4 {
            L4::Ports { dst, .. } => dst,
            L4::Icmp { id, .. } => id,
            L4::None => 0,
        }
    }
}

/// Packet and byte counters of one direction (`nf_conntrack_acct=1`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes (IP length, as conntrack counts them).
    pub bytes: u64,
}

/// One conntrack entry as ctnetlink describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtEntry {
    /// `CTA_ID`: the kernel's id of the entry, unique among live entries.
    pub id: u32,
    /// The tuple of the first packet, as it arrived (inside addresses for SNAT).
    pub orig: CtTuple,
    /// The tuple replies carry, after translation: reversed, it is the outside view.
    pub reply: CtTuple,
    /// Status bits.
    pub status: CtStatus,
    /// Conntrack zone (0: the default zone).
    pub zone: u16,
    /// Connection mark.
    pub mark: u32,
    /// Seconds until the entry times out, as of the message.
    pub timeout_s: Option<u32>,
    /// `CTA_TIMESTAMP_START`: Unix nanoseconds the entry was confirmed
    /// (`nf_conntrack_timestamp=1` when it was created).
    pub start_ns: Option<i64>,
    /// `CTA_TIMESTAMP_STOP`: Unix nanoseconds it was destroyed (destroy events).
    pub stop_ns: Option<i64>,
    /// Original-direction counters (`nf_conntrack_acct=1` when it was created).
    pub counters_orig: Option<Counters>,
    /// Reply-direction counters.
    pub counters_reply: Option<Counters>,
}

impl CtEntry {
    /// A confirmed, source-NATed TCP entry: `client -> server` seen outside as `outside`,
    /// no timestamps or counters. What tests and benchmarks feed the NAT table.
    #[cfg(any(test, feature = "testing"))]
    pub fn masqueraded_tcp(
        id: u32,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        outside: (IpAddr, u16),
    ) -> CtEntry {
        let tuple = |(src, sport): (IpAddr, u16), (dst, dport): (IpAddr, u16)| CtTuple {
            proto: 6,
            src,
            dst,
            l4: L4::Ports {
                src: sport,
                dst: dport,
            },
        };
        CtEntry {
            id,
            orig: tuple(client, server),
            reply: tuple(server, outside),
            status: CtStatus(CtStatus::SRC_NAT | CtStatus::CONFIRMED),
            zone: 0,
            mark: 0,
            timeout_s: None,
            start_ns: None,
            stop_ns: None,
            counters_orig: None,
            counters_reply: None,
        }
    }
}

/// What a conntrack message says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtKind {
    /// A new entry was confirmed (`IPCTNL_MSG_CT_NEW` with `NLM_F_CREATE`).
    New,
    /// An existing entry changed (`IPCTNL_MSG_CT_NEW` without `NLM_F_CREATE`).
    Update,
    /// The entry was destroyed (`IPCTNL_MSG_CT_DELETE`).
    Destroy,
    /// An entry listed by a dump (a multipart `IPCTNL_MSG_CT_NEW` answering our
    /// `IPCTNL_MSG_CT_GET`).
    Dumped,
}

/// One conntrack message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtMessage {
    /// What happened.
    pub kind: CtKind,
    /// To which entry.
    pub entry: CtEntry,
}

/// One netlink message of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NlItem {
    /// A conntrack entry.
    Conntrack(CtMessage),
    /// End of a dump.
    Done,
    /// `NLMSG_ERROR` with this (negative) errno; 0 is an acknowledgement.
    Error(i32),
    /// A message this parser skips (expectations, no-ops), by netlink type.
    Other(u16),
}

/// The netlink messages of one datagram, in order. Parsing stops at the first framing error,
/// since the next header's position is then unknown.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages {
        buf,
        at: 0,
        failed: false,
    }
}

/// Iterator returned by [`messages`].
pub struct Messages<'a> {
    buf: &'a [u8],
    at: usize,
    failed: bool,
}

impl Iterator for Messages<'_> {
    type Item = Result<NlItem, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.buf.len() {
            return None;
        }
        let at = self.at;
        let r = next_message(self.buf, at);
        match r {
            Ok((item, len)) => {
                self.at = at.saturating_add(align4(len));
                Some(Ok(item))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

const fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn err(offset: usize, what: &'static str) -> ParseError {
    ParseError { offset, what }
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses the message at `at`; returns it and its length.
fn next_message(buf: &[u8], at: usize) -> Result<(NlItem, usize), ParseError> {
    let len = ne_u32(buf, at).ok_or(err(at, "nlmsghdr cut short"))? as usize;
    let ty = ne_u16(buf, at + 4).ok_or(err(at, "nlmsghdr cut short"))?;
    let flags = ne_u16(buf, at + 6).ok_or(err(at, "nlmsghdr cut short"))?;
    if len < NLMSG_HDRLEN {
        return Err(err(at, "nlmsg_len below the header size"));
    }
    let body = buf
        .get(at + NLMSG_HDRLEN..at.saturating_add(len))
        .ok_or(err(at, "nlmsg_len runs past the datagram"))?;
    let body_at = at + NLMSG_HDRLEN;
    let item = match ty {
        NLMSG_DONE => NlItem::Done,
        NLMSG_ERROR => {
            let code = ne_u32(body, 0).ok_or(err(body_at, "NLMSG_ERROR without an errno"))?;
            NlItem::Error(code as i32)
        }
        NLMSG_NOOP | NLMSG_OVERRUN => NlItem::Other(ty),
        _ if ty >> 8 == NFNL_SUBSYS_CTNETLINK => {
            // Dump replies are IPCTNL_MSG_CT_NEW parts of a multipart answer; events are
            // never multipart.
            let kind = match (ty & 0xff, flags & (NLM_F_CREATE | NLM_F_EXCL | NLM_F_MULTI)) {
                (IPCTNL_MSG_CT_NEW | IPCTNL_MSG_CT_GET, f) if f & NLM_F_MULTI != 0 => {
                    CtKind::Dumped
                }
                (IPCTNL_MSG_CT_NEW, 0) => CtKind::Update,
                (IPCTNL_MSG_CT_NEW, _) => CtKind::New,
                (IPCTNL_MSG_CT_GET, _) => CtKind::Dumped,
                (IPCTNL_MSG_CT_DELETE, _) => CtKind::Destroy,
                _ => return Ok((NlItem::Other(ty), len)),
            };
            let attrs = body
                .get(NFGENMSG_LEN..)
                .ok_or(err(body_at, "nfgenmsg cut short"))?;
            let entry = parse_entry(attrs, body_at + NFGENMSG_LEN)?;
            NlItem::Conntrack(CtMessage { kind, entry })
        }
        _ => NlItem::Other(ty),
    };
    Ok((item, len))
}

/// Walks the attributes of `buf` (which sits at `base` in the datagram), calling `f` with each
/// attribute's type (flags masked off), payload and payload offset.
fn walk(
    buf: &[u8],
    base: usize,
    mut f: impl FnMut(u16, &[u8], usize) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let mut at = 0usize;
    while at < buf.len() {
        let off = base + at;
        let len = ne_u16(buf, at).ok_or(err(off, "attribute header cut short"))? as usize;
        let ty = ne_u16(buf, at + 2).ok_or(err(off, "attribute header cut short"))?;
        if len < 4 {
            return Err(err(off, "attribute length below its header"));
        }
        let payload = buf
            .get(at + 4..at + len)
            .ok_or(err(off, "attribute runs past its parent"))?;
        f(ty & NLA_TYPE_MASK, payload, off + 4)?;
        at = at.saturating_add(align4(len));
    }
    Ok(())
}

fn be_u8(p: &[u8], off: usize, what: &'static str) -> Result<u8, ParseError> {
    match p {
        [b] => Ok(*b),
        _ => Err(err(off, what)),
    }
}

fn be_u16(p: &[u8], off: usize, what: &'static str) -> Result<u16, ParseError> {
    <[u8; 2]>::try_from(p)
        .map(u16::from_be_bytes)
        .map_err(|_| err(off, what))
}

fn be_u32(p: &[u8], off: usize, what: &'static str) -> Result<u32, ParseError> {
    <[u8; 4]>::try_from(p)
        .map(u32::from_be_bytes)
        .map_err(|_| err(off, what))
}

fn be_u64(p: &[u8], off: usize, what: &'static str) -> Result<u64, ParseError> {
    <[u8; 8]>::try_from(p)
        .map(u64::from_be_bytes)
        .map_err(|_| err(off, what))
}

fn parse_entry(buf: &[u8], base: usize) -> Result<CtEntry, ParseError> {
    let (mut orig, mut reply) = (None, None);
    let (mut id, mut timeout_s) = (None, None);
    let (mut status, mut zone, mut mark) = (CtStatus::default(), 0, 0);
    let (mut start_ns, mut stop_ns) = (None, None);
    let (mut counters_orig, mut counters_reply) = (None, None);
    walk(buf, base, |ty, p, off| {
        match ty {
            CTA_TUPLE_ORIG => orig = Some(parse_tuple(p, off)?),
            CTA_TUPLE_REPLY => reply = Some(parse_tuple(p, off)?),
            CTA_STATUS => status = CtStatus(be_u32(p, off, "CTA_STATUS is not 4 bytes")?),
            CTA_TIMEOUT => timeout_s = Some(be_u32(p, off, "CTA_TIMEOUT is not 4 bytes")?),
            CTA_MARK => mark = be_u32(p, off, "CTA_MARK is not 4 bytes")?,
            CTA_ID => id = Some(be_u32(p, off, "CTA_ID is not 4 bytes")?),
            CTA_ZONE => zone = be_u16(p, off, "CTA_ZONE is not 2 bytes")?,
            CTA_COUNTERS_ORIG => counters_orig = Some(parse_counters(p, off)?),
            CTA_COUNTERS_REPLY => counters_reply = Some(parse_counters(p, off)?),
            CTA_TIMESTAMP => walk(p, off, |ty, p, off| {
                // Nanoseconds past i64 (year 2262) saturate rather than wrap negative.
                let ns = |what| be_u64(p, off, what).map(|v| i64::try_from(v).unwrap_or(i64::MAX));
                match ty {
                    CTA_TIMESTAMP_START => {
                        start_ns = Some(ns("CTA_TIMESTAMP_START is not 8 bytes")?)
                    }
                    CTA_TIMESTAMP_STOP => stop_ns = Some(ns("CTA_TIMESTAMP_STOP is not 8 bytes")?),
                    _ => {}
                }
                Ok(())
            })?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(CtEntry {
        id: id.ok_or(err(base, "no CTA_ID"))?,
        orig: orig.ok_or(err(base, "no CTA_TUPLE_ORIG"))?,
        reply: reply.ok_or(err(base, "no CTA_TUPLE_REPLY"))?,
        status,
        zone,
        mark,
        timeout_s,
        start_ns,
        stop_ns,
        counters_orig,
        counters_reply,
    })
}

fn parse_counters(buf: &[u8], base: usize) -> Result<Counters, ParseError> {
    let mut c = Counters::default();
    walk(buf, base, |ty, p, off| {
        match ty {
            CTA_COUNTERS_PACKETS => {
                c.packets = be_u64(p, off, "CTA_COUNTERS_PACKETS is not 8 bytes")?
            }
            CTA_COUNTERS_BYTES => c.bytes = be_u64(p, off, "CTA_COUNTERS_BYTES is not 8 bytes")?,
            CTA_COUNTERS32_PACKETS => {
                c.packets = be_u32(p, off, "CTA_COUNTERS32_PACKETS is not 4 bytes")?.into()
            }
            CTA_COUNTERS32_BYTES => {
                c.bytes = be_u32(p, off, "CTA_COUNTERS32_BYTES is not 4 bytes")?.into()
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(c)
}

fn parse_tuple(buf: &[u8], base: usize) -> Result<CtTuple, ParseError> {
    let (mut src, mut dst) = (None, None);
    let mut proto = None;
    let (mut sport, mut dport) = (None, None);
    let (mut icmp_id, mut icmp_ty, mut icmp_code) = (None, None, None);
    walk(buf, base, |ty, p, off| {
        match ty {
            CTA_TUPLE_IP => walk(p, off, |ty, p, off| {
                match ty {
                    CTA_IP_V4_SRC => src = Some(v4(p, off, "CTA_IP_V4_SRC is not 4 bytes")?),
                    CTA_IP_V4_DST => dst = Some(v4(p, off, "CTA_IP_V4_DST is not 4 bytes")?),
                    CTA_IP_V6_SRC => src = Some(v6(p, off, "CTA_IP_V6_SRC is not 16 bytes")?),
                    CTA_IP_V6_DST => dst = Some(v6(p, off, "CTA_IP_V6_DST is not 16 bytes")?),
                    _ => {}
                }
                Ok(())
            })?,
            CTA_TUPLE_PROTO => walk(p, off, |ty, p, off| {
                match ty {
                    CTA_PROTO_NUM => proto = Some(be_u8(p, off, "CTA_PROTO_NUM is not 1 byte")?),
                    CTA_PROTO_SRC_PORT => {
                        sport = Some(be_u16(p, off, "CTA_PROTO_SRC_PORT is not 2 bytes")?)
                    }
                    CTA_PROTO_DST_PORT => {
                        dport = Some(be_u16(p, off, "CTA_PROTO_DST_PORT is not 2 bytes")?)
                    }
                    CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => {
                        icmp_id = Some(be_u16(p, off, "CTA_PROTO_ICMP_ID is not 2 bytes")?)
                    }
                    CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                        icmp_ty = Some(be_u8(p, off, "CTA_PROTO_ICMP_TYPE is not 1 byte")?)
                    }
                    CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                        icmp_code = Some(be_u8(p, off, "CTA_PROTO_ICMP_CODE is not 1 byte")?)
                    }
                    _ => {}
                }
                Ok(())
            })?,
            _ => {}
        }
        Ok(())
    })?;
    let src = src.ok_or(err(base, "tuple without a source address"))?;
    let dst = dst.ok_or(err(base, "tuple without a destination address"))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(err(base, "tuple mixes IPv4 and IPv6 addresses"));
    }
    let proto = proto.ok_or(err(base, "tuple without CTA_PROTO_NUM"))?;
    let l4 = match (sport, dport, icmp_id) {
        (Some(src), Some(dst), _) => L4::Ports { src, dst },
        (None, None, Some(id)) => L4::Icmp {
            id,
            ty: icmp_ty.unwrap_or(0),
            code: icmp_code.unwrap_or(0),
        },
        (None, None, None) => L4::None,
        _ => return Err(err(base, "tuple has one port without the other")),
    };
    Ok(CtTuple {
        proto,
        src,
        dst,
        l4,
    })
}

fn v4(p: &[u8], off: usize, what: &'static str) -> Result<IpAddr, ParseError> {
    <[u8; 4]>::try_from(p)
        .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
        .map_err(|_| err(off, what))
}

fn v6(p: &[u8], off: usize, what: &'static str) -> Result<IpAddr, ParseError> {
    <[u8; 16]>::try_from(p)
        .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
        .map_err(|_| err(off, what))
}

/// The request that dumps the whole conntrack table of `family` (`AF_UNSPEC`: both IPv4 and
/// IPv6), with sequence number `seq`.
pub fn dump_request(seq: u32, family: u8) -> [u8; NLMSG_HDRLEN + NFGENMSG_LEN] {
    let mut m = [0u8; NLMSG_HDRLEN + NFGENMSG_LEN];
    let ty = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
    m[0..4].copy_from_slice(&((NLMSG_HDRLEN + NFGENMSG_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&ty.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m[16] = family;
    m[17] = NFNETLINK_V0;
    m
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
