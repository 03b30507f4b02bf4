//! The configured list files and the tables in force: each reload reads the files that
//! changed, keeps the last good version of a file that does not parse, compiles once, and
//! hands the caller a [`Delta`] for the kernel maps.

use std::path::{Path, PathBuf};

use agent_common::domain::DomainKey;
use agent_common::rules::RuleId;

use super::check::Sweeping;
use super::compile::{compile_edit, compile_kind};
use super::error::{Diagnostic, Problem};
use super::ids::{IdAlloc, IdContext, Origin, OriginLog};
use super::parse::{LineStats, ParsedList};
use super::reparse::Edit;
use super::tables::{Capacity, CompiledList, ListDelta, Table};
use super::{release_freed_memory, ListKind};
use crate::kept::Kept;
use crate::store::fsutil::{read_input, TABLE_MAX};

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
/// `allow`, then of `block`, then every `remove` of `block`, then of `allow`: each state
/// between is the union of both versions, so nothing blocked in both versions is ever
/// un-blocked and nothing passed in both is ever dropped. Entries present before and after
/// are never removed (they keep their key and id); a newly broader prefix is inserted before
/// the narrower entries it folds are removed, and vice versa. Bump the generation last.
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
    /// The IPv4 cover after this delta ([`super::tables::cover4`]), when it changes an IPv4
    /// address or prefix table of either kind (or the maps were adopted: the next agent
    /// writes the cover it computes).
    pub cover4: Option<Vec<u64>>,
}

impl Delta {
    /// Whether no map changes.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.block.is_empty()
    }
}

/// A list file to configure: where it is, its kind, and whether its blocked packets are
/// answered (`--blocklist FILE:refuse`, `--refuse`) instead of dropped in silence. A plain
/// `(path, kind)` pair does not refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListSpec {
    /// The file.
    pub path: PathBuf,
    /// Allow or block.
    pub kind: ListKind,
    /// Refuse what its rules block (meaningful for a blocklist only).
    pub refuse: bool,
}

impl From<(PathBuf, ListKind)> for ListSpec {
    fn from((path, kind): (PathBuf, ListKind)) -> Self {
        ListSpec {
            path,
            kind,
            refuse: false,
        }
    }
}

/// A configured list file and its last good version.
#[derive(Debug)]
struct ListFile {
    path: PathBuf,
    kind: ListKind,
    /// The file's rules carry [`agent_common::rules::REFUSE`] in the kernel maps.
    refuse: bool,
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

impl RuleOrigin<'_> {
    /// `FILE:LINE`, as records name the rule.
    pub fn name(&self) -> String {
        let mut out = String::new();
        self.push_name(&mut out);
        out
    }

    /// Appends [`RuleOrigin::name`] to `out`: the path's text as it is when it is UTF-8 (no
    /// formatter, no lossy pass per drop record), else with U+FFFD for what is not.
    pub fn push_name(&self, out: &mut String) {
        match self.path.to_str() {
            Some(path) => out.push_str(path),
            None => out.push_str(&self.path.to_string_lossy()),
        }
        out.push(':');
        out.push_str(crate::record::text::Decimal::new(u64::from(self.line)).as_str());
    }
}

/// The configured list files, the last good version of each, and their compiled tables.
#[derive(Debug)]
pub struct ListSet {
    files: Vec<ListFile>,
    compiled: CompiledLists,
    ids: IdAlloc,
    /// The key domain rules are hashed with: the one the kernel holds.
    key: DomainKey,
    /// What the kernel tables hold, once they exist; a reload that would outgrow one is
    /// refused.
    capacity: Option<Capacity>,
    /// Files changed since the last compile: an edit to apply incrementally, or `None` when
    /// the file was parsed whole.
    pending: Vec<(usize, Option<Edit>)>,
    /// What the reload under way replaced, file by file (`None`: the file had no good
    /// version), so a reload the tables cannot hold leaves every file as it was.
    staged: Vec<(usize, Option<Vec<u8>>)>,
    /// The tables were adopted from a running program ([`ListSet::adopt`]): the next commit
    /// compiles both kinds, also a kind none of whose files changed.
    adopted: bool,
    /// The kernel tables the adoption fills start empty (new maps of an upgrade): the first
    /// commit writes every entry, not the difference from the adopted tables.
    into_empty: bool,
    /// Per kind (in [`KINDS`] order): its tables are still the ones adopted, because one of
    /// its files has had no good version since (a bad edit saved before a restart). They stay
    /// in force, as a file's last good version does during a run, until every file of the
    /// kind loads; a file the agent cannot name rules from keeps them unnamed meanwhile.
    held: [bool; 2],
    /// Where each file's version in force is kept for the next agent ([`LISTS_KEPT`]), if
    /// anywhere.
    kept: Option<Kept>,
    /// A [`ListSet::reload_all`] is under way: a file with no good version that does not
    /// load gets its kept version.
    restoring: bool,
}

