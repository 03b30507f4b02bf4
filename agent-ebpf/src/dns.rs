//! DNS query names: the QNAME of a query to port 53 is walked label by label, each label
//! hashed as [`agent_common::domain`] defines (keyed with the secret in `DOMAIN_KEY`), and
//! every suffix of the name (`com`, `example.com`, `www.example.com`) looked up in the allow
//! and block domain tables. An allowed suffix wins over a blocked one. A name that cannot be
//! walked (compressed, malformed, cut short) is counted, never guessed at, and dropped while
//! a domain is blocked.

use agent_common::{
    domain::{
        low_bytes, DomainKey, LabelHasher, LabelRing, SuffixHasher, MAX_DOMAIN_LABELS,
        MAX_LABEL_LEN,
    },
    family, proto,
    rules::RuleId,
    Counter,
};
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    cty::c_void,
    helpers::generated::{bpf_loop, bpf_xdp_load_bytes},
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};

use crate::{
    parse::{self, be16, Header, Packet},
    stats,
};

/// Wire-format names are at most 255 bytes, terminator included.
const MAX_NAME_WIRE: usize = 255;
/// A 255-byte name has at most 127 labels and its terminator: one walk step each.
const MAX_WALK_STEPS: u32 = 128;
const DNS_HEADER: usize = 12;

const WALKING: u32 = 0;
const DONE: u32 = 1;
const BAD: u32 = 2;

/// The name walk's state, per CPU: the name's bytes copied out of the packet (8 bytes of
/// slack, so a word read starting at any byte stays inside), the key, the label hashes so
/// far, and where the walk stands.
#[repr(C)]
pub struct Scratch {
    name: [u8; 256 + 8],
    key: DomainKey,
    ring: LabelRing,
    /// Offset of the next length byte in `name`.
    pos: u32,
    /// Bytes of the name copied into `name`.
    len: u32,
    status: u32,
    _pad: u32,
}

#[map(name = "ALLOW_DOMAINS")]
static ALLOW_DOMAINS: HashMap<u64, RuleId> = HashMap::with_max_entries(1 << 16, BPF_F_NO_PREALLOC);
#[map(name = "BLOCK_DOMAINS")]
static BLOCK_DOMAINS: HashMap<u64, RuleId> = HashMap::with_max_entries(1 << 16, BPF_F_NO_PREALLOC);
#[map(name = "DNS_SCRATCH")]
static DNS_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);
/// Written by the loader before the program is attached; never by the program.
#[map(name = "DOMAIN_KEY")]
static DOMAIN_KEY: Array<DomainKey> = Array::with_max_entries(1, 0);

/// What the name check of a query to port 53 found.
pub enum Query {
    /// Nothing to judge (a response, no question, a segment without data) or a name no
    /// rule blocks.
    Pass,
    /// A name the rule blocks.
    Blocked(RuleId),
    /// A query whose name cannot be read here: cut short (a UDP datagram longer than its
    /// packet, a first fragment), compressed or malformed (a TCP segment's only when it
    /// holds the whole message).
    /// Counted in [`Counter::DnsNameUnparsed`]; the caller drops it while a domain is
    /// blocked, since its server would read the name no rule judged.
    Unwalked,
}

