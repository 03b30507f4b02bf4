//! What `xdp-audit status` shows: a snapshot the running agent writes to its state directory
//! every sweep (atomically, by rename), so status needs no connection to the agent and works
//! from any shell.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::blocklist::ListKind;
use crate::daemon::lists::RuleBook;

/// File name of the snapshot inside the state directory.
pub const FILE_NAME: &str = "status.json";
/// The agent's lock on its state directory ([`lock_state_dir`]).
pub const STATE_LOCK: &str = ".agent.lock";

/// The most bytes read from a snapshot: one listing every rule of a million-rule list as hit
/// is over 100 MiB, and an endless file is still refused before it takes the host's memory.
const MAX_BYTES: u64 = 1 << 30;

/// One list file's share of the hits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListHits {
    /// The file.
    pub path: String,
    /// `block` or `allow`.
    pub kind: String,
    /// Rules of this file that matched at least once.
    pub rules_hit: u64,
    /// Packets matched by this file's rules.
    pub hits: u64,
}

/// One rule's hits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleHits {
    /// `FILE:LINE`.
    pub rule: String,
    /// `block` or `allow`.
    pub kind: String,
    /// Packets it matched.
    pub hits: u64,
}

/// The snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    /// When it was written (RFC 3339 UTC).
    pub written_at: String,
    /// The agent's process id.
    pub pid: u32,
    /// The agent process's start time (clock ticks after boot), so a reader tells the agent
    /// from a process that was given its pid after it ended (absent in older snapshots).
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// Interfaces audited.
    pub interfaces: Vec<String>,
    /// Configured interfaces the agent does not audit now (deleted, absent at its start, or
    /// held by another program), and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unaudited: Vec<Unaudited>,
    /// The list generation in force.
    pub generation: u64,
    /// The program's counters, summed over CPUs.
    pub counters: BTreeMap<String, u64>,
    /// Per list file.
    pub lists: Vec<ListHits>,
    /// Per rule, most hits first.
    pub rules: Vec<RuleHits>,
    /// What the sweeper wrote and lost (absent in snapshots of older agents).
    #[serde(default)]
    pub flows: crate::sweeper::SweepStats,
    /// The audit store's health: a full disk shows here as `degraded` and `dropped`.
    #[serde(default)]
    pub store: crate::store::StoreStatus,
    /// The path from the ring buffer to the records stage: events read, undecodable records,
    /// the queue's fill and the reader's waits on it.
    #[serde(default)]
    pub pipeline: crate::daemon::queue::PipelineStats,
    /// The wall clock: its offset from the kernel's clock and the steps seen.
    #[serde(default)]
    pub clock: crate::clock::ClockStats,
    /// Attribution: records joined per field, payload parse failures, conntrack, DHCP, cache
    /// sizes (absent when the agent runs without the enrich stage).
    #[serde(default)]
    pub enrich: Option<crate::enrich::stage::EnrichStatus>,
    /// Shipping to S3: backlog (segments, bytes, age of the oldest), what was shipped, the
    /// last failure (absent when the agent runs without --ship).
    #[serde(default)]
    pub ship: Option<crate::ship::ShipStatus>,
    /// The flow tables' and the ring buffer's fill, and the list reloads (what the metrics
    /// add; absent in snapshots of older agents).
    #[serde(default)]
    pub observe: crate::metrics::Observed,
    /// Alerts: the active ones, the last notices, the deliveries' counters (absent when the
    /// agent runs without alerts).
    #[serde(default)]
    pub alerts: Option<crate::alert::AlertStatus>,
    /// When the agent stopped cleanly (RFC 3339 UTC); absent while it runs, and after a crash.
    #[serde(default)]
    pub stopped_at: Option<String>,
    /// The error it stopped on, when it did not stop for a signal (an interface to attach
    /// again, say): written everything, but not asked to stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_error: Option<String>,
    /// Written at the start, before the first sweep ([`Snapshot::starting`]): only the
    /// process is known (pid, start time), no figure yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub starting: bool,
    /// Evidence of an earlier agent's crash that this agent read at its start and had not
    /// reported yet (only in a starting snapshot): a start that fails or dies before the
    /// alert goes out hands it on to the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreported_crash: Option<String>,
    /// The program's counters as the last agent with figures left them (only in a starting
    /// snapshot): a start that fails hands them on, so the next one still alerts the pinned
    /// program's losses from there ([`Starting::begin`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub previous_counters: BTreeMap<String, u64>,
    /// The alerts active when the last agent with figures wrote its last snapshot (only in a
    /// starting snapshot): handed on like `previous_counters`, for the next agent to carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_alerts: Vec<crate::alert::Alert>,
    /// The records the last agent with figures lost at its stop (only in a starting
    /// snapshot), handed on like `previous_counters`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub previous_lost_at_stop: u64,
    /// The records the last agent with figures held on a refusing disk that its pins kept
    /// (only in a starting snapshot), handed on like `previous_counters`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub previous_kept_at_stop: u64,
    /// The last agent with figures stopped with its store unable to seal everything (only in
    /// a starting snapshot), handed on like `previous_counters`: the journals it left are no
    /// crash, however many starts fail in between.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous_stopped_unsealed: bool,
    /// The last agent with figures' live journal (only in a starting snapshot), handed on
    /// like `previous_counters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_live_journal: Option<crate::store::LiveJournal>,
    /// The syslog sink: messages sent, queued, dropped on a full queue, reconnects (absent
    /// when the agent runs without `--syslog`).
    #[serde(default)]
    pub syslog: Option<crate::syslog::SyslogStatus>,
    /// Flood-proof drops: blocked new flows recorded within the drop-record budget and
    /// blocked packets summarised past it, in all and per rule.
    #[serde(default)]
    pub flood: crate::sweeper::flood::FloodStatus,
}

