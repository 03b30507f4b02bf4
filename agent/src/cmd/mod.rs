//! Command-line subcommands: one module per command, each with its `Args` and `main`.

pub mod export;
pub mod keygen;
pub mod query;
pub mod run;
pub mod store_args;
pub mod verify;
