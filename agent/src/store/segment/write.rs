//! Writing a segment: column buffers in row order become row groups, each column encoded and
//! compressed on its own thread, then the tail blobs (address index, page table) and the
//! footer with every column chunk's CRC-32.

use std::fs::File;
use std::io::BufWriter;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::writer::{get_column_writer, ColumnCloseResult};
use parquet::data_type::{
    ByteArray, ByteArrayType, DataType, FixedLenByteArray, FixedLenByteArrayType, Int32Type,
    Int64Type,
};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder, WriterVersion,
};
use parquet::file::writer::{
    SerializedColumnWriter, SerializedFileWriter, SerializedPageWriter, TrackedWrite,
};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use super::bloom::{self, BLOOM_KEY};
use super::index::{AddressIndex, GroupIndex, INDEX_KEY};
use super::nat_runs::NatRuns;
use super::pages::{Page as PageEntry, PageTable, PAGES_KEY};
use super::schema::{col, column_name, Layout, CRC_KEY, FORMAT, FORMAT_KEY, SCHEMA};
use super::tail;
use super::{io, pq, SegmentError};
use crate::store::columns::{Dict, SortedColumns, NONE};

fn writer_props(journal_id: u64, layout: Layout, rows: usize) -> WriterPropertiesBuilder {
    // Encodings chosen by measurement on the generated mix (see `testgen`): start times are
    // sorted within a client, so delta-packed; end times, source ports and counters are close
    // to random in their low bytes, where byte-stream-split lets zstd squeeze the high bytes;
    // everything else repeats and is dictionary-encoded.
    const DELTA: &[usize] = &[col::TIME_START];
    const SPLIT: &[usize] = &[
        col::TIME_END,
        col::SRC_PORT,
        col::NAT_PORT,
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
        // "NAME version X": Java readers (Spark, Trino) that cannot parse it ignore the
        // statistics of binary columns, the addresses' and MACs'.
        .set_created_by(format!("xdp-audit version {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(FORMAT_KEY.into(), FORMAT.to_string()),
            KeyValue::new("xdp-audit.journal-id".into(), journal_id.to_string()),
            KeyValue::new(
                "xdp-audit.sort".into(),
                "src_ip,time_start,journal_order".to_string(),
            ),
        ]));
    b = b.set_column_data_page_row_count_limit(
        ColumnPath::from(column_name(col::DST_IP)),
        layout.dst_page_rows,
    );
    // zstd levels by column, measured on a generated merged day at 13 flows/s: the
    // dictionary pages of remote addresses and names (tens of thousands of distinct values a
    // day, sharing long prefixes) shrink by ~0.15 byte per record at level 15 against 3; the
    // byte-stream-split columns (whose high bytes repeat) by ~0.07 at level 9. Other columns
    // gain nothing measurable above level 3.
    let level = |l: i32| Compression::ZSTD(ZstdLevel::try_new(l).unwrap_or_default());
    for c in [col::DST_IP, col::DOMAIN, col::DNS_QNAME] {
        b = b.set_column_compression(ColumnPath::from(column_name(c)), level(15));
    }
    for &c in SPLIT {
        b = b.set_column_compression(ColumnPath::from(column_name(c)), level(9));
    }
    // Identity columns get a Bloom filter (see `bloom`), sized for a row group of distinct
    // values and folded down to the target rate when the chunk closes.
    let ndv = rows.clamp(1, layout.row_group_rows) as u64;
    for (c, fpp) in bloom::FILTERED {
        let path = ColumnPath::from(column_name(c));
        b = b
            .set_column_bloom_filter_fpp(path.clone(), fpp)
            .set_column_bloom_filter_max_ndv(path, ndv);
    }
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
    b
}

/// Writes `rows` as a segment to `path` and fsyncs it. Returns the file size in bytes.
pub fn write(
    path: &Path,
    rows: &SortedColumns,
    journal_id: u64,
    layout: Layout,
) -> Result<u64, SegmentError> {
    write_props(
        path,
        rows,
        layout,
        writer_props(journal_id, layout, rows.len()),
    )
}

/// [`write`] with the writer properties changed by `tweak`: tests write the same rows in
/// other encodings and page versions, as another writer (or an earlier format) would.
#[cfg(test)]
pub(super) fn write_tweaked(
    path: &Path,
    rows: &SortedColumns,
    layout: Layout,
    tweak: impl FnOnce(WriterPropertiesBuilder) -> WriterPropertiesBuilder,
) -> Result<u64, SegmentError> {
    write_props(
        path,
        rows,
        layout,
        tweak(writer_props(1, layout, rows.len())),
    )
}

