//! The line grammar: one line of a list file -> entries or a typed error. Context-free (a
//! line's meaning never depends on another line), which is what lets a reload re-parse only
//! the lines an edit touched.

use std::net::IpAddr;

use agent_common::proto;

use super::domain::normalize_domain;
use super::error::LineError;
use crate::net::{parse_addr, parse_prefix, range_to_prefixes, Net, Prefix};

/// One rule a line contributes. A range, a hosts line or `port N` can contribute several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An IPv4 network (`len` 32 for a single address); host bits are zero.
    V4(Net<u32>),
    /// An IPv6 network (`len` 128 for a single address); host bits are zero.
    V6(Net<u128>),
    /// A normalised domain (lower case, ASCII/punycode, no trailing dot): the name and every
    /// name under it.
    Domain(Box<str>),
    /// TCP or UDP ports `lo..=hi` of the remote side.
    Port(PortRange),
}

/// A port rule for one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// [`proto::TCP`] or [`proto::UDP`].
    pub proto: u8,
    /// First port, host order, never 0.
    pub lo: u16,
    /// Last port, inclusive, `>= lo`.
    pub hi: u16,
}

/// What kind of line a successfully parsed line was, for the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// Empty or whitespace only.
    Blank,
    /// A comment (`#`, `;` or `!` first), or an adblock list's header (`[Adblock Plus 2.0]`).
    Comment,
    /// A line that contributed entries.
    Rule,
    /// A hosts-file line naming only local names (`127.0.0.1 localhost`, `::1 ip6-loopback`,
    /// `255.255.255.255 broadcasthost`): hosts-file boilerplate, not a rule.
    HostsBoilerplate,
    /// An adblock cosmetic rule (element hiding `example.com##.ad`, its exceptions `#@#`,
    /// extended CSS `#?#`, scriptlets `#$#` and `#%#`, HTML filters `$$`): a rule for a
    /// browser's rendering of a page, which means nothing at the network. Skipped, and
    /// counted: read with `#` as a comment it would block the whole domain.
    Cosmetic,
}

/// Parses one line (without its `\n`; a trailing `\r` is allowed), appending its entries to
/// `out`. On error nothing is appended.
pub fn parse_line(raw: &[u8], out: &mut Vec<Entry>) -> Result<LineKind, LineError> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        let at = e.valid_up_to();
        LineError::NotUtf8 {
            byte: raw.get(at).copied().unwrap_or(0),
            column: at + 1,
        }
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(LineKind::Blank);
    }
    if matches!(text.as_bytes()[0], b'#' | b';' | b'!') || is_adblock_header(text) {
        return Ok(LineKind::Comment);
    }
    // Neither `#` nor `;` can occur in any accepted token, so either starts a trailing
    // comment wherever it is (hosts files use `#`, Spamhaus DROP uses ` ; SBL...`). A byte
    // scan: `str::find` with a char set is several times slower on a million lines.
    let text = match text.bytes().position(|b| b == b'#' || b == b';') {
        Some(at) if is_cosmetic_separator(text, at) => return Ok(LineKind::Cosmetic),
        Some(at) => text[..at].trim_end(),
        None => text,
    };
    if text.contains("$$") || text.contains("$@$") {
        return Ok(LineKind::Cosmetic); // an HTML filter
    }
    let mark = out.len();
    let result = parse_tokens(text, out);
    if result.is_err() {
        out.truncate(mark);
    }
    result
}

/// Whether the `#` or `;` at `at` (the line's first) joins a token to an adblock cosmetic
/// rule's separator (`##`, `#@#`, `#?#`, `#@?#`, `#$#`, `#@$#`, `#%#`, `#@%#`) rather than
/// starting a comment, which follows whitespace.
fn is_cosmetic_separator(text: &str, at: usize) -> bool {
    let b = text.as_bytes();
    if b[at] != b'#' || at == 0 || b[at - 1].is_ascii_whitespace() {
        return false;
    }
    let mut rest = &b[at + 1..];
    if let [b'@', tail @ ..] = rest {
        rest = tail;
    }
    if let [b'?' | b'$' | b'%', tail @ ..] = rest {
        rest = tail;
    }
    rest.first() == Some(&b'#')
}

