//! One line of a list file -> entries or a typed error; a whole file -> a [`ParsedList`] or
//! every bad line.
//!
//! The parser is context-free per line (a line's meaning never depends on another line), which
//! is what lets a reload re-parse only the lines an edit touched (see [`ParsedList::update`]).

use std::fmt;
use std::net::Ipv6Addr;

use agent_common::domain::{MAX_DOMAIN_LABELS, MAX_LABEL_LEN, MAX_NAME_LEN};
use agent_common::proto;

use super::net::{range_to_prefixes, Net};

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
    /// A comment (`#`, `;` or `!` first).
    Comment,
    /// A line that contributed entries.
    Rule,
    /// A hosts-file line naming only local names (`127.0.0.1 localhost`, `::1 ip6-loopback`,
    /// `255.255.255.255 broadcasthost`): hosts-file boilerplate, not a rule.
    HostsBoilerplate,
}

/// Why a line was refused. The text names the field at fault and quotes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is not UTF-8.
    #[error("line is not valid UTF-8 (byte {byte:#04x} at column {column})")]
    NotUtf8 {
        /// The first offending byte.
        byte: u8,
        /// 1-based byte column.
        column: usize,
    },
    /// Wrong number of dot-separated parts in an IPv4 address.
    #[error("IPv4 address `{text}` has {count} octets, expected 4")]
    Ipv4OctetCount {
        /// The address as written.
        text: String,
        /// How many parts it had.
        count: usize,
    },
    /// An IPv4 octet that is not a plain decimal number.
    #[error("IPv4 address `{text}`: octet {index} `{octet}` is not a decimal number (digits only, no leading zeros)")]
    Ipv4OctetSyntax {
        /// The address as written.
        text: String,
        /// 1-based octet position.
        index: usize,
        /// The octet as written.
        octet: String,
    },
    /// An IPv4 octet over 255.
    #[error("IPv4 address `{text}`: octet {index} ({octet}) is over 255")]
    Ipv4OctetRange {
        /// The address as written.
        text: String,
        /// 1-based octet position.
        index: usize,
        /// The octet as written.
        octet: String,
    },
    /// Not an IPv6 address.
    #[error("`{text}` is not an IPv6 address")]
    Ipv6Syntax {
        /// The address as written.
        text: String,
    },
    /// An IPv6 zone id, meaningless on a gateway's forwarding path.
    #[error("IPv6 address `{text}`: zone ids (`%...`) are not supported")]
    Ipv6Zone {
        /// The address as written.
        text: String,
    },
    /// A CIDR prefix length that is not a number.
    #[error("CIDR `{text}`: prefix length `{len}` is not a number")]
    PrefixLenSyntax {
        /// The CIDR as written.
        text: String,
        /// The prefix length as written.
        len: String,
    },
    /// A CIDR prefix length beyond the family's width.
    #[error("CIDR `{text}`: prefix length {len} is over {max} for {family}")]
    PrefixLenRange {
        /// The CIDR as written.
        text: String,
        /// The prefix length.
        len: u32,
        /// 32 or 128.
        max: u32,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// A CIDR whose address has bits set beyond the prefix. Refused rather than masked: the
    /// author may have meant the single address or the network, and guessing wrong either
    /// blocks far too much or far too little.
    #[error("CIDR `{text}` has host bits set after the prefix; the network is `{network}`")]
    HostBits {
        /// The CIDR as written.
        text: String,
        /// The network the author probably meant.
        network: String,
    },
    /// A range whose ends are of different families.
    #[error("range `{text}`: start and end are not the same address family")]
    RangeFamily {
        /// The range as written.
        text: String,
    },
    /// A range whose start is after its end.
    #[error("range `{text}`: start is after end")]
    RangeReversed {
        /// The range as written.
        text: String,
    },
    /// A domain with a character outside letters, digits, `-` and `_`.
    #[error("domain `{name}`: character {ch:?} is not allowed (letters, digits, `-`, `_`, dots between labels)")]
    DomainChar {
        /// The domain as written.
        name: String,
        /// The offending character.
        ch: char,
    },
    /// A `*` anywhere but a leading `*.`.
    #[error("domain `{name}`: `*` is only allowed as a leading `*.`")]
    DomainWildcard {
        /// The domain as written.
        name: String,
    },
    /// `a..b`, a leading dot, or nothing at all.
    #[error("domain `{name}` has an empty label")]
    DomainEmptyLabel {
        /// The domain as written.
        name: String,
    },
    /// A label over 63 bytes.
    #[error("domain `{name}`: label `{label}` is {len} bytes, over 63")]
    DomainLabelLen {
        /// The domain as written.
        name: String,
        /// The long label.
        label: String,
        /// Its length in bytes (after punycode).
        len: usize,
    },
    /// A name over 253 bytes.
    #[error("domain `{name}` is {len} bytes long, over 253")]
    DomainLen {
        /// The domain as written.
        name: String,
        /// Its length in bytes (after punycode).
        len: usize,
    },
    /// More labels than the kernel keeps, so the rule could never match.
    #[error("domain `{name}` has {count} labels, over the 16 the kernel matches")]
    DomainLabels {
        /// The domain as written.
        name: String,
        /// How many labels it has.
        count: usize,
    },
    /// An all-numeric last label: an address, not a name.
    #[error("domain `{name}`: top-level label `{tld}` is numeric (an address is not a domain)")]
    DomainNumericTld {
        /// The domain as written.
        name: String,
        /// The last label.
        tld: String,
    },
    /// IDNA (UTS 46) refused an internationalised name or a bad `xn--` label.
    #[error("domain `{name}`: IDNA conversion to punycode failed")]
    DomainIdna {
        /// The domain as written.
        name: String,
    },
    /// A URL where a host name was expected.
    #[error("`{text}` is a URL; list the host name alone")]
    Url {
        /// The token as written.
        text: String,
    },
    /// An adblock rule with `$` options.
    #[error("adblock rule `{text}`: options (`$...`) are not supported; only `||domain^`")]
    AdblockOptions {
        /// The rule as written.
        text: String,
    },
    /// An adblock exception rule.
    #[error("adblock rule `{text}`: exception rules (`@@`) are not supported; put the domain in an allowlist")]
    AdblockException {
        /// The rule as written.
        text: String,
    },
    /// An adblock rule other than `||domain^`.
    #[error("adblock rule `{text}`: only `||domain^` is supported (no paths, `*` or `|` inside)")]
    AdblockSyntax {
        /// The rule as written.
        text: String,
    },
    /// A hosts-file line pointing names at a real address.
    #[error("hosts line maps names to `{addr}`; only 0.0.0.0, 127.x.x.x, :: and ::1 mark names blocked (an address to block goes alone on its line)")]
    HostsAddress {
        /// The address as written.
        addr: String,
    },
    /// A hosts-file line with an address where a name belongs.
    #[error("hosts line: `{name}` is an address, not a host name")]
    HostsIpName {
        /// The token as written.
        name: String,
    },
    /// More than one token where one entry was expected.
    #[error("unexpected `{extra}` after `{first}`: one entry per line (only hosts-file lines, which start with an address, list several names)")]
    TrailingTokens {
        /// The first token.
        first: String,
        /// The token that should not be there.
        extra: String,
    },
    /// A malformed `port` rule.
    #[error("port rule: expected `port [tcp|udp] PORT[-PORT]`")]
    PortUsage,
    /// A port rule protocol other than tcp or udp.
    #[error("port rule: protocol `{proto}` is not `tcp` or `udp`")]
    PortProto {
        /// The protocol as written.
        proto: String,
    },
    /// A port that is not a number 1-65535.
    #[error("port rule: port `{port}` is not a number from 1 to 65535")]
    PortValue {
        /// The port as written.
        port: String,
    },
    /// A port range whose start is after its end.
    #[error("port rule: range {lo}-{hi} is reversed")]
    PortReversed {
        /// Start as written.
        lo: u16,
        /// End as written.
        hi: u16,
    },
}

