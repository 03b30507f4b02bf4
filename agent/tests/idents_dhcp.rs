//! DHCP attribution against real servers and clients in the netns lab: dnsmasq and Kea serve
//! the gateway's LAN, busybox `udhcpc` asks from the client, and the agent's library reads the
//! server's lease file and the packets `tcpdump` saw on the LAN interface. Both must name the
//! client's MAC and host name for its address, a subscribers row for that MAC must attribute
//! it, and a release must end the binding. Needs root and the packages `cargo xtask setup`
//! installs (dnsmasq-base, kea-dhcp4-server, busybox, tcpdump); a missing one fails the test
//! with its name.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use xdp_audit::enrich::dhcp::{DhcpLearner, DhcpPacket};
use xdp_audit::enrich::identity::{Attribution, Via};
use xdp_audit::enrich::leases::bindings::Bindings;
use xdp_audit::enrich::leases::{self, LeaseFormat};
use xdp_audit::enrich::subscribers::{ParsedSubscribers, SubscriberTable};
use xdp_audit::record::Mac;
use xdp_audit_lab::lab::{self, Lab};

const HOSTNAME: &str = "lab-laptop";

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("xdp-audit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn require(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()));
    assert!(
        found,
        "`{program}` is not installed: this test runs the real program (Debian package \
         `{package}`; `cargo xtask setup` installs it)"
    );
}

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// Polls `f` until it returns `Some`, or fails after `timeout` saying what it waited for.
fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_showing(what, None, timeout, f)
}

/// [`wait_for`], showing the file `log` (a server's log) when it fails.
fn wait_showing<T>(
    what: &str,
    log: Option<&Path>,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            let shown = log.map(|l| std::fs::read_to_string(l).unwrap_or_default());
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                shown.unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn client_mac(lab: &Lab) -> Mac {
    let out = lab::sh(Command::new("ip").args(["-n", &lab.client, "-o", "link", "show", "eth0"]))
        .expect("ip link show");
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in `{text}`"));
    mac.parse().unwrap_or_else(|e| panic!("client MAC: {e}"))
}

/// Runs `udhcpc` in the client namespace until it holds a lease; `release` gives it back on
/// exit (the script in `dir` configures the address, which the unicast RELEASE is sent from).
/// Returns the leased address; on failure shows the server's log.
fn udhcpc(lab: &Lab, release: bool, dir: &Path, server_log: &Path) -> IpAddr {
    let script = dir.join("udhcpc.script");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && ip addr replace \"$ip/24\" dev \"$interface\"\nexit 0\n",
    )
    .expect("write udhcpc script");
    lab::sh(Command::new("chmod").arg("+x").arg(&script)).expect("chmod script");
    let mut cmd = lab.cmd(&lab.client, "busybox");
    cmd.args([
        "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1",
    ]);
    cmd.args(["-x", &format!("hostname:{HOSTNAME}"), "-s"])
        .arg(&script);
    if release {
        cmd.arg("-R");
    }
    let out = lab::sh(&mut cmd).unwrap_or_else(|e| {
        panic!(
            "udhcpc got no lease: {e:#}\nserver log:\n{}",
            std::fs::read_to_string(server_log).unwrap_or_default()
        )
    });
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let addr = log
        .lines()
        .find_map(|l| l.split("lease of ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no lease in udhcpc's output:\n{log}"));
    addr.parse()
        .unwrap_or_else(|e| panic!("leased address `{addr}`: {e}"))
}

/// Starts tcpdump on the gateway's LAN interface, writing DHCP packets to `pcap`.
fn capture(lab: &mut Lab, pcap: &Path, log: &Path) {
    let log_file = std::fs::File::create(log).expect("tcpdump log");
    let child = lab
        .cmd(&lab.gateway, "tcpdump")
        .args(["-i", lab::GW_LAN_IF, "-U", "-n", "-w"])
        .arg(pcap)
        .arg("udp port 67 or udp port 68")
        .stderr(log_file)
        .spawn()
        .expect("spawn tcpdump");
    lab.adopt(child);
    wait_for("tcpdump to listen", Duration::from_secs(10), || {
        std::fs::read_to_string(log)
            .ok()
            .filter(|l| l.contains("listening"))
            .map(|_| ())
    });
}

