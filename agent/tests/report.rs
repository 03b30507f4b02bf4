//! `xdp-audit report` over a generated store (two hours, the last still in the live journal):
//! every format counts what `query` finds for the same selection, the table shows the
//! earliest records, the attachment holds them all with the SHA-256 the report names, the
//! chain part says what is sealed and what is not, the run is an access line with the
//! report's SHA-256; an existing file is refused and a failed report leaves nothing behind.

mod cli_common;
#[path = "store_common/mod.rs"]
mod common;
mod report_common;

use std::collections::HashSet;

use cli_common::BIN;
use common::*;
use report_common::*;
use sha2::Digest;
use xdp_audit::store::access::AccessInfo;
use xdp_audit::store::oplog::{self, OpBody};
use xdp_audit::store::FakeClock;

const SINCE: &str = "2023-11-14T22:30:00Z";

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn last_access(dir: &std::path::Path) -> AccessInfo {
    let scan = oplog::scan(dir).expect("scan the operator log");
    match &scan.lines.last().expect("an access line").entry.body {
        OpBody::Access(a) => a.clone(),
        other => panic!("the last line is not an access: {other:?}"),
    }
}

/// A store of two generated hours before T0, the last still in the live journal.
fn two_hours(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0 - 2 * HOUR, 2, 0.2, 5, false);
    dir
}

