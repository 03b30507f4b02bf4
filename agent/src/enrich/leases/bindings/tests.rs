use super::*;
use crate::store::testgen::Rng;

const S: i64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn holder(n: u8) -> Holder {
    Holder {
        mac: Some(Mac([2, 0, 0, 0, 0, n])),
        client_id: None,
    }
}

fn obs(addr: &str, who: u8, from: Option<i64>, to: Option<i64>) -> Observation {
    Observation {
        ip: ip(addr),
        holder: holder(who),
        hostname: Some(format!("host{who}").into()),
        valid: Validity { from, to },
        source: Source::Packet,
    }
}

fn who(b: &Bindings, addr: &str, t: i64) -> Option<u8> {
    b.at(ip(addr), t).and_then(|s| s.holder.mac).map(|m| m.0[5])
}

#[test]
fn renewals_extend_and_a_new_holder_cuts_the_old_one() {
    let mut b = Bindings::default();
    b.observe(obs("10.0.0.5", 1, Some(100 * S), Some(200 * S)), 100 * S);
    b.observe(obs("10.0.0.5", 1, Some(150 * S), Some(250 * S)), 150 * S);
    assert_eq!(who(&b, "10.0.0.5", 99 * S), None, "not before the ACK");
    assert_eq!(who(&b, "10.0.0.5", 240 * S), Some(1), "renewed");
    b.observe(obs("10.0.0.5", 2, Some(230 * S), Some(400 * S)), 230 * S);
    assert_eq!(who(&b, "10.0.0.5", 229 * S), Some(1));
    assert_eq!(who(&b, "10.0.0.5", 230 * S), Some(2));
    // An old observation of holder 1 arriving late does not take the address back.
    b.observe(obs("10.0.0.5", 1, Some(100 * S), Some(250 * S)), 300 * S);
    assert_eq!(who(&b, "10.0.0.5", 240 * S), Some(2));
    assert_eq!(who(&b, "10.0.0.5", 120 * S), Some(1));
    b.end(ip("10.0.0.5"), &holder(2), 300 * S);
    assert_eq!(who(&b, "10.0.0.5", 299 * S), Some(2));
    assert_eq!(who(&b, "10.0.0.5", 300 * S), None, "released");
    assert_eq!(b.counters().ended, 1);
}

#[test]
fn unknown_starts_begin_when_first_seen_and_expired_leases_are_ignored() {
    let mut b = Bindings::default();
    b.observe(obs("10.0.0.6", 3, None, Some(500 * S)), 200 * S);
    assert_eq!(who(&b, "10.0.0.6", 199 * S), None);
    assert_eq!(who(&b, "10.0.0.6", 200 * S), Some(3));
    b.observe(obs("10.0.0.6", 3, None, Some(900 * S)), 400 * S);
    assert_eq!(who(&b, "10.0.0.6", 800 * S), Some(3));
    assert_eq!(
        b.at(ip("10.0.0.6"), 201 * S).map(|s| s.valid.from),
        Some(Some(200 * S))
    );
    b.observe(obs("10.0.0.7", 3, None, Some(100 * S)), 200 * S);
    assert_eq!(b.addresses(), 1, "expired before first seen");
    b.observe(obs("10.0.0.8", 4, None, None), 200 * S);
    assert_eq!(who(&b, "10.0.0.8", i64::MAX - 1), Some(4), "infinite lease");
}

