//! The attribution in the store: every field survives journal -> segment -> query, JSON Lines
//! and CSV, and DuckDB reads the new columns; journals and segments written before the
//! attribution existed (the format-4 fixtures) still read, record for record; `--user`,
//! `--domain` and `--nat` answer exactly what a brute-force filter answers, over sealed
//! segments and the live journal; and `--nat IP:PORT --at T` picks the one inside flow among
//! 100 concurrent ones whose outside ports are reused over time, in one line of table output.

mod store_common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

use store_common::{canon, open, TempDir, HOUR, T0};
use xdp_audit::enrich::names::NameSource;
use xdp_audit::record::{Attribution, EndReason, FlowRecord, Mac};
use xdp_audit::store::export::{Format, RecordWriter};
use xdp_audit::store::journal;
use xdp_audit::store::query::{collect, Cidr, DomainFilter, Filter, NatFilter};
use xdp_audit::store::segment::SegmentReader;
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::FakeClock;

const BIN: &str = env!("CARGO_BIN_EXE_xdp-audit");

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store")
        .join(name)
}

/// Records with every attribution field in each of its forms: IPv4 and IPv6 outside
/// addresses, a port without an address's family mattering, every name source, text that
/// needs CSV quoting or JSON escaping.
fn edge_records() -> Vec<FlowRecord> {
    let mut g = TrafficGen::new(77, T0 + 10 * 60 * 1_000_000_000);
    let sources = NameSource::ALL;
    (0..24)
        .map(|i| {
            let mut r = g.next_record();
            r.attr = Attribution {
                user: Some(["C-000001", "acct,\"quoted\"", "ünï\ncode", ""][i % 4].to_owned()),
                hostname: (i % 3 != 0).then(|| format!("host-{i}")),
                nat_ip: match i % 3 {
                    0 => None,
                    1 => Some("203.0.113.9".parse().expect("ip")),
                    _ => Some("2001:db8::9".parse().expect("ip")),
                },
                nat_port: (i % 3 != 0).then_some([0, 1024, 65535][i % 3]),
                domain: (i % 5 != 4).then(|| format!("s{i}.example.com")),
                domain_source: (i % 5 != 4).then(|| sources[i % sources.len()]),
                dns_qname: (i % 2 == 0).then(|| format!("q{i}.example.org")),
                dns_qtype: (i % 2 == 0).then_some([1, 28, 65, 65535][i % 4]),
            };
            r
        })
        .collect()
}

/// Generated traffic (most flows NATed, accounts, names, DNS questions) and `extra`, written
/// through a store over two and a half hours: two hours sealed, the rest in the live journal.
fn store_with(dir: &Path, extra: &[FlowRecord]) -> Vec<FlowRecord> {
    let clock = FakeClock::new(T0);
    let mut store = open(dir, &clock);
    let mut g = TrafficGen::with_rate(31, T0, 2.0);
    let mut out = Vec::new();
    let mut pending: Vec<FlowRecord> = extra.to_vec();
    pending.sort_by_key(|r| std::cmp::Reverse(r.time_start_ns));
    while g.now_ns() < T0 + 2 * HOUR + HOUR / 2 {
        let mut r = g.next_record();
        while pending
            .last()
            .is_some_and(|p| p.time_start_ns <= r.time_start_ns)
        {
            let p = pending.pop().expect("pending record");
            clock.set(p.time_start_ns);
            store.append(&p);
            out.push(p);
        }
        clock.set(r.time_start_ns);
        if out.len() % 7 == 0 {
            r.attr = Attribution::default(); // some records carry no attribution at all
        }
        store.append(&r);
        out.push(r);
    }
    assert!(store.sync_now(), "sync failed");
    out
}

