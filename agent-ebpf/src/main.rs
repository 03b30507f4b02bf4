//! The xdp-audit XDP program.
//!
//! Per packet, top to bottom: `parse` the headers into a [`parse::Packet`], account it in the
//! `flow` table (which emits ring-buffer `events` for flow start and end), bump one `stats`
//! outcome counter, and return XDP_PASS. The parser never drops: whatever it cannot read is
//! passed and counted by reason.
#![no_std]
#![no_main]
// Atomic counter adds: core's AtomicU64 has no fetch_add on the BPF target.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod events;
mod flow;
mod parse;
mod stats;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};

/// Entry point, attached to every audited interface.
#[xdp]
pub fn xdp_audit(ctx: XdpContext) -> u32 {
    match parse::parse(&ctx) {
        Ok(pkt) => {
            // SAFETY: a plain helper call with no arguments.
            let now = unsafe { bpf_ktime_get_ns() };
            flow::account(&ctx, &pkt, now);
            stats::bump(pkt.outcome);
        }
        Err(reason) => stats::bump(reason),
    }
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
