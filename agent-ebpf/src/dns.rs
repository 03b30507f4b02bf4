//! DNS query names: the QNAME of each question of a query to port 53 is walked label by
//! label, each label hashed as [`agent_common::domain`] defines (keyed with the secret in
//! `DOMAIN_KEY`), and every suffix of the name (`com`, `example.com`, `www.example.com`)
//! looked up in the allow and block domain tables. An allowed suffix wins over a blocked one.
//! A name that cannot be walked (compressed, malformed, cut short) is counted, never guessed
//! at, and dropped while a domain is blocked.
//!
//! Over TCP, messages are read as the server reads them: each after its two-byte length,
//! from the stream position the last segment left (`DNS_TCP_POS`, set again by every SYN),
//! so a length sent alone, several messages in one segment and a message's rest in later
//! segments are each judged where they are; a segment starting where the last walk began is
//! walked again. A segment ending inside a length, a header or a name passes, its message's
//! bytes so far held (`DNS_TCP_HELD`) to be walked with the next segment, which the server
//! needs as much to read the name. A segment past a gap in the stream, one of a stream whose
//! start is not known (no SYN seen, no position kept) and one with urgent data cannot be
//! judged: as any name that cannot be walked.

use agent_common::{
    domain::{DomainKey, LabelRing},
    family, proto,
    rules::RuleId,
    Counter, FlowKey,
};
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    cty::c_void,
    helpers::generated::{bpf_loop, bpf_xdp_load_bytes},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};

use crate::{
    flow,
    parse::{self, be16, Header, Packet},
    stats,
};

// By path: the bins include this file by path too (`src/bin/*.rs`).
#[path = "dns/step.rs"]
mod step;
use step::{cut_short, step};

/// Bytes of a query judged at most: a UDP query's header and name, or a TCP segment's data
/// from where its next message is due (their headers and names, walked in turn; a name past
/// them cannot be). A full-sized segment's: a power of two, for the masks.
const SPAN: usize = 2048;
/// Walk steps: each takes a length prefix (2 bytes), a header, or a label (2 bytes at least),
/// or passes over a message that asks nothing, in the bytes held and read; a query needing
/// more is not walked.
const MAX_STEPS: u32 = (SPAN + HOLD) as u32 + 16;
const DNS_HEADER: usize = 12;
/// Bytes of a TCP message held at most (less one) when a segment ends inside it: a length,
/// a header and the longest name (269), with room for a second question. A power of two,
/// for the masks.
const HOLD: usize = 512;
/// The walk's positions are below `HOLD + SPAN`, masked into a buffer this long (a power
/// of two), which has `HOLD` bytes of slack past it for a hold's copy and a word's read.
const BUF: usize = 4096;

// Walk phases (`Scratch::phase`).
/// A TCP message's two-byte length is next.
const PREFIX: u32 = 0;
/// A message's header is next; its length in [`Scratch::body`].
const HEADER: u32 = 1;
/// A label of the question's name is next.
const NAME: u32 = 2;
/// Walked to the end of what the packet holds: no name blocked.
const END: u32 = 3;
/// A name a rule blocks: [`Scratch::rule`].
const BLOCKED: u32 = 4;
/// Cannot be walked: cut short, compressed, malformed, or past [`SPAN`].
const BAD: u32 = 5;

