//! A subscribers file (CSV with a header) -> entries, or every bad row as
//! `LINE: column: reason`.
//!
//! The format (also in `docs/attribution.md`):
//! - The first line that is neither blank nor a comment is the header. It names the columns,
//!   in any order, case-insensitively: `match` and `account` are required, `name`,
//!   `valid_from` and `valid_to` are optional. An unknown column is an error (a misspelt
//!   `valid_to` must not silently drop a window).
//! - Fields are separated by commas. A field may be quoted (`"Acme, Inc."`, `""` for a quote
//!   inside); a quoted field cannot span lines. Blanks around a field are dropped.
//! - A line whose first non-blank character is `#` is a comment; blank lines are skipped;
//!   CRLF line ends and a UTF-8 byte-order mark are accepted.
//! - `match` is an IPv4 or IPv6 address, a CIDR (host bits zero), a range `A-B`, or a MAC
//!   (`aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`).
//! - `valid_from` and `valid_to` are RFC 3339 times with an offset; either may be empty
//!   (unbounded). `valid_to` is exclusive and must be after `valid_from`.
//!
//! Within one file, two rows must not give the same match (or two ranges that overlap without
//! one containing the other) to different subscribers at overlapping times: which one was
//! meant cannot be guessed, so both lines are reported. An exact duplicate row is folded.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::enrich::source::{numbered_lines, NotUtf8};
use crate::enrich::Validity;
use crate::record::Mac;

use super::net::{parse_addresses, AddrError};
use super::{Match, Subscriber};

/// Longest account accepted, in bytes.
pub const MAX_ACCOUNT_LEN: usize = 128;
/// Longest display name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// A column of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    /// What the row matches: address, CIDR, range or MAC.
    Match,
    /// The subscriber's account.
    Account,
    /// The subscriber's display name.
    Name,
    /// Start of the validity window.
    ValidFrom,
    /// End of the validity window (exclusive).
    ValidTo,
}

impl Column {
    const ALL: [Column; 5] = [
        Column::Match,
        Column::Account,
        Column::Name,
        Column::ValidFrom,
        Column::ValidTo,
    ];

    /// The name the header uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Column::Match => "match",
            Column::Account => "account",
            Column::Name => "name",
            Column::ValidFrom => "valid_from",
            Column::ValidTo => "valid_to",
        }
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a row (or the header) was refused. The text quotes what was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// The line is not UTF-8.
    #[error(transparent)]
    NotUtf8(#[from] NotUtf8),
    /// A quoted field with no closing quote on its line.
    #[error("quoted field has no closing `\"` on this line (a field cannot span lines)")]
    UnterminatedQuote,
    /// A `"` inside an unquoted field.
    #[error("`\"` inside an unquoted field; quote the whole field and double the quote (`\"a \"\"b\"\"\"`)")]
    StrayQuote,
    /// Text after a closing quote.
    #[error("text after the closing `\"` of a quoted field")]
    AfterQuote,
    /// No header before the first row.
    #[error("the first line that is not a comment must be the header (`match,account,name,valid_from,valid_to`); found `{found}`")]
    MissingHeader {
        /// What the line held.
        found: String,
    },
    /// A header whose columns are separated by something else than commas (a spreadsheet's
    /// export in a locale that uses `;`, or tabs).
    #[error("the header separates its columns with {sep:?}; a subscribers file separates fields with commas (`match,account,...`)")]
    HeaderSeparator {
        /// The separator found.
        sep: char,
    },
    /// A header column that is not known.
    #[error("unknown column `{name}`; the columns are match, account, name, valid_from, valid_to")]
    UnknownColumn {
        /// The column as written.
        name: String,
    },
    /// A header naming a column twice.
    #[error("column `{0}` appears twice in the header")]
    DuplicateColumn(Column),
    /// A header without a required column.
    #[error("the header has no `{0}` column (required: match, account)")]
    MissingColumn(Column),
    /// A row with a different number of fields than the header.
    #[error("{found} fields, but the header has {expected}")]
    FieldCount {
        /// Fields in the row.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// A required field left empty.
    #[error("empty; every row needs one")]
    Empty,
    /// The address parser refused the field.
    #[error(transparent)]
    Address(#[from] AddrError),
    /// A MAC with a bad shape.
    #[error("`{0}` is not a MAC address (six hex pairs separated by `:` or `-`)")]
    MacSyntax(String),
    /// A multicast or broadcast MAC: never a client's source.
    #[error("`{0}` is a group (multicast or broadcast) address; a client's MAC is unicast")]
    MacGroup(String),
    /// A time that is not RFC 3339.
    #[error(
        "`{text}` is not an RFC 3339 time with an offset (like 2026-01-31T00:00:00Z): {reason}"
    )]
    Time {
        /// The time as written.
        text: String,
        /// What the time parser said.
        reason: String,
    },
    /// A window that ends before (or when) it starts.
    #[error("ends at {to}, not after valid_from {from}")]
    EmptyWindow {
        /// valid_from as written.
        from: String,
        /// valid_to as written.
        to: String,
    },
    /// A control character in a text field.
    #[error("holds control character {0:?}")]
    ControlChar(char),
    /// An invisible character other than a control in a text field: a text-direction mark, a
    /// zero-width character, a filler ([`crate::invisible`]). Shown in a report or a
    /// spreadsheet, it makes the account read as another one.
    #[error("holds the invisible character '{}' (a text-direction, zero-width or other format character), which makes it read as another text; write it without", crate::invisible::escape(*.0))]
    InvisibleChar(char),
    /// A text field over its limit.
    #[error("{len} bytes long, over {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Two rows give one match to different subscribers at overlapping times.
    #[error("`{text}` is also given to account `{account}` on line {line} in an overlapping validity window; keep one row, or give them windows that do not overlap")]
    Conflict {
        /// This row's match as written.
        text: String,
        /// The other row's account.
        account: String,
        /// The other row's line.
        line: u32,
    },
    /// Two ranges that overlap without nesting, at overlapping times.
    #[error("`{text}` overlaps the range on line {line} without containing it or lying inside it, in an overlapping validity window; ranges must nest or be disjoint (the narrowest wins)")]
    PartialOverlap {
        /// This row's match as written.
        text: String,
        /// The other row's line.
        line: u32,
    },
}

