//! The account `run --user` switches to, and the checks on files that hold secrets.

use std::ffi::{CStr, CString};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// A user to run as, looked up in the system's user database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The name as given.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group, the only group the agent keeps.
    pub gid: u32,
}

/// Why `--user` or a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No such user.
    #[error("--user {name}: no such user (create it: `adduser --system --group {name}`)")]
    NoSuchUser {
        /// The name.
        name: String,
    },
    /// The user database could not be read.
    #[error("--user {name}: cannot look the user up: {cause}")]
    Lookup {
        /// The name.
        name: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// The user is root under any name: switching to it would keep write access to every
    /// root-owned file while giving up only the capabilities.
    #[error("--user {name}: uid 0 is root; name an unprivileged user (`adduser --system --group xdp-audit`)")]
    Root {
        /// The name.
        name: String,
    },
    /// A directory for the user could not be made.
    #[error("{path}: cannot create it for the agent's user: {cause}", path = path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// A secret file others can read.
    #[error(
        "{path}: mode {mode:04o} lets group or others read this secret: `chmod 600` it (its owner: the user the agent runs as)",
        path = path.display()
    )]
    SecretReadable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A secret file whose mode cannot be read.
    #[error("{path}: cannot read its mode: {cause}", path = path.display())]
    SecretStat {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
}

impl RunAs {
    /// Looks `name` up (getpwnam_r: files, LDAP, whatever NSS is configured).
    pub fn lookup(name: &str) -> Result<Self, AccountError> {
        let no_user = || AccountError::NoSuchUser {
            name: name.to_owned(),
        };
        let c_name = CString::new(name).map_err(|_| no_user())?;
        let mut buf = vec![0u8; 1024];
        loop {
            // SAFETY: a zeroed passwd is a valid out-parameter; buf outlives the call and its
            // strings, which are read before buf is dropped.
            let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let rc = unsafe {
                libc::getpwnam_r(
                    c_name.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut found,
                )
            };
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            if rc != 0 {
                return Err(AccountError::Lookup {
                    name: name.to_owned(),
                    cause: std::io::Error::from_raw_os_error(rc),
                });
            }
            if found.is_null() {
                return Err(no_user());
            }
            // SAFETY: getpwnam_r succeeded, so pw_name points into buf, NUL-terminated.
            let canonical = unsafe { CStr::from_ptr(pwd.pw_name) };
            return Ok(Self {
                name: canonical.to_string_lossy().into_owned(),
                uid: pwd.pw_uid,
                gid: pwd.pw_gid,
            });
        }
    }
}

impl RunAs {
    /// Refuses root under any name (uid 0): the switch exists to leave root.
    pub fn not_root(self) -> Result<Self, AccountError> {
        if self.uid == 0 {
            return Err(AccountError::Root { name: self.name });
        }
        Ok(self)
    }

    /// Creates `dir` (and missing parents, mode 0750 under the agent's umask) owned by this
    /// user if it does not exist; an existing one is left as it is (its owner decides). The
    /// parents it creates are this user's too: left root's at 0750, the user could not reach
    /// the directory made for it.
    pub fn own_new_dir(&self, dir: &Path) -> Result<(), AccountError> {
        if dir.exists() {
            return Ok(());
        }
        // A relative path's last ancestor is "", which never exists.
        let missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .collect();
        // One level at a time, each made and opened relative to a descriptor of its parent
        // (never by path, never through a link) and given away through its own: once a level
        // is the user's, the user could swap the next one for a link to `/etc` between the
        // mkdir and a chown by path.
        let mut missing = missing.into_iter().rev();
        let Some(first) = missing.next() else {
            return Ok(());
        };
        let top = match first.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut parent = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(top)
            .map_err(|cause| AccountError::Dir {
                path: top.to_owned(),
                cause,
            })?;
        for p in std::iter::once(first).chain(missing) {
            parent = self
                .made_under(&parent, p)
                .map_err(|cause| AccountError::Dir {
                    path: p.to_owned(),
                    cause,
                })?;
        }
        Ok(())
    }

    /// Makes the directory named by `path`'s last component under `parent` (mode 0750),
    /// opens it without following a link and gives it to this user; its descriptor.
    fn made_under(&self, parent: &std::fs::File, path: &Path) -> std::io::Result<std::fs::File> {
        use std::os::fd::{AsRawFd as _, FromRawFd as _};
        use std::os::unix::ffi::OsStrExt as _;
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let name = std::ffi::CString::new(name.as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a directory descriptor this function borrows and a NUL-terminated name.
        if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o750) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as above; the descriptor returned is owned by the File made from it.
        let fd = unsafe { libc::openat(parent.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let made = unsafe { std::fs::File::from_raw_fd(fd) };
        std::os::unix::fs::fchown(&made, Some(self.uid), Some(self.gid))?;
        Ok(made)
    }
}

/// Refuses a file holding a secret (a signing key) that its group or others may read: the
/// error names the file and the `chmod` that fixes it.
pub fn check_secret_file(path: &Path) -> Result<(), AccountError> {
    let meta = std::fs::metadata(path).map_err(|cause| AccountError::SecretStat {
        path: path.to_owned(),
        cause,
    })?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(AccountError::SecretReadable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}
