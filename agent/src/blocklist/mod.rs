//! Blocklists and allowlists: list files -> kernel-ready tables, and reloads that change
//! only what an edit changed.
//!
//! The data path: [`parse`] turns each line into entries (or a `FILE:LINE: reason`
//! diagnostic), [`compile`] folds each list kind into tables keyed as the kernel maps are
//! keyed ([`agent_common::rules`]), [`ListSet`] keeps the last good version of every file
//! and hands the run loop a [`Delta`] per reload, and [`watch`] tells the run loop when to
//! reload.
//!
//! Semantics (also in the README):
//! - A domain rule (`example.com`, `*.example.com`, `||example.com^`, a hosts-file name)
//!   matches the name itself and every name under it. `*.example.com` therefore also covers
//!   `example.com`: the kernel looks suffixes up by hash, one probe per label, and has no
//!   "strictly below" bit to test.
//! - `port N` means TCP and UDP; ports are the remote side's.
//! - A CIDR with host bits set is an error, not silently masked.
//! - A file with any bad line is not applied; its last good version stays in force. A file
//!   that cannot be read (missing, unreadable) is treated the same way.
//!
//! Running it: call [`use_mmap_for_large_buffers`] once at start-up, [`ListSet::reload_all`]
//! at start and on SIGHUP, and [`ListSet::reload_many`] with each [`watch::ListWatcher`]
//! report. Reloads are synchronous and CPU-bound (a 1M-entry list costs ~0.1 s for an edit,
//! ~0.5 s for a full load), so call them from `tokio::task::spawn_blocking` or a dedicated
//! thread. Apply each [`Delta`] in the order its documentation gives.

pub mod compile;
pub mod net;
pub mod parse;
pub mod watch;

use std::fmt;
use std::path::{Path, PathBuf};

use agent_common::rules::RuleId;

pub use compile::{CompileStats, CompiledList, ListDelta, Origin, PortSlot, TableDelta};
pub use net::Net;
pub use parse::{LineError, LineStats, ParsedList};

use compile::{compile_edit, compile_kind, IdAlloc, IdContext};
use parse::Edit;

/// Which verdict a list gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// Matches pass, whatever the blocklists say.
    Allow,
    /// Matches are dropped.
    Block,
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListKind::Allow => "allowlist",
            ListKind::Block => "blocklist",
        })
    }
}

/// What is wrong with a list file: a bad line, or the file as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A line that does not parse.
    #[error(transparent)]
    Line(#[from] LineError),
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// A path that is not one of the configured lists.
    #[error("not a configured list file")]
    NotConfigured,
}

/// One reason a list file was not applied, displayed `FILE:LINE: reason` (or `FILE: reason`
/// for the file as a whole).
#[derive(Debug)]
pub struct Diagnostic {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, if the problem is one line.
    pub line: Option<u32>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path.display(), line, self.problem),
            None => write!(f, "{}: {}", self.path.display(), self.problem),
        }
    }
}

impl Diagnostic {
    fn bad_lines(path: &Path, bad: Vec<parse::BadLine>) -> Vec<Diagnostic> {
        bad.into_iter()
            .map(|b| Diagnostic {
                path: path.to_owned(),
                line: Some(b.line),
                problem: Problem::Line(b.error),
            })
            .collect()
    }
}

/// Logs diagnostics as tracing warnings: at most `limit` lines, then a count of the rest, so a
/// binary file dropped in place of a list cannot flood the journal.
pub fn warn_diagnostics(diagnostics: &[Diagnostic], limit: usize) {
    for d in diagnostics.iter().take(limit) {
        tracing::warn!("{d}");
    }
    if diagnostics.len() > limit {
        tracing::warn!(
            "... and {} more list problems (run `xdp-audit blocklist check` for all)",
            diagnostics.len() - limit
        );
    }
}

/// The tables of both list kinds and the origin of every rule id.
#[derive(Clone, Debug, Default)]
pub struct CompiledLists {
    /// Allowlist tables.
    pub allow: CompiledList,
    /// Blocklist tables.
    pub block: CompiledList,
    /// Bumped by every reload that changed a table; the kernel's verdict cache compares it.
    pub generation: u64,
    origins: Vec<Origin>,
}

