//! The alert engine against its contract: one alert per condition, deduplicated, held,
//! resolved, and bounded.

use super::*;
use crate::status::Unaudited;
use std::time::Duration;

const S: i64 = 1_000_000_000;

fn engine() -> Engine {
    let cfg = AlertConfig {
        alert_window: Duration::from_secs(60),
        alert_burst_hits: 5,
        alert_burst_window: Duration::from_secs(10),
        ..AlertConfig::default()
    };
    Engine::new(&cfg, 1000)
}

fn hit<'a>(client: &str, rule: &'a str) -> Hit<'a> {
    Hit {
        client: client.parse().expect("test address"),
        user: None,
        rule: Some(rule),
    }
}

fn ids(out: &[Alert]) -> Vec<(AlertId, AlertState)> {
    out.iter().map(|a| (a.id, a.state)).collect()
}

#[test]
fn the_first_blocked_hit_per_client_and_rule_raises_one_alert_with_counts() {
    let mut e = engine();
    let mut out = Vec::new();
    for t in 0..3 {
        e.hit(hit("10.0.0.2", "b.list:1"), 1, t * S, &mut out);
    }
    e.hit(hit("10.0.0.2", "b.list:2"), 1, 3 * S, &mut out);
    e.hit(hit("10.0.0.3", "b.list:1"), 1, 3 * S, &mut out);
    assert_eq!(ids(&out), [(AlertId::BlockFirst, AlertState::Raised); 3]);
    let st = e.status();
    let first = st
        .active
        .iter()
        .find(|a| a.subject.rule.as_deref() == Some("b.list:1") && a.count == 3)
        .expect("the first client's alert counts its three hits");
    assert_eq!((first.first_ns, first.last_ns), (0, 2 * S));
    out.clear();
    e.tick(62 * S, &mut out);
    assert_eq!(
        ids(&out),
        [(AlertId::BlockFirst, AlertState::Resolved)],
        "only the alert quiet for the window resolves"
    );
    assert_eq!(out[0].count, 3);
    out.clear();
    e.hit(hit("10.0.0.2", "b.list:1"), 1, 70 * S, &mut out);
    assert_eq!(
        ids(&out),
        [(AlertId::BlockFirst, AlertState::Raised)],
        "a hit after the window raises anew"
    );
}

#[test]
fn a_borrowed_key_hashes_and_compares_as_the_owned_one() {
    use std::hash::BuildHasher as _;
    let state = RandomState::default();
    let client = Some("10.0.0.2".parse().expect("address"));
    let subjects = [
        SubjectRef::default(),
        SubjectRef {
            client,
            rule: Some("b.list:1"),
            ..SubjectRef::default()
        },
        SubjectRef {
            user: Some("alice"),
            rule: Some("b.list:1"),
            ..SubjectRef::default()
        },
        SubjectRef {
            file: Some("/etc/xdp-audit/block.list"),
            ..SubjectRef::default()
        },
        SubjectRef {
            user: Some(""),
            ..SubjectRef::default()
        },
    ];
    for (i, s) in subjects.iter().enumerate() {
        for id in [AlertId::BlockFirst, AlertId::ListRejected] {
            let owned = (id, s.owned());
            assert_eq!(
                state.hash_one(Lookup(id, *s)),
                state.hash_one(&owned),
                "{owned:?}"
            );
            for (j, other) in subjects.iter().enumerate() {
                assert_eq!(
                    Lookup(id, *other).equivalent(&owned),
                    i == j,
                    "{other:?} against {owned:?}"
                );
            }
            assert!(!Lookup(AlertId::RingLoss, *s).equivalent(&owned));
        }
    }
}

#[test]
fn a_user_is_the_subject_when_known() {
    let mut e = engine();
    let mut out = Vec::new();
    for c in ["10.0.0.2", "10.0.0.3"] {
        let h = Hit {
            user: Some("alice"),
            ..hit(c, "b.list:1")
        };
        e.hit(h, 1, 0, &mut out);
    }
    assert_eq!(out.len(), 1, "one alert for alice and the rule: {out:?}");
    assert_eq!(out[0].subject.user.as_deref(), Some("alice"));
}