/// The first table a reload would outgrow.
struct Overflow {
    map: &'static str,
    capacity: u32,
    needed: usize,
}

impl ListSet {
    /// A set of list files, none loaded yet (call [`ListSet::reload_all`]), whose domain
    /// rules are hashed with `key`: the key the program was (or will be) loaded with.
    pub fn new(files: impl IntoIterator<Item = (PathBuf, ListKind)>, key: DomainKey) -> ListSet {
        Self::of_specs(files.into_iter().map(ListSpec::from), key)
    }

    /// [`ListSet::new`] with each file's refusal setting.
    pub fn of_specs(files: impl IntoIterator<Item = ListSpec>, key: DomainKey) -> ListSet {
        ListSet {
            files: files
                .into_iter()
                .map(|ListSpec { path, kind, refuse }| ListFile {
                    path,
                    kind,
                    refuse: refuse && kind == ListKind::Block,
                    good: None,
                })
                .collect(),
            compiled: CompiledLists::default(),
            ids: IdAlloc::default(),
            key,
            capacity: None,
            pending: Vec::new(),
            staged: Vec::new(),
            adopted: false,
            into_empty: false,
            held: [false; 2],
            kept: None,
            restoring: false,
        }
    }

    /// Starts from what a running program's maps hold (read back from a pinned program),
    /// before the first reload: every key the files still list keeps its rule id (and with
    /// it its hit counter), and the first reload's delta is the difference between the maps
    /// and the files, as a reload's is. Both kinds are compiled at that reload, so a kind
    /// whose files are gone from the configuration is emptied. A kind with a file that does
    /// not load (a bad edit saved before the restart, an unreadable file) keeps the tables
    /// read back, as a reload keeps a bad file's last good version ([`ListSet::held`]).
    /// The first reload also moves the generation on, even when nothing differs: a reload
    /// the last agent wrote but did not publish is then judged by every flow. Rules read
    /// back name no file until the reload finds them in one.
    pub fn adopt(&mut self, allow: CompiledList, block: CompiledList, generation: u64) {
        self.adopt_into(allow, block, generation, false);
    }

    /// [`ListSet::adopt`] for new, empty kernel tables replacing those of a running program
    /// (an upgrade to another map layout) that held `allow` and `block` at `generation`: the
    /// first reload's delta fills them whole, with the adopted tables of any kind it holds,
    /// and publishes a generation past `generation`.
    pub fn adopt_into_new(&mut self, allow: CompiledList, block: CompiledList, generation: u64) {
        self.adopt_into(allow, block, generation + 1, true);
    }

    fn adopt_into(
        &mut self,
        allow: CompiledList,
        block: CompiledList,
        generation: u64,
        into_empty: bool,
    ) {
        let mut used = Vec::new();
        for list in [&allow, &block] {
            for t in Table::ALL {
                used.extend(list.ids(t));
            }
        }
        let hold = std::mem::take(&mut self.ids).hold();
        self.ids = IdAlloc::with_used(&used);
        self.ids.set_hold(hold);
        self.compiled = CompiledLists {
            allow,
            block,
            generation,
            origins: vec![Origin::UNKNOWN; self.ids.high_water() as usize],
        };
        self.adopted = true;
        self.into_empty = into_empty;
    }

    /// The kinds whose tables are still those adopted from the running program, because a
    /// file of the kind has not loaded since (see [`ListSet::adopt`]).
    pub fn held(&self) -> Vec<ListKind> {
        KINDS
            .into_iter()
            .zip(self.held)
            .filter_map(|(kind, held)| held.then_some(kind))
            .collect()
    }

    /// The key domain rules are hashed with.
    pub fn domain_key(&self) -> DomainKey {
        self.key
    }

    /// Keeps a removed rule's id from reuse for at least `hold` ([`IdAlloc::set_hold`]): the
    /// agent holds it for two sweeps, so each flood window's summaries are taken under the
    /// rule they were counted for.
    pub fn set_id_hold(&mut self, hold: std::time::Duration) {
        self.ids.set_hold(hold);
    }

    /// From now on, refuse a reload that would need more entries in a table than `capacity`
    /// gives it (counting both versions' entries, which a table holds for a moment while a
    /// delta is applied). Call it once the kernel tables exist.
    pub fn set_capacity(&mut self, capacity: Capacity) {
        self.capacity = Some(capacity);
    }

