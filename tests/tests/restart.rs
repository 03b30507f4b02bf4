//! A pinned agent restarts and crashes without the gateway ever being unguarded: the
//! program, its links and maps stay pinned (in a bpffs of the test's own, see
//! `xdp_audit_lab::pins`), blocking and counting while no agent runs, and the next agent
//! adopts them. Upgrades, swaps killed half-way and `detach` are in `restart_swap.rs`.
//! Needs root.

mod restart_common;

use std::time::Duration;

use restart_common::{
    assert_counted_once, field, transfer_sport, udp_from, Setup, BLOCKED, BLOCKED_LATER, TCP_PORT,
};
use xdp_audit_lab::lab::{self, sh};
use xdp_audit_lab::servers;
use xdp_audit_lab::traffic::Ping;
use xdp_audit_lab::wait::wait_until;

#[test]
fn a_killed_agent_leaves_the_gateway_guarded_and_the_next_adopts_every_flow() {
    let s = Setup::new("rst");
    assert!(
        s.reachable(BLOCKED),
        "{BLOCKED} answers before the agent runs (else the test below proves nothing)"
    );
    let mut first = s.agent(&[]);
    assert!(
        first
            .logged("program loaded, attached and pinned")
            .is_some(),
        "a first start loads and pins"
    );
    let ping = Ping::start(&s.lab, &s.lab.client, BLOCKED, "0.05").expect("ping");
    let transfer = s.transfer();
    s.datagrams(42000..42005);
    wait_until(
        Duration::from_secs(10),
        "the first agent's program has counted the five datagrams",
        || first.status().unwrap_or_default()["counters"]["parsed_udp"].as_u64() >= Some(5),
    );

    let slow = s.slow_path().expect("the slow path is in SLOW_PATH");
    first.crash().expect("SIGKILL the agent");
    assert!(s.has_xdp(), "the program stays attached after SIGKILL");
    let sent_at_kill = transfer.sent();
    s.datagrams(43000..43010);
    // The scenario: the agent is kept down for five seconds.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        s.has_xdp(),
        "the program stayed attached while no agent ran"
    );
    // A program array's slots are emptied when its last user reference goes: pinned, it
    // keeps the slow path (DNS blocking, payload copies) while no agent runs.
    assert_eq!(
        s.slow_path(),
        Some(slow),
        "SLOW_PATH still holds the slow path after the agent was killed"
    );
    assert!(
        transfer.sent() > sent_at_kill + 100_000,
        "the transfer went on while the agent was down ({} bytes then, {} now)",
        sent_at_kill,
        transfer.sent()
    );

    let mut second = s.agent(&[]);
    let adopted = second
        .logged("adopted the pinned program")
        .expect("the restart adopts the pins")
        .to_owned();
    assert_eq!(
        field(&adopted, "list_changes"),
        Some(0),
        "an unchanged list file writes nothing: {adopted}"
    );
    assert!(
        adopted.contains("program_replaced=false"),
        "the same build keeps the running program: {adopted}"
    );
    assert_eq!(
        s.slow_path(),
        Some(slow),
        "the adoption keeps the slow path"
    );
    let payload = transfer.finish().expect("the transfer ends cleanly");
    let count = ping.finish().expect("ping statistics");
    assert!(
        // 20 a second over at least the 5 s down, give or take the scheduler.
        count.transmitted >= 80 && count.received == 0,
        "{BLOCKED} stayed unreachable through the kill, the 5 s down and the restart: {count:?}"
    );
    wait_until(
        Duration::from_secs(20),
        "the datagrams sent before the kill and while down are recorded",
        || {
            // A query that fails says why in the test's output, instead of reading as no rows.
            let r = second.records().unwrap_or_else(|e| {
                eprintln!("query of the second agent's store failed: {e:#}");
                Vec::new()
            });
            (42000..42005)
                .chain(43000..43010)
                .all(|p| udp_from(&r, p) > 0)
        },
    );

    // A restart with one more line in the list applies that line only.
    assert_eq!(second.stop().expect("SIGTERM"), 0);
    assert!(s.has_xdp(), "SIGTERM leaves the pinned program attached");
    std::fs::write(s.list(), format!("{BLOCKED}\n{BLOCKED_LATER}\n")).expect("edit the list");
    let mut third = s.agent(&[]);
    let adopted = third
        .logged("adopted the pinned program")
        .expect("the third start adopts the pins")
        .to_owned();
    assert_eq!(
        field(&adopted, "list_changes"),
        Some(1),
        "one line added to the list file, one entry written: {adopted}"
    );
    assert!(
        !s.reachable(BLOCKED_LATER),
        "the added line is enforced after the restart"
    );
    assert_eq!(third.stop().expect("SIGTERM"), 0);

    let records = third.records().expect("query");
    for p in (42000..42005).chain(43000..43010) {
        assert_eq!(
            udp_from(&records, p),
            1,
            "the datagram from port {p} is recorded exactly once: {records:#?}"
        );
    }
    assert_counted_once(&records, transfer_sport(&records), payload);
    let verdict = s.verify();
    assert!(
        verdict.contains(&format!("({} rows)", records.len())),
        "SIGTERM sealed the journal: verify sees all {} records: {verdict}",
        records.len()
    );
    assert!(s.detach().status.success(), "detach");
}

