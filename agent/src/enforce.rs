//! Writes compiled lists into the program's maps, in an order that never lets a packet see a
//! half-applied list: blocklist insertions, then allowlist insertions, then allowlist
//! removals, then blocklist removals, and the generation bump last (which makes every flow
//! recompute its cached verdict at its next packet). An entry present before and after is
//! never touched, so nothing blocked in both versions is ever un-blocked.

use agent_common::{
    names,
    rules::{PortKey, RuleId},
};
use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, MapError};
use aya::Ebpf;

use crate::blocklist::tables::ListDelta;
use crate::blocklist::{CompiledLists, Delta, ListSet};

/// Errors naming the map and the capacity flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// A map the object should have is missing or of another type.
    #[error("the XDP object has no usable map {0}")]
    Missing(&'static str),
    /// A table would outgrow the capacity it was created with.
    #[error(
        "map {map} holds at most {capacity} entries and the lists need {needed}; \
         restart the agent (tables are sized from the lists at start) or raise --list-capacity"
    )]
    Capacity {
        /// The map.
        map: &'static str,
        /// Its size.
        capacity: u32,
        /// What the new lists need.
        needed: usize,
    },
    /// The thread loading a map panicked.
    #[error("loading map {0} failed unexpectedly (thread panicked)")]
    Panicked(&'static str),
    /// A map update failed.
    #[error("updating map {map}: {source}")]
    Update {
        /// The map.
        map: &'static str,
        /// The cause.
        source: MapError,
    },
}

/// Why a reload did not reach the kernel.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The lists would outgrow a table: nothing was written, the files keep their last good
    /// version.
    #[error("{}: not applied, the tables cannot hold it ({source}); the last good version stays in force", files_list(.files))]
    TooLarge {
        /// The files of the reload.
        files: Vec<std::path::PathBuf>,
        /// Which table, and by how much.
        source: EnforceError,
    },
    /// A map update failed part way: the maps may hold part of the reload.
    #[error(transparent)]
    Failed(EnforceError),
}

