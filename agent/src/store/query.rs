//! Query: records matching a filter, from the sealed segments and the live journal(s).
//!
//! Segments are pruned by the manifest's time range, then row groups by their Parquet
//! statistics (time, address, NAT address, protocol and port ranges), then each row group is
//! narrowed to its matching rows from the filter's own columns alone (late materialisation):
//! an address from the segment's address index (`segment::index`: source rows from its run
//! table, the `dst_ip` column opened only when its Bloom filter does not rule the address
//! out; segments without an index test both address columns), the attribution, rule,
//! protocol, MAC and port columns by dictionary entry or value (`segment::scan`), the time
//! window last, each reading only the pages that hold rows still in question. Only then are
//! the other columns decoded, for the matching rows alone and from the pages holding them
//! (`segment::pages`); a count ([`count`]) never decodes them. Segments are scanned on all
//! cores; results come out in chain order (each segment's rows by client, then start time),
//! then the journals in file order (their damaged stretches, if any, left out as the seal
//! leaves them out).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use super::journal::{self, JournalError};
use super::manifest::{self, Body, ManifestError, SegmentInfo};
use super::seal;
use super::segment::index::GroupIndex;
use super::segment::{col, SegmentError, SegmentReader};
use crate::record::FlowRecord;

pub use super::filter::{
    in_column, parse_time, parse_written_time, Cidr, DomainFilter, Filter, NatFilter, WrittenTime,
};

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
    /// A segment listed when the query started was removed by a later chain entry while it
    /// ran (retention pruned it, or compaction merged it into its day): nothing is damaged.
    #[error(
        "{file}: the store changed while this query read it (a later chain entry pruned or \
         merged it); run the query again"
    )]
    Changed {
        /// The segment's (or sealed journal's) file name.
        file: String,
    },
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
    /// Live journals that could not be read whole (unreadable, not a file, or with a damaged
    /// stretch): their records, or the damaged stretch's, are not in the answer, and each is
    /// named in a warning.
    pub journals_unreadable: usize,
    /// Records emitted.
    pub matched: u64,
    /// Of those, records from live journals (not sealed yet, so no chain entry covers them).
    pub journal_matched: u64,
}

/// The live segments, and the id of every journal ever sealed (a compacted segment's
/// inputs are no longer live, but their journals are sealed all the same).
pub(crate) fn load_segments(dir: &Path) -> Result<(Vec<SegmentInfo>, HashSet<u64>), QueryError> {
    let entries = manifest::read_entries(dir)?;
    manifest::check_order(dir, &entries)?;
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

/// Whether the segment `file` is no longer live in the chain read again now.
pub(crate) fn removed_since(dir: &Path, file: &str) -> bool {
    load_segments(dir).is_ok_and(|(live, _)| live.iter().all(|s| s.file != file))
}

/// The error of reading segment `file`: [`QueryError::Changed`] when it was not found and the
/// chain no longer lists it (pruned or merged since it was listed: nothing is damaged).
pub(crate) fn read_error(dir: &Path, file: &str, e: SegmentError) -> QueryError {
    if e.is_not_found() && removed_since(dir, file) {
        QueryError::Changed {
            file: file.to_owned(),
        }
    } else {
        e.into()
    }
}

fn ranges_meet(a: ([u8; 16], [u8; 16]), b: ([u8; 16], [u8; 16])) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

struct SegmentScan {
    records: Vec<FlowRecord>,
    /// Matches counted (every match, whether or not its record was built).
    count: u64,
    skipped: usize,
    rows: u64,
}

/// What a scan produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// The matching records.
    Records,
    /// Their number alone: the filter columns are decoded, never a record.
    Count,
}

/// The rows of a row group that may match.
enum Rows {
    /// None: the group is skipped.
    Skip,
    /// Every row.
    All,
    /// The rows marked.
    Some(Vec<bool>),
}

impl Rows {
    /// Narrows to the rows also in `mask`; `Skip` if none is left.
    fn and(self, mask: Vec<bool>) -> Rows {
        let mask = match self {
            Rows::Skip => return Rows::Skip,
            Rows::All => mask,
            Rows::Some(mut m) => {
                m.iter_mut().zip(&mask).for_each(|(a, b)| *a &= *b);
                m
            }
        };
        if mask.contains(&true) {
            Rows::Some(mask)
        } else {
            Rows::Skip
        }
    }

    /// The rows still in question, `None` for every row (or none).
    fn asked(&self) -> Option<&[bool]> {
        match self {
            Rows::Some(m) => Some(m),
            _ => None,
        }
    }

