//! Parsed lists -> kernel-ready tables: duplicates and covered entries folded, single
//! addresses split from real prefixes, port ranges expanded, every kept entry given a stable
//! rule id, and the difference from the previous tables as a [`ListDelta`].
//!
//! Two ways in: [`compile_kind`] compiles a list kind whole (start-up, several files of a
//! kind, an edit spanning most of a file); `compile_edit` patches the tables for one file's
//! edit, folding again only the address blocks and names the edit touched.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use agent_common::rules::RuleId;

use super::domain::DomainRule;
use super::ids::{IdContext, Origin};
use super::line::PortRange;
use super::parse::{ParsedList, Tagged};
use super::reparse::Edit;
use super::tables::{CompileStats, CompiledList, ListDelta, PortSlot, TableDelta};
use crate::net::{AddrBits, Net};

/// Compiles the lists of one kind (`(file index, parsed file)` in file order) against the
/// previous tables of that kind, returning the new tables and the delta between them.
pub fn compile_kind<'a>(
    files: impl Iterator<Item = (u32, &'a ParsedList)> + Clone,
    prev: &CompiledList,
    ctx: &mut IdContext<'_>,
) -> (CompiledList, ListDelta) {
    let files: Vec<(u32, &ParsedList)> = files.collect();
    let f = &files[..];
    // The folds are independent: run them on separate cores (a million-entry compile is
    // memory-bound passes, so this roughly halves it on two cores).
    let (v4, v6, (domains, dstats), (ports, pstats)) = std::thread::scope(|s| {
        let v4 = s.spawn(|| {
            let mut st = CompileStats::default();
            let r = fold_files(f, |p| &p.v4, &mut st);
            (r, st)
        });
        let v6 = s.spawn(|| {
            let mut st = CompileStats::default();
            let r = fold_files(f, |p| &p.v6, &mut st);
            (r, st)
        });
        let domains = s.spawn(|| {
            let mut st = CompileStats::default();
            (fold_domains(f, &mut st), st)
        });
        let mut st = CompileStats::default();
        let ports = (expand_ports(f.iter().copied(), &mut st), st);
        (joined(v4), joined(v6), joined(domains), ports)
    });
    let ((v4_exact, v4_prefix), s4) = v4;
    let ((v6_exact, v6_prefix), s6) = v6;
    let mut stats = CompileStats {
        v4_exact: v4_exact.len(),
        v4_prefix: v4_prefix.len(),
        v6_exact: v6_exact.len(),
        v6_prefix: v6_prefix.len(),
        domains: domains.len(),
        port_rules: pstats.port_rules,
        port_slots: ports.len(),
        duplicates: 0,
        covered: 0,
    };
    for st in [s4, s6, dstats, pstats] {
        stats.duplicates += st.duplicates;
        stats.covered += st.covered;
    }
    let mut delta = ListDelta::default();

    let list = CompiledList {
        v4_exact: ctx.join(&prev.v4_exact, v4_exact, &mut delta.v4_exact),
        v4_prefix: ctx.join(&prev.v4_prefix, v4_prefix, &mut delta.v4_prefix),
        v6_exact: ctx.join(&prev.v6_exact, v6_exact, &mut delta.v6_exact),
        v6_prefix: ctx.join(&prev.v6_prefix, v6_prefix, &mut delta.v6_prefix),
        ports: ctx.join(&prev.ports, ports, &mut delta.ports),
        domains: ctx.join(&prev.domains, domains, &mut delta.domains),
        stats,
    };
    (list, delta)
}

