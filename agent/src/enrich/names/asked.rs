//! DNS questions seen asked: an answer fills a client's cache only if that client was seen
//! asking its question (same transaction id, name and type, from the port the answer goes to,
//! of the resolver the answer comes from) within [`ANSWER_WINDOW_NS`], and only the first such
//! answer. XDP sees a datagram from port 53 without any handshake, so without this one spoofed
//! packet would bind any address to any name for any client, and every later flow of that
//! client to the address would carry the name; with the id alone, 65,536 spoofed answers would
//! (a client checks the port and the resolver's address too, and takes the first answer).
//!
//! The check holds only where the client's queries are visible: a client not seen asking
//! anything in the last [`ASKER_WINDOW_NS`] (its queries cross no audited interface, or the
//! answer's destination is a translated address) has its answers taken as before.
//!
//! Bounded: at most `capacity` questions and as many clients. A full question table lets its
//! oldest question go for the new one (a real answer comes within milliseconds, so a flood of
//! spoofed queries with random ids no longer keeps every real question out). A full client
//! table drops its expired entries (at most once a second, so a flood does not make every
//! insert a scan); if it is still full, the new client is not noted, and for a window after
//! that no answer to a client not noted is taken on trust: an answer is taken only for a
//! question seen asked (a flood of spoofed sources used to make every new client's answers
//! trusted). A flood costs names for a while, never memory, and never lets an unasked
//! answer in.

use std::collections::VecDeque;

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;

use super::dns::DnsMessage;
use super::DomainName;
use crate::record::Mac;

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

/// One exchange's ends: the client's address and port, and the resolver's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Exchange {
    /// The client (the query's source, the answer's destination).
    pub client: IpAddr,
    /// Its port.
    pub port: u16,
    /// The resolver (the query's destination, the answer's source).
    pub resolver: IpAddr,
}

#[derive(Debug)]
struct Question {
    name: DomainName,
    qtype: u16,
    asked_ns: i64,
    /// The Ethernet source of the query's frame: the asking device.
    mac: Option<Mac>,
}

/// The questions clients were seen asking.
#[derive(Debug)]
pub struct Asked {
    capacity: usize,
    questions: HashMap<(Exchange, u16), Question, RandomState>,
    /// The questions' keys in the order noted, with when: the oldest goes first when the
    /// table is full. An entry answered or asked again since is stale and skipped.
    order: VecDeque<((Exchange, u16), i64)>,
    askers: HashMap<IpAddr, i64, RandomState>,
    /// When the client table last dropped its expired entries.
    pruned_ns: i64,
    /// When a client last could not be noted (the table full of live entries).
    askers_full_ns: i64,
    /// Questions let go within their answer window for newer ones, and clients not noted,
    /// because a table was full of live entries.
    pub untracked: u64,
}

impl Default for Asked {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

/// Whether `then` is less than `window` before `now` (a clock stepped back counts as now).
fn within(now: i64, then: i64, window: i64) -> bool {
    now.saturating_sub(then) < window
}

/// Whether `then` is less than `window` from `now` either way: what pruning keeps. An entry
/// dated ahead of a clock stepped back by more than the window goes (kept, it would hold its
/// place until the clock caught up, and a full table would refuse every new question).
fn near(now: i64, then: i64, window: i64) -> bool {
    now.abs_diff(then) < window.unsigned_abs()
}

impl Asked {
    /// Empty, holding at most `capacity` questions and clients.
    pub fn with_capacity(capacity: usize) -> Self {
        Asked {
            capacity,
            questions: HashMap::default(),
            order: VecDeque::new(),
            askers: HashMap::default(),
            pruned_ns: i64::MIN,
            askers_full_ns: i64::MIN,
            untracked: 0,
        }
    }

    /// Notes a query of exchange `ex` seen at `t_ns` in a frame from `mac`.
    pub fn ask(&mut self, ex: Exchange, msg: &DnsMessage, t_ns: i64, mac: Option<Mac>) {
        let Some(q) = msg.question.as_ref().filter(|_| !msg.is_response) else {
            return;
        };
        self.note_asker(ex.client, t_ns);
        let key = (ex, msg.id);
        if !self.questions.contains_key(&key) {
            self.make_room(t_ns);
        }
        let asked = Question {
            name: q.name.clone(),
            qtype: q.qtype,
            asked_ns: t_ns,
            mac,
        };
        self.questions.insert(key, asked);
        self.order.push_back((key, t_ns));
        if self.order.len() > 2 * self.capacity.max(1) {
            // Stale keys (answered, or asked again) pile up where answers come quickly.
            let questions = &self.questions;
            self.order
                .retain(|(k, t)| questions.get(k).is_some_and(|q| q.asked_ns == *t));
        }
    }

