//! DNS over TCP (RFC 1035 section 4.2.2, RFC 7766): each direction of a TCP/53 flow is a
//! stream of messages, each behind a 2-byte length, and a message (an answer with many
//! records, or one cut by a small MSS) may span segments that arrive out of order or twice.
//! [`DnsTcpStream`] reassembles one direction with the flow reassembler
//! ([`super::payload::Reassembler`], within [`DNS_TCP_BUDGET`] bytes) and hands out each
//! message once, when it is complete.

use super::dns::{self, DnsMessage};
use super::payload::Reassembler;
use super::ParseFailure;

/// Bytes kept per direction: XDP copies at most six packets a direction of a TCP/53 flow
/// (`agent_common::payload::DNS_TCP_PACKETS`), a query and an answer of a few segments; an
/// answer past this is cut and counted.
pub const DNS_TCP_BUDGET: usize = 8192;

/// One direction of a DNS-over-TCP flow; see the module docs.
///
/// The responder's start is not known (XDP sees only the originator's SYN), so the lowest
/// sequence number received stands for it; a later segment that arrives first is then read
/// from a wrong offset. Its reading is only trusted once a message parses: a first message
/// that fails is held back (not reported, nothing read) until the start moves back or the
/// stream ends, and a start that moves back past a message already handed out stops the
/// stream as inconsistent.
#[derive(Debug)]
pub struct DnsTcpStream {
    /// The bytes not read yet: what was read is released.
    bytes: Reassembler,
    /// The start was not known when the stream was made.
    guessed: bool,
    /// With a guessed start, where the first message handed out began.
    origin: Option<u32>,
    /// Why the first message at a guessed start did not parse, held back.
    held: Option<ParseFailure>,
    /// Nothing more will be read: the stream failed, ran past the budget, or ended.
    over: bool,
}

impl DnsTcpStream {
    /// A direction whose first byte has sequence number `start` when known (the originator's,
    /// from its SYN); otherwise the lowest sequence number received is taken as the start.
    pub fn new(start: Option<u32>) -> Self {
        DnsTcpStream {
            bytes: Reassembler::new(start, DNS_TCP_BUDGET),
            guessed: start.is_none(),
            origin: None,
            held: None,
            over: false,
        }
    }

    /// Takes one segment; calls `each` with every message it completes, parsed (or why not),
    /// in stream order. A stream whose segments disagree, or that runs past the budget in the
    /// middle of a message, reports that once and then ignores what follows.
    pub fn push(
        &mut self,
        seq: u32,
        data: &[u8],
        mut each: impl FnMut(Result<DnsMessage, ParseFailure>),
    ) {
        if self.over {
            return;
        }
        let before_origin = self
            .origin
            .is_some_and(|origin| (seq.wrapping_sub(origin) as i32) < 0);
        if before_origin {
            // The guessed start was wrong, and a message read from it was handed out.
            self.stop(ParseFailure::Inconsistent, each);
            return;
        }
        self.bytes.push(seq, data);
        let mut stream = Vec::new();
        if self.bytes.assemble(&mut stream).inconsistent {
            // Bytes already received changed under us: nothing after can be trusted to be
            // aligned on a message.
            self.stop(ParseFailure::Inconsistent, each);
            return;
        }
        let mut read = 0;
        self.held = None;
        for msg in dns::tcp_messages(&stream) {
            let parsed = dns::parse(msg);
            if self.guessed && self.origin.is_none() {
                if let Err(why) = parsed {
                    // Perhaps a later segment read as the stream's start.
                    self.held = Some(why);
                    break;
                }
                self.origin = self.bytes.first_seq();
            }
            read += 2 + msg.len();
            each(parsed);
        }
        if self.bytes.exhausted() && read < stream.len() {
            let why = self.held.take().unwrap_or(ParseFailure::OverBudget);
            self.stop(why, each);
            return;
        }
        if read > 0 {
            self.bytes.release(read);
        }
    }

    /// No more segments will come: why the first message of a guessed start did not parse,
    /// if it did not. The stream holds nothing after.
    pub fn finish(&mut self) -> Option<ParseFailure> {
        self.over = true;
        self.bytes = Reassembler::new(None, 0);
        self.held.take()
    }

    /// Whether nothing more will be read (the stream can be dropped, once its end is noted).
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// Heap bytes held by the stream's unread segments.
    pub fn held_bytes(&self) -> usize {
        self.bytes.held_bytes()
    }

