//! The payload input model and TCP reassembly.
//!
//! XDP hands over, per flow, a few bounded snippets of the client's first data packets
//! ([`Snippet`]): for TCP the segment's sequence number and the bytes it could copy, for UDP
//! the datagram. A ClientHello of today's browsers (about 1.8 KB with a post-quantum key
//! share) spans two segments, which may arrive out of order or twice; [`Reassembler`]
//! turns the snippets back into the client's first bytes, within a fixed budget (and serves
//! QUIC's CRYPTO stream the same way).

/// The budget of client bytes kept per TCP flow: a ClientHello with an ML-KEM key share is
/// about 1.8 KB, an HTTP request line with its headers rarely more than 2 KB before Host.
pub const DEFAULT_BUDGET: usize = 4096;

/// Segments kept per flow: a hello in two segments, retransmitted once each, with room.
pub const MAX_SEGMENTS: usize = 8;

/// One payload snippet of a flow's data packet, as XDP copied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snippet<'a> {
    /// TCP: the sequence number of the first byte (absolute, as on the wire). UDP: 0.
    pub seq: u32,
    /// The copied bytes; XDP may copy fewer than the packet carried (the rest is a gap).
    pub data: &'a [u8],
}

/// What [`Reassembler::push`] did with a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Kept (possibly trimmed to the budget).
    Stored,
    /// Carried no bytes, or only bytes before the stream's start.
    Ignored,
    /// Not kept: it starts past the budget, or the stream already has its most pieces.
    OverBudget,
}

/// The client's first bytes as far as they are contiguous.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Assembled {
    /// Bytes are missing after the contiguous prefix (a later segment arrived, an earlier
    /// one did not, or was not copied whole).
    pub gap: bool,
    /// Bytes past the budget were offered and dropped: the prefix is all there will be.
    pub over_budget: bool,
    /// Overlapping segments disagreed; the bytes received first were kept.
    pub inconsistent: bool,
}

/// Reassembles the first bytes of a byte stream from out-of-order, duplicated or overlapping
/// pieces, keeping at most `budget` bytes and a fixed number of pieces: one direction of a
/// TCP flow (positions are sequence numbers) or a QUIC CRYPTO stream (positions are offsets).
///
/// The stream starts at `start` when it is known (the SYN's sequence number plus one);
/// otherwise at the lowest sequence number received, so a first segment that was lost shows
/// as missing bytes only if a later segment says so.
#[derive(Clone, Debug)]
pub struct Reassembler {
    start: Option<u32>,
    budget: usize,
    max_segments: usize,
    segments: Vec<(u32, Box<[u8]>)>,
    over_budget: bool,
}

impl Reassembler {
    /// A reassembler for a TCP stream starting at `start` (if known), keeping `budget` bytes
    /// in at most [`MAX_SEGMENTS`] segments.
    pub fn new(start: Option<u32>, budget: usize) -> Self {
        Self::with_limits(start, budget, MAX_SEGMENTS)
    }

    /// A reassembler keeping `budget` bytes in at most `max_segments` pieces.
    pub fn with_limits(start: Option<u32>, budget: usize, max_segments: usize) -> Self {
        Reassembler {
            start,
            budget,
            max_segments,
            segments: Vec::new(),
            over_budget: false,
        }
    }

    /// Offers one segment.
    pub fn push(&mut self, seq: u32, data: &[u8]) -> Pushed {
        let (seq, data) = match self.start {
            Some(start) => {
                // Sequence arithmetic is modulo 2^32: a segment "before" the start has a
                // negative offset when read as i32.
                let off = seq.wrapping_sub(start) as i32;
                if off < 0 {
                    let skip = off.unsigned_abs() as usize;
                    match data.get(skip..) {
                        Some(rest) if !rest.is_empty() => (start, rest),
                        _ => return Pushed::Ignored,
                    }
                } else {
                    (seq, data)
                }
            }
            None => (seq, data),
        };
        if data.is_empty() {
            return Pushed::Ignored;
        }
        if self.segments.len() >= self.max_segments {
            self.over_budget = true;
            return Pushed::OverBudget;
        }
        let keep = match self.start {
            Some(start) => {
                let off = seq.wrapping_sub(start) as usize;
                if off >= self.budget {
                    self.over_budget = true;
                    return Pushed::OverBudget;
                }
                data.len().min(self.budget - off)
            }
            None => data.len().min(self.budget),
        };
        if keep < data.len() {
            self.over_budget = true;
        }
        self.segments.push((seq, data[..keep].into()));
        Pushed::Stored
    }

