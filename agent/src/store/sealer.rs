//! The sealer thread: seals rotated journals, compacts closed days, anchors the operator log
//! (`oplog`) and runs retention off the record path, so an hourly seal (seconds for a busy hour) never stalls the agent's
//! record loop. It owns the manifest; jobs arrive in order over a channel.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::manifest::Manifest;
use super::retention::ShipGate;
use super::{compact, fsutil, oplog, retention, seal, REPORT_EVERY_NS};

enum Job {
    /// Journals to seal in order, then one compaction pass.
    Seal {
        paths: Vec<PathBuf>,
        now: i64,
    },
    Retry {
        now: i64,
    },
    Retention {
        now: i64,
        trust: Option<retention::Trust>,
        days: u32,
    },
    KeepClock {
        now: i64,
        trust: retention::Trust,
    },
    Compact {
        now: i64,
    },
    Barrier {
        now: i64,
        reply: Sender<bool>,
    },
}

#[derive(Default)]
struct Shared {
    sealed: AtomicU64,
    compacted: AtomicU64,
    compact_failed: AtomicU64,
    /// The last seal pass stopped at a full disk.
    seal_disk_full: AtomicBool,
    /// The last compaction pass stopped at a full disk.
    compact_disk_full: AtomicBool,
    /// The last retention pass met a disk that refuses writes (its entries need room before
    /// files can go): retried every minute rather than the next day.
    retention_failed: AtomicBool,
    pending: AtomicUsize,
    unsealable: AtomicUsize,
    /// Journals gone from the directory before their seal (deleted by someone else).
    gone: AtomicU64,
    skipped_bytes: AtomicU64,
    skipped_frames: AtomicU64,
    /// Seals tried (each reads a journal whole).
    tries: AtomicU64,
    timings: Arc<super::Timings>,
}

