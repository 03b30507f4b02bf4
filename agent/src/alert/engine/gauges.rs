//! What the engine reads of the agent's state: a status snapshot's counters and the kernel
//! clock's state ([`Gauges`]).

use crate::status::Snapshot;

/// What the engine reads from a status snapshot, and the kernel clock's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Ring-buffer reserve failures: flow events and payload copies (program counters).
    pub ring_lost: u64,
    /// Flows the program could not insert into its table (program counter).
    pub insert_failed: u64,
    /// Frames dropped for a third VLAN tag (program counter `skip_too_many_vlans`).
    pub vlan_stacked: u64,
    /// Flows whose start event never reached the sweeper.
    pub lost_starts: u64,
    /// Flows whose start event was lost and that the table evicted before a sweep found them
    /// (apart from `lost_starts`): no record holds them.
    pub lost_unseen: u64,
    /// Flows the table evicted before they ended (written from their last snapshot).
    pub evicted: u64,
    /// Entries of the fuller flow table.
    pub table_entries: u64,
    /// The store's disk refuses writes.
    pub store_degraded: bool,
    /// Records the store dropped or refused.
    pub store_refused: u64,
    /// Journal frames damage made the store skip (kept in `quarantine/`).
    pub store_skipped_frames: u64,
    /// Journal bytes skipped so (a damaged header holds no frame, but bytes).
    pub store_skipped_bytes: u64,
    /// Journals the store cannot read or seal, left in place.
    pub store_unsealable: u64,
    /// Journals deleted by someone else before their seal.
    pub store_journals_gone: u64,
    /// Files moved into `quarantine/` in place of a seal.
    pub store_set_aside: u64,
    /// The manifest could not be read at the open: journals only, nothing sealed.
    pub manifest_unreadable: bool,
    /// adjtimex says the clock is not synchronised.
    pub clock_unsynced: bool,
    /// Failed shipping passes (with `--ship`).
    pub ship_failures: u64,
    /// Segments waiting to be shipped.
    pub ship_backlog: u64,
    /// The last shipping pass failed (and no later one succeeded yet).
    pub ship_failing: bool,
    /// Messages the syslog stage dropped (with `--syslog`).
    pub syslog_dropped: u64,
    /// The state directory refused the status snapshot's write.
    pub state_unwritable: bool,
    /// Bytes of the last agent's file of open flows this agent could not read.
    pub open_flows_damaged: u64,
}

impl Gauges {
    /// The program's loss and evasion counters of `counters` (a snapshot's), the rest zero.
    pub fn program(counters: &std::collections::BTreeMap<String, u64>) -> Self {
        let c = |name: &str| counters.get(name).copied().unwrap_or(0);
        Self {
            ring_lost: c("lost_flow_start")
                + c("lost_flow_end")
                + c("lost_flow_drop")
                + c("lost_payload"),
            insert_failed: c("flow_insert_failed"),
            vlan_stacked: c("skip_too_many_vlans"),
            ..Self::default()
        }
    }

    /// The gauges of `snap`, with the clock's state read separately.
    pub fn of(snap: &Snapshot, clock_unsynced: bool) -> Self {
        let program = Self::program(&snap.counters);
        Self {
            ring_lost: program.ring_lost,
            insert_failed: program.insert_failed,
            vlan_stacked: program.vlan_stacked,
            lost_starts: snap.flows.lost_starts,
            lost_unseen: snap.flows.lost_unseen,
            evicted: snap.flows.evicted,
            table_entries: snap.flows.table_v4.max(snap.flows.table_v6),
            store_degraded: snap.store.degraded,
            store_refused: snap.records_lost(),
            store_skipped_frames: snap.store.journal_skipped_frames,
            store_skipped_bytes: snap.store.journal_skipped_bytes,
            store_unsealable: snap.store.unsealable,
            store_journals_gone: snap.store.journals_gone,
            store_set_aside: snap.store.set_aside,
            manifest_unreadable: snap.store.manifest_unreadable.is_some(),
            clock_unsynced,
            ship_failures: snap.ship.as_ref().map_or(0, |s| s.failures),
            ship_backlog: snap.ship.as_ref().map_or(0, |s| s.backlog_segments),
            ship_failing: snap.ship.as_ref().is_some_and(|s| s.last_error.is_some()),
            syslog_dropped: snap.syslog.as_ref().map_or(0, |s| s.dropped),
            state_unwritable: snap.observe.state_unwritable,
            open_flows_damaged: snap.flows.restore_damaged,
        }
    }
}
