//! One shipping pass over the chain, and the loop that repeats it.
//!
//! A pass reads `manifest.jsonl` (never the sealer's in-memory chain: the shipper cannot slow
//! or block the sealer or the journal writer), uploads every live segment the cursor does not
//! hold, in chain order, settles compactions (a merged day's hour objects are deleted only
//! once the merged object is acknowledged), and finally uploads the manifest as of its head.
//!
//! A live segment whose file is gone is skipped and the others shipped; if the manifest read
//! again still lists it, the pass fails naming it (retried with backoff), and only if the
//! chain moved on (merged or pruned meanwhile) is the pass done again at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cursor::{Acked, Cursor};
use super::layout::Layout;
use super::remote::{Job, Remote, Step, Uploaded};
use super::{ShipError, ShipStatus};
use crate::store::manifest::{live_segments, Body, Entry, Head, SegmentInfo, MANIFEST};
use crate::store::retention::cutoff_ns;

/// Longest time acknowledged uploads wait for the cursor's save (an fsync) while more are
/// shipped; a pass always saves before it ends.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How long before retention's cutoff an acknowledged segment is looked for in the bucket
/// once more ([`Worker::recheck_expiring`]).
pub const RECHECK_AHEAD_NS: i64 = 24 * 3600 * 1_000_000_000;
/// Acknowledged segments looked for once more in one pass at most: after a restart every
/// segment a legal hold keeps past retention is due, and the pass's uploads wait behind them.
pub const RECHECK_PER_PASS: usize = 64;

/// The state of the shipping thread.
pub struct Worker {
    /// The store directory.
    pub dir: PathBuf,
    /// Object keys.
    pub layout: Layout,
    /// The bucket.
    pub remote: Remote,
    /// What was acknowledged.
    pub cursor: Cursor,
    /// Multipart threshold.
    pub multipart_bytes: u64,
    /// The local retention (for the status' count of segments retention keeps for shipping).
    pub retention_days: u32,
    /// Shared with the handle.
    pub status: Arc<Mutex<ShipStatus>>,
    /// Set to stop between requests.
    pub stop: Arc<AtomicBool>,
    /// Compactions past the cursor's `settled_seq` settled already (an earlier one waits
    /// for its merged object): not deleted again at every pass. Held in memory only; after a
    /// restart their deletes are sent once more, which the bucket takes.
    pub settled_past: std::collections::HashSet<u64>,
    /// An older manifest copy could not be deleted (said once).
    pub manifest_copies_kept: bool,
    /// The manifest copy a newer acknowledged one replaces, deleted once the cursor naming
    /// the newer is saved.
    pub manifest_to_drop: Option<u64>,
    /// Segments found in the bucket as acknowledged when retention's cutoff came near
    /// ([`Worker::recheck_expiring`]); in memory only, so a restart looks once more.
    pub rechecked: std::collections::HashSet<String>,
}

/// How a pass ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// Everything live is acknowledged, and the manifest too.
    CaughtUp,
    /// The chain changed under the pass (a segment was merged or pruned away): pass again at
    /// once.
    Again,
    /// Asked to stop.
    Stopped,
}

/// `manifest.jsonl` as a pass read it: its bytes (shipped as they are), entries and head.
struct Chain {
    text: Vec<u8>,
    entries: Vec<Entry>,
    head: Option<Head>,
}

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// The chain in `dir`, as [`Worker::read_manifest`] reads it.
fn read_chain(dir: &Path) -> Result<Chain, ShipError> {
    let (text, entries, head) = crate::store::manifest::read_chain_bytes(dir)
        .map_err(|e| ShipError::Manifest(e.to_string()))?;
    Ok(Chain {
        text,
        entries,
        head,
    })
}

/// Backlog figures of the chain's `live` segments against `cursor`, into `status`.
fn count_backlog(
    status: &Mutex<ShipStatus>,
    cursor: &Cursor,
    live: &[&SegmentInfo],
    retention_days: u32,
) {
    let now = now_ns();
    let cutoff = cutoff_ns(now, retention_days).unwrap_or(i64::MIN);
    let b = cursor.backlog(live.iter().copied(), cutoff);
    if let Ok(mut st) = status.lock() {
        st.backlog_segments = b.segments;
        st.backlog_bytes = b.bytes;
        st.oldest_age_s = b
            .oldest_ns
            .map(|t| (now.saturating_sub(t).max(0) / 1_000_000_000) as u64);
        st.kept_for_shipping = b.expired;
        st.manifest_seq = cursor.manifest_seq;
    }
}

