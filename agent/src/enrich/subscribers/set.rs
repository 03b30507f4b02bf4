//! The configured subscribers files: the last good version of each, and the table built from
//! them, replaced as a whole.
//!
//! Same behaviour as the list files: a file with any bad row, or that cannot be read, is not
//! applied and its last good version stays (at start-up, the version the last agent applied,
//! kept in the state directory ([`SUBSCRIBERS_KEPT`]); without one it contributes nothing
//! until fixed); every problem is reported as `FILE:LINE: column: reason`. A reload builds a new
//! [`SubscriberTable`] and swaps the `Arc`: a reader holding the old one keeps a consistent
//! view, the next reader gets the new one, nobody sees half of each.
//!
//! Wiring: call [`SubscriberSet::reload_all`] at start and on SIGHUP and
//! [`SubscriberSet::reload`] with the paths a [`crate::blocklist::watch::ListWatcher`] reports
//! (it watches any file), from a blocking task (a 100,000-row file takes tens of
//! milliseconds); hand [`SubscriberSet::table`] to the enrich stage (a
//! `tokio::sync::watch` channel does it) when the outcome says it changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use crate::enrich::source::FileProblem;
use crate::kept::Kept;
use crate::store::fsutil::{load_state, read_input, save_state, TABLE_MAX};

use super::parse::{ParsedSubscribers, RowProblem, RowStats};
use super::SubscriberTable;

/// What is wrong with a subscribers file.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A bad row (or header).
    #[error(transparent)]
    Row(#[from] RowProblem),
    /// The file could not be read.
    #[error(
        "cannot read: {0}; the last good version stays in force (to empty the file, leave its \
         header line in it)"
    )]
    Read(#[source] crate::store::fsutil::InputError),
    /// A file with rows found empty (0 bytes), as list files are judged: most likely caught
    /// between a truncation and its new contents, and applied it would take every user off
    /// the records.
    #[error(
        "is empty (0 bytes) where its last version held {rows} rows: not applied, that version \
         stays in force (to empty the file on purpose, leave its header line in it)"
    )]
    Emptied {
        /// Rows of the version in force.
        rows: u32,
    },
    /// As [`Problem::Emptied`], found at the start: the version the last agent applied is
    /// not known to this one, so the file's users are off the records until it holds them.
    #[error(
        "is empty (0 bytes) where the version the last agent applied held {rows} rows: not \
         applied, and this agent has none of those rows until the file holds them again (to \
         empty the file on purpose, leave its header line in it)"
    )]
    EmptiedAtStart {
        /// Rows of the version the last agent applied.
        rows: u32,
    },
}

/// One reason a subscribers file was not applied.
pub type Diagnostic = FileProblem<Problem>;

/// Reads and parses one file: its rows, or every problem.
fn load(path: &Path) -> Result<ParsedSubscribers, Vec<Diagnostic>> {
    load_bytes(path).map(|(parsed, _)| parsed)
}

/// [`load`], with the bytes read.
fn load_bytes(path: &Path) -> Result<(ParsedSubscribers, Vec<u8>), Vec<Diagnostic>> {
    let bytes = read_input(path, TABLE_MAX).map_err(|e| {
        vec![Diagnostic {
            path: path.to_owned(),
            line: None,
            error: Problem::Read(e),
        }]
    })?;
    let parsed = ParsedSubscribers::parse(&bytes).map_err(|bad| {
        bad.into_iter()
            .map(|b| {
                let (line, problem) = b.problem();
                Diagnostic {
                    path: path.to_owned(),
                    line: Some(line),
                    error: Problem::Row(problem),
                }
            })
            .collect::<Vec<_>>()
    })?;
    Ok((parsed, bytes))
}

/// The rows of each file's version in force, kept in the state directory so the next agent
/// judges a file it finds empty (0 bytes) at its start as a reload would.
pub const SUBSCRIBERS_SEEN: &str = "subscribers-seen.json";

