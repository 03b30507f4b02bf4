//! Appending to the hash-chained logs: under a short `flock` of the log (appenders only; the
//! writer anchoring it never takes it), the chain's end read from the last line, then the new
//! lines written in one piece and fsynced once.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{
    check_bytes, io, line_hash, read_log, torn_too_long, ChainEnd, Log, OpEntry, OpLine,
    OpLogError, LOG, MAX_LINE, TORN_MAX,
};
use crate::store::fsutil::{self, open_regular_here, sync_dir};

/// The log opened for appending and locked against other appenders (never against the
/// writer, which does not lock it); the lock goes with the file.
fn open_locked(dir: &Path, log: Log) -> Result<(File, bool), OpLogError> {
    let path = dir.join(log.file());
    let existed = path.exists();
    // Never a blocking open, and never a write into what is not a regular file: a FIFO in
    // the log's place would hand the lines to whoever reads it, or wait for them to; a link
    // would have a root command create (and give the store's owner) the file it names.
    let f = open_regular_here(
        &path,
        File::options()
            .read(true)
            .append(true)
            .create(true)
            .mode(log.mode()),
    )
    .map_err(|e| io(&path, "open for appending")(e.into()))?;
    if !existed {
        give_to_store_owner(&f, dir, &path, log.mode())?;
    }
    // Appenders hold it for one write; one stopped while holding it (Ctrl-Z) must not hang
    // every command after it without a word.
    if fsutil::lock_exclusive(&f, APPEND_PATIENCE).map_err(io(&path, "lock"))? {
        return Ok((f, !existed));
    }
    Err(OpLogError::Refused {
        reason: format!(
            "another process has held its lock for over {} s (a command stopped with Ctrl-Z, \
             or hung: `fuser -v {}` names it); nothing is appended",
            APPEND_PATIENCE.as_secs(),
            path.display()
        ),
        path,
    })
}

/// How long an appender waits for the log's lock (a second in unit tests).
const APPEND_PATIENCE: std::time::Duration =
    std::time::Duration::from_secs(if cfg!(test) { 1 } else { 10 });

/// The operator log locked against appenders ([`try_lock_operator_log`]).
#[derive(Debug)]
pub enum LogLock {
    /// Locked for as long as the file is open.
    Held(File),
    /// There is no log yet (so no legal hold either).
    NoLog,
    /// An appender held it through every try.
    Busy,
}

/// The operator log locked against appenders, without waiting long: appenders hold it for
/// one write, so a few short tries suffice. Retention holds it from reading the legal holds
/// to deleting, so a hold ordered meanwhile waits for the deletion and then sees what is
/// left, instead of being said in force over segments being deleted.
pub fn try_lock_operator_log(dir: &Path) -> Result<LogLock, OpLogError> {
    let path = dir.join(LOG);
    let f = match open_regular_here(&path, File::options().read(true)) {
        Ok(f) => f,
        Err(crate::store::fsutil::InputError::Io(e))
            if e.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(LogLock::NoLog)
        }
        Err(e) => return Err(io(&path, "open")(e.into())),
    };
    let held = fsutil::lock_exclusive(&f, std::time::Duration::from_millis(500))
        .map_err(io(&path, "lock"))?;
    Ok(if held {
        LogLock::Held(f)
    } else {
        LogLock::Busy
    })
}

/// A log created by an operator's command belongs to the store's owner with [`LOG_MODE`]
/// whatever the umask ([`fsutil::give_to_dir_owner`]), so the agent, running as its own user,
/// can still anchor it after a root `query` made it.
fn give_to_store_owner(f: &File, dir: &Path, path: &Path, mode: u32) -> Result<(), OpLogError> {
    fsutil::give_to_dir_owner(f, dir, mode).map_err(io(path, "give to the store directory's owner"))
}

