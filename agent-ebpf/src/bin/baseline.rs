//! The benchmark's floor: an XDP program that returns XDP_PASS and does nothing else, measured
//! in the same run as xdp-audit so figures can be given as ratios on a noisy machine.
#![no_std]
#![no_main]

#[path = "../rt.rs"]
mod rt;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// Passes every packet untouched.
#[xdp]
pub fn xdp_baseline_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
