//! Header parsing: Ethernet, up to two VLAN tags, IPv4 (IHL, fragments), IPv6 (a bounded walk
//! of extension headers), TCP, UDP, ICMP, ICMPv6. The result is a [`Packet`] or the
//! [`Counter`] naming why the packet was not understood; the caller passes it either way.

use agent_common::{family, proto, Counter, MAX_IPV6_EXT_HEADERS};
use aya_ebpf::programs::XdpContext;

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still seen on older switches.
const ETH_P_QINQ_OLD: u16 = 0x9100;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

/// Offsets past this are not walked: it bounds every variable offset for the verifier, and no
/// sane header stack is this deep.
const MAX_L4_OFFSET: usize = 1024;

/// What the flow table needs of one packet.
pub struct Packet {
    /// The outcome counter for this packet.
    pub outcome: Counter,
    /// [`family::V4`] or [`family::V6`].
    pub family: u8,
    /// IP protocol of the transport header (after IPv6 extension headers).
    pub proto: u8,
    /// Outer and inner VLAN ids, 0 when absent.
    pub vlan: [u16; 2],
    /// Source and destination addresses as raw network-order words (IPv4 in word 0).
    pub src: [u32; 4],
    /// See `src`.
    pub dst: [u32; 4],
    /// Source port, network order (ICMP: type).
    pub sport: u16,
    /// Destination port, network order (ICMP: code).
    pub dport: u16,
    /// TCP flags, 0 for other protocols.
    pub tcp_flags: u8,
    /// Source and destination MAC.
    pub src_mac: [u8; 6],
    /// See `src_mac`.
    pub dst_mac: [u8; 6],
    /// Frame length: the bytes the interface carried.
    pub len: u64,
}

impl Packet {
    /// Whether this packet closes its flow (TCP FIN or RST).
    #[inline(always)]
    pub fn closes_flow(&self) -> bool {
        self.tcp_flags & (TCP_FIN | TCP_RST) != 0
    }

    /// Whether this packet carries RST.
    #[inline(always)]
    pub fn is_rst(&self) -> bool {
        self.tcp_flags & TCP_RST != 0
    }
}

/// `N` bytes of packet known to be present. Fields are read relative to one checked pointer,
/// which is what lets the verifier follow the bounds check to every read.
#[derive(Clone, Copy)]
struct Header<const N: usize>(usize);

impl<const N: usize> Header<N> {
    /// The `N` bytes at `off`, or `None` if the packet is shorter.
    #[inline(always)]
    fn at(ctx: &XdpContext, off: usize) -> Option<Self> {
        let p = ctx.data() + off;
        if p + N > ctx.data_end() {
            return None;
        }
        Some(Self(p))
    }

    /// The `T` at byte `k` of the header; `k + size_of::<T>() <= N` is checked at compile time.
    #[inline(always)]
    fn get<T: Copy, const K: usize>(self) -> T {
        const { assert!(K + core::mem::size_of::<T>() <= N) };
        // SAFETY: the header's N bytes were bounds-checked in `at`; headers are unaligned.
        unsafe { core::ptr::read_unaligned((self.0 + K) as *const T) }
    }
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Parses one frame.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Counter> {
    let eth = Header::<ETH_HLEN>::at(ctx, 0).ok_or(Counter::SkipTruncatedEth)?;
    let mut pkt = Packet {
        outcome: Counter::ParsedOtherProto,
        family: 0,
        proto: 0,
        vlan: [0; 2],
        src: [0; 4],
        dst: [0; 4],
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        dst_mac: eth.get::<_, 0>(),
        src_mac: eth.get::<_, 6>(),
        len: (ctx.data_end() - ctx.data()) as u64,
    };
    let mut ethertype = be16(eth.get::<_, 12>());
    let mut off = ETH_HLEN;

    // Up to two tags; a third is not understood.
    let mut i = 0;
    while i < 3 {
        if !matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_OLD) {
            break;
        }
        if i == 2 {
            return Err(Counter::SkipTooManyVlans);
        }
        let tag = Header::<4>::at(ctx, off).ok_or(Counter::SkipTruncatedVlan)?;
        pkt.vlan[i & 1] = be16(tag.get::<_, 0>()) & 0x0fff;
        ethertype = be16(tag.get::<_, 2>());
        off += 4;
        i += 1;
    }

    let l4 = match ethertype {
        ETH_P_IPV4 => parse_ipv4(ctx, off, &mut pkt)?,
        ETH_P_IPV6 => parse_ipv6(ctx, off, &mut pkt)?,
        _ => return Err(Counter::SkipNonIp),
    };
    if let Some(l4_off) = l4 {
        parse_l4(ctx, l4_off, &mut pkt)?;
    }
    Ok(pkt)
}

