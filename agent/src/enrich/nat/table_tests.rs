//! The NAT timeline: each rule of the join and the reconciliation on its own, then the
//! indexed lookups against a scan of every session under random churn.

use std::net::Ipv4Addr;

use super::*;
use crate::enrich::nat::parse::{Counters, CtStatus, L4};

const S: i64 = 1_000_000_000;

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
}

const GW: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));

/// A masqueraded TCP entry: client `.c:sport` -> server:443, outside `GW:oport`.
fn entry(id: u32, c: u8, sport: u16, oport: u16) -> CtEntry {
    CtEntry::masqueraded_tcp(id, (addr(c), sport), (SERVER, 443), (GW, oport))
}

fn msg(kind: CtKind, entry: CtEntry, seen_ns: i64) -> NatUpdate {
    NatUpdate::Message {
        msg: CtMessage { kind, entry },
        seen_ns,
    }
}

fn inside(c: u8, sport: u16) -> InsideKey {
    InsideKey::of_tuple(&entry(0, c, sport, 0).orig)
}

fn outside(port: u16) -> OutsideKey {
    OutsideKey {
        proto: 6,
        addr: GW,
        port,
    }
}

fn table() -> NatTable {
    NatTable::new(TableConfig::default())
}

#[test]
fn a_new_event_maps_inside_to_outside_from_its_receive_time() {
    let mut t = table();
    t.apply(msg(CtKind::New, entry(1, 2, 40000, 61000), 100 * S));
    let s = t
        .lookup_inside(&inside(2, 40000), 150 * S)
        .expect("session");
    assert_eq!(s.outside(), outside(61000));
    assert!(s.translated() && !s.start_exact && s.learned == Learned::Event);
    // XDP saw the first packet a moment before conntrack confirmed the entry.
    assert!(
        t.lookup_inside(&inside(2, 40000), 99 * S).is_some(),
        "within the start slack"
    );
    assert!(
        t.lookup_inside(&inside(2, 40000), 97 * S).is_none(),
        "past the start slack"
    );
    assert!(
        t.lookup_inside(&inside(2, 40001), 150 * S).is_none(),
        "another tuple"
    );
    let back: Vec<_> = t.lookup_outside(&outside(61000), 150 * S).collect();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].inside(), inside(2, 40000));
    assert_eq!(
        t.lookup_outside(&outside(61000), 50 * S).count(),
        0,
        "before it started"
    );
    // An answer XDP saw on the outside a moment before the agent heard of the session.
    assert_eq!(
        t.lookup_outside(&outside(61000), 99 * S).count(),
        1,
        "within the start slack"
    );
    assert_eq!(
        t.lookup_outside(&outside(61000), 97 * S).count(),
        0,
        "past the start slack"
    );
}

#[test]
fn an_untranslated_entry_says_so() {
    let mut e = entry(1, 2, 40000, 40000);
    e.reply.dst = e.orig.src;
    e.status = CtStatus(CtStatus::CONFIRMED);
    let mut t = table();
    t.apply(msg(CtKind::New, e, S));
    assert!(!t
        .lookup_inside(&inside(2, 40000), S)
        .expect("session")
        .translated());
}

#[test]
fn destroy_closes_with_the_kernel_times_and_hands_out_once() {
    let mut t = table();
    t.apply(msg(CtKind::New, entry(1, 2, 40000, 61000), 100 * S));
    let mut d = entry(1, 2, 40000, 61000);
    d.start_ns = Some(100 * S - 5);
    d.stop_ns = Some(200 * S);
    d.counters_orig = Some(Counters {
        packets: 3,
        bytes: 180,
    });
    t.apply(msg(CtKind::Destroy, d, 201 * S));
    assert_eq!(t.open_len(), 0);
    let closed: Vec<_> = t.take_closed(i64::MAX).collect();
    assert_eq!(closed.len(), 1);
    let s = closed[0];
    assert_eq!(
        s.window,
        Validity {
            from: Some(100 * S - 5),
            to: Some(200 * S)
        }
    );
    assert!(s.start_exact && s.closed == Some(Closed::Destroyed));
    assert_eq!(s.entry.counters_orig.map(|c| c.packets), Some(3));
    assert_eq!(t.take_closed(i64::MAX).count(), 0, "handed out twice");
    // Still there for late flow records until the linger passes.
    assert!(t.lookup_inside(&inside(2, 40000), 150 * S).is_some());
    assert!(
        t.lookup_inside(&inside(2, 40000), 200 * S).is_none(),
        "end is exclusive"
    );
    assert_eq!(t.expire(200 * S + TableConfig::default().linger_ns - 1), 0);
    assert_eq!(t.expire(200 * S + TableConfig::default().linger_ns), 1);
    assert!(t.is_empty() && t.lookup_inside(&inside(2, 40000), 150 * S).is_none());
    assert_eq!(t.lookup_outside(&outside(61000), 150 * S).count(), 0);
}

