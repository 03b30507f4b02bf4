//! The `shipping` line: is there a second copy of the records off this gateway, and how far
//! behind is it? Judged from the running agent's `ship` and `syslog` status blocks and, with
//! or without an agent, from the store's own shipping cursor against the chain (the backlog
//! is the chain's live segments the cursor does not hold, so it is known while the agent is
//! down too).

use crate::ship::cursor::{self, Backlog, Cursor};
use crate::store::manifest::{live_segments, Entry};
use crate::store::retention::cutoff_ns;

use super::{bytes, count, span, Inputs, Line, Verdict};

/// A backlog whose oldest segment waits longer than this is a warn: segments are sealed
/// hourly, so a shipper that keeps up never owes more than an hour or two.
pub const MAX_LAG_NS: i64 = 6 * 3_600 * 1_000_000_000;

/// The `shipping` line for the store in `inputs.log_dir` with chain `entries`; `days` is the
/// retention the other lines go by (for the segments retention keeps until shipped).
pub fn shipping_line(inputs: &Inputs, entries: &[Entry], days: u32) -> Line {
    let snapshot = inputs.agent.as_ref().ok().map(|a| &a.snapshot);
    let syslog = snapshot
        .and_then(|s| s.syslog.as_ref())
        .map(|s| format!("; drop records also go to syslog {}", s.server))
        .unwrap_or_default();
    let cursor = match cursor::read(&inputs.log_dir) {
        Ok(c) => c,
        Err(e) => {
            return Line::new(
                "shipping",
                Verdict::Warn,
                format!("{e}: what was shipped is unknown{syslog}"),
            )
        }
    };
    // The bucket acknowledged a chain longer than the store's: the store was rolled back (an
    // older manifest restored, with the segments after it deleted), or emptied.
    // The chain read again for this: the check read it before the cursor, and a seal whose
    // manifest the shipper acknowledged between the two reads is no rollback.
    let reread = crate::store::manifest::read_entries(&inputs.log_dir).ok();
    let last = (reread.as_deref().unwrap_or(entries).last()).map(|e| e.seq);
    if let Some((c, shipped)) = cursor
        .as_ref()
        .and_then(|c| Some((c, c.manifest_seq?)))
        .filter(|(_, shipped)| last.is_none_or(|l| *shipped > l))
    {
        let has = last.map_or("no entry".to_owned(), |l| format!("entry {l}"));
        return Line::new(
            "shipping",
            Verdict::Fail,
            format!(
                "{} acknowledged the chain up to entry {shipped}, but the store's chain ends at \
                 {has}: the store was rolled back or replaced by an older copy; compare it with \
                 the bucket's manifest-{shipped:020}.jsonl",
                c.target
            ),
        );
    }
    let configured = snapshot.and_then(|s| s.ship.as_ref());
    let Some(target) = configured
        .map(|s| s.target.clone())
        .or_else(|| cursor.as_ref().map(|c| c.target.clone()))
    else {
        return Line::new(
            "shipping",
            Verdict::Warn,
            format!(
                "not configured: the store on this disk is the only full copy of the records; run the agent with --ship s3://BUCKET/PREFIX (README \"Shipping to S3\"){syslog}"
            ),
        );
    };
    let cutoff = cutoff_ns(inputs.now_ns, days).unwrap_or(i64::MIN);
    // A cursor for another target acknowledges nothing here: the agent ships everything
    // again to the new one (as `Cursor::load` does), so everything is owed.
    let other_target = cursor
        .as_ref()
        .filter(|c| c.target != target)
        .map(|c| c.target.clone());
    let backlog = cursor
        .filter(|c| c.target == target)
        .unwrap_or_else(|| Cursor {
            target: target.clone(),
            ..Cursor::default()
        })
        .backlog(live_segments(entries), cutoff);
    let owed = owed(inputs.now_ns, &backlog);
    let Some(status) = configured else {
        return Line::new(
            "shipping",
            Verdict::Warn,
            format!(
                "shipped to {target} before, but the agent does not ship now (no --ship in its status, or no agent): {owed}{syslog}"
            ),
        );
    };
    let mut problems = Vec::new();
    if let Some(was) = other_target {
        problems.push(format!(
            "the shipping cursor is for {was}: nothing is acknowledged by {target} yet"
        ));
    }
    if let Some(e) = &status.last_error {
        problems.push(format!("the last pass failed: {e}"));
    }
    if backlog.expired > 0 {
        problems.push(format!(
            "{} past the retention kept locally until shipped",
            count(backlog.expired as usize, "segment", "segments")
        ));
    }
    if backlog
        .oldest_ns
        .is_some_and(|t| inputs.now_ns - t > MAX_LAG_NS)
    {
        problems.push(format!("the backlog is older than {}", span(MAX_LAG_NS)));
    }
    let verdict = if problems.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Warn
    };
    let mut line = Line::new(
        "shipping",
        verdict,
        format!("shipping to {target}: {owed}{syslog}"),
    );
    line.details = problems;
    line
}

/// `backlog 2 segments (3.1 MB), the oldest 40 min old` or `nothing owed`.
fn owed(now_ns: i64, b: &Backlog) -> String {
    match b.oldest_ns {
        None => "nothing owed (every live segment acknowledged by the bucket)".into(),
        Some(t) => format!(
            "backlog {} ({}), the oldest {} old",
            count(b.segments as usize, "segment", "segments"),
            bytes(b.bytes),
            span(now_ns - t)
        ),
    }
}
