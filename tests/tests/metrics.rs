//! The Prometheus endpoint of a real agent in the netns lab: `promtool check metrics` (Debian
//! `prometheus`) accepts what it serves, its counters move as the lab drives passed and
//! blocked traffic, a rejected list edit shows per file, and no family's label set grows with
//! the rules loaded or hit. Also: a non-loopback address is refused without
//! `--metrics-public`. Needs root.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::wait::wait_until;

/// Where the agent serves the metrics, on the gateway namespace's loopback.
const METRICS: &str = "127.0.0.1:9477";
/// Rules with their own `rule_hits_total` series in this test.
const TOP_RULES: usize = 3;
/// Blocked addresses the client tries, more than [`TOP_RULES`], each its own rule.
const BLOCKED: [&str; 5] = [
    "203.0.113.3",
    "203.0.113.4",
    "203.0.113.5",
    "203.0.113.6",
    "203.0.113.7",
];
/// Rules that are loaded and never hit.
const IDLE_RULES: usize = 5_000;
const PORT: u16 = 8080;

/// One scrape from inside the gateway namespace: the body of a 200 answer.
fn scrape(lab: &Lab) -> String {
    let (status, body) = run_in(&lab.gateway, || {
        let addr: SocketAddr = METRICS.parse()?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("no header end in {answer:?}"))?;
        Ok((
            head.lines().next().unwrap_or("").to_owned(),
            body.to_owned(),
        ))
    })
    .unwrap_or_else(|e| panic!("scraping http://{METRICS}/metrics in the gateway: {e:#}"));
    assert_eq!(status, "HTTP/1.1 200 OK", "the scrape's status line");
    body
}

/// Every sample: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            Some((series.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn value(text: &str, series: &str) -> f64 {
    samples(text)
        .get(series)
        .copied()
        .unwrap_or_else(|| panic!("the scrape has no series {series}:\n{text}"))
}

/// Series per family (histograms: per `_bucket`, `_sum`, `_count` name).
fn series_per_family(text: &str) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for series in samples(text).keys() {
        let name = series.split('{').next().unwrap_or(series).to_owned();
        *n.entry(name).or_default() += 1;
    }
    n
}