/// A refused row: its line, the column at fault (if one is) and why. Displayed
/// `LINE: column: reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line.
    pub line: u32,
    /// The column at fault.
    pub column: Option<Column>,
    /// What is wrong.
    pub error: RowError,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "{}: {c}: {}", self.line, self.error),
            None => write!(f, "{}: {}", self.line, self.error),
        }
    }
}

/// The error of a [`BadRow`] without its line: `column: reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    /// The column at fault.
    pub column: Option<Column>,
    /// What is wrong.
    pub error: RowError,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "{c}: {}", self.error),
            None => self.error.fmt(f),
        }
    }
}

impl std::error::Error for RowProblem {}

impl BadRow {
    /// The problem without its line (for a [`crate::enrich::source::FileProblem`]).
    pub fn problem(self) -> (u32, RowProblem) {
        (
            self.line,
            RowProblem {
                column: self.column,
                error: self.error,
            },
        )
    }
}

/// One row of a good file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What it matches.
    pub matcher: Match,
    /// Whom.
    pub subscriber: Subscriber,
    /// When.
    pub valid: Validity,
    /// Its 1-based line.
    pub line: u32,
}

/// Counts for the summary of a good file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowStats {
    /// Lines in the file.
    pub lines: u32,
    /// Rows (entries), duplicates included.
    pub rows: u32,
    /// Comment lines.
    pub comments: u32,
    /// Blank lines.
    pub blank: u32,
    /// IPv4 addresses, CIDRs or ranges.
    pub v4: u32,
    /// IPv6 addresses, CIDRs or ranges.
    pub v6: u32,
    /// MAC addresses.
    pub macs: u32,
    /// Rows with a validity window.
    pub windowed: u32,
    /// Exact duplicate rows folded into an earlier one.
    pub duplicates: u32,
}

impl fmt::Display for RowStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lines {}: {} rows, {} comments, {} blank; IPv4 {}, IPv6 {}, MAC {}; {} with a validity window; {} duplicates folded",
            self.lines,
            self.rows,
            self.comments,
            self.blank,
            self.v4,
            self.v6,
            self.macs,
            self.windowed,
            self.duplicates
        )
    }
}

/// A good subscribers file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedSubscribers {
    /// Its rows, in line order, duplicates folded.
    pub entries: Vec<Entry>,
    /// Counts for the summary.
    pub stats: RowStats,
}

