//! NAT mappings from conntrack, against a real masquerading gateway: a client - gateway -
//! internet lab whose gateway masquerades its internet side with nftables, as a home or office
//! gateway does. The listener runs in the gateway namespace; every session's outside address
//! and port must equal what `conntrack -L` printed during the run and what the server saw as
//! its peer. A burst past the socket buffer, and the enrich stage on the same lab, are in
//! `nat_enrich.rs`. Needs root, `nft` and `conntrack` (Debian packages nftables, conntrack).

mod nat_common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nat_common::{
    connect_from, conntrack_list, dump_lab_state, in_ns_bg, listen, nat_lab, unix_now, v4, CtLine,
    Shared, CLIENT2_V4, ICMP, TCP, TCP_PORT, UDP, UDP_PORT,
};
use xdp_audit::enrich::nat::parse::{messages, CtKind, NlItem, L4};
use xdp_audit::enrich::nat::{Closed, InsideKey, Learned, ListenerConfig, OutsideKey};
use xdp_audit_lab::lab::{self, sh};
use xdp_audit_lab::netns::run_in;

#[test]
fn masquerade_sessions_match_conntrack_and_the_server() {
    let lab = nat_lab("nat");
    let shared = Shared::new(false);
    let t0 = unix_now();
    // The capture goes to a directory removed on drop (also when the test fails), unless
    // it is recorded as the fixture.
    let tmp = lab.temp_dir("nat-capture").expect("temp dir");
    let capture = std::env::var_os("XDP_AUDIT_RECORD_NAT_FIXTURES")
        .map(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nat/lab.bin"))
        .unwrap_or_else(|| tmp.path().join("capture.bin"));
    let _ = std::fs::remove_file(&capture);
    let listener = listen(
        &lab,
        &shared,
        ListenerConfig {
            capture: Some(capture.clone()),
            // Periodic dumps while sessions open and close: none of them may close a live
            // session, and one that runs ahead of an event is no loss. (Every 5 ms, a UDP
            // exchange of the test once timed out under a loaded CI run.)
            resync_interval: Duration::from_millis(300),
            ..Default::default()
        },
    );

    // Servers in the internet namespace record each peer as they see it: the outside tuple.
    const PAIRS: u16 = 50;
    let n_tcp = usize::from(PAIRS) * 2;
    let server = SocketAddr::new(v4(lab::SERVER_V4), TCP_PORT);
    // Each server says when it is bound: a datagram sent before is refused (`UdpNoPorts`).
    let (bound_tx, bound) = std::sync::mpsc::channel();
    let udp_bound_tx = bound_tx.clone();
    let tcp_server = in_ns_bg(&lab.internet, move || {
        let l = TcpListener::bind(server)?;
        bound_tx.send(())?;
        let ready = Instant::now();
        let mut peers = Vec::new();
        let mut conns = Vec::new();
        while peers.len() < n_tcp {
            anyhow::ensure!(
                ready.elapsed() < Duration::from_secs(30),
                "TCP server: too few clients"
            );
            let (mut c, peer) = l.accept()?;
            let mut b = [0u8; 1];
            c.read_exact(&mut b)?;
            c.write_all(&b)?;
            peers.push(peer);
            conns.push(c);
        }
        Ok(peers)
    });
    let udp_addr = SocketAddr::new(v4(lab::SERVER_V4), UDP_PORT);
    let n_udp = 20;
    let udp_server = in_ns_bg(&lab.internet, move || {
        let s = UdpSocket::bind(udp_addr)?;
        udp_bound_tx.send(())?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut peers = Vec::new();
        let mut b = [0u8; 16];
        while peers.len() < n_udp {
            let (_, peer) = s.recv_from(&mut b)?;
            s.send_to(b"pong", peer)?;
            peers.push(peer);
        }
        Ok(peers)
    });
    for _ in 0..2 {
        bound
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("a server in the internet namespace never bound: {e}"));
    }

    // 100 concurrent TCP connections: both client addresses use the same 50 source ports,
    // so masquerade must move one of each pair to another outside port.
    let clients = run_in(&lab.client, move || {
        let mut open = Vec::new();
        for i in 0..PAIRS {
            for src in [lab::CLIENT_V4, CLIENT2_V4] {
                let from = SocketAddr::new(src.parse()?, 41000 + i);
                let mut c = connect_from(from, server)?;
                c.write_all(b"x")?;
                open.push((from, c));
            }
        }
        for (_, c) in &mut open {
            let mut b = [0u8; 1];
            c.read_exact(&mut b)?;
        }
        let udp: Vec<SocketAddr> = (0..n_udp as u16)
            .map(|i| -> anyhow::Result<SocketAddr> {
                let src = if i % 2 == 0 {
                    lab::CLIENT_V4
                } else {
                    CLIENT2_V4
                };
                let s = UdpSocket::bind((src, 42000 + i / 2))?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                s.send_to(b"ping", udp_addr)?;
                let mut b = [0u8; 8];
                s.recv_from(&mut b).map_err(|e| {
                    anyhow::anyhow!("no pong for UDP ping {i} from {:?}: {e}", s.local_addr())
                })?;
                Ok(s.local_addr()?)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok((open, udp))
    })
    .unwrap_or_else(|e| {
        dump_lab_state(&lab);
        panic!("client traffic: {e:#}")
    });
    let (open, udp_clients) = clients;
    let tcp_peers = tcp_server
        .join()
        .expect("TCP server thread")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let udp_peers = udp_server
        .join()
        .expect("UDP server thread")
        .unwrap_or_else(|e| panic!("{e:#}"));
    for _ in 0..2 {
        sh(lab
            .cmd(&lab.client, "ping")
            .args(["-c", "1", "-W", "5", lab::SERVER_V4]))
        .unwrap_or_else(|e| panic!("ping from the client: {e:#}"));
    }

    // The oracle, taken while every session is alive.
    let ct_tcp = conntrack_list(&lab, "tcp");
    let ct_udp = conntrack_list(&lab, "udp");
    let ct_icmp = conntrack_list(&lab, "icmp");
    assert_eq!(
        ct_tcp.len(),
        n_tcp,
        "conntrack -L shows {} TCP entries",
        ct_tcp.len()
    );
    assert_eq!(
        ct_udp.len(),
        n_udp,
        "conntrack -L shows {} UDP entries",
        ct_udp.len()
    );
    assert_eq!(
        ct_icmp.len(),
        2,
        "conntrack -L shows {} ICMP entries",
        ct_icmp.len()
    );
    let all: Vec<CtLine> = ct_tcp
        .iter()
        .chain(&ct_udp)
        .chain(&ct_icmp)
        .cloned()
        .collect();
    let ids: HashSet<u32> = all.iter().map(|c| c.id).collect();
    // A periodic dump can list an entry before its new event is read: the session is then
    // `Recovered` until the event comes, and the TCP and UDP ones are checked below to be
    // learned from it.
    let by_event: HashSet<u32> = ct_tcp.iter().chain(&ct_udp).map(|c| c.id).collect();
    shared.wait_until(
        "every conntrack entry in the table, each TCP and UDP one learned from its new event",
        Duration::from_secs(10),
        |t| {
            let open: HashSet<u32> = t.open_sessions().map(|s| s.entry.id).collect();
            let from_event: HashSet<u32> = t
                .open_sessions()
                .filter(|s| s.learned == Learned::Event)
                .map(|s| s.entry.id)
                .collect();
            ids.is_subset(&open) && by_event.is_subset(&from_event)
        },
    );

    let now = unix_now();
    let gw_wan = v4(lab::GW_WAN_V4);
    {
        let table = shared.table.lock().expect("table lock");
        let mut moved = 0;
        for (proto, dport, clients, peers, ct) in [
            (
                TCP,
                TCP_PORT,
                open.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
                &tcp_peers,
                &ct_tcp,
            ),
            (UDP, UDP_PORT, udp_clients.clone(), &udp_peers, &ct_udp),
        ] {
            let seen_by_server: HashSet<SocketAddr> = peers.iter().copied().collect();
            for c in clients {
                let key = InsideKey {
                    proto,
                    src: c.ip(),
                    src_port: c.port(),
                    dst: v4(lab::SERVER_V4),
                    dst_port: dport,
                };
                let s = table
                    .lookup_inside(&key, now)
                    .unwrap_or_else(|| panic!("no NAT session for inside {key:?}"));
                let outside = s.outside();
                let outside_sa = SocketAddr::new(outside.addr, outside.port);
                let line = ct
                    .iter()
                    .find(|l| l.orig_src == c.ip() && l.orig_sport == c.port())
                    .unwrap_or_else(|| panic!("conntrack -L has no entry for {c}"));
                assert_eq!(
                    (line.reply_dst, line.reply_dport),
                    (outside.addr, outside.port),
                    "outside of {c}: conntrack -L says {}:{}, the table {outside_sa}",
                    line.reply_dst,
                    line.reply_dport
                );
                assert_eq!(line.id, s.entry.id, "conntrack id of {c}");
                assert!(
                    seen_by_server.contains(&outside_sa),
                    "server never saw {outside_sa} (inside {c})"
                );
                assert_eq!(outside.addr, gw_wan, "{c} left as {outside_sa}");
                assert!(
                    s.translated() && s.entry.status.src_nat(),
                    "{c}: session not marked SRC_NAT"
                );
                let from = s.window.from.expect("a start");
                assert!(
                    from > t0 && from <= now,
                    "{c}: start {from} outside the run {t0}..{now}"
                );
                assert_eq!(s.learned, Learned::Event, "{c}");
                moved += usize::from(outside.port != c.port());
                let back: Vec<_> = table
                    .lookup_outside(
                        &OutsideKey {
                            proto,
                            addr: outside.addr,
                            port: outside.port,
                        },
                        now,
                    )
                    .map(|s| (s.entry.orig.src, s.entry.orig.src_port()))
                    .collect();
                assert_eq!(
                    back,
                    vec![(c.ip(), c.port())],
                    "outside {outside_sa} maps back to"
                );
            }
        }
        assert!(
            moved >= usize::from(PAIRS),
            "only {moved} sessions changed port: the test cannot tell ports apart"
        );

        for line in &ct_icmp {
            let key = OutsideKey {
                proto: ICMP,
                addr: line.reply_dst,
                port: line.reply_dport,
            };
            let found: Vec<_> = table.lookup_outside(&key, now).collect();
            assert_eq!(found.len(), 1, "ICMP outside {key:?}: {found:?}");
            let s = found[0];
            assert_eq!(s.entry.orig.src, v4(lab::CLIENT_V4), "ICMP inside address");
            assert!(
                matches!(s.entry.orig.l4, L4::Icmp { ty: 8, code: 0, .. }),
                "{:?}",
                s.entry.orig.l4
            );
            assert_eq!(s.entry.id, line.id);
        }
        let echo = InsideKey {
            proto: ICMP,
            src: v4(lab::CLIENT_V4),
            src_port: 8,
            dst: v4(lab::SERVER_V4),
            dst_port: 0,
        };
        assert!(
            table.lookup_inside(&echo, now).is_some(),
            "the echo flow joins a session"
        );
        let none = InsideKey {
            proto: TCP,
            src: v4(lab::CLIENT_V4),
            src_port: 1,
            dst: v4(lab::SERVER_V4),
            dst_port: 1,
        };
        assert!(
            table.lookup_inside(&none, now).is_none(),
            "a tuple no entry covers has no outside"
        );
    }

    // Destroy: deleting the UDP entries ends their sessions with the kernel's stop time and
    // final counters, handed out once for NAT records.
    drop(open);
    sh(lab.cmd(&lab.gateway, "conntrack").args(["-D", "-p", "udp"]))
        .unwrap_or_else(|e| panic!("conntrack -D: {e:#}"));
    let udp_ids: HashSet<u32> = ct_udp.iter().map(|c| c.id).collect();
    // A periodic dump between the delete and the read of its events closes a session before
    // its destroy event does; the event then makes it exact. Wait for that too.
    shared.wait_until(
        "every UDP session closed by its destroy event (else a dump closed a live session)",
        Duration::from_secs(10),
        |t| {
            let st = t.stats();
            t.open_sessions().all(|s| !udp_ids.contains(&s.entry.id))
                && st.closed_missing == st.dump_before_destroy
        },
    );
    let closed: Vec<_> = {
        let mut t = shared.table.lock().expect("table lock");
        t.take_closed(i64::MAX)
            .filter(|s| udp_ids.contains(&s.entry.id))
            .collect()
    };
    assert_eq!(
        closed.len(),
        n_udp,
        "closed UDP sessions handed out: {closed:?}"
    );
    let again = shared
        .table
        .lock()
        .expect("table lock")
        .take_closed(i64::MAX)
        .count();
    assert_eq!(again, 0, "a closed session was handed out twice");
    for s in &closed {
        assert_eq!(s.closed, Some(Closed::Destroyed), "{s:?}");
        assert!(
            s.start_exact,
            "the destroy event carried no start timestamp: {s:?}"
        );
        let (from, to) = (s.window.from.expect("start"), s.window.to.expect("end"));
        assert!(
            s.entry.stop_ns.is_some() && to >= from,
            "window {from}..{to}"
        );
        let c = s.entry.counters_orig.expect("nf_conntrack_acct counters");
        assert_eq!(c.packets, 1, "one datagram each way: {s:?}");
        assert_eq!(s.entry.counters_reply.map(|c| c.packets), Some(1));
    }
    let counters = listener.counters();
    let dumps = counters.dumps.load(Ordering::Relaxed);
    shared.wait_until(
        "a periodic dump after the traffic",
        Duration::from_secs(10),
        |_| counters.dumps.load(Ordering::Relaxed) > dumps,
    );
    let stats = shared.table.lock().expect("table lock").stats();
    assert_eq!(
        stats.closed_missing, stats.dump_before_destroy,
        "a periodic dump closed a live session: {stats:?}"
    );
    assert_eq!(
        stats.recovered, stats.dump_before_new,
        "a periodic dump found a session the events missed: {stats:?}"
    );
    assert_eq!(
        counters.enobufs.load(Ordering::Relaxed),
        0,
        "no loss expected in this test"
    );
    assert_eq!(counters.parse_errors.load(Ordering::Relaxed), 0);
    drop(listener);

    // The capture replays through the parser into the same kinds of messages.
    let raw = std::fs::read(&capture)
        .unwrap_or_else(|e| panic!("read capture {}: {e}", capture.display()));
    let kinds = messages(&raw).fold(HashMap::new(), |mut m, item| {
        if let NlItem::Conntrack(msg) =
            item.unwrap_or_else(|e| panic!("capture {}: {e}", capture.display()))
        {
            *m.entry(msg.kind).or_insert(0usize) += 1;
        }
        m
    });
    assert!(
        kinds.get(&CtKind::New).copied().unwrap_or(0) >= n_tcp + n_udp + 2,
        "{kinds:?}"
    );
    assert!(
        kinds.get(&CtKind::Destroy).copied().unwrap_or(0) >= n_udp,
        "{kinds:?}"
    );
}