#[test]
fn a_burst_raises_once_at_the_threshold() {
    let mut e = engine();
    let mut out = Vec::new();
    for i in 0..20 {
        e.hit(hit("10.0.0.2", &format!("b.list:{i}")), 1, i, &mut out);
    }
    let bursts: Vec<_> = out.iter().filter(|a| a.id == AlertId::BlockBurst).collect();
    assert_eq!(bursts.len(), 1, "{bursts:?}");
    let active = e.status().active;
    let b = active
        .iter()
        .find(|a| a.id == AlertId::BlockBurst)
        .expect("burst active");
    assert_eq!(
        b.count, 20,
        "the burst counts every hit from the threshold's first on"
    );
    out.clear();
    // Four hits a window: never a burst.
    let mut e = engine();
    for i in 0..12 {
        e.hit(hit("10.0.0.9", "b.list:1"), 1, i * 3 * S, &mut out);
    }
    assert!(out.iter().all(|a| a.id != AlertId::BlockBurst), "{out:?}");
}

#[test]
fn a_list_change_failed_part_way_raises_one_critical_alert() {
    let mut e = engine();
    let mut out = Vec::new();
    for (t, what) in [(0, "failed part way"), (S, "not applied")] {
        let reason = format!("list b.list: {what}; restart the agent");
        e.event(Event::ListStale { reason }, t, &mut out);
    }
    // A day without a change to refuse: still stale, still active.
    e.tick(24 * 3600 * S, &mut out);
    assert_eq!(
        ids(&out),
        [(AlertId::ListStale, AlertState::Raised)],
        "{out:?}"
    );
    assert_eq!(out[0].severity, crate::alert::Severity::Critical);
    assert!(out[0].text.contains("failed part way"), "{out:?}");
}

#[test]
fn the_active_limit_suppresses_and_counts() {
    let cfg = AlertConfig {
        alert_max_active: 2,
        ..AlertConfig::default()
    };
    let mut e = Engine::new(&cfg, 0);
    let mut out = Vec::new();
    for i in 0..5 {
        e.hit(hit(&format!("10.0.0.{i}"), "b.list:1"), 1, 0, &mut out);
    }
    let st = e.status();
    assert_eq!(
        st.active.len(),
        3,
        "two clients' and the one counting the rest"
    );
    assert!(st.suppressed >= 3, "{}", st.suppressed);
    let rest = (st.active.iter())
        .find(|a| a.subject.client.is_none())
        .expect("the alert counting the clients kept out");
    assert_eq!(
        (rest.count, rest.subject.rule.as_deref()),
        (3, Some("b.list:1"))
    );
}

#[test]
fn clients_over_the_active_limit_are_counted_in_one_alert_per_rule() {
    let cfg = AlertConfig {
        alert_max_active: 2,
        alert_window: Duration::from_secs(60),
        ..AlertConfig::default()
    };
    let mut e = Engine::new(&cfg, 0);
    let mut out = Vec::new();
    // A spoofed flood fills the limit...
    for i in 0..50 {
        e.hit(
            hit(&format!("10.0.{}.{}", i / 256, i % 256), "flood.list:1"),
            1,
            0,
            &mut out,
        );
    }
    // ...and a real host blocked by another rule during it still shows.
    e.hit(hit("192.168.1.7", "malware.list:9"), 1, S, &mut out);
    e.hit(hit("192.168.1.8", "malware.list:9"), 2, S, &mut out);
    let overflow: Vec<&Alert> = (out.iter())
        .filter(|a| a.id == AlertId::BlockFirst && a.subject.client.is_none())
        .collect();
    assert_eq!(overflow.len(), 2, "one per rule: {out:?}");
    assert!(overflow[1].text.contains("malware.list:9"), "{out:?}");
    let st = e.status();
    let malware = (st.active.iter())
        .find(|a| a.subject.rule.as_deref() == Some("malware.list:9"))
        .expect("the other rule's alert is active");
    assert_eq!(malware.count, 3, "both clients' hits are counted");
    // Resolved a window later, they free their places: a new client is alerted again.
    out.clear();
    e.tick(120 * S, &mut out);
    assert_eq!(e.status().active_total, 0, "{:?}", e.status().active);
    out.clear();
    e.hit(hit("10.9.9.9", "flood.list:1"), 1, 121 * S, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].subject.client, "10.9.9.9".parse().ok());
}

