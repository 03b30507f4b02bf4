//! A pinned agent restarts, crashes, upgrades and detaches without the gateway ever being
//! unguarded: the program, its links and maps stay pinned (in a bpffs of the test's own, see
//! `xdp_audit_lab::pins`), blocking and counting while no agent runs, and the next agent
//! adopts them. Needs root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, sh, Lab, TempDir};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::pins::{self, Bpffs};
use xdp_audit_lab::servers;
use xdp_audit_lab::traffic::{Ping, Transfer};
use xdp_audit_lab::wait::wait_until;

/// An address of the internet namespace the blocklist names.
const BLOCKED: &str = "203.0.113.66";
/// Another one, added to the list for the restart with a changed list file.
const BLOCKED_LATER: &str = "203.0.113.77";
/// Where the UDP datagrams go.
const UDP_PORT: u16 = 7070;
/// Where the long transfer goes.
const TCP_PORT: u16 = 9090;
/// Frame bytes around a TCP segment's payload on the lab's links: Ethernet 14, IPv4 20, TCP
/// 20 to 60 (timestamps make it 32).
const TCP_OVERHEAD: std::ops::RangeInclusive<u64> = 54..=74;

/// One test's lab, pins, store and list file.
struct Setup {
    // Dropped in this order: the pins first (releasing the program), then the lab.
    pins: Bpffs,
    lab: Lab,
    dir: TempDir,
    bin: PathBuf,
    instance: String,
}

