//! The sweeper: walks the flow table, ends flows that closed, idled or outlived the active
//! timeout, and turns them into records. It also notices flows whose start event the ring
//! buffer lost and flows the LRU table evicted before they ended, so neither goes unrecorded.
//! Each loss is counted ([`SweepStats`]); the log gets a rate-limited summary, not a line per
//! flow.
//!
//! With a pinned program the sweeper also keeps a [`Ledger`] of what its interim records
//! carried, beside the flow tables; an agent that adopts the pins starts from it
//! ([`Sweeper::adopt`]) and takes over every flow of the table where the last agent stopped:
//! a flow whose start event the last agent read but never wrote is written from its entry,
//! once; a flow it sliced continues after its last slice. At a pinned agent's shutdown the
//! open flows are written as interim `shutdown` records and stay in the table
//! ([`Sweeper::hand_over`]).

mod decide;
mod end;
pub mod flood;
mod handover;
pub mod ledger;
mod lost;
mod rules;
pub mod spill;
mod tracked;

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::io;

use agent_common::{flow_flags, FlowKey, FlowValue};
use foldhash::fast::RandomState;
use indexmap::IndexMap;
use tracing::{debug, error, warn};

use crate::clock::{OffsetSample, Timeline};
use crate::flowtable::FlowTable;
use crate::reader::Event;
use crate::record::{EndReason, FlowRecord, Reported};
use crate::sink::RecordSink;
use crate::throttle::Throttle;
use ledger::Ledger;

pub use decide::{decide, Action, Timeouts};
use rules::push_rule_text;
pub(crate) use rules::rule_text;
pub use rules::RuleNames;
use tracked::{written, Tracked};

/// Records written between two [`Sweeper::settle`]s at most: the sink writes nothing to its
/// file in between (a frame is some 60 to 250 bytes, under the store's 256 KiB write chunk),
/// so no record reaches the file before the ledger can follow it.
pub const SETTLE_EVERY: usize = 1_024;

/// How long an ended flow is remembered for its late events ([`Tracked::ended_ns`]): the
/// ring's usual lag is milliseconds; ended flows held cost about 220 bytes each here, and an
/// entry of the kernel's ledger map.
const ENDED_KEPT_NS: u64 = 2_000_000_000;

/// Counts of what the sweeper did, for `status`, the shutdown summary and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SweepStats {
    /// Records written.
    pub records: u64,
    /// Flow-start events received (a flow announced by its first drop is not among them).
    #[serde(default)]
    pub starts: u64,
    /// Flows whose start event never arrived.
    pub lost_starts: u64,
    /// Flows that left the table before they ended.
    pub evicted: u64,
    /// Flows whose start event the ring buffer lost and that the LRU evicted before a sweep
    /// found them in the table: no record holds them. A lower bound (the program's
    /// `lost_flow_start` since this agent's first sweep, less the flows the sweeper found).
    #[serde(default)]
    pub lost_unseen: u64,
    /// Records the sink refused.
    pub sink_errors: u64,
    /// Flows taken over from a pinned table whose earlier records the ledger holds.
    #[serde(default)]
    pub adopted: u64,
    /// Open flows a killed agent had read and not written in full, taken from its file of
    /// open flows ([`spill`]).
    #[serde(default)]
    pub restored: u64,
    /// Bytes of that file that could not be read (damaged entries, or the whole file set
    /// aside; a kill's cut last entry aside): the open flows they held are not restored, and
    /// those the table evicted since have no record.
    #[serde(default)]
    pub restore_damaged: u64,
    /// Entries of the IPv4 flow table at the last sweep (its fill, against the table size).
    #[serde(default)]
    pub table_v4: u64,
    /// Entries of the IPv6 flow table at the last sweep.
    #[serde(default)]
    pub table_v6: u64,
}

/// A flow of a retired flow table, to be written once ([`Sweeper::write_retired`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetiredFlow {
    /// The flow.
    pub key: FlowKey,
    /// Its entry when the program was replaced.
    pub value: FlowValue,
    /// For a flow copied into the new table: the copy. What the old program counted after
    /// it is written as an interim record; the new table carries the rest. `None`: the flow
    /// was not copied and is written from what earlier records carried, ended if it had
    /// closed.
    pub after: Option<Reported>,
}

/// Rate limits of the sweeper's warnings, one per kind of loss.
#[derive(Default)]
struct Warnings {
    lost_starts: Throttle,
    lost_unseen: Throttle,
    evicted: Throttle,
    /// One per message: a shared throttle would have one message's count in another's.
    records_not_written: Throttle,
    flush_errors: Throttle,
    sync_errors: Throttle,
    ledger_overdue: Throttle,
}

