//! The metrics, one function per part of the status snapshot (`status::Snapshot`), so a new
//! part of the snapshot gets a function of its own beside these. Names follow the Prometheus
//! conventions: `_total` for counters, base units (`_seconds`, `_bytes`), `_info` for facts
//! carried as labels with the value 1. The README's "Metrics" table lists every family; a
//! test keeps the two in step.

use std::collections::BTreeMap;

use agent_common::Counter;

use super::encode::{Encoder, Kind};
use super::Observed;
use crate::clock::ClockStats;
use crate::daemon::queue::PipelineStats;
use crate::status::{ListHits, RuleHits, Snapshot};
use crate::store::StoreStatus;
use crate::sweeper::SweepStats;

mod enrich;
mod flood;
pub use enrich::enrich;
pub use flood::flood;

/// Facts about the running agent that no sweep changes.
#[derive(Clone, Debug, Default)]
pub struct Static {
    /// `(interface, attach mode)`: `native` or `skb`, as attached (or adopted).
    pub attach: Vec<(String, String)>,
    /// Rules with their own series in `rule_hits_total`; the rest are summed per kind in
    /// `rule_hits_other`.
    pub top_rules: usize,
}

/// The whole exposition: what never changes, the endpoint's own refusals, then the latest
/// snapshot if the records stage wrote one yet.
pub fn render(fixed: &Static, snap: Option<&Snapshot>, refused: u64) -> String {
    let mut e = Encoder::new();
    build(&mut e);
    attach(&mut e, &fixed.attach);
    e.counter(
        "metrics_connections_refused_total",
        "Connections to this endpoint closed unanswered: too many were being served at once (in all, or from one address).",
        refused,
    );
    if let Some(s) = snap {
        snapshot(&mut e, s, fixed.top_rules);
    }
    e.finish()
}

/// Every part of a snapshot.
pub fn snapshot(e: &mut Encoder, s: &Snapshot, top_rules: usize) {
    header(e, s);
    counters(e, &s.counters);
    lists(e, &s.lists);
    rules(e, &s.rules, top_rules);
    flood(e, &s.flood, top_rules);
    flows(e, &s.flows);
    store(e, &s.store);
    pipeline(e, &s.pipeline);
    clock(e, &s.clock);
    if let Some(en) = &s.enrich {
        enrich(e, en);
    }
    observed(e, &s.observe);
    if let Some(sh) = &s.ship {
        ship(e, sh);
    }
    if let Some(a) = &s.alerts {
        alerts(e, a);
    }
    if let Some(l) = &s.syslog {
        syslog(e, l);
    }
}

/// `build_info`: the agent's version.
pub fn build(e: &mut Encoder) {
    e.family(
        "build_info",
        Kind::Gauge,
        "The agent's build: version, with the value 1.",
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1u64);
}

/// `interface_attach_info`: one series per audited interface.
pub fn attach(e: &mut Encoder, attach: &[(String, String)]) {
    let mut f = e.family(
        "interface_attach_info",
        Kind::Gauge,
        "An audited interface and its XDP attach mode (native or skb), with the value 1.",
    );
    for (iface, mode) in attach {
        f.sample(&[("interface", iface), ("mode", mode)], 1u64);
    }
}

/// When the snapshot was taken and the list generation in force.
pub fn header(e: &mut Encoder, s: &Snapshot) {
    e.gauge(
        "interfaces_unaudited",
        "Configured interfaces the agent does not audit now (deleted, absent at its start, or held by another XDP program); status names them.",
        s.unaudited.len() as u64,
    );
    let at = s
        .written_at
        .parse::<jiff::Timestamp>()
        .map_or(0.0, |t| t.as_millisecond() as f64 / 1e3);
    e.gauge(
        "status_timestamp_seconds",
        "When the records stage gathered these figures (Unix time); they are refreshed every sweep.",
        at,
    );
    e.gauge(
        "list_generation",
        "The list generation the kernel maps hold (bumped by every applied reload).",
        s.generation,
    );
}

