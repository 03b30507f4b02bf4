//! The syslog sink against a real rsyslog on loopback: drop records arrive once each, parsed by
//! rsyslog as RFC 5424 with their structured data equal to what `query` reads from the store;
//! TLS with the CA file delivers and a wrong CA is refused and reported; an rsyslog restart
//! in the middle of a stream loses nothing that `status` does not count.

mod cli_common;
mod store_common;

use std::collections::BTreeMap;
use std::time::Duration;

use cli_common::{Netns, Reaped};
use store_common::{query_jsonl, TempDir, T0};
use xdp_audit::record::FlowRecord;
use xdp_audit::sink::RecordSink;
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::{FakeClock, Store, StoreConfig};
use xdp_audit::syslog::{Message, Severity, Syslog, SyslogConfig, SyslogStage, Target};
use xdp_audit_lab::rsyslog::{free_port, record_params, sd_params, Certs, Rsyslog};
use xdp_audit_lab::wait::{poll_until, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn config(url: &str) -> SyslogConfig {
    let mut c = SyslogConfig::new(Target::parse(url).unwrap_or_else(|e| panic!("{url}: {e}")));
    c.hostname = "gw-test".into();
    c.backoff.initial = Duration::from_millis(50);
    c.backoff.max = Duration::from_millis(500);
    c.close_timeout = Duration::from_secs(20);
    c
}

#[test]
fn drop_records_arrive_once_with_the_structured_data_query_reads() {
    let tmp = TempDir::new("syslog-tcp");
    let port = free_port().expect("free port");
    let rsyslog = Rsyslog::start(tmp.path(), port, None, None).expect("start rsyslog");
    let log_dir = tmp.path().join("log");
    let clock = FakeClock::new(T0);
    let store = Store::open_with_clock(StoreConfig::new(&log_dir), Box::new(clock.clone()))
        .expect("open the store");
    let mut stage = SyslogStage::start(store, config(&format!("tcp://127.0.0.1:{port}")))
        .expect("start the syslog stage");
    let mut gen = TrafficGen::with_rate(12, T0, 200.0);
    let mut records: Vec<FlowRecord> = Vec::new();
    for _ in 0..4_000 {
        let r = gen.next_record();
        clock.set(r.time_start_ns);
        stage.write(&r).expect("write a record");
        records.push(r);
    }
    let status = stage
        .syslog_status()
        .expect("the stage has a syslog status");
    stage.close().expect("close the stage");
    let drops = records.iter().filter(|r| r.dropped > 0).count();
    assert!(drops >= 50, "the generator made only {drops} drop records");
    assert_eq!(status.dropped, 0, "nothing may be dropped: {status:?}");

    let got = rsyslog
        .wait_for(drops, WAIT)
        .expect("every drop record arrives");
    assert_eq!(
        got.len(),
        drops,
        "each drop record arrives once, pass records never"
    );
    let host = "gw-test";
    let mut received: Vec<BTreeMap<String, String>> = got
        .iter()
        .map(|m| {
            assert_eq!(
                (m["app"].as_str(), m["msgid"].as_str(), m["host"].as_str()),
                (Some("xdp-audit"), Some("flow"), Some(host)),
                "RFC 5424 header fields as rsyslog parsed them: {m}"
            );
            assert_eq!(m["pri"], "109", "facility log audit, severity notice: {m}");
            sd_params(m, "flow@32473")
        })
        .collect();
    let mut expected: Vec<BTreeMap<String, String>> = query_jsonl(&log_dir, &[])
        .iter()
        .filter(|r| r["verdict"] == "drop")
        .map(record_params)
        .collect();
    assert_eq!(expected.len(), drops, "query finds every drop record");
    received.sort();
    expected.sort();
    for (r, e) in received.iter().zip(&expected) {
        assert_eq!(r, e, "structured data equals the stored record");
    }
}

/// `n` alert-like messages with an id parameter.
fn message(i: u64) -> Message {
    Message {
        severity: Severity::Warning,
        msg_id: "alert",
        sd: vec![
            ("id".into(), i.to_string()),
            ("rule".into(), "/etc/x]\"y\\.list:7".into()),
        ],
        text: format!("test alert {i}"),
    }
}

fn ids(messages: &[serde_json::Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| {
            sd_params(m, "alert@32473")["id"]
                .parse()
                .unwrap_or_else(|e| panic!("id of {m}: {e}"))
        })
        .collect()
}

#[test]
fn tls_with_the_ca_file_delivers_and_a_wrong_ca_is_refused() {
    let tmp = TempDir::new("syslog-tls");
    let certs = Certs::make(tmp.path()).expect("make certificates");
    let port = free_port().expect("free port");
    let rsyslog = Rsyslog::start(tmp.path(), port, Some(&certs), None).expect("start rsyslog");

    let mut good = config(&format!("tls://localhost:{port}"));
    good.ca_file = Some(certs.ca.clone());
    let mut syslog = Syslog::start(good).expect("start the TLS sink");
    let handle = syslog.handle();
    for i in 0..50 {
        assert!(handle.try_send(message(i)), "queue has room");
    }
    let got = rsyslog.wait_for(50, WAIT).expect("messages over TLS");
    let mut got_ids = ids(&got);
    got_ids.sort_unstable();
    assert_eq!(got_ids, (0..50).collect::<Vec<_>>());
    assert_eq!(
        sd_params(&got[0], "alert@32473")["rule"],
        "/etc/x]\"y\\.list:7",
        "escaped characters come back intact"
    );
    assert!(handle.status().connected, "{:?}", handle.status());
    syslog.close();

    let mut wrong = config(&format!("tls://localhost:{port}"));
    wrong.ca_file = Some(certs.wrong_ca.clone());
    wrong.close_timeout = Duration::from_millis(300);
    let mut refused = Syslog::start(wrong).expect("start the sink with the wrong CA");
    let h = refused.handle();
    assert!(h.try_send(message(99)));
    wait_until(
        WAIT,
        "the wrong CA's handshake fails and is counted",
        || h.status().connect_failures >= 2,
    );
    let st = h.status();
    assert!(!st.connected, "{st:?}");
    let err = st.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("TLS handshake refused") && err.contains("certificate"),
        "the error says the server's certificate was refused: {err}"
    );
    refused.close();
    assert_eq!(
        h.status().unsent_at_exit,
        1,
        "the undelivered message is counted"
    );
    assert_eq!(
        rsyslog.messages().expect("read").len(),
        50,
        "nothing arrived over the refused connection"
    );

    // No CA file for a TLS server is refused at start, naming the flag.
    let e = Syslog::start(config(&format!("tls://localhost:{port}")))
        .err()
        .expect("TLS without a CA file is refused")
        .to_string();
    assert!(e.contains("--syslog-ca"), "{e}");
}