#[test]
fn v4_lease_of_a_mac_and_pruning() {
    let mut b = Bindings::new(Limits {
        max_age_ns: 100 * S,
        ..Limits::default()
    });
    b.observe(obs("10.0.0.9", 5, Some(0), Some(50 * S)), 0);
    b.observe(obs("fd00::9", 5, Some(0), Some(50 * S)), 0);
    b.observe(obs("10.0.0.10", 5, Some(60 * S), Some(90 * S)), 60 * S);
    let mac = Mac([2, 0, 0, 0, 0, 5]);
    assert_eq!(
        b.v4_of_mac(mac, 10 * S)
            .map(|(a, _)| a.to_string())
            .as_deref(),
        Some("10.0.0.9")
    );
    assert_eq!(
        b.v4_of_mac(mac, 70 * S)
            .map(|(a, _)| a.to_string())
            .as_deref(),
        Some("10.0.0.10")
    );
    assert_eq!(b.v4_of_mac(mac, 55 * S), None);
    b.prune(160 * S);
    assert_eq!(
        b.addresses(),
        1,
        "the spans that ended at 50 s are older than 100 s"
    );
    assert_eq!(b.counters().pruned, 2);
    b.prune(200 * S);
    assert_eq!(
        b.addresses(),
        1,
        "a minute has not passed since the last walk"
    );
    b.prune(230 * S);
    assert_eq!(b.addresses(), 0);
    assert_eq!(b.v4_of_mac(mac, 70 * S), None);
}

#[test]
fn limits_bound_memory() {
    let mut b = Bindings::new(Limits {
        max_spans: 3,
        max_addresses: 2,
        ..Limits::default()
    });
    for i in 0..10 {
        b.observe(
            obs("10.0.0.1", i as u8, Some(i * 10), Some(i * 10 + 5)),
            i * 10,
        );
    }
    assert_eq!(b.by_ip[&ip("10.0.0.1")].len(), 3);
    assert_eq!(who(&b, "10.0.0.1", 92), Some(9));
    assert_eq!(who(&b, "10.0.0.1", 2), None, "oldest dropped");
    b.observe(obs("10.0.0.2", 1, Some(0), None), 0);
    b.observe(obs("10.0.0.3", 1, Some(0), None), 0);
    assert_eq!(b.addresses(), 2);
    assert_eq!(b.counters().dropped_full, 1);
}

fn lease(addr: &str, who: u8, to_s: i64, state: LeaseState, line: u32) -> Lease {
    Lease {
        ip: ip(addr),
        mac: Some(Mac([2, 0, 0, 0, 0, who])),
        client_id: None,
        hostname: None,
        valid: Validity {
            from: None,
            to: Some(to_s * S),
        },
        state,
        line,
    }
}

#[test]
fn lease_files_snapshot_and_append() {
    let mut b = Bindings::default();
    // A dnsmasq-like snapshot, then one where the lease is gone: ended when noticed.
    b.apply_file(
        0,
        &[lease("10.0.1.1", 1, 1000, LeaseState::Bound, 1)],
        100 * S,
        |_, _| None,
    );
    b.apply_file(0, &[], 300 * S, |_, _| None);
    assert_eq!(who(&b, "10.0.1.1", 299 * S), Some(1));
    assert_eq!(who(&b, "10.0.1.1", 300 * S), None);
    // Re-reading an unchanged file changes nothing.
    let rows = [lease("10.0.1.2", 2, 1000, LeaseState::Bound, 1)];
    b.apply_file(1, &rows, 100 * S, |_, _| None);
    b.apply_file(1, &rows, 200 * S, |_, _| None);
    assert_eq!(
        b.at(ip("10.0.1.2"), 150 * S).map(|s| s.valid.from),
        Some(Some(100 * S))
    );
    // Appended: a release row; then a new holder.
    let mut rows = rows.to_vec();
    rows.push(lease("10.0.1.2", 2, 1000, LeaseState::Gone, 2));
    b.apply_file(1, &rows, 400 * S, |_, _| None);
    assert_eq!(who(&b, "10.0.1.2", 399 * S), Some(2));
    assert_eq!(who(&b, "10.0.1.2", 400 * S), None);
    rows.push(lease("10.0.1.2", 3, 2000, LeaseState::Bound, 3));
    b.apply_file(1, &rows, 500 * S, |_, _| None);
    b.apply_file(1, &rows, 600 * S, |_, _| None);
    assert_eq!(who(&b, "10.0.1.2", 450 * S), None);
    assert_eq!(who(&b, "10.0.1.2", 550 * S), Some(3));
    assert_eq!(who(&b, "10.0.1.2", 350 * S), Some(2), "history kept");
}

