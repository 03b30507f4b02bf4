//! The list set against its contract: bad edits keep the last good version, reloads equal a
//! fresh load, and the deltas replay to the tables.

use super::*;
use crate::blocklist::line::{parse_line, Entry};
use crate::blocklist::tables::{PortSlot, TableDelta};
use crate::blocklist::tests::{key, write, TempDir, XorShift};
use crate::blocklist::Capacity;
use crate::net::Net;

/// Two list files in `dir` with their first contents, and a set of them under a fresh key
/// (not loaded yet).
fn two_files(
    dir: &TempDir,
    a: (&str, &str, ListKind),
    b: (&str, &str, ListKind),
) -> (PathBuf, PathBuf, ListSet) {
    let (pa, pb) = (dir.0.join(a.0), dir.0.join(b.0));
    write(&pa, a.1);
    write(&pb, b.1);
    let set = ListSet::new([(pa.clone(), a.2), (pb.clone(), b.2)], key());
    (pa, pb, set)
}

/// The tables as a kernel map would hold them: keys with their ids.
fn tables(l: &CompiledList) -> impl PartialEq + std::fmt::Debug {
    (
        l.v4_exact.clone(),
        l.v4_prefix.clone(),
        l.v6_exact.clone(),
        l.v6_prefix.clone(),
        l.ports.clone(),
        l.domains.clone(),
    )
}

#[test]
fn a_reload_too_large_for_the_tables_is_refused_and_changes_nothing() {
    let dir = TempDir::new("too-large");
    let (a, b, mut set) = two_files(
        &dir,
        (
            "a.list",
            "192.0.2.1\n10.0.0.0/8\nexample.com\n",
            ListKind::Block,
        ),
        ("b.list", "198.51.100.0/24\n", ListKind::Block),
    );
    let (_, diags) = set.reload_all();
    assert!(diags.is_empty(), "{diags:?}");
    // Tables of 4 entries: the lists hold 1 address, 2 prefixes, 1 name.
    set.set_capacity(Capacity::for_lists(&CompiledLists::default(), 4));
    let before = set.compiled().block.clone();
    let origin_of = |set: &ListSet, id: RuleId| set.origin(id).map(|o| (o.path.to_owned(), o.line));
    let origins_before: Vec<_> = (0..set.rule_id_bound())
        .map(|id| origin_of(&set, id))
        .collect();

    // Four more addresses: 5 in the IPv4 exact table, which holds 4.
    write(
        &a,
        "192.0.2.1\n192.0.2.2\n192.0.2.3\n# moved\n192.0.2.4\n192.0.2.5\n10.0.0.0/8\nexample.com\n",
    );
    write(&b, "# emptied\n");
    let (delta, diags) = set.reload_many(&[a.clone(), b.clone()]);
    assert!(delta.is_empty(), "nothing reaches the kernel: {delta:?}");
    assert_eq!(delta.generation, 1, "no new generation");
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    let tail = "the last good version stays in force (restart the agent to size the tables from \
                the lists, or raise --list-capacity)";
    assert_eq!(
        text,
        [
            format!(
                "{}: not applied: the lists would need 5 entries in map BLOCK_V4, which holds 4 \
                 (with {}, changed in the same reload); {tail}",
                a.display(),
                b.display()
            ),
            format!(
                "{}: not applied: the lists would need 5 entries in map BLOCK_V4, which holds 4 \
                 (with {}, changed in the same reload); {tail}",
                b.display(),
                a.display()
            ),
        ]
    );
    // Exactly as before: the tables with their ids, the generation, every origin.
    assert_eq!(tables(&set.compiled().block), tables(&before));
    assert_eq!(set.compiled().generation, 1);
    let origins_after: Vec<_> = (0..set.rule_id_bound())
        .map(|id| origin_of(&set, id))
        .collect();
    assert_eq!(origins_after, origins_before);

    // A removal counts until it is applied: 4 new addresses in place of the old one are
    // 4 + 1 = 5 entries at once.
    write(
        &a,
        "192.0.2.6\n192.0.2.7\n192.0.2.8\n192.0.2.9\n10.0.0.0/8\nexample.com\n",
    );
    let diags = set
        .reload(&a)
        .expect_err("5 entries while the delta is applied");
    assert!(
        diags[0]
            .to_string()
            .contains("need 5 entries in map BLOCK_V4"),
        "{}",
        diags[0]
    );
    assert_eq!(tables(&set.compiled().block), tables(&before));

    // The files' last good versions are the old ones: an edit builds on them, and only the
    // new line reaches the tables.
    write(&b, "198.51.100.0/24\n203.0.113.9\n");
    let d = set.reload(&b).expect("fits");
    assert_eq!(d.block.len(), 1, "only the new line: {d:?}");
    assert_eq!(
        d.block.v4_exact.upsert[0].0,
        u32::from_be_bytes([203, 0, 113, 9])
    );
    assert_eq!(d.generation, 2);
    let o = set.origin(d.block.v4_exact.upsert[0].1).expect("origin");
    assert_eq!((o.path, o.line), (b.as_path(), 2));
}

