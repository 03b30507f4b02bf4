//! The store's hash chain verified from inside the agent: `xdp-audit verify`'s check (read
//! only, no lock) on a thread of its own, at start and every interval. A failure is checked
//! again a moment later before it raises `XA-CHAIN-BROKEN` (or `XA-STORE-UNREADABLE` when a
//! file could not be read, which proves nothing either way), so a seal that renames a segment
//! while the check lists the directory is not taken for damage.

use std::path::{Path, PathBuf};
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
        .spawn(move || {
            let mut seen_chain = false;
            loop {
                match check(&dir, key.as_ref(), &mut seen_chain, &wait) {
                    Some(Some(e)) => {
                        alerts.event(e);
                    }
                    Some(None) => {}
                    None => return,
                }
                if !wait(interval) {
                    return;
                }
            }
        })?;
    Ok(Verifier { _stop: stop })
}

/// One check of `dir`: the event a failure that repeated after [`RECHECK`] raises, if any;
/// `None` when `wait` says stop. `seen_chain` says whether a check found a chain: till then
/// an empty store is one the agent has not sealed into yet (a fresh store given a key), not
/// one wiped.
fn check(
    dir: &Path,
    key: Option<&VerifyingKey>,
    seen_chain: &mut bool,
    wait: &dyn Fn(Duration) -> bool,
) -> Option<Option<Event>> {
    let first = match verify(dir, key) {
        Ok(v) => {
            *seen_chain |= v.entries > 0;
            return Some(None);
        }
        Err(b) if b.fault == Fault::Empty && !*seen_chain => {
            tracing::info!(error = %b, "nothing to verify yet: the store has no chain until its first seal");
            return Some(None);
        }
        Err(b) => b,
    };
    if !wait(RECHECK) {
        return None;
    }
    match verify(dir, key) {
        Err(b) if b == first => Some(Some(event(b))),
        _ => {
            tracing::info!(error = %first, "a verification failure did not repeat (a seal in progress)");
            Some(None)
        }
    }
}

/// The alert event of a failure that repeated: an altered store breaks the chain, and so does
/// one found empty after a check saw its chain; a file that could not be read proves nothing
/// either way.
fn event(b: Broken) -> Event {
    let (file, reason) = (b.file.display().to_string(), b.reason);
    match b.fault {
        Fault::Altered | Fault::Empty => Event::ChainBroken { file, reason },
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

    /// A fresh store given a key has no chain to sign until its first seal: no alert (the
    /// first start of every signed gateway raised `XA-CHAIN-BROKEN`). Once a check has seen its
    /// chain, the store found empty is one wiped, and raises it.
    #[test]
    fn an_empty_store_is_an_alert_only_once_a_chain_was_seen() {
        use crate::store::testgen::TrafficGen;
        use crate::store::{Store, StoreConfig};
        let tmp = crate::blocklist::tests::TempDir::new("verify-empty");
        let dir = tmp.0.join("log");
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let go_on = |_: Duration| true;
        let mut seen = false;
        let mut cfg = StoreConfig::new(&dir);
        cfg.signing_key = Some(key);
        let t0 = 1_767_225_600_000_000_000;
        let clock = crate::store::testgen::FakeClock::new(t0);
        let mut store = Store::open_with_clock(cfg, Box::new(clock.clone()))
            .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
        assert!(
            matches!(check(&dir, Some(&public), &mut seen, &go_on), Some(None)),
            "a store opened, nothing sealed"
        );
        assert!(!seen);
        let mut g = TrafficGen::with_rate(3, t0, 10.0);
        for _ in 0..5 {
            let r = g.next_record();
            clock.set(r.time_start_ns);
            store.append(&r);
        }
        assert!(store.seal_now(), "sealed");
        drop(store);
        assert!(
            matches!(check(&dir, Some(&public), &mut seen, &go_on), Some(None)),
            "a signed chain"
        );
        assert!(seen, "the chain was seen");
        for f in std::fs::read_dir(&dir).expect("list the store").flatten() {
            let p = f.path();
            let gone = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            gone.unwrap_or_else(|e| panic!("wipe {}: {e}", p.display()));
        }
        match check(&dir, Some(&public), &mut seen, &go_on) {
            Some(Some(Event::ChainBroken { reason, .. })) => {
                assert!(reason.contains("empty"), "{reason}")
            }
            other => panic!("a wiped store: {other:?}"),
        }
    }
}
