//! Page and chunk I/O of the segment reader: column chunks read into memory with one read
//! and checked against their CRC-32 (a whole row group), or pages read one by one and each
//! checked against the page table (a few rows), under the Parquet reader's `ChunkReader`.

use std::fs::File;
use std::sync::Arc;

use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::reader::{FileReader, RowGroupReader};

use super::read::SegmentReader;
use super::SegmentError;

/// Part of a segment file held in memory, addressed by file offsets, so the Parquet page
/// reader reads pages as slices of it.
pub(super) struct Region {
    /// File offset of `data[0]`.
    start: u64,
    data: bytes::Bytes,
    file_len: u64,
}

impl parquet::file::reader::Length for Region {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl parquet::file::reader::ChunkReader for Region {
    type T = bytes::buf::Reader<bytes::Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        let rest = self.data.len() - self.offset(start, 0)?;
        Ok(self.get_bytes(start, rest)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let o = self.offset(start, length)?;
        Ok(self.data.slice(o..o + length))
    }
}

impl Region {
    /// The index in `data` of file offset `start`, if `length` bytes from there are held.
    fn offset(&self, start: u64, length: usize) -> parquet::errors::Result<usize> {
        let from = start
            .checked_sub(self.start)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o.checked_add(length).is_some_and(|e| e <= self.data.len()));
        match from {
            Some(o) => Ok(o),
            None => Err(parquet::errors::ParquetError::EOF(format!(
                "{length} bytes at offset {start} are outside the column chunks read ({}..{})",
                self.start,
                self.start + self.data.len() as u64
            ))),
        }
    }
}

/// A row group's pages, read from the file one at a time and checked against their CRCs.
pub(super) struct PageSource {
    file: Arc<File>,
    /// `(file offset, length, CRC-32)` of every page of the row group, by offset.
    pages: Vec<(u64, u32, u32)>,
    file_len: u64,
}

impl parquet::file::reader::Length for PageSource {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl parquet::file::reader::ChunkReader for PageSource {
    type T = bytes::buf::Reader<bytes::Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Err(parquet::errors::ParquetError::General(format!(
            "no page table entry at offset {start} (pages are read whole)"
        )))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        use std::os::unix::fs::FileExt;
        let err = |reason: String| parquet::errors::ParquetError::General(reason);
        let (_, len, crc) = self
            .pages
            .binary_search_by_key(&start, |p| p.0)
            .ok()
            .map(|k| self.pages[k])
            .filter(|p| p.1 as usize == length)
            .ok_or_else(|| {
                err(format!(
                    "no page of {length} bytes at offset {start} in the page table"
                ))
            })?;
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(|e| err(format!("read {len} bytes at {start}: {e}")))?;
        if crc32fast::hash(&buf) != crc {
            return Err(err(super::pages::damaged_page(start, u64::from(len))));
        }
        Ok(bytes::Bytes::from(buf))
    }
}

/// A row group's column chunks read from `source` (a [`Region`] or a [`PageSource`]), their
/// pages decompressed by [`codec`](super::codec).
pub(super) struct ChunkGroup<'a, R> {
    meta: &'a parquet::file::metadata::RowGroupMetaData,
    source: Arc<R>,
    /// Data pages of each column, where known.
    locations: Vec<Option<Vec<PageLocation>>>,
}

impl<R: parquet::file::reader::ChunkReader + 'static> RowGroupReader for ChunkGroup<'_, R> {
    fn metadata(&self) -> &parquet::file::metadata::RowGroupMetaData {
        self.meta
    }

    fn num_columns(&self) -> usize {
        self.meta.num_columns()
    }

    fn get_column_page_reader(
        &self,
        i: usize,
    ) -> parquet::errors::Result<Box<dyn parquet::column::page::PageReader>> {
        if i >= self.meta.num_columns() {
            return Err(parquet::errors::ParquetError::General(format!(
                "no column {i}"
            )));
        }
        super::codec::page_reader(
            self.source.clone(),
            self.meta.column(i),
            usize::try_from(self.meta.num_rows())?,
            self.locations.get(i).cloned().flatten(),
        )
    }

    fn get_column_bloom_filter(&self, _i: usize) -> Option<&parquet::bloom_filter::Sbbf> {
        None
    }

    fn get_row_iter(
        &self,
        projection: Option<parquet::schema::types::Type>,
    ) -> parquet::errors::Result<parquet::record::reader::RowIter<'_>> {
        parquet::record::reader::RowIter::from_row_group(projection, self)
    }
}

/// A row group read page by page ([`SegmentReader::load_pages`]).
pub(super) type PagedRowGroup<'a> = ChunkGroup<'a, PageSource>;

