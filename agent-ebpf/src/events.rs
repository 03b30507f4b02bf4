//! Ring-buffer events: one record per flow event, never per packet, and the payload copies
//! of the packets [`crate::payload`] picked. A failed reserve is counted by kind, and the
//! flow entry remembers whether its event went out, so the agent's sweeper can tell which
//! flows the ring buffer lost.

use agent_common::{
    event_kind,
    payload::{ring_bytes, PayloadEvent, SNIPPET_MAX, SNIPPET_MEDIUM, SNIPPET_SMALL},
    Counter, FlowEvent, FlowKey, FlowValue, RING_RECORD_BYTES,
};
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_ktime_get_ns, generated::bpf_xdp_load_bytes},
    macros::map,
    maps::RingBuf,
    programs::XdpContext,
};

use crate::{parse::Header, stats};

/// A packet whose payload is to be copied: where the bytes are and what the event says.
pub struct Snip {
    /// Offset of the payload in the frame.
    pub off: u32,
    /// Payload bytes present in the frame (never past the IP packet's end); at least 1.
    pub avail: u32,
    /// TCP: the sequence number of the first payload byte.
    pub seq: u32,
    /// TCP, when `flags` has START_KNOWN: the stream's first sequence number.
    pub stream_start: u32,
    /// The payload's length by the packet's own headers.
    pub payload_len: u16,
    /// [`agent_common::DIR_ORIG`] or [`agent_common::DIR_RESP`].
    pub dir: u8,
    /// Copies the flow has left in this direction after this one.
    pub left: u8,
    /// [`agent_common::payload::payload_flags`] bits.
    pub flags: u8,
    /// [`agent_common::payload::PayloadHead::blocked_name`].
    pub blocked_name: u16,
}

/// Default size; the loader sets the real one (`--ringbuf-bytes`).
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

/// Pending bytes at which a submit wakes the agent; set by the loader to a quarter of the ring.
/// Below it events are submitted silently and the agent drains them on a short timer: a
/// wake-up per event costs several times the rest of a new flow's path.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1 << 22;

/// Writes one event; returns whether it reached the ring buffer (the loss is counted if not).
/// `value` is a flow entry other CPUs may be updating (or a new one's, built in this CPU's
/// slot): it is copied as it stands, through the raw pointer.
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
    // aligned FlowValue (a map value).
    unsafe {
        // Kind, padding and rule as one word (a byte-array store becomes a memset).
        (ev as *mut u64).write(kind as u64 | (rule as u64) << 32);
        (*ev).key = *key;
        // Straight from the entry into the reservation, through the raw pointers: a copy via
        // a temporary would become a `memmove` (the two may overlap, as far as LLVM knows),
        // which the BPF backend emits as a byte loop the verifier gives up on.
        core::ptr::copy_nonoverlapping(value, core::ptr::addr_of_mut!((*ev).value), 1);
    }
    entry.submit(wakeup(RING_RECORD_BYTES));
    true
}

/// Copies the payload `s` of this packet of flow `key` into a ring record of the smallest
/// class that holds it (at most [`SNIPPET_MAX`] bytes), and counts the copy or its loss.
#[inline(always)]
pub fn payload(ctx: &XdpContext, key: &FlowKey, s: &Snip) {
    let cap = if s.avail as usize > SNIPPET_MAX {
        SNIPPET_MAX
    } else {
        s.avail as usize
    };
    let copied = if cap <= SNIPPET_SMALL {
        copy::<SNIPPET_SMALL>(ctx, key, s, cap)
    } else if cap <= SNIPPET_MEDIUM {
        copy::<SNIPPET_MEDIUM>(ctx, key, s, cap)
    } else {
        copy::<SNIPPET_MAX>(ctx, key, s, cap)
    };
    stats::bump(if copied {
        Counter::PayloadCopied
    } else {
        Counter::LostPayload
    });
}

/// One payload record of class `N` holding `cap` (1..=N) bytes.
#[inline(always)]
fn copy<const N: usize>(ctx: &XdpContext, key: &FlowKey, s: &Snip, cap: usize) -> bool {
    let Some(mut entry) = EVENTS.reserve::<PayloadEvent<N>>(0) else {
        return false;
    };
    // Through black_box so the bounds check stays next to the helper call, where the
    // verifier needs to see the length in 1..=N.
    let len = core::hint::black_box(cap);
    let eth = Header::<12>::at(ctx, 0);
    let (Some(eth), true) = (eth, len != 0 && len <= N) else {
        entry.discard(0);
        return false;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points to a reserved, writable record of class N; every store is inside
    // it, and the copy writes `len` <= N bytes into its N-byte data.
    let loaded = unsafe {
        let head = core::ptr::addr_of_mut!((*ev).head);
        // The head's first eight bytes as one word (byte stores become a memset).
        (head as *mut u64).write(
            event_kind::PAYLOAD as u64
                | (s.dir as u64) << 8
                | (s.flags as u64) << 16
                | (s.left as u64) << 24
                | (len as u64) << 32
                | (s.payload_len as u64) << 48,
        );
        (*head).ts_ns = bpf_ktime_get_ns();
        (*head).seq = s.seq;
        (*head).stream_start = s.stream_start;
        (*head).key = *key;
        // Destination and source MAC as the Ethernet header has them, then the blocked
        // name's offset and the padding.
        let macs = core::ptr::addr_of_mut!((*head).dst_mac) as *mut u32;
        macs.write(eth.get::<u32, 0>());
        macs.add(1).write(eth.get::<u32, 4>());
        macs.add(2).write(eth.get::<u32, 8>());
        macs.add(3).write(u32::from(s.blocked_name));
        bpf_xdp_load_bytes(
            ctx.ctx,
            s.off,
            core::ptr::addr_of_mut!((*ev).data).cast(),
            len as u32,
        )
    };
    if loaded != 0 {
        entry.discard(0);
        return false;
    }
    entry.submit(wakeup(ring_bytes(N)));
    true
}

/// The submit flag for an event of `record_bytes` (ring space) just reserved: wake the agent
/// only when the backlog crosses a multiple of the threshold, so once per quarter ring, not
/// once per event while the agent catches up (a wake-up is a self-IPI, several times the cost
/// of the rest of a new flow on a VM).
#[inline(always)]
fn wakeup(record_bytes: usize) -> u64 {
    // SAFETY: a read of a load-time constant; volatile so it is not folded.
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) };
    let after = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let before = after.saturating_sub(record_bytes as u64);
    let flag = if threshold != 0 && after / threshold != before / threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    flag as u64
}
