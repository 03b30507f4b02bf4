//! The version in force of each operator input file (list files, subscribers files), kept in
//! the state directory for the next agent.
//!
//! During a run, a file that is emptied, damaged or unreadable keeps its last good version in
//! force. Without a copy, a restart (a crash, a reboot, a `detach`) lost that version, and
//! the next agent started without the file's rules or rows until it was fixed. With one, it
//! puts the kept version in force instead, as a reload would have.
//!
//! A copy ends with a line giving its own name and its SHA-256 ([`seal_line`]): a copy
//! damaged by anything but the agent (cut, emptied, one byte changed so that it still
//! parses), or another file's copy put in its place, is refused, never put in force in place
//! of the version it held.

use std::path::{Component, Path, PathBuf};

use sha2::Digest;

use crate::store::fsutil::{
    hex, read_input_here, seal_line, sealed_body, sync_dir, write_atomic_parts, InputError,
    TABLE_MAX,
};

/// What a kept copy that cannot be used is.
#[derive(Debug, thiserror::Error)]
pub enum KeptError {
    /// It cannot be read (or is not a regular file).
    #[error(transparent)]
    Input(#[from] InputError),
    /// Its last line does not give its SHA-256, or names another copy: damaged since it was
    /// written, or another file's copy.
    #[error("is damaged, or another file's copy: its bytes do not match the SHA-256 it was written with under this name")]
    Damaged,
}

/// How a copy's last line started before it named the copy ([`Kept::seal`]): read, never
/// written.
const SEAL_UNNAMED: &[u8] = b"\n# xdp-audit kept copy, sha256 ";

/// A directory of kept copies, one per configured file, named by a hash of the file's path.
#[derive(Clone, Debug)]
pub struct Kept {
    dir: PathBuf,
    /// The copies' file name extension (`csv`, `list`): what they hold, for an operator.
    ext: &'static str,
}

impl Kept {
    /// Copies in `dir` (created at the first [`Kept::keep`]), named `<hash>.<ext>`.
    pub fn new(dir: PathBuf, ext: &'static str) -> Self {
        Kept { dir, ext }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of `file`'s copy: a hash of its path made absolute, with `.` and `..` taken
    /// out (`a.csv`, `./a.csv` and `/etc/x/../x/a.csv` from `/etc/x` are one file; links are
    /// not followed).
    fn name(&self, file: &Path) -> String {
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
        let mut path = PathBuf::new();
        for c in absolute.components() {
            match c {
                Component::ParentDir => {
                    path.pop();
                }
                Component::CurDir => {}
                c => path.push(c),
            }
        }
        let digest = sha2::Sha256::digest(path.as_os_str().as_encoded_bytes());
        format!("{}.{}", hex(&digest[..16]), self.ext)
    }

    /// Where `file`'s copy is.
    pub fn path_of(&self, file: &Path) -> PathBuf {
        self.dir.join(self.name(file))
    }

    /// How the last line of the copy called `name` starts ([`seal_line`]): with its name, so
    /// that another file's copy moved or copied to this name is refused (its SHA-256 alone
    /// held: a swapped copy of the allowlist stood in for a blocklist).
    fn seal(name: &str) -> Vec<u8> {
        format!("\n# xdp-audit kept copy {name}, sha256 ").into_bytes()
    }

    /// Keeps `bytes`, `file`'s version now in force, atomically and durably. A copy already
    /// holding them is left as it is: every start applies every file again. A copy that
    /// cannot be replaced is removed, so that no older version stands in for the file.
    pub fn keep(&self, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let name = self.name(file);
        let path = self.dir.join(&name);
        let seal = seal_line(&Self::seal(&name), bytes);
        let same = std::fs::symlink_metadata(&path)
            .is_ok_and(|m| m.is_file() && m.len() == (bytes.len() + seal.len()) as u64)
            && read_input_here(&path, TABLE_MAX)
                .is_ok_and(|copy| copy.strip_suffix(&seal[..]) == Some(bytes));
        if same {
            return Ok(());
        }
        let written = self
            .make_dir()
            .and_then(|()| write_atomic_parts(&self.dir, &name, &[bytes, &seal]));
        let Err(e) = written else {
            return Ok(());
        };
        match std::fs::remove_file(&path) {
            Err(gone) if gone.kind() != std::io::ErrorKind::NotFound => Err(std::io::Error::new(
                e.kind(),
                format!(
                    "{e}; and the older copy {} cannot be removed ({gone}): a start that finds \
                     the file unusable puts that older version in force",
                    path.display()
                ),
            )),
            _ => Err(std::io::Error::new(
                e.kind(),
                format!("{e}; a start that finds the file unusable goes without it"),
            )),
        }
    }

    /// Makes the directory, durably (its parent synced), if it is not there.
    fn make_dir(&self) -> std::io::Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        match self.dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
            _ => Ok(()),
        }
    }

