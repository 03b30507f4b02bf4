//! The per-segment address index: `query --ip` through the index returns exactly what the
//! full scan returns (same records, same order) and what a brute-force filter returns, for
//! source-side, destination-side and absent addresses, across page boundaries, for prefixes,
//! and for segments without an index; a damaged index is an error naming the file. The same
//! for `query --nat` through the index's outside addresses, sealed and compacted, and for
//! segments whose index predates them (version 1). The same for `query --mac`, `--user` and
//! `--domain` through the identity columns' Bloom filters (`segment::bloom`), and a damaged
//! filter is an error naming the file.

mod store_common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::file::metadata::{FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataWriter};
use parquet::file::reader::{FileReader, SerializedFileReader};
use store_common::{canon, TempDir, DAY, HOUR, T0};
use xdp_audit::record::FlowRecord;
use xdp_audit::record::Mac;
use xdp_audit::store::compact;
use xdp_audit::store::manifest::Manifest;
use xdp_audit::store::query::{collect, Cidr, DomainFilter, Filter, NatFilter};
use xdp_audit::store::seal::write_segment;
use xdp_audit::store::segment::bloom::{BLOOM_KEY, FILTERED};
use xdp_audit::store::segment::index::INDEX_KEY;
use xdp_audit::store::segment::{col, SegmentReader};
use xdp_audit::store::testgen::{Rng, TrafficGen};

/// Rows per segment: several data pages (8,192 rows each) per column.
const ROWS: usize = 30_000;

/// A store of three sealed segments of generated traffic. Some flows are turned around so
/// that LAN clients also appear as destinations (the destination side of the index), and
/// one remote host is made a source in one segment only.
fn build(dir: &Path) -> Vec<FlowRecord> {
    let mut g = TrafficGen::with_rate(5, T0, 10.0);
    let mut rng = Rng::new(17);
    let mut manifest = Manifest::load(dir, None).expect("manifest");
    let mut all = Vec::new();
    for s in 0..3u64 {
        let mut recs: Vec<FlowRecord> = (0..ROWS).map(|_| g.next_record()).collect();
        for r in recs.iter_mut() {
            if rng.chance(0.01) {
                std::mem::swap(&mut r.src_ip, &mut r.dst_ip);
            }
        }
        all.extend(recs.iter().cloned());
        let cols: xdp_audit::store::columns::Columns = recs.iter().collect();
        write_segment(dir, cols, s + 1, &mut manifest).expect("write segment");
    }
    all
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list store")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v
}

/// Runs `f` with and without the index: same records in the same order, and the same set as
/// a brute-force filter over everything written.
fn check(dir: &Path, all: &[FlowRecord], f: Filter, what: &str) -> usize {
    let indexed = collect(dir, &f).unwrap_or_else(|e| panic!("{what}: {e}"));
    let full = collect(
        dir,
        &Filter {
            ignore_index: true,
            ..f.clone()
        },
    )
    .unwrap_or_else(|e| panic!("{what} (full scan): {e}"));
    assert_eq!(indexed.len(), full.len(), "{what}: {f:?}");
    assert_eq!(indexed, full, "{what}: indexed and full scan differ: {f:?}");
    let brute: Vec<FlowRecord> = all.iter().filter(|r| f.matches(r)).cloned().collect();
    assert_eq!(canon(indexed.clone()), canon(brute), "{what}: {f:?}");
    indexed.len()
}

fn host(ip: IpAddr) -> Filter {
    Filter {
        cidr: Some(Cidr::host(ip)),
        ..Filter::default()
    }
}

/// The source address whose run holds row `row` of the first row group of `path`.
fn src_at_row(path: &Path, row: usize) -> IpAddr {
    let recs = SegmentReader::open(path)
        .expect("open")
        .read_all()
        .expect("read");
    recs[row].src_ip
}