#[test]
fn a_bad_edit_keeps_the_last_good_version() {
    let dir = TempDir::new("listset");
    let (block, _, mut set) = two_files(
        &dir,
        ("block.txt", "192.0.2.1\nexample.com\n", ListKind::Block),
        ("allow.txt", "192.0.2.1\n", ListKind::Allow),
    );
    let (delta, diags) = set.reload_all();
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(delta.block.len(), 2);
    assert_eq!(delta.allow.len(), 1);
    assert_eq!(delta.generation, 1);
    let before = set.compiled().block.clone();

    write(
        &block,
        "192.0.2.1\n10.0.0.0/33\nexample.com\nbad$\n198.51.100.7\n",
    );
    let diags = set.reload(&block).expect_err("bad edit is refused");
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    let b = block.display();
    assert_eq!(
        text,
        [
            format!("{b}:2: CIDR `10.0.0.0/33`: prefix length 33 is over 32 for IPv4"),
            format!("{b}:4: domain `bad$`: character '$' is not allowed (letters, digits, `-`, `_`, dots between labels)"),
        ]
    );
    assert_eq!(set.compiled().block, before, "nothing applied");
    assert_eq!(set.compiled().generation, 1);

    // Fixed: applies, and the unchanged rules keep their ids.
    let id = set.compiled().block.v4_exact[0].1;
    write(&block, "192.0.2.1\nexample.com\n198.51.100.7\n");
    let delta = set.reload(&block).expect("good edit");
    assert_eq!(delta.block.v4_exact.upsert.len(), 1);
    assert!(delta.block.v4_exact.remove.is_empty());
    assert_eq!(set.compiled().block.v4_exact[0].1, id);
    assert_eq!(delta.generation, 2);
    let o = set
        .origin(set.compiled().block.v4_exact[1].1)
        .expect("origin");
    assert_eq!(
        (o.path, o.kind, o.line),
        (block.as_path(), ListKind::Block, 3)
    );

    // Same content again: empty delta, same generation.
    let delta = set.reload(&block).expect("unchanged");
    assert!(delta.is_empty());
    assert_eq!(delta.generation, 2);

    // Emptied (caught between a truncation and its new contents): reported, last good
    // stays; a comment-only file empties the list on purpose.
    write(&block, "");
    let diags = set.reload(&block).expect_err("an emptied file is refused");
    assert_eq!(
        diags[0].to_string(),
        format!("{b}: is empty (0 bytes) where its last version held 3 rules: not applied, that version stays in force (to empty a list on purpose, leave a comment line in it)")
    );
    assert_eq!(set.compiled().block.v4_exact.len(), 2);
    write(&block, "# nothing blocked for now\n");
    set.reload(&block).expect("a comment-only file applies");
    assert_eq!(set.compiled().block.v4_exact.len(), 0);
    write(&block, "192.0.2.1\nexample.com\n198.51.100.7\n");
    set.reload(&block).expect("back");

    // Deleted: reported, last good stays.
    std::fs::remove_file(&block).expect("rm");
    let diags = set.reload(&block).expect_err("missing file");
    assert!(
        diags[0]
            .to_string()
            .starts_with(&format!("{b}: cannot read:")),
        "{}",
        diags[0]
    );
    assert_eq!(set.compiled().block.v4_exact.len(), 2);

    let diags = set
        .reload(Path::new("/nonexistent/other"))
        .expect_err("unknown");
    assert_eq!(
        diags[0].to_string(),
        "/nonexistent/other: not a configured list file"
    );
}

