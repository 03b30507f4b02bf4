//! Switches for the benchmark's ablations. The per-packet path ([`crate::audit::packet`]) is
//! generic over a mask of these bits, so every variant is compiled with its branches resolved
//! and costs nothing at run time. The attached program is [`PRODUCTION`]; `bin/ablate.rs`
//! builds one entry point per bit flipped, so `agent/benches/xdp.rs` measures what each piece
//! of the established path costs in the same run instead of guessing it. A variant is a
//! measurement, not a program to run: several of them record wrong flows.

/// Packet and byte counters with locked atomic adds (main@52cbca4) instead of plain
/// per-direction increments ([`crate::flow`] says when plain ones can lose a count).
pub const LOCKED_COUNTERS: u32 = 1;
/// No clock read on an established packet (`last_seen_ns` is left as created).
pub const NO_CLOCK: u32 = 1 << 1;
/// The clock helper on every established packet (as main@52cbca4 read the coarse one)
/// instead of once per kernel tick per flow.
pub const CLOCK_EVERY_PACKET: u32 = 1 << 2;
/// The list generation taken as 0 instead of read from its array map.
pub const NO_GENERATION: u32 = 1 << 3;
/// No per-rule hit accounting.
pub const NO_HITS: u32 = 1 << 4;
/// No packet, byte or drop counters at all.
pub const NO_COUNTERS: u32 = 1 << 5;

/// The attached program's variant.
pub const PRODUCTION: u32 = LOCKED_COUNTERS;

/// Whether `mask` has `bit`.
#[inline(always)]
pub const fn has(mask: u32, bit: u32) -> bool {
    mask & bit != 0
}