#[test]
fn indexed_queries_match_the_full_scan_and_brute_force() {
    let dir = TempDir::new("qindex");
    let all = build(dir.path());
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 3);
    for s in &segs {
        let idx = SegmentReader::open(s)
            .expect("open")
            .address_index()
            .expect("index parses");
        assert!(idx.is_some(), "{} has no index", s.display());
    }

    // Source side: every client, including the ones whose run crosses a page boundary.
    let mut clients: Vec<IpAddr> = all.iter().map(|r| r.src_ip).collect();
    clients.sort();
    clients.dedup();
    let mut rng = Rng::new(3);
    let mut matched = 0;
    for ip in clients.iter().filter(|_| rng.chance(0.05)) {
        matched += check(dir.path(), &all, host(*ip), &format!("source {ip}"));
    }
    for row in [8191, 8192, 16383, 16384, 24575, 24576, ROWS - 1, 0] {
        let ip = src_at_row(&segs[1], row);
        let n = check(dir.path(), &all, host(ip), &format!("source at row {row}"));
        assert!(n > 0, "the client at row {row} must be found");
    }

    // Destination side: remote hosts (popular and rare), and clients seen as destinations.
    let mut seen = std::collections::HashSet::new();
    for r in all.iter().step_by(4999) {
        if seen.insert(r.dst_ip) {
            let n = check(dir.path(), &all, host(r.dst_ip), "destination");
            assert!(n > 0, "destination {} must be found", r.dst_ip);
        }
    }
    let turned: Vec<IpAddr> = all
        .iter()
        .filter(|r| clients.contains(&r.dst_ip))
        .map(|r| r.dst_ip)
        .take(5)
        .collect();
    assert!(
        !turned.is_empty(),
        "the mix must put clients on the destination side"
    );
    for ip in turned {
        check(dir.path(), &all, host(ip), "client as destination");
    }

    // Absent addresses match nothing.
    for ip in [
        "198.51.100.77",
        "2001:db8:ffff::1",
        "10.0.0.19",
        "0.0.0.0",
        "::",
    ] {
        let n = check(dir.path(), &all, host(ip.parse().expect("ip")), ip);
        assert_eq!(n, 0, "{ip} is absent");
    }

    // Prefixes, alone and with a time window and a port.
    for (p, window) in [
        ("10.0.0.0/24", false),
        ("10.0.1.0/24", true),
        ("10.0.0.0/8", false),
        ("2001:db8:0:1::/64", true),
        ("0.0.0.0/0", false),
        ("::/0", true),
    ] {
        let mut f = Filter {
            cidr: Some(p.parse().expect("prefix")),
            ..Filter::default()
        };
        if window {
            f.since_ns = Some(T0 + HOUR / 3);
            f.until_ns = Some(T0 + HOUR / 2);
            f.port = Some(443);
        }
        check(dir.path(), &all, f, p);
    }
    assert!(matched > 0);
}

/// Rewrites the footer of the segment at `path`, replacing the index value by `edit(value)`
/// (`None`: the key is removed, as in a segment written before the index existed).
fn rewrite_index(path: &Path, edit: impl Fn(&str) -> Option<String>) {
    rewrite_footer(path, |v, _| edit(v));
}

/// As [`rewrite_index`], `edit` getting the file's bytes before the footer too, to which it
/// may append a blob the new value points at.
fn rewrite_footer(path: &Path, edit: impl Fn(&str, &mut Vec<u8>) -> Option<String>) {
    rewrite_footer_key(path, INDEX_KEY, edit);
}

/// As [`rewrite_footer`], for the key-value entry `key`.
fn rewrite_footer_key(path: &Path, key: &str, edit: impl Fn(&str, &mut Vec<u8>) -> Option<String>) {
    let bytes = std::fs::read(path).expect("read segment");
    let reader =
        SerializedFileReader::new(std::fs::File::open(path).expect("open")).expect("footer");
    let meta = reader.metadata();
    let n = bytes.len();
    let footer_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let mut out = bytes[..n - 8 - footer_len].to_vec();
    let fm = meta.file_metadata();
    let kv: Vec<KeyValue> = fm
        .key_value_metadata()
        .expect("key-value metadata")
        .iter()
        .filter_map(|kv| {
            if kv.key == key {
                edit(kv.value.as_deref().unwrap_or_default(), &mut out)
                    .map(|v| KeyValue::new(key.to_owned(), v))
            } else {
                Some(kv.clone())
            }
        })
        .collect();
    let file_meta = FileMetaData::new(
        fm.version(),
        fm.num_rows(),
        fm.created_by().map(str::to_owned),
        Some(kv),
        Arc::new(fm.schema_descr().clone()),
        fm.column_orders().cloned(),
    );
    let new_meta = ParquetMetaData::new(file_meta, meta.row_groups().to_vec());
    ParquetMetaDataWriter::new(&mut out, &new_meta)
        .finish()
        .expect("write footer");
    drop(reader);
    std::fs::write(path, out).expect("write segment");
    relist(path);
}