/// The chain end of the locked log, read from its last line. A torn last line (an appender
/// that died mid-write: no newline) is cut first; it never was a complete entry, and anchors
/// only ever cover complete lines. A tail longer than a line is damage: refused, not cut. A
/// last complete line that does not parse is refused too, but in the alert log, where such
/// lines are set aside ([`set_aside_unparsed`]).
fn tail(f: &mut File, path: &Path, log: Log) -> Result<ChainEnd, OpLogError> {
    let len = f.metadata().map_err(io(path, "stat"))?.len();
    let mut buf = Vec::new();
    let mut from = len;
    // Grow the window from the end until it holds the last newline and the one before it.
    let (complete, start) = loop {
        from = from.saturating_sub(64 * 1024).min(from);
        f.seek(SeekFrom::Start(from)).map_err(io(path, "seek"))?;
        buf.clear();
        Read::take(&mut *f, len - from)
            .read_to_end(&mut buf)
            .map_err(io(path, "read"))?;
        let last_nl = buf.iter().rposition(|&b| b == b'\n');
        // Bytes after the last newline (at least, while none is in the window yet).
        let torn = last_nl.map_or(len - from, |i| len - from - i as u64 - 1);
        if torn > TORN_MAX {
            return Err(OpLogError::Refused {
                path: path.to_owned(),
                reason: format!(
                    "{}; nothing is cut or appended: run `xdp-audit verify`",
                    torn_too_long(torn)
                ),
            });
        }
        let before = last_nl.and_then(|i| buf[..i].iter().rposition(|&b| b == b'\n'));
        match (last_nl, before) {
            (Some(i), Some(j)) => break (from + i as u64 + 1, from + j as u64 + 1),
            (Some(i), None) if from == 0 => break (i as u64 + 1, 0),
            (None, None) if from == 0 => break (0, 0),
            // The last line is longer than any line is: damage (a window grown over a sparse
            // terabyte to find its start would never end).
            (Some(i), None) if i > MAX_LINE => {
                return Err(OpLogError::Refused {
                    path: path.to_owned(),
                    reason: format!(
                        "the last line is longer than {MAX_LINE} bytes, the longest a line is: \
                         damage; nothing is cut or appended: run `xdp-audit verify`"
                    ),
                })
            }
            _ => {}
        }
    };
    if complete < len {
        // Kept before it is cut: a crash's torn append, or the start of a line cut short by
        // damage (a hold not yet anchored), which is evidence.
        let aside = set_aside(path, complete, &buf[(complete - from) as usize..])?;
        tracing::warn!(file = %path.display(), bytes = len - complete, moved_to = %aside.display(), "cutting an incomplete last line of the log (an append interrupted by a crash); its bytes are kept in quarantine/");
        f.set_len(complete)
            .map_err(io(path, "cut an incomplete line"))?;
    }
    if complete == 0 {
        return Ok(ChainEnd::start());
    }
    let text = &buf[(start - from) as usize..(complete - from) as usize - 1];
    let last: OpLine = match serde_json::from_slice(text) {
        Ok(l) => l,
        // Only in the alert log: one damaged line kept every later notice out of it. The
        // operator log refuses, as retention does (suspended while a line does not parse):
        // cutting a damaged hold line there would lift the hold.
        Err(_) if log == Log::Alerts => return set_aside_unparsed(f, path, complete),
        Err(e) => {
            return Err(OpLogError::Refused {
                path: path.to_owned(),
                reason: format!(
                    "the last line does not parse ({e}); nothing can be chained to it: run \
                     `xdp-audit verify`"
                ),
            })
        }
    };
    Ok(ChainEnd {
        lines: last.n,
        bytes: complete,
        head: last.hash,
    })
}

/// The most complete lines at the end of the alert log that do not parse which an appender
/// sets aside ([`set_aside_unparsed`]); more is refused, the file left as it is.
pub(super) const UNPARSED_MAX: usize = 16;

/// The alert log at `path` whose last complete line (ending at `complete`) does not parse
/// (damage, or bytes another program wrote): walking back, up to [`UNPARSED_MAX`] such lines
/// are kept in `quarantine/` in one file and cut, and the chain goes on from the line before
/// them (or from the start), counted as a file set aside (`XA-STORE-DAMAGED`; `verify`
/// reports an anchored line taken so as missing). More, or a line longer than any line is,
/// is refused and nothing is cut.
fn set_aside_unparsed(f: &mut File, path: &Path, complete: u64) -> Result<ChainEnd, OpLogError> {
    let refused = |reason: String| OpLogError::Refused {
        path: path.to_owned(),
        reason: format!("{reason}; nothing is cut or appended: run `xdp-audit verify`"),
    };
    let window = ((UNPARSED_MAX as u64 + 1) * MAX_LINE as u64).min(complete);
    let from = complete - window;
    let mut buf = vec![0u8; window as usize];
    std::os::unix::fs::FileExt::read_exact_at(&*f, &mut buf, from).map_err(io(path, "read"))?;
    let mut end = buf.len();
    for _ in 0..=UNPARSED_MAX {
        let start = buf[..end - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if start == 0 && from > 0 {
            return Err(refused(format!(
                "a line longer than {MAX_LINE} bytes, the longest a line is, among its last \
                 lines that do not parse: damage"
            )));
        }
        let line = serde_json::from_slice::<OpLine>(&buf[start..end - 1]).ok();
        if line.is_some() || start == 0 {
            let cut = if line.is_some() { end } else { 0 };
            let at = from + cut as u64;
            let aside = set_aside(path, at, &buf[cut..])?;
            crate::store::seal::SET_ASIDE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                file = %path.display(),
                offset = at,
                bytes = complete - at,
                moved_to = %aside.display(),
                "the last lines of the alert log do not parse (damage): moved into quarantine/ \
                 and cut, and the chain goes on from the line before them (`xdp-audit verify` \
                 reports them if they were anchored)"
            );
            f.set_len(at)
                .map_err(io(path, "cut lines that do not parse"))?;
            return Ok(line.map_or_else(ChainEnd::start, |l| ChainEnd {
                lines: l.n,
                bytes: at,
                head: l.hash,
            }));
        }
        end = start;
    }
    Err(refused(format!(
        "its last {} lines do not parse: damage",
        UNPARSED_MAX + 1
    )))
}

