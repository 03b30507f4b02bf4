//! The manifest: a hash chain over every sealed segment, every retention deletion and every
//! compaction, anchors of the operator log (`oplog`: accesses and legal holds), and its
//! (optionally ed25519-signed) head.
//!
//! The live segments are those the entries added (`segment`, and a `compact`'s `segment`)
//! and did not take away again (a `prune`'s or a `compact`'s `files`), in chain order.
//!
//! `manifest.jsonl` holds one JSON object per line. Each entry carries `seq` (0, 1, 2, ...),
//! `kind` (`segment`, `prune`, `compact` or `anchor`), the fields of its kind, `prev` (the previous entry's `hash`,
//! 64 zeros for the first) and `hash` = SHA-256 of `"xdp-audit chain v1\n"` followed by the
//! compact JSON array `[seq, body, prev]`, where `body` is the entry without `seq`, `prev`
//! and `hash` (fields in the documented order). The last line, `{"head": {...}}`, names the
//! last entry's `seq` and `hash` (it lives in the same file so that one atomic rename updates
//! chain and head together: a crash can never leave them disagreeing)
//! and `hash`, and with a signing key carries an ed25519 signature over
//! `"xdp-audit chain head v1\n{seq}\n{hash}\n"`, so a rewritten or shortened chain is caught.
//!
//! The writer signs only what it can vouch for. With a signing key, [`Manifest::load`] checks
//! the head it finds ([`check_signer`], with [`check_signature`], the check `verify
//! --public-key` makes): a head that carries a signature or names a key must be validly signed
//! by that key. A badly signed head, one signed by another key, or one naming the key without
//! a signature marks the chain broken ([`Manifest::broken`]: retention and the deletion of
//! files the chain removed are suspended), and the heads written on top of it name the key but
//! carry no signature, so a restart does not launder it and `verify --public-key` keeps
//! failing. A head naming no key and carrying no signature is a store never signed (or last
//! written without a key): the first signed head after such ones is taken as legitimate, and
//! raised at the start as an `XA-CHAIN-BROKEN` alert naming the entry the signature vouches
//! from ([`Manifest::signing_began_on`]). The store alone cannot tell such a head from a signed
//! one stripped of both fields: that alert, in `alerts.jsonl`, which the next signed head
//! vouches for through its anchor, is the evidence.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::fsutil::{
    hex, read_input, read_input_text, unhex, utf8_text, write_atomic, InputError, KEY_MAX,
    TABLE_MAX,
};

/// File name of the chain.
pub const MANIFEST: &str = "manifest.jsonl";
/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// First token of a secret key file.
pub const SECRET_KEY_TAG: &str = "xdp-audit-ed25519-secret-v1";
/// First token of a public key file.
pub const PUBLIC_KEY_TAG: &str = "xdp-audit-ed25519-public-v1";

/// Errors of the manifest and key files; each names the file and, where it applies, the line.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
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
    /// A line of the manifest or head does not parse.
    #[error("{path} line {line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The manifest is gone but the segments it listed are there: it was deleted, and read
    /// as no manifest the store would answer as empty.
    #[error("{path}: missing, but the directory holds sealed segments (the manifest was deleted); `xdp-audit verify` checks the whole chain")]
    Lost {
        /// The manifest's path.
        path: PathBuf,
    },
    /// A key file is malformed.
    #[error("key file {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The manifest could not be read at the start ([`Manifest::frozen`]): nothing is
    /// appended to it until it is restored.
    #[error("{path}: not written while it cannot be read ({reason}); restore it from a copy")]
    Frozen {
        /// The manifest's path.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
}

impl ManifestError {
    /// Whether the disk was full ([`crate::store::fsutil::is_disk_full`]).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Io { cause, .. } => crate::store::fsutil::is_disk_full(cause),
            Self::Parse { .. } | Self::Lost { .. } | Self::Key { .. } | Self::Frozen { .. } => {
                false
            }
        }
    }
}

