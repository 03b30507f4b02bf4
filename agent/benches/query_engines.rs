//! `xdp-audit query` side by side with DuckDB on the same files:
//! `cargo bench -p xdp-audit --bench query_engines`.
//!
//! The store: N generated records (`XDP_AUDIT_BENCH_RECORDS`, default 10,000,000) spread over
//! 90 days, sealed by the hour and every closed day merged, as the agent keeps them; built
//! once under `XDP_AUDIT_BENCH_ENGINES_DIR` (default `/var/tmp/xdp-audit-bench-engines-v6-N`)
//! and reused while it verifies.
//!
//! For each filter: `xdp-audit query --format csv ... > file` against DuckDB's
//! `COPY (SELECT * ... WHERE ...) TO file (FORMAT csv)`, and `query --count` against
//! `SELECT count(*)`, warm (one run first, not timed), in interleaved rounds (xdp-audit rows,
//! DuckDB rows, xdp-audit count, DuckDB count; `XDP_AUDIT_BENCH_ROUNDS`, default 5). Each
//! cell is the median wall time and the median CPU time (all threads: the query process's
//! rusage; DuckDB's `process_time` inside one Python process, so DuckDB pays no start-up and
//! xdp-audit pays its own), the ratio column xdp-audit / DuckDB (below 1: faster). The load
//! average is printed: on a shared machine the CPU ratios are the figures to trust.
//! `XDP_AUDIT_BENCH_BIN=PATH` times another build's binary instead (a before/after).
//! `XDP_AUDIT_BENCH_CASES=--ip,--port` runs only the filters whose label starts with one of
//! the comma-separated prefixes: over 100 M records `--cidr 10.0.0.0/24` matches nearly
//! every record, and both engines' CSV of it is tens of gigabytes.

#[path = "../tests/duckdb_common/mod.rs"]
mod duckdb_common;

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use duckdb_common::{blob, segment_list, sql_domain, sql_ip, sql_range, sql_window};
use xdp_audit::record::FlowRecord;
use xdp_audit::store::address::ip_to_column;
use xdp_audit::store::columns::Columns;
use xdp_audit::store::compact;
use xdp_audit::store::manifest::Manifest;
use xdp_audit::store::seal::write_segment;
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::verify::verify;

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;

