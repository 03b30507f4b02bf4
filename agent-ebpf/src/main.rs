//! The xdp-audit XDP program.
//!
//! Per packet ([`audit::packet`]), top to bottom: `parse` the headers into a [`parse::Packet`], bump one `stats`
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

mod ablate;
mod audit;
mod dns;
mod events;
mod flood;
mod flow;
mod mem;
mod parse;
mod payload;
mod refuse;
mod stats;
mod verdict;

use aya_ebpf::{macros::xdp, programs::XdpContext};

/// Entry point, attached to every audited interface.
#[xdp]
pub fn xdp_audit(ctx: XdpContext) -> u32 {
    audit::packet::<{ ablate::PRODUCTION }>(&ctx)
}

/// The slow path (`payload`): DNS name checks and payload copies, reached by tail call from
/// [`xdp_audit`] and verified on its own.
#[xdp]
pub fn xdp_audit_payload(ctx: XdpContext) -> u32 {
    payload::slow_path(&ctx)
}
