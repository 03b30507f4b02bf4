//! Least privilege end to end: the agent started as root with `--user nobody` runs as nobody
//! with no capability in any thread once attached, and still does its whole job: blocks,
//! applies a list edit, writes status and records, pins its program in a bpffs mounted 0700
//! (the instance directory nobody's, made reachable before the switch) and leaves it attached
//! at SIGTERM for `detach`; the store it writes is nobody's, files 0640 and directories 0750. Started the way the systemd unit starts it
//! (a plain user with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON as ambient capabilities), it
//! loads, attaches and pins (after the unit's `ExecStartPre` steps) and then holds none of
//! them. Needs root.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, sh, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::pins::Bpffs;
use xdp_audit_lab::wait::wait_until;

const PORT: u16 = 8080;
/// A second server address, blocked by an edit while the agent runs unprivileged.
const LATER_BLOCKED: &str = "203.0.113.5";

fn connect(lab: &Lab, addr: &'static str) -> bool {
    run_in(&lab.client, move || {
        let sa = SocketAddr::new(addr.parse()?, PORT);
        Ok(TcpStream::connect_timeout(&sa, Duration::from_millis(700)).is_ok())
    })
    .expect("client thread")
}

/// `field` of a `/proc/PID/task/TID/status` file.
fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in status:\n{status}"))
}

/// Every thread of `pid`: its name, uids, gids and capability sets.
fn threads(pid: u32) -> Vec<String> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.expect("task entry").path().join("status");
        if let Ok(text) = std::fs::read_to_string(&path) {
            out.push(text);
        }
    }
    out
}

/// The mounts stacked on the host's /sys/fs/bpf: the unit's `ExecStartPre` steps belong in
/// the agent's own mount namespace, and a test must never leave one here.
fn host_bpffs_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some("/sys/fs/bpf"))
        .count()
}

/// Every file and directory under `dir`, with its metadata.
fn walk(dir: &Path, out: &mut Vec<(std::path::PathBuf, std::fs::Metadata)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            walk(&path, out);
        }
        out.push((path, meta));
    }
}

#[test]
fn unprivileged_agent_blocks_reloads_records_and_detaches() {
    let lab = Lab::new("prv").expect("build the netns lab");
    lab.add_internet_address(LATER_BLOCKED)
        .expect("add address");
    for ip in [lab::SERVER_V4, LATER_BLOCKED] {
        let ns = lab.internet.clone();
        std::thread::spawn(move || {
            let _ = run_in(&ns, move || -> anyhow::Result<()> {
                let l = TcpListener::bind((ip, PORT))?;
                for conn in l.incoming() {
                    drop(conn?);
                }
                Ok(())
            });
        });
    }
    lab.wait_tcp(lab::SERVER_V4, PORT, Duration::from_secs(10))
        .expect("server up");
    let nobody = (65534, 65534);

    let tmp = lab.temp_dir("privilege").expect("temp dir");
    let block = tmp.path().join("block.list");
    std::fs::write(&block, "192.0.2.99\n").expect("write the blocklist");
    let log_dir = tmp.path().join("log");
    let bin = binary().expect("agent binary");
    // A bpffs of the test's own, root's and 0700 as systemd mounts /sys/fs/bpf.
    let bpffs = Bpffs::mount(&format!("priv-{}", std::process::id())).expect("mount bpffs");
    sh(std::process::Command::new("chmod")
        .arg("0700")
        .arg(bpffs.path()))
    .expect("chmod the bpffs");
    let mut agent = Agent::start(
        &lab,
        &lab.gateway.clone(),
        &bin,
        &log_dir,
        &[
            "--iface",
            lab::GW_LAN_IF,
            "--pin-root",
            bpffs.arg(),
            "--user",
            "nobody",
            // Without NAT attribution, which keeps CAP_NET_ADMIN when conntrack can be
            // followed ("auto" follows it once another test has loaded nf_conntrack).
            "--nat",
            "off",
            "--blocklist",
            block.to_str().expect("utf8"),
            "--sweep-interval",
            "200ms",
            "--inactive-timeout",
            "1s",
            "--close-linger",
            "200ms",
        ],
    )
    .expect("start the agent as nobody");
    let pid = agent.pid().expect("the agent runs");

    // Every thread: nobody, no capability in any set, none to gain.
    let statuses = threads(pid);
    assert!(statuses.len() >= 3, "the agent's stages run on threads");
    for st in &statuses {
        let who = field(st, "Name");
        assert_eq!(
            field(st, "Uid"),
            "65534\t65534\t65534\t65534",
            "{who}: uids"
        );
        assert_eq!(
            field(st, "Gid"),
            "65534\t65534\t65534\t65534",
            "{who}: gids"
        );
        for set in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
            assert_eq!(field(st, set), "0000000000000000", "{who}: {set}");
        }
        assert_eq!(field(st, "NoNewPrivs"), "1", "{who}");
    }

    // The job, without privileges: a flow passes, an edit blocks a new address.
    assert!(
        connect(&lab, lab::SERVER_V4),
        "an unlisted server is reachable"
    );
    assert!(connect(&lab, LATER_BLOCKED), "not blocked yet");
    std::fs::write(&block, format!("192.0.2.99\n{LATER_BLOCKED}\n")).expect("edit");
    agent
        .wait_for("applied", Duration::from_secs(10))
        .expect("the edit applies through the map descriptors");
    assert!(!connect(&lab, LATER_BLOCKED), "the edit blocks the address");
    let mut hits = 0;
    wait_until(
        Duration::from_secs(10),
        "status.json counts the block",
        || {
            let status = agent.status().unwrap_or_default();
            hits = status["counters"]["dropped_by_list"].as_u64().unwrap_or(0);
            hits > 0
        },
    );
    assert_eq!(agent.stop().expect("stop the agent"), 0, "clean exit");

    let xdp = sh(lab
        .cmd(&lab.gateway, "ip")
        .args(["link", "show", lab::GW_LAN_IF]))
    .expect("ip link");
    let link = String::from_utf8_lossy(&xdp.stdout);
    assert!(
        link.contains("xdp"),
        "the pinned program stays attached at SIGTERM: {link}"
    );
    let instance = bpffs.path().join("default");
    assert_eq!(
        std::fs::metadata(&instance)
            .expect("the instance directory")
            .uid(),
        nobody.0,
        "the instance directory is nobody's, so nobody pinned into it"
    );
    let out = sh(lab.cmd(&lab.gateway, bin.to_str().expect("utf8")).args([
        "detach",
        "--pin-root",
        bpffs.arg(),
    ]))
    .expect("xdp-audit detach");
    assert!(out.status.success(), "detach");
    let xdp = sh(lab
        .cmd(&lab.gateway, "ip")
        .args(["link", "show", lab::GW_LAN_IF]))
    .expect("ip link");
    let link = String::from_utf8_lossy(&xdp.stdout);
    assert!(!link.contains("xdp"), "detach removed the program: {link}");

    let mut files = Vec::new();
    walk(&log_dir, &mut files);
    assert!(
        files.iter().any(|(_, m)| m.is_file()),
        "the store has files"
    );
    for (path, meta) in &files {
        let mode = meta.mode() & 0o7777;
        assert_eq!((meta.uid(), meta.gid()), nobody, "{} owner", path.display());
        let want = if meta.is_dir() { 0o750 } else { 0o640 };
        assert_eq!(mode, want, "{}: mode {mode:o}", path.display());
    }
    // Read after the walk: a query run as root appends its access entry to operator.log,
    // which it creates as root when the agent has not yet.
    let records = agent.records().expect("read the store");
    assert!(
        records.iter().any(|r| r["dst_ip"] == lab::SERVER_V4),
        "a record of the allowed flow: {records:?}"
    );
}

