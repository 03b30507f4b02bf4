//! The open flows this agent read and has not written in full, saved in the state directory
//! (`open-flows.bin`), so that after a kill the next agent writes those the flow table lost
//! meanwhile. A flow's start event leaves the ring when this agent reads it; until the flow's
//! last record is written, only this process's memory and the kernel's entry know it. A kill
//! in a flood of new flows left the full LRU table to evict such flows before the next agent's
//! first walk (about 100,000 flows in a test with default sizes): no record, no counter.
//!
//! The file is a log of fixed-size entries, each with its CRC-32: a flow's latest snapshot
//! and what its records carried (at each event, each `reported` change, and at most every
//! [`WALK_SAVE_NS`] from the walks), and its end (once its last record is written). Appended
//! at each settle right after the sink's flush (the records it describes are in the journal
//! file) and before the ledger's commit, so it says no more was written than the file holds
//! (but where the ledger's waiting updates outgrew their map on a full disk, as the ledger
//! does); rewritten whole, streamed, after the ledger's commit, once the log is more than
//! twice the open flows. Without fsync: the state directory is `/run` by default, and a power
//! cut takes the flow table too; the head names the boot. The next agent reads it once at its
//! start ([`Spill::open`]), takes the flows in ([`super::Sweeper::restore`]), writes those
//! gone from the table as evicted from their snapshot, and starts a new file. A clean stop
//! removes it: a stop writes or hands over every open flow. Without pins the flow table goes
//! with a killed agent: the next one writes every flow the file holds, as evicted.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use agent_common::{FlowKey, FlowValue, Reported};
use tracing::{info, warn};

use super::{Sweeper, Tracked};
use crate::pod::{bytes_of, read};
use crate::store::fsutil;
use crate::throttle::Throttle;

/// The file's name in the state directory.
pub const FILE_NAME: &str = "open-flows.bin";

/// The walks save a flow whose counters moved at most this often (kernel ns): a flow gone
/// from the table after a kill is written from a snapshot at most this old, and a table of
/// busy flows costs a rewrite of the file this often, not every sweep.
pub const WALK_SAVE_NS: u64 = 10_000_000_000;

const MAGIC: &[u8; 8] = b"xa-open1";
const KEY: usize = size_of::<FlowKey>();
const VALUE: usize = size_of::<FlowValue>();
const REPORTED: usize = size_of::<Reported>();
/// Entry head: CRC-32 of the rest, tag, 3 bytes of padding.
const HEAD: usize = 8;
// Every entry a multiple of 8 bytes: a read past a damaged one looks every 8 bytes.
const _: () = assert!(
    HEAD.is_multiple_of(8)
        && KEY.is_multiple_of(8)
        && VALUE.is_multiple_of(8)
        && REPORTED.is_multiple_of(8)
);

/// Entry tags.
const OPEN: u8 = 1;
const OPEN_REPORTED: u8 = 2;
const GONE: u8 = 3;

/// The file head's length.
const FILE_HEAD: usize = 32;

/// The file head: the magic, the three wire types' sizes (a build whose types differ cannot
/// read the entries, and says so), and the kernel's boot id (`boot`): the snapshots' times
/// are that boot's monotonic clock, and its flow table went with it.
fn file_head(boot: u128) -> [u8; FILE_HEAD] {
    let mut h = [0u8; FILE_HEAD];
    h[..8].copy_from_slice(MAGIC);
    for (i, n) in [KEY, VALUE, REPORTED].into_iter().enumerate() {
        h[8 + 2 * i..10 + 2 * i].copy_from_slice(&(n as u16).to_le_bytes());
    }
    h[16..].copy_from_slice(&boot.to_le_bytes());
    h
}

/// A flow saved by an earlier agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    /// The flow.
    pub key: FlowKey,
    /// Its latest snapshot.
    pub value: FlowValue,
    /// What its records carried.
    pub reported: Reported,
}

