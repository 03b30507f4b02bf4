//! The operator log: who read the store and which legal holds were ordered and released, one
//! hash-chained JSON line each, in `operator.log` (the byte-level reference is
//! `docs/store-format.md`).
//!
//! Commands run by operators append here, never to the manifest: the manifest belongs to the
//! one writer holding `.lock` (the agent's sealer thread), and a query must neither wait for
//! the agent nor stop it. Appenders serialise on a short `flock` of the log itself; the writer
//! never takes that lock, it reads the complete lines and anchors them into the manifest
//! (`anchor` entries: how many lines and bytes, and the last line's hash), after each seal and
//! before each retention pass. So anchored lines cannot be edited, deleted, reordered or cut
//! off unnoticed by `verify`; lines written since the last anchor (at most an hour while the
//! agent runs) are protected by their own chain only, which cannot show their removal from
//! the end.
//!
//! The agent's alerts (`crate::alert`) are lines of the same form in a second log,
//! `alerts.jsonl` ([`Log::Alerts`]), appended by the agent's alert thread and anchored by the
//! sealer beside the operator log: one chain format, two files.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::fsutil::{hex, open_read};
use super::manifest::{AnchorInfo, Body, Entry, Manifest, ManifestError, GENESIS};

mod append;
pub use append::{
    append, append_all_to, append_checked, append_to, try_lock_operator_log, LogLock,
};

/// File name of the log inside the log directory.
pub const LOG: &str = "operator.log";
/// File name of the alert log inside the log directory.
pub const ALERTS: &str = "alerts.jsonl";
/// Mode of a new log: operators who may read the store (its group) must be able to append.
pub const LOG_MODE: u32 = 0o660;
/// Longest line accepted: a reason or filter is text for people, not a payload.
pub const MAX_LINE: usize = 16 * 1024;
const DOMAIN: &[u8] = b"xdp-audit operator log v1\n";
/// The most bytes of a log read at once: millions of entries of a few hundred bytes. A log
/// going on past it is damage (a file grown sparse, overwritten), and read whole it would take
/// the host's memory (a sparse terabyte had the agent killed by the OOM killer).
pub const LOG_MAX: u64 = 1 << 30;

/// Errors of the operator log; each names the file and, where it applies, the line.
#[derive(Debug, thiserror::Error)]
pub enum OpLogError {
    /// An I/O operation failed.
    #[error("{path}: {op}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// A line breaks the log's chain or rules.
    #[error("{path} line {line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The entry to append is refused (too long, or against the log's state).
    #[error("{path}: {reason}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The hash-chained logs of the store directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    /// `operator.log`: accesses, legal holds and releases.
    Operator,
    /// `alerts.jsonl`: the agent's alerts.
    Alerts,
}

impl Log {
    /// Both logs, in the order the sealer anchors them.
    pub const ALL: [Log; 2] = [Log::Operator, Log::Alerts];

    /// The file name inside the log directory.
    pub const fn file(self) -> &'static str {
        match self {
            Log::Operator => LOG,
            Log::Alerts => ALERTS,
        }
    }

    /// The mode of a new log: the operator log is appended by the store's group, the alert
    /// log by the agent alone (the store's 0640).
    pub const fn mode(self) -> u32 {
        match self {
            Log::Operator => LOG_MODE,
            Log::Alerts => super::fsutil::FILE_MODE,
        }
    }

    /// Whether a line of this body belongs in this log.
    fn holds(self, body: &OpBody) -> bool {
        matches!(body, OpBody::Alert(_)) == (self == Log::Alerts)
    }
}

/// Who ran the command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    /// Real user id of the process.
    pub uid: u32,
    /// Its user name (`getpwuid`), if the account database knows it.
    pub user: Option<String>,
    /// `SUDO_USER` as the environment said (set by sudo; informative, the caller can set it).
    pub sudo_user: Option<String>,
    /// The session's login user id (`/proc/self/loginuid`, kept by the kernel across `su`
    /// and `sudo`), if the session has one.
    pub login_uid: Option<u32>,
}

/// A read of the store's records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessInfo {
    /// The command (`query`, `export`, `hold list`, ...).
    pub command: String,
    /// What it selected, as canonical text (`access::filter_text`).
    pub filter: String,
    /// Rows returned (none when the command failed before it knew).
    pub rows: Option<u64>,
    /// SHA-256 of the output file, hex (exports).
    pub sha256: Option<String>,
    /// The output file (exports).
    pub out: Option<String>,
    /// Why the command failed, if it did.
    pub error: Option<String>,
    /// Live journals that could not be read: their records are missing from an answer that
    /// is otherwise complete (absent when none was; lines written before it had no such
    /// field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable_journals: Option<u64>,
}