/// 100 spoofed sources with `each` blocked records each fill a burst map of 100 (threshold
/// 20 in 60 s), then a real attacker sends 20 within a second: the engine and what the
/// attacker's records raised.
fn flood_then_attacker(each: u64) -> (Engine, Vec<Alert>) {
    let cfg = AlertConfig {
        alert_max_active: 100,
        alert_burst_hits: 20,
        alert_burst_window: Duration::from_secs(60),
        ..AlertConfig::default()
    };
    let mut e = Engine::new(&cfg, 0);
    let mut out = Vec::new();
    for i in 0..100 {
        e.hit(
            hit(&format!("10.0.0.{i}"), "flood.list:1"),
            each,
            0,
            &mut out,
        );
    }
    out.clear();
    for t in 0..20 {
        e.hit(hit("192.168.1.7", "flood.list:1"), 1, S + t, &mut out);
    }
    (e, out)
}

/// Whether `out` raised the attacker's burst alert.
fn attacker_burst(out: &[Alert]) -> bool {
    out.iter()
        .any(|a| a.id == AlertId::BlockBurst && a.subject.client == "192.168.1.7".parse().ok())
}

#[test]
fn a_full_burst_map_of_single_hits_still_counts_a_real_attacker() {
    let (_, out) = flood_then_attacker(1);
    assert!(attacker_burst(&out), "{out:?}");
}

/// Spoofed sources that come back (two hits each, on pace) are not let go by the single-hit
/// or pace rules: a full map is thinned to three quarters by pace, and the attacker gets in.
#[test]
fn a_full_burst_map_of_returning_sources_still_counts_a_real_attacker() {
    let (e, out) = flood_then_attacker(2);
    assert!(attacker_burst(&out), "{out:?}");
    assert!(
        e.bursts.len() <= 76,
        "thinned to three quarters: {}",
        e.bursts.len()
    );
}

#[test]
fn a_flood_of_blocked_clients_never_keeps_out_the_system_alerts() {
    let cfg = AlertConfig {
        alert_max_active: 2,
        ..AlertConfig::default()
    };
    let mut e = Engine::new(&cfg, 0);
    let mut out = Vec::new();
    for c in ["10.0.0.1", "10.0.0.2"] {
        e.hit(hit(c, "b.list:1"), 1, 0, &mut out);
    }
    e.hit(hit("10.0.0.3", "b.list:1"), 1, 0, &mut out);
    assert!(
        e.status().suppressed > 0,
        "the third client is over the limit"
    );
    out.clear();
    let degraded = Gauges {
        store_degraded: true,
        ..Gauges::default()
    };
    e.observe(degraded, S, &mut out);
    e.event(
        Event::ListRejected {
            file: "b.list".into(),
            reason: "b.list:3: not an address".into(),
            kept: ListKept::LastGood,
        },
        S,
        &mut out,
    );
    assert_eq!(
        ids(&out),
        [
            (AlertId::StoreDegraded, AlertState::Raised),
            (AlertId::ListRejected, AlertState::Raised)
        ],
        "the table full of traffic alerts must not suppress these"
    );
    assert_eq!(
        e.status().active_total,
        5,
        "with the one counting clients kept out"
    );
    out.clear();
    e.hit(hit("10.0.0.4", "b.list:1"), 1, S, &mut out);
    assert!(out.is_empty(), "traffic stays limited: {out:?}");
}

#[test]
fn recent_keeps_the_last_ten_newest_first() {
    let mut e = engine();
    let mut out = Vec::new();
    for i in 0..15 {
        e.event(
            Event::ListRejected {
                file: format!("l{i}"),
                reason: "l:1: bad".into(),
                kept: ListKept::LastGood,
            },
            i,
            &mut out,
        );
    }
    let r = e.status().recent;
    assert_eq!(r.len(), RECENT);
    assert_eq!(r[0].subject.file.as_deref(), Some("l14"));
}