/// The bytes of each file's version in force, one file each in this directory of the state
/// directory, named by a hash of the file's path: at a start, a file found empty, damaged or
/// unreadable is replaced by them until it loads, as a reload keeps the version in force.
/// (Without them a truncation or a bad edit caught by a restart took the file's users off
/// the records.)
pub const SUBSCRIBERS_KEPT: &str = "subscribers-kept";

struct Slot {
    path: PathBuf,
    good: Option<ParsedSubscribers>,
    /// Rows of the version a previous agent applied ([`SUBSCRIBERS_SEEN`]), until this one
    /// applies one.
    seen: u32,
}

impl Slot {
    /// Rows of the version in force, or of the one a previous agent applied.
    fn held(&self) -> u32 {
        self.good.as_ref().map_or(self.seen, |g| g.stats.rows)
    }

    /// Keeps `bytes`, the version now in force, for the next agent.
    fn keep(&self, kept: &Kept, bytes: &[u8]) {
        if let Err(e) = kept.keep(&self.path, bytes) {
            warn!(file = %self.path.display(), dir = %kept.dir().display(), error = %e, "cannot keep the subscribers file's version in force for the next agent");
        }
    }

    /// Rows of the version kept (0 if none can be read).
    fn kept_rows(&self, kept: &Kept) -> u32 {
        (kept.read(&self.path).ok().flatten())
            .and_then(|b| ParsedSubscribers::parse(&b).ok())
            .map_or(0, |p| p.stats.rows)
    }

    /// At a start, puts the version the last agent applied, kept in `kept`, in force in
    /// place of the file it could not apply; whether there was one.
    fn restore(&mut self, kept: &Kept) -> bool {
        let (bytes, kept) = match kept.read(&self.path) {
            Ok(Some(bytes)) => (bytes, kept.path_of(&self.path)),
            Ok(None) => return false,
            Err(e) => {
                let kept = kept.path_of(&self.path);
                warn!(file = %self.path.display(), kept = %kept.display(), error = %e, "cannot read the version of the subscribers file the last agent applied: the file's users are off the records until it loads");
                return false;
            }
        };
        match ParsedSubscribers::parse(&bytes) {
            // No rows: nothing to put in force, and restored it would count as rows known
            // to be none (an emptied file's rows forgotten).
            Ok(parsed) if parsed.stats.rows == 0 => false,
            Ok(parsed) => {
                warn!(file = %self.path.display(), kept = %kept.display(), rows = parsed.stats.rows, "the subscribers file cannot be applied at this start: the version the last agent applied is in force until it loads");
                self.good = Some(parsed);
                true
            }
            Err(_) => {
                warn!(file = %self.path.display(), kept = %kept.display(), "the kept version of the subscribers file does not parse: the file's users are off the records until it loads");
                false
            }
        }
    }
}

/// The result of a reload.
#[derive(Debug, Default)]
pub struct Reload {
    /// Whether the table was rebuilt (some file's good version changed).
    pub changed: bool,
    /// Why files were not applied.
    pub diagnostics: Vec<Diagnostic>,
}

/// The configured files and the table of their good versions.
pub struct SubscriberSet {
    slots: Vec<Slot>,
    table: Arc<SubscriberTable>,
    /// Where the rows in force are kept for the next agent, if anywhere.
    memory: Option<PathBuf>,
    /// Where the versions in force are kept for the next agent ([`SUBSCRIBERS_KEPT`]), if
    /// anywhere.
    kept: Option<Kept>,
}

impl SubscriberSet {
    /// The files, in precedence order (the first wins a tie between files). Nothing is read
    /// until [`SubscriberSet::reload_all`].
    pub fn new(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        SubscriberSet {
            slots: paths
                .into_iter()
                .map(|path| Slot {
                    path,
                    good: None,
                    seen: 0,
                })
                .collect(),
            table: Arc::default(),
            memory: None,
            kept: None,
        }
    }