/// The walk's state, per CPU: the bytes copied out of the packet (with slack, so a word
/// read starting at any masked position stays inside), the key, the label hashes of the name so
/// far, and where the walk stands. A TCP walk's bytes start with those held of a message cut
/// by the last segment, if it continues one.
#[repr(C)]
pub struct Scratch {
    buf: [u8; BUF + HOLD],
    key: DomainKey,
    ring: LabelRing,
    /// Offset in `buf` of the next byte to read.
    pos: u32,
    /// Bytes copied into `buf`, the held ones included.
    len: u32,
    /// Bytes the segment (or datagram) holds from `buf`'s start, the held ones included: at
    /// least `len`.
    seg: u32,
    /// TCP: bytes at `buf`'s start held from earlier segments, the packet's after them.
    held: u32,
    /// TCP: where the message being walked starts in `buf` (its length, or 0 when the walk
    /// began at its header).
    msg_at: u32,
    /// Offset in the packet of `buf`'s start.
    off: u32,
    /// TCP: the sequence number of `buf`'s start, and the `body` the walk began with.
    next: u32,
    from_body: u32,
    phase: u32,
    /// Length of the message whose header is next (or at `pos` in `NAME`).
    body: u32,
    /// Where the message being walked ends (past `seg` if later segments hold its rest).
    msg_end: u32,
    /// TCP: messages follow each other, each after its length.
    tcp: u32,
    /// Where the message a `BAD` walk ran out of bytes in ends.
    wanted: u32,
    /// TCP: the segment ends within bytes already judged (a retransmission's tail, a
    /// keepalive's byte): cut short there, it passes as they did.
    judged: u32,
    /// Questions of the message left to walk, the one at `pos` included.
    questions: u32,
    /// The rule of a `BLOCKED` name.
    rule: u32,
    /// TCP: the length prefix read at `buf`'s start ([`NO_LEN`]: none yet).
    first_len: u32,
    /// TCP, walking again from where the last walk began: the prefix that walk read there
    /// ([`NO_LEN`]: any), and where in `buf` its last message began after it (0: nowhere in
    /// particular) with the prefix read there (`boundary_len`, [`NO_LEN`]: any). A walk
    /// reading another length at either place, or a message across the second, reads other
    /// bytes than the server may have kept: it cannot be judged.
    expect_len: u32,
    boundary: u32,
    boundary_len: u32,
    /// TCP: the stream's start and the replaced stream's frontier ([`TcpPos::start`],
    /// [`TcpPos::frontier`]), handed on to the next position; and where in `buf` that
    /// frontier lies (0: not ahead of the walk's start, or none).
    start: u32,
    frontier: u32,
    frontier_set: u32,
    frontier_off: u32,
    /// Where the name being walked starts, and the length of the last one walked (its
    /// terminating zero included).
    name_at: u32,
    name_len: u32,
}

/// Where a DNS-over-TCP client's next message is due in its stream: the judge reads each
/// segment from there, so a length sent in a segment of its own, a message split across
/// segments, and several messages in one segment are judged as the server reads them.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpPos {
    /// Sequence number of the next message's length prefix, or, when `body` is not 0, of
    /// its header, the length already read.
    next: u32,
    /// See `next`.
    body: u32,
    /// Where the last walk began, with its `body`: a segment that starts there again (a
    /// retransmission, or other bytes at the same place) is walked again, not taken for
    /// bytes already judged.
    from: u32,
    from_body: u32,
    /// Bytes of the stream from `next` held in `DNS_TCP_HELD` (a message the last segment
    /// cut), 0 for none.
    held: u32,
    /// The length prefix the last walk read at `from` ([`NO_LEN`]: none there, `from_body`
    /// not 0). A segment there again with another (bytes other than those judged, which
    /// its server may have thrown away or kept) cannot be judged.
    from_len: u32,
    /// Where the stream starts (after its SYN): bytes before it were never judged, so a
    /// segment there cannot be (a forged SYN that set the stream ahead of the real one must
    /// not leave the real one's queries to pass as bytes already judged).
    start: u32,
    /// Where the stream this one's SYN replaced had got to (`frontier_set` 1), or, if that
    /// stream was not read on past its own frontier, that one: if the SYN was forged (the
    /// server kept the connection), the server reads on from there and threw away what came
    /// before. A message across it is read
    /// otherwise by the server, so it cannot be judged (a forged SYN just behind the real
    /// stream, then a query whose length took the real one in, passed it unread).
    frontier: u32,
    frontier_set: u32,
}

