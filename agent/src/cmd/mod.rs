//! One module per `xdp-audit` subcommand: its arguments and its `main`.

pub mod run;