/// Copies `bytes`, the incomplete line at `offset` of the log at `path`, into
/// `quarantine/<log name>-<offset>.bin` beside it (fsynced); its path.
fn set_aside(path: &Path, offset: u64, bytes: &[u8]) -> Result<std::path::PathBuf, OpLogError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let qdir = dir.join(crate::store::journal::QUARANTINE_DIR);
    crate::store::journal::make_quarantine_dir(&qdir).map_err(io(&qdir, "create"))?;
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let want = qdir.join(format!("{name}-{offset:012}.bin"));
    let (kept, _) = crate::store::journal::file::write_quarantine(&want, bytes).map_err(|e| {
        OpLogError::Refused {
            path: path.to_owned(),
            reason: format!("its incomplete last line cannot be kept before it is cut ({e}); nothing is cut or appended"),
        }
    })?;
    sync_dir(&qdir).map_err(io(&qdir, "fsync"))?;
    Ok(kept)
}

/// One line after `n - 1` lines ending in `prev`, encoded with its newline.
fn encode_line(
    path: &Path,
    log: Log,
    n: u64,
    prev: &str,
    entry: &OpEntry,
) -> Result<(OpLine, Vec<u8>), OpLogError> {
    let refused = |reason: String| OpLogError::Refused {
        path: path.to_owned(),
        reason,
    };
    if !log.holds(&entry.body) {
        return Err(refused(
            "this kind of entry belongs in the other log".into(),
        ));
    }
    let line = OpLine {
        n,
        hash: line_hash(n, entry, prev),
        entry: entry.clone(),
        prev: prev.to_owned(),
    };
    let mut text = serde_json::to_vec(&line).map_err(|e| refused(format!("cannot encode: {e}")))?;
    if text.len() > MAX_LINE {
        return Err(refused(format!(
            "the entry is {} bytes, more than the {MAX_LINE} a line may hold (shorten the reason or filter)",
            text.len()
        )));
    }
    text.push(b'\n');
    Ok((line, text))
}

