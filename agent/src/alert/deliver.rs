//! Where alert notices go. Each destination is a [`Delivery`] the alert thread calls in
//! turn: the agent's log ([`LogDelivery`]), `alerts.jsonl` in the store's hash chain
//! ([`ChainDelivery`]), the webhook ([`super::webhook::Webhook`]); a syslog sink plugs in
//! the same way. A destination that can be slow has its own thread and bounded queue, so one
//! never holds up the others.

use std::collections::VecDeque;
use std::path::PathBuf;

use super::{Alert, AlertState, DeliveryStats, Severity};
use crate::store::oplog::{self, Log, OpBody, OpEntry, Who};

/// A destination of alert notices.
pub trait Delivery: Send {
    /// Hands one notice over. It must not block for long: a destination that waits on the
    /// network queues the notice for a thread of its own.
    fn deliver(&mut self, alert: &Alert);
    /// Retries what failed; the alert thread calls it about once a second.
    fn tick(&mut self) {}
    /// Delivers what it still can before the agent exits (bounded in time).
    fn close(&mut self) {}
    /// Its counters.
    fn stats(&self) -> DeliveryStats;
}

/// The agent's log: `tracing` at a level by severity.
#[derive(Default)]
pub struct LogDelivery {
    delivered: u64,
}

impl Delivery for LogDelivery {
    fn deliver(&mut self, a: &Alert) {
        let state = match a.state {
            AlertState::Raised => "raised",
            AlertState::Resolved => "resolved",
        };
        let (id, count) = (a.id.as_str(), a.count);
        match (a.severity, a.state) {
            (_, AlertState::Resolved) | (Severity::Info, _) => {
                tracing::info!(alert = id, state, count, "{}", a.text)
            }
            (Severity::Warning, _) => tracing::warn!(alert = id, state, count, "{}", a.text),
            (Severity::Critical, _) => tracing::error!(alert = id, state, count, "{}", a.text),
        }
        self.delivered += 1;
    }

    fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            name: "log".into(),
            delivered: self.delivered,
            ..DeliveryStats::default()
        }
    }
}

/// Notices kept while `alerts.jsonl` cannot be written (a full disk): the oldest go first.
pub const CHAIN_PENDING: usize = 1024;

/// `alerts.jsonl` in the store directory: one hash-chained line per notice (the operator
/// log's chain, `store::oplog`), anchored into the manifest by the sealer, so `verify`
/// notices a line removed. A failed append (a full disk) is kept and retried in order.
pub struct ChainDelivery {
    dir: PathBuf,
    who: Who,
    pending: VecDeque<OpEntry>,
    stats: DeliveryStats,
    /// Whether the last attempt failed (reported once until it succeeds again).
    failing: bool,
}

impl ChainDelivery {
    /// Appends to the alert log of the store in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            who: Who::current(),
            pending: VecDeque::new(),
            stats: DeliveryStats {
                name: "chain".into(),
                ..DeliveryStats::default()
            },
            failing: false,
        }
    }

    fn flush(&mut self) {
        while let Some(entry) = self.pending.front() {
            match oplog::append_to(&self.dir, Log::Alerts, entry.clone()) {
                Ok(_) => {
                    self.pending.pop_front();
                    self.stats.delivered += 1;
                    self.failing = false;
                }
                Err(e) => {
                    self.stats.failed += 1;
                    if !self.failing {
                        tracing::error!(error = %e, waiting = self.pending.len(), "cannot append to the alert log; keeping the notices and retrying every second");
                    }
                    self.failing = true;
                    break;
                }
            }
        }
        self.stats.pending = self.pending.len() as u64;
    }
}

impl Delivery for ChainDelivery {
    fn deliver(&mut self, a: &Alert) {
        if self.pending.len() == CHAIN_PENDING {
            self.pending.pop_front();
            self.stats.dropped += 1;
        }
        self.pending.push_back(OpEntry {
            at_ns: jiff::Timestamp::now().as_nanosecond() as i64,
            who: self.who.clone(),
            body: OpBody::Alert(a.clone()),
        });
        self.flush();
    }

    fn tick(&mut self) {
        if !self.pending.is_empty() {
            self.flush();
        }
    }

    fn close(&mut self) {
        self.flush();
    }

    fn stats(&self) -> DeliveryStats {
        self.stats.clone()
    }
}
