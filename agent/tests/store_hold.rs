//! Legal holds: a held window survives retention (fake clock) and a release lets it go; the
//! pass logs what it kept; holds work without a running agent; every change to a hold, a
//! release, an anchor or a prune of a held segment is caught by `verify`, naming the file and
//! line; `xdp-audit hold` through the real binary.

#[path = "store_common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use xdp_audit::store::hold::{self, Hold};
use xdp_audit::store::manifest::{self, Body, Manifest, PruneInfo, RemovedFile, SegmentInfo};
use xdp_audit::store::oplog::{self, line_hash, HoldInfo, OpBody, OpLine, Who};
use xdp_audit::store::query::{collect, Filter};
use xdp_audit::store::retention;
use xdp_audit::store::verify::verify;
use xdp_audit::store::{FakeClock, Store, StoreClock};
use xdp_audit::testlog::logged;

const BIN: &str = env!("CARGO_BIN_EXE_xdp-audit");

fn who(name: &str) -> Who {
    Who {
        uid: 1000,
        user: Some(name.into()),
        sudo_user: None,
        login_uid: Some(1000),
    }
}

fn window(since_ns: i64, until_ns: i64, reason: &str) -> HoldInfo {
    HoldInfo {
        since_ns,
        until_ns,
        reason: reason.into(),
    }
}

fn file_names(segs: &[SegmentInfo]) -> Vec<String> {
    let mut v: Vec<String> = segs.iter().map(|s| s.file.clone()).collect();
    v.sort();
    v
}

/// Three hours of old records at T0 and two young ones ten days later, sealed; a hold on the
/// second old hour. Returns the old segments the hold covers and those it does not.
fn held_store(name: &str) -> (TempDir, FakeClock, Vec<SegmentInfo>, Vec<SegmentInfo>) {
    let dir = TempDir::new(name);
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 3, 0.5, 1, true);
    let old = live(dir.path());
    fill(dir.path(), &clock, T0 + 10 * DAY, 2, 0.5, 2, true);
    // The agent is not running: the hold is a line of the operator log all the same.
    let line = hold::add(
        dir.path(),
        who("alice"),
        T0 + 20 * DAY,
        window(T0 + HOUR, T0 + 2 * HOUR, "case 4711"),
    )
    .expect("order the hold");
    let h = &hold::holds(&[line])[0];
    let (held, free): (Vec<_>, Vec<_>) = old.into_iter().partition(|s| h.covers(s));
    assert!(
        !held.is_empty() && !free.is_empty(),
        "the hold must cover some old segments and not others: held {held:?}, free {free:?}"
    );
    (dir, clock, held, free)
}

#[test]
fn a_held_window_survives_retention_and_a_release_lets_it_go() {
    let (dir, clock, held, free) = held_store("hold-survives");
    let young = live(dir.path())
        .into_iter()
        .filter(|s| s.time_min_ns >= T0 + 10 * DAY)
        .count();
    // 181 days after the old records: they are past the 180-day retention.
    clock.set(T0 + 181 * DAY);
    let mut store = open(dir.path(), &clock); // retention runs at start
    let after = live(dir.path());
    for s in &held {
        assert!(after.contains(s), "held segment {} was pruned", s.file);
        assert!(dir.path().join(&s.file).exists(), "{} deleted", s.file);
    }
    for s in &free {
        assert!(!after.contains(s), "unheld expired {} was kept", s.file);
    }
    assert_eq!(after.len(), held.len() + young, "{after:?}");
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("after a held prune: {b}"));
    assert_eq!(
        (v.holds_in_force, v.pruned),
        (1, free.len() as u64),
        "{v:?}"
    );
    assert!(v.anchored_lines >= 1, "the hold must be anchored: {v:?}");
    // The held records are still there to be queried.
    let f = Filter {
        since_ns: Some(T0 + HOUR),
        until_ns: Some(T0 + 2 * HOUR),
        ..Filter::default()
    };
    assert!(!collect(dir.path(), &f).expect("query").is_empty());

    // Released: the next daily pass deletes them.
    hold::release(
        dir.path(),
        who("bob"),
        T0 + 181 * DAY,
        1,
        "case 4711 closed",
    )
    .expect("release");
    clock.advance(DAY + HOUR);
    store.tick_at(clock.now_ns()).expect("tick");
    store.wait_idle();
    let after = live(dir.path());
    assert_eq!(after.len(), young, "released segments kept: {after:?}");
    for s in &held {
        assert!(
            !dir.path().join(&s.file).exists(),
            "{} still on disk",
            s.file
        );
    }
    drop(store);
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("after the release: {b}"));
    assert_eq!(v.holds_in_force, 0, "{v:?}");
    assert_eq!(v.pruned, (free.len() + held.len()) as u64, "{v:?}");
}