/// Kea's release row states no release time (lifetime 0, `expire` the client's last
/// request): it ends the binding at the read. A decline row (Kea clears its MAC and client
/// id; its start is the decline) ends the binding of whoever held the address, a holder
/// that sent a client id too, at its own time.
#[test]
fn kea_releases_end_at_the_read_and_declines_at_their_own_time() {
    let kea = |who: u8, id: bool, from_s: i64, to_s: i64, state, line| Lease {
        ip: ip("10.0.2.9"),
        mac: (who != 0).then_some(Mac([2, 0, 0, 0, 0, who])),
        client_id: (id && who != 0).then(|| Arc::from(&[1, 2, 0, 0, 0, 0, who][..])),
        hostname: None,
        valid: Validity {
            from: Some(from_s * S),
            to: Some(to_s * S),
        },
        state,
        line,
    };
    // Bound at 100 s for 4000 s, released and read at 900 s: Kea's row has lifetime 0 and
    // expire 100 s (the client's last request), as in the lab's kea-leases4.csv.
    let rows = [
        kea(1, true, 100, 4100, LeaseState::Bound, 1),
        kea(1, true, 100, 100, LeaseState::Gone, 2),
    ];
    let mut b = Bindings::default();
    b.apply_read(0, &rows, None, 900 * S, |_, _| None);
    assert_eq!(
        who(&b, "10.0.2.9", 899 * S),
        Some(1),
        "held until the release was read"
    );
    assert_eq!(who(&b, "10.0.2.9", 900 * S), None, "ended at the read");
    // Holder 2 (with a client id) bound at 1000 s; Kea declines the address at 1002 s and
    // writes the row with no MAC and no client id, for the probation period.
    let rows = [
        kea(2, true, 1000, 5000, LeaseState::Bound, 1),
        kea(0, false, 1002, 1002 + 86_400, LeaseState::Gone, 2),
    ];
    let mut b = Bindings::default();
    b.apply_read(0, &rows, None, 1010 * S, |_, _| None);
    assert_eq!(who(&b, "10.0.2.9", 1001 * S), Some(2));
    assert_eq!(who(&b, "10.0.2.9", 1002 * S), None, "declined: nobody's");
}

/// What an earlier agent held (its spans, taken back at a restart) keeps its start; a lease
/// file's span is checked against the file's next read (or the read already applied): a
/// lease gone from it while no agent ran ends, one still there goes on.
#[test]
fn spans_taken_back_keep_their_start_and_leases_gone_from_their_file_end() {
    let mut old = Bindings::default();
    old.apply_file(
        0,
        &[
            lease("10.0.2.1", 1, 1000, LeaseState::Bound, 1),
            lease("10.0.2.2", 2, 1000, LeaseState::Bound, 2),
        ],
        100 * S,
        |_, _| Some(90 * S),
    );
    old.observe(obs("10.0.2.3", 3, Some(95 * S), Some(1000 * S)), 95 * S);
    let spans: Vec<(IpAddr, Span)> = old.spans().map(|(ip, s)| (ip, s.clone())).collect();
    // The file read after the restore: 10.0.2.2 left it while no agent ran.
    let now_file = [lease("10.0.2.1", 1, 1000, LeaseState::Bound, 1)];
    let mut b = Bindings::default();
    restore_all(&spans, &mut b, 200 * S);
    b.apply_file(0, &now_file, 210 * S, |_, _| None);
    // The same with the file read first.
    let mut first_read = Bindings::default();
    first_read.apply_file(0, &now_file, 200 * S, |_, _| None);
    restore_all(&spans, &mut first_read, 210 * S);
    for b in [&b, &first_read] {
        assert_eq!(
            who(b, "10.0.2.1", 95 * S),
            Some(1),
            "the REQUEST's start stays"
        );
        assert_eq!(who(b, "10.0.2.1", 500 * S), Some(1));
        assert_eq!(who(b, "10.0.2.2", 150 * S), Some(2));
        assert_eq!(
            who(b, "10.0.2.2", 500 * S),
            None,
            "gone from the file: ended"
        );
        assert_eq!(
            who(b, "10.0.2.3", 500 * S),
            Some(3),
            "a packet's binding holds"
        );
    }
}

