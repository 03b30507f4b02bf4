//! The client's DNS answers: which name a client resolved to an address, and when that held.
//!
//! A binding (client, address) -> name holds `[seen, seen + TTL)`, the TTL clamped to
//! [`DnsCacheConfig::min_ttl_s`, `max_ttl_s`]: clients keep using an address a while past a
//! short TTL (browsers hold answers for at least a minute), and a day is as long as any
//! answer should speak for a flow. Each (client, address) keeps its [`HISTORY`] most recent
//! names, so a flow is joined with the name resolved before it started even when the client
//! resolved the address again to another name before the join ran.
//!
//! Bounded: at most `capacity` (client, address) pairs; when full, the pair answered least
//! recently is evicted (counted). Lookups take `&self` and touch nothing. Memory: about
//! [`BYTES_PER_ENTRY`] bytes a pair, names shared between pairs (each distinct name once).

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;

use super::dns::DnsMessage;
use super::DomainName;
use crate::enrich::Validity;

/// Names kept per (client, address): the current one and the one before.
pub const HISTORY: usize = 2;

/// Bytes per (client, address) pair, measured from the layout: the slot (key, names,
/// validity, list links) plus the hash-table entry at its load factor; names are extra,
/// once per distinct name.
pub const BYTES_PER_ENTRY: usize =
    std::mem::size_of::<Slot>() + (std::mem::size_of::<(Key, u32)>() + 1) * 8 / 7;

const NIL: u32 = u32::MAX;
const NS_PER_S: i64 = 1_000_000_000;

/// Limits of a [`DnsCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsCacheConfig {
    /// Most (client, address) pairs kept.
    pub capacity: usize,
    /// Shortest validity given to an answer, in seconds.
    pub min_ttl_s: u32,
    /// Longest validity given to an answer, in seconds.
    pub max_ttl_s: u32,
}

impl Default for DnsCacheConfig {
    fn default() -> Self {
        DnsCacheConfig {
            capacity: 200_000,
            min_ttl_s: 60,
            max_ttl_s: 86_400,
        }
    }
}

/// What the cache did, for the agent's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answers stored as a new binding.
    pub inserted: u64,
    /// Answers that extended the current binding (same name, still valid).
    pub refreshed: u64,
    /// Pairs evicted to stay within capacity.
    pub evicted: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    client: [u8; 16],
    addr: [u8; 16],
}

