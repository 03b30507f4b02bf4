//! Alerts end to end in the netns lab, with the real agent and a real HTTP receiver on the
//! gateway's loopback: blocked hits, a burst, a bad list, a full ring buffer, a full flow
//! table and a full disk each raise exactly one alert, delivered to the webhook and written to
//! `alerts.jsonl` inside the hash chain (`verify` fails when a line is removed); a crash and a
//! damaged segment are alerted at the next start; `status` says when the agent is down; an
//! alert active when the agent dies is carried on by the next one and resolved once.
//! Needs root.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::tmpfs::Tmpfs;
use xdp_audit_lab::wait::{poll_until, wait_until};
use xdp_audit_lab::webhook::Receiver;

const BLOCKED_IP: &str = "203.0.113.3";
const PORT: u16 = 8080;

/// Raised notices per alert id, as the webhook received them.
fn raised(hook: &Receiver) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for b in hook.bodies().iter().filter(|b| b["state"] == "raised") {
        *m.entry(b["id"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    m
}

/// Raised notices per alert id in the store's complete lines of `alerts.jsonl` (an append
/// the full disk cut short is no line; the next append cuts it off).
fn raised_in_chain(log: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(log.join("alerts.jsonl")).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut m = BTreeMap::new();
    for l in complete.lines() {
        let v: serde_json::Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("alerts.jsonl holds a line that is not JSON ({e}): {l}"));
        assert_eq!(
            v["kind"], "alert",
            "alerts.jsonl holds only alert lines: {l}"
        );
        if v["state"] == "raised" {
            *m.entry(v["id"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
    }
    m
}

fn connect(lab: &Lab, addr: &'static str, port: u16) -> bool {
    run_in(&lab.client, move || {
        let sa = SocketAddr::new(addr.parse()?, port);
        Ok(TcpStream::connect_timeout(&sa, Duration::from_millis(300)).is_ok())
    })
    .expect("client thread")
}

/// `n` new UDP flows from the client to `addr` as fast as it can send them.
fn flood(lab: &Lab, addr: &'static str, first_port: u16, n: u16) {
    run_in(&lab.client, move || {
        let s = UdpSocket::bind((lab::CLIENT_V4, 0))?;
        for p in first_port..first_port + n {
            s.send_to(b"x", (addr, p))?;
        }
        Ok(())
    })
    .expect("client thread");
}

/// `n` new DNS flows (one per source port) of full-size datagrams, sent together: each has
/// its payload copied into the ring (1,472 bytes), so a 4 KiB ring overflows for certain.
fn dns_flood(lab: &Lab, n: usize) {
    run_in(&lab.client, move || {
        let socks = (0..n)
            .map(|_| UdpSocket::bind((lab::CLIENT_V4, 0)))
            .collect::<Result<Vec<_>, _>>()?;
        let payload = [0u8; 1400];
        for s in &socks {
            s.send_to(&payload, (lab::SERVER_V4, 53))?;
        }
        Ok(())
    })
    .expect("client thread");
}

/// A lab named `tag` with a webhook receiver in the gateway and a temp dir.
fn webhook_lab(tag: &str) -> (Lab, Receiver, lab::TempDir) {
    let lab = Lab::new(tag).expect("build the netns lab");
    let hook = Receiver::start(Some(&lab.gateway), 0).expect("webhook receiver in the gateway");
    let tmp = lab.temp_dir(tag).expect("temp dir");
    (lab, hook, tmp)
}

/// Waits for the agent's first status snapshot: its signal handlers are in place by then.
fn wait_running(agent: &Agent) {
    wait_until(Duration::from_secs(10), "the first status snapshot", || {
        agent.status().is_ok()
    });
}

fn verify(bin: &Path, log: &Path) -> std::process::Output {
    Command::new(bin)
        .args(["verify", "--log-dir"])
        .arg(log)
        .output()
        .expect("run xdp-audit verify")
}

/// Fills the file system of `dir` with one file, until it refuses more.
fn fill(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

#[test]
fn lab_conditions_raise_one_alert_each_at_the_webhook_and_in_the_chain() {
    let lab = Lab::new("alr").expect("build the netns lab");
    lab.add_internet_address(BLOCKED_IP)
        .expect("add the blocked address");
    let hook = Receiver::start(Some(&lab.gateway), 0).expect("webhook receiver in the gateway");
    let fs = Tmpfs::mount("8m");
    let log = fs.path().join("log");
    let tmp = lab.temp_dir("alerts").expect("temp dir");
    let block = tmp.path().join("block.list");
    std::fs::write(&block, format!("{BLOCKED_IP}\n")).expect("write the blocklist");
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "blocklist = [{block:?}]\nsweep-interval = \"200ms\"\nfsync-interval = \"200ms\"\n\
             inactive-timeout = \"1s\"\n\
             flow-table-size = 64\nringbuf-bytes = 4096\nno-pin = true\n\
             [alerts]\nwebhook = {:?}\nwindow = \"1h\"\nburst_hits = 3\nflow_table_percent = 50\n\
             verify_interval = \"0\"\n",
            hook.url()
        ),
    )
    .expect("write the config");
    let bin = binary().expect("agent binary");
    let args = [
        "--iface",
        lab::GW_LAN_IF,
        "--config",
        config.to_str().expect("utf8"),
    ];
    let mut agent = Agent::start(&lab, &lab.gateway, &bin, &log, &args).expect("start the agent");
    wait_running(&agent);

    // Three blocked connections: the first hit per client and rule, and a burst (threshold 3).
    for _ in 0..3 {
        assert!(!connect(&lab, BLOCKED_IP, PORT), "{BLOCKED_IP} is blocked");
    }
    // Sixty new DNS flows at once: their payload copies overflow the 4 KiB ring, start
    // events among them are lost, and they fill more than half the 64-entry table. The agent
    // is stopped meanwhile, so nothing drains the ring and the loss does not depend on how
    // fast its reader runs on a loaded machine (a CI run lost only two payload copies).
    let pid = agent.pid().expect("the agent runs") as i32;
    // SAFETY: kill(2) on the agent, our own child.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGSTOP) },
        0,
        "SIGSTOP the agent"
    );
    dns_flood(&lab, 60);
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGCONT) },
        0,
        "SIGCONT the agent"
    );
    // A line no list accepts: the file is rejected, its last good version stays.
    std::fs::write(&block, format!("{BLOCKED_IP}\n300.1.2.3\n")).expect("write a bad list");

    let required = [
        "XA-BLOCK-BURST",
        "XA-BLOCK-FIRST",
        "XA-FLOW-START-LOSS",
        "XA-FLOW-TABLE-FULL",
        "XA-LIST-REJECTED",
        "XA-RING-LOSS",
    ];
    wait_until(
        Duration::from_secs(30),
        "each lab condition's alert at the webhook",
        || {
            let r = raised(&hook);
            required.iter().all(|id| r.contains_key(*id))
        },
    );
    // `status` reads the snapshot the agent writes once a sweep, which may predate the
    // webhook's delivery (and the stage's last batch of hits) by up to a sweep: wait for one
    // that shows the block alert with its three hits.
    let mut active = Vec::new();
    let shown = poll_until(
        Duration::from_secs(30),
        "the block alert with three hits in a status snapshot",
        || {
            let status = agent.status()?;
            active = status["alerts"]["active"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            Ok(active
                .iter()
                .any(|a| a["id"] == "XA-BLOCK-FIRST" && a["count"].as_u64() >= Some(3)))
        },
    );
    if let Err(e) = shown {
        panic!("{e}: the block alert is active in status: {active:#?}");
    }
    let first = active
        .iter()
        .find(|a| a["id"] == "XA-BLOCK-FIRST")
        .expect("found by the poll");
    assert_eq!(first["subject"]["client"], lab::CLIENT_V4);
    assert!(
        first["count"].as_u64() >= Some(3),
        "three blocked records, one alert: {first}"
    );

    // The disk fills: the store degrades, its alert reaches the webhook at once and the
    // chain once space returns.
    let filler = fill(fs.path());
    // A hundred flows, written within a second or two (at their first drop, or by the
    // sweeper after the 1 s inactive timeout): more records than the journal's last page
    // holds.
    flood(&lab, BLOCKED_IP, 40_000, 100);
    wait_until(
        Duration::from_secs(30),
        "the full disk's alert at the webhook",
        || raised(&hook).contains_key("XA-STORE-DEGRADED"),
    );
    std::fs::remove_file(&filler).expect("free the disk");
    wait_until(
        Duration::from_secs(30),
        "every raised alert in alerts.jsonl",
        || {
            let chain = raised_in_chain(&log);
            raised(&hook).keys().all(|id| chain.contains_key(id))
        },
    );

    assert_eq!(agent.stop().expect("stop"), 0, "clean exit");
    let at_hook = raised(&hook);
    assert!(
        at_hook.values().all(|&n| n == 1),
        "every condition raised exactly one alert: {at_hook:?}"
    );
    assert_eq!(
        raised_in_chain(&log),
        at_hook,
        "the chain holds what the webhook got"
    );

    // The stop sealed the journal and anchored the alert log: a removed line fails verify.
    let ok = verify(&bin, &log);
    assert!(
        ok.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let alerts = log.join("alerts.jsonl");
    let text = std::fs::read_to_string(&alerts).expect("read alerts.jsonl");
    let without_first: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&alerts, without_first.join("\n") + "\n").expect("remove an alert line");
    let bad = verify(&bin, &log);
    let said = String::from_utf8_lossy(&bad.stdout);
    assert!(
        !bad.status.success() && said.contains("BROKEN") && said.contains("alerts.jsonl"),
        "verify must fail naming alerts.jsonl: {said}"
    );
}

