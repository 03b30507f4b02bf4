//! Identity point lookups over the bench store (`--nat`, `--ip` of a LAN client, a remote
//! host and an absent address, `--mac`, `--port`, `--user`, `--domain`), rows and
//! `--count`, each next to DuckDB on the same files in the same run (rows and count), and DuckDB again on a copy whose footers no longer point at the Bloom
//! filters (its "before"). DuckDB runs in one `python3 -` process; every figure is the best
//! of three warm runs, wall and CPU time.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use parquet::file::metadata::{FileMetaData, ParquetMetaData, ParquetMetaDataWriter};
use parquet::file::reader::{FileReader, SerializedFileReader};
use xdp_audit::record::FlowRecord;
use xdp_audit::store::query::{Cidr, DomainFilter, Filter, NatFilter};

/// One lookup: its label, our filter, and DuckDB's `WHERE` clause for the same records.
pub struct Lookup {
    pub what: String,
    pub filter: Filter,
    pub sql: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn column(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// The lookup `--ip ip`, labelled with `what` the address is.
pub fn ip(what: &str, ip: std::net::IpAddr) -> Lookup {
    let hex_ip = hex(&column(ip));
    Lookup {
        what: format!("--ip {ip} ({what})"),
        filter: Filter {
            cidr: Some(Cidr::host(ip)),
            ..Filter::default()
        },
        sql: format!("src_ip = from_hex('{hex_ip}') OR dst_ip = from_hex('{hex_ip}')"),
    }
}

/// The lookups of a client's record `r` and a NATed record `nat`.
pub fn lookups(r: &FlowRecord, nat: &FlowRecord) -> Vec<Lookup> {
    let mut out = vec![ip("LAN client", r.src_ip)];
    let mac = hex(&r.src_mac.0);
    out.push(Lookup {
        what: format!("--mac {}", r.src_mac),
        filter: Filter {
            mac: Some(r.src_mac),
            ..Filter::default()
        },
        sql: format!("src_mac = from_hex('{mac}') OR dst_mac = from_hex('{mac}')"),
    });
    out.push(Lookup {
        what: "--port 8443".into(),
        filter: Filter {
            port: Some(8443),
            ..Filter::default()
        },
        sql: "src_port = 8443 OR dst_port = 8443".into(),
    });
    if let Some(u) = &r.attr.user {
        out.push(Lookup {
            what: format!("--user {u}"),
            filter: Filter {
                user: Some(u.clone()),
                ..Filter::default()
            },
            sql: format!("\"user\" = '{u}'"),
        });
    }
    if let Some(d) = r
        .attr
        .domain
        .as_deref()
        .and_then(|d| d.parse::<DomainFilter>().ok())
    {
        let d = d.as_str().to_owned();
        out.push(Lookup {
            what: format!("--domain {d}"),
            filter: Filter {
                domain: d.parse().ok(),
                ..Filter::default()
            },
            sql: format!(
                "domain = '{d}' OR domain LIKE '%.{d}' OR dns_qname = '{d}' OR dns_qname LIKE '%.{d}'"
            ),
        });
    }
    if let (Some(ip), Some(port)) = (nat.attr.nat_ip, nat.attr.nat_port) {
        out.push(Lookup {
            what: format!("--nat {ip}:{port}"),
            filter: Filter {
                nat: Some(NatFilter {
                    ip,
                    port: Some(port),
                }),
                ..Filter::default()
            },
            sql: format!(
                "nat_ip = from_hex('{}') AND nat_port = {port}",
                hex(&column(ip))
            ),
        });
    }
    out
}

const DUCKDB: &str = r#"
import duckdb, json, sys, time
req = json.load(sys.stdin)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
src = "read_parquet('" + req["glob"] + "')"
def best(sql, rows):
    runs = []
    for _ in range(3):
        w, c = time.perf_counter(), time.process_time()
        if rows:
            # Every column of every matching row, materialised (as our query decodes them).
            con.execute(f"CREATE OR REPLACE TEMP TABLE r AS {sql}")
            n = con.execute("SELECT count(*) FROM r").fetchone()[0]
        else:
            n = con.execute(sql).fetchone()[0]
        runs.append((time.perf_counter() - w, time.process_time() - c, n))
    return min(runs)
for q in req["queries"]:
    where = q["where"]
    cw, cc, n = best(f"SELECT count(*) FROM {src} WHERE {where}", False)
    rw, rc, m = best(f"SELECT * FROM {src} WHERE {where}", True)
    print(json.dumps({"what": q["what"], "count": [cw, cc, n], "rows": [rw, rc, m]}), flush=True)
"#;

/// Wall s, CPU s and rows of one DuckDB run.
type Run = (f64, f64, u64);

/// DuckDB's best-of-3 [`Run`] for the count and the rows of each lookup over the segments in
/// `dir`; the reason if DuckDB cannot run.
pub fn duckdb(dir: &Path, ls: &[Lookup]) -> Result<Vec<[Run; 2]>, String> {
    let req = serde_json::json!({
        "glob": format!("{}/seg-*.parquet", dir.display()),
        "queries": ls.iter().map(|l| serde_json::json!({"what": l.what, "where": l.sql})).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(DUCKDB)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("python3: no stdin")?
        .write_all(req.to_string().as_bytes())
        .map_err(|e| format!("python3: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "duckdb (pip install duckdb): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let triple = |v: &serde_json::Value| {
        (
            v[0].as_f64().unwrap_or(f64::NAN),
            v[1].as_f64().unwrap_or(f64::NAN),
            v[2].as_u64().unwrap_or(0),
        )
    };
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| [triple(&v["count"]), triple(&v["rows"])])
        .collect())
}

/// A copy of the segments of `src` in `dst` whose footers no longer point at their Bloom
/// filters (the bytes stay where they are, unreferenced): the files as they were before
/// the filters, for DuckDB's "before".
pub fn without_blooms(src: &Path, dst: &Path) {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst).expect("copy dir");
    for e in std::fs::read_dir(src).expect("list").filter_map(|e| e.ok()) {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with("seg-") {
            continue;
        }
        let bytes = std::fs::read(e.path()).expect("read segment");
        let reader = SerializedFileReader::new(std::fs::File::open(e.path()).expect("open"))
            .expect("footer");
        let meta = reader.metadata();
        let n = bytes.len();
        let footer_len =
            u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
        let mut out = bytes[..n - 8 - footer_len].to_vec();
        let groups = meta
            .row_groups()
            .iter()
            .map(|g| {
                let cols = g
                    .columns()
                    .iter()
                    .map(|c| {
                        c.clone()
                            .into_builder()
                            .set_bloom_filter_offset(None)
                            .set_bloom_filter_length(None)
                            .build()
                            .expect("column metadata")
                    })
                    .collect();
                g.clone()
                    .into_builder()
                    .set_column_metadata(cols)
                    .build()
                    .expect("row group metadata")
            })
            .collect();
        let fm = meta.file_metadata();
        let file_meta = FileMetaData::new(
            fm.version(),
            fm.num_rows(),
            fm.created_by().map(str::to_owned),
            fm.key_value_metadata().cloned(),
            Arc::new(fm.schema_descr().clone()),
            fm.column_orders().cloned(),
        );
        ParquetMetaDataWriter::new(&mut out, &ParquetMetaData::new(file_meta, groups))
            .finish()
            .expect("write footer");
        std::fs::write(dst.join(name), out).expect("write copy");
    }
}

fn fig((wall, cpu, n): Run) -> String {
    format!("{wall:.3} s wall ({cpu:.3} s CPU), {n}")
}

/// Prints each lookup over the store at `dir`: ours (`timed(filter, rounds, count)`: the
/// rows, or with `count` the `--count`), ours without
/// the indexes where they are new (MAC, account, name: one round, the path before them), and
/// DuckDB on the same files and on a copy without the Bloom filters.
pub fn report(
    dir: &Path,
    n: u64,
    ls: &[Lookup],
    timed: &mut dyn FnMut(&Filter, usize, bool) -> String,
) {
    // `XDP_AUDIT_BENCH_NO_BEFORE=1`: no "before the Bloom filters" runs (at 100 M records
    // DuckDB's pass over the copy alone takes ten minutes of a loaded machine).
    let befores = std::env::var_os("XDP_AUDIT_BENCH_NO_BEFORE").is_none();
    let after = duckdb(dir, ls);
    let before = if befores {
        let mut copy = dir.as_os_str().to_owned();
        copy.push("-nobloom");
        let copy = std::path::PathBuf::from(copy);
        without_blooms(dir, &copy);
        let before = duckdb(&copy, ls);
        let _ = std::fs::remove_dir_all(&copy);
        before
    } else {
        Err("XDP_AUDIT_BENCH_NO_BEFORE is set".into())
    };
    for (i, l) in ls.iter().enumerate() {
        let ours = timed(&l.filter, 3, false);
        let ours_count = timed(&l.filter, 3, true);
        let new_index = befores
            && (l.filter.mac.is_some() || l.filter.user.is_some() || l.filter.domain.is_some());
        let without = if new_index {
            let f = Filter {
                ignore_index: true,
                ..l.filter.clone()
            };
            format!(
                "; without the Bloom filters (1 run): {}",
                timed(&f, 1, false)
            )
        } else {
            String::new()
        };
        let duck = |r: &Result<Vec<[Run; 2]>, String>| match r {
            Ok(v) => v.get(i).map_or("no answer".into(), |[c, r]| {
                format!("rows {} matches, count {} ", fig(*r), fig(*c))
            }),
            Err(e) => format!("not run: {e}"),
        };
        println!(
            "lookup {}, warm, over {n} records (merged days): xdp-audit rows {ours}, \
             count {ours_count}{without}; DuckDB {}; DuckDB without the Bloom filters {}",
            l.what,
            duck(&after),
            duck(&before)
        );
    }
}
