//! `xdp-audit status`: the agent's counters, list hits and alerts, and whether it runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::status::Snapshot;

/// Show the agent's packet counters, list hits and alerts, and whether it runs.
///
/// Prints the program's counters (every packet outcome and every loss), how many packets
/// each list file and each rule matched, and the alerts (active ones, the last 10 notices).
/// Reads the snapshot the agent rewrites every sweep interval in its state directory; when
/// the agent is down (its process is gone) or stalled (its snapshot is older than
/// --stale-after), it says so and shows the last snapshot with its age.
///
/// Exit status: 0 the agent runs; 3 it is not running (the last snapshot is shown);
/// 4 its process exists but the snapshot is stale; 5 it is starting (no sweep yet, so no
/// figures); 1 no snapshot could be read.
///
/// Examples:
///   xdp-audit status
///   xdp-audit status --top 50
///   xdp-audit status --json | jq '.rules[0]'
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    /// The agent's state directory (`xdp-audit run --state-dir`) [default: the --config
    /// file's state-dir, else /run/xdp-audit]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The agent's config file (`run --config`): its state-dir is the one read here
    #[arg(long, env = crate::config::CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the snapshot as JSON.
    #[arg(long)]
    pub json: bool,
    /// Show this many rules, most hits first.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
    /// A snapshot older than this (the agent rewrites it every sweep) means the agent is stalled.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::span::parse)]
    pub stale_after: std::time::Duration,
}

/// Exit status when the agent is not running.
pub const EXIT_DOWN: u8 = 3;
/// Exit status when the agent's process exists but its snapshot is stale.
pub const EXIT_STALE: u8 = 4;
/// Exit status when the agent is starting (before its first sweep).
pub const EXIT_STARTING: u8 = 5;

/// Whether the agent that wrote a snapshot runs, judged from its pid and the snapshot's age.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// Its process exists and the snapshot is fresh.
    Running,
    /// Its process exists but has not rewritten the snapshot for longer than `--stale-after`.
    Stale,
    /// Its process exists and wrote its starting snapshot within `--stale-after`; its first
    /// sweep has not come yet.
    Starting,
    /// Its process is gone.
    Down,
}

impl AgentState {
    /// Judges the writer of `s`, `age` after it was written (`None`: dated ahead of now, so
    /// nothing says the agent still writes it).
    pub fn of(s: &Snapshot, age: Option<Duration>, stale_after: Duration) -> Self {
        if !crate::compliance::system::alive(s.pid, s.pid_start) {
            AgentState::Down
        } else if age.is_none_or(|a| a > stale_after) {
            AgentState::Stale
        } else if s.starting {
            AgentState::Starting
        } else {
            AgentState::Running
        }
    }

    fn exit(self) -> ExitCode {
        match self {
            AgentState::Running => ExitCode::SUCCESS,
            AgentState::Stale => ExitCode::from(EXIT_STALE),
            AgentState::Starting => ExitCode::from(EXIT_STARTING),
            AgentState::Down => ExitCode::from(EXIT_DOWN),
        }
    }
}

/// The snapshot's age: how long ago its `written_at` is; `None` for a time ahead of now (the
/// clock was set back since, or the agent did not write the file).
fn age_of(s: &Snapshot, dir: &std::path::Path) -> anyhow::Result<Option<Duration>> {
    let written = s.written_at.parse::<jiff::Timestamp>().map_err(|e| {
        anyhow::anyhow!(
            "{}: written_at {:?} is not an RFC 3339 time: {e}",
            dir.join(crate::status::FILE_NAME).display(),
            s.written_at
        )
    })?;
    let ago = jiff::Timestamp::now().duration_since(written);
    Ok(match std::time::Duration::try_from(ago) {
        Ok(age) => Some(age),
        Err(_) if ago.abs() <= jiff::SignedDuration::from_secs(1) => Some(Duration::ZERO),
        Err(_) => None,
    })
}

/// Prints the snapshot.
pub fn main(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let dir = match (&args.state_dir, &args.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => super::store_args::run_settings(c)?.state_dir,
        (None, None) => crate::cmd::run::DEFAULT_STATE_DIR.into(),
    };
    let s = Snapshot::read(&dir)?;
    let age = age_of(&s, &dir)?;
    let state = AgentState::of(&s, age, args.stale_after);
    super::verdict(state.exit(), print(&args, &s, age, state))
}

