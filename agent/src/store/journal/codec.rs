//! The journal's record payload: one [`FlowRecord`] in a compact binary form (about 60
//! bytes, 80 with an attribution), encoded on the record path and decoded, without copying
//! its strings, by the seal.

use std::net::IpAddr;

use crate::enrich::names::NameSource;
use crate::record::{Attribution, EndReason, FlowRecord, Mac};
use crate::store::address::{ip_from_column, ip_to_column, v4_to_column};
use crate::store::varint;

/// A payload that does not decode; names the field and the byte offset inside the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record payload: field {field} at byte {offset}: {reason}")]
pub struct DecodeError {
    /// The field being decoded.
    pub field: &'static str,
    /// Byte offset inside the payload.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

const F_VLAN: u8 = 1;
const F_VLAN_INNER: u8 = 2;
const F_SRC_V6: u8 = 4;
const F_DST_V6: u8 = 8;
/// The record carries list-enforcement fields (dropped packets, rule).
const F_LISTS: u8 = 16;
/// The record carries an attribution section (journals written before it never set it).
const F_ATTR: u8 = 32;
/// The attribution's NAT address is IPv6 (only with a NAT address).
const F_NAT_V6: u8 = 64;
/// Every flag bit a payload may set.
const F_ALL: u8 = F_VLAN | F_VLAN_INNER | F_SRC_V6 | F_DST_V6 | F_LISTS | F_ATTR | F_NAT_V6;

/// Presence bits of the attribution section, one per [`Attribution`] field, in the order the
/// fields follow them.
mod present {
    pub const USER: u8 = 1;
    pub const HOSTNAME: u8 = 2;
    pub const NAT_IP: u8 = 4;
    pub const NAT_PORT: u8 = 8;
    pub const DOMAIN: u8 = 16;
    pub const DOMAIN_SOURCE: u8 = 32;
    pub const DNS_QNAME: u8 = 64;
    pub const DNS_QTYPE: u8 = 128;
}

/// The payload codes of name sources: a code is its index here. Part of the format: a new
/// source takes the next code, and no code is ever reused (so this is not
/// `NameSource::ALL`, whose order is the declaration's; [`name_source_code`] is exhaustive,
/// so a new source cannot be encoded before it has a code).
const NAME_SOURCES: [NameSource; 6] = [
    NameSource::Sni,
    NameSource::QuicSni,
    NameSource::HttpHost,
    NameSource::Dns,
    NameSource::Ech,
    NameSource::EchOuter,
];

fn name_source_code(s: NameSource) -> u8 {
    match s {
        NameSource::Sni => 0,
        NameSource::QuicSni => 1,
        NameSource::HttpHost => 2,
        NameSource::Dns => 3,
        NameSource::Ech => 4,
        NameSource::EchOuter => 5,
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The payload code of an end reason: its index in [`EndReason::ALL`].
fn end_reason_code(r: EndReason) -> u8 {
    match r {
        EndReason::Fin => 0,
        EndReason::Rst => 1,
        EndReason::Idle => 2,
        EndReason::Active => 3,
        EndReason::Shutdown => 4,
        EndReason::Evicted => 5,
        EndReason::Drop => 6,
        EndReason::Nat => 7,
        EndReason::Refused => 8,
        EndReason::Summarised => 9,
    }
}

/// Appends the compact binary form of `r` to `out`.
///
/// Layout: flags u8 (1 = vlan, 2 = inner vlan, 4 = source IPv6, 8 = destination IPv6,
/// 16 = list fields) | time_start i64 | zigzag varint (time_end - time_start) | varint
/// ifindex | varint name length, name | vlan u16? | inner vlan u16? | source MAC 6 |
/// destination MAC 6 | proto u8 | source address 4/16 | destination address 4/16 | source
/// port u16 | destination port u16 | varint packets, bytes, responder packets, responder
/// bytes | TCP flags u8 | end reason u8 | with flag 16 only: varint dropped | varint rule
/// length, rule | with flag 32 only: the attribution section (see [`encode_attribution`];
/// flag 64: its NAT address is IPv6).
pub fn encode_record(r: &FlowRecord, out: &mut Vec<u8>) {
    let mut flags = 0;
    if r.vlan.is_some() {
        flags |= F_VLAN;
    }
    if r.vlan_inner.is_some() {
        flags |= F_VLAN_INNER;
    }
    if r.src_ip.is_ipv6() {
        flags |= F_SRC_V6;
    }
    if r.dst_ip.is_ipv6() {
        flags |= F_DST_V6;
    }
    if r.dropped != 0 || r.rule.is_some() {
        flags |= F_LISTS;
    }
    if !r.attr.is_empty() {
        flags |= F_ATTR;
    }
    if r.attr.nat_ip.is_some_and(|ip| ip.is_ipv6()) {
        flags |= F_NAT_V6;
    }
    out.push(flags);
    out.extend_from_slice(&r.time_start_ns.to_le_bytes());
    varint::put(out, zigzag(r.time_end_ns.wrapping_sub(r.time_start_ns)));
    varint::put(out, u64::from(r.ifindex));
    varint::put(out, r.iface.len() as u64);
    out.extend_from_slice(r.iface.as_bytes());
    if let Some(v) = r.vlan {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if let Some(v) = r.vlan_inner {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&r.src_mac.0);
    out.extend_from_slice(&r.dst_mac.0);
    out.push(r.proto);
    for ip in [r.src_ip, r.dst_ip] {
        match ip {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    out.extend_from_slice(&r.src_port.to_le_bytes());
    out.extend_from_slice(&r.dst_port.to_le_bytes());
    for v in [r.packets, r.bytes, r.resp_packets, r.resp_bytes] {
        varint::put(out, v);
    }
    out.push(r.tcp_flags);
    out.push(end_reason_code(r.end_reason));
    if flags & F_LISTS != 0 {
        varint::put(out, r.dropped);
        let rule = r.rule.as_deref().unwrap_or("");
        varint::put(out, rule.len() as u64);
        out.extend_from_slice(rule.as_bytes());
    }
    if flags & F_ATTR != 0 {
        encode_attribution(&r.attr, out);
    }
}

/// What a shortened text starts with, in place of the bytes taken from its start.
pub const SHORTENED: &str = "…";

/// `r` with its longest texts cut to one common length, just short enough for its payload to
/// fit in `max` bytes. A cut text keeps its end after [`SHORTENED`]: a rule's end is the list
/// file's name and the line, a name's end its domain. In practice only a rule (`FILE:LINE`,
/// the path as the operator gave it) is ever that long; one common length means no text is
/// cut to nothing while another stays long. The record is never dropped for its length.
pub fn shorten_to_fit(r: &FlowRecord, max: usize) -> FlowRecord {
    let mut r = r.clone();
    let mut buf = Vec::with_capacity(max + 64);
    loop {
        buf.clear();
        encode_record(&r, &mut buf);
        let excess = buf.len().saturating_sub(max);
        if excess == 0 {
            return r;
        }
        let a = &mut r.attr;
        let mut texts: Vec<&mut String> = [
            r.rule.as_mut(),
            a.user.as_mut(),
            a.hostname.as_mut(),
            a.domain.as_mut(),
            a.dns_qname.as_mut(),
            Some(&mut r.iface),
        ]
        .into_iter()
        .flatten()
        .collect();
        let cap = common_cap(texts.iter().map(|t| t.len()), excess);
        let mut cut = false;
        for t in texts.iter_mut().filter(|t| t.len() > cap) {
            **t = keep_end(t, cap.saturating_sub(SHORTENED.len()));
            cut = true;
        }
        if !cut {
            // Every text is down to the marker: the fixed fields alone are far under any
            // frame's limit, so this is not reached; the record is written as it is.
            return r;
        }
    }
}

/// The largest length `cap` (at least [`SHORTENED`]'s) such that cutting every text longer
/// than it down to it takes `excess` bytes or more.
fn common_cap(lens: impl Iterator<Item = usize> + Clone, excess: usize) -> usize {
    let taken = |cap: usize| -> usize { lens.clone().map(|l| l.saturating_sub(cap)).sum() };
    let (mut lo, mut hi) = (SHORTENED.len(), lens.clone().max().unwrap_or(0));
    if hi <= lo || taken(lo) < excess {
        return lo;
    }
    // taken(lo) >= excess and taken(hi) == 0 < excess: find the last cap that still takes
    // enough.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if taken(mid) >= excess {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// [`SHORTENED`] and the last `keep` bytes of `t` at most (fewer, to start on a character).
fn keep_end(t: &str, keep: usize) -> String {
    let mut at = t.len().saturating_sub(keep);
    while !t.is_char_boundary(at) {
        at += 1;
    }
    format!("{SHORTENED}{}", &t[at..])
}

/// Appends the attribution section: a presence byte (1 user, 2 hostname, 4 NAT address,
/// 8 NAT port, 16 domain, 32 domain source, 64 DNS question name, 128 DNS question type),
/// then the fields present, in that order: texts as varint length and UTF-8, the NAT address
/// as 4 or 16 bytes (the record's flag 64 says which), ports and types as u16, the domain
/// source as a u8 code ([`NAME_SOURCES`]).
fn encode_attribution(a: &Attribution, out: &mut Vec<u8>) {
    let bit = |b: bool, v: u8| if b { v } else { 0 };
    out.push(
        bit(a.user.is_some(), present::USER)
            | bit(a.hostname.is_some(), present::HOSTNAME)
            | bit(a.nat_ip.is_some(), present::NAT_IP)
            | bit(a.nat_port.is_some(), present::NAT_PORT)
            | bit(a.domain.is_some(), present::DOMAIN)
            | bit(a.domain_source.is_some(), present::DOMAIN_SOURCE)
            | bit(a.dns_qname.is_some(), present::DNS_QNAME)
            | bit(a.dns_qtype.is_some(), present::DNS_QTYPE),
    );
    let text = |out: &mut Vec<u8>, t: &Option<String>| {
        if let Some(t) = t {
            varint::put(out, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
    };
    text(out, &a.user);
    text(out, &a.hostname);
    match a.nat_ip {
        Some(IpAddr::V4(ip)) => out.extend_from_slice(&ip.octets()),
        Some(IpAddr::V6(ip)) => out.extend_from_slice(&ip.octets()),
        None => {}
    }
    if let Some(p) = a.nat_port {
        out.extend_from_slice(&p.to_le_bytes());
    }
    text(out, &a.domain);
    if let Some(s) = a.domain_source {
        out.push(name_source_code(s));
    }
    text(out, &a.dns_qname);
    if let Some(t) = a.dns_qtype {
        out.extend_from_slice(&t.to_le_bytes());
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, field: &'static str, reason: &'static str) -> DecodeError {
        DecodeError {
            field,
            offset: self.pos,
            reason,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err(field, "payload ends early"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match varint::get::<u64>(rest) {
            Ok((v, used)) => {
                self.pos += used;
                Ok(v)
            }
            Err(varint::VarintError::Cut) => Err(self.err(field, "payload ends early")),
            Err(varint::VarintError::Overflow(_)) => Err(self.err(field, "varint over 64 bits")),
        }
    }

    /// An address in the 16-byte column form.
    fn ip(&mut self, v6: bool, field: &'static str) -> Result<[u8; 16], DecodeError> {
        if v6 {
            self.array::<16>(field)
        } else {
            Ok(v4_to_column(self.array::<4>(field)?))
        }
    }

    fn text(&mut self, len: u64, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = usize::try_from(len).map_err(|_| self.err(field, "length exceeds memory"))?;
        let raw = self.take(len, field)?;
        std::str::from_utf8(raw).map_err(|_| self.err(field, "not UTF-8"))
    }
}

/// A decoded payload that borrows its strings from the journal bytes and holds addresses in
/// the 16-byte column form: sealing copies it straight into column buffers, so decoding a
/// journal for a seal allocates nothing per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// See [`FlowRecord::time_start_ns`].
    pub time_start_ns: i64,
    /// See [`FlowRecord::time_end_ns`].
    pub time_end_ns: i64,
    /// See [`FlowRecord::iface`].
    pub iface: &'a str,
    /// See [`FlowRecord::ifindex`].
    pub ifindex: u32,
    /// See [`FlowRecord::vlan`].
    pub vlan: Option<u16>,
    /// See [`FlowRecord::vlan_inner`].
    pub vlan_inner: Option<u16>,
    /// See [`FlowRecord::src_mac`].
    pub src_mac: [u8; 6],
    /// See [`FlowRecord::dst_mac`].
    pub dst_mac: [u8; 6],
    /// See [`FlowRecord::proto`].
    pub proto: u8,
    /// [`FlowRecord::src_ip`] in the 16-byte column form.
    pub src_ip: [u8; 16],
    /// Whether `src_ip` is an IPv6 address (an IPv4-mapped IPv6 address stays IPv6).
    pub src_v6: bool,
    /// See [`FlowRecord::src_port`].
    pub src_port: u16,
    /// [`FlowRecord::dst_ip`] in the 16-byte column form.
    pub dst_ip: [u8; 16],
    /// Whether `dst_ip` is an IPv6 address.
    pub dst_v6: bool,
    /// See [`FlowRecord::dst_port`].
    pub dst_port: u16,
    /// See [`FlowRecord::packets`].
    pub packets: u64,
    /// See [`FlowRecord::bytes`].
    pub bytes: u64,
    /// See [`FlowRecord::resp_packets`].
    pub resp_packets: u64,
    /// See [`FlowRecord::resp_bytes`].
    pub resp_bytes: u64,
    /// See [`FlowRecord::tcp_flags`].
    pub tcp_flags: u8,
    /// See [`FlowRecord::dropped`].
    pub dropped: u64,
    /// See [`FlowRecord::rule`].
    pub rule: Option<&'a str>,
    /// See [`FlowRecord::end_reason`].
    pub end_reason: EndReason,
    /// See [`FlowRecord::attr`].
    pub attr: AttrView<'a>,
}

/// An [`Attribution`] borrowing its strings from the journal bytes, its NAT address in the
/// 16-byte column form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttrView<'a> {
    /// See [`Attribution::user`].
    pub user: Option<&'a str>,
    /// See [`Attribution::hostname`].
    pub hostname: Option<&'a str>,
    /// [`Attribution::nat_ip`] in the 16-byte column form.
    pub nat_ip: Option<[u8; 16]>,
    /// Whether `nat_ip` is an IPv6 address (an IPv4-mapped IPv6 address stays IPv6).
    pub nat_v6: bool,
    /// See [`Attribution::nat_port`].
    pub nat_port: Option<u16>,
    /// See [`Attribution::domain`].
    pub domain: Option<&'a str>,
    /// See [`Attribution::domain_source`].
    pub domain_source: Option<NameSource>,
    /// See [`Attribution::dns_qname`].
    pub dns_qname: Option<&'a str>,
    /// See [`Attribution::dns_qtype`].
    pub dns_qtype: Option<u16>,
}

impl<'a> AttrView<'a> {
    /// The view of an owned attribution.
    pub fn of(a: &'a Attribution) -> Self {
        AttrView {
            user: a.user.as_deref(),
            hostname: a.hostname.as_deref(),
            nat_ip: a.nat_ip.map(ip_to_column),
            nat_v6: a.nat_ip.is_some_and(|ip| ip.is_ipv6()),
            nat_port: a.nat_port,
            domain: a.domain.as_deref(),
            domain_source: a.domain_source,
            dns_qname: a.dns_qname.as_deref(),
            dns_qtype: a.dns_qtype,
        }
    }

    /// The owned attribution.
    pub fn to_attribution(&self) -> Attribution {
        Attribution {
            user: self.user.map(str::to_owned),
            hostname: self.hostname.map(str::to_owned),
            nat_ip: self.nat_ip.map(|a| ip_from_column(a, self.nat_v6)),
            nat_port: self.nat_port,
            domain: self.domain.map(str::to_owned),
            domain_source: self.domain_source,
            dns_qname: self.dns_qname.map(str::to_owned),
            dns_qtype: self.dns_qtype,
        }
    }
}

impl<'a> RecordView<'a> {
    /// The view of an owned record (tests and benchmarks build column buffers from
    /// generated records this way).
    pub fn of(r: &'a FlowRecord) -> Self {
        RecordView {
            time_start_ns: r.time_start_ns,
            time_end_ns: r.time_end_ns,
            iface: &r.iface,
            ifindex: r.ifindex,
            vlan: r.vlan,
            vlan_inner: r.vlan_inner,
            src_mac: r.src_mac.0,
            dst_mac: r.dst_mac.0,
            proto: r.proto,
            src_ip: ip_to_column(r.src_ip),
            src_v6: r.src_ip.is_ipv6(),
            src_port: r.src_port,
            dst_ip: ip_to_column(r.dst_ip),
            dst_v6: r.dst_ip.is_ipv6(),
            dst_port: r.dst_port,
            packets: r.packets,
            bytes: r.bytes,
            resp_packets: r.resp_packets,
            resp_bytes: r.resp_bytes,
            tcp_flags: r.tcp_flags,
            dropped: r.dropped,
            rule: r.rule.as_deref(),
            end_reason: r.end_reason,
            attr: AttrView::of(&r.attr),
        }
    }

    /// The owned record.
    pub fn to_record(&self) -> FlowRecord {
        FlowRecord {
            time_start_ns: self.time_start_ns,
            time_end_ns: self.time_end_ns,
            iface: self.iface.to_owned(),
            ifindex: self.ifindex,
            vlan: self.vlan,
            vlan_inner: self.vlan_inner,
            src_mac: Mac(self.src_mac),
            dst_mac: Mac(self.dst_mac),
            proto: self.proto,
            src_ip: ip_from_column(self.src_ip, self.src_v6),
            src_port: self.src_port,
            dst_ip: ip_from_column(self.dst_ip, self.dst_v6),
            dst_port: self.dst_port,
            packets: self.packets,
            bytes: self.bytes,
            resp_packets: self.resp_packets,
            resp_bytes: self.resp_bytes,
            tcp_flags: self.tcp_flags,
            dropped: self.dropped,
            rule: self.rule.map(str::to_owned),
            end_reason: self.end_reason,
            attr: self.attr.to_attribution(),
        }
    }
}

/// Decodes a payload written by [`encode_record`] without copying its strings; the whole
/// payload must be consumed.
pub fn decode_view(buf: &[u8]) -> Result<RecordView<'_>, DecodeError> {
    let mut c = Cursor { buf, pos: 0 };
    let flags = c.u8("flags")?;
    if flags & !F_ALL != 0 {
        return Err(c.err("flags", "unknown flag bits"));
    }
    let time_start_ns = i64::from_le_bytes(c.array("time_start")?);
    let time_end_ns = time_start_ns.wrapping_add(unzigzag(c.varint("time_end")?));
    let ifindex =
        u32::try_from(c.varint("ifindex")?).map_err(|_| c.err("ifindex", "exceeds u32"))?;
    let name_len = c.varint("iface")?;
    let iface = c.text(name_len, "iface")?;
    let vlan = (flags & F_VLAN != 0).then(|| c.u16("vlan")).transpose()?;
    let vlan_inner = (flags & F_VLAN_INNER != 0)
        .then(|| c.u16("vlan_inner"))
        .transpose()?;
    let src_mac = c.array("src_mac")?;
    let dst_mac = c.array("dst_mac")?;
    let proto = c.u8("proto")?;
    let src_v6 = flags & F_SRC_V6 != 0;
    let dst_v6 = flags & F_DST_V6 != 0;
    let src_ip = c.ip(src_v6, "src_ip")?;
    let dst_ip = c.ip(dst_v6, "dst_ip")?;
    let src_port = c.u16("src_port")?;
    let dst_port = c.u16("dst_port")?;
    let packets = c.varint("packets")?;
    let bytes = c.varint("bytes")?;
    let resp_packets = c.varint("resp_packets")?;
    let resp_bytes = c.varint("resp_bytes")?;
    let tcp_flags = c.u8("tcp_flags")?;
    let code = c.u8("end_reason")?;
    let end_reason = *EndReason::ALL
        .get(usize::from(code))
        .ok_or_else(|| c.err("end_reason", "unknown code"))?;
    let (dropped, rule) = if flags & F_LISTS != 0 {
        let dropped = c.varint("dropped")?;
        let len = c.varint("rule")?;
        let rule = c.text(len, "rule")?;
        (dropped, (!rule.is_empty()).then_some(rule))
    } else {
        (0, None)
    };
    let attr = if flags & F_ATTR != 0 {
        decode_attribution(&mut c, flags & F_NAT_V6 != 0)?
    } else if flags & F_NAT_V6 != 0 {
        return Err(c.err("flags", "NAT address family without an attribution"));
    } else {
        AttrView::default()
    };
    if c.pos != buf.len() {
        return Err(c.err("end", "trailing bytes after the record"));
    }
    Ok(RecordView {
        time_start_ns,
        time_end_ns,
        iface,
        ifindex,
        vlan,
        vlan_inner,
        src_mac,
        dst_mac,
        proto,
        src_ip,
        src_v6,
        src_port,
        dst_ip,
        dst_v6,
        dst_port,
        packets,
        bytes,
        resp_packets,
        resp_bytes,
        tcp_flags,
        dropped,
        rule,
        end_reason,
        attr,
    })
}

/// Decodes the attribution section written by [`encode_attribution`]. Only the encoder's own
/// form is accepted (a section with nothing in it, or a family flag without an address, is
/// refused), so a damaged journal is less likely to resynchronise on a false frame.
fn decode_attribution<'a>(c: &mut Cursor<'a>, nat_v6: bool) -> Result<AttrView<'a>, DecodeError> {
    let bits = c.u8("attribution")?;
    if bits == 0 {
        return Err(c.err("attribution", "flag set but no field present"));
    }
    if nat_v6 && bits & present::NAT_IP == 0 {
        return Err(c.err("nat_ip", "IPv6 flag without an address"));
    }
    let has = |b: u8| bits & b != 0;
    let text = |c: &mut Cursor<'a>, b: u8, field: &'static str| {
        if !has(b) {
            return Ok(None);
        }
        let len = c.varint(field)?;
        c.text(len, field).map(Some)
    };
    let user = text(c, present::USER, "user")?;
    let hostname = text(c, present::HOSTNAME, "hostname")?;
    let nat_ip = has(present::NAT_IP)
        .then(|| c.ip(nat_v6, "nat_ip"))
        .transpose()?;
    let nat_port = has(present::NAT_PORT)
        .then(|| c.u16("nat_port"))
        .transpose()?;
    let domain = text(c, present::DOMAIN, "domain")?;
    let domain_source = if has(present::DOMAIN_SOURCE) {
        let code = c.u8("domain_source")?;
        Some(
            *NAME_SOURCES
                .get(usize::from(code))
                .ok_or_else(|| c.err("domain_source", "unknown code"))?,
        )
    } else {
        None
    };
    let dns_qname = text(c, present::DNS_QNAME, "dns_qname")?;
    let dns_qtype = has(present::DNS_QTYPE)
        .then(|| c.u16("dns_qtype"))
        .transpose()?;
    Ok(AttrView {
        user,
        hostname,
        nat_ip,
        nat_v6,
        nat_port,
        domain,
        domain_source,
        dns_qname,
        dns_qtype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testgen::TrafficGen;

    #[test]
    fn every_record_shape_round_trips_through_the_payload() {
        let mut g = TrafficGen::new(7, 1_700_000_000_000_000_000);
        let mut buf = Vec::new();
        for i in 0..20_000 {
            let mut r = g.next_record();
            if i % 7 == 0 {
                r.vlan = Some(4094);
                r.vlan_inner = Some(i as u16 % 4096);
            }
            if i % 11 == 0 {
                r.time_end_ns = r.time_start_ns - 5; // clocks can step back
                r.iface = "a-very-long-interface-name-ü".into();
                r.packets = u64::MAX;
            }
            buf.clear();
            encode_record(&r, &mut buf);
            let back = decode_view(&buf)
                .map(|v| v.to_record())
                .unwrap_or_else(|e| panic!("record {i}: {e}"));
            assert_eq!(back, r, "record {i} changed in the round trip");
            assert_eq!(
                RecordView::of(&r).to_record(),
                r,
                "record {i} through a view"
            );
        }
    }
}