/// A sealed segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// File name inside the log directory.
    pub file: String,
    /// Id of the journal it was sealed from (detects a journal sealed twice after a crash).
    pub journal_id: u64,
    /// Smallest `time_start` in the segment, Unix ns.
    pub time_min_ns: i64,
    /// Largest `time_end` in the segment, Unix ns.
    pub time_max_ns: i64,
    /// Rows in the segment.
    pub rows: u64,
    /// File size in bytes.
    pub size: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// SHA-256 of the file's Parquet footer and trailer, hex (`segment::footer_sha256`):
    /// checked at every open, since a query skips row groups by the footer's statistics and
    /// no page checksum covers them. `None` in entries written before it (their line, and
    /// so their hash, unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer_sha256: Option<String>,
}

/// A segment taken out of the live set (deleted by retention, or merged by compaction).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedFile {
    /// File name.
    pub file: String,
    /// Its SHA-256 as recorded when it was sealed.
    pub sha256: String,
}

/// A retention run that deleted segments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneInfo {
    /// When the deletion was decided, Unix ns.
    pub at_ns: i64,
    /// The retention in force, days.
    pub retention_days: u32,
    /// Segments whose newest record was older than the retention.
    pub files: Vec<RemovedFile>,
}

/// Segments of a closed day merged into one, so a query opens one file where it opened
/// one per hour. The rows are the same; `verify` checks the counts and time range add up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactInfo {
    /// When the merge was done, Unix ns.
    pub at_ns: i64,
    /// The merged segments, in chain order; they leave the live set.
    pub files: Vec<RemovedFile>,
    /// The segment holding all their rows; it joins the live set.
    pub segment: SegmentInfo,
}

/// The writer's record of how far the operator log (`oplog`) reached: its first `lines`
/// lines, `bytes` bytes, end with the line whose hash is `head`. Editing, deleting, reordering
/// or truncating anchored lines is caught by `verify`, and a `prune` is checked against the
/// legal holds its retention pass saw (those of the last anchor before it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorInfo {
    /// When the writer read the log, Unix ns.
    pub at_ns: i64,
    /// The log's file name inside the log directory.
    pub log: String,
    /// Complete lines anchored.
    pub lines: u64,
    /// Bytes anchored (the end of line `lines`).
    pub bytes: u64,
    /// `hash` of the last anchored line.
    pub head: String,
}

/// What an entry records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// A segment was sealed.
    Segment(SegmentInfo),
    /// Segments were deleted by retention.
    Prune(PruneInfo),
    /// Segments were merged into one.
    Compact(CompactInfo),
    /// The operator log was anchored.
    Anchor(AnchorInfo),
}

impl Body {
    /// The segment this entry adds to the live set.
    pub fn added(&self) -> Option<&SegmentInfo> {
        match self {
            Body::Segment(s) => Some(s),
            Body::Compact(c) => Some(&c.segment),
            Body::Prune(_) | Body::Anchor(_) => None,
        }
    }

    /// The segments this entry takes out of the live set.
    pub fn removed(&self) -> &[RemovedFile] {
        match self {
            Body::Segment(_) | Body::Anchor(_) => &[],
            Body::Prune(p) => &p.files,
            Body::Compact(c) => &c.files,
        }
    }
}

/// Names of the segments the chain took out of the live set (pruned or compacted).
pub fn removed_files(entries: &[Entry]) -> std::collections::HashSet<&str> {
    entries
        .iter()
        .flat_map(|e| e.body.removed())
        .map(|f| f.file.as_str())
        .collect()
}

/// The live segments, in chain order.
pub fn live_segments(entries: &[Entry]) -> Vec<&SegmentInfo> {
    let removed = removed_files(entries);
    entries
        .iter()
        .filter_map(|e| e.body.added())
        .filter(|s| !removed.contains(s.file.as_str()))
        .collect()
}

/// One link of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EntryLine")]
pub struct Entry {
    /// Position in the chain, from 0.
    pub seq: u64,
    /// What the entry records.
    #[serde(flatten)]
    pub body: Body,
    /// Hash of the previous entry ([`GENESIS`] for the first).
    pub prev: String,
    /// Hash of this entry, see the module docs.
    pub hash: String,
}

