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
    /// Install every tool the build and the tests need. Idempotent; seconds when everything is
    /// present.
    ///
    /// Installs what is missing: the apt packages listed in xtask/src/setup.rs (apt-get needs
    /// root; as another user, setup names the missing packages and stops), rust-src and
    /// clippy for the nightly toolchain, bpf-linker built against LLVM 22 (about a minute),
    /// s3s-fs (a build of about two minutes), and duckdb and pyarrow from PyPI (pinned
    /// versions; pip comes from the python3-pip package if missing). Cargo and pip install
    /// for the user running it.
    Setup,
    /// Demonstrate xdp-audit on a client - gateway - internet lab in network namespaces:
    /// real HTTP, DNS, ping and IPv6 traffic, then the audit records it produced.
    ///
    /// Needs root; runs `setup` first. Removes the namespaces and its work folder on exit, on
    /// error and on Ctrl-C.
    Lab {
        /// Keep the work folder (the audit store, lists and server logs) for a look; its path
        /// is printed at the end.
        #[arg(long)]
        keep: bool,
    },
    /// Run every check: formatting, lints (host and eBPF), unit, program and end-to-end tests,
    /// then the package test. Needs root.
    ///
    /// Runs `setup` first, which installs what is missing: apt packages, rust-src and clippy
    /// for the nightly toolchain, bpf-linker, s3s-fs (a build of about two minutes), duckdb
    /// and pyarrow from PyPI. The package step builds a .deb from the debug binary, installs
    /// it (creating the xdp-audit system user and /var/lib/xdp-audit), checks it and purges
    /// it; it refuses to run where xdp-audit is already installed. Run it on a test machine.
    Test {
        /// Arguments for the test binaries: passed as `cargo test --workspace --exclude
        /// agent-ebpf --no-fail-fast -- ARGS`, e.g. a test name filter or `--nocapture`.
        /// fmt, clippy and the package step run regardless.
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
    ///
    /// Runs `setup` first (as root, unless every apt package is already present).
    Deb {
        /// Instead: build it from the debug binary, install it on this machine (creating the
        /// xdp-audit system user), verify the unit and purge it (the package test `cargo
        /// xtask test` runs). Needs root.
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
    if !setup::is_root() {
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
    match (tests, package) {
        (Err(tests), Err(package)) => {
            eprintln!("xtask: error: the package test: {package:#}");
            Err(tests)
        }
        (tests, package) => tests.and(package),
    }
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
        Cmd::Lab { keep } => require_root("cargo xtask lab")
            .and_then(|()| setup::run())
            .and_then(|()| lab::run(keep)),
        Cmd::Test { args } => test(&args),
        Cmd::Bench { lab } => bench(lab),
        Cmd::Deb { test: false } => {
            setup::run().and_then(|()| deb::build(deb::Profile::Release).map(drop))
        }
        Cmd::Deb { test: true } => require_root("cargo xtask deb --test")
            .and_then(|()| setup::run())
            .and_then(|()| deb::check()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
