//! The engine's reads of segment files, checked as `query`'s are: every byte range it reads
//! from a segment is checked against the CRC-32s the segment records for its pages (or, in a
//! segment written before page tables, its column chunks) and its Bloom filters, so a
//! damaged file is an error naming it and the bytes, never another answer.
//!
//! The engine reads a segment through an object store: the footer, then whole column chunks
//! or whole pages (the page index names them), several close ranges at times coalesced into
//! one read. So every page it decodes lies inside one read, and each read checks the pages
//! it holds whole. What no CRC covers, the footer, is left to `verify` (the manifest's
//! SHA-256 of the whole file), as it is for `query`. The store only reads: every write is
//! refused.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::object_store::path::Path as ObjectPath;
use datafusion::object_store::{
    self, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::store::segment::damaged_page;

/// `(offset, length, CRC-32)` of every checksummed range of one file, by offset.
pub type Ranges = Vec<(u64, u64, u32)>;

/// A listed segment that was no longer there when the engine read it (pruned or merged, or
/// deleted, since the session listed it). Not the store's `NotFound`: given that, the engine
/// lists the path as a folder, finds nothing and answers without the file's rows.
#[derive(Debug, thiserror::Error)]
#[error("/{0}: the segment is gone")]
pub struct Gone(pub String);

/// An object store whose reads of the listed files are checked.
#[derive(Debug)]
pub struct Checked {
    inner: Arc<dyn ObjectStore>,
    files: HashMap<ObjectPath, Ranges>,
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checked({})", self.inner)
    }
}

impl Checked {
    /// `inner`, with the reads of each of `files` checked against its ranges.
    pub fn new(inner: Arc<dyn ObjectStore>, files: HashMap<ObjectPath, Ranges>) -> Self {
        Self { inner, files }
    }

    /// `e`, or [`Gone`] for a listed file not found.
    fn gone(&self, location: &ObjectPath, e: object_store::Error) -> object_store::Error {
        match e {
            object_store::Error::NotFound { .. } if self.files.contains_key(location) => {
                object_store::Error::Generic {
                    store: "segment",
                    source: Box::new(Gone(location.to_string())),
                }
            }
            e => e,
        }
    }

    /// Checks `data`, read from `location` at `start`: every checksummed range it holds
    /// whole must match its CRC.
    fn check(&self, location: &ObjectPath, start: u64, data: &[u8]) -> object_store::Result<()> {
        let Some(ranges) = self.files.get(location) else {
            return Ok(());
        };
        let end = start + data.len() as u64;
        let first = ranges.partition_point(|r| r.0 < start);
        for &(at, len, crc) in &ranges[first..] {
            if at + len > end {
                break;
            }
            let from = (at - start) as usize;
            if crc32fast::hash(&data[from..from + len as usize]) != crc {
                return Err(object_store::Error::Generic {
                    store: "segment",
                    source: format!("/{location}: {}", damaged_page(at, len)).into(),
                });
            }
        }
        Ok(())
    }
}

fn read_only(location: &ObjectPath) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("/{location}: `sql` never writes to the store").into(),
    }
}

#[async_trait]
impl ObjectStore for Checked {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(read_only(location))
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only(location))
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        // A `head` request reads no bytes (its payload is the whole file, unread).
        let head = options.head;
        let got = self
            .inner
            .get_opts(location, options)
            .await
            .map_err(|e| self.gone(location, e))?;
        if head || !self.files.contains_key(location) {
            return Ok(got);
        }
        let (meta, range, attributes) =
            (got.meta.clone(), got.range.clone(), got.attributes.clone());
        let data = got.bytes().await?;
        self.check(location, range.start, &data)?;
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async { Ok(data) }).boxed()),
            meta,
            range,
            attributes,
        })
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let got = self
            .inner
            .get_ranges(location, ranges)
            .await
            .map_err(|e| self.gone(location, e))?;
        for (r, data) in ranges.iter().zip(&got) {
            self.check(location, r.start, data)?;
        }
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        locations
            .map(|l| l.and_then(|l| Err(read_only(&l))))
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        _from: &ObjectPath,
        to: &ObjectPath,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(read_only(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::object_store::memory::InMemory;
    use datafusion::object_store::ObjectStoreExt;

    /// A 100-byte file of two checked 40-byte ranges at 10 and 50, in a checked store.
    async fn store() -> (Checked, ObjectPath, Vec<u8>) {
        let data: Vec<u8> = (0..100u8).collect();
        let path = ObjectPath::from("seg.parquet");
        let inner = InMemory::new();
        inner
            .put(&path, data.clone().into())
            .await
            .expect("put the file");
        let ranges = vec![
            (10, 40, crc32fast::hash(&data[10..50])),
            (50, 40, crc32fast::hash(&data[50..90])),
        ];
        let files = HashMap::from([(path.clone(), ranges)]);
        (Checked::new(Arc::new(inner), files), path, data)
    }

    /// Flips one byte of the inner file.
    async fn damage(store: &Checked, path: &ObjectPath, data: &[u8], at: usize) {
        let mut bad = data.to_vec();
        bad[at] ^= 0x40;
        store
            .inner
            .put(path, bad.into())
            .await
            .expect("put the damaged file");
    }

    #[tokio::test]
    async fn reads_of_whole_ranges_are_checked_and_partial_ones_pass() {
        let (store, path, data) = store().await;
        // Good file: every kind of read answers. A `head` reads nothing, so checks nothing.
        store.head(&path).await.expect("head");
        assert_eq!(
            &store.get_range(&path, 10..50).await.expect("range")[..],
            &data[10..50]
        );
        let all = store
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&all[..], &data[..]);
        damage(&store, &path, &data, 60).await;
        for err in [
            store.get_range(&path, 50..90).await.map(drop),
            store.get_range(&path, 0..100).await.map(drop),
            store.get_ranges(&path, &[10..50, 45..95]).await.map(drop),
            store.get(&path).await.map(drop),
        ] {
            assert!(store.head(&path).await.is_ok(), "head reads no bytes");
            let e = err
                .expect_err("a read holding the damaged range fails")
                .to_string();
            assert!(
                e.contains("/seg.parquet") && e.contains("bytes 50..90"),
                "{e}"
            );
        }
        // Reads that hold no damaged range whole are not refused: the range they cut is
        // checked by the read that holds it.
        assert!(store.get_range(&path, 10..50).await.is_ok());
        assert!(store.get_range(&path, 55..95).await.is_ok());
    }

    #[tokio::test]
    async fn files_not_listed_are_read_as_they_are_and_nothing_is_written() {
        let (store, _, _) = store().await;
        let other = ObjectPath::from("other.parquet");
        store
            .inner
            .put(&other, vec![1u8, 2, 3].into())
            .await
            .expect("put");
        assert_eq!(
            &store.get_range(&other, 0..3).await.expect("range")[..],
            &[1, 2, 3]
        );
        let e = store
            .put(&other, vec![0u8].into())
            .await
            .expect_err("a write is refused");
        assert!(e.to_string().contains("never writes"), "{e}");
    }
}
