//! NAT mappings from conntrack, against a real masquerading gateway: a client - gateway -
//! internet lab whose gateway masquerades its internet side with nftables, as a home or office
//! gateway does. The listener runs in the gateway namespace; every session's outside address
//! and port must equal what `conntrack -L` printed during the run and what the server saw as
//! its peer. A burst larger than the socket buffer must be counted and recovered by the dump.
//! Needs root, `nft` and `conntrack` (Debian packages nftables, conntrack).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use xdp_audit::enrich::nat::parse::{messages, CtKind, NlItem, L4};
use xdp_audit::enrich::nat::{
    Closed, ConntrackListener, InsideKey, Learned, ListenerConfig, NatTable, NatUpdate, OutsideKey,
    TableConfig,
};
use xdp_audit_lab::lab::{self, sh, Lab};
use xdp_audit_lab::netns::run_in;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
/// A second client address, so two clients can use the same source port and the gateway must
/// translate one of them (with one client, masquerade keeps most ports and a test could not
/// tell the inside port from the outside one).
const CLIENT2_V4: &str = "198.51.100.3";
const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("address {s}: {e}"))
}

/// The lab with masquerade on the gateway's internet side and a second client address.
fn nat_lab(tag: &str) -> Lab {
    let lab = Lab::new(tag).unwrap_or_else(|e| panic!("build the netns lab (root?): {e:#}"));
    // One statement per line: nft 1.0.6 rejects a closing brace after a statement on one line.
    let ruleset = format!(
        "table ip xanat {{\n chain post {{\n  type nat hook postrouting priority srcnat; policy accept;\n  \
         oifname \"{}\" masquerade\n }}\n}}\n",
        lab::GW_WAN_IF
    );
    let path = std::env::temp_dir().join(format!("{}.nft", lab.gateway));
    std::fs::write(&path, &ruleset).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let loaded = sh(lab.cmd(&lab.gateway, "nft").arg("-f").arg(&path));
    let _ = std::fs::remove_file(&path);
    loaded.unwrap_or_else(|e| {
        panic!("nft masquerade in the gateway (apt-get install nftables): {e:#}")
    });
    sh(lab.cmd(&lab.client, "ip").args([
        "addr",
        "add",
        &format!("{CLIENT2_V4}/24"),
        "dev",
        "eth0",
    ]))
    .unwrap_or_else(|e| panic!("second client address: {e:#}"));
    lab
}

/// The table the listener feeds, with a condition variable to wait on.
struct Shared {
    table: Mutex<NatTable>,
    changed: Condvar,
    /// While set, the sink blocks on the first event after the start dump.
    hold: Mutex<bool>,
    released: Condvar,
    started: AtomicBool,
}

