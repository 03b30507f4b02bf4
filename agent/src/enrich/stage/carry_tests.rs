//! The carry-over: what one agent learned, the next takes back ([`super::super::carry`]).

use std::time::Duration;

use super::*;
use crate::blocklist::tests::TempDir;
use crate::enrich::stage::carry::FILE;

/// A minute ago, or a second after boot (payloads carry kernel times).
fn a_minute_ago() -> i64 {
    let boot = WallClock::measure().offset_ns();
    (now() - 60 * S).max(boot + S)
}

fn carrying(dir: &TempDir, subs: Arc<SubscriberTable>) -> (EnrichStage, Captured) {
    let (mut st, out) = stage(Inputs::fixed(subs, None, None));
    st.carry_over(&dir.0, Duration::from_secs(3600), true);
    (st, out)
}

fn named(r: &FlowRecord) -> (Option<&str>, Option<NameSource>) {
    (r.attr.domain.as_deref(), r.attr.domain_source)
}

/// A stop and a start: a flow that went on keeps its first record's attribution (the TLS
/// name, and the user of a subscribers file the new agent no longer has), a new flow on the
/// same key is joined afresh, and the DNS answers and DHCP bindings the last agent learned
/// name and attribute the new agent's flows.
#[test]
fn what_the_stage_learned_goes_on_after_a_stop_and_a_start() {
    let dir = TempDir::new("carry");
    let t0 = a_minute_ago();
    let subs = subscribers("match,account\n02:00:00:00:00:01,laptop-owner\n");
    let (mut st, _) = carrying(&dir, subs);
    // A DNS answer for the client (TTL 300 s: valid after the restart).
    let resolver = ip("10.0.0.1");
    let dns_flow = flow_key(&record("10.0.0.5", 5353, resolver, 53, proto::UDP, t0));
    feed(
        &mut st,
        &dns_flow,
        true,
        t0,
        0,
        &dns_message("plain.example", [198, 51, 100, 7], 300, false),
    );
    feed(
        &mut st,
        &dns_flow,
        false,
        t0 + 1000,
        0,
        &dns_message("plain.example", [198, 51, 100, 7], 300, true),
    );
    // Two TLS flows named by their hellos, each with an interim record, then the stop's
    // shutdown records.
    let hello = records(
        &Hello::chrome_like("www.example.org", &mut Rng::new(7)).encode(),
        16384,
    );
    let mut slices = Vec::new();
    for sport in [40000, 40001] {
        let mut r = record("10.0.0.5", sport, SERVER, 443, proto::TCP, t0 + S);
        feed(&mut st, &flow_key(&r), true, t0 + S, 1000, &hello);
        r.end_reason = EndReason::Active;
        st.write(&r).expect("write");
        r.time_start_ns = r.time_end_ns;
        r.time_end_ns += S;
        r.end_reason = EndReason::Shutdown;
        st.write(&r).expect("write");
        slices.push(r);
    }
    // A DHCP binding seen on the link.
    st.bindings_mut()
        .observe(lease("10.0.0.9", PHONE, "phone", t0, t0 + 3600 * S), t0);
    st.close().expect("close");
    assert!(dir.0.join(FILE).exists(), "the stop saved the state");
    assert_eq!(st.status().carry.saves, 1);

    // The next agent, without the subscribers file.
    let (mut next, out) = carrying(&dir, Arc::default());
    let carry = next.status().carry;
    // The flows: the two TLS flows and the DNS flow, whose question came with no record yet.
    assert_eq!(
        (
            carry.restored_names,
            carry.restored_bindings,
            carry.restored_flows
        ),
        (1, 1, 3),
        "{carry:?}"
    );
    // The first flow goes on: its next slice starts where the last one ended.
    let mut went_on = slices[0].clone();
    went_on.time_start_ns = slices[0].time_end_ns;
    went_on.time_end_ns = now();
    went_on.end_reason = EndReason::Fin;
    // The second flow's key, reused by a new flow after the restart.
    let mut reused = slices[1].clone();
    reused.time_start_ns = now() + S;
    reused.time_end_ns = reused.time_start_ns + S;
    reused.end_reason = EndReason::Fin;
    // A new flow to the answered address, and one from the leased address.
    let bare = record("10.0.0.5", 40002, SERVER, 443, proto::TCP, now());
    let mut phone = record("10.0.0.9", 40003, SERVER, 443, proto::TCP, now());
    phone.src_mac = PHONE;
    // A snippet of the flow that went on, before its next record (a retransmission).
    feed(
        &mut next,
        &flow_key(&went_on),
        true,
        now(),
        5000,
        b"more of it",
    );
    for r in [&went_on, &reused, &bare, &phone] {
        next.write(r).expect("write");
    }
    let got = out.take();
    assert_eq!(
        named(&got[0]),
        (Some("www.example.org"), Some(NameSource::Sni))
    );
    assert_eq!(got[0].attr.user.as_deref(), Some("laptop-owner"));
    assert_eq!(
        named(&got[1]),
        (Some("plain.example"), Some(NameSource::Dns)),
        "a new flow on a carried key is joined afresh"
    );
    assert_eq!(got[1].attr.user, None);
    assert_eq!(
        named(&got[2]),
        (Some("plain.example"), Some(NameSource::Dns))
    );
    assert_eq!(got[3].attr.hostname.as_deref(), Some("phone"));
    let carry = next.status().carry;
    assert_eq!(carry.continued_flows, 1, "{carry:?}");
    assert_eq!(
        next.status().flow_states,
        0,
        "every flow ended, its state must go"
    );
}

