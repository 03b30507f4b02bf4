//! IP addresses and prefixes as the operator writes them, one parser for every place that
//! reads them (list files, `query --cidr`): strict dotted-quad IPv4, IPv6 without zone ids,
//! and CIDR prefixes whose host bits must be zero. Networks are (address, prefix length)
//! over host-order integers ([`Net`]), and an address range splits into the fewest prefixes
//! that cover it exactly ([`range_to_prefixes`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use agent_common::rules::{LpmKeyV4, LpmKeyV6};

/// Why an address or prefix was refused. The text names the field at fault and quotes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
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
    /// blocks (or selects) far too much or far too little.
    #[error("CIDR `{text}` has host bits set after the prefix; the network is `{network}`")]
    HostBits {
        /// The CIDR as written.
        text: String,
        /// The network the author probably meant.
        network: String,
    },
}

/// Parses an IPv4 address (strict dotted quad) or an IPv6 address (no zone id).
#[inline]
pub fn parse_addr(text: &str) -> Result<IpAddr, NetError> {
    // Inlined into the list parser's loop: most lines of a large list are IPv4 addresses.
    match parse_ipv4_fast(text.as_bytes()) {
        Some(a) => Ok(IpAddr::V4(Ipv4Addr::from(a))),
        None => parse_addr_other(text),
    }
}

/// [`parse_addr`] for IPv6, and for IPv4 the fast path refused (with a precise error).
fn parse_addr_other(text: &str) -> Result<IpAddr, NetError> {
    if text.contains(':') {
        if text.contains('%') {
            return Err(NetError::Ipv6Zone { text: text.into() });
        }
        return text
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| NetError::Ipv6Syntax { text: text.into() });
    }
    parse_ipv4_explained(text).map(|a| IpAddr::V4(Ipv4Addr::from(a)))
}

/// Dotted-quad IPv4, strictly: four decimal octets, no leading zeros (which some tools read
/// as octal), so every accepted address means one thing. The common case in one pass over
/// the bytes; `None` sends the caller to [`parse_ipv4_explained`] for a precise error.
#[inline]
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

fn parse_ipv4_explained(text: &str) -> Result<u32, NetError> {
    let count = text.split('.').count();
    if count != 4 {
        return Err(NetError::Ipv4OctetCount {
            text: text.into(),
            count,
        });
    }
    let mut addr = 0u32;
    for (i, octet) in text.split('.').enumerate() {
        let syntax = || NetError::Ipv4OctetSyntax {
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
            return Err(NetError::Ipv4OctetRange {
                text: text.into(),
                index: i + 1,
                octet: octet.into(),
            });
        }
        addr = (addr << 8) | value;
    }
    Ok(addr)
}

/// An address width: `u32` for IPv4, `u128` for IPv6.
pub trait AddrBits: Copy + Ord + fmt::Debug {
    /// Width in bits.
    const BITS: u32;
    /// Widens to `u128`.
    fn widen(self) -> u128;
    /// Narrows from `u128` (callers stay within `BITS`).
    fn narrow(v: u128) -> Self;
    /// Renders as an address.
    fn fmt_addr(self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl AddrBits for u32 {
    const BITS: u32 = 32;
    fn widen(self) -> u128 {
        self as u128
    }
    fn narrow(v: u128) -> Self {
        v as u32
    }
    fn fmt_addr(self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Ipv4Addr::from(self), f)
    }
}

impl AddrBits for u128 {
    const BITS: u32 = 128;
    fn widen(self) -> u128 {
        self
    }
    fn narrow(v: u128) -> Self {
        v
    }
    fn fmt_addr(self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Ipv6Addr::from(self), f)
    }
}

/// A network: `addr` with host bits zero, `len` in `0..=A::BITS`. Orders by address, then
/// by length, so a network sorts right before the narrower networks it contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Net<A> {
    /// Network address, host order.
    pub addr: A,
    /// Prefix length in bits.
    pub len: u8,
}

/// The mask of the first `len` bits of a `bits`-wide address, as `u128`.
fn mask(bits: u32, len: u8) -> u128 {
    let len = u32::from(len).min(bits);
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    if len == 0 {
        0
    } else if len == bits {
        all
    } else {
        all & !(all >> len)
    }
}

