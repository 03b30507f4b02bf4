//! DNS questions seen asked: an answer fills a client's cache only if that client was seen
//! asking its question (same transaction id, name and type) within [`ANSWER_WINDOW_NS`].
//! XDP sees a datagram from port 53 without any handshake, so without this one spoofed packet
//! would bind any address to any name for any client, and every later flow of that client to
//! the address would carry the name.
//!
//! The check holds only where the client's queries are visible: a client not seen asking
//! anything in the last [`ASKER_WINDOW_NS`] (its queries cross no audited interface, or the
//! answer's destination is a translated address) has its answers taken as before.
//!
//! Bounded: at most `capacity` questions and as many clients; when a table is full its
//! expired entries go, and if it is still full it is emptied (counted): a flood of spoofed
//! queries costs answers for a window, never memory.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;

use super::dns::DnsMessage;
use super::DomainName;

/// How long after its question an answer is taken (a resolver's retries included).
pub const ANSWER_WINDOW_NS: i64 = 30 * 1_000_000_000;
/// How long a client counts as one whose queries are seen.
pub const ASKER_WINDOW_NS: i64 = 600 * 1_000_000_000;
/// Questions (and clients) held at most.
pub const CAPACITY: usize = 1 << 16;

/// What an answer is, against the questions seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Its client asked this question (id, name, type) within the window.
    Asked,
    /// Its client's queries are seen, and this question was not among them: not taken.
    Unasked,
    /// Its client's queries are not seen here: taken on trust, as the only answers there are.
    Unseen,
}

#[derive(Debug)]
struct Question {
    name: DomainName,
    qtype: u16,
    asked_ns: i64,
}

/// The questions clients were seen asking.
#[derive(Debug)]
pub struct Asked {
    capacity: usize,
    questions: HashMap<(IpAddr, u16), Question, RandomState>,
    askers: HashMap<IpAddr, i64, RandomState>,
    /// Times a full table was emptied.
    pub flushed: u64,
}

impl Default for Asked {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl Asked {
    /// Empty, holding at most `capacity` questions and clients.
    pub fn with_capacity(capacity: usize) -> Self {
        Asked {
            capacity,
            questions: HashMap::default(),
            askers: HashMap::default(),
            flushed: 0,
        }
    }

    /// Notes a query `client` sent at `t_ns`.
    pub fn ask(&mut self, client: IpAddr, msg: &DnsMessage, t_ns: i64) {
        let Some(q) = msg.question.as_ref().filter(|_| !msg.is_response) else {
            return;
        };
        if !self.askers.contains_key(&client) && self.askers.len() >= self.capacity {
            self.askers.retain(|_, t| t_ns - *t < ASKER_WINDOW_NS);
            if self.askers.len() >= self.capacity {
                self.askers.clear();
                self.flushed += 1;
            }
        }
        self.askers.insert(client, t_ns);
        let key = (client, msg.id);
        if !self.questions.contains_key(&key) && self.questions.len() >= self.capacity {
            self.questions
                .retain(|_, q| t_ns - q.asked_ns < ANSWER_WINDOW_NS);
            if self.questions.len() >= self.capacity {
                self.questions.clear();
                self.flushed += 1;
            }
        }
        self.questions.insert(
            key,
            Question {
                name: q.name.clone(),
                qtype: q.qtype,
                asked_ns: t_ns,
            },
        );
    }

    /// Judges a response to `client` seen at `t_ns`.
    pub fn answer(&self, client: IpAddr, msg: &DnsMessage, t_ns: i64) -> Answer {
        let seen = self
            .askers
            .get(&client)
            .is_some_and(|t| t_ns - *t < ASKER_WINDOW_NS);
        if !seen {
            return Answer::Unseen;
        }
        let asked = self.questions.get(&(client, msg.id)).is_some_and(|q| {
            t_ns - q.asked_ns < ANSWER_WINDOW_NS
                && msg
                    .question
                    .as_ref()
                    .is_some_and(|a| a.name == q.name && a.qtype == q.qtype)
        });
        if asked {
            Answer::Asked
        } else {
            Answer::Unasked
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::names::dns::Question as Q;

    const S: i64 = 1_000_000_000;

    fn msg(id: u16, response: bool, name: &str, qtype: u16) -> DnsMessage {
        DnsMessage {
            id,
            is_response: response,
            rcode: 0,
            question: Some(Q {
                name: DomainName::from_wire(name.as_bytes()).expect("a name"),
                qtype,
            }),
            answers: Vec::new(),
            truncated: false,
        }
    }

    #[test]
    fn an_answer_is_taken_for_the_question_its_client_asked() {
        let (c, other): (IpAddr, IpAddr) =
            ("10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap());
        let mut a = Asked::default();
        assert_eq!(
            a.answer(c, &msg(7, true, "example.com", 1), S),
            Answer::Unseen
        );
        a.ask(c, &msg(7, false, "example.com", 1), S);
        let cases = [
            (
                c,
                7,
                "example.com",
                1,
                2 * S,
                Answer::Asked,
                "the question asked",
            ),
            (c, 8, "example.com", 1, 2 * S, Answer::Unasked, "another id"),
            (
                c,
                7,
                "evil.example",
                1,
                2 * S,
                Answer::Unasked,
                "another name",
            ),
            (
                c,
                7,
                "example.com",
                28,
                2 * S,
                Answer::Unasked,
                "another type",
            ),
            (
                c,
                7,
                "example.com",
                1,
                S + ANSWER_WINDOW_NS,
                Answer::Unasked,
                "too late",
            ),
            (
                other,
                7,
                "example.com",
                1,
                2 * S,
                Answer::Unseen,
                "a client never seen asking",
            ),
            (
                c,
                9,
                "x.example",
                1,
                S + ASKER_WINDOW_NS,
                Answer::Unseen,
                "silent past the window",
            ),
        ];
        for (client, id, name, qtype, t, want, why) in cases {
            assert_eq!(
                a.answer(client, &msg(id, true, name, qtype), t),
                want,
                "{why}"
            );
        }
    }

    #[test]
    fn a_flood_of_questions_stays_within_capacity() {
        let mut a = Asked::with_capacity(100);
        for i in 0..1_000u32 {
            let client = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            a.ask(client, &msg(i as u16, false, "example.com", 1), S);
        }
        assert!(a.questions.len() <= 100 && a.askers.len() <= 100);
        assert!(a.flushed > 0);
        // Expired entries go before a flush does.
        let mut b = Asked::with_capacity(2);
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        b.ask(c, &msg(1, false, "a.example", 1), S);
        b.ask(c, &msg(2, false, "b.example", 1), 2 * S);
        b.ask(c, &msg(3, false, "c.example", 1), 2 * S + ANSWER_WINDOW_NS);
        assert_eq!(b.flushed, 0);
        assert_eq!(
            b.answer(c, &msg(3, true, "c.example", 1), 3 * S + ANSWER_WINDOW_NS),
            Answer::Asked
        );
    }
}
