//! Retention: segments whose newest record is older than the retention are deleted, and the
//! deletion is itself a chain entry, so `verify` can tell lawful pruning from tampering.
//!
//! Segments a legal hold covers (`hold`) are kept, and each pass logs what it kept for which
//! hold. A pass first anchors the operator log into the chain, so the chain shows which holds
//! the pass saw; if the log does not verify, the pass deletes nothing (a hold could be hidden
//! in the damage) and says so.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::fsutil::{sha256_file, sync_dir};
use super::hold::{self, Hold};
use super::journal::QUARANTINE_DIR;
use super::manifest::{
    self, live_segments, Body, Manifest, ManifestError, PruneInfo, RemovedFile, SegmentInfo,
};
use super::oplog;

/// The legal minimum retention, in days.
pub const LEGAL_FLOOR_DAYS: u32 = 90;
/// The default retention, in days.
pub const DEFAULT_DAYS: u32 = 180;
/// One day in nanoseconds; retention runs at most this often.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// The longest retention accepted, in days (a hundred years): more is a typo, and from
/// 106,752 days on the span no longer fits the nanosecond clock.
pub const MAX_DAYS: u32 = 36_500;

/// A retention outside what the store accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedDays {
    /// Below the legal floor.
    #[error(
        "retention of {days} days refused: audit records must be kept at least {LEGAL_FLOOR_DAYS} days (the legal floor)"
    )]
    BelowFloor {
        /// The refused value.
        days: u32,
    },
    /// Above [`MAX_DAYS`].
    #[error("retention of {days} days refused: at most {MAX_DAYS} days (a hundred years)")]
    AboveMax {
        /// The refused value.
        days: u32,
    },
}

/// Accepts `days` from the legal floor to [`MAX_DAYS`].
pub fn check_days(days: u32) -> Result<u32, RefusedDays> {
    if days < LEGAL_FLOOR_DAYS {
        Err(RefusedDays::BelowFloor { days })
    } else if days > MAX_DAYS {
        Err(RefusedDays::AboveMax { days })
    } else {
        Ok(days)
    }
}

/// The time before which a segment's newest record is expired under `days` of retention,
/// or `None` when the span reaches past the clock's range: then nothing expires (a
/// saturated or wrapped span would put the cutoff at the end of time and expire everything).
/// Every retention cutoff (local, shipping backlog, compliance) is computed here.
pub fn cutoff_ns(now_ns: i64, days: u32) -> Option<i64> {
    i64::from(days)
        .checked_mul(DAY_NS)
        .and_then(|span| now_ns.checked_sub(span))
}