/// An entry as its line spells it: every kind's fields side by side, read in one pass. The
/// derived reader of `Entry` (a flattened, internally tagged body) buffered each line's
/// fields twice before building it, and every query reads the whole manifest (thousands of
/// lines after 90 days of hourly seals and daily merges). Unknown fields are ignored, as the
/// derived reader did.
#[derive(Deserialize)]
struct EntryLine {
    seq: u64,
    kind: Kind,
    prev: String,
    hash: String,
    file: Option<String>,
    journal_id: Option<u64>,
    time_min_ns: Option<i64>,
    time_max_ns: Option<i64>,
    rows: Option<u64>,
    size: Option<u64>,
    sha256: Option<String>,
    footer_sha256: Option<String>,
    at_ns: Option<i64>,
    retention_days: Option<u32>,
    files: Option<Vec<RemovedFile>>,
    segment: Option<SegmentInfo>,
    log: Option<String>,
    lines: Option<u64>,
    bytes: Option<u64>,
    head: Option<String>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Segment,
    Prune,
    Compact,
    Anchor,
}

impl TryFrom<EntryLine> for Entry {
    type Error = String;

    fn try_from(l: EntryLine) -> Result<Self, String> {
        let kind = match l.kind {
            Kind::Segment => "segment",
            Kind::Prune => "prune",
            Kind::Compact => "compact",
            Kind::Anchor => "anchor",
        };
        let need = |field: &str| format!("missing field `{field}` (a {kind} entry)");
        let body = match l.kind {
            Kind::Segment => Body::Segment(SegmentInfo {
                file: l.file.ok_or_else(|| need("file"))?,
                journal_id: l.journal_id.ok_or_else(|| need("journal_id"))?,
                time_min_ns: l.time_min_ns.ok_or_else(|| need("time_min_ns"))?,
                time_max_ns: l.time_max_ns.ok_or_else(|| need("time_max_ns"))?,
                rows: l.rows.ok_or_else(|| need("rows"))?,
                size: l.size.ok_or_else(|| need("size"))?,
                sha256: l.sha256.ok_or_else(|| need("sha256"))?,
                footer_sha256: l.footer_sha256,
            }),
            Kind::Prune => Body::Prune(PruneInfo {
                at_ns: l.at_ns.ok_or_else(|| need("at_ns"))?,
                retention_days: l.retention_days.ok_or_else(|| need("retention_days"))?,
                files: l.files.ok_or_else(|| need("files"))?,
            }),
            Kind::Compact => Body::Compact(CompactInfo {
                at_ns: l.at_ns.ok_or_else(|| need("at_ns"))?,
                files: l.files.ok_or_else(|| need("files"))?,
                segment: l.segment.ok_or_else(|| need("segment"))?,
            }),
            Kind::Anchor => Body::Anchor(AnchorInfo {
                at_ns: l.at_ns.ok_or_else(|| need("at_ns"))?,
                log: l.log.ok_or_else(|| need("log"))?,
                lines: l.lines.ok_or_else(|| need("lines"))?,
                bytes: l.bytes.ok_or_else(|| need("bytes"))?,
                head: l.head.ok_or_else(|| need("head"))?,
            }),
        };
        let named = body.added().map(|s| s.file.as_str());
        let removed = body.removed().iter().map(|f| f.file.as_str());
        if let Some(bad) = named
            .into_iter()
            .chain(removed)
            .find(|f| !is_segment_file(f))
        {
            return Err(format!(
                "entry {} names the file {bad:?}, which is no segment of the store (a segment \
                 is seg-*.parquet inside the log directory, no '/' or '..'): the manifest was \
                 changed; nothing it names is deleted; run `xdp-audit verify`",
                l.seq
            ));
        }
        Ok(Entry {
            seq: l.seq,
            body,
            prev: l.prev,
            hash: l.hash,
        })
    }
}

/// Whether `name`, as an entry gives it, can be a segment of the store: a segment's name
/// (`seg-*.parquet`) and a bare name inside the log directory (no `/`, no `..`, no NUL). The
/// chain has no key, so a forged entry could otherwise name any file for the writer to
/// delete (a prune) or move, or for readers to open. Checked when an entry is read, and
/// again by the writer before it deletes a file the chain removed.
pub fn is_segment_file(name: &str) -> bool {
    super::segment::is_segment_name(name) && !name.contains(['/', '\0']) && !name.contains("..")
}

