//! The server name of a TLS ClientHello (RFC 8446 section 4.1.2, RFC 6066 section 3), and
//! whether it offers Encrypted ClientHello (draft-ietf-tls-esni, extension 0xfe0d).
//!
//! Record framing and the ClientHello body are read with `tls-parser`. Its extension-list
//! parsers are not used: they stop silently at the first extension whose contents they find
//! malformed (`many0(complete(..))`), so with browsers' random extension order an SNI placed
//! after such an extension would be reported missing. The list is walked here as plain
//! type-length-value entries, and only the server_name contents are parsed.

use tls_parser::{
    parse_tls_extension_sni_content, parse_tls_extension_unknown, parse_tls_handshake_client_hello,
    parse_tls_raw_record, Err as NomErr, SNIType, TlsExtension, TlsRecordType,
};

use super::wire::Cursor;
use super::{DomainName, ParseFailure};

/// TLS handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Extension type of server_name.
const EXT_SERVER_NAME: u16 = 0;
/// Extension type of encrypted_client_hello.
const EXT_ECH: u16 = 0xfe0d;
/// ECHClientHelloType of the outer ClientHello, the one sent in the clear.
const ECH_OUTER: u8 = 0;

/// What a ClientHello says about the server's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SniOutcome {
    /// The server name, in the clear.
    Name(DomainName),
    /// A complete ClientHello without server_name.
    NoSni,
    /// The ClientHello offers Encrypted ClientHello: `outer` (if any) names the client-facing
    /// server, and the real name is hidden.
    Ech {
        /// The outer SNI.
        outer: Option<DomainName>,
    },
    /// The bytes end inside the ClientHello: offer more, or give up with
    /// [`ParseFailure::Truncated`].
    NeedMore,
}

/// Whether `first` can open a TLS stream: a handshake record of TLS 1.0-1.3.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [0x16, 3, 0..=4, ..] | [0x16] | [0x16, 3])
}

/// The SNI of the ClientHello at the start of a client's TCP stream, which may span several
/// TLS records and several segments (reassemble them first).
pub fn client_hello_sni(stream: &[u8]) -> Result<SniOutcome, ParseFailure> {
    // The handshake message is usually whole in the first record: parse it in place, and
    // copy only when it continues in later records.
    let mut joined: Vec<u8> = Vec::new();
    let mut rest = stream;
    let mut first = true;
    loop {
        let record = match parse_tls_raw_record(rest) {
            Ok((r, record)) => {
                rest = r;
                record
            }
            Err(NomErr::Incomplete(_)) => return Ok(SniOutcome::NeedMore),
            Err(_) => return Err(ParseFailure::TlsBadRecord),
        };
        let version = record.hdr.version.0;
        if record.hdr.record_type != TlsRecordType::Handshake
            || !(0x0300..=0x0304).contains(&version)
        {
            return Err(ParseFailure::TlsBadRecord);
        }
        if !first {
            joined.extend_from_slice(record.data);
        }
        let outcome = handshake_sni(if first { record.data } else { &joined })?;
        if outcome != SniOutcome::NeedMore {
            return Ok(outcome);
        }
        if first {
            joined.extend_from_slice(record.data);
            first = false;
        }
        if rest.is_empty() {
            return Ok(SniOutcome::NeedMore);
        }
    }
}

/// The SNI of a ClientHello handshake message without record framing (a QUIC CRYPTO stream).
pub fn handshake_sni(handshake: &[u8]) -> Result<SniOutcome, ParseFailure> {
    let mut c = Cursor::new(handshake);
    let Some(kind) = c.u8() else {
        return Ok(SniOutcome::NeedMore);
    };
    if kind != CLIENT_HELLO {
        return Err(ParseFailure::TlsNotClientHello);
    }
    let Some(len) = c.u24() else {
        return Ok(SniOutcome::NeedMore);
    };
    let Some(body) = c.take(len as usize) else {
        return Ok(SniOutcome::NeedMore);
    };
    let (trailing, hello) =
        parse_tls_handshake_client_hello(body).map_err(|_| ParseFailure::TlsBadHello)?;
    // tls-parser reads an extension block that overruns the message as "no extensions".
    if !trailing.is_empty() {
        return Err(ParseFailure::TlsBadHello);
    }
    extensions_sni(hello.ext.unwrap_or(&[]))
}

/// Walks the extension list for server_name and encrypted_client_hello.
fn extensions_sni(mut list: &[u8]) -> Result<SniOutcome, ParseFailure> {
    let mut sni = None;
    let mut ech = false;
    while !list.is_empty() {
        let (rest, ext) =
            parse_tls_extension_unknown(list).map_err(|_| ParseFailure::TlsBadExtension)?;
        list = rest;
        let TlsExtension::Unknown(kind, data) = ext else {
            return Err(ParseFailure::TlsBadExtension);
        };
        match kind.0 {
            EXT_SERVER_NAME if sni.is_some() => return Err(ParseFailure::TlsBadExtension),
            EXT_SERVER_NAME => sni = Some(server_name(data)?),
            EXT_ECH => ech |= data.first() == Some(&ECH_OUTER),
            _ => {}
        }
    }
    let sni = sni.flatten();
    Ok(match (ech, sni) {
        (true, outer) => SniOutcome::Ech { outer },
        (false, Some(name)) => SniOutcome::Name(name),
        (false, None) => SniOutcome::NoSni,
    })
}

