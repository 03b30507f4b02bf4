//! The agent binary in the netns lab with `--syslog` to a real rsyslog in the gateway's
//! namespace: every drop record the store holds arrives once, with its structured data equal
//! to what `query` prints; pass records stay out (no `--syslog-records`); `status` shows the
//! sink connected. Needs root.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::rsyslog::{record_params, sd_params, Rsyslog};
use xdp_audit_lab::wait::wait_until;

const BLOCKED_PORT: u16 = 7070;
const OPEN_PORT: u16 = 7071;
const SYSLOG_PORT: u16 = 5514;

fn send(lab: &Lab, sport: u16, dport: u16) {
    run_in(&lab.client, move || {
        let s = UdpSocket::bind((lab::CLIENT_V4, sport))?;
        s.send_to(b"ping", (lab::SERVER_V4, dport))?;
        Ok(())
    })
    .expect("client send");
}

#[test]
fn the_agent_sends_each_drop_record_to_rsyslog_once() {
    let lab = Lab::new("slog").expect("build the netns lab");
    let dir = lab.temp_dir("syslog").expect("temp dir");
    let rsyslog = Rsyslog::start(dir.path(), SYSLOG_PORT, None, Some(&lab.gateway))
        .expect("start rsyslog in the gateway namespace");
    let block = dir.path().join("block.list");
    std::fs::write(&block, format!("port udp {BLOCKED_PORT}\n")).expect("write the blocklist");
    let bin = binary().expect("agent binary");
    let syslog = format!("tcp://127.0.0.1:{SYSLOG_PORT}");
    let mut agent = Agent::start(
        &lab,
        &lab.gateway,
        &bin,
        &dir.path().join("log"),
        &[
            "--no-pin",
            "--iface",
            lab::GW_LAN_IF,
            "--blocklist",
            block.to_str().expect("utf8"),
            "--syslog",
            &syslog,
            "--inactive-timeout",
            "1s",
            "--sweep-interval",
            "200ms",
        ],
    )
    .expect("start the agent");
    for sport in 43000..43010 {
        send(&lab, sport, BLOCKED_PORT);
        send(&lab, sport, OPEN_PORT);
    }
    wait_until(
        Duration::from_secs(20),
        "the agent has written ten drop records and sent them to syslog",
        || {
            let s = agent.status().unwrap_or_default();
            s["syslog"]["sent"].as_u64() >= Some(10) && s["syslog"]["connected"] == true
        },
    );
    assert_eq!(agent.stop().expect("stop the agent"), 0);

    let records = agent.records().expect("query the store");
    let mut expected: Vec<_> = records
        .iter()
        .filter(|r| r["verdict"] == "drop")
        .map(record_params)
        .collect();
    assert!(
        expected.len() >= 10 && records.len() >= expected.len() + 10,
        "ten drop flows and ten pass flows stored: {} records, {} drops",
        records.len(),
        expected.len()
    );
    let got = rsyslog
        .wait_for_msgid("flow", expected.len(), Duration::from_secs(20))
        .expect("every drop record arrives");
    // The agent's alerts share the connection (MSGID `alert`): the blocked hits raised one.
    let (flows, alerts): (Vec<_>, Vec<_>) = got.iter().partition(|m| m["msgid"] == "flow");
    for a in &alerts {
        assert_eq!(a["msgid"], "alert", "only flow records and alerts: {a}");
    }
    assert!(
        alerts.iter().any(
            |a| sd_params(a, "alert@32473").get("id").map(String::as_str) == Some("XA-BLOCK-FIRST")
        ),
        "the blocked hits' alert arrives over syslog too: {alerts:?}"
    );
    assert_eq!(
        flows.len(),
        expected.len(),
        "each drop record once, no pass record"
    );
    let mut received: Vec<BTreeMap<String, String>> =
        flows.iter().map(|m| sd_params(m, "flow@32473")).collect();
    received.sort();
    expected.sort();
    assert_eq!(
        received, expected,
        "structured data equals the stored drop records"
    );
}
