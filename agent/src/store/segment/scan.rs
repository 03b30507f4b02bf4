//! Column scans straight from the pages: which rows of a row group hold a value (an address,
//! an account, a name, a NAT tuple), and the page decoding they share with [`super::gather`]
//! (levels, dictionary indices, PLAIN values). A dictionary entry is
//! tested once and rows match by their dictionary index, so a query never materialises a
//! value it does not need, and a column whose dictionary holds no match is not decoded at all.

use parquet::basic::{Encoding, Type as PhysicalType};
use std::ops::Range;

use parquet::column::page::{Page, PageReader};
use parquet::file::reader::RowGroupReader;

use super::gather::i64_of;
use super::read::SegmentReader;
use super::schema::{col, column_name};
use super::{pq, SegmentError};
use crate::store::varint;

/// How a column's values are laid out in a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    /// Fixed size (INT32: 4 bytes little-endian, FIXED_LEN_BYTE_ARRAY: its length).
    Fixed(usize),
    /// BYTE_ARRAY: each value a u32 LE length and its bytes.
    Var,
}

impl Width {
    /// The layout of a column of physical type `t` (INT32 and INT64 little-endian,
    /// FIXED_LEN_BYTE_ARRAY of `len` bytes, BYTE_ARRAY); `None` for a type no segment holds.
    pub(super) fn of(t: PhysicalType, len: i32) -> Option<Self> {
        match t {
            PhysicalType::INT32 => Some(Width::Fixed(4)),
            PhysicalType::INT64 => Some(Width::Fixed(8)),
            PhysicalType::FIXED_LEN_BYTE_ARRAY => usize::try_from(len).ok().map(Width::Fixed),
            PhysicalType::BYTE_ARRAY => Some(Width::Var),
            _ => None,
        }
    }
}

impl SegmentReader {
    /// Rows of row group `i` whose `src_ip` or `dst_ip` satisfies `contains`.
    pub fn address_mask(
        &self,
        i: usize,
        contains: &dyn Fn(&[u8; 16]) -> bool,
    ) -> Result<Vec<bool>, SegmentError> {
        self.mask(i, &[col::SRC_IP, col::DST_IP], &|v| {
            <&[u8; 16]>::try_from(v).is_ok_and(contains)
        })
    }

    /// Rows of row group `i` whose `dst_ip` satisfies `contains` (as [`Self::address_mask`],
    /// for the destination column alone: the source side is answered by the address index).
    pub fn dst_mask(
        &self,
        i: usize,
        contains: &dyn Fn(&[u8; 16]) -> bool,
    ) -> Result<Vec<bool>, SegmentError> {
        self.mask(i, &[col::DST_IP], &|v| {
            <&[u8; 16]>::try_from(v).is_ok_and(contains)
        })
    }

