//! The incident report end to end: the real agent in a netns lab blocks one destination
//! and passes another; after it stops (sealing its journal into a signed chain entry),
//! `xdp-audit report` writes the window as HTML with a CSV attachment, as Markdown and as
//! JSON. The HTML is parsed (as XML: the page is well-formed by design) and opened in headless
//! Chromium for a screenshot; its counts equal `query`'s for the same filter, the
//! attachment's SHA-256 matches the file, and the three formats carry the same counts. Needs
//! root and the Debian `chromium` package.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use quick_xml::events::Event;
use quick_xml::XmlVersion;
use xdp_audit_lab::agent::{binary, Agent};
use xdp_audit_lab::lab::{self, require, sh, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::wait::wait_until;

const OK_IP: &str = lab::SERVER_V4;
const BLOCKED_IP: &str = "203.0.113.3";
const PORT: u16 = 8080;
const ALLOWED_FLOWS: usize = 3;
const BLOCKED_TRIES: usize = 2;

/// A TCP server that answers each connection with one line and closes it.
fn start_server(lab: &Lab, addr: &'static str) {
    let ns = lab.internet.clone();
    std::thread::spawn(move || {
        let _ = run_in(&ns, move || -> anyhow::Result<()> {
            let l = TcpListener::bind((addr, PORT))?;
            for conn in l.incoming() {
                let mut conn = conn?;
                let _ = conn.write_all(b"hello\n");
            }
            Ok(())
        });
    });
}

/// Connects from the client, reads the server's line and closes; whether it connected.
fn exchange(lab: &Lab, addr: &'static str) -> bool {
    run_in(&lab.client, move || {
        let sa = SocketAddr::new(addr.parse()?, PORT);
        let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_millis(700)) else {
            return Ok(false);
        };
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut line = String::new();
        let _ = s.read_to_string(&mut line);
        Ok(true)
    })
    .expect("client thread")
}

fn now_rfc3339(offset_s: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(offset_s);
    t.to_string()
}

