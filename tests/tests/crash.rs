//! A crash of the agent (SIGKILL) in the middle of its work: the kernel detaches the program
//! with the agent's link, a restart on the same store attaches again and seals what the
//! crashed run left, every record written before the crash is found, and the store verifies.
//! An agent killed while starting, before its first sweep, is reported by the next one, and
//! so is the live journal a crash left and someone deleted before the next start.
//! Needs root.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::wait::wait_until;

const PORT: u16 = 7070;

/// An unpinned agent on the lab's LAN side that writes and syncs within a second.
const FAST: [&str; 9] = [
    "--no-pin",
    "--iface",
    lab::GW_LAN_IF,
    "--inactive-timeout",
    "1s",
    "--sweep-interval",
    "200ms",
    "--fsync-interval",
    "200ms",
];

/// The first notice in the store's `alerts.jsonl` raising `id`.
fn raised(log: &std::path::Path, id: &str) -> Option<serde_json::Value> {
    std::fs::read_to_string(log.join("alerts.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["id"] == id && v["state"] == "raised")
}

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

/// Whether the store holds a UDP record from each of `sports` to the server.
fn stored(agent: &Agent, sports: std::ops::Range<u16>) -> bool {
    let records = agent.records().unwrap_or_default();
    sports.into_iter().all(|sport| {
        records
            .iter()
            .any(|r| r["proto"] == "udp" && r["src_port"] == sport && r["dst_port"] == PORT)
    })
}

/// The running agent's status snapshot (null until its first sweep has written one).
fn snapshot(agent: &Agent) -> serde_json::Value {
    agent.status().unwrap_or_default()
}

#[test]
fn a_crashed_agent_restarts_on_its_store_and_loses_nothing_it_synced() {
    let lab = Lab::new("crash").expect("build the netns lab");
    let dir = lab.temp_dir("crash").expect("temp dir");
    let log = dir.path().join("log");
    let bin = binary().expect("agent binary");
    // Unpinned: the program goes with the agent (a pinned one stays; see restart.rs).
    let fast = FAST;

    let mut first = Agent::start(&lab, &lab.gateway, &bin, &log, &fast).expect("first agent");
    assert!(has_xdp(&lab), "attached");
    for sport in 41000..41010 {
        exchange(&lab, sport);
    }
    // The ten flows idle out (1 s), are written, and everything accepted is fsynced.
    wait_until(
        Duration::from_secs(20),
        "the first agent has written the ten flows and synced what it accepted",
        || {
            stored(&first, 41000..41010) && {
                let s = snapshot(&first);
                let accepted = s["store"]["accepted"].as_u64().unwrap_or(0);
                accepted >= 10 && s["store"]["durable"].as_u64() == Some(accepted)
            }
        },
    );
    first.crash().expect("crash the agent");
    wait_until(
        Duration::from_secs(10),
        "the kernel detaches the program with the dead agent's link",
        || !has_xdp(&lab),
    );

    let mut second =
        Agent::start(&lab, &lab.gateway, &bin, &log, &fast).expect("restart on the same store");
    for sport in 42000..42005 {
        exchange(&lab, sport);
    }
    // Stopping writes every open flow; the program must have seen the five first.
    wait_until(
        Duration::from_secs(10),
        "the restarted agent's program has parsed the five datagrams",
        || snapshot(&second)["counters"]["parsed_udp"].as_u64() >= Some(5),
    );
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
}

/// The status snapshot in the agent's state directory, as the file holds it.
fn snapshot_file(log: &std::path::Path) -> serde_json::Value {
    std::fs::read(log.join("state").join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[test]
fn an_agent_killed_before_its_first_sweep_is_reported_by_the_next() {
    let lab = Lab::new("crashstart").expect("build the netns lab");
    let dir = lab.temp_dir("crashstart").expect("temp dir");
    let log = dir.path().join("log");
    let bin = binary().expect("agent binary");
    let args = |sweep: &'static str| {
        [
            "--no-pin",
            "--iface",
            lab::GW_LAN_IF,
            "--sweep-interval",
            sweep,
            "--alert-verify-interval",
            "0",
        ]
    };
    // A runs and stops cleanly: its snapshot is marked stopped.
    let mut a = Agent::start(&lab, &lab.gateway, &bin, &log, &args("200ms")).expect("agent A");
    wait_until(Duration::from_secs(10), "A's first sweep", || {
        snapshot(&a)["agent"]["state"] == "running"
    });
    assert_eq!(a.stop().expect("stop A"), 0);
    assert!(snapshot_file(&log)["stopped_at"].is_string());
    // B attaches but its first sweep is an hour away: killed while its snapshot is the
    // starting one.
    let mut b = Agent::start(&lab, &lab.gateway, &bin, &log, &args("1h")).expect("agent B");
    let b_pid = b.pid().expect("B runs");
    let s = snapshot_file(&log);
    assert_eq!(
        (s["starting"].as_bool(), s["pid"].as_u64()),
        (Some(true), Some(u64::from(b_pid))),
        "B's starting snapshot replaced A's: {s}"
    );
    b.crash().expect("kill -9 agent B");
    // C finds B's death.
    let mut c = Agent::start(&lab, &lab.gateway, &bin, &log, &args("200ms")).expect("agent C");
    let crashed = || raised(&log, "XA-AGENT-CRASHED");
    wait_until(
        Duration::from_secs(10),
        "XA-AGENT-CRASHED in alerts.jsonl",
        || crashed().is_some(),
    );
    let text = crashed()
        .and_then(|v| v["text"].as_str().map(str::to_owned))
        .unwrap_or_default();
    assert!(
        text.contains(&format!("agent pid {b_pid} ended while starting")),
        "{text}"
    );
    assert_eq!(c.stop().expect("stop C"), 0);
}

/// A live journal deleted while no agent runs (after a crash) takes its records with it;
/// the next start finds it neither on disk nor sealed and raises `XA-STORE-DAMAGED` naming
/// it (before, only a journal deleted under a running agent was named).
#[test]
fn a_live_journal_deleted_while_no_agent_ran_is_named_by_the_next_start() {
    journal_damaged_while_no_agent_ran("jgone", "deleted while no agent ran", |j| {
        std::fs::remove_file(j).expect("delete the journal");
    });
}

/// A live journal cut at a frame's end while no agent runs looks whole to every frame
/// check; the next start compares it with the records the dead agent's last snapshot counted
/// durable there and raises `XA-STORE-DAMAGED` naming it and the loss (before, the records
/// were lost without a word).
#[test]
fn a_live_journal_cut_short_while_no_agent_ran_is_named_by_the_next_start() {
    journal_damaged_while_no_agent_ran("jshort", "cut short while no agent ran", |j| {
        // Its header alone: a cut at the first frame's start.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(j)
            .expect("open the journal");
        f.set_len(16).expect("cut the journal after its header");
    });
}

/// Crashes an agent holding five durable records in its live journal, applies `damage` to
/// each journal it left, and waits for the next start's `XA-STORE-DAMAGED` saying `says`.
fn journal_damaged_while_no_agent_ran(name: &str, says: &str, damage: impl Fn(&std::path::Path)) {
    let lab = Lab::new(name).expect("build the netns lab");
    let dir = lab.temp_dir(name).expect("temp dir");
    let log = dir.path().join("log");
    let bin = binary().expect("agent binary");
    let fast = FAST;
    let mut first = Agent::start(&lab, &lab.gateway, &bin, &log, &fast).expect("first agent");
    for sport in 43000..43005 {
        exchange(&lab, sport);
    }
    wait_until(
        Duration::from_secs(20),
        "the first agent's live journal holds the five flows, durable",
        || {
            let s = snapshot(&first);
            stored(&first, 43000..43005)
                && s["store"]["live_journal"]["durable"].as_u64() >= Some(5)
        },
    );
    first.crash().expect("crash the agent");
    let journals: Vec<_> = std::fs::read_dir(&log)
        .expect("read the log dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    assert!(!journals.is_empty(), "the crash left the live journal");
    for j in &journals {
        damage(j);
    }
    let mut second = Agent::start(&lab, &lab.gateway, &bin, &log, &fast).expect("restart");
    let damaged = || raised(&log, "XA-STORE-DAMAGED");
    wait_until(
        Duration::from_secs(10),
        "XA-STORE-DAMAGED in alerts.jsonl",
        || damaged().is_some(),
    );
    let text = damaged()
        .and_then(|v| v["text"].as_str().map(str::to_owned))
        .unwrap_or_default();
    assert!(text.contains(says) && text.contains("journal-"), "{text}");
    assert_eq!(second.stop().expect("stop"), 0);
}