/// The host_name of a server_name extension's contents; `None` if it lists none.
fn server_name(data: &[u8]) -> Result<Option<DomainName>, ParseFailure> {
    let (_, parsed) =
        parse_tls_extension_sni_content(data).map_err(|_| ParseFailure::TlsBadExtension)?;
    let TlsExtension::SNI(names) = parsed else {
        return Err(ParseFailure::TlsBadExtension);
    };
    names
        .iter()
        .find(|(kind, _)| *kind == SNIType::HostName)
        .map(|(_, name)| DomainName::from_wire(name))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::names::testdata::{records, Hello};
    use crate::store::testgen::Rng;

    fn name(s: &str) -> SniOutcome {
        SniOutcome::Name(DomainName::from_wire(s.as_bytes()).expect("valid test name"))
    }

    #[test]
    fn a_chrome_sized_hello_in_random_extension_order() {
        let mut rng = Rng::new(1);
        for _ in 0..50 {
            let hello = Hello::chrome_like("www.example.org", &mut rng).encode();
            assert!(
                hello.len() > 1460,
                "a post-quantum hello spans two segments, got {}",
                hello.len()
            );
            let stream = records(&hello, 16384);
            assert_eq!(client_hello_sni(&stream), Ok(name("www.example.org")));
            assert_eq!(handshake_sni(&hello), Ok(name("www.example.org")));
            for cut in [0, 1, 5, 6, 200, stream.len() - 1] {
                assert_eq!(
                    client_hello_sni(&stream[..cut]),
                    Ok(SniOutcome::NeedMore),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_hello_fragmented_over_several_records() {
        let mut rng = Rng::new(2);
        let hello = Hello::chrome_like("split.example", &mut rng).encode();
        for frag in [1, 7, 100, 1000] {
            let stream = records(&hello, frag);
            assert_eq!(
                client_hello_sni(&stream),
                Ok(name("split.example")),
                "records of {frag} bytes"
            );
            assert_eq!(
                client_hello_sni(&stream[..stream.len() - 1]),
                Ok(SniOutcome::NeedMore)
            );
        }
    }

    #[test]
    fn ech_and_missing_sni_are_told_apart() {
        let mut rng = Rng::new(3);
        let mut h = Hello::chrome_like("cover.example", &mut rng);
        h.ech = true;
        let outer = DomainName::from_wire(b"cover.example").ok();
        assert_eq!(
            client_hello_sni(&records(&h.encode(), 16384)),
            Ok(SniOutcome::Ech { outer })
        );
        h.sni = None;
        assert_eq!(
            handshake_sni(&h.encode()),
            Ok(SniOutcome::Ech { outer: None })
        );
        h.ech = false;
        assert_eq!(handshake_sni(&h.encode()), Ok(SniOutcome::NoSni));
    }

    #[test]
    fn malformed_hellos_fail_by_reason() {
        let mut rng = Rng::new(4);
        let good = Hello::chrome_like("a.example", &mut rng).encode();
        let cases: Vec<(Vec<u8>, ParseFailure)> = vec![
            (vec![0x17, 3, 3, 0, 1, 0], ParseFailure::TlsBadRecord),
            (vec![0x16, 9, 9, 0, 1, 0], ParseFailure::TlsBadRecord),
            (records(&[2, 0, 0, 0], 100), ParseFailure::TlsNotClientHello),
            (records(&[1, 0, 0, 2, 3, 3], 100), ParseFailure::TlsBadHello),
            (
                {
                    let mut h = good.clone();
                    h.push(0); // a byte after the extension block, inside the message length
                    let len = (h.len() - 4) as u32;
                    h[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
                    records(&h, 16384)
                },
                ParseFailure::TlsBadHello,
            ),
            (
                records(&Hello::with_raw_extensions(&[0, 0, 0, 9, 1]), 16384),
                ParseFailure::TlsBadExtension,
            ),
            (
                records(&Hello::with_raw_extensions(&[0, 0, 0, 2, 0, 9]), 16384),
                ParseFailure::TlsBadExtension,
            ),
            (
                records(&Hello::with_raw_extensions(&sni_ext(b"bad name")), 16384),
                ParseFailure::BadName,
            ),
            (
                records(
                    &Hello::with_raw_extensions(&[sni_ext(b"a.b"), sni_ext(b"c.d")].concat()),
                    16384,
                ),
                ParseFailure::TlsBadExtension,
            ),
        ];
        for (i, (bytes, want)) in cases.iter().enumerate() {
            assert_eq!(client_hello_sni(bytes), Err(*want), "case {i}");
        }
    }

    #[test]
    fn tls_detection() {
        assert!(looks_like_tls(&[0x16, 3, 1, 2, 0]));
        assert!(looks_like_tls(&[0x16]));
        assert!(!looks_like_tls(&[0x16, 2]));
        assert!(!looks_like_tls(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_tls(&[]));
    }

    fn sni_ext(host: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0];
        v.extend_from_slice(&((host.len() + 5) as u16).to_be_bytes());
        v.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes());
        v.push(0);
        v.extend_from_slice(&(host.len() as u16).to_be_bytes());
        v.extend_from_slice(host);
        v
    }
}
