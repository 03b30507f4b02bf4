//! The lawful-access trail: one access line per `query` and `export` run through the real
//! binary, with the user, the filter as canonical text, the rows returned and the export's
//! SHA-256; changing, deleting, truncating or reordering lines fails `verify`, naming the file
//! and line; appenders never hold up the writer and keep one chain when they race; a
//! read-only store still answers, with a warning. Needs root (a read-only bind mount).

#[path = "store_common/mod.rs"]
mod common;

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use sha2::Digest;
use xdp_audit::record::FlowRecord;
use xdp_audit::store::access::{self, AccessInfo, Who};
use xdp_audit::store::oplog::{self, OpBody, OpLine};
use xdp_audit::store::verify::verify;
use xdp_audit::store::FakeClock;

const BIN: &str = env!("CARGO_BIN_EXE_xdp-audit");

fn lines_of(dir: &Path) -> Vec<OpLine> {
    let s = oplog::scan(dir).expect("scan the operator log");
    assert_eq!(s.problem, None, "the operator log must verify");
    s.lines
}

fn last_access(dir: &Path) -> AccessInfo {
    match &lines_of(dir).last().expect("an access line").entry.body {
        OpBody::Access(a) => a.clone(),
        other => panic!("the last line is not an access: {other:?}"),
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("spawn xdp-audit")
}

#[track_caller]
fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "failed: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn store(name: &str) -> (TempDir, Vec<FlowRecord>) {
    let dir = TempDir::new(name);
    let clock = FakeClock::new(T0);
    let recs = fill(dir.path(), &clock, T0, 2, 2.0, 7, true);
    (dir, recs)
}

const SINCE: &str = "2023-11-14T22:00:00Z";
const UNTIL: &str = "2023-11-15T02:00:00Z";

#[test]
fn each_query_and_export_appends_one_line_with_its_filter_and_rows() {
    let (dir, recs) = store("access-cli");
    let d = dir.path().to_str().expect("utf-8");
    let ip = recs[recs.len() / 2].src_ip.to_string();

    let out = ok(&run(
        &[
            "query",
            "--log-dir",
            d,
            "--ip",
            &ip,
            "--since",
            SINCE,
            "--until",
            UNTIL,
            "--format",
            "jsonl",
        ],
        &[("SUDO_USER", "alice")],
    ));
    let rows = out.lines().count() as u64;
    assert!(rows > 0, "the query must return rows");
    let lines = lines_of(dir.path());
    assert_eq!(lines.len(), 1, "one query, one line");
    let who = &lines[0].entry.who;
    // SAFETY: getuid cannot fail.
    assert_eq!(who.uid, unsafe { libc::getuid() });
    assert_eq!(who.user, Who::current().user);
    assert_eq!(who.sudo_user.as_deref(), Some("alice"));
    let a = last_access(dir.path());
    let host = if ip.contains(':') { 128 } else { 32 };
    assert_eq!(
        a,
        AccessInfo {
            command: "query".into(),
            filter: format!(
                "cidr={ip}/{host} since=2023-11-14T22:00:00.000000000Z until=2023-11-15T02:00:00.000000000Z"
            ),
            rows: Some(rows),
            sha256: None,
            out: None,
            error: None,
            unreadable_journals: None,
        }
    );

    // A query with no filter and a table: the rows are the records, not the lines printed.
    ok(&run(&["query", "--log-dir", d, "--proto", "udp"], &[]));
    let a = last_access(dir.path());
    let udp = recs.iter().filter(|r| r.proto == 17).count() as u64;
    assert_eq!((a.filter.as_str(), a.rows), ("proto=udp", Some(udp)));

    let file = dir.path().join("case.jsonl");
    let f = file.to_str().expect("utf-8");
    let printed = ok(&run(
        &[
            "export",
            "--log-dir",
            d,
            "--since",
            SINCE,
            "--until",
            UNTIL,
            "--port",
            "443",
            "--format",
            "jsonl",
            "--out",
            f,
        ],
        &[],
    ));
    let bytes = std::fs::read(&file).expect("read the export");
    let sha = xdp_audit::store::fsutil::hex(&sha2::Sha256::digest(&bytes));
    assert_eq!(printed, format!("{sha}  {f}\n"));
    let a = last_access(dir.path());
    assert_eq!(a.command, "export");
    assert_eq!(
        a.filter,
        "port=443 since=2023-11-14T22:00:00.000000000Z until=2023-11-15T02:00:00.000000000Z"
    );
    assert_eq!(
        a.rows,
        Some(
            bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64
        )
    );
    assert_eq!(
        (a.sha256.as_deref(), a.out.as_deref()),
        (Some(sha.as_str()), Some(f))
    );
    assert_eq!(lines_of(dir.path()).len(), 3, "three runs, three lines");

    // A query that fails is recorded with its error.
    let seg = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with("seg-"))
        .expect("a segment");
    let p = dir.path().join(&seg);
    let mut b = std::fs::read(&p).expect("read");
    b.truncate(b.len() / 2);
    std::fs::write(&p, &b).expect("write");
    let o = run(&["query", "--log-dir", d], &[]);
    assert!(!o.status.success());
    let a = last_access(dir.path());
    assert_eq!(a.rows, None);
    assert!(
        a.error.as_deref().is_some_and(|e| e.contains(&seg)),
        "{a:?}"
    );

    // So is an export that fails: it read records, though it hands nothing over.
    let export_to = |out: &Path| {
        let out = out.to_str().expect("utf-8");
        let args = [
            "--since", SINCE, "--until", UNTIL, "--format", "jsonl", "--out", out,
        ];
        run(&[&["export", "--log-dir", d][..], &args[..]].concat(), &[])
    };
    let file = dir.path().join("failed.jsonl");
    let o = export_to(&file);
    assert!(
        !o.status.success(),
        "an export over a cut segment must fail"
    );
    assert!(!file.exists(), "a failed export leaves no file");
    let a = last_access(dir.path());
    assert_eq!(
        (a.command.as_str(), a.rows, a.sha256.as_deref()),
        ("export", None, None),
        "{a:?}"
    );
    assert!(
        a.error.as_deref().is_some_and(|e| e.contains(&seg)),
        "{a:?}"
    );
    assert_eq!(lines_of(dir.path()).len(), 5, "five runs, five lines");

    // And one that refused its --out (a file there already) is recorded with its error (it
    // was not recorded at all).
    let o = export_to(&dir.path().join("case.jsonl"));
    assert!(!o.status.success(), "an existing --out is refused");
    let a = last_access(dir.path());
    assert_eq!((a.command.as_str(), a.rows), ("export", None), "{a:?}");
    assert!(
        a.error.as_deref().is_some_and(|e| e.contains("case.jsonl")),
        "{a:?}"
    );
    assert_eq!(lines_of(dir.path()).len(), 6, "six runs, six lines");
}

