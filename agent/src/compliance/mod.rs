//! `xdp-audit compliance`: a self-check for inspections. Each line says pass, warn or fail
//! and why: the agent runs; retention of at least 90 days is configured and in force; every
//! hour of the last 90 days (or since the first record) has records; the chain verifies and
//! its head is signed; accesses can be recorded; the list files loaded and their age;
//! ring-buffer and flow-start loss; the clock is synchronised; the disk holds the retention
//! period at the current rate; remote shipping configured and keeping up ([`shipping`]).
//!
//! [`system`] gathers what the running system says ([`Inputs`]); [`check`] judges the store
//! against it, so tests give their own clock, agent status and disk.

pub mod history;
mod losses;
pub mod shipping;
pub mod system;

use std::path::PathBuf;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use crate::record::rfc3339_s;
use crate::status::Snapshot;
use crate::store::access::Recorded;
use crate::store::manifest::{self, Entry, Head};
use crate::store::retention::{DAY_NS, LEGAL_FLOOR_DAYS};
use crate::store::{hold, oplog, verify};

/// A line's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The requirement is met.
    Pass,
    /// Met for now, or not provably: look at it.
    Warn,
    /// Not met.
    Fail,
}

impl Verdict {
    /// `pass`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    /// What is checked (`agent`, `retention`, `records`, `chain`, `access log`, `lists`,
    /// `losses`, `clock`, `disk`, `shipping`).
    pub check: &'static str,
    /// The verdict.
    pub result: Verdict,
    /// Why, in one sentence.
    pub why: String,
    /// Particulars (gaps, list files), one per item.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Line {
    fn new(check: &'static str, result: Verdict, why: impl Into<String>) -> Self {
        Self {
            check,
            result,
            why: why.into(),
            details: Vec::new(),
        }
    }
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// When it was made (RFC 3339).
    pub at: String,
    /// The store checked.
    pub log_dir: PathBuf,
    /// The lines, in a fixed order.
    pub checks: Vec<Line>,
}

impl Report {
    /// The worst verdict.
    pub fn worst(&self) -> Verdict {
        self.checks
            .iter()
            .map(|l| l.result)
            .max()
            .unwrap_or(Verdict::Pass)
    }

    /// The line of `check`, if the report has one.
    pub fn line(&self, check: &str) -> Option<&Line> {
        self.checks.iter().find(|l| l.check == check)
    }

    /// Takes whether this run's own access was recorded into the access-log line: a run that
    /// could not record itself shows accesses going unrecorded, whatever the mount said.
    pub fn own_access(&mut self, recorded: &Recorded) {
        let Recorded::No(e) = recorded else { return };
        let Some(l) = self.checks.iter_mut().find(|l| l.check == "access log") else {
            return;
        };
        if l.result != Verdict::Fail {
            l.result = Verdict::Fail;
            l.why.push_str(
                "; but this run's own access could not be recorded: queries and exports on the store go unrecorded",
            );
        }
        l.details
            .push(format!("this run's access was not recorded: {e}"));
    }

    /// The report as a table: check, result, why; particulars indented below.
    pub fn table(&self) -> String {
        let mut s = format!("{:<11} {:<6} WHY\n", "CHECK", "RESULT");
        for l in &self.checks {
            s.push_str(&format!(
                "{:<11} {:<6} {}\n",
                l.check,
                l.result.as_str(),
                l.why
            ));
            for d in &l.details {
                s.push_str(&format!("{:<18} {d}\n", ""));
            }
        }
        s
    }
}

/// Where the retention setting comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configured {
    /// Days.
    pub days: u32,
    /// The file (or `default`) it was read from.
    pub source: String,
}

/// What the running agent says, from its `status.json`.
#[derive(Clone, Debug)]
pub struct Agent {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// When it was written, Unix ns.
    pub written_ns: i64,
    /// Whether its process is alive.
    pub alive: bool,
    /// The list files it loaded, with their modification times (Unix ns; `None`: missing).
    pub lists: Vec<(String, Option<i64>)>,
}

/// The kernel clock's synchronisation (`adjtimex`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClockSync {
    /// Synchronised; the kernel's maximum error estimate, microseconds.
    Synced {
        /// `maxerror`.
        max_error_us: i64,
    },
    /// Not synchronised (`TIME_ERROR` or `STA_UNSYNC`).
    Unsynced,
    /// Could not be read.
    Unknown(String),
}

