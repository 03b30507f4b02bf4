//! Records and alerts to a syslog server: RFC 5424 messages in RFC 6587 octet-counting
//! frames over TCP or TLS (`--syslog tcp://HOST:PORT` or `tls://HOST:PORT`).
//!
//! ```text
//! records thread: SyslogStage::write ─► store's frame ─► batch ─► try_send ─┐  bounded queue
//! alert engine:   Handle::try_send(Message) ────────────────────────────────┘  (overflow counted)
//!                                      sender thread: decode ─► format ─► batch ─► TCP / TLS
//! ```
//!
//! Nothing on the records thread formats, encodes, allocates per record or waits:
//! [`SyslogStage`] has the store append the journal frame it encodes anyway to a flat byte
//! batch (`RecordSink::write_framed`), hands full batches (and what it has at each sync and
//! tick) to the queue, and passes every record on to the sink it wraps. The sender thread formats ([`format`]), writes
//! batches, and on a broken connection reconnects with exponential
//! backoff and jitter and writes again the batch that failed and the frames of the replay
//! window before it (at least once: a reconnect may repeat frames, counted as `resent`).
//! What can be lost, and is counted: records refused by a full queue (`dropped`), and what the
//! queue holds when the agent stops and the server does not take it in time (`unsent_at_exit`).
//! Frames that left the replay window before a failure are taken as received: plain TCP
//! syslog has no acknowledgement, so a server that took more than the window into its socket
//! without processing it loses the excess unseen (the window, 1 MiB by default, is far more
//! than a server that reads keeps unread).

pub mod args;
pub mod format;
mod sender;
mod stage;
mod status;
mod target;
mod transport;

use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use stage::SyslogStage;
pub use status::SyslogStatus;
pub use target::Target;

use status::Counters;

/// RFC 5424 severities (table 2); the numeric value is the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Severity {
    /// System is unusable.
    Emergency = 0,
    /// Action must be taken immediately.
    Alert = 1,
    /// Critical conditions.
    Critical = 2,
    /// Error conditions.
    Error = 3,
    /// Warning conditions.
    Warning = 4,
    /// Normal but significant condition (drop records).
    Notice = 5,
    /// Informational messages (pass records).
    Informational = 6,
    /// Debug-level messages.
    Debug = 7,
}

/// A message of another stage (an alert) for the syslog server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its severity.
    pub severity: Severity,
    /// The MSGID; also the name of the SD-ID (`<msg_id>@32473`) of its structured data.
    pub msg_id: &'static str,
    /// The SD-PARAMs of its one SD-ELEMENT (names: printable ASCII without `=`, space, `]`,
    /// `"`; values any text, escaped when written).
    pub sd: Vec<(String, String)>,
    /// The MSG: free text for a person.
    pub text: String,
}

/// What the queue carries: a batch of records, or a message of another stage (an alert).
enum Item {
    /// Records as journal frames (`store::journal::encode_frame`), back to back: the bytes
    /// the store encoded for its journal, copied into the batch by the records thread (no
    /// second encoding, no allocation or clone per record); the sender decodes
    /// (`store::journal::frame_records`) and formats them.
    Records {
        /// The encoded records.
        bytes: Vec<u8>,
        /// How many.
        count: u64,
    },
    /// One message.
    Message(Message),
}

impl Item {
    /// Messages it holds.
    fn len(&self) -> u64 {
        match self {
            Item::Records { count, .. } => *count,
            Item::Message(_) => 1,
        }
    }
}

/// Records the stage gathers before it hands them to the queue as one batch: one channel
/// operation (and at most one wake-up of the sender) per batch, not per record. The stage
/// also hands over what it has on every sync and tick, so a record waits at most a sweep.
const STAGE_BATCH: usize = 256;

/// Which records go to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Records {
    /// Records with dropped packets only (verdict `drop`).
    Drops,
    /// Every record (`--syslog-records`).
    All,
}

/// How long to wait between connection attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait after a failure.
    pub initial: Duration,
    /// The longest wait; each failure in a row doubles the wait up to this.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

/// Everything the sink needs.
#[derive(Clone, Debug)]
pub struct SyslogConfig {
    /// The server.
    pub target: Target,
    /// For `tls://`: the PEM file of the CA certificates the server's certificate must chain
    /// to (read at start, so a bad file fails the start).
    pub ca_file: Option<PathBuf>,
    /// Which records are sent.
    pub records: Records,
    /// Messages the queue holds at most.
    pub queue: usize,
    /// Bytes of the frames last written that are written again after a reconnect.
    pub replay_bytes: usize,
    /// Reconnection waits.
    pub backoff: Backoff,
    /// HOSTNAME of the messages.
    pub hostname: String,
    /// How long closing the sink waits for the queue to reach the server.
    pub close_timeout: Duration,
}

