//! Incremental re-parse: only the lines between the first and the last line an edit changed
//! are parsed again; the entries of the common head and tail are kept, their line numbers
//! shifted, and what changed is handed to the compiler as an `Edit`.

use super::error::BadLine;
use super::parse::{count_newlines, lines, parse_region, LineStats, ParsedList, Tagged};
use crate::net::Net;

impl ParsedList {
    /// Re-parses only what changed between `old` (the text this list was parsed from) and
    /// `new`: the common leading and trailing lines are kept, their entries' line numbers
    /// shifted. Equivalent to `ParsedList::parse(new)` (a test checks this) and much cheaper
    /// for a small edit of a large file. On error `self` is unchanged.
    pub fn update(&mut self, old: &[u8], new: &[u8]) -> Result<(), Vec<BadLine>> {
        self.update_tracked(old, new).map(|_| ())
    }

    /// [`ParsedList::update`], also returning what changed for an incremental compile
    /// (`None` when the whole file was parsed again).
    pub(crate) fn update_tracked(
        &mut self,
        old: &[u8],
        new: &[u8],
    ) -> Result<Option<Edit>, Vec<BadLine>> {
        let (head, old_mid, new_mid) = changed_region(old, new);
        if new_mid > new.len() / 2 {
            // Changes spread over most of the file: splicing would cost more than it saves.
            *self = ParsedList::parse(new, &self.key)?;
            return Ok(None);
        }
        let first_line = count_newlines(&old[..head]) + 1;
        let added = parse_region(&new[head..head + new_mid], first_line, &self.key)?;
        let old_lines = lines(&old[head..head + old_mid]).count() as u32;
        let from = (first_line - 1) as usize;
        let to = (from + old_lines as usize).min(self.kinds.len());
        let mut removed = LineStats::default();
        for &k in &self.kinds[from.min(to)..to] {
            removed.count(k);
        }
        self.kinds
            .splice(from.min(to)..to, added.kinds.iter().copied());
        let shift = added.stats.lines as i64 - i64::from(old_lines);
        let last_removed = first_line + old_lines; // first line after the old middle
        let keep = |line: u32| -> Option<u32> {
            if line < first_line {
                Some(line)
            } else if line >= last_removed {
                Some((line as i64 + shift) as u32)
            } else {
                None
            }
        };
        let mut edit = Edit {
            first_line,
            last_removed,
            shift,
            v4: added.v4.iter().map(|t| t.item).collect(),
            v6: added.v6.iter().map(|t| t.item).collect(),
            domains: added.domains.iter().map(|t| t.item.hash).collect(),
        };
        // Independent vectors: splice them on separate cores.
        std::thread::scope(|s| {
            let (v4, v6, domains) = (&mut self.v4, &mut self.v6, &mut self.domains);
            let (e4, e6, ed) = (&mut edit.v4, &mut edit.v6, &mut edit.domains);
            s.spawn(move || splice(v4, added.v4, keep, |t| t.item, e4));
            s.spawn(move || splice(v6, added.v6, keep, |t| t.item, e6));
            s.spawn(move || splice(domains, added.domains, keep, |t| t.item.hash, ed));
            splice(&mut self.ports, added.ports, keep, |_| (), &mut Vec::new());
        });
        edit.v4.sort_unstable();
        edit.v4.dedup();
        edit.v6.sort_unstable();
        edit.v6.dedup();
        edit.domains.sort_unstable();
        edit.domains.dedup();
        self.stats.sub(&removed);
        self.stats.add(&added.stats);
        Ok(Some(edit))
    }
}

/// What an incremental update changed in one file: the keys removed or added (sorted, each
/// once) and how line numbers moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Edit {
    /// First line of the replaced region (1-based, same in old and new numbering).
    pub first_line: u32,
    /// First old line after the replaced region.
    pub last_removed: u32,
    /// How far old lines from `last_removed` on moved.
    pub shift: i64,
    /// IPv4 networks removed or added.
    pub v4: Vec<Net<u32>>,
    /// IPv6 networks removed or added.
    pub v6: Vec<Net<u128>>,
    /// Domain hashes removed or added.
    pub domains: Vec<u64>,
}

/// `(head, old_mid, new_mid)`: `old = old[..head] + old_mid bytes + tail` and likewise `new`,
/// where the head and the tail are whole lines common to both.
fn changed_region(old: &[u8], new: &[u8]) -> (usize, usize, usize) {
    let common = common_prefix(old, new);
    let head = old[..common]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let max_tail = (old.len() - head).min(new.len() - head);
    let tail = common_suffix(&old[head..], &new[head..]).min(max_tail);
    // Shrink the tail to start right after a newline inside it: the bytes before it are then
    // a newline in both files, so head, middle and tail are whole lines. (This may give up
    // one line that was already whole; re-parsing it is harmless.)
    let tail_start = old.len() - tail;
    let tail = match old[tail_start..].iter().position(|&b| b == b'\n') {
        Some(i) => tail - (i + 1),
        None => 0,
    };
    (head, old.len() - tail - head, new.len() - tail - head)
}

