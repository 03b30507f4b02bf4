//! Tests of the DNS cache, and the cache against a brute-force model.

use std::collections::VecDeque;

use super::*;
use crate::store::testgen::Rng;

const S: i64 = NS_PER_S;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn name(s: &str) -> DomainName {
    DomainName::from_wire(s.as_bytes()).expect("test name")
}

fn exact(capacity: usize) -> DnsCache {
    DnsCache::new(DnsCacheConfig {
        capacity,
        min_ttl_s: 0,
        max_ttl_s: u32::MAX,
    })
}

fn found(c: &DnsCache, client: &str, addr: &str, t: i64) -> Option<String> {
    c.lookup(ip(client), ip(addr), i64::MIN, t)
        .map(|(n, _)| n.as_str().to_owned())
}

#[test]
fn a_binding_holds_for_its_ttl_and_per_client() {
    let mut c = exact(10);
    c.insert(
        ip("10.0.0.1"),
        ip("192.0.2.1"),
        &name("a.example"),
        100 * S,
        30,
    );
    assert_eq!(
        found(&c, "10.0.0.1", "192.0.2.1", 99 * S),
        None,
        "before the answer"
    );
    assert_eq!(
        found(&c, "10.0.0.1", "192.0.2.1", 100 * S).as_deref(),
        Some("a.example")
    );
    assert_eq!(
        found(&c, "10.0.0.1", "192.0.2.1", 130 * S - 1).as_deref(),
        Some("a.example")
    );
    assert_eq!(
        found(&c, "10.0.0.1", "192.0.2.1", 130 * S),
        None,
        "TTL over"
    );
    assert_eq!(
        found(&c, "10.0.0.2", "192.0.2.1", 110 * S),
        None,
        "another client"
    );
    let (_, v) = c
        .lookup(ip("10.0.0.1"), ip("192.0.2.1"), i64::MIN, 110 * S)
        .expect("held");
    assert_eq!(
        v,
        Validity {
            from: Some(100 * S),
            to: Some(130 * S)
        }
    );
    // IPv4 and its IPv6-mapped form are one address.
    assert_eq!(
        found(&c, "::ffff:10.0.0.1", "::ffff:192.0.2.1", 110 * S).as_deref(),
        Some("a.example")
    );
    // The address changed hands at 105 s: the answer at 100 s was the previous holder's.
    assert_eq!(
        c.lookup(ip("10.0.0.1"), ip("192.0.2.1"), 105 * S, 110 * S),
        None
    );
    assert!(c
        .lookup(ip("10.0.0.1"), ip("192.0.2.1"), 100 * S, 110 * S)
        .is_some());
}

#[test]
fn ttls_are_clamped() {
    let mut c = DnsCache::new(DnsCacheConfig {
        capacity: 10,
        min_ttl_s: 60,
        max_ttl_s: 3600,
    });
    c.insert(
        ip("10.0.0.1"),
        ip("192.0.2.1"),
        &name("short.example"),
        0,
        5,
    );
    c.insert(
        ip("10.0.0.1"),
        ip("192.0.2.2"),
        &name("long.example"),
        0,
        604_800,
    );
    assert!(found(&c, "10.0.0.1", "192.0.2.1", 59 * S).is_some());
    assert!(found(&c, "10.0.0.1", "192.0.2.1", 60 * S).is_none());
    assert!(found(&c, "10.0.0.1", "192.0.2.2", 3600 * S).is_none());
}

