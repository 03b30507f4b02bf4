//! The flow table: one LRU entry per conversation per interface. Both directions share an
//! entry (endpoints are stored in canonical order), counters are atomic, and only the first
//! packet of a flow pays for creating it.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use agent_common::{event_kind, flow_flags, Counter, FlowKey, FlowValue, DIR_ORIG, DIR_RESP};
use aya_ebpf::{bindings::BPF_NOEXIST, macros::map, maps::LruHashMap, programs::XdpContext};

use crate::{events, parse::Packet, stats};

/// Default size; the loader sets the real one (`--flow-table-size`).
#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(65536, 0);

const EEXIST: i32 = 17;

/// Whether the packet's source sorts before its destination: a total order on (address,
/// port) pairs that makes both directions of a conversation build the same key.
#[inline(always)]
fn src_is_a(p: &Packet) -> bool {
    let mut w = 0;
    while w < 4 {
        if p.src[w] != p.dst[w] {
            return p.src[w] < p.dst[w];
        }
        w += 1;
    }
    p.sport <= p.dport
}

#[inline(always)]
fn words_to_bytes(w: [u32; 4]) -> [u8; 16] {
    // SAFETY: same size, both plain integers.
    unsafe { core::mem::transmute(w) }
}

#[inline(always)]
fn key_of(ctx: &XdpContext, p: &Packet, a_is_src: bool) -> FlowKey {
    let (addr_a, port_a, addr_b, port_b) = if a_is_src {
        (p.src, p.sport, p.dst, p.dport)
    } else {
        (p.dst, p.dport, p.src, p.sport)
    };
    FlowKey {
        ifindex: ctx.ingress_ifindex() as u32,
        vlan: p.vlan[0],
        vlan_inner: p.vlan[1],
        proto: p.proto,
        family: p.family,
        _pad: [0; 2],
        port_a,
        port_b,
        addr_a: words_to_bytes(addr_a),
        addr_b: words_to_bytes(addr_b),
    }
}

#[inline(always)]
fn add(counter: &mut u64, n: u64) {
    // SAFETY: `counter` points into a map value, 8-byte aligned and live for this run. The
    // BPF target has no `AtomicU64::fetch_add`; the intrinsic lowers to BPF's atomic add.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, n) };
}

/// Counts one packet in its flow, creating the flow on its first packet.
#[inline(always)]
pub fn account(ctx: &XdpContext, p: &Packet, now: u64) {
    let a_is_src = src_is_a(p);
    let key = key_of(ctx, p, a_is_src);
    if let Some(v) = FLOWS.get_ptr_mut(&key) {
        // SAFETY: the entry stays valid for this run of the program; counters are atomic and
        // the other fields tolerate a lost race (last writer wins on timestamps and flags).
        update(&key, unsafe { &mut *v }, p, a_is_src, now);
        return;
    }
    create(&key, p, a_is_src, now);
}

#[inline(always)]
fn update(key: &FlowKey, v: &mut FlowValue, p: &Packet, a_is_src: bool, now: u64) {
    let orig_is_b = v.flags & flow_flags::ORIG_IS_B != 0;
    let dir = if a_is_src != orig_is_b {
        DIR_ORIG
    } else {
        DIR_RESP
    };
    add(&mut v.packets[dir], 1);
    add(&mut v.bytes[dir], p.len);
    v.last_seen_ns = now;
    if p.tcp_flags & !v.tcp_flags[dir] != 0 {
        v.tcp_flags[dir] |= p.tcp_flags;
    }
    if p.closes_flow() && v.end_seen_ns == 0 {
        v.end_seen_ns = now;
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

#[cold]
#[inline(never)]
fn create(key: &FlowKey, p: &Packet, a_is_src: bool, now: u64) {
    let mut flags = if a_is_src { 0 } else { flow_flags::ORIG_IS_B };
    let mut end_seen_ns = 0;
    if p.closes_flow() {
        end_seen_ns = now;
        flags |= if p.is_rst() {
            flow_flags::RST_SEEN
        } else {
            flow_flags::FIN_SEEN
        };
    }
    let value = FlowValue {
        first_seen_ns: now,
        last_seen_ns: now,
        end_seen_ns,
        packets: [1, 0],
        bytes: [p.len, 0],
        src_mac: p.src_mac,
        dst_mac: p.dst_mac,
        tcp_flags: [p.tcp_flags, 0],
        flags: flags | flow_flags::START_ANNOUNCED,
        _pad: [0; 7],
    };
    match FLOWS.insert(key, &value, BPF_NOEXIST as u64) {
        Ok(()) => {
            if !events::emit(event_kind::FLOW_START, key, &value, Counter::LostFlowStart) {
                if let Some(v) = FLOWS.get_ptr_mut(key) {
                    // SAFETY: as in `account`.
                    unsafe { (*v).flags &= !flow_flags::START_ANNOUNCED };
                }
            }
        }
        // Another CPU created the flow between our lookup and insert: count into its entry.
        Err(e) if e == -EEXIST => {
            if let Some(v) = FLOWS.get_ptr_mut(key) {
                // SAFETY: as in `account`.
                update(key, unsafe { &mut *v }, p, a_is_src, now);
            }
        }
        Err(_) => stats::bump(Counter::FlowInsertFailed),
    }
}