#[test]
fn retention_logs_what_it_kept_for_which_hold() {
    let (dir, _clock, held, free) = held_store("hold-logs");
    let mut m = Manifest::load(dir.path(), None).expect("load");
    let (pruned, text) =
        logged(|| retention::prune(dir.path(), &mut m, T0 + 181 * DAY, 180).expect("prune"));
    assert_eq!(pruned.deleted, free.len());
    assert_eq!(pruned.suspended, None);
    let [(h, kept)] = &pruned.kept[..] else {
        panic!("one hold must have kept segments: {:?}", pruned.kept)
    };
    assert_eq!(h.id, 1);
    assert_eq!(kept, &file_names(&held));
    let line = text
        .lines()
        .find(|l| l.contains("legal hold"))
        .unwrap_or_else(|| panic!("no log line about the hold in:\n{text}"));
    assert!(
        line.contains("hold=1")
            && line.contains("case 4711")
            && line.contains(&format!("segments={}", held.len()))
            && held.iter().all(|s| line.contains(&s.file)),
        "the log line must name every segment kept: {line}"
    );
}

#[test]
fn a_damaged_operator_log_suspends_retention() {
    let (dir, _clock, _, _) = held_store("hold-suspend");
    let before = live(dir.path());
    // The hold's line edited: the pass cannot know which holds are in force.
    let path = dir.path().join(oplog::LOG);
    let text = std::fs::read_to_string(&path).expect("read log");
    std::fs::write(&path, text.replace("case 4711", "case 4712")).expect("write log");
    let mut m = Manifest::load(dir.path(), None).expect("load");
    let pruned = retention::prune(dir.path(), &mut m, T0 + 181 * DAY, 180).expect("prune");
    assert_eq!(pruned.deleted, 0);
    let why = pruned.suspended.expect("retention must be suspended");
    assert!(
        why.contains("operator.log") && why.contains("line 1"),
        "{why}"
    );
    assert_eq!(live(dir.path()), before, "nothing may be deleted");
}