#[test]
fn a_joined_session_is_handed_out_marked_and_only_once_its_end_is_old_enough() {
    let mut t = table();
    t.apply(msg(CtKind::New, entry(1, 2, 40000, 61000), 100 * S));
    t.apply(msg(CtKind::New, entry(2, 3, 40001, 61001), 100 * S));
    assert_eq!(t.join(&inside(2, 40000), 150 * S), Some(outside(61000)));
    assert_eq!(
        t.join(&inside(9, 40000), 150 * S),
        None,
        "no entry covers it"
    );
    for (id, c, sport, oport) in [(1, 2, 40000, 61000), (2, 3, 40001, 61001)] {
        let mut d = entry(id, c, sport, oport);
        d.stop_ns = Some(200 * S);
        t.apply(msg(CtKind::Destroy, d, 201 * S));
    }
    assert_eq!(
        t.take_closed(200 * S).count(),
        0,
        "handed out before a late flow record could join it"
    );
    let mut closed: Vec<_> = t.take_closed(200 * S + 1).collect();
    closed.sort_by_key(|s| s.entry.id);
    let joined: Vec<_> = closed.iter().map(|s| (s.entry.id, s.joined)).collect();
    assert_eq!(joined, [(1, true), (2, false)]);
}

#[test]
fn a_reused_tuple_joins_the_session_of_its_time() {
    let mut t = table();
    for (id, at) in [(1, 10), (2, 30)] {
        t.apply(msg(CtKind::New, entry(id, 2, 40000, 61000), at * S));
        let mut d = entry(id, 2, 40000, 61000);
        d.start_ns = Some(at * S);
        d.stop_ns = Some((at + 10) * S);
        t.apply(msg(CtKind::Destroy, d, (at + 10) * S));
    }
    assert_eq!(
        t.lookup_inside(&inside(2, 40000), 15 * S)
            .map(|s| s.entry.id),
        Some(1)
    );
    assert_eq!(
        t.lookup_inside(&inside(2, 40000), 35 * S)
            .map(|s| s.entry.id),
        Some(2)
    );
    assert_eq!(t.lookup_inside(&inside(2, 40000), 25 * S), None);
    assert_eq!(
        t.lookup_outside(&outside(61000), 35 * S)
            .map(|s| s.entry.id)
            .collect::<Vec<_>>(),
        vec![2]
    );
}

/// A new connection on a tuple whose open session's destroy was lost (a full socket
/// buffer) closes that session where the new one starts: a flow XDP saw just before
/// conntrack stamped the new entry joins the new session, not the dead one. ICMP sessions,
/// whose echo identifier the inside key lacks, stay open side by side.
#[test]
fn a_new_connection_on_the_tuple_of_an_open_session_closes_it() {
    let mut t = table();
    t.apply(msg(CtKind::New, entry(1, 2, 40000, 61000), 10 * S));
    t.apply(msg(CtKind::New, entry(2, 2, 40000, 62000), 20 * S));
    assert_eq!(t.stats().closed_replaced, 1);
    assert_eq!(
        t.join(&inside(2, 40000), 20 * S - S / 100),
        Some(outside(62000)),
        "the flow that opened the new connection"
    );
    assert_eq!(
        t.lookup_inside(&inside(2, 40000), 15 * S)
            .map(|s| s.entry.id),
        Some(1),
        "the old connection's time keeps its answer"
    );
    let ping = |id: u32, echo: u16| {
        let mut e = entry(id, 2, 0, 0);
        e.orig.proto = 1;
        e.reply.proto = 1;
        e.orig.l4 = L4::Icmp {
            id: echo,
            ty: 8,
            code: 0,
        };
        e.reply.l4 = L4::Icmp {
            id: echo,
            ty: 0,
            code: 0,
        };
        e
    };
    t.apply(msg(CtKind::New, ping(3, 7), 30 * S));
    t.apply(msg(CtKind::New, ping(4, 8), 31 * S));
    assert_eq!(t.stats().closed_replaced, 1, "two pings are two sessions");
    // A UDP clash loser shares the winner's tuple: both stay.
    let udp = |id: u32, oport: u16, clash: bool| {
        let mut e = entry(id, 5, 5353, oport);
        e.orig.proto = 17;
        e.reply.proto = 17;
        if clash {
            e.status.0 |= CtStatus::NAT_CLASH;
        }
        e
    };
    t.apply(msg(CtKind::New, udp(5, 63000, false), 40 * S));
    t.apply(msg(CtKind::New, udp(6, 63001, true), 40 * S + 1));
    assert_eq!(t.stats().closed_replaced, 1, "the clash winner stays open");
}

