//! The per-segment address index: lets `query --ip` find a host's rows, or learn that a
//! segment has none, from the segment's footer alone instead of decoding its address columns.
//!
//! # Why this shape
//! Rows of a segment are sorted by (`src_ip`, `time_start`), so each source address is one
//! contiguous run of rows. Destination addresses are scattered over the whole row group.
//! - **Source side, exact:** the run table lists every distinct `src_ip` of a row group (in
//!   row order, hence ascending) with its run length. A gateway's sources are mostly its few
//!   hundred clients, so the table is a few hundred bytes per segment, and a prefix query
//!   (`--ip 10.0.0.0/24`) is a binary search giving one row range.
//! - **Destination side, probabilistic:** a Bloom filter of the distinct `dst_ip` values.
//!   An exact inverted index (address -> rows) would cost ~1-2 bytes per record on the
//!   generated mix (tens of thousands of distinct remote hosts per hour, each row referenced),
//!   which the 24-bytes-per-record budget cannot pay; the filter costs
//!   [`DST_BITS_PER_ADDRESS`] bits per *distinct* address. When it says "maybe", the reader
//!   falls back to the dictionary scan of the `dst_ip` column (`SegmentReader::address_mask`),
//!   which is exact, so a false positive costs time, never correctness.
//!
//! # Where it lives
//! Inside the segment file, as raw bytes between the last row group and the Parquet footer
//! (written with `SerializedFileWriter::write_all`, the parquet crate's documented way to embed
//! a custom index; every Parquet engine skips bytes no footer offset points at). The footer's
//! key-value metadata holds its location under [`INDEX_KEY`] as `"<offset>+<length>"`. So the
//! index is covered by the manifest's SHA-256 like every other byte of the file (no sidecar
//! file needing its own chain coverage), and it is stored binary: key-value values must be
//! UTF-8, and base64 would cost a third more of the size budget.
//!
//! - **NAT outside address, exact (version 2):** the outside address of every row as runs
//!   ([`super::nat_runs`]): a masquerading gateway gives a client its uplink's address, so
//!   the address changes with the source runs. `query --nat IP[:PORT]` takes the rows from
//!   the runs and tests the port only in the pages holding them.
//!
//! # Binary form (version 2)
//! ```text
//! u8      version = 2
//! varint  row groups
//! per row group:
//!   varint  rows
//!   varint  source runs
//!   per run: varint (address - previous address, as u128; the first from 0), varint run length
//!   varint  filter bits m (a multiple of 8; 0 = no filter: every address "maybe")
//!   u8      hash count k
//!   m/8     filter bytes (bit i is byte i/8, bit i%8)
//!   the outside addresses as runs (see [`super::nat_runs`]; absent in version 1)
//! u32 LE  CRC-32 of every byte before it
//! ```
//! Varints are LEB128. Addresses are the 16-byte column form as a big-endian `u128`.
//! Bit positions of an address are `(h1 + i * h2) mod m` for `i < k`, with `h1`, `h2` from
//! [`hash`]; that function is part of the format and must never change.
//!
//! A segment without the key (written before the index existed, or by another tool) is read by
//! the full scan path; a version 1 index (no outside addresses) answers `--ip` and leaves
//! `--nat` to the scan of the NAT columns. A key that does not parse, fails its CRC, or disagrees with the row
//! groups is an [`IndexError`]: the file is damaged, and guessing would risk wrong results.

use std::ops::Range;

use super::nat_runs::NatRuns;
use super::tail::{corrupt, open_blob_of, with_crc, TailError};
use crate::store::varint;

/// File metadata key holding the location of the address index: `"<offset>+<length>"`.
pub const INDEX_KEY: &str = "xdp-audit.addr-index";

/// Bloom filter bits per distinct destination address. With [`DST_HASHES`] = 3 the false
/// positive rate is about 15 %: an absent address still opens the `dst_ip` column of about one
/// segment in seven (a dictionary test, ~0.3 ms), which the query budget absorbs, while the
/// filter costs ~0.23 bytes per record on the generated mix at 13 flows/s (~22,000 distinct
/// remote hosts per hourly segment of ~47,000 records): the 24-byte budget has no room for more.
pub const DST_BITS_PER_ADDRESS: usize = 4;

/// Bloom filter hash count (optimal for [`DST_BITS_PER_ADDRESS`] is ~2.8).
pub const DST_HASHES: u8 = 3;