/// The file system of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Bytes available to the agent.
    pub free_bytes: u64,
    /// Whether the store can be written (a read-only mount cannot).
    pub writable: Result<(), String>,
}

/// Everything [`check`] needs besides the store itself.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// Now, Unix ns.
    pub now_ns: i64,
    /// The store.
    pub log_dir: PathBuf,
    /// The key the chain head must be signed by, if given.
    pub public_key: Option<VerifyingKey>,
    /// The retention configured for the agent, if known (from its config file).
    pub configured: Option<Configured>,
    /// The agent's status, or why there is none.
    pub agent: Result<Agent, String>,
    /// The clock.
    pub clock: ClockSync,
    /// The disk, or why it could not be read.
    pub disk: Result<Disk, String>,
    /// A list file older than this is reported.
    pub list_max_age_ns: i64,
    /// The agent's status older than this means it is not running.
    pub status_max_age_ns: i64,
}

/// A duration for people: `3.5 d`, `4 h`, `12 min`, `8 s`.
pub fn span(ns: i64) -> String {
    let s = ns as f64 / 1e9;
    if s >= 2.0 * 86_400.0 {
        format!("{:.1} d", s / 86_400.0)
    } else if s >= 2.0 * 3_600.0 {
        format!("{:.0} h", s / 3_600.0)
    } else if s >= 120.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.0} s", s.max(0.0))
    }
}

/// `n` and the noun in its number: `1 segment`, `3 segments`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Bytes for people: `1.2 GB`.
pub fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Judges the store in `inputs.log_dir` against `inputs`. Never fails: what cannot be read
/// is itself a line's reason.
pub fn check(inputs: &Inputs) -> Report {
    let dir = &inputs.log_dir;
    let (entries, head) = match read_manifest(dir) {
        Ok(v) => v,
        Err(e) => {
            let mut r = report(inputs, Vec::new());
            r.checks.push(Line::new("chain", Verdict::Fail, e));
            return r;
        }
    };
    let mut checks = vec![agent_line(inputs)];
    // Only a running agent's retention is in force: a stopped one's status stays behind.
    let in_force = inputs
        .agent
        .as_ref()
        .ok()
        .filter(|a| a.alive)
        .map(|a| a.snapshot.store.retention_days)
        .filter(|&d| d > 0);
    let days = history::retention_line(inputs, &entries, in_force);
    checks.push(days.0);
    checks.push(history::records_line(inputs, &entries));
    checks.push(chain_line(inputs, head.as_ref()));
    checks.push(access_line(inputs));
    checks.push(lists_line(inputs));
    checks.push(losses::line(inputs));
    checks.push(clock_line(inputs));
    checks.push(history::disk_line(inputs, &entries, days.1));
    checks.push(shipping::shipping_line(inputs, &entries, days.1));
    report(inputs, checks)
}

fn report(inputs: &Inputs, checks: Vec<Line>) -> Report {
    Report {
        at: rfc3339_s(inputs.now_ns),
        log_dir: inputs.log_dir.clone(),
        checks,
    }
}

fn read_manifest(dir: &std::path::Path) -> Result<(Vec<Entry>, Option<Head>), String> {
    let path = dir.join(manifest::MANIFEST);
    match manifest::read_manifest_file(&path) {
        Ok(bytes) => manifest::parse_with_head(&path, &String::from_utf8_lossy(&bytes))
            .map_err(|e| e.to_string()),
        Err(crate::store::fsutil::InputError::Io(e))
            if e.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok((Vec::new(), None))
        }
        Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
    }
}

fn agent_line(inputs: &Inputs) -> Line {
    match &inputs.agent {
        Err(e) => Line::new(
            "agent",
            Verdict::Fail,
            format!("no agent status ({e}): records are written only while the agent runs"),
        ),
        Ok(a) => {
            let age = inputs.now_ns - a.written_ns;
            if !a.alive || age > inputs.status_max_age_ns {
                Line::new(
                    "agent",
                    Verdict::Fail,
                    format!(
                        "not running: process {} {}, status last written {} ago",
                        a.snapshot.pid,
                        if a.alive { "alive" } else { "gone" },
                        span(age)
                    ),
                )
            } else if a.snapshot.starting {
                Line::new(
                    "agent",
                    Verdict::Warn,
                    format!(
                        "starting as process {} since {} ago (no sweep yet)",
                        a.snapshot.pid,
                        span(age)
                    ),
                )
            } else if !a.snapshot.unaudited.is_empty() {
                let not: Vec<String> = (a.snapshot.unaudited.iter())
                    .map(|u| format!("{} ({})", u.name, u.reason))
                    .collect();
                Line::new(
                    "agent",
                    Verdict::Fail,
                    format!(
                        "running as process {} on {}, but configured interfaces are NOT AUDITED: {}",
                        a.snapshot.pid,
                        a.snapshot.interfaces.join(", "),
                        not.join("; ")
                    ),
                )
            } else {
                Line::new(
                    "agent",
                    Verdict::Pass,
                    format!(
                        "running as process {} on {}; status written {} ago",
                        a.snapshot.pid,
                        a.snapshot.interfaces.join(", "),
                        span(age)
                    ),
                )
            }
        }
    }
}