fn raw_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_raw(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

#[track_caller]
fn expect_broken(dir: &Path, parts: &[&str]) {
    match verify(dir, None) {
        Ok(v) => panic!("verify passed ({v:?}) but the operator log was changed"),
        Err(b) => {
            assert!(
                b.file.ends_with(oplog::LOG),
                "blamed {}: {b}",
                b.file.display()
            );
            for p in parts {
                assert!(b.reason.contains(p), "{b} lacks {p:?}");
            }
        }
    }
}

fn record(dir: &Path, i: u64) {
    access::record_as(
        dir,
        AccessInfo::new("query", format!("port={i}")).rows(i),
        Who::current(),
        T0 + i as i64,
    )
    .expect("record an access");
}

#[test]
fn changed_deleted_truncated_or_reordered_access_lines_fail_verify() {
    let (base, _) = store("access-tamper");
    for i in 1..=4 {
        record(base.path(), i);
    }
    let clock = FakeClock::new(T0 + 3 * HOUR);
    drop(open(base.path(), &clock)); // the writer anchors the four lines
    record(base.path(), 5); // not anchored yet
    let v = verify(base.path(), None).unwrap_or_else(|b| panic!("pristine: {b}"));
    assert_eq!((v.operator_lines, v.anchored_lines), (5, 4), "{v:?}");
    let log = |d: &TempDir| d.path().join(oplog::LOG);

    let d = copy_dir(base.path(), "access-t-rows");
    let mut l = raw_lines(&log(&d));
    l[1] = l[1].replace("\"rows\":2", "\"rows\":0");
    write_raw(&log(&d), &l);
    expect_broken(d.path(), &["line 2", "hash"]);

    let d = copy_dir(base.path(), "access-t-del");
    let mut l = raw_lines(&log(&d));
    l.remove(2);
    write_raw(&log(&d), &l);
    expect_broken(d.path(), &["line 3"]);

    let d = copy_dir(base.path(), "access-t-swap");
    let mut l = raw_lines(&log(&d));
    l.swap(1, 2);
    write_raw(&log(&d), &l);
    expect_broken(d.path(), &["line 2"]);

    let d = copy_dir(base.path(), "access-t-trunc");
    let l = raw_lines(&log(&d));
    write_raw(&log(&d), &l[..2]);
    expect_broken(
        d.path(),
        &["ends after line 2", "anchored 4 lines", "cut off"],
    );

    let d = copy_dir(base.path(), "access-t-cut-mid");
    let bytes = std::fs::read(log(&d)).expect("read");
    std::fs::write(log(&d), &bytes[..bytes.len() / 2]).expect("write");
    expect_broken(d.path(), &["cut off"]);

    let d = copy_dir(base.path(), "access-t-unanchored");
    let mut l = raw_lines(&log(&d));
    l[4] = l[4].replace("port=5", "port=6");
    write_raw(&log(&d), &l);
    expect_broken(d.path(), &["line 5", "hash"]);

    // A field added leaves the hash intact; the line is still not the agent's.
    let d = copy_dir(base.path(), "access-t-field");
    let mut l = raw_lines(&log(&d));
    l[0] = l[0].replacen('{', "{\"note\":\"x\",", 1);
    write_raw(&log(&d), &l);
    expect_broken(d.path(), &["line 1", "form"]);

    // The whole log deleted while the manifest anchors it.
    let d = copy_dir(base.path(), "access-t-gone");
    std::fs::remove_file(log(&d)).expect("rm");
    expect_broken(d.path(), &["ends after line 0", "cut off"]);
}

/// The log opened and locked as an appender locks it; the lock goes with the file.
fn lock_log(dir: &Path) -> std::fs::File {
    let f = std::fs::File::options()
        .append(true)
        .create(true)
        .open(dir.join(oplog::LOG))
        .expect("open the log");
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    f
}

#[test]
fn the_writer_never_waits_for_an_appender_and_racing_appenders_keep_one_chain() {
    let (dir, _) = store("access-race");
    record(dir.path(), 1);
    let lock = lock_log(dir.path());
    // An appender waits for the lock; the writer does not.
    let d = dir.path().to_owned();
    let appender = std::thread::spawn(move || record(&d, 2));
    let d = dir.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let clock = FakeClock::new(T0 + 3 * HOUR);
        let mut s = open(&d, &clock);
        let mut g = xdp_audit::store::testgen::TrafficGen::with_rate(3, T0 + 3 * HOUR, 1.0);
        for _ in 0..100 {
            let r = g.next_record();
            clock.set(r.time_start_ns);
            s.append(&r);
        }
        let sealed = s.seal_now();
        let _ = tx.send(sealed);
    });
    let sealed = rx.recv_timeout(Duration::from_secs(60)).expect(
        "the writer (open, anchor, seal) must finish while an appender holds the log's lock",
    );
    assert!(sealed, "seal failed");
    assert!(
        !appender.is_finished(),
        "the appender must wait for the lock"
    );
    drop(lock);
    appender.join().expect("appender");
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("after the race: {b}"));
    assert_eq!((v.operator_lines, v.anchored_lines), (2, 1), "{v:?}");

    // Eight appenders at once: one chain, every line once.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let d = dir.path().to_owned();
            std::thread::spawn(move || {
                for i in 0..25 {
                    record(&d, 100 * t + i + 10);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("appender thread");
    }
    let lines = lines_of(dir.path());
    assert_eq!(lines.len(), 202);
    let mut ports: Vec<String> = lines
        .iter()
        .filter_map(|l| match &l.entry.body {
            OpBody::Access(a) => Some(a.filter.clone()),
            _ => None,
        })
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 202, "a line was lost or doubled");
}

