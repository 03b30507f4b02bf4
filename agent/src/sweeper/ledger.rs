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
//! loses them, as for every record. While the sink holds records it cannot write (a full
//! disk), no commit comes: the updates wait, folded one per key.

use std::collections::HashMap as KeyMap;
use std::os::fd::AsFd;

use agent_common::{names, FlowKey, Reported};
use aya::maps::{HashMap, IterableMap, MapData, MapError};
use foldhash::fast::RandomState;
use tracing::warn;

use crate::flowtable::write_batch;
use crate::throttle::Throttle;

/// The ledger map, typed.
pub struct Ledger {
    map: HashMap<MapData, FlowKey, Reported>,
    /// Updates waiting for [`Ledger::commit`], in order: `None` removes the key.
    pending: Vec<(FlowKey, Option<Reported>)>,
    /// [`Ledger::commit`]'s buffers, kept for their capacity.
    batch: Batch,
    /// Keys a batch no commit took may hold before [`Ledger::overdue`]: the map's size.
    bound: usize,
    errors: u64,
    warned: Throttle,
}

/// One commit's updates, the last of each key.
#[derive(Default)]
struct Batch {
    /// Each key's last update: `None` removes it.
    last: KeyMap<FlowKey, Option<Reported>, RandomState>,
    set_keys: Vec<FlowKey>,
    set_values: Vec<Reported>,
    remove_keys: Vec<FlowKey>,
}

/// Updates held before the sweeper flushes the sink and commits them on its own, so a sweep
/// that slices a million flows holds a bounded list (some 360 KB).
pub const COMMIT_EVERY: usize = 4_096;

impl Ledger {
    /// The ledger in `map` (a hash of [`FlowKey`] to [`Reported`]).
    pub fn new(map: MapData) -> Result<Self, MapError> {
        let bound = map.info().map_or(0, |i| i.max_entries() as usize);
        let map = HashMap::try_from(aya::maps::Map::HashMap(map))?;
        Ok(Self {
            map,
            pending: Vec::new(),
            batch: Batch::default(),
            bound: bound.max(COMMIT_EVERY),
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

    /// Folds the waiting updates into one batch, the last update of each key counting,
    /// ready for [`Ledger::commit`]: the sweeper calls it before the flush the updates follow,
    /// so only the map calls sit between the two. A batch no commit took (the sink could not
    /// write its records) takes the later updates in: it holds one update per key, however
    /// long the disk refuses writes.
    pub fn prepare(&mut self) {
        for (key, reported) in self.pending.drain(..) {
            self.batch.last.insert(key, reported);
        }
    }

    /// Whether the updates no commit took (the sink could not write their records for a
    /// long while) hold more keys than the map does: then the sweeper commits them all the
    /// same, so that memory stays bounded however long the disk refuses writes.
    pub fn overdue(&self) -> bool {
        self.batch.last.len() > self.bound
    }

    /// Writes the waiting updates into the map, a batch call for the changed entries and one
    /// for the removed ones: call it once the records they follow are in the journal file.
    /// A sweep that ends flows updates the ledger twice per flow (before its take and after),
    /// so a call per update would cost more than the rest of the sweep.
    pub fn commit(&mut self) {
        self.prepare();
        if self.batch.last.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.batch);
        for (key, reported) in batch.last.drain() {
            match reported {
                Some(r) => {
                    batch.set_keys.push(key);
                    batch.set_values.push(r);
                }
                None => batch.remove_keys.push(key),
            }
        }
        let fd = self.map.map().fd().as_fd();
        let mut failed = Vec::new();
        // SAFETY: the map is a hash of `FlowKey` to `Reported`: `HashMap::try_from` checked
        // its key and value sizes in `Ledger::new`.
        let removes = unsafe {
            write_batch(fd, &batch.remove_keys, None::<&[Reported]>, |e| {
                if e.kind() != std::io::ErrorKind::NotFound {
                    failed.push(("remove", e));
                }
            })
        };
        // SAFETY: as above.
        let sets = unsafe {
            write_batch(fd, &batch.set_keys, Some(&batch.set_values), |e| {
                failed.push(("update", e))
            })
        };
        for (op, e) in failed {
            self.note(Err(e), op);
        }
        match removes {
            Ok(true) => {}
            Ok(false) => {
                for key in &batch.remove_keys {
                    self.delete(key);
                }
            }
            Err(e) => self.note(Err(e), "remove"),
        }
        match sets {
            Ok(true) => {}
            Ok(false) => {
                for (key, r) in batch.set_keys.iter().zip(&batch.set_values) {
                    let result = self.map.insert(*key, *r, 0);
                    self.note(result, "update");
                }
            }
            Err(e) => self.note(Err(e), "update"),
        }
        batch.set_keys.clear();
        batch.set_values.clear();
        batch.remove_keys.clear();
        self.batch = batch;
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

    fn note<E: std::fmt::Display>(&mut self, r: Result<(), E>, op: &str) {
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
