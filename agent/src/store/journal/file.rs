//! Journal files: the writer the record path appends to, reading a journal, and recovering
//! one left by a previous run (skipped stretches moved aside into quarantine, the journal
//! cut or rewritten to its valid frames).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::frame::{
    self, encode_frame, scan, Count, Decoded, Frames, Scan, Skipped, HEADER_LEN, MAX_PAYLOAD,
};
use crate::record::FlowRecord;
use crate::store::fsutil::{
    create_temporary, open_regular_here, read_input_here, sync_dir, write_atomic_parts, InputError,
    TMP_PREFIX,
};

/// Directory inside the log directory that holds the bytes recovery skipped.
pub const QUARANTINE_DIR: &str = "quarantine";

/// The most bytes read from one journal file (16 GiB, 64 times the default
/// `--segment-max-bytes`): a journal is read whole into memory to be sealed, and the writer
/// rotates it at `--segment-max-bytes`, so only a damaged (sparse) file or a foreign one
/// reaches this; it is refused by its size before anything is read, and left in place.
pub const MAX_JOURNAL_BYTES: u64 = 16 << 30;

/// Errors of the journal; each names the file and, where it applies, the offset.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O operation failed.
    #[error("journal {path}: {op}: {cause}")]
    Io {
        /// The journal file (or its quarantine file).
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// The file is not one the writer makes: not a regular file (a FIFO would block the
    /// read forever), or larger than [`MAX_JOURNAL_BYTES`].
    #[error("journal {path}: {reason}")]
    Refused {
        /// The journal file.
        path: PathBuf,
        /// What it is.
        reason: InputError,
    },
}

impl JournalError {
    /// Whether the disk was full ([`crate::store::fsutil::is_disk_full`]).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Io { cause, .. } => crate::store::fsutil::is_disk_full(cause),
            Self::Refused { .. } => false,
        }
    }
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_owned(),
        op,
        cause: source,
    }
}

/// The bytes of a journal file. Opened without blocking and checked before it is read
/// ([`read_input_here`]): a FIFO or a device under a journal's name is refused at once, as is a
/// file over [`MAX_JOURNAL_BYTES`].
pub fn read_file(path: &Path) -> Result<Vec<u8>, JournalError> {
    read_input_here(path, MAX_JOURNAL_BYTES).map_err(|e| match e {
        InputError::Io(cause) => io(path, "read")(cause),
        reason => JournalError::Refused {
            path: path.to_owned(),
            reason,
        },
    })
}

/// Digits of the id in a journal's file name.
const ID_DIGITS: usize = 20;

/// File name of the journal with id `id`.
pub fn journal_name(id: u64) -> String {
    format!("journal-{id:0ID_DIGITS$}.wal")
}

/// The id in a journal file name, if it is one: exactly the [`journal_name`] form, 20 ASCII
/// digits (else `journal-2.wal` and `journal-00000000000000000002.wal` would be one journal).
pub fn journal_id_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("journal-")?.strip_suffix(".wal")?;
    if digits.len() != ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The id the file name of the journal at `path` gives.
pub fn named_id(path: &Path) -> Option<u64> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(journal_id_of)
}

/// The id of the journal at `path`: its file name's, or, when the name gives none, its
/// header's (0 when the header is damaged or torn too). The name is the writer's choice and
/// every reader's key (the seal's check for a journal sealed before a crash, the segment, the
/// manifest), and a damaged id byte behind an intact magic is not seen by the scan.
pub fn id_of(path: &Path, frames: &Frames) -> u64 {
    named_id(path).unwrap_or(frames.id)
}

/// Reads and scans a journal file without changing it: its bytes and what the scan found.
pub fn load<D: Decoded>(path: &Path) -> Result<(Vec<u8>, Scan<D>), JournalError> {
    let buf = read_file(path)?;
    let scan = scan(&buf);
    Ok((buf, scan))
}

/// Reads a journal file's records without changing it (queries read the live journal this
/// way; skipped stretches are left out, as the seal leaves them out).
pub fn read(path: &Path) -> Result<Scan<Vec<FlowRecord>>, JournalError> {
    Ok(load(path)?.1)
}

