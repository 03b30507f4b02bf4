//! Writes compiled lists into the program's maps, in an order that never lets a packet see a
//! half-applied list: the IPv4 cover widened, blocklist insertions, then allowlist
//! insertions, then allowlist removals, then blocklist removals, the cover narrowed, and the
//! generation bump last (which makes every flow
//! recompute its cached verdict at its next packet). An entry present before and after is
//! never touched, so nothing blocked in both versions is ever un-blocked.

use std::os::fd::AsFd;

use agent_common::{
    domain::DomainKey,
    names, role,
    rules::{empty, PortKey, RuleId},
};
use aya::maps::{
    lpm_trie::Key, Array, HashMap, IterableMap, LpmTrie, Map, MapData, MapError, PerCpuArray,
    PerCpuValues,
};

use crate::blocklist::{CompiledList, Delta, ListDelta, ListKind, PortSlot, Table};
use crate::loader::MapSource;
use crate::net::Net;

/// Errors naming the map and the capacity flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// A map the object should have is missing or of another type.
    #[error("the XDP object has no usable map {0}")]
    Missing(&'static str),
    /// The thread loading a map panicked.
    #[error("loading map {0} failed unexpectedly (thread panicked)")]
    Panicked(&'static str),
    /// A map could not be read back.
    #[error("reading map {map}")]
    Read {
        /// The map.
        map: &'static str,
        /// The cause.
        source: MapError,
    },
    /// A map holds one rule id under two keys: not what this agent writes.
    #[error(
        "map {map} holds rule id {id} twice; the list maps were changed by something else than \
         xdp-audit: remove the instance with `xdp-audit detach` and start afresh"
    )]
    DuplicateId {
        /// The map.
        map: &'static str,
        /// The id.
        id: RuleId,
    },
    /// A map update failed.
    #[error("updating map {map}")]
    Update {
        /// The map.
        map: &'static str,
        /// The cause.
        source: MapError,
    },
    /// The per-CPU rule hit counters could not be sized: the CPU count is unreadable.
    #[error("cannot count the possible CPUs for the per-CPU map RULE_HITS: {0}; is /sys mounted?")]
    Cpus(std::io::Error),
}

/// The tables of one list kind.
struct KindMaps {
    kind: ListKind,
    v4: HashMap<MapData, [u8; 4], RuleId>,
    v6: HashMap<MapData, [u8; 16], RuleId>,
    net4: LpmTrie<MapData, [u8; 4], RuleId>,
    net6: LpmTrie<MapData, [u8; 16], RuleId>,
    ports: HashMap<MapData, PortKey, RuleId>,
    domains: HashMap<MapData, u64, RuleId>,
}

/// Takes map `name` out of the object (or the pins) as a typed map.
fn take<T: TryFrom<Map, Error = MapError>>(
    src: &mut impl MapSource,
    name: &'static str,
) -> Result<T, EnforceError> {
    let map = src.take_map(name).ok_or(EnforceError::Missing(name))?;
    T::try_from(map).map_err(|_| EnforceError::Missing(name))
}

