//! DHCP leases: the server's lease file and the DHCP packets seen, as one timeline of
//! MAC <-> IP <-> hostname bindings ([`bindings::Bindings`]).
//!
//! XDP sees only received packets, so when the gateway is the DHCP server its ACKs never reach
//! the program: its lease file is read instead ([`dnsmasq`], [`kea`]). Where the server is
//! elsewhere, its ACKs arrive on an audited interface and [`crate::enrich::dhcp`] learns from
//! them.
//!
//! A lease file is machine-written and often appended to while it is read: a line that does
//! not parse is reported as `FILE:LINE: reason` and skipped, and the rest applies (unlike an
//! operator's subscribers file, where one bad line keeps the whole file out). A file whose
//! format cannot be told at all is refused whole.

pub mod bindings;
pub mod dnsmasq;
pub mod file;
pub mod kea;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::enrich::source::NotUtf8;
use crate::enrich::Validity;
use crate::record::Mac;
use crate::store::fsutil::without_bom;

/// Lines that are not blank in which a file's format (and a Kea file's header) is looked for:
/// a damaged first line must not hide the good lines after it, and a file that is no lease
/// file must not be read through to its end.
pub const FORMAT_WITHIN_LINES: usize = 16;

/// A lease file's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseFormat {
    /// dnsmasq's `--dhcp-leasefile` (DHCPv4 and DHCPv6 in one file).
    Dnsmasq,
    /// ISC Kea's memfile CSV, `lease4` or `lease6` (told apart by the header).
    Kea,
}

impl LeaseFormat {
    /// Tells the format from the first of the first [`FORMAT_WITHIN_LINES`] lines that are
    /// not blank that says it (a byte-order mark dropped, as the parsers drop it): Kea's CSV
    /// has its header `address,...`; dnsmasq's lines start with an expiry time or `duid`. A
    /// damaged line before it is then the parser's to report as a bad line.
    pub fn detect(bytes: &[u8]) -> Option<LeaseFormat> {
        without_bom(bytes)
            .split(|&b| b == b'\n')
            .map(|l| l.trim_ascii())
            .filter(|l| !l.is_empty())
            .take(FORMAT_WITHIN_LINES)
            .find_map(LeaseFormat::of_line)
    }

    /// The format a line (trimmed, not blank) belongs to, if it says.
    fn of_line(line: &[u8]) -> Option<LeaseFormat> {
        if line.starts_with(b"address,") {
            return Some(LeaseFormat::Kea);
        }
        let token = line.split(|b| b.is_ascii_whitespace()).next()?;
        (token == b"duid" || (!token.is_empty() && token.iter().all(u8::is_ascii_digit)))
            .then_some(LeaseFormat::Dnsmasq)
    }

    /// How the server's file says a lease ended.
    pub const fn ending(self) -> Ending {
        match self {
            LeaseFormat::Dnsmasq => Ending::ByAbsence,
            LeaseFormat::Kea => Ending::ByRow,
        }
    }

    /// The name used in configuration (`dnsmasq`, `kea`).
    pub const fn as_str(self) -> &'static str {
        match self {
            LeaseFormat::Dnsmasq => "dnsmasq",
            LeaseFormat::Kea => "kea",
        }
    }
}

impl std::str::FromStr for LeaseFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dnsmasq" => Ok(LeaseFormat::Dnsmasq),
            "kea" => Ok(LeaseFormat::Kea),
            other => Err(format!(
                "unknown lease file format `{other}`; the formats are dnsmasq, kea"
            )),
        }
    }
}

/// How a lease file says a lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The file is rewritten whole at each change (dnsmasq): a lease missing from a read has
    /// ended.
    ByAbsence,
    /// Each end is a row of its own, and the file is compacted now and then (Kea's lease file
    /// cleanup starts a new file holding only the leases changed since): a lease missing from
    /// a read holds until its expiry or a row that ends it.
    ByRow,
}

/// What a lease row says about its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Bound to the client for the lease's window.
    Bound,
    /// No longer bound: released, deleted or declined (Kea's `valid_lifetime` 0 or state 1).
    Gone,
}

/// One lease as a file states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The leased address.
    pub ip: IpAddr,
    /// The client's MAC: the hardware address (DHCPv4, Kea's `hwaddr`), or the one inside a
    /// DUID-LL/LLT (DHCPv6), when there is one.
    pub mac: Option<Mac>,
    /// Client identifier (DHCPv4 option 61) or DUID (DHCPv6), raw bytes.
    pub client_id: Option<Arc<[u8]>>,
    /// Host name the client gave or the server assigned (see `clean_hostname`).
    pub hostname: Option<Arc<str>>,
    /// When the lease holds. `from` is known only where the file says (Kea: the last client
    /// transaction, `expire - valid_lifetime`); `to` is the expiry, `None` for an infinite
    /// lease.
    pub valid: Validity,
    /// Bound or gone.
    pub state: LeaseState,
    /// 1-based line in the file.
    pub line: u32,
}

