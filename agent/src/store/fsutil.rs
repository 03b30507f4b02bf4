//! Crash-safe file replacement: write a temporary name, fsync, rename, fsync the directory;
//! and the one way an operator's input file (a list, a config, a key) is read.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// How long [`lock_exclusive`] asks again for a lock another process is letting go of.
pub const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes an exclusive `flock` on `f`, asking again every 10 ms for up to `patience` while
/// another holds it: `Ok(false)` when it is still held then. A lock can outlive its holder for
/// a moment (a process that another thread forks shares the descriptor until it execs; an
/// agent that just stopped may still be closing), and that moment must not read as "another
/// agent runs".
pub fn lock_exclusive(f: &File, patience: std::time::Duration) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + patience;
    loop {
        // SAFETY: flock on a descriptor the caller owns, which outlives the call.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) if std::time::Instant::now() >= deadline => return Ok(false),
            Some(libc::EWOULDBLOCK) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Some(libc::EINTR) => {}
            _ => return Err(e),
        }
    }
}

/// Prefix of the store's temporary files, written under its lock; any left by a crash are
/// removed when the store opens. A writer that does not hold the lock (shipping) must use
/// another name, or an opening store could remove its file before the rename.
pub const TMP_PREFIX: &str = ".tmp-";

/// Fsyncs a directory, so renames and deletions inside it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_parts(dir, name, &[bytes])
}

/// Replaces `dir/name` with the concatenation of `parts` atomically and durably: a temporary
/// file (`.tmp-<name>`), fsync, rename, directory fsync.
pub fn write_atomic_parts(dir: &Path, name: &str, parts: &[&[u8]]) -> std::io::Result<()> {
    write_atomic_via(dir, &format!("{TMP_PREFIX}{name}"), name, parts)
}

/// [`write_atomic_parts`] through the temporary file `dir/tmp_name`.
pub fn write_atomic_via(
    dir: &Path,
    tmp_name: &str,
    name: &str,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let tmp = dir.join(tmp_name);
    // Refused before the clean-up below: what is not a regular file is not this writer's.
    let f = create_temporary(&tmp)?;
    let result = (|| {
        give_to_dir_owner(&f, dir, FILE_MODE)?;
        let mut f = std::io::BufWriter::new(f);
        for p in parts {
            f.write_all(p)?;
        }
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Mode of the store's files: the operators (the store's group) read them.
pub const FILE_MODE: u32 = 0o640;

/// Gives the file `f` in `dir` to `dir`'s owner and group with `mode`, whatever the umask:
/// what an operator's command run as root makes in the store (a shipping cursor or lock, an
/// operator log) must stay the agent's to write, and readable by no one else. A file that
/// needs changing and has another name too (a hard link planted between a check and the
/// open) is refused, not given away or made writable; one already right is left as it is. A
/// file system that refuses the change (root squashed on NFS, no owners on vfat) is said,
/// and the file used as it is.
pub fn give_to_dir_owner(f: &File, dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let owner = std::fs::metadata(dir)?;
    let mine = f.metadata()?;
    // SAFETY: geteuid cannot fail. Only root may give a file away.
    let root = unsafe { libc::geteuid() } == 0;
    let chown = root && (mine.uid(), mine.gid()) != (owner.uid(), owner.gid());
    let chmod = mine.mode() & 0o7777 != mode;
    if !chown && !chmod {
        return Ok(());
    }
    if mine.nlink() != 1 {
        return Err(std::io::Error::other(
            "it has another name (a hard link); remove it",
        ));
    }
    let changed = if chown {
        std::os::unix::fs::fchown(f, Some(owner.uid()), Some(owner.gid()))
    } else {
        Ok(())
    }
    .and_then(|()| {
        if chmod {
            f.set_permissions(std::fs::Permissions::from_mode(mode))
        } else {
            Ok(())
        }
    });
    match changed {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM | libc::EINVAL | libc::EOPNOTSUPP)
            ) =>
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot give a store file to the store's owner or set its mode (the file system refuses it); it is used as it is");
            Ok(())
        }
        other => other,
    }
}

