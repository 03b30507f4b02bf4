//! A configured lease file (`--dhcp-leases FILE`, format detected or named): reading it with
//! its problems as `FILE:LINE: reason`, and the summary `check` prints.
//!
//! Wiring: read a file off the enrich task (on start, on SIGHUP and when it changes), then
//! hand [`LeaseRead::leases`] to [`super::bindings::Bindings::apply_read`] with the file's
//! index, how its format ends a lease ([`LeaseFormat::ending`] of [`LeaseRead::format`]) and
//! the time of the read. A file that cannot be read or whose format cannot be told yields an
//! error and must not be applied: applying nothing would end every binding of a dnsmasq file
//! (a Kea file ends none by absence: its cleanup leaves out every lease not changed since). Both
//! servers keep their file open and rewrite (dnsmasq) or append to (Kea) it in place, so a
//! watcher must react to modifications, not only to a close or a rename. A read is taken only
//! when the file did not change while it was read ([`read_steady`]): dnsmasq empties its file
//! and then writes it again, and a read in between would end every binding the file holds.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::enrich::source::FileProblem;
use crate::store::fsutil::{read_input, InputError, TABLE_MAX};

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
    Read(#[source] InputError),
    /// The file changed while it was read, at every attempt.
    #[error("changed while it was read, {attempts} times in a row (its server is rewriting it): not applied this time; the bindings learned from it so far stay, and the next change or poll reads it again")]
    Unsteady {
        /// Reads tried.
        attempts: u32,
    },
}

/// What a file looked like at one moment: a write changes its size or modification time, a
/// replacement its inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

impl Stamp {
    /// The file's stamp now (through a symbolic link).
    pub fn of(path: &Path) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// An empty file written to within `settle` ([`SETTLE`]): dnsmasq truncates its file
    /// before it writes the leases again, so this may be the moment between the two.
    fn freshly_emptied(&self, settle: Duration) -> bool {
        self.len == 0
            && self
                .modified
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age < settle)
    }
}

/// Reads of a file that keeps changing tried before it is given up until its next change.
const ATTEMPTS: u32 = 5;
/// The wait between two reads of a file that changed.
const RETRY_WAIT: Duration = Duration::from_millis(50);
/// How long an emptied file must stay empty to be taken as empty.
const SETTLE: Duration = Duration::from_millis(100);

/// The bytes of a file that did not change while `read` read them: its [`Stamp`] the same
/// before and after, and not an empty file written to a moment ago. Otherwise the read is
/// discarded, `wait` called, and the file read again, [`ATTEMPTS`] times at most: a torn read
/// is never returned.
fn read_steady(
    path: &Path,
    settle: Duration,
    mut read: impl FnMut(&Path) -> Result<Vec<u8>, InputError>,
    mut wait: impl FnMut(),
) -> Result<Vec<u8>, LeaseProblem> {
    let stamp = |p: &Path| Stamp::of(p).map_err(|e| LeaseProblem::Read(InputError::Io(e)));
    for attempt in 1..=ATTEMPTS {
        let before = stamp(path)?;
        let bytes = read(path).map_err(LeaseProblem::Read)?;
        if stamp(path)? == before && !before.freshly_emptied(settle) {
            return Ok(bytes);
        }
        if attempt < ATTEMPTS {
            wait();
        }
    }
    Err(LeaseProblem::Unsteady { attempts: ATTEMPTS })
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
    /// The format it was read in (named or told from the content); `None` for an empty file
    /// whose format was not named.
    pub format: Option<LeaseFormat>,
}

