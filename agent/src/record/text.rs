//! A record's text form: its fields, in output order, as the one definition that JSON (serde's
//! [`Serialize`], and the hand-written JSON Lines writer of `store::export`) and CSV are
//! written from, and the byte writers of every field kind.
//!
//! The byte writers are hand-written (no `core::fmt`, no per-field `String`) because printing
//! query results is per-record work over millions of records: `store::export`'s timing test
//! measured them 4-6x faster than `format!` and serde, and the store benchmark's `query`
//! output figures depend on it. Every writer is tested byte for byte against `Display`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::ser::{Error as _, Serialize, SerializeStruct, Serializer};

use super::{proto_name, rfc3339_ns_bytes, FlowRecord, Mac};

/// One field of a record, as its text encodings write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    /// A time, Unix ns: RFC 3339 UTC with nine fractional digits.
    Time(i64),
    /// Free text (interface name): quoted or escaped as the format needs.
    Text(&'a str),
    /// Free text or nothing (JSON `null`, an empty CSV field).
    OptText(Option<&'a str>),
    /// A number.
    Num(u64),
    /// A number or nothing (JSON `null`, an empty CSV field).
    OptNum(Option<u64>),
    /// An Ethernet address, `aa:bb:cc:dd:ee:ff`.
    Mac(Mac),
    /// An IP protocol: its name, or its number for others (text either way).
    Proto(u8),
    /// An IP address, as `IpAddr`'s `Display` writes it.
    Ip(IpAddr),
    /// An IP address or nothing (JSON `null`, an empty CSV field).
    OptIp(Option<IpAddr>),
    /// TCP flags as the letters `FSRPAUEC`.
    TcpFlags(u8),
    /// A fixed ASCII name (verdict, end reason).
    Name(&'static str),
}

impl Field<'_> {
    /// Appends the field's text, unquoted and unescaped: for the kinds whose text never needs
    /// either (times, numbers, addresses, names). Free text and absent values append nothing;
    /// each format writes those its own way.
    #[inline(always)]
    pub fn push_text(&self, out: &mut Vec<u8>) {
        match *self {
            Field::Time(t) => out.extend_from_slice(&rfc3339_ns_bytes(t)),
            Field::Num(n) | Field::OptNum(Some(n)) => push_u64(out, n),
            Field::Mac(m) => push_mac(out, &m),
            Field::Proto(p) => push_proto(out, p),
            Field::Ip(ip) | Field::OptIp(Some(ip)) => push_ip(out, &ip),
            Field::TcpFlags(f) => push_tcp_flags(out, f),
            Field::Name(n) => out.extend_from_slice(n.as_bytes()),
            Field::Text(_) | Field::OptText(_) | Field::OptNum(None) | Field::OptIp(None) => {}
        }
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Field::Text(t) => s.serialize_str(t),
            Field::OptText(t) => t.serialize(s),
            Field::Num(n) => s.serialize_u64(n),
            Field::OptNum(n) => n.serialize(s),
            Field::OptIp(None) => s.serialize_none(),
            _ => {
                let mut text = Vec::with_capacity(48);
                self.push_text(&mut text);
                s.serialize_str(std::str::from_utf8(&text).map_err(S::Error::custom)?)
            }
        }
    }
}

/// One field of the text encodings: its name, how to get it from a record, and whether CSV
/// carries it (CSV leaves out `verdict`, which `dropped` decides).
#[derive(Clone, Copy)]
pub struct FieldDef {
    /// The JSON key and CSV column name.
    pub name: &'static str,
    /// `,"name":`, made from `name` by the table's macro: the JSON Lines writer puts the
    /// separator, key and colon in with one copy.
    pub json_key: &'static str,
    /// The field of a record.
    pub get: for<'a> fn(&'a FlowRecord) -> Field<'a>,
    /// Whether CSV has the column.
    pub csv: bool,
}

/// A [`FieldDef`] from its name (a literal), getter and CSV flag (default: carried).
macro_rules! def {
    ($name:literal, $get:expr) => {
        def!($name, $get, true)
    };
    ($name:literal, $get:expr, $csv:expr) => {
        FieldDef {
            name: $name,
            json_key: concat!(",\"", $name, "\":"),
            get: $get,
            csv: $csv,
        }
    };
}