fn kind_name(k: ListKind) -> &'static str {
    match k {
        ListKind::Allow => "allow",
        ListKind::Block => "block",
    }
}

impl Snapshot {
    /// Builds a snapshot from the rules' hit counts (`(rule id, packets)`), named by `lists`,
    /// with the list `generation` the kernel maps hold.
    pub fn new(
        interfaces: Vec<String>,
        counters: BTreeMap<String, u64>,
        lists: &RuleBook,
        generation: u64,
        hits: &[(u32, u64)],
    ) -> Self {
        // Summed per line first: one line can hold several rules (a range split into
        // prefixes, a hosts line naming several hosts), and a line is what an operator names
        // (and a metrics series must not repeat).
        let mut per_line: BTreeMap<(&Path, u32, &'static str), u64> = BTreeMap::new();
        for &(id, n) in hits {
            let Some(o) = lists.origin(id) else { continue };
            *per_line
                .entry((o.path, o.line, kind_name(o.kind)))
                .or_default() += n;
        }
        let mut per_file: BTreeMap<(PathBuf, &'static str), (u64, u64)> = BTreeMap::new();
        let mut rules: Vec<RuleHits> = Vec::with_capacity(per_line.len());
        for ((path, line, kind), n) in per_line {
            let e = per_file.entry((path.to_owned(), kind)).or_default();
            e.0 += 1;
            e.1 += n;
            rules.push(RuleHits {
                rule: format!("{}:{line}", path.display()),
                kind: kind.into(),
                hits: n,
            });
        }
        rules.sort_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.rule.cmp(&b.rule)));
        let mut list_hits: Vec<ListHits> = lists
            .files()
            .map(|(p, kind)| {
                let kind = kind_name(kind);
                let (rules_hit, hits) = per_file
                    .get(&(p.to_owned(), kind))
                    .copied()
                    .unwrap_or_default();
                ListHits {
                    path: p.display().to_string(),
                    kind: kind.into(),
                    rules_hit,
                    hits,
                }
            })
            .collect();
        list_hits.dedup();
        Snapshot {
            written_at: crate::record::rfc3339_ns(jiff::Timestamp::now().as_nanosecond() as i64),
            pid: std::process::id(),
            pid_start: crate::compliance::system::process_start(std::process::id()),
            interfaces,
            unaudited: Vec::new(),
            generation,
            counters,
            lists: list_hits,
            rules,
            flows: Default::default(),
            store: Default::default(),
            pipeline: Default::default(),
            clock: Default::default(),
            enrich: None,
            ship: None,
            observe: Default::default(),
            alerts: None,
            stopped_at: None,
            stop_error: None,
            starting: false,
            unreported_crash: None,
            previous_counters: BTreeMap::new(),
            previous_alerts: Vec::new(),
            previous_lost_at_stop: 0,
            previous_kept_at_stop: 0,
            previous_stopped_unsealed: false,
            previous_live_journal: None,
            syslog: None,
            flood: Default::default(),
        }
    }