impl LeaseFile {
    /// Reads and parses the file; an error means "do not apply".
    pub fn read(&self) -> Result<LeaseRead, LeaseDiagnostic> {
        let problem = |error| LeaseDiagnostic {
            path: self.path.clone(),
            line: None,
            error,
        };
        let bytes = read_steady(
            &self.path,
            SETTLE,
            |p| read_input(p, TABLE_MAX),
            || std::thread::sleep(RETRY_WAIT),
        )
        .map_err(problem)?;
        let parsed = parse(&bytes, self.format).map_err(|e| problem(LeaseProblem::File(e)))?;
        if let (true, Some(first)) = (parsed.leases.is_empty(), parsed.bad.first()) {
            return Err(problem(LeaseProblem::File(LeaseFileError::NoLease {
                skipped: parsed.bad.len(),
                first: first.to_string(),
            })));
        }
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
            format: parsed.format,
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

        let tmp = crate::blocklist::tests::TempDir::new("lease-check");
        let bad = tmp.0.join("bad.leases");
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

    /// A file of lines none of which is a lease (zeros after a power cut) is refused: read
    /// as a file with no leases, it ended every binding it held.
    #[test]
    fn a_file_without_one_lease_among_its_lines_is_refused() {
        let dir = crate::blocklist::tests::TempDir::new("lease-no-lease");
        let path = dir.0.join("dnsmasq.leases");
        std::fs::write(&path, "\0\0\0\0\n\0\0\n").expect("write");
        let f = LeaseFile {
            path: path.clone(),
            format: Some(LeaseFormat::Dnsmasq),
        };
        let e = f.read().expect_err("refused");
        assert!(
            matches!(
                e.error,
                LeaseProblem::File(LeaseFileError::NoLease { skipped: 2, .. })
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("bindings learned from it so far stay"),
            "{e}"
        );
        // One good line among bad ones is read (the bad ones skipped and named).
        std::fs::write(&path, "\0\0\n100 aa:bb:cc:dd:ee:01 10.0.0.1 h *\n").expect("write");
        let r = f.read().expect("read");
        assert_eq!((r.leases.len(), r.skipped.len()), (1, 1));
    }

    /// A read during which the file changed is discarded and the file read again: the
    /// reader here rewrites the file after reading it, as a server writing at that moment.
    #[test]
    fn a_read_the_file_changed_under_is_never_returned() {
        let dir = crate::blocklist::tests::TempDir::new("lease-steady");
        let path = dir.0.join("dnsmasq.leases");
        let full = "100 aa:bb:cc:dd:ee:01 10.0.0.1 h *\n100 aa:bb:cc:dd:ee:02 10.0.0.2 g *\n";
        std::fs::write(&path, &full[..20]).expect("write");
        let mut reads = 0;
        let got = read_steady(
            &path,
            SETTLE,
            |p| {
                reads += 1;
                let bytes = read_input(p, TABLE_MAX);
                if reads == 1 {
                    std::fs::write(p, full).expect("rewrite");
                }
                bytes
            },
            || {},
        )
        .expect("the second read is steady");
        assert_eq!((reads, got.as_slice()), (2, full.as_bytes()));

        // A file that changes at every read is given up, not returned torn.
        let mut n = 0u32;
        let r = read_steady(
            &path,
            SETTLE,
            |p| {
                n += 1;
                let bytes = read_input(p, TABLE_MAX);
                std::fs::write(p, "x".repeat(n as usize)).expect("rewrite");
                bytes
            },
            || {},
        );
        assert!(
            matches!(r, Err(LeaseProblem::Unsteady { attempts: ATTEMPTS })),
            "{r:?}"
        );
        assert_eq!(n, ATTEMPTS);
    }

    /// dnsmasq empties its file, then writes the leases: a read between the two sees an
    /// empty file that does not change while it is read. Taken, it ended every binding.
    #[test]
    fn a_file_emptied_a_moment_ago_is_read_again_and_one_long_empty_is_empty() {
        let dir = crate::blocklist::tests::TempDir::new("lease-emptied");
        let path = dir.0.join("dnsmasq.leases");
        let full = "100 aa:bb:cc:dd:ee:01 10.0.0.1 h *\n";
        std::fs::write(&path, "").expect("truncate");
        let mut waits = 0;
        // An hour to settle: however long this test is held up, the file is freshly emptied.
        let got = read_steady(
            &path,
            Duration::from_secs(3600),
            |p| read_input(p, TABLE_MAX),
            || {
                // The server's write lands while the reader waits.
                waits += 1;
                std::fs::write(&path, full).expect("write");
            },
        )
        .expect("read");
        assert_eq!((waits, got.as_slice()), (1, full.as_bytes()));

        // A file empty for a while is an empty file: read at once.
        std::fs::write(&path, "").expect("truncate");
        let old = SystemTime::now() - Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(old))
            .expect("set mtime");
        let got = read_steady(
            &path,
            SETTLE,
            |p| read_input(p, TABLE_MAX),
            || panic!("no wait"),
        );
        assert_eq!(got.expect("read"), b"");
    }
}
