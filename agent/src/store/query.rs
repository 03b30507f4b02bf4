//! Query: records matching a filter, from the sealed segments and the live journal(s).
//!
//! Segments are pruned by the manifest's time range, then row groups by their Parquet
//! statistics (time, and address range), then, for an address filter, by the segment's
//! address index (`segment::index`: source rows from its run table, the `dst_ip` column
//! opened only when its Bloom filter does not rule the address out; segments without an
//! index test both address columns), and only the matching rows of the other columns are
//! decoded, reading only the pages that hold them where the segment has a page table
//! (`segment::pages`). Segments are scanned on all cores; results come out in chain order
//! (each segment's rows by client, then start time), then the journals in file order (their
//! damaged stretches, if any, left out as the seal leaves them out).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::address::ip_to_column;
use super::journal::{self, JournalError};
use super::manifest::{self, Body, ManifestError, SegmentInfo};
use super::seal;
use super::segment::{SegmentError, SegmentReader};
use crate::net::Net;
use crate::record::{FlowRecord, Mac};

/// The `--ip` / `--cidr` filter: the one prefix type ([`crate::net::Prefix`]), parsed as list
/// files are (strictly: host bits set after the prefix is an error).
pub use crate::net::Prefix as Cidr;

/// Whether the 16-byte column form of an address is inside `net` (a prefix in column form,
/// [`Cidr::to_v6_mapped`]).
fn in_column(net: Net<u128>, a: &[u8; 16]) -> bool {
    net.contains(u128::from_be_bytes(*a))
}

/// What to look for. Every set condition must hold.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Either address inside this prefix (`--ip` is a host prefix).
    pub cidr: Option<Cidr>,
    /// Either port equal (ICMP: type or code).
    pub port: Option<u16>,
    /// Either MAC equal.
    pub mac: Option<Mac>,
    /// IP protocol number.
    pub proto: Option<u8>,
    /// Flows active at or after this time (Unix ns): newest packet >= since.
    pub since_ns: Option<i64>,
    /// Flows active before this time (Unix ns): first packet < until.
    pub until_ns: Option<i64>,
    /// Ignore the segments' address index and test every row group's address columns, as for
    /// segments written before the index existed: the baseline of the store benchmark, and
    /// the reference the index is tested against. Same results, slower.
    pub ignore_index: bool,
}

impl Filter {
    /// Whether a record matches.
    pub fn matches(&self, r: &FlowRecord) -> bool {
        if let Some(c) = self.cidr {
            let net = c.to_v6_mapped();
            if !in_column(net, &ip_to_column(r.src_ip)) && !in_column(net, &ip_to_column(r.dst_ip))
            {
                return false;
            }
        }
        self.port.is_none_or(|p| r.src_port == p || r.dst_port == p)
            && self.mac.is_none_or(|m| r.src_mac == m || r.dst_mac == m)
            && self.proto.is_none_or(|p| r.proto == p)
            && self.overlaps(r.time_start_ns, r.time_end_ns.max(r.time_start_ns))
    }

    /// Whether the time range `[min, max]` can hold a matching record.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.since_ns.is_none_or(|s| max >= s) && self.until_ns.is_none_or(|u| min < u)
    }
}

/// Parses `--since`/`--until`: RFC 3339 (`2026-05-03T14:00:00Z`, `2026-05-03T16:00:00+02:00`)
/// or a span before `now_ns` (`2h`, `90m`, `7d`, `1h30m`: see [`crate::span`]).
pub fn parse_time(s: &str, now_ns: i64) -> Result<i64, String> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return i64::try_from(ts.as_nanosecond()).map_err(|_| format!("{s:?} is out of range"));
    }
    if s.len() >= 10 && s.as_bytes()[4] == b'-' {
        return Err(format!(
            "{s:?} is not an RFC 3339 time with a UTC offset: write it like 2026-05-03T14:00:00Z or 2026-05-03T16:00:00+02:00"
        ));
    }
    // A bare number is a span of seconds to `span::parse`, but as a time it could as well be a
    // year or a date: refuse it rather than guess.
    if s.trim().bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{s:?} is ambiguous as a time: give a unit for a span ago (2h, {s}s) or an RFC 3339 time (2026-05-03T14:00:00Z)"
        ));
    }
    let ago = crate::span::parse_ns(s).map_err(|e| {
        format!("{s:?} is neither an RFC 3339 time with offset (2026-05-03T14:00:00Z) nor a span like 2h: {e}")
    })?;
    Ok(now_ns.saturating_sub(ago))
}

/// Errors of a query; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The manifest could not be read.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A segment could not be read (run `xdp-audit verify`).
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The directory could not be listed.
    #[error("log directory {path}: {cause}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// The consumer of the results failed (e.g. a closed pipe).
    #[error("writing results: {0}")]
    Output(std::io::Error),
}

