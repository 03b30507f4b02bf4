//! `cargo xtask lab`: the demo. Builds the agent, builds a client - gateway - internet lab,
//! attaches the agent to the gateway's client-facing interface, runs real clients against
//! real servers, and prints the audit records. Everything is torn down on exit, on error and
//! on Ctrl-C.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context as _};
use xdp_audit_lab::agent::Agent;
use xdp_audit_lab::lab::{self, Lab};

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

/// Runs the demo.
pub fn run() -> anyhow::Result<()> {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    crate::cargo(&["build", "--release", "-p", "xdp-audit"])?;
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/xdp-audit");
    let bin = bin
        .canonicalize()
        .with_context(|| format!("{} not built", bin.display()))?;

    step("building namespaces client - gateway - internet")?;
    let mut lab = Lab::new("lab")?;
    eprintln!("      {} / {} / {}", lab.client, lab.gateway, lab.internet);
    let internet = lab.internet.clone();
    let work = std::env::temp_dir().join(format!("xdp-audit-lab-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let www = work.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(
        www.join("index.html"),
        "<h1>hello from the lab internet</h1>\n",
    )?;

    step("starting servers in the internet namespace: HTTP (python3) and DNS (dnsmasq)")?;
    let www_s = www.to_str().context("temp path not UTF-8")?;
    lab.spawn(
        &internet,
        "python3",
        &[
            "-m",
            "http.server",
            "8080",
            "--bind",
            "::",
            "--directory",
            www_s,
        ],
    )?;
    let pid_file = work.join("dnsmasq.pid");
    lab.spawn(
        &internet,
        "dnsmasq",
        &[
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=203.0.113.2",
            "--user=root",
            &format!("--pid-file={}", pid_file.display()),
            "--address=/www.lab.example/203.0.113.2",
            "--address=/www.lab.example/2001:db8:2::2",
        ],
    )?;
    lab.wait_tcp(lab::SERVER_V4, 8080, Duration::from_secs(10))?;

    step("starting xdp-audit on the gateway's client-facing interface, with a blocklist")?;
    let log_dir = work.join("log");
    let block = work.join("block.list");
    std::fs::write(
        &block,
        "# the lab's blocklist\nads.lab.example\n203.0.113.66\nport tcp 25\n",
    )?;
    eprintln!(
        "      {}: ads.lab.example, 203.0.113.66, port tcp 25",
        block.display()
    );
    let block_s = block.to_str().context("temp path not UTF-8")?;
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
            block_s,
            // `ip netns exec` gives the agent a mount namespace of its own, where pins
            // would vanish with it: the demo's agent lives and goes with the lab.
            "--no-pin",
        ],
    )?;

    client(
        &lab,
        "client: DNS lookup of www.lab.example (A and AAAA)",
        "dig",
        &["@203.0.113.2", "+short", "www.lab.example", "A"],
    )?;
    client(
        &lab,
        "client: DNS AAAA",
        "dig",
        &["@203.0.113.2", "+short", "www.lab.example", "AAAA"],
    )?;
    client(
        &lab,
        "client: HTTP GET over IPv4",
        "curl",
        &[
            "-sS",
            "--resolve",
            "www.lab.example:8080:203.0.113.2",
            "http://www.lab.example:8080/",
        ],
    )?;
    client(
        &lab,
        "client: HTTP GET over IPv6",
        "curl",
        &["-sS", "-6", "http://[2001:db8:2::2]:8080/"],
    )?;
    client(
        &lab,
        "client: ping 203.0.113.2",
        "ping",
        &["-c", "3", "-i", "0.2", "203.0.113.2"],
    )?;
    client(
        &lab,
        "client: ping -6 2001:db8:2::2",
        "ping",
        &["-6", "-c", "2", "-i", "0.2", "2001:db8:2::2"],
    )?;

    client_blocked(
        &lab,
        "client: DNS lookup of ads.lab.example (listed domain)",
        "dig",
        &[
            "@203.0.113.2",
            "+short",
            "+time=1",
            "+tries=1",
            "ads.lab.example",
            "A",
        ],
    )?;
    client_blocked(
        &lab,
        "client: HTTP to 203.0.113.66 (listed address)",
        "curl",
        &["-sS", "--max-time", "2", "http://203.0.113.66:8080/"],
    )?;
    client_blocked(
        &lab,
        "client: SMTP to 203.0.113.2:25 (listed port)",
        "curl",
        &["-sS", "--max-time", "2", "telnet://203.0.113.2:25"],
    )?;
    step("xdp-audit status: counters and list hits")?;
    std::thread::sleep(Duration::from_millis(1200));
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
    std::thread::sleep(Duration::from_millis(1500));
    let code = agent.stop()?;
    if code != 0 {
        bail!("the agent exited {code}");
    }
    let mut records = agent.records()?;
    records.sort_by(|a, b| a["time_start"].as_str().cmp(&b["time_start"].as_str()));
    println!(
        "{:<30} {:<6} {:>30} {:>30} {:>5} {:>8} {:<6} {:<9} rule",
        "time_start", "proto", "src", "dst", "pkts", "bytes", "flags", "end"
    );
    for r in &records {
        // IPv6 endpoints in brackets, so the port cannot be read as a last address group.
        let ep = |ip: &str, port: &str| match r[ip].as_str().unwrap_or("?") {
            a if a.contains(':') => format!("[{a}]:{}", r[port]),
            a => format!("{a}:{}", r[port]),
        };
        println!(
            "{:<30} {:<6} {:>30} {:>30} {:>5} {:>8} {:<6} {:<9} {}",
            r["time_start"].as_str().unwrap_or("?"),
            r["proto"].as_str().unwrap_or("?"),
            ep("src_ip", "src_port"),
            ep("dst_ip", "dst_port"),
            // JSON values ignore width and alignment: pad their text.
            r["packets"].to_string(),
            r["bytes"].to_string(),
            r["tcp_flags"].as_str().unwrap_or(""),
            r["end_reason"].as_str().unwrap_or("?"),
            r["rule"].as_str().unwrap_or(""),
        );
    }
    eprintln!(
        "lab: {} audit records in the store at {}",
        records.len(),
        log_dir.display()
    );
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
    Ok(())
}
