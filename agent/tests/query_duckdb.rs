//! Every `query` filter against DuckDB on the same files: a generated store (hourly segments,
//! closed days merged as the sealer merges them, the last hour left in the live journal, and
//! hand-made edge records: an IPv4 flow and an IPv6 flow of the IPv4-mapped form of the same
//! address, double VLAN tags, records exactly on a window's edges) is queried with each filter
//! by `query::scan` and `query::count`, and DuckDB runs the same condition in SQL over the
//! segment files the manifest lists. The rows must be identical (order aside, on a canonical
//! text form of every compared field), the count equal to both. DuckDB cannot read the live
//! journal: its part of the answer is held to `Filter::matches` over the decoded journal.
//!
//! DuckDB comes from PyPI (`cargo xtask setup` installs it).

mod duckdb_common;
mod store_common;

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;

use duckdb_common::{blob, hex, segment_list, sql_domain, sql_ip, sql_range, sql_window};
use store_common::{open, TempDir, HOUR, T0};
use xdp_audit::record::{FlowRecord, Mac};
use xdp_audit::store::address::{ip_to_column, ip_version};
use xdp_audit::store::compact;
use xdp_audit::store::journal;
use xdp_audit::store::manifest::Manifest;
use xdp_audit::store::query::{self, Filter};
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::FakeClock;

/// Hours of generated traffic; the last one stays in the live journal.
const HOURS: i64 = 50;

/// The canonical text form of a record: the fields DuckDB is asked for, in its text forms
/// (addresses in their 16-byte column form and the IP version beside them, so an IPv4 flow
/// and an IPv4-mapped IPv6 flow differ).
fn canon(r: &FlowRecord) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let a = &r.attr;
    [
        r.time_start_ns.to_string(),
        r.time_end_ns.to_string(),
        r.iface.clone(),
        opt(r.vlan.map(|v| v.to_string())),
        opt(r.vlan_inner.map(|v| v.to_string())),
        hex(&r.src_mac.0),
        hex(&r.dst_mac.0),
        r.proto.to_string(),
        ip_version(r.src_ip.is_ipv6(), r.dst_ip.is_ipv6()).to_string(),
        hex(&ip_to_column(r.src_ip)),
        r.src_port.to_string(),
        hex(&ip_to_column(r.dst_ip)),
        r.dst_port.to_string(),
        r.packets.to_string(),
        r.bytes.to_string(),
        r.end_reason.as_str().to_string(),
        r.dropped.to_string(),
        opt(r.rule.clone()),
        opt(a.user.clone()),
        opt(a.nat_ip.map(|ip| hex(&ip_to_column(ip)))),
        opt(a.nat_port.map(|p| p.to_string())),
        opt(a.domain.clone()),
        opt(a.dns_qname.clone()),
    ]
    .join("|")
}

/// The same form in DuckDB's SQL.
const CANON_SQL: &str = "concat_ws('|', epoch_ns(time_start), epoch_ns(time_end), iface, \
    coalesce(vlan::VARCHAR, ''), coalesce(vlan_inner::VARCHAR, ''), hex(src_mac), hex(dst_mac), \
    proto, ip_version, hex(src_ip), src_port, hex(dst_ip), dst_port, packets, bytes, end_reason, \
    dropped, coalesce(rule, ''), coalesce(\"user\", ''), coalesce(hex(nat_ip), ''), \
    coalesce(nat_port::VARCHAR, ''), coalesce(domain, ''), coalesce(dns_qname, ''))";

/// A named question: the filter and its SQL condition.
struct Case {
    name: String,
    filter: Filter,
    sql: String,
}

fn case(name: &str, filter: Filter, sql: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        filter,
        sql: sql.into(),
    }
}

