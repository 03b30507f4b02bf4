//! Verify: walk the manifest chain, check every live segment's SHA-256 and size, find segment
//! files the chain does not list, check the operator log (its own chain, every anchor of it
//! in the manifest, every prune against the legal holds in force when it was decided) and the
//! alert log (its chain and anchors), read the live journals, and check the (signed) head. The first broken link is reported with the file at fault.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

mod changes;
mod journals;
use changes::{segment_sha256, shape, Hashed};
use journals::check_journals;

use super::fsutil::{unhex, utf8_text, InputError};
use super::hold;
use super::manifest::{self, check_signature, AnchorInfo, Body, Head, SegmentInfo, GENESIS};
use super::oplog::{self, ChainEnd, Log, Scan};
use super::seal::{interrupted_write, is_segment_name, Interrupted};

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct Broken {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong.
    pub reason: String,
    /// Whether the store was found altered, or a file could not be read.
    pub fault: Fault,
}

/// What a [`Broken`] proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The store is not what its chain says: a file changed, deleted, inserted, damaged, or
    /// something else (a directory, a FIFO) in a file's place.
    Altered,
    /// A file could not be read (no permission, an I/O error): nothing is proved either way.
    Unreadable,
    /// The store holds no chain at all (no manifest, no segment) where a signature was asked
    /// for: nothing is signed, so nothing is proved either way. A store the agent has not
    /// sealed into yet reads so, and so does one wiped whole; only who knows it held entries
    /// can tell them apart (the agent, from its state directory: `XA-CHAIN-BROKEN`).
    Empty,
}

