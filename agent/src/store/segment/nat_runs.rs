//! The outside-tuple part of the address index ([`super::index`], version 2): per row group,
//! the NAT outside address of every row as runs, so `query --nat IP[:PORT]` learns from the
//! footer alone which rows (if any) carry the address, and reads the `nat_port` pages of
//! those rows only; the `nat_ip` column is not opened at all.
//!
//! # Why runs of the address, and no port structure
//! Rows are sorted by source address, and a masquerading gateway gives a client the address
//! of the uplink it leaves by: the outside address changes with the source address, not from
//! row to row, so a row group holds about one run per client run (~3 bytes each).
//! The outside *port* is as random as the client's ephemeral source port (Linux keeps it,
//! see `testgen`). Skipping a page for a port needs, per NATed row, about log2(1/p) bits to
//! skip all but a fraction p of the pages (a Bloom filter of 4.3 bits per row skips 7 pages
//! in 8): ~0.5 bytes per record, the whole size budget. So the port is tested in its column,
//! only in the pages the address runs leave. Per-flow load balancing over several uplinks
//! would make runs of one row: above [`MAX_RUN_SHARE`] the group is written "not indexed"
//! and read by the column scan, so the index never costs more than ~0.1 byte per row.
//!
//! # Binary form (after a group's destination filter, index version 2)
//! ```text
//! varint  runs r (0 = not indexed: scan the nat_ip column)
//! if r > 0:
//!   varint  outside addresses a (distinct, ascending)
//!   per address: varint (address - previous address, as u128; the first from 0)
//!   per run: varint value (0 = no outside address, i = the i-th address), varint length
//! ```
//! Runs cover the group's rows exactly, neighbours differ in value, and every address is
//! some run's value: anything else is damage.

use std::ops::Range;

use super::tail::{corrupt, Cursor, TailError};
use crate::store::varint;

/// At most one run per this many rows: beyond it a group is not indexed (see the module doc).
pub const MAX_RUN_SHARE: usize = 32;

/// The outside addresses of one row group's rows, as runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRuns {
    /// Distinct outside addresses (16-byte column form as a big-endian number), ascending.
    addrs: Vec<u128>,
    /// Per run: 0 for rows without an outside address, else 1 + its index in `addrs`.
    values: Vec<u32>,
    /// `starts[i]`: first row of run `i`; `starts[values.len()]` is the row count.
    starts: Vec<usize>,
}

impl NatRuns {
    /// The runs of a row group's outside addresses in row order (`None`: the row has none);
    /// `None` when there are more runs than [`MAX_RUN_SHARE`] allows (not worth indexing).
    pub fn build(rows: impl ExactSizeIterator<Item = Option<[u8; 16]>>) -> Option<Self> {
        let n = rows.len();
        let limit = (n / MAX_RUN_SHARE).max(16);
        let mut runs: Vec<(Option<u128>, usize)> = Vec::new();
        for (row, a) in rows.enumerate() {
            let a = a.map(u128::from_be_bytes);
            if runs.last().is_none_or(|&(last, _)| last != a) {
                if runs.len() == limit {
                    return None;
                }
                runs.push((a, row));
            }
        }
        let mut addrs: Vec<u128> = runs.iter().filter_map(|r| r.0).collect();
        addrs.sort_unstable();
        addrs.dedup();
        let value = |a: Option<u128>| {
            a.and_then(|a| addrs.binary_search(&a).ok())
                .map_or(0, |i| i as u32 + 1)
        };
        let values = runs.iter().map(|r| value(r.0)).collect();
        let mut starts: Vec<usize> = runs.iter().map(|r| r.1).collect();
        starts.push(n);
        Some(Self {
            addrs,
            values,
            starts,
        })
    }