    /// The stream's contiguous first bytes, written to `out` (cleared first).
    pub fn assemble(&self, out: &mut Vec<u8>) -> Assembled {
        out.clear();
        let mut state = Assembled {
            over_budget: self.over_budget,
            ..Assembled::default()
        };
        let Some(base) = self.base() else {
            return state;
        };
        // Written in arrival order, first writer wins (as Linux keeps the first copy), into
        // buffers as long as the segments reach (not the whole budget).
        let span = self
            .segments
            .iter()
            .map(|(seq, d)| (seq.wrapping_sub(base) as usize).saturating_add(d.len()))
            .max()
            .unwrap_or(0)
            .min(self.budget);
        out.resize(span, 0);
        let mut filled = vec![false; span];
        for (seq, data) in &self.segments {
            let off = seq.wrapping_sub(base) as usize;
            if off >= self.budget {
                state.over_budget = true;
                continue;
            }
            let n = data.len().min(self.budget - off);
            if n < data.len() {
                state.over_budget = true;
            }
            let n = n.min(span - off);
            let dst = off..off + n;
            for ((slot, seen), &b) in out[dst.clone()]
                .iter_mut()
                .zip(&mut filled[dst])
                .zip(&data[..n])
            {
                if *seen {
                    state.inconsistent |= *slot != b;
                } else {
                    *slot = b;
                    *seen = true;
                }
            }
        }
        let len = filled.iter().position(|f| !f).unwrap_or(span);
        state.gap = filled[len..].contains(&true);
        out.truncate(len);
        state
    }

    /// Whether nothing more can change the contiguous prefix: the budget is used up.
    pub fn exhausted(&self) -> bool {
        self.over_budget
    }

    /// The sequence number of the stream's first byte: its start when known, else the lowest
    /// received so far.
    pub fn first_seq(&self) -> Option<u32> {
        self.base()
    }

    /// Forgets the first `n` bytes of the contiguous prefix, read and done with, so that a
    /// reader of a long stream holds only what it has not read: the stream starts after them
    /// from now on (its start is known from here if it was not), the budget shrinks by as
    /// much, and retransmissions of them are ignored.
    pub fn release(&mut self, n: usize) {
        let Some(base) = self.base() else {
            return;
        };
        let n = n.min(self.budget);
        let start = base.wrapping_add(n as u32);
        self.start = Some(start);
        self.budget -= n;
        self.segments.retain_mut(|(seq, data)| {
            let off = seq.wrapping_sub(start) as i32;
            if off >= 0 {
                return true;
            }
            match data.get(off.unsigned_abs() as usize..) {
                Some(rest) if !rest.is_empty() => {
                    *data = rest.into();
                    *seq = start;
                    true
                }
                _ => false,
            }
        });
        self.segments.shrink_to_fit();
    }

    /// Heap bytes held: the segments' bytes and their list.
    pub fn held_bytes(&self) -> usize {
        let list = self.segments.capacity() * std::mem::size_of::<(u32, Box<[u8]>)>();
        list + self.segments.iter().map(|(_, d)| d.len()).sum::<usize>()
    }

