//! Fast refusal: a blocked packet whose rule asks for it ([`rules::REFUSE`] in the list map's
//! value) is answered from XDP instead of dropped in silence, so the client fails at once
//! instead of waiting for a timeout: a DNS query over UDP gets NXDOMAIN, a TCP SYN gets
//! RST|ACK. The answer is the packet itself turned around in place and sent back out of the
//! interface it came in on (XDP_TX): MACs, IP addresses and ports swapped, VLAN tags left where
//! they are, everything after the answer trimmed, lengths and checksums written anew (the
//! IPv4 header's, the UDP one always, which IPv6 requires).
//!
//! NXDOMAIN rather than REFUSED: a stub resolver given REFUSED tries its next server (every
//! one of which the gateway refuses again) and applications report a server failure, where
//! NXDOMAIN ends the lookup at once with "no such name", as DNS filters (RPZ, Pi-hole) answer.
//! The answer carries no SOA, so caches do not keep it (RFC 2308, section 5).
//!
//! Only shapes answered exactly are refused: IPv4 without options, IPv6 without extension
//! headers, a standard query (opcode 0) with one question whose name was walked. Anything
//! else blocked is dropped as before.

use agent_common::{
    family, proto,
    rules::{self, RuleId},
    Counter,
};
use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_tail, bpf_xdp_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};

use crate::{
    dns,
    parse::{self, fold, Header, Packet},
    stats,
};

/// Hop limit of an answer.
const TTL: u8 = 64;
const TCP_RST_ACK: u8 = 0x14;
const DNS_HEADER: usize = 12;
const RCODE_NXDOMAIN: u8 = 3;
/// The longest answer message: header, a 255-byte name, type and class.
const MAX_MESSAGE: usize = DNS_HEADER + 255 + 4;
/// [`MAX_MESSAGE`] rounded up to whole words, with a byte of zero padding.
const SCRATCH_BYTES: usize = 288;

/// The answer message copied out of the packet for its checksum, per CPU.
#[map(name = "REFUSE_SCRATCH")]
static SCRATCH: PerCpuArray<[u8; SCRATCH_BYTES]> = PerCpuArray::with_max_entries(1, 0);

/// Whether a blocked first packet will be answered by [`syn`]: the checks `syn` makes before
/// it changes the frame, so the flow can be marked refused before its insert while the frame
/// is rewritten last (a rewrite earlier in `flow::create` made the verifier walk the rest of
/// it once per way the rewrite can end). A SYN to or from a group, in an IPv4 first
/// fragment or with a data offset under 5 passes here and is dropped unanswered by `syn`,
/// its flow marked refused: checked here too, those cost the main program's verifier walk
/// 37,000 instructions.
#[inline(always)]
pub fn syn_wanted(ctx: &XdpContext, p: &Packet, rule: RuleId) -> bool {
    rules::refuses(rule)
        && p.key.proto == proto::TCP
        && p.is_plain_syn()
        && p.l4_off <= parse::MAX_L4_OFFSET
        && ip_header(ctx, p).is_some()
}

/// Answers a blocked TCP SYN with RST|ACK (seq 0, ack = ISN + 1 + the bytes it carried, as
/// Linux answers a closed port) if `rule` asks for it.
/// Returns whether the frame is now that answer, to be sent with XDP_TX; otherwise the frame
/// is to be dropped (and may have been changed).
#[inline(always)]
pub fn syn(ctx: &XdpContext, p: &Packet, rule: RuleId) -> bool {
    if !rules::refuses(rule) || p.key.proto != proto::TCP || !p.is_plain_syn() {
        return false;
    }
    let Some(l3) = ip_header(ctx, p) else {
        return false;
    };
    if !one_host(ctx, p, l3) || fragment_v4(ctx, p, l3) {
        return false;
    }
    let l4 = p.l4_off;
    if l4 > parse::MAX_L4_OFFSET {
        return false;
    }
    // Data in the SYN (TCP Fast Open) is acknowledged too: read before the trim cuts it.
    let Some(t) = Header::<20>::at(ctx, l4) else {
        return false;
    };
    let header = (t.get::<u8, 12>() >> 4) as usize * 4;
    if header < 20 {
        return false; // a data offset no host takes: nothing to acknowledge rightly
    }
    let data = p.ip_end.saturating_sub(l4 + header);
    if !trim(ctx, l4 + 20) {
        return false;
    }
    let Some(pseudo) = turn_around(ctx, p, l3, 20) else {
        return false;
    };
    let Some(t) = Header::<20>::at(ctx, l4) else {
        return false;
    };
    let ack = u32::from_be(p.seq)
        .wrapping_add(1)
        .wrapping_add(data as u32)
        .to_be();
    t.set::<u32, 4>(0);
    t.set::<u32, 8>(ack);
    t.set::<u8, 12>(5 << 4); // 20 bytes: the SYN's options are not answered
    t.set::<u8, 13>(TCP_RST_ACK);
    t.set::<u32, 14>(0); // window, checksum
    t.set::<u16, 18>(0);
    let sum = pseudo + words(t.get::<u32, 0>()) + words(ack) + (5 << 12 | TCP_RST_ACK as u64);
    t.set::<u16, 16>(fold(sum).to_be());
    stats::bump(Counter::RefusedTcp);
    true
}