    /// Rows of row group `i` where any of `columns` holds a value satisfying `test` (nulls
    /// never do). `test` gets a value's bytes as Parquet stores them: 16 bytes of an address,
    /// a string's UTF-8, an INT32 as 4 bytes little-endian. Each dictionary entry is tested
    /// once; a column whose dictionary holds no match and whose pages are all
    /// dictionary-encoded is not decoded further.
    pub fn mask(
        &self,
        i: usize,
        columns: &[usize],
        test: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<bool>, SegmentError> {
        self.mask_of(i, columns, test, None, None)
    }

    /// Rows of row group `i` where `column` holds exactly `want` (bytes as [`Self::mask`]
    /// tests them). As [`Self::mask`], and faster on a byte-stream-split column (`nat_port`):
    /// its first byte stream is searched for `want`'s first byte, the other streams read only
    /// at those positions, and the page's levels decoded only when a value matched.
    ///
    /// With `within`, only the rows it marks are asked about (others may come back false
    /// whatever they hold): pages holding none of them are skipped undecompressed, and when
    /// it marks under half of the rows, only the other pages are read from the file.
    pub fn mask_equal(
        &self,
        i: usize,
        column: usize,
        want: &[u8],
        within: Option<&[bool]>,
    ) -> Result<Vec<bool>, SegmentError> {
        self.mask_of(i, &[column], &|v| v == want, Some(want), within)
    }

    /// Rows of row group `i` where any of `columns` (of one physical type and width) holds
    /// exactly `want`: as [`Self::mask_equal`], over several columns (a port or MAC filter
    /// asks both sides of a flow).
    pub fn mask_any_equal(
        &self,
        i: usize,
        columns: &[usize],
        want: &[u8],
        within: Option<&[bool]>,
    ) -> Result<Vec<bool>, SegmentError> {
        self.mask_of(i, columns, &|v| v == want, Some(want), within)
    }

    /// Rows of row group `i` active in the window: `time_end >= since` (when given) and
    /// `time_start < until` (when given), as [`crate::store::query::Filter::overlaps`] tests
    /// a record (an end before the start counts as the start). With `within`, only those
    /// rows are read and asked about; the others come back false.
    pub fn time_mask(
        &self,
        i: usize,
        since: Option<i64>,
        until: Option<i64>,
        within: Option<&[bool]>,
    ) -> Result<Vec<bool>, SegmentError> {
        let rows = self.stats(i).rows;
        let runs = match within {
            Some(w) => runs_of(w),
            None => vec![(0, rows)],
        };
        let paged = match within {
            Some(_) => self.load_pages(i)?,
            None => None,
        };
        let whole;
        let rg: &dyn RowGroupReader = match &paged {
            Some(p) => p,
            None => {
                whole = self.load(i, &[col::TIME_START, col::TIME_END])?;
                &whole
            }
        };
        let start = self.gather_required(rg, col::TIME_START, &runs, i64_of)?;
        let end = self.gather_required(rg, col::TIME_END, &runs, i64_of)?;
        let mut mask = vec![false; rows];
        let mut k = 0;
        for &(first, len) in &runs {
            for (m, (s, e)) in mask[first..first + len]
                .iter_mut()
                .zip(start[k..k + len].iter().zip(&end[k..k + len]))
            {
                let e = (*e).max(*s);
                *m = since.is_none_or(|x| e >= x) && until.is_none_or(|u| *s < u);
            }
            k += len;
        }
        Ok(mask)
    }

    fn mask_of(
        &self,
        i: usize,
        columns: &[usize],
        test: &dyn Fn(&[u8]) -> bool,
        exact: Option<&[u8]>,
        within: Option<&[bool]>,
    ) -> Result<Vec<bool>, SegmentError> {
        let sparse = within.is_some_and(|w| w.iter().filter(|&&x| x).count() < w.len() / 2);
        let paged = if sparse { self.load_pages(i)? } else { None };
        let whole;
        let rg: &dyn RowGroupReader = match &paged {
            Some(p) => p,
            None => {
                whole = self.load(i, columns)?;
                &whole
            }
        };
        let rows = rg.metadata().num_rows().max(0) as usize;
        let mut mask = vec![false; rows];
        for &c in columns {
            self.mask_column(rg, c, test, exact, within, &mut mask)?;
        }
        Ok(mask)
    }

    fn mask_column(
        &self,
        rg: &dyn RowGroupReader,
        c: usize,
        test: &dyn Fn(&[u8]) -> bool,
        exact: Option<&[u8]>,
        within: Option<&[bool]>,
        mask: &mut [bool],
    ) -> Result<(), SegmentError> {
        let meta = rg.metadata().column(c);
        let descr = meta.column_descr();
        let optional = descr.max_def_level() > 0;
        let t = descr.physical_type();
        let width = Width::of(t, descr.type_length())
            .ok_or_else(|| self.invalid(c, format!("cannot scan a {t} column")))?;
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
        loop {
            // A page of none of the rows asked about (and within the group: a page past it is
            // read, to fail below).
            let unasked = |r: Range<usize>| {
                within.is_some_and(|w| w.get(r).is_some_and(|s| !s.contains(&true)))
            };
            let Some(page) = self.next_page(&mut *pages, c, &mut row, unasked)? else {
                break;
            };
            let page = match page {
                Page::DictionaryPage {
                    buf, num_values, ..
                } => {
                    hits = Vec::with_capacity(num_values as usize);
                    plain_values(&buf, num_values as usize, width, |v| hits.push(test(v)))
                        .map_err(|e| self.invalid(c, format!("dictionary page: {e}")))?;
                    if all_dict && !hits.contains(&true) {
                        break; // no entry matches and every page indexes the dictionary
                    }
                    continue;
                }
                data => data,
            };
            let bad = |e: String| self.invalid(c, format!("page at row {row}: {e}"));
            let page = DataPage::split(page, optional).map_err(bad)?;
            let (n, encoding) = (page.rows, page.encoding);
            let end = row + n;
            let rows = mask.len();
            let out = mask
                .get_mut(row..end)
                .ok_or_else(|| self.invalid(c, format!("pages hold more than {rows} rows")))?;
            if let (Some(want), Encoding::BYTE_STREAM_SPLIT) = (exact, encoding) {
                let found = split_equal(&page.values, want).map_err(bad)?;
                if !found.is_empty() {
                    mark_values(out, page.present().map_err(bad)?, &found).map_err(bad)?;
                }
                row = end;
                continue;
            }
            let dict = matches!(
                encoding,
                Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY
            );
            if dict && !hits.is_empty() && !hits.contains(&false) {
                // Every entry matches (a gateway with one outside address): the rows holding
                // a value are the answer, without decoding an index.
                let present = page.present().map_err(bad)?;
                for (k, m) in out.iter_mut().enumerate() {
                    *m |= present.as_ref().is_none_or(|p| p[k]);
                }
                row = end;
                continue;
            }
            if dict && page.levels.is_none() {
                // A required column: value k is row k, so its rows are marked straight from
                // the indices, with no branch on the value (`--proto icmp`: a hit the CPU
                // cannot predict, and a position pushed per hit, were half of its count's
                // time).
                mark_dict_rows(&page.values, n, &hits, out).map_err(bad)?;
                row = end;
                continue;
            }
            // The positions, among the page's values, of those that match; the levels are
            // read to place them on rows only when there are any (a name filter matches a
            // few rows of a few pages).
            let values_n = page.values_n().map_err(bad)?;
            let mut found: Vec<usize> = Vec::new();
            let mut k = 0usize;
            let mut each = |hit: bool| {
                if hit {
                    found.push(k);
                }
                k += 1;
            };
            let values = &page.values;
            match encoding {
                Encoding::PLAIN => plain_values(values, values_n, width, |v| each(test(v))),
                Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                    decode_dict_runs(values, values_n, |at, len, idx| {
                        if hits.get(idx as usize).copied().unwrap_or(false) {
                            match len {
                                1 => found.push(at),
                                _ => found.extend(at..at + len),
                            }
                        }
                    })
                }
                Encoding::BYTE_STREAM_SPLIT => {
                    split_values(values, values_n, width, |v| each(test(v)))
                }
                e => Err(format!("unexpected page encoding {e:?}")),
            }
            .map_err(bad)?;
            if !found.is_empty() {
                mark_values(out, page.present().map_err(bad)?, &found).map_err(bad)?;
            }
            row = end;
        }
        Ok(())
    }
}