impl Setup {
    fn new(tag: &str) -> Self {
        let lab = Lab::new(tag).expect("build the netns lab");
        for addr in [BLOCKED, BLOCKED_LATER] {
            sh(Command::new("ip").args([
                "-n",
                &lab.internet,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]))
            .expect("add the blocked addresses to the internet namespace");
        }
        let pins = Bpffs::mount(&lab.id).expect("mount a bpffs for the test's pins");
        let dir = lab.temp_dir(tag).expect("temp dir");
        std::fs::write(dir.path().join("block.list"), format!("{BLOCKED}\n")).expect("list");
        Self {
            instance: format!("t{}", lab.id),
            pins,
            lab,
            dir,
            bin: binary().expect("agent binary"),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn list(&self) -> PathBuf {
        self.dir.path().join("block.list")
    }

    fn instance_dir(&self) -> PathBuf {
        self.pins.path().join(&self.instance)
    }

    /// The program in slot 0 of the pinned `SLOW_PATH` (the slow path the program
    /// tail-calls for DNS checks and payload copies), in the map directory the state names.
    fn slow_path(&self) -> Option<u64> {
        let dir = self.instance_dir().join(format!(
            "maps-{}",
            self.state()["layout"]
                .as_str()
                .expect("the state names a layout")
        ));
        pins::prog_array_slot0(&dir.join("SLOW_PATH")).expect("bpftool on SLOW_PATH")
    }

    /// The instance's state (the JSON its `state` symlink points to).
    fn state(&self) -> serde_json::Value {
        let text = std::fs::read_link(self.instance_dir().join("state")).expect("read the state");
        serde_json::from_str(text.to_str().expect("UTF-8 state")).expect("state JSON")
    }

    /// Starts a pinned agent on the gateway's LAN interface with `extra` flags.
    fn agent(&self, extra: &[&str]) -> Agent {
        self.agent_fsync("200ms", extra)
    }

    /// [`Setup::agent`] with the journal fsynced every `fsync`.
    fn agent_fsync(&self, fsync: &str, extra: &[&str]) -> Agent {
        self.with_args(fsync, extra, |args| {
            Agent::start(&self.lab, &self.lab.gateway, &self.bin, &self.log(), args)
                .expect("start the agent")
        })
    }

    /// Runs an agent as [`Setup::agent`] would, told to abort at the crash point `point`;
    /// checks it did.
    fn crash_at(&self, point: &str, extra: &[&str]) {
        self.with_args("200ms", extra, |args| {
            Agent::crash_at(
                &self.lab,
                &self.lab.gateway,
                &self.bin,
                &self.log(),
                args,
                point,
                Duration::from_secs(20),
            )
            .expect("the agent aborts at the crash point")
        });
    }

    /// Calls `f` with the agent's arguments: the test's defaults, then `extra`.
    fn with_args<R>(&self, fsync: &str, extra: &[&str], f: impl FnOnce(&[&str]) -> R) -> R {
        let list = self.list();
        let mut args = vec![
            "--iface",
            lab::GW_LAN_IF,
            "--blocklist",
            list.to_str().expect("UTF-8 path"),
            "--pin-root",
            self.pins.arg(),
            "--instance",
            &self.instance,
            "--inactive-timeout",
            "1s",
            "--sweep-interval",
            "200ms",
            "--fsync-interval",
            fsync,
            "--close-linger",
            "1s",
        ];
        args.extend_from_slice(extra);
        f(&args)
    }

    /// Makes the state name a program digest no build has, as an agent of another build
    /// finds it: the next start keeps the maps and swaps its own program in.
    fn pretend_another_build(&self) {
        let mut v = self.state();
        v["program"] = "0".repeat(64).into();
        let new = self.instance_dir().join("state-new");
        std::os::unix::fs::symlink(v.to_string(), &new).expect("write a new state");
        std::fs::rename(&new, self.instance_dir().join("state")).expect("replace the state");
    }

    /// A transfer under way when an agent with a 4096-entry flow table stopped.
    fn transfer_past_a_stop(&self) -> Transfer {
        let mut first = self.agent(&["--flow-table-size", "4096"]);
        let transfer = self.transfer();
        wait_until(Duration::from_secs(10), "the transfer is under way", || {
            transfer.sent() > 50_000
        });
        assert_eq!(first.stop().expect("SIGTERM"), 0);
        transfer
    }

    /// The kernel ids of the program on the link and of the pinned program.
    fn linked_and_pinned(&self) -> (u64, u64) {
        (self.linked(lab::GW_LAN_IF), self.pinned())
    }

    /// The kernel id of the program on `iface`'s link.
    fn linked(&self, iface: &str) -> u64 {
        let link = self.instance_dir().join(format!("link-{iface}"));
        pins::pinned_link(&link).expect("the link is pinned").1
    }

    /// The kernel id of the pinned program.
    fn pinned(&self) -> u64 {
        pins::pinned_prog_id(&self.instance_dir().join("prog")).expect("the program is pinned")
    }

    /// The instance's map directories.
    fn map_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.instance_dir())
            .expect("list the instance")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("maps-"))
            })
            .collect()
    }

    /// A long TCP transfer to the server: 1000 bytes every 10 ms.
    fn transfer(&self) -> Transfer {
        Transfer::start(
            &self.lab,
            lab::SERVER_V4,
            TCP_PORT,
            1000,
            Duration::from_millis(10),
        )
        .expect("start the long transfer")
    }

    fn has_xdp(&self) -> bool {
        self.has_xdp_on(lab::GW_LAN_IF)
    }

    /// Whether the gateway's `iface` has an XDP program.
    fn has_xdp_on(&self, iface: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.lab.gateway, "link", "show", iface])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout).contains("xdp")
    }

    /// Whether one ping from the client to `addr` gets a reply.
    fn reachable(&self, addr: &str) -> bool {
        self.lab
            .cmd(&self.lab.client, "ping")
            .args(["-n", "-q", "-c", "1", "-W", "1", addr])
            .output()
            .expect("ping (Debian package iputils-ping)")
            .status
            .success()
    }

    /// Sends one UDP datagram from each of `sports` to the server.
    fn datagrams(&self, sports: std::ops::Range<u16>) {
        run_in(&self.lab.client, move || {
            for sport in sports {
                let s = std::net::UdpSocket::bind((lab::CLIENT_V4, sport))?;
                s.send_to(b"hello", (lab::SERVER_V4, UDP_PORT))?;
            }
            Ok(())
        })
        .expect("client datagrams");
    }

    /// Runs `xdp-audit verify`, checks it passes, returns its verdict line.
    fn verify(&self) -> String {
        let out = Command::new(&self.bin)
            .args(["verify", "--log-dir"])
            .arg(self.log())
            .output()
            .expect("xdp-audit verify");
        assert!(
            out.status.success(),
            "the store verifies: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn detach(&self) -> std::process::Output {
        self.lab
            .cmd(&self.lab.gateway, self.bin.to_str().expect("UTF-8 path"))
            .args(["detach", "--pin-root", self.pins.arg(), "--instance"])
            .arg(&self.instance)
            .output()
            .expect("xdp-audit detach")
    }
}

/// Records of UDP datagrams from `sport` to the server.
fn udp_from(records: &[serde_json::Value], sport: u16) -> usize {
    records
        .iter()
        .filter(|r| r["proto"] == "udp" && r["src_port"] == sport && r["dst_port"] == UDP_PORT)
        .count()
}

