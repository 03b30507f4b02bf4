//! The table against a brute-force scan of the rows, and its precedence rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::enrich::Validity;
use crate::store::testgen::Rng;

/// The obviously right answer: every row of every file that matches, best first by the
/// documented precedence.
fn brute(
    files: &[ParsedSubscribers],
    ip: IpAddr,
    mac: Option<Mac>,
    t: i64,
) -> Option<(&Subscriber, MatchedBy)> {
    let rows = || {
        files
            .iter()
            .enumerate()
            .flat_map(|(f, p)| p.entries.iter().map(move |e| (f, e)))
            .filter(|(_, e)| e.valid.contains(t))
    };
    if let Some(m) = mac {
        if let Some((_, e)) = rows()
            .filter(|(_, e)| e.matcher == Match::Mac(m))
            .min_by_key(|(f, e)| (*f, e.line))
        {
            return Some((&e.subscriber, MatchedBy::Mac));
        }
    }
    let key: (u8, u128) = match ip {
        IpAddr::V4(a) => (0, u32::from(a).into()),
        IpAddr::V6(a) => (1, u128::from(a)),
    };
    rows()
        .filter(|(_, e)| {
            let (lo, hi) = e.matcher.span();
            e.matcher.family() == key.0 && lo <= key.1 && key.1 <= hi
        })
        .min_by_key(|(f, e)| {
            let (lo, hi) = e.matcher.span();
            (hi - lo, *f, e.line)
        })
        .map(|(_, e)| (&e.subscriber, MatchedBy::Address))
}

fn random_window(rng: &mut Rng) -> Validity {
    if rng.chance(0.6) {
        return Validity::ALWAYS;
    }
    let a = rng.below(1000) as i64;
    Validity {
        from: rng.chance(0.7).then_some(a),
        to: rng.chance(0.7).then_some(a + 1 + rng.below(1000) as i64),
    }
}

fn random_entry(rng: &mut Rng, line: u32) -> Entry {
    // Small key spaces so rows overlap; the top of the IPv6 space too; ranges nested around
    // one address, chains as deep as the file is long.
    let matcher = match rng.below(6) {
        0 => {
            let lo = 0x0a00_0000 + rng.below(2000) as u32;
            Match::V4 {
                lo,
                hi: lo + rng.below(300) as u32,
            }
        }
        1 => {
            let lo = u128::MAX - rng.below(2000) as u128;
            Match::V6 {
                lo,
                hi: lo.saturating_add(rng.below(300) as u128),
            }
        }
        2 => {
            let len = rng.below(12) as u32;
            let lo = (0x0a00_0000 + rng.below(2000) as u32) & !((1u32 << len) - 1);
            Match::V4 {
                lo,
                hi: lo | ((1u32 << len) - 1),
            }
        }
        3 => {
            let d = rng.below(1000) as u32;
            Match::V4 {
                lo: 0x0a00_0400 - d,
                hi: 0x0a00_0400 + d + rng.below(2) as u32,
            }
        }
        4 => {
            let d = rng.below(1000) as u128;
            Match::V6 {
                lo: u128::MAX - 1200 - d,
                hi: u128::MAX - 1200 + d + rng.below(2) as u128,
            }
        }
        _ => Match::Mac(Mac([2, 0, 0, 0, 0, rng.below(40) as u8])),
    };
    Entry {
        matcher,
        subscriber: Subscriber {
            account: format!("acct-{}", rng.below(50)).into(),
            name: rng.chance(0.5).then(|| "n".into()),
        },
        valid: random_window(rng),
        line,
    }
}

#[test]
fn lookups_match_brute_force_with_overlapping_and_nested_rows() {
    let mut rng = Rng::new(10);
    for round in 0..60 {
        let files: Vec<ParsedSubscribers> = (0..1 + rng.below(3))
            .map(|_| ParsedSubscribers {
                entries: (0..rng.below(120))
                    .map(|l| random_entry(&mut rng, l as u32 + 2))
                    .collect(),
                stats: RowStats::default(),
            })
            .collect();
        let table = SubscriberTable::build(&files);
        for _ in 0..2000 {
            let ip = if rng.chance(0.5) {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + rng.below(2400) as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(u128::MAX - rng.below(2400) as u128))
            };
            let mac = rng
                .chance(0.5)
                .then(|| Mac([2, 0, 0, 0, 0, rng.below(50) as u8]));
            let t = rng.below(2200) as i64 - 100;
            assert_eq!(
                table.account_at(ip, mac, t),
                brute(&files, ip, mac, t),
                "round {round}: {ip} {mac:?} at {t}"
            );
        }
    }
}

#[test]
fn precedence_from_a_file() {
    let p = ParsedSubscribers::parse(
        b"match,account,name,valid_from,valid_to\n\
          10.0.0.0/8,isp-pool,,,\n\
          10.0.0.0-10.0.0.255,business,,,\n\
          10.0.0.7,static,Static Line,,2026-06-01T00:00:00Z\n\
          10.0.0.7,static-2,,2026-06-01T00:00:00Z,\n\
          02:00:00:00:00:01,by-mac,,,\n",
    )
    .expect("good file");
    let table = SubscriberTable::build([&p]);
    let june: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().expect("time");
    let june = june.as_nanosecond() as i64;
    let at = |ip: &str, mac: Option<Mac>, t: i64| {
        table
            .account_at(ip.parse().expect("ip"), mac, t)
            .map(|(s, by)| (s.account.to_string(), by))
    };
    let acct = |s: &str, by| Some((s.to_string(), by));
    assert_eq!(
        at("10.0.0.7", None, june - 1),
        acct("static", MatchedBy::Address)
    );
    assert_eq!(
        at("10.0.0.7", None, june),
        acct("static-2", MatchedBy::Address),
        "valid_to is exclusive"
    );
    assert_eq!(
        at("10.0.0.8", None, june),
        acct("business", MatchedBy::Address)
    );
    assert_eq!(
        at("10.9.0.8", None, june),
        acct("isp-pool", MatchedBy::Address)
    );
    assert_eq!(at("11.0.0.1", None, june), None);
    let mac = Some(Mac([2, 0, 0, 0, 0, 1]));
    assert_eq!(at("10.0.0.7", mac, june), acct("by-mac", MatchedBy::Mac));
    assert_eq!(at("2001:db8::1", mac, june), acct("by-mac", MatchedBy::Mac));
    assert_eq!(at("2001:db8::1", Some(Mac([2, 0, 0, 0, 0, 2])), june), None);
    assert_eq!(table.rows(), 5);
    assert_eq!(table.subscribers(), 5);
    assert!(!table.is_empty());
    let name = table
        .by_addr("10.0.0.7".parse().expect("ip"), 0)
        .and_then(|s| s.name.as_deref());
    assert_eq!(name, Some("Static Line"));
}