/// No length prefix read (see [`TcpPos::from_len`]).
const NO_LEN: u32 = u32::MAX;

/// The bytes of a message cut by a segment's end, from its start (see [`TcpPos::held`]).
#[repr(C)]
pub struct Held([u8; HOLD]);

#[map(name = "ALLOW_DOMAINS")]
static ALLOW_DOMAINS: HashMap<u64, RuleId> = HashMap::with_max_entries(1 << 16, BPF_F_NO_PREALLOC);
#[map(name = "BLOCK_DOMAINS")]
static BLOCK_DOMAINS: HashMap<u64, RuleId> = HashMap::with_max_entries(1 << 16, BPF_F_NO_PREALLOC);
#[map(name = "DNS_SCRATCH")]
static DNS_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);
/// Written by the loader before the program is attached; never by the program.
#[map(name = "DOMAIN_KEY")]
static DOMAIN_KEY: Array<DomainKey> = Array::with_max_entries(1, 0);
/// Per DNS-over-TCP flow (its key as oriented in the flow table), where the client's next
/// message is due. An entry gone (evicted, or a flow older than this program) leaves a flow
/// whose stream start is known (its SYN seen) with its next segment unreadable.
#[map(name = "DNS_TCP_POS")]
static DNS_TCP_POS: LruHashMap<FlowKey, TcpPos> = LruHashMap::with_max_entries(16384, 0);
/// Per DNS-over-TCP flow whose last segment ended inside a message, that message's bytes so
/// far; removed once it is walked whole (a connection that ends with a message cut leaves
/// its entry to eviction). An entry gone leaves the next segment unreadable.
#[map(name = "DNS_TCP_HELD")]
static DNS_TCP_HELD: LruHashMap<FlowKey, Held> = LruHashMap::with_max_entries(4096, 0);

/// What the name check of a query to port 53 found.
pub enum Query {
    /// Nothing to judge (a response, no question, a segment without data or holding only the
    /// rest of a message already judged) or no name any rule blocks.
    Pass,
    /// A name the rule blocks (the first, where a segment holds several messages).
    Blocked(RuleId),
    /// A query whose name cannot be read here: cut short (a UDP datagram longer than its
    /// packet, a first fragment, a TCP message cut with more than [`HOLD`] bytes before the
    /// cut, or whose held bytes were lost), compressed or malformed, past the bytes a segment
    /// is read for, or a TCP segment whose bytes before it were not seen (a gap, a stream
    /// whose position was lost, or whose SYN was never seen), or with urgent data.
    /// Counted in [`Counter::DnsNameUnparsed`]; the caller drops it while a domain is
    /// blocked, since its server would read the name no rule judged.
    Unwalked,
}

/// The name check of the query at `p.dns_off` (the DNS header), a packet of direction `dir`
/// of its flow.
#[inline(always)]
pub fn blocked_query(ctx: &XdpContext, p: &Packet, dir: usize) -> Query {
    let Some(s) = DNS_SCRATCH.get_ptr_mut(0) else {
        return unwalked();
    };
    // SAFETY: this CPU's scratch slot, valid for this run.
    let s = unsafe { &mut *s };
    // Not the last run's outcome: a query `due` turns away unwalked is no name blocked
    // ([`blocked_name_at`]).
    s.phase = BAD;
    if let Err(query) = due(ctx, p, dir, s) {
        return query;
    }
    if let Some(rule) = walk(ctx, s) {
        return Query::Blocked(rule);
    }
    // Bytes judged already, walked again to the end or cut short where they end: passed as
    // they were, and the position stays (written again, it could go back).
    if s.judged != 0 && (s.phase == END || cut_short(s)) {
        return Query::Pass;
    }
    if s.tcp != 0 && cut_short(s) && hold(&p.key, s) {
        return Query::Pass; // its server cannot read the name without the next segment
    }
    if s.phase != END {
        return unwalked();
    }
    if s.tcp != 0 {
        // Ended between messages (`body` 0), or right after a length, its message next.
        let next = TcpPos {
            next: s.next.wrapping_add(s.pos),
            body: s.body,
            from: s.next,
            from_body: s.from_body,
            held: 0,
            from_len: s.first_len,
            start: s.start,
            frontier: s.frontier,
            frontier_set: s.frontier_set,
        };
        let _ = DNS_TCP_POS.insert(&p.key, &next, 0);
        if s.held != 0 {
            let _ = DNS_TCP_HELD.remove(&p.key); // walked whole
        }
    }
    Query::Pass
}

