//! The benchmark's reference for list enforcement: an xdp-filter-like program that parses
//! Ethernet and IPv4 and drops packets whose destination is in one exact-match hash. No flow
//! table, no events: what the cheapest possible blocklist costs, measured in the same run.
#![no_std]
#![no_main]

#[path = "../rt.rs"]
mod rt;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::HashMap,
    programs::XdpContext,
};

/// Blocked IPv4 destinations.
#[map(name = "FILTER_V4")]
static FILTER_V4: HashMap<[u8; 4], u32> = HashMap::with_max_entries(1 << 20, 0);

/// Drops IPv4 packets to a listed destination, passes everything else.
#[xdp]
pub fn xdp_filter_baseline(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + 34 > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: 34 bytes (Ethernet + IPv4 header) checked above.
    let (ethertype, dst) = unsafe {
        (
            core::ptr::read_unaligned((start + 12) as *const u16),
            core::ptr::read_unaligned((start + 30) as *const [u8; 4]),
        )
    };
    if ethertype != 0x0800u16.to_be() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the value is only tested for presence.
    if unsafe { FILTER_V4.get(dst) }.is_some() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}
