//! The alerts an agent hands on to the next one. The alert log (`alerts.jsonl`) is the
//! truth of what was raised and resolved; this file in the state directory is a checkpoint
//! of the active ones, rewritten after each loop that delivered a notice, and the next agent
//! replays the log's notices since the checkpoint over it ([`carried`]), with the counts
//! the status snapshot (written every sweep) added since the last notice. The status snapshot
//! alone (written once a sweep) left an agent killed between a notice and its next snapshot
//! handing on an older list: an alert it raised was never resolved, one it resolved was
//! resolved again, a condition still holding was raised twice.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Alert, AlertState};
use crate::store::oplog::{self, Log, OpBody};

/// The file in the state directory.
pub const FILE: &str = "alerts-active.json";

/// The most bytes read back (the 50 alerts a status lists, and the whole of a clean stop's
/// list, with room to spare).
const MAX_BYTES: u64 = 64 << 20;

/// How far before the checkpoint's time the log is replayed: a notice is stamped before the
/// checkpoint that follows it is written, so this covers a wall clock set back meanwhile.
const REPLAY_MARGIN_NS: i64 = 600 * 1_000_000_000;

/// What the file holds.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    /// When it was written (wall clock, Unix ns).
    written_ns: i64,
    /// The active alerts then.
    alerts: Vec<Alert>,
}

/// Writes `alerts` to `path`: a temporary file renamed into place, whole or not at all (not
/// fsynced: a kill loses nothing written; after a power cut the log's replay makes up for
/// an older checkpoint, see [`carried`]).
pub fn write(path: &Path, alerts: &[Alert]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let mut f = crate::store::fsutil::create_temporary(&tmp)?;
    let text = serde_json::to_vec(&Checkpoint {
        written_ns: jiff::Timestamp::now().as_nanosecond() as i64,
        alerts: alerts.to_vec(),
    })?;
    f.write_all(&text)?;
    std::fs::rename(&tmp, path)
}

/// The checkpoint in `state_dir`, if there is one that reads whole: when, and what.
fn read(state_dir: &Path) -> Option<Checkpoint> {
    crate::store::fsutil::load_state_up_to(
        &state_dir.join(FILE),
        MAX_BYTES,
        "the alerts the last agent left",
        "its status snapshot's list is carried on instead",
    )
}

/// The alerts to carry on: the checkpoint in `state_dir` with the notices of the alert log
/// in `log_dir` since it (and a margin before it: replaying a notice the checkpoint already
/// holds changes nothing) applied in log order, each with the count the last status
/// snapshot's list (`snapshot`) has of it ([`with_counts_of`]). Without a checkpoint (an
/// agent before 2026-12-06 left none), the snapshot's list stands in.
pub fn carried(state_dir: &Path, log_dir: &Path, snapshot: Vec<Alert>) -> Vec<Alert> {
    match from_checkpoint(state_dir, log_dir) {
        Some(alerts) => with_counts_of(alerts, &snapshot),
        None => snapshot,
    }
}

/// `alerts` with the counts `snapshot` (the status snapshot's list, written every sweep)
/// holds of the same episodes (id, subject and first time): the checkpoint is written with a
/// notice only, so the counts added since (a loss alert's lost events) fell back to those of
/// the alert's last notice at every restart, clean stop or kill (a ring-loss alert read
/// 24,022 after a start, its program's count 37,858). A later notice in the log stands.
pub fn with_counts_of(mut alerts: Vec<Alert>, snapshot: &[Alert]) -> Vec<Alert> {
    for a in &mut alerts {
        let newer = snapshot.iter().find(|s| {
            (s.id, &s.subject, s.first_ns) == (a.id, &a.subject, a.first_ns)
                && s.last_ns >= a.last_ns
        });
        if let Some(s) = newer {
            a.count = a.count.max(s.count);
            a.last_ns = s.last_ns;
        }
    }
    alerts
}

