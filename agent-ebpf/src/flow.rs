//! The flow table: one LRU entry per conversation per interface, keyed in the orientation of
//! the packet that opened it (`a` = originator). A packet first looks up its own orientation
//! (the only lookup on a gateway interface, where each flow ingresses one way); on a miss it
//! tries the reverse, and only then creates the flow; a TCP SYN skips both lookups and goes
//! straight to the insert. The entry caches the flow's list verdict with the generation it
//! was computed for, so an established flow pays one lookup until the lists change.
//!
//! What an established packet costs was measured part by part (`agent/benches/xdp.rs`, its
//! ablations in `ablate.rs`), and this path keeps what paid:
//! - The clock: `last_seen_ns` is the precise clock read at the flow's first packet of a
//!   kernel tick, so the helper is called once per tick per flow; other packets compare the tick's low 16
//!   bits (`bpf_jiffies64`, one inlined load) with the entry's `last_tick`. That was a fifth
//!   of the established path. The 16 bits wrap after 65,536 ticks (65 s at HZ=1000): a flow
//!   silent for exactly a multiple of that whose next packets all fall in that one tick
//!   keeps its older `last_seen_ns`; the inactive timeout (30 s by default) ends such flows
//!   long before.
//! - Counters stay locked atomic adds: plain per-direction adds would be exact only while one
//!   CPU at a time handles a direction (RSS steers a direction's 5-tuple to one queue; a
//!   change of the indirection table or of the queue's CPU moves it, and the two CPUs' adds
//!   race until in-flight packets drain, losing at most the packets processed concurrently),
//!   and they measured no faster uncontended on this machine ([`ablate::LOCKED_COUNTERS`]).
//!
//! An entry is shared: every CPU that gets a packet of the flow updates it at the same time
//! (and the agent reads it). So it is only ever reached through a raw pointer ([`Entry`]),
//! never a `&mut FlowValue`, which would promise the compiler exclusive access: counters with
//! atomic adds, the other fields with single loads and stores that may not be split, merged
//! or repeated ([`get`], [`set`]: the kernel's READ_ONCE and WRITE_ONCE), where a lost race
//! costs at most a timestamp or flag bit of the same packet burst.

use core::intrinsics::{atomic_xadd, AtomicOrdering};
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{compiler_fence, Ordering};

use agent_common::{
    event_kind, family, flow_flags, rules::empty, verdict, Counter, FlowKey, FlowKey4, FlowValue,
    DIR_ORIG, DIR_RESP, NO_RULE,
};
use aya_ebpf::{
    bindings::{xdp_action, BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_ktime_get_ns, generated::bpf_jiffies64},
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::XdpContext,
};

// By path: the bins include this file by path too (`src/bin/*.rs`).
#[path = "flow/reuse.rs"]
mod reuse;

use reuse::{reopens, retire_closed};

use crate::{
    ablate::{self, has},
    dns, events, flood,
    parse::{Header, Packet},
    payload, refuse, stats, verdict as lists,
};

/// IPv6 flows. Default size; the loader sets the real one (`--flow-table-size`).
#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(65536, 0);

/// IPv4 flows, under a 20-byte key: the kernel hashes and compares keys byte by byte, and a
/// 48-byte key cost more than all the rest of an established packet's path.
#[map(name = "FLOWS4")]
static FLOWS4: LruHashMap<FlowKey4, FlowValue> = LruHashMap::with_max_entries(65536, 0);

/// Where a new flow's entry is built before its insert: on the stack, it and the copies
/// the compiler made of it took 152 of the program's 512 bytes, which the parser's checks
/// need.
#[map(name = "NEW_FLOW")]
static NEW_FLOW: PerCpuArray<FlowValue> = PerCpuArray::with_max_entries(1, 0);

/// A flow-table entry other CPUs may be updating (see the module documentation).
pub type Entry = *mut FlowValue;