/// A pass holds appenders off from reading the holds to deleting; an operator log another
/// process keeps locked (an appender stuck mid-write) suspends the pass instead: a hold
/// being ordered could not be read.
#[test]
fn an_operator_log_locked_by_another_process_suspends_retention() {
    use std::os::fd::AsRawFd as _;
    let (dir, _clock, _, _) = held_store("hold-locked");
    let before = live(dir.path());
    let log = std::fs::File::open(dir.path().join(oplog::LOG)).expect("open the log");
    // SAFETY: flock on a descriptor we own; released when `log` closes.
    assert_eq!(unsafe { libc::flock(log.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut m = Manifest::load(dir.path(), None).expect("load");
    let pruned = retention::prune(dir.path(), &mut m, T0 + 181 * DAY, 180).expect("prune");
    assert_eq!(pruned.deleted, 0);
    let why = pruned.suspended.expect("retention must be suspended");
    assert!(why.contains("held by another process"), "{why}");
    assert!(pruned.retry_soon, "tried again in a minute, not tomorrow");
    assert_eq!(live(dir.path()), before, "nothing may be deleted");
    drop(log);
    let pruned = retention::prune(dir.path(), &mut m, T0 + 181 * DAY, 180).expect("prune");
    assert!(
        pruned.suspended.is_none() && pruned.deleted > 0,
        "unlocked, the pass deletes what no hold covers: {pruned:?}"
    );
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

#[track_caller]
fn expect_broken(dir: &Path, file: &str, parts: &[&str]) {
    match verify(dir, None) {
        Ok(v) => panic!("verify passed ({v:?}) but {file} was tampered with"),
        Err(b) => {
            assert!(
                b.file.ends_with(file),
                "blamed {}, expected {file}: {b}",
                b.file.display()
            );
            for p in parts {
                assert!(b.reason.contains(p), "{b} lacks {p:?}");
            }
        }
    }
}

/// A held store after a retention pass (so the hold is anchored), then a release and an
/// access, anchored too.
fn anchored_store(name: &str) -> (TempDir, FakeClock) {
    let (dir, clock, _, _) = held_store(name);
    clock.set(T0 + 181 * DAY);
    drop(open(dir.path(), &clock));
    hold::release(dir.path(), who("bob"), T0 + 182 * DAY, 1, "closed").expect("release");
    let h2 = hold::add(
        dir.path(),
        who("carol"),
        T0 + 182 * DAY,
        window(T0 + 10 * DAY, T0 + 11 * DAY, "case 99"),
    )
    .expect("second hold");
    assert_eq!(h2.n, 3);
    drop(open(dir.path(), &clock));
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("pristine: {b}"));
    assert_eq!((v.operator_lines, v.anchored_lines), (3, 3), "{v:?}");
    (dir, clock)
}

#[test]
fn a_changed_hold_or_release_fails_verify_naming_the_line() {
    let (base, _) = anchored_store("hold-tamper");
    let log = |d: &TempDir| d.path().join(oplog::LOG);

    // The hold's window widened in place.
    let d = copy_dir(base.path(), "hold-t-window");
    let mut l = lines(&log(&d));
    let since = format!("\"since_ns\":{}", T0 + HOUR);
    assert!(l[0].contains(&since), "{}", l[0]);
    l[0] = l[0].replace(&since, &format!("\"since_ns\":{}", T0 - DAY));
    write_lines(&log(&d), &l);
    expect_broken(d.path(), oplog::LOG, &["line 1", "hash"]);

    // The release's reason changed.
    let d = copy_dir(base.path(), "hold-t-reason");
    let mut l = lines(&log(&d));
    l[1] = l[1].replace("closed", "never");
    write_lines(&log(&d), &l);
    expect_broken(d.path(), oplog::LOG, &["line 2"]);

    // The release deleted, to revive the hold.
    let d = copy_dir(base.path(), "hold-t-del");
    let mut l = lines(&log(&d));
    l.remove(1);
    write_lines(&log(&d), &l);
    expect_broken(d.path(), oplog::LOG, &["line 2"]);

    // The hold rewritten consistently, every later line re-hashed: the anchor catches it.
    let d = copy_dir(base.path(), "hold-t-rewrite");
    let mut parsed: Vec<OpLine> = lines(&log(&d))
        .iter()
        .map(|t| serde_json::from_str(t).expect("parse line"))
        .collect();
    if let OpBody::Hold(h) = &mut parsed[0].entry.body {
        h.until_ns += DAY;
    }
    let mut prev = manifest::GENESIS.to_owned();
    for p in &mut parsed {
        p.prev = prev;
        p.hash = line_hash(p.n, &p.entry, &p.prev);
        prev = p.hash.clone();
    }
    let text: Vec<String> = parsed
        .iter()
        .map(|p| serde_json::to_string(p).expect("encode"))
        .collect();
    write_lines(&log(&d), &text);
    expect_broken(d.path(), oplog::LOG, &["line", "rewritten"]);

    // A release of a hold that never was, hashed correctly, appended.
    let d = copy_dir(base.path(), "hold-t-ghost");
    let mut l = lines(&log(&d));
    let last: OpLine = serde_json::from_str(&l[2]).expect("parse");
    let mut ghost = last.clone();
    ghost.n = 4;
    ghost.entry.body = OpBody::Release(oplog::ReleaseInfo {
        hold: 2,
        reason: "x".into(),
    });
    ghost.prev = last.hash.clone();
    ghost.hash = line_hash(ghost.n, &ghost.entry, &ghost.prev);
    l.push(serde_json::to_string(&ghost).expect("encode"));
    write_lines(&log(&d), &l);
    expect_broken(d.path(), oplog::LOG, &["line 4", "no earlier line ordered"]);

    // The anchor in the manifest changed to match a shortened log.
    let d = copy_dir(base.path(), "hold-t-anchor");
    let mpath = d.path().join(manifest::MANIFEST);
    let m = lines(&mpath);
    let i = m
        .iter()
        .rposition(|l| l.contains("\"kind\":\"anchor\""))
        .expect("an anchor entry");
    let mut m2 = m.clone();
    m2[i] = m[i].replace("\"lines\":3", "\"lines\":2");
    assert_ne!(m2[i], m[i]);
    write_lines(&mpath, &m2);
    expect_broken(
        d.path(),
        manifest::MANIFEST,
        &[&format!("entry {i}"), "hash"],
    );
}

#[test]
fn verify_catches_a_prune_of_a_held_segment() {
    let (dir, _clock, held, _) = held_store("hold-forged-prune");
    let mut m = Manifest::load(dir.path(), None).expect("load");
    oplog::anchor(dir.path(), &mut m, T0 + 181 * DAY).expect("anchor");
    // A writer that ignored the hold.
    m.append(Body::Prune(PruneInfo {
        at_ns: T0 + 181 * DAY,
        retention_days: 180,
        files: vec![RemovedFile {
            file: held[0].file.clone(),
            sha256: held[0].sha256.clone(),
        }],
    }))
    .expect("append prune");
    std::fs::remove_file(dir.path().join(&held[0].file)).expect("delete");
    expect_broken(
        dir.path(),
        manifest::MANIFEST,
        &[&held[0].file, "hold 1", "held segment was pruned"],
    );
}

// ---- the command ----

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("spawn xdp-audit")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: Output) -> String {
    assert!(o.status.success(), "failed: {}{}", out(&o), err(&o));
    out(&o)
}

#[track_caller]
fn fails(o: Output, parts: &[&str]) {
    assert!(!o.status.success(), "must fail: {}", out(&o));
    let e = err(&o);
    let first = e.lines().next().unwrap_or_default();
    assert!(first.starts_with("xdp-audit: error: "), "{e}");
    for p in parts {
        assert!(first.contains(p), "{first} lacks {p:?}");
    }
}

#[test]
fn hold_add_list_release_through_the_binary() {
    let dir = TempDir::new("hold-cli");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 2, 0.5, 5, true);
    let d = dir.path().to_str().expect("utf-8 path");
    let since = "2023-11-14T22:00:00Z";
    let until = "2023-11-14T23:00:00Z";
    let text = ok(run(&[
        "hold",
        "add",
        "--log-dir",
        d,
        "--since",
        since,
        "--until",
        until,
        "--reason",
        "case 4711",
    ]));
    assert!(
        text.starts_with("hold 1 ordered: 2023-11-14T22:00:00Z to 2023-11-14T23:00:00Z")
            && text.contains("covers 1 segments"),
        "{text}"
    );
    let listed = ok(run(&["hold", "list", "--log-dir", d]));
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{listed}");
    assert!(
        rows[0].contains("in force") && rows[0].contains(since) && rows[0].contains("case 4711"),
        "{listed}"
    );
    // `hold list` is an access of its own.
    let scan = oplog::scan(dir.path()).expect("scan");
    match &scan.lines.last().expect("lines").entry.body {
        OpBody::Access(a) => assert_eq!((a.command.as_str(), a.rows), ("hold list", Some(1))),
        other => panic!("hold list recorded {other:?}"),
    }
    let text = ok(run(&[
        "hold",
        "release",
        "--log-dir",
        d,
        "1",
        "--reason",
        "closed",
    ]));
    assert!(text.starts_with("hold 1 released"), "{text}");
    assert_eq!(
        ok(run(&["hold", "list", "--log-dir", d])).lines().count(),
        1
    );
    let all = ok(run(&["hold", "list", "--log-dir", d, "--all"]));
    assert!(all.contains("released") && all.contains("closed"), "{all}");
    let holds: Vec<Hold> = hold::holds(&oplog::scan(dir.path()).expect("scan").lines);
    assert_eq!(holds.len(), 1);
    let by = holds[0].who.user.clone();
    assert!(by.is_some(), "{holds:?}");

    fails(
        run(&["hold", "release", "--log-dir", d, "1", "--reason", "again"]),
        &["hold 1", "already released"],
    );
    fails(
        run(&["hold", "release", "--log-dir", d, "7", "--reason", "x"]),
        &["no hold 7"],
    );
    // Said as the flags' mistake, not the operator log's.
    let o = run(&[
        "hold",
        "add",
        "--log-dir",
        d,
        "--since",
        until,
        "--until",
        since,
        "--reason",
        "x",
    ]);
    assert!(!err(&o).contains("operator.log"), "{}", err(&o));
    fails(o, &["--since must be before its --until"]);
    fails(
        run(&[
            "hold",
            "add",
            "--log-dir",
            d,
            "--since",
            since,
            "--until",
            until,
            "--reason",
            " ",
        ]),
        &["--reason"],
    );
    fails(
        run(&[
            "hold",
            "add",
            "--log-dir",
            d,
            "--since",
            "yesterday",
            "--until",
            until,
            "--reason",
            "x",
        ]),
        &["--since"],
    );
    let missing = dir.path().join("missing");
    let m = missing.to_str().expect("utf-8");
    fails(run(&["hold", "list", "--log-dir", m]), &[m]);
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("after the commands: {b}"));
    // add, list, release, list, list --all: the refused commands wrote nothing.
    assert_eq!(v.operator_lines, 5, "{v:?}");
    // A store the agent opens anchors all of it.
    drop(Store::open_with_clock(config(dir.path()), Box::new(clock)).expect("open"));
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("anchored: {b}"));
    assert_eq!(v.anchored_lines, 5, "{v:?}");
}

