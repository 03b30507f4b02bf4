//! The address scan: which rows of a row group hold an address, and the addresses of chosen
//! rows, decoded from the column pages directly (a dictionary entry is tested once, rows
//! match by dictionary index), so a query by address never materialises a value it does not
//! need.

use parquet::basic::Encoding;
use parquet::column::page::Page;
use parquet::file::reader::RowGroupReader;

use super::read::SegmentReader;
use super::schema::{col, column_name};
use super::{pq, SegmentError};
use crate::store::varint;

impl SegmentReader {
    /// Rows of row group `i` whose `src_ip` or `dst_ip` satisfies `contains`. The address
    /// columns are scanned from their pages directly: each dictionary entry is tested once and
    /// rows are matched by their dictionary index, without materialising a value; a column
    /// whose dictionary holds no match and whose pages are all dictionary-encoded is skipped.
    pub fn address_mask(
        &self,
        i: usize,
        contains: &dyn Fn(&[u8; 16]) -> bool,
    ) -> Result<Vec<bool>, SegmentError> {
        self.address_mask_of(i, &[col::SRC_IP, col::DST_IP], contains)
    }

    /// Rows of row group `i` whose `dst_ip` satisfies `contains` (as [`Self::address_mask`],
    /// for the destination column alone: the source side is answered by the address index).
    pub fn dst_mask(
        &self,
        i: usize,
        contains: &dyn Fn(&[u8; 16]) -> bool,
    ) -> Result<Vec<bool>, SegmentError> {
        self.address_mask_of(i, &[col::DST_IP], contains)
    }

    fn address_mask_of(
        &self,
        i: usize,
        columns: &[usize],
        contains: &dyn Fn(&[u8; 16]) -> bool,
    ) -> Result<Vec<bool>, SegmentError> {
        let rg = self.load(i, columns)?;
        let rows = rg.metadata().num_rows().max(0) as usize;
        let mut mask = vec![false; rows];
        for &c in columns {
            let meta = rg.metadata().column(c);
            let all_dict = meta.dictionary_page_offset().is_some()
                && meta.page_encoding_stats_mask().is_some_and(|m| {
                    m.is_only(Encoding::PLAIN_DICTIONARY) || m.is_only(Encoding::RLE_DICTIONARY)
                });
            let ctx = || format!("column {}", column_name(c));
            let mut pages = rg
                .get_column_page_reader(c)
                .map_err(|e| pq(&self.path, ctx())(e))?;
            let mut hits: Vec<bool> = Vec::new();
            let mut row = 0usize;
            while let Some(page) = pages
                .get_next_page()
                .map_err(|e| pq(&self.path, ctx())(e))?
            {
                let (values, n, encoding) = match page {
                    Page::DictionaryPage {
                        buf, num_values, ..
                    } => {
                        if buf.len() != num_values as usize * 16 {
                            return Err(
                                self.invalid(c, "dictionary page is not 16 bytes per value")
                            );
                        }
                        hits = buf
                            .chunks_exact(16)
                            .map(|v| {
                                let mut a = [0u8; 16];
                                a.copy_from_slice(v);
                                contains(&a)
                            })
                            .collect();
                        if all_dict && !hits.contains(&true) {
                            break; // no entry matches and every page indexes the dictionary
                        }
                        continue;
                    }
                    data => data_values(data),
                };
                let end = row + n;
                let out = mask
                    .get_mut(row..end)
                    .ok_or_else(|| self.invalid(c, format!("pages hold more than {rows} rows")))?;
                match encoding {
                    Encoding::PLAIN => {
                        if values.len() < n * 16 {
                            return Err(self.invalid(c, format!("page at row {row} is short")));
                        }
                        for (m, v) in out.iter_mut().zip(values.chunks_exact(16)) {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(v);
                            *m |= contains(&a);
                        }
                    }
                    Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                        decode_dict_indices(&values, n, |k, idx| {
                            if hits.get(idx as usize).copied().unwrap_or(false) {
                                out[k] = true;
                            }
                        })
                        .map_err(|e| self.invalid(c, format!("page at row {row}: {e}")))?;
                    }
                    e => return Err(self.invalid(c, format!("unexpected page encoding {e:?}"))),
                }
                row = end;
            }
        }
        Ok(mask)
    }

    /// Values of address column `c` (16-byte form) at the rows of `runs` (ascending, disjoint),
    /// decoded from the pages directly: the dictionary stays one buffer and rows index into it,
    /// instead of one reference-counted value per dictionary entry (tens of thousands for
    /// `dst_ip`, decoded for every segment a query reads rows from). Pages holding none of the
    /// rows are skipped without being decompressed.
    pub(super) fn addresses(
        &self,
        rg: &dyn RowGroupReader,
        c: usize,
        runs: &[(usize, usize)],
    ) -> Result<Vec<[u8; 16]>, SegmentError> {
        let ctx = || format!("column {}", column_name(c));
        let total: usize = runs.iter().map(|r| r.1).sum();
        let mut out: Vec<[u8; 16]> = Vec::with_capacity(total);
        let mut pages = rg
            .get_column_page_reader(c)
            .map_err(|e| pq(&self.path, ctx())(e))?;
        let mut dict = bytes::Bytes::new();
        let mut row = 0usize;
        let mut ri = 0usize; // first run not wholly before `row`
        while out.len() < total {
            let Some(meta) = pages
                .peek_next_page()
                .map_err(|e| pq(&self.path, ctx())(e))?
            else {
                break;
            };
            if !meta.is_dict {
                let n = meta
                    .num_rows
                    .or(meta.num_levels)
                    .ok_or_else(|| self.invalid(c, format!("page at row {row}: no row count")))?;
                while runs.get(ri).is_some_and(|&(s, l)| s + l <= row) {
                    ri += 1;
                }
                if runs.get(ri).is_none_or(|&(s, _)| s >= row + n) {
                    pages
                        .skip_next_page()
                        .map_err(|e| pq(&self.path, ctx())(e))?;
                    row += n;
                    continue;
                }
            }
            let Some(page) = pages
                .get_next_page()
                .map_err(|e| pq(&self.path, ctx())(e))?
            else {
                break;
            };
            let (values, n, encoding) = match page {
                Page::DictionaryPage {
                    buf, num_values, ..
                } => {
                    if buf.len() != num_values as usize * 16 {
                        return Err(self.invalid(c, "dictionary page is not 16 bytes per value"));
                    }
                    dict = buf;
                    continue;
                }
                data => data_values(data),
            };
            // Rows of this page inside a run, in order.
            let mut r = ri;
            let mut want = |k: usize| {
                let at = row + k;
                while runs.get(r).is_some_and(|&(s, l)| s + l <= at) {
                    r += 1;
                }
                runs.get(r).is_some_and(|&(s, _)| s <= at)
            };
            match encoding {
                Encoding::PLAIN => {
                    if values.len() < n * 16 {
                        return Err(self.invalid(c, format!("page at row {row} is short")));
                    }
                    for (k, v) in values.chunks_exact(16).take(n).enumerate() {
                        if want(k) {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(v);
                            out.push(a);
                        }
                    }
                }
                Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                    let mut bad = None;
                    decode_dict_indices(&values, n, |k, idx| {
                        if want(k) {
                            let at = idx as usize * 16;
                            match dict.get(at..at + 16) {
                                Some(v) => {
                                    let mut a = [0u8; 16];
                                    a.copy_from_slice(v);
                                    out.push(a);
                                }
                                None => bad = Some(idx),
                            }
                        }
                    })
                    .map_err(|e| self.invalid(c, format!("page at row {row}: {e}")))?;
                    if let Some(idx) = bad {
                        return Err(self.invalid(
                            c,
                            format!("page at row {row}: dictionary index {idx} out of range"),
                        ));
                    }
                }
                e => return Err(self.invalid(c, format!("unexpected page encoding {e:?}"))),
            }
            row += n;
        }
        if out.len() != total {
            return Err(self.invalid(c, format!("{} values for {total} rows", out.len())));
        }
        Ok(out)
    }
}

