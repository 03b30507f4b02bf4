//! The `xdp-audit` command line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// XDP packet audit for Linux gateways: every flow through an interface is parsed in the
/// kernel, counted in a flow table, and written as an audit record by this agent.
#[derive(Parser)]
#[command(name = "xdp-audit", version, propagate_version = true)]
struct Cli {
    /// Diagnostics filter for stderr (tracing syntax: `info`, `debug`, `xdp_audit=trace`).
    #[arg(long, global = true, env = "XDP_AUDIT_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(xdp_audit::cmd::run::RunArgs),
    /// Work on blocklist and allowlist files (`check`).
    Blocklist(xdp_audit::cmd::blocklist::BlocklistArgs),
    Status(xdp_audit::cmd::status::StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let result = match cli.command {
        Command::Run(args) => xdp_audit::cmd::run::main(args),
        Command::Status(args) => xdp_audit::cmd::status::main(args),
        Command::Blocklist(args) => xdp_audit::cmd::blocklist::main(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xdp-audit: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