/// Replays the capture's DHCP datagrams into a learner (IPv4 on untagged Ethernet).
fn learn_capture(pcap: &Path, t_ns: i64) -> (DhcpLearner, Bindings) {
    let mut learner = DhcpLearner::new();
    let mut bindings = Bindings::default();
    for f in xdp_audit_lab::pcap::read(pcap).expect("read capture") {
        let d = &f.data;
        if d.len() < 42 || d[12..14] != [0x08, 0x00] {
            continue;
        }
        let ihl = usize::from(d[14] & 0x0f) * 4;
        let udp = &d[14 + ihl..];
        let src: [u8; 4] = d[26..30].try_into().expect("4 bytes");
        learner.learn(
            &DhcpPacket {
                payload: &udp[8..],
                src_port: u16::from_be_bytes([udp[0], udp[1]]),
                dst_port: u16::from_be_bytes([udp[2], udp[3]]),
                src_ip: IpAddr::from(src),
                eth_dst: <[u8; 6]>::try_from(&d[..6]).ok().map(Mac),
                t_ns,
            },
            &mut bindings,
        );
    }
    (learner, bindings)
}

/// What both sources must say about the client's address, and the subscriber it leads to.
fn check_attribution(bindings: &Bindings, ip: IpAddr, mac: Mac, t: i64, source: &str) {
    let span = bindings
        .at(ip, t)
        .unwrap_or_else(|| panic!("{source}: no binding for {ip}"));
    assert_eq!(span.holder.mac, Some(mac), "{source}: MAC of {ip}");
    assert_eq!(
        span.hostname.as_deref(),
        Some(HOSTNAME),
        "{source}: host name of {ip}"
    );
    let subs = ParsedSubscribers::parse(
        format!("match,account,name\n{mac},acct-lab,Lab User\n").as_bytes(),
    )
    .expect("subscribers");
    let table = SubscriberTable::build([&subs]);
    let id = Attribution {
        subscribers: &table,
        bindings,
    }
    .identity(ip, None, t);
    let (who, via) = id
        .subscriber
        .unwrap_or_else(|| panic!("{source}: {ip} not attributed"));
    assert_eq!((&*who.account, via), ("acct-lab", Via::Mac), "{source}");
    assert_eq!(id.hostname, Some(HOSTNAME), "{source}");
}

