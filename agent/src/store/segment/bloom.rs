//! Identity filters: Parquet split-block Bloom filters on the identity columns a lawful
//! question names (`src_mac`, `dst_mac`, `user`, `domain`, `dns_qname`), one per column chunk,
//! so a lookup by MAC, account or name skips every row group that cannot hold it from a few
//! hundred bytes per row group, and so do DuckDB, Trino and Spark reading our files.
//!
//! # Why Parquet's filters, and why these columns
//! - They are the standard form (`ColumnMetaData.bloom_filter_offset/length`, xxHash64,
//!   256-bit blocks), written by the parquet crate as it encodes a chunk and folded down to
//!   the target false positive rate, so other engines prune with them too.
//! - MACs and accounts follow the client, so a row group holds a few hundred of them: their
//!   filters cost ~0.001 byte per record on the 100 M-record bench store's merged days. Names
//!   are more numerous (tens of thousands a day): 0.059 byte per record per name column.
//! - Ports are not filtered: a source port is random (tens of thousands of distinct values
//!   per row group, more than the names) and a service port is in every row group, so a
//!   filter would cost bytes and skip nothing. `query --port` scans.
//! - Addresses have the address index ([`super::index`]) and the NAT outside address its
//!   runs ([`super::nat_runs`]).
//!
//! # Names and the names under them
//! `query --domain NAME` matches NAME and every name under it. So each name column's filter
//! also holds every parent name of every value (`www.example.com` adds `example.com` and
//! `com`), lower-cased without a trailing dot: a row group whose filters say no to NAME holds
//! no name under it. An engine testing `domain = 'example.com'` may read a row group holding
//! only `www.example.com` (a false positive, never a wrong answer).
//!
//! # Integrity
//! The filters lie outside the column chunks, so the chunk CRCs do not cover them; a damaged
//! filter could say "absent" for a value that is there. Their CRC-32s are in the file
//! metadata under [`BLOOM_KEY`] (`<column>:<crc hex>` per filter, `,` between columns, `;`
//! between row groups), checked before a filter is used: a mismatch is an error naming the
//! file, as for the address index (the same damage could have hit the columns).

use parquet::bloom_filter::Sbbf;
use parquet::file::reader::FileReader;

use super::read::SegmentReader;
use super::schema::col;
use super::SegmentError;

/// File metadata key holding the CRC-32 of every Bloom filter (see the module docs).
pub const BLOOM_KEY: &str = "xdp-audit.bloom-crc32";

/// Columns written with a Bloom filter, and the target false positive rate of each. MACs
/// and accounts are few per row group, so 1 % costs next to nothing. Names are many: at 4 %
/// (before their parent names are added, which raises the rate by their share) the writer
/// folds their filters to half the size of 2 % (0.059 byte per record each on a merged day
/// at 2 %); a false positive costs a row group's dictionary test, not a wrong answer.
pub const FILTERED: [(usize, f64); 5] = [
    (col::SRC_MAC, 0.01),
    (col::DST_MAC, 0.01),
    (col::USER, 0.01),
    (col::DOMAIN, 0.04),
    (col::DNS_QNAME, 0.04),
];

/// Whether column `c` holds names whose filters also hold their parent names.
pub fn holds_parents(c: usize) -> bool {
    matches!(c, col::DOMAIN | col::DNS_QNAME)
}

/// Adds `name` (lower-cased, without a trailing dot) and each of its parent names to `bloom`.
pub fn insert_name_and_parents(bloom: &mut Sbbf, name: &str) {
    let name = name.strip_suffix('.').unwrap_or(name);
    let lower;
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        lower = name.to_ascii_lowercase();
        &lower
    } else {
        name
    };
    let mut rest = name;
    loop {
        if !rest.is_empty() {
            bloom.insert(rest);
        }
        match rest.split_once('.') {
            Some((_, parent)) => rest = parent,
            None => break,
        }
    }
}

/// The stored form of a filter (header and bitset, as the Parquet writer writes it) and its
/// CRC-32.
pub fn crc_of(bloom: &Sbbf) -> parquet::errors::Result<u32> {
    let mut raw = Vec::new();
    bloom.write(&mut raw)?;
    Ok(crc32fast::hash(&raw))
}