    /// The snapshot an agent writes as soon as it has read the last one's crash evidence:
    /// from then on its death before a clean stop is evidence too, even before its first
    /// sweep. `unreported` is that evidence, handed on until the alert carries it, and
    /// `previous` what the last agent with figures left.
    pub fn starting(unreported: Option<String>, previous: Previous) -> Self {
        Self {
            starting: true,
            unreported_crash: unreported,
            previous_counters: previous.counters,
            previous_alerts: previous.alerts,
            previous_lost_at_stop: previous.lost_at_stop,
            previous_kept_at_stop: previous.kept_at_stop,
            previous_stopped_unsealed: previous.stopped_unsealed,
            previous_live_journal: previous.live_journal,
            ..Self::new(Vec::new(), BTreeMap::new(), &RuleBook::default(), 0, &[])
        }
    }

    /// Records the agent did not write: the store's drops (a full disk past the memory
    /// bound) and the records its sink refused. A record the store drops is also one the
    /// sink refused, so the two are not added; the store may also drop records it held
    /// without refusing one, so the larger is the count. And the records it still held at
    /// a stop on a disk that refused them.
    pub fn records_lost(&self) -> u64 {
        self.store.dropped.max(self.flows.sink_errors) + self.store.lost_at_stop
    }

    /// The agent's own losses and waits, and the wall clock's steps, as `status` prints them.
    pub fn agent_summary(&self) -> String {
        let p = &self.pipeline;
        let c = &self.clock;
        let step = c.last_step.as_ref().map_or(String::new(), |s| {
            format!(
                " (last seen {}: offset {} -> {} ns)",
                s.seen_at, s.old_offset_ns, s.new_offset_ns
            )
        });
        format!(
            "agent: {} ring records read, {} undecodable; queue to the records stage {} events now, {} at most, full {} times; {} sweeps skipped behind a backlog\n\
             wall clock: {} steps of a second or more{step}, {} smaller adjustments followed",
            p.events, p.undecodable, p.queued, p.queued_peak, p.queue_full, p.sweeps_skipped,
            c.steps, c.adjustments
        )
    }

