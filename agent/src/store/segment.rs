//! The sealed segment format: one Parquet file per sealed journal (zstd, dictionary and delta
//! encodings, rows sorted by source address then start time, journal order breaking ties, with
//! an address index after the row groups), readable by any Parquet engine (DuckDB, ClickHouse,
//! Trino, pandas). The schema, with units, is in the README under "Audit store".

use std::fs::File;
use std::io::BufWriter;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::Page;
use parquet::column::writer::{get_column_writer, ColumnCloseResult};
use parquet::data_type::{
    ByteArray, ByteArrayType, DataType, FixedLenByteArray, FixedLenByteArrayType, Int32Type,
    Int64Type,
};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};
use parquet::file::serialized_reader::SerializedRowGroupReader;
use parquet::file::statistics::Statistics;
use parquet::file::writer::{
    SerializedColumnWriter, SerializedFileWriter, SerializedPageWriter, TrackedWrite,
};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use super::columns::{ip_families, Dict, SortedColumns, NO_RULE};
use super::index::{self, AddressIndex, GroupIndex, INDEX_KEY};
use super::journal::ip_from_column;
use super::pages::{Page as PageEntry, PageTable, PAGES_KEY};
use crate::record::{EndReason, FlowRecord, Mac};
use parquet::file::page_index::offset_index::PageLocation;

/// The Parquet schema of a segment. Column order is part of the format.
pub const SCHEMA: &str = "message xdp_audit_flow {
  required int64 time_start (TIMESTAMP(NANOS,true));
  required int64 time_end (TIMESTAMP(NANOS,true));
  required binary iface (STRING);
  required int32 ifindex (INTEGER(32,false));
  optional int32 vlan (INTEGER(16,false));
  optional int32 vlan_inner (INTEGER(16,false));
  required fixed_len_byte_array(6) src_mac;
  required fixed_len_byte_array(6) dst_mac;
  required int32 proto (INTEGER(8,false));
  required int32 ip_version (INTEGER(8,false));
  required fixed_len_byte_array(16) src_ip;
  required int32 src_port (INTEGER(16,false));
  required fixed_len_byte_array(16) dst_ip;
  required int32 dst_port (INTEGER(16,false));
  required int64 packets (INTEGER(64,false));
  required int64 bytes (INTEGER(64,false));
  required int64 resp_packets (INTEGER(64,false));
  required int64 resp_bytes (INTEGER(64,false));
  required int32 tcp_flags (INTEGER(8,false));
  required binary end_reason (STRING);
  required int64 dropped (INTEGER(64,false));
  optional binary rule (STRING);
}";

/// The first segment schema, before the list columns: still read, never written.
fn schema_v1() -> String {
    SCHEMA
        .lines()
        .filter(|l| !l.contains(" dropped ") && !l.contains(" rule "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Column indexes in [`SCHEMA`].
pub mod col {
    /// `time_start`.
    pub const TIME_START: usize = 0;
    /// `time_end`.
    pub const TIME_END: usize = 1;
    /// `iface`.
    pub const IFACE: usize = 2;
    /// `ifindex`.
    pub const IFINDEX: usize = 3;
    /// `vlan`.
    pub const VLAN: usize = 4;
    /// `vlan_inner`.
    pub const VLAN_INNER: usize = 5;
    /// `src_mac`.
    pub const SRC_MAC: usize = 6;
    /// `dst_mac`.
    pub const DST_MAC: usize = 7;
    /// `proto`.
    pub const PROTO: usize = 8;
    /// `ip_version`.
    pub const IP_VERSION: usize = 9;
    /// `src_ip`.
    pub const SRC_IP: usize = 10;
    /// `src_port`.
    pub const SRC_PORT: usize = 11;
    /// `dst_ip`.
    pub const DST_IP: usize = 12;
    /// `dst_port`.
    pub const DST_PORT: usize = 13;
    /// `packets`.
    pub const PACKETS: usize = 14;
    /// `bytes`.
    pub const BYTES: usize = 15;
    /// `resp_packets`.
    pub const RESP_PACKETS: usize = 16;
    /// `resp_bytes`.
    pub const RESP_BYTES: usize = 17;
    /// `tcp_flags`.
    pub const TCP_FLAGS: usize = 18;
    /// `end_reason`.
    pub const END_REASON: usize = 19;
    /// `dropped`.
    pub const DROPPED: usize = 20;
    /// `rule`.
    pub const RULE: usize = 21;
    /// Number of columns.
    pub const COUNT: usize = 22;
    /// Number of columns of the first schema (before `dropped` and `rule`).
    pub const COUNT_V1: usize = 20;
}

/// Rows per row group and per page: how a segment is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Rows per row group.
    pub row_group_rows: usize,
    /// Rows per data page (a divisor of [`WRITE_CHUNK`] and a multiple of the writer's
    /// 1,024-row batches).
    pub page_rows: usize,
    /// Rows per data page of `dst_ip`, which an address query decodes whole (its rows are in
    /// no order), so each page's fixed decompression set-up counts more than its size.
    pub dst_page_rows: usize,
}

impl Layout {
    /// A sealed journal: about an hour of a busy gateway per row group, so one hourly
    /// segment is usually one row group and the per-group dictionaries are paid once.
    pub const SEALED: Self = Self {
        row_group_rows: 1 << 20,
        page_rows: 8192,
        dst_page_rows: 8192,
    };
    /// A merged day (see `compact`): row groups of 128 Ki rows, so the address index narrows
    /// a client's day to one or two of them, and pages of 1,024 rows, so a scattered row
    /// costs a small page per column (figures in the README, "Audit store").
    pub const COMPACTED: Self = Self {
        row_group_rows: 1 << 17,
        page_rows: 1024,
        dst_page_rows: 8192,
    };
}

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

/// The 16-byte column form of an address: IPv6 as is, IPv4 mapped into `::ffff:0:0/96`.
pub fn ip_to_column(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn writer_props(journal_id: u64, layout: Layout) -> WriterProperties {
    // Encodings chosen by measurement on the generated mix (see `testgen`): start times are
    // sorted within a client, so delta-packed; end times, source ports and counters are close
    // to random in their low bytes, where byte-stream-split lets zstd squeeze the high bytes;
    // everything else repeats and is dictionary-encoded.
    const DELTA: &[usize] = &[col::TIME_START];
    const SPLIT: &[usize] = &[
        col::TIME_END,
        col::SRC_PORT,
        col::PACKETS,
        col::BYTES,
        col::RESP_PACKETS,
        col::RESP_BYTES,
    ];
    let mut b = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(layout.row_group_rows))
        .set_data_page_size_limit(1 << 20)
        // Pages cut by rows: a query reading a few rows skips the other pages undecoded.
        .set_data_page_row_count_limit(layout.page_rows)
        .set_created_by(format!("xdp-audit {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("xdp-audit.format".into(), "4".to_string()),
            KeyValue::new("xdp-audit.journal-id".into(), journal_id.to_string()),
            KeyValue::new(
                "xdp-audit.sort".into(),
                "src_ip,time_start,journal_order".to_string(),
            ),
        ]));
    // The address index (see `index`) costs ~0.26 bytes per record at 13 flows/s; zstd level
    // 6 on `dst_ip` (random remote addresses, whose dictionary page shares long prefixes)
    // gains ~0.17 of it back for ~10 ms more CPU per million records sealed.
    b = b
        .set_column_compression(
            ColumnPath::from(column_name(col::DST_IP)),
            Compression::ZSTD(ZstdLevel::try_new(6).unwrap_or_default()),
        )
        .set_column_data_page_row_count_limit(
            ColumnPath::from(column_name(col::DST_IP)),
            layout.dst_page_rows,
        );
    for (cols, enc) in [
        (DELTA, Encoding::DELTA_BINARY_PACKED),
        (SPLIT, Encoding::BYTE_STREAM_SPLIT),
    ] {
        for &c in cols {
            let path = ColumnPath::from(column_name(c));
            b = b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, enc);
        }
    }
    b.build()
}

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