fn chain_line(inputs: &Inputs, head: Option<&Head>) -> Line {
    let v = match verify::verify(&inputs.log_dir, inputs.public_key.as_ref()) {
        Ok(v) => v,
        // A file that cannot be read proves nothing either way: not BROKEN, but no pass.
        Err(b) if b.fault == verify::Fault::Unreadable => {
            return Line::new(
                "chain",
                Verdict::Fail,
                format!("could not be checked (no verdict): {b}"),
            )
        }
        Err(b) => return Line::new("chain", Verdict::Fail, format!("BROKEN: {b}")),
    };
    let what = format!(
        "{} entries and {} segments ({} rows) verified",
        v.entries, v.segments, v.rows
    );
    match head {
        None => Line::new(
            "chain",
            Verdict::Warn,
            format!("{what}; the store is empty: nothing is signed yet"),
        ),
        Some(h) if h.signature.is_none() => Line::new(
            "chain",
            Verdict::Fail,
            format!("{what}, but the head is not signed: a consistent rewrite of the whole chain would go unnoticed (run the agent with --signing-key)"),
        ),
        Some(_) if !v.signature_checked => Line::new(
            "chain",
            Verdict::Warn,
            format!("{what}; the head is signed, but not checked against a trusted key (give --public-key)"),
        ),
        Some(_) => Line::new(
            "chain",
            Verdict::Pass,
            format!("{what}; the head's signature is valid for the given key"),
        ),
    }
}

fn access_line(inputs: &Inputs) -> Line {
    let scan = match oplog::scan(&inputs.log_dir) {
        Ok(s) => s,
        Err(e) => return Line::new("access log", Verdict::Fail, e.to_string()),
    };
    if let Some((line, reason)) = &scan.problem {
        return Line::new(
            "access log",
            Verdict::Fail,
            format!("{} line {line}: {reason}", oplog::LOG),
        );
    }
    let accesses: Vec<_> = scan
        .lines
        .iter()
        .filter(|l| matches!(l.entry.body, oplog::OpBody::Access(_)))
        .collect();
    let last = accesses.last().map_or(String::new(), |l| {
        format!(
            ", the last at {} by {}",
            rfc3339_s(l.entry.at_ns),
            l.entry
                .who
                .user
                .clone()
                .unwrap_or_else(|| format!("uid {}", l.entry.who.uid))
        )
    });
    let what = format!(
        "{} recorded{last}; {} in force",
        count(accesses.len(), "access", "accesses"),
        count(
            hold::in_force(&scan.lines).len(),
            "legal hold",
            "legal holds"
        )
    );
    match &inputs.disk {
        Ok(Disk {
            writable: Err(e), ..
        }) => Line::new(
            "access log",
            Verdict::Fail,
            format!("{what}; but the store cannot be written ({e}): queries and exports on it go unrecorded"),
        ),
        _ => Line::new("access log", Verdict::Pass, what),
    }
}

fn lists_line(inputs: &Inputs) -> Line {
    let a = match &inputs.agent {
        Ok(a) => a,
        Err(_) => {
            return Line::new(
                "lists",
                Verdict::Warn,
                "no agent status: which lists are loaded is unknown",
            )
        }
    };
    if a.lists.is_empty() {
        return Line::new(
            "lists",
            Verdict::Pass,
            "no list files loaded (audit only, nothing blocked)",
        );
    }
    let mut verdict = Verdict::Pass;
    let mut details = Vec::new();
    for (path, modified) in &a.lists {
        match modified {
            None => {
                verdict = Verdict::Warn;
                details.push(format!(
                    "{path}: missing (the agent keeps the last version it read)"
                ));
            }
            Some(t) => {
                let age = inputs.now_ns - t;
                if age > inputs.list_max_age_ns {
                    verdict = Verdict::Warn;
                }
                details.push(format!("{path}: changed {} ago", span(age)));
            }
        }
    }
    let why = match verdict {
        Verdict::Pass => format!(
            "{} loaded, each changed within {}",
            count(a.lists.len(), "list file", "list files"),
            span(inputs.list_max_age_ns)
        ),
        _ => format!(
            "{} loaded; some are missing or older than {}",
            count(a.lists.len(), "list file", "list files"),
            span(inputs.list_max_age_ns)
        ),
    };
    Line {
        details,
        ..Line::new("lists", verdict, why)
    }
}

