//! Placeholder for the lead's `run` command; replaced on merge.

use std::process::ExitCode;

/// Arguments of `xdp-audit run` (placeholder on the `store` branch).
#[derive(clap::Args, Debug)]
pub struct RunArgs {}

/// Placeholder: `run` is not on this branch.
pub fn main(_: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`run` is not on this branch")
}