/// Counts of lines by kind, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Lines in the file.
    pub lines: u64,
    /// Blank lines.
    pub blank: u64,
    /// Comment lines.
    pub comments: u64,
    /// Lines that contributed entries.
    pub rules: u64,
    /// Hosts-file boilerplate lines ignored.
    pub boilerplate: u64,
}

impl LineStats {
    fn count(&mut self, kind: LineKind) {
        self.lines += 1;
        match kind {
            LineKind::Blank => self.blank += 1,
            LineKind::Comment => self.comments += 1,
            LineKind::Rule => self.rules += 1,
            LineKind::HostsBoilerplate => self.boilerplate += 1,
        }
    }

    fn sub(&mut self, o: &LineStats) {
        self.lines -= o.lines;
        self.blank -= o.blank;
        self.comments -= o.comments;
        self.rules -= o.rules;
        self.boilerplate -= o.boilerplate;
    }

    fn add(&mut self, o: &LineStats) {
        self.lines += o.lines;
        self.blank += o.blank;
        self.comments += o.comments;
        self.rules += o.rules;
        self.boilerplate += o.boilerplate;
    }
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
    if matches!(text.as_bytes()[0], b'#' | b';' | b'!') {
        return Ok(LineKind::Comment);
    }
    // Neither `#` nor `;` can occur in any accepted token, so either starts a trailing
    // comment wherever it is (hosts files use `#`, Spamhaus DROP uses ` ; SBL...`). A byte
    // scan: `str::find` with a char set is several times slower on a million lines.
    let text = match text.bytes().position(|b| b == b'#' || b == b';') {
        Some(at) => text[..at].trim_end(),
        None => text,
    };
    let mark = out.len();
    let result = parse_tokens(text, out);
    if result.is_err() {
        out.truncate(mark);
    }
    result
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
    if tok.contains("://") {
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
    if let Some((start, end)) = tok.split_once('-') {
        return push_range(tok, start, end, out);
    }
    if let Some((addr, len)) = tok.split_once('/') {
        let addr = parse_addr(addr)?;
        let (bits, family) = match addr {
            Addr::V4(_) => (32, "IPv4"),
            Addr::V6(_) => (128, "IPv6"),
        };
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
            return Err(LineError::PrefixLenSyntax {
                text: tok.into(),
                len: len.into(),
            });
        }
        let len_val: u32 = len.parse().map_err(|_| LineError::PrefixLenSyntax {
            text: tok.into(),
            len: len.into(),
        })?;
        if len_val > bits {
            return Err(LineError::PrefixLenRange {
                text: tok.into(),
                len: len_val,
                max: bits,
                family,
            });
        }
        let len8 = len_val as u8;
        match addr {
            Addr::V4(a) => {
                let net = Net::new(a, len8);
                if net.addr != a {
                    return Err(LineError::HostBits {
                        text: tok.into(),
                        network: net.to_string(),
                    });
                }
                out.push(Entry::V4(net));
            }
            Addr::V6(a) => {
                let net = Net::new(a, len8);
                if net.addr != a {
                    return Err(LineError::HostBits {
                        text: tok.into(),
                        network: net.to_string(),
                    });
                }
                out.push(Entry::V6(net));
            }
        }
        return Ok(());
    }
    match parse_addr(tok)? {
        Addr::V4(a) => out.push(Entry::V4(Net::new(a, 32))),
        Addr::V6(a) => out.push(Entry::V6(Net::new(a, 128))),
    }
    Ok(())
}

