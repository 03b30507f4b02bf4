//! What the compiler produces for one list kind: the tables, keyed as the kernel maps are
//! keyed ([`agent_common::rules`]), with a rule id per entry, and the changes between two
//! versions of them.

use agent_common::rules::{self, PortKey, RuleId};

use super::{CompiledLists, ListKind};
use crate::net::Net;

/// One (protocol, port) slot of the port table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSlot {
    /// [`agent_common::proto::TCP`] or [`agent_common::proto::UDP`].
    pub proto: u8,
    /// Port, host order.
    pub port: u16,
}

impl PortSlot {
    /// The kernel key.
    pub fn key(self) -> PortKey {
        PortKey::new(self.proto, self.port)
    }
}

/// Counts of what one list compiled into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompileStats {
    /// Single IPv4 addresses (v4 exact table).
    pub v4_exact: usize,
    /// IPv4 prefixes shorter than /32 (v4 LPM table).
    pub v4_prefix: usize,
    /// Single IPv6 addresses.
    pub v6_exact: usize,
    /// IPv6 prefixes shorter than /128.
    pub v6_prefix: usize,
    /// Domain rules (names with everything under them).
    pub domains: usize,
    /// Port rules kept (a rule is a protocol and a port range).
    pub port_rules: usize,
    /// (protocol, port) slots those rules fill.
    pub port_slots: usize,
    /// Entries dropped because the same key was already listed.
    pub duplicates: usize,
    /// Entries dropped because a broader one covers them (a prefix containing an address or
    /// a narrower prefix, a domain under a listed domain, ports inside an earlier range).
    pub covered: usize,
}

impl CompileStats {
    /// All kept entries (port rules counted once each, not per port).
    pub fn kept(&self) -> usize {
        self.v4_exact
            + self.v4_prefix
            + self.v6_exact
            + self.v6_prefix
            + self.domains
            + self.port_rules
    }

    /// Entries folded away (duplicates and covered).
    pub fn folded(&self) -> usize {
        self.duplicates + self.covered
    }
}

/// The tables of one list kind (allow or block), each sorted by key, each entry with its
/// rule id as the kernel map holds it (with [`agent_common::rules::REFUSE`] for a refusing
/// list; [`CompiledList::ids`] takes it off). Addresses are host-order integers: the kernel key is `addr.to_be_bytes()` for the
/// exact tables and [`Net::lpm_key`] for the prefix tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledList {
    /// /32 addresses.
    pub v4_exact: Vec<(u32, RuleId)>,
    /// IPv4 prefixes shorter than /32.
    pub v4_prefix: Vec<(Net<u32>, RuleId)>,
    /// /128 addresses.
    pub v6_exact: Vec<(u128, RuleId)>,
    /// IPv6 prefixes shorter than /128.
    pub v6_prefix: Vec<(Net<u128>, RuleId)>,
    /// One entry per (protocol, port); key with [`PortSlot::key`].
    pub ports: Vec<(PortSlot, RuleId)>,
    /// Domain suffix hashes ([`agent_common::domain::domain_hash`]).
    pub domains: Vec<(u64, RuleId)>,
    /// What went in and what was folded.
    pub stats: CompileStats,
}

/// Changes to one table: apply every `upsert`, then every `remove`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDelta<K> {
    /// Keys to insert, or whose rule id changed.
    pub upsert: Vec<(K, RuleId)>,
    /// Keys to delete.
    pub remove: Vec<K>,
}

impl<K> Default for TableDelta<K> {
    fn default() -> Self {
        TableDelta {
            upsert: Vec::new(),
            remove: Vec::new(),
        }
    }
}

impl<K> TableDelta<K> {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }

    /// Number of map operations.
    pub fn len(&self) -> usize {
        self.upsert.len() + self.remove.len()
    }
}

/// Changes to the tables of one list kind, field for field as in [`CompiledList`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListDelta {
    /// v4 exact table.
    pub v4_exact: TableDelta<u32>,
    /// v4 prefix table.
    pub v4_prefix: TableDelta<Net<u32>>,
    /// v6 exact table.
    pub v6_exact: TableDelta<u128>,
    /// v6 prefix table.
    pub v6_prefix: TableDelta<Net<u128>>,
    /// Port table.
    pub ports: TableDelta<PortSlot>,
    /// Domain table.
    pub domains: TableDelta<u64>,
}

/// The IPv4 cover of `lists` ([`agent_common::rules::cover4`]): the bit of every /24 one of
/// their IPv4 addresses or prefixes touches, as the `COVER4` map's words.
pub fn cover4<'a>(lists: impl IntoIterator<Item = &'a CompiledList>) -> Vec<u64> {
    let mut words = vec![0u64; rules::cover4::WORDS as usize];
    // `last` is at most 2^24 - 1, so `s` cannot overflow.
    let mut mark = |first: u32, last: u32| {
        let mut s = first;
        while s <= last {
            if s & 63 == 0 && last - s >= 63 {
                words[(s >> 6) as usize] = u64::MAX;
                s += 64;
            } else {
                words[(s >> 6) as usize] |= 1 << (s & 63);
                s += 1;
            }
        }
    };
    for list in lists {
        for &(addr, _) in &list.v4_exact {
            mark(addr >> 8, addr >> 8);
        }
        for &(net, _) in &list.v4_prefix {
            mark(net.addr >> 8, net.last() >> 8);
        }
    }
    words
}

