//! Blocklists end to end in the netns lab: blocked addresses, prefixes, ports and domains
//! are unreachable from the client while allowed ones work; a valid edit of a list file
//! during a long transfer neither interrupts it nor drops a packet of it; a bad edit is
//! reported with file and line and changes nothing; an open flow to a newly blocked address
//! stops; a blocked DNS query's record names the query; a blocked name is blocked over TCP
//! however the client cuts its stream into segments. Needs root.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::wait::wait_until;

/// Extra server addresses in the internet namespace, each with a role in the test.
const OK_IP: &str = "203.0.113.2";
const BLOCKED_IP: &str = "203.0.113.3";
const LATER_BLOCKED_IP: &str = "203.0.113.4";
const IN_BLOCKED_NET: &str = "203.0.113.20";
const ALLOWED_IN_NET: &str = "203.0.113.21";
const PORT: u16 = 8080;
const BLOCKED_PORT: u16 = 2525;
/// The long transfer's server, on [`OK_IP`], with a byte count of its own.
const TRANSFER_PORT: u16 = 8081;

/// TCP servers that count the bytes they receive and echo a one-byte ack per read.
fn start_tcp(lab: &Lab, addr: &'static str, port: u16, received: Arc<AtomicU64>) {
    let ns = lab.internet.clone();
    std::thread::spawn(move || {
        let _ = run_in(&ns, move || -> anyhow::Result<()> {
            let l = TcpListener::bind((addr, port))?;
            for conn in l.incoming() {
                let mut conn = conn?;
                let received = received.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        received.fetch_add(n as u64, Ordering::SeqCst);
                        if conn.write_all(b"k").is_err() {
                            break;
                        }
                    }
                });
            }
            Ok(())
        });
    });
}

/// A DNS responder that answers every query with one A record.
fn start_dns(lab: &Lab) {
    let ns = lab.internet.clone();
    std::thread::spawn(move || {
        let _ = run_in(&ns, || -> anyhow::Result<()> {
            let s = UdpSocket::bind((OK_IP, 53))?;
            let mut buf = [0u8; 512];
            loop {
                let (n, from) = s.recv_from(&mut buf)?;
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80; // QR
                reply[7] = 1; // ANCOUNT
                reply.extend_from_slice(&[
                    0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 2,
                ]);
                s.send_to(&reply, from)?;
            }
        });
    });
}

/// A DNS server over TCP that reads each query as a resolver does (a length, then that many
/// bytes, however the segments cut them) and answers it as [`start_dns`] does.
fn start_dns_tcp(lab: &Lab) {
    let ns = lab.internet.clone();
    std::thread::spawn(move || {
        let _ = run_in(&ns, || -> anyhow::Result<()> {
            let listener = TcpListener::bind((OK_IP, 53))?;
            for stream in listener.incoming() {
                let mut stream = stream?;
                std::thread::spawn(move || -> std::io::Result<()> {
                    loop {
                        let mut len = [0u8; 2];
                        stream.read_exact(&mut len)?;
                        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        stream.read_exact(&mut reply)?;
                        reply[2] |= 0x80; // QR
                        reply.extend_from_slice(&[0, 0]);
                        let mut framed = ((reply.len()) as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        stream.write_all(&framed)?;
                    }
                });
            }
            Ok(())
        });
    });
}

/// A query for `name` behind its length, as DNS over TCP frames it.
fn framed_query(name: &str) -> Vec<u8> {
    let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    framed
}

/// Whether the client gets an answer over TCP to `stream`'s bytes, written in the pieces
/// `cuts` makes of them, each its own segment: a piece is written once the server has
/// acknowledged every byte before it.
fn answered_over_tcp(lab: &Lab, stream: Vec<u8>, cuts: &'static [usize]) -> bool {
    run_in(&lab.client, move || {
        use std::os::fd::AsRawFd;
        let sa = SocketAddr::new(OK_IP.parse()?, 53);
        let mut s = TcpStream::connect_timeout(&sa, Duration::from_millis(700))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_millis(700)))?;
        let mut from = 0;
        for &cut in cuts.iter().chain([&stream.len()]) {
            s.write_all(&stream[from..cut])?;
            from = cut;
            wait_until(Duration::from_secs(5), "the piece acknowledged", || {
                let mut unacked: libc::c_int = 0;
                // SAFETY: SIOCOUTQ writes one int through the pointer given.
                let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut unacked) };
                r == 0 && unacked == 0 || cut == stream.len()
            });
        }
        let mut len = [0u8; 2];
        let answered = s.read_exact(&mut len).is_ok();
        // Closed with a reset: a plain close would leave the kernel retransmitting a dropped
        // query for seconds, and those drops would land in later counts.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: SO_LINGER reads one `linger` struct of the size given.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(answered)
    })
    .expect("client thread")
}

