//! The segment's tail: raw blobs between the last row group and the Parquet footer (the
//! address index, [`super::index`], and the page table, [`super::pages`]), which every
//! Parquet engine skips, each located by a key-value metadata entry `"<offset>+<length>"`
//! and framed the same way: a version byte first, a CRC-32 of everything before it last.
//! Blobs are covered by the manifest's SHA-256 like every other byte of the file.
//!
//! This module holds that shared framing (encoding, checking, the cursor the blobs are
//! parsed with) and the reader's access to the blobs.

use std::sync::Arc;

use parquet::file::reader::FileReader;

use super::index::{AddressIndex, INDEX_KEY};
use super::pages::{PageTable, PAGES_KEY};
use super::read::SegmentReader;
use super::SegmentError;
use crate::store::varint;

/// A tail blob that is damaged or inconsistent with its segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TailError(pub String);

/// A [`TailError`] saying `reason`.
pub fn corrupt(reason: impl Into<String>) -> TailError {
    TailError(reason.into())
}

/// `body` followed by its CRC-32 (LE): the stored form of a blob.
pub fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// Checks a stored blob's CRC-32 and version byte; returns a cursor after the version.
pub fn open_blob(raw: &[u8], version: u8) -> Result<Cursor<'_>, TailError> {
    open_blob_of(raw, version..=version).map(|(r, _)| r)
}

/// As [`open_blob`] for a blob read in any of `versions`; returns the version too.
pub fn open_blob_of(
    raw: &[u8],
    versions: std::ops::RangeInclusive<u8>,
) -> Result<(Cursor<'_>, u8), TailError> {
    let (body, crc) = raw
        .split_last_chunk::<4>()
        .ok_or_else(|| corrupt("shorter than its checksum"))?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err(corrupt("checksum mismatch"));
    }
    let mut r = Cursor(body);
    let v = r.byte()?;
    if !versions.contains(&v) {
        return Err(corrupt(format!("unknown version {v}")));
    }
    Ok((r, v))
}

/// Reads a blob's body front to back.
pub struct Cursor<'a>(pub &'a [u8]);

