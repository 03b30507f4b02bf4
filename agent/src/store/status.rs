//! What the store says of itself: its counters ([`StoreStatus`], in `status.json` and the
//! metrics) and where its time goes ([`Timings`]).

use super::LiveJournal;

/// Counters describing the store's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreStatus {
    /// Records accepted since open (dropped ones excluded).
    pub accepted: u64,
    /// Of those, records made durable by fsync.
    pub durable: u64,
    /// Records held in memory, not yet written.
    pub buffered: u64,
    /// Records dropped because the memory buffer was full while the disk refused writes.
    pub dropped: u64,
    /// Of [`StoreStatus::buffered`], the records nothing but this agent's memory keeps (the
    /// others a pinned flow table and its ledger keep; see `StoreConfig::kept_by_pins`);
    /// `None` in an older agent's snapshot: all of them.
    #[serde(default)]
    pub buffered_unkept: Option<u64>,
    /// Records still held in memory, and kept nowhere else, when the store closed on a disk
    /// that refused them: lost with the process (the next agent alerts them).
    #[serde(default)]
    pub lost_at_stop: u64,
    /// Whether the disk currently refuses writes: the journal's (records are held in memory),
    /// or the last seal's or compaction's (journals wait, in order, and are retried).
    pub degraded: bool,
    /// Whether the journal itself refuses writes: [`StoreStatus::buffered`] records are then
    /// held in memory only, and a killed agent loses them.
    #[serde(default)]
    pub journal_refused: bool,
    /// Warnings emitted about the condition (at most one per minute).
    pub reports: u64,
    /// Segments sealed since open.
    pub sealed: u64,
    /// Segments merged into daily ones since open (see `compact`).
    #[serde(default)]
    pub compacted: u64,
    /// Closed days the last compaction pass could not merge (a changed or damaged segment;
    /// a full disk is reported as [`StoreStatus::degraded`] instead).
    #[serde(default)]
    pub compact_failed_days: u64,
    /// Rotated journals waiting for the sealer thread (or for disk space).
    pub unsealed: u64,
    /// Journals that cannot be read or sealed, left in place: those found at open, and those
    /// the sealer now passes over so the journals behind them still seal. A full disk makes
    /// none: it is [`StoreStatus::degraded`], and the journals wait in order.
    #[serde(default)]
    pub unsealable: u64,
    /// Journals deleted from the directory by someone else before their seal, since open:
    /// their records are lost.
    #[serde(default)]
    pub journals_gone: u64,
    /// Bytes of damaged or torn journals skipped since open (moved into `quarantine/`).
    #[serde(default)]
    pub journal_skipped_bytes: u64,
    /// Journal frames skipped since open, at least (exact when the damage spared their
    /// length fields; see `journal::Skipped::frames`).
    #[serde(default)]
    pub journal_skipped_frames: u64,
    /// Files moved into `quarantine/` in place of a seal, since the agent started: a copy of
    /// a sealed journal under another name, an empty journal, a file at the name of the
    /// segment being written; and the header of a journal naming another id, kept as its
    /// seal goes by the name ([`super::seal::SET_ASIDE`]).
    #[serde(default)]
    pub set_aside: u64,
    /// Records whose texts were shortened to fit a journal frame (a rule with a very long list
    /// path; see `journal::frame::encode_frame`), since open.
    #[serde(default)]
    pub shortened_records: u64,
    /// Why `manifest.jsonl` could not be read at the open: the store records into journals
    /// only, which wait unsealed until it is restored and the agent restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_unreadable: Option<String>,
    /// The retention in force, days (what `xdp-audit compliance` checks the config against).
    #[serde(default)]
    pub retention_days: u32,
    /// Durations of journal fsyncs, seals and compactions since open.
    #[serde(default)]
    pub timings: StoreTimings,
    /// The live journal while records were made durable in it: a next start on the same
    /// store that finds it neither on disk nor sealed in the chain names the loss
    /// ([`super::seal::journal_gone`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_journal: Option<LiveJournal>,
}

/// Where the store's time goes, recorded by the thread that spends it.
#[derive(Debug, Default)]
pub struct Timings {
    /// Each journal fsync (records thread).
    pub fsync: crate::metrics::histogram::Histogram,
    /// Each seal of a journal into a segment (sealer thread).
    pub seal: crate::metrics::histogram::Histogram,
    /// Each compaction pass that merged segments (sealer thread).
    pub compact: crate::metrics::histogram::Histogram,
}

/// [`Timings`] at one moment, as `status.json` and `/metrics` show them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreTimings {
    /// Journal fsyncs.
    pub fsync: crate::metrics::histogram::Timing,
    /// Seals.
    pub seal: crate::metrics::histogram::Timing,
    /// Compaction passes that merged segments.
    pub compact: crate::metrics::histogram::Timing,
}

impl Timings {
    /// What they hold now.
    pub fn snapshot(&self) -> StoreTimings {
        StoreTimings {
            fsync: self.fsync.timing(),
            seal: self.seal.timing(),
            compact: self.compact.timing(),
        }
    }
}

impl StoreStatus {
    /// Of the records held in memory, those nothing else keeps (all of them in an older
    /// agent's snapshot, which does not say).
    pub fn unkept(&self) -> u64 {
        self.buffered_unkept
            .unwrap_or(self.buffered)
            .min(self.buffered)
    }

    /// Of the records held in memory, those the pinned flow table and ledger also keep.
    pub fn kept(&self) -> u64 {
        self.buffered - self.unkept()
    }
}
