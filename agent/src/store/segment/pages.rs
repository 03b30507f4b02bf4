//! The per-segment page table: where every page of every column chunk lies, how many rows it
//! holds, and its CRC-32. With it a query that needs a few scattered rows reads and checks
//! only the pages holding them, instead of reading and checksumming whole column chunks (the
//! chunk CRCs of `schema::CRC_KEY`): on a remote host present in every row group of 90
//! days, reading whole chunks was a third of the query.
//!
//! A tail blob like the address index (see [`super::tail`]): raw bytes between the last row
//! group and the Parquet footer, located by the key-value metadata [`PAGES_KEY`] as
//! `"<offset>+<length>"`, covered by the manifest's SHA-256. Parquet's own page headers carry
//! no checksum as the parquet crate writes them, and its offset index would still leave the
//! pages unchecked.
//!
//! # Binary form (version 1)
//! ```text
//! u8      version = 1
//! varint  row groups
//! per row group: varint columns
//!   per column chunk: varint pages
//!     per page (in file order, from the chunk's first byte): varint length (header
//!     included), varint rows (0 for the dictionary page, which may only come first),
//!     u32 LE CRC-32 of the page's bytes
//! u32 LE  CRC-32 of every byte before it
//! ```

use super::tail::{corrupt, open_blob, with_crc, TailError};
use crate::store::varint;

/// The error text of a page whose bytes do not match its CRC-32, whoever reads it.
pub fn damaged_page(at: u64, len: u64) -> String {
    format!(
        "checksum mismatch in the page at bytes {at}..{} (file damaged; run `xdp-audit verify`)",
        at + len
    )
}

/// File metadata key holding the location of the page table: `"<offset>+<length>"`.
pub const PAGES_KEY: &str = "xdp-audit.page-table";

const VERSION: u8 = 1;

/// One page of a column chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Bytes, page header included.
    pub len: u32,
    /// Rows; 0 for the dictionary page.
    pub rows: u32,
    /// CRC-32 of the page's bytes.
    pub crc: u32,
}

/// Pages of every column chunk: `[row group][column]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageTable {
    groups: Vec<Vec<Vec<Page>>>,
}

impl PageTable {
    /// Adds the pages of the next row group, one list per column.
    pub fn push_group(&mut self, columns: Vec<Vec<Page>>) {
        self.groups.push(columns);
    }

    /// The pages of column `c` of row group `g`.
    pub fn pages(&self, g: usize, c: usize) -> Option<&[Page]> {
        Some(self.groups.get(g)?.get(c)?)
    }