fn clock_line(inputs: &Inputs) -> Line {
    let steps = inputs
        .agent
        .as_ref()
        .ok()
        .map(|a| &a.snapshot.clock)
        .filter(|c| c.steps > 0);
    match &inputs.clock {
        ClockSync::Unsynced => Line::new(
            "clock",
            Verdict::Fail,
            "the kernel clock is not synchronised (adjtimex: STA_UNSYNC): record times cannot be trusted; run chrony or systemd-timesyncd",
        ),
        ClockSync::Unknown(e) => Line::new(
            "clock",
            Verdict::Warn,
            format!("synchronisation unknown: {e}"),
        ),
        ClockSync::Synced { max_error_us } => match steps {
            Some(c) => Line::new(
                "clock",
                Verdict::Warn,
                format!(
                    "synchronised (maximum error {} ms), but the wall clock stepped {} times since the agent started{}",
                    max_error_us / 1000,
                    c.steps,
                    c.last_step.as_ref().map_or(String::new(), |s| format!(", last seen {}", s.seen_at))
                ),
            ),
            None => Line::new(
                "clock",
                Verdict::Pass,
                format!("synchronised (maximum error {} ms), no steps", max_error_us / 1000),
            ),
        },
    }
}

/// The days of retention the checks go by: configured, else in force, else the floor.
fn days_of(inputs: &Inputs, in_force: Option<u32>) -> u32 {
    inputs
        .configured
        .as_ref()
        .map(|c| c.days)
        .or(in_force)
        .unwrap_or(LEGAL_FLOOR_DAYS)
}

/// The start of the 90-day window, or of the store when it is younger.
fn floor_start(now_ns: i64) -> i64 {
    now_ns.saturating_sub(i64::from(LEGAL_FLOOR_DAYS) * DAY_NS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The access-log line passed on the store's mount alone, though this run's own access
    /// line could not be written.
    #[test]
    fn an_unrecorded_run_fails_the_access_log_line() {
        let mut r = Report {
            at: String::new(),
            log_dir: PathBuf::from("/store"),
            checks: vec![Line::new(
                "access log",
                Verdict::Pass,
                "3 accesses recorded",
            )],
        };
        r.own_access(&Recorded::No(oplog::OpLogError::Io {
            path: PathBuf::from("/store/operator.log"),
            op: "append",
            cause: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        }));
        let l = r.line("access log").expect("the access-log line");
        assert_eq!(l.result, Verdict::Fail, "{l:?}");
        assert!(l.why.contains("could not be recorded"), "{l:?}");
        assert!(l.details[0].contains("/store/operator.log"), "{l:?}");
    }

    /// An agent that runs while a configured interface is not audited fails the line: its
    /// users' records are not kept.
    #[test]
    fn an_unaudited_interface_fails_the_agent_line() {
        let mut snapshot = Snapshot::new(
            vec!["eth1".into()],
            Default::default(),
            &Default::default(),
            1,
            &[],
        );
        let agent = |snapshot: Snapshot| Inputs {
            now_ns: 10,
            log_dir: PathBuf::from("/store"),
            public_key: None,
            configured: None,
            agent: Ok(Agent {
                snapshot,
                written_ns: 10,
                alive: true,
                lists: Vec::new(),
            }),
            clock: ClockSync::Synced { max_error_us: 0 },
            disk: Err("not needed here".into()),
            list_max_age_ns: 1,
            status_max_age_ns: 1_000,
        };
        assert_eq!(agent_line(&agent(snapshot.clone())).result, Verdict::Pass);
        snapshot.unaudited.push(crate::status::Unaudited {
            name: "eth2".into(),
            reason: "gone".into(),
        });
        let l = agent_line(&agent(snapshot));
        assert_eq!(l.result, Verdict::Fail, "{l:?}");
        assert!(l.why.contains("eth2 (gone)"), "{l:?}");
    }
}
