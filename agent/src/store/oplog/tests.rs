//! Tests of the hash-chained logs (the operator log and the alert log).

use super::*;
use std::fs::File;
use std::io::Write as _;

fn access(command: &str) -> OpEntry {
    OpEntry {
        at_ns: 5,
        who: Who::default(),
        body: OpBody::Access(AccessInfo {
            command: command.into(),
            ..Default::default()
        }),
    }
}

/// A fresh directory, removed when the guard is dropped (also when the test fails), and its
/// path.
fn temp(name: &str) -> (crate::blocklist::tests::TempDir, PathBuf) {
    let guard = crate::blocklist::tests::TempDir::new(&format!("oplog-{name}"));
    let d = guard.0.clone();
    (guard, d)
}

#[test]
fn appended_lines_chain_and_check() {
    let (_tmp, d) = temp("chain");
    for c in ["a", "b", "c"] {
        append(&d, access(c)).expect("append");
    }
    let s = scan(&d).expect("scan");
    assert_eq!(s.problem, None);
    assert_eq!(s.lines.iter().map(|l| l.n).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(s.lines[1].prev, s.lines[0].hash);
    assert_eq!(
        s.end.bytes,
        std::fs::metadata(d.join(LOG)).expect("stat").len()
    );
}

#[test]
fn a_log_made_by_root_belongs_to_the_stores_owner_with_group_append() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test gives files away: run it as root (cargo xtask test does)");
    }
    let (_tmp, d) = temp("owner");
    std::os::unix::fs::chown(&d, Some(65534), Some(65534)).expect("chown the store dir");
    // SAFETY: umask has no preconditions; restored below.
    let old = unsafe { libc::umask(0o022) };
    let appended = append(&d, access("query"));
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    appended.expect("append");
    let m = std::fs::metadata(d.join(LOG)).expect("stat the log");
    assert_eq!((m.uid(), m.gid()), (65534, 65534), "owner of {}", LOG);
    assert_eq!(m.permissions().mode() & 0o777, LOG_MODE, "mode of {}", LOG);
}

#[test]
fn a_torn_last_line_is_cut_before_the_next_append() {
    let (_tmp, d) = temp("torn");
    append(&d, access("a")).expect("append");
    let mut f = File::options()
        .append(true)
        .open(d.join(LOG))
        .expect("open");
    f.write_all(b"{\"n\":2,\"at_").expect("tear");
    let s = scan(&d).expect("scan");
    assert_eq!((s.lines.len(), s.incomplete), (1, 11));
    let torn_at = std::fs::metadata(d.join(LOG)).expect("stat").len() - 11;
    append(&d, access("b")).expect("append after a torn line");
    let s = scan(&d).expect("scan");
    assert_eq!((s.lines.len(), s.incomplete, s.problem), (2, 0, None));
    let kept = d
        .join(crate::store::journal::QUARANTINE_DIR)
        .join(format!("{LOG}-{torn_at:012}.bin"));
    assert_eq!(
        std::fs::read(&kept).ok().as_deref(),
        Some(&b"{\"n\":2,\"at_"[..]),
        "the cut bytes are kept"
    );
    // Private as the store's own files are, whatever the umask of the command that cut.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .ok()
    };
    assert_eq!(mode(kept.parent().expect("quarantine/")), Some(0o750));
    assert_eq!(mode(&kept), Some(0o640));
}