    /// Writes the snapshot to `dir` atomically (rename), but without fsync: the records
    /// thread rewrites it every sweep (once a second), where a file and a directory fsync
    /// would each cost as much as the journal's own fsync; a power cut loses at most the
    /// last snapshots, which the next agent rewrites within a second.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        self.put(dir, false)
    }

    fn put(&self, dir: &Path, sync: bool) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
        // Never a blocking open: a FIFO in the temporary file's place would stop the agent.
        let mut f = crate::store::fsutil::create_temporary(&tmp)?;
        // Encoded whole, then one write: the pretty printer writes each indent, key and
        // quote on its own, some 40 system calls per rule with hits on an unbuffered file.
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        f.write_all(&text)?;
        if sync {
            f.sync_data()?;
        }
        std::fs::rename(&tmp, dir.join(FILE_NAME))?;
        if sync {
            crate::store::fsutil::sync_dir(dir)?;
        }
        Ok(())
    }

    /// Marks the snapshot in `dir` as the last of an agent that stopped cleanly (a snapshot
    /// without the mark whose agent is gone is the sign of a crash), durably: a snapshot a
    /// power cut left damaged is then the sign of a crash too ([`Snapshot::crash_evidence`]).
    pub fn mark_stopped(dir: &Path) -> anyhow::Result<()> {
        let mut s = Self::read(dir)?;
        s.stopped_at = Some(crate::record::rfc3339_ns(
            jiff::Timestamp::now().as_nanosecond() as i64,
        ));
        s.put(dir, true).map_err(anyhow::Error::from)
    }

    /// Notes in the snapshot in `dir`, marked stopped, the error the agent stopped on.
    pub fn note_stop_error(dir: &Path, error: &str) -> anyhow::Result<()> {
        let mut s = Self::read(dir)?;
        s.stop_error = Some(error.to_owned());
        s.put(dir, true).map_err(anyhow::Error::from)
    }

    /// Evidence that the agent which wrote the snapshot in `dir` did not stop cleanly: its
    /// process is gone (no process has its pid with its start time: a pid given to another
    /// process, this one included, after a reboot is not the agent) and it never marked its
    /// snapshot stopped; with what a starting snapshot still carried of an earlier crash.
    /// `None` when there is no snapshot, or its agent stopped cleanly or still runs.
    pub fn crash_evidence(dir: &Path) -> Option<String> {
        let s = match Self::read(dir) {
            Ok(s) => s,
            // A snapshot whose bytes are damaged (emptied, cut, garbage): a clean stop
            // writes its last one durably, so this is what a power cut leaves of the
            // snapshots written after it. (Whole JSON of another shape is a newer agent's,
            // read after a downgrade: no damage.)
            Err(e)
                if e.downcast_ref::<serde_json::Error>()
                    .is_some_and(|e| e.is_syntax() || e.is_eof()) =>
            {
                return Some(format!(
                    "the last status snapshot is damaged ({e:#}): the agent that wrote it did \
                     not stop cleanly, or the file was changed since"
                ));
            }
            Err(e) => {
                // Absent or unreadable by this user (an unprivileged start, refused right
                // after with its own error): nothing to say. What is there and is not a
                // snapshot file (a FIFO) is named.
                let unreadable = e.downcast_ref::<std::io::Error>().is_some();
                if !unreadable {
                    tracing::warn!(dir = %dir.display(), error = format!("{e:#}"), "the last status snapshot cannot be read, so it shows no crash of the agent that wrote it");
                }
                return None;
            }
        };
        let gone = !crate::compliance::system::alive(s.pid, s.pid_start);
        if s.stopped_at.is_none() && !gone {
            return None;
        }
        let own = s.stopped_at.is_none().then(|| match s.starting {
            true => format!(
                "agent pid {} ended while starting, before its first sweep, without a clean stop (it started at {})",
                s.pid, s.written_at
            ),
            false => format!(
                "agent pid {} ended without a clean stop (its last status was written {})",
                s.pid, s.written_at
            ),
        });
        match (own, s.unreported_crash) {
            (Some(own), Some(before)) => Some(chain_crashes(&own, &before)),
            (own, before) => own.or(before),
        }
    }

    /// Reads the snapshot from `dir`. Anything but a regular file under its name (a FIFO,
    /// which a blocking open would wait on forever) is refused at once, named.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        use crate::store::fsutil::{read_input, InputError};
        use anyhow::Context as _;
        let path = dir.join(FILE_NAME);
        // Bytes: serde_json reports the line and column of a byte that is not UTF-8.
        let bytes = match read_input(&path, MAX_BYTES) {
            Ok(bytes) => bytes,
            Err(InputError::Io(e)) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot read {}: is `xdp-audit run --state-dir {}` running?",
                        path.display(),
                        dir.display()
                    )
                })
            }
            Err(e) => anyhow::bail!(
                "{} {e}; the agent writes its status snapshot there: remove it, and the \
                 running agent writes a new one at its next sweep",
                path.display()
            ),
        };
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a status snapshot", path.display()))
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A configured interface the agent does not audit, and why (see `daemon::ifaces`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unaudited {
    /// The interface's name.
    pub name: String,
    /// Why it is not audited, and what ends it.
    pub reason: String,
}

/// What the last agent with figures left for the next: its program counters (from which an
/// adopted program's losses are counted on) and its active alerts (carried on, so a
/// condition that outlives the agent is one alert, and each alert raised is resolved once).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Previous {
    /// The program's counters.
    pub counters: BTreeMap<String, u64>,
    /// The alerts active at its last snapshot.
    pub alerts: Vec<crate::alert::Alert>,
    /// Records it still held when it stopped on a disk that refused them (no alert of its
    /// own could say so after its last seal), or, when it died on such a disk, those its last
    /// snapshot says it held.
    pub lost_at_stop: u64,
    /// Records it held, on such a disk, that its pinned flow table and ledger kept: written
    /// by the next agent that takes the pins over, lost for one that does not.
    pub kept_at_stop: u64,
    /// Its snapshot was marked stopped with its store unable to write or seal everything
    /// (records lost at the stop, the disk refusing writes, journals waiting): the journals
    /// it left unsealed are no evidence of a crash.
    pub stopped_unsealed: bool,
    /// Its live journal, as its last snapshot names it.
    pub live_journal: Option<crate::store::LiveJournal>,
}