/// Adds `n` flows lost one way to their count, and says so in the log if the kind's rate
/// limit lets it.
fn tally(total: &mut u64, throttle: &mut Throttle, n: u64, what: &str) {
    *total += n;
    if let Some(n) = throttle.hit(n) {
        warn!(
            flows = n,
            total = *total,
            "{what} (logged at most every 10 s)"
        );
    }
}

/// The sweeper's state across ticks.
pub struct Sweeper {
    timeouts: Timeouts,
    clock: Timeline,
    ifnames: HashMap<u32, String, RandomState>,
    /// The last record's text buffers (interface, rule), reused by the next one: a record
    /// per event, and a new `String` per text was a malloc and a free each.
    spare: (String, String),
    /// Keyed by flow with foldhash (seeded per process), not SipHash: every event and every
    /// table entry of a sweep hashes its key here, and SipHash over a 40-byte key was the
    /// largest single cost of the event path. An `IndexMap`: a new flow's 200-byte entry is
    /// appended to one vector and only a small index table is probed and rehashed, where a
    /// hash map wrote each entry to a random cache line of a table it moved at every growth.
    open: IndexMap<FlowKey, Tracked, RandomState>,
    warnings: Warnings,
    ledger: Option<Ledger>,
    /// Flows [`Sweeper::end`] wrote and [`Sweeper::take_ended`] has yet to take; empty
    /// between calls.
    ending: Vec<end::Ending>,
    /// Closed flows a walk wrote from their last snapshot because it found a new connection
    /// under their key first ([`Sweeper::reopened`]), by key: `(first_seen_ns, what their
    /// records carried, kernel time of their last packet)`, until their own last snapshot
    /// comes from the ring ([`Sweeper::closed_over`]) or [`ENDED_KEPT_NS`] passes.
    late_close: HashMap<FlowKey, (u64, Reported, u64), RandomState>,
    /// Records written since the last [`Sweeper::settle`].
    unsettled: usize,
    /// The last settle found the sink holding records it could not write.
    holding: bool,
    /// The program's `lost_flow_start` read before the sweep under way
    /// ([`Sweeper::note_lost_starts`]), and at the first one with the flows found by then.
    kernel_lost_starts: Option<u64>,
    lost_starts_base: Option<(u64, u64)>,
    /// Of `stats.lost_unseen`, those of a replaced program ([`Sweeper::write_retired`]).
    unseen_retired: u64,
    /// The file of open flows a kill leaves the next agent ([`spill`]).
    spill: Option<spill::Spill>,
    /// What the sweeper has done so far.
    pub stats: SweepStats,
}

impl Sweeper {
    /// A sweeper for flows on the interfaces in `ifnames` (index to name), converting kernel
    /// times to wall time with `clock`.
    pub fn new(timeouts: Timeouts, clock: Timeline, ifnames: HashMap<u32, String>) -> Self {
        Self {
            timeouts,
            clock,
            ifnames: ifnames.into_iter().collect(),
            spare: (String::new(), String::new()),
            open: IndexMap::default(),
            warnings: Warnings::default(),
            ledger: None,
            ending: Vec::new(),
            late_close: HashMap::default(),
            unsettled: 0,
            holding: false,
            kernel_lost_starts: None,
            lost_starts_base: None,
            unseen_retired: 0,
            spill: None,
            stats: SweepStats::default(),
        }
    }

    /// Keeps what interim records carried in `ledger` from now on, and starts from what it
    /// holds: the flows an earlier agent sliced continue after their last slice. Returns how
    /// many flows it holds.
    pub fn adopt(&mut self, ledger: Ledger) -> usize {
        let entries = ledger.entries();
        self.seed(&entries);
        self.stats.adopted += entries.len() as u64;
        self.ledger = Some(ledger);
        entries.len()
    }

    /// Notes that `key`'s records now carry `reported`.
    fn set_reported(&mut self, key: &FlowKey, reported: Reported) {
        if let Some(t) = self.open.get_mut(key) {
            t.reported = reported;
            if let Some(s) = self.spill.as_mut() {
                s.open_flow(key, t);
            }
        }
        self.ledger_set(key, &reported);
    }

    /// Saves the flow at index `at` to the file of open flows at the next settle.
    fn save(&mut self, at: usize) {
        if let (Some(s), Some((key, t))) = (self.spill.as_mut(), self.open.get_index(at)) {
            s.open_flow(key, t);
        }
    }