impl SegmentReader {
    /// The next page of column `c` to decode: data pages whose rows (from `*row` on, which
    /// it advances) `unwanted` says are not needed are skipped undecompressed; `None` at the
    /// end of the chunk.
    pub(super) fn next_page(
        &self,
        pages: &mut dyn PageReader,
        c: usize,
        row: &mut usize,
        mut unwanted: impl FnMut(Range<usize>) -> bool,
    ) -> Result<Option<Page>, SegmentError> {
        let ctx = || format!("column {}", column_name(c));
        while let Some(meta) = pages
            .peek_next_page()
            .map_err(|e| pq(&self.path, ctx())(e))?
        {
            if meta.is_dict {
                break;
            }
            let n = meta
                .num_rows
                .or(meta.num_levels)
                .ok_or_else(|| self.invalid(c, format!("page at row {row}: no row count")))?;
            if !unwanted(*row..*row + n) {
                break;
            }
            pages
                .skip_next_page()
                .map_err(|e| pq(&self.path, ctx())(e))?;
            *row += n;
        }
        pages.get_next_page().map_err(|e| pq(&self.path, ctx())(e))
    }
}

/// The rows `keep` marks as runs `(first row, count)`, ascending.
pub(super) fn runs_of(keep: &[bool]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (r, _) in keep.iter().enumerate().filter(|(_, &m)| m) {
        match runs.last_mut() {
            Some(last) if last.0 + last.1 == r => last.1 += 1,
            _ => runs.push((r, 1)),
        }
    }
    runs
}