/// Keeps the bytes of the message a TCP walk was cut short in, from its start, for the next
/// segment's walk; whether they are kept.
#[inline(always)]
fn hold(key: &FlowKey, s: &Scratch) -> bool {
    let (at, len) = (s.msg_at as usize, s.len as usize);
    let held = len.wrapping_sub(at);
    if at >= BUF || held == 0 || held >= HOLD {
        return false;
    }
    // SAFETY: `at < BUF`, and `buf` has `HOLD` bytes past `BUF`; `Held` is plain bytes.
    let bytes = unsafe { &*s.buf.as_ptr().add(at & (BUF - 1)).cast::<Held>() };
    if DNS_TCP_HELD.insert(key, bytes, 0).is_err() {
        return false;
    }
    let pos = TcpPos {
        next: s.next.wrapping_add(at as u32),
        // A message the walk began at its header (its length read before) keeps it.
        body: if at == 0 { s.from_body } else { 0 },
        from: s.next,
        from_body: s.from_body,
        held: held as u32,
        from_len: s.first_len,
        start: s.start,
        frontier: s.frontier,
        frontier_set: s.frontier_set,
    };
    if DNS_TCP_POS.insert(key, &pos, 0).is_err() {
        // Held bytes no position names: gone, so no later segment reads them.
        let _ = DNS_TCP_HELD.remove(key);
        return false;
    }
    true
}

/// Copies the bytes held for `key`'s stream to the start of `s.buf`; whether they were
/// there.
#[inline(always)]
fn copy_held(key: &FlowKey, s: &mut Scratch) -> bool {
    let Some(held) = DNS_TCP_HELD.get_ptr(key) else {
        return false;
    };
    let (from, to) = (held.cast::<u64>(), s.buf.as_mut_ptr().cast::<u64>());
    let mut i = 0;
    while i < HOLD / 8 {
        // SAFETY: word `i` of the map value and of the buffer's start, both 8-byte aligned;
        // volatile so the loop stays one (a memcpy call does not link here).
        unsafe { to.add(i).write_volatile(from.add(i).read_volatile()) };
        i += 1;
    }
    true
}

