//! Compaction: the hourly segments of a closed day are merged into one, and the merge is a
//! chain entry. Every segment a query opens costs it a fixed ~1-2 ms (footer, index,
//! dictionary pages, codec set-up) whatever it returns, so 90 days in 90 files instead of
//! 2,160 is what keeps `query --ip` for an address seen every hour within a second.
//!
//! Order of operations, each step durable before the next: every input's size and SHA-256
//! is checked against the chain (a changed segment is never laundered into a new one); the
//! merged segment is written under the next chain position's name (temporary name, fsync,
//! rename, directory fsync) with journal id 0; the `compact` entry is appended. The inputs
//! stay on disk until the next pass, so a query that read the chain just before the entry
//! can still open them. A crash before the entry leaves an unlisted merged segment at the
//! next chain position, which `verify` tolerates and the next start deletes
//! ([`discard_interrupted`]); a crash after it leaves inputs the chain removed, deleted
//! like pruned segments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::columns::Columns;
use super::fsutil::{sha256_file, sync_dir};
use super::manifest::{
    live_segments, Body, CompactInfo, Entry, Manifest, ManifestError, RemovedFile, SegmentInfo,
};
use super::retention::{self, DAY_NS};
use super::seal::{self, is_segment_name, SealError};
use super::segment::{Layout, SegmentError, SegmentReader};
use super::HOUR_NS;
use crate::record::rfc3339_s;

/// Most rows in a merged segment: a mid-size gateway's day (about 1.1 million flows at 13
/// per second) fits in one. The merge holds this many rows in column buffers (~130 bytes
/// each).
pub const DEFAULT_MAX_ROWS: u64 = 1_500_000;
/// Segments with at least this many rows are left alone: a busy hour is already a large
/// file, and reading one decodes a whole row group of records at once.
pub const MAX_INPUT_ROWS: u64 = 262_144;
/// A day is merged this long after it ends, so its last hour has been sealed.
pub const GRACE_NS: i64 = HOUR_NS;

/// Errors of compaction; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// An input differs from what the chain recorded at its seal: it is not merged (that
    /// would hide the change); `verify` reports it.
    #[error("{path}: {reason}; not compacted (run `xdp-audit verify`)")]
    Changed {
        /// The input.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// An input could not be hashed or the directory not listed or cleaned.
    #[error("{path}: {op}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// An input could not be read.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The merged segment could not be written.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The manifest could not be appended.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Some days of a pass were not merged (each one warned about); the others were.
    #[error("{} of {} merges due were not done: {}", failed.len(), merged + failed.len(), list(failed))]
    Partial {
        /// Merged segments written by the pass.
        merged: usize,
        /// The groups left as they were.
        failed: Vec<GroupFailed>,
    },
    /// The disk was full: the pass stopped there (the merges after it would fail the same
    /// way), and the next one tries again. No group is at fault for it.
    #[error(
        "the disk refuses writes ({cause}); {merged} merges done, the rest wait until it takes them{}",
        also(failed)
    )]
    DiskFull {
        /// Merged segments written by the pass before it stopped.
        merged: usize,
        /// Groups left as they were for a fault of their own, before it stopped.
        failed: Vec<GroupFailed>,
        /// What met the full disk.
        cause: Box<CompactError>,
    },
}

impl CompactError {
    /// Whether the disk was full ([`crate::store::fsutil::is_disk_full`]): not a changed or
    /// damaged segment, and it passes when space returns.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Io { cause, .. } => crate::store::fsutil::is_disk_full(cause),
            Self::Segment(e) => e.is_disk_full(),
            Self::Seal(e) => e.is_disk_full(),
            Self::Manifest(e) => e.is_disk_full(),
            Self::DiskFull { .. } => true,
            Self::Changed { .. } | Self::Partial { .. } => false,
        }
    }

    /// The groups a pass left for a fault of their own (a changed or damaged segment).
    pub fn failed_groups(&self) -> &[GroupFailed] {
        match self {
            Self::Partial { failed, .. } | Self::DiskFull { failed, .. } => failed,
            _ => &[],
        }
    }
}