    /// A flow `t` left the table (an LRU eviction) while the sink holds records it could not
    /// write: the table no longer keeps its records, and which of the held ones are its is
    /// not known, so all count as unkept ([`RecordSink::unkept`]).
    fn left_table(&self, t: &Tracked, sink: &mut dyn RecordSink) {
        if self.holding && !t.held_nothing() {
            sink.unkept();
        }
    }

    /// Keeps `reported` in the ledger, if there is one.
    fn ledger_set(&mut self, key: &FlowKey, reported: &Reported) {
        if let Some(l) = self.ledger.as_mut() {
            l.set(key, reported);
        }
    }

    /// Hands the records written so far to the kernel (the sink's flush: one `write(2)`, none
    /// when nothing is pending), then has the ledger follow them ([`Ledger::commit`]). The
    /// records stage calls it after each batch of events and each sweep: a killed agent then
    /// loses nothing the flow table or the ledger no longer holds. False while the sink holds
    /// records it could not write (a full disk): the ledger then waits, and so do the takes
    /// of ended flows ([`Sweeper::take_ended`]), so that the table and the ledger still hold
    /// what only this process's memory does.
    pub fn settle(&mut self, sink: &mut dyn RecordSink) -> bool {
        self.settle_and(sink, || {})
    }

    /// [`Sweeper::settle`], with `written` run once the records are in the file and the
    /// ledger follows, before the fsync: what must be cleared once its records are written
    /// (the flood slots) is cleared with no fsync's time between, in which a kill would
    /// have the next agent write them again. Not run while the sink holds records it could
    /// not write.
    pub fn settle_and(&mut self, sink: &mut dyn RecordSink, written: impl FnOnce()) -> bool {
        self.unsettled = 0;
        // Only the map updates sit between the write and the ledger's following it, where a
        // kill makes the next agent write these records again.
        if let Some(l) = self.ledger.as_mut() {
            l.prepare();
        }
        if let Err(e) = sink.flush() {
            if let Some(n) = self.warnings.flush_errors.hit(1) {
                if self.ledger.is_some() {
                    error!(error = %e, failures = n, "audit records could not be handed to the kernel; they stay buffered, and the flow table and its ledger keep them for the next agent (logged at most every 10 s)");
                } else {
                    error!(error = %e, failures = n, "audit records could not be handed to the kernel; they stay buffered in memory only (no pinned ledger: a stop or a kill loses them) (logged at most every 10 s)");
                }
            }
            if !self.ledger.as_ref().is_some_and(Ledger::overdue) {
                self.holding = true;
                if let Some(s) = self.spill.as_mut() {
                    s.held();
                }
                return false;
            }
            if let Some(n) = self.warnings.ledger_overdue.hit(1) {
                warn!(times = n, "the store's disk has refused writes so long that the ledger's waiting updates outgrew its map: it follows records held in memory only, which a kill now loses (logged at most every 10 s)");
            }
            sink.unkept();
        }
        // The file of open flows before the ledger: each says what the journal file holds.
        self.save_open_flows();
        if let Some(l) = self.ledger.as_mut() {
            l.commit();
        }
        self.rewrite_open_flows();
        self.holding = false;
        written();
        // After the ledger: an fsync between the flush and the commit would widen the window
        // in which a kill makes the next agent write these records again.
        if let Err(e) = sink.sync_due() {
            if let Some(n) = self.warnings.sync_errors.hit(1) {
                error!(error = %e, failures = n, "audit records could not be synced (logged at most every 10 s)");
            }
        }
        true
    }

    /// Has the ledger follow every record written so far: call it once the sink made them
    /// durable without a [`Sweeper::settle`] (its close).
    pub fn commit_ledger(&mut self) {
        self.save_open_flows();
        if let Some(l) = self.ledger.as_mut() {
            l.commit();
        }
    }

    /// Forgets a flow that ended or left the table (in the ledger at the next
    /// [`Sweeper::settle`]). The file of open flows learns it from [`Sweeper::saved_gone`],
    /// once its last record is written: a settle in between (`write` settles before a
    /// record, every [`SETTLE_EVERY`]) would have the file forget a flow whose record is in
    /// this process only.
    fn forget(&mut self, key: &FlowKey) -> Tracked {
        let t = self.open.swap_remove(key).unwrap_or_default();
        if t.in_ledger() {
            if let Some(l) = self.ledger.as_mut() {
                l.remove(key);
            }
        }
        t
    }

