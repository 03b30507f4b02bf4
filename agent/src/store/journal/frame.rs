//! Framing: the journal header, one frame per record (`[length][CRC-32][payload]`), and the
//! one scanner every reader of a journal goes through (recovery at start, the seal, queries
//! over the live journal), so they agree on which records a journal holds.
//!
//! # Resynchronising after damage
//! A frame is valid when its length is in `1..=MAX_PAYLOAD`, the payload is all there, its
//! CRC-32 matches and it decodes as a record, consuming every byte. The scanner walks frame by
//! frame; at a frame that is not valid it tries every following offset, one byte at a time,
//! until one starts a valid frame, and reports the stretch in between as [`Skipped`]. A
//! stretch that runs to the end of the file is a torn tail (a write cut short by a crash, or
//! damage with nothing valid after it).
//!
//! Why no sync marker: a per-frame marker (a new journal format) would cost 4 or more bytes
//! per ~66-byte record on the record path, and finding a marker still leaves the CRC to decide
//! whether a frame is real, so it would not make resynchronisation more reliable, only faster,
//! and speed only matters on damage. Without one, a stretch of damaged bytes is mistaken for
//! a frame only where a 32-bit length falls in range (about one offset in a million for random
//! bytes; never in zeros, a length of 0 is refused), the CRC-32 of the bytes it announces
//! matches (2^-32) and those bytes decode as a record with valid flags, exact length, UTF-8
//! strings and a known end reason. A candidate offset is decoded before its CRC is computed
//! (the same test in a cheaper order): most false lengths announce bytes that fail to decode
//! within their first few. And journals written before resynchronisation existed
//! (magic `XDPAJNL1`) are the same format, so they recover the same way.

use std::fmt;

use super::codec::{decode_view, encode_record, shorten_to_fit, DecodeError, RecordView};
use crate::record::FlowRecord;

/// Magic bytes opening every journal.
pub const MAGIC: &[u8; 8] = b"XDPAJNL1";
/// Header length: magic and journal id.
pub const HEADER_LEN: u64 = 16;
/// Frame header length: payload length and CRC.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest payload accepted; a record is about 60 bytes, so a length near this is damage far
/// more often than a record (the writer shortens the texts of one that would pass it).
pub const MAX_PAYLOAD: usize = 4096;

/// The header of the journal with id `id`.
pub fn header(id: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&id.to_le_bytes());
    h
}

/// Appends one frame (`[len][crc][payload]`) holding `r` to `out`. A record whose payload
/// would pass [`MAX_PAYLOAD`] (a rule with a very long list path) is written with its longest
/// texts shortened ([`shorten_to_fit`]): every reader refuses a longer frame as damage, so
/// written whole it would be counted durable and then lost. Returns whether it was shortened.
pub fn encode_frame(r: &FlowRecord, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    encode_record(r, out);
    let shortened = out.len() - start - FRAME_HEADER_LEN > MAX_PAYLOAD;
    if shortened {
        out.truncate(start + FRAME_HEADER_LEN);
        encode_record(&shorten_to_fit(r, MAX_PAYLOAD), out);
    }
    let payload = &out[start + FRAME_HEADER_LEN..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    shortened
}

/// Why the bytes at an offset are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FrameError {
    HeaderCut(usize),
    Length(usize),
    PayloadCut { have: usize, len: usize },
    Checksum,
    Payload(DecodeError),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeaderCut(n) => write!(f, "frame header cut after {n} of 8 bytes"),
            Self::Length(len) => write!(f, "frame length {len} out of range"),
            Self::PayloadCut { have, len } => write!(f, "payload cut after {have} of {len} bytes"),
            Self::Checksum => f.write_str("checksum mismatch"),
            Self::Payload(e) => e.fmt(f),
        }
    }
}

/// The payload length announced at the start of `rest`, if a header is there and the length
/// is in range.
#[inline]
fn frame_len(rest: &[u8]) -> Result<usize, FrameError> {
    let Some(h) = rest.first_chunk::<4>() else {
        return Err(FrameError::HeaderCut(rest.len()));
    };
    let len = u32::from_le_bytes(*h) as usize;
    if len == 0 || len > MAX_PAYLOAD {
        return Err(FrameError::Length(len));
    }
    Ok(len)
}