/// The name check of the query at `p.dns_off` (the DNS header).
#[inline(always)]
pub fn blocked_query(ctx: &XdpContext, p: &Packet) -> Query {
    let off = p.dns_off;
    // What the IP packet holds: Ethernet padding past it is no part of the query.
    let frame = ctx.data_end() - ctx.data();
    let end = if p.ip_end < frame { p.ip_end } else { frame };
    if p.key.proto == proto::UDP {
        let udp = match Header::<8>::at(ctx, p.l4_off) {
            Some(udp) if p.l4_off + 8 <= end => udp,
            _ => return unwalked(), // a tiny first fragment
        };
        if p.l4_off + be16(udp.get::<u16, 4>()) as usize > end {
            return unwalked(); // the rest of the datagram is in later fragments
        }
        if off >= end {
            return Query::Pass; // an empty datagram
        }
    } else {
        // The segment's data: the length prefix, then the message at `off`.
        let data = match off.checked_sub(2) {
            Some(data) if data < end => data,
            _ => return Query::Pass, // a segment without data: the handshake, an ACK
        };
        if first_fragment(ctx, p) {
            return unwalked(); // the rest of the segment is in later fragments
        }
        // Judged where the segment holds a whole message from its start (as clients send
        // a query); anything else passes as before: a length prefix sent alone, a message
        // split across segments, a probe's byte.
        // Through black_box: folded into `off`, the bound check and the read would be on
        // two pointers the verifier cannot tie together.
        let whole = match Header::<2>::at(ctx, core::hint::black_box(data)) {
            Some(prefix) => {
                let len = be16(prefix.get::<u16, 0>()) as usize;
                len >= DNS_HEADER && off + len <= end
            }
            None => false,
        };
        if !whole {
            return Query::Pass;
        }
    }
    if off + DNS_HEADER > end {
        return unwalked();
    }
    let Some(hdr) = Header::<DNS_HEADER>::at(ctx, off) else {
        return unwalked();
    };
    let flags: u8 = hdr.get::<_, 2>();
    let qdcount = u16::from_be(hdr.get::<u16, 4>());
    if flags & 0x80 != 0 || qdcount == 0 {
        return Query::Pass; // a response, or no question
    }
    match walk(ctx, off, end) {
        Some(rule) => rule,
        None => unwalked(),
    }
}

/// Whether the packet may be the first fragment of a datagram: IPv4 with MF; IPv6 with a
/// Fragment header right after the fixed one and M set, or, conservatively, any other
/// extension header before the transport header (the walk that would tell is not repeated
/// here). A later fragment has no transport header and never reaches the name check.
#[inline(always)]
fn first_fragment(ctx: &XdpContext, p: &Packet) -> bool {
    // Past the Ethernet header and up to two VLAN tags, as `refuse` finds the IP header: a
    // helper shared with it changed the main program's code enough to cost its verifier
    // walk 17,000 instructions; a flag in `Packet` set by `parse` pushed it past the limit.
    let Some(eth) = Header::<{ parse::ETH_HLEN }>::at(ctx, 0) else {
        return false;
    };
    let mut l3 = parse::ETH_HLEN;
    if parse::is_vlan(be16(eth.get::<u16, 12>())) {
        let Some(tag) = Header::<4>::at(ctx, l3) else {
            return false;
        };
        l3 += 4;
        if parse::is_vlan(be16(tag.get::<u16, 2>())) {
            l3 += 4;
        }
    }
    if p.key.family != family::V6 {
        return match Header::<8>::at(ctx, l3) {
            Some(h) => be16(h.get::<u16, 6>()) & 0x2000 != 0,
            None => false,
        };
    }
    if p.l4_off == l3 + 40 {
        return false; // no extension header
    }
    match Header::<44>::at(ctx, l3) {
        Some(h) if h.get::<u8, 6>() == parse::IPPROTO_FRAGMENT => be16(h.get::<u16, 42>()) & 1 != 0,
        _ => true,
    }
}

/// [`Query::Unwalked`], counted.
#[inline(always)]
fn unwalked() -> Query {
    stats::bump(Counter::DnsNameUnparsed);
    Query::Unwalked
}