/// Every field of a record's text encodings, in output order.
pub const FIELDS: [FieldDef; 30] = [
    def!("time_start", |r| Field::Time(r.time_start_ns)),
    def!("time_end", |r| Field::Time(r.time_end_ns)),
    def!("iface", |r| Field::Text(&r.iface)),
    def!("ifindex", |r| Field::Num(r.ifindex.into())),
    def!("vlan", |r| Field::OptNum(r.vlan.map(u64::from))),
    def!("vlan_inner", |r| Field::OptNum(r.vlan_inner.map(u64::from))),
    def!("src_mac", |r| Field::Mac(r.src_mac)),
    def!("dst_mac", |r| Field::Mac(r.dst_mac)),
    def!("proto", |r| Field::Proto(r.proto)),
    def!("src_ip", |r| Field::Ip(r.src_ip)),
    def!("src_port", |r| Field::Num(r.src_port.into())),
    def!("dst_ip", |r| Field::Ip(r.dst_ip)),
    def!("dst_port", |r| Field::Num(r.dst_port.into())),
    def!("packets", |r| Field::Num(r.packets)),
    def!("bytes", |r| Field::Num(r.bytes)),
    def!("resp_packets", |r| Field::Num(r.resp_packets)),
    def!("resp_bytes", |r| Field::Num(r.resp_bytes)),
    def!("tcp_flags", |r| Field::TcpFlags(r.tcp_flags)),
    def!(
        "verdict",
        |r| Field::Name(if r.dropped > 0 { "drop" } else { "pass" }),
        false
    ),
    def!("dropped", |r| Field::Num(r.dropped)),
    def!("rule", |r| Field::OptText(r.rule.as_deref())),
    def!("end_reason", |r| Field::Name(r.end_reason.as_str())),
    // The attribution (`record::Attribution`), after the fields of earlier versions, so CSV
    // readers that pick columns by position keep working.
    def!("user", |r| Field::OptText(r.attr.user.as_deref())),
    def!("hostname", |r| Field::OptText(r.attr.hostname.as_deref())),
    def!("nat_ip", |r| Field::OptIp(r.attr.nat_ip)),
    def!("nat_port", |r| Field::OptNum(
        r.attr.nat_port.map(u64::from)
    )),
    def!("domain", |r| Field::OptText(r.attr.domain.as_deref())),
    def!("domain_source", |r| Field::OptText(
        r.attr.domain_source.map(|s| s.as_str())
    )),
    def!("dns_qname", |r| Field::OptText(r.attr.dns_qname.as_deref())),
    def!("dns_qtype", |r| Field::OptNum(
        r.attr.dns_qtype.map(u64::from)
    )),
];

/// Expands `$each!(i)` for every index `i` of [`FIELDS`], in order: writers on the hot path
/// walk the table unrolled, so each field's getter is a known function the compiler inlines
/// (a loop over the table calls through a pointer per field: twice the cost per record).
macro_rules! each_field {
    ($each:ident) => {
        $each!(0);
        $each!(1);
        $each!(2);
        $each!(3);
        $each!(4);
        $each!(5);
        $each!(6);
        $each!(7);
        $each!(8);
        $each!(9);
        $each!(10);
        $each!(11);
        $each!(12);
        $each!(13);
        $each!(14);
        $each!(15);
        $each!(16);
        $each!(17);
        $each!(18);
        $each!(19);
        $each!(20);
        $each!(21);
        $each!(22);
        $each!(23);
        $each!(24);
        $each!(25);
        $each!(26);
        $each!(27);
        $each!(28);
        $each!(29);
    };
}
pub(crate) use each_field;

// `each_field!` lists every index of the table, no more.
const _: () = assert!(FIELDS.len() == 30);

impl Serialize for FlowRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FlowRecord", FIELDS.len())?;
        for f in &FIELDS {
            st.serialize_field(f.name, &(f.get)(self))?;
        }
        st.end()
    }
}

/// `n` in decimal, as `Display` writes it.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(Decimal::new(n).as_bytes());
}

/// A number's decimal digits on the stack ([`push_u64`]'s), for a `String` as well.
pub struct Decimal {
    digits: [u8; 20],
    at: usize,
}

impl Decimal {
    /// The digits of `n`, as `Display` writes them.
    #[inline]
    pub fn new(mut n: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { digits, at }
    }

    /// The digits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[self.at..]
    }

    /// The digits as text (ASCII digits only, so never empty).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