/// Appends one entry to `out`.
fn push_entry(out: &mut Vec<u8>, tag: u8, key: &FlowKey, rest: &[&[u8]]) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, tag, 0, 0, 0]);
    out.extend_from_slice(bytes_of(key));
    for r in rest {
        out.extend_from_slice(r);
    }
    let crc = crc32fast::hash(&out[at + 4..]);
    out[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Appends the entry saying what is known of the open flow `t` (nothing for one without a
/// snapshot, or one that ended: an ended flow's end entry is its last).
fn push_open(out: &mut Vec<u8>, key: &FlowKey, t: &Tracked) {
    let Some(v) = t.latest.filter(|_| t.ended_ns == 0) else {
        return;
    };
    if t.reported == Reported::default() {
        push_entry(out, OPEN, key, &[bytes_of(&v)]);
    } else {
        push_entry(
            out,
            OPEN_REPORTED,
            key,
            &[bytes_of(&v), bytes_of(&t.reported)],
        );
    }
}

/// What a read of a saved file found damaged: the first damaged or cut entry's offset, and
/// the bytes skipped in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Damage {
    first: usize,
    skipped: usize,
}

impl Damage {
    /// Whether it is no more than the last entry cut short, as a kill during an append
    /// leaves it (the entry's records were written and its events are still in the ring, so
    /// the next agent reads them again): not counted as damage, in a file `len` long.
    fn is_cut_tail(&self, len: usize) -> bool {
        self.first + self.skipped == len && self.skipped < HEAD + KEY + VALUE + REPORTED
    }
}

/// Why a saved file is not read at all.
#[derive(Debug, PartialEq, Eq)]
enum Unread {
    /// Written before the host restarted: its flows went with that boot's flow table.
    OtherBoot,
    /// Not a file of open flows, or one of a build whose types differ.
    Refused(&'static str),
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unread::OtherBoot => f.write_str("it was written before the host restarted (another boot id): its times are that boot's, and the flow table went with it"),
            Unread::Refused(why) => f.write_str(why),
        }
    }
}

/// The entry at the start of `rest`, if whole and intact (its tag known, its padding zero,
/// its CRC right): its tag and bytes.
fn entry(rest: &[u8]) -> Option<(u8, &[u8])> {
    let tag = *rest.get(4)?;
    let len = match tag {
        OPEN => HEAD + KEY + VALUE,
        OPEN_REPORTED => HEAD + KEY + VALUE + REPORTED,
        GONE => HEAD + KEY,
        _ => return None,
    };
    let e = rest.get(..len)?;
    let crc = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
    (e[5..HEAD] == [0, 0, 0] && crc32fast::hash(&e[4..]) == crc).then_some((tag, e))
}

/// Reads a saved file's entries, the last of each flow counting, if it was written in this
/// boot (`boot`). Returns the open flows and what was damaged: past a damaged entry the read
/// goes on at the next intact one (every entry is a multiple of 8 bytes long, so it looks
/// every 8 bytes), so one damaged entry costs that entry only (a lost end makes its flow
/// open again; a lost snapshot leaves the one before).
fn parse(bytes: &[u8], boot: u128) -> Result<(Vec<Saved>, Option<Damage>), Unread> {
    let head = file_head(boot);
    if bytes.len() < FILE_HEAD || bytes[..8] != MAGIC[..] {
        return Err(Unread::Refused(
            "it is not a file of open flows (no `xa-open1` head)",
        ));
    }
    if bytes[..16] != head[..16] {
        return Err(Unread::Refused(
            "it was written by a build whose flow types differ in size",
        ));
    }
    if bytes[16..FILE_HEAD] != head[16..] {
        return Err(Unread::OtherBoot);
    }
    let mut flows: indexmap::IndexMap<FlowKey, Option<Saved>, foldhash::fast::RandomState> =
        indexmap::IndexMap::default();
    let mut damage: Option<Damage> = None;
    let mut at = FILE_HEAD;
    while at < bytes.len() {
        let Some((tag, e)) = entry(&bytes[at..]) else {
            let d = damage.get_or_insert(Damage {
                first: at,
                skipped: 0,
            });
            let step = 8.min(bytes.len() - at);
            d.skipped += step;
            at += step;
            continue;
        };
        at += e.len();
        // Each read within the entry, whose length its tag gave.
        let (Some(key), value, reported) = (
            read::<FlowKey>(&e[HEAD..]),
            read::<FlowValue>(&e[HEAD + KEY..]),
            read::<Reported>(&e[(HEAD + KEY + VALUE).min(e.len())..]),
        ) else {
            continue;
        };
        let saved = match (tag, value) {
            (GONE, _) | (_, None) => None,
            (tag, Some(value)) => Some(Saved {
                key,
                value,
                reported: reported
                    .filter(|_| tag == OPEN_REPORTED)
                    .unwrap_or_default(),
            }),
        };
        flows.insert(key, saved);
    }
    Ok((flows.into_values().flatten().collect(), damage))
}

