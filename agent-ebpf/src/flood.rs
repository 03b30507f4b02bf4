//! Flood-proof drops ([`agent_common::flood`]): a blocked packet that would create a flow
//! first asks [`admit`]. While its rule's budget and the global one last on this CPU, it
//! spends one unit of each and its flow is created and its first drop recorded as always;
//! past either, it is summarised in its rule's per-CPU [`FloodValue`] (packets, bytes,
//! first/last time, a distinct-source sketch, the top sources) and dropped without a flow or
//! a ring event, so a flood of spoofed sources buys no per-flow work.
//!
//! Every value here is this CPU's own (per-CPU maps, and XDP runs with preemption off), so
//! plain loads, stores and adds. A rule's summary is a slot of `FLOOD_SLOTS` found from its
//! dense id through `FLOOD_RULES` (two inlined array reads, no hash lookup and no insert);
//! the agent reads the slots of the window that ended while this fills the other half.

use agent_common::{
    flood::{
        first_slot, raises, register_index, register_of, source_hash, stamp, FloodConfig,
        FloodTotal, FloodValue, SKETCH_BITS, SLOTS, TOP_SOURCES,
    },
    rules::{RuleId, REFUSE},
    Counter, NO_RULE,
};
use aya_ebpf::{
    helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::map,
    maps::{Array, PerCpuArray},
};

use core::ptr::read_volatile;

use crate::{parse::Packet, stats};

/// Default capacity of [`FLOOD_RULES`]; the loader sizes it as `RULE_HITS`.
const CAP: u32 = 1 << 16;

/// The budgets and the window, written by the agent.
#[map(name = "FLOOD_CONFIG")]
static FLOOD_CONFIG: Array<FloodConfig> = Array::with_max_entries(1, 0);

/// This CPU's spending of the global budget and its slots handed out.
#[map(name = "FLOOD_TOTAL")]
static FLOOD_TOTAL: PerCpuArray<FloodTotal> = PerCpuArray::with_max_entries(1, 0);

/// The summary slot each rule last took on this CPU, by dense rule id.
#[map(name = "FLOOD_RULES")]
static FLOOD_RULES: PerCpuArray<u32> = PerCpuArray::with_max_entries(CAP, 0);

/// Summaries: [`SLOTS`] per window, the even windows' first, then the odd ones'.
#[map(name = "FLOOD_SLOTS")]
static FLOOD_SLOTS: PerCpuArray<FloodValue> = PerCpuArray::with_max_entries(2 * SLOTS, 0);

/// This CPU's summary of `rule` in the window `t` is in: the slot `FLOOD_RULES` names while
/// it carries the rule and the window's stamp, else a slot [`take`]n now.
///
/// The window is always `t`'s, never `FLOOD_CONFIG`'s again: the agent moves that one
/// whenever it likes, and a second read of it in one run took a slot of the next window's
/// half before `admit` had cleared that half's count, losing a window's summaries.
///
/// # Safety
/// `t` is this CPU's `FLOOD_TOTAL` value, its window set by [`admit`] in this run.
#[inline(always)]
unsafe fn entry(rule: RuleId, t: *mut FloodTotal) -> Option<*mut FloodValue> {
    // A copy of the slot number, not a pointer kept across the next lookup: the subprogram's
    // frame (at most 32 bytes) holds the lookup key and two spilled values.
    let slot = *FLOOD_RULES.get(rule)?;
    if let Some(e) = FLOOD_SLOTS.get_ptr_mut(slot) {
        // SAFETY: this CPU's own map value, live for this run.
        if unsafe { (*e).stamp == stamp(read_volatile(&(*t).window)) && (*e).rule == rule } {
            return Some(e);
        }
    }
    // SAFETY: upheld by the caller.
    unsafe { take(rule, t) }
}

