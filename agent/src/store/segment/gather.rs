//! The values of chosen rows of a column, straight from its pages: what a query materialises.
//!
//! The Parquet column reader costs per value whatever the rows wanted: one reference-counted
//! buffer per dictionary entry, levels and indices decoded one by one to be skipped. With a
//! query's rows scattered (a port: 1 % of the rows), that was most of the query. Here pages
//! holding no wanted row are skipped undecompressed, a dictionary page is kept as one buffer,
//! and only the wanted rows' values are looked up: by offset (PLAIN, BYTE_STREAM_SPLIT), by
//! their dictionary index (only the indices up to the last wanted one decoded), or by walking
//! lengths or deltas up to the last wanted one (BYTE_ARRAY PLAIN, DELTA_BINARY_PACKED).
//! A column chunk using any other encoding is read through the Parquet column reader.

use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::Page;
use parquet::data_type::{ByteArrayType, DataType, FixedLenByteArrayType, Int32Type, Int64Type};
use parquet::file::reader::RowGroupReader;

use super::read::SegmentReader;
use super::scan::{bits, dict_runs, plain_values, rle_hybrid, DataPage, Run, Width};
use super::schema::column_name;
use super::{pq, SegmentError};
use crate::store::varint;

/// Encodings [`SegmentReader::gather`] decodes itself (RLE: the definition levels).
const DIRECT: [Encoding; 6] = [
    Encoding::PLAIN,
    Encoding::RLE,
    Encoding::RLE_DICTIONARY,
    Encoding::PLAIN_DICTIONARY,
    Encoding::BYTE_STREAM_SPLIT,
    Encoding::DELTA_BINARY_PACKED,
];