/// Records the rewritten segment's size and footer hash in its manifest entry, as the writer
/// of such a file would have: readers check each segment against its entry.
fn relist(path: &Path) {
    let dir = path.parent().expect("the store directory");
    let name = path.file_name().expect("name").to_string_lossy();
    let size = std::fs::metadata(path).expect("stat").len();
    let footer = xdp_audit::store::segment::footer_sha256(
        &std::fs::File::open(path).expect("open the segment"),
        size,
    )
    .expect("hash the footer");
    let manifest = dir.join(xdp_audit::store::manifest::MANIFEST);
    let text = std::fs::read_to_string(&manifest).expect("read the manifest");
    let entry = format!("\"file\":\"{name}\"");
    let mut out = String::new();
    for line in text.lines() {
        let mut line = line.to_owned();
        if line.contains(&entry) {
            let at = line.find("\"size\":").expect("a size field") + "\"size\":".len();
            let end = at + line[at..].find(',').expect("a field after size");
            line.replace_range(at..end, &size.to_string());
            let at = line.find("\"footer_sha256\":\"").expect("a footer hash")
                + "\"footer_sha256\":\"".len();
            line.replace_range(at..at + 64, &footer);
        }
        out.push_str(&line);
        out.push('\n');
    }
    std::fs::write(&manifest, out).expect("write the manifest");
}

#[test]
fn segments_without_an_index_are_read_by_the_full_scan() {
    let dir = TempDir::new("qnoindex");
    let all = build(dir.path());
    let segs = segments(dir.path());
    rewrite_index(&segs[1], |_| None);
    assert!(
        SegmentReader::open(&segs[1])
            .expect("open")
            .address_index()
            .expect("no index is not an error")
            .is_none(),
        "the index must be gone"
    );
    let client = src_at_row(&segs[1], 8192);
    let n = check(
        dir.path(),
        &all,
        host(client),
        "client, one segment unindexed",
    );
    assert!(n > 0);
    let remote = all[ROWS + 100].dst_ip;
    check(
        dir.path(),
        &all,
        host(remote),
        "remote, one segment unindexed",
    );
    check(
        dir.path(),
        &all,
        host("198.51.100.77".parse().expect("ip")),
        "absent, one segment unindexed",
    );
}

#[test]
fn a_damaged_index_is_an_error_naming_the_segment() {
    let dir = TempDir::new("qbadindex");
    build(dir.path());
    let segs = segments(dir.path());
    // A changed character keeps valid base64 but breaks the checksum.
    rewrite_index(&segs[2], |v| {
        let mut b = v.as_bytes().to_vec();
        b[10] = if b[10] == b'A' { b'B' } else { b'A' };
        Some(String::from_utf8(b).expect("ascii"))
    });
    let name = segs[2]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let err = collect(dir.path(), &host("10.0.0.20".parse().expect("ip")))
        .expect_err("a damaged index must not be used");
    let msg = err.to_string();
    assert!(msg.contains(&name), "{msg}");
    assert!(msg.contains(INDEX_KEY), "{msg}");
    // Not base64 at all, and a truncated value: errors too, never a panic.
    for bad in ["%%%%", ""] {
        rewrite_index(&segs[2], |_| Some(bad.to_owned()));
        let msg = collect(dir.path(), &host("10.0.0.20".parse().expect("ip")))
            .expect_err("must refuse")
            .to_string();
        assert!(msg.contains(&name), "{msg}");
    }
    // A query without an address does not need the index.
    collect(dir.path(), &Filter::default()).expect("unfiltered query ignores the index");
}

