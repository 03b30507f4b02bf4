//! `xdp-audit sql` through the real binary: investigators' questions (top-N destinations,
//! accounts, every MAC of an address, a window join of DNS questions and flows) answer exactly
//! what DuckDB answers on the same segment files; the live journal answers as its sealed form
//! does (the same records, once with the last hour live, once all sealed); a segment of an
//! earlier format reads with its missing columns NULL; every run, failed ones too, is an
//! access entry; statements that would define, change or write anything are refused (damage
//! is in `sql_damage.rs`); with
//! `--remote`, two gateways' segments shipped to a real S3 server (`s3s-fs`) answer as DuckDB
//! answers over the bucket's folder on disk, with the Hive columns `gateway` and `date`.

mod ship_common;
mod sql_common;
mod store_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use sql_common::{ours, ours_with, segment_files, sql, store, BIN};
use store_common::{fill, TempDir, T0};
use xdp_audit::sql::{Session, Sources};
use xdp_audit::store::export::Format;
use xdp_audit::store::oplog::{self, OpBody};
use xdp_audit::store::FakeClock;

/// DuckDB's answer to `statement` over `files` (`{files}` in it stands for the list), with
/// 16-byte values as address text (IPv4-mapped as IPv4), 6-byte values as MAC text, NULL as
/// an empty field.
#[track_caller]
fn duckdb(files: &[PathBuf], statement: &str) -> Vec<Vec<String>> {
    const SCRIPT: &str = r#"
import sys, json, ipaddress, duckdb
# A query over 2 s draws a progress bar on stdout, into the answer.
duckdb.sql("SET enable_progress_bar = false")
files = json.loads(sys.argv[1])
q = sys.argv[2].replace("{files}", "read_parquet(" + json.dumps(files).replace('"', "'") + ")")
def text(v):
    if v is None:
        return ""
    if isinstance(v, (bytes, bytearray)):
        if len(v) == 16:
            a = ipaddress.IPv6Address(bytes(v))
            return str(a.ipv4_mapped or a)
        if len(v) == 6:
            return ":".join("%02x" % b for b in v)
    return str(v)
for row in duckdb.sql(q).fetchall():
    print(",".join(text(v) for v in row))
"#;
    let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(serde_json::to_string(&list).expect("json"))
        .arg(statement)
        .output()
        .expect("python3 (install python3 and `pip install duckdb`: cargo xtask setup)");
    assert!(
        out.status.success(),
        "duckdb failed on {statement:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

fn sorted(mut v: Vec<Vec<String>>) -> Vec<Vec<String>> {
    v.sort();
    v
}

/// The 16-byte column form of an address, in hex (what DuckDB compares with).
fn column_hex(ip: std::net::IpAddr) -> String {
    xdp_audit::store::address::ip_to_column(ip)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn investigator_questions_answer_as_duckdb_on_the_same_files_and_the_journal_as_sealed() {
    let (sealed, recs) = store("sql-sealed", true);
    let (with_journal, recs2) = store("sql-journal", false);
    assert_eq!(recs, recs2, "both stores hold the same records");
    let files = segment_files(sealed.path());
    assert!(files.len() >= 3, "three hours sealed: {files:?}");

    // The live journal is there and counted, so the equality below covers it.
    let live_rows = ours(with_journal.path(), "SELECT count(*) FROM journal_raw");
    let sealed_rows = ours(with_journal.path(), "SELECT count(*) FROM segments_raw");
    let live_n: usize = live_rows[0][0].parse().expect("count");
    let sealed_n: usize = sealed_rows[0][0].parse().expect("count");
    assert!(
        live_n > 500,
        "the last hour is live: {live_n} rows in journal_raw"
    );
    assert_eq!(
        live_n + sealed_n,
        recs.len(),
        "journal + segments = every record"
    );

    let v4 = recs
        .iter()
        .find(|r| r.src_ip.is_ipv4())
        .expect("an IPv4 client")
        .src_ip;
    let v6 = recs
        .iter()
        .find(|r| r.src_ip.is_ipv6())
        .expect("an IPv6 client")
        .src_ip;
    // (ours, DuckDB's over {files}, whether ours is ordered and limited: DuckDB's then sorted
    // the same way in Rust).
    let questions: Vec<(String, String)> = vec![
        // Top-N destinations.
        (
            "SELECT dst_ip, count(*) AS n, sum(bytes + resp_bytes) AS b FROM flows \
             GROUP BY dst_ip ORDER BY n DESC, dst_ip LIMIT 25"
                .into(),
            "SELECT dst_ip, count(*) AS n, sum(bytes + resp_bytes) AS b FROM {files} GROUP BY dst_ip"
                .into(),
        ),
        // Accounts: flows, remote addresses, volume, first and last packet (UTC text).
        (
            "SELECT \"user\", count(*), count(DISTINCT dst_ip), sum(bytes), \
             CAST(min(time_start) AS BIGINT), CAST(max(time_end) AS BIGINT) FROM flows \
             WHERE \"user\" IS NOT NULL GROUP BY \"user\""
                .into(),
            "SELECT \"user\", count(*), count(DISTINCT dst_ip), sum(bytes), \
             epoch_ns(min(time_start)), epoch_ns(max(time_end)) FROM {files} \
             WHERE \"user\" IS NOT NULL GROUP BY \"user\""
                .into(),
        ),
        // Users of a domain (the most frequent one).
        (
            "SELECT \"user\", domain, count(*) FROM flows WHERE domain = \
             (SELECT domain FROM flows WHERE domain IS NOT NULL GROUP BY domain \
              ORDER BY count(*) DESC, domain LIMIT 1) GROUP BY \"user\", domain"
                .into(),
            "SELECT \"user\", domain, count(*) FROM {files} WHERE domain = \
             (SELECT domain FROM {files} WHERE domain IS NOT NULL GROUP BY domain \
              ORDER BY count(*) DESC, domain LIMIT 1) GROUP BY \"user\", domain"
                .into(),
        ),
        // Every MAC (either side) an address had, readable view and raw form.
        (
            format!(
                "SELECT DISTINCT src_mac, dst_mac, src_ip FROM flows WHERE src_ip = '{v4}' OR src_ip = '{v6}'"
            ),
            format!(
                "SELECT DISTINCT src_mac, dst_mac, src_ip FROM {{files}} WHERE src_ip = unhex('{}') OR src_ip = unhex('{}')",
                column_hex(v4),
                column_hex(v6)
            ),
        ),
        (
            format!(
                "SELECT DISTINCT mac_text(src_mac), ip_text(src_ip) FROM flows_raw WHERE src_ip = ip_column('{v6}')"
            ),
            format!(
                "SELECT DISTINCT src_mac, src_ip FROM {{files}} WHERE src_ip = unhex('{}')",
                column_hex(v6)
            ),
        ),
        // Window join: per DNS question, the client's other flows opened within 2 s after.
        (
            "SELECT d.src_ip, d.dns_qname, CAST(d.time_start AS BIGINT), count(f.time_start) \
             FROM flows d LEFT JOIN flows f ON f.src_ip = d.src_ip \
              AND f.time_start > d.time_start \
              AND f.time_start <= d.time_start + INTERVAL '2 seconds' AND f.dst_port <> 53 \
             WHERE d.dns_qname IS NOT NULL GROUP BY 1, 2, 3"
                .into(),
            "SELECT d.src_ip, d.dns_qname, epoch_ns(d.time_start), count(f.time_start) \
             FROM {files} d LEFT JOIN {files} f ON f.src_ip = d.src_ip \
              AND f.time_start > d.time_start \
              AND f.time_start <= d.time_start + INTERVAL '2 seconds' AND f.dst_port <> 53 \
             WHERE d.dns_qname IS NOT NULL GROUP BY 1, 2, 3"
                .into(),
        ),
    ];
    for (i, (q, dq)) in questions.iter().enumerate() {
        let got = ours(sealed.path(), q);
        let mut want = duckdb(&files, dq);
        assert!(
            !want.is_empty(),
            "question {i} has an empty answer: proves nothing"
        );
        if i == 0 {
            // Ordered by count, then address text; DuckDB's groups sorted the same way.
            want.sort_by(|a, b| {
                let n = |r: &Vec<String>| r[1].parse::<u64>().unwrap_or(0);
                n(b).cmp(&n(a)).then_with(|| a[0].cmp(&b[0]))
            });
            want.truncate(25);
            assert_eq!(got, want, "question {i}: {q}");
        } else {
            assert_eq!(sorted(got.clone()), sorted(want), "question {i}: {q}");
        }
        let with_live = ours(with_journal.path(), q);
        assert_eq!(
            sorted(with_live),
            sorted(got),
            "question {i} answers differently with the last hour in the live journal: {q}"
        );
    }
}

#[test]
fn readable_columns_formats_and_the_access_entry() {
    let (dir, recs) = store("sql-formats", false);
    let r = &recs[0];
    let q = format!(
        "SELECT time_start, src_ip, src_mac, dst_ip, \"user\" FROM flows \
         WHERE CAST(time_start AS BIGINT) = {} AND src_port = {}",
        r.time_start_ns, r.src_port
    );
    let out = sql(dir.path(), &q, &["--format", "jsonl"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).expect("utf-8");
    let v: serde_json::Value = serde_json::from_str(line.lines().next().expect("one row"))
        .unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
    let when = xdp_audit::record::rfc3339_ns(r.time_start_ns);
    let when = when.trim_end_matches('Z');
    assert!(
        v["time_start"]
            .as_str()
            .is_some_and(|t| t.starts_with(when)),
        "time_start {} is not {when} UTC",
        v["time_start"]
    );
    assert_eq!(v["src_ip"], r.src_ip.to_string());
    assert_eq!(v["dst_ip"], r.dst_ip.to_string());
    assert_eq!(v["src_mac"], r.src_mac.to_string());
    assert_eq!(v["user"], serde_json::json!(r.attr.user));

    // The table aligns its columns; CSV has a header.
    let table = sql(dir.path(), "SELECT count(*) AS n FROM flows", &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("| {} |", recs.len())),
        "table: {text}"
    );
    let csv = sql(
        dir.path(),
        "SELECT 1 AS a, 'x,\"y' AS b",
        &["--format", "csv"],
    );
    assert_eq!(String::from_utf8_lossy(&csv.stdout), "a,b\n1,\"x,\"\"y\"\n");

    // The run is in the operator log with its statement and rows.
    let access = last_access(dir.path());
    assert_eq!(access.command, "sql");
    assert_eq!(access.filter, "SELECT 1 AS a, 'x,\"y' AS b");
    assert_eq!(access.rows, Some(1));

    // --output writes a new file and prints its SHA-256; the access names both.
    let file = dir.path().join("answer.csv");
    let out = sql(
        dir.path(),
        "SELECT count(*) FROM flows",
        &["--format", "csv", "--output", file.to_str().expect("path")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = xdp_audit::store::fsutil::sha256_file(&file).expect("hash");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{digest}  {}\n", file.display())
    );
    let access = last_access(dir.path());
    assert_eq!(access.sha256.as_deref(), Some(digest.as_str()));
}

fn last_access(dir: &Path) -> oplog::AccessInfo {
    let scan = oplog::scan(dir).expect("scan the operator log");
    assert_eq!(scan.problem, None, "the operator log must verify");
    match &scan.lines.last().expect("an access line").entry.body {
        OpBody::Access(a) => a.clone(),
        other => panic!("the last line is not an access: {other:?}"),
    }
}

#[test]
fn errors_exit_1_naming_the_problem_and_are_recorded() {
    let (dir, _) = store("sql-errors", false);
    for (q, says) in [
        ("SELEC * FROM flows", "Expected"),
        ("SELECT no_such_column FROM flows", "no_such_column"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        (
            "SELECT ip_column('10.1.2') FROM flows LIMIT 1",
            "not an IP address",
        ),
    ] {
        let out = sql(dir.path(), q, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{q}: {err}");
        assert!(
            err.contains(says),
            "{q}: the error does not say {says:?}: {err}"
        );
        // Words, not the engine's debug formatting of its parser's error.
        assert!(!err.contains("ParserError(\""), "{q}: {err}");
        let access = last_access(dir.path());
        assert_eq!(access.filter, q);
        assert!(
            access.error.is_some_and(|e| e.contains(says)),
            "{q}: access without the error"
        );
    }
}

#[test]
fn statements_that_would_change_anything_are_refused() {
    let (dir, _) = store("sql-readonly", false);
    let target = dir.path().join("copied.parquet");
    let before = listing(dir.path());
    for q in [
        "CREATE TABLE t AS SELECT * FROM flows".to_owned(),
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc/'".to_owned(),
        "INSERT INTO segments_raw SELECT * FROM segments_raw".to_owned(),
        format!("COPY (SELECT * FROM flows) TO '{}'", target.display()),
        "DROP VIEW flows".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
    ] {
        let out = sql(dir.path(), &q, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{q} was not refused: {err}");
        assert!(err.contains("only reads the store"), "{q}: {err}");
        assert_eq!(last_access(dir.path()).filter, q);
    }
    assert!(!target.exists(), "COPY wrote {}", target.display());
    let after: Vec<_> = listing(dir.path())
        .into_iter()
        .filter(|n| n != "operator.log")
        .collect();
    let before: Vec<_> = before.into_iter().filter(|n| n != "operator.log").collect();
    assert_eq!(after, before, "the store changed");
}

/// What the engine cannot hold fails and says so, with nothing of the store written
/// elsewhere (a sort past the limit spilled records in plain text to the temporary directory,
/// left there when the run was killed); functions that make strings outside the limit are not
/// offered (`repeat('a', 1500000000)` aborted the process); a text inside a struct, or quoted
/// by an error, reaches the terminal escaped.
#[test]
fn the_memory_limit_holds_nothing_spills_and_text_is_escaped() {
    let (dir, _) = store("sql-limits", true);
    let tmp = TempDir::new("sql-limits-tmp");
    let out = Command::new(BIN)
        .env("TMPDIR", tmp.path())
        .args(["sql", "--memory-limit", "16MiB", "--log-dir"])
        .arg(dir.path())
        .arg("SELECT a.dns_qname, b.src_port FROM flows a CROSS JOIN flows b ORDER BY a.dns_qname, b.src_port")
        .output()
        .expect("spawn xdp-audit sql");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Resources exhausted") && err.contains("--memory-limit"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("list")
        .flatten()
        .collect();
    assert!(left.is_empty(), "spilled: {left:?}");
    for f in ["repeat('a', 3)", "lpad('a', 5)", "rpad('a', 5)"] {
        let q = format!("SELECT {f}");
        let out = sql(dir.path(), &q, &[]);
        assert_eq!(out.status.code(), Some(1), "{q} was offered");
        assert_eq!(last_access(dir.path()).filter, q);
    }
    let out = sql(
        dir.path(),
        "SELECT named_struct('x', concat('a', chr(27), '[31m'))",
        &[],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !table.contains('\u{1b}') && table.contains("\\u{1b}"),
        "{table}"
    );
    let out = sql(dir.path(), "SELECT CAST(concat('a', chr(27)) AS INT)", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains('\u{1b}') && err.contains("\\u{1b}"), "{err}");
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_segment_of_an_earlier_format_reads_with_its_new_columns_null() {
    let (dir, recs) = store("sql-old-format", true);
    let old =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store/segment-format4.parquet");
    let mut files = segment_files(dir.path());
    files.push(old);
    // Each with the ranges its CRC-32s cover (the fixture's: its column chunks, it has no
    // page table), as `sql` reads them.
    let segments = files
        .into_iter()
        .map(|f| {
            let ranges = xdp_audit::store::segment::SegmentReader::open(&f)
                .and_then(|s| s.checked_ranges())
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f, ranges)
        })
        .collect();
    let session = Session::new(
        &Sources {
            segments,
            ..Sources::default()
        },
        xdp_audit::sql::default_memory_limit(),
    )
    .expect("session over old and new segments");
    let mut out = Vec::new();
    session
        .run(
            "SELECT count(*), count(\"user\"), count(dns_qname) FROM flows",
            Format::Csv,
            &mut out,
        )
        .expect("query over both formats");
    let users = recs.iter().filter(|r| r.attr.user.is_some()).count();
    let questions = recs.iter().filter(|r| r.attr.dns_qname.is_some()).count();
    assert_eq!(
        String::from_utf8_lossy(&out).lines().nth(1),
        Some(format!("{},{users},{questions}", recs.len() + 3000).as_str()),
        "3,000 rows of the format-4 fixture, without accounts or DNS questions"
    );
}

#[test]
fn the_readme_examples_run_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let block = readme
        .split_once("<!-- sql-examples -->\n```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("the README's SQL examples (<!-- sql-examples --> then a sh block)");
    assert!(
        block.matches("xdp-audit sql").count() >= 4,
        "examples: {block}"
    );
    let (dir, _) = store("sql-readme", false);
    let bin_dir = Path::new(BIN).parent().expect("binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-e", "-c", block])
        .env("PATH", path)
        .env("XDP_AUDIT_LOG_DIR", dir.path())
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "a README example failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = oplog::scan(dir.path())
        .expect("operator log")
        .lines
        .iter()
        .filter(|l| matches!(&l.entry.body, OpBody::Access(a) if a.command == "sql" && a.error.is_none()))
        .count();
    assert_eq!(runs, 4, "one access entry per example");
}

#[test]
fn a_text_filter_on_flows_reaches_the_scan_as_the_column_form() {
    let (dir, recs) = store("sql-pushdown", true);
    let v4 = recs
        .iter()
        .find(|r| r.src_ip.is_ipv4())
        .expect("IPv4 client")
        .src_ip;
    let want = recs.iter().filter(|r| r.src_ip == v4).count().to_string();
    let q = format!("SELECT count(*) FROM flows WHERE src_ip = '{v4}'");
    let out = sql(dir.path(), &format!("EXPLAIN {q}"), &["--format", "csv"]);
    let plan = String::from_utf8_lossy(&out.stdout);
    let scans: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains("DataSourceExec"))
        .collect();
    assert!(!scans.is_empty(), "no scan in the plan: {plan}");
    for s in &scans {
        assert!(
            s.contains("predicate=src_ip@") && !s.contains("ip_text"),
            "the scan does not filter on the column form: {s}\n{plan}"
        );
    }
    // Rewritten or not, the same answer; text ip_text never gives matches nothing.
    assert_eq!(ours(dir.path(), &q), vec![vec![want.clone()]]);
    let kept = format!("SELECT count(*) FROM flows WHERE concat(src_ip, '') = '{v4}'");
    assert_eq!(ours(dir.path(), &kept), vec![vec![want]]);
    let mapped = format!("SELECT count(*) FROM flows WHERE src_ip = '::ffff:{v4}'");
    assert_eq!(ours(dir.path(), &mapped), vec![vec!["0".to_owned()]]);
    // Another spelling of a value matches nothing as text, and the user is told how the
    // view writes it.
    let out = sql(dir.path(), &mapped, &["--format", "csv"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the flows view writes that value \"{v4}\"")),
        "{err}"
    );
}

#[test]
fn remote_bucket_of_two_gateways_answers_as_duckdb_over_its_folder() {
    use ship_common::{S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
    let bucket = TempDir::new("sql-remote-s3");
    let s3 = S3Server::start(bucket.path());
    let mut stores = Vec::new();
    // Both cross a UTC midnight (T0 is 22:13 UTC), so each gateway has two dates.
    for (gw, seed, hours) in [("gw-a", 31, 3), ("gw-b", 32, 2)] {
        let dir = TempDir::new(&format!("sql-remote-{gw}"));
        let recs = fill(dir.path(), &FakeClock::new(T0), T0, hours, 0.3, seed, true);
        xdp_audit::ship::ship_once(
            dir.path(),
            &s3.config("fleet", gw),
            &xdp_audit::ship::ShipOptions::default(),
        )
        .unwrap_or_else(|e| panic!("ship {gw}: {e}"));
        stores.push((gw, dir, recs));
    }
    let creds = stores[0].1.path().join("s3.cred");
    std::fs::write(
        &creds,
        format!("aws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
    )
    .expect("write the credentials file");
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod 600 the credentials file");
    let endpoint = s3.endpoint();
    let remote = [
        "--remote",
        "s3://audit/fleet",
        "--ship-endpoint",
        &endpoint,
        "--ship-credentials",
        creds.to_str().expect("utf-8 path"),
    ];
    let folder = format!(
        "read_parquet('{}/fleet/*/*/*.parquet', hive_partitioning = true)",
        bucket.path().join(BUCKET).display()
    );
    let client = stores[0].2[0].src_ip;
    let questions = [
        // Flows and volume per gateway and day.
        (
            "SELECT gateway, date, count(*), sum(bytes) FROM flows GROUP BY gateway, date".into(),
            "SELECT gateway, date, count(*), sum(bytes) FROM {P} GROUP BY gateway, date".into(),
        ),
        // Top destinations per gateway (every group: compared sorted).
        (
            "SELECT gateway, dst_ip, count(*) FROM flows GROUP BY gateway, dst_ip".into(),
            "SELECT gateway, dst_ip, count(*) FROM {P} GROUP BY gateway, dst_ip".into(),
        ),
        // Accounts per gateway.
        (
            "SELECT gateway, \"user\", count(*), count(DISTINCT domain) FROM flows \
             WHERE \"user\" IS NOT NULL GROUP BY gateway, \"user\""
                .into(),
            "SELECT gateway, \"user\", count(*), count(DISTINCT domain) FROM {P} \
             WHERE \"user\" IS NOT NULL GROUP BY gateway, \"user\""
                .into(),
        ),
        // Every MAC a client address had, on which gateway and day.
        (
            format!("SELECT DISTINCT gateway, date, src_mac FROM flows WHERE src_ip = '{client}'"),
            format!(
                "SELECT DISTINCT gateway, date, src_mac FROM {{P}} WHERE src_ip = unhex('{}')",
                column_hex(client)
            ),
        ),
    ];
    let local = stores[0].1.path();
    for (i, (q, dq)) in questions.iter().enumerate() {
        let got = ours_with(local, q, &remote);
        let want = duckdb(&[], &dq.replace("{P}", &folder));
        assert!(
            !want.is_empty(),
            "question {i} has an empty answer: proves nothing"
        );
        assert_eq!(sorted(got), sorted(want), "question {i}: {q}");
    }
    // Every record of both stores, once, under its gateway.
    let per_gateway = ours_with(
        local,
        "SELECT gateway, count(*) FROM flows GROUP BY gateway ORDER BY gateway",
        &remote,
    );
    let expected: Vec<Vec<String>> = stores
        .iter()
        .map(|(gw, _, recs)| vec![gw.to_string(), recs.len().to_string()])
        .collect();
    assert_eq!(per_gateway, expected, "rows per gateway in the bucket");

    // The access entry goes to the local store of --log-dir, naming the bucket.
    let access = last_access(local);
    assert_eq!(access.command, "sql");
    assert!(
        access
            .filter
            .starts_with("--remote s3://audit/fleet/: SELECT gateway, count(*)"),
        "{}",
        access.filter
    );
    assert_eq!(access.rows, Some(2));
    // Without a local store the answer stands and stderr says no entry was recorded.
    let nowhere = bucket.path().join("no-store");
    let out = sql(&nowhere, "SELECT count(*) FROM flows", &remote);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NOT recorded"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A wrong secret is an error naming the bucket, and still an access entry.
    std::fs::write(
        &creds,
        format!("aws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = wrong\n"),
    )
    .expect("rewrite the credentials file");
    let out = sql(local, "SELECT count(*) FROM flows", &remote);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("s3://audit/fleet"),
        "{err}"
    );
    assert!(
        last_access(local).rows.is_none(),
        "the failed run is recorded"
    );
}
