//! The durable, tamper-evident audit store: journal -> seal -> segments + manifest chain,
//! with retention, query, export and verify over it.
//!
//! Directory layout (`--log-dir`; the byte-level reference is `docs/store-format.md`):
//! ```text
//! journal-<id>.wal          live journal (framed, checksummed records; see `journal`)
//! seg-<seq>-<start>.parquet sealed segments (see `segment`); a closed day's are merged
//!                           into one (see `compact`)
//! manifest.jsonl            hash chain over segments, retention deletions and compactions,
//!                           ending in the chain head, ed25519-signed with --signing-key
//!                           (see `manifest`)
//! operator.log              who read the store, and legal holds: hash-chained lines
//!                           appended by operators' commands, anchored into the manifest
//!                           (see `oplog`, `access`, `hold`)
//! quarantine/               bytes a damaged journal's recovery skipped (see `journal::file`)
//! .lock                     held by the one writer
//! ```
//!
//! Modules depend on each other in one direction only (a module uses only those before it):
//! `varint`, `address` (codecs), `fsutil` (durable file replacement, operator input reads) ->
//! `journal` (codec, frame, file) -> `columns` (a journal's records as column buffers) ->
//! `segment` (schema, write, read, chunk, scan, tail: index, pages) -> `manifest` -> `oplog` -> `hold` ->
//! `retention`, `seal` -> `compact` -> `sealer` -> `query`, `export`, `verify` -> `access`
//! -> [`Store`] (this module, and `open` for its opening; its constants and clock trait the
//! others may use).
//! `testgen` (generated traffic, the fake clock; behind the `testing` feature) serves tests
//! and benchmarks only.

pub mod access;
pub mod address;
pub mod columns;
pub mod compact;
pub mod export;
pub mod filter;
pub mod fsutil;
pub mod hold;
pub mod journal;
pub mod manifest;
pub mod oplog;
pub mod query;
pub mod retention;
pub mod seal;
pub mod sealer;
pub mod segment;
#[cfg(any(test, feature = "testing"))]
pub mod testgen;
pub mod varint;
pub mod verify;

mod open;
mod sink;
mod status;
use open::next_journal_id;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;

use crate::record::{EndReason, FlowRecord};
use crate::sink::{RecordSink, SinkError};
use journal::{JournalError, JournalWriter};
use manifest::{Body, Manifest, ManifestError};

pub use seal::LiveJournal;
pub use status::{StoreStatus, StoreTimings, Timings};
#[cfg(any(test, feature = "testing"))]
pub use testgen::FakeClock;

/// The store's lock file, created at the first open and held by the running agent.
pub const LOCK_FILE: &str = ".lock";
/// Hour length in nanoseconds: journals rotate when the hour changes.
pub const HOUR_NS: i64 = 3_600 * 1_000_000_000;
/// How often a condition that stops writing is reported, at most.
pub const REPORT_EVERY_NS: i64 = 60 * 1_000_000_000;

/// The time from `then` to `now` on the wall clock the store's timers read, with a clock set
/// back counted as all time passed: an fsync, a retry or a report due "an interval after
/// `then`" must not wait out the step (an hour without fsync after NTP corrects a clock that
/// ran an hour ahead).
pub(crate) fn since(now: i64, then: i64) -> i64 {
    if now < then {
        i64::MAX
    } else {
        now.saturating_sub(then)
    }
}
/// Default bound of the memory buffer used while the disk refuses writes, in records
/// (about 6 MB of encoded frames).
pub const DEFAULT_BUFFER_RECORDS: usize = 100_000;
/// Buffered frames are written once they reach this many bytes (or at the fsync interval).
const WRITE_CHUNK: usize = 256 * 1024;

/// How soon a retention pass that failed is tried again ([`Store`]'s timers).
const RETENTION_RETRY_NS: i64 = 60 * 1_000_000_000;

/// A source of wall-clock time, so tests can drive rotation, retention and reporting.
pub trait StoreClock: Send {
    /// Now, Unix nanoseconds.
    fn now_ns(&self) -> i64;

    /// The boot clock and the wall clock's synchronisation, for retention to tell a clock
    /// set ahead from time that passed ([`retention::RetentionClock`]); `None` (test
    /// clocks) follows `now_ns` as is.
    fn trust(&self) -> Option<retention::Trust> {
        None
    }
}