    /// The pages of column `c` of row group `g`, each with its file offset, the chunk
    /// starting at `start` (pages follow each other from the chunk's first byte).
    pub fn placed(&self, g: usize, c: usize, start: u64) -> impl Iterator<Item = (u64, Page)> + '_ {
        self.pages(g, c)
            .unwrap_or_default()
            .iter()
            .scan(start, |at, &p| {
                let here = *at;
                *at += u64::from(p.len);
                Some((here, p))
            })
    }

    /// Row groups described.
    pub fn row_groups(&self) -> usize {
        self.groups.len()
    }

    /// Checks row group `g` against the file: `chunks` holds each column chunk's byte
    /// length, `rows` the group's rows. Every chunk must be covered exactly, its data pages
    /// must hold exactly the group's rows, and a dictionary page may only come first.
    pub fn check_group(&self, g: usize, chunks: &[u64], rows: u64) -> Result<(), TailError> {
        let cols = self
            .groups
            .get(g)
            .ok_or_else(|| corrupt(format!("row group {g} missing")))?;
        if cols.len() != chunks.len() {
            return Err(corrupt(format!(
                "row group {g}: {} columns, the file has {}",
                cols.len(),
                chunks.len()
            )));
        }
        for (c, (pages, &len)) in cols.iter().zip(chunks).enumerate() {
            let bytes: u64 = pages.iter().map(|p| u64::from(p.len)).sum();
            let held: u64 = pages.iter().map(|p| u64::from(p.rows)).sum();
            let late_dict = pages.iter().skip(1).any(|p| p.rows == 0);
            if bytes != len || held != rows || late_dict {
                return Err(corrupt(format!(
                    "row group {g} column {c}: pages cover {bytes} of {len} bytes and {held} of {rows} rows"
                )));
            }
        }
        Ok(())
    }

    /// The stored (binary) form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        varint::put(&mut out, self.groups.len() as u128);
        for cols in &self.groups {
            varint::put(&mut out, cols.len() as u128);
            for pages in cols {
                varint::put(&mut out, pages.len() as u128);
                for p in pages {
                    varint::put(&mut out, u128::from(p.len));
                    varint::put(&mut out, u128::from(p.rows));
                    out.extend_from_slice(&p.crc.to_le_bytes());
                }
            }
        }
        with_crc(out)
    }

    /// Parses the stored form, checking its CRC (the structure is checked against the file by
    /// [`Self::check_group`]).
    pub fn decode(raw: &[u8]) -> Result<Self, TailError> {
        let mut r = open_blob(raw, VERSION)?;
        let max = r.0.len();
        let groups = (0..r.len("row group count", max)?)
            .map(|_| {
                (0..r.len("column count", max)?)
                    .map(|_| {
                        (0..r.len("page count", max)?)
                            .map(|_| {
                                let len = r.len("page length", u32::MAX as usize)? as u32;
                                let rows = r.len("page rows", u32::MAX as usize)? as u32;
                                let crc = r.take(4)?;
                                let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
                                Ok(Page { len, rows, crc })
                            })
                            .collect::<Result<Vec<_>, TailError>>()
                    })
                    .collect::<Result<Vec<_>, TailError>>()
            })
            .collect::<Result<Vec<_>, TailError>>()?;
        if !r.0.is_empty() {
            return Err(corrupt(format!(
                "{} bytes after the last row group",
                r.0.len()
            )));
        }
        Ok(Self { groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PageTable {
        let mut t = PageTable::default();
        let p = |len, rows, crc| Page { len, rows, crc };
        t.push_group(vec![
            vec![p(100, 0, 1), p(300, 2048, 2), p(200, 952, 3)],
            vec![p(600, 3000, 0xdead_beef)],
        ]);
        t.push_group(vec![vec![p(50, 7, 9)], vec![p(10, 0, 5), p(40, 7, 6)]]);
        t
    }

    #[test]
    fn round_trips_and_checks_against_the_file() {
        let t = table();
        let back = PageTable::decode(&t.encode()).expect("decode");
        assert_eq!(back, t);
        assert_eq!(back.pages(0, 1).map(<[Page]>::len), Some(1));
        back.check_group(0, &[600, 600], 3000)
            .expect("group 0 fits");
        back.check_group(1, &[50, 50], 7).expect("group 1 fits");
        for (chunks, rows) in [(&[601, 600][..], 3000), (&[600, 600], 2999), (&[600], 3000)] {
            assert!(
                back.check_group(0, chunks, rows).is_err(),
                "{chunks:?} {rows}"
            );
        }
        assert!(back.check_group(2, &[], 0).is_err());
    }

    #[test]
    fn a_late_dictionary_page_is_refused() {
        let mut t = PageTable::default();
        t.push_group(vec![vec![
            Page {
                len: 10,
                rows: 5,
                crc: 0,
            },
            Page {
                len: 10,
                rows: 0,
                crc: 0,
            },
        ]]);
        assert!(t.check_group(0, &[20], 5).is_err());
    }

    #[test]
    fn every_damaged_byte_is_refused() {
        let raw = table().encode();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x10;
            assert!(
                PageTable::decode(&bad).is_err(),
                "byte {i} flipped was accepted"
            );
        }
        assert!(PageTable::decode(&raw[..raw.len() - 1]).is_err());
    }
}
