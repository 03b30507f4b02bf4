//! DNS over TCP in the kernel, through BPF_PROG_TEST_RUN with real list files: a client's
//! stream is read as its server reads it, each message after its two-byte length, from where
//! the last segment left off (from its SYN's, also on a port pair used before). A length
//! sent in a segment of its own, several messages in one segment, a message's rest in a
//! later segment, retransmissions and other bytes in a segment's place are each judged where
//! they are; a segment that ends inside a length or a name passes, its message judged with
//! the segment that brings the rest; one that follows bytes never seen is a name that cannot
//! be walked (dropped only while a domain is blocked). And every question
//! of a message is judged, over UDP too. Needs root.

mod common;
mod verdict_common;

use agent_common::Counter;
use common::{dns_query_payload, tcp, v4, wire, Addrs, Spec, L4};
use verdict_common::{Lab, DROP, PASS};

/// A segment of the client at `sport` to port 53 with sequence number `seq`.
fn segment(sport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = Spec::tcp4(v4(198, 51, 100, 2), sport, v4(198, 18, 0, 53), 53, flags).seq(seq);
    s.payload = payload.to_vec();
    s.build()
}

/// `message` behind its length.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut v = (message.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(message);
    v
}

/// A query for `name` with an EDNS OPT record after its question (11 bytes), as resolvers
/// send them: a message with bytes past its name.
fn query(name: &str) -> Vec<u8> {
    let mut m = dns_query_payload(&wire(name));
    m[11] = 1; // ARCOUNT
    m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    m
}

/// The framed message `framed` with a length that takes the framed message `next` in too,
/// then `next`: one message where a server that kept `framed`'s own length reads two.
fn swallowing(framed: &[u8], next: &[u8]) -> Vec<u8> {
    let mut v = framed.to_vec();
    v[..2].copy_from_slice(&((framed.len() - 2 + next.len()) as u16).to_be_bytes());
    v.extend_from_slice(next);
    v
}

/// A connection from `sport` whose SYN had sequence number `isn`: its stream starts at
/// `isn + 1`.
fn connect(lab: &mut Lab, sport: u16, isn: u32) -> u32 {
    assert_eq!(lab.run(&segment(sport, isn, tcp::SYN, &[])), PASS, "SYN");
    isn + 1
}

