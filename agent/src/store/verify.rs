//! Verify: walk the manifest chain, check every live segment's SHA-256 and size, find segment
//! files the chain does not list, and check the (signed) head. The first broken link is
//! reported with the file at fault.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::fsutil::sha256_file;
use super::manifest::{self, check_signature, entry_hash, Body, Head, GENESIS};
use super::seal::is_segment_name;

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct Broken {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// What a successful verification covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Chain entries.
    pub entries: u64,
    /// Live segments whose hash was checked.
    pub segments: u64,
    /// Rows in those segments.
    pub rows: u64,
    /// Segments deleted by retention, as recorded.
    pub pruned: u64,
    /// Hash of the last entry (empty for an empty store).
    pub head: String,
    /// Whether the head's signature was checked.
    pub signature_checked: bool,
}

/// Verifies the store in `dir`; with `key`, the head must carry a valid signature by it.
pub fn verify(dir: &Path, key: Option<&VerifyingKey>) -> Result<Verified, Broken> {
    let mpath = dir.join(manifest::MANIFEST);
    let broken = |file: &Path, reason: String| Broken {
        file: file.to_owned(),
        reason,
    };
    let text = match std::fs::read_to_string(&mpath) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The first seal writes its segment before it creates the manifest: a crash
            // between the two leaves one segment of an interrupted seal, checked below.
            let has_segments = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .any(|n| is_segment_name(&n) && !interrupted_seal(dir, &n, 0))
                })
                .unwrap_or(false);
            if has_segments {
                return Err(broken(
                    &mpath,
                    "missing, but segments exist (manifest deleted)".into(),
                ));
            }
            String::new()
        }
        Err(e) => return Err(broken(&mpath, format!("cannot read: {e}"))),
    };
    let (entries, head) =
        manifest::parse_with_head(&mpath, &text).map_err(|e| broken(&mpath, e.to_string()))?;
    let mut out = Verified::default();
    let mut prev = GENESIS.to_owned();
    let mut live: HashMap<String, (String, u64, u64)> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let at = format!("entry {i} (line {})", i + 1);
        if e.seq != i as u64 {
            return Err(broken(
                &mpath,
                format!(
                    "{at}: seq is {}, expected {i} (entries deleted, inserted or reordered)",
                    e.seq
                ),
            ));
        }
        if e.prev != prev {
            return Err(broken(
                &mpath,
                format!("{at}: prev does not match the hash of entry {} (chain broken: an entry was changed, removed, inserted or reordered)", i.wrapping_sub(1) as i64),
            ));
        }
        if entry_hash(e.seq, &e.body, &e.prev) != e.hash {
            return Err(broken(
                &mpath,
                format!("{at}: hash does not match its content (entry changed)"),
            ));
        }
        match &e.body {
            Body::Segment(s) => {
                if !is_segment_name(&s.file) || s.file.contains('/') {
                    return Err(broken(
                        &mpath,
                        format!("{at}: bad segment name {:?}", s.file),
                    ));
                }
                if !listed.insert(s.file.clone()) {
                    return Err(broken(
                        &mpath,
                        format!("{at}: segment {} listed twice", s.file),
                    ));
                }
                live.insert(s.file.clone(), (s.sha256.clone(), s.size, s.rows));
            }
            Body::Prune(p) => {
                for f in &p.files {
                    match live.remove(&f.file) {
                        Some((sha, _, _)) if sha == f.sha256 => out.pruned += 1,
                        Some(_) => {
                            return Err(broken(
                                &mpath,
                                format!(
                                    "{at}: prune of {} names another hash than its seal",
                                    f.file
                                ),
                            ))
                        }
                        None => {
                            return Err(broken(
                                &mpath,
                                format!("{at}: prune of {} which is not a live segment", f.file),
                            ))
                        }
                    }
                }
            }
        }
        prev = e.hash.clone();
    }
    out.entries = entries.len() as u64;
    // Segments in chain order, so the first broken one is reported.
    for e in &entries {
        let Body::Segment(s) = &e.body else { continue };
        let Some((sha, size, rows)) = live.get(&s.file) else {
            continue;
        };
        let path = dir.join(&s.file);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(broken(
                    &path,
                    format!("missing: listed by entry {} but deleted", e.seq),
                ))
            }
            Err(err) => return Err(broken(&path, format!("cannot read: {err}"))),
        };
        if meta.len() != *size {
            return Err(broken(
                &path,
                format!(
                    "size {} differs from the sealed size {size} (file changed)",
                    meta.len()
                ),
            ));
        }
        let got = sha256_file(&path).map_err(|err| broken(&path, format!("cannot read: {err}")))?;
        if &got != sha {
            return Err(broken(
                &path,
                format!("SHA-256 {got} differs from the sealed {sha} (file changed)"),
            ));
        }
        out.segments += 1;
        out.rows += rows;
    }
    let pruned: HashSet<&String> = listed.iter().filter(|f| !live.contains_key(*f)).collect();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| broken(dir, format!("cannot list: {e}")))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_segment_name(n))
        .collect();
    names.sort();
    for n in names {
        if !listed.contains(&n) {
            if interrupted_seal(dir, &n, entries.len() as u64) {
                tracing::warn!(
                    file = %n,
                    "segment not yet in the chain: a seal was interrupted by a crash; the next start seals its journal again under this name"
                );
                continue;
            }
            return Err(broken(
                &dir.join(&n),
                "segment not in the chain (inserted or replaced)".into(),
            ));
        }
        if pruned.contains(&n) {
            tracing::info!(file = %n, "segment pruned by the chain still present (interrupted retention; the next start deletes it)");
        }
    }
    check_head(&mpath, head, entries.last(), key, &mut out)?;
    Ok(out)
}

/// Whether an unlisted segment is the product of a seal a crash interrupted between the
/// segment's rename and the manifest append: it takes the next chain position and its journal
/// is still on disk (so the next start re-seals that journal, replacing this file). Query
/// reads only listed segments, so such a file never shows up in results.
fn interrupted_seal(dir: &Path, name: &str, next_seq: u64) -> bool {
    let seq_ok = name
        .strip_prefix("seg-")
        .and_then(|r| r.get(..8))
        .and_then(|s| s.parse::<u64>().ok())
        == Some(next_seq);
    if !seq_ok {
        return false;
    }
    let Ok(seg) = super::segment::SegmentReader::open(&dir.join(name)) else {
        return false;
    };
    seg.journal_id()
        .is_some_and(|id| dir.join(super::seal::journal_name(id)).exists())
}

fn check_head(
    hpath: &Path,
    head: Option<Head>,
    last: Option<&manifest::Entry>,
    key: Option<&VerifyingKey>,
    out: &mut Verified,
) -> Result<(), Broken> {
    let broken = |reason: String| Broken {
        file: hpath.to_owned(),
        reason,
    };
    let Some(last) = last else {
        if key.is_some() {
            return Err(broken("the store is empty: nothing is signed".into()));
        }
        return Ok(());
    };
    let head = head.ok_or_else(|| {
        broken("no head line after the last entry (the end of the chain was cut)".into())
    })?;
    if head.seq != last.seq || head.hash != last.hash {
        return Err(broken(format!(
            "the head line names entry {} ({}) but the chain ends at entry {} ({}): entries were removed from or added to the end",
            head.seq, head.hash, last.seq, last.hash
        )));
    }
    if let Some(k) = key {
        check_signature(&head, k).map_err(broken)?;
        out.signature_checked = true;
    }
    out.head = head.hash;
    Ok(())
}