/// Writes `rows` as a segment to `path` and fsyncs it. Returns the file size in bytes.
pub fn write(
    path: &Path,
    rows: &SortedColumns,
    journal_id: u64,
    layout: Layout,
) -> Result<u64, SegmentError> {
    let props = writer_props(journal_id, layout);
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(pq(path, "schema"))?);
    let file = File::create(path).map_err(|source| SegmentError::Io {
        path: path.to_owned(),
        op: "create",
        cause: source,
    })?;
    let mut w = SerializedFileWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        schema,
        Arc::new(props),
    )
    .map_err(pq(path, "open writer"))?;
    let mut crc_list = Vec::new();
    let mut index = Vec::new();
    let mut pages = PageTable::default();
    for start in (0..rows.len()).step_by(layout.row_group_rows) {
        let group = start..rows.len().min(start + layout.row_group_rows);
        index.push(index_row_group(
            path,
            &rows.src_ip()[group.clone()],
            &rows.dst_ip()[group.clone()],
        )?);
        let (crcs, group_pages) =
            write_row_group(&mut w, rows, group).map_err(pq(path, "write row group"))?;
        crc_list.push(
            crcs.iter()
                .map(|c| format!("{c:08x}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        pages.push_group(group_pages);
    }
    w.append_key_value_metadata(KeyValue::new(CRC_KEY.into(), crc_list.join(";")));
    for (key, blob, what) in [
        (
            INDEX_KEY,
            AddressIndex::new(index).encode(),
            "write address index",
        ),
        (PAGES_KEY, pages.encode(), "write page table"),
    ] {
        let at = w.bytes_written() as u64;
        w.write_all(&blob).map_err(|source| SegmentError::Io {
            path: path.to_owned(),
            op: what,
            cause: source,
        })?;
        w.append_key_value_metadata(KeyValue::new(
            key.into(),
            index::location(at, blob.len() as u64),
        ));
    }
    let buf = w.into_inner().map_err(pq(path, "finish"))?;
    let file = buf.into_inner().map_err(|e| SegmentError::Io {
        path: path.to_owned(),
        op: "flush",
        cause: e.into_error(),
    })?;
    file.sync_all().map_err(|source| SegmentError::Io {
        path: path.to_owned(),
        op: "fsync",
        cause: source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| SegmentError::Io {
            path: path.to_owned(),
            op: "stat",
            cause: source,
        })?
        .len();
    Ok(size)
}

/// The address index of one row group (see [`super::index`]), from its addresses in file
/// order.
fn index_row_group(
    path: &Path,
    src: &[[u8; 16]],
    dst: &[[u8; 16]],
) -> Result<GroupIndex, SegmentError> {
    GroupIndex::build(src, dst).map_err(|e| SegmentError::Invalid {
        path: path.to_owned(),
        column: format!("(file metadata {INDEX_KEY})"),
        reason: e.to_string(),
    })
}

/// Writes rows `group` as one row group; returns the CRC-32 of each column chunk's bytes,
/// and each chunk's pages.
fn write_row_group(
    w: &mut SerializedFileWriter<BufWriter<File>>,
    rows: &SortedColumns,
    group: Range<usize>,
) -> parquet::errors::Result<(Vec<u32>, Vec<Vec<PageEntry>>)> {
    // Columns are encoded and compressed in parallel into memory, then spliced into the
    // row group in schema order: sealing uses every core.
    let descrs: Vec<_> = w.schema_descr().columns().to_vec();
    let props = w.properties().clone();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(descrs.len());
    let mut encoded: Vec<Option<parquet::errors::Result<(bytes::Bytes, ColumnCloseResult)>>> =
        (0..descrs.len()).map(|_| None).collect();
    let slots = std::sync::Mutex::new(&mut encoded);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(descr) = descrs.get(i) else { break };
                let r = encode_column(i, rows, group.clone(), descr.clone(), props.clone());
                if let Ok(mut slots) = slots.lock() {
                    slots[i] = Some(r);
                }
            });
        }
    });
    let mut rg = w.next_row_group()?;
    let mut crcs = Vec::with_capacity(encoded.len());
    let mut pages = Vec::with_capacity(encoded.len());
    for (i, e) in encoded.into_iter().enumerate() {
        let (buf, close) = e.unwrap_or_else(|| {
            Err(parquet::errors::ParquetError::General(format!(
                "column {} was not encoded",
                column_name(i)
            )))
        })?;
        crcs.push(crc32fast::hash(&buf));
        pages.push(chunk_pages(i, &buf, &close)?);
        rg.append_column(&buf, close)?;
    }
    rg.close()?;
    Ok((crcs, pages))
}

