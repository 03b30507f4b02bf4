//! Names from what the client resolved: an ECH offer that is Chrome's GREASE, a DNS answer
//! back through the gateway's NAT; the question a DNS flow's drop names.

use super::*;
use crate::reader::DroppedQuery;

/// A ClientHello offering ECH whose outer SNI the client resolved to the server itself is
/// Chrome's GREASE: the SNI is the name, though a later answer named the address otherwise;
/// an outer SNI it never resolved (a real ECH cover name) leaves the name to DNS.
#[test]
fn an_ech_offer_for_a_name_the_client_resolved_is_named_by_its_sni() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    // b.example, then a.example, both to the server (a CDN address).
    for (i, name) in ["b.example", "a.example"].into_iter().enumerate() {
        resolve(&mut st, 5353 + i as u16, name, t0 + i as i64 * 1_000_000);
    }
    let mut flows = Vec::new();
    for (i, outer) in ["b.example", "cover.example"].into_iter().enumerate() {
        let mut hello = Hello::chrome_like(outer, &mut Rng::new(7 + i as u64));
        hello.ech = true;
        let tls = record(
            "10.0.0.5",
            40000 + i as u16,
            SERVER,
            443,
            proto::TCP,
            t0 + S,
        );
        feed(
            &mut st,
            &flow_key(&tls),
            true,
            t0 + S,
            1000,
            &records(&hello.encode(), 16384),
        );
        flows.push(tls);
    }
    for r in &flows {
        st.write(r).expect("write");
    }
    assert_eq!(
        names(&out),
        [
            (Some("b.example".into()), Some(NameSource::Sni)),
            (Some("a.example".into()), Some(NameSource::Ech)),
        ]
    );
}

/// A DNS answer seen on the outside (the WAN interface audited), sent to the gateway's
/// outside address and port, is the inside client's that the NAT session maps there: its
/// flows are named by it.
#[test]
fn a_dns_answer_back_through_nat_names_the_inside_clients_flows() {
    let t0 = an_hour_ago();
    let nat: SharedNat = Arc::new(Mutex::new(NatTable::new(TableConfig::default())));
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), Some(nat.clone()), None));
    let resolver = ip("198.51.100.53");
    let mut dns =
        CtEntry::masqueraded_tcp(1, (ip("10.0.0.5"), 5353), (resolver, 53), (GW_OUT, 40001));
    dns.orig.proto = proto::UDP;
    dns.reply.proto = proto::UDP;
    ct(&nat, CtKind::New, dns, t0);
    // On the outside: the resolver's answer to the gateway's port (the query left the
    // gateway, which XDP does not see).
    let outside = record("198.51.100.53", 53, GW_OUT, 40001, proto::UDP, t0 + 1000);
    let answer = dns_message("behind.example", [198, 51, 100, 7], 300, true);
    feed(&mut st, &flow_key(&outside), true, t0 + 1000, 0, &answer);
    let lan = record("10.0.0.5", 40000, SERVER, 443, proto::TCP, t0 + S);
    let gw = record("203.0.113.1", 40002, SERVER, 443, proto::TCP, t0 + S);
    st.write(&lan).expect("write");
    st.write(&gw).expect("write");
    let got: Vec<_> = out.take().into_iter().map(|r| r.attr.domain).collect();
    assert_eq!(got[..2], [Some("behind.example".into()), None], "{got:?}");
}

/// The program's word on a query a domain rule dropped.
fn named(name_at: Option<u16>) -> Option<DroppedQuery> {
    Some(DroppedQuery { name_at })
}