impl<A: AddrBits> Net<A> {
    /// The network of `len` bits containing `addr` (host bits cleared).
    pub fn new(addr: A, len: u8) -> Self {
        Net {
            addr: A::narrow(addr.widen() & mask(A::BITS, len)),
            len,
        }
    }

    /// The last address in the network.
    pub fn last(self) -> A {
        let all = if A::BITS == 128 {
            u128::MAX
        } else {
            (1u128 << A::BITS) - 1
        };
        A::narrow(self.addr.widen() | (all & !mask(A::BITS, self.len)))
    }

    /// Whether this is a single address (/32 or /128).
    pub fn is_host(self) -> bool {
        u32::from(self.len) == A::BITS
    }

    /// Whether `addr` is inside the network.
    pub fn contains(self, addr: A) -> bool {
        self.addr <= addr && addr <= self.last()
    }
}

impl Net<u32> {
    /// The LPM trie key for this network.
    pub fn lpm_key(self) -> LpmKeyV4 {
        LpmKeyV4 {
            prefix_len: self.len.into(),
            addr: self.addr.to_be_bytes(),
        }
    }
}

impl Net<u128> {
    /// The LPM trie key for this network.
    pub fn lpm_key(self) -> LpmKeyV6 {
        LpmKeyV6 {
            prefix_len: self.len.into(),
            addr: self.addr.to_be_bytes(),
        }
    }
}

impl<A: AddrBits> fmt::Display for Net<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt_addr(f)?;
        write!(f, "/{}", self.len)
    }
}

/// An IPv4 or IPv6 prefix: what a CIDR means, or a single address as a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// An IPv4 network.
    V4(Net<u32>),
    /// An IPv6 network.
    V6(Net<u128>),
}

impl Prefix {
    /// The prefix holding exactly `ip`.
    #[inline]
    pub fn host(ip: IpAddr) -> Prefix {
        match ip {
            IpAddr::V4(a) => Prefix::V4(Net::new(u32::from(a), 32)),
            IpAddr::V6(a) => Prefix::V6(Net::new(u128::from(a), 128)),
        }
    }

    /// The network of `len` bits (at most the family's width) that contains `ip`.
    #[inline]
    pub fn containing(ip: IpAddr, len: u8) -> Prefix {
        match ip {
            IpAddr::V4(a) => Prefix::V4(Net::new(u32::from(a), len.min(32))),
            IpAddr::V6(a) => Prefix::V6(Net::new(u128::from(a), len.min(128))),
        }
    }

    /// The same prefix in the IPv6 address space, IPv4 as IPv4-mapped
    /// (`::ffff:a.b.c.d/(96 + len)`), the form the audit store keeps addresses in.
    pub fn to_v6_mapped(self) -> Net<u128> {
        match self {
            Prefix::V4(n) => Net {
                addr: 0xffff_0000_0000 | u128::from(n.addr),
                len: 96 + n.len,
            },
            Prefix::V6(n) => n,
        }
    }
}

/// Parses an address (a /32 or /128) or a CIDR prefix. A prefix length that is not a decimal
/// number of at most 3 digits, is over the family's width, or leaves host bits set in the
/// address is an error naming it.
#[inline]
pub fn parse_prefix(text: &str) -> Result<Prefix, NetError> {
    match text.bytes().position(|b| b == b'/') {
        None => parse_addr(text).map(Prefix::host),
        Some(at) => parse_cidr(text, &text[..at], &text[at + 1..]),
    }
}

/// [`parse_prefix`] of `text`, written `addr/len`.
fn parse_cidr(text: &str, addr: &str, len: &str) -> Result<Prefix, NetError> {
    let addr = parse_addr(addr)?;
    let (bits, family) = match addr {
        IpAddr::V4(_) => (32, "IPv4"),
        IpAddr::V6(_) => (128, "IPv6"),
    };
    let syntax = || NetError::PrefixLenSyntax {
        text: text.into(),
        len: len.into(),
    };
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
        return Err(syntax());
    }
    let len_val: u32 = len.parse().map_err(|_| syntax())?;
    if len_val > bits {
        return Err(NetError::PrefixLenRange {
            text: text.into(),
            len: len_val,
            max: bits,
            family,
        });
    }
    let prefix = Prefix::containing(addr, len_val as u8);
    if prefix_addr(prefix) != addr {
        return Err(NetError::HostBits {
            text: text.into(),
            network: prefix.to_string(),
        });
    }
    Ok(prefix)
}