/// The packets and bytes of every record of the transfer from `sport`.
fn transfer_totals(records: &[serde_json::Value], sport: u16) -> (u64, u64, usize) {
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r["proto"] == "tcp" && r["src_port"] == sport && r["dst_port"] == TCP_PORT)
        .collect();
    let sum = |f: &str| mine.iter().filter_map(|r| r[f].as_u64()).sum::<u64>();
    (sum("packets"), sum("bytes"), mine.len())
}

/// Checks the transfer's records add up to what it carried, each frame once: the payload
/// plus one frame's headers per packet (a slice counted twice would double it).
fn assert_counted_once(records: &[serde_json::Value], sport: u16, payload: u64) {
    let (packets, bytes, n) = transfer_totals(records, sport);
    let (lo, hi) = (
        payload + packets * TCP_OVERHEAD.start(),
        payload + packets * TCP_OVERHEAD.end(),
    );
    assert!(
        packets > 0 && (lo..=hi).contains(&bytes),
        "the transfer's {n} records carry {bytes} bytes in {packets} packets; its {payload} \
         payload bytes, each counted once, make {lo}..={hi}: {records:#?}"
    );
}

/// Waits until `agent` wrote the closed transfer, stops it, and checks the transfer's
/// `payload` bytes were counted once.
fn assert_closed_transfer_counted_once(agent: &mut Agent, payload: u64) {
    wait_until(
        Duration::from_secs(20),
        "the closed transfer is written",
        || {
            agent.records().unwrap_or_default().iter().any(|r| {
                r["proto"] == "tcp"
                    && r["dst_port"] == TCP_PORT
                    && matches!(r["end_reason"].as_str(), Some("fin" | "rst"))
            })
        },
    );
    assert_eq!(agent.stop().expect("SIGTERM"), 0);
    let records = agent.records().expect("query");
    assert_counted_once(&records, transfer_sport(&records), payload);
}

/// The value of `field=` in a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

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
    second
        .wait_for("XA-LIST-REJECTED", Duration::from_secs(10))
        .expect("the rejected file raises its alert once the agent runs");
    // Fixed, the file applies as it says.
    std::fs::write(s.list(), format!("{BLOCKED_LATER}\n")).expect("fix the list");
    wait_until(
        Duration::from_secs(10),
        "the fixed file replaces the held lists",
        || !s.reachable(BLOCKED_LATER) && s.reachable(BLOCKED),
    );
    assert_eq!(second.stop().expect("SIGTERM"), 0);
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
            let state: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
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

/// The source port of the one TCP flow to the transfer's port.
fn transfer_sport(records: &[serde_json::Value]) -> u16 {
    let ports: std::collections::BTreeSet<u64> = records
        .iter()
        .filter(|r| r["proto"] == "tcp" && r["dst_port"] == TCP_PORT)
        .filter_map(|r| r["src_port"].as_u64())
        .collect();
    assert_eq!(ports.len(), 1, "one transfer: {ports:?}");
    ports.into_iter().next().map_or(0, |p| p as u16)
}

