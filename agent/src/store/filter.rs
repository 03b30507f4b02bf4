//! What a query looks for ([`Filter`]) and the parsers of its values: times, the NAT outside
//! tuple ([`NatFilter`]), domain names ([`DomainFilter`]). A record matches when every set
//! condition holds; [`Filter::matches`] is the one definition every path (segments, journals,
//! tests) is held to.

use std::net::IpAddr;
use std::str::FromStr;

use super::address::ip_to_column;
use crate::net::Net;
use crate::record::{FlowRecord, Mac};

/// The `--ip` / `--cidr` filter: the one prefix type ([`crate::net::Prefix`]), parsed as list
/// files are (strictly: host bits set after the prefix is an error).
pub use crate::net::Prefix as Cidr;

/// Whether the 16-byte column form of an address is inside `net` (a prefix in column form,
/// [`Cidr::to_v6_mapped`]).
pub fn in_column(net: Net<u128>, a: &[u8; 16]) -> bool {
    net.contains(u128::from_be_bytes(*a))
}

/// What to look for. Every set condition must hold.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Either address inside this prefix (`--ip` is a host prefix).
    pub cidr: Option<Cidr>,
    /// Either port equal (ICMP: type or code).
    pub port: Option<u16>,
    /// Either MAC equal.
    pub mac: Option<Mac>,
    /// IP protocol number.
    pub proto: Option<u8>,
    /// Flows active at or after this time (Unix ns): newest packet >= since.
    pub since_ns: Option<i64>,
    /// Flows active before this time (Unix ns): first packet < until.
    pub until_ns: Option<i64>,
    /// The subscriber account, exactly (case counts: accounts are identifiers).
    pub user: Option<String>,
    /// The domain or the DNS question name is this name or a name under it.
    pub domain: Option<DomainFilter>,
    /// The NAT outside address (and port).
    pub nat: Option<NatFilter>,
    /// The list rule behind the verdict: `FILE:LINE`, or `FILE` for every rule of that file.
    pub rule: Option<String>,
    /// Ignore the segments' address index and test every row group's address columns, as for
    /// segments written before the index existed: the baseline of the store benchmark, and
    /// the reference the index is tested against. Same results, slower.
    pub ignore_index: bool,
}

impl Filter {
    /// Whether a record matches.
    pub fn matches(&self, r: &FlowRecord) -> bool {
        if let Some(c) = self.cidr {
            let net = c.to_v6_mapped();
            if !in_column(net, &ip_to_column(r.src_ip)) && !in_column(net, &ip_to_column(r.dst_ip))
            {
                return false;
            }
        }
        self.port.is_none_or(|p| r.src_port == p || r.dst_port == p)
            && self.mac.is_none_or(|m| r.src_mac == m || r.dst_mac == m)
            && self.proto.is_none_or(|p| r.proto == p)
            && self.overlaps(r.time_start_ns, r.time_end_ns.max(r.time_start_ns))
            && self
                .user
                .as_deref()
                .is_none_or(|u| r.attr.user.as_deref() == Some(u))
            && self.domain.as_ref().is_none_or(|d| {
                [&r.attr.domain, &r.attr.dns_qname]
                    .into_iter()
                    .flatten()
                    .any(|n| d.matches(n.as_bytes()))
            })
            && self
                .nat
                .is_none_or(|n| n.matches(r.attr.nat_ip, r.attr.nat_port))
            && self.rule.as_deref().is_none_or(|want| {
                r.rule
                    .as_deref()
                    .is_some_and(|have| rule_matches(want, have))
            })
    }

    /// Whether the time range `[min, max]` can hold a matching record.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.since_ns.is_none_or(|s| max >= s) && self.until_ns.is_none_or(|u| min < u)
    }

    /// Whether the filter asks for a field of the attribution (none of which a segment of an
    /// earlier format, or a record without attribution, has).
    pub fn needs_attribution(&self) -> bool {
        self.user.is_some() || self.domain.is_some() || self.nat.is_some()
    }
}

/// Whether a record's rule `have` (`FILE:LINE`) is the rule `want` names: that rule, or with
/// `want` a file alone, any rule of that file. Records name a list by the path the agent was
/// given; a relative `want` (`block.list`, `feeds/block.list:3`) also names it by its last
/// components, so an operator need not know how the agent was started.
pub fn rule_matches(want: &str, have: &str) -> bool {
    fn is_rule(want: &str, have: &str) -> bool {
        have == want
            || have
                .strip_prefix(want)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|line| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()))
    }
    if is_rule(want, have) || want.starts_with('/') {
        return is_rule(want, have);
    }
    let tail = want.trim_start_matches("./");
    is_rule(tail, have)
        || have
            .match_indices('/')
            .any(|(i, _)| is_rule(tail, &have[i + 1..]))
}