/// A file that does not read (damaged, cut short, of another format, a letter changed that
/// leaves the JSON valid) is set aside and the agent starts without it; the next stop saves a
/// good one again.
#[test]
fn a_saved_state_that_does_not_read_is_set_aside_and_the_start_goes_on() {
    let dir = TempDir::new("carry-bad");
    let (mut st, _) = carrying(&dir, Arc::default());
    st.bindings_mut().observe(
        lease("10.0.0.9", PHONE, "phone", a_minute_ago(), now() + 3600 * S),
        now(),
    );
    st.close().expect("close");
    let good = std::fs::read(dir.0.join(FILE)).expect("the saved state");
    let cut = good[..good.len() / 2].to_vec();
    let other = String::from_utf8(good.clone())
        .expect("JSON")
        .replacen("\"format\":1", "\"format\":99", 1)
        .into_bytes();
    // One letter of the host name: the JSON still reads, its SHA-256 does not match.
    let flipped = String::from_utf8(good.clone())
        .expect("JSON")
        .replacen("\"phone\"", "\"phonf\"", 1)
        .into_bytes();
    assert_ne!(flipped, good, "the host name is in the file");
    for bad in [b"\x00garbage".to_vec(), cut, other, flipped] {
        std::fs::write(dir.0.join(FILE), &bad).expect("write a bad state");
        let (mut next, out) = carrying(&dir, Arc::default());
        assert_eq!(
            std::fs::read(dir.0.join(format!("{FILE}.bad"))).expect("set aside"),
            bad
        );
        assert!(
            !dir.0.join(FILE).exists(),
            "the bad file is no longer in the way"
        );
        assert_eq!(next.status().carry, carry::CarryStatus::default());
        let mut r = record("10.0.0.9", 40003, SERVER, 443, proto::TCP, now());
        r.src_mac = PHONE;
        next.write(&r).expect("write");
        assert_eq!(out.take()[0].attr.hostname, None);
        next.close().expect("close");
        assert!(dir.0.join(FILE).exists(), "the stop saves again");
    }
}

