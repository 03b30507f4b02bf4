//! Header parsing: Ethernet, up to two VLAN tags, IPv4 (IHL, fragments), IPv6 (a bounded walk
//! of extension headers), TCP, UDP, ICMP, ICMPv6. The result is a [`Packet`] whose flow key is
//! written in place as the headers are read, or the [`Counter`] naming why the packet was not
//! understood; the caller passes the packet either way.

use agent_common::{family, proto, Counter, FlowKey, MAX_IPV6_EXT_HEADERS};
use aya_ebpf::programs::XdpContext;

pub const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
pub(crate) const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

const DNS_PORT: u16 = 53u16.to_be();
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;
pub const TCP_SYN: u8 = 0x02;
/// URG: the segment carries urgent data (which a server reads out of the stream).
pub const TCP_URG: u8 = 0x20;
/// ACK: sent by an originator once the server's SYN-ACK has come.
pub const TCP_ACK: u8 = 0x10;

/// Offsets past this are not walked: it bounds every variable offset for the verifier, and no
/// sane header stack is this deep.
pub const MAX_L4_OFFSET: usize = 1024;

/// What the flow table needs of one packet. The key is oriented source -> destination.
pub struct Packet {
    /// The flow key, `a` = source, `b` = destination; `ifindex` is left to the caller.
    pub key: FlowKey,
    /// The outcome counter for this packet.
    pub outcome: Counter,
    /// TCP flags, 0 for other protocols.
    pub tcp_flags: u8,
    /// Frame length: the bytes the interface carried.
    pub len: u64,
    /// Offset of the DNS header if this is a query to port 53 (UDP, or TCP past the length
    /// prefix), else 0.
    pub dns_off: usize,
    /// Offset of the TCP or UDP header, else 0 (read again only by the payload copy).
    pub l4_off: usize,
    /// Where the IP packet ends by its own length field: within the frame, which Ethernet
    /// padding may carry past it.
    pub ip_end: usize,
    /// TCP: the sequence number, network order. Otherwise 0.
    pub seq: u32,
    /// Hand-over bits the flow path leaves for the slow path beside those it returns
    /// (`payload::CREATED`), 0 from the parser. Apart, and read only where they are handed
    /// over: the main program branches on the returned bits, and a bit there kept states
    /// the verifier had walked before from being found equal (25,000 instructions).
    pub created: u8,
}

impl Packet {
    /// Whether this packet can only open a flow: a TCP SYN without ACK comes from the
    /// originator of a new connection (or retransmits one).
    #[inline(always)]
    pub fn opens_flow(&self) -> bool {
        self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    /// Whether this is a bare connection request (SYN, no ACK, RST or FIN): the only
    /// segment a refusal answers with a RST (RFC 9293 never answers a RST, and a SYN with
    /// FIN is no request to open).
    #[inline(always)]
    pub fn is_plain_syn(&self) -> bool {
        self.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN
    }

    /// Whether this is a connection's acceptance (SYN and ACK; no RST or FIN).
    #[inline(always)]
    pub fn is_syn_ack(&self) -> bool {
        self.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN | TCP_ACK
    }

    /// 1 for a bare connection request ([`Self::is_plain_syn`]), else 0, computed without a
    /// branch: a branch where a new flow's entry is built doubled the verifier's walk of the
    /// path after it (100,000 instructions).
    #[inline(always)]
    pub fn plain_syn_bit(&self) -> u8 {
        let x = u32::from(self.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN))
            ^ u32::from(TCP_SYN);
        (x.wrapping_sub(1) >> 31) as u8
    }

    /// Whether this packet carries SYN (with or without ACK).
    #[inline(always)]
    pub fn has_syn(&self) -> bool {
        self.tcp_flags & TCP_SYN != 0
    }

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
pub struct Header<const N: usize>(usize);

impl<const N: usize> Header<N> {
    /// The `N` bytes at `off`, or `None` if the packet is shorter.
    #[inline(always)]
    pub fn at(ctx: &XdpContext, off: usize) -> Option<Self> {
        let p = ctx.data() + off;
        if p + N > ctx.data_end() {
            return None;
        }
        Some(Self(p))
    }

