//! Sealing: a finished journal becomes a Parquet segment plus a manifest entry.
//!
//! Order of operations, each step durable before the next, so a crash anywhere leaves a state
//! the next start completes: (1) the segment is written to a temporary name and fsynced,
//! (2) renamed to its final name and the directory fsynced, (3) the manifest entry appended
//! (temporary name, fsync, rename, directory fsync), (4) the journal deleted. A crash before (3)
//! re-seals the journal under the same name (the name is derived from the chain position and the
//! records); a crash after (3) finds the journal's id in the manifest and just deletes it.

use std::path::{Path, PathBuf};

use super::columns::{Columns, ColumnsError};
use super::fsutil::{create_temporary, open_read, sha256_file, sync_dir, TMP_PREFIX};
use super::journal::{self, JournalError};
use super::manifest::{read_entries, Body, Manifest, ManifestError, SegmentInfo};
use super::segment::{self, Layout, SegmentError};

/// Errors of sealing; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The journal could not be read: a fault of this journal alone (its permissions, a
    /// directory in its place), so the sealer goes on with the journals after it.
    #[error(transparent)]
    Unreadable(JournalError),
    /// The journal could not be read because it is gone: deleted by someone else (the
    /// sealer deletes a journal only after its segment is in the chain).
    #[error(transparent)]
    Gone(JournalError),
    /// The journal's damaged stretches could not be kept in quarantine.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The segment could not be written.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The journal holds more records than a segment can.
    #[error("{path}: {cause}")]
    TooLarge {
        /// The segment that was to be written.
        path: PathBuf,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: ColumnsError,
    },
    /// The manifest could not be appended.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A rename, hash or delete failed.
    #[error("{path}: {op}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
}

impl SealError {
    /// Whether the fault is the journal's own (it cannot be read, or holds more than a
    /// segment can), not the store's (a full disk): the journals after it may still seal.
    pub fn is_the_journals(&self) -> bool {
        matches!(
            self,
            Self::Unreadable(_) | Self::Gone(_) | Self::TooLarge { .. }
        )
    }

    /// Whether the disk was full: the store's condition, which passes when space returns,
    /// never the journal's fault.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Unreadable(e) | Self::Journal(e) => e.is_disk_full(),
            Self::Segment(e) => e.is_disk_full(),
            Self::Manifest(e) => e.is_disk_full(),
            Self::Io { cause, .. } => crate::store::fsutil::is_disk_full(cause),
            Self::TooLarge { .. } | Self::Gone(_) => false,
        }
    }
}

pub use crate::store::journal::file::{journal_id_of, journal_name};