/// Answers a DNS query over UDP that [`dns::blocked_query`] just blocked with NXDOMAIN, if
/// `rule` asks for it: the question is kept, everything after it (an EDNS OPT record) cut.
/// Returns whether the frame is now that answer (XDP_TX).
#[inline(always)]
pub fn dns(ctx: &XdpContext, p: &Packet, rule: RuleId) -> bool {
    if !rules::refuses(rule) || p.key.proto != proto::UDP {
        return false;
    }
    let Some(name) = dns::walked_name_len() else {
        return false;
    };
    let Some(l3) = ip_header(ctx, p) else {
        return false;
    };
    if !one_host(ctx, p, l3) {
        return false;
    }
    let (l4, at) = (p.l4_off, p.dns_off);
    if l4 > parse::MAX_L4_OFFSET || at != l4 + 8 {
        return false;
    }
    let msg = DNS_HEADER + name + 4;
    if at + msg > p.ip_end {
        return false; // the question is cut short
    }
    let Some(h) = Header::<DNS_HEADER>::at(ctx, at) else {
        return false;
    };
    if h.get::<u8, 2>() & 0x78 != 0 || u16::from_be(h.get::<u16, 4>()) != 1 {
        return false; // not a standard query with one question
    }
    if !trim(ctx, at + msg) {
        return false;
    }
    let Some(h) = Header::<DNS_HEADER>::at(ctx, at) else {
        return false;
    };
    // QR; opcode 0; AA and TC clear; RD and CD echoed; RA; AD clear.
    h.set::<u8, 2>(0x80 | (h.get::<u8, 2>() & 0x01));
    h.set::<u8, 3>(0x80 | (h.get::<u8, 3>() & 0x10) | RCODE_NXDOMAIN);
    h.set::<u16, 6>(0); // ANCOUNT
    h.set::<u32, 8>(0); // NSCOUNT, ARCOUNT: the query's OPT record is gone
    let Some(body) = message_sum(ctx, at, msg) else {
        return false;
    };
    let Some(pseudo) = turn_around(ctx, p, l3, 8 + msg) else {
        return false;
    };
    let Some(u) = Header::<8>::at(ctx, l4) else {
        return false;
    };
    let len = (8 + msg) as u64;
    u.set::<u16, 4>((len as u16).to_be());
    let sum = pseudo + words(u.get::<u32, 0>()) + len + body;
    let c = fold(sum);
    // 0 means "no checksum" in UDP: a computed 0 is sent as its other form.
    u.set::<u16, 6>(if c == 0 { 0xffff } else { c }.to_be());
    stats::bump(Counter::RefusedDns);
    true
}

/// The offset of the IP header (past the Ethernet header and up to two VLAN tags, which the
/// answer keeps), if the answer can reuse the header's shape: IPv4 without options, IPv6
/// with the transport header right after it (so not a fragment).
#[inline(always)]
fn ip_header(ctx: &XdpContext, p: &Packet) -> Option<usize> {
    let eth = Header::<{ parse::ETH_HLEN }>::at(ctx, 0)?;
    let mut off = parse::ETH_HLEN;
    if parse::is_vlan(u16::from_be(eth.get::<u16, 12>())) {
        let tag = Header::<4>::at(ctx, off)?;
        off += 4;
        if parse::is_vlan(u16::from_be(tag.get::<u16, 2>())) {
            off += 4;
        }
    }
    let fixed = if p.key.family == family::V4 { 20 } else { 40 };
    (off + fixed == p.l4_off).then_some(off)
}

/// Whether the packet is an IPv4 fragment: a first fragment's SYN is dropped unanswered, as
/// an answer would acknowledge that fragment's part of the data only.
#[inline(always)]
fn fragment_v4(ctx: &XdpContext, p: &Packet, l3: usize) -> bool {
    p.key.family == family::V4
        && Header::<20>::at(ctx, l3).is_none_or(|ip| u16::from_be(ip.get::<u16, 6>()) & 0x3fff != 0)
}

