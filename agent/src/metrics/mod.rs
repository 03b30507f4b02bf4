//! Prometheus metrics (`run --metrics [ADDR]`): the figures `status.json` is built from,
//! published by the records thread after each sweep ([`Latest`]) and rendered on request by
//! a small HTTP server on the agent's runtime ([`http`]) in the text exposition format
//! ([`encode`]), one function per part of the snapshot ([`render`]). Durations (journal
//! fsync, seal, compaction) are recorded into [`histogram::Histogram`]s where they are spent.
//!
//! Off by default; on loopback unless `--metrics-public` is given: the figures name list
//! files and rules and show traffic volumes.

pub mod encode;
pub mod histogram;
pub mod http;
pub mod render;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::status::Snapshot;

/// Where `--metrics` without an address listens.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9477";

/// Rules with a series of their own unless `--metrics-top-rules` says otherwise.
pub const DEFAULT_TOP_RULES: usize = 20;

/// The `run` flags of the metrics endpoint.
#[derive(clap::Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (off unless given; `--metrics` alone
    /// listens on 127.0.0.1:9477). Only a loopback address unless --metrics-public.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_ADDR)]
    pub metrics: Option<SocketAddr>,
    /// Allow --metrics on an address other hosts can reach (the metrics name list files and
    /// rules and show traffic volumes; put a firewall or an authenticating proxy in front).
    #[arg(long)]
    pub metrics_public: bool,
    /// Rules with a series of their own in xdp_audit_rule_hits_total (those with the most
    /// hits); the rest are summed per kind in xdp_audit_rule_hits_other, so the series stay
    /// bounded however many rules are loaded.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TOP_RULES)]
    pub metrics_top_rules: usize,
}

impl MetricsArgs {
    /// The address to listen on, if any, refusing a non-loopback one without
    /// `--metrics-public`.
    pub fn addr(&self) -> Result<Option<SocketAddr>, String> {
        match self.metrics {
            Some(a) if !a.ip().is_loopback() && !self.metrics_public => Err(format!(
                "--metrics {a}: other hosts could read the metrics (list files, rules, traffic \
                 volumes); use a loopback address such as {DEFAULT_ADDR}, or add \
                 --metrics-public to serve them on {a} on purpose"
            )),
            a => Ok(a),
        }
    }
}

/// One address family's flow table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFill {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// Flows in it at the last sweep.
    pub entries: u64,
    /// Its size.
    pub capacity: u64,
}

/// The ring buffer's fill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingFillStats {
    /// Bytes written and not yet given back (read and settled) when the status was written.
    pub used_bytes: u64,
    /// Its size.
    pub size_bytes: u64,
}

/// One list file's reloads since the agent started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReload {
    /// The file.
    pub path: String,
    /// Reloads applied.
    pub applied: u64,
    /// Reloads rejected (a bad line, unreadable, too big): the last good version stayed.
    pub rejected: u64,
    /// Whether the last one was applied.
    pub last_ok: bool,
    /// When the last one ran (Unix seconds).
    pub last_at_s: i64,
    /// The last one's first problem in the file (`FILE:LINE: reason`), if it was rejected for
    /// one (not for the kernel's refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What `status.json` carries for the metrics besides the other parts: the kernel tables'
/// fill and the list reloads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Per address family.
    pub flow_tables: Vec<TableFill>,
    /// The ring buffer.
    pub ring: RingFillStats,
    /// Per list file reloaded since the start.
    pub list_reloads: Vec<ListReload>,
    /// This snapshot could not be written to the state directory (set after the write
    /// failed, for the alert thread; never in a file).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub state_unwritable: bool,
}

/// The latest snapshot, swapped in by the records thread after each sweep; a scrape takes a
/// reference to it. The lock is held for a pointer swap or clone only.
#[derive(Debug, Default)]
pub struct Latest(Mutex<Option<Arc<Snapshot>>>);

impl Latest {
    /// Publishes `s`.
    pub fn publish(&self, s: Snapshot) {
        let s = Some(Arc::new(s));
        match self.0.lock() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }

    /// The latest snapshot, if one was published.
    pub fn get(&self) -> Option<Arc<Snapshot>> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// What a scrape renders: the latest snapshot and the facts that never change.
#[derive(Debug)]
pub struct Exporter {
    /// Published by the records thread.
    pub latest: Arc<Latest>,
    /// Attach modes, the top-N bound.
    pub fixed: render::Static,
    /// Connections closed unanswered because [`http::MAX_CONNECTIONS`] were being served
    /// (or [`http::MAX_PER_PEER`] from their address).
    pub refused: AtomicU64,
}

impl Exporter {
    /// An exporter of what the records thread publishes to `latest`.
    pub fn new(latest: Arc<Latest>, fixed: render::Static) -> Self {
        Self {
            latest,
            fixed,
            refused: AtomicU64::new(0),
        }
    }

    /// The exposition now.
    pub fn render(&self) -> String {
        let refused = self.refused.load(Ordering::Relaxed);
        render::render(&self.fixed, self.latest.get().as_deref(), refused)
    }
}