#[test]
fn a_tcp_stream_is_judged_message_by_message_as_its_server_reads_it() {
    let mut lab = Lab::new("dnstcp", "example.com\n", "");
    let (blocked, passed) = (query("www.example.com"), query("www.example.org"));
    // Every segment below is read where its messages are: none is a name the walk cannot
    // read (which a domain rule would drop too).
    let unparsed = lab.counter(Counter::DnsNameUnparsed);

    // A length sent in a segment of its own: its message, next, is judged.
    let at = connect(&mut lab, 6000, 1000);
    let length = |m: &[u8]| (m.len() as u16).to_be_bytes();
    let alone = segment(6000, at, tcp::ACK, &length(&passed));
    assert_eq!(lab.run(&alone), PASS, "a length alone");
    let message = segment(6000, at + 2, tcp::ACK, &passed);
    assert_eq!(lab.run(&message), PASS, "the message after its length");
    let at = at + 2 + passed.len() as u32;
    assert_eq!(
        lab.run(&segment(6000, at, tcp::ACK, &length(&blocked))),
        PASS
    );
    let message = segment(6000, at + 2, tcp::ACK, &blocked);
    assert_eq!(
        lab.run(&message),
        DROP,
        "a blocked message after its length"
    );
    assert_eq!(lab.run(&message), DROP, "its retransmission");
    let again = segment(6000, at, tcp::ACK, &length(&blocked));
    assert_eq!(lab.run(&again), PASS, "its length again");
    assert_eq!(lab.run(&message), DROP, "and the message again");

    // Several messages in one segment: each is judged, the first blocked one drops it.
    let at = connect(&mut lab, 6001, 5000);
    let mut two = framed(&passed);
    two.extend_from_slice(&framed(&blocked));
    assert_eq!(
        lab.run(&segment(6001, at, tcp::ACK, &two)),
        DROP,
        "the second blocked"
    );
    let mut both = framed(&passed);
    both.extend_from_slice(&framed(&query("mail.example.org")));
    assert_eq!(
        lab.run(&segment(6001, at, tcp::ACK, &both)),
        PASS,
        "neither blocked"
    );
    // Bytes already judged again: a retransmission's head, cut inside a header, and a
    // keepalive's byte.
    let head = segment(6001, at, tcp::ACK, &both[..10]);
    assert_eq!(lab.run(&head), PASS, "a retransmission's head");
    // Other bytes there that no walk can read (a compression pointer where the name was)
    // are not taken for a cut head.
    let mut pointer = both[..20].to_vec();
    pointer[2 + 12] = 0xc0;
    let pointer = segment(6001, at, tcp::ACK, &pointer);
    assert_eq!(lab.run(&pointer), DROP, "a pointer in judged bytes' place");
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), unparsed + 1);
    let unparsed = unparsed + 1;
    let at = at + both.len() as u32;
    assert_eq!(
        lab.run(&segment(6001, at - 1, tcp::ACK, &[0])),
        PASS,
        "a keepalive"
    );
    let next = segment(6001, at, tcp::ACK, &framed(&passed));
    assert_eq!(lab.run(&next), PASS, "the message after them");
    // A full segment of them, the blocked one last.
    let mut full: Vec<u8> = Vec::new();
    while full.len() < 1400 {
        full.extend_from_slice(&framed(&passed));
    }
    let at = connect(&mut lab, 6007, 15000);
    assert_eq!(
        lab.run(&segment(6007, at, tcp::ACK, &full)),
        PASS,
        "a full segment"
    );
    let at = at + full.len() as u32;
    let mut last = full[framed(&passed).len()..].to_vec();
    last.extend_from_slice(&framed(&blocked));
    assert_eq!(
        lab.run(&segment(6007, at, tcp::ACK, &last)),
        DROP,
        "a full segment, the blocked one last"
    );

    // A message whose rest (its OPT record) comes in the next segment: judged by its name in
    // the first, the rest passes as part of it, and the message after is judged.
    let at = connect(&mut lab, 6002, 7000);
    let whole = framed(&passed);
    let (head, rest) = whole.split_at(whole.len() - 5);
    assert_eq!(
        lab.run(&segment(6002, at, tcp::ACK, head)),
        PASS,
        "a name passed"
    );
    let rest_at = at + head.len() as u32;
    assert_eq!(
        lab.run(&segment(6002, rest_at, tcp::ACK, rest)),
        PASS,
        "its rest"
    );
    let next = at + whole.len() as u32;
    let after = segment(6002, next, tcp::ACK, &framed(&passed));
    assert_eq!(lab.run(&after), PASS, "the next message");
    let whole = framed(&blocked);
    let at = connect(&mut lab, 6003, 9000);
    assert_eq!(
        lab.run(&segment(6003, at, tcp::ACK, &whole[..whole.len() - 5])),
        DROP,
        "a blocked name in a message's first segment"
    );

    // Other bytes where the last walk began (a segment the server threw away, or kept: it
    // keeps the bytes it received first) are never taken for bytes already judged, nor
    // judged as if the server read them: another length there is a stream the walk cannot
    // know, dropped while a domain is blocked. (Until 2026-12-07 they were walked as the
    // server's: a forged length could swallow a blocked query behind it, or a Fast Open
    // SYN's data that the server ignored left a query cut after its length unread.)
    let long = framed(&query("a-longer-name-than-the-blocked-one.example.org"));
    assert!(long.len() > whole.len());
    let at = connect(&mut lab, 6005, 13000);
    assert_eq!(lab.run(&segment(6005, at, tcp::ACK, &long)), PASS);
    assert_eq!(
        lab.run(&segment(6005, at, tcp::ACK, &whole)),
        DROP,
        "in its place"
    );
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), unparsed + 1);
    let unparsed = unparsed + 1;
    // The same bytes again (a retransmission, also with the next message behind them) are
    // read as before.
    assert_eq!(lab.run(&segment(6005, at, tcp::ACK, &long)), PASS, "again");
    let mut and_next = long.clone();
    and_next.extend_from_slice(&whole);
    assert_eq!(
        lab.run(&segment(6005, at, tcp::ACK, &and_next)),
        DROP,
        "again, with a blocked query after it"
    );
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), unparsed, "both read");
    // A length that swallows the next message: read as its server, which kept the first
    // copy, reads them, it is a message across where the next one was due.
    let (first, second) = (framed(&passed), framed(&blocked));
    let at = connect(&mut lab, 6011, 40_000);
    assert_eq!(lab.run(&segment(6011, at, tcp::ACK, &first)), PASS);
    assert_eq!(
        lab.run(&segment(6011, at, tcp::ACK, &swallowing(&first, &second))),
        DROP,
        "a forged length over the next message"
    );
    // The same first message again, but a second one whose length runs past where the
    // last walk's next message began.
    let at = connect(&mut lab, 6013, 45_000);
    let mut two = first.clone();
    two.extend_from_slice(&first);
    assert_eq!(lab.run(&segment(6013, at, tcp::ACK, &two)), PASS, "two");
    let mut across = first.clone();
    across.extend_from_slice(&swallowing(&first, &second));
    assert_eq!(
        lab.run(&segment(6013, at, tcp::ACK, &across)),
        DROP,
        "a second message across where the next was due"
    );
    // A length sent last in a segment, then a segment from the same place again with
    // another there: a longer one would swallow the query behind it into one message,
    // where the server, which kept the first length, reads that query next.
    let at = connect(&mut lab, 6014, 47_000);
    let mut ends_with_length = first.clone();
    ends_with_length.extend_from_slice(&first[..2]);
    assert_eq!(
        lab.run(&segment(6014, at, tcp::ACK, &ends_with_length)),
        PASS,
        "a message, then a length alone"
    );
    let mut longer = first.clone();
    longer.extend_from_slice(&((first.len() - 2 + second.len()) as u16).to_be_bytes());
    longer.extend_from_slice(&first[2..]);
    longer.extend_from_slice(&second);
    assert_eq!(
        lab.run(&segment(6014, at, tcp::ACK, &longer)),
        DROP,
        "another length where the last walk's last message began"
    );
    // A forged RST the server ignores, then a forged SYN far ahead: the flow's entry is a
    // new connection's and its stream starts there, but the real stream's queries, before
    // that start, were never judged: not passed as bytes judged.
    let at = connect(&mut lab, 6015, 60_000);
    assert_eq!(
        lab.run(&segment(6015, at, tcp::ACK, &first)),
        PASS,
        "a query"
    );
    let at = at + first.len() as u32;
    assert_eq!(
        lab.run(&segment(6015, at + 7, tcp::RST, &[])),
        PASS,
        "a RST"
    );
    assert_eq!(
        lab.run(&segment(6015, at + 100_000, tcp::SYN, &[])),
        PASS,
        "a forged SYN"
    );
    assert_eq!(
        lab.run(&segment(6015, at, tcp::ACK | tcp::PSH, &second)),
        DROP,
        "the real stream's blocked query"
    );
    // A forged SYN just behind the real stream, then a query starting there whose length
    // takes the real stream's next query in: the server, which kept the connection, threw
    // the bytes before its next one away and reads that query. A message across where the
    // replaced stream had got to cannot be judged; the real query, after bytes the new
    // stream never judged, cannot either. In two segments and in one.
    // Also behind a first forged SYN far ahead, whose stream the server never reached: it
    // does not move where the real stream had got to.
    let cases = [
        (6017, 80_000, false, false),
        (6018, 90_000, true, false),
        (6019, 95_000, false, true),
    ];
    for (sport, isn, one_segment, ahead_first) in cases {
        let at = connect(&mut lab, sport, isn);
        assert_eq!(lab.run(&segment(sport, at, tcp::ACK, &[])), PASS, "its ACK");
        if ahead_first {
            let ahead = segment(sport, at + 99_999, tcp::SYN, &[]);
            assert_eq!(lab.run(&ahead), PASS, "a forged SYN ahead");
        }
        let filler = swallowing(&first, &second)[..first.len()].to_vec();
        let behind = at - filler.len() as u32;
        let forged = segment(sport, behind - 1, tcp::SYN, &[]);
        assert_eq!(lab.run(&forged), PASS, "a forged SYN just behind");
        if one_segment {
            let mut both = filler.clone();
            both.extend_from_slice(&second);
            assert_eq!(
                lab.run(&segment(sport, behind, tcp::ACK, &both)),
                DROP,
                "a query across where the real stream was, with the blocked one in it"
            );
        } else {
            assert_eq!(
                lab.run(&segment(sport, behind, tcp::ACK, &filler)),
                DROP,
                "a query across where the real stream was"
            );
            assert_eq!(
                lab.run(&segment(sport, at, tcp::ACK | tcp::PSH, &second)),
                DROP,
                "the real stream's blocked query"
            );
        }
    }
    // A bare ACK far ahead before the real SYN: the entry's first packet is no connection
    // request, so its sequence number is no stream start, and the SYN's is.
    assert_eq!(
        lab.run(&segment(6016, 170_000, tcp::ACK, &[])),
        PASS,
        "a forged ACK first"
    );
    let at = connect(&mut lab, 6016, 70_000);
    assert_eq!(lab.run(&segment(6016, at, tcp::ACK, &[])), PASS, "its ACK");
    assert_eq!(
        lab.run(&segment(6016, at, tcp::ACK | tcp::PSH, &second)),
        DROP,
        "the blocked query after the real SYN"
    );
    // A Fast Open SYN's query its server ignored (no cookie), then another query at the
    // stream's start, its length alone first.
    let decoy = framed(&query("a-decoy-name-long-enough-to-pass-over.example.org"));
    assert_eq!(
        lab.run(&segment(6012, 50_000, tcp::SYN, &decoy)),
        PASS,
        "a Fast Open SYN"
    );
    let at = 50_001;
    assert_eq!(
        lab.run(&segment(6012, at, tcp::ACK, &second[..2])),
        DROP,
        "another length where the SYN's query began"
    );
    let unparsed = unparsed + 10;
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), unparsed);
    // A connection again between the same ports, once the last one was reset, starts its
    // stream after its SYN, however far the last one had gone.
    let end = at + long.len() as u32;
    assert_eq!(lab.run(&segment(6005, end, tcp::RST, &[])), PASS, "a RST");
    let at = connect(&mut lab, 6005, 12990);
    assert_eq!(
        lab.run(&segment(6005, at, tcp::ACK, &whole)),
        DROP,
        "a new connection"
    );
    // A forged SYN far ahead in an established connection (another sequence number: a new
    // attempt, as the flow table takes it) starts a stream there, and the real stream's
    // segments, before that start, were never judged: not passed as bytes already judged.
    // (Before, the blocked query at the real position passed.)
    let at = connect(&mut lab, 6010, 30_000);
    assert_eq!(lab.run(&segment(6010, at, tcp::ACK, &[])), PASS, "its ACK");
    let forged = segment(6010, at + 100_000, tcp::SYN, &[]);
    assert_eq!(lab.run(&forged), PASS, "a forged SYN");
    assert_eq!(
        lab.run(&segment(6010, at, tcp::ACK | tcp::PSH, &whole)),
        DROP,
        "the blocked query where the stream is"
    );
    let unparsed = unparsed + 1;
    // A Fast Open SYN's query, the SYN sent again without it (its answer lost): the stream
    // goes on after the query the server took. (Until 2026-12-06 the SYN sent again set the
    // position back to the stream's start, and the next segment was a gap.)
    let fast_open = segment(6009, 20_000, tcp::SYN, &framed(&passed));
    assert_eq!(lab.run(&fast_open), PASS, "a Fast Open SYN");
    assert_eq!(
        lab.run(&segment(6009, 20_000, tcp::SYN, &[])),
        PASS,
        "the SYN sent again"
    );
    let at = 20_001 + framed(&passed).len() as u32;
    let next = segment(6009, at, tcp::ACK, &framed(&passed));
    assert_eq!(lab.run(&next), PASS, "the next query");
    let next = segment(
        6009,
        at + framed(&passed).len() as u32,
        tcp::ACK,
        &framed(&blocked),
    );
    assert_eq!(lab.run(&next), DROP, "and a blocked one");
    // The first of two messages sent again alone (a retransmission cut smaller): passed as
    // judged, and the stream goes on after both. (Until 2026-12-06 its walk wrote the
    // position back to its end, and the next segment was a gap.)
    let at = connect(&mut lab, 6006, 17000);
    let mut two = framed(&passed);
    two.extend_from_slice(&framed(&passed));
    assert_eq!(lab.run(&segment(6006, at, tcp::ACK, &two)), PASS);
    let first = &two[..two.len() / 2];
    assert_eq!(
        lab.run(&segment(6006, at, tcp::ACK, first)),
        PASS,
        "the first again"
    );
    let after = segment(6006, at + two.len() as u32, tcp::ACK, &framed(&passed));
    assert_eq!(lab.run(&after), PASS, "the message after both");
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), unparsed, "all read");

    // After bytes never seen: dropped, as any name the walk cannot read, while a domain is
    // blocked.
    let at = connect(&mut lab, 6004, 11000);
    assert_eq!(
        lab.run(&segment(6004, at + 40, tcp::ACK, &framed(&passed))),
        DROP,
        "a segment after bytes never seen"
    );
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), unparsed + 1);
    assert_eq!(
        lab.run(&segment(6004, at, tcp::ACK, &framed(&passed))),
        PASS,
        "the stream from its start"
    );
}

