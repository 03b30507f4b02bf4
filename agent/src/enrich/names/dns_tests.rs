//! Tests of the DNS parser on built messages; real captures are in `tests/names.rs`.

use super::*;

/// A message builder: names are written uncompressed unless a pointer is asked for.
struct Msg(Vec<u8>);

impl Msg {
    fn new(id: u16, flags: u16, qd: u16, an: u16) -> Msg {
        let mut v = Vec::new();
        for x in [id, flags, qd, an, 0, 0] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        Msg(v)
    }
    fn name(mut self, name: &str) -> Msg {
        for l in name.split('.').filter(|l| !l.is_empty()) {
            self.0.push(l.len() as u8);
            self.0.extend_from_slice(l.as_bytes());
        }
        self.0.push(0);
        self
    }
    fn labels_then_ptr(mut self, labels: &str, ptr: u16) -> Msg {
        for l in labels.split('.').filter(|l| !l.is_empty()) {
            self.0.push(l.len() as u8);
            self.0.extend_from_slice(l.as_bytes());
        }
        self.0.extend_from_slice(&(0xc000 | ptr).to_be_bytes());
        self
    }
    fn u16(mut self, v: u16) -> Msg {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn rr_head(self, rtype: u16, ttl: u32, rdlen: u16) -> Msg {
        let mut m = self.u16(rtype).u16(1);
        m.0.extend_from_slice(&ttl.to_be_bytes());
        m.u16(rdlen)
    }
    fn bytes(mut self, b: &[u8]) -> Msg {
        self.0.extend_from_slice(b);
        self
    }
}

const RESPONSE: u16 = 0x8180;
const QNAME_AT: u16 = 12;

/// www.example.com A -> CNAME edge.cdn.example (300 s) -> A 192.0.2.1 (60 s) and
/// AAAA 2001:db8::1 (600 s), plus an unrelated A record.
fn cname_response() -> Vec<u8> {
    let m = Msg::new(0x1234, RESPONSE, 1, 4)
        .name("www.Example.COM")
        .u16(TYPE_A)
        .u16(1);
    let cname_target_at = m.0.len() as u16 + 12;
    m.u16(0xc000 | QNAME_AT)
        .rr_head(TYPE_CNAME, 300, 18)
        .name("edge.cdn.example")
        .u16(0xc000 | cname_target_at)
        .rr_head(TYPE_A, 60, 4)
        .bytes(&[192, 0, 2, 1])
        .u16(0xc000 | cname_target_at)
        .rr_head(TYPE_AAAA, 600, 16)
        .bytes(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        .name("unrelated.example")
        .rr_head(TYPE_A, 60, 4)
        .bytes(&[198, 51, 100, 9])
        .0
}

#[test]
fn a_cname_chain_resolves_to_the_question_name() {
    let m = parse(&cname_response()).expect("valid response");
    assert!(m.is_response && !m.truncated);
    assert_eq!(m.id, 0x1234);
    let q = m.question.expect("one question");
    assert_eq!((q.name.as_str(), q.qtype), ("www.example.com", TYPE_A));
    assert_eq!(
        m.answers,
        vec![
            Resolved {
                addr: "192.0.2.1".parse().expect("v4"),
                ttl: 60
            },
            Resolved {
                addr: "2001:db8::1".parse().expect("v6"),
                ttl: 300
            },
        ]
    );
}

#[test]
fn a_query_gives_its_question_only() {
    let q = Msg::new(7, 0x0100, 1, 0)
        .name("a.example")
        .u16(TYPE_AAAA)
        .u16(1)
        .0;
    let m = parse(&q).expect("valid query");
    assert!(!m.is_response && m.answers.is_empty());
    assert_eq!(m.question.map(|q| q.qtype), Some(TYPE_AAAA));
    let none = Msg::new(7, RESPONSE, 0, 0).0;
    assert_eq!(parse(&none).map(|m| m.question), Ok(None));
}

#[test]
fn a_cut_answer_section_keeps_the_answers_before_the_cut() {
    let full = cname_response();
    let m = parse(&full[..full.len() - 40]).expect("cut after the AAAA record's start");
    assert!(m.truncated);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        parse(&full[..20]),
        Err(ParseFailure::Truncated),
        "cut inside the question"
    );
    assert_eq!(parse(&full[..11]), Err(ParseFailure::DnsBadHeader));
}

#[test]
fn compression_loops_and_bad_pointers_are_refused() {
    let question = |m: Msg| m.u16(TYPE_A).u16(1).0;
    // A pointer to itself, forward, past the end, into the header, and a two-pointer loop.
    let self_ptr = question(Msg::new(1, RESPONSE, 1, 0).labels_then_ptr("", QNAME_AT));
    let forward = question(Msg::new(1, RESPONSE, 1, 0).labels_then_ptr("a", 40));
    let past_end = question(Msg::new(1, RESPONSE, 1, 0).labels_then_ptr("a", 0x3fff));
    let header = question(Msg::new(1, RESPONSE, 1, 0).labels_then_ptr("a", 2));
    let two = Msg::new(1, RESPONSE, 1, 1)
        .name("a.example")
        .u16(TYPE_A)
        .u16(1)
        .labels_then_ptr("x", 29) // points at the pointer below: forward
        .labels_then_ptr("y", 27)
        .rr_head(TYPE_A, 1, 4)
        .bytes(&[1, 2, 3, 4])
        .0;
    for (what, msg) in [
        ("self", self_ptr),
        ("forward", forward),
        ("past end", past_end),
        ("header", header),
    ] {
        assert_eq!(parse(&msg), Err(ParseFailure::DnsBadPointer), "{what}");
    }
    assert_eq!(parse(&two), Err(ParseFailure::DnsBadPointer));
}

/// A name reached through a chain of `jumps` pointers, each two bytes before the last,
/// down to the question name: the chain sits in an unknown record's data, and an A record's
/// owner points at its top.
fn pointer_chain(jumps: u16) -> Vec<u8> {
    let m = Msg::new(9, RESPONSE, 1, 2)
        .name("a.example")
        .u16(TYPE_A)
        .u16(1);
    // The unknown record: owner the question's name, data the chain.
    let mut m = m.u16(0xc000 | QNAME_AT).rr_head(99, 60, 2 * jumps);
    let first = m.0.len() as u16;
    m = m.u16(0xc000 | QNAME_AT);
    for i in 1..jumps {
        m = m.u16(0xc000 | (first + 2 * (i - 1)));
    }
    let top = first + 2 * (jumps - 1);
    m.u16(0xc000 | top)
        .rr_head(TYPE_A, 60, 4)
        .bytes(&[192, 0, 2, 7])
        .0
}

/// A chain of pointers is followed up to a bound, so one crafted message cannot cost
/// hundreds of jumps per name.
#[test]
fn a_long_chain_of_pointers_is_refused() {
    // The A record's owner: its own pointer, then the chain.
    let m = parse(&pointer_chain(MAX_JUMPS as u16 - 1)).expect("a chain within the bound");
    assert_eq!(
        m.answers,
        vec![Resolved {
            addr: "192.0.2.7".parse().expect("v4"),
            ttl: 60
        }]
    );
    assert_eq!(
        parse(&pointer_chain(MAX_JUMPS as u16)),
        Err(ParseFailure::DnsBadPointer)
    );
}

#[test]
fn bad_labels_and_over_long_names_are_refused() {
    let q = |m: Msg| m.u16(TYPE_A).u16(1).0;
    let mut ext_label = Msg::new(1, 0, 1, 0).0;
    ext_label.extend_from_slice(&[0x41, 0, 0, 1, 0, 1]);
    assert_eq!(parse(&ext_label), Err(ParseFailure::DnsBadName));
    let long = ["abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz1"; 4].join(".");
    assert_eq!(
        parse(&q(Msg::new(1, 0, 1, 0).name(&long))),
        Err(ParseFailure::DnsBadName)
    );
    let fits = ["abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz1"; 3].join(".");
    assert!(parse(&q(Msg::new(1, 0, 1, 0).name(&fits))).is_ok());
    // A byte no host name holds is kept in the presentation form (a wildcard zone answers
    // such names), and a dot inside a label stays inside it: not `www.example.com`.
    let odd = parse(&q(Msg::new(1, 0, 1, 0).name("odd name*.example"))).expect("parsed");
    assert_eq!(
        odd.question.map(|q| q.name.as_str().to_owned()),
        Some("odd\\032name\\042.example".to_owned())
    );
    let mut dotted = Msg::new(1, 0, 1, 0).0;
    dotted.extend_from_slice(b"\x0bwww.example\x03com\0");
    let dotted = parse(&q(Msg(dotted))).expect("parsed");
    assert_eq!(
        dotted.question.map(|q| q.name.as_str().to_owned()),
        Some("www\\046example.com".to_owned())
    );
    let short_a = Msg::new(1, RESPONSE, 1, 1)
        .name("a.example")
        .u16(TYPE_A)
        .u16(1)
        .u16(0xc000 | QNAME_AT)
        .rr_head(TYPE_A, 1, 3)
        .bytes(&[1, 2, 3])
        .0;
    assert_eq!(parse(&short_a), Err(ParseFailure::DnsBadRecord));
}

#[test]
fn cname_cycles_end_and_ttls_take_the_minimum() {
    let m = Msg::new(1, RESPONSE, 1, 3)
        .name("a.example")
        .u16(TYPE_A)
        .u16(1)
        .u16(0xc000 | QNAME_AT)
        .rr_head(TYPE_CNAME, 50, 11)
        .name("b.example")
        .labels_then_ptr("b", QNAME_AT + 2)
        .rr_head(TYPE_CNAME, 500, 2)
        .u16(0xc000 | QNAME_AT)
        .labels_then_ptr("b", QNAME_AT + 2)
        .rr_head(TYPE_A, 100, 4)
        .bytes(&[192, 0, 2, 8])
        .0;
    let parsed = parse(&m).expect("a cycle is valid DNS, if useless");
    assert_eq!(
        parsed.answers,
        vec![Resolved {
            addr: "192.0.2.8".parse().expect("v4"),
            ttl: 50
        }]
    );
}

#[test]
fn tcp_messages_split_on_length_prefixes() {
    let one = cname_response();
    let mut stream = Vec::new();
    for _ in 0..2 {
        stream.extend_from_slice(&(one.len() as u16).to_be_bytes());
        stream.extend_from_slice(&one);
    }
    stream.extend_from_slice(&[0, 40, 1, 2]);
    let msgs: Vec<&[u8]> = tcp_messages(&stream).collect();
    assert_eq!(msgs, vec![&one[..], &one[..]]);
    assert_eq!(tcp_messages(&[0]).count(), 0);
}

/// A response for `q.example` whose answer is a chain of `links` CNAMEs written in order
/// (`q` -> `c1` -> ... -> `cN`), then an A record of the last name.
fn in_order_chain(links: usize) -> Vec<u8> {
    let name = |i: usize| match i {
        0 => "q.example".to_owned(),
        i => format!("c{i}.example"),
    };
    let wire_len = |n: &str| n.split('.').map(|l| l.len() + 1).sum::<usize>() + 1;
    let answers = u16::try_from(links + 1).expect("a short chain");
    let mut m = Msg::new(1, RESPONSE, 1, answers)
        .name(&name(0))
        .u16(TYPE_A)
        .u16(1);
    for i in 1..=links {
        let target = name(i);
        let rdlen = u16::try_from(wire_len(&target)).expect("a short name");
        m = m
            .name(&name(i - 1))
            .rr_head(TYPE_CNAME, 300, rdlen)
            .name(&target);
    }
    m.name(&name(links))
        .rr_head(TYPE_A, 60, 4)
        .bytes(&[192, 0, 2, 20])
        .0
}

#[test]
fn the_chain_limit_counts_cnames_followed_not_passes() {
    let within = parse(&in_order_chain(MAX_CHAIN)).expect("a valid chain");
    assert_eq!(
        within.answers.len(),
        1,
        "a chain of {MAX_CHAIN} CNAMEs is followed to its address"
    );
    let past = parse(&in_order_chain(20)).expect("a long chain is valid DNS");
    assert_eq!(
        past.answers,
        vec![],
        "a chain of 20 CNAMEs in order stops after {MAX_CHAIN}"
    );
}
