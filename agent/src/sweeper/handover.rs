//! The sweeper at a stop and at an upgrade: a pinned agent's hand-over of its open flows, an
//! unpinned agent's flush, and the flows of a retired table.

use std::io;

use agent_common::{flow_flags, FlowKey};

use super::decide::{closed_for_good, closed_reason, decide, Action};
use super::{RetiredFlow, RuleNames, Sweeper};
use crate::flowtable::FlowTable;
use crate::record::{EndReason, Reported};
use crate::sink::RecordSink;

impl Sweeper {
    /// At the shutdown of an agent whose program stays attached (pinned): every flow that
    /// has ended by kernel time `now` is written and taken as a sweep would, and so is one
    /// that closed for good (a RST, both FINs) still in its linger: its record says `fin` or
    /// `rst`, as the flush's does. Every other one is written as an interim `shutdown` record
    /// and stays in the table, for the next agent to continue after it.
    pub fn hand_over(
        &mut self,
        table: FlowTable<'_>,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
        now: u64,
    ) -> io::Result<()> {
        let entries = table.entries()?;
        let seen = entries.iter().map(|(k, _)| *k).collect();
        let mut lost_starts = 0;
        for (key, v) in entries {
            let (at, fresh) = self.track(key, v.first_seen_ns, sink, names);
            lost_starts += u64::from(fresh && v.flags & flow_flags::START_ANNOUNCED == 0);
            let reported = self.open[at].reported;
            let action = match decide(&v, &reported, now, &self.timeouts) {
                Action::Keep | Action::Active => {
                    closed_for_good(&v).map_or(Action::Keep, Action::End)
                }
                ended => ended,
            };
            match action {
                Action::End(reason) => {
                    self.end(table, &key, &v, &reported, reason, now, sink, names)?;
                }
                Action::Keep | Action::Active => {
                    self.write(sink, &key, &v, &reported, EndReason::Shutdown, None, names);
                    if v.packets != reported.packets {
                        self.set_reported(&key, reported.covering(&v));
                    }
                }
            }
        }
        // The ledger keeps what ended flows carried (`Tracked::in_ledger`): the next agent
        // drains their start and first drops' events, if still in the ring, finds them
        // written, and drops the entries at its first sweep.
        self.take_ended_settled(table, now, sink, names)?;
        self.count_lost_starts(lost_starts);
        // Flows the LRU evicted since the last sweep: no later agent can find them.
        self.record_evictions(table, sink, names, &seen, now)
    }

    /// Writes what a retired flow table (an upgrade that changed the layout) held when the
    /// program was replaced: each flow from what its `reported` says was written before.
    /// Those whose start event the old program lost and this agent does not know are counted
    /// as lost starts found, and, against `lost` (each old program's `lost_flow_start`, and
    /// the reading of it the last agent left), so are those its table evicted unseen: the
    /// ring filled while no agent read it (a restart with new table sizes under a flood).
    /// `found_by_events`: lost starts the old ring's events revealed (counted already).
    pub fn write_retired(
        &mut self,
        flows: &[RetiredFlow],
        lost: &[(u64, Option<u64>)],
        found_by_events: u64,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) {
        // Unknown flows whose start the old program lost: written out here, and moved into
        // the new table (which a walk of it finds, and counts then).
        let (mut found, mut moved) = (0, 0);
        for f in flows {
            let unknown =
                f.value.flags & flow_flags::START_ANNOUNCED == 0 && !self.open.contains_key(&f.key);
            match f.after {
                Some(copy) => {
                    moved += u64::from(unknown);
                    self.write(
                        sink,
                        &f.key,
                        &f.value,
                        &copy,
                        EndReason::Active,
                        None,
                        names,
                    );
                }
                None => {
                    found += u64::from(unknown);
                    let (at, _) = self.track(f.key, f.value.first_seen_ns, sink, names);
                    let reported = self.open[at].reported;
                    self.forget(&f.key);
                    let reason = closed_reason(&f.value).unwrap_or(EndReason::Active);
                    self.write(sink, &f.key, &f.value, &reported, reason, None, names);
                    self.saved_gone(&f.key);
                }
            }
        }
        self.count_retired_lost_starts(found, moved + found_by_events, lost);
    }

    /// Starts from what earlier records carried of flows the ledger no longer holds (a
    /// retired one's, see [`Sweeper::write_retired`]).
    pub fn seed(&mut self, flows: &[(FlowKey, Reported)]) {
        for (key, reported) in flows {
            let t = self.open.entry(*key).or_default();
            (t.reported, t.adopted) = (super::tracked::further(t.reported, *reported), true);
        }
    }

    /// Ends every flow in the table (the program is already detached), and writes those the
    /// table lost since the last sweep.
    pub fn flush(
        &mut self,
        table: FlowTable<'_>,
        sink: &mut dyn RecordSink,
        names: &dyn RuleNames,
    ) -> io::Result<()> {
        let keys = table.keys()?;
        let seen = keys.iter().copied().collect();
        let mut lost_starts = 0;
        for key in keys {
            if let Some(v) = table.take(&key)? {
                let (at, fresh) = self.track(key, v.first_seen_ns, sink, names);
                lost_starts += u64::from(fresh && v.flags & flow_flags::START_ANNOUNCED == 0);
                let reported = self.open[at].reported;
                self.open.swap_remove(&key);
                let reason = closed_reason(&v).unwrap_or(EndReason::Shutdown);
                self.write(sink, &key, &v, &reported, reason, None, names);
                self.saved_gone(&key);
            }
        }
        self.count_lost_starts(lost_starts);
        // Flows the LRU evicted since the last sweep, known from their events alone. Every
        // ended one's ledger entry can go: nothing follows (`now` past every hold).
        self.record_evictions(table, sink, names, &seen, u64::MAX)
    }
}
