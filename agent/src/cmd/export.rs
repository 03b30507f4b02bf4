//! `xdp-audit export`: hand a time window of flows over as a file, with its SHA-256.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use sha2::Digest;

use super::store_args::{progress_line, readable_store, FilterArgs, StoreDirArgs};
use crate::record::FlowRecord;
use crate::store::access::{self, AccessInfo};
use crate::store::export::{Format, RecordWriter};
use crate::store::fsutil::{hex, sync_dir};
use crate::store::query::{default_threads, scan, Filter, ScanStats};
use crate::store::{StoreClock, SystemClock};
use tracing::warn;

/// Export file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl ExportFormat {
    /// The format's file name extension (and its name in a report).
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// The long help of `xdp-audit export`, with examples.
pub const LONG_ABOUT: &str = "Writes every flow of a time window (optionally filtered like `query`) to a
file for a hand-over, then prints the file's SHA-256 in `sha256sum` format, so the receiver can
check what they got (`sha256sum -c`). The file is written under a temporary name beside it
(`.NAME.partial-<pid>`) and given its name only when whole and fsynced, so an export that fails
or is interrupted never leaves a truncated file there (a killed run's hidden file is removed by
the next export, report or sql --output in that directory); an existing file is refused at once.

Examples:
  xdp-audit export --since 2026-05-03T14:00:00Z --until 2026-05-03T16:00:00Z --format csv --out case-4711.csv
  xdp-audit export --since 7d --until 0s --ip 10.1.2.3 --format jsonl --out 10.1.2.3-week.jsonl";

/// Arguments of `xdp-audit export`.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
// A hand-over names its window: --at is refused here, so it is not offered.
#[command(mut_arg("at", |a| a.hide(true)), mut_arg("at_slack", |a| a.hide(true)))]
pub struct ExportArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: StoreDirArgs,
    /// What to select; --since and --until are required.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// File format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The file to write (must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// A writer hashing what it passes on: the SHA-256 of a hand-over file is of the bytes
/// written, with no second read.
pub(super) struct Hashing<W> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: Write> Hashing<W> {
    pub(super) fn new(inner: W) -> Self {
        Self {
            inner,
            hash: sha2::Sha256::new(),
        }
    }

    /// The writer and the SHA-256 (hex) of everything it took.
    pub(super) fn finish(self) -> (W, String) {
        (self.inner, hex(&self.hash.finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A hand-over file written under a temporary name beside its final one
/// (`.NAME.partial-<pid>`) and linked to the final name only when complete
/// ([`PartialFile::publish`]): a command interrupted by a signal, or killed, never leaves a
/// truncated file under the final name (nor one that refuses a retry). The temporary is
/// removed if dropped before it is published; one left by a kill is hidden and named for
/// its process.
pub struct PartialFile {
    path: PathBuf,
    tmp: PathBuf,
    published: bool,
}

/// `path` exists: the error `File::create_new` gives, so the wording is the same whether the
/// name was taken before the command started or while it ran.
pub(crate) fn exists_error(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "refusing to overwrite {}: it exists (give another name, or move the file away)",
        path.display()
    )
}

/// An error creating `path` (`what` it is written as, if not itself), said plainly where the
/// cause is a common one: the name taken, the directory missing.
pub(crate) fn create_error(path: &Path, what: &str, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists => exists_error(path),
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "creating {}: its directory {} does not exist",
            path.display(),
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .display()
        ),
        _ => anyhow::Error::new(e).context(format!("creating {}{what}", path.display())),
    }
}

impl PartialFile {
    /// Refuses `path` if it exists (before any work, so the user learns at once), and
    /// creates its temporary, readable by its owner and group only (0640 before the umask),
    /// as the store's own files: it holds subscribers' records.
    pub fn create(path: &Path) -> anyhow::Result<(Self, File)> {
        use std::os::unix::fs::OpenOptionsExt as _;
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(exists_error(path));
        }
        let name = path
            .file_name()
            .with_context(|| format!("creating {}: not a file name", path.display()))?;
        let prefix = format!(".{}.partial-", name.to_string_lossy());
        remove_stale_partials(path, &prefix);
        let tmp = path.with_file_name(format!("{prefix}{}", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)
            .map_err(|e| {
                create_error(path, &format!(" (written first as {})", tmp.display()), e)
            })?;
        let guard = Self {
            path: path.to_owned(),
            tmp,
            published: false,
        };
        Ok((guard, file))
    }

