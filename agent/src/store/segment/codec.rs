//! Page decompression for the segment readers, with one zstd context per thread.
//!
//! The Parquet page reader makes a codec for every column chunk it opens, and its zstd codec
//! allocates a compression and a decompression context each time (hundreds of KiB): 20% of
//! the CPU of a `query --ip` that reads a few pages from each of thousands of chunks. So the
//! readers open a zstd chunk as if it were uncompressed, and [`Unzstd`] decompresses the
//! pages it hands out, each into a buffer of exactly the size its zstd frame declares.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parquet::basic::Compression;
use parquet::column::page::{Page, PageMetadata, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;

/// A page larger than this once decompressed is damage: the writer's pages are at most a
/// megabyte ([`super::write`]), and a declared size is what gets allocated.
const MAX_PAGE: u64 = 64 << 20;

/// The page reader of column chunk `meta`, from `source`; `rows` is the row group's row count
/// and `locations` its data pages, where known.
pub(super) fn page_reader<R: ChunkReader + 'static>(
    source: Arc<R>,
    meta: &ColumnChunkMetaData,
    rows: usize,
    locations: Option<Vec<PageLocation>>,
) -> Result<Box<dyn PageReader>> {
    static PROPS: OnceLock<Arc<ReaderProperties>> = OnceLock::new();
    let props = PROPS
        .get_or_init(|| Arc::new(ReaderProperties::builder().build()))
        .clone();
    if !matches!(meta.compression(), Compression::ZSTD(_)) {
        // Not written by this agent (or uncompressed): the library's own codec.
        let pages =
            SerializedPageReader::new_with_properties(source, meta, rows, locations, props)?;
        return Ok(Box::new(pages));
    }
    let plain = meta
        .clone()
        .into_builder()
        .set_compression(Compression::UNCOMPRESSED)
        .build()?;
    let pages = SerializedPageReader::new_with_properties(source, &plain, rows, locations, props)?;
    Ok(Box::new(Unzstd(Box::new(pages))))
}

/// A page reader over a zstd chunk opened as uncompressed: decompresses each page it returns.
pub(super) struct Unzstd(Box<dyn PageReader>);

impl Iterator for Unzstd {
    type Item = Result<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl PageReader for Unzstd {
    fn get_next_page(&mut self) -> Result<Option<Page>> {
        self.0.get_next_page()?.map(inflate).transpose()
    }

    fn peek_next_page(&mut self) -> Result<Option<PageMetadata>> {
        self.0.peek_next_page()
    }

    fn skip_next_page(&mut self) -> Result<()> {
        self.0.skip_next_page()
    }

    fn supports_deferred_dictionary(&self) -> bool {
        self.0.supports_deferred_dictionary()
    }

    fn take_deferred_dictionary(&mut self) -> Result<Option<Page>> {
        self.0.take_deferred_dictionary()?.map(inflate).transpose()
    }

    fn at_record_boundary(&mut self) -> Result<bool> {
        self.0.at_record_boundary()
    }
}

/// `page` with its compressed bytes decompressed (a v2 page's levels are stored plain).
fn inflate(mut page: Page) -> Result<Page> {
    match &mut page {
        Page::DataPage { buf, .. } | Page::DictionaryPage { buf, .. } => {
            *buf = decompress(buf, 0)?;
        }
        Page::DataPageV2 {
            buf,
            def_levels_byte_len,
            rep_levels_byte_len,
            is_compressed,
            ..
        } => {
            if *is_compressed {
                let levels = *def_levels_byte_len as usize + *rep_levels_byte_len as usize;
                *buf = decompress(buf, levels)?;
                *is_compressed = false;
            }
        }
    }
    Ok(page)
}

thread_local! {
    /// This thread's decompression context, made once and reused for every page.
    static CONTEXT: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `buf`'s first `plain` bytes as they are, then the zstd frame that follows decompressed.
fn decompress(buf: &[u8], plain: usize) -> Result<Bytes> {
    let (head, frame) = buf.split_at_checked(plain).ok_or_else(|| {
        ParquetError::General(format!(
            "page of {} bytes has {plain} bytes of levels",
            buf.len()
        ))
    })?;
    if frame.is_empty() {
        // A v2 page of nulls only: no values, no frame.
        return Ok(Bytes::copy_from_slice(head));
    }
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_PAGE => size as usize,
        Ok(Some(size)) => {
            return Err(ParquetError::General(format!(
                "page declares {size} bytes decompressed (at most {MAX_PAGE})"
            )))
        }
        // A frame that does not declare its size (another writer's): streamed.
        Ok(None) => {
            let mut out = head.to_vec();
            zstd::stream::copy_decode(frame, &mut out)
                .map_err(|e| ParquetError::General(format!("zstd page: {e}")))?;
            return Ok(Bytes::from(out));
        }
        Err(_) => return Err(ParquetError::General("zstd page: no frame header".into())),
    };
    let mut out = Vec::with_capacity(head.len() + size);
    out.extend_from_slice(head);
    CONTEXT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let context = match cell.as_mut() {
            Some(c) => c,
            None => cell.insert(
                zstd::bulk::Decompressor::new()
                    .map_err(|e| ParquetError::General(format!("zstd context: {e}")))?,
            ),
        };
        let mut at = std::io::Cursor::new(&mut out);
        at.set_position(head.len() as u64);
        let n = context
            .decompress_to_buffer(frame, &mut at)
            .map_err(|e| ParquetError::General(format!("zstd page: {e}")))?;
        if n != size {
            return Err(ParquetError::General(format!(
                "zstd page: {n} bytes decompressed, its frame declares {size}"
            )));
        }
        Ok(())
    })?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn a_frame_decompresses_behind_its_plain_levels_with_or_without_a_declared_size() {
        let data = data();
        let sized = zstd::bulk::compress(&data, 3).expect("compress");
        assert!(zstd::zstd_safe::get_frame_content_size(&sized).is_ok_and(|s| s.is_some()));
        let mut streamed = Vec::new();
        let mut enc = zstd::stream::Encoder::new(&mut streamed, 3).expect("encoder");
        std::io::Write::write_all(&mut enc, &data).expect("write");
        enc.finish().expect("finish");
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&streamed).ok(),
            Some(None)
        );
        for frame in [&sized, &streamed] {
            for levels in [&b""[..], b"\x02\x00\x00\x00\x03\x01"] {
                let page = [levels, frame].concat();
                let got = decompress(&page, levels.len()).expect("decompress");
                assert_eq!(&got[..levels.len()], levels);
                assert_eq!(&got[levels.len()..], &data[..]);
            }
        }
        // Twice on one thread: the context is reused.
        assert_eq!(&decompress(&sized, 0).expect("again")[..], &data[..]);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let data = data();
        let frame = zstd::bulk::compress(&data, 3).expect("compress");
        assert!(decompress(b"not a zstd frame", 0).is_err());
        assert!(decompress(&frame[..frame.len() / 2], 0).is_err());
        assert!(decompress(&frame, frame.len() + 1).is_err());
        let mut flipped = frame.clone();
        let k = flipped.len() / 2;
        flipped[k] ^= 0x55;
        if let Ok(out) = decompress(&flipped, 0) {
            assert_ne!(&out[..], &data[..]);
        }
        // Only the levels, no frame: a v2 page of nulls.
        assert_eq!(
            &decompress(b"\x01\x02", 2).expect("levels only")[..],
            b"\x01\x02"
        );
    }
}
