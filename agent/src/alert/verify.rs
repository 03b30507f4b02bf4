//! The store's hash chain verified from inside the agent: `xdp-audit verify`'s check (read
//! only, no lock) on a thread of its own, at start and every interval. A failure is checked
//! again a moment later before it raises `XA-CHAIN-BROKEN` (or `XA-STORE-UNREADABLE` when a
//! file could not be read, which proves nothing either way), so a seal that renames a segment
//! while the check lists the directory is not taken for damage.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;

use super::{Event, Handle};
use crate::store::verify::{verify, Broken, Fault};

/// The wait before a failed verification is repeated.
const RECHECK: Duration = Duration::from_secs(2);

/// The running verification thread; dropping it tells it to stop without waiting for it: a
/// verification of a large store reads every segment, and the agent's stop must not wait for
/// that (the check only reads).
pub(super) struct Verifier {
    _stop: SyncSender<()>,
}

/// Starts verifying `dir` every `interval`.
pub(super) fn spawn(
    dir: PathBuf,
    key: Option<VerifyingKey>,
    interval: Duration,
    alerts: Handle,
) -> std::io::Result<Verifier> {
    let (stop, rx) = mpsc::sync_channel::<()>(1);
    // Waits `d` unless told to stop (the sender dropped); true when it should go on.
    let wait = move |d: Duration| matches!(rx.recv_timeout(d), Err(RecvTimeoutError::Timeout));
    std::thread::Builder::new()
        .name("xdp-audit-verify".into())
        .spawn(move || loop {
            if let Err(first) = verify(&dir, key.as_ref()) {
                if !wait(RECHECK) {
                    return;
                }
                match verify(&dir, key.as_ref()) {
                    Err(b) if b == first => {
                        alerts.event(event(b));
                    }
                    _ => tracing::info!(error = %first, "a verification failure did not repeat (a seal in progress)"),
                }
            }
            if !wait(interval) {
                return;
            }
        })?;
    Ok(Verifier { _stop: stop })
}

/// The alert event of a failure that repeated: an altered store breaks the chain; a file that
/// could not be read proves nothing either way.
fn event(b: Broken) -> Event {
    let (file, reason) = (b.file.display().to_string(), b.reason);
    match b.fault {
        Fault::Altered => Event::ChainBroken { file, reason },
        Fault::Unreadable => Event::StoreUnreadable { file, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_is_not_a_broken_chain() {
        let broken = |fault| Broken {
            file: "/s/seg-1.parquet".into(),
            reason: "Permission denied".into(),
            fault,
        };
        assert!(matches!(
            event(broken(Fault::Unreadable)),
            Event::StoreUnreadable { .. }
        ));
        assert!(matches!(
            event(broken(Fault::Altered)),
            Event::ChainBroken { .. }
        ));
    }
}
