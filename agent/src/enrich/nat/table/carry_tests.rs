//! Carried sessions: saved as the table holds them, taken back beside what conntrack says.

use std::net::{IpAddr, Ipv4Addr};

use super::super::{
    CtKind, CtMessage, DumpReason, InsideKey, Learned, NatTable, NatUpdate, OutsideKey, TableConfig,
};
use crate::enrich::nat::parse::CtEntry;

const S: i64 = 1_000_000_000;
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
const GW: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));

fn entry(id: u32, sport: u16, oport: u16) -> CtEntry {
    CtEntry::masqueraded_tcp(id, (CLIENT, sport), (SERVER, 443), (GW, oport))
}

fn msg(kind: CtKind, entry: CtEntry, seen_ns: i64) -> NatUpdate {
    NatUpdate::Message {
        msg: CtMessage { kind, entry },
        seen_ns,
    }
}

fn outside(port: u16) -> OutsideKey {
    OutsideKey {
        proto: 6,
        addr: GW,
        port,
    }
}

/// The last agent's table: two sessions open, one of them joined by a flow record.
fn saved() -> Vec<super::SavedSession> {
    let mut t = NatTable::new(TableConfig::default());
    t.apply(msg(CtKind::New, entry(1, 40000, 61000), 100 * S));
    t.apply(msg(CtKind::New, entry(2, 40001, 61001), 101 * S));
    let joined = InsideKey::of_tuple(&entry(2, 40001, 0).orig);
    assert_eq!(t.join(&joined, 101 * S), Some(outside(61001)));
    let s = t.unjoined_sessions();
    assert_eq!(s.len(), 1, "only the unjoined one: {s:?}");
    assert_eq!(
        (s[0].inside, s[0].outside, s[0].from_ns),
        ((CLIENT, 40000), (GW, 61000), 100 * S)
    );
    s
}

/// What conntrack forgot while no agent ran is still joined by the flow the last agent had
/// not written: open until the start dump (which does not list it) closes it, or, taken back
/// after that dump, closed at once; and then written as a `nat` record unless a flow joins it.
#[test]
fn a_session_conntrack_forgot_still_joins_its_flow() {
    let inside = InsideKey::of_tuple(&entry(1, 40000, 0).orig);
    // Taken back before the start dump, and before a dump in progress ends.
    for begin_first in [false, true] {
        let mut t = NatTable::new(TableConfig::default());
        let dump = NatUpdate::DumpBegin {
            at_ns: 200 * S,
            reason: DumpReason::Start,
        };
        if begin_first {
            t.apply(dump);
        }
        t.restore_unjoined(saved(), 200 * S);
        if !begin_first {
            t.apply(dump);
        }
        assert_eq!(t.open_len(), 1);
        t.apply(NatUpdate::DumpEnd { at_ns: 201 * S });
        assert_eq!(t.open_len(), 0, "the dump did not list it: closed");
        let s = t
            .lookup_inside(&inside, 150 * S)
            .expect("the carried session");
        assert_eq!(
            (s.learned, s.window.from, s.window.to),
            (Learned::Carried, Some(100 * S), Some(201 * S))
        );
        assert_eq!(t.stats().carried, 1);
        let unjoined: Vec<_> = t.take_closed(i64::MAX).filter(|s| !s.joined).collect();
        assert_eq!(unjoined.len(), 1, "a nat record for it, no flow joining it");
    }
    // Taken back after the start dump: closed now.
    let mut t = NatTable::new(TableConfig::default());
    t.apply(NatUpdate::DumpBegin {
        at_ns: 200 * S,
        reason: DumpReason::Start,
    });
    t.apply(NatUpdate::DumpEnd { at_ns: 201 * S });
    t.restore_unjoined(saved(), 202 * S);
    assert_eq!(t.open_len(), 0);
    assert_eq!(t.join(&inside, 150 * S), Some(outside(61000)));
    assert!(
        t.take_closed(i64::MAX).all(|s| s.joined),
        "the flow joined it: no nat record"
    );
}

/// A session conntrack still holds is its word, not the save's: listed by the start dump
/// before the save is taken back, or after, it is one session, open.
#[test]
fn a_session_conntrack_still_holds_is_not_doubled() {
    for dump_first in [true, false] {
        let mut t = NatTable::new(TableConfig::default());
        let listed = CtEntry {
            start_ns: Some(100 * S),
            ..entry(1, 40000, 61000)
        };
        let dump = [
            NatUpdate::DumpBegin {
                at_ns: 200 * S,
                reason: DumpReason::Start,
            },
            msg(CtKind::Dumped, listed, 200 * S),
            NatUpdate::DumpEnd { at_ns: 201 * S },
        ];
        if dump_first {
            dump.into_iter().for_each(|u| t.apply(u));
            t.restore_unjoined(saved(), 202 * S);
        } else {
            t.restore_unjoined(saved(), 199 * S);
            dump.into_iter().for_each(|u| t.apply(u));
        }
        assert_eq!((t.len(), t.open_len()), (1, 1), "dump first: {dump_first}");
    }
}

/// A saved session whose conntrack id now names another connection is over: closed at the
/// time it is taken back, and the live session keeps its id (its destroy still closes it).
#[test]
fn a_saved_session_whose_id_came_back_is_closed_and_the_live_one_kept() {
    let mut t = NatTable::new(TableConfig::default());
    t.apply(msg(CtKind::New, entry(1, 40500, 61500), 190 * S));
    t.restore_unjoined(saved(), 200 * S);
    assert_eq!(t.open_len(), 1, "the live one");
    let carried = InsideKey::of_tuple(&entry(1, 40000, 0).orig);
    let s = t
        .lookup_inside(&carried, 150 * S)
        .expect("the carried session");
    assert_eq!(s.window.to, Some(200 * S));
    t.apply(msg(CtKind::Destroy, entry(1, 40500, 61500), 210 * S));
    assert_eq!(t.open_len(), 0, "the live one's destroy found it");
}

/// A saved session the start dump listed, and whose destroy came before the save was taken
/// back, is conntrack's closed session: not inserted a second time (two `nat` records).
#[test]
fn a_session_listed_and_destroyed_before_the_restore_is_not_doubled() {
    let mut t = NatTable::new(TableConfig::default());
    let listed = CtEntry {
        start_ns: Some(100 * S),
        ..entry(1, 40000, 61000)
    };
    for u in [
        NatUpdate::DumpBegin {
            at_ns: 200 * S,
            reason: DumpReason::Start,
        },
        msg(CtKind::Dumped, listed, 200 * S),
        NatUpdate::DumpEnd { at_ns: 201 * S },
        msg(CtKind::Destroy, listed, 202 * S),
    ] {
        t.apply(u);
    }
    t.restore_unjoined(saved(), 203 * S);
    assert_eq!((t.len(), t.open_len()), (1, 0));
    assert_eq!(t.take_closed(i64::MAX).count(), 1, "one NAT record");
}