    fn is_skip(&self) -> bool {
        matches!(self, Rows::Skip)
    }
}

/// Scans one segment: each row group is narrowed to its matching rows from the filter's own
/// columns alone ([`group_rows`]); records are then built for those rows only (`Records`),
/// or the rows counted (`Count`).
fn scan_segment(
    path: &Path,
    listed: &SegmentInfo,
    f: &Filter,
    want: Want,
) -> Result<SegmentScan, SegmentError> {
    let seg = SegmentReader::open_listed(path, listed)?;
    let mut out = SegmentScan {
        records: Vec::new(),
        count: 0,
        skipped: 0,
        rows: 0,
    };
    let lacks = |c: usize| !seg.has_column(c);
    if (f.needs_attribution() && !seg.has_attribution()) || (f.rule.is_some() && lacks(col::RULE)) {
        // A segment of an earlier format holds no attribution (or no rule), so nothing in it
        // matches.
        out.skipped = seg.row_groups();
        return Ok(out);
    }
    let index = if (f.cidr.is_some() || f.nat.is_some()) && !f.ignore_index {
        seg.address_index()?
    } else {
        None
    };
    for g in 0..seg.row_groups() {
        let gi = index.as_ref().and_then(|x| x.group(g));
        if identity_absent(&seg, g, f)? {
            out.skipped += 1;
            continue;
        }
        let mask = match group_rows(path, &seg, g, f, gi)? {
            Rows::Skip => {
                out.skipped += 1;
                continue;
            }
            Rows::All => None,
            Rows::Some(m) => Some(m),
        };
        let rows = seg.stats(g).rows;
        out.rows += rows as u64;
        if want == Want::Count {
            out.count += mask
                .as_deref()
                .map_or(rows, |m| m.iter().filter(|&&x| x).count()) as u64;
            continue;
        }
        let before = out.records.len();
        // The masks decide every condition; `matches` holds the records built to the one
        // definition all the same (it costs nothing next to building them).
        out.records.extend(
            seg.read_rows(g, mask.as_deref())?
                .into_iter()
                .filter(|r| f.matches(r)),
        );
        out.count += (out.records.len() - before) as u64;
    }
    Ok(out)
}

/// The rows of row group `g` matching `f`, decided from the filter's columns alone, cheapest
/// and most selective first, each reading only the pages that hold rows still in question:
/// the statistics and the address, the attribution, the rule, protocol, MAC and port, and the
/// time window last (skipped where the group's statistics lie wholly inside it).
fn group_rows(
    path: &Path,
    seg: &SegmentReader,
    g: usize,
    f: &Filter,
    gi: Option<&GroupIndex>,
) -> Result<Rows, SegmentError> {
    let rows = match address_rows(path, seg, g, f, gi)? {
        Rows::Skip => return Ok(Rows::Skip),
        rows => attribute_rows(seg, g, f, gi, rows)?,
    };
    let rows = field_rows(seg, g, f, rows)?;
    time_rows(seg, g, f, rows)
}

/// Narrows `rows` by `--rule`, `--proto`, `--mac` and `--port`: a value outside both sides'
/// statistics skips the group, a dictionary without it skips the column's pages.
fn field_rows(
    seg: &SegmentReader,
    g: usize,
    f: &Filter,
    mut rows: Rows,
) -> Result<Rows, SegmentError> {
    if let (Some(want), false) = (f.rule.as_deref(), rows.is_skip()) {
        let m = seg.mask(g, &[col::RULE], &|v| {
            std::str::from_utf8(v).is_ok_and(|have| super::filter::rule_matches(want, have))
        })?;
        rows = rows.and(m);
    }
    let outside = |c: usize, v: i32| seg.i32_range(g, c).is_some_and(|(lo, hi)| v < lo || v > hi);
    if let (Some(p), false) = (f.proto, rows.is_skip()) {
        let v = i32::from(p);
        if outside(col::PROTO, v) {
            return Ok(Rows::Skip);
        }
        let m = seg.mask_any_equal(g, &[col::PROTO], &v.to_le_bytes(), rows.asked())?;
        rows = rows.and(m);
    }
    if let (Some(mac), false) = (f.mac, rows.is_skip()) {
        let cols = [col::SRC_MAC, col::DST_MAC];
        let m = seg.mask_any_equal(g, &cols, &mac.0, rows.asked())?;
        rows = rows.and(m);
    }
    if let (Some(p), false) = (f.port, rows.is_skip()) {
        let v = i32::from(p);
        let cols: Vec<usize> = [col::SRC_PORT, col::DST_PORT]
            .into_iter()
            .filter(|&c| !outside(c, v))
            .collect();
        if cols.is_empty() {
            return Ok(Rows::Skip);
        }
        let m = seg.mask_any_equal(g, &cols, &v.to_le_bytes(), rows.asked())?;
        rows = rows.and(m);
    }
    Ok(rows)
}