/// Every entry of a map, sorted by key, as the compiler keeps its tables.
fn read_sorted<K: Ord, I>(
    map: &'static str,
    entries: impl Iterator<Item = Result<I, MapError>>,
    convert: impl Fn(I) -> (K, RuleId),
) -> Result<Vec<(K, RuleId)>, EnforceError> {
    let mut out = Vec::new();
    for e in entries {
        out.push(convert(
            e.map_err(|source| EnforceError::Read { map, source })?,
        ));
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
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

/// Whether `d` inserts an address, prefix or port rule.
fn fills(d: &ListDelta) -> bool {
    !(d.v4_exact.upsert.is_empty()
        && d.v4_prefix.upsert.is_empty()
        && d.v6_exact.upsert.is_empty()
        && d.v6_prefix.upsert.is_empty()
        && d.ports.upsert.is_empty())
}

impl KindMaps {
    fn take(src: &mut impl MapSource, kind: ListKind) -> Result<Self, EnforceError> {
        let name = |t: Table| t.map_name(kind);
        Ok(Self {
            kind,
            v4: take(src, name(Table::V4Exact))?,
            v6: take(src, name(Table::V6Exact))?,
            net4: take(src, name(Table::V4Prefix))?,
            net6: take(src, name(Table::V6Prefix))?,
            ports: take(src, name(Table::Ports))?,
            domains: take(src, name(Table::Domains))?,
        })
    }

    /// What the maps hold, as compiled tables (without statistics).
    fn read(&self) -> Result<CompiledList, EnforceError> {
        let name = |t: Table| t.map_name(self.kind);
        let net4 = |(k, id): (Key<[u8; 4]>, RuleId)| {
            let net = Net::new(u32::from_be_bytes(k.data()), k.prefix_len() as u8);
            (net, id)
        };
        let net6 = |(k, id): (Key<[u8; 16]>, RuleId)| {
            let net = Net::new(u128::from_be_bytes(k.data()), k.prefix_len() as u8);
            (net, id)
        };
        let port = |(k, id): (PortKey, RuleId)| {
            let slot = PortSlot {
                proto: k.proto,
                port: u16::from_be(k.port),
            };
            (slot, id)
        };
        let list = CompiledList {
            v4_exact: read_sorted(name(Table::V4Exact), self.v4.iter(), |(k, id)| {
                (u32::from_be_bytes(k), id)
            })?,
            v4_prefix: read_sorted(name(Table::V4Prefix), self.net4.iter(), net4)?,
            v6_exact: read_sorted(name(Table::V6Exact), self.v6.iter(), |(k, id)| {
                (u128::from_be_bytes(k), id)
            })?,
            v6_prefix: read_sorted(name(Table::V6Prefix), self.net6.iter(), net6)?,
            ports: read_sorted(name(Table::Ports), self.ports.iter(), port)?,
            domains: read_sorted(name(Table::Domains), self.domains.iter(), |e| e)?,
            stats: Default::default(),
        };
        Ok(list)
    }

    /// The error for a failed update of table `t`.
    fn err(&self, t: Table) -> impl Fn(MapError) -> EnforceError {
        upd(t.map_name(self.kind))
    }

    /// Inserts every upsert. The IPv4 exact table (usually most of a list) is written on a
    /// second thread: one syscall per entry makes a million-entry load CPU-bound.
    fn upsert(&mut self, d: &ListDelta) -> Result<(), EnforceError> {
        let kind = self.kind;
        let err = move |t: Table| upd(t.map_name(kind));
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
                    v4.insert(a.to_be_bytes(), id, 0)
                        .map_err(err(Table::V4Exact))?;
                }
                Ok(())
            });
            let rest = (|| -> Result<(), EnforceError> {
                for (a, id) in &d.v6_exact.upsert {
                    v6.insert(a.to_be_bytes(), id, 0)
                        .map_err(err(Table::V6Exact))?;
                }
                for (net, id) in &d.v4_prefix.upsert {
                    let k = net.lpm_key();
                    net4.insert(&Key::new(k.prefix_len, k.addr), id, 0)
                        .map_err(err(Table::V4Prefix))?;
                }
                for (net, id) in &d.v6_prefix.upsert {
                    let k = net.lpm_key();
                    net6.insert(&Key::new(k.prefix_len, k.addr), id, 0)
                        .map_err(err(Table::V6Prefix))?;
                }
                for (slot, id) in &d.ports.upsert {
                    ports.insert(slot.key(), id, 0).map_err(err(Table::Ports))?;
                }
                for (h, id) in &d.domains.upsert {
                    domains.insert(h, id, 0).map_err(err(Table::Domains))?;
                }
                Ok(())
            })();
            let v4_result = v4_thread
                .join()
                .unwrap_or(Err(EnforceError::Panicked(Table::V4Exact.map_name(kind))));
            rest.and(v4_result)
        })
    }

    /// Whether the address, prefix and port tables hold nothing (one first-key read each;
    /// an unreadable table counts as holding something).
    fn holds_no_address(&self) -> bool {
        self.v4.keys().next().is_none()
            && self.net4.keys().next().is_none()
            && self.v6.keys().next().is_none()
            && self.net6.keys().next().is_none()
            && self.ports.keys().next().is_none()
    }

    /// Whether the port table holds nothing (an unreadable table counts as holding
    /// something).
    fn holds_no_port(&self) -> bool {
        self.ports.keys().next().is_none()
    }

    /// Whether the domain table holds nothing (an unreadable table counts as holding
    /// something).
    fn holds_no_domain(&self) -> bool {
        self.domains.keys().next().is_none()
    }

    fn remove(&mut self, d: &ListDelta) -> Result<(), EnforceError> {
        for a in &d.v4_exact.remove {
            ignore_missing(self.v4.remove(&a.to_be_bytes())).map_err(self.err(Table::V4Exact))?;
        }
        for a in &d.v6_exact.remove {
            ignore_missing(self.v6.remove(&a.to_be_bytes())).map_err(self.err(Table::V6Exact))?;
        }
        for net in &d.v4_prefix.remove {
            let k = net.lpm_key();
            ignore_missing(self.net4.remove(&Key::new(k.prefix_len, k.addr)))
                .map_err(self.err(Table::V4Prefix))?;
        }
        for net in &d.v6_prefix.remove {
            let k = net.lpm_key();
            ignore_missing(self.net6.remove(&Key::new(k.prefix_len, k.addr)))
                .map_err(self.err(Table::V6Prefix))?;
        }
        for slot in &d.ports.remove {
            ignore_missing(self.ports.remove(&slot.key())).map_err(self.err(Table::Ports))?;
        }
        for h in &d.domains.remove {
            ignore_missing(self.domains.remove(h)).map_err(self.err(Table::Domains))?;
        }
        Ok(())
    }
}

