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
//!
//! Layout: the pairs live in the hash table itself (open addressing, linear probing), each
//! slot holding the key, both bindings and the links of the eviction list, beside a byte per
//! slot with a fingerprint of its key. A lookup reads the fingerprint bytes (256 KiB for
//! 200,000 pairs: mostly cached) and one slot, and [`DnsCache::prefetch`] starts loading that
//! slot before the join needs it: one memory access instead of a map entry, then a slot.
//! Removing a pair shifts the slots after it back (no tombstones) and mends their links.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use foldhash::fast::RandomState;

use super::dns::DnsMessage;
use super::DomainName;
use crate::enrich::Validity;
use crate::record::Mac;

/// Names kept per (client, address): the current one and the one before.
pub const HISTORY: usize = 2;

/// Bytes per (client, address) pair, measured from the layout: the slot (key, names,
/// validity, list links) and its fingerprint byte, at the table's fullest (up to twice that
/// just after it doubled); names are extra, once per distinct name.
pub const BYTES_PER_ENTRY: usize = (std::mem::size_of::<Slot>() + 1) * MAX_LOAD.1 / MAX_LOAD.0;

const NIL: u32 = u32::MAX;
/// The table grows (doubles) past this fill: 7/8.
const MAX_LOAD: (usize, usize) = (7, 8);
/// The fingerprint of a vacant slot.
const VACANT: u8 = 0;
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
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
    /// The device that asked (its query frame's Ethernet source), where seen: another
    /// device's flows from the client's address are not named by it (an address handed to
    /// another device faster than the lease file said).
    asker: Option<[u8; 6]>,
}

