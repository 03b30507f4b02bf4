//! Shipping the sealed store off the box: every live segment and the manifest go to an
//! S3-compatible bucket (`--ship s3://BUCKET/PREFIX`), at least once and resumably.
//!
//! `config` (flags, credentials, secrets) -> `layout` (object keys) -> `cursor` (what was
//! acknowledged, persisted in the store directory) -> `remote` (the S3 client: conditional
//! create, checksums, multipart, verification) -> `worker` (a pass over the chain) -> this
//! module's [`Shipper`] (the thread, its status) -> `verify` (`xdp-audit verify --remote`).
//!
//! The shipper sits beside the sealer, not in the record path: it reads `manifest.jsonl`
//! after the sealer rewrote it (polling its size and time), so it can neither block nor slow
//! the journal writer. Local retention asks the cursor before deleting (`ShipGate`).

pub mod config;
pub mod cursor;
pub mod echo;
#[cfg(test)]
mod hostile;
pub mod layout;
pub mod remote;
pub mod verify;
pub mod worker;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::fsutil;
use crate::store::retention::ShipGate;
use config::ShipConfig;
use cursor::{Cursor, CursorError};
use layout::Layout;
use remote::{Remote, RemoteError};
use worker::{backoff, manifest_stamp, Pass, Worker};

/// Lock file in the store directory: one shipper per store.
pub const LOCK: &str = "ship.lock";

/// What `status` shows about shipping (`status.json`'s `ship` block).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipStatus {
    /// `s3://BUCKET/PREFIX/gateway=ID`.
    pub target: String,
    /// Live segments not yet acknowledged by the bucket.
    pub backlog_segments: u64,
    /// Their bytes.
    pub backlog_bytes: u64,
    /// Seconds since the newest record of the oldest unacknowledged segment (none: no backlog).
    pub oldest_age_s: Option<u64>,
    /// Unacknowledged segments older than the retention, which local retention keeps until
    /// they are shipped.
    pub kept_for_shipping: u64,
    /// Segments acknowledged since start.
    pub shipped_segments: u64,
    /// Their bytes.
    pub shipped_bytes: u64,
    /// Of those, uploads that found the identical object already there (after a crash).
    pub identical_reuploads: u64,
    /// Failed passes since start (each retried with backoff).
    pub failures: u64,
    /// The last failure, until a pass succeeds.
    pub last_error: Option<String>,
    /// When the last pass left nothing to ship (RFC 3339).
    pub caught_up_at: Option<String>,
    /// Chain head `seq` of the last manifest acknowledged.
    pub manifest_seq: Option<u64>,
    /// Acknowledged segments found gone from the bucket (or changed there) as retention's
    /// cutoff came near, and shipped again, since start.
    #[serde(default)]
    pub gone_from_bucket: u64,
}

impl ShipStatus {
    /// The `xdp-audit status` lines.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "shipping to {}: backlog {} segments ({} bytes){}; {} shipped ({} bytes, {} identical re-uploads), {} failed passes",
            self.target,
            self.backlog_segments,
            self.backlog_bytes,
            self.oldest_age_s
                .map(|a| format!(", oldest {a} s old"))
                .unwrap_or_default(),
            self.shipped_segments,
            self.shipped_bytes,
            self.identical_reuploads,
            self.failures,
        );
        if self.gone_from_bucket > 0 {
            out.push_str(&format!(
                "\n  ALERT: {} acknowledged segments were gone from the bucket (or changed there) before retention; shipped again",
                self.gone_from_bucket
            ));
        }
        if self.kept_for_shipping > 0 {
            out.push_str(&format!(
                "\n  ALERT: {} expired segments are kept locally until shipped (retention waits for the bucket)",
                self.kept_for_shipping
            ));
        }
        if let Some(e) = &self.last_error {
            out.push_str(&format!("\n  last error: {e}"));
        }
        out
    }
}