    /// The index of the flow tracked under `key`, whose kernel entry was made at
    /// `first_seen_ns`, and whether it was tracked before. One hash of the key on the common
    /// path. When the flow tracked under `key` was another incarnation, the LRU evicted it and
    /// a later packet made the entry anew between two sweeps: the old flow is written as
    /// evicted from what is known of it (as [`Sweeper::record_evictions`] writes one whose key
    /// is gone) and forgotten, so the new one starts from nothing (else its records would be
    /// the old one's remainder, less what the old one's slices carried).
    fn track(
        &mut self,
        key: FlowKey,
        first_seen_ns: u64,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) -> (usize, bool) {
        let silent = match self.open.entry(key) {
            indexmap::map::Entry::Occupied(mut o) => {
                let t = o.get_mut();
                if t.ended_ns != 0 {
                    if t.first_seen_ns == first_seen_ns {
                        return (o.index(), false); // a late event of the ended flow
                    }
                    true // a new flow under an ended one's key: nothing of that is left
                } else if t.adopted
                    && t.first_seen_ns == 0
                    && t.reported.last_seen_ns != 0
                    && first_seen_ns > t.reported.last_seen_ns
                {
                    // A flow adopted from the ledger was made anew while no agent ran (its
                    // first packet is later than the last one written: `last_seen_ns` never
                    // lags behind `first_seen_ns`). What it counted after its last record
                    // went with it; the new one starts from nothing.
                    true
                } else if t.same_flow(first_seen_ns) {
                    t.first_seen_ns = t.first_seen_ns.max(first_seen_ns);
                    return (o.index(), false);
                } else {
                    // Adopted with nothing unwritten seen, or ended with its take waiting
                    // for a full disk and nothing new since: no eviction lost anything.
                    t.adopted_and_written() || t.ended_with_nothing_new()
                }
            }
            indexmap::map::Entry::Vacant(v) => {
                let at = v.index();
                v.insert(Tracked {
                    first_seen_ns,
                    ..Tracked::default()
                });
                return (at, true);
            }
        };
        let old = self.forget(&key);
        self.left_table(&old, sink);
        if old.held_nothing() {
            sink.flow_ended(&key);
        } else if !silent && !self.reopened(&key, &old, first_seen_ns, sink, names) {
            self.write_evicted(&key, old, sink, names);
            tally(
                &mut self.stats.evicted,
                &mut self.warnings.evicted,
                1,
                "flows evicted from a full flow table before they ended, written from their last snapshot; raise --flow-table-size",
            );
        }
        self.saved_gone(&key);
        let (at, _) = self.open.insert_full(
            key,
            Tracked {
                first_seen_ns,
                ..Tracked::default()
            },
        );
        (at, true)
    }

    /// Writes a flow the LRU evicted from its latest snapshot, past what its records carried.
    fn write_evicted(
        &mut self,
        key: &FlowKey,
        t: Tracked,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) {
        match t.latest {
            Some(latest) => self.write(
                sink,
                key,
                &latest,
                &t.reported,
                EndReason::Evicted,
                t.drop_rule
                    .filter(|_| agent_common::rules::rule_id(latest.rule) == agent_common::NO_RULE),
                names,
            ),
            None => sink.flow_ended(key),
        }
    }

    /// A new measurement of the wall clock: records of packets from its kernel time on carry
    /// its offset (see [`crate::clock`]).
    pub fn on_clock(&mut self, sample: OffsetSample) {
        self.clock.apply(sample);
    }

    /// The wall clock's offset and steps.
    pub fn clock(&self) -> &Timeline {
        &self.clock
    }