#[cfg(test)]
thread_local! {
    /// Set by tests to read every column through the Parquet column reader (the fallback),
    /// to compare the direct decoding against it.
    pub(super) static BY_READER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl SegmentReader {
    /// Calls `f` once per row of `runs` (`(first row, count)`, ascending, disjoint) of column
    /// `c`, in row order, with the value's bytes as Parquet stores them (INT32 and INT64
    /// little-endian, a FIXED_LEN_BYTE_ARRAY's bytes, a BYTE_ARRAY's bytes without its length)
    /// or `None` for a null. Pages holding none of the rows are skipped undecompressed.
    pub(super) fn gather(
        &self,
        rg: &dyn RowGroupReader,
        c: usize,
        runs: &[(usize, usize)],
        mut f: impl FnMut(Option<&[u8]>) -> Result<(), SegmentError>,
    ) -> Result<(), SegmentError> {
        let meta = rg.metadata().column(c);
        let descr = meta.column_descr();
        let optional = descr.max_def_level() > 0;
        let t = descr.physical_type();
        let width = Width::of(t, descr.type_length())
            .ok_or_else(|| self.invalid(c, format!("cannot read a {t} column")))?;
        #[cfg(test)]
        let by_reader = BY_READER.get();
        #[cfg(not(test))]
        let by_reader = false;
        if by_reader || !meta.encodings().all(|e| DIRECT.contains(&e)) {
            return self.gather_by_reader(rg, c, t, runs, optional, f);
        }
        let ctx = || format!("column {}", column_name(c));
        let total: usize = runs.iter().map(|r| r.1).sum();
        let mut pages = rg
            .get_column_page_reader(c)
            .map_err(|e| pq(&self.path, ctx())(e))?;
        let mut dict = Dict::default();
        let mut want = Wanted::default();
        let mut row = 0usize;
        let mut ri = 0usize; // first run not wholly before `row`
        let mut done = 0usize;
        while done < total {
            let unwanted = |r: std::ops::Range<usize>| {
                while runs.get(ri).is_some_and(|&(s, l)| s + l <= r.start) {
                    ri += 1;
                }
                runs.get(ri).is_none_or(|&(s, _)| s >= r.end)
            };
            let Some(page) = self.next_page(&mut *pages, c, &mut row, unwanted)? else {
                break;
            };
            let bad = |e: String| self.invalid(c, format!("page at row {row}: {e}"));
            if let Page::DictionaryPage {
                buf, num_values, ..
            } = page
            {
                dict = Dict::decode(buf, num_values as usize, width)
                    .map_err(|e| self.invalid(c, format!("dictionary page: {e}")))?;
                continue;
            }
            let page = DataPage::split(page, optional).map_err(bad)?;
            want.of_page(&page, row, &runs[ri..]).map_err(bad)?;
            let mut k = 0;
            page_values(&page, width, &dict, &want, |v| {
                f(v).map_err(Ok)?;
                k += 1;
                Ok(())
            })
            .map_err(|stop| match stop {
                Ok(caller) => caller,
                Err(damage) => bad(damage),
            })?;
            done += k;
            row += page.rows;
        }
        if done != total {
            return Err(self.invalid(c, format!("{done} values for {total} rows")));
        }
        Ok(())
    }

    /// [`Self::gather`] through the Parquet column reader: for a chunk of an encoding not
    /// decoded here (a segment of an earlier format, another writer).
    fn gather_by_reader(
        &self,
        rg: &dyn RowGroupReader,
        c: usize,
        t: PhysicalType,
        runs: &[(usize, usize)],
        optional: bool,
        mut f: impl FnMut(Option<&[u8]>) -> Result<(), SegmentError>,
    ) -> Result<(), SegmentError> {
        match t {
            PhysicalType::INT32 => self.replay::<Int32Type>(rg, c, runs, optional, |v| {
                f(v.map(|v| v.to_le_bytes()).as_ref().map(|b| &b[..]))
            }),
            PhysicalType::INT64 => self.replay::<Int64Type>(rg, c, runs, optional, |v| {
                f(v.map(|v| v.to_le_bytes()).as_ref().map(|b| &b[..]))
            }),
            PhysicalType::FIXED_LEN_BYTE_ARRAY => {
                self.replay::<FixedLenByteArrayType>(rg, c, runs, optional, |v| {
                    f(v.map(|v| v.data()))
                })
            }
            PhysicalType::BYTE_ARRAY => {
                self.replay::<ByteArrayType>(rg, c, runs, optional, |v| f(v.map(|v| v.data())))
            }
            t => Err(self.invalid(c, format!("cannot read a {t} column"))),
        }
    }

    /// Reads the rows of `runs` of column `c` with [`Self::column`] and hands each to `f`.
    fn replay<T: DataType>(
        &self,
        rg: &dyn RowGroupReader,
        c: usize,
        runs: &[(usize, usize)],
        optional: bool,
        mut f: impl FnMut(Option<&T::T>) -> Result<(), SegmentError>,
    ) -> Result<(), SegmentError> {
        let (values, defs) = self.column::<T>(rg, c, runs, optional)?;
        if !optional {
            return values.iter().try_for_each(|v| f(Some(v)));
        }
        let rows: usize = runs.iter().map(|r| r.1).sum();
        if defs.len() != rows {
            return Err(self.invalid(c, format!("{} levels for {rows} rows", defs.len())));
        }
        let mut it = values.iter();
        for (r, &d) in defs.iter().enumerate() {
            match d {
                0 => f(None)?,
                _ => f(Some(it.next().ok_or_else(|| {
                    self.invalid(c, format!("row {r}: value missing"))
                })?))?,
            }
        }
        Ok(())
    }

    /// The values of required column `c` at the rows of `runs`, each converted by
    /// `conv(row, bytes)` (row: its position among the rows of `runs`).
    pub(super) fn gather_required<T>(
        &self,
        rg: &dyn RowGroupReader,
        c: usize,
        runs: &[(usize, usize)],
        mut conv: impl FnMut(usize, &[u8]) -> Result<T, String>,
    ) -> Result<Vec<T>, SegmentError> {
        let mut out = Vec::with_capacity(runs.iter().map(|r| r.1).sum());
        self.gather(rg, c, runs, |v| {
            let r = out.len();
            let v = v.ok_or_else(|| self.invalid(c, format!("row {r}: null")))?;
            out.push(conv(r, v).map_err(|e| self.invalid(c, format!("row {r}: {e}")))?);
            Ok(())
        })?;
        Ok(out)
    }

    /// As [`Self::gather_required`], for an optional column: `None` where null.
    pub(super) fn gather_optional<T>(
        &self,
        rg: &dyn RowGroupReader,
        c: usize,
        runs: &[(usize, usize)],
        mut conv: impl FnMut(usize, &[u8]) -> Result<T, String>,
    ) -> Result<Vec<Option<T>>, SegmentError> {
        let mut out = Vec::with_capacity(runs.iter().map(|r| r.1).sum());
        self.gather(rg, c, runs, |v| {
            let r = out.len();
            let v = v
                .map(|v| conv(r, v))
                .transpose()
                .map_err(|e| self.invalid(c, format!("row {r}: {e}")))?;
            out.push(v);
            Ok(())
        })?;
        Ok(out)
    }
}

/// An INT64 value from its stored bytes.
pub(super) fn i64_of(_: usize, v: &[u8]) -> Result<i64, String> {
    Ok(i64::from_le_bytes(fixed(v)?))
}

/// An INT32 value from its stored bytes.
pub(super) fn i32_of(_: usize, v: &[u8]) -> Result<i32, String> {
    Ok(i32::from_le_bytes(fixed(v)?))
}

/// A FIXED_LEN_BYTE_ARRAY of `N` bytes.
pub(super) fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], String> {
    v.try_into()
        .map_err(|_| format!("{} bytes, not {N}", v.len()))
}