/// Applies one file's [`Edit`] to the tables of its kind, when that file is the kind's only
/// source: only the address blocks and names the edit touched are folded again, the rest of
/// each table is copied as it was. Gives the same tables, ids and delta as
/// [`compile_kind`] would (the replay test checks this), in time proportional to the edit
/// plus a copy of each table.
pub(crate) fn compile_edit(
    file: u32,
    parsed: &ParsedList,
    edit: &Edit,
    prev: &CompiledList,
    ctx: &mut IdContext<'_>,
) -> (CompiledList, ListDelta) {
    // Lines after the edited region moved; ids in it are re-resolved below.
    ctx.move_lines(file, edit.last_removed, edit.shift);
    let mut delta = ListDelta::default();
    let mut stats = CompileStats::default();
    let (v4_exact, v4_prefix) = refold_nets(
        &parsed.v4,
        file,
        &edit.v4,
        (&prev.v4_exact, &prev.v4_prefix),
        ctx,
        (&mut delta.v4_exact, &mut delta.v4_prefix),
        &mut stats,
    );
    let (v6_exact, v6_prefix) = refold_nets(
        &parsed.v6,
        file,
        &edit.v6,
        (&prev.v6_exact, &prev.v6_prefix),
        ctx,
        (&mut delta.v6_exact, &mut delta.v6_prefix),
        &mut stats,
    );
    let domains = refold_domains(
        &parsed.domains,
        file,
        &edit.domains,
        &prev.domains,
        ctx,
        &mut delta.domains,
        &mut stats,
    );
    // Ports are at most 131,072 slots: always recomputed.
    let mut pstats = CompileStats::default();
    let port_entries = expand_ports([(file, parsed)].into_iter(), &mut pstats);
    stats.port_rules = pstats.port_rules;
    stats.port_slots = port_entries.len();
    stats.duplicates += pstats.duplicates;
    stats.covered += pstats.covered;
    let ports = ctx.join(&prev.ports, port_entries, &mut delta.ports);
    stats.v4_exact = v4_exact.len();
    stats.v4_prefix = v4_prefix.len();
    stats.v6_exact = v6_exact.len();
    stats.v6_prefix = v6_prefix.len();
    stats.domains = domains.len();
    let list = CompiledList {
        v4_exact,
        v4_prefix,
        v6_exact,
        v6_prefix,
        ports,
        domains,
        stats,
    };
    (list, delta)
}

/// Number of distinct keys in a sorted vector.
fn distinct<T, K: PartialEq>(v: &[Tagged<T>], key: impl Fn(&T) -> K) -> usize {
    let mut n = 0;
    let mut last: Option<K> = None;
    for t in v {
        let k = key(&t.item);
        if last.as_ref() != Some(&k) {
            n += 1;
            last = Some(k);
        }
    }
    n
}

/// Kept single addresses and prefixes of one family, with their ids.
type KeptNets<A> = (Vec<(A, RuleId)>, Vec<(Net<A>, RuleId)>);
type Tables<'p, A> = (&'p [(A, RuleId)], &'p [(Net<A>, RuleId)]);
type Deltas<'d, A> = (&'d mut TableDelta<A>, &'d mut TableDelta<Net<A>>);

/// Re-folds the address blocks an edit touched. `changed` (sorted) holds every key removed or
/// added; each outermost changed block is one region. CIDR blocks nest or are disjoint, so
/// entries outside every region keep their folding, and inside a region folding depends only
/// on the region's entries, unless an unchanged broader block covers the whole region.
fn refold_nets<A: AddrBits>(
    v: &[Tagged<Net<A>>],
    file: u32,
    changed: &[Net<A>],
    prev: Tables<'_, A>,
    ctx: &mut IdContext<'_>,
    delta: Deltas<'_, A>,
    stats: &mut CompileStats,
) -> KeptNets<A> {
    let (prev_exact, prev_prefix) = prev;
    let (d_exact, d_prefix) = delta;
    let mut regions: Vec<Net<A>> = Vec::new();
    for &net in changed {
        match regions.last() {
            Some(r) if net.addr <= r.last() => {}
            _ => regions.push(net),
        }
    }
    let mut exact = Vec::with_capacity(prev_exact.len() + changed.len());
    let mut prefix = Vec::with_capacity(prev_prefix.len() + changed.len());
    let (mut pe, mut pp) = (0, 0);
    for r in regions {
        let (first, last) = (r.addr, r.last());
        // Old kept entries in the region.
        let e_lo = pe + prev_exact[pe..].partition_point(|e| e.0 < first);
        let e_hi = e_lo + prev_exact[e_lo..].partition_point(|e| e.0 <= last);
        let p_lo = pp + prev_prefix[pp..].partition_point(|e| e.0 < r);
        let p_hi = p_lo + prev_prefix[p_lo..].partition_point(|e| e.0.addr <= last);
        exact.extend_from_slice(&prev_exact[pe..e_lo]);
        prefix.extend_from_slice(&prev_prefix[pp..p_lo]);
        // Kept entries are disjoint, so only the last one before the region can cover it.
        let covered_outside = p_lo
            .checked_sub(1)
            .and_then(|i| prev_prefix.get(i))
            .is_some_and(|c| c.0.addr <= first && c.0.last() >= first);
        let mut new_exact = Vec::new();
        let mut new_prefix = Vec::new();
        if !covered_outside {
            let lo = v.partition_point(|t| t.item < r);
            let hi = lo + v[lo..].partition_point(|t| t.item.addr <= last);
            let entries = v[lo..hi]
                .iter()
                .map(|t| (t.item, Origin { file, line: t.line }));
            let mut scratch = CompileStats::default();
            let (e, p) = fold_nets(entries, 0, &mut scratch);
            new_exact = e;
            new_prefix = p;
        }
        ctx.diff_region(&prev_exact[e_lo..e_hi], &new_exact, &mut exact, d_exact);
        ctx.diff_region(&prev_prefix[p_lo..p_hi], &new_prefix, &mut prefix, d_prefix);
        pe = e_hi;
        pp = p_hi;
    }
    exact.extend_from_slice(&prev_exact[pe..]);
    prefix.extend_from_slice(&prev_prefix[pp..]);
    let distinct = distinct(v, |n| *n);
    stats.duplicates += v.len() - distinct;
    stats.covered += distinct.saturating_sub(exact.len() + prefix.len());
    (exact, prefix)
}