fn push_range(text: &str, start: &str, end: &str, out: &mut Vec<Entry>) -> Result<(), LineError> {
    match (parse_addr(start)?, parse_addr(end)?) {
        (Addr::V4(a), Addr::V4(b)) => {
            if a > b {
                return Err(LineError::RangeReversed { text: text.into() });
            }
            range_to_prefixes(a, b, |net| out.push(Entry::V4(net)));
        }
        (Addr::V6(a), Addr::V6(b)) => {
            if a > b {
                return Err(LineError::RangeReversed { text: text.into() });
            }
            range_to_prefixes(a, b, |net| out.push(Entry::V6(net)));
        }
        _ => return Err(LineError::RangeFamily { text: text.into() }),
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Addr {
    V4(u32),
    V6(u128),
}

fn parse_addr(text: &str) -> Result<Addr, LineError> {
    if text.contains(':') {
        if text.contains('%') {
            return Err(LineError::Ipv6Zone { text: text.into() });
        }
        return text
            .parse::<Ipv6Addr>()
            .map(|a| Addr::V6(u128::from(a)))
            .map_err(|_| LineError::Ipv6Syntax { text: text.into() });
    }
    parse_ipv4(text).map(Addr::V4)
}

/// Dotted-quad IPv4, strictly: four decimal octets, no leading zeros (which some tools read
/// as octal), so every accepted address means one thing.
fn parse_ipv4(text: &str) -> Result<u32, LineError> {
    if let Some(a) = parse_ipv4_fast(text.as_bytes()) {
        return Ok(a);
    }
    parse_ipv4_explained(text)
}

/// The common case in one pass over the bytes; `None` sends the caller to
/// [`parse_ipv4_explained`] for a precise error.
fn parse_ipv4_fast(b: &[u8]) -> Option<u32> {
    let mut addr = 0u32;
    let mut octet = 0u32;
    let mut digits = 0;
    let mut dots = 0;
    for &c in b {
        match c {
            b'0'..=b'9' => {
                if digits == 1 && octet == 0 {
                    return None; // leading zero
                }
                octet = octet * 10 + u32::from(c - b'0');
                digits += 1;
                if digits > 3 || octet > 255 {
                    return None;
                }
            }
            b'.' => {
                if digits == 0 {
                    return None;
                }
                addr = (addr << 8) | octet;
                octet = 0;
                digits = 0;
                dots += 1;
            }
            _ => return None,
        }
    }
    if dots != 3 || digits == 0 {
        return None;
    }
    Some((addr << 8) | octet)
}

fn parse_ipv4_explained(text: &str) -> Result<u32, LineError> {
    let count = text.split('.').count();
    if count != 4 {
        return Err(LineError::Ipv4OctetCount {
            text: text.into(),
            count,
        });
    }
    let mut addr = 0u32;
    for (i, octet) in text.split('.').enumerate() {
        let syntax = || LineError::Ipv4OctetSyntax {
            text: text.into(),
            index: i + 1,
            octet: octet.into(),
        };
        if octet.is_empty()
            || !octet.bytes().all(|b| b.is_ascii_digit())
            || (octet.len() > 1 && octet.starts_with('0'))
        {
            return Err(syntax());
        }
        let value: u32 = if octet.len() > 3 {
            u32::MAX
        } else {
            octet.parse().map_err(|_| syntax())?
        };
        if value > 255 {
            return Err(LineError::Ipv4OctetRange {
                text: text.into(),
                index: i + 1,
                octet: octet.into(),
            });
        }
        addr = (addr << 8) | value;
    }
    Ok(addr)
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
        Addr::V4(a) => a == 0 || a >> 24 == 127,
        Addr::V6(a) => a == 0 || a == 1,
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
        Some((lo, hi)) => (parse_port_number(lo)?, parse_port_number(hi)?),
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

/// Normalises a domain: trailing dot stripped, lower case, IDNA (UTS 46) to punycode, then
/// checked against DNS limits and the kernel's label limit.
///
/// Letters, digits, `-` and `_` are allowed in labels: `_` and edge hyphens are not valid host
/// names, but they are valid DNS labels and real blocklists carry them.
pub fn normalize_domain(name: &str) -> Result<Box<str>, LineError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let needs_idna = !trimmed.is_ascii()
        || trimmed.split('.').any(|l| {
            l.as_bytes()
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"xn--"))
        });
    let ascii: String = if needs_idna {
        if trimmed.contains('*') {
            return Err(LineError::DomainWildcard { name: name.into() });
        }
        match idna::domain_to_ascii_cow(trimmed.as_bytes(), idna::AsciiDenyList::URL) {
            Ok(a) => a.into_owned(),
            Err(_) => return Err(LineError::DomainIdna { name: name.into() }),
        }
    } else {
        trimmed.to_ascii_lowercase()
    };
    validate_ascii_domain(name, &ascii)?;
    Ok(ascii.into_boxed_str())
}

