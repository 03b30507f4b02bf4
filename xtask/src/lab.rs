//! `cargo xtask lab`: the demo. Builds the agent, builds a client - gateway - internet lab
//! whose gateway masquerades the client side and serves it DHCP and DNS (dnsmasq), lets the
//! client take its address with a real DHCP client, attaches the agent to the gateway's
//! client-facing interface with a subscribers file, the lease file and conntrack, runs real
//! clients against real servers (HTTPS, HTTP, DNS, ping, IPv6), prints the audit records with
//! who and what behind each, and answers a lawful request (`query --nat IP:PORT --at T`).
//! Everything (namespaces, processes, the work folder) is removed on exit, on error and on
//! Ctrl-C; `--keep` keeps the work folder.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;
use xdp_audit_lab::agent::Agent;
use xdp_audit_lab::dhcp::{self, GatewayDnsmasq};
use xdp_audit_lab::lab::{self, Lab};
use xdp_audit_lab::servers;
use xdp_audit_lab::wait::poll_until;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn check_stop() -> anyhow::Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted; tearing the lab down");
    }
    Ok(())
}

fn step(what: &str) -> anyhow::Result<()> {
    check_stop()?;
    eprintln!("lab: {what}");
    Ok(())
}

/// One client action, shown with its own output; it must succeed.
fn client(lab: &Lab, title: &str, program: &str, args: &[&str]) -> anyhow::Result<()> {
    if !client_try(lab, title, program, args)? {
        bail!("{title} failed");
    }
    Ok(())
}

/// One client action the gateway must block: it must fail.
fn client_blocked(lab: &Lab, title: &str, program: &str, args: &[&str]) -> anyhow::Result<()> {
    if client_try(lab, title, program, args)? {
        bail!("{title} went through; the gateway should have blocked it");
    }
    eprintln!("      (blocked, as listed)");
    Ok(())
}

/// Runs a client command and shows its output; returns whether it succeeded.
fn client_try(lab: &Lab, title: &str, program: &str, args: &[&str]) -> anyhow::Result<bool> {
    step(title)?;
    let out = lab
        .cmd(&lab.client, program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines().take(6) {
        eprintln!("      {line}");
    }
    Ok(out.status.success())
}

/// The client's DHCP host name and the subscriber its MAC belongs to.
const HOSTNAME: &str = "demo-laptop";
const ACCOUNT: &str = "C-0042";
const TLS_NAME: &str = "tls.lab.example";
const WWW_NAME: &str = "www.lab.example";

/// The agent: `XDP_AUDIT_BIN` if set (e.g. a debug build), else a release build made now.
fn agent_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("XDP_AUDIT_BIN") {
        return Ok(PathBuf::from(bin));
    }
    crate::cargo(&["build", "--release", "-p", "xdp-audit"])?;
    let bin = crate::deb::target_dir().join("release/xdp-audit");
    bin.canonicalize()
        .with_context(|| format!("{} not built", bin.display()))
}

/// The lab's work folder (servers' files, lists, the audit store): removed on drop, so on
/// success, on error and on Ctrl-C alike, unless kept for a look.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// A new folder, never one a kept run left under the same pid (a container reuses
    /// pids): its store would mix old records into the demo, and a run without `--keep`
    /// would remove it.
    fn create(keep: bool) -> anyhow::Result<Self> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path =
            std::env::temp_dir().join(format!("xdp-audit-lab-{}-{secs}", std::process::id()));
        std::fs::create_dir_all(std::env::temp_dir())
            .and_then(|()| std::fs::create_dir(&path))
            .with_context(|| format!("create {}", path.display()))?;
        Ok(Self { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("lab: kept {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("lab: could not remove {}: {e}", self.path.display());
        }
    }
}

/// A record's field as table text: strings bare, numbers as digits, null as `-`.
fn cell(r: &Value, field: &str) -> String {
    match &r[field] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        v => v.to_string(),
    }
}

/// `ip:port`, IPv6 in brackets so the port cannot be read as a last address group.
fn endpoint(r: &Value, ip: &str, port: &str) -> String {
    match r[ip].as_str() {
        Some(a) if a.contains(':') => format!("[{a}]:{}", cell(r, port)),
        Some(a) => format!("{a}:{}", cell(r, port)),
        None => "-".to_owned(),
    }
}

