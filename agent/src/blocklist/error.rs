//! What is wrong with a list: a line's typed error ([`LineError`]), a bad line of a file
//! ([`BadLine`]), and a file's problems as the agent reports them ([`Diagnostic`],
//! `FILE:LINE: reason`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::invisible::printable;
use crate::net::NetError;

/// Why a line was refused. The text names the field at fault and quotes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is not UTF-8.
    #[error("line is not valid UTF-8 (byte {byte:#04x} at column {column})")]
    NotUtf8 {
        /// The first offending byte.
        byte: u8,
        /// 1-based byte column.
        column: usize,
    },
    /// A bad address or CIDR prefix.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A range whose ends are of different families.
    #[error("range `{text}`: start and end are not the same address family")]
    RangeFamily {
        /// The range as written.
        text: String,
    },
    /// A range without its start or its end (`1.2.3.4-`).
    #[error("range `{text}`: its start or end is missing")]
    RangeOpen {
        /// The range as written.
        text: String,
    },
    /// A range whose start is after its end.
    #[error("range `{text}`: start is after end")]
    RangeReversed {
        /// The range as written.
        text: String,
    },
    /// A domain with a character outside letters, digits, `-` and `_`.
    #[error("domain `{name}`: character {ch:?} is not allowed (letters, digits, `-`, `_`, dots between labels)")]
    DomainChar {
        /// The domain as written.
        name: String,
        /// The offending character.
        ch: char,
    },
    /// A `*` anywhere but a leading `*.`.
    #[error("domain `{name}`: `*` is only allowed as a leading `*.`")]
    DomainWildcard {
        /// The domain as written.
        name: String,
    },
    /// `a..b`, a leading dot, or nothing at all.
    #[error("domain `{name}` has an empty label")]
    DomainEmptyLabel {
        /// The domain as written.
        name: String,
    },
    /// A label over 63 bytes.
    #[error("domain `{name}`: label `{label}` is {len} bytes, over 63")]
    DomainLabelLen {
        /// The domain as written.
        name: String,
        /// The long label.
        label: String,
        /// Its length in bytes (after punycode).
        len: usize,
    },
    /// A name over 253 bytes.
    #[error("domain `{name}` is {len} bytes long, over 253")]
    DomainLen {
        /// The domain as written.
        name: String,
        /// Its length in bytes (after punycode).
        len: usize,
    },
    /// More labels than the kernel keeps, so the rule could never match.
    #[error("domain `{name}` has {count} labels, over the 16 the kernel matches")]
    DomainLabels {
        /// The domain as written.
        name: String,
        /// How many labels it has.
        count: usize,
    },
    /// An all-numeric last label: an address, not a name.
    #[error("domain `{name}`: top-level label `{tld}` is numeric (an address is not a domain)")]
    DomainNumericTld {
        /// The domain as written.
        name: String,
        /// The last label.
        tld: String,
    },
    /// IDNA (UTS 46) refused an internationalised name or a bad `xn--` label.
    #[error("domain `{name}`: IDNA conversion to punycode failed")]
    DomainIdna {
        /// The domain as written.
        name: String,
    },
    /// An invisible character (soft hyphen, zero-width, direction mark), which IDNA would
    /// drop: `\u{AD}com` would become `com`, a rule for a whole top-level domain.
    #[error("domain `{name}`: holds the invisible character {ch:?}, which would vanish from the name; write the name without it")]
    DomainInvisible {
        /// The domain as written.
        name: String,
        /// The character.
        ch: char,
    },
    /// A URL where a host name was expected.
    #[error("`{text}` is a URL; list the host name alone")]
    Url {
        /// The token as written.
        text: String,
    },
    /// An adblock rule with `$` options.
    #[error("adblock rule `{text}`: options (`$...`) are not supported; only `||domain^`")]
    AdblockOptions {
        /// The rule as written.
        text: String,
    },
    /// An adblock exception rule.
    #[error("adblock rule `{text}`: exception rules (`@@`) are not supported; put the domain in an allowlist")]
    AdblockException {
        /// The rule as written.
        text: String,
    },
    /// An adblock rule other than `||domain^`.
    #[error("adblock rule `{text}`: only `||domain^` is supported (no paths, `*` or `|` inside)")]
    AdblockSyntax {
        /// The rule as written.
        text: String,
    },
    /// A hosts-file line pointing names at a real address.
    #[error("hosts line maps names to `{addr}`; only 0.0.0.0, 127.x.x.x, :: and ::1 mark names blocked (an address to block goes alone on its line)")]
    HostsAddress {
        /// The address as written.
        addr: String,
    },
    /// A hosts-file line with an address where a name belongs.
    #[error("hosts line: `{name}` is an address, not a host name")]
    HostsIpName {
        /// The token as written.
        name: String,
    },
    /// More than one token where one entry was expected.
    #[error("unexpected `{extra}` after `{first}`: one entry per line (only hosts-file lines, which start with an address, list several names)")]
    TrailingTokens {
        /// The first token.
        first: String,
        /// The token that should not be there.
        extra: String,
    },
    /// A malformed `port` rule.
    #[error("port rule: expected `port [tcp|udp] PORT[-PORT]`")]
    PortUsage,
    /// A port rule protocol other than tcp or udp.
    #[error("port rule: protocol `{proto}` is not `tcp` or `udp`")]
    PortProto {
        /// The protocol as written.
        proto: String,
    },
    /// A port that is not a number 1-65535.
    #[error("port rule: port `{port}` is not a number from 1 to 65535")]
    PortValue {
        /// The port as written.
        port: String,
    },
    /// A port range whose start is after its end.
    #[error("port rule: range {lo}-{hi} is reversed")]
    PortReversed {
        /// Start as written.
        lo: u16,
        /// End as written.
        hi: u16,
    },
}