/// `n` in lowercase hexadecimal without leading zeros, as `{:x}` writes it.
#[inline]
pub fn push_hex(out: &mut Vec<u8>, n: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut shift = 12;
    while shift > 0 && n >> shift == 0 {
        shift -= 4;
    }
    loop {
        out.push(HEX[usize::from((n >> shift) & 0xf)]);
        if shift == 0 {
            break;
        }
        shift -= 4;
    }
}

/// Six lowercase hex pairs joined by `:` ([`Mac`]'s `Display`).
#[inline]
pub fn push_mac(out: &mut Vec<u8>, mac: &Mac) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in mac.0.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// As [`proto_name`]'s `Display`.
#[inline]
pub fn push_proto(out: &mut Vec<u8>, p: u8) {
    match proto_name(p).as_str() {
        Some(name) => out.extend_from_slice(name.as_bytes()),
        None => push_u64(out, u64::from(p)),
    }
}

/// The letters `FSRPAUEC` of the set flags, in that order.
#[inline]
pub fn push_tcp_flags(out: &mut Vec<u8>, flags: u8) {
    for (bit, letter) in b"FSRPAUEC".iter().enumerate() {
        if flags & (1 << bit) != 0 {
            out.push(*letter);
        }
    }
}

/// As `IpAddr`'s `Display` (and serde's string form of it).
#[inline]
pub fn push_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(a) => push_ipv4(out, a),
        IpAddr::V6(a) => push_ipv6(out, a),
    }
}

#[inline]
fn push_ipv4(out: &mut Vec<u8>, a: &Ipv4Addr) {
    for (i, octet) in a.octets().iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_u64(out, u64::from(*octet));
    }
}

/// As `Ipv6Addr`'s `Display`: `::ffff:a.b.c.d` for v4-mapped addresses, otherwise hex groups
/// with the first longest run of two or more zero groups shortened to `::` (RFC 5952).
#[inline]
fn push_ipv6(out: &mut Vec<u8>, a: &Ipv6Addr) {
    if let Some(v4) = a.to_ipv4_mapped() {
        out.extend_from_slice(b"::ffff:");
        push_ipv4(out, &v4);
        return;
    }
    let groups = a.segments();
    let (mut best_start, mut best_len, mut start, mut len) = (0, 0, 0, 0);
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if len == 0 {
                start = i;
            }
            len += 1;
            if len > best_len {
                (best_start, best_len) = (start, len);
            }
        } else {
            len = 0;
        }
    }
    let joined = |out: &mut Vec<u8>, part: &[u16]| {
        for (i, &g) in part.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            push_hex(out, g);
        }
    };
    if best_len > 1 {
        joined(out, &groups[..best_start]);
        out.extend_from_slice(b"::");
        joined(out, &groups[best_start + best_len..]);
    } else {
        joined(out, &groups);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testgen::Rng;

    #[test]
    fn ipv6_text_matches_display() {
        let mut rng = Rng::new(3);
        for i in 0..200_000u32 {
            // Mostly zero groups, so every placement and length of zero runs comes up.
            let mut groups = [0u16; 8];
            for g in &mut groups {
                *g = match rng.below(4) {
                    0 => rng.next_u64() as u16,
                    1 => rng.below(16) as u16,
                    _ => 0,
                };
            }
            if i % 16 == 0 {
                groups[..5].fill(0);
                groups[5] = 0xffff;
            }
            let a = Ipv6Addr::from(groups);
            let mut out = Vec::new();
            push_ipv6(&mut out, &a);
            assert_eq!(String::from_utf8_lossy(&out), a.to_string(), "{groups:x?}");
        }
        for n in (0..=u16::MAX).step_by(7).chain([u16::MAX]) {
            let mut out = Vec::new();
            push_hex(&mut out, n);
            assert_eq!(String::from_utf8_lossy(&out), format!("{n:x}"));
        }
    }

    #[test]
    fn numbers_and_protocols_match_display() {
        let mut rng = Rng::new(4);
        for n in (0..1000).chain([u64::MAX, u64::MAX - 1, 1 << 63]) {
            let n = if n >= 1000 { n } else { n * rng.below(1 << 40) };
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(String::from_utf8_lossy(&out), n.to_string());
        }
        for p in 0..=u8::MAX {
            let mut out = Vec::new();
            push_proto(&mut out, p);
            assert_eq!(String::from_utf8_lossy(&out), proto_name(p).to_string());
        }
    }
}
