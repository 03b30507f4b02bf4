//! The list stage: re-reads list files (watcher reports, SIGHUP), compiles them and writes the
//! difference into the kernel's list maps, on a thread of its own. A full reload of a
//! 1,000,000-line list takes about a second to parse and compile and another to write into
//! the maps; on the reader's task that stalled the ring buffer, here it stalls nothing (the
//! kernel's scheduler interleaves the threads; the reader needs little CPU). It runs at the
//! same priority as the other stages: at a lower one, any busy process on the gateway could
//! hold a reload, and with it a newly blocked address, back for minutes.
//!
//! The state machine: a reload that fails part way leaves the maps holding part of it, so
//! every later reload is refused (`stale`) until a restart; a reload too large for the
//! tables never reaches the maps (the list set refuses it, its files keep their last good
//! version, and later reloads apply as usual).
//!
//! Each reload publishes its rule names ([`RuleBook`]) into the records queue before it
//! touches the maps, so a drop by a new rule is always named.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use agent_common::rules::RuleId;
use tracing::{error, info, warn};

use super::queue::{Msg, QueueTx};
use super::ListCmd;
use crate::alert::ListKept;
use agent_common::domain::DomainKey;

use crate::blocklist::{
    warn_diagnostics, Capacity, Delta, Diagnostic, ListKind, ListSet, ListSpec, Problem,
    RuleOrigin, DIAGNOSTICS_SHOWN,
};
use crate::enforce::{InForce, ListMaps};
use crate::sweeper::RuleNames;

/// Where every rule id came from, frozen at one reload: what the records stage names rules
/// with and what `status` groups hits by, without sharing the list set the list stage edits.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RuleBook {
    /// The configured files, each once, with the kind it was first configured as.
    files: Vec<(PathBuf, ListKind)>,
    /// The (file, kind) pairs rules come from.
    sources: Vec<(PathBuf, ListKind)>,
    /// Per rule id: index into `sources` and line.
    origins: Vec<Option<(u32, u32)>>,
}

impl RuleBook {
    /// The rule names of `set` as it stands.
    pub fn new(set: &ListSet) -> Self {
        let files: Vec<(PathBuf, ListKind)> = set
            .paths()
            .into_iter()
            .map(|p| (p.to_owned(), set.kind_of(p).unwrap_or(ListKind::Block)))
            .collect();
        let mut sources: Vec<(PathBuf, ListKind)> = Vec::new();
        let origins = (0..set.rule_id_bound())
            .map(|id| {
                let o = set.origin(id)?;
                let at = match sources
                    .iter()
                    .position(|(p, k)| p == o.path && *k == o.kind)
                {
                    Some(i) => i,
                    None => {
                        sources.push((o.path.to_owned(), o.kind));
                        sources.len() - 1
                    }
                };
                Some((at as u32, o.line))
            })
            .collect();
        Self {
            files,
            sources,
            origins,
        }
    }

    /// One past the highest rule id this book names: no rule at or above it has a name.
    pub fn id_bound(&self) -> RuleId {
        RuleId::try_from(self.origins.len()).unwrap_or(RuleId::MAX)
    }

    /// Where rule `id` came from.
    pub fn origin(&self, id: RuleId) -> Option<RuleOrigin<'_>> {
        let (at, line) = (*self.origins.get(id as usize)?)?;
        let (path, kind) = self.sources.get(at as usize)?;
        Some(RuleOrigin {
            path,
            kind: *kind,
            line,
        })
    }

    /// The configured files, each once, with its kind.
    pub fn files(&self) -> impl Iterator<Item = (&Path, ListKind)> {
        self.files.iter().map(|(p, k)| (p.as_path(), *k))
    }
}

impl RuleNames for RuleBook {
    fn push_rule_name(&self, id: u32, out: &mut String) -> bool {
        self.origin(id).map(|o| o.push_name(out)).is_some()
    }
}

/// What the list stage shares with the status writer.
pub struct ListsShared {
    maps: Mutex<ListMaps>,
    generation: AtomicU64,
    /// Per file, its reloads since the start (for the metrics).
    reloads: Mutex<std::collections::BTreeMap<PathBuf, crate::metrics::ListReload>>,
}

impl ListsShared {
    /// The list maps, with the generation `applied` already in them.
    pub fn new(maps: ListMaps, applied: u64) -> Self {
        Self {
            maps: Mutex::new(maps),
            generation: AtomicU64::new(applied),
            reloads: Mutex::default(),
        }
    }