/// Errors of the shipper.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The bucket.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The cursor file.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The manifest could not be read.
    #[error("{0}")]
    Manifest(String),
    /// The store's chain ends before the head whose manifest the bucket acknowledged, or
    /// holds another entry there.
    #[error("{}: the bucket acknowledged the chain up to entry {acked}, but the store's chain {}: the store was rolled back or replaced; nothing is shipped, and the cursor keeps the evidence (`xdp-audit compliance` names it). A store replaced on purpose ships under a new --gateway-id", dir.display(), match (replaced, head) { (true, _) => "holds another entry there".to_owned(), (false, Some(h)) => format!("ends at entry {h}"), (false, None) => "ends before its first entry".to_owned() })]
    RolledBack {
        /// The store directory.
        dir: PathBuf,
        /// The chain head whose manifest the bucket acknowledged.
        acked: u64,
        /// The store's chain head now.
        head: Option<u64>,
        /// The store's entry at `acked` is another than the one acknowledged.
        replaced: bool,
    },
    /// Live segments whose files are gone from the store: not shipped (the others were);
    /// the chain, read again after the pass, still lists them.
    #[error("{}: {} listed live by the manifest but missing; not shipped, the other segments were (run `xdp-audit verify`)", dir.display(), files.join(" "))]
    Missing {
        /// The store directory.
        dir: PathBuf,
        /// The missing segments' file names.
        files: Vec<String>,
    },
    /// Segments refused one by one (a damaged file, another object under the key): the
    /// others were shipped; the manifest waits until every live segment is.
    #[error("{} segments not shipped, the others were: {}", .0.len(), first_few(.0))]
    NotShipped(Vec<RemoteError>),
    /// A pass panicked (a bug, or a server's answer the client did not expect): counted as a
    /// failed pass and retried, instead of ending the shipping thread without a word.
    #[error("the shipping pass panicked: {0}; retried with backoff")]
    Panicked(String),
    /// Another shipper works on this store.
    #[error("{0}: another shipper holds the lock (an agent run with --ship, or `xdp-audit ship`)")]
    Locked(PathBuf),
    /// The lock or the thread could not be set up.
    #[error("{path}: {op}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        cause: std::io::Error,
    },
}

/// The first three of `errors`, and how many more (a status line, logged at every pass).
fn first_few(errors: &[RemoteError]) -> String {
    let mut text: Vec<String> = errors.iter().take(3).map(ToString::to_string).collect();
    if errors.len() > 3 {
        text.push(format!("and {} more", errors.len() - 3));
    }
    text.join("; ")
}

impl ShipError {
    /// Whether it is the state of the store directory's shipping files (the lock held by
    /// another shipper, a cursor refused or unreadable, the lock not a file) rather than the
    /// configuration: the agent then records without shipping, and retention keeps what is
    /// not shipped, instead of refusing to start.
    pub fn is_state(&self) -> bool {
        matches!(self, Self::Locked(_) | Self::Cursor(_) | Self::Io { .. })
    }
}

/// Timing of the shipping loop.
#[derive(Clone, Debug)]
pub struct ShipOptions {
    /// How often the manifest is looked at.
    pub poll: Duration,
    /// Longest wait between failed passes.
    pub backoff_max: Duration,
    /// The local retention, days (for [`ShipStatus::kept_for_shipping`]).
    pub retention_days: u32,
}

impl Default for ShipOptions {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            retention_days: crate::store::retention::DEFAULT_DAYS,
        }
    }
}

/// The gate retention asks before deleting: segments the cursor in the store does not hold
/// for `cfg`'s target are kept (read from the file each time, so it holds across restarts).
pub fn retention_gate(cfg: &ShipConfig) -> ShipGate {
    let target = target_name(cfg);
    ShipGate::new(move |dir| cursor::shipped(dir, &target))
}

/// The target string a cursor is bound to.
pub fn target_name(cfg: &ShipConfig) -> String {
    let layout = Layout::new(&cfg.target.prefix, &cfg.gateway_id);
    format!("s3://{}/{}", cfg.target.bucket, layout.base())
}

fn lock(dir: &Path) -> Result<File, ShipError> {
    let path = dir.join(LOCK);
    // Never a blocking open: a FIFO in the lock's place would hold the start forever. Nor
    // through a symbolic link: `xdp-audit ship` run as root would create the file it names.
    // Made by root, the lock is still the agent's to take.
    let io = |op| {
        let path = path.clone();
        move |cause| ShipError::Io { path, op, cause }
    };
    let f = fsutil::open_regular_here(&path, File::options().write(true).create(true))
        .map_err(|e| io("create")(e.into()))?;
    fsutil::give_to_dir_owner(&f, dir, fsutil::FILE_MODE)
        .map_err(io("give to the store's owner"))?;
    if !fsutil::lock_exclusive(&f, fsutil::LOCK_PATIENCE).map_err(io("lock"))? {
        return Err(ShipError::Locked(path));
    }
    Ok(f)
}