#[test]
fn dnsmasq_lease_file_and_packets_attribute_the_client() {
    for (p, pkg) in [
        ("dnsmasq", "dnsmasq-base"),
        ("busybox", "busybox"),
        ("tcpdump", "tcpdump"),
    ] {
        require(p, pkg);
    }
    let dir = TempDir::new("idents-dnsmasq");
    let mut lab = Lab::new("idd").expect("lab");
    let leasefile = dir.0.join("dnsmasq.leases");
    let log = dir.0.join("dnsmasq.log");
    capture(
        &mut lab,
        &dir.0.join("dhcp.pcap"),
        &dir.0.join("tcpdump.log"),
    );
    lab.spawn(
        &lab.gateway.clone(),
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            &format!("--interface={}", lab::GW_LAN_IF),
            "--bind-interfaces",
            "--dhcp-range=198.51.100.100,198.51.100.150,255.255.255.0,2m",
            &format!("--dhcp-leasefile={}", leasefile.display()),
            &format!("--pid-file={}", dir.0.join("pid").display()),
            "--dhcp-authoritative",
            &format!("--log-facility={}", log.display()),
        ],
    )
    .expect("start dnsmasq");
    wait_for("dnsmasq to serve DHCP", Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("DHCP, IP range"))
            .map(|_| ())
    });
    let mac = client_mac(&lab);
    let ip = udhcpc(&lab, false, &dir.0, &log);
    let t = now_ns();

    // The lease file: dnsmasq writes it after the ACK.
    let parsed = wait_for(
        "the lease in dnsmasq's file",
        Duration::from_secs(10),
        || {
            let bytes = std::fs::read(&leasefile).ok()?;
            let p = leases::parse(&bytes, None).expect("dnsmasq format");
            p.leases.iter().any(|l| l.ip == ip).then_some(p)
        },
    );
    assert_eq!(
        LeaseFormat::detect(&std::fs::read(&leasefile).expect("read")),
        Some(LeaseFormat::Dnsmasq)
    );
    assert_eq!(parsed.bad, []);
    let mut from_file = Bindings::default();
    from_file.apply_file(0, &parsed.leases, t, |_, _| None);
    check_attribution(&from_file, ip, mac, t, "dnsmasq lease file");

    // The packets on the LAN interface.
    let (learner, from_packets) =
        wait_for("the ACK in the capture", Duration::from_secs(10), || {
            let (l, b) = learn_capture(&dir.0.join("dhcp.pcap"), t);
            (l.counters().v4_ack >= 1).then_some((l, b))
        });
    assert_eq!(
        learner.counters().malformed + learner.counters().truncated,
        0
    );
    check_attribution(&from_packets, ip, mac, t, "captured packets");

    // A release (ISC dhclient: busybox's `-R` sends none): the lease leaves dnsmasq's file,
    // and the binding ends when the agent notices, while the time it held stays answered.
    let (ip2, t2, parsed) = dhclient_lease(&mut lab, &dir.0, &leasefile, &log);
    from_file.apply_file(0, &parsed.leases, t2, |_, _| None);
    assert_eq!(from_file.at(ip2, t2).and_then(|s| s.holder.mac), Some(mac));
    dhclient_release(&lab, &dir.0, ip2);
    let parsed = wait_showing(
        "the released lease to leave the file",
        Some(&log),
        Duration::from_secs(10),
        || {
            let p = leases::parse(&std::fs::read(&leasefile).ok()?, None).ok()?;
            (!p.leases.iter().any(|l| l.ip == ip2)).then_some(p)
        },
    );
    let later = now_ns();
    from_file.apply_file(0, &parsed.leases, later, |_, _| None);
    assert!(from_file.at(ip2, later).is_none(), "released");
    assert!(
        from_file.at(ip2, t2).is_some(),
        "the earlier binding is history, still answered"
    );
    assert!(from_file.at(ip, t).is_some());
}

/// The `dhclient` command line shared by the lease and the release: one lease and pid file
/// in `dir`, no script (the test configures the address itself).
fn dhclient_cmd(lab: &Lab, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = lab.cmd(&lab.client, "dhclient");
    cmd.args(["-4", "-v", "-sf", "/bin/true", "-lf"])
        .arg(dir.join("dhclient.leases"))
        .arg("-pf")
        .arg(dir.join("dhclient.pid"))
        .args(extra)
        .arg("eth0");
    cmd
}

/// A second lease, from dhclient on the same interface: its address, when, and the file
/// holding it. dhclient stays in the foreground (`-d`) as a child of the lab, so it is
/// stopped even when the test fails before the release.
fn dhclient_lease(
    lab: &mut Lab,
    dir: &Path,
    leasefile: &Path,
    log: &Path,
) -> (IpAddr, i64, leases::ParsedLeases) {
    require("dhclient", "isc-dhcp-client");
    let out_path = dir.join("dhclient.log");
    let out = std::fs::File::create(&out_path).expect("create dhclient.log");
    let child = dhclient_cmd(lab, dir, &["-d", "-1"])
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().expect("dhclient.log"))
        .stderr(out)
        .spawn()
        .expect("spawn dhclient");
    lab.adopt(child);
    // dhclient's own give-up time (`-1`, default timeout 60 s) bounds the wait.
    let addr = wait_showing(
        "dhclient to bind a lease",
        Some(&out_path),
        Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(&out_path).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("bound to "))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        },
    );
    let ip: IpAddr = addr.parse().unwrap_or_else(|e| panic!("`{addr}`: {e}"));
    let t = now_ns();
    let parsed = wait_showing(
        "dhclient's lease in the file",
        Some(log),
        Duration::from_secs(10),
        || {
            let p = leases::parse(&std::fs::read(leasefile).ok()?, None).ok()?;
            p.leases.iter().any(|l| l.ip == ip).then_some(p)
        },
    );
    (ip, t, parsed)
}