/// Prints the snapshot as text or JSON.
fn print(
    args: &StatusArgs,
    s: &Snapshot,
    age: Option<Duration>,
    state: AgentState,
) -> anyhow::Result<()> {
    if args.json {
        let mut v = serde_json::to_value(s)?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "agent".into(),
                serde_json::json!({ "state": state, "snapshot_age_s": age.map(|a| a.as_secs()) }),
            );
        }
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let age_text = match age {
        Some(a) => crate::span::format(a),
        None => "an unknown time (it is dated ahead of this clock: was the clock set back?)".into(),
    };
    match state {
        AgentState::Running => outln!(
            "agent pid {} running on {}; snapshot {} ({age_text} old); list generation {}",
            s.pid,
            s.interfaces.join(", "),
            s.written_at,
            s.generation
        )?,
        AgentState::Starting => outln!(
            "agent pid {} starting since {} ({age_text} ago); no sweep yet, so no figures",
            s.pid,
            s.written_at
        )?,
        AgentState::Stale if s.starting => outln!(
            "AGENT STALLED: pid {} exists but has been starting for {age_text} (since {}) without a sweep",
            s.pid, s.written_at
        )?,
        AgentState::Stale => outln!(
            "AGENT STALLED: pid {} exists but has not rewritten its snapshot for {age_text} (written {}); the figures below are as of then",
            s.pid, s.written_at
        )?,
        AgentState::Down if s.starting => outln!(
            "AGENT NOT RUNNING: pid {} {}; last seen starting at {}, {age_text} ago",
            s.pid,
            match &s.stopped_at {
                Some(t) => format!("ended its start at {t} (it failed or was stopped; see its log)"),
                None => "ended while starting, without a clean stop (crashed or killed)".to_owned(),
            },
            s.written_at
        )?,
        AgentState::Down => outln!(
            "AGENT NOT RUNNING: pid {} {}; last snapshot written {}, {age_text} ago; the figures below are as of then",
            s.pid,
            match (&s.stopped_at, &s.stop_error) {
                (Some(t), Some(e)) => format!("stopped at {t} on an error: {e}"),
                (Some(t), None) => format!("stopped cleanly at {t}"),
                (None, _) => "is gone without a clean stop (crashed or killed)".to_owned(),
            },
            s.written_at
        )?,
    }
    for u in &s.unaudited {
        outln!("NOT AUDITED: interface {}: {}", u.name, u.reason)?;
    }
    if s.starting {
        if let Some(e) = &s.unreported_crash {
            outln!("the agent before it did not stop cleanly: {e}")?;
        }
        return Ok(());
    }
    if let Some(a) = &s.alerts {
        outln!("\n{}", a.summary())?;
    }
    outln!("\nprogram counters:")?;
    for (name, n) in s.counters.iter().filter(|(_, n)| **n != 0) {
        outln!("  {name:<32} {n:>14}")?;
    }
    let (f, st) = (&s.flows, &s.store);
    outln!(
        "\nflows: {} records written, {} whose start event was lost, {} evicted from a full table, {} refused by the store",
        f.records, f.lost_starts, f.evicted, f.sink_errors
    )?;
    if f.restored != 0 {
        outln!(
            "  {} open flows restored from the file a killed agent left (open-flows.bin): those gone from the table are written as evicted",
            f.restored
        )?;
    }
    if f.restore_damaged != 0 {
        outln!(
            "  DAMAGED: {} bytes of that file could not be read (set aside as open-flows.bin.bad when none could): the open flows they held are not restored, and those the table evicted since have no record",
            f.restore_damaged
        )?;
    }
    if f.lost_unseen != 0 {
        outln!(
            "  {} flows lost unseen: their start event was lost and the full table evicted them before a sweep found them (no record; raise --ringbuf-bytes and --flow-table-size)",
            f.lost_unseen
        )?;
    }
    outln!(
        "audit store: {} records accepted, {} durable, {} buffered{}, {} dropped; {} segments sealed, {} merged into days, {} journals waiting{}",
        st.accepted,
        st.durable,
        st.buffered,
        match st.kept() {
            0 => String::new(),
            kept => format!(" ({kept} also kept by the pinned flow table for the next agent)"),
        },
        st.dropped,
        st.sealed,
        st.compacted,
        st.unsealed,
        if st.degraded {
            "; DEGRADED: the disk refuses writes (records are held in memory, or journals wait to be sealed)"
        } else {
            ""
        }
    )?;
    if st.lost_at_stop > 0 {
        outln!(
            "  LOST AT THE STOP: {} records were still held in memory when the agent stopped on a disk that refused them",
            st.lost_at_stop
        )?;
    }
    if let Some(why) = &st.manifest_unreadable {
        outln!(
            "  MANIFEST UNREADABLE at the start: {why}; recording into journals only (nothing is sealed, merged or pruned) until manifest.jsonl is restored from a copy and the agent restarted"
        )?;
    }
    if st.compact_failed_days > 0 {
        outln!(
            "  compaction: {} closed days not merged (a changed or damaged segment; run `xdp-audit verify`)",
            st.compact_failed_days
        )?;
    }
    if st.unsealable > 0 {
        outln!(
            "  {} journals cannot be read or sealed; they stay in the log directory (the agent's log names each and why)",
            st.unsealable
        )?;
    }
    if st.journal_skipped_bytes > 0 {
        outln!(
            "  damaged journals: {} bytes skipped (at least {} records), kept in the log directory's quarantine/",
            st.journal_skipped_bytes, st.journal_skipped_frames
        )?;
    }
    if st.shortened_records > 0 {
        outln!(
            "  {} records had texts shortened to fit a journal frame (a rule with a very long list path)",
            st.shortened_records
        )?;
    }
    outln!("{}", s.agent_summary())?;
    if let Some(e) = &s.enrich {
        outln!("{}", e.summary())?;
    }
    if let Some(sh) = &s.ship {
        outln!("{}", sh.summary())?;
    }
    if let Some(l) = &s.syslog {
        outln!("{}", l.summary())?;
    }
    outln!("\nlists:")?;
    for l in &s.lists {
        outln!(
            "  {:<6} {:<50} {:>8} rules hit {:>14} packets",
            l.kind,
            l.path,
            l.rules_hit,
            l.hits
        )?;
    }
    outln!(
        "\nrules (top {} of {}):",
        args.top.min(s.rules.len()),
        s.rules.len()
    )?;
    for r in s.rules.iter().take(args.top) {
        outln!("  {:<6} {:<60} {:>14}", r.kind, r.rule, r.hits)?;
    }
    Ok(())
}