/// Whether a whole line is an adblock list's header (`[Adblock Plus]`, `[Adblock Plus 2.0]`,
/// the first line of HaGeZi's and OISD's ABP lists). Not one that could be an address in
/// brackets (`[2001:db8::1]`): that is refused as a bad line, never passed over.
fn is_adblock_header(text: &str) -> bool {
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .is_some_and(|inside| {
            inside
                .bytes()
                .any(|b| !(b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'/')))
        })
}

fn parse_tokens(text: &str, out: &mut Vec<Entry>) -> Result<LineKind, LineError> {
    let mut tokens = text.split_ascii_whitespace();
    let Some(first) = tokens.next() else {
        return Ok(LineKind::Blank);
    };
    if first.eq_ignore_ascii_case("port") {
        return parse_port(tokens, out);
    }
    let Some(second) = tokens.next() else {
        parse_single(first, out)?;
        return Ok(LineKind::Rule);
    };
    if second == "-" {
        // `A - B`: a range written with spaces.
        if let (Some(end), None) = (tokens.next(), tokens.next()) {
            let text = format!("{first}-{end}");
            push_range(&text, first, end, out)?;
            return Ok(LineKind::Rule);
        }
    }
    let names = std::iter::once(second).chain(tokens);
    parse_hosts(first, second, names, out)
}

/// A lone token: address, CIDR, range, domain, `*.domain` or `||domain^`.
fn parse_single(tok: &str, out: &mut Vec<Entry>) -> Result<(), LineError> {
    if tok.starts_with("@@") {
        return Err(LineError::AdblockException { text: tok.into() });
    }
    if let Some(rest) = tok.strip_prefix("||") {
        if rest.contains('$') {
            return Err(LineError::AdblockOptions { text: tok.into() });
        }
        let name = rest.strip_suffix('^').unwrap_or(rest);
        if name.contains(['^', '/', '*', '|', ':']) {
            return Err(LineError::AdblockSyntax { text: tok.into() });
        }
        out.push(Entry::Domain(normalize_domain(name)?));
        return Ok(());
    }
    if tok.as_bytes().windows(3).any(|w| w == b"://") {
        return Err(LineError::Url { text: tok.into() });
    }
    if let Some(rest) = tok.strip_prefix("*.") {
        out.push(Entry::Domain(normalize_domain(rest)?));
        return Ok(());
    }
    if looks_like_address(tok) {
        return parse_network(tok, out);
    }
    out.push(Entry::Domain(normalize_domain(tok)?));
    Ok(())
}

/// Whether a token is meant as an address, CIDR or range rather than a name: it has a colon
/// or a slash (no name does), or is digits and dots with an optional `-end` (a name with a
/// numeric top-level label is not a name).
fn looks_like_address(tok: &str) -> bool {
    let b = tok.as_bytes();
    let mut numeric = b.first().is_some_and(u8::is_ascii_digit);
    for &c in b {
        match c {
            b':' | b'/' => return true,
            b'0'..=b'9' | b'.' | b'-' => {}
            _ => numeric = false,
        }
    }
    numeric
}

fn parse_network(tok: &str, out: &mut Vec<Entry>) -> Result<(), LineError> {
    // Byte scans: a `char` pattern's searcher costs more than the whole of a short token.
    if let Some(at) = tok.bytes().position(|b| b == b'-') {
        return push_range(tok, &tok[..at], &tok[at + 1..], out);
    }
    out.push(match parse_prefix(tok)? {
        Prefix::V4(net) => Entry::V4(net),
        Prefix::V6(net) => v6_entry(net),
    });
    Ok(())
}

/// An IPv6 network as a rule: inside `::ffff:0:0/96` it is an IPv4 network written in IPv6
/// form (`::ffff:192.0.2.1`), which no packet carries on the wire, so it is the IPv4 rule
/// the list's author meant (as `query --ip` takes the two forms as one address).
fn v6_entry(net: Net<u128>) -> Entry {
    if net.len >= 96 && net.addr >> 32 == 0xffff {
        Entry::V4(Net::new(net.addr as u32, net.len - 96))
    } else {
        Entry::V6(net)
    }
}