#[test]
fn an_rsyslog_restart_loses_nothing_status_does_not_count() {
    const N: u64 = 30_000;
    let tmp = TempDir::new("syslog-restart");
    let port = free_port().expect("free port");
    let mut rsyslog = Rsyslog::start(tmp.path(), port, None, None).expect("start rsyslog");
    let c = config(&format!("tcp://127.0.0.1:{port}"));
    let mut syslog = Syslog::start(c).expect("start the sink");
    let handle = syslog.handle();
    // A steady stream: a chunk, then wait for the queue to empty, so the restart lands while
    // messages flow rather than after a burst was all sent.
    let sender = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            for chunk in 0..N / 100 {
                for i in chunk * 100..(chunk + 1) * 100 {
                    handle.try_send(message(i));
                }
                wait_until(WAIT, "the sender takes the chunk", || {
                    handle.status().queued == 0
                });
            }
        })
    };
    wait_until(WAIT, "a third of the stream is sent", || {
        handle.status().sent >= N / 3
    });
    rsyslog.restart().expect("restart rsyslog");
    sender.join().expect("sender thread");
    syslog.close();
    let st = handle.status();
    assert!(st.reconnects >= 1, "the restart was noticed: {st:?}");
    let lost = st.dropped + st.unsent_at_exit;
    let got = rsyslog
        .wait_for((N - lost) as usize, WAIT)
        .expect("everything not counted as lost arrives");
    let mut seen = vec![0u32; N as usize];
    for id in ids(&got) {
        seen[id as usize] += 1;
    }
    let missing = seen.iter().filter(|&&n| n == 0).count() as u64;
    let duplicates: u64 = seen.iter().map(|&n| u64::from(n.saturating_sub(1))).sum();
    assert!(
        missing <= lost,
        "{missing} messages missing, {lost} counted as lost: {st:?}"
    );
    assert!(
        duplicates <= st.resent,
        "{duplicates} duplicates, {} counted as resent: {st:?}",
        st.resent
    );
    eprintln!("restart: {missing} missing, {duplicates} duplicates, status {st:?}");
}