/// A bad line: its 1-based number and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u32,
    /// What is wrong with it.
    pub error: LineError,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, clipped(self.error.to_string()))
    }
}

/// A message about a line longer than this is shown in part: it quotes what it refuses, and a
/// line of megabytes (a file that is not a list) would be echoed whole, once per bad line.
const SHOWN: usize = 600;

/// `message` with its middle left out when it is over [`SHOWN`] bytes: its start names the
/// field and its end says why, so both stay. Subscribers and lease problems are shown the
/// same way. Invisible characters (controls, text-direction and zero-width characters) are
/// shown escaped ([`printable`]): a file's bytes quoted in a message reach terminals, the
/// journal and syslog, where an escape sequence would act and a direction mark would turn
/// the text around.
pub(crate) fn clipped(message: String) -> String {
    let message = printable(&message).into_owned();
    if message.len() <= SHOWN {
        return message;
    }
    let mut head = SHOWN / 2;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - SHOWN / 3;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}…({} bytes left out)…{}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

/// What is wrong with a list file: a bad line, or the file as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A line that does not parse.
    #[error(transparent)]
    Line(#[from] LineError),
    /// The file could not be read (or is no regular file, or too large).
    #[error("cannot read: {0}")]
    Read(crate::store::fsutil::InputError),
    /// A list file with rules found empty (0 bytes): most likely caught between a truncation
    /// and its new contents (`: > f; curl ... >> f`), and applying it would unblock every
    /// rule it held.
    #[error(
        "is empty (0 bytes) where its last version held {rules} rules: not applied, that \
         version stays in force (to empty a list on purpose, leave a comment line in it)"
    )]
    Emptied {
        /// Rules of the version in force.
        rules: usize,
    },
    /// A list file found empty (0 bytes), its kind's only file, by an agent that adopts a
    /// running program whose tables of that kind hold rules: the file's version before the restart is unknown, and
    /// applying it could unblock every rule it held. The tables stay as the program holds them.
    #[error(
        "is empty (0 bytes) where the running program enforces {rules} {kind} rules: not \
         applied, the {kind} tables stay as they are (to empty a list on purpose, leave a \
         comment line in it)"
    )]
    EmptiedAtStart {
        /// The file's kind.
        kind: super::ListKind,
        /// Entries of that kind in the running program's tables.
        rules: usize,
    },
    /// A path that is not one of the configured lists.
    #[error("not a configured list file")]
    NotConfigured,
    /// The reload the file was part of would outgrow a kernel table.
    #[error(
        "not applied: the lists would need {needed} entries in map {map}, which holds \
         {capacity}{}; the last good version stays in force (restart the agent to size the \
         tables from the lists, or raise --list-capacity)",
        changed_with(.with)
    )]
    TooLarge {
        /// The map.
        map: &'static str,
        /// The entries it holds.
        capacity: u32,
        /// The entries the lists would need in it.
        needed: usize,
        /// The other files of the same reload, refused with this one.
        with: Vec<PathBuf>,
    },
}