/// Decodes the first `n` dictionary indices of a data page (bit width byte, then the
/// RLE/bit-packed hybrid of the Parquet spec) by runs of one index ([`decode_rle_runs`]).
pub(super) fn decode_dict_runs(
    buf: &[u8],
    n: usize,
    f: impl FnMut(usize, usize, u32),
) -> Result<(), String> {
    let (&width, rest) = buf.split_first().ok_or("empty page")?;
    decode_rle_runs(rest, u32::from(width), n, f).map(|_| ())
}

/// Marks in `out` (ORed in) the rows of a required column's data page whose dictionary index
/// (the first `n` of `buf`, as [`decode_dict_runs`] reads them) `hits` marks; an index past
/// `hits` marks nothing. Up to 8 bits an index (a dictionary of up to 256 entries: `proto`,
/// ports of a quiet segment), eight rows a step: one load of the group, eight lookups in a
/// table with no bounds check, eight stores, no branch (per index, the closure of
/// [`decode_dict_runs`] was 39-53% of a `--proto icmp` count).
pub(super) fn mark_dict_rows(
    buf: &[u8],
    n: usize,
    hits: &[bool],
    out: &mut [bool],
) -> Result<(), String> {
    let hit = |idx: u64| usize::try_from(idx).is_ok_and(|i| hits.get(i) == Some(&true));
    let mut table = [false; 256];
    table.iter_mut().zip(hits).for_each(|(t, h)| *t = *h);
    dict_runs(buf, n, |run| match run {
        Run::Same { at, len, value } => {
            if hit(u64::from(value)) {
                // Runs stop at `n`, the page's rows, which `out` holds.
                if let Some(rows) = out.get_mut(at..at + len) {
                    rows.fill(true);
                }
            }
        }
        Run::Packed {
            at,
            count,
            width,
            bytes,
        } => {
            let (w, mask) = (width as usize, (1u64 << width) - 1);
            let (from, groups) = groups8(bytes, w, count);
            for (g, word) in groups {
                // Runs stop at `n`, the page's rows, which `out` holds.
                if let Some(rows) = out.get_mut(at + g..).and_then(|o| o.first_chunk_mut::<8>()) {
                    for (i, r) in rows.iter_mut().enumerate() {
                        *r |= table[((word >> (i * w)) & mask & 0xff) as usize];
                    }
                }
            }
            for j in from..count {
                if hit(bits(bytes, j * w, width) & mask) {
                    if let Some(r) = out.get_mut(at + j) {
                        *r = true;
                    }
                }
            }
        }
    })
}

