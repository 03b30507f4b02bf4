//! The audit record: one flow (or one active-timeout slice of a long flow) on one interface.
//!
//! This is the type every later stage works on: enrichment adds attribution to it, the store
//! persists it, queries return it. It is built from the kernel's wire types exactly once, in
//! [`FlowRecord::from_entry`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use agent_common::{family, proto, FlowKey, FlowValue, DIR_ORIG, DIR_RESP};

use crate::clock::WallClock;
use crate::enrich::names::NameSource;

pub mod text;

pub use text::{Field, FieldDef, FIELDS};

/// Why a record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// A TCP FIN closed the flow.
    Fin,
    /// A TCP RST closed the flow.
    Rst,
    /// No packet for the inactive timeout.
    Idle,
    /// The active timeout elapsed; the flow goes on and later records carry what follows.
    Active,
    /// The agent stopped while the flow was open.
    Shutdown,
    /// The flow left the table before it ended (table pressure); counters may be short.
    Evicted,
    /// A list dropped the flow's first packet (written at once; the flow's later records
    /// carry the packets that followed).
    Drop,
    /// As [`EndReason::Drop`], and the program answered the blocked packet (NXDOMAIN for a
    /// DNS query, RST for a TCP SYN) instead of dropping it in silence (`--refuse`).
    Refused,
    /// A NAT session the program saw no flow of (the gateway's own traffic, or an interface
    /// not audited), written from its conntrack entry when it ended, so the question "who had
    /// this outside address and port" always has an answer.
    Nat,
    /// Not a flow: one rule's blocked packets dropped past the drop-record budget in one
    /// sweep (no flow was created for them), summed. `packets`, `bytes` and `dropped` count
    /// them, the times are the first and last of them, `src_ip` is their most frequent
    /// source, the other endpoint fields are zero; `status` has the distinct-source
    /// estimate and the top sources.
    Summarised,
}

impl EndReason {
    /// Every reason, for parsers and tests.
    pub const ALL: [EndReason; 10] = [
        EndReason::Fin,
        EndReason::Rst,
        EndReason::Idle,
        EndReason::Active,
        EndReason::Shutdown,
        EndReason::Evicted,
        EndReason::Drop,
        EndReason::Nat,
        EndReason::Refused,
        EndReason::Summarised,
    ];

    /// The stable name written to the log.
    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Idle => "idle",
            EndReason::Active => "active",
            EndReason::Shutdown => "shutdown",
            EndReason::Evicted => "evicted",
            EndReason::Drop => "drop",
            EndReason::Nat => "nat",
            EndReason::Refused => "refused",
            EndReason::Summarised => "summarised",
        }
    }

    /// Parses a name written by [`EndReason::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a record of this reason is the last this agent writes of its flow (an
    /// interim slice or a first drop is not: the flow goes on).
    pub const fn is_last(self) -> bool {
        !matches!(
            self,
            EndReason::Active | EndReason::Drop | EndReason::Refused
        )
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Ethernet address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(17);
        text::push_mac(&mut out, self);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

impl std::str::FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts
                .next()
                .ok_or_else(|| format!("MAC address {s:?} has fewer than 6 octets"))?;
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| format!("MAC address {s:?} has a bad octet {part:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("MAC address {s:?} has more than 6 octets"));
        }
        Ok(Mac(out))
    }
}

/// The name of an IP protocol number, or its number.
pub fn proto_name(p: u8) -> ProtoName {
    ProtoName(p)
}

/// Display adapter for [`proto_name`].
pub struct ProtoName(u8);

impl ProtoName {
    /// The name, or `None` for a protocol shown by its number.
    pub const fn as_str(&self) -> Option<&'static str> {
        match self.0 {
            proto::TCP => Some("tcp"),
            proto::UDP => Some("udp"),
            proto::ICMP => Some("icmp"),
            proto::ICMPV6 => Some("icmpv6"),
            _ => None,
        }
    }
}

