//! The SQL of `query`'s filters for DuckDB over segment files, shared by the equality test
//! (`query_duckdb.rs`) and the side-by-side benchmark (`benches/query_engines.rs`), so both
//! ask DuckDB the same questions.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use xdp_audit::store::address::ip_to_column;
use xdp_audit::store::manifest;

/// Upper-case hex, as DuckDB's `hex()` prints a blob.
pub fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02X}");
        s
    })
}

/// DuckDB's list of the live segment files of the store in `dir`, as the manifest lists them
/// (`'a.parquet', 'b.parquet'`).
pub fn segment_list(dir: &Path) -> String {
    let entries = manifest::read_entries(dir)
        .unwrap_or_else(|e| panic!("read the manifest of {}: {e}", dir.display()));
    manifest::live_segments(&entries)
        .iter()
        .map(|s| format!("'{}'", dir.join(&s.file).display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A DuckDB literal of bytes.
pub fn blob(b: &[u8]) -> String {
    format!("from_hex('{}')", hex(b))
}

/// The SQL of an address on either side.
pub fn sql_ip(ip: IpAddr) -> String {
    let x = blob(&ip_to_column(ip));
    format!("(src_ip = {x} OR dst_ip = {x})")
}

/// The SQL of a name or a name under it, in `domain` or `dns_qname`.
pub fn sql_domain(d: &str) -> String {
    let one = |c: &str| {
        format!("(lower(rtrim({c}, '.')) = '{d}' OR ends_with(lower(rtrim({c}, '.')), '.{d}'))")
    };
    format!("({} OR {})", one("domain"), one("dns_qname"))
}

/// The SQL of a prefix (`lo`..=`hi` in column form) on either side.
pub fn sql_range(lo: IpAddr, hi: IpAddr) -> String {
    let (lo, hi) = (blob(&ip_to_column(lo)), blob(&ip_to_column(hi)));
    format!("((src_ip BETWEEN {lo} AND {hi}) OR (dst_ip BETWEEN {lo} AND {hi}))")
}

/// The SQL of the time window as `Filter::overlaps` reads a record.
pub fn sql_window(since: Option<i64>, until: Option<i64>) -> String {
    let mut w = Vec::new();
    if let Some(s) = since {
        w.push(format!(
            "greatest(epoch_ns(time_end), epoch_ns(time_start)) >= {s}"
        ));
    }
    if let Some(u) = until {
        w.push(format!("epoch_ns(time_start) < {u}"));
    }
    w.join(" AND ")
}