/// Sets the walk up in `s`: the offset and length of a UDP query, or of a TCP segment's data
/// from where its next message is due, with that position (the sequence number at the
/// offset); or the verdict when there is nothing to walk. Through memory, so both protocols
/// reach the walk in one state of the verifier's (a walk for each cost 140,000 instructions).
#[inline(always)]
fn due(ctx: &XdpContext, p: &Packet, dir: usize, s: &mut Scratch) -> Result<(), Query> {
    let off = p.dns_off;
    // What the IP packet holds: Ethernet padding past it is no part of the query.
    let frame = ctx.data_end() - ctx.data();
    let end = if p.ip_end < frame { p.ip_end } else { frame };
    if p.key.proto == proto::UDP {
        let udp = match Header::<8>::at(ctx, p.l4_off) {
            Some(udp) if p.l4_off + 8 <= end => udp,
            _ => return Err(unwalked()), // a tiny first fragment
        };
        if p.l4_off + be16(udp.get::<u16, 4>()) as usize > end {
            return Err(unwalked()); // the rest of the datagram is in later fragments
        }
        if off >= end {
            return Err(Query::Pass); // an empty datagram
        }
        set_up(s, off, end - off, 0, 0, None, false);
        return Ok(());
    }
    // The sequence number of the data's first byte (a SYN's own comes before it).
    let seq = u32::from_be(p.seq).wrapping_add(p.has_syn() as u32);
    // A connection (re)opened: its stream starts after the SYN, whatever an earlier
    // connection between the same ports left. But not a SYN sent again (its first was lost,
    // or its answer): a position whose walks began there stays, since a Fast Open SYN's
    // data the server took is not in the SYN sent again. Nor a SYN in a connection its
    // client has acknowledged: its server discards it (RFC 5961), and a position moved by
    // it passed the stream's next messages unread (one forged SYN let a blocked name by).
    // SAFETY: a map value read for this run only.
    if p.opens_flow() {
        // The stream it would replace: where it began, and where its server may read on
        // from if this SYN is forged (every value set on both ways, for the verifier).
        // SAFETY: a map value read for this run only.
        let (known, from, frontier) = match unsafe { DNS_TCP_POS.get(&p.key) } {
            Some(o) => {
                let reached = o.next.wrapping_add(o.held);
                // Where a stream got to counts only where it was read on past the frontier
                // it kept, as its server read it (a message across that place cannot be
                // judged): a stream a forged SYN began ahead, never reached by the server,
                // must not move the frontier past the real stream.
                let through = o.frontier.wrapping_sub(o.start) as i32 >= 0
                    && reached.wrapping_sub(o.frontier) as i32 > 0;
                let f = if o.frontier_set == 0 || through {
                    reached
                } else {
                    o.frontier
                };
                (1u32, o.from, f)
            }
            None => (0, 0, 0),
        };
        if (known == 0 || from != seq) && !flow::acknowledged(&p.key) {
            let start = TcpPos {
                next: seq,
                body: 0,
                from: seq,
                from_body: 0,
                held: 0,
                from_len: NO_LEN,
                start: seq,
                frontier,
                frontier_set: known,
            };
            let _ = DNS_TCP_POS.insert(&p.key, &start, 0);
        }
    }
    // Urgent data: a server reads the stream without its urgent byte, where the walk would
    // read it in (DNS clients send none).
    if p.tcp_flags & parse::TCP_URG != 0 {
        return Err(unwalked());
    }
    // The segment's data: the length prefix of a message, if one starts there.
    let data = match off.checked_sub(2) {
        Some(data) if data < end => data,
        _ => return Err(Query::Pass), // a segment without data: the handshake, an ACK
    };
    if first_fragment(ctx, p) {
        return Err(unwalked()); // the rest of the segment is in later fragments
    }
    // SAFETY: a map value read for this run only.
    let due = match unsafe { DNS_TCP_POS.get(&p.key) } {
        Some(pos) => *pos,
        None => {
            // Without its SYN, where a message starts is not known: a segment read from its
            // own start could be the rest of one the server began reading.
            let Some(next) = flow::stream_start(&p.key, dir) else {
                return Err(unwalked());
            };
            TcpPos {
                next,
                body: 0,
                from: next,
                from_body: 0,
                held: 0,
                from_len: NO_LEN,
                start: next,
                frontier: 0,
                frontier_set: 0,
            }
        }
    };
    let n = end - data;
    if due.start.wrapping_sub(seq) as i32 > 0 {
        return Err(unwalked()); // bytes before the stream's start: never judged
    }
    s.start = due.start;
    s.frontier = due.frontier;
    s.frontier_set = due.frontier_set;
    if due.held != 0 {
        // A message the last segment cut: its held bytes, then this segment's after them. As
        // its server, which keeps the bytes it received first, the walk never reads a
        // segment's bytes in place of held ones.
        let (skip, held) = match due.next.wrapping_add(due.held).wrapping_sub(seq) as i32 {
            // Bytes between the held ones and this segment were never seen.
            skip if skip < 0 => return Err(unwalked()),
            // Bytes passed or held already (a retransmission's head, a keepalive's byte).
            skip if skip as usize >= n => return Err(Query::Pass),
            skip if copy_held(&p.key, s) => (skip as usize, due.held as usize),
            _ => return Err(unwalked()), // the held bytes lost
        };
        set_up(
            s,
            data + skip,
            n - skip,
            held,
            due.next,
            Some(due.body),
            false,
        );
        mark_frontier(s, due.next);
        return Ok(());
    }
    // Where the walk begins in this segment: where the last one began, if the segment holds
    // that place (bytes there judged again), else where the next message is due.
    let (skip, at, body) = match due.from.wrapping_sub(seq) as i32 {
        back if back >= 0 && (back as usize) < n => (back as usize, due.from, due.from_body),
        _ => match due.next.wrapping_sub(seq) as i32 {
            // Bytes before this segment were never judged.
            skip if skip < 0 => return Err(unwalked()),
            // The rest of a message already judged, or an older retransmission.
            skip if skip as usize >= n => return Err(Query::Pass),
            skip => (skip as usize, due.next, due.body),
        },
    };
    let judged = due.next.wrapping_sub(seq.wrapping_add(n as u32)) as i32 >= 0;
    set_up(s, data + skip, n - skip, 0, at, Some(body), judged);
    mark_frontier(s, at);
    if at == due.from && due.next != due.from {
        // Walked again from where the last walk began: its messages must be the ones that
        // walk read (a retransmission), else the server may read others (it kept the bytes
        // it received first, or threw them away: a Fast Open SYN's data a server without
        // its cookie ignores). One forged length there swallowed a blocked query behind it
        // into a message, or left it unread as bytes judged.
        s.expect_len = due.from_len;
        // Where the last walk's last message began: at `next`, or, its length read there
        // already, two bytes before.
        let (last, len) = if due.body == 0 {
            (due.next, NO_LEN)
        } else {
            (due.next.wrapping_sub(2), due.body)
        };
        s.boundary = last.wrapping_sub(due.from);
        s.boundary_len = len;
    }
    Ok(())
}