/// Creates or truncates the temporary file `path` for writing ([`open_regular_here`]).
/// Anything but a regular file under its name (a FIFO, which a blocking open would wait on
/// for a reader; a symbolic link, which would have the truncation land elsewhere) is
/// refused, named, and left in place: the writer did not make it.
pub fn create_temporary(path: &Path) -> std::io::Result<File> {
    open_regular_here(
        path,
        File::options().write(true).create(true).truncate(true),
    )
    .map_err(|e| match e {
        InputError::Io(e) => e,
        e => std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the temporary file {} {e}; the agent does not make such a file there: \
                     remove it",
                path.display()
            ),
        ),
    })
}

/// Where a file's bytes stop being UTF-8, so the report can point at the damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("byte offset {offset} (line {line}) is not UTF-8")]
pub struct NotUtf8 {
    /// 1-based line of the first invalid byte.
    pub line: usize,
    /// Offset of the first invalid byte from the start of the file.
    pub offset: usize,
}

/// `bytes` as text, or the line and offset of the first byte that is not UTF-8 (what
/// `read_to_string` reports only as "stream did not contain valid UTF-8").
pub fn utf8_text(bytes: Vec<u8>) -> Result<String, NotUtf8> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        NotUtf8 { line, offset }
    })
}

/// The most bytes read from a table the operator keeps (block and allow lists, subscribers,
/// lease files): a 1,000,000-line list is 21 MiB, so this is room for about fifty of those,
/// and still refuses an endless file before it takes the host's memory.
pub const TABLE_MAX: u64 = 1 << 30;
/// The most bytes read from a config file (the agent's TOML, a CA bundle: ~200 KiB).
pub const CONFIG_MAX: u64 = 1 << 20;
/// The most bytes read from a key or credentials file (a key line is under 100 bytes).
pub const KEY_MAX: u64 = 64 << 10;

/// Why an operator's input file was not read. The caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Opening or reading failed.
    #[error(transparent)]
    Io(std::io::Error),
    /// A FIFO, a device, a directory: reading one could block forever or never end.
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    /// Over the limit for its kind of input.
    #[error("is larger than {}, the most read from such a file", Size(*.max))]
    TooLarge {
        /// The limit, in bytes.
        max: u64,
    },
    /// A file the store wrote by appends with a hole in it: grown sparse (`truncate -s`), not
    /// written so.
    #[error(
        "has a hole from byte {at} of its {len}: a file grown sparse, not written so (damage); \
         not read (`truncate -s {at}` keeps what is before it)"
    )]
    Hole {
        /// Where the hole starts.
        at: u64,
        /// The file's length.
        len: u64,
    },
    /// A text input (a config or a key) that is not UTF-8.
    #[error(transparent)]
    NotUtf8(#[from] NotUtf8),
}

/// A byte count in the largest binary unit that divides it.
struct Size(u64);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let units = [(30, "GiB"), (20, "MiB"), (10, "KiB")];
        match units
            .iter()
            .find(|(shift, _)| self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift))
        {
            Some((shift, unit)) => write!(f, "{} {unit}", self.0 >> shift),
            None => write!(f, "{} bytes", self.0),
        }
    }
}

/// What a file that is not a regular one is, as [`InputError::NotRegular`] names it; `None`
/// for a regular file.
pub fn not_regular(kind: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        None
    } else if kind.is_fifo() {
        Some("FIFO")
    } else if kind.is_char_device() {
        Some("character device")
    } else if kind.is_block_device() {
        Some("block device")
    } else if kind.is_dir() {
        Some("directory")
    } else if kind.is_socket() {
        Some("socket")
    } else if kind.is_symlink() {
        Some("symbolic link")
    } else {
        Some("special file")
    }
}

impl From<InputError> for std::io::Error {
    /// For callers whose errors carry an I/O error: the message stays [`InputError`]'s.
    fn from(e: InputError) -> Self {
        use std::io::ErrorKind;
        match e {
            InputError::Io(e) => e,
            e @ InputError::NotRegular(_) => Self::new(ErrorKind::InvalidInput, e),
            e @ InputError::TooLarge { .. } => Self::new(ErrorKind::FileTooLarge, e),
            e @ (InputError::NotUtf8(_) | InputError::Hole { .. }) => {
                Self::new(ErrorKind::InvalidData, e)
            }
        }
    }
}

