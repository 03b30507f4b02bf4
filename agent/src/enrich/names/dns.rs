//! DNS messages (RFC 1035 section 4): the question of a query, and for a response the
//! addresses that answer it, following CNAME chains back to the question name.
//!
//! A hand parser rather than `hickory-proto`: it decodes every record of a message into owned
//! names (1.5 us for a three-answer response, against about 0.2 us here), brings `rand`,
//! `url` and eight more crates, and we need three record types of it. Names are decoded with
//! compression pointers that must point strictly before the previous jump target, so a
//! pointer loop is impossible by construction; a name is at most 255 bytes on the wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::wire::Cursor;
use super::{DomainName, ParseFailure};

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const HEADER_LEN: usize = 12;
/// Longest name on the wire, length octets included (RFC 1035 section 2.3.4).
const MAX_WIRE_NAME: usize = 255;
/// Compression pointers followed in one name, at most. A compressor points once per name at
/// a suffix it wrote, which may itself end in a pointer: a few jumps. Without a bound, a
/// crafted chain of pointers each two bytes back (hundreds in one datagram, every record's
/// name at its top) made one packet cost over a hundred times a plain one to read.
const MAX_JUMPS: usize = 64;
/// CNAME links followed from the question name; resolvers stop near 8-16.
const MAX_CHAIN: usize = 16;

/// The question of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// The name asked for.
    pub name: DomainName,
    /// The record type asked for (1 A, 28 AAAA, 65 HTTPS, ...).
    pub qtype: u16,
}

/// An address that answers the question, with how long it may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The address.
    pub addr: IpAddr,
    /// Seconds: the smallest TTL along the CNAME chain and the address record.
    pub ttl: u32,
}

/// What a DNS message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    /// Transaction id.
    pub id: u16,
    /// Whether it is a response (QR bit).
    pub is_response: bool,
    /// Response code (0 NOERROR, 3 NXDOMAIN, ...).
    pub rcode: u8,
    /// The first question; `None` if the message has none.
    pub question: Option<Question>,
    /// Addresses answering the question (A and AAAA, reached through CNAMEs).
    pub answers: Vec<Resolved>,
    /// The answer section ends early (a snippet cut the message): `answers` holds the
    /// records before the cut.
    pub truncated: bool,
}