#[cfg(test)]
thread_local! {
    /// Bytes the checks of frames hashed on this thread, so a test can tell how much the
    /// resynchronisation after damage costs without timing it.
    static HASHED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The CRC-32 of a payload, as a frame carries it.
#[inline]
fn checksum(payload: &[u8]) -> u32 {
    #[cfg(test)]
    HASHED.with(|h| h.set(h.get() + payload.len() as u64));
    crc32fast::hash(payload)
}

/// The record of the frame at the start of `rest`, and the frame's length.
#[inline]
fn frame_at(rest: &[u8]) -> Result<(RecordView<'_>, usize), FrameError> {
    if rest.len() < FRAME_HEADER_LEN {
        return Err(FrameError::HeaderCut(rest.len()));
    }
    let len = frame_len(rest)?;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let Some(payload) = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Err(FrameError::PayloadCut {
            have: rest.len() - FRAME_HEADER_LEN,
            len,
        });
    };
    if checksum(payload) != crc {
        return Err(FrameError::Checksum);
    }
    let rec = decode_view(payload).map_err(FrameError::Payload)?;
    Ok((rec, FRAME_HEADER_LEN + len))
}

/// A frame among [`frame_records`]' that is not valid, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame at byte {offset} of the batch: {reason}")]
pub struct BadFrame {
    /// Its offset in the bytes walked.
    pub offset: usize,
    reason: FrameError,
}

/// The records of `buf`, frames back to back as [`encode_frame`] appends them and without a
/// journal header: the frames a stage in front of the store gathers with
/// [`crate::sink::RecordSink::write_framed`]. Each frame is checked as the scan checks it; the
/// first that is not valid ends the walk with a [`BadFrame`] (no resynchronisation: such
/// bytes never left memory, so a bad frame is a bug, not damage).
pub fn frame_records(buf: &[u8]) -> impl Iterator<Item = Result<RecordView<'_>, BadFrame>> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = buf.get(at..).filter(|r| !r.is_empty())?;
        match frame_at(rest) {
            Ok((record, len)) => {
                at += len;
                Some(Ok(record))
            }
            Err(reason) => {
                let offset = at;
                at = buf.len();
                Some(Err(BadFrame { offset, reason }))
            }
        }
    })
}

/// A stretch of a journal that holds no valid frame, skipped by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// File offset of its first byte.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Frames it held, at least: exact when the damage spared their length fields (a bit
    /// flip in a payload), else a lower bound (one per stretch the length fields do not tile).
    pub frames: u64,
    /// What was wrong with the frame at `offset`.
    pub reason: String,
}

impl Skipped {
    /// The offset just past it.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Frames at least in a skipped stretch: the frames its length fields tile from its start,
/// plus one for whatever they do not reach.
fn frames_in(stretch: &[u8]) -> u64 {
    let mut pos = 0;
    let mut n = 0;
    while let Ok(len) = frame_len(&stretch[pos..]) {
        let next = pos + FRAME_HEADER_LEN + len;
        if next > stretch.len() {
            break;
        }
        n += 1;
        pos = next;
    }
    n + u64::from(pos < stretch.len())
}

/// Where a scan found valid frames and where it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frames {
    /// The journal id from the header (0 when the header was torn or its magic damaged:
    /// the journal's file name then says which it is).
    pub id: u64,
    /// Length of the bytes scanned (the file's length).
    pub len: u64,
    /// Every stretch without a valid frame, in file order; empty for an intact journal.
    pub skipped: Vec<Skipped>,
}

impl Frames {
    /// The skipped stretch that runs to the end of the file, if any: a write a crash cut
    /// short, or damage with no valid frame after it.
    pub fn torn_tail(&self) -> Option<&Skipped> {
        self.skipped
            .last()
            .filter(|s| s.end() == self.len && !self.is_damaged_header(s))
    }

    /// Whether `s` is a header whose magic is damaged, or one cut short: damage wherever it
    /// ends, since no write in progress touches the header (a journal is named only once
    /// its header is on disk).
    fn is_damaged_header(&self, s: &Skipped) -> bool {
        self.id == 0 && s.offset == 0
    }

    /// The skipped stretches with valid frames after them: damage, not a write in progress.
    pub fn damaged(&self) -> impl Iterator<Item = &Skipped> {
        let torn = self.torn_tail().map(|t| t.offset);
        self.skipped.iter().filter(move |s| Some(s.offset) != torn)
    }

    /// Bytes skipped in all.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped.iter().map(|s| s.len).sum()
    }

    /// Frames skipped in all (at least; see [`Skipped::frames`]).
    pub fn skipped_frames(&self) -> u64 {
        self.skipped.iter().map(|s| s.frames).sum()
    }
}