/// The three capabilities the unit grants, as setpriv names them.
const UNIT_CAPS: &str = "+bpf,+net_admin,+perfmon";

#[test]
fn agent_started_like_the_unit_loads_then_drops_its_ambient_capabilities() {
    let host_mounts = host_bpffs_mounts();
    let lab = Lab::new("amb").expect("build the netns lab");
    let tmp = lab.temp_dir("ambient").expect("temp dir");
    let log_dir = tmp.path().join("log");
    for dir in [log_dir.clone(), log_dir.join("state")] {
        std::fs::create_dir_all(&dir).expect("create the store directory");
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown to nobody");
    }
    // systemd's User=, AmbientCapabilities= and CapabilityBoundingSet=, done by setpriv.
    let wrapper = tmp.path().join("as-unit.sh");
    let bin = binary().expect("agent binary");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nset -e\n\
             # the unit's ExecStartPre, in the mount namespace of ip netns exec\n\
             mount -t bpf -o mode=0700 bpf /sys/fs/bpf\n\
             install -d -o 65534 -g 65534 -m 0700 /sys/fs/bpf/xdp-audit\n\
             chmod o+x /sys/fs/bpf\n\
             exec setpriv --reuid=65534 --regid=65534 --clear-groups \\\n  \
             --inh-caps=-all,{UNIT_CAPS} --ambient-caps={UNIT_CAPS} \\\n  \
             --bounding-set=-all,{UNIT_CAPS} {} \"$@\"\n",
            bin.display()
        ),
    )
    .expect("write the wrapper");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the wrapper");
    }
    let mut agent = Agent::start(
        &lab,
        &lab.gateway.clone(),
        &wrapper,
        &log_dir,
        &[
            "--iface",
            lab::GW_LAN_IF,
            "--sweep-interval",
            "200ms",
            // See above: no NAT attribution, so no capability is kept.
            "--nat",
            "off",
        ],
    )
    .expect("the agent loads and attaches with the unit's three capabilities");
    agent.read_with(&bin);
    let pid = agent.pid().expect("the agent runs");
    let unit_bounding = format!("{:016x}", (1u64 << 39) | (1 << 38) | (1 << 12));
    for st in threads(pid) {
        let who = field(&st, "Name");
        assert_eq!(
            field(&st, "Uid"),
            "65534\t65534\t65534\t65534",
            "{who}: uids"
        );
        for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
            assert_eq!(field(&st, set), "0000000000000000", "{who}: {set}");
        }
        assert_eq!(
            field(&st, "CapBnd"),
            unit_bounding,
            "{who}: the unit's bounding set"
        );
        assert_eq!(field(&st, "NoNewPrivs"), "1", "{who}");
    }
    wait_until(Duration::from_secs(10), "status.json is written", || {
        agent.status().is_ok()
    });
    assert_eq!(agent.stop().expect("stop the agent"), 0, "clean exit");
    assert_eq!(
        host_bpffs_mounts(),
        host_mounts,
        "the unit's mount of /sys/fs/bpf stayed in the agent's mount namespace"
    );
}