/// The pages of an encoded column chunk (`buf`, offsets from its first byte), from the
/// writer's offset index: the dictionary page is whatever precedes the first data page.
fn chunk_pages(
    i: usize,
    buf: &[u8],
    close: &ColumnCloseResult,
) -> parquet::errors::Result<Vec<PageEntry>> {
    let missing = || {
        parquet::errors::ParquetError::General(format!(
            "column {}: the writer reported no page locations",
            column_name(i)
        ))
    };
    let locs = close
        .offset_index
        .as_ref()
        .ok_or_else(missing)?
        .page_locations();
    let mut out = Vec::with_capacity(locs.len() + 1);
    let mut page = |from: i64, len: i64, rows: i64| {
        let bytes = usize::try_from(from)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(f, l)| buf.get(f..f.checked_add(l)?));
        match (bytes, u32::try_from(len), u32::try_from(rows)) {
            (Some(b), Ok(len), Ok(rows)) => {
                out.push(PageEntry {
                    len,
                    rows,
                    crc: crc32fast::hash(b),
                });
                Ok(())
            }
            _ => Err(missing()),
        }
    };
    let first = locs.first().ok_or_else(missing)?;
    if first.offset > 0 {
        page(0, first.offset, 0)?;
    }
    let total = close.rows_written as i64;
    for (k, l) in locs.iter().enumerate() {
        let next_row = locs.get(k + 1).map_or(total, |n| n.first_row_index);
        page(
            l.offset,
            i64::from(l.compressed_page_size),
            next_row - l.first_row_index,
        )?;
    }
    Ok(out)
}

fn encode_column(
    i: usize,
    rows: &SortedColumns,
    group: Range<usize>,
    descr: parquet::schema::types::ColumnDescPtr,
    props: parquet::file::properties::WriterPropertiesPtr,
) -> parquet::errors::Result<(bytes::Bytes, ColumnCloseResult)> {
    let mut sink = TrackedWrite::new(Vec::with_capacity(group.len() * 4));
    let mut closed = None;
    {
        let pages = Box::new(SerializedPageWriter::new(&mut sink));
        let mut c = SerializedColumnWriter::new(
            get_column_writer(descr, props, pages),
            Some(Box::new(|r| {
                closed = Some(r);
                Ok(())
            })),
        );
        write_values(i, rows, group, &mut c)?;
        c.close()?;
    }
    let closed = closed.ok_or_else(|| {
        parquet::errors::ParquetError::General(format!("column {} did not close", column_name(i)))
    })?;
    Ok((bytes::Bytes::from(sink.into_inner()?), closed))
}

/// Rows handed to a column writer at once: one page (see `set_data_page_row_count_limit`),
/// so the gathered values stay in cache and their buffers are reused instead of a fresh
/// segment-long vector per column. A multiple of the writer's batch size (1,024), so pages
/// are cut exactly where one call for the whole column would cut them.
const WRITE_CHUNK: usize = 8192;

/// Feeds a column writer chunk by chunk: `fill(rows, values, definition levels)` gathers the
/// values of the journal rows `rows` (segment order) into the cleared buffers.
fn write_chunked<T: DataType>(
    c: &mut SerializedColumnWriter<'_>,
    perm: &[u32],
    optional: bool,
    mut fill: impl FnMut(&[u32], &mut Vec<T::T>, &mut Vec<i16>),
) -> parquet::errors::Result<()> {
    let w = c.typed::<T>();
    let mut vals = Vec::with_capacity(WRITE_CHUNK);
    let mut defs = Vec::with_capacity(if optional { WRITE_CHUNK } else { 0 });
    for rows in perm.chunks(WRITE_CHUNK) {
        vals.clear();
        defs.clear();
        fill(rows, &mut vals, &mut defs);
        w.write_batch(&vals, optional.then_some(&defs[..]), None)?;
    }
    Ok(())
}

/// Fixed-width values as slices of one shared buffer (no allocation per value).
fn push_fixed<const N: usize>(
    values: impl Iterator<Item = [u8; N]>,
    out: &mut Vec<FixedLenByteArray>,
) {
    let mut buf = Vec::with_capacity(WRITE_CHUNK * N);
    for v in values {
        buf.extend_from_slice(&v);
    }
    let buf = bytes::Bytes::from(buf);
    out.extend(
        (0..buf.len() / N)
            .map(|k| FixedLenByteArray::from(ByteArray::from(buf.slice(k * N..(k + 1) * N)))),
    );
}

/// The distinct strings of a column, each as one shared buffer.
fn dict_values(d: &Dict) -> Vec<ByteArray> {
    d.names()
        .iter()
        .map(|s| ByteArray::from(bytes::Bytes::copy_from_slice(s.as_bytes())))
        .collect()
}