#[test]
fn every_attribution_field_round_trips_through_journal_segment_query_json_and_csv() {
    let dir = TempDir::new("formats-roundtrip");
    let edges = edge_records();
    let all = store_with(dir.path(), &edges);
    let segments = std::fs::read_dir(dir.path())
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        })
        .count();
    assert!(
        segments >= 2,
        "expected sealed hours, found {segments} segments"
    );
    // Segments and the live journal together give back every record, field for field.
    let got = collect(dir.path(), &Filter::default()).expect("query all");
    assert_eq!(got.len(), all.len());
    assert_eq!(canon(got.clone()), canon(all.clone()));
    for e in &edges {
        assert!(got.contains(e), "edge record lost or changed: {e:?}");
    }

    // JSON Lines: every field, null when absent, and serde reads it back.
    let mut w = RecordWriter::new(Vec::new(), Format::Jsonl);
    w.header().expect("header");
    for r in &edges {
        w.write(r).expect("write");
    }
    let json = w.finish().expect("finish");
    for (line, r) in String::from_utf8(json).expect("utf8").lines().zip(&edges) {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let a = &r.attr;
        assert_eq!(v["user"].as_str(), a.user.as_deref(), "{line}");
        assert_eq!(v["hostname"].as_str(), a.hostname.as_deref(), "{line}");
        assert_eq!(
            v["nat_ip"]
                .as_str()
                .map(|s| s.parse::<IpAddr>().expect("nat_ip")),
            a.nat_ip,
            "{line}"
        );
        assert_eq!(v["nat_port"].as_u64(), a.nat_port.map(u64::from), "{line}");
        assert_eq!(v["domain"].as_str(), a.domain.as_deref(), "{line}");
        assert_eq!(
            v["domain_source"].as_str(),
            a.domain_source.map(|s| s.as_str()),
            "{line}"
        );
        assert_eq!(v["dns_qname"].as_str(), a.dns_qname.as_deref(), "{line}");
        assert_eq!(
            v["dns_qtype"].as_u64(),
            a.dns_qtype.map(u64::from),
            "{line}"
        );
    }

    // CSV: the header names the new columns; a field reads back through a CSV parser.
    let mut w = RecordWriter::new(Vec::new(), Format::Csv);
    w.header().expect("header");
    for r in &edges {
        w.write(r).expect("write");
    }
    let csv = w.finish().expect("finish");
    // Parsed by another implementation (Python's csv module), as a spreadsheet would.
    let script =
        "import sys, csv, json\nprint(json.dumps(list(csv.reader(sys.stdin, strict=True))))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (install python3)");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &csv).expect("feed CSV");
    let out = child.wait_with_output().expect("python3 csv");
    assert!(out.status.success(), "python's csv module refused the CSV");
    let rows: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).expect("rows as JSON");
    let header = &rows[0];
    for name in [
        "user",
        "hostname",
        "nat_ip",
        "nat_port",
        "domain",
        "domain_source",
        "dns_qname",
        "dns_qtype",
    ] {
        assert!(
            header.iter().any(|h| h == name),
            "CSV header lacks {name}: {header:?}"
        );
    }
    let at = |name: &str| header.iter().position(|h| h == name).expect("column");
    assert_eq!(rows.len(), edges.len() + 1);
    for (row, r) in rows[1..].iter().zip(&edges) {
        let a = &r.attr;
        let opt = |v: Option<String>| v.unwrap_or_default();
        assert_eq!(row[at("user")], opt(a.user.clone()));
        assert_eq!(row[at("hostname")], opt(a.hostname.clone()));
        assert_eq!(row[at("nat_ip")], opt(a.nat_ip.map(|i| i.to_string())));
        assert_eq!(row[at("nat_port")], opt(a.nat_port.map(|p| p.to_string())));
        assert_eq!(row[at("domain")], opt(a.domain.clone()));
        assert_eq!(
            row[at("domain_source")],
            opt(a.domain_source.map(|s| s.as_str().to_owned()))
        );
        assert_eq!(row[at("dns_qname")], opt(a.dns_qname.clone()));
        assert_eq!(
            row[at("dns_qtype")],
            opt(a.dns_qtype.map(|p| p.to_string()))
        );
    }

    duckdb_reads_the_attribution(dir.path());
}

