//! The xdp-audit XDP program.
//!
//! Per packet, top to bottom: `parse` the headers into a [`parse::Packet`], bump one `stats`
//! outcome counter, account it in the `flow` table (which emits ring-buffer `events` for flow
//! start, end and first drop, applies the flow's cached `verdict` and spends its `payload`
//! budget), and return PASS or DROP; a DNS query, or a packet with budget left, that passes
//! goes by tail call to the slow path, [`xdp_audit_payload`] (the `dns` name check and the
//! payload copy), which returns for it. The parser never drops: whatever it cannot read is
//! passed and counted by reason; only a list rule drops, and the payload copy never changes
//! the verdict.
#![no_std]
#![no_main]
// Atomic counter adds: core's AtomicU64 has no fetch_add on the BPF target.
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Map keys are passed by reference on purpose: by value would copy 48 bytes of stack.
#![allow(clippy::needless_borrows_for_generic_args)]

mod rt;

mod dns;
mod events;
mod flow;
mod parse;
mod payload;
mod refuse;
mod stats;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// Entry point, attached to every audited interface.
#[xdp]
pub fn xdp_audit(ctx: XdpContext) -> u32 {
    match parse::parse(&ctx) {
        Ok(mut pkt) => {
            pkt.key.ifindex = ctx.ingress_ifindex() as u32;
            // Counted first: the outcome is the parser's, and a value the verifier no longer
            // has to carry through the flow table.
            stats::bump(pkt.outcome);
            let dns = pkt.dns_off != 0;
            let (action, bits) = flow::account(&ctx, &mut pkt);
            // Only what passes goes on: a dropped packet reached no one, and a flood of
            // blocked traffic must not fill the ring with payloads.
            if action == xdp_action::XDP_PASS && (dns || payload::copy_due(bits)) {
                payload::hand_over(&ctx, bits);
            }
            action
        }
        Err(reason) => {
            stats::bump(reason);
            xdp_action::XDP_PASS
        }
    }
}

/// An all-zero `T`, written as volatile `u64` stores. A plain zero initialiser is merged by
/// LLVM into a `memset` that the BPF backend emits as an out-of-line byte loop: two of those
/// cost more than the rest of the parser.
#[inline(always)]
pub fn zeroed<T: Copy>() -> T {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() == 8) };
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    let words = v.as_mut_ptr() as *mut u64;
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: in bounds of `v`, which is 8-aligned.
        unsafe { words.add(i).write_volatile(0) };
        i += 1;
    }
    // SAFETY: every byte was written; T is plain old data, valid all-zero.
    unsafe { v.assume_init() }
}

/// The slow path (`payload`): DNS name checks and payload copies, reached by tail call from
/// [`xdp_audit`] and verified on its own.
#[xdp]
pub fn xdp_audit_payload(ctx: XdpContext) -> u32 {
    payload::slow_path(&ctx)
}
