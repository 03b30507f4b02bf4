//! Ending a flow: its last record written, and the flow taken out of the table. With a
//! pinned program (whose table outlives this agent) the record reaches the journal file and
//! the ledger before the take, so a kill at any moment leaves each flow in the file or in the
//! table; without one, the flow is taken at once and written from its final counters.

use std::io;

use tracing::debug;

use agent_common::{FlowKey, FlowValue};

use super::decide::closed_reason;
use super::{RuleNames, Sweeper, Tracked};
use crate::flowtable::FlowTable;
use crate::record::{EndReason, Reported};
use crate::sink::RecordSink;

/// Ended flows written ([`Sweeper::end`]) and not yet taken out of the table, at most: a
/// bounded list, and ended flows out of the LRU table soon (a packet that lands between the
/// walk's read of a flow and its take is written as a second record).
const TAKE_EVERY: usize = 1_024;

/// A flow whose last record is written and that is still in the table.
#[derive(Clone, Copy)]
pub(super) struct Ending {
    key: FlowKey,
    /// Its entry's `first_seen_ns` when the walk read it.
    first_seen_ns: u64,
    /// What its records carry.
    written: Reported,
    reason: EndReason,
}

impl Sweeper {
    /// Ends the flow `key`, whose entry the sweep's walk read as `v`: its last record says
    /// `fin`/`rst` if it closed, else `reason`. With a ledger (a pinned program, whose table
    /// outlives this agent) the record is written from `v` and the flow leaves the table
    /// only at the next [`Sweeper::take_ended`], once that record is in the journal file and
    /// the ledger says so: a kill before leaves the flow in the table for the next agent to
    /// write (or, after the ledger's update, to end with nothing left to write), never a
    /// flow the kernel forgot whose record was still in this process's buffer. Without one
    /// the table goes with this agent: the flow is taken at once and written from its final
    /// counters (from `v` if the LRU evicted it since the walk).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn end(
        &mut self,
        table: FlowTable<'_>,
        key: &FlowKey,
        v: &FlowValue,
        reported: &Reported,
        reason: EndReason,
        now: u64,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) -> io::Result<()> {
        let mut e = Ending {
            key: *key,
            first_seen_ns: v.first_seen_ns,
            written: *reported,
            reason,
        };
        if self.ledger.is_none() {
            if table
                .get(key)?
                .is_some_and(|now| now.first_seen_ns != v.first_seen_ns)
            {
                // Another flow under its key, left in the table (see `take_ended`): this one
                // is written from the walk's read.
                self.finish(e, Some(*v), true, now, sink, names);
                return Ok(());
            }
            match table.take(key)? {
                Some(last) if last.first_seen_ns == v.first_seen_ns => {
                    self.finish(e, Some(last), true, now, sink, names);
                }
                other => {
                    // Evicted since the walk (and, with `other`, made anew by a later packet,
                    // a flow of its own, written whole): written from the walk's read.
                    self.finish(e, Some(*v), true, now, sink, names);
                    if let Some(new) = other {
                        let e = Ending {
                            written: Reported::default(),
                            first_seen_ns: new.first_seen_ns,
                            ..e
                        };
                        self.finish(e, Some(new), true, now, sink, names);
                    }
                }
            }
            return Ok(());
        }
        let reason = closed_reason(v)
            .filter(|_| reason != EndReason::Idle)
            .unwrap_or(reason);
        self.write(sink, key, v, reported, reason, None, names);
        e.written = reported.covering(v);
        self.set_reported(key, e.written);
        self.ending.push(e);
        if self.ending.len() >= TAKE_EVERY {
            self.take_ended_settled(table, now, sink, names)?;
        }
        Ok(())
    }

    /// A flow whose key a new connection's SYN took over in the table (it closed, or it was
    /// an earlier attempt, another SYN's), `last` its entry's final snapshot (the program's
    /// [`agent_common::event_kind::FLOW_CLOSED`]): its last record is written from it, past
    /// what its records carried, and it is kept as ended, so the new connection's start
    /// event finds a flow of its own. One a walk wrote already, having found the new
    /// connection first ([`Sweeper::reopened`]), gets what it counted since as a second
    /// last record.
    pub(super) fn closed_over(
        &mut self,
        key: FlowKey,
        last: FlowValue,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) {
        if let Some((first_seen, written, _)) = self.late_close.remove(&key) {
            if first_seen == last.first_seen_ns {
                if last.packets != written.packets {
                    let reason = closed_reason(&last).unwrap_or(EndReason::Fin);
                    self.write(sink, &key, &last, &written, reason, None, names);
                }
                return;
            }
        }
        if self
            .open
            .get(&key)
            .is_some_and(|t| t.first_seen_ns > last.first_seen_ns)
        {
            // Not this flow's key any more (and not written by a walk: see above).
            debug!(
                ?key,
                "a closed flow's last snapshot came after its key's next flow"
            );
            return;
        }
        let (at, fresh) = self.track(key, last.first_seen_ns, sink, names);
        if fresh {
            self.found_lost_start();
        }
        let t = &self.open[at];
        let e = Ending {
            key,
            first_seen_ns: last.first_seen_ns,
            written: t.reported,
            // A connection attempt the new one replaced (another SYN, none closed here)
            // ended as one without a close seen ends: `idle`.
            reason: closed_reason(&last).unwrap_or(EndReason::Idle),
        };
        // Its last record is due unless its take wrote one (a late event of an ended flow).
        let always = t.ended_ns == 0;
        // Kernel time of the flow's last packet: the ended flow is remembered from there.
        self.finish(e, Some(last), always, last.last_seen_ns, sink, names);
    }

    /// Whether the flow `old`, tracked under `key` until a walk or an event found another
    /// flow there (made at `first_seen_ns`), closed before that one began: a new connection
    /// on its ports, whose SYN took its key over and sent its last snapshot to the ring,
    /// still on its way. Then it is written from its last snapshot with how it closed, no
    /// eviction, and what it counted since is written when that snapshot comes
    /// ([`Sweeper::closed_over`]).
    pub(super) fn reopened(
        &mut self,
        key: &FlowKey,
        old: &Tracked,
        first_seen_ns: u64,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) -> bool {
        let Some(latest) = old.latest else {
            return false;
        };
        let Some(reason) = closed_reason(&latest) else {
            return false;
        };
        if latest.end_seen_ns == 0 || first_seen_ns <= latest.end_seen_ns {
            return false;
        }
        let rule = old
            .drop_rule
            .filter(|_| agent_common::rules::rule_id(latest.rule) == agent_common::NO_RULE);
        self.write(sink, key, &latest, &old.reported, reason, rule, names);
        let written = old.reported.covering(&latest);
        self.late_close
            .insert(*key, (latest.first_seen_ns, written, latest.last_seen_ns));
        true
    }

    /// [`Sweeper::take_ended`], settling a second record at once.
    pub(super) fn take_ended_settled(
        &mut self,
        table: FlowTable<'_>,
        now: u64,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) -> io::Result<()> {
        if self.take_ended(table, now, sink, names)? {
            self.settle(sink);
        }
        Ok(())
    }

    /// Takes the flows [`Sweeper::end`] wrote out of the table at kernel time `now`, after
    /// settling their records. A flow that counted a packet since the walk read it is left
    /// in the table, open, for a later sweep to write what it counted since (taken, that
    /// record would sit in this process until the next settle, and a kill meanwhile would
    /// lose it with the entry). What a flow counts between that read and its take is written
    /// as a second last record, with the same reason; true if one was, and the caller
    /// settles at once: the kernel no longer holds it. The ledger keeps the flows while they
    /// are remembered as ended (`Tracked::in_ledger`), so a kill or a stop meanwhile leaves
    /// the next agent ledger entries without a flow, which it drops at its first sweep.
    pub(super) fn take_ended(
        &mut self,
        table: FlowTable<'_>,
        now: u64,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) -> io::Result<bool> {
        if self.ending.is_empty() {
            return Ok(false);
        }
        if !self.settle(sink) {
            // Their records are in this process only (a full disk): the flows stay in the
            // table, open, and a later sweep ends them again, its records carrying nothing
            // new; a kill meanwhile leaves them to the next agent, with the ledger as it was.
            for e in &self.ending {
                if let Some(t) = self.open.get_mut(&e.key) {
                    t.ended_untaken = true;
                }
            }
            self.ending.clear();
            return Ok(false);
        }
        let mut ending = std::mem::take(&mut self.ending);
        let mut wrote = false;
        for e in ending.drain(..) {
            let now_there = table.get(&e.key)?;
            if now_there.is_some_and(|v| {
                v.first_seen_ns == e.first_seen_ns && v.packets != e.written.packets
            }) {
                // It goes on: tracked open, its records in the file and the ledger.
                if let Some(t) = self.open.get_mut(&e.key) {
                    t.ended_untaken = false;
                }
                continue;
            }
            // Another flow under its key (a new connection's SYN took it over, its last
            // snapshot on the way in the ring, or the LRU evicted it and a packet made the
            // entry anew) is left in the table, a flow of its own its start event announces.
            // None: the LRU evicted it since the walk; its record is written all the same.
            let last = match now_there {
                Some(v) if v.first_seen_ns != e.first_seen_ns => None,
                _ => table.take(&e.key)?,
            };
            wrote |= self.finish(e, last, false, now, sink, names);
        }
        self.ending = ending; // its capacity, for the next sweep
        Ok(wrote)
    }

    /// A flow taken out of the table as `last` (`None`: gone since the walk): writes what
    /// it counted past `e.written` (`always`: also when that is nothing, so the sink learns
    /// the flow ended) and keeps it a while as ended ([`Tracked::ended_ns`]). Another
    /// incarnation (evicted since the walk, and a packet made the entry anew) is a flow of
    /// its own, written whole; its start event, if still in the ring, then finds it ended.
    /// True if a record with packets was written.
    fn finish(
        &mut self,
        e: Ending,
        last: Option<FlowValue>,
        always: bool,
        now: u64,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) -> bool {
        let mut ended = Tracked {
            reported: e.written,
            first_seen_ns: e.first_seen_ns,
            ended_ns: now.max(1),
            ..Tracked::default()
        };
        let mut wrote = false;
        if let Some(last) = last {
            let before = if last.first_seen_ns == e.first_seen_ns {
                e.written
            } else {
                Reported::default()
            };
            wrote = last.packets != before.packets;
            if wrote || always {
                let reason = closed_reason(&last)
                    .filter(|_| e.reason != EndReason::Idle)
                    .unwrap_or(e.reason);
                self.write(sink, &e.key, &last, &before, reason, None, names);
            }
            ended.reported = before.covering(&last);
            ended.first_seen_ns = last.first_seen_ns;
        }
        if let Some(l) = self.ledger.as_mut() {
            // Its start or first drop's event may still be in the ring: see
            // `Tracked::in_ledger`.
            if ended.in_ledger() {
                if ended.reported != e.written {
                    l.set(&e.key, &ended.reported);
                }
            } else {
                l.remove(&e.key);
            }
        }
        *self.open.entry(e.key).or_default() = ended;
        self.saved_gone(&e.key);
        wrote
    }
}
