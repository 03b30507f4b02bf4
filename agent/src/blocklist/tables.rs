//! What the compiler produces for one list kind: the tables, keyed as the kernel maps are
//! keyed ([`agent_common::rules`]), with a rule id per entry, and the changes between two
//! versions of them.

use agent_common::rules::{PortKey, RuleId};

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
/// rule id. Addresses are host-order integers: the kernel key is `addr.to_be_bytes()` for the
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

impl ListDelta {
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
