//! Per-CPU outcome and loss counters: nothing the program does to a packet goes uncounted.

use agent_common::Counter;
use aya_ebpf::{macros::map, maps::PerCpuArray};

#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Adds one to `counter` on this CPU. Per-CPU slots need no atomics.
#[inline(always)]
pub fn bump(counter: Counter) {
    if let Some(slot) = STATS.get_ptr_mut(counter as u32) {
        // SAFETY: the slot is this CPU's own and valid for the program's run.
        unsafe { *slot += 1 };
    }
}