impl CompiledLists {
    /// The origin of a rule id, as the run loop names it in drop records and `status`. Ids of
    /// rules removed by the last reload still resolve to their old origin until reused.
    pub fn origin(&self, id: RuleId) -> Option<Origin> {
        self.origins.get(id as usize).copied()
    }

    /// The tables of one kind.
    pub fn list(&self, kind: ListKind) -> &CompiledList {
        match kind {
            ListKind::Allow => &self.allow,
            ListKind::Block => &self.block,
        }
    }
}

/// What a reload changes in the kernel maps.
///
/// Apply in this order so no packet is judged against a half-applied list: every `upsert` of
/// `block`, then of `allow`, then every `remove` of `allow`, then of `block`. Entries present
/// before and after are never removed (they keep their key and id), so nothing blocked in both
/// versions is ever un-blocked; a newly broader prefix is inserted before the narrower
/// entries it folds are removed, and vice versa. Bump the generation last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Allowlist table changes.
    pub allow: ListDelta,
    /// Blocklist table changes.
    pub block: ListDelta,
    /// Rule ids handed out by this reload (new or reused): reset their hit counters.
    pub assigned: Vec<RuleId>,
    /// The generation after this delta ([`CompiledLists::generation`]).
    pub generation: u64,
}

impl Delta {
    /// Whether no map changes.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.block.is_empty()
    }
}

/// A configured list file and its last good version.
#[derive(Debug)]
struct ListFile {
    path: PathBuf,
    kind: ListKind,
    good: Option<Good>,
}

#[derive(Debug)]
struct Good {
    source: Vec<u8>,
    parsed: ParsedList,
}

/// Where a rule came from, resolved to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleOrigin<'a> {
    /// The list file.
    pub path: &'a Path,
    /// Allow or block.
    pub kind: ListKind,
    /// 1-based line.
    pub line: u32,
}

/// The configured list files, the last good version of each, and their compiled tables.
#[derive(Debug, Default)]
pub struct ListSet {
    files: Vec<ListFile>,
    compiled: CompiledLists,
    ids: IdAlloc,
    /// Files changed since the last compile: an edit to apply incrementally, or `None` when
    /// the file was parsed whole.
    pending: Vec<(usize, Option<Edit>)>,
    /// What the last reload replaced, file by file (`None`: the file had no good version), so
    /// a reload the kernel cannot take can be taken back ([`ListSet::revert`]).
    undo: Vec<(usize, Option<Vec<u8>>)>,
}

impl ListSet {
    /// A set of list files, none loaded yet: call [`ListSet::reload_all`].
    pub fn new(files: impl IntoIterator<Item = (PathBuf, ListKind)>) -> ListSet {
        ListSet {
            files: files
                .into_iter()
                .map(|(path, kind)| ListFile {
                    path,
                    kind,
                    good: None,
                })
                .collect(),
            ..ListSet::default()
        }
    }

    /// Whether `path` was configured as an allow or a block list (the first, if both).
    pub fn kind_of(&self, path: &Path) -> Option<ListKind> {
        self.files.iter().find(|f| f.path == path).map(|f| f.kind)
    }

    /// The configured paths (for the watcher), each once.
    pub fn paths(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = Vec::new();
        for f in &self.files {
            if !v.contains(&f.path.as_path()) {
                v.push(&f.path);
            }
        }
        v
    }

    /// The compiled tables now in force.
    pub fn compiled(&self) -> &CompiledLists {
        &self.compiled
    }