#[test]
fn a_crash_and_a_damaged_segment_are_alerted_at_the_next_start_and_status_says_when_down() {
    let (lab, hook, tmp) = webhook_lab("alc");
    let log = tmp.path().join("log");
    let bin = binary().expect("agent binary");
    let url = hook.url();
    let args = [
        "--no-pin",
        "--iface",
        lab::GW_LAN_IF,
        "--sweep-interval",
        "200ms",
        "--alert-webhook",
        &url,
        "--alert-verify-interval",
        "1s",
    ];
    // A clean run seals a segment; the next one is killed and leaves its journal.
    let mut a = Agent::start(&lab, &lab.gateway, &bin, &log, &args).expect("first agent");
    wait_running(&a);
    flood(&lab, lab::SERVER_V4, 30_000, 3);
    assert_eq!(a.stop().expect("stop"), 0);
    let mut b = Agent::start(&lab, &lab.gateway, &bin, &log, &args).expect("second agent");
    wait_running(&b);
    b.crash().expect("kill -9 the second agent");
    // The clock's state is the host's: whatever it is, it is no crash.
    let r = raised(&hook);
    assert!(
        r.keys().all(|id| id == "XA-CLOCK-UNSYNC"),
        "nothing to alert yet: {r:?}"
    );

    // The sealed segment is damaged (one byte in its middle).
    let segment = std::fs::read_dir(&log)
        .expect("list the store")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .expect("the first agent sealed a segment");
    let mut bytes = std::fs::read(&segment).expect("read the segment");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&segment, &bytes).expect("damage the segment");

    let mut c = Agent::start(&lab, &lab.gateway, &bin, &log, &args).expect("third agent");
    wait_until(
        Duration::from_secs(30),
        "the crash and the damage at the webhook",
        || {
            let r = raised(&hook);
            r.contains_key("XA-AGENT-CRASHED") && r.contains_key("XA-CHAIN-BROKEN")
        },
    );
    // Verified every second: the damage is seen again and again, and stays one alert.
    wait_until(
        Duration::from_secs(30),
        "the broken chain seen three times",
        || {
            c.status().ok().and_then(|s| {
                s["alerts"]["active"]
                    .as_array()?
                    .iter()
                    .find(|a| a["id"] == "XA-CHAIN-BROKEN")?["count"]
                    .as_u64()
            }) >= Some(3)
        },
    );
    let broken = hook
        .bodies()
        .into_iter()
        .find(|b| b["id"] == "XA-CHAIN-BROKEN")
        .expect("the chain alert");
    assert_eq!(broken["severity"], "critical");
    assert!(
        broken["subject"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(".parquet")),
        "the damaged segment is named: {broken}"
    );
    let r = raised(&hook);
    assert_eq!(
        (r["XA-AGENT-CRASHED"], r["XA-CHAIN-BROKEN"]),
        (1, 1),
        "{r:?}"
    );
    assert_eq!(c.stop().expect("stop"), 0);

    // The agent is down: status says so, shows the last snapshot's age and the alerts.
    let out = Command::new(&bin)
        .args(["status", "--state-dir"])
        .arg(log.join("state"))
        .output()
        .expect("run xdp-audit status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit status 3 when down: {text}"
    );
    assert!(
        text.contains("AGENT NOT RUNNING") && text.contains(" ago"),
        "{text}"
    );
    assert!(
        text.contains("XA-CHAIN-BROKEN"),
        "the alerts of the last snapshot: {text}"
    );

    // The store wiped while no agent runs (its state directory kept): the next agent's
    // check finds a valid empty chain, which no longer holds the end the last check saw.
    for e in std::fs::read_dir(&log).expect("list the store").flatten() {
        if e.file_name() != "state" {
            let p = e.path();
            let gone = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            gone.unwrap_or_else(|e| panic!("wipe {}: {e}", p.display()));
        }
    }
    let mut d = Agent::start(&lab, &lab.gateway, &bin, &log, &args).expect("fourth agent");
    let lost = || {
        hook.bodies().into_iter().find(|b| {
            b["id"] == "XA-CHAIN-BROKEN"
                && b["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("no longer holds"))
        })
    };
    wait_until(
        Duration::from_secs(30),
        "the wiped store at the webhook",
        || lost().is_some(),
    );
    assert_eq!(d.stop().expect("stop"), 0);
    let wiped = lost().expect("the alert");
    assert!(
        (wiped["subject"]["file"].as_str()).is_some_and(|f| f.ends_with("manifest.jsonl")),
        "{wiped}"
    );
}