/// The system's real-time clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl StoreClock for SystemClock {
    /// `clock_gettime` itself: every append reads it, and `SystemTime`'s conversions on top
    /// cost about half as much again.
    fn now_ns(&self) -> i64 {
        crate::clock::clock_ns(libc::CLOCK_REALTIME)
    }

    fn trust(&self) -> Option<retention::Trust> {
        Some(retention::Trust {
            boot_ns: crate::clock::clock_ns(libc::CLOCK_BOOTTIME),
            boot_id: retention::boot_id(),
            synced: matches!(
                crate::compliance::system::clock_sync(),
                crate::compliance::ClockSync::Synced { .. }
            ),
        })
    }
}

/// Settings of the store.
#[derive(Debug)]
pub struct StoreConfig {
    /// The log directory.
    pub dir: PathBuf,
    /// Longest time an accepted record waits for fsync.
    pub fsync_interval: Duration,
    /// A journal is sealed when it reaches this size, even within the hour.
    pub segment_max_bytes: u64,
    /// Segments are deleted this many days after their newest record (>= 90).
    pub retention_days: u32,
    /// Signs the chain head at every seal.
    pub signing_key: Option<SigningKey>,
    /// Records held in memory while the disk refuses writes; beyond it records are dropped
    /// and counted.
    pub buffer_records: usize,
    /// Most rows in a segment merged from a closed day's segments (0: no compaction).
    pub compact_max_rows: u64,
    /// With shipping on: retention keeps the segments this gate says are not shipped yet.
    pub ship_gate: Option<retention::ShipGate>,
    /// The agent's flow table and its ledger are pinned: a flow's records held in memory are
    /// kept there too until they are written (`Sweeper::settle`), and the next agent writes
    /// them. Only the records nothing else keeps (`nat`, `evicted`, `summarised`; all of
    /// them without pins, or after [`RecordSink::unkept`]) are lost when the agent stops or
    /// dies holding them. `run` sets it once the program is attached
    /// ([`RecordSink::kept_by_pins`]).
    pub kept_by_pins: bool,
}

impl StoreConfig {
    /// Defaults for `dir`: fsync every second, 256 MiB segments at most, 180 days.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fsync_interval: Duration::from_secs(1),
            segment_max_bytes: 256 << 20,
            retention_days: retention::DEFAULT_DAYS,
            signing_key: None,
            buffer_records: DEFAULT_BUFFER_RECORDS,
            compact_max_rows: compact::DEFAULT_MAX_ROWS,
            ship_gate: None,
            kept_by_pins: false,
        }
    }
}

/// Errors opening the store; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory or lock could not be set up.
    #[error("audit store {path}: {op}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// Another process writes to this directory.
    #[error("audit store {0}: another xdp-audit process holds the lock")]
    Locked(PathBuf),
    /// The retention is below the legal floor or above the maximum.
    #[error(transparent)]
    Retention(#[from] retention::RefusedDays),
    /// A journal could not be made or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// What an interrupted compaction left could not be removed.
    #[error(transparent)]
    Compact(#[from] compact::CompactError),
    /// The manifest could not be read or appended.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The manifest lists a journal with the largest id there is, so no new journal can
    /// follow it (damage: the writer never gives that id).
    #[error(
        "{path}: entry {seq} lists journal id {}, the largest there is: no new journal can \
         follow it; `xdp-audit verify` checks the whole chain",
        u64::MAX
    )]
    NoJournalId {
        /// The manifest.
        path: PathBuf,
        /// The entry that lists it.
        seq: u64,
    },
}

struct Degraded {
    error: String,
    last_retry_ns: i64,
}