/// Length of the common prefix, compared a block at a time (slice equality is a memcmp).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Length of the common suffix, compared a block at a time.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut i = 0;
    while i + BLOCK <= n && a[n - i - BLOCK..n - i] == b[n - i - BLOCK..n - i] {
        i += BLOCK;
    }
    i + a[..n - i]
        .iter()
        .rev()
        .zip(b[..n - i].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

fn splice<T: Clone, K: Ord + Copy>(
    v: &mut Vec<Tagged<T>>,
    added: Vec<Tagged<T>>,
    keep: impl Fn(u32) -> Option<u32>,
    key: impl Fn(&Tagged<T>) -> K,
    removed: &mut Vec<K>,
) {
    v.retain_mut(|t| match keep(t.line) {
        Some(line) => {
            t.line = line;
            true
        }
        None => {
            removed.push(key(t));
            false
        }
    });
    if added.is_empty() {
        return;
    }
    // Merge two sorted runs by (key, line); line numbers are unique per run position, so the
    // order is total and equal to a full sort's.
    let old = std::mem::take(v);
    let mut out = Vec::with_capacity(old.len() + added.len());
    let mut a = old.into_iter().peekable();
    let mut b = added.into_iter().peekable();
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => key(x).cmp(&key(y)).then(x.line.cmp(&y.line)).is_le(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        out.extend(next);
    }
    *v = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::{key, XorShift};

    #[test]
    fn incremental_update_equals_full_parse() {
        let key = key();
        let mut rng = XorShift(42);
        let pool = [
            "192.0.2.1",
            "10.0.0.0/8",
            "example.com",
            "port 25",
            "# c",
            "",
            "0.0.0.0 a.b c.d",
            "2001:db8::/32",
            "10.0.0.1-10.0.0.9",
            "127.0.0.1 localhost",
            "www.example.com",
            "192.0.2.1",
        ];
        let make = |rng: &mut XorShift, n: usize| -> Vec<String> {
            (0..n)
                .map(|_| pool[(rng.next() % pool.len() as u64) as usize].to_string())
                .collect()
        };
        for round in 0..300 {
            let n = (rng.next() % 30) as usize;
            let old_lines = make(&mut rng, n);
            let mut new_lines = old_lines.clone();
            // A random edit: replace a window with fresh lines.
            let at = if new_lines.is_empty() {
                0
            } else {
                (rng.next() as usize) % (new_lines.len() + 1)
            };
            let del = ((rng.next() % 5) as usize).min(new_lines.len() - at);
            let n = (rng.next() % 5) as usize;
            let ins = make(&mut rng, n);
            new_lines.splice(at..at + del, ins);
            let join = |l: &[String], nl: bool| {
                let mut s = l.join("\n");
                if nl && !l.is_empty() {
                    s.push('\n');
                }
                s
            };
            let old = join(&old_lines, round % 2 == 0);
            let new = join(&new_lines, round % 3 == 0);
            let mut inc = ParsedList::parse(old.as_bytes(), &key).expect("pool lines are good");
            inc.update(old.as_bytes(), new.as_bytes())
                .expect("pool lines are good");
            let full = ParsedList::parse(new.as_bytes(), &key).expect("pool lines are good");
            assert_eq!(inc, full, "round {round}:\n--old--\n{old}\n--new--\n{new}");
        }
    }

    #[test]
    fn incremental_update_reports_new_line_numbers() {
        let key = key();
        let old = "a.com\nb.com\nc.com\n";
        let new = "a.com\nx.com\nbad$\nb.com\nc.com\n";
        let mut p = ParsedList::parse(old.as_bytes(), &key).expect("good");
        let before = p.clone();
        let bad = p
            .update(old.as_bytes(), new.as_bytes())
            .expect_err("bad edit");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        assert_eq!(p, before, "a failed update changes nothing");
    }

    #[test]
    fn incremental_update_matches_full_parse_on_random_bytes() {
        let key = key();
        let mut rng = XorShift(7);
        let alphabet = b"0123456789.:/-ab \n\n\n\r#";
        let gen = |rng: &mut XorShift| -> Vec<u8> {
            let n = (rng.next() % 48) as usize;
            (0..n)
                .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                .collect()
        };
        let mut compared = 0;
        for _ in 0..20_000 {
            let old = gen(&mut rng);
            let mut new = old.clone();
            // Mutate a window of the old text.
            let at = (rng.next() as usize) % (new.len() + 1);
            let del = ((rng.next() % 6) as usize).min(new.len() - at);
            let ins = gen(&mut rng);
            new.splice(at..at + del, ins.into_iter().take(8));
            let Ok(mut inc) = ParsedList::parse(&old, &key) else {
                continue;
            };
            let full = ParsedList::parse(&new, &key);
            let got = inc.update(&old, &new).map(|()| inc);
            let lines = |r: &Result<ParsedList, Vec<BadLine>>| match r {
                Ok(p) => Ok(p.clone()),
                Err(b) => Err(b.iter().map(|b| b.line).collect::<Vec<_>>()),
            };
            assert_eq!(lines(&got), lines(&full), "old {old:?} new {new:?}");
            compared += 1;
        }
        assert!(compared > 1000, "only {compared} comparisons");
    }
}