/// Decodes `n` dictionary indices of a data page (bit width byte, then the RLE/bit-packed
/// hybrid of the Parquet spec), calling `f(position, index)` for each.
fn decode_dict_indices(buf: &[u8], n: usize, mut f: impl FnMut(usize, u32)) -> Result<(), String> {
    let (&width, mut rest) = buf.split_first().ok_or("empty page")?;
    let width = u32::from(width);
    if width > 32 {
        return Err(format!("bit width {width}"));
    }
    let mut k = 0;
    while k < n {
        let (header, used) = varint::get::<u64>(rest).map_err(|e| format!("run header {e}"))?;
        rest = &rest[used..];
        if header & 1 == 0 {
            let count = (header >> 1) as usize;
            let bytes = width.div_ceil(8) as usize;
            let v = rest.get(..bytes).ok_or("RLE value cut")?;
            rest = &rest[bytes..];
            let mut idx = 0u32;
            for (j, b) in v.iter().enumerate() {
                idx |= u32::from(*b) << (8 * j);
            }
            for _ in 0..count.min(n - k) {
                f(k, idx);
                k += 1;
            }
        } else {
            // Groups of 8 values, `width` bytes each; a count past the page is damage.
            let groups = usize::try_from(header >> 1).unwrap_or(usize::MAX);
            let packed = groups
                .checked_mul(width as usize)
                .and_then(|bytes| rest.get(..bytes))
                .ok_or("bit-packed run cut")?;
            rest = &rest[packed.len()..];
            let count = groups.saturating_mul(8).min(n - k);
            let mask = if width == 32 {
                u64::MAX >> 32
            } else {
                (1u64 << width) - 1
            };
            for j in 0..count {
                let bit = j * width as usize;
                let byte = bit / 8;
                // One unaligned load where 8 bytes remain (all but the run's last values).
                let word = match packed.get(byte..byte + 8) {
                    Some(w) => u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
                    None => packed
                        .iter()
                        .skip(byte)
                        .enumerate()
                        .fold(0u64, |w, (o, b)| w | u64::from(*b) << (8 * o)),
                };
                f(k, ((word >> (bit % 8)) & mask) as u32);
                k += 1;
            }
        }
    }
    Ok(())
}

/// The values of a data page (v1 or v2, level bytes skipped), their count and encoding.
fn data_values(page: Page) -> (bytes::Bytes, usize, Encoding) {
    match page {
        Page::DataPageV2 {
            buf,
            num_values,
            encoding,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } => {
            let skip = (def_levels_byte_len + rep_levels_byte_len) as usize;
            (
                buf.slice(skip.min(buf.len())..),
                num_values as usize,
                encoding,
            )
        }
        Page::DataPage {
            buf,
            num_values,
            encoding,
            ..
        }
        | Page::DictionaryPage {
            buf,
            num_values,
            encoding,
            ..
        } => (buf, num_values as usize, encoding),
    }
}