#[test]
fn a_wall_clock_step_moves_no_window() {
    let at = |wall: i64, mono: i64| Now {
        wall: wall * S,
        mono: mono * S,
    };
    let mut e = engine();
    let mut out = Vec::new();
    e.hit(hit("10.0.0.2", "b.list:1"), 1, at(10_000, 100), &mut out);
    assert_eq!(out[0].first_ns, 10_000 * S, "the wall time is shown");
    out.clear();
    // Stepped forward an hour: a minute has not passed.
    e.tick(at(13_630, 130), &mut out);
    assert!(out.is_empty(), "resolved early: {out:?}");
    // Stepped back an hour: the window (60 s) has passed all the same.
    e.tick(at(6_461, 161), &mut out);
    assert_eq!(ids(&out), [(AlertId::BlockFirst, AlertState::Resolved)]);
    out.clear();
    // A burst window (10 s) ends by the monotonic clock too.
    for i in 0..4 {
        e.hit(
            hit("10.0.0.3", "b.list:1"),
            1,
            at(20_000, 200 + i),
            &mut out,
        );
    }
    e.hit(hit("10.0.0.3", "b.list:1"), 1, at(16_400, 220), &mut out);
    assert!(
        !out.iter().any(|a| a.id == AlertId::BlockBurst),
        "five hits over 20 s are no burst of 5 in 10 s: {out:?}"
    );
}

fn carried(id: AlertId, subject: Subject, count: u64) -> Alert {
    Alert {
        id,
        severity: id.severity(),
        state: AlertState::Raised,
        text: "left by the last agent".into(),
        subject,
        first_ns: -100 * S,
        last_ns: -10 * S,
        count,
    }
}

/// A condition that outlives the agent is one alert: the next agent counts on the one the
/// last left active and resolves it once, with the count of both runs.
#[test]
fn an_alert_carried_from_the_last_agent_counts_on_and_resolves_once() {
    let mut e = engine();
    let mut out = Vec::new();
    let degraded = carried(AlertId::StoreDegraded, Subject::default(), 4);
    let quiet = carried(AlertId::RingLoss, Subject::default(), 9);
    e.carry(vec![degraded, quiet], 0, &mut out);
    assert!(out.is_empty(), "carrying raises nothing: {out:?}");
    assert_eq!(e.status().active_total, 2);
    let bad = Gauges {
        store_degraded: true,
        ..Gauges::default()
    };
    e.observe(bad, 30 * S, &mut out);
    assert!(out.is_empty(), "the carried alert counts it: {out:?}");
    e.tick(61 * S, &mut out);
    assert_eq!(
        ids(&out),
        [(AlertId::RingLoss, AlertState::Resolved)],
        "quiet for the window after the start"
    );
    assert_eq!((out[0].count, out[0].first_ns), (9, -100 * S));
    out.clear();
    e.tick(91 * S, &mut out);
    assert_eq!(ids(&out), [(AlertId::StoreDegraded, AlertState::Resolved)]);
    assert_eq!((out[0].count, out[0].last_ns), (5, 30 * S));
    let st = e.status();
    assert_eq!((st.raised, st.resolved, st.active_total), (0, 2, 0));
}

/// A crash, and a list change the kernel refused, end with the agent that had them: the
/// carried alert resolves at once, and the next crash is an alert of its own.
#[test]
fn a_carried_crash_or_stale_list_resolves_at_the_start() {
    let mut e = engine();
    let mut out = Vec::new();
    let crash = carried(AlertId::AgentCrashed, Subject::default(), 1);
    let stale = carried(AlertId::ListStale, Subject::default(), 2);
    let resolved = carried(AlertId::ClockUnsync, Subject::default(), 1);
    let resolved = Alert {
        state: AlertState::Resolved,
        ..resolved
    };
    e.carry(vec![crash, stale, resolved], 0, &mut out);
    assert_eq!(
        ids(&out),
        [
            (AlertId::AgentCrashed, AlertState::Resolved),
            (AlertId::ListStale, AlertState::Resolved)
        ]
    );
    assert_eq!(
        e.status().active_total,
        0,
        "a resolved notice is not carried"
    );
    out.clear();
    let evidence = "journals left unsealed".to_owned();
    e.event(Event::Crashed { evidence }, S, &mut out);
    assert_eq!(ids(&out), [(AlertId::AgentCrashed, AlertState::Raised)]);
}

