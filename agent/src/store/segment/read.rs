//! Reading a segment: opening it (schema and chunk checksums checked), its statistics, and
//! its rows as records, all of them or the chosen ones.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::data_type::DataType;
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use parquet::schema::parser::parse_message_type;

use super::gather::{fixed, i32_of, i64_of, text_of};
use super::pages::PageTable;
use super::scan::runs_of;
use super::schema::{col, column_name, schema_prefix, COLUMN_COUNTS, CRC_KEY};
use super::{io, pq, SegmentError};
use crate::enrich::names::NameSource;
use crate::record::{Attribution, EndReason, FlowRecord, Mac};
use crate::store::address::{ip_families, ip_from_column};
use crate::store::fsutil::open_read;
use crate::store::manifest::SegmentInfo;

/// The `src_ip` and `dst_ip` columns of a row group, 16-byte form.
pub type AddressColumns = (Vec<[u8; 16]>, Vec<[u8; 16]>);

/// An open segment.
pub struct SegmentReader {
    pub(super) path: PathBuf,
    pub(super) reader: SerializedFileReader<File>,
    pub(super) file: Arc<File>,
    /// The page table, read on first use (`None` inside: a segment written before it).
    pub(super) pages: std::sync::OnceLock<Option<Arc<PageTable>>>,
    /// CRC-32 of every column chunk, per row group.
    pub(super) crcs: Vec<Vec<u32>>,
    /// Columns in the file: one of [`COLUMN_COUNTS`] (fewer for segments of earlier formats).
    pub(super) columns: usize,
    /// File size in bytes, when opened.
    pub(super) size: u64,
}

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
    /// Smallest and largest `nat_ip` (16-byte form); `None` for a group without NAT
    /// addresses or a segment of an earlier format.
    pub nat_ip: Option<([u8; 16], [u8; 16])>,
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

/// Refuses a footer whose column chunks do not lie inside the file: the Parquet library
/// asserts their offsets are not negative (`ColumnChunkMetaData::byte_range`), so a flipped
/// bit there would panic a reader instead of failing it, and one past the end would read
/// another chunk's bytes.
pub(crate) fn check_chunk_ranges(
    path: &Path,
    meta: &parquet::file::metadata::ParquetMetaData,
    file_len: u64,
) -> Result<(), SegmentError> {
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for c in rg.columns() {
            let bad = |field: &str, value: i64, what: String| SegmentError::Invalid {
                path: path.to_owned(),
                column: c.column_path().string(),
                reason: format!(
                    "row group {g}: footer field {field} is {value}, {what} (file damaged; run \
                     `xdp-audit verify`)"
                ),
            };
            let inside = |field: &str, value: i64| match u64::try_from(value) {
                Ok(v) if v < file_len => Ok(v),
                Ok(_) => Err(bad(
                    field,
                    value,
                    format!("past the file's {file_len} bytes"),
                )),
                Err(_) => Err(bad(field, value, "negative".into())),
            };
            let data = inside("data_page_offset", c.data_page_offset())?;
            let dict = c
                .dictionary_page_offset()
                .map(|d| inside("dictionary_page_offset", d))
                .transpose()?;
            let size = c.compressed_size();
            let len = u64::try_from(size)
                .map_err(|_| bad("total_compressed_size", size, "negative".into()))?;
            let start = dict.unwrap_or(data);
            if start.checked_add(len).is_none_or(|end| end > file_len) {
                return Err(bad(
                    "total_compressed_size",
                    size,
                    format!("so the chunk from byte {start} runs past the file's {file_len} bytes"),
                ));
            }
        }
    }
    Ok(())
}

