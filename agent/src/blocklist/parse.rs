//! A whole list file -> a [`ParsedList`] (every entry by kind, sorted, tagged with its line)
//! or every bad line, parsed on all cores for a large file. Re-parsing only what an edit
//! changed is in `reparse`.

use agent_common::domain::DomainKey;

use super::domain::DomainRule;
use super::error::BadLine;
use super::line::{parse_line, Entry, LineKind, PortRange};
use crate::net::Net;
use crate::store::fsutil::without_bom;

/// Counts of lines by kind, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Lines in the file.
    pub lines: u64,
    /// Blank lines.
    pub blank: u64,
    /// Comment lines.
    pub comments: u64,
    /// Lines that contributed entries.
    pub rules: u64,
    /// Hosts-file boilerplate lines ignored.
    pub boilerplate: u64,
    /// Adblock cosmetic rules skipped (page rules, nothing at the network).
    pub cosmetic: u64,
}

impl LineStats {
    pub(super) fn count(&mut self, kind: LineKind) {
        self.lines += 1;
        match kind {
            LineKind::Blank => self.blank += 1,
            LineKind::Comment => self.comments += 1,
            LineKind::Rule => self.rules += 1,
            LineKind::HostsBoilerplate => self.boilerplate += 1,
            LineKind::Cosmetic => self.cosmetic += 1,
        }
    }

    pub(super) fn sub(&mut self, o: &LineStats) {
        self.lines -= o.lines;
        self.blank -= o.blank;
        self.comments -= o.comments;
        self.rules -= o.rules;
        self.boilerplate -= o.boilerplate;
        self.cosmetic -= o.cosmetic;
    }

    pub(super) fn add(&mut self, o: &LineStats) {
        self.lines += o.lines;
        self.blank += o.blank;
        self.comments += o.comments;
        self.rules += o.rules;
        self.boilerplate += o.boilerplate;
        self.cosmetic += o.cosmetic;
    }
}

/// An entry tagged with its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged<T> {
    /// The entry.
    pub item: T,
    /// The line it came from.
    pub line: u32,
}

/// Every entry of one good list file, by kind. Each vector is sorted by (key, line), so
/// duplicates sit together and merging several files is a merge of sorted runs. Domain rules
/// are hashed under the key the list was parsed with, which every update reuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedList {
    /// IPv4 networks, ranges already split into prefixes.
    pub v4: Vec<Tagged<Net<u32>>>,
    /// IPv6 networks.
    pub v6: Vec<Tagged<Net<u128>>>,
    /// Domain rules, sorted by hash.
    pub domains: Vec<Tagged<DomainRule>>,
    /// Port rules, in line order (the earliest rule owns a port two rules share).
    pub ports: Vec<Tagged<PortRange>>,
    /// Line counts by kind.
    pub stats: LineStats,
    /// The kind of every line, so an incremental update knows what the lines it drops were
    /// without parsing them again.
    pub(super) kinds: Vec<LineKind>,
    /// The key the domain rules are hashed with.
    pub(super) key: DomainKey,
}

/// Splits a file into lines the way line numbers count them: on `\n`, with no phantom last
/// line after a final `\n`.
pub(super) fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty)
}

impl ParsedList {
    /// Parses a whole file, hashing domain rules under `key`. Every bad line is returned, in
    /// line order.
    pub fn parse(bytes: &[u8], key: &DomainKey) -> Result<ParsedList, Vec<BadLine>> {
        parse_region(bytes, 1, key)
    }

    /// A list with no lines.
    fn empty(key: &DomainKey) -> ParsedList {
        ParsedList {
            v4: Vec::new(),
            v6: Vec::new(),
            domains: Vec::new(),
            ports: Vec::new(),
            stats: LineStats::default(),
            kinds: Vec::new(),
            key: *key,
        }
    }

    /// Number of entries of every kind (before folding).
    pub fn entries(&self) -> usize {
        self.v4.len() + self.v6.len() + self.domains.len() + self.ports.len()
    }
}

/// Number of `\n` bytes in `b`.
pub(super) fn count_newlines(b: &[u8]) -> u32 {
    // Fixed-size blocks with a byte-sized counter let the compiler vectorise the inner loop.
    let mut n = 0usize;
    let mut blocks = b.chunks_exact(128);
    for block in &mut blocks {
        n += usize::from(block.iter().map(|&c| u8::from(c == b'\n')).sum::<u8>());
    }
    n += blocks.remainder().iter().filter(|&&c| c == b'\n').count();
    n as u32
}

/// Below this size a region is parsed on the calling thread: a thread costs more than it
/// saves.
const PARALLEL_MIN_BYTES: usize = 1 << 20;