/// Handle of the sealer thread; dropping it finishes the queued jobs and joins the thread.
pub struct Sealer {
    tx: Option<Sender<Job>>,
    handle: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// Failures in a row after which a journal no longer holds up those queued behind it.
const SKIP_AFTER: u32 = 3;

/// A journal waiting to be sealed: rotated, or left by an earlier agent.
struct Queued {
    path: PathBuf,
    /// Failed seals in a row.
    failures: u32,
    /// No longer holds up the journals behind it (reported once, when it became so).
    passed_over: bool,
    /// When its last seal was tried: one passed over is tried again at most once a minute
    /// (a journal the chain has no room for was decoded whole every second).
    tried_ns: i64,
}

/// Whether anything (even a directory in its place) is at `path`.
fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

struct Worker {
    dir: PathBuf,
    manifest: Manifest,
    queue: VecDeque<Queued>,
    compact_max_rows: u64,
    ship_gate: Option<ShipGate>,
    last_report_ns: i64,
    last_compact_report_ns: i64,
    /// When the last compaction pass ran (a pass that met a full disk is retried a minute on).
    last_compact_ns: i64,
    /// Retention's now, which a clock set ahead does not move.
    retention_clock: retention::RetentionClock,
    /// The free bytes when a seal last met a disk refusing writes, and when: the queue is
    /// tried again once space was freed, or a minute on (a quota, a read-only remount, or
    /// out of descriptors free no space), not every second: each try decodes a journal
    /// whole (an hour's is about a second of CPU) only to fail at its first write.
    full_at: Option<(Option<u64>, i64)>,
    shared: Arc<Shared>,
}

impl Worker {
    /// Seals the queued journals in order. A journal that is gone is dropped; one at fault
    /// itself (unreadable, or failing [`SKIP_AFTER`] times in a row) is kept and passed over,
    /// so the journals behind it still seal; any other failure ends the pass, since the rest
    /// would fail the same way. A full disk is never the journal's fault: it does not count
    /// towards [`SKIP_AFTER`], so once space returns the journals seal in chain order.
    fn seal_queued(&mut self, now: i64) {
        if self.manifest.unreadable().is_some() {
            // Said at the start: the journals wait, in order, for a restored manifest.
            self.shared
                .pending
                .store(self.queue.len(), Ordering::Relaxed);
            return;
        }
        let mut kept = VecDeque::new();
        let mut disk_full = false;
        while let Some(mut q) = self.queue.pop_front() {
            if q.passed_over && super::since(now, q.tried_ns) < REPORT_EVERY_NS {
                kept.push_back(q);
                continue;
            }
            q.tried_ns = now;
            self.shared.tries.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            match seal::seal_journal(&self.dir, &q.path, &mut self.manifest) {
                Ok(s) => {
                    if s.segment.is_some() {
                        self.shared.sealed.fetch_add(1, Ordering::Relaxed);
                        self.shared.timings.seal.observe(started.elapsed());
                    }
                    let shared = &self.shared;
                    shared
                        .skipped_bytes
                        .fetch_add(s.skipped_bytes, Ordering::Relaxed);
                    shared
                        .skipped_frames
                        .fetch_add(s.skipped_frames, Ordering::Relaxed);
                }
                Err(e @ seal::SealError::Gone(_)) => {
                    self.shared.gone.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        journal = %q.path.display(),
                        error = %e,
                        "a journal waiting to be sealed is gone (deleted by someone else: the \
                         agent deletes a journal only after its segment is in the chain); \
                         dropping it from the queue (its records are not in the store)"
                    );
                }
                // Gone after it was read: deleted by this seal (whose directory fsync failed,
                // its segment in the chain), or by someone else meanwhile. Nothing to retry.
                Err(e) if !exists(&q.path) => {
                    tracing::warn!(
                        journal = %q.path.display(),
                        error = %e,
                        "a journal's seal failed and the journal is gone; dropping it from the \
                         queue (`xdp-audit verify` tells whether its segment is in the chain)"
                    );
                }
                Err(e) if e.is_disk_full() => {
                    disk_full = true;
                    if super::since(now, self.last_report_ns) >= REPORT_EVERY_NS {
                        self.last_report_ns = now;
                        tracing::warn!(
                            journal = %q.path.display(),
                            error = %e,
                            waiting = self.queue.len() + kept.len() + 1,
                            "audit store cannot seal: the disk refuses writes (full, \
                             read-only, or out of descriptors); the journals stay in place and \
                             are sealed in order once it takes them (reported at most once a \
                             minute)"
                        );
                    }
                    kept.push_back(q);
                    break;
                }
                Err(e) => {
                    q.failures += 1;
                    let skip = e.is_the_journals() || q.failures >= SKIP_AFTER;
                    if skip && !q.passed_over {
                        q.passed_over = true;
                        tracing::warn!(
                            journal = %q.path.display(),
                            error = %e,
                            failures = q.failures,
                            "audit store cannot seal this journal; leaving it in place, \
                             retrying it, and sealing the journals after it meanwhile"
                        );
                    } else if super::since(now, self.last_report_ns) >= REPORT_EVERY_NS {
                        self.last_report_ns = now;
                        tracing::warn!(
                            journal = %q.path.display(),
                            error = %e,
                            waiting = self.queue.len() + kept.len() + 1,
                            "audit store cannot seal a journal; keeping it and retrying (reported at most once a minute)"
                        );
                    }
                    kept.push_back(q);
                    if !skip {
                        break;
                    }
                }
            }
        }
        kept.append(&mut self.queue);
        self.queue = kept;
        let passed_over = self.queue.iter().filter(|q| q.passed_over).count();
        self.shared.unsealable.store(passed_over, Ordering::Relaxed);
        self.full_at = disk_full.then(|| (fsutil::free_bytes(&self.dir), now));
        self.shared
            .seal_disk_full
            .store(disk_full, Ordering::Relaxed);
        self.shared
            .pending
            .store(self.queue.len(), Ordering::Relaxed);
    }