    /// Keeps the rows in force in `state_dir` ([`SUBSCRIBERS_SEEN`]), and judges a file found
    /// empty before this set applies a version of it against what the last agent kept there.
    pub fn remembering(mut self, state_dir: &Path) -> Self {
        let path = state_dir.join(SUBSCRIBERS_SEEN);
        let seen: BTreeMap<PathBuf, u32> = load_state(
            &path,
            "the subscribers files' rows the last agent applied",
            "a file found empty (0 bytes) now is applied",
        )
        .unwrap_or_default();
        for slot in &mut self.slots {
            slot.seen = seen.get(&slot.path).copied().unwrap_or(0);
        }
        self.memory = Some(path);
        self.kept = Some(Kept::new(state_dir.join(SUBSCRIBERS_KEPT), "csv"));
        self.forget_unconfigured();
        self
    }

    /// The configured paths.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.slots.iter().map(|s| s.path.as_path())
    }

    /// The current table.
    pub fn table(&self) -> Arc<SubscriberTable> {
        Arc::clone(&self.table)
    }

    /// Re-reads every file.
    pub fn reload_all(&mut self) -> Reload {
        let all: Vec<PathBuf> = self.slots.iter().map(|s| s.path.clone()).collect();
        self.reload(&all)
    }

    /// Re-reads the files among `paths` (others are ignored: a watcher may report
    /// neighbours), and rebuilds the table if any good version changed.
    pub fn reload(&mut self, paths: &[PathBuf]) -> Reload {
        let mut out = Reload::default();
        for slot in self.slots.iter_mut().filter(|s| paths.contains(&s.path)) {
            let held = slot.held();
            // At a start, a kept version with rows says rows were in force even where their
            // count was not kept (a damaged `subscribers-seen.json`).
            let emptied = |parsed: &ParsedSubscribers, slot: &Slot| {
                parsed.stats.lines == 0
                    && (held > 0
                        || slot.good.is_none()
                            && (self.kept.as_ref()).is_some_and(|k| slot.kept_rows(k) > 0))
            };
            let mut problems = match load_bytes(&slot.path) {
                Ok((parsed, _)) if emptied(&parsed, slot) => Vec::new(),
                Ok((parsed, bytes)) => {
                    if slot.good.as_ref() != Some(&parsed) {
                        slot.good = Some(parsed);
                        out.changed = true;
                        if let Some(kept) = &self.kept {
                            slot.keep(kept, &bytes);
                        }
                    }
                    continue;
                }
                Err(d) => d,
            };
            // Not applied: at a start, the version the last agent applied stands in.
            if slot.good.is_none() && self.kept.as_ref().is_some_and(|k| slot.restore(k)) {
                out.changed = true;
            }
            if problems.is_empty() {
                problems.push(Diagnostic {
                    path: slot.path.clone(),
                    line: None,
                    error: match slot.good {
                        Some(_) => Problem::Emptied { rows: slot.held() },
                        None => Problem::EmptiedAtStart { rows: held },
                    },
                });
            }
            out.diagnostics.append(&mut problems);
        }
        if out.changed {
            let table = SubscriberTable::build(self.slots.iter().filter_map(|s| s.good.as_ref()));
            self.table = Arc::new(table);
            self.remember();
        }
        out
    }

    /// Keeps the rows in force for the next agent ([`SubscriberSet::remembering`]).
    fn remember(&self) {
        let Some(path) = &self.memory else {
            return;
        };
        let rows: BTreeMap<&Path, u32> = (self.slots.iter())
            .map(|s| (s.path.as_path(), s.held()))
            .collect();
        if let Err(e) = save_state(path, &rows) {
            warn!(path = %path.display(), error = %e, "cannot keep the subscribers files' rows for the next agent: one that finds a file empty (0 bytes) at its start will apply it");
        }
        self.forget_unconfigured();
    }

    /// Removes the kept copies of files no longer configured: they would outlive the
    /// operator's edit (and hold accounts), and stand in for the file should it come back.
    fn forget_unconfigured(&self) {
        if let Some(kept) = &self.kept {
            kept.forget_others(self.slots.iter().map(|s| s.path.as_path()));
        }
    }
}

