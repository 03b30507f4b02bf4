//! The per-segment address index: `query --ip` through the index returns exactly what the
//! full scan returns (same records, same order) and what a brute-force filter returns, for
//! source-side, destination-side and absent addresses, across page boundaries, for prefixes,
//! and for segments without an index; a damaged index is an error naming the file.

mod store_common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::file::metadata::{FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataWriter};
use parquet::file::reader::{FileReader, SerializedFileReader};
use store_common::{canon, TempDir, HOUR, T0};
use xdp_audit::record::FlowRecord;
use xdp_audit::store::manifest::Manifest;
use xdp_audit::store::query::{collect, Cidr, Filter};
use xdp_audit::store::seal::write_segment;
use xdp_audit::store::segment::index::INDEX_KEY;
use xdp_audit::store::segment::SegmentReader;
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
    let bytes = std::fs::read(path).expect("read segment");
    let reader =
        SerializedFileReader::new(std::fs::File::open(path).expect("open")).expect("footer");
    let meta = reader.metadata();
    let n = bytes.len();
    let footer_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let data = &bytes[..n - 8 - footer_len];
    let fm = meta.file_metadata();
    let kv: Vec<KeyValue> = fm
        .key_value_metadata()
        .expect("key-value metadata")
        .iter()
        .filter_map(|kv| {
            if kv.key == INDEX_KEY {
                edit(kv.value.as_deref().unwrap_or_default())
                    .map(|v| KeyValue::new(INDEX_KEY.to_owned(), v))
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
    let mut out = data.to_vec();
    ParquetMetaDataWriter::new(&mut out, &new_meta)
        .finish()
        .expect("write footer");
    drop(reader);
    std::fs::write(path, out).expect("write segment");
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
