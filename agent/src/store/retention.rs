//! Retention: segments whose newest record is older than the retention are deleted, and the
//! deletion is itself a chain entry, so `verify` can tell lawful pruning from tampering.

use std::path::Path;

use super::fsutil::sync_dir;
use super::manifest::{
    live_segments, removed_files, Body, Manifest, ManifestError, PruneInfo, RemovedFile,
};

/// The legal minimum retention, in days.
pub const LEGAL_FLOOR_DAYS: u32 = 90;
/// The default retention, in days.
pub const DEFAULT_DAYS: u32 = 180;
/// One day in nanoseconds; retention runs at most this often.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// A retention below the legal floor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "retention of {days} days refused: audit records must be kept at least {LEGAL_FLOOR_DAYS} days (the legal floor)"
)]
pub struct BelowFloor {
    /// The refused value.
    pub days: u32,
}

/// Accepts `days` if it is at least the legal floor.
pub fn check_days(days: u32) -> Result<u32, BelowFloor> {
    if days < LEGAL_FLOOR_DAYS {
        Err(BelowFloor { days })
    } else {
        Ok(days)
    }
}

/// Live segments expired at `now_ns` under `days` of retention.
pub fn expired(manifest: &Manifest, now_ns: i64, days: u32) -> Vec<RemovedFile> {
    let cutoff = now_ns.saturating_sub(i64::from(days) * DAY_NS);
    live_segments(manifest.entries())
        .into_iter()
        .filter(|s| s.time_max_ns < cutoff)
        .map(|s| RemovedFile {
            file: s.file.clone(),
            sha256: s.sha256.clone(),
        })
        .collect()
}

/// Appends a prune entry for the expired segments, then deletes them. Returns how many.
/// The entry comes first: a crash between leaves files the chain calls pruned, which
/// [`finish_interrupted`] deletes at the next start.
pub fn prune(
    dir: &Path,
    manifest: &mut Manifest,
    now_ns: i64,
    days: u32,
) -> Result<usize, ManifestError> {
    let files = expired(manifest, now_ns, days);
    if files.is_empty() {
        return Ok(0);
    }
    let n = files.len();
    manifest.append(Body::Prune(PruneInfo {
        at_ns: now_ns,
        retention_days: days,
        files,
    }))?;
    finish_interrupted(dir, manifest)?;
    tracing::info!(dir = %dir.display(), segments = n, retention_days = days, "retention deleted expired segments");
    Ok(n)
}

/// Deletes files the chain took out of the live set (pruned, or merged by compaction) but
/// which still exist: what a crash between the entry and the deletion leaves.
pub fn finish_interrupted(dir: &Path, manifest: &Manifest) -> Result<(), ManifestError> {
    let mut deleted = false;
    for name in removed_files(manifest.entries()) {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => deleted = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ManifestError::Io {
                    path,
                    op: "delete a segment the chain removed",
                    cause: source,
                })
            }
        }
    }
    if deleted {
        sync_dir(dir).map_err(|source| ManifestError::Io {
            path: dir.to_owned(),
            op: "fsync directory",
            cause: source,
        })?;
    }
    Ok(())
}
