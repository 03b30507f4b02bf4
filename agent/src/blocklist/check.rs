//! `blocklist check`: list files checked without a [`super::ListSet`] or the kernel.

use std::path::PathBuf;

use agent_common::domain::DomainKey;

use super::compile::compile_kind;
use super::error::{Diagnostic, Problem};
use super::ids::{IdAlloc, IdContext};
use super::parse::{LineStats, ParsedList};
use crate::store::fsutil::{read_input, TABLE_MAX};

/// The key `check` hashes domain rules with. Any key folds the same names (a collision
/// between two rule names is as unlikely under one key as under another), and nothing
/// hashed here reaches the kernel.
const CHECK_KEY: DomainKey = DomainKey {
    label: [0; 2],
    suffix: [0; 2],
};
use super::tables::{CompileStats, CompiledList};
use super::ListKind;

/// The result of checking one file for `blocklist check`.
#[derive(Debug)]
pub struct FileCheck {
    /// The file.
    pub path: PathBuf,
    /// Line counts and what the file compiles into on its own, or every problem.
    pub result: Result<(LineStats, CompileStats), Vec<Diagnostic>>,
    /// Rules of a good file that match everything of their kind, in line order.
    pub sweeping: Vec<Sweeping>,
    /// Whether the file is 0 bytes: an agent whose copy of it held rules keeps that copy in
    /// force rather than apply it (a file cut to nothing by a failed write).
    pub empty: bool,
}

/// A good rule that matches everything of its kind (`0.0.0.0/0`, `::/0`, a whole top-level
/// domain such as `com`): valid, but on a blocklist it blocks all of it, and on an allowlist
/// it passes all of it, which is rarely what was meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sweeping {
    /// The line.
    pub line: u32,
    /// What it matches.
    pub what: &'static str,
}

impl Sweeping {
    /// The file's sweeping rules, in line order, said as `kind` enforces them: on an
    /// allowlist such a rule passes all of it past every blocklist (blocking is off).
    pub(super) fn of(list: &ParsedList, kind: ListKind) -> Vec<Sweeping> {
        let block = kind == ListKind::Block;
        let (all_v4, all_v6, tld_what) = if block {
            (
                "matches every IPv4 address (a /0): on a blocklist it blocks all IPv4 traffic",
                "matches every IPv6 address (a /0): on a blocklist it blocks all IPv6 traffic",
                "is a whole top-level domain (a single label): on a blocklist it blocks every \
                 name under it",
            )
        } else {
            (
                "matches every IPv4 address (a /0): on an allowlist it passes all IPv4 \
                 traffic, whatever the blocklists say",
                "matches every IPv6 address (a /0): on an allowlist it passes all IPv6 \
                 traffic, whatever the blocklists say",
                "is a whole top-level domain (a single label): on an allowlist it passes \
                 every name under it, whatever the blocklists say",
            )
        };
        let v4 = list.v4.iter().map(|n| (n.line, n.item.len, all_v4));
        let v6 = list.v6.iter().map(|n| (n.line, n.item.len, all_v6));
        let nets = v4
            .chain(v6)
            .filter(|&(_, len, _)| len == 0)
            .map(|(line, _, what)| Sweeping { line, what });
        // Neighbour discovery (IPv6's ARP) runs between link-local and multicast addresses:
        // a blocklist rule holding all of either range (a martian or bogon list) cuts IPv6 on
        // the link. Said apart from a /0, which says more.
        // The link-local prefix in use (fe80::/64), all nodes, all routers, and the
        // solicited-node range (ff02::1:ff00:0/104) each carry neighbour discovery.
        let link_local: u128 = 0xfe80 << 112;
        let all_nodes: u128 = 0xff02 << 112 | 1;
        let all_routers: u128 = 0xff02 << 112 | 2;
        let solicited: u128 = 0xff02 << 112 | 0x1_ff00_0000;
        let link = list
            .v6
            .iter()
            .filter(|n| {
                let net = n.item;
                block
                    && net.len != 0
                    && ((net.len <= 64 && net.contains(link_local))
                        || net.contains(all_nodes)
                        || net.contains(all_routers)
                        || (net.len <= 104 && net.contains(solicited)))
            })
            .map(|n| Sweeping {
                line: n.line,
                what: "covers the IPv6 link-local prefix in use (fe80::/64, the part of \
                       fe80::/10 that hosts use) or the link multicast \
                       groups of neighbour discovery (ff02::1, ff02::2, ff02::1:ff00:0/104): on \
                       a blocklist it drops neighbour discovery and router advertisements, \
                       which cuts IPv6 on the link; block routed ranges only",
            });
        let nets = nets.chain(link);
        // A rule's parents are its proper suffixes: none, a single label.
        let tld = list
            .domains
            .iter()
            .filter(|d| d.item.parents.is_empty())
            .map(|d| Sweeping {
                line: d.line,
                what: tld_what,
            });
        let mut all: Vec<Sweeping> = nets.chain(tld).collect();
        all.sort_by_key(|w| w.line);
        all.dedup();
        all
    }
}