/// The writer side of the store; implements [`RecordSink`].
pub struct Store {
    cfg: StoreConfig,
    clock: Box<dyn StoreClock>,
    sealer: sealer::Sealer,
    /// Journals with records an earlier agent left, handed to the sealer at open.
    left_at_open: u64,
    /// `(id, records)` of each journal an earlier agent left that the open recovered.
    recovered_records: Vec<(u64, u64)>,
    /// Leftover journals named with the largest id, which no journal could follow (left in
    /// place, never sealed).
    unsealable_at_open: u64,
    /// Bytes and frames the recovery of leftover journals skipped at open.
    skipped_at_open: (u64, u64),
    journal: JournalWriter,
    /// The hour the live journal is for, set by its first record; it rotates once the clock
    /// or a record is past it.
    journal_hour: Option<i64>,
    last_sync_ns: i64,
    last_seal_try_ns: i64,
    last_retention_ns: Option<i64>,
    /// When retention's clock was last kept in the store ([`retention::RetentionClock`]).
    last_clock_kept_ns: i64,
    degraded: Option<Degraded>,
    last_report_ns: i64,
    /// When the store last said it writes again: a disk that refuses one write a second
    /// (a journal that cannot be created while appends go on) is said once a minute.
    last_recovered_ns: i64,
    counted_synced: u64,
    /// Of the journal's records held in memory, those nothing else keeps (see
    /// [`StoreStatus::buffered_unkept`]); reset when nothing is held.
    held_unkept: u64,
    /// Since [`RecordSink::unkept`], every record held is unkept, until nothing is held.
    unkept_all: bool,
    /// `close` reported what it could not write: `drop` does not say it again.
    closed: bool,
    status: StoreStatus,
    /// Shared with the sealer thread.
    timings: std::sync::Arc<Timings>,
    /// Why the manifest could not be read at the open ([`manifest::Manifest::frozen`]).
    manifest_unreadable: Option<String>,
    /// [`manifest::Manifest::signing_began_on`] at the open.
    signing_began_on: Option<u64>,
    _lock: File,
}

impl StoreError {
    /// Whether the disk was full ([`fsutil::is_disk_full`]): the store's condition, which
    /// passes when space returns.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Io { cause, .. } => fsutil::is_disk_full(cause),
            Self::Journal(e) => e.is_disk_full(),
            Self::Compact(e) => e.is_disk_full(),
            Self::Manifest(e) => e.is_disk_full(),
            Self::Locked(_) | Self::Retention(_) | Self::NoJournalId { .. } => false,
        }
    }
}

fn hour_of(ns: i64) -> i64 {
    ns.div_euclid(HOUR_NS)
}

impl Store {
    /// Journals with records an earlier agent left unsealed, found at open (the sealer
    /// thread seals them): that agent did not stop cleanly (a crash, a kill, a power cut, or
    /// a disk full at its stop).
    pub fn left_at_open(&self) -> u64 {
        self.left_at_open
    }

    /// The records journal `id` held once the open recovered it, an earlier agent having
    /// left it, with the frames of any damaged stretch it skipped (said as damage already);
    /// `None` if the open did not recover it (not there, or the manifest frozen). Fewer than
    /// that agent made durable in it is a loss no frame check sees: the file was cut at a
    /// frame's end while no agent ran.
    pub fn recovered_records(&self, id: u64) -> Option<u64> {
        let found = self.recovered_records.iter().find(|(j, _)| *j == id);
        found.map(|(_, records)| *records)
    }