fn files_list(files: &[std::path::PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// Map names of one list kind, table by table.
struct Names {
    v4: &'static str,
    v6: &'static str,
    net4: &'static str,
    net6: &'static str,
    ports: &'static str,
    domains: &'static str,
}

const ALLOW: Names = Names {
    v4: names::ALLOW_V4,
    v6: names::ALLOW_V6,
    net4: names::ALLOW_NET4,
    net6: names::ALLOW_NET6,
    ports: names::ALLOW_PORTS,
    domains: names::ALLOW_DOMAINS,
};
const BLOCK: Names = Names {
    v4: names::BLOCK_V4,
    v6: names::BLOCK_V6,
    net4: names::BLOCK_NET4,
    net6: names::BLOCK_NET6,
    ports: names::BLOCK_PORTS,
    domains: names::BLOCK_DOMAINS,
};

/// The tables of one list kind.
struct KindMaps {
    names: &'static Names,
    v4: HashMap<MapData, [u8; 4], RuleId>,
    v6: HashMap<MapData, [u8; 16], RuleId>,
    net4: LpmTrie<MapData, [u8; 4], RuleId>,
    net6: LpmTrie<MapData, [u8; 16], RuleId>,
    ports: HashMap<MapData, PortKey, RuleId>,
    domains: HashMap<MapData, u64, RuleId>,
}

/// Takes map `name` out of the object as a typed map.
fn take<T: TryFrom<Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, EnforceError> {
    let map = ebpf.take_map(name).ok_or(EnforceError::Missing(name))?;
    T::try_from(map).map_err(|_| EnforceError::Missing(name))
}

fn upd(map: &'static str) -> impl Fn(MapError) -> EnforceError {
    move |source| EnforceError::Update { map, source }
}

/// A delete of an absent key is not an error: the state the delta wants holds already.
fn ignore_missing(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        other => other,
    }
}

impl KindMaps {
    fn take(ebpf: &mut Ebpf, names: &'static Names) -> Result<Self, EnforceError> {
        Ok(Self {
            names,
            v4: take(ebpf, names.v4)?,
            v6: take(ebpf, names.v6)?,
            net4: take(ebpf, names.net4)?,
            net6: take(ebpf, names.net6)?,
            ports: take(ebpf, names.ports)?,
            domains: take(ebpf, names.domains)?,
        })
    }

    /// Inserts every upsert. The IPv4 exact table (usually most of a list) is written on a
    /// second thread: one syscall per entry makes a million-entry load CPU-bound.
    fn upsert(&mut self, d: &ListDelta) -> Result<(), EnforceError> {
        let n = self.names;
        let Self {
            v4,
            v6,
            net4,
            net6,
            ports,
            domains,
            ..
        } = self;
        let v4_entries = &d.v4_exact.upsert;
        std::thread::scope(|scope| {
            let v4_thread = scope.spawn(move || -> Result<(), EnforceError> {
                for (a, id) in v4_entries {
                    v4.insert(a.to_be_bytes(), id, 0).map_err(upd(n.v4))?;
                }
                Ok(())
            });
            let rest = Self::upsert_rest(n, v6, net4, net6, ports, domains, d);
            let v4_result = v4_thread
                .join()
                .unwrap_or(Err(EnforceError::Panicked(n.v4)));
            rest.and(v4_result)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn upsert_rest(
        n: &Names,
        v6: &mut HashMap<MapData, [u8; 16], RuleId>,
        net4: &mut LpmTrie<MapData, [u8; 4], RuleId>,
        net6: &mut LpmTrie<MapData, [u8; 16], RuleId>,
        ports: &mut HashMap<MapData, PortKey, RuleId>,
        domains: &mut HashMap<MapData, u64, RuleId>,
        d: &ListDelta,
    ) -> Result<(), EnforceError> {
        for (a, id) in &d.v6_exact.upsert {
            v6.insert(a.to_be_bytes(), id, 0).map_err(upd(n.v6))?;
        }
        for (net, id) in &d.v4_prefix.upsert {
            let k = net.lpm_key();
            net4.insert(&Key::new(k.prefix_len, k.addr), id, 0)
                .map_err(upd(n.net4))?;
        }
        for (net, id) in &d.v6_prefix.upsert {
            let k = net.lpm_key();
            net6.insert(&Key::new(k.prefix_len, k.addr), id, 0)
                .map_err(upd(n.net6))?;
        }
        for (slot, id) in &d.ports.upsert {
            ports.insert(slot.key(), id, 0).map_err(upd(n.ports))?;
        }
        for (h, id) in &d.domains.upsert {
            domains.insert(h, id, 0).map_err(upd(n.domains))?;
        }
        Ok(())
    }

    fn remove(&mut self, d: &ListDelta) -> Result<(), EnforceError> {
        let n = self.names;
        for a in &d.v4_exact.remove {
            ignore_missing(self.v4.remove(&a.to_be_bytes())).map_err(upd(n.v4))?;
        }
        for a in &d.v6_exact.remove {
            ignore_missing(self.v6.remove(&a.to_be_bytes())).map_err(upd(n.v6))?;
        }
        for net in &d.v4_prefix.remove {
            let k = net.lpm_key();
            ignore_missing(self.net4.remove(&Key::new(k.prefix_len, k.addr)))
                .map_err(upd(n.net4))?;
        }
        for net in &d.v6_prefix.remove {
            let k = net.lpm_key();
            ignore_missing(self.net6.remove(&Key::new(k.prefix_len, k.addr)))
                .map_err(upd(n.net6))?;
        }
        for slot in &d.ports.remove {
            ignore_missing(self.ports.remove(&slot.key())).map_err(upd(n.ports))?;
        }
        for h in &d.domains.remove {
            ignore_missing(self.domains.remove(h)).map_err(upd(n.domains))?;
        }
        Ok(())
    }
}

/// Per-table sizes for the program's list maps, from the lists loaded at start: twice what
/// they hold (room for edits), at least `floor`.
pub fn capacities(lists: &CompiledLists, floor: u32) -> Vec<(&'static str, u32)> {
    let size = |n: usize| (n.saturating_mul(2)).clamp(floor as usize, u32::MAX as usize) as u32;
    let mut out = Vec::new();
    for (names, l) in [(&ALLOW, &lists.allow), (&BLOCK, &lists.block)] {
        out.extend([
            (names.v4, size(l.v4_exact.len())),
            (names.v6, size(l.v6_exact.len())),
            (names.net4, size(l.v4_prefix.len())),
            (names.net6, size(l.v6_prefix.len())),
            (names.ports, size(l.ports.len())),
            (names.domains, size(l.domains.len())),
        ]);
    }
    let rules = lists.allow.stats.kept() + lists.block.stats.kept();
    out.push((names::RULE_HITS, size(rules)));
    out
}

/// The program's list maps.
pub struct ListMaps {
    allow: KindMaps,
    block: KindMaps,
    generation: Array<MapData, u64>,
    hits: HashMap<MapData, RuleId, u64>,
    roles: HashMap<MapData, u32, u8>,
    capacity: Vec<(&'static str, u32)>,
}

impl ListMaps {
    /// Takes the list maps out of the loaded object; `capacity` is what they were created with.
    pub fn take(ebpf: &mut Ebpf, capacity: Vec<(&'static str, u32)>) -> Result<Self, EnforceError> {
        Ok(Self {
            allow: KindMaps::take(ebpf, &ALLOW)?,
            block: KindMaps::take(ebpf, &BLOCK)?,
            generation: take(ebpf, names::GENERATION)?,
            hits: take(ebpf, names::RULE_HITS)?,
            roles: take(ebpf, names::IFACE_ROLES)?,
            capacity,
        })
    }

    fn cap(&self, map: &'static str) -> u32 {
        self.capacity
            .iter()
            .find(|(n, _)| *n == map)
            .map_or(u32::MAX, |(_, c)| *c)
    }

    /// Refuses lists that would overflow a table, before anything is written. Between the
    /// upserts and the removals a table briefly holds both versions' entries.
    fn check_capacity(&self, after: &CompiledLists, delta: &Delta) -> Result<(), EnforceError> {
        for (names, l, d) in [
            (&ALLOW, &after.allow, &delta.allow),
            (&BLOCK, &after.block, &delta.block),
        ] {
            let checks = [
                (names.v4, l.v4_exact.len() + d.v4_exact.remove.len()),
                (names.v6, l.v6_exact.len() + d.v6_exact.remove.len()),
                (names.net4, l.v4_prefix.len() + d.v4_prefix.remove.len()),
                (names.net6, l.v6_prefix.len() + d.v6_prefix.remove.len()),
                (names.ports, l.ports.len() + d.ports.remove.len()),
                (names.domains, l.domains.len() + d.domains.remove.len()),
            ];
            for (map, needed) in checks {
                let capacity = self.cap(map);
                if needed > capacity as usize {
                    return Err(EnforceError::Capacity {
                        map,
                        capacity,
                        needed,
                    });
                }
            }
        }
        Ok(())
    }

    /// Applies `delta` (which leads to `after`) and publishes its generation.
    pub fn apply(&mut self, after: &CompiledLists, delta: &Delta) -> Result<(), EnforceError> {
        self.check_capacity(after, delta)?;
        self.reset_hits(delta)?;
        self.block.upsert(&delta.block)?;
        self.allow.upsert(&delta.allow)?;
        self.allow.remove(&delta.allow)?;
        self.block.remove(&delta.block)?;
        self.set_generation(delta.generation)
    }

    /// Applies a reload of `set` (`delta`). When the tables cannot hold the result, nothing
    /// is written: the reload is taken back in `set`, its files keep their last good version
    /// (as with a bad line), and later reloads apply as usual. Any other error may leave
    /// the maps half-updated, and the caller must not build on them.
    pub fn apply_reload(&mut self, set: &mut ListSet, delta: &Delta) -> Result<(), ReloadError> {
        match self.apply(set.compiled(), delta) {
            Ok(()) => Ok(()),
            Err(e @ EnforceError::Capacity { .. }) => {
                let files = set
                    .last_reloaded()
                    .iter()
                    .map(|p| p.to_path_buf())
                    .collect();
                let back = set.revert();
                // Everything the reload added never reached the maps, and everything it
                // removed is still there: write only what takes back its rule ids.
                let taken_back = self
                    .reset_hits(&back)
                    .and_then(|()| self.block.upsert(&back.block))
                    .and_then(|()| self.allow.upsert(&back.allow))
                    .and_then(|()| self.set_generation(back.generation));
                match taken_back {
                    Ok(()) => Err(ReloadError::TooLarge { files, source: e }),
                    Err(e) => Err(ReloadError::Failed(e)),
                }
            }
            Err(e) => Err(ReloadError::Failed(e)),
        }
    }

    fn reset_hits(&mut self, delta: &Delta) -> Result<(), EnforceError> {
        for id in &delta.assigned {
            // A reused id starts counting afresh.
            ignore_missing(self.hits.remove(id)).map_err(upd(names::RULE_HITS))?;
        }
        Ok(())
    }

    fn set_generation(&mut self, generation: u64) -> Result<(), EnforceError> {
        self.generation
            .set(0, generation, 0)
            .map_err(upd(names::GENERATION))
    }

    /// Marks an interface as internet-facing: rules match packets' sources there.
    pub fn set_wan(&mut self, ifindex: u32) -> Result<(), EnforceError> {
        self.roles
            .insert(ifindex, agent_common::role::WAN, 0)
            .map_err(upd(names::IFACE_ROLES))
    }

    /// Packets counted for rule `id`.
    pub fn hits(&self, id: RuleId) -> u64 {
        self.hits.get(&id, 0).unwrap_or(0)
    }

    /// Every rule that matched at least once, with its packet count.
    pub fn all_hits(&self) -> Vec<(RuleId, u64)> {
        self.hits.iter().filter_map(Result::ok).collect()
    }
}