/// Why a lease line was skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseLineError {
    /// The line is not UTF-8.
    #[error(transparent)]
    NotUtf8(#[from] NotUtf8),
    /// A dnsmasq line with the wrong number of fields.
    #[error("{found} fields, expected 5 (expiry, MAC or IAID, address, host name, client id)")]
    FieldCount {
        /// Fields found.
        found: usize,
    },
    /// A Kea row with a different number of fields than the header.
    #[error("{found} fields, but the header has {expected}")]
    RowLength {
        /// Fields found.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// A line of a Kea file before its header.
    #[error("before Kea's header (`address,...`): not a lease row")]
    BeforeHeader,
    /// A field that does not parse.
    #[error("{field}: `{text}` is not {expected}")]
    Field {
        /// The field's name.
        field: &'static str,
        /// The field as written.
        text: String,
        /// What it should be.
        expected: &'static str,
    },
}

impl LeaseLineError {
    /// A field that does not parse.
    pub(crate) fn field(field: &'static str, text: &str, expected: &'static str) -> Self {
        LeaseLineError::Field {
            field,
            text: text.into(),
            expected,
        }
    }
}

/// Why a whole lease file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseFileError {
    /// The format could not be told from the content.
    #[error("not a dnsmasq leases file or a Kea memfile CSV (none of the first 16 lines that are not blank is `<expiry> <mac> <ip> ...`, `duid ...` or a header `address,...`); name the format if it is one of these")]
    UnknownFormat,
    /// A Kea file with no header among its first lines (all of them not UTF-8).
    #[error("no Kea header (`address,...`) in the first 16 lines that are not blank")]
    NoHeader,
    /// A Kea file whose header lacks a column the parser needs.
    #[error("Kea header has no `{0}` column")]
    MissingColumn(&'static str),
    /// A Kea header column whose name is not one Kea writes (lowercase letters, digits, `_`):
    /// a damaged header, in which a column the parser uses (`state`) could go unseen.
    #[error("Kea header column {column} is named {name:?}, not a column name (lowercase letters, digits and `_`): a damaged header")]
    BadColumnName {
        /// Its position, from 1.
        column: usize,
        /// The name as found (escaped when shown).
        name: String,
    },
    /// A header column Kea never wrote, within two edits of one the parser reads that the
    /// header lacks (`hwadr`): a damaged header, whose MACs or names would go unread.
    #[error("Kea header column {column} is named {name:?}, a column no Kea version writes, and has no `{meant}` column: a damaged header (its `{meant}` values would go unread)")]
    MisspeltColumn {
        /// Its position, from 1.
        column: usize,
        /// The name as found.
        name: String,
        /// The column it most likely was.
        meant: &'static str,
    },
    /// Lines, and not one lease among them (zeros after a power cut, a torn write, another
    /// format): applied, it would end every binding the file held.
    #[error("none of its lines is a lease ({skipped} skipped; the first: {first}): not applied, the bindings learned from it so far stay")]
    NoLease {
        /// Lines skipped.
        skipped: usize,
        /// The first of them, as `LINE: reason`.
        first: String,
    },
}

/// A skipped line: its number and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLease {
    /// 1-based line.
    pub line: u32,
    /// Why.
    pub error: LeaseLineError,
}

impl fmt::Display for BadLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.error)
    }
}

/// A lease file read: the leases in file order and the lines skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedLeases {
    /// Every lease row, in file order (a later row for an address supersedes an earlier one).
    pub leases: Vec<Lease>,
    /// Lines skipped, with why.
    pub bad: Vec<BadLease>,
    /// Rows that hold no address binding (Kea prefix delegations).
    pub skipped_prefixes: u32,
    /// The format it was read in; `None` for an empty file whose format was not named.
    pub format: Option<LeaseFormat>,
}

impl ParsedLeases {
    /// A line's text, or `None` after listing it as bad when it is not UTF-8.
    fn text<'a>(&mut self, line: u32, text: Result<&'a str, NotUtf8>) -> Option<&'a str> {
        text.map_err(|e| {
            self.bad.push(BadLease {
                line,
                error: e.into(),
            })
        })
        .ok()
    }
}

