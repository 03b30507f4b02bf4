//! Legal holds: a window of time whose segments retention keeps until the hold is released.
//!
//! A hold and its release are lines of the operator log (`oplog`), not manifest entries:
//! `xdp-audit hold` must work whether the agent runs or not, and must not take the writer's
//! lock or sign the chain head (the key stays with the agent). The writer reads the holds
//! at every retention pass and anchors the lines it read into the manifest first, so `verify`
//! can check every `prune` against the holds in force when it was decided. A hold ordered
//! while the agent runs applies from its next retention pass (daily, and at start).

use std::path::Path;

use super::manifest::SegmentInfo;
use super::oplog::{self, HoldInfo, OpBody, OpEntry, OpLine, OpLogError, ReleaseInfo, Who};

/// A release of a hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// Its line.
    pub line: u64,
    /// When, Unix ns.
    pub at_ns: i64,
    /// By whom.
    pub who: Who,
    /// Why.
    pub reason: String,
}

/// A hold, as ordered, and its release if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Its id: the number of its line in the operator log.
    pub id: u64,
    /// When it was ordered, Unix ns.
    pub at_ns: i64,
    /// By whom.
    pub who: Who,
    /// The held window, `[since, until)`.
    pub window: HoldInfo,
    /// Its release.
    pub released: Option<Release>,
}

impl Hold {
    /// Whether the hold still keeps segments.
    pub fn in_force(&self) -> bool {
        self.released.is_none()
    }

    /// Whether the segment has records in the held window (the same overlap a query's time
    /// window tests: last record at or after `since`, first before `until`).
    pub fn covers(&self, s: &SegmentInfo) -> bool {
        s.time_max_ns >= self.window.since_ns && s.time_min_ns < self.window.until_ns
    }
}

/// Every hold in `lines` (a checked log), in order, with its release.
pub fn holds(lines: &[OpLine]) -> Vec<Hold> {
    let mut out: Vec<Hold> = Vec::new();
    for l in lines {
        match &l.entry.body {
            OpBody::Hold(h) => out.push(Hold {
                id: l.n,
                at_ns: l.entry.at_ns,
                who: l.entry.who.clone(),
                window: h.clone(),
                released: None,
            }),
            OpBody::Release(r) => {
                if let Some(h) = out.iter_mut().find(|h| h.id == r.hold) {
                    h.released = Some(Release {
                        line: l.n,
                        at_ns: l.entry.at_ns,
                        who: l.entry.who.clone(),
                        reason: r.reason.clone(),
                    });
                }
            }
            OpBody::Access(_) | OpBody::Alert(_) => {}
        }
    }
    out
}

/// The holds in force in `lines`.
pub fn in_force(lines: &[OpLine]) -> Vec<Hold> {
    holds(lines).into_iter().filter(Hold::in_force).collect()
}

fn refused(dir: &Path, reason: String) -> OpLogError {
    OpLogError::Refused {
        path: dir.join(oplog::LOG),
        reason,
    }
}

/// Orders a hold on `[since_ns, until_ns)` for `reason`.
pub fn add(dir: &Path, who: Who, at_ns: i64, window: HoldInfo) -> Result<OpLine, OpLogError> {
    if window.since_ns >= window.until_ns {
        return Err(refused(
            dir,
            "the hold's --since must be before its --until".into(),
        ));
    }
    if window.reason.trim().is_empty() {
        return Err(refused(
            dir,
            "a hold needs a --reason (case number, order)".into(),
        ));
    }
    oplog::append(
        dir,
        OpEntry {
            at_ns,
            who,
            body: OpBody::Hold(window),
        },
    )
}

/// Releases hold `id` for `reason`; refused unless `id` is a hold in force.
pub fn release(
    dir: &Path,
    who: Who,
    at_ns: i64,
    id: u64,
    reason: &str,
) -> Result<OpLine, OpLogError> {
    if reason.trim().is_empty() {
        return Err(refused(dir, "a release needs a --reason".into()));
    }
    let entry = OpEntry {
        at_ns,
        who,
        body: OpBody::Release(ReleaseInfo {
            hold: id,
            reason: reason.to_owned(),
        }),
    };
    oplog::append_checked(dir, entry, |lines| {
        match holds(lines).into_iter().find(|h| h.id == id) {
            None => Err(format!("there is no hold {id} (see `xdp-audit hold list`)")),
            Some(Hold {
                released: Some(r), ..
            }) => Err(format!("hold {id} was already released (line {})", r.line)),
            Some(_) => Ok(()),
        }
    })
}
