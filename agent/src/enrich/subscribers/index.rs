//! Intervals of keys (IPv4, IPv6, MAC) -> the best candidate valid at an instant, answered with
//! one binary search.
//!
//! The intervals are cut into elementary segments at every start and every end: within a
//! segment the same intervals apply, so each segment stores their candidates already in
//! precedence order (narrowest interval first, then the earlier file, then the earlier line).
//! A query finds its segment by binary search over the segment starts and takes the first
//! candidate whose window holds the instant. The search runs in two levels (every
//! [`BLOCK`]-th start, small enough to stay in cache, then one block of [`BLOCK`] starts), so a
//! lookup in 100,000 rows touches a few cache lines instead of one per halving. Memory is the number of segments plus, per
//! segment, the intervals that cover it: small for the nested or disjoint intervals real files
//! hold.
//!
//! Single keys (a MAC row, an address without a prefix) are the narrowest intervals there
//! are, so they come first in precedence anyway: they go into a hash map of their own, one
//! probe instead of the two-level search, and only the wider intervals are cut into segments.
//! A key the map holds no candidate for at the instant falls through to the segments.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use foldhash::fast::RandomState;
use smallvec::SmallVec;

use crate::enrich::Validity;

/// A key type: ordered, with a successor for the exclusive end of an interval.
pub(crate) trait Key: Copy + Ord + Hash {
    /// The smallest key.
    const MIN: Self;
    /// The next key, `None` past the largest.
    fn succ(self) -> Option<Self>;
    /// Widened, for sizes.
    fn wide(self) -> u128;
}

impl Key for u32 {
    const MIN: Self = 0;
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn wide(self) -> u128 {
        self.into()
    }
}

impl Key for u64 {
    const MIN: Self = 0;
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn wide(self) -> u128 {
        self.into()
    }
}

impl Key for u128 {
    const MIN: Self = 0;
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn wide(self) -> u128 {
        self
    }
}

/// One interval to index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item<K> {
    /// First key, inclusive.
    pub lo: K,
    /// Last key, inclusive.
    pub hi: K,
    /// When it holds.
    pub valid: Validity,
    /// Tie-break after the interval's width: lower wins (file index, then line).
    pub order: (u32, u32),
    /// What it yields.
    pub value: u32,
}

/// A candidate of a segment: its window as bounds (unbounded as `i64::MIN`/`i64::MAX`) and the
/// value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Candidate {
    from: i64,
    to: i64,
    value: u32,
}

/// Starts per block of the two-level search.
const BLOCK: usize = 16;

/// A segment: where it starts and where its candidates start. Start and offset side by side,
/// so the block the search lands in also holds the offsets it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seg<K> {
    start: K,
    off: u32,
}

/// The index; see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct IntervalIndex<K> {
    /// Single-key items: their candidates in precedence order.
    points: HashMap<K, SmallVec<[Candidate; 1]>, RandomState>,
    /// Every [`BLOCK`]-th segment start: `sample[j] == segs[j * BLOCK].start`.
    sample: Vec<K>,
    /// Segments by start, ascending; the first starts at `K::MIN`. Segment `i`'s candidates
    /// are `cands[segs[i].off..segs[i + 1].off]`; the last entry is a sentinel holding only
    /// the end offset.
    segs: Vec<Seg<K>>,
    cands: Vec<Candidate>,
}

impl<K: Key> Default for IntervalIndex<K> {
    fn default() -> Self {
        IntervalIndex {
            points: HashMap::default(),
            sample: vec![K::MIN],
            segs: vec![
                Seg {
                    start: K::MIN,
                    off: 0,
                },
                Seg {
                    start: K::MIN,
                    off: 0,
                },
            ],
            cands: Vec::new(),
        }
    }
}

impl<K: Key> IntervalIndex<K> {
    /// Builds the index of `items`.
    pub fn build(all: &[Item<K>]) -> Self {
        let candidate = |it: &Item<K>| Candidate {
            from: it.valid.from.unwrap_or(i64::MIN),
            to: it.valid.to.unwrap_or(i64::MAX),
            value: it.value,
        };
        let (mut single, wide): (Vec<&Item<K>>, Vec<&Item<K>>) =
            all.iter().partition(|it| it.lo == it.hi);
        // Stable: equal orders keep the items' own order, as the segments' rank does.
        single.sort_by_key(|it| it.order);
        let items: Vec<Item<K>> = wide.into_iter().copied().collect();
        let mut points: HashMap<K, SmallVec<[Candidate; 1]>, RandomState> = HashMap::default();
        for it in single {
            points.entry(it.lo).or_default().push(candidate(it));
        }
        let items = &items[..];
        let rank = |i: usize| {
            let it = &items[i];
            (it.hi.wide() - it.lo.wide(), it.order, i)
        };
        let mut opens: Vec<usize> = (0..items.len()).collect();
        opens.sort_unstable_by_key(|&i| items[i].lo);
        let mut closes: Vec<(K, usize)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| it.hi.succ().map(|end| (end, i)))
            .collect();
        closes.sort_unstable();
        let mut bounds: Vec<K> = items.iter().map(|it| it.lo).collect();
        bounds.extend(closes.iter().map(|c| c.0));
        bounds.push(K::MIN);
        bounds.sort_unstable();
        bounds.dedup();