/// Parses a region of whole lines whose first line is `first_line`, on all cores: the region
/// is cut at line boundaries into one chunk per core, the chunks parsed in parallel, and their
/// sorted vectors merged.
pub(super) fn parse_region(
    bytes: &[u8],
    first_line: u32,
    key: &DomainKey,
) -> Result<ParsedList, Vec<BadLine>> {
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if cores == 1 || bytes.len() < PARALLEL_MIN_BYTES {
        return parse_chunk(bytes, first_line, key);
    }
    let mut chunks = Vec::with_capacity(cores);
    let mut start = 0;
    let mut line = first_line;
    for k in 1..=cores {
        let end = if k == cores {
            bytes.len()
        } else {
            let target = (bytes.len() * k / cores).max(start);
            bytes[target..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |i| target + i + 1)
        };
        if end > start {
            chunks.push((&bytes[start..end], line));
            line += count_newlines(&bytes[start..end]);
            start = end;
        }
    }
    let results: Vec<Result<ParsedList, Vec<BadLine>>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|&(chunk, first)| s.spawn(move || parse_chunk(chunk, first, key)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut merged = ParsedList::empty(key);
    // Exact capacities: a doubling vector would keep up to half its size unused for as long
    // as the list is loaded.
    let total = |f: fn(&ParsedList) -> usize| -> usize { results.iter().flatten().map(f).sum() };
    merged.v4.reserve_exact(total(|p| p.v4.len()));
    merged.v6.reserve_exact(total(|p| p.v6.len()));
    merged.domains.reserve_exact(total(|p| p.domains.len()));
    merged.ports.reserve_exact(total(|p| p.ports.len()));
    merged.kinds.reserve_exact(total(|p| p.kinds.len()));
    let mut bad = Vec::new();
    for r in results {
        match r {
            Ok(p) if bad.is_empty() => {
                merged.v4.extend(p.v4);
                merged.v6.extend(p.v6);
                merged.domains.extend(p.domains);
                merged.ports.extend(p.ports);
                merged.kinds.extend(p.kinds);
                merged.stats.add(&p.stats);
            }
            Ok(_) => {}
            Err(mut b) => bad.append(&mut b),
        }
    }
    if !bad.is_empty() {
        return Err(bad);
    }
    // Sorted runs, one per chunk: the stable sort merges them.
    merged.v4.sort_by_key(|t| t.item);
    merged.v6.sort_by_key(|t| t.item);
    merged.domains.sort_by_key(|t| t.item.hash);
    Ok(merged)
}

fn parse_chunk(bytes: &[u8], first_line: u32, key: &DomainKey) -> Result<ParsedList, Vec<BadLine>> {
    let mut list = ParsedList::empty(key);
    let mut bad = Vec::new();
    let mut entries = Vec::new();
    for (i, raw) in lines(bytes).enumerate() {
        let line = first_line + i as u32;
        let raw = if line == 1 { without_bom(raw) } else { raw };
        entries.clear();
        match parse_line(raw, &mut entries) {
            Ok(kind) => {
                list.stats.count(kind);
                list.kinds.push(kind);
            }
            Err(error) => {
                bad.push(BadLine { line, error });
                continue;
            }
        }
        if !bad.is_empty() {
            continue;
        }
        for e in entries.drain(..) {
            match e {
                Entry::V4(item) => list.v4.push(Tagged { item, line }),
                Entry::V6(item) => list.v6.push(Tagged { item, line }),
                Entry::Domain(name) => list.domains.push(Tagged {
                    item: DomainRule::new(&name, key),
                    line,
                }),
                Entry::Port(item) => list.ports.push(Tagged { item, line }),
            }
        }
    }
    if !bad.is_empty() {
        return Err(bad);
    }
    // Lines are in order and (key, line) is unique, so an unstable sort gives the stable order.
    list.v4.sort_unstable_by_key(|t| (t.item, t.line));
    list.v6.sort_unstable_by_key(|t| (t.item, t.line));
    list.domains.sort_unstable_by_key(|t| (t.item.hash, t.line));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::key;

    #[test]
    fn files_report_every_bad_line_with_its_number() {
        let text =
            b"\xef\xbb\xbf# list\r\n192.0.2.1\r\n10.0.0.0/33\n\nexa$mple\nport tcp 25\n1.2.3\n";
        let bad = ParsedList::parse(text, &key()).expect_err("three bad lines");
        let got: Vec<String> = bad.iter().map(|b| b.to_string()).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("3: CIDR `10.0.0.0/33`"), "{got:?}");
        assert!(got[1].starts_with("5: domain `exa$mple`"), "{got:?}");
        assert!(got[2].starts_with("7: IPv4 address `1.2.3`"), "{got:?}");
        let good = ParsedList::parse(
            b"\xef\xbb\xbf192.0.2.1\n# c\n\nexample.com\nport 25",
            &key(),
        )
        .expect("good file");
        assert_eq!(good.v4.len(), 1);
        assert_eq!(good.domains[0].line, 4);
        assert_eq!(good.ports.len(), 2);
        assert_eq!(
            good.stats,
            LineStats {
                lines: 5,
                blank: 1,
                comments: 1,
                rules: 3,
                boilerplate: 0,
                cosmetic: 0,
            }
        );
    }
    #[test]
    fn parallel_parse_equals_sequential_and_numbers_lines_across_chunks() {
        let pool = [
            "192.0.2.1",
            "10.0.0.0/8",
            "www.example.com",
            "port 25",
            "# comment",
            "",
            "2001:db8::/32",
            "0.0.0.0 a.example b.example",
        ];
        let mut text = String::new();
        let mut n = 0;
        while text.len() < 3 * PARALLEL_MIN_BYTES {
            text.push_str(pool[n % pool.len()]);
            text.push('\n');
            n += 1;
        }
        let key = key();
        let par = parse_region(text.as_bytes(), 1, &key).expect("good");
        let seq = parse_chunk(text.as_bytes(), 1, &key).expect("good");
        assert_eq!(par, seq);
        assert_eq!(par.stats.lines, n as u64);
        // Bad lines in every chunk are all reported, with their absolute numbers.
        let mut lines: Vec<&str> = text.lines().collect();
        let bad_at = [1usize, n / 3, n / 2 + 1, n - 1];
        for &i in &bad_at {
            lines[i] = "bad$";
        }
        let text = lines.join("\n");
        let bad = parse_region(text.as_bytes(), 1, &key).expect_err("bad lines");
        let got: Vec<u32> = bad.iter().map(|b| b.line).collect();
        let want: Vec<u32> = bad_at.iter().map(|&i| i as u32 + 1).collect();
        assert_eq!(got, want);
    }
}