/// An agent started on a full disk (restarted while it was): it starts and enforces its
/// lists, and its records reach the store once space returns. How full the disk is when the
/// store opens depends on what the start frees first (a truncated lock file, the attribution
/// state taken back), so this passes on a build whose open fails on a disk that stays full;
/// `store_disk_full`'s test holds that case.
#[test]
fn an_agent_started_on_a_full_disk_blocks_and_writes_its_records_once_space_returns() {
    let lab = Lab::new("afd").expect("build the netns lab");
    lab.add_internet_address(BLOCKED_IP)
        .expect("add the blocked address");
    let fs = Tmpfs::mount("8m");
    let log = fs.path().join("log");
    let tmp = lab.temp_dir("fulldisk").expect("temp dir");
    let block = tmp.path().join("block.list");
    std::fs::write(&block, format!("{BLOCKED_IP}\n")).expect("write the blocklist");
    let bin = binary().expect("agent binary");
    let args = [
        "--iface",
        lab::GW_LAN_IF,
        "--blocklist",
        block.to_str().expect("utf8"),
        "--no-pin",
        "--sweep-interval",
        "200ms",
        "--fsync-interval",
        "200ms",
        "--inactive-timeout",
        "1s",
    ];
    // A first run makes the store; the disk is full when the second starts.
    let mut first = Agent::start(&lab, &lab.gateway, &bin, &log, &args).expect("first agent");
    assert_eq!(first.stop().expect("stop"), 0, "clean exit");
    let filler = fill(fs.path());
    let mut agent = Agent::start(&lab, &lab.gateway, &bin, &log, &args)
        .expect("an agent starts on a full disk");
    assert!(!connect(&lab, BLOCKED_IP, PORT), "{BLOCKED_IP} is blocked");
    agent
        .wait_for("blocked by", Duration::from_secs(30))
        .expect("the drop record reached the records stage");
    std::fs::remove_file(&filler).expect("free the disk");
    assert_eq!(agent.stop().expect("stop"), 0, "clean exit");
    let blocked = agent
        .query(&["--ip", BLOCKED_IP])
        .expect("query the blocked address");
    assert!(
        blocked.iter().any(|r| r["end_reason"] == "drop"),
        "the blocked connection's drop record, held through the full disk: {blocked:?}"
    );
    assert!(
        verify(&bin, &log).status.success(),
        "verify after the full disk"
    );
}