impl Fault {
    /// The fault an I/O error stands for: [`Fault::Altered`] for what
    /// [`super::fsutil::open_regular`] refuses by the file's kind or size (another kind of file
    /// in a store file's place), and for a loop of symbolic links (the store makes none: one
    /// in a file's place was put there), else [`Fault::Unreadable`].
    fn of(e: &std::io::Error) -> Self {
        if e.get_ref()
            .is_some_and(|inner| inner.downcast_ref::<InputError>().is_some())
            || e.raw_os_error() == Some(libc::ELOOP)
        {
            Fault::Altered
        } else {
            Fault::Unreadable
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Chain entries.
    pub entries: u64,
    /// Live segments whose hash was checked.
    pub segments: u64,
    /// Rows in those segments.
    pub rows: u64,
    /// Segments deleted by retention, as recorded.
    pub pruned: u64,
    /// Segments merged into others by compaction, as recorded.
    pub compacted: u64,
    /// Hash of the last entry (empty for an empty store).
    pub head: String,
    /// Whether the head's signature was checked.
    pub signature_checked: bool,
    /// Lines of the operator log (accesses, holds, releases).
    pub operator_lines: u64,
    /// Of those, anchored in the manifest.
    pub anchored_lines: u64,
    /// Legal holds in force.
    pub holds_in_force: u64,
    /// Lines of the alert log (`alerts.jsonl`).
    pub alert_lines: u64,
    /// Of those, anchored in the manifest.
    pub alert_anchored_lines: u64,
    /// Live journals read (not yet sealed, so in no chain entry).
    pub journals: u64,
    /// Records in them.
    pub journal_records: u64,
    /// The chain as verified, and its head line: what a report lists, so that its table and
    /// its verdict are of one reading of the manifest.
    pub chain: (Vec<manifest::Entry>, Option<Head>),
}

impl Verified {
    /// The one-line verdict `verify` prints after `ok: ` (the report quotes it too).
    pub fn summary(&self) -> String {
        format!(
            "{} entries, {} segments ({} rows), {} pruned by retention, {} merged by compaction, operator log {} lines ({} anchored, {} holds in force), alert log {} lines ({} anchored), {} live journals ({} records), head {}{}",
            self.entries,
            self.segments,
            self.rows,
            self.pruned,
            self.compacted,
            self.operator_lines,
            self.anchored_lines,
            self.holds_in_force,
            self.alert_lines,
            self.alert_anchored_lines,
            self.journals,
            self.journal_records,
            if self.head.is_empty() {
                "(empty)"
            } else {
                &self.head
            },
            if self.signature_checked {
                ", signature valid"
            } else {
                ""
            }
        )
    }
}

/// How many times a failure is checked again when the store changed under the check.
const RECHECKS: usize = 3;

/// Verifies the store in `dir`; with `key`, the head must carry a valid signature by it.
///
/// The writer may seal, merge or prune while the check reads (it takes no lock): a check
/// that read the manifest before a change and the files after it would find a segment the
/// chain does not list, or miss one it does. Such a file is accepted when the manifest, read
/// again, extends the chain with the entry that explains it; and the whole check is run again
/// whenever the chain's files changed during it ([`shape`]: a segment or journal came or
/// went, a segment or the manifest changed), up to [`RECHECKS`] times, so the verdict is one
/// of a store that held still.
pub fn verify(dir: &Path, key: Option<&VerifyingKey>) -> Result<Verified, Broken> {
    verify_with_progress(dir, key, &mut |_, _| {})
}

/// [`verify`], calling `progress` with the live segments hashed so far and their number
/// (hashing them is the long part: a store of 180 days holds GBs).
pub fn verify_with_progress(
    dir: &Path,
    key: Option<&VerifyingKey>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Verified, Broken> {
    let mut tries = 0;
    // Each check after the first hashes only the segments that changed since: a store that
    // seals while a long check runs is checked again in seconds, not in hours.
    let mut hashed = Hashed::new();
    loop {
        let before = shape(dir);
        let reread = std::cell::Cell::new(false);
        let result = verify_once(dir, key, progress, &reread, &mut hashed);
        let held_still = before.is_some() && shape(dir) == before;
        // A file explained by the manifest read again (a segment sealed, merged or pruned
        // meanwhile) is taken only from a whole check of that manifest: its links, head and
        // signature, which the read again does not check. Else a manifest rewritten between
        // the two reads and put back (its modification time with it) passed a deleted segment.
        if !reread.get() && (held_still || before.is_none()) {
            return result;
        }
        if tries == RECHECKS {
            return match result {
                Ok(_) if reread.get() => Err(Broken {
                    file: dir.join(manifest::MANIFEST),
                    reason: format!(
                        "the store changed under each of {} checks (a seal, merge or prune \
                         each time): no verdict; run `xdp-audit verify` again",
                        RECHECKS + 1
                    ),
                    fault: Fault::Unreadable,
                }),
                other => other,
            };
        }
        tracing::debug!(dir = %dir.display(), "the store changed during its verification: checking again");
        tries += 1;
    }
}

/// One verification of the store as it is read ([`verify`]); `reread` is set when a file was
/// taken on the word of the manifest read again.
fn verify_once(
    dir: &Path,
    key: Option<&VerifyingKey>,
    progress: &mut dyn FnMut(usize, usize),
    reread: &std::cell::Cell<bool>,
    hashed: &mut Hashed,
) -> Result<Verified, Broken> {
    let mpath = dir.join(manifest::MANIFEST);
    let broken = |file: &Path, reason: String| Broken {
        file: file.to_owned(),
        reason,
        fault: Fault::Altered,
    };
    let unreadable = |file: &Path, e: &std::io::Error| Broken {
        file: file.to_owned(),
        reason: format!("cannot read: {e}"),
        fault: Fault::of(e),
    };
    let text = match manifest::read_manifest_file(&mpath) {
        Ok(b) => utf8_text(b).map_err(|e| {
            broken(
                &mpath,
                format!("line {}: byte offset {} is not UTF-8", e.line, e.offset),
            )
        })?,
        Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            if segments_without_manifest(dir) {
                return Err(broken(
                    &mpath,
                    "missing, but segments exist (manifest deleted)".into(),
                ));
            }
            String::new()
        }
        Err(InputError::Io(e)) => return Err(unreadable(&mpath, &e)),
        Err(e) => return Err(broken(&mpath, format!("cannot read: {e}"))),
    };
    let (entries, head) = manifest::parse_with_head(&mpath, &text).map_err(|e| {
        // The verdict names the file already.
        let reason = match e {
            manifest::ManifestError::Parse { line, reason, .. } => format!("line {line}: {reason}"),
            e => e.to_string(),
        };
        broken(&mpath, reason)
    })?;
    // The writer writes it whole, its head line last: one there with neither entries nor a
    // head was emptied (the agent's start finds it unreadable and `query` refuses it).
    if entries.is_empty() && head.is_none() && std::fs::symlink_metadata(&mpath).is_ok() {
        return Err(broken(
            &mpath,
            "empty: no head line (the file was emptied or cut short)".into(),
        ));
    }
    let lpath = dir.join(oplog::LOG);
    let log = oplog::scan(dir).map_err(|e| log_broken(&lpath, e))?;
    let apath = dir.join(oplog::ALERTS);
    let alerts = oplog::scan_log(dir, Log::Alerts).map_err(|e| log_broken(&apath, e))?;
    let mut anchored = ChainEnd::start();
    let mut alerts_anchored = ChainEnd::start();
    let mut out = Verified::default();
    let mut prev = GENESIS.to_owned();
    let mut chain = manifest::LiveSet::default();
    // Each entry's line as `parse_with_head` took it, with its line number.
    let mut lines = (text.lines().enumerate())
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with("{\"head\""));
    for (i, e) in entries.iter().enumerate() {
        let (n, line) = lines.next().unwrap_or((i, ""));
        let at = format!("entry {i} (line {})", n + 1);
        manifest::check_link(i, &prev, e).map_err(|r| broken(&mpath, format!("{at}: {r}")))?;
        // The hash covers the parsed content: a field added or reformatted leaves it intact,
        // so the line must be the very bytes the writer puts there.
        if serde_json::to_string(e).ok().as_deref() != Some(line) {
            return Err(broken(
                &mpath,
                format!("{at}: not in the form the agent writes (line edited)"),
            ));
        }
        let removed = chain
            .apply(e)
            .map_err(|r| broken(&mpath, format!("{at}: {r}")))?;
        match &e.body {
            Body::Prune(p) => {
                check_holds(&log, anchored.lines, &removed)
                    .map_err(|r| broken(&mpath, format!("{at}: {r}")))?;
                check_expired(p, &removed).map_err(|r| broken(&mpath, format!("{at}: {r}")))?;
                out.pruned += removed.len() as u64;
            }
            Body::Anchor(a) if a.log == oplog::ALERTS => {
                check_anchor(Log::Alerts, &alerts, a, &alerts_anchored).map_err(
                    |(in_log, r)| {
                        if in_log {
                            broken(&apath, r)
                        } else {
                            broken(&mpath, format!("{at}: {r}"))
                        }
                    },
                )?;
                alerts_anchored = ChainEnd {
                    lines: a.lines,
                    bytes: a.bytes,
                    head: a.head.clone(),
                };
            }
            Body::Anchor(a) => {
                check_anchor(Log::Operator, &log, a, &anchored).map_err(|(in_log, r)| {
                    if in_log {
                        broken(&lpath, r)
                    } else {
                        broken(&mpath, format!("{at}: {r}"))
                    }
                })?;
                anchored = ChainEnd {
                    lines: a.lines,
                    bytes: a.bytes,
                    head: a.head.clone(),
                };
            }
            Body::Compact(c) => {
                check_merge(&c.segment, &removed)
                    .map_err(|r| broken(&mpath, format!("{at}: {r}")))?;
                out.compacted += removed.len() as u64;
            }
            Body::Segment(_) => {}
        }
        prev = e.hash.clone();
    }
    out.entries = entries.len() as u64;
    // Segments in chain order, so the first broken one is reported.
    let total = (entries.iter().filter_map(|e| e.body.added()))
        .filter(|s| chain.is_live(&s.file))
        .count();
    let mut done = 0;
    // A segment that could not be read proves nothing either way: the check goes on, so that
    // an altered file after it is still BROKEN (which wins over NOT CHECKED), and says it at
    // the end.
    let mut unread: Option<Broken> = None;
    for e in &entries {
        let Some(s) = e.body.added() else { continue };
        if !chain.is_live(&s.file) {
            continue;
        }
        progress(done, total);
        done += 1;
        let (sha, size, rows) = (&s.sha256, &s.size, &s.rows);
        let path = dir.join(&s.file);
        // Gone: pruned or merged while this check read (the writer appends the entry that
        // removes a segment before it deletes the file), or deleted.
        let gone = || {
            if extended(dir, &entries).is_some_and(|now| {
                now[entries.len()..]
                    .iter()
                    .any(|e| e.body.removed().iter().any(|f| f.file == s.file))
            }) {
                reread.set(true);
                return Ok(());
            }
            Err(broken(
                &path,
                format!("missing: listed by entry {} but deleted", e.seq),
            ))
        };
        // Not through a link: a segment is the file its seal wrote (a link to a copy
        // elsewhere passed every check, the copy outside the store's care).
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                gone()?;
                continue;
            }
            Err(err) => {
                unread.get_or_insert_with(|| unreadable(&path, &err));
                continue;
            }
        };
        if let Some(kind) = crate::store::fsutil::not_regular(meta.file_type()) {
            return Err(broken(
                &path,
                format!(
                    "is a {kind}, not the segment file entry {} sealed (replaced)",
                    e.seq
                ),
            ));
        }
        if meta.len() != *size {
            return Err(broken(
                &path,
                format!(
                    "size {} differs from the sealed size {size} (file changed)",
                    meta.len()
                ),
            ));
        }
        let got = match segment_sha256(&path, &meta, hashed) {
            Ok(got) => got,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                gone()?;
                continue;
            }
            Err(err) => {
                unread.get_or_insert_with(|| unreadable(&path, &err));
                continue;
            }
        };
        if &got != sha {
            return Err(broken(
                &path,
                format!("SHA-256 {got} differs from the sealed {sha} (file changed)"),
            ));
        }
        out.segments += 1;
        out.rows += rows;
    }
    progress(total, total);
    let listed = chain.listed();
    let removed: HashSet<&str> = listed
        .iter()
        .copied()
        .filter(|f| !chain.is_live(f))
        .collect();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Broken {
            reason: format!("cannot list: {e}"),
            ..unreadable(dir, &e)
        })?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_segment_name(n))
        .collect();
    names.sort();
    for n in names {
        if !listed.contains(n.as_str()) {
            match interrupted_write(dir, &n, entries.len() as u64) {
                Some(Interrupted::Seal) => {
                    tracing::warn!(
                        file = %n,
                        "segment not yet in the chain: a seal was interrupted by a crash; the next start seals its journal again under this name"
                    );
                    continue;
                }
                Some(Interrupted::Compaction) => {
                    tracing::warn!(
                        file = %n,
                        "segment not yet in the chain: a compaction was interrupted by a crash (its inputs are still live); the next start deletes it"
                    );
                    continue;
                }
                None => {}
            }
            // Sealed or merged while this check read (listed now), or being written now. A
            // seal renames its segment into place, appends the entry, then deletes the journal:
            // a journal seen after one read of the manifest means the entry is still to come,
            // and a journal gone by then means a second read lists the entry.
            let lists = |now: &[manifest::Entry]| {
                now[entries.len()..]
                    .iter()
                    .any(|e| e.body.added().is_some_and(|s| s.file == n))
            };
            let being_written = |now: &[manifest::Entry]| {
                lists(now) || interrupted_write(dir, &n, now.len() as u64).is_some()
            };
            if extended(dir, &entries).is_some_and(|now| being_written(&now))
                || extended(dir, &entries).is_some_and(|now| lists(&now))
            {
                reread.set(true);
                continue;
            }
            return Err(broken(
                &dir.join(&n),
                "segment not in the chain (inserted or replaced)".into(),
            ));
        }
        if removed.contains(n.as_str()) {
            tracing::info!(file = %n, "segment the chain removed (pruned or compacted) still present; the agent deletes it at its next compaction pass or start");
        }
    }
    if let Some((line, reason)) = &log.problem {
        return Err(broken(&lpath, format!("line {line}: {reason}")));
    }
    if log.incomplete > 0 {
        tracing::warn!(file = %lpath.display(), bytes = log.incomplete, "the operator log ends in an incomplete line: an append in progress, or one a crash interrupted (the next append cuts it)");
    }
    if let Some((line, reason)) = &alerts.problem {
        return Err(broken(&apath, format!("line {line}: {reason}")));
    }
    out.operator_lines = log.end.lines;
    out.anchored_lines = anchored.lines;
    out.alert_lines = alerts.end.lines;
    out.alert_anchored_lines = alerts_anchored.lines;
    out.holds_in_force = hold::in_force(&log.lines).len() as u64;
    let sealed: HashSet<u64> = entries
        .iter()
        .filter_map(|e| e.body.added())
        .map(|s| s.journal_id)
        .collect();
    check_journals(dir, &sealed, &mut out)?;
    let head_text = text.lines().rev().find(|l| !l.trim().is_empty());
    check_head(
        &mpath,
        head.clone(),
        head_text,
        entries.last(),
        key,
        &mut out,
    )?;
    if let Some(u) = unread {
        return Err(u);
    }
    out.chain = (entries, head);
    Ok(out)
}

