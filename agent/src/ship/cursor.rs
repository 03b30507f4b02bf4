//! The shipping cursor: what the remote store acknowledged, persisted in the store directory
//! as `ship-cursor.json` (replaced atomically and fsynced at the end of each shipping pass and
//! at most every second during a long one; format in `docs/store-format.md`).
//!
//! An object enters the cursor only after the server verified it (size and SHA-256), so a
//! crash at any moment leaves the cursor behind the bucket, never ahead: the next start
//! uploads again, and a conditional create then finds the identical object and takes it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::store::fsutil::{read_input, sync_dir, write_atomic_via, InputError};
use crate::store::manifest::SegmentInfo;
use crate::store::retention::Shipped;

/// File name of the cursor in the store directory.
pub const CURSOR: &str = "ship-cursor.json";
/// The cursor's temporary file while it is replaced. Not under the store's temporary prefix
/// (`store::fsutil::TMP_PREFIX`): shipping writes without the store's lock (`xdp-audit ship`
/// beside a running agent), and an agent starting would remove that file before its rename.
/// A leftover is overwritten by the next save; older ones under the store's prefix are still
/// removed when the store opens.
pub const CURSOR_TMP: &str = ".ship-cursor.json.tmp";
/// Format version written.
pub const VERSION: u32 = 1;
/// The most bytes read from a cursor: about 250 a live segment, so room for millions of them,
/// while an endless file is refused before it takes the host's memory.
pub const MAX_BYTES: u64 = 1 << 30;

/// One acknowledged segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    /// Object key.
    pub key: String,
    /// Size in bytes, as the server reported it.
    pub size: u64,
    /// SHA-256 (hex) of the sealed file, as the chain records it and the object carries.
    pub sha256: String,
}

/// The persisted cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Format version.
    pub version: u32,
    /// Bucket and prefix the acknowledgements are for (`s3://BUCKET/PREFIX/gateway=ID`):
    /// shipping somewhere else starts from nothing.
    pub target: String,
    /// Live segments acknowledged, by file name.
    pub acked: BTreeMap<String, Acked>,
    /// Compaction entries up to this chain `seq` are settled remotely: the merged object was
    /// acknowledged and the hour objects it replaced were deleted.
    pub settled_seq: Option<u64>,
    /// `seq` of the chain head whose manifest was last acknowledged.
    pub manifest_seq: Option<u64>,
    /// That head's `hash`: a store whose entry `manifest_seq` has another was replaced, and
    /// is not shipped (none in a cursor written before 2026-12-07).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_hash: Option<String>,
}

/// Errors of the cursor file; each names it.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// Read or write failed.
    #[error("{path}: {op}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// What was being done.
        op: &'static str,
        /// The cause.
        cause: std::io::Error,
    },
    /// Not a regular file (a FIFO, which a blocking open would wait on forever), or larger
    /// than [`MAX_BYTES`]: refused at once, and left in place.
    #[error("{path} {reason}; move it away to ship everything again")]
    Refused {
        /// The file.
        path: String,
        /// What it is.
        reason: InputError,
    },
    /// Not a cursor.
    #[error("{path}: not a shipping cursor ({reason}); move it away to ship everything again")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The live segments a cursor does not hold: what shipping still owes the bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Segments not acknowledged.
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The newest record of the oldest of them (Unix ns), none without a backlog.
    pub oldest_ns: Option<i64>,
    /// Of them, segments whose records all ended before the retention's cutoff: local
    /// retention keeps them until they are shipped.
    pub expired: u64,
}

impl Cursor {
    /// Whether the bucket acknowledged `s` as sealed (same file, same SHA-256).
    pub fn holds(&self, s: &SegmentInfo) -> bool {
        self.acked
            .get(&s.file)
            .is_some_and(|a| a.sha256 == s.sha256)
    }

