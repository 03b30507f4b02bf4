//! `xdp-audit check`: one command for every file the agent reads (block and allow lists,
//! subscribers files, DHCP lease files), with each file's kind told from its content or named.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::enrich::leases::{self, LeaseFormat};
use crate::enrich::source::numbered_lines;
use crate::enrich::subscribers::parse::is_header;
use crate::enrich::subscribers::set as subscribers;
use crate::store::fsutil::{read_input, InputError, TABLE_MAX};

/// What a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Told from the content: a CSV whose header (the first line neither blank nor a `#`
    /// comment) names subscribers columns (`match`, `account`, ... in any order) is a
    /// subscribers file, one that starts `address,` or lines that start with an expiry time
    /// are DHCP leases (Kea, dnsmasq), anything else a list.
    Auto,
    /// A block or allow list.
    List,
    /// A subscribers file.
    Subscribers,
    /// A dnsmasq leases file.
    Dnsmasq,
    /// A Kea memfile lease CSV.
    Kea,
}

/// What `--help` says after the options: the list formats, and where the others are told.
fn after_help() -> String {
    format!(
        "List files (--blocklist, --allowlist):\n{}\n\n\
         Subscribers files (--subscribers): CSV with a header naming `match` (an address,\n\
         CIDR or MAC) and `account`, and optional columns (README: Attribution).\n\
         DHCP lease files (--dhcp-leases): dnsmasq's leases file, or Kea's memfile CSV.",
        super::blocklist::FORMATS
    )
}

/// Check files without an agent: print every bad line as `FILE:LINE: reason` and a summary
/// per file; exit 1 if any file has a bad line or cannot be read.
///
/// Examples:
///   xdp-audit check /etc/xdp-audit/block.list /etc/xdp-audit/subscribers.csv
///   xdp-audit check --kind dnsmasq /var/lib/misc/dnsmasq.leases
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment, after_help = after_help())]
pub struct CheckArgs {
    /// The files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// What the files are (all of them); `auto` tells each from its content.
    #[arg(long, value_enum, default_value_t = Kind::Auto)]
    pub kind: Kind,
}

/// Tells a file's kind from its first line that is not blank, by the agent's own readers:
/// the subscribers header parser on the first line that is not a comment, then the lease
/// format detection.
pub fn detect(bytes: &[u8]) -> Kind {
    let first = numbered_lines(bytes)
        .filter_map(|(_, text)| text.ok().map(str::trim))
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if first.is_some_and(is_header) {
        return Kind::Subscribers;
    }
    match LeaseFormat::detect(bytes) {
        Some(LeaseFormat::Kea) => Kind::Kea,
        Some(LeaseFormat::Dnsmasq) => Kind::Dnsmasq,
        None => Kind::List,
    }
}

fn kind_of(path: &Path, asked: Kind) -> Result<Kind, InputError> {
    if asked != Kind::Auto {
        return Ok(asked);
    }
    read_input(path, TABLE_MAX).map(|b| detect(&b))
}

/// Runs `xdp-audit check`.
pub fn main(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut out = super::CheckOutput::new(std::io::stdout().lock());
    let failed = report(&args, &mut out).map_err(super::stdout_error)?;
    let code = if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    super::verdict(code, out.finish())
}