    /// Resolves a rule id to its file and line.
    pub fn origin(&self, id: RuleId) -> Option<RuleOrigin<'_>> {
        let o = self.compiled.origin(id)?;
        let f = self.files.get(o.file as usize)?;
        Some(RuleOrigin {
            path: &f.path,
            kind: f.kind,
            line: o.line,
        })
    }

    /// Line counts of a file's version in force (`None` if it never loaded).
    pub fn line_stats(&self, path: &Path) -> Option<LineStats> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .and_then(|f| f.good.as_ref())
            .map(|g| g.parsed.stats)
    }

    /// Re-reads every file (start-up, SIGHUP). Bad or unreadable files keep their last good
    /// version (none at start-up) and are reported; the others apply.
    pub fn reload_all(&mut self) -> (Delta, Vec<Diagnostic>) {
        self.undo.clear();
        let mut diagnostics = Vec::new();
        for i in 0..self.files.len() {
            if let Err(mut d) = self.stage(i) {
                diagnostics.append(&mut d);
            }
        }
        (self.commit(), diagnostics)
    }

    /// Re-reads one file (the watcher says it changed). On any problem nothing changes and
    /// every problem is returned; the file's last good version stays in force.
    pub fn reload(&mut self, path: &Path) -> Result<Delta, Vec<Diagnostic>> {
        self.undo.clear();
        let indices: Vec<usize> = (0..self.files.len())
            .filter(|&i| self.files[i].path == path)
            .collect();
        if indices.is_empty() {
            return Err(vec![Diagnostic {
                path: path.to_owned(),
                line: None,
                problem: Problem::NotConfigured,
            }]);
        }
        let mut changed = false;
        for i in indices {
            changed |= self.stage(i)?;
        }
        if !changed {
            return Ok(Delta {
                generation: self.compiled.generation,
                ..Delta::default()
            });
        }
        Ok(self.commit())
    }

    /// Re-reads several files (one watcher report) and compiles once. Files with problems
    /// keep their last good version and are reported; the others apply together.
    pub fn reload_many(&mut self, paths: &[PathBuf]) -> (Delta, Vec<Diagnostic>) {
        self.undo.clear();
        let mut diagnostics = Vec::new();
        let mut changed = false;
        for path in paths {
            let indices: Vec<usize> = (0..self.files.len())
                .filter(|&i| self.files[i].path == *path)
                .collect();
            if indices.is_empty() {
                diagnostics.push(Diagnostic {
                    path: path.clone(),
                    line: None,
                    problem: Problem::NotConfigured,
                });
            }
            for i in indices {
                match self.stage(i) {
                    Ok(c) => changed |= c,
                    Err(mut d) => diagnostics.append(&mut d),
                }
            }
        }
        if !changed {
            let unchanged = Delta {
                generation: self.compiled.generation,
                ..Delta::default()
            };
            return (unchanged, diagnostics);
        }
        (self.commit(), diagnostics)
    }

    /// The files the last reload changed.
    pub fn last_reloaded(&self) -> Vec<&Path> {
        self.undo
            .iter()
            .map(|(i, _)| self.files[*i].path.as_path())
            .collect()
    }

    /// Takes back the last reload (the kernel could not take it: its tables are full), so
    /// the files it changed keep their previous good versions, as a file with a bad line
    /// does. The delta leads back to the tables in force before that reload; apply it with
    /// [`crate::enforce::ListMaps::apply_reload`], which knows the kernel never saw the
    /// reload.
    pub fn revert(&mut self) -> Delta {
        for (i, before) in std::mem::take(&mut self.undo).into_iter().rev() {
            let file = &mut self.files[i];
            let edit = match (before, file.good.as_mut()) {
                (Some(before), Some(good)) => {
                    match good.parsed.update_tracked(&good.source, &before) {
                        Ok(edit) => {
                            good.source = before;
                            edit
                        }
                        // It parsed when it was loaded; should it not now, parse it whole.
                        Err(_) => {
                            file.good = ParsedList::parse(&before).ok().map(|parsed| Good {
                                source: before,
                                parsed,
                            });
                            None
                        }
                    }
                }
                _ => {
                    file.good = None;
                    None
                }
            };
            self.pending.push((i, edit));
        }
        self.commit()
    }

    /// One past the highest rule id handed out so far: the size a per-rule hit-counter array
    /// needs now (ids are dense and reused, so it stays near the number of live rules).
    pub fn rule_id_bound(&self) -> RuleId {
        self.ids.high_water()
    }

    /// Reads and parses file `i`, replacing its good version on success. Returns whether its
    /// contents changed.
    fn stage(&mut self, i: usize) -> Result<bool, Vec<Diagnostic>> {
        let file = &mut self.files[i];
        let bytes = std::fs::read(&file.path).map_err(|e| {
            vec![Diagnostic {
                path: file.path.clone(),
                line: None,
                problem: Problem::Read(e),
            }]
        })?;
        match &mut file.good {
            Some(good) if good.source == bytes => Ok(false),
            Some(good) => {
                // Incremental: only the lines between the common head and tail are parsed.
                let edit = good
                    .parsed
                    .update_tracked(&good.source, &bytes)
                    .map_err(|bad| Diagnostic::bad_lines(&file.path, bad))?;
                let before = std::mem::replace(&mut good.source, bytes);
                self.undo.push((i, Some(before)));
                self.pending.push((i, edit));
                Ok(true)
            }
            None => {
                let parsed = ParsedList::parse(&bytes)
                    .map_err(|bad| Diagnostic::bad_lines(&file.path, bad))?;
                file.good = Some(Good {
                    source: bytes,
                    parsed,
                });
                self.undo.push((i, None));
                self.pending.push((i, None));
                Ok(true)
            }
        }
    }

    /// Compiles both kinds from the good versions and diffs against the tables in force. A
    /// kind none of whose files changed is left as it is; a kind fed by one file with one
    /// incremental edit is patched ([`compile_edit`]); anything else is compiled whole.
    fn commit(&mut self) -> Delta {
        self.ids.begin_generation();
        let pending = std::mem::take(&mut self.pending);
        let mut assigned = Vec::new();
        let mut ctx = IdContext {
            ids: &mut self.ids,
            origins: &mut self.compiled.origins,
            assigned: &mut assigned,
        };
        let files = &self.files;
        let mut deltas = [ListDelta::default(), ListDelta::default()];
        for (slot, kind) in [ListKind::Allow, ListKind::Block].into_iter().enumerate() {
            let changes: Vec<&(usize, Option<Edit>)> = pending
                .iter()
                .filter(|(i, _)| files[*i].kind == kind)
                .collect();
            if changes.is_empty() {
                continue;
            }
            let sources: Vec<(u32, &ParsedList)> = files
                .iter()
                .enumerate()
                .filter_map(|(i, f)| {
                    let good = f.good.as_ref().filter(|_| f.kind == kind)?;
                    Some((i as u32, &good.parsed))
                })
                .collect();
            let prev = match kind {
                ListKind::Allow => &self.compiled.allow,
                ListKind::Block => &self.compiled.block,
            };
            let (list, delta) = match (changes.as_slice(), sources.as_slice()) {
                ([(i, Some(edit))], [(f, parsed)]) if *i as u32 == *f => {
                    compile_edit(*f, parsed, edit, prev, &mut ctx)
                }
                _ => compile_kind(sources.iter().copied(), prev, &mut ctx),
            };
            match kind {
                ListKind::Allow => self.compiled.allow = list,
                ListKind::Block => self.compiled.block = list,
            }
            deltas[slot] = delta;
        }
        let [allow_delta, block_delta] = deltas;
        if !(allow_delta.is_empty() && block_delta.is_empty()) {
            self.compiled.generation += 1;
        }
        let delta = Delta {
            allow: allow_delta,
            block: block_delta,
            assigned,
            generation: self.compiled.generation,
        };
        release_freed_memory();
        delta
    }
}

