//! The lines read from the chain: retention configured and in force, records for every hour,
//! disk headroom at the observed rate.

use std::collections::{BTreeSet, HashMap};

use super::{bytes, count, days_of, floor_start, span, Disk, Inputs, Line, Verdict};
use crate::record::rfc3339_s;
use crate::store::manifest::{live_segments, Body, Entry, SegmentInfo};
use crate::store::retention::{cutoff_ns, DAY_NS, LEGAL_FLOOR_DAYS};
use crate::store::{hold, oplog, seal, HOUR_NS};

/// Missing segments and gaps listed at most, the rest counted.
const MAX_DETAILS_SHOWN: usize = 12;

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

/// Prunes that deleted records younger than their retention, or used less than the floor,
/// judged at each prune's time or at `now` (the check's time on a synchronised clock),
/// whichever is earlier: a prune dated ahead (by a forger, or a clock set ahead) deleted no
/// later than this check runs.
fn early_prunes(entries: &[Entry], now: i64) -> Vec<String> {
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
        // No cutoff: under that retention nothing expires, so every deletion was early.
        let at = p.at_ns.min(now);
        let cutoff = cutoff_ns(at, days);
        for f in &p.files {
            if let Some(s) = sealed
                .get(f.file.as_str())
                .filter(|s| cutoff.is_none_or(|c| s.time_max_ns >= c))
            {
                out.push(format!(
                    "entry {} at {}: deleted {} whose newest record was {} old",
                    e.seq,
                    rfc3339_s(p.at_ns),
                    f.file,
                    span(at - s.time_max_ns)
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
    // Early prunes first: records deleted too early fail the line whatever else it says.
    // The check's own time only from a clock the kernel calls synchronised: one behind (a
    // board without a battery clock before NTP) would make every prune look early.
    let now = match inputs.clock {
        super::ClockSync::Synced { .. } => inputs.now_ns,
        _ => i64::MAX,
    };
    let early = early_prunes(entries, now);
    // A stopped agent's retention is not in force (the next start may be given another),
    // but its last status is there and says what it kept.
    let unknown = match inputs
        .agent
        .as_ref()
        .ok()
        .map(|a| a.snapshot.store.retention_days)
        .filter(|&d| d > 0 && in_force.is_none())
    {
        Some(d) => format!(
            "the agent is not running (it kept {d} days when it last ran) and no config file \
             is given"
        ),
        None => "no agent status and no config file".to_owned(),
    };
    let (said, mismatch) = match (configured, in_force) {
        (Some(c), Some(f)) if c.days != f => (
            format!(
                "{} days configured ({}), but the running agent keeps {f}",
                c.days, c.source
            ),
            true,
        ),
        (Some(c), _) => (format!("{} days configured ({})", c.days, c.source), false),
        (None, Some(f)) => (format!("{f} days in force in the running agent"), false),
        (None, None) if early.is_empty() => {
            return (
                line(
                    Verdict::Warn,
                    format!("retention unknown: {unknown} (give --config)"),
                ),
                days,
            )
        }
        (None, None) => (format!("retention unknown ({unknown})"), false),
    };
    if !early.is_empty() {
        let mut l = line(
            Verdict::Fail,
            format!(
                "{said}, {} retention deleted records younger than that ({}){}",
                if mismatch { "and" } else { "but" },
                if early.len() == 1 {
                    "once".to_owned()
                } else {
                    format!("{} times", early.len())
                },
                if mismatch {
                    "; restart the agent to apply the configuration"
                } else {
                    ""
                }
            ),
        );
        l.details = early;
        return (l, days);
    }
    if days < LEGAL_FLOOR_DAYS {
        return (
            line(
                Verdict::Fail,
                format!("{said}: below the legal floor of {LEGAL_FLOOR_DAYS} days"),
            ),
            days,
        );
    }
    if mismatch {
        return (
            line(
                Verdict::Warn,
                format!("{said}: restart it to apply the configuration"),
            ),
            days,
        );
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
    let live = live_segments(entries);
    let stale = live
        .iter()
        .filter(|s| cutoff_ns(now, days.saturating_add(2)).is_some_and(|c| s.time_max_ns < c))
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
    let full = i64::from(days).saturating_mul(DAY_NS);
    if held < full {
        return (
            line(
                Verdict::Warn,
                format!(
                    "{said}; the store holds {} of them so far (first record {}): the full period is reached on {}",
                    span(held),
                    rfc3339_s(first),
                    rfc3339_s(first.saturating_add(full))
                ),
            ),
            days,
        );
    }
    // Pruned segments count for when the store began, not for what it keeps.
    let kept = match live.iter().map(|s| s.time_min_ns).min() {
        Some(oldest) => format!("the oldest record kept is {} old", span(now - oldest)),
        None => "no segment is live (every one pruned)".to_owned(),
    };
    (
        line(Verdict::Pass, format!("{said} and in force; {kept}")),
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

/// The records line: every hour of the last 90 days (or since the first record) must have a
/// segment on disk (or a journal) with records in it. An hour counts as covered when a
/// segment's time range (first start to last end) reaches into it. A segment the chain lists
/// but the disk lacks is a fail, named with its time range whether or not a neighbour's
/// range covers its hours (records were lost); an hour nothing covers is a warn (the agent
/// was down, or no flow passed).
pub fn records_line(inputs: &Inputs, entries: &[Entry]) -> Line {
    let now = inputs.now_ns;
    let Some(first) = first_record(entries) else {
        return Line::new("records", Verdict::Warn, "no records sealed yet");
    };
    // The current hour is still being written; it is not judged.
    let from = floor_start(now).max(first).div_euclid(HOUR_NS);
    let to = now.div_euclid(HOUR_NS);
    let mut present = BTreeSet::new();
    let mut gone: Vec<(String, i64, i64)> = Vec::new();
    for (file, ranges) in live_ranges(entries) {
        let on_disk = inputs.log_dir.join(&file).exists();
        for (min, max) in ranges {
            let (a, b) = (
                min.div_euclid(HOUR_NS).max(from),
                max.div_euclid(HOUR_NS).min(to),
            );
            if a > b {
                continue; // before the window
            }
            if on_disk {
                present.extend(a..=b);
            } else {
                gone.push((file.clone(), min, max));
            }
        }
    }
    gone.sort_by_key(|g| g.1);
    // A journal not sealed yet holds the hours of the records in it: an empty one (a file
    // anyone can make) holds none.
    for (_, path) in seal::list_journals(&inputs.log_dir).unwrap_or_default() {
        use crate::store::journal::{file, frame::TimeSpan};
        if let Ok((_, scan)) = file::load::<TimeSpan>(&path) {
            if let Some((min, max)) = scan.records.0 {
                present.extend(min.div_euclid(HOUR_NS).max(from)..=max.div_euclid(HOUR_NS).min(to));
            }
        }
    }
    let mut gaps: Vec<(i64, i64)> = Vec::new();
    for h in (from..to).filter(|h| !present.contains(h)) {
        match gaps.last_mut() {
            Some(g) if g.1 == h => g.1 = h + 1,
            _ => gaps.push((h, h + 1)),
        }
    }
    let judged = to - from;
    let since = if floor_start(now) > first {
        format!("of the last {LEGAL_FLOOR_DAYS} days")
    } else {
        format!("since the first record ({})", rfc3339_s(first))
    };
    if gaps.is_empty() && gone.is_empty() {
        let why = if judged == 0 {
            // Read as "every hour has records (0 hours)" on a store a few minutes old.
            format!(
                "no whole hour to judge yet: the first record ({}) is in the current hour",
                rfc3339_s(first)
            )
        } else {
            format!("every hour {since} has records ({judged} hours)")
        };
        return Line::new("records", Verdict::Pass, why);
    }
    let mut details: Vec<String> = gone
        .iter()
        .map(|(file, min, max)| {
            format!(
                "{file} (records {} to {}) is in the chain but not on disk",
                rfc3339_s(*min),
                rfc3339_s(*max)
            )
        })
        .chain(gaps.iter().map(|&(a, b)| {
            format!(
                "no records {} to {} ({} h)",
                rfc3339_s(a * HOUR_NS),
                rfc3339_s(b * HOUR_NS),
                b - a
            )
        }))
        .collect();
    if details.len() > MAX_DETAILS_SHOWN {
        let more = details.len() - MAX_DETAILS_SHOWN;
        details.truncate(MAX_DETAILS_SHOWN);
        details.push(format!("and {more} more"));
    }
    let missing: i64 = gaps.iter().map(|g| g.1 - g.0).sum();
    let hours = format!(
        "{missing} of the {judged} hours {since} have no records, in {} gaps",
        gaps.len()
    );
    let (verdict, why) = if gone.is_empty() {
        (
            Verdict::Warn,
            format!("{hours} (the agent was down, or no flow passed)"),
        )
    } else {
        (
            Verdict::Fail,
            format!(
                "{} missing from disk: their records are lost (restore the files from a copy); {hours}",
                count(gone.len(), "sealed segment is", "sealed segments are")
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
        "{} free; {days} days at {}/day ({}) need {} more",
        bytes(disk.free_bytes),
        bytes(per_day),
        if inputs.now_ns - oldest < HOUR_NS {
            // The rate of a store minutes old, taken over an hour: a floor, not an observation.
            format!(
                "the store is {} old: its size counted as an hour's",
                span((inputs.now_ns - oldest).max(0))
            )
        } else {
            format!("observed over {}", span(observed))
        },
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::compliance::{ClockSync, Configured};
    use crate::store::manifest::{PruneInfo, RemovedFile};

    /// 2023-11-14T22:00:00Z, an hour boundary.
    const START: i64 = 1_699_999_200_000_000_000;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let d = std::env::temp_dir()
                .join(format!("xdp-audit-history-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
            Self(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn entry(seq: u64, body: Body) -> Entry {
        Entry {
            seq,
            body,
            prev: String::new(),
            hash: String::new(),
        }
    }

    /// One segment per hour for `hours` hours from START (records from :05 to :50), each
    /// file present (empty) in `dir` unless its hour is in `skip`.
    fn hourly(dir: &Path, hours: i64, skip: &[i64]) -> Vec<Entry> {
        (0..hours)
            .filter(|h| !skip.contains(h))
            .map(|h| {
                let file = format!("seg-{h:05}.parquet");
                std::fs::write(dir.join(&file), b"")
                    .unwrap_or_else(|e| panic!("create {file}: {e}"));
                let t = START + h * HOUR_NS;
                entry(
                    h as u64,
                    Body::Segment(SegmentInfo {
                        file,
                        journal_id: t as u64,
                        time_min_ns: t + HOUR_NS / 12,
                        time_max_ns: t + HOUR_NS * 5 / 6,
                        rows: 10,
                        size: 1_000,
                        sha256: String::new(),
                        footer_sha256: None,
                    }),
                )
            })
            .collect()
    }

    fn inputs(dir: &Path, now_ns: i64) -> Inputs {
        Inputs {
            now_ns,
            log_dir: dir.to_owned(),
            public_key: None,
            configured: Some(Configured {
                days: LEGAL_FLOOR_DAYS,
                source: "test.toml".into(),
            }),
            agent: Err("not needed here".into()),
            clock: ClockSync::Synced { max_error_us: 0 },
            disk: Err("not needed here".into()),
            list_max_age_ns: DAY_NS,
            status_max_age_ns: DAY_NS,
        }
    }

    const FULL: i64 = (LEGAL_FLOOR_DAYS as i64 + 1) * 24;

    #[test]
    fn a_full_period_of_hourly_segments_passes_records_and_retention() {
        let d = Dir::new("full");
        let entries = hourly(&d.0, FULL, &[]);
        let i = inputs(&d.0, START + FULL * HOUR_NS + HOUR_NS / 2);
        let r = records_line(&i, &entries);
        assert_eq!(r.result, Verdict::Pass, "{r:?}");
        assert!(
            r.why == "every hour of the last 90 days has records (2160 hours)",
            "{r:?}"
        );
        let (ret, days) = retention_line(&i, &entries, Some(LEGAL_FLOOR_DAYS));
        assert_eq!(
            (ret.result, days),
            (Verdict::Pass, LEGAL_FLOOR_DAYS),
            "{ret:?}"
        );
    }

    /// A store whose first record is in the current hour has no hour to judge: said so (it
    /// read "every hour ... has records (0 hours)").
    #[test]
    fn a_store_younger_than_an_hour_says_there_is_no_hour_to_judge() {
        let d = Dir::new("young");
        let entries = hourly(&d.0, 1, &[]);
        let r = records_line(&inputs(&d.0, START + HOUR_NS / 2), &entries);
        assert_eq!(r.result, Verdict::Pass, "{r:?}");
        assert!(r.why.starts_with("no whole hour to judge yet"), "{r:?}");
    }

    #[test]
    fn hours_never_sealed_are_listed_as_compact_gaps_and_warn() {
        let d = Dir::new("gaps");
        let entries = hourly(&d.0, 48, &[10, 11, 12, 30]);
        let r = records_line(&inputs(&d.0, START + 48 * HOUR_NS + 1), &entries);
        assert_eq!(r.result, Verdict::Warn, "{r:?}");
        assert!(r.why.starts_with("4 of the 48 hours"), "{r:?}");
        assert_eq!(
            r.details,
            [
                "no records 2023-11-15T08:00:00Z to 2023-11-15T11:00:00Z (3 h)",
                "no records 2023-11-16T04:00:00Z to 2023-11-16T05:00:00Z (1 h)",
            ]
        );
    }

    /// A journal file covers the hours of the records in it: an empty one (which anyone with
    /// write access can make for an hour whose records were deleted) covers none.
    #[test]
    fn an_empty_journal_does_not_cover_its_hour() {
        let d = Dir::new("empty-journal");
        let entries = hourly(&d.0, 48, &[30]);
        let id = (START + 30 * HOUR_NS) as u64;
        let path = d.0.join(crate::store::journal::file::journal_name(id));
        std::fs::write(&path, b"").unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let r = records_line(&inputs(&d.0, START + 48 * HOUR_NS + 1), &entries);
        assert_eq!(r.result, Verdict::Warn, "{r:?}");
        assert_eq!(
            r.details,
            ["no records 2023-11-16T04:00:00Z to 2023-11-16T05:00:00Z (1 h)"]
        );
    }

    #[test]
    fn a_segment_missing_from_disk_fails_with_its_time_range() {
        let d = Dir::new("gone");
        let entries = hourly(&d.0, 48, &[]);
        std::fs::remove_file(d.0.join("seg-00020.parquet")).expect("delete a segment");
        let r = records_line(&inputs(&d.0, START + 48 * HOUR_NS + 1), &entries);
        assert_eq!(r.result, Verdict::Fail, "{r:?}");
        assert_eq!(
            r.details,
            [
                "seg-00020.parquet (records 2023-11-15T18:05:00Z to 2023-11-15T18:50:00Z) is in the chain but not on disk",
                "no records 2023-11-15T18:00:00Z to 2023-11-15T19:00:00Z (1 h)",
            ]
        );
    }

    #[test]
    fn a_prune_of_records_younger_than_the_retention_fails_retention() {
        let d = Dir::new("early");
        let mut entries = hourly(&d.0, FULL, &[]);
        let now = START + FULL * HOUR_NS;
        // A prune at `at` of hour 500 under 100 days of retention.
        let prune_500 = |at: i64| {
            entry(
                FULL as u64,
                Body::Prune(PruneInfo {
                    at_ns: at,
                    retention_days: 100,
                    files: vec![RemovedFile {
                        file: "seg-00500.parquet".into(),
                        sha256: String::new(),
                    }],
                }),
            )
        };
        // 100 days of retention in force, but hour 500 (about 70 days old) was deleted.
        entries.push(prune_500(now));
        let (ret, _) = retention_line(&inputs(&d.0, now), &entries, Some(LEGAL_FLOOR_DAYS));
        assert_eq!(ret.result, Verdict::Fail, "{ret:?}");
        assert!(
            ret.details[0].contains("deleted seg-00500.parquet"),
            "{ret:?}"
        );
        // The running agent keeping another retention than configured is a warn, but the
        // early deletion still fails the line (the mismatch returned first and hid it).
        let (ret, _) = retention_line(&inputs(&d.0, now), &entries, Some(120));
        assert_eq!(ret.result, Verdict::Fail, "{ret:?}");
        assert!(
            ret.why.contains("keeps 120") && ret.why.contains("restart"),
            "{ret:?}"
        );
        assert!(
            ret.details[0].contains("deleted seg-00500.parquet"),
            "{ret:?}"
        );
        entries.pop();
        let (ret, _) = retention_line(&inputs(&d.0, now), &entries, Some(120));
        assert_eq!(ret.result, Verdict::Warn, "the mismatch alone: {ret:?}");
        // A prune dated 200 days ahead deleted no later than this check: judged now, hour 500
        // was too young (at its own date it would look old enough).
        entries.push(prune_500(now + 200 * DAY_NS));
        let (ret, _) = retention_line(&inputs(&d.0, now), &entries, Some(LEGAL_FLOOR_DAYS));
        assert_eq!(ret.result, Verdict::Fail, "{ret:?}");
        assert!(
            ret.details[0].contains("deleted seg-00500.parquet"),
            "{ret:?}"
        );
    }

    /// Without a config file, a stopped agent's last status says what it kept: the line names
    /// it (still a warning: the next start may be given another), not "no agent status".
    #[test]
    fn retention_unknown_names_what_a_stopped_agent_kept() {
        let d = Dir::new("stopped");
        let entries = hourly(&d.0, 2, &[]);
        let now = START + 3 * HOUR_NS;
        let mut i = inputs(&d.0, now);
        i.configured = None;
        let (ret, _) = retention_line(&i, &entries, None);
        assert_eq!(ret.result, Verdict::Warn, "{ret:?}");
        assert!(ret.why.contains("no agent status"), "{ret:?}");
        let mut snapshot = crate::status::Snapshot::new(
            vec!["eth1".into()],
            Default::default(),
            &Default::default(),
            1,
            &[],
        );
        snapshot.store.retention_days = 120;
        i.agent = Ok(super::super::Agent {
            snapshot,
            written_ns: now - DAY_NS,
            alive: false,
            lists: Vec::new(),
        });
        let (ret, _) = retention_line(&i, &entries, None);
        assert_eq!(ret.result, Verdict::Warn, "{ret:?}");
        assert!(
            ret.why
                .contains("not running (it kept 120 days when it last ran)")
                && ret.why.contains("give --config"),
            "{ret:?}"
        );
    }

    /// "The oldest record kept" is the oldest live segment's, not the first record the store
    /// ever held (its segment pruned long ago).
    #[test]
    fn the_oldest_record_kept_is_that_of_the_oldest_live_segment() {
        let d = Dir::new("oldest-live");
        let mut entries = hourly(&d.0, FULL, &[]);
        let now = START + FULL * HOUR_NS + HOUR_NS / 2;
        // The first day pruned on time (its records are more than 90 days old).
        entries.push(entry(
            FULL as u64,
            Body::Prune(PruneInfo {
                at_ns: now,
                retention_days: LEGAL_FLOOR_DAYS,
                files: (0..24)
                    .map(|h| RemovedFile {
                        file: format!("seg-{h:05}.parquet"),
                        sha256: String::new(),
                    })
                    .collect(),
            }),
        ));
        let (ret, _) = retention_line(&inputs(&d.0, now), &entries, Some(LEGAL_FLOOR_DAYS));
        assert_eq!(ret.result, Verdict::Pass, "{ret:?}");
        // Hour 24 starts at :05, 90 days and 25 minutes before now.
        assert!(
            ret.why.ends_with("the oldest record kept is 90.0 d old"),
            "{ret:?}"
        );
    }
}