/// A read-only bind mount of a directory, undone on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(src: &Path, at: &Path) -> Self {
        let c = |p: &Path| CString::new(p.to_str().expect("utf-8")).expect("no NUL");
        let (s, t) = (c(src), c(at));
        // SAFETY: valid NUL-terminated paths; null type and data are allowed for a bind.
        let rc = unsafe {
            libc::mount(
                s.as_ptr(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        assert_eq!(
            rc,
            0,
            "bind mount {at:?}: {}",
            std::io::Error::last_os_error()
        );
        let guard = Self(at.to_owned());
        // SAFETY: as above; a bind mount becomes read-only by a remount.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                std::ptr::null(),
            )
        };
        assert_eq!(
            rc,
            0,
            "remount {at:?} read-only: {}",
            std::io::Error::last_os_error()
        );
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if let Ok(t) = CString::new(self.0.to_string_lossy().as_bytes()) {
            // SAFETY: a valid path; MNT_DETACH never blocks.
            unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

#[test]
fn a_read_only_store_still_answers_and_warns_that_the_access_was_not_recorded() {
    let (dir, recs) = store("access-ro");
    record(dir.path(), 1);
    let before = std::fs::read(dir.path().join(oplog::LOG)).expect("read log");
    let mnt = TempDir::new("access-ro-mnt");
    let _ro = ReadOnly::mount(dir.path(), mnt.path());
    let m = mnt.path().to_str().expect("utf-8");
    let o = run(&["query", "--log-dir", m, "--format", "jsonl"], &[]);
    let out = ok(&o);
    assert_eq!(
        out.lines().count(),
        recs.len(),
        "the query must answer in full"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("NOT recorded") && err.contains("read-only"),
        "the warning must say the access was not recorded and why: {err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join(oplog::LOG)).expect("read log"),
        before
    );
    let v = verify(mnt.path(), None).unwrap_or_else(|b| panic!("read-only store: {b}"));
    assert_eq!(v.operator_lines, 1);
}

/// A link planted at the operator log's name (by whoever writes the store's directory: the
/// agent's own user) is never followed by a command run as root: the file it names is not
/// created, written or handed to the store's owner, and the access is said to be unrecorded.
#[test]
fn a_link_in_the_operator_logs_place_is_never_followed() {
    use std::os::unix::fs::MetadataExt as _;
    let (dir, recs) = store("access-link");
    let victim = dir.path().join("victim");
    std::os::unix::fs::symlink(&victim, dir.path().join(oplog::LOG)).expect("plant the link");
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).expect("chown the store");
    let d = dir.path().to_str().expect("utf-8");
    let o = run(&["query", "--log-dir", d, "--format", "jsonl"], &[]);
    assert_eq!(ok(&o).lines().count(), recs.len(), "the query answers");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("NOT recorded") && err.contains("symbolic link"),
        "the warning names the link: {err}"
    );
    assert!(
        std::fs::symlink_metadata(&victim).is_err(),
        "the link's target was created"
    );
    // An existing target is neither written nor given away.
    std::fs::write(&victim, b"root's file\n").expect("write the target");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let o = run(&["query", "--log-dir", d, "--count"], &[]);
    ok(&o);
    assert_eq!(std::fs::read(&victim).expect("read"), b"root's file\n");
    let m = std::fs::metadata(&victim).expect("stat");
    assert_eq!(
        (m.uid(), m.mode() & 0o777),
        (0, 0o644),
        "owner and mode kept"
    );
}