/// Complete last lines of the alert log that do not parse (damage, or another program's
/// bytes) are kept in quarantine and cut, and the chain goes on from the line before: one
/// bad line kept every later alert out of the log. More than [`append::UNPARSED_MAX`] are
/// refused with the file left as it is, and the operator log refuses any (cutting a damaged
/// hold line would lift the hold).
#[test]
fn last_alert_log_lines_that_do_not_parse_are_set_aside_and_the_chain_goes_on() {
    let (_tmp, d) = temp("unparsed");
    let notice = || OpEntry {
        at_ns: 5,
        who: Who::default(),
        body: OpBody::Alert(crate::alert::Alert {
            id: crate::alert::AlertId::ListRejected,
            severity: crate::alert::AlertId::ListRejected.severity(),
            state: crate::alert::AlertState::Raised,
            text: "a.list rejected".into(),
            subject: Default::default(),
            first_ns: 1,
            last_ns: 2,
            count: 1,
        }),
    };
    let alerts = d.join(Log::Alerts.file());
    append_to(&d, Log::Alerts, notice()).expect("append");
    let at = std::fs::metadata(&alerts).expect("stat").len();
    let damage = b"garbage\n\xff\xfe not utf-8\n";
    let mut f = File::options().append(true).open(&alerts).expect("open");
    f.write_all(damage).expect("damage");
    append_to(&d, Log::Alerts, notice()).expect("append after lines that do not parse");
    let s = scan_log(&d, Log::Alerts).expect("scan");
    assert_eq!(s.problem, None, "{s:?}");
    assert_eq!(s.lines.iter().map(|l| l.n).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(s.lines[1].prev, s.lines[0].hash);
    let q = d.join(crate::store::journal::QUARANTINE_DIR);
    assert_eq!(
        std::fs::read(q.join(format!("{}-{at:012}.bin", Log::Alerts.file()))).ok(),
        Some(damage.to_vec()),
        "both lines kept, in one file"
    );
    // More than that: refused, nothing cut.
    let before = std::fs::read(&alerts).expect("read");
    let lines = "x\n".repeat(append::UNPARSED_MAX + 1);
    let mut f = File::options().append(true).open(&alerts).expect("open");
    f.write_all(lines.as_bytes()).expect("damage");
    let e = append_to(&d, Log::Alerts, notice()).expect_err("refused");
    assert!(e.to_string().contains("do not parse"), "{e}");
    assert_eq!(
        std::fs::read(&alerts).expect("read").len(),
        before.len() + lines.len(),
        "the file left as it is"
    );
    // The operator log refuses a line that does not parse, and cuts nothing.
    append(&d, access("a")).expect("append");
    let mut f = File::options()
        .append(true)
        .open(d.join(LOG))
        .expect("open");
    f.write_all(b"garbage\n").expect("damage");
    let len = std::fs::metadata(d.join(LOG)).expect("stat").len();
    assert!(append(&d, access("b")).is_err(), "the operator log refuses");
    assert_eq!(std::fs::metadata(d.join(LOG)).expect("stat").len(), len);
}

#[test]
fn a_tail_longer_than_a_line_is_damage_never_cut() {
    let (_tmp, d) = temp("zeroed");
    for c in ["a", "b", "c"] {
        append(&d, access(c)).expect("append");
    }
    let path = d.join(LOG);
    // The log zeroed over more than a line's worth of bytes: no newline left in them.
    let size = MAX_LINE + 1;
    std::fs::write(&path, vec![0u8; size]).expect("zero the log");
    let s = scan(&d).expect("scan");
    let (line, why) = s.problem.expect("the zeroed log is a problem");
    assert!(line == 1 && why.contains("damage"), "{line}: {why}");
    let e = append(&d, access("d")).expect_err("nothing is appended to damage");
    assert!(e.to_string().contains("nothing is cut"), "{e}");
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        size as u64,
        "nothing was cut"
    );
    // Up to a line's worth is what a crash mid-append leaves: cut, as before.
    std::fs::write(&path, vec![0u8; MAX_LINE]).expect("zero a line's worth");
    assert_eq!(scan(&d).expect("scan").problem, None);
    append(&d, access("e")).expect("append after a torn line");
    assert_eq!(scan(&d).expect("scan").lines.len(), 1);
}

#[test]
fn a_long_tail_is_found_across_read_windows() {
    let (_tmp, d) = temp("long");
    let mut e = access("x");
    if let OpBody::Access(a) = &mut e.body {
        a.filter = "f".repeat(MAX_LINE - 400);
    }
    for _ in 0..6 {
        append(&d, e.clone()).expect("append");
    }
    assert_eq!(scan(&d).expect("scan").problem, None);
}