    /// The file's final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the written (and fsynced) file its final name, never replacing a file that took
    /// the name meanwhile: a rename that refuses an existing name (`RENAME_NOREPLACE`, which
    /// FAT and exFAT sticks have too), or a hard link where the file system has no such
    /// rename (NFS). Once the name is given, what follows (the directory's fsync, a link's
    /// temporary removed) only warns: the file is there, whole, and an error would say
    /// otherwise and refuse the retry.
    pub fn publish(mut self) -> anyhow::Result<()> {
        let linked = match rename_noreplace(&self.tmp, &self.path) {
            Ok(()) => false,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                std::fs::hard_link(&self.tmp, &self.path).map_err(|e| self.naming_error(e))?;
                true
            }
            Err(e) => return Err(self.naming_error(e)),
        };
        self.published = true;
        if linked {
            if let Err(e) = std::fs::remove_file(&self.tmp) {
                warn!(file = %self.tmp.display(), error = %e, "cannot remove the temporary name of a published file");
            }
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Err(e) = sync_dir(dir) {
            warn!(dir = %dir.display(), error = %e, "cannot fsync the directory of a published file: its name may not survive a crash");
        }
        Ok(())
    }

    /// [`PartialFile::publish`] after the access was recorded as done: a publish that fails
    /// is recorded in `log_dir`'s operator log too, as `failed` makes an entry of its error.
    pub fn publish_recorded(
        self,
        log_dir: Option<&Path>,
        failed: impl FnOnce(String) -> AccessInfo,
    ) -> anyhow::Result<()> {
        self.publish().inspect_err(|e| {
            if let Some(dir) = log_dir {
                access::record(dir, failed(format!("publishing: {e:#}")));
            }
        })
    }

    fn naming_error(&self, e: std::io::Error) -> anyhow::Error {
        create_error(&self.path, &format!(" (from {})", self.tmp.display()), e)
    }
}

/// Removes the temporaries (`.NAME.partial-<pid>`, of any name) beside `path` that a killed
/// command left (its process is gone and the file untouched for a minute, or its pid is ours
/// now and the name `prefix`'s): they hold subscribers' records, hidden, and one with our pid
/// would refuse this run. Another running command's temporary is left alone.
fn remove_stale_partials(path: &Path, prefix: &str) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((this_name, pid)) = name.to_str().and_then(|n| {
            let (head, digits) = n.strip_prefix('.')?.rsplit_once(".partial-")?;
            let pid = digits.parse::<u32>().ok().filter(|_| !head.is_empty())?;
            Some((n.strip_prefix(prefix) == Some(digits), pid))
        }) else {
            continue;
        };
        let gone = (pid == own && this_name)
            || i32::try_from(pid).is_ok_and(|p| {
                // SAFETY: kill with signal 0 only asks whether the process exists.
                let rc = unsafe { libc::kill(p, 0) };
                rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
            });
        // Not written to for a minute too: a process of another host (a network file
        // system) or PID namespace is not ours to see, and its file is being written.
        let quiet = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= std::time::Duration::from_secs(60))
        };
        if gone && ((pid == own && this_name) || quiet()) {
            let stale = entry.path();
            match std::fs::remove_file(&stale) {
                Ok(()) => warn!(file = %stale.display(), "removed what an interrupted run left"),
                Err(e) => {
                    warn!(file = %stale.display(), error = %e, "cannot remove what an interrupted run left")
                }
            }
        }
    }
}

/// `rename(from, to)` that fails with EEXIST rather than replace `to`.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths relative to the working directory.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// An export file being written: a [`PartialFile`] hashed as it is written and fsynced when
/// finished. `export` and `report --attach` write through it.
pub struct ExportFile {
    file: PartialFile,
    out: RecordWriter<Hashing<std::io::BufWriter<File>>>,
}