/// Re-folds the names an edit touched: the changed names and every name under one of them
/// (whose folding depends on them).
fn refold_domains(
    v: &[Tagged<DomainRule>],
    file: u32,
    changed: &[u64],
    prev: &[(u64, RuleId)],
    ctx: &mut IdContext<'_>,
    delta: &mut TableDelta<u64>,
    stats: &mut CompileStats,
) -> Vec<(u64, RuleId)> {
    let distinct = distinct(v, |d| d.hash);
    stats.duplicates += v.len() - distinct;
    let mut out = Vec::with_capacity(prev.len() + changed.len());
    if changed.is_empty() {
        out.extend_from_slice(prev);
        stats.covered += distinct.saturating_sub(out.len());
        return out;
    }
    let listed: HashSet<u64, BuildHasherDefault<PassThrough>> =
        v.iter().map(|t| t.item.hash).collect();
    let touched: HashSet<u64, BuildHasherDefault<PassThrough>> = changed.iter().copied().collect();
    let mut affected: Vec<u64> = changed.to_vec();
    affected.extend(
        v.iter()
            .filter(|t| t.item.parents.iter().any(|p| touched.contains(p)))
            .map(|t| t.item.hash),
    );
    affected.sort_unstable();
    affected.dedup();
    let mut pi = 0;
    for h in affected {
        let at = pi + prev[pi..].partition_point(|e| e.0 < h);
        out.extend_from_slice(&prev[pi..at]);
        let end = at + usize::from(prev.get(at).is_some_and(|e| e.0 == h));
        let first = v.partition_point(|t| t.item.hash < h);
        let new: Vec<(u64, Origin)> = match v.get(first) {
            Some(t) if t.item.hash == h && !t.item.parents.iter().any(|p| listed.contains(p)) => {
                vec![(h, Origin { file, line: t.line })]
            }
            _ => Vec::new(),
        };
        ctx.diff_region(&prev[at..end], &new, &mut out, delta);
        pi = end;
    }
    out.extend_from_slice(&prev[pi..]);
    stats.covered += distinct.saturating_sub(out.len());
    out
}