/// The `--nat` filter: the NAT outside address, and the port if given. IPv4 and the
/// IPv4-mapped IPv6 form of the same address match each other, as `--ip` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatFilter {
    /// The outside address.
    pub ip: IpAddr,
    /// The outside port, if given.
    pub port: Option<u16>,
}

impl NatFilter {
    /// The outside address in the 16-byte column form.
    pub fn column(&self) -> [u8; 16] {
        ip_to_column(self.ip)
    }

    /// Whether a record's NAT address and port match.
    pub fn matches(&self, ip: Option<IpAddr>, port: Option<u16>) -> bool {
        ip.is_some_and(|ip| ip_to_column(ip) == self.column())
            && self.port.is_none_or(|p| port == Some(p))
    }
}

impl FromStr for NatFilter {
    type Err = String;

    /// `203.0.113.5`, `203.0.113.5:40001`, `2001:db8::5`, `[2001:db8::5]:40001`.
    fn from_str(s: &str) -> Result<Self, String> {
        let form = "write ADDRESS or ADDRESS:PORT (`203.0.113.5:40001`, IPv6 in brackets: `[2001:db8::5]:40001`)";
        let (addr, port) = if let Some(rest) = s.strip_prefix('[') {
            let (addr, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: `[` without `]`; {form}"))?;
            match after {
                "" => (addr, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (addr, Some(p)),
                    None => return Err(format!("{s:?}: {p:?} after `]`; {form}")),
                },
            }
        } else if s.matches(':').count() == 1 {
            let (a, p) = s.split_once(':').unwrap_or((s, ""));
            (a, Some(p))
        } else {
            (s, None)
        };
        if addr.is_empty() {
            return Err(format!(
                "{s:?}: no address; a port alone would match that port on every outside address, {form}"
            ));
        }
        let ip = crate::net::parse_addr(addr).map_err(|e| format!("{s:?}: {e}; {form}"))?;
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| format!("{s:?}: port {p:?} is not a number 0-65535; {form}"))
            })
            .transpose()?;
        Ok(NatFilter { ip, port })
    }
}

/// The `--domain` filter: a name, normalised as list files normalise names (lower case,
/// punycode, no trailing dot), matching itself and every name under it, label by label:
/// `example.com` matches `www.example.com`, never `badexample.com`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainFilter(Box<str>);

