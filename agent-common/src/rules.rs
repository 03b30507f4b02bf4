//! Keys and values of the blocklist maps, as the blocklist compiler writes them and the XDP
//! program reads them. One table per list (allow, block) and per kind:
//!
//! | table            | key                          | value      |
//! |------------------|------------------------------|------------|
//! | v4 exact (HASH)  | `[u8; 4]` address, network order  | [`RuleId`] |
//! | v6 exact (HASH)  | `[u8; 16]` address, network order | [`RuleId`] |
//! | v4 prefix (LPM)  | [`LpmKeyV4`]                 | [`RuleId`] |
//! | v6 prefix (LPM)  | [`LpmKeyV6`]                 | [`RuleId`] |
//! | ports (HASH)     | [`PortKey`]                  | [`RuleId`] |
//! | domains (HASH)   | `u64` suffix hash ([`crate::domain`]) | [`RuleId`] |
//!
//! Exact addresses (/32, /128) live in hash maps because one hash probe is cheaper than an
//! LPM walk, and most list entries are single addresses.

use core::mem::size_of;

/// Index of a rule in the agent's origin table (list file and line). Stable for as long as
/// the rule's key stays in its list, so a reload that only shifts line numbers rewrites no
/// map value.
pub type RuleId = u32;

/// Bit of a list map's value (a [`RuleId`] with this bit set) saying the rule's list wants
/// blocked packets refused rather than dropped: a DNS query answered NXDOMAIN, a TCP SYN
/// answered RST, from XDP (`--refuse`, `--blocklist FILE:refuse`). Rule ids stay below it:
/// they are dense indexes into the agent's origin table. The program keeps the bit in the
/// verdict it caches and the drop events it sends; [`rule_id`] takes it off.
pub const REFUSE: RuleId = 1 << 31;

/// The rule id of a list map value (or of a program's cached rule), without [`REFUSE`].
/// [`crate::NO_RULE`] stays itself.
#[inline(always)]
pub const fn rule_id(value: RuleId) -> RuleId {
    if value == crate::NO_RULE {
        value
    } else {
        value & !REFUSE
    }
}

/// Whether a list map value (a matched rule) asks for refusal.
#[inline(always)]
pub const fn refuses(value: RuleId) -> bool {
    value != crate::NO_RULE && value & REFUSE != 0
}

/// Key of an IPv4 LPM trie; the layout `BPF_MAP_TYPE_LPM_TRIE` requires (`struct
/// bpf_lpm_trie_key_u8` with 4 data bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LpmKeyV4 {
    /// Prefix length in bits, 0..=32 (host byte order, as the kernel expects).
    pub prefix_len: u32,
    /// Network address, network byte order, host bits zero.
    pub addr: [u8; 4],
}
const _: () = assert!(size_of::<LpmKeyV4>() == 8);

/// Key of an IPv6 LPM trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LpmKeyV6 {
    /// Prefix length in bits, 0..=128 (host byte order).
    pub prefix_len: u32,
    /// Network address, network byte order, host bits zero.
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<LpmKeyV6>() == 20);

/// Key of the port-rule hash: one entry per (protocol, port); a rule for a range of ports is
/// written as one entry per port so the program does a single exact lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortKey {
    /// Port, network byte order as read from the packet (no byte swap in the program).
    pub port: u16,
    /// [`crate::proto::TCP`] or [`crate::proto::UDP`].
    pub proto: u8,
    /// Explicit padding; always zero so keys hash identically.
    pub _pad: u8,
}
const _: () = assert!(size_of::<PortKey>() == 4);

impl PortKey {
    /// The key for `port` (host order) of `proto`.
    pub const fn new(proto: u8, port: u16) -> Self {
        PortKey {
            port: port.to_be(),
            proto,
            _pad: 0,
        }
    }
}

/// The `GENERATION` map's value: the list generation in the low 32 bits (what a flow caches
/// its verdict under) and, in the high 32, [`empty`] bits for the tables the agent knows hold
/// nothing, which the program skips: an allowlist nobody loaded costs a new flow one branch
/// instead of three lookups that miss. Zero, the map's initial value (and what an older agent
/// writes), skips nothing. One bit says the opposite, [`empty::DOMAINS_BLOCKED`].
pub mod empty {
    /// The allowlist holds no address, prefix or port rule (domains are checked apart).
    pub const ALLOW: u32 = 1;
    /// The blocklist holds a domain: a DNS query whose name cannot be walked (compressed,
    /// cut short by a fragment's end) is dropped, since its server would read a name no rule
    /// judged. Clear (no domain blocked, or a program no agent gave lists yet), it passes,
    /// counted.
    pub const DOMAINS_BLOCKED: u32 = 2;
    /// The blocklist holds a port rule. With it or [`DOMAINS_BLOCKED`], an IPv6 packet whose
    /// transport header lies past the parser's walk (its ports and any DNS name unread) is
    /// dropped unless an allow rule passes it.
    pub const PORTS_BLOCKED: u32 = 4;