#[test]
fn every_format_counts_what_query_finds_and_the_attachment_holds_it_all() {
    let dir = TempDir::new("report-gen");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0 - 2 * HOUR, 3, 2.0, 13, false);
    let d = dir.path().to_str().expect("utf-8");
    let window = ["--log-dir", d, "--since", SINCE, "--until", UNTIL];

    // What query finds for the window (and for the window and one rule's file).
    let query: Vec<serde_json::Value> = ok(&run(
        &[&["query", "--format", "jsonl"][..], &window].concat()
    ))
    .lines()
    .map(|l| serde_json::from_str(l).expect("jsonl"))
    .collect();
    let total = query.len() as u64;
    assert!(total > 5_000, "a window of thousands of records: {total}");
    let blocked = query
        .iter()
        .filter(|r| r["dropped"].as_u64() > Some(0))
        .count() as u64;
    assert!(blocked > 10, "blocked records in the window: {blocked}");
    // A blocked flow is counted at its first drop's record.
    let blocked_flows = query
        .iter()
        .filter(|r| matches!(r["end_reason"].as_str(), Some("drop" | "refused")))
        .count() as u64;
    let clients: HashSet<&str> = query.iter().filter_map(|r| r["src_ip"].as_str()).collect();
    let mut starts: Vec<&str> = query
        .iter()
        .filter_map(|r| r["time_start"].as_str())
        .collect();
    starts.sort_unstable();

    let out = dir.path().join("case.json");
    let printed = ok(&run(&[
        &[
            "report",
            "--format",
            "json",
            "--limit",
            "25",
            "--attach",
            "jsonl",
            "--out",
            out.to_str().expect("utf-8"),
        ][..],
        &window,
    ]
    .concat()));
    let bytes = std::fs::read(&out).expect("the report");
    let attachment = dir.path().join("case.records.jsonl");
    let attached = std::fs::read(&attachment).expect("the attachment");
    assert_eq!(
        printed,
        format!(
            "{}  {}\n{}  {}\n",
            sha256(&bytes),
            out.display(),
            sha256(&attached),
            attachment.display()
        ),
        "both files' SHA-256 in sha256sum format"
    );
    let j: serde_json::Value = serde_json::from_slice(&bytes).expect("json report");
    assert_eq!(j["summary"]["flows"], total);
    assert_eq!(j["summary"]["blocked_flows"], blocked_flows);
    assert_eq!(j["summary"]["clients"], clients.len() as u64);
    assert_eq!(j["records"]["total"], total);
    let timeline: u64 = j["timeline"]["flows"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(timeline, total, "every record in one bucket");
    assert_eq!(
        j["timeline"]["bucket_s"], 300,
        "90 minutes in 5-minute buckets"
    );
    let shown: Vec<&str> = j["records"]["shown"]
        .as_array()
        .expect("shown")
        .iter()
        .filter_map(|r| r["time_start"].as_str())
        .collect();
    assert_eq!(shown, starts[..25], "the earliest 25 records, in order");
    assert_eq!(j["records"]["attachment"]["sha256"], sha256(&attached));
    assert_eq!(j["records"]["attachment"]["rows"], total);
    assert_eq!(
        attached
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64,
        total
    );
    let rule_rows: u64 = j["blocked_by_rule"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["flows"].as_u64())
        .sum();
    let more = j["blocked_by_rule"]["more"].as_u64().expect("more");
    assert!(
        rule_rows == blocked_flows || (more > 0 && rule_rows < blocked_flows),
        "the by-rule rows add up to the blocked flows, or some are counted as left out"
    );
    let sealed: u64 = j["chain"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["rows"].as_u64())
        .sum();
    assert!(sealed > 0, "sealed segments cover the window");
    assert!(
        j["chain"]["unsealed_records"].as_u64() > Some(0),
        "the last hour is in the live journal"
    );
    assert_eq!(j["verify"]["ok"], true, "{}", j["verify"]);
    let access = last_access(dir.path());
    assert_eq!(
        (
            access.command.as_str(),
            access.rows,
            access.sha256.as_deref()
        ),
        ("report", Some(total), Some(sha256(&bytes).as_str()))
    );

    // Markdown and HTML carry the same counts.
    let thousands = |n: u64| {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    let md = ok(&run(&[&["report", "--format", "md"][..], &window].concat()));
    for (label, n) in [("Flow records", total), ("Blocked flows", blocked_flows)] {
        assert!(
            md.contains(&format!("| {label} | {} |", thousands(n))),
            "md: {label} {n}"
        );
    }
    let html = ok(&run(
        &[&["report", "--format", "html"][..], &window].concat()
    ));
    for (key, n) in [
        ("flows", total),
        ("blocked", blocked_flows),
        ("clients", clients.len() as u64),
    ] {
        assert!(
            html.contains(&format!("data-count=\"{key}\" data-value=\"{n}\"")),
            "html: {key} {n}"
        );
    }
    assert!(
        html.contains("<svg") && !html.contains("<script"),
        "inline SVG, no script"
    );
    assert_eq!(
        html.matches("://").count(),
        1,
        "no external resource: the only URL is the SVG namespace"
    );

    // --rule FILE selects the flows of that file's rules: the blocked ones.
    let rule = ok(&run(&[
        &[
            "report",
            "--format",
            "json",
            "--rule",
            "/etc/xdp-audit/block.list",
        ][..],
        &window,
    ]
    .concat()));
    let r: serde_json::Value = serde_json::from_str(&rule).expect("json");
    assert_eq!(r["summary"]["flows"], blocked);
    assert_eq!(r["summary"]["blocked_flows"], blocked_flows);
}

#[test]
fn an_existing_file_is_refused_and_a_failed_report_leaves_nothing() {
    let dir = TempDir::new("report-refuse");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0 - HOUR, 1, 0.5, 3, true);
    let d = dir.path().to_str().expect("utf-8");
    let window = ["--log-dir", d, "--since", SINCE, "--until", UNTIL];
    let out = dir.path().join("case.html");
    let out_s = out.to_str().expect("utf-8");

    std::fs::write(&out, "keep me").expect("write");
    let o = run(&[&["report", "--out", out_s][..], &window].concat());
    assert!(!o.status.success(), "an existing report file is refused");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(out_s),
        "the error names the file"
    );
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "keep me",
        "and left alone"
    );
    std::fs::remove_file(&out).expect("remove");

    // The attachment exists: the report fails, removes the report it created, and keeps the
    // file that was there.
    let attachment = dir.path().join("case.records.csv");
    std::fs::write(&attachment, "theirs").expect("write");
    let o = run(&[&["report", "--out", out_s, "--attach", "csv"][..], &window].concat());
    assert!(!o.status.success(), "an existing attachment is refused");
    assert!(!out.exists(), "no report is left behind");
    assert_eq!(
        std::fs::read_to_string(&attachment).expect("read"),
        "theirs"
    );

    let o = run(&["report", "--log-dir", d, "--since", SINCE]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--until"),
        "a report names its window"
    );
    let o = run(&[&["report", "--attach", "csv"][..], &window].concat());
    assert!(!o.status.success(), "--attach needs --out");
}