/// The version written; version 1 (no outside addresses) is still read.
const VERSION: u8 = 2;

/// Why an index could not be built or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// The writer was handed rows that are not sorted by source address.
    #[error("rows are not sorted by src_ip (row {row})")]
    Unsorted {
        /// The first row out of order.
        row: usize,
    },
    /// The source and destination columns differ in length.
    #[error("{src} src_ip values but {dst} dst_ip values")]
    Lengths {
        /// Source values.
        src: usize,
        /// Destination values.
        dst: usize,
    },
    /// The stored index is damaged or inconsistent.
    #[error("{0}")]
    Corrupt(String),
}

impl From<TailError> for IndexError {
    fn from(e: TailError) -> Self {
        IndexError::Corrupt(e.0)
    }
}

/// The index of one row group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupIndex {
    rows: usize,
    /// Distinct source addresses, ascending.
    src: Vec<u128>,
    /// `starts[i]`: first row of `src[i]`'s run; `starts[src.len()] == rows`.
    starts: Vec<usize>,
    bloom: Bloom,
    /// Outside addresses as runs; `None`: not indexed (version 1, or too many runs).
    nat: Option<NatRuns>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Bloom {
    bits: Vec<u8>,
    k: u8,
}

/// The address index of a whole segment: one [`GroupIndex`] per row group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressIndex {
    groups: Vec<GroupIndex>,
}

/// The two 64-bit hashes of an address for the destination filter. Part of the file format.
pub fn hash(addr: u128) -> (u64, u64) {
    fn fmix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let h1 = fmix((addr as u64) ^ fmix(((addr >> 64) as u64) ^ 0x9e37_79b9_7f4a_7c15));
    let h2 = fmix(h1 ^ 0x6a09_e667_f3bc_c909) | 1;
    (h1, h2)
}

impl Bloom {
    fn positions(&self, addr: u128) -> impl Iterator<Item = usize> + '_ {
        let m = (self.bits.len() * 8) as u64;
        let (h1, h2) = hash(addr);
        (0..u64::from(self.k)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    fn may_contain(&self, addr: u128) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        self.positions(addr)
            .all(|b| self.bits[b / 8] & (1 << (b % 8)) != 0)
    }
}

impl GroupIndex {
    /// Builds the index of one row group from its address columns in row order (16-byte
    /// column form). The rows must be sorted by source address, as the segment writer does.
    pub fn build(src: &[[u8; 16]], dst: &[[u8; 16]]) -> Result<Self, IndexError> {
        if src.len() != dst.len() {
            return Err(IndexError::Lengths {
                src: src.len(),
                dst: dst.len(),
            });
        }
        let mut addrs = Vec::new();
        let mut starts = Vec::new();
        for (row, a) in src.iter().enumerate() {
            let a = u128::from_be_bytes(*a);
            match addrs.last() {
                Some(&last) if last == a => {}
                Some(&last) if last > a => return Err(IndexError::Unsorted { row }),
                _ => {
                    addrs.push(a);
                    starts.push(row);
                }
            }
        }
        starts.push(src.len());
        let mut distinct: Vec<u128> = dst.iter().map(|a| u128::from_be_bytes(*a)).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let bytes = (distinct.len() * DST_BITS_PER_ADDRESS).div_ceil(8).max(8);
        let mut bloom = Bloom {
            bits: vec![0; bytes],
            k: DST_HASHES,
        };
        for &a in &distinct {
            let pos: Vec<usize> = bloom.positions(a).collect();
            for b in pos {
                bloom.bits[b / 8] |= 1 << (b % 8);
            }
        }
        Ok(Self {
            rows: src.len(),
            src: addrs,
            starts,
            bloom,
            nat: None,
        })
    }

    /// Adds the group's outside addresses (see [`NatRuns::build`]; `None`: not indexed).
    pub fn with_nat(mut self, nat: Option<NatRuns>) -> Result<Self, IndexError> {
        if let Some(n) = nat.as_ref().filter(|n| n.rows() != self.rows) {
            return Err(IndexError::Corrupt(format!(
                "{} outside address rows for {} rows",
                n.rows(),
                self.rows
            )));
        }
        self.nat = nat;
        Ok(self)
    }

    /// Rows in the group.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The rows whose source address lies in `[lo, hi]`: one range, as rows are sorted by it.
    pub fn src_rows(&self, lo: u128, hi: u128) -> std::ops::Range<usize> {
        let a = self.src.partition_point(|&x| x < lo);
        let b = self.src.partition_point(|&x| x <= hi);
        if a >= b {
            return 0..0;
        }
        self.starts[a]..self.starts[b]
    }