/// Counters of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Live segments in the chain.
    pub segments: usize,
    /// Of those, opened (not pruned by the manifest's time range).
    pub segments_opened: usize,
    /// Row groups skipped by their statistics.
    pub row_groups_skipped: usize,
    /// Rows whose columns were decoded.
    pub rows_scanned: u64,
    /// Journals read.
    pub journals: usize,
    /// Records emitted.
    pub matched: u64,
}

/// The live segments, and the id of every journal ever sealed (a compacted segment's
/// inputs are no longer live, but their journals are sealed all the same).
fn load_segments(dir: &Path) -> Result<(Vec<SegmentInfo>, HashSet<u64>), QueryError> {
    let entries = manifest::read_entries(dir)?;
    let sealed = entries
        .iter()
        .filter_map(|e| match &e.body {
            Body::Segment(s) => Some(s.journal_id),
            _ => None,
        })
        .collect();
    let live = manifest::live_segments(&entries)
        .into_iter()
        .cloned()
        .collect();
    Ok((live, sealed))
}

fn ranges_meet(a: ([u8; 16], [u8; 16]), b: ([u8; 16], [u8; 16])) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

struct SegmentScan {
    records: Vec<FlowRecord>,
    skipped: usize,
    rows: u64,
}

fn scan_segment(path: &Path, f: &Filter) -> Result<SegmentScan, SegmentError> {
    let seg = SegmentReader::open(path)?;
    let net = f.cidr.map(Cidr::to_v6_mapped);
    let index = match f.cidr {
        Some(_) if !f.ignore_index => seg.address_index()?,
        _ => None,
    };
    let mut out = SegmentScan {
        records: Vec::new(),
        skipped: 0,
        rows: 0,
    };
    for g in 0..seg.row_groups() {
        let st = seg.stats(g);
        let time_ok = match (st.time_start, st.time_end) {
            (Some(s), Some(e)) => f.overlaps(s.0, s.1.max(e.1)),
            _ => true,
        };
        let cidr_range = net.map(|n| (n.addr.to_be_bytes(), n.last().to_be_bytes()));
        let ip_ok = match (cidr_range, st.src_ip, st.dst_ip) {
            (Some(c), Some(s), Some(d)) => ranges_meet(c, s) || ranges_meet(c, d),
            _ => true,
        };
        if !time_ok || !ip_ok {
            out.skipped += 1;
            continue;
        }
        let mask = match (net, index.as_ref().and_then(|x| x.group(g))) {
            (Some(n), Some(gi)) => {
                // Indexed: the source rows are one range from the footer; the destination
                // column is scanned only when its filter does not rule the address out.
                let (lo, hi) = (n.addr, n.last());
                let src = gi.src_rows(lo, hi);
                let dst_maybe = lo != hi || gi.dst_may_contain(lo);
                if src.is_empty() && !dst_maybe {
                    out.skipped += 1;
                    continue;
                }
                let mut mask = if dst_maybe {
                    seg.dst_mask(g, &|a: &[u8; 16]| in_column(n, a))?
                } else {
                    vec![false; st.rows]
                };
                mask.get_mut(src)
                    .ok_or_else(|| SegmentError::Invalid {
                        path: path.to_owned(),
                        column: "src_ip".into(),
                        reason: format!("row group {g}: index runs past {} rows", st.rows),
                    })?
                    .fill(true);
                if !mask.contains(&true) {
                    out.skipped += 1;
                    continue;
                }
                Some(mask)
            }
            (Some(n), None) => {
                let mask = seg.address_mask(g, &|a: &[u8; 16]| in_column(n, a))?;
                if !mask.contains(&true) {
                    out.skipped += 1;
                    continue;
                }
                Some(mask)
            }
            (None, _) => None,
        };
        out.rows += st.rows as u64;
        let rows = seg.read_rows(g, mask.as_deref())?;
        out.records
            .extend(rows.into_iter().filter(|r| f.matches(r)));
    }
    Ok(out)
}