/// An entry the start's dump lists without a start time (conntrack timestamps were off)
/// began before the agent: a flow that began before it too (adopted from the pinned table)
/// joins it. One listed with its start joins only from there.
#[test]
fn a_start_dump_entry_without_a_timestamp_holds_before_the_start() {
    let mut t = table();
    t.apply(NatUpdate::DumpBegin {
        at_ns: 50 * S,
        reason: DumpReason::Start,
    });
    t.apply(msg(CtKind::Dumped, entry(1, 2, 40000, 61000), 50 * S));
    let mut stamped = entry(2, 2, 40001, 61001);
    stamped.start_ns = Some(40 * S);
    t.apply(msg(CtKind::Dumped, stamped, 50 * S));
    t.apply(NatUpdate::DumpEnd { at_ns: 51 * S });
    assert_eq!(t.join(&inside(2, 40000), 10 * S), Some(outside(61000)));
    assert_eq!(t.join(&inside(2, 40001), 10 * S), None, "began at 40 s");
    assert_eq!(t.join(&inside(2, 40001), 45 * S), Some(outside(61001)));
}

#[test]
fn an_id_back_with_another_tuple_closes_the_old_session() {
    let mut t = table();
    t.apply(msg(CtKind::New, entry(7, 2, 40000, 61000), 10 * S));
    t.apply(msg(CtKind::New, entry(7, 3, 50000, 62000), 20 * S));
    assert_eq!(t.stats().closed_replaced, 1);
    let closed: Vec<_> = t.take_closed(i64::MAX).collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(
        (closed[0].closed, closed[0].window.to),
        (Some(Closed::Replaced), Some(20 * S))
    );
    assert_eq!(
        t.open_sessions().map(|s| s.inside()).collect::<Vec<_>>(),
        vec![inside(3, 50000)]
    );
}

#[test]
fn a_dump_recovers_lost_news_and_closes_lost_destroys() {
    let mut t = table();
    t.apply(msg(CtKind::New, entry(1, 2, 40000, 61000), 10 * S)); // alive
    t.apply(msg(CtKind::New, entry(2, 2, 40001, 61001), 10 * S)); // its destroy is lost
    t.apply(NatUpdate::DumpBegin {
        at_ns: 50 * S,
        reason: DumpReason::Loss,
    });
    let mut alive = entry(1, 2, 40000, 61000);
    alive.start_ns = Some(9 * S);
    t.apply(msg(CtKind::Dumped, alive, 50 * S));
    let mut missed = entry(3, 2, 40002, 61002); // its new was lost
    missed.start_ns = Some(40 * S);
    t.apply(msg(CtKind::Dumped, missed, 50 * S));
    // A new entry during the dump, after the dump passed its bucket: not listed, not closed.
    t.apply(msg(CtKind::New, entry(4, 2, 40003, 61003), 50 * S + 1));
    t.apply(NatUpdate::DumpEnd { at_ns: 51 * S });

    let st = t.stats();
    assert_eq!((st.recovered, st.closed_missing), (1, 1));
    let s1 = t.lookup_inside(&inside(2, 40000), 50 * S).expect("alive");
    assert_eq!(
        (s1.window.from, s1.start_exact, s1.learned),
        (Some(9 * S), true, Learned::Event)
    );
    let s3 = t
        .lookup_inside(&inside(2, 40002), 45 * S)
        .expect("recovered");
    assert_eq!(
        (s3.learned, s3.window.from),
        (Learned::Recovered, Some(40 * S))
    );
    assert!(
        t.lookup_inside(&inside(2, 40003), 52 * S).is_some(),
        "new during the dump"
    );
    let gone: Vec<_> = t.take_closed(i64::MAX).collect();
    assert_eq!(gone.len(), 1);
    assert_eq!(
        (gone[0].entry.id, gone[0].closed, gone[0].window.to),
        (2, Some(Closed::MissingFromDump), Some(51 * S))
    );
}