#[test]
fn an_upgrade_with_another_map_layout_swaps_the_program_on_its_link_with_no_reply_through() {
    let s = Setup::new("upg");
    assert!(
        s.reachable(BLOCKED),
        "{BLOCKED} answers before the agent runs"
    );
    let mut first = s.agent(&["--flow-table-size", "4096"]);
    let link = s.instance_dir().join(format!("link-{}", lab::GW_LAN_IF));
    let (link_id, old_prog) = pins::pinned_link(&link).expect("the link is pinned");
    let old_slow = s.slow_path().expect("the slow path is in SLOW_PATH");
    let transfer = s.transfer();
    let flood = Ping::start(&s.lab, &s.lab.client, BLOCKED, "0.002").expect("ping flood");
    wait_until(Duration::from_secs(10), "the transfer is under way", || {
        transfer.sent() > 50_000
    });
    assert_eq!(first.stop().expect("SIGTERM"), 0);

    // Another flow-table size is another map layout: new maps, a new program.
    let mut second = s.agent(&["--flow-table-size", "8192"]);
    let upgraded = second
        .logged("upgraded the pinned program")
        .expect("a changed layout is an upgrade")
        .to_owned();
    assert!(
        field(&upgraded, "migrated") >= Some(2),
        "the open transfer and the blocked ping's flow move into the new flow table: {upgraded}"
    );
    let (link_now, new_prog) = pins::pinned_link(&link).expect("the link is still pinned");
    assert_eq!(link_now, link_id, "the same link holds the new program");
    assert_ne!(new_prog, old_prog, "the program on the link was replaced");
    let new_slow = s
        .slow_path()
        .expect("the new program's slow path is in its SLOW_PATH");
    assert_ne!(
        new_slow, old_slow,
        "the new program has a slow path of its own"
    );
    let before = transfer.sent();
    wait_until(
        Duration::from_secs(10),
        "the transfer goes on under the new program",
        || transfer.sent() > before + 20_000,
    );
    let count = flood.finish().expect("flood statistics");
    // The flood spans the swap by construction (started before the first agent stopped,
    // finished after the new program carried the transfer on); its length is the machine's
    // speed, so the premise asks only for a real flood (0.2 s at one ping per 2 ms).
    assert!(
        count.transmitted >= 100 && count.received == 0,
        "not one reply from {BLOCKED} through the swap: {count:?}"
    );
    let payload = transfer.finish().expect("the transfer ends cleanly");
    // The transfer closed: it ends after the linger and is written.
    assert_closed_transfer_counted_once(&mut second, payload);
    assert!(
        !pins::pinned_map_ids(&s.instance_dir())
            .expect("maps")
            .is_empty(),
        "the new layout's maps are pinned"
    );
    assert_eq!(s.map_dirs().len(), 1, "the old layout's maps were unpinned");
    s.verify();
}

#[test]
fn a_start_killed_between_swapping_its_program_in_and_pinning_it_leaves_the_next_start_able_to_run()
{
    let s = Setup::new("swapk");
    // Two interfaces: the start is aborted after the first swap, the second one still runs
    // the program it replaced.
    let wan = format!("{}:wan", lab::GW_WAN_IF);
    let two = ["--iface", wan.as_str()];
    let mut first = s.agent(&two);
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    let first_prog = s.pinned();
    s.pretend_another_build();
    s.crash_at("swap", &two);
    let (orphan, pinned) = s.linked_and_pinned();
    assert!(
        orphan != first_prog && pinned == first_prog && s.linked(lab::GW_WAN_IF) == first_prog,
        "the aborted start swapped its program in on {} ({orphan}) and died before the \
         second interface and the pin (both still hold {first_prog}: {pinned}, {})",
        lab::GW_LAN_IF,
        s.linked(lab::GW_WAN_IF)
    );
    assert!(
        !s.reachable(BLOCKED),
        "the program it left on the link blocks {BLOCKED}"
    );

    let mut third = s.agent(&two);
    assert!(
        third.logged("taken as the running one").is_some(),
        "the next start takes the program on the link as the instance's"
    );
    let pinned = s.pinned();
    assert!(
        s.linked(lab::GW_LAN_IF) == pinned && s.linked(lab::GW_WAN_IF) == pinned,
        "both interfaces run the pinned program"
    );
    assert!(
        std::fs::read_dir(s.instance_dir())
            .expect("list the instance")
            .filter_map(|e| e.ok())
            .all(|e| !e.file_name().to_string_lossy().starts_with("prog-")),
        "no program pin is left but the instance's"
    );
    assert!(!s.reachable(BLOCKED), "{BLOCKED} is blocked");
    s.datagrams(44000..44003);
    wait_until(Duration::from_secs(20), "the datagrams are written", || {
        let records = third.records().unwrap_or_default();
        (44000..44003).all(|p| udp_from(&records, p) == 1)
    });
    assert_eq!(third.stop().expect("SIGTERM"), 0);
    // And the one after it finds a consistent instance: nothing to recover, nothing to swap.
    let mut fourth = s.agent(&two);
    let adopted = fourth
        .logged("adopted the pinned program")
        .expect("the next start adopts")
        .to_owned();
    assert!(
        adopted.contains("program_replaced=false") && fourth.logged("taken as").is_none(),
        "the same build keeps the running program: {adopted}"
    );
    assert_eq!(fourth.stop().expect("SIGTERM"), 0);
    assert_eq!(s.map_dirs().len(), 1, "one map directory");
    s.verify();
}