/// Reads a field of an entry once (READ_ONCE).
///
/// # Safety
/// `field` points into a live map value, aligned for `T`.
#[inline(always)]
unsafe fn get<T: Copy>(field: *const T) -> T {
    // SAFETY: upheld by the caller.
    unsafe { field.read_volatile() }
}

/// Writes a field of an entry once (WRITE_ONCE).
///
/// # Safety
/// As [`get`].
#[inline(always)]
unsafe fn set<T: Copy>(field: *mut T, value: T) {
    // SAFETY: upheld by the caller.
    unsafe { field.write_volatile(value) }
}

/// The entry of `key` in the table of its family.
#[inline(always)]
pub fn lookup(key: &FlowKey) -> Option<Entry> {
    if key.family == family::V4 {
        FLOWS4.get_ptr_mut(&FlowKey4::from_key(key))
    } else {
        FLOWS.get_ptr_mut(key)
    }
}

/// Inserts the entry of `key` in the table of its family.
#[inline(always)]
fn insert(key: &FlowKey, value: &FlowValue, flags: u64) -> Result<(), i32> {
    if key.family == family::V4 {
        FLOWS4.insert(&FlowKey4::from_key(key), value, flags)
    } else {
        FLOWS.insert(key, value, flags)
    }
}

/// Takes the entry of `key` out of the table of its family.
#[inline(always)]
fn remove(key: &FlowKey) {
    let _ = if key.family == family::V4 {
        FLOWS4.remove(&FlowKey4::from_key(key))
    } else {
        FLOWS.remove(key)
    };
}

const EEXIST: i32 = 17;

/// Adds `n` to a counter shared across CPUs.
///
/// # Safety
/// `counter` points into a live map value, 8-byte aligned.
#[inline(always)]
pub unsafe fn add(counter: *mut u64, n: u64) {
    // SAFETY: upheld by the caller. The BPF target has no `AtomicU64::fetch_add`; the
    // intrinsic lowers to BPF's atomic add.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, n) };
}

#[inline(always)]
pub fn reverse(key: &mut FlowKey) {
    core::mem::swap(&mut key.addr_a, &mut key.addr_b);
    core::mem::swap(&mut key.port_a, &mut key.port_b);
}