/// Walks the name after the header at `off`, within `end`: `None` if it cannot be walked.
#[inline(always)]
fn walk(ctx: &XdpContext, off: usize, end: usize) -> Option<Query> {
    let s = DNS_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot, valid for this run.
    let s = unsafe { &mut *s };
    s.key = *DOMAIN_KEY.get(0)?;
    let name_off = off + DNS_HEADER;
    let avail = end.saturating_sub(name_off);
    // Through black_box so the bounds check below stays next to the helper call, where the
    // verifier needs to see `len` in 1..=255.
    let len = core::hint::black_box(if avail < MAX_NAME_WIRE {
        avail
    } else {
        MAX_NAME_WIRE
    });
    if len == 0 || len > MAX_NAME_WIRE {
        return None;
    }
    s.ring.count = 0;
    s.pos = 0;
    s.len = len as u32;
    s.status = WALKING;
    // SAFETY: copies `len` (1..=255) bytes the packet has into the 264-byte scratch buffer.
    let copied = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            name_off as u32,
            s.name.as_mut_ptr().cast(),
            len as u32,
        )
    };
    if copied != 0 {
        return None;
    }
    // bpf_loop: the verifier checks `walk_label` once, not once per label and caller state.
    // SAFETY: a valid callback and no context.
    unsafe {
        bpf_loop(
            MAX_WALK_STEPS,
            walk_label as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    if s.status != DONE {
        return None;
    }
    Some(match match_suffixes(&s.key, &s.ring) {
        Some(rule) => Query::Blocked(rule),
        None => Query::Pass,
    })
}

/// The length of the QNAME [`blocked_query`] walked last on this CPU (its terminating zero
/// included), for a refusal that answers the query it just blocked.
#[inline(always)]
pub fn walked_name_len() -> Option<usize> {
    let s = DNS_SCRATCH.get_ptr(0)?;
    // SAFETY: this CPU's scratch slot, written by the walk earlier in this run.
    let (status, pos) = unsafe { ((*s).status, (*s).pos) };
    (status == DONE).then_some((pos & 0xff) as usize + 1)
}

/// Eight bytes of the copied name from `at` (masked into the buffer), little-endian.
#[inline(always)]
fn word(name: &[u8; 256 + 8], at: usize) -> u64 {
    // SAFETY: `at & 0xff` plus 8 bytes stays inside the 264-byte buffer; the read is
    // unaligned on purpose.
    unsafe { core::ptr::read_unaligned(name.as_ptr().add(at & 0xff).cast::<u64>()) }
}

/// One label of the QNAME walk: its length byte (0 ends the name; anything over 63 is a
/// compression pointer or a reserved type: not walked), then its bytes, hashed 8 at a time.
/// A label that runs past the bytes copied leaves the walk unfinished. Returns 1 to stop.
extern "C" fn walk_label(_i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = DNS_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch slot.
    let s = unsafe { &mut *s };
    let at = (s.pos & 0xff) as usize;
    let len = s.name[at] as usize;
    if len == 0 {
        s.status = DONE; // the root name (`.`) has no labels and matches nothing
        return 1;
    }
    if len > MAX_LABEL_LEN {
        s.status = BAD;
        return 1;
    }
    let next = at + 1 + len;
    if next >= s.len as usize {
        return 1; // cut short: the label or the byte after it is not in the packet
    }
    let mut h = LabelHasher::new(&s.key);
    let full = len / 8;
    let mut k = 0;
    while k < MAX_LABEL_LEN / 8 {
        if k >= full {
            break;
        }
        h.word(word(&s.name, at + 1 + 8 * k));
        k += 1;
    }
    let rest = len % 8;
    let tail = word(&s.name, at + 1 + 8 * full) & low_bytes(rest);
    s.ring.push(h.finish(len, tail));
    s.pos = next as u32;
    0
}

/// Walks the suffixes from the root; an allowed suffix wins over any blocked one.
#[inline(always)]
fn match_suffixes(key: &DomainKey, ring: &LabelRing) -> Option<RuleId> {
    let n = ring.len();
    let mut suffix = SuffixHasher::new(key);
    let mut blocked = None;
    let mut i = 0;
    while i < MAX_DOMAIN_LABELS {
        if i >= n {
            break;
        }
        let h = suffix.push(ring.from_root(i));
        // SAFETY: map values are read for this run only.
        if unsafe { ALLOW_DOMAINS.get(&h) }.is_some() {
            return None;
        }
        if blocked.is_none() {
            // SAFETY: as above.
            blocked = unsafe { BLOCK_DOMAINS.get(&h) }.copied();
        }
        i += 1;
    }
    blocked
}