/// The records as two tables: the flows, then who and what behind each.
fn print_records(records: &[Value]) {
    println!(
        "{:<3} {:<15} {:<6} {:>28} {:>24} {:>5} {:>6} {:<6} {:<8} rule",
        "#", "time_start", "proto", "src", "dst", "pkts", "bytes", "flags", "end"
    );
    // `time_start` without the date: the demo runs within a minute.
    let time = |r: &Value| cell(r, "time_start").get(11..23).unwrap_or("?").to_owned();
    for (i, r) in records.iter().enumerate() {
        println!(
            "{:<3} {:<15} {:<6} {:>28} {:>24} {:>5} {:>6} {:<6} {:<8} {}",
            i + 1,
            time(r),
            cell(r, "proto"),
            endpoint(r, "src_ip", "src_port"),
            endpoint(r, "dst_ip", "dst_port"),
            cell(r, "packets"),
            cell(r, "bytes"),
            cell(r, "tcp_flags"),
            cell(r, "end_reason"),
            cell(r, "rule"),
        );
    }
    println!();
    println!(
        "{:<3} {:<8} {:<12} {:<17} {:<20} {:<24} dns_qname",
        "#", "user", "hostname", "src_mac", "nat", "domain (source)"
    );
    for (i, r) in records.iter().enumerate() {
        let domain = match (r["domain"].as_str(), r["domain_source"].as_str()) {
            (Some(d), Some(s)) => format!("{d} ({s})"),
            (Some(d), None) => d.to_owned(),
            _ => "-".to_owned(),
        };
        println!(
            "{:<3} {:<8} {:<12} {:<17} {:<20} {:<24} {}",
            i + 1,
            cell(r, "user"),
            cell(r, "hostname"),
            cell(r, "src_mac"),
            endpoint(r, "nat_ip", "nat_port"),
            domain,
            cell(r, "dns_qname"),
        );
    }
}