/// `--nat IP:PORT`, `--nat IP`, at one instant (a 1 ns window; `--at` widens it), with an
/// account or an address, for a sample of the NATed flows and for absent tuples: the same
/// records through the index as through the column scan and as a brute-force filter.
/// Returns the matches.
fn check_nat(dir: &Path, all: &[FlowRecord], what: &str) -> usize {
    let mut rng = Rng::new(23);
    let mut matched = 0;
    let nated: Vec<&FlowRecord> = all.iter().filter(|r| r.attr.nat_port.is_some()).collect();
    assert!(nated.len() > all.len() / 2, "the mix must be mostly NATed");
    for r in nated.iter().filter(|_| rng.chance(0.002)) {
        let (Some(ip), Some(port)) = (r.attr.nat_ip, r.attr.nat_port) else {
            continue;
        };
        let tuple = Some(NatFilter {
            ip,
            port: Some(port),
        });
        let n = check(
            dir,
            all,
            Filter {
                nat: tuple,
                ..Filter::default()
            },
            &format!("{what}: --nat {ip}:{port}"),
        );
        assert!(n > 0, "{what}: --nat {ip}:{port} must find its flow");
        matched += n;
        let at = Filter {
            nat: tuple,
            since_ns: Some(r.time_start_ns),
            until_ns: Some(r.time_start_ns + 1),
            ..Filter::default()
        };
        assert!(
            check(
                dir,
                all,
                at,
                &format!("{what}: --nat {ip}:{port} at one instant")
            ) > 0
        );
        let with_user = Filter {
            nat: tuple,
            user: r.attr.user.clone(),
            cidr: Some(Cidr::host(r.src_ip)),
            ..Filter::default()
        };
        check(dir, all, with_user, &format!("{what}: --nat --user --ip"));
    }
    for ip in [
        "203.0.113.1",
        "203.0.113.4",
        "198.51.100.9",
        "::ffff:203.0.113.2",
    ] {
        let ip: IpAddr = ip.parse().expect("ip");
        for port in [None, Some(1), Some(40_000)] {
            let f = Filter {
                nat: Some(NatFilter { ip, port }),
                ..Filter::default()
            };
            matched += check(dir, all, f, &format!("{what}: --nat {ip} port {port:?}"));
        }
    }
    matched
}

#[test]
fn nat_queries_through_the_index_match_the_full_scan_and_brute_force() {
    let dir = TempDir::new("qnat");
    let all = build(dir.path());
    for s in segments(dir.path()) {
        let idx = SegmentReader::open(&s)
            .expect("open")
            .address_index()
            .expect("index parses")
            .expect("index present");
        let nat = "203.0.113.1".parse::<IpAddr>().expect("ip");
        let rows = idx
            .group(0)
            .and_then(|g| g.nat_rows(u128::from_be_bytes(in_column_form(nat))));
        assert!(
            rows.is_some_and(|r| !r.is_empty()),
            "{}: the index must hold the outside addresses",
            s.display()
        );
    }
    assert!(check_nat(dir.path(), &all, "sealed") > 0);
    // Merged days (one row group a day): the index is written for them too.
    let mut manifest = Manifest::load(dir.path(), None).expect("manifest");
    let merged = compact::run(
        dir.path(),
        &mut manifest,
        T0 + 3 * DAY,
        compact::DEFAULT_MAX_ROWS,
    )
    .expect("compact");
    compact::run(
        dir.path(),
        &mut manifest,
        T0 + 3 * DAY,
        compact::DEFAULT_MAX_ROWS,
    )
    .expect("delete the inputs");
    assert!(merged > 0, "the test's segments must be merged");
    assert!(check_nat(dir.path(), &all, "compacted") > 0);
}