impl DomainFilter {
    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` (as stored: lower case, no trailing dot; both are tolerated) is this
    /// name or under it.
    pub fn matches(&self, name: &[u8]) -> bool {
        let name = name.strip_suffix(b".").unwrap_or(name);
        let want = self.0.as_bytes();
        let Some(cut) = name.len().checked_sub(want.len()) else {
            return false;
        };
        name[cut..].eq_ignore_ascii_case(want) && (cut == 0 || name[cut - 1] == b'.')
    }
}

impl FromStr for DomainFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // A filter matches the name and every name under it, as a list's `*.example.com`
        // does: the list form is taken too.
        let s = s.strip_prefix("*.").unwrap_or(s);
        crate::blocklist::domain::normalize_name(s)
            .map(DomainFilter)
            .map_err(|e| e.to_string())
    }
}

/// Parses `--since`/`--until`/`--at`: RFC 3339 (`2026-05-03T14:00:00Z`,
/// `2026-05-03T16:00:00+02:00`) or a span before `now_ns` (`2h`, `90m`, `7d`, `1h30m`: see
/// [`crate::span`]). The instant [`parse_written_time`] reads.
pub fn parse_time(s: &str, now_ns: i64) -> Result<i64, String> {
    parse_written_time(s, now_ns).map(|t| t.ns)
}

const SECOND_NS: i64 = 1_000_000_000;

/// A time as it was written: the instant it names and the unit of its last written digit.
/// `--at 14:05:09Z` means the whole second the operator wrote, not its first nanosecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenTime {
    /// The instant (Unix ns), the start of the unit.
    pub ns: i64,
    /// The length of the unit written (ns): an hour for `T14Z`, a minute for `T14:05Z`, a
    /// second for `T14:05:09Z`, 100 ms for `T14:05:09.5Z`, 1 ns for nine fractional digits.
    /// A span ago (`10m`) counts from the clock's now, to the second.
    pub unit_ns: i64,
}

/// Parses a time as [`parse_time`] does, keeping the precision it was written to.
pub fn parse_written_time(s: &str, now_ns: i64) -> Result<WrittenTime, String> {
    let parsed = s.parse::<jiff::Timestamp>();
    if let Ok(ts) = parsed {
        // jiff takes offsets up to 25:59:59 in any of its spellings (+25, +2500, +25:00:00);
        // RFC 3339's hours end at 23, and a mistyped offset would move the window by a day
        // without a word. The offset jiff read is judged, not how it was written.
        let offset = jiff::fmt::temporal::Pieces::parse(s)
            .ok()
            .and_then(|p| p.to_numeric_offset());
        if let Some(o) = offset.filter(|o| o.seconds().unsigned_abs() >= 24 * 3600) {
            return Err(format!(
                "{s:?}: the UTC offset {o} is past the ±23:59 RFC 3339 allows"
            ));
        }
        let ns = i64::try_from(ts.as_nanosecond()).map_err(|_| format!("{s:?} is out of range"))?;
        return Ok(WrittenTime {
            ns,
            unit_ns: written_unit_ns(s),
        });
    }
    if let (Err(e), true) = (parsed, s.len() >= 10 && s.as_bytes()[4] == b'-') {
        return Err(format!(
            "{s:?} is not an RFC 3339 time with a UTC offset ({e}): write it like 2026-05-03T14:00:00Z or 2026-05-03T16:00:00+02:00"
        ));
    }
    // A bare number is a span of seconds to `span::parse`, but as a time it could as well be a
    // year or a date: refuse it rather than guess.
    if s.trim().bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{s:?} is ambiguous as a time: give a unit for a span ago (2h, {s}s) or an RFC 3339 time (2026-05-03T14:00:00Z)"
        ));
    }
    // A time of day alone: which day is not for us to guess.
    if s.contains(':') && !s.contains('-') {
        return Err(format!(
            "{s:?} is a time of day without its date: write it like 2026-05-03T{} (RFC 3339, with a UTC offset)",
            s.trim()
        ));
    }
    // `2h ago` reads as it is meant.
    let span = s.trim_end().strip_suffix("ago").map_or(s, str::trim_end);
    let ago = crate::span::parse_ns(span).map_err(|e| {
        format!("{s:?} is neither an RFC 3339 time with offset (2026-05-03T14:00:00Z) nor a span like 2h: {e}")
    })?;
    Ok(WrittenTime {
        ns: now_ns.saturating_sub(ago),
        unit_ns: SECOND_NS,
    })
}

/// The unit the time of day of `s`, an RFC 3339 text jiff accepted, is written to: by its
/// fractional digits if it has any, else by its fields (jiff takes `T14Z` and `T14:05Z`, and
/// the basic form `T140509Z`, none of which has a fraction).
fn written_unit_ns(s: &str) -> i64 {
    // The date holds no `T`, `t` or space, and a timestamp always has a time of day; that
    // runs until the offset (`Z`, `+`, `-`), whose own digits are not the time's.
    let time = s.find(['T', 't', ' ']).map_or("", |i| &s[i + 1..]);
    let clause = time
        .split(|c: char| !(c.is_ascii_digit() || matches!(c, ':' | '.' | ',')))
        .next()
        .unwrap_or_default();
    if let Some((_, fraction)) = clause.split_once(['.', ',']) {
        // jiff reads at most nine digits, and at least one.
        let digits = fraction.len().clamp(1, 9) as u32;
        return 10_i64.pow(9 - digits);
    }
    match clause.bytes().filter(u8::is_ascii_digit).count() {
        2 => 3_600 * SECOND_NS,
        4 => 60 * SECOND_NS,
        _ => SECOND_NS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_of_rfc_3339_say_why() {
        let ok = parse_time("2026-05-03T16:00:00+02:00", 0).expect("an offset of two hours");
        assert_eq!(ok, parse_time("2026-05-03T14:00:00Z", 0).expect("UTC"));
        assert!(parse_time("2026-05-03T16:00:00-23:59", 0).is_ok());
        for written in ["+25:00", "+25", "+2500", "+25:00:00", "-24:00"] {
            let t = format!("2026-05-03T16:00:00{written}");
            let e = parse_time(&t, 0).expect_err("an offset of a day or more");
            assert!(e.contains(&t) && e.contains("23:59"), "{e}");
        }
        assert!(parse_time("2026-05-03T16:00:00+2359", 0).is_ok());
        let e = parse_time("2026-02-30T00:00:00Z", 0).expect_err("no 30 February");
        assert!(e.contains("day") && e.contains("RFC 3339"), "{e}");
        let now = 10 * 3_600_000_000_000;
        assert_eq!(parse_time("2h ago", now), parse_time("2h", now));
        assert_eq!(parse_time("2h", now), Ok(8 * 3_600_000_000_000));
        assert!(parse_time("ago", now).is_err());
    }

    #[test]
    fn a_written_time_keeps_the_unit_of_its_last_digit() {
        let s = SECOND_NS;
        let t = "2026-11-28T07:07:07Z";
        let at = parse_time(t, 0).expect("RFC 3339");
        for (text, ns, unit) in [
            (t, at, s),
            ("2026-11-28T07:07:07+00:00", at, s),
            ("2026-11-28 07:07:07z", at, s),
            ("20261128T070707Z", at, s),
            ("2026-11-28T08:07:07+01:00[Europe/Paris]", at, s),
            // The offset's digits are not the time's.
            ("2026-11-28T09:37:07+02:30", at, s),
            ("2026-11-28T07:07:07.5Z", at + s / 2, s / 10),
            ("2026-11-28T07:07:07,5Z", at + s / 2, s / 10),
            ("2026-11-28T07:07:07.000Z", at, 1_000_000),
            ("2026-11-28T07:07:07.123456Z", at + 123_456_000, 1_000),
            ("2026-11-28T07:07:07.123456789Z", at + 123_456_789, 1),
            (
                "2026-11-28T07:07:07.123456789-05:00",
                at + 5 * 3_600 * s + 123_456_789,
                1,
            ),
            ("2026-11-28T07:07Z", at - 7 * s, 60 * s),
            ("2026-11-28T07Z", at - 427 * s, 3_600 * s),
            ("2026-11-28T0707Z", at - 7 * s, 60 * s),
        ] {
            assert_eq!(
                parse_written_time(text, 0),
                Ok(WrittenTime { ns, unit_ns: unit }),
                "{text}"
            );
        }
        // A span ago counts from now, to the second.
        let now = at + 250_000_000;
        assert_eq!(
            parse_written_time("10m", now),
            Ok(WrittenTime {
                ns: now - 600 * s,
                unit_ns: s
            })
        );
        assert_eq!(
            parse_written_time("1h30m ago", now).map(|t| t.unit_ns),
            Ok(s)
        );
        // A date alone is no time (which of its day's offsets?), as before.
        assert!(parse_written_time("2026-11-28", 0).is_err());
        // Nor a time of day alone; the error says what to write, not how a span failed.
        let e = parse_written_time("14:05:09Z", 0).expect_err("no date");
        assert!(
            e.contains("without its date") && e.contains("2026-05-03T14:05:09Z"),
            "{e}"
        );
    }

    #[test]
    fn cidr_and_spans_parse_and_match() {
        let c: Cidr = "10.1.0.0/16".parse().expect("cidr");
        let col = |ip: &str| ip_to_column(ip.parse().expect("ip"));
        let n = c.to_v6_mapped();
        assert!(in_column(n, &col("10.1.200.3")));
        assert!(in_column(n, &col("10.1.0.0")));
        assert!(!in_column(n, &col("10.2.0.1")));
        assert!(!in_column(n, &col("10.0.255.255")));
        let v6: Cidr = "2001:db8::/32".parse().expect("cidr6");
        assert!(in_column(v6.to_v6_mapped(), &col("2001:db8:1::5")));
        assert!(!in_column(v6.to_v6_mapped(), &col("::ffff:10.1.0.1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.1.2.3/16".parse::<Cidr>().is_err(), "host bits set");
        assert!("nonsense".parse::<Cidr>().is_err());
        assert!(parse_time("2", 0).is_err(), "a bare number is no time");
        assert!(parse_time("2 parsecs", 0).is_err());
        assert_eq!(parse_time("2h", 10_000_000_000_000), Ok(2_800_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", 0), Ok(1_000_000_000));
        assert!(
            parse_time("2026-05-03T14:00:00", 0).is_err(),
            "no offset must be refused"
        );
    }

    #[test]
    fn a_rule_matches_itself_or_its_file() {
        assert!(rule_matches("/etc/b.list:3", "/etc/b.list:3"));
        assert!(rule_matches("/etc/b.list", "/etc/b.list:3"));
        assert!(!rule_matches("/etc/b.list:3", "/etc/b.list:30"));
        assert!(!rule_matches("/etc/b.lis", "/etc/b.list:3"));
        assert!(!rule_matches("/etc/b.list", "/etc/b.list:x"));
        assert!(!rule_matches("/etc/b.list", "/etc/b.list:"));
        // A relative name matches the last components, whole ones only.
        assert!(rule_matches("b.list", "/etc/b.list:3"));
        assert!(rule_matches("etc/b.list:3", "/etc/b.list:3"));
        assert!(!rule_matches("b.list:3", "/etc/b.list:30"));
        assert!(!rule_matches("list", "/etc/b.list:3"));
        assert!(rule_matches("./b.list", "/etc/b.list:3"));
        assert!(rule_matches("b.list", "./b.list:3"));
        assert!(
            rule_matches("./b.list", "b.list:3"),
            "the agent given a bare name"
        );
        assert!(
            !rule_matches("/b.list", "/etc/b.list:3"),
            "an absolute path is whole"
        );
    }

    #[test]
    fn nat_tuples_parse_in_every_written_form_and_junk_is_refused() {
        let nat = |s: &str| s.parse::<NatFilter>();
        let v4: IpAddr = "203.0.113.5".parse().expect("ip");
        let v6: IpAddr = "2001:db8::5".parse().expect("ip");
        assert_eq!(nat("203.0.113.5"), Ok(NatFilter { ip: v4, port: None }));
        assert_eq!(
            nat("203.0.113.5:40001"),
            Ok(NatFilter {
                ip: v4,
                port: Some(40001)
            })
        );
        assert_eq!(nat("2001:db8::5"), Ok(NatFilter { ip: v6, port: None }));
        assert_eq!(nat("[2001:db8::5]"), Ok(NatFilter { ip: v6, port: None }));
        assert_eq!(
            nat("[2001:db8::5]:0"),
            Ok(NatFilter {
                ip: v6,
                port: Some(0)
            })
        );
        for (bad, says) in [
            (":40001", "no address"),
            ("203.0.113.5:", "port \"\""),
            ("203.0.113.5:65536", "65536"),
            ("203.0.113.5:http", "\"http\""),
            ("203.0.113.256", "over 255"),
            ("[2001:db8::5", "without `]`"),
            ("[2001:db8::5]40001", "after `]`"),
            ("2001:db8::5:40001:x", "IPv6"),
            ("", "no address"),
        ] {
            let err = nat(bad).expect_err(bad);
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_nat_address_matches_its_mapped_form_and_a_port_needs_an_address() {
        let f: NatFilter = "203.0.113.5:40001".parse().expect("nat");
        let v4: IpAddr = "203.0.113.5".parse().expect("ip");
        let mapped: IpAddr = "::ffff:203.0.113.5".parse().expect("ip");
        assert!(f.matches(Some(v4), Some(40001)));
        assert!(f.matches(Some(mapped), Some(40001)));
        assert!(!f.matches(Some(v4), Some(40002)));
        assert!(!f.matches(Some(v4), None));
        assert!(!f.matches(None, Some(40001)), "a port without an address");
        let any_port = NatFilter { ip: v4, port: None };
        assert!(any_port.matches(Some(v4), None));
        assert!(!any_port.matches(Some("203.0.113.6".parse().expect("ip")), None));
    }

    #[test]
    fn a_domain_matches_itself_and_names_under_it_label_by_label() {
        let d: DomainFilter = "Example.COM.".parse().expect("domain");
        assert_eq!(d.as_str(), "example.com");
        let w: DomainFilter = "*.example.com".parse().expect("the list form");
        assert_eq!(w.as_str(), "example.com");
        for yes in [
            "example.com",
            "www.example.com",
            "a.b.example.com",
            "WWW.Example.Com",
            "example.com.",
        ] {
            assert!(d.matches(yes.as_bytes()), "{yes}");
        }
        for no in [
            "badexample.com",
            "example.co",
            "com",
            "example.com.evil",
            "xexample.com",
            "",
            ".example.co",
        ] {
            assert!(!d.matches(no.as_bytes()), "{no}");
        }
        let idn: DomainFilter = "bücher.de".parse().expect("idn");
        assert_eq!(idn.as_str(), "xn--bcher-kva.de");
        assert!(idn.matches(b"shop.xn--bcher-kva.de"));
        for bad in ["", "a..b", "exa mple.com", "a*.example.com"] {
            assert!(bad.parse::<DomainFilter>().is_err(), "{bad:?}");
        }
        // A name longer than the kernel's 16 labels (a list rule's limit) is still a name
        // records may hold.
        let long = format!("{}example.com", "l.".repeat(20));
        let d: DomainFilter = long.parse().expect("22 labels");
        assert!(d.matches(format!("www.{long}").as_bytes()));
    }
}