impl Worker {
    fn set_status(&self, f: impl FnOnce(&mut ShipStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Backlog figures from the chain and the cursor.
    fn update_backlog(&self, live: &[&SegmentInfo]) {
        count_backlog(&self.status, &self.cursor, live, self.retention_days);
    }

    /// Counts the backlog from the manifest as it is now (between passes: an outage's retries
    /// wait up to a minute each). A manifest that does not read leaves the count as it was;
    /// the next pass says why.
    pub(super) fn refresh_backlog(&self) {
        if let Ok(chain) = self.read_manifest() {
            self.update_backlog(&live_segments(&chain.entries));
        }
    }

    fn save(&self) -> Result<(), ShipError> {
        self.cursor.save(&self.dir).map_err(ShipError::Cursor)
    }

    /// One pass; see the module docs. The cursor is saved (one fsync) once at its end when
    /// it changed, whether the pass succeeded or not, and meanwhile at most every
    /// [`SAVE_EVERY`] during long uploads: a crash before a save only makes the next pass
    /// upload again keys the bucket holds (the conditional create finds them identical),
    /// delete again hour objects already gone, and put again the identical manifest.
    pub fn pass(&mut self) -> Result<Pass, ShipError> {
        let before = self.cursor.clone();
        let result = self.pass_unsaved();
        if self.cursor != before {
            match (self.save(), &result) {
                (Ok(()), _) => {
                    if let Some(old) = self.manifest_to_drop.take() {
                        self.drop_manifest_copy(old);
                    }
                }
                (Err(e), Ok(_)) => return Err(e),
                // The pass's own failure names the key or file at fault: it stays the error.
                (Err(e), Err(_)) => {
                    tracing::warn!(error = %e, "the cursor could not be saved after a failed pass; the next pass uploads again what it lacks")
                }
            }
        }
        result
    }

    /// The manifest as it is now (none yet: empty).
    /// The chain as the writer reads it: a manifest deleted while segments remain, cut
    /// short or emptied fails the pass (read as an empty chain, the pass dropped every
    /// acknowledgement from the cursor, and shipped everything again once it was restored).
    fn read_manifest(&self) -> Result<Chain, ShipError> {
        read_chain(&self.dir)
    }

    fn pass_unsaved(&mut self) -> Result<Pass, ShipError> {
        let Chain {
            text,
            entries,
            head,
        } = self.read_manifest()?;
        // A chain that ends before the one the bucket acknowledged was rolled back, one that
        // holds another entry there replaced: shipping it would lower the cursor, the
        // evidence `compliance` reads, and drop the newer segments' acknowledgements.
        if let Some(acked) = self.cursor.manifest_seq {
            let now = head.as_ref().map(|h| h.seq);
            let at = entries.iter().find(|e| e.seq == acked);
            let replaced = match (&self.cursor.manifest_hash, at) {
                (Some(hash), Some(e)) => e.hash != *hash,
                _ => false,
            };
            if now.is_none_or(|h| h < acked) || replaced {
                return Err(ShipError::RolledBack {
                    dir: self.dir.clone(),
                    acked,
                    head: now,
                    replaced,
                });
            }
        }
        let live = live_segments(&entries);
        self.update_backlog(&live);
        self.recheck_expiring(&live);
        let mut gone = Vec::new();
        let uploaded = self.upload(&live, &mut gone);
        if matches!(uploaded, Ok(Pass::Stopped)) {
            return Ok(Pass::Stopped);
        }
        // Settled whatever the uploads came to: a merged day acknowledged now or earlier must
        // not leave its hour objects beside it, or engines reading the bucket count it twice.
        let settled = self.settle(&entries);
        if let Err(e) = uploaded {
            if let Err(s) = settled {
                tracing::warn!(error = %s, "compacted days not settled remotely; retried at the next pass");
            }
            return Err(e);
        }
        settled?;
        if !gone.is_empty() {
            let now = self.read_manifest()?;
            let missing: Vec<String> = live_segments(&now.entries)
                .into_iter()
                .filter(|s| gone.contains(&s.file))
                .map(|s| s.file.clone())
                .collect();
            if missing.is_empty() {
                return Ok(Pass::Again); // merged or pruned away since the pass read the chain
            }
            return Err(ShipError::Missing {
                dir: self.dir.clone(),
                files: missing,
            });
        }
        if let Some(h) = head {
            if self.cursor.manifest_seq != Some(h.seq) {
                let key = self.layout.manifest(h.seq);
                self.remote
                    .put_bytes(&key, text)
                    .map_err(ShipError::Remote)?;
                let before = self.cursor.manifest_seq.replace(h.seq);
                self.cursor.manifest_hash = Some(h.hash.clone());
                tracing::debug!(key = %key, "manifest shipped");
                // Deleted once the cursor naming the new copy is saved ([`Worker::pass`]).
                self.manifest_to_drop = before.filter(|&old| old < h.seq);
            }
        }
        self.update_backlog(&live);
        self.set_status(|st| {
            st.last_error = None;
            st.caught_up_at = Some(jiff::Timestamp::now().to_string());
        });
        Ok(Pass::CaughtUp)
    }

    /// Looks in the bucket, once, for each acknowledged live segment that retention will
    /// delete locally within [`RECHECK_AHEAD_NS`]: one gone from the bucket since (a
    /// lifecycle rule, an operator's mistake, an intruder) or changed there is no longer held
    /// by the cursor, so this pass ships it again (a changed object is refused and named)
    /// and retention keeps the local copy until the bucket has it. Without this, only
    /// `verify --remote` found such an object, and retention deleted the last copy. At most
    /// [`RECHECK_PER_PASS`] a pass; a failed HEAD ends the looking for this pass, which goes
    /// on (the next pass looks again): one object the server cannot answer for must not
    /// stop the shipping of every new segment.
    fn recheck_expiring(&mut self, live: &[&SegmentInfo]) {
        let live_files: std::collections::HashSet<&str> =
            live.iter().map(|s| s.file.as_str()).collect();
        self.rechecked.retain(|f| live_files.contains(f.as_str()));
        let soon = now_ns().saturating_add(RECHECK_AHEAD_NS);
        let Some(cutoff) = cutoff_ns(soon, self.retention_days) else {
            return;
        };
        let mut looked = 0;
        for s in live {
            if s.time_max_ns >= cutoff || self.rechecked.contains(&s.file) {
                continue;
            }
            if looked == RECHECK_PER_PASS || self.stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(acked) = self
                .cursor
                .acked
                .get(&s.file)
                .filter(|_| self.cursor.holds(s))
            else {
                continue;
            };
            looked += 1;
            let found = match self.remote.stat(&acked.key) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(key = %acked.key, error = %e, "cannot look for an acknowledged segment near retention's cutoff in the bucket; looked for again at the next pass");
                    return;
                }
            };
            let intact = found.as_ref().is_some_and(|f| {
                f.size == s.size && f.sha256.as_deref() == Some(s.sha256.as_str())
            });
            if intact {
                self.rechecked.insert(s.file.clone());
                continue;
            }
            let found = found.map_or_else(|| "no object".to_owned(), |f| f.to_string());
            tracing::warn!(key = %acked.key, file = %s.file, found = %found, "an acknowledged segment is gone from the bucket, or changed there, before retention deletes it locally: shipping it again, and the local copy stays until the bucket has it");
            self.cursor.acked.remove(&s.file);
            self.set_status(|st| st.gone_from_bucket += 1);
        }
    }