/// Narrows `rows` by the time window, row by row, unless the group's statistics put every
/// row inside it (the group was already skipped if they put every row outside).
fn time_rows(seg: &SegmentReader, g: usize, f: &Filter, rows: Rows) -> Result<Rows, SegmentError> {
    if rows.is_skip() || (f.since_ns.is_none() && f.until_ns.is_none()) {
        return Ok(rows);
    }
    let st = seg.stats(g);
    let inside = match (st.time_start, st.time_end) {
        // Every row's end (at least its start) is >= the smallest start, and every start
        // is <= the largest start.
        (Some(s), Some(_)) => {
            f.since_ns.is_none_or(|x| s.0 >= x) && f.until_ns.is_none_or(|u| s.1 < u)
        }
        _ => false,
    };
    if inside {
        return Ok(rows);
    }
    let m = seg.time_mask(g, f.since_ns, f.until_ns, rows.asked())?;
    Ok(rows.and(m))
}

/// Whether the identity filters of row group `g` (`segment::bloom`: MAC, account, name) rule
/// out every row the filter asks for. A group without filters is never ruled out here.
fn identity_absent(seg: &SegmentReader, g: usize, f: &Filter) -> Result<bool, SegmentError> {
    if f.ignore_index {
        return Ok(false);
    }
    let no = |x: Option<bool>| x == Some(false);
    if let Some(m) = f.mac {
        if no(seg.mac_may_be_in(g, m.0)?) {
            return Ok(true);
        }
    }
    if let Some(u) = f.user.as_deref() {
        if no(seg.user_may_be_in(g, u)?) {
            return Ok(true);
        }
    }
    if let Some(d) = &f.domain {
        if no(seg.domain_may_be_in(g, d.as_str())?) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The rows of row group `g` the time window and the address filter leave: pruned by the
/// group's statistics, then by the address index where there is one, else by the address
/// columns.
fn address_rows(
    path: &Path,
    seg: &SegmentReader,
    g: usize,
    f: &Filter,
    gi: Option<&GroupIndex>,
) -> Result<Rows, SegmentError> {
    let st = seg.stats(g);
    let time_ok = match (st.time_start, st.time_end) {
        (Some(s), Some(e)) => f.overlaps(s.0, s.1.max(e.1)),
        _ => true,
    };
    let net = f.cidr.map(Cidr::to_v6_mapped);
    let cidr_range = net.map(|n| (n.addr.to_be_bytes(), n.last().to_be_bytes()));
    let ip_ok = match (cidr_range, st.src_ip, st.dst_ip) {
        (Some(c), Some(s), Some(d)) => ranges_meet(c, s) || ranges_meet(c, d),
        _ => true,
    };
    let nat_ok = match (f.nat, st.nat_ip) {
        (Some(n), Some(r)) => ranges_meet((n.column(), n.column()), r),
        _ => true,
    };
    if !time_ok || !ip_ok || !nat_ok {
        return Ok(Rows::Skip);
    }
    let Some(n) = net else {
        return Ok(Rows::All);
    };
    let Some(gi) = gi else {
        return Ok(Rows::All.and(seg.address_mask(g, &|a: &[u8; 16]| in_column(n, a))?));
    };
    // Indexed: the source rows are one range from the footer; the destination column is
    // scanned only when its filter does not rule the address out.
    let (lo, hi) = (n.addr, n.last());
    let src = gi.src_rows(lo, hi);
    let dst_maybe = lo != hi || gi.dst_may_contain(lo);
    if src.is_empty() && !dst_maybe {
        return Ok(Rows::Skip);
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
    Ok(Rows::All.and(mask))
}

/// Narrows `rows` of row group `g` by the attribution filters, each from its column's pages
/// (only the pages holding rows still in question): the cheap ones first (an account or NAT
/// address absent from a dictionary skips the group without decoding a data page; the NAT
/// address's rows come from the index, `gi`, where it has them), the NAT port, which every
/// NATed row holds a different value of, last and only while rows are left.
fn attribute_rows(
    seg: &SegmentReader,
    g: usize,
    f: &Filter,
    gi: Option<&GroupIndex>,
    mut rows: Rows,
) -> Result<Rows, SegmentError> {
    if let Some(user) = f.user.as_deref() {
        let m = seg.mask_equal(g, col::USER, user.as_bytes(), rows.asked())?;
        rows = rows.and(m);
    }
    if let (Some(nat), false) = (f.nat, matches!(rows, Rows::Skip)) {
        let m = match gi.and_then(|x| x.nat_rows(u128::from_be_bytes(nat.column()))) {
            Some(ranges) => {
                let mut m = vec![false; seg.stats(g).rows];
                for r in ranges {
                    if let Some(s) = m.get_mut(r) {
                        s.fill(true);
                    }
                }
                m
            }
            None => seg.mask_equal(g, col::NAT_IP, &nat.column(), rows.asked())?,
        };
        rows = rows.and(m);
        if let (Some(port), false) = (nat.port, matches!(rows, Rows::Skip)) {
            let want = i32::from(port).to_le_bytes();
            let m = seg.mask_equal(g, col::NAT_PORT, &want, rows.asked())?;
            rows = rows.and(m);
        }
    }
    if let (Some(d), false) = (&f.domain, matches!(rows, Rows::Skip)) {
        rows = rows.and(seg.mask(g, &[col::DOMAIN, col::DNS_QNAME], &|v| d.matches(v))?);
    }
    Ok(rows)
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
    run(dir, filter, threads, Want::Records, emit, progress)
}

/// Counts the matches of a query over `dir` (in [`ScanStats::matched`]) without building a
/// record from a segment: only the filter's columns are decoded (the live journals are
/// decoded and tested record by record, as [`scan`] does).
pub fn count(
    dir: &Path,
    filter: &Filter,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ScanStats, QueryError> {
    run(dir, filter, threads, Want::Count, &mut |_| Ok(()), progress)
}

fn run(
    dir: &Path,
    filter: &Filter,
    threads: usize,
    want: Want,
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
    // A segment lost or replaced fails the answer before its first record is out, not
    // after the records of the segments before it.
    for s in &segments {
        SegmentReader::check_listed(&dir.join(&s.file), s)
            .map_err(|e| read_error(dir, &s.file, e))?;
    }
    let threads = threads.max(1);
    let total = segments.len();
    fn take(
        stats: &mut ScanStats,
        s: SegmentScan,
        emit: &mut dyn FnMut(&FlowRecord) -> std::io::Result<()>,
    ) -> Result<(), QueryError> {
        stats.row_groups_skipped += s.skipped;
        stats.rows_scanned += s.rows;
        for r in &s.records {
            emit(r).map_err(QueryError::Output)?;
        }
        stats.matched += s.count;
        Ok(())
    }
    let listed: std::collections::HashSet<u64> = journals.iter().map(|(id, _)| *id).collect();
    let mut done = 0;
    scan_in_order(dir, &segments, filter, threads, want, &mut |res| {
        let res = res.map_err(|e| read_error(dir, &segments[done].file, e))?;
        take(&mut stats, res, emit)?;
        done += 1;
        progress(done, total);
        Ok(())
    })?;
    for (id, path) in journals {
        if seen_ids.contains(&id) {
            continue;
        }
        let scan = match journal::read(&path) {
            Ok(s) => s,
            Err(JournalError::Io { cause: source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                // Sealed while we looked: read its segment instead. A journal with no
                // records is deleted without a segment (every clean restart leaves one). One
                // sealed into a segment no longer live was merged into its day (or pruned)
                // since: this query cannot read it.
                let (live, ever) = load_segments(dir)?;
                let sealed: Vec<_> = live.into_iter().filter(|s| s.journal_id == id).collect();
                if sealed.is_empty() && ever.contains(&id) {
                    return Err(QueryError::Changed {
                        file: journal::file::journal_name(id),
                    });
                }
                for s in sealed {
                    let r = scan_guarded(&dir.join(&s.file), &s, filter, want)
                        .map_err(|e| read_error(dir, &s.file, e))?;
                    take(&mut stats, r, emit)?;
                }
                seen_ids.insert(id);
                continue;
            }
            Err(e) => {
                // One unreadable file does not withhold the rest of the answer; the agent
                // leaves such a journal in place and counts it (`unsealable`).
                tracing::warn!(
                    journal = %path.display(),
                    error = %e,
                    "a live journal cannot be read: its records are not in this answer"
                );
                stats.journals_unreadable += 1;
                continue;
            }
        };
        if journal::file::warn_copy(&path, id, &scan.frames, &seen_ids, &listed) {
            stats.journals_unreadable += 1;
            continue;
        }
        // A torn tail is a write the agent is making or a crash cut short; a stretch with
        // valid frames after it is damage, and its records are not in this answer, which is
        // then incomplete as for an unreadable journal.
        let damaged = journal::file::warn_damaged_live(&path, &scan.frames);
        stats.journals_unreadable += usize::from(damaged);
        stats.journals += 1;
        stats.rows_scanned += scan.records.len() as u64;
        let mut recs: Vec<&FlowRecord> =
            scan.records.iter().filter(|r| filter.matches(r)).collect();
        stats.matched += recs.len() as u64;
        stats.journal_matched += recs.len() as u64;
        if want == Want::Records {
            recs.sort_by_key(|r| r.time_start_ns);
            for r in recs {
                emit(r).map_err(QueryError::Output)?;
            }
        }
    }
    Ok(stats)
}

/// Scans `segments` on `threads` threads and hands each result to `take` in segment order,
/// as soon as it and all before it are done, while the threads go on with the next ones.
/// A thread runs at most [`AHEAD`] segments per thread ahead of the last one taken, so
/// the records held stay bounded while `take` writes them out. (Before, segments went in
/// batches of that size, each waiting for its slowest segment and starting threads anew:
/// over 90 segments a count kept one core of two busy.)
fn scan_in_order(
    dir: &Path,
    segments: &[SegmentInfo],
    filter: &Filter,
    threads: usize,
    want: Want,
    take: &mut dyn FnMut(Result<SegmentScan, SegmentError>) -> Result<(), QueryError>,
) -> Result<(), QueryError> {
    let n = segments.len();
    let window = threads.max(1) * AHEAD;
    let order = Order {
        state: Mutex::new(OrderState {
            slots: (0..n).map(|_| None).collect(),
            taken: 0,
            stop: false,
        }),
        changed: Condvar::new(),
    };
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // Stops the threads however this closure ends: a panic in `take` unwinds through
        // here, and the scope waits for every thread before it goes on; a thread waiting to
        // run ahead would wait for ever.
        let _stop = StopOnDrop(&order);
        let worker = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(seg) = segments.get(i) else { break };
            if !order.wait_for(|st| st.stop || i < st.taken + window) {
                break;
            }
            let r = scan_guarded(&dir.join(&seg.file), seg, filter, want);
            let mut st = order.lock();
            st.slots[i] = Some(r);
            order.changed.notify_all();
        };
        let spawned = (0..threads.min(n))
            .filter(|_| {
                std::thread::Builder::new()
                    .name("xdp-audit-query".into())
                    .spawn_scoped(s, worker)
                    .is_ok()
            })
            .count();
        let mut out = Ok(());
        for (i, seg) in segments.iter().enumerate() {
            let r = if spawned == 0 {
                // The system refused every thread: scan here.
                scan_guarded(&dir.join(&seg.file), seg, filter, want)
            } else {
                let mut st = order.lock();
                loop {
                    if let Some(r) = st.slots[i].take() {
                        st.taken = i + 1;
                        order.changed.notify_all();
                        break r;
                    }
                    st = order.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            if let Err(e) = take(r) {
                out = Err(e);
                break;
            }
        }
        out
    })
}

/// Sets [`OrderState::stop`] and wakes the threads when dropped.
struct StopOnDrop<'a>(&'a Order);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.changed.notify_all();
    }
}

/// Segments per thread the scan may run ahead of the output.
const AHEAD: usize = 4;

/// Where [`scan_in_order`]'s threads leave their results, and how far the output has got.
struct Order {
    state: Mutex<OrderState>,
    /// A result left, a result taken, or the scan stopped.
    changed: Condvar,
}

struct OrderState {
    slots: Vec<Option<Result<SegmentScan, SegmentError>>>,
    /// Results taken so far (in order).
    taken: usize,
    /// The output is done, failed or panicked: the threads stop.
    stop: bool,
}

impl Order {
    fn lock(&self) -> std::sync::MutexGuard<'_, OrderState> {
        // Nothing panics while holding it (the scans run outside it, under catch_unwind).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `ready` holds; `false` when the scan stopped.
    fn wait_for(&self, ready: impl Fn(&OrderState) -> bool) -> bool {
        let mut st = self.lock();
        while !ready(&st) {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        !st.stop
    }
}

/// [`scan_segment`], with a panic of the Parquet reader on a corrupt file turned into an
/// error naming the file.
fn scan_guarded(
    path: &Path,
    seg: &SegmentInfo,
    filter: &Filter,
    want: Want,
) -> Result<SegmentScan, SegmentError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scan_segment(path, seg, filter, want)
    }))
    .unwrap_or_else(|_| {
        Err(SegmentError::Invalid {
            path: path.to_owned(),
            column: "(file)".into(),
            reason: "the Parquet reader failed on this file (corrupt?)".into(),
        })
    })
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