/// A log that did not scan: its error without the path (the verdict names the file), and
/// whether it could not be read or breaks the log's rules.
fn log_broken(path: &Path, e: oplog::OpLogError) -> Broken {
    let (reason, fault) = match e {
        oplog::OpLogError::Io { op, cause, .. } => (format!("{op}: {cause}"), Fault::of(&cause)),
        oplog::OpLogError::Line { line, reason, .. } => {
            (format!("line {line}: {reason}"), Fault::Altered)
        }
        oplog::OpLogError::Refused { reason, .. } => (reason, Fault::Altered),
    };
    Broken {
        file: path.to_owned(),
        reason,
        fault,
    }
}

/// An anchor must name `which` log, never go back, and match the log: its line `lines` ends
/// at byte `bytes` with hash `head`. The error says whether the log (`true`) or the manifest
/// entry is at fault.
fn check_anchor(
    which: Log,
    log: &Scan,
    a: &AnchorInfo,
    before: &ChainEnd,
) -> Result<(), (bool, String)> {
    if a.log != which.file() || a.lines < before.lines || a.lines == 0 {
        return Err((
            false,
            format!(
                "anchor of {:?} at line {} after an anchor at line {}: not an anchor the agent writes",
                a.log, a.lines, before.lines
            ),
        ));
    }
    let i = (a.lines - 1) as usize;
    match (log.lines.get(i), log.ends.get(i)) {
        (Some(l), Some(&end)) if l.hash == a.head && end == a.bytes => Ok(()),
        (Some(_), Some(_)) => Err((
            true,
            format!(
                "line {}: differs from what the manifest anchored (its hash or the bytes before it changed: the log was rewritten)",
                a.lines
            ),
        )),
        _ => Err((
            true,
            match &log.problem {
                Some((line, reason)) => format!("line {line}: {reason}"),
                None => format!(
                    "ends after line {} ({} bytes), but the manifest anchored {} lines ({} bytes): lines were cut off or deleted",
                    log.end.lines, log.end.bytes, a.lines, a.bytes
                ),
            },
        )),
    }
}

