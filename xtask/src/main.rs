//! `cargo xtask`: everything around the code. Each command installs what it needs first
//! (`setup`), so a fresh Debian 12 machine needs nothing but this repository and rustup.

mod deb;
mod lab;
mod setup;

use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

/// Build, lab, test and benchmark helpers for xdp-audit.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install every tool the build and the tests need (apt packages, rust-src, bpf-linker).
    /// Idempotent; seconds when everything is present.
    Setup,
    /// Demonstrate xdp-audit on a client - gateway - internet lab in network namespaces:
    /// real HTTP, DNS, ping and IPv6 traffic, then the audit records it produced.
    Lab,
    /// Run every check: formatting, lints (host and eBPF), unit, program and end-to-end tests.
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Print the performance figures (ns/packet and the rest), as ratios to baselines
    /// measured in the same run.
    Bench {
        /// Instead: the netns lab with real frames (generator, gateway with no program, the
        /// exact-match reference, nftables, xdp-audit) and the 1,000,000-flow burst.
        #[arg(long)]
        lab: bool,
    },
    /// Build the Debian package (release binary, hardened systemd unit, default config,
    /// empty list files, the xdp-audit user and its store directory) into target/deb/.
    Deb {
        /// Instead: build it from the debug binary, install it on this machine, verify the
        /// unit and purge it (the package test `cargo xtask test` runs).
        #[arg(long)]
        test: bool,
    },
}

/// Runs a cargo command in the workspace, echoing it.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .status()
        .context("spawn cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} loads XDP programs and creates network namespaces: run it as root");
    }
    Ok(())
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    require_root("cargo xtask test")?;
    setup::run()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "agent-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    setup::clippy_ebpf()?;
    let mut args = vec![
        "test",
        "--workspace",
        "--exclude",
        "agent-ebpf",
        "--no-fail-fast",
    ];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    let tests = cargo(&args);
    // Built from the debug binary the tests use (a release build would double CI time); run
    // also when a test failed, so one run reports both.
    let package = deb::check();
    tests?;
    package
}

fn bench(lab: bool) -> anyhow::Result<()> {
    require_root("cargo xtask bench")?;
    setup::run()?;
    if lab {
        // The lab bench runs only when asked (it takes minutes).
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "-p", "xdp-audit", "--bench", "lab"])
            .env("XDP_AUDIT_BENCH_LAB", "1")
            .status()
            .context("spawn cargo bench --bench lab")?;
        if !status.success() {
            bail!("cargo bench --bench lab failed ({status})");
        }
        return Ok(());
    }
    cargo(&["bench", "-p", "xdp-audit"])
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup::run(),
        Cmd::Lab => require_root("cargo xtask lab")
            .and_then(|()| setup::run())
            .and_then(|()| lab::run()),
        Cmd::Test { args } => test(&args),
        Cmd::Bench { lab } => bench(lab),
        Cmd::Deb { test: false } => deb::build(deb::Profile::Release).map(drop),
        Cmd::Deb { test: true } => {
            require_root("cargo xtask deb --test").and_then(|()| deb::check())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
