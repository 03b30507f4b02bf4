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

/// The frame's Ethernet and IPv4 headers as the bench built them, written again into every
/// frame before it is sent: live frames are pages the kernel recycles, and a gateway that
/// forwards a frame rewrites its MACs and TTL in place in that same page, so without this
/// the next frame from the page would reach the gateway addressed to another host.
#[map(name = "GEN_HEADER")]
static GEN_HEADER: Array<[u8; HEADERS]> = Array::with_max_entries(1, 0);

/// Writes [`GEN_HEADER`] over the frame's first [`HEADERS`] bytes; `None` if the frame is
/// shorter or the map unreadable.
#[inline(always)]
fn reset_headers(ctx: &XdpContext) -> Option<*mut u8> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + HEADERS > end {
        return None;
    }
    let header = GEN_HEADER.get(0)?;
    // SAFETY: HEADERS bytes of the frame, checked above; the map value is HEADERS bytes.
    unsafe { core::ptr::write_unaligned(start as *mut [u8; HEADERS], *header) };
    Some(start as *mut u8)
}

/// Sends the frame as the bench built it.
#[xdp]
pub fn xdp_gen_same(ctx: XdpContext) -> u32 {
    match reset_headers(&ctx) {
        Some(_) => xdp_action::XDP_TX,
        None => xdp_action::XDP_ABORTED,
    }
}

/// Sends the frame from the next source in 10.0.0.0/8 (16 M distinct flows; the flows are
/// one-way, so no route back is needed), the IPv4 header checksum computed again.
#[xdp]
pub fn xdp_gen_new_flows(ctx: XdpContext) -> u32 {
    let Some(start) = reset_headers(&ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(next) = GEN_NEXT.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: one slot of our own map (test runs of one program are not concurrent: the
    // bench drives it from one thread); 34 bytes checked above, and the IPv4 header (20
    // bytes, no options: the bench's own frames) sits at offset 14.
    unsafe {
        let n = *next;
        *next = n.wrapping_add(1);
        let ip = start.add(14);
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
