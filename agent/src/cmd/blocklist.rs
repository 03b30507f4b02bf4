//! `xdp-audit blocklist ...`: work on list files without touching the kernel.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::blocklist::{check_files, CompileStats, LineStats};

/// The accepted line formats of list files, shown by `--help` (also `check`'s).
pub(crate) const FORMATS: &str = "\
One entry per line; the same format for blocklists and allowlists.

  192.0.2.1                 IPv4 address
  2001:db8::1               IPv6 address
  192.0.2.0/24              CIDR (host bits must be zero: 192.0.2.1/24 is an error)
  2001:db8::/32             IPv6 CIDR
  10.0.0.5-10.0.0.20        range, split into the fewest prefixes (`A - B` also works)
  example.com               domain: the name and every name under it
  *.example.com             the same as example.com (suffix rule)
  ||example.com^            adblock form, the same as example.com (no $options, no @@)
  bücher.example            IDNA names are converted to punycode
  0.0.0.0 ads.example t.co  hosts-file line: every name is a domain rule; the address
                            must be 0.0.0.0, 127.x.x.x, :: or ::1; local names
                            (localhost, ip6-allnodes, ...) are skipped
  port tcp 25               remote TCP port
  port udp 53-60            remote UDP port range
  port 25                   TCP and UDP
  # comment, ; comment, ! comment, and trailing `# ...` or `; ...`
  [Adblock Plus 2.0]        an adblock list's header line: passed over like a comment

Domains are lower-cased, a trailing dot is dropped, labels are letters, digits, `-`
and `_`, at most 63 bytes each, 253 in all, and at most 16 labels.
Duplicates and entries covered by a broader one are folded.
A file with any bad line is not applied by the agent (its last good version stays).

Every bad line is printed as FILE:LINE: reason; the exit status is 1 if any file has
a problem, 0 otherwise. A good rule that matches everything of its kind (0.0.0.0/0,
::/0, a bare top-level domain such as `com`) is printed as FILE:LINE: warning: ...,
and changes no exit status.";

/// Arguments of `xdp-audit blocklist`.
#[derive(Debug, clap::Args)]
pub struct BlocklistArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BlocklistCommand,
}

/// `xdp-audit blocklist` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BlocklistCommand {
    /// Check list files: print every bad line and a summary, without touching the kernel.
    #[command(after_help = FORMATS)]
    Check(CheckArgs),
}

/// Arguments of `xdp-audit blocklist check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// List files (blocklists or allowlists: the format is the same).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Runs `xdp-audit blocklist ...`.
pub fn main(args: BlocklistArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BlocklistCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut out = super::CheckOutput::new(std::io::stdout().lock());
    let failed = report(&args.files, &mut out).map_err(super::stdout_error)?;
    let code = if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    super::verdict(code, out.finish())
}

/// Checks list files and prints every bad line and a summary to `out`; returns whether any
/// file failed (what `blocklist check` and `check` exit 1 on).
pub fn report(files: &[PathBuf], out: &mut impl Write) -> std::io::Result<bool> {
    let (checks, total) = check_files(files);
    let mut failed = false;
    for c in &checks {
        let path = c.path.display();
        match &c.result {
            Err(diagnostics) => {
                failed = true;
                for d in diagnostics {
                    writeln!(out, "{d}")?;
                }
                let bad_lines = diagnostics.iter().filter(|d| d.line.is_some()).count();
                if bad_lines > 0 {
                    writeln!(
                        out,
                        "{path}: {bad_lines} bad line{}; the file would not be applied",
                        if bad_lines == 1 { "" } else { "s" }
                    )?;
                }
            }
            Ok((lines, stats)) => {
                for w in &c.sweeping {
                    writeln!(out, "{path}:{}: warning: {}", w.line, w.what)?;
                }
                if c.empty {
                    writeln!(
                        out,
                        "{path}: warning: the file is empty (0 bytes): an agent whose copy of it \
                         held rules keeps that copy in force and does not apply this one (a file \
                         cut to nothing by a failed write); to empty a list on purpose, leave a \
                         comment line in it"
                    )?;
                }
                writeln!(out, "{path}: ok")?;
                write_summary(out, Some(lines), stats)?;
            }
        }
    }
    let good = checks.iter().filter(|c| c.result.is_ok()).count();
    if good > 1 {
        writeln!(out, "all {good} good files as one list:")?;
        write_summary(out, None, &total)?;
    }
    Ok(failed)
}

fn write_summary(
    out: &mut impl Write,
    lines: Option<&LineStats>,
    s: &CompileStats,
) -> std::io::Result<()> {
    if let Some(l) = lines {
        write!(
            out,
            "  lines {}: {} rules, {} comments, {} blank, {} hosts boilerplate",
            l.lines, l.rules, l.comments, l.blank, l.boilerplate
        )?;
        if l.cosmetic != 0 {
            write!(
                out,
                ", {} adblock cosmetic rules skipped (page rules, nothing at the network)",
                l.cosmetic
            )?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "  v4 exact {}, v4 prefixes {}, v6 exact {}, v6 prefixes {}, domains {}, port rules {} ({} ports)",
        s.v4_exact, s.v4_prefix, s.v6_exact, s.v6_prefix, s.domains, s.port_rules, s.port_slots
    )?;
    writeln!(
        out,
        "  folded {}: {} duplicates, {} covered by a broader entry",
        s.folded(),
        s.duplicates,
        s.covered
    )
}