/// The saved file of the open flows and what waits to be appended to it.
pub struct Spill {
    dir: PathBuf,
    /// Bytes of the last agent's file that could not be read
    /// ([`super::SweepStats::restore_damaged`]).
    damaged: u64,
    /// The file appended to; `None` until the first rewrite, and after a write failed (the
    /// file is removed then, since a log with a gap could say less was written than was).
    file: Option<File>,
    /// Its length.
    len: u64,
    /// Its length after the last rewrite.
    image: u64,
    /// Entries waiting for the next [`Spill::flush`].
    buf: Vec<u8>,
    /// When a write last failed: the rewrite is tried again [`RETRY`] later, not at every
    /// settle.
    failed: Option<std::time::Instant>,
    warned: Throttle,
}

/// How long after a failed write the file is rewritten again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Bytes a rewrite leaves free on the state directory's file system.
const ROOM: u64 = 16 << 20;

/// The largest file the next agent reads (some 5 million flows).
const READ_MAX: u64 = 1 << 30;

/// Bytes of entries past which a walk settles ([`Spill::full`]).
const FLUSH_AT: usize = 4 << 20;

/// Entries held while the sink cannot write (a full disk) before they are dropped and the
/// file removed: the log then starts again with the next rewrite.
const HELD_MAX: usize = 64 << 20;

