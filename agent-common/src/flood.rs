//! Flood-proof drops: the budget of drop records per rule and in all, and the per-rule
//! summary of the blocked packets dropped past it.
//!
//! A blocked packet that would create a flow spends one unit of its rule's budget and of the
//! global one; while both last, its flow is created and its first drop recorded as always.
//! Past either, the packet is dropped statelessly (no flow-table insert, no ring event) and
//! counted in its rule's [`FloodValue`] on this CPU. Once per sweep the agent bumps
//! [`FloodConfig::window`], which starts both budgets afresh, and reads the summaries of the
//! window that ended.
//!
//! A rule's summary lives in a slot of `FLOOD_SLOTS` (a per-CPU array, [`SLOTS`] per window,
//! two windows by parity); `FLOOD_RULES` (a per-CPU array indexed by the dense rule id, as the
//! rule hit counters are) holds the slot a rule last took on that CPU. A slot is the rule's
//! while it carries the rule and the window's [`stamp`]; otherwise the rule takes the window's
//! next free slot ([`FloodTotal::used`]). So the budget gate is array reads only, and the
//! agent reads the used slots of the window that ended while the program fills the other
//! parity's: no entry is deleted under a writer.
//!
//! Budgets are per CPU: the agent writes each CPU's share of the configured rate, so a flood
//! that RSS steers to one CPU gets that CPU's share only (see [`FloodConfig`]).

use core::mem::size_of;

/// Registers of the distinct-source sketch (HyperLogLog, `2^SKETCH_BITS` registers).
pub const SKETCH_BITS: u32 = 6;
/// Registers of the distinct-source sketch.
pub const SKETCH_REGISTERS: usize = 1 << SKETCH_BITS;
/// Summary slots per window and CPU: rules with blocked new flows on one CPU in one sweep
/// window; a rule past them has its packets counted in `FloodUntracked` only.
pub const SLOTS: u32 = 2048;

/// The stamp a slot of `window` carries: never 0, which an unused slot holds.
#[inline(always)]
pub const fn stamp(window: u64) -> u32 {
    let s = (window as u32).wrapping_add(1);
    if s == 0 {
        1
    } else {
        s
    }
}

/// The first slot of `window`'s half of `FLOOD_SLOTS`.
#[inline(always)]
pub const fn first_slot(window: u64) -> u32 {
    (window & 1) as u32 * SLOTS
}

/// Heavy-hitter slots per rule and CPU: a source's hash picks its slot, which keeps the
/// majority candidate of the sources hashed there (Boyer-Moore vote).
pub const TOP_SOURCES: usize = 4;

/// The budgets, written by the agent; one entry (`FLOOD_CONFIG` array slot 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodConfig {
    /// Bumped by the agent after each sweep took the summaries: a CPU whose global slot
    /// carries another window starts its global budget afresh.
    pub window: u64,
    /// Drop records per rule per sweep window on each CPU; `u32::MAX`: no limit (0 records
    /// none: the program's map before the agent writes it).
    pub per_rule: u32,
    /// Drop records in all per sweep window on each CPU; `u32::MAX`: no limit.
    pub total: u32,
}
const _: () = assert!(size_of::<FloodConfig>() == 16);

/// One CPU's spending of the global budget (`FLOOD_TOTAL`, a per-CPU array of one).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodTotal {
    /// The [`FloodConfig::window`] `spent` counts in.
    pub window: u64,
    /// Drop records this CPU made in that window.
    pub spent: u64,
    /// Summary slots this CPU handed out, by window parity (the window's own count while
    /// `window` is it or the one before it; an older window's otherwise).
    pub used: [u32; 2],
}
const _: () = assert!(size_of::<FloodTotal>() == 24);

/// One of a rule's most frequent stateless-drop sources on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopSource {
    /// The source address, as in [`crate::FlowKey::addr_a`] (IPv4 in word 0).
    pub addr: [u32; 4],
    /// Its vote: packets counted for it minus those of other sources of the slot since it
    /// took the slot (a lower bound of its packets); 0 for an empty slot.
    pub packets: u64,
}
const _: () = assert!(size_of::<TopSource>() == 24);

/// A rule's flood summary on one CPU in one sweep window (a slot of `FLOOD_SLOTS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodValue {
    /// Blocked new flows recorded (each spent one unit of the budget).
    pub recorded: u32,
    /// The kernel tick (low 32 bits of jiffies) `last_ns` was read at: the coarse clock
    /// only moves at a tick, so a summarised packet reads it once per tick, not per packet.
    pub last_tick: u32,
    /// Packets dropped statelessly past the budget.
    pub packets: u64,
    /// Their frame bytes.
    pub bytes: u64,
    /// CLOCK_MONOTONIC (the coarse clock, at the kernel tick's resolution) of the first of
    /// them, 0 if none.
    pub first_ns: u64,
    /// The same of the last of them.
    pub last_ns: u64,
    /// HyperLogLog registers over the sources' hashes ([`source_hash`]).
    pub sources: [u8; SKETCH_REGISTERS],
    /// The most frequent sources.
    pub top: [TopSource; TOP_SOURCES],
    /// The rule whose summary this slot holds.
    pub rule: u32,
    /// The [`stamp`] of the window it summarises; 0: never used.
    pub stamp: u32,
}
const _: () = assert!(size_of::<FloodValue>() == 208);