impl fmt::Display for ProtoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Parses a protocol name (`tcp`, `udp`, `icmp`, `icmpv6`) or number.
pub fn parse_proto(s: &str) -> Option<u8> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Some(proto::TCP),
        "udp" => Some(proto::UDP),
        "icmp" => Some(proto::ICMP),
        "icmpv6" | "ipv6-icmp" => Some(proto::ICMPV6),
        other => other.parse().ok(),
    }
}

/// TCP flags as the conventional letters (`FSRPAUEC`), in that order.
pub fn tcp_flags_str(flags: u8) -> String {
    let mut out = Vec::with_capacity(8);
    text::push_tcp_flags(&mut out, flags);
    String::from_utf8_lossy(&out).into_owned()
}

/// One audit record.
#[derive(Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// First packet of the flow (or of this slice), Unix time in nanoseconds.
    pub time_start_ns: i64,
    /// Last packet of the flow (or of this slice), Unix time in nanoseconds.
    pub time_end_ns: i64,
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// Outer VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Inner VLAN id of a QinQ frame.
    pub vlan_inner: Option<u16>,
    /// Source MAC of the originator's first packet.
    pub src_mac: Mac,
    /// Destination MAC of the originator's first packet.
    pub dst_mac: Mac,
    /// IP protocol number.
    pub proto: u8,
    /// Originator address.
    pub src_ip: IpAddr,
    /// Originator port (ICMP: type).
    pub src_port: u16,
    /// Responder address.
    pub dst_ip: IpAddr,
    /// Responder port (ICMP: code).
    pub dst_port: u16,
    /// Packets in both directions.
    pub packets: u64,
    /// Frame bytes in both directions (Ethernet header included).
    pub bytes: u64,
    /// Of those, packets from the responder.
    pub resp_packets: u64,
    /// Of those, frame bytes from the responder.
    pub resp_bytes: u64,
    /// OR of the TCP flags of both directions.
    pub tcp_flags: u8,
    /// Of `packets`, those a list dropped.
    pub dropped: u64,
    /// The list rule behind the verdict (`FILE:LINE`), if one matched.
    pub rule: Option<String>,
    /// Why this record was written.
    pub end_reason: EndReason,
    /// Who and what behind the flow (user, host name, NAT outside tuple, domain), as the
    /// enrich stage found them at the flow's start; empty until that stage runs.
    pub attr: Attribution,
}

/// Who and what behind a flow, added by the enrich stage (`crate::enrich`) from what was true
/// at the flow's start. Every field is `None` when unknown; a record written before the
/// attribution fields existed reads back with all of them `None`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    /// The subscriber account behind the client's address or MAC.
    pub user: Option<String>,
    /// The client's host name (DHCP lease or DHCP packets).
    pub hostname: Option<String>,
    /// The outside source address the gateway's NAT gave the flow (conntrack).
    pub nat_ip: Option<IpAddr>,
    /// The outside source port the gateway's NAT gave the flow.
    pub nat_port: Option<u16>,
    /// The name the client reached (lower-case, no trailing dot, IDNA as punycode).
    pub domain: Option<String>,
    /// Where `domain` came from.
    pub domain_source: Option<NameSource>,
    /// The question of a DNS flow: the queried name.
    pub dns_qname: Option<String>,
    /// The question of a DNS flow: the query type (1 A, 28 AAAA, ...).
    pub dns_qtype: Option<u16>,
}

/// `Clone` by hand for `clone_from`, which the derive leaves at `*self = source.clone()`:
/// field by field, a text overwrites the one it replaces in place, so a stage that keeps one
/// record and copies each new one into it (the enrich stage) allocates nothing per record.
impl Clone for FlowRecord {
    fn clone(&self) -> Self {
        // The texts cloned; every other field is `Copy` (a new field that is not fails to
        // compile here).
        FlowRecord {
            iface: self.iface.clone(),
            rule: self.rule.clone(),
            attr: self.attr.clone(),
            ..*self
        }
    }