/// Creates the quarantine directory `qdir` if it is missing (durably: its parent fsynced),
/// and refuses one that is not a directory of its own: through a symbolic link there, the
/// store's damaged bytes (records) would be written wherever it points.
pub fn make_quarantine_dir(qdir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o750).create(qdir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
        // Made by a root command (a query cutting the operator log's torn line), it stays
        // the store owner's, whom the agent runs as, to write into.
        Ok(()) => {
            let parent = qdir.parent().unwrap_or(Path::new("."));
            let owner = std::fs::metadata(parent)?;
            // SAFETY: geteuid cannot fail. Only root may give a directory away.
            if unsafe { libc::geteuid() } == 0 {
                std::os::unix::fs::lchown(qdir, Some(owner.uid()), Some(owner.gid()))?;
            }
            std::fs::set_permissions(qdir, std::fs::Permissions::from_mode(0o750))?;
            return sync_dir(parent);
        }
    }
    let kind = std::fs::symlink_metadata(qdir)?.file_type();
    if kind.is_dir() {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "it is a {}, not a directory: move it away, and damaged bytes are set aside there",
        crate::store::fsutil::not_regular(kind).unwrap_or("regular file")
    )))
}

/// The quarantine file of the stretch at `offset` of `journal`:
/// `<log dir>/quarantine/<journal name without .wal>-<offset>.bin`.
pub fn quarantine_path(journal: &Path, offset: u64) -> PathBuf {
    let dir = journal.parent().unwrap_or(Path::new("."));
    let stem = journal
        .file_stem()
        .map_or_else(|| "journal".into(), |s| s.to_string_lossy());
    dir.join(QUARANTINE_DIR)
        .join(format!("{stem}-{offset:012}.bin"))
}

/// Copies every stretch `frames` skipped in the journal at `path` (whose bytes are `buf`)
/// into its quarantine file (see [`quarantine_path`]), fsynced with its directory before this
/// returns, so the caller may then change or delete the journal. Warns once per stretch,
/// naming the journal, the offset and the quarantine file. A file of that name holding other
/// bytes (from an earlier recovery of the same journal) is kept, and the name gets a suffix.
pub fn quarantine(path: &Path, buf: &[u8], frames: &Frames) -> Result<Vec<PathBuf>, JournalError> {
    if frames.skipped.is_empty() {
        return Ok(Vec::new());
    }
    let base = quarantine_path(path, 0);
    let qdir = base.parent().unwrap_or(Path::new("."));
    make_quarantine_dir(qdir).map_err(io(qdir, "create quarantine directory"))?;
    let mut files = Vec::with_capacity(frames.skipped.len());
    for s in &frames.skipped {
        let bytes = usize::try_from(s.offset)
            .ok()
            .zip(usize::try_from(s.end()).ok())
            .and_then(|(a, b)| buf.get(a..b))
            .unwrap_or_default();
        let (file, _) = write_quarantine(&quarantine_path(path, s.offset), bytes)?;
        warn_skipped(path, s, frames.torn_tail() == Some(s), &file);
        files.push(file);
    }
    sync_dir(qdir).map_err(io(qdir, "fsync quarantine directory"))?;
    Ok(files)
}

/// Keeps `header`, the journal's header as read, in quarantine at offset 0 (fsynced with
/// its directory): evidence of a header whose id is not its file name's, which the seal
/// overrules and the deleted journal would otherwise take with it. `None` when an earlier
/// try of the same seal kept it already (a seal retried after a full disk).
pub fn quarantine_header(path: &Path, header: &[u8]) -> Result<Option<PathBuf>, JournalError> {
    let want = quarantine_path(path, 0);
    let qdir = want.parent().unwrap_or(Path::new("."));
    make_quarantine_dir(qdir).map_err(io(qdir, "create quarantine directory"))?;
    let (file, written) = write_quarantine(&want, header)?;
    sync_dir(qdir).map_err(io(qdir, "fsync quarantine directory"))?;
    Ok(written.then_some(file))
}

