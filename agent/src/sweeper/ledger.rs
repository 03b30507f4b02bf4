//! The sweeper's ledger beside the flow tables: for each open flow that has had an interim
//! record (active timeout, first drop, a pinned agent's shutdown), the counters that record
//! carried ([`Reported`]). The sweeper keeps the same in memory; the ledger is its copy in a
//! map pinned with the program's, so an agent that adopts the pins after a crash or a restart
//! writes only what followed, never a slice twice.
//!
//! It is written right after the record is handed to the sink: a crash between the two (a
//! window of one map update) can make the next agent write that one slice again; a crash
//! after it loses what the store loses of its last fsync interval, as for every record.

use agent_common::{names, FlowKey, Reported};
use aya::maps::{HashMap, MapData, MapError};
use tracing::warn;

use crate::throttle::Throttle;

/// The ledger map, typed.
pub struct Ledger {
    map: HashMap<MapData, FlowKey, Reported>,
    errors: u64,
    warned: Throttle,
}

impl Ledger {
    /// The ledger in `map` (a hash of [`FlowKey`] to [`Reported`]).
    pub fn new(map: MapData) -> Result<Self, MapError> {
        let map = HashMap::try_from(aya::maps::Map::HashMap(map))?;
        Ok(Self {
            map,
            errors: 0,
            warned: Throttle::default(),
        })
    }

    /// Every flow it holds, with what was reported of it.
    pub fn entries(&self) -> Vec<(FlowKey, Reported)> {
        self.map.iter().filter_map(Result::ok).collect()
    }

    /// Notes what `key`'s records carry now.
    pub fn set(&mut self, key: &FlowKey, reported: &Reported) {
        let r = self.map.insert(key, reported, 0);
        self.note(r, "update");
    }

    /// Forgets `key` (its flow ended or left the table).
    pub fn remove(&mut self, key: &FlowKey) {
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