/// A prune may delete no segment a hold in force covers, among the holds of the first
/// `anchored` lines of the log (what the retention pass anchored before deciding).
fn check_holds(log: &Scan, anchored: u64, removed: &[&SegmentInfo]) -> Result<(), String> {
    let lines = &log.lines[..(anchored as usize).min(log.lines.len())];
    for h in hold::in_force(lines) {
        if let Some(s) = removed.iter().find(|s| h.covers(s)) {
            return Err(format!(
                "retention deleted {}, which hold {} ({:?}) kept: a held segment was pruned",
                s.file, h.id, h.window.reason
            ));
        }
    }
    Ok(())
}

/// Whether `dir`, which has no manifest, holds segments other than the one an interrupted
/// first seal leaves (the first seal writes its segment before it creates the manifest): the
/// manifest was deleted.
pub(crate) fn segments_without_manifest(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .any(|n| {
                    is_segment_name(&n) && interrupted_write(dir, &n, 0) != Some(Interrupted::Seal)
                })
        })
        .unwrap_or(false)
}

/// The manifest's entries read again, when they extend the chain this check verified
/// (`verified` is their start, entry for entry): the writer sealed, merged or pruned while
/// the check read. [`verify`] checks again once the store holds still.
fn extended(dir: &Path, verified: &[manifest::Entry]) -> Option<Vec<manifest::Entry>> {
    let now = manifest::read_entries(dir).ok()?;
    (now.len() >= verified.len() && now.iter().zip(verified).all(|(a, b)| a.hash == b.hash))
        .then_some(now)
}