    /// Each reloaded file's reloads (the lock is only ever held to note one, never across a
    /// reload).
    pub fn reloads(&self) -> Vec<crate::metrics::ListReload> {
        match self.reloads.lock() {
            Ok(r) => r.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        }
    }

    /// Notes a reload of `files`: applied, or rejected for the ones with `problems` (and for
    /// all when the kernel could not take it).
    fn note_reloads(&self, files: &[PathBuf], applied: bool, problems: &[Diagnostic]) {
        let now = jiff::Timestamp::now().as_second();
        let mut reloads = match self.reloads.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        for f in files {
            let problem = problems.iter().find(|d| &d.path == f);
            let ok = applied && problem.is_none();
            let r = reloads
                .entry(f.clone())
                .or_insert_with(|| crate::metrics::ListReload {
                    path: f.display().to_string(),
                    ..Default::default()
                });
            if ok {
                r.applied += 1;
            } else {
                r.rejected += 1;
            }
            r.last_ok = ok;
            r.last_at_s = now;
            r.problem = problem.map(ToString::to_string);
        }
    }

    /// The list generation in the kernel maps (bumped after a reload is written).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The hit count of every rule below id `bound` (a [`RuleBook::id_bound`]: the rules it
    /// can name), unless a reload holds the maps now (then `None`: the caller keeps its last
    /// figures rather than wait a second for them).
    pub fn try_hits(&self, bound: RuleId) -> Option<Vec<(RuleId, u64)>> {
        match self.maps.try_lock() {
            Ok(maps) => Some(maps.all_hits(bound)),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner().all_hits(bound)),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// Which files to re-read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Every list file (start-up, SIGHUP).
    All,
    /// These files (the watcher saw them change).
    Files(Vec<PathBuf>),
}

/// How a reload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The generation in the kernel maps afterwards.
    pub generation: u64,
    /// Whether the maps now hold what the files say (also when nothing changed).
    pub applied: bool,
    /// Problems reported (bad lines, unreadable files); their files kept their last good
    /// version.
    pub problems: usize,
}

/// A request to the list stage.
pub(crate) struct Request {
    pub(crate) what: Reload,
    pub(crate) reply: Option<mpsc::Sender<ReloadOutcome>>,
}

/// Reads every list file at start-up, hashing domains with `key` (the program's): the files
/// with problems are logged and contribute their kept version, or nothing, until fixed. Sizes the kernel tables for
/// what was read (twice it, at least `floor` entries each), and has the set refuse later
/// reloads that would outgrow them. Returns the set, what the kernel maps need, and the
/// table sizes to load the program with. With a `state_dir`, each file's version in force
/// is kept there, and stands in for a file that does not load ([`ListSet::keeping`]).
pub fn read_at_start(
    files: impl IntoIterator<Item = impl Into<ListSpec>>,
    key: DomainKey,
    floor: u32,
    state_dir: Option<&Path>,
) -> (ListSet, Delta, Capacity) {
    read_for_new_tables(files, key, floor, None, state_dir)
}

/// The set of `files`, keeping their versions in `state_dir` if given.
fn list_set(
    files: impl IntoIterator<Item = impl Into<ListSpec>>,
    key: DomainKey,
    state_dir: Option<&Path>,
) -> ListSet {
    let set = ListSet::of_specs(files.into_iter().map(Into::into), key);
    match state_dir {
        Some(dir) => set.keeping(dir),
        None => set,
    }
}

/// [`read_at_start`] for new, empty tables that replace the tables `replaced` of a running
/// program (an upgrade that changes the layout): the generation continues past theirs, so
/// every flow the new program inherits judges its next packet against the new tables, and
/// a kind with a file that does not load keeps the replaced tables' entries
/// ([`ListSet::adopt_into_new`]).
pub fn read_for_new_tables(
    files: impl IntoIterator<Item = impl Into<ListSpec>>,
    key: DomainKey,
    floor: u32,
    replaced: Option<&InForce>,
    state_dir: Option<&Path>,
) -> (ListSet, Delta, Capacity) {
    let mut set = list_set(files, key, state_dir);
    if let Some(r) = replaced {
        set.adopt_into_new(r.allow.clone(), r.block.clone(), r.generation);
    }
    let (delta, problems) = set.reload_all();
    warn_at_start(&set, &problems);
    let capacity = Capacity::for_lists(set.compiled(), floor);
    set.set_capacity(capacity);
    (set, delta, capacity)
}