#[test]
fn a_swap_whose_recovery_is_killed_too_is_finished_and_detach_after_a_killed_swap_leaves_nothing() {
    let s = Setup::new("swap2");
    let wan = format!("{}:wan", lab::GW_WAN_IF);
    let two = ["--iface", wan.as_str()];
    let mut first = s.agent(&two);
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    s.pretend_another_build();
    s.crash_at("swap", &two);
    // The next start dies in its recovery, between keeping the replaced program and
    // pinning the new one as the instance's.
    s.crash_at("promote", &two);
    let mut third = s.agent(&two);
    assert!(
        third.logged("taken as the running one").is_some(),
        "the start after two killed ones finishes the swap"
    );
    let pinned = s.pinned();
    assert!(
        s.linked(lab::GW_LAN_IF) == pinned && s.linked(lab::GW_WAN_IF) == pinned,
        "both interfaces run the pinned program"
    );
    assert!(!s.reachable(BLOCKED), "{BLOCKED} is blocked");
    assert_eq!(third.stop().expect("SIGTERM"), 0);

    // Killed mid-swap again, then detached: no program is left on either interface.
    s.pretend_another_build();
    s.crash_at("swap", &two);
    let out = s.detach();
    assert!(
        out.status.success(),
        "detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!s.instance_dir().exists(), "the instance directory is gone");
    for iface in [lab::GW_LAN_IF, lab::GW_WAN_IF] {
        assert!(!s.has_xdp_on(iface), "{iface} has no XDP program");
    }
    assert!(s.reachable(BLOCKED), "{BLOCKED} answers once detached");
}

#[test]
fn an_upgrade_killed_after_its_swap_is_finished_by_the_next_start_with_each_flow_counted_once() {
    let s = Setup::new("upgk");
    let transfer = s.transfer_past_a_stop();
    // Ended while no agent runs: the flow, and its close, are in the old tables only, and
    // the copy and the swap see no packet of it between them.
    let payload = transfer.finish().expect("the transfer ends cleanly");

    s.crash_at("swap", &["--flow-table-size", "8192"]);
    let (orphan, pinned) = s.linked_and_pinned();
    assert!(
        orphan != pinned && s.map_dirs().len() == 2,
        "the aborted upgrade swapped its program in and left both layouts' maps: the link \
         holds {orphan}, the pin {pinned}, the maps {:?}",
        s.map_dirs()
    );

    let mut third = s.agent(&["--flow-table-size", "8192"]);
    assert!(
        third.logged("taken as the running one").is_some()
            && third.logged("their flows are written out").is_some(),
        "the next start finishes the upgrade: the program on the link is taken, the old \
         layout's flows written out"
    );
    let (linked, pinned) = s.linked_and_pinned();
    assert_eq!(linked, pinned, "the program on the link is the pinned one");
    wait_until(
        Duration::from_secs(10),
        "the old layout's maps are unpinned once their flows are written",
        || s.map_dirs().len() == 1,
    );
    assert!(!s.reachable(BLOCKED), "{BLOCKED} is blocked");
    assert_closed_transfer_counted_once(&mut third, payload);
    s.verify();
}

#[test]
fn an_upgrade_without_room_killed_at_its_swap_counts_a_flow_that_goes_on_once() {
    let s = Setup::new("upgn");
    let transfer = s.transfer_past_a_stop();
    // More flows than the new table takes over (it needs room for twice as many): none is
    // moved, and the transfer goes on as a new entry of the new program's table.
    let ports = 46000..46040;
    s.datagrams(ports.clone());
    s.crash_at("swap", &["--flow-table-size", "64"]);
    let sent = transfer.sent();
    wait_until(
        Duration::from_secs(10),
        "the transfer goes on under the program the aborted upgrade swapped in",
        || transfer.sent() > sent + 20_000,
    );

    let mut third = s.agent(&["--flow-table-size", "64"]);
    assert!(
        third.logged("taken as the running one").is_some()
            && third.logged("their flows are written out").is_some(),
        "the next start finishes the upgrade and writes the old tables' flows out"
    );
    let payload = transfer.finish().expect("the transfer ends cleanly");
    assert_closed_transfer_counted_once(&mut third, payload);
    let records = third.records().expect("query");
    assert!(
        ports.clone().all(|p| udp_from(&records, p) == 1),
        "each datagram of the old table once: {records:#?}"
    );
    s.verify();
}

#[test]
fn an_upgrade_killed_before_it_wrote_the_old_tables_flows_leaves_them_to_the_next_start() {
    let s = Setup::new("upgr");
    let mut first = s.agent(&["--flow-table-size", "4096"]);
    assert_eq!(first.stop().expect("SIGTERM"), 0);
    // Counted while no agent runs, so in the old flow table only; too many for the new
    // table (it takes flows over only with room for twice as many), so written out.
    let ports = 45000..45040;
    s.datagrams(ports.clone());
    s.crash_at("retired", &["--flow-table-size", "64"]);
    assert_eq!(
        s.map_dirs().len(),
        2,
        "the upgrade that died before writing the old tables' flows left their maps pinned"
    );
    assert!(
        s.state()["replaced"][0]["layout_version"].as_u64() > Some(0),
        "with the version they are read by: {}",
        s.state()
    );

    let mut third = s.agent(&["--flow-table-size", "64"]);
    assert!(
        third.logged("their flows are written out").is_some(),
        "the next start writes them out"
    );
    wait_until(
        Duration::from_secs(20),
        "each datagram counted while no agent ran is written, once",
        || {
            let records = third.records().unwrap_or_default();
            ports.clone().all(|p| udp_from(&records, p) == 1)
        },
    );
    wait_until(
        Duration::from_secs(10),
        "the old layout's maps are unpinned",
        || s.map_dirs().len() == 1,
    );
    assert_eq!(third.stop().expect("SIGTERM"), 0);
    let records = third.records().expect("query");
    assert!(
        ports.clone().all(|p| udp_from(&records, p) == 1),
        "each datagram once: {records:#?}"
    );
    s.verify();
}

#[test]
fn detach_leaves_no_pin_link_program_or_map_of_the_instance() {
    let s = Setup::new("det");
    let mut agent = s.agent(&[]);
    let out = s.detach();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("in use"),
        "detach is refused while the agent runs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(agent.stop().expect("SIGTERM"), 0);
    assert!(s.has_xdp(), "the pinned program outlives the agent");

    let dir = s.instance_dir();
    let prog = pins::pinned_prog_id(&dir.join("prog")).expect("the program is pinned");
    let (link, _) = pins::pinned_link(&dir.join(format!("link-{}", lab::GW_LAN_IF)))
        .expect("the link is pinned");
    let maps = pins::pinned_map_ids(&dir).expect("the maps are pinned");
    let slow = s.slow_path().expect("the slow path is in SLOW_PATH");
    assert!(maps.len() >= 10, "every map is pinned: {maps:?}");

    let out = s.detach();
    assert!(
        out.status.success(),
        "detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.exists(), "the instance directory is gone");
    assert!(!s.has_xdp(), "the interface has no XDP program");
    // The kernel frees the objects once their last reference goes (after an RCU grace
    // period): wait for it.
    wait_until(
        Duration::from_secs(10),
        "bpftool lists none of the instance's program, link and maps",
        || {
            let gone = |kind: &str, ids: &[u64]| {
                pins::kernel_ids(kind).is_ok_and(|now| ids.iter().all(|i| !now.contains(i)))
            };
            gone("prog", &[prog, slow]) && gone("link", &[link]) && gone("map", &maps)
        },
    );
    let again = s.detach();
    assert!(
        again.status.success() && String::from_utf8_lossy(&again.stdout).contains("nothing"),
        "a second detach finds nothing and succeeds: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert!(!Path::new(&dir).exists());
}

#[test]
fn bpffs_is_mounted_where_it_is_absent_and_a_private_mount_namespace_is_said() {
    let s = Setup::new("bpffs");
    // `ip netns exec` gives the agent a fresh /sys without bpffs: it mounts one, and warns
    // that pins in its private mount namespace cannot outlive it.
    let list = s.list();
    let mut agent = Agent::start(
        &s.lab,
        &s.lab.gateway,
        &s.bin,
        &s.log(),
        &[
            "--iface",
            lab::GW_LAN_IF,
            "--blocklist",
            list.to_str().expect("UTF-8 path"),
        ],
    )
    .expect("start the agent with the default pin root");
    assert!(
        agent.logged("mounted bpffs at /sys/fs/bpf").is_some(),
        "the agent mounted bpffs"
    );
    assert!(
        agent.logged("mount namespace of its own").is_some(),
        "the agent said its pins cannot outlive it"
    );
    assert!(
        !s.reachable(BLOCKED),
        "and it enforces the list all the same"
    );
    assert_eq!(agent.stop().expect("SIGTERM"), 0);
}