/// A segment that ends inside a message's length, header or name passes, and the message is
/// judged with the segment that brings its rest, as its server reads it: a pipelining
/// client's full-sized segments end anywhere. Until 2026-12-06 such a segment was dropped
/// while a domain was blocked, and its connection stalled.
#[test]
fn a_message_cut_by_a_segments_end_is_judged_with_the_next() {
    let mut lab = Lab::new("dnstcpcut", "example.com\n", "");
    let unparsed = lab.counter(Counter::DnsNameUnparsed);
    let (blocked, passed) = (
        framed(&query("www.example.com")),
        framed(&query("www.example.org")),
    );
    // A passed message, then a blocked one, cut at every byte: the segment that completes
    // the blocked name is dropped, every one before it passes.
    let mut stream = passed.clone();
    stream.extend_from_slice(&blocked);
    let named = passed.len() + 2 + 12 + wire("www.example.com").len();
    for cut in 1..stream.len() {
        let sport = 7000 + cut as u16;
        let at = connect(&mut lab, sport, 1000 * cut as u32);
        let (head, rest) = (
            segment(sport, at, tcp::ACK, &stream[..cut]),
            segment(sport, at + cut as u32, tcp::ACK, &stream[cut..]),
        );
        if cut >= named {
            assert_eq!(lab.run(&head), DROP, "cut at {cut}: the blocked name whole");
            continue;
        }
        assert_eq!(lab.run(&head), PASS, "cut at {cut}: the head");
        assert_eq!(lab.run(&head), PASS, "cut at {cut}: the head again");
        assert_eq!(lab.run(&rest), DROP, "cut at {cut}: the rest");
        assert_eq!(lab.run(&rest), DROP, "cut at {cut}: the rest again");
    }
    // Two passed messages cut at every byte: both segments pass, and the stream goes on
    // from the right place.
    let mut stream = passed.clone();
    stream.extend_from_slice(&framed(&query("mail.example.org")));
    for cut in 1..stream.len() {
        let sport = 8000 + cut as u16;
        let at = connect(&mut lab, sport, 1000 * cut as u32);
        let head = segment(sport, at, tcp::ACK, &stream[..cut]);
        assert_eq!(lab.run(&head), PASS, "cut at {cut}: the head");
        let rest = segment(sport, at + cut as u32, tcp::ACK, &stream[cut..]);
        assert_eq!(lab.run(&rest), PASS, "cut at {cut}: the rest");
        let after = at + stream.len() as u32;
        let next = segment(sport, after, tcp::ACK, &blocked);
        assert_eq!(
            lab.run(&next),
            DROP,
            "cut at {cut}: a blocked message after"
        );
    }
    // A name cut twice, across three segments.
    let at = connect(&mut lab, 6400, 500);
    let (a, b) = (2 + 12 + 3, 2 + 12 + 9);
    for (from, to, want) in [(0, a, PASS), (a, b, PASS), (b, blocked.len(), DROP)] {
        let piece = segment(6400, at + from as u32, tcp::ACK, &blocked[from..to]);
        assert_eq!(lab.run(&piece), want, "bytes {from}..{to}");
    }
    // A full segment of pipelined messages whose last is cut inside its name, as an MSS
    // cuts them.
    let mut full = Vec::new();
    while full.len() < 1448 {
        full.extend_from_slice(&passed);
    }
    full.extend_from_slice(&blocked);
    let at = connect(&mut lab, 6401, 90_000);
    let cut = 1448;
    assert_eq!(
        lab.run(&segment(6401, at, tcp::ACK, &full[..cut])),
        PASS,
        "a full segment"
    );
    assert_eq!(
        lab.run(&segment(6401, at + cut as u32, tcp::ACK, &full[cut..])),
        DROP,
        "the blocked message's rest"
    );
    // Bytes in the held ones' place never replace them, as its server keeps the bytes it
    // received first: a keepalive's byte inside them, the head again with other bytes.
    let head = &blocked[..27]; // to the length of "com"
    let at = connect(&mut lab, 6410, 4000);
    assert_eq!(lab.run(&segment(6410, at, tcp::ACK, head)), PASS);
    let keepalive = segment(6410, at + 26, tcp::ACK, &[0]);
    assert_eq!(lab.run(&keepalive), PASS, "a keepalive's byte inside");
    let rest = segment(6410, at + 27, tcp::ACK, &blocked[27..]);
    assert_eq!(lab.run(&rest), DROP, "the rest after it");
    let mut other = blocked.clone();
    other[25] = b'f'; // www.examplf.com
    let at = connect(&mut lab, 6411, 5000);
    assert_eq!(lab.run(&segment(6411, at, tcp::ACK, head)), PASS);
    assert_eq!(
        lab.run(&segment(6411, at, tcp::ACK, &other)),
        DROP,
        "the head again with other bytes, and the rest"
    );
    // The first of three pieces again, after the second: the third still joins them.
    let at = connect(&mut lab, 6412, 6000);
    for (from, to) in [(0, 17), (17, 24), (0, 17), (24, passed.len())] {
        let piece = segment(6412, at + from as u32, tcp::ACK, &passed[from..to]);
        assert_eq!(lab.run(&piece), PASS, "bytes {from}..{to}");
    }
    let after = segment(6412, at + passed.len() as u32, tcp::ACK, &blocked);
    assert_eq!(lab.run(&after), DROP, "a blocked message after them");
    // A length sent alone, then its message cut: the length is kept with the held bytes.
    let at = connect(&mut lab, 6413, 7000);
    for (from, to, want) in [(0, 2, PASS), (2, 20, PASS), (20, blocked.len(), DROP)] {
        let piece = segment(6413, at + from as u32, tcp::ACK, &blocked[from..to]);
        assert_eq!(
            lab.run(&piece),
            want,
            "a length alone, then bytes {from}..{to}"
        );
    }
    // Cut across the sequence numbers' wrap.
    let at = connect(&mut lab, 6414, u32::MAX - 10);
    assert_eq!(lab.run(&segment(6414, at, tcp::ACK, &blocked[..20])), PASS);
    let rest = segment(6414, at.wrapping_add(20), tcp::ACK, &blocked[20..]);
    assert_eq!(lab.run(&rest), DROP, "the rest past the wrap");
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), unparsed, "all read");

    // What cannot be held or joined is a name the walk cannot read: more than 511 bytes of a
    // message before the cut (inside a third question's name, after two long ones), and a
    // segment past the held bytes.
    let long = |c: char| {
        let label: String = std::iter::repeat_n(c, 63).collect();
        format!("{label}.{label}.{label}.example.org")
    };
    let mut m = dns_query_payload(&wire(&long('a')));
    m[5] = 3;
    for c in ['b', 'c'] {
        m.extend_from_slice(&wire(&long(c)));
        m.extend_from_slice(&[0, 1, 0, 1]);
    }
    let m = framed(&m);
    let third = 2 + 12 + 2 * (wire(&long('a')).len() + 4);
    assert!(third < 511 && m.len() > 513, "cuts inside the third name");
    let at = connect(&mut lab, 6402, 300);
    assert_eq!(
        lab.run(&segment(6402, at, tcp::ACK, &m[..511])),
        PASS,
        "cut after 511 bytes of its message"
    );
    let rest = segment(6402, at + 511, tcp::ACK, &m[511..]);
    assert_eq!(lab.run(&rest), PASS, "its rest");
    let at = connect(&mut lab, 6402, 30_000);
    assert_eq!(
        lab.run(&segment(6402, at, tcp::ACK, &m[..512])),
        DROP,
        "cut after 512 bytes of its message"
    );
    let at = connect(&mut lab, 6403, 300);
    assert_eq!(lab.run(&segment(6403, at, tcp::ACK, &passed[..20])), PASS);
    assert_eq!(
        lab.run(&segment(6403, at + 21, tcp::ACK, &passed[21..])),
        DROP,
        "a byte after the held ones missing"
    );
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), unparsed + 2);
}