/// Writes `bytes` to `want`, or to `want.1`, `want.2`, ... when a file there holds other
/// bytes or is not a regular file (a FIFO, which a blocking open would wait on forever: it is
/// named in a warning and left in place); a file holding the same bytes is what an
/// interrupted recovery wrote, and is reused. The file, and whether it was written now.
pub(crate) fn write_quarantine(want: &Path, bytes: &[u8]) -> Result<(PathBuf, bool), JournalError> {
    for k in 0u32.. {
        let path = match k {
            0 => want.to_owned(),
            k => want.with_extension(format!("bin.{k}")),
        };
        // A quarantine file is at most a journal's bytes.
        match read_input_here(&path, MAX_JOURNAL_BYTES) {
            Ok(old) if old == bytes => return Ok((path, false)),
            Ok(_) => continue,
            Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(InputError::Io(e)) => return Err(io(&path, "read quarantine file")(e)),
            Err(e) => {
                tracing::warn!(file = %path.display(), "a quarantine file's name is taken by what is not one (it {e}); leaving it in place and using the next name");
                continue;
            }
        }
        let mut f = open_regular_here(
            &path,
            File::options().write(true).create(true).truncate(true),
        )
        .map_err(|e| io(&path, "create quarantine file")(e.into()))?;
        let qdir = path.parent().unwrap_or(Path::new("."));
        crate::store::fsutil::give_to_dir_owner(&f, qdir, crate::store::fsutil::FILE_MODE)
            .map_err(io(&path, "give to the store's owner"))?;
        if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
            // Not left half written: the next try (a full disk is retried every second)
            // would take it for another's and move on to the next name.
            drop(f);
            let _ = std::fs::remove_file(&path);
            return Err(io(&path, "write quarantine file")(e));
        }
        return Ok((path, true));
    }
    Err(io(want, "name a quarantine file")(
        std::io::ErrorKind::AlreadyExists.into(),
    ))
}

fn warn_skipped(path: &Path, s: &Skipped, tail: bool, quarantine: &Path) {
    let what = if tail {
        "journal has a torn tail (a crash during a write, or damage with no valid frame after \
         it); leaving it out"
    } else {
        "journal damaged in the middle: skipped to the next valid frame"
    };
    tracing::warn!(
        file = %path.display(),
        offset = s.offset,
        bytes = s.len,
        frames = s.frames,
        reason = %s.reason,
        quarantine = %quarantine.display(),
        "{what}; the skipped bytes are kept in {}",
        quarantine.display()
    );
}

/// Whether the live journal at `path`, named with `id`, is a copy under another name of a
/// journal sealed (`sealed` holds the ids the chain sealed) or listed beside it (`listed`):
/// its header names that one. A reader leaves it out, warning (its records are in the answer
/// once already; the agent sets it aside at its start). A header id damaged into another
/// that is neither is read as the file name's journal.
pub fn warn_copy(
    path: &Path,
    id: u64,
    frames: &Frames,
    sealed: &std::collections::HashSet<u64>,
    listed: &std::collections::HashSet<u64>,
) -> bool {
    let named = frames.id;
    let copy = named != 0 && named != id && (sealed.contains(&named) || listed.contains(&named));
    if copy {
        tracing::warn!(
            journal = %path.display(),
            header_id = named,
            "a live journal's header names journal {named}, sealed or present: a copy under \
             another name, left out of this answer (run `xdp-audit verify`)"
        );
    }
    copy
}

/// Warns of each damaged stretch (valid frames after it) of the live journal at `path` a
/// reader met, and whether there was one: its records are not in the reader's answer, which
/// is then incomplete (a torn tail is a write in progress, and not said).
pub fn warn_damaged_live(path: &Path, frames: &Frames) -> bool {
    if frames.len == 0 {
        tracing::warn!(
            journal = %path.display(),
            "a live journal is empty (0 bytes, not even its header): the agent names a journal \
             only once its header is on disk, so it was emptied; what it held is not in this \
             answer"
        );
        return true;
    }
    let mut damaged = false;
    for s in frames.damaged() {
        damaged = true;
        tracing::warn!(
            journal = %path.display(),
            offset = s.offset,
            bytes = s.len,
            frames_at_least = s.frames,
            reason = %s.reason,
            "a damaged stretch of a live journal holds no valid frame: its records are not \
             in this answer (the agent quarantines it when it seals the journal)"
        );
    }
    damaged
}