/// Hands column `i`'s values of segment rows `g` to the column writer, gathered from the
/// journal-order buffers through the row order: 64-bit numbers as they are, narrower numbers
/// widened to the `int32` Parquet stores them in, strings as one shared buffer per distinct
/// value.
fn write_values(
    i: usize,
    rows: &SortedColumns,
    g: Range<usize>,
    c: &mut SerializedColumnWriter<'_>,
) -> parquet::errors::Result<()> {
    let cols = &rows.journal;
    let perm = &rows.perm[g.clone()];
    let int64 = |c: &mut SerializedColumnWriter<'_>, v: &[i64]| {
        write_chunked::<Int64Type>(c, perm, false, |p, out, _| {
            out.extend(p.iter().map(|&j| v[j as usize]));
        })
    };
    let int32 = |c: &mut SerializedColumnWriter<'_>, v: &dyn Fn(usize) -> i32| {
        write_chunked::<Int32Type>(c, perm, false, |p, out, _| {
            out.extend(p.iter().map(|&j| v(j as usize)));
        })
    };
    let optional = |c: &mut SerializedColumnWriter<'_>, v: &[Option<u16>]| {
        write_chunked::<Int32Type>(c, perm, true, |p, out, defs| {
            for &j in p {
                let x = v[j as usize];
                defs.push(i16::from(x.is_some()));
                out.extend(x.map(i32::from));
            }
        })
    };
    let mac = |c: &mut SerializedColumnWriter<'_>, v: &[[u8; 6]]| {
        write_chunked::<FixedLenByteArrayType>(c, perm, false, |p, out, _| {
            push_fixed(p.iter().map(|&j| v[j as usize]), out);
        })
    };
    // Addresses are already in segment order (see `SortedColumns::src_ip`).
    let ip = |c: &mut SerializedColumnWriter<'_>, v: &[[u8; 16]]| {
        let mut at = g.start;
        write_chunked::<FixedLenByteArrayType>(c, perm, false, |p, out, _| {
            push_fixed(v[at..at + p.len()].iter().copied(), out);
            at += p.len();
        })
    };
    match i {
        col::TIME_START => int64(c, &cols.time_start),
        col::TIME_END => int64(c, &cols.time_end),
        col::IFACE => {
            let names = dict_values(&cols.ifaces);
            write_chunked::<ByteArrayType>(c, perm, false, |p, out, _| {
                out.extend(
                    p.iter()
                        .map(|&j| names[cols.iface[j as usize] as usize].clone()),
                );
            })
        }
        col::IFINDEX => int32(c, &|j| cols.ifindex[j] as i32),
        col::VLAN => optional(c, &cols.vlan),
        col::VLAN_INNER => optional(c, &cols.vlan_inner),
        col::SRC_MAC => mac(c, &cols.src_mac),
        col::DST_MAC => mac(c, &cols.dst_mac),
        col::PROTO => int32(c, &|j| i32::from(cols.proto[j])),
        col::IP_VERSION => int32(c, &|j| i32::from(cols.ip_version[j])),
        col::SRC_IP => ip(c, rows.src_ip()),
        col::SRC_PORT => int32(c, &|j| i32::from(cols.src_port[j])),
        col::DST_IP => ip(c, rows.dst_ip()),
        col::DST_PORT => int32(c, &|j| i32::from(cols.dst_port[j])),
        col::PACKETS => int64(c, &cols.packets),
        col::BYTES => int64(c, &cols.bytes),
        col::RESP_PACKETS => int64(c, &cols.resp_packets),
        col::RESP_BYTES => int64(c, &cols.resp_bytes),
        col::TCP_FLAGS => int32(c, &|j| i32::from(cols.tcp_flags[j])),
        col::END_REASON => write_chunked::<ByteArrayType>(c, perm, false, |p, out, _| {
            // The names are static: sharing them costs no allocation and no reference count.
            out.extend(p.iter().map(|&j| {
                let name = cols.end_reason[j as usize].as_str();
                ByteArray::from(bytes::Bytes::from_static(name.as_bytes()))
            }));
        }),
        col::DROPPED => int64(c, &cols.dropped),
        col::RULE => {
            let names = dict_values(&cols.rules);
            write_chunked::<ByteArrayType>(c, perm, true, |p, out, defs| {
                for &j in p {
                    let id = cols.rule[j as usize];
                    defs.push(i16::from(id != NO_RULE));
                    if id != NO_RULE {
                        out.push(names[id as usize].clone());
                    }
                }
            })
        }
        _ => Err(parquet::errors::ParquetError::General(format!(
            "schema has an unexpected column {i}"
        ))),
    }
}

/// The `src_ip` and `dst_ip` columns of a row group, 16-byte form.
pub type AddressColumns = (Vec<[u8; 16]>, Vec<[u8; 16]>);

/// An open segment.
pub struct SegmentReader {
    path: PathBuf,
    reader: SerializedFileReader<File>,
    file: Arc<File>,
    /// The page table, read on first use (`None` inside: a segment written before it).
    pages: std::sync::OnceLock<Option<Arc<PageTable>>>,
    /// CRC-32 of every column chunk, per row group.
    crcs: Vec<Vec<u32>>,
    /// Columns in the file: [`col::COUNT`], or [`col::COUNT_V1`] for first-schema segments.
    columns: usize,
    /// File size in bytes, when opened.
    size: u64,
}

/// Part of a segment file held in memory, addressed by file offsets, so the Parquet page
/// reader reads pages as slices of it.
struct Region {
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
struct PageSource {
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
            return Err(err(format!(
                "checksum mismatch in the page at bytes {start}..{} (file damaged; run `xdp-audit verify`)",
                start + u64::from(len)
            )));
        }
        Ok(bytes::Bytes::from(buf))
    }
}

/// A row group read through a [`PageSource`].
struct PagedRowGroup<'a> {
    meta: &'a parquet::file::metadata::RowGroupMetaData,
    source: Arc<PageSource>,
    /// Data pages of each column.
    locations: Vec<Vec<PageLocation>>,
}

impl RowGroupReader for PagedRowGroup<'_> {
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
        let locations = self
            .locations
            .get(i)
            .cloned()
            .ok_or_else(|| parquet::errors::ParquetError::General(format!("no column {i}")))?;
        Ok(Box::new(
            parquet::file::serialized_reader::SerializedPageReader::new_with_properties(
                self.source.clone(),
                self.meta.column(i),
                usize::try_from(self.meta.num_rows())?,
                Some(locations),
                Arc::new(parquet::file::properties::ReaderProperties::builder().build()),
            )?,
        ))
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

/// File metadata key holding the CRC-32 of every column chunk (hex, `,` between columns,
/// `;` between row groups). Parquet pages carry no checksum as written by this library, and a
/// damaged zstd page can decode to plausible values, so every chunk is checked before use.
pub const CRC_KEY: &str = "xdp-audit.chunk-crc32";

/// Min/max of a row group's pruning columns, from the Parquet statistics.
#[derive(Debug, Clone, Default)]
pub struct RowGroupStats {
    /// Rows in the group.
    pub rows: usize,
    /// Smallest and largest `time_start`.
    pub time_start: Option<(i64, i64)>,
    /// Smallest and largest `time_end`.
    pub time_end: Option<(i64, i64)>,
    /// Smallest and largest `src_ip` (16-byte form).
    pub src_ip: Option<([u8; 16], [u8; 16])>,
    /// Smallest and largest `dst_ip` (16-byte form).
    pub dst_ip: Option<([u8; 16], [u8; 16])>,
}