/// Checks every file, printing to `out`; whether any failed.
pub fn report(args: &CheckArgs, out: &mut impl std::io::Write) -> std::io::Result<bool> {
    let mut failed = false;
    let mut lists = Vec::new();
    for path in &args.files {
        match kind_of(path, args.kind) {
            Err(e) => {
                failed = true;
                writeln!(out, "{}: cannot read: {e}", path.display())?;
            }
            Ok(Kind::List | Kind::Auto) => lists.push(path.clone()),
            Ok(Kind::Subscribers) => {
                let c = subscribers::check_file(path);
                failed |= c.result.is_err();
                writeln!(out, "{c}")?;
            }
            Ok(k @ (Kind::Dnsmasq | Kind::Kea)) => {
                let format = if k == Kind::Kea {
                    LeaseFormat::Kea
                } else {
                    LeaseFormat::Dnsmasq
                };
                let c = leases::file::check_file(path, Some(format));
                failed |= c.failed();
                writeln!(out, "{c}")?;
            }
        }
    }
    if !lists.is_empty() {
        failed |= super::blocklist::report(&lists, out)?;
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::tests::TempDir;

    #[test]
    fn kinds_are_told_from_the_first_line() {
        assert_eq!(
            detect(b"\xef\xbb\xbfMatch,Account\n10.0.0.1,a\n"),
            Kind::Subscribers
        );
        assert_eq!(
            detect(b"\n1767225600 02:00:00:00:00:01 10.0.0.5 laptop *\n"),
            Kind::Dnsmasq
        );
        assert_eq!(detect(b"address,hwaddr,client_id\n"), Kind::Kea);
        assert_eq!(detect(b"\xef\xbb\xbfaddress,hwaddr,client_id\n"), Kind::Kea);
        // The agent's header parser decides: columns in any order, quoted, or separated by
        // `;` (which the agent refuses; this used to be checked as a list, and passed).
        for header in [
            &b"account,match\n10.0.0.1,a\n"[..],
            b"\"match\",\"account\"\n",
            b"# people\n\n Name , Match, account\n",
            b"match;account\n10.0.0.1;a\n",
        ] {
            assert_eq!(
                detect(header),
                Kind::Subscribers,
                "{}",
                String::from_utf8_lossy(header)
            );
        }
        // A list whose first entry is a name that a column shares stays a list.
        assert_eq!(detect(b"name\nmatch.example\n"), Kind::List);
        assert_eq!(
            detect(b"# blocked\n192.0.2.0/24\nexample.com\n"),
            Kind::List
        );
    }

    #[test]
    fn every_kind_reports_bad_lines_and_fails() {
        let dir = TempDir::new("check-kinds");
        let subs = dir.0.join("subs.csv");
        std::fs::write(&subs, "match,account\n10.0.0.1,alice\nnot-an-address,bob\n")
            .expect("write subscribers");
        let list = dir.0.join("block.list");
        std::fs::write(&list, "192.0.2.0/24\n").expect("write list");
        let run = |files: Vec<PathBuf>| {
            let mut out = Vec::new();
            let failed = report(
                &CheckArgs {
                    files,
                    kind: Kind::Auto,
                },
                &mut out,
            )
            .expect("write to memory");
            (failed, String::from_utf8_lossy(&out).into_owned())
        };
        let (failed, text) = run(vec![subs.clone(), list.clone()]);
        assert!(failed, "a bad subscribers line must fail: {text}");
        assert!(
            text.contains(&format!("{}:3:", subs.display())),
            "names FILE:LINE: {text}"
        );
        assert!(text.contains(&format!("{}: ok", list.display())), "{text}");
        let (failed, text) = run(vec![list]);
        assert!(!failed, "{text}");
        let (failed, text) = run(vec![dir.0.join("missing.csv")]);
        assert!(failed && text.contains("cannot read"), "{text}");
        // What the agent refuses, check refuses: a `;`-separated export passed as a list.
        let semi = dir.0.join("semi.csv");
        std::fs::write(&semi, "match;account\n10.0.0.1;alice\n").expect("write");
        let (failed, text) = run(vec![semi.clone()]);
        assert!(
            failed && text.contains(&format!("{}:1: the header separates", semi.display())),
            "{text}"
        );
        // And what it takes, check takes: columns in another order, quoted.
        let reordered = dir.0.join("reordered.csv");
        std::fs::write(&reordered, "\"account\",\"match\"\nalice,10.0.0.1\n").expect("write");
        let (failed, text) = run(vec![reordered]);
        assert!(!failed, "{text}");
    }
}