/// Carried traffic alerts count against the limit; those over it are resolved, not lost.
#[test]
fn carried_traffic_alerts_over_the_limit_are_resolved() {
    let cfg = AlertConfig {
        alert_max_active: 2,
        ..AlertConfig::default()
    };
    let mut e = Engine::new(&cfg, 1000);
    let mut out = Vec::new();
    let first = |c: &str| {
        let subject = Subject {
            client: Some(c.parse().expect("address")),
            rule: Some("b.list:1".into()),
            ..Subject::default()
        };
        carried(AlertId::BlockFirst, subject, 1)
    };
    e.carry(
        vec![first("10.0.0.1"), first("10.0.0.2"), first("10.0.0.3")],
        0,
        &mut out,
    );
    assert_eq!(ids(&out), [(AlertId::BlockFirst, AlertState::Resolved)]);
    assert_eq!(out[0].subject.client, Some("10.0.0.3".parse().expect("ip")));
    out.clear();
    e.hit(hit("10.0.0.1", "b.list:1"), 1, S, &mut out);
    assert!(out.is_empty(), "counted on the carried alert: {out:?}");
    e.hit(hit("10.0.0.4", "b.list:1"), 1, S, &mut out);
    assert_eq!(
        out.iter().map(|a| a.subject.client).collect::<Vec<_>>(),
        [None],
        "the limit holds: the new client is counted in the overflow alert"
    );
}

/// The system alerts come first in the status, so a status cut to its first entries, and
/// the next agent carrying them, keeps them all whatever a flood of traffic alerts does.
#[test]
fn the_status_lists_system_alerts_before_traffic_ones() {
    let mut e = engine();
    let mut out = Vec::new();
    // Bursts (warning, like the clock's) raised first: by severity and age they came first.
    for c in 0..3 {
        e.hit(hit(&format!("10.0.0.{c}"), "b.list:1"), 5, 0, &mut out);
    }
    let full = Gauges {
        clock_unsynced: true,
        ..Gauges::default()
    };
    e.observe(full, S, &mut out);
    let order: Vec<AlertId> = e.status().active.iter().map(|a| a.id).collect();
    assert!(order.contains(&AlertId::BlockBurst), "{order:?}");
    assert_eq!(order.first(), Some(&AlertId::ClockUnsync), "{order:?}");
    assert!(order[1..].iter().all(|id| id.is_traffic()), "{order:?}");
}

/// An interface a sweep finds unaudited is one alert while it stays so, resolved once the
/// sweeps stop naming it.
#[test]
fn an_unaudited_interface_is_one_alert_until_audited_again() {
    let mut e = engine();
    let mut out = Vec::new();
    let gone = [Unaudited {
        name: "eth2".into(),
        reason: "deleted".into(),
    }];
    for t in 0..3 {
        e.unaudited(&gone, t * S, &mut out);
    }
    assert_eq!(ids(&out), [(AlertId::IfaceUnaudited, AlertState::Raised)]);
    assert_eq!(out[0].subject.interface.as_deref(), Some("eth2"));
    assert!(out[0].text.contains("eth2"), "{}", out[0].text);
    out.clear();
    e.unaudited(&[], 3 * S, &mut out);
    e.tick(62 * S, &mut out);
    assert_eq!(ids(&out), [(AlertId::IfaceUnaudited, AlertState::Resolved)]);
    assert_eq!(out[0].count, 3);
}

mod gauges;
mod limits;
mod store;

/// A rejected list file's alert says what of it is in force: its last good version, the
/// tables an adopted program held (no version of the file read), or at a start that found
/// neither, nothing: its rules are not enforced.
#[test]
fn a_rejected_list_says_whether_a_version_of_it_is_in_force() {
    let mut e = engine();
    let mut out = Vec::new();
    for (file, kept) in [
        ("a.list", ListKept::LastGood),
        ("c.list", ListKept::Held),
        ("b.list", ListKept::Nothing),
    ] {
        e.event(
            Event::ListRejected {
                file: file.into(),
                reason: format!("{file}:1: bad"),
                kept,
            },
            S,
            &mut out,
        );
    }
    let texts: Vec<&str> = out.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "list file rejected, its last good version stays in force: a.list:1: bad",
            "list file rejected, and no version of it was read: the tables of its kind stay as \
             the running program held them until it loads: c.list:1: bad",
            "list file rejected, and no version of it is in force: its rules are not enforced \
             until it loads: b.list:1: bad",
        ]
    );
}