fn run(bin: &Path, args: &[&str]) -> String {
    let out =
        sh(Command::new(bin).args(args)).unwrap_or_else(|e| panic!("xdp-audit {args:?}: {e}"));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn sha256sum(path: &Path) -> String {
    let out = sh(Command::new("sha256sum").arg(path)).expect("sha256sum (coreutils)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest")
        .to_owned()
}

/// What the test reads from the HTML page: section ids, `data-*` attributes by element id
/// or key, and the text of every table cell.
#[derive(Default, Debug)]
struct Page {
    ids: Vec<String>,
    attrs: BTreeMap<String, BTreeMap<String, String>>,
    counts: BTreeMap<String, u64>,
    facts: BTreeMap<String, String>,
    cells: Vec<String>,
    svg_buckets: u64,
}

fn parse_page(html: &str) -> Page {
    // The doctype line is HTML's; the rest is well-formed XML, which quick-xml checks.
    let body = html
        .strip_prefix("<!DOCTYPE html>\n")
        .expect("the page starts with its doctype");
    let mut reader = quick_xml::Reader::from_str(body);
    reader.config_mut().check_end_names = true;
    let mut page = Page::default();
    let mut in_cell = false;
    let mut cell = String::new();
    let mut fact_key: Option<String> = None;
    loop {
        let event = reader.read_event().unwrap_or_else(|e| {
            panic!(
                "the page is not well-formed at {}: {e}",
                reader.buffer_position()
            )
        });
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let mut attrs = BTreeMap::new();
                for a in e.attributes() {
                    let a = a.expect("attribute");
                    let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                    let value = a
                        .normalized_value(XmlVersion::Implicit1_0)
                        .expect("attribute value")
                        .into_owned();
                    attrs.insert(key, value);
                }
                if let Some(id) = attrs.get("id") {
                    page.ids.push(id.clone());
                    page.attrs.insert(id.clone(), attrs.clone());
                }
                if let (Some(k), Some(v)) = (attrs.get("data-count"), attrs.get("data-value")) {
                    page.counts
                        .insert(k.clone(), v.parse().expect("data-value is a number"));
                }
                if let Some(k) = attrs.get("data-fact") {
                    fact_key = Some(k.clone());
                }
                if e.name().as_ref() == b"g" && attrs.get("class").is_some_and(|c| c == "bucket") {
                    page.svg_buckets += 1;
                }
                if e.name().as_ref() == b"td" {
                    in_cell = true;
                    cell.clear();
                }
            }
            Event::Text(t) if in_cell => {
                cell.push_str(&t.decode().expect("cell text"));
            }
            Event::GeneralRef(r) if in_cell => {
                let named = |n: &str| match n {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    _ => None,
                };
                let ch = r
                    .resolve_char_ref()
                    .ok()
                    .flatten()
                    .or_else(|| named(&r.decode().expect("entity name")));
                cell.push(ch.unwrap_or_else(|| panic!("unknown entity in the page: {r:?}")));
            }
            Event::End(e) if e.name().as_ref() == b"td" => {
                in_cell = false;
                if let Some(k) = fact_key.take() {
                    page.facts.insert(k, cell.clone());
                }
                page.cells.push(cell.clone());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    page
}

#[test]
fn a_report_of_a_lab_window_shows_what_query_finds_and_proves_it() {
    require("chromium", "chromium").expect("headless browser for the screenshot");
    let lab = Lab::new("rep").expect("build the netns lab");
    lab.add_internet_address(BLOCKED_IP)
        .expect("add the blocked server's address");
    start_server(&lab, OK_IP);
    start_server(&lab, BLOCKED_IP);
    lab.wait_tcp(OK_IP, PORT, Duration::from_secs(10))
        .expect("server up");

    let tmp = lab.temp_dir("report").expect("temp dir");
    let dir = tmp.path();
    let bin = binary().expect("agent binary");
    let key = dir.join("chain.key");
    run(&bin, &["keygen", "--out", key.to_str().expect("utf8")]);
    let public = dir.join("chain.key.pub");
    let block = dir.join("block.list");
    std::fs::write(
        &block,
        format!("# the test's blocked server\n{BLOCKED_IP}\n"),
    )
    .expect("write list");
    let rule = format!("{}:2", block.display());
    let log = dir.join("log");
    let log_s = log.to_str().expect("utf8").to_owned();

    let since = now_rfc3339(-1);
    let mut agent = Agent::start(
        &lab,
        &lab.gateway.clone(),
        &bin,
        &log,
        &[
            "--no-pin",
            "--iface",
            lab::GW_LAN_IF,
            "--blocklist",
            block.to_str().expect("utf8"),
            "--signing-key",
            key.to_str().expect("utf8"),
            "--inactive-timeout",
            "1s",
            "--close-linger",
            "200ms",
            "--sweep-interval",
            "200ms",
            "--fsync-interval",
            "200ms",
        ],
    )
    .expect("start the agent");
    for _ in 0..ALLOWED_FLOWS {
        assert!(exchange(&lab, OK_IP), "the allowed server answers");
    }
    for _ in 0..BLOCKED_TRIES {
        assert!(
            !exchange(&lab, BLOCKED_IP),
            "the blocked server is unreachable"
        );
    }
    wait_until(
        Duration::from_secs(20),
        "the store holds the allowed flows and the blocked tries",
        || {
            let recs = agent.records().unwrap_or_default();
            let to = |ip: &str| recs.iter().filter(|r| r["dst_ip"] == ip).count();
            to(OK_IP) >= ALLOWED_FLOWS && to(BLOCKED_IP) >= BLOCKED_TRIES
        },
    );
    // Stopping seals the journal: the window is covered by a signed chain entry.
    assert_eq!(agent.stop().expect("stop the agent"), 0, "clean stop");
    let until = now_rfc3339(1);
    let window = ["--log-dir", &log_s, "--since", &since, "--until", &until];

    // What `query` finds for the same selection: the report must show exactly this.
    let query: Vec<serde_json::Value> = run(
        &bin,
        &[&["query", "--format", "jsonl"][..], &window].concat(),
    )
    .lines()
    .map(|l| serde_json::from_str(l).expect("query jsonl"))
    .collect();
    let blocked = query
        .iter()
        .filter(|r| r["dropped"].as_u64().unwrap_or(0) > 0)
        .count() as u64;
    assert!(
        blocked >= BLOCKED_TRIES as u64,
        "blocked records: {query:?}"
    );
    // A blocked flow is counted at its first drop's record; later records of it (a SYN
    // retried) carry more drops.
    let blocked_flows = query
        .iter()
        .filter(|r| matches!(r["end_reason"].as_str(), Some("drop" | "refused")))
        .count() as u64;
    let total = query.len() as u64;
    let by_rule = run(
        &bin,
        &[
            &["query", "--format", "jsonl", "--rule", &rule][..],
            &window,
        ]
        .concat(),
    );
    assert_eq!(
        by_rule.lines().count() as u64,
        blocked,
        "--rule selects the blocked flows"
    );

    let html_path = dir.join("case.html");
    let report_args = [
        "report",
        "--format",
        "html",
        "--out",
        html_path.to_str().expect("utf8"),
        "--attach",
        "csv",
        "--public-key",
        public.to_str().expect("utf8"),
    ];
    let printed = run(&bin, &[&report_args[..], &window].concat());
    let csv_path = dir.join("case.records.csv");
    let html = std::fs::read_to_string(&html_path).expect("the report file");
    let report_sha = sha256sum(&html_path);
    let csv_sha = sha256sum(&csv_path);
    assert!(
        printed.contains(&format!("{report_sha}  {}", html_path.display()))
            && printed.contains(&format!("{csv_sha}  {}", csv_path.display())),
        "both files' SHA-256 printed in sha256sum format: {printed}"
    );

    let page = parse_page(&html);
    for id in [
        "title",
        "summary",
        "timeline",
        "timeline-chart",
        "blocked-by-rule",
        "blocked-by-client",
        "records",
        "attachment",
        "chain",
        "head",
        "verify",
    ] {
        assert!(
            page.ids.iter().any(|i| i == id),
            "section {id} missing: {:?}",
            page.ids
        );
    }
    assert_eq!(page.counts["flows"], total, "flows = query's records");
    assert_eq!(
        page.counts["blocked"], blocked_flows,
        "blocked flows = query's first-drop records"
    );
    assert_eq!(page.counts["clients"], 1, "one client in the lab");
    assert_eq!(page.attrs["records"]["data-total"], total.to_string());
    assert_eq!(
        page.attrs["attachment"]["data-sha256"], csv_sha,
        "the report names the attachment's hash"
    );
    assert_eq!(
        page.attrs["verify"]["data-ok"], "true",
        "the store verifies"
    );
    assert!(page.svg_buckets >= 1, "the timeline has buckets");
    assert!(
        page.cells.iter().any(|c| c == &rule),
        "the blocking rule {rule} in the tables"
    );
    assert!(
        page.cells.iter().any(|c| c == BLOCKED_IP),
        "the blocked destination in the tables"
    );
    let key = &page.facts["key"];
    let (fingerprint, label) = key.split_once(' ').unwrap_or((key, ""));
    assert_eq!(
        fingerprint.len(),
        64,
        "the signing key's fingerprint: {key}"
    );
    assert_eq!(
        label, "(checked against --public-key)",
        "the head's key, checked: {key}"
    );
    assert!(
        !page.facts["gateway"].is_empty() && page.facts["operator"].starts_with("uid "),
        "host name and operator on the title page: {:?}",
        page.facts
    );
    assert!(
        html.contains("signature valid") && html.contains("checked against the public key"),
        "the verdict checked the signature"
    );
    let csv = std::fs::read_to_string(&csv_path).expect("attachment");
    assert_eq!(
        csv.lines().count() as u64,
        total + 1,
        "the attachment holds every record and a header"
    );
    let oplog = std::fs::read_to_string(log.join("operator.log")).expect("operator log");
    assert!(
        oplog
            .lines()
            .any(|l| l.contains("\"report\"") && l.contains(&report_sha)),
        "the report's access is recorded with its SHA-256"
    );

    // Markdown and JSON carry the same counts.
    let md = run(&bin, &[&["report", "--format", "md"][..], &window].concat());
    for (label, n) in [("Flow records", total), ("Blocked flows", blocked_flows)] {
        assert!(
            md.contains(&format!("| {label} | {n} |")),
            "md {label} = {n}:\n{md}"
        );
    }
    assert!(
        md.contains(&rule) || md.contains(&rule.replace('_', "\\_")),
        "md names the rule"
    );
    let json: serde_json::Value = serde_json::from_str(&run(
        &bin,
        &[&["report", "--format", "json"][..], &window].concat(),
    ))
    .expect("json report");
    assert_eq!(json["schema"], "xdp-audit-report/2");
    assert_eq!(json["summary"]["flows"], total);
    assert_eq!(json["summary"]["blocked_flows"], blocked_flows);
    assert_eq!(json["records"]["total"], total);
    assert_eq!(json["verify"]["ok"], true);
    assert!(
        json["chain"]["entries"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "sealed entries cover the window"
    );
    assert!(
        json["chain"]["head"]["signature"].is_string(),
        "the head is signed"
    );
    let sealed_rows: u64 = json["chain"]["entries"]
        .as_array()
        .map_or(0, |e| e.iter().filter_map(|e| e["rows"].as_u64()).sum());
    assert_eq!(
        sealed_rows, total,
        "after the stop, sealed segments hold every record of the window"
    );
    assert_eq!(
        json["chain"]["unsealed_records"], 0,
        "nothing left unsealed"
    );

    // The page as a browser draws it, in a network namespace of its own with nothing in it
    // (`unshare --net`, gone with the process): its background requests reach no one.
    let png = dir.join("case.png");
    sh(Command::new("unshare")
        .args([
            "--net",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2200",
            &format!("file://{}", html_path.display()),
        ])
        .env("HOME", dir))
    .expect("chromium draws the page");
    let image = std::fs::read(&png).expect("the screenshot exists");
    assert_eq!(&image[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(image[16..20].try_into().expect("IHDR width"));
    let height = u32::from_be_bytes(image[20..24].try_into().expect("IHDR height"));
    assert_eq!((width, height), (1280, 2200), "the window's size");
    assert!(
        image.len() > 40_000,
        "a drawn page, not a blank one: {} bytes",
        image.len()
    );
}
