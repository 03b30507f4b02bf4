//! One module per `xdp-audit` subcommand: its arguments and its `main`.

pub mod blocklist;
pub mod run;
pub mod status;
