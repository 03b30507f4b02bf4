//! The error paths of every command but `run`, through the real binary: query, export,
//! verify, status, keygen, blocklist check and check (standard output that cannot be
//! written is `cli_output.rs`). The error is the first line on stderr, is said once (no OS error text twice, no
//! header or progress before it), names the file, flag or interface at fault, and the exit
//! status is non-zero. `run`'s error paths are in `cli_run.rs`. Needs root.

mod cli_common;
mod common;
#[path = "store_common/mod.rs"]
mod store_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cli_common::{assert_error, assert_said_once, run, s, stderr, Reaped, BIN};
use common::wait::wait_until;
use store_common::{empty_store, TempDir};
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::{Store, StoreConfig};

/// A store with one sealed segment whose first column chunk is overwritten; returns the
/// segment's path.
fn store_with_a_corrupt_segment(dir: &Path) -> PathBuf {
    let mut store =
        Store::open(StoreConfig::new(dir)).unwrap_or_else(|e| panic!("open store: {e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let mut g = TrafficGen::with_rate(7, now - 60_000_000_000, 10.0);
    for _ in 0..200 {
        store.append(&g.next_record());
    }
    assert!(store.seal_now(), "sealing the test store failed");
    drop(store);
    let seg = std::fs::read_dir(dir)
        .expect("list store")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".parquet"))
        })
        .unwrap_or_else(|| panic!("no segment in {}", dir.display()));
    let mut bytes = std::fs::read(&seg).expect("read segment");
    assert!(bytes.len() > 200, "segment too small to damage");
    for b in &mut bytes[8..200] {
        *b ^= 0x5a;
    }
    std::fs::write(&seg, bytes).expect("damage segment");
    seg
}

// ---- query ----

#[test]
fn query_of_a_missing_log_dir_prints_the_error_first_and_once() {
    let d = TempDir::new("q-missing");
    let missing = d.path().join("missing");
    for format in ["table", "csv", "jsonl"] {
        let o = run(&["query", "--log-dir", s(&missing), "--format", format]);
        assert_error(&o, &[s(&missing)]);
    }
}

#[test]
fn query_of_a_log_dir_that_is_a_file_names_it() {
    let d = TempDir::new("q-file");
    let file = d.path().join("store");
    std::fs::write(&file, b"x").expect("write");
    assert_error(&run(&["query", "--log-dir", s(&file)]), &[s(&file)]);
}

/// A directory that holds nothing of a store (`/tmp`, a typo) is refused by every command
/// that reads one, and nothing (no operator.log) is written into it.
#[test]
fn read_commands_refuse_a_directory_that_is_not_a_store_and_write_nothing_there() {
    let d = TempDir::new("not-a-store");
    std::fs::write(d.path().join("notes.txt"), b"not a store").expect("write");
    let dir = s(d.path());
    let out = d.path().join("case.csv");
    let window = ["--since", "1d", "--until", "0s"];
    let runs: [Vec<&str>; 6] = [
        vec!["query", "--log-dir", dir],
        [
            &[
                "export",
                "--log-dir",
                dir,
                "--format",
                "csv",
                "--out",
                s(&out),
            ][..],
            &window,
        ]
        .concat(),
        [&["report", "--log-dir", dir][..], &window].concat(),
        vec!["hold", "list", "--log-dir", dir],
        vec!["sql", "--log-dir", dir, "SELECT 1"],
        vec!["verify", "--log-dir", dir],
    ];
    for args in runs {
        let first = assert_error(&run(&args), &[dir]);
        assert!(
            first.contains("not an xdp-audit store"),
            "{args:?}: {first}"
        );
        let names: Vec<_> = std::fs::read_dir(d.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["notes.txt"], "{args:?} wrote into the directory");
    }
}

