//! The lines read from the chain: retention configured and in force, records for every hour,
//! disk headroom at the observed rate.

use std::collections::{BTreeSet, HashMap};

use super::{bytes, days_of, floor_start, span, Disk, Inputs, Line, Verdict};
use crate::record::rfc3339_s;
use crate::store::manifest::{live_segments, Body, Entry, SegmentInfo};
use crate::store::retention::{DAY_NS, LEGAL_FLOOR_DAYS};
use crate::store::{hold, oplog, seal, HOUR_NS};

/// Gaps listed at most, the rest counted.
const MAX_GAPS_SHOWN: usize = 12;

/// The first record the store ever held (pruned segments included: their seals stay in the
/// chain), Unix ns: when the store was installed, for what it can hold.
pub fn first_record(entries: &[Entry]) -> Option<i64> {
    entries
        .iter()
        .filter_map(|e| match &e.body {
            Body::Segment(s) => Some(s.time_min_ns),
            _ => None,
        })
        .min()
}

/// Prunes that deleted records younger than their retention, or used less than the floor.
fn early_prunes(entries: &[Entry]) -> Vec<String> {
    let mut sealed: HashMap<&str, &SegmentInfo> = HashMap::new();
    let mut out = Vec::new();
    for e in entries {
        if let Some(s) = e.body.added() {
            sealed.insert(&s.file, s);
        }
        let Body::Prune(p) = &e.body else { continue };
        let days = p.retention_days.max(LEGAL_FLOOR_DAYS);
        if p.retention_days < LEGAL_FLOOR_DAYS {
            out.push(format!(
                "entry {}: retention of {} days, below the {LEGAL_FLOOR_DAYS}-day floor",
                e.seq, p.retention_days
            ));
        }
        let cutoff = p.at_ns.saturating_sub(i64::from(days) * DAY_NS);
        for f in &p.files {
            if let Some(s) = sealed
                .get(f.file.as_str())
                .filter(|s| s.time_max_ns >= cutoff)
            {
                out.push(format!(
                    "entry {} at {}: deleted {} whose newest record was {} old",
                    e.seq,
                    rfc3339_s(p.at_ns),
                    f.file,
                    span(p.at_ns - s.time_max_ns)
                ));
            }
        }
    }
    out
}

/// The retention line, and the days of retention the other lines go by.
pub fn retention_line(inputs: &Inputs, entries: &[Entry], in_force: Option<u32>) -> (Line, u32) {
    let days = days_of(inputs, in_force);
    let line = |v, why: String| Line::new("retention", v, why);
    let configured = inputs.configured.as_ref();
    let said = match (configured, in_force) {
        (Some(c), Some(f)) if c.days != f => {
            return (
                line(
                    Verdict::Warn,
                    format!(
                        "{} days configured ({}), but the running agent keeps {f}: restart it to apply the configuration",
                        c.days, c.source
                    ),
                ),
                days,
            )
        }
        (Some(c), _) => format!("{} days configured ({})", c.days, c.source),
        (None, Some(f)) => format!("{f} days in force in the running agent"),
        (None, None) => {
            return (
                line(
                    Verdict::Warn,
                    "retention unknown: no agent status and no config file (give --config)".into(),
                ),
                days,
            )
        }
    };
    if days < LEGAL_FLOOR_DAYS {
        return (
            line(
                Verdict::Fail,
                format!("{said}: below the legal floor of {LEGAL_FLOOR_DAYS} days"),
            ),
            days,
        );
    }
    let early = early_prunes(entries);
    if !early.is_empty() {
        let mut l = line(
            Verdict::Fail,
            format!(
                "{said}, but retention deleted records younger than that ({} times)",
                early.len()
            ),
        );
        l.details = early;
        return (l, days);
    }
    let now = inputs.now_ns;
    let Some(first) = first_record(entries) else {
        return (
            line(
                Verdict::Warn,
                format!("{said}; the store holds no records yet"),
            ),
            days,
        );
    };
    let holds = oplog::scan(&inputs.log_dir)
        .map(|s| hold::in_force(&s.lines))
        .unwrap_or_default();
    let stale = live_segments(entries)
        .into_iter()
        .filter(|s| s.time_max_ns < now - (i64::from(days) + 2) * DAY_NS)
        .filter(|s| !holds.iter().any(|h| h.covers(s)))
        .count();
    if stale > 0 {
        return (
            line(
                Verdict::Warn,
                format!("{said}, but {stale} segments are more than two days past it and not held: retention is not running (is the agent?)"),
            ),
            days,
        );
    }
    let held = now - first;
    let full = i64::from(days) * DAY_NS;
    if held < full {
        return (
            line(
                Verdict::Warn,
                format!(
                    "{said}; the store holds {} of them so far (first record {}): the full period is reached on {}",
                    span(held),
                    rfc3339_s(first),
                    rfc3339_s(first + full)
                ),
            ),
            days,
        );
    }
    (
        line(
            Verdict::Pass,
            format!(
                "{said} and in force; the oldest record kept is {} old",
                span(held)
            ),
        ),
        days,
    )
}