/// Between stops, a changed state is saved on a tick once the interval has passed, by the
/// saving thread: a crash then loses only what came after.
#[test]
fn a_changed_state_is_saved_on_a_tick_for_a_crash_to_leave_behind() {
    let dir = TempDir::new("carry-tick");
    let (mut st, _) = stage(Inputs::fixed(Arc::default(), None, None));
    st.carry_over(&dir.0, Duration::from_nanos(1), true);
    st.tick().expect("tick");
    st.bindings_mut().observe(
        lease("10.0.0.9", PHONE, "phone", a_minute_ago(), now() + 3600 * S),
        now(),
    );
    st.tick().expect("tick");
    let saved = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        st.status().carry.saves == 1
    });
    assert!(saved, "one save: {:?}", st.status().carry);
    // A crash: no close. What the thread wrote is what the next agent finds.
    drop(st);
    let (mut next, out) = carrying(&dir, Arc::default());
    assert_eq!(next.status().carry.restored_bindings, 1);
    let mut r = record("10.0.0.9", 40003, SERVER, 443, proto::TCP, now());
    r.src_mac = PHONE;
    next.write(&r).expect("write");
    assert_eq!(out.take()[0].attr.hostname.as_deref(), Some("phone"));
}

/// An agent whose program dies with it (`--no-pin`): its flows end at the stop, so none is
/// carried; what it learned of names and bindings is.
#[test]
fn an_unpinned_agent_carries_no_flow() {
    let dir = TempDir::new("carry-nopin");
    let (mut st, _) = stage(Inputs::fixed(Arc::default(), None, None));
    st.carry_over(&dir.0, Duration::from_secs(3600), false);
    let mut r = record("10.0.0.9", 40003, SERVER, 443, proto::TCP, a_minute_ago());
    r.end_reason = EndReason::Active;
    st.write(&r).expect("write");
    r.end_reason = EndReason::Shutdown;
    st.write(&r).expect("write");
    assert_eq!(st.status().flow_states, 0, "the shutdown ended the flow");
    st.bindings_mut().observe(
        lease("10.0.0.9", PHONE, "phone", a_minute_ago(), now() + 3600 * S),
        now(),
    );
    st.close().expect("close");
    let (next, _) = carrying(&dir, Arc::default());
    let carry = next.status().carry;
    assert_eq!(
        (carry.restored_flows, carry.restored_bindings),
        (0, 1),
        "{carry:?}"
    );
}

/// A next agent with a smaller DNS cache and bindings table than the last says what they
/// hold, not what was offered.
#[test]
fn a_smaller_next_agent_counts_what_it_kept() {
    let dir = TempDir::new("carry-small");
    let (mut st, _) = carrying(&dir, Arc::default());
    let t0 = a_minute_ago();
    let name = crate::enrich::names::DomainName::from_wire(b"plain.example").expect("name");
    for i in 1..=3u8 {
        st.dns_mut().insert(
            ip("10.0.0.5"),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)),
            &name,
            t0,
            3600,
        );
        observe_phone(&mut st, &format!("10.0.0.{}", 10 + i), t0);
    }
    st.close().expect("close");
    let mut config = StageConfig::default();
    config.dns_cache.capacity = 1;
    config.bindings.max_addresses = 1;
    let mut next = EnrichStage::new(
        Box::new(Captured::default()),
        Inputs::fixed(Arc::default(), None, None),
        config,
    );
    next.carry_over(&dir.0, Duration::from_secs(3600), true);
    let carry = next.status().carry;
    assert_eq!(
        (carry.restored_names, carry.restored_bindings),
        (1, 1),
        "{carry:?}"
    );
}

/// A binding learned from a lease file is saved with the file's path: a next agent given
/// the files in another order maps it to the same file (by position it was another's, whose
/// reads would end it), and one no longer given takes its bindings with it.
#[test]
fn a_binding_follows_its_lease_file_by_path_not_position() {
    let dir = TempDir::new("carry-lease-files");
    let t0 = a_minute_ago();
    let from_file = |name: &str, files: &[&str]| {
        let (mut st, _) = carrying(&dir, Arc::default());
        st.name_lease_files(files.iter().map(|f| f.to_string()).collect());
        let mut obs = lease("10.0.0.20", PHONE, name, t0, t0 + 3600 * S);
        obs.source = Source::LeaseFile(1);
        st.bindings_mut().observe(obs, t0);
        st.close().expect("close");
    };
    let next = |files: &[&str]| {
        let (mut next, _) = carrying(&TempDir::new("carry-lease-files-unused"), Arc::default());
        next.name_lease_files(files.iter().map(|f| f.to_string()).collect());
        next.carry_over(&dir.0, Duration::from_secs(3600), true);
        let sources: Vec<Source> = next.bindings_mut().spans().map(|(_, s)| s.source).collect();
        sources
    };
    from_file(
        "phone",
        &[
            "/var/lib/misc/dnsmasq.leases",
            "/var/lib/kea/kea-leases4.csv",
        ],
    );
    assert_eq!(
        next(&[
            "/var/lib/kea/kea-leases4.csv",
            "/var/lib/misc/dnsmasq.leases"
        ]),
        [Source::LeaseFile(0)],
        "the Kea file is the first now"
    );
    from_file(
        "phone",
        &[
            "/var/lib/misc/dnsmasq.leases",
            "/var/lib/kea/kea-leases4.csv",
        ],
    );
    assert_eq!(
        next(&["/var/lib/misc/dnsmasq.leases"]),
        [],
        "the Kea file is no longer given"
    );
}