#[test]
fn a_restart_with_a_bad_list_file_keeps_the_lists_the_program_held() {
    let s = Setup::new("badlist");
    let mut first = s.agent(&[]);
    assert!(!s.reachable(BLOCKED), "the list is enforced");
    first.crash().expect("SIGKILL");
    // While no agent runs, an edit adds an address and a line that does not parse.
    std::fs::write(
        s.list(),
        format!("{BLOCKED}\n{BLOCKED_LATER}\n203.0.113.0/33\n"),
    )
    .expect("edit the list");
    let mut second = s.agent(&[]);
    assert!(
        second.logged("adopted the pinned program").is_some(),
        "the second start adopts the pins"
    );
    // The file's last good version is what the program held: it stays, the edit waits.
    assert!(
        !s.reachable(BLOCKED),
        "a bad line saved before the restart does not unblock the file's addresses"
    );
    assert!(
        s.reachable(BLOCKED_LATER),
        "nothing of the bad version is applied"
    );
    // Raised by the reload the agent sends as it starts: it may come before "running".
    if second.logged("XA-LIST-REJECTED").is_none() {
        second
            .wait_for("XA-LIST-REJECTED", Duration::from_secs(10))
            .expect("the rejected file raises its alert once the agent runs");
    }
    // Fixed, the file applies as it says.
    std::fs::write(s.list(), format!("{BLOCKED_LATER}\n")).expect("fix the list");
    wait_until(
        Duration::from_secs(10),
        "the fixed file replaces the held lists",
        || !s.reachable(BLOCKED_LATER) && s.reachable(BLOCKED),
    );
    // Emptied (0 bytes) while no agent runs: a truncation caught by the restart is judged
    // as one caught during a run, against the version the last agent kept, which stays.
    second.crash().expect("SIGKILL");
    std::fs::write(s.list(), "").expect("truncate the list");
    let mut third = s.agent(&[]);
    assert!(
        !s.reachable(BLOCKED_LATER),
        "a list emptied before the restart does not unblock what the program enforced"
    );
    assert!(
        third
            .logged("is empty (0 bytes) where its last version held 1 rules")
            .is_some(),
        "the start names the emptied file"
    );
    // A comment line empties the list on purpose.
    std::fs::write(s.list(), "# nothing blocked\n").expect("empty on purpose");
    wait_until(
        Duration::from_secs(10),
        "the list emptied on purpose applies",
        || s.reachable(BLOCKED_LATER),
    );
    assert_eq!(third.stop().expect("SIGTERM"), 0);
    assert!(s.detach().status.success(), "detach");
}