/// Opens `path` as `options` say (their custom flags are replaced), never waiting on what is
/// not a regular file, and refuses it unless it is one. Opened with `O_NONBLOCK`, since a FIFO
/// with no writer (opened for writing: no reader) would hold a blocking open forever, and
/// `O_NOCTTY`, so a terminal is not taken; `O_NONBLOCK` is cleared again once the file is
/// known to be regular, so its reads and writes block as usual. A symbolic link is followed,
/// and the file it leads to must be regular. Every file of the store the agent reads or
/// writes in place is opened through this: one put in its place by mistake or by an attacker
/// is refused at once, naming what it is.
pub fn open_regular(path: &Path, options: &mut std::fs::OpenOptions) -> Result<File, InputError> {
    open_with(path, options, 0)
}

/// [`open_regular`] that never follows a symbolic link in the last component: for the files
/// an operator's command (often run as root) creates or writes in the store, whose directory
/// the agent's own user may write. A link planted there (`operator.log -> /etc/...`) would
/// have root create, write or hand over the file it names.
pub fn open_regular_here(
    path: &Path,
    options: &mut std::fs::OpenOptions,
) -> Result<File, InputError> {
    open_with(path, options, libc::O_NOFOLLOW)
}

fn open_with(
    path: &Path,
    options: &mut std::fs::OpenOptions,
    flags: libc::c_int,
) -> Result<File, InputError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // std opens with O_CLOEXEC.
    let file = match options
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | flags)
        .open(path)
    {
        Ok(f) => f,
        // A FIFO opened for writing without a reader (ENXIO), a directory opened for writing
        // (EISDIR), a link refused (ELOOP): say what it is rather than the errno.
        Err(e) => {
            let meta = if flags & libc::O_NOFOLLOW != 0 {
                std::fs::symlink_metadata(path)
            } else {
                std::fs::metadata(path)
            };
            let kind = meta.ok().and_then(|m| not_regular(m.file_type()));
            return Err(kind.map_or(InputError::Io(e), InputError::NotRegular));
        }
    };
    let kind = file.metadata().map_err(InputError::Io)?.file_type();
    if let Some(kind) = not_regular(kind) {
        return Err(InputError::NotRegular(kind));
    }
    // A regular file now: reads block as usual (a network file system may honour O_NONBLOCK).
    // SAFETY: F_GETFL/F_SETFL on a descriptor this function owns.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0
        {
            return Err(InputError::Io(std::io::Error::last_os_error()));
        }
    }
    Ok(file)
}

/// [`open_regular`] for reading.
pub fn open_read(path: &Path) -> Result<File, InputError> {
    open_regular(path, File::options().read(true))
}

/// Reads an operator's input file whole, up to `max` bytes. Opened without blocking and
/// refused unless it is a regular file ([`open_read`]: a FIFO with no writer would hold the
/// open forever, `/dev/zero` never ends); read through a cap, so a file that grows while it
/// is read cannot outgrow memory either.
pub fn read_input(path: &Path, max: u64) -> Result<Vec<u8>, InputError> {
    read_capped(open_read(path)?, max)
}

/// [`read_input`] that never follows a symbolic link in the last component, and refuses a
/// file with a hole: for the store's own files, written by appends (a journal linked to a
/// file elsewhere would be sealed into the chain, or its target's bytes copied into
/// `quarantine/`; one grown sparse to gigabytes was read whole into memory).
pub fn read_input_here(path: &Path, max: u64) -> Result<Vec<u8>, InputError> {
    let file = open_regular_here(path, File::options().read(true))?;
    if let Some((at, len)) = first_hole(&file) {
        return Err(InputError::Hole { at, len });
    }
    read_capped(file, max)
}

/// Where the first hole of `f` starts and its length, if a hole starts before its end
/// (`SEEK_HOLE`; a file system that cannot tell says none).
fn first_hole(f: &File) -> Option<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let len = f.metadata().ok()?.len();
    // SAFETY: lseek on a descriptor the caller owns; the offset is set back to the start.
    let at = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
    // SAFETY: as above.
    unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_SET) };
    u64::try_from(at)
        .ok()
        .filter(|&at| at < len)
        .map(|at| (at, len))
}