fn validate_ascii_domain(original: &str, ascii: &str) -> Result<(), LineError> {
    if ascii.len() > MAX_NAME_LEN {
        return Err(LineError::DomainLen {
            name: original.into(),
            len: ascii.len(),
        });
    }
    let mut count = 0;
    let mut last = "";
    for label in ascii.split('.') {
        count += 1;
        if label.is_empty() {
            return Err(LineError::DomainEmptyLabel {
                name: original.into(),
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(LineError::DomainLabelLen {
                name: original.into(),
                label: label.into(),
                len: label.len(),
            });
        }
        if let Some(ch) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            if ch == '*' {
                return Err(LineError::DomainWildcard {
                    name: original.into(),
                });
            }
            return Err(LineError::DomainChar {
                name: original.into(),
                ch,
            });
        }
        last = label;
    }
    if count > MAX_DOMAIN_LABELS {
        return Err(LineError::DomainLabels {
            name: original.into(),
            count,
        });
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::DomainNumericTld {
            name: original.into(),
            tld: last.into(),
        });
    }
    Ok(())
}

/// An entry tagged with its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged<T> {
    /// The entry.
    pub item: T,
    /// The line it came from.
    pub line: u32,
}

/// A domain rule as the compiler needs it: the suffix hash of the name (the kernel's key) and
/// of each of its proper suffixes (to fold a name under another listed name). The text is not
/// kept: hashes are smaller, and folding a compile then never re-hashes a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRule {
    /// [`agent_common::domain::domain_hash`] of the name.
    pub hash: u64,
    /// Suffix hashes of the proper suffixes, from the top-level label down (`com`,
    /// `example.com` for `www.example.com`).
    pub parents: Box<[u64]>,
}

impl DomainRule {
    /// The rule for a normalised name (at most [`MAX_DOMAIN_LABELS`] labels).
    pub fn new(name: &str) -> DomainRule {
        use agent_common::domain::{label_hash, suffix_step, SUFFIX_ROOT};
        let mut suffixes = [0u64; MAX_DOMAIN_LABELS];
        let mut n = 0;
        let mut h = SUFFIX_ROOT;
        for label in name.rsplit('.') {
            h = suffix_step(h, label_hash(label.as_bytes()));
            if let Some(slot) = suffixes.get_mut(n) {
                *slot = h;
            }
            n += 1;
        }
        let parents = suffixes.get(..n.saturating_sub(1)).unwrap_or(&suffixes);
        DomainRule {
            hash: h,
            parents: parents.into(),
        }
    }
}

/// A bad line: its 1-based number and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u32,
    /// What is wrong with it.
    pub error: LineError,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.error)
    }
}

/// Every entry of one good list file, by kind. Each vector is sorted by (key, line), so
/// duplicates sit together and merging several files is a merge of sorted runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedList {
    /// IPv4 networks, ranges already split into prefixes.
    pub v4: Vec<Tagged<Net<u32>>>,
    /// IPv6 networks.
    pub v6: Vec<Tagged<Net<u128>>>,
    /// Domain rules, sorted by hash.
    pub domains: Vec<Tagged<DomainRule>>,
    /// Port rules, in line order (the earliest rule owns a port two rules share).
    pub ports: Vec<Tagged<PortRange>>,
    /// Line counts by kind.
    pub stats: LineStats,
    /// The kind of every line, so an incremental update knows what the lines it drops were
    /// without parsing them again.
    kinds: Vec<LineKind>,
}

/// Splits a file into lines the way line numbers count them: on `\n`, with no phantom last
/// line after a final `\n`.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty)
}

const BOM: &[u8] = b"\xef\xbb\xbf";

impl ParsedList {
    /// Parses a whole file. Every bad line is returned, in line order.
    pub fn parse(bytes: &[u8]) -> Result<ParsedList, Vec<BadLine>> {
        parse_region(bytes, 1)
    }