    /// The backlog of `live` (the chain's live segments) against this cursor; `cutoff_ns` is
    /// the retention's cutoff (Unix ns) for [`Backlog::expired`].
    pub fn backlog<'a>(
        &self,
        live: impl IntoIterator<Item = &'a SegmentInfo>,
        cutoff_ns: i64,
    ) -> Backlog {
        live.into_iter()
            .filter(|s| !self.holds(s))
            .fold(Backlog::default(), |b, s| Backlog {
                segments: b.segments + 1,
                bytes: b.bytes + s.size,
                oldest_ns: Some(b.oldest_ns.map_or(s.time_max_ns, |o| o.min(s.time_max_ns))),
                expired: b.expired + u64::from(s.time_max_ns < cutoff_ns),
            })
    }

    /// The cursor in `dir` for `target`; empty if there is none or it was for another target.
    pub fn load(dir: &Path, target: &str) -> Result<Self, CursorError> {
        let fresh = Self {
            version: VERSION,
            target: target.to_owned(),
            ..Self::default()
        };
        let found = match read(dir) {
            Err(CursorError::Parse { path, reason }) => {
                set_aside(dir, &path, &reason)?;
                None
            }
            other => other?,
        };
        match found {
            Some(c) if c.target == target => Ok(c),
            Some(c) => {
                tracing::warn!(dir = %dir.display(), was = %c.target, now = %target, "the shipping target changed; every live segment is shipped to the new one");
                Ok(fresh)
            }
            None => Ok(fresh),
        }
    }

    /// Writes the cursor durably (temporary file, fsync, rename, directory fsync).
    pub fn save(&self, dir: &Path) -> Result<(), CursorError> {
        // Serialising plain data cannot fail.
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        write_atomic_via(dir, CURSOR_TMP, CURSOR, &[&bytes]).map_err(|cause| CursorError::Io {
            path: dir.join(CURSOR).display().to_string(),
            op: "write",
            cause,
        })
    }
}

/// Moves a damaged cursor out of the way (to `ship-cursor.json.damaged-<unix seconds>`, kept
/// for a look), so shipping starts from an empty cursor: the cursor can be rebuilt, since a
/// conditional create (or, before a multipart upload, a HEAD) takes an identical object the
/// bucket already holds as acknowledged, and settling and the manifest put again are no-ops.
fn set_aside(dir: &Path, path: &str, reason: &str) -> Result<(), CursorError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = dir.join(format!("{CURSOR}.damaged-{secs}"));
    std::fs::rename(dir.join(CURSOR), &aside)
        .and_then(|()| sync_dir(dir))
        .map_err(|cause| CursorError::Io {
            path: path.to_owned(),
            op: "move the damaged cursor aside",
            cause,
        })?;
    tracing::warn!(
        file = path,
        reason,
        moved_to = %aside.display(),
        "the shipping cursor is damaged; moved it aside and starting from an empty one (segments \
         the bucket already holds are recognised and not uploaded twice)"
    );
    Ok(())
}

