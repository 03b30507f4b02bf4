//! The benchmark's stateful reference: the least an auditor must do per packet. Parses
//! Ethernet, IPv4 and TCP or UDP; counts the packet and its bytes under its 16-byte 5-tuple
//! in an LRU per-CPU hash with plain increments (inserting on a miss); then drops it if its
//! destination is in one exact-match hash. No events, no verdict cache, no payload: the
//! yardstick xdp-audit's per-packet path is measured against in the same run.
#![no_std]
#![no_main]
// Map keys and values by reference, as in the program: by value would copy them on the stack.
#![allow(clippy::needless_borrows_for_generic_args)]

#[path = "../rt.rs"]
mod rt;

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST},
    macros::{map, xdp},
    maps::{HashMap, LruPerCpuHashMap},
    programs::XdpContext,
};

/// A flow's 16-byte key: addresses and ports as read (network order), the protocol.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Key {
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u32,
}
const _: () = assert!(core::mem::size_of::<Key>() == 16);

/// A flow's counters (per CPU).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Counts {
    packets: u64,
    bytes: u64,
}

/// Flows. Sized by the bench like xdp-audit's table.
#[map(name = "REF_FLOWS")]
static REF_FLOWS: LruPerCpuHashMap<Key, Counts> = LruPerCpuHashMap::with_max_entries(262_144, 0);

/// Blocked IPv4 destinations.
#[map(name = "REF_BLOCK")]
static REF_BLOCK: HashMap<[u8; 4], u32> = HashMap::with_max_entries(1 << 20, 0);

const ETH_HLEN: usize = 14;

/// Counts the packet in its flow, drops it if its destination is listed.
#[xdp]
pub fn xdp_stateful_baseline(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 20 > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: Ethernet and a 20-byte IPv4 header checked above.
    let (ethertype, vihl, proto, src, dst) = unsafe {
        (
            core::ptr::read_unaligned((start + 12) as *const u16),
            *((start + ETH_HLEN) as *const u8),
            *((start + ETH_HLEN + 9) as *const u8),
            core::ptr::read_unaligned((start + ETH_HLEN + 12) as *const u32),
            core::ptr::read_unaligned((start + ETH_HLEN + 16) as *const u32),
        )
    };
    if ethertype != 0x0800u16.to_be() || (proto != 6 && proto != 17) {
        return xdp_action::XDP_PASS;
    }
    let l4 = start + ETH_HLEN + (vihl & 0x0f) as usize * 4;
    if l4 + 4 > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: four bytes of ports checked above.
    let (sport, dport) = unsafe {
        (
            core::ptr::read_unaligned(l4 as *const u16),
            core::ptr::read_unaligned((l4 + 2) as *const u16),
        )
    };
    let key = Key {
        src,
        dst,
        sport,
        dport,
        proto: proto as u32,
    };
    let len = (end - start) as u64;
    match REF_FLOWS.get_ptr_mut(&key) {
        // SAFETY: this CPU's copy of the value, live for the run.
        Some(c) => unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        },
        None => {
            let _ = REF_FLOWS.insert(
                &key,
                &Counts {
                    packets: 1,
                    bytes: len,
                },
                BPF_NOEXIST as u64,
            );
        }
    }
    // SAFETY: the value is only tested for presence.
    if unsafe { REF_BLOCK.get(dst.to_ne_bytes()) }.is_some() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}