impl ExportFile {
    /// Creates `path` (which must not exist) and writes the format's header.
    pub fn create(path: &Path, format: ExportFormat) -> anyhow::Result<Self> {
        let (guard, file) = PartialFile::create(path)?;
        let format = match format {
            ExportFormat::Csv => Format::Csv,
            ExportFormat::Jsonl => Format::Jsonl,
        };
        let sink = Hashing::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let mut out = RecordWriter::new(sink, format);
        out.header()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { file: guard, out })
    }

    /// Writes one record.
    pub fn write(&mut self, r: &FlowRecord) -> std::io::Result<()> {
        self.out.write(r)
    }

    /// Flushes and fsyncs the file: its SHA-256 (hex), and the guard that still removes it
    /// unless published (after the access entry is recorded).
    pub fn finish_unkept(self) -> anyhow::Result<(String, PartialFile)> {
        let finished = (|| {
            let (buffered, digest) = self.out.finish()?.finish();
            let file = buffered.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok::<_, std::io::Error>(digest)
        })();
        let digest = finished.with_context(|| format!("writing {}", self.file.path().display()))?;
        Ok((digest, self.file))
    }
}

/// Runs `xdp-audit export`.
pub fn main(mut args: ExportArgs) -> anyhow::Result<ExitCode> {
    args.dir.resolve()?;
    anyhow::ensure!(
        args.filter.since.is_some() && args.filter.until.is_some(),
        "export needs both --since and --until (a hand-over names its window)"
    );
    let filter = args.filter.to_filter(SystemClock.now_ns())?;
    readable_store(&args.dir.log_dir)?;
    // A refused --out (a file already there) is recorded as a failed export too, as
    // `report` records one.
    let written =
        ExportFile::create(&args.out, args.format).and_then(|file| write(&args, &filter, file));
    // A failed export read records too: it is recorded with its error (and no file, which
    // `ExportFile` removes). A failure to record only warns (see `access::record`).
    let access = match &written {
        Ok((stats, digest, _)) => AccessInfo::export(&filter, stats.matched, digest, &args.out)
            .unreadable(stats.journals_unreadable as u64),
        Err(e) => AccessInfo::new("export", access::filter_text(&filter)).failed(&format!("{e:#}")),
    };
    // Recorded before the file takes its name: a kill between the two must not leave a
    // complete export that no access entry names (one recorded and never published is said
    // by the entry's error below, or by the hidden partial file a kill leaves).
    access::record(&args.dir.log_dir, access);
    let (stats, digest, file) = written?;
    file.publish_recorded(Some(&args.dir.log_dir), |e| {
        AccessInfo::new("export", access::filter_text(&filter)).failed(&e)
    })?;
    if stats.journals_unreadable > 0 {
        // The stdout line stays in `sha256sum` format (`sha256sum -c` reads it); the summary
        // on stderr and the exit status say what the file lacks.
        tracing::warn!(
            records = stats.matched,
            file = %args.out.display(),
            "export written INCOMPLETE: {} live journals could not be read whole (each named above), \
             the file lacks their records (exit status {})",
            stats.journals_unreadable,
            super::EXIT_INCOMPLETE
        );
    } else {
        tracing::info!(records = stats.matched, file = %args.out.display(), "export written");
    }
    outln!("{digest}  {}", args.out.display())?;
    Ok(super::answer_status(&stats))
}