/// The 16-byte column form of an address (IPv4 mapped), as the index keys it.
fn in_column_form(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[test]
fn segments_with_an_index_of_version_1_answer_nat_queries_by_the_scan() {
    let dir = TempDir::new("qnatv1");
    let all = build(dir.path());
    let segs = segments(dir.path());
    let old = SegmentReader::open(&segs[1])
        .expect("open")
        .address_index()
        .expect("index parses")
        .expect("index present")
        .encode_v1();
    assert_eq!(old[0], 1, "a version 1 index");
    rewrite_footer(&segs[1], |_, data| {
        let at = data.len();
        data.extend_from_slice(&old);
        Some(format!("{at}+{}", old.len()))
    });
    let idx = SegmentReader::open(&segs[1])
        .expect("open")
        .address_index()
        .expect("a version 1 index is read")
        .expect("present");
    assert_eq!(
        idx.group(0).and_then(|g| g.nat_rows(0)),
        None,
        "no outside addresses"
    );
    assert!(check_nat(dir.path(), &all, "one segment with a version 1 index") > 0);
    // Its address part still answers `--ip`.
    let client = src_at_row(&segs[1], 8192);
    assert!(check(dir.path(), &all, host(client), "client, version 1 index") > 0);
}

#[test]
fn a_damaged_nat_part_of_the_index_is_refused_naming_the_segment() {
    let dir = TempDir::new("qnatbad");
    build(dir.path());
    let segs = segments(dir.path());
    let good = SegmentReader::open(&segs[0])
        .expect("open")
        .address_index()
        .expect("index parses")
        .expect("index present")
        .encode();
    // The outside-address runs are the last bytes before the CRC: change one run length and
    // fix the CRC up, so only the structure checks can catch it.
    let mut bad = good[..good.len() - 4].to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let crc = crc32fast::hash(&bad);
    bad.extend_from_slice(&crc.to_le_bytes());
    rewrite_footer(&segs[0], |_, data| {
        let at = data.len();
        data.extend_from_slice(&bad);
        Some(format!("{at}+{}", bad.len()))
    });
    let name = segs[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let nat = Filter {
        nat: Some(NatFilter {
            ip: "203.0.113.1".parse().expect("ip"),
            port: Some(40_000),
        }),
        ..Filter::default()
    };
    let msg = collect(dir.path(), &nat)
        .expect_err("must refuse")
        .to_string();
    assert!(msg.contains(&name) && msg.contains(INDEX_KEY), "{msg}");
    assert!(msg.contains("outside address"), "{msg}");
}

/// `--mac`, `--user` and `--domain` (a name, its parent, a DNS question's parent) for a sample
/// of the records' values and for absent ones: the same records through the Bloom filters as
/// through the full scan and as a brute-force filter. Returns the matches.
fn check_identities(dir: &Path, all: &[FlowRecord], what: &str) -> usize {
    let mut rng = Rng::new(29);
    let mut matched = 0;
    for r in all.iter().filter(|_| rng.chance(0.0001)) {
        let mut filters = vec![
            (
                format!("--mac {}", r.src_mac),
                Filter {
                    mac: Some(r.src_mac),
                    ..Filter::default()
                },
            ),
            (
                format!("--mac {} (destination)", r.dst_mac),
                Filter {
                    mac: Some(r.dst_mac),
                    ..Filter::default()
                },
            ),
        ];
        if let Some(u) = &r.attr.user {
            filters.push((
                format!("--user {u}"),
                Filter {
                    user: Some(u.clone()),
                    ..Filter::default()
                },
            ));
        }
        for name in [&r.attr.domain, &r.attr.dns_qname].into_iter().flatten() {
            let parent = name.split_once('.').map_or(name.as_str(), |(_, p)| p);
            for n in [name.as_str(), parent] {
                filters.push((
                    format!("--domain {n}"),
                    Filter {
                        domain: Some(n.parse::<DomainFilter>().expect("name")),
                        ..Filter::default()
                    },
                ));
            }
        }
        for (q, f) in filters {
            let n = check(dir, all, f, &format!("{what}: {q}"));
            assert!(n > 0, "{what}: {q} must find the record it was taken from");
            matched += n;
        }
    }
    let absent = [
        Filter {
            mac: Some(Mac([0x3c, 0x22, 0xfb, 0xee, 0xee, 0xee])),
            ..Filter::default()
        },
        Filter {
            user: Some("C-nobody".into()),
            ..Filter::default()
        },
        Filter {
            domain: Some("absent.example".parse().expect("name")),
            ..Filter::default()
        },
    ];
    for f in absent {
        assert_eq!(check(dir, all, f.clone(), what), 0, "{what}: {f:?}");
    }
    matched
}

#[test]
fn identity_queries_through_the_bloom_filters_match_the_full_scan_and_brute_force() {
    let dir = TempDir::new("qbloom");
    let all = build(dir.path());
    let sample = &all[ROWS / 2];
    for s in segments(dir.path()) {
        let seg = SegmentReader::open(&s).expect("open");
        for (c, _) in FILTERED {
            assert!(
                seg.bloom(0, c).expect("filter reads").is_some(),
                "{}: column {c} has no Bloom filter",
                s.display()
            );
        }
        // The seam: absent values are ruled out, ports are not indexed.
        let no = |x: Option<bool>| assert_eq!(x, Some(false), "{}", s.display());
        no(seg
            .mac_may_be_in(0, [0x3c, 0x22, 0xfb, 0xee, 0xee, 0xee])
            .expect("mac"));
        no(seg.user_may_be_in(0, "C-nobody").expect("user"));
        no(seg.domain_may_be_in(0, "absent.example").expect("domain"));
        assert_eq!(seg.port_may_be_in(0, 443).expect("port"), None);
    }
    let seg = SegmentReader::open(&segments(dir.path())[1]).expect("open");
    assert_eq!(
        seg.mac_may_be_in(0, sample.src_mac.0).expect("mac"),
        Some(true)
    );
    if let Some(d) = &sample.attr.domain {
        let parent = d.split_once('.').map_or(d.as_str(), |(_, p)| p);
        assert_eq!(seg.domain_may_be_in(0, parent).expect("parent"), Some(true));
    }
    assert!(check_identities(dir.path(), &all, "sealed") > 0);
    let mut manifest = Manifest::load(dir.path(), None).expect("manifest");
    let merged: Vec<usize> = (0..2)
        .map(|_| {
            compact::run(
                dir.path(),
                &mut manifest,
                T0 + 3 * DAY,
                compact::DEFAULT_MAX_ROWS,
            )
            .expect("compact")
        })
        .collect();
    assert!(merged[0] > 0, "the test's segments must be merged");
    assert!(check_identities(dir.path(), &all, "compacted") > 0);
}

#[test]
fn a_damaged_bloom_filter_is_an_error_naming_the_segment() {
    let dir = TempDir::new("qbloombad");
    build(dir.path());
    let segs = segments(dir.path());
    let (at, len) = {
        let r = SerializedFileReader::new(std::fs::File::open(&segs[1]).expect("open"))
            .expect("footer");
        let c = r.metadata().row_group(0).column(col::USER);
        (
            c.bloom_filter_offset().expect("offset") as usize,
            c.bloom_filter_length().expect("length") as usize,
        )
    };
    let mut bytes = std::fs::read(&segs[1]).expect("read");
    bytes[at + len - 1] ^= 0x10;
    std::fs::write(&segs[1], bytes).expect("write");
    let name = segs[1]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let f = Filter {
        user: Some("C-000001".into()),
        ..Filter::default()
    };
    let msg = collect(dir.path(), &f)
        .expect_err("must refuse")
        .to_string();
    assert!(msg.contains(&name) && msg.contains("Bloom filter"), "{msg}");
    assert!(msg.contains("user"), "the column must be named: {msg}");
    // Queries that use no filter of that column do not read it.
    collect(
        dir.path(),
        &Filter {
            mac: Some(Mac([2, 0, 0x5e, 0x10, 0, 1])),
            ..Filter::default()
        },
    )
    .expect("the MAC filters are intact");
}

/// Segments without the filters (format 5 and earlier: no `xdp-audit.bloom-crc32` key) answer
/// `--mac`, `--user` and `--domain` by the scan, with the same records.
#[test]
fn segments_without_bloom_filters_are_read_by_the_scan() {
    let dir = TempDir::new("qnobloom");
    let all = build(dir.path());
    let segs = segments(dir.path());
    rewrite_footer_key(&segs[1], BLOOM_KEY, |_, _| None);
    let seg = SegmentReader::open(&segs[1]).expect("open");
    assert!(
        seg.bloom(0, col::USER)
            .expect("no key is not an error")
            .is_none(),
        "the filters must be gone"
    );
    assert_eq!(
        seg.mac_may_be_in(0, [0x3c, 0x22, 0xfb, 0xee, 0xee, 0xee])
            .expect("mac"),
        None,
        "without the key a segment is not indexed"
    );
    assert!(check_identities(dir.path(), &all, "one segment without filters") > 0);
}