    /// The sequence number of the stream's first byte.
    fn base(&self) -> Option<u32> {
        if self.start.is_some() {
            return self.start;
        }
        let first = self.segments.first()?.0;
        Some(self.segments.iter().fold(first, |base, &(seq, _)| {
            if (seq.wrapping_sub(base) as i32) < 0 {
                seq
            } else {
                base
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testgen::Rng;

    fn assembled(r: &Reassembler) -> (Vec<u8>, Assembled) {
        let mut out = Vec::new();
        let s = r.assemble(&mut out);
        (out, s)
    }

    #[test]
    fn two_segments_in_either_order() {
        for start in [Some(1000), None] {
            let mut r = Reassembler::new(start, 64);
            assert_eq!(r.push(1005, b"world"), Pushed::Stored);
            if start.is_some() {
                let (b, s) = assembled(&r);
                assert!(
                    b.is_empty() && s.gap,
                    "start known: the first 5 bytes are missing"
                );
            }
            assert_eq!(r.push(1000, b"hello"), Pushed::Stored);
            let (b, s) = assembled(&r);
            assert_eq!(b, b"helloworld");
            assert_eq!(s, Assembled::default());
        }
    }

    #[test]
    fn retransmissions_and_overlaps_keep_the_first_bytes() {
        let mut r = Reassembler::new(Some(u32::MAX - 2), 64);
        r.push(u32::MAX - 2, b"abcdef");
        r.push(u32::MAX - 2, b"abcdef");
        r.push(0, b"defgh"); // wraps past 2^32: offset 3
        let (b, s) = assembled(&r);
        assert_eq!(b, b"abcdefgh");
        assert!(!s.inconsistent && !s.gap);
        r.push(u32::MAX - 1, b"XY");
        let (b, s) = assembled(&r);
        assert_eq!(b, b"abcdefgh", "the bytes received first win");
        assert!(s.inconsistent);
    }

    #[test]
    fn bytes_before_the_start_are_trimmed_and_empty_segments_ignored() {
        let mut r = Reassembler::new(Some(100), 64);
        assert_eq!(r.push(98, b"xxab"), Pushed::Stored);
        assert_eq!(r.push(90, b"xx"), Pushed::Ignored);
        assert_eq!(r.push(102, b""), Pushed::Ignored);
        assert_eq!(assembled(&r).0, b"ab");
    }

    #[test]
    fn the_budget_bounds_bytes_and_segments() {
        let mut r = Reassembler::new(Some(0), 10);
        assert_eq!(r.push(0, b"0123456"), Pushed::Stored);
        assert!(!r.exhausted());
        assert_eq!(r.push(7, b"789abc"), Pushed::Stored);
        assert!(r.exhausted());
        assert_eq!(r.push(10, b"zz"), Pushed::OverBudget);
        let (b, s) = assembled(&r);
        assert_eq!(b, b"0123456789");
        assert!(s.over_budget);

        let mut r = Reassembler::new(None, 10);
        r.push(5, b"56789abc");
        r.push(0, b"01234");
        let (b, s) = assembled(&r);
        assert_eq!(b, b"0123456789");
        assert!(s.over_budget);

        let mut r = Reassembler::new(Some(0), 1000);
        for i in 0..MAX_SEGMENTS as u32 {
            assert_eq!(r.push(i, b"a"), Pushed::Stored);
        }
        assert_eq!(r.push(100, b"a"), Pushed::OverBudget);
        assert!(r.exhausted());
    }

    #[test]
    fn released_bytes_are_forgotten_and_their_retransmissions_ignored() {
        let mut r = Reassembler::new(None, 16);
        r.push(105, b"world!");
        r.push(100, b"hello");
        r.release(5);
        assert_eq!(r.first_seq(), Some(105));
        assert_eq!(
            r.held_bytes() - r.segments.capacity() * 24,
            6,
            "hello is gone"
        );
        assert_eq!(r.push(100, b"hello"), Pushed::Ignored);
        r.push(111, b"0123456789");
        let (b, s) = assembled(&r);
        assert_eq!(
            b, b"world!01234",
            "16 bytes of budget in all, 5 of them released"
        );
        assert!(s.over_budget);
    }

    /// The reassembler against the obvious model: a byte array written first-wins.
    #[test]
    fn random_segmentations_match_a_byte_array_model() {
        let mut rng = Rng::new(7);
        for round in 0..2000 {
            let len = 1 + rng.below(300) as usize;
            let stream: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let isn = rng.next_u64() as u32;
            let budget = 1 + rng.below(400) as usize;
            let known = rng.below(2) == 0;
            let mut r = Reassembler::new(known.then_some(isn), budget);
            let mut model: Vec<Option<u8>> = vec![None; len];
            let mut pushed = 0;
            let mut lowest = usize::MAX;
            while pushed < MAX_SEGMENTS {
                let a = rng.below(len as u64) as usize;
                let b = (a + 1 + rng.below(120) as usize).min(len);
                r.push(isn.wrapping_add(a as u32), &stream[a..b]);
                pushed += 1;
                if known || lowest == usize::MAX || a < lowest {
                    lowest = lowest.min(a);
                }
                for i in a..b {
                    model[i].get_or_insert(stream[i]);
                }
                if rng.below(3) == 0 {
                    break;
                }
            }
            let base = if known { 0 } else { lowest };
            let expect: Vec<u8> = model[base..]
                .iter()
                .map_while(|b| *b)
                .take(budget)
                .collect();
            let (b, _) = assembled(&r);
            assert_eq!(
                b, expect,
                "round {round}: len {len} budget {budget} known {known}"
            );
        }
    }
}