/// What a retention pass knows of the clocks besides the wall clock: the boot clock
/// (CLOCK_BOOTTIME, which no one steps), the boot it counts in, and whether the kernel says
/// the wall clock is synchronised (adjtimex).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trust {
    /// CLOCK_BOOTTIME, ns.
    pub boot_ns: i64,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`), 0 if unknown.
    pub boot_id: u128,
    /// Synchronised (no `STA_UNSYNC`): a step since is corrected already.
    pub synced: bool,
}

/// The kernel's boot id as a number, 0 if unreadable (read once).
pub fn boot_id() -> u128 {
    static BOOT: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .and_then(|s| u128::from_str_radix(&s.trim().replace('-', ""), 16).ok())
            .unwrap_or(0)
    })
}

/// How far the wall clock may run ahead of the time that passed before retention stops
/// following it: NTP slews some seconds a day, and the start's anchor is a few seconds old.
const AHEAD_TOLERANCE_NS: i64 = 10 * 60 * 1_000_000_000;

/// Says that a pass did not follow the wall clock, running `ahead_ns` behind it.
pub fn warn_held(ahead_ns: i64) {
    if ahead_ns > 0 {
        tracing::warn!(
            ahead = %crate::span::format(std::time::Duration::from_nanos(ahead_ns.unsigned_abs())),
            "retention does not follow the wall clock: it runs ahead of the time that passed \
             (the boot clock) and the kernel does not call it synchronised, so records are \
             kept that much longer until it is (run chrony or systemd-timesyncd; a clock set \
             ahead would otherwise expire young records)"
        );
    }
}

/// Where retention keeps its clock between starts, in the log directory.
pub const CLOCK_FILE: &str = "retention-clock.json";

/// Retention's now. A wall clock set ahead (a typo in `date -s`, a real-time clock kept in
/// local time, a bad time source) would expire young records at once, and the law's floor
/// would be gone before anyone corrects the clock. So while the kernel does not call the
/// clock synchronised, retention's now advances no faster than the boot clock from a time
/// it trusted: its last pass, kept in [`CLOCK_FILE`] across starts (in an earlier boot, the
/// time since this boot began is the least that passed since, so a downtime keeps records
/// longer, never shorter); for a store without that file, its newest manifest entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionClock {
    wall_ns: i64,
    /// The boot clock at `wall_ns`, in boot `boot_id`; `None` anchors at the first pass
    /// (an empty store).
    boot_ns: Option<i64>,
    #[serde(with = "hex_u128")]
    boot_id: u128,
}

/// The boot id as the 32 hex digits the kernel shows (without its dashes).
mod hex_u128 {
    pub fn serialize<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:032x}"))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        u128::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}

impl RetentionClock {
    /// At a start: the clock the last pass kept in `dir`; else anchored at the newest time
    /// the manifest's `entries` hold, or at `now_ns` for a store that holds nothing yet
    /// (nothing it could expire is older).
    pub fn at_start(dir: &Path, entries: &[manifest::Entry], now_ns: i64, boot_id: u128) -> Self {
        // Never a blocking open (a FIFO in its place); damage is said, not passed over.
        let kept = super::fsutil::load_state::<Self>(
            &dir.join(CLOCK_FILE),
            "the retention clock kept by the last pass",
            "retention's time starts again from the newest time in the chain",
        );
        if let Some(kept) = kept {
            if kept.boot_id == boot_id && boot_id != 0 {
                return kept;
            }
            // An earlier boot: at least this boot's time passed since.
            return Self {
                boot_ns: Some(0),
                boot_id,
                ..kept
            };
        }
        let newest = entries
            .iter()
            .map(|e| match &e.body {
                Body::Segment(s) => s.time_max_ns,
                Body::Prune(p) => p.at_ns,
                Body::Compact(c) => c.at_ns.max(c.segment.time_max_ns),
                Body::Anchor(a) => a.at_ns,
            })
            .max();
        match newest {
            Some(wall_ns) => Self {
                wall_ns,
                boot_ns: Some(0),
                boot_id,
            },
            None => Self {
                wall_ns: now_ns,
                boot_ns: None,
                boot_id,
            },
        }
    }

    /// The now a pass at wall time `wall_ns` uses, and how far the wall clock runs ahead of
    /// it (0 when it is followed). `trust` `None` follows the wall clock (test clocks).
    pub fn now(&mut self, wall_ns: i64, trust: Option<Trust>) -> (i64, i64) {
        let Some(t) = trust else {
            return (wall_ns, 0);
        };
        let passed = self
            .boot_ns
            .map_or(0, |b| t.boot_ns.saturating_sub(b).max(0));
        let least = self.wall_ns.saturating_add(passed);
        let now = if t.synced || wall_ns <= least.saturating_add(AHEAD_TOLERANCE_NS) {
            wall_ns
        } else {
            least
        };
        *self = Self {
            wall_ns: now,
            boot_ns: Some(t.boot_ns),
            boot_id: t.boot_id,
        };
        let ahead = wall_ns.saturating_sub(now);
        (now, ahead)
    }

    /// Keeps this clock in `dir` for the next start (each pass, and hourly: after a reboot
    /// it goes on from there); a failure is logged, and the next start anchors at the
    /// manifest.
    pub fn keep(&self, dir: &Path) {
        let written = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|text| super::fsutil::write_atomic(dir, CLOCK_FILE, &text));
        if let Err(e) = written {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot keep retention's clock");
        }
    }
}

/// Live segments expired at `now_ns` under `days` of retention (holds aside).
pub fn expired(manifest: &Manifest, now_ns: i64, days: u32) -> Vec<SegmentInfo> {
    let Some(cutoff) = cutoff_ns(now_ns, days) else {
        return Vec::new();
    };
    live_segments(manifest.entries())
        .into_iter()
        .filter(|s| s.time_max_ns < cutoff)
        .cloned()
        .collect()
}

/// Tells retention which segments were shipped off the box (`ship`): with shipping on, an
/// expired segment not shipped yet is kept (and said so) instead of deleted.
#[derive(Clone)]
pub struct ShipGate(Arc<ShippedFn>);

/// The shipped segments: file name to the SHA-256 the bucket acknowledged for it. A segment
/// counts as shipped only when its sealed SHA-256 is that one: a stale or restored record
/// naming the file with other bytes must not let retention delete it unshipped.
pub type Shipped = HashMap<String, String>;

/// The shipped segments of the store in a directory, or why they cannot be told.
type ShippedFn = dyn Fn(&Path) -> Result<Shipped, String> + Send + Sync;

impl ShipGate {
    /// A gate asking `shipped(dir)` for the shipped segments.
    pub fn new(shipped: impl Fn(&Path) -> Result<Shipped, String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(shipped))
    }
}

impl std::fmt::Debug for ShipGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShipGate")
    }
}

/// What a retention pass did.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Segments deleted.
    pub deleted: usize,
    /// Expired segments kept, per hold in force that covers them (a segment several holds
    /// cover is listed under each).
    pub kept: Vec<(Hold, Vec<String>)>,
    /// Why nothing was deleted although segments expired: the operator log does not verify.
    pub suspended: Option<String>,
    /// Expired segments kept because they were not shipped yet (see [`ShipGate`]).
    pub unshipped: Vec<String>,
    /// Suspended for a passing condition (the operator log busy): worth a try in a minute.
    pub retry_soon: bool,
}

/// Anchors the operator log, then appends a prune entry for the expired segments no hold
/// covers, then deletes them. The entry comes first: a crash between leaves files the chain
/// calls pruned, which [`finish_interrupted`] deletes at the next start.
pub fn prune(
    dir: &Path,
    manifest: &mut Manifest,
    now_ns: i64,
    days: u32,
) -> Result<Pruned, ManifestError> {
    prune_gated(dir, manifest, now_ns, days, None)
}

/// [`prune`], keeping the expired segments `gate` says were not shipped yet (all of them if
/// the gate cannot tell), with an alert-level warning naming them.
pub fn prune_gated(
    dir: &Path,
    manifest: &mut Manifest,
    now_ns: i64,
    days: u32,
    gate: Option<&ShipGate>,
) -> Result<Pruned, ManifestError> {
    if let Some(why) = manifest.unreadable() {
        return Ok(Pruned {
            suspended: Some(why.to_owned()),
            ..Pruned::default()
        });
    }
    let anchored = oplog::anchor(dir, manifest, now_ns)?;
    let expired = expired(manifest, now_ns, days);
    let mut out = Pruned::default();
    if expired.is_empty() {
        return Ok(out);
    }
    if let Some(why) = manifest.broken() {
        tracing::error!(dir = %dir.display(), expired = expired.len(), error = %why, "retention suspended: the manifest's chain does not verify, so its times and names cannot be trusted; nothing is deleted until it does (run `xdp-audit verify`)");
        out.suspended = Some(why.to_owned());
        return Ok(out);
    }
    // Appenders wait from the holds' reading to the deletion (see `try_lock_operator_log`).
    let _appenders = match oplog::try_lock_operator_log(dir) {
        lock @ (Err(_) | Ok(oplog::LogLock::Busy)) => {
            let why = match lock {
                Err(e) => format!("{e}: the legal holds cannot be read"),
                _ => {
                    out.retry_soon = true;
                    format!(
                        "{} is held by another process: a legal hold being ordered cannot be \
                         read, so nothing is deleted until it is free (tried again in a \
                         minute)",
                        dir.join(oplog::LOG).display()
                    )
                }
            };
            tracing::warn!(dir = %dir.display(), expired = expired.len(), "retention suspended: {why}");
            out.suspended = Some(why);
            return Ok(out);
        }
        Ok(lock) => lock,
    };
    let holds = match (anchored.problem, oplog::scan(dir)) {
        (None, Ok(s)) if s.problem.is_none() => hold::in_force(&s.lines),
        (problem, scan) => {
            let why = match (problem, scan) {
                (Some(p), _) => p.to_string(),
                (None, Err(e)) => e.to_string(),
                (None, Ok(s)) => s
                    .problem
                    .map(|(line, reason)| {
                        format!("{} line {line}: {reason}", dir.join(oplog::LOG).display())
                    })
                    .unwrap_or_default(),
            };
            tracing::error!(dir = %dir.display(), expired = expired.len(), error = %why, "retention suspended: the operator log, which holds the legal holds, does not verify; nothing is deleted until it does (run `xdp-audit verify`)");
            out.suspended = Some(why);
            return Ok(out);
        }
    };
    for h in &holds {
        let kept: Vec<String> = expired
            .iter()
            .filter(|s| h.covers(s))
            .map(|s| s.file.clone())
            .collect();
        if !kept.is_empty() {
            tracing::info!(dir = %dir.display(), hold = h.id, reason = %h.window.reason, segments = kept.len(), files = %kept.join(" "), "retention kept expired segments: a legal hold covers them");
            out.kept.push((h.clone(), kept));
        }
    }
    let shipped = gate.map(|g| (g.0)(dir));
    let unshipped = |s: &SegmentInfo| match &shipped {
        None => false,
        Some(Ok(acked)) => acked.get(&s.file) != Some(&s.sha256),
        Some(Err(_)) => true,
    };
    out.unshipped = expired
        .iter()
        .filter(|s| !holds.iter().any(|h| h.covers(s)) && unshipped(s))
        .map(|s| s.file.clone())
        .collect();
    if !out.unshipped.is_empty() {
        let why = match &shipped {
            Some(Err(e)) => format!("the shipping cursor cannot be read: {e}"),
            _ => "not shipped yet".to_owned(),
        };
        tracing::warn!(alert = true, dir = %dir.display(), segments = out.unshipped.len(), files = %out.unshipped.join(" "), reason = %why, "retention kept expired segments that are not shipped off the box yet; they are deleted once the bucket has them (see `xdp-audit status`, ship backlog)");
    }
    let files: Vec<RemovedFile> = expired
        .iter()
        .filter(|s| !holds.iter().any(|h| h.covers(s)) && !unshipped(s))
        .map(|s| RemovedFile {
            file: s.file.clone(),
            sha256: s.sha256.clone(),
        })
        .collect();
    if files.is_empty() {
        return Ok(out);
    }
    out.deleted = files.len();
    manifest.append(Body::Prune(PruneInfo {
        at_ns: now_ns,
        retention_days: days,
        files,
    }))?;
    finish_interrupted(dir, manifest)?;
    tracing::info!(dir = %dir.display(), segments = out.deleted, retention_days = days, "retention deleted expired segments");
    Ok(out)
}

/// Deletes files the chain took out of the live set (pruned, or merged by compaction) but
/// which still exist: what a crash between the entry and the deletion leaves. A file whose
/// SHA-256 is not the one the chain recorded for it is not the segment the entry removed: it
/// is moved into `quarantine/` instead, with an error. Nothing is deleted while the chain does
/// not verify ([`Manifest::broken`]): a changed entry could name any file. Nor is anything
/// deleted on the word of an entry that removes a file not live in the chain up to it, or a
/// name that is no segment's inside `dir` ([`manifest::removed_checked`],
/// [`manifest::is_segment_file`]: what `verify` checks): the chain has no key, and a forged
/// one that is consistent could otherwise name any file.
pub fn finish_interrupted(dir: &Path, manifest: &Manifest) -> Result<(), ManifestError> {
    if let Some(why) = manifest.broken() {
        tracing::error!(dir = %dir.display(), error = %why, "files the chain removed are not deleted: the manifest's chain does not verify (run `xdp-audit verify`)");
        return Ok(());
    }
    let removed = match manifest::removed_checked(manifest.entries()) {
        Ok(removed) => removed,
        Err(why) => {
            let path = dir.join(manifest::MANIFEST);
            tracing::error!(file = %path.display(), error = %why, "files the chain removed are not deleted: an entry removes a file that was not a live segment (run `xdp-audit verify`)");
            return Ok(());
        }
    };
    let io = |path: &Path, op, cause| ManifestError::Io {
        path: path.to_owned(),
        op,
        cause,
    };
    let mut changed = false;
    for f in removed {
        if !manifest::is_segment_file(&f.file) {
            // `removed_checked` refused it already; never join such a name to `dir`.
            continue;
        }
        let path = dir.join(&f.file);
        let sha = match sha256_file(&path) {
            Ok(sha) => sha,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                // Another kind of file in its place, or one that cannot be read: not what
                // this cleanup is for, and never a reason to stop the store (`verify` says
                // what is wrong with it).
                tracing::error!(file = %path.display(), error = %e, "a segment the chain removed is still there and cannot be checked; left in place (run `xdp-audit verify`)");
                continue;
            }
        };
        if sha == f.sha256 {
            std::fs::remove_file(&path)
                .map_err(|e| io(&path, "delete a segment the chain removed", e))?;
        } else {
            let to =
                quarantine_file(dir, &f.file).map_err(|e| io(&path, "move into quarantine", e))?;
            tracing::error!(file = %path.display(), sha256 = %sha, recorded = %f.sha256, quarantine = %to.display(), "a segment the chain removed holds other bytes than the chain recorded for it; moved into quarantine instead of deleted (run `xdp-audit verify`)");
        }
        changed = true;
    }
    if changed {
        sync_dir(dir).map_err(|e| io(dir, "fsync directory", e))?;
    }
    Ok(())
}

/// Moves `dir/name` into `dir/quarantine/` (as `name`, or `name.1`, `name.2`, ... when taken)
/// and returns where it went.
pub(super) fn quarantine_file(dir: &Path, name: &str) -> std::io::Result<std::path::PathBuf> {
    let qdir = dir.join(QUARANTINE_DIR);
    super::journal::make_quarantine_dir(&qdir)?;
    let mut to = qdir.join(name);
    let mut k = 0u32;
    while to.try_exists()? {
        k += 1;
        to = qdir.join(format!("{name}.{k}"));
    }
    std::fs::rename(dir.join(name), &to)?;
    sync_dir(&qdir)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_000_000_000;
    const MIN: i64 = 60 * 1_000_000_000;

    const BOOT: u128 = 0xb007;

    fn trust(boot_ns: i64, synced: bool) -> Option<Trust> {
        Some(Trust {
            boot_ns,
            boot_id: BOOT,
            synced,
        })
    }

    /// A directory with no kept clock in it.
    fn nowhere() -> &'static Path {
        Path::new("/nonexistent/xdp-audit")
    }

    /// A wall clock set ahead while the kernel does not call it synchronised moves
    /// retention's now only as far as the boot clock moved; once synchronised, it is
    /// followed again.
    #[test]
    fn a_clock_set_ahead_does_not_move_retention() {
        let mut c = RetentionClock::at_start(nowhere(), &[], T, BOOT);
        assert_eq!(c.now(T, trust(5 * MIN, false)), (T, 0), "the first pass");
        // A day later by both clocks: followed.
        let day = T + DAY_NS;
        assert_eq!(c.now(day, trust(5 * MIN + DAY_NS, false)), (day, 0));
        // Drift within the tolerance: followed.
        let next = day + DAY_NS + 3 * MIN;
        assert_eq!(c.now(next, trust(5 * MIN + 2 * DAY_NS, false)), (next, 0));
        // Set 100 days ahead, a day later by the boot clock: a day, not 100.
        let boot = 5 * MIN + 3 * DAY_NS;
        let ahead = next + 101 * DAY_NS;
        assert_eq!(
            c.now(ahead, trust(boot, false)),
            (next + DAY_NS, 100 * DAY_NS)
        );
        // Still ahead the next day: the held now moves on by a day.
        assert_eq!(
            c.now(ahead + DAY_NS, trust(boot + DAY_NS, false)),
            (next + 2 * DAY_NS, 100 * DAY_NS)
        );
        // Synchronised: the wall clock is taken as corrected.
        assert_eq!(c.now(next, trust(boot + 2 * DAY_NS, true)), (next, 0));
        // A clock set back is followed (it expires less).
        assert_eq!(c.now(T, trust(boot + 3 * DAY_NS, false)), (T, 0));
        // A test clock (no trust) is followed as is.
        assert_eq!(c.now(T + 500 * DAY_NS, None), (T + 500 * DAY_NS, 0));
    }

    /// At a start without a kept clock, the held now is the store's newest entry plus the
    /// time since the boot.
    #[test]
    fn a_start_counts_from_the_stores_newest_entry() {
        let anchor = |at_ns| manifest::Entry {
            seq: 0,
            body: Body::Anchor(manifest::AnchorInfo {
                at_ns,
                log: oplog::LOG.into(),
                lines: 0,
                bytes: 0,
                head: String::new(),
            }),
            prev: String::new(),
            hash: String::new(),
        };
        let entries = [anchor(T - DAY_NS), anchor(T)];
        let mut c = RetentionClock::at_start(nowhere(), &entries, T + 200 * DAY_NS, BOOT);
        // Booted 10 minutes ago with a wall clock 200 days past the store's newest entry.
        assert_eq!(
            c.now(T + 200 * DAY_NS, trust(10 * MIN, false)),
            (T + 10 * MIN, 200 * DAY_NS - 10 * MIN)
        );
        // The same after a normal downtime within the tolerance: followed.
        let mut c = RetentionClock::at_start(nowhere(), &entries, T + 15 * MIN, BOOT);
        assert_eq!(
            c.now(T + 15 * MIN, trust(10 * MIN, false)),
            (T + 15 * MIN, 0)
        );
    }

    /// The clock a pass kept goes on at the next start: in the same boot from the boot
    /// clock it was kept at (a restart does not lose the hold, nor count the uptime twice),
    /// in another from the boot's start; the store's entries, written on the clock set
    /// ahead, count for nothing then.
    #[test]
    fn a_restart_goes_on_with_the_kept_clock() {
        let tmp = crate::blocklist::tests::TempDir::new("retention-clock");
        let dir = &tmp.0;
        let mut c = RetentionClock::at_start(dir, &[], T, BOOT);
        let up = 200 * DAY_NS;
        assert_eq!(c.now(T, trust(up, false)), (T, 0));
        // Set 150 days ahead (within the uptime), held, kept.
        let ahead = T + 150 * DAY_NS;
        assert_eq!(
            c.now(ahead, trust(up + MIN, false)),
            (T + MIN, 150 * DAY_NS - MIN)
        );
        c.keep(dir);
        // An entry sealed on the clock set ahead does not move the next start.
        let sealed = manifest::Entry {
            seq: 0,
            body: Body::Prune(manifest::PruneInfo {
                at_ns: ahead,
                retention_days: 90,
                files: Vec::new(),
            }),
            prev: String::new(),
            hash: String::new(),
        };
        let mut same = RetentionClock::at_start(dir, std::slice::from_ref(&sealed), ahead, BOOT);
        assert_eq!(
            same.now(ahead + MIN, trust(up + 2 * MIN, false)),
            (T + 2 * MIN, 150 * DAY_NS - MIN),
            "a restart in the same boot"
        );
        let mut other = RetentionClock::at_start(dir, &[sealed], ahead, BOOT + 1);
        assert_eq!(
            other.now(ahead, trust(5 * MIN, false)),
            (T + 6 * MIN, 150 * DAY_NS - 6 * MIN),
            "a start in another boot, 5 minutes after it began"
        );
    }

    #[test]
    fn a_retention_past_the_clock_expires_nothing() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(cutoff_ns(now, 90), Some(now - 90 * DAY_NS));
        // 106,752 days no longer fit in i64 nanoseconds: nothing expires, not everything.
        assert_eq!(cutoff_ns(now, 106_752), None);
        assert_eq!(cutoff_ns(now, u32::MAX), None);
        assert_eq!(cutoff_ns(i64::MIN, 1), None);
    }

    #[test]
    fn retention_days_are_accepted_from_the_floor_to_the_maximum() {
        assert_eq!(check_days(LEGAL_FLOOR_DAYS), Ok(LEGAL_FLOOR_DAYS));
        assert_eq!(check_days(MAX_DAYS), Ok(MAX_DAYS));
        assert_eq!(check_days(89), Err(RefusedDays::BelowFloor { days: 89 }));
        let e = check_days(106_752).expect_err("past the maximum");
        assert_eq!(e, RefusedDays::AboveMax { days: 106_752 });
        let msg = e.to_string();
        assert!(msg.contains("106752") && msg.contains("36500"), "{msg}");
    }
}
