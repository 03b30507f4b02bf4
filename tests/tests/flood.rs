//! Floods end to end in the netns lab: the client sends TCP SYNs from thousands of spoofed
//! sources (a raw socket in its own namespace).
//! - To a blocked address: the agent records the first blocked flows of each budget window as
//!   `drop` records and sums the rest into `summarised` records, and the store's packets add
//!   up to what was sent; `status` shows flows recorded and packets summarised for the rule.
//! - New flows, with a kill of the agent in the middle: none is lost, though the full flow
//!   table evicts them before the next agent runs.
//!
//! Needs root.

use std::time::Duration;

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, sh, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::pins::Bpffs;
use xdp_audit_lab::wait::wait_until;

const BLOCKED_IP: [u8; 4] = [203, 0, 113, 9];
const SENT: u32 = 3_000;

/// An IPv4 TCP SYN from `src` to `dst`:80, the kernel filling the IP checksum and id.
fn syn(src: [u8; 4], dst: [u8; 4], sport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&80u16.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x02;
    p[34..36].copy_from_slice(&1024u16.to_be_bytes());
    p
}

/// The `i`-th spoofed source, in 10.64.0.0/10.
fn source(i: u32) -> [u8; 4] {
    let [_, b, c, d] = (0x0040_0000 + i).to_be_bytes();
    [10, 64 + (b & 0x3f), c, d]
}

/// Sends SYNs to `dst` from the spoofed sources `from` and on, `count` of them, through a raw
/// socket in the client's namespace (its default route is the gateway).
fn flood(lab: &Lab, dst: [u8; 4], from: u32, count: u32) {
    run_in(&lab.client, move || -> anyhow::Result<()> {
        // SAFETY: plain socket calls on a descriptor this closure owns and closes.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            anyhow::ensure!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let mut to: libc::sockaddr_in = std::mem::zeroed();
            to.sin_family = libc::AF_INET as libc::sa_family_t;
            to.sin_addr.s_addr = u32::from_ne_bytes(dst);
            for i in from..from + count {
                let p = syn(source(i), dst, 40_000 + (i % 1000) as u16);
                let n = libc::sendto(
                    fd,
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&raw const to).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
                if n != p.len() as isize {
                    let e = std::io::Error::last_os_error();
                    libc::close(fd);
                    anyhow::bail!("sendto of SYN {i}: {e}");
                }
            }
            libc::close(fd);
        }
        Ok(())
    })
    .expect("the flood is sent");
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or(0)
}