/// The result of checking one file for the CLI's `check` command.
#[derive(Debug)]
pub struct SubscriberCheck {
    /// The file.
    pub path: PathBuf,
    /// Its counts, or every problem.
    pub result: Result<RowStats, Vec<Diagnostic>>,
}

impl std::fmt::Display for SubscriberCheck {
    /// Every problem as `FILE:LINE: column: reason` and a closing count, or `FILE: ok` and
    /// the summary: what `check` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match &self.result {
            Ok(stats) => write!(f, "{path}: ok\n  {stats}"),
            Err(problems) => {
                for p in problems {
                    writeln!(f, "{p}")?;
                }
                let n = problems.iter().filter(|p| p.line.is_some()).count();
                if n > 0 {
                    write!(
                        f,
                        "{path}: {n} bad line{}; the file would not be applied",
                        if n == 1 { "" } else { "s" }
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Checks one subscribers file without an agent (`xdp-audit check`); exit 1 when `result` is
/// an error.
pub fn check_file(path: &Path) -> SubscriberCheck {
    SubscriberCheck {
        path: path.to_owned(),
        result: load(path).map(|p| p.stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::TempDir;
    use std::net::IpAddr;

    const T: i64 = 1_800_000_000_000_000_000;

    fn account(set: &SubscriberSet, ip: &str) -> Option<String> {
        let ip: IpAddr = ip.parse().expect("test address");
        set.table().by_addr(ip, T).map(|s| s.account.to_string())
    }

    /// A file found empty (0 bytes) at a start is judged against the rows the last agent
    /// applied, kept in the state directory, as a reload judges it, and the version it
    /// applied stays in force: a truncation caught by a restart no longer takes every user
    /// off the records. Without that version (an older agent's state: its row count alone)
    /// the file is named and its users are off the records until it loads.
    #[test]
    fn a_file_emptied_while_no_agent_ran_is_judged_by_the_last_agents_rows() {
        let dir = TempDir::new("subs-seen");
        let (state, a) = (dir.0.join("state"), dir.0.join("a.csv"));
        std::fs::create_dir(&state).expect("state dir");
        std::fs::write(&a, "match,account\n10.0.0.0/8,wide\n10.1.1.1,narrow\n").expect("a");
        let mut first = SubscriberSet::new([a.clone()]).remembering(&state);
        assert!(first.reload_all().changed);
        std::fs::write(&a, "").expect("emptied");
        let mut next = SubscriberSet::new([a.clone()]).remembering(&state);
        let r = next.reload_all();
        let shown: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [format!(
                "{}: is empty (0 bytes) where its last version held 2 rows: not applied, that \
                 version stays in force (to empty the file on purpose, leave its header line in \
                 it)",
                a.display()
            )]
        );
        assert!(r.changed, "the kept version is in force");
        assert_eq!(account(&next, "10.1.1.1").as_deref(), Some("narrow"));
        std::fs::remove_dir_all(state.join(SUBSCRIBERS_KEPT)).expect("no kept versions");
        let mut older = SubscriberSet::new([a.clone()]).remembering(&state);
        let r = older.reload_all();
        let shown: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [format!(
                "{}: is empty (0 bytes) where the version the last agent applied held 2 rows: \
                 not applied, and this agent has none of those rows until the file holds them \
                 again (to empty the file on purpose, leave its header line in it)",
                a.display()
            )]
        );
        assert_eq!(account(&older, "10.1.1.1"), None);
        // A kept version without rows stands in for nothing, and the rows the last agent
        // applied are not forgotten for it.
        let kept = Kept::new(state.join(SUBSCRIBERS_KEPT), "csv");
        kept.keep(&a, b"match,account\n")
            .expect("a copy without rows");
        for _ in 0..2 {
            let r = SubscriberSet::new([a.clone()])
                .remembering(&state)
                .reload_all();
            let again: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
            assert_eq!(again, shown, "still the 2 rows");
        }
        std::fs::remove_dir_all(state.join(SUBSCRIBERS_KEPT)).expect("no kept versions");
        // Without a kept count (no state directory) the empty file applies, as before.
        let r = SubscriberSet::new([a.clone()]).reload_all();
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
        // The header line empties it on purpose, and that is what the next agent judges by.
        std::fs::write(&a, "match,account\n").expect("header only");
        assert!(next.reload_all().diagnostics.is_empty());
        std::fs::write(&a, "").expect("emptied again");
        let mut third = SubscriberSet::new([a.clone()]).remembering(&state);
        let r = third.reload_all();
        assert!(r.diagnostics.is_empty(), "0 rows kept: {:?}", r.diagnostics);
        // A damaged state file costs only what it remembered.
        std::fs::write(state.join(SUBSCRIBERS_SEEN), "{not json").expect("damage");
        let r = SubscriberSet::new([a.clone()])
            .remembering(&state)
            .reload_all();
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    }

    /// A file damaged or gone while no agent ran: the next agent names every problem and
    /// puts the version the last agent applied in force until the file loads again. A kept
    /// version of a file no longer configured is removed.
    #[test]
    fn at_a_start_a_file_that_does_not_load_is_replaced_by_the_version_last_applied() {
        let dir = TempDir::new("subs-kept");
        let state = dir.0.join("state");
        let (a, b) = (dir.0.join("a.csv"), dir.0.join("b.csv"));
        std::fs::create_dir(&state).expect("state dir");
        std::fs::write(&a, "match,account\n10.1.1.1,alice\n").expect("a");
        std::fs::write(&b, "match,account\n10.2.2.2,bob\n").expect("b");
        let mut first = SubscriberSet::new([a.clone(), b.clone()]).remembering(&state);
        assert!(first.reload_all().diagnostics.is_empty());
        std::fs::write(&a, "match,account\n10.1.1.1,alice\n10.1.1.300,x\n").expect("damage a");
        std::fs::remove_file(&b).expect("remove b");
        let mut next = SubscriberSet::new([a.clone(), b.clone()]).remembering(&state);
        let r = next.reload_all();
        let shown: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with(&format!("{}:3: match:", a.display())),
            "{shown:?}"
        );
        assert!(shown[1].contains("cannot read"), "{shown:?}");
        assert!(r.changed);
        assert_eq!(account(&next, "10.1.1.1").as_deref(), Some("alice"));
        assert_eq!(account(&next, "10.2.2.2").as_deref(), Some("bob"));
        // The file fixed: it is applied, and is what the next agent keeps.
        std::fs::write(&a, "match,account\n10.1.1.1,carol\n").expect("fix a");
        assert!(next.reload(std::slice::from_ref(&a)).changed);
        assert_eq!(account(&next, "10.1.1.1").as_deref(), Some("carol"));
        std::fs::write(&a, "").expect("empty a");
        let mut third = SubscriberSet::new([a.clone()]).remembering(&state);
        third.reload_all();
        assert_eq!(account(&third, "10.1.1.1").as_deref(), Some("carol"));
        let kept = std::fs::read_dir(state.join(SUBSCRIBERS_KEPT))
            .expect("kept")
            .count();
        assert_eq!(kept, 1, "b, no longer configured, is not kept");
        // The rows' count lost with a damaged state file: the kept version's rows count.
        std::fs::write(state.join(SUBSCRIBERS_SEEN), "{not json").expect("damage");
        let mut fourth = SubscriberSet::new([a.clone()]).remembering(&state);
        assert_eq!(fourth.reload_all().diagnostics.len(), 1);
        assert_eq!(account(&fourth, "10.1.1.1").as_deref(), Some("carol"));
        // Relative and absolute spellings of one path are one kept copy.
        let here = std::env::current_dir().expect("cwd");
        let relative = pathdiff(&a, &here);
        let mut fifth = SubscriberSet::new([relative]).remembering(&state);
        fifth.reload_all();
        assert_eq!(account(&fifth, "10.1.1.1").as_deref(), Some("carol"));
    }

    /// `path` relative to `base` (both absolute), through `..` as needed.
    fn pathdiff(path: &Path, base: &Path) -> PathBuf {
        let (p, b): (Vec<_>, Vec<_>) = (path.components().collect(), base.components().collect());
        let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut out = PathBuf::new();
        for _ in common..b.len() {
            out.push("..");
        }
        out.extend(&p[common..]);
        out
    }

    #[test]
    fn a_bad_edit_keeps_the_last_good_version() {
        let dir = TempDir::new("subs-set");
        let a = dir.0.join("a.csv");
        let b = dir.0.join("b.csv");
        std::fs::write(&a, "match,account\n10.0.0.0/8,wide\n").expect("write a");
        std::fs::write(
            &b,
            "match,account\n10.0.0.0/8,other-file\n10.1.1.1,narrow\n",
        )
        .expect("write b");
        let mut set = SubscriberSet::new([a.clone(), b.clone()]);
        let r = set.reload_all();
        assert!(r.changed && r.diagnostics.is_empty(), "{:?}", r.diagnostics);
        assert_eq!(
            account(&set, "10.2.3.4").as_deref(),
            Some("wide"),
            "first file wins a tie"
        );
        assert_eq!(
            account(&set, "10.1.1.1").as_deref(),
            Some("narrow"),
            "narrowest wins"
        );

        let before = set.table();
        std::fs::write(&a, "match,account\n10.0.0.0/8,wide\n10.0.0.300,x\nbad,y\n")
            .expect("rewrite a");
        let r = set.reload(std::slice::from_ref(&a));
        assert!(!r.changed);
        let shown: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with(&format!("{}:3: match: IPv4 address", a.display())),
            "{shown:?}"
        );
        assert!(shown[1].contains(":4: match: `bad` is not"), "{shown:?}");
        assert!(Arc::ptr_eq(&before, &set.table()), "table untouched");

        std::fs::remove_file(&a).expect("remove a");
        let r = set.reload(std::slice::from_ref(&a));
        assert!(!r.changed);
        assert!(r.diagnostics[0].to_string().contains("cannot read"));
        assert_eq!(account(&set, "10.2.3.4").as_deref(), Some("wide"));

        // 0 bytes (a truncation before the new contents): not applied.
        std::fs::write(&a, "").expect("truncate a");
        let r = set.reload(std::slice::from_ref(&a));
        assert!(!r.changed);
        let shown = r.diagnostics.first().map(ToString::to_string);
        assert!(
            shown.as_deref().is_some_and(
                |s| s.contains("is empty (0 bytes) where its last version held 1 rows")
            ),
            "{shown:?}"
        );
        assert_eq!(account(&set, "10.2.3.4").as_deref(), Some("wide"));
        std::fs::write(&a, "match,account\n").expect("empty a");
        let r = set.reload(&[a.clone(), dir.0.join("unrelated")]);
        assert!(r.changed && r.diagnostics.is_empty());
        assert_eq!(account(&set, "10.2.3.4").as_deref(), Some("other-file"));
        assert_eq!(set.paths().count(), 2);
        // An unchanged file does not rebuild the table.
        let same = set.table();
        assert!(!set.reload_all().changed);
        assert!(Arc::ptr_eq(&same, &set.table()));
    }

    #[test]
    fn check_prints_every_problem_then_a_count() {
        let dir = TempDir::new("subs-check");
        let p = dir.0.join("subs.csv");
        std::fs::write(&p, "match,account\n10.0.0.1,a\n10.0.0.1/33,b\n,c\n").expect("write");
        let shown = check_file(&p).to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3, "{shown}");
        assert!(
            lines[0]
                .ends_with(":3: match: CIDR `10.0.0.1/33`: prefix length 33 is over 32 for IPv4"),
            "{shown}"
        );
        assert!(
            lines[1].ends_with(":4: match: empty; every row needs one"),
            "{shown}"
        );
        assert!(
            lines[2].ends_with("2 bad lines; the file would not be applied"),
            "{shown}"
        );
        std::fs::write(&p, "match,account\n10.0.0.1,a\n").expect("write");
        let c = check_file(&p);
        assert!(c.result.is_ok());
        assert!(c.to_string().contains(": ok\n  lines 2: 1 rows"), "{c}");
    }
}