/// `promtool check metrics` on `text`: it must pass without a problem.
fn promtool(text: &str) {
    lab::require("promtool", "prometheus").expect("promtool");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP server in the internet namespace that reads until the client closes.
fn start_server(lab: &Lab) {
    let ns = lab.internet.clone();
    std::thread::spawn(move || {
        let _ = run_in(&ns, || -> anyhow::Result<()> {
            let l = TcpListener::bind((lab::SERVER_V4, PORT))?;
            for conn in l.incoming() {
                let mut conn = conn?;
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
            Ok(())
        });
    });
}

/// A short exchange with the server (passed), or an attempt at a blocked address (dropped).
fn connect(lab: &Lab, addr: &'static str) -> bool {
    run_in(&lab.client, move || {
        let sa = SocketAddr::new(addr.parse()?, PORT);
        Ok(
            match TcpStream::connect_timeout(&sa, Duration::from_millis(500)) {
                Ok(mut s) => {
                    s.write_all(b"hello")?;
                    true
                }
                Err(_) => false,
            },
        )
    })
    .expect("client thread")
}

#[test]
fn a_real_scrape_passes_promtool_moves_with_traffic_and_stays_bounded() {
    let lab = Lab::new("met").expect("build the netns lab");
    let dir = lab.temp_dir("met").expect("temp dir");
    let block = dir.path().join("block.list");
    let mut list: String = BLOCKED.iter().map(|a| format!("{a}\n")).collect();
    for i in 0..IDLE_RULES {
        list.push_str(&format!(
            "10.{}.{}.{}\n",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        ));
    }
    std::fs::write(&block, list).expect("write the blocklist");
    let bin = binary().expect("agent binary");
    let instance = format!("met-{}", lab.id);
    let top = TOP_RULES.to_string();
    let mut agent = Agent::start(
        &lab,
        &lab.gateway,
        &bin,
        &dir.path().join("log"),
        &[
            "--no-pin",
            "--instance",
            &instance,
            "--iface",
            lab::GW_LAN_IF,
            "--blocklist",
            block.to_str().expect("utf8"),
            "--metrics",
            METRICS,
            "--metrics-top-rules",
            &top,
            "--sweep-interval",
            "200ms",
            "--close-linger",
            "200ms",
            "--fsync-interval",
            "200ms",
        ],
    )
    .expect("start the agent");
    start_server(&lab);
    lab.wait_tcp(lab::SERVER_V4, PORT, Duration::from_secs(5))
        .expect("server up");

    // The first sweep's figures, before any traffic of ours.
    let mut before = String::new();
    wait_until(Duration::from_secs(10), "the first sweep's figures", || {
        before = scrape(&lab);
        before.contains("xdp_audit_packets_total{")
    });
    promtool(&before);
    let iface = format!(
        "xdp_audit_interface_attach_info{{interface=\"{}\",mode=\"",
        lab::GW_LAN_IF
    );
    assert!(
        before.contains(&iface),
        "attach mode of {}: {before}",
        lab::GW_LAN_IF
    );
    assert!(
        value(&before, "xdp_audit_ring_size_bytes") > 0.0,
        "ring size read"
    );
    assert!(value(&before, "xdp_audit_flow_table_capacity{family=\"ipv4\"}") > 0.0);
    // The drop-record budgets in force (the defaults): the family was never served.
    assert_eq!(
        value(
            &before,
            "xdp_audit_flood_budget_records_per_second{scope=\"rule\"}"
        ),
        1000.0
    );
    assert_eq!(
        value(
            &before,
            "xdp_audit_flood_budget_records_per_second{scope=\"total\"}"
        ),
        20000.0
    );

    for _ in 0..3 {
        assert!(connect(&lab, lab::SERVER_V4), "the server is reachable");
    }
    for (i, addr) in BLOCKED.iter().enumerate() {
        // Unequal hit counts, so the top rules are the first ones.
        for _ in 0..BLOCKED.len() - i {
            assert!(!connect(&lab, addr), "{addr} is blocked");
        }
    }
    let dropped = "xdp_audit_packets_dropped_total{reason=\"list\"}";
    let records = "xdp_audit_flow_records_total";
    let fsyncs = "xdp_audit_journal_fsync_seconds_count";
    let hits = "xdp_audit_list_hits_total{file=\"".to_owned() + block.to_str().expect("utf8");
    let block_hits = format!("{hits}\",kind=\"block\"}}");
    let mut after = String::new();
    // The rule hits come from the status snapshot, written once a sweep: wait for one taken
    // after the last blocked attempt, as for the other figures.
    wait_until(
        Duration::from_secs(15),
        "dropped packets, flow records, fsyncs and every blocked SYN's hit show in the metrics",
        || {
            after = scrape(&lab);
            value(&after, dropped) > value(&before, dropped)
                && value(&after, records) >= value(&before, records) + 3.0
                && value(&after, fsyncs) > value(&before, fsyncs)
                && value(&after, "xdp_audit_records_durable_total") >= 3.0
                && value(&after, &block_hits) >= 15.0
        },
    );
    promtool(&after);
    let tcp = "xdp_audit_packets_total{outcome=\"parsed_tcp\"}";
    assert!(
        value(&after, tcp) > value(&before, tcp),
        "TCP packets counted"
    );
    assert!(
        value(&after, &block_hits) >= 15.0,
        "the list file's hits: every blocked attempt's SYN"
    );

    // Bounded: the rules hit beyond the top N are one gauge per kind, and no family has
    // more series than the lab's few interfaces, files, kinds and fixed label values allow.
    let families = series_per_family(&after);
    assert_eq!(
        families.get("xdp_audit_rule_hits_total"),
        Some(&TOP_RULES),
        "the top {TOP_RULES} rules, with {} rules loaded and {} hit",
        IDLE_RULES + BLOCKED.len(),
        BLOCKED.len()
    );
    let first = format!(
        "xdp_audit_rule_hits_total{{rule=\"{}:1\",kind=\"block\"}}",
        block.display()
    );
    assert!(
        value(&after, &first) >= 5.0,
        "the most-hit rule has its own series"
    );
    let other = "xdp_audit_rule_hits_other{kind=\"block\"}";
    assert!(
        value(&after, other) >= 3.0,
        "the two rules outside the top 3 summed as other"
    );
    let widest = families.iter().max_by_key(|(_, n)| **n).expect("families");
    assert!(
        *widest.1 <= 30,
        "family {} has {} series: a label set is not bounded",
        widest.0,
        widest.1
    );

    // A bad edit of the list is rejected and shows per file.
    std::fs::write(&block, "203.0.113.3\nnot an address\n").expect("edit the blocklist");
    let success = format!(
        "xdp_audit_list_last_reload_success{{file=\"{}\"}}",
        block.display()
    );
    let mut reloaded = String::new();
    wait_until(
        Duration::from_secs(10),
        "the rejected reload in the metrics",
        || {
            reloaded = scrape(&lab);
            samples(&reloaded).get(&success) == Some(&0.0)
        },
    );
    let rejected = format!(
        "xdp_audit_list_reloads_total{{file=\"{}\",result=\"rejected\"}}",
        block.display()
    );
    assert_eq!(value(&reloaded, &rejected), 1.0, "one rejected reload");
    promtool(&reloaded);

    // Anything but GET or HEAD /metrics is refused.
    let answer = run_in(&lab.gateway, || {
        let mut s = TcpStream::connect(METRICS)?;
        s.write_all(b"GET / HTTP/1.1\r\n\r\n")?;
        let mut a = String::new();
        s.read_to_string(&mut a)?;
        Ok(a)
    })
    .expect("request /");
    assert!(
        answer.starts_with("HTTP/1.1 404 "),
        "GET / answered {answer:?}"
    );
    assert_eq!(agent.stop().expect("stop the agent"), 0, "clean exit");
}

#[test]
fn a_non_loopback_address_is_refused_without_metrics_public() {
    let bin = binary().expect("agent binary");
    let out = Command::new(&bin)
        .args([
            "run",
            "--iface",
            "lo",
            "--no-pin",
            "--metrics",
            "0.0.0.0:9477",
        ])
        .output()
        .expect("run the agent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {err}");
    assert!(
        err.contains("--metrics 0.0.0.0:9477") && err.contains("--metrics-public"),
        "the error names the flag and the way out: {err}"
    );
}
