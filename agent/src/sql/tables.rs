//! The tables `sql` offers: the store's records as the engine reads them.
//!
//! `segments_raw` is every live sealed segment of the chain (the manifest's list, as `query`
//! takes it: never a quarantined or pruned file), read from disk; `journal_raw` is every live
//! journal, decoded by the journal reader and encoded by the segment writer into Parquet in
//! memory (an anonymous `memfd`, never a file in the store). Both have the newest segment
//! schema; a segment of an earlier format reads its missing columns as NULL. `flows_raw` is the
//! two together in the column form, `flows` the same with addresses and MACs as text.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::memory::InMemory;
use datafusion::object_store::path::Path as ObjectPath;
use datafusion::object_store::ObjectStoreExt;
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use datafusion::parquet::schema::parser::parse_message_type;
use datafusion::parquet::schema::types::SchemaDescriptor;
use datafusion::prelude::SessionContext;

use super::checked::{self, Checked};
use super::SqlError;
use crate::store::columns::Columns;
use crate::store::journal::{self, JournalError};
use crate::store::query::{load_segments, QueryError};
use crate::store::seal;
use crate::store::segment::{self, column_name, Layout, SegmentReader, SCHEMA};

/// The readable view's select list: the raw columns in schema order, addresses and MACs
/// as text under their own names, then `extra` (a bucket's partition columns) as they are.
fn flows_select(extra: &[&str]) -> String {
    const TEXT: [(&str, &str); 5] = [
        ("src_mac", "mac_text"),
        ("dst_mac", "mac_text"),
        ("src_ip", "ip_text"),
        ("dst_ip", "ip_text"),
        ("nat_ip", "ip_text"),
    ];
    let mut cols = Vec::new();
    for i in 0..segment::col::COUNT {
        let name = column_name(i);
        cols.push(match TEXT.iter().find(|(c, _)| *c == name) {
            Some((c, f)) => format!("{f}(\"{c}\") AS \"{c}\""),
            None => format!("\"{name}\""),
        });
    }
    cols.extend(extra.iter().map(|c| format!("\"{c}\"")));
    format!("SELECT {} FROM flows_raw", cols.join(", "))
}

/// What the store holds now: the live segments' paths and the live journals as Parquet.
#[derive(Debug, Default)]
pub struct Sources {
    /// Live sealed segments, in chain order, each with the byte ranges its CRC-32s cover
    /// (the engine's reads are checked against them: [`checked`]).
    pub segments: Vec<(PathBuf, checked::Ranges)>,
    /// Live journals not yet sealed: (id, the records as a segment in memory, rows).
    pub journals: Vec<(u64, Bytes, u64)>,
    /// Live journals that cannot be read, or with a damaged stretch (valid frames after it):
    /// their records are not in the tables, and an answer is incomplete, as `query`'s is.
    pub damaged_journals: usize,
}

impl Sources {
    /// Rows of the live journals.
    pub fn journal_rows(&self) -> u64 {
        self.journals.iter().map(|j| j.2).sum()
    }
}