/// Kea's lease file cleanup (LFC, hourly by default) starts a new file holding the header and
/// only the leases changed since: read by absence, as a dnsmasq file is, it ended every
/// binding not renewed since. A Kea lease ends by a row of its own or at its expiry.
#[test]
fn a_kea_file_cleaned_up_to_its_header_ends_no_binding() {
    let addr = |i: u8| format!("10.0.3.{i}");
    let rows: Vec<Lease> = (1..=10)
        .map(|i| lease(&addr(i), i, 1000, LeaseState::Bound, u32::from(i)))
        .collect();
    let mut b = Bindings::default();
    b.apply_read(0, &rows, Some(Ending::ByRow), 100 * S, |_, _| None);
    b.apply_read(0, &[], Some(Ending::ByRow), 200 * S, |_, _| None);
    for i in 1..=10 {
        assert_eq!(who(&b, &addr(i), 500 * S), Some(i), "after the cleanup");
    }
    // A later row with lifetime 0 (a release) ends its lease, and only that one.
    let released = [lease(&addr(4), 4, 1000, LeaseState::Gone, 2)];
    b.apply_read(0, &released, Some(Ending::ByRow), 600 * S, |_, _| None);
    assert_eq!(who(&b, &addr(4), 599 * S), Some(4));
    assert_eq!(who(&b, &addr(4), 600 * S), None, "released");
    assert_eq!(who(&b, &addr(5), 700 * S), Some(5));
    assert_eq!(who(&b, &addr(5), 1000 * S), None, "expired");
    assert_eq!(b.counters().ended, 1);

    // Taken back at a restart, before or after the first read of the cleaned-up file.
    let spans: Vec<(IpAddr, Span)> = b.spans().map(|(ip, s)| (ip, s.clone())).collect();
    let mut restored = Bindings::default();
    restore_all(&spans, &mut restored, 700 * S);
    restored.apply_read(0, &[], Some(Ending::ByRow), 710 * S, |_, _| None);
    let mut read_first = Bindings::default();
    read_first.apply_read(0, &[], Some(Ending::ByRow), 700 * S, |_, _| None);
    restore_all(&spans, &mut read_first, 700 * S);
    for b in [&restored, &read_first] {
        for i in (1..=10).filter(|&i| i != 4) {
            assert_eq!(who(b, &addr(i), 800 * S), Some(i), "taken back");
        }
    }

    // A dnsmasq file is rewritten whole: a lease missing from it has ended.
    let mut d = Bindings::default();
    d.apply_read(0, &rows, Some(Ending::ByAbsence), 100 * S, |_, _| None);
    d.apply_read(0, &[], Some(Ending::ByAbsence), 200 * S, |_, _| None);
    assert_eq!(who(&d, &addr(1), 200 * S), None);
    // A read that does not tell (an empty file, its format not named) keeps the last rule.
    b.apply_read(0, &[], None, 800 * S, |_, _| None);
    assert_eq!(who(&b, &addr(5), 900 * S), Some(5));
}