/// A string column's value.
pub(super) fn text_of(_: usize, v: &[u8]) -> Result<String, String> {
    std::str::from_utf8(v)
        .map(str::to_owned)
        .map_err(|_| "not UTF-8".to_owned())
}

/// A dictionary page's values: one buffer, fixed-width values by offset, variable-length ones
/// by their end offsets (the length prefixes dropped).
#[derive(Default)]
struct Dict {
    data: bytes::Bytes,
    /// End of each value in `data`; empty for fixed-width values.
    ends: Vec<usize>,
    width: usize,
    len: usize,
}

impl Dict {
    fn decode(buf: bytes::Bytes, n: usize, width: Width) -> Result<Self, String> {
        match width {
            Width::Fixed(w) => {
                if n.checked_mul(w).is_none_or(|b| b > buf.len()) {
                    return Err(format!("{} bytes for {n} values of {w}", buf.len()));
                }
                Ok(Dict {
                    data: buf,
                    ends: Vec::new(),
                    width: w,
                    len: n,
                })
            }
            Width::Var => {
                let mut data = Vec::with_capacity(buf.len());
                let mut ends = Vec::with_capacity(n);
                plain_values(&buf, n, width, |v| {
                    data.extend_from_slice(v);
                    ends.push(data.len());
                })?;
                Ok(Dict {
                    data: data.into(),
                    ends,
                    width: 0,
                    len: n,
                })
            }
        }
    }

    /// Entry `i`.
    #[inline]
    fn get(&self, i: u32) -> Result<&[u8], String> {
        let i = i as usize;
        let range = if self.ends.is_empty() {
            (i < self.len).then(|| i * self.width..(i + 1) * self.width)
        } else {
            let start = match i {
                0 => Some(0),
                _ => self.ends.get(i - 1).copied(),
            };
            start.zip(self.ends.get(i)).map(|(s, &e)| s..e)
        };
        range
            .and_then(|r| self.data.get(r))
            .ok_or_else(|| format!("dictionary index {i} out of range ({} entries)", self.len))
    }
}

/// The wanted rows of one page, in order: for each, the position of its value among the
/// values the page stores, or `None` for a null.
#[derive(Default)]
struct Wanted {
    rows: Vec<Option<u32>>,
    /// Values the page stores (rows holding one).
    values: usize,
    /// One past the last wanted value position (0: none).
    end: usize,
    /// The page's definition levels as a bitmap, kept to reuse its allocation.
    present: Vec<u64>,
}

