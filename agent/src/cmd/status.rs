//! `xdp-audit status`: the running agent's counters and list hits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::status::Snapshot;

/// Show the running agent's packet counters and list hits.
///
/// Prints the program's counters (every packet outcome and every loss), and how many packets
/// each list file and each rule matched. Reads the snapshot the agent rewrites every sweep interval in its state directory.
///
/// Examples:
///   xdp-audit status
///   xdp-audit status --top 50
///   xdp-audit status --json | jq '.rules[0]'
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    /// The agent's state directory (`xdp-audit run --state-dir`).
    #[arg(long, value_name = "DIR", default_value = crate::cmd::run::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Print the snapshot as JSON.
    #[arg(long)]
    pub json: bool,
    /// Show this many rules, most hits first.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
}

/// Prints the snapshot.
pub fn main(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let s = Snapshot::read(&args.state_dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "agent pid {} on {}; snapshot {}; list generation {}",
        s.pid,
        s.interfaces.join(", "),
        s.written_at,
        s.generation
    );
    println!("\nprogram counters:");
    for (name, n) in s.counters.iter().filter(|(_, n)| **n != 0) {
        println!("  {name:<32} {n:>14}");
    }
    let (f, st) = (&s.flows, &s.store);
    println!(
        "\nflows: {} records written, {} whose start event was lost, {} evicted from a full table, {} refused by the store",
        f.records, f.lost_starts, f.evicted, f.sink_errors
    );
    println!(
        "audit store: {} records accepted, {} durable, {} buffered, {} dropped; {} segments sealed, {} merged into days, {} journals waiting{}",
        st.accepted,
        st.durable,
        st.buffered,
        st.dropped,
        st.sealed,
        st.compacted,
        st.unsealed,
        if st.degraded {
            "; DEGRADED: the disk refuses writes (records are held in memory)"
        } else {
            ""
        }
    );
    if st.journal_skipped_bytes > 0 {
        println!(
            "  damaged journals: {} bytes skipped (at least {} records), kept in the log directory's quarantine/",
            st.journal_skipped_bytes, st.journal_skipped_frames
        );
    }
    println!("{}", s.agent_summary());
    if let Some(e) = &s.enrich {
        println!("{}", e.summary());
    }
    if let Some(l) = &s.syslog {
        println!("{}", l.summary());
    }
    println!("\nlists:");
    for l in &s.lists {
        println!(
            "  {:<6} {:<50} {:>8} rules hit {:>14} packets",
            l.kind, l.path, l.rules_hit, l.hits
        );
    }
    println!(
        "\nrules (top {} of {}):",
        args.top.min(s.rules.len()),
        s.rules.len()
    );
    for r in s.rules.iter().take(args.top) {
        println!("  {:<6} {:<60} {:>14}", r.kind, r.rule, r.hits);
    }
    Ok(ExitCode::SUCCESS)
}