/// DuckDB reads the new columns of the sealed segments, and counts and sums them to what
/// the store's own reader gives.
fn duckdb_reads_the_attribution(dir: &Path) {
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    let mut sealed = Vec::new();
    for f in &files {
        let seg = SegmentReader::open(f).expect("open segment");
        assert!(
            seg.has_attribution(),
            "{} lacks the attribution columns",
            f.display()
        );
        for g in 0..seg.row_groups() {
            sealed.extend(seg.read_rows(g, None).expect("rows"));
        }
    }
    let list: Vec<String> = files.iter().map(|p| format!("'{}'", p.display())).collect();
    let script = "import sys, duckdb\n\
        duckdb.sql('SET enable_progress_bar = false')\n\
        print(','.join(str(v) for v in duckdb.sql(f\"SELECT count(*), count(user), \
        count(hostname), count(nat_ip), coalesce(sum(nat_port), 0)::BIGINT, \
        count(DISTINCT domain), count(*) FILTER (WHERE domain_source = 'sni'), \
        count(dns_qname), coalesce(sum(dns_qtype), 0)::BIGINT, \
        count(*) FILTER (WHERE nat_ip_version = 6) FROM read_parquet([{sys.argv[1]}])\").fetchall()[0]))";
    let out = Command::new("python3")
        .args(["-c", script, &list.join(",")])
        .output()
        .expect("python3 (install python3 and `pip install duckdb`)");
    assert!(
        out.status.success(),
        "duckdb could not read the segments: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = |f: &dyn Fn(&Attribution) -> bool| sealed.iter().filter(|r| f(&r.attr)).count();
    let domains: std::collections::HashSet<_> = sealed
        .iter()
        .filter_map(|r| r.attr.domain.clone())
        .collect();
    let want = format!(
        "{},{},{},{},{},{},{},{},{},{}",
        sealed.len(),
        count(&|a| a.user.is_some()),
        count(&|a| a.hostname.is_some()),
        count(&|a| a.nat_ip.is_some()),
        sealed
            .iter()
            .filter_map(|r| r.attr.nat_port)
            .map(u64::from)
            .sum::<u64>(),
        domains.len(),
        count(&|a| a.domain_source == Some(NameSource::Sni)),
        count(&|a| a.dns_qname.is_some()),
        sealed
            .iter()
            .filter_map(|r| r.attr.dns_qtype)
            .map(u64::from)
            .sum::<u64>(),
        count(&|a| a.nat_ip.is_some_and(|i| i.is_ipv6())),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    assert!(count(&|a| a.nat_ip.is_some_and(|i| i.is_ipv6())) > 0);
}

#[test]
fn a_journal_and_a_segment_of_format_4_read_record_for_record() {
    let t = 1_700_000_000_000_000_000;
    let (bytes, scan) =
        journal::load::<Vec<FlowRecord>>(&fixture("journal-format4.wal")).expect("old journal");
    assert!(!bytes.is_empty());
    let mut g = TrafficGen::new(41, t).without_attribution();
    let want: Vec<FlowRecord> = (0..1000).map(|_| g.next_record()).collect();
    assert_eq!(scan.records.len(), 1000, "frames of the old journal");
    assert_eq!(scan.records, want, "the old journal reads as written");

    let seg = SegmentReader::open(&fixture("segment-format4.parquet")).expect("old segment");
    assert!(!seg.has_attribution());
    let mut got = Vec::new();
    for g in 0..seg.row_groups() {
        got.extend(seg.read_rows(g, None).expect("rows of the old segment"));
    }
    let mut g = TrafficGen::new(42, t).without_attribution();
    let want: Vec<FlowRecord> = (0..3000).map(|_| g.next_record()).collect();
    assert_eq!(
        canon(got),
        canon(want.clone()),
        "the old segment reads as written"
    );

    // Both kinds in one store with a new segment: attribution filters find the new records
    // only; the others still answer.
    let dir = TempDir::new("formats-mixed");
    std::fs::copy(
        fixture("journal-format4.wal"),
        dir.path().join("journal-00000000000000004242.wal"),
    )
    .expect("copy journal");
    let clock = FakeClock::new(T0 + 100 * HOUR);
    let mut store = open(dir.path(), &clock);
    let mut r = want[0].clone();
    r.time_start_ns = T0 + 100 * HOUR;
    r.time_end_ns = r.time_start_ns + 1;
    r.attr.user = Some("C-777777".into());
    store.append(&r);
    assert!(store.seal_now(), "seal");
    drop(store);
    let user = Filter {
        user: Some("C-777777".into()),
        ..Filter::default()
    };
    assert_eq!(collect(dir.path(), &user).expect("query"), vec![r]);
    let everything = collect(dir.path(), &Filter::default()).expect("query all");
    assert_eq!(
        everything.len(),
        1001,
        "the old journal was recovered and sealed too"
    );
}

#[test]
fn user_domain_and_nat_filters_answer_like_a_brute_force_filter() {
    let dir = TempDir::new("formats-filters");
    let mut named = edge_records();
    for (r, name) in named.iter_mut().zip([
        "example.com",
        "a.example.com",
        "badexample.com",
        "b.a.EXAMPLE.com",
        "example.co",
    ]) {
        r.attr.domain = Some(name.to_owned());
    }
    let all = store_with(dir.path(), &named);
    let one = all
        .iter()
        .find(|r| r.attr.user.is_some() && r.attr.nat_port.is_some() && r.attr.domain.is_some())
        .expect("a fully attributed record")
        .clone();
    let nat_ip = one.attr.nat_ip.expect("nat ip");
    let parsed = |s: &str| s.parse::<DomainFilter>().expect("domain");
    let filters = [
        Filter {
            user: one.attr.user.clone(),
            ..Filter::default()
        },
        Filter {
            user: Some("C-does-not-exist".into()),
            ..Filter::default()
        },
        Filter {
            domain: Some(parsed("example.com")),
            ..Filter::default()
        },
        Filter {
            domain: Some(parsed(one.attr.domain.as_deref().expect("domain"))),
            ..Filter::default()
        },
        Filter {
            nat: Some(NatFilter {
                ip: nat_ip,
                port: None,
            }),
            ..Filter::default()
        },
        Filter {
            nat: Some(NatFilter {
                ip: nat_ip,
                port: one.attr.nat_port,
            }),
            ..Filter::default()
        },
        // Combined with the address, port and time filters.
        Filter {
            cidr: Some(Cidr::host(one.src_ip)),
            port: Some(one.dst_port),
            user: one.attr.user.clone(),
            nat: Some(NatFilter {
                ip: nat_ip,
                port: None,
            }),
            since_ns: Some(one.time_start_ns),
            until_ns: Some(one.time_start_ns + 1),
            ..Filter::default()
        },
    ];
    for f in &filters {
        let got = collect(dir.path(), f).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        let brute: Vec<FlowRecord> = all.iter().filter(|r| f.matches(r)).cloned().collect();
        assert_eq!(canon(got), canon(brute), "{f:?}");
    }
    // The suffix semantics, end to end: the name and every name under it, label by label.
    let got = collect(dir.path(), &filters[2]).expect("domain query");
    let names: std::collections::BTreeSet<String> = got
        .iter()
        .flat_map(|r| [r.attr.domain.clone(), r.attr.dns_qname.clone()])
        .flatten()
        .filter(|n| n.to_ascii_lowercase().ends_with("example.com"))
        .collect();
    assert!(
        names.contains("example.com") && names.contains("a.example.com"),
        "{names:?}"
    );
    assert!(names.contains("b.a.EXAMPLE.com"), "{names:?}");
    assert!(!names.contains("badexample.com"), "{names:?}");
    assert!(got
        .iter()
        .all(|r| r.attr.domain.as_deref() != Some("example.co")));
    assert!(got
        .iter()
        .any(|r| r.attr.domain.as_deref() == Some("s5.example.com")));
    assert!(collect(dir.path(), &filters[0])
        .expect("user")
        .contains(&one));
    assert!(collect(dir.path(), &filters[5])
        .expect("nat")
        .contains(&one));
}

/// 100 clients with a flow open at every moment of three hours, each flow 60 s long; the
/// outside ports come from a pool of 100 on one address, reassigned to another client every
/// minute, so every port is reused 180 times by different clients.
fn concurrent_flows() -> Vec<FlowRecord> {
    let outside: IpAddr = Ipv4Addr::new(198, 51, 100, 7).into();
    let sec = 1_000_000_000;
    let mut out = Vec::new();
    for minute in 0..180i64 {
        for c in 0..100u32 {
            let start = T0 + minute * 60 * sec + i64::from(c) * 10_000_000;
            let port = 40_000 + ((c + minute as u32 * 37) % 100) as u16;
            out.push(FlowRecord {
                time_start_ns: start,
                time_end_ns: start + 59 * sec,
                iface: "lan0".into(),
                ifindex: 3,
                vlan: None,
                vlan_inner: None,
                src_mac: Mac([2, 0, 0, 0, 0, c as u8]),
                dst_mac: Mac([2, 0, 0, 0, 1, 1]),
                proto: 6,
                src_ip: Ipv4Addr::new(10, 9, 0, c as u8 + 1).into(),
                src_port: 50_000 + minute as u16,
                dst_ip: Ipv4Addr::new(192, 0, 2, 80).into(),
                dst_port: 443,
                packets: 10,
                bytes: 5_000,
                resp_packets: 5,
                resp_bytes: 4_000,
                tcp_flags: 0x1b,
                dropped: 0,
                rule: None,
                end_reason: EndReason::Fin,
                attr: Attribution {
                    user: Some(format!(
                        "C-{:06}",
                        (u64::from(c) * 7919 + minute as u64) % 1000
                    )),
                    nat_ip: Some(outside),
                    nat_port: Some(port),
                    ..Attribution::default()
                },
            });
        }
    }
    out.sort_by_key(|r| r.time_start_ns);
    out
}

#[test]
fn nat_at_picks_the_inside_flow_among_100_concurrent_ones_with_reused_ports() {
    let dir = TempDir::new("formats-nat-at");
    let clock = FakeClock::new(T0);
    let mut store = open(dir.path(), &clock);
    let flows = concurrent_flows();
    for r in &flows {
        clock.set(r.time_start_ns);
        store.append(r);
    }
    assert!(store.sync_now(), "sync");
    drop(store);
    let sec = 1_000_000_000;
    // Instants in sealed hours and in the live journal, inside a flow's life.
    for (k, want) in flows.iter().enumerate().step_by(1_777) {
        let at = want.time_start_ns + (k as i64 % 50) * sec;
        let f = Filter {
            nat: Some(NatFilter {
                ip: want.attr.nat_ip.expect("nat ip"),
                port: want.attr.nat_port,
            }),
            since_ns: Some(at),
            until_ns: Some(at + 1),
            ..Filter::default()
        };
        let got = collect(dir.path(), &f).expect("query");
        assert_eq!(got, vec![want.clone()], "--nat with --at {at} (flow {k})");

        // The command answers in one line of table output, with the account.
        let tuple = format!(
            "{}:{}",
            want.attr.nat_ip.expect("ip"),
            want.attr.nat_port.expect("port")
        );
        let at_text = jiff::Timestamp::from_nanosecond(i128::from(at))
            .expect("time")
            .to_string();
        let out = Command::new(BIN)
            .args(["query", "--log-dir"])
            .arg(dir.path())
            .args(["--nat", &tuple, "--at", &at_text])
            .output()
            .expect("run xdp-audit query");
        assert!(
            out.status.success(),
            "query --nat {tuple} --at {at_text}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "header and one answer:\n{text}");
        let user = want.attr.user.as_deref().expect("user");
        let inside = format!("{}:{}", want.src_ip, want.src_port);
        assert!(lines[0].starts_with("outside"), "{text}");
        for part in [tuple.as_str(), user, inside.as_str()] {
            assert!(
                lines[1].contains(part),
                "{part} missing from {:?}",
                lines[1]
            );
        }
    }
    // Between two holders of a port (each flow ends a second before the port is reassigned)
    // nobody had it.
    let gap = flows[0].time_end_ns + sec / 2;
    let f = Filter {
        nat: Some(NatFilter {
            ip: flows[0].attr.nat_ip.expect("ip"),
            port: flows[0].attr.nat_port,
        }),
        since_ns: Some(gap),
        until_ns: Some(gap + 1),
        ..Filter::default()
    };
    assert_eq!(collect(dir.path(), &f).expect("query"), vec![]);
}