    /// Number of entries of every kind (before folding).
    pub fn entries(&self) -> usize {
        self.v4.len() + self.v6.len() + self.domains.len() + self.ports.len()
    }

    /// Re-parses only what changed between `old` (the text this list was parsed from) and
    /// `new`: the common leading and trailing lines are kept, their entries' line numbers
    /// shifted. Equivalent to `ParsedList::parse(new)` (a test checks this) and much cheaper
    /// for a small edit of a large file. On error `self` is unchanged.
    pub fn update(&mut self, old: &[u8], new: &[u8]) -> Result<(), Vec<BadLine>> {
        self.update_tracked(old, new).map(|_| ())
    }

    /// [`ParsedList::update`], also returning what changed for an incremental compile
    /// (`None` when the whole file was parsed again).
    pub(crate) fn update_tracked(
        &mut self,
        old: &[u8],
        new: &[u8],
    ) -> Result<Option<Edit>, Vec<BadLine>> {
        let (head, old_mid, new_mid) = changed_region(old, new);
        if new_mid > new.len() / 2 {
            // Changes spread over most of the file: splicing would cost more than it saves.
            *self = ParsedList::parse(new)?;
            return Ok(None);
        }
        let first_line = count_newlines(&old[..head]) + 1;
        let added = parse_region(&new[head..head + new_mid], first_line)?;
        let old_lines = lines(&old[head..head + old_mid]).count() as u32;
        let from = (first_line - 1) as usize;
        let to = (from + old_lines as usize).min(self.kinds.len());
        let mut removed = LineStats::default();
        for &k in &self.kinds[from.min(to)..to] {
            removed.count(k);
        }
        self.kinds
            .splice(from.min(to)..to, added.kinds.iter().copied());
        let shift = added.stats.lines as i64 - i64::from(old_lines);
        let last_removed = first_line + old_lines; // first line after the old middle
        let keep = |line: u32| -> Option<u32> {
            if line < first_line {
                Some(line)
            } else if line >= last_removed {
                Some((line as i64 + shift) as u32)
            } else {
                None
            }
        };
        let mut edit = Edit {
            first_line,
            last_removed,
            shift,
            v4: added.v4.iter().map(|t| t.item).collect(),
            v6: added.v6.iter().map(|t| t.item).collect(),
            domains: added.domains.iter().map(|t| t.item.hash).collect(),
        };
        // Independent vectors: splice them on separate cores.
        std::thread::scope(|s| {
            let (v4, v6, domains) = (&mut self.v4, &mut self.v6, &mut self.domains);
            let (e4, e6, ed) = (&mut edit.v4, &mut edit.v6, &mut edit.domains);
            s.spawn(move || splice(v4, added.v4, keep, |t| t.item, e4));
            s.spawn(move || splice(v6, added.v6, keep, |t| t.item, e6));
            s.spawn(move || splice(domains, added.domains, keep, |t| t.item.hash, ed));
            splice(&mut self.ports, added.ports, keep, |_| (), &mut Vec::new());
        });
        edit.v4.sort_unstable();
        edit.v4.dedup();
        edit.v6.sort_unstable();
        edit.v6.dedup();
        edit.domains.sort_unstable();
        edit.domains.dedup();
        self.stats.sub(&removed);
        self.stats.add(&added.stats);
        Ok(Some(edit))
    }
}

/// What an incremental update changed in one file: the keys removed or added (sorted, each
/// once) and how line numbers moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Edit {
    /// First line of the replaced region (1-based, same in old and new numbering).
    pub first_line: u32,
    /// First old line after the replaced region.
    pub last_removed: u32,
    /// How far old lines from `last_removed` on moved.
    pub shift: i64,
    /// IPv4 networks removed or added.
    pub v4: Vec<Net<u32>>,
    /// IPv6 networks removed or added.
    pub v6: Vec<Net<u128>>,
    /// Domain hashes removed or added.
    pub domains: Vec<u64>,
}

fn count_newlines(b: &[u8]) -> u32 {
    // Fixed-size blocks with a byte-sized counter let the compiler vectorise the inner loop.
    let mut n = 0usize;
    let mut blocks = b.chunks_exact(128);
    for block in &mut blocks {
        n += usize::from(block.iter().map(|&c| u8::from(c == b'\n')).sum::<u8>());
    }
    n += blocks.remainder().iter().filter(|&&c| c == b'\n').count();
    n as u32
}

/// `(head, old_mid, new_mid)`: `old = old[..head] + old_mid bytes + tail` and likewise `new`,
/// where the head and the tail are whole lines common to both.
fn changed_region(old: &[u8], new: &[u8]) -> (usize, usize, usize) {
    let common = common_prefix(old, new);
    let head = old[..common]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let max_tail = (old.len() - head).min(new.len() - head);
    let tail = common_suffix(&old[head..], &new[head..]).min(max_tail);
    // Shrink the tail to start right after a newline inside it: the bytes before it are then
    // a newline in both files, so head, middle and tail are whole lines. (This may give up
    // one line that was already whole; re-parsing it is harmless.)
    let tail_start = old.len() - tail;
    let tail = match old[tail_start..].iter().position(|&b| b == b'\n') {
        Some(i) => tail - (i + 1),
        None => 0,
    };
    (head, old.len() - tail - head, new.len() - tail - head)
}

