//! The sender thread: takes messages from the queue in batches, formats them, and writes each
//! batch to the server, reconnecting with exponential backoff and jitter when it cannot.
//!
//! At least once: a batch leaves the sender only after `write_all` returned, and the last
//! `replay_bytes` of written batches stay in a replay window. After a reconnect the window is
//! written again, then the batch that failed; both count as `resent` (the server may hold
//! them twice). Before each batch the connection is polled, so a server that closed it is
//! noticed before the batch is written into a dead socket.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use super::format::{Encoder, Header};
use super::status::Counters;
use super::transport::{Conn, Connector};
use super::{Backoff, Item, SyslogConfig};
use crate::store::journal::frame_records;

/// A batch is written once it holds this many bytes, or when the queue is empty.
const BATCH_BYTES: usize = 64 << 10;
/// How often an idle sender looks at its stop channel.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long one write may block before the connection counts as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection must have held before a batch written on it ends an outage.
const HELD: Duration = Duration::from_secs(1);

/// A batch of frames and how many messages it holds.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    messages: u64,
}

/// The sender's state; [`Sender::run`] is the thread's body.
pub(super) struct Sender {
    connector: Connector,
    encoder: Encoder,
    rx: Receiver<Item>,
    stop: Receiver<Instant>,
    counters: Arc<Counters>,
    backoff: Backoff,
    replay_bytes: usize,
    conn: Option<Conn>,
    /// When the connection in `conn` was made.
    connected_at: Instant,
    ever_connected: bool,
    failures_in_row: u32,
    /// The batch being delivered, and whether a write of it failed before.
    batch: Batch,
    batch_failed: bool,
    /// Written batches kept for a reconnect, newest last, and their total size.
    replay: VecDeque<Batch>,
    replay_len: usize,
    /// The stop's deadline, once asked to stop.
    deadline: Option<Instant>,
    rng: u64,
}

/// Why delivery gave up: the stop's deadline passed.
struct Stopped;