impl ParsedSubscribers {
    /// Parses a whole file. Every bad row is returned, in line order; a file with any bad
    /// row yields no entries.
    pub fn parse(bytes: &[u8]) -> Result<ParsedSubscribers, Vec<BadRow>> {
        let mut stats = RowStats::default();
        let mut bad = Vec::new();
        let mut header: Option<Vec<Column>> = None;
        let mut entries = Vec::new();
        for (line, text) in numbered_lines(bytes) {
            stats.lines = line;
            let text = match text {
                Ok(t) => t,
                Err(e) => {
                    bad.push(BadRow {
                        line,
                        column: None,
                        error: e.into(),
                    });
                    continue;
                }
            };
            let trimmed = text.trim();
            if trimmed.is_empty() {
                stats.blank += 1;
                continue;
            }
            if trimmed.starts_with('#') {
                stats.comments += 1;
                continue;
            }
            let fields = match split_fields(text) {
                Ok(f) => f,
                Err(error) => {
                    bad.push(BadRow {
                        line,
                        column: None,
                        error,
                    });
                    continue;
                }
            };
            let Some(columns) = &header else {
                match parse_header(&fields) {
                    Ok(c) => header = Some(c),
                    Err(error) => {
                        bad.push(BadRow {
                            line,
                            column: None,
                            error,
                        });
                        // Without a header no row can be read: stop at the first problem.
                        return Err(bad);
                    }
                }
                continue;
            };
            stats.rows += 1;
            match parse_row(columns, &fields, line) {
                Ok(e) => entries.push(e),
                Err(b) => bad.push(b),
            }
        }
        if header.is_none() && !bad.is_empty() {
            return Err(bad);
        }
        find_conflicts(&mut entries, &mut stats, &mut bad);
        if !bad.is_empty() {
            bad.sort_by_key(|b| b.line);
            return Err(bad);
        }
        for e in &entries {
            match e.matcher {
                Match::V4 { .. } => stats.v4 += 1,
                Match::V6 { .. } => stats.v6 += 1,
                Match::Mac(_) => stats.macs += 1,
            }
            stats.windowed += u32::from(e.valid != Validity::ALWAYS);
        }
        Ok(ParsedSubscribers { entries, stats })
    }
}

/// Splits one line into fields, RFC 4180 style within the line.
fn split_fields(line: &str) -> Result<Vec<Cow<'_, str>>, RowError> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        let start = rest.trim_start_matches([' ', '\t']);
        if let Some(quoted) = start.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let after = loop {
                match chars.next() {
                    None => return Err(RowError::UnterminatedQuote),
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            value.push('"');
                            chars.next();
                        } else {
                            break &quoted[i + 1..];
                        }
                    }
                    Some((_, c)) => value.push(c),
                }
            };
            let after = after.trim_start_matches([' ', '\t']);
            fields.push(Cow::Owned(value));
            match after.strip_prefix(',') {
                Some(r) => rest = r,
                None if after.is_empty() => return Ok(fields),
                None => return Err(RowError::AfterQuote),
            }
        } else {
            let (field, next) = match start.split_once(',') {
                Some((f, r)) => (f, Some(r)),
                None => (start, None),
            };
            if field.contains('"') {
                return Err(RowError::StrayQuote);
            }
            fields.push(Cow::Borrowed(field.trim_end_matches([' ', '\t'])));
            match next {
                Some(r) => rest = r,
                None => return Ok(fields),
            }
        }
    }
}

fn parse_header(fields: &[Cow<'_, str>]) -> Result<Vec<Column>, RowError> {
    let mut columns = Vec::with_capacity(fields.len());
    for f in fields {
        let Some(c) = Column::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(f))
        else {
            let names_a_column = |f: &str| {
                Column::ALL
                    .iter()
                    .any(|c| c.as_str().eq_ignore_ascii_case(f.trim()))
            };
            if let [only] = fields {
                for sep in [';', '\t'] {
                    if only.contains(sep) && only.split(sep).any(names_a_column) {
                        return Err(RowError::HeaderSeparator { sep });
                    }
                }
            }
            // A first line that names no column at all is a row, not a misspelt header.
            if !fields.iter().any(|f| names_a_column(f)) {
                return Err(RowError::MissingHeader {
                    found: fields.join(","),
                });
            }
            return Err(RowError::UnknownColumn {
                name: f.to_string(),
            });
        };
        if columns.contains(&c) {
            return Err(RowError::DuplicateColumn(c));
        }
        columns.push(c);
    }
    for required in [Column::Match, Column::Account] {
        if !columns.contains(&required) {
            return Err(RowError::MissingColumn(required));
        }
    }
    Ok(columns)
}