/// Runs a query over `dir`, calling `emit` for each match and `progress(done, total)` after
/// each segment. Uses up to `threads` threads for segments.
pub fn scan(
    dir: &Path,
    filter: &Filter,
    threads: usize,
    emit: &mut dyn FnMut(&FlowRecord) -> std::io::Result<()>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ScanStats, QueryError> {
    // Journals are listed before the manifest is read: a journal sealed in between is then
    // found in the manifest by its id and skipped, not missed.
    let journals = seal::list_journals(dir).map_err(|source| QueryError::Dir {
        path: dir.to_owned(),
        cause: source,
    })?;
    let (mut segments, mut seen_ids) = load_segments(dir)?;
    let mut stats = ScanStats {
        segments: segments.len(),
        ..ScanStats::default()
    };
    segments.retain(|s| filter.overlaps(s.time_min_ns, s.time_max_ns));
    stats.segments_opened = segments.len();
    let threads = threads.max(1);
    let total = segments.len();
    for (done, batch) in segments.chunks(threads * 4).enumerate() {
        let results = scan_parallel(dir, batch, filter, threads);
        for res in results {
            let s = res?;
            stats.row_groups_skipped += s.skipped;
            stats.rows_scanned += s.rows;
            for r in &s.records {
                emit(r).map_err(QueryError::Output)?;
                stats.matched += 1;
            }
        }
        progress((done * threads * 4 + batch.len()).min(total), total);
    }
    for (id, path) in journals {
        if seen_ids.contains(&id) {
            continue;
        }
        let scan = match journal::read(&path) {
            Ok(s) => s,
            Err(JournalError::Io { cause: source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                // Sealed while we looked: read its segment instead.
                for s in load_segments(dir)?
                    .0
                    .into_iter()
                    .filter(|s| s.journal_id == id)
                {
                    let r = scan_segment(&dir.join(&s.file), filter)?;
                    for rec in &r.records {
                        emit(rec).map_err(QueryError::Output)?;
                        stats.matched += 1;
                    }
                }
                seen_ids.insert(id);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        stats.journals += 1;
        stats.rows_scanned += scan.records.len() as u64;
        let mut recs: Vec<&FlowRecord> =
            scan.records.iter().filter(|r| filter.matches(r)).collect();
        recs.sort_by_key(|r| r.time_start_ns);
        for r in recs {
            emit(r).map_err(QueryError::Output)?;
            stats.matched += 1;
        }
    }
    Ok(stats)
}

fn scan_parallel(
    dir: &Path,
    batch: &[SegmentInfo],
    filter: &Filter,
    threads: usize,
) -> Vec<Result<SegmentScan, SegmentError>> {
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<SegmentScan, SegmentError>>> =
        (0..batch.len()).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut slots);
    std::thread::scope(|s| {
        for _ in 0..threads.min(batch.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(seg) = batch.get(i) else { break };
                let path = dir.join(&seg.file);
                // A corrupt file must give an error naming it, even if the Parquet reader
                // panics on it.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    scan_segment(&path, filter)
                }))
                .unwrap_or_else(|_| {
                    Err(SegmentError::Invalid {
                        path: path.clone(),
                        column: "(file)".into(),
                        reason: "the Parquet reader failed on this file (corrupt?)".into(),
                    })
                });
                if let Ok(mut slots) = results.lock() {
                    slots[i] = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .zip(batch)
        .map(|(r, seg)| {
            r.unwrap_or_else(|| {
                Err(SegmentError::Io {
                    path: dir.join(&seg.file),
                    op: "scan",
                    cause: std::io::Error::other("scan thread failed"),
                })
            })
        })
        .collect()
}

/// Runs a query and collects the matches (tests and small results).
pub fn collect(dir: &Path, filter: &Filter) -> Result<Vec<FlowRecord>, QueryError> {
    let mut out = Vec::new();
    scan(
        dir,
        filter,
        default_threads(),
        &mut |r| {
            out.push(r.clone());
            Ok(())
        },
        &mut |_, _| {},
    )?;
    Ok(out)
}

/// Threads for a scan: the available cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_spans_parse_and_match() {
        let c: Cidr = "10.1.0.0/16".parse().expect("cidr");
        let col = |ip: &str| ip_to_column(ip.parse().expect("ip"));
        let n = c.to_v6_mapped();
        assert!(in_column(n, &col("10.1.200.3")));
        assert!(in_column(n, &col("10.1.0.0")));
        assert!(!in_column(n, &col("10.2.0.1")));
        assert!(!in_column(n, &col("10.0.255.255")));
        let v6: Cidr = "2001:db8::/32".parse().expect("cidr6");
        assert!(in_column(v6.to_v6_mapped(), &col("2001:db8:1::5")));
        assert!(!in_column(v6.to_v6_mapped(), &col("::ffff:10.1.0.1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.1.2.3/16".parse::<Cidr>().is_err(), "host bits set");
        assert!("nonsense".parse::<Cidr>().is_err());
        assert!(parse_time("2", 0).is_err(), "a bare number is no time");
        assert!(parse_time("2 parsecs", 0).is_err());
        assert_eq!(parse_time("2h", 10_000_000_000_000), Ok(2_800_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", 0), Ok(1_000_000_000));
        assert!(
            parse_time("2026-05-03T14:00:00", 0).is_err(),
            "no offset must be refused"
        );
    }
}
