//! The lawful-access trail: every command that reads the store's records (`query`, `export`,
//! `hold list`, `report`, and `sql` when it comes) records itself with one call,
//! [`record`], as an `access` line of the operator log (`oplog`): who, when, the command and
//! its filter as canonical text, the rows returned and, for a file, its SHA-256.
//!
//! Recording never stands in the way of the answer: the line is appended after the command
//! has run, without the writer's lock (the agent keeps sealing meanwhile), and where the store
//! cannot be written (a read-only mount, a user without write access to the log) the command
//! still answers and says on stderr that this access was not recorded.

use std::ffi::CStr;
use std::fmt::Display;
use std::path::Path;

use super::oplog::{self, OpBody, OpEntry, OpLine, OpLogError};
/// The access record and the user, where the commands that record themselves find them.
pub use super::oplog::{AccessInfo, Who};
use super::query::{Filter, ScanStats};
use crate::record::{proto_name, rfc3339_ns};

impl Who {
    /// The user running this process: real uid and its name, `SUDO_USER`, and the session's
    /// login uid.
    pub fn current() -> Who {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let login_uid = std::fs::read_to_string("/proc/self/loginuid")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&u| u != u32::MAX); // "unset": a session that never logged in
        Who {
            uid,
            user: user_name(uid),
            sudo_user: std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty()),
            login_uid,
        }
    }
}