fn changed_with(with: &[PathBuf]) -> String {
    if with.is_empty() {
        return String::new();
    }
    let names: Vec<String> = with.iter().map(|p| p.display().to_string()).collect();
    format!(" (with {}, changed in the same reload)", names.join(", "))
}

/// One reason a list file was not applied, displayed `FILE:LINE: reason` (or `FILE: reason`
/// for the file as a whole).
#[derive(Debug)]
pub struct Diagnostic {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, if the problem is one line.
    pub line: Option<u32>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}",
                self.path.display(),
                line,
                clipped(self.problem.to_string())
            ),
            None => write!(f, "{}: {}", self.path.display(), self.problem),
        }
    }
}

impl Diagnostic {
    pub(super) fn bad_lines(path: &Path, bad: Vec<BadLine>) -> Vec<Diagnostic> {
        bad.into_iter()
            .map(|b| Diagnostic {
                path: path.to_owned(),
                line: Some(b.line),
                problem: Problem::Line(b.error),
            })
            .collect()
    }
}

/// Problems logged per reload of one kind of input at most (lists, subscribers files, a lease
/// file read).
pub const DIAGNOSTICS_SHOWN: usize = 50;

/// Logs problems (of lists, subscribers or lease files) as tracing warnings: at most `limit`
/// lines, then a count of the rest, so a binary file dropped in place of an input cannot flood
/// the journal at every reload.
pub fn warn_diagnostics<D: fmt::Display>(diagnostics: &[D], limit: usize) {
    for d in diagnostics.iter().take(limit) {
        tracing::warn!("{d}");
    }
    if diagnostics.len() > limit {
        tracing::warn!(
            "... and {} more problems (run `xdp-audit check FILE` for all)",
            diagnostics.len() - limit
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's bytes quoted in a message cannot act on the terminal or log that shows it.
    #[test]
    fn controls_and_direction_marks_are_shown_escaped() {
        let bad = BadLine {
            line: 3,
            error: LineError::DomainWildcard {
                name: "evil\u{1b}[2J\u{202e}moc.*x".into(),
            },
        };
        let text = bad.to_string();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text:?}"
        );
        assert!(text.contains("evil\\u{1b}[2J\\u{202e}moc"), "{text}");
    }

    #[test]
    fn a_huge_line_is_quoted_in_part_and_a_short_one_whole() {
        let long = "ü".repeat(100_000);
        let bad = BadLine {
            line: 7,
            error: LineError::DomainWildcard { name: long },
        };
        let text = bad.to_string();
        assert!(
            text.starts_with("7: domain `üü") && text.len() < SHOWN + 40,
            "{text}"
        );
        assert!(
            text.contains("bytes left out)…üü")
                && text.ends_with("`: `*` is only allowed as a leading `*.`"),
            "{text}"
        );
        let short = BadLine {
            line: 1,
            error: LineError::DomainWildcard { name: "a*b".into() },
        };
        assert_eq!(
            short.to_string(),
            "1: domain `a*b`: `*` is only allowed as a leading `*.`"
        );
    }
}