/// The title names the gateway by its id: `--gateway-id` if given, else the id the store was
/// shipped under (its shipping cursor), else the host name; a malformed id is refused.
#[test]
fn the_report_names_the_gateway_by_its_id() {
    let dir = two_hours("report-gateway");
    let d = dir.path().to_str().expect("utf-8");
    let title = |extra: &[&str]| -> (serde_json::Value, String) {
        let window = ["--log-dir", d, "--since", SINCE, "--until", UNTIL];
        let json = ok(&run(
            &[&["report", "--format", "json"][..], &window, extra].concat()
        ));
        let j: serde_json::Value = serde_json::from_str(&json).expect("json report");
        let md = ok(&run(
            &[&["report", "--format", "md"][..], &window, extra].concat()
        ));
        (j["title"].clone(), md)
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    let host = host.trim();

    let (t, md) = title(&[]);
    assert_eq!(t["gateway_id"], host, "{t:#}");
    assert_eq!(t["gateway_id_source"], "host_name", "{t:#}");
    assert!(
        md.starts_with(&format!("# Incident report: gateway {host}\n")),
        "{md}"
    );

    // Shipped under an id: the store's cursor names it.
    let cursor = xdp_audit::ship::cursor::Cursor {
        version: 1,
        target: "s3://audit/fleet/gateway=gw-berlin-01".into(),
        ..Default::default()
    };
    cursor.save(dir.path()).expect("write the cursor");
    let (t, md) = title(&[]);
    assert_eq!(t["gateway_id"], "gw-berlin-01", "{t:#}");
    assert_eq!(t["gateway_id_source"], "shipping_cursor", "{t:#}");
    assert_eq!(t["gateway_host"], host, "{t:#}");
    assert!(
        md.starts_with("# Incident report: gateway gw-berlin-01\n"),
        "{md}"
    );
    assert!(
        md.contains("| Gateway | `gw-berlin-01 (the id the store was shipped under)` |"),
        "{md}"
    );

    // The flag wins.
    let (t, md) = title(&["--gateway-id", "gw-hamburg-02"]);
    assert_eq!(t["gateway_id"], "gw-hamburg-02", "{t:#}");
    assert_eq!(t["gateway_id_source"], "flag", "{t:#}");
    assert!(
        md.contains("| Gateway | `gw-hamburg-02 (--gateway-id)` |"),
        "{md}"
    );

    // The agent's config file names it: before the shipping cursor, after the flag.
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "gateway-id = \"gw-munich-03\"\n").expect("write the config");
    let config = config.to_str().expect("utf8");
    let (t, md) = title(&["--config", config]);
    assert_eq!(t["gateway_id"], "gw-munich-03", "{t:#}");
    assert_eq!(t["gateway_id_source"], "config", "{t:#}");
    assert!(
        md.contains("| Gateway | `gw-munich-03 (the config file's gateway-id)` |"),
        "{md}"
    );
    let (t, _) = title(&["--config", config, "--gateway-id", "gw-hamburg-02"]);
    assert_eq!(t["gateway_id"], "gw-hamburg-02", "{t:#}");

    let bad = run(&[
        "report",
        "--log-dir",
        d,
        "--since",
        SINCE,
        "--until",
        UNTIL,
        "--gateway-id",
        "a/b",
    ]);
    assert!(!bad.status.success(), "a malformed id is refused");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--gateway-id"),
        "the error names the flag: {err}"
    );
}

/// A sealed segment of the store in `dir`.
fn a_segment(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("list the store")
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .expect("a sealed segment")
}