/// Checks files without a [`super::ListSet`] or the kernel (for `blocklist check`): each file on its
/// own, then all good files compiled together as one list (which folds across files).
pub fn check_files(paths: &[PathBuf]) -> (Vec<FileCheck>, CompileStats) {
    let mut parsed = Vec::new();
    let mut checks = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let mut empty = false;
        let r = read_input(path, TABLE_MAX)
            .map_err(|e| {
                vec![Diagnostic {
                    path: path.clone(),
                    line: None,
                    problem: Problem::Read(e),
                }]
            })
            .and_then(|b| {
                empty = b.is_empty();
                ParsedList::parse(&b, &CHECK_KEY).map_err(|bad| Diagnostic::bad_lines(path, bad))
            });
        let mut sweeping = Vec::new();
        let result = r.map(|p| {
            let alone = compile_standalone([(i as u32, &p)].into_iter());
            let stats = p.stats;
            sweeping = Sweeping::of(&p, ListKind::Block);
            parsed.push((i as u32, p));
            (stats, alone)
        });
        checks.push(FileCheck {
            path: path.clone(),
            result,
            sweeping,
            empty,
        });
    }
    let total = compile_standalone(parsed.iter().map(|(i, p)| (*i, p)));
    (checks, total)
}

fn compile_standalone<'a>(
    files: impl Iterator<Item = (u32, &'a ParsedList)> + Clone,
) -> CompileStats {
    let mut ids = IdAlloc::default();
    let mut origins = Vec::new();
    let mut assigned = Vec::new();
    let mut ctx = IdContext {
        ids: &mut ids,
        origins: &mut origins,
        assigned: &mut assigned,
        log: None,
        refuse: &[],
    };
    compile_kind(files, &CompiledList::default(), &mut ctx)
        .0
        .stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::{write, TempDir};

    #[test]
    fn check_files_compiles_good_files_together() {
        let dir = TempDir::new("check");
        let a = dir.0.join("a.txt");
        let b = dir.0.join("b.txt");
        write(&a, "192.0.2.0/24\n");
        write(&b, "192.0.2.9\nexample.com\n");
        let (checks, total) = check_files(&[a, b, dir.0.join("missing")]);
        assert!(checks[0].result.is_ok() && checks[1].result.is_ok() && checks[2].result.is_err());
        assert_eq!(checks[1].result.as_ref().map(|r| r.1.covered).ok(), Some(0));
        assert_eq!(total.covered, 1);
        assert_eq!(total.kept(), 2);
    }

    /// `0.0.0.0/0`, `::/0`, a range over all of IPv4 and a bare top-level domain are named
    /// by line; a /1 and a two-label name are not.
    #[test]
    fn rules_that_match_everything_are_named_by_line() {
        let dir = TempDir::new("sweeping");
        let a = dir.0.join("a.txt");
        write(
            &a,
            "0.0.0.0/1\n0.0.0.0/0\nexample.com\n::/0\ncom\n0.0.0.0-255.255.255.255\n",
        );
        let (checks, _) = check_files(&[a]);
        let lines: Vec<u32> = checks[0].sweeping.iter().map(|w| w.line).collect();
        assert_eq!(lines, [2, 4, 5, 6]);
        assert!(checks[0].result.is_ok(), "still a good file");
    }

    /// The README's example list is a good file, each of its six lines a rule (a note
    /// written after an entry without `#` made every line a bad one).
    #[test]
    fn the_readme_example_list_checks_clean() {
        let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let text = std::fs::read_to_string(readme).expect("read README.md");
        let start = text
            .find("# /etc/xdp-audit/block.list\n")
            .expect("the README's example list");
        let body = &text[start..];
        let example = &body[..body.find("```").expect("the example's block closes")];
        let dir = TempDir::new("readme-list");
        let path = dir.0.join("block.list");
        write(&path, example);
        let (checks, _) = check_files(&[path]);
        match &checks[0].result {
            Ok((lines, _)) => assert_eq!(lines.rules, 6, "{lines:?}"),
            Err(problems) => panic!("the README's example list: {problems:?}"),
        }
    }
}
