//! Fast refusal end to end in the netns lab: with a refusing blocklist, `dig` for a blocked
//! name gets NXDOMAIN and `curl` to a blocked address fails with "connection refused" (exit
//! 7, not the timeout's 28): answers, not timeouts; a capture in the client namespace shows the answers well formed (tshark
//! checks every checksum); the store's drop records say `refused`. Without refusal the same
//! query times out. Needs root, `dig`, `curl`, `tcpdump` and `tshark`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, require, sh, Lab};
use xdp_audit_lab::wait::wait_until;

/// The resolver the client asks (the query never reaches it) and a blocked web server.
const RESOLVER: &str = "203.0.113.2";
const BLOCKED_IP: &str = "203.0.113.3";
const BLOCKED_NAME: &str = "blocked.example";

/// `tcpdump -w` in a namespace, stopped (SIGINT, so the file is complete) on drop.
struct Capture(Child);

impl Capture {
    fn start(lab: &Lab, ns: &str, file: &Path) -> Self {
        let mut child = lab
            .cmd(ns, "tcpdump")
            .args(["-i", "eth0", "-U", "-n", "-w"])
            .arg(file)
            .args(["udp port 53 or tcp port 80"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcpdump in the client namespace");
        let stderr = child.stderr.take().expect("tcpdump stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let capture = Capture(child);
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains("listening on") => break,
                Ok(_) => {}
                Err(e) => panic!("tcpdump did not start listening: {e}"),
            }
        }
        capture
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child (`ip netns exec` execs tcpdump in place).
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
    }
}

/// `dig` from the client: (status word, wall-clock time, output).
fn dig(lab: &Lab) -> (String, Duration, String) {
    let started = Instant::now();
    let out = lab
        .cmd(&lab.client, "dig")
        .args([
            &format!("@{RESOLVER}"),
            BLOCKED_NAME,
            "A",
            "+time=1",
            "+tries=1",
        ])
        .output()
        .expect("run dig");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("none")
        .to_owned();
    (status, took, text)
}

/// Frames of the capture `tshark` selects with `filter`, checksums checked.
fn tshark(file: &Path, filter: &str) -> Vec<String> {
    let out = sh(Command::new("tshark").arg("-r").arg(file).args([
        "-n",
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-Y",
        filter,
    ]))
    .expect("tshark reads the capture");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn refused_queries_and_connections_fail_at_once_with_well_formed_answers() {
    for (program, package) in [
        ("dig", "bind9-dnsutils"),
        ("curl", "curl"),
        ("tcpdump", "tcpdump"),
        ("tshark", "tshark"),
    ] {
        require(program, package).expect("the test's tools");
    }
    let lab = Lab::new("ref").expect("build the netns lab");
    lab.add_internet_address(BLOCKED_IP)
        .expect("add the blocked server's address");
    let tmp = lab.temp_dir("refuse").expect("temp dir");
    let dir = tmp.path();
    let block = dir.join("block.list");
    std::fs::write(&block, format!("{BLOCKED_IP}\n{BLOCKED_NAME}\n")).expect("write the list");
    let bin = binary().expect("agent binary");
    // A frame sent back with XDP_TX by a native XDP program on a veth waits in the peer's
    // ring until the peer's NAPI runs, and XDP_TX wakes that NAPI only when the peer has an
    // XDP program of its own (GRO on the peer makes the ring exist, not the wake-up: checked
    // on this kernel, the answers then sat there until the next packet). A NIC with native
    // XDP sends them itself. So the client's veth gets a program: another agent's.
    let _client_side = Agent::start(
        &lab,
        &lab.client.clone(),
        &bin,
        &dir.join("log-client"),
        &["--iface", "eth0", "--no-pin"],
    )
    .expect("an XDP program on the client's veth");
    let run = |log: &str, list: String| {
        Agent::start(
            &lab,
            &lab.gateway.clone(),
            &bin,
            &dir.join(log),
            &[
                "--iface",
                lab::GW_LAN_IF,
                "--no-pin",
                "--sweep-interval",
                "200ms",
                "--blocklist",
                &list,
            ],
        )
        .expect("start the agent")
    };

    // Without refusal, the query is dropped: dig waits out its second.
    let mut agent = run("log-drop", block.display().to_string());
    let (status, took, text) = dig(&lab);
    assert_eq!(status, "none", "no answer without refusal: {text}");
    assert!(took >= Duration::from_secs(1), "dig timed out: {took:?}");
    agent.stop().expect("stop the agent");

    // With the list refusing, both are answered: NXDOMAIN where the query had none, and
    // curl's "refused" (exit 7) where a connect that is dropped times out (exit 28).
    let capture_file = dir.join("client.pcap");
    let capture = Capture::start(&lab, &lab.client, &capture_file);
    let agent = run("log-refuse", format!("{}:refuse", block.display()));
    let (status, _, text) = dig(&lab);
    assert_eq!(status, "NXDOMAIN", "{text}");
    let curl = lab
        .cmd(&lab.client, "curl")
        .args([
            "-sS",
            "--connect-timeout",
            "1",
            "-o",
            "/dev/null",
            &format!("http://{BLOCKED_IP}/"),
        ])
        .output()
        .expect("run curl");
    let stderr = String::from_utf8_lossy(&curl.stderr).into_owned();
    assert_eq!(
        curl.status.code(),
        Some(7),
        "curl refused, not timed out (28): {stderr}"
    );
    assert!(
        stderr.contains("Connection refused") || stderr.contains("Couldn't connect to server"),
        "{stderr}"
    );

    // The answers as the client's interface received them.
    let answers = |filter: &str| tshark(&capture_file, filter).len();
    let nxdomain = "dns.flags.response == 1 && dns.flags.rcode == 3 && dns.count.add_rr == 0 \
                    && udp.checksum.status == 1 && ip.checksum.status == 1";
    let rst = "tcp.flags.reset == 1 && tcp.flags.ack == 1 && tcp.checksum.status == 1 \
               && ip.checksum.status == 1";
    wait_until(
        Duration::from_secs(5),
        "the capture holds both answers",
        || answers(nxdomain) >= 1 && answers(rst) >= 1,
    );
    drop(capture);
    let bad = tshark(
        &capture_file,
        &format!(
            "ip.dst == {} && (ip.checksum.status == 0 || udp.checksum.status == 0 \
             || tcp.checksum.status == 0 || _ws.malformed)",
            lab::CLIENT_V4
        ),
    );
    assert!(bad.is_empty(), "bad checksums or malformed frames: {bad:?}");
    // (What the client sent carries checksums its veth leaves to an offload.)
    let all = tshark(&capture_file, &format!("ip.dst == {}", lab::CLIENT_V4)).join("\n");
    assert!(
        !all.to_lowercase().contains("bad checksum"),
        "tshark flags a checksum: {all}"
    );

    // The store says what the client saw.
    let mut records = Vec::new();
    wait_until(
        Duration::from_secs(10),
        "both refusals are in the store",
        || {
            records = agent.records().unwrap_or_default();
            let refused = |port: u64| {
                records
                    .iter()
                    .any(|r| r["end_reason"] == "refused" && r["dst_port"] == port)
            };
            refused(53) && refused(80)
        },
    );
    let status = agent.status().expect("status");
    for counter in ["refused_dns", "refused_tcp"] {
        assert!(
            status["counters"][counter].as_u64().unwrap_or(0) >= 1,
            "{counter} in status: {}",
            status["counters"]
        );
    }
}