/// One (client, address) pair: newest binding first; links of the eviction list. The key and
/// the newest binding share the first cache line.
#[derive(Clone, Debug, Default)]
#[repr(C, align(64))]
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
    /// Per slot: [`VACANT`], or the top bits of its key's hash with the high bit set. The
    /// length is zero or a power of two, the same as `slots`.
    tags: Vec<u8>,
    /// The pairs, each at its hash's position or after it (linear probing).
    slots: Vec<Slot>,
    /// Pairs held.
    len: usize,
    hasher: RandomState,
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
            tags: Vec::new(),
            slots: Vec::new(),
            len: 0,
            hasher: RandomState::default(),
            head: NIL,
            tail: NIL,
            names: HashMap::default(),
            stats: CacheStats::default(),
        }
    }

    /// Pairs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no pair is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
    /// at `seen_ns` (Unix ns). Queries and answerless responses store nothing. `since`: when
    /// the client's address last changed hands; a binding answered before it is another
    /// device's, and the same answer now starts a binding of its own rather than extend it
    /// ([`DnsCache::lookup`] passes over the old one).
    pub fn insert_response(&mut self, client: IpAddr, msg: &DnsMessage, seen_ns: i64, since: i64) {
        self.insert_asked(client, None, msg, seen_ns, since);
    }

    /// [`DnsCache::insert_response`] of a question the device `asker` asked (its query
    /// frame's source): [`DnsCache::lookup_by`] gives it to no other device's flows.
    pub fn insert_asked(
        &mut self,
        client: IpAddr,
        asker: Option<Mac>,
        msg: &DnsMessage,
        seen_ns: i64,
        since: i64,
    ) {
        let Some(q) = msg.question.as_ref().filter(|_| msg.is_response) else {
            return;
        };
        let asker = asker.map(|m| m.0);
        for a in &msg.answers {
            let to_ns = self.expiry(seen_ns, a.ttl);
            self.bind(
                Key::new(client, a.addr),
                &q.name,
                (seen_ns, to_ns),
                since,
                asker,
            );
        }
    }

    /// The end of a binding seen at `seen_ns` with `ttl_s` (clamped).
    fn expiry(&self, seen_ns: i64, ttl_s: u32) -> i64 {
        let ttl = ttl_s.clamp(
            self.config.min_ttl_s,
            self.config.max_ttl_s.max(self.config.min_ttl_s),
        );
        seen_ns.saturating_add(i64::from(ttl) * NS_PER_S)
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
        let to_ns = self.expiry(seen_ns, ttl_s);
        self.bind(
            Key::new(client, addr),
            name,
            (seen_ns, to_ns),
            i64::MIN,
            None,
        );
    }

    /// Binds `client`'s `addr` to `name` for `[from_ns, to_ns)` as an earlier agent held it:
    /// the stage's carry-over across a restart ([`DnsCache::bindings`] gives them in the
    /// order that rebuilds the eviction order). The end is held to the longest TTL from
    /// `now_ns`, as an answer seen now would be: a damaged save must not name a client's
    /// flows for ever.
    pub fn restore(
        &mut self,
        client: IpAddr,
        addr: IpAddr,
        name: &DomainName,
        (from_ns, to_ns): (i64, i64),
        now_ns: i64,
    ) {
        let longest = i64::from(self.config.max_ttl_s.max(self.config.min_ttl_s)) * NS_PER_S;
        let to_ns = to_ns.min(now_ns.saturating_add(longest));
        if from_ns < to_ns {
            self.bind(
                Key::new(client, addr),
                name,
                (from_ns, to_ns),
                i64::MIN,
                None,
            );
        }
    }

    /// Every binding held as (client, address, name, from, to): the least recently answered
    /// pair first, and within a pair the older name first.
    pub fn bindings(&self) -> impl Iterator<Item = (IpAddr, IpAddr, &DomainName, i64, i64)> {
        let mut at = self.head;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let slot = &self.slots[at as usize];
            at = slot.next;
            Some(slot)
        })
        .flat_map(|slot| {
            let ip = |b: [u8; 16]| std::net::Ipv6Addr::from(b).to_canonical();
            let (client, addr) = (ip(slot.key.client), ip(slot.key.addr));
            slot.bindings
                .iter()
                .rev()
                .flatten()
                .map(move |b| (client, addr, &b.name, b.from_ns, b.to_ns))
        })
    }

    /// Binds the pair `key` to `name` for `[seen_ns, to_ns)`, asked by `asker`, the pair made
    /// the most recently answered; the newest binding is extended only if answered since
    /// `since` to the same device.
    fn bind(
        &mut self,
        key: Key,
        name: &DomainName,
        (seen_ns, to_ns): (i64, i64),
        since: i64,
        asker: Option<[u8; 6]>,
    ) {
        let index = match self.find(&key) {
            Some(i) => i,
            None => {
                if self.config.capacity == 0 {
                    return;
                }
                self.allocate(key)
            }
        };
        let slot = &mut self.slots[index];
        match &mut slot.bindings[0] {
            Some(cur)
                if cur.name == *name
                    && seen_ns >= cur.from_ns
                    && seen_ns <= cur.to_ns
                    && cur.from_ns >= since
                    && cur.asker == asker =>
            {
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
                    asker,
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
        self.touch(index as u32);
    }

    /// Starts loading the slot of (`client`, `addr`) into the cache, so that a
    /// [`DnsCache::lookup`] a little later finds it there (the join issues it first and does
    /// its other lookups meanwhile).
    #[inline]
    pub fn prefetch(&self, client: IpAddr, addr: IpAddr) {
        if self.tags.is_empty() {
            return;
        }
        let (at, _) = self.home(&Key::new(client, addr));
        crate::enrich::prefetch::line(&self.tags[at]);
        crate::enrich::prefetch::lines_of(&self.slots[at]);
    }

    /// The name `client` most recently resolved `addr` to that holds at `t_ns`, answered at
    /// or after `since` (an answer before it went to the address's previous holder), with
    /// its validity.
    pub fn lookup(
        &self,
        client: IpAddr,
        addr: IpAddr,
        since: i64,
        t_ns: i64,
    ) -> Option<(&DomainName, Validity)> {
        self.lookup_by(client, addr, since, t_ns, None)
    }

    /// [`DnsCache::lookup`] for a flow of the device `mac` (its frames' source): an answer
    /// another device asked for is passed over.
    pub fn lookup_by(
        &self,
        client: IpAddr,
        addr: IpAddr,
        since: i64,
        t_ns: i64,
        mac: Option<Mac>,
    ) -> Option<(&DomainName, Validity)> {
        let i = self.find(&Key::new(client, addr))?;
        let device = |b: &Binding| match (b.asker, mac) {
            (Some(a), Some(m)) => a == m.0,
            _ => true,
        };
        self.slots[i]
            .bindings
            .iter()
            .flatten()
            .filter(|b| since <= b.from_ns && b.from_ns <= t_ns && t_ns < b.to_ns)
            .filter(|b| device(b))
            .max_by_key(|b| b.from_ns)
            .map(|b| {
                let v = Validity {
                    from: Some(b.from_ns),
                    to: Some(b.to_ns),
                };
                (&b.name, v)
            })
    }

    /// Whether `client` was answered `name` for `addr`, in the names kept (at any time): the
    /// outer SNI of a ClientHello offering ECH is the real name when the client resolved it
    /// itself, as with Chrome's GREASE extension, whatever name the address had since.
    pub fn resolved(&self, client: IpAddr, addr: IpAddr, name: &DomainName) -> bool {
        self.find(&Key::new(client, addr)).is_some_and(|i| {
            self.slots[i]
                .bindings
                .iter()
                .flatten()
                .any(|b| b.name == *name)
        })
    }

    /// The key's home position and fingerprint (the table is not empty).
    #[inline]
    fn home(&self, key: &Key) -> (usize, u8) {
        let h = self.hasher.hash_one(key);
        let at = (h as usize) & (self.tags.len() - 1);
        (at, (h >> 57) as u8 | 0x80)
    }

    /// The slot holding `key`.
    #[inline]
    fn find(&self, key: &Key) -> Option<usize> {
        if self.tags.is_empty() {
            return None;
        }
        let mask = self.tags.len() - 1;
        let (mut at, tag) = self.home(key);
        // Ends: the fill stays below the table's size, so a vacant slot follows every run.
        loop {
            match self.tags[at] {
                VACANT => return None,
                t if t == tag && self.slots[at].key == *key => return Some(at),
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// A slot for a new pair, linked as the most recently answered: a vacant one below
    /// capacity, else after evicting the least recently answered pair.
    fn allocate(&mut self, key: Key) -> usize {
        if self.len >= self.config.capacity {
            let victim = self.head;
            self.unlink(victim);
            let old = self.remove(victim as usize);
            for b in old.bindings.into_iter().flatten() {
                self.release(&b.name);
            }
            self.stats.evicted += 1;
        } else if (self.len + 1) * MAX_LOAD.1 > self.tags.len() * MAX_LOAD.0 {
            self.grow();
        }
        let i = self.place(Slot {
            key,
            ..Slot::default()
        });
        self.link_tail(i as u32);
        self.len += 1;
        i
    }

    /// Puts `slot` at the first vacant position from its key's home; unlinked.
    fn place(&mut self, slot: Slot) -> usize {
        let mask = self.tags.len() - 1;
        let (mut at, tag) = self.home(&slot.key);
        while self.tags[at] != VACANT {
            at = (at + 1) & mask;
        }
        self.tags[at] = tag;
        self.slots[at] = slot;
        at
    }

    /// Takes the pair at `i` out (already unlinked), shifting the run after it back so no
    /// lookup stops short at the hole; the moved pairs' links are mended.
    fn remove(&mut self, i: usize) -> Slot {
        let mask = self.tags.len() - 1;
        let old = std::mem::take(&mut self.slots[i]);
        self.tags[i] = VACANT;
        self.len -= 1;
        let mut hole = i;
        let mut at = (i + 1) & mask;
        while self.tags[at] != VACANT {
            let (home, _) = self.home(&self.slots[at].key);
            // The pair at `at` may fill the hole if the hole lies between its home and it.
            if (at.wrapping_sub(home) & mask) >= (at.wrapping_sub(hole) & mask) {
                self.slots[hole] = std::mem::take(&mut self.slots[at]);
                self.tags[hole] = self.tags[at];
                self.tags[at] = VACANT;
                self.relink(hole as u32);
                hole = at;
            }
            at = (at + 1) & mask;
        }
        old
    }

    /// Doubles the table (at least 16 slots) and places every pair again, keeping the
    /// eviction order.
    fn grow(&mut self) {
        let size = (self.tags.len() * 2).max(16);
        self.tags = vec![VACANT; size];
        let mut old = std::mem::take(&mut self.slots);
        self.slots.resize_with(size, Slot::default);
        let mut at = self.head;
        self.head = NIL;
        self.tail = NIL;
        while at != NIL {
            let slot = std::mem::take(&mut old[at as usize]);
            at = slot.next;
            let i = self.place(slot);
            self.link_tail(i as u32);
        }
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

    /// Points the neighbours of the pair now at `i` (moved there) at `i`.
    fn relink(&mut self, i: u32) {
        self.mend(i, i, i);
    }

    /// Takes the pair at `i` out of the eviction list.
    fn unlink(&mut self, i: u32) {
        let s = &self.slots[i as usize];
        let (prev, next) = (s.prev, s.next);
        self.mend(i, next, prev);
    }

    /// Makes the pair before `i` continue with `after` and the one after `i` follow `before`
    /// (the list's head and tail where `i` is at an end).
    fn mend(&mut self, i: u32, after: u32, before: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = after,
            p => self.slots[p as usize].next = after,
        }
        match next {
            NIL => self.tail = before,
            n => self.slots[n as usize].prev = before,
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