    /// Reports `why` and stops reading, releasing what is held.
    fn stop(&mut self, why: ParseFailure, mut each: impl FnMut(Result<DnsMessage, ParseFailure>)) {
        self.held = None;
        self.finish();
        each(Err(why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// A response for `name` with one A record `addr`, prefixed with its TCP length.
    fn framed_answer(id: u16, name: &str, addr: [u8; 4]) -> Vec<u8> {
        let mut m = vec![0, 0];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        m.extend_from_slice(&addr);
        let len = (m.len() - 2) as u16;
        m[..2].copy_from_slice(&len.to_be_bytes());
        m
    }

    fn run(s: &mut DnsTcpStream, seq: u32, data: &[u8]) -> Vec<Result<DnsMessage, ParseFailure>> {
        let mut out = Vec::new();
        s.push(seq, data, |m| out.push(m));
        out
    }

    fn first_addr(m: &Result<DnsMessage, ParseFailure>) -> Option<IpAddr> {
        m.as_ref().ok()?.answers.first().map(|r| r.addr)
    }

    #[test]
    fn messages_split_across_segments_come_out_once_each_when_complete() {
        let mut bytes = framed_answer(1, "one.example", [192, 0, 2, 1]);
        bytes.extend(framed_answer(2, "two.example", [192, 0, 2, 2]));
        let isn = 0xffff_fffe; // sequence numbers wrap inside the stream
        let mut s = DnsTcpStream::new(None);
        // The first message's length and half its header: nothing yet.
        assert!(run(&mut s, isn, &bytes[..8]).is_empty());
        // The rest of the first message and the second's length prefix only.
        let cut = bytes.len() - 30;
        let got = run(&mut s, isn.wrapping_add(8), &bytes[8..cut]);
        assert_eq!(got.len(), 1, "the first message, complete");
        assert_eq!(
            first_addr(&got[0]),
            Some("192.0.2.1".parse().expect("literal"))
        );
        // A retransmission of what was read changes nothing.
        assert!(run(&mut s, isn, &bytes[..8]).is_empty());
        let got = run(&mut s, isn.wrapping_add(cut as u32), &bytes[cut..]);
        assert_eq!(got.len(), 1, "the second message");
        assert_eq!(
            first_addr(&got[0]),
            Some("192.0.2.2".parse().expect("literal"))
        );
    }

    #[test]
    fn an_out_of_order_answer_is_read_when_its_gap_fills() {
        let bytes = framed_answer(7, "late.example", [198, 51, 100, 7]);
        let mut s = DnsTcpStream::new(Some(1000));
        assert!(
            run(&mut s, 1020, &bytes[20..]).is_empty(),
            "a gap before it"
        );
        let got = run(&mut s, 1000, &bytes[..20]);
        assert_eq!(got.len(), 1);
        assert_eq!(
            first_addr(&got[0]),
            Some("198.51.100.7".parse().expect("literal"))
        );
    }

    #[test]
    fn a_later_segment_first_at_an_unknown_start_is_reread_from_the_real_start() {
        let bytes = framed_answer(9, "moved.example", [192, 0, 2, 9]);
        // The cut puts the record's type (0x0001) first: read as a length prefix, it frames a
        // one-byte garbage message.
        let cut = bytes.len() - 14;
        assert_eq!(&bytes[cut..cut + 2], &[0, 1]);
        let isn = 0xffff_fff0u32;
        let mut s = DnsTcpStream::new(None);
        assert!(run(&mut s, isn.wrapping_add(cut as u32), &bytes[cut..]).is_empty());
        let got = run(&mut s, isn, &bytes[..cut]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            first_addr(&got[0]),
            Some("192.0.2.9".parse().expect("literal"))
        );
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn an_unknown_start_moving_back_past_a_message_read_stops_the_stream() {
        let one = framed_answer(1, "one.example", [192, 0, 2, 1]);
        let two = framed_answer(2, "two.example", [192, 0, 2, 2]);
        let mut s = DnsTcpStream::new(None);
        let at = 5000u32;
        // The second message first: it parses, so its offset is taken as the start.
        assert_eq!(run(&mut s, at + one.len() as u32, &two).len(), 1);
        assert_eq!(run(&mut s, at, &one), vec![Err(ParseFailure::Inconsistent)]);
        assert!(s.is_over());
        // Garbage held back at a guessed start is reported when the stream ends.
        let mut s = DnsTcpStream::new(None);
        assert!(run(&mut s, 0, &[0, 3, 1, 2, 3]).is_empty());
        assert_eq!(s.finish(), Some(ParseFailure::DnsBadHeader));
    }

    #[test]
    fn read_messages_are_released() {
        let one = framed_answer(1, "one.example", [192, 0, 2, 1]);
        let mut s = DnsTcpStream::new(Some(0));
        assert!(run(&mut s, 0, &one[..10]).is_empty());
        let held = s.held_bytes();
        assert!(held >= 10, "{held}");
        assert_eq!(run(&mut s, 10, &one[10..]).len(), 1);
        assert_eq!(s.held_bytes(), 0, "a read message holds nothing");
    }

    #[test]
    fn garbage_disagreement_and_over_budget_are_reported_once() {
        // A length prefix that promises more than the budget holds.
        let mut s = DnsTcpStream::new(Some(0));
        let mut big = vec![0xff, 0xff];
        big.extend(std::iter::repeat_n(0u8, 1400));
        let mut seen = Vec::new();
        for i in 0..8u32 {
            s.push(i * 1402, &big, |m| seen.push(m));
        }
        assert_eq!(seen, vec![Err(ParseFailure::OverBudget)]);
        // A complete message of garbage: its parse failure.
        let mut s = DnsTcpStream::new(Some(0));
        assert_eq!(
            run(&mut s, 0, &[0, 3, 1, 2, 3]),
            vec![Err(ParseFailure::DnsBadHeader)]
        );
        // A retransmission with other bytes: the stream stops.
        let bytes = framed_answer(3, "x.example", [192, 0, 2, 3]);
        let mut s = DnsTcpStream::new(Some(0));
        assert!(run(&mut s, 0, &bytes[..10]).is_empty());
        let mut other = bytes.clone();
        other[4] ^= 0xff;
        assert_eq!(
            run(&mut s, 0, &other),
            vec![Err(ParseFailure::Inconsistent)]
        );
        assert!(run(&mut s, 0, &bytes).is_empty(), "nothing after");
    }
}