/// Without a blocked domain, segments that cannot be judged pass, counted; a stream picked
/// up without its SYN cannot be judged (where a message starts in it is not known), nor a
/// segment with urgent data (which a server reads out of the stream).
#[test]
fn unjudged_segments_pass_when_no_domain_is_blocked_and_a_stream_without_its_syn_is_not_judged() {
    let mut lab = Lab::new("dnstcpnone", "203.0.113.9\n", "");
    let at = connect(&mut lab, 6100, 3000);
    let before = lab.counter(Counter::DnsNameUnparsed);
    let passed = framed(&query("www.example.org"));
    assert_eq!(
        lab.run(&segment(6100, at + 7, tcp::ACK, &passed)),
        PASS,
        "a gap"
    );
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), before + 1);
    assert_eq!(
        lab.run(&segment(6103, 77_000, tcp::ACK, &passed)),
        PASS,
        "a stream without its SYN"
    );
    assert_eq!(lab.counter(Counter::DnsNameUnparsed), before + 2);

    let mut blocking = Lab::new("dnstcpmid", "example.com\n", "");
    let unparsed = blocking.counter(Counter::DnsNameUnparsed);
    let blocked = framed(&query("www.example.com"));
    // Its ID read as a length, a message the server reads after a length it had already
    // would pass unjudged: until 2026-12-06 the first segment seen was read from its start.
    let mut shifted = blocked[2..].to_vec();
    // An ID of 240, read as a length: the header after it, read two bytes off, asks no
    // question, and the message would be passed over whole.
    shifted[0..2].copy_from_slice(&[0, 240]);
    assert_eq!(
        blocking.run(&segment(6101, 77_002, tcp::ACK, &shifted)),
        DROP,
        "a message after a length sent before the stream was seen"
    );
    assert_eq!(blocking.counter(Counter::DnsNameUnparsed), unparsed + 1);
    // Urgent data, which the server reads out of the stream: one byte that would make the
    // walk read a length from it.
    let at = connect(&mut blocking, 6104, 500);
    let mut urgent = Spec::tcp4(
        v4(198, 51, 100, 2),
        6104,
        v4(198, 18, 0, 53),
        53,
        tcp::ACK | tcp::URG,
    )
    .seq(at);
    urgent.payload = vec![0xff];
    assert_eq!(blocking.run(&urgent.build()), DROP, "an urgent byte");
    assert_eq!(blocking.counter(Counter::DnsNameUnparsed), unparsed + 2);
    let unparsed = unparsed + 2;
    let v6 = Spec::new(
        Addrs::V6(common::v6(2), common::v6(0x53)),
        L4::Tcp {
            sport: 6102,
            dport: 53,
            flags: tcp::SYN,
        },
    )
    .seq(40);
    assert_eq!(blocking.run(&v6.build()), PASS, "an IPv6 SYN");
    let mut data = v6.clone().seq(41);
    data.l4 = L4::Tcp {
        sport: 6102,
        dport: 53,
        flags: tcp::ACK,
    };
    data.payload = blocked[..2].to_vec();
    assert_eq!(blocking.run(&data.build()), PASS, "an IPv6 length alone");
    data.payload = blocked[2..].to_vec();
    let data = data.seq(43);
    assert_eq!(blocking.run(&data.build()), DROP, "its message");
    assert_eq!(
        blocking.counter(Counter::DnsNameUnparsed),
        unparsed,
        "all read"
    );
}