/// [`decode_dict_runs`] by [`Run`]s, bit-packed runs left packed: a caller wanting a few of
/// the indices unpacks only those.
pub(super) fn dict_runs(buf: &[u8], n: usize, f: impl FnMut(Run<'_>)) -> Result<(), String> {
    let (&width, rest) = buf.split_first().ok_or("empty page")?;
    rle_hybrid(rest, u32::from(width), n, f).map(|_| ())
}

/// Decodes `n` values of `width` bits in the RLE/bit-packed hybrid of the Parquet spec (no
/// length prefix), calling `f(position, value)` for each; returns the bytes used.
fn decode_rle(
    buf: &[u8],
    width: u32,
    n: usize,
    mut f: impl FnMut(usize, u32),
) -> Result<usize, String> {
    decode_rle_runs(buf, width, n, |k, len, v| {
        (k..k + len).for_each(|j| f(j, v))
    })
}

/// [`decode_rle`] by runs: `f(position, length, value)` once per RLE run (a bit-packed value
/// is a run of one), so a caller can take a run of equal values in one step.
pub(super) fn decode_rle_runs(
    buf: &[u8],
    width: u32,
    n: usize,
    mut f: impl FnMut(usize, usize, u32),
) -> Result<usize, String> {
    rle_hybrid(buf, width, n, |run| match run {
        Run::Same { at, len, value } => f(at, len, value),
        Run::Packed {
            at,
            count,
            width,
            bytes,
        } => {
            let mask = (1u64 << width) - 1;
            let w = width as usize;
            // A small dictionary's indices (e.g. `proto`) were a load and bounds check each.
            let (from, groups) = groups8(bytes, w, count);
            for (g, word) in groups {
                for i in 0..8 {
                    f(at + g + i, 1, ((word >> (i * w)) & mask) as u32);
                }
            }
            for j in from..count {
                f(
                    at + j,
                    1,
                    (bits(bytes, j * width as usize, width) & mask) as u32,
                );
            }
        }
    })
}

/// The whole groups of eight among a bit-packed run's first `count` values of `w` bits, when
/// `w` is 1 to 8 (none otherwise), and the position where the values they leave begin:
/// `(the group's first position in the run, its 8 w bits)`, one load each. A group is `w`
/// bytes; the run's last groups, with fewer than 8 bytes after them, are copied out (a short
/// run's every group), not left to be read value by value.
fn groups8(
    bytes: &[u8],
    w: usize,
    count: usize,
) -> (usize, impl Iterator<Item = (usize, u64)> + '_) {
    let groups = if (1..=8).contains(&w) { count / 8 } else { 0 };
    let each = (0..groups).map(move |g| {
        let group = bytes.get(g * w..).unwrap_or_default();
        let word = match group.first_chunk::<8>() {
            Some(b) => u64::from_le_bytes(*b),
            None => {
                let mut b = [0u8; 8];
                let k = group.len().min(8);
                b[..k].copy_from_slice(&group[..k]);
                u64::from_le_bytes(b)
            }
        };
        (g * 8, word)
    });
    (groups * 8, each)
}

/// A run of the RLE/bit-packed hybrid.
pub(super) enum Run<'a> {
    /// `len` values equal to `value`, from position `at`.
    Same { at: usize, len: usize, value: u32 },
    /// `count` values from position `at`, `width` bits each (at most 32), packed least
    /// significant bit first in `bytes` (which may hold more: whole groups of 8).
    Packed {
        at: usize,
        count: usize,
        width: u32,
        bytes: &'a [u8],
    },
}