    /// The `T` at byte `K` of the header (`K + size_of::<T>() <= N`, checked at compile time).
    ///
    /// Multi-byte fields are read with plain (not byte-wise) loads even where the packet leaves
    /// them unaligned: the BPF JIT on every architecture this runs on permits unaligned packet
    /// loads (it is how C XDP programs read `struct iphdr`), and byte-wise reads cost a third
    /// of the per-packet budget.
    #[inline(always)]
    pub fn get<T: Copy, const K: usize>(self) -> T {
        const { assert!(K + core::mem::size_of::<T>() <= N) };
        // SAFETY: the header's N bytes were bounds-checked in `at`.
        unsafe { core::ptr::read((self.0 + K) as *const T) }
    }

    /// The header's 32-bit words added as read, unfolded (for [`fold`]).
    #[inline(always)]
    pub fn word_sum(self) -> u64 {
        const { assert!(N.is_multiple_of(4)) };
        let mut sum = 0;
        let mut i = 0;
        while i < N {
            // SAFETY: within the N bytes bounds-checked in `at`.
            sum += u64::from(unsafe { core::ptr::read((self.0 + i) as *const u32) });
            i += 4;
        }
        sum
    }

    /// Writes the `T` at byte `K` of the header (checked as [`Header::get`]); for the few
    /// packets rewritten in place (`refuse`).
    #[inline(always)]
    pub fn set<T: Copy, const K: usize>(self, value: T) {
        const { assert!(K + core::mem::size_of::<T>() <= N) };
        // SAFETY: the header's N bytes were bounds-checked in `at`; XDP packet data is
        // writable.
        unsafe { core::ptr::write((self.0 + K) as *mut T, value) }
    }
}

/// The Internet checksum of a sum of 16-bit words: folded to 16 bits, complemented (0 for
/// a sum over a header whose checksum is right).
#[inline(always)]
pub(crate) fn fold(sum: u64) -> u16 {
    let mut s = (sum & 0xffff_ffff) + (sum >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

#[inline(always)]
pub(crate) fn be16(raw: u16) -> u16 {
    u16::from_be(raw)
}

/// Parses one frame.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Counter> {
    let eth = Header::<ETH_HLEN>::at(ctx, 0).ok_or(Counter::SkipTruncatedEth)?;
    let mut pkt = Packet {
        key: crate::mem::zeroed(),
        outcome: Counter::ParsedOtherProto,
        tcp_flags: 0,
        len: (ctx.data_end() - ctx.data()) as u64,
        dns_off: 0,
        l4_off: 0,
        ip_end: 0,
        seq: 0,
        created: 0,
    };
    let mut ethertype = be16(eth.get::<u16, 12>());
    let mut off = ETH_HLEN;

    if is_vlan(ethertype) {
        let tag = Header::<4>::at(ctx, off).ok_or(Counter::SkipTruncatedVlan)?;
        pkt.key.vlan = be16(tag.get::<u16, 0>()) & 0x0fff;
        ethertype = be16(tag.get::<u16, 2>());
        off += 4;
        if is_vlan(ethertype) {
            let tag = Header::<4>::at(ctx, off).ok_or(Counter::SkipTruncatedVlan)?;
            pkt.key.vlan_inner = be16(tag.get::<u16, 0>()) & 0x0fff;
            ethertype = be16(tag.get::<u16, 2>());
            off += 4;
            if is_vlan(ethertype) {
                return Err(Counter::SkipTooManyVlans);
            }
        }
    }

    let l4 = match ethertype {
        ETH_P_IPV4 => parse_ipv4(ctx, off, &mut pkt)?,
        ETH_P_IPV6 => parse_ipv6(ctx, off, &mut pkt)?,
        _ => return Err(Counter::SkipNonIp),
    };
    if let L4::At(l4_off) | L4::FirstFragment(l4_off) = l4 {
        if let Err(reason) = parse_l4(ctx, l4_off, &mut pkt) {
            // A transport header cut short is no reason to let the packet by unjudged: a
            // gateway forwards it on its addresses, and a first fragment too short for it
            // (RFC 1858's tiny fragment) is delivered once reassembled. It is judged and
            // counted with the ports it carries (a TCP or UDP header's are read first: a
            // first fragment holds at least 8 bytes, so port rules judge it), else ports 0,
            // as later fragments are.
            if l4_off + 4 > pkt.ip_end {
                pkt.key.port_a = 0;
                pkt.key.port_b = 0;
            }
            pkt.outcome = reason;
            pkt.l4_off = 0;
        }
    }
    Ok(pkt)
}

/// Where the transport header is, as the IP header says.
#[derive(Clone, Copy)]
enum L4 {
    /// At this offset.
    At(usize),
    /// At this offset, in the first fragment of a datagram.
    FirstFragment(usize),
    /// Not in this packet (a later fragment, or past what is walked): the flow is the
    /// addresses' and protocol's alone, ports 0, its outcome already set.
    Absent,
}

#[inline(always)]
pub fn is_vlan(ethertype: u16) -> bool {
    // Not the pre-standard 0x9100: Linux takes no such frame for a VLAN's, nor for IP.
    matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD)
}

/// Whether `proto` is an IPv6 extension header's number: a flow's protocol is one only when
/// its transport header lies past the walk (a longer chain, or one cut short).
#[inline(always)]
pub(crate) fn is_ipv6_ext(proto: u8) -> bool {
    matches!(
        proto,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
    )
}

/// Fills the IPv4 fields; returns where the transport header is.
#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize, pkt: &mut Packet) -> Result<L4, Counter> {
    let h = Header::<20>::at(ctx, off).ok_or(Counter::SkipTruncatedIpv4)?;
    let vihl: u8 = h.get::<_, 0>();
    let ihl = (vihl & 0x0f) as usize * 4;
    let total = be16(h.get::<u16, 2>()) as usize;
    if vihl >> 4 != 4 || ihl < 20 || total < ihl {
        return Err(Counter::SkipBadIpv4Header);
    }
    // A header that does not sum right is dropped by the host (RFC 1122 3.2.1.2), and so is
    // a source no host may send from (multicast, the limited broadcast: a martian source
    // whatever the host's configuration). A checksum field of 0 is taken for one never filled
    // in, as hand-made frames leave it (a test's, a generator's): judged and recorded as
    // before, though a host drops it too.
    if (h.get::<u16, 10>() != 0 && !sums_right(ctx, h, off))
        || h.get::<u8, 12>() & 0xf0 == 0xe0
        || h.get::<u32, 12>() == u32::MAX
    {
        return Err(Counter::SkipBadIpv4Header);
    }
    pkt.ip_end = off + total;
    // The whole packet must be in the frame (options too): the host drops a frame shorter
    // than its IP length, so it reaches no one and is no flow, counted under this reason
    // alone. (The frame is whole here: this is no multi-buffer program. One would have to
    // measure it with `bpf_xdp_get_buff_len` instead.)
    if ctx.data() + pkt.ip_end > ctx.data_end() {
        return Err(Counter::SkipTruncatedIpv4);
    }
    let hdr_end = off + ihl;
    pkt.key.family = family::V4;
    pkt.key.proto = h.get::<_, 9>();
    pkt.key.addr_a[0] = h.get::<u32, 12>();
    pkt.key.addr_b[0] = h.get::<u32, 16>();
    let frag = be16(h.get::<u16, 6>());
    if frag & 0x1fff != 0 {
        pkt.outcome = Counter::FragmentV4;
        return Ok(L4::Absent);
    }
    // MF with offset 0.
    if frag & 0x2000 != 0 {
        return Ok(L4::FirstFragment(hdr_end));
    }
    Ok(L4::At(hdr_end))
}

