//! `xdp-audit verify --remote`: every live segment of the local chain exists in the bucket
//! under its key, with its sealed size and SHA-256 (the object's `sha256` metadata, which the
//! upload set and verified; the server checked the bytes against the same SHA-256 sent as
//! `x-amz-checksum-sha256` when it stored them).

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

/// Checks every live segment of the store in `dir` against the bucket.
pub fn verify_remote(dir: &Path, cfg: &ShipConfig) -> Result<RemoteReport, RemoteVerifyError> {
    let entries = read_entries(dir)?;
    let layout = Layout::new(&cfg.target.prefix, &cfg.gateway_id);
    let remote = Remote::new(cfg)?;
    let mut report = RemoteReport::default();
    for s in live_segments(&entries) {
        report.checked += 1;
        let key = layout.segment(s);
        let problem = match remote.stat(&key)? {
            None => "missing".to_owned(),
            Some(st) if st.size == s.size && st.sha256.as_deref() == Some(s.sha256.as_str()) => {
                continue
            }
            Some(st) => format!(
                "holds {st}, sealed size {} and SHA-256 {}",
                s.size, s.sha256
            ),
        };
        report.missing.push(Missing { key, problem });
    }
    Ok(report)
}