/// Walks the runs of `n` values of `width` bits in the RLE/bit-packed hybrid of the Parquet
/// spec (no length prefix), calling `f` once per run; returns the bytes used.
pub(super) fn rle_hybrid<'a>(
    buf: &'a [u8],
    width: u32,
    n: usize,
    mut f: impl FnMut(Run<'a>),
) -> Result<usize, String> {
    if width > 32 {
        return Err(format!("bit width {width}"));
    }
    let mut rest = buf;
    let mut k = 0;
    while k < n {
        let (header, used) = varint::get::<u64>(rest).map_err(|e| format!("run header {e}"))?;
        rest = &rest[used..];
        if header & 1 == 0 {
            let count = usize::try_from(header >> 1).unwrap_or(usize::MAX);
            let bytes = width.div_ceil(8) as usize;
            let v = rest.get(..bytes).ok_or("RLE value cut")?;
            rest = &rest[bytes..];
            let mut value = 0u32;
            for (j, b) in v.iter().enumerate() {
                value |= u32::from(*b) << (8 * j);
            }
            let len = count.min(n - k);
            f(Run::Same { at: k, len, value });
            k += len;
        } else {
            // Groups of 8 values, `width` bytes each; a count past the page is damage.
            let groups = usize::try_from(header >> 1).unwrap_or(usize::MAX);
            let bytes = groups
                .checked_mul(width as usize)
                .and_then(|bytes| rest.get(..bytes))
                .ok_or("bit-packed run cut")?;
            rest = &rest[bytes.len()..];
            let count = groups.saturating_mul(8).min(n - k);
            f(Run::Packed {
                at: k,
                count,
                width,
                bytes,
            });
            k += count;
        }
    }
    Ok(buf.len() - rest.len())
}

/// The `width`-bit value (at most 64) starting at bit `bit` of `packed`, least significant
/// bit first (the bit packing of Parquet's RLE hybrid and delta encodings), with any bits past
/// the end of `packed` read as 0 (callers check the lengths they need), not masked to `width`.
#[inline]
pub(super) fn bits(packed: &[u8], bit: usize, width: u32) -> u64 {
    let (byte, shift) = (bit / 8, (bit % 8) as u32);
    // One unaligned load where 8 bytes remain (all but a run's last values).
    let word = match packed.get(byte..byte + 8) {
        Some(w) => u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
        None => packed
            .iter()
            .skip(byte)
            .take(8)
            .enumerate()
            .fold(0u64, |w, (o, b)| w | u64::from(*b) << (8 * o)),
    };
    let v = word >> shift;
    if shift + width > 64 {
        // A value of 58 bits or more straddling a ninth byte.
        v | packed
            .get(byte + 8)
            .map_or(0, |&b| u64::from(b) << (64 - shift))
    } else {
        v
    }
}

/// Calls `f` with each of `n` PLAIN-encoded values of `buf`.
pub(super) fn plain_values<'a>(
    buf: &'a [u8],
    n: usize,
    width: Width,
    mut f: impl FnMut(&'a [u8]),
) -> Result<(), String> {
    match width {
        Width::Fixed(w) => {
            let all = n
                .checked_mul(w)
                .and_then(|b| buf.get(..b))
                .ok_or("values cut")?;
            all.chunks_exact(w.max(1)).for_each(f);
        }
        Width::Var => {
            let mut rest = buf;
            for _ in 0..n {
                let (len, tail) = rest.split_first_chunk::<4>().ok_or("value length cut")?;
                let len = u32::from_le_bytes(*len) as usize;
                let v = tail.get(..len).ok_or("value cut")?;
                f(v);
                rest = &tail[len..];
            }
        }
    }
    Ok(())
}

/// Calls `f` with each of `n` BYTE_STREAM_SPLIT-encoded values of `buf` (byte `j` of value
/// `k` at `j * n + k`).
fn split_values(
    buf: &[u8],
    n: usize,
    width: Width,
    mut f: impl FnMut(&[u8]),
) -> Result<(), String> {
    let Width::Fixed(w) = width else {
        return Err("byte-stream-split on a variable-length column".into());
    };
    if n.checked_mul(w).is_none_or(|b| b > buf.len()) {
        return Err("values cut".into());
    }
    let mut v = vec![0u8; w];
    for k in 0..n {
        for (j, b) in v.iter_mut().enumerate() {
            *b = buf[j * n + k];
        }
        f(&v);
    }
    Ok(())
}

/// A data page's parts: its definition levels, undecoded (`None` for a required column), its
/// value bytes, its row count and its value encoding.
pub(super) struct DataPage {
    pub(super) levels: Option<bytes::Bytes>,
    pub(super) values: bytes::Bytes,
    pub(super) rows: usize,
    pub(super) encoding: Encoding,
}