#[test]
fn run_refuses_an_unreadable_ca_file_before_attaching() {
    let tmp = TempDir::new("syslog-cli");
    let ca = tmp.path().join("missing-ca.pem");
    let stderr_file = tmp.path().join("stderr");
    // In a namespace of its own: a missing check attaches nothing to the host's lo.
    let ns = Netns::new("syslog-ca");
    let mut child = Reaped(
        ns.agent(&tmp.path().join("log"))
            .args(["--no-pin", "--syslog", "tls://localhost:6514"])
            .arg("--syslog-ca")
            .arg(&ca)
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .stderr(std::fs::File::create(&stderr_file).expect("stderr file"))
            .spawn()
            .expect("spawn xdp-audit run"),
    );
    let mut status = None;
    wait_until(WAIT, "xdp-audit run exits", || {
        status = child.0.try_wait().expect("try_wait");
        status.is_some()
    });
    let stderr = std::fs::read_to_string(&stderr_file).expect("read stderr");
    assert!(status.is_some_and(|s| !s.success()), "refused: {stderr}");
    assert!(
        stderr.contains(&format!("--syslog-ca {}: cannot read", ca.display())),
        "the error names the flag and the file: {stderr}"
    );
    assert!(
        !stderr.contains("attached"),
        "nothing was attached: {stderr}"
    );
    assert!(!ns.has_xdp(), "nothing was attached: {stderr}");
}

/// A server that accepts and closes at once (a plain TCP URL at a TLS port, a server at its
/// session limit): the sender backs off between attempts as when the connect is refused. It
/// reconnected after each failed batch at the first backoff step, never doubling it: a
/// connection that opens counted as the outage's end.
#[test]
fn a_server_that_accepts_and_closes_is_retried_with_backoff() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                drop(conn);
            }
        });
    }
    // Backoff 50 ms doubling to 500 ms (each wait jittered over its upper half): at most
    // about 10 attempts in 2 s; without the doubling, 40 at 50 ms.
    let mut c = config(&format!("tcp://127.0.0.1:{port}"));
    c.close_timeout = Duration::from_millis(100);
    let mut syslog = Syslog::start(c).expect("start the sink");
    let handle = syslog.handle();
    let mut i = 0;
    wait_until(WAIT, "a first failed write", || {
        i += 1;
        handle.try_send(message(i));
        handle.status().last_error.is_some()
    });
    let before = accepted.load(std::sync::atomic::Ordering::Relaxed);
    // Messages keep coming for 2 s, the span the attempts are counted over.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        i += 1;
        handle.try_send(message(i));
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = accepted.load(std::sync::atomic::Ordering::Relaxed) - before;
    syslog.close();
    assert!(
        (1..=12).contains(&during),
        "{during} connections in 2 s (backoff 50 ms to 500 ms): {:?}",
        handle.status()
    );
}