/// Reads every list file at the start of an agent that adopts a running program whose list
/// maps hold `in_force` and hold `capacity` entries each: the set starts from what the maps
/// hold ([`ListSet::adopt`]), so the delta is what differs between the maps and the files,
/// as a reload's is. `None` when the lists no longer fit the tables: the caller sizes new
/// ones (a layout change).
pub fn read_adopting(
    files: impl IntoIterator<Item = impl Into<ListSpec>>,
    key: DomainKey,
    in_force: &InForce,
    capacity: Capacity,
    state_dir: Option<&Path>,
) -> Option<(ListSet, Delta)> {
    let mut set = list_set(files, key, state_dir);
    set.adopt(
        in_force.allow.clone(),
        in_force.block.clone(),
        in_force.generation,
    );
    set.set_capacity(capacity);
    let (delta, problems) = set.reload_all();
    if problems
        .iter()
        .any(|d| matches!(d.problem, Problem::TooLarge { .. }))
    {
        return None;
    }
    warn_at_start(&set, &problems);
    Some((set, delta))
}

/// Warns of each list rule in force that matches everything of its kind (`0.0.0.0/0`, a
/// top-level domain): valid, and applied, but one such line in a downloaded feed blocks all
/// IPv4 traffic or a whole top-level domain (on an allowlist, turns blocking off), which
/// `blocklist check` says and the agent must not keep quiet about either.
fn warn_sweeping(set: &ListSet) {
    for (path, kind, w) in set.sweeping() {
        warn!(file = %path.display(), line = w.line, "a {kind} rule {}", w.what);
    }
}

/// Logs the problems of the lists read at start-up, and what is enforced instead. The list
/// stage reads every file again once the agent runs, which raises their alerts.
fn warn_at_start(set: &ListSet, problems: &[Diagnostic]) {
    warn_sweeping(set);
    if problems.is_empty() {
        return;
    }
    warn_diagnostics(problems, DIAGNOSTICS_SHOWN);
    let held = set.held();
    if held.is_empty() {
        warn!(
            "list files with problems are not applied until fixed: where the last agent kept \
             a version of one, that version is in force meanwhile (said above), else none"
        );
    } else {
        let kinds: Vec<String> = held.iter().map(ToString::to_string).collect();
        warn!(
            kinds = kinds.join(", "),
            "list files with problems: their kind's tables stay as the running program held \
             them until every file of the kind loads"
        );
    }
}

/// The list stage's thread state.
struct Stage {
    set: ListSet,
    shared: Arc<ListsShared>,
    queue: QueueTx,
    /// An earlier reload failed part way: the kernel holds a state later reloads would not
    /// build on.
    stale: bool,
    /// Told of each list file a reload rejected.
    alerts: Option<crate::alert::Handle>,
    /// The rule names the records stage holds (the book it was started with, then the last
    /// one published).
    published: Arc<RuleBook>,
}

/// Starts the list stage on its own thread; it ends at [`ListCmd::Stop`].
pub(crate) fn spawn(
    set: ListSet,
    published: Arc<RuleBook>,
    shared: Arc<ListsShared>,
    queue: QueueTx,
    alerts: Option<crate::alert::Handle>,
) -> std::io::Result<(mpsc::Sender<ListCmd>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<ListCmd>();
    let mut stage = Stage {
        set,
        shared,
        queue,
        stale: false,
        alerts,
        published,
    };
    let thread = std::thread::Builder::new()
        .name("xdp-audit-lists".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                // Requests that queued up during a reload are served by one reload.
                let mut batch = Vec::new();
                for cmd in std::iter::once(first).chain(rx.try_iter()) {
                    match cmd {
                        ListCmd::Reload(r) => batch.push(r),
                        ListCmd::Stop => return,
                    }
                }
                stage.serve(batch);
            }
        })?;
    Ok((tx, thread))
}

impl Stage {
    fn serve(&mut self, batch: Vec<Request>) {
        let all = batch.iter().any(|r| r.what == Reload::All);
        let mut paths: Vec<PathBuf> = Vec::new();
        for r in &batch {
            if let Reload::Files(ps) = &r.what {
                for p in ps {
                    if !paths.contains(p) {
                        paths.push(p.clone());
                    }
                }
            }
        }
        let (what, (delta, problems)) = if all {
            paths = self.set.paths().into_iter().map(Path::to_owned).collect();
            (
                "reload of every list file".to_owned(),
                self.set.reload_all(),
            )
        } else {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            (
                format!("list {}", names.join(", ")),
                self.set.reload_many(&paths),
            )
        };
        let applied = self.apply(&what, delta, &problems);
        self.shared.note_reloads(&paths, applied, &problems);
        let outcome = ReloadOutcome {
            generation: self.shared.generation(),
            applied,
            problems: problems.len(),
        };
        for r in batch {
            if let Some(reply) = r.reply {
                let _ = reply.send(outcome);
            }
        }
    }