/// A rejected list file's alert stays active while the sweeps find its last reload
/// rejected (a file left bad is not read again), and resolves a window after it loads; one
/// resolved while the file stayed bad (sweeps lost) is raised again by the next sweep.
#[test]
fn a_rejected_list_stays_alerted_while_the_file_stays_bad() {
    let mut e = engine();
    let mut out = Vec::new();
    let rejected = Event::ListRejected {
        file: "a.list".into(),
        reason: "a.list:1: bad".into(),
        kept: ListKept::LastGood,
    };
    e.event(rejected, S, &mut out);
    assert_eq!(ids(&out), [(AlertId::ListRejected, AlertState::Raised)]);
    out.clear();
    let bad = [("a.list".to_owned(), "a.list:1: bad".to_owned())];
    for t in (10..=300).step_by(10) {
        e.lists_rejected(&bad, t * S, &mut out);
        e.tick(t * S, &mut out);
    }
    assert_eq!(ids(&out), [], "still bad after 300 s: still active");
    e.lists_rejected(&[], 310 * S, &mut out);
    e.tick(370 * S, &mut out);
    assert_eq!(ids(&out), [(AlertId::ListRejected, AlertState::Resolved)]);
    assert_eq!(out[0].count, 1, "kept, not counted again");
    out.clear();
    e.lists_rejected(&bad, 380 * S, &mut out);
    assert_eq!(ids(&out), [(AlertId::ListRejected, AlertState::Raised)]);
    assert_eq!(
        out[0].text,
        "file rejected, still as last read: a.list:1: bad"
    );
}

/// A subscribers or lease file's alert carried from the last agent names its problem then;
/// a sweep that finds the file refused for another problem resolves it and raises one
/// naming the new one (the carried text said the last good version stays in force, while
/// none did). The same problem only counts on.
#[test]
fn a_carried_rejection_with_another_problem_now_is_raised_anew() {
    let mut e = engine();
    let mut out = Vec::new();
    let was = [(
        "subs.csv".to_owned(),
        "subscribers file subs.csv: cannot read: is a FIFO".to_owned(),
    )];
    e.lists_rejected(&was, S, &mut out);
    assert_eq!(ids(&out), [(AlertId::ListRejected, AlertState::Raised)]);
    out.clear();
    e.lists_rejected(&was, 2 * S, &mut out);
    assert_eq!(ids(&out), [], "the same problem counts on");
    let now = [(
        "subs.csv".to_owned(),
        "subscribers file subs.csv: is empty".to_owned(),
    )];
    e.lists_rejected(&now, 3 * S, &mut out);
    assert_eq!(
        ids(&out),
        [
            (AlertId::ListRejected, AlertState::Resolved),
            (AlertId::ListRejected, AlertState::Raised)
        ]
    );
    assert!(out[0].text.ends_with("is a FIFO"), "{}", out[0].text);
    assert!(out[1].text.ends_with("is empty"), "{}", out[1].text);
}

/// A file fixed and then broken otherwise within the window: the active alert named the old
/// problem; it is resolved (its count final) and one naming the new problem raised. The same
/// problem again only counts.
#[test]
fn a_list_broken_otherwise_is_alerted_with_its_new_problem() {
    let mut e = engine();
    let mut out = Vec::new();
    let rejected = |reason: &str| Event::ListRejected {
        file: "a.list".into(),
        reason: reason.into(),
        kept: ListKept::LastGood,
    };
    e.event(rejected("a.list:5: host bits set"), S, &mut out);
    e.event(rejected("a.list:5: host bits set"), 2 * S, &mut out);
    assert_eq!(ids(&out), [(AlertId::ListRejected, AlertState::Raised)]);
    out.clear();
    e.event(rejected("a.list: is empty (0 bytes)"), 3 * S, &mut out);
    assert_eq!(
        ids(&out),
        [
            (AlertId::ListRejected, AlertState::Resolved),
            (AlertId::ListRejected, AlertState::Raised)
        ]
    );
    assert!(out[0].text.ends_with("a.list:5: host bits set") && out[0].count == 2);
    assert!(
        out[1].text.ends_with("a.list: is empty (0 bytes)"),
        "{}",
        out[1].text
    );
    let active = e.status().active;
    assert_eq!(active.len(), 1);
    assert!(active[0].text.ends_with("is empty (0 bytes)"));
}