fn read_capped(file: File, max: u64) -> Result<Vec<u8>, InputError> {
    use std::io::Read;
    let len = file.metadata().map_err(InputError::Io)?.len();
    if len > max {
        return Err(InputError::TooLarge { max });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte past the cap tells a file that grew past it; `u64::MAX` is no cap at all.
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(InputError::Io)?;
    if bytes.len() as u64 > max {
        return Err(InputError::TooLarge { max });
    }
    Ok(bytes)
}

/// The UTF-8 byte-order mark a spreadsheet or a Windows editor puts first in a file.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// A file's bytes without the UTF-8 byte-order mark: every reader of an operator's file
/// drops it (unseen in an editor, it would make the first line or word wrong).
pub fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// [`read_input`] of a text file: its bytes as UTF-8, a byte-order mark dropped.
pub fn read_input_text(path: &Path, max: u64) -> Result<String, InputError> {
    let mut text = utf8_text(read_input(path, max)?)?;
    if text.starts_with('\u{feff}') {
        text.drain(..BOM.len());
    }
    Ok(text)
}

/// A small JSON file a previous agent kept in the state directory (`what` names it, `then`
/// says what follows without it): `None` when absent, or, warned, when it cannot be read or
/// parsed, so a damaged state file costs what it remembered and never the start.
pub fn load_state<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    then: &str,
) -> Option<T> {
    load_state_up_to(path, 64 * 1024, what, then)
}

/// [`load_state`] of a file of up to `max` bytes.
pub fn load_state_up_to<T: serde::de::DeserializeOwned>(
    path: &Path,
    max: u64,
    what: &str,
    then: &str,
) -> Option<T> {
    let text = match read_input_text(path, max) {
        Ok(t) => t,
        Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read {what}: {then}");
            return None;
        }
    };
    serde_json::from_str(&text)
        .inspect_err(
            |e| tracing::warn!(path = %path.display(), error = %e, "{what} does not parse: {then}"),
        )
        .ok()
}

/// Replaces the JSON state file `path` ([`load_state`]) atomically and durably.
pub fn save_state<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    let text = serde_json::to_vec(value)?;
    write_atomic_via(dir, &format!(".{name}.tmp"), name, &[&text, b"\n"])
}

/// The file system holding `path`, as `statvfs` describes it (free space, mount flags).
pub fn statvfs(path: &Path) -> std::io::Result<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: zeroed plain C struct, filled by statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and struct pointers.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    statvfs(path)
        .ok()
        .map(|st| st.f_bavail.saturating_mul(st.f_frsize))
}

/// Whether `e` says the disk refuses writes for a reason of the host, not of the file being
/// written: full (ENOSPC), over quota (EDQUOT), remounted read-only (EROFS, as ext4 does on
/// an error), or the process out of descriptors (EMFILE, ENFILE). The store holds and
/// retries, in order, until it passes; taken for the file's fault, a journal would be passed
/// over as unsealable after a few tries and the chain sealed out of order.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::ReadOnlyFilesystem
    ) || matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EMFILE | libc::ENFILE)
    )
}

/// [`is_disk_full`] for an I/O error anywhere in `e`'s chain of sources (the Parquet writer
/// wraps the file's error in its own).
pub fn disk_full_in(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source())
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(is_disk_full))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Parses exactly `N` bytes of hex.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(s[2 * i])? << 4 | nib(s[2 * i + 1])?;
    }
    Some(out)
}

/// SHA-256 of a file, as hex; anything but a regular file is refused at once
/// ([`open_read`]).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = open_read(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The line that ends a file of `body` the agent saves for itself: `marker` (a newline, then
/// a comment's start) and the body's SHA-256. A file damaged after it was written is then
/// told by [`sealed_body`], even where its damage still parses.
pub fn seal_line(marker: &[u8], body: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut line = marker.to_vec();
    line.extend_from_slice(hex(&sha2::Sha256::digest(body)).as_bytes());
    line.push(b'\n');
    line
}

