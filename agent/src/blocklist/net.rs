//! IP networks as (address, prefix length) over host-order integers, and the split of an
//! address range into the fewest prefixes that cover it exactly.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use agent_common::rules::{LpmKeyV4, LpmKeyV6};

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