/// The hand-made edge records, at `at` (inside the first hour).
fn edge_records(at: i64) -> Vec<FlowRecord> {
    let mut g = TrafficGen::with_rate(99, at, 1.0);
    let base = g.next_record();
    let v4: IpAddr = "10.9.9.9".parse().expect("ip");
    let mapped: IpAddr = "::ffff:10.9.9.9".parse().expect("ip");
    let remote: IpAddr = "198.51.100.77".parse().expect("ip");
    let mut a = base.clone();
    a.time_start_ns = at;
    a.time_end_ns = at + 1_000;
    a.src_ip = v4;
    a.dst_ip = remote;
    a.src_port = 40_000;
    a.dst_port = 4433;
    let mut b = a.clone();
    b.src_ip = mapped;
    b.dst_ip = "2001:db8::77".parse().expect("ip");
    b.time_start_ns = at + 10;
    let mut c = a.clone();
    c.time_start_ns = at + 20;
    c.vlan = Some(100);
    c.vlan_inner = Some(200);
    c.src_mac = Mac([0x3c, 0x22, 0xfb, 0xee, 0xee, 0xee]);
    vec![a, b, c]
}

/// Builds the store: `HOURS` hours of generated traffic (the edge records in the first hour),
/// every hour sealed but the last, then the closed days merged.
fn build(dir: &Path) -> Vec<FlowRecord> {
    let clock = FakeClock::new(T0);
    let mut store = open(dir, &clock);
    let mut g = TrafficGen::with_rate(15, T0, 0.35);
    let mut edges = edge_records(T0 + 60_000_000_000).into_iter().peekable();
    let mut out = Vec::new();
    while g.now_ns() < T0 + HOURS * HOUR {
        let mut r = g.next_record();
        if edges
            .peek()
            .is_some_and(|e| e.time_start_ns <= r.time_start_ns)
        {
            r = edges.next().unwrap_or(r);
        }
        clock.set(r.time_start_ns);
        store.append(&r);
        out.push(r);
    }
    assert!(store.sync_now(), "sync of the live journal failed");
    drop(store);
    let mut manifest = Manifest::load(dir, None).expect("manifest");
    let now = T0 + HOURS * HOUR;
    let merged = compact::run(dir, &mut manifest, now, compact::DEFAULT_MAX_ROWS).expect("compact");
    assert!(
        merged > 0,
        "no day was merged: the test would miss merged segments"
    );
    compact::run(dir, &mut manifest, now, compact::DEFAULT_MAX_ROWS).expect("delete inputs");
    out
}