/// The program's per-CPU counters, summed: packet outcomes, drops, ring-buffer losses.
pub fn counters(e: &mut Encoder, c: &BTreeMap<String, u64>) {
    let get = |k: Counter| c.get(k.name()).copied().unwrap_or(0);
    let mut f = e.family(
        "packets_total",
        Kind::Counter,
        "Packets seen by the XDP program, by outcome (exactly one per packet: parsed_*, fragment_*, skip_*).",
    );
    for k in Counter::ALL.iter().filter(|k| k.is_outcome()) {
        f.sample(&[("outcome", k.name())], get(*k));
    }
    e.family(
        "packets_dropped_total",
        Kind::Counter,
        "Packets dropped by the lists: reason list (address, prefix, port rules) or domain (DNS query names).",
    )
    .sample(&[("reason", "list")], get(Counter::DroppedByList))
    .sample(&[("reason", "domain")], get(Counter::DroppedByDomain));
    e.family(
        "packets_refused_total",
        Kind::Counter,
        "Dropped packets answered from XDP (--refuse): reason dns (NXDOMAIN) or tcp (RST); also in packets_dropped_total.",
    )
    .sample(&[("reason", "dns")], get(Counter::RefusedDns))
    .sample(&[("reason", "tcp")], get(Counter::RefusedTcp));
    e.family(
        "packets_summarised_total",
        Kind::Counter,
        "Blocked packets dropped past the drop-record budget without a flow (also in packets_dropped_total): summary summed into a summarised record per rule, or untracked (the summary table was full).",
    )
    .sample(&[("summary", "rule")], get(Counter::DroppedSummarised))
    .sample(&[("summary", "untracked")], get(Counter::FloodUntracked));
    e.family(
        "ring_events_lost_total",
        Kind::Counter,
        "Events the program could not reserve in the ring buffer, by event (the sweeper still records the flows).",
    )
    .sample(&[("event", "flow_start")], get(Counter::LostFlowStart))
    .sample(&[("event", "flow_end")], get(Counter::LostFlowEnd))
    .sample(&[("event", "flow_drop")], get(Counter::LostFlowDrop))
    .sample(&[("event", "payload")], get(Counter::LostPayload));
    e.counter(
        "flow_insert_failures_total",
        "New flows the flow table refused.",
        get(Counter::FlowInsertFailed),
    );
    e.counter(
        "dns_names_unparsed_total",
        "DNS queries whose name the program could not walk (passed unchecked).",
        get(Counter::DnsNameUnparsed),
    );
    e.counter(
        "payloads_copied_total",
        "Payload snippets the program copied to the ring buffer.",
        get(Counter::PayloadCopied),
    );
}

/// Hits per list file.
pub fn lists(e: &mut Encoder, lists: &[ListHits]) {
    let mut f = e.family(
        "list_hits_total",
        Kind::Counter,
        "Packets matched by a list file's rules (block: dropped; allow: let through).",
    );
    for l in lists {
        f.sample(&[("file", &l.path), ("kind", &l.kind)], l.hits);
    }
    let mut f = e.family(
        "list_rules_hit",
        Kind::Gauge,
        "Rules of a list file that matched at least once.",
    );
    for l in lists {
        f.sample(&[("file", &l.path), ("kind", &l.kind)], l.rules_hit);
    }
}

/// The `top` rules with the most hits (`rules` comes sorted, most first), each with its own
/// series, and the rest summed per kind in a gauge: at most `top + 2` series however many
/// rules are loaded. The rest is no counter: it falls when one of its rules climbs into the
/// top, which a counter's reader would take for a reset (and `rate()` for a burst).
pub fn rules(e: &mut Encoder, rules: &[RuleHits], top: usize) {
    let mut f = e.family(
        "rule_hits_total",
        Kind::Counter,
        "Packets matched by a rule (FILE:LINE), for the rules with the most hits (the others in rule_hits_other).",
    );
    let (shown, rest) = rules.split_at(top.min(rules.len()));
    for r in shown {
        f.sample(&[("rule", &r.rule), ("kind", &r.kind)], r.hits);
    }
    let mut other: BTreeMap<&str, u64> = BTreeMap::new();
    for r in rest {
        *other.entry(r.kind.as_str()).or_default() += r.hits;
    }
    let mut f = e.family(
        "rule_hits_other",
        Kind::Gauge,
        "Packets matched by the rules outside rule_hits_total's top, per kind (a gauge: it falls when a rule climbs into the top).",
    );
    for kind in ["allow", "block"] {
        let n = other.get(kind).copied().unwrap_or(0);
        f.sample(&[("kind", kind)], n);
    }
}