/// A damaged saved state (the agent's own file, but on a disk that can be written to or
/// corrupted) restored what a first read refuses: an answer that holds for ever, host names a
/// spreadsheet would run or with an escape sequence, a client id longer than DHCP carries,
/// accounts and names with control characters. It is limited and checked as a first read is.
#[test]
fn a_damaged_saved_state_is_limited_and_checked_as_a_first_read_is() {
    let dir = TempDir::new("carry-damaged");
    let (mut st, _) = carrying(&dir, Arc::default());
    let t0 = a_minute_ago();
    let name = crate::enrich::names::DomainName::from_wire(b"plain.example").expect("name");
    st.dns_mut().insert(ip("10.0.0.5"), SERVER, &name, t0, 300);
    for i in 1..=4 {
        observe_phone(&mut st, &format!("10.0.0.1{i}"), t0);
    }
    st.close().expect("close");
    let path = dir.0.join(FILE);
    let bytes = std::fs::read(&path).expect("the saved state");
    let mut saved: serde_json::Value =
        serde_json::from_slice(carry::checked(&bytes).expect("its SHA-256")).expect("JSON");
    saved["names"][0][4] = serde_json::json!(i64::MAX);
    for span in saved["bindings"].as_array_mut().expect("bindings") {
        match span["ip"].as_str().expect("ip") {
            "10.0.0.11" => span["host"] = serde_json::json!("=HYPERLINK(\"http://x\")"),
            "10.0.0.12" => span["host"] = serde_json::json!("a\u{1b}[2J"),
            "10.0.0.13" => span["id"] = serde_json::json!(vec![7u8; 300]),
            _ => {}
        }
    }
    let flow = |port: u16, attr: serde_json::Value| {
        let mut a = serde_json::json!({
            "user": null, "hostname": null, "nat_ip": null, "nat_port": null,
            "domain": null, "domain_source": null, "dns_qname": null, "dns_qtype": null
        });
        for (k, v) in attr.as_object().expect("fields") {
            a[k] = v.clone();
        }
        serde_json::json!({
            "key": [1, 0, 0, 6, 2, port, 443, [0x0a00_0005u32, 0, 0, 0], [0xc633_6407u32, 0, 0, 0]],
            "last": t0,
            "attr": a,
        })
    };
    saved["flows"] = serde_json::json!([
        flow(40000, serde_json::json!({"user": "owner\u{1b}[2J"})),
        flow(40001, serde_json::json!({"user": "x".repeat(129)})),
        flow(40002, serde_json::json!({"hostname": "+cmd"})),
        flow(
            40003,
            serde_json::json!({"domain": "bad\nname", "domain_source": "sni"})
        ),
        flow(
            40004,
            serde_json::json!({"dns_qname": "a\u{0}b", "dns_qtype": 1})
        ),
        flow(
            40005,
            serde_json::json!({
                "user": "owner", "hostname": "phone",
                "domain": "plain.example", "domain_source": "sni"
            })
        ),
    ]);
    std::fs::write(&path, serde_json::to_vec(&saved).expect("encode")).expect("write");

    let (mut next, _) = carrying(&dir, Arc::default());
    let carry = next.status().carry;
    assert_eq!(
        (
            carry.restored_names,
            carry.restored_bindings,
            carry.restored_flows
        ),
        (1, 1, 1),
        "{carry:?}"
    );
    let day = i64::from(crate::enrich::names::cache::DnsCacheConfig::default().max_ttl_s) * S;
    let to: Vec<i64> = next.dns_mut().bindings().map(|b| b.4).collect();
    assert!(
        to.len() == 1 && to[0] <= now() + day,
        "an answer holds a day at most from the start: {to:?}"
    );
    let kept: Vec<String> = next
        .bindings_mut()
        .spans()
        .map(|(ip, _)| ip.to_string())
        .collect();
    assert_eq!(kept, ["10.0.0.14"]);
}

