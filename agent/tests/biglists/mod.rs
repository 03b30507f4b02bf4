//! The million-line list the benchmarks and the reload-under-load test use.

use std::fmt::Write as _;

/// 1,000,000 mixed list lines: 600k IPv4 and 150k IPv6 addresses, 100k IPv4 and 50k IPv6
/// prefixes, 100k domains. Addresses are 10.0.0.0/8, prefixes 172.16.0.0/12 /24s and
/// 2001:db8::/32 /64s, so nothing folds and the figures are for a full million.
pub fn write_million_lines(path: &std::path::Path) {
    let mut s = String::with_capacity(24 << 20);
    for i in 0..600_000u32 {
        let [_, b, c, d] = i.to_be_bytes();
        let _ = writeln!(s, "10.{b}.{c}.{d}");
    }
    for i in 0..100_000u32 {
        let [_, _, c, _] = (i + (16 << 16)).to_be_bytes();
        let _ = writeln!(s, "172.{}.{c}.0/24", c >> 4 | 16);
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