/// A read of a dnsmasq file that skipped lines ends nothing by absence (the missing lease may
/// be on a line that could not be read); the next read without gaps does, and so does a read
/// past a few with gaps in a row (a line bad for good).
#[test]
fn a_read_with_skipped_lines_ends_nothing_by_absence_for_a_few_reads() {
    let addr = |i: u8| format!("10.0.5.{i}");
    let rows: Vec<Lease> = (1..=3)
        .map(|i| lease(&addr(i), i, 10_000, LeaseState::Bound, u32::from(i)))
        .collect();
    let by_absence = Some(Ending::ByAbsence);
    let mut g = Bindings::default();
    g.apply_read(0, &rows, by_absence, 100 * S, |_, _| None);
    g.apply_read_with_gaps(0, &rows[1..], by_absence, true, 200 * S, |_, _| None);
    assert_eq!(
        who(&g, &addr(1), 300 * S),
        Some(1),
        "kept through a read with gaps"
    );
    g.apply_read(0, &rows[1..], by_absence, 400 * S, |_, _| None);
    assert_eq!(
        who(&g, &addr(1), 500 * S),
        None,
        "ended by the next whole read"
    );

    let mut h = Bindings::default();
    h.apply_read(0, &rows, by_absence, 100 * S, |_, _| None);
    for (i, t) in (1..=GAP_READS + 1).zip(2i64..) {
        h.apply_read_with_gaps(0, &rows[1..], by_absence, true, t * 100 * S, |_, _| None);
        let held = who(&h, &addr(1), t * 100 * S + 1);
        assert_eq!(
            held.is_some(),
            i <= GAP_READS,
            "read {i} with gaps: {held:?}"
        );
    }
    assert_eq!(who(&h, &addr(2), 900 * S), Some(2), "the others stay");
}

/// Every span of a file taken back before the file's first read waits for that read: only the
/// first one did, the others ended at once (the first read started them again, leaving a gap).
#[test]
fn spans_of_one_file_taken_back_before_its_read_all_stay_open() {
    let mut b = Bindings::default();
    for i in 1..=3u8 {
        let mut o = obs(&format!("10.0.4.{i}"), i, Some(90 * S), Some(1000 * S));
        o.source = Source::LeaseFile(0);
        b.restore(o, 100 * S);
    }
    for i in 1..=3u8 {
        assert_eq!(who(&b, &format!("10.0.4.{i}"), 150 * S), Some(i));
    }
    assert_eq!(b.counters().ended, 0);
}

#[test]
fn a_lease_file_without_start_times_starts_a_binding_at_its_request() {
    let mut b = Bindings::default();
    let asked = |mac: Mac, at: i64| {
        move |m: Mac, a: IpAddr| (m == mac).then_some(at).filter(|_| a == ip("10.0.2.1"))
    };
    // Client 1 holds the address; the file read every 2 s says so.
    let first = [lease("10.0.2.1", 1, 1000, LeaseState::Bound, 1)];
    b.apply_file(0, &first, 100 * S, |_, _| None);
    // Without the server's release crossing the link, the address goes to client 2: it
    // asked at 101 s, the file is read at 102 s.
    let second = [lease("10.0.2.1", 2, 1000, LeaseState::Bound, 1)];
    b.apply_file(0, &second, 102 * S, asked(Mac([2, 0, 0, 0, 0, 2]), 101 * S));
    assert_eq!(
        who(&b, "10.0.2.1", 101 * S + S / 2),
        Some(2),
        "flows after the REQUEST are the new holder's, not the last one's"
    );
    assert_eq!(who(&b, "10.0.2.1", 100 * S + S / 2), Some(1));
    // A REQUEST for another address, or by another client, changes nothing.
    let third = [lease("10.0.2.2", 3, 1000, LeaseState::Bound, 1)];
    b.apply_file(1, &third, 110 * S, asked(Mac([2, 0, 0, 0, 0, 3]), 105 * S));
    assert_eq!(who(&b, "10.0.2.2", 109 * S), None);
    assert_eq!(who(&b, "10.0.2.2", 110 * S), Some(3));
}

/// What the server did at an instant: an ACK, or a release by a holder.
type Event = (i64, Option<Observation>, Option<(u8, i64)>);