    fn clone_from(&mut self, source: &Self) {
        // The texts copied into the buffers they replace; the rest copied (`..*source`, as
        // in `clone`).
        let (mut iface, mut rule) = (std::mem::take(&mut self.iface), self.rule.take());
        let mut attr = std::mem::take(&mut self.attr);
        iface.clone_from(&source.iface);
        rule.clone_from(&source.rule);
        attr.clone_from(&source.attr);
        *self = FlowRecord {
            iface,
            rule,
            attr,
            ..*source
        };
    }
}

/// `Clone` by hand for `clone_from` (see [`FlowRecord`]'s).
impl Clone for Attribution {
    fn clone(&self) -> Self {
        let mut a = Attribution::default();
        a.clone_from(self);
        a
    }

    fn clone_from(&mut self, source: &Self) {
        let Attribution {
            user,
            hostname,
            nat_ip,
            nat_port,
            domain,
            domain_source,
            dns_qname,
            dns_qtype,
        } = self;
        user.clone_from(&source.user);
        hostname.clone_from(&source.hostname);
        *nat_ip = source.nat_ip;
        *nat_port = source.nat_port;
        domain.clone_from(&source.domain);
        *domain_source = source.domain_source;
        dns_qname.clone_from(&source.dns_qname);
        *dns_qtype = source.dns_qtype;
    }
}

impl Attribution {
    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        *self == Attribution::default()
    }
}

/// What has already been reported of a flow by interim records, so the next record carries
/// only what followed (a wire type: a pinned agent keeps it in a map beside the flow tables).
pub use agent_common::Reported;

fn key_addr(fam: u8, words: &[u32; 4]) -> IpAddr {
    let raw = FlowKey::addr_bytes(words);
    if fam == family::V4 {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(raw))
    }
}

impl FlowRecord {
    /// Builds the record of a flow-table entry, less what `reported` already carried.
    pub fn from_entry(
        key: &FlowKey,
        value: &FlowValue,
        iface: &str,
        clock: &WallClock,
        reported: &Reported,
        end_reason: EndReason,
    ) -> Self {
        let orig = (key_addr(key.family, &key.addr_a), u16::from_be(key.port_a));
        let resp = (key_addr(key.family, &key.addr_b), u16::from_be(key.port_b));
        let dir = |i: usize| {
            (
                value.packets[i].saturating_sub(reported.packets[i]),
                value.bytes[i].saturating_sub(reported.bytes[i]),
            )
        };
        let (op, ob) = dir(DIR_ORIG);
        let (rp, rb) = dir(DIR_RESP);
        let start = if reported.last_seen_ns != 0 {
            reported.last_seen_ns
        } else {
            value.first_seen_ns
        };
        FlowRecord {
            time_start_ns: clock.to_unix_ns(start),
            time_end_ns: clock.to_unix_ns(value.last_seen_ns),
            iface: iface.to_owned(),
            ifindex: key.ifindex,
            vlan: (key.vlan != 0).then_some(key.vlan),
            vlan_inner: (key.vlan_inner != 0).then_some(key.vlan_inner),
            src_mac: Mac(value.src_mac),
            dst_mac: Mac(value.dst_mac),
            proto: key.proto,
            src_ip: orig.0,
            src_port: orig.1,
            dst_ip: resp.0,
            dst_port: resp.1,
            packets: op + rp,
            bytes: ob + rb,
            resp_packets: rp,
            resp_bytes: rb,
            tcp_flags: value.tcp_flags[DIR_ORIG] | value.tcp_flags[DIR_RESP],
            // Never more than the record's packets: see `Reported::covering`.
            dropped: reported.covering(value).drops - reported.drops,
            rule: None,
            end_reason,
            attr: Attribution::default(),
        }
    }
}