/// The checkpoint in `state_dir` brought up to date with the alert log in `log_dir`.
fn from_checkpoint(state_dir: &Path, log_dir: &Path) -> Option<Vec<Alert>> {
    let Checkpoint {
        written_ns,
        mut alerts,
    } = read(state_dir)?;
    let from = written_ns.saturating_sub(REPLAY_MARGIN_NS);
    match oplog::scan_log(log_dir, Log::Alerts) {
        Ok(scan) => {
            for line in scan.lines.iter().filter(|l| l.entry.at_ns >= from) {
                if let OpBody::Alert(a) = &line.entry.body {
                    alerts.retain(|x| (x.id, &x.subject) != (a.id, &a.subject));
                    if a.state == AlertState::Raised {
                        alerts.push(a.clone());
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(dir = %log_dir.display(), error = %e, "cannot read the alert log to bring the last agent's alerts up to date; carrying its last checkpoint");
        }
    }
    Some(alerts)
}

/// The checkpoint's alerts alone (tests).
#[cfg(test)]
pub fn checkpoint(state_dir: &Path) -> Option<Vec<Alert>> {
    read(state_dir).map(|c| c.alerts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertId, Subject};
    use crate::store::oplog::{OpEntry, Who};

    fn alert(file: &str, state: AlertState) -> Alert {
        Alert {
            id: AlertId::ListRejected,
            severity: AlertId::ListRejected.severity(),
            state,
            text: format!("{file} rejected"),
            subject: Subject {
                file: Some(file.into()),
                ..Default::default()
            },
            first_ns: 1,
            last_ns: 2,
            count: 1,
        }
    }

    fn files(v: Vec<Alert>) -> Vec<String> {
        let mut f: Vec<String> = v.into_iter().filter_map(|a| a.subject.file).collect();
        f.sort();
        f
    }

    /// The counts the status snapshot holds of the checkpoint's alerts (added each sweep
    /// since their last notice) are carried on; not those of an earlier episode of the same
    /// alert, nor over a later notice's.
    #[test]
    fn the_snapshots_later_counts_are_carried_on() {
        let raised = |file: &str, first_ns, last_ns, count| Alert {
            first_ns,
            last_ns,
            count,
            ..alert(file, AlertState::Raised)
        };
        let checkpoint = vec![
            raised("a.list", 10, 10, 24_022),
            raised("b.list", 10, 10, 5),
            raised("c.list", 50, 60, 9),
        ];
        let snapshot = vec![
            raised("a.list", 10, 40, 37_858),
            raised("b.list", 1, 40, 700), // an earlier episode
            raised("c.list", 50, 55, 8),  // older than the log's notice
        ];
        let got: Vec<(u64, i64)> = with_counts_of(checkpoint, &snapshot)
            .iter()
            .map(|a| (a.count, a.last_ns))
            .collect();
        assert_eq!(got, [(37_858, 40), (5, 10), (9, 60)]);
    }

    /// The notices delivered after the checkpoint (an agent killed before it wrote the next
    /// one) are applied over it in log order: one resolved goes, one raised comes, and a
    /// notice long before the checkpoint (outside the margin) is not replayed.
    #[test]
    fn the_log_since_the_checkpoint_is_replayed_over_it() {
        let tmp = crate::blocklist::tests::TempDir::new("handover-replay");
        let (state, log) = (tmp.0.join("state"), tmp.0.join("log"));
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::create_dir_all(&log).expect("log dir");
        let none = carried(&state, &log, vec![alert("snap.list", AlertState::Raised)]);
        assert_eq!(
            files(none),
            ["snap.list"],
            "no checkpoint: the snapshot's list"
        );
        let entry = |at_ns: i64, a: Alert| OpEntry {
            at_ns,
            who: Who::default(),
            body: OpBody::Alert(a),
        };
        // Long before: a raise the checkpoint knows was resolved since.
        oplog::append_all_to(
            &log,
            Log::Alerts,
            &[entry(1, alert("old.list", AlertState::Raised))],
        )
        .expect("append");
        write(
            &state.join(FILE),
            &[
                alert("a.list", AlertState::Raised),
                alert("b.list", AlertState::Raised),
            ],
        )
        .expect("checkpoint");
        let now = jiff::Timestamp::now().as_nanosecond() as i64;
        oplog::append_all_to(
            &log,
            Log::Alerts,
            &[
                entry(now, alert("a.list", AlertState::Resolved)),
                entry(now, alert("c.list", AlertState::Raised)),
                entry(now, alert("b.list", AlertState::Raised)),
            ],
        )
        .expect("append");
        assert_eq!(
            files(carried(&state, &log, Vec::new())),
            ["b.list", "c.list"]
        );
        assert_eq!(
            files(checkpoint(&state).expect("checkpoint")),
            ["a.list", "b.list"],
            "the checkpoint itself is left as it was"
        );
    }
}