/// What recovering a journal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records in the valid frames kept.
    pub records: u64,
    /// Bytes skipped (moved into quarantine and out of the journal).
    pub skipped_bytes: u64,
    /// Frames skipped, at least (see [`Skipped::frames`]).
    pub skipped_frames: u64,
    /// The quarantine files written, one per skipped stretch.
    pub quarantined: Vec<PathBuf>,
}

/// Recovers a journal left by a previous run: every valid frame is kept, every stretch
/// without one is copied into quarantine (fsynced, named in a warning) and then taken out of
/// the journal: a torn tail is cut off, damage in the middle is removed by rewriting the
/// journal (temporary file, fsync, rename, directory fsync), so a crash at any point leaves
/// either the old journal, recovered again at the next start, or the new one.
pub fn recover(path: &Path) -> Result<Recovery, JournalError> {
    let (buf, scan) = load::<Count>(path)?;
    let f = &scan.frames;
    let out = Recovery {
        records: scan.records.0,
        skipped_bytes: f.skipped_bytes(),
        skipped_frames: f.skipped_frames(),
        quarantined: quarantine(path, &buf, f)?,
    };
    match f.skipped.as_slice() {
        [] => {}
        [tail] if f.torn_tail() == Some(tail) => {
            let file = open_regular_here(path, OpenOptions::new().write(true))
                .map_err(|e| io(path, "open for truncation")(e.into()))?;
            file.set_len(tail.offset)
                .and_then(|()| file.sync_all())
                .map_err(io(path, "truncate torn tail"))?;
        }
        skipped => {
            let mut kept = Vec::with_capacity(skipped.len() + 2);
            // A damaged header is skipped with the rest; the journal gets a whole one back,
            // with the id its file name gives (the seal names the segment's journal by it).
            let header = frame::header(id_of(path, f));
            if skipped.first().is_some_and(|s| s.offset == 0) {
                kept.push(&header[..]);
            }
            let mut at = 0usize;
            for s in skipped {
                kept.push(&buf[at..s.offset as usize]);
                at = s.end() as usize;
            }
            kept.push(&buf[at..]);
            let (dir, name) = match (path.parent(), path.file_name()) {
                (Some(d), Some(n)) => (d, n.to_string_lossy()),
                _ => return Err(io(path, "rewrite")(std::io::ErrorKind::InvalidInput.into())),
            };
            write_atomic_parts(dir, &name, &kept).map_err(io(path, "rewrite without damage"))?;
        }
    }
    Ok(out)
}

/// The most bytes written and not yet fsynced that a journal keeps a copy of (see
/// [`JournalWriter::fsync`]); more is fsynced at once, whatever `--fsync-interval` says.
const UNSYNCED_MAX: usize = 8 << 20;

/// Appends frames to a journal. Frames are encoded into a memory buffer and written with
/// [`JournalWriter::flush`]; [`JournalWriter::sync`] makes them durable. A failed write is cut
/// back to the last whole frame, so the file never holds a torn frame the writer knows of, and
/// the frames stay buffered for the next attempt.
pub struct JournalWriter {
    path: PathBuf,
    /// `None` until [`JournalWriter::make`] made the file (a full disk at `create`).
    file: Option<File>,
    /// The file was named and its directory not yet fsynced.
    dir_unsynced: bool,
    id: u64,
    /// Bytes in the file that hold whole frames (header included).
    written: u64,
    pending: Vec<u8>,
    pending_records: usize,
    written_records: u64,
    synced_records: u64,
    /// The frames written since the last fsync that succeeded, and the file's length then:
    /// a failed fsync may have cost their pages (the kernel says so once, and the next
    /// fsync succeeds), so they are written again before the next ([`Self::fsync`]).
    unsynced: Vec<u8>,
    synced_len: u64,
    /// An fsync failed since the last good one: `unsynced` is to be written again.
    rewrite: bool,
    /// Set by a test: the next fsync fails as a disk's writeback error would.
    #[cfg(test)]
    fail_next_sync: bool,
    /// Bytes written again after failed fsyncs (for tests).
    #[cfg(test)]
    rewritten: usize,
    /// How long the last fsync took, until [`JournalWriter::take_fsync_time`] takes it.
    fsync_time: Option<std::time::Duration>,
    /// Records whose texts were shortened to fit a frame.
    shortened: u64,
}

