//! Installs what the build and tests need on Debian 12, skipping whatever is present.

use std::process::Command;

use anyhow::{bail, Context as _};

/// Debian packages, sorted: LLVM 22 for bpf-linker (from bookworm-security), and the tools the
/// lab and the tests drive. Tests that run one of these name the package when it is missing.
const APT: &[&str] = &[
    "bind9-dnsutils",   // dig: DNS lookups in the lab
    "adduser",          // the package test: postinst creates the xdp-audit user
    "binutils",         // strip, for cargo xtask deb
    "bpftool",          // inspecting programs and maps
    "busybox",          // udhcpc: the lab's DHCP client
    "chromium",         // headless screenshots of the HTML report
    "conntrack",        // conntrack -L: the NAT tests' oracle
    "curl",             // HTTP and HTTPS clients in the lab
    "dnsmasq-base",     // DNS and DHCP server in the lab
    "ethtool",          // offloads off on the lab's veths
    "iproute2",         // ip netns, veth
    "iputils-ping",     // ICMP in the lab
    "isc-dhcp-client",  // dhclient: the second DHCP client
    "kea-dhcp4-server", // the second DHCP server (memfile leases)
    "libzstd-dev",      // bpf-linker's LLVM link
    "llvm-22-dev",      // bpf-linker
    "nftables",         // masquerade on the lab gateway
    "openssl",          // s_server and test certificates
    "prometheus",       // promtool check metrics: the metrics endpoint's test
    "python3",          // http.server; DuckDB reads segments
    "rsyslog",          // the syslog sink's tests: a real RFC 5424 / RFC 6587 receiver
    "rsyslog-gnutls",   // rsyslog's TLS listener for the syslog TLS test
    "systemd",          // systemd-analyze verify and security for the unit
    "tcpdump",          // captures compared with the audit log
    "tshark",           // the refusal test: checksums of the answers XDP sends
    "util-linux",       // setpriv, mount: privilege and disk-full tests
    "valgrind",         // callgrind: the benches' instruction counts (alerts, event_path)
    "zlib1g-dev",       // bpf-linker's LLVM link
];
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The S3 server the shipping tests run (later releases need a newer rustc than ours).
const S3S_FS_VERSION: &str = "0.14.1";
/// The versions the tests were run with, installed where the packages are missing (one
/// already installed is taken whatever its version).
const DUCKDB_VERSION: &str = "2.0.1";
const PYARROW_VERSION: &str = "26.0.1";
/// The machine's preinstalled nightly (no other toolchain can be fetched here, so no date).
const EBPF_TOOLCHAIN: &str = "nightly";
/// What the eBPF build needs of it: rust-src for `-Z build-std`, clippy for [`clippy_ebpf`].
const EBPF_COMPONENTS: &[&str] = &["rust-src", "clippy"];

fn run_loud(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("spawn {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn apt_missing() -> Vec<&'static str> {
    APT.iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

/// Whether this process runs as root (apt-get, and the commands that load XDP programs).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Installs Debian `packages`. apt-get needs root: anyone else is told what to install rather
/// than shown apt's lock-file error.
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let list = packages.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages: {list}; installing them needs root: run this command as \
             root, or `apt-get install {list}` first"
        );
    }
    eprintln!("setup: installing {list}");
    run_loud(Command::new("apt-get").args(["update", "-q"]))?;
    run_loud(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages),
    )
}

fn apt() -> anyhow::Result<()> {
    let missing = apt_missing();
    if missing.is_empty() {
        eprintln!("setup: {} apt packages present", APT.len());
        return Ok(());
    }
    apt_install(&missing)
}

