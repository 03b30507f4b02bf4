//! Tells the run loop which list files changed: inotify on the files' parent directories,
//! debounced, plus a SIGHUP stream.
//!
//! The directories are watched, not the files, because editors and downloaders replace a
//! file by writing a temporary and renaming it over the original (and `mv` does the same):
//! a watch on the old inode would see nothing. Events are taken only when a file is complete
//! (closed after writing, renamed into place, deleted, or a symbolic link created): never on
//! each `write`, nor when a regular file is created (its writer has only begun; its close
//! reports it), so a half-written file is not read on purpose. A deletion is reported only
//! if the file is still absent once the burst is over: one written anew meanwhile is
//! reported by its close. A burst of events (an editor's write, rename
//! and chmod) becomes one report once `debounce` has passed without a new event, or at most
//! ten debounce periods after the first one, so a file rewritten non-stop is still reloaded.
//!
//! A list that is a symbolic link is watched both as the link and as the file it pointed to at
//! start-up. Limits: a directory that is itself removed or renamed is no longer watched, and
//! a link re-pointed elsewhere is followed only from the next start; SIGHUP reloads every
//! list in both cases.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

/// Why the watcher could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// `inotify_init1` failed (for instance, the per-user instance limit).
    #[error("inotify: cannot initialise: {0}")]
    Init(std::io::Error),
    /// A list's directory could not be watched.
    #[error("inotify: cannot watch directory {dir}: {cause}")]
    AddWatch {
        /// The directory.
        dir: PathBuf,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// A path with no file name (`/`, `..`).
    #[error("{0}: not a file path")]
    NotAFile(PathBuf),
    /// Reading events failed.
    #[error("inotify: read failed: {0}")]
    Read(std::io::Error),
}

/// Watches list files; [`ListWatcher::changed`] yields the paths that changed.
pub struct ListWatcher {
    fd: AsyncFd<Inotify>,
    /// Per watched directory, the file names in it we care about and their paths as given.
    targets: HashMap<WatchDescriptor, Vec<(OsString, PathBuf)>>,
    /// Each watched directory's path.
    dirs: HashMap<WatchDescriptor, PathBuf>,
    /// Files closed after writing, renamed into place, linked: complete, to be read.
    pending: BTreeSet<PathBuf>,
    /// Files deleted or renamed away: reported only if still absent when the burst is
    /// over. One made anew meanwhile is being written (writes raise no event here) and
    /// its close reports it; read before that, its first lines would be taken for the list.
    gone: BTreeSet<PathBuf>,
    first_event: Option<Instant>,
    last_event: Option<Instant>,
    debounce: Duration,
    buf: Vec<u8>,
}

/// The default quiet period before a burst of events is reported.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);

