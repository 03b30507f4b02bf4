//! `xdp-audit verify --remote`: every live segment of the local chain exists in the bucket
//! under its key, with its sealed size and SHA-256 (the object's `sha256` metadata, which the
//! upload set and verified; the server checked the bytes against the same SHA-256 sent as
//! `x-amz-checksum-sha256` when it stored them). With [`Depth::Bytes`] each object's bytes
//! are read back and hashed too: metadata is whatever a client with write access sent, so
//! an object replaced under its old `sha256` metadata passes the first check only.

use std::path::Path;

use super::config::ShipConfig;
use super::layout::Layout;
use super::remote::{Remote, RemoteError};
use crate::store::manifest::{live_segments, read_entries, ManifestError};

/// One live segment the bucket does not hold as sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The object key.
    pub key: String,
    /// What is wrong (`missing`, or what the server reports instead).
    pub problem: String,
}

/// What `verify --remote` found.
#[derive(Debug, Default)]
pub struct RemoteReport {
    /// Live segments checked.
    pub checked: usize,
    /// Of those, the ones not in the bucket as sealed.
    pub missing: Vec<Missing>,
}

/// Errors that prevent a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RemoteVerifyError {
    /// The local chain could not be read.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The bucket could not be asked.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// How far `verify --remote` looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Size and `sha256` metadata (a HEAD per segment).
    Metadata,
    /// Those, then the bytes read back and hashed (the store's size over the network).
    Bytes,
}

/// Checks every live segment of the store in `dir` against the bucket's metadata.
pub fn verify_remote(dir: &Path, cfg: &ShipConfig) -> Result<RemoteReport, RemoteVerifyError> {
    verify_remote_to(dir, cfg, Depth::Metadata, &mut |_, _| {})
}

/// [`verify_remote`] to `depth`, telling `progress` (segments done, of how many).
pub fn verify_remote_to(
    dir: &Path,
    cfg: &ShipConfig,
    depth: Depth,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RemoteReport, RemoteVerifyError> {
    let entries = read_entries(dir)?;
    let layout = Layout::new(&cfg.target.prefix, &cfg.gateway_id);
    let remote = Remote::new(cfg)?;
    let mut report = RemoteReport::default();
    let live = live_segments(&entries);
    for (i, s) in live.iter().enumerate() {
        progress(i, live.len());
        report.checked += 1;
        let key = layout.segment(s);
        let problem = match remote.stat(&key)? {
            None => "missing".to_owned(),
            Some(st) if st.size == s.size && st.sha256.as_deref() == Some(s.sha256.as_str()) => {
                if depth == Depth::Metadata {
                    continue;
                }
                let read = remote.read_sha256(&key)?;
                if read == s.sha256 {
                    continue;
                }
                format!(
                    "holds other bytes under the sealed size and SHA-256 metadata: they hash \
                     to {read}, sealed {}",
                    s.sha256
                )
            }
            Some(st) => format!(
                "holds {st}, sealed size {} and SHA-256 {}",
                s.size, s.sha256
            ),
        };
        report.missing.push(Missing { key, problem });
    }
    progress(live.len(), live.len());
    Ok(report)
}
