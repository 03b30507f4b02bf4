//! The manifest: a hash chain over every sealed segment and every retention deletion, and its
//! (optionally ed25519-signed) head.
//!
//! `manifest.jsonl` holds one JSON object per line. Each entry carries `seq` (0, 1, 2, ...),
//! `kind` (`segment` or `prune`), the fields of its kind, `prev` (the previous entry's `hash`,
//! 64 zeros for the first) and `hash` = SHA-256 of `"xdp-audit chain v1\n"` followed by the
//! compact JSON array `[seq, body, prev]`, where `body` is the entry without `seq`, `prev`
//! and `hash` (fields in the documented order). `manifest.head` names the last entry's `seq`
//! and `hash`, and with a signing key carries an ed25519 signature over
//! `"xdp-audit chain head v1\n{seq}\n{hash}\n"`, so a rewritten or shortened chain is caught.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::fsutil::{hex, unhex, write_atomic};

/// File name of the chain.
pub const MANIFEST: &str = "manifest.jsonl";
/// File name of the chain head.
pub const HEAD: &str = "manifest.head";
/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// First token of a secret key file.
pub const SECRET_KEY_TAG: &str = "xdp-audit-ed25519-secret-v1";
/// First token of a public key file.
pub const PUBLIC_KEY_TAG: &str = "xdp-audit-ed25519-public-v1";

/// Errors of the manifest and key files; each names the file and, where it applies, the line.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// An I/O operation failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of the manifest or head does not parse.
    #[error("{path} line {line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A key file is malformed.
    #[error("key file {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A sealed segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// File name inside the log directory.
    pub file: String,
    /// Id of the journal it was sealed from (detects a journal sealed twice after a crash).
    pub journal_id: u64,
    /// Smallest `time_start` in the segment, Unix ns.
    pub time_min_ns: i64,
    /// Largest `time_end` in the segment, Unix ns.
    pub time_max_ns: i64,
    /// Rows in the segment.
    pub rows: u64,
    /// File size in bytes.
    pub size: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// A file deleted by retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedFile {
    /// File name.
    pub file: String,
    /// Its SHA-256 as recorded when it was sealed.
    pub sha256: String,
}

/// A retention run that deleted segments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneInfo {
    /// When the deletion was decided, Unix ns.
    pub at_ns: i64,
    /// The retention in force, days.
    pub retention_days: u32,
    /// Segments whose newest record was older than the retention.
    pub files: Vec<PrunedFile>,
}

/// What an entry records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// A segment was sealed.
    Segment(SegmentInfo),
    /// Segments were deleted by retention.
    Prune(PruneInfo),
}

/// One link of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the chain, from 0.
    pub seq: u64,
    /// What the entry records.
    #[serde(flatten)]
    pub body: Body,
    /// Hash of the previous entry ([`GENESIS`] for the first).
    pub prev: String,
    /// Hash of this entry, see the module docs.
    pub hash: String,
}

/// The chain head as written to [`HEAD`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// `seq` of the last entry.
    pub seq: u64,
    /// `hash` of the last entry.
    pub hash: String,
    /// Hex ed25519 public key of the signer, if signed.
    pub public_key: Option<String>,
    /// Hex ed25519 signature over [`head_message`], if signed.
    pub signature: Option<String>,
}

/// The hash an entry must carry.
pub fn entry_hash(seq: u64, body: &Body, prev: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"xdp-audit chain v1\n");
    // Serialising plain data to a Vec cannot fail; an empty input would still differ.
    h.update(serde_json::to_vec(&(seq, body, prev)).unwrap_or_default());
    hex(&h.finalize())
}

/// The message signed for a head.
pub fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    format!("xdp-audit chain head v1\n{seq}\n{hash}\n").into_bytes()
}