/// The chain head, the last line of [`MANIFEST`] as `{"head": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// `seq` of the last entry.
    pub seq: u64,
    /// `hash` of the last entry.
    pub hash: String,
    /// Hex ed25519 public key of the signer, if signed.
    pub public_key: Option<String>,
    /// Hex ed25519 signature over [`head_message`], if signed.
    pub signature: Option<String>,
}

/// The hash an entry must carry.
pub fn entry_hash(seq: u64, body: &Body, prev: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"xdp-audit chain v1\n");
    // Serialising plain data to a Vec cannot fail; an empty input would still differ.
    h.update(serde_json::to_vec(&(seq, body, prev)).unwrap_or_default());
    hex(&h.finalize())
}

/// The message signed for a head.
pub fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    format!("xdp-audit chain head v1\n{seq}\n{hash}\n").into_bytes()
}

#[derive(Serialize, Deserialize)]
struct HeadLine {
    head: Head,
}

/// The head line exactly as the writer puts it into [`MANIFEST`] (no newline): `verify`
/// holds a head line to it, since a field name or a hex digit's case changed would read as
/// the same head.
pub fn head_line(head: &Head) -> String {
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_string(&HeadLine { head: head.clone() }).unwrap_or_default()
}

/// Parses `manifest.jsonl` text into entries and the head line (no chain check: that is
/// [`crate::store::verify`]). A head line anywhere but last is an error.
pub fn parse_with_head(
    path: &Path,
    text: &str,
) -> Result<(Vec<Entry>, Option<Head>), ManifestError> {
    let mut entries = Vec::new();
    let mut head = None;
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let err = |reason: String| ManifestError::Parse {
            path: path.to_owned(),
            line: i + 1,
            reason,
        };
        if head.is_some() {
            return Err(err(
                "a line follows the head line (the head must be last)".into()
            ));
        }
        if l.starts_with("{\"head\"") {
            let h: HeadLine = serde_json::from_str(l).map_err(|e| err(e.to_string()))?;
            head = Some(h.head);
        } else {
            entries.push(serde_json::from_str(l).map_err(|e| err(e.to_string()))?);
        }
    }
    Ok((entries, head))
}

/// The entries of the manifest in `dir` (none if there is no manifest yet), without taking
/// the writer's role: what readers such as `query` use.
pub fn read_entries(dir: &Path) -> Result<Vec<Entry>, ManifestError> {
    Ok(read_chain(dir)?.0)
}

/// Reads `manifest.jsonl` at `path` whole ([`read_input`]): a FIFO, device or directory in
/// its place is refused at once, naming what it is (a FIFO with no writer would block the
/// read forever), and so is a file past [`MANIFEST_MAX`].
pub fn read_manifest_file(path: &Path) -> Result<Vec<u8>, InputError> {
    read_input(path, MANIFEST_MAX)
}

/// The most bytes of `manifest.jsonl` read. The chain grows by a few hundred bytes an entry
/// and is never cut (some 50 MB after ten years of hourly seals, daily merges and prunes):
/// the cap of the operator's largest tables leaves room for a century and more, and still
/// refuses an endless file before it takes the host's memory.
pub const MANIFEST_MAX: u64 = TABLE_MAX;

/// The entries and the head line of the manifest in `dir` ([`read_entries`]); no head for
/// no manifest.
fn read_chain(dir: &Path) -> Result<(Vec<Entry>, Option<Head>), ManifestError> {
    read_chain_bytes(dir).map(|(_, entries, head)| (entries, head))
}

/// A manifest's bytes, its entries and its head line ([`read_chain_bytes`]).
pub type ChainBytes = (Vec<u8>, Vec<Entry>, Option<Head>);