fn worker(dir: &Path, cfg: &ShipConfig, opts: &ShipOptions) -> Result<Worker, ShipError> {
    let target = target_name(cfg);
    let cursor = Cursor::load(dir, &target)?;
    let status = ShipStatus {
        target,
        manifest_seq: cursor.manifest_seq,
        ..ShipStatus::default()
    };
    Ok(Worker {
        dir: dir.to_owned(),
        layout: Layout::new(&cfg.target.prefix, &cfg.gateway_id),
        remote: Remote::new(cfg)?,
        cursor,
        multipart_bytes: cfg.multipart_bytes,
        retention_days: opts.retention_days,
        status: Arc::new(Mutex::new(status)),
        stop: Arc::new(AtomicBool::new(false)),
        settled_past: std::collections::HashSet::new(),
        manifest_copies_kept: false,
        manifest_to_drop: None,
        rechecked: std::collections::HashSet::new(),
    })
}

/// Ships the store in `dir` until it is caught up (or a pass fails), in the calling thread:
/// `xdp-audit ship` without `--follow`, and tests.
pub fn ship_once(
    dir: &Path,
    cfg: &ShipConfig,
    opts: &ShipOptions,
) -> Result<ShipStatus, ShipError> {
    let _lock = lock(dir)?;
    let mut w = worker(dir, cfg, opts)?;
    while w.pass()? == Pass::Again {}
    let s = w.status.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(s)
}

/// One pass with a panic caught and returned as [`ShipError::Panicked`]: the thread goes on,
/// and the status counts the failure (an uncaught panic ended the thread, leaving a status
/// that looked healthy while nothing shipped).
fn pass_caught(w: &mut Worker) -> Result<Pass, ShipError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.pass())).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        Err(ShipError::Panicked(what))
    })
}

/// The shipping thread; dropping it stops it between requests (waiting at most a few seconds
/// for a request in flight: an upload cut short is uploaded again at the next start).
pub struct Shipper {
    status: Arc<Mutex<ShipStatus>>,
    stop: Arc<AtomicBool>,
    wake: Sender<()>,
    done: std::sync::mpsc::Receiver<()>,
    handle: Option<JoinHandle<()>>,
}

/// A cloneable view of the shipper's status (for the status writer).
#[derive(Clone)]
pub struct ShipHandle(Arc<Mutex<ShipStatus>>);

impl ShipHandle {
    /// The status of an agent that ships to `target` but could not start its shipper (see
    /// [`ShipError::is_state`]): one failure with its cause, so `status` shows it and
    /// `XA-SHIP-FAILING` is raised, where no status at all read like an agent run without
    /// `--ship`.
    pub fn not_shipping(target: String, cause: &ShipError) -> Self {
        Self(Arc::new(Mutex::new(ShipStatus {
            target,
            failures: 1,
            last_error: Some(format!(
                "not shipping since the start: {cause}; fix it and restart the agent"
            )),
            ..ShipStatus::default()
        })))
    }

    /// The current status.
    pub fn status(&self) -> ShipStatus {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl std::fmt::Debug for ShipHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShipHandle")
    }
}

