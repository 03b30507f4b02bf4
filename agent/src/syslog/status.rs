//! The syslog sink's counters: atomics shared by the records thread, other senders and the
//! sender thread, read into a [`SyslogStatus`] for `status`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What `status` shows of the syslog sink (`status.json`'s `syslog` block).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyslogStatus {
    /// The server, as configured (`tcp://HOST:PORT`, `tls://HOST:PORT`).
    pub server: String,
    /// Whether a connection is up now.
    pub connected: bool,
    /// Messages written to a connection (a message written again after a reconnect counts
    /// once here and once in `resent`).
    pub sent: u64,
    /// Messages waiting in the queue now.
    pub queued: u64,
    /// Messages refused by a full queue: lost.
    pub dropped: u64,
    /// Messages written again after a reconnect (the failed batch and the replay window):
    /// the server may hold them twice.
    pub resent: u64,
    /// Connections made after the first.
    pub reconnects: u64,
    /// Connection attempts that failed (refused, timed out, TLS handshake refused).
    pub connect_failures: u64,
    /// Messages still queued when the agent stopped and the server did not take in time.
    pub unsent_at_exit: u64,
    /// The last connection or write error, with the server it concerns.
    pub last_error: Option<String>,
}

impl SyslogStatus {
    /// One line for `xdp-audit status`.
    pub fn summary(&self) -> String {
        format!(
            "syslog {}: {}; {} messages sent, {} queued, {} dropped on a full queue, {} resent after {} reconnects, {} failed connection attempts{}",
            self.server,
            if self.connected { "connected" } else { "NOT CONNECTED" },
            self.sent,
            self.queued,
            self.dropped,
            self.resent,
            self.reconnects,
            self.connect_failures,
            self.last_error
                .as_ref()
                .map_or(String::new(), |e| format!("; last error: {e}"))
        )
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub(super) struct Counters {
    server: String,
    connected: AtomicBool,
    sent: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
    resent: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    unsent_at_exit: AtomicU64,
    /// Messages of the batch being delivered now (0 between batches).
    writing: AtomicU64,
    /// The stop left the sender, counting what it held: the sender counts nothing more.
    abandoned: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    /// Counters for `server`.
    pub(super) fn new(server: String) -> Self {
        Self {
            server,
            ..Self::default()
        }
    }

    /// `n` messages are about to enter the queue; returns the count queued with them.
    pub(super) fn queue_in(&self, n: u64) -> u64 {
        self.queued.fetch_add(n, Relaxed) + n
    }

    /// The queue refused the `n` messages counted by [`Counters::queue_in`].
    pub(super) fn queue_refused(&self, n: u64) {
        self.queued.fetch_sub(n, Relaxed);
        self.dropped.fetch_add(n, Relaxed);
    }

    /// The sender took `n` messages from the queue.
    pub(super) fn queue_out(&self, n: u64) {
        self.queued.fetch_sub(n, Relaxed);
    }

    /// `n` messages were written, `resent` of them again.
    pub(super) fn written(&self, n: u64, resent: u64) {
        self.sent.fetch_add(n, Relaxed);
        self.resent.fetch_add(resent, Relaxed);
    }

    /// A connection is up (`again`: not the first).
    pub(super) fn connected(&self, again: bool) {
        self.connected.store(true, Relaxed);
        if again {
            self.reconnects.fetch_add(1, Relaxed);
        }
    }

    /// The connection broke or could not be made (`attempt`: a connection attempt failed).
    pub(super) fn failed(&self, error: String, attempt: bool) {
        self.connected.store(false, Relaxed);
        if attempt {
            self.connect_failures.fetch_add(1, Relaxed);
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// `n` messages were left in the queue at the stop.
    pub(super) fn unsent(&self, n: u64) {
        self.unsent_at_exit.fetch_add(n, Relaxed);
    }

    /// A batch of `n` messages is being delivered (0: it ended).
    pub(super) fn writing(&self, n: u64) {
        self.writing.store(n, Relaxed);
    }

    /// Messages the sender holds at a stop it did not end in time: queued, and the batch it
    /// was writing.
    pub(super) fn held(&self) -> u64 {
        self.queued.load(Relaxed) + self.writing.load(Relaxed)
    }

    /// The stop leaves the sender: what it holds is counted unsent, once.
    pub(super) fn abandon(&self) {
        if !self.abandoned.swap(true, Relaxed) {
            self.unsent(self.held());
        }
    }

    /// Whether the stop left the sender.
    pub(super) fn abandoned(&self) -> bool {
        self.abandoned.load(Relaxed)
    }

    /// The counters now.
    pub(super) fn snapshot(&self) -> SyslogStatus {
        SyslogStatus {
            server: self.server.clone(),
            connected: self.connected.load(Relaxed),
            sent: self.sent.load(Relaxed),
            queued: self.queued.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            resent: self.resent.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            connect_failures: self.connect_failures.load(Relaxed),
            unsent_at_exit: self.unsent_at_exit.load(Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
