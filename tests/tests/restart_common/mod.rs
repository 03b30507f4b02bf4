//! The restart tests' set-up: a lab, a bpffs of the test's own for the pins, a store and a
//! list file, agents started on them (or told to abort at a crash point), and what the
//! records, the pins and the state say.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, sh, Lab, TempDir};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::pins::{self, Bpffs};
use xdp_audit_lab::traffic::Transfer;
use xdp_audit_lab::wait::wait_until;

/// An address of the internet namespace the blocklist names.
pub const BLOCKED: &str = "203.0.113.66";
/// Another one, added to the list for the restart with a changed list file.
pub const BLOCKED_LATER: &str = "203.0.113.77";
/// Where the UDP datagrams go.
pub const UDP_PORT: u16 = 7070;
/// Where the long transfer goes.
pub const TCP_PORT: u16 = 9090;
/// Frame bytes around a TCP segment's payload on the lab's links: Ethernet 14, IPv4 20, TCP
/// 20 to 60 (timestamps make it 32).
pub const TCP_OVERHEAD: std::ops::RangeInclusive<u64> = 54..=74;

/// One test's lab, pins, store and list file.
pub struct Setup {
    // Dropped in this order: the pins first (releasing the program), then the lab.
    pub pins: Bpffs,
    pub lab: Lab,
    pub dir: TempDir,
    pub bin: PathBuf,
    pub instance: String,
}

impl Setup {
    pub fn new(tag: &str) -> Self {
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

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    pub fn list(&self) -> PathBuf {
        self.dir.path().join("block.list")
    }

    pub fn instance_dir(&self) -> PathBuf {
        self.pins.path().join(&self.instance)
    }

    /// The program in slot 0 of the pinned `SLOW_PATH` (the slow path the program
    /// tail-calls for DNS checks and payload copies), in the map directory the state names.
    pub fn slow_path(&self) -> Option<u64> {
        let dir = self.instance_dir().join(format!(
            "maps-{}",
            self.state()["layout"]
                .as_str()
                .expect("the state names a layout")
        ));
        pins::prog_array_slot0(&dir.join("SLOW_PATH")).expect("bpftool on SLOW_PATH")
    }

    /// The instance's state (the JSON its `state` symlink points to).
    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_link(self.instance_dir().join("state")).expect("read the state");
        serde_json::from_str(text.to_str().expect("UTF-8 state")).expect("state JSON")
    }

    /// Starts a pinned agent on the gateway's LAN interface with `extra` flags.
    pub fn agent(&self, extra: &[&str]) -> Agent {
        self.agent_fsync("200ms", extra)
    }

    /// [`Setup::agent`] with the journal fsynced every `fsync`.
    pub fn agent_fsync(&self, fsync: &str, extra: &[&str]) -> Agent {
        self.with_args(fsync, extra, |args| {
            Agent::start(&self.lab, &self.lab.gateway, &self.bin, &self.log(), args)
                .expect("start the agent")
        })
    }

    /// Runs an agent as [`Setup::agent`] would, told to abort at the crash point `point`;
    /// checks it did.
    pub fn crash_at(&self, point: &str, extra: &[&str]) {
        self.with_args("200ms", extra, |args| {
            Agent::crash_at(
                &self.lab,
                &self.lab.gateway,
                &self.bin,
                &self.log(),
                args,
                point,
                // A start loads the program (seconds of verifier) on a loaded machine.
                Duration::from_secs(60),
            )
            .expect("the agent aborts at the crash point")
        });
    }

