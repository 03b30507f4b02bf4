//! The sweeper's ledger beside the flow tables: for each open flow that has had an interim
//! record (active timeout, first drop, a pinned agent's shutdown), the counters that record
//! carried ([`Reported`]). The sweeper keeps the same in memory; the ledger is its copy in a
//! map pinned with the program's, so an agent that adopts the pins after a crash or a restart
//! writes only what followed, never a slice twice.
//!
//! Its updates wait in memory until the records they follow are in the journal file: the
//! sweeper hands them over ([`Ledger::commit`]) right after the sink's flush (a `write(2)`),
//! so a kill before it leaves the ledger as it was and the next agent writes those slices
//! from the table (nothing lost); a kill between the flush and the map updates can make the
//! next agent write those slices again; after it, only a power cut within the fsync interval
//! loses them, as for every record.

use agent_common::{names, FlowKey, Reported};
use aya::maps::{HashMap, MapData, MapError};
use tracing::warn;

use crate::throttle::Throttle;

/// The ledger map, typed.
pub struct Ledger {
    map: HashMap<MapData, FlowKey, Reported>,
    /// Updates waiting for [`Ledger::commit`], in order: `None` removes the key.
    pending: Vec<(FlowKey, Option<Reported>)>,
    errors: u64,
    warned: Throttle,
}

/// Updates held before the sweeper flushes the sink and commits them on its own, so a sweep
/// that slices a million flows holds a bounded list (some 360 KB).
pub const COMMIT_EVERY: usize = 4_096;

impl Ledger {
    /// The ledger in `map` (a hash of [`FlowKey`] to [`Reported`]).
    pub fn new(map: MapData) -> Result<Self, MapError> {
        let map = HashMap::try_from(aya::maps::Map::HashMap(map))?;
        Ok(Self {
            map,
            pending: Vec::new(),
            errors: 0,
            warned: Throttle::default(),
        })
    }

    /// Every flow its map holds, with what was reported of it (updates waiting for
    /// [`Ledger::commit`] are not among them).
    pub fn entries(&self) -> Vec<(FlowKey, Reported)> {
        self.map.iter().filter_map(Result::ok).collect()
    }

    /// Notes what `key`'s records carry now, at the next [`Ledger::commit`].
    pub fn set(&mut self, key: &FlowKey, reported: &Reported) {
        self.pending.push((*key, Some(*reported)));
    }

    /// Forgets `key` (its flow ended or left the table), at the next [`Ledger::commit`].
    pub fn remove(&mut self, key: &FlowKey) {
        self.pending.push((*key, None));
    }

    /// Updates waiting for [`Ledger::commit`].
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes the waiting updates into the map, in order: call it once the records they
    /// follow are in the journal file.
    pub fn commit(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        for (key, reported) in pending.drain(..) {
            match reported {
                Some(r) => {
                    let result = self.map.insert(key, r, 0);
                    self.note(result, "update");
                }
                None => self.delete(&key),
            }
        }
        self.pending = pending; // its capacity, for the next batch
    }

    fn delete(&mut self, key: &FlowKey) {
        match self.map.remove(key) {
            Err(MapError::KeyNotFound) => {}
            Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            }
            other => self.note(other, "remove"),
        }
    }

    /// Updates that failed so far (the ledger full, or the kernel refusing).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    fn note(&mut self, r: Result<(), MapError>, op: &str) {
        if let Err(e) = r {
            self.errors += 1;
            if let Some(n) = self.warned.hit(1) {
                warn!(
                    map = names::REPORTED,
                    error = %e,
                    failures = n,
                    total = self.errors,
                    "ledger {op} failed: after a restart these flows' next records may repeat \
                     counters already written (logged at most every 10 s)"
                );
            }
        }
    }
}