impl ListDelta {
    /// The delta that writes every entry of `list` into empty tables.
    pub fn filling(list: &CompiledList) -> ListDelta {
        fn all<K: Clone>(entries: &[(K, RuleId)]) -> TableDelta<K> {
            TableDelta {
                upsert: entries.to_vec(),
                remove: Vec::new(),
            }
        }
        ListDelta {
            v4_exact: all(&list.v4_exact),
            v4_prefix: all(&list.v4_prefix),
            v6_exact: all(&list.v6_exact),
            v6_prefix: all(&list.v6_prefix),
            ports: all(&list.ports),
            domains: all(&list.domains),
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of map operations.
    pub fn len(&self) -> usize {
        self.v4_exact.len()
            + self.v4_prefix.len()
            + self.v6_exact.len()
            + self.v6_prefix.len()
            + self.ports.len()
            + self.domains.len()
    }
}

/// One table of a list kind; the kernel has one map per kind and table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Single IPv4 addresses (HASH).
    V4Exact,
    /// IPv4 prefixes (LPM trie).
    V4Prefix,
    /// Single IPv6 addresses (HASH).
    V6Exact,
    /// IPv6 prefixes (LPM trie).
    V6Prefix,
    /// (protocol, port) slots (HASH).
    Ports,
    /// Domain suffix hashes (HASH).
    Domains,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 6] = [
        Table::V4Exact,
        Table::V4Prefix,
        Table::V6Exact,
        Table::V6Prefix,
        Table::Ports,
        Table::Domains,
    ];

    /// The map that holds this table of `kind`.
    pub fn map_name(self, kind: ListKind) -> &'static str {
        use agent_common::names::*;
        let (allow, block) = match self {
            Table::V4Exact => (ALLOW_V4, BLOCK_V4),
            Table::V4Prefix => (ALLOW_NET4, BLOCK_NET4),
            Table::V6Exact => (ALLOW_V6, BLOCK_V6),
            Table::V6Prefix => (ALLOW_NET6, BLOCK_NET6),
            Table::Ports => (ALLOW_PORTS, BLOCK_PORTS),
            Table::Domains => (ALLOW_DOMAINS, BLOCK_DOMAINS),
        };
        match kind {
            ListKind::Allow => allow,
            ListKind::Block => block,
        }
    }
}

impl CompiledList {
    /// The rule ids of table `t`.
    pub fn ids(&self, t: Table) -> Vec<RuleId> {
        fn of<K>(v: &[(K, RuleId)]) -> Vec<RuleId> {
            v.iter().map(|(_, id)| rules::rule_id(*id)).collect()
        }
        match t {
            Table::V4Exact => of(&self.v4_exact),
            Table::V4Prefix => of(&self.v4_prefix),
            Table::V6Exact => of(&self.v6_exact),
            Table::V6Prefix => of(&self.v6_prefix),
            Table::Ports => of(&self.ports),
            Table::Domains => of(&self.domains),
        }
    }

    /// Entries in every table.
    pub fn entries(&self) -> usize {
        Table::ALL.into_iter().map(|t| self.len(t)).sum()
    }

    /// Entries in table `t`.
    pub fn len(&self, t: Table) -> usize {
        match t {
            Table::V4Exact => self.v4_exact.len(),
            Table::V4Prefix => self.v4_prefix.len(),
            Table::V6Exact => self.v6_exact.len(),
            Table::V6Prefix => self.v6_prefix.len(),
            Table::Ports => self.ports.len(),
            Table::Domains => self.domains.len(),
        }
    }
}

impl ListDelta {
    /// Keys removed from table `t`.
    pub fn removes(&self, t: Table) -> usize {
        match t {
            Table::V4Exact => self.v4_exact.remove.len(),
            Table::V4Prefix => self.v4_prefix.remove.len(),
            Table::V6Exact => self.v6_exact.remove.len(),
            Table::V6Prefix => self.v6_prefix.remove.len(),
            Table::Ports => self.ports.remove.len(),
            Table::Domains => self.domains.remove.len(),
        }
    }
}

/// How many entries each kernel table holds. Fixed when the program is loaded, so a reload
/// that would outgrow a table is refused by the list set ([`super::ListSet::set_capacity`])
/// before anything reaches the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    allow: [u32; 6],
    block: [u32; 6],
    rule_hits: u32,
}