#[test]
fn the_name_resolved_before_the_flow_wins_over_a_later_one() {
    let mut c = exact(10);
    let (client, addr) = (ip("10.0.0.1"), ip("192.0.2.1"));
    c.insert(client, addr, &name("first.example"), 0, 300);
    c.insert(client, addr, &name("second.example"), 100 * S, 300);
    assert_eq!(
        found(&c, "10.0.0.1", "192.0.2.1", 50 * S).as_deref(),
        Some("first.example")
    );
    assert_eq!(
        found(&c, "10.0.0.1", "192.0.2.1", 150 * S).as_deref(),
        Some("second.example")
    );
    assert_eq!(
        found(&c, "10.0.0.1", "192.0.2.1", 350 * S).as_deref(),
        Some("second.example")
    );
    c.insert(client, addr, &name("third.example"), 200 * S, 300);
    assert_eq!(
        found(&c, "10.0.0.1", "192.0.2.1", 50 * S),
        None,
        "history is two names"
    );
    assert_eq!(c.distinct_names(), 2, "first.example is released");
}

#[test]
fn a_repeated_answer_extends_the_binding() {
    let mut c = exact(10);
    let (client, addr) = (ip("10.0.0.1"), ip("192.0.2.1"));
    c.insert(client, addr, &name("a.example"), 0, 60);
    c.insert(client, addr, &name("A.example."), 50 * S, 60);
    let (_, v) = c.lookup(client, addr, i64::MIN, 100 * S).expect("extended");
    assert_eq!(
        v,
        Validity {
            from: Some(0),
            to: Some(110 * S)
        }
    );
    assert_eq!(
        c.stats(),
        CacheStats {
            inserted: 1,
            refreshed: 1,
            evicted: 0
        }
    );
    // After expiry, the same name starts a new binding: the gap stays a gap.
    c.insert(client, addr, &name("a.example"), 500 * S, 60);
    assert_eq!(found(&c, "10.0.0.1", "192.0.2.1", 200 * S), None);
    assert_eq!(c.stats().inserted, 2);
}

#[test]
fn names_are_shared_and_released_on_eviction() {
    let mut c = exact(2);
    let n = name("shared.example");
    c.insert(ip("10.0.0.1"), ip("192.0.2.1"), &n, 0, 60);
    c.insert(
        ip("10.0.0.2"),
        ip("192.0.2.1"),
        &name("shared.example"),
        0,
        60,
    );
    assert_eq!(c.distinct_names(), 1);
    let (a, _) = c
        .lookup(ip("10.0.0.1"), ip("192.0.2.1"), i64::MIN, 0)
        .expect("held");
    let (b, _) = c
        .lookup(ip("10.0.0.2"), ip("192.0.2.1"), i64::MIN, 0)
        .expect("held");
    assert!(a.shares_text(b));
    c.insert(
        ip("10.0.0.3"),
        ip("192.0.2.9"),
        &name("other.example"),
        0,
        60,
    );
    c.insert(
        ip("10.0.0.4"),
        ip("192.0.2.9"),
        &name("other.example"),
        0,
        60,
    );
    assert_eq!(c.len(), 2);
    assert_eq!(c.stats().evicted, 2);
    assert_eq!(
        c.distinct_names(),
        1,
        "shared.example left with its last binding"
    );
}

/// The cache against a model: a list of pairs in answer order, each with its bindings.
#[test]
fn random_operations_match_a_brute_force_model() {
    type Model = VecDeque<((IpAddr, IpAddr), Vec<(String, i64, i64)>)>;
    let mut rng = Rng::new(5);
    for round in 0..20 {
        let capacity = 1 + rng.below(40) as usize;
        let mut c = exact(capacity);
        let mut model: Model = VecDeque::new();
        let mut now = 0i64;
        for step in 0..2000 {
            now += rng.below(5 * S as u64) as i64;
            let client = IpAddr::from([10, 0, 0, rng.below(6) as u8]);
            let addr = IpAddr::from([192, 0, 2, rng.below(8) as u8]);
            if rng.below(2) == 0 {
                let n = format!("n{}.example", rng.below(5));
                let ttl = rng.below(30) as u32;
                c.insert(client, addr, &name(&n), now, ttl);
                let to = now + i64::from(ttl) * S;
                let pos = model.iter().position(|(k, _)| *k == (client, addr));
                let mut entry = match pos {
                    Some(p) => model.remove(p).expect("position is valid"),
                    None => {
                        if model.len() == capacity {
                            model.pop_front();
                        }
                        ((client, addr), Vec::new())
                    }
                };
                match entry.1.first_mut() {
                    Some(cur) if cur.0 == n && now >= cur.1 && now <= cur.2 => {
                        cur.2 = cur.2.max(to)
                    }
                    _ => {
                        entry.1.insert(0, (n, now, to));
                        entry.1.truncate(HISTORY);
                    }
                }
                model.push_back(entry);
            } else {
                let t = now - rng.below(60 * S as u64) as i64;
                let want = model
                    .iter()
                    .find(|(k, _)| *k == (client, addr))
                    .and_then(|(_, bs)| {
                        bs.iter()
                            .filter(|b| b.1 <= t && t < b.2)
                            .max_by_key(|b| b.1)
                            .map(|b| b.0.clone())
                    });
                let got = c
                    .lookup(client, addr, i64::MIN, t)
                    .map(|(n, _)| n.as_str().to_owned());
                assert_eq!(got, want, "round {round} step {step}");
            }
            assert!(c.len() <= capacity);
        }
    }
}