    /// Applies what a reload produced; files with `problems` kept their last good version.
    /// Returns whether the kernel holds what the set now says.
    fn apply(&mut self, what: &str, delta: Delta, problems: &[Diagnostic]) -> bool {
        let started = Instant::now();
        if !problems.is_empty() {
            warn_diagnostics(problems, DIAGNOSTICS_SHOWN);
            warn!(
                "{what}: files with problems not applied; their last good version stays in force"
            );
            self.alert_rejected(problems);
        }
        if self.stale {
            error!("{what}: not applied; an earlier list change could not be applied, restart the agent");
            self.alert_stale(format!(
                "{what}: not applied, after an earlier change failed part way; restart the agent"
            ));
            return false;
        }
        if delta.is_empty() {
            // The tables are as they were, but rules may have moved to other lines (a comment
            // added above them) or to another file holding the same rule: records must name
            // where each rule is now.
            self.publish_rules();
            info!("{what}: no change to the tables");
            return true;
        }
        self.publish_rules();
        let mut maps = match self.shared.maps.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        match maps.apply(&delta) {
            Ok(()) => {
                drop(maps);
                self.shared
                    .generation
                    .store(delta.generation, Ordering::Release);
                warn_sweeping(&self.set);
                info!(
                    changes = delta.allow.len() + delta.block.len(),
                    ms = started.elapsed().as_millis() as u64,
                    generation = delta.generation,
                    "{what}: applied"
                );
                true
            }
            Err(e) => {
                self.stale = true;
                let e = anyhow::Error::from(e);
                error!("{what}: failed part way, the kernel may hold part of it; restart the agent: {e:#}");
                self.alert_stale(format!(
                    "{what}: failed part way, the kernel may hold part of it ({e:#}); restart the agent"
                ));
                false
            }
        }
    }

    /// The lists in force are not what the files say, until a restart.
    fn alert_stale(&self, reason: String) {
        if let Some(alerts) = &self.alerts {
            alerts.event(crate::alert::Event::ListStale { reason });
        }
    }

    /// One alert per rejected file, with its first problem.
    fn alert_rejected(&self, problems: &[Diagnostic]) {
        let Some(alerts) = &self.alerts else { return };
        let mut seen: Vec<&Path> = Vec::new();
        for d in problems {
            if !seen.contains(&d.path.as_path()) {
                seen.push(&d.path);
                let held = self.set.held();
                let kept = if self.set.line_stats(&d.path).is_some() {
                    ListKept::LastGood
                } else if self.set.kind_of(&d.path).is_some_and(|k| held.contains(&k)) {
                    ListKept::Held
                } else {
                    ListKept::Nothing
                };
                alerts.event(crate::alert::Event::ListRejected {
                    file: d.path.display().to_string(),
                    reason: d.to_string(),
                    kept,
                });
            }
        }
    }

    /// Sends the records stage the set's rule names, unless it holds them already.
    fn publish_rules(&mut self) {
        let book = RuleBook::new(&self.set);
        if book == *self.published {
            return;
        }
        self.published = Arc::new(book);
        if self
            .queue
            .send_blocking(Msg::Rules(self.published.clone()))
            .is_err()
        {
            warn!("the records stage has stopped; rule names of this reload are not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_book_names_rules_as_the_set_does() {
        let tmp = crate::blocklist::tests::TempDir::new("rulebook");
        let dir = tmp.0.clone();
        let block = dir.join("block.list");
        let allow = dir.join("allow.list");
        std::fs::write(&block, "# c\n192.0.2.1\nexample.com\n").expect("write block");
        std::fs::write(&allow, "198.51.100.7\n").expect("write allow");
        let key = crate::blocklist::random_key().expect("getrandom");
        let (set, _, _) = read_at_start(
            [
                (block.clone(), ListKind::Block),
                (allow.clone(), ListKind::Allow),
            ],
            key,
            1024,
            None,
        );
        let book = RuleBook::new(&set);
        assert!(set.rule_id_bound() >= 3);
        for id in 0..set.rule_id_bound() + 2 {
            assert_eq!(book.origin(id), set.origin(id), "rule {id}");
            assert_eq!(book.rule_name(id), set.rule_name(id), "rule {id}");
        }
        let files: Vec<_> = book.files().collect();
        assert_eq!(
            files,
            [
                (block.as_path(), ListKind::Block),
                (allow.as_path(), ListKind::Allow)
            ]
        );
    }
}