/// Whether the IPv4 header at `off` (options included) sums right (RFC 791): the host drops
/// one that does not, so no server sees its packet. Words are added as read (the sum of
/// byte-swapped words is the byte-swapped sum, all ones either way): a dozen instructions
/// for a header without options. Options are read in one piece per length, chosen by the
/// IHL read afresh: a loop over them, or a match on the header's end, had each length go on
/// as a state of its own through the rest of the parser (9,000 to 18,000 more instructions
/// of the verifier's walk).
#[inline(always)]
fn sums_right(ctx: &XdpContext, h: Header<20>, off: usize) -> bool {
    let at = off + 20;
    let options = match h.get::<u8, 0>() & 0x0f {
        6 => words_at::<4>(ctx, at),
        7 => words_at::<8>(ctx, at),
        8 => words_at::<12>(ctx, at),
        9 => words_at::<16>(ctx, at),
        10 => words_at::<20>(ctx, at),
        11 => words_at::<24>(ctx, at),
        12 => words_at::<28>(ctx, at),
        13 => words_at::<32>(ctx, at),
        14 => words_at::<36>(ctx, at),
        15 => words_at::<40>(ctx, at),
        _ => Some(0),
    };
    // Options past the frame are the frame's fault, said by the length check after.
    options.is_none_or(|o| fold(h.word_sum() + o) == 0)
}

