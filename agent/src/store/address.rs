//! The address codec: an IP address in the store's 16-byte column form and back, and the
//! `ip_version` column value that says which family each end had.
//!
//! IPv6 addresses are stored as they are, IPv4 addresses mapped into `::ffff:0:0/96`, so
//! both families sort, compare and fit in one `FIXED_LEN_BYTE_ARRAY(16)` column, and an IPv4
//! prefix is an IPv6 prefix of length `96 + n`. The 16 bytes alone cannot tell `10.1.2.3`
//! from the IPv6 address `::ffff:10.1.2.3`; the family travels beside them (a journal
//! record's flags, a segment's `ip_version` column). The journal, the column buffers, the
//! segment reader and the query filter all convert through this module.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The 16-byte column form of an IPv4 address (`::ffff:a.b.c.d`).
#[inline]
pub fn v4_to_column(octets: [u8; 4]) -> [u8; 16] {
    let mut a = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
    a[12..].copy_from_slice(&octets);
    a
}

/// The 16-byte column form of an address: IPv6 as is, IPv4 mapped into `::ffff:0:0/96`.
#[inline]
pub fn ip_to_column(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => v4_to_column(a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

/// An address from its 16-byte column form and family (`v6`: it was an IPv6 address).
#[inline]
pub fn ip_from_column(a: [u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    }
}

/// The `ip_version` column value of a row: 4 or 6 when both ends share a family, 46 or 64
/// (source family first) when a translator sits between them.
#[inline]
pub fn ip_version(src_v6: bool, dst_v6: bool) -> u8 {
    match (src_v6, dst_v6) {
        (false, false) => 4,
        (true, true) => 6,
        (false, true) => 46,
        (true, false) => 64,
    }
}

/// The families (`src_v6`, `dst_v6`) of an `ip_version` value; `None` for any other value.
#[inline]
pub fn ip_families(v: u8) -> Option<(bool, bool)> {
    match v {
        4 => Some((false, false)),
        6 => Some((true, true)),
        46 => Some((false, true)),
        64 => Some((true, false)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_round_trips_and_mapped_v6_stays_v6() {
        for (text, v6) in [
            ("10.1.2.3", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
            ("::ffff:10.1.2.3", true),
            ("2001:db8::1", true),
            ("::", true),
        ] {
            let ip: IpAddr = text.parse().expect("ip");
            let col = ip_to_column(ip);
            assert_eq!(ip_from_column(col, v6), ip, "{text}");
        }
        let v4: IpAddr = "10.1.2.3".parse().expect("ip");
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(ip_to_column(v4), ip_to_column(mapped), "one column form");
        for (s, d) in [(false, false), (true, true), (false, true), (true, false)] {
            assert_eq!(ip_families(ip_version(s, d)), Some((s, d)));
        }
        assert_eq!(ip_families(5), None);
    }
}