/// Length of the common prefix, compared a block at a time (slice equality is a memcmp).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Length of the common suffix, compared a block at a time.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut i = 0;
    while i + BLOCK <= n && a[n - i - BLOCK..n - i] == b[n - i - BLOCK..n - i] {
        i += BLOCK;
    }
    i + a[..n - i]
        .iter()
        .rev()
        .zip(b[..n - i].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

fn splice<T: Clone, K: Ord + Copy>(
    v: &mut Vec<Tagged<T>>,
    added: Vec<Tagged<T>>,
    keep: impl Fn(u32) -> Option<u32>,
    key: impl Fn(&Tagged<T>) -> K,
    removed: &mut Vec<K>,
) {
    v.retain_mut(|t| match keep(t.line) {
        Some(line) => {
            t.line = line;
            true
        }
        None => {
            removed.push(key(t));
            false
        }
    });
    if added.is_empty() {
        return;
    }
    // Merge two sorted runs by (key, line); line numbers are unique per run position, so the
    // order is total and equal to a full sort's.
    let old = std::mem::take(v);
    let mut out = Vec::with_capacity(old.len() + added.len());
    let mut a = old.into_iter().peekable();
    let mut b = added.into_iter().peekable();
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => key(x).cmp(&key(y)).then(x.line.cmp(&y.line)).is_le(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        out.extend(next);
    }
    *v = out;
}

/// Below this size a region is parsed on the calling thread: a thread costs more than it
/// saves.
const PARALLEL_MIN_BYTES: usize = 1 << 20;

/// Parses a region of whole lines whose first line is `first_line`, on all cores: the region
/// is cut at line boundaries into one chunk per core, the chunks parsed in parallel, and their
/// sorted vectors merged.
fn parse_region(bytes: &[u8], first_line: u32) -> Result<ParsedList, Vec<BadLine>> {
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if cores == 1 || bytes.len() < PARALLEL_MIN_BYTES {
        return parse_chunk(bytes, first_line);
    }
    let mut chunks = Vec::with_capacity(cores);
    let mut start = 0;
    let mut line = first_line;
    for k in 1..=cores {
        let end = if k == cores {
            bytes.len()
        } else {
            let target = (bytes.len() * k / cores).max(start);
            bytes[target..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |i| target + i + 1)
        };
        if end > start {
            chunks.push((&bytes[start..end], line));
            line += count_newlines(&bytes[start..end]);
            start = end;
        }
    }
    let results: Vec<Result<ParsedList, Vec<BadLine>>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|&(chunk, first)| s.spawn(move || parse_chunk(chunk, first)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut merged = ParsedList::default();
    // Exact capacities: a doubling vector would keep up to half its size unused for as long
    // as the list is loaded.
    let total = |f: fn(&ParsedList) -> usize| -> usize { results.iter().flatten().map(f).sum() };
    merged.v4.reserve_exact(total(|p| p.v4.len()));
    merged.v6.reserve_exact(total(|p| p.v6.len()));
    merged.domains.reserve_exact(total(|p| p.domains.len()));
    merged.ports.reserve_exact(total(|p| p.ports.len()));
    merged.kinds.reserve_exact(total(|p| p.kinds.len()));
    let mut bad = Vec::new();
    for r in results {
        match r {
            Ok(p) if bad.is_empty() => {
                merged.v4.extend(p.v4);
                merged.v6.extend(p.v6);
                merged.domains.extend(p.domains);
                merged.ports.extend(p.ports);
                merged.kinds.extend(p.kinds);
                merged.stats.add(&p.stats);
            }
            Ok(_) => {}
            Err(mut b) => bad.append(&mut b),
        }
    }
    if !bad.is_empty() {
        return Err(bad);
    }
    // Sorted runs, one per chunk: the stable sort merges them.
    merged.v4.sort_by_key(|t| t.item);
    merged.v6.sort_by_key(|t| t.item);
    merged.domains.sort_by_key(|t| t.item.hash);
    Ok(merged)
}

fn parse_chunk(bytes: &[u8], first_line: u32) -> Result<ParsedList, Vec<BadLine>> {
    let mut list = ParsedList::default();
    let mut bad = Vec::new();
    let mut entries = Vec::new();
    for (i, raw) in lines(bytes).enumerate() {
        let line = first_line + i as u32;
        let raw = if line == 1 {
            raw.strip_prefix(BOM).unwrap_or(raw)
        } else {
            raw
        };
        entries.clear();
        match parse_line(raw, &mut entries) {
            Ok(kind) => {
                list.stats.count(kind);
                list.kinds.push(kind);
            }
            Err(error) => {
                bad.push(BadLine { line, error });
                continue;
            }
        }
        if !bad.is_empty() {
            continue;
        }
        for e in entries.drain(..) {
            match e {
                Entry::V4(item) => list.v4.push(Tagged { item, line }),
                Entry::V6(item) => list.v6.push(Tagged { item, line }),
                Entry::Domain(name) => list.domains.push(Tagged {
                    item: DomainRule::new(&name),
                    line,
                }),
                Entry::Port(item) => list.ports.push(Tagged { item, line }),
            }
        }
    }
    if !bad.is_empty() {
        return Err(bad);
    }
    // Lines are in order and (key, line) is unique, so an unstable sort gives the stable order.
    list.v4.sort_unstable_by_key(|t| (t.item, t.line));
    list.v6.sort_unstable_by_key(|t| (t.item, t.line));
    list.domains.sort_unstable_by_key(|t| (t.item.hash, t.line));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

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
        assert_eq!(entries("::ffff:192.0.2.1"), [v6("::ffff:192.0.2.1", 128)]);
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

    #[test]
    fn comments_blank_crlf() {
        for c in ["# x", "; x", "! adblock title", "#", "   # indented"] {
            assert_eq!(parse(c), Ok((LineKind::Comment, vec![])), "{c}");
        }
        for b in ["", "   ", "\t", "\r"] {
            assert_eq!(parse(b), Ok((LineKind::Blank, vec![])), "{b:?}");
        }
        assert_eq!(entries("192.0.2.1\r"), [v4("192.0.2.1", 32)]);
        assert_eq!(entries("192.0.2.0/24 ; SBL123"), [v4("192.0.2.0", 24)]);
        assert_eq!(entries("example.com#no space"), [dom("example.com")]);
    }

    #[test]
    fn every_error_names_its_field() {
        let cases: &[(&str, &str)] = &[
            (
                "10.0.0.0/33",
                "CIDR `10.0.0.0/33`: prefix length 33 is over 32 for IPv4",
            ),
            ("2001:db8::/129", "prefix length 129 is over 128 for IPv6"),
            ("10.0.0.0/x", "prefix length `x` is not a number"),
            ("10.0.0.0/", "prefix length `` is not a number"),
            ("10.0.0.0/+8", "prefix length `+8` is not a number"),
            (
                "10.0.0.1/8",
                "has host bits set after the prefix; the network is `10.0.0.0/8`",
            ),
            ("2001:db8::1/32", "the network is `2001:db8::/32`"),
            ("1.2.3", "IPv4 address `1.2.3` has 3 octets, expected 4"),
            ("1.2.3.4.5", "has 5 octets"),
            ("1.2.3.256", "octet 4 (256) is over 255"),
            ("1.2.3.99999", "octet 4 (99999) is over 255"),
            ("01.2.3.4", "octet 1 `01` is not a decimal number"),
            ("1..3.4", "octet 2 `` is not a decimal number"),
            ("2001:db8::g", "`2001:db8::g` is not an IPv6 address"),
            ("fe80::1%eth0", "zone ids"),
            (
                "10.0.0.9-10.0.0.1",
                "range `10.0.0.9-10.0.0.1`: start is after end",
            ),
            ("10.0.0.1-::1", "not the same address family"),
            ("10.0.0.1-10.0.0", "has 3 octets"),
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
            ("port tcp 1-", "port ``"),
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
    fn files_report_every_bad_line_with_its_number() {
        let text =
            b"\xef\xbb\xbf# list\r\n192.0.2.1\r\n10.0.0.0/33\n\nexa$mple\nport tcp 25\n1.2.3\n";
        let bad = ParsedList::parse(text).expect_err("three bad lines");
        let got: Vec<String> = bad.iter().map(|b| b.to_string()).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("3: CIDR `10.0.0.0/33`"), "{got:?}");
        assert!(got[1].starts_with("5: domain `exa$mple`"), "{got:?}");
        assert!(got[2].starts_with("7: IPv4 address `1.2.3`"), "{got:?}");
        let good = ParsedList::parse(b"\xef\xbb\xbf192.0.2.1\n# c\n\nexample.com\nport 25")
            .expect("good file");
        assert_eq!(good.v4.len(), 1);
        assert_eq!(good.domains[0].line, 4);
        assert_eq!(good.ports.len(), 2);
        assert_eq!(
            good.stats,
            LineStats {
                lines: 5,
                blank: 1,
                comments: 1,
                rules: 3,
                boilerplate: 0
            }
        );
    }

    /// A tiny deterministic generator, so the fuzz-style tests need no dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
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

    #[test]
    fn incremental_update_equals_full_parse() {
        let mut rng = XorShift(42);
        let pool = [
            "192.0.2.1",
            "10.0.0.0/8",
            "example.com",
            "port 25",
            "# c",
            "",
            "0.0.0.0 a.b c.d",
            "2001:db8::/32",
            "10.0.0.1-10.0.0.9",
            "127.0.0.1 localhost",
            "www.example.com",
            "192.0.2.1",
        ];
        let make = |rng: &mut XorShift, n: usize| -> Vec<String> {
            (0..n)
                .map(|_| pool[(rng.next() % pool.len() as u64) as usize].to_string())
                .collect()
        };
        for round in 0..300 {
            let n = (rng.next() % 30) as usize;
            let old_lines = make(&mut rng, n);
            let mut new_lines = old_lines.clone();
            // A random edit: replace a window with fresh lines.
            let at = if new_lines.is_empty() {
                0
            } else {
                (rng.next() as usize) % (new_lines.len() + 1)
            };
            let del = ((rng.next() % 5) as usize).min(new_lines.len() - at);
            let n = (rng.next() % 5) as usize;
            let ins = make(&mut rng, n);
            new_lines.splice(at..at + del, ins);
            let join = |l: &[String], nl: bool| {
                let mut s = l.join("\n");
                if nl && !l.is_empty() {
                    s.push('\n');
                }
                s
            };
            let old = join(&old_lines, round % 2 == 0);
            let new = join(&new_lines, round % 3 == 0);
            let mut inc = ParsedList::parse(old.as_bytes()).expect("pool lines are good");
            inc.update(old.as_bytes(), new.as_bytes())
                .expect("pool lines are good");
            let full = ParsedList::parse(new.as_bytes()).expect("pool lines are good");
            assert_eq!(inc, full, "round {round}:\n--old--\n{old}\n--new--\n{new}");
        }
    }

    #[test]
    fn incremental_update_reports_new_line_numbers() {
        let old = "a.com\nb.com\nc.com\n";
        let new = "a.com\nx.com\nbad$\nb.com\nc.com\n";
        let mut p = ParsedList::parse(old.as_bytes()).expect("good");
        let before = p.clone();
        let bad = p
            .update(old.as_bytes(), new.as_bytes())
            .expect_err("bad edit");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        assert_eq!(p, before, "a failed update changes nothing");
    }

    #[test]
    fn parallel_parse_equals_sequential_and_numbers_lines_across_chunks() {
        let pool = [
            "192.0.2.1",
            "10.0.0.0/8",
            "www.example.com",
            "port 25",
            "# comment",
            "",
            "2001:db8::/32",
            "0.0.0.0 a.example b.example",
        ];
        let mut text = String::new();
        let mut n = 0;
        while text.len() < 3 * PARALLEL_MIN_BYTES {
            text.push_str(pool[n % pool.len()]);
            text.push('\n');
            n += 1;
        }
        let par = parse_region(text.as_bytes(), 1).expect("good");
        let seq = parse_chunk(text.as_bytes(), 1).expect("good");
        assert_eq!(par, seq);
        assert_eq!(par.stats.lines, n as u64);
        // Bad lines in every chunk are all reported, with their absolute numbers.
        let mut lines: Vec<&str> = text.lines().collect();
        let bad_at = [1usize, n / 3, n / 2 + 1, n - 1];
        for &i in &bad_at {
            lines[i] = "bad$";
        }
        let text = lines.join("\n");
        let bad = parse_region(text.as_bytes(), 1).expect_err("bad lines");
        let got: Vec<u32> = bad.iter().map(|b| b.line).collect();
        let want: Vec<u32> = bad_at.iter().map(|&i| i as u32 + 1).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn domain_rules_carry_the_kernel_hashes() {
        use agent_common::domain::domain_hash;
        let r = DomainRule::new("www.example.com");
        assert_eq!(r.hash, domain_hash("www.example.com"));
        assert_eq!(
            &*r.parents,
            [domain_hash("com"), domain_hash("example.com")]
        );
        let tld = DomainRule::new("zip");
        assert_eq!(tld.hash, domain_hash("zip"));
        assert!(tld.parents.is_empty());
    }

    #[test]
    fn incremental_update_matches_full_parse_on_random_bytes() {
        let mut rng = XorShift(7);
        let alphabet = b"0123456789.:/-ab \n\n\n\r#";
        let gen = |rng: &mut XorShift| -> Vec<u8> {
            let n = (rng.next() % 48) as usize;
            (0..n)
                .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                .collect()
        };
        let mut compared = 0;
        for _ in 0..20_000 {
            let old = gen(&mut rng);
            let mut new = old.clone();
            // Mutate a window of the old text.
            let at = (rng.next() as usize) % (new.len() + 1);
            let del = ((rng.next() % 6) as usize).min(new.len() - at);
            let ins = gen(&mut rng);
            new.splice(at..at + del, ins.into_iter().take(8));
            let Ok(mut inc) = ParsedList::parse(&old) else {
                continue;
            };
            let full = ParsedList::parse(&new);
            let got = inc.update(&old, &new).map(|()| inc);
            let lines = |r: &Result<ParsedList, Vec<BadLine>>| match r {
                Ok(p) => Ok(p.clone()),
                Err(b) => Err(b.iter().map(|b| b.line).collect::<Vec<_>>()),
            };
            assert_eq!(lines(&got), lines(&full), "old {old:?} new {new:?}");
            compared += 1;
        }
        assert!(compared > 1000, "only {compared} comparisons");
    }
}