/// A report on a store that does not verify is written (its verification section says why)
/// and exits 4: it exited 0, so a script took it for evidence whose integrity was shown.
#[test]
fn a_report_on_a_store_that_does_not_verify_exits_4() {
    let dir = two_hours("report-broken");
    let d = dir.path().to_str().expect("utf-8");
    let segment = a_segment(dir.path());
    let mut bytes = std::fs::read(&segment).expect("read the segment");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&segment, bytes).expect("damage the segment");
    let o = run(&[
        "report",
        "--format",
        "json",
        "--log-dir",
        d,
        "--since",
        SINCE,
        "--until",
        UNTIL,
    ]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the report, written");
    assert_eq!(j["verify"]["ok"], false, "{}", j["verify"]);
}

/// A segment the window needs, damaged so that the scan cannot read it (cut short): no
/// report can be built, and the error says BROKEN, naming it, with exit 4 as for a report
/// written on such a store (it exited 1, as a typo does).
#[test]
fn a_damaged_segment_inside_the_window_exits_4_naming_it() {
    let dir = two_hours("report-broken-inside");
    let d = dir.path().to_str().expect("utf-8");
    let segment = a_segment(dir.path());
    let len = std::fs::metadata(&segment).expect("stat the segment").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(len / 2))
        .expect("cut the segment short");
    // The window from the store's first hour, so the scan needs every segment.
    let o = run(&[
        "report",
        "--format",
        "json",
        "--log-dir",
        d,
        "--since",
        "2023-11-14T20:00:00Z",
        "--until",
        UNTIL,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        o.stdout.is_empty(),
        "no report: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let name = segment.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(err.contains("BROKEN") && err.contains(name), "{err}");
}

/// The `<td>` of the title fact `key` in an HTML report.
fn title_fact(html: &str, key: &str) -> String {
    let at = html
        .find(&format!("<tr data-fact=\"{key}\">"))
        .unwrap_or_else(|| panic!("no fact {key}"));
    let cell = &html[at..];
    let from = cell.find("<td>").expect("a cell") + 4;
    cell[from..from + cell[from..].find("</td>").expect("its end")].to_owned()
}

/// The title page says what the chain proves: records still in the live journal are counted
/// apart from those it covers (the verdict read "Verified" with exit 0 for a store holding
/// only a journal), and a store that does not verify reads BROKEN there, its entry marked in
/// the chain table (only the last section said so).
#[test]
fn the_title_page_says_what_the_chain_proves() {
    let dir = two_hours("report-proves");
    let d = dir.path().to_str().expect("utf-8");
    let html = |since: &str| report_of(d, "html", since, UNTIL, &[]);
    // The store's last hour (from 22:00) is in the live journal.
    let o = html("2023-11-14T21:30:00Z");
    let page = ok(&o);
    let fact = title_fact(&page, "verification");
    assert!(fact.starts_with("verified, for the"), "{fact}");
    assert!(fact.contains("live journal"), "{fact}");
    // A sealed hour alone: covered whole.
    let sealed = report_of(
        d,
        "html",
        "2023-11-14T20:30:00Z",
        "2023-11-14T21:00:00Z",
        &[],
    );
    let sealed = ok(&sealed);
    let fact = title_fact(&sealed, "verification");
    assert!(fact.contains("covers every matching record"), "{fact}");
    // A window that ends after the report was made says records may still arrive.
    assert!(!sealed.contains("data-fact=\"open-window\""));
    let open = ok(&report_of(d, "html", SINCE, "2100-01-01T00:00:00Z", &[]));
    assert!(title_fact(&open, "open-window").contains("may still arrive"));
    // A segment changed where a window's read does not look (the account column's Bloom
    // filter): `verify` finds it, the report is still made.
    let segment = a_segment(dir.path());
    change_unread(&segment);
    let o = html("2023-11-14T20:00:00Z");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(!o.stdout.is_empty(), "a report: {err}");
    let page = String::from_utf8_lossy(&o.stdout);
    let fact = title_fact(&page, "verification");
    assert!(fact.starts_with("BROKEN: "), "{fact}");
    let name = segment.file_name().and_then(|n| n.to_str()).expect("name");
    let chain = &page[page.find("id=\"chain\"").expect("the chain section")..];
    let row = chain
        .find(name)
        .map(|at| &chain[at..])
        .expect("the segment's row");
    let row = &row[..row.find("</tr>").expect("its end")];
    assert!(row.contains("no longer matches"), "{row}");
}

/// Changes a byte of `segment` that a window's read does not look at (the account column's
/// Bloom filter): only `verify` finds it.
fn change_unread(segment: &std::path::Path) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let at = {
        let r = SerializedFileReader::new(std::fs::File::open(segment).expect("open"))
            .expect("the segment's footer");
        let c = r
            .metadata()
            .row_group(0)
            .column(xdp_audit::store::segment::col::USER);
        let at = c.bloom_filter_offset().expect("a Bloom filter") as usize;
        at + c.bloom_filter_length().expect("its length") as usize - 1
    };
    let mut bytes = std::fs::read(segment).expect("read the segment");
    bytes[at] ^= 0x10;
    std::fs::write(segment, bytes).expect("change the segment");
}