/// Writes the selected records to `file` and finishes it, unpublished: the scan's stats, the
/// file's SHA-256 and its guard.
fn write(
    args: &ExportArgs,
    filter: &Filter,
    mut file: ExportFile,
) -> anyhow::Result<(ScanStats, String, PartialFile)> {
    let mut progress = progress_line("export");
    let stats = scan(
        &args.dir.log_dir,
        filter,
        default_threads(),
        &mut |r| file.write(r),
        &mut progress,
    )
    .with_context(|| {
        format!(
            "exporting from {} to {}",
            args.dir.log_dir.display(),
            args.out.display()
        )
    })?;
    let (digest, file) = file.finish_unkept()?;
    Ok((stats, digest, file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::TempDir;

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .collect();
        n.sort();
        n
    }

    /// While the file is written its final name does not exist (a kill then leaves no
    /// truncated file there); published, it holds the whole file and the temporary is gone.
    #[test]
    fn the_final_name_appears_only_when_the_file_is_published() {
        let d = TempDir::new("partial-publish");
        let out = d.0.join("case.csv");
        let (guard, mut file) = PartialFile::create(&out).expect("create");
        file.write_all(b"a,b\n").expect("write");
        assert!(
            !out.exists(),
            "the final name exists while the file is written"
        );
        assert_eq!(
            names(&d.0),
            [format!(".case.csv.partial-{}", std::process::id())]
        );
        file.sync_all().expect("fsync");
        guard.publish().expect("publish");
        assert_eq!(std::fs::read(&out).expect("read"), b"a,b\n");
        assert_eq!(names(&d.0), ["case.csv"]);
    }

    /// What a killed run left (its process gone, or its pid ours now) is removed at the next
    /// create; a running command's temporary and other files are left alone.
    #[test]
    fn a_killed_runs_temporary_is_removed_a_running_ones_kept() {
        let d = TempDir::new("partial-stale");
        let out = d.0.join("case.csv");
        let own = format!(".case.csv.partial-{}", std::process::id());
        // A pid above the kernel's maximum (4194304) names no process.
        let dead = ".case.csv.partial-4194305".to_owned();
        // Process 1 always runs.
        let alive = ".case.csv.partial-1".to_owned();
        // Another name's, its run killed too: removed as well (it lingered until a command
        // wrote that name again).
        let other = ".other.csv.partial-4194305".to_owned();
        // Another name's with our pid: this run's other file (a report's attachment), kept.
        let own_other = format!(".other.csv.partial-{}", std::process::id());
        // Written to a moment ago: another host's (a network file system), never removed.
        let fresh = ".case.csv.partial-4194306".to_owned();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        for n in [&own, &dead, &alive, &other, &own_other, &fresh] {
            let f = File::create(d.0.join(n)).expect("write a leftover");
            if *n != fresh {
                f.set_modified(old).expect("date it back");
            }
        }
        let (guard, _file) = PartialFile::create(&out).expect("create");
        let mut want = vec![alive, own, own_other, fresh];
        want.sort();
        assert_eq!(names(&d.0), want, "ours is the new temporary");
        drop(guard);
    }

    /// An error before publishing (the guard dropped) leaves neither file.
    #[test]
    fn a_file_not_published_leaves_nothing() {
        let d = TempDir::new("partial-drop");
        let out = d.0.join("case.csv");
        let (guard, mut file) = PartialFile::create(&out).expect("create");
        file.write_all(b"half").expect("write");
        drop(guard);
        assert!(names(&d.0).is_empty(), "{:?}", names(&d.0));
    }

    /// An existing file is refused before any work, and one that takes the name while the
    /// file is written is not replaced: both with the error an existing file always gave.
    #[test]
    fn an_existing_name_is_refused_and_never_replaced() {
        let d = TempDir::new("partial-exists");
        let out = d.0.join("case.csv");
        std::fs::write(&out, "theirs").expect("write");
        let e = PartialFile::create(&out).err().expect("refused");
        assert!(
            format!("{e:#}").contains(&format!(
                "refusing to overwrite {}: it exists",
                out.display()
            )),
            "{e:#}"
        );
        std::fs::remove_file(&out).expect("remove");
        let (guard, _file) = PartialFile::create(&out).expect("create");
        std::fs::write(&out, "theirs").expect("write");
        let e = guard.publish().expect_err("refused");
        assert!(format!("{e:#}").contains("refusing to overwrite"), "{e:#}");
        assert_eq!(std::fs::read_to_string(&out).expect("read"), "theirs");
        assert_eq!(names(&d.0), ["case.csv"], "the temporary is removed");
        let missing = d.0.join("no-such-dir").join("case.csv");
        let e = PartialFile::create(&missing).err().expect("refused");
        assert!(
            format!("{e:#}").contains(&format!(
                "its directory {} does not exist",
                d.0.join("no-such-dir").display()
            )),
            "{e:#}"
        );
    }
}