impl Sender {
    /// A sender for `config`'s server, taking messages from `rx`.
    pub(super) fn new(
        connector: Connector,
        config: &SyslogConfig,
        rx: Receiver<Item>,
        stop: Receiver<Instant>,
        counters: Arc<Counters>,
    ) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            connector,
            encoder: Encoder::new(Header::new(&config.hostname, std::process::id())),
            rx,
            stop,
            counters,
            backoff: config.backoff,
            replay_bytes: config.replay_bytes,
            conn: None,
            ever_connected: false,
            connected_at: Instant::now(),
            failures_in_row: 0,
            batch: Batch::default(),
            batch_failed: false,
            replay: VecDeque::new(),
            replay_len: 0,
            deadline: None,
            rng: seed | 1,
        }
    }

    /// Sends until stopped: then sends what is queued until the deadline and counts the rest.
    pub(super) fn run(mut self) {
        loop {
            if self.batch.messages == 0 && !self.fill() {
                return;
            }
            if self.deliver().is_err() {
                let queued: u64 = self.rx.try_iter().map(|i| i.len()).sum();
                let left = self.batch.messages + queued;
                self.counters.queue_out(left - self.batch.messages);
                // A stop that left this thread counted what it held already.
                if !self.counters.abandoned() {
                    self.counters.unsent(left);
                }
                return;
            }
        }
    }

    /// Fills the batch from the queue; waits for the first messages. `false` when stopped
    /// with nothing left to send.
    fn fill(&mut self) -> bool {
        loop {
            if self.deadline.is_none() {
                match self.stop.try_recv() {
                    Ok(d) => self.deadline = Some(d),
                    Err(TryRecvError::Disconnected) => self.deadline = Some(Instant::now()),
                    Err(TryRecvError::Empty) => {}
                }
            }
            let first = if self.deadline.is_some() {
                match self.rx.try_recv() {
                    Ok(item) => item,
                    Err(_) => return false,
                }
            } else {
                match self.rx.recv_timeout(IDLE_POLL) {
                    Ok(item) => item,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return false,
                }
            };
            self.add(first);
            while self.batch.bytes.len() < BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(item) => self.add(item),
                    Err(_) => break,
                }
            }
            self.counters.queue_out(self.batch.messages);
            return true;
        }
    }

    /// Formats `item` into the batch.
    fn add(&mut self, item: Item) {
        match item {
            Item::Records { bytes, count } => {
                let mut formatted = 0;
                for r in frame_records(&bytes) {
                    match r {
                        Ok(r) => self.encoder.record(&r.to_record(), &mut self.batch.bytes),
                        Err(e) => {
                            warn!(error = %e, "syslog: a queued record does not decode; the rest of its batch is dropped");
                            break;
                        }
                    }
                    formatted += 1;
                }
                self.batch.messages += formatted;
                if count > formatted {
                    // What did not decode leaves the queue as dropped.
                    self.counters.queue_refused(count - formatted);
                }
            }
            Item::Message(m) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                self.encoder.message(&m, now, &mut self.batch.bytes);
                self.batch.messages += 1;
            }
        }
    }

    /// Writes the batch, connecting (and replaying) first when needed; gives up only when the
    /// stop's deadline passes.
    fn deliver(&mut self) -> Result<(), Stopped> {
        // The batch in hand, through connects and replays too, for a stop that cannot wait.
        self.counters.writing(self.batch.messages);
        let r = self.deliver_held();
        self.counters.writing(0);
        r
    }

    fn deliver_held(&mut self) -> Result<(), Stopped> {
        loop {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Stopped);
            }
            if self.conn.is_none() {
                self.connect()?;
                continue;
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            let written = conn
                .check_open()
                .and_then(|()| conn.write_all(&self.batch.bytes).map_err(|e| e.to_string()));
            match written {
                Ok(()) => {
                    // The outage ends with a batch written on a connection that held for a
                    // while, not with a connection opened (or a write the kernel took for a
                    // peer that already closed): a server that accepts and closes at once
                    // would keep the backoff at its first step.
                    if self.connected_at.elapsed() >= HELD {
                        self.failures_in_row = 0;
                    }
                    let n = self.batch.messages;
                    let again = if self.batch_failed { n } else { 0 };
                    self.counters.written(n, again);
                    self.batch_failed = false;
                    let done = std::mem::take(&mut self.batch);
                    self.remember(done);
                    return Ok(());
                }
                Err(e) => {
                    self.batch_failed = true;
                    self.broken(format!("{}: {e}", self.connector.target()), false);
                    self.wait()?;
                }
            }
        }
    }

    /// Keeps a written batch in the replay window, forgetting the oldest beyond its size.
    fn remember(&mut self, mut batch: Batch) {
        if self.replay_bytes == 0 {
            return;
        }
        self.replay_len += batch.bytes.len();
        self.replay.push_back(std::mem::take(&mut batch));
        while self.replay_len > self.replay_bytes {
            match self.replay.pop_front() {
                Some(old) => self.replay_len -= old.bytes.len(),
                None => break,
            }
        }
    }

    /// One connection attempt, then the replay window; on failure, waits the backoff.
    fn connect(&mut self) -> Result<(), Stopped> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Stopped);
        }
        let mut conn = match self.connector.connect(WRITE_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                self.broken(e, true);
                return self.wait();
            }
        };
        let mut replayed = 0;
        for b in &self.replay {
            if let Err(e) = conn.write_all(&b.bytes) {
                self.broken(format!("{}: {e}", self.connector.target()), false);
                return self.wait();
            }
            replayed += b.messages;
        }
        self.counters.written(0, replayed);
        self.counters.connected(self.ever_connected);
        if self.ever_connected {
            info!(
                server = %self.connector.target(),
                failures = self.failures_in_row,
                replayed,
                "syslog: reconnected"
            );
        } else {
            info!(server = %self.connector.target(), "syslog: connected");
        }
        self.ever_connected = true;
        self.conn = Some(conn);
        self.connected_at = Instant::now();
        Ok(())
    }

    /// The connection broke or could not be made: counted, said once per outage.
    fn broken(&mut self, error: String, attempt: bool) {
        self.conn = None;
        if self.failures_in_row == 0 {
            warn!(
                error,
                "syslog: no connection to the server; retrying with backoff"
            );
        } else {
            debug!(error, "syslog: still no connection");
        }
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        self.counters.failed(error, attempt);
    }

    /// Waits the backoff after a failure: exponential, with the upper half jittered so a
    /// fleet of gateways does not reconnect in step; cut short by the stop's deadline.
    fn wait(&mut self) -> Result<(), Stopped> {
        let exp = self.failures_in_row.saturating_sub(1).min(20);
        let base = self
            .backoff
            .initial
            .saturating_mul(1 << exp)
            .min(self.backoff.max);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = base / 2;
        let jitter = half.mul_f64((self.rng >> 11) as f64 / (1u64 << 53) as f64);
        let mut wait = half + jitter;
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Stopped);
            }
            wait = wait.min(left);
            std::thread::sleep(wait);
            return Ok(());
        }
        match self.stop.recv_timeout(wait) {
            Ok(d) => self.deadline = Some(d),
            Err(RecvTimeoutError::Disconnected) => self.deadline = Some(Instant::now()),
            Err(RecvTimeoutError::Timeout) => {}
        }
        Ok(())
    }
}