/// Takes the window's next free slot for `rule`, cleared (with stores: the stack has no room
/// for a copy), and names it in `FLOOD_RULES`; `None` when the window's slots are all taken.
/// The slot's number is recomputed from the count rather than kept, for the frame's sake.
///
/// # Safety
/// As [`entry`].
#[inline(always)]
unsafe fn take(rule: RuleId, t: *mut FloodTotal) -> Option<*mut FloodValue> {
    // SAFETY: `t` as the caller upholds.
    let window = unsafe { read_volatile(&(*t).window) };
    let half = (window & 1) as usize;
    // SAFETY: `t` as the caller upholds; the slots are this CPU's own map values; `half` is
    // 0 or 1.
    unsafe {
        let used = (*t).used.get_mut(half)?;
        if *used >= SLOTS {
            return None;
        }
        *used += 1;
        let e = FLOOD_SLOTS.get_ptr_mut(first_slot(window) + *used - 1)?;
        zero(e);
        // Re-read (volatile: not kept in a register across the lookups).
        let window = read_volatile(&(*t).window);
        (*e).rule = rule;
        (*e).stamp = stamp(window);
        let at = FLOOD_RULES.get_ptr_mut(rule)?;
        let window = read_volatile(&(*t).window);
        let used = read_volatile(&(*t).used[(window & 1) as usize]);
        *at = first_slot(window) + used.wrapping_sub(1);
        Some(e)
    }
}

/// Clears a summary in place, word by word.
///
/// # Safety
/// `e` is a live, 8-aligned map value.
#[inline(always)]
unsafe fn zero(e: *mut FloodValue) {
    let words = e as *mut u64;
    let mut i = 0;
    while i < core::mem::size_of::<FloodValue>() / 8 {
        // SAFETY: within the value, as the caller upholds.
        unsafe { words.add(i).write_volatile(0) };
        i += 1;
    }
}

/// Whether a blocked new flow of `rule` (its first packet `p`) may be recorded:
/// `true` spends one unit of both budgets; `false` has summarised the packet, which the
/// caller drops without creating its flow. A rule's summary that cannot be created (the
/// window's slots are all taken, or its id is past `FLOOD_RULES`) leaves the packet counted
/// in [`Counter::FloodUntracked`] alone.
/// A BPF subprogram, not inlined: inlined, `create` (and the rest of the path after it) was
/// walked by the verifier once per way this can return (846,000 instructions, over the
/// guard in `agent/tests/payload.rs`); the call costs a few ns on the blocked new-flow path
/// only. Its frame and the program's share the 512-byte stack: keep it within 32 bytes (the
/// packet is passed as one pointer, not its length and source, and the slot code re-reads
/// what it can rather than keep it: each value kept past a map lookup beyond the four
/// callee-saved registers is a spilled stack slot).
#[inline(never)]
pub fn admit(rule: RuleId, p: &Packet) -> bool {
    // Few branches: the verifier walks this once per call site and way through.
    let Some(cfg) = FLOOD_CONFIG.get(0) else {
        return true;
    };
    let Some(t) = FLOOD_TOTAL.get_ptr_mut(0) else {
        return true;
    };
    // The refusal bit off (a blocked flow always has a rule).
    let rule = rule & !REFUSE;
    // SAFETY: both are this CPU's own map values, live for this run.
    unsafe {
        // Read once: the agent moves it meanwhile (see `entry`).
        let window = read_volatile(&cfg.window);
        if (*t).window != window {
            (*t).window = window;
            (*t).spent = 0;
            // The slots of this window's half were the agent's to read two windows ago.
            if let Some(u) = (*t).used.get_mut((window & 1) as usize) {
                *u = 0;
            }
        }
        let Some(e) = entry(rule, t) else {
            // No rule's slot: an IPv6 packet dropped for a transport header past the walk
            // (`NO_RULE`, its top bit taken off above) spends the global budget alone, so it
            // too is recorded.
            if rule == NO_RULE & !REFUSE && (*t).spent < u64::from(cfg.total) {
                (*t).spent += 1;
                return true;
            }
            stats::bump(Counter::FloodUntracked);
            return false;
        };
        // "No limit" is u32::MAX, out of reach within a window.
        if (*e).recorded < cfg.per_rule && (*t).spent < u64::from(cfg.total) {
            (*e).recorded += 1;
            (*t).spent += 1;
            return true;
        }
        summarise(&mut *e, p.len, &p.key.addr_a);
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
    if let Some(r) = e.sources.get_mut(register_index(h)) {
        // The rank (leading zeros, a long expansion in BPF) is counted only when it raises
        // the register: for one source in 2^register.
        if raises(h, *r) {
            *r = register_of(h).1;
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