/// The value of [`BLOOM_KEY`]: per row group, the `(column, crc)` of each filter.
pub fn encode_crcs(groups: &[Vec<(usize, u32)>]) -> String {
    groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|(c, crc)| format!("{c}:{crc:08x}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(";")
}

impl SegmentReader {
    /// The Bloom filter of column `c` in row group `g`, its CRC checked; `None` when the
    /// segment has none for it (written before the filters, or a column without one).
    pub fn bloom(&self, g: usize, c: usize) -> Result<Option<Sbbf>, SegmentError> {
        let Some((at, len, crc)) = self.bloom_range(g, c)? else {
            return Ok(None);
        };
        let mut raw = vec![0u8; len as usize];
        use std::os::unix::fs::FileExt;
        self.file
            .read_exact_at(&mut raw, at)
            .map_err(|source| SegmentError::Io {
                path: self.path.clone(),
                op: "read Bloom filter",
                cause: source,
            })?;
        if crc32fast::hash(&raw) != crc {
            return Err(self.invalid(
                c,
                format!(
                    "row group {g}: Bloom filter checksum mismatch at bytes {at}..{} (file damaged; run `xdp-audit verify`)",
                    at + len
                ),
            ));
        }
        Sbbf::from_bytes(&raw).map(Some).map_err(|e| {
            self.invalid(
                c,
                format!("row group {g}: Bloom filter does not parse: {e}"),
            )
        })
    }

    /// Where the Bloom filter of column `c` in row group `g` lies, and its CRC-32:
    /// `(offset, length, CRC-32)`, checked to lie inside the file; `None` when the segment
    /// has none for it. The SQL engine's reads of it are checked against this too.
    pub fn bloom_range(&self, g: usize, c: usize) -> Result<Option<(u64, u64, u32)>, SegmentError> {
        let Some(text) = self.key_value(BLOOM_KEY) else {
            return Ok(None);
        };
        let bad = |reason: String| self.bad_key(BLOOM_KEY, reason);
        let groups: Vec<&str> = text.split(';').collect();
        if groups.len() != self.row_groups() {
            return Err(bad(format!(
                "covers {} row groups, the file has {}",
                groups.len(),
                self.row_groups()
            )));
        }
        let mut want = None;
        for entry in groups[g].split(',').filter(|e| !e.is_empty()) {
            let parsed = entry.split_once(':').and_then(|(col, crc)| {
                Some((
                    col.parse::<usize>().ok()?,
                    u32::from_str_radix(crc, 16).ok()?,
                ))
            });
            match parsed {
                Some((col, crc)) if col == c => want = Some(crc),
                Some(_) => {}
                None => {
                    return Err(bad(format!(
                        "row group {g}: entry {entry:?} is not COLUMN:CRC"
                    )))
                }
            }
        }
        let Some(crc) = want else {
            return Ok(None);
        };
        let meta = self.reader.metadata().row_group(g).column(c);
        let (Some(at), Some(len)) = (meta.bloom_filter_offset(), meta.bloom_filter_length()) else {
            return Err(self.invalid(
                c,
                format!("row group {g}: the Bloom filter its CRC names is not in the footer"),
            ));
        };
        let (at, len) = match (u64::try_from(at), u64::try_from(len)) {
            (Ok(a), Ok(l)) if a.checked_add(l).is_some_and(|e| e <= self.size) => (a, l),
            _ => {
                return Err(self.invalid(
                    c,
                    format!(
                        "row group {g}: Bloom filter at {at}+{len} is outside the file ({} bytes)",
                        self.size
                    ),
                ))
            }
        };
        Ok(Some((at, len, crc)))
    }

    /// Whether `value` may be in column `c` of row group `g` (`None`: no filter).
    fn may_hold(&self, g: usize, c: usize, value: &[u8]) -> Result<Option<bool>, SegmentError> {
        Ok(self.bloom(g, c)?.map(|b| b.check(value)))
    }

    /// Whether row group `g` may hold a record with `mac` as source or destination MAC
    /// (`Some(false)`: certainly not; `None`: not indexed, scan).
    pub fn mac_may_be_in(&self, g: usize, mac: [u8; 6]) -> Result<Option<bool>, SegmentError> {
        either(self.may_hold(g, col::SRC_MAC, &mac)?, || {
            self.may_hold(g, col::DST_MAC, &mac)
        })
    }

    /// Whether row group `g` may hold a record of account `user` (as [`Self::mac_may_be_in`]).
    pub fn user_may_be_in(&self, g: usize, user: &str) -> Result<Option<bool>, SegmentError> {
        if !self.has_attribution() {
            return Ok(Some(false));
        }
        self.may_hold(g, col::USER, user.as_bytes())
    }

    /// Whether row group `g` may hold a record whose `domain` or `dns_qname` is `name` or a
    /// name under it; `name` lower case without a trailing dot, as `query --domain`
    /// normalises it (as [`Self::mac_may_be_in`]).
    pub fn domain_may_be_in(&self, g: usize, name: &str) -> Result<Option<bool>, SegmentError> {
        if !self.has_attribution() {
            return Ok(Some(false));
        }
        either(self.may_hold(g, col::DOMAIN, name.as_bytes())?, || {
            self.may_hold(g, col::DNS_QNAME, name.as_bytes())
        })
    }

    /// Whether row group `g` may hold a record with source or destination port `port`:
    /// always `None` (not indexed; see the module docs for why).
    pub fn port_may_be_in(&self, _g: usize, _port: u16) -> Result<Option<bool>, SegmentError> {
        Ok(None)
    }
}

/// Either of two columns' answers: `None` if either has no filter.
fn either(
    a: Option<bool>,
    b: impl FnOnce() -> Result<Option<bool>, SegmentError>,
) -> Result<Option<bool>, SegmentError> {
    match a {
        None => Ok(None),
        Some(true) => Ok(Some(true)),
        Some(false) => b(),
    }
}