impl Wanted {
    /// The rows of `page` (its first row `first`) that `runs` (from the first one not wholly
    /// before it) holds, placed on values through the definition levels.
    fn of_page(
        &mut self,
        page: &DataPage,
        first: usize,
        runs: &[(usize, usize)],
    ) -> Result<(), String> {
        self.rows.clear();
        let n = page.rows;
        // The wanted rows of the page, as ranges of page rows.
        let local = runs
            .iter()
            .take_while(|&&(s, _)| s < first + n)
            .map(|&(s, l)| s.max(first) - first..(s + l).min(first + n).saturating_sub(first))
            .filter(|r| !r.is_empty());
        let Some(levels) = &page.levels else {
            for r in local {
                self.rows.extend(r.map(|k| Some(k as u32)));
            }
            self.values = n;
            self.end = self
                .rows
                .last()
                .map_or(0, |v| v.map_or(0, |v| v as usize + 1));
            return Ok(());
        };
        // The levels as a bitmap (bit k: row k holds a value), so a wanted row's value
        // position is a count of ones, whatever the rows not wanted.
        let words = n.div_ceil(64);
        let present = &mut self.present;
        present.clear();
        present.resize(words + 1, 0);
        rle_hybrid(levels, 1, n, |run| match run {
            Run::Same { at, len, value } => {
                if value > 0 {
                    set_bits(present, at, len);
                }
            }
            Run::Packed {
                at, count, bytes, ..
            } => {
                // 64 levels at a time; a run starts anywhere in a word.
                let bytes = bytes.get(..count.div_ceil(8)).unwrap_or(bytes);
                for (i, chunk) in bytes.chunks(8).enumerate() {
                    let word = match <[u8; 8]>::try_from(chunk) {
                        Ok(w) => u64::from_le_bytes(w),
                        Err(_) => chunk
                            .iter()
                            .rev()
                            .fold(0u64, |w, &b| (w << 8) | u64::from(b)),
                    };
                    let pos = at + 64 * i;
                    let (w, shift) = (pos / 64, pos % 64);
                    present[w] |= word << shift;
                    if shift > 0 {
                        present[w + 1] |= word >> (64 - shift);
                    }
                }
            }
        })?;
        // Bits past the page's rows (padding of the last bit-packed run) are not rows.
        present.truncate(words);
        if let (Some(last), r @ 1..) = (present.last_mut(), n % 64) {
            *last &= (1u64 << r) - 1;
        }
        self.values = present.iter().map(|w| w.count_ones() as usize).sum();
        let (mut w, mut before) = (0usize, 0usize); // ones in the words before `w`
        for k in local.flatten() {
            while w < k / 64 {
                before += present[w].count_ones() as usize;
                w += 1;
            }
            let bit = k % 64;
            let row = if (present[w] >> bit) & 1 == 1 {
                let below = present[w] & ((1u64 << bit) - 1);
                Some((before + below.count_ones() as usize) as u32)
            } else {
                None
            };
            self.rows.push(row);
        }
        self.end = self
            .rows
            .iter()
            .rev()
            .find_map(|v| *v)
            .map_or(0, |v| v as usize + 1);
        Ok(())
    }
}

/// Sets bits `at..at + len` of `words`.
fn set_bits(words: &mut [u64], at: usize, len: usize) {
    let end = at + len;
    let mut k = at;
    while k < end {
        let (w, bit) = (k / 64, k % 64);
        let take = (64 - bit).min(end - k);
        let mask = if take == 64 {
            u64::MAX
        } else {
            ((1u64 << take) - 1) << bit
        };
        if let Some(word) = words.get_mut(w) {
            *word |= mask;
        }
        k += take;
    }
}

/// Why [`page_values`] stopped: the page is damaged (`Err`), or the caller's `f` failed (`Ok`).
type Stop = Result<SegmentError, String>;

/// Calls `f` with the value (or `None`) of each row of `want`, in order, from `page`'s values.
fn page_values(
    page: &DataPage,
    width: Width,
    dict: &Dict,
    want: &Wanted,
    mut f: impl FnMut(Option<&[u8]>) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let values = &page.values[..];
    let n = want.values;
    if want.end == 0 {
        // Nulls only (or no row): no value to decode, whatever the encoding.
        return want.rows.iter().try_for_each(|_| f(None));
    }
    match (page.encoding, width) {
        (Encoding::PLAIN, Width::Fixed(w)) => {
            if n.checked_mul(w).is_none_or(|b| b > values.len()) {
                return Err(Err(format!("{} bytes for {n} values of {w}", values.len())));
            }
            for v in &want.rows {
                f(v.map(|v| &values[v as usize * w..(v as usize + 1) * w]))?;
            }
        }
        (Encoding::PLAIN, Width::Var) => {
            // Where each wanted value lies, walking the lengths up to the last one.
            let mut at = Vec::with_capacity(want.rows.len());
            let mut wanted = want.rows.iter().flatten().peekable();
            let mut k = 0u32;
            plain_values(values, want.end, width, |v| {
                if wanted.next_if_eq(&&k).is_some() {
                    at.push(v);
                }
                k += 1;
            })
            .map_err(Err)?;
            let mut at = at.into_iter();
            for v in &want.rows {
                f(v.and_then(|_| at.next()))?;
            }
        }
        (Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY, _) => {
            let mut idx = Vec::with_capacity(want.rows.len());
            let mut wanted = want.rows.iter().flatten().map(|&v| v as usize).peekable();
            // Only the wanted indices are unpacked.
            dict_runs(values, want.end, |run| match run {
                Run::Same { at, len, value } => {
                    while wanted.next_if(|&v| v < at + len).is_some() {
                        idx.push(value);
                    }
                }
                Run::Packed {
                    at,
                    count,
                    width,
                    bytes,
                } => {
                    let mask = (1u64 << width) - 1;
                    while let Some(v) = wanted.next_if(|&v| v < at + count) {
                        let i = bits(bytes, (v - at) * width as usize, width) & mask;
                        idx.push(i as u32);
                    }
                }
            })
            .map_err(Err)?;
            let mut idx = idx.into_iter();
            for v in &want.rows {
                match v.and_then(|_| idx.next()) {
                    Some(i) => f(Some(dict.get(i).map_err(Err)?))?,
                    None => f(None)?,
                }
            }
        }
        (Encoding::BYTE_STREAM_SPLIT, Width::Fixed(w)) => {
            // Byte `j` of value `k` at `j * n + k`.
            if n.checked_mul(w) != Some(values.len()) {
                return Err(Err(format!("{} bytes for {n} values of {w}", values.len())));
            }
            let mut buf = [0u8; 16];
            let v = buf.get_mut(..w).ok_or_else(|| Err(format!("width {w}")))?;
            for k in &want.rows {
                match k {
                    Some(k) => {
                        for (j, b) in v.iter_mut().enumerate() {
                            *b = values[j * n + *k as usize];
                        }
                        f(Some(v))?
                    }
                    None => f(None)?,
                }
            }
        }
        (Encoding::DELTA_BINARY_PACKED, Width::Fixed(w @ (4 | 8))) => {
            let mut all = Vec::with_capacity(want.end);
            decode_delta(values, want.end, &mut all).map_err(Err)?;
            for v in &want.rows {
                match v {
                    // The low `w` bytes: an INT32 delta stream wraps at 32 bits.
                    Some(v) => f(Some(&all[*v as usize].to_le_bytes()[..w]))?,
                    None => f(None)?,
                }
            }
        }
        (e, _) => return Err(Err(format!("unexpected page encoding {e:?}"))),
    }
    Ok(())
}