impl SegmentReader {
    /// Row group `g` read page by page: each page is read from the file only when a column
    /// reader asks for it, and checked against its CRC in the page table. `None` for a
    /// segment without a page table.
    pub(super) fn load_pages(&self, g: usize) -> Result<Option<PagedRowGroup<'_>>, SegmentError> {
        let Some(table) = self.page_table()? else {
            return Ok(None);
        };
        let rg = self.reader.metadata().row_group(g);
        let mut pages = Vec::new();
        let mut locations = Vec::with_capacity(rg.num_columns());
        for (c, chunk) in rg.columns().iter().enumerate() {
            let mut row = 0i64;
            let mut locs = Vec::new();
            for (at, p) in table.placed(g, c, chunk.byte_range().0) {
                pages.push((at, p.len, p.crc));
                if p.rows > 0 {
                    locs.push(PageLocation {
                        offset: at as i64,
                        compressed_page_size: p.len as i32,
                        first_row_index: row,
                    });
                    row += i64::from(p.rows);
                }
            }
            locations.push(Some(locs));
        }
        pages.sort_unstable();
        Ok(Some(ChunkGroup {
            meta: rg,
            source: Arc::new(PageSource {
                file: self.file.clone(),
                pages,
                file_len: self.size,
            }),
            locations,
        }))
    }

    /// Every byte range of the file a CRC-32 covers, as `(offset, length, CRC-32)` in file
    /// order: each page when the segment has a page table, else each column chunk, and each
    /// Bloom filter (a damaged one would prune a row group that holds the answer). What a
    /// reader other than ours (the SQL engine) checks its reads against.
    pub fn checked_ranges(&self) -> Result<Vec<(u64, u64, u32)>, SegmentError> {
        let table = self.page_table()?;
        let mut out = Vec::new();
        for (g, rg) in self.reader.metadata().row_groups().iter().enumerate() {
            for (c, chunk) in rg.columns().iter().enumerate() {
                let (at, len) = chunk.byte_range();
                match &table {
                    Some(t) => out.extend(
                        t.placed(g, c, at)
                            .map(|(at, p)| (at, u64::from(p.len), p.crc)),
                    ),
                    None => {
                        let crc = self.crcs.get(g).and_then(|r| r.get(c)).copied();
                        let crc = crc.ok_or_else(|| self.invalid(c, "no chunk CRC"))?;
                        out.push((at, len, crc));
                    }
                }
                out.extend(self.bloom_range(g, c)?);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Reads the column chunks `columns` of row group `g` into memory with one read, checks
    /// each against its recorded CRC-32, and returns a row group reader over that memory.
    /// The Parquet reader would otherwise read a `File` page by page, with a `dup`, a seek and
    /// a fresh buffer per page header and per page: most of a small query's time.
    pub(super) fn load(
        &self,
        g: usize,
        columns: &[usize],
    ) -> Result<ChunkGroup<'_, Region>, SegmentError> {
        use std::io::{Read, Seek};
        let meta = self.reader.metadata();
        let rg = meta.row_group(g);
        let ranges: Vec<(u64, u64)> = columns.iter().map(|&c| rg.column(c).byte_range()).collect();
        let start = ranges.iter().map(|r| r.0).min().unwrap_or(0);
        let end = ranges
            .iter()
            .map(|r| r.0.saturating_add(r.1))
            .max()
            .unwrap_or(0);
        if end.saturating_sub(start) > self.size {
            return Err(self.invalid(
                columns.first().copied().unwrap_or(0),
                format!("row group {g}: column chunks at {start}..{end} exceed the file"),
            ));
        }
        // Read into uninitialised capacity (`read_to_end` on a `File` does not zero it first):
        // zeroing a megabyte per segment only to overwrite it was 5 % of a query.
        let want = (end - start) as usize;
        let mut buf = Vec::with_capacity(want);
        let io = |source| SegmentError::Io {
            path: self.path.clone(),
            op: "read column chunk",
            cause: source,
        };
        let mut f = &*self.file;
        f.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
        f.take(want as u64).read_to_end(&mut buf).map_err(io)?;
        if buf.len() != want {
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        for (&c, &(s, len)) in columns.iter().zip(&ranges) {
            let chunk = &buf[(s - start) as usize..(s - start + len) as usize];
            if crc32fast::hash(chunk) != self.crcs[g][c] {
                return Err(self.invalid(
                    c,
                    format!("row group {g}: checksum mismatch at bytes {s}..{} (file damaged; run `xdp-audit verify`)", s + len),
                ));
            }
        }
        let region = Region {
            start,
            data: bytes::Bytes::from(buf),
            file_len: self.size,
        };
        let index = meta.page_index_for_row_group(g);
        Ok(ChunkGroup {
            meta: rg,
            source: Arc::new(region),
            locations: (0..rg.num_columns())
                .map(|c| index.page_locations(c).cloned())
                .collect(),
        })
    }
}
