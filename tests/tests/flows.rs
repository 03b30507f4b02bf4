//! End to end: real TCP and UDP traffic through the lab gateway, with the agent attached to
//! one of the gateway's interfaces (the client-facing one; in a second test the `wan` side)
//! and tcpdump capturing the same interface. Every
//! flow in the capture must appear exactly once in the audit log with the capture's packet
//! and byte counts, and nothing else may appear. Needs root.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Stdio};
use std::time::Duration;

use xdp_audit_lab::agent::Agent;
use xdp_audit_lab::lab::{self, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::pcap::{self, Count, FlowId};
use xdp_audit_lab::wait::wait_until;

const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;
const TCP_SIZES: [usize; 5] = [0, 1, 1_000, 100_000, 1_000_000];
const UDP_SIZES: [usize; 4] = [1, 100, 512, 1400];
/// The client port two connections share, and the first one's bytes.
const REUSED_PORT: u16 = 45123;
const REUSED_SIZE: usize = 3_000;
/// The client port of a connection the client aborts (RST, nothing closed on the server's
/// side), then uses again.
const ABORTED_PORT: u16 = 45124;

/// tcpdump, stopped with SIGINT (so it writes out what it holds) when dropped or stopped.
struct Capture(Option<Child>);

impl Capture {
    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// IP packets the program has seen so far: every packet counts in exactly one outcome
/// counter. Not the frames it skipped as not IP: an ARP exchange may come
/// between the program's attach and the capture's start (in one CI run under load the
/// program saw 896 packets and the capture 895, the one an ARP), and no flow is made of one.
fn packets_seen(status: &serde_json::Value) -> Option<u64> {
    let counters = status["counters"].as_object()?;
    Some(
        counters
            .iter()
            .filter(|(name, _)| {
                ["parsed_", "fragment_", "skip_"]
                    .iter()
                    .any(|p| name.starts_with(p))
                    && name.as_str() != "skip_non_ip"
            })
            .filter_map(|(_, n)| n.as_u64())
            .sum(),
    )
}

/// Servers in the internet namespace: TCP reads to EOF then answers with half as many bytes;
/// UDP echoes each datagram with twice its size (capped).
fn start_servers(lab: &Lab) {
    let ns = lab.internet.clone();
    std::thread::spawn(move || {
        let _ = run_in(&ns, || -> anyhow::Result<()> {
            let l = TcpListener::bind((lab::SERVER_V4, TCP_PORT))?;
            let l6 = TcpListener::bind((lab::SERVER_V6, TCP_PORT))?;
            std::thread::spawn(move || serve_tcp(l6));
            serve_tcp(l);
            Ok(())
        });
    });
    let ns = lab.internet.clone();
    std::thread::spawn(move || {
        let _ = run_in(&ns, || -> anyhow::Result<()> {
            let s = UdpSocket::bind((lab::SERVER_V4, UDP_PORT))?;
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, from) = s.recv_from(&mut buf)?;
                s.send_to(&vec![7u8; (n * 2).min(1400)], from)?;
            }
        });
    });
}

/// A TCP connection to the server's IPv4 address from the client's `port`, which the last
/// connection from it may have held (`SO_REUSEADDR`).
fn connect_from(port: u16) -> anyhow::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::new(lab::CLIENT_V4.parse()?, port).into())?;
    let sa = SocketAddr::new(lab::SERVER_V4.parse()?, TCP_PORT);
    s.connect_timeout(&sa.into(), Duration::from_secs(5))?;
    Ok(s)
}

fn serve_tcp(l: TcpListener) {
    for mut conn in l.incoming().map_while(Result::ok) {
        std::thread::spawn(move || {
            let mut got = Vec::new();
            if conn.read_to_end(&mut got).is_ok() {
                let _ = conn.write_all(&vec![1u8; got.len() / 2]);
            }
        });
    }
}

fn parse_ip(v: &serde_json::Value, field: &str) -> IpAddr {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("record lacks {field}: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{field} in {v}: {e}"))
}

fn proto_num(name: &str) -> u8 {
    match name {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        n => n.parse().unwrap_or_else(|_| panic!("unknown proto {n}")),
    }
}

#[test]
fn every_flow_in_a_capture_is_audited_once_with_exact_counts() {
    every_flow_on(lab::GW_LAN_IF, "e2e");
}

/// The same on the gateway's `wan` side, which receives the server's packets: its TCP flows
/// begin with the server's SYN-ACK, and the two connections from one port are two there too
/// (they were one record before 2026-12-08).
#[test]
fn every_flow_on_the_wan_side_is_audited_once_with_exact_counts() {
    every_flow_on(lab::GW_WAN_IF, "e2ewan");
}