/// Lists the store at `dir` as `query` does: journals first, then the manifest, so a journal
/// sealed in between is found by its id and read as its segment, not missed or read twice.
pub fn sources(dir: &Path) -> Result<Sources, SqlError> {
    let dir_err = |cause| QueryError::Dir {
        path: dir.to_owned(),
        cause,
    };
    let dir = &std::fs::canonicalize(dir).map_err(dir_err)?;
    let journals = seal::list_journals(dir).map_err(dir_err)?;
    let (mut live, mut sealed) = load_segments(dir)?;
    let listed: std::collections::HashSet<u64> = journals.iter().map(|(id, _)| *id).collect();
    let mut out = Sources::default();
    for (id, path) in journals {
        if sealed.contains(&id) {
            continue;
        }
        match journal::load::<Columns>(&path) {
            Ok((_, scan)) => {
                // A copy under another name: its rows are in the tables once already.
                if journal::file::warn_copy(&path, id, &scan.frames, &sealed, &listed) {
                    out.damaged_journals += 1;
                    continue;
                }
                let damaged = journal::file::warn_damaged_live(&path, &scan.frames);
                out.damaged_journals += usize::from(damaged);
                if scan.records.is_empty() {
                    continue;
                }
                let rows = scan.records.len() as u64;
                out.journals
                    .push((id, encode_journal(&path, scan.records, id)?, rows));
            }
            Err(JournalError::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {
                // Sealed while we looked: its segment is in the manifest now.
                (live, sealed) = load_segments(dir)?;
                out.journals.retain(|j| !sealed.contains(&j.0));
            }
            // One unreadable journal (one the agent leaves in place: too big, not a regular
            // file, unreadable) does not withhold the rest of the answer, as for `query`.
            Err(e) => {
                tracing::warn!(
                    journal = %path.display(),
                    error = %e,
                    "a live journal cannot be read: its records are not in this answer"
                );
                out.damaged_journals += 1;
            }
        }
    }
    // The engine would read a missing file as no rows, and a directory in its place as the
    // Parquet files in it: each file is checked against its entry first, as `query` does.
    for s in &live {
        let path = dir.join(&s.file);
        let reader = SegmentReader::open_listed(&path, s)
            .map_err(|e| crate::store::query::read_error(dir, &s.file, e))?;
        let ranges = reader.checked_ranges().map_err(QueryError::from)?;
        out.segments.push((path, ranges));
    }
    Ok(out)
}

/// The records of the journal at `path` as a segment, written by the segment writer into an
/// anonymous memory file and read back.
fn encode_journal(path: &Path, records: Columns, id: u64) -> Result<Bytes, SqlError> {
    let mem_err = |cause| SqlError::Memory {
        journal: path.to_owned(),
        cause,
    };
    let rows = records.into_row_order().map_err(|cause| SqlError::Encode {
        journal: path.to_owned(),
        cause: cause.to_string(),
    })?;
    // SAFETY: a valid NUL-terminated name and flags; the result is checked.
    let fd = unsafe { libc::memfd_create(c"xdp-audit-sql-journal".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(mem_err(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    // The writer opens its path: this process's link to the memory file.
    let mem_path = PathBuf::from(format!("/proc/self/fd/{fd}"));
    segment::write(&mem_path, &rows, id, Layout::SEALED).map_err(|e| SqlError::Encode {
        journal: path.to_owned(),
        cause: e.to_string(),
    })?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(mem_err)?;
    Ok(Bytes::from(bytes))
}

/// The schema every table has: the newest segment schema as the engine reads it, every
/// column nullable (a column an earlier format lacks reads as NULL).
pub fn schema() -> DfResult<SchemaRef> {
    let message = parse_message_type(SCHEMA)?;
    let arrow = parquet_to_arrow_schema(&SchemaDescriptor::new(Arc::new(message)), None)?;
    let fields: Vec<_> = arrow
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// Registers the tables and views of `sources` with `ctx`.
pub async fn register(ctx: &SessionContext, sources: &Sources) -> DfResult<()> {
    let schema = schema()?;
    let mut segment_urls = Vec::new();
    let mut files = HashMap::new();
    for (path, ranges) in &sources.segments {
        let url = ListingTableUrl::parse(path.to_string_lossy())?;
        files.insert(url.prefix().clone(), ranges.clone());
        segment_urls.push(url);
    }
    let local = Arc::new(LocalFileSystem::new());
    ctx.register_object_store(
        ObjectStoreUrl::local_filesystem().as_ref(),
        Arc::new(Checked::new(local, files)),
    );
    ctx.register_table("segments_raw", parquet_table(segment_urls, &schema)?)?;
    let memory = Arc::new(InMemory::new());
    let mut journal_urls = Vec::new();
    for (id, bytes, _) in &sources.journals {
        let name = format!("{}.parquet", seal::journal_name(*id));
        memory
            .put(&ObjectPath::from(name.as_str()), bytes.clone().into())
            .await?;
        journal_urls.push(ListingTableUrl::parse(format!("memory:///{name}"))?);
    }
    if let Some(first) = journal_urls.first() {
        ctx.register_object_store(first.object_store().as_ref(), memory);
    }
    ctx.register_table("journal_raw", parquet_table(journal_urls, &schema)?)?;
    let raw = ctx
        .sql("SELECT * FROM segments_raw UNION ALL SELECT * FROM journal_raw")
        .await?;
    ctx.register_table("flows_raw", raw.into_view())?;
    register_views(ctx, &[]).await
}

/// Registers `flows` over the registered `flows_raw`, with its `extra` columns last.
pub(super) async fn register_views(ctx: &SessionContext, extra: &[&str]) -> DfResult<()> {
    let flows = ctx.sql(&flows_select(extra)).await?;
    ctx.register_table("flows", flows.into_view())?;
    Ok(())
}

/// A table over the Parquet files at `urls` with `schema`; empty when there are none.
fn parquet_table(
    urls: Vec<ListingTableUrl>,
    schema: &SchemaRef,
) -> DfResult<Arc<dyn TableProvider>> {
    if urls.is_empty() {
        return Ok(Arc::new(EmptyTable::new(schema.clone())));
    }
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema.clone());
    Ok(Arc::new(ListingTable::try_new(config)?))
}
