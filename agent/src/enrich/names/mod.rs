//! Names: the domain a flow was for, and where it came from.
//!
//! The sources, in the order a record trusts them:
//! - [`tls`]: the server name (SNI) of a TLS ClientHello, from the first bytes of a TCP flow
//!   reassembled by [`payload::TcpReassembler`];
//! - [`quic`]: the SNI of a QUIC v1/v2 Initial, decrypted with the keys every observer can
//!   derive from the packet's destination connection id;
//! - [`http`]: the Host of an HTTP/1.x request (or the authority of an absolute-form target);
//! - failing those, [`dns`]: the answer that resolved the flow's destination for that client,
//!   kept per client with its TTL in [`cache::DnsCache`] (over TCP, each direction's messages
//!   reassembled by [`dns_tcp::DnsTcpStream`]).
//!
//! [`flow::FlowNames`] drives one flow from its payload snippets to a [`FlowName`];
//! [`attribute`] combines that with the client's DNS answer into the record's domain and
//! [`NameSource`]. Every parser takes untrusted bytes: it returns a [`ParseFailure`] (counted
//! by reason in [`FailureCounts`]) and never panics, loops or allocates without bound.

pub mod asked;
pub mod cache;
pub mod dns;
pub mod dns_tcp;
pub mod flow;
pub mod http;
pub mod payload;
pub mod quic;
#[cfg(test)]
pub(crate) mod testdata;
pub mod tls;
mod wire;

use std::fmt;
use std::sync::Arc;

use agent_common::domain::{MAX_LABEL_LEN, MAX_NAME_LEN};

/// Where a record's domain came from; the string forms are stable (they are stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameSource {
    /// The SNI of a TLS ClientHello over TCP.
    Sni,
    /// The SNI of the ClientHello inside a QUIC Initial.
    QuicSni,
    /// The Host of an HTTP/1.x request.
    HttpHost,
    /// The client's DNS answer for the destination (the flow carried no name).
    Dns,
    /// The ClientHello was encrypted (ECH): the name is the client's DNS answer.
    Ech,
    /// The ClientHello was encrypted (ECH) and no DNS answer is known: the name is the outer
    /// SNI, the client-facing server, not necessarily the site.
    EchOuter,
}

impl NameSource {
    /// Every source, in declaration order.
    pub const ALL: [NameSource; 6] = [
        NameSource::Sni,
        NameSource::QuicSni,
        NameSource::HttpHost,
        NameSource::Dns,
        NameSource::Ech,
        NameSource::EchOuter,
    ];

