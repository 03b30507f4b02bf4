//! Subcommands of the `xdp-audit` binary, one module each, each with a
//! `main(args) -> anyhow::Result<ExitCode>`.

pub mod blocklist;
pub mod run;