/// The time ranges of the sealed segments whose records are still live (a merged segment
/// keeps its inputs' ranges, so an hour missing inside a merged day still shows), per live
/// file.
fn live_ranges(entries: &[Entry]) -> HashMap<String, Vec<(i64, i64)>> {
    let mut live: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for e in entries {
        match &e.body {
            Body::Segment(s) => {
                live.insert(s.file.clone(), vec![(s.time_min_ns, s.time_max_ns)]);
            }
            Body::Compact(c) => {
                let ranges = c
                    .files
                    .iter()
                    .flat_map(|f| live.remove(&f.file).unwrap_or_default())
                    .collect();
                live.insert(c.segment.file.clone(), ranges);
            }
            Body::Prune(p) => {
                for f in &p.files {
                    live.remove(&f.file);
                }
            }
            Body::Anchor(_) => {}
        }
    }
    live
}

/// Why an hour has no records on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Missing {
    /// No segment of the chain holds it: the agent was down, or no flow passed.
    NeverSealed,
    /// The chain lists a segment with its records, but the file is gone.
    FileGone(String),
}

/// A run of hours `[from, to)` missing for the same reason.
struct Gap {
    from: i64,
    to: i64,
    why: Missing,
}

/// The records line: every hour of the last 90 days (or since the first record) must have a
/// segment on disk (or a journal) with records in it. An hour whose segment the chain lists
/// but the disk lacks is a fail (records were lost); an hour never sealed is a warn (the
/// agent was down, or no flow passed).
pub fn records_line(inputs: &Inputs, entries: &[Entry]) -> Line {
    let now = inputs.now_ns;
    let Some(first) = first_record(entries) else {
        return Line::new("records", Verdict::Warn, "no records sealed yet");
    };
    // The current hour is still being written; it is not judged.
    let from = floor_start(now).max(first).div_euclid(HOUR_NS);
    let to = now.div_euclid(HOUR_NS);
    let mut present = BTreeSet::new();
    let mut gone: HashMap<i64, String> = HashMap::new();
    for (file, ranges) in live_ranges(entries) {
        let on_disk = inputs.log_dir.join(&file).exists();
        for (min, max) in ranges {
            let (a, b) = (
                min.div_euclid(HOUR_NS).max(from),
                max.div_euclid(HOUR_NS).min(to),
            );
            for h in a..=b {
                if on_disk {
                    present.insert(h);
                } else {
                    gone.entry(h).or_insert_with(|| file.clone());
                }
            }
        }
    }
    // A rotated journal not sealed yet holds its hour.
    for (id, _) in seal::list_journals(&inputs.log_dir).unwrap_or_default() {
        present.insert((id as i64).div_euclid(HOUR_NS));
    }
    let mut gaps: Vec<Gap> = Vec::new();
    for h in (from..to).filter(|h| !present.contains(h)) {
        let why = gone
            .get(&h)
            .map_or(Missing::NeverSealed, |f| Missing::FileGone(f.clone()));
        match gaps.last_mut() {
            Some(g) if g.to == h && g.why == why => g.to = h + 1,
            _ => gaps.push(Gap {
                from: h,
                to: h + 1,
                why,
            }),
        }
    }
    let judged = to - from;
    let since = if floor_start(now) > first {
        format!("the last {LEGAL_FLOOR_DAYS} days")
    } else {
        format!("since the first record ({})", rfc3339_s(first))
    };
    if gaps.is_empty() {
        return Line::new(
            "records",
            Verdict::Pass,
            format!("every hour of {since} has records ({judged} hours)"),
        );
    }
    let hours = |g: &Gap| g.to - g.from;
    let lost: i64 = gaps
        .iter()
        .filter(|g| matches!(g.why, Missing::FileGone(_)))
        .map(hours)
        .sum();
    let missing: i64 = gaps.iter().map(hours).sum();
    let mut details: Vec<String> = gaps
        .iter()
        .take(MAX_GAPS_SHOWN)
        .map(|g| {
            let range = format!(
                "no records {} to {} ({} h)",
                rfc3339_s(g.from * HOUR_NS),
                rfc3339_s(g.to * HOUR_NS),
                hours(g)
            );
            match &g.why {
                Missing::NeverSealed => format!("{range}: never sealed"),
                Missing::FileGone(f) => format!("{range}: {f} is in the chain but not on disk"),
            }
        })
        .collect();
    if gaps.len() > MAX_GAPS_SHOWN {
        details.push(format!("and {} more gaps", gaps.len() - MAX_GAPS_SHOWN));
    }
    let (verdict, why) = if lost > 0 {
        (
            Verdict::Fail,
            format!(
                "{missing} of the {judged} hours of {since} have no records, in {} gaps; {lost} of them were sealed and their segment files are gone (records lost: restore them from a copy)",
                gaps.len()
            ),
        )
    } else {
        (
            Verdict::Warn,
            format!(
                "{missing} of the {judged} hours of {since} have no records, in {} gaps (the agent was down, or no flow passed)",
                gaps.len()
            ),
        )
    };
    Line {
        details,
        ..Line::new("records", verdict, why)
    }
}