/// A legal hold: segments with records in `[since_ns, until_ns)` are kept past retention
/// until the hold is released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldInfo {
    /// Start of the held window, Unix ns.
    pub since_ns: i64,
    /// End of the held window (exclusive), Unix ns.
    pub until_ns: i64,
    /// Why (case number, order).
    pub reason: String,
}

/// The end of a legal hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// The hold's id: the number of its line.
    pub hold: u64,
    /// Why.
    pub reason: String,
}

/// What a line records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpBody {
    /// The store's records were read.
    Access(AccessInfo),
    /// A legal hold was ordered.
    Hold(HoldInfo),
    /// A legal hold was released.
    Release(ReleaseInfo),
    /// The agent raised or resolved an alert (only in [`ALERTS`]).
    Alert(crate::alert::Alert),
}

/// The content of a line: when, who, what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpEntry {
    /// When, Unix ns.
    pub at_ns: i64,
    /// Who.
    pub who: Who,
    /// What.
    #[serde(flatten)]
    pub body: OpBody,
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpLine {
    /// Its line number, from 1 (a hold's id).
    pub n: u64,
    /// The content.
    #[serde(flatten)]
    pub entry: OpEntry,
    /// Hash of the previous line ([`GENESIS`] for the first).
    pub prev: String,
    /// SHA-256 of `"xdp-audit operator log v1\n"` and the compact JSON `[n, entry, prev]`.
    pub hash: String,
}

/// The hash a line must carry.
pub fn line_hash(n: u64, entry: &OpEntry, prev: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(DOMAIN);
    // Serialising plain data to a Vec cannot fail; an empty input would still differ.
    h.update(serde_json::to_vec(&(n, entry, prev)).unwrap_or_default());
    hex(&h.finalize())
}

/// Where a chain of lines stands: the last line's number and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainEnd {
    /// Lines so far.
    pub lines: u64,
    /// Bytes so far.
    pub bytes: u64,
    /// Hash of the last line ([`GENESIS`] before the first).
    pub head: String,
}

impl ChainEnd {
    /// The empty log.
    pub fn start() -> Self {
        Self {
            lines: 0,
            bytes: 0,
            head: GENESIS.to_owned(),
        }
    }
}

/// The result of reading (part of) the log: the lines that hold, up to the first that does
/// not.
#[derive(Clone, Debug)]
pub struct Scan {
    /// Valid lines in file order.
    pub lines: Vec<OpLine>,
    /// Where the valid lines end.
    pub end: ChainEnd,
    /// Byte offset after each valid line (parallel to `lines`).
    pub ends: Vec<u64>,
    /// The first line that breaks the chain or the rules, and why.
    pub problem: Option<(u64, String)>,
    /// Bytes after the last newline: a line an appender was writing, or left torn by a crash.
    pub incomplete: u64,
}

/// Checks lines one by one, continuing a chain.
struct Checker {
    end: ChainEnd,
    log: Log,
    /// Holds seen, and whether released; `None` when checking a tail without its start
    /// (the writer's anchoring), which checks the chain only.
    holds: Option<std::collections::BTreeMap<u64, bool>>,
}

impl Checker {
    fn check(&mut self, text: &[u8]) -> Result<OpLine, String> {
        let n = self.end.lines + 1;
        let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_owned())?;
        let line: OpLine =
            serde_json::from_str(text).map_err(|e| format!("not a log line: {e}"))?;
        if line.n != n {
            return Err(format!(
                "numbered {}, expected {n} (lines deleted, inserted or reordered)",
                line.n
            ));
        }
        if line.prev != self.end.head {
            return Err(format!(
                "prev does not match the hash of line {} (a line was changed, removed, inserted or reordered)",
                n - 1
            ));
        }
        if line_hash(line.n, &line.entry, &line.prev) != line.hash {
            return Err("hash does not match its content (line changed)".into());
        }
        if !self.log.holds(&line.entry.body) {
            return Err(format!("a line of another log than {}", self.log.file()));
        }
        // A field added or reformatted leaves the hash intact; the exact bytes must be ours.
        if serde_json::to_string(&line).ok().as_deref() != Some(text) {
            return Err("not in the form the agent writes (line edited)".into());
        }
        if let Some(holds) = &mut self.holds {
            check_rules(&line, holds)?;
        }
        Ok(line)
    }
}

/// A hold's window must be non-empty and have a reason; a release must name a hold in force.
fn check_rules(
    line: &OpLine,
    holds: &mut std::collections::BTreeMap<u64, bool>,
) -> Result<(), String> {
    match &line.entry.body {
        OpBody::Access(_) | OpBody::Alert(_) => Ok(()),
        OpBody::Hold(h) => {
            if h.since_ns >= h.until_ns || h.reason.trim().is_empty() {
                return Err("hold with an empty window or no reason".into());
            }
            holds.insert(line.n, false);
            Ok(())
        }
        OpBody::Release(r) => {
            if r.reason.trim().is_empty() {
                return Err(format!("release of hold {} without a reason", r.hold));
            }
            match holds.get_mut(&r.hold) {
                None => Err(format!(
                    "release of hold {}, which no earlier line ordered",
                    r.hold
                )),
                Some(true) => Err(format!("hold {} released twice", r.hold)),
                Some(released) => {
                    *released = true;
                    Ok(())
                }
            }
        }
    }
}

