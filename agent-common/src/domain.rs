//! Domain-name hashing shared by the XDP program (which hashes DNS query names) and the
//! blocklist compiler (which hashes rule names), so both sides agree bit for bit.
//!
//! A name is matched label by label, never as a string, and every hash is keyed with a
//! per-load secret ([`DomainKey`]), so no one without the key can compute the hash of a name
//! or search offline for two names whose hashes collide:
//!
//! ```text
//! g(label)        = SipHash-1-3(key.label,  lower(label bytes))
//! h(l_1 ... l_i)  = SipHash-1-3(key.suffix, le64(g(l_1)) || ... || le64(g(l_i)))
//! ```
//!
//! where `l_1` is the top-level label. The program walks the QNAME left to right, hashes each
//! label ([`LabelHasher`], a word at a time), keeps the hashes of the last
//! [`MAX_DOMAIN_LABELS`] labels, then feeds them to a [`SuffixHasher`] from the root down:
//! each step gives the hash of one suffix (`com`, `example.com`, `www.example.com`), which is
//! looked up. A rule for `example.com` therefore matches `example.com` and every name under
//! it, and can never match `badexample.com`, whose suffixes are `com` and `badexample.com`.
//!
//! Everything here is `const`, allocation-free and panic-free, with loops bounded by the
//! input length, so the BPF verifier accepts it.

/// The most labels of a name the program keeps (the last ones, nearest the root). A rule with
/// more labels could never be matched, so the parser rejects it.
pub const MAX_DOMAIN_LABELS: usize = 16;

/// The longest label DNS allows (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// The longest name in dotted text form without the trailing dot (RFC 1035: 255 octets in
/// wire form).
pub const MAX_NAME_LEN: usize = 253;

/// The secret every domain hash is keyed with: two independent SipHash keys, one for label
/// hashes and one for suffix hashes. Drawn at random when the program is loaded and kept in
/// its `DOMAIN_KEY` map ([`crate::names::DOMAIN_KEY`]), where the agent reads it back.
///
/// `Debug` does not print the key.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DomainKey {
    /// SipHash-1-3 key of label hashes.
    pub label: [u64; 2],
    /// SipHash-1-3 key of suffix hashes.
    pub suffix: [u64; 2],
}
const _: () = assert!(core::mem::size_of::<DomainKey>() == 32);

impl DomainKey {
    /// The key made of 32 bytes (little-endian words: label key, then suffix key).
    pub const fn from_bytes(b: &[u8; 32]) -> DomainKey {
        DomainKey {
            label: [le64(b, 0), le64(b, 8)],
            suffix: [le64(b, 16), le64(b, 24)],
        }
    }
}

impl core::fmt::Debug for DomainKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DomainKey(..)")
    }
}

/// Eight bytes of `b` from `at` as a little-endian word (the caller keeps `at + 8` in bounds).
/// Written as one array so the compiler emits a single load.
#[inline(always)]
const fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([
        b[at],
        b[at + 1],
        b[at + 2],
        b[at + 3],
        b[at + 4],
        b[at + 5],
        b[at + 6],
        b[at + 7],
    ])
}

/// SipHash state with `C` compression and `D` finalisation rounds (Aumasson and Bernstein,
/// 2012). The hashes here use SipHash-1-3 ([`Sip13`]); other round counts exist for the test
/// against the published SipHash-2-4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipState<const C: usize, const D: usize> {
    v: [u64; 4],
}

/// SipHash-1-3: the round counts of every hash in this module.
pub type Sip13 = SipState<1, 3>;

impl<const C: usize, const D: usize> SipState<C, D> {
    /// The initial state for a 128-bit key `(k0, k1)`.
    #[inline(always)]
    pub const fn new(key: &[u64; 2]) -> Self {
        SipState {
            v: [
                key[0] ^ 0x736f_6d65_7073_6575,
                key[1] ^ 0x646f_7261_6e64_6f6d,
                key[0] ^ 0x6c79_6765_6e65_7261,
                key[1] ^ 0x7465_6462_7974_6573,
            ],
        }
    }