/// Formats Unix nanoseconds as RFC 3339 UTC with nine fractional digits.
pub fn rfc3339_ns(unix_ns: i64) -> String {
    rfc3339_ns_bytes(unix_ns)
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

/// Formats Unix nanoseconds as RFC 3339 UTC to the second (`2026-05-03T14:00:00Z`), for
/// people reading a report; records keep [`rfc3339_ns`].
pub fn rfc3339_s(unix_ns: i64) -> String {
    // The fraction is cut, not rounded: a second is shown as begun, as clocks show it.
    let mut s = rfc3339_ns(unix_ns);
    s.replace_range(19..29, "");
    s
}

/// Length of [`rfc3339_ns`]'s text: every i64 nanosecond time lies in the years 1677 to 2262,
/// so the year always has four digits.
pub const RFC3339_NS_LEN: usize = 30;

/// [`rfc3339_ns`] as ASCII bytes on the stack, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
///
/// Hand-written (civil-from-days arithmetic) because jiff's strftime was the largest single
/// cost of printing query results; tests hold it to jiff's output byte for byte.
pub fn rfc3339_ns_bytes(unix_ns: i64) -> [u8; RFC3339_NS_LEN] {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u32;
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    let two = |out: &mut [u8; RFC3339_NS_LEN], at: usize, v: u32| {
        out[at] = b'0' + (v / 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut out, 0, year / 100);
    two(&mut out, 2, year % 100);
    two(&mut out, 5, month);
    two(&mut out, 8, day);
    two(&mut out, 11, sod / 3600);
    two(&mut out, 14, sod / 60 % 60);
    two(&mut out, 17, sod % 60);
    let mut n = nanos;
    for at in (20..29).rev() {
        out[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// The proleptic Gregorian (year, month, day) of a day count from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`). The year is in 1677..=2262 for any i64 nanosecond time.
fn civil_from_days(days: i64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146_096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1
    let mp = (5 * doy + 2) / 153; // 0..=11, March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as u32, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> (FlowKey, FlowValue) {
        let mut addr_a = [0u8; 16];
        addr_a[..4].copy_from_slice(&[10, 0, 0, 2]);
        let mut addr_b = [0u8; 16];
        addr_b[..4].copy_from_slice(&[10, 0, 0, 1]);
        let key = FlowKey {
            ifindex: 7,
            vlan: 100,
            vlan_inner: 0,
            proto: proto::TCP,
            family: family::V4,
            _pad: [0; 2],
            port_a: 51000u16.to_be(),
            port_b: 443u16.to_be(),
            addr_a: FlowKey::addr_words(&addr_a),
            addr_b: FlowKey::addr_words(&addr_b),
        };
        let value = FlowValue {
            first_seen_ns: 1_000,
            last_seen_ns: 5_000,
            end_seen_ns: 0,
            packets: [10, 8],
            bytes: [1000, 800],
            drops: 0,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            tcp_flags: [0x02 | 0x10, 0x12],
            flags: 0,
            verdict: 0,
            verdict_gen: 0,
            rule: agent_common::NO_RULE,
            isn: 0,
            snippets_left: [0; 2],
            last_tick: 0,
        };
        (key, value)
    }

    #[test]
    fn endpoint_a_is_the_originator() {
        let (key, value) = entry();
        let clock = WallClock::from_offset(1_700_000_000_000_000_000);
        let r = FlowRecord::from_entry(
            &key,
            &value,
            "eth0",
            &clock,
            &Reported::default(),
            EndReason::Fin,
        );
        assert_eq!(r.src_ip, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(r.src_port, 51000);
        assert_eq!(r.dst_port, 443);
        assert_eq!((r.packets, r.bytes), (18, 1800));
        assert_eq!((r.resp_packets, r.resp_bytes), (8, 800));
        assert_eq!(r.vlan, Some(100));
        assert_eq!(r.vlan_inner, None);
        assert_eq!(r.time_start_ns, 1_700_000_000_000_001_000);
    }

    #[test]
    fn an_active_slice_carries_only_what_followed() {
        let (key, value) = entry();
        let clock = WallClock::from_offset(0);
        let reported = Reported {
            packets: [4, 3],
            bytes: [400, 300],
            drops: 0,
            last_seen_ns: 2_000,
        };
        let r = FlowRecord::from_entry(&key, &value, "eth0", &clock, &reported, EndReason::Idle);
        assert_eq!((r.packets, r.bytes), (11, 1100));
        assert_eq!((r.resp_packets, r.resp_bytes), (5, 500));
        assert_eq!(r.time_start_ns, 2_000);
    }

    #[test]
    fn json_encoding_is_stable() {
        let (key, value) = entry();
        let clock = WallClock::from_offset(1_700_000_000_000_000_000);
        let r = FlowRecord::from_entry(
            &key,
            &value,
            "eth0",
            &clock,
            &Reported::default(),
            EndReason::Fin,
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"time_start":"2023-11-14T22:13:20.000001000Z","time_end":"2023-11-14T22:13:20.000005000Z","#,
                r#""iface":"eth0","ifindex":7,"vlan":100,"vlan_inner":null,"#,
                r#""src_mac":"02:00:00:00:00:01","dst_mac":"02:00:00:00:00:02","proto":"tcp","#,
                r#""src_ip":"10.0.0.2","src_port":51000,"dst_ip":"10.0.0.1","dst_port":443,"#,
                r#""packets":18,"bytes":1800,"resp_packets":8,"resp_bytes":800,"tcp_flags":"SA","#,
                r#""verdict":"pass","dropped":0,"rule":null,"end_reason":"fin","#,
                r#""user":null,"hostname":null,"nat_ip":null,"nat_port":null,"domain":null,"#,
                r#""domain_source":null,"dns_qname":null,"dns_qtype":null}"#
            )
        );
    }

    #[test]
    fn clone_from_equals_clone() {
        let mut g = crate::store::testgen::TrafficGen::new(11, 1_700_000_000_000_000_000);
        let records: Vec<FlowRecord> = (0..200).map(|_| g.next_record()).collect();
        let mut kept = records[0].clone();
        assert_eq!(kept, records[0]);
        for r in &records {
            kept.clone_from(r);
            assert_eq!(&kept, r, "a kept record overwritten by clone_from");
        }
        let mut attr = records
            .iter()
            .map(|r| r.attr.clone())
            .find(|a| !a.is_empty());
        if let Some(a) = attr.as_mut() {
            a.clone_from(&Attribution::default());
            assert!(
                a.is_empty(),
                "no text of the overwritten attribution is left"
            );
        }
    }

    #[test]
    fn helpers_round_trip() {
        assert_eq!(tcp_flags_str(0x1b), "FSPA");
        assert_eq!(tcp_flags_str(0), "");
        let mac: Mac = "02:AB:00:00:00:ff".parse().unwrap();
        assert_eq!(mac.to_string(), "02:ab:00:00:00:ff");
        assert!("02:ab:00".parse::<Mac>().is_err());
        assert!("02:ab:00:00:00:00:01".parse::<Mac>().is_err());
        assert_eq!(parse_proto("TCP"), Some(6));
        assert_eq!(parse_proto("47"), Some(47));
        assert_eq!(parse_proto("bogus"), None);
        for r in EndReason::ALL {
            assert_eq!(EndReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
    }

    /// What `rfc3339_ns` printed when it used jiff's strftime.
    fn jiff_rfc3339_ns(unix_ns: i64) -> String {
        match jiff::Timestamp::from_nanosecond(i128::from(unix_ns)) {
            Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
            Err(_) => format!("invalid-time({unix_ns})"),
        }
    }

    #[test]
    fn rfc3339_ns_matches_jiff() {
        let s = 1_000_000_000i64;
        let mut times = vec![
            0,
            1,
            -1,
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            i64::MAX - 1,
            -s,
            -s - 1,
        ];
        // Every day (and its last nanosecond) from 1677 to 2262.
        let mut day = i64::MIN.div_euclid(86_400 * s) + 1;
        while day * 86_400 * s < i64::MAX - 86_400 * s {
            let at = day * 86_400 * s;
            times.extend([at, at - 1, at + 12 * 3_600 * s + 59 * 60 * s + 7]);
            day += 1;
        }
        let mut rng = crate::store::testgen::Rng::new(7);
        times.extend((0..200_000).map(|_| rng.next_u64() as i64));
        for t in times {
            let fast = rfc3339_ns(t);
            assert_eq!(fast, jiff_rfc3339_ns(t), "{t}");
            assert_eq!(fast.len(), RFC3339_NS_LEN);
        }
    }
}