    /// A compaction pass (cheap when no day is due). A failure leaves the store as it was;
    /// the next pass, after the next seal, tries again.
    fn compact(&mut self, now: i64) {
        if self.compact_max_rows == 0 || self.manifest.unreadable().is_some() {
            return;
        }
        self.last_compact_ns = now;
        let before = self.manifest.entries().len();
        let started = std::time::Instant::now();
        let result = compact::run(&self.dir, &mut self.manifest, now, self.compact_max_rows);
        let took = started.elapsed();
        let merged: usize = self.manifest.entries()[before.min(self.manifest.entries().len())..]
            .iter()
            .map(|e| e.body.removed().len())
            .sum();
        self.shared
            .compacted
            .fetch_add(merged as u64, Ordering::Relaxed);
        if merged > 0 {
            self.shared.timings.compact.observe(took);
        }
        let failed = result.as_ref().err().map_or(0, |e| e.failed_groups().len());
        self.shared
            .compact_failed
            .store(failed as u64, Ordering::Relaxed);
        let disk_full = result
            .as_ref()
            .is_err_and(compact::CompactError::is_disk_full);
        self.shared
            .compact_disk_full
            .store(disk_full, Ordering::Relaxed);
        if let Err(e) = result {
            if super::since(now, self.last_compact_report_ns) >= REPORT_EVERY_NS {
                self.last_compact_report_ns = now;
                tracing::warn!(error = %e, "audit store cannot compact closed days; segments stay as sealed and the next pass retries (reported at most once a minute)");
            }
        }
    }