#[test]
fn reload_many_applies_the_good_files_in_one_generation() {
    let dir = TempDir::new("many");
    let (a, b, mut set) = two_files(
        &dir,
        ("a.txt", "192.0.2.1\n", ListKind::Block),
        ("b.txt", "192.0.2.2\n", ListKind::Allow),
    );
    let _ = set.reload_all();
    assert_eq!(set.rule_id_bound(), 2);
    write(&a, "192.0.2.1\n192.0.2.3\n");
    write(&b, "bad$\n");
    let (delta, diags) = set.reload_many(&[a.clone(), b.clone()]);
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].to_string(), format!("{}:1: domain `bad$`: character '$' is not allowed (letters, digits, `-`, `_`, dots between labels)", b.display()));
    assert_eq!(delta.block.v4_exact.upsert.len(), 1);
    assert!(delta.allow.is_empty());
    assert_eq!(delta.generation, 2);
    assert_eq!(
        set.compiled().allow.v4_exact.len(),
        1,
        "allowlist keeps its last good version"
    );
}

#[test]
fn a_file_bad_at_start_loads_nothing_and_the_rest_applies() {
    let dir = TempDir::new("listset-start");
    let (good, bad, mut set) = two_files(
        &dir,
        ("good.txt", "192.0.2.1\n", ListKind::Block),
        ("bad.txt", "192.0.2.2\nnope$\n", ListKind::Block),
    );
    let (delta, diags) = set.reload_all();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].line, Some(2));
    assert_eq!(delta.block.v4_exact.upsert.len(), 1);
    assert_eq!(set.line_stats(&good).map(|s| s.rules), Some(1));
    assert_eq!(set.line_stats(&bad), None);
}

/// The keys of every table, without ids (which depend on history).
fn keys(l: &CompiledList) -> impl PartialEq + std::fmt::Debug {
    (
        l.v4_exact.iter().map(|e| e.0).collect::<Vec<_>>(),
        l.v4_prefix.iter().map(|e| e.0).collect::<Vec<_>>(),
        l.v6_exact.iter().map(|e| e.0).collect::<Vec<_>>(),
        l.v6_prefix.iter().map(|e| e.0).collect::<Vec<_>>(),
        l.ports.iter().map(|e| e.0).collect::<Vec<_>>(),
        l.domains.iter().map(|e| e.0).collect::<Vec<_>>(),
        l.stats,
    )
}