/// The phone's lease of `addr` from `t0` for an hour from now, seen at `t0`.
fn observe_phone(st: &mut EnrichStage, addr: &str, t0: i64) {
    st.bindings_mut()
        .observe(lease(addr, PHONE, "phone", t0, now() + 3600 * S), t0);
}

/// A restart while a NAT session a flow record joined is still in conntrack (TIME_WAIT): the
/// next agent learns it from its start dump and sees it close, and writes no `nat` record
/// for it, since the last agent's flow record carries its outside tuple; a session no flow
/// joined still gets one.
#[test]
fn a_session_the_last_agent_joined_gets_no_nat_record_after_a_restart() {
    use crate::enrich::nat::{DumpReason, NatTable};
    let dir = TempDir::new("carry-nat");
    let t0 = now() - 3600 * S;
    let subs = subscribers("match,account\n10.0.0.0/24,alice\n");
    let nat_table = || -> SharedNat { Arc::new(Mutex::new(NatTable::new(TableConfig::default()))) };
    // The first agent: session 7's flow ends and is written; session 8 sees no flow.
    let nat1 = nat_table();
    let (mut a1, out1) = stage(Inputs::fixed(subs.clone(), Some(nat1.clone()), None));
    a1.carry_over(&dir.0, Duration::from_secs(3600), true);
    ct(
        &nat1,
        CtKind::New,
        ct_entry(7, "10.0.0.5", 40000, 61000),
        t0,
    );
    ct(
        &nat1,
        CtKind::New,
        ct_entry(8, "10.0.0.6", 40001, 61001),
        t0,
    );
    let mut r = record("10.0.0.5", 40000, SERVER, 443, proto::TCP, t0);
    r.end_reason = EndReason::Fin;
    a1.write(&r).expect("write");
    a1.close().expect("close");
    let first = out1.take();
    assert_eq!(first.len(), 1, "the flow record, no NAT record: {first:?}");
    assert_eq!(first[0].attr.nat_port, Some(61000));
    // The next agent: both sessions are still in conntrack, listed by its start dump.
    let nat2 = nat_table();
    let (mut a2, out2) = stage(Inputs::fixed(subs, Some(nat2.clone()), None));
    a2.carry_over(&dir.0, Duration::from_secs(3600), true);
    let dumped = t0 + 5 * S;
    nat2.lock().expect("nat lock").apply(NatUpdate::DumpBegin {
        at_ns: dumped,
        reason: DumpReason::Start,
    });
    for (id, src, sport, oport) in [(7, "10.0.0.5", 40000, 61000), (8, "10.0.0.6", 40001, 61001)] {
        let mut e = ct_entry(id, src, sport, oport);
        e.start_ns = Some(t0);
        ct(&nat2, CtKind::Dumped, e, dumped);
    }
    nat2.lock()
        .expect("nat lock")
        .apply(NatUpdate::DumpEnd { at_ns: dumped });
    for (id, src, sport, oport) in [(7, "10.0.0.5", 40000, 61000), (8, "10.0.0.6", 40001, 61001)] {
        let mut e = ct_entry(id, src, sport, oport);
        (e.start_ns, e.stop_ns) = (Some(t0), Some(t0 + 122 * S));
        ct(&nat2, CtKind::Destroy, e, t0 + 122 * S);
    }
    a2.tick().expect("tick");
    let ports: Vec<_> = out2.take().iter().map(|r| r.attr.nat_port).collect();
    assert_eq!(
        ports,
        [Some(61001)],
        "one NAT record, for the session no flow joined"
    );
}