/// A manifest cut short or deleted stops the scan as a damaged segment does: BROKEN, exit 4
/// (it exited 1, as a typo does, where `verify` says BROKEN).
#[test]
fn a_manifest_cut_short_or_deleted_exits_4() {
    for cut in [true, false] {
        let dir = two_hours(if cut {
            "report-manifest-cut"
        } else {
            "report-manifest-gone"
        });
        let d = dir.path().to_str().expect("utf-8");
        let manifest = dir.path().join("manifest.jsonl");
        if cut {
            let len = std::fs::metadata(&manifest)
                .expect("stat the manifest")
                .len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&manifest)
                .and_then(|f| f.set_len(len - 50))
                .expect("cut the manifest short");
        } else {
            std::fs::remove_file(&manifest).expect("delete the manifest");
        }
        let o = report_of(d, "json", SINCE, UNTIL, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(4), "cut {cut}: {err}");
        assert!(err.contains("BROKEN"), "cut {cut}: {err}");
    }
}

/// A report file holds subscribers' records: it is created for its owner and group only, as
/// the store's files are (it was 0644 under the usual umask).
#[test]
fn a_report_file_is_not_world_readable() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = two_hours("report-mode");
    let d = dir.path().to_str().expect("utf-8");
    let out = dir.path().join("case.html");
    let out_s = out.to_str().expect("utf-8");
    ok(&run(&[
        "report",
        "--log-dir",
        d,
        "--since",
        SINCE,
        "--until",
        UNTIL,
        "--out",
        out_s,
    ]));
    let mode = std::fs::metadata(&out)
        .expect("the report")
        .permissions()
        .mode();
    assert_eq!(mode & 0o007, 0, "mode {mode:o}");
}