/// The `COVER4` map ([`agent_common::rules::cover4`]) and its words as the map holds them,
/// read back when the maps are taken, so only the words that change are written.
struct Cover4 {
    map: Array<MapData, u64>,
    now: Vec<u64>,
}

impl Cover4 {
    fn take(src: &mut impl MapSource) -> Result<Self, EnforceError> {
        let map: Array<MapData, u64> = take(src, names::COVER4)?;
        let mut now = vec![0u64; map.len() as usize];
        let fd = map.map().fd().as_fd();
        let batch = crate::flowtable::lookup_batch(fd, 4, 8, |k, v| {
            let (Ok(k), Ok(v)) = (<[u8; 4]>::try_from(k), <[u8; 8]>::try_from(v)) else {
                return;
            };
            if let Some(w) = now.get_mut(u32::from_ne_bytes(k) as usize) {
                *w = u64::from_ne_bytes(v);
            }
        });
        if !matches!(batch, Ok(true)) {
            // No batch reads on this kernel (or one failed): word by word.
            for (i, w) in now.iter_mut().enumerate() {
                *w = map
                    .get(&(i as u32), 0)
                    .map_err(|source| EnforceError::Read {
                        map: names::COVER4,
                        source,
                    })?;
            }
        }
        Ok(Self { map, now })
    }

    /// Writes the words of `next` that differ from the map's; with `widen`, their union with
    /// the map's instead (bits only set, never cleared: what must hold while rules change).
    fn write(&mut self, next: &[u64], widen: bool) -> Result<(), EnforceError> {
        let Self { map, now } = self;
        for (i, (now, &next)) in now.iter_mut().zip(next).enumerate() {
            let want = if widen { *now | next } else { next };
            if want != *now {
                map.set(i as u32, want, 0).map_err(upd(names::COVER4))?;
                *now = want;
            }
        }
        Ok(())
    }
}

/// The program's list maps.
pub struct ListMaps {
    allow: KindMaps,
    block: KindMaps,
    cover4: Cover4,
    generation: Array<MapData, u64>,
    hits: PerCpuArray<MapData, u64>,
    roles: Array<MapData, u8>,
    roles_far: HashMap<MapData, u32, u8>,
    domain_key: Array<MapData, DomainKey>,
}

/// What the list maps of a running program hold: the tables of both kinds and the
/// generation in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InForce {
    /// Allowlist tables.
    pub allow: CompiledList,
    /// Blocklist tables.
    pub block: CompiledList,
    /// The list generation.
    pub generation: u64,
}

/// The list generation a program's `GENERATION` map holds, taken out of `src` alone: what
/// an upgrade needs of a program whose other list maps are not this build's.
pub fn generation_of(src: &mut impl MapSource) -> Result<u64, EnforceError> {
    generation_in(&take(src, names::GENERATION)?)
}

