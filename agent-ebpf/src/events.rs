//! Ring-buffer events: one record per flow event, never per packet. A failed reserve is
//! counted by kind, and the flow entry remembers whether its event went out, so the agent's
//! sweeper can tell which flows the ring buffer lost.

use agent_common::{Counter, FlowEvent, FlowKey, FlowValue};
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::map,
    maps::RingBuf,
};

use crate::stats;

/// Default size; the loader sets the real one (`--ringbuf-bytes`).
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

/// Pending bytes at which a submit wakes the agent; set by the loader to a quarter of the ring.
/// Below it events are submitted silently and the agent drains them on a short timer: a
/// wake-up per event costs several times the rest of a new flow's path.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1 << 22;

/// Writes one event; returns whether it reached the ring buffer (the loss is counted if not).
/// `value` is a flow entry other CPUs may be updating (or a local one): it is copied as it
/// stands, through the raw pointer.
#[inline(always)]
pub fn emit(kind: u8, rule: u32, key: &FlowKey, value: *const FlowValue, lost: Counter) -> bool {
    let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) else {
        stats::bump(lost);
        return false;
    };
    // Field by field into the reservation: building the event on the stack first would cost
    // 136 bytes of the program's 512-byte stack.
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points to a reserved, writable FlowEvent-sized slot; `value` to a live,
    // aligned FlowValue (a map value or the caller's local).
    unsafe {
        // Kind, padding and rule as one word (a byte-array store becomes a memset).
        (ev as *mut u64).write(kind as u64 | (rule as u64) << 32);
        (*ev).key = *key;
        // Straight from the entry into the reservation, through the raw pointers: a copy via
        // a temporary would become a `memmove` (the two may overlap, as far as LLVM knows),
        // which the BPF backend emits as a byte loop the verifier gives up on.
        core::ptr::copy_nonoverlapping(value, core::ptr::addr_of_mut!((*ev).value), 1);
    }
    entry.submit(wakeup());
    true
}

/// The submit flag for an event just reserved: wake the agent only when the backlog crosses
/// a multiple of the threshold, so once per quarter ring, not once per event while the
/// agent catches up (a wake-up is a self-IPI, several times the cost of the rest of a new
/// flow on a VM).
#[inline(always)]
fn wakeup() -> u64 {
    // SAFETY: a read of a load-time constant; volatile so it is not folded.
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) };
    let after = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let before = after.saturating_sub(agent_common::RING_RECORD_BYTES as u64);
    let flag = if threshold != 0 && after / threshold != before / threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    flag as u64
}