/// The store of an agent that started and never sealed holds its lock file and live
/// journal only: it is a store, and query reads it.
#[test]
fn query_reads_a_store_that_holds_only_a_live_journal() {
    let d = TempDir::new("fresh-store");
    let dir = d.path().join("log");
    let mut store = Store::open(StoreConfig::new(&dir)).expect("open the store");
    let r = TrafficGen::new(3, 1_700_000_000_000_000_000).next_record();
    store.append(&r);
    assert!(store.sync_now(), "sync");
    drop(store);
    std::fs::remove_file(dir.join(xdp_audit::store::LOCK_FILE)).expect("remove the lock");
    let o = run(&["query", "--log-dir", s(&dir), "--format", "jsonl"]);
    assert!(o.status.success(), "query failed: {}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
}

#[test]
fn query_flags_with_bad_values_are_named() {
    let d = TempDir::new("q-flags");
    let dir = s(d.path());
    let cases: [(&[&str], &[&str]); 10] = [
        (&["--since", "bogus"], &["--since", "bogus"]),
        (&["--until", "2026-13-01T00:00:00Z"], &["--until"]),
        (&["--since", "2h", "--until", "3h"], &["--since", "--until"]),
        (&["--cidr", "10.0.0.0/33"], &["--cidr"]),
        (&["--mac", "zz:zz"], &["--mac"]),
        (&["--proto", "sctpx"], &["--proto", "sctpx"]),
        (&["--port", "70000"], &["--port", "70000"]),
        (
            &["--rule", "/etc/b.list:0"],
            &["--rule", "line numbers start at 1"],
        ),
        (
            &["--since", "2026-05-03T16:00:00+25:00"],
            &["--since", "+25:00"],
        ),
        (
            &["--domain", "a*.example.com"],
            &["--domain", "a*.example.com"],
        ),
    ];
    for (args, names) in cases {
        let mut argv = vec!["query", "--log-dir", dir];
        argv.extend_from_slice(args);
        assert_error(&run(&argv), names);
    }
}

#[test]
fn query_over_a_corrupt_segment_names_the_segment_and_prints_no_header() {
    let d = TempDir::new("q-corrupt");
    let seg = store_with_a_corrupt_segment(d.path());
    let name = seg.file_name().and_then(|n| n.to_str()).expect("name");
    for format in ["table", "csv"] {
        let o = run(&["query", "--log-dir", s(d.path()), "--format", format]);
        assert_error(&o, &[name]);
    }
}

// ---- export ----

fn export(log_dir: &Path, out: &Path) -> Output {
    run(&[
        "export",
        "--log-dir",
        s(log_dir),
        "--since",
        "1d",
        "--until",
        "0s",
        "--format",
        "csv",
        "--out",
        s(out),
    ])
}

#[test]
fn export_from_a_missing_log_dir_leaves_no_output_file() {
    let d = TempDir::new("e-missing");
    let (missing, out) = (d.path().join("missing"), d.path().join("case.csv"));
    assert_error(&export(&missing, &out), &[s(&missing)]);
    assert!(!out.exists(), "a failed export must not leave {out:?}");
}

#[test]
fn export_to_a_file_that_cannot_be_created_names_it() {
    let d = TempDir::new("e-out");
    empty_store(d.path());
    let out = d.path().join("no-such-dir/case.csv");
    assert_error(&export(d.path(), &out), &[s(&out)]);
}

#[test]
fn export_never_overwrites_a_file() {
    let d = TempDir::new("e-exists");
    empty_store(d.path());
    let out = d.path().join("case.csv");
    std::fs::write(&out, b"evidence").expect("write");
    assert_error(&export(d.path(), &out), &[s(&out)]);
    assert_eq!(
        std::fs::read(&out).expect("read"),
        b"evidence",
        "the existing file is untouched"
    );
}

#[test]
fn export_without_a_window_names_the_flags() {
    let d = TempDir::new("e-window");
    let out = d.path().join("case.csv");
    let o = run(&[
        "export",
        "--log-dir",
        s(d.path()),
        "--since",
        "1d",
        "--format",
        "csv",
        "--out",
        s(&out),
    ]);
    assert_error(&o, &["--since", "--until"]);
    assert!(!out.exists());
}

#[test]
fn export_over_a_corrupt_segment_names_it_and_leaves_no_output_file() {
    let d = TempDir::new("e-corrupt");
    let store = d.path().join("store");
    std::fs::create_dir_all(&store).expect("mkdir");
    let seg = store_with_a_corrupt_segment(&store);
    let out = d.path().join("case.csv");
    let name = seg.file_name().and_then(|n| n.to_str()).expect("name");
    assert_error(&export(&store, &out), &[name]);
    assert!(!out.exists(), "a failed export must not leave {out:?}");
}

/// A store of two sealed hours and a live journal that cannot be read (a directory in its
/// place: unreadable even to root): the records it could read, and the journal's path.
fn store_with_an_unreadable_journal(dir: &Path) -> (usize, PathBuf) {
    let clock = xdp_audit::store::FakeClock::new(store_common::T0);
    let recs = store_common::fill(dir, &clock, store_common::T0, 2, 0.05, 29, true);
    let journal = dir.join(xdp_audit::store::seal::journal_name(99_999_999_999));
    std::fs::create_dir(&journal).expect("a directory in a journal's place");
    (recs.len(), journal)
}

/// An answer that lacks a live journal's records is written from what could be read, the
/// journal is named, and the exit status (3) says the answer is incomplete.
#[test]
fn query_and_export_past_an_unreadable_journal_answer_and_exit_3() {
    let d = TempDir::new("q-unreadable");
    let (records, journal) = store_with_an_unreadable_journal(d.path());
    let o = run(&["query", "--log-dir", s(d.path()), "--format", "jsonl"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "query: {err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), records);
    assert!(err.contains(s(&journal)), "query names the journal: {err}");
    let o = run(&["query", "--log-dir", s(d.path()), "--count"]);
    assert_eq!(o.status.code(), Some(3), "query --count: {}", stderr(&o));

    let window = [
        "--log-dir",
        s(d.path()),
        "--since",
        "2023-11-01T00:00:00Z",
        "--until",
        "2023-12-01T00:00:00Z",
    ];
    let out = d.path().join("case.csv");
    let o = run(&[
        &["export", "--format", "csv", "--out", s(&out)][..],
        &window,
    ]
    .concat());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "export: {err}");
    let written = std::fs::read_to_string(&out).expect("the export is written");
    assert_eq!(written.lines().count(), records + 1, "header and records");
    assert!(
        err.contains(s(&journal)) && err.contains("export written INCOMPLETE"),
        "export names the journal and says the file is incomplete: {err}"
    );

    // A directory in a journal's place is also an alteration `verify` reports (BROKEN), and
    // a report on a broken store exits 4 even when it is incomplete: the worse news wins.
    let o = run(&[&["report", "--format", "json"][..], &window].concat());
    assert_eq!(o.status.code(), Some(4), "report: {}", stderr(&o));
    let json: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("the report is written, as JSON");
    assert_eq!(json["records"]["unreadable_journals"], 1, "{json}");
    assert_eq!(
        (&json["verify"]["ok"], &json["verify"]["unchecked"]),
        (&false.into(), &false.into()),
        "{json}"
    );
    assert_eq!(
        json["records"]["total"], records,
        "what could be read is counted"
    );
    let o = run(&[&["report", "--format", "md"][..], &window].concat());
    assert_eq!(o.status.code(), Some(4));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.contains("INCOMPLETE: 1 live journal"),
        "the title page says so: {md}"
    );

    // The access trail says so too: each of the five answers lacked the journal's records.
    let scan = xdp_audit::store::oplog::scan(d.path()).expect("scan the operator log");
    let marked: Vec<(String, Option<u64>)> = scan
        .lines
        .iter()
        .filter_map(|l| match &l.entry.body {
            xdp_audit::store::oplog::OpBody::Access(a) => {
                Some((a.command.clone(), a.unreadable_journals))
            }
            _ => None,
        })
        .collect();
    let expected: Vec<(String, Option<u64>)> = ["query", "query", "export", "report", "report"]
        .iter()
        .map(|c| (c.to_string(), Some(1)))
        .collect();
    assert_eq!(
        marked, expected,
        "every access line marks the answer incomplete"
    );
}

/// A live journal with a damaged stretch in its middle (valid frames after it): the answer
/// lacks that stretch's records, so it is incomplete as for an unreadable journal (exit 3,
/// the journal named); it exited 0 and passed for complete.
#[test]
fn query_past_a_damaged_stretch_of_a_live_journal_exits_3() {
    let d = TempDir::new("q-damaged");
    let clock = xdp_audit::store::FakeClock::new(store_common::T0);
    store_common::fill(d.path(), &clock, store_common::T0, 2, 0.05, 41, false);
    let journal = std::fs::read_dir(d.path())
        .expect("list")
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .expect("a live journal");
    let mut bytes = std::fs::read(&journal).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid..mid + 40].fill(0xff);
    std::fs::write(&journal, &bytes).expect("write");
    let o = run(&["query", "--log-dir", s(d.path()), "--count"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "query --count: {err}");
    assert!(err.contains(s(&journal)), "the journal is named: {err}");
    // sql reads the same journal: the same answer short of the stretch, said the same way
    // (it answered short, exit 0, without a word).
    let counted: u64 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("a count");
    let o = run(&[
        "sql",
        "--log-dir",
        s(d.path()),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM flows",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "sql: {err}");
    assert!(err.contains(s(&journal)), "the journal is named: {err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines().nth(1),
        Some(counted.to_string().as_str()),
        "{out}"
    );
}

// ---- verify ----

#[test]
fn verify_of_a_missing_log_dir_is_an_error_not_a_verdict() {
    let d = TempDir::new("v-missing");
    let missing = d.path().join("missing");
    let o = run(&["verify", "--log-dir", s(&missing)]);
    assert_error(&o, &["--log-dir", s(&missing), "could not be checked"]);
    assert_eq!(o.status.code(), Some(3), "BROKEN alone exits 1");
}

/// A segment `verify` cannot read (no permission) is no verdict: an error naming it on
/// stderr, nothing on stdout, and exit status 3 (not `BROKEN`, 1). Run as `nobody` when the
/// tests run as root, whom no mode keeps out.
#[test]
fn verify_of_a_segment_it_cannot_read_exits_3_not_broken() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = TempDir::new("v-eacces");
    let clock = xdp_audit::store::FakeClock::new(store_common::T0);
    store_common::fill(d.path(), &clock, store_common::T0, 2, 0.05, 31, true);
    // The store's files are its group's to read (0640): `nobody` is let read them all but one.
    for f in std::fs::read_dir(d.path())
        .expect("list the store")
        .flatten()
    {
        if f.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
    }
    let seg = d.path().join(&store_common::live(d.path())[0].file);
    std::fs::set_permissions(&seg, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let mut cmd = Command::new(BIN);
    cmd.args(["verify", "--log-dir", s(d.path())]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let o = cmd.output().expect("run verify");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let first = assert_error(&o, &[s(&seg), "could not be checked"]);
    assert!(!first.contains("BROKEN"), "{first}");
}

/// A log `verify` cannot take for one is named once in the verdict, not twice.
#[test]
fn verify_names_an_operator_log_at_fault_once() {
    let d = TempDir::new("v-oplog");
    let clock = xdp_audit::store::FakeClock::new(store_common::T0);
    store_common::fill(d.path(), &clock, store_common::T0, 1, 0.05, 37, true);
    let log = d.path().join("operator.log");
    std::fs::create_dir(&log).expect("a directory in the operator log's place");
    let o = run(&["verify", "--log-dir", s(d.path())]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out} {}", stderr(&o));
    assert!(out.starts_with("BROKEN: "), "{out}");
    assert_eq!(out.matches(s(&log)).count(), 1, "{out}");
}

/// A bucket named without --remote was ignored, and `ok` said of the local store alone.
#[test]
fn verify_with_a_bucket_but_no_remote_says_so() {
    let d = TempDir::new("v-ship");
    let clock = xdp_audit::store::FakeClock::new(store_common::T0);
    store_common::fill(d.path(), &clock, store_common::T0, 1, 0.05, 41, true);
    let o = run(&[
        "verify",
        "--log-dir",
        s(d.path()),
        "--ship",
        "s3://audit/fleet",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "a usage error: {err}");
    assert!(err.contains("--remote") && o.stdout.is_empty(), "{err}");
}

#[test]
fn verify_with_a_missing_or_bad_public_key_names_it() {
    let d = TempDir::new("v-key");
    let key = d.path().join("chain.key.pub");
    let o = run(&["verify", "--log-dir", s(d.path()), "--public-key", s(&key)]);
    assert_error(&o, &["--public-key", s(&key)]);
    assert_eq!(o.status.code(), Some(3), "BROKEN alone exits 1");
    std::fs::write(&key, "not a key\n").expect("write");
    let o = run(&["verify", "--log-dir", s(d.path()), "--public-key", s(&key)]);
    assert_error(&o, &["--public-key", s(&key)]);
    // All zeros decodes as a point, of small order: any signature "verifies" under it.
    let zeros = format!(
        "{} {}\n",
        xdp_audit::store::manifest::PUBLIC_KEY_TAG,
        "0".repeat(64)
    );
    std::fs::write(&key, zeros).expect("write");
    let o = run(&["verify", "--log-dir", s(d.path()), "--public-key", s(&key)]);
    assert_error(&o, &["--public-key", s(&key), "weak"]);
}

// ---- status ----

#[test]
fn status_without_a_snapshot_or_with_a_bad_one_names_the_file() {
    let d = TempDir::new("s-missing");
    let file = d.path().join("status.json");
    let o = run(&["status", "--state-dir", s(d.path())]);
    assert_error(&o, &[s(&file)]);
    std::fs::write(&file, "{ not json").expect("write");
    let o = run(&["status", "--state-dir", s(d.path())]);
    assert_error(&o, &[s(&file)]);
    let o = run(&["status", "--state-dir", s(d.path()), "--top", "many"]);
    assert_error(&o, &["--top", "many"]);
    // A snapshot whose time does not parse was shown as "0s old", its agent running.
    let mut snap = xdp_audit::status::Snapshot::new(
        Vec::new(),
        Default::default(),
        &xdp_audit::daemon::lists::RuleBook::default(),
        1,
        &[],
    );
    snap.written_at = "yesterday".into();
    snap.write(d.path()).expect("write snapshot");
    let o = run(&["status", "--state-dir", s(d.path())]);
    assert_error(&o, &[s(&file), "written_at", "yesterday"]);
}

#[test]
fn status_of_a_starting_agent_says_so_and_of_one_that_died_starting_says_that() {
    let d = TempDir::new("s-starting");
    // This test process stands for the agent: alive, and its snapshot just written.
    let snap = xdp_audit::status::Snapshot::starting(None, Default::default());
    snap.write(d.path()).expect("write snapshot");
    let o = run(&["status", "--state-dir", s(d.path())]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "{out}");
    assert!(
        out.contains(&format!("agent pid {} starting since", std::process::id()))
            && out.contains("no sweep yet")
            && !out.contains("program counters"),
        "{out}"
    );
    // A process that is gone: it ended while starting.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let dead = child.id();
    child.wait().expect("reap true");
    let mut snap =
        xdp_audit::status::Snapshot::starting(Some("agent pid 7 ended".into()), Default::default());
    (snap.pid, snap.pid_start) = (dead, None);
    snap.write(d.path()).expect("write snapshot");
    let o = run(&["status", "--state-dir", s(d.path())]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains(&format!(
            "AGENT NOT RUNNING: pid {dead} ended while starting"
        )) && out.contains("last seen starting at")
            && out.contains("agent pid 7 ended"),
        "{out}"
    );
    let o = run(&["status", "--json", "--state-dir", s(d.path())]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json");
    assert_eq!(
        (v["starting"].as_bool(), v["agent"]["state"].as_str()),
        (Some(true), Some("down"))
    );
}

// ---- keygen ----

#[test]
fn keygen_into_a_missing_directory_names_the_file() {
    let d = TempDir::new("k-missing");
    let key = d.path().join("no-such-dir/chain.key");
    assert_error(&run(&["keygen", "--out", s(&key)]), &[s(&key)]);
}

#[test]
fn keygen_refuses_existing_files_and_creates_nothing_then() {
    let d = TempDir::new("k-exists");
    let key = d.path().join("chain.key");
    let public = d.path().join("chain.key.pub");
    std::fs::write(&public, b"old public key").expect("write");
    assert_error(&run(&["keygen", "--out", s(&key)]), &[s(&public)]);
    assert!(
        !key.exists(),
        "a secret key without its public half must not be left behind"
    );
    std::fs::remove_file(&public).expect("rm");
    std::fs::write(&key, b"old secret").expect("write");
    assert_error(&run(&["keygen", "--out", s(&key)]), &[s(&key)]);
    assert_eq!(std::fs::read(&key).expect("read"), b"old secret");
    assert!(!public.exists());
}

// ---- blocklist check ----

#[test]
fn blocklist_check_of_a_missing_file_names_it_once() {
    let d = TempDir::new("b-missing");
    let list = d.path().join("block.list");
    let o = run(&["blocklist", "check", s(&list)]);
    assert!(!o.status.success());
    // A check reports on stdout, file by file (several files may be checked at once).
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with(s(&list)), "{out}");
    assert_said_once(&out, first);
}

/// `check` of a FIFO with no writer, or of an endless device, as every kind of file: it used
/// to block at the open, or read until memory ran out; now it ends at once, naming the file
/// and what it is.
#[test]
fn check_of_a_fifo_or_a_device_names_it_and_ends() {
    use std::io::Read as _;
    let d = TempDir::new("c-special");
    let fifo = d.path().join("block.list");
    let c = std::ffi::CString::new(s(&fifo)).expect("no NUL");
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    for (path, what) in [
        (s(&fifo), "is a FIFO, not a regular file"),
        ("/dev/zero", "is a character device, not a regular file"),
    ] {
        for kind in ["auto", "list", "subscribers", "kea", "dnsmasq"] {
            let child = Command::new(BIN)
                .args(["check", "--kind", kind, path])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn xdp-audit");
            let mut child = Reaped(child);
            let mut status = None;
            wait_until(
                Duration::from_secs(20),
                &format!("check --kind {kind} {path} ended"),
                || {
                    status = child.0.try_wait().expect("wait");
                    status.is_some()
                },
            );
            let mut out = String::new();
            child
                .0
                .stdout
                .take()
                .expect("stdout")
                .read_to_string(&mut out)
                .expect("read stdout");
            assert_eq!(status.and_then(|s| s.code()), Some(1), "{kind}: {out}");
            let first = out.lines().next().unwrap_or_default();
            assert!(
                first.starts_with(&format!("{path}: cannot read: {what}")),
                "{kind}: {out}"
            );
        }
    }
}

/// A failing command whose stderr is a pipe nobody reads any more still exits with its
/// error's status (1), not 101 from a panic while writing the error.
#[test]
fn an_error_with_stderr_closed_exits_1_not_101() {
    let d = TempDir::new("stderr-closed");
    let missing = d.path().join("missing");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let status = Command::new(BIN)
        .args(["query", "--log-dir", s(&missing)])
        .stdout(Stdio::null())
        .stderr(writer)
        .status()
        .expect("run query");
    assert_eq!(status.code(), Some(1), "{status}");
}

/// Help offers only what a command takes, and says what it does.
#[test]
fn help_offers_only_what_each_command_takes() {
    let help = |cmd: &str| {
        let o = run(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    for cmd in ["export", "report"] {
        let h = help(cmd);
        assert!(!h.contains("--at "), "{cmd} refuses --at");
        assert!(!h.contains("--at-slack"), "{cmd} refuses --at-slack");
    }
    let query = help("query");
    assert!(
        query.contains("--at ") && query.contains("--at-slack"),
        "{query}"
    );
    let verify = help("verify");
    assert!(verify.contains("--ship-endpoint"), "{verify}");
    assert!(!verify.contains("--ship-multipart-bytes"), "{verify}");
    let sql = help("sql");
    assert!(!sql.contains("subset of the fields"), "{sql}");
    assert!(sql.contains("every column of the answer"), "{sql}");
    let compliance = help("compliance");
    assert!(
        !compliance.contains("until remote shipping lands"),
        "{compliance}"
    );
}

/// A rule that blocks everything of its kind is a warning naming the file and line; the
/// file is still good and the exit status stays 0.
#[test]
fn check_warns_of_rules_that_match_everything() {
    let d = TempDir::new("check-sweeping");
    let list = d.path().join("block.list");
    std::fs::write(&list, "192.0.2.1\n0.0.0.0/0\n::/0\ncom\n").expect("write list");
    for args in [
        &["check", s(&list)][..],
        &["blocklist", "check", s(&list)][..],
    ] {
        let o = run(args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {out} {}", stderr(&o));
        for line in [2, 3, 4] {
            assert!(
                out.contains(&format!("{}:{line}: warning: ", list.display())),
                "{args:?} names line {line}: {out}"
            );
        }
        assert!(out.contains(&format!("{}: ok", list.display())), "{out}");
    }
    // A 0-byte file, which an agent whose copy held rules does not apply, is said so.
    std::fs::write(&list, "").expect("empty the list");
    let o = run(&["blocklist", "check", s(&list)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out} {}", stderr(&o));
    assert!(
        out.contains(&format!(
            "{}: warning: the file is empty (0 bytes)",
            list.display()
        )),
        "{out}"
    );
}

/// `sql --memory-limit` bounds the engine: a statement that needs more fails with the
/// engine's word for it (exit 1); the same statement runs under the default bound.
#[test]
fn sql_past_its_memory_limit_fails_and_the_gateway_keeps_its_memory() {
    let d = TempDir::new("sql-memory");
    let clock = xdp_audit::store::FakeClock::new(store_common::T0);
    store_common::fill(d.path(), &clock, store_common::T0, 2, 1.0, 43, true);
    let statement = "SELECT src_ip, dst_ip, dst_port, count(*) AS n FROM flows \
                     GROUP BY src_ip, dst_ip, dst_port ORDER BY n DESC, dst_ip";
    let base = ["sql", "--log-dir", s(d.path()), "--format", "csv"];
    let small = run(&[&base[..], &["--memory-limit", "4096", statement]].concat());
    assert_eq!(small.status.code(), Some(1), "{}", stderr(&small));
    assert!(
        stderr(&small).contains("Resources exhausted"),
        "{}",
        stderr(&small)
    );
    let whole = run(&[&base[..], &[statement]].concat());
    assert!(whole.status.success(), "{}", stderr(&whole));
    assert!(String::from_utf8_lossy(&whole.stdout).lines().count() > 100);
}
