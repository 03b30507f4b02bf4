//! The NAT table's hot index: what a lookup reads, kept apart from the sessions.
//!
//! A session's full entry (two tuples, counters, timestamps: about 250 bytes) lives in the
//! table's slab; a lookup needs only the session's window, its chain links and, for the flow
//! join, its outside tuple. Those sit here in one cache line per session ([`Hot`]), and the
//! chain heads are hashed with foldhash rather than SipHash. A flow join reads the head map and
//! one line per session of its chain (almost always one), and never the slab: with 50,000 open
//! sessions the slab is 13 MB, the hot lines 3 MB.

use std::collections::HashMap;
use std::hash::Hash;

use foldhash::fast::RandomState;

use super::table::{InsideKey, OutsideKey};

/// The end of a chain.
pub(super) const NIL: u32 = u32::MAX;

/// What a lookup reads of one session: one cache line (see the layout test).
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub(super) struct Hot {
    /// Window start, `i64::MIN` when unbounded.
    pub from: i64,
    /// Window end (exclusive), `i64::MAX` while open.
    pub to: i64,
    /// Next (older) session of the same inside key.
    pub next_inside: u32,
    /// Next (older) session of the same outside key.
    pub next_outside: u32,
    /// Previous (newer) session of the same inside key: removal is then O(1). Sessions
    /// leave oldest first, from a chain's tail, and one key's chain can be long (a scan from
    /// one source port: masquerade keeps the port for every new destination).
    pub prev_inside: u32,
    /// Previous (newer) session of the same outside key.
    pub prev_outside: u32,
    /// The outside tuple: what the flow join records.
    pub outside: OutsideKey,
    /// Whether the source was translated (only then has a flow an outside tuple).
    pub translated: bool,
    /// Whether a flow record joined the session (then it needs no NAT record of its own).
    pub joined: bool,
}

impl Hot {
    /// Whether the window holds `t_ns`.
    #[inline]
    pub fn contains(&self, t_ns: i64) -> bool {
        self.from <= t_ns && t_ns < self.to
    }
}

/// Chain heads by inside and outside key, and the hot line of every slot.
#[derive(Debug, Default)]
pub(super) struct Index {
    hot: Vec<Hot>,
    by_inside: HashMap<InsideKey, u32, RandomState>,
    by_outside: HashMap<OutsideKey, u32, RandomState>,
}

impl Index {
    /// The hot line of slot `i`.
    #[inline]
    pub fn hot(&self, i: u32) -> &Hot {
        &self.hot[i as usize]
    }

    /// The hot line of slot `i`, to change.
    #[inline]
    pub fn hot_mut(&mut self, i: u32) -> &mut Hot {
        &mut self.hot[i as usize]
    }

    /// Puts slot `i` (new, or reused after [`Index::unlink`]) at the head of the chains of
    /// `inside` and `hot.outside`.
    pub fn link(&mut self, i: u32, inside: InsideKey, mut hot: Hot) {
        hot.next_inside = self.by_inside.insert(inside, i).unwrap_or(NIL);
        hot.next_outside = self.by_outside.insert(hot.outside, i).unwrap_or(NIL);
        hot.prev_inside = NIL;
        hot.prev_outside = NIL;
        if let Some(h) = self.hot.get_mut(hot.next_inside as usize) {
            h.prev_inside = i;
        }
        if let Some(h) = self.hot.get_mut(hot.next_outside as usize) {
            h.prev_outside = i;
        }
        match self.hot.get_mut(i as usize) {
            Some(h) => *h = hot,
            None => {
                debug_assert_eq!(i as usize, self.hot.len(), "slots are linked in order");
                self.hot.push(hot);
            }
        }
    }

    /// Removes slot `i` from the chains of `inside` and its outside key.
    pub fn unlink(&mut self, i: u32, inside: InsideKey) {
        let h = self.hot[i as usize];
        unlink_one(
            &mut self.by_inside,
            &mut self.hot,
            inside,
            (h.prev_inside, h.next_inside),
            |h| (&mut h.prev_inside, &mut h.next_inside),
        );
        unlink_one(
            &mut self.by_outside,
            &mut self.hot,
            h.outside,
            (h.prev_outside, h.next_outside),
            |h| (&mut h.prev_outside, &mut h.next_outside),
        );
    }