impl Shipper {
    /// Takes the store's shipping lock, loads the cursor and starts the thread.
    pub fn spawn(dir: &Path, cfg: &ShipConfig, opts: ShipOptions) -> Result<Self, ShipError> {
        let lock = lock(dir)?;
        let mut w = worker(dir, cfg, &opts)?;
        let status = w.status.clone();
        let stop = w.stop.clone();
        let (wake, woken) = channel::<()>();
        let (done_tx, done) = channel::<()>();
        let handle = std::thread::Builder::new()
            .name("xdp-audit-ship".into())
            .spawn(move || {
                let _lock = lock;
                let mut failures = 0u32;
                let mut stamp = None;
                let mut due = true;
                while !w.stop.load(Ordering::Relaxed) {
                    let now_stamp = manifest_stamp(&w.dir);
                    if due || now_stamp != stamp {
                        stamp = now_stamp;
                        match pass_caught(&mut w) {
                            Ok(Pass::CaughtUp) => {
                                failures = 0;
                                due = false;
                            }
                            Ok(Pass::Again) => continue,
                            Ok(Pass::Stopped) => break,
                            Err(e) => {
                                due = true;
                                let wait = backoff(failures, opts.backoff_max);
                                failures = failures.saturating_add(1);
                                let msg = e.to_string();
                                tracing::warn!(error = %msg, retry_in_ms = wait.as_millis() as u64, "shipping failed; segments stay in the backlog and are retried");
                                if let Ok(mut s) = w.status.lock() {
                                    s.failures += 1;
                                    s.last_error = Some(msg);
                                }
                                if !wait_out(&woken, wait, BACKLOG_REFRESH, || w.refresh_backlog()) {
                                    break;
                                }
                                continue;
                            }
                        }
                    }
                    if let Err(RecvTimeoutError::Disconnected) = woken.recv_timeout(opts.poll) {
                        break;
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|cause| ShipError::Io {
                path: dir.to_owned(),
                op: "start the shipping thread",
                cause,
            })?;
        Ok(Self {
            status,
            stop,
            wake,
            done,
            handle: Some(handle),
        })
    }

    /// A view of the status for the status writer.
    pub fn handle(&self) -> ShipHandle {
        ShipHandle(self.status.clone())
    }

    /// The current status.
    pub fn status(&self) -> ShipStatus {
        self.handle().status()
    }

    /// Asks for a pass now (the next poll would see the change anyway).
    pub fn wake(&self) {
        let _ = self.wake.send(());
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.send(());
        if self.done.recv_timeout(Duration::from_secs(5)).is_ok() {
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        } else {
            tracing::warn!("the shipping thread is still in a request; leaving it (the next start uploads again what was not acknowledged)");
        }
    }
}

/// How often the backlog is counted again while a failed pass waits for its retry.
const BACKLOG_REFRESH: Duration = Duration::from_secs(5);

/// Waits `wait` before a retry (or until woken), counting the backlog again `every` while
/// ([`BACKLOG_REFRESH`]): counted only by passes, it stood still through an outage
/// (the oldest segment's age too) while segments were sealed. False when the shipper is
/// dropped.
fn wait_out(
    woken: &std::sync::mpsc::Receiver<()>,
    wait: Duration,
    every: Duration,
    refresh: impl Fn(),
) -> bool {
    let until = std::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        match woken.recv_timeout(left.min(every)) {
            Ok(()) => return true,
            Err(RecvTimeoutError::Timeout) => refresh(),
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_says_the_backlog_and_alerts_on_segments_retention_keeps() {
        let s = ShipStatus {
            target: "s3://b/p/gateway=g".into(),
            backlog_segments: 3,
            backlog_bytes: 4096,
            oldest_age_s: Some(7200),
            kept_for_shipping: 2,
            last_error: Some("PUT k: connection refused".into()),
            ..ShipStatus::default()
        };
        let text = s.summary();
        for want in [
            "backlog 3 segments (4096 bytes), oldest 7200 s old",
            "ALERT: 2 expired segments",
            "last error: PUT k: connection refused",
        ] {
            assert!(text.contains(want), "{want:?} missing from {text}");
        }
        // The block round-trips through status.json.
        let back: ShipStatus =
            serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("parse");
        assert_eq!(back, s);
        assert!(!ShipStatus::default().summary().contains("ALERT"));
    }

    /// `ship` is often run by root in a store the agent's user owns: a link planted in the
    /// lock's place is not followed (root created the file it named), and the lock it makes is
    /// the store owner's, so the agent can still take it.
    #[test]
    fn the_lock_follows_no_link_and_is_the_store_owners() {
        use std::os::unix::fs::MetadataExt;
        let tmp = crate::blocklist::tests::TempDir::new("ship-lock");
        let dir = tmp.0.join("log");
        std::fs::create_dir_all(&dir).expect("store dir");
        let victim = tmp.0.join("victim");
        std::os::unix::fs::symlink(&victim, dir.join(LOCK)).expect("link");
        let e = lock(&dir).expect_err("a link");
        assert!(e.to_string().contains(LOCK), "{e}");
        assert!(!victim.exists(), "nothing made where the link points");
        std::fs::remove_file(dir.join(LOCK)).expect("unlink");
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown");
        }
        let held = lock(&dir).expect("lock");
        let m = held.metadata().expect("stat");
        let d = std::fs::metadata(&dir).expect("stat dir");
        assert_eq!((m.uid(), m.gid()), (d.uid(), d.gid()), "the store's owner");
        assert_eq!(m.mode() & 0o777, fsutil::FILE_MODE);
    }

    /// A retry's wait counts the backlog again and again (it stood still through an
    /// outage), ends early when woken, and says when the shipper is gone.
    #[test]
    fn a_retry_wait_refreshes_the_backlog_meanwhile() {
        let (wake, woken) = channel::<()>();
        let refreshed = std::cell::Cell::new(0);
        let every = Duration::from_millis(20);
        let wait = Duration::from_millis(200);
        assert!(wait_out(&woken, wait, every, || refreshed.set(refreshed.get() + 1)));
        assert!(refreshed.get() >= 5, "{} refreshes", refreshed.get());
        wake.send(()).expect("wake");
        let at = std::time::Instant::now();
        assert!(wait_out(&woken, Duration::from_secs(60), every, || ()));
        assert!(at.elapsed() < Duration::from_secs(30), "woken at once");
        drop(wake);
        assert!(!wait_out(&woken, wait, every, || ()), "the shipper is gone");
    }
}
