//! The lab benchmark's frame generator (`cargo xtask bench --lab`): driven by
//! BPF_PROG_TEST_RUN in live-frames mode on the client's veth, it sends every frame out with
//! XDP_TX, so the kernel injects frames into the gateway at the rate one CPU can build them,
//! with no socket and no stack on the way. Two entry points: the frame as given (one flow),
//! and the frame from a new IPv4 source each time (a flood of new flows).
#![no_std]
#![no_main]

#[path = "../rt.rs"]
mod rt;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};

/// Ethernet + IPv4 header without options: what the generated frames carry.
const HEADERS: usize = 34;

/// The next new flow's number; the bench sets where a run starts, so every frame of every run
/// is a flow the gateway has not seen.
#[map(name = "GEN_NEXT")]
static GEN_NEXT: Array<u32> = Array::with_max_entries(1, 0);

/// Sends the frame unchanged.
#[xdp]
pub fn xdp_gen_same(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// Sends the frame from the next source in 10.0.0.0/8 (16 M distinct flows; the flows are
/// one-way, so no route back is needed), the IPv4 header checksum computed again.
#[xdp]
pub fn xdp_gen_new_flows(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + HEADERS > end {
        return xdp_action::XDP_ABORTED;
    }
    let Some(next) = GEN_NEXT.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: one slot of our own map (test runs of one program are not concurrent: the
    // bench drives it from one thread); 34 bytes checked above, and the IPv4 header (20
    // bytes, no options: the bench's own frames) sits at offset 14.
    unsafe {
        let n = *next;
        *next = n.wrapping_add(1);
        let ip = (start + 14) as *mut u8;
        let src = (n & 0x00ff_ffff) | 0x0a00_0000;
        core::ptr::write_unaligned(ip.add(12) as *mut [u8; 4], src.to_be_bytes());
        core::ptr::write_unaligned(ip.add(10) as *mut u16, 0);
        let mut sum = 0u32;
        let mut i = 0;
        while i < 20 {
            sum += u32::from(u16::from_be_bytes([*ip.add(i), *ip.add(i + 1)]));
            i += 2;
        }
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        core::ptr::write_unaligned(ip.add(10) as *mut [u8; 2], (!(sum as u16)).to_be_bytes());
    }
    xdp_action::XDP_TX
}