    /// Deletes the bucket's copy of the manifest as of entry `old`, now that a newer one is
    /// acknowledged: the chain only grows, so the newer copy holds all of it, and a copy
    /// kept per pass piled up (9.3 MB of copies beside 18 MB of segments in a day of seals;
    /// quadratic in the chain's length). A refused DELETE (an object lock) keeps the copies,
    /// said once; any other failure leaves one copy behind, as a crash before it does.
    fn drop_manifest_copy(&mut self, old: u64) {
        let key = self.layout.manifest(old);
        if let Err(e) = self.remote.delete(&key) {
            if !self.manifest_copies_kept {
                self.manifest_copies_kept = true;
                tracing::warn!(key = %key, error = %e, "an older manifest copy could not be deleted; copies stay in the bucket (said once)");
            }
        }
    }

    /// Uploads the live segments the cursor lacks, a few at a time ([`Remote::upload_all`]);
    /// a long run saves the cursor every [`SAVE_EVERY`] ([`Worker::pass`] saves at its end).
    /// Segments whose file is gone are put in `gone` and the others still uploaded.
    fn upload(&mut self, live: &[&SegmentInfo], gone: &mut Vec<String>) -> Result<Pass, ShipError> {
        let mut by_key: HashMap<String, &SegmentInfo> = HashMap::new();
        let mut jobs = Vec::new();
        for s in live.iter().filter(|s| !self.cursor.holds(s)) {
            let key = self.layout.segment(s);
            jobs.push(Job {
                key: key.clone(),
                path: self.dir.join(&s.file),
                size: s.size,
                sha256: s.sha256.clone(),
            });
            by_key.insert(key, s);
        }
        if jobs.is_empty() {
            return Ok(Pass::CaughtUp);
        }
        let mut outcome = Ok(Pass::CaughtUp);
        let mut refused = Vec::new();
        let mut saved_at = Instant::now();
        let Worker {
            remote,
            cursor,
            status,
            stop,
            dir,
            multipart_bytes,
            retention_days,
            ..
        } = self;
        // Asked to stop: no more uploads started.
        let stopping = |outcome: &mut Result<Pass, ShipError>| {
            let stop = stop.load(Ordering::Relaxed);
            if stop && matches!(outcome, Ok(Pass::CaughtUp)) {
                *outcome = Ok(Pass::Stopped);
            }
            stop
        };
        let every = super::BACKLOG_REFRESH;
        remote.upload_all(jobs, *multipart_bytes, every, |step| {
            let (job, result) = match step {
                Step::Done(job, result) => (job, result),
                Step::Tick => {
                    // A stalled request holds the pass up to its timeout, a long one for
                    // longer: the status counts what waits now (segments sealed since the
                    // pass began too), as a failed pass's retry wait does.
                    if let Ok(now) = read_chain(dir) {
                        let live = live_segments(&now.entries);
                        count_backlog(status, cursor, &live, *retention_days);
                    }
                    return !stopping(&mut outcome) && outcome.is_ok();
                }
            };
            let Some(s) = by_key.get(&job.key) else {
                return true;
            };
            let uploaded = match result {
                Ok(u) => u,
                Err(e) if e.is_local_gone() => {
                    tracing::debug!(file = %s.file, "segment file gone; shipping the others");
                    gone.push(s.file.clone());
                    return outcome.is_ok();
                }
                Err(e) if e.is_one_object() => {
                    tracing::warn!(error = %e, "segment not shipped; shipping the others");
                    refused.push(e);
                    return outcome.is_ok();
                }
                Err(e) => {
                    if outcome.is_ok() {
                        outcome = Err(ShipError::Remote(e));
                    }
                    return false;
                }
            };
            cursor.acked.insert(
                s.file.clone(),
                Acked {
                    key: job.key.clone(),
                    size: s.size,
                    sha256: s.sha256.clone(),
                },
            );
            let again = uploaded == Uploaded::AlreadyThere;
            tracing::info!(key = %job.key, bytes = s.size, again, "segment shipped");
            if let Ok(mut st) = status.lock() {
                st.shipped_segments += 1;
                st.shipped_bytes += s.size;
                st.identical_reuploads += u64::from(again);
                st.backlog_segments = st.backlog_segments.saturating_sub(1);
                st.backlog_bytes = st.backlog_bytes.saturating_sub(s.size);
            }
            if saved_at.elapsed() >= SAVE_EVERY {
                if let Err(e) = cursor.save(dir) {
                    outcome = Err(ShipError::Cursor(e));
                    return false;
                }
                saved_at = Instant::now();
            }
            !stopping(&mut outcome) && outcome.is_ok()
        });
        if matches!(outcome, Ok(Pass::CaughtUp)) && !refused.is_empty() {
            outcome = Err(ShipError::NotShipped(refused));
        }
        self.update_backlog(live);
        outcome
    }