#[test]
fn rules_refuse_bad_releases() {
    let hold = |n| OpLine {
        n,
        entry: OpEntry {
            at_ns: 1,
            who: Who::default(),
            body: OpBody::Hold(HoldInfo {
                since_ns: 0,
                until_ns: 10,
                reason: "case".into(),
            }),
        },
        prev: String::new(),
        hash: String::new(),
    };
    let release = |n, hold| OpLine {
        n,
        entry: OpEntry {
            at_ns: 1,
            who: Who::default(),
            body: OpBody::Release(ReleaseInfo {
                hold,
                reason: "done".into(),
            }),
        },
        prev: String::new(),
        hash: String::new(),
    };
    let mut holds = Default::default();
    assert!(check_rules(&release(1, 1), &mut holds).is_err());
    check_rules(&hold(2), &mut holds).expect("hold");
    check_rules(&release(3, 2), &mut holds).expect("release");
    let twice = check_rules(&release(4, 2), &mut holds).expect_err("twice");
    assert!(twice.contains("twice"), "{twice}");
}

/// A log grown sparse to a terabyte (or damaged at its end by a newline after one) is damage
/// found after reading about a MiB, by the scan, the anchoring and the appends alike; a log
/// that goes on past [`LOG_MAX`] is damage where the read stops.
#[test]
fn a_sparse_terabyte_is_damage_read_for_a_mib() {
    let (_tmp, d) = temp("sparse");
    for c in ["a", "b", "c"] {
        append(&d, access(c)).expect("append");
    }
    let path = d.join(LOG);
    File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(1 << 40))
        .expect("grow the log sparse to 1 TiB");
    let s = scan(&d).expect("scan");
    let (line, why) = s.problem.expect("the sparse log is a problem");
    assert!(line == 4 && why.contains("damage"), "{line}: {why}");
    assert_eq!(s.lines.len(), 3, "the lines before the damage are read");
    let mut manifest = crate::store::manifest::Manifest::load(&d, None).expect("manifest");
    let a = anchor(&d, &mut manifest, 7).expect("anchor");
    assert!(a.problem.is_some() && a.new_lines == 3, "{a:?}");
    let e = append(&d, access("d")).expect_err("nothing is appended to damage");
    assert!(e.to_string().contains("damage"), "{e}");
    // A line after the terabyte: its start would be searched for over the whole of it.
    File::options()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"{}\n"))
        .expect("a line after the terabyte");
    let e = append(&d, access("d")).expect_err("nothing is appended to damage");
    assert!(e.to_string().contains("longer than"), "{e}");
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        (1 << 40) + 3,
        "nothing was cut"
    );

    // A log of valid lines that goes on past the cap: damage at the line after the last read.
    let (_tmp, d) = temp("past-max");
    for c in ["a", "b"] {
        append(&d, access(c)).expect("append");
    }
    let bytes = std::fs::read(d.join(LOG)).expect("read the log");
    let s = check_bytes(&bytes, ChainEnd::start(), true).cut(true);
    let (line, why) = s.problem.expect("a log past the cap is a problem");
    assert!(line == 3 && why.contains("goes on past"), "{line}: {why}");
    assert_eq!(s.lines.len(), 2);
    assert!(check_bytes(&bytes, ChainEnd::start(), true)
        .cut(false)
        .problem
        .is_none());
}

/// An appender stopped while it holds the log's lock does not hang the next one without a
/// word: after a while it is refused, naming the log and how to find the holder.
#[test]
fn a_lock_held_too_long_is_named_not_waited_on_forever() {
    use std::os::fd::AsRawFd;
    let (_tmp, d) = temp("held");
    append(&d, access("a")).expect("append");
    let holder = File::open(d.join(LOG)).expect("open");
    // SAFETY: flock on a descriptor we own; released when `holder` is dropped.
    assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);
    let e = append(&d, access("b")).expect_err("refused while held");
    assert!(e.to_string().contains("fuser -v"), "{e}");
    drop(holder);
    append(&d, access("b")).expect("appended once let go");
    assert_eq!(scan(&d).expect("scan").lines.len(), 2);
}