/// The state directory's lock, [`STATE_LOCK`] in it, held for an agent's life: two agents
/// on one state directory would each rewrite the other's status (one looking stopped or
/// crashed while it runs), and take each other's saved attribution, alerts and counters
/// at their starts. `None` where this user can neither read nor make it.
pub fn lock_state_dir(dir: &Path) -> anyhow::Result<Option<std::fs::File>> {
    use crate::store::fsutil::{open_regular_here, InputError};
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(STATE_LOCK);
    // Read-only is enough for flock; one this user cannot read (another user's) is made
    // again below. Never a blocking open: a FIFO in its place would hold the start.
    let create = || {
        std::fs::create_dir_all(dir).map_err(InputError::Io)?;
        // Not through a link planted in its place: a root start would create what it names.
        open_regular_here(
            &path,
            std::fs::File::options()
                .write(true)
                .create(true)
                .mode(0o640),
        )
    };
    let opened = match open_regular_here(&path, std::fs::File::options().read(true)) {
        Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => create(),
        // Another user's, unreadable to this one (an older root run's): made again.
        Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let _ = std::fs::remove_file(&path);
            create()
        }
        other => other,
    };
    let f = match opened {
        Ok(f) => f,
        Err(InputError::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            // An unprivileged start, which fails on its first privileged step and says so.
            tracing::debug!(path = %path.display(), "cannot lock the state directory (no permission)");
            return Ok(None);
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "--state-dir {}: cannot create {STATE_LOCK}",
                dir.display()
            )))
        }
    };
    let held = crate::store::fsutil::lock_exclusive(&f, crate::store::fsutil::LOCK_PATIENCE)
        .map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "--state-dir {}: cannot lock {STATE_LOCK}",
                dir.display()
            ))
        })?;
    if !held {
        anyhow::bail!(
            "--state-dir {}: another xdp-audit agent uses it (its status and saved state would \
             be mixed with this one's); give each agent its own --state-dir",
            dir.display()
        );
    }
    Ok(Some(f))
}

/// This agent's start, as the state directory shows it: [`Starting::begin`] reads the last
/// agent's crash evidence and writes a starting snapshot in its place, fsynced (once per
/// start: a power cut during the start is a crash too). Should the start end before the
/// daemon takes the snapshot over (an error, a stop signal while starting), dropping this
/// marks it stopped: a failed start is no crash, and the evidence it carries goes on to the
/// next agent. A panic or a kill leaves it unmarked, which the next agent reports.
pub struct Starting {
    dir: PathBuf,
    armed: bool,
}

/// Between a crash's evidence and the one handed on from before it.
const BEFORE_IT: &str = "; before it: ";
/// Before the agents that crash evidence names in full, those it names by pid.
const EARLIER: &str = "; earlier, agents that ended without a clean stop:";
/// Said when more agents crashed than evidence names.
const NOT_LISTED: &str = " and earlier ones not listed";
/// Said when none of the earlier agents is known by pid.
const NONE_NAMED: &str = " none known by pid";
/// Pids of earlier crashes that evidence names at most.
const EARLIER_PIDS: usize = 20;