#[test]
fn a_blocked_flood_from_many_sources_is_recorded_then_summarised_and_adds_up() {
    let lab = Lab::new("fld").expect("build the netns lab");
    let tmp = lab.temp_dir("flood").expect("temp dir");
    let dir = tmp.path();
    let block = dir.join("block.list");
    let [a, b, c, d] = BLOCKED_IP;
    std::fs::write(&block, format!("{a}.{b}.{c}.{d}\n")).expect("write the list");
    let bin = binary().expect("agent binary");
    let mut agent = Agent::start(
        &lab,
        &lab.gateway.clone(),
        &bin,
        &dir.join("log"),
        &[
            "--iface",
            lab::GW_LAN_IF,
            "--blocklist",
            block.to_str().expect("utf8"),
            "--sweep-interval",
            "200ms",
            "--drop-records-per-rule",
            "50",
            "--drop-records-total",
            "100",
        ],
    )
    .expect("start the agent");
    // The gateway must know the client's MAC before the flood (no ARP traffic in the way).
    sh(lab
        .cmd(&lab.client, "ping")
        .args(["-c", "1", "-W", "2", lab::GW_LAN_V4]))
    .expect("ping the gateway");

    flood(&lab, BLOCKED_IP, 0, SENT);
    let mut status = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(20),
        "status shows every SYN recorded or summarised",
        || {
            status = agent.status().unwrap_or_default();
            let f = &status["flood"];
            f["recorded"].as_u64().unwrap_or(0) + f["summarised"].as_u64().unwrap_or(0)
                >= u64::from(SENT)
        },
    );
    let f = &status["flood"];
    let (recorded, summarised) = (
        f["recorded"].as_u64().unwrap_or(0),
        f["summarised"].as_u64().unwrap_or(0),
    );
    assert_eq!(recorded + summarised, u64::from(SENT), "{f}");
    assert!(
        recorded >= 1 && summarised > u64::from(SENT) / 2,
        "a budget of 50/s cannot record most of {SENT} SYNs sent at once: {f}"
    );
    assert_eq!(
        counter(&status, "dropped_by_list"),
        u64::from(SENT),
        "{status}"
    );
    assert_eq!(counter(&status, "dropped_summarised"), summarised);
    let rule = &f["rules"][0];
    assert!(
        rule["rule"]
            .as_str()
            .is_some_and(|r| r.ends_with("block.list:1"))
            && rule["summarised"].as_u64() == Some(summarised)
            && rule["last_sources"].as_u64().is_some_and(|n| n > 10),
        "per-rule figures: {rule}"
    );

    assert_eq!(agent.stop().expect("stop the agent"), 0, "clean exit");
    let records = agent.records().expect("query the store");
    let blocked = format!("{a}.{b}.{c}.{d}");
    let drops: Vec<_> = records
        .iter()
        .filter(|r| r["end_reason"] == "drop" && r["dst_ip"] == blocked.as_str())
        .collect();
    let summaries: Vec<_> = records
        .iter()
        .filter(|r| r["end_reason"] == "summarised")
        .collect();
    let packets = |rs: &[&serde_json::Value]| -> u64 {
        rs.iter().map(|r| r["packets"].as_u64().unwrap_or(0)).sum()
    };
    assert_eq!(
        drops.len() as u64,
        recorded,
        "one drop record per recorded flow"
    );
    assert_eq!(
        packets(&summaries),
        summarised,
        "summaries carry every summarised packet"
    );
    assert_eq!(
        packets(&drops) + packets(&summaries),
        u64::from(SENT),
        "the store adds up to what was sent"
    );
    assert!(
        summaries.iter().all(|r| r["rule"]
            .as_str()
            .is_some_and(|r| r.ends_with("block.list:1"))
            && r["dropped"] == r["packets"]),
        "{summaries:?}"
    );
}

/// An agent killed (SIGKILL) after it read the start events of a wave of new flows and
/// before their records were due (the inactive timeout), then a second wave while no agent
/// runs, more than the flow table holds: the LRU evicts the first wave's entries, and the
/// next agent finds neither their events in the ring nor their entries in the table. It
/// writes each from the file of open flows the killed agent kept, once. Before, they were in
/// no record and no counter (about 100,000 flows in a campaign run with default sizes).
#[test]
fn new_flows_a_killed_agent_read_are_recorded_after_a_flood_evicts_them() {
    killed_in_a_wave_of_new_flows("fldk", None);
}

/// As above, the agent dying while its records stage handles a batch of the wave's start
/// events (read off the ring, not yet settled: not in the file of open flows). The ring
/// keeps them until the records stage settles them, and the next agent reads them again.
/// Before, the reader had given their space back when it read them, and they were lost
/// (at most the queue's batches, about 6,000 flows).
#[test]
fn new_flows_read_and_not_yet_settled_when_the_agent_dies_are_recorded() {
    killed_in_a_wave_of_new_flows("flds", Some("settle:400"));
}

/// The agent's arguments on the gateway's LAN interface, with pins in `pins`: a flow table of
/// `table` entries, a ring of `ring` bytes, a sweep every `sweep`.
fn agent_args<'a>(pins: &'a Bpffs, table: &'a str, ring: &'a str, sweep: &'a str) -> [&'a str; 10] {
    [
        "--iface",
        lab::GW_LAN_IF,
        "--pin-root",
        pins.arg(),
        "--flow-table-size",
        table,
        "--ringbuf-bytes",
        ring,
        "--sweep-interval",
        sweep,
    ]
}

/// A lab for an agent on the gateway with pins of its own: its log directory, the server's
/// address the floods go to, and the agent's binary.
struct Setup {
    lab: Lab,
    pins: Bpffs,
    _tmp: xdp_audit_lab::lab::TempDir,
    log: std::path::PathBuf,
    server: [u8; 4],
    bin: std::path::PathBuf,
}

