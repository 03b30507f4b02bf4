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
use crate::store::verify::{verify, Broken, Fault, Verified};

/// The wait before a failed verification is repeated.
const RECHECK: Duration = Duration::from_secs(2);

/// The file in the state directory that keeps the chain's end as a check last saw it.
pub const CHAIN_SEEN: &str = "chain-seen.json";

/// The running verification thread; dropping it tells it to stop without waiting for it: a
/// verification of a large store reads every segment, and the agent's stop must not wait for
/// that (the check only reads).
pub(super) struct Verifier {
    _stop: SyncSender<()>,
}

/// Starts verifying `dir` every `interval`; `mark` is where the chain's end as last seen is
/// kept ([`CHAIN_SEEN`] in the state directory), if anywhere.
pub(super) fn spawn(
    dir: PathBuf,
    key: Option<VerifyingKey>,
    interval: Duration,
    mark: Option<PathBuf>,
    alerts: Handle,
) -> std::io::Result<Verifier> {
    let (stop, rx) = mpsc::sync_channel::<()>(1);
    // Waits `d` unless told to stop (the sender dropped); true when it should go on.
    let wait = move |d: Duration| matches!(rx.recv_timeout(d), Err(RecvTimeoutError::Timeout));
    std::thread::Builder::new()
        .name("xdp-audit-verify".into())
        .spawn(move || {
            let mut checker = Checker::new(dir, key, mark);
            if let Some(e) = checker.unreadable_mark() {
                alerts.event(e);
            }
            loop {
                match checker.check(&wait) {
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

/// The end of the chain a check saw: the chain only grows (retention and compaction append
/// entries), so a later chain that does not hold it was cut back, rewritten, wiped or
/// replaced by an older copy. Kept in the state directory, so the next agent tells a store
/// wiped while no agent ran from one not sealed into yet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Seen {
    /// The store's directory (a mark of another store, after --log-dir changed, is dropped).
    dir: PathBuf,
    /// Entries in the chain.
    entries: u64,
    /// The last one's hash.
    head: String,
}

/// Checks one store, remembering the chain's end between checks (and agents).
struct Checker {
    dir: PathBuf,
    key: Option<VerifyingKey>,
    mark: Option<PathBuf>,
    seen: Option<Seen>,
    /// The mark was there and could not be read (damaged, or not a file).
    unread: bool,
}

impl Checker {
    fn new(dir: PathBuf, key: Option<VerifyingKey>, mark: Option<PathBuf>) -> Self {
        // Absolute: a relative --log-dir names another store from another working directory.
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let loaded = mark.as_deref().and_then(load);
        let unread = loaded.is_none()
            && mark
                .as_deref()
                .is_some_and(|m| m.symlink_metadata().is_ok());
        let seen = loaded.filter(|s| {
            let same = s.dir == dir;
            if !same {
                tracing::info!(mark = %s.dir.display(), store = %dir.display(), "the chain last seen was of another store (--log-dir changed): checks start from this store's chain");
            }
            same
        });
        Self {
            dir,
            key,
            mark,
            seen,
            unread,
        }
    }

    /// The alert of a mark that was there and could not be read: this start cannot tell a
    /// store wiped, cut back or replaced while no agent ran (a log line alone left that
    /// unnoticed). Nothing is proved either way, so it is no broken chain.
    fn unreadable_mark(&self) -> Option<Event> {
        let mark = self.mark.as_ref().filter(|_| self.unread)?;
        Some(Event::StoreUnreadable {
            file: mark.display().to_string(),
            reason: "the chain's end the last agent kept cannot be read (damaged): whether the \
                     store was wiped, cut back or replaced while no agent ran is not known; \
                     checks start from the chain as it is (the agent's log names the error)"
                .to_owned(),
        })
    }

    /// One check: the event a failure that repeated after [`RECHECK`] raises, if any; `None`
    /// when `wait` says stop. Till a chain was seen an empty store is one the agent has not
    /// sealed into yet (a fresh store given a key), not one wiped.
    fn check(&mut self, wait: &dyn Fn(Duration) -> bool) -> Option<Option<Event>> {
        let first = match self.verify() {
            Ok(v) => {
                self.saw(&v);
                return Some(None);
            }
            Err(b) if b.fault == Fault::Empty && self.seen.is_none() => {
                tracing::info!(error = %b, "nothing to verify yet: the store has no chain until its first seal");
                return Some(None);
            }
            Err(b) => b,
        };
        if !wait(RECHECK) {
            return None;
        }
        match self.verify() {
            Err(b) if same_failure(&b, &first) => {
                if b.fault == Fault::Empty || b.reason.starts_with(LOST) {
                    // Said once: checks go on from the chain as it is now.
                    self.forget();
                }
                Some(Some(event(b)))
            }
            _ => {
                tracing::info!(error = %first, "a verification failure did not repeat (a seal in progress)");
                Some(None)
            }
        }
    }

    /// `verify`, and whether the chain still holds the end seen last.
    fn verify(&self) -> Result<Verified, Broken> {
        let got = verify(&self.dir, self.key.as_ref());
        let Some(s) = &self.seen else { return got };
        let (entries, kept) = match &got {
            Ok(v) => {
                let at = (s.entries as usize)
                    .checked_sub(1)
                    .and_then(|i| v.chain.0.get(i));
                (v.entries, at.is_some_and(|e| e.hash == s.head))
            }
            Err(b) if b.fault == Fault::Empty => (0, false),
            Err(_) => return got,
        };
        if kept {
            return got;
        }
        let head = s.head.get(..16).unwrap_or(&s.head);
        Err(Broken {
            file: self.dir.join(crate::store::manifest::MANIFEST),
            reason: format!(
                "{LOST}: it held {} entries (the last {head}...) when last checked, and holds \
                 {entries}{}: the store was wiped, cut back, rewritten or replaced by an older \
                 copy (if it was moved or replaced on purpose, this alert records it; checks \
                 go on from the chain as it is now)",
                s.entries,
                if entries >= s.entries {
                    ", that entry not among them"
                } else {
                    ""
                }
            ),
            fault: Fault::Altered,
        })
    }

    /// Remembers the end of a chain that verified, when it moved.
    fn saw(&mut self, v: &Verified) {
        let Some(last) = v.chain.0.last() else { return };
        let seen = Seen {
            dir: self.dir.clone(),
            entries: v.entries,
            head: last.hash.clone(),
        };
        if self.seen.as_ref() == Some(&seen) {
            return;
        }
        if let Some(path) = &self.mark {
            // The manifest's rename made durable first: a power cut would otherwise bring an
            // older manifest back under a mark of the newer one, read as a chain cut back.
            if let Err(e) = crate::store::fsutil::sync_dir(&self.dir)
                .and_then(|()| crate::store::fsutil::save_state(path, &seen))
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot keep the chain's end for the next agent: a store wiped while no agent runs goes unnoticed by it");
            }
        }
        self.seen = Some(seen);
    }

    fn forget(&mut self) {
        self.seen = None;
        if let Some(path) = &self.mark {
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove the chain's end kept for the next agent: it will raise the alert again");
                }
            }
        }
    }
}

/// Whether a failure found again is the first one: the same, or both the loss of the end seen
/// last, whose text counts the entries, which seals add to meanwhile (compared whole, a
/// gateway sealing more often than the recheck's wait never raised it).
fn same_failure(again: &Broken, first: &Broken) -> bool {
    again == first
        || (again.reason.starts_with(LOST)
            && first.reason.starts_with(LOST)
            && (&again.file, again.fault) == (&first.file, first.fault))
}

/// How the reason of a chain that lost the end seen last begins.
const LOST: &str = "the chain no longer holds its end as seen last";

/// The mark at `path`, if there is one that reads.
fn load(path: &Path) -> Option<Seen> {
    crate::store::fsutil::load_state(
        path,
        "the chain's end the last agent kept",
        "checks start from the chain as it is",
    )
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

    /// A mark that is there and does not read is alerted (nothing proved either way); one
    /// that is not there, or reads, is not.
    #[test]
    fn a_damaged_mark_is_alerted_as_unreadable() {
        let tmp = crate::blocklist::tests::TempDir::new("verify-mark");
        let mark = tmp.0.join(CHAIN_SEEN);
        let checker = || Checker::new(tmp.0.join("log"), None, Some(mark.clone()));
        assert!(checker().unreadable_mark().is_none(), "no mark yet");
        std::fs::write(&mark, b"{\"dir\": \"/s\", \"entr\xff").expect("write");
        match checker().unreadable_mark() {
            Some(Event::StoreUnreadable { file, reason }) => {
                assert_eq!(file, mark.display().to_string());
                assert!(reason.contains("cannot be read"), "{reason}");
            }
            other => panic!("expected the mark's alert: {other:?}"),
        }
        let seen = Seen {
            dir: tmp.0.join("log"),
            entries: 3,
            head: "ab".into(),
        };
        crate::store::fsutil::save_state(&mark, &seen).expect("save");
        assert!(checker().unreadable_mark().is_none(), "a mark that reads");
    }

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

    /// A store sealed into once (signed or not), in `dir`.
    fn sealed_store(dir: &Path, key: Option<ed25519_dalek::SigningKey>) {
        use crate::store::testgen::TrafficGen;
        use crate::store::{Store, StoreConfig};
        let mut cfg = StoreConfig::new(dir);
        cfg.signing_key = key;
        let t0 = 1_767_225_600_000_000_000;
        let clock = crate::store::testgen::FakeClock::new(t0);
        let mut store = Store::open_with_clock(cfg, Box::new(clock.clone()))
            .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
        let mut g = TrafficGen::with_rate(3, t0, 10.0);
        for _ in 0..5 {
            let r = g.next_record();
            clock.set(r.time_start_ns);
            store.append(&r);
        }
        assert!(store.seal_now(), "sealed");
    }

    fn wipe(dir: &Path) {
        std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("wipe {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).expect("an empty store directory");
    }

    fn chain_broken(got: Option<Option<Event>>) -> String {
        match got {
            Some(Some(Event::ChainBroken { reason, .. })) => reason,
            other => panic!("expected a broken chain: {other:?}"),
        }
    }

    /// A fresh store given a key has no chain to sign until its first seal: no alert (the
    /// first start of every signed gateway raised `XA-CHAIN-BROKEN`). Once a check has seen its
    /// chain, the store found empty is one wiped, and raises it, once.
    #[test]
    fn an_empty_store_is_an_alert_only_once_a_chain_was_seen() {
        let tmp = crate::blocklist::tests::TempDir::new("verify-empty");
        let dir = tmp.0.join("log");
        std::fs::create_dir_all(&dir).expect("store dir");
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let go_on = |_: Duration| true;
        let mut c = Checker::new(dir.clone(), Some(key.verifying_key()), None);
        assert!(matches!(c.check(&go_on), Some(None)), "nothing sealed yet");
        assert!(c.seen.is_none());
        sealed_store(&dir, Some(key));
        assert!(matches!(c.check(&go_on), Some(None)), "a signed chain");
        assert!(c.seen.is_some(), "the chain was seen");
        wipe(&dir);
        let reason = chain_broken(c.check(&go_on));
        assert!(reason.contains("holds 0"), "{reason}");
        assert!(matches!(c.check(&go_on), Some(None)), "said once");
    }

    /// The next agent (a new checker reading the mark) tells a store wiped while no agent ran,
    /// unsigned too, where a check of its own finds a valid empty chain; a store cut back to
    /// an older copy too. A mark of another store is not compared.
    #[test]
    fn a_store_wiped_between_agents_is_an_alert() {
        let tmp = crate::blocklist::tests::TempDir::new("verify-mark");
        let dir = tmp.0.join("log");
        std::fs::create_dir_all(&dir).expect("store dir");
        let mark = tmp.0.join(CHAIN_SEEN);
        let go_on = |_: Duration| true;
        sealed_store(&dir, None);
        let older = tmp.0.join("older");
        std::fs::create_dir_all(&older).expect("copy dir");
        for f in std::fs::read_dir(&dir).expect("list").flatten() {
            if f.path().is_file() {
                std::fs::copy(f.path(), older.join(f.file_name())).expect("copy");
            }
        }
        sealed_store(&dir, None);
        let mut first = Checker::new(dir.clone(), None, Some(mark.clone()));
        assert!(matches!(first.check(&go_on), Some(None)), "verifies");
        assert!(mark.exists(), "the chain's end kept");
        drop(first);
        // Another store's mark: nothing compared.
        let other = Checker::new(tmp.0.join("elsewhere"), None, Some(mark.clone()));
        assert!(other.seen.is_none());
        // An older copy of the store put back: fewer entries.
        wipe(&dir);
        for f in std::fs::read_dir(&older).expect("list").flatten() {
            std::fs::copy(f.path(), dir.join(f.file_name())).expect("restore");
        }
        let mut next = Checker::new(dir.clone(), None, Some(mark.clone()));
        let reason = chain_broken(next.check(&go_on));
        assert!(reason.starts_with(LOST), "{reason}");
        assert!(!mark.exists(), "said once: the mark goes");
        assert!(
            matches!(next.check(&go_on), Some(None)),
            "goes on from the chain as it is"
        );
        assert!(mark.exists(), "the chain as it is now kept");
        wipe(&dir);
        let mut after = Checker::new(dir.clone(), None, Some(mark.clone()));
        let reason = chain_broken(after.check(&go_on));
        assert!(reason.contains("holds 0"), "{reason}");
    }

    /// The loss found again after a seal added an entry is the same failure: the recheck
    /// compared the whole text, whose count a seal changed, and a gateway sealing more often
    /// than the recheck's wait never raised it.
    #[test]
    fn a_lost_end_found_again_after_a_seal_is_the_same_failure() {
        let broken = |entries: u64| {
            Broken {
            file: "/s/manifest.jsonl".into(),
            reason: format!("{LOST}: it held 52 entries (the last ab...) when last checked, and holds {entries}"),
            fault: Fault::Altered,
        }
        };
        assert!(same_failure(&broken(13), &broken(12)));
        let other = Broken {
            reason: "entry 3: hash differs".into(),
            ..broken(12)
        };
        assert!(!same_failure(&other, &broken(12)));
        assert!(same_failure(&other, &other.clone()));
    }
}
