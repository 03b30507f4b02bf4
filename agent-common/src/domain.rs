//! Domain-name hashing shared by the XDP program (which hashes DNS query names) and the
//! blocklist compiler (which hashes rule names), so both sides agree bit for bit.
//!
//! A name is matched label by label, never as a string: the program walks the QNAME left to
//! right, hashes each label with [`label_step`] (which lower-cases ASCII itself), keeps the
//! hashes of the last [`MAX_DOMAIN_LABELS`] labels, then combines them right to left:
//!
//! ```text
//! h = SUFFIX_ROOT
//! for label in labels.rev() { h = suffix_step(h, label_hash); lookup(h) }
//! ```
//!
//! Each intermediate `h` is the hash of one suffix (`com`, `example.com`, `www.example.com`),
//! so a rule for `example.com` matches `example.com` and every name under it, and can never
//! match `badexample.com`: that name's labels are `badexample`, `com`, whose suffix hashes
//! are those of `com` and `badexample.com` only.
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

/// Initial value of a label hash: the 64-bit FNV-1a offset basis.
pub const LABEL_INIT: u64 = 0xcbf2_9ce4_8422_2325;

/// The 64-bit FNV prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hash of the empty suffix (the DNS root) from which every suffix hash starts. An arbitrary
/// odd constant ("xdp-audi" in ASCII), distinct from [`LABEL_INIT`] so that a label hash is
/// never mistaken for a suffix hash.
pub const SUFFIX_ROOT: u64 = 0x7864_702d_6175_6469;

/// Folds one byte of a label into its hash (FNV-1a). ASCII upper case is folded to lower case
/// here, so the program cannot forget to: DNS names compare case-insensitively.
#[inline(always)]
pub const fn label_step(h: u64, byte: u8) -> u64 {
    let b = if byte >= b'A' && byte <= b'Z' {
        byte | 0x20
    } else {
        byte
    };
    (h ^ b as u64).wrapping_mul(FNV_PRIME)
}

/// The hash of one label (bytes between dots, without the dots).
#[inline]
pub const fn label_hash(label: &[u8]) -> u64 {
    let mut h = LABEL_INIT;
    let mut i = 0;
    while i < label.len() {
        h = label_step(h, label[i]);
        i += 1;
    }
    h
}

/// The hash of the suffix `label.parent` from the hash of `parent` and of `label`.
///
/// The parent is multiplied before mixing and the label is not, so the step is
/// order-sensitive (`a.b` and `b.a` differ); the final mix is the SplitMix64 finalizer, a
/// bijection, so two different labels under the same parent can never collide.
#[inline(always)]
pub const fn suffix_step(parent: u64, label: u64) -> u64 {
    mix64(parent.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ label)
}