/// Checks `bytes` (the operator log from `from.bytes` on) as the continuation of the chain
/// at `from`; with `rules`, also the holds' rules (only meaningful from the log's start).
pub fn check_bytes(bytes: &[u8], from: ChainEnd, rules: bool) -> Scan {
    check_log_bytes(Log::Operator, bytes, from, rules)
}

/// [`check_bytes`] for either log.
pub fn check_log_bytes(log: Log, bytes: &[u8], from: ChainEnd, rules: bool) -> Scan {
    let mut c = Checker {
        end: from,
        log,
        holds: rules.then(Default::default),
    };
    let mut lines = Vec::new();
    let mut ends = Vec::new();
    let mut problem = None;
    let mut at = 0;
    while let Some(len) = bytes[at..].iter().position(|&b| b == b'\n') {
        match c.check(&bytes[at..at + len]) {
            Ok(line) => {
                at += len + 1;
                c.end.lines = line.n;
                c.end.bytes += len as u64 + 1;
                c.end.head = line.hash.clone();
                ends.push(c.end.bytes);
                lines.push(line);
            }
            Err(reason) => {
                problem = Some((c.end.lines + 1, reason));
                break;
            }
        }
    }
    let rest = (bytes.len() - at) as u64;
    if problem.is_none() && rest > TORN_MAX {
        problem = Some((c.end.lines + 1, torn_too_long(rest)));
    }
    let incomplete = if problem.is_none() { rest } else { 0 };
    Scan {
        lines,
        end: c.end,
        ends,
        problem,
        incomplete,
    }
}

/// Reads `f` from where it stands, up to [`LOG_MAX`] bytes; `true` with them when it goes on.
/// Stops early past a run longer than any line without a newline: the scan stops there anyway
/// (a sparse terabyte is read for a MiB, not a GiB).
fn read_log(mut f: impl Read) -> std::io::Result<(Vec<u8>, bool)> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0; 1 << 20];
    let mut line_start = 0;
    loop {
        let n = match f.read(&mut chunk) {
            Ok(0) => return Ok((bytes, false)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            line_start = bytes.len() + i + 1;
        }
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() - line_start > MAX_LINE {
            return Ok((bytes, false));
        }
        if bytes.len() as u64 > LOG_MAX {
            bytes.truncate(LOG_MAX as usize);
            return Ok((bytes, true));
        }
    }
}

impl Scan {
    /// This scan of bytes [`read_log`] cut: a log going on past them is damage at the line
    /// after the last valid one, unless an earlier line already is.
    fn cut(mut self, cut: bool) -> Self {
        if cut && self.problem.is_none() {
            let reason = format!(
                "the log goes on past {} GiB, more than a log of the store holds: damage (a \
                 file grown sparse or overwritten), not read further",
                LOG_MAX >> 30
            );
            self.problem = Some((self.end.lines + 1, reason));
            self.incomplete = 0;
        }
        self
    }
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> OpLogError + 'a {
    move |cause| OpLogError::Io {
        path: path.to_owned(),
        op,
        cause,
    }
}

/// Reads and checks the whole operator log of `dir` (an empty scan if there is none).
pub fn scan(dir: &Path) -> Result<Scan, OpLogError> {
    scan_log(dir, Log::Operator)
}

/// Reads and checks the whole `log` of `dir` (an empty scan if there is none).
pub fn scan_log(dir: &Path, log: Log) -> Result<Scan, OpLogError> {
    let path = dir.join(log.file());
    // Never a blocking open: a FIFO in the log's place would hold it forever.
    match open_read(&path)
        .map_err(std::io::Error::from)
        .and_then(read_log)
    {
        Ok((bytes, cut)) => Ok(check_log_bytes(log, &bytes, ChainEnd::start(), true).cut(cut)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(check_log_bytes(log, &[], ChainEnd::start(), true))
        }
        Err(e) => Err(io(&path, "read")(e)),
    }
}

/// The most bytes an append interrupted by a crash can leave after the last newline: one line
/// without its newline. More is damage (lines zeroed or overwritten), never cut away.
const TORN_MAX: u64 = MAX_LINE as u64;

/// Why a tail of `bytes` without a newline is not a torn append.
fn torn_too_long(bytes: u64) -> String {
    format!(
        "the last {bytes} bytes or more hold no newline, more than one line may ({MAX_LINE}): \
         not an append cut short by a crash but damage (lines zeroed or overwritten)"
    )
}