/// Where the records of a scan go: a journal is decoded straight into whatever the reader
/// needs (owned records for a query, column buffers for a seal, a count for recovery).
pub trait Decoded: Send + Sized {
    /// Whether a large journal is decoded in two halves on two threads: worth it when
    /// appending the second half to the first costs little next to decoding it.
    const SPLIT: bool = true;
    /// An empty collection with room for `records` records.
    fn with_capacity(records: usize) -> Self;
    /// Adds one record, in file order.
    fn push(&mut self, r: &RecordView<'_>);
    /// Adds `later`'s records after these (a journal decoded in two parts becomes one).
    fn append(&mut self, later: Self);
}

impl Decoded for Vec<FlowRecord> {
    /// Appending would copy every owned record of the second half (a query reading the
    /// live journal spent 25 % more CPU on it than on one sequential scan).
    const SPLIT: bool = false;

    fn with_capacity(records: usize) -> Self {
        Vec::with_capacity(records)
    }

    fn push(&mut self, r: &RecordView<'_>) {
        Vec::push(self, r.to_record());
    }

    fn append(&mut self, mut later: Self) {
        Vec::append(self, &mut later);
    }
}

/// Records counted, not kept (recovery needs only where the valid frames are).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count(pub u64);

impl Decoded for Count {
    fn with_capacity(_: usize) -> Self {
        Self(0)
    }

    fn push(&mut self, _: &RecordView<'_>) {
        self.0 += 1;
    }

    fn append(&mut self, later: Self) {
        self.0 += later.0;
    }
}

/// The earliest start and latest end of the records, none kept (what hours a journal
/// covers, without decoding it into records).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeSpan(pub Option<(i64, i64)>);

impl TimeSpan {
    fn widen(&mut self, (a, b): (i64, i64)) {
        self.0 = Some(self.0.map_or((a, b), |(lo, hi)| (lo.min(a), hi.max(b))));
    }
}

impl Decoded for TimeSpan {
    fn with_capacity(_: usize) -> Self {
        Self(None)
    }

    fn push(&mut self, r: &RecordView<'_>) {
        self.widen((r.time_start_ns, r.time_end_ns));
    }