/// Where in `buf`, whose start is sequence number `base`, the replaced stream's frontier
/// lies ([`Scratch::frontier_off`]), if ahead of it.
#[inline(always)]
fn mark_frontier(s: &mut Scratch, base: u32) {
    let off = s.frontier.wrapping_sub(base);
    // Without a branch (each one before the walk doubles the verifier's walk of it): all
    // ones where it is set and ahead.
    let ahead = ((-i64::from(off as i32)) >> 63) as u32;
    let set = 0u32.wrapping_sub(s.frontier_set & 1);
    s.frontier_off = off & ahead & set;
}

/// Writes what [`walk`] reads: `seg` bytes at `off`, one UDP query (`body` `None`), or a TCP
/// segment's after `held` bytes already in the buffer, from sequence number `next`
/// (`Some(body)`: a length prefix there, or with `body` not 0, a header, the length already
/// read), which ends within bytes `judged` already or not.
#[inline(always)]
fn set_up(
    s: &mut Scratch,
    off: usize,
    seg: usize,
    held: usize,
    next: u32,
    body: Option<u32>,
    judged: bool,
) {
    let (tcp, body, phase) = match body {
        None => (0, seg as u32, HEADER),
        Some(0) => (1, 0, PREFIX),
        Some(body) => (1, body, HEADER),
    };
    // SAFETY: fields of this CPU's scratch slot; single aligned stores.
    unsafe {
        use core::ptr::addr_of_mut;
        addr_of_mut!(s.off).write_volatile(off as u32);
        addr_of_mut!(s.seg).write_volatile(seg as u32);
        addr_of_mut!(s.held).write_volatile(held as u32);
        addr_of_mut!(s.next).write_volatile(next);
        addr_of_mut!(s.tcp).write_volatile(tcp);
        addr_of_mut!(s.judged).write_volatile(judged as u32);
        addr_of_mut!(s.body).write_volatile(body);
        addr_of_mut!(s.from_body).write_volatile(body);
        addr_of_mut!(s.phase).write_volatile(phase);
        addr_of_mut!(s.first_len).write_volatile(NO_LEN);
        addr_of_mut!(s.expect_len).write_volatile(NO_LEN);
        addr_of_mut!(s.boundary).write_volatile(0);
        addr_of_mut!(s.boundary_len).write_volatile(NO_LEN);
        addr_of_mut!(s.frontier_off).write_volatile(0);
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

/// Walks what [`set_up`] wrote in `s`; the first blocked name's rule, or `None` with the
/// phase telling why.
#[inline(always)]
fn walk(ctx: &XdpContext, s: &mut Scratch) -> Option<RuleId> {
    // SAFETY: fields of this CPU's scratch slot; single aligned loads.
    let (off, seg, held) = unsafe {
        use core::ptr::addr_of;
        (
            addr_of!(s.off).read_volatile() as usize,
            addr_of!(s.seg).read_volatile() as usize,
            addr_of!(s.held).read_volatile() as usize & (HOLD - 1),
        )
    };
    let phase = s.phase;
    s.phase = BAD;
    s.wanted = 0; // not cut short, if the walk cannot start
    s.key = *DOMAIN_KEY.get(0)?;
    // Through black_box so the bounds check below stays next to the helper call, where the
    // verifier needs to see `len` in 1..=SPAN.
    let len = core::hint::black_box(if seg < SPAN { seg } else { SPAN });
    if len == 0 || len > SPAN {
        return None;
    }
    s.pos = 0;
    s.len = (held + len) as u32;
    s.seg = (held + seg) as u32;
    s.msg_at = 0;
    s.ring.count = 0;
    // SAFETY: copies `len` (1..=SPAN) bytes the packet has into the scratch buffer after the
    // `held` (< HOLD) bytes there.
    let copied = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            off as u32,
            s.buf.as_mut_ptr().add(held).cast(),
            len as u32,
        )
    };
    if copied != 0 {
        return None;
    }
    s.phase = phase;
    // bpf_loop: the verifier checks `step` once, not once per label, message and caller
    // state.
    // SAFETY: a valid callback and no context.
    unsafe {
        bpf_loop(
            MAX_STEPS,
            step as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    (s.phase == BLOCKED).then_some(s.rule)
}

/// Wire-format names are at most 255 bytes, terminator included.
const MAX_NAME_WIRE: u32 = 255;

/// The length of the QNAME [`blocked_query`] blocked last on this CPU (its terminating zero
/// included), for a refusal that answers the query it just blocked.
#[inline(always)]
pub fn walked_name_len() -> Option<usize> {
    let s = DNS_SCRATCH.get_ptr(0)?;
    // SAFETY: this CPU's scratch slot, written by the walk earlier in this run.
    let (phase, len) = unsafe { ((*s).phase, (*s).name_len) };
    (phase == BLOCKED && len <= MAX_NAME_WIRE).then_some((len & 0xff) as usize)
}

/// Where in its message the UDP query's name [`blocked_query`] blocked last on this CPU
/// starts ([`agent_common::payload::PayloadHead::blocked_name`]); 0 for none, and for TCP,
/// whose walked bytes may begin in an earlier segment. After [`blocked_query`] in the same
/// run, which marks the scratch unwalked before anything else.
#[inline(always)]
pub fn blocked_name_at() -> u16 {
    let Some(s) = DNS_SCRATCH.get_ptr(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch slot, written by the walk earlier in this run.
    let (phase, tcp, at) = unsafe { ((*s).phase, (*s).tcp, (*s).name_at) };
    if phase == BLOCKED && tcp == 0 && at < SPAN as u32 {
        at as u16
    } else {
        0
    }
}
