//! One shipping pass over the chain, and the loop that repeats it.
//!
//! A pass reads `manifest.jsonl` (never the sealer's in-memory chain: the shipper cannot slow
//! or block the sealer or the journal writer), uploads every live segment the cursor does not
//! hold, in chain order, settles compactions (a merged day's hour objects are deleted only
//! once the merged object is acknowledged), and finally uploads the manifest as of its head.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cursor::{Acked, Cursor};
use super::layout::Layout;
use super::remote::{Remote, Uploaded};
use super::{ShipError, ShipStatus};
use crate::store::manifest::{live_segments, parse_with_head, Body, Entry, SegmentInfo, MANIFEST};
use crate::store::retention::DAY_NS;

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
}

/// How a pass ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// Everything live is acknowledged, and the manifest too.
    CaughtUp,
    /// The chain changed under the pass (a segment was merged away): pass again at once.
    Again,
    /// Asked to stop.
    Stopped,
}

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

impl Worker {
    fn set_status(&self, f: impl FnOnce(&mut ShipStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Backlog figures from the chain and the cursor.
    fn update_backlog(&self, live: &[&SegmentInfo]) {
        let now = now_ns();
        let waiting: Vec<&&SegmentInfo> = live.iter().filter(|s| !self.is_acked(s)).collect();
        let cutoff = now.saturating_sub(i64::from(self.retention_days) * DAY_NS);
        self.set_status(|st| {
            st.backlog_segments = waiting.len() as u64;
            st.backlog_bytes = waiting.iter().map(|s| s.size).sum();
            st.oldest_age_s = waiting
                .iter()
                .map(|s| s.time_max_ns)
                .min()
                .map(|t| (now.saturating_sub(t).max(0) / 1_000_000_000) as u64);
            st.kept_for_shipping = waiting.iter().filter(|s| s.time_max_ns < cutoff).count() as u64;
            st.manifest_seq = self.cursor.manifest_seq;
        });
    }

    fn is_acked(&self, s: &SegmentInfo) -> bool {
        self.cursor
            .acked
            .get(&s.file)
            .is_some_and(|a| a.sha256 == s.sha256)
    }

    fn save(&self) -> Result<(), ShipError> {
        self.cursor.save(&self.dir).map_err(ShipError::Cursor)
    }

    /// One pass; see the module docs.
    pub fn pass(&mut self) -> Result<Pass, ShipError> {
        let path = self.dir.join(MANIFEST);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(cause) => {
                return Err(ShipError::Manifest(format!(
                    "{}: read: {cause}",
                    path.display()
                )))
            }
        };
        let (entries, head) = parse_with_head(&path, &String::from_utf8_lossy(&text))
            .map_err(|e| ShipError::Manifest(e.to_string()))?;
        let live = live_segments(&entries);
        self.update_backlog(&live);
        for s in &live {
            if self.is_acked(s) {
                continue;
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Pass::Stopped);
            }
            let key = self.layout.segment(s);
            let uploaded = match self.remote.upload(
                &key,
                &self.dir.join(&s.file),
                s.size,
                &s.sha256,
                self.multipart_bytes,
            ) {
                Ok(u) => u,
                Err(e) if e.is_local_gone() => return Ok(Pass::Again),
                Err(e) => return Err(ShipError::Remote(e)),
            };
            self.cursor.acked.insert(
                s.file.clone(),
                Acked {
                    key: key.clone(),
                    size: s.size,
                    sha256: s.sha256.clone(),
                },
            );
            self.save()?;
            tracing::info!(key = %key, bytes = s.size, again = (uploaded == Uploaded::AlreadyThere), "segment shipped");
            self.set_status(|st| {
                st.shipped_segments += 1;
                st.shipped_bytes += s.size;
                st.identical_reuploads += u64::from(uploaded == Uploaded::AlreadyThere);
            });
            self.update_backlog(&live);
        }
        self.settle(&entries)?;
        if let Some(h) = head {
            if self.cursor.manifest_seq != Some(h.seq) {
                let key = self.layout.manifest(h.seq);
                self.remote
                    .put_bytes(&key, text)
                    .map_err(ShipError::Remote)?;
                self.cursor.manifest_seq = Some(h.seq);
                self.save()?;
                tracing::debug!(key = %key, "manifest shipped");
            }
        }
        self.update_backlog(&live);
        self.set_status(|st| {
            st.last_error = None;
            st.caught_up_at = Some(jiff::Timestamp::now().to_string());
        });
        Ok(Pass::CaughtUp)
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
        let from = self.cursor.settled_seq;
        for e in entries.iter().filter(|e| from.is_none_or(|s| e.seq > s)) {
            if let Body::Compact(c) = &e.body {
                let merged_live = live.contains(&c.segment.file.as_str());
                if merged_live && !self.is_acked(&c.segment) {
                    break; // its hours stay remote until the merged object is acknowledged
                }
                for f in &c.files {
                    if let Some(s) = added.get(f.file.as_str()) {
                        self.remote
                            .delete(&self.layout.segment(s))
                            .map_err(ShipError::Remote)?;
                    }
                }
                tracing::info!(merged = %c.segment.file, hours = c.files.len(), "compacted day settled remotely: hour objects replaced by the merged one");
            }
            self.cursor.settled_seq = Some(e.seq);
        }
        let settled = self.cursor.settled_seq;
        let unsettled: Vec<&str> = entries
            .iter()
            .filter(|e| settled.is_none_or(|s| e.seq > s))
            .flat_map(|e| e.body.removed())
            .map(|f| f.file.as_str())
            .collect();
        self.cursor
            .acked
            .retain(|f, _| live.contains(&f.as_str()) || unsettled.contains(&f.as_str()));
        self.save()
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
