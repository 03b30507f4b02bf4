//! What a sweep's snapshot says of the store, and of the state directory beside it.

use super::{AlertId, Engine, Gauges, Now, SubjectRef};
use crate::alert::Alert;

impl Engine {
    /// The loss of records the last agent made durable in its live journal, `file` (gone or
    /// cut short while no agent ran): an alert of its own, by file (merged into one already
    /// active, it went unnamed).
    pub(super) fn journal_lost(
        &mut self,
        file: &str,
        text: impl FnOnce() -> String,
        lost: u64,
        now: Now,
        out: &mut Vec<Alert>,
    ) {
        let subject = SubjectRef {
            file: Some(file),
            ..SubjectRef::default()
        };
        let w = self.window_ns;
        self.touch(
            AlertId::StoreDamaged,
            subject,
            text,
            lost.max(1),
            w,
            now,
            out,
        );
    }

    /// The store's conditions in `g` against `base` (the last snapshot's): its disk
    /// refusing writes, records refused, damage; and the state directory refusing writes.
    pub(super) fn observe_store(
        &mut self,
        g: &Gauges,
        base: &Gauges,
        now: Now,
        out: &mut Vec<Alert>,
    ) {
        let w = self.window_ns;
        let none = SubjectRef::default;
        if g.store_degraded {
            let text = || {
                "the audit store's disk refuses writes; records are held in memory, or journals wait to be sealed".to_owned()
            };
            self.touch(AlertId::StoreDegraded, none(), text, 1, w, now, out);
        }
        let refused = g.store_refused.saturating_sub(base.store_refused);
        if refused > 0 {
            let text = || {
                "the audit store dropped or refused records (the alert's count is how many)"
                    .to_owned()
            };
            self.touch(AlertId::StoreRefused, none(), text, refused, w, now, out);
        }
        let skipped = g
            .store_skipped_frames
            .saturating_sub(base.store_skipped_frames);
        let skipped_bytes = g
            .store_skipped_bytes
            .saturating_sub(base.store_skipped_bytes);
        let gone = g
            .store_journals_gone
            .saturating_sub(base.store_journals_gone);
        let aside = g.store_set_aside.saturating_sub(base.store_set_aside);
        let damaged = skipped > 0 || skipped_bytes > 0 || gone > 0 || aside > 0;
        if damaged || g.store_unsealable > 0 || g.manifest_unreadable {
            let (unsealable, manifest) = (g.store_unsealable, g.manifest_unreadable);
            let text = || {
                let mut parts = Vec::new();
                if gone > 0 {
                    parts.push(format!("{gone} journals deleted by someone else before their seal (their records are lost)"));
                }
                if skipped > 0 || skipped_bytes > 0 {
                    parts.push(format!("damaged journal stretches skipped ({skipped_bytes} bytes, at least {skipped} records; their bytes kept in quarantine/)"));
                }
                if unsealable > 0 {
                    parts.push(format!(
                        "{unsealable} journals cannot be read or sealed (left in place)"
                    ));
                }
                if aside > 0 {
                    parts.push(format!("{aside} files set aside into quarantine/ (a sealed journal's copy, an empty journal, a file at a segment's name, a journal header naming another id, alert-log lines that do not parse)"));
                }
                if manifest {
                    parts.push("the manifest cannot be read: recording into journals only, nothing sealed until it is restored".to_owned());
                }
                format!(
                    "damage in the audit store: {} (the agent's log names the files)",
                    parts.join("; ")
                )
            };
            self.touch(
                AlertId::StoreDamaged,
                none(),
                text,
                (skipped + gone).max(1),
                w,
                now,
                out,
            );
        }
        // The file of open flows a killed agent left, damaged: by file, as a lost journal is.
        let unread = g.open_flows_damaged.saturating_sub(base.open_flows_damaged);
        if unread > 0 {
            let subject = SubjectRef {
                file: Some(crate::sweeper::spill::FILE_NAME),
                ..SubjectRef::default()
            };
            let text = || {
                format!("the file of open flows the last agent left in the state directory is damaged ({unread} bytes could not be read; a file of which nothing could be read is set aside as {}.bad): the open flows those bytes held are not restored, and those the flow table evicted since have no record", crate::sweeper::spill::FILE_NAME)
            };
            self.touch(AlertId::StoreDamaged, subject, text, 1, w, now, out);
        }
        // Its own alert (by file): the store may write on while the state cannot. Not while
        // the store's disk refuses writes too: one condition, most often one full disk, is
        // one alert.
        if g.state_unwritable && !g.store_degraded {
            let subject = SubjectRef {
                file: Some(crate::status::FILE_NAME),
                ..SubjectRef::default()
            };
            let text = || {
                "the state directory refuses writes: the status snapshot, the chain's end for the rollback check, the alert hand-over and the attribution state are not kept (the agent's log names the error)".to_owned()
            };
            self.touch(AlertId::StoreDegraded, subject, text, 1, w, now, out);
        }
    }
}
