//! Map directories emptied without following symbolic links. `detach` runs as root (the
//! package's `prerm` runs it), while the instance's directory belongs to the agent's user, who
//! can make symbolic links in bpffs: a `maps-*` entry that is a link to `/etc` must not have
//! `/etc` emptied. The directory is opened without following a link in its last component,
//! must be on bpffs (which holds pins, directories and links only), and its entries are
//! removed relative to that open directory, never by a path a rename could redirect.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use super::{io, PinError, BPF_FS_MAGIC};

/// Removes every entry of the map directory `dir` (pins; a link itself, never what it points
/// to), and the directory. Nothing there is fine; a link in its place is removed itself; a
/// directory on another file system is refused, with nothing removed.
pub fn remove_maps_dir(dir: &Path) -> Result<(), PinError> {
    // A link in its place is not the agent's: the link itself goes (an unlink never follows
    // one), so the rest of the instance is still detached.
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        tracing::warn!(path = %shown(dir).display(), "a symbolic link where the agent makes a map directory: removed, not followed (someone changed the pin root)");
        return match std::fs::remove_file(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", dir)(e)),
            _ => Ok(()),
        };
    }
    let Some(file) = open_dir(dir, "open the map directory")? else {
        return Ok(());
    };
    if fstatfs_magic(&file).map_err(io("statfs", dir))? != BPF_FS_MAGIC {
        return Err(io("open the map directory", dir)(std::io::Error::other(
            "not on bpffs: a map directory holds pins only, so nothing was removed",
        )));
    }
    // The open directory's entries, through its descriptor's name in /proc: the directory
    // opened, whatever its path now leads to.
    let by_fd = Path::new("/proc/self/fd").join(file.as_raw_fd().to_string());
    let mut names: Vec<OsString> = Vec::new();
    for e in std::fs::read_dir(&by_fd).map_err(io("list", dir))? {
        names.push(e.map_err(io("list", dir))?.file_name());
    }
    for name in names {
        let c = std::ffi::CString::new(name.as_bytes())
            .map_err(|_| io("remove", dir)(std::io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: an open directory descriptor and a valid C string.
        if unsafe { libc::unlinkat(file.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(io("remove", &dir.join(&name))(e));
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove directory", dir)(e)),
        _ => Ok(()),
    }
}

/// `path` as an operator knows it: one under `/proc/self/fd/N` (a directory held by its
/// descriptor, [`super::InstanceLock::held`]) under the directory the descriptor names.
fn shown(path: &Path) -> std::path::PathBuf {
    let fds = Path::new("/proc/self/fd");
    if let Ok(rest) = path.strip_prefix(fds) {
        let mut parts = rest.components();
        if let Some(fd) = parts.next() {
            if let Ok(dir) = std::fs::read_link(fds.join(fd)) {
                return dir.join(parts.as_path());
            }
        }
    }
    path.to_owned()
}

/// Opens the directory `path` without following a symbolic link in its place; `None` if
/// there is nothing. A link is refused saying so (`op` says what was being done).
pub(super) fn open_dir(path: &Path, op: &'static str) -> Result<Option<File>, PinError> {
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(_) if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
            Err(io(op, path)(std::io::Error::other(
                "a symbolic link where the agent makes a directory: not followed, nothing \
                 removed (someone changed the pin root; remove the link by hand)",
            )))
        }
        Err(e) => Err(io(op, path)(e)),
    }
}

pub(super) fn fstatfs_magic(file: &File) -> std::io::Result<u32> {
    let mut s = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: an open descriptor and a buffer for one statfs.
    if unsafe { libc::fstatfs(file.as_raw_fd(), s.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: filled on success.
    Ok(unsafe { s.assume_init() }.f_type as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map directory that is a link to a directory elsewhere: the link is removed, the
    /// files it named kept (root's `detach` emptied whatever the link named). A directory off
    /// bpffs is refused, its files kept.
    #[test]
    fn a_link_or_a_directory_off_bpffs_is_not_emptied() {
        let t = crate::blocklist::tests::TempDir::new("maps-walk");
        let victim = t.0.join("victim");
        std::fs::create_dir_all(&victim).expect("victim dir");
        std::fs::write(victim.join("keep.conf"), "x").expect("victim file");
        let link = t.0.join("maps-evil");
        std::os::unix::fs::symlink(&victim, &link).expect("link");
        remove_maps_dir(&link).expect("the link removed");
        assert!(
            std::fs::symlink_metadata(&link).is_err(),
            "the link is gone"
        );
        let e = remove_maps_dir(&victim).expect_err("off bpffs");
        assert!(e.to_string().contains("not on bpffs"), "{e}");
        assert!(victim.join("keep.conf").exists(), "the files are kept");
        remove_maps_dir(&t.0.join("maps-none")).expect("nothing there is fine");
    }
}