/// Fills the IPv4 fields; returns the transport header's offset, or `None` for a later
/// fragment (which has no transport header).
#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize, pkt: &mut Packet) -> Result<Option<usize>, Counter> {
    // Only the fields used: version/IHL, total length, fragment offset, protocol, addresses.
    let h = Header::<20>::at(ctx, off).ok_or(Counter::SkipTruncatedIpv4)?;
    let vihl: u8 = h.get::<_, 0>();
    let total_len: [u8; 2] = h.get::<_, 2>();
    let frag: [u8; 2] = h.get::<_, 6>();
    let l4_proto: u8 = h.get::<_, 9>();
    let addrs: [u32; 2] = h.get::<_, 12>();
    let ihl = (vihl & 0x0f) as usize * 4;
    if vihl >> 4 != 4 || ihl < 20 || (be16(total_len) as usize) < ihl {
        return Err(Counter::SkipBadIpv4Header);
    }
    // Options must be present in full even though they are not read.
    let hdr_end = off + ihl;
    if ctx.data() + hdr_end > ctx.data_end() {
        return Err(Counter::SkipTruncatedIpv4);
    }
    pkt.family = family::V4;
    pkt.proto = l4_proto;
    pkt.src[0] = addrs[0];
    pkt.dst[0] = addrs[1];
    if be16(frag) & 0x1fff != 0 {
        pkt.outcome = Counter::FragmentV4;
        return Ok(None);
    }
    Ok(Some(hdr_end))
}

/// Fills the IPv6 fields and walks at most [`MAX_IPV6_EXT_HEADERS`] extension headers.
#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize, pkt: &mut Packet) -> Result<Option<usize>, Counter> {
    // Version/class/flow (4), payload length (2), next header (1), hop limit (1), addresses.
    let h = Header::<40>::at(ctx, off).ok_or(Counter::SkipTruncatedIpv6)?;
    let vtc: u8 = h.get::<_, 0>();
    let next: u8 = h.get::<_, 6>();
    pkt.src = h.get::<_, 8>();
    pkt.dst = h.get::<_, 24>();
    if vtc >> 4 != 6 {
        return Err(Counter::SkipBadIpv6Header);
    }
    pkt.family = family::V6;
    let mut next = next;
    let mut off = off + 40;
    let mut n = 0;
    while n <= MAX_IPV6_EXT_HEADERS {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH
                if n == MAX_IPV6_EXT_HEADERS =>
            {
                return Err(Counter::SkipIpv6ExtChainTooLong);
            }
            IPPROTO_FRAGMENT if n == MAX_IPV6_EXT_HEADERS => {
                return Err(Counter::SkipIpv6ExtChainTooLong);
            }
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let e = Header::<2>::at(ctx, off).ok_or(Counter::SkipTruncatedIpv6Ext)?;
                next = e.get::<_, 0>();
                (e.get::<u8, 1>() as usize + 1) * 8
            }
            IPPROTO_AH => {
                let e = Header::<2>::at(ctx, off).ok_or(Counter::SkipTruncatedIpv6Ext)?;
                next = e.get::<_, 0>();
                (e.get::<u8, 1>() as usize + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                let e = Header::<8>::at(ctx, off).ok_or(Counter::SkipTruncatedIpv6Ext)?;
                next = e.get::<_, 0>();
                if be16(e.get::<_, 2>()) >> 3 != 0 {
                    pkt.proto = next;
                    pkt.outcome = Counter::FragmentV6;
                    return Ok(None);
                }
                8
            }
            _ => break,
        };
        off += len;
        if off > MAX_L4_OFFSET {
            return Err(Counter::SkipTruncatedIpv6Ext);
        }
        n += 1;
    }
    pkt.proto = next;
    Ok(Some(off))
}

/// Fills ports (or ICMP type/code) and TCP flags; other protocols keep ports 0.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, off: usize, pkt: &mut Packet) -> Result<(), Counter> {
    if off > MAX_L4_OFFSET {
        return Err(Counter::SkipTruncatedL4);
    }
    match pkt.proto {
        proto::TCP => {
            // The whole fixed header must be there, though only ports and flags are read.
            let t = Header::<20>::at(ctx, off).ok_or(Counter::SkipTruncatedL4)?;
            pkt.sport = t.get::<_, 0>();
            pkt.dport = t.get::<_, 2>();
            pkt.tcp_flags = t.get::<_, 13>();
            pkt.outcome = Counter::ParsedTcp;
        }
        proto::UDP => {
            let u = Header::<8>::at(ctx, off).ok_or(Counter::SkipTruncatedL4)?;
            pkt.sport = u.get::<_, 0>();
            pkt.dport = u.get::<_, 2>();
            pkt.outcome = Counter::ParsedUdp;
        }
        proto::ICMP | proto::ICMPV6 => {
            let c: [u8; 2] = Header::<4>::at(ctx, off)
                .ok_or(Counter::SkipTruncatedL4)?
                .get::<_, 0>();
            // Type and code stand in for ports (as NetFlow does), kept network-order like ports.
            pkt.sport = u16::from_be(c[0] as u16);
            pkt.dport = u16::from_be(c[1] as u16);
            pkt.outcome = if pkt.proto == proto::ICMP {
                Counter::ParsedIcmp
            } else {
                Counter::ParsedIcmpv6
            };
        }
        _ => pkt.outcome = Counter::ParsedOtherProto,
    }
    Ok(())
}