/// Decodes the first `n` values of a DELTA_BINARY_PACKED page into `out` (spec: a header of
/// block size, miniblocks per block, value count and first value; then blocks of a zigzag
/// minimum delta, one bit width per miniblock and the miniblocks' bit-packed deltas above the
/// minimum, a partly used last miniblock padded to its full size, unused ones absent).
/// Arithmetic wraps, as the spec asks.
fn decode_delta(buf: &[u8], n: usize, out: &mut Vec<i64>) -> Result<(), String> {
    fn get(buf: &mut &[u8], what: &str) -> Result<u64, String> {
        let (v, used) = varint::get::<u64>(buf).map_err(|e| format!("delta {what}: {e}"))?;
        *buf = &buf[used..];
        Ok(v)
    }
    let zigzag = |v: u64| (v >> 1) as i64 ^ -((v & 1) as i64);
    let mut rest = buf;
    let block = get(&mut rest, "block size")?;
    let minis = get(&mut rest, "miniblock count")?;
    let count = get(&mut rest, "value count")?;
    let mut last = zigzag(get(&mut rest, "first value")?);
    let per_mini = block.checked_div(minis).unwrap_or(0);
    if block == 0 || block % 128 != 0 || per_mini == 0 || per_mini % 32 != 0 || minis > 4096 {
        return Err(format!(
            "delta blocks of {block} values in {minis} miniblocks"
        ));
    }
    if (n as u64) > count {
        return Err(format!("{n} values wanted of a delta page holding {count}"));
    }
    let (minis, per_mini) = (minis as usize, per_mini as usize);
    if n > 0 {
        out.push(last);
    }
    while out.len() < n {
        let min = zigzag(get(&mut rest, "minimum delta")?);
        let widths = rest.get(..minis).ok_or("delta bit widths cut")?;
        rest = &rest[minis..];
        for &w in widths {
            if out.len() >= n {
                break;
            }
            let w = u32::from(w);
            if w > 64 {
                return Err(format!("delta bit width {w}"));
            }
            let take = per_mini.min(n - out.len());
            // The miniblock whole, padding included: a page cut short is damage.
            let full = per_mini * w as usize / 8;
            let packed = rest.get(..full).ok_or("delta miniblock cut")?;
            let mask = u64::MAX.checked_shr(64 - w).unwrap_or(0);
            for j in 0..take {
                let d = bits(packed, j * w as usize, w) & mask;
                last = last.wrapping_add(min).wrapping_add(d as i64);
                out.push(last);
            }
            rest = &rest[packed.len()..];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