impl Spill {
    /// Reads what an earlier agent saved in `dir` and returns the flows to take in, with the
    /// spill that writes this agent's file from the first `Spill::rewrite` on. A file that
    /// cannot be read is named in a warning and set aside (`open-flows.bin.bad`).
    pub fn open(dir: &Path) -> (Self, Vec<Saved>) {
        let path = dir.join(FILE_NAME);
        // Bytes of the file not read as entries, but a kill's cut last entry.
        let mut damaged = 0;
        let saved = match fsutil::read_input_here(&path, READ_MAX) {
            Ok(bytes) => match parse(&bytes, crate::store::retention::boot_id()) {
                Ok((flows, damage)) => {
                    if let Some(d) = damage {
                        warn!(file = %path.display(), offset = d.first, bytes_skipped = d.skipped, flows = flows.len(), "the last agent's file of open flows holds damaged or cut entries (a kill while it was written cuts the last one); every intact entry is used, and a flow whose lost entry said it ended may be written again as evicted");
                        if !d.is_cut_tail(bytes.len()) {
                            damaged = d.skipped as u64;
                        }
                    }
                    flows
                }
                Err(why) => {
                    let bad = dir.join(format!("{FILE_NAME}.bad"));
                    warn!(file = %path.display(), set_aside = %bad.display(), "the last agent's file of open flows cannot be read: {why}; set aside, and the flows it may hold are not written (those still in the flow table are)");
                    let _ = std::fs::rename(&path, &bad);
                    // Another boot's flows went with its flow table: nothing lost here.
                    if why != Unread::OtherBoot {
                        damaged = bytes.len().max(1) as u64;
                    }
                    Vec::new()
                }
            },
            Err(fsutil::InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Vec::new()
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "the last agent's file of open flows cannot be read; the flows it may hold are not written (those still in the flow table are)");
                damaged = std::fs::metadata(&path).map_or(1, |m| m.len().max(1));
                Vec::new()
            }
        };
        if !saved.is_empty() {
            info!(file = %path.display(), flows = saved.len(), "the last agent stopped without writing these open flows (a kill or a crash): those gone from the flow table since are written as evicted from their last snapshot");
        }
        let spill = Self {
            dir: dir.to_path_buf(),
            damaged,
            file: None,
            len: 0,
            image: 0,
            buf: Vec::new(),
            failed: None,
            warned: Throttle::default(),
        };
        (spill, saved)
    }

    /// Saves what is known of the open flow `t` at the next flush.
    pub(super) fn open_flow(&mut self, key: &FlowKey, t: &Tracked) {
        push_open(&mut self.buf, key, t);
    }

    /// Saves that `key`'s flow ended or left (its records hold all it counted, or it is
    /// written as evicted) at the next flush.
    pub(super) fn gone(&mut self, key: &FlowKey) {
        push_entry(&mut self.buf, GONE, key, &[]);
    }

    /// Whether the entries waiting for a flush are many enough for a settle of their own.
    pub fn full(&self) -> bool {
        self.buf.len() >= FLUSH_AT
    }

    /// Whether the log grew to twice the open flows' image (and 1 MiB more), enough to be
    /// rewritten: the larger of what the last rewrite wrote and the least `open` flows take.
    /// Flows that only come (a growing table) leave nothing to drop; flows that come and go
    /// (a flood through a full table) leave their ends and earlier entries.
    pub(super) fn due(&self, open: usize) -> bool {
        if self.file.is_none() {
            return self.failed.is_none_or(|at| at.elapsed() >= RETRY);
        }
        let live = self.image.max((open * (HEAD + KEY + VALUE)) as u64);
        self.len > 2 * live + (1 << 20)
    }

    /// Appends the waiting entries: call it once the records they follow are in the journal
    /// file.
    pub(super) fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let Some(f) = self.file.as_mut() else {
            // Before the first rewrite, or after a failure: the next rewrite has it all.
            self.buf.clear();
            return;
        };
        match f.write_all(&self.buf) {
            Ok(()) => self.len += self.buf.len() as u64,
            Err(e) => self.fail(&e),
        }
        self.buf.clear();
    }

    /// Entries kept while the records they follow are not written (a full disk): past
    /// [`HELD_MAX`] they are dropped and the file removed, to be rewritten whole later.
    pub(super) fn held(&mut self) {
        if self.buf.len() > HELD_MAX {
            self.buf.clear();
            self.fail(&std::io::Error::other(
                "the store's disk refused records for so long that the entries waiting for them outgrew their bound",
            ));
        }
    }

    /// Replaces the file with `flows` (`open` of them at most): the open ones of the sweeper,
    /// whose records are all in the journal file and the ledger. Streamed through a
    /// temporary file, refused unless the file system keeps [`ROOM`] free after it (the
    /// state directory is a tmpfs in memory by default, shared with the status file).
    pub(super) fn rewrite<'a>(
        &mut self,
        open: usize,
        flows: impl Iterator<Item = (&'a FlowKey, &'a Tracked)>,
    ) {
        self.buf.clear();
        let need = (FILE_HEAD + open * (HEAD + KEY + VALUE + REPORTED)) as u64;
        if let Some(free) = fsutil::free_bytes(&self.dir).filter(|f| *f < need + ROOM) {
            self.fail(&std::io::Error::other(format!(
                "up to {need} bytes needed, {free} free on its file system, which keeps {ROOM} free"
            )));
            return;
        }
        let tmp = self.dir.join(format!(".{FILE_NAME}.tmp"));
        let written = (|| {
            let f = fsutil::create_temporary(&tmp)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            w.write_all(&file_head(crate::store::retention::boot_id()))?;
            let mut len = FILE_HEAD as u64;
            let mut entry = Vec::with_capacity(HEAD + KEY + VALUE + REPORTED);
            for (key, t) in flows {
                entry.clear();
                push_open(&mut entry, key, t);
                w.write_all(&entry)?;
                len += entry.len() as u64;
            }
            let f = w.into_inner().map_err(|e| e.into_error())?;
            std::fs::rename(&tmp, self.path())?;
            Ok::<_, std::io::Error>((f, len))
        })();
        match written {
            Ok((f, len)) => {
                self.failed = None;
                self.file = Some(f);
                (self.len, self.image) = (len, len);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.fail(&e);
            }
        }
    }

    /// The file's path.
    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Stops appending after a failed write and removes the file (it may lack entries), till
    /// the next rewrite.
    fn fail(&mut self, e: &std::io::Error) {
        self.file = None;
        self.failed = Some(std::time::Instant::now());
        let path = self.path();
        let gone = match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                // Not a file (a directory put there): set aside, or no rewrite ever lands.
                let aside = self.dir.join(format!("{FILE_NAME}.in-the-way"));
                std::fs::rename(&path, &aside).map(|()| format!("set aside as {}", aside.display()))
            }
            _ => Ok("removed".to_owned()),
        };
        if let Some(n) = self.warned.hit(1) {
            match gone {
                Ok(how) => {
                    warn!(file = %path.display(), error = %e, failures = n, "the file of open flows could not be written; {how}, and rewritten at a later sweep (a kill meanwhile loses the open flows the table evicts before the next agent's first sweep) (logged at most every 10 s)")
                }
                Err(stuck) => {
                    warn!(file = %path.display(), error = %e, failures = n, "the file of open flows could not be written, nor what is in its place removed or set aside ({stuck}): open flows are not kept for the next agent until it is (a kill loses the open flows the table evicts before the next agent's first sweep) (logged at most every 10 s)")
                }
            }
        }
    }

    /// Removes the file: a clean stop wrote or handed over every open flow.
    pub(super) fn remove(&mut self) {
        self.file = None;
        self.buf.clear();
        match std::fs::remove_file(self.path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(file = %self.path().display(), error = %e, "the file of open flows could not be removed at the stop; the next agent reads it and finds them written")
            }
        }
    }
}