/// The account name of `uid` (`getpwuid_r`), if the account database has one.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: zeroed plain C struct, filled by getpwuid_r.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf's length is passed.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || found.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: getpwuid_r filled pw_name with a NUL-terminated string inside buf.
        let name = unsafe { CStr::from_ptr(pw.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

impl AccessInfo {
    /// An access by `command` selecting `filter` (canonical text, see [`filter_text`]).
    pub fn new(command: &str, filter: impl Into<String>) -> Self {
        Self {
            command: command.to_owned(),
            filter: kept(filter.into(), TEXT_KEPT),
            ..Self::default()
        }
    }

    /// With the rows returned.
    pub fn rows(mut self, rows: u64) -> Self {
        self.rows = Some(rows);
        self
    }

    /// With the file written and its SHA-256.
    pub fn output(mut self, sha256: &str, out: &Path) -> Self {
        self.sha256 = Some(sha256.to_owned());
        self.out = Some(kept(out.display().to_string(), NOTE_KEPT));
        self
    }

    /// With the error that ended the command.
    pub fn failed(mut self, error: &dyn Display) -> Self {
        self.error = Some(kept(error.to_string(), NOTE_KEPT));
        self
    }

    /// With the number of live journals that could not be read whole (the answer lacks their
    /// records); nothing when there were none.
    pub fn unreadable(mut self, journals: u64) -> Self {
        self.unreadable_journals = (journals > 0).then_some(journals);
        self
    }

    /// A `query` run: the rows it returned, or why it failed.
    pub fn query<E: Display>(filter: &Filter, result: &Result<ScanStats, E>) -> Self {
        let a = Self::new("query", filter_text(filter));
        match result {
            Ok(stats) => a
                .rows(stats.matched)
                .unreadable(stats.journals_unreadable as u64),
            Err(e) => a.failed(e),
        }
    }

    /// A completed `report`: the rows it counted, its SHA-256, and its file unless it went
    /// to stdout.
    pub fn report(filter: &Filter, rows: u64, sha256: &str, out: Option<&Path>) -> Self {
        let a = Self::new("report", filter_text(filter)).rows(rows);
        match out {
            Some(out) => a.output(sha256, out),
            None => Self {
                sha256: Some(sha256.to_owned()),
                ..a
            },
        }
    }

    /// An `sql` run: the statement as given (trimmed) in place of a filter, the rows of its
    /// answer, or why it failed. A statement longer than [`TEXT_KEPT`] bytes is kept as its
    /// beginning and the SHA-256 of the whole: whole, its line would pass the operator log's
    /// bound, which refuses the entry, and the run would go unrecorded.
    pub fn sql<E: Display>(statement: &str, result: &Result<u64, E>) -> Self {
        let a = Self::new("sql", statement.trim());
        match result {
            Ok(rows) => a.rows(*rows),
            Err(e) => a.failed(e),
        }
    }

    /// A completed `export`: rows, the file and its SHA-256.
    pub fn export(filter: &Filter, rows: u64, sha256: &str, out: &Path) -> Self {
        Self::new("export", filter_text(filter))
            .rows(rows)
            .output(sha256, out)
    }
}

/// The most bytes of a filter (an `sql` statement, a `--user` or `--domain` as given) an
/// access entry keeps: an eighth of an operator log line, since JSON may write a byte as six
/// (`\u001b`) and the other fields need room.
pub const TEXT_KEPT: usize = crate::store::oplog::MAX_LINE / 8;

/// The most bytes of an error or an output path an access entry keeps (an engine's error
/// quotes what it was given; a path may be long): with [`TEXT_KEPT`], six times each stays
/// inside a line.
pub const NOTE_KEPT: usize = crate::store::oplog::MAX_LINE / 64;

/// `text` whole up to `max` bytes, else its beginning and the SHA-256 of the whole: a field
/// past the bound took the entry past the operator log's line bound, which refuses it, and
/// the run went unrecorded (a long error printed rows no line recorded).
fn kept(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    use sha2::Digest as _;
    let digest = crate::store::fsutil::hex(&sha2::Sha256::digest(text.as_bytes()));
    format!(
        "{}... ({} bytes in all, sha256 {digest})",
        &text[..cut],
        text.len()
    )
}

/// A filter as canonical text: `key=value` pairs, in a fixed order, for the conditions set
/// (addresses as prefixes, protocols by name where they have one, times as RFC 3339 UTC with nanoseconds);
/// `all` when nothing is selected.
pub fn filter_text(f: &Filter) -> String {
    // Every field is named, so a condition added to the filter cannot be left out here.
    let Filter {
        cidr,
        port,
        mac,
        proto,
        since_ns,
        until_ns,
        user,
        domain,
        nat,
        rule,
        ignore_index: _,
    } = f;
    let mut parts = Vec::new();
    if let Some(c) = cidr {
        parts.push(format!("cidr={c}"));
    }
    if let Some(p) = port {
        parts.push(format!("port={p}"));
    }
    if let Some(m) = mac {
        parts.push(format!("mac={m}"));
    }
    if let Some(p) = proto {
        parts.push(format!("proto={}", proto_name(*p)));
    }
    if let Some(u) = user {
        parts.push(format!("user={}", token(u)));
    }
    if let Some(d) = domain {
        parts.push(format!("domain={}", d.as_str()));
    }
    if let Some(n) = nat {
        let addr = std::net::SocketAddr::new(n.ip, n.port.unwrap_or(0));
        parts.push(match n.port {
            Some(_) => format!("nat={addr}"),
            None => format!("nat={}", n.ip),
        });
    }
    if let Some(r) = rule {
        parts.push(format!("rule={}", token(r)));
    }
    if let Some(t) = since_ns {
        parts.push(format!("since={}", rfc3339_ns(*t)));
    }
    if let Some(t) = until_ns {
        parts.push(format!("until={}", rfc3339_ns(*t)));
    }
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(" ")
    }
}

/// A free-text value as one token of the filter text: quoted (Rust string escapes) when it
/// is empty or holds a space, quote, backslash, `=` or control character, so a value such
/// as `x since=2026-01-01T00:00:00Z` cannot read as a condition that was never applied.
fn token(v: &str) -> std::borrow::Cow<'_, str> {
    let plain = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '='));
    if plain {
        v.into()
    } else {
        format!("{v:?}").into()
    }
}

/// Whether an access was recorded.
#[derive(Debug)]
pub enum Recorded {
    /// As this line.
    Yes(Box<OpLine>),
    /// Not, and why (also said on stderr).
    No(OpLogError),
}

/// Records `access` by the current user now in the store at `dir`. Never fails the command:
/// when the line cannot be written, a warning says so on stderr and the result says why.
pub fn record(dir: &Path, access: AccessInfo) -> Recorded {
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    match record_as(dir, access, Who::current(), now) {
        Ok(line) => Recorded::Yes(Box::new(line)),
        Err(e) => {
            let hint = match &e {
                OpLogError::Io { cause, .. }
                    if cause.raw_os_error() == Some(libc::EROFS) =>
                {
                    " (the store is mounted read-only)"
                }
                OpLogError::Io { cause, .. }
                    if cause.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    " (no write access to the operator log: run as the store's owner or a member of its group)"
                }
                _ => "",
            };
            tracing::warn!("this access was NOT recorded in the operator log: {e}{hint}; what this command answers stands, but no lawful-access entry records it");
            Recorded::No(e)
        }
    }
}