#[test]
fn a_late_destroy_makes_the_dump_bound_exact() {
    let mut t = table();
    t.apply(msg(CtKind::New, entry(2, 2, 40001, 61001), 10 * S));
    t.apply(NatUpdate::DumpBegin {
        at_ns: 50 * S,
        reason: DumpReason::Loss,
    });
    t.apply(NatUpdate::DumpEnd { at_ns: 51 * S });
    // The kernel's start precedes the new event's receipt; the event makes it exact too.
    let mut d = entry(2, 2, 40001, 61001);
    d.start_ns = Some(9 * S);
    d.stop_ns = Some(45 * S);
    t.apply(msg(CtKind::Destroy, d, 52 * S));
    let s: Vec<_> = t.take_closed(i64::MAX).collect();
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].closed, s[0].window, s[0].start_exact),
        (
            Some(Closed::Destroyed),
            Validity {
                from: Some(9 * S),
                to: Some(45 * S)
            },
            true
        )
    );
    let st = t.stats();
    assert_eq!(
        (st.destroy_only, st.closed_missing, st.dump_before_destroy),
        (0, 1, 1)
    );
    // A session a dump closed while it lived, ended later: the dump was wrong, not early.
    t.apply(msg(CtKind::New, entry(3, 2, 40003, 61003), 60 * S));
    t.apply(NatUpdate::DumpBegin {
        at_ns: 70 * S,
        reason: DumpReason::Periodic,
    });
    t.apply(NatUpdate::DumpEnd { at_ns: 71 * S });
    let mut d = entry(3, 2, 40003, 61003);
    d.stop_ns = Some(80 * S);
    t.apply(msg(CtKind::Destroy, d, 81 * S));
    let st = t.stats();
    assert_eq!((st.closed_missing, st.dump_before_destroy), (2, 1));
}

#[test]
fn a_dump_ahead_of_a_new_event_is_no_recovery() {
    let mut t = table();
    t.apply(NatUpdate::DumpBegin {
        at_ns: 50 * S,
        reason: DumpReason::Periodic,
    });
    let mut e = entry(7, 2, 40007, 61007);
    e.start_ns = Some(49 * S);
    t.apply(msg(CtKind::Dumped, e, 50 * S));
    t.apply(NatUpdate::DumpEnd { at_ns: 51 * S });
    t.apply(msg(CtKind::New, e, 52 * S));
    let s = t.lookup_inside(&inside(2, 40007), 52 * S).expect("open");
    assert_eq!((s.learned, s.window.from), (Learned::Event, Some(49 * S)));
    let st = t.stats();
    assert_eq!((st.recovered, st.dump_before_new), (1, 1));
}

#[test]
fn an_aborted_dump_closes_nothing() {
    let mut t = table();
    t.apply(msg(CtKind::New, entry(1, 2, 40000, 61000), 10 * S));
    t.apply(NatUpdate::DumpBegin {
        at_ns: 50 * S,
        reason: DumpReason::Periodic,
    });
    t.apply(NatUpdate::DumpAborted);
    t.apply(NatUpdate::DumpEnd { at_ns: 51 * S });
    assert_eq!(t.open_len(), 1);
}

#[test]
fn a_destroy_without_its_new_is_recorded_with_what_it_says() {
    let mut t = table();
    let mut d = entry(9, 2, 40000, 61000);
    d.start_ns = Some(5 * S);
    d.stop_ns = Some(8 * S);
    t.apply(msg(CtKind::Destroy, d, 9 * S));
    let mut bare = entry(10, 2, 40001, 61001);
    bare.stop_ns = Some(8 * S);
    t.apply(msg(CtKind::Destroy, bare, 9 * S));
    let s: Vec<_> = t.take_closed(i64::MAX).collect();
    assert_eq!(t.stats().destroy_only, 2);
    assert_eq!(
        s[0].window,
        Validity {
            from: Some(5 * S),
            to: Some(8 * S)
        }
    );
    assert_eq!(s[0].learned, Learned::DestroyOnly);
    // No start: an empty window, which no lookup matches.
    assert_eq!(
        s[1].window,
        Validity {
            from: Some(8 * S),
            to: Some(8 * S)
        }
    );
    assert!(t.lookup_inside(&inside(2, 40001), 8 * S).is_none());
}