#[test]
fn reloads_equal_a_fresh_load_and_deltas_replay_to_the_tables() {
    let pool = [
        "192.0.2.1",
        "192.0.2.0/24",
        "10.0.0.0/8",
        "10.1.2.3",
        "2001:db8::1",
        "2001:db8::/32",
        "example.com",
        "www.example.com",
        "badexample.com",
        "port 25",
        "port tcp 20-30",
        "# c",
        "",
        "10.0.0.1-10.0.0.9",
        "0.0.0.0 ads.example t.example",
    ];
    let dir = TempDir::new("replay");
    let a = dir.0.join("a.txt");
    let b = dir.0.join("b.txt");
    let mut rng = XorShift(0x1234_5678);
    let mut next = move || rng.next();
    let mut text = |n: u64| -> String {
        (0..n)
            .map(|_| pool[(next() % pool.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join("\n")
    };
    write(&a, &text(8));
    write(&b, &text(8));
    let files = [(a.clone(), ListKind::Block), (b.clone(), ListKind::Block)];
    let key = key();
    let mut set = ListSet::new(files.clone(), key);
    let (d, diags) = set.reload_all();
    assert!(diags.is_empty());
    // The loader's view of the block v4 exact map, replayed from deltas alone.
    let mut kernel: std::collections::BTreeMap<u32, RuleId> =
        d.block.v4_exact.upsert.iter().copied().collect();
    for round in 0..60 {
        let path = if round % 2 == 0 { &a } else { &b };
        write(path, &text(4 + round % 9));
        let d = set.reload(path).expect("pool lines are good");
        for (k, id) in &d.block.v4_exact.upsert {
            kernel.insert(*k, *id);
        }
        for k in &d.block.v4_exact.remove {
            kernel.remove(k);
        }
        let want: std::collections::BTreeMap<u32, RuleId> =
            set.compiled().block.v4_exact.iter().copied().collect();
        assert_eq!(kernel, want, "round {round}: deltas replay to the tables");
        let mut fresh = ListSet::new(files.clone(), key);
        let _ = fresh.reload_all();
        assert_eq!(
            keys(&set.compiled().block),
            keys(&fresh.compiled().block),
            "round {round}"
        );
        // Every live id resolves to a line that holds its rule.
        for (k, id) in &set.compiled().block.v4_exact {
            let o = set.origin(*id).expect("live id has an origin");
            let line = std::fs::read_to_string(o.path)
                .expect("read")
                .lines()
                .nth(o.line as usize - 1)
                .map(str::to_owned)
                .expect("line exists");
            let mut out = Vec::new();
            parse_line(line.as_bytes(), &mut out).expect("good line");
            assert!(
                out.iter()
                    .any(|e| matches!(e, Entry::V4(n) if n.addr <= *k && *k <= n.last())),
                "round {round}: id {id} -> {}:{} `{line}` does not hold {k}",
                o.path.display(),
                o.line
            );
        }
    }
}

/// Replays a table delta onto a map, as the loader does.
fn replay<K: Ord + Copy>(map: &mut std::collections::BTreeMap<K, RuleId>, d: &TableDelta<K>) {
    for (k, id) in &d.upsert {
        map.insert(*k, *id);
    }
    for k in &d.remove {
        map.remove(k);
    }
}

#[derive(Default, Debug, PartialEq)]
struct Maps {
    v4e: std::collections::BTreeMap<u32, RuleId>,
    v4p: std::collections::BTreeMap<Net<u32>, RuleId>,
    v6e: std::collections::BTreeMap<u128, RuleId>,
    v6p: std::collections::BTreeMap<Net<u128>, RuleId>,
    ports: std::collections::BTreeMap<PortSlot, RuleId>,
    domains: std::collections::BTreeMap<u64, RuleId>,
}

impl Maps {
    fn apply(&mut self, d: &ListDelta) {
        replay(&mut self.v4e, &d.v4_exact);
        replay(&mut self.v4p, &d.v4_prefix);
        replay(&mut self.v6e, &d.v6_exact);
        replay(&mut self.v6p, &d.v6_prefix);
        replay(&mut self.ports, &d.ports);
        replay(&mut self.domains, &d.domains);
    }

    fn of(l: &CompiledList) -> Maps {
        Maps {
            v4e: l.v4_exact.iter().copied().collect(),
            v4p: l.v4_prefix.iter().copied().collect(),
            v6e: l.v6_exact.iter().copied().collect(),
            v6p: l.v6_prefix.iter().copied().collect(),
            ports: l.ports.iter().copied().collect(),
            domains: l.domains.iter().copied().collect(),
        }
    }
}

/// Whether the line at `o` holds a rule for `check`.
fn line_holds(set: &ListSet, id: RuleId, check: impl Fn(&Entry) -> bool) -> bool {
    let Some(o) = set.origin(id) else {
        return false;
    };
    let text = std::fs::read_to_string(o.path).expect("read");
    let Some(line) = text.lines().nth(o.line as usize - 1) else {
        return false;
    };
    let mut out = Vec::new();
    parse_line(line.as_bytes(), &mut out).is_ok() && out.iter().any(check)
}

/// Asserts that `set` holds what a fresh load of `files` gives (the same keys, the deltas so
/// far replayed into `maps` give its tables, every live id resolves to a line that holds its
/// rule, and no id is live twice).
fn assert_equals_a_fresh_load(
    set: &ListSet,
    files: &[(PathBuf, ListKind)],
    maps: &[Maps; 2],
    round: usize,
) {
    let mut fresh = ListSet::new(files.to_vec(), set.domain_key());
    let _ = fresh.reload_all();
    for (k, kind) in [ListKind::Block, ListKind::Allow].into_iter().enumerate() {
        let got = set.compiled().list(kind);
        assert_eq!(
            keys(got),
            keys(fresh.compiled().list(kind)),
            "round {round} {kind}"
        );
        assert_eq!(
            maps[k],
            Maps::of(got),
            "round {round} {kind}: deltas replay to the tables"
        );
        for &(a, id) in &got.v4_exact {
            assert!(
                line_holds(
                    set,
                    id,
                    |e| matches!(e, Entry::V4(n) if n.addr == a && n.is_host())
                ),
                "round {round}: v4 {a} id {id}"
            );
        }
        for &(net, id) in &got.v4_prefix {
            assert!(
                line_holds(set, id, |e| matches!(e, Entry::V4(n) if *n == net)),
                "round {round}: {net}"
            );
        }
        for &(net, id) in &got.v6_prefix {
            assert!(
                line_holds(set, id, |e| matches!(e, Entry::V6(n) if *n == net)),
                "round {round}: {net}"
            );
        }
        for &(a, id) in &got.v6_exact {
            assert!(
                line_holds(
                    set,
                    id,
                    |e| matches!(e, Entry::V6(n) if n.addr == a && n.is_host())
                ),
                "round {round}: v6"
            );
        }
        for &(h, id) in &got.domains {
            assert!(
                line_holds(
                    set,
                    id,
                    |e| matches!(e, Entry::Domain(d) if agent_common::domain::domain_hash(&set.domain_key(), d) == h)
                ),
                "round {round}: domain id {id}"
            );
        }
        for &(slot, id) in &got.ports {
            assert!(
                line_holds(
                    set,
                    id,
                    |e| matches!(e, Entry::Port(r) if r.proto == slot.proto && r.lo <= slot.port && slot.port <= r.hi)
                ),
                "round {round}: port {slot:?}"
            );
        }
    }
    // Live ids are unique across every table of both kinds.
    let mut ids: Vec<RuleId> = Vec::new();
    for kind in [ListKind::Block, ListKind::Allow] {
        let l = set.compiled().list(kind);
        ids.extend(l.v4_exact.iter().map(|e| e.1));
        ids.extend(l.v4_prefix.iter().map(|e| e.1));
        ids.extend(l.v6_exact.iter().map(|e| e.1));
        ids.extend(l.v6_prefix.iter().map(|e| e.1));
        ids.extend(l.ports.iter().map(|e| e.1));
        ids.extend(l.domains.iter().map(|e| e.1));
    }
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "round {round}: duplicate live rule ids");
}

#[test]
fn incremental_edits_equal_a_fresh_load_for_every_table() {
    let pool = [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.0/24",
        "10.1.2.3",
        "10.1.2.4",
        "10.2.0.1",
        "192.0.2.1",
        "192.0.2.0/25",
        "2001:db8::/32",
        "2001:db8:1::/48",
        "2001:db8:1::1",
        "2001:db9::1",
        "example.com",
        "a.example.com",
        "b.a.example.com",
        "other.org",
        "x.other.org",
        "port 25",
        "port tcp 20-30",
        "port udp 53",
        "# c",
        "",
        "10.3.0.1-10.3.0.9",
        "0.0.0.0 ads.example a.example.com",
    ];
    let dir = TempDir::new("incremental");
    let block = dir.0.join("block.txt");
    let allow = dir.0.join("allow.txt");
    let mut rng = XorShift(0x9e37_79b9);
    let mut next = move || rng.next();
    let mut lines: [Vec<&str>; 2] = [Vec::new(), Vec::new()];
    for l in &mut lines {
        for _ in 0..120 {
            l.push(pool[(next() % pool.len() as u64) as usize]);
        }
    }
    write(&block, &lines[0].join("\n"));
    write(&allow, &lines[1].join("\n"));
    let files = [
        (block.clone(), ListKind::Block),
        (allow.clone(), ListKind::Allow),
    ];
    let key = key();
    let mut set = ListSet::new(files.clone(), key);
    let (d, diags) = set.reload_all();
    assert!(diags.is_empty());
    let mut maps = [Maps::default(), Maps::default()];
    maps[0].apply(&d.block);
    maps[1].apply(&d.allow);
    for round in 0..150 {
        let which = (next() % 2) as usize;
        let l = &mut lines[which];
        let at = (next() as usize) % (l.len() + 1);
        let del = ((next() % 8) as usize).min(l.len() - at);
        let ins: Vec<&str> = (0..next() % 8)
            .map(|_| pool[(next() % pool.len() as u64) as usize])
            .collect();
        l.splice(at..at + del, ins);
        let path = if which == 0 { &block } else { &allow };
        write(path, &l.join("\n"));
        let d = set.reload(path).expect("pool lines are good");
        maps[0].apply(&d.block);
        maps[1].apply(&d.allow);
        assert_equals_a_fresh_load(&set, &files, &maps, round);
    }
}

/// Everything a reload could change, as the agent sees it: the tables with their ids, the
/// origin of every id ever handed out (removed rules' ids still resolve), the generation and
/// each file's line counts.
fn state(set: &ListSet, paths: &[&Path]) -> impl PartialEq + std::fmt::Debug {
    (
        tables(&set.compiled().block),
        tables(&set.compiled().allow),
        (0..set.rule_id_bound())
            .map(|id| set.origin(id).map(|o| (o.path.to_owned(), o.line)))
            .collect::<Vec<_>>(),
        set.compiled().generation,
        paths.iter().map(|p| set.line_stats(p)).collect::<Vec<_>>(),
    )
}

#[test]
fn refused_reloads_leave_everything_as_it_was_and_accepted_ones_equal_a_fresh_load() {
    let dir = TempDir::new("refused");
    let block = dir.0.join("block.txt");
    let allow = dir.0.join("allow.txt");
    let mut rng = XorShift(0x5eed_1234);
    let mut line = move || -> String {
        let r = rng.next();
        match r % 8 {
            0..=3 => format!("10.0.0.{}", (r >> 8) % 64),
            4 if r >> 8 & 1 == 0 => format!("10.0.0.{}/30", 4 * ((r >> 9) % 16)),
            4 => format!("10.1.{}.0/24", (r >> 9) % 32),
            5 => format!("d{}.example", (r >> 8) % 24),
            6 => format!("x.d{}.example", (r >> 8) % 24),
            _ => "# comment".to_owned(),
        }
    };
    let mut lines: [Vec<String>; 2] = [
        (0..40).map(|_| line()).collect(),
        (0..20).map(|_| line()).collect(),
    ];
    write(&block, &lines[0].join("\n"));
    write(&allow, &lines[1].join("\n"));
    let files = [
        (block.clone(), ListKind::Block),
        (allow.clone(), ListKind::Allow),
    ];
    let paths = [block.as_path(), allow.as_path()];
    let key = key();
    let mut set = ListSet::new(files.clone(), key);
    let (d, diags) = set.reload_all();
    assert!(diags.is_empty(), "{diags:?}");
    let mut maps = [Maps::default(), Maps::default()];
    maps[0].apply(&d.block);
    maps[1].apply(&d.allow);
    set.set_capacity(Capacity::for_lists(&CompiledLists::default(), 20));
    let mut rng = XorShift(0xfeed_5678);
    let (mut refused, mut applied) = (0, 0);
    for round in 0..300 {
        let which = (rng.next() % 2) as usize;
        let before_text = lines[which].clone();
        let l = &mut lines[which];
        let at = (rng.next() as usize) % (l.len() + 1);
        let del = ((rng.next() % 6) as usize).min(l.len() - at);
        let ins: Vec<String> = (0..rng.next() % 7).map(|_| line()).collect();
        l.splice(at..at + del, ins);
        let path = paths[which];
        write(path, &l.join("\n"));
        let before = state(&set, &paths);
        match set.reload(path) {
            Err(diags) => {
                refused += 1;
                assert!(
                    diags
                        .iter()
                        .all(|d| matches!(d.problem, Problem::TooLarge { .. })),
                    "round {round}: {diags:?}"
                );
                assert_eq!(
                    state(&set, &paths),
                    before,
                    "round {round}: refused, unchanged"
                );
                // The operator puts the file back as it was.
                lines[which] = before_text;
                write(path, &lines[which].join("\n"));
            }
            Ok(d) => {
                applied += 1;
                maps[0].apply(&d.block);
                maps[1].apply(&d.allow);
                assert_equals_a_fresh_load(&set, &files, &maps, round);
            }
        }
    }
    assert!(
        refused > 20 && applied > 20,
        "both paths exercised: {refused} refused, {applied} applied"
    );
}

/// A set over `files` (path, kind) hashing with `k`, loaded.
mod adopt;
mod kept;

#[test]
fn a_rule_name_is_what_the_formatter_wrote() {
    use std::os::unix::ffi::OsStrExt;
    let paths = [
        std::path::PathBuf::from("/etc/xdp-audit/block.list"),
        std::path::PathBuf::from("lists/é.list"),
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b"bad\xff\xfe-\xc3.list")),
    ];
    for path in &paths {
        for line in [0, 1, 9, 10, 4_294_967_295] {
            let o = RuleOrigin {
                path,
                kind: ListKind::Block,
                line,
            };
            let mut pushed = String::from("x");
            o.push_name(&mut pushed);
            let want = format!("{}:{}", path.display(), line);
            assert_eq!(pushed, format!("x{want}"), "{path:?} line {line}");
            assert_eq!(o.name(), want);
        }
    }
}

