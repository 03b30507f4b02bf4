//! One module per `xdp-audit` subcommand: its arguments and its `main`.

pub mod blocklist;
pub mod check;
pub mod compliance;
pub mod detach;
pub mod enrich_args;
pub mod export;
pub mod hold;
pub mod keygen;
pub mod query;
pub mod report;
pub mod run;
pub mod ship;
pub mod sql;
pub mod status;
pub mod store_args;
pub mod verify;