    /// Whether `path` was configured as an allow or a block list (the first, if both).
    pub fn kind_of(&self, path: &Path) -> Option<ListKind> {
        self.files.iter().find(|f| f.path == path).map(|f| f.kind)
    }

    /// The rules of the good list files that match everything of their kind (see
    /// [`Sweeping`]), by file in configuration order, with the file's kind.
    pub fn sweeping(&self) -> Vec<(&Path, ListKind, Sweeping)> {
        self.files
            .iter()
            .filter_map(|f| Some((f.path.as_path(), f.kind, f.good.as_ref()?)))
            .flat_map(|(path, kind, good)| {
                Sweeping::of(&good.parsed, kind)
                    .into_iter()
                    .map(move |w| (path, kind, w))
            })
            .collect()
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
    /// version (at start-up, the version kept for them, if any: [`ListSet::keeping`]) and
    /// are reported; the others apply, unless together they would outgrow a table (then none
    /// does, and each is reported).
    pub fn reload_all(&mut self) -> (Delta, Vec<Diagnostic>) {
        self.staged.clear();
        let mut diagnostics = Vec::new();
        self.restoring = true;
        for i in 0..self.files.len() {
            if let Err(mut d) = self.stage(i) {
                diagnostics.append(&mut d);
            }
        }
        self.restoring = false;
        match self.commit() {
            Ok(delta) => (delta, diagnostics),
            Err(mut refused) => {
                diagnostics.append(&mut refused);
                (self.unchanged(), diagnostics)
            }
        }
    }

    /// Re-reads one file (the watcher says it changed). On any problem nothing changes and
    /// every problem is returned; the file's last good version stays in force.
    pub fn reload(&mut self, path: &Path) -> Result<Delta, Vec<Diagnostic>> {
        self.staged.clear();
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
            return Ok(self.unchanged());
        }
        self.commit()
    }

