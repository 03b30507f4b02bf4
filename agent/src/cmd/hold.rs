//! `xdp-audit hold`: legal holds that keep a time window's records past retention.

use std::process::ExitCode;

use anyhow::Context;

use super::store_args::{readable_store, StoreDirArgs};
use crate::record::rfc3339_s;
use crate::store::access;
use crate::store::hold::{self, Hold};
use crate::store::manifest::{live_segments, read_entries};
use crate::store::oplog::{self, AccessInfo, HoldInfo, Who};
use crate::store::query::parse_time;
use crate::store::{StoreClock, SystemClock};

/// The long help of `xdp-audit hold`, with examples.
pub const LONG_ABOUT: &str = "Legal holds: the segments holding records of a time window are kept past
the retention until the hold is released (a court order, an investigation).

`hold add` orders a hold, `hold list` shows them, `hold release ID` ends one. Each hold and
release is a hash-chained line of the store's operator log (operator.log), with who ordered it
and why; the agent anchors the log into the manifest, and `xdp-audit verify` checks the lines,
that a release names a hold in force, and that retention never deleted a held segment.
Holds work whether the agent runs or not: every retention pass (daily, and at start) reads
them. Times are RFC 3339 with an offset, or a span before now (`7d`).

Examples:
  xdp-audit hold add --since 2026-05-01T00:00:00Z --until 2026-05-08T00:00:00Z --reason 'case 4711, order of 2026-06-02'
  xdp-audit hold list
  xdp-audit hold release 12 --reason 'case 4711 closed'";

/// Arguments of `xdp-audit hold`.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct HoldArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: HoldCommand,
}

/// The `hold` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum HoldCommand {
    /// Keep the segments of a time window past retention until released.
    Add(AddArgs),
    /// Show the holds (in force, and with --all the released ones too).
    List(ListArgs),
    /// End a hold: its segments follow the retention again.
    Release(ReleaseArgs),
}

/// Arguments of `xdp-audit hold add`.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: StoreDirArgs,
    /// Start of the held window: RFC 3339 or a span ago.
    #[arg(long, value_name = "TIME")]
    pub since: String,
    /// End of the held window (exclusive): RFC 3339 or a span ago.
    #[arg(long, value_name = "TIME")]
    pub until: String,
    /// Why (case number, order); recorded with the hold.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// Arguments of `xdp-audit hold list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: StoreDirArgs,
    /// Show released holds too.
    #[arg(long)]
    pub all: bool,
}

/// A hold's id: the number `hold list` shows.
fn parse_hold_id(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a hold id (the number `xdp-audit hold list` shows)"))
}

/// Arguments of `xdp-audit hold release`.
#[derive(clap::Args, Debug)]
pub struct ReleaseArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: StoreDirArgs,
    /// The hold's id, as `hold list` shows it.
    #[arg(value_name = "ID", value_parser = parse_hold_id)]
    pub id: u64,
    /// Why; recorded with the release.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// Runs `xdp-audit hold`.
pub fn main(args: HoldArgs) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now_ns();
    match args.command {
        HoldCommand::Add(mut a) => {
            a.dir.resolve()?;
            add(a, now)
        }
        HoldCommand::List(mut a) => {
            a.dir.resolve()?;
            list(a)
        }
        HoldCommand::Release(mut a) => {
            a.dir.resolve()?;
            let dir = &a.dir.log_dir;
            readable_store(dir)?;
            let line = hold::release(dir, Who::current(), now, a.id, &a.reason)
                .with_context(|| format!("releasing hold {}", a.id))?;
            outln!(
                "hold {} released (operator log line {}); its segments follow the retention again from the next retention pass",
                a.id, line.n
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn add(a: AddArgs, now: i64) -> anyhow::Result<ExitCode> {
    let dir = &a.dir.log_dir;
    let since_ns = parse_time(&a.since, now).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let until_ns = parse_time(&a.until, now).map_err(|e| anyhow::anyhow!("--until: {e}"))?;
    // The flags' mistake, said as such (the log's own check would blame the log file).
    anyhow::ensure!(
        since_ns < until_ns,
        "the hold's --since must be before its --until ({} is not before {})",
        a.since,
        a.until
    );
    readable_store(dir)?;
    let window = HoldInfo {
        since_ns,
        until_ns,
        reason: a.reason,
    };
    let line = hold::add(dir, Who::current(), now, window).context("ordering the hold")?;
    let h = &hold::holds(std::slice::from_ref(&line))[0];
    let entries = read_entries(dir).context("reading the manifest")?;
    let covered: Vec<_> = live_segments(&entries)
        .into_iter()
        .filter(|s| h.covers(s))
        .collect();
    outln!(
        "hold {} ordered: {} to {}, reason {:?}; it covers {} segments ({} records) now, and every retention pass keeps them until `xdp-audit hold release {}`",
        h.id,
        rfc3339_s(h.window.since_ns),
        rfc3339_s(h.window.until_ns),
        h.window.reason,
        covered.len(),
        covered.iter().map(|s| s.rows).sum::<u64>(),
        h.id
    )?;
    // Ordered after damage in the log, the hold is kept (retention stops while the log does
    // not verify) but `hold list` stops at the damage: said now, not found out later.
    if let Ok(scan) = crate::store::oplog::scan(dir) {
        if let Some((bad, reason)) = scan.problem {
            tracing::warn!(
                "{} does not verify from line {bad} ({reason}): hold {} is written after that \
                 line, so `hold list` does not show it, and retention deletes nothing until the \
                 log verifies again (run `xdp-audit verify`)",
                dir.join(crate::store::oplog::LOG).display(),
                h.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Who, printable: `SUDO_USER` is whatever the caller's environment said, and must not start
/// a row of its own or drive the terminal of whoever lists the holds.
fn who_text(w: &Who) -> String {
    let name = w.user.clone().unwrap_or_else(|| format!("uid {}", w.uid));
    let text = match &w.sudo_user {
        Some(s) => format!("{name} (sudo by {s})"),
        None => name,
    };
    super::printable(&text).into_owned()
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let dir = &a.dir.log_dir;
    readable_store(dir)?;
    let scan = oplog::scan(dir).context("reading the operator log")?;
    if let Some((line, reason)) = &scan.problem {
        tracing::warn!(
            "{} line {line}: {reason}; holds after that line are not shown (run `xdp-audit verify`)",
            dir.join(oplog::LOG).display()
        );
    }
    let shown: Vec<Hold> = hold::holds(&scan.lines)
        .into_iter()
        .filter(|h| a.all || h.in_force())
        .collect();
    // Recorded before the list is printed; a failure only warns (see `access::record`).
    access::record(
        dir,
        AccessInfo::new("hold list", if a.all { "all" } else { "in force" })
            .rows(shown.len() as u64),
    );
    outln!(
        "{:>5}  {:<9} {:<20} {:<20} {:<20} {:<16} REASON",
        "ID",
        "STATE",
        "SINCE",
        "UNTIL",
        "ORDERED",
        "BY"
    )?;
    for h in &shown {
        let state = if h.in_force() { "in force" } else { "released" };
        outln!(
            "{:>5}  {:<9} {:<20} {:<20} {:<20} {:<16} {}",
            h.id,
            state,
            rfc3339_s(h.window.since_ns),
            rfc3339_s(h.window.until_ns),
            rfc3339_s(h.at_ns),
            who_text(&h.who),
            super::printable(&h.window.reason)
        )?;
        if let Some(r) = &h.released {
            outln!(
                "{:>5}  released {} by {}: {}",
                "",
                rfc3339_s(r.at_ns),
                who_text(&r.who),
                super::printable(&r.reason)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