#[test]
fn sweeping_rules_are_found_in_every_list_and_said_as_their_kind_enforces_them() {
    let dir = TempDir::new("sweeping");
    let (a, b, mut set) = two_files(
        &dir,
        (
            "block.list",
            "192.0.2.1\n0.0.0.0/0\nexample.com\ncom\n::/0\nfe80::/10\nff00::/8\n\
             fe80::1\n2001:db8::/32\nfe80::/64\nff02::1\nff02::1:ff00:0/104\nff02::fb\n",
            ListKind::Block,
        ),
        ("allow.list", "0.0.0.0/0\norg\nfe80::/10\n", ListKind::Allow),
    );
    let (_, diags) = set.reload_all();
    assert!(diags.is_empty(), "{diags:?}");
    let found: Vec<(PathBuf, u32)> = set
        .sweeping()
        .into_iter()
        .map(|(p, _, w)| (p.to_owned(), w.line))
        .collect();
    assert_eq!(
        found,
        [
            (a.clone(), 2),
            (a.clone(), 4),
            (a.clone(), 5),
            (a.clone(), 6),
            (a.clone(), 7),
            (a.clone(), 10),
            (a.clone(), 11),
            (a, 12),
            (b.clone(), 1),
            (b, 2)
        ]
    );
    // The link's own ranges on a blocklist: neighbour discovery would be dropped (a single
    // neighbour's address, or a routed range, says nothing).
    let link: Vec<u32> = set
        .sweeping()
        .into_iter()
        .filter(|(_, _, w)| w.what.contains("neighbour discovery"))
        .map(|(_, _, w)| w.line)
        .collect();
    assert_eq!(link, [6, 7, 10, 11, 12]);
    let allowing: Vec<&str> = set
        .sweeping()
        .into_iter()
        .filter(|(_, kind, _)| *kind == ListKind::Allow)
        .map(|(_, _, w)| w.what)
        .collect();
    assert!(
        allowing
            .iter()
            .all(|w| w.contains("on an allowlist it passes")),
        "{allowing:?}"
    );
}