/// `SUDO_USER` is whatever the caller's environment said: `hold list` prints it escaped, so
/// it can neither make a row of its own nor drive the terminal.
#[test]
fn hold_list_prints_a_hostile_sudo_user_on_its_own_row_escaped() {
    let dir = TempDir::new("hold-sudo-user");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 2, 0.5, 5, true);
    let d = dir.path().to_str().expect("utf-8 path");
    let added = Command::new(BIN)
        .args(["hold", "add", "--log-dir", d, "--reason", "case 1"])
        .args([
            "--since",
            "2023-11-14T22:00:00Z",
            "--until",
            "2023-11-14T23:00:00Z",
        ])
        .env("SUDO_USER", "eve\n   99  in force  forged\u{1b}[2J")
        .output()
        .expect("spawn xdp-audit");
    ok(added);
    let listed = ok(run(&["hold", "list", "--log-dir", d]));
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{listed}");
    assert!(!listed.contains('\u{1b}'), "{listed:?}");
    assert!(rows[0].contains("sudo by eve\\n"), "{listed}");
}

/// A hold ordered on an operator log that no longer verifies is written (retention deletes
/// nothing meanwhile), and `hold add` says at once that `hold list` will not show it.
#[test]
fn a_hold_ordered_after_damage_in_the_log_is_said_so() {
    let dir = TempDir::new("hold-damaged-log");
    let clock = FakeClock::new(T0);
    fill(dir.path(), &clock, T0, 2, 0.5, 7, true);
    let d = dir.path().to_str().expect("utf-8 path");
    let add = |reason: &str| {
        run(&[
            "hold",
            "add",
            "--log-dir",
            d,
            "--since",
            "2023-11-14T22:00:00Z",
            "--until",
            "2023-11-14T23:00:00Z",
            "--reason",
            reason,
        ])
    };
    let first = add("case 1");
    assert!(!err(&first).contains("does not verify"), "{}", err(&first));
    ok(first);
    // A changed byte in the first line's reason.
    let log = dir.path().join(oplog::LOG);
    let text = std::fs::read_to_string(&log).expect("read the log");
    std::fs::write(&log, text.replacen("case 1", "case 7", 1)).expect("damage the log");
    let second = add("case 2");
    let e = err(&second);
    ok(second);
    assert!(
        e.contains("does not verify from line 1") && e.contains("hold list"),
        "{e}"
    );
}