    #[inline(always)]
    const fn round(&mut self) {
        let [mut v0, mut v1, mut v2, mut v3] = self.v;
        v0 = v0.wrapping_add(v1);
        v1 = v1.rotate_left(13) ^ v0;
        v0 = v0.rotate_left(32);
        v2 = v2.wrapping_add(v3);
        v3 = v3.rotate_left(16) ^ v2;
        v0 = v0.wrapping_add(v3);
        v3 = v3.rotate_left(21) ^ v0;
        v2 = v2.wrapping_add(v1);
        v1 = v1.rotate_left(17) ^ v2;
        v2 = v2.rotate_left(32);
        self.v = [v0, v1, v2, v3];
    }

    /// Absorbs one 8-byte message word (little-endian bytes).
    #[inline(always)]
    pub const fn absorb(&mut self, m: u64) {
        self.v[3] ^= m;
        let mut i = 0;
        while i < C {
            self.round();
            i += 1;
        }
        self.v[0] ^= m;
    }

    /// The hash of a message of `len` bytes whose full words were absorbed and whose last
    /// `len % 8` bytes are `tail` (little-endian, the other bytes zero).
    #[inline(always)]
    pub const fn finish(mut self, len: usize, tail: u64) -> u64 {
        self.absorb(((len as u64) << 56) | tail);
        self.v[2] ^= 0xff;
        let mut i = 0;
        while i < D {
            self.round();
            i += 1;
        }
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }
}

/// The bytes of `b` from `at` to its end (fewer than 8) as a little-endian word.
#[inline(always)]
const fn tail_word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    let mut i = at;
    while i < b.len() && i - at < 8 {
        w[i - at] = b[i];
        i += 1;
    }
    u64::from_le_bytes(w)
}

/// ASCII upper case folded to lower case in each of the 8 bytes of `w` at once; every other
/// byte (digits, `-`, `_`, bytes over 0x7f) unchanged. DNS names compare case-insensitively.
#[inline(always)]
pub const fn lower8(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let h = w & LOW7;
    // A byte's high bit is set after the add iff its low 7 bits are >= 'A' (0x41) / > 'Z'.
    let at_least_a = h.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
    let past_z = h.wrapping_add(0x2525_2525_2525_2525);
    let upper = at_least_a & !past_z & !w & HIGH;
    w | (upper >> 2)
}

/// The mask of the low `n` bytes of a word, `n` in `0..8`.
#[inline(always)]
pub const fn low_bytes(n: usize) -> u64 {
    (1u64 << (8 * (n & 7))) - 1
}

/// Hashes one label a word at a time: [`LabelHasher::word`] for each full 8-byte word, then
/// [`LabelHasher::finish`] with the rest.
#[derive(Clone, Copy, Debug)]
pub struct LabelHasher(Sip13);

impl LabelHasher {
    /// A label hash under `key`.
    #[inline(always)]
    pub const fn new(key: &DomainKey) -> Self {
        LabelHasher(Sip13::new(&key.label))
    }

    /// Absorbs 8 bytes of the label (little-endian, any case).
    #[inline(always)]
    pub const fn word(&mut self, w: u64) {
        self.0.absorb(lower8(w));
    }

    /// The hash of a label of `len` bytes whose last `len % 8` bytes are `tail`
    /// (little-endian, the bytes past them zero).
    #[inline(always)]
    pub const fn finish(self, len: usize, tail: u64) -> u64 {
        self.0.finish(len, lower8(tail))
    }
}

/// The hash of one label (bytes between dots, without the dots), any case.
#[inline]
pub const fn label_hash(key: &DomainKey, label: &[u8]) -> u64 {
    let mut h = LabelHasher::new(key);
    let full = label.len() / 8;
    let mut k = 0;
    while k < full {
        h.word(le64(label, 8 * k));
        k += 1;
    }
    h.finish(label.len(), tail_word(label, 8 * full))
}

/// Hashes the suffixes of a name from the root down: each [`SuffixHasher::push`] of a label
/// hash gives the hash of the suffix ending in that label.
#[derive(Clone, Copy, Debug)]
pub struct SuffixHasher {
    state: Sip13,
    words: usize,
}