impl Sweeper {
    /// Keeps the file of open flows in `spill`'s directory from now on, and takes in `saved`,
    /// the open flows a killed agent left there (this module): each goes on from its snapshot
    /// and what its records carried, and one gone from the table is written as evicted.
    /// Call it after [`Sweeper::adopt`]: of the ledger's account of a flow's records and the
    /// file's, the one that carries more counts (either may be a settle behind the other).
    /// Returns how many it took.
    pub fn restore(&mut self, spill: Spill, saved: Vec<Saved>) -> usize {
        let n = saved.len();
        for s in saved {
            let ledger = self.open.get(&s.key).map(|t| t.reported);
            let t = Tracked {
                reported: super::tracked::further(ledger.unwrap_or_default(), s.reported),
                latest: Some(s.value),
                first_seen_ns: s.value.first_seen_ns,
                adopted: true,
                ..Tracked::default()
            };
            self.open.insert(s.key, t);
        }
        self.stats.restored += n as u64;
        self.stats.restore_damaged += spill.damaged;
        self.spill = Some(spill);
        n
    }

    /// Appends what changed to the file of open flows: once the records are in the journal
    /// file, before the ledger follows ([`Sweeper::settle`]).
    pub(super) fn save_open_flows(&mut self) {
        if let Some(s) = self.spill.as_mut() {
            s.flush();
        }
    }

    /// Rewrites the file of open flows when it outgrew them: after the ledger's commit, so
    /// that a kill during the rewrite leaves the appended file, which says what the journal
    /// file and the ledger say.
    pub(super) fn rewrite_open_flows(&mut self) {
        let Some(s) = self.spill.as_mut() else {
            return;
        };
        if s.due(self.open.len()) {
            let open = self.open.iter().filter(|(_, t)| t.ended_ns == 0);
            s.rewrite(self.open.len(), open);
        }
    }

    /// Saves that `key`'s flow left: call it once its last record is written (or it had
    /// nothing left to write).
    pub(super) fn saved_gone(&mut self, key: &FlowKey) {
        if let Some(s) = self.spill.as_mut() {
            s.gone(key);
        }
    }

    /// Removes the file of open flows: a clean stop wrote or handed over each of them and
    /// its records are durable.
    pub fn stopped_cleanly(&mut self) {
        if let Some(s) = self.spill.as_mut() {
            s.remove();
        }
    }
}

#[cfg(test)]
mod tests;