/// A start on no program (after a `detach`, as after a reboot with a persistent state
/// directory) that finds one list file damaged and another emptied enforces the versions the
/// last agent applied, kept in its state directory, until each file loads again. Until
/// 2026-12-06 both files' addresses were reachable until fixed.
#[test]
fn a_start_after_a_detach_enforces_the_last_versions_of_files_that_do_not_load() {
    let s = Setup::new("keptlst");
    let second = s.dir.path().join("second.list");
    std::fs::write(&second, format!("{BLOCKED_LATER}\n")).expect("second list");
    let extra = ["--blocklist", second.to_str().expect("UTF-8 path")];
    let mut first = s.agent(&extra);
    assert!(
        !s.reachable(BLOCKED) && !s.reachable(BLOCKED_LATER),
        "both enforced"
    );
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    assert!(s.detach().status.success(), "detach");
    std::fs::write(s.list(), format!("{BLOCKED}\n203.0.113.0/33\n")).expect("damage");
    std::fs::write(&second, "").expect("truncate the second list");
    let mut next = s.agent(&extra);
    assert!(
        next.logged("adopted the pinned program").is_none(),
        "the start loads a new program"
    );
    assert!(
        !s.reachable(BLOCKED),
        "the damaged file's last version stays in force"
    );
    assert!(
        !s.reachable(BLOCKED_LATER),
        "the emptied file's last version stays in force"
    );
    for said in [
        format!("{}:2", s.list().display()),
        format!(
            "{}: is empty (0 bytes) where its last version held 1 rules",
            second.display()
        ),
    ] {
        assert!(next.logged(&said).is_some(), "the start says {said:?}");
    }
    // Emptied on purpose, the second list applies; the first stays until it loads.
    std::fs::write(&second, "# nothing blocked\n").expect("empty on purpose");
    wait_until(
        Duration::from_secs(10),
        "the list emptied on purpose applies",
        || s.reachable(BLOCKED_LATER),
    );
    assert!(
        !s.reachable(BLOCKED),
        "the damaged file's last version still"
    );
    assert_eq!(next.stop().expect("SIGTERM"), 0);
    assert!(s.detach().status.success(), "detach");
}

/// A SIGKILL right after the sweeps that ended ten flows and the batch that wrote a blocked
/// ping's drop record, well within the fsync interval: the kernel has forgotten those flows
/// (taken out of the table; the ledger says the drop carried the ping's one packet), so the
/// records must already be in the journal file. The restart seals them: each flow once, the
/// drop record there. The interval is longer than the test (the store fsyncs at once a first
/// record that comes an interval after its open, and loading the program takes seconds).
#[test]
fn a_kill_within_the_fsync_interval_loses_no_record_the_kernel_has_forgotten() {
    let s = Setup::new("kfl");
    let mut first = s.agent_fsync("60s", &[]);
    s.datagrams(44000..44010);
    assert!(
        !s.reachable(BLOCKED),
        "the ping to {BLOCKED} is dropped by the list"
    );
    wait_until(
        Duration::from_secs(20),
        "the ten flows ended and the drop record are written (status counts 11 records)",
        || first.status().unwrap_or_default()["flows"]["records"].as_u64() >= Some(11),
    );
    first.crash().expect("SIGKILL the agent");
    let mut second = s.agent_fsync("60s", &[]);
    second
        .logged("adopted the pinned program")
        .expect("the restart adopts the pins");
    assert_eq!(second.stop().expect("SIGTERM"), 0);

    let records = second.records().expect("query");
    for p in 44000..44010 {
        assert_eq!(
            udp_from(&records, p),
            1,
            "the datagram from port {p} is recorded exactly once: {records:#?}"
        );
    }
    let to_blocked: Vec<_> = records
        .iter()
        .filter(|r| r["proto"] == "icmp" && r["dst_ip"] == BLOCKED)
        .collect();
    assert!(
        to_blocked.len() == 1 && to_blocked[0]["end_reason"] == "drop",
        "the blocked ping is recorded once, by its drop record: {to_blocked:#?}"
    );
    s.verify();
    assert!(s.detach().status.success(), "detach");
}