/// The lawful request: who had the outside address and port of `r` at the middle of its life.
fn nat_request(bin: &std::path::Path, log_dir: &std::path::Path, r: &Value) -> anyhow::Result<()> {
    let outside = endpoint(r, "nat_ip", "nat_port");
    let instant = |field: &str| -> anyhow::Result<jiff::Timestamp> {
        let text = r[field].as_str().context("a record without times")?;
        text.parse()
            .with_context(|| format!("{field} {text:?} is not RFC 3339"))
    };
    let (start, end) = (instant("time_start")?, instant("time_end")?);
    let at = start
        .checked_add(end.duration_since(start) / 2)
        .context("the flow's middle")?;
    let args = ["--nat", &outside, "--at", &at.to_string()];
    eprintln!("      xdp-audit query {}", args.join(" "));
    let out = std::process::Command::new(bin)
        .args(["query", "--log-dir"])
        .arg(log_dir)
        .args(args)
        .output()
        .context("run xdp-audit query --nat")?;
    if !out.status.success() {
        bail!(
            "query --nat failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// Runs the demo; `keep` keeps the work folder.
pub fn run(keep: bool) -> anyhow::Result<()> {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        // The terminal closed: torn down too, not left running.
        libc::signal(libc::SIGHUP, on_signal as *const () as libc::sighandler_t);
    }
    let bin = agent_binary()?;
    // Made before the lab so that it is dropped after it: the lab's servers write in it.
    let work_dir = WorkDir::create(keep)?;
    let work = work_dir.path.as_path();

    step("building namespaces client - gateway - internet; the gateway masquerades (nftables)")?;
    let mut lab = Lab::new("lab")?;
    eprintln!("      {} / {} / {}", lab.client, lab.gateway, lab.internet);
    lab.masquerade()?;
    let www = work.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(
        www.join("index.html"),
        "<h1>hello from the lab internet</h1>\n",
    )?;

    step(
        "starting servers in the internet namespace: HTTPS (openssl s_server) and HTTP (python3)",
    )?;
    let cert = servers::https(&mut lab, work, TLS_NAME)?;
    servers::http(&mut lab, &www)?;

    step("starting dnsmasq on the gateway: DHCP and DNS for the client side")?;
    let dns = GatewayDnsmasq::start(
        &mut lab,
        work,
        &[
            (TLS_NAME, lab::SERVER_V4),
            (WWW_NAME, lab::SERVER_V4),
            ("ads.lab.example", lab::SERVER_V4),
        ],
    )?;
    step(&format!("client: busybox udhcpc -x hostname:{HOSTNAME}"))?;
    let leased = dhcp::udhcpc(&lab, work, HOSTNAME, &dns)?;
    let mac = lab.mac(&lab.client, "eth0")?;
    eprintln!("      lease of {leased} for {mac}");
    lab.set_resolver(&lab.client.clone(), lab::GW_LAN_V4)?;

    step("starting xdp-audit on the gateway's client-facing interface")?;
    let log_dir = work.join("log");
    let block = work.join("block.list");
    std::fs::write(
        &block,
        "# the lab's blocklist\nads.lab.example\n203.0.113.66\nport tcp 25\n",
    )?;
    let subscribers = work.join("subscribers.csv");
    std::fs::write(
        &subscribers,
        format!("match,account,name\n{mac},{ACCOUNT},Demo User\n"),
    )?;
    eprintln!(
        "      --blocklist {}: ads.lab.example, 203.0.113.66, port tcp 25",
        block.display()
    );
    eprintln!(
        "      --subscribers {}: {mac} is {ACCOUNT}",
        subscribers.display()
    );
    eprintln!(
        "      --dhcp-leases {} (dnsmasq's lease file); NAT from conntrack",
        dns.leases.display()
    );
    let path = |p: &std::path::Path| p.to_str().map(str::to_owned).context("temp path not UTF-8");
    let (block_s, subs_s, leases_s) = (path(&block)?, path(&subscribers)?, path(&dns.leases)?);
    let mut agent = Agent::start(
        &lab,
        &lab.gateway,
        &bin,
        &log_dir,
        &[
            "--iface",
            lab::GW_LAN_IF,
            "--close-linger",
            "1s",
            "--blocklist",
            &block_s,
            "--subscribers",
            &subs_s,
            "--dhcp-leases",
            &leases_s,
            // `ip netns exec` gives the agent a mount namespace of its own, where pins
            // would vanish with it: the demo's agent lives and goes with the lab.
            "--no-pin",
        ],
    )?;

    client(
        &lab,
        &format!("client: DNS lookup of {WWW_NAME} through the gateway's dnsmasq"),
        "dig",
        &["+short", WWW_NAME, "A"],
    )?;
    let cert_s = path(&cert)?;
    client(
        &lab,
        &format!("client: HTTPS GET https://{TLS_NAME}/ (name resolved by dnsmasq)"),
        "curl",
        &[
            "-4",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} from %{remote_ip}\n",
            "--cacert",
            &cert_s,
            &format!("https://{TLS_NAME}/"),
        ],
    )?;
    client(
        &lab,
        &format!("client: HTTP GET http://{WWW_NAME}/"),
        "curl",
        &["-4", "-sS", &format!("http://{WWW_NAME}/")],
    )?;
    client(
        &lab,
        "client: HTTP GET over IPv6 (not translated)",
        "curl",
        &["-sS", "-6", "http://[2001:db8:2::2]/"],
    )?;
    client(
        &lab,
        "client: ping 203.0.113.2",
        "ping",
        &["-c", "2", "-i", "0.2", "203.0.113.2"],
    )?;

    client_blocked(
        &lab,
        "client: DNS lookup of ads.lab.example (listed domain)",
        "dig",
        &["+short", "+time=1", "+tries=1", "ads.lab.example", "A"],
    )?;
    client_blocked(
        &lab,
        "client: HTTP to 203.0.113.66 (listed address)",
        "curl",
        &["-sS", "--max-time", "2", "http://203.0.113.66/"],
    )?;
    client_blocked(
        &lab,
        "client: SMTP to 203.0.113.2:25 (listed port)",
        "curl",
        &["-sS", "--max-time", "2", "telnet://203.0.113.2:25"],
    )?;
    step("xdp-audit status: counters and list hits")?;
    // status.json is rewritten every sweep: wait for the one that holds the three hits.
    let hits = |s: &Value| {
        s["rules"].as_array().map_or(0, |r| {
            r.iter().filter(|r| r["hits"].as_u64() > Some(0)).count()
        })
    };
    poll_until(
        Duration::from_secs(10),
        "status shows the three blocks",
        || Ok(agent.status().is_ok_and(|s| hits(&s) >= 3)),
    )?;
    let status = agent.status()?;
    for r in status["rules"].as_array().into_iter().flatten() {
        eprintln!(
            "      {} {} hits",
            r["rule"].as_str().unwrap_or("?"),
            r["hits"]
        );
    }
    eprintln!(
        "      audit store: {} records accepted, {} durable, degraded: {}",
        status["store"]["accepted"], status["store"]["durable"], status["store"]["degraded"]
    );

    step("stopping the agent (SIGTERM: open flows are written with end reason shutdown)")?;
    let code = agent.stop()?;
    if code != 0 {
        bail!("the agent exited {code}");
    }
    let mut records = agent.records()?;
    records.sort_by(|a, b| a["time_start"].as_str().cmp(&b["time_start"].as_str()));
    print_records(&records);
    eprintln!(
        "lab: {} audit records in the store at {}",
        records.len(),
        log_dir.display()
    );

    step("a lawful request: who had this public address and port at that time?")?;
    let https = records
        .iter()
        .find(|r| r["dst_port"] == 443 && !r["nat_port"].is_null())
        .context("no record of the HTTPS flow with a NAT tuple")?;
    nat_request(&bin, &log_dir, https)?;

    step("verifying the store's hash chain (xdp-audit verify)")?;
    let verify = std::process::Command::new(&bin)
        .args(["verify", "--log-dir"])
        .arg(&log_dir)
        .output()
        .context("run xdp-audit verify")?;
    let verdict = String::from_utf8_lossy(&verify.stdout);
    eprintln!("      {}", verdict.trim());
    if !verify.status.success() {
        bail!("the audit store does not verify");
    }
    // SIGTERM sealed the live journal: every record printed above is in a sealed segment.
    if !verdict.contains(&format!("({} rows)", records.len())) {
        bail!(
            "verify does not count the {} records printed above: the journal was not sealed at shutdown",
            records.len()
        );
    }
    drop(lab);
    eprintln!("lab: namespaces removed");
    drop(work_dir);
    Ok(())
}
