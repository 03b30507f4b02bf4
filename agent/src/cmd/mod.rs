//! Command-line subcommands: one module per command, each with its `Args` and `main`.

pub mod run;