impl JournalWriter {
    /// Creates a new, empty journal at `path` with the given id. Its header is written and
    /// fsynced under a temporary name that then takes the journal's, and the directory is
    /// fsynced ([`JournalWriter::make`]): a file under a journal's name always has its header
    /// on disk, and a crash in between leaves a temporary file, which the next start removes.
    /// A file already at `path` is refused, never replaced: it holds an earlier journal's
    /// records (an id given twice, as the largest id there is could be after damage).
    ///
    /// A full disk that refuses the header (an agent started on a full disk) is not a
    /// failure: no file is made yet, and the first [`JournalWriter::flush`] once space returns
    /// makes it before it writes the records buffered meanwhile.
    pub fn create(path: &Path, id: u64) -> Result<Self, JournalError> {
        let mut w = Self {
            path: path.to_owned(),
            file: None,
            dir_unsynced: false,
            id,
            written: 0,
            pending: Vec::with_capacity(1 << 16),
            pending_records: 0,
            written_records: 0,
            synced_records: 0,
            unsynced: Vec::new(),
            synced_len: HEADER_LEN,
            rewrite: false,
            #[cfg(test)]
            fail_next_sync: false,
            #[cfg(test)]
            rewritten: 0,
            fsync_time: None,
            shortened: 0,
        };
        match w.make().and_then(|()| w.sync_dir()) {
            Err(e) if !e.is_disk_full() => Err(e),
            _ => Ok(w),
        }
    }