impl SuffixHasher {
    /// The empty suffix (the root) under `key`.
    #[inline(always)]
    pub const fn new(key: &DomainKey) -> Self {
        SuffixHasher {
            state: Sip13::new(&key.suffix),
            words: 0,
        }
    }

    /// Adds the next label (one further from the root) and returns the hash of the suffix
    /// it ends.
    #[inline(always)]
    pub const fn push(&mut self, label_hash: u64) -> u64 {
        self.state.absorb(label_hash);
        self.words += 1;
        self.state.finish(8 * self.words, 0)
    }
}

/// The suffix hash of a whole dotted name (`www.example.com`, trailing dot optional), as the
/// program computes it for the same name in a query. Case-insensitive. An empty name (or `.`)
/// has no labels and hashes as the empty message; empty labels (`a..b`) are hashed as empty,
/// so callers validate names first (the blocklist parser does).
pub const fn domain_hash(key: &DomainKey, name: &str) -> u64 {
    let b = name.as_bytes();
    let mut end = b.len();
    if end > 0 && b[end - 1] == b'.' {
        end -= 1;
    }
    let mut s = SuffixHasher::new(key);
    if end == 0 {
        return s.state.finish(0, 0);
    }
    // Walk labels right to left: `label_end` is one past the current label's last byte.
    let mut label_end = end;
    let mut i = end;
    loop {
        if i == 0 || b[i - 1] == b'.' {
            let (_, rest) = b.split_at(i);
            let (label, _) = rest.split_at(label_end - i);
            let h = s.push(label_hash(key, label));
            if i == 0 {
                return h;
            }
            label_end = i - 1;
        }
        i -= 1;
    }
}

/// The label hashes of the last [`MAX_DOMAIN_LABELS`] labels of a name, as the program
/// collects them walking a QNAME left to right: older labels are overwritten, since only the
/// labels nearest the root can match a rule.
///
/// Every index is masked to the ring size, so the compiler proves each access in bounds and
/// emits no panic path for the verifier to reject.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelRing {
    /// Label hashes, written at `count % MAX_DOMAIN_LABELS`.
    pub hashes: [u64; MAX_DOMAIN_LABELS],
    /// Labels pushed so far (may exceed the ring size).
    pub count: u32,
    /// Explicit padding.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<LabelRing>() == 8 * MAX_DOMAIN_LABELS + 8);
const _: () = assert!(MAX_DOMAIN_LABELS.is_power_of_two());

const RING_MASK: usize = MAX_DOMAIN_LABELS - 1;

impl LabelRing {
    /// An empty ring.
    pub const fn new() -> Self {
        LabelRing {
            hashes: [0; MAX_DOMAIN_LABELS],
            count: 0,
            _pad: 0,
        }
    }

    /// Records the hash of the next label (left to right).
    #[inline(always)]
    pub fn push(&mut self, label_hash: u64) {
        self.hashes[self.count as usize & RING_MASK] = label_hash;
        self.count = self.count.saturating_add(1);
    }

    /// How many labels the ring holds (at most [`MAX_DOMAIN_LABELS`]).
    #[inline(always)]
    pub fn len(&self) -> usize {
        let n = self.count as usize;
        if n < MAX_DOMAIN_LABELS {
            n
        } else {
            MAX_DOMAIN_LABELS
        }
    }

    /// Whether no label was pushed.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The hash of the `i`-th label counted from the root (0 is the top-level label). Only
    /// meaningful for `i < self.len()`.
    #[inline(always)]
    pub fn from_root(&self, i: usize) -> u64 {
        let last = (self.count as usize).wrapping_sub(1);
        self.hashes[last.wrapping_sub(i) & RING_MASK]
    }
}