impl SyslogConfig {
    /// Defaults for `target`: drop records only, 65,536 queued messages, 1 MiB replayed,
    /// this host's name, 5 s to drain at the stop.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            ca_file: None,
            records: Records::Drops,
            queue: 65_536,
            replay_bytes: 1 << 20,
            backoff: Backoff::default(),
            hostname: host_name(),
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the syslog sink cannot start; each names the flag or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// `--syslog` is not `tcp://HOST:PORT` or `tls://HOST:PORT`.
    #[error("--syslog {url:?}: {reason} (expected tcp://HOST:PORT or tls://HOST:PORT)")]
    Url {
        /// What was given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The CA file cannot be read or holds no usable certificate.
    #[error("--syslog-ca {path}: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A CA file with a `tcp://` server, or a `tls://` server without one.
    #[error("{0}")]
    Settings(String),
    /// The sender thread could not be started.
    #[error("cannot start the syslog sender thread: {0}")]
    Thread(std::io::Error),
}

/// Hands messages to the sender thread; cloned by every stage that sends (records, alerts).
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Item>,
    counters: Arc<Counters>,
    /// Messages the queue holds at most.
    limit: u64,
}

impl Handle {
    /// Queues `m` for the server without waiting; `false` when the queue is full (the message
    /// is dropped and counted in the status's `dropped`).
    pub fn try_send(&self, m: Message) -> bool {
        self.push(Item::Message(m))
    }

    /// Queues a batch; `false` when the queue cannot hold all of it (the whole batch is
    /// dropped and counted).
    fn push(&self, item: Item) -> bool {
        let n = item.len();
        // Counted before the send, so the sender's decrement never runs ahead of it.
        if self.counters.queue_in(n) > self.limit {
            self.counters.queue_refused(n);
            return false;
        }
        // The channel has no bound of its own: the limit is in messages (above), so a queue
        // of many small hand-overs (one record a tick, single alerts) holds as many as a
        // queue of full batches.
        if self.tx.send(item).is_err() {
            self.counters.queue_refused(n);
            return false;
        }
        true
    }

    /// The counters, for `status`.
    pub fn status(&self) -> SyslogStatus {
        self.counters.snapshot()
    }
}

/// The running sink: the sender thread and a handle to it.
pub struct Syslog {
    handle: Handle,
    /// The thread, and the channel that tells it to stop by a deadline.
    sender: Option<(JoinHandle<()>, std::sync::mpsc::Sender<Instant>)>,
    close_timeout: Duration,
    target: Target,
}

impl Syslog {
    /// Reads the CA file (for TLS) and starts the sender thread, which connects on its own:
    /// a server that is down at start is retried, not fatal.
    pub fn start(config: SyslogConfig) -> Result<Self, SyslogError> {
        let connector = transport::Connector::new(&config)?;
        let (tx, rx) = channel();
        let counters = Arc::new(Counters::new(config.target.to_string()));
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let sender = sender::Sender::new(connector, &config, rx, stop_rx, counters.clone());
        let thread = std::thread::Builder::new()
            .name("syslog".into())
            .spawn(move || sender.run())
            .map_err(SyslogError::Thread)?;
        Ok(Self {
            handle: Handle {
                tx,
                counters,
                limit: config.queue as u64,
            },
            sender: Some((thread, stop_tx)),
            close_timeout: config.close_timeout,
            target: config.target,
        })
    }

    /// A handle for another stage (alerts).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Sends what is queued (for at most the configured close timeout) and stops the sender;
    /// what is left is counted as `unsent_at_exit` and logged.
    pub fn close(&mut self) {
        let Some((thread, stop)) = self.sender.take() else {
            return;
        };
        // A send fails only if the thread is gone already; joining says how it ended.
        let deadline = Instant::now() + self.close_timeout;
        let _ = stop.send(deadline);
        // The sender looks at the deadline between writes; a server that reads a little now
        // and then keeps one write going. The stop waits a second past the deadline at most,
        // then leaves the thread to the process's exit with what it still held counted.
        let limit = deadline + std::time::Duration::from_secs(1);
        while !thread.is_finished() && Instant::now() < limit {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if !thread.is_finished() {
            self.handle.counters.abandon();
            tracing::warn!(
                server = %self.target,
                "syslog: the server was still taking a write at the stop's deadline; leaving it"
            );
        } else if thread.join().is_err() {
            tracing::error!(server = %self.target, "the syslog sender thread panicked");
        }
        let left = self.handle.counters.snapshot().unsent_at_exit;
        if left > 0 {
            tracing::warn!(
                unsent = left,
                server = %self.target,
                "syslog: messages still queued at the stop were not sent"
            );
        }
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.close();
    }
}

/// This host's name (`gethostname`), or empty when it has none.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
