//! The `xdp-audit` command line.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
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

// Parsed once at start: `run`'s many flags make its variant large, and that costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    // A flag on the command line wins over the same setting in the config file.
    #[command(args_override_self = true)]
    Run(Box<xdp_audit::cmd::run::RunArgs>),
    #[command(flatten)]
    Tool(Tool),
}

// The commands besides `run`: they keep the default action of every signal.
#[derive(Subcommand)]
enum Tool {
    /// Work on blocklist and allowlist files (`check`).
    Blocklist(xdp_audit::cmd::blocklist::BlocklistArgs),
    /// Check lists, subscribers and DHCP lease files: every bad line as FILE:LINE: reason.
    Check(xdp_audit::cmd::check::CheckArgs),
    Status(xdp_audit::cmd::status::StatusArgs),
    /// Find flows in the audit store by address, port, MAC, protocol and time.
    #[command(long_about = xdp_audit::cmd::query::LONG_ABOUT)]
    Query(xdp_audit::cmd::query::QueryArgs),
    /// Answer an SQL statement over the audit store (read-only; an access entry per run).
    #[command(long_about = xdp_audit::cmd::sql::LONG_ABOUT)]
    Sql(xdp_audit::cmd::sql::SqlArgs),
    /// Write a time window of flows to a CSV or JSON Lines file and print its SHA-256.
    #[command(long_about = xdp_audit::cmd::export::LONG_ABOUT)]
    Export(xdp_audit::cmd::export::ExportArgs),
    /// The incident report of a time window (HTML, Markdown or JSON), with its proofs.
    #[command(long_about = xdp_audit::cmd::report::LONG_ABOUT)]
    Report(xdp_audit::cmd::report::ReportArgs),
    /// Ship the sealed segments and manifest to S3 (what `run --ship` does), once or --follow.
    #[command(long_about = xdp_audit::cmd::ship::LONG_ABOUT)]
    Ship(xdp_audit::cmd::ship::ShipCmdArgs),
    /// Check that the audit store is unaltered (hash chain, segment hashes, signed head).
    #[command(long_about = xdp_audit::cmd::verify::LONG_ABOUT)]
    Verify(xdp_audit::cmd::verify::VerifyArgs),
    /// Legal holds: keep a time window's records past retention until released.
    #[command(long_about = xdp_audit::cmd::hold::LONG_ABOUT)]
    Hold(xdp_audit::cmd::hold::HoldArgs),
    /// Self-check for inspections: retention, records per hour, chain, losses, clock, disk.
    #[command(long_about = xdp_audit::cmd::compliance::LONG_ABOUT)]
    Compliance(xdp_audit::cmd::compliance::ComplianceArgs),
    /// Remove a pinned agent instance: its XDP program, links and maps.
    #[command(long_about = xdp_audit::cmd::detach::LONG_ABOUT)]
    Detach(xdp_audit::cmd::detach::DetachArgs),
    /// Create an ed25519 key pair for signing the audit chain.
    #[command(long_about = xdp_audit::cmd::keygen::LONG_ABOUT)]
    Keygen(xdp_audit::cmd::keygen::KeygenArgs),
}