/// The last anchor of the operator log in `entries`, or the start of the chain.
pub fn anchored(entries: &[Entry]) -> ChainEnd {
    anchored_log(entries, Log::Operator)
}

/// The last anchor of `log` in `entries`, or the start of the chain.
pub fn anchored_log(entries: &[Entry], log: Log) -> ChainEnd {
    entries
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            Body::Anchor(a) if a.log == log.file() => Some(ChainEnd {
                lines: a.lines,
                bytes: a.bytes,
                head: a.head.clone(),
            }),
            _ => None,
        })
        .unwrap_or_else(ChainEnd::start)
}

/// What anchoring found.
#[derive(Debug, Default)]
pub struct Anchored {
    /// Lines newly anchored.
    pub new_lines: u64,
    /// The first line past the last anchor that breaks the chain: it and what follows stay
    /// unanchored, and `verify` reports it.
    pub problem: Option<OpLogError>,
}

/// The writer's step: reads the operator log past the last anchor, without locking it, and
/// appends an `anchor` entry when complete lines were added that continue the chain. A line
/// that does not is reported in [`Anchored::problem`]; the lines before it are anchored all
/// the same.
pub fn anchor(dir: &Path, manifest: &mut Manifest, now_ns: i64) -> Result<Anchored, ManifestError> {
    anchor_log(dir, Log::Operator, manifest, now_ns)
}

/// [`anchor`] for either log.
pub fn anchor_log(
    dir: &Path,
    log: Log,
    manifest: &mut Manifest,
    now_ns: i64,
) -> Result<Anchored, ManifestError> {
    let path = dir.join(log.file());
    let last = anchored_log(manifest.entries(), log);
    let problem = |line: u64, reason: String| Anchored {
        new_lines: 0,
        problem: Some(OpLogError::Line {
            path: path.clone(),
            line,
            reason,
        }),
    };
    // Never a blocking open: a FIFO in the log's place would stop the sealer thread.
    let mut f = match open_read(&path).map_err(std::io::Error::from) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && last.lines == 0 => {
            return Ok(Anchored::default())
        }
        Err(e) => {
            return Ok(Anchored {
                new_lines: 0,
                problem: Some(io(&path, "read")(e)),
            })
        }
    };
    let read = (|| {
        let len = f.metadata()?.len();
        if len < last.bytes {
            return Ok(None);
        }
        // The appender fsyncs after its write, so a line read through the page cache may not
        // be on disk yet; the anchor must not outlive it at a power cut. Everything up to
        // `len` was written before this fsync, so only that much is read.
        f.sync_data()?;
        f.seek(SeekFrom::Start(last.bytes))?;
        read_log((&mut f).take(len - last.bytes)).map(Some)
    })();
    let (bytes, cut) = match read {
        Ok(Some(read)) => read,
        Ok(None) => {
            return Ok(problem(
                last.lines,
                format!(
                    "shorter than the {} bytes anchored (lines cut off)",
                    last.bytes
                ),
            ))
        }
        Err(e) => {
            return Ok(Anchored {
                new_lines: 0,
                problem: Some(io(&path, "read")(e)),
            })
        }
    };
    let s = check_log_bytes(log, &bytes, last.clone(), false).cut(cut);
    let out = Anchored {
        new_lines: s.end.lines - last.lines,
        problem: s.problem.map(|(line, reason)| OpLogError::Line {
            path: path.clone(),
            line,
            reason,
        }),
    };
    if out.new_lines > 0 {
        manifest.append(Body::Anchor(AnchorInfo {
            at_ns: now_ns,
            log: log.file().to_owned(),
            lines: s.end.lines,
            bytes: s.end.bytes,
            head: s.end.head,
        }))?;
    }
    Ok(out)
}

/// [`anchor_log`] of both logs for the sealer thread: problems are logged, never fatal
/// (records come first).
pub fn anchor_logged(dir: &Path, manifest: &mut Manifest, now_ns: i64) {
    if manifest.unreadable().is_some() {
        return; // said at the start; nothing is appended to it
    }
    for log in Log::ALL {
        match anchor_log(dir, log, manifest, now_ns) {
            Ok(a) => match a.problem {
                None => {}
                Some(p @ OpLogError::Io { .. }) => {
                    tracing::error!(log = log.file(), error = %p, "cannot read the log to anchor it; journals are still sealed, and its lines stay unanchored until it can be read (run `xdp-audit verify`)");
                }
                Some(p) => {
                    tracing::error!(log = log.file(), error = %p, "log past the last anchor does not verify; the lines before the fault are anchored, the rest is not (run `xdp-audit verify`)");
                }
            },
            Err(e) => {
                tracing::warn!(log = log.file(), error = %e, "cannot anchor the log; retrying after the next seal")
            }
        }
    }
}

#[cfg(test)]
mod tests;
