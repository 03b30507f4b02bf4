//! NAT joins: flows by tuple and start, sessions no flow joined as NAT records, and a
//! flow's later records.

use super::*;

#[test]
fn nat_joins_by_tuple_and_start_and_unjoined_sessions_become_nat_records() {
    let t0 = now() - 3600 * S;
    let nat: SharedNat = Arc::new(Mutex::new(NatTable::new(TableConfig::default())));
    let subs = subscribers("match,account\n10.0.0.0/24,alice\n");
    let (mut st, out) = stage(Inputs::fixed(subs, Some(nat.clone()), None));
    ct(&nat, CtKind::New, ct_entry(1, "10.0.0.5", 40000, 61000), t0);
    ct(&nat, CtKind::New, ct_entry(2, "10.0.0.6", 40000, 61001), t0);
    let joined = record("10.0.0.5", 40000, SERVER, 443, proto::TCP, t0 + S);
    let uncovered = record("10.0.0.5", 40009, SERVER, 443, proto::TCP, t0 + S);
    st.write(&joined).expect("write");
    st.write(&uncovered).expect("write");
    for (id, src, oport) in [(1, "10.0.0.5", 61000), (2, "10.0.0.6", 61001)] {
        let mut e = ct_entry(id, src, 40000, oport);
        e.start_ns = Some(t0);
        e.stop_ns = Some(t0 + 10 * S);
        ct(&nat, CtKind::Destroy, e, t0 + 10 * S);
    }
    st.tick().expect("tick");
    let got = out.take();
    let nat_of = |r: &FlowRecord| (r.attr.nat_ip, r.attr.nat_port);
    assert_eq!(nat_of(&got[0]), (Some(GW_OUT), Some(61000)));
    assert_eq!(
        nat_of(&got[1]),
        (None, None),
        "no conntrack entry covers it"
    );
    assert_eq!(
        got.len(),
        3,
        "one NAT record, for the session no flow joined: {got:#?}"
    );
    let n = &got[2];
    assert_eq!(n.end_reason, EndReason::Nat);
    assert_eq!((n.src_ip, n.src_port), (ip("10.0.0.6"), 40000));
    assert_eq!(nat_of(n), (Some(GW_OUT), Some(61001)));
    assert_eq!(n.attr.user.as_deref(), Some("alice"));
    assert_eq!((n.time_start_ns, n.time_end_ns), (t0, t0 + 10 * S));
    st.tick().expect("tick");
    assert!(out.take().is_empty(), "a NAT record written twice");
    assert_eq!(st.status().nat.nat_records, 1);
}

/// A flow whose first record was written before its NAT session was heard of (the SYN
/// waited for a port; an agent stopped right after the SYN and the next adopted the flow)
/// has the session's outside tuple on its later records, and the session is no NAT record
/// of its own.
#[test]
fn a_later_record_joins_the_nat_session_its_first_record_missed() {
    let t0 = now() - 3600 * S;
    let nat: SharedNat = Arc::new(Mutex::new(NatTable::new(TableConfig::default())));
    let subs = subscribers("match,account\n10.0.0.0/24,alice\n");
    let (mut st, out) = stage(Inputs::fixed(subs, Some(nat.clone()), None));
    let mut first = record("10.0.0.5", 40000, SERVER, 443, proto::TCP, t0);
    first.end_reason = EndReason::Active;
    st.write(&first).expect("write");
    // The session: new a second after the flow's first packet, within the join's slack.
    ct(
        &nat,
        CtKind::New,
        ct_entry(1, "10.0.0.5", 40000, 61000),
        t0 + S,
    );
    let mut later = first.clone();
    later.end_reason = EndReason::Fin;
    later.time_end_ns = t0 + 5 * S;
    st.write(&later).expect("write");
    let mut e = ct_entry(1, "10.0.0.5", 40000, 61000);
    e.start_ns = Some(t0 + S);
    e.stop_ns = Some(t0 + 6 * S);
    ct(&nat, CtKind::Destroy, e, t0 + 6 * S);
    st.tick().expect("tick");
    let got = out.take();
    let nat_of = |r: &FlowRecord| (r.attr.nat_ip, r.attr.nat_port);
    assert_eq!(nat_of(&got[0]), (None, None), "written before the session");
    assert_eq!(nat_of(&got[1]), (Some(GW_OUT), Some(61000)));
    assert_eq!(got[1].attr.user.as_deref(), Some("alice"));
    assert_eq!(
        got.len(),
        2,
        "the joined session is no NAT record: {got:#?}"
    );
}