impl Cursor<'_> {
    /// One byte.
    pub fn byte(&mut self) -> Result<u8, TailError> {
        let (&b, rest) = self.0.split_first().ok_or_else(|| corrupt("cut short"))?;
        self.0 = rest;
        Ok(b)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&[u8], TailError> {
        if n > self.0.len() {
            return Err(corrupt("cut short"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    /// A varint (see [`crate::store::varint`]) of up to 128 bits.
    pub fn varint(&mut self) -> Result<u128, TailError> {
        let (v, used) = varint::get::<u128>(self.0).map_err(|e| corrupt(format!("varint {e}")))?;
        self.0 = &self.0[used..];
        Ok(v)
    }

    /// A count, refused above `max` (so a damaged count cannot make us allocate wildly).
    pub fn len(&mut self, what: &str, max: usize) -> Result<usize, TailError> {
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| corrupt(format!("{what} {v} out of range")))
    }
}

/// The metadata value locating a blob at `offset` of `len` bytes.
pub fn location(offset: u64, len: u64) -> String {
    format!("{offset}+{len}")
}

/// Parses a blob location (`"<offset>+<length>"`) into (offset, length).
pub fn parse_location(value: &str) -> Result<(u64, u64), TailError> {
    let (o, l) = value
        .split_once('+')
        .ok_or_else(|| corrupt(format!("location {value:?} is not <offset>+<length>")))?;
    match (o.parse(), l.parse()) {
        (Ok(o), Ok(l)) => Ok((o, l)),
        _ => Err(corrupt(format!(
            "location {value:?} is not <offset>+<length>"
        ))),
    }
}

impl SegmentReader {
    /// The segment's address index ([`super::index`]), checked against the row groups;
    /// `None` for a segment written before the index existed (read by the full scan path).
    /// A damaged index is an error naming the file, never a silent fallback: the same damage
    /// could as well have hit the columns.
    pub fn address_index(&self) -> Result<Option<AddressIndex>, SegmentError> {
        let Some(raw) = self.blob(INDEX_KEY, "read address index")? else {
            return Ok(None);
        };
        let bad = |reason: String| self.bad_key(INDEX_KEY, reason);
        let index = AddressIndex::decode(&raw).map_err(|e| bad(e.to_string()))?;
        if index.row_groups() != self.row_groups() {
            return Err(bad(format!(
                "indexes {} row groups, the file has {}",
                index.row_groups(),
                self.row_groups()
            )));
        }
        for g in 0..self.row_groups() {
            let rows = self.reader.metadata().row_group(g).num_rows();
            let indexed = index.group(g).map_or(0, |x| x.rows());
            if usize::try_from(rows).ok() != Some(indexed) {
                return Err(bad(format!(
                    "row group {g}: indexes {indexed} rows, the file has {rows}"
                )));
            }
        }
        Ok(Some(index))
    }

    pub(super) fn bad_key(&self, key: &str, reason: String) -> SegmentError {
        SegmentError::Invalid {
            path: self.path.clone(),
            column: format!("(file metadata {key})"),
            reason,
        }
    }

    /// The value of the file's key-value metadata entry `key` (`None`: no such key; an
    /// entry without a value reads as empty).
    pub(super) fn key_value(&self, key: &str) -> Option<&str> {
        self.reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == key))
            .map(|kv| kv.value.as_deref().unwrap_or_default())
    }

    /// The bytes a key-value entry `"<offset>+<length>"` points at (`None`: no such key).
    /// Such blobs lie between the data and the footer: bounded by the file, and small.
    fn blob(&self, key: &str, op: &'static str) -> Result<Option<Vec<u8>>, SegmentError> {
        let Some(text) = self.key_value(key) else {
            return Ok(None);
        };
        let (at, len) = parse_location(text).map_err(|e| self.bad_key(key, e.to_string()))?;
        let size = self.size;
        if at.checked_add(len).is_none_or(|end| end > size) || len > size / 2 + 4096 {
            return Err(self.bad_key(
                key,
                format!("location {at}+{len} is outside the file ({size} bytes)"),
            ));
        }
        let mut raw = vec![0u8; len as usize];
        use std::os::unix::fs::FileExt;
        self.file
            .read_exact_at(&mut raw, at)
            .map_err(|source| SegmentError::Io {
                path: self.path.clone(),
                op,
                cause: source,
            })?;
        Ok(Some(raw))
    }

    /// The segment's page table ([`super::pages`]), checked against every column chunk;
    /// `None` for a segment written before it existed (read chunk by chunk).
    pub(super) fn page_table(&self) -> Result<Option<Arc<PageTable>>, SegmentError> {
        if let Some(t) = self.pages.get() {
            return Ok(t.clone());
        }
        let table = match self.blob(PAGES_KEY, "read page table")? {
            None => None,
            Some(raw) => {
                let bad = |e: TailError| self.bad_key(PAGES_KEY, e.to_string());
                let t = PageTable::decode(&raw).map_err(bad)?;
                let meta = self.reader.metadata();
                if t.row_groups() != meta.num_row_groups() {
                    return Err(self.bad_key(
                        PAGES_KEY,
                        format!(
                            "describes {} row groups, the file has {}",
                            t.row_groups(),
                            meta.num_row_groups()
                        ),
                    ));
                }
                for (g, rg) in meta.row_groups().iter().enumerate() {
                    let chunks: Vec<u64> = rg.columns().iter().map(|c| c.byte_range().1).collect();
                    t.check_group(g, &chunks, rg.num_rows().max(0) as u64)
                        .map_err(bad)?;
                }
                Some(Arc::new(t))
            }
        };
        Ok(self.pages.get_or_init(|| table).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_round_trip_and_junk_is_refused() {
        assert_eq!(parse_location(&location(4, 1234)), Ok((4, 1234)));
        for bad in ["", "12", "+3", "3+", "a+b", "-1+2", "1+2+3"] {
            assert!(parse_location(bad).is_err(), "{bad:?}");
        }
    }
}