/// A query a rule dropped never reached its resolver: an answer to it is forged (someone
/// who saw the query on the LAN), refused, and names nothing. The same query let through is
/// asked, and its answer taken.
#[test]
fn an_answer_to_a_dropped_query_is_refused() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    let resolver = ip("10.0.0.1");
    for (port, dropped) in [(5370, named(Some(12))), (5371, None)] {
        let key = flow_key(&record("10.0.0.5", port, resolver, 53, proto::UDP, t0));
        let query = dns_message("blocked.example", [0; 4], 0, false);
        let answer = dns_message("blocked.example", [198, 51, 100, 7], 300, true);
        feed_as(&mut st, &key, true, t0, 0, &query, dropped);
        feed(&mut st, &key, false, t0 + 1000, 0, &answer);
        let after = record("10.0.0.5", 40000, SERVER, 443, proto::TCP, t0 + S);
        st.write(&after).expect("write");
        let want = dropped.is_none().then(|| "blocked.example".to_string());
        assert_eq!(out.take()[0].attr.domain, want, "dropped: {dropped:?}");
    }
    let unasked = st.status().payload_failures.get("dns_unasked").copied();
    assert_eq!(unasked, Some(1), "{:?}", st.status().payload_failures);
    // Where the program names no offset (over TCP, or past the copy): still not asked.
    let key = flow_key(&record("10.0.0.6", 5372, resolver, 53, proto::UDP, t0));
    let query = dns_message("blocked.example", [0; 4], 0, false);
    feed_as(&mut st, &key, true, t0, 0, &query, named(None));
    let answer = dns_message("blocked.example", [198, 51, 100, 7], 300, true);
    feed(&mut st, &key, false, t0 + 1000, 0, &answer);
    let unasked = st.status().payload_failures.get("dns_unasked").copied();
    assert_eq!(unasked, Some(2), "{:?}", st.status().payload_failures);
}

/// A query whose second question a rule blocked (an innocent first one put before it) is
/// named by the blocked one, where the program says it starts.
#[test]
fn a_drop_names_the_question_the_rule_blocked() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    let mut query = dns_message("innocent.example", [0; 4], 0, false);
    query[5] = 2; // QDCOUNT
    let second = query.len();
    for l in ["blocked", "example"] {
        query.push(l.len() as u8);
        query.extend_from_slice(l.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 28, 0, 1]);
    let mut r = record("10.0.0.5", 5360, ip("10.0.0.1"), 53, proto::UDP, t0);
    r.dropped = 1;
    let at = u16::try_from(second).expect("short");
    feed_as(&mut st, &flow_key(&r), true, t0, 0, &query, named(Some(at)));
    st.write(&r).expect("write");
    let got = out.take();
    assert_eq!(got[0].attr.dns_qname.as_deref(), Some("blocked.example"));
    assert_eq!(got[0].attr.dns_qtype, Some(28));
    // The blocked one past the copied bytes (a jumbo frame's): no name, not the first one.
    r.src_port = 5361;
    let past = u16::try_from(query.len() + 40).expect("short");
    feed_as(
        &mut st,
        &flow_key(&r),
        true,
        t0,
        0,
        &query,
        named(Some(past)),
    );
    st.write(&r).expect("write");
    assert_eq!(out.take()[0].attr.dns_qname, None);
}

#[test]
fn a_drop_names_the_query_it_stopped() {
    let t0 = an_hour_ago();
    let (mut st, out) = stage(Inputs::fixed(Arc::default(), None, None));
    // A flow that asked more: its drop names the query it stopped, the latest; a record
    // without a drop names the first.
    for (dropped, want) in [(1, "blocked.example"), (0, "first.example")] {
        let mut r = record(
            "10.0.0.5",
            5354 + dropped as u16,
            ip("10.0.0.1"),
            53,
            proto::UDP,
            t0,
        );
        r.dropped = dropped;
        for name in ["First.Example", "second.example", "blocked.example"] {
            feed(
                &mut st,
                &flow_key(&r),
                true,
                t0,
                0,
                &dns_message(name, [0; 4], 0, false),
            );
        }
        // An answer to an earlier query, come back late, is not the latest query.
        let late = dns_message("second.example", [192, 0, 2, 1], 60, true);
        feed(&mut st, &flow_key(&r), false, t0, 0, &late);
        st.write(&r).expect("write");
        assert_eq!(out.take()[0].attr.dns_qname.as_deref(), Some(want));
    }
}