/// Parses `manifest.jsonl` text into entries (no chain check: that is [`crate::store::verify`]).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, ManifestError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| ManifestError::Parse {
                path: path.to_owned(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The chain as the writer keeps it.
pub struct Manifest {
    dir: PathBuf,
    entries: Vec<Entry>,
    signing_key: Option<SigningKey>,
}

impl Manifest {
    /// Loads the chain of `dir` (empty if there is none yet).
    pub fn load(dir: &Path, signing_key: Option<SigningKey>) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST);
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(ManifestError::Io {
                    path,
                    op: "read",
                    source,
                })
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            entries,
            signing_key,
        })
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Appends an entry: the whole manifest is rewritten to a temporary file, fsynced and
    /// renamed, then the head likewise (signed when a key is set).
    pub fn append(&mut self, body: Body) -> Result<&Entry, ManifestError> {
        let (seq, prev) = match self.entries.last() {
            Some(e) => (e.seq + 1, e.hash.clone()),
            None => (0, GENESIS.to_owned()),
        };
        let hash = entry_hash(seq, &body, &prev);
        let entry = Entry {
            seq,
            body,
            prev,
            hash,
        };
        let mut text = Vec::new();
        for e in self.entries.iter().chain(std::iter::once(&entry)) {
            serde_json::to_writer(&mut text, e).map_err(|e| ManifestError::Parse {
                path: self.dir.join(MANIFEST),
                line: 0,
                reason: format!("cannot encode entry: {e}"),
            })?;
            text.push(b'\n');
        }
        write_atomic(&self.dir, MANIFEST, &text).map_err(|source| ManifestError::Io {
            path: self.dir.join(MANIFEST),
            op: "replace",
            source,
        })?;
        self.entries.push(entry);
        self.write_head()?;
        Ok(&self.entries[self.entries.len() - 1])
    }

    fn write_head(&self) -> Result<(), ManifestError> {
        let Some(last) = self.entries.last() else {
            return Ok(());
        };
        let (public_key, signature) = match &self.signing_key {
            Some(k) => (
                Some(hex(&k.verifying_key().to_bytes())),
                Some(hex(&k.sign(&head_message(last.seq, &last.hash)).to_bytes())),
            ),
            None => (None, None),
        };
        let head = Head {
            seq: last.seq,
            hash: last.hash.clone(),
            public_key,
            signature,
        };
        let mut text = serde_json::to_vec(&head).map_err(|e| ManifestError::Parse {
            path: self.dir.join(HEAD),
            line: 0,
            reason: format!("cannot encode head: {e}"),
        })?;
        text.push(b'\n');
        write_atomic(&self.dir, HEAD, &text).map_err(|source| ManifestError::Io {
            path: self.dir.join(HEAD),
            op: "replace",
            source,
        })
    }
}

fn read_key_line(path: &Path, tag: &str) -> Result<[u8; 32], ManifestError> {
    let bad = |reason: String| ManifestError::Key {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_owned(),
        op: "read key",
        source,
    })?;
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(t), Some(k), None) if t == tag => {
            unhex::<32>(k).ok_or_else(|| bad("the key is not 64 hex digits".into()))
        }
        (Some(t), _, _) if t != tag => Err(bad(format!("expected a line starting with {tag}"))),
        _ => Err(bad(format!(
            "expected exactly one line: {tag} <64 hex digits>"
        ))),
    }
}

/// Loads a secret key file (`xdp-audit-ed25519-secret-v1 <64 hex digits of the seed>`).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, ManifestError> {
    Ok(SigningKey::from_bytes(&read_key_line(
        path,
        SECRET_KEY_TAG,
    )?))
}

/// Loads a public key file (`xdp-audit-ed25519-public-v1 <64 hex digits>`).
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, ManifestError> {
    VerifyingKey::from_bytes(&read_key_line(path, PUBLIC_KEY_TAG)?).map_err(|e| {
        ManifestError::Key {
            path: path.to_owned(),
            reason: format!("not a valid ed25519 public key: {e}"),
        }
    })
}

/// A new key pair from the kernel's random source: (secret file text, public file text).
pub fn generate_keypair() -> std::io::Result<(String, String)> {
    let mut seed = [0u8; 32];
    let mut got = 0;
    while got < seed.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `seed`.
        let n = unsafe { libc::getrandom(seed[got..].as_mut_ptr().cast(), seed.len() - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        got += n as usize;
    }
    let key = SigningKey::from_bytes(&seed);
    Ok((
        format!("{SECRET_KEY_TAG} {}\n", hex(&seed)),
        format!(
            "{PUBLIC_KEY_TAG} {}\n",
            hex(&key.verifying_key().to_bytes())
        ),
    ))
}

/// Checks a head's signature against `key`.
pub fn check_signature(head: &Head, key: &VerifyingKey) -> Result<(), String> {
    let sig = head
        .signature
        .as_deref()
        .ok_or("the head is not signed (was the agent run without --signing-key?)")?;
    let sig = unhex::<64>(sig).ok_or("the signature is not 128 hex digits")?;
    key.verify(
        &head_message(head.seq, &head.hash),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| "the signature does not match the public key (head rewritten or wrong key)".into())
}