/// Whether `line`, a file's first line neither blank nor a comment, is a subscribers header as
/// [`ParsedSubscribers::parse`] reads one: fields (quoted or not, in any order) of which one
/// names a column, or columns separated by `;` or tabs (which the parser refuses, saying
/// why). `check` tells a subscribers file from a list by it, so the two cannot disagree.
pub fn is_header(line: &str) -> bool {
    // A header needs two columns (match, account): a line without a separator is a list's.
    line.contains([',', ';', '\t'])
        && split_fields(line)
            .is_ok_and(|f| !matches!(parse_header(&f), Err(RowError::MissingHeader { .. })))
}

fn parse_row(columns: &[Column], fields: &[Cow<'_, str>], line: u32) -> Result<Entry, BadRow> {
    let bad = |column, error| BadRow {
        line,
        column,
        error,
    };
    if fields.len() != columns.len() {
        return Err(bad(
            None,
            RowError::FieldCount {
                found: fields.len(),
                expected: columns.len(),
            },
        ));
    }
    let field = |c: Column| -> &str {
        columns
            .iter()
            .position(|&x| x == c)
            .and_then(|i| fields.get(i))
            .map_or("", |f| f.as_ref())
    };
    let in_col = |c: Column| move |e: RowError| bad(Some(c), e);
    let matcher = parse_match(field(Column::Match)).map_err(in_col(Column::Match))?;
    let account = text_field(field(Column::Account), MAX_ACCOUNT_LEN)
        .map_err(in_col(Column::Account))?
        .ok_or_else(|| bad(Some(Column::Account), RowError::Empty))?;
    let name = text_field(field(Column::Name), MAX_NAME_LEN).map_err(in_col(Column::Name))?;
    let from = parse_time(field(Column::ValidFrom)).map_err(in_col(Column::ValidFrom))?;
    let to = parse_time(field(Column::ValidTo)).map_err(in_col(Column::ValidTo))?;
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            return Err(bad(
                Some(Column::ValidTo),
                RowError::EmptyWindow {
                    from: field(Column::ValidFrom).into(),
                    to: field(Column::ValidTo).into(),
                },
            ));
        }
    }
    Ok(Entry {
        matcher,
        subscriber: Subscriber {
            account: account.into(),
            name: name.map(Into::into),
        },
        valid: Validity { from, to },
        line,
    })
}

/// A MAC, or an address, CIDR or range.
pub(super) fn parse_match(text: &str) -> Result<Match, RowError> {
    if text.is_empty() {
        return Err(RowError::Empty);
    }
    if looks_like_mac(text) {
        return parse_mac(text).map(Match::Mac);
    }
    parse_addresses(text).map_err(|e| {
        // Pairs of hex digits and one separator throughout, but not six of them
        // (`aa:bb:cc:dd:ee`): a MAC cut short, not an IPv6 address.
        if mac_shaped(text) {
            RowError::MacSyntax(text.into())
        } else {
            e.into()
        }
    })
}