/// The cursor in `dir`, if any.
pub fn read(dir: &Path) -> Result<Option<Cursor>, CursorError> {
    let path = dir.join(CURSOR);
    // Bytes, not text: a byte that is not UTF-8 is damage like any other, and serde_json
    // reports where it is. Never a blocking open: a FIFO in its place would stop shipping,
    // and retention, which asks the cursor what was shipped.
    let bytes = match read_input(&path, MAX_BYTES) {
        Ok(b) => b,
        Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(InputError::Io(cause)) => {
            return Err(CursorError::Io {
                path: path.display().to_string(),
                op: "read",
                cause,
            })
        }
        Err(reason) => {
            return Err(CursorError::Refused {
                path: path.display().to_string(),
                reason,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| CursorError::Parse {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// The segments `target` acknowledged, file name to SHA-256, as the cursor in `dir` says
/// (what retention asks before deleting: see `store::retention::ShipGate`, which takes a
/// segment as shipped only if its sealed SHA-256 is the acknowledged one, as
/// [`Cursor::holds`]: a stale or restored cursor naming a file with other bytes speaks for
/// none of them). A cursor of another target (the bucket, prefix or gateway id changed, or
/// the host name the id defaults to) speaks for none: until the new target's first upload
/// saves its cursor, the old one's would let retention delete segments the new target never
/// received.
pub fn shipped(dir: &Path, target: &str) -> Result<Shipped, String> {
    match read(dir) {
        Ok(Some(c)) if c.target == target => Ok(c
            .acked
            .into_iter()
            .map(|(file, a)| (file, a.sha256))
            .collect()),
        Ok(_) => Ok(Shipped::new()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_cursor_loads_and_another_target_starts_fresh() {
        let dir = std::env::temp_dir().join(format!("xdp-audit-cursor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut c = Cursor::load(&dir, "s3://b/p/gateway=g").expect("empty");
        assert!(c.acked.is_empty());
        c.acked.insert(
            "seg-1-1.parquet".into(),
            Acked {
                key: "k".into(),
                size: 3,
                sha256: "ab".into(),
            },
        );
        c.manifest_seq = Some(4);
        c.save(&dir).expect("save");
        assert_eq!(Cursor::load(&dir, "s3://b/p/gateway=g").expect("load"), c);
        assert!(Cursor::load(&dir, "s3://other/gateway=g")
            .expect("load")
            .acked
            .is_empty());
        assert_eq!(
            shipped(&dir, "s3://b/p/gateway=g").expect("read"),
            Shipped::from([("seg-1-1.parquet".to_string(), "ab".to_string())])
        );
        assert_eq!(
            shipped(&dir, "s3://other/gateway=g").expect("read"),
            Shipped::new(),
            "another target's acknowledgements let retention delete nothing"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// The cursor is replaced through a temporary name the store's clean-up at open does not
    /// match (shipping does not hold the store's lock), and leaves nothing else behind.
    #[test]
    fn the_cursor_is_saved_through_a_name_the_store_does_not_clean_up() {
        use crate::store::fsutil::TMP_PREFIX;
        assert!(!CURSOR_TMP.starts_with(TMP_PREFIX), "{CURSOR_TMP}");
        let tmp = crate::blocklist::tests::TempDir::new("cursor-tmp");
        let c = Cursor::load(&tmp.0, "t").expect("empty");
        // A leftover of an interrupted save is overwritten.
        std::fs::write(tmp.0.join(CURSOR_TMP), b"half").expect("leftover");
        c.save(&tmp.0).expect("save");
        let names: Vec<String> = std::fs::read_dir(&tmp.0)
            .expect("list")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert_eq!(names, [CURSOR], "only the cursor");
        assert_eq!(Cursor::load(&tmp.0, "t").expect("load"), c);
    }

    /// A damaged cursor (cut short, emptied, a flipped bit) is moved aside with its bytes
    /// and shipping starts from an empty one, instead of refusing to start.
    #[test]
    fn a_damaged_cursor_is_moved_aside_and_shipping_starts_empty() {
        let mut saved = Cursor::load(Path::new("/nonexistent"), "t").expect("empty");
        saved.manifest_seq = Some(9);
        let good = serde_json::to_vec_pretty(&saved).expect("encode");
        let mut flipped = good.clone();
        flipped[0] ^= 0x40; // `{` becomes `;`
        let mut not_utf8 = good.clone();
        let quote = good.iter().position(|&b| b == b'"').expect("a string") + 1;
        not_utf8[quote] ^= 0x80; // inside a string: no longer UTF-8
        for (what, bytes) in [
            ("a byte no longer UTF-8", not_utf8),
            ("cut short", good[..good.len() / 2].to_vec()),
            ("emptied", Vec::new()),
            ("a flipped bit", flipped),
        ] {
            let dir = std::env::temp_dir().join(format!(
                "xdp-audit-cursor-damaged-{}-{}",
                std::process::id(),
                what.replace(' ', "-")
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            std::fs::write(dir.join(CURSOR), &bytes).expect("damage");
            let c = Cursor::load(&dir, "t")
                .unwrap_or_else(|e| panic!("{what}: a damaged cursor refused: {e}"));
            assert_eq!(c.manifest_seq, None, "{what}: starts from an empty cursor");
            assert!(c.acked.is_empty(), "{what}: starts from an empty cursor");
            assert!(
                !dir.join(CURSOR).exists(),
                "{what}: the damaged file is gone"
            );
            let aside: Vec<_> = std::fs::read_dir(&dir)
                .expect("list")
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{CURSOR}.damaged-"))
                })
                .collect();
            assert_eq!(aside.len(), 1, "{what}: one file set aside");
            assert_eq!(
                std::fs::read(aside[0].path()).expect("read the file set aside"),
                bytes,
                "{what}: the damaged bytes are kept"
            );
            std::fs::remove_dir_all(&dir).expect("clean up");
        }
    }
}