/// The body of a file [`seal_line`] ended with `marker`: `None` if it has no such line, an
/// error if the line's SHA-256 is not its body's.
pub fn sealed_body<'a>(file: &'a [u8], marker: &[u8]) -> Option<Result<&'a [u8], String>> {
    use sha2::Digest as _;
    let at = file.windows(marker.len()).rposition(|w| w == marker)?;
    let (body, line) = (&file[..at], &file[at + marker.len()..]);
    let want = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(b"?"));
    let sum = hex(&sha2::Sha256::digest(body));
    Some(if want == sum {
        Ok(body)
    } else {
        Err(format!(
            "its SHA-256 is {sum}, not the {want:?} it was saved with (damaged)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock its holder lets go of within the patience is taken (a forked child's copy of
    /// the descriptor closing at its exec); one held throughout is not, and is said so.
    #[test]
    fn a_lock_let_go_within_the_patience_is_taken_and_one_kept_is_not() {
        use std::time::Duration;
        let dir = crate::blocklist::tests::TempDir::new("lock-patience");
        let path = dir.0.join("lock");
        let holder = File::create(&path).expect("create");
        assert_eq!(lock_exclusive(&holder, Duration::ZERO).ok(), Some(true));
        let other = File::open(&path).expect("open again");
        assert_eq!(
            lock_exclusive(&other, Duration::from_millis(30)).ok(),
            Some(false)
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let letting_go = std::thread::spawn(move || {
            let _ = rx.recv();
            std::thread::sleep(Duration::from_millis(50));
            drop(holder);
        });
        let _ = tx.send(());
        assert_eq!(
            lock_exclusive(&other, Duration::from_secs(10)).ok(),
            Some(true)
        );
        let _ = letting_go.join();
    }

    /// A FIFO with no writer and an endless device are refused at once by what they are, a
    /// file over the cap by its size, and a file at the cap is read whole.
    /// `u64::MAX` is no cap: the read's one byte past the cap must not overflow.
    #[test]
    fn no_cap_reads_the_whole_file() {
        let dir = crate::blocklist::tests::TempDir::new("read-nocap");
        let path = dir.0.join("f");
        std::fs::write(&path, b"whole").expect("write");
        assert_eq!(read_input(&path, u64::MAX).expect("read"), b"whole");
    }

    #[test]
    fn only_a_regular_file_within_its_cap_is_read() {
        let dir = crate::blocklist::tests::TempDir::new("read-input");
        let fifo = dir.0.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("no NUL");
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let shown = |r: Result<Vec<u8>, InputError>| match r {
            Ok(b) => panic!("read {} bytes", b.len()),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            shown(read_input(&fifo, KEY_MAX)),
            "is a FIFO, not a regular file"
        );
        assert_eq!(
            shown(read_input(Path::new("/dev/zero"), TABLE_MAX)),
            "is a character device, not a regular file"
        );
        assert_eq!(
            shown(read_input(&dir.0, CONFIG_MAX)),
            "is a directory, not a regular file"
        );
        let file = dir.0.join("f");
        std::fs::write(&file, [7u8; 1024]).expect("write");
        assert_eq!(read_input(&file, 1024).expect("at the cap").len(), 1024);
        assert_eq!(
            shown(read_input(&file, 1023)),
            "is larger than 1023 bytes, the most read from such a file"
        );
        assert_eq!(
            InputError::TooLarge { max: TABLE_MAX }.to_string(),
            "is larger than 1 GiB, the most read from such a file"
        );
        std::fs::write(&file, b"ok \xff").expect("write");
        assert!(matches!(
            read_input_text(&file, KEY_MAX),
            Err(InputError::NotUtf8(NotUtf8 { line: 1, offset: 3 }))
        ));
        assert!(matches!(
            read_input(&dir.0.join("missing"), KEY_MAX),
            Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
    }

    /// Opened for writing too, what is not a regular file is refused by what it is, never
    /// waited on (a FIFO without a reader fails a non-blocking open with ENXIO, a directory
    /// with EISDIR); a regular file is opened with `O_NONBLOCK` cleared. An atomic write
    /// through a temporary name taken by a FIFO is refused, naming it, and leaves it.
    #[test]
    fn opened_for_writing_only_a_regular_file_is_taken_and_a_fifo_is_left() {
        use std::os::fd::AsRawFd;
        let dir = crate::blocklist::tests::TempDir::new("open-regular");
        let fifo = dir.0.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("no NUL");
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let write = || {
            File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .clone()
        };
        for (path, kind) in [(&fifo, "FIFO"), (&dir.0, "directory")] {
            match open_regular(path, &mut write()) {
                Err(InputError::NotRegular(k)) => assert_eq!(k, kind),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        // A FIFO with a reader: opened, then refused.
        let reader = open_read(&fifo);
        assert!(
            matches!(reader, Err(InputError::NotRegular("FIFO"))),
            "{reader:?}"
        );
        let file = open_regular(&dir.0.join("f"), &mut write()).expect("a new regular file");
        // SAFETY: F_GETFL on a descriptor the test owns.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0, "O_NONBLOCK is cleared");
        let e = write_atomic_via(&dir.0, "fifo", "out", &[b"x"]).expect_err("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        let shown = e.to_string();
        assert!(
            shown.contains(&fifo.display().to_string())
                && shown.contains("is a FIFO, not a regular file"),
            "{shown}"
        );
        assert!(fifo.exists(), "the FIFO is left in place");
        assert!(!dir.0.join("out").exists(), "nothing was written");
    }

    /// A file replaced by a command run as root (a shipping cursor) is the store owner's and
    /// the group's to read, whatever root's umask; a file already right with another name (a
    /// hard-link backup) is used as it is, one that needs changing is refused.
    #[test]
    fn a_file_replaced_by_root_is_the_store_owners() {
        use std::os::unix::fs::MetadataExt;
        let dir = crate::blocklist::tests::TempDir::new("atomic-owner");
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&dir.0, Some(65534), Some(65534)).expect("chown");
        }
        write_atomic(&dir.0, "f", b"x").expect("write");
        let m = std::fs::metadata(dir.0.join("f")).expect("stat");
        let d = std::fs::metadata(&dir.0).expect("stat dir");
        assert_eq!((m.uid(), m.gid()), (d.uid(), d.gid()), "the store's owner");
        assert_eq!(m.mode() & 0o777, FILE_MODE);
        let path = dir.0.join("f");
        std::fs::hard_link(&path, dir.0.join("backup")).expect("link");
        let f = File::open(&path).expect("open");
        give_to_dir_owner(&f, &dir.0, FILE_MODE).expect("already right: used as it is");
        let e = give_to_dir_owner(&f, &dir.0, 0o600).expect_err("a change, and a second name");
        assert!(e.to_string().contains("hard link"), "{e}");
    }

    /// A file that grows past the cap while it is read (its size was under the cap at the
    /// stat) is refused by the read's own limit: `/proc` files report size 0.
    #[test]
    fn a_file_whose_size_is_not_known_is_capped_by_the_read() {
        let r = read_input(Path::new("/proc/self/maps"), 16);
        assert!(matches!(r, Err(InputError::TooLarge { max: 16 })), "{r:?}");
    }

    #[test]
    fn a_full_disk_or_quota_is_told_from_other_errors_also_inside_another_error() {
        // A read-only remount and a descriptor limit pass too: held and retried in order.
        for errno in [
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EROFS,
            libc::EMFILE,
            libc::ENFILE,
        ] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert!(is_disk_full(&e), "{e}");
            let wrapped = parquet::errors::ParquetError::from(e);
            assert!(disk_full_in(&wrapped), "{wrapped}");
        }
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(!is_disk_full(&other));
        assert!(!disk_full_in(&parquet::errors::ParquetError::from(other)));
    }

    #[test]
    fn the_first_byte_not_utf8_is_found_by_line_and_offset() {
        assert_eq!(utf8_text(b"a\nb".to_vec()), Ok("a\nb".to_owned()));
        let mut bytes = b"{\"a\":1}\n{\"b\":\"x".to_vec();
        bytes.push(0xff);
        bytes.extend_from_slice(b"\"}\n");
        assert_eq!(
            utf8_text(bytes),
            Err(NotUtf8 {
                line: 2,
                offset: 15
            })
        );
        // A multi-byte sequence cut short points at its first byte.
        assert_eq!(
            utf8_text(vec![b'\n', b'\n', 0xc3]),
            Err(NotUtf8 { line: 3, offset: 2 })
        );
    }
}
