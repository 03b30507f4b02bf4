//! The flow table: one LRU entry per conversation per interface, keyed in the orientation of
//! the packet that opened it (`a` = originator). A packet first looks up its own orientation
//! (the only lookup on a gateway interface, where each flow ingresses one way); on a miss it
//! tries the reverse, and only then creates the flow; a TCP SYN skips both lookups and goes
//! straight to the insert. Counters are atomic. The entry caches
//! the flow's list verdict with the generation it was computed for, so an established flow
//! pays one lookup until the lists change.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use agent_common::{
    event_kind, family, flow_flags, verdict, Counter, FlowKey, FlowKey4, FlowValue, DIR_ORIG,
    DIR_RESP, NO_RULE,
};
use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST},
    helpers::{bpf_ktime_get_ns, generated::bpf_ktime_get_coarse_ns},
    macros::map,
    maps::LruHashMap,
    programs::XdpContext,
};

use crate::{
    dns, events,
    parse::{Header, Packet},
    stats, verdict as lists,
};

/// IPv6 flows. Default size; the loader sets the real one (`--flow-table-size`).
#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(65536, 0);

/// IPv4 flows, under a 20-byte key: the kernel hashes and compares keys byte by byte, and a
/// 48-byte key cost more than all the rest of an established packet's path.
#[map(name = "FLOWS4")]
static FLOWS4: LruHashMap<FlowKey4, FlowValue> = LruHashMap::with_max_entries(65536, 0);