/// A response answering `name` with `addr` (TTL 300 s).
fn answer_of(q: &str, addr: &str) -> DnsMessage {
    DnsMessage {
        id: 1,
        is_response: true,
        rcode: 0,
        question: Some(super::super::dns::Question {
            name: name(q),
            qtype: 1,
        }),
        answers: vec![super::super::dns::Resolved {
            addr: ip(addr),
            ttl: 300,
        }],
        truncated: false,
    }
}

/// The same answer before and after the client's address changed hands (a popular name,
/// resolved by both holders): the later one starts a binding of its own, which the new
/// holder's flows find; extended, the old binding kept its start and was passed over.
#[test]
fn an_answer_after_the_address_changed_hands_is_the_new_holders() {
    let mut c = exact(10);
    let answer = answer_of("cdn.example", "192.0.2.9");
    let (client, addr) = (ip("10.0.0.7"), ip("192.0.2.9"));
    c.insert_response(client, &answer, 190 * S, i64::MIN);
    c.insert_response(client, &answer, 210 * S, 200 * S);
    let (n, v) = c
        .lookup(client, addr, 200 * S, 215 * S)
        .expect("the new holder's answer");
    assert_eq!((n.as_str(), v.from), ("cdn.example", Some(210 * S)));
    assert!(
        c.lookup(client, addr, 200 * S, 205 * S).is_none(),
        "before its answer"
    );
}

/// An answer a device asked for names that device's flows from the address, not another
/// device's: an address handed from one device to another and back within a second, faster
/// than the lease file said, gave the short holder's names to the next one's flows.
#[test]
fn an_answer_names_only_the_flows_of_the_device_that_asked() {
    use crate::record::Mac;
    let mut c = exact(10);
    let answer = answer_of("only.example", "192.0.2.18");
    let (client, addr) = (ip("10.30.0.102"), ip("192.0.2.18"));
    let (alice, dave) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 4]));
    c.insert_asked(client, Some(alice), &answer, 100 * S, i64::MIN);
    let named = |c: &DnsCache, mac| {
        c.lookup_by(client, addr, i64::MIN, 101 * S, mac)
            .map(|(n, _)| n.as_str().to_owned())
    };
    assert_eq!(named(&c, Some(alice)).as_deref(), Some("only.example"));
    assert_eq!(named(&c, Some(dave)), None, "another device's flow");
    assert_eq!(
        named(&c, None).as_deref(),
        Some("only.example"),
        "a flow whose device is not known"
    );
    // The same answer to the other device is a binding of its own, not an extension.
    c.insert_asked(client, Some(dave), &answer, 100 * S + 1, i64::MIN);
    assert_eq!(named(&c, Some(dave)).as_deref(), Some("only.example"));
    assert_eq!(named(&c, Some(alice)).as_deref(), Some("only.example"));
}