        let mut index = IntervalIndex {
            points,
            sample: Vec::new(),
            segs: Vec::with_capacity(bounds.len() + 1),
            cands: Vec::new(),
        };
        let mut active = BTreeSet::new();
        let (mut o, mut c) = (0, 0);
        let mut last: Vec<usize> = Vec::new();
        for &b in &bounds {
            while let Some(&(_, i)) = closes.get(c).filter(|x| x.0 == b) {
                active.remove(&(rank(i), i));
                c += 1;
            }
            while let Some(&i) = opens.get(o).filter(|&&i| items[i].lo == b) {
                active.insert((rank(i), i));
                o += 1;
            }
            let now: Vec<usize> = active.iter().map(|&(_, i)| i).collect();
            if !index.segs.is_empty() && now == last {
                continue; // same intervals as the segment before: extend it
            }
            index.segs.push(Seg {
                start: b,
                off: u32::try_from(index.cands.len()).unwrap_or(u32::MAX),
            });
            index
                .cands
                .extend(now.iter().map(|&i| candidate(&items[i])));
            last = now;
        }
        index.sample = index.segs.iter().step_by(BLOCK).map(|s| s.start).collect();
        index.segs.push(Seg {
            start: index.segs.last().map_or(K::MIN, |s| s.start),
            off: u32::try_from(index.cands.len()).unwrap_or(u32::MAX),
        });
        index
    }

    /// The value of the best interval holding `key` whose window holds `t_ns`.
    #[inline]
    pub fn get(&self, key: K, t_ns: i64) -> Option<u32> {
        let valid = |c: &&Candidate| c.from <= t_ns && t_ns < c.to;
        if !self.points.is_empty() {
            if let Some(c) = self.points.get(&key).and_then(|cs| cs.iter().find(valid)) {
                return Some(c.value);
            }
        }
        // `segs[0]` (and `sample[0]`) starts at `K::MIN`, so at least one start is <= key.
        let real = self.segs.len() - 1; // without the sentinel
        let block = self.sample.partition_point(|&s| s <= key).saturating_sub(1) * BLOCK;
        let within = self.segs.get(block..(block + BLOCK).min(real))?;
        let seg = block + within.partition_point(|s| s.start <= key).saturating_sub(1);
        let lo = self.segs.get(seg)?.off as usize;
        let hi = self.segs.get(seg + 1)?.off as usize;
        self.cands.get(lo..hi)?.iter().find(valid).map(|c| c.value)
    }

    /// Segments (for tests).
    #[cfg(test)]
    pub fn segments(&self) -> usize {
        self.segs.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testgen::Rng;

    fn brute(items: &[Item<u32>], key: u32, t: i64) -> Option<u32> {
        items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.lo <= key && key <= it.hi && it.valid.contains(t))
            .min_by_key(|(i, it)| (it.hi - it.lo, it.order, *i))
            .map(|(_, it)| it.value)
    }

    fn window(rng: &mut Rng) -> Validity {
        let a = rng.below(100) as i64;
        let b = a + 1 + rng.below(100) as i64;
        match rng.below(4) {
            0 => Validity::ALWAYS,
            1 => Validity {
                from: Some(a),
                to: None,
            },
            2 => Validity {
                from: None,
                to: Some(b),
            },
            _ => Validity {
                from: Some(a),
                to: Some(b),
            },
        }
    }

    #[test]
    fn matches_brute_force_on_random_overlapping_intervals() {
        let mut rng = Rng::new(42);
        for round in 0..200 {
            let n = 1 + rng.below(40) as usize;
            let items: Vec<Item<u32>> = (0..n)
                .map(|i| {
                    // A small key space so intervals overlap, nest and touch a lot; the top
                    // of the space too, where an interval has no exclusive end.
                    let base = if rng.chance(0.2) { u32::MAX - 300 } else { 0 };
                    let lo = base + rng.below(300) as u32;
                    let hi = lo.saturating_add(rng.below(60) as u32);
                    Item {
                        lo,
                        hi,
                        valid: window(&mut rng),
                        order: (rng.below(2) as u32, i as u32),
                        value: i as u32,
                    }
                })
                .collect();
            let index = IntervalIndex::build(&items);
            for _ in 0..500 {
                let key = if rng.chance(0.5) {
                    rng.below(400) as u32
                } else {
                    u32::MAX - rng.below(400) as u32
                };
                let t = rng.below(220) as i64 - 10;
                assert_eq!(
                    index.get(key, t),
                    brute(&items, key, t),
                    "round {round}: key {key} at {t} over {items:?}"
                );
            }
        }
    }

    #[test]
    fn empty_index_matches_nothing() {
        let index = IntervalIndex::<u128>::build(&[]);
        assert_eq!(index.get(0, 0), None);
        assert_eq!(index.get(u128::MAX, 0), None);
        assert_eq!(IntervalIndex::<u64>::default().get(7, 7), None);
    }

    #[test]
    fn the_whole_space_and_its_last_key() {
        let items = [
            Item {
                lo: 0u32,
                hi: u32::MAX,
                valid: Validity::ALWAYS,
                order: (0, 1),
                value: 1,
            },
            Item {
                lo: u32::MAX,
                hi: u32::MAX,
                valid: Validity::ALWAYS,
                order: (0, 2),
                value: 2,
            },
        ];
        let index = IntervalIndex::build(&items);
        assert_eq!(index.get(0, 0), Some(1));
        assert_eq!(index.get(u32::MAX - 1, 0), Some(1));
        assert_eq!(index.get(u32::MAX, 0), Some(2));
        assert_eq!(
            index.segments(),
            1,
            "the single key is in the map, not a segment"
        );
    }
}