    /// The stable form stored in records.
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::Sni => "sni",
            NameSource::QuicSni => "quic",
            NameSource::HttpHost => "http",
            NameSource::Dns => "dns",
            NameSource::Ech => "ech",
            NameSource::EchOuter => "ech-outer",
        }
    }

    /// The source of a stored string form.
    pub fn from_str_form(s: &str) -> Option<NameSource> {
        Self::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

impl fmt::Display for NameSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a payload gave no name: each reason is counted on its own ([`FailureCounts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseFailure {
    /// TCP: the flow's first bytes are neither a TLS handshake nor an HTTP/1.x request.
    #[error(
        "flow payload: first bytes are neither a TLS handshake record nor an HTTP/1.x request line"
    )]
    UnknownProtocol,
    /// TCP: the client's first bytes ran past the reassembly budget before a name was complete.
    #[error("flow payload: the message is longer than the reassembly budget")]
    OverBudget,
    /// The flow ended (or its payload snippets did) in the middle of a message.
    #[error("flow payload: the message is truncated (the flow's captured bytes end inside it)")]
    Truncated,
    /// TCP: a retransmitted segment carried different bytes for the same sequence numbers.
    #[error("TCP reassembly: overlapping segments disagree on their bytes")]
    Inconsistent,
    /// TLS: a record header with a content type, version or length no TLS stack sends.
    #[error("TLS: bad record header (content type, version or length out of range)")]
    TlsBadRecord,
    /// TLS: the first handshake message is not a ClientHello.
    #[error("TLS: the first handshake message is not a ClientHello")]
    TlsNotClientHello,
    /// TLS: a ClientHello field overruns its message (session id, ciphers, compression).
    #[error("TLS: malformed ClientHello body (session id, cipher suites or compression methods)")]
    TlsBadHello,
    /// TLS: the extension list or the server_name extension is malformed.
    #[error("TLS: malformed extension list or server_name extension")]
    TlsBadExtension,
    /// HTTP: the request line or headers are not HTTP/1.x.
    #[error("HTTP: malformed request line or header")]
    HttpBadRequest,
    /// HTTP: more header lines than the parser's fixed table holds before the Host line.
    #[error("HTTP: too many header lines before Host")]
    HttpTooManyHeaders,
    /// QUIC: a long header that is truncated or inconsistent (lengths, connection ids).
    #[error("QUIC: malformed long header (lengths or connection ids)")]
    QuicBadHeader,
    /// QUIC: the first packet is not an Initial of a version we can decrypt.
    #[error("QUIC: not a client Initial of a supported version (v1, v2)")]
    QuicNotInitial,
    /// QUIC: the Initial did not decrypt (not sent by a client, or damaged).
    #[error("QUIC: Initial packet failed authentication")]
    QuicDecrypt,
    /// QUIC: a frame in a decrypted Initial is malformed or not allowed there.
    #[error("QUIC: malformed or forbidden frame in an Initial packet")]
    QuicBadFrame,
    /// QUIC: CRYPTO frames reach past the crypto-stream budget.
    #[error("QUIC: CRYPTO data past the crypto-stream budget")]
    QuicCryptoOverBudget,
    /// DNS: the 12-byte header is missing or says a count the message cannot hold.
    #[error("DNS: truncated or inconsistent header")]
    DnsBadHeader,
    /// DNS: a name has a bad label type, an over-long label or is longer than 255 bytes.
    #[error("DNS: malformed or over-long name")]
    DnsBadName,
    /// DNS: a compression pointer points past the message or forward into a loop.
    #[error("DNS: compression pointer out of bounds or looping")]
    DnsBadPointer,
    /// DNS: a resource record overruns the message.
    #[error("DNS: resource record overruns the message")]
    DnsBadRecord,
    /// A name (SNI, Host, QNAME) is not a valid host name (characters, label or total length).
    #[error("name: not a valid host name (characters, label or total length)")]
    BadName,
    /// DNS: an answer to a client whose queries are seen, for a question it was not seen
    /// asking (id, name and type): not taken into its cache ([`asked`]).
    #[error("DNS: an answer to a question its client was not seen asking")]
    DnsUnasked,
}

impl ParseFailure {
    /// Every reason, in declaration order (the index of [`FailureCounts`]).
    pub const ALL: [ParseFailure; 21] = [
        ParseFailure::UnknownProtocol,
        ParseFailure::OverBudget,
        ParseFailure::Truncated,
        ParseFailure::Inconsistent,
        ParseFailure::TlsBadRecord,
        ParseFailure::TlsNotClientHello,
        ParseFailure::TlsBadHello,
        ParseFailure::TlsBadExtension,
        ParseFailure::HttpBadRequest,
        ParseFailure::HttpTooManyHeaders,
        ParseFailure::QuicBadHeader,
        ParseFailure::QuicNotInitial,
        ParseFailure::QuicDecrypt,
        ParseFailure::QuicBadFrame,
        ParseFailure::QuicCryptoOverBudget,
        ParseFailure::DnsBadHeader,
        ParseFailure::DnsBadName,
        ParseFailure::DnsBadPointer,
        ParseFailure::DnsBadRecord,
        ParseFailure::BadName,
        ParseFailure::DnsUnasked,
    ];

    /// A stable snake-case label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseFailure::UnknownProtocol => "unknown_protocol",
            ParseFailure::OverBudget => "over_budget",
            ParseFailure::Truncated => "truncated",
            ParseFailure::Inconsistent => "inconsistent_retransmission",
            ParseFailure::TlsBadRecord => "tls_bad_record",
            ParseFailure::TlsNotClientHello => "tls_not_client_hello",
            ParseFailure::TlsBadHello => "tls_bad_hello",
            ParseFailure::TlsBadExtension => "tls_bad_extension",
            ParseFailure::HttpBadRequest => "http_bad_request",
            ParseFailure::HttpTooManyHeaders => "http_too_many_headers",
            ParseFailure::QuicBadHeader => "quic_bad_header",
            ParseFailure::QuicNotInitial => "quic_not_initial",
            ParseFailure::QuicDecrypt => "quic_decrypt",
            ParseFailure::QuicBadFrame => "quic_bad_frame",
            ParseFailure::QuicCryptoOverBudget => "quic_crypto_over_budget",
            ParseFailure::DnsBadHeader => "dns_bad_header",
            ParseFailure::DnsBadName => "dns_bad_name",
            ParseFailure::DnsBadPointer => "dns_bad_pointer",
            ParseFailure::DnsBadRecord => "dns_bad_record",
            ParseFailure::BadName => "bad_name",
            ParseFailure::DnsUnasked => "dns_unasked",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Parse failures counted by reason: what the agent reports as "bad input, by reason".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureCounts([u64; ParseFailure::ALL.len()]);

impl FailureCounts {
    /// Counts one failure.
    pub fn count(&mut self, reason: ParseFailure) {
        self.0[reason.index()] += 1;
    }

    /// The count for one reason.
    pub fn get(&self, reason: ParseFailure) -> u64 {
        self.0[reason.index()]
    }

    /// All failures, of every reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Every reason with its count, zeros included (a metric exists before it first moves).
    pub fn iter(&self) -> impl Iterator<Item = (ParseFailure, u64)> + '_ {
        ParseFailure::ALL.into_iter().map(|r| (r, self.get(r)))
    }
}

/// Whether `b` stands for itself in a host name: a letter, digit, `-` or `_`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The byte three decimal digits (`DDD` of a `\DDD` escape) stand for, if they do.
fn escaped_byte(digits: Option<&[u8]>) -> Option<u8> {
    let d = digits.filter(|d| d.len() == 3 && d.iter().all(u8::is_ascii_digit))?;
    let n = d.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0'));
    u8::try_from(n).ok()
}

/// A host name as records store it: ASCII lower case, no trailing dot, labels of letters,
/// digits, `-` and `_`, at most 63 bytes a label and 253 in all. Names on the wire are
/// already ASCII (IDNA punycode), so nothing is converted: anything else is refused, and so
/// is an all-digit last label (an address literal). One exception: a byte of a DNS label
/// that is none of those (a space, a `*`, a `.` inside a label) is written in the
/// presentation form of RFC 1035 (`\DDD`, three decimal digits) by the DNS reader, and that
/// form is taken here as the one byte it stands for; else a wildcard zone answering such
/// names left the flows to them unnamed, and a label holding a dot read as two labels.
///
/// The text is shared: a clone costs a reference count, so the DNS cache and every record
/// naming the same host hold one copy.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(Arc<str>);

impl DomainName {
    /// Normalises a name read from a packet (SNI, Host): lower case, trailing dot stripped,
    /// then checked; [`ParseFailure::BadName`] if it is not a host name.
    pub fn from_wire(raw: &[u8]) -> Result<DomainName, ParseFailure> {
        Self::parse(raw, false)
    }

    /// [`DomainName::from_wire`] for a DNS name as the DNS reader writes it: a label byte no
    /// host name holds in the `\DDD` form ([`DomainName::push_label_byte`]). Only there: an
    /// SNI or Host holding `\046` would read as a DNS label holding a dot, and only for such
    /// bytes, so each name has one form (`ev\105l` is not `evil`).
    pub fn from_dns(raw: &[u8]) -> Result<DomainName, ParseFailure> {
        Self::parse(raw, true)
    }

    fn parse(raw: &[u8], escapes: bool) -> Result<DomainName, ParseFailure> {
        let raw = raw.strip_suffix(b".").unwrap_or(raw);
        // Each name byte takes one to four bytes of text.
        if raw.is_empty() || raw.len() > 4 * MAX_NAME_LEN {
            return Err(ParseFailure::BadName);
        }
        // Bytes of the name (an escape is one) and of its last label so far, and where that
        // label starts in `raw`.
        let (mut bytes, mut label, mut last) = (0usize, 0usize, 0usize);
        let mut i = 0;
        while let Some(&b) = raw.get(i) {
            i += if b == b'.' {
                if label == 0 {
                    return Err(ParseFailure::BadName);
                }
                label = 0;
                last = i + 1;
                1
            } else {
                label += 1;
                if label > MAX_LABEL_LEN {
                    return Err(ParseFailure::BadName);
                }
                if is_name_byte(b) {
                    1
                } else if b == b'\\'
                    && escapes
                    && escaped_byte(raw.get(i + 1..i + 4)).is_some_and(|e| !is_name_byte(e))
                {
                    4
                } else {
                    return Err(ParseFailure::BadName);
                }
            };
            bytes += 1;
        }
        // An all-digit last label is an address literal (or a typo of one), never a host.
        if label == 0 || bytes > MAX_NAME_LEN || raw[last..].iter().all(u8::is_ascii_digit) {
            return Err(ParseFailure::BadName);
        }
        let text: String = raw
            .iter()
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect();
        Ok(DomainName(text.into()))
    }

    /// Writes one byte of a DNS label as [`DomainName::from_wire`] takes it: itself if it is
    /// a letter, digit, `-` or `_` (lower case), else in the `\DDD` form.
    pub(crate) fn push_label_byte(out: &mut Vec<u8>, b: u8) {
        let b = b.to_ascii_lowercase();
        if is_name_byte(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'\\', b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10]);
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text itself, shared (a copy of the name that costs no allocation).
    pub(crate) fn shared_text(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// The same name in a copy of its own text.
    pub(crate) fn unshared(&self) -> DomainName {
        DomainName(Arc::from(&*self.0))
    }

    /// Starts loading the text into the cache (a record copies it shortly).
    #[inline]
    pub fn prefetch(&self) {
        crate::enrich::prefetch::line(self.0.as_ptr());
    }

    /// Whether `self` and `other` share their text (not only equal it).
    pub fn shares_text(&self, other: &DomainName) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::borrow::Borrow<str> for DomainName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a flow's own first bytes say about its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowName {
    /// A name the flow carried in the clear.
    Name {
        /// The name.
        name: DomainName,
        /// Which field carried it: [`NameSource::Sni`], [`NameSource::QuicSni`] or
        /// [`NameSource::HttpHost`].
        source: NameSource,
    },
    /// The ClientHello offers Encrypted ClientHello (extension 0xfe0d, outer): its SNI, if
    /// any, names the client-facing server, and the real name is hidden.
    Ech {
        /// The outer SNI.
        outer: Option<DomainName>,
        /// TCP ([`NameSource::Sni`]) or QUIC ([`NameSource::QuicSni`]).
        carrier: NameSource,
    },
    /// The protocol was understood and carries no name: a ClientHello without SNI, an
    /// HTTP/1.0 request without Host, a Host that is an address literal.
    NoName,
}

/// The record's domain: the flow's own name first, then the client's DNS answer.
///
/// Encrypted ClientHello leaves the name to DNS ([`NameSource::Ech`]). Chrome sends a GREASE
/// ECH extension on every connection that has no ECH configuration, indistinguishable from a
/// real one by design; then the outer SNI is the real name and the client's DNS answer names
/// the same host, so a DNS answer equal to the outer SNI is recorded as plain
/// [`NameSource::Sni`]. With no DNS answer the outer SNI is kept as
/// [`NameSource::EchOuter`]: the client-facing server is better than nothing, and says so.
pub fn attribute(
    flow: Option<&FlowName>,
    dns: Option<&DomainName>,
) -> Option<(DomainName, NameSource)> {
    match flow {
        Some(FlowName::Name { name, source }) => Some((name.clone(), *source)),
        Some(FlowName::Ech { outer, carrier }) => match (dns, outer) {
            (Some(d), Some(o)) if d == o => Some((o.clone(), *carrier)),
            (Some(d), _) => Some((d.clone(), NameSource::Ech)),
            (None, Some(o)) => Some((o.clone(), NameSource::EchOuter)),
            (None, None) => None,
        },
        Some(FlowName::NoName) | None => dns.map(|d| (d.clone(), NameSource::Dns)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> DomainName {
        DomainName::from_wire(s.as_bytes()).expect("test name is valid")
    }

    fn refused(parse: fn(&[u8]) -> Result<DomainName, ParseFailure>, bad: &[u8]) {
        assert_eq!(
            parse(bad),
            Err(ParseFailure::BadName),
            "{:?} must be refused",
            String::from_utf8_lossy(bad)
        );
    }

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(n("WWW.Example.COM.").as_str(), "www.example.com");
        assert_eq!(
            n("_dmarc.xn--bcher-kva.example").as_str(),
            "_dmarc.xn--bcher-kva.example"
        );
        for bad in [
            &b""[..],
            b".",
            b"a..b",
            b".a",
            b"a b",
            b"a/b",
            b"a\0b",
            "bücher.de".as_bytes(),
            b"example.com:443",
            b"192.0.2.1",
        ] {
            refused(DomainName::from_wire, bad);
        }
        // A DNS label byte that is no host name's, in the presentation form the DNS reader
        // writes: one byte of the label, so a name that holds it is still a name.
        let dns = |s: &str| DomainName::from_dns(s.as_bytes()).expect("a DNS name");
        assert_eq!(dns("x\\032y.Evil.example").as_str(), "x\\032y.evil.example");
        assert_eq!(dns("www\\046example.com").as_str(), "www\\046example.com");
        // Not in an SNI or Host (which would then read as a DNS label holding a dot), and
        // never for a byte that stands for itself (one form per name: `ev\105l` is no `evil`,
        // `1.2.3.\052` no address).
        assert_eq!(
            DomainName::from_wire(b"www\\046example.com"),
            Err(ParseFailure::BadName)
        );
        for bad in [
            &b"a\\256b.example"[..],
            b"a\\12b.example",
            b"a\\",
            b"a\\x41b.c",
            b"ev\\105l.example",
            b"\\069vil.example",
            b"1.2.3.\\052",
        ] {
            refused(DomainName::from_dns, bad);
        }
        let escapes = "\\042".repeat(63);
        assert!(DomainName::from_dns(format!("{escapes}.com").as_bytes()).is_ok());
        assert!(DomainName::from_dns(format!("{escapes}a.com").as_bytes()).is_err());
        let mut wire = Vec::new();
        for b in *b"a b*" {
            DomainName::push_label_byte(&mut wire, b);
        }
        assert_eq!(wire, b"a\\032b\\042");
        let label = "a".repeat(63);
        assert!(DomainName::from_wire(format!("{label}.com").as_bytes()).is_ok());
        assert!(DomainName::from_wire(format!("{label}a.com").as_bytes()).is_err());
        let long = ["abcdefghi"; 26].join(".");
        assert_eq!(long.len(), 259);
        assert!(DomainName::from_wire(&long.as_bytes()[..253]).is_ok());
        assert!(DomainName::from_wire(&long.as_bytes()[..254]).is_err());
    }

    #[test]
    fn source_strings_are_stable_and_round_trip() {
        let forms: Vec<_> = NameSource::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(forms, ["sni", "quic", "http", "dns", "ech", "ech-outer"]);
        for s in NameSource::ALL {
            assert_eq!(NameSource::from_str_form(s.as_str()), Some(s));
        }
        assert_eq!(NameSource::from_str_form("SNI"), None);
    }

    #[test]
    fn failure_labels_are_unique_and_indexed_in_order() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in ParseFailure::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?} out of order in ALL");
            assert!(seen.insert(r.as_str()), "{} used twice", r.as_str());
        }
        let mut c = FailureCounts::default();
        c.count(ParseFailure::DnsBadPointer);
        c.count(ParseFailure::DnsBadPointer);
        c.count(ParseFailure::BadName);
        assert_eq!(c.get(ParseFailure::DnsBadPointer), 2);
        assert_eq!(c.total(), 3);
        assert_eq!(c.iter().count(), ParseFailure::ALL.len());
    }

    #[test]
    fn attribution_prefers_the_flow_and_leaves_ech_to_dns() {
        let sni = FlowName::Name {
            name: n("a.example"),
            source: NameSource::Sni,
        };
        let dns = n("b.example");
        assert_eq!(
            attribute(Some(&sni), Some(&dns)),
            Some((n("a.example"), NameSource::Sni))
        );
        assert_eq!(
            attribute(None, Some(&dns)),
            Some((dns.clone(), NameSource::Dns))
        );
        assert_eq!(
            attribute(Some(&FlowName::NoName), Some(&dns)),
            Some((dns.clone(), NameSource::Dns))
        );
        assert_eq!(attribute(Some(&FlowName::NoName), None), None);
        let ech = FlowName::Ech {
            outer: Some(n("cover.example")),
            carrier: NameSource::QuicSni,
        };
        assert_eq!(
            attribute(Some(&ech), Some(&dns)),
            Some((dns.clone(), NameSource::Ech))
        );
        assert_eq!(
            attribute(Some(&ech), None),
            Some((n("cover.example"), NameSource::EchOuter))
        );
        let grease = FlowName::Ech {
            outer: Some(n("b.example")),
            carrier: NameSource::Sni,
        };
        assert_eq!(
            attribute(Some(&grease), Some(&dns)),
            Some((dns, NameSource::Sni))
        );
        let bare = FlowName::Ech {
            outer: None,
            carrier: NameSource::Sni,
        };
        assert_eq!(attribute(Some(&bare), None), None);
    }
}