    /// Rows described.
    pub fn rows(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// The row ranges whose outside address is `addr`, ascending (empty: none has it).
    pub fn rows_of(&self, addr: u128) -> Vec<Range<usize>> {
        let Ok(i) = self.addrs.binary_search(&addr) else {
            return Vec::new();
        };
        let want = i as u32 + 1;
        (0..self.values.len())
            .filter(|&k| self.values[k] == want)
            .map(|k| self.starts[k]..self.starts[k + 1])
            .collect()
    }

    /// Appends the stored form of `runs` (`None`: not indexed).
    pub fn encode(runs: Option<&Self>, out: &mut Vec<u8>) {
        let Some(r) = runs else {
            varint::put(out, 0u128);
            return;
        };
        varint::put(out, r.values.len() as u128);
        varint::put(out, r.addrs.len() as u128);
        let mut prev = 0u128;
        for &a in &r.addrs {
            varint::put(out, a - prev);
            prev = a;
        }
        for (k, &v) in r.values.iter().enumerate() {
            varint::put(out, u128::from(v));
            varint::put(out, (r.starts[k + 1] - r.starts[k]) as u128);
        }
    }

    /// Parses the stored form for a group `g` of `rows` rows, checking its structure.
    pub fn parse(r: &mut Cursor<'_>, g: usize, rows: usize) -> Result<Option<Self>, TailError> {
        let bad = |what: String| corrupt(format!("row group {g}: outside addresses: {what}"));
        let runs = r.len("outside address run count", rows)?;
        if runs == 0 {
            return Ok(None);
        }
        let count = r.len("outside address count", runs)?;
        let mut addrs = Vec::with_capacity(count);
        let mut prev = 0u128;
        for i in 0..count {
            let delta = r.varint()?;
            if i > 0 && delta == 0 {
                return Err(bad(format!("address {i} repeats the one before")));
            }
            prev = prev
                .checked_add(delta)
                .ok_or_else(|| bad(format!("address {i} overflows")))?;
            addrs.push(prev);
        }
        let mut values = Vec::with_capacity(runs);
        let mut starts = Vec::with_capacity(runs + 1);
        let mut used = vec![false; count];
        let mut row = 0usize;
        for k in 0..runs {
            let v = r.len("outside address run value", count)?;
            if k > 0 && values.last() == Some(&(v as u32)) {
                return Err(bad(format!("run {k} continues the run before")));
            }
            if let Some(u) = v.checked_sub(1).and_then(|i| used.get_mut(i)) {
                *u = true;
            }
            let len = r.len("outside address run length", rows)?;
            if len == 0 {
                return Err(bad(format!("run {k} is empty")));
            }
            values.push(v as u32);
            starts.push(row);
            row = row
                .checked_add(len)
                .filter(|&n| n <= rows)
                .ok_or_else(|| bad(format!("runs exceed {rows} rows")))?;
        }
        if row != rows {
            return Err(bad(format!("runs cover {row} of {rows} rows")));
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(bad(format!("address {i} is in no run")));
        }
        starts.push(rows);
        Ok(Some(Self {
            addrs,
            values,
            starts,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testgen::Rng;

    fn a(n: u128) -> Option<[u8; 16]> {
        Some(n.to_be_bytes())
    }

    /// The rows a scan of the column finds.
    fn scan(rows: &[Option<[u8; 16]>], addr: u128) -> Vec<usize> {
        (0..rows.len()).filter(|&k| rows[k] == a(addr)).collect()
    }

    fn flatten(ranges: Vec<Range<usize>>) -> Vec<usize> {
        ranges.into_iter().flatten().collect()
    }

    #[test]
    fn runs_answer_like_a_scan_of_the_column_on_random_groups() {
        let mut rng = Rng::new(41);
        for round in 0..300 {
            let n = 1 + rng.below(3000) as usize;
            let addresses = 1 + u128::from(rng.below(5));
            let mut rows = Vec::with_capacity(n);
            while rows.len() < n {
                let v = match u128::from(rng.below(addresses as u64 + 1)) {
                    0 => None,
                    i => a(i * 0x1_0000_0001 + (1 << 80)),
                };
                let run = 1 + rng.below(if round % 3 == 0 { 3 } else { 400 }) as usize;
                rows.extend(std::iter::repeat_n(v, run.min(n - rows.len())));
            }
            let Some(runs) = NatRuns::build(rows.iter().copied()) else {
                // Only short runs may be refused, never a group within the limit.
                let changes = rows.windows(2).filter(|w| w[0] != w[1]).count() + 1;
                assert!(changes > (n / MAX_RUN_SHARE).max(16), "round {round}");
                continue;
            };
            let mut out = Vec::new();
            NatRuns::encode(Some(&runs), &mut out);
            let back = NatRuns::parse(&mut Cursor(&out), 0, n)
                .expect("parse")
                .expect("indexed");
            assert_eq!(back, runs, "round {round}");
            assert_eq!(back.rows(), n);
            for i in 0..=addresses + 1 {
                let addr = i * 0x1_0000_0001 + (1 << 80);
                assert_eq!(
                    flatten(back.rows_of(addr)),
                    scan(&rows, addr),
                    "round {round}, address {i}"
                );
            }
        }
    }

    #[test]
    fn too_many_runs_are_not_indexed_and_say_so() {
        let rows: Vec<Option<[u8; 16]>> = (0..4096u128).map(|k| a(k % 2)).collect();
        assert_eq!(NatRuns::build(rows.iter().copied()), None);
        let mut out = Vec::new();
        NatRuns::encode(None, &mut out);
        assert_eq!(out, [0]);
        assert_eq!(NatRuns::parse(&mut Cursor(&out), 0, 4096), Ok(None));
    }

    #[test]
    fn inconsistent_runs_are_refused() {
        // (runs, addresses, address deltas..., (value, length)...) for a group of 10 rows.
        let cases: [(&[u128], &str); 6] = [
            (&[2, 1, 5, 1, 4, 1, 6], "continues"),
            (&[2, 1, 5, 1, 4, 0, 5], "cover 9 of 10"),
            (&[2, 1, 5, 1, 4, 0, 7], "exceed"),
            (&[2, 2, 5, 0, 1, 4, 0, 6], "repeats"),
            (&[2, 2, 5, 1, 1, 4, 0, 6], "address 1 is in no run"),
            (&[1, 1, 5, 1, 0], "empty"),
        ];
        for (words, want) in cases {
            let mut out = Vec::new();
            for &w in words {
                varint::put(&mut out, w);
            }
            let err = NatRuns::parse(&mut Cursor(&out), 3, 10).expect_err(want);
            assert!(err.0.contains(want), "{want}: {err}");
            assert!(err.0.contains("row group 3"), "{err}");
        }
    }
}