    /// `file`'s kept copy: `None` if there is none. Never through a symbolic link.
    pub fn read(&self, file: &Path) -> Result<Option<Vec<u8>>, KeptError> {
        let name = self.name(file);
        match read_input_here(&self.dir.join(&name), TABLE_MAX) {
            Ok(mut copy) => {
                // A copy an earlier build wrote is taken as it was sealed (the next keep seals
                // it with its name).
                let body = sealed_body(&copy, &Self::seal(&name))
                    .or_else(|| sealed_body(&copy, SEAL_UNNAMED))
                    .and_then(Result::ok);
                let len = body.ok_or(KeptError::Damaged)?.len();
                copy.truncate(len);
                Ok(Some(copy))
            }
            Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the copies of files other than `files`, those no longer configured: they
    /// would outlive the operator's edit, and stand in for the file should it come back.
    pub fn forget_others<'a>(&self, files: impl IntoIterator<Item = &'a Path>) {
        let ours: Vec<String> = files.into_iter().map(|f| self.name(f)).collect();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name.to_str().is_none_or(|n| !ours.iter().any(|o| o == n)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_file_however_its_path_is_spelt_and_others_forgotten() {
        let tmp = crate::blocklist::tests::TempDir::new("kept");
        let kept = Kept::new(tmp.0.join("kept"), "list");
        let cwd = std::env::current_dir().expect("cwd");
        let a = cwd.join("a.list");
        let spelt = cwd.join("x").join("..").join(".").join("a.list");
        assert_eq!(kept.path_of(&a), kept.path_of(&spelt));
        assert_eq!(kept.path_of(&a), kept.path_of(Path::new("a.list")));
        assert_ne!(kept.path_of(&a), kept.path_of(&cwd.join("b.list")));
        assert!(kept.read(&a).expect("none yet").is_none());
        kept.keep(&a, b"192.0.2.1\n").expect("keep a");
        kept.keep(&cwd.join("b.list"), b"x\n").expect("keep b");
        assert_eq!(
            kept.read(&spelt).expect("read"),
            Some(b"192.0.2.1\n".to_vec())
        );
        // The same bytes again leave the copy as it is; others replace it.
        // (A replacement is a new file: another inode.)
        let inode = || {
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(kept.path_of(&a)).expect("copy"))
        };
        let before = inode();
        kept.keep(&a, b"192.0.2.1\n").expect("keep a again");
        assert_eq!(inode(), before, "the same bytes are not written again");
        kept.keep(&a, b"192.0.2.2\n").expect("keep a's edit");
        assert_ne!(inode(), before, "an edit replaces the copy");
        assert_eq!(kept.read(&a).expect("read"), Some(b"192.0.2.2\n".to_vec()));
        kept.forget_others([a.as_path()]);
        assert!(kept.read(&a).expect("kept").is_some());
        assert!(kept.read(&cwd.join("b.list")).expect("read").is_none());
        // A copy damaged since it was written is refused: cut, one byte changed, its seal
        // gone, a link in its place.
        let good = std::fs::read(kept.path_of(&a)).expect("the copy");
        let damaged = |bytes: &[u8]| {
            std::fs::write(kept.path_of(&a), bytes).expect("damage");
            matches!(kept.read(&a), Err(KeptError::Damaged))
        };
        assert!(damaged(&good[1..]), "cut at its start");
        assert!(damaged(&good[..good.len() - 1]), "cut at its end");
        let mut changed = good.clone();
        changed[8] = b'3';
        assert!(damaged(&changed), "192.0.2.3 for 192.0.2.2");
        assert!(damaged(b"192.0.2.2\n"), "no seal");
        assert!(damaged(b""), "emptied");
        std::fs::write(kept.path_of(&a), &good).expect("undo");
        assert_eq!(kept.read(&a).expect("read"), Some(b"192.0.2.2\n".to_vec()));
        // Another file's copy in its place (b's: its SHA-256 holds, its name does not).
        let b = cwd.join("b.list");
        kept.keep(&b, b"198.51.100.7\n").expect("keep b");
        let theirs = std::fs::read(kept.path_of(&b)).expect("b's copy");
        assert!(damaged(&theirs), "b's copy under a's name");
        // A copy sealed before copies named themselves is read as it was.
        let mut unnamed = b"192.0.2.2\n".to_vec();
        unnamed.extend(seal_line(SEAL_UNNAMED, b"192.0.2.2\n"));
        std::fs::write(kept.path_of(&a), &unnamed).expect("an earlier build's copy");
        assert_eq!(kept.read(&a).expect("read"), Some(b"192.0.2.2\n".to_vec()));
        std::fs::write(kept.path_of(&a), &good).expect("undo");
        let elsewhere = tmp.0.join("elsewhere");
        std::fs::write(&elsewhere, &good).expect("write");
        std::fs::remove_file(kept.path_of(&a)).expect("remove");
        std::os::unix::fs::symlink(&elsewhere, kept.path_of(&a)).expect("link");
        assert!(kept.read(&a).is_err(), "a link is not followed");
        // A copy that cannot be replaced is removed: no older version stands in.
        let tmp = kept.dir().join(format!(
            "{}{}",
            crate::store::fsutil::TMP_PREFIX,
            kept.name(&a)
        ));
        std::fs::create_dir(&tmp).expect("a directory where the new copy is written");
        let e = kept.keep(&a, b"192.0.2.3\n").expect_err("not replaced");
        assert!(e.to_string().contains("goes without it"), "{e}");
        assert!(
            kept.read(&a).expect("read").is_none(),
            "the old copy removed"
        );
        std::fs::remove_dir(&tmp).expect("undo");
        kept.keep(&a, b"192.0.2.2\n").expect("keep a");
        // A copy that is not a regular file is an error, not "none".
        std::fs::remove_file(kept.path_of(&a)).expect("remove");
        std::fs::create_dir(kept.path_of(&a)).expect("a directory in its place");
        assert!(kept.read(&a).is_err());
        // One that can be neither replaced nor removed is named: it may stand in.
        let e = kept
            .keep(&a, b"192.0.2.4\n")
            .expect_err("neither replaced nor removed");
        assert!(e.to_string().contains("cannot be removed"), "{e}");
    }
}
