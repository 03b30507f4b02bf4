//! Which packets have their payload copied to the agent (see [`agent_common::payload`]), and
//! the slow path that copies them.
//!
//! A flow takes its budget from `PAYLOAD_PORTS` when it is created; every later packet of it
//! reads the budget left in its direction, one byte next to the verdict fields the packet
//! reads anyway, and a spent budget (0: most flows from their first packet) stops there. A
//! packet with budget left spends one, whether or not it carries payload (a pure ACK counts:
//! the budget is a number of packets after the SYN), so a flow never goes to the slow path
//! more often than it was given.
//!
//! The slow path is a second program, `xdp_audit_payload`, reached by tail call once the
//! main program has accounted a packet that passes and either has a copy due or is a DNS
//! query (whose name check lives there too). The verifier checks it on its own: the main
//! program, every parser branch times every flow-table branch, is close to the verifier's
//! limit of a million instructions by itself. The slow path parses the packet again, judges
//! a DNS query's name (a blocked query that made its flow, past the drop-record budget, is
//! dropped there with its flow taken out again), announces a flow the query made, copies the
//! payload into a ring record ([`events::payload`]), then acts on the name's verdict, which
//! also counts the query in its flow (the main program leaves a query its flow passes
//! uncounted, so a copy of the entry never holds it passed before its name drops it).
//! Nothing here changes the verdict of a packet that is not a blocked DNS query (which is
//! still copied first, within its budget, so its record can name it); a failed tail call or
//! copy is counted ([`Counter::LostPayload`]) and the packet passes (a query then
//! uncounted in its flow).

use agent_common::{
    payload::{payload_flags, PortBudget, STREAM_BYTES, UNLIMITED},
    proto, Counter, FlowKey, DIR_ORIG, DIR_RESP,
};
use aya_ebpf::{
    bindings::xdp_action,
    macros::map,
    maps::{Array, PerCpuArray, ProgramArray},
    programs::XdpContext,
};

use crate::{
    events::{self, Snip},
    flow,
    parse::{self, Header, Packet},
    stats,
};

/// One entry per port number (host order); written by the loader before the program is
/// attached. Looked up only when a TCP or UDP flow is created.
#[map(name = "PAYLOAD_PORTS")]
static PAYLOAD_PORTS: Array<PortBudget> = Array::with_max_entries(65536, 0);

/// Slot 0: the slow path program; written by the loader.
#[map(name = "SLOW_PATH")]
static SLOW_PATH: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// What the slow path works on, per CPU: the main program's hand-over bits, and the parsed
/// packet's offsets passed through memory (see [`slow_path`]).
#[map(name = "HANDOVER")]
static HANDOVER: PerCpuArray<Handover> = PerCpuArray::with_max_entries(1, 0);

/// The per-CPU hand-over slot.
#[repr(C)]
pub struct Handover {
    bits: u32,
    dns_off: u32,
    l4_off: u32,
    ip_end: u32,
    tcp_flags: u32,
}

/// [`handover`] bit: a payload copy is due.
const COPY: u8 = 1;
/// [`handover`] bit: the packet goes in the flow's responder direction (its key was reversed).
const RESPONDER: u8 = 2;
/// Hand-over bit: the main program counted the packet in its flow (a new flow's first).
pub const COUNTED: u8 = 4;
/// Hand-over bit: the packet, a DNS query, created its flow, which the main program left
/// empty and unannounced for the slow path to count it in and announce once the name is
/// judged ([`flow::announce_created`]). Never set by an older build's main program, which
/// counted and announced every flow it created. (An older build's slow path, put in the slot
/// before its main program replaces this one, leaves such a flow uncounted and unannounced
/// for that moment.)
pub const CREATED: u8 = 8;
/// Set beside the bits in the slot by every hand-over of this build: its main program leaves
/// a DNS query its flow passes to the name check to count, unless it says [`COUNTED`]. An
/// older build's main program, which counted every query itself and can reach a newer slow
/// path while a start swaps them, does not set it. (Set once in [`hand_over`]: a branch on
/// the query in the flow path cost the verifier 42,000 instructions, the bit in every
/// [`handover`] 18,000.)
const LEAVES_QUERIES: u32 = 1 << 8;

