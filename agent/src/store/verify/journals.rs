//! The live journals (not sealed yet): each must read as one, a torn tail only in the
//! newest.

use std::collections::HashSet;
use std::path::Path;

use super::{Broken, Fault, Verified};
use crate::store::journal::{self, JournalError};
use crate::store::seal::list_journals;

/// Every live journal (not yet sealed) must read as one: a file that is not a journal, or a
/// damaged stretch with valid frames after it, holds records the chain will never get. A torn
/// tail is an append in progress, or one a crash cut short, only in the newest live journal:
/// the writer appends to one journal at a time and rotates only once it is synced whole, so
/// in a journal a later one follows, a torn tail is the file cut short.
pub(super) fn check_journals(
    dir: &Path,
    sealed: &HashSet<u64>,
    out: &mut Verified,
) -> Result<(), Broken> {
    let journals: Vec<_> = list_journals(dir)
        .map_err(|e| Broken {
            file: dir.to_owned(),
            reason: format!("cannot list the journals: {e}"),
            fault: Fault::of(&e),
        })?
        .into_iter()
        .filter(|(id, path)| {
            let done = sealed.contains(id);
            if done {
                // Not read: its records are the segment's. Said, since a file nothing reads
                // looks to an operator like records passed over.
                tracing::info!(file = %path.display(), "a journal the chain says was sealed is still there (its deletion is under way, or a crash cut it; the agent's next start deletes it): not read, its records are in its segment");
            }
            !done
        })
        .collect();
    // In id order: the last is the newest.
    let newest = journals.last().map(|(id, _)| *id);
    for (id, path) in journals {
        let scan = match journal::read(&path) {
            Ok(s) => s,
            // Sealed while we looked.
            Err(JournalError::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {
                continue
            }
            Err(JournalError::Io { op, cause, .. }) => {
                return Err(Broken {
                    file: path,
                    reason: format!("{op}: {cause}"),
                    fault: Fault::of(&cause),
                })
            }
            Err(JournalError::Refused { reason, .. }) => {
                return Err(Broken {
                    file: path,
                    reason: reason.to_string(),
                    fault: Fault::Altered,
                })
            }
        };
        if scan.frames.len == 0 {
            return Err(Broken {
                file: path,
                reason: "empty (0 bytes, not even its header): the agent names a journal only \
                         once its header is on disk, so it was emptied; the agent sets it aside \
                         into quarantine/ at its next start"
                    .into(),
                fault: Fault::Altered,
            });
        }
        if let Some(s) = scan.frames.damaged().next() {
            return Err(Broken {
                file: path,
                reason: format!(
                    "damaged at bytes {}..{} (at least {} records{}): {}; the agent \
                     quarantines the stretch when it seals the journal",
                    s.offset,
                    s.end(),
                    s.frames,
                    if s.end() < scan.frames.len {
                        ", valid frames after it"
                    } else {
                        ""
                    },
                    s.reason
                ),
                fault: Fault::Altered,
            });
        }
        // The header's id is the file name's (the seal warns and goes by the name): another
        // is damage behind an intact magic, or a journal renamed.
        if scan.frames.id != 0 && scan.frames.id != id {
            return Err(Broken {
                file: path,
                reason: format!(
                    "its header names journal id {}, its file name {id}",
                    scan.frames.id
                ),
                fault: Fault::Altered,
            });
        }
        if let Some(t) = scan.frames.torn_tail().filter(|_| Some(id) != newest) {
            return Err(Broken {
                file: path,
                reason: format!(
                    "torn at byte {} ({} bytes to its end, at least {} records), but a later \
                     journal follows it, so no append is in progress here: the file was cut \
                     short (or a crash's torn tail was never recovered); the agent moves the \
                     stretch into quarantine when it seals the journal",
                    t.offset, t.len, t.frames
                ),
                fault: Fault::Altered,
            });
        }
        out.journals += 1;
        out.journal_records += scan.records.len() as u64;
    }
    Ok(())
}
