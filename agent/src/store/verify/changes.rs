//! What the verification of a store watches while the writer may change it: the shape of
//! the chain's files ([`shape`]), and the segments already hashed by an earlier check of the
//! same verification ([`Hashed`]).

use std::collections::HashMap;
use std::path::Path;

use crate::store::fsutil::sha256_file;
use crate::store::journal;
use crate::store::manifest;
use crate::store::seal::is_segment_name;

/// A directory entry as [`shape`] compares it: name, inode, size, modification and change
/// times (s, ns; a file's change time cannot be set back as its modification time can).
pub(super) type FileShape = (std::ffi::OsString, u64, u64, [i64; 4]);

/// The SHA-256 of each segment hashed by an earlier check of one verification, under the
/// file's shape before it was hashed: a file written since has another change time.
pub(super) type Hashed = HashMap<(std::path::PathBuf, u64, u64, [i64; 4]), String>;

/// How long before a hash a file must have last changed for the hash to be kept: a write in
/// the same tick of a coarse file clock leaves its times as they were (git's "racily clean").
const SETTLED_NS: i64 = 2_000_000_000;

/// The SHA-256 of the segment at `path` whose metadata is `meta`, from `hashed` when an
/// earlier check of this verification hashed it as it still is. A hash is kept only when the
/// file's metadata was the same after the hash as before it, and its last change was
/// [`SETTLED_NS`] older than the hash's start.
pub(super) fn segment_sha256(
    path: &Path,
    meta: &std::fs::Metadata,
    hashed: &mut Hashed,
) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let id = |m: &std::fs::Metadata| {
        let times = [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()];
        (path.to_owned(), m.ino(), m.len(), times)
    };
    let before = id(meta);
    if let Some(sha) = hashed.get(&before) {
        return Ok(sha.clone());
    }
    let started = crate::clock::clock_ns(libc::CLOCK_REALTIME);
    let sha = sha256_file(path)?;
    let changed_ns = meta.ctime().saturating_mul(1_000_000_000) + meta.ctime_nsec();
    let settled = started.saturating_sub(changed_ns) > SETTLED_NS;
    if settled && std::fs::metadata(path).is_ok_and(|after| id(&after) == before) {
        hashed.insert(before, sha.clone());
    }
    Ok(sha)
}

/// What a seal, merge or prune alters: the segments and the manifest (name, inode, size,
/// modification and change times), and which journals there are (a live one grows as records
/// come). The files the agent rewrites every second (its status snapshot) or appends to (the logs) are
/// left out, or a long check of a running store would always run again. None when the
/// directory cannot be listed.
pub(super) fn shape(dir: &Path) -> Option<Vec<FileShape>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        let name = e.file_name();
        let Some(text) = name.to_str() else { continue };
        let journal = journal::file::journal_id_of(text).is_some();
        if !(journal || is_segment_name(text) || text == manifest::MANIFEST) {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            out.push((name, 0, 0, [0; 4])); // gone while listed: a change all the same
            continue;
        };
        out.push(if journal {
            (name, m.ino(), 0, [0; 4])
        } else {
            let times = [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()];
            (name, m.ino(), m.len(), times)
        });
    }
    out.sort_unstable();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment changed moments before its hash (here, just written) is hashed again at the
    /// next check, not taken from the cache: a write within one tick of a coarse file clock
    /// would leave its times as they were.
    #[test]
    fn a_file_changed_just_before_its_hash_is_not_kept() {
        let tmp = crate::blocklist::tests::TempDir::new("verify-hashed");
        let path = tmp.0.join("seg-1.parquet");
        std::fs::write(&path, b"one").expect("write");
        let meta = std::fs::metadata(&path).expect("stat");
        let mut hashed = Hashed::new();
        let first = segment_sha256(&path, &meta, &mut hashed).expect("hash");
        assert!(hashed.is_empty(), "a file changed just now is not kept");
        assert_eq!(first, sha256_file(&path).expect("hash"));
    }
}
