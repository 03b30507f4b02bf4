//! `xdp-audit compliance`: the self-check for inspections.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::run::DEFAULT_STATE_DIR;
use super::store_args::{readable_store, DEFAULT_LOG_DIR};
use crate::compliance::{self, system, Configured, Inputs, Verdict};
use crate::store::access::{self, AccessInfo};
use crate::store::manifest::load_public_key;
use crate::store::{StoreClock, SystemClock};

/// The long help of `xdp-audit compliance`, with examples.
pub const LONG_ABOUT: &str = "Checks what an inspection asks of the audit, one line each, with pass, warn or
fail and why:

  agent       the agent runs (its status.json in --state-dir is fresh, its process alive)
  retention   at least 90 days configured (--config) and in force in the agent; retention never
              deleted records younger than that; nothing overdue is left undeleted
  records     every hour of the last 90 days (or since the first record) has records; gaps listed
  chain       `verify` passes and the chain head is signed (checked with --public-key)
  access log  accesses are recorded: the operator log verifies, the store can be written, and
              this run's own access was recorded
  lists       the list files loaded, and their age (--list-max-age)
  losses      ring-buffer and flow-start loss, and records dropped, since the agent started
  clock       the kernel clock is synchronised (adjtimex), and stepped no time since start
  disk        free space for the retention period at the rate observed
  shipping    records copied off the gateway (--ship): a pass when the last pass succeeded and the
              backlog is under 6 h; a warn when not configured (one copy) or behind

Prints a table (or JSON with --json) and exits 1 if any line fails, 0 otherwise. It only
reads the store, and records its own run as an access line of the operator log. With --config
(the agent's TOML file), the log and state directories come from it unless given here.

Examples:
  xdp-audit compliance --config /etc/xdp-audit/xdp-audit.toml --public-key /etc/xdp-audit/chain.key.pub
  xdp-audit compliance --log-dir /var/lib/xdp-audit --json | jq '.checks[] | select(.result != \"pass\")'";

/// Arguments of `xdp-audit compliance`.
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct ComplianceArgs {
    /// The agent's config file: its retention, log and state directories.
    #[arg(long, value_name = "FILE", env = crate::config::CONFIG_ENV)]
    pub config: Option<PathBuf>,
    /// Directory of the audit store (default: the config's, else /var/lib/xdp-audit).
    #[arg(long, env = "XDP_AUDIT_LOG_DIR", value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// The agent's state directory (default: the config's, else /run/xdp-audit).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The chain head must be signed by this key (a file from `xdp-audit keygen`).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// A list file not changed for longer than this is reported (`7d`, `12h`).
    #[arg(long, default_value = "7d", value_parser = crate::span::parse, value_name = "SPAN")]
    pub list_max_age: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `xdp-audit compliance`.
pub fn main(args: ComplianceArgs) -> anyhow::Result<ExitCode> {
    let run = (args.config.as_deref())
        .map(super::store_args::run_settings)
        .transpose()?;
    let log_dir = args
        .log_dir
        .or_else(|| run.as_ref().map(|r| r.store.dir.log_dir.clone()))
        .unwrap_or_else(|| DEFAULT_LOG_DIR.into());
    let state_dir = args
        .state_dir
        .or_else(|| run.as_ref().map(|r| r.state_dir.clone()))
        .unwrap_or_else(|| DEFAULT_STATE_DIR.into());
    readable_store(&log_dir)?;
    let public_key = match &args.public_key {
        Some(p) => Some(load_public_key(p).context("loading --public-key")?),
        None => None,
    };
    let configured = match (&run, &args.config) {
        (Some(r), Some(path)) => Some(Configured {
            days: r.store.retention_days,
            source: path.display().to_string(),
        }),
        _ => None,
    };
    let inputs = Inputs {
        now_ns: SystemClock.now_ns(),
        disk: system::disk(&log_dir),
        log_dir,
        public_key,
        configured,
        agent: system::agent(&state_dir),
        clock: system::clock_sync(),
        list_max_age_ns: args.list_max_age.as_nanos().min(i64::MAX as u128) as i64,
        status_max_age_ns: 60_000_000_000,
    };
    let mut report = compliance::check(&inputs);
    // Recorded before the report is shown; a failure warns (see `access::record`) and fails
    // the access-log line: this very access went unrecorded.
    let recorded = access::record(
        &inputs.log_dir,
        AccessInfo::new("compliance", "all").rows(report.checks.len() as u64),
    );
    report.own_access(&recorded);
    let printed = if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)
    } else {
        out!("{}", report.table())
    };
    let code = if report.worst() == Verdict::Fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    super::verdict(code, printed)
}