/// The nightly toolchain and [`EBPF_COMPONENTS`], adding only what is missing.
fn ebpf_toolchain() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            EBPF_TOOLCHAIN,
        ])
        .output()
        .context("run rustup (is rustup installed?)")?;
    let missing: Vec<&str> = if installed.status.success() {
        // Lines are component names, with the target appended to most (`clippy-x86_64-...`).
        let text = String::from_utf8_lossy(&installed.stdout);
        EBPF_COMPONENTS
            .iter()
            .copied()
            .filter(|c| !text.lines().any(|line| line.starts_with(c)))
            .collect()
    } else {
        eprintln!(
            "setup: installing the {EBPF_TOOLCHAIN} toolchain (the eBPF crate needs -Z build-std)"
        );
        run_loud(Command::new("rustup").args([
            "toolchain",
            "install",
            EBPF_TOOLCHAIN,
            "--profile",
            "minimal",
        ]))?;
        EBPF_COMPONENTS.to_vec()
    };
    if missing.is_empty() {
        eprintln!(
            "setup: {EBPF_TOOLCHAIN} toolchain with {} present",
            EBPF_COMPONENTS.join(" and ")
        );
        return Ok(());
    }
    eprintln!(
        "setup: adding {} to {EBPF_TOOLCHAIN}",
        missing.join(" and ")
    );
    run_loud(
        Command::new("rustup")
            .args(["component", "add"])
            .args(&missing)
            .args(["--toolchain", EBPF_TOOLCHAIN]),
    )
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)) {
        eprintln!("setup: bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    run_loud(
        Command::new("cargo")
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .args([
                "install",
                "--locked",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            ])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )
}

/// The DuckDB and pyarrow Python packages: tests prove segments are readable by real engines,
/// the fleet test reads shipped segments from the S3 server with pyarrow's dataset API, and
/// both run the README's fleet examples.
fn python_packages() -> anyhow::Result<()> {
    let python = |args: &[&str]| {
        Command::new("python3")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python(&["-c", "import duckdb, pyarrow.dataset, pyarrow.fs"]) {
        eprintln!("setup: python duckdb and pyarrow present");
        return Ok(());
    }
    if !python(&["-m", "pip", "--version"]) {
        apt_install(&["python3-pip"])?;
    }
    eprintln!("setup: installing duckdb {DUCKDB_VERSION} and pyarrow {PYARROW_VERSION} from PyPI");
    run_loud(
        Command::new("python3")
            // Debian 12 marks its Python externally managed (PEP 668) and pip refuses to
            // install into it without this; older pips ignore the variable.
            .env("PIP_BREAK_SYSTEM_PACKAGES", "1")
            .args(["-m", "pip", "install", "--quiet"])
            .arg(format!("duckdb=={DUCKDB_VERSION}"))
            .arg(format!("pyarrow=={PYARROW_VERSION}")),
    )
}

/// `s3s-fs`, a real S3 server over a folder, for the shipping tests and benchmark.
fn s3s_fs() -> anyhow::Result<()> {
    let version = Command::new("s3s-fs").arg("--version").output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(S3S_FS_VERSION)) {
        eprintln!("setup: s3s-fs {S3S_FS_VERSION} present");
        return Ok(());
    }
    eprintln!("setup: building s3s-fs {S3S_FS_VERSION} (about two minutes)");
    run_loud(Command::new("cargo").args([
        "install",
        "--locked",
        "s3s-fs",
        "--version",
        S3S_FS_VERSION,
        "--features",
        "binary",
    ]))
}

/// Everything, in dependency order.
pub fn run() -> anyhow::Result<()> {
    apt()?;
    ebpf_toolchain()?;
    bpf_linker()?;
    python_packages()?;
    s3s_fs()
}

/// Lints the eBPF crate for its own target.
pub fn clippy_ebpf() -> anyhow::Result<()> {
    eprintln!("xtask: cargo +{EBPF_TOOLCHAIN} clippy -p agent-ebpf (bpfel-unknown-none)");
    run_loud(
        Command::new("rustup")
            .args(["run", EBPF_TOOLCHAIN, "cargo", "clippy", "-p", "agent-ebpf"])
            .args([
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
            ])
            .args(["--", "-D", "warnings"])
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER"),
    )
}
