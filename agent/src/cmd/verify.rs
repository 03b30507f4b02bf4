//! `xdp-audit verify`: prove the audit store is unaltered.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::store_args::LogDirArgs;
use crate::store::manifest::load_public_key;
use crate::store::verify::verify;

/// The long help of `xdp-audit verify`, with examples.
pub const LONG_ABOUT: &str =
    "Walks the manifest chain of the audit store: every entry's hash and its link to
the previous one, every live segment's size and SHA-256, segment files the chain does not list,
the operator log (operator.log: accesses and legal holds; its own chain, and every anchor of
it in the manifest) and the chain head. Retention deletions and compactions (a closed day's
hourly segments merged into one) are chain entries, so lawful pruning and merging pass; a
merge must hold exactly its inputs' rows and time range, and the agent checks each input's
hash before merging it. A release must name a hold in force, and retention must never have
deleted a segment that a hold in force when it ran covered. Lines appended since the agent's
last anchor (at most an hour while it runs) are checked by their own chain only: their
removal from the end cannot be seen.

Prints `ok: ...` and exits 0 when everything holds; otherwise prints `BROKEN: FILE: reason` for
the first broken link and exits 1. A store directory that cannot be read is an error (on
stderr, exit 1), not a verdict. Changes, deletions, reorderings and insertions of entries or
segments are all caught. Without --public-key, an attacker who rewrites the whole chain and its
head consistently is not caught; with it (the agent run with --signing-key), they are.

Examples:
  xdp-audit verify --log-dir /var/log/xdp-audit
  xdp-audit verify --public-key /etc/xdp-audit/chain.key.pub";

/// Arguments of `xdp-audit verify`.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct VerifyArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: LogDirArgs,
    /// Require the chain head to be signed by this key (a file from `xdp-audit keygen`).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

/// Runs `xdp-audit verify`.
pub fn main(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let key = match &args.public_key {
        Some(p) => Some(load_public_key(p).context("loading --public-key")?),
        None => None,
    };
    // A store that is not there is an error of the command line, not a broken chain: it goes
    // to stderr like every other error, and `BROKEN` stays the verdict on a store.
    let dir = &args.dir.log_dir;
    std::fs::read_dir(dir)
        .with_context(|| format!("--log-dir {}: cannot read the audit store", dir.display()))?;
    match verify(dir, key.as_ref()) {
        Ok(v) => {
            println!(
                "ok: {} entries, {} segments ({} rows), {} pruned by retention, {} merged by compaction, operator log {} lines ({} anchored, {} holds in force), alert log {} lines ({} anchored), head {}{}",
                v.entries,
                v.segments,
                v.rows,
                v.pruned,
                v.compacted,
                v.operator_lines,
                v.anchored_lines,
                v.holds_in_force,
                v.alert_lines,
                v.alert_anchored_lines,
                if v.head.is_empty() {
                    "(empty)"
                } else {
                    &v.head
                },
                if v.signature_checked {
                    ", signature valid"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            println!("BROKEN: {b}");
            Ok(ExitCode::FAILURE)
        }
    }
}