/// The hand-over bits of a packet of direction `dir`, with a copy due or not.
#[inline(always)]
pub fn handover(dir: usize, copy: bool) -> u8 {
    (if dir == DIR_RESP { RESPONDER } else { 0 }) | copy as u8
}

/// The payload budget `[originator, responder]` of a new flow whose key is oriented as its
/// first packet. The destination port is looked up first (a client's packet to a service),
/// then the source port (a service's packet seen first, as on an internet-facing interface
/// whose outgoing half XDP never sees). TCP flows get a budget only from a SYN: a flow picked
/// up in mid-stream has no stream start to copy.
#[inline(always)]
pub fn budget(key: &FlowKey, syn: bool) -> [u8; 2] {
    let udp = match key.proto {
        proto::UDP => true,
        proto::TCP if syn => false,
        _ => return [0, 0],
    };
    let of = |port: u16| {
        PAYLOAD_PORTS
            .get(u32::from(u16::from_be(port)))
            .map_or([0, 0], |b| if udp { b.udp } else { b.tcp })
    };
    let [to, from] = of(key.port_b);
    if to | from != 0 {
        return [to, from];
    }
    let [to, from] = of(key.port_a);
    [from, to]
}

/// A budget of `left` (> 0) after one packet spent it.
#[inline(always)]
pub fn spend(left: u8) -> u8 {
    if left == UNLIMITED {
        left
    } else {
        left - 1
    }
}

/// Whether hand-over `bits` say a payload copy is due.
#[inline(always)]
pub fn copy_due(bits: u8) -> bool {
    bits & COPY != 0
}

/// Goes to the slow path with the packet's hand-over `bits`; returns only if the tail call
/// failed (the slot is empty), which is counted.
#[inline(always)]
pub fn hand_over(ctx: &XdpContext, bits: u8) {
    if let Some(slot) = HANDOVER.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, valid for the run.
        unsafe { (*slot).bits = LEAVES_QUERIES | u32::from(bits) };
        // SAFETY: `ctx` is this program's context, as the helper needs.
        unsafe { SLOW_PATH.tail_call(ctx, 0) };
    }
    stats::bump(Counter::LostPayload);
}

/// The slow path: the payload copy if one is due, then the DNS name check of a query.
#[inline(always)]
pub fn slow_path(ctx: &XdpContext) -> u32 {
    let Ok(mut p) = parse::parse(ctx) else {
        return xdp_action::XDP_PASS;
    };
    let Some(slot) = HANDOVER.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    p.key.ifindex = ctx.ingress_ifindex() as u32;
    // The parser's offsets go through the slot and are read back (volatile, so the compiler
    // keeps the round trip): the verifier then checks what follows once, for one unknown
    // offset each, not once for each header layout the parser tells apart.
    // SAFETY: this CPU's slot, valid for the run; its `bits` were written by the main
    // program just before the tail call. Single aligned stores and loads.
    let bits = unsafe {
        use core::ptr::addr_of_mut;
        addr_of_mut!((*slot).dns_off).write_volatile(p.dns_off as u32);
        addr_of_mut!((*slot).l4_off).write_volatile(p.l4_off as u32);
        addr_of_mut!((*slot).ip_end).write_volatile(p.ip_end as u32);
        addr_of_mut!((*slot).tcp_flags).write_volatile(u32::from(p.tcp_flags));
        p.dns_off = addr_of_mut!((*slot).dns_off).read_volatile() as usize;
        p.l4_off = addr_of_mut!((*slot).l4_off).read_volatile() as usize;
        p.ip_end = addr_of_mut!((*slot).ip_end).read_volatile() as usize;
        p.tcp_flags = addr_of_mut!((*slot).tcp_flags).read_volatile() as u8;
        addr_of_mut!((*slot).bits).read_volatile()
    };
    let created = bits as u8 & CREATED != 0;
    let uncounted = bits & LEAVES_QUERIES != 0 && bits as u8 & COUNTED == 0;
    let bits = bits as u8;
    // What the parser wrote; bounds the verifier needs to see again. (None of these early
    // returns happens to the packet the main program parsed, so no query goes uncounted.)
    if p.l4_off > parse::MAX_L4_OFFSET || p.dns_off > parse::MAX_L4_OFFSET + 64 {
        return xdp_action::XDP_PASS;
    }
    let dir = if bits & RESPONDER != 0 {
        flow::reverse(&mut p.key);
        DIR_RESP
    } else {
        DIR_ORIG
    };
    // A query's name is judged first: one that created its flow and is past its rule's
    // drop-record budget is dropped with nothing copied or announced.
    let blocked = if p.dns_off != 0 {
        flow::name_verdict(ctx, &p, dir)
    } else {
        None
    };
    if let Some(rule) = blocked {
        if created && flow::summarised_query(rule, &p) {
            return xdp_action::XDP_DROP;
        }
    }
    // A flow the query made is announced before its copy, as every flow is.
    if created {
        flow::announce_created(&p, dir, blocked.is_none());
    }
    // Then the copy: a blocked DNS query is copied (within its flow's budget) before its
    // drop is acted on, so its payload event precedes the flow's drop event in the ring and
    // the drop record names the query it blocked.
    if copy_due(bits) {
        copy(ctx, &p, dir, blocked.is_some());
    }
    if p.dns_off != 0 {
        // A blocked query that made its flow is counted with its drop (a passing one was,
        // with its start).
        let uncounted = uncounted || created && blocked.is_some();
        return flow::judge_dns(ctx, &p, dir, uncounted, blocked);
    }
    xdp_action::XDP_PASS
}