/// The entry of `key` in the table of its family.
#[inline(always)]
fn lookup(key: &FlowKey) -> Option<*mut FlowValue> {
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

const EEXIST: i32 = 17;

/// Adds `n` to a counter shared across CPUs.
#[inline(always)]
pub fn add(counter: &mut u64, n: u64) {
    // SAFETY: `counter` points into a map value, 8-byte aligned and live for this run. The
    // BPF target has no `AtomicU64::fetch_add`; the intrinsic lowers to BPF's atomic add.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, n) };
}

#[inline(always)]
fn reverse(key: &mut FlowKey) {
    core::mem::swap(&mut key.addr_a, &mut key.addr_b);
    core::mem::swap(&mut key.port_a, &mut key.port_b);
}

/// CLOCK_MONOTONIC in ns, exact. Costs several times the coarse clock on virtual machines,
/// so only flow creation and closing read it.
#[inline(always)]
fn precise_now() -> u64 {
    // SAFETY: a helper call with no arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// CLOCK_MONOTONIC_COARSE in ns: the same clock at the kernel tick's resolution (1-4 ms),
/// for the per-packet `last_seen_ns`.
#[inline(always)]
fn coarse_now() -> u64 {
    // SAFETY: a helper call with no arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Counts one packet in its flow (creating the flow on its first packet) and returns the
/// XDP action of the flow's cached list verdict. `p.key` is left in the flow's orientation.
#[inline(always)]
pub fn account(ctx: &XdpContext, p: &mut Packet) -> u32 {
    let gen = lists::generation();
    // A SYN goes straight to the insert, which finds a retransmitted SYN's flow by itself:
    // each lookup that misses is a cache miss in a large table, the most a new flow costs.
    // (A simultaneous open, where the other side's SYN made the flow first, gets an entry
    // of its own.)
    if p.opens_flow() {
        return create(ctx, p, gen);
    }
    if let Some(v) = lookup(&p.key) {
        // SAFETY: the entry stays valid for this run of the program; counters are atomic and
        // the other fields tolerate a lost race (last writer wins on timestamps and flags).
        return update(&p.key, unsafe { &mut *v }, p, DIR_ORIG, gen);
    }
    reverse(&mut p.key);
    if let Some(v) = lookup(&p.key) {
        // SAFETY: as above.
        return update(&p.key, unsafe { &mut *v }, p, DIR_RESP, gen);
    }
    reverse(&mut p.key);
    create(ctx, p, gen)
}

#[inline(always)]
fn update(key: &FlowKey, v: &mut FlowValue, p: &Packet, dir: usize, gen: u32) -> u32 {
    add(&mut v.packets[dir], 1);
    add(&mut v.bytes[dir], p.len);
    // The coarse clock lags the precise one that stamped the flow's creation by up to a
    // tick: never move last_seen backwards (and skip the store when it would not change).
    let now = coarse_now();
    if now > v.last_seen_ns {
        v.last_seen_ns = now;
    }
    if p.tcp_flags & !v.tcp_flags[dir] != 0 {
        v.tcp_flags[dir] |= p.tcp_flags;
    }
    if p.closes_flow() && v.end_seen_ns == 0 {
        let now = precise_now();
        v.end_seen_ns = now;
        if now > v.last_seen_ns {
            v.last_seen_ns = now;
        }
        v.flags |= if p.is_rst() {
            flow_flags::RST_SEEN
        } else {
            flow_flags::FIN_SEEN
        };
        if events::emit(event_kind::FLOW_END, NO_RULE, key, v, Counter::LostFlowEnd) {
            v.flags |= flow_flags::END_ANNOUNCED;
        }
    }
    if v.verdict_gen != gen {
        let (verdict, rule) = lists::of(key);
        v.verdict = verdict;
        v.rule = rule;
        v.verdict_gen = gen;
    }
    judge(key, v)
}

/// Applies the flow's cached verdict to this packet.
#[inline(always)]
fn judge(key: &FlowKey, v: &mut FlowValue) -> u32 {
    if v.rule != NO_RULE {
        lists::hit(v.rule);
    }
    if v.verdict == verdict::DROP {
        drop_packet(key, v, v.rule, Counter::DroppedByList);
        return xdp_action::XDP_DROP;
    }
    xdp_action::XDP_PASS
}

/// The DNS name check of a packet its flow's verdict passed. One call site, after the flow
/// path: the name walk is the costliest code for the verifier to prove.
#[inline(always)]
pub fn judge_dns(ctx: &XdpContext, p: &Packet) -> u32 {
    let Some(rule) = dns::blocked_query(ctx, p.dns_off) else {
        return xdp_action::XDP_PASS;
    };
    lists::hit(rule);
    match lookup(&p.key) {
        // SAFETY: as in `account`.
        Some(v) => drop_packet(&p.key, unsafe { &mut *v }, rule, Counter::DroppedByDomain),
        None => stats::bump(Counter::DroppedByDomain),
    }
    xdp_action::XDP_DROP
}

/// Counts a dropped packet on its flow; the flow's first drop is announced with its rule.
#[inline(always)]
fn drop_packet(key: &FlowKey, v: &mut FlowValue, rule: u32, counter: Counter) {
    stats::bump(counter);
    // Racing CPUs may both see zero and both announce: the agent keeps the first.
    let first = v.drops == 0;
    add(&mut v.drops, 1);
    if first && events::emit(event_kind::FLOW_DROP, rule, key, v, Counter::LostFlowDrop) {
        v.flags |= flow_flags::START_ANNOUNCED;
    }
}

/// Cold, but inlined: passing the context to a BPF subprogram loses the verifier's packet
/// pointer types. The entry is inserted already marked as announced and the announcement
/// (its start, or its first drop) follows, so creating a flow costs one table operation and
/// no second lookup.
#[inline(always)]
fn create(ctx: &XdpContext, p: &Packet, gen: u32) -> u32 {
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
    let (verdict, rule) = lists::of(&p.key);
    let dropped = verdict == verdict::DROP;
    let mut value: FlowValue = crate::zeroed();
    value.first_seen_ns = now;
    value.last_seen_ns = now;
    value.end_seen_ns = end_seen_ns;
    value.packets[DIR_ORIG] = 1;
    value.bytes[DIR_ORIG] = p.len;
    value.tcp_flags[DIR_ORIG] = p.tcp_flags;
    value.flags = flags;
    value.verdict = verdict;
    value.verdict_gen = gen;
    value.rule = rule;
    value.drops = dropped as u64;
    // The parser already proved the Ethernet header is there.
    if let Some(eth) = Header::<12>::at(ctx, 0) {
        value.dst_mac = eth.get::<[u8; 6], 0>();
        value.src_mac = eth.get::<[u8; 6], 6>();
    }
    // Marked announced before the insert, so a won insert needs no lookup to mark it; the
    // announcement is written after the insert, so a retransmitted SYN (whose insert loses)
    // costs the ring buffer nothing; a full ring takes the mark back.
    value.flags |= flow_flags::START_ANNOUNCED;
    match insert(&p.key, &value, BPF_NOEXIST as u64) {
        Ok(()) => {
            // Announcements carry the entry as it was before the mark, as they always have.
            value.flags &= !flow_flags::START_ANNOUNCED;
            // A dropped first packet announces the flow through its drop event instead.
            let announced = if dropped {
                events::emit(
                    event_kind::FLOW_DROP,
                    rule,
                    &p.key,
                    &value,
                    Counter::LostFlowDrop,
                )
            } else {
                events::emit(
                    event_kind::FLOW_START,
                    NO_RULE,
                    &p.key,
                    &value,
                    Counter::LostFlowStart,
                )
            };
            if !announced {
                if let Some(v) = lookup(&p.key) {
                    // SAFETY: as in `account`; the sweeper records an unmarked flow itself.
                    unsafe { (*v).flags &= !flow_flags::START_ANNOUNCED };
                }
            }
        }
        // Another CPU created the flow between our lookup and insert, or this SYN is a
        // retransmit: count into the entry (its creator announced it).
        Err(e) if e == -EEXIST => {
            return match lookup(&p.key) {
                // SAFETY: as in `account`.
                Some(v) => update(&p.key, unsafe { &mut *v }, p, DIR_ORIG, gen),
                None => xdp_action::XDP_PASS,
            };
        }
        // Still enforce the lists on a flow the table could not hold.
        Err(_) => stats::bump(Counter::FlowInsertFailed),
    }
    if rule != NO_RULE {
        lists::hit(rule);
    }
    if dropped {
        stats::bump(Counter::DroppedByList);
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}