/// The sweeper: records written and what it had to reconstruct.
pub fn flows(e: &mut Encoder, f: &SweepStats) {
    e.counter(
        "flow_records_total",
        "Flow records the sweeper wrote.",
        f.records,
    );
    e.counter("flow_starts_total", "Flow-start events received.", f.starts);
    e.counter(
        "flow_starts_lost_total",
        "Flows whose start event never arrived (recorded from the flow table).",
        f.lost_starts,
    );
    e.counter(
        "flows_evicted_total",
        "Flows that left the flow table before they ended (LRU eviction).",
        f.evicted,
    );
    e.counter(
        "flows_lost_unseen_total",
        "Flows whose start event was lost and that were evicted before a sweep found them: no record (a lower bound).",
        f.lost_unseen,
    );
    e.counter(
        "sink_errors_total",
        "Records the record path refused.",
        f.sink_errors,
    );
    e.counter(
        "flows_adopted_total",
        "Flows taken over from a pinned table at start.",
        f.adopted,
    );
    e.counter(
        "flows_restored_total",
        "Open flows a killed agent had read and not written in full, taken from its file of open flows at start.",
        f.restored,
    );
}

/// The audit store: records through it, its health, seals and their durations.
pub fn store(e: &mut Encoder, s: &StoreStatus) {
    e.counter(
        "records_accepted_total",
        "Records the audit store accepted.",
        s.accepted,
    );
    e.counter(
        "records_durable_total",
        "Accepted records made durable by fsync.",
        s.durable,
    );
    e.gauge(
        "records_buffered",
        "Records held in memory, not yet written.",
        s.buffered,
    );
    e.gauge(
        "records_buffered_unkept",
        "Of the records held in memory, those nothing else keeps (the pinned flow table keeps the others for the next agent): lost if the agent stops now.",
        s.unkept(),
    );
    e.counter(
        "records_dropped_total",
        "Records dropped: the buffer was full while the disk refused writes.",
        s.dropped,
    );
    e.gauge(
        "store_degraded",
        "1 while the disk refuses the store's writes (the journal's, a seal's or a compaction's).",
        s.degraded,
    );
    e.counter(
        "store_reports_total",
        "Warnings logged about the store's disk (at most one a minute).",
        s.reports,
    );
    e.counter(
        "segments_sealed_total",
        "Journals sealed into segments.",
        s.sealed,
    );
    e.counter(
        "segments_compacted_total",
        "Segments merged into daily ones.",
        s.compacted,
    );
    e.gauge(
        "compaction_failed_groups",
        "Closed days the last compaction pass could not merge (a changed or damaged segment).",
        s.compact_failed_days,
    );
    e.gauge(
        "journals_unsealed",
        "Rotated journals waiting to be sealed.",
        s.unsealed,
    );
    e.gauge(
        "journals_unsealable",
        "Journals that cannot be read or sealed, left in place (a full disk makes none).",
        s.unsealable,
    );
    e.counter(
        "journals_gone_total",
        "Journals deleted by someone else before their seal (their records are lost).",
        s.journals_gone,
    );
    e.counter(
        "journal_skipped_bytes_total",
        "Bytes of damaged or torn journals skipped (kept in quarantine/).",
        s.journal_skipped_bytes,
    );
    e.counter(
        "journal_skipped_frames_total",
        "Journal frames skipped, at least.",
        s.journal_skipped_frames,
    );
    e.counter(
        "records_shortened_total",
        "Records whose texts were shortened to fit a journal frame (a rule with a very long list path).",
        s.shortened_records,
    );
    e.gauge(
        "retention_seconds",
        "The retention in force (whole days).",
        u64::from(s.retention_days) * 86_400,
    );
    let t = &s.timings;
    e.histogram(
        "journal_fsync_seconds",
        "Time of each journal fsync.",
        &t.fsync,
    );
    e.histogram(
        "seal_duration_seconds",
        "Time to seal a journal into a segment.",
        &t.seal,
    );
    e.histogram(
        "compaction_duration_seconds",
        "Time of each compaction pass that merged segments.",
        &t.compact,
    );
}