/// CLOCK_MONOTONIC in ns, exact. Costs several times the coarse clock on virtual machines,
/// so an established packet reads it only at its flow's first packet of a kernel tick.
#[inline(always)]
fn precise_now() -> u64 {
    // SAFETY: a helper call with no arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// The low 16 bits of the kernel's jiffies: which tick this is. The JIT inlines the helper
/// into one load.
#[inline(always)]
fn tick() -> u16 {
    // SAFETY: a helper call with no arguments.
    unsafe { bpf_jiffies64() as u16 }
}

/// Adds `n` to a counter of the entry: a locked atomic add with
/// [`ablate::LOCKED_COUNTERS`], else a plain one (see the module documentation).
///
/// # Safety
/// As [`add`].
#[inline(always)]
unsafe fn count<const A: u32>(counter: *mut u64, n: u64) {
    // SAFETY: upheld by the caller.
    unsafe {
        if has(A, ablate::LOCKED_COUNTERS) {
            add(counter, n);
        } else {
            set(counter, get(counter) + n);
        }
    }
}

/// Counts one packet in its flow (creating the flow on its first packet; a DNS query of an
/// existing flow that passes is left to the slow path to count, see [`judge`]) and returns
/// the XDP action of the flow's cached list verdict, and the packet's [`payload::handover`]
/// bits (its direction, whether its flow's payload budget grants it a copy, and whether it
/// was counted where a new flow was made). `p.key` is left in the flow's orientation.
#[inline(always)]
pub fn account<const A: u32>(ctx: &XdpContext, p: &mut Packet) -> (u32, u8) {
    let gen = if has(A, ablate::NO_GENERATION) {
        lists::InForce {
            generation: 0,
            empty: 0,
        }
    } else {
        lists::in_force()
    };
    // A SYN goes straight to the insert, which finds a retransmitted SYN's flow by itself:
    // each lookup that misses is a cache miss in a large table, the most a new flow costs.
    // (A simultaneous open, where the other side's SYN made the flow first, gets an entry
    // of its own.) A SYN-ACK first retires a closed flow under its key (`retire_closed`).
    if p.opens_flow() {
        return create::<A>(ctx, p, gen);
    }
    if p.is_syn_ack() {
        retire_closed(&p.key, u32::from_be(p.seq));
    }
    if let Some(v) = lookup(&p.key) {
        return update::<A>(v, p, DIR_ORIG, gen);
    }
    reverse(&mut p.key);
    if let Some(v) = lookup(&p.key) {
        return update::<A>(v, p, DIR_RESP, gen);
    }
    reverse(&mut p.key);
    create::<A>(ctx, p, gen)
}

/// Counts a packet of direction `dir` in the entry `v` of `p.key` (in the flow's orientation),
/// but a DNS query its flow passes (see [`judge`]).
#[inline(always)]
fn update<const A: u32>(v: Entry, p: &mut Packet, dir: usize, gen: lists::InForce) -> (u32, u8) {
    let mut copy = payload::handover(dir, false);
    // SAFETY: `v` came from a lookup in this run, so it points to a live, aligned map value
    // (which stays valid for the run even if the entry is deleted meanwhile), and every
    // access below is a single field access through the raw pointer.
    unsafe {
        // Read the clock once per tick per flow: `last_seen_ns` is then at most a tick before
        // the flow's last packet. (The coarse clock, read so before, itself lags up to a
        // tick more: time_end came out up to 8 ms early against a capture at HZ=250.) Never
        // move last_seen backwards (and skip the store when it would not change).
        if !has(A, ablate::NO_CLOCK) {
            let tick = tick();
            if has(A, ablate::CLOCK_EVERY_PACKET) || get(addr_of!((*v).last_tick)) != tick {
                set(addr_of_mut!((*v).last_tick), tick);
                let now = precise_now();
                if now > get(addr_of!((*v).last_seen_ns)) {
                    set(addr_of_mut!((*v).last_seen_ns), now);
                }
            }
        }
        let seen = get(addr_of!((*v).tcp_flags[dir]));
        if p.tcp_flags & !seen != 0 {
            set(addr_of_mut!((*v).tcp_flags[dir]), seen | p.tcp_flags);
        }
        // The lists judge a packet's remote side: each direction's at its first packet under
        // the generation in force ([`flow_flags::JUDGED`]), the entry's verdict a drop if
        // either side's is. Else one datagram sent first from a blocked address (spoofed,
        // say) would make a flow whose packets to that address pass. `dir` is a constant at
        // each inlined call site, so which way the key is turned is known statically, and the
        // generation is read again after the call rather than kept across it (the verifier
        // walks the chain once for both ways in).
        let stale = get(addr_of!((*v).verdict_gen)) != gen.generation;
        let judged = get(addr_of!((*v).flags)) & flow_flags::JUDGED[dir] != 0;
        if stale || !judged {
            if dir == DIR_RESP {
                reverse(&mut p.key);
            }
            let (verdict, rule) = lists::of(&p.key, gen);
            if dir == DIR_RESP {
                reverse(&mut p.key);
            }
            if get(addr_of!((*v).verdict_gen)) != gen.generation {
                // A new generation: this side's verdict alone, the other side to be judged
                // at its next packet.
                set(addr_of_mut!((*v).verdict), verdict);
                set(addr_of_mut!((*v).rule), rule);
                set(addr_of_mut!((*v).verdict_gen), gen.generation);
                let others = flow_flags::ORIG_JUDGED | flow_flags::RESP_JUDGED;
                let flags = addr_of_mut!((*v).flags);
                set(flags, get(flags) & !others | flow_flags::JUDGED[dir]);
            } else {
                // A drop on either side wins (an allow rule only speaks for its own side).
                if verdict == verdict::DROP && get(addr_of!((*v).verdict)) != verdict::DROP {
                    set(addr_of_mut!((*v).verdict), verdict);
                    set(addr_of_mut!((*v).rule), rule);
                }
                set_flags(v, flow_flags::JUDGED[dir]);
            }
        }
        // The one compare a flow past its payload budget (or without one) pays. Racing CPUs
        // may both spend the same count: a copy or two more, never an unbounded number.
        let left = get(addr_of!((*v).snippets_left[dir]));
        if left != 0 {
            set(addr_of_mut!((*v).snippets_left[dir]), payload::spend(left));
            copy = payload::handover(dir, true);
        }
        // Counted before the end's announcement, which carries the closing packet (not a
        // DNS query's, counted by the slow path).
        let action = judge::<A>(&p.key, v, dir, p.len, p.dns_off != 0);
        if p.closes_flow() && get(addr_of!((*v).end_seen_ns)) != 0 {
            // A RST after the first FIN still says how the flow ended (RST wins over FIN);
            // a later FIN writes nothing (a racing CPU's bits would be lost to it).
            if p.is_rst() {
                set_flags(v, flow_flags::RST_SEEN);
            }
        } else if p.closes_flow() {
            let now = precise_now();
            set(addr_of_mut!((*v).end_seen_ns), now);
            if now > get(addr_of!((*v).last_seen_ns)) {
                set(addr_of_mut!((*v).last_seen_ns), now);
            }
            let closed = if p.is_rst() {
                flow_flags::RST_SEEN
            } else {
                flow_flags::FIN_SEEN
            };
            set_flags(v, closed);
            if events::emit(
                event_kind::FLOW_END,
                NO_RULE,
                &p.key,
                v,
                Counter::LostFlowEnd,
            ) {
                set_flags(v, flow_flags::END_ANNOUNCED);
            }
        }
        (action, copy)
    }
}

/// Sets `bits` in the entry's flags (a racing CPU's bits may be lost: they are set again by
/// the same kind of packet, or the sweeper takes the flow for unannounced).
///
/// # Safety
/// As [`get`].
#[inline(always)]
unsafe fn set_flags(v: Entry, bits: u8) {
    // SAFETY: upheld by the caller.
    unsafe {
        let flags = addr_of_mut!((*v).flags);
        set(flags, get(flags) | bits);
    }
}

/// Applies the flow's cached verdict to this packet of direction `dir` and `len` bytes, and
/// counts it, last: once its verdict is known, a dropped packet's drop is counted before the
/// packet. A copy of the entry made meanwhile (the sweeper's read, on another CPU: two
/// reads, the packet counts from the first, `flowtable::settled`, since the kernel's
/// `memcpy` reads in no set order) may then hold the drop without its packet, which the sweeper
/// carries to the packet's record (`Reported::covering`), never the packet without its drop,
/// which would record a blocked packet as passed (the list lookups of a re-judged packet
/// once sat between the two). What a packet adds after the sweeper's take of an idle flow
/// is lost with the deleted entry. A DNS `query` its flow passes is not counted here: its
/// name may still drop it, so the slow path counts it once the name is judged
/// ([`judge_dns`]); if the tail call fails (counted), it passes uncounted in its flow. So is
/// a new flow's first query: its entry is created empty, and the slow path counts the query
/// and announces the flow once the name is judged (see `create`). The
/// order holds where atomic adds are seen in program order (x86, whose atomic adds are
/// locked); arm64's relaxed adds may show the two in either order.
#[inline(always)]
fn judge<const A: u32>(key: &FlowKey, v: Entry, dir: usize, len: u64, query: bool) -> u32 {
    // SAFETY: as in `update`.
    unsafe {
        let (rule, verdict) = (get(addr_of!((*v).rule)), get(addr_of!((*v).verdict)));
        if rule != NO_RULE && !has(A, ablate::NO_HITS) {
            lists::hit(rule);
        }
        let dropped = verdict == verdict::DROP;
        if query && !dropped {
            return xdp_action::XDP_PASS;
        }
        let first = dropped && count_drop::<A>(v);
        count_packet::<A>(v, dir, len);
        if dropped {
            announce_drop(key, v, rule, Counter::DroppedByList, first);
            return xdp_action::XDP_DROP;
        }
    }
    xdp_action::XDP_PASS
}

/// Counts one packet of direction `dir` and `len` bytes on the entry: its bytes first. The
/// sweeper copies entries while packets are counted and judges by the packet count whether a
/// flow moved: a copy read in field order (`packets` lies before `bytes`) may then show a
/// packet's bytes without the packet (the next record carries the packet; the sums stay
/// exact), not the packet without its bytes, which a flow's last record lost when no packet
/// followed.
///
/// # Safety
/// As [`get`].
#[inline(always)]
unsafe fn count_packet<const A: u32>(v: Entry, dir: usize, len: u64) {
    if !has(A, ablate::NO_COUNTERS) {
        // The adds are relaxed, which lets the compiler reorder them and a drop counted just
        // before (`judge`): fences for the compiler only (no instruction) keep the order the
        // agent's reads rely on (the CPU keeps the order of locked adds; the agent reads each
        // entry twice, `flowtable::settled`).
        // SAFETY: upheld by the caller.
        unsafe {
            compiler_fence(Ordering::SeqCst);
            count::<A>(addr_of_mut!((*v).bytes[dir]), len);
            compiler_fence(Ordering::SeqCst);
            count::<A>(addr_of_mut!((*v).packets[dir]), 1);
        }
    }
}

/// The name check of a DNS query its flow's verdict passed: the rule that drops it, or
/// `None`. A name the walk cannot read (a fragment, a compressed name) is dropped while a
/// domain is blocked, since its server would read a name no rule judged; its drop record
/// names no rule. Before the payload copy, so a query past the drop-record budget is
/// not copied either ([`summarised_query`]).
#[inline(always)]
pub fn name_verdict(ctx: &XdpContext, p: &Packet, dir: usize) -> Option<u32> {
    match dns::blocked_query(ctx, p, dir) {
        dns::Query::Blocked(rule) => Some(rule),
        dns::Query::Unwalked if lists::in_force().empty & empty::DOMAINS_BLOCKED != 0 => {
            Some(NO_RULE)
        }
        _ => None,
    }
}

/// Where the originator's TCP stream starts (the sequence number after its SYN), for a
/// packet of direction `dir`: known only for the originator of a flow its SYN created.
#[inline(always)]
pub fn stream_start(key: &FlowKey, dir: usize) -> Option<u32> {
    let v = lookup(key)?;
    // SAFETY: as in `update`.
    let (flags, isn) = unsafe { (get(addr_of!((*v).flags)), get(addr_of!((*v).isn))) };
    (dir == DIR_ORIG && flags & flow_flags::SYN_OPENED != 0).then_some(isn.wrapping_add(1))
}

/// Whether `key`'s flow was opened by a SYN and its originator has acknowledged since (its
/// connection is established): a SYN counted into such a flow opens no new stream (a
/// connection on the ports of a flow that closed gets an entry of its own, [`reopens`]).
/// One a bare ACK made first never counts as opened ([`flow_flags::SYN_OPENED`]).
#[inline(always)]
pub fn acknowledged(key: &FlowKey) -> bool {
    lookup(key).is_some_and(|v| {
        // SAFETY: as in `update`.
        let flags = unsafe { get(addr_of!((*v).flags)) };
        // SAFETY: as above.
        let tcp = unsafe { get(addr_of!((*v).tcp_flags[DIR_ORIG])) };
        flags & flow_flags::SYN_OPENED != 0 && tcp & crate::parse::TCP_ACK != 0
    })
}

/// Whether a query that created its flow, blocked by `rule`, is past the drop-record budget
/// ([`flood::admit`], which then sums it in the rule's summary): its flow is taken out again
/// and the drop counted, and the caller drops it with no event, copy or answer, as `create`
/// drops a blocked flow past the budget.
#[inline(always)]
pub fn summarised_query(rule: u32, p: &Packet) -> bool {
    if flood::admit(rule, p) {
        return false;
    }
    // Taken out as this query left it, empty (see `create`): a packet of the same flow that
    // another CPU counted into it meanwhile keeps it, and that packet's own announcement.
    if let Some(v) = lookup(&p.key) {
        // SAFETY: as in `update`.
        let counted = unsafe {
            get(addr_of!((*v).packets[DIR_ORIG]))
                | get(addr_of!((*v).packets[DIR_RESP]))
                | get(addr_of!((*v).drops))
        };
        if counted == 0 {
            remove(&p.key);
        }
    }
    lists::hit(rule);
    stats::bump(Counter::DroppedByDomain);
    true
}

/// Announces the flow a DNS query made (see `create`) once its name is judged, and before
/// its payload is copied, as `create` announces other flows before theirs (the agent takes an
/// evicted flow's successor under the same key for new at its start): a query that `passes`
/// is counted in first, so the start holds it; a blocked one is counted with its drop
/// ([`judge_dns`]), the start holding nothing. An entry gone meanwhile (evicted), or a start
/// the ring has no room for, is a lost start.
#[inline(always)]
pub fn announce_created(p: &Packet, dir: usize, passes: bool) {
    let Some(v) = lookup(&p.key) else {
        stats::bump(Counter::LostFlowStart);
        return;
    };
    if passes {
        // SAFETY: as in `update`.
        unsafe { count_packet::<{ ablate::PRODUCTION }>(v, dir, p.len) };
    }
    if !events::emit(
        event_kind::FLOW_START,
        NO_RULE,
        &p.key,
        v,
        Counter::LostFlowStart,
    ) {
        unannounce(v);
    }
}

/// Acts on a query's [`name_verdict`] (`blocked`), in direction `dir`, and counts the query
/// if it is `uncounted` (see [`judge`], and a blocked query that made its flow: see
/// [`announce_created`]): a blocked name's drop first, then the packet, as `judge` counts a
/// blocked flow's packet. One call site, after the flow path: the name walk is the costliest
/// code for the verifier to prove.
#[inline(always)]
pub fn judge_dns(
    ctx: &XdpContext,
    p: &Packet,
    dir: usize,
    uncounted: bool,
    blocked: Option<u32>,
) -> u32 {
    let Some(rule) = blocked else {
        if uncounted {
            if let Some(v) = lookup(&p.key) {
                // SAFETY: as in `update`.
                unsafe { count_packet::<{ ablate::PRODUCTION }>(v, dir, p.len) };
            }
        }
        return xdp_action::XDP_PASS;
    };
    lists::hit(rule);
    let refused = rule != NO_RULE && refuse::dns(ctx, p, rule);
    match lookup(&p.key) {
        // SAFETY: as in `update`.
        Some(v) => unsafe {
            if refused {
                set_flags(v, flow_flags::REFUSED);
            }
            let first = count_drop::<{ ablate::PRODUCTION }>(v);
            if uncounted {
                count_packet::<{ ablate::PRODUCTION }>(v, dir, p.len);
            }
            announce_drop(&p.key, v, rule, Counter::DroppedByDomain, first);
        },
        None => stats::bump(Counter::DroppedByDomain),
    }
    if refused {
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_DROP
    }
}

/// Counts a drop on the entry; true if it is the flow's first.
///
/// # Safety
/// As [`get`].
#[inline(always)]
unsafe fn count_drop<const A: u32>(v: Entry) -> bool {
    // SAFETY: upheld by the caller.
    unsafe {
        // Racing CPUs may both see zero and both announce: the agent keeps the first.
        let first = get(addr_of!((*v).drops)) == 0;
        count::<A>(addr_of_mut!((*v).drops), 1);
        first
    }
}

/// Takes back a flow's announced mark (its announcement was lost): the sweeper records an
/// unmarked flow itself, and counts it a lost start.
#[inline(always)]
fn unannounce(v: Entry) {
    // SAFETY: as in `update`.
    unsafe {
        let flags = addr_of_mut!((*v).flags);
        set(flags, get(flags) & !flow_flags::START_ANNOUNCED);
    }
}

/// Counts the drop in `counter` and, for a flow's `first` drop, announces it with its rule.
#[inline(always)]
fn announce_drop(key: &FlowKey, v: Entry, rule: u32, counter: Counter, first: bool) {
    stats::bump(counter);
    if first && events::emit(event_kind::FLOW_DROP, rule, key, v, Counter::LostFlowDrop) {
        // SAFETY: as in `update`.
        unsafe { set_flags(v, flow_flags::START_ANNOUNCED) };
    }
}

/// Cold, but inlined: passing the context to a BPF subprogram loses the verifier's packet
/// pointer types. The entry is inserted already marked as announced and the announcement
/// (its start, or its first drop) follows, so creating a flow costs one table operation and
/// no second lookup.
#[inline(always)]
fn create<const A: u32>(ctx: &XdpContext, p: &mut Packet, gen: lists::InForce) -> (u32, u8) {
    let (verdict, rule) = lists::of(&p.key, gen);
    let dropped = verdict == verdict::DROP;
    // Past the drop-record budget a blocked packet buys no flow and no event: it is counted
    // in its rule's flood summary (a retransmitted SYN of a recorded blocked flow too).
    if dropped && !flood::admit(rule, p) {
        if !has(A, ablate::NO_HITS) {
            lists::hit(rule);
        }
        stats::bump(Counter::DroppedByList);
        return (xdp_action::XDP_DROP, payload::handover(DIR_ORIG, false));
    }
    // Read only for a packet that makes a flow: the precise clock was an eighth of a
    // stateless drop (37 ns of 290 in the flood row of `agent/benches/xdp.rs`).
    let now = precise_now();
    let mut flags = 0;
    let mut end_seen_ns = 0;
    if p.closes_flow() {
        end_seen_ns = now;
        flags |= if p.is_rst() {
            flow_flags::RST_SEEN
        } else {
            flow_flags::FIN_SEEN
        };
    }
    let Some(slot) = NEW_FLOW.get_ptr_mut(0) else {
        // Never (index 0 of a one-slot array); judged all the same.
        return (
            if dropped {
                xdp_action::XDP_DROP
            } else {
                xdp_action::XDP_PASS
            },
            0,
        );
    };
    // SAFETY: this CPU's slot, 8-aligned, and only this run's until it returns.
    let value = unsafe {
        crate::mem::clear(slot);
        &mut *slot
    };
    value.first_seen_ns = now;
    value.last_seen_ns = now;
    value.last_tick = tick();
    value.end_seen_ns = end_seen_ns;
    value.packets[DIR_ORIG] = 1;
    value.bytes[DIR_ORIG] = p.len;
    value.tcp_flags[DIR_ORIG] = p.tcp_flags;
    value.flags = flags | flow_flags::ORIG_JUDGED;
    value.verdict = verdict;
    value.verdict_gen = gen.generation;
    value.rule = rule;
    value.drops = dropped as u64;
    // The parser already proved the Ethernet header is there.
    if let Some(eth) = Header::<12>::at(ctx, 0) {
        value.dst_mac = eth.get::<[u8; 6], 0>();
        value.src_mac = eth.get::<[u8; 6], 6>();
    }
    // A refused SYN is marked here and becomes its RST last, after the insert and events.
    let refusing = dropped && refuse::syn_wanted(ctx, p, rule);
    value.flags |= if refusing { flow_flags::REFUSED } else { 0 };
    // The payload budget. A first packet that is not a SYN (a UDP datagram) spends one and
    // goes to the slow path if its insert creates the flow. A SYN spends nothing: its
    // sequence number, kept as `isn`, is the stream's start (Fast Open data is not copied).
    let mut budget = payload::budget(&p.key, p.has_syn());
    let mut copy = false;
    if budget[DIR_ORIG] != 0 && !p.has_syn() {
        budget[DIR_ORIG] = payload::spend(budget[DIR_ORIG]);
        copy = true;
    }
    value.snippets_left = budget;
    value.isn = u32::from_be(p.seq);
    value.flags |= p.plain_syn_bit() * flow_flags::SYN_OPENED;
    // Marked announced before the insert, so a won insert needs no lookup to mark it; the
    // announcement is written after the insert, so a retransmitted SYN (whose insert loses)
    // costs the ring buffer nothing; a full ring takes the mark back.
    value.flags |= flow_flags::START_ANNOUNCED;
    // A DNS query the flow's addresses pass (its name judged in the slow path, which also
    // spends a blocked name's drop-record budget) is announced there, once judged: a start
    // event written now would say a query passed that its name may drop (and, were the
    // drop's event lost and the entry evicted before a walk, be all a record could say).
    let query = !dropped && p.dns_off != 0;
    // Counted by the slow path too, once judged: a walk of the table meanwhile reads a flow
    // with nothing in it, never a query passed that its name then drops. (A mask, not a
    // branch: a branch here cost the verifier 17,000 instructions.)
    let kept = (query as u64).wrapping_sub(1);
    value.packets[DIR_ORIG] &= kept;
    value.bytes[DIR_ORIG] &= kept;
    let mut inserted = insert(&p.key, value, BPF_NOEXIST as u64);
    // The verifier walks the path below once more for this outcome (100,000 instructions):
    // the price of not merging two connections' records, paid on a SYN's path only.
    let seq = value.isn;
    let on_closed = || lookup(&p.key).is_some_and(|old| reopens(&p.key, old, seq));
    if inserted == Err(-EEXIST) && p.is_plain_syn() && on_closed() {
        inserted = insert(&p.key, value, BPF_ANY as u64);
    }
    match inserted {
        Ok(()) if query => p.created = payload::CREATED,
        Ok(()) => {
            // Announcements carry the entry as it was before the mark, as they always have.
            value.flags &= !flow_flags::START_ANNOUNCED;
            // A dropped first packet announces the flow through its drop event instead; its
            // loss is a lost start (the sweeper finds the flow unannounced and counts the
            // starts the table lost unseen from `lost_flow_start`).
            let (kind, named) = if dropped {
                (event_kind::FLOW_DROP, rule)
            } else {
                (event_kind::FLOW_START, NO_RULE)
            };
            if !events::emit(
                kind,
                named,
                &p.key,
                &raw const *value,
                Counter::LostFlowStart,
            ) {
                if let Some(v) = lookup(&p.key) {
                    unannounce(v);
                }
            }
        }
        // Another CPU created the flow between our lookup and insert, or this SYN is a
        // retransmit: count into the entry (its creator announced it).
        // Gone again before the lookup (the sweeper's take, an LRU eviction): its verdict
        // kept, never passed when blocked (counted in neither: the counters' calls here cost
        // the verifier 17,000 instructions; the next packet finds no entry and counts).
        Err(e) if e == -EEXIST => {
            return match lookup(&p.key) {
                Some(v) => update::<A>(v, p, DIR_ORIG, gen),
                None if dropped => (xdp_action::XDP_DROP, 0),
                None => (xdp_action::XDP_PASS, 0),
            };
        }
        // Still enforce the lists on a flow the table could not hold (whose payload has no
        // budget to be counted against, so it is not copied).
        Err(_) => {
            stats::bump(Counter::FlowInsertFailed);
            copy = false;
        }
    }
    if rule != NO_RULE && !has(A, ablate::NO_HITS) {
        lists::hit(rule);
    }
    if dropped {
        stats::bump(Counter::DroppedByList);
        let action = if refusing && refuse::syn(ctx, p, rule) {
            xdp_action::XDP_TX
        } else {
            xdp_action::XDP_DROP
        };
        (action, payload::handover(DIR_ORIG, copy))
    } else {
        // The packet is in the entry already, but a query's (see `judge`), which the slow
        // path counts for a flow it `created` whatever this bit says.
        (
            xdp_action::XDP_PASS,
            payload::handover(DIR_ORIG, copy) | payload::COUNTED,
        )
    }
}