impl FloodValue {
    /// An empty summary.
    pub const fn zeroed() -> Self {
        FloodValue {
            recorded: 0,
            last_tick: 0,
            packets: 0,
            bytes: 0,
            first_ns: 0,
            last_ns: 0,
            sources: [0; SKETCH_REGISTERS],
            top: [TopSource {
                addr: [0; 4],
                packets: 0,
            }; TOP_SOURCES],
            rule: 0,
            stamp: 0,
        }
    }
}

/// The 64-bit hash of a source address the sketch registers: its two 64-bit halves, each
/// folded in by one multiply-xorshift (SplitMix64's constants), two multiplies where a word
/// at a time took four (a summarised packet pays this hash; an IPv4 source's upper half is
/// zero). The same on both sides, so tests can predict registers.
#[inline(always)]
pub fn source_hash(addr: &[u32; 4]) -> u64 {
    let lo = addr[0] as u64 | (addr[1] as u64) << 32;
    let hi = addr[2] as u64 | (addr[3] as u64) << 32;
    let mut h = (lo ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 31;
    h = (h ^ hi).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 29)
}

/// The sketch register and rank of a hash: the low [`SKETCH_BITS`] pick the register, the
/// rank is one more than the leading zeros of the rest (at most 59).
#[inline(always)]
pub fn register_of(hash: u64) -> (usize, u8) {
    let index = register_index(hash);
    let rest = hash >> SKETCH_BITS;
    // The top SKETCH_BITS bits of `rest` are zero: count from bit 57 down.
    let rank = (rest << SKETCH_BITS).leading_zeros().min(64 - SKETCH_BITS) as u8 + 1;
    (index, rank)
}

/// The sketch register of a hash: its low [`SKETCH_BITS`].
#[inline(always)]
pub fn register_index(hash: u64) -> usize {
    (hash & (SKETCH_REGISTERS as u64 - 1)) as usize
}

/// Whether `hash`'s rank ([`register_of`]) is above `current`, a register's value, found
/// without counting leading zeros: BPF has no instruction for that, and its expansion (a bit
/// smear and a population count, ~30 dependent instructions) ran for every summarised packet
/// though a register only rises for one hash in `2^current`.
#[inline(always)]
pub fn raises(hash: u64, current: u8) -> bool {
    // The rank is above `current` when the `current` top bits of the rest are all zero.
    let rest = hash & !(SKETCH_REGISTERS as u64 - 1);
    match current {
        0 => true,
        c if u32::from(c) > 64 - SKETCH_BITS => false,
        c => rest >> (64 - u32::from(c)) == 0,
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data with explicit padding, no references, every bit pattern valid.
    unsafe impl aya::Pod for super::FloodConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FloodTotal {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FloodValue {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn flood_layouts_match_the_kernel() {
        assert_eq!(offset_of!(FloodConfig, per_rule), 8);
        assert_eq!(offset_of!(FloodConfig, total), 12);
        assert_eq!(offset_of!(FloodValue, last_tick), 4);
        assert_eq!(offset_of!(FloodValue, packets), 8);
        assert_eq!(offset_of!(FloodValue, first_ns), 24);
        assert_eq!(offset_of!(FloodValue, sources), 40);
        assert_eq!(offset_of!(FloodValue, top), 104);
        assert_eq!(offset_of!(FloodValue, rule), 200);
        assert_eq!(offset_of!(FloodValue, stamp), 204);
        assert_eq!(offset_of!(FloodTotal, used), 16);
        assert_eq!(offset_of!(TopSource, packets), 16);
    }

    #[test]
    fn stamps_are_never_zero_and_windows_alternate_halves() {
        assert_eq!(stamp(0), 1);
        assert_eq!(stamp(u64::from(u32::MAX)), 1, "the wrap skips 0");
        assert_ne!(stamp(5), stamp(6));
        assert_eq!((first_slot(4), first_slot(5)), (0, SLOTS));
    }

    #[test]
    fn ranks_stay_in_range() {
        assert_eq!(register_of(0), (0, 59));
        assert_eq!(register_of(u64::MAX), (63, 1));
        assert_eq!(register_of(1 << SKETCH_BITS), (0, 58));
    }

    #[test]
    fn raises_says_exactly_when_the_rank_is_above_the_register() {
        // Hashes of every rank (a single bit at each place, with and without the bits below
        // it, and the extremes) and of many sources, against every register value.
        let mut hashes = vec![0, u64::MAX];
        for b in 0..64 {
            hashes.extend([1u64 << b, (1u64 << b) | ((1u64 << b) - 1), !(1u64 << b)]);
        }
        hashes.extend((0..10_000u32).map(|i| source_hash(&[i.to_be(), 0, 0, 0])));
        for h in hashes {
            let (_, rank) = register_of(h);
            for current in 0..=64u8 {
                assert_eq!(
                    raises(h, current),
                    rank > current,
                    "hash {h:#x}, register {current}"
                );
            }
        }
    }
}
