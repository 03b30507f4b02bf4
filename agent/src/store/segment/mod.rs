//! The sealed segment format: one Parquet file per sealed journal (zstd, dictionary and delta
//! encodings, rows sorted by source address then start time, journal order breaking ties, with
//! an address index and a page table after the row groups), readable by any Parquet engine
//! (DuckDB, ClickHouse, Trino, pandas). The reference, with units, is `docs/store-format.md`.
//!
//! One module per job: [`schema`] (columns, layout, metadata keys), [`write`](mod@write) (column buffers
//! to a file), [`read`] (a file to records), [`chunk`] (the reader's page and chunk I/O, every
//! byte checked against a CRC; [`codec`] its zstd pages), [`scan`] (the address scan of a query), [`gather`] (the values of
//! a query's rows, from the pages) and the tail blobs:
//! [`tail`] (their shared framing), [`index`] (the address index, with [`nat_runs`] for the NAT
//! outside address), [`pages`] (the page table); [`bloom`] (the identity columns' Parquet
//! Bloom filters).

pub mod bloom;
pub mod chunk;
mod codec;
pub mod gather;
pub mod index;
pub mod nat_runs;
pub mod pages;
pub mod read;
pub mod scan;
pub mod schema;
pub mod tail;
pub mod write;

use std::path::{Path, PathBuf};

pub use pages::damaged_page;
pub use read::{footer_sha256, AddressColumns, RowGroupStats, SegmentReader};
pub use schema::{col, column_name, Layout, CRC_KEY, SCHEMA};
pub use write::write;

/// Errors reading or writing a segment; each names the file and, where it applies, the column.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// An I/O operation failed.
    #[error("segment {path}: {op}: {cause}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// The Parquet library refused the file.
    #[error("segment {path}: {context}: {cause}")]
    Parquet {
        /// The segment file.
        path: PathBuf,
        /// What was being done (names the column when reading one).
        context: String,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: parquet::errors::ParquetError,
    },
    /// The file is Parquet but not a segment of this schema, or its values are out of range.
    #[error("segment {path}: column {column}: {reason}")]
    Invalid {
        /// The segment file.
        path: PathBuf,
        /// The column at fault.
        column: String,
        /// What is wrong.
        reason: String,
    },
}

impl SegmentError {
    /// Whether the disk was full ([`crate::store::fsutil::is_disk_full`]), also under the
    /// Parquet writer's error.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Io { cause, .. } => crate::store::fsutil::is_disk_full(cause),
            Self::Parquet { cause, .. } => crate::store::fsutil::disk_full_in(cause),
            Self::Invalid { .. } => false,
        }
    }

    /// Whether the file was not there (removed since it was listed: pruned or merged).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Maps an I/O error on `path` to a [`SegmentError`] saying what was being done.
fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> SegmentError + 'a {
    move |source| SegmentError::Io {
        path: path.to_owned(),
        op,
        cause: source,
    }
}

/// Maps a Parquet error on `path` to a [`SegmentError`] saying what was being done.
fn pq(
    path: &Path,
    context: impl Into<String>,
) -> impl FnOnce(parquet::errors::ParquetError) -> SegmentError + '_ {
    let context = context.into();
    move |source| SegmentError::Parquet {
        path: path.to_owned(),
        context,
        cause: source,
    }
}

#[cfg(test)]
mod tests;

/// Whether `name` looks like a segment file (`seg-*.parquet`; [`super::seal::segment_name`]
/// names them): here, below the manifest, which checks the names its entries give.
pub fn is_segment_name(name: &str) -> bool {
    name.starts_with("seg-") && name.ends_with(".parquet")
}