/// The SHA-256 (hex) of a Parquet file's footer: its metadata and the 8-byte trailer
/// (metadata length, `PAR1`) that closes the file of `len` bytes.
pub fn footer_sha256(file: &File, len: u64) -> std::io::Result<String> {
    use sha2::Digest;
    use std::os::unix::fs::FileExt;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let trailer_at = len
        .checked_sub(8)
        .ok_or_else(|| bad("shorter than a Parquet trailer"))?;
    let mut trailer = [0u8; 8];
    file.read_exact_at(&mut trailer, trailer_at)?;
    let (meta_len, magic) = trailer.split_first_chunk::<4>().unwrap_or((&[0; 4], &[]));
    if magic != b"PAR1" {
        return Err(bad("no Parquet trailer at its end"));
    }
    let meta_len = u64::from(u32::from_le_bytes(*meta_len));
    // The file opens with `PAR1` too; a length reaching into it is damage.
    let mut at = trailer_at
        .checked_sub(meta_len)
        .filter(|&s| s >= 4)
        .ok_or_else(|| bad("its footer length runs past the file's start"))?;
    // Read in pieces: a damaged length must not buy a 4 GiB buffer.
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    while at < len {
        let n = usize::try_from(len - at).map_or(buf.len(), |n| n.min(buf.len()));
        file.read_exact_at(&mut buf[..n], at)?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(crate::store::fsutil::hex(&h.finalize()))
}

impl SegmentReader {
    /// What a stat tells of the segment a manifest entry lists: there, a regular file (not
    /// through a link: a segment is the file its seal wrote) of the size the entry recorded.
    /// A query checks every segment so before it prints its first record.
    pub fn check_listed(path: &Path, listed: &SegmentInfo) -> Result<(), SegmentError> {
        let meta = std::fs::symlink_metadata(path).map_err(io(path, "stat"))?;
        let refused = |reason: String| SegmentError::Invalid {
            path: path.to_owned(),
            column: "(file)".into(),
            reason: format!("{reason}; `xdp-audit verify` checks every file"),
        };
        if let Some(kind) = crate::store::fsutil::not_regular(meta.file_type()) {
            return Err(refused(format!("a {kind}, not a regular file")));
        }
        if meta.len() != listed.size {
            return Err(refused(format!(
                "{} bytes where the manifest records {}: cut short, grown, or another file \
                 in its place",
                meta.len(),
                listed.size
            )));
        }
        Ok(())
    }

    /// Opens the segment a manifest entry lists, checked against what the entry recorded:
    /// its size, its rows and (entries since it was recorded) its footer's SHA-256. A file
    /// lost, cut short or put in another's place fails here, naming it, instead of answering
    /// from the wrong rows; so does a damaged footer, whose statistics would otherwise skip
    /// row groups without a word (`verify` compares the whole file's hash).
    pub fn open_listed(path: &Path, listed: &SegmentInfo) -> Result<Self, SegmentError> {
        Self::check_listed(path, listed)?;
        let refused = |reason: String| SegmentError::Invalid {
            path: path.to_owned(),
            column: "(file)".into(),
            reason: format!("{reason}; `xdp-audit verify` checks every file"),
        };
        let size = listed.size;
        // Never a blocking open: a FIFO under a segment's name would hold it forever.
        let file = open_read(path).map_err(|e| io(path, "open")(e.into()))?;
        if let Some(want) = &listed.footer_sha256 {
            let have = footer_sha256(&file, size).map_err(io(path, "read the footer"))?;
            if have != *want {
                return Err(refused(
                    "its Parquet footer (statistics, offsets, checksums) differs from the one \
                     the manifest records: damaged"
                        .into(),
                ));
            }
        }
        let seg = Self::from_file(path, file)?;
        let rows = listed.rows;
        if seg.rows() != rows {
            return Err(refused(format!(
                "{} rows where the manifest records {rows}: another segment in its place",
                seg.rows()
            )));
        }
        Ok(seg)
    }

    /// Opens a segment and checks that its schema is the segment schema.
    pub fn open(path: &Path) -> Result<Self, SegmentError> {
        // Never a blocking open: a FIFO under a segment's name would hold it forever.
        let file = open_read(path).map_err(|e| io(path, "open")(e.into()))?;
        Self::from_file(path, file)
    }

    /// [`Self::open`] on a file already open.
    fn from_file(path: &Path, file: File) -> Result<Self, SegmentError> {
        let size = file.metadata().map_err(io(path, "stat"))?.len();
        let parquet_file = file.try_clone().map_err(io(path, "open"))?;
        let reader = SerializedFileReader::new(parquet_file).map_err(pq(path, "read footer"))?;
        check_chunk_ranges(path, reader.metadata(), size)?;
        // The schema of every format read, parsed once.
        static KNOWN: std::sync::OnceLock<Vec<(usize, parquet::schema::types::Type)>> =
            std::sync::OnceLock::new();
        let known = KNOWN.get_or_init(|| {
            COLUMN_COUNTS
                .iter()
                .filter_map(|&n| Some((n, parse_message_type(&schema_prefix(n)).ok()?)))
                .collect()
        });
        // A newer build's segment says so by its format, which is no damage; read as this
        // build's, its columns could mean other things.
        let format = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == super::schema::FORMAT_KEY))
            .and_then(|kv| kv.value.as_deref()?.parse::<u32>().ok());
        let mine = super::schema::FORMAT.parse::<u32>().unwrap_or(u32::MAX);
        let have = reader.metadata().file_metadata().schema();
        let columns = known.iter().find(|(_, t)| t == have).map_or(0, |(n, _)| *n);
        if let Some(f) = format.filter(|&f| f > mine) {
            return Err(SegmentError::Invalid {
                path: path.to_owned(),
                column: format!("(file metadata {})", super::schema::FORMAT_KEY),
                reason: format!(
                    "written by a newer xdp-audit (segment format {f}; this build reads up to \
                     {mine}): read it with that version"
                ),
            });
        }
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

    /// Number of row groups.
    pub fn row_groups(&self) -> usize {
        self.reader.num_row_groups()
    }

    /// Whether the segment has the attribution columns (format 5 on).
    pub fn has_attribution(&self) -> bool {
        self.columns > col::USER
    }

    /// Whether the segment has column `c` (segments of earlier formats have fewer).
    pub fn has_column(&self, c: usize) -> bool {
        c < self.columns
    }

    /// Smallest and largest value of INT32 column `c` in row group `g`, from the Parquet
    /// statistics (`None` without them, or for a column the segment lacks).
    pub fn i32_range(&self, g: usize, c: usize) -> Option<(i32, i32)> {
        if !self.has_column(c) {
            return None;
        }
        match self.reader.metadata().row_group(g).column(c).statistics()? {
            Statistics::Int32(v) => Some((*v.min_opt()?, *v.max_opt()?)),
            _ => None,
        }
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
            nat_ip: if self.has_attribution() {
                flba_range(s(col::NAT_IP))
            } else {
                None
            },
        }
    }

    pub(super) fn invalid(&self, c: usize, reason: impl Into<String>) -> SegmentError {
        SegmentError::Invalid {
            path: self.path.clone(),
            column: column_name(c).to_owned(),
            reason: reason.into(),
        }
    }

    /// Reads the rows of `runs` (`(first row, count)`, ascending, disjoint) of column `c`.
    /// Pages holding none of them are skipped without being decompressed.
    pub(super) fn column<T: DataType>(
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

    /// Reads the `src_ip` and `dst_ip` columns of row group `i` (16-byte form), so an address
    /// filter can test rows before the other columns are decoded.
    pub fn read_ips(&self, i: usize) -> Result<AddressColumns, SegmentError> {
        let rg = self.load(i, &[col::SRC_IP, col::DST_IP])?;
        let all = [(0, rg.metadata().num_rows().max(0) as usize)];
        let ip = |c| self.gather_required(&rg, c, &all, |_, v| fixed::<16>(v));
        Ok((ip(col::SRC_IP)?, ip(col::DST_IP)?))
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
        let runs = match keep {
            None => vec![(0, rows)],
            Some(k) => runs_of(&k[..k.len().min(rows)]),
        };
        let rows: usize = runs.iter().map(|r| r.1).sum();
        let runs = &runs[..];
        let int64 = |c| self.gather_required(g, c, runs, i64_of);
        let int32 = |c| self.gather_required(g, c, runs, i32_of);
        let mac = |c| self.gather_required(g, c, runs, |_, v| fixed::<6>(v).map(Mac));
        let ip = |c| self.gather_required(g, c, runs, |_, v| fixed::<16>(v));
        let ts = int64(col::TIME_START)?;
        let te = int64(col::TIME_END)?;
        let mut iface = self.gather_required(g, col::IFACE, runs, text_of)?;
        let ifindex = int32(col::IFINDEX)?;
        let vlan = self.optional_u16(g, col::VLAN, runs)?;
        let vlan_inner = self.optional_u16(g, col::VLAN_INNER, runs)?;
        let smac = mac(col::SRC_MAC)?;
        let dmac = mac(col::DST_MAC)?;
        let proto = int32(col::PROTO)?;
        let ipv = int32(col::IP_VERSION)?;
        let sip = ip(col::SRC_IP)?;
        let sport = int32(col::SRC_PORT)?;
        let dip = ip(col::DST_IP)?;
        let dport = int32(col::DST_PORT)?;
        let pk = int64(col::PACKETS)?;
        let by = int64(col::BYTES)?;
        let rpk = int64(col::RESP_PACKETS)?;
        let rby = int64(col::RESP_BYTES)?;
        let flags = int32(col::TCP_FLAGS)?;
        let reason = self.gather_required(g, col::END_REASON, runs, |_, v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(EndReason::parse)
                .ok_or_else(|| format!("unknown reason {:?}", String::from_utf8_lossy(v)))
        })?;
        // Segments written before the list columns existed read as "nothing dropped".
        let (dropped, rules) = if self.columns > col::DROPPED {
            (
                int64(col::DROPPED)?,
                self.gather_optional(g, col::RULE, runs, text_of)?,
            )
        } else {
            (vec![0; rows], vec![None; rows])
        };
        let mut attrs = self.attributions(g, runs, rows)?.into_iter();
        let mut rules = rules.into_iter();
        let mut out = Vec::with_capacity(rows);
        for r in 0..rows {
            let Some((src_v6, dst_v6)) = u8::try_from(ipv[r]).ok().and_then(ip_families) else {
                let v = ipv[r];
                return Err(self.invalid(col::IP_VERSION, format!("row {r}: value {v}")));
            };
            let narrow = |c: usize, v: i32, max: i32| -> Result<i32, SegmentError> {
                if (0..=max).contains(&v) {
                    Ok(v)
                } else {
                    Err(self.invalid(c, format!("row {r}: value {v} out of range")))
                }
            };
            out.push(FlowRecord {
                time_start_ns: ts[r],
                time_end_ns: te[r],
                iface: std::mem::take(&mut iface[r]),
                ifindex: ifindex[r] as u32,
                vlan: vlan[r],
                vlan_inner: vlan_inner[r],
                src_mac: smac[r],
                dst_mac: dmac[r],
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
                rule: rules.next().flatten(),
                end_reason: reason[r],
                attr: attrs.next().unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// The attribution of the rows of `runs` (`rows` of them); empty for a segment of an
    /// earlier format.
    fn attributions(
        &self,
        g: &dyn RowGroupReader,
        runs: &[(usize, usize)],
        rows: usize,
    ) -> Result<Vec<Attribution>, SegmentError> {
        if !self.has_attribution() {
            return Ok(vec![Attribution::default(); rows]);
        }
        let text = |c: usize| self.gather_optional(g, c, runs, text_of);
        let user = text(col::USER)?;
        let hostname = text(col::HOSTNAME)?;
        let nat_ip = self.gather_optional(g, col::NAT_IP, runs, |_, v| fixed::<16>(v))?;
        let nat_version = self.gather_optional(g, col::NAT_IP_VERSION, runs, i32_of)?;
        let nat_port = self.optional_u16(g, col::NAT_PORT, runs)?;
        let domain = text(col::DOMAIN)?;
        let source = self.gather_optional(g, col::DOMAIN_SOURCE, runs, |_, v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(NameSource::from_str_form)
                .ok_or_else(|| format!("unknown source {:?}", String::from_utf8_lossy(v)))
        })?;
        let qname = text(col::DNS_QNAME)?;
        let qtype = self.optional_u16(g, col::DNS_QTYPE, runs)?;
        let mut out = Vec::with_capacity(rows);
        let parts = user
            .into_iter()
            .zip(hostname)
            .zip(nat_ip.into_iter().zip(nat_version));
        let parts = parts.zip(domain.into_iter().zip(source).zip(qname));
        for (r, (((user, hostname), (ip, version)), ((domain, source), qname))) in parts.enumerate()
        {
            let nat_ip = match (ip, version) {
                (None, None) => None,
                (Some(ip), Some(v @ (4 | 6))) => Some(ip_from_column(ip, v == 6)),
                (_, v) => {
                    return Err(self.invalid(
                        col::NAT_IP_VERSION,
                        format!("row {r}: version {v:?} does not fit the address"),
                    ))
                }
            };
            out.push(Attribution {
                user,
                hostname,
                nat_ip,
                nat_port: nat_port[r],
                domain,
                domain_source: source,
                dns_qname: qname,
                dns_qtype: qtype[r],
            });
        }
        Ok(out)
    }

    /// The values of optional INT32 column `c` holding a `u16` at the rows of `runs`.
    fn optional_u16(
        &self,
        g: &dyn RowGroupReader,
        c: usize,
        runs: &[(usize, usize)],
    ) -> Result<Vec<Option<u16>>, SegmentError> {
        self.gather_optional(g, c, runs, |r, v| {
            let v = i32_of(r, v)?;
            u16::try_from(v).map_err(|_| format!("value {v} out of range"))
        })
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