/// A prune deletes only what its own time and retention expired (the writer's retention takes
/// both from one clock reading): an entry deleting a younger segment was not written by it.
fn check_expired(p: &manifest::PruneInfo, removed: &[&SegmentInfo]) -> Result<(), String> {
    let cutoff = super::retention::cutoff_ns(p.at_ns, p.retention_days);
    match removed
        .iter()
        .find(|s| cutoff.is_none_or(|c| s.time_max_ns >= c))
    {
        Some(s) => Err(format!(
            "deletes {} (newest record {}), which a retention of {} days had not expired at the \
             prune's own time ({}): no retention pass writes that",
            s.file,
            crate::record::rfc3339_ns(s.time_max_ns),
            p.retention_days,
            crate::record::rfc3339_ns(p.at_ns)
        )),
        None => Ok(()),
    }
}

/// A compaction's merged segment must hold exactly its inputs' rows and time range.
fn check_merge(merged: &SegmentInfo, inputs: &[&SegmentInfo]) -> Result<(), String> {
    let rows: u64 = inputs.iter().map(|s| s.rows).sum();
    let min = inputs.iter().map(|s| s.time_min_ns).min();
    let max = inputs.iter().map(|s| s.time_max_ns).max();
    if inputs.is_empty() || merged.journal_id != 0 {
        return Err(format!(
            "compaction into {} names no inputs or a journal",
            merged.file
        ));
    }
    if merged.rows != rows {
        return Err(format!(
            "compaction into {} claims {} rows but its inputs were sealed with {rows}",
            merged.file, merged.rows
        ));
    }
    if (Some(merged.time_min_ns), Some(merged.time_max_ns)) != (min, max) {
        return Err(format!(
            "compaction into {} claims another time range than its inputs",
            merged.file
        ));
    }
    Ok(())
}