/// Journal files in `dir`, oldest first.
pub fn list_journals(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(id) = e.file_name().to_str().and_then(journal_id_of) {
            out.push((id, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub use super::segment::is_segment_name;

/// The name of the segment at chain position `seq` whose first record starts at `time_min_ns`
/// (written first under [`TMP_PREFIX`] and this name).
pub fn segment_name(seq: u64, time_min_ns: i64) -> String {
    let stamp = jiff::Timestamp::from_nanosecond(i128::from(time_min_ns))
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| "out-of-range".into());
    format!("seg-{seq:08}-{stamp}.parquet")
}

/// What left an unlisted segment at the next chain position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// A seal, between the segment's rename and the manifest append: its journal is still on
    /// disk, and the next start deletes it and seals the journal again (under this name, or
    /// another where recovery cut the journal's first record).
    Seal,
    /// A compaction, before its entry (the merged segment has journal id 0): its inputs are
    /// still live, and the next start deletes it.
    Compaction,
}

/// Whether the unlisted segment `name` in `dir` is what a crash in the middle of a seal or a
/// compaction left at the chain position `next_seq`. Query reads only listed segments, so
/// such a file never shows up in results.
pub(crate) fn interrupted_write(dir: &Path, name: &str, next_seq: u64) -> Option<Interrupted> {
    if seq_of(name) != Some(next_seq) {
        return None;
    }
    let seg = super::segment::SegmentReader::open(&dir.join(name)).ok()?;
    match seg.journal_id()? {
        0 => Some(Interrupted::Compaction),
        id if dir.join(journal_name(id)).exists() => Some(Interrupted::Seal),
        _ => None,
    }
}

/// What sealing a journal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sealed {
    /// The new entry's segment; `None` when there was nothing to seal (empty, or sealed
    /// before a crash).
    pub segment: Option<SegmentInfo>,
    /// Bytes of the journal without a valid frame (left out, kept in quarantine).
    pub skipped_bytes: u64,
    /// Frames left out, at least (see `journal::Skipped::frames`).
    pub skipped_frames: u64,
}

/// Seals the journal at `path` (recovered at start, or rotated by the writer) and deletes
/// it. Its valid frames are sealed; a stretch without one (damage after it was written) is
/// copied into quarantine first, as recovery does, so deleting the journal loses nothing.
pub fn seal_journal(dir: &Path, path: &Path, manifest: &mut Manifest) -> Result<Sealed, SealError> {
    manifest.writable()?;
    let (bytes, scan) = journal::load::<Columns>(path).map_err(|e| match &e {
        JournalError::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
            SealError::Gone(e)
        }
        _ => SealError::Unreadable(e),
    })?;
    let frames = &scan.frames;
    journal::quarantine(path, &bytes, frames)?;
    let no_header = bytes.is_empty();
    let header = bytes
        .get(..journal::HEADER_LEN as usize)
        .map(<[u8]>::to_vec);
    drop(bytes);
    let mut out = Sealed {
        segment: None,
        skipped_bytes: frames.skipped_bytes(),
        skipped_frames: frames.skipped_frames(),
    };
    let id = journal::file::id_of(path, frames);
    if frames.id != 0 && frames.id != id {
        // A copy of a journal sealed before (the same rows and time range) or still here,
        // under another name: sealed, its records would be counted twice in the chain. A
        // header id damaged into another's, with other records, is sealed as below.
        let records = &scan.records;
        let sealed_before = manifest.entries().iter().any(|e| {
            matches!(&e.body, Body::Segment(s) if s.journal_id == frames.id
                && s.rows == records.len() as u64
                && (s.time_min_ns, s.time_max_ns) == (records.time_min_ns(), records.time_max_ns()))
        });
        if sealed_before || dir.join(journal_name(frames.id)).exists() {
            set_aside(
                dir,
                path,
                &format!(
                    "the journal's header names journal {} ({}): a copy under another name, \
                     not sealed (its records would be counted twice)",
                    frames.id,
                    if sealed_before {
                        "sealed before"
                    } else {
                        "still present"
                    }
                ),
            )?;
            return Ok(out);
        }
        // The evidence outlives the journal: its header, as found, in quarantine/, counted
        // with the files set aside (`XA-STORE-DAMAGED`), once however often the seal is
        // retried. (An id is read only from a whole header.)
        let header = header.unwrap_or_default();
        if let Some(kept) = journal::file::quarantine_header(path, &header)? {
            SET_ASIDE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                file = %path.display(),
                header_id = frames.id,
                name_id = id,
                header_kept = %kept.display(),
                "the journal's header names another id than its file name (damage behind an \
                 intact magic); sealing it under the file name's, its header kept in \
                 quarantine/"
            );
        }
    }
    let already = manifest
        .entries()
        .iter()
        .any(|e| matches!(&e.body, Body::Segment(s) if s.journal_id == id && id != 0));
    if no_header {
        // The writer names a journal only once its header is durable: 0 bytes is a journal
        // emptied since (or one an earlier version left on a full disk). Its name is kept.
        set_aside(
            dir,
            path,
            "the journal is empty (0 bytes, not even its header): the agent names a journal \
             only once its header is on disk, so it was emptied since",
        )?;
        return Ok(out);
    }
    if already || scan.records.is_empty() {
        if already {
            tracing::info!(file = %path.display(), "journal was sealed before a crash; deleting it");
        }
        remove(dir, path)?;
        return Ok(out);
    }
    out.segment = Some(write_segment(dir, scan.records, id, manifest)?);
    remove(dir, path)?;
    Ok(out)
}

/// Files this process moved into a store's `quarantine/` in place of a seal: a journal's
/// copy, an empty journal, a file at a segment's name, the header of a journal naming
/// another id ([`StoreStatus::set_aside`], raised as `XA-STORE-DAMAGED`). One store per
/// agent, so the process's count is the store's.
///
/// [`StoreStatus::set_aside`]: super::StoreStatus::set_aside
pub static SET_ASIDE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A store's live journal, as its status names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveJournal {
    /// The store directory, absolute (a next start on another store must not look for it
    /// there); as text, lossily (a path that is not UTF-8 must not fail the snapshot).
    pub dir: String,
    /// The journal's id.
    pub id: u64,
    /// Records made durable in it.
    pub durable: u64,
}

