//! `xdp-audit verify`: prove the audit store is unaltered.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::store_args::StoreDirArgs;
use crate::store::manifest::load_public_key;
use crate::store::verify::{verify_with_progress, Fault};

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
the first broken link and exits 1, and only then. Every error before a verdict is on stderr
and exits 3, the store could not be checked: no store in --log-dir, a file of it that cannot
be read (no permission, an I/O error), a --public-key that does not load, a bucket --remote
cannot reach, and a --public-key given for a store with nothing sealed yet (no chain, so no
signed head: a new store until its first seal). A usage error exits 2. Changes, deletions, reorderings and insertions of
entries or segments are all caught. Without --public-key, an attacker who rewrites the whole chain and its
head consistently is not caught; with it (the agent run with --signing-key), they are.

With --remote (and the agent's --ship flags), it also checks that every live segment exists in
the bucket under its key with its sealed size and SHA-256 (the object's `sha256` metadata, set
and checked at upload, when the server also checked the bytes against the same SHA-256):
`ok remote: ...`, or one `BROKEN: remote KEY: problem` line per segment missing or different.
The metadata is what a client with write access to the bucket sent: --remote-bytes also reads
every live segment back and hashes its bytes (the store's size over the network, progress on
stderr), which catches an object replaced under its old metadata.

Examples:
  xdp-audit verify --log-dir /var/lib/xdp-audit
  xdp-audit verify --public-key /etc/xdp-audit/chain.key.pub
  xdp-audit verify --remote --ship s3://audit/fleet --ship-endpoint http://10.0.0.5:9000 \
      --ship-credentials /etc/xdp-audit/s3.credentials
  xdp-audit verify --remote-bytes --ship s3://audit/fleet --ship-credentials /etc/xdp-audit/s3.credentials";

/// Arguments of `xdp-audit verify`.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
// Uploads' part size means nothing to a check that only reads the bucket.
#[command(mut_arg("ship_multipart_bytes", |a| a.hide(true)))]
// The bucket means nothing without --remote: given alone it was ignored, and `ok` said of
// the local store only.
#[command(mut_arg("ship", |a| a.requires("remote_check")))]
#[command(group(clap::ArgGroup::new("remote_check").args(["remote", "remote_bytes"]).multiple(true)))]
pub struct VerifyArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: StoreDirArgs,
    /// Require the chain head to be signed by this key (a file from `xdp-audit keygen`).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Also check that every live segment is in the bucket named by --ship, as sealed.
    #[arg(long, requires = "ship")]
    pub remote: bool,
    /// --remote, and every live segment's bytes read back from the bucket and hashed.
    #[arg(long, requires = "ship")]
    pub remote_bytes: bool,
    /// The bucket (with --remote): the agent's --ship flags.
    #[command(flatten)]
    pub ship: crate::ship::config::ShipArgs,
}

/// Runs `xdp-audit verify`.
pub fn main(mut args: VerifyArgs) -> anyhow::Result<ExitCode> {
    // Every error before a verdict (no store there, a config, key or bucket that cannot be
    // used) exits 3, the store not checked: `BROKEN` alone exits 1, so `verify || alarm`
    // never takes a typo for tampering.
    let unchecked = |e: anyhow::Error| e.context(super::Unchecked);
    args.dir.resolve().map_err(unchecked)?;
    let key = match &args.public_key {
        Some(p) => Some(
            load_public_key(p)
                .context("loading --public-key")
                .map_err(unchecked)?,
        ),
        None => None,
    };
    // A store that is not there is an error of the command line, not a broken chain: it goes
    // to stderr like every other error, and `BROKEN` stays the verdict on a store. A
    // directory with no store file in it is not a store either (`ok: 0 entries` said of any
    // directory, or of a store whose every file was deleted, proved nothing).
    let dir = &args.dir.log_dir;
    super::store_args::readable_store(dir).map_err(unchecked)?;
    let remote = if args.remote || args.remote_bytes {
        args.ship
            .to_config()
            .context("--remote")
            .map_err(unchecked)?
    } else {
        None
    };
    let (local, printed) = verify_local(dir, key.as_ref())?;
    let Some(cfg) = remote else {
        return super::verdict(local, printed);
    };
    let depth = if args.remote_bytes {
        crate::ship::verify::Depth::Bytes
    } else {
        crate::ship::verify::Depth::Metadata
    };
    let mut progress = super::store_args::progress_line("verify: remote");
    let report = crate::ship::verify::verify_remote_to(dir, &cfg, depth, &mut progress)
        .with_context(|| format!("--remote {}", crate::ship::target_name(&cfg)))
        .map_err(unchecked)?;
    if !report.missing.is_empty() {
        let printed = printed.and_then(|()| {
            report
                .missing
                .iter()
                .try_for_each(|m| outln!("BROKEN: remote {}: {}", m.key, m.problem))
        });
        return super::verdict(ExitCode::FAILURE, printed);
    }
    let printed = printed.and_then(|()| {
        outln!(
            "ok remote: {} live segments in {} with their sealed size and SHA-256{}",
            report.checked,
            crate::ship::target_name(&cfg),
            if depth == crate::ship::verify::Depth::Bytes {
                ", their bytes read back and hashed"
            } else {
                " (metadata)"
            }
        )
    });
    super::verdict(local, printed)
}

/// The local verdict, and how its printing went (a closed output does not stop the remote
/// check: its verdict is the exit code).
fn verify_local(
    dir: &std::path::Path,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> anyhow::Result<(ExitCode, anyhow::Result<()>)> {
    let mut progress = super::store_args::progress_line("verify: hashing");
    let verdict = verify_with_progress(dir, key, &mut progress);
    // The progress line erased before the verdict is printed (a broken segment ends the
    // check part way).
    drop(progress);
    Ok(match verdict {
        Ok(v) => (ExitCode::SUCCESS, outln!("ok: {}", v.summary())),
        // A file that cannot be read, or a chain not begun (a new store given a key), proves
        // nothing either way: no verdict, exit 3, never a false BROKEN.
        Err(b) if matches!(b.fault, Fault::Unreadable | Fault::Empty) => {
            return Err(anyhow::Error::new(super::Unchecked).context(b));
        }
        Err(b) => (ExitCode::FAILURE, outln!("BROKEN: {b}")),
    })
}