impl Key {
    fn new(client: IpAddr, addr: IpAddr) -> Key {
        let bytes = |a: IpAddr| match a {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        Key {
            client: bytes(client),
            addr: bytes(addr),
        }
    }
}

#[derive(Clone, Debug)]
struct Binding {
    name: DomainName,
    from_ns: i64,
    to_ns: i64,
}

/// One (client, address) pair: newest binding first; links of the eviction list.
#[derive(Clone, Debug)]
struct Slot {
    key: Key,
    bindings: [Option<Binding>; HISTORY],
    prev: u32,
    next: u32,
}

/// Per-client address -> name bindings from DNS answers, with TTL validity.
#[derive(Debug)]
pub struct DnsCache {
    config: DnsCacheConfig,
    map: HashMap<Key, u32, RandomState>,
    slots: Vec<Slot>,
    /// Least recently answered pair (evicted first) and most recently answered.
    head: u32,
    tail: u32,
    /// Each distinct name once, with the number of bindings holding it.
    names: HashMap<DomainName, u32, RandomState>,
    stats: CacheStats,
}

impl DnsCache {
    /// An empty cache.
    pub fn new(config: DnsCacheConfig) -> DnsCache {
        DnsCache {
            config,
            // Grown as answers come, not reserved: a small site never pays for the bound.
            map: HashMap::default(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            names: HashMap::default(),
            stats: CacheStats::default(),
        }
    }

    /// Pairs held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no pair is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Distinct names held.
    pub fn distinct_names(&self) -> usize {
        self.names.len()
    }

    /// What the cache did so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Stores every address a DNS response gave `client`, bound to the question name, seen
    /// at `seen_ns` (Unix ns). Queries and answerless responses store nothing.
    pub fn insert_response(&mut self, client: IpAddr, msg: &DnsMessage, seen_ns: i64) {
        let Some(q) = msg.question.as_ref().filter(|_| msg.is_response) else {
            return;
        };
        for a in &msg.answers {
            self.insert(client, a.addr, &q.name, seen_ns, a.ttl);
        }
    }

    /// Binds `client`'s `addr` to `name` from `seen_ns` for `ttl_s` seconds (clamped).
    pub fn insert(
        &mut self,
        client: IpAddr,
        addr: IpAddr,
        name: &DomainName,
        seen_ns: i64,
        ttl_s: u32,
    ) {
        let ttl = ttl_s.clamp(
            self.config.min_ttl_s,
            self.config.max_ttl_s.max(self.config.min_ttl_s),
        );
        let to_ns = seen_ns.saturating_add(i64::from(ttl) * NS_PER_S);
        let key = Key::new(client, addr);
        let index = match self.map.get(&key) {
            Some(&i) => i,
            None => {
                if self.config.capacity == 0 {
                    return;
                }
                let i = self.allocate(key);
                self.map.insert(key, i);
                i
            }
        };
        let slot = &mut self.slots[index as usize];
        match &mut slot.bindings[0] {
            Some(cur) if cur.name == *name && seen_ns >= cur.from_ns && seen_ns <= cur.to_ns => {
                cur.to_ns = cur.to_ns.max(to_ns);
                self.stats.refreshed += 1;
            }
            _ => {
                let name = match self.names.get_key_value(name.as_str()) {
                    Some((shared, _)) => shared.clone(),
                    // A copy of its own, so no caller's value pins the cache's text.
                    None => name.unshared(),
                };
                *self.names.entry(name.clone()).or_insert(0) += 1;
                let fresh = Some(Binding {
                    name,
                    from_ns: seen_ns,
                    to_ns,
                });
                let dropped = slot.bindings[HISTORY - 1].take();
                slot.bindings.rotate_right(1);
                slot.bindings[0] = fresh;
                self.stats.inserted += 1;
                if let Some(b) = dropped {
                    self.release(&b.name);
                }
            }
        }
        self.touch(index);
    }

    /// The name `client` most recently resolved `addr` to that holds at `t_ns`, with its
    /// validity.
    pub fn lookup(
        &self,
        client: IpAddr,
        addr: IpAddr,
        t_ns: i64,
    ) -> Option<(&DomainName, Validity)> {
        let &i = self.map.get(&Key::new(client, addr))?;
        self.slots[i as usize]
            .bindings
            .iter()
            .flatten()
            .filter(|b| b.from_ns <= t_ns && t_ns < b.to_ns)
            .max_by_key(|b| b.from_ns)
            .map(|b| {
                let v = Validity {
                    from: Some(b.from_ns),
                    to: Some(b.to_ns),
                };
                (&b.name, v)
            })
    }

    /// A slot for a new pair: a fresh one below capacity, else the least recently answered
    /// pair's, evicted.
    fn allocate(&mut self, key: Key) -> u32 {
        let empty = Slot {
            key,
            bindings: [const { None }; HISTORY],
            prev: NIL,
            next: NIL,
        };
        if self.slots.len() < self.config.capacity {
            self.slots.push(empty);
            let i = (self.slots.len() - 1) as u32;
            self.link_tail(i);
            return i;
        }
        let victim = self.head;
        self.unlink(victim);
        let old = std::mem::replace(&mut self.slots[victim as usize], empty);
        self.map.remove(&old.key);
        for b in old.bindings.into_iter().flatten() {
            self.release(&b.name);
        }
        self.stats.evicted += 1;
        self.link_tail(victim);
        victim
    }

    /// Drops one binding's hold on a shared name; the last one forgets it.
    fn release(&mut self, name: &DomainName) {
        if let Some(holders) = self.names.get_mut(name.as_str()) {
            *holders -= 1;
            if *holders == 0 {
                self.names.remove(name.as_str());
            }
        }
    }

    /// Marks a pair as the most recently answered.
    fn touch(&mut self, i: u32) {
        if self.tail != i {
            self.unlink(i);
            self.link_tail(i);
        }
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn link_tail(&mut self, i: u32) {
        let old_tail = self.tail;
        {
            let s = &mut self.slots[i as usize];
            s.prev = old_tail;
            s.next = NIL;
        }
        match old_tail {
            NIL => self.head = i,
            t => self.slots[t as usize].next = i,
        }
        self.tail = i;
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