/// SplitMix64 finalizer: a bijective 64-bit mix with full avalanche.
#[inline(always)]
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The suffix hash of a whole dotted name (`www.example.com`, trailing dot optional), as the
/// program computes it for the same name in a query. Case-insensitive. An empty name (or `.`)
/// hashes to [`SUFFIX_ROOT`]; empty labels (`a..b`) are hashed as empty, so callers validate
/// names first (the blocklist parser does).
pub const fn domain_hash(name: &str) -> u64 {
    let b = name.as_bytes();
    let mut end = b.len();
    if end > 0 && b[end - 1] == b'.' {
        end -= 1;
    }
    let mut h = SUFFIX_ROOT;
    if end == 0 {
        return h;
    }
    // Walk labels right to left: `i` is one past the current label's last byte.
    let mut label_end = end;
    let mut i = end;
    loop {
        if i == 0 || b[i - 1] == b'.' {
            let mut lh = LABEL_INIT;
            let mut j = i;
            while j < label_end {
                lh = label_step(lh, b[j]);
                j += 1;
            }
            h = suffix_step(h, lh);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_hash_is_fnv1a_64() {
        // Published FNV-1a 64 vectors.
        assert_eq!(label_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(label_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(label_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn known_vectors_stay_fixed() {
        // Pinned so a change to the definition (which would silently desynchronise a kernel
        // built from an older commit) fails here first.
        assert_eq!(domain_hash("com"), 0xd2a5_2df6_54c7_3aaa);
        assert_eq!(domain_hash("example.com"), 0x1cbe_8772_d5f6_136d);
        assert_eq!(domain_hash("www.example.com"), 0x8f81_cb4b_5827_ff9f);
        assert_eq!(domain_hash("badexample.com"), 0x8046_b829_774a_4d25);
        assert_eq!(
            domain_hash("com"),
            suffix_step(SUFFIX_ROOT, label_hash(b"com"))
        );
    }

    #[test]
    fn suffix_is_label_based() {
        let example = domain_hash("example.com");
        let bad = domain_hash("badexample.com");
        assert_ne!(example, bad);
        // Every suffix of badexample.com, as the program computes them.
        let com = suffix_step(SUFFIX_ROOT, label_hash(b"com"));
        let bad_full = suffix_step(com, label_hash(b"badexample"));
        assert_eq!(bad_full, bad);
        assert_ne!(com, example);
        assert_ne!(bad_full, example);
        // And www.example.com does pass through example.com.
        let www = suffix_step(example, label_hash(b"www"));
        assert_eq!(www, domain_hash("www.example.com"));
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter() {
        assert_eq!(
            domain_hash("WWW.Example.COM."),
            domain_hash("www.example.com")
        );
        assert_eq!(label_hash(b"ExAmPlE"), label_hash(b"example"));
    }

    #[test]
    fn order_matters() {
        assert_ne!(domain_hash("a.b"), domain_hash("b.a"));
        assert_ne!(domain_hash("a.a"), domain_hash("a"));
        assert_eq!(domain_hash(""), SUFFIX_ROOT);
        assert_eq!(domain_hash("."), SUFFIX_ROOT);
    }

    #[test]
    fn hash_is_usable_in_const_context() {
        const H: u64 = domain_hash("example.com");
        assert_eq!(H, domain_hash("example.com"));
    }

    /// What the program does with a QNAME: hash labels left to right into the ring, then
    /// combine right to left, one lookup per suffix.
    fn program_suffixes(name: &str) -> [u64; MAX_DOMAIN_LABELS] {
        let mut ring = LabelRing::new();
        for label in name.split('.') {
            let mut h = LABEL_INIT;
            for &b in label.as_bytes() {
                h = label_step(h, b);
            }
            ring.push(h);
        }
        let mut out = [0; MAX_DOMAIN_LABELS];
        let mut h = SUFFIX_ROOT;
        let mut i = 0;
        while i < MAX_DOMAIN_LABELS && i < ring.len() {
            h = suffix_step(h, ring.from_root(i));
            out[i] = h;
            i += 1;
        }
        out
    }

    #[test]
    fn the_ring_reproduces_every_rule_hash() {
        let s = program_suffixes("WWW.Ads.Example.com");
        assert_eq!(s[0], domain_hash("com"));
        assert_eq!(s[1], domain_hash("example.com"));
        assert_eq!(s[2], domain_hash("ads.example.com"));
        assert_eq!(s[3], domain_hash("www.ads.example.com"));
        assert_eq!(s[4], 0);
    }

    #[test]
    fn a_deep_name_keeps_its_last_sixteen_labels() {
        let labels: [&str; 20] = [
            "l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "l10", "l11", "l12", "l13",
            "l14", "l15", "l16", "l17", "l18", "example",
        ];
        let mut name = [0u8; 128];
        let mut n = 0;
        for (i, l) in labels.iter().enumerate() {
            if i > 0 {
                name[n] = b'.';
                n += 1;
            }
            name[n..n + l.len()].copy_from_slice(l.as_bytes());
            n += l.len();
        }
        let name = core::str::from_utf8(&name[..n]).expect("ascii");
        let s = program_suffixes(name);
        assert_eq!(s[0], domain_hash("example"));
        assert_eq!(s[1], domain_hash("l18.example"));
        // The 16th suffix covers labels l4 .. example.
        let tail = name.splitn(5, '.').nth(4).expect("tail");
        assert_eq!(s[15], domain_hash(tail));
        assert_eq!(LabelRing::new().len(), 0);
        assert!(LabelRing::new().is_empty());
    }
}