/// Builds the store (hourly segments, then every closed day merged) unless it verifies.
fn build_store(dir: &Path, n: u64) {
    if verify(dir, None).is_ok_and(|v| v.rows == n && v.compacted > 0) {
        println!("store: reusing {} ({n} records, verified)", dir.display());
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let per_sec = n as f64 / (90.0 * 24.0 * 3600.0);
    let mut g = TrafficGen::with_rate(7, T0, per_sec);
    let mut manifest = Manifest::load(dir, None).expect("manifest");
    let t = Instant::now();
    let mut hour_end = T0 + HOUR;
    let mut batch = Columns::default();
    let flush = |batch: &mut Columns, manifest: &mut Manifest| {
        if !batch.is_empty() {
            let id = manifest.entries().len() as u64 + 1;
            write_segment(dir, std::mem::take(batch), id, manifest).expect("segment");
        }
    };
    for i in 0..n {
        let r = g.next_record();
        while r.time_start_ns >= hour_end {
            flush(&mut batch, &mut manifest);
            hour_end += HOUR;
        }
        batch.push_record(&r);
        if i % 1_000_000 == 0 {
            eprint!("\rbuilding: {i}/{n} ({:.0} s)", t.elapsed().as_secs_f64());
        }
    }
    flush(&mut batch, &mut manifest);
    let now = T0 + 91 * DAY;
    compact::run(dir, &mut manifest, now, compact::DEFAULT_MAX_ROWS).expect("compact");
    compact::run(dir, &mut manifest, now, compact::DEFAULT_MAX_ROWS).expect("delete inputs");
    eprintln!();
    println!(
        "store: built {n} records over 90 days, closed days merged, in {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

/// A record from the middle of the store, with an account, a domain and a NAT tuple, and
/// the first blocked record.
fn samples(n: u64) -> (FlowRecord, FlowRecord) {
    let per_sec = n as f64 / (90.0 * 24.0 * 3600.0);
    let mut g = TrafficGen::with_rate(7, T0, per_sec);
    let mut blocked = None;
    let mut r = g.next_record();
    for _ in 0..n / 2 {
        r = g.next_record();
        if blocked.is_none() && r.rule.is_some() {
            blocked = Some(r.clone());
        }
    }
    while r.attr.nat_port.is_none() || r.attr.user.is_none() || r.attr.domain.is_none() {
        r = g.next_record();
    }
    (r, blocked.expect("a blocked record in the first half"))
}

/// A question: its label, the `query` arguments and DuckDB's condition.
struct Case {
    label: String,
    args: Vec<String>,
    sql: String,
}

fn cases(n: u64) -> Vec<Case> {
    let (r, blocked) = samples(n);
    let c = |label: &str, args: &[&str], sql: String| Case {
        label: label.to_owned(),
        args: args.iter().map(|s| s.to_string()).collect(),
        sql,
    };
    let ip = |s: &str| -> IpAddr { s.parse().unwrap_or_else(|e| panic!("{s}: {e}")) };
    let mac = [0x3c, 0x22, 0xfb, 0x00, 0x00, 0x64];
    let user = r.attr.user.clone().unwrap_or_default();
    let domain = r.attr.domain.clone().unwrap_or_default();
    let (nat_ip, nat_port) = (
        r.attr.nat_ip.unwrap_or(r.src_ip),
        r.attr.nat_port.unwrap_or(0),
    );
    let rule = blocked.rule.clone().unwrap_or_default();
    let (since, until) = (T0 + 40 * DAY + 14 * HOUR, T0 + 40 * DAY + 16 * HOUR);
    let rfc = |ns: i64| {
        jiff::Timestamp::from_nanosecond(i128::from(ns))
            .expect("time")
            .to_string()
    };
    let client = r.src_ip.to_string();
    vec![
        c(
            "--ip LAN client",
            &["--ip", "10.0.0.20"],
            sql_ip(ip("10.0.0.20")),
        ),
        c(
            "--ip remote host",
            &["--ip", &r.dst_ip.to_string()],
            sql_ip(r.dst_ip),
        ),
        c(
            "--cidr 10.0.0.0/24",
            &["--cidr", "10.0.0.0/24"],
            sql_range(ip("10.0.0.0"), ip("10.0.0.255")),
        ),
        c(
            "--port 8443",
            &["--port", "8443"],
            "(src_port = 8443 OR dst_port = 8443)".into(),
        ),
        c(
            "--mac 3c:22:fb:00:00:64",
            &["--mac", "3c:22:fb:00:00:64"],
            format!("(src_mac = {m} OR dst_mac = {m})", m = blob(&mac)),
        ),
        c("--proto icmp", &["--proto", "icmp"], "proto = 1".into()),
        c(
            "--since/--until (2 h)",
            &["--since", &rfc(since), "--until", &rfc(until)],
            sql_window(Some(since), Some(until)),
        ),
        c(
            "--ip client --since/--until (2 h)",
            &[
                "--ip",
                &client,
                "--since",
                &rfc(since),
                "--until",
                &rfc(until),
            ],
            format!(
                "{} AND {}",
                sql_ip(r.src_ip),
                sql_window(Some(since), Some(until))
            ),
        ),
        c("--user", &["--user", &user], format!("\"user\" = '{user}'")),
        c("--domain", &["--domain", &domain], sql_domain(&domain)),
        c(
            "--nat ip:port",
            &["--nat", &format!("{nat_ip}:{nat_port}")],
            format!(
                "nat_ip = {} AND nat_port = {nat_port}",
                blob(&ip_to_column(nat_ip))
            ),
        ),
        c(
            "--rule FILE:LINE",
            &["--rule", &rule],
            format!("rule = '{rule}'"),
        ),
    ]
}

/// CPU time of this process's waited-for children, user + system.
fn children_cpu() -> Duration {
    // SAFETY: `ru` is a valid, writable rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One run of `xdp-audit query ARGS` into `out` (or `--count`): wall, CPU, and the matches
/// (lines of CSV without the header, or the count printed).
fn xdp_audit(dir: &Path, args: &[String], count: bool, out: &Path) -> (f64, f64, u64) {
    let file = std::fs::File::create(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    // `XDP_AUDIT_BENCH_BIN`: another build's binary, for a before/after in the same session.
    let bin = std::env::var_os("XDP_AUDIT_BENCH_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_xdp-audit")),
        PathBuf::from,
    );
    let mut cmd = Command::new(bin);
    cmd.arg("query").arg("--log-dir").arg(dir).args(args);
    if count {
        cmd.arg("--count");
    } else {
        cmd.args(["--format", "csv"]);
    }
    let (t, c) = (Instant::now(), children_cpu());
    let status = cmd
        .stdout(file)
        .stderr(Stdio::null())
        .status()
        .expect("run xdp-audit query");
    let (wall, cpu) = (t.elapsed(), children_cpu() - c);
    assert!(status.success(), "xdp-audit query {args:?} failed");
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let n = if count {
        text.trim().parse().unwrap_or(u64::MAX)
    } else {
        text.lines().count().saturating_sub(1) as u64
    };
    (wall.as_secs_f64(), cpu.as_secs_f64(), n)
}

/// A DuckDB session in one Python process: each request (a condition, rows or count) is run
/// and answered with wall and CPU seconds and the matches.
struct DuckDb {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl DuckDb {
    fn start(dir: &Path, out: &Path) -> Self {
        let script = format!(
            "import sys, json, time, duckdb\n\
             con = duckdb.connect()\n\
             con.execute(\"SET enable_progress_bar = false\")\n\
             con.execute(\"CREATE VIEW f AS SELECT * FROM read_parquet([{}])\")\n\
             for line in sys.stdin:\n\
             \x20   w, count = json.loads(line)\n\
             \x20   t, c = time.perf_counter(), time.process_time()\n\
             \x20   if count:\n\
             \x20       n = con.execute(f\"SELECT count(*) FROM f WHERE {{w}}\").fetchone()[0]\n\
             \x20   else:\n\
             \x20       n = con.execute(f\"COPY (SELECT * FROM f WHERE {{w}}) TO '{}' (FORMAT csv)\").fetchone()[0]\n\
             \x20   print(json.dumps([time.perf_counter() - t, time.process_time() - c, n]), flush=True)\n",
            segment_list(dir),
            out.display()
        );
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is missing: install the Debian package python3 and run `cargo xtask setup` (duckdb)");
        let stdout = child.stdout.take().expect("python3 stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    fn run(&mut self, sql: &str, count: bool) -> (f64, f64, u64) {
        let stdin = self.child.stdin.as_mut().expect("python3 stdin");
        let req = serde_json::to_string(&(sql, count)).expect("json");
        writeln!(stdin, "{req}").expect("send to DuckDB");
        let line =
            self.lines.next().and_then(Result::ok).expect(
                "DuckDB answered (is the PyPI package duckdb installed? `cargo xtask setup`)",
            );
        let (w, c, n): (f64, f64, u64) =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("DuckDB printed {line}: {e}"));
        (w, c, n)
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median wall and CPU of the rounds.
fn medians(runs: &[(f64, f64, u64)]) -> (f64, f64) {
    (
        median(runs.iter().map(|r| r.0).collect()),
        median(runs.iter().map(|r| r.1).collect()),
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let n: u64 = std::env::var("XDP_AUDIT_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    let rounds: usize = std::env::var("XDP_AUDIT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let dir = std::env::var_os("XDP_AUDIT_BENCH_ENGINES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/var/tmp/xdp-audit-bench-engines-v6-{n}")));
    build_store(&dir, n);
    let scratch = std::env::temp_dir().join(format!("xdp-audit-engines-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let (ours, theirs) = (scratch.join("xdp-audit.csv"), scratch.join("duckdb.csv"));
    let mut duck = DuckDb::start(&dir, &theirs);
    println!(
        "query vs DuckDB over {n} records (90 days, closed days merged), {} cores, load average {} at the start; \
         median of {rounds} interleaved warm rounds, wall s (CPU s); ratio = xdp-audit / DuckDB, wall (CPU)",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    println!(
        "| filter | matches | query rows | DuckDB rows | ratio | query --count | DuckDB count | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let only: Vec<String> = std::env::var("XDP_AUDIT_BENCH_CASES")
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let wanted = |label: &str| only.is_empty() || only.iter().any(|p| label.starts_with(p));
    for case in cases(n).into_iter().filter(|c| wanted(&c.label)) {
        // Warm-up, and the answers checked against each other.
        let a = xdp_audit(&dir, &case.args, false, &ours);
        let b = duck.run(&case.sql, false);
        let ac = xdp_audit(&dir, &case.args, true, &ours);
        let bc = duck.run(&case.sql, true);
        assert!(
            a.2 == b.2 && ac.2 == a.2 && bc.2 == a.2,
            "{}: xdp-audit found {} rows (count {}), DuckDB {} (count {})",
            case.label,
            a.2,
            ac.2,
            b.2,
            bc.2
        );
        let mut runs: [Vec<(f64, f64, u64)>; 4] = Default::default();
        for _ in 0..rounds {
            runs[0].push(xdp_audit(&dir, &case.args, false, &ours));
            runs[1].push(duck.run(&case.sql, false));
            runs[2].push(xdp_audit(&dir, &case.args, true, &ours));
            runs[3].push(duck.run(&case.sql, true));
        }
        let [q, d, qc, dc] = runs.map(|r| medians(&r));
        let cell = |m: (f64, f64)| format!("{:.3} ({:.3})", m.0, m.1);
        let ratio =
            |a: (f64, f64), b: (f64, f64)| format!("{:.2} ({:.2})", a.0 / b.0, a.1 / b.1.max(1e-6));
        println!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            case.label,
            a.2,
            cell(q),
            cell(d),
            ratio(q, d),
            cell(qc),
            cell(dc),
            ratio(qc, dc)
        );
    }
    println!("load average at the end: {}", load_average());
    drop(duck);
    let _ = std::fs::remove_dir_all(&scratch);
}
