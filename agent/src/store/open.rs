//! Opening the store: its lock, what a crash left (temporary files, an interrupted
//! compaction or retention run, unsealed journals), retention, and the new journal.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::*;

/// The id of a journal started at `now` after the journal `after`: its creation time, or
/// one past `after` when the clock is behind. `None` when `after` is the largest id there
/// is: no journal can follow it.
pub(super) fn next_journal_id(after: u64, now: i64) -> Option<u64> {
    after.checked_add(1).map(|next| next.max(now.max(0) as u64))
}

/// Removes the temporary files a crash left in `dir` (every name with
/// [`fsutil::TMP_PREFIX`] is the store's, written under its lock). Anything else under such
/// a name (a directory, a link) is not what a crash left: it is named in a warning and left.
/// A file gone before its removal is what was wanted.
fn remove_temporaries(dir: &Path) -> Result<(), StoreError> {
    let io = |path: &Path, op, cause| StoreError::Io {
        path: path.to_owned(),
        op,
        cause,
    };
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, "list", e))? {
        let e = e.map_err(|e| io(dir, "list", e))?;
        if !e
            .file_name()
            .to_string_lossy()
            .starts_with(fsutil::TMP_PREFIX)
        {
            continue;
        }
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_file() => {}
            Ok(_) => {
                tracing::warn!(
                    file = %path.display(),
                    "a temporary name that is not a regular file: the store writes none, so it \
                     is not what a crash left; leaving it in place"
                );
                continue;
            }
            Err(err) if gone(&err) => continue,
            Err(err) => return Err(io(&path, "stat", err)),
        }
        tracing::info!(file = %path.display(), "removing temporary file left by a crash");
        match std::fs::remove_file(&path) {
            Err(err) if !gone(&err) => return Err(io(&path, "remove", err)),
            _ => {}
        }
    }
    Ok(())
}

impl Store {
    /// Opens the store with the system clock.
    pub fn open(cfg: StoreConfig) -> Result<Self, StoreError> {
        Self::open_with_clock(cfg, Box::new(SystemClock))
    }