/// Writes `entries` as the lines after `end`: one write, one fsync. Lines are encoded in
/// order up to the first that is refused; those before it are written and returned, and the
/// refusal is the error only when no line precedes it (the caller retries the rest and meets
/// it then). A write that fails part way returns the lines it completed, if any (the torn
/// rest is cut by the next append's [`tail`]), so no line is ever written twice.
fn write_lines(
    dir: &Path,
    log: Log,
    mut f: File,
    created: bool,
    end: &ChainEnd,
    entries: &[OpEntry],
) -> Result<Vec<OpLine>, OpLogError> {
    let path = dir.join(log.file());
    let mut lines: Vec<OpLine> = Vec::with_capacity(entries.len());
    let mut text = Vec::new();
    // The byte offset in `text` after each line.
    let mut ends = Vec::with_capacity(entries.len());
    for entry in entries {
        let (n, prev) = lines
            .last()
            .map_or((end.lines + 1, end.head.as_str()), |l| (l.n + 1, &l.hash));
        match encode_line(&path, log, n, prev, entry) {
            Ok((line, bytes)) => {
                text.extend_from_slice(&bytes);
                ends.push(text.len());
                lines.push(line);
            }
            Err(e) if lines.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    if lines.is_empty() {
        return Ok(lines);
    }
    // One write of whole lines: O_APPEND puts them at the end in one piece. Where the end is
    // (no other appender moves it: they wait on the log's lock), so that a write a full disk
    // refused part way is cut back to its whole lines at once, not left torn for the next
    // append to cut as if a crash had torn it.
    let start = f.metadata().map_err(io(&path, "stat"))?.len();
    let mut done = 0;
    while done < text.len() {
        let e = match f.write(&text[done..]) {
            Ok(0) => std::io::ErrorKind::WriteZero.into(),
            Ok(k) => {
                done += k;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => e,
        };
        let kept = write_failed(&path, &ends, done, e);
        if let Err(e) = f.set_len(start + *kept.as_ref().unwrap_or(&0) as u64) {
            tracing::warn!(file = %path.display(), error = %e, "cannot cut a torn line off the log; the next append cuts it");
        }
        done = kept?;
        break;
    }
    lines.truncate(ends.iter().take_while(|&&e| e <= done).count());
    // The lines are in the file now: a failed fsync leaves them there unproved, and is said,
    // but is no failed append, which the caller would retry (the same lines twice) or
    // report as not recorded.
    let synced = f.sync_data().map_err(io(&path, "fsync")).and_then(|()| {
        if created {
            sync_dir(dir).map_err(io(dir, "fsync directory"))
        } else {
            Ok(())
        }
    });
    if let Err(e) = synced {
        tracing::warn!(error = %e, lines = lines.len(), "lines appended, but not known to be on disk");
    }
    Ok(lines)
}

/// After a write failed with `done` bytes of the lines ending at `ends` written: the bytes of
/// the complete lines, or the error when not even the first line was written whole.
fn write_failed(
    path: &Path,
    ends: &[usize],
    done: usize,
    e: std::io::Error,
) -> Result<usize, OpLogError> {
    match ends.iter().take_while(|&&end| end <= done).last() {
        Some(&whole) => {
            tracing::warn!(file = %path.display(), error = %e, "an append of several lines failed part way; the complete ones stay, the rest is retried");
            Ok(whole)
        }
        None => Err(io(path, "append")(e)),
    }
}

/// Appends `entry` as the next line of the operator log; the caller needs write access to
/// the log only.
pub fn append(dir: &Path, entry: OpEntry) -> Result<OpLine, OpLogError> {
    append_to(dir, Log::Operator, entry)
}

/// Appends `entry` as the next line of `log`.
pub fn append_to(dir: &Path, log: Log, entry: OpEntry) -> Result<OpLine, OpLogError> {
    one_line(
        dir,
        log,
        append_all_to(dir, log, std::slice::from_ref(&entry))?,
    )
}

/// The line of a one-entry append (which returns it or an error).
fn one_line(dir: &Path, log: Log, lines: Vec<OpLine>) -> Result<OpLine, OpLogError> {
    lines.into_iter().next().ok_or_else(|| OpLogError::Refused {
        path: dir.join(log.file()),
        reason: "nothing was appended".into(),
    })
}

/// Appends `entries` as the next lines of `log` under one lock, in one write and one fsync
/// (the alert thread's notices of one loop). Returns the lines written: all of them, or the
/// ones before an entry that was refused or a write that failed part way; an error only when
/// none was written.
pub fn append_all_to(dir: &Path, log: Log, entries: &[OpEntry]) -> Result<Vec<OpLine>, OpLogError> {
    let (mut f, created) = open_locked(dir, log)?;
    let end = tail(&mut f, &dir.join(log.file()), log)?;
    write_lines(dir, log, f, created, &end, entries)
}

/// Appends `entry` after reading and checking the whole log under the lock and asking
/// `check` whether the entry fits it (a release must name a hold in force). A log that does
/// not verify refuses the append.
pub fn append_checked(
    dir: &Path,
    entry: OpEntry,
    check: impl FnOnce(&[OpLine]) -> Result<(), String>,
) -> Result<OpLine, OpLogError> {
    let path = dir.join(LOG);
    let (mut f, created) = open_locked(dir, Log::Operator)?;
    let end = tail(&mut f, &path, Log::Operator)?;
    f.seek(SeekFrom::Start(0)).map_err(io(&path, "seek"))?;
    let (bytes, cut) = read_log(&mut f).map_err(io(&path, "read"))?;
    let s = check_bytes(&bytes, ChainEnd::start(), true).cut(cut);
    if let Some((line, reason)) = s.problem {
        return Err(OpLogError::Line { path, line, reason });
    }
    check(&s.lines).map_err(|reason| OpLogError::Refused {
        path: path.clone(),
        reason,
    })?;
    let lines = write_lines(
        dir,
        Log::Operator,
        f,
        created,
        &end,
        std::slice::from_ref(&entry),
    )?;
    one_line(dir, Log::Operator, lines)
}