/// The manifest's bytes with its entries and head, read and checked as the writer reads them
/// at its start: empty (no bytes) if there is none and no segment either; a manifest deleted
/// while segments remain, cut short or emptied is an error, never an empty chain (a reader
/// taking it for one, the shipper, would forget what it shipped).
pub fn read_chain_bytes(dir: &Path) -> Result<ChainBytes, ManifestError> {
    let path = dir.join(MANIFEST);
    match read_manifest_file(&path) {
        Ok(bytes) => {
            let text = utf8_text(bytes).map_err(|e| ManifestError::Parse {
                path: path.clone(),
                line: e.line,
                reason: format!(
                    "byte offset {} is not UTF-8; `xdp-audit verify` checks the whole chain",
                    e.offset
                ),
            })?;
            let (entries, head) = parse_with_head(&path, &text)?;
            check_head(&path, &text, &entries, head.as_ref())?;
            Ok((text.into_bytes(), entries, head))
        }
        Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            if super::verify::segments_without_manifest(dir) {
                return Err(ManifestError::Lost { path });
            }
            Ok((Vec::new(), Vec::new(), None))
        }
        Err(refused) => Err(ManifestError::Io {
            path,
            op: "read",
            cause: refused.into(),
        }),
    }
}

/// Refuses a manifest whose head line is missing or names another entry than the last. The
/// writer replaces the file whole, head line last ([`Manifest::append`]), so either is damage
/// (a file cut short at a line's end, emptied, or lines taken away): read as it is, it would
/// answer from fewer segments without a word. Hashes and signature are `verify`'s to check.
fn check_head(
    path: &Path,
    text: &str,
    entries: &[Entry],
    head: Option<&Head>,
) -> Result<(), ManifestError> {
    let damaged = |reason: String| ManifestError::Parse {
        path: path.to_owned(),
        line: text.lines().count().max(1),
        reason: format!("{reason}; `xdp-audit verify` checks the whole chain"),
    };
    match (head, entries.last()) {
        (None, _) => Err(damaged(
            "no head line (the manifest is always written whole, its head line last): the \
             file was cut short, emptied or replaced"
                .into(),
        )),
        (Some(h), Some(last)) if h.seq == last.seq && h.hash == last.hash => Ok(()),
        (Some(h), Some(last)) if h.seq == last.seq => Err(damaged(format!(
            "the head line's hash is not that of the last entry ({}): the head line or the \
             entry was changed",
            h.seq
        ))),
        (Some(h), last) => Err(damaged(format!(
            "the head line names entry {} but the last entry is {}: entries were taken away \
             or added",
            h.seq,
            last.map_or_else(|| "none".to_owned(), |e| e.seq.to_string())
        ))),
    }
}

/// Refuses entries out of their place, for readers that answer from them (`query`,
/// `export`, `sql`): a seq that is not its position, or a `prev` that is not the hash of the
/// entry before it. An entry deleted, repeated or moved would answer with rows missing or
/// counted twice. Hashes of the entries' contents are `verify`'s to check; the writer reads
/// such a chain as broken ([`check_link`]) and goes on.
pub fn check_order(dir: &Path, entries: &[Entry]) -> Result<(), ManifestError> {
    let mut prev = GENESIS;
    for (i, e) in entries.iter().enumerate() {
        let why = if e.seq != i as u64 {
            format!("entry {i} has seq {}", e.seq)
        } else if e.prev != prev {
            format!("entry {i} does not name the hash of the entry before it")
        } else {
            prev = e.hash.as_str();
            continue;
        };
        return Err(ManifestError::Parse {
            path: dir.join(MANIFEST),
            line: i + 1,
            reason: format!(
                "{why}: entries were deleted, repeated or reordered; `xdp-audit verify` checks \
                 the whole chain"
            ),
        });
    }
    Ok(())
}

