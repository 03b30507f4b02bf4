//! `xdp-audit ship`: ship a store's sealed segments and manifest to S3 without the agent.

use std::process::ExitCode;

use anyhow::Context;

use super::store_args::{readable_store, StoreDirArgs};
use crate::ship::config::ShipArgs;
use crate::ship::{ship_once, ShipOptions, Shipper};

/// The long help of `xdp-audit ship`, with examples.
pub const LONG_ABOUT: &str =
    "Uploads every live segment of the audit store that the bucket has not acknowledged yet, in
chain order, then the manifest, exactly as the agent run with --ship does (the same cursor,
ship-cursor.json in the store, and the same lock: one shipper per store). Use it for a store
whose agent ran without --ship or is stopped. Without --follow it exits once everything is
shipped (0) or at a failure (1, the error on stderr; a live segment whose file is gone or
changed, or whose key holds other bytes, is named there, after the other segments were
shipped; the bucket failing stops at once); with --follow it keeps shipping
what the agent seals, retrying failures with backoff, until SIGINT or SIGTERM.

Prints one line: `shipped: N segments (B bytes), backlog 0` and the target.

Examples:
  xdp-audit ship --log-dir /var/lib/xdp-audit --ship s3://audit/fleet \\
      --ship-endpoint http://10.0.0.5:9000 --ship-credentials /etc/xdp-audit/s3.credentials
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... xdp-audit ship --ship s3://audit/fleet --follow";

/// Arguments of `xdp-audit ship`.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub struct ShipCmdArgs {
    /// Where the store lives.
    #[command(flatten)]
    pub dir: StoreDirArgs,
    /// The bucket: --ship (required here), --ship-endpoint, --ship-region, --ship-credentials,
    /// --gateway-id.
    #[command(flatten)]
    pub ship: ShipArgs,
    /// Keep shipping what is sealed until SIGINT/SIGTERM.
    #[arg(long)]
    pub follow: bool,
}

/// Runs `xdp-audit ship`.
pub fn main(mut args: ShipCmdArgs) -> anyhow::Result<ExitCode> {
    args.dir.resolve()?;
    let dir = &args.dir.log_dir;
    readable_store(dir)?;
    let cfg = args
        .ship
        .to_config()?
        .context("--ship s3://BUCKET/PREFIX is required")?;
    let opts = ShipOptions::default();
    if !args.follow {
        let s =
            ship_once(dir, &cfg, &opts).with_context(|| format!("shipping {}", dir.display()))?;
        outln!(
            "shipped: {} segments ({} bytes), backlog {}, to {}",
            s.shipped_segments,
            s.shipped_bytes,
            s.backlog_segments,
            s.target
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let shipper = Shipper::spawn(dir, &cfg, opts).context("--ship")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })
    .context("waiting for SIGINT/SIGTERM")?;
    let s = shipper.status();
    drop(shipper);
    outln!(
        "shipped: {} segments ({} bytes), backlog {}, to {}",
        s.shipped_segments,
        s.shipped_bytes,
        s.backlog_segments,
        s.target
    )?;
    Ok(ExitCode::SUCCESS)
}