/// The 32-bit words of the `N` bytes at `at` added, if the frame holds them.
#[inline(always)]
fn words_at<const N: usize>(ctx: &XdpContext, at: usize) -> Option<u64> {
    Header::<N>::at(ctx, at).map(Header::word_sum)
}

/// Fills the IPv6 fields and walks at most [`MAX_IPV6_EXT_HEADERS`] extension headers. A
/// longer chain, or one reaching past [`MAX_L4_OFFSET`], is still a packet the host may
/// deliver: its flow is the addresses' with the first header not walked as protocol.
#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize, pkt: &mut Packet) -> Result<L4, Counter> {
    let h = Header::<40>::at(ctx, off).ok_or(Counter::SkipTruncatedIpv6)?;
    // A multicast source, too, the host drops (RFC 4291 2.7; its InHdrErrors).
    if h.get::<u8, 0>() >> 4 != 6 || h.get::<u8, 8>() == 0xff {
        return Err(Counter::SkipBadIpv6Header);
    }
    pkt.key.family = family::V6;
    let payload = be16(h.get::<u16, 4>()) as usize;
    pkt.ip_end = off + 40 + payload;
    // As for IPv4: the host drops a frame shorter than its payload length says.
    if ctx.data() + pkt.ip_end > ctx.data_end() {
        return Err(Counter::SkipTruncatedIpv6);
    }
    pkt.key.addr_a = h.get::<_, 8>();
    pkt.key.addr_b = h.get::<_, 24>();
    // Length 0 is a jumbogram's (RFC 2675), whose length the Hop-by-Hop header carries and
    // the host honours: not walked, it is a flow of that header (so a transport header
    // unread behind it cannot pass a port or domain rule, see `verdict::judge`). Without
    // that header the host forwards the bare 40-byte header (its length says so), no
    // transport header in it; telling the two apart here, or reading on to the frame's
    // end, cost the verifier 35,000 instructions past its guard.
    if payload == 0 {
        pkt.key.proto = IPPROTO_HOPOPTS;
        pkt.outcome = Counter::SkipTruncatedIpv6Ext;
        return Ok(L4::Absent);
    }
    let mut next: u8 = h.get::<_, 6>();
    let mut off = off + 40;
    let mut n = 0;
    let mut first_fragment = false;
    while n <= MAX_IPV6_EXT_HEADERS {
        if !is_ipv6_ext(next) {
            break;
        }
        if n == MAX_IPV6_EXT_HEADERS {
            pkt.key.proto = next;
            pkt.outcome = Counter::SkipIpv6ExtChainTooLong;
            return Ok(L4::Absent);
        }
        // A header cut short ends the walk as a long chain does: a router forwards the
        // packet on its addresses all the same.
        let cut = |pkt: &mut Packet, next: u8| {
            pkt.key.proto = next;
            pkt.outcome = Counter::SkipTruncatedIpv6Ext;
            L4::Absent
        };
        let len = if next == IPPROTO_FRAGMENT {
            let Some(e) = Header::<8>::at(ctx, off) else {
                return Ok(cut(pkt, next));
            };
            next = e.get::<_, 0>();
            let frag = be16(e.get::<u16, 2>());
            if frag >> 3 != 0 {
                pkt.key.proto = next;
                pkt.outcome = Counter::FragmentV6;
                return Ok(L4::Absent);
            }
            // M with offset 0 (without M: an atomic fragment, a whole datagram).
            first_fragment = frag & 1 != 0;
            8
        } else {
            let Some(e) = Header::<2>::at(ctx, off) else {
                return Ok(cut(pkt, next));
            };
            let units = e.get::<u8, 1>() as usize;
            let len = if next == IPPROTO_AH {
                (units + 2) * 4
            } else {
                (units + 1) * 8
            };
            next = e.get::<_, 0>();
            len
        };
        off += len;
        if off > MAX_L4_OFFSET {
            // An extension header as the protocol, not `next` (TCP there would pass on
            // ports 0 and a name unread; see `verdict::judge`). Destination Options stands
            // for whichever header ran past: keeping its number across the walk cost the
            // verifier past its limit.
            pkt.key.proto = IPPROTO_DSTOPTS;
            pkt.outcome = Counter::SkipTruncatedIpv6Ext;
            return Ok(L4::Absent);
        }
        n += 1;
    }
    // A header longer than the payload holds (cut inside, its next header read from a
    // header that is not all there) ends the walk as one past its reach does; checked once
    // here, not per header (in the loop it cost the verifier past its limit). So does a
    // first fragment whose chain ends without its transport header's ports: RFC 8200 4.5
    // says to discard it, and Linux does, but a host that reassembles it all the same reads
    // them from the next fragment, which no port or domain rule can judge.
    if off > pkt.ip_end || (first_fragment && off + 4 > pkt.ip_end) {
        pkt.key.proto = IPPROTO_DSTOPTS;
        pkt.outcome = Counter::SkipTruncatedIpv6Ext;
        return Ok(L4::Absent);
    }
    pkt.key.proto = next;
    if first_fragment {
        return Ok(L4::FirstFragment(off));
    }
    Ok(L4::At(off))
}