/// A message with several questions (which servers mostly refuse): each is judged.
#[test]
fn every_question_of_a_message_is_judged() {
    let mut lab = Lab::new("dnsqd2", "example.com\n", "");
    let message = |names: &[&str], count: u8| {
        let mut m = dns_query_payload(&wire(names[0]));
        m[5] = count;
        for name in &names[1..] {
            m.extend_from_slice(&wire(name));
            m.extend_from_slice(&[0, 1, 0, 1]);
        }
        m
    };
    let udp = |sport: u16, m: Vec<u8>| {
        let mut s = Spec::udp4(v4(198, 51, 100, 2), sport, v4(198, 18, 0, 53), 53);
        s.payload = m;
        s.build()
    };
    let cases: [(&[&str], u8, u32, &str); 5] = [
        (
            &["a.example.org", "www.example.com"],
            2,
            DROP,
            "the second blocked",
        ),
        (
            &["www.example.com", "a.example.org"],
            2,
            DROP,
            "the first blocked",
        ),
        (
            &["a.example.org", "b.example.org"],
            2,
            PASS,
            "neither blocked",
        ),
        (
            &["a.example.org", "www.example.com"],
            1,
            PASS,
            "one question counted",
        ),
        (
            &["a.example.org"],
            2,
            DROP,
            "a second question missing: cut short",
        ),
    ];
    for (i, (names, count, want, what)) in cases.into_iter().enumerate() {
        let m = message(names, count);
        assert_eq!(
            lab.run(&udp(6200 + i as u16, m.clone())),
            want,
            "UDP: {what}"
        );
        let at = connect(&mut lab, 6300 + i as u16, 0);
        let tcp = segment(6300 + i as u16, at, tcp::ACK, &framed(&m));
        assert_eq!(lab.run(&tcp), want, "TCP: {what}");
    }
}