fn connect(lab: &Lab, addr: &'static str, port: u16) -> bool {
    run_in(&lab.client, move || {
        let sa = SocketAddr::new(addr.parse()?, port);
        Ok(TcpStream::connect_timeout(&sa, Duration::from_millis(700)).is_ok())
    })
    .expect("client thread")
}

/// A status snapshot whose figures were all read after this call began: the agent rewrites
/// it every sweep, and the second rewrite seen started after the call.
fn fresh_status(agent: &Agent) -> serde_json::Value {
    let mut last = agent.status().unwrap_or_default()["written_at"].clone();
    let mut rewrites = 0;
    let mut status = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(10),
        "the agent rewrites its status twice",
        || {
            status = agent.status().unwrap_or_default();
            if status["written_at"] != last {
                last = status["written_at"].clone();
                rewrites += 1;
            }
            rewrites >= 2
        },
    );
    status
}

/// Packets the program has dropped for any list (addresses, prefixes, ports, domains).
fn dropped_by_lists(status: &serde_json::Value) -> u64 {
    ["dropped_by_list", "dropped_by_domain"]
        .iter()
        .map(|c| status["counters"][c].as_u64().unwrap_or(0))
        .sum()
}

/// Packets a rule (`FILE:LINE`) has matched, as `status` shows them.
fn rule_hits(status: &serde_json::Value, rule: &str) -> u64 {
    status["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["rule"] == rule))
        .and_then(|r| r["hits"].as_u64())
        .unwrap_or(0)
}

fn resolves(lab: &Lab, name: &'static str) -> bool {
    run_in(&lab.client, move || {
        let s = UdpSocket::bind((lab::CLIENT_V4, 0))?;
        s.set_read_timeout(Some(Duration::from_millis(700)))?;
        let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        s.send_to(&q, (OK_IP, 53))?;
        let mut buf = [0u8; 512];
        Ok(s.recv_from(&mut buf).is_ok())
    })
    .expect("client thread")
}

#[test]
fn lists_block_in_the_lab_and_edits_apply_without_a_gap() {
    let lab = Lab::new("blk").expect("build the netns lab");
    for ip in [BLOCKED_IP, LATER_BLOCKED_IP, IN_BLOCKED_NET, ALLOWED_IN_NET] {
        lab.add_internet_address(ip).expect("add address");
    }
    let received = Arc::new(AtomicU64::new(0));
    let later = Arc::new(AtomicU64::new(0));
    for ip in [OK_IP, BLOCKED_IP, IN_BLOCKED_NET, ALLOWED_IN_NET] {
        start_tcp(&lab, ip, PORT, received.clone());
    }
    start_tcp(&lab, LATER_BLOCKED_IP, PORT, later.clone());
    start_tcp(&lab, OK_IP, BLOCKED_PORT, received.clone());
    let transferred = Arc::new(AtomicU64::new(0));
    start_tcp(&lab, OK_IP, TRANSFER_PORT, transferred.clone());
    start_dns(&lab);
    start_dns_tcp(&lab);
    for port in [PORT, TRANSFER_PORT, 53] {
        lab.wait_tcp(OK_IP, port, Duration::from_secs(10))
            .expect("servers up");
    }

    let tmp = lab.temp_dir("blocking").expect("temp dir");
    let dir = tmp.path();
    let block = dir.join("block.list");
    let allow = dir.join("allow.list");
    let base_block =
        format!("{BLOCKED_IP}\n203.0.113.16/28\nport tcp {BLOCKED_PORT}\nblocked.example\n");
    std::fs::write(&block, &base_block).expect("write");
    std::fs::write(&allow, format!("{ALLOWED_IN_NET}\n")).expect("write");
    let bin = binary().expect("agent binary");
    // The lists come from a config file, the interface from the command line.
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!("blocklist = [{block:?}]\nallowlists = [{allow:?}]\nclose-linger = \"1s\"\nsweep-interval = \"200ms\"\n"),
    )
    .expect("write config");
    let mut agent = Agent::start(
        &lab,
        &lab.gateway.clone(),
        &bin,
        &dir.join("log"),
        &[
            "--iface",
            lab::GW_LAN_IF,
            "--config",
            config.to_str().expect("utf8"),
        ],
    )
    .expect("start the agent");

    assert!(
        connect(&lab, OK_IP, PORT),
        "an unlisted server is reachable"
    );
    assert!(!connect(&lab, BLOCKED_IP, PORT), "a blocked address is not");
    assert!(
        !connect(&lab, IN_BLOCKED_NET, PORT),
        "an address in a blocked prefix is not"
    );
    assert!(
        connect(&lab, ALLOWED_IN_NET, PORT),
        "an allowlisted address in that prefix is"
    );
    assert!(!connect(&lab, OK_IP, BLOCKED_PORT), "a blocked port is not");
    assert!(
        resolves(&lab, "www.allowed.example"),
        "an unlisted name resolves"
    );
    assert!(
        !resolves(&lab, "www.blocked.example"),
        "a name under a blocked domain does not"
    );
    // Over TCP, however the client cuts its stream: the server reads the name it asks for,
    // and so does the gateway. Until 2026-12-06 a length sent in a segment of its own, or a
    // blocked query behind another in one segment, got through.
    let (ok, no) = (
        framed_query("www.allowed.example"),
        framed_query("www.blocked.example"),
    );
    assert!(
        answered_over_tcp(&lab, ok.clone(), &[]),
        "an unlisted name over TCP"
    );
    assert!(
        answered_over_tcp(&lab, ok.clone(), &[2]),
        "its length sent alone"
    );
    assert!(
        answered_over_tcp(&lab, ok.clone(), &[35]),
        "cut after its name"
    );
    // Until 2026-12-06 a segment ending inside a length or a name was dropped while a domain
    // was blocked: the connection stalled.
    assert!(
        answered_over_tcp(&lab, ok.clone(), &[2 + 12 + 4]),
        "cut inside its name"
    );
    assert!(
        answered_over_tcp(&lab, ok.clone(), &[1, 2 + 12 + 9]),
        "cut inside its length and its name"
    );
    assert!(
        !answered_over_tcp(&lab, no.clone(), &[]),
        "a blocked name over TCP"
    );
    assert!(
        !answered_over_tcp(&lab, no.clone(), &[2]),
        "its length sent alone"
    );
    assert!(
        !answered_over_tcp(&lab, no.clone(), &[2 + 12 + 4]),
        "cut inside its name"
    );
    let mut both = ok.clone();
    both.extend_from_slice(&no);
    assert!(!answered_over_tcp(&lab, both, &[]), "behind another query");

    // A long transfer to an allowed host, across a valid edit of the blocklist: it must get
    // through whole, and not one of its packets may be dropped on the way.
    let drops_before = dropped_by_lists(&fresh_status(&agent));
    let stop = Arc::new(AtomicBool::new(false));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let transfer = {
        let (client, stop) = (lab.client.clone(), stop.clone());
        std::thread::spawn(move || {
            run_in(&client, move || {
                let mut s = TcpStream::connect((OK_IP, TRANSFER_PORT))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                let _ = port_tx.send(s.local_addr()?.port());
                let chunk = vec![7u8; 64 * 1024];
                let mut sent = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    s.write_all(&chunk)?;
                    sent += chunk.len() as u64;
                    let mut ack = [0u8; 64];
                    let _ = s.read(&mut ack)?;
                }
                s.shutdown(Shutdown::Write)?;
                // Read to the server's end: closed with its acknowledgements unread, the
                // socket would be reset, and the bytes it had not sent yet lost.
                std::io::copy(&mut s, &mut std::io::sink())?;
                Ok(sent)
            })
        })
    };
    let sport = port_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the transfer connects");
    wait_until(Duration::from_secs(10), "the transfer is under way", || {
        transferred.load(Ordering::SeqCst) > 0
    });
    std::fs::write(&block, format!("{base_block}198.18.0.0/15\n")).expect("edit");
    agent
        .wait_for("applied", Duration::from_secs(10))
        .expect("the edit applies");
    let at_apply = transferred.load(Ordering::SeqCst);
    wait_until(
        Duration::from_secs(10),
        "another MiB of the transfer arrives after the edit applied",
        || transferred.load(Ordering::SeqCst) >= at_apply + (1 << 20),
    );
    stop.store(true, Ordering::SeqCst);
    let sent = transfer
        .join()
        .expect("transfer thread")
        .expect("the transfer survives the edit");
    wait_until(
        Duration::from_secs(10),
        "the server has received as many bytes as the client sent",
        || transferred.load(Ordering::SeqCst) >= sent,
    );
    assert_eq!(
        transferred.load(Ordering::SeqCst),
        sent,
        "every byte of the transfer arrived, once"
    );
    assert_eq!(
        dropped_by_lists(&fresh_status(&agent)),
        drops_before,
        "the program dropped nothing while the transfer ran across the edit"
    );

    // A bad edit is reported with file and line, and nothing changes.
    std::fs::write(
        &block,
        format!("{base_block}198.18.0.0/15\n203.0.113.999\n"),
    )
    .expect("edit");
    let line = agent
        .wait_for("block.list:6", Duration::from_secs(10))
        .expect("the bad line is reported");
    assert!(
        line.contains("203.0.113.999") || line.to_lowercase().contains("address"),
        "{line}"
    );
    agent
        .wait_for("not applied", Duration::from_secs(5))
        .expect("and the file is not applied");
    assert!(
        !connect(&lab, BLOCKED_IP, PORT),
        "enforcement unchanged: still blocked"
    );
    assert!(
        connect(&lab, OK_IP, PORT),
        "enforcement unchanged: still reachable"
    );

    // An open flow to a newly blocked destination stops at its next packet.
    let client = lab.client.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let open = std::thread::spawn(move || {
        run_in(&client, move || {
            let mut s = TcpStream::connect((LATER_BLOCKED_IP, PORT))?;
            s.write_all(b"before")?;
            let _ = ready_tx.send(());
            let _ = rx.recv();
            let _ = s.write_all(b"after the block");
            Ok(())
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("connected");
    wait_until(
        Duration::from_secs(5),
        "the server gets the first write",
        || later.load(Ordering::SeqCst) == 6,
    );
    std::fs::write(&block, format!("{base_block}{LATER_BLOCKED_IP}\n")).expect("edit");
    agent
        .wait_for("applied", Duration::from_secs(10))
        .expect("the edit applies");
    let _ = tx.send(());
    let _ = open.join();
    // The write after the block reached the program, and its rule dropped it there.
    let new_rule = format!("{}:5", block.display());
    wait_until(
        Duration::from_secs(10),
        "the new rule drops the open flow's next packet",
        || rule_hits(&agent.status().unwrap_or_default(), &new_rule) >= 1,
    );
    assert_eq!(
        later.load(Ordering::SeqCst),
        6,
        "nothing after the block reached the server"
    );

    // `status` shows the hits per rule and per list file.
    let status = fresh_status(&agent);
    let rule = format!("{}:1", block.display());
    let hits = rule_hits(&status, &rule);
    assert!(hits >= 1, "the blocked address's rule was hit: {status}");
    let list = status["lists"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|l| l["path"] == block.to_str().expect("utf8"))
        })
        .unwrap_or_else(|| panic!("status lists block.list: {status}"));
    assert!(list["hits"].as_u64().unwrap_or(0) >= hits);
    assert!(
        status["counters"]["dropped_by_list"].as_u64().unwrap_or(0) >= 1,
        "{status}"
    );
    // And the health of what is written: the drop records reached the store.
    let written = status["flows"]["records"].as_u64().unwrap_or(0);
    let accepted = status["store"]["accepted"].as_u64().unwrap_or(0);
    assert!(
        written >= 1 && accepted == written && status["store"]["degraded"] == false,
        "{status}"
    );

    assert_eq!(agent.stop().expect("stop"), 0);
    let records = agent.records().expect("records");
    let drop_record = records
        .iter()
        .find(|r| r["end_reason"] == "drop" && r["dst_ip"] == BLOCKED_IP)
        .unwrap_or_else(|| panic!("a drop record for {BLOCKED_IP}: {records:?}"));
    assert_eq!(
        drop_record["rule"],
        format!("{}:1", block.display()),
        "names the file and line"
    );
    // The blocked DNS query's records name the query it was (copied before the drop), as
    // the allowed one's do.
    let dns_records = |dropped: bool| -> Vec<&serde_json::Value> {
        records
            .iter()
            .filter(|r| {
                r["dst_ip"] == OK_IP
                    && r["dst_port"] == 53
                    && (r["dropped"].as_u64().unwrap_or(0) > 0) == dropped
            })
            .collect()
    };
    let blocked = dns_records(true);
    assert!(
        !blocked.is_empty(),
        "the blocked query's flow is recorded with its drop: {records:?}"
    );
    for r in &blocked {
        assert_eq!(
            r["dns_qname"], "www.blocked.example",
            "a blocked query's record names it: {r}"
        );
    }
    assert!(
        dns_records(false)
            .iter()
            .any(|r| r["dns_qname"] == "www.allowed.example"),
        "the allowed query's record names it: {records:?}"
    );
    // The transfer's records: all of it passed, nothing dropped, every byte seen.
    let transfer: Vec<_> = records
        .iter()
        .filter(|r| r["src_port"] == sport && r["dst_port"] == TRANSFER_PORT)
        .collect();
    assert!(
        !transfer.is_empty(),
        "the transfer is recorded: {records:?}"
    );
    for r in &transfer {
        assert_eq!(r["dropped"], 0, "no packet of the transfer dropped: {r}");
        assert_eq!(r["verdict"], "pass", "{r}");
    }
    let bytes: u64 = transfer.iter().filter_map(|r| r["bytes"].as_u64()).sum();
    assert!(
        bytes > sent,
        "the program saw the whole transfer ({sent} bytes of payload) in its frames: {bytes}"
    );
}