/// Hands the heap freed by a compile back to the kernel. A million-entry compile frees
/// hundreds of MiB of scratch vectors that glibc would otherwise keep mapped, so the agent's
/// RSS would stay at the compile's peak for its whole life.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes glibc give every allocation of 1 MiB or more its own mapping, unmapped when freed.
/// Call once at agent start-up, before loading lists.
///
/// Without it glibc raises its mmap threshold after the first large free, so a compile's
/// large scratch vectors land in the heap, interleave with long-lived allocations and stay
/// resident. The blocklist bench measures this: with 1,000,000 entries loaded, RSS grows by
/// about half as much with the setting as without.
pub fn use_mmap_for_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; M_MMAP_THRESHOLD takes a byte count.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The result of checking one file for `blocklist check`.
#[derive(Debug)]
pub struct FileCheck {
    /// The file.
    pub path: PathBuf,
    /// Line counts and what the file compiles into on its own, or every problem.
    pub result: Result<(LineStats, CompileStats), Vec<Diagnostic>>,
}

/// Checks files without a [`ListSet`] or the kernel (for `blocklist check`): each file on its
/// own, then all good files compiled together as one list (which folds across files).
pub fn check_files(paths: &[PathBuf]) -> (Vec<FileCheck>, CompileStats) {
    let mut parsed = Vec::new();
    let mut checks = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let r = std::fs::read(path)
            .map_err(|e| {
                vec![Diagnostic {
                    path: path.clone(),
                    line: None,
                    problem: Problem::Read(e),
                }]
            })
            .and_then(|b| ParsedList::parse(&b).map_err(|bad| Diagnostic::bad_lines(path, bad)));
        let result = r.map(|p| {
            let alone = compile_standalone([(i as u32, &p)].into_iter());
            let stats = p.stats;
            parsed.push((i as u32, p));
            (stats, alone)
        });
        checks.push(FileCheck {
            path: path.clone(),
            result,
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
    };
    compile_kind(files, &CompiledList::default(), &mut ctx)
        .0
        .stats
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "xdp-audit-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).expect("create temp dir");
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write(p: &Path, s: &str) {
        std::fs::write(p, s).expect("write list");
    }

    #[test]
    fn a_reverted_reload_leads_back_to_the_tables_before_it() {
        let dir = TempDir::new("revert");
        let (a, b) = (dir.0.join("a.list"), dir.0.join("b.list"));
        write(&a, "192.0.2.1\n10.0.0.0/8\nexample.com\n");
        write(&b, "198.51.100.0/24\n");
        let mut set = ListSet::new([(a.clone(), ListKind::Block), (b.clone(), ListKind::Block)]);
        let (_, diags) = set.reload_all();
        assert!(diags.is_empty(), "{diags:?}");
        let before = set.compiled().block.clone();
        let origin_of =
            |set: &ListSet, id: RuleId| set.origin(id).map(|o| (o.path.to_owned(), o.line));
        let ids_before: Vec<_> = before
            .v4_exact
            .iter()
            .map(|(_, id)| origin_of(&set, *id))
            .collect();

        write(&a, "192.0.2.1\n192.0.2.2\nexample.com\nexample.net\n");
        write(&b, "");
        let (forward, diags) = set.reload_many(&[a.clone(), b.clone()]);
        assert!(diags.is_empty() && !forward.is_empty());
        assert_eq!(set.last_reloaded(), [a.as_path(), b.as_path()]);
        let back = set.revert();
        let keys = |l: &CompiledList| {
            (
                l.v4_exact.iter().map(|e| e.0).collect::<Vec<_>>(),
                l.v4_prefix.iter().map(|e| e.0).collect::<Vec<_>>(),
                l.domains.iter().map(|e| e.0).collect::<Vec<_>>(),
            )
        };
        assert_eq!(keys(&set.compiled().block), keys(&before));
        // The way back takes out what the reload added (`apply_reload` skips those removals:
        // they never reached the kernel) and puts back what it dropped.
        assert!(back
            .block
            .v4_exact
            .remove
            .contains(&u32::from_be_bytes([192, 0, 2, 2])));
        assert!(back.block.v4_prefix.upsert.iter().any(|(n, _)| n.len == 8));
        assert_eq!(
            back.generation,
            forward.generation + 1,
            "the revert is a generation too"
        );
        // Every rule resolves to the same file and line as before the reload.
        let ids_after: Vec<_> = set
            .compiled()
            .block
            .v4_exact
            .iter()
            .map(|(_, id)| origin_of(&set, *id))
            .collect();
        assert_eq!(ids_after, ids_before);
        // The files' last good versions are the old ones: an edit builds on them.
        write(&b, "198.51.100.0/24\n203.0.113.9\n");
        let d = set.reload(&b).expect("valid edit");
        assert_eq!(d.block.len(), 1, "only the new line: {d:?}");
    }

    #[test]
    fn a_bad_edit_keeps_the_last_good_version() {
        let dir = TempDir::new("listset");
        let block = dir.0.join("block.txt");
        let allow = dir.0.join("allow.txt");
        write(&block, "192.0.2.1\nexample.com\n");
        write(&allow, "192.0.2.1\n");
        let mut set = ListSet::new([
            (block.clone(), ListKind::Block),
            (allow.clone(), ListKind::Allow),
        ]);
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
        let a = dir.0.join("a.txt");
        let b = dir.0.join("b.txt");
        write(&a, "192.0.2.1\n");
        write(&b, "192.0.2.2\n");
        let mut set = ListSet::new([(a.clone(), ListKind::Block), (b.clone(), ListKind::Allow)]);
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
        let good = dir.0.join("good.txt");
        let bad = dir.0.join("bad.txt");
        write(&good, "192.0.2.1\n");
        write(&bad, "192.0.2.2\nnope$\n");
        let mut set = ListSet::new([
            (good.clone(), ListKind::Block),
            (bad.clone(), ListKind::Block),
        ]);
        let (delta, diags) = set.reload_all();
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].line, Some(2));
        assert_eq!(delta.block.v4_exact.upsert.len(), 1);
        assert_eq!(set.line_stats(&good).map(|s| s.rules), Some(1));
        assert_eq!(set.line_stats(&bad), None);
    }

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
        let mut rng = 0x1234_5678_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut text = |n: u64| -> String {
            (0..n)
                .map(|_| pool[(next() % pool.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join("\n")
        };
        write(&a, &text(8));
        write(&b, &text(8));
        let files = [(a.clone(), ListKind::Block), (b.clone(), ListKind::Block)];
        let mut set = ListSet::new(files.clone());
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
            let mut fresh = ListSet::new(files.clone());
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
                parse::parse_line(line.as_bytes(), &mut out).expect("good line");
                assert!(
                    out.iter().any(
                        |e| matches!(e, parse::Entry::V4(n) if n.addr <= *k && *k <= n.last())
                    ),
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
    fn line_holds(set: &ListSet, id: RuleId, check: impl Fn(&parse::Entry) -> bool) -> bool {
        let Some(o) = set.origin(id) else {
            return false;
        };
        let text = std::fs::read_to_string(o.path).expect("read");
        let Some(line) = text.lines().nth(o.line as usize - 1) else {
            return false;
        };
        let mut out = Vec::new();
        parse::parse_line(line.as_bytes(), &mut out).is_ok() && out.iter().any(check)
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
        let mut rng = 0x9e37_79b9_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
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
        let mut set = ListSet::new(files.clone());
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
            let mut fresh = ListSet::new(files.clone());
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
                            &set,
                            id,
                            |e| matches!(e, parse::Entry::V4(n) if n.addr == a && n.is_host())
                        ),
                        "round {round}: v4 {a} id {id}"
                    );
                }
                for &(net, id) in &got.v4_prefix {
                    assert!(
                        line_holds(&set, id, |e| matches!(e, parse::Entry::V4(n) if *n == net)),
                        "round {round}: {net}"
                    );
                }
                for &(net, id) in &got.v6_prefix {
                    assert!(
                        line_holds(&set, id, |e| matches!(e, parse::Entry::V6(n) if *n == net)),
                        "round {round}: {net}"
                    );
                }
                for &(a, id) in &got.v6_exact {
                    assert!(
                        line_holds(
                            &set,
                            id,
                            |e| matches!(e, parse::Entry::V6(n) if n.addr == a && n.is_host())
                        ),
                        "round {round}: v6"
                    );
                }
                for &(h, id) in &got.domains {
                    assert!(
                        line_holds(
                            &set,
                            id,
                            |e| matches!(e, parse::Entry::Domain(d) if agent_common::domain::domain_hash(d) == h)
                        ),
                        "round {round}: domain id {id}"
                    );
                }
                for &(slot, id) in &got.ports {
                    assert!(
                        line_holds(
                            &set,
                            id,
                            |e| matches!(e, parse::Entry::Port(r) if r.proto == slot.proto && r.lo <= slot.port && slot.port <= r.hi)
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
    }
}