/// Reads one DNS message (the UDP payload, or a TCP message without its length prefix).
pub fn parse(msg: &[u8]) -> Result<DnsMessage, ParseFailure> {
    let mut c = Cursor::new(msg);
    let bad_header = ParseFailure::DnsBadHeader;
    let id = c.u16().ok_or(bad_header)?;
    let flags = c.u16().ok_or(bad_header)?;
    let qdcount = c.u16().ok_or(bad_header)?;
    let ancount = c.u16().ok_or(bad_header)?;
    c.u32().ok_or(bad_header)?; // authority and additional counts: not read
    let mut names = Names::default();
    let question = if qdcount > 0 {
        let q = names.read(msg, &mut c)?;
        let qtype = c.u16().ok_or(ParseFailure::DnsBadRecord)?;
        c.u16().ok_or(ParseFailure::DnsBadRecord)?;
        Some((q, qtype))
    } else {
        None
    };
    // Further questions (never sent in practice) are stepped over.
    for _ in 1..qdcount {
        names.skip(msg, &mut c)?;
        c.u32().ok_or(ParseFailure::DnsBadRecord)?;
    }
    let is_response = flags & 0x8000 != 0;
    let mut records = Vec::new();
    let mut truncated = false;
    if is_response && question.is_some() {
        for _ in 0..ancount {
            match read_record(msg, &mut c, &mut names) {
                Ok(Some(r)) => records.push(r),
                Ok(None) => {}
                Err(ParseFailure::Truncated) => {
                    truncated = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let answers = match &question {
        Some((q, _)) => resolve(&names, *q, &records),
        None => Vec::new(),
    };
    let question = match question {
        Some((q, qtype)) => Some(Question {
            name: DomainName::from_dns(names.get(q))?,
            qtype,
        }),
        None => None,
    };
    Ok(DnsMessage {
        id,
        is_response,
        rcode: (flags & 0x000f) as u8,
        question,
        answers,
        truncated,
    })
}

/// The question whose name starts at `at` in `msg` (a query's: the program says which one
/// a rule blocked); `None` if no whole question is there.
pub fn question_at(msg: &[u8], at: u16) -> Option<Question> {
    let mut c = Cursor::at(msg, usize::from(at));
    let mut names = Names::default();
    let q = names.read(msg, &mut c).ok()?;
    let qtype = c.u16()?;
    c.u16()?;
    Some(Question {
        name: DomainName::from_dns(names.get(q)).ok()?,
        qtype,
    })
}

/// The complete messages at the start of a DNS-over-TCP stream (each after its 2-byte
/// length, RFC 1035 section 4.2.2); a message cut short ends the iteration.
pub fn tcp_messages(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut c = Cursor::new(stream);
    std::iter::from_fn(move || {
        let mut peek = c;
        let len = peek.u16()?;
        let msg = peek.take(usize::from(len))?;
        c = peek;
        Some(msg)
    })
}

/// An answer record the resolution needs.
enum Record {
    Cname { owner: Span, target: Span, ttl: u32 },
    Addr { owner: Span, addr: IpAddr, ttl: u32 },
}

/// Reads one resource record; `None` for types other than A, AAAA and CNAME.
fn read_record<'m>(
    msg: &'m [u8],
    c: &mut Cursor<'m>,
    names: &mut Names,
) -> Result<Option<Record>, ParseFailure> {
    let owner = names.read(msg, c)?;
    let bad = ParseFailure::DnsBadRecord;
    let (Some(rtype), Some(class), Some(ttl)) = (c.u16(), c.u16(), c.u32()) else {
        return Err(ParseFailure::Truncated);
    };
    let rdlen = c.u16().ok_or(ParseFailure::Truncated)?;
    let rdata_at = c.pos();
    let rdata = c.take(usize::from(rdlen)).ok_or(ParseFailure::Truncated)?;
    // A TTL with the top bit set is read as 0 (RFC 2181 section 8).
    let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
    if class != CLASS_IN {
        return Ok(None);
    }
    Ok(match rtype {
        TYPE_A => {
            let a: [u8; 4] = rdata.try_into().map_err(|_| bad)?;
            Some(Record::Addr {
                owner,
                addr: Ipv4Addr::from(a).into(),
                ttl,
            })
        }
        TYPE_AAAA => {
            let a: [u8; 16] = rdata.try_into().map_err(|_| bad)?;
            Some(Record::Addr {
                owner,
                addr: Ipv6Addr::from(a).into(),
                ttl,
            })
        }
        TYPE_CNAME => {
            let mut rc = Cursor::at(msg, rdata_at);
            let target = names.read(msg, &mut rc)?;
            if rc.pos() != rdata_at + rdata.len() {
                return Err(bad);
            }
            Some(Record::Cname { owner, target, ttl })
        }
        _ => None,
    })
}

/// The addresses reachable from the question name, each with the smallest TTL on its path.
fn resolve(names: &Names, question: Span, records: &[Record]) -> Vec<Resolved> {
    // Names that stand for the question, with the TTL of the CNAMEs that led there.
    let mut aliases: Vec<(&[u8], u32)> = vec![(names.get(question), u32::MAX)];
    // Passes repeat for records out of chain order; the limit counts links, not passes (one
    // pass follows a whole chain written in order).
    'passes: loop {
        let mut grew = false;
        for r in records {
            let Record::Cname { owner, target, ttl } = r else {
                continue;
            };
            let target_name = names.get(*target);
            let Some(&(_, via)) = aliases.iter().find(|(n, _)| *n == names.get(*owner)) else {
                continue;
            };
            if aliases.iter().all(|(n, _)| *n != target_name) {
                if aliases.len() > MAX_CHAIN {
                    break 'passes;
                }
                aliases.push((target_name, via.min(*ttl)));
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    records
        .iter()
        .filter_map(|r| match r {
            Record::Addr { owner, addr, ttl } => aliases
                .iter()
                .find(|(n, _)| *n == names.get(*owner))
                .map(|&(_, via)| Resolved {
                    addr: *addr,
                    ttl: via.min(*ttl),
                }),
            Record::Cname { .. } => None,
        })
        .collect()
}

/// A decoded name inside [`Names`].
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// Decoded names of one message, in one buffer: lower case, dot-separated, no trailing dot.
#[derive(Default)]
struct Names {
    buf: Vec<u8>,
}

impl Names {
    fn get(&self, s: Span) -> &[u8] {
        &self.buf[s.start..s.start + s.len]
    }

    /// Decodes the name at the cursor and steps the cursor past it.
    fn read<'m>(&mut self, msg: &'m [u8], c: &mut Cursor<'m>) -> Result<Span, ParseFailure> {
        let start = self.buf.len();
        let result = walk_name(msg, c, |label| {
            if self.buf.len() > start {
                self.buf.push(b'.');
            }
            for &b in label {
                DomainName::push_label_byte(&mut self.buf, b);
            }
        });
        match result {
            Ok(()) => Ok(Span {
                start,
                len: self.buf.len() - start,
            }),
            Err(e) => {
                self.buf.truncate(start);
                Err(e)
            }
        }
    }

    /// Steps the cursor past the name, checking it as [`Names::read`] does.
    fn skip<'m>(&mut self, msg: &'m [u8], c: &mut Cursor<'m>) -> Result<(), ParseFailure> {
        walk_name(msg, c, |_| {})
    }
}

/// Walks the labels of the name at the cursor, following compression pointers; the cursor
/// ends after the name's bytes in place (after the first pointer, if any).
fn walk_name<'m>(
    msg: &'m [u8],
    c: &mut Cursor<'m>,
    mut label: impl FnMut(&[u8]),
) -> Result<(), ParseFailure> {
    let mut at = *c;
    let mut resume: Option<Cursor<'m>> = None;
    let mut floor = usize::MAX;
    let mut wire_len = 0usize;
    let mut jumps = 0;
    loop {
        // Running out of bytes in place is a cut message; behind a pointer, a bad pointer.
        let short = if resume.is_some() {
            ParseFailure::DnsBadPointer
        } else {
            ParseFailure::Truncated
        };
        let here = at.pos();
        let len = at.u8().ok_or(short)?;
        match len >> 6 {
            0b00 if len == 0 => break,
            0b00 => {
                wire_len += 1 + usize::from(len);
                if wire_len + 1 > MAX_WIRE_NAME {
                    return Err(ParseFailure::DnsBadName);
                }
                label(at.take(usize::from(len)).ok_or(short)?);
            }
            0b11 => {
                let low = at.u8().ok_or(short)?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                // Strictly backwards, and before the previous target: a compressor only
                // points at names it wrote earlier, and this makes a loop impossible.
                jumps += 1;
                if target >= floor.min(here) || target < HEADER_LEN || jumps > MAX_JUMPS {
                    return Err(ParseFailure::DnsBadPointer);
                }
                floor = target;
                resume.get_or_insert(at);
                at = Cursor::at(msg, target);
            }
            _ => return Err(ParseFailure::DnsBadName),
        }
    }
    *c = resume.unwrap_or(at);
    Ok(())
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
