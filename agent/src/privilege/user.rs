//! The account `run --user` switches to, and the checks on files that hold secrets.

use std::ffi::{CStr, CString};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
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
        // One level at a time, each given away through a descriptor of the directory just
        // made (never by path, never through a link): a parent another user may write could
        // otherwise have a made directory swapped for a link to `/etc` before the chown.
        for p in missing.into_iter().rev() {
            let dir_error = |cause| AccountError::Dir {
                path: p.to_owned(),
                cause,
            };
            std::fs::DirBuilder::new()
                .mode(0o750)
                .create(p)
                .map_err(dir_error)?;
            let made = std::fs::File::options()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .open(p)
                .map_err(dir_error)?;
            std::os::unix::fs::fchown(&made, Some(self.uid), Some(self.gid)).map_err(dir_error)?;
        }
        Ok(())
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
