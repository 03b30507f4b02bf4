//! Retention: segments whose newest record is older than the retention are deleted, and the
//! deletion is itself a chain entry, so `verify` can tell lawful pruning from tampering.

use std::path::Path;

use super::fsutil::sync_dir;
use super::manifest::{Body, Manifest, ManifestError, PruneInfo, PrunedFile};

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

/// Names of the segments the chain says were pruned.
pub fn pruned_files(manifest: &Manifest) -> std::collections::HashSet<String> {
    manifest
        .entries()
        .iter()
        .filter_map(|e| match &e.body {
            Body::Prune(p) => Some(p.files.iter().map(|f| f.file.clone())),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Segments expired at `now_ns` under `days` of retention and not yet pruned.
pub fn expired(manifest: &Manifest, now_ns: i64, days: u32) -> Vec<PrunedFile> {
    let cutoff = now_ns.saturating_sub(i64::from(days) * DAY_NS);
    let pruned = pruned_files(manifest);
    manifest
        .entries()
        .iter()
        .filter_map(|e| match &e.body {
            Body::Segment(s) if s.time_max_ns < cutoff && !pruned.contains(&s.file) => {
                Some(PrunedFile {
                    file: s.file.clone(),
                    sha256: s.sha256.clone(),
                })
            }
            _ => None,
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

/// Deletes files the chain says were pruned but which still exist.
pub fn finish_interrupted(dir: &Path, manifest: &Manifest) -> Result<(), ManifestError> {
    let mut deleted = false;
    for name in pruned_files(manifest) {
        let path = dir.join(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => deleted = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ManifestError::Io {
                    path,
                    op: "delete expired segment",
                    source,
                })
            }
        }
    }
    if deleted {
        sync_dir(dir).map_err(|source| ManifestError::Io {
            path: dir.to_owned(),
            op: "fsync directory",
            source,
        })?;
    }
    Ok(())
}
