//! The bounded queue into the records stage. Everything the records stage acts on comes
//! through it, in order: event batches and clock measurements from the reader, the reader's
//! sweep ticks (after the events drained before them), and the rule book of each list reload
//! (before the kernel maps change). Its fill and the reader's waits on it are counted, so
//! back-pressure is never silent: while the reader waits, events stay in the ring buffer,
//! whose overflow the program counts per event kind.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::lists::RuleBook;
use crate::clock::OffsetSample;
use crate::reader::Event;

/// Events per batch at most: a drain sends what it read in batches of this many, and the
/// records stage settles after each (the journal's write, the file of open flows, the
/// ledger).
pub const BATCH_EVENTS: usize = 1024;
/// Messages the queue holds (each batch is one): up to 4 Ki events, and their payload copies
/// at most `reader::BATCH_PAYLOAD_BYTES` a batch. Few: what is read and not yet settled
/// still takes ring space (the records stage gives it back once settled, so that a kill
/// leaves it in the pinned ring), and the ring absorbs bursts instead. (With 32 batches of
/// 4,096 events, and space given back as read, kills in a flood lost up to 32,072 flows
/// whose starts the queue held when the full table then evicted them: campaign of
/// 2026-12-07.)
pub const QUEUE_MESSAGES: usize = 4;

/// What the records stage receives.
pub enum Msg {
    /// Events read from the ring buffer, in ring order, and the ring position after them:
    /// released once they are settled.
    Events {
        /// The events.
        events: Vec<Event>,
        /// The ring position after the last.
        end: u64,
    },
    /// A new measurement of the wall clock's offset.
    Clock(OffsetSample),
    /// Sweep the flow table at kernel time `now`, run the store's timers, write the status.
    /// Sent by the reader after a drain, so every start event read before `now` comes first.
    Sweep {
        /// CLOCK_MONOTONIC when the reader sent it.
        now: u64,
        /// The configured interfaces not audited now ([`super::ifaces`]).
        unaudited: Vec<super::ifaces::Unaudited>,
    },
    /// The rule names of a list reload, sent before the reload reaches the kernel maps.
    Rules(Arc<RuleBook>),
}

impl Msg {
    fn events(&self) -> u64 {
        match self {
            Msg::Events { events, .. } => events.len() as u64,
            _ => 0,
        }
    }
}

/// The reader's side of the pipeline, as `status` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineStats {
    /// Ring-buffer records read.
    pub events: u64,
    /// Ring-buffer records that did not decode (a program and agent of different builds).
    pub undecodable: u64,
    /// Events the records stage has taken from the queue.
    #[serde(default)]
    pub processed: u64,
    /// Events in the queue to the records stage now.
    pub queued: u64,
    /// The most events the queue held at once.
    pub queued_peak: u64,
    /// Times the reader found the queue full and waited (the ring buffer held the events
    /// meanwhile).
    pub queue_full: u64,
    /// Sweep ticks skipped because the previous sweep had not run yet.
    pub sweeps_skipped: u64,
}

/// Counters shared by the reader, the queue and the status writer.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    events: AtomicU64,
    undecodable: AtomicU64,
    processed: AtomicU64,
    queued: AtomicU64,
    queued_peak: AtomicU64,
    queue_full: AtomicU64,
    sweeps_skipped: AtomicU64,
    sweep_pending: AtomicBool,
}

impl PipelineCounters {
    /// Counts records read from the ring, `bad` of which did not decode.
    pub fn read(&self, records: u64, bad: u64) {
        self.events.fetch_add(records, Ordering::Relaxed);
        self.undecodable.fetch_add(bad, Ordering::Relaxed);
    }

    /// A snapshot.
    pub fn stats(&self) -> PipelineStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PipelineStats {
            events: get(&self.events),
            undecodable: get(&self.undecodable),
            processed: get(&self.processed),
            queued: get(&self.queued),
            queued_peak: get(&self.queued_peak),
            queue_full: get(&self.queue_full),
            sweeps_skipped: get(&self.sweeps_skipped),
        }
    }

    /// Whether a sweep may be queued now: not while the last one waits to run (sweeps
    /// piling up behind a backlog would only repeat each other). Counts the skip.
    pub fn claim_sweep(&self) -> bool {
        let free = !self.sweep_pending.swap(true, Ordering::AcqRel);
        if !free {
            self.sweeps_skipped.fetch_add(1, Ordering::Relaxed);
        }
        free
    }

    /// The queued sweep ran.
    pub fn sweep_done(&self) {
        self.sweep_pending.store(false, Ordering::Release);
    }
}

/// The sending side; clones share the queue and its counters.
#[derive(Clone)]
pub struct QueueTx {
    tx: mpsc::Sender<Msg>,
    counters: Arc<PipelineCounters>,
}

/// The receiving side, held by the records stage.
pub struct QueueRx {
    rx: mpsc::Receiver<Msg>,
    counters: Arc<PipelineCounters>,
}

/// The queue was closed: the records stage is gone.
#[derive(Debug, thiserror::Error)]
#[error("the records stage has stopped")]
pub struct Closed;

/// A queue of `capacity` messages with `counters`.
pub fn queue(capacity: usize, counters: Arc<PipelineCounters>) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        QueueTx {
            tx,
            counters: counters.clone(),
        },
        QueueRx { rx, counters },
    )
}

impl QueueTx {
    fn count_in(&self, msg: &Msg) {
        let n = msg.events();
        if n > 0 {
            let now = self.counters.queued.fetch_add(n, Ordering::Relaxed) + n;
            self.counters.queued_peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Sends from async code, waiting (and counting the wait) while the queue is full.
    pub async fn send(&self, msg: Msg) -> Result<(), Closed> {
        self.count_in(&msg);
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Closed),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                self.tx.send(msg).await.map_err(|_| Closed)
            }
        }
    }

    /// Sends from a thread outside the async runtime, waiting while the queue is full.
    pub fn send_blocking(&self, msg: Msg) -> Result<(), Closed> {
        self.count_in(&msg);
        self.tx.blocking_send(msg).map_err(|_| Closed)
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<PipelineCounters> {
        &self.counters
    }
}

impl QueueRx {
    /// The next message, waiting for it; `None` once every sender is gone.
    pub fn recv_blocking(&mut self) -> Option<Msg> {
        let msg = self.rx.blocking_recv()?;
        let n = msg.events();
        if n > 0 {
            self.counters.queued.fetch_sub(n, Ordering::Relaxed);
            self.counters.processed.fetch_add(n, Ordering::Relaxed);
        }
        Some(msg)
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<PipelineCounters> {
        &self.counters
    }
}
