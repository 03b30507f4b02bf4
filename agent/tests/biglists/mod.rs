//! The million-line list the benchmarks and the reload-under-load test use.

use std::fmt::Write as _;

/// First octets the prefixes leave out: the addresses, edits and traffic of the tests and
/// benchmarks that use this list (10/8 addresses, 11/8 edits, 100/8 sources, 198/8 and 203/8
/// destinations that must pass), and loopback.
const PREFIX_SKIPS: [u32; 6] = [10, 11, 100, 127, 198, 203];

/// IPv4 /24 prefixes in this list.
const PREFIXES_V4: u32 = 100_000;

/// 1,000,000 mixed list lines: 600k IPv4 and 150k IPv6 addresses, 100k IPv4 and 50k IPv6
/// prefixes, 100k domains. Addresses are 10.0.0.0/8; the IPv4 prefixes are /24s spread evenly
/// over 1.0.0.0-223.255.255.255 (less [`PREFIX_SKIPS`]), as a real list's are over the
/// address space, so a lookup walks a trie of realistic depth; the IPv6 prefixes are
/// 2001:db8::/32 /64s. No line repeats or covers another, so nothing folds and the figures
/// are for a full million.
pub fn write_million_lines(path: &std::path::Path) {
    let mut s = String::with_capacity(24 << 20);
    for i in 0..600_000u32 {
        let [_, b, c, d] = i.to_be_bytes();
        let _ = writeln!(s, "10.{b}.{c}.{d}");
    }
    let octets: Vec<u32> = (1..=223).filter(|o| !PREFIX_SKIPS.contains(o)).collect();
    let stride = octets.len() as u32 * 65_536 / PREFIXES_V4;
    for i in 0..PREFIXES_V4 {
        let slot = i * stride;
        let [_, _, b, c] = slot.to_be_bytes();
        let _ = writeln!(s, "{}.{b}.{c}.0/24", octets[(slot >> 16) as usize]);
    }
    for i in 0..150_000u32 {
        let _ = writeln!(s, "2001:db8:ff::{:x}:{:x}", i >> 16, i & 0xffff);
    }
    for i in 0..50_000u32 {
        let _ = writeln!(s, "2001:db8:{:x}:{:x}::/64", 1 + (i >> 16), i & 0xffff);
    }
    for i in 0..100_000u32 {
        let _ = writeln!(s, "d{i}.example.org");
    }
    std::fs::write(path, s)
        .unwrap_or_else(|e| panic!("cannot write the test list {}: {e}", path.display()));
}
