//! The configured list files and the tables in force: each reload reads the files that
//! changed, keeps the last good version of a file that does not parse, compiles once, and
//! hands the caller a [`Delta`] for the kernel maps.

use std::path::{Path, PathBuf};

use agent_common::rules::RuleId;

use super::compile::{compile_edit, compile_kind};
use super::error::{Diagnostic, Problem};
use super::ids::{IdAlloc, IdContext, Origin};
use super::parse::{LineStats, ParsedList};
use super::reparse::Edit;
use super::tables::{CompiledList, ListDelta};
use super::{release_freed_memory, ListKind};

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

#[cfg(test)]
mod tests;