    /// Retries what a full disk stopped: the queued journals, and (at most once a minute,
    /// since a pass reads a day's segments) the compaction.
    fn retry(&mut self, now: i64) {
        let waits = self.full_at.is_some_and(|(free, at)| {
            let freed = free
                .zip(fsutil::free_bytes(&self.dir))
                .is_some_and(|(then, free)| free > then);
            !freed && super::since(now, at) < REPORT_EVERY_NS
        });
        if !waits {
            self.seal_queued(now);
        }
        let compaction_waits = self.shared.compact_disk_full.load(Ordering::Relaxed);
        if compaction_waits && super::since(now, self.last_compact_ns) >= REPORT_EVERY_NS {
            self.compact(now);
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        for job in rx {
            match job {
                Job::Seal { paths, now } => {
                    self.queue.extend(paths.into_iter().map(|path| Queued {
                        path,
                        failures: 0,
                        passed_over: false,
                        tried_ns: now,
                    }));
                    self.seal_queued(now);
                    self.compact(now);
                    oplog::anchor_logged(&self.dir, &mut self.manifest, now);
                }
                Job::Compact { now } => self.compact(now),
                Job::KeepClock { now, trust } => {
                    self.retention_clock.now(now, Some(trust));
                    self.retention_clock.keep(&self.dir);
                }
                Job::Retry { now } => self.retry(now),
                Job::Retention { now, trust, days } => {
                    let (now, ahead) = self.retention_clock.now(now, trust);
                    retention::warn_held(ahead);
                    if trust.is_some() {
                        self.retention_clock.keep(&self.dir);
                    }
                    let result = retention::prune_gated(
                        &self.dir,
                        &mut self.manifest,
                        now,
                        days,
                        self.ship_gate.as_ref(),
                    );
                    // Retried every minute only when the disk refuses writes (space freed
                    // lets it run) or the operator log was busy; another failure (damage)
                    // waits for the next day.
                    let disk_full = result.as_ref().is_err_and(|e| e.is_disk_full());
                    let busy = result.as_ref().is_ok_and(|p| p.retry_soon);
                    let said = self
                        .shared
                        .retention_failed
                        .swap(disk_full || busy, Ordering::Relaxed);
                    match result {
                        Err(e) if disk_full => {
                            if !said {
                                tracing::warn!(error = %e, "retention could not run: the disk refuses writes; retrying every minute until it does");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "retention could not run; retrying tomorrow")
                        }
                        Ok(_) => {}
                    }
                }
                Job::Barrier { now, reply } => {
                    self.seal_queued(now);
                    // Lines appended since the last seal (a stop's last alert notices)
                    // are anchored too, even when there was no journal left to seal.
                    oplog::anchor_logged(&self.dir, &mut self.manifest, now);
                    let _ = reply.send(self.queue.is_empty());
                }
            }
        }
    }
}

impl Sealer {
    /// Starts the thread for the store in `dir`, taking over its manifest; merged segments
    /// hold at most `compact_max_rows` rows (0: no compaction); retention keeps what
    /// `ship_gate` says is not shipped yet and counts time as `retention_clock` does; seal
    /// and compaction durations go to `timings`.
    pub fn spawn(
        dir: PathBuf,
        manifest: Manifest,
        compact_max_rows: u64,
        (ship_gate, retention_clock): (Option<ShipGate>, retention::RetentionClock),
        timings: Arc<super::Timings>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            timings,
            ..Shared::default()
        });
        let worker = Worker {
            dir,
            manifest,
            queue: VecDeque::new(),
            compact_max_rows,
            ship_gate,
            last_report_ns: i64::MIN / 2,
            last_compact_report_ns: i64::MIN / 2,
            last_compact_ns: i64::MIN / 2,
            retention_clock,
            full_at: None,
            shared: shared.clone(),
        };
        let (tx, rx) = channel();
        let handle = std::thread::Builder::new()
            .name("xdp-audit-sealer".into())
            .spawn(move || worker.run(rx))?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
            shared,
        })
    }

    fn send(&self, job: Job) {
        if let Some(tx) = &self.tx {
            if tx.send(job).is_err() {
                tracing::error!(
                    "the sealer thread has stopped; journals stay unsealed until the next start"
                );
            }
        }
    }

    /// Queues a rotated journal for sealing.
    pub fn seal(&self, path: PathBuf, now: i64) {
        self.seal_all(vec![path], now);
    }

    /// Queues journals for sealing in this order, followed by one compaction pass (a pass
    /// deletes what the one before it merged, which a query may still be reading).
    pub fn seal_all(&self, paths: Vec<PathBuf>, now: i64) {
        self.shared
            .pending
            .fetch_add(paths.len(), Ordering::Relaxed);
        self.send(Job::Seal { paths, now });
    }

    /// Retries journals that failed to seal, and a compaction a full disk stopped.
    pub fn retry(&self, now: i64) {
        self.send(Job::Retry { now });
    }

    /// Compacts the closed days due at `now`.
    pub fn compact(&self, now: i64) {
        self.send(Job::Compact { now });
    }

    /// Moves retention's clock on to wall time `now` as far as `trust` lets it, and keeps it
    /// in the store for the next start.
    pub fn keep_clock(&self, now: i64, trust: retention::Trust) {
        self.send(Job::KeepClock { now, trust });
    }

    /// Runs retention at wall time `now`, as far as `trust` lets it follow it.
    pub fn retention(&self, now: i64, trust: Option<retention::Trust>, days: u32) {
        self.send(Job::Retention { now, trust, days });
    }

    /// Waits until every job sent so far is done and the logs are anchored; true if no
    /// journal is left unsealed.
    pub fn barrier(&self, now: i64) -> bool {
        let (reply, done) = channel();
        self.send(Job::Barrier { now, reply });
        done.recv().unwrap_or(false)
    }

    /// Journals waiting to be sealed.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Queued journals that failed again and again and are passed over (left in place and
    /// retried) so the ones behind them seal.
    pub fn unsealable(&self) -> u64 {
        self.shared.unsealable.load(Ordering::Relaxed) as u64
    }

    /// Journals gone from the directory before their seal.
    pub fn gone(&self) -> u64 {
        self.shared.gone.load(Ordering::Relaxed)
    }

    /// Seals tried, each a read of a journal whole.
    #[cfg(test)]
    pub fn tries(&self) -> u64 {
        self.shared.tries.load(Ordering::Relaxed)
    }

    /// Segments sealed by the thread.
    pub fn sealed(&self) -> u64 {
        self.shared.sealed.load(Ordering::Relaxed)
    }

    /// Segments merged into others by the thread.
    pub fn compacted(&self) -> u64 {
        self.shared.compacted.load(Ordering::Relaxed)
    }

    /// Closed days the last compaction pass could not merge (a full disk is none of them).
    pub fn compact_failed(&self) -> u64 {
        self.shared.compact_failed.load(Ordering::Relaxed)
    }

    /// Whether the last seal or compaction pass stopped at a full disk (retried: see
    /// [`Sealer::retry`]).
    pub fn disk_full(&self) -> bool {
        self.shared.seal_disk_full.load(Ordering::Relaxed)
            || self.shared.compact_disk_full.load(Ordering::Relaxed)
    }

    /// Whether the last retention pass failed (retried every minute by the store).
    pub fn retention_failed(&self) -> bool {
        self.shared.retention_failed.load(Ordering::Relaxed)
    }

    /// Bytes and frames (at least) of damaged journals the thread's seals skipped.
    pub fn skipped(&self) -> (u64, u64) {
        (
            self.shared.skipped_bytes.load(Ordering::Relaxed),
            self.shared.skipped_frames.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.tx = None; // ends the job loop once the queue is drained
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testgen::{journal_bytes, TrafficGen};

    /// A queued journal the sealer cannot read (a directory in its place) stays queued and
    /// in place without holding up the journal behind it; one that is gone is dropped and
    /// counted (someone else deleted it: the alert's `XA-STORE-DAMAGED`).
    #[test]
    fn an_unreadable_journal_does_not_block_the_ones_behind_it() {
        let tmp = crate::blocklist::tests::TempDir::new("sealer-skip");
        let dir = tmp.0.clone();
        let manifest = Manifest::load(&dir, None)
            .unwrap_or_else(|e| panic!("load the empty manifest in {}: {e}", dir.display()));
        let clock = retention::RetentionClock::at_start(&dir, manifest.entries(), 0, 0);
        let sealer = Sealer::spawn(dir.clone(), manifest, 0, (None, clock), Arc::default())
            .unwrap_or_else(|e| panic!("start the sealer: {e}"));
        let t0 = 1_767_225_600_000_000_000;
        let bad = dir.join(seal::journal_name(1));
        std::fs::create_dir(&bad).unwrap_or_else(|e| panic!("mkdir {}: {e}", bad.display()));
        let gone = dir.join(seal::journal_name(2));
        let mut g = TrafficGen::with_rate(7, t0, 100.0);
        let recs: Vec<_> = (0..50).map(|_| g.next_record()).collect();
        let good = dir.join(seal::journal_name(3));
        std::fs::write(&good, journal_bytes(3, &recs).0)
            .unwrap_or_else(|e| panic!("write {}: {e}", good.display()));

        for p in [&bad, &gone, &good] {
            sealer.seal(p.clone(), t0);
        }
        assert!(
            !sealer.barrier(t0),
            "the unreadable journal is still unsealed"
        );
        assert_eq!(sealer.sealed(), 1, "the journal behind it was sealed");
        assert!(!good.exists(), "the sealed journal was deleted");
        assert_eq!(
            sealer.pending(),
            1,
            "only the unreadable journal is left queued"
        );
        assert_eq!(sealer.unsealable(), 1, "and it is counted as passed over");
        assert!(bad.is_dir(), "the unreadable journal is left in place");
        assert_eq!(
            sealer.gone(),
            1,
            "the journal deleted before its seal is counted"
        );
    }
}