/// `query --format jsonl` over the store in `dir`, started with SIGINT's disposition
/// `disposition`, sent SIGINT once its first 4 KiB of records are out (it then blocks on the
/// pipe we do not read): how it ended and the records it printed.
fn query_sent_sigint(dir: &Path, disposition: libc::sighandler_t) -> (Output, usize) {
    use std::io::Read as _;
    let mut cmd = Command::new(BIN);
    cmd.args(["query", "--log-dir"])
        .arg(dir)
        .args(["--format", "jsonl"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            libc::signal(libc::SIGINT, disposition);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn xdp-audit query");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 4096];
    stdout.read_exact(&mut first).expect("the first records");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = Vec::new();
    stdout
        .read_to_end(&mut rest)
        .expect("the rest of the output");
    let printed = bytecount(&first) + bytecount(&rest);
    (child.wait_with_output().expect("wait"), printed)
}

/// A query stopped by Ctrl-C once it printed records still records its access, with the
/// records it handed out and why it ended, and exits 130; before that line existed, the
/// records were out and the operator log had no line for them. (SIGINT as an interactive
/// shell leaves it: CI runs the suite in the background, with SIGINT ignored.)
#[test]
fn a_query_stopped_by_a_signal_after_printing_records_its_access() {
    let (dir, recs) = store("access-sigint");
    let before = lines_of(dir.path()).len();
    let (out, printed) = query_sent_sigint(dir.path(), libc::SIG_DFL);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        printed < recs.len(),
        "premise: the signal came before the end ({printed} of {})",
        recs.len()
    );
    assert_eq!(
        lines_of(dir.path()).len(),
        before + 1,
        "one access line: {err}"
    );
    let a = last_access(dir.path());
    assert!(
        a.command == "query"
            && a.rows.is_some_and(|n| n as usize >= printed)
            && a.error
                .as_deref()
                .is_some_and(|e| e.contains("stopped by a signal")),
        "{a:?} ({printed} lines printed)"
    );
}

/// A query started with SIGINT ignored (a background job, `nohup`) keeps ignoring it: the
/// answer is whole, exit 0, and its access line counts every record.
#[test]
fn a_query_started_ignoring_sigint_keeps_ignoring_it() {
    let (dir, recs) = store("access-sigign");
    let (out, printed) = query_sent_sigint(dir.path(), libc::SIG_IGN);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(printed, recs.len());
    assert_eq!(last_access(dir.path()).rows, Some(recs.len() as u64));
}

/// Newlines in `b`: the JSON Lines records in it.
fn bytecount(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}