/// A group of a closed day's segments a pass could not merge.
#[derive(Debug)]
pub struct GroupFailed {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Why.
    pub error: CompactError,
}

fn list(failed: &[GroupFailed]) -> String {
    failed
        .iter()
        .map(|g| format!("day {}: {}", g.day, g.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The groups that failed for a fault of their own besides a full disk, for its message.
fn also(failed: &[GroupFailed]) -> String {
    if failed.is_empty() {
        String::new()
    } else {
        format!("; also {}", list(failed))
    }
}

/// The merges due at `now_ns`: live segments of each closed UTC day (by their first
/// record), in chain order, packed into groups of at most `max_rows` rows; only groups of
/// two or more are worth a merge.
pub fn plan(entries: &[Entry], now_ns: i64, max_rows: u64) -> Vec<Vec<SegmentInfo>> {
    let mut days: BTreeMap<i64, Vec<&SegmentInfo>> = BTreeMap::new();
    for s in live_segments(entries) {
        let day = s.time_min_ns.div_euclid(DAY_NS);
        let closed = (day + 1)
            .checked_mul(DAY_NS)
            .and_then(|end| end.checked_add(GRACE_NS))
            .is_some_and(|t| t <= now_ns);
        if closed && s.rows < MAX_INPUT_ROWS.min(max_rows) {
            days.entry(day).or_default().push(s);
        }
    }
    let mut groups = Vec::new();
    for segments in days.into_values() {
        let mut group: Vec<SegmentInfo> = Vec::new();
        let mut rows = 0;
        for s in segments {
            if rows + s.rows > max_rows {
                if group.len() > 1 {
                    groups.push(std::mem::take(&mut group));
                }
                group.clear();
                rows = 0;
            }
            rows += s.rows;
            group.push(s.clone());
        }
        if group.len() > 1 {
            groups.push(group);
        }
    }
    groups
}

/// One compaction pass: deletes the inputs of earlier merges, then does the merges due at
/// `now_ns`. Returns how many merged segments were written. A group that cannot be merged
/// (a changed or damaged input) is warned about, naming its day, and left as it is, and the
/// others are still merged: one bad file must not stop every later day's compaction. Any
/// such group makes the pass end in [`CompactError::Partial`]. A full disk is no group's
/// fault: the pass stops there and ends in [`CompactError::DiskFull`].
pub fn run(
    dir: &Path,
    manifest: &mut Manifest,
    now_ns: i64,
    max_rows: u64,
) -> Result<usize, CompactError> {
    retention::finish_interrupted(dir, manifest)?;
    let groups = plan(manifest.entries(), now_ns, max_rows);
    let mut failed = Vec::new();
    let mut merged = 0;
    for group in &groups {
        match merge(dir, manifest, group, now_ns) {
            Ok(_) => merged += 1,
            Err(error) if error.is_disk_full() => {
                return Err(CompactError::DiskFull {
                    merged,
                    failed,
                    cause: Box::new(error),
                });
            }
            Err(error) => failed.push(group_failed(group, error)),
        }
    }
    if failed.is_empty() {
        Ok(merged)
    } else {
        Err(CompactError::Partial { merged, failed })
    }
}

/// A group that could not be merged, warned about with its day and files.
fn group_failed(group: &[SegmentInfo], error: CompactError) -> GroupFailed {
    let mut day = rfc3339_s(group.first().map_or(0, |s| s.time_min_ns));
    day.truncate("YYYY-MM-DD".len());
    let files: Vec<&str> = group.iter().map(|s| s.file.as_str()).collect();
    tracing::warn!(day = %day, files = %files.join(" "), error = %error, "a closed day was not compacted; its segments stay as sealed (run `xdp-audit verify`), the other days are merged");
    GroupFailed { day, error }
}

/// Merges `inputs` (live, in chain order) into one segment and appends the entry.
pub fn merge(
    dir: &Path,
    manifest: &mut Manifest,
    inputs: &[SegmentInfo],
    now_ns: i64,
) -> Result<SegmentInfo, CompactError> {
    let rows: u64 = inputs.iter().map(|s| s.rows).sum();
    let mut columns = Columns::with_capacity(usize::try_from(rows).unwrap_or(0));
    for s in inputs {
        let path = dir.join(&s.file);
        check_unchanged(&path, s)?;
        let seg = SegmentReader::open(&path)?;
        for g in 0..seg.row_groups() {
            for r in seg.read_rows(g, None)? {
                columns.push_record(&r);
            }
        }
        if columns.len() as u64 > rows {
            return Err(CompactError::Changed {
                path,
                reason: "holds more rows than its seal recorded".into(),
            });
        }
    }
    if columns.len() as u64 != rows {
        return Err(CompactError::Changed {
            path: dir.to_owned(),
            reason: format!(
                "the inputs hold {} rows, their seals recorded {rows}",
                columns.len()
            ),
        });
    }
    let info = seal::write_file(
        dir,
        columns,
        0,
        seal::next_seq(manifest)?,
        Layout::COMPACTED,
    )?;
    let appended = manifest.append(Body::Compact(CompactInfo {
        at_ns: now_ns,
        files: inputs
            .iter()
            .map(|s| RemovedFile {
                file: s.file.clone(),
                sha256: s.sha256.clone(),
            })
            .collect(),
        segment: info.clone(),
    }));
    if let Err(e) = appended {
        // Left unlisted at the next position, the merged file would be taken by the next
        // entry (a seal) and `verify` would fail for good; the inputs are all still listed.
        seal::discard_unlisted(dir, &info.file);
        return Err(e.into());
    }
    tracing::info!(
        file = %dir.join(&info.file).display(),
        inputs = inputs.len(),
        rows = info.rows,
        bytes = info.size,
        "compacted segments"
    );
    Ok(info)
}

fn check_unchanged(path: &Path, s: &SegmentInfo) -> Result<(), CompactError> {
    let io = |op, source| CompactError::Io {
        path: path.to_owned(),
        op,
        cause: source,
    };
    // Not through a link: a segment is the file its seal wrote (readers and `verify` refuse
    // a link, which a merge would otherwise take in and delete).
    let meta = std::fs::symlink_metadata(path).map_err(|e| io("stat", e))?;
    if let Some(kind) = crate::store::fsutil::not_regular(meta.file_type()) {
        return Err(CompactError::Changed {
            path: path.to_owned(),
            reason: format!("a {kind}, not the regular file sealed"),
        });
    }
    let size = meta.len();
    if size != s.size {
        return Err(CompactError::Changed {
            path: path.to_owned(),
            reason: format!("size {size} differs from the sealed size {}", s.size),
        });
    }
    let sha = sha256_file(path).map_err(|e| io("hash", e))?;
    if sha != s.sha256 {
        return Err(CompactError::Changed {
            path: path.to_owned(),
            reason: format!("SHA-256 {sha} differs from the sealed {}", s.sha256),
        });
    }
    Ok(())
}

/// Deletes the segment of a compaction or a seal a crash interrupted before its entry: an
/// unlisted segment at the next chain position with journal id 0 (a merge, whose inputs are
/// still live), or with the id of a journal still there (a seal, which that journal's seal
/// writes again; under another name when recovery cut the journal's first record, and the
/// one left behind kept `verify` BROKEN for good). Must run before anything else takes that
/// position. Returns whether one was found. Deletes nothing while the chain does not verify
/// ([`Manifest::broken`]).
pub fn discard_interrupted(dir: &Path, manifest: &Manifest) -> Result<bool, CompactError> {
    if let Some(why) = manifest.broken() {
        // The next chain position comes from the entries: with the chain in doubt, so is it.
        tracing::error!(dir = %dir.display(), error = %why, "the segment of an interrupted compaction is not looked for or deleted: the manifest's chain does not verify (run `xdp-audit verify`)");
        return Ok(false);
    }
    let next = seal::next_seq(manifest)?;
    let io = |path: &Path, op, source| CompactError::Io {
        path: path.to_owned(),
        op,
        cause: source,
    };
    let mut found = false;
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, "list", e))? {
        let e = e.map_err(|e| io(dir, "list", e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_segment_name(&name) || seal::seq_of(&name) != Some(next) {
            continue;
        }
        if e.file_type().is_ok_and(|t| !t.is_file()) {
            tracing::warn!(file = %e.path().display(), "not a regular file under the name of the next segment: the store writes none, so it is not what an interrupted compaction left; leaving it in place");
            continue;
        }
        let what = match seal::interrupted_write(dir, &name, next) {
            Some(seal::Interrupted::Compaction) => "a compaction (its inputs are still live)",
            Some(seal::Interrupted::Seal) => {
                "a seal (its journal is still there, and is sealed again)"
            }
            None => continue,
        };
        tracing::info!(file = %e.path().display(), "removing the segment of {what} a crash interrupted");
        std::fs::remove_file(e.path()).map_err(|err| io(&e.path(), "remove", err))?;
        found = true;
    }
    if found {
        sync_dir(dir).map_err(|e| io(dir, "fsync directory", e))?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::{entry_hash, PruneInfo, GENESIS};

    fn seg(file: &str, hour: i64, rows: u64) -> SegmentInfo {
        SegmentInfo {
            file: file.into(),
            journal_id: hour as u64 + 1,
            time_min_ns: hour * HOUR_NS,
            time_max_ns: hour * HOUR_NS + HOUR_NS / 2,
            rows,
            size: 1,
            sha256: "00".into(),
            footer_sha256: None,
        }
    }

    fn chain(bodies: Vec<Body>) -> Vec<Entry> {
        let mut prev = GENESIS.to_string();
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let hash = entry_hash(i as u64, &body, &prev);
                Entry {
                    seq: i as u64,
                    body,
                    prev: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                }
            })
            .collect()
    }

    fn names(groups: &[Vec<SegmentInfo>]) -> Vec<Vec<&str>> {
        groups
            .iter()
            .map(|g| g.iter().map(|s| s.file.as_str()).collect())
            .collect()
    }

    #[test]
    fn plans_closed_days_only_packed_under_the_row_cap() {
        // Day 0: hours 0..3; day 1: hours 24, 25; day 2 (open at `now`): hour 48, 49.
        let entries = chain(vec![
            Body::Segment(seg("a", 0, 10)),
            Body::Segment(seg("b", 1, 10)),
            Body::Segment(seg("c", 2, 10)),
            Body::Segment(seg("d", 24, 10)),
            Body::Segment(seg("e", 25, 10)),
            Body::Segment(seg("f", 48, 10)),
            Body::Segment(seg("g", 49, 10)),
        ]);
        let now = 2 * DAY_NS + GRACE_NS + HOUR_NS;
        assert_eq!(
            names(&plan(&entries, now, 100)),
            [vec!["a", "b", "c"], vec!["d", "e"]]
        );
        // Day 1 is not closed until its grace has passed.
        assert_eq!(
            names(&plan(&entries, 2 * DAY_NS + GRACE_NS - 1, 100)),
            [vec!["a", "b", "c"]]
        );
        // A cap of 20 rows splits day 0 and leaves its third hour alone (a group of one).
        assert_eq!(
            names(&plan(&entries, now, 20)),
            [vec!["a", "b"], vec!["d", "e"]]
        );
    }

    #[test]
    fn plan_skips_large_removed_and_single_segments() {
        let entries = chain(vec![
            Body::Segment(seg("big", 0, MAX_INPUT_ROWS)),
            Body::Segment(seg("small", 1, 5)),
            Body::Segment(seg("gone", 2, 5)),
            Body::Segment(seg("x", 24, 5)),
            Body::Prune(PruneInfo {
                at_ns: 0,
                retention_days: 90,
                files: vec![RemovedFile {
                    file: "gone".into(),
                    sha256: "00".into(),
                }],
            }),
        ]);
        assert!(plan(&entries, 10 * DAY_NS, u64::MAX).is_empty());
    }
}