/// The network address of a prefix.
fn prefix_addr(p: Prefix) -> IpAddr {
    match p {
        Prefix::V4(n) => IpAddr::V4(Ipv4Addr::from(n.addr)),
        Prefix::V6(n) => IpAddr::V6(Ipv6Addr::from(n.addr)),
    }
}

impl FromStr for Prefix {
    type Err = NetError;

    fn from_str(text: &str) -> Result<Prefix, NetError> {
        parse_prefix(text)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prefix::V4(n) => n.fmt(f),
            Prefix::V6(n) => n.fmt(f),
        }
    }
}

/// Calls `emit` with the fewest networks that cover `lo..=hi` exactly, in address order
/// (at most `2 * BITS - 2` of them). Each step takes the largest block that starts at the
/// current address (its alignment) and does not run past `hi`.
pub fn range_to_prefixes<A: AddrBits>(lo: A, hi: A, mut emit: impl FnMut(Net<A>)) {
    let bits = A::BITS;
    let (mut cur, hi) = (lo.widen(), hi.widen());
    if cur > hi {
        return;
    }
    loop {
        let align = if cur == 0 {
            bits
        } else {
            cur.trailing_zeros().min(bits)
        };
        let span = hi - cur; // block sizes up to span + 1 fit
        let fit = if span == u128::MAX {
            128
        } else {
            127 - (span + 1).leading_zeros()
        };
        let k = align.min(fit);
        emit(Net {
            addr: A::narrow(cur),
            len: (bits - k) as u8,
        });
        let size_minus_one = if k == 128 {
            u128::MAX
        } else {
            (1u128 << k) - 1
        };
        let end = cur + size_minus_one;
        if end >= hi {
            return;
        }
        cur = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u32 {
        s.parse::<Ipv4Addr>().expect("test address").into()
    }

    fn split4(lo: &str, hi: &str) -> Vec<String> {
        let mut v = Vec::new();
        range_to_prefixes(v4(lo), v4(hi), |n| v.push(n.to_string()));
        v
    }

    #[test]
    fn ranges_split_into_minimal_prefixes() {
        assert_eq!(split4("10.0.0.0", "10.0.0.255"), ["10.0.0.0/24"]);
        assert_eq!(split4("10.0.0.1", "10.0.0.1"), ["10.0.0.1/32"]);
        assert_eq!(
            split4("10.0.0.1", "10.0.0.6"),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        assert_eq!(split4("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(
            split4("0.0.0.1", "255.255.255.255").len(),
            32,
            "worst case is 2*32-2 at most"
        );
        let mut v = Vec::new();
        range_to_prefixes(0u128, u128::MAX, |n| v.push(n));
        assert_eq!(
            v,
            [Net {
                addr: 0u128,
                len: 0
            }]
        );
        let mut v = Vec::new();
        range_to_prefixes(1u128, u128::MAX - 1, |n| v.push(n));
        assert_eq!(v.len(), 2 * 127);
    }

    #[test]
    fn ranges_cover_exactly() {
        // Brute-force over a small window: every address in the range is covered once, and
        // nothing outside.
        for (lo, hi) in [(3u32, 17u32), (0, 0), (5, 200), (255, 256), (1, 1023)] {
            let mut nets = Vec::new();
            range_to_prefixes(lo, hi, |n| nets.push(n));
            for a in 0..2048u32 {
                let hits = nets.iter().filter(|n| n.addr <= a && a <= n.last()).count();
                assert_eq!(hits, usize::from(lo <= a && a <= hi), "{a} in {lo}-{hi}");
            }
        }
    }

    fn prefix(s: &str) -> String {
        match s.parse::<Prefix>() {
            Ok(p) => p.to_string(),
            Err(e) => panic!("`{s}` should parse, got {e}"),
        }
    }

    fn err(s: &str) -> String {
        match s.parse::<Prefix>() {
            Err(e) => e.to_string(),
            Ok(p) => panic!("`{s}` should be refused, got {p}"),
        }
    }

    #[test]
    fn prefixes_and_addresses_parse_strictly() {
        assert_eq!(prefix("192.0.2.1"), "192.0.2.1/32");
        assert_eq!(prefix("192.0.2.0/24"), "192.0.2.0/24");
        assert_eq!(prefix("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(prefix("2001:DB8::/32"), "2001:db8::/32");
        assert_eq!(prefix("::"), "::/128");
        assert_eq!(prefix("::ffff:192.0.2.1"), "::ffff:192.0.2.1/128");
        let cases: &[(&str, &str)] = &[
            (
                "10.0.0.0/33",
                "CIDR `10.0.0.0/33`: prefix length 33 is over 32 for IPv4",
            ),
            ("2001:db8::/129", "prefix length 129 is over 128 for IPv6"),
            ("10.0.0.0/x", "prefix length `x` is not a number"),
            ("10.0.0.0/", "prefix length `` is not a number"),
            ("10.0.0.0/+8", "prefix length `+8` is not a number"),
            ("10.0.0.0/0008", "prefix length `0008` is not a number"),
            (
                "10.0.0.1/8",
                "CIDR `10.0.0.1/8` has host bits set after the prefix; the network is `10.0.0.0/8`",
            ),
            ("2001:db8::1/32", "the network is `2001:db8::/32`"),
            ("1.2.3", "IPv4 address `1.2.3` has 3 octets, expected 4"),
            ("1.2.3.4.5", "has 5 octets"),
            ("1.2.3.256", "octet 4 (256) is over 255"),
            ("1.2.3.99999", "octet 4 (99999) is over 255"),
            (
                "01.2.3.4",
                "IPv4 address `01.2.3.4`: octet 1 `01` is not a decimal number (digits only, no leading zeros)",
            ),
            ("1..3.4", "octet 2 `` is not a decimal number"),
            ("2001:db8::g", "`2001:db8::g` is not an IPv6 address"),
            (
                "fe80::1%eth0",
                "IPv6 address `fe80::1%eth0`: zone ids (`%...`) are not supported",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.contains(want), "`{text}`: got `{got}`, want `{want}`");
        }
    }

    #[test]
    fn prefixes_contain_and_map_into_ipv6() {
        let p: Prefix = "10.1.0.0/16".parse().expect("prefix");
        let m = p.to_v6_mapped();
        let col = |s: &str| match s.parse::<IpAddr>().expect("ip") {
            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
            IpAddr::V6(a) => u128::from(a),
        };
        assert!(m.contains(col("10.1.200.3")));
        assert!(!m.contains(col("10.2.0.1")));
        assert_eq!((m.addr, m.last()), (col("10.1.0.0"), col("10.1.255.255")));
        let all4: Prefix = "0.0.0.0/0".parse().expect("prefix");
        assert!(all4.to_v6_mapped().contains(col("255.255.255.255")));
        assert!(!all4.to_v6_mapped().contains(col("2001:db8::1")));
        let v6: Prefix = "2001:db8::/32".parse().expect("prefix");
        assert!(v6.to_v6_mapped().contains(col("2001:db8:1::5")));
        let host = Prefix::host("192.0.2.7".parse().expect("ip"));
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert_eq!(
            Prefix::containing("192.0.2.7".parse().expect("ip"), 40),
            host,
            "a length past the width is the host"
        );
        assert_eq!(
            Prefix::containing("2001:db8::7".parse().expect("ip"), 32).to_string(),
            "2001:db8::/32"
        );
    }

    #[test]
    fn networks_mask_and_end() {
        let n = Net::new(v4("10.1.2.3"), 8);
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert_eq!(n.last(), v4("10.255.255.255"));
        assert_eq!(Net::new(v4("1.2.3.4"), 0).last(), u32::MAX);
        assert!(Net::new(1u128, 128).is_host());
        assert_eq!(Net::new(v4("192.0.2.0"), 24).lpm_key().addr, [192, 0, 2, 0]);
    }
}