fn push_range(text: &str, start: &str, end: &str, out: &mut Vec<Entry>) -> Result<(), LineError> {
    if start.trim().is_empty() || end.trim().is_empty() {
        return Err(LineError::RangeOpen { text: text.into() });
    }
    match (parse_addr(start)?, parse_addr(end)?) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let (a, b) = (u32::from(a), u32::from(b));
            if a > b {
                return Err(LineError::RangeReversed { text: text.into() });
            }
            range_to_prefixes(a, b, |net| out.push(Entry::V4(net)));
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let (a, b) = (u128::from(a), u128::from(b));
            if a > b {
                return Err(LineError::RangeReversed { text: text.into() });
            }
            range_to_prefixes(a, b, |net| out.push(v6_entry(net)));
        }
        _ => return Err(LineError::RangeFamily { text: text.into() }),
    }
    Ok(())
}

/// Names that hosts files carry for the machine itself; a line naming only these is
/// boilerplate (`127.0.0.1 localhost`, `ff02::1 ip6-allnodes`), not a rule.
const HOSTS_BOILERPLATE: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

fn is_boilerplate(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    HOSTS_BOILERPLATE
        .iter()
        .any(|b| b.eq_ignore_ascii_case(name))
}

/// `ADDRESS NAME...`: the hosts-file form. The address must be a sink (what blocklists
/// distributed as hosts files use); names that hosts files give the machine itself are
/// skipped, and a line with only those is boilerplate.
fn parse_hosts<'a>(
    first: &str,
    second: &str,
    names: impl Iterator<Item = &'a str> + Clone,
    out: &mut Vec<Entry>,
) -> Result<LineKind, LineError> {
    // A zone id only appears on hosts boilerplate (`fe80::1%lo0 localhost`).
    let addr_text = first.split_once('%').map_or(first, |(a, _)| a);
    let trailing = || LineError::TrailingTokens {
        first: first.into(),
        extra: second.into(),
    };
    if !looks_like_address(addr_text) || addr_text.contains(['/', '-']) {
        return Err(trailing());
    }
    let Ok(addr) = parse_addr(addr_text) else {
        return Err(trailing());
    };
    if names.clone().all(is_boilerplate) {
        return Ok(LineKind::HostsBoilerplate);
    }
    let sink = match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_loopback(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_loopback(),
    };
    if !sink || first.contains('%') {
        return Err(LineError::HostsAddress { addr: first.into() });
    }
    for name in names.filter(|n| !is_boilerplate(n)) {
        if parse_addr(name).is_ok() {
            return Err(LineError::HostsIpName { name: name.into() });
        }
        out.push(Entry::Domain(normalize_domain(name)?));
    }
    Ok(LineKind::Rule)
}