impl Shared {
    fn new(hold: bool) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(NatTable::new(TableConfig::default())),
            changed: Condvar::new(),
            hold: Mutex::new(hold),
            released: Condvar::new(),
            started: AtomicBool::new(false),
        })
    }

    fn sink(self: &Arc<Self>) -> impl FnMut(NatUpdate) -> bool + Send + 'static {
        let me = self.clone();
        move |u| {
            if me.started.load(Ordering::Relaxed) {
                let mut held = me.hold.lock().unwrap_or_else(|p| p.into_inner());
                while *held {
                    held = me.released.wait(held).unwrap_or_else(|p| p.into_inner());
                }
            }
            if matches!(u, NatUpdate::DumpEnd { .. }) {
                me.started.store(true, Ordering::Relaxed);
            }
            me.table.lock().unwrap_or_else(|p| p.into_inner()).apply(u);
            me.changed.notify_all();
            true
        }
    }

    fn release(&self) {
        *self.hold.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.released.notify_all();
    }

    /// Waits until `pred` holds on the table, or panics naming `what`.
    fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&NatTable) -> bool) {
        let deadline = Instant::now() + timeout;
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        while !pred(&t) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out after {timeout:?} waiting for {what}"
            );
            t = self
                .changed
                .wait_timeout(t, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn listen(lab: &Lab, shared: &Arc<Shared>, config: ListenerConfig) -> ConntrackListener {
    let config = ListenerConfig {
        netns: Some(PathBuf::from(format!("/run/netns/{}", lab.gateway))),
        ..config
    };
    let l = ConntrackListener::spawn(config, shared.sink())
        .unwrap_or_else(|e| panic!("start the conntrack listener in the gateway namespace: {e}"));
    shared.wait_until("the start dump", Duration::from_secs(10), |_| {
        shared.started.load(Ordering::Relaxed)
    });
    l
}

/// One line of `conntrack -L -o id` (`NAME NUMBER TIMEOUT [STATE] key=value...`): the original and reply tuples and the entry id.
#[derive(Clone, Debug)]
struct CtLine {
    orig_src: IpAddr,
    orig_sport: u16,
    orig_dst: IpAddr,
    reply_dst: IpAddr,
    reply_dport: u16,
    id: u32,
}

fn conntrack_list(lab: &Lab, proto: &str) -> Vec<CtLine> {
    let out = sh(lab
        .cmd(&lab.gateway, "conntrack")
        .args(["-L", "-p", proto, "-o", "id"]))
    .unwrap_or_else(|e| panic!("conntrack -L in the gateway (apt-get install conntrack): {e:#}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            parse_ct_line(line).unwrap_or_else(|| panic!("unreadable conntrack -L line {line:?}"))
        })
        .collect()
}

/// Reads a `conntrack -L -o id` line: the first src/dst/sport (or ICMP id) belong to the
/// original tuple, the second to the reply tuple; the last `id=` is the entry's id.
fn parse_ct_line(line: &str) -> Option<CtLine> {
    let mut fields: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut words = line.split_whitespace();
    let _name = words.next()?;
    let proto: u8 = words.next()?.parse().ok()?;
    for w in words {
        if let Some((k, v)) = w.split_once('=') {
            fields.entry(k).or_default().push(v);
        }
    }
    let get = |k: &str, i: usize| fields.get(k).and_then(|v| v.get(i)).copied();
    let (port_key, id_at) = if proto == ICMP {
        ("id", 2)
    } else {
        ("sport", 0)
    };
    let dport = |i| {
        if proto == ICMP {
            get("id", i)
        } else {
            get("dport", i)
        }
    };
    Some(CtLine {
        orig_src: get("src", 0)?.parse().ok()?,
        orig_sport: get(port_key, 0)?.parse().ok()?,
        orig_dst: get("dst", 0)?.parse().ok()?,
        reply_dst: get("dst", 1)?.parse().ok()?,
        reply_dport: dport(1)?.parse().ok()?,
        id: get("id", id_at)?.parse().ok()?,
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .expect("clock after 1970")
}

/// A TCP connection from a chosen source address and port.
fn connect_from(src: SocketAddr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&src.into())?;
    s.connect_timeout(&dst.into(), Duration::from_secs(5))?;
    Ok(s.into())
}

/// Prints what the namespaces' counters, conntrack and neighbours say, for a failure's log:
/// a lost datagram shows where it went.
fn dump_lab_state(lab: &Lab) {
    for ns in [&lab.client, &lab.gateway, &lab.internet] {
        for c in [
            &["nstat", "-az"][..],
            &["conntrack", "-S"],
            &["conntrack", "-L", "-p", "udp"],
            &["ip", "-s", "link"],
            &["ip", "neigh"],
        ] {
            if let Ok(o) = lab.cmd(ns, c[0]).args(&c[1..]).output() {
                eprintln!(
                    "{ns} {}:\n{}{}",
                    c.join(" "),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
}

/// Runs `f` in namespace `ns` on a background thread.
fn in_ns_bg<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<T>> {
    let ns = ns.to_owned();
    std::thread::spawn(move || run_in(&ns, f))
}

#[test]
fn masquerade_sessions_match_conntrack_and_the_server() {
    let lab = nat_lab("nat");
    let shared = Shared::new(false);
    let t0 = unix_now();
    let capture = std::env::var_os("XDP_AUDIT_RECORD_NAT_FIXTURES")
        .map(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nat/lab.bin"))
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("xa-nat-capture-{}.bin", std::process::id()))
        });
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
    shared.wait_until(
        "every conntrack entry in the table",
        Duration::from_secs(10),
        |t| {
            let open: HashSet<u32> = t.open_sessions().map(|s| s.entry.id).collect();
            ids.is_subset(&open)
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
    if std::env::var_os("XDP_AUDIT_RECORD_NAT_FIXTURES").is_none() {
        let _ = std::fs::remove_file(&capture);
    }
}

#[test]
fn a_burst_past_the_socket_buffer_is_counted_and_recovered() {
    let lab = nat_lab("natb");
    let shared = Shared::new(true);
    // The smallest buffer the kernel grants (it doubles the ask and floors it), and a sink
    // held shut while the burst arrives: the queue must overflow.
    let listener = listen(
        &lab,
        &shared,
        ListenerConfig {
            rcvbuf_bytes: 64 * 1024,
            ..Default::default()
        },
    );
    let counters = listener.counters();
    let granted = counters.rcvbuf_granted.load(Ordering::Relaxed);

    const FLOWS: u16 = 3000;
    let udp_addr = SocketAddr::new(v4(lab::SERVER_V4), UDP_PORT);
    run_in(&lab.client, move || {
        for i in 0..FLOWS {
            let s = UdpSocket::bind((lab::CLIENT_V4, 20000 + i))?;
            s.send_to(b"burst", udp_addr)?;
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("burst from the client: {e:#}"));
    let count = || -> usize {
        let out = sh(lab.cmd(&lab.gateway, "conntrack").args(["-C"]))
            .unwrap_or_else(|e| panic!("conntrack -C: {e:#}"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() < usize::from(FLOWS) {
        assert!(
            Instant::now() < deadline,
            "conntrack never held the {FLOWS} burst entries"
        );
        std::thread::yield_now();
    }
    shared.release();

    shared.wait_until("the dump after the loss", Duration::from_secs(30), |t| {
        t.stats().recovered > 0
    });
    shared.wait_until("every burst entry", Duration::from_secs(30), |t| {
        t.open_len() >= usize::from(FLOWS)
    });
    let enobufs = counters.enobufs.load(Ordering::Relaxed);
    assert!(
        enobufs >= 1,
        "no ENOBUFS counted with a {granted}-byte buffer and {FLOWS} events"
    );
    let heard = counters.new_events.load(Ordering::Relaxed);
    eprintln!(
        "burst: {heard} of {FLOWS} new events fit a {granted}-byte receive buffer \
         ({} bytes per queued event); {enobufs} overruns",
        granted / heard.max(1)
    );

    let ct = conntrack_list(&lab, "udp");
    assert_eq!(ct.len(), usize::from(FLOWS), "conntrack -L -p udp");
    let now = unix_now();
    let table = shared.table.lock().expect("table lock");
    let mut recovered = 0;
    for line in &ct {
        let key = InsideKey {
            proto: UDP,
            src: line.orig_src,
            src_port: line.orig_sport,
            dst: line.orig_dst,
            dst_port: UDP_PORT,
        };
        let s = table
            .lookup_inside(&key, now)
            .unwrap_or_else(|| panic!("live session {key:?} missing after the recovery"));
        assert_eq!(
            (s.outside().addr, s.outside().port),
            (line.reply_dst, line.reply_dport),
            "{key:?}"
        );
        assert_eq!(s.entry.id, line.id);
        assert!(s.window.to.is_none(), "live session {key:?} closed: {s:?}");
        recovered += usize::from(s.learned == Learned::Recovered);
    }
    assert!(recovered > 0, "no session came from the dump");
    assert_eq!(
        table.stats().closed_missing,
        0,
        "a live session was closed by the dump"
    );
    assert!(
        heard < u64::from(FLOWS),
        "all {heard} events fit: the buffer was not overrun"
    );
}

/// What the enrich stage passed on to the store.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<Vec<xdp_audit::record::FlowRecord>>>);

impl xdp_audit::sink::RecordSink for Written {
    fn write(
        &mut self,
        r: &xdp_audit::record::FlowRecord,
    ) -> Result<(), xdp_audit::sink::SinkError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r.clone());
        Ok(())
    }
    fn sync(&mut self) -> Result<(), xdp_audit::sink::SinkError> {
        Ok(())
    }
}

/// The agent's attribution wiring against the real gateway: the sources started as `run`
/// starts them (subscribers file, conntrack listener in the gateway namespace), a flow record
/// joined to its masqueraded session, and a session no flow record joined (as for the
/// gateway's own traffic) written as a NAT record once conntrack destroys it. Each outside
/// tuple must be the one the server saw.
#[test]
fn the_enrich_stage_joins_flows_and_records_unjoined_sessions_from_real_conntrack() {
    use xdp_audit::enrich::inputs::{EnrichOptions, Enrichment, NatMode};
    use xdp_audit::enrich::stage::{EnrichStage, StageConfig};
    use xdp_audit::record::{Attribution, EndReason, FlowRecord, Mac};
    use xdp_audit::sink::RecordSink;

    let lab = nat_lab("enr");
    let dir = std::env::temp_dir().join(format!("xa-enr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    let subs = dir.join("subscribers.csv");
    std::fs::write(
        &subs,
        format!(
            "match,account\n{},alice\n{CLIENT2_V4},bob\n",
            lab::CLIENT_V4
        ),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", subs.display()));
    let (running, inputs) = Enrichment::start(EnrichOptions {
        subscribers: vec![subs],
        nat: NatMode::On,
        listener: ListenerConfig {
            netns: Some(PathBuf::from(format!("/run/netns/{}", lab.gateway))),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("start attribution with --nat on in the gateway: {e}"));
    let nat = inputs.nat.clone().expect("--nat on gives a NAT table");
    let out = Written::default();
    let mut stage = EnrichStage::new(
        Box::new(out.clone()),
        inputs,
        StageConfig {
            nat_record_delay_ns: 0,
            ..Default::default()
        },
    );

    // Both clients ping the UDP server from the same source port; the server notes each peer.
    let udp_addr = SocketAddr::new(v4(lab::SERVER_V4), UDP_PORT);
    let server = in_ns_bg(&lab.internet, move || {
        let s = UdpSocket::bind(udp_addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut peers: Vec<(u8, SocketAddr)> = Vec::new();
        let mut b = [0u8; 16];
        // Until both clients are heard: a client whose echo came late sends again.
        while peers.len() < 2 {
            let (n, peer) = s.recv_from(&mut b)?;
            s.send_to(&b[..n], peer)?;
            if !peers.iter().any(|(t, _)| *t == b[0]) {
                peers.push((b[0], peer));
            }
        }
        Ok(peers)
    });
    let started = unix_now();
    run_in(&lab.client, move || {
        for (tag, src) in [(b'1', lab::CLIENT_V4), (b'2', CLIENT2_V4)] {
            let s = UdpSocket::bind((src, 43000))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            // Retried: the server thread may not have bound yet, or its echo may come late.
            let mut b = [0u8; 4];
            let mut got = false;
            for _ in 0..50 {
                s.send_to(&[tag], udp_addr)?;
                s.set_read_timeout(Some(Duration::from_millis(200)))?;
                if s.recv_from(&mut b).is_ok() {
                    got = true;
                    break;
                }
            }
            anyhow::ensure!(got, "no echo from the UDP server for client {src}");
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("client traffic: {e:#}"));
    let peers = server
        .join()
        .expect("UDP server thread")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let seen = |tag: u8| {
        peers
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("the server never heard client {}", tag as char))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while nat.lock().unwrap_or_else(|p| p.into_inner()).open_len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the conntrack listener never learned both UDP sessions"
        );
        std::thread::yield_now();
    }

    // The first client's flow as the sweeper would write it: joined to its session.
    let flow = FlowRecord {
        time_start_ns: started,
        time_end_ns: started + 1_000_000,
        iface: "lan0".into(),
        ifindex: 2,
        vlan: None,
        vlan_inner: None,
        src_mac: Mac([2, 0, 0, 0, 0, 9]),
        dst_mac: Mac([2, 0, 0, 0, 0, 1]),
        proto: UDP,
        src_ip: v4(lab::CLIENT_V4),
        src_port: 43000,
        dst_ip: v4(lab::SERVER_V4),
        dst_port: UDP_PORT,
        packets: 2,
        bytes: 120,
        resp_packets: 1,
        resp_bytes: 60,
        tcp_flags: 0,
        dropped: 0,
        rule: None,
        end_reason: EndReason::Idle,
        attr: Attribution::default(),
    };
    stage.write(&flow).expect("write the flow record");

    // Conntrack destroys both sessions; only the unjoined one becomes a NAT record.
    sh(lab.cmd(&lab.gateway, "conntrack").args([
        "-D",
        "-p",
        "udp",
        "--dport",
        &UDP_PORT.to_string(),
    ]))
    .unwrap_or_else(|e| panic!("conntrack -D in the gateway (apt-get install conntrack): {e:#}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while nat.lock().unwrap_or_else(|p| p.into_inner()).open_len() > 0 {
        assert!(
            Instant::now() < deadline,
            "the destroy events never closed the sessions"
        );
        std::thread::yield_now();
    }
    stage.tick().expect("tick");
    stage.close().expect("close");
    drop(running);

    let got = out.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let gw = v4(lab::GW_WAN_V4);
    assert_eq!(got.len(), 2, "the flow record and one NAT record: {got:#?}");
    let (joined, nat_rec) = (&got[0], &got[1]);
    let one = seen(b'1');
    assert_eq!(joined.attr.user.as_deref(), Some("alice"));
    assert_eq!(
        (joined.attr.nat_ip, joined.attr.nat_port),
        (Some(gw), Some(one.port())),
        "the flow's outside tuple is the server's peer {one}"
    );
    let two = seen(b'2');
    assert_eq!(nat_rec.end_reason, EndReason::Nat);
    assert_eq!((nat_rec.src_ip, nat_rec.src_port), (v4(CLIENT2_V4), 43000));
    assert_eq!(nat_rec.attr.user.as_deref(), Some("bob"));
    assert_eq!(
        (nat_rec.attr.nat_ip, nat_rec.attr.nat_port),
        (Some(gw), Some(two.port())),
        "the NAT record's outside tuple is the server's peer {two}"
    );
    assert_ne!(one.port(), two.port(), "masquerade had to move one port");
    let status = stage.status();
    assert_eq!(status.nat.nat_records, 1);
    assert!(
        status.nat.listening && status.nat.destroy_events >= 2,
        "{status:?}"
    );
}