    /// The last entry of an unsigned chain the signing key signs on top of from this open on
    /// ([`manifest::Manifest::signing_began_on`]).
    pub fn signing_began_on(&self) -> Option<u64> {
        self.signing_began_on
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// Current counters.
    pub fn status(&self) -> StoreStatus {
        let mut s = self.status.clone();
        s.buffered = self.journal.pending_records() as u64;
        s.buffered_unkept = Some(self.held_unkept.min(s.buffered));
        s.journal_refused = self.degraded.is_some();
        s.degraded = s.journal_refused || self.sealer.disk_full();
        s.manifest_unreadable = self.manifest_unreadable.clone();
        s.sealed = self.sealer.sealed();
        s.compacted = self.sealer.compacted();
        s.compact_failed_days = self.sealer.compact_failed();
        let (bytes, frames) = self.sealer.skipped();
        s.journal_skipped_bytes = self.skipped_at_open.0 + bytes;
        s.journal_skipped_frames = self.skipped_at_open.1 + frames;
        s.unsealed = self.sealer.pending() as u64;
        s.shortened_records += self.journal.shortened_records();
        s.unsealable = self.unsealable_at_open + self.sealer.unsealable();
        s.journals_gone = self.sealer.gone();
        s.set_aside = seal::SET_ASIDE.load(std::sync::atomic::Ordering::Relaxed);
        s.retention_days = self.cfg.retention_days;
        s.timings = self.timings.snapshot();
        let durable = self.journal.synced_records();
        s.live_journal = (durable > 0).then(|| LiveJournal {
            // Absolute: a relative --log-dir names another store from another directory.
            dir: std::path::absolute(&self.cfg.dir)
                .unwrap_or_else(|_| self.cfg.dir.clone())
                .to_string_lossy()
                .into_owned(),
            id: self.journal.id(),
            durable,
        });
        s
    }

    /// Warns about a condition that stops writing or sealing, at most once a minute.
    fn report(&mut self, now: i64, what: &str, error: &dyn std::fmt::Display) {
        if since(now, self.last_report_ns) < REPORT_EVERY_NS {
            return;
        }
        self.last_report_ns = now;
        self.status.reports += 1;
        tracing::warn!(
            dir = %self.cfg.dir.display(),
            %error,
            buffered = self.journal.pending_records(),
            buffer_limit = self.cfg.buffer_records,
            dropped = self.status.dropped,
            "audit store {what}; holding records in memory and retrying (reported at most once a minute)"
        );
    }

    fn degrade(&mut self, err: &dyn std::fmt::Display, now: i64) {
        self.degraded = Some(Degraded {
            error: err.to_string(),
            last_retry_ns: now,
        });
        self.report(now, "cannot write", err);
    }

    /// Writes and fsyncs the journal; on failure enters (or stays in) the degraded state.
    fn sync_at(&mut self, now: i64) {
        if let Some(d) = &self.degraded {
            if since(now, d.last_retry_ns) < 1_000_000_000 {
                let error = d.error.clone();
                self.report(now, "cannot write", &error);
                return;
            }
        }
        match self.journal.sync() {
            Ok(()) => {
                if let Some(d) = self.journal.take_fsync_time() {
                    self.timings.fsync.observe(d);
                }
                self.last_sync_ns = now;
                self.status.durable += self.journal.synced_records() - self.counted_synced;
                self.counted_synced = self.journal.synced_records();
                let said = since(now, self.last_recovered_ns) < REPORT_EVERY_NS;
                if let Some(d) = self.degraded.take().filter(|_| !said) {
                    self.last_recovered_ns = now;
                    tracing::warn!(
                        dir = %self.cfg.dir.display(),
                        after = %d.error,
                        dropped = self.status.dropped,
                        "audit store writes again; buffered records are on disk"
                    );
                }
            }
            Err(e) => self.degrade(&e, now),
        }
    }

    /// Starts a new journal and seals the old one (and any earlier one that failed to seal).
    fn rotate(&mut self, now: i64) {
        let Some(id) = next_journal_id(self.journal.id(), now) else {
            self.report_last_id(now);
            return;
        };
        self.sync_at(now);
        if self.degraded.is_some() {
            return; // the journal is not durable; keep appending to it and retry later
        }
        if self.journal.records() > 0 {
            let path = self.cfg.dir.join(seal::journal_name(id));
            // `create` makes the new journal's directory entry durable before records go into
            // it: otherwise a power cut could lose the file with its fsynced records. One
            // directory fsync an hour (or per full journal) on the records thread.
            match JournalWriter::create(&path, id) {
                Ok(next) => {
                    let old = std::mem::replace(&mut self.journal, next);
                    self.status.shortened_records += old.shortened_records();
                    self.sealer.seal(old.path().to_owned(), now);
                    self.last_seal_try_ns = now;
                    self.counted_synced = 0;
                    self.journal_hour = None;
                }
                Err(e) => self.degrade(&e, now),
            }
        }
    }

    /// Warns, at most once a minute, that the live journal cannot rotate: its id is the
    /// largest there is (an earlier journal's id was that close to it), so no journal can
    /// follow it. Its records go on into it, durable as ever; it is not sealed.
    fn report_last_id(&mut self, now: i64) {
        if since(now, self.last_report_ns) < REPORT_EVERY_NS {
            return;
        }
        self.last_report_ns = now;
        self.status.reports += 1;
        tracing::warn!(
            journal = %self.journal.path().display(),
            "the live journal's id is the largest there is: no journal can follow it, so it \
             is neither rotated nor sealed; records go on into it (reported at most once a \
             minute)"
        );
    }

    /// Timers: fsync, disk-full retries, hourly rotation by the clock, sealing retries, and
    /// daily retention, with the time taken from the store's clock.
    pub fn tick_at(&mut self, now: i64) -> Result<(), SinkError> {
        if self.degraded.is_some()
            || since(now, self.last_sync_ns) >= self.cfg.fsync_interval.as_nanos() as i64
        {
            self.sync_at(now);
        }
        if self.degraded.is_none() {
            // Past the journal's hour; or the clock set back before the hour before it (a
            // record a little ahead of the clock does not rotate at every tick).
            let hour_over = self
                .journal_hour
                .is_some_and(|h| hour_of(now) > h || hour_of(now) < h - 1);
            if hour_over || self.journal.size() >= self.cfg.segment_max_bytes {
                self.rotate(now);
            } else if (self.sealer.pending() > 0 || self.sealer.disk_full())
                && since(now, self.last_seal_try_ns) >= 1_000_000_000
            {
                self.sealer.retry(now);
                self.last_seal_try_ns = now;
            }
        }
        // Daily, and every minute after a pass that met a disk refusing writes: space freed
        // must let retention run (and free more) without waiting for the next day.
        let wait = if self.sealer.retention_failed() {
            RETENTION_RETRY_NS
        } else {
            retention::DAY_NS
        };
        // Hourly, retention's clock is kept, so a reboot goes on from at most an hour ago.
        // The hour checked first: `trust` costs an adjtimex call, and ticks come every sweep.
        if since(now, self.last_clock_kept_ns) >= HOUR_NS {
            if let Some(trust) = self.clock.trust() {
                self.sealer.keep_clock(now, trust);
            }
            self.last_clock_kept_ns = now;
        }
        if self.last_retention_ns.is_none_or(|t| since(now, t) >= wait) {
            self.sealer
                .retention(now, self.clock.trust(), self.cfg.retention_days);
            self.last_retention_ns = Some(now);
        }
        Ok(())
    }

    /// Whether the buffered frames, with `records` and `bytes` more, are due to be written:
    /// at the write size, or at half the memory bound, so a disk that refuses writes is
    /// found with room left to hold records.
    fn buffer_due(&self, records: usize, bytes: usize) -> bool {
        self.journal.pending_bytes() + bytes >= WRITE_CHUNK
            || self.journal.pending_records() + records >= self.cfg.buffer_records / 2
    }

    /// Whether `r` starts a new journal: a new hour, or the journal is full.
    fn rotates_for(&self, r: &FlowRecord) -> bool {
        self.journal_hour
            .is_some_and(|h| hour_of(r.time_start_ns) > h)
            || self.journal.size() >= self.cfg.segment_max_bytes
    }

    /// Accepts a record, rotating first when it starts a new hour or the journal is full.
    pub fn append(&mut self, r: &FlowRecord) {
        self.append_framed(r, None);
    }

    /// [`Store::append`], also appending the record's journal frame to `copy` if given: the
    /// bytes the journal holds, or (for a record dropped while the disk refuses writes) the
    /// same frame encoded for the copy alone.
    fn append_framed(&mut self, r: &FlowRecord, copy: Option<&mut Vec<u8>>) {
        let now = self.clock.now_ns();
        let hour = hour_of(r.time_start_ns);
        if self.rotates_for(r) {
            self.rotate(now);
        }
        if self.degraded.is_some() && self.journal.pending_records() >= self.cfg.buffer_records {
            self.status.dropped += 1;
            if let Some(copy) = copy {
                journal::encode_frame(r, copy);
            }
            self.sync_at(now); // retries (at most once a second) and reports (once a minute)
            return;
        }
        if self.journal.pending_records() == 0 {
            (self.held_unkept, self.unkept_all) = (0, false);
        }
        // A flood summary too: the pins keep only the last window's slots.
        if self.unkept_all
            || !self.cfg.kept_by_pins
            || matches!(
                r.end_reason,
                EndReason::Nat | EndReason::Evicted | EndReason::Summarised
            )
        {
            self.held_unkept += 1;
        }
        let frame = self.journal.append(r);
        if let Some(copy) = copy {
            copy.extend_from_slice(frame);
        }
        // The journal's hour is the later of its first record's and the clock's: a flow that
        // started before the hour and ends after it lands in the new journal and must not
        // make it a journal of the hour just rotated away (every tick would rotate again).
        self.journal_hour.get_or_insert(hour.max(hour_of(now)));
        self.status.accepted += 1;
        if self.degraded.is_some() {
            self.sync_at(now);
        } else if self.buffer_due(0, 0) {
            if let Err(e) = self.journal.flush() {
                self.degrade(&e, now);
            }
        }
        // No fsync here: the interval's is at `sync_due` and `tick` (see
        // `RecordSink::sync_due`). The records stage flushes every `sweeper::SETTLE_EVERY`
        // records, well before `WRITE_CHUNK`.
    }

    /// Writes the buffered frames into the journal file (one `write(2)`, no fsync): a killed
    /// agent loses none of them, only a power cut may. Nothing buffered, no system call; while
    /// the disk refuses writes the retries of [`Store::sync_now`] and the timers own them.
    pub fn flush(&mut self) {
        if self.degraded.is_some() || self.journal.pending_bytes() == 0 {
            return;
        }
        if let Err(e) = self.journal.flush() {
            let now = self.clock.now_ns();
            self.degrade(&e, now);
        }
    }

    /// Fsyncs if the fsync interval has passed since the last one.
    pub fn sync_due(&mut self) {
        let now = self.clock.now_ns();
        if self.degraded.is_none()
            && since(now, self.last_sync_ns) >= self.cfg.fsync_interval.as_nanos() as i64
        {
            self.sync_at(now);
        }
    }

    /// Fsyncs now and reports whether everything accepted is durable.
    pub fn sync_now(&mut self) -> bool {
        let now = self.clock.now_ns();
        if let Some(d) = self.degraded.as_mut() {
            d.last_retry_ns = i64::MIN / 2; // an explicit sync always retries
        }
        self.sync_at(now);
        self.degraded.is_none()
    }

    /// Seals the live journal now and waits for the sealer (tests and tools; the agent
    /// rotates by the hour). True when everything is sealed.
    pub fn seal_now(&mut self) -> bool {
        let now = self.clock.now_ns();
        self.rotate(now);
        // A journal that could not rotate still holds its records.
        self.sealer.barrier(now) && self.degraded.is_none() && self.journal.records() == 0
    }

    /// Waits until the sealer thread has done every job sent so far (seals, retention).
    /// True when no rotated journal is left unsealed.
    pub fn wait_idle(&mut self) -> bool {
        self.sealer.barrier(self.clock.now_ns())
    }
}

impl Drop for Store {
    /// Writes and fsyncs what is buffered (best effort: a full disk loses the buffer, which
    /// `close` would have reported); the sealer thread then finishes its queued seals.
    fn drop(&mut self) {
        if let Err(e) = self.journal.sync() {
            if self.closed {
                return;
            }
            // After a failed write the journal holds what it held (the write is all or
            // nothing); after a failed fsync, nothing is held.
            let held = self.status();
            if held.buffered == 0 {
                tracing::warn!(journal = %self.journal.path().display(), error = %e, "the journal could not be synced at shutdown");
                return;
            }
            let unkept = held.unkept();
            let journal = self.journal.path().display();
            if unkept > 0 {
                tracing::warn!(%journal, error = %e, records = unkept, "records lost at shutdown");
            } else {
                tracing::warn!(%journal, error = %e, records = held.buffered, "records not written at shutdown; the pinned flow table and its ledger keep them for the next agent");
            }
        }
    }
}

impl Store {
    /// [`RecordSink::write`], with the frame copied to `copy` if given.
    fn write_to(
        &mut self,
        record: &FlowRecord,
        copy: Option<&mut Vec<u8>>,
    ) -> Result<(), SinkError> {
        let dropped = self.status.dropped;
        self.append_framed(record, copy);
        if self.status.dropped == dropped {
            return Ok(());
        }
        Err(SinkError::Dropped {
            path: self.cfg.dir.clone(),
            reason: format!(
                "the disk refuses writes and the memory buffer holds its {} records",
                self.cfg.buffer_records
            ),
        })
    }
}

#[cfg(test)]
mod tests;