/// The reader and the queue to the records stage.
pub fn pipeline(e: &mut Encoder, p: &PipelineStats) {
    e.counter(
        "ring_records_read_total",
        "Ring-buffer records read.",
        p.events,
    );
    e.counter(
        "ring_records_undecodable_total",
        "Ring-buffer records that did not decode (program and agent of different builds).",
        p.undecodable,
    );
    e.counter(
        "queue_events_processed_total",
        "Events the records stage took from the queue.",
        p.processed,
    );
    e.gauge("queue_events", "Events in the queue now.", p.queued);
    e.gauge(
        "queue_events_peak",
        "The most events the queue held at once.",
        p.queued_peak,
    );
    e.counter(
        "queue_full_total",
        "Times the reader found the queue full and waited.",
        p.queue_full,
    );
    e.counter(
        "sweeps_skipped_total",
        "Sweep ticks skipped behind a backlog.",
        p.sweeps_skipped,
    );
}

/// The wall clock as the records are stamped with it.
pub fn clock(e: &mut Encoder, c: &ClockStats) {
    e.gauge(
        "clock_offset_seconds",
        "Unix time minus the kernel's monotonic clock, as records are stamped.",
        c.offset_ns as f64 / 1e9,
    );
    e.counter(
        "clock_steps_total",
        "Wall-clock steps of a second or more.",
        c.steps,
    );
    e.counter(
        "clock_adjustments_total",
        "Smaller wall-clock adjustments followed.",
        c.adjustments,
    );
}

/// The kernel tables' fill and the list reloads.
pub fn observed(e: &mut Encoder, o: &Observed) {
    let mut f = e.family(
        "flow_table_entries",
        Kind::Gauge,
        "Flows in the flow table at the last sweep, by address family.",
    );
    for t in &o.flow_tables {
        f.sample(&[("family", &t.family)], t.entries);
    }
    let mut f = e.family(
        "flow_table_capacity",
        Kind::Gauge,
        "Entries the flow table holds before the LRU evicts, by address family.",
    );
    for t in &o.flow_tables {
        f.sample(&[("family", &t.family)], t.capacity);
    }
    e.gauge(
        "ring_used_bytes",
        "Bytes written to the ring buffer and not yet given back (read and settled), at the last sweep.",
        o.ring.used_bytes,
    );
    e.gauge(
        "ring_size_bytes",
        "The ring buffer's size.",
        o.ring.size_bytes,
    );
    let mut f = e.family(
        "list_reloads_total",
        Kind::Counter,
        "Reloads of a list file since the agent started, by result (applied or rejected).",
    );
    for r in &o.list_reloads {
        f.sample(&[("file", &r.path), ("result", "applied")], r.applied);
        f.sample(&[("file", &r.path), ("result", "rejected")], r.rejected);
    }
    let mut f = e.family(
        "list_last_reload_success",
        Kind::Gauge,
        "1 if a list file's last reload was applied, 0 if it was rejected (its last good version stays in force).",
    );
    for r in &o.list_reloads {
        f.sample(&[("file", &r.path)], r.last_ok);
    }
    let mut f = e.family(
        "list_last_reload_timestamp_seconds",
        Kind::Gauge,
        "When a list file was last reloaded (Unix time).",
    );
    for r in &o.list_reloads {
        f.sample(&[("file", &r.path)], r.last_at_s);
    }
}

#[cfg(test)]
mod tests;