#[test]
fn icmp_echoes_share_an_inside_key_and_the_latest_wins() {
    let mut t = table();
    for (id, echo, at) in [(1u32, 100u16, 10i64), (2, 200, 12)] {
        let tuple = |src, dst, ty| CtTuple {
            proto: 1,
            src,
            dst,
            l4: L4::Icmp {
                id: echo,
                ty,
                code: 0,
            },
        };
        let mut e = entry(id, 2, 0, 0);
        e.orig = tuple(addr(2), SERVER, 8);
        e.reply = tuple(SERVER, GW, 0);
        t.apply(msg(CtKind::New, e, at * S));
    }
    let key = InsideKey {
        proto: 1,
        src: addr(2),
        src_port: 8,
        dst: SERVER,
        dst_port: 0,
    };
    assert_eq!(t.lookup_inside(&key, 11 * S).map(|s| s.entry.id), Some(1));
    assert_eq!(t.lookup_inside(&key, 13 * S).map(|s| s.entry.id), Some(2));
    let out = OutsideKey {
        proto: 1,
        addr: GW,
        port: 100,
    };
    assert_eq!(
        t.lookup_outside(&out, 13 * S)
            .map(|s| s.entry.id)
            .collect::<Vec<_>>(),
        vec![1]
    );
}

#[test]
fn a_full_table_evicts_closed_sessions_and_counts_it() {
    let mut t = NatTable::new(TableConfig {
        max_sessions: 3,
        ..TableConfig::default()
    });
    for id in 0..3u32 {
        t.apply(msg(CtKind::New, entry(id, 2, 40000 + id as u16, 61000), S));
    }
    t.apply(msg(CtKind::Destroy, entry(0, 2, 40000, 61000), 2 * S));
    t.apply(msg(CtKind::Destroy, entry(1, 2, 40001, 61000), 2 * S));
    assert_eq!(t.take_closed(i64::MAX).count(), 2);
    t.apply(msg(CtKind::New, entry(3, 2, 40003, 61000), 3 * S)); // evicts written id 0
    t.apply(msg(CtKind::Destroy, entry(2, 2, 40002, 61000), 4 * S));
    t.apply(msg(CtKind::New, entry(4, 2, 40004, 61000), 5 * S)); // evicts written id 1
    t.apply(msg(CtKind::New, entry(5, 2, 40005, 61000), 5 * S)); // evicts unwritten id 2
    t.apply(msg(CtKind::New, entry(6, 2, 40006, 61000), 5 * S)); // all open: refused
    let st = t.stats();
    assert_eq!(
        (st.evicted_early, st.evicted_unwritten, st.refused_full),
        (2, 1, 1)
    );
    assert_eq!(t.len(), 3);
    assert_eq!(
        t.lookup_outside(&outside(61000), 6 * S).count(),
        3,
        "chains intact after eviction"
    );
}

/// Every session a key's chain should hold, by scanning the slab.
fn scan_inside(t: &NatTable, key: &InsideKey, at: i64) -> Option<u32> {
    let live = t
        .slots
        .iter()
        .filter(|s| s.state != State::Free)
        .map(|s| &s.session);
    let cands: Vec<_> = live.filter(|s| s.inside() == *key).collect();
    let start = |s: &NatSession| s.window.from.unwrap_or(i64::MIN);
    let holding = cands
        .iter()
        .filter(|s| s.window.contains(at))
        .max_by_key(|s| start(s));
    let soon = cands
        .iter()
        .filter(|s| s.window.to.is_none_or(|to| to > start(s)))
        .filter(|s| start(s) > at && start(s) - at <= t.config.start_slack_ns)
        .min_by_key(|s| start(s));
    let end = |s: &NatSession| s.window.to.unwrap_or(i64::MAX);
    match (holding, soon) {
        (Some(h), Some(n))
            if end(h) <= start(n) && end(h).saturating_sub(at) <= REUSED_TUPLE_NS =>
        {
            Some(n.entry.id)
        }
        _ => holding.or(soon).map(|s| s.entry.id),
    }
}

