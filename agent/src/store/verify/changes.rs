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

/// The SHA-256 of the segment at `path` whose metadata is `meta`, from `hashed` when an
/// earlier check of this verification hashed it as it still is.
pub(super) fn segment_sha256(
    path: &Path,
    meta: &std::fs::Metadata,
    hashed: &mut Hashed,
) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let times = [
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    ];
    let id = (path.to_owned(), meta.ino(), meta.len(), times);
    if let Some(sha) = hashed.get(&id) {
        return Ok(sha.clone());
    }
    let sha = sha256_file(path)?;
    hashed.insert(id, sha.clone());
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