/// DuckDB's answers: for each condition, the canonical rows and their count, over the live
/// segment files of `dir`.
fn duckdb(dir: &Path, conditions: &[&str]) -> Vec<(Vec<String>, u64)> {
    // Everything SQL goes through stdin as JSON, so no quoting meets Python's.
    let script = "import sys, json, duckdb\n\
        req = json.load(sys.stdin)\n\
        con = duckdb.connect()\n\
        con.execute('SET enable_progress_bar = false')\n\
        con.execute('CREATE VIEW f AS SELECT * FROM read_parquet([' + req['files'] + '])')\n\
        for w in req['where']:\n\
        \x20   rows = [r[0] for r in con.execute('SELECT ' + req['canon'] + ' FROM f WHERE ' + w).fetchall()]\n\
        \x20   n = con.execute('SELECT count(*) FROM f WHERE ' + w).fetchone()[0]\n\
        \x20   print(json.dumps([rows, n]))\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is missing: install the Debian package python3 (and `cargo xtask setup` for duckdb)");
    let input = serde_json::to_vec(&serde_json::json!({
        "files": segment_list(dir),
        "canon": CANON_SQL,
        "where": conditions,
    }))
    .expect("json");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write the conditions to python3");
    let out = child.wait_with_output().expect("python3 ran");
    assert!(
        out.status.success(),
        "DuckDB failed (missing? `cargo xtask setup` installs the PyPI package duckdb): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("DuckDB printed {l:?}: {e}")))
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The questions, each a filter and its SQL, drawn from the records written.
fn cases(recs: &[FlowRecord]) -> Vec<Case> {
    let sealed_end = T0 + (HOURS - 1) * HOUR;
    let pick = |k: usize| &recs[recs.len() * k / 10];
    let day2 = recs
        .iter()
        .find(|r| {
            r.time_start_ns > T0 + 30 * HOUR && r.attr.user.is_some() && r.attr.domain.is_some()
        })
        .expect("a record with an account and a domain on day 2");
    let drop = recs
        .iter()
        .find(|r| r.rule.is_some())
        .expect("a blocked record");
    let rule = drop.rule.clone().unwrap_or_default();
    let rule_file = rule
        .rsplit_once(':')
        .map_or(rule.as_str(), |(f, _)| f)
        .to_string();
    let nat = recs
        .iter()
        .find(|r| r.attr.nat_ip.is_some() && r.attr.nat_port.is_some())
        .expect("a NATed record");
    let (nat_ip, nat_port) = (
        nat.attr.nat_ip.unwrap_or(nat.src_ip),
        nat.attr.nat_port.unwrap_or(0),
    );
    let v6 = recs
        .iter()
        .find(|r| r.src_ip.is_ipv6())
        .expect("an IPv6 record");
    let edge_ip: IpAddr = "10.9.9.9".parse().expect("ip");
    let mapped: IpAddr = "::ffff:10.9.9.9".parse().expect("ip");
    // Window edges on real records: one ends exactly at `since` (in), one starts exactly at
    // `until` (out).
    let (a, b) = (pick(3), pick(4));
    let (since, until) = (a.time_end_ns.max(a.time_start_ns), b.time_start_ns);
    let mac = pick(5).src_mac;
    let user = day2.attr.user.clone().unwrap_or_default();
    let domain = day2.attr.domain.clone().unwrap_or_default();
    let site = domain
        .split_once('.')
        .map_or(domain.as_str(), |(_, s)| s)
        .to_string();
    let f = Filter::default;
    let mut v = vec![
        case(
            "--ip of a LAN client",
            Filter {
                cidr: Some(pick(2).src_ip.to_string().parse().expect("ip")),
                ..f()
            },
            sql_ip(pick(2).src_ip),
        ),
        case(
            "--ip of a remote host",
            Filter {
                cidr: Some(pick(6).dst_ip.to_string().parse().expect("ip")),
                ..f()
            },
            sql_ip(pick(6).dst_ip),
        ),
        case(
            "--ip IPv4 also finds its IPv4-mapped IPv6 twin",
            Filter {
                cidr: Some("10.9.9.9".parse().expect("ip")),
                ..f()
            },
            sql_ip(edge_ip),
        ),
        case(
            "--ip IPv4-mapped form",
            Filter {
                cidr: Some("::ffff:10.9.9.9".parse().expect("ip")),
                ..f()
            },
            sql_ip(mapped),
        ),
        case(
            "--ip IPv6",
            Filter {
                cidr: Some(v6.src_ip.to_string().parse().expect("ip")),
                ..f()
            },
            sql_ip(v6.src_ip),
        ),
        case(
            "--cidr /24",
            Filter {
                cidr: Some("10.0.1.0/24".parse().expect("cidr")),
                ..f()
            },
            sql_range(ip("10.0.1.0"), ip("10.0.1.255")),
        ),
        case(
            "--port 8443",
            Filter {
                port: Some(8443),
                ..f()
            },
            "(src_port = 8443 OR dst_port = 8443)",
        ),
        case(
            "--port 53",
            Filter {
                port: Some(53),
                ..f()
            },
            "(src_port = 53 OR dst_port = 53)",
        ),
        case(
            "--port of a source port",
            Filter {
                port: Some(pick(7).src_port),
                ..f()
            },
            format!("(src_port = {p} OR dst_port = {p})", p = pick(7).src_port),
        ),
        case(
            "--port nobody uses (empty)",
            Filter {
                port: Some(1),
                ..f()
            },
            "(src_port = 1 OR dst_port = 1)",
        ),
        case(
            "--mac",
            Filter {
                mac: Some(mac),
                ..f()
            },
            format!("(src_mac = {m} OR dst_mac = {m})", m = blob(&mac.0)),
        ),
        case(
            "--mac of the double-tagged edge record",
            Filter {
                mac: Some(Mac([0x3c, 0x22, 0xfb, 0xee, 0xee, 0xee])),
                ..f()
            },
            format!(
                "(src_mac = {m} OR dst_mac = {m})",
                m = blob(&[0x3c, 0x22, 0xfb, 0xee, 0xee, 0xee])
            ),
        ),
        case(
            "--proto icmp",
            Filter {
                proto: Some(1),
                ..f()
            },
            "proto = 1",
        ),
        case(
            "--proto 47 (empty)",
            Filter {
                proto: Some(47),
                ..f()
            },
            "proto = 47",
        ),
        case(
            "--since/--until on record edges",
            Filter {
                since_ns: Some(since),
                until_ns: Some(until),
                ..f()
            },
            sql_window(Some(since), Some(until)),
        ),
        case(
            "--since alone, an hour before the live journal",
            Filter {
                since_ns: Some(sealed_end - HOUR),
                ..f()
            },
            sql_window(Some(sealed_end - HOUR), None),
        ),
        case(
            "--until alone",
            Filter {
                until_ns: Some(T0 + 3 * HOUR + 7),
                ..f()
            },
            sql_window(None, Some(T0 + 3 * HOUR + 7)),
        ),
        case(
            "a window before the store (empty)",
            Filter {
                since_ns: Some(T0 - 2 * HOUR),
                until_ns: Some(T0 - HOUR),
                ..f()
            },
            sql_window(Some(T0 - 2 * HOUR), Some(T0 - HOUR)),
        ),
        case(
            "a window of one instant (1 ns)",
            Filter {
                since_ns: Some(until),
                until_ns: Some(until),
                ..f()
            },
            sql_window(Some(until), Some(until)),
        ),
        case(
            "--port 443 --proto udp in a window",
            Filter {
                port: Some(443),
                proto: Some(17),
                since_ns: Some(since),
                until_ns: Some(until),
                ..f()
            },
            format!(
                "(src_port = 443 OR dst_port = 443) AND proto = 17 AND {}",
                sql_window(Some(since), Some(until))
            ),
        ),
        case(
            "--mac --port 80",
            Filter {
                mac: Some(mac),
                port: Some(80),
                ..f()
            },
            format!(
                "(src_mac = {m} OR dst_mac = {m}) AND (src_port = 80 OR dst_port = 80)",
                m = blob(&mac.0)
            ),
        ),
        case(
            "--cidr --port",
            Filter {
                cidr: Some("10.0.0.0/8".parse().expect("cidr")),
                port: Some(443),
                ..f()
            },
            format!(
                "{} AND (src_port = 443 OR dst_port = 443)",
                sql_range(ip("10.0.0.0"), ip("10.255.255.255"))
            ),
        ),
        case(
            "--user",
            Filter {
                user: Some(user.clone()),
                ..f()
            },
            format!("\"user\" = '{user}'"),
        ),
        case(
            "--user nobody has (empty)",
            Filter {
                user: Some("C-none".into()),
                ..f()
            },
            "\"user\" = 'C-none'",
        ),
        case(
            "--domain (a site and every name under it)",
            Filter {
                domain: Some(site.parse().expect("domain")),
                ..f()
            },
            sql_domain(&site),
        ),
        case(
            "--user --domain",
            Filter {
                user: Some(user.clone()),
                domain: Some(domain.parse().expect("domain")),
                ..f()
            },
            format!("\"user\" = '{user}' AND {}", sql_domain(&domain)),
        ),
        case(
            "--nat address and port",
            Filter {
                nat: Some(format!("{nat_ip}:{nat_port}").parse().expect("nat")),
                ..f()
            },
            format!(
                "nat_ip = {} AND nat_port = {nat_port}",
                blob(&ip_to_column(nat_ip))
            ),
        ),
        case(
            "--nat address --port",
            Filter {
                nat: Some(nat_ip.to_string().parse().expect("nat")),
                port: Some(443),
                ..f()
            },
            format!(
                "nat_ip = {} AND (src_port = 443 OR dst_port = 443)",
                blob(&ip_to_column(nat_ip))
            ),
        ),
        case(
            "--rule FILE:LINE",
            Filter {
                rule: Some(rule.clone()),
                ..f()
            },
            format!("rule = '{rule}'"),
        ),
        case(
            "--rule FILE",
            Filter {
                rule: Some(rule_file.clone()),
                ..f()
            },
            format!(
                "starts_with(rule, '{rule_file}:') AND regexp_full_match(rule[{}:], '[0-9]+')",
                rule_file.len() + 2
            ),
        ),
    ];
    // The same questions ignoring the address index (segments of earlier formats).
    let unindexed: Vec<Case> = v
        .iter()
        .filter(|c| c.filter.cidr.is_some() || c.filter.nat.is_some())
        .map(|c| Case {
            name: format!("{} (index ignored)", c.name),
            filter: Filter {
                ignore_index: true,
                ..c.filter.clone()
            },
            sql: c.sql.clone(),
        })
        .collect();
    v.extend(unindexed);
    v
}

#[test]
fn every_filter_finds_the_rows_duckdb_finds_and_counts_them_alike() {
    let dir = TempDir::new("query-duckdb");
    let recs = build(dir.path());
    let journals: Vec<FlowRecord> = std::fs::read_dir(dir.path())
        .expect("list the store")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("journal-"))
        .flat_map(|e| {
            journal::read(&e.path())
                .expect("read the live journal")
                .records
        })
        .collect();
    assert!(
        !journals.is_empty(),
        "the last hour must stay in the live journal"
    );
    let cases = cases(&recs);
    let conditions: Vec<&str> = cases.iter().map(|c| c.sql.as_str()).collect();
    let answers = duckdb(dir.path(), &conditions);
    assert_eq!(
        answers.len(),
        cases.len(),
        "DuckDB answered every condition"
    );
    let mut empty = 0;
    for (c, (rows, n)) in cases.iter().zip(answers) {
        let mut got = Vec::new();
        let stats = query::scan(
            dir.path(),
            &c.filter,
            2,
            &mut |r| {
                got.push(r.clone());
                Ok(())
            },
            &mut |_, _| {},
        )
        .unwrap_or_else(|e| panic!("{}: query failed: {e}", c.name));
        let split = got.len() - stats.journal_matched as usize;
        let sealed: Vec<String> = got[..split].iter().map(canon).collect();
        assert_eq!(
            rows.len() as u64,
            n,
            "{}: DuckDB's count and rows differ",
            c.name
        );
        assert_eq!(
            sorted(sealed),
            sorted(rows),
            "{}: the sealed segments' rows differ from DuckDB's",
            c.name
        );
        let live: Vec<String> = got[split..].iter().map(canon).collect();
        let want: Vec<String> = journals
            .iter()
            .filter(|r| c.filter.matches(r))
            .map(canon)
            .collect();
        assert_eq!(
            sorted(live),
            sorted(want),
            "{}: the live journal's rows",
            c.name
        );
        let counted = query::count(dir.path(), &c.filter, 2, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{}: count failed: {e}", c.name));
        assert_eq!(
            counted.matched,
            got.len() as u64,
            "{}: --count differs from the rows",
            c.name
        );
        assert_eq!(
            counted.journal_matched, stats.journal_matched,
            "{}: journal count",
            c.name
        );
        assert_eq!(
            got.is_empty(),
            c.name.ends_with("(empty)"),
            "{}: {} rows",
            c.name,
            got.len()
        );
        empty += usize::from(got.is_empty());
    }
    assert!(
        empty >= 4,
        "the empty cases must be there ({empty} were empty)"
    );
    // The command prints the same count.
    let port53 = recs
        .iter()
        .filter(|r| r.dst_port == 53 || r.src_port == 53)
        .count();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xdp-audit"))
        .args(["query", "--port", "53", "--count", "--log-dir"])
        .arg(dir.path())
        .output()
        .expect("run xdp-audit query --count");
    assert!(
        out.status.success(),
        "query --count failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        port53.to_string()
    );
}
