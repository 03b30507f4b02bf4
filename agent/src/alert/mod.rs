//! Alerts: what an operator must hear about within minutes, each with a severity, a stable id
//! ([`AlertId`], the README's table) and a short human text.
//!
//! ```text
//!  records ─► AlertStage (blocked records: try_send) ─┐
//!  records thread: status snapshot each sweep ────────┼─► alert thread: Engine ─► deliveries
//!  list thread: a file rejected; store: leftover ─────┤   (dedup, windows)       log, alerts.jsonl,
//!  verify thread: the chain, every interval ──────────┘                          webhook, (syslog)
//! ```
//!
//! Inputs reach the alert thread through one bounded queue ([`Handle`]); a full queue drops
//! the input and counts it, so no sender ever waits. The [`engine::Engine`] deduplicates: a
//! condition that holds again while its alert is active adds to the alert's count; the alert
//! is resolved once the condition has not held for the quiet window. Raising and resolving
//! are the two notices delivered ([`deliver::Delivery`]).

pub mod config;
pub mod deliver;
pub mod engine;
pub mod handover;
pub mod stage;
pub mod syslog;
pub mod thread;
mod verify;
pub mod webhook;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use config::AlertConfig;
pub use thread::{Alerts, Handle};

/// How bad an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing (a blocked client).
    Info,
    /// Auditing or blocking is at risk (losses, a rejected list, a restart after a crash).
    Warning,
    /// Records are being lost or the evidence is damaged.
    Critical,
}

impl Severity {
    /// The lower-case name (`info`, `warning`, `critical`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The stable ids of the alerts (never renamed: receivers route on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlertId {
    /// The first blocked hit of a (client or user, rule) in a window.
    #[serde(rename = "XA-BLOCK-FIRST")]
    BlockFirst,
    /// A burst of blocked hits from one client.
    #[serde(rename = "XA-BLOCK-BURST")]
    BlockBurst,
    /// The ring buffer was full: flow events or payload copies lost.
    #[serde(rename = "XA-RING-LOSS")]
    RingLoss,
    /// Flows whose start the agent never saw (lost start events, failed flow inserts).
    #[serde(rename = "XA-FLOW-START-LOSS")]
    FlowStartLoss,
    /// The flow table is fuller than the threshold (LRU evictions follow).
    #[serde(rename = "XA-FLOW-TABLE-FULL")]
    FlowTableFull,
    /// The store's disk refuses writes; records are held in memory, or journals wait to be
    /// sealed.
    #[serde(rename = "XA-STORE-DEGRADED")]
    StoreDegraded,
    /// The store refused or dropped records.
    #[serde(rename = "XA-STORE-REFUSED")]
    StoreRefused,
    /// Damage in the store: journal stretches skipped, journals that cannot be sealed, a
    /// manifest that cannot be read.
    #[serde(rename = "XA-STORE-DAMAGED")]
    StoreDamaged,
    /// A list file was rejected; its last good version stays in force.
    #[serde(rename = "XA-LIST-REJECTED")]
    ListRejected,
    /// A list change failed part way in the kernel: the maps may hold part of it, and later
    /// changes are not applied until the agent restarts.
    #[serde(rename = "XA-LIST-STALE")]
    ListStale,
    /// The store's hash chain does not verify.
    #[serde(rename = "XA-CHAIN-BROKEN")]
    ChainBroken,
    /// The store's verification could not read a file (no permission, an I/O error):
    /// nothing is proved either way, and it is not taken for a broken chain.
    #[serde(rename = "XA-STORE-UNREADABLE")]
    StoreUnreadable,
    /// The kernel clock is not synchronised (adjtimex `STA_UNSYNC`).
    #[serde(rename = "XA-CLOCK-UNSYNC")]
    ClockUnsync,
    /// The agent started after one that did not stop cleanly (its journal was left open).
    #[serde(rename = "XA-AGENT-CRASHED")]
    AgentCrashed,
    /// Shipping segments to object storage fails; they wait on the gateway.
    #[serde(rename = "XA-SHIP-FAILING")]
    ShipFailing,
    /// The syslog stage dropped messages (its queue was full while the server was away).
    #[serde(rename = "XA-SYSLOG-LOSS")]
    SyslogLoss,
    /// A configured interface is not audited: deleted, absent at the start, or held by
    /// another XDP program.
    #[serde(rename = "XA-IFACE-UNAUDITED")]
    IfaceUnaudited,
    /// Frames with more than two VLAN tags were dropped: nothing behind the third is read,
    /// while a host strips VLAN 0 tags and delivers what follows (a way around the lists and
    /// the audit, had they been passed).
    #[serde(rename = "XA-VLAN-STACK")]
    VlanStack,
}

