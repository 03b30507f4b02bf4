//! A crash of the agent (SIGKILL) in the middle of its work: the kernel detaches the program
//! with the agent's link, a restart on the same store attaches again and seals what the
//! crashed run left, every record fsynced before the crash is found, and the store verifies.
//! Needs root.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, Lab};
use xdp_audit_lab::netns::run_in;

const PORT: u16 = 7070;

fn exchange(lab: &Lab, sport: u16) {
    run_in(&lab.client, move || {
        let s = UdpSocket::bind((lab::CLIENT_V4, sport))?;
        s.send_to(b"ping", (lab::SERVER_V4, PORT))?;
        Ok(())
    })
    .expect("client send");
}

fn has_xdp(lab: &Lab) -> bool {
    let out = Command::new("ip")
        .args(["-n", &lab.gateway, "link", "show", lab::GW_LAN_IF])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

#[test]
fn a_crashed_agent_restarts_on_its_store_and_loses_nothing_it_synced() {
    let lab = Lab::new("crash").expect("build the netns lab");
    let dir = std::env::temp_dir().join(format!("xdp-audit-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = dir.join("log");
    let bin = binary().expect("agent binary");
    let fast = [
        "--iface",
        lab::GW_LAN_IF,
        "--inactive-timeout",
        "1s",
        "--sweep-interval",
        "200ms",
        "--fsync-interval",
        "200ms",
    ];

    let mut first = Agent::start(&lab, &lab.gateway, &bin, &log, &fast).expect("first agent");
    assert!(has_xdp(&lab), "attached");
    for sport in 41000..41010 {
        exchange(&lab, sport);
    }
    // Idle timeout (1 s) + a sweep + an fsync interval: the ten flows are on disk.
    std::thread::sleep(Duration::from_secs(3));
    first.crash().expect("crash the agent");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !has_xdp(&lab),
        "the kernel detached the program with the dead agent's link"
    );

    let mut second =
        Agent::start(&lab, &lab.gateway, &bin, &log, &fast).expect("restart on the same store");
    for sport in 42000..42005 {
        exchange(&lab, sport);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(second.stop().expect("stop"), 0);

    let verify = Command::new(&bin)
        .args(["verify", "--log-dir"])
        .arg(&log)
        .output()
        .expect("verify");
    assert!(
        verify.status.success(),
        "the store verifies after a crash: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let records = second.records().expect("query");
    for sport in (41000..41010).chain(42000..42005) {
        let n = records
            .iter()
            .filter(|r| r["proto"] == "udp" && r["src_port"] == sport && r["dst_port"] == PORT)
            .count();
        assert_eq!(
            n, 1,
            "the flow from port {sport} is recorded exactly once: {records:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
