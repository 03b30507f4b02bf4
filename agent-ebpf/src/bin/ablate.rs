//! The benchmark's ablations: xdp-audit's per-packet path compiled once per
//! `ablate` switch, one entry point each, next to the attached variant, so
//! `agent/benches/xdp.rs` measures what each piece of work costs in the same run. Built from
//! the program's own modules; never attached (several variants record wrong flows).
#![no_std]
#![no_main]
#![allow(internal_features)]
#![feature(core_intrinsics)]
#![allow(clippy::needless_borrows_for_generic_args)]

#[path = "../rt.rs"]
mod rt;

#[path = "../ablate.rs"]
mod ablate;
#[path = "../audit.rs"]
mod audit;
#[path = "../dns.rs"]
mod dns;
#[path = "../events.rs"]
mod events;
#[path = "../flood.rs"]
mod flood;
#[path = "../flow.rs"]
mod flow;
#[path = "../mem.rs"]
mod mem;
#[path = "../parse.rs"]
mod parse;
#[path = "../payload.rs"]
mod payload;
#[path = "../refuse.rs"]
mod refuse;
#[path = "../stats.rs"]
mod stats;
#[path = "../verdict.rs"]
mod verdict;

use ablate::*;
use aya_ebpf::{macros::xdp, programs::XdpContext};

/// The attached variant, built here so it shares maps with the others.
#[xdp]
pub fn xdp_ablate_production(ctx: XdpContext) -> u32 {
    audit::packet::<PRODUCTION>(&ctx)
}

/// Counters the other way: locked atomics if the attached program uses plain adds, and back.
#[xdp]
pub fn xdp_ablate_locking(ctx: XdpContext) -> u32 {
    audit::packet::<{ PRODUCTION ^ LOCKED_COUNTERS }>(&ctx)
}

/// No packet or byte counters.
#[xdp]
pub fn xdp_ablate_no_counters(ctx: XdpContext) -> u32 {
    audit::packet::<{ PRODUCTION | NO_COUNTERS }>(&ctx)
}

/// No clock on established packets.
#[xdp]
pub fn xdp_ablate_no_clock(ctx: XdpContext) -> u32 {
    audit::packet::<{ PRODUCTION | NO_CLOCK }>(&ctx)
}

/// The coarse clock on every packet, not once per tick.
#[xdp]
pub fn xdp_ablate_clock_every_packet(ctx: XdpContext) -> u32 {
    audit::packet::<{ PRODUCTION | CLOCK_EVERY_PACKET }>(&ctx)
}

/// No list generation lookup.
#[xdp]
pub fn xdp_ablate_no_generation(ctx: XdpContext) -> u32 {
    audit::packet::<{ PRODUCTION | NO_GENERATION }>(&ctx)
}

/// No rule-hit accounting.
#[xdp]
pub fn xdp_ablate_no_hits(ctx: XdpContext) -> u32 {
    audit::packet::<{ PRODUCTION | NO_HITS }>(&ctx)
}

/// The slow path the variants tail-call, as in the attached object.
#[xdp]
pub fn xdp_audit_payload(ctx: XdpContext) -> u32 {
    payload::slow_path(&ctx)
}
