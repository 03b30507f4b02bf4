//! Intervals of keys (IPv4, IPv6, MAC) -> the best interval holding a key whose validity window
//! holds an instant.
//!
//! Best is narrowest, then the earlier file, then the earlier line: the wide intervals are
//! ranked in that order once, and a lookup takes the lowest rank among those that hold the key
//! and the instant.
//!
//! The keys are cut into elementary segments at every start and every end, with a segment tree
//! over the segments: an interval is stored in the O(log n) nodes that together cover exactly
//! its segments, so the intervals holding a key are those of the nodes on its segment's path to
//! the root. A node keeps its answer over time rather than its intervals: time is cut wherever
//! one of its windows starts or ends, and each piece holds the lowest rank valid then. A node of
//! m intervals has at most 2m pieces, so memory is O(rows log rows) for any rows. Storing each
//! segment's covering intervals instead is quadratic when ranges nest: 20,000 nested rows
//! became 400M candidates.
//!
//! A lookup finds its segment with a two-level binary search over the segment starts (every
//! [`BLOCK`]-th start, small enough to stay in cache, then one block of [`BLOCK`] starts), then
//! visits only the nodes on the path that hold intervals (each segment names the first, each
//! node the next), one binary search over each node's pieces. For the disjoint or nested
//! ranges real files hold, that is one or two nodes of one piece each.
//!
//! Single keys (a MAC row, an address without a prefix) are the narrowest intervals there
//! are, so they come first in precedence anyway: they go into a hash map of their own, one
//! probe instead of the search, and only the wider intervals go into the tree. A key the map
//! holds no candidate for at the instant falls through to the tree.

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

/// No node, no rank.
const NONE: usize = usize::MAX;

/// A window as inclusive bounds, `None` if it holds no instant. Inclusive so that an unbounded
/// end holds `i64::MAX` itself, as [`Validity::contains`] does.
fn bounds(valid: &Validity) -> Option<(i64, i64)> {
    let from = valid.from.unwrap_or(i64::MIN);
    let last = match valid.to {
        None => i64::MAX,
        Some(to) => to.checked_sub(1)?,
    };
    (from <= last).then_some((from, last))
}

/// A single key's candidate: its window, inclusive, and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Candidate {
    from: i64,
    last: i64,
    value: u32,
}

/// From `from` until its node's next piece, the lowest rank of the node valid then
/// ([`NONE`]: none is). A node has no piece before its first window starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    from: i64,
    rank: usize,
}

/// A tree node that holds intervals: its pieces are `pieces[off..]` up to the next node's
/// `off`, and `up` is the nearest ancestor that holds intervals ([`NONE`]: none does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Node {
    off: usize,
    up: usize,
}

/// Starts per block of the two-level search.
const BLOCK: usize = 16;

/// The index; see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct IntervalIndex<K> {
    /// Single-key items: their candidates in precedence order.
    points: HashMap<K, SmallVec<[Candidate; 1]>, RandomState>,
    /// Every [`BLOCK`]-th segment start: `sample[j] == starts[j * BLOCK]`.
    sample: Vec<K>,
    /// Segment starts, ascending; the first is `K::MIN`. Adjacent elementary segments with the
    /// same nodes are one segment.
    starts: Vec<K>,
    /// Per segment, the first node on its path that holds intervals ([`NONE`]: none does).
    first: Vec<usize>,
    /// The nodes that hold intervals, then a sentinel holding only the end offset.
    nodes: Vec<Node>,
    pieces: Vec<Piece>,
    /// The value of each rank.
    values: Vec<u32>,
}