    /// The map value of `generation` (its low 32 bits) with `empty` bits.
    #[inline(always)]
    pub const fn pack(generation: u64, empty: u32) -> u64 {
        (generation & 0xffff_ffff) | (empty as u64) << 32
    }

    /// The generation and the empty bits of a map value.
    #[inline(always)]
    pub const fn unpack(value: u64) -> (u32, u32) {
        (value as u32, (value >> 32) as u32)
    }
}

/// The IPv4 cover: one bit per /24 that any IPv4 address or prefix rule of either list
/// touches (`COVER4`, an array of [`cover4::WORDS`] `u64`s: 2 MiB). An address in a /24 whose
/// bit is clear can match no exact or prefix rule, so a new flow to it skips both tables: a
/// miss in a large exact table and a walk of the prefix trie were most of what the lists
/// cost a passing new flow. A set bit only sends the address to the tables, so a superset is
/// always safe: the agent sets bits before it inserts rules and clears them after it removes.
pub mod cover4 {
    /// Words of the cover: 2^24 /24s, 64 to a word.
    pub const WORDS: u32 = 1 << 18;

    /// The word and bit of the /24 holding `addr` (network-order bytes).
    #[inline(always)]
    pub const fn slot(addr: [u8; 4]) -> (u32, u32) {
        let slash24 = (addr[0] as u32) << 16 | (addr[1] as u32) << 8 | addr[2] as u32;
        (slash24 >> 6, slash24 & 63)
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data with explicit padding, no references, every bit pattern valid.
    unsafe impl aya::Pod for super::LpmKeyV4 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LpmKeyV6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PortKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cover_slot_of_an_address_is_its_slash_24() {
        assert_eq!(cover4::slot([0, 0, 0, 255]), (0, 0));
        assert_eq!(cover4::slot([0, 0, 63, 1]), (0, 63));
        assert_eq!(cover4::slot([0, 0, 64, 0]), (1, 0));
        assert_eq!(
            cover4::slot([10, 1, 2, 3]),
            ((10 << 16 | 1 << 8 | 2) >> 6, 2)
        );
        assert_eq!(cover4::slot([255, 255, 255, 255]), (cover4::WORDS - 1, 63));
    }
    use core::mem::{align_of, offset_of};

    #[test]
    fn the_generation_keeps_its_low_word_beside_the_empty_bits() {
        let v = empty::pack(0x1_0000_0007, empty::ALLOW);
        assert_eq!(empty::unpack(v), (7, empty::ALLOW));
        assert_eq!(
            empty::unpack(7),
            (7, 0),
            "an older agent's value skips nothing"
        );
    }

    #[test]
    fn lpm_keys_match_bpf_lpm_trie_key() {
        assert_eq!(size_of::<LpmKeyV4>(), 8);
        assert_eq!(align_of::<LpmKeyV4>(), 4);
        assert_eq!(offset_of!(LpmKeyV4, addr), 4);
        assert_eq!(size_of::<LpmKeyV6>(), 20);
        assert_eq!(align_of::<LpmKeyV6>(), 4);
        assert_eq!(offset_of!(LpmKeyV6, addr), 4);
    }

    #[test]
    fn the_refuse_bit_is_taken_off_rule_ids_and_never_read_from_no_rule() {
        assert_eq!(rule_id(7 | REFUSE), 7);
        assert_eq!(rule_id(7), 7);
        assert!(refuses(7 | REFUSE));
        assert!(!refuses(7));
        assert!(!refuses(crate::NO_RULE));
        assert_eq!(rule_id(crate::NO_RULE), crate::NO_RULE);
    }

    #[test]
    fn port_key_layout_and_byte_order() {
        assert_eq!(size_of::<PortKey>(), 4);
        assert_eq!(offset_of!(PortKey, proto), 2);
        let k = PortKey::new(crate::proto::TCP, 25);
        // The port's bytes in memory are as on the wire: big-endian.
        assert_eq!(k.port.to_ne_bytes(), [0, 25]);
    }
}