/// A sealed segment `verify` cannot read (another user's, mode 0600, with the report run as
/// `nobody`, who reads the rest of the store) is no verdict: the report says the chain could
/// not be checked, naming the file, and not BROKEN; it exits 3 (no verdict), not 4. The
/// segment lies outside the window, so the records of the report are all read. A loop of
/// links in its place is an alteration (the store makes no links): BROKEN, exit 4.
#[test]
fn a_chain_that_could_not_be_read_is_not_checked_not_broken() {
    let dir = two_hours("report-unreadable");
    let d = dir.path().to_str().expect("utf-8");
    let seg = dir.path().join(&live(dir.path())[0].file);
    let (since, until) = ("2023-11-14T23:30:00Z", UNTIL);
    // The store is nobody's; the one segment root's alone.
    nobodys_but(dir.path(), &seg);
    let report_as_nobody = |format: &str| {
        as_nobody(BIN)
            .args(["report", "--format", format, "--log-dir", d])
            .args(["--since", since, "--until", until])
            .output()
            .expect("spawn setpriv (util-linux)")
    };
    let o = report_as_nobody("json");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the report, written");
    assert_eq!(j["verify"]["ok"], false, "{}", j["verify"]);
    assert_eq!(j["verify"]["unchecked"], true, "{}", j["verify"]);
    let md = String::from_utf8_lossy(&report_as_nobody("md").stdout).into_owned();
    let seg_s = seg.to_str().expect("utf-8");
    assert!(!md.contains("BROKEN"), "{md}");
    assert!(
        md.contains("the chain could not be checked") && md.contains(seg_s),
        "{md}"
    );
    let html = String::from_utf8_lossy(&report_as_nobody("html").stdout).into_owned();
    assert!(!html.contains("BROKEN"), "the HTML report says BROKEN");
    // Another segment changed behind the unreadable one: BROKEN wins (the check stopped at
    // the first file it could not read, and said NOT CHECKED).
    let other = dir.path().join(&live(dir.path())[1].file);
    let kept = std::fs::read(&other).expect("keep the segment");
    change_unread(&other);
    let o = report_as_nobody("json");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the report, written");
    let name = other.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        j["verify"]["verdict"]
            .as_str()
            .is_some_and(|v| v.contains(name)),
        "{}",
        j["verify"]
    );
    std::fs::write(&other, kept).expect("put the segment back");

    std::fs::remove_file(&seg).expect("remove the segment");
    std::os::unix::fs::symlink(&seg, &seg).expect("a link to itself in its place");
    let o = report_of(d, "json", since, until, &[]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the report, written");
    assert_eq!(j["verify"]["unchecked"], false, "{}", j["verify"]);
}

/// A store that does not verify exits 4 even when the report is incomplete too (a live
/// journal it could not read): BROKEN is the worse news, and exit 3 hid it.
#[test]
fn a_broken_store_exits_4_even_when_the_report_is_incomplete() {
    let dir = two_hours("report-broken-incomplete");
    let d = dir.path().to_str().expect("utf-8");
    let segment = dir.path().join(&live(dir.path())[0].file);
    let mut bytes = std::fs::read(&segment).expect("read the segment");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&segment, bytes).expect("damage the segment");
    let journal = std::fs::read_dir(dir.path())
        .expect("list the store")
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .expect("a live journal");
    std::fs::remove_file(&journal).expect("remove the journal");
    std::os::unix::fs::symlink(&journal, &journal).expect("a link to itself in its place");
    let o = report_of(d, "json", SINCE, UNTIL, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the report, written");
    assert_eq!(j["records"]["unreadable_journals"], 1, "{err}");
    assert_eq!(j["verify"]["unchecked"], false, "{}", j["verify"]);
}

/// The window is printed as given, with its fraction: cut to the second, `query` given the
/// printed window found other records.
#[test]
fn the_window_is_printed_exactly() {
    let dir = two_hours("report-window");
    let d = dir.path().to_str().expect("utf-8");
    let since = "2023-11-14T22:30:00.25Z";
    let j: serde_json::Value =
        serde_json::from_str(&ok(&report_of(d, "json", since, UNTIL, &[]))).expect("json");
    assert_eq!(j["title"]["since"], "2023-11-14T22:30:00.250000000Z");
    assert_eq!(j["title"]["until"], UNTIL);
    let md = ok(&report_of(d, "md", since, UNTIL, &[]));
    assert!(
        md.contains("| Window start | `2023-11-14 22:30:00.250000000 UTC` |"),
        "{md}"
    );
}

/// `--limit` is capped: the records shown are held in memory until the scan ends.
#[test]
fn the_limit_is_capped_and_the_help_points_to_attach() {
    let dir = two_hours("report-limit");
    let d = dir.path().to_str().expect("utf-8");
    let o = report_of(d, "json", SINCE, UNTIL, &["--limit", "100001"]);
    assert!(!o.status.success(), "--limit 100001 is refused");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--limit"), "{err}");
    ok(&report_of(d, "json", SINCE, UNTIL, &["--limit", "100000"]));
    let help = ok(&run(&["report", "--help"]));
    assert!(help.contains("--attach writes every record"), "{help}");
}