/// Traffic through the gateway with the agent and a capture on `iface`: each connection in
/// the capture is one record with its counts, and no record is not in the capture.
fn every_flow_on(iface: &str, name: &str) {
    let lab = Lab::new(name).expect("build the netns lab (root, iproute2, ethtool)");
    start_servers(&lab);
    lab.wait_tcp(lab::SERVER_V4, TCP_PORT, Duration::from_secs(10))
        .expect("server up");
    // Nothing of the lab's set-up may arrive once the agent and the capture run, or one would
    // see a packet the other missed.
    lab.wait_quiet(
        &lab.gateway,
        iface,
        Duration::from_millis(300),
        Duration::from_secs(10),
    )
    .expect("the audited link falls quiet");

    let tmp = lab.temp_dir(name).expect("temp dir");
    let dir = tmp.path();
    let bin = xdp_audit_lab::agent::binary().expect("agent binary");
    let mut agent = Agent::start(
        &lab,
        &lab.gateway,
        &bin,
        &dir.join("log"),
        &[
            "--iface",
            iface,
            "--close-linger",
            "1s",
            "--sweep-interval",
            "200ms",
        ],
    )
    .expect("start the agent");
    let pcap_path = dir.join(format!("{iface}.pcap"));
    let tcpdump = lab
        .cmd(&lab.gateway, "tcpdump")
        .args(["-i", iface, "-Q", "in", "-n", "-U", "-Z", "root", "-w"])
        .arg(&pcap_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcpdump");
    let mut capture = Capture(Some(tcpdump));
    {
        // tcpdump says "listening on" once the capture is live.
        let mut err = capture
            .0
            .as_mut()
            .and_then(|c| c.stderr.take())
            .expect("tcpdump stderr");
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        while !seen.contains("listening on") {
            let n = err.read(&mut buf).expect("read tcpdump stderr");
            assert!(n > 0, "tcpdump exited: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    }

    // The traffic: TCP over IPv4 and IPv6, UDP exchanges, each from its own source port.
    let client = lab.client.clone();
    run_in(&client, || {
        for (i, &size) in TCP_SIZES.iter().enumerate() {
            let server = if i % 2 == 0 {
                lab::SERVER_V4
            } else {
                lab::SERVER_V6
            };
            let sa = SocketAddr::new(server.parse()?, TCP_PORT);
            let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))?;
            s.write_all(&vec![0x42u8; size])?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut back = Vec::new();
            s.read_to_end(&mut back)?;
            assert_eq!(back.len(), size / 2, "TCP reply size");
        }
        // Two connections from one client port, the second within the close linger of the
        // first: two flows, each with its own packets (the first closed with a zero linger
        // once in TIME_WAIT, which frees the port without sending anything).
        for size in [REUSED_SIZE, 2 * REUSED_SIZE] {
            let s = connect_from(REUSED_PORT)?;
            let mut s = TcpStream::from(s);
            s.write_all(&vec![0x43u8; size])?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut back = Vec::new();
            s.read_to_end(&mut back)?;
            assert_eq!(back.len(), size / 2, "TCP reply size");
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
        }
        // A connection the client aborts once established (a zero linger: an RST the server
        // takes; it sends no FIN or RST of its own), then the same port again.
        for abort in [true, false] {
            let s = connect_from(ABORTED_PORT)?;
            if abort {
                s.set_linger(Some(Duration::ZERO))?;
                continue;
            }
            let mut s = TcpStream::from(s);
            s.write_all(&[0x44u8; 2_000])?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut back = Vec::new();
            s.read_to_end(&mut back)?;
            assert_eq!(back.len(), 1_000, "TCP reply size");
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
        }
        for &size in &UDP_SIZES {
            let s = UdpSocket::bind((lab::CLIENT_V4, 0))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.send_to(&vec![9u8; size], (lab::SERVER_V4, UDP_PORT))?;
            let mut buf = [0u8; 2048];
            let (n, _) = s.recv_from(&mut buf)?;
            assert_eq!(n, (size * 2).min(1400), "UDP reply size");
        }
        Ok(())
    })
    .expect("client traffic");

    // The TCP flows end once their closing packets have lingered out (1 s after the first
    // FIN), so the last ACKs have arrived; then the capture holds every packet the program saw.
    wait_until(
        Duration::from_secs(20),
        "the TCP flows (five, and two from each of two ports) are written and the capture holds every packet the program saw",
        || {
            let status = agent.status().unwrap_or_default();
            let captured = pcap::read(&pcap_path).map_or(0, |f| {
                f.iter()
                    .filter(|f| pcap::flow_of(&f.data).is_some())
                    .count() as u64
            });
            status["flows"]["records"].as_u64() >= Some(TCP_SIZES.len() as u64 + 4)
                && packets_seen(&status) == Some(captured)
        },
    );
    capture.stop();
    assert_eq!(
        agent.stop().expect("stop agent"),
        0,
        "the agent exits 0 on SIGTERM"
    );

    // The store the agent wrote is intact.
    let verify = std::process::Command::new(&bin)
        .args(["verify", "--log-dir"])
        .arg(dir.join("log"))
        .output()
        .expect("run xdp-audit verify");
    assert!(
        verify.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let frames = pcap::read(&pcap_path).expect("read the capture");
    let captured = pcap::flows(&frames);
    let mut records = agent.records().expect("read the audit log");
    // A flow's connections in time order (RFC 3339 of one length sorts as text).
    records.sort_by(|a, b| a["time_start"].as_str().cmp(&b["time_start"].as_str()));
    let mut audited: BTreeMap<FlowId, Vec<Count>> = BTreeMap::new();
    for r in records {
        let id = FlowId {
            proto: proto_num(r["proto"].as_str().expect("proto")),
            src: (
                parse_ip(&r, "src_ip"),
                r["src_port"].as_u64().expect("src_port") as u16,
            ),
            dst: (
                parse_ip(&r, "dst_ip"),
                r["dst_port"].as_u64().expect("dst_port") as u16,
            ),
        };
        assert_eq!(r["iface"], iface);
        assert!(
            r["time_start"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 30),
            "RFC 3339 with ns: {r}"
        );
        audited.entry(id).or_default().push(Count {
            packets: r["packets"].as_u64().expect("packets"),
            bytes: r["bytes"].as_u64().expect("bytes"),
        });
    }

    eprintln!(
        "{} frames captured in {} flows; {} flows audited",
        frames.len(),
        captured.len(),
        audited.len()
    );
    for (id, c) in &captured {
        eprintln!("  {id:?}: {c:?}");
    }
    for (id, counts) in &audited {
        let cap = captured
            .get(id)
            .unwrap_or_else(|| panic!("audited flow {id:?} {counts:?} is not in the capture"));
        // One record per connection, in order (the store gives them in time order).
        assert_eq!(counts, cap, "counts of {id:?}: audit vs capture");
    }
    // The ports at each end: on the `wan` side a flow begins with the server's packet.
    let wan = iface == lab::GW_WAN_IF;
    let server_port = |k: &FlowId| if wan { k.src.1 } else { k.dst.1 };
    let client_port = |k: &FlowId| if wan { k.dst.1 } else { k.src.1 };
    let reused = (captured.iter())
        .find(|(k, _)| client_port(k) == REUSED_PORT)
        .map(|(_, c)| c.len());
    assert_eq!(reused, Some(2), "two connections from port {REUSED_PORT}");
    let aborted = (captured.iter())
        .find(|(k, _)| client_port(k) == ABORTED_PORT)
        .map(|(_, c)| c.len());
    assert_eq!(aborted, Some(2), "two connections from port {ABORTED_PORT}");
    for (id, cap) in &captured {
        assert!(
            audited.contains_key(id),
            "captured flow {id:?} {cap:?} missing from the audit log"
        );
    }
    let tcp = audited
        .keys()
        .filter(|k| k.proto == 6 && server_port(k) == TCP_PORT)
        .count();
    let udp = audited
        .keys()
        .filter(|k| k.proto == 17 && server_port(k) == UDP_PORT)
        .count();
    assert_eq!(
        (tcp, udp),
        (TCP_SIZES.len() + 2, UDP_SIZES.len()),
        "every connection and exchange audited"
    );
    for &size in &UDP_SIZES {
        // The `wan` side receives the server's echo: twice the size, capped.
        let sent = if wan { (2 * size).min(1400) } else { size };
        let frame = (14 + 20 + 8 + sent) as u64;
        assert!(
            audited.iter().any(|(k, c)| k.proto == 17
                && server_port(k) == UDP_PORT
                && c[..]
                    == [Count {
                        packets: 1,
                        bytes: frame
                    }]),
            "a UDP exchange of {size} bytes is one {frame}-byte frame at {iface}"
        );
    }
}