/// A name the internet namespace's resolver answers with the server's address.
const CARRIED_NAME: &str = "carried.lab.example";

/// What attribution learned goes on over a crash: the transfer's records written by the next
/// agent keep the domain the client's DNS answer gave it, and a new flow after the restart to
/// the answered address (the client does not ask again) is named by that answer. The agent
/// sees the resolver's answers on the gateway's internet side.
#[test]
fn flows_keep_the_domain_a_dns_answer_gave_them_across_a_crash() {
    let mut s = Setup::new("rcy");
    let dir = s.dir.path().to_owned();
    servers::dns(&mut s.lab, &dir, &[(CARRIED_NAME, lab::SERVER_V4)])
        .expect("dnsmasq answers in the internet namespace");
    let wan = format!("{}:wan", lab::GW_WAN_IF);
    let extra = [
        "--iface",
        wan.as_str(),
        "--active-timeout",
        "1s",
        "--state-save-interval",
        "200ms",
    ];
    let mut first = s.agent(&extra);
    let answer = sh(s.lab.cmd(&s.lab.client, "dig").args([
        &format!("@{}", lab::SERVER_V4),
        "+short",
        "+time=2",
        CARRIED_NAME,
        "A",
    ]))
    .expect("dig in the client namespace");
    assert_eq!(
        String::from_utf8_lossy(&answer.stdout).trim(),
        lab::SERVER_V4,
        "the resolver answers"
    );
    let transfer = s.transfer();
    let saved = first.log_dir.join("state").join("enrich.json");
    wait_until(
        Duration::from_secs(20),
        "the saved attribution state holds the transfer's flow, named",
        || {
            let Ok(text) = std::fs::read_to_string(&saved) else {
                return false;
            };
            // The JSON, then a line with its SHA-256.
            let json = text
                .rsplit_once("\n# sha256 ")
                .map_or(text.as_str(), |(j, _)| j);
            let state: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
            state["flows"].as_array().is_some_and(|flows| {
                flows
                    .iter()
                    .any(|f| f["key"][3] == 6 && f["attr"]["domain"] == CARRIED_NAME)
            })
        },
    );
    first.crash().expect("SIGKILL the agent");
    let sent_at_kill = transfer.sent();
    let mut second = s.agent(&extra);
    s.datagrams(45000..45001);
    wait_until(
        Duration::from_secs(20),
        "the transfer goes on under the second agent (two more records)",
        || {
            transfer.sent() > sent_at_kill + 100_000
                && second.status().unwrap_or_default()["flows"]["records"].as_u64() >= Some(3)
        },
    );
    let carry = second.status().expect("status")["enrich"]["carry"].clone();
    transfer.finish().expect("the transfer ends");
    assert_eq!(second.stop().expect("SIGTERM"), 0);

    let records = second.records().expect("query");
    let sport = transfer_sport(&records);
    let transfer_records: Vec<_> = records
        .iter()
        .filter(|r| r["proto"] == "tcp" && r["src_port"] == sport && r["dst_port"] == TCP_PORT)
        .collect();
    assert!(
        transfer_records.len() >= 3,
        "the transfer's slices before and after the crash: {transfer_records:#?}"
    );
    for r in &transfer_records {
        assert_eq!(
            r["domain"], CARRIED_NAME,
            "every slice of the transfer: {r}"
        );
    }
    let datagram: Vec<_> = records
        .iter()
        .filter(|r| r["proto"] == "udp" && r["src_port"] == 45000)
        .collect();
    assert!(
        datagram.len() == 1
            && datagram[0]["domain"] == CARRIED_NAME
            && datagram[0]["domain_source"] == "dns",
        "the datagram sent after the restart is named by the answer seen before: {datagram:#?}"
    );
    assert!(
        carry["restored_names"].as_u64() >= Some(1) && carry["restored_flows"].as_u64() >= Some(1),
        "the second agent took back the answer and the flow: {carry}"
    );
    assert!(s.detach().status.success(), "detach");
}