    /// Notes a query of exchange `ex` that a rule dropped at `t_ns`: its client's queries
    /// are seen, but its question reached no resolver, so an answer to it can only be forged.
    pub fn dropped(&mut self, ex: Exchange, t_ns: i64) {
        self.note_asker(ex.client, t_ns);
    }

    /// Notes `client` as one whose queries are seen at `t_ns`.
    fn note_asker(&mut self, client: IpAddr, t_ns: i64) {
        if self.askers.contains_key(&client) || self.asker_room(t_ns) {
            self.askers.insert(client, t_ns);
        } else {
            self.askers_full_ns = t_ns;
        }
    }

    /// Lets the oldest questions go until there is room for one more.
    fn make_room(&mut self, t_ns: i64) {
        while self.questions.len() >= self.capacity.max(1) {
            let Some((key, t)) = self.order.pop_front() else {
                return;
            };
            if self.questions.get(&key).is_some_and(|q| q.asked_ns == t) {
                self.questions.remove(&key);
                self.untracked += u64::from(near(t_ns, t, ANSWER_WINDOW_NS));
            }
        }
    }

    /// Whether the client table has room for one more, after dropping its expired entries if
    /// it is full and has not done so in the last second.
    fn asker_room(&mut self, t_ns: i64) -> bool {
        if self.askers.len() < self.capacity {
            return true;
        }
        if !near(t_ns, self.pruned_ns, 1_000_000_000) {
            self.pruned_ns = t_ns;
            self.askers.retain(|_, t| near(t_ns, *t, ASKER_WINDOW_NS));
        }
        let room = self.askers.len() < self.capacity;
        self.untracked += u64::from(!room);
        room
    }

    /// The device that asked exchange `ex`'s question `id`, if a frame said (before
    /// [`Asked::answer`] takes the question).
    pub fn asker(&self, ex: Exchange, id: u16) -> Option<Mac> {
        self.questions.get(&(ex, id)).and_then(|q| q.mac)
    }