/// Copies the payload of `p`, a packet of direction `dir` whose flow spent a copy on it;
/// `blocked` when a domain rule drops it (a DNS query).
#[inline(always)]
fn copy(ctx: &XdpContext, p: &Packet, dir: usize, blocked: bool) {
    let Some(v) = flow::lookup(&p.key) else {
        return; // evicted meanwhile: the flow is gone, and with it the stream's start
    };
    let l4 = p.l4_off;
    if l4 == 0 || l4 > parse::MAX_L4_OFFSET {
        return;
    }
    let frame = ctx.data_end() - ctx.data();
    let end = if p.ip_end < frame { p.ip_end } else { frame };
    let tcp = p.key.proto == proto::TCP;
    let (off, seq) = if tcp {
        let Some(t) = Header::<20>::at(ctx, l4) else {
            return;
        };
        // Data in a SYN (a retransmitted Fast Open SYN) starts after the SYN's own number.
        let seq = u32::from_be(t.get::<u32, 4>()).wrapping_add(p.has_syn() as u32);
        (l4 + (t.get::<u8, 12>() >> 4) as usize * 4, seq)
    } else {
        (l4 + 8, 0)
    };
    if off >= end {
        return; // no payload: a pure ACK, a SYN
    }
    // SAFETY: `v` points into a live flow entry; single aligned loads.
    let (isn, left) = unsafe {
        (
            core::ptr::addr_of!((*v).isn).read_volatile(),
            core::ptr::addr_of!((*v).snippets_left[dir]).read_volatile(),
        )
    };
    let (mut flags, blocked_name) = if blocked {
        (payload_flags::DROPPED, crate::dns::blocked_name_at())
    } else {
        (0, 0)
    };
    let mut stream_start = 0;
    // TCP budgets are only given from a SYN, whose sequence number the entry keeps: the
    // originator's stream starts right after it. A segment that starts past the bytes the
    // agent reads is not copied.
    if tcp && dir == DIR_ORIG {
        stream_start = isn.wrapping_add(1);
        if seq.wrapping_sub(stream_start) >= STREAM_BYTES {
            return;
        }
        flags |= payload_flags::START_KNOWN;
    }
    let payload_len = p.ip_end.saturating_sub(off);
    events::payload(
        ctx,
        &p.key,
        &Snip {
            off: off as u32,
            avail: (end - off) as u32,
            seq,
            stream_start,
            payload_len: if payload_len > u16::MAX as usize {
                u16::MAX
            } else {
                payload_len as u16
            },
            dir: dir as u8,
            left,
            flags,
            blocked_name,
        },
    );
}
