//! What the sweeper knows of one flow it tracks: its latest snapshot, what its records
//! carried, which incarnation of its key it is, and how it ended.

use agent_common::FlowValue;

use crate::record::Reported;

#[derive(Default)]
pub(super) struct Tracked {
    pub(super) reported: Reported,
    /// The entry's latest snapshot (its start event's, a first drop's, each walk's): what
    /// is written if the LRU evicts it.
    pub(super) latest: Option<FlowValue>,
    /// The kernel entry's `first_seen_ns`, once an event or a sweep showed it (0: not yet):
    /// which incarnation of the key this is. The LRU may evict a flow and a later packet
    /// make the entry anew between two sweeps, under the same key.
    pub(super) first_seen_ns: u64,
    /// Kernel time the sweeper took the flow out of the table (0: open). An ended flow is
    /// kept for [`super::ENDED_KEPT_NS`] with what its records carried: an event of it still in the
    /// ring (a first drop just before the take) is drained after its last record and must
    /// find it there, not pass for a new flow's and count its packets again.
    pub(super) ended_ns: u64,
    /// Taken over from what an earlier agent wrote (the ledger, or a retired table's seed):
    /// its start event went to that agent, so when it is gone from the table (ended or
    /// evicted while no agent ran) nothing is left to write.
    pub(super) adopted: bool,
    /// The rule its first drop's event named: a flow whose queries a name drops keeps a pass
    /// verdict (no rule) in its entry, and its later records' drops are that rule's.
    pub(super) drop_rule: Option<u32>,
    /// This agent's last line of the flow is an `active` slice that carried packets: the
    /// flow's end is then written even with nothing new, since a slice reads "continued by
    /// the next line". Kept in memory only: a flow adopted from an earlier agent's ledger
    /// (whose last line, after a kill, may already be the closing one) ends as before.
    pub(super) sliced: bool,
    /// Its last record is written but its take waits until the sink can write it (a full
    /// disk): gone from the table with nothing new since, it ended, and no eviction lost it.
    pub(super) ended_untaken: bool,
    /// Kernel time a walk last saved its snapshot to the file of open flows
    /// ([`super::spill::WALK_SAVE_NS`]), and whether a walk saw it count more since.
    pub(super) saved_ns: u64,
    pub(super) unsaved: bool,
}

impl Tracked {
    /// Keeps `v` if it is further along than the snapshot held: an event drained after a
    /// walk carries an older one (an entry's counts only grow). True if it counted more.
    pub(super) fn saw(&mut self, v: &FlowValue) -> bool {
        let along = |v: &FlowValue| v.packets[0] + v.packets[1] + v.drops;
        match self.latest.as_ref() {
            Some(l) if along(v) < along(l) => false,
            l => {
                let more = l.is_none_or(|l| along(v) > along(l));
                self.latest = Some(*v);
                more
            }
        }
    }

    /// Whether an entry made at `first_seen_ns` is this flow's (either time unknown: 0).
    pub(super) fn same_flow(&self, first_seen_ns: u64) -> bool {
        self.first_seen_ns == 0 || first_seen_ns == 0 || self.first_seen_ns == first_seen_ns
    }

    /// Whether all it was seen to hold is nothing: a flow a DNS query made, read before the
    /// slow path judged the query and counted it in. Gone since, it is no eviction to write
    /// or count: the slow path took it out again (the query summarised past the drop-record
    /// budget) or counted its loss (`lost_flow_start`).
    pub(super) fn held_nothing(&self) -> bool {
        self.reported == Reported::default()
            && self
                .latest
                .is_some_and(|l| l.packets == [0, 0] && l.drops == 0)
    }

    /// Whether it was taken over from an earlier agent and its records hold all it was seen
    /// to count (or nothing of it was seen): gone from the table, nothing is left to write.
    pub(super) fn adopted_and_written(&self) -> bool {
        self.adopted && self.latest.is_none_or(|l| written(&l, &self.reported))
    }

    /// Whether it ended with its take waiting for a full disk and shows nothing new since:
    /// gone from the table, no eviction lost anything of it.
    pub(super) fn ended_with_nothing_new(&self) -> bool {
        self.ended_untaken && self.latest.is_none_or(|l| written(&l, &self.reported))
    }

    /// Whether the ledger holds the flow: while something of it was written, open or ended
    /// and remembered ([`super::ENDED_KEPT_NS`]). An ended flow's start event or first drop's may
    /// still be in the ring, which outlives this agent, when a stop or a kill comes (an agent
    /// behind under load), and the next agent, draining it, must find what the flow's records
    /// carried, not take it for a flow the LRU evicted and write its packets again. The next
    /// agent drops such entries at its first sweep.
    pub(super) fn in_ledger(&self) -> bool {
        self.reported != Reported::default()
    }
}

/// Of two accounts of what a flow's records carried, the one that carries more: the ledger
/// and the file of open flows may each be a settle behind the other.
pub(super) fn further(a: Reported, b: Reported) -> Reported {
    let along = |r: &Reported| r.packets[0] + r.packets[1] + r.drops;
    if along(&b) > along(&a) {
        b
    } else {
        a
    }
}

/// Whether records carrying `r` hold everything the snapshot `v` counted.
pub(super) fn written(v: &FlowValue, r: &Reported) -> bool {
    v.packets[0] <= r.packets[0] && v.packets[1] <= r.packets[1] && v.drops <= r.drops
}
