//! The sealer thread: seals rotated journals, compacts closed days, anchors the operator log
//! (`oplog`) and runs retention off the record path, so an hourly seal (seconds for a busy hour) never stalls the agent's
//! record loop. It owns the manifest; jobs arrive in order over a channel.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::manifest::Manifest;
use super::retention::ShipGate;
use super::{compact, oplog, retention, seal, REPORT_EVERY_NS};

enum Job {
    Seal { path: PathBuf, now: i64 },
    Retry { now: i64 },
    Retention { now: i64, days: u32 },
    Compact { now: i64 },
    Barrier { now: i64, reply: Sender<bool> },
}

#[derive(Default)]
struct Shared {
    sealed: AtomicU64,
    compacted: AtomicU64,
    compact_failed: AtomicU64,
    pending: AtomicUsize,
    skipped_bytes: AtomicU64,
    skipped_frames: AtomicU64,
    timings: Arc<super::Timings>,
}

/// Handle of the sealer thread; dropping it finishes the queued jobs and joins the thread.
pub struct Sealer {
    tx: Option<Sender<Job>>,
    handle: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

struct Worker {
    dir: PathBuf,
    manifest: Manifest,
    queue: VecDeque<PathBuf>,
    compact_max_rows: u64,
    ship_gate: Option<ShipGate>,
    last_report_ns: i64,
    last_compact_report_ns: i64,
    shared: Arc<Shared>,
}

impl Worker {
    fn seal_queued(&mut self, now: i64) {
        while let Some(path) = self.queue.front().cloned() {
            let started = std::time::Instant::now();
            match seal::seal_journal(&self.dir, &path, &mut self.manifest) {
                Ok(s) => {
                    self.queue.pop_front();
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
                Err(e) => {
                    // The journal stays intact on disk; the next retry seals it.
                    if now - self.last_report_ns >= REPORT_EVERY_NS {
                        self.last_report_ns = now;
                        tracing::warn!(
                            journal = %path.display(),
                            error = %e,
                            waiting = self.queue.len(),
                            "audit store cannot seal a journal; keeping it and retrying (reported at most once a minute)"
                        );
                    }
                    break;
                }
            }
        }
        self.shared
            .pending
            .store(self.queue.len(), Ordering::Relaxed);
    }

    /// A compaction pass (cheap when no day is due). A failure leaves the store as it was;
    /// the next pass, after the next seal, tries again.
    fn compact(&mut self, now: i64) {
        if self.compact_max_rows == 0 {
            return;
        }
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
        let failed = match &result {
            Err(compact::CompactError::Partial { failed, .. }) => failed.len() as u64,
            _ => 0,
        };
        self.shared.compact_failed.store(failed, Ordering::Relaxed);
        if let Err(e) = result {
            if now - self.last_compact_report_ns >= REPORT_EVERY_NS {
                self.last_compact_report_ns = now;
                tracing::warn!(error = %e, "audit store cannot compact closed days; segments stay as sealed and the next pass retries (reported at most once a minute)");
            }
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        for job in rx {
            match job {
                Job::Seal { path, now } => {
                    self.queue.push_back(path);
                    self.seal_queued(now);
                    self.compact(now);
                    oplog::anchor_logged(&self.dir, &mut self.manifest, now);
                }
                Job::Compact { now } => self.compact(now),
                Job::Retry { now } => self.seal_queued(now),
                Job::Retention { now, days } => {
                    if let Err(e) = retention::prune_gated(
                        &self.dir,
                        &mut self.manifest,
                        now,
                        days,
                        self.ship_gate.as_ref(),
                    ) {
                        tracing::warn!(error = %e, "retention could not run; retrying tomorrow");
                    }
                }
                Job::Barrier { now, reply } => {
                    self.seal_queued(now);
                    let _ = reply.send(self.queue.is_empty());
                }
            }
        }
    }
}

impl Sealer {
    /// Starts the thread for the store in `dir`, taking over its manifest; merged segments
    /// hold at most `compact_max_rows` rows (0: no compaction); retention keeps what
    /// `ship_gate` says is not shipped yet; seal and compaction durations go to `timings`.
    pub fn spawn(
        dir: PathBuf,
        manifest: Manifest,
        compact_max_rows: u64,
        ship_gate: Option<ShipGate>,
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
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        self.send(Job::Seal { path, now });
    }

    /// Retries journals that failed to seal.
    pub fn retry(&self, now: i64) {
        self.send(Job::Retry { now });
    }

    /// Compacts the closed days due at `now`.
    pub fn compact(&self, now: i64) {
        self.send(Job::Compact { now });
    }

    /// Runs retention.
    pub fn retention(&self, now: i64, days: u32) {
        self.send(Job::Retention { now, days });
    }

    /// Waits until every job sent so far is done; true if no journal is left unsealed.
    pub fn barrier(&self, now: i64) -> bool {
        let (reply, done) = channel();
        self.send(Job::Barrier { now, reply });
        done.recv().unwrap_or(false)
    }

    /// Journals waiting to be sealed.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Segments sealed by the thread.
    pub fn sealed(&self) -> u64 {
        self.shared.sealed.load(Ordering::Relaxed)
    }

    /// Segments merged into others by the thread.
    pub fn compacted(&self) -> u64 {
        self.shared.compacted.load(Ordering::Relaxed)
    }

    /// Closed days the last compaction pass could not merge.
    pub fn compact_failed(&self) -> u64 {
        self.shared.compact_failed.load(Ordering::Relaxed)
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