impl Default for LabelRing {
    fn default() -> Self {
        LabelRing::new()
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, no padding, no references, every bit pattern valid.
    unsafe impl aya::Pod for super::DomainKey {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    const KEY: DomainKey = DomainKey {
        label: [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908],
        suffix: [0x1716_1514_1312_1110, 0x1f1e_1d1c_1b1a_1918],
    };
    const OTHER: DomainKey = DomainKey {
        label: [1, 2],
        suffix: [3, 4],
    };

    /// SipHash of a whole message, the plain way: full words, then the rest and the length.
    fn siphash<const C: usize, const D: usize>(key: &[u64; 2], msg: &[u8]) -> u64 {
        let mut s = SipState::<C, D>::new(key);
        let words = msg.chunks_exact(8);
        let rest = words.remainder();
        for w in words {
            s.absorb(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        s.finish(msg.len(), u64::from_le_bytes(tail))
    }

    #[test]
    fn domain_key_layout() {
        assert_eq!(size_of::<DomainKey>(), 32);
        assert_eq!(align_of::<DomainKey>(), 8);
        assert_eq!(offset_of!(DomainKey, label), 0);
        assert_eq!(offset_of!(DomainKey, suffix), 16);
        let bytes: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(DomainKey::from_bytes(&bytes), KEY);
        assert_eq!(
            std::format!("{KEY:?}"),
            "DomainKey(..)",
            "the key is not printed"
        );
    }

    #[test]
    fn sip_state_is_siphash() {
        // The reference vector of the SipHash paper (appendix A): SipHash-2-4, key 00..0f,
        // message 00..0e.
        let msg: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(siphash::<2, 4>(&KEY.label, &msg), 0xa129_ca61_49be_45e5);
        // Against std's SipHash-2-4 (keyed) and SipHash-1-3 (std's DefaultHasher, key 0),
        // over every length that exercises a different tail.
        #[allow(deprecated)]
        for len in 0..40 {
            use std::hash::Hasher;
            let msg: std::vec::Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut std24 = std::hash::SipHasher::new_with_keys(KEY.label[0], KEY.label[1]);
            std24.write(&msg);
            assert_eq!(
                siphash::<2, 4>(&KEY.label, &msg),
                std24.finish(),
                "2-4, {len}"
            );
            let mut std13 = std::collections::hash_map::DefaultHasher::new();
            std13.write(&msg);
            assert_eq!(siphash::<1, 3>(&[0, 0], &msg), std13.finish(), "1-3, {len}");
        }
    }

    #[test]
    fn lower8_folds_exactly_ascii_upper_case_in_every_byte() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                // The byte at `pos` among neighbours that would carry if the SWAR were wrong.
                let mut bytes = [0xffu8, b'Z', b'@', b'A', 0x7f, b'[', 0x80, b'`'];
                bytes[pos] = b;
                let want = u64::from_le_bytes(bytes.map(|c| c.to_ascii_lowercase()));
                assert_eq!(
                    lower8(u64::from_le_bytes(bytes)),
                    want,
                    "byte {b:#x} at {pos}"
                );
            }
        }
    }

    #[test]
    fn label_hashes_are_siphash_of_the_lower_case_label() {
        for label in [
            "",
            "a",
            "com",
            "example",
            "exactly8",
            "ninebytes",
            "a-label-of-17-byt",
        ] {
            let lower: std::vec::Vec<u8> = label.bytes().map(|b| b.to_ascii_lowercase()).collect();
            assert_eq!(
                label_hash(&KEY, label.as_bytes()),
                siphash::<1, 3>(&KEY.label, &lower)
            );
        }
        assert_eq!(label_hash(&KEY, b"ExAmPlE"), label_hash(&KEY, b"example"));
        assert_eq!(
            label_hash(&KEY, b"EXACTLY8.Z"),
            label_hash(&KEY, b"exactly8.z")
        );
        assert_eq!(low_bytes(0), 0);
        assert_eq!(low_bytes(3), 0xff_ffff);
    }

    #[test]
    fn suffix_hashes_are_siphash_of_the_label_hashes_from_the_root() {
        let msg: std::vec::Vec<u8> = [&b"com"[..], b"example", b"www"]
            .iter()
            .flat_map(|l| label_hash(&KEY, l).to_le_bytes())
            .collect();
        assert_eq!(
            domain_hash(&KEY, "www.example.com"),
            siphash::<1, 3>(&KEY.suffix, &msg)
        );
        assert_eq!(
            domain_hash(&KEY, "com"),
            siphash::<1, 3>(&KEY.suffix, &msg[..8])
        );
        assert_eq!(domain_hash(&KEY, ""), siphash::<1, 3>(&KEY.suffix, b""));
        assert_eq!(domain_hash(&KEY, "."), domain_hash(&KEY, ""));
    }

    #[test]
    fn suffix_is_label_based() {
        let example = domain_hash(&KEY, "example.com");
        let bad = domain_hash(&KEY, "badexample.com");
        assert_ne!(example, bad);
        // Every suffix of badexample.com, as the program computes them.
        let mut s = SuffixHasher::new(&KEY);
        let com = s.push(label_hash(&KEY, b"com"));
        let bad_full = s.push(label_hash(&KEY, b"badexample"));
        assert_eq!(com, domain_hash(&KEY, "com"));
        assert_eq!(bad_full, bad);
        assert_ne!(com, example);
        // And www.example.com does pass through example.com.
        let mut s = SuffixHasher::new(&KEY);
        s.push(label_hash(&KEY, b"com"));
        assert_eq!(s.push(label_hash(&KEY, b"example")), example);
        assert_eq!(
            s.push(label_hash(&KEY, b"www")),
            domain_hash(&KEY, "www.example.com")
        );
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter() {
        assert_eq!(
            domain_hash(&KEY, "WWW.Example.COM."),
            domain_hash(&KEY, "www.example.com")
        );
    }

    #[test]
    fn order_and_grouping_matter() {
        assert_ne!(domain_hash(&KEY, "a.b"), domain_hash(&KEY, "b.a"));
        assert_ne!(domain_hash(&KEY, "a.a"), domain_hash(&KEY, "a"));
        assert_ne!(domain_hash(&KEY, "ab.c"), domain_hash(&KEY, "a.bc"));
    }

    #[test]
    fn another_key_gives_other_hashes() {
        for name in ["com", "example.com", "www.example.com"] {
            assert_ne!(domain_hash(&KEY, name), domain_hash(&OTHER, name), "{name}");
        }
        assert_ne!(label_hash(&KEY, b"com"), label_hash(&OTHER, b"com"));
    }

    #[test]
    fn hash_is_usable_in_const_context() {
        const H: u64 = domain_hash(&KEY, "example.com");
        assert_eq!(H, domain_hash(&KEY, "example.com"));
    }

    /// What the program does with a QNAME: hash labels left to right into the ring, then
    /// combine from the root, one lookup per suffix.
    fn program_suffixes(name: &str) -> [u64; MAX_DOMAIN_LABELS] {
        let mut ring = LabelRing::new();
        for label in name.split('.') {
            ring.push(label_hash(&KEY, label.as_bytes()));
        }
        let mut out = [0; MAX_DOMAIN_LABELS];
        let mut s = SuffixHasher::new(&KEY);
        let mut i = 0;
        while i < MAX_DOMAIN_LABELS && i < ring.len() {
            out[i] = s.push(ring.from_root(i));
            i += 1;
        }
        out
    }

    #[test]
    fn the_ring_reproduces_every_rule_hash() {
        let s = program_suffixes("WWW.Ads.Example.com");
        assert_eq!(s[0], domain_hash(&KEY, "com"));
        assert_eq!(s[1], domain_hash(&KEY, "example.com"));
        assert_eq!(s[2], domain_hash(&KEY, "ads.example.com"));
        assert_eq!(s[3], domain_hash(&KEY, "www.ads.example.com"));
        assert_eq!(s[4], 0);
    }

    #[test]
    fn a_deep_name_keeps_its_last_sixteen_labels() {
        let labels: std::vec::Vec<std::string::String> = (0..19)
            .map(|i| std::format!("l{i}"))
            .chain([std::string::String::from("example")])
            .collect();
        let name = labels.join(".");
        let s = program_suffixes(&name);
        assert_eq!(s[0], domain_hash(&KEY, "example"));
        assert_eq!(s[1], domain_hash(&KEY, "l18.example"));
        // The 16th suffix covers labels l4 .. example.
        assert_eq!(s[15], domain_hash(&KEY, &labels[4..].join(".")));
        assert_eq!(LabelRing::new().len(), 0);
        assert!(LabelRing::new().is_empty());
    }
}