/// The disk line: free space against what the retention period takes at the rate observed.
pub fn disk_line(inputs: &Inputs, entries: &[Entry], days: u32) -> Line {
    let disk = match &inputs.disk {
        Ok(d) => d,
        Err(e) => return Line::new("disk", Verdict::Warn, format!("cannot read: {e}")),
    };
    if let Disk {
        writable: Err(e), ..
    } = disk
    {
        return Line::new(
            "disk",
            Verdict::Fail,
            format!("the store cannot be written ({e}): the agent cannot keep records"),
        );
    }
    let live = live_segments(entries);
    let Some(oldest) = live.iter().map(|s| s.time_min_ns).min() else {
        return Line::new(
            "disk",
            Verdict::Warn,
            format!(
                "{} free; no records yet, so no rate to project",
                bytes(disk.free_bytes)
            ),
        );
    };
    let used: u64 = live.iter().map(|s| s.size).sum();
    let observed = (inputs.now_ns - oldest).max(HOUR_NS);
    let per_day = (used as f64 * DAY_NS as f64 / observed as f64) as u64;
    let more = (per_day as f64 * f64::from(days)) as u64;
    let more = more.saturating_sub(used);
    let what = format!(
        "{} free; {days} days at {}/day (observed over {}) need {} more",
        bytes(disk.free_bytes),
        bytes(per_day),
        span(observed),
        bytes(more)
    );
    let (verdict, why) = if disk.free_bytes < more {
        (
            Verdict::Fail,
            format!("{what}: the disk fills before the retention period is reached"),
        )
    } else if (disk.free_bytes as f64) < 1.5 * more as f64 {
        (Verdict::Warn, format!("{what}: less than 50 % to spare"))
    } else {
        (Verdict::Pass, what)
    };
    Line::new("disk", verdict, why)
}