/// A random server history for a few addresses, fed in time order as a server's packets would
/// arrive, against the history itself.
#[test]
fn replayed_histories_match_the_truth() {
    let mut rng = Rng::new(77);
    for round in 0..300 {
        let mut truth: Vec<(u8, i64, i64)> = Vec::new(); // holder, start, end (one address)
        let mut events: Vec<Event> = Vec::new();
        let mut t = rng.below(100) as i64;
        for _ in 0..1 + rng.below(8) {
            let who = rng.below(4) as u8;
            let start = t;
            let lease = 10 + rng.below(100) as i64;
            let mut end = start + lease;
            events.push((
                start,
                Some(obs("10.9.0.1", who, Some(start), Some(end))),
                None,
            ));
            // Renewals before expiry.
            while rng.chance(0.5) {
                let at = end - 1 - rng.below(5) as i64;
                end = at + lease;
                events.push((at, Some(obs("10.9.0.1", who, Some(at), Some(end))), None));
            }
            if rng.chance(0.4) {
                let at = end - 1 - rng.below(5) as i64;
                events.push((at, None, Some((who, at))));
                end = at;
            }
            truth.push((who, start, end));
            t = end + rng.below(20) as i64;
        }
        let mut b = Bindings::default();
        for (at, o, release) in events {
            if let Some(o) = o {
                b.observe(o, at);
            }
            if let Some((who, at)) = release {
                b.end(ip("10.9.0.1"), &holder(who), at);
            }
        }
        for q in -5..t + 5 {
            let expected = truth
                .iter()
                .find(|(_, s, e)| *s <= q && q < *e)
                .map(|x| x.0);
            assert_eq!(
                who(&b, "10.9.0.1", q),
                expected,
                "round {round} at {q}: truth {truth:?}"
            );
        }
    }
}

/// Takes `spans` back into `b` at `now`, as a restart's carry-over does.
fn restore_all(spans: &[(IpAddr, Span)], b: &mut Bindings, now: i64) {
    for (ip, s) in spans {
        let obs = Observation {
            ip: *ip,
            holder: s.holder.clone(),
            hostname: s.hostname.clone(),
            valid: s.valid,
            source: s.source,
        };
        b.restore(obs, now);
    }
}

/// Forged ACKs handing addresses to new holders stop at the total bound (the per-address
/// one let a million addresses hold 16 spans each); a holder's renewal still gets in, and
/// spans pruned give their room back.
#[test]
fn the_spans_in_all_are_bounded_and_renewals_get_in() {
    let mut b = Bindings::new(Limits {
        max_spans_total: 4,
        max_age_ns: 10 * S,
        ..Limits::default()
    });
    for i in 1..=4u8 {
        b.observe(obs(&format!("10.0.0.{i}"), i, Some(0), Some(100 * S)), 0);
    }
    b.observe(obs("10.0.0.5", 5, Some(0), Some(100 * S)), 0);
    b.observe(obs("10.0.0.2", 9, Some(50 * S), Some(100 * S)), 50 * S);
    assert_eq!(b.counters().dropped_full, 2, "a new address, a new holder");
    assert_eq!(who(&b, "10.0.0.2", 60 * S), Some(2));
    b.observe(obs("10.0.0.1", 1, Some(90 * S), Some(200 * S)), 90 * S);
    assert_eq!(b.counters().dropped_full, 2, "a renewal is taken");
    assert_eq!(who(&b, "10.0.0.1", 150 * S), Some(1));
    b.observe(obs("10.0.0.3", 3, Some(120 * S), Some(130 * S)), 120 * S);
    assert_eq!(
        b.counters().dropped_full,
        3,
        "the same holder after a gap would add a span"
    );
    b.prune(150 * S);
    b.observe(obs("10.0.0.5", 5, Some(150 * S), Some(300 * S)), 150 * S);
    assert_eq!(who(&b, "10.0.0.5", 160 * S), Some(5), "room given back");
}
