//! The alerts an agent hands on to the next one, kept in the state directory as soon as one
//! is raised or resolved. The status snapshot lists them too, but it is written once a sweep:
//! an agent killed between a notice and its next snapshot left the next agent an older list,
//! so an alert it had raised was never resolved and one it had resolved was resolved again.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Alert;

/// The file in the state directory.
pub const FILE: &str = "alerts-active.json";

/// The most bytes read back (a list of [`super::thread::STATUS_ACTIVE`] alerts, and the
/// whole of a clean stop's, with room to spare).
const MAX_BYTES: u64 = 64 << 20;

/// What the file holds.
#[derive(Serialize, Deserialize)]
struct HandOver {
    /// The agent that wrote it: the next one takes the list only from the agent whose status
    /// snapshot it reads, so a file left by an older agent is never taken for a newer one's.
    pid: u32,
    /// Its active alerts.
    alerts: Vec<Alert>,
}

/// Writes `alerts` as this process's to `path`: a temporary file renamed into place, whole
/// or not at all (not fsynced: a kill loses nothing written, and after a power cut the
/// status snapshot's list is the fallback). A failure is said once a minute at most by the
/// caller's throttle and otherwise ignored: the snapshot's list stands in.
pub fn write(path: &Path, alerts: &[Alert]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let mut f = crate::store::fsutil::create_temporary(&tmp)?;
    let text = serde_json::to_vec(&HandOver {
        pid: std::process::id(),
        alerts: alerts.to_vec(),
    })?;
    f.write_all(&text)?;
    std::fs::rename(&tmp, path)
}

/// The alerts the agent `pid` left in `dir`, if it wrote the file (and it reads whole).
pub fn read(dir: &Path, pid: u32) -> Option<Vec<Alert>> {
    let path: PathBuf = dir.join(FILE);
    let bytes = crate::store::fsutil::read_input(&path, MAX_BYTES).ok()?;
    match serde_json::from_slice::<HandOver>(&bytes) {
        Ok(h) if h.pid == pid => Some(h.alerts),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "the alerts the last agent left do not parse; its status snapshot's list is carried on instead");
            None
        }
    }
}