/// Fills ports (or ICMP type/code) and TCP flags; other protocols keep ports 0.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, off: usize, pkt: &mut Packet) -> Result<(), Counter> {
    if off > MAX_L4_OFFSET {
        return Err(Counter::SkipTruncatedL4);
    }
    pkt.l4_off = off;
    match pkt.key.proto {
        proto::TCP => {
            // The ports first: a tiny first fragment (8 bytes of TCP) has them, and its
            // port rules must judge it (see `parse`).
            let ports = Header::<4>::at(ctx, off).ok_or(Counter::SkipTruncatedL4)?;
            pkt.key.port_a = ports.get::<_, 0>();
            pkt.key.port_b = ports.get::<_, 2>();
            // The whole fixed header must be there, though only ports and flags are read,
            // within the IP packet: Ethernet padding past it is no header.
            if off + 20 > pkt.ip_end {
                return Err(Counter::SkipTruncatedL4);
            }
            let t = Header::<20>::at(ctx, off).ok_or(Counter::SkipTruncatedL4)?;
            pkt.tcp_flags = t.get::<_, 13>();
            pkt.seq = t.get::<_, 4>();
            pkt.outcome = Counter::ParsedTcp;
            if pkt.key.port_b == DNS_PORT {
                // DNS over TCP: a two-byte length prefix, then the message.
                pkt.dns_off = off + (t.get::<u8, 12>() >> 4) as usize * 4 + 2;
            }
        }
        proto::UDP => {
            // The ports first, as TCP's: a header cut short after them is judged and
            // counted by them.
            let ports = Header::<4>::at(ctx, off).ok_or(Counter::SkipTruncatedL4)?;
            pkt.key.port_a = ports.get::<_, 0>();
            pkt.key.port_b = ports.get::<_, 2>();
            if off + 8 > pkt.ip_end || Header::<8>::at(ctx, off).is_none() {
                return Err(Counter::SkipTruncatedL4);
            }
            pkt.outcome = Counter::ParsedUdp;
            if pkt.key.port_b == DNS_PORT {
                pkt.dns_off = off + 8;
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            if off + 4 > pkt.ip_end {
                return Err(Counter::SkipTruncatedL4);
            }
            let c = Header::<4>::at(ctx, off).ok_or(Counter::SkipTruncatedL4)?;
            // Type and code stand in for ports (as NetFlow does), network-order like ports.
            pkt.key.port_a = u16::from_be(c.get::<u8, 0>() as u16);
            pkt.key.port_b = u16::from_be(c.get::<u8, 1>() as u16);
            pkt.outcome = if pkt.key.proto == proto::ICMP {
                Counter::ParsedIcmp
            } else {
                Counter::ParsedIcmpv6
            };
        }
        _ => pkt.outcome = Counter::ParsedOtherProto,
    }
    Ok(())
}