fn parse_port<'a>(
    mut tokens: impl Iterator<Item = &'a str>,
    out: &mut Vec<Entry>,
) -> Result<LineKind, LineError> {
    let (protos, spec): (&[u8], &str) = match (tokens.next(), tokens.next(), tokens.next()) {
        (Some(spec), None, None) => (&[proto::TCP, proto::UDP], spec),
        (Some(p), Some(spec), None) if p.eq_ignore_ascii_case("tcp") => (&[proto::TCP], spec),
        (Some(p), Some(spec), None) if p.eq_ignore_ascii_case("udp") => (&[proto::UDP], spec),
        (Some(p), Some(_), None) => return Err(LineError::PortProto { proto: p.into() }),
        _ => return Err(LineError::PortUsage),
    };
    let (lo, hi) = match spec.split_once('-') {
        // Either end bad: the message quotes the range as written (`-1`, `1-`).
        Some((lo, hi)) => match (parse_port_number(lo), parse_port_number(hi)) {
            (Ok(lo), Ok(hi)) => (lo, hi),
            _ => return Err(LineError::PortValue { port: spec.into() }),
        },
        None => {
            let p = parse_port_number(spec)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(LineError::PortReversed { lo, hi });
    }
    for &proto in protos {
        out.push(Entry::Port(PortRange { proto, lo, hi }));
    }
    Ok(LineKind::Rule)
}

fn parse_port_number(text: &str) -> Result<u16, LineError> {
    let bad = || LineError::PortValue { port: text.into() };
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(p) => Ok(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::XorShift;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn parse(line: &str) -> Result<(LineKind, Vec<Entry>), LineError> {
        let mut out = Vec::new();
        let kind = parse_line(line.as_bytes(), &mut out)?;
        Ok((kind, out))
    }

    fn entries(line: &str) -> Vec<Entry> {
        match parse(line) {
            Ok((LineKind::Rule, e)) => e,
            other => panic!("`{line}` should be a rule, got {other:?}"),
        }
    }

    fn err(line: &str) -> String {
        match parse(line) {
            Err(e) => e.to_string(),
            Ok(ok) => panic!("`{line}` should be refused, got {ok:?}"),
        }
    }

    fn v4(s: &str, len: u8) -> Entry {
        Entry::V4(Net::new(
            u32::from(s.parse::<Ipv4Addr>().expect("test address")),
            len,
        ))
    }

    fn v6(s: &str, len: u8) -> Entry {
        Entry::V6(Net::new(
            u128::from(s.parse::<Ipv6Addr>().expect("test address")),
            len,
        ))
    }

    fn dom(s: &str) -> Entry {
        Entry::Domain(s.into())
    }

    #[test]
    fn addresses_and_cidrs() {
        assert_eq!(entries("192.0.2.1"), [v4("192.0.2.1", 32)]);
        assert_eq!(entries("  192.0.2.0/24  "), [v4("192.0.2.0", 24)]);
        assert_eq!(entries("0.0.0.0/0"), [v4("0.0.0.0", 0)]);
        assert_eq!(entries("2001:db8::1"), [v6("2001:db8::1", 128)]);
        assert_eq!(entries("2001:DB8::/32"), [v6("2001:db8::", 32)]);
        assert_eq!(entries("::"), [v6("::", 128)]);
        // IPv4 written in IPv6 form is the IPv4 rule; the rest of IPv6 stays IPv6.
        assert_eq!(entries("::ffff:192.0.2.1"), [v4("192.0.2.1", 32)]);
        assert_eq!(entries("::ffff:192.0.2.0/120"), [v4("192.0.2.0", 24)]);
        assert_eq!(entries("::ffff:0:0/96"), [v4("0.0.0.0", 0)]);
        assert_eq!(entries("::fffe:0:0/95"), [v6("::fffe:0:0", 95)]);
        assert_eq!(entries("::1:ffff:c000:201"), [v6("::1:ffff:c000:201", 128)]);
        assert_eq!(
            entries("::ffff:192.0.2.0-::ffff:192.0.2.255"),
            [v4("192.0.2.0", 24)]
        );
    }

    #[test]
    fn ranges_become_prefixes() {
        assert_eq!(entries("10.0.0.0-10.0.1.255"), [v4("10.0.0.0", 23)]);
        assert_eq!(
            entries("10.0.0.1 - 10.0.0.2"),
            [v4("10.0.0.1", 32), v4("10.0.0.2", 32)]
        );
        assert_eq!(
            entries("2001:db8::-2001:db8::ffff"),
            [v6("2001:db8::", 112)]
        );
    }

    #[test]
    fn domains_are_normalised() {
        assert_eq!(entries("Example.COM."), [dom("example.com")]);
        assert_eq!(entries("*.example.com"), [dom("example.com")]);
        assert_eq!(entries("||ads.example.com^"), [dom("ads.example.com")]);
        assert_eq!(entries("||ads.example.com"), [dom("ads.example.com")]);
        assert_eq!(entries("bücher.de"), [dom("xn--bcher-kva.de")]);
        assert_eq!(entries("BÜCHER.de"), [dom("xn--bcher-kva.de")]);
        assert_eq!(entries("xn--bcher-kva.de"), [dom("xn--bcher-kva.de")]);
        assert_eq!(entries("_dmarc.example.com"), [dom("_dmarc.example.com")]);
        assert_eq!(entries("zip"), [dom("zip")]);
        let sixteen = vec!["a"; 16].join(".");
        assert_eq!(entries(&sixteen), [dom(&sixteen)]);
        let label63 = "a".repeat(63);
        assert_eq!(entries(&format!("{label63}.com")).len(), 1);
    }

    #[test]
    fn hosts_lines() {
        assert_eq!(entries("0.0.0.0 ads.example.com"), [dom("ads.example.com")]);
        assert_eq!(
            entries("127.0.0.1\ta.b   C.D # trailing"),
            [dom("a.b"), dom("c.d")]
        );
        assert_eq!(entries(":: tracker.example"), [dom("tracker.example")]);
        assert_eq!(entries("::1 tracker.example"), [dom("tracker.example")]);
        // Local names are skipped, real ones kept.
        assert_eq!(
            entries("127.0.0.1 localhost ads.example"),
            [dom("ads.example")]
        );
        for boiler in [
            "127.0.0.1 localhost",
            "127.0.0.1 localhost.localdomain local",
            "255.255.255.255 broadcasthost",
            "::1 localhost ip6-localhost ip6-loopback",
            "fe80::1%lo0 localhost",
            "ff02::2 ip6-allrouters",
            "0.0.0.0 0.0.0.0",
        ] {
            assert_eq!(
                parse(boiler),
                Ok((LineKind::HostsBoilerplate, vec![])),
                "{boiler}"
            );
        }
    }

    #[test]
    fn port_rules() {
        let tcp = |lo, hi| {
            Entry::Port(PortRange {
                proto: proto::TCP,
                lo,
                hi,
            })
        };
        let udp = |lo, hi| {
            Entry::Port(PortRange {
                proto: proto::UDP,
                lo,
                hi,
            })
        };
        assert_eq!(entries("port tcp 25"), [tcp(25, 25)]);
        assert_eq!(entries("port UDP 53-60"), [udp(53, 60)]);
        assert_eq!(entries("port 25"), [tcp(25, 25), udp(25, 25)]);
        assert_eq!(entries("port tcp 1-65535"), [tcp(1, 65535)]);
    }

    /// Adblock cosmetic rules are page rules: skipped, never read as their domain with a
    /// trailing comment (which would block the whole domain).
    #[test]
    fn adblock_cosmetic_rules_are_skipped_not_taken_for_domains() {
        for c in [
            "youtube.com##.ytd-ad",
            "example.org#@#.banner",
            "news.example#?#div:has(> .ad)",
            "a.example,b.example#@?#.x",
            "foo.example#$#abort-on-property-read x",
            "foo.example#@$#body { color: red }",
            "foo.example#%#//scriptlet('x')",
            "foo.example#@%#x",
            "example.com$$script[tag-content=\"ad\"]",
            "example.com$@$script",
            "example.com##+js(set-constant, x, 1)",
        ] {
            assert_eq!(parse(c), Ok((LineKind::Cosmetic, vec![])), "{c}");
        }
        // A `#` after whitespace, or after a name with no separator, still starts a comment.
        let domain = |d: &str| vec![Entry::Domain(d.into())];
        assert_eq!(entries("ads.example # ## note"), domain("ads.example"));
        assert_eq!(entries("ads.example#note"), domain("ads.example"));
        assert_eq!(entries("0.0.0.0 ads.example #x##y"), domain("ads.example"));
    }

    #[test]
    fn comments_blank_crlf() {
        for c in [
            "# x",
            "; x",
            "! adblock title",
            "#",
            "   # indented",
            "[Adblock Plus]",
            "[Adblock Plus 2.0]",
            " [uBlock Origin] \r",
        ] {
            assert_eq!(parse(c), Ok((LineKind::Comment, vec![])), "{c}");
        }
        for b in ["", "   ", "\t", "\r"] {
            assert_eq!(parse(b), Ok((LineKind::Blank, vec![])), "{b:?}");
        }
        assert_eq!(entries("192.0.2.1\r"), [v4("192.0.2.1", 32)]);
        assert_eq!(entries("192.0.2.0/24 ; SBL123"), [v4("192.0.2.0", 24)]);
        assert_eq!(entries("example.com#no space"), [dom("example.com")]);
        // An address in brackets is not a header: refused, not passed over in silence.
        for addr in ["[2001:db8::1]", "[192.0.2.1]", "[2001:db8::/32]"] {
            assert!(parse(addr).is_err(), "{addr}");
        }
    }

    #[test]
    fn every_error_names_its_field() {
        let cases: &[(&str, &str)] = &[
            (
                "10.0.0.0/33",
                "CIDR `10.0.0.0/33`: prefix length 33 is over 32 for IPv4",
            ),
            // Addresses and prefixes are `crate::net`'s (its tests cover every error); a few
            // show its errors come through as they are.
            ("10.0.0.1/8", "the network is `10.0.0.0/8`"),
            ("1.2.3", "IPv4 address `1.2.3` has 3 octets, expected 4"),
            ("fe80::1%eth0", "zone ids"),
            (
                "10.0.0.9-10.0.0.1",
                "range `10.0.0.9-10.0.0.1`: start is after end",
            ),
            ("10.0.0.1-::1", "not the same address family"),
            ("10.0.0.1-10.0.0", "has 3 octets"),
            ("1.2.3.4-", "range `1.2.3.4-`: its start or end is missing"),
            ("exa$mple.com", "character '$' is not allowed"),
            ("ex ample.com", "unexpected `ample.com` after `ex`"),
            ("a..b", "domain `a..b` has an empty label"),
            (".example.com", "empty label"),
            ("ads*.example.com", "`*` is only allowed as a leading `*.`"),
            ("*.*.example.com", "`*` is only allowed"),
            ("http://example.com/x", "is a URL"),
            (
                "||example.com^$third-party",
                "options (`$...`) are not supported",
            ),
            ("@@||example.com^", "exception rules"),
            ("||example.com/ads^", "only `||domain^` is supported"),
            (
                "192.0.2.1 example.com",
                "hosts line maps names to `192.0.2.1`",
            ),
            (
                "0.0.0.0 192.0.2.1",
                "`192.0.2.1` is an address, not a host name",
            ),
            ("0.0.0.0 bad$name", "character '$'"),
            (
                "example.com other.com",
                "unexpected `other.com` after `example.com`",
            ),
            (
                "10.0.0.0/8 example.com",
                "unexpected `example.com` after `10.0.0.0/8`",
            ),
            ("port", "expected `port [tcp|udp] PORT[-PORT]`"),
            ("port tcp 25 26", "expected `port [tcp|udp] PORT[-PORT]`"),
            ("port icmp 8", "protocol `icmp` is not `tcp` or `udp`"),
            ("port tcp 0", "port `0` is not a number from 1 to 65535"),
            ("port tcp 65536", "port `65536`"),
            ("port udp 60-53", "range 60-53 is reversed"),
            ("port tcp x", "port `x`"),
            ("port tcp 1-", "port `1-`"),
            ("port tcp -1", "port `-1`"),
        ];
        for (line, want) in cases {
            let got = err(line);
            assert!(got.contains(want), "`{line}`: got `{got}`, want `{want}`");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(err(&long_label).contains("is 64 bytes, over 63"));
        let long_name = vec!["abcdefghijklmno"; 16].join(".") + ".abcdefghij";
        assert!(
            err(&long_name).contains("bytes long, over 253"),
            "{}",
            err(&long_name)
        );
        let deep = vec!["a"; 17].join(".");
        assert!(err(&deep).contains("has 17 labels, over the 16"));
        assert!(err("xn--zz.com").contains("IDNA"), "{}", err("xn--zz.com"));
        let mut out = Vec::new();
        let e = parse_line(b"ex\xffample.com", &mut out).expect_err("non-UTF-8 must fail");
        assert_eq!(
            e.to_string(),
            "line is not valid UTF-8 (byte 0xff at column 3)"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_failing_hosts_line_contributes_nothing() {
        let mut out = vec![dom("keep.me")];
        assert!(parse_line(b"0.0.0.0 good.example bad$", &mut out).is_err());
        assert_eq!(out, [dom("keep.me")]);
    }

    #[test]
    fn no_byte_input_panics() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        // Bytes biased towards the characters the grammar cares about.
        let alphabet = b"0123456789abcdefABCDEF.:/-*|^$@#;! \t\r%_xn";
        let mut out = Vec::new();
        for _ in 0..200_000 {
            let len = (rng.next() % 40) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if r.is_multiple_of(4) {
                        (r >> 8) as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            let _ = parse_line(&line, &mut out);
            out.clear();
        }
        for prefix in ["port ", "0.0.0.0 ", "||", "*.", "10.0.0.0/", "::-"] {
            for _ in 0..20_000 {
                let mut line = prefix.as_bytes().to_vec();
                let len = (rng.next() % 20) as usize;
                line.extend(
                    (0..len).map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize]),
                );
                let _ = parse_line(&line, &mut out);
                out.clear();
            }
        }
    }
}