impl AlertId {
    /// Every id, in the README's order.
    pub const ALL: [AlertId; 18] = [
        AlertId::BlockFirst,
        AlertId::BlockBurst,
        AlertId::RingLoss,
        AlertId::FlowStartLoss,
        AlertId::FlowTableFull,
        AlertId::StoreDegraded,
        AlertId::StoreRefused,
        AlertId::StoreDamaged,
        AlertId::ListRejected,
        AlertId::ListStale,
        AlertId::ChainBroken,
        AlertId::StoreUnreadable,
        AlertId::ClockUnsync,
        AlertId::AgentCrashed,
        AlertId::ShipFailing,
        AlertId::SyslogLoss,
        AlertId::IfaceUnaudited,
        AlertId::VlanStack,
    ];

    /// The id as written (`XA-...`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertId::BlockFirst => "XA-BLOCK-FIRST",
            AlertId::BlockBurst => "XA-BLOCK-BURST",
            AlertId::RingLoss => "XA-RING-LOSS",
            AlertId::FlowStartLoss => "XA-FLOW-START-LOSS",
            AlertId::FlowTableFull => "XA-FLOW-TABLE-FULL",
            AlertId::StoreDegraded => "XA-STORE-DEGRADED",
            AlertId::StoreRefused => "XA-STORE-REFUSED",
            AlertId::StoreDamaged => "XA-STORE-DAMAGED",
            AlertId::ListRejected => "XA-LIST-REJECTED",
            AlertId::ListStale => "XA-LIST-STALE",
            AlertId::ChainBroken => "XA-CHAIN-BROKEN",
            AlertId::StoreUnreadable => "XA-STORE-UNREADABLE",
            AlertId::ClockUnsync => "XA-CLOCK-UNSYNC",
            AlertId::AgentCrashed => "XA-AGENT-CRASHED",
            AlertId::ShipFailing => "XA-SHIP-FAILING",
            AlertId::SyslogLoss => "XA-SYSLOG-LOSS",
            AlertId::IfaceUnaudited => "XA-IFACE-UNAUDITED",
            AlertId::VlanStack => "XA-VLAN-STACK",
        }
    }

    /// Whether it is about one subject of the traffic (a client, a user), of which a flood
    /// brings any number: only these count against `--alert-max-active`. The others are a
    /// bounded set (one per id, one per list or store file) and always get in.
    pub const fn is_traffic(self) -> bool {
        matches!(self, AlertId::BlockFirst | AlertId::BlockBurst)
    }

    /// Its severity.
    pub const fn severity(self) -> Severity {
        match self {
            AlertId::BlockFirst => Severity::Info,
            AlertId::BlockBurst
            | AlertId::FlowTableFull
            | AlertId::ListRejected
            | AlertId::StoreUnreadable
            | AlertId::ClockUnsync
            | AlertId::AgentCrashed
            | AlertId::ShipFailing
            | AlertId::SyslogLoss
            | AlertId::VlanStack => Severity::Warning,
            AlertId::RingLoss
            | AlertId::FlowStartLoss
            | AlertId::StoreDegraded
            | AlertId::StoreRefused
            | AlertId::StoreDamaged
            | AlertId::ListStale
            | AlertId::ChainBroken
            | AlertId::IfaceUnaudited => Severity::Critical,
        }
    }
}

