//! Flood-proof drops ([`agent_common::flood`]): a blocked packet that would create a flow
//! first asks [`admit`]. While its rule's budget and the global one last on this CPU, it
//! spends one unit of each and its flow is created and its first drop recorded as always;
//! past either, it is summarised in its rule's per-CPU [`FloodValue`] (packets, bytes,
//! first/last time, a distinct-source sketch, the top sources) and dropped without a flow or
//! a ring event, so a flood of spoofed sources buys no per-flow work.
//!
//! Every value here is this CPU's own (per-CPU maps, and XDP runs with preemption off), so
//! plain loads, stores and adds. The agent takes the summaries with lookup-and-delete once a
//! sweep: a packet counted on a CPU during that call may be lost with the deleted element.

use agent_common::{
    flood::{
        register_of, source_hash, FloodConfig, FloodTotal, FloodValue, SKETCH_BITS, TOP_SOURCES,
    },
    rules::{RuleId, REFUSE},
    Counter,
};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::map,
    maps::{Array, PerCpuArray, PerCpuHashMap},
};

use crate::stats;

/// The budgets and the window, written by the agent.
#[map(name = "FLOOD_CONFIG")]
static FLOOD_CONFIG: Array<FloodConfig> = Array::with_max_entries(1, 0);

/// This CPU's spending of the global budget.
#[map(name = "FLOOD_TOTAL")]
static FLOOD_TOTAL: PerCpuArray<FloodTotal> = PerCpuArray::with_max_entries(1, 0);

/// Per rule that dropped a new flow since the last sweep: its budget spent and its summary.
#[map(name = "FLOOD")]
static FLOOD: PerCpuHashMap<RuleId, FloodValue> = PerCpuHashMap::with_max_entries(4096, 0);

/// An all-zero summary, never written: the value a rule's entry is created with (the
/// program's stack has no room for 200 bytes more).
#[map(name = "FLOOD_ZERO")]
static FLOOD_ZERO: Array<FloodValue> = Array::with_max_entries(1, 0);

/// This CPU's summary entry of `rule`, created on its first blocked new flow.
#[inline(always)]
fn entry(rule: &RuleId) -> Option<*mut FloodValue> {
    if let Some(e) = FLOOD.get_ptr_mut(rule) {
        return Some(e);
    }
    let zero = FLOOD_ZERO.get(0)?;
    // A full table fails the insert; the lookup then misses and the caller counts it.
    let _ = FLOOD.insert(rule, zero, BPF_NOEXIST as u64);
    FLOOD.get_ptr_mut(rule)
}

/// Whether a blocked new flow of `rule` (`len` bytes from `src`) may be recorded:
/// `true` spends one unit of both budgets; `false` has summarised the packet, which the
/// caller drops without creating its flow. A rule's summary that cannot be created (the
/// table is full) leaves the packet counted in [`Counter::FloodUntracked`] alone.
/// A BPF subprogram, not inlined: inlined, `create` (and the rest of the path after it) was
/// walked by the verifier once per way this can return (846,000 instructions, over the
/// guard in `agent/tests/payload.rs`); the call costs a few ns on the blocked new-flow path
/// only. Its frame and the program's share the 512-byte stack: keep it within 32 bytes.
#[inline(never)]
pub fn admit(rule: RuleId, len: u64, src: &[u32; 4]) -> bool {
    // Few branches: the verifier walks this once per call site and way through.
    let Some(cfg) = FLOOD_CONFIG.get(0) else {
        return true;
    };
    let Some(t) = FLOOD_TOTAL.get_ptr_mut(0) else {
        return true;
    };
    // The refusal bit off (a blocked flow always has a rule).
    let rule = rule & !REFUSE;
    let Some(e) = entry(&rule) else {
        stats::bump(Counter::FloodUntracked);
        return false;
    };
    // SAFETY: both are this CPU's own map values, live for this run.
    unsafe {
        if (*t).window != cfg.window {
            (*t).window = cfg.window;
            (*t).spent = 0;
        }
        // "No limit" is u32::MAX, out of reach within a window.
        if (*e).recorded < cfg.per_rule && (*t).spent < u64::from(cfg.total) {
            (*e).recorded += 1;
            (*t).spent += 1;
            return true;
        }
        summarise(&mut *e, len, src);
    }
    stats::bump(Counter::DroppedSummarised);
    false
}

/// Counts one stateless drop in a rule's summary.
#[inline(always)]
fn summarise(e: &mut FloodValue, len: u64, src: &[u32; 4]) {
    e.packets += 1;
    e.bytes += len;
    // The coarse clock only moves at a kernel tick: the helper (26 ns of a summarised
    // packet) is called once per tick per rule; other packets compare the tick (an inlined
    // `bpf_jiffies64`, one load). Read here rather than passed in: the subprogram's frame
    // must stay within 32 bytes (the program's stack and this frame share 512).
    // SAFETY: helper calls with no arguments.
    let tick = unsafe { bpf_jiffies64() } as u32;
    if e.last_tick != tick || e.first_ns == 0 {
        // SAFETY: as above.
        let now = unsafe { bpf_ktime_get_coarse_ns() };
        e.last_tick = tick;
        if e.first_ns == 0 {
            e.first_ns = now;
        }
        e.last_ns = now;
    }
    let h = source_hash(src);
    let (index, rank) = register_of(h);
    if let Some(r) = e.sources.get_mut(index) {
        if *r < rank {
            *r = rank;
        }
    }
    // Heavy hitters without a loop (each branch of one multiplies the verifier's walk): the
    // source's hash picks one of the slots, which keeps a majority vote (Boyer-Moore): the
    // same source counts up, another counts down and takes the slot over at zero. A source
    // sending more than half of its slot's packets holds the slot at the end.
    if let Some(s) = e
        .top
        .get_mut((h >> SKETCH_BITS) as usize & (TOP_SOURCES - 1))
    {
        if s.addr[0] == src[0] && s.addr[1] == src[1] && s.addr[2] == src[2] && s.addr[3] == src[3]
        {
            s.packets += 1;
        } else if s.packets <= 1 {
            s.addr = *src;
            s.packets = 1;
        } else {
            s.packets -= 1;
        }
    }
}