/// A server that takes a few bytes now and then keeps a write going: the stop still ends
/// within its timeout and a second, counting what it did not send (it waited for the write,
/// for as long as the server trickled).
#[test]
fn a_server_that_reads_a_trickle_does_not_hold_the_stop() {
    use std::io::Read as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = listener.accept() {
            let mut byte = [0u8; 1];
            while c.read(&mut byte).is_ok_and(|n| n == 1) {
                std::thread::sleep(Duration::from_millis(100)); // the server's pace
            }
        }
    });
    let mut c = config(&format!("tcp://127.0.0.1:{port}"));
    c.close_timeout = Duration::from_secs(1);
    let mut syslog = Syslog::start(c).expect("start the sink");
    let handle = syslog.handle();
    // Chunks until the sender stops draining the queue: the socket buffers are full and a
    // write is under way.
    let mut i = 0;
    let blocked = loop {
        for _ in 0..1_000 {
            handle.try_send(message(i));
            i += 1;
        }
        let drained = poll_until(Duration::from_millis(500), "the queue drains", || {
            Ok(handle.status().queued == 0)
        });
        if drained.is_err() {
            break true;
        }
        if i > 1_000_000 {
            break false;
        }
    };
    assert!(
        blocked,
        "the server's socket never filled: {:?}",
        handle.status()
    );
    let (done, closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        syslog.close();
        let _ = done.send(());
    });
    // A hang guard, ten times the close timeout: a stop that waits for the trickling write
    // takes as long as the server's pace drains the socket buffers, far longer.
    let bound = Duration::from_secs(10);
    closed.recv_timeout(bound).unwrap_or_else(|_| {
        panic!("the stop did not end within {bound:?} (close timeout 1 s): it waited for the write")
    });
    let st = handle.status();
    assert!(
        st.unsent_at_exit > 0,
        "what was not sent is counted: {st:?}"
    );
}

/// While the server is down, the queue holds up to its limit in messages however they were
/// handed over: one message at a time (alerts, a record a tick) once filled a bounded channel
/// of batch slots after some 500 hand-overs and every later message was dropped.
#[test]
fn a_queue_of_single_messages_holds_its_limit_while_the_server_is_down() {
    // A port nothing listens on: every connection attempt is refused.
    let port = free_port().expect("a free port");
    let mut c = config(&format!("tcp://127.0.0.1:{port}"));
    c.close_timeout = Duration::from_millis(100);
    c.queue = 4_096;
    let mut syslog = Syslog::start(c).expect("start the sink");
    let handle = syslog.handle();
    let refused = (0..3_000).filter(|&i| !handle.try_send(message(i))).count();
    let st = handle.status();
    syslog.close();
    assert_eq!(refused, 0, "3,000 messages under a limit of 4,096: {st:?}");
    assert_eq!(st.dropped, 0, "{st:?}");
    // The limit still holds: past it, messages are refused and counted.
    let mut c = config(&format!("tcp://127.0.0.1:{port}"));
    c.close_timeout = Duration::from_millis(100);
    c.queue = 100;
    let mut syslog = Syslog::start(c).expect("start the sink");
    let handle = syslog.handle();
    let accepted = (0..300).filter(|&i| handle.try_send(message(i))).count();
    let st = handle.status();
    syslog.close();
    // The sender may hold one batch of its own beside the queue's 100.
    assert!(
        (100..=200).contains(&accepted),
        "{accepted} accepted: {st:?}"
    );
    assert_eq!(st.dropped, 300 - accepted as u64, "{st:?}");
}

/// A syslog receiver sends nothing; one that floods the connection is given up (and retried
/// with backoff), not read for ever on the sender's core while the queue fills.
#[test]
fn a_server_that_floods_the_connection_is_given_up() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                // Reads what the sender writes, and writes zeros as fast as it can.
                if let Ok(mut reader) = conn.try_clone() {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        while reader.read(&mut buf).is_ok_and(|n| n > 0) {}
                    });
                }
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let zeros = [0u8; 65_536];
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && conn.write_all(&zeros).is_ok()
                    {}
                });
            }
        });
    }
    let mut c = config(&format!("tcp://127.0.0.1:{port}"));
    c.close_timeout = Duration::from_millis(100);
    let mut syslog = Syslog::start(c).expect("start the sink");
    let handle = syslog.handle();
    let mut i = 0;
    wait_until(WAIT, "the flooding server given up", || {
        i += 1;
        handle.try_send(message(i));
        handle
            .status()
            .last_error
            .is_some_and(|e| e.contains("keeps sending"))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Wakes the accept loop so it sees the stop.
    let _ = std::net::TcpStream::connect(("127.0.0.1", port));
    syslog.close();
}