impl Capacity {
    /// Room for the lists loaded at start and their edits: twice what `lists` hold in each
    /// table, at least `floor`.
    pub fn for_lists(lists: &CompiledLists, floor: u32) -> Capacity {
        let size = |n: usize| n.saturating_mul(2).clamp(floor as usize, u32::MAX as usize) as u32;
        let allow = Table::ALL.map(|t| size(lists.allow.len(t)));
        let block = Table::ALL.map(|t| size(lists.block.len(t)));
        // Hits are counted in an array indexed by rule id: every rule holds at least one
        // table entry, and a removed rule's id is reused from the next reload on, so the ids
        // in use never outnumber the entries the tables hold while a delta is applied.
        let entries: u64 = allow.iter().chain(&block).map(|&n| u64::from(n)).sum();
        Capacity {
            allow,
            block,
            rule_hits: entries.min(u64::from(u32::MAX)) as u32,
        }
    }

    /// The sizes of maps that exist already (a pinned program's), by map name; `None` if
    /// one of the list maps is not among them.
    pub fn of_maps(size: impl Fn(&str) -> Option<u32>) -> Option<Capacity> {
        let sizes = |kind: ListKind| -> Option<[u32; 6]> {
            let mut out = [0; 6];
            for t in Table::ALL {
                out[t as usize] = size(t.map_name(kind))?;
            }
            Some(out)
        };
        Some(Capacity {
            allow: sizes(ListKind::Allow)?,
            block: sizes(ListKind::Block)?,
            rule_hits: size(agent_common::names::RULE_HITS)?,
        })
    }

    /// Whether every table is at least `floor` entries (`--list-capacity`).
    pub fn at_least(&self, floor: u32) -> bool {
        self.allow.iter().chain(&self.block).all(|&n| n >= floor) && self.rule_hits >= floor
    }

    /// Rules the per-rule hit counters hold: one past the highest rule id they can count.
    pub fn rule_hits(&self) -> u32 {
        self.rule_hits
    }

    /// Entries table `t` of `kind` holds.
    pub fn get(&self, kind: ListKind, t: Table) -> u32 {
        let sizes = match kind {
            ListKind::Allow => &self.allow,
            ListKind::Block => &self.block,
        };
        sizes[t as usize]
    }

    /// The size of every list map by name, as the loader creates them (the per-rule hit
    /// counters included).
    pub fn map_sizes(&self) -> Vec<(&'static str, u32)> {
        let mut out = Vec::with_capacity(14);
        for kind in [ListKind::Allow, ListKind::Block] {
            out.extend(Table::ALL.map(|t| (t.map_name(kind), self.get(kind, t))));
        }
        out.push((agent_common::names::RULE_HITS, self.rule_hits));
        // The flood summaries' slot per rule: indexed by rule id as the hit counters are.
        out.push((agent_common::names::FLOOD_RULES, self.rule_hits));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::XorShift;

    fn bit(words: &[u64], addr: u32) -> bool {
        let (w, b) = rules::cover4::slot(addr.to_be_bytes());
        words[w as usize] >> b & 1 == 1
    }

    #[test]
    fn the_cover_marks_every_slash_24_a_rule_touches_and_no_other() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut next = || rng.next();
        for round in 0..20 {
            let mut lists = [CompiledList::default(), CompiledList::default()];
            for (k, list) in lists.iter_mut().enumerate() {
                for _ in 0..(round * 3 + k) {
                    list.v4_exact.push((next() as u32, 1));
                }
                for _ in 0..(round + 1) {
                    // Lengths 0-31, the short ones rare: a /0 would cover everything.
                    let len = (8 + next() % 24) as u8 - if next() % 8 == 0 { 8 } else { 0 };
                    list.v4_prefix.push((Net::new(next() as u32, len), 2));
                }
            }
            let words = cover4(&lists);
            let rules = |a: u32| {
                lists.iter().any(|l| {
                    l.v4_exact.iter().any(|&(x, _)| x >> 8 == a >> 8)
                        || l.v4_prefix
                            .iter()
                            .any(|&(n, _)| Net::new(a, 24).addr <= n.last() && n.addr <= a | 0xff)
                })
            };
            // Every rule's first and last address, addresses beside them, and random ones.
            let mut probes: Vec<u32> = (0..2_000).map(|_| next() as u32).collect();
            for l in &lists {
                for &(a, _) in &l.v4_exact {
                    probes.extend([a, a.wrapping_add(256), a.wrapping_sub(256)]);
                }
                for &(n, _) in &l.v4_prefix {
                    probes.extend([
                        n.addr,
                        n.last(),
                        n.addr.wrapping_sub(1),
                        n.last().wrapping_add(1),
                    ]);
                }
            }
            for a in probes {
                assert_eq!(
                    bit(&words, a),
                    rules(a),
                    "round {round}: {:?}",
                    a.to_be_bytes()
                );
            }
        }
        let everything = CompiledList {
            v4_prefix: vec![(Net::new(0, 0), 1)],
            ..Default::default()
        };
        assert!(cover4([&everything]).iter().all(|&w| w == u64::MAX));
        assert!(cover4([&CompiledList::default()]).iter().all(|&w| w == 0));
    }
}