/// Groups of one or two hex digits, all split by `:` or all by `-`, no `::`.
fn mac_shaped(text: &str) -> bool {
    let sep = if text.contains('-') { '-' } else { ':' };
    let groups: Vec<&str> = text.split(sep).collect();
    groups.len() >= 3
        && !text.contains("::")
        && groups
            .iter()
            .all(|g| (1..=2).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Six pairs and five separators of one kind, and no `::`: an IPv6 address of this length
/// with separators in those places (`10:20:30:40:50::1`) has one.
fn looks_like_mac(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 17
        && matches!(b[2], b':' | b'-')
        && (5..17).step_by(3).all(|i| b[i] == b[2])
        && !text.contains("::")
}

fn parse_mac(text: &str) -> Result<Mac, RowError> {
    let b = text.as_bytes();
    let hex_pairs = (0..17)
        .filter(|i| i % 3 != 2)
        .all(|i| b[i].is_ascii_hexdigit());
    if !hex_pairs {
        return Err(RowError::MacSyntax(text.into()));
    }
    let mac = Mac::from_str(text).map_err(|_| RowError::MacSyntax(text.into()))?;
    if mac.0[0] & 1 == 1 {
        return Err(RowError::MacGroup(text.into()));
    }
    Ok(mac)
}

/// Whether `text` is an account a subscribers file can give (not empty, no invisible
/// character, at most [`MAX_ACCOUNT_LEN`] bytes): a saved attribution taken back is held to it.
pub(crate) fn is_account(text: &str) -> bool {
    matches!(text_field(text, MAX_ACCOUNT_LEN), Ok(Some(_)))
}

/// An account or name: empty is none; an invisible character that is no part of ordinary
/// writing ([`crate::invisible::find_deceptive`]: a control, a text-direction mark, a
/// zero-width space...; a joiner or variation selector is fine) or more than `max` bytes is
/// refused.
fn text_field(text: &str, max: usize) -> Result<Option<&str>, RowError> {
    if text.is_empty() {
        return Ok(None);
    }
    match crate::invisible::find_deceptive(text) {
        Some(c) if c.is_control() => return Err(RowError::ControlChar(c)),
        Some(c) => return Err(RowError::InvisibleChar(c)),
        None => {}
    }
    if text.len() > max {
        return Err(RowError::TooLong {
            len: text.len(),
            max,
        });
    }
    Ok(Some(text))
}

/// An RFC 3339 time as Unix nanoseconds; empty is unbounded.
fn parse_time(text: &str) -> Result<Option<i64>, RowError> {
    if text.is_empty() {
        return Ok(None);
    }
    let ts = jiff::Timestamp::from_str(text).map_err(|e| RowError::Time {
        text: text.into(),
        reason: e.to_string(),
    })?;
    i64::try_from(ts.as_nanosecond())
        .map(Some)
        .map_err(|_| RowError::Time {
            text: text.into(),
            reason: "outside the years 1678-2261 that nanosecond timestamps cover".into(),
        })
}

/// Whether two windows share an instant.
pub(super) fn overlap(a: &Validity, b: &Validity) -> bool {
    let from = a.from.max(b.from); // None (unbounded) sorts first: max is the later start
    let to = match (a.to, b.to) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) | (None, x) => x,
    };
    match (from, to) {
        (Some(f), Some(t)) => f < t,
        _ => true,
    }
}

/// Folds exact duplicates and reports rows that contradict each other (see the module docs).
/// A sweep over the rows sorted by start, keeping the rows whose span is still open.
fn find_conflicts(entries: &mut Vec<Entry>, stats: &mut RowStats, bad: &mut Vec<BadRow>) {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| {
        let (lo, hi) = entries[i].matcher.span();
        (entries[i].matcher.family(), lo, std::cmp::Reverse(hi), i)
    });
    let mut open: Vec<usize> = Vec::new();
    let mut folded = vec![false; entries.len()];
    for &i in &order {
        let e = &entries[i];
        let (lo, hi) = e.matcher.span();
        open.retain(|&j| {
            let (_, hj) = entries[j].matcher.span();
            entries[j].matcher.family() == e.matcher.family() && hj >= lo
        });
        for &j in &open {
            if folded[i] {
                break; // a duplicate: the row it repeats reports any conflict
            }
            let o = &entries[j];
            let (lj, hj) = o.matcher.span();
            if folded[j] || !overlap(&e.valid, &o.valid) {
                continue;
            }
            // Entries are in line order, so the higher index is the later line.
            let (first, second) = (&entries[i.min(j)], &entries[i.max(j)]);
            if (lj, hj) == (lo, hi) {
                if o.subscriber == e.subscriber {
                    if o.valid == e.valid {
                        folded[i.max(j)] = true;
                        stats.duplicates += 1;
                    }
                    continue;
                }
                bad.push(BadRow {
                    line: second.line,
                    column: Some(Column::Match),
                    error: RowError::Conflict {
                        text: second.matcher.to_string(),
                        account: first.subscriber.account.to_string(),
                        line: first.line,
                    },
                });
                // One report per row: n rows of one match would otherwise report every
                // pair, n²/2 of them (gigabytes for a CGNAT address listed per customer).
                break;
            } else if hi > hj {
                // Sorted by start then widest first: `o` starts at or before `e`, so they nest
                // unless `e` runs past `o`'s end.
                bad.push(BadRow {
                    line: second.line,
                    column: Some(Column::Match),
                    error: RowError::PartialOverlap {
                        text: second.matcher.to_string(),
                        line: first.line,
                    },
                });
                break;
            }
        }
        open.push(i);
    }
    let mut i = 0;
    entries.retain(|_| {
        i += 1;
        !folded[i - 1]
    });
}

#[cfg(test)]
mod tests;
