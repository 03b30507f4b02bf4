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
        let mut per_file: BTreeMap<(PathBuf, &'static str), (u64, u64)> = BTreeMap::new();
        let mut rules: Vec<RuleHits> = Vec::new();
        for &(id, n) in hits {
            let Some(o) = lists.origin(id) else { continue };
            let kind = kind_name(o.kind);
            let e = per_file.entry((o.path.to_owned(), kind)).or_default();
            e.0 += 1;
            e.1 += n;
            rules.push(RuleHits {
                rule: format!("{}:{}", o.path.display(), o.line),
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
            syslog: None,
            flood: Default::default(),
        }
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
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        serde_json::to_writer_pretty(&mut f, self)?;
        f.write_all(b"\n")?;
        std::fs::rename(&tmp, dir.join(FILE_NAME))
    }

    /// Marks the snapshot in `dir` as the last of an agent that stopped cleanly (a snapshot
    /// without the mark whose agent is gone is the sign of a crash).
    pub fn mark_stopped(dir: &Path) -> anyhow::Result<()> {
        let mut s = Self::read(dir)?;
        s.stopped_at = Some(crate::record::rfc3339_ns(
            jiff::Timestamp::now().as_nanosecond() as i64,
        ));
        s.write(dir).map_err(anyhow::Error::from)
    }

    /// Evidence that the agent which wrote the snapshot in `dir` did not stop cleanly: its
    /// process is gone and it never marked its snapshot stopped. `None` when there is no
    /// snapshot, or its agent stopped cleanly or still runs.
    pub fn crash_evidence(dir: &Path) -> Option<String> {
        let s = Self::read(dir).ok()?;
        let gone =
            s.pid != std::process::id() && !crate::compliance::system::alive(s.pid, s.pid_start);
        (s.stopped_at.is_none() && gone).then(|| {
            format!(
                "agent pid {} ended without a clean stop (its last status was written {})",
                s.pid, s.written_at
            )
        })
    }

    /// Reads the snapshot from `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let path = dir.join(FILE_NAME);
        // Bytes: serde_json reports the line and column of a byte that is not UTF-8.
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {}: is `xdp-audit run --state-dir {}` running?",
                path.display(),
                dir.display()
            )
        })?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a status snapshot", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(pid: u32) -> Snapshot {
        let mut s = Snapshot::new(Vec::new(), BTreeMap::new(), &RuleBook::default(), 1, &[]);
        s.pid = pid;
        s
    }

    #[test]
    fn a_snapshot_never_marked_stopped_of_a_dead_pid_is_crash_evidence() {
        let dir = std::env::temp_dir().join(format!("xdp-audit-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let dead = child.id();
        child.wait().expect("reap true");
        assert_eq!(
            Snapshot::crash_evidence(&dir),
            None,
            "no snapshot, no evidence"
        );
        snapshot(dead).write(&dir).expect("write");
        let e = Snapshot::crash_evidence(&dir).expect("a dead agent that never stopped");
        assert!(e.contains(&dead.to_string()), "{e}");
        Snapshot::mark_stopped(&dir).expect("mark stopped");
        assert_eq!(Snapshot::crash_evidence(&dir), None, "it stopped cleanly");
        snapshot(std::process::id()).write(&dir).expect("write");
        assert_eq!(
            Snapshot::crash_evidence(&dir),
            None,
            "an agent still running"
        );
        // The pid of a process that started after the snapshot's writer: its pid reused.
        let mut reused = snapshot(std::process::id());
        reused.pid_start = reused.pid_start.map(|t| t + 1);
        reused.write(&dir).expect("write");
        assert!(
            Snapshot::crash_evidence(&dir).is_none(),
            "the reader's own pid is never taken for a crash"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pid_is_the_agent_only_while_its_start_time_matches() {
        use crate::compliance::system::{alive, process_start};
        let me = std::process::id();
        let start = process_start(me).expect("/proc/self/stat");
        assert!(alive(me, Some(start)) && alive(me, None));
        assert!(
            !alive(me, Some(start + 1)),
            "a pid given to another process"
        );
        assert!(
            !alive(0, None),
            "pid 0 is no process (kill(0) asks about our group)"
        );
        assert_eq!(
            snapshot(me).pid_start,
            Some(start),
            "written with the snapshot"
        );
    }
}