/// Parses a lease file in `format`, or in the format [`LeaseFormat::detect`] finds. An empty
/// file is a valid file with no lease.
pub fn parse(bytes: &[u8], format: Option<LeaseFormat>) -> Result<ParsedLeases, LeaseFileError> {
    let format = match format.or_else(|| LeaseFormat::detect(bytes)) {
        Some(f) => f,
        None if bytes.trim_ascii().is_empty() => return Ok(ParsedLeases::default()),
        None => return Err(LeaseFileError::UnknownFormat),
    };
    match format {
        LeaseFormat::Dnsmasq => Ok(dnsmasq::parse(bytes)),
        LeaseFormat::Kea => kea::parse(bytes),
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (and the 1-digit groups some writers use) into bytes, or `None`
/// if it is not colon-separated hex.
pub(crate) fn parse_hex_colons(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(':')
        .map(|p| {
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                None
            } else {
                u8::from_str_radix(p, 16).ok()
            }
        })
        .collect()
}

/// Longest host name kept (a DNS name's limit).
const MAX_HOSTNAME_LEN: usize = 253;

/// A host name as records carry it: without a trailing dot; `None` when empty, over 253 bytes,
/// holding an invisible character ([`crate::invisible`]: a control, a direction mark, a
/// zero-width character, a filler...), or one a spreadsheet would run as a formula
/// ([`crate::store::export::reads_as_formula`]: `=`, `+`, `-`, `@` first). The text comes
/// from clients: a record or a terminal must not be corrupted by it, a name must not read as
/// another one, and a spreadsheet must not run it as a formula (CSV output neutralises such
/// a cell too, but JSON Lines carries it exact into whatever tool reads it). A DNS label
/// never starts with any of them.
pub(crate) fn clean_hostname(text: &str) -> Option<Arc<str>> {
    let name = text.strip_suffix('.').unwrap_or(text);
    let formula = crate::store::export::reads_as_formula(name);
    (!name.is_empty()
        && name.len() <= MAX_HOSTNAME_LEN
        && !formula
        && crate::invisible::find(name).is_none())
    .then(|| Arc::from(name))
}

/// The MAC inside a DUID: DUID-LLT (type 1) and DUID-LL (type 3) with hardware type 1
/// (Ethernet) end with it. Other DUIDs (enterprise, UUID) carry none.
pub fn mac_from_duid(duid: &[u8]) -> Option<Mac> {
    let mac = match duid {
        [0, 1, 0, 1, _, _, _, _, rest @ ..] | [0, 3, 0, 1, rest @ ..] => rest,
        _ => return None,
    };
    <[u8; 6]>::try_from(mac).ok().map(Mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_content_or_named() {
        let here = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/idents/");
        let read = |f: &str| std::fs::read(format!("{here}{f}")).expect("fixture");
        assert_eq!(
            LeaseFormat::detect(&read("dnsmasq.leases")),
            Some(LeaseFormat::Dnsmasq)
        );
        assert_eq!(
            LeaseFormat::detect(&read("kea-leases4.csv")),
            Some(LeaseFormat::Kea)
        );
        assert_eq!(
            LeaseFormat::detect(&read("kea-leases6.csv")),
            Some(LeaseFormat::Kea)
        );
        assert_eq!(
            LeaseFormat::detect(b"\n duid 00:01\n"),
            Some(LeaseFormat::Dnsmasq)
        );
        assert_eq!(LeaseFormat::detect(b"lease 10.0.0.1 {\n"), None);
        // A byte-order mark (a file saved by a Windows editor) is dropped, as the parsers do
        // and as `check` does: it told such a file ok that the agent refused.
        for name in ["dnsmasq.leases", "kea-leases4.csv"] {
            let mut bom = b"\xef\xbb\xbf".to_vec();
            bom.extend(read(name));
            let plain = parse(&read(name), None).expect(name);
            let read = parse(&bom, None).expect(name);
            assert!(!read.leases.is_empty() && read.bad.is_empty(), "{name}");
            assert_eq!(read.leases, plain.leases, "{name}");
        }
        assert_eq!(
            parse(b"lease 10.0.0.1 {\n", None),
            Err(LeaseFileError::UnknownFormat)
        );
        assert_eq!(parse(b"\n", None), Ok(ParsedLeases::default()));
        assert_eq!("kea".parse::<LeaseFormat>(), Ok(LeaseFormat::Kea));
        assert!("isc".parse::<LeaseFormat>().is_err());
    }

    /// A damaged first line hid the format of every good line after it: the file was
    /// refused whole, with no line named. The format is now told by the first of the first
    /// 16 lines that are not blank that says it, and the lines before it are bad lines.
    #[test]
    fn a_damaged_first_line_is_a_bad_line_and_the_rest_applies() {
        let dnsmasq =
            b"garbage\n\n100 aa:bb:cc:dd:ee:01 10.0.0.1 h *\n100 aa:bb:cc:dd:ee:02 10.0.0.2 g *\n";
        assert_eq!(LeaseFormat::detect(dnsmasq), Some(LeaseFormat::Dnsmasq));
        let p = parse(dnsmasq, None).expect("told from line 3");
        assert_eq!(p.leases.len(), 2);
        let shown: Vec<String> = p.bad.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["1: 1 fields, expected 5 (expiry, MAC or IAID, address, host name, client id)"]
        );

        let kea = b"torn,row\n\
                    address,hwaddr,client_id,valid_lifetime,expire,state\n\
                    10.0.0.3,aa:bb:cc:dd:ee:03,,3600,1800003600,0\n";
        assert_eq!(LeaseFormat::detect(kea), Some(LeaseFormat::Kea));
        for format in [None, Some(LeaseFormat::Kea)] {
            let p = parse(kea, format).expect("told from line 2");
            assert_eq!(p.leases.len(), 1, "{format:?}");
            let shown: Vec<String> = p.bad.iter().map(ToString::to_string).collect();
            assert_eq!(
                shown,
                ["1: before Kea's header (`address,...`): not a lease row"],
                "{format:?}"
            );
        }

        // Past the first 16 lines that are not blank, nothing is looked for.
        let late = format!(
            "{}100 aa:bb:cc:dd:ee:01 10.0.0.1 h *\n",
            "junk\n\n".repeat(16)
        );
        assert_eq!(LeaseFormat::detect(late.as_bytes()), None);
        assert_eq!(
            parse(late.as_bytes(), None),
            Err(LeaseFileError::UnknownFormat)
        );
        let late_kea = format!("{}address,valid_lifetime,expire\n", "junk\n".repeat(16));
        assert_eq!(
            parse(late_kea.as_bytes(), Some(LeaseFormat::Kea)),
            Err(LeaseFileError::MissingColumn("address"))
        );
    }

    #[test]
    fn macs_inside_duids() {
        let mac = Mac([2, 0, 0, 0x77, 0, 2]);
        assert_eq!(mac_from_duid(&[0, 3, 0, 1, 2, 0, 0, 0x77, 0, 2]), Some(mac));
        assert_eq!(
            mac_from_duid(&[0, 1, 0, 1, 9, 9, 9, 9, 2, 0, 0, 0x77, 0, 2]),
            Some(mac)
        );
        assert_eq!(
            mac_from_duid(&[0, 3, 0, 6, 2, 0, 0, 0x77, 0, 2]),
            None,
            "not Ethernet"
        );
        assert_eq!(mac_from_duid(&[0, 2, 0, 0, 0, 9, 1, 2]), None, "enterprise");
        assert_eq!(mac_from_duid(&[0, 3, 0, 1, 2, 0]), None, "short");
        assert_eq!(parse_hex_colons("0:a:ff"), Some(vec![0, 10, 255]));
        assert_eq!(parse_hex_colons("0::a"), None);
        assert_eq!(parse_hex_colons("+a"), None);
        assert_eq!(clean_hostname("phone.lab.").as_deref(), Some("phone.lab"));
        assert_eq!(clean_hostname("a\u{1b}[2J"), None);
        assert_eq!(clean_hostname("."), None);
        assert_eq!(clean_hostname(&"a".repeat(254)), None);
    }

    #[test]
    fn host_names_that_a_spreadsheet_would_run_or_that_hide_characters_are_refused() {
        for formula in ["=HYPERLINK(\"http://x\")", "+cmd", "-2+3", "@SUM(A1)"] {
            assert_eq!(clean_hostname(formula), None, "{formula}");
        }
        for hidden in [
            "admin\u{202e}gpj.exe",
            "lap\u{200b}top",
            "a\u{2028}b",
            "\u{feff}phone",
            "soft\u{ad}hyphen",
            "iso\u{2066}late",
            "join\u{2060}er",
            "cgj\u{34f}x",
            "arabic\u{61c}mark",
            "mongol\u{180e}ian",
            "\u{3164}",
            "fill\u{115f}er",
            "half\u{ffa0}width",
            "anno\u{fff9}tation",
            "tag\u{e0041}\u{e007f}",
            "select\u{fe0f}or",
        ] {
            assert_eq!(clean_hostname(hidden), None, "{hidden:?}");
        }
        assert_eq!(
            clean_hostname("my-laptop.lab").as_deref(),
            Some("my-laptop.lab"),
            "a hyphen inside a name is fine"
        );
        assert_eq!(clean_hostname("Zoë").as_deref(), Some("Zoë"));
    }
}