impl ListWatcher {
    /// Watches `paths` (which need not exist yet; their directories must). Must be called
    /// inside a tokio runtime.
    pub fn new<P: AsRef<Path>>(paths: &[P], debounce: Duration) -> Result<Self, WatchError> {
        let inotify = Inotify::init().map_err(WatchError::Init)?;
        let mut targets: HashMap<WatchDescriptor, Vec<(OsString, PathBuf)>> = HashMap::new();
        let mut dirs = HashMap::new();
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ONLYDIR;
        for path in paths {
            let path = path.as_ref();
            let (dir, name) = dir_and_name(path)?;
            // The same directory yields the same descriptor, so files in one directory share it.
            let wd = inotify
                .watches()
                .add(dir, mask)
                .map_err(|source| WatchError::AddWatch {
                    dir: dir.to_owned(),
                    cause: source,
                })?;
            dirs.insert(wd.clone(), dir.to_owned());
            targets
                .entry(wd)
                .or_default()
                .push((name.to_owned(), path.to_owned()));
            // A list that is a symbolic link (`/etc/xdp-audit/block.txt` -> a feed directory)
            // changes where its target lives: watch the target's directory too.
            if let Ok(real) = std::fs::canonicalize(path) {
                let (real_dir, real_name) = dir_and_name(&real)?;
                if real_dir != dir || real_name != name {
                    if let Ok(wd) = inotify.watches().add(real_dir, mask) {
                        dirs.insert(wd.clone(), real_dir.to_owned());
                        targets
                            .entry(wd)
                            .or_default()
                            .push((real_name.to_owned(), path.to_owned()));
                    }
                }
            }
        }
        // SAFETY: `Inotify` owns its descriptor and closes it only when dropped; it lives
        // inside the `AsyncFd` and is never closed or replaced while registered.
        let fd = unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }
            .map_err(|e| WatchError::Init(e.into()))?;
        Ok(ListWatcher {
            fd,
            targets,
            dirs,
            pending: BTreeSet::new(),
            gone: BTreeSet::new(),
            first_event: None,
            last_event: None,
            debounce,
            buf: vec![0; 16 * 1024],
        })
    }

    /// Waits for the next debounced set of changed paths (as given to [`ListWatcher::new`]),
    /// sorted, never empty. Cancel-safe: events seen before a cancellation are kept for the
    /// next call, so it can sit in a `tokio::select!` loop.
    pub async fn changed(&mut self) -> Result<Vec<PathBuf>, WatchError> {
        loop {
            let deadline = match (self.first_event, self.last_event) {
                (Some(first), Some(last)) => {
                    Some((last + self.debounce).min(first + self.debounce * 10))
                }
                _ => None,
            };
            let quiet = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ready = self.fd.readable_mut() => {
                    let mut guard = ready.map_err(WatchError::Read)?;
                    let buf = &mut self.buf;
                    let read = guard.try_io(|inotify| {
                        let events = inotify.get_mut().read_events(buf)?;
                        Ok(events
                            .map(|e| (e.wd, e.mask, e.name.map(|n| n.to_owned())))
                            .collect::<Vec<_>>())
                    });
                    match read {
                        Ok(Ok(events)) => self.note(events),
                        Ok(Err(e)) => return Err(WatchError::Read(e)),
                        Err(_would_block) => continue,
                    }
                }
                () = quiet => {
                    self.first_event = None;
                    self.last_event = None;
                    let mut changed = std::mem::take(&mut self.pending);
                    for path in std::mem::take(&mut self.gone) {
                        if std::fs::symlink_metadata(&path).is_err() {
                            changed.insert(path); // its reload says it is missing
                        }
                    }
                    let changed: Vec<PathBuf> = changed.into_iter().collect();
                    if !changed.is_empty() {
                        return Ok(changed);
                    }
                }
            }
        }
    }

    fn note(&mut self, events: Vec<(WatchDescriptor, EventMask, Option<OsString>)>) {
        let mut relevant = false;
        for (wd, mask, name) in events {
            if mask.contains(EventMask::Q_OVERFLOW) {
                // Events were lost: any file may have changed.
                for files in self.targets.values() {
                    self.pending.extend(files.iter().map(|(_, p)| p.clone()));
                }
                relevant = true;
                continue;
            }
            let (Some(files), Some(name)) = (self.targets.get(&wd), name) else {
                continue;
            };
            if !files.iter().any(|(n, _)| *n == name) {
                continue;
            }
            if mask.contains(EventMask::CREATE) && self.is_regular(&wd, &name) {
                // A regular file created is still being written: its close reports it.
                continue;
            }
            let gone = mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM);
            for (n, path) in files {
                if *n == name {
                    if gone {
                        self.gone.insert(path.clone());
                    } else {
                        self.pending.insert(path.clone());
                    }
                    relevant = true;
                }
            }
        }
        // Every relevant event restarts the quiet period.
        if relevant {
            let now = Instant::now();
            self.first_event.get_or_insert(now);
            self.last_event = Some(now);
        }
    }

    /// Whether `name` in the directory of `wd` is a regular file now. What else is created
    /// (`ln -s`, `mkfifo`, `mkdir`) is made whole, with no close or rename to report it: read
    /// at once, it is named (or refused by what it is) rather than passed over until SIGHUP.
    fn is_regular(&self, wd: &WatchDescriptor, name: &std::ffi::OsStr) -> bool {
        self.dirs.get(wd).is_none_or(|dir| {
            std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.file_type().is_file())
        })
    }
}

