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
    flood::{register_of, source_hash, FloodConfig, FloodTotal, FloodValue, TOP_SOURCES},
    rules::{rule_id, RuleId},
    Counter,
};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
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

/// Whether a blocked new flow of `rule` (`len` bytes from `src`, at `now`) may be recorded:
/// `true` spends one unit of both budgets; `false` has summarised the packet, which the
/// caller drops without creating its flow. A rule's summary that cannot be created (the
/// table is full) leaves the packet counted in [`Counter::FloodUntracked`] alone.
/// Inlined: a BPF-to-BPF call in a program that tail-calls limits every frame to 256 bytes.
#[inline(always)]
pub fn admit(rule: RuleId, len: u64, src: &[u32; 4], now: u64) -> bool {
    let Some(cfg) = FLOOD_CONFIG.get(0) else {
        return true;
    };
    let (window, per_rule, total) = (cfg.window, u64::from(cfg.per_rule), u64::from(cfg.total));
    if per_rule == 0 && total == 0 {
        return true;
    }
    let rule = rule_id(rule);
    let Some(e) = entry(&rule) else {
        stats::bump(Counter::FloodUntracked);
        return false;
    };
    // SAFETY: both are this CPU's own map values, live for this run.
    unsafe {
        let spent_all = match FLOOD_TOTAL.get_ptr_mut(0) {
            Some(t) => {
                if (*t).window != window {
                    (*t).window = window;
                    (*t).spent = 0;
                }
                Some(t)
            }
            None => None,
        };
        let rule_ok = per_rule == 0 || (*e).recorded < per_rule;
        let total_ok = total == 0 || spent_all.is_none_or(|t| (*t).spent < total);
        if rule_ok && total_ok {
            (*e).recorded += 1;
            if let Some(t) = spent_all {
                (*t).spent += 1;
            }
            return true;
        }
        summarise(&mut *e, len, src, now);
    }
    stats::bump(Counter::DroppedSummarised);
    false
}

/// Counts one stateless drop in a rule's summary.
#[inline(always)]
fn summarise(e: &mut FloodValue, len: u64, src: &[u32; 4], now: u64) {
    e.packets += 1;
    e.bytes += len;
    if e.first_ns == 0 {
        e.first_ns = now;
    }
    e.last_ns = now;
    let (index, rank) = register_of(source_hash(src));
    if let Some(r) = e.sources.get_mut(index) {
        if *r < rank {
            *r = rank;
        }
    }
    // Space-saving heavy hitters: the source's slot counts up; a new source takes the
    // smallest slot over, with its count plus one.
    let mut smallest = 0;
    let mut least = u64::MAX;
    let mut i = 0;
    while i < TOP_SOURCES {
        let s = &mut e.top[i];
        if s.packets != 0
            && s.addr[0] == src[0]
            && s.addr[1] == src[1]
            && s.addr[2] == src[2]
            && s.addr[3] == src[3]
        {
            s.packets += 1;
            return;
        }
        if s.packets < least {
            least = s.packets;
            smallest = i;
        }
        i += 1;
    }
    if let Some(s) = e.top.get_mut(smallest) {
        s.addr = *src;
        s.packets = least + 1;
    }
}
