//! The flow table: one LRU entry per conversation per interface, keyed in the orientation of
//! the packet that opened it (`a` = originator). A packet first looks up its own orientation
//! (the only lookup on a gateway interface, where each flow ingresses one way); on a miss it
//! tries the reverse, and only then creates the flow. Counters are atomic.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use agent_common::{event_kind, flow_flags, Counter, FlowKey, FlowValue, DIR_ORIG, DIR_RESP};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_ns, generated::bpf_ktime_get_coarse_ns},
    macros::map,
    maps::LruHashMap,
    programs::XdpContext,
};

use crate::{
    events,
    parse::{Header, Packet},
    stats,
};

/// Default size; the loader sets the real one (`--flow-table-size`).
#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(65536, 0);

const EEXIST: i32 = 17;

#[inline(always)]
fn add(counter: &mut u64, n: u64) {
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

/// Counts one packet in its flow, creating the flow on its first packet.
#[inline(always)]
pub fn account(ctx: &XdpContext, p: &mut Packet) {
    if let Some(v) = FLOWS.get_ptr_mut(&p.key) {
        // SAFETY: the entry stays valid for this run of the program; counters are atomic and
        // the other fields tolerate a lost race (last writer wins on timestamps and flags).
        update(&p.key, unsafe { &mut *v }, p, DIR_ORIG);
        return;
    }
    reverse(&mut p.key);
    if let Some(v) = FLOWS.get_ptr_mut(&p.key) {
        // SAFETY: as above.
        update(&p.key, unsafe { &mut *v }, p, DIR_RESP);
        return;
    }
    reverse(&mut p.key);
    create(ctx, p, precise_now());
}

#[inline(always)]
fn update(key: &FlowKey, v: &mut FlowValue, p: &Packet, dir: usize) {
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
        if events::emit(event_kind::FLOW_END, key, v, Counter::LostFlowEnd) {
            v.flags |= flow_flags::END_ANNOUNCED;
        }
    }
}

/// Cold, but inlined: passing the context to a BPF subprogram loses the verifier's packet
/// pointer types.
#[inline(always)]
fn create(ctx: &XdpContext, p: &Packet, now: u64) {
    let mut flags = flow_flags::START_ANNOUNCED;
    let mut end_seen_ns = 0;
    if p.closes_flow() {
        end_seen_ns = now;
        flags |= if p.is_rst() {
            flow_flags::RST_SEEN
        } else {
            flow_flags::FIN_SEEN
        };
    }
    let mut value: FlowValue = crate::zeroed();
    value.first_seen_ns = now;
    value.last_seen_ns = now;
    value.end_seen_ns = end_seen_ns;
    value.packets[DIR_ORIG] = 1;
    value.bytes[DIR_ORIG] = p.len;
    value.tcp_flags[DIR_ORIG] = p.tcp_flags;
    value.flags = flags;
    // The parser already proved the Ethernet header is there.
    if let Some(eth) = Header::<12>::at(ctx, 0) {
        value.dst_mac = eth.get::<[u8; 6], 0>();
        value.src_mac = eth.get::<[u8; 6], 6>();
    }
    match FLOWS.insert(&p.key, &value, BPF_NOEXIST as u64) {
        Ok(()) => {
            if !events::emit(
                event_kind::FLOW_START,
                &p.key,
                &value,
                Counter::LostFlowStart,
            ) {
                if let Some(v) = FLOWS.get_ptr_mut(&p.key) {
                    // SAFETY: as in `account`.
                    unsafe { (*v).flags &= !flow_flags::START_ANNOUNCED };
                }
            }
        }
        // Another CPU created the flow between our lookup and insert: count into its entry.
        Err(e) if e == -EEXIST => {
            if let Some(v) = FLOWS.get_ptr_mut(&p.key) {
                // SAFETY: as in `account`.
                update(&p.key, unsafe { &mut *v }, p, DIR_ORIG);
            }
        }
        Err(_) => stats::bump(Counter::FlowInsertFailed),
    }
}