fn check_head(
    hpath: &Path,
    head: Option<Head>,
    line: Option<&str>,
    last: Option<&manifest::Entry>,
    key: Option<&VerifyingKey>,
    out: &mut Verified,
) -> Result<(), Broken> {
    let broken = |reason: String| Broken {
        file: hpath.to_owned(),
        reason,
        fault: Fault::Altered,
    };
    let Some(last) = last else {
        if key.is_some() {
            return Err(Broken {
                fault: Fault::Empty,
                ..broken(
                    "nothing is sealed yet, so nothing is signed: the chain and its signed head \
                     begin at the first seal (within --seal-interval of the first record, or at \
                     the agent's stop)"
                        .into(),
                )
            });
        }
        return Ok(());
    };
    let head = head.ok_or_else(|| {
        broken("no head line after the last entry (the end of the chain was cut)".into())
    })?;
    if head.seq != last.seq || head.hash != last.hash {
        // The same entry by number and another hash: the head line or that entry was
        // changed, nothing removed or added (which it said).
        let why = if head.seq == last.seq {
            "the head line or the last entry was changed"
        } else {
            "entries were removed from or added to the end"
        };
        return Err(broken(format!(
            "the head line names entry {} ({}) but the chain ends at entry {} ({}): {why}",
            head.seq, head.hash, last.seq, last.hash
        )));
    }
    // The head is not in the chain's hashes: it must be the very line the writer puts there
    // (lowercase hex), or a changed field name or digit's case would read as the same head.
    let lower_hex = |v: &Option<String>| {
        v.as_deref()
            .is_none_or(|x| x.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    };
    if line != Some(manifest::head_line(&head).as_str())
        || !lower_hex(&head.public_key)
        || !lower_hex(&head.signature)
    {
        return Err(broken(
            "the head line is not as the agent writes it: it was changed".into(),
        ));
    }
    match key {
        Some(k) => {
            check_signature(&head, k).map_err(broken)?;
            out.signature_checked = true;
        }
        // Without the operator's key a forged head cannot be told, but a damaged one can:
        // its signature must verify under the key it names.
        None => {
            if let Some(named) = &head.public_key {
                let named = unhex::<32>(named)
                    .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                    .ok_or_else(|| broken("the head names a public key that is not one".into()))?;
                check_signature(&head, &named).map_err(|e| {
                    broken(format!(
                        "{e} (checked against the key the head names: give --public-key to check the signer)"
                    ))
                })?;
            }
        }
    }
    out.head = head.hash;
    Ok(())
}