/// The list generation in a `GENERATION` map (its word also holds which tables are empty).
fn generation_in(map: &Array<MapData, u64>) -> Result<u64, EnforceError> {
    let word = map.get(&0, 0).map_err(|source| EnforceError::Read {
        map: names::GENERATION,
        source,
    })?;
    Ok(empty::unpack(word).0.into())
}

impl ListMaps {
    /// Takes the list maps out of the loaded object (or the pins).
    pub fn take(src: &mut impl MapSource) -> Result<Self, EnforceError> {
        Ok(Self {
            allow: KindMaps::take(src, ListKind::Allow)?,
            block: KindMaps::take(src, ListKind::Block)?,
            cover4: Cover4::take(src)?,
            generation: take(src, names::GENERATION)?,
            hits: take(src, names::RULE_HITS)?,
            roles: take(src, names::IFACE_ROLES)?,
            roles_far: take(src, names::IFACE_ROLES_FAR)?,
            domain_key: take(src, names::DOMAIN_KEY)?,
        })
    }

    /// Reads back what the maps hold (an adopting agent compares its files with it, so it
    /// writes only the difference). Every rule id must be held once.
    pub fn in_force(&self) -> Result<InForce, EnforceError> {
        let allow = self.allow.read()?;
        let block = self.block.read()?;
        let mut seen = std::collections::HashSet::new();
        for (kind, list) in [(ListKind::Allow, &allow), (ListKind::Block, &block)] {
            for t in Table::ALL {
                for id in list.ids(t) {
                    if !seen.insert(id) {
                        return Err(EnforceError::DuplicateId {
                            map: t.map_name(kind),
                            id,
                        });
                    }
                }
            }
        }
        Ok(InForce {
            allow,
            block,
            generation: generation_in(&self.generation)?,
        })
    }

    /// Makes the interfaces in `wan` internet-facing and every other one client-facing (the
    /// default: a zero slot, no far entry), writing only what changes.
    pub fn set_roles(&mut self, wan: &[u32]) -> Result<(), EnforceError> {
        let slots = self.roles.len();
        for ifindex in 0..slots {
            let want = if wan.contains(&ifindex) {
                role::WAN
            } else {
                role::LAN
            };
            let read = |source| EnforceError::Read {
                map: names::IFACE_ROLES,
                source,
            };
            if self.roles.get(&ifindex, 0).map_err(read)? != want {
                self.roles
                    .set(ifindex, want, 0)
                    .map_err(upd(names::IFACE_ROLES))?;
            }
        }
        let present: Vec<u32> = self.roles_far.keys().filter_map(Result::ok).collect();
        for ifindex in present.iter().filter(|i| !wan.contains(i)) {
            ignore_missing(self.roles_far.remove(ifindex)).map_err(upd(names::IFACE_ROLES_FAR))?;
        }
        for ifindex in wan.iter().filter(|&&i| i >= slots && !present.contains(&i)) {
            self.set_wan(*ifindex)?;
        }
        Ok(())
    }

    /// The program's `GENERATION` word: the list generation and the empty-allowlist bit.
    fn generation_word(&self) -> Result<u64, EnforceError> {
        self.generation
            .get(&0, 0)
            .map_err(|source| EnforceError::Read {
                map: names::GENERATION,
                source,
            })
    }

    /// Applies `delta` and publishes its generation. The list set sized the delta to the
    /// tables ([`crate::blocklist::ListSet::set_capacity`]); an error (the kernel refused an
    /// update) may leave the maps half-updated, and the caller must not build on them.
    pub fn apply(&mut self, delta: &Delta) -> Result<(), EnforceError> {
        self.reset_hits(delta)?;
        // An allowlist marked empty that is about to get rules is looked up again first.
        if fills(&delta.allow) {
            let (generation, marked) = empty::unpack(self.generation_word()?);
            if marked & empty::ALLOW != 0 {
                self.generation
                    .set(0, empty::pack(generation.into(), marked & !empty::ALLOW), 0)
                    .map_err(upd(names::GENERATION))?;
            }
        }
        // The IPv4 cover is widened before any rule is inserted and narrowed after every
        // removal, so no packet skips a table that holds its rule.
        if let Some(next) = &delta.cover4 {
            self.cover4.write(next, true)?;
        }
        // Allow rules in first and out last: every state between is the union of both
        // versions, blocked by a block rule of either and passed by an allow rule of either,
        // so nothing both versions pass is dropped meanwhile (a /8 blocked and one address
        // of it allowed in one reload) and nothing both block is passed.
        self.allow.upsert(&delta.allow)?;
        self.block.upsert(&delta.block)?;
        self.block.remove(&delta.block)?;
        self.allow.remove(&delta.allow)?;
        if let Some(next) = &delta.cover4 {
            self.cover4.write(next, false)?;
        }
        self.publish(delta.generation)
    }