/// Whether journal `id`, which the last agent left holding records, is gone: not in `dir`,
/// not set aside into `quarantine/` (said when it was), and sealed by no segment of the
/// chain. False when the chain cannot be read: the open says why.
pub fn journal_gone(dir: &Path, id: u64) -> bool {
    let name = journal_name(id);
    if dir.join(&name).symlink_metadata().is_ok() {
        return false;
    }
    // Set aside under its name, or `NAME.k` when that was taken.
    let aside = |n: &str| {
        n.strip_prefix(name.as_str())
            .is_some_and(|k| k.is_empty() || k.starts_with('.'))
    };
    let quarantined = std::fs::read_dir(dir.join(journal::QUARANTINE_DIR)).is_ok_and(|d| {
        d.filter_map(Result::ok)
            .any(|e| e.file_name().to_str().is_some_and(aside))
    });
    if quarantined {
        return false;
    }
    read_entries(dir).is_ok_and(|entries| {
        !(entries.iter()).any(|e| e.body.added().is_some_and(|s| s.journal_id == id))
    })
}

/// Moves the file at `path` (a journal, or a file at a segment's name) into `quarantine/` in
/// place of a seal, with a warning saying `why` (counted in [`SET_ASIDE`]).
fn set_aside(dir: &Path, path: &Path, why: &str) -> Result<(), SealError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let aside = super::retention::quarantine_file(dir, name).map_err(|cause| SealError::Io {
        path: path.to_owned(),
        op: "move into quarantine/",
        cause,
    })?;
    SET_ASIDE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(alert = true, file = %path.display(), moved_to = %aside.display(), "{why}; moved into quarantine/");
    Ok(())
}

fn remove(dir: &Path, path: &Path) -> Result<(), SealError> {
    let io = |op, source| SealError::Io {
        path: path.to_owned(),
        op,
        cause: source,
    };
    std::fs::remove_file(path).map_err(|e| io("delete sealed journal", e))?;
    sync_dir(dir).map_err(|e| io("fsync directory", e))
}

/// Writes `columns` (in journal order) as the next segment and appends its manifest entry.
/// When the entry cannot be appended the segment is removed again (see [`discard_unlisted`]).
pub fn write_segment(
    dir: &Path,
    columns: Columns,
    journal_id: u64,
    manifest: &mut Manifest,
) -> Result<SegmentInfo, SealError> {
    let info = write_file(
        dir,
        columns,
        journal_id,
        next_seq(manifest)?,
        Layout::SEALED,
    )?;
    if let Err(e) = manifest.append(Body::Segment(info.clone())) {
        discard_unlisted(dir, &info.file);
        return Err(e.into());
    }
    tracing::info!(
        file = %dir.join(&info.file).display(),
        rows = info.rows,
        bytes = info.size,
        "sealed segment"
    );
    Ok(info)
}

/// Removes the segment `file`, renamed into place, whose manifest entry could not be
/// appended: left unlisted, it holds a chain position that another entry (a retention run, a
/// compaction) may take before its journal is sealed again, and `verify` would then fail for
/// good. Kept when the manifest on disk lists it all the same (the manifest's rename went
/// through and a later step failed) or cannot be read (then it is not known): as before, the
/// journal's next seal writes the same file again.
pub(super) fn discard_unlisted(dir: &Path, file: &str) {
    let listed = match read_entries(dir) {
        Ok(entries) => entries
            .iter()
            .any(|e| e.body.added().is_some_and(|s| s.file == file)),
        // No manifest at all (a first seal's): it lists nothing.
        Err(ManifestError::Lost { .. }) => false,
        Err(_) => true,
    };
    if listed {
        return;
    }
    let path = dir.join(file);
    match std::fs::remove_file(&path).and_then(|()| sync_dir(dir)) {
        Ok(()) => tracing::info!(
            file = %path.display(),
            "removed the segment whose manifest entry could not be written; its journal is \
             sealed again"
        ),
        Err(error) => tracing::warn!(
            file = %path.display(),
            %error,
            "cannot remove the segment whose manifest entry could not be written; `verify` \
             reports it unlisted until its journal is sealed again under its name"
        ),
    }
}

/// The chain position the next entry takes (it names the next segment file); an error
/// naming the manifest when the last entry's is the largest there is (damage).
pub fn next_seq(manifest: &Manifest) -> Result<u64, ManifestError> {
    manifest.next_seq()
}

/// The chain position in a segment file name.
pub fn seq_of(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?.get(..8)?.parse().ok()
}