impl<K: Key> Default for IntervalIndex<K> {
    fn default() -> Self {
        IntervalIndex {
            points: HashMap::default(),
            sample: vec![K::MIN],
            starts: vec![K::MIN],
            first: vec![NONE],
            nodes: vec![Node { off: 0, up: NONE }],
            pieces: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<K: Key> IntervalIndex<K> {
    /// Builds the index of `items`.
    pub fn build(all: &[Item<K>]) -> Self {
        // An item that holds no key or no instant can never be the answer.
        let usable = all
            .iter()
            .filter(|it| it.lo <= it.hi)
            .filter_map(|it| bounds(&it.valid).map(|w| (it, w)));
        let (mut single, mut wide): (Vec<_>, Vec<_>) = usable.partition(|(it, _)| it.lo == it.hi);
        // Stable: equal keys keep the items' own order, the last tie-break.
        single.sort_by_key(|(it, _)| it.order);
        wide.sort_by_key(|(it, _)| (it.hi.wide() - it.lo.wide(), it.order));
        let mut points: HashMap<K, SmallVec<[Candidate; 1]>, RandomState> = HashMap::default();
        for (it, (from, last)) in single {
            points.entry(it.lo).or_default().push(Candidate {
                from,
                last,
                value: it.value,
            });
        }

        let mut cuts: Vec<K> = wide
            .iter()
            .flat_map(|(it, _)| [Some(it.lo), it.hi.succ()])
            .flatten()
            .collect();
        cuts.push(K::MIN);
        cuts.sort_unstable();
        cuts.dedup();
        // Every start and end is a cut, so this is its elementary segment's index.
        let seg_of = |k: K| cuts.partition_point(|&c| c < k);
        let size = cuts.len().next_power_of_two();
        // (node, rank) for the nodes covering each interval, in the heap layout (root 1,
        // children 2i and 2i + 1, segment j's leaf at size + j).
        let mut held: Vec<(usize, usize)> = Vec::new();
        for (rank, (it, _)) in wide.iter().enumerate() {
            let mut l = size + seg_of(it.lo);
            let mut r = size + it.hi.succ().map_or(cuts.len(), seg_of);
            while l < r {
                if l & 1 == 1 {
                    held.push((l, rank));
                    l += 1;
                }
                if r & 1 == 1 {
                    r -= 1;
                    held.push((r, rank));
                }
                l >>= 1;
                r >>= 1;
            }
        }
        held.sort_unstable();

        let mut index = IntervalIndex {
            points,
            sample: Vec::new(),
            starts: Vec::new(),
            first: Vec::new(),
            nodes: Vec::new(),
            pieces: Vec::new(),
            values: wide.iter().map(|(it, _)| it.value).collect(),
        };
        // Per heap node, the nearest node at or above it that holds intervals.
        let mut near = vec![NONE; 2 * size];
        let mut events = Vec::new();
        for group in held.chunk_by(|a, b| a.0 == b.0) {
            let windows = group
                .iter()
                .filter_map(|&(_, rank)| wide.get(rank).map(|&(_, w)| (rank, w)));
            // A chunk is never empty, and heap nodes are below `2 * size`.
            near[group[0].0] = index.nodes.len();
            index.nodes.push(Node {
                off: index.pieces.len(),
                up: NONE,
            });
            answer_over_time(windows, &mut events, &mut index.pieces);
        }
        // Parents before children: a parent's `near` is final when its children read it.
        for h in 1..near.len() {
            let above = if h > 1 { near[h / 2] } else { NONE };
            match index.nodes.get_mut(near[h]) {
                Some(node) => node.up = above,
                None => near[h] = above,
            }
        }
        for (j, &start) in cuts.iter().enumerate() {
            let f = near[size + j];
            if index.first.last() != Some(&f) {
                index.starts.push(start);
                index.first.push(f);
            }
        }
        index.nodes.push(Node {
            off: index.pieces.len(),
            up: NONE,
        });
        index.sample = index.starts.iter().step_by(BLOCK).copied().collect();
        index
    }

    /// The value of the best interval holding `key` whose window holds `t_ns`.
    #[inline]
    pub fn get(&self, key: K, t_ns: i64) -> Option<u32> {
        if !self.points.is_empty() {
            let valid = |c: &&Candidate| c.from <= t_ns && t_ns <= c.last;
            if let Some(c) = self.points.get(&key).and_then(|cs| cs.iter().find(valid)) {
                return Some(c.value);
            }
        }
        // `starts[0]` (and `sample[0]`) is `K::MIN`, so at least one start is <= key.
        let block = self.sample.partition_point(|&s| s <= key).saturating_sub(1) * BLOCK;
        let within = self
            .starts
            .get(block..(block + BLOCK).min(self.starts.len()))?;
        let seg = block + within.partition_point(|&s| s <= key).saturating_sub(1);
        // The nodes on the path hold different intervals: the lowest rank among them wins.
        let mut best = NONE;
        let mut at = *self.first.get(seg)?;
        while let Some(node) = self.nodes.get(at) {
            let end = self.nodes.get(at + 1).map_or(node.off, |next| next.off);
            let pieces = self.pieces.get(node.off..end).unwrap_or_default();
            let now = pieces.partition_point(|p| p.from <= t_ns);
            if let Some(p) = now.checked_sub(1).and_then(|i| pieces.get(i)) {
                best = best.min(p.rank);
            }
            at = node.up;
        }
        self.values.get(best).copied()
    }

    /// Segments (for tests).
    #[cfg(test)]
    pub fn segments(&self) -> usize {
        self.starts.len()
    }

    /// What the index holds for its intervals: single keys' candidates, the tree's pieces and
    /// nodes (for tests; the memory that must stay O(rows log rows)).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.points.values().map(|c| c.len()).sum::<usize>() + self.pieces.len() + self.nodes.len()
    }
}

/// Appends a node's answer over time to `out`: a piece wherever its lowest valid rank changes.
/// `events` is scratch space, kept between nodes.
fn answer_over_time(
    windows: impl Iterator<Item = (usize, (i64, i64))>,
    events: &mut Vec<(i64, bool, usize)>,
    out: &mut Vec<Piece>,
) {
    events.clear();
    for (rank, (from, last)) in windows {
        events.push((from, true, rank));
        if let Some(end) = last.checked_add(1) {
            events.push((end, false, rank));
        }
    }
    events.sort_unstable_by_key(|e| e.0);
    let mut valid = BTreeSet::new();
    let mut best = NONE;
    for group in events.chunk_by(|a, b| a.0 == b.0) {
        for &(_, opens, rank) in group {
            if opens {
                valid.insert(rank);
            } else {
                valid.remove(&rank);
            }
        }
        let now = valid.first().copied().unwrap_or(NONE);
        if let (true, Some(&(from, ..))) = (now != best, group.first()) {
            out.push(Piece { from, rank: now });
            best = now;
        }
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
        match rng.below(6) {
            0 => Validity::ALWAYS,
            1 => Validity {
                from: Some(a),
                to: None,
            },
            2 => Validity {
                from: None,
                to: Some(b),
            },
            3 => Validity {
                from: Some(a),
                to: Some(b),
            },
            // The ends of time, and a window that holds no instant.
            4 => Validity {
                from: Some(i64::MIN),
                to: Some(i64::MAX),
            },
            _ => Validity {
                from: Some(b),
                to: Some(a),
            },
        }
    }

    /// An interval of a round's shape: anywhere in a small key space (so intervals overlap,
    /// touch and nest by chance), nested around one of two centres (chains as deep as the round
    /// is long), or either. Near the top of the space too, where an interval has no exclusive
    /// end.
    fn interval(rng: &mut Rng, shape: u64) -> (u32, u32) {
        let base = if rng.chance(0.2) { u32::MAX - 300 } else { 0 };
        if shape == 1 || (shape == 2 && rng.chance(0.5)) {
            let centre = base + 100 + 100 * rng.below(2) as u32;
            let d = rng.below(100) as u32;
            (centre - d, centre + d + rng.below(2) as u32)
        } else {
            let lo = base + rng.below(300) as u32;
            (lo, lo.saturating_add(rng.below(60) as u32))
        }
    }

    #[test]
    fn matches_brute_force_on_random_overlapping_and_nested_intervals() {
        let mut rng = Rng::new(42);
        for round in 0..300 {
            let shape = rng.below(3);
            let n = 1 + rng.below(60) as usize;
            let items: Vec<Item<u32>> = (0..n)
                .map(|i| {
                    let (lo, hi) = interval(&mut rng, shape);
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
                let t = match rng.below(20) {
                    0 => i64::MIN,
                    1 => i64::MAX,
                    _ => rng.below(220) as i64 - 10,
                };
                assert_eq!(
                    index.get(key, t),
                    brute(&items, key, t),
                    "round {round}: key {key} at {t} over {items:?}"
                );
            }
        }
    }

    /// Nested rows, as a provisioning export can have them (a building's range inside a
    /// campus's), stay O(rows log rows): all always valid, and each valid from later than the
    /// one around it, so that every outer row still wins at some instant.
    #[test]
    fn nested_rows_build_in_rows_log_rows() {
        let n: u32 = 20_000;
        for staggered in [false, true] {
            let items: Vec<Item<u32>> = (0..n)
                .map(|i| Item {
                    lo: 0x0a00_0000 + i,
                    hi: 0x0aff_ffff - i,
                    valid: Validity {
                        from: staggered.then_some(i64::from(i)),
                        to: None,
                    },
                    order: (0, i + 2),
                    value: i,
                })
                .collect();
            let index = IntervalIndex::build(&items);
            // A row lies in at most 2 log2(segments) nodes, and adds a node and at most two
            // pieces to each: 96 entries a row here, where the old index held 400M in all.
            let per_row = 2 * index.segments().next_power_of_two().ilog2() as usize * 3;
            assert!(
                index.entries() <= n as usize * per_row,
                "staggered {staggered}: {} entries for {n} rows, over {per_row} a row",
                index.entries()
            );
            for key in [
                0x09ff_ffff,
                0x0a00_0000,
                0x0a00_0000 + n / 2,
                0x0a00_0000 + n - 1,
                0x0a80_0000,
                0x0aff_ffff - n / 3,
                0x0aff_ffff,
                0x0b00_0000,
            ] {
                for t in [i64::MIN, 0, 1, i64::from(n / 2), i64::from(n), i64::MAX] {
                    assert_eq!(
                        index.get(key, t),
                        brute(&items, key, t),
                        "staggered {staggered}: key {key:#x} at {t}"
                    );
                }
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