    /// Publishes `generation` with the [`empty`] bits of what the tables hold now (marked
    /// only after the removals that emptied them), which the program skips, and whether a
    /// domain or a port is blocked.
    pub fn publish(&mut self, generation: u64) -> Result<(), EnforceError> {
        let mut marked = 0;
        if self.allow.holds_no_address() {
            marked |= empty::ALLOW;
        }
        if !self.block.holds_no_domain() {
            marked |= empty::DOMAINS_BLOCKED;
        }
        if !self.block.holds_no_port() {
            marked |= empty::PORTS_BLOCKED;
        }
        self.generation
            .set(0, empty::pack(generation, marked), 0)
            .map_err(upd(names::GENERATION))
    }

    fn reset_hits(&mut self, delta: &Delta) -> Result<(), EnforceError> {
        if delta.assigned.is_empty() {
            return Ok(());
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| EnforceError::Cpus(e))?;
        for &id in &delta.assigned {
            // A reused id starts counting afresh.
            let zero = PerCpuValues::try_from(vec![0u64; cpus]).map_err(EnforceError::Cpus)?;
            self.hits.set(id, zero, 0).map_err(upd(names::RULE_HITS))?;
        }
        Ok(())
    }

    /// Gives the program the key its domain hashes are keyed with. The loader calls it before
    /// the program is attached; the list set must hash with the same key.
    pub fn set_domain_key(&mut self, key: &DomainKey) -> Result<(), EnforceError> {
        self.domain_key
            .set(0, key, 0)
            .map_err(upd(names::DOMAIN_KEY))
    }

    /// The key the program hashes domain names with, read back from its map.
    pub fn domain_key(&self) -> Result<DomainKey, EnforceError> {
        self.domain_key.get(&0, 0).map_err(upd(names::DOMAIN_KEY))
    }

    /// Marks an interface as internet-facing: rules match packets' sources there.
    pub fn set_wan(&mut self, ifindex: u32) -> Result<(), EnforceError> {
        if ifindex < self.roles.len() {
            return self
                .roles
                .set(ifindex, role::WAN, 0)
                .map_err(upd(names::IFACE_ROLES));
        }
        self.roles_far
            .insert(ifindex, role::WAN, 0)
            .map_err(upd(names::IFACE_ROLES_FAR))
    }

    /// Packets counted for rule `id` (summed over the CPUs).
    pub fn hits(&self, id: RuleId) -> u64 {
        self.hits
            .get(&id, 0)
            .map_or(0, |per_cpu| per_cpu.iter().sum())
    }

    /// Every rule below id `bound` that matched at least once, with its packet count. One
    /// batched read of the array's first `bound` slots (the array is sized for the lists'
    /// capacity: reading it whole every sweep kept an idle agent's records thread a fifth
    /// busy); key by key where the kernel has no batch reads. An unreadable map reads as no
    /// hits (logged).
    pub fn all_hits(&self, bound: RuleId) -> Vec<(RuleId, u64)> {
        let mut out = Vec::new();
        let read = aya::util::nr_cpus().map_err(|(_, e)| e).and_then(|cpus| {
            let fd = self.hits.map().fd().as_fd();
            crate::flowtable::lookup_batch_first(fd, 4, 8 * cpus, bound as usize, |k, v| {
                let id = RuleId::from_ne_bytes([k[0], k[1], k[2], k[3]]);
                let sum: u64 = v
                    .chunks_exact(8)
                    .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .sum();
                if sum != 0 {
                    out.push((id, sum));
                }
            })
        });
        match read {
            Ok(true) => out,
            Ok(false) => (0..self.hits.len().min(bound))
                .map(|id| (id, self.hits(id)))
                .filter(|&(_, n)| n != 0)
                .collect(),
            Err(e) => {
                tracing::warn!(map = names::RULE_HITS, error = %e, "cannot read the rule hit counters");
                Vec::new()
            }
        }
    }
}