fn write_props(
    path: &Path,
    rows: &SortedColumns,
    layout: Layout,
    props: WriterPropertiesBuilder,
) -> Result<u64, SegmentError> {
    // Columns are encoded with Parquet's offset index on, for their page locations (the
    // page table is built from them), but the file is written without it: the page table
    // holds the same and more (a CRC per page), and the offset index cost ~0.3 bytes per
    // record on a merged day of 1,024-row pages). Engines read a file without it as any other.
    let encode = Arc::new(props.clone().build());
    let props = props.set_offset_index_disabled(true).build();
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(pq(path, "schema"))?);
    let file = File::create(path).map_err(io(path, "create"))?;
    let mut w = SerializedFileWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        schema,
        Arc::new(props),
    )
    .map_err(pq(path, "open writer"))?;
    let mut crc_list = Vec::new();
    let mut bloom_crcs = Vec::new();
    let mut index = Vec::new();
    let mut pages = PageTable::default();
    for start in (0..rows.len()).step_by(layout.row_group_rows) {
        let group = start..rows.len().min(start + layout.row_group_rows);
        index.push(index_row_group(path, rows, group.clone())?);
        let (crcs, group_pages, blooms) =
            write_row_group(&mut w, &encode, rows, group).map_err(pq(path, "write row group"))?;
        bloom_crcs.push(blooms);
        crc_list.push(
            crcs.iter()
                .map(|c| format!("{c:08x}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        pages.push_group(group_pages);
    }
    w.append_key_value_metadata(KeyValue::new(CRC_KEY.into(), crc_list.join(";")));
    w.append_key_value_metadata(KeyValue::new(
        BLOOM_KEY.into(),
        bloom::encode_crcs(&bloom_crcs),
    ));
    for (key, blob, what) in [
        (
            INDEX_KEY,
            AddressIndex::new(index).encode(),
            "write address index",
        ),
        (PAGES_KEY, pages.encode(), "write page table"),
    ] {
        let at = w.bytes_written() as u64;
        w.write_all(&blob).map_err(io(path, what))?;
        w.append_key_value_metadata(KeyValue::new(
            key.into(),
            tail::location(at, blob.len() as u64),
        ));
    }
    let buf = w.into_inner().map_err(pq(path, "finish"))?;
    let file = buf.into_inner().map_err(|e| SegmentError::Io {
        path: path.to_owned(),
        op: "flush",
        cause: e.into_error(),
    })?;
    file.sync_all().map_err(io(path, "fsync"))?;
    let size = file.metadata().map_err(io(path, "stat"))?.len();
    Ok(size)
}

/// The address index of rows `group` (see [`super::index`]), from their addresses in file
/// order.
fn index_row_group(
    path: &Path,
    rows: &SortedColumns,
    group: Range<usize>,
) -> Result<GroupIndex, SegmentError> {
    let cols = &rows.journal;
    let nat = NatRuns::build(rows.perm[group.clone()].iter().map(|&j| {
        let j = j as usize;
        (cols.nat_ip_version[j] != 0).then(|| cols.nat_ip[j])
    }));
    GroupIndex::build(&rows.src_ip()[group.clone()], &rows.dst_ip()[group])
        .and_then(|g| g.with_nat(nat))
        .map_err(|e| SegmentError::Invalid {
            path: path.to_owned(),
            column: format!("(file metadata {INDEX_KEY})"),
            reason: e.to_string(),
        })
}

/// The CRC-32 of each column chunk's bytes, each chunk's pages, and the CRC-32 of each
/// Bloom filter with its column, of one row group.
type GroupChecks = (Vec<u32>, Vec<Vec<PageEntry>>, Vec<(usize, u32)>);

/// Writes rows `group` as one row group; returns its [`GroupChecks`].
fn write_row_group(
    w: &mut SerializedFileWriter<BufWriter<File>>,
    props: &Arc<WriterProperties>,
    rows: &SortedColumns,
    group: Range<usize>,
) -> parquet::errors::Result<GroupChecks> {
    // Columns are encoded and compressed in parallel into memory, then spliced into the
    // row group in schema order: sealing uses every core.
    let descrs: Vec<_> = w.schema_descr().columns().to_vec();
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
    let mut blooms = Vec::new();
    for (i, e) in encoded.into_iter().enumerate() {
        let (buf, close) = e.unwrap_or_else(|| {
            Err(parquet::errors::ParquetError::General(format!(
                "column {} was not encoded",
                column_name(i)
            )))
        })?;
        crcs.push(crc32fast::hash(&buf));
        pages.push(chunk_pages(i, &buf, &close)?);
        if let Some(b) = &close.bloom_filter {
            blooms.push((i, bloom::crc_of(b)?));
        }
        rg.append_column(&buf, close)?;
    }
    rg.close()?;
    Ok((crcs, pages, blooms))
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
        write_values(i, rows, group.clone(), &mut c)?;
        c.close()?;
    }
    let mut closed = closed.ok_or_else(|| {
        parquet::errors::ParquetError::General(format!("column {} did not close", column_name(i)))
    })?;
    if let (Some(b), true) = (closed.bloom_filter.as_mut(), bloom::holds_parents(i)) {
        add_parent_names(i, rows, group, b);
    }
    Ok((bytes::Bytes::from(sink.into_inner()?), closed))
}

/// Adds the parent names of the names of column `i` (`domain` or `dns_qname`) in rows
/// `group` to its Bloom filter (see `bloom`), each distinct name once.
fn add_parent_names(
    i: usize,
    rows: &SortedColumns,
    group: Range<usize>,
    b: &mut parquet::bloom_filter::Sbbf,
) {
    let cols = &rows.journal;
    let (ids, dict) = match i {
        col::DOMAIN => (&cols.domain, &cols.domains),
        _ => (&cols.dns_qname, &cols.qnames),
    };
    let mut seen = vec![false; dict.names().len()];
    for &j in &rows.perm[group] {
        let id = ids[j as usize];
        if let Some(s) = seen.get_mut(id as usize).filter(|s| !**s) {
            *s = true;
            if let Some(name) = dict.get(id) {
                bloom::insert_name_and_parents(b, name);
            }
        }
    }
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
    // Text columns held as dictionary ids, `NONE` for null.
    let text = |c: &mut SerializedColumnWriter<'_>, ids: &[u32], dict: &Dict| {
        let names = dict_values(dict);
        write_chunked::<ByteArrayType>(c, perm, true, |p, out, defs| {
            for &j in p {
                let id = ids[j as usize];
                defs.push(i16::from(id != NONE));
                if id != NONE {
                    out.push(names[id as usize].clone());
                }
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
        col::RULE => text(c, &cols.rule, &cols.rules),
        col::USER => text(c, &cols.user, &cols.users),
        col::HOSTNAME => text(c, &cols.hostname, &cols.hostnames),
        col::NAT_IP => write_chunked::<FixedLenByteArrayType>(c, perm, true, |p, out, defs| {
            let present = |&&j: &&u32| cols.nat_ip_version[j as usize] != 0;
            defs.extend(p.iter().map(|j| i16::from(present(&j))));
            push_fixed(
                p.iter().filter(present).map(|&j| cols.nat_ip[j as usize]),
                out,
            );
        }),
        col::NAT_IP_VERSION => write_chunked::<Int32Type>(c, perm, true, |p, out, defs| {
            for &j in p {
                let v = cols.nat_ip_version[j as usize];
                defs.push(i16::from(v != 0));
                if v != 0 {
                    out.push(i32::from(v));
                }
            }
        }),
        col::NAT_PORT => optional(c, &cols.nat_port),
        col::DOMAIN => text(c, &cols.domain, &cols.domains),
        col::DOMAIN_SOURCE => write_chunked::<ByteArrayType>(c, perm, true, |p, out, defs| {
            for &j in p {
                let s = cols.domain_source[j as usize];
                defs.push(i16::from(s.is_some()));
                out.extend(
                    s.map(|s| ByteArray::from(bytes::Bytes::from_static(s.as_str().as_bytes()))),
                );
            }
        }),
        col::DNS_QNAME => text(c, &cols.dns_qname, &cols.qnames),
        col::DNS_QTYPE => optional(c, &cols.dns_qtype),
        _ => Err(parquet::errors::ParquetError::General(format!(
            "schema has an unexpected column {i}"
        ))),
    }
}
