//! A configured lease file (`--dhcp-leases FILE`, format detected or named): reading it with
//! its problems as `FILE:LINE: reason`, and the summary `check` prints.
//!
//! Wiring: read a file off the enrich task (on start, on SIGHUP and when it changes), then
//! hand [`LeaseRead::leases`] to [`super::bindings::Bindings::apply_file`] with the file's index
//! and the time of the read. A file that cannot be read or whose format cannot be told yields
//! an error and must not be applied: applying nothing would end every binding it holds. Both
//! servers keep their file open and rewrite (dnsmasq) or append to (Kea) it in place, so a
//! watcher must react to modifications, not only to a close or a rename; a read that catches
//! dnsmasq mid-rewrite misses some leases, which end and come back (from the next read on) at
//! the next change.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::enrich::source::FileProblem;
use crate::store::fsutil::{read_input, TABLE_MAX};

use super::{parse, Lease, LeaseFileError, LeaseFormat, LeaseLineError, LeaseState};

/// What is wrong with a lease file or one of its lines.
#[derive(Debug, thiserror::Error)]
pub enum LeaseProblem {
    /// A line skipped.
    #[error(transparent)]
    Line(#[from] LeaseLineError),
    /// The whole file refused.
    #[error(transparent)]
    File(#[from] LeaseFileError),
    /// The file could not be read.
    #[error("cannot read: {0}; the bindings learned from it so far stay")]
    Read(#[source] crate::store::fsutil::InputError),
}

/// One problem, displayed `FILE:LINE: reason`.
pub type LeaseDiagnostic = FileProblem<LeaseProblem>;

/// A configured lease file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its format, or `None` to tell it from the content at each read.
    pub format: Option<LeaseFormat>,
}

/// A lease file read: its leases and the lines skipped.
#[derive(Debug, Default)]
pub struct LeaseRead {
    /// The leases, in file order.
    pub leases: Vec<Lease>,
    /// Lines skipped, as `FILE:LINE: reason`.
    pub skipped: Vec<LeaseDiagnostic>,
    /// Delegated prefixes (Kea IA_PD rows), not attributed.
    pub prefixes: u32,
}

impl LeaseFile {
    /// Reads and parses the file; an error means "do not apply".
    pub fn read(&self) -> Result<LeaseRead, LeaseDiagnostic> {
        let problem = |error| LeaseDiagnostic {
            path: self.path.clone(),
            line: None,
            error,
        };
        let bytes =
            read_input(&self.path, TABLE_MAX).map_err(|e| problem(LeaseProblem::Read(e)))?;
        let parsed = parse(&bytes, self.format).map_err(|e| problem(LeaseProblem::File(e)))?;
        Ok(LeaseRead {
            leases: parsed.leases,
            skipped: parsed
                .bad
                .into_iter()
                .map(|b| LeaseDiagnostic {
                    path: self.path.clone(),
                    line: Some(b.line),
                    error: b.error.into(),
                })
                .collect(),
            prefixes: parsed.skipped_prefixes,
        })
    }
}

/// What `check` says about a lease file.
#[derive(Debug)]
pub struct LeaseCheck {
    /// The file.
    pub path: PathBuf,
    /// The read, or why the file would not be applied.
    pub result: Result<LeaseRead, LeaseDiagnostic>,
}

impl LeaseCheck {
    /// Whether `check` should exit 1: the file is refused or has a bad line.
    pub fn failed(&self) -> bool {
        self.result.as_ref().map_or(true, |r| !r.skipped.is_empty())
    }
}

impl fmt::Display for LeaseCheck {
    /// Every problem, then a summary: rows, addresses by family, bound and gone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let read = match &self.result {
            Err(d) => return write!(f, "{d}"),
            Ok(r) => r,
        };
        for d in &read.skipped {
            writeln!(f, "{d}")?;
        }
        let mut last = std::collections::HashMap::new();
        for l in &read.leases {
            last.insert(l.ip, l.state);
        }
        let bound = last.values().filter(|s| **s == LeaseState::Bound).count();
        let v6 = last.keys().filter(|ip| ip.is_ipv6()).count();
        let verdict = if read.skipped.is_empty() {
            "ok".to_string()
        } else {
            format!(
                "{} bad lines skipped (the rest applies)",
                read.skipped.len()
            )
        };
        write!(
            f,
            "{}: {verdict}\n  rows {}: {} addresses (IPv4 {}, IPv6 {}), {bound} bound, {} released or declined, {} delegated prefixes not attributed",
            self.path.display(),
            read.leases.len(),
            last.len(),
            last.len() - v6,
            v6,
            last.len() - bound,
            read.prefixes
        )
    }
}

/// Checks one lease file (`xdp-audit check`).
pub fn check_file(path: &Path, format: Option<LeaseFormat>) -> LeaseCheck {
    let file = LeaseFile {
        path: path.to_owned(),
        format,
    };
    LeaseCheck {
        path: path.to_owned(),
        result: file.read(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_summarises_the_fixtures_and_reports_bad_lines() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/idents");
        let c = check_file(&dir.join("kea-leases4.csv"), None);
        assert!(!c.failed());
        assert!(
            c.to_string().ends_with(": ok\n  rows 4: 2 addresses (IPv4 2, IPv6 0), 1 bound, 1 released or declined, 0 delegated prefixes not attributed"),
            "{c}"
        );
        let c = check_file(&dir.join("dnsmasq.leases"), Some(LeaseFormat::Dnsmasq));
        assert!(
            c.to_string()
                .contains("2 addresses (IPv4 1, IPv6 1), 2 bound"),
            "{c}"
        );

        let bad =
            std::env::temp_dir().join(format!("xdp-audit-lease-check-{}", std::process::id()));
        std::fs::write(
            &bad,
            "100 aa:bb:cc:dd:ee:01 10.0.0.1 h *\n100 aa:bb:cc:dd:ee:01 10.0.0.x h *\n",
        )
        .expect("write");
        let c = check_file(&bad, None);
        assert!(c.failed());
        let shown = c.to_string();
        assert!(
            shown.starts_with(&format!(
                "{}:2: address: `10.0.0.x` is not an IP address\n",
                bad.display()
            )),
            "{shown}"
        );
        assert!(
            shown.contains("1 bad lines skipped (the rest applies)"),
            "{shown}"
        );
        std::fs::write(&bad, "<html>\n").expect("write");
        let c = check_file(&bad, None);
        assert!(c.failed());
        assert!(
            c.to_string()
                .contains(": not a dnsmasq leases file or a Kea memfile CSV"),
            "{c}"
        );
        std::fs::remove_file(&bad).expect("remove");
        let c = check_file(&bad, None);
        assert!(c.to_string().contains(": cannot read: "), "{c}");
    }
}