fn dir_and_name(path: &Path) -> Result<(&Path, &std::ffi::OsStr), WatchError> {
    let name = path
        .file_name()
        .ok_or_else(|| WatchError::NotAFile(path.to_owned()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// A stream of SIGHUPs for the run loop's `select!` (`sighup()?.recv()`): reload every list.
pub fn sighup() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::TempDir;

    async fn next(w: &mut ListWatcher) -> Vec<PathBuf> {
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("a change within 5 s")
            .expect("watcher works")
    }

    /// Every path reported until a report names `last` (the caller's last write): the events
    /// before it, however the runner's timing splits them into reports.
    async fn reported_until(w: &mut ListWatcher, last: &Path) -> BTreeSet<PathBuf> {
        let mut seen = BTreeSet::new();
        while !seen.contains(last) {
            seen.extend(next(w).await);
        }
        seen
    }

    #[tokio::test]
    async fn sees_write_rename_over_and_delete_recreate() {
        let dir = TempDir::new("watch");
        let a = dir.0.join("a.txt");
        let b = dir.0.join("b.txt");
        std::fs::write(&a, "1\n").expect("write");
        let mut w = ListWatcher::new(&[&a, &b], Duration::from_millis(100)).expect("watch");

        // In-place write.
        std::fs::write(&a, "2\n").expect("write");
        assert_eq!(next(&mut w).await, std::slice::from_ref(&a));

        // An editor's save: write a temporary, rename it over the list.
        let tmp = dir.0.join(".a.txt.swp");
        std::fs::write(&tmp, "3\n").expect("write");
        std::fs::rename(&tmp, &a).expect("rename");
        assert_eq!(next(&mut w).await, std::slice::from_ref(&a));

        // Delete, then create again: reported (in one debounced report, or two if the runner
        // is slow; `b`, written last, marks the end of what this step reports).
        std::fs::remove_file(&a).expect("rm");
        std::fs::write(&a, "4\n").expect("write");
        std::fs::write(&b, "0\n").expect("write");
        assert_eq!(
            reported_until(&mut w, &b).await,
            BTreeSet::from([a.clone(), b.clone()])
        );

        // A burst over two files is one report; unrelated files are ignored.
        std::fs::write(dir.0.join("other.txt"), "x").expect("write");
        std::fs::write(&a, "5\n").expect("write");
        std::fs::write(&b, "1\n").expect("write");
        let got = next(&mut w).await;
        assert_eq!(got, [a.clone(), b.clone()]);
        // An unrelated file reports nothing: the next report, after a write to `b`, is `b`
        // alone.
        std::fs::write(dir.0.join("other.txt"), "y").expect("write");
        std::fs::write(&b, "2\n").expect("write");
        assert_eq!(next(&mut w).await, std::slice::from_ref(&b));
    }

    /// Whether a report comes within `periods` debounce periods: a test's way to see that
    /// none does (each period the watcher would report what it noted).
    async fn reports_within(w: &mut ListWatcher, periods: u32) -> Option<Vec<PathBuf>> {
        tokio::time::timeout(w.debounce * periods, w.changed())
            .await
            .ok()
            .map(|r| r.expect("watcher works"))
    }

    /// Creates `a` and writes `port tcp 8080` into it in two writes: nothing is reported
    /// while it holds `port tcp 80`, and `a` once it is closed.
    async fn written_slowly(w: &mut ListWatcher, a: &Path) {
        use std::io::Write as _;
        let mut f = std::fs::File::create(a).expect("create");
        f.write_all(b"port tcp 80").expect("write");
        assert_eq!(reports_within(w, 6).await, None, "reported half-written");
        f.write_all(b"80\n").expect("write");
        drop(f);
        assert_eq!(next(w).await, [a.to_path_buf()]);
    }

    /// A new list written slowly is reported once, at its close, never at its creation: the
    /// part written so far (`port tcp 80` of `port tcp 8080`) was read and applied.
    #[tokio::test]
    async fn a_new_file_is_reported_when_closed_not_when_created() {
        let dir = TempDir::new("watch-create");
        let a = dir.0.join("a.txt");
        let mut w = ListWatcher::new(&[&a], Duration::from_millis(50)).expect("watch");
        written_slowly(&mut w, &a).await;
        assert_eq!(reports_within(&mut w, 6).await, None, "reported twice");
        // A symbolic link created in place is whole at once: reported with no close.
        let b = dir.0.join("b.txt");
        let mut w = ListWatcher::new(&[&b], Duration::from_millis(50)).expect("watch");
        std::os::unix::fs::symlink(&a, &b).expect("symlink");
        assert_eq!(next(&mut w).await, std::slice::from_ref(&b));
        // So is a FIFO or a directory put in a list's place: its reload refuses it by what it
        // is (it went unsaid until SIGHUP).
        for (name, make) in [
            (
                "c.txt",
                &(|p: &Path| std::fs::create_dir(p)) as &dyn Fn(&Path) -> std::io::Result<()>,
            ),
            ("d.txt", &|p: &Path| {
                let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes().to_vec())
                    .expect("a path without NUL");
                // SAFETY: a valid C string.
                match unsafe { libc::mkfifo(c.as_ptr(), 0o600) } {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            }),
        ] {
            let p = dir.0.join(name);
            let mut w = ListWatcher::new(&[&p], Duration::from_millis(50)).expect("watch");
            make(&p).expect("make it");
            assert_eq!(next(&mut w).await, std::slice::from_ref(&p), "{name}");
        }
    }

    /// A list deleted (or renamed away) and written anew slowly is reported at the new
    /// file's close, never while it is half-written; one deleted and left absent is
    /// reported, so its reload can say it is missing.
    #[tokio::test]
    async fn a_list_deleted_and_written_anew_is_reported_when_closed() {
        let dir = TempDir::new("watch-recreate");
        let a = dir.0.join("a.txt");
        std::fs::write(&a, "port tcp 8080\n").expect("write");
        let mut w = ListWatcher::new(&[&a], Duration::from_millis(50)).expect("watch");
        std::fs::remove_file(&a).expect("rm");
        written_slowly(&mut w, &a).await;
        // Renamed away and left so.
        std::fs::rename(&a, dir.0.join("a.old")).expect("mv");
        assert_eq!(next(&mut w).await, std::slice::from_ref(&a));
        std::fs::write(&a, "port tcp 8080\n").expect("write");
        assert_eq!(next(&mut w).await, std::slice::from_ref(&a));
        std::fs::remove_file(&a).expect("rm");
        assert_eq!(next(&mut w).await, std::slice::from_ref(&a));
    }

    #[tokio::test]
    async fn survives_cancellation_in_select() {
        let dir = TempDir::new("watch-cancel");
        let a = dir.0.join("a.txt");
        // A debounce of seconds: a loaded machine cannot hold this test up past it.
        let mut w = ListWatcher::new(&[&a], Duration::from_secs(2)).expect("watch");
        std::fs::write(&a, "1\n").expect("write");
        // Cancel the wait before the debounce ends (20 ms of a 2 s debounce: this timeout
        // is the cancellation under test); the event must not be lost.
        let r = tokio::time::timeout(Duration::from_millis(20), w.changed()).await;
        assert!(r.is_err());
        assert_eq!(next(&mut w).await, std::slice::from_ref(&a));
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _g = rt.enter();
        let e = ListWatcher::new(&["/nonexistent-xdp-audit/x.txt"], DEFAULT_DEBOUNCE)
            .err()
            .expect("must fail");
        assert!(e.to_string().contains("/nonexistent-xdp-audit"), "{e}");
    }

    #[tokio::test]
    async fn follows_a_symlinked_list_to_its_target() {
        let dir = TempDir::new("watch-link");
        let feeds = dir.0.join("feeds");
        let etc = dir.0.join("etc");
        std::fs::create_dir_all(&feeds).expect("mkdir");
        std::fs::create_dir_all(&etc).expect("mkdir");
        let target = feeds.join("feed.txt");
        std::fs::write(&target, "1\n").expect("write");
        let link = etc.join("block.txt");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let mut w = ListWatcher::new(&[&link], Duration::from_millis(50)).expect("watch");
        // The feed updater replaces the target, not the link.
        let tmp = feeds.join(".feed.tmp");
        std::fs::write(&tmp, "2\n").expect("write");
        std::fs::rename(&tmp, &target).expect("rename");
        assert_eq!(next(&mut w).await, std::slice::from_ref(&link));
    }
}