    /// Whether `addr` may be a destination address of the group (false: it certainly is not).
    pub fn dst_may_contain(&self, addr: u128) -> bool {
        self.bloom.may_contain(addr)
    }

    /// The row ranges whose NAT outside address is `addr` (16-byte column form as a number),
    /// ascending; `None` when the group's outside addresses are not indexed.
    pub fn nat_rows(&self, addr: u128) -> Option<Vec<Range<usize>>> {
        self.nat.as_ref().map(|n| n.rows_of(addr))
    }
}

impl AddressIndex {
    /// An index of the given row groups.
    pub fn new(groups: Vec<GroupIndex>) -> Self {
        Self { groups }
    }

    /// The index of row group `g`.
    pub fn group(&self, g: usize) -> Option<&GroupIndex> {
        self.groups.get(g)
    }

    /// Number of row groups indexed.
    pub fn row_groups(&self) -> usize {
        self.groups.len()
    }

    /// The stored (binary) form.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_version(VERSION)
    }

    /// The stored form of `version` (1: without the outside addresses, as segments written
    /// before them hold; for tests of the reader's fallback).
    #[cfg(any(test, feature = "testing"))]
    pub fn encode_v1(&self) -> Vec<u8> {
        self.encode_version(1)
    }

    fn encode_version(&self, version: u8) -> Vec<u8> {
        let mut out = vec![version];
        varint::put(&mut out, self.groups.len() as u128);
        for g in &self.groups {
            varint::put(&mut out, g.rows as u128);
            varint::put(&mut out, g.src.len() as u128);
            let mut prev = 0u128;
            for (i, &a) in g.src.iter().enumerate() {
                varint::put(&mut out, a - prev);
                varint::put(&mut out, (g.starts[i + 1] - g.starts[i]) as u128);
                prev = a;
            }
            varint::put(&mut out, (g.bloom.bits.len() * 8) as u128);
            out.push(g.bloom.k);
            out.extend_from_slice(&g.bloom.bits);
            if version >= 2 {
                NatRuns::encode(g.nat.as_ref(), &mut out);
            }
        }
        with_crc(out)
    }

    /// Parses the stored form, checking its CRC and that every run and filter is well formed.
    pub fn decode(raw: &[u8]) -> Result<Self, IndexError> {
        Self::parse(raw).map_err(IndexError::from)
    }

    fn parse(raw: &[u8]) -> Result<Self, TailError> {
        let (mut r, version) = open_blob_of(raw, 1..=VERSION)?;
        let body_len = r.0.len();
        let groups = r.len("row group count", body_len)?;
        let mut out = Vec::with_capacity(groups);
        for g in 0..groups {
            let rows = r.len("row count", usize::MAX)?;
            let runs = r.len("run count", body_len)?;
            let mut src = Vec::with_capacity(runs);
            let mut starts = Vec::with_capacity(runs + 1);
            let mut row = 0usize;
            let mut prev = 0u128;
            for i in 0..runs {
                let delta = r.varint()?;
                if i > 0 && delta == 0 {
                    return Err(corrupt(format!(
                        "row group {g}: run {i} repeats an address"
                    )));
                }
                prev = prev
                    .checked_add(delta)
                    .ok_or_else(|| corrupt(format!("row group {g}: run {i} address overflows")))?;
                let len = r.len("run length", rows)?;
                if len == 0 {
                    return Err(corrupt(format!("row group {g}: run {i} is empty")));
                }
                src.push(prev);
                starts.push(row);
                row = row
                    .checked_add(len)
                    .filter(|&n| n <= rows)
                    .ok_or_else(|| corrupt(format!("row group {g}: runs exceed {rows} rows")))?;
            }
            if row != rows {
                return Err(corrupt(format!(
                    "row group {g}: runs cover {row} of {rows} rows"
                )));
            }
            starts.push(rows);
            let m = r.len("filter bits", body_len * 8)?;
            if m % 8 != 0 {
                return Err(corrupt(format!("row group {g}: filter of {m} bits")));
            }
            let k = r.byte()?;
            if m > 0 && !(1..=16).contains(&k) {
                return Err(corrupt(format!("row group {g}: {k} filter hashes")));
            }
            let bits = r.take(m / 8)?.to_vec();
            let nat = if version >= 2 {
                NatRuns::parse(&mut r, g, rows)?
            } else {
                None
            };
            out.push(GroupIndex {
                rows,
                src,
                starts,
                bloom: Bloom { bits, k },
                nat,
            });
        }
        if !r.0.is_empty() {
            return Err(corrupt(format!(
                "{} bytes after the last row group",
                r.0.len()
            )));
        }
        Ok(Self { groups: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u128) -> [u8; 16] {
        n.to_be_bytes()
    }

    #[test]
    fn source_runs_and_destination_filter_answer_like_a_scan() {
        let src: Vec<[u8; 16]> = [5u128, 5, 5, 9, 12, 12, u128::MAX]
            .into_iter()
            .map(a)
            .collect();
        let dst: Vec<[u8; 16]> = [100u128, 7, 100, 3, 3, 1 << 100, 0]
            .into_iter()
            .map(a)
            .collect();
        let g = GroupIndex::build(&src, &dst).expect("build");
        let idx = AddressIndex::new(vec![g.clone(), g]);
        let back = AddressIndex::decode(&idx.encode()).expect("decode");
        assert_eq!(back, idx);
        let g = back.group(1).expect("group");
        assert_eq!(g.src_rows(5, 5), 0..3);
        assert_eq!(g.src_rows(9, 9), 3..4);
        assert_eq!(g.src_rows(6, 8), 0..0);
        assert_eq!(g.src_rows(0, 4), 0..0);
        assert_eq!(g.src_rows(6, 12), 3..6);
        assert_eq!(g.src_rows(0, u128::MAX), 0..7);
        assert_eq!(g.src_rows(u128::MAX, u128::MAX), 6..7);
        for d in [100u128, 7, 3, 1 << 100, 0] {
            assert!(g.dst_may_contain(d), "{d} must be found");
        }
        let false_positives = (1000u128..11_000).filter(|&d| g.dst_may_contain(d)).count();
        assert!(
            false_positives < 3000,
            "{false_positives} false positives in 10,000"
        );
    }

    #[test]
    fn the_filter_false_positive_rate_is_as_documented() {
        let dst: Vec<[u8; 16]> = (0..20_000u128).map(|i| a(i * 7919 + (1 << 40))).collect();
        let src = vec![a(1); dst.len()];
        let g = GroupIndex::build(&src, &dst).expect("build");
        assert!(dst
            .iter()
            .all(|d| g.dst_may_contain(u128::from_be_bytes(*d))));
        let fp = (0..100_000u128)
            .filter(|&i| g.dst_may_contain((1 << 90) + i))
            .count();
        assert!(
            (10_000..20_000).contains(&fp),
            "{fp} false positives in 100,000 probes (expected ~15 %)"
        );
    }

    #[test]
    fn unsorted_sources_and_mismatched_lengths_are_refused() {
        let err = GroupIndex::build(&[a(2), a(1)], &[a(0), a(0)]).expect_err("unsorted");
        assert_eq!(err, IndexError::Unsorted { row: 1 });
        assert!(GroupIndex::build(&[a(1)], &[]).is_err());
    }

    #[test]
    fn every_damaged_byte_is_refused_not_misread() {
        let src: Vec<[u8; 16]> = (0..50u128).map(|i| a(i / 5)).collect();
        let dst: Vec<[u8; 16]> = (0..50u128).map(|i| a(i * 3)).collect();
        let g = GroupIndex::build(&src, &dst).expect("build");
        let raw = AddressIndex::new(vec![g]).encode();
        for i in 0..raw.len() {
            for flip in [1u8, 0x80] {
                let mut bad = raw.clone();
                bad[i] ^= flip;
                assert!(
                    AddressIndex::decode(&bad).is_err(),
                    "byte {i} ^ {flip:#x} accepted"
                );
            }
        }
        for cut in 0..raw.len() {
            assert!(AddressIndex::decode(&raw[..cut]).is_err());
        }
    }

    #[test]
    fn a_consistent_but_wrong_index_is_refused_by_its_structure_checks() {
        // Runs that do not cover the rows, even with a valid checksum.
        let mut out = vec![VERSION];
        for v in [1u128, 10, 1, 5, 3, 0] {
            varint::put(&mut out, v);
        }
        out.push(0);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let err = AddressIndex::decode(&out).expect_err("must refuse");
        assert!(err.to_string().contains("cover 3 of 10"), "{err}");
    }
}