/// Notices of `id` at the webhook, per state.
fn notices(hook: &Receiver, id: &str) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut m: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for b in hook.bodies().into_iter().filter(|b| b["id"] == id) {
        m.entry(b["state"].as_str().unwrap_or("?").to_owned())
            .or_default()
            .push(b);
    }
    m
}

/// A condition that outlives the agent is one alert: an agent killed with a list file
/// rejected leaves the alert active in its last status snapshot; the next agent, reading
/// the same bad file at its start, counts on that alert instead of raising another, keeps
/// it while the file stays bad, and resolves it a window after the file is mended.
#[test]
fn an_alert_active_when_the_agent_dies_is_carried_on_and_resolved_once() {
    let (lab, hook, tmp) = webhook_lab("alcarry");
    let log = tmp.path().join("log");
    let block = tmp.path().join("block.list");
    std::fs::write(&block, format!("{BLOCKED_IP}\n")).expect("write the blocklist");
    let config = |name: &str, window: &str| {
        let path = tmp.path().join(name);
        std::fs::write(
            &path,
            format!(
                "blocklist = [{block:?}]\nsweep-interval = \"200ms\"\nno-pin = true\n\
                 [alerts]\nwebhook = {:?}\nwindow = {window:?}\nverify_interval = \"0\"\n",
                hook.url()
            ),
        )
        .expect("write the config");
        path
    };
    // B's window outlasts its start (the program's load), in which the list is read again.
    let (first, second) = (config("a.toml", "1h"), config("b.toml", "20s"));
    let bin = binary().expect("agent binary");
    let args = |config: &Path| {
        let config = config.to_str().expect("utf8").to_owned();
        [
            "--iface".to_owned(),
            lab::GW_LAN_IF.to_owned(),
            "--config".to_owned(),
            config,
        ]
    };
    let a_args = args(&first);
    let a_args: Vec<&str> = a_args.iter().map(String::as_str).collect();
    let mut a = Agent::start(&lab, &lab.gateway, &bin, &log, &a_args).expect("agent A");
    wait_running(&a);
    std::fs::write(&block, format!("{BLOCKED_IP}\n300.1.2.3\n")).expect("write a bad list");
    wait_until(
        Duration::from_secs(30),
        "the rejected list in A's status snapshot",
        || {
            a.status().is_ok_and(|s| {
                s["alerts"]["active"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| x["id"] == "XA-LIST-REJECTED"))
            })
        },
    );
    a.crash().expect("kill -9 agent A");

    let b_args = args(&second);
    let b_args: Vec<&str> = b_args.iter().map(String::as_str).collect();
    let mut b = Agent::start(&lab, &lab.gateway, &bin, &log, &b_args).expect("agent B");
    let counted_on = |b: &Agent| {
        b.status().is_ok_and(|s| {
            s["alerts"]["active"].as_array().is_some_and(|v| {
                v.iter()
                    .any(|x| x["id"] == "XA-LIST-REJECTED" && x["count"].as_u64() >= Some(2))
            })
        })
    };
    wait_until(
        Duration::from_secs(60),
        "B's rejection of the file counted on the carried alert",
        || counted_on(&b),
    );
    // Watched past B's 20 s window, the file still bad: the alert holds all along.
    let watch_until = std::time::Instant::now() + Duration::from_secs(25);
    while std::time::Instant::now() < watch_until {
        assert!(
            !notices(&hook, "XA-LIST-REJECTED").contains_key("resolved"),
            "the alert resolved while the file stayed bad"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(counted_on(&b), "the alert is active in B's status");
    std::fs::write(&block, format!("{BLOCKED_IP}\n")).expect("mend the list");
    wait_until(
        Duration::from_secs(90),
        "the carried alert resolved at the webhook",
        || notices(&hook, "XA-LIST-REJECTED").contains_key("resolved"),
    );
    assert_eq!(b.stop().expect("stop B"), 0);
    let n = notices(&hook, "XA-LIST-REJECTED");
    let count = |state: &str| n.get(state).map_or(0, Vec::len);
    assert_eq!(
        (count("raised"), count("resolved")),
        (1, 1),
        "one alert over both agents: {n:#?}"
    );
    assert!(
        n["resolved"][0]["count"].as_u64() >= Some(2),
        "B's rejection of the same file counted on A's alert: {:#}",
        n["resolved"][0]
    );
    assert_eq!(
        raised(&hook).get("XA-AGENT-CRASHED"),
        Some(&1),
        "A's death is an alert of its own"
    );
}

/// A store the start cannot fully use still records: a manifest cut short (the agent refused
/// to start) and a shipping lock held by another shipper (the agent refused to start, then,
/// once let through, said nothing of it). The agent runs, `status` names both,
/// `XA-STORE-DAMAGED` and `XA-SHIP-FAILING` reach the webhook; with the manifest restored,
/// the next start seals what was recorded meanwhile and the store verifies.
#[test]
fn a_torn_manifest_and_a_held_ship_lock_do_not_stop_recording() {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::PermissionsExt as _;
    let (lab, hook, tmp) = webhook_lab("alm");
    let log = tmp.path().join("log");
    let bin = binary().expect("agent binary");
    let url = hook.url();
    let creds = tmp.path().join("s3.credentials");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = k\naws_secret_access_key = s\n",
    )
    .expect("write credentials");
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let creds = creds.to_str().expect("UTF-8 path").to_owned();
    let args = [
        "--no-pin",
        "--iface",
        lab::GW_LAN_IF,
        "--sweep-interval",
        "200ms",
        "--alert-webhook",
        &url,
        "--ship",
        "s3://audit/fleet",
        "--gateway-id",
        "gw-a",
        "--ship-endpoint",
        "http://127.0.0.1:9",
        "--ship-credentials",
        &creds,
    ];
    let mut a = Agent::start(&lab, &lab.gateway, &bin, &log, &args).expect("first agent");
    wait_running(&a);
    flood(&lab, lab::SERVER_V4, 31_000, 3);
    assert_eq!(a.stop().expect("stop"), 0);
    let manifest = log.join("manifest.jsonl");
    let original = std::fs::read(&manifest).expect("the first agent sealed");
    std::fs::write(&manifest, &original[..original.len() - 10]).expect("tear the manifest");
    let lock = std::fs::File::create(log.join("ship.lock")).expect("the ship lock");
    // SAFETY: flock on a descriptor this test owns: another shipper holds the lock.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);

    let mut b = Agent::start(&lab, &lab.gateway, &bin, &log, &args).expect("second agent");
    wait_running(&b);
    flood(&lab, lab::SERVER_V4, 32_000, 3);
    wait_until(
        Duration::from_secs(30),
        "the damage and the shipping at the webhook",
        || {
            let r = raised(&hook);
            r.contains_key("XA-STORE-DAMAGED") && r.contains_key("XA-SHIP-FAILING")
        },
    );
    let s = b.status().expect("status");
    assert!(
        s["store"]["manifest_unreadable"].is_string(),
        "{}",
        s["store"]
    );
    assert!(
        s["ship"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("another shipper")),
        "{}",
        s["ship"]
    );
    assert_eq!(b.stop().expect("stop"), 0);
    assert_eq!(
        std::fs::read(&manifest).expect("read"),
        &original[..original.len() - 10],
        "left as it was"
    );
    drop(lock);
    std::fs::write(&manifest, &original).expect("restore the manifest");
    let mut c = Agent::start(&lab, &lab.gateway, &bin, &log, &args).expect("third agent");
    wait_running(&c);
    assert_eq!(c.stop().expect("stop"), 0);
    let v = verify(&bin, &log);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let before: usize = String::from_utf8_lossy(&original)
        .lines()
        .filter(|l| l.contains("\"segment\""))
        .count();
    let after = std::fs::read_to_string(&manifest)
        .expect("read")
        .lines()
        .filter(|l| l.contains("\"segment\""))
        .count();
    assert!(
        after > before,
        "the journals recorded meanwhile sealed: {before} -> {after}"
    );
}