/// What an alert is about; absent fields are not part of it. Two conditions with the same
/// id and subject are one alert.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subject {
    /// The client (the flow's originator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    /// The subscriber account behind the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The list rule (`FILE:LINE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// A file (a list file, a store file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A network interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// Whether a notice opens or closes an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition was seen; the alert is active.
    Raised,
    /// The condition has not held for the quiet window; `count` is final.
    Resolved,
}

impl AlertState {
    /// The lower-case name (`raised`, `resolved`), as serialised.
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertState::Raised => "raised",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert notice: what every delivery sends and `alerts.jsonl` keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The stable id.
    pub id: AlertId,
    /// Its severity.
    pub severity: Severity,
    /// Raised or resolved.
    pub state: AlertState,
    /// A short human text.
    pub text: String,
    /// What it is about.
    pub subject: Subject,
    /// When the condition was first seen, Unix ns.
    pub first_ns: i64,
    /// When it was last seen, Unix ns.
    pub last_ns: i64,
    /// How often it was seen (blocked records, lost events, ...) between the two.
    pub count: u64,
}

/// A blocked record, as the [`stage::AlertStage`] hands it over, its texts borrowed from the
/// batch: counting a hit of an active alert allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The flow's originator.
    pub client: IpAddr,
    /// The subscriber account, if the enrich stage found one.
    pub user: Option<&'a str>,
    /// The rule that dropped it (`FILE:LINE`), if known.
    pub rule: Option<&'a str>,
}

/// What stays enforced of a list file that was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKept {
    /// Its last good version: loaded earlier, or the copy the last agent kept.
    LastGood,
    /// The tables of its kind as the running program held them (an adopted program's), until
    /// every file of the kind loads: no version of this file was read.
    Held,
    /// Nothing: a start that found no version of it; its rules are not enforced until it
    /// loads.
    Nothing,
}

/// An explicit event from a stage that is not the record path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A list file was not applied.
    ListRejected {
        /// The file.
        file: String,
        /// The first problem, as `FILE:LINE: reason`.
        reason: String,
        /// What of its rules is in force all the same.
        kept: ListKept,
    },
    /// A list change failed part way in the kernel, or was refused after such a failure.
    ListStale {
        /// What failed, and what to do.
        reason: String,
    },
    /// `verify` of the store failed.
    ChainBroken {
        /// The file at fault.
        file: String,
        /// Why.
        reason: String,
    },
    /// The signing key signs on top of a chain whose head named no key and carried no
    /// signature (a store first given a key, or a head stripped of both).
    SigningBegan {
        /// The manifest.
        file: String,
        /// The unsigned chain's last entry.
        entry: u64,
    },
    /// `verify` of the store could not read a file.
    StoreUnreadable {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The agent before this one stopped or died holding records it could not write (the
    /// disk refused them) that nothing else keeps, or that its pins kept and this start
    /// could not take over.
    LostAtStop {
        /// The records.
        records: u64,
    },
    /// The live journal the agent before this one left is neither on disk nor sealed in
    /// the chain: deleted while no agent ran.
    JournalGone {
        /// Its file name.
        file: String,
        /// The records the last agent made durable in it.
        records: u64,
    },
    /// The live journal the agent before this one left holds fewer records than it made
    /// durable there: cut short (at a frame's end, or damaged at its end) while no agent ran.
    JournalShort {
        /// Its file name.
        file: String,
        /// The records the last agent made durable in it.
        durable: u64,
        /// The records it holds now.
        held: u64,
    },
    /// The agent before this one did not stop cleanly.
    Crashed {
        /// What shows it (a status snapshot never marked stopped, journals left unsealed).
        evidence: String,
    },
}

/// A delivery's counters, for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStats {
    /// The delivery's name (`log`, `chain`, `webhook`, ...).
    pub name: String,
    /// Notices delivered.
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed: u64,
    /// Notices given up (queue full, retries spent).
    pub dropped: u64,
    /// Notices waiting.
    pub pending: u64,
}