fn flba_range(s: Option<&Statistics>) -> Option<([u8; 16], [u8; 16])> {
    let (min, max) = match s? {
        Statistics::FixedLenByteArray(v) => (v.min_opt()?, v.max_opt()?),
        _ => return None,
    };
    Some((min.data().try_into().ok()?, max.data().try_into().ok()?))
}

fn i64_range(s: Option<&Statistics>) -> Option<(i64, i64)> {
    match s? {
        Statistics::Int64(v) => Some((*v.min_opt()?, *v.max_opt()?)),
        _ => None,
    }
}

impl SegmentReader {
    /// Opens a segment and checks that its schema is the segment schema.
    pub fn open(path: &Path) -> Result<Self, SegmentError> {
        let file = File::open(path).map_err(|source| SegmentError::Io {
            path: path.to_owned(),
            op: "open",
            cause: source,
        })?;
        let reader = SerializedFileReader::new(file).map_err(pq(path, "read footer"))?;
        static WANT: std::sync::OnceLock<Option<parquet::schema::types::Type>> =
            std::sync::OnceLock::new();
        static WANT_V1: std::sync::OnceLock<Option<parquet::schema::types::Type>> =
            std::sync::OnceLock::new();
        let want = WANT.get_or_init(|| parse_message_type(SCHEMA).ok());
        let want_v1 = WANT_V1.get_or_init(|| parse_message_type(&schema_v1()).ok());
        let have = reader.metadata().file_metadata().schema();
        let columns = if want.as_ref() == Some(have) {
            col::COUNT
        } else if want_v1.as_ref() == Some(have) {
            col::COUNT_V1
        } else {
            0
        };
        if columns == 0 {
            let columns = reader
                .metadata()
                .file_metadata()
                .schema_descr()
                .columns()
                .len();
            return Err(SegmentError::Invalid {
                path: path.to_owned(),
                column: format!("(schema, {columns} columns)"),
                reason: "the file's schema is not the xdp-audit segment schema".into(),
            });
        }
        let bad_crcs = |reason: &str| SegmentError::Invalid {
            path: path.to_owned(),
            column: format!("(file metadata {CRC_KEY})"),
            reason: reason.to_owned(),
        };
        let text = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == CRC_KEY))
            .and_then(|kv| kv.value.clone())
            .ok_or_else(|| bad_crcs("missing"))?;
        let crcs: Vec<Vec<u32>> = text
            .split(';')
            .map(|g| {
                g.split(',')
                    .map(|c| u32::from_str_radix(c, 16).ok())
                    .collect()
            })
            .collect::<Option<_>>()
            .ok_or_else(|| bad_crcs("not hex"))?;
        if crcs.len() != reader.num_row_groups() || crcs.iter().any(|g| g.len() != columns) {
            return Err(bad_crcs("does not cover every column chunk"));
        }
        let file = File::open(path).map_err(|source| SegmentError::Io {
            path: path.to_owned(),
            op: "open",
            cause: source,
        })?;
        let size = file
            .metadata()
            .map_err(|source| SegmentError::Io {
                path: path.to_owned(),
                op: "stat",
                cause: source,
            })?
            .len();
        Ok(Self {
            path: path.to_owned(),
            reader,
            file: Arc::new(file),
            pages: std::sync::OnceLock::new(),
            crcs,
            columns,
            size,
        })
    }

    /// The id of the journal this segment was sealed from (file metadata).
    pub fn journal_id(&self) -> Option<u64> {
        self.reader
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == "xdp-audit.journal-id")?
            .value
            .as_deref()?
            .parse()
            .ok()
    }

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

    fn bad_key(&self, key: &str, reason: String) -> SegmentError {
        SegmentError::Invalid {
            path: self.path.clone(),
            column: format!("(file metadata {key})"),
            reason,
        }
    }

    /// The bytes a key-value entry `"<offset>+<length>"` points at (`None`: no such key).
    /// Such blobs lie between the data and the footer: bounded by the file, and small.
    fn blob(&self, key: &str, op: &'static str) -> Result<Option<Vec<u8>>, SegmentError> {
        let Some(text) = self
            .reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == key))
        else {
            return Ok(None);
        };
        let (at, len) = index::parse_location(text.value.as_deref().unwrap_or_default())
            .map_err(|e| self.bad_key(key, e.to_string()))?;
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
    fn page_table(&self) -> Result<Option<Arc<PageTable>>, SegmentError> {
        if let Some(t) = self.pages.get() {
            return Ok(t.clone());
        }
        let table = match self.blob(PAGES_KEY, "read page table")? {
            None => None,
            Some(raw) => {
                let bad = |e: index::IndexError| self.bad_key(PAGES_KEY, e.to_string());
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

    /// Row group `g` read page by page: each page is read from the file only when a column
    /// reader asks for it, and checked against its CRC in the page table. `None` for a
    /// segment without a page table.
    fn load_pages(&self, g: usize) -> Result<Option<PagedRowGroup<'_>>, SegmentError> {
        let Some(table) = self.page_table()? else {
            return Ok(None);
        };
        let rg = self.reader.metadata().row_group(g);
        let mut pages = Vec::new();
        let mut locations = Vec::with_capacity(rg.num_columns());
        for (c, chunk) in rg.columns().iter().enumerate() {
            let mut at = chunk.byte_range().0;
            let mut row = 0i64;
            let mut locs = Vec::new();
            for p in table.pages(g, c).unwrap_or_default() {
                pages.push((at, p.len, p.crc));
                if p.rows > 0 {
                    locs.push(PageLocation {
                        offset: at as i64,
                        compressed_page_size: p.len as i32,
                        first_row_index: row,
                    });
                    row += i64::from(p.rows);
                }
                at += u64::from(p.len);
            }
            locations.push(locs);
        }
        pages.sort_unstable();
        Ok(Some(PagedRowGroup {
            meta: rg,
            source: Arc::new(PageSource {
                file: self.file.clone(),
                pages,
                file_len: self.size,
            }),
            locations,
        }))
    }

    /// Number of row groups.
    pub fn row_groups(&self) -> usize {
        self.reader.num_row_groups()
    }

    /// Total rows.
    pub fn rows(&self) -> u64 {
        self.reader.metadata().file_metadata().num_rows().max(0) as u64
    }

    /// Statistics of row group `i`.
    pub fn stats(&self, i: usize) -> RowGroupStats {
        let rg = self.reader.metadata().row_group(i);
        let s = |c: usize| rg.column(c).statistics();
        RowGroupStats {
            rows: rg.num_rows().max(0) as usize,
            time_start: i64_range(s(col::TIME_START)),
            time_end: i64_range(s(col::TIME_END)),
            src_ip: flba_range(s(col::SRC_IP)),
            dst_ip: flba_range(s(col::DST_IP)),
        }
    }

    /// Reads the column chunks `columns` of row group `g` into memory with one read, checks
    /// each against its recorded CRC-32, and returns a row group reader over that memory.
    /// The Parquet reader would otherwise read a `File` page by page, with a `dup`, a seek and
    /// a fresh buffer per page header and per page: most of a small query's time.
    fn load(
        &self,
        g: usize,
        columns: &[usize],
    ) -> Result<SerializedRowGroupReader<'_, Region>, SegmentError> {
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
        SerializedRowGroupReader::new(
            Arc::new(region),
            rg,
            meta.page_index_for_row_group(g),
            Arc::new(parquet::file::properties::ReaderProperties::builder().build()),
        )
        .map_err(pq(&self.path, "open row group"))
    }

    fn invalid(&self, c: usize, reason: impl Into<String>) -> SegmentError {
        SegmentError::Invalid {
            path: self.path.clone(),
            column: column_name(c).to_owned(),
            reason: reason.into(),
        }
    }

    /// Reads the rows of `runs` (`(first row, count)`, ascending, disjoint) of column `c`.
    /// Pages holding none of them are skipped without being decompressed.
    fn column<T: DataType>(
        &self,
        rg: &dyn RowGroupReader,
        c: usize,
        runs: &[(usize, usize)],
        nullable: bool,
    ) -> Result<(Vec<T::T>, Vec<i16>), SegmentError> {
        let ctx = || format!("column {}", column_name(c));
        let raw = rg
            .get_column_reader(c)
            .map_err(|e| pq(&self.path, ctx())(e))?;
        let mut reader = T::get_column_reader(raw)
            .ok_or_else(|| self.invalid(c, "physical type differs from the schema"))?;
        let total: usize = runs.iter().map(|r| r.1).sum();
        let mut values = Vec::with_capacity(total);
        let mut defs = Vec::new();
        let mut pos = 0;
        for &(start, len) in runs {
            if start > pos {
                let skipped = reader
                    .skip_records(start - pos)
                    .map_err(|e| pq(&self.path, ctx())(e))?;
                if skipped != start - pos {
                    return Err(self.invalid(c, format!("ends at row {}", pos + skipped)));
                }
            }
            let mut read = 0;
            while read < len {
                let (n, _, _) = reader
                    .read_records(len - read, nullable.then_some(&mut defs), None, &mut values)
                    .map_err(|e| pq(&self.path, ctx())(e))?;
                if n == 0 {
                    return Err(self.invalid(c, format!("ends at row {}", start + read)));
                }
                read += n;
            }
            pos = start + len;
        }
        if !nullable && values.len() != total {
            return Err(self.invalid(c, format!("{} values for {total} rows", values.len())));
        }
        Ok((values, defs))
    }

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
    fn addresses(
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

    /// Reads the `src_ip` and `dst_ip` columns of row group `i` (16-byte form), so an address
    /// filter can test rows before the other columns are decoded.
    pub fn read_ips(&self, i: usize) -> Result<AddressColumns, SegmentError> {
        let rg = self.load(i, &[col::SRC_IP, col::DST_IP])?;
        let rows = rg.metadata().num_rows().max(0) as usize;
        let mut out = Vec::with_capacity(2);
        for c in [col::SRC_IP, col::DST_IP] {
            let (v, _) = self.column::<FixedLenByteArrayType>(&rg, c, &[(0, rows)], false)?;
            let mut ips = Vec::with_capacity(rows);
            for x in &v {
                ips.push(
                    x.data()
                        .try_into()
                        .map_err(|_| self.invalid(c, "value is not 16 bytes"))?,
                );
            }
            out.push(ips);
        }
        let dst = out.pop().unwrap_or_default();
        let src = out.pop().unwrap_or_default();
        Ok((src, dst))
    }

    /// Reads every row of row group `i` for which `keep(row)` is true (`keep` = `None`: all).
    pub fn read_rows(
        &self,
        i: usize,
        keep: Option<&[bool]>,
    ) -> Result<Vec<FlowRecord>, SegmentError> {
        // Some rows: page by page, reading only the pages that hold them. All rows: whole
        // chunks, one read.
        if keep.is_some() {
            if let Some(rg) = self.load_pages(i)? {
                return self.rows_of(&rg, keep);
            }
        }
        let all: Vec<usize> = (0..self.columns).collect();
        self.rows_of(&self.load(i, &all)?, keep)
    }

    fn rows_of(
        &self,
        g: &dyn RowGroupReader,
        keep: Option<&[bool]>,
    ) -> Result<Vec<FlowRecord>, SegmentError> {
        let rows = g.metadata().num_rows().max(0) as usize;
        // Matching rows as runs, so the other columns are read only where they are needed.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        match keep {
            None => runs.push((0, rows)),
            Some(k) => {
                for (r, _) in k.iter().enumerate().take(rows).filter(|(_, &m)| m) {
                    match runs.last_mut() {
                        Some(last) if last.0 + last.1 == r => last.1 += 1,
                        _ => runs.push((r, 1)),
                    }
                }
            }
        }
        let rows: usize = runs.iter().map(|r| r.1).sum();
        let runs = &runs[..];
        let (ts, _) = self.column::<Int64Type>(g, col::TIME_START, runs, false)?;
        let (te, _) = self.column::<Int64Type>(g, col::TIME_END, runs, false)?;
        let (iface, _) = self.column::<ByteArrayType>(g, col::IFACE, runs, false)?;
        let (ifindex, _) = self.column::<Int32Type>(g, col::IFINDEX, runs, false)?;
        let vlan = self.optional_u16(g, col::VLAN, runs, rows)?;
        let vlan_inner = self.optional_u16(g, col::VLAN_INNER, runs, rows)?;
        let (smac, _) = self.column::<FixedLenByteArrayType>(g, col::SRC_MAC, runs, false)?;
        let (dmac, _) = self.column::<FixedLenByteArrayType>(g, col::DST_MAC, runs, false)?;
        let (proto, _) = self.column::<Int32Type>(g, col::PROTO, runs, false)?;
        let (ipv, _) = self.column::<Int32Type>(g, col::IP_VERSION, runs, false)?;
        let sip = self.addresses(g, col::SRC_IP, runs)?;
        let (sport, _) = self.column::<Int32Type>(g, col::SRC_PORT, runs, false)?;
        let dip = self.addresses(g, col::DST_IP, runs)?;
        let (dport, _) = self.column::<Int32Type>(g, col::DST_PORT, runs, false)?;
        let (pk, _) = self.column::<Int64Type>(g, col::PACKETS, runs, false)?;
        let (by, _) = self.column::<Int64Type>(g, col::BYTES, runs, false)?;
        let (rpk, _) = self.column::<Int64Type>(g, col::RESP_PACKETS, runs, false)?;
        let (rby, _) = self.column::<Int64Type>(g, col::RESP_BYTES, runs, false)?;
        let (flags, _) = self.column::<Int32Type>(g, col::TCP_FLAGS, runs, false)?;
        let (reason, _) = self.column::<ByteArrayType>(g, col::END_REASON, runs, false)?;
        // Segments written before the list columns existed read as "nothing dropped".
        let (dropped, (rule_vals, rule_defs)) = if self.columns > col::DROPPED {
            (
                self.column::<Int64Type>(g, col::DROPPED, runs, false)?.0,
                self.column::<ByteArrayType>(g, col::RULE, runs, true)?,
            )
        } else {
            (vec![0; rows], (Vec::new(), vec![0; rows]))
        };
        if rule_defs.len() != rows {
            return Err(self.invalid(col::RULE, "definition levels do not match the rows"));
        }
        let mut rule_vals = rule_vals.into_iter();
        let mut out = Vec::with_capacity(rows);
        for r in 0..rows {
            let Some((src_v6, dst_v6)) = u8::try_from(ipv[r]).ok().and_then(ip_families) else {
                let v = ipv[r];
                return Err(self.invalid(col::IP_VERSION, format!("row {r}: value {v}")));
            };
            let mac = |c: usize, v: &FixedLenByteArray| -> Result<Mac, SegmentError> {
                Ok(Mac(v.data().try_into().map_err(|_| {
                    self.invalid(c, format!("row {r}: not 6 bytes"))
                })?))
            };
            let narrow = |c: usize, v: i32, max: i32| -> Result<i32, SegmentError> {
                if (0..=max).contains(&v) {
                    Ok(v)
                } else {
                    Err(self.invalid(c, format!("row {r}: value {v} out of range")))
                }
            };
            let text = |c: usize, v: &ByteArray| -> Result<String, SegmentError> {
                v.as_utf8()
                    .map(str::to_owned)
                    .map_err(|_| self.invalid(c, format!("row {r}: not UTF-8")))
            };
            let reason_s = text(col::END_REASON, &reason[r])?;
            let rule = if rule_defs[r] > 0 {
                let v = rule_vals
                    .next()
                    .ok_or_else(|| self.invalid(col::RULE, format!("row {r}: value missing")))?;
                Some(text(col::RULE, &v)?)
            } else {
                None
            };
            out.push(FlowRecord {
                time_start_ns: ts[r],
                time_end_ns: te[r],
                iface: text(col::IFACE, &iface[r])?,
                ifindex: ifindex[r] as u32,
                vlan: vlan[r],
                vlan_inner: vlan_inner[r],
                src_mac: mac(col::SRC_MAC, &smac[r])?,
                dst_mac: mac(col::DST_MAC, &dmac[r])?,
                proto: narrow(col::PROTO, proto[r], 255)? as u8,
                src_ip: ip_from_column(sip[r], src_v6),
                src_port: narrow(col::SRC_PORT, sport[r], 65535)? as u16,
                dst_ip: ip_from_column(dip[r], dst_v6),
                dst_port: narrow(col::DST_PORT, dport[r], 65535)? as u16,
                packets: pk[r] as u64,
                bytes: by[r] as u64,
                resp_packets: rpk[r] as u64,
                resp_bytes: rby[r] as u64,
                tcp_flags: narrow(col::TCP_FLAGS, flags[r], 255)? as u8,
                dropped: dropped[r] as u64,
                rule,
                end_reason: EndReason::parse(&reason_s).ok_or_else(|| {
                    self.invalid(
                        col::END_REASON,
                        format!("row {r}: unknown reason {reason_s:?}"),
                    )
                })?,
            });
        }
        Ok(out)
    }

    fn optional_u16(
        &self,
        g: &dyn RowGroupReader,
        c: usize,
        runs: &[(usize, usize)],
        rows: usize,
    ) -> Result<Vec<Option<u16>>, SegmentError> {
        let (vals, defs) = self.column::<Int32Type>(g, c, runs, true)?;
        if defs.len() != rows {
            return Err(self.invalid(c, format!("{} levels for {rows} rows", defs.len())));
        }
        let mut it = vals.into_iter();
        defs.iter()
            .enumerate()
            .map(|(r, &d)| {
                if d == 0 {
                    return Ok(None);
                }
                let v = it
                    .next()
                    .ok_or_else(|| self.invalid(c, format!("row {r}: value missing")))?;
                u16::try_from(v)
                    .map(Some)
                    .map_err(|_| self.invalid(c, format!("row {r}: value {v} out of range")))
            })
            .collect()
    }

    /// Reads every row of the segment, in file order.
    pub fn read_all(&self) -> Result<Vec<FlowRecord>, SegmentError> {
        let mut out = Vec::new();
        for i in 0..self.row_groups() {
            out.extend(self.read_rows(i, None)?);
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
        let mut header = 0u64;
        let mut shift = 0;
        loop {
            let (&b, r) = rest.split_first().ok_or("run header cut")?;
            rest = r;
            header |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 35 {
                return Err("run header too long".into());
            }
        }
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
            let groups = (header >> 1) as usize;
            let bytes = groups * width as usize;
            let packed = rest.get(..bytes).ok_or("bit-packed run cut")?;
            rest = &rest[bytes..];
            let count = (groups * 8).min(n - k);
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

/// The name of column `c`.
pub fn column_name(c: usize) -> &'static str {
    const NAMES: [&str; col::COUNT] = [
        "time_start",
        "time_end",
        "iface",
        "ifindex",
        "vlan",
        "vlan_inner",
        "src_mac",
        "dst_mac",
        "proto",
        "ip_version",
        "src_ip",
        "src_port",
        "dst_ip",
        "dst_port",
        "packets",
        "bytes",
        "resp_packets",
        "resp_bytes",
        "tcp_flags",
        "end_reason",
        "dropped",
        "rule",
    ];
    NAMES.get(c).copied().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::columns::Columns;
    use crate::store::testgen::TrafficGen;

    /// `recs` as column buffers in segment row order.
    pub(super) fn sorted(recs: &[FlowRecord]) -> SortedColumns {
        recs.iter()
            .collect::<Columns>()
            .into_row_order()
            .expect("row order")
    }

    #[test]
    fn every_field_round_trips_through_a_segment() {
        let dir = std::env::temp_dir().join(format!("xdp-audit-seg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("s.parquet");
        let mut g = TrafficGen::new(3, 1_700_000_000_000_000_000);
        let mut recs: Vec<FlowRecord> = (0..30_000).map(|_| g.next_record()).collect();
        recs[5].vlan_inner = Some(7);
        recs[6].src_ip = "2001:db8::1".parse().expect("ip");
        recs[6].dst_ip = "10.1.2.3".parse().expect("ip");
        recs[7].src_ip = "::ffff:10.1.2.3".parse().expect("ip"); // a v4-mapped IPv6 address stays v6
        recs[8].packets = u64::MAX;
        recs[9].iface = "ünïcode0".into();
        let rows = sorted(&recs);
        write(&path, &rows, 1, Layout::SEALED).expect("write segment");
        let sorted: Vec<FlowRecord> = (0..rows.len()).filter_map(|k| rows.record(k)).collect();
        let back = SegmentReader::open(&path)
            .expect("open")
            .read_all()
            .expect("read");
        assert_eq!(back, sorted, "segment changed records");
        let mut a = recs;
        a.sort_by_key(|r| r.time_start_ns);
        let mut b = back;
        b.sort_by_key(|r| r.time_start_ns);
        assert_eq!(a.len(), b.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Rows `keep` selects, read page by page, equal the same rows of a whole read, in both
    /// layouts; a damaged page is an error naming the file when a selected row lies in it,
    /// and unread (so no error) when none does.
    #[test]
    fn selected_rows_are_read_page_by_page_and_each_page_is_checked() {
        let dir = std::env::temp_dir().join(format!("xdp-audit-seg3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut g = TrafficGen::new(4, 1_700_000_000_000_000_000);
        let recs: Vec<FlowRecord> = (0..150_000).map(|_| g.next_record()).collect();
        let rows = sorted(&recs);
        for layout in [Layout::SEALED, Layout::COMPACTED] {
            let path = dir.join(format!("p{}.parquet", layout.page_rows));
            write(&path, &rows, 1, layout).expect("write segment");
            let seg = SegmentReader::open(&path).expect("open");
            assert_eq!(seg.row_groups(), rows.len().div_ceil(layout.row_group_rows));
            let all = seg.read_rows(0, None).expect("whole row group");
            // Scattered rows, a run across a page boundary, the last row.
            let n = all.len();
            let mut keep = vec![false; n];
            for k in (17..n).step_by(9_973) {
                keep[k] = true;
            }
            keep[layout.page_rows - 3..layout.page_rows + 3].fill(true);
            keep[n - 1] = true;
            let want: Vec<FlowRecord> = all
                .iter()
                .zip(&keep)
                .filter(|(_, &k)| k)
                .map(|(r, _)| r.clone())
                .collect();
            assert!(seg.load_pages(0).expect("page table").is_some());
            assert_eq!(seg.read_rows(0, Some(&keep)).expect("paged read"), want);

            // Damage one byte in the middle of the last data page of `time_end`.
            let table = seg.page_table().expect("table").expect("present");
            let chunk = seg.reader.metadata().row_group(0).column(col::TIME_END);
            let pages = table.pages(0, col::TIME_END).expect("pages");
            let last = pages.last().expect("a page");
            let end = chunk.byte_range().0 + chunk.byte_range().1;
            let at = end - u64::from(last.len) / 2;
            let mut bytes = std::fs::read(&path).expect("read");
            bytes[at as usize] ^= 0x55;
            std::fs::write(&path, &bytes).expect("write");
            let seg = SegmentReader::open(&path).expect("open damaged");
            let err = seg
                .read_rows(0, Some(&keep))
                .expect_err("a damaged page holding a selected row");
            let msg = err.to_string();
            assert!(
                msg.contains("checksum mismatch") && msg.contains(&path.display().to_string()),
                "{msg}"
            );
            let mut early = vec![false; n];
            early[5] = true;
            assert_eq!(
                seg.read_rows(0, Some(&early))
                    .expect("pages before the damage"),
                all[5..6]
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_of_another_schema_is_refused_with_the_file_named() {
        let dir = std::env::temp_dir().join(format!("xdp-audit-seg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("junk.parquet");
        std::fs::write(&path, b"PAR1 not really").expect("write");
        let err = SegmentReader::open(&path)
            .err()
            .expect("junk must be refused");
        assert!(err.to_string().contains("junk.parquet"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::store::testgen::TrafficGen;

    #[test]
    fn an_hour_of_the_generated_mix_seals_to_at_most_24_bytes_per_record() {
        let dir = std::env::temp_dir().join(format!("xdp-audit-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("hour.parquet");
        let mut g = TrafficGen::new(9, 1_700_000_000_000_000_000);
        let n = 13 * 3600;
        let recs: Vec<FlowRecord> = (0..n).map(|_| g.next_record()).collect();
        let rows = super::tests::sorted(&recs);
        let size = write(&path, &rows, 1, Layout::SEALED).expect("write segment");
        let per = size as f64 / n as f64;
        assert!(
            per <= 24.0,
            "{per:.2} bytes per record sealed ({size} bytes for {n} records)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