/// Records `access` by `who` at `at_ns` (tests give their own clock and user).
pub fn record_as(
    dir: &Path,
    access: AccessInfo,
    who: Who,
    at_ns: i64,
) -> Result<OpLine, OpLogError> {
    oplog::append(
        dir,
        OpEntry {
            at_ns,
            who,
            body: OpBody::Access(access),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement of any length is recorded: whole up to [`TEXT_KEPT`] bytes, else its
    /// beginning and the SHA-256 of the whole (a 17,000-byte one was refused by the log's
    /// line bound, and the run went unrecorded).
    #[test]
    fn an_sql_statement_of_any_length_is_recorded() {
        let dir = crate::blocklist::tests::TempDir::new("access-sql");
        let rows: Result<u64, String> = Ok(1);
        // Control characters: JSON writes each as six bytes.
        let long = format!("SELECT * FROM flows /*{}*/", "\u{1b}".repeat(17_000));
        for (statement, whole) in [("SELECT 1", true), (long.as_str(), false)] {
            let line = record_as(&dir.0, AccessInfo::sql(statement, &rows), Who::current(), 1)
                .unwrap_or_else(|e| panic!("{} bytes: {e}", statement.len()));
            let OpBody::Access(a) = &line.entry.body else {
                panic!("not an access: {line:?}");
            };
            assert_eq!(a.filter == statement, whole, "{}", a.filter);
            if !whole {
                use sha2::Digest as _;
                let digest = crate::store::fsutil::hex(&sha2::Sha256::digest(statement));
                assert!(
                    a.filter.ends_with(&format!("sha256 {digest})")),
                    "{}",
                    a.filter
                );
            }
        }
    }

    /// A long error (an engine quoting what it was given) and a long output path, beside a
    /// long statement, all of control characters: the entry is still recorded (the error and
    /// the path were kept whole, and took it past the line bound: rows printed, no line).
    #[test]
    fn a_long_error_and_output_path_are_still_recorded() {
        let dir = crate::blocklist::tests::TempDir::new("access-long");
        let ctl = |n: usize| "\u{1}".repeat(n);
        let failed: Result<u64, String> = Err(ctl(15_000));
        let a = AccessInfo::sql(&ctl(17_000), &failed).output("ab", Path::new(&ctl(3_000)));
        let line = record_as(&dir.0, a, Who::current(), 1).expect("recorded");
        let OpBody::Access(a) = &line.entry.body else {
            panic!("not an access: {line:?}");
        };
        for kept in [
            &a.filter,
            a.error.as_ref().expect("error"),
            a.out.as_ref().expect("out"),
        ] {
            assert!(kept.contains("bytes in all, sha256 "), "{kept:?}");
        }
    }

    #[test]
    fn filter_text_is_canonical_and_names_every_condition() {
        assert_eq!(filter_text(&Filter::default()), "all");
        let f = Filter {
            cidr: Some("10.1.0.0/16".parse().expect("cidr")),
            port: Some(443),
            mac: Some("3c:22:fb:00:00:2a".parse().expect("mac")),
            proto: Some(6),
            since_ns: Some(1_700_000_000_000_000_000),
            until_ns: Some(1_700_003_600_000_000_000),
            user: Some("alice".into()),
            domain: Some("Example.COM.".parse().expect("domain")),
            nat: Some("[2001:db8::1]:40000".parse().expect("nat")),
            rule: Some("/etc/b.list:3".into()),
            ignore_index: true,
        };
        assert_eq!(
            filter_text(&f),
            "cidr=10.1.0.0/16 port=443 mac=3c:22:fb:00:00:2a proto=tcp user=alice domain=example.com nat=[2001:db8::1]:40000 rule=/etc/b.list:3 since=2023-11-14T22:13:20.000000000Z until=2023-11-14T23:13:20.000000000Z"
        );
        let ip_only = Filter {
            nat: Some("203.0.113.7".parse().expect("nat")),
            ..Filter::default()
        };
        assert_eq!(filter_text(&ip_only), "nat=203.0.113.7");
        // Free text cannot pass for conditions that were never applied.
        let hostile = Filter {
            user: Some("x since=2026-01-01T00:00:00Z".into()),
            rule: Some("/etc/my lists/b.list:3".into()),
            ..Filter::default()
        };
        assert_eq!(
            filter_text(&hostile),
            r#"user="x since=2026-01-01T00:00:00Z" rule="/etc/my lists/b.list:3""#
        );
    }

    #[test]
    fn the_current_user_has_a_uid_and_name() {
        let w = Who::current();
        // SAFETY: getuid cannot fail.
        assert_eq!(w.uid, unsafe { libc::getuid() });
        assert!(w.user.is_some(), "no name for uid {}", w.uid);
    }
}