/// The result of a scoped thread; a panic in it (a bug: nothing here panics on input) is
/// re-raised on the caller.
pub(crate) fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// All files' entries of one kind with their origins, sorted by (key, origin). Each file's
/// vector is already sorted and files come in order, so the stable sort only merges runs.
fn gather<'a, T: Copy + Ord + 'a>(
    files: impl Iterator<Item = (u32, &'a ParsedList)>,
    pick: impl Fn(&'a ParsedList) -> &'a Vec<Tagged<T>>,
) -> Vec<(T, Origin)> {
    let mut all: Vec<(T, Origin)> = Vec::new();
    let mut runs = 0;
    for (file, parsed) in files {
        let v = pick(parsed);
        all.reserve(v.len());
        all.extend(v.iter().map(|t| (t.item, Origin { file, line: t.line })));
        runs += usize::from(!v.is_empty());
    }
    // One file (the common case) is one sorted run already.
    if runs > 1 {
        all.sort_by_key(|e| e.0);
    }
    all
}

/// Folds one address family of all files. A single file's vector is already in order and is
/// folded in place; several files are first merged into one sorted vector.
fn fold_files<A: AddrBits>(
    files: &[(u32, &ParsedList)],
    pick: impl Fn(&ParsedList) -> &Vec<Tagged<Net<A>>>,
    stats: &mut CompileStats,
) -> Split<A> {
    let feeding = files.iter().filter(|(_, p)| !pick(p).is_empty()).count();
    let len = files.iter().map(|(_, p)| pick(p).len()).sum();
    if feeding <= 1 {
        let entries = files.iter().flat_map(|&(file, p)| {
            pick(p)
                .iter()
                .map(move |t| (t.item, Origin { file, line: t.line }))
        });
        fold_nets(entries, len, stats)
    } else {
        fold_nets(gather(files.iter().copied(), pick).into_iter(), len, stats)
    }
}

type Split<A> = (Vec<(A, Origin)>, Vec<(Net<A>, Origin)>);

/// Drops duplicates and networks inside an earlier kept one; splits the rest into single
/// addresses and real prefixes.
///
/// Input is sorted by (address, length), so a network comes before everything it contains;
/// CIDR blocks nest or are disjoint, so an entry starting at or before the end of the last
/// kept block lies inside it.
fn fold_nets<A: AddrBits>(
    sorted: impl Iterator<Item = (Net<A>, Origin)>,
    len: usize,
    stats: &mut CompileStats,
) -> Split<A> {
    // Sized for the worst case: regrowing a half-million-entry vector costs more than the
    // short-lived slack.
    let mut exact = Vec::with_capacity(len);
    let mut prefix = Vec::with_capacity(len);
    let mut last: Option<Net<A>> = None;
    let mut cover_end: Option<A> = None;
    for (net, origin) in sorted {
        if last == Some(net) {
            stats.duplicates += 1;
            continue;
        }
        last = Some(net);
        if cover_end.is_some_and(|end| net.addr <= end) {
            stats.covered += 1;
            continue;
        }
        cover_end = Some(net.last());
        if net.is_host() {
            exact.push((net.addr, origin));
        } else {
            prefix.push((net, origin));
        }
    }
    (exact, prefix)
}

/// A hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Drops duplicate names and names under another listed name (the kernel would match the
/// broader rule first anyway, and one entry is cheaper than two).
fn fold_domains(files: &[(u32, &ParsedList)], stats: &mut CompileStats) -> Vec<(u64, Origin)> {
    let feeding = files.iter().filter(|(_, p)| !p.domains.is_empty()).count();
    let total = files.iter().map(|(_, p)| p.domains.len()).sum();
    let entries = files.iter().flat_map(|&(file, p)| {
        p.domains
            .iter()
            .map(move |t| (t.item.hash, Origin { file, line: t.line }, &*t.item.parents))
    });
    if feeding <= 1 {
        // One file's vector is already sorted by (hash, line).
        return fold_sorted_domains(entries, total, stats);
    }
    let mut all: Vec<(u64, Origin, &[u64])> = entries.collect();
    all.sort_by_key(|e| e.0);
    fold_sorted_domains(all.into_iter(), total, stats)
}

fn fold_sorted_domains<'a>(
    sorted: impl Iterator<Item = (u64, Origin, &'a [u64])> + Clone,
    total: usize,
    stats: &mut CompileStats,
) -> Vec<(u64, Origin)> {
    let listed: HashSet<u64, BuildHasherDefault<PassThrough>> =
        sorted.clone().map(|e| e.0).collect();
    let mut out = Vec::with_capacity(total);
    let mut last = None;
    for (hash, origin, parents) in sorted {
        if last == Some(hash) {
            stats.duplicates += 1;
            continue;
        }
        last = Some(hash);
        // A name under another listed name: the kernel matches the broader rule first.
        if parents.iter().any(|p| listed.contains(p)) {
            stats.covered += 1;
            continue;
        }
        out.push((hash, origin));
    }
    out
}

/// One slot per (protocol, port), owned by the earliest rule (file order, then line) that
/// names it. A rule none of whose ports is still free is folded.
fn expand_ports<'a>(
    files: impl Iterator<Item = (u32, &'a ParsedList)>,
    stats: &mut CompileStats,
) -> Vec<(PortSlot, Origin)> {
    let mut owner: Vec<Option<Origin>> = vec![None; 2 * 65536];
    let mut seen: HashSet<PortRange> = HashSet::new();
    for (file, parsed) in files {
        for t in &parsed.ports {
            let r = t.item;
            if !seen.insert(r) {
                stats.duplicates += 1;
                continue;
            }
            let base = if r.proto == agent_common::proto::TCP {
                0
            } else {
                65536
            };
            let mut took = false;
            for port in r.lo..=r.hi {
                let slot = &mut owner[base + usize::from(port)];
                if slot.is_none() {
                    *slot = Some(Origin { file, line: t.line });
                    took = true;
                }
            }
            if took {
                stats.port_rules += 1;
            } else {
                stats.covered += 1;
            }
        }
    }
    owner
        .into_iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let proto = if i < 65536 {
                agent_common::proto::TCP
            } else {
                agent_common::proto::UDP
            };
            o.map(|o| {
                (
                    PortSlot {
                        proto,
                        port: (i % 65536) as u16,
                    },
                    o,
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::ids::IdAlloc;
    use agent_common::domain::{domain_hash, DomainKey};
    use agent_common::proto;

    const KEY: DomainKey = DomainKey {
        label: [1, 2],
        suffix: [3, 4],
    };

    fn parsed(text: &str) -> ParsedList {
        ParsedList::parse(text.as_bytes(), &KEY).expect("test list is good")
    }

    struct State {
        ids: IdAlloc,
        origins: Vec<Origin>,
        table: CompiledList,
    }

    impl State {
        fn new() -> Self {
            State {
                ids: IdAlloc::default(),
                origins: Vec::new(),
                table: CompiledList::default(),
            }
        }

        fn compile(&mut self, files: &[&ParsedList]) -> (ListDelta, Vec<RuleId>) {
            self.ids.begin_generation();
            let mut assigned = Vec::new();
            let mut ctx = IdContext {
                ids: &mut self.ids,
                origins: &mut self.origins,
                assigned: &mut assigned,
                log: None,
                refuse: &[],
            };
            let (t, d) = compile_kind(
                files.iter().enumerate().map(|(i, p)| (i as u32, *p)),
                &self.table,
                &mut ctx,
            );
            self.table = t;
            (d, assigned)
        }
    }

    fn ip(s: &str) -> u32 {
        s.parse::<std::net::Ipv4Addr>()
            .expect("test address")
            .into()
    }

    #[test]
    fn folds_duplicates_and_covered_entries() {
        let a = parsed(
            "10.0.0.1\n10.0.0.0/8\n10.1.0.0/16\n192.0.2.1\n192.0.2.1\n11.0.0.0/8\n\
             example.com\nwww.example.com\nEXAMPLE.com\nbadexample.com\n\
             2001:db8::1\n2001:db8::/32\n2001:db9::1\nport tcp 20-30\nport tcp 25\nport tcp 20-30\nport udp 53\n",
        );
        let mut s = State::new();
        s.compile(&[&a]);
        let t = &s.table;
        assert_eq!(
            t.v4_exact.iter().map(|e| e.0).collect::<Vec<_>>(),
            [ip("192.0.2.1")]
        );
        assert_eq!(
            t.v4_prefix
                .iter()
                .map(|e| e.0.to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.0/8", "11.0.0.0/8"]
        );
        assert_eq!(t.v6_exact.len(), 1);
        assert_eq!(t.v6_prefix.len(), 1);
        let mut want = vec![
            domain_hash(&KEY, "example.com"),
            domain_hash(&KEY, "badexample.com"),
        ];
        want.sort();
        assert_eq!(t.domains.iter().map(|e| e.0).collect::<Vec<_>>(), want);
        assert_eq!(t.ports.len(), 11 + 1);
        assert_eq!(
            t.ports[0].0,
            PortSlot {
                proto: proto::TCP,
                port: 20
            }
        );
        let st = t.stats;
        assert_eq!(st.port_rules, 2);
        assert_eq!(
            st.duplicates,
            1 + 1 + 1,
            "192.0.2.1, EXAMPLE.com, port tcp 20-30"
        );
        assert_eq!(
            st.covered,
            2 + 1 + 1 + 1,
            "10.0.0.1, 10.1/16, www, 2001:db8::1, port tcp 25"
        );
        // The kept rule is the first one listed, and every id resolves to its line.
        let id_of_8 = t.v4_prefix[0].1;
        assert_eq!(s.origins[id_of_8 as usize], Origin { file: 0, line: 2 });
        let id_of_dup = t.v4_exact[0].1;
        assert_eq!(s.origins[id_of_dup as usize].line, 4);
    }

    #[test]
    fn first_file_owns_shared_entries() {
        let a = parsed("# a\n192.0.2.1\nport 80\n");
        let b = parsed("192.0.2.1\nport tcp 80\n");
        let mut s = State::new();
        s.compile(&[&a, &b]);
        assert_eq!(
            s.origins[s.table.v4_exact[0].1 as usize],
            Origin { file: 0, line: 2 }
        );
        assert_eq!(s.table.stats.duplicates, 2);
    }

    #[test]
    fn reload_keeps_ids_and_emits_only_changes() {
        let v1 = parsed("192.0.2.1\n192.0.2.2\n10.0.0.0/8\nexample.com\n");
        let mut s = State::new();
        let (d1, a1) = s.compile(&[&v1]);
        assert_eq!(d1.len(), 4);
        assert_eq!(a1.len(), 4);
        let id_2 = s.table.v4_exact[1].1;
        // A comment inserted at the top shifts every line but changes no key.
        let v2 = parsed("# new header\n192.0.2.1\n192.0.2.2\n10.0.0.0/8\nexample.com\n");
        let (d2, a2) = s.compile(&[&v2]);
        assert!(d2.is_empty(), "{d2:?}");
        assert!(a2.is_empty());
        assert_eq!(s.origins[id_2 as usize].line, 3, "origin follows the line");
        // Remove one, add one: one upsert, one remove; the removed id is not reused at once.
        let v3 = parsed("192.0.2.1\n192.0.2.3\n10.0.0.0/8\nexample.com\n");
        let (d3, a3) = s.compile(&[&v3]);
        assert_eq!(d3.v4_exact.remove, [ip("192.0.2.2")]);
        assert_eq!(d3.v4_exact.upsert.len(), 1);
        assert_ne!(
            a3,
            [id_2],
            "an id is not reused in the generation that freed it"
        );
        let v4 = parsed("192.0.2.1\n192.0.2.3\n192.0.2.4\n10.0.0.0/8\nexample.com\n");
        let (_, a4) = s.compile(&[&v4]);
        assert_eq!(a4, [id_2], "... but is in the next one");
    }

    /// With a hold, a removed rule's id is not reused by the next reload either, until the
    /// hold has passed: a flood window's summaries counted under it would otherwise be
    /// merged with the new rule's and named after it.
    #[test]
    fn a_held_id_is_not_reused_until_its_hold_has_passed() {
        for (hold, reused) in [
            (std::time::Duration::from_secs(3_600), false),
            (std::time::Duration::ZERO, true),
        ] {
            let mut s = State::new();
            s.ids.set_hold(hold);
            s.compile(&[&parsed("192.0.2.1\n192.0.2.2\n")]);
            let id_2 = s.table.v4_exact[1].1;
            s.compile(&[&parsed("192.0.2.1\n")]);
            let (_, added) = s.compile(&[&parsed("192.0.2.1\n192.0.2.9\n")]);
            assert_eq!(added.len(), 1);
            assert_eq!(
                added[0] == id_2,
                reused,
                "hold {hold:?}: {added:?} against {id_2}"
            );
        }
    }

    #[test]
    fn a_new_broad_prefix_replaces_what_it_covers() {
        let mut s = State::new();
        s.compile(&[&parsed("10.1.0.0/16\n10.2.0.1\n")]);
        let (d, _) = s.compile(&[&parsed("10.1.0.0/16\n10.2.0.1\n10.0.0.0/8\n")]);
        assert_eq!(d.v4_prefix.upsert.len(), 1);
        assert_eq!(d.v4_prefix.remove.len(), 1);
        assert_eq!(d.v4_exact.remove, [ip("10.2.0.1")]);
    }
}