impl Setup {
    fn new(prefix: &str) -> Self {
        let lab = Lab::new(prefix).expect("build the netns lab");
        let pins = Bpffs::mount(&lab.id).expect("mount a bpffs for the test's pins");
        let tmp = lab.temp_dir("flood").expect("temp dir");
        let log = tmp.path().join("log");
        let server = (lab::SERVER_V4.parse::<std::net::Ipv4Addr>())
            .expect("v4")
            .octets();
        Self {
            lab,
            pins,
            _tmp: tmp,
            log,
            server,
            bin: binary().expect("agent binary"),
        }
    }
}

/// A first wave of 800 new flows, the agent killed (SIGKILL once it has read them all, or at
/// the crash point `crash_at`), a second wave of 3,000 through a table of 1,024 while no
/// agent runs, the next agent: each first-wave flow has exactly one record.
fn killed_in_a_wave_of_new_flows(prefix: &str, crash_at: Option<&str>) {
    const FIRST: u32 = 800;
    const SECOND: u32 = 3_000;
    let Setup {
        lab,
        pins,
        _tmp,
        log,
        server,
        bin,
    } = Setup::new(prefix);
    let args = agent_args(&pins, "1024", "4194304", "200ms");
    let gateway = lab.gateway.clone();
    let mut first = match crash_at {
        None => Agent::start(&lab, &gateway, &bin, &log, &args),
        Some(point) => Agent::start_crashing_at(&lab, &gateway, &bin, &log, &args, point),
    }
    .expect("start the agent");
    sh(lab
        .cmd(&lab.client, "ping")
        .args(["-c", "1", "-W", "2", lab::GW_LAN_V4]))
    .expect("ping the gateway");
    flood(&lab, server, 0, FIRST);
    match crash_at {
        None => {
            let starts = |a: &Agent| a.status().unwrap_or_default()["flows"]["starts"].as_u64();
            wait_until(
                Duration::from_secs(20),
                "the agent read the first wave's start events",
                || starts(&first).is_some_and(|n| n >= u64::from(FIRST)),
            );
            first.crash().expect("SIGKILL");
        }
        Some(point) => {
            use std::os::unix::process::ExitStatusExt as _;
            wait_until(Duration::from_secs(20), "the agent aborts", || {
                first.exited().is_ok_and(|e| e.is_some())
            });
            let status = first.exited().expect("exited").expect("ended");
            assert_eq!(status.signal(), Some(libc::SIGABRT), "aborted at {point}");
            (first.wait_for("aborting here", Duration::from_secs(10)))
                .expect("it said where it aborted");
        }
    }
    flood(&lab, server, FIRST, SECOND);

    let mut next = Agent::start(&lab, &gateway, &bin, &log, &args).expect("start the next agent");
    wait_until(
        Duration::from_secs(20),
        "the next agent read the second wave and swept",
        || {
            let s = next.status().unwrap_or_default();
            s["flows"]["starts"].as_u64().unwrap_or(0) >= u64::from(SECOND)
                && s["flows"]["evicted"].as_u64().unwrap_or(0) > 0
        },
    );
    let status = next.status().expect("status");
    assert_eq!(next.stop().expect("stop"), 0, "clean exit");
    let records = next.records().expect("query the store");
    let mut per_source = std::collections::HashMap::new();
    for r in &records {
        if let Some(ip) = r["src_ip"].as_str() {
            *per_source.entry(ip.to_owned()).or_insert(0u32) += 1;
        }
    }
    let wrong: Vec<_> = (0..FIRST)
        .map(|i| {
            let [a, b, c, d] = source(i);
            let ip = format!("{a}.{b}.{c}.{d}");
            let n = per_source.get(&ip).copied().unwrap_or(0);
            (ip, n)
        })
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of the first wave's {FIRST} flows not in exactly one record (first: {:?}); status: {}",
        wrong.len(),
        &wrong[..wrong.len().min(5)],
        status["flows"]
    );
    if crash_at.is_none() {
        assert!(
            status["flows"]["restored"].as_u64() >= Some(u64::from(FIRST)),
            "{}",
            status["flows"]
        );
    }
    drop(pins);
}