    /// The slots of `key`'s inside chain, newest first.
    #[inline]
    pub fn inside_chain(&self, key: &InsideKey) -> Chain<'_> {
        Chain {
            hot: &self.hot,
            at: self.by_inside.get(key).copied().unwrap_or(NIL),
            link: |h| h.next_inside,
        }
    }

    /// The slots of `key`'s outside chain, newest first.
    pub fn outside_chain(&self, key: &OutsideKey) -> Chain<'_> {
        Chain {
            hot: &self.hot,
            at: self.by_outside.get(key).copied().unwrap_or(NIL),
            link: |h| h.next_outside,
        }
    }
}

/// A walk along one chain: yields slot numbers with their hot lines.
pub(super) struct Chain<'a> {
    hot: &'a [Hot],
    at: u32,
    link: fn(&Hot) -> u32,
}

impl<'a> Iterator for Chain<'a> {
    type Item = (u32, &'a Hot);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let i = self.at;
        let h = self.hot.get(i as usize)?;
        self.at = (self.link)(h);
        Some((i, h))
    }
}

/// Removes a slot whose (previous, next) neighbours are `around` from the chain of `key` in
/// `heads`; `links` gives a slot's (previous, next) links of that chain.
fn unlink_one<K: Hash + Eq>(
    heads: &mut HashMap<K, u32, RandomState>,
    hot: &mut [Hot],
    key: K,
    (prev, next): (u32, u32),
    links: impl Fn(&mut Hot) -> (&mut u32, &mut u32),
) {
    if let Some(h) = hot.get_mut(next as usize) {
        *links(h).0 = prev;
    }
    match hot.get_mut(prev as usize) {
        Some(h) => *links(h).1 = next,
        // The slot was the chain's head.
        None if next == NIL => {
            heads.remove(&key);
        }
        None => {
            if let Some(head) = heads.get_mut(&key) {
                *head = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn key(port: u16) -> (InsideKey, OutsideKey) {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let inside = InsideKey {
            proto: 6,
            src: a,
            src_port: port,
            dst: a,
            dst_port: 80,
        };
        let outside = OutsideKey {
            proto: 6,
            addr: a,
            port: 40000,
        };
        (inside, outside)
    }

    fn hot(outside: OutsideKey) -> Hot {
        Hot {
            from: 0,
            to: i64::MAX,
            next_inside: NIL,
            next_outside: NIL,
            prev_inside: NIL,
            prev_outside: NIL,
            outside,
            translated: true,
            joined: false,
        }
    }

    #[test]
    fn a_hot_line_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Hot>(), 64);
    }

    /// Slots of both chains after links and unlinks in every position (head, middle, tail,
    /// the last one), against a plain list of what is linked; slots are reused.
    #[test]
    fn chains_hold_what_is_linked_through_unlinks_anywhere() {
        let mut ix = Index::default();
        // Every session on one outside key; inside keys alternate between two ports.
        let mut linked: Vec<u32> = Vec::new(); // newest first
        let mut free: Vec<u32> = Vec::new();
        let mut next_slot = 0u32;
        let mut seed = 0x9e37_79b9_u32;
        for step in 0..2_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            if linked.len() < 3 || !seed.is_multiple_of(3) {
                let i = free.pop().unwrap_or_else(|| {
                    next_slot += 1;
                    next_slot - 1
                });
                let (inside, outside) = key((i % 2) as u16);
                ix.link(i, inside, hot(outside));
                linked.insert(0, i);
            } else {
                let at = (seed as usize / 3) % linked.len();
                let i = linked.remove(at);
                ix.unlink(i, key((i % 2) as u16).0);
                free.push(i);
            }
            let (_, outside) = key(0);
            let chain: Vec<u32> = ix.outside_chain(&outside).map(|(i, _)| i).collect();
            assert_eq!(chain, linked, "outside chain at step {step}");
            for port in 0..2u16 {
                let want: Vec<u32> = linked
                    .iter()
                    .copied()
                    .filter(|&i| (i % 2) as u16 == port)
                    .collect();
                let got: Vec<u32> = ix.inside_chain(&key(port).0).map(|(i, _)| i).collect();
                assert_eq!(got, want, "inside chain {port} at step {step}");
            }
        }
        for i in std::mem::take(&mut linked) {
            ix.unlink(i, key((i % 2) as u16).0);
        }
        assert!(ix.by_inside.is_empty() && ix.by_outside.is_empty());
    }
}