/// Shipping to S3 (with `--ship`): the backlog not yet acknowledged and what was shipped.
pub fn ship(e: &mut Encoder, s: &crate::ship::ShipStatus) {
    e.gauge(
        "ship_backlog_segments",
        "Live segments the bucket has not acknowledged yet.",
        s.backlog_segments,
    );
    e.gauge(
        "ship_backlog_bytes",
        "Bytes of the segments the bucket has not acknowledged yet.",
        s.backlog_bytes,
    );
    e.gauge(
        "ship_backlog_oldest_age_seconds",
        "Age of the newest record of the oldest unacknowledged segment (0: no backlog).",
        s.oldest_age_s.unwrap_or(0),
    );
    e.gauge(
        "ship_kept_for_shipping_segments",
        "Segments past the retention that local retention keeps until they are shipped.",
        s.kept_for_shipping,
    );
    e.counter(
        "ship_segments_total",
        "Segments the bucket acknowledged since the agent started.",
        s.shipped_segments,
    );
    e.counter(
        "ship_bytes_total",
        "Bytes of the segments the bucket acknowledged since the agent started.",
        s.shipped_bytes,
    );
    e.counter(
        "ship_identical_reuploads_total",
        "Uploads that found the identical object already there (after a crash).",
        s.identical_reuploads,
    );
    e.counter(
        "ship_failures_total",
        "Shipping passes that failed (each retried with backoff).",
        s.failures,
    );
}

/// Alerts: how many are active, raised and resolved, and each delivery's counters (labels:
/// the few delivery names).
pub fn alerts(e: &mut Encoder, a: &crate::alert::AlertStatus) {
    e.gauge("alerts_active", "Alerts active now.", a.active_total);
    e.counter(
        "alerts_raised_total",
        "Alerts raised since the agent started.",
        a.raised,
    );
    e.counter(
        "alerts_resolved_total",
        "Alerts resolved since the agent started.",
        a.resolved,
    );
    e.counter(
        "alert_inputs_lost_total",
        "Alert inputs dropped because the alert queue was full.",
        a.queue_full,
    );
    e.counter(
        "alerts_suppressed_total",
        "Traffic conditions not tracked because the active-alert limit (--alert-max-active) was reached.",
        a.suppressed,
    );
    let mut f = e.family(
        "alert_notices_total",
        Kind::Counter,
        "Alert notices per delivery (log, chain, webhook, syslog), by result.",
    );
    for d in &a.deliveries {
        for (result, v) in [
            ("delivered", d.delivered),
            ("failed_attempt", d.failed),
            ("dropped", d.dropped),
        ] {
            f.sample(&[("delivery", &d.name), ("result", result)], v);
        }
    }
    let mut f = e.family(
        "alert_notices_pending",
        Kind::Gauge,
        "Alert notices waiting per delivery.",
    );
    for d in &a.deliveries {
        f.sample(&[("delivery", &d.name)], d.pending);
    }
}

/// The syslog sink (with `--syslog`): messages sent, queued, lost, and the connection.
pub fn syslog(e: &mut Encoder, s: &crate::syslog::SyslogStatus) {
    e.gauge(
        "syslog_connected",
        "1 while the syslog server is connected.",
        s.connected,
    );
    e.counter(
        "syslog_messages_sent_total",
        "Syslog messages written to the server.",
        s.sent,
    );
    e.gauge(
        "syslog_messages_queued",
        "Syslog messages waiting in the bounded queue.",
        s.queued,
    );
    e.counter(
        "syslog_messages_dropped_total",
        "Syslog messages dropped because the queue was full.",
        s.dropped,
    );
    e.counter(
        "syslog_messages_resent_total",
        "Syslog messages sent again after a reconnect (possible duplicates).",
        s.resent,
    );
    e.counter(
        "syslog_reconnects_total",
        "Connections to the syslog server made again after a loss.",
        s.reconnects,
    );
    e.counter(
        "syslog_connect_failures_total",
        "Failed connection attempts to the syslog server.",
        s.connect_failures,
    );
}