impl DataPage {
    pub(super) fn split(page: Page, optional: bool) -> Result<Self, String> {
        let (levels, values, rows, encoding) = match page {
            Page::DataPage {
                buf,
                num_values,
                encoding,
                ..
            } => {
                let n = num_values as usize;
                if !optional {
                    return Ok(DataPage {
                        levels: None,
                        values: buf,
                        rows: n,
                        encoding,
                    });
                }
                // v1: the levels are prefixed by their length (u32 LE).
                let (len, _) = buf.split_first_chunk::<4>().ok_or("levels cut")?;
                let len = u32::from_le_bytes(*len) as usize;
                let end = 4usize
                    .checked_add(len)
                    .filter(|&e| e <= buf.len())
                    .ok_or("levels cut")?;
                (buf.slice(4..end), buf.slice(end..), n, encoding)
            }
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                let rep = rep_levels_byte_len as usize;
                let end = rep
                    .checked_add(def_levels_byte_len as usize)
                    .filter(|&e| e <= buf.len())
                    .ok_or("levels cut")?;
                (
                    buf.slice(rep..end),
                    buf.slice(end..),
                    num_values as usize,
                    encoding,
                )
            }
            Page::DictionaryPage { .. } => return Err("a second dictionary page".into()),
        };
        Ok(DataPage {
            levels: optional.then_some(levels),
            values,
            rows,
            encoding,
        })
    }

    /// How many rows hold a value (the values the page stores), from the levels' runs.
    fn values_n(&self) -> Result<usize, String> {
        let Some(levels) = &self.levels else {
            return Ok(self.rows);
        };
        let mut n = 0;
        decode_rle_runs(levels, 1, self.rows, |_, len, d| {
            if d > 0 {
                n += len
            }
        })?;
        Ok(n)
    }

    /// Per row, whether it holds a value; `None` for a required column (every row does).
    fn present(&self) -> Result<Option<Vec<bool>>, String> {
        let Some(levels) = &self.levels else {
            return Ok(None);
        };
        let mut present = vec![false; self.rows];
        decode_rle(levels, 1, self.rows, |k, d| present[k] = d > 0)?;
        Ok(Some(present))
    }
}

/// The positions, among the values of a byte-stream-split page, of those equal to `want`
/// (its width the column's): the first stream is searched for `want[0]`, the others read only
/// where it matched.
fn split_equal(buf: &[u8], want: &[u8]) -> Result<Vec<usize>, String> {
    let w = want.len();
    if w == 0 || !buf.len().is_multiple_of(w) {
        return Err(format!(
            "{} bytes of byte-stream-split values of width {w}",
            buf.len()
        ));
    }
    let n = buf.len() / w;
    let first = &buf[..n];
    Ok(first
        .iter()
        .enumerate()
        .filter(|&(k, &b)| b == want[0] && (1..w).all(|j| buf[j * n + k] == want[j]))
        .map(|(k, _)| k)
        .collect())
}

/// Marks the rows holding the values at positions `found` (ascending) among the rows that
/// hold a value (`present`; every row for a required column).
fn mark_values(
    out: &mut [bool],
    present: Option<Vec<bool>>,
    found: &[usize],
) -> Result<(), String> {
    let Some(present) = present else {
        // Every row holds a value: value k is row k.
        let rows = out.len();
        for &v in found {
            *out.get_mut(v)
                .ok_or_else(|| format!("value {v} past the {rows} rows of the page"))? = true;
        }
        return Ok(());
    };
    let mut want = found.iter().copied().peekable();
    let mut value = 0usize;
    for (k, m) in out.iter_mut().enumerate() {
        if !present[k] {
            continue;
        }
        if want.peek() == Some(&value) {
            *m = true;
            want.next();
        }
        value += 1;
    }
    match want.next() {
        Some(v) => Err(format!("value {v} past the {value} the levels announce")),
        None => Ok(()),
    }
}