    /// Re-reads several files (one watcher report) and compiles once. Files with problems
    /// keep their last good version and are reported; the others apply together, unless
    /// together they would outgrow a table (then none does, and each is reported).
    pub fn reload_many(&mut self, paths: &[PathBuf]) -> (Delta, Vec<Diagnostic>) {
        self.staged.clear();
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
            return (self.unchanged(), diagnostics);
        }
        match self.commit() {
            Ok(delta) => (delta, diagnostics),
            Err(mut refused) => {
                diagnostics.append(&mut refused);
                (self.unchanged(), diagnostics)
            }
        }
    }

    /// One past the highest rule id handed out so far: the size a per-rule hit-counter array
    /// needs now (ids are dense and reused, so it stays near the number of live rules).
    pub fn rule_id_bound(&self) -> RuleId {
        self.ids.high_water()
    }

    /// The delta of a reload that changed nothing.
    fn unchanged(&self) -> Delta {
        Delta {
            generation: self.compiled.generation,
            ..Delta::default()
        }
    }

    /// Reads and parses file `i`, replacing its good version on success. Returns whether its
    /// contents changed. In a [`ListSet::reload_all`], a file that has no good version (at a
    /// start) and does not load gets the version kept for it ([`ListSet::keeping`]), if any.
    fn stage(&mut self, i: usize) -> Result<bool, Vec<Diagnostic>> {
        let result = self.read(i);
        if result.is_err() && self.restoring && self.files[i].good.is_none() {
            // A kept version without rules puts none in force: restored, it would count as
            // the file loaded, and let a held kind's rules go (an emptied file at a start).
            if let Some(good) = self.kept_version(i).filter(|g| g.parsed.entries() > 0) {
                self.restore(i, good);
            }
        }
        result
    }

    /// [`ListSet::stage`], but for a file found unusable at a start, whose kept version is
    /// put in force here only when the file was emptied (the problem is then the emptying).
    fn read(&mut self, i: usize) -> Result<bool, Vec<Diagnostic>> {
        let (kind, path) = (self.files[i].kind, &self.files[i].path);
        let alone = self.files.iter().all(|f| f.kind != kind || f.path == *path);
        let bytes = read_input(path, TABLE_MAX).map_err(|e| {
            vec![Diagnostic {
                path: path.clone(),
                line: None,
                problem: Problem::Read(e),
            }]
        })?;
        // Emptied while no agent ran, as a reload judges a file emptied during a run: the
        // version the last agent applied had rules, and stays.
        if bytes.is_empty() && self.restoring && self.files[i].good.is_none() {
            if let Some(good) = self.kept_version(i).filter(|g| g.parsed.entries() > 0) {
                let rules = good.parsed.entries();
                self.restore(i, good);
                return Err(vec![Diagnostic {
                    path: self.files[i].path.clone(),
                    line: None,
                    problem: Problem::Emptied { rules },
                }]);
            }
        }
        let file = &mut self.files[i];
        // A kind held as the running program's (adopted, or a file of it not loaded since)
        // judges a file it has no version of as if emptied during a run: emptied while no
        // agent ran, applied it could unblock every rule it held. Only the kind's one file:
        // beside others, the program's rules may all be theirs (an empty placeholder file),
        // and holding the kind would hold back their edits too.
        let held = self.adopted
            || KINDS
                .into_iter()
                .zip(self.held)
                .any(|(k, h)| h && k == file.kind);
        if file.good.is_none() && bytes.is_empty() && held && alone {
            let rules = self.compiled.list(file.kind).entries();
            if rules > 0 {
                return Err(vec![Diagnostic {
                    path: file.path.clone(),
                    line: None,
                    problem: Problem::EmptiedAtStart {
                        kind: file.kind,
                        rules,
                    },
                }]);
            }
        }
        match &mut file.good {
            Some(good) if good.source == bytes => Ok(false),
            Some(good) if bytes.is_empty() && good.parsed.entries() > 0 => Err(vec![Diagnostic {
                path: file.path.clone(),
                line: None,
                problem: Problem::Emptied {
                    rules: good.parsed.entries(),
                },
            }]),
            Some(good) => {
                // Incremental: only the lines between the common head and tail are parsed.
                let edit = good
                    .parsed
                    .update_tracked(&good.source, &bytes)
                    .map_err(|bad| Diagnostic::bad_lines(&file.path, bad))?;
                let before = std::mem::replace(&mut good.source, bytes);
                self.staged.push((i, Some(before)));
                self.pending.push((i, edit));
                Ok(true)
            }
            None => {
                let parsed = ParsedList::parse(&bytes, &self.key)
                    .map_err(|bad| Diagnostic::bad_lines(&file.path, bad))?;
                file.good = Some(Good {
                    source: bytes,
                    parsed,
                });
                self.staged.push((i, None));
                self.pending.push((i, None));
                Ok(true)
            }
        }
    }

    /// Puts every file the reload under way changed back to its version before it.
    fn unstage(&mut self) {
        for (i, before) in std::mem::take(&mut self.staged).into_iter().rev() {
            let file = &mut self.files[i];
            match (before, file.good.as_mut()) {
                (Some(before), Some(good)) => {
                    // The same lines as the edit, re-parsed the other way.
                    if good.parsed.update(&good.source, &before).is_err() {
                        // It parsed when it was loaded; should it not now, parse it whole.
                        file.good = ParsedList::parse(&before, &self.key)
                            .ok()
                            .map(|parsed| Good {
                                source: before,
                                parsed,
                            });
                    } else {
                        good.source = before;
                    }
                }
                _ => file.good = None,
            }
        }
    }

    /// Compiles both kinds from the good versions and diffs against the tables in force. A
    /// kind none of whose files changed is left as it is; a kind fed by one file with one
    /// incremental edit is patched ([`compile_edit`]); anything else is compiled whole.
    ///
    /// When the result would outgrow a table, nothing changes: the staged files go back to
    /// their versions before the reload, rule ids and origins to theirs, and each staged file
    /// is reported with the table.
    fn commit(&mut self) -> Result<Delta, Vec<Diagnostic>> {
        // Only a refusal needs these back; the tables themselves are replaced on success only.
        let mut saved = self
            .capacity
            .map(|_| (self.ids.clone(), OriginLog::new(&self.compiled.origins)));
        self.ids.begin_generation();
        let pending = std::mem::take(&mut self.pending);
        let mut assigned = Vec::new();
        let refuse: Vec<bool> = self.files.iter().map(|f| f.refuse).collect();
        let mut ctx = IdContext {
            refuse: &refuse,
            ids: &mut self.ids,
            origins: &mut self.compiled.origins,
            assigned: &mut assigned,
            log: saved.as_mut().map(|(_, log)| log),
        };
        let files = &self.files;
        let mut lists = [None, None];
        let mut deltas = [ListDelta::default(), ListDelta::default()];
        let mut held = self.held;
        for (slot, kind) in KINDS.into_iter().enumerate() {
            let prev = match kind {
                ListKind::Allow => &self.compiled.allow,
                ListKind::Block => &self.compiled.block,
            };
            let unloaded = files.iter().any(|f| f.kind == kind && f.good.is_none());
            if (self.adopted || held[slot]) && unloaded {
                // Held as adopted: nothing to write into the running tables; new ones get
                // the adopted entries.
                held[slot] = true;
                if self.into_empty {
                    deltas[slot] = ListDelta::filling(prev);
                }
                continue;
            }
            let changes: Vec<&(usize, Option<Edit>)> = pending
                .iter()
                .filter(|(i, _)| files[*i].kind == kind)
                .collect();
            if changes.is_empty() && !self.adopted && !held[slot] {
                continue;
            }
            held[slot] = false;
            let sources: Vec<(u32, &ParsedList)> = files
                .iter()
                .enumerate()
                .filter_map(|(i, f)| {
                    let good = f.good.as_ref().filter(|_| f.kind == kind)?;
                    Some((i as u32, &good.parsed))
                })
                .collect();
            let (list, delta) = match (changes.as_slice(), sources.as_slice()) {
                ([(i, Some(edit))], [(f, parsed)]) if *i as u32 == *f => {
                    compile_edit(*f, parsed, edit, prev, &mut ctx)
                }
                _ => compile_kind(sources.iter().copied(), prev, &mut ctx),
            };
            deltas[slot] = if self.into_empty {
                ListDelta::filling(&list)
            } else {
                delta
            };
            lists[slot] = Some(list);
        }
        if let Some(over) = self.overflow(&lists, &deltas) {
            if let Some((ids, log)) = saved {
                self.ids = ids;
                log.undo(&mut self.compiled.origins);
            }
            let refused = self.refuse(&over);
            self.unstage();
            release_freed_memory();
            return Err(refused);
        }
        let [allow, block] = lists;
        if let Some(list) = allow {
            self.compiled.allow = list;
        }
        if let Some(list) = block {
            self.compiled.block = list;
        }
        let [allow_delta, block_delta] = deltas;
        if self.adopted || !(allow_delta.is_empty() && block_delta.is_empty()) {
            self.compiled.generation += 1;
        }
        self.held = held;
        let v4 = |d: &ListDelta| {
            d.removes(Table::V4Exact) + d.removes(Table::V4Prefix) > 0
                || !(d.v4_exact.upsert.is_empty() && d.v4_prefix.upsert.is_empty())
        };
        let cover4 = (self.adopted || v4(&allow_delta) || v4(&block_delta))
            .then(|| super::tables::cover4([&self.compiled.allow, &self.compiled.block]));
        self.adopted = false;
        self.into_empty = false;
        self.keep_staged();
        let delta = Delta {
            allow: allow_delta,
            block: block_delta,
            assigned,
            generation: self.compiled.generation,
            cover4,
        };
        release_freed_memory();
        Ok(delta)
    }

    /// The first table the new lists (with their deltas) would outgrow: while a delta is
    /// applied, a table holds the new entries and the ones about to be removed.
    fn overflow(
        &self,
        lists: &[Option<CompiledList>; 2],
        deltas: &[ListDelta; 2],
    ) -> Option<Overflow> {
        let capacity = self.capacity?;
        for (slot, kind) in KINDS.into_iter().enumerate() {
            let Some(list) = &lists[slot] else { continue };
            for t in Table::ALL {
                let needed = list.len(t) + deltas[slot].removes(t);
                let cap = capacity.get(kind, t);
                if needed > cap as usize {
                    return Some(Overflow {
                        map: t.map_name(kind),
                        capacity: cap,
                        needed,
                    });
                }
            }
        }
        // Rule hits are counted in an array indexed by rule id.
        let ids = self.ids.high_water() as usize;
        if ids > capacity.rule_hits() as usize {
            return Some(Overflow {
                map: agent_common::names::RULE_HITS,
                capacity: capacity.rule_hits(),
                needed: ids,
            });
        }
        None
    }

    /// One diagnostic per file of a refused reload, naming the table and the other files.
    fn refuse(&self, over: &Overflow) -> Vec<Diagnostic> {
        let paths: Vec<&PathBuf> = self
            .staged
            .iter()
            .map(|(i, _)| &self.files[*i].path)
            .collect();
        paths
            .iter()
            .map(|path| Diagnostic {
                path: (*path).clone(),
                line: None,
                problem: Problem::TooLarge {
                    map: over.map,
                    capacity: over.capacity,
                    needed: over.needed,
                    with: paths
                        .iter()
                        .filter(|p| *p != path)
                        .map(|p| (*p).clone())
                        .collect(),
                },
            })
            .collect()
    }
}

/// Both list kinds, in the order of the compiler's slots.
const KINDS: [ListKind; 2] = [ListKind::Allow, ListKind::Block];

mod kept;
pub use kept::LISTS_KEPT;

#[cfg(test)]
mod tests;