/// The alert summary of `status.json` (the `alerts` object).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertStatus {
    /// Alerts active now: the system alerts, then the traffic ones, each most severe first (at
    /// most [`thread::STATUS_ACTIVE`]).
    pub active: Vec<Alert>,
    /// Alerts active now, all of them.
    #[serde(default)]
    pub active_total: u64,
    /// In the last status of a clean stop only: the active alerts past those listed, for the
    /// next agent to carry with them (a flood's thousands of `XA-BLOCK-FIRST` were resolved at
    /// each stop and raised again by the next agent). A crash carries the listed ones only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carry: Vec<Alert>,
    /// The last notices, newest first (at most [`engine::RECENT`]).
    pub recent: Vec<Alert>,
    /// Alerts raised since start.
    pub raised: u64,
    /// Alerts resolved since start.
    pub resolved: u64,
    /// Inputs dropped because the alert queue was full.
    pub queue_full: u64,
    /// Traffic conditions not tracked because `--alert-max-active` traffic alerts were
    /// active (system alerts are never suppressed).
    pub suppressed: u64,
    /// Per delivery.
    pub deliveries: Vec<DeliveryStats>,
}

impl AlertStatus {
    /// The lines `status` prints. An alert's text quotes accounts, rules and files: its
    /// invisible characters are shown as escapes ([`crate::invisible::printable`]) on the
    /// operator's terminal; the deliveries and `alerts.jsonl` carry it exact.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "alerts: {} active, {} raised and {} resolved since start",
            self.active_total, self.raised, self.resolved
        );
        if self.queue_full + self.suppressed > 0 {
            out.push_str(&format!(
                "; {} inputs lost to a full queue, {} conditions over the active limit",
                self.queue_full, self.suppressed
            ));
        }
        for d in &self.deliveries {
            out.push_str(&format!(
                "\n  delivery {:<8} {} delivered, {} failed attempts, {} dropped, {} pending",
                d.name, d.delivered, d.failed, d.dropped, d.pending
            ));
        }
        let line = |a: &Alert| {
            format!(
                "\n  {:<8} {:<19} {:<8} x{:<6} {} {}",
                a.severity.as_str(),
                a.id.as_str(),
                a.state.as_str(),
                a.count,
                crate::record::rfc3339_ns(a.last_ns),
                crate::invisible::printable(&a.text)
            )
        };
        if !self.active.is_empty() {
            out.push_str("\nactive alerts:");
            for a in &self.active {
                out.push_str(&line(a));
            }
        }
        if !self.recent.is_empty() {
            out.push_str(&format!("\nlast {} alert notices:", self.recent.len()));
            for a in &self.recent {
                out.push_str(&line(a));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `status` prints each alert's text with its invisible characters as escapes: an
    /// account or a rule quoted in it cannot turn the line around, hide text or drive the
    /// terminal.
    #[test]
    fn status_shows_an_alerts_invisible_characters_escaped() {
        let alert = Alert {
            id: AlertId::BlockFirst,
            severity: Severity::Info,
            state: AlertState::Raised,
            text: "client 10.0.0.2 (admin\u{202e}gpj.exe) blocked by a\u{200b}b\u{1b}[2J".into(),
            subject: Subject::default(),
            first_ns: 0,
            last_ns: 0,
            count: 1,
        };
        let status = AlertStatus {
            active: vec![alert.clone()],
            recent: vec![alert],
            ..AlertStatus::default()
        };
        let text = status.summary();
        assert!(
            !text.contains(['\u{202e}', '\u{200b}', '\u{1b}']),
            "{text:?}"
        );
        assert_eq!(
            text.matches("(admin\\u{202e}gpj.exe) blocked by a\\u{200b}b\\u{1b}[2J")
                .count(),
            2,
            "{text}"
        );
    }
}