#[test]
fn indexed_lookups_equal_a_scan_under_churn() {
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut t = NatTable::new(TableConfig {
        max_sessions: 64,
        linger_ns: 20 * S,
        ..TableConfig::default()
    });
    let mut id = 0u32;
    for step in 0..20_000i64 {
        let now = step * S / 10;
        // A small tuple space, so keys collide, ids come back, and chains grow.
        let (c, sport, oport) = (
            2 + next(3) as u8,
            40000 + next(4) as u16,
            61000 + next(4) as u16,
        );
        match next(10) {
            0..=3 => {
                id = id.wrapping_add(1);
                t.apply(msg(CtKind::New, entry(id % 50, c, sport, oport), now));
            }
            4..=6 => {
                let open: Vec<CtEntry> = t.open_sessions().map(|s| s.entry).collect();
                if let Some(e) = open.get(next(open.len().max(1) as u64) as usize) {
                    let mut d = *e;
                    d.stop_ns = Some(now);
                    t.apply(msg(CtKind::Destroy, d, now));
                }
            }
            7 => {
                t.take_closed(i64::MAX).for_each(drop);
            }
            8 => {
                t.expire(now);
            }
            _ => {
                // A dump listing a random half of the open sessions.
                t.apply(NatUpdate::DumpBegin {
                    at_ns: now,
                    reason: DumpReason::Loss,
                });
                let open: Vec<CtEntry> = t.open_sessions().map(|s| s.entry).collect();
                for e in open.into_iter().filter(|_| next(2) == 0) {
                    t.apply(msg(CtKind::Dumped, e, now));
                }
                t.apply(NatUpdate::DumpEnd { at_ns: now + 1 });
            }
        }
        let probe = inside(2 + next(3) as u8, 40000 + next(4) as u16);
        let at = now - next(30) as i64 * S / 10;
        assert_eq!(
            t.lookup_inside(&probe, at).map(|s| s.entry.id),
            scan_inside(&t, &probe, at),
            "step {step}"
        );
        let out = outside(61000 + next(4) as u16);
        let mut got: Vec<u32> = t.lookup_outside(&out, at).map(|s| s.entry.id).collect();
        let mut want: Vec<u32> = t
            .slots
            .iter()
            .filter(|s| {
                let w = &s.session.window;
                let start = w.from.unwrap_or(i64::MIN);
                let soon = w.to.is_none_or(|to| to > start)
                    && start > at
                    && start - at <= t.config.start_slack_ns;
                s.state != State::Free && s.session.outside() == out && (w.contains(at) || soon)
            })
            .map(|s| s.session.entry.id)
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "step {step}");
        assert!(t.len() <= 64);
        assert_eq!(
            t.open_len(),
            t.slots.iter().filter(|s| s.state == State::Open).count()
        );
    }
    assert!(
        t.stats().evicted_early + t.stats().expired > 0,
        "the churn never removed a session"
    );
}

/// A client reuses its TCP source port to the same server while the old entry sits in
/// TIME_WAIT: the new SYN ends the old entry (its stop, when netfilter handled the SYN, a
/// little after XDP stamped it) and a new entry with another outside port follows. The flow
/// went out through the new one; a session still holding well after the flow's start keeps
/// it.
#[test]
fn a_reused_tuple_joins_the_session_its_syn_began_not_the_one_it_ended() {
    let mut t = table();
    let syn = 100 * S;
    t.apply(msg(CtKind::New, entry(1, 2, 40000, 61000), 10 * S));
    let mut old = entry(1, 2, 40000, 61000);
    (old.start_ns, old.stop_ns) = (Some(10 * S), Some(syn + 50_000));
    t.apply(msg(CtKind::Destroy, old, syn + 60_000));
    // New events carry no timestamp: the new entry starts when it was received.
    t.apply(msg(CtKind::New, entry(2, 2, 40000, 62000), syn + 100_000));
    assert_eq!(t.join(&inside(2, 40000), syn), Some(outside(62000)));
    // A flow that started a second before the old entry's end was the old one's.
    assert_eq!(t.join(&inside(2, 40000), syn - S), Some(outside(61000)));
}