    fn append(&mut self, later: Self) {
        if let Some(span) = later.0 {
            self.widen(span);
        }
    }
}

/// A journal scanned: where its valid frames are, and their records.
#[derive(Debug)]
pub struct Scan<D> {
    /// Where the valid frames are.
    pub frames: Frames,
    /// Every record of a valid frame, in file order.
    pub records: D,
}

/// Frame length used to size buffers before decoding: a little under the ~67 bytes measured
/// on the generated mix, so buffers are allocated once and rarely grow.
const TYPICAL_FRAME_LEN: usize = 56;

/// Journals smaller than this are decoded on one thread (a second one would not pay).
pub const PARALLEL_MIN_BYTES: usize = 4 << 20;

/// Reason given for a header whose magic is damaged.
pub const DAMAGED_HEADER: &str = "bad magic: the journal header is damaged";

/// Scans journal bytes: the header, then every valid frame, resynchronising after damage
/// (see the module docs). A large journal is decoded in two halves on two threads (decoding
/// is the longest step of a seal that runs on one core); the result is always the same as
/// one sequential scan's.
///
/// A header whose magic is damaged is skipped like a damaged frame, up to the first valid
/// frame (the id it holds is not trusted: [`Frames::id`] is 0, and the caller names the
/// journal by its file); before, such a journal was refused whole, and the agent would not
/// start over it.
pub fn scan<D: Decoded>(buf: &[u8]) -> Scan<D> {
    // Where the frames start, and the header's stretch when it is damaged (then the journal
    // is scanned on one thread: the halves' split walks frames from the header).
    let (id, start, lead) = match journal_id(buf) {
        Header::Id(id) => (id, HEADER_LEN as usize, None),
        Header::Damaged => {
            let header = HEADER_LEN as usize;
            let first = next_frame(buf, header, buf.len());
            let stretch = Skipped {
                offset: 0,
                len: first as u64,
                frames: frames_in(&buf[header..first]),
                reason: DAMAGED_HEADER.into(),
            };
            (0, first, Some(stretch))
        }
        Header::Short => {
            return Scan {
                frames: Frames {
                    id: 0,
                    len: buf.len() as u64,
                    skipped: (!buf.is_empty())
                        .then(|| Skipped {
                            offset: 0,
                            len: buf.len() as u64,
                            frames: 0,
                            reason: format!("header shorter than {HEADER_LEN} bytes"),
                        })
                        .into_iter()
                        .collect(),
                },
                records: D::with_capacity(0),
            }
        }
    };
    // An estimate to reserve, capped: a sparse or zero-filled journal's length says nothing
    // of its records, and a reservation sized from it (several times the file) aborted the
    // process (`verify`, `query`, the sealer) where growing as records come would not.
    let rows = (buf.len() / TYPICAL_FRAME_LEN).min(1 << 20);
    let sequential = || {
        let mut records = D::with_capacity(rows);
        let mut skipped: Vec<Skipped> = lead.clone().into_iter().collect();
        scan_range(buf, start, buf.len(), &mut records, &mut skipped);
        (records, skipped)
    };
    let (records, skipped) = match split_point(buf).filter(|_| D::SPLIT && lead.is_none()) {
        None => sequential(),
        Some(mid) => {
            let mut first = D::with_capacity(rows);
            let mut first_skipped = Vec::new();
            let second = std::thread::scope(|s| {
                let second = std::thread::Builder::new()
                    .name("xdp-audit-decode".into())
                    .spawn_scoped(s, || {
                        let mut records = D::with_capacity(rows / 2 + 1);
                        let mut skipped = Vec::new();
                        scan_range(buf, mid, buf.len(), &mut records, &mut skipped);
                        (records, skipped)
                    });
                scan_range(buf, start, mid, &mut first, &mut first_skipped);
                second.map(|h| h.join())
            });
            match second {
                // A clean first half ends exactly at `mid` on a checked frame boundary, so
                // the second half starts where one scan would be.
                Ok(Ok((later, skipped))) if first_skipped.is_empty() => {
                    first.append(later);
                    (first, skipped)
                }
                // Damage in the first half (resynchronisation may cross `mid`), no second
                // thread (the system refused one) or a panic in it: one scan decides.
                _ => sequential(),
            }
        }
    };
    Scan {
        frames: Frames {
            id,
            len: buf.len() as u64,
            skipped,
        },
        records,
    }
}

/// What a journal's first [`HEADER_LEN`] bytes hold.
enum Header {
    /// The magic and this id.
    Id(u64),
    /// Fewer bytes than a header: the file was cut (a journal is named only once its
    /// header is on disk; before 2026-12-06 a crash could cut a creation short).
    Short,
    /// A header whose magic is not the journal's.
    Damaged,
}

fn journal_id(buf: &[u8]) -> Header {
    let Some(h) = buf.first_chunk::<{ HEADER_LEN as usize }>() else {
        return Header::Short;
    };
    if &h[..8] != MAGIC {
        return Header::Damaged;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[8..]);
    Header::Id(u64::from_le_bytes(id))
}

/// Decodes the frames of `buf[start..end]` into `out`, resynchronising after every frame
/// that is not valid and adding the stretch skipped to `skipped`.
fn scan_range<D: Decoded>(
    buf: &[u8],
    start: usize,
    end: usize,
    out: &mut D,
    skipped: &mut Vec<Skipped>,
) {
    let mut pos = start;
    while pos < end {
        match frame_at(&buf[pos..end]) {
            Ok((rec, used)) => {
                out.push(&rec);
                pos += used;
            }
            Err(reason) => {
                let next = next_frame(buf, pos + 1, end);
                skipped.push(Skipped {
                    offset: pos as u64,
                    len: (next - pos) as u64,
                    frames: frames_in(&buf[pos..next]),
                    reason: reason.to_string(),
                });
                pos = next;
            }
        }
    }
}

/// The first offset in `from..end` where a valid frame starts, or `end`.
fn next_frame(buf: &[u8], from: usize, end: usize) -> usize {
    (from..end)
        .find(|&q| starts_frame(&buf[q..end]))
        .unwrap_or(end)
}

/// Whether a valid frame starts at `rest`: [`frame_at`]'s test, with the payload decoded
/// before it is hashed. Damage that repeats a small pattern can put a length in range at
/// every few offsets, and most such payloads fail to decode within their first bytes, where
/// the CRC would cost up to [`MAX_PAYLOAD`] bytes at each.
fn starts_frame(rest: &[u8]) -> bool {
    let Ok(len) = frame_len(rest) else {
        return false;
    };
    let (Some(crc), Some(payload)) = (
        rest.get(4..FRAME_HEADER_LEN),
        rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len),
    ) else {
        return false;
    };
    decode_view(payload).is_ok() && checksum(payload).to_le_bytes() == crc
}

/// A frame boundary at or after the middle of `buf`, found by walking the frames' length
/// fields alone; `None` when `buf` is too small to split, or when a length before the middle
/// is out of range or the walk ends at or past the end (one scan then handles it all).
fn split_point(buf: &[u8]) -> Option<usize> {
    if buf.len() < PARALLEL_MIN_BYTES {
        return None;
    }
    let half = buf.len() / 2;
    let mut pos = HEADER_LEN as usize;
    while pos < half {
        pos += FRAME_HEADER_LEN + frame_len(buf.get(pos..)?).ok()?;
    }
    (pos < buf.len()).then_some(pos)
}

#[cfg(test)]
mod tests;