/// Whether both ends are one host's: a packet to or from a group (a MAC with its group bit,
/// IPv4 0/8 or 224/3, IPv6 ff00::/8) is dropped unanswered, as a host never answers one,
/// and a forged group source would have the answer sent to every host of the segment.
#[inline(always)]
fn one_host(ctx: &XdpContext, p: &Packet, l3: usize) -> bool {
    let Some(eth) = Header::<{ parse::ETH_HLEN }>::at(ctx, 0) else {
        return false;
    };
    if (eth.get::<u8, 0>() | eth.get::<u8, 6>()) & 1 != 0 {
        return false;
    }
    if p.key.family == family::V4 {
        let Some(ip) = Header::<20>::at(ctx, l3) else {
            return false;
        };
        let unicast = |first: u8| first != 0 && first < 224;
        unicast(ip.get::<u8, 12>()) && unicast(ip.get::<u8, 16>())
    } else {
        let Some(ip) = Header::<40>::at(ctx, l3) else {
            return false;
        };
        ip.get::<u8, 8>() != 0xff && ip.get::<u8, 24>() != 0xff
    }
}

/// Cuts the frame to `len` bytes; false if it is shorter or the kernel refused.
#[inline(always)]
fn trim(ctx: &XdpContext, len: usize) -> bool {
    let have = ctx.data_end() - ctx.data();
    if len > have {
        return false;
    }
    // SAFETY: `ctx` is this program's context; the helper checks the new length itself.
    len == have || unsafe { bpf_xdp_adjust_tail(ctx.ctx, len as i32 - have as i32) } == 0
}

/// Turns the frame around: MACs, IP addresses and ports swapped, the IP header made that of
/// an answer carrying `l4_len` transport bytes. Returns the transport checksum's
/// pseudo-header sum (unfolded).
#[inline(always)]
fn turn_around(ctx: &XdpContext, p: &Packet, l3: usize, l4_len: usize) -> Option<u64> {
    let eth = Header::<12>::at(ctx, 0)?;
    let (dst, src) = (eth.get::<[u8; 6], 0>(), eth.get::<[u8; 6], 6>());
    eth.set::<_, 0>(src);
    eth.set::<_, 6>(dst);
    let ports = Header::<4>::at(ctx, p.l4_off)?;
    let (sport, dport) = (ports.get::<u16, 0>(), ports.get::<u16, 2>());
    ports.set::<_, 0>(dport);
    ports.set::<_, 2>(sport);
    let mut pseudo = u64::from(p.key.proto) + l4_len as u64;
    if p.key.family == family::V4 {
        let ip = Header::<20>::at(ctx, l3)?;
        let (a, b) = (ip.get::<u32, 12>(), ip.get::<u32, 16>());
        ip.set::<_, 12>(b);
        ip.set::<_, 16>(a);
        ip.set::<u16, 2>(((20 + l4_len) as u16).to_be());
        ip.set::<u16, 6>(0x4000u16.to_be()); // DF, not a fragment
        ip.set::<u8, 8>(TTL);
        ip.set::<u16, 10>(0);
        let sum = words(ip.get::<u32, 0>())
            + words(ip.get::<u32, 4>())
            + words(ip.get::<u32, 8>())
            + words(a)
            + words(b);
        ip.set::<u16, 10>(fold(sum).to_be());
        pseudo += words(a) + words(b);
    } else {
        let ip = Header::<40>::at(ctx, l3)?;
        let (a, b) = (ip.get::<[u32; 4], 8>(), ip.get::<[u32; 4], 24>());
        ip.set::<_, 8>(b);
        ip.set::<_, 24>(a);
        ip.set::<u16, 4>((l4_len as u16).to_be());
        ip.set::<u8, 7>(TTL);
        let mut i = 0;
        while i < 4 {
            pseudo += words(a[i]) + words(b[i]);
            i += 1;
        }
    }
    Some(pseudo)
}

/// The sum of the `len` bytes at `at` as big-endian 16-bit words (an odd last byte padded
/// with zero), copied out first so the loop reads a map value, not the packet.
#[inline(always)]
fn message_sum(ctx: &XdpContext, at: usize, len: usize) -> Option<u64> {
    let buf = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot, valid for this run.
    let buf = unsafe { &mut *buf };
    // Through black_box so the bound below stays next to the helper call (as in `dns`).
    let len = core::hint::black_box(len);
    if len == 0 || len > MAX_MESSAGE {
        return None;
    }
    // SAFETY: copies `len` (1..=271) bytes the packet has into the 288-byte buffer.
    let copied =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, at as u32, buf.as_mut_ptr().cast(), len as u32) };
    if copied != 0 {
        return None;
    }
    if let Some(b) = buf.get_mut(len) {
        *b = 0;
    }
    let mut sum = 0u64;
    let mut i = 0;
    while i < SCRATCH_BYTES / 2 {
        if 2 * i >= len {
            break;
        }
        sum += u64::from(buf[2 * i]) << 8 | u64::from(buf[2 * i + 1]);
        i += 1;
    }
    Some(sum)
}

/// The two big-endian 16-bit words of four bytes as read from the packet.
#[inline(always)]
fn words(w: u32) -> u64 {
    let b = w.to_ne_bytes();
    (u64::from(b[0]) << 8 | u64::from(b[1])) + (u64::from(b[2]) << 8 | u64::from(b[3]))
}