/// Releases dhclient's lease; the RELEASE goes by unicast from the leased address, so the
/// interface gets it first.
fn dhclient_release(lab: &Lab, dir: &Path, ip: IpAddr) {
    lab::sh(Command::new("ip").args([
        "-n",
        &lab.client,
        "addr",
        "replace",
        &format!("{ip}/24"),
        "dev",
        "eth0",
    ]))
    .expect("give eth0 the leased address");
    // `-r` also stops the foreground dhclient named in the pid file.
    let mut cmd = dhclient_cmd(lab, dir, &["-r"]);
    lab::sh(&mut cmd).unwrap_or_else(|e| panic!("dhclient -r: {e:#}"));
}

#[test]
fn kea_memfile_attributes_the_client() {
    for (p, pkg) in [("kea-dhcp4", "kea-dhcp4-server"), ("busybox", "busybox")] {
        require(p, pkg);
    }
    let dir = TempDir::new("idents-kea");
    let mut lab = Lab::new("idk").expect("lab");
    let leasefile = dir.0.join("kea-leases4.csv");
    let log = dir.0.join("kea4.log");
    let config = dir.0.join("kea4.json");
    std::fs::write(
        &config,
        format!(
            r#"{{ "Dhcp4": {{
  "interfaces-config": {{ "interfaces": [ "{lan}" ], "dhcp-socket-type": "raw" }},
  "lease-database": {{ "type": "memfile", "name": "{leases}", "persist": true, "lfc-interval": 0 }},
  "valid-lifetime": 120,
  "subnet4": [ {{ "id": 1, "subnet": "198.51.100.0/24", "pools": [ {{ "pool": "198.51.100.160 - 198.51.100.199" }} ] }} ],
  "loggers": [ {{ "name": "kea-dhcp4", "output_options": [ {{ "output": "{log}" }} ], "severity": "INFO" }} ]
}} }}"#,
            lan = lab::GW_LAN_IF,
            leases = leasefile.display(),
            log = log.display()
        ),
    )
    .expect("write Kea config");
    // Kea opens no socket on an interface that is not running yet.
    wait_for("the LAN link to come up", Duration::from_secs(10), || {
        let out =
            lab::sh(Command::new("ip").args(["-n", &lab.gateway, "link", "show", lab::GW_LAN_IF]))
                .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("LOWER_UP")
            .then_some(())
    });
    let child = lab
        .cmd(&lab.gateway, "kea-dhcp4")
        .arg("-c")
        .arg(&config)
        .env("KEA_PIDFILE_DIR", &dir.0)
        .env("KEA_LOCKFILE_DIR", &dir.0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn kea-dhcp4");
    lab.adopt(child);
    wait_for("Kea to start", Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("DHCP4_STARTED"))
            .map(|_| ())
    });
    let mac = client_mac(&lab);
    let ip = udhcpc(&lab, false, &dir.0, &log);
    let t = now_ns();
    let parsed = wait_for("the lease in Kea's file", Duration::from_secs(10), || {
        let p = leases::parse(&std::fs::read(&leasefile).ok()?, None).ok()?;
        p.leases.iter().any(|l| l.ip == ip).then_some(p)
    });
    assert_eq!(parsed.bad, []);
    let mut b = Bindings::default();
    b.apply_file(0, &parsed.leases, t, |_, _| None);
    check_attribution(&b, ip, mac, t, "Kea memfile");
    // Kea's rows carry the lease start: the binding begins at the client's transaction, not
    // when the file was read.
    let span = b.at(ip, t).expect("bound");
    let from = span.valid.from.expect("start");
    assert!(
        from <= t && t - from < 60_000_000_000,
        "start {from} vs read at {t}"
    );
}