    /// Calls `f` with the agent's arguments: the test's defaults, then `extra`.
    pub fn with_args<R>(&self, fsync: &str, extra: &[&str], f: impl FnOnce(&[&str]) -> R) -> R {
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
    pub fn pretend_another_build(&self) {
        let mut v = self.state();
        v["program"] = "0".repeat(64).into();
        let new = self.instance_dir().join("state-new");
        std::os::unix::fs::symlink(v.to_string(), &new).expect("write a new state");
        std::fs::rename(&new, self.instance_dir().join("state")).expect("replace the state");
    }

    /// A transfer under way when an agent with a 4096-entry flow table stopped.
    pub fn transfer_past_a_stop(&self) -> Transfer {
        let mut first = self.agent(&["--flow-table-size", "4096"]);
        let transfer = self.transfer();
        wait_until(Duration::from_secs(10), "the transfer is under way", || {
            transfer.sent() > 50_000
        });
        assert_eq!(first.stop().expect("SIGTERM"), 0);
        transfer
    }

    /// The kernel ids of the program on the link and of the pinned program.
    pub fn linked_and_pinned(&self) -> (u64, u64) {
        (self.linked(lab::GW_LAN_IF), self.pinned())
    }

    /// The kernel id of the program on `iface`'s link.
    pub fn linked(&self, iface: &str) -> u64 {
        let link = self.instance_dir().join(format!("link-{iface}"));
        pins::pinned_link(&link).expect("the link is pinned").1
    }

    /// The kernel id of the pinned program.
    pub fn pinned(&self) -> u64 {
        pins::pinned_prog_id(&self.instance_dir().join("prog")).expect("the program is pinned")
    }

    /// The instance's map directories.
    pub fn map_dirs(&self) -> Vec<PathBuf> {
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
    pub fn transfer(&self) -> Transfer {
        Transfer::start(
            &self.lab,
            lab::SERVER_V4,
            TCP_PORT,
            1000,
            Duration::from_millis(10),
        )
        .expect("start the long transfer")
    }

    pub fn has_xdp(&self) -> bool {
        self.has_xdp_on(lab::GW_LAN_IF)
    }

    /// Whether the gateway's `iface` has an XDP program.
    pub fn has_xdp_on(&self, iface: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.lab.gateway, "link", "show", iface])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout).contains("xdp")
    }

    /// Whether one ping from the client to `addr` gets a reply.
    pub fn reachable(&self, addr: &str) -> bool {
        self.lab
            .cmd(&self.lab.client, "ping")
            .args(["-n", "-q", "-c", "1", "-W", "1", addr])
            .output()
            .expect("ping (Debian package iputils-ping)")
            .status
            .success()
    }

    /// Sends one UDP datagram from each of `sports` to the server.
    pub fn datagrams(&self, sports: std::ops::Range<u16>) {
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
    pub fn verify(&self) -> String {
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

    pub fn detach(&self) -> std::process::Output {
        self.lab
            .cmd(&self.lab.gateway, self.bin.to_str().expect("UTF-8 path"))
            .args(["detach", "--pin-root", self.pins.arg(), "--instance"])
            .arg(&self.instance)
            .output()
            .expect("xdp-audit detach")
    }
}

/// Records of UDP datagrams from `sport` to the server.
pub fn udp_from(records: &[serde_json::Value], sport: u16) -> usize {
    records
        .iter()
        .filter(|r| r["proto"] == "udp" && r["src_port"] == sport && r["dst_port"] == UDP_PORT)
        .count()
}

/// The packets and bytes of every record of the transfer from `sport`.
pub fn transfer_totals(records: &[serde_json::Value], sport: u16) -> (u64, u64, usize) {
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r["proto"] == "tcp" && r["src_port"] == sport && r["dst_port"] == TCP_PORT)
        .collect();
    let sum = |f: &str| mine.iter().filter_map(|r| r[f].as_u64()).sum::<u64>();
    (sum("packets"), sum("bytes"), mine.len())
}

/// Checks the transfer's records add up to what it carried, each frame once: the payload
/// plus one frame's headers per packet (a slice counted twice would double it).
pub fn assert_counted_once(records: &[serde_json::Value], sport: u16, payload: u64) {
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
pub fn assert_closed_transfer_counted_once(agent: &mut Agent, payload: u64) {
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
pub fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The source port of the one TCP flow to the transfer's port.
pub fn transfer_sport(records: &[serde_json::Value]) -> u16 {
    let ports: std::collections::BTreeSet<u64> = records
        .iter()
        .filter(|r| r["proto"] == "tcp" && r["dst_port"] == TCP_PORT)
        .filter_map(|r| r["src_port"].as_u64())
        .collect();
    assert_eq!(ports.len(), 1, "one transfer: {ports:?}");
    ports.into_iter().next().map_or(0, |p| p as u16)
}