    /// Opens the store: takes the lock, removes temporary files and what an interrupted
    /// compaction left, finishes an interrupted retention run, runs retention, starts a new
    /// journal, and has the sealer thread seal the journals an earlier agent left (the open
    /// does not read them) and compact closed days.
    pub fn open_with_clock(
        cfg: StoreConfig,
        clock: Box<dyn StoreClock>,
    ) -> Result<Self, StoreError> {
        retention::check_days(cfg.retention_days)?;
        let dir = cfg.dir.clone();
        let io = |path: &Path, op, source| StoreError::Io {
            path: path.to_owned(),
            op,
            cause: source,
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, "create directory", e))?;
        let lock_path = dir.join(super::LOCK_FILE);
        // Never a blocking open: a FIFO in the lock's place would hold the start forever.
        let open_lock =
            || fsutil::open_regular_here(&lock_path, File::options().write(true).create(true));
        let lock = match open_lock() {
            // Not a file (a directory, a FIFO): no agent holds it, and it holds nothing of
            // the store; it is set aside rather than keep the agent from recording.
            Err(fsutil::InputError::NotRegular(kind)) => {
                // Under a lock on the directory itself, looked at again: two starts meeting
                // it at once must not each set aside the other's new lock.
                let dir_lock = File::open(&dir).map_err(|e| io(&dir, "open", e))?;
                // SAFETY: flock on a descriptor we own.
                if unsafe { libc::flock(dir_lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                    return Err(io(&dir, "lock", std::io::Error::last_os_error()));
                }
                match open_lock() {
                    Err(fsutil::InputError::NotRegular(_)) => {
                        let aside = retention::quarantine_file(&dir, super::LOCK_FILE)
                            .map_err(|e| io(&lock_path, "move the lock into quarantine/", e))?;
                        tracing::warn!(
                            file = %lock_path.display(),
                            moved_to = %aside.display(),
                            "the store's lock is a {kind}, not a file: moved aside, and a new \
                             lock made"
                        );
                        open_lock()
                    }
                    r => r,
                }
            }
            r => r,
        }
        .map_err(|e| io(&lock_path, "create lock", e.into()))?;
        if !fsutil::lock_exclusive(&lock, fsutil::LOCK_PATIENCE)
            .map_err(|e| io(&lock_path, "lock", e))?
        {
            return Err(StoreError::Locked(dir));
        }
        remove_temporaries(&dir)?;
        let mut manifest = match Manifest::load(&dir, cfg.signing_key.clone()) {
            Ok(m) => m,
            // A manifest that cannot be read must not keep the agent from recording: the
            // records go to journals, which wait unsealed for the manifest to be restored.
            Err(error) => {
                tracing::error!(
                    alert = true,
                    %error,
                    "the manifest cannot be read: recording into journals only; nothing is \
                     sealed, merged, pruned or deleted, and the file is left as it is, until it \
                     is restored from a copy and the agent restarted (run `xdp-audit verify`)"
                );
                Manifest::frozen(&dir, &error)
            }
        };
        // Before a seal takes the next chain position the merged segment holds.
        // A manifest not read gives no chain position to look at (said once above).
        if manifest.unreadable().is_none() {
            compact::discard_interrupted(&dir, &manifest)?;
        }
        let mut max_id = 0;
        let mut unsealable = 0;
        let mut skipped = (0, 0);
        // Journals an earlier agent left, sealed in chain order by the sealer thread: the
        // start (and the attach after it) does not wait for an hour's journal to be sealed;
        // until then, `query` reads them as live journals.
        let mut waiting = Vec::new();
        // Those with anything past the header: records an agent that did not stop left.
        let mut left_with_records = 0;
        // The records each recovered journal holds, by id (see `Store::recovered_records`).
        let mut recovered_records = Vec::new();
        for (id, path) in seal::list_journals(&dir).map_err(|e| io(&dir, "list journals", e))? {
            if id == u64::MAX {
                // Sealed, its id would be the manifest's largest, and no journal could
                // follow it: the store could never open again.
                unsealable += 1;
                tracing::warn!(
                    journal = %path.display(),
                    "a journal named with the largest id there is: no journal could follow it, \
                     so it is not sealed; leaving it in place (renamed with a smaller id, 20 \
                     digits, it is sealed at the next start)"
                );
                continue;
            }
            max_id = max_id.max(id);
            let meta = path
                .symlink_metadata()
                .ok()
                .filter(std::fs::Metadata::is_file);
            let bytes = meta.map_or(0, |m| m.len());
            left_with_records += u64::from(bytes > journal::frame::HEADER_LEN);
            tracing::info!(
                journal = %path.display(),
                bytes,
                "a journal an earlier agent left: recovered now, sealed by the sealer thread \
                 while the agent records"
            );
            // Recovery (one read, frames checked and counted, no columns built) cuts a
            // crash's torn tail before a newer journal follows it, where `verify` would take
            // the tail for the file cut short, and quarantines damage. A journal it cannot
            // recover is the seal's to judge (retried, passed over, counted); a full disk
            // waits for space there too. Nothing is rewritten while the manifest is frozen.
            let recovered = manifest
                .unreadable()
                .is_none()
                .then(|| journal::recover(&path));
            match recovered {
                Some(Ok(r)) => {
                    skipped.0 += r.skipped_bytes;
                    skipped.1 += r.skipped_frames;
                    // A damaged stretch's frames count as held: their loss is said as damage.
                    recovered_records.push((id, r.records + r.skipped_frames));
                }
                Some(Err(error)) => tracing::warn!(
                    journal = %path.display(),
                    %error,
                    "cannot recover a journal an earlier agent left; the sealer thread tries \
                     to seal it as it is"
                ),
                None => {}
            }
            waiting.push(path);
        }
        let mut max_entry = None;
        for e in manifest.entries() {
            if let Body::Segment(s) = &e.body {
                if s.journal_id >= max_id {
                    max_id = s.journal_id;
                    max_entry = Some(e.seq);
                }
            }
        }
        if manifest.unreadable().is_none() {
            retention::finish_interrupted(&dir, &manifest)?;
        }
        let now = clock.now_ns();
        let id = next_journal_id(max_id, now).ok_or_else(|| StoreError::NoJournalId {
            path: dir.join(manifest::MANIFEST),
            seq: max_entry.unwrap_or_default(),
        })?;
        let jpath = dir.join(seal::journal_name(id));
        let journal = JournalWriter::create(&jpath, id)?;
        // A full disk is the store's condition, not the start's failure (seals at open wait
        // for space the same way): the records have their journal, and the sealer thread
        // anchors the operator log and runs retention once space returns.
        let trust = clock.trust();
        let mut retention_clock = retention::RetentionClock::at_start(
            &dir,
            manifest.entries(),
            now,
            trust.map_or(0, |t| t.boot_id),
        );
        let (retention_now, ahead) = retention_clock.now(now, trust);
        retention::warn_held(ahead);
        if trust.is_some() {
            retention_clock.keep(&dir);
        }
        let retention_waits = match retention::prune_gated(
            &dir,
            &mut manifest,
            retention_now,
            cfg.retention_days,
            cfg.ship_gate.as_ref(),
        ) {
            // The operator log busy for a moment: the sealer thread tries again at once.
            Ok(pruned) => pruned.retry_soon,
            Err(error) if error.is_disk_full() => {
                tracing::warn!(
                    dir = %dir.display(),
                    %error,
                    "cannot anchor the operator log or run retention at the start: the disk \
                     refuses writes (full, read-only, or out of descriptors); the sealer thread \
                     does both once it takes them (it anchors after each seal, and runs \
                     retention now, every minute until it succeeds, then daily)"
                );
                true
            }
            Err(error) => return Err(error.into()),
        };
        let timings = std::sync::Arc::new(Timings::default());
        let manifest_unreadable = manifest.unreadable().map(str::to_owned);
        let signing_began_on = manifest.signing_began_on();
        let sealer = sealer::Sealer::spawn(
            dir.clone(),
            manifest,
            cfg.compact_max_rows,
            (cfg.ship_gate.clone(), retention_clock),
            timings.clone(),
        )
        .map_err(|e| io(&dir, "start the sealer thread", e))?;
        // One compaction pass either way: the seal's, or its own.
        if waiting.is_empty() {
            sealer.compact(now);
        } else {
            sealer.seal_all(waiting, now);
        }
        // Again once the leftovers are sealed: one may hold only records already past the
        // retention period, which the next daily pass would keep a day too long. (A clean
        // stop leaves an empty journal: no reason.)
        if retention_waits || left_with_records > 0 {
            sealer.retention(now, clock.trust(), cfg.retention_days);
        }
        Ok(Self {
            cfg,
            clock,
            sealer,
            left_at_open: left_with_records,
            recovered_records,
            unsealable_at_open: unsealable,
            skipped_at_open: skipped,
            journal,
            journal_hour: None,
            last_sync_ns: now,
            last_seal_try_ns: now,
            last_retention_ns: Some(now),
            last_clock_kept_ns: now,
            degraded: None,
            last_report_ns: i64::MIN / 2,
            last_recovered_ns: i64::MIN / 2,
            counted_synced: 0,
            held_unkept: 0,
            unkept_all: false,
            closed: false,
            timings,
            status: StoreStatus::default(),
            manifest_unreadable,
            signing_began_on,
            _lock: lock,
        })
    }
}