    /// Judges a response of exchange `ex` seen at `t_ns`; an asked question is used up.
    pub fn answer(&mut self, ex: Exchange, msg: &DnsMessage, t_ns: i64) -> Answer {
        let key = (ex, msg.id);
        let asked = self.questions.get(&key).is_some_and(|q| {
            within(t_ns, q.asked_ns, ANSWER_WINDOW_NS)
                && msg
                    .question
                    .as_ref()
                    .is_some_and(|a| a.name == q.name && a.qtype == q.qtype)
        });
        if asked {
            self.questions.remove(&key);
            return Answer::Asked;
        }
        // A client not noted while the table was full may be one whose queries are seen.
        let seen = self
            .askers
            .get(&ex.client)
            .is_some_and(|t| within(t_ns, *t, ASKER_WINDOW_NS))
            || within(t_ns, self.askers_full_ns, ASKER_WINDOW_NS);
        if seen {
            Answer::Unasked
        } else {
            Answer::Unseen
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

    /// `client`'s exchange from port 5000 with the resolver 10.0.0.53.
    fn ex(client: IpAddr) -> Exchange {
        Exchange {
            client,
            port: 5000,
            resolver: "10.0.0.53".parse().unwrap(),
        }
    }

    #[test]
    fn an_answer_is_taken_for_the_question_its_client_asked() {
        let (c, other): (IpAddr, IpAddr) =
            ("10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap());
        let mut a = Asked::default();
        assert_eq!(
            a.answer(ex(c), &msg(7, true, "example.com", 1), S),
            Answer::Unseen
        );
        a.ask(ex(c), &msg(7, false, "example.com", 1), S, None);
        // Its answer from another resolver, or to another port, is not the asked one: the
        // client would not take it either.
        let elsewhere = Exchange {
            resolver: "192.0.2.1".parse().unwrap(),
            ..ex(c)
        };
        let other_port = Exchange {
            port: 5001,
            ..ex(c)
        };
        for e in [elsewhere, other_port] {
            assert_eq!(
                a.answer(e, &msg(7, true, "example.com", 1), 2 * S),
                Answer::Unasked,
                "{e:?}"
            );
        }
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
            if want == Answer::Asked {
                // Judged once more below: used up by this one.
                a.ask(ex(client), &msg(id, false, name, qtype), S, None);
            }
            assert_eq!(
                a.answer(ex(client), &msg(id, true, name, qtype), t),
                want,
                "{why}"
            );
        }
        assert_eq!(
            a.answer(ex(c), &msg(7, true, "example.com", 1), 2 * S),
            Answer::Unasked,
            "a second answer to a question already answered"
        );
    }

    /// A flood of spoofed queries (random clients, random ids) fills both tables: a real
    /// question asked amid it is still noted and its answer taken (the full table refused
    /// it, and its answer, before); no answer to a question not noted is ever taken, also
    /// for a client the full table could not note (its answers were taken on trust).
    #[test]
    fn a_flood_of_questions_stays_within_capacity_and_lets_no_unasked_answer_in() {
        let mut a = Asked::with_capacity(100);
        let victim: IpAddr = "10.0.0.200".parse().unwrap();
        let flood = |a: &mut Asked, from: u32, n: u32, t: i64| {
            for i in from..from + n {
                let client = IpAddr::from((0x0a00_1000 + i).to_be_bytes());
                a.ask(ex(client), &msg(i as u16, false, "example.com", 1), t, None);
            }
        };
        a.ask(ex(victim), &msg(1, false, "real.example", 1), S, None);
        flood(&mut a, 0, 1_000, S);
        assert!(a.questions.len() <= 100 && a.askers.len() <= 100);
        assert!(a.order.len() <= 200, "{}", a.order.len());
        assert!(a.untracked > 0);
        assert_eq!(
            a.answer(ex(victim), &msg(1, true, "real.example", 1), 2 * S),
            Answer::Unasked,
            "a question the flood pushed out: its answer is refused, not trusted"
        );
        a.ask(ex(victim), &msg(2, false, "late.example", 1), 2 * S, None);
        flood(&mut a, 1_000, 50, 2 * S);
        assert_eq!(
            a.answer(ex(victim), &msg(2, true, "late.example", 1), 2 * S),
            Answer::Asked,
            "a question answered before the flood pushed it out"
        );
        let unnoted: IpAddr = "10.9.9.9".parse().unwrap();
        a.ask(ex(unnoted), &msg(3, false, "new.example", 1), 2 * S, None);
        assert!(!a.askers.contains_key(&unnoted), "the client table is full");
        assert_eq!(
            a.answer(ex(unnoted), &msg(4, true, "forged.example", 1), 2 * S),
            Answer::Unasked,
            "a client not noted is not trusted while the table overflows"
        );
        assert_eq!(
            a.answer(ex(unnoted), &msg(3, true, "new.example", 1), 2 * S),
            Answer::Asked
        );
        let stranger: IpAddr = "10.8.8.8".parse().unwrap();
        assert_eq!(
            a.answer(
                ex(stranger),
                &msg(5, true, "x.example", 1),
                3 * S + ASKER_WINDOW_NS
            ),
            Answer::Unseen,
            "trust comes back a window after the overflow"
        );
        // Expired entries go when the table is full, and the new question is noted.
        let mut b = Asked::with_capacity(2);
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        b.ask(ex(c), &msg(1, false, "a.example", 1), S, None);
        b.ask(ex(c), &msg(2, false, "b.example", 1), 2 * S, None);
        b.ask(
            ex(c),
            &msg(3, false, "c.example", 1),
            2 * S + ANSWER_WINDOW_NS,
            None,
        );
        assert_eq!(b.untracked, 0);
        assert_eq!(
            b.answer(
                ex(c),
                &msg(3, true, "c.example", 1),
                3 * S + ANSWER_WINDOW_NS
            ),
            Answer::Asked
        );
    }

    /// A clock stepped back by more than the windows: the full table's entries, dated ahead
    /// of it, are let go, and new questions are noted and their answers taken (they were all
    /// refused until the clock caught up with the old entries).
    #[test]
    fn a_clock_stepped_back_does_not_freeze_a_full_table() {
        let mut a = Asked::with_capacity(4);
        let hour = 3_600 * S;
        let before = 10 * hour;
        for i in 0..4u32 {
            let client = IpAddr::from((0x0a00_1000 + i).to_be_bytes());
            a.ask(
                ex(client),
                &msg(i as u16, false, "example.com", 1),
                before,
                None,
            );
        }
        let after = before - hour;
        let c: IpAddr = "10.0.0.9".parse().unwrap();
        a.ask(ex(c), &msg(77, false, "new.example", 1), after, None);
        assert_eq!(a.untracked, 0, "the stale entries made room");
        assert_eq!(
            a.answer(ex(c), &msg(77, true, "new.example", 1), after + S),
            Answer::Asked
        );
    }
}