    /// Makes the journal's file: its header written and fsynced under a temporary name
    /// ([`TMP_PREFIX`]), which then takes the journal's name. The directory is fsynced by
    /// the next [`JournalWriter::fsync`] (or by `create`). On failure nothing is left.
    fn make(&mut self) -> Result<(), JournalError> {
        let path = &self.path;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io(path, "create")(std::io::ErrorKind::InvalidInput.into()));
        };
        // The store's lock keeps every other writer out: a file here is an earlier one's.
        if path.symlink_metadata().is_ok() {
            return Err(io(path, "create")(std::io::ErrorKind::AlreadyExists.into()));
        }
        let tmp = dir.join(format!("{TMP_PREFIX}{}", name.to_string_lossy()));
        let made = create_temporary(&tmp).and_then(|mut file| {
            file.write_all(&frame::header(self.id))?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            Ok(file)
        });
        match made {
            Ok(file) => {
                self.file = Some(file);
                self.written = HEADER_LEN;
                self.dir_unsynced = true;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(io(path, "create")(e))
            }
        }
    }

    /// Fsyncs the journal's directory once after [`JournalWriter::make`] named the file, so
    /// the name is as durable as the records that follow it.
    fn sync_dir(&mut self) -> Result<(), JournalError> {
        if self.dir_unsynced {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            sync_dir(dir).map_err(io(&self.path, "fsync directory"))?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal id (its creation time in Unix ns), recorded in the manifest when sealed.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Buffers one record; returns its frame (what [`encode_frame`] wrote), so a stage after
    /// the journal can copy the bytes instead of encoding the record again.
    pub fn append(&mut self, r: &FlowRecord) -> &[u8] {
        let at = self.pending.len();
        if encode_frame(r, &mut self.pending) {
            self.shortened += 1;
            if self.shortened == 1 {
                tracing::warn!(
                    file = %self.path.display(),
                    rule_bytes = r.rule.as_ref().map_or(0, String::len),
                    max_payload = MAX_PAYLOAD,
                    "a record's texts are too long for a journal frame: wrote it with its longest \
                     texts shortened, keeping their ends; further ones in this journal are only \
                     counted (shortened_records)"
                );
            }
        }
        self.pending_records += 1;
        &self.pending[at..]
    }

    /// Records whose texts were shortened to fit a frame (see [`encode_frame`]).
    pub fn shortened_records(&self) -> u64 {
        self.shortened
    }

    /// Records buffered in memory, not yet written.
    pub fn pending_records(&self) -> usize {
        self.pending_records
    }

    /// Bytes buffered in memory, not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Size of the file plus what is buffered (with the header of a file not yet made).
    pub fn size(&self) -> u64 {
        self.written.max(HEADER_LEN) + self.pending.len() as u64
    }

    /// Records in the journal, written or buffered.
    pub fn records(&self) -> u64 {
        self.written_records + self.pending_records as u64
    }

    /// Records made durable by the last successful [`JournalWriter::sync`].
    pub fn synced_records(&self) -> u64 {
        self.synced_records
    }

    /// Writes the buffered frames, making the file first if `create` could not. On failure
    /// the file is cut back to its last whole frame and the frames stay buffered.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.make()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        match file.write_all(&self.pending) {
            Ok(()) => {
                self.written += self.pending.len() as u64;
                self.written_records += self.pending_records as u64;
                self.unsynced.extend_from_slice(&self.pending);
                self.pending.clear();
                self.pending_records = 0;
                // The copy kept for a failed fsync is bounded: past it, an fsync now.
                if self.unsynced.len() > UNSYNCED_MAX {
                    self.fsync()?;
                }
                Ok(())
            }
            Err(source) => {
                // Part of the buffer may have reached the file: cut it so no torn frame stays
                // behind, and position the next write at the cut.
                let _ = file.set_len(self.written);
                let _ = file.seek(SeekFrom::Start(self.written));
                Err(JournalError::Io {
                    path: self.path.clone(),
                    op: "append",
                    cause: source,
                })
            }
        }
    }

    /// Writes the buffered frames and fsyncs the file.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.flush()?;
        self.fsync()
    }

    /// Fsyncs what is written. After a failed fsync (a disk's writeback error, which the
    /// kernel reports once, and a later fsync succeeds over pages it may have dropped), the
    /// frames written since the last good one are first written again where they are: the
    /// same bytes at the same place, so the file never shrinks and a kill meanwhile loses
    /// nothing the ledger says was written.
    fn fsync(&mut self) -> Result<(), JournalError> {
        if self.synced_records == self.written_records && !self.rewrite {
            return Ok(());
        }
        self.sync_dir()?;
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.rewrite {
            std::os::unix::fs::FileExt::write_all_at(file, &self.unsynced, self.synced_len)
                .map_err(io(&self.path, "write again after a failed fsync"))?;
            #[cfg(test)]
            {
                self.rewritten += self.unsynced.len();
            }
        }
        let started = std::time::Instant::now();
        #[cfg(test)]
        let synced = if std::mem::take(&mut self.fail_next_sync) {
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        } else {
            file.sync_data()
        };
        #[cfg(not(test))]
        let synced = file.sync_data();
        if let Err(source) = synced {
            self.rewrite = true;
            return Err(JournalError::Io {
                path: self.path.clone(),
                op: "fsync",
                cause: source,
            });
        }
        self.fsync_time = Some(started.elapsed());
        self.synced_records = self.written_records;
        self.synced_len = self.written;
        self.unsynced.clear();
        self.rewrite = false;
        Ok(())
    }

    /// How long the last fsync took, once (`None` if none ran since the last call).
    pub fn take_fsync_time(&mut self) -> Option<std::time::Duration> {
        self.fsync_time.take()
    }
}

#[cfg(test)]
mod tests;