    /// Takes note of a ring-buffer event; a flow's first drop is written at once.
    pub fn on_event(&mut self, ev: Event, sink: &mut dyn RecordSink, names: &dyn RuleNames) {
        match ev {
            Event::FlowStart(key, value) => {
                debug!(?key, "flow start");
                self.stats.starts += 1;
                let (at, _) = self.track(key, value.first_seen_ns, sink, names);
                self.open[at].saw(&value);
                self.save(at);
            }
            Event::FlowEnd(key, value) => {
                debug!(?key, "flow end seen");
                // A closed connection's counts to its first FIN or RST: what is written if
                // the LRU evicts it before a walk reads it (before, only its start's).
                if let Some((at, _, t)) = (self.open.get_full_mut(&key))
                    .filter(|(_, _, t)| t.ended_ns == 0 && t.same_flow(value.first_seen_ns))
                {
                    if t.saw(&value) {
                        self.save(at);
                    }
                }
            }
            Event::FlowClosed(key, value) => self.closed_over(key, value, sink, names),
            // Payload copies are for the enrich stage; they change no flow's accounting.
            Event::Payload(_) => {}
            Event::FlowDrop(key, value, rule) => {
                // The entry's index stays valid across `write`, which changes no flow.
                let (at, fresh) = self.track(key, value.first_seen_ns, sink, names);
                // The first drop of a flow that passed packets before: unknown, its start
                // event was lost (found here, not unseen).
                if fresh && value.packets[0] + value.packets[1] > value.drops {
                    self.found_lost_start();
                }
                let tracked = &mut self.open[at];
                tracked.saw(&value);
                tracked.drop_rule = Some(rule);
                let reported = tracked.reported;
                let reason = if value.flags & agent_common::flow_flags::REFUSED != 0 {
                    EndReason::Refused
                } else {
                    EndReason::Drop
                };
                self.write(sink, &key, &value, &reported, reason, Some(rule), names);
                let now = reported.covering(&value);
                if let Some((_, t)) = self.open.get_index_mut(at) {
                    t.reported = now;
                    if !t.in_ledger() {
                        return; // an ended flow the ledger forgot with its last record
                    }
                }
                self.save(at);
                self.ledger_set(&key, &now);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        sink: &mut dyn RecordSink,
        key: &FlowKey,
        v: &FlowValue,
        rep: &Reported,
        r: EndReason,
        rule: Option<u32>,
        names: &dyn RuleNames,
    ) {
        if self.unsettled >= SETTLE_EVERY
            || self
                .ledger
                .as_ref()
                .is_some_and(|l| l.pending() >= ledger::COMMIT_EVERY)
        {
            self.settle(sink);
        }
        // One timeline for the whole record, the one of its last packet (see `clock`).
        let clock = self.clock.at(v.last_seen_ns);
        let mut record = FlowRecord::from_entry(key, v, "", &clock, rep, r);
        let ends = r.is_last() && r != EndReason::Shutdown;
        // After this agent's `active` slice the flow's end is written even with nothing new
        // (`Tracked::sliced`): that line says how the flow ended. After any other line (a
        // first drop, the closing line itself) nothing more is.
        let tracked = self.open.get_mut(key);
        let sliced = tracked.as_ref().is_some_and(|t| t.sliced);
        if let Some(t) = tracked {
            t.sliced = (r == EndReason::Active && record.packets > 0)
                || (record.packets == 0 && sliced && !ends);
        }
        if record.packets == 0 && !(ends && sliced) {
            // An earlier record carried everything; a stage that keeps state until the
            // flow's last record learns it ended all the same. A shutdown ends nothing there:
            // the stage closes next, and where the flow goes on in the pinned program it
            // carries the flow's state over to the next agent.
            if ends {
                sink.flow_ended(key);
            }
            return;
        }
        record.iface = std::mem::take(&mut self.spare.0);
        record.iface.clear();
        match self.ifnames.get(&key.ifindex) {
            Some(name) => record.iface.push_str(name),
            None => {
                let _ = write!(record.iface, "if{}", key.ifindex);
            }
        }
        // The program's rule values may carry the list's refusal bit.
        let mut rule = agent_common::rules::rule_id(rule.unwrap_or(v.rule));
        if rule == agent_common::NO_RULE && record.dropped != 0 {
            // Drops of a flow whose verdict passes are by name: its first drop named the rule.
            if let Some(r) = self.open.get(key).and_then(|t| t.drop_rule) {
                rule = agent_common::rules::rule_id(r);
            }
        }
        if rule != agent_common::NO_RULE {
            let mut text = std::mem::take(&mut self.spare.1);
            text.clear();
            push_rule_text(names, rule, &mut text);
            record.rule = Some(text);
        }
        self.emit(sink, &record);
        self.spare.0 = record.iface;
        if let Some(text) = record.rule {
            self.spare.1 = text;
        }
    }

    /// Hands `record` to the sink; a refusal is counted and logged (rate-limited).
    fn emit(&mut self, sink: &mut dyn RecordSink, record: &FlowRecord) {
        if self.unsettled > 0 && sink.writes_before(record) {
            // The sink would write what it holds before this record (a journal's rotation):
            // the ledger follows that write first.
            self.settle(sink);
        }
        self.unsettled += 1;
        match sink.write(record) {
            Ok(()) => self.stats.records += 1,
            Err(e) => {
                self.stats.sink_errors += 1;
                if let Some(n) = self.warnings.records_not_written.hit(1) {
                    error!(error = %e, records = n, total = self.stats.sink_errors, "audit records not written (logged at most every 10 s)");
                }
            }
        }
    }

    /// Writes one `summarised` record per rule that dropped packets past the drop-record
    /// budget in this sweep ([`flood::RuleFlood`]).
    pub fn summarise(
        &mut self,
        taken: &[flood::RuleFlood],
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) {
        for f in taken.iter().filter(|f| f.packets != 0) {
            let record = f.record(&self.clock.at(f.last_ns), rule_text(names, f.rule));
            self.emit(sink, &record);
        }
    }

    /// One pass over the table at kernel time `now`.
    pub fn sweep(
        &mut self,
        table: FlowTable<'_>,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
        now: u64,
    ) -> io::Result<()> {
        let entries = table.entries()?;
        let v4 = entries
            .iter()
            .filter(|(k, _)| k.family == agent_common::family::V4)
            .count() as u64;
        (self.stats.table_v4, self.stats.table_v6) = (v4, entries.len() as u64 - v4);
        let mut seen = HashSet::with_capacity_and_hasher(entries.len(), RandomState::default());
        let mut lost_starts = 0;
        for (key, v) in entries {
            seen.insert(key);
            let (at, fresh) = self.track(key, v.first_seen_ns, sink, names);
            if v.flags & flow_flags::START_ANNOUNCED == 0 && fresh {
                lost_starts += 1;
            }
            let t = &mut self.open[at];
            t.unsaved |= t.saw(&v);
            if t.unsaved && now.saturating_sub(t.saved_ns) >= spill::WALK_SAVE_NS {
                (t.saved_ns, t.unsaved) = (now, false);
                self.save(at);
                if !self.holding && self.spill.as_ref().is_some_and(spill::Spill::full) {
                    // A walk of a million busy flows would hold 200 MB of entries: they go
                    // out with the records before them.
                    self.settle(sink);
                }
            }
            let reported = self.open[at].reported;
            if !written(&v, &reported) {
                self.open[at].ended_untaken = false; // it goes on
            }
            match decide(&v, &reported, now, &self.timeouts) {
                Action::Keep => {}
                Action::Active => {
                    self.write(sink, &key, &v, &reported, EndReason::Active, None, names);
                    self.set_reported(&key, reported.covering(&v));
                }
                Action::End(reason) => {
                    self.end(table, &key, &v, &reported, reason, now, sink, names)?;
                }
            }
        }
        self.take_ended_settled(table, now, sink, names)?;
        self.count_lost_starts(lost_starts);
        self.record_evictions(table, sink, names, &seen, now)
    }

    /// Flows we knew of that are gone without our taking them were evicted by the LRU.
    pub(super) fn record_evictions(
        &mut self,
        table: FlowTable<'_>,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
        seen: &HashSet<FlowKey, RandomState>,
        now: u64,
    ) -> io::Result<()> {
        let mut expired = Vec::new();
        let missing: Vec<FlowKey> = self
            .open
            .iter()
            .filter(|(k, t)| {
                if t.ended_ns != 0 && now.saturating_sub(t.ended_ns) >= ENDED_KEPT_NS {
                    expired.push(**k);
                }
                t.ended_ns == 0 && !seen.contains(*k)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.forget(&key);
        }
        let kept = |(_, _, at): &mut (u64, Reported, u64)| now.saturating_sub(*at) < ENDED_KEPT_NS;
        self.late_close.retain(|_, v| kept(v));
        let mut evicted = 0;
        for key in missing {
            if table.get(&key)?.is_some() {
                continue; // Created during the walk; the next sweep handles it.
            }
            if self.open.contains_key(&key) {
                let t = self.forget(&key);
                self.left_table(&t, sink);
                if t.adopted_and_written() || t.ended_with_nothing_new() || t.held_nothing() {
                    // Its start went to an earlier agent and no walk of ours saw it, or all
                    // an event of it showed was written (a flow that ended at the stop, or
                    // one whose take waited for a full disk); or it never held anything.
                    sink.flow_ended(&key);
                } else {
                    evicted += 1;
                    self.write_evicted(&key, t, sink, names);
                }
                self.saved_gone(&key);
            }
        }
        tally(
            &mut self.stats.evicted,
            &mut self.warnings.evicted,
            evicted,
            "flows evicted from a full flow table before they ended, written from their last snapshot; raise --flow-table-size",
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
