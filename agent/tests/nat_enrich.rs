//! NAT mappings from conntrack on the masquerading lab of `nat.rs`: a burst larger than the
//! listener's socket buffer is counted and recovered by a dump, and the enrich stage, wired as
//! `run` wires it, joins flow records to their sessions and writes the sessions no record
//! joined. Needs root, `nft` and `conntrack` (Debian packages nftables, conntrack).

mod nat_common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nat_common::{
    conntrack_list, in_ns_bg, listen, nat_lab, unix_now, v4, Shared, CLIENT2_V4, UDP, UDP_PORT,
};
use xdp_audit::enrich::nat::{InsideKey, Learned, ListenerConfig};
use xdp_audit_lab::lab::{self, sh};
use xdp_audit_lab::netns::run_in;

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
            "match,account\n{},alice\n{CLIENT2_V4},bob\n02:00:00:00:00:09,alice-laptop\n",
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
    // Its replies as the outside interface saw them (the gateway receives them there): the
    // server to the outside tuple. They are the first client's download: the user its flow's
    // frames named (the device's MAC row, over the address's) and the outside tuple (they had
    // neither, so a lawful answer counted the upload alone).
    let one = seen(b'1');
    let gw = v4(lab::GW_WAN_V4);
    let reply = FlowRecord {
        iface: "wan0".into(),
        ifindex: 3,
        src_ip: v4(lab::SERVER_V4),
        src_port: UDP_PORT,
        dst_ip: gw,
        dst_port: one.port(),
        packets: 1,
        bytes: 60,
        resp_packets: 0,
        resp_bytes: 0,
        ..flow.clone()
    };
    stage.write(&reply).expect("write the reply record");

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
    assert_eq!(
        got.len(),
        3,
        "the flow record, its replies' and one NAT record: {got:#?}"
    );
    let (joined, replied, nat_rec) = (&got[0], &got[1], &got[2]);
    for r in [joined, replied] {
        assert_eq!(r.attr.user.as_deref(), Some("alice-laptop"), "{r:#?}");
        assert_eq!(
            (r.attr.nat_ip, r.attr.nat_port),
            (Some(gw), Some(one.port())),
            "the outside tuple is the server's peer {one}: {r:#?}"
        );
    }
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
