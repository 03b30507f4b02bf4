//! Placeholder for `xdp-audit run`: the run loop lives on the lead's branch and replaces this
//! file on merge. It exists so this branch's binary compiles.

use std::process::ExitCode;

/// Arguments of `xdp-audit run` (none on this branch).
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Always fails: the run loop is not on this branch.
pub fn main(_: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`run` is not on this branch")
}