    /// Settles compactions in chain order: once a merged segment is acknowledged, the hour
    /// objects it replaced are deleted (all of them, acknowledged or not: a crash between a
    /// PUT and the cursor's save leaves an object the cursor does not know), so engines
    /// reading the bucket never count a row twice. Acknowledgements of segments no longer
    /// live are dropped once settled.
    fn settle(&mut self, entries: &[Entry]) -> Result<(), ShipError> {
        let added: HashMap<&str, &SegmentInfo> = entries
            .iter()
            .filter_map(|e| e.body.added())
            .map(|s| (s.file.as_str(), s))
            .collect();
        let live: Vec<&str> = live_segments(entries)
            .into_iter()
            .map(|s| s.file.as_str())
            .collect();
        // Where each merged-away segment's rows went: a merged segment can itself be merged
        // again (a late hour of its day sealed after the first compaction).
        let merged_into: HashMap<&str, &SegmentInfo> = entries
            .iter()
            .filter_map(|e| match &e.body {
                Body::Compact(c) => {
                    Some(c.files.iter().map(move |f| (f.file.as_str(), &c.segment)))
                }
                _ => None,
            })
            .flatten()
            .collect();
        let from = self.cursor.settled_seq;
        let due = |e: &&Entry| from.is_none_or(|s| e.seq > s);
        // Remote objects are deleted on the chain's word only if it holds, as retention
        // deletes local files.
        if entries
            .iter()
            .filter(due)
            .any(|e| matches!(e.body, Body::Compact(_)))
        {
            crate::store::manifest::check_chain(entries).map_err(|r| {
                ShipError::Manifest(format!(
                    "{}: {r}; no bucket object is deleted on its word (run `xdp-audit verify`)",
                    self.dir.join(crate::store::manifest::MANIFEST).display()
                ))
            })?;
        }
        // A compaction whose rows no acknowledged object holds yet waits, and `settled_seq`
        // stays below it; the later ones are still settled (another day's hours must not
        // sit beside its merged object, counted twice, while one day waits).
        let mut waiting = false;
        for e in entries.iter().filter(due) {
            if let Body::Compact(c) = &e.body {
                if self.settled_past.contains(&e.seq) {
                    continue;
                }
                // The segment holding the merged rows now; bounded, as names never repeat.
                let mut holder = &c.segment;
                for _ in 0..entries.len() {
                    match merged_into.get(holder.file.as_str()) {
                        Some(next) => holder = next,
                        None => break,
                    }
                }
                if live.contains(&holder.file.as_str()) && !self.cursor.holds(holder) {
                    // The hours stay remote until an object holding their rows is
                    // acknowledged: the merged one, or the one it was merged into since.
                    waiting = true;
                    continue;
                }
                for f in &c.files {
                    if let Some(s) = added.get(f.file.as_str()) {
                        self.remote
                            .delete(&self.layout.segment(s))
                            .map_err(ShipError::Remote)?;
                    }
                }
                tracing::info!(merged = %c.segment.file, hours = c.files.len(), "compacted day settled remotely: hour objects replaced by the merged one");
                if waiting {
                    self.settled_past.insert(e.seq);
                }
            }
            if !waiting {
                self.cursor.settled_seq = Some(e.seq);
            }
        }
        let settled = self.cursor.settled_seq;
        self.settled_past
            .retain(|s| settled.is_none_or(|done| *s > done));
        let unsettled: Vec<&str> = entries
            .iter()
            .filter(|e| settled.is_none_or(|s| e.seq > s))
            .flat_map(|e| e.body.removed())
            .map(|f| f.file.as_str())
            .collect();
        self.cursor
            .acked
            .retain(|f, _| live.contains(&f.as_str()) || unsettled.contains(&f.as_str()));
        Ok(())
    }
}

/// Backoff after `failures` failed passes: exponential from 500 ms up to `max`, with full
/// jitter in its upper half (so a fleet restarting together does not hammer the server in step).
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = Duration::from_millis(500).saturating_mul(1u32 << failures.min(16));
    let cap = exp.min(max);
    let jitter = jitter_fraction();
    cap.mul_f64(0.5 + 0.5 * jitter)
}

/// A fraction in [0, 1) from the standard library's per-process random hash keys.
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.write_i64(now_ns());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The manifest's size and modification time: a pass is due when it changes.
pub fn manifest_stamp(dir: &Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(dir.join(MANIFEST)).ok()?;
    Some((m.len(), m.modified().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let max = Duration::from_secs(60);
        let first = backoff(0, max);
        assert!(
            first >= Duration::from_millis(250) && first <= Duration::from_millis(500),
            "{first:?}"
        );
        let late = backoff(20, max);
        assert!(late >= Duration::from_secs(30) && late <= max, "{late:?}");
        let samples: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff(5, max)).collect();
        assert!(samples.len() > 1, "no jitter: {samples:?}");
    }
}