/// An agent stopped (its pinned program goes on), a wave of new flows while no agent runs
/// that fills the ring and overflows the table, and the next agent started with a larger
/// flow table: new maps, the old ones read once the new program is in. The flows whose start
/// the old ring lost and whose entry the old table evicted have no record: each is counted
/// (`lost_unseen`) and said. Before, nothing counted them (a re-test lost 11,468 flows so,
/// silently: the old program's counter went with its maps).
#[test]
fn flows_a_replaced_program_lost_unseen_are_counted() {
    const WAVE: u32 = 3_000;
    let Setup {
        lab,
        pins,
        _tmp,
        log,
        server,
        bin,
    } = Setup::new("fldu");
    let args = |table| agent_args(&pins, table, "65536", "200ms");
    let gateway = lab.gateway.clone();
    let mut first = Agent::start(&lab, &gateway, &bin, &log, &args("1024")).expect("start");
    assert_eq!(first.stop().expect("stop"), 0, "clean exit");
    flood(&lab, server, 0, WAVE);

    let mut next =
        Agent::start(&lab, &gateway, &bin, &log, &args("2048")).expect("start the next agent");
    wait_until(
        Duration::from_secs(20),
        "the next agent wrote the old maps' flows and swept",
        || next.status().unwrap_or_default()["flows"]["starts"].as_u64() > Some(0),
    );
    let status = next.status().expect("status");
    assert_eq!(next.stop().expect("stop"), 0, "clean exit");
    let records = next.records().expect("query the store");
    missing_all_counted(&records, &status, WAVE);
    drop(pins);
}

/// A fresh agent whose program loses start events to a full ring before its first sweep,
/// and whose table evicts those flows before that sweep's walk: each flow without a record
/// is counted (`lost_unseen`). Before, the count started at the first sweep's reading, and
/// such flows were in no count (a re-test: 36,525 after an upgrade under a flood, whose new
/// program lost them while the old maps were written out).
#[test]
fn flows_lost_unseen_before_a_fresh_agents_first_sweep_are_counted() {
    const WAVE: u32 = 3_000;
    let Setup {
        lab,
        pins,
        _tmp,
        log,
        server,
        bin,
    } = Setup::new("fldf");
    let args = agent_args(&pins, "1024", "65536", "3s");
    let gateway = lab.gateway.clone();
    let mut agent = Agent::start(&lab, &gateway, &bin, &log, &args).expect("start");
    // Held before its first sweep (SIGSTOP; SIGCONT however the floods end): two waves, the
    // ring fills, and the second evicts the first's flows whose start the ring lost.
    let pid = agent.pid().expect("the agent's pid") as libc::pid_t;
    struct Held(libc::pid_t);
    impl Drop for Held {
        fn drop(&mut self) {
            // SAFETY: signals a process this test started.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGSTOP) },
        0,
        "SIGSTOP the agent"
    );
    let held = Held(pid);
    flood(&lab, server, 0, WAVE);
    flood(&lab, server, WAVE, WAVE);
    drop(held);
    wait_until(Duration::from_secs(20), "a sweep after the wave", || {
        agent.status().unwrap_or_default()["flows"]["starts"].as_u64() > Some(0)
    });
    let status = agent.status().expect("status");
    assert_eq!(agent.stop().expect("stop"), 0, "clean exit");
    let records = agent.records().expect("query the store");
    missing_all_counted(&records, &status, 2 * WAVE);
    drop(pins);
}

/// Asserts that some of the flows from sources `0..sent` have no record in `records`, and
/// that `status` counts each of them as lost unseen.
fn missing_all_counted(records: &[serde_json::Value], status: &serde_json::Value, sent: u32) {
    let recorded: std::collections::HashSet<&str> = records
        .iter()
        .filter_map(|r| r["src_ip"].as_str())
        .collect();
    let missing = (0..sent)
        .filter(|&i| {
            let [a, b, c, d] = source(i);
            !recorded.contains(format!("{a}.{b}.{c}.{d}").as_str())
        })
        .count() as u64;
    assert!(
        missing > 0,
        "the ring and the table held every flow: no loss to count ({})",
        status["flows"]
    );
    assert_eq!(
        status["flows"]["lost_unseen"].as_u64(),
        Some(missing),
        "every flow without a record counted: {}",
        status["flows"]
    );
}