/// Checks one link of the chain: `e` sits at position `i`, names `prev` (the hash of the
/// entry before it, [`GENESIS`] for the first) and carries the hash of its own content. The
/// reason says what is wrong; the caller names the file and line. `verify` walks the chain
/// with it, and the writer before it acts on entries ([`Manifest::load`]).
pub fn check_link(i: usize, prev: &str, e: &Entry) -> Result<(), String> {
    if e.seq != i as u64 {
        return Err(format!(
            "seq is {}, expected {i} (entries deleted, inserted or reordered)",
            e.seq
        ));
    }
    if e.prev != prev {
        return Err(format!("prev does not match the hash of entry {} (chain broken: an entry was changed, removed, inserted or reordered)", i.wrapping_sub(1) as i64));
    }
    if entry_hash(e.seq, &e.body, &e.prev) != e.hash {
        return Err("hash does not match its content (entry changed)".into());
    }
    Ok(())
}

/// The live set as the chain builds it, entry by entry: each segment an entry removes
/// (pruned or merged away) must be live at that point, with the SHA-256 it was sealed with,
/// and each segment an entry adds must bear a segment's name ([`is_segment_file`]) never listed
/// before. `verify` walks the chain with it, and the writer before it deletes a file the
/// chain removed ([`check_chain`], [`removed_checked`]).
#[derive(Debug, Default)]
pub struct LiveSet<'a> {
    live: HashMap<&'a str, &'a SegmentInfo>,
    listed: HashSet<&'a str>,
}

impl<'a> LiveSet<'a> {
    /// Applies `e`: returns the segments it removes, as sealed, or what is wrong (the caller
    /// names the file and the entry).
    pub fn apply(&mut self, e: &'a Entry) -> Result<Vec<&'a SegmentInfo>, String> {
        let what = match e.body {
            Body::Compact(_) => "compaction",
            _ => "prune",
        };
        let mut removed = Vec::new();
        for f in e.body.removed() {
            if !is_segment_file(&f.file) {
                return Err(format!("{what} of {:?}: not a segment's name", f.file));
            }
            match self.live.remove(f.file.as_str()) {
                Some(s) if s.sha256 == f.sha256 => removed.push(s),
                Some(_) => {
                    return Err(format!(
                        "{what} of {} names another hash than its seal",
                        f.file
                    ))
                }
                None => return Err(format!("{what} of {} which is not a live segment", f.file)),
            }
        }
        if let Some(s) = e.body.added() {
            if !is_segment_file(&s.file) {
                return Err(format!("bad segment name {:?}", s.file));
            }
            if !self.listed.insert(&s.file) {
                return Err(format!("segment {} listed twice", s.file));
            }
            self.live.insert(&s.file, s);
        }
        Ok(removed)
    }

    /// Whether `file` is live after the entries applied so far.
    pub fn is_live(&self, file: &str) -> bool {
        self.live.contains_key(file)
    }

    /// Every segment the entries applied so far added, live or not.
    pub fn listed(&self) -> &HashSet<&'a str> {
        &self.listed
    }
}

/// The files the chain took out of the live set (pruned or merged away), each checked by
/// [`LiveSet`]: live, under that name and hash, when its entry removed it. The error names
/// the first entry that removes anything else, as `entry N (line N+1): reason`.
pub fn removed_checked(entries: &[Entry]) -> Result<Vec<&RemovedFile>, String> {
    let mut set = LiveSet::default();
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        set.apply(e)
            .map_err(|r| format!("entry {i} (line {}): {r}", i + 1))?;
        out.extend(e.body.removed());
    }
    Ok(out)
}

/// The first broken link of `entries` ([`check_link`]), or the first entry that removes a
/// segment that was not live or adds one twice ([`LiveSet`]), as `entry N (line N+1):
/// reason`.
pub fn check_chain(entries: &[Entry]) -> Result<(), String> {
    let mut prev = GENESIS;
    let mut set = LiveSet::default();
    for (i, e) in entries.iter().enumerate() {
        check_link(i, prev, e)
            .and_then(|()| set.apply(e).map(drop))
            .map_err(|r| format!("entry {i} (line {}): {r}", i + 1))?;
        prev = e.hash.as_str();
    }
    Ok(())
}

/// Parses `manifest.jsonl` text into its entries (see [`parse_with_head`]).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, ManifestError> {
    Ok(parse_with_head(path, text)?.0)
}

mod writer;
pub use writer::Manifest;

mod sign;
pub use sign::*;

#[cfg(test)]
mod tests;