fn main() -> ExitCode {
    // Before anything else: a SIGTERM while `run` starts must wait for its handler, not kill
    // the agent halfway (see `daemon::signals`).
    let held = match xdp_audit::daemon::signals::Held::hold() {
        Ok(h) => h,
        Err(e) => return fail(&anyhow::Error::from(e).context("cannot block SIGTERM at start")),
    };
    let argv = match xdp_audit::config::expand(std::env::args_os().collect(), &Cli::command()) {
        Ok(argv) => argv,
        Err(err) => return fail(&anyhow::Error::from(err)),
    };
    let cli = Cli::parse_from(argv);
    let filter = match EnvFilter::try_new(&cli.log) {
        Ok(f) => f,
        Err(e) => {
            let e = anyhow::Error::from(e).context(format!(
                "--log (or XDP_AUDIT_LOG) {:?} is not a tracing filter such as `info` or `xdp_audit=debug`",
                cli.log
            ));
            return fail(&e);
        }
    };
    // A log line stderr refuses (closed, or a full disk) is lost, not a crash: by default the
    // subscriber says so with `eprintln!`, which panics on that same stderr (exit 101 after a
    // run that did everything it was asked).
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .with_env_filter(filter);
    // The agent's log says when and where, and so does `ship --follow`'s, a service's too;
    // a one-shot command's warnings are read by the person who just ran it, as `LEVEL
    // message`.
    match &cli.command {
        Command::Run(_) => fmt.init(),
        Command::Tool(Tool::Ship(a)) if a.follow => fmt.with_target(false).init(),
        Command::Tool(_) => fmt.without_time().with_target(false).init(),
    }
    let result = match cli.command {
        Command::Run(args) => xdp_audit::cmd::run::main(*args, held),
        Command::Tool(tool) => match held.release() {
            Ok(()) => tool.main(),
            Err(e) => Err(anyhow::Error::from(e).context("cannot unblock SIGTERM")),
        },
    };
    match result {
        Ok(code) => code,
        // The reader of our output went away (`| head -1`): not a failure of the command.
        Err(err) if has::<xdp_audit::cmd::StdoutClosed>(&err) => ExitCode::SUCCESS,
        Err(err) if has::<xdp_audit::cmd::BrokenStore>(&err) => {
            fail(&err);
            ExitCode::from(xdp_audit::cmd::report::EXIT_BROKEN)
        }
        Err(err) if has::<xdp_audit::cmd::Unchecked>(&err) => {
            fail(&err);
            ExitCode::from(xdp_audit::cmd::EXIT_UNCHECKED)
        }
        Err(err) => fail(&err),
    }
}

impl Tool {
    fn main(self) -> anyhow::Result<ExitCode> {
        match self {
            Tool::Status(args) => xdp_audit::cmd::status::main(args),
            Tool::Blocklist(args) => xdp_audit::cmd::blocklist::main(args),
            Tool::Check(args) => xdp_audit::cmd::check::main(args),
            Tool::Query(args) => xdp_audit::cmd::query::main(args),
            Tool::Export(args) => xdp_audit::cmd::export::main(args),
            Tool::Sql(args) => xdp_audit::cmd::sql::main(args),
            Tool::Report(args) => xdp_audit::cmd::report::main(args),
            Tool::Verify(args) => xdp_audit::cmd::verify::main(args),
            Tool::Ship(args) => xdp_audit::cmd::ship::main(args),
            Tool::Keygen(args) => xdp_audit::cmd::keygen::main(args),
            Tool::Hold(args) => xdp_audit::cmd::hold::main(args),
            Tool::Compliance(args) => xdp_audit::cmd::compliance::main(args),
            Tool::Detach(args) => xdp_audit::cmd::detach::main(args),
        }
    }
}

/// Whether `T` is in `err`'s chain, as a cause or as context added on the way up.
fn has<T: std::error::Error + Send + Sync + 'static>(err: &anyhow::Error) -> bool {
    err.downcast_ref::<T>().is_some() || err.chain().any(|c| c.is::<T>())
}

/// Prints the error and its causes on one line, each once, and returns the failure status.
/// Our own errors never show a cause they also return as their source; some libraries' do
/// (aya's `map error: {0}`), so a cause its wrapper's text already ends with is skipped.
fn fail(err: &anyhow::Error) -> ExitCode {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    // An error quotes what it was given (a cell the engine could not cast, a list's line):
    // its invisible characters are shown escaped, not sent to the terminal (line breaks
    // aside, which some messages are made of).
    let line: Vec<String> = (line.split('\n'))
        .map(|l| xdp_audit::invisible::printable(l).into_owned())
        .collect();
    let line = line.join("\n");
    // Not eprintln!: it panics when stderr is closed (a pipe whose reader went away), and the
    // command would exit 101 as if it had crashed instead of with its own status.
    let _ = writeln!(std::io::stderr(), "xdp-audit: error: {line}");
    ExitCode::FAILURE
}