/// Writes `columns` as the segment file of chain position `seq`, cut as `layout` says:
/// temporary name, fsync, rename, directory fsync. Returns its manifest description; the
/// caller appends the entry.
pub fn write_file(
    dir: &Path,
    columns: Columns,
    journal_id: u64,
    seq: u64,
    layout: Layout,
) -> Result<SegmentInfo, SealError> {
    let time_min_ns = columns.time_min_ns();
    let time_max_ns = columns.time_max_ns();
    let name = segment_name(seq, time_min_ns);
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let final_path = dir.join(&name);
    let rows = columns
        .into_row_order()
        .map_err(|source| SealError::TooLarge {
            path: final_path.clone(),
            cause: source,
        })?;
    // A file the chain does not list under the name (inserted or replaced, which `verify`
    // reports) is evidence: set aside, never overwritten. What a crash left mid-write of
    // this segment is replaced, as before.
    if std::fs::symlink_metadata(&final_path).is_ok()
        && interrupted_write(dir, &name, seq).is_none()
    {
        set_aside(
            dir,
            &final_path,
            "a file the chain does not list holds the name of the segment being written \
             (inserted or replaced), kept as evidence",
        )?;
    }
    let written = (|| {
        // Made (or truncated) as a regular file first: another kind of file left at the name
        // (a FIFO would block the writer's open forever) is refused, naming it.
        create_temporary(&tmp).map_err(|cause| SealError::Io {
            path: tmp.clone(),
            op: "create",
            cause,
        })?;
        let size = segment::write(&tmp, &rows, journal_id, layout)?;
        let hash_err = |source| SealError::Io {
            path: tmp.clone(),
            op: "hash",
            cause: source,
        };
        let sha256 = sha256_file(&tmp).map_err(hash_err)?;
        let footer_sha256 = open_read(&tmp)
            .map_err(std::io::Error::from)
            .and_then(|f| segment::footer_sha256(&f, size))
            .map_err(hash_err)?;
        std::fs::rename(&tmp, &final_path)
            .and_then(|()| sync_dir(dir))
            .map_err(|source| SealError::Io {
                path: final_path.clone(),
                op: "rename into place",
                cause: source,
            })?;
        Ok::<_, SealError>((size, sha256, footer_sha256))
    })();
    let (size, sha256, footer_sha256) = match written {
        Ok(v) => v,
        Err(e) => {
            // Only the regular file this seal wrote: another kind of file at the name is
            // not the store's (as at open, it is left in place).
            if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_file()) {
                let _ = std::fs::remove_file(&tmp);
            }
            return Err(e);
        }
    };
    Ok(SegmentInfo {
        file: name,
        journal_id,
        time_min_ns,
        time_max_ns,
        rows: rows.len() as u64,
        size,
        sha256,
        footer_sha256: Some(footer_sha256),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::MANIFEST;
    use crate::store::testgen::TrafficGen;

    /// A segment renamed into place whose manifest entry could not be written is removed:
    /// left unlisted at a chain position another entry (a retention run, a compaction) may
    /// take before the journal is sealed again, it would make `verify` fail for good.
    #[test]
    fn a_segment_the_manifest_could_not_list_is_removed() {
        let tmp = crate::blocklist::tests::TempDir::new("seal-unlisted");
        let dir = tmp.0.clone();
        // A directory at the manifest's temporary name: the manifest's replacement fails
        // before its rename, after the segment's.
        let blocker = dir.join(format!("{TMP_PREFIX}{MANIFEST}"));
        let mut manifest = Manifest::load(&dir, None)
            .unwrap_or_else(|e| panic!("load the manifest of {}: {e}", dir.display()));
        let mut g = TrafficGen::with_rate(3, 1_767_225_600_000_000_000, 0.01);
        let mut columns = || {
            let mut c = Columns::with_capacity(10);
            for _ in 0..10 {
                c.push_record(&g.next_record());
            }
            c
        };
        let segments = || -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| is_segment_name(n))
                .collect();
            v.sort();
            v
        };
        // The first seal, which creates the manifest, and a later one.
        let mut listed = Vec::new();
        for (round, id) in [(0, 7), (1, 8)] {
            std::fs::create_dir(&blocker)
                .unwrap_or_else(|e| panic!("create {}: {e}", blocker.display()));
            let err = match write_segment(&dir, columns(), id, &mut manifest) {
                Ok(info) => panic!("round {round}: sealed {} without a manifest", info.file),
                Err(e) => e,
            };
            assert_eq!(
                segments(),
                listed,
                "round {round}: left unlisted after: {err}"
            );
            std::fs::remove_dir(&blocker)
                .unwrap_or_else(|e| panic!("remove {}: {e}", blocker.display()));
            let info = write_segment(&dir, columns(), id, &mut manifest)
                .unwrap_or_else(|e| panic!("round {round}: seal again: {e}"));
            listed.push(info.file);
            assert_eq!(segments(), listed, "round {round}: sealed again");
        }
        assert_eq!(manifest.entries().len(), 2);
    }
}