/// `own` evidence of a crash before the `before` an earlier start handed on. A crash loop
/// while starting hands on every death: the last two are named in full and the older ones
/// by pid only, so the text stays within what an alert shows whole (cut in its middle, it
/// lost pids) and the snapshot that hands it on stays small however long the loop runs.
fn chain_crashes(own: &str, before: &str) -> String {
    let (last, older) = before.split_once(BEFORE_IT).unwrap_or((before, ""));
    let mut pids = Vec::new();
    let mut rest = older;
    while let Some(at) = rest.find("pid ") {
        rest = &rest[at + 4..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(pid) = rest[..digits].parse::<u32>() {
            pids.push(pid);
        }
    }
    let mut text = format!("{own}{BEFORE_IT}{last}");
    if !older.is_empty() {
        // Evidence that named no pid (a damaged snapshot) is said as one not listed.
        let in_full = older.split(EARLIER).next().unwrap_or_default();
        let unnamed = in_full.split(BEFORE_IT).any(|e| !e.contains("pid "));
        let not_listed = unnamed
            || older.ends_with(NOT_LISTED)
            || older.ends_with(NONE_NAMED)
            || pids.len() > EARLIER_PIDS;
        pids.truncate(EARLIER_PIDS);
        let named: Vec<String> = pids.iter().map(|p| format!(" pid {p}")).collect();
        text.push_str(EARLIER);
        text.push_str(&named.join(","));
        match (named.is_empty(), not_listed) {
            (true, _) => text.push_str(NONE_NAMED),
            (false, true) => text.push_str(NOT_LISTED),
            (false, false) => {}
        }
    }
    text
}

impl Starting {
    /// Reads the evidence in `dir` and writes the starting snapshot; returns what the last
    /// agent with figures left (empty if none), and the evidence.
    pub fn begin(dir: &Path) -> (Previous, Self, Option<String>) {
        let evidence = Snapshot::crash_evidence(dir);
        // The last snapshot's figures, or those a failed start handed on.
        let previous = Snapshot::read(dir).map_or_else(
            |_| Previous::default(),
            |s| {
                if s.starting {
                    Previous {
                        counters: s.previous_counters,
                        alerts: s.previous_alerts,
                        lost_at_stop: s.previous_lost_at_stop,
                        kept_at_stop: s.previous_kept_at_stop,
                        stopped_unsealed: s.previous_stopped_unsealed,
                        live_journal: s.previous_live_journal,
                    }
                } else {
                    // An agent that died while the disk refused writes held its records in
                    // memory (as of its last snapshot); with it gone, those nothing else
                    // keeps are lost (the pinned flow table keeps its flows' records, which
                    // this agent writes).
                    let died = s.stopped_at.is_none() && evidence.is_some();
                    let died_holding = if died && s.store.journal_refused {
                        s.store.unkept()
                    } else {
                        0
                    };
                    // Held on a refusing disk, at a stop or a death, and kept by the pins.
                    let kept_at_stop = if s.store.journal_refused {
                        s.store.kept()
                    } else {
                        0
                    };
                    Previous {
                        counters: s.counters,
                        alerts: s
                            .alerts
                            .map(|a| a.active.into_iter().chain(a.carry).collect())
                            .unwrap_or_default(),
                        lost_at_stop: s.store.lost_at_stop.max(died_holding),
                        kept_at_stop,
                        stopped_unsealed: s.stopped_at.is_some()
                            && (s.store.lost_at_stop > 0
                                || s.store.degraded
                                || s.store.unsealed > 0),
                        live_journal: s.store.live_journal,
                    }
                }
            },
        );
        // Nothing to mark stopped where nothing was written.
        let starting = Self {
            dir: dir.to_owned(),
            armed: write_starting(dir, evidence.clone(), previous.clone()),
        };
        (previous, starting, evidence)
    }

    /// This start did not take the last agent's pins over (it loaded its program afresh):
    /// the records they kept for the next agent are lost. They move into `previous`'s lost
    /// count, and the starting snapshot (with `evidence`, what [`Starting::begin`] returned)
    /// hands them on so: a start that fails from here leaves pins that the next one adopts,
    /// which must not count them kept.
    pub fn pins_not_taken(&self, previous: &mut Previous, evidence: Option<String>) {
        if previous.kept_at_stop == 0 {
            return;
        }
        previous.lost_at_stop += std::mem::take(&mut previous.kept_at_stop);
        self.rewrite(previous, evidence);
    }

    /// Writes the starting snapshot again with `previous` as it is now (with `evidence`,
    /// what [`Starting::begin`] returned).
    pub fn rewrite(&self, previous: &Previous, evidence: Option<String>) {
        if self.armed {
            write_starting(&self.dir, evidence, previous.clone());
        }
    }

    /// The daemon runs: it rewrites the snapshot every sweep and marks it at its stop.
    pub fn handed_over(mut self) {
        self.armed = false;
    }
}

/// Writes the starting snapshot ([`Snapshot::starting`]) in `dir`, fsynced; whether it was
/// written (a failure is said).
fn write_starting(dir: &Path, evidence: Option<String>, previous: Previous) -> bool {
    match Snapshot::starting(evidence, previous).put(dir, true) {
        Ok(()) => true,
        // Unprivileged: the start fails on its first privileged step and says so there
        // (the OS error once); the status snapshot cannot be written either way.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot write the starting status snapshot");
            false
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the starting status snapshot: a crash before the first sweep will go unreported");
            false
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if self.armed && !std::thread::panicking() {
            if let Err(e) = Snapshot::mark_stopped(&self.dir) {
                tracing::warn!(error = %e, "cannot mark the starting status snapshot stopped");
            }
        }
    }
}

#[cfg(test)]
mod tests;
