//! A file the agent reads that is not a regular file (a FIFO put in its place by mistake or by
//! an attacker, a directory, a link to a device) is refused at once, by what it is, naming the
//! file; nothing waits on it. Opening a FIFO for reading waits for a writer forever: before,
//! the store did not open (`operator.log`, a quarantine file, the segment of an interrupted
//! compaction), the sealer thread stopped after its first seal and the store could never
//! close (`alerts.jsonl`), `status` and the agent's start hung (`status.json`), and so did
//! shipping and retention's look at the cursor (`ship-cursor.json`).
//!
//! Every operation runs on a thread watched for 30 s, so a regression fails the test instead
//! of hanging the run; that is a guard, not a timing assertion.

#[path = "ship_common/mod.rs"]
mod ship_common;
mod store_common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use store_common::{config, fill, live, TempDir, HOUR, T0};
use xdp_audit::ship::cursor::{self, Cursor, CURSOR};
use xdp_audit::status::{Snapshot, Starting, FILE_NAME as STATUS};
use xdp_audit::store::journal::quarantine_path;
use xdp_audit::store::oplog::{self, AccessInfo, Log, OpBody, OpEntry, Who};
use xdp_audit::store::seal::journal_name;
use xdp_audit::store::segment::SegmentReader;
use xdp_audit::store::testgen::{intact_frames, journal_bytes, TrafficGen};
use xdp_audit::store::verify::verify;
use xdp_audit::store::{fsutil, manifest, FakeClock, Store};

const FIFO: &str = "is a FIFO, not a regular file";

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: a NUL-terminated path.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        r,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// What is put in a file's place, and how the refusal names it.
#[derive(Clone, Copy, Debug)]
enum Special {
    Fifo,
    Directory,
    /// A symbolic link to `/dev/null`: followed, it is a character device.
    Device,
}

impl Special {
    const ALL: [Special; 3] = [Special::Fifo, Special::Directory, Special::Device];

    fn make(self, path: &Path) {
        match self {
            Special::Fifo => mkfifo(path),
            Special::Directory => std::fs::create_dir(path)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display())),
            Special::Device => std::os::unix::fs::symlink("/dev/null", path)
                .unwrap_or_else(|e| panic!("symlink {}: {e}", path.display())),
        }
    }

    fn refusal(self) -> &'static str {
        match self {
            Special::Fifo => FIFO,
            Special::Directory => "is a directory, not a regular file",
            Special::Device => "is a character device, not a regular file",
        }
    }
}

/// `f`'s result, run on a thread; fails the test if it has not returned within 30 s.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} hung (no answer in 30 s)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Asserts `message` names `path` and says `refusal`.
fn assert_names(message: &str, path: &Path, refusal: &str) {
    assert!(
        message.contains(&path.display().to_string()) && message.contains(refusal),
        "expected {} and {refusal:?} in: {message}",
        path.display()
    );
}

/// Rows of the store's live segments.
fn live_rows(dir: &Path) -> u64 {
    live(dir).iter().map(|s| s.rows).sum()
}

/// Either log as a FIFO: the store opens, seals every hour, closes, and loses no record; the
/// sealer names the log each time it would anchor it, and `verify` names it too.
#[test]
fn a_fifo_in_place_of_either_log_stops_no_seal_and_is_named() {
    for log in Log::ALL {
        let tmp = TempDir::new("fifo-log");
        let dir = tmp.path().to_owned();
        let fifo = dir.join(log.file());
        mkfifo(&fifo);
        let what = format!("a store with {} a FIFO", log.file());
        let filled = dir.clone();
        let records = within(&what, move || {
            fill(&filled, &FakeClock::new(T0), T0, 3, 2.0, 7, true).len() as u64
        });
        assert_eq!(live_rows(&dir), records, "{what}: every record is sealed");
        let checked = dir.clone();
        let broken = within(&format!("verify of {what}"), move || verify(&checked, None))
            .expect_err("a log that cannot be read does not verify");
        assert_names(&broken.to_string(), &fifo, FIFO);
        assert!(fifo.exists(), "{what}: the FIFO is left in place");
    }
}

/// Reading either log refuses what is not a regular file, by what it is.
#[test]
fn scanning_a_log_that_is_not_a_regular_file_is_refused_at_once() {
    for kind in Special::ALL {
        for log in Log::ALL {
            let tmp = TempDir::new("special-log");
            let path = tmp.path().join(log.file());
            kind.make(&path);
            let dir = tmp.path().to_owned();
            let r = within(&format!("scan of {} as {kind:?}", log.file()), move || {
                oplog::scan_log(&dir, log).map(|s| s.lines.len())
            });
            let e = r.expect_err("refused");
            assert_names(&e.to_string(), &path, kind.refusal());
        }
    }
}

/// An operator's command appending to a log that is a FIFO is refused before a byte is
/// written: the line would have gone to whoever reads the pipe, and a long one would wait.
#[test]
fn appending_to_a_fifo_log_is_refused_and_writes_nothing() {
    let tmp = TempDir::new("fifo-append");
    let fifo = tmp.path().join(oplog::LOG);
    mkfifo(&fifo);
    let dir = tmp.path().to_owned();
    let entry = OpEntry {
        at_ns: T0,
        who: Who::default(),
        body: OpBody::Access(AccessInfo {
            command: "query".into(),
            ..AccessInfo::default()
        }),
    };
    let e = within("an append to a FIFO log", move || {
        oplog::append(&dir, entry)
    })
    .expect_err("refused");
    assert_names(&e.to_string(), &fifo, FIFO);
}

/// `status.json` as a FIFO: `status` says so at once, the agent's start finds no crash
/// evidence in it and goes on, writing its snapshot in its place.
#[test]
fn a_fifo_status_snapshot_is_refused_and_the_start_goes_on() {
    let tmp = TempDir::new("fifo-status");
    let dir = tmp.path().to_owned();
    let fifo = dir.join(STATUS);
    mkfifo(&fifo);
    let d = dir.clone();
    let e = within("status of a FIFO snapshot", move || {
        Snapshot::read(&d).map(|s| s.pid)
    })
    .expect_err("refused");
    assert_names(&format!("{e:#}"), &fifo, FIFO);
    let d = dir.clone();
    let evidence = within("crash evidence of a FIFO snapshot", move || {
        Snapshot::crash_evidence(&d)
    });
    assert_eq!(evidence, None, "no snapshot, no evidence");
    let d = dir.clone();
    let evidence = within("a start beside a FIFO snapshot", move || {
        let (_, starting, evidence) = Starting::begin(&d);
        drop(starting);
        evidence
    });
    assert_eq!(evidence, None);
    let s = Snapshot::read(&dir).expect("the start wrote its snapshot in the FIFO's place");
    assert!(
        s.stopped_at.is_some(),
        "a start that ended is marked stopped"
    );
}

/// The snapshot's temporary file as a FIFO: the start cannot write its snapshot, says so,
/// and goes on; it does not wait for a reader.
#[test]
fn a_fifo_in_place_of_the_status_temporary_file_does_not_hang_the_start() {
    let tmp = TempDir::new("fifo-status-tmp");
    let dir = tmp.path().to_owned();
    let fifo = dir.join(format!(".{STATUS}.tmp"));
    mkfifo(&fifo);
    let d = dir.clone();
    let evidence = within("a start beside a FIFO temporary file", move || {
        let (_, starting, evidence) = Starting::begin(&d);
        drop(starting);
        evidence
    });
    assert_eq!(evidence, None);
    assert!(!dir.join(STATUS).exists(), "nothing was written");
    assert!(fifo.exists(), "the FIFO is left in place");
}

/// Reading `status.json` refuses what is not a regular file, by what it is.
#[test]
fn a_status_snapshot_that_is_not_a_regular_file_is_refused_at_once() {
    for kind in Special::ALL {
        let tmp = TempDir::new("special-status");
        let path = tmp.path().join(STATUS);
        kind.make(&path);
        let dir = tmp.path().to_owned();
        let e = within(&format!("status as {kind:?}"), move || {
            Snapshot::read(&dir).map(|s| s.pid)
        })
        .expect_err("refused");
        assert_names(&format!("{e:#}"), &path, kind.refusal());
    }
}

/// `ship-cursor.json` not a regular file: reading it is refused at once, naming it; shipping
/// refuses to start and leaves it in place (it is not damage to set aside), and retention
/// is told the cursor cannot be read (so it keeps what it cannot show was shipped).
#[test]
fn a_cursor_that_is_not_a_regular_file_is_refused_and_left_in_place() {
    for kind in Special::ALL {
        let tmp = TempDir::new("special-cursor");
        let path = tmp.path().join(CURSOR);
        kind.make(&path);
        let dir = tmp.path().to_owned();
        let (read, load, shipped) = within(&format!("the cursor as {kind:?}"), move || {
            (
                cursor::read(&dir).map(|c| c.is_some()),
                Cursor::load(&dir, "s3://b/p/gateway=g").map(|c| c.acked.len()),
                cursor::shipped(&dir, "s3://b/p/gateway=g").map(|s| s.len()),
            )
        });
        assert_names(&read.expect_err("read").to_string(), &path, kind.refusal());
        assert_names(&load.expect_err("load").to_string(), &path, kind.refusal());
        assert_names(&shipped.expect_err("shipped"), &path, kind.refusal());
        assert!(
            std::fs::symlink_metadata(&path).is_ok(),
            "{kind:?}: {} is left in place",
            path.display()
        );
    }
}

/// `ship.lock` not a regular file: the shipper's start is refused at once, naming it, as an
/// error of the store's files (the agent then records without shipping), where a FIFO held
/// the agent's start forever (the lock was opened with a blocking create).
#[test]
fn a_ship_lock_that_is_not_a_regular_file_is_refused_at_once() {
    for kind in Special::ALL {
        let tmp = TempDir::new("special-ship-lock");
        let path = tmp.path().join(xdp_audit::ship::LOCK);
        kind.make(&path);
        let dir = tmp.path().to_owned();
        let spawned = within(&format!("the ship lock as {kind:?}"), move || {
            let cfg = ship_common::ship_config(ship_common::free_port(), "p", "g");
            xdp_audit::ship::Shipper::spawn(&dir, &cfg, Default::default())
                .map(drop)
                .map_err(|e| (e.is_state(), e.to_string()))
        });
        let (state, e) = spawned.expect_err("refused");
        assert!(state, "{kind:?}: {e}");
        // The lock is never opened through a link (`ship` runs as root): the link is named.
        let refusal = match kind {
            Special::Device => "is a symbolic link, not a regular file",
            _ => kind.refusal(),
        };
        assert_names(&e, &path, refusal);
    }
}

/// A quarantine file's name taken by a FIFO: the seal does not wait on it, keeps the skipped
/// bytes under the next name, seals the journal's records, and leaves the FIFO.
#[test]
fn a_fifo_in_place_of_a_quarantine_file_does_not_hang_the_open() {
    let tmp = TempDir::new("fifo-quarantine");
    let dir = tmp.path().to_owned();
    let id = T0 as u64;
    let mut g = TrafficGen::with_rate(5, T0, 20.0);
    let recs: Vec<_> = (0..200).map(|_| g.next_record()).collect();
    let (good, starts) = journal_bytes(id, &recs);
    // The last frame torn by a crash.
    let bad = good[..good.len() - 3].to_vec();
    let (kept, stretches) = intact_frames(&good, &bad, &starts);
    let journal = dir.join(journal_name(id));
    std::fs::write(&journal, &bad).expect("write the journal");
    let want = quarantine_path(&journal, stretches[0].0);
    std::fs::create_dir_all(want.parent().expect("a quarantine directory")).expect("mkdir");
    mkfifo(&want);
    let d = dir.clone();
    let sealed = within("a store open with a FIFO quarantine file", move || {
        let mut store = Store::open_with_clock(config(&d), Box::new(FakeClock::new(T0 + HOUR)))
            .map_err(|e| e.to_string())?;
        store.wait_idle();
        let s = store.status();
        Ok::<_, String>((s.sealed, s.journal_skipped_bytes))
    })
    .unwrap_or_else(|e| panic!("the store did not open: {e}"));
    assert_eq!(sealed, (1, stretches[0].1), "the journal is sealed");
    assert_eq!(live_rows(&dir), kept.len() as u64, "every intact record");
    let next = want.with_extension("bin.1");
    assert_eq!(
        std::fs::read(&next).unwrap_or_else(|e| panic!("{}: {e}", next.display())),
        &bad[stretches[0].0 as usize..],
        "the skipped bytes are kept under the next name"
    );
    assert!(want.exists(), "the FIFO is left in place");
}

/// A FIFO at the temporary name the next seal writes its segment under: the seal is refused
/// at once, naming it (the writer's open blocked forever on it), and the journal stays.
#[test]
fn a_fifo_at_the_next_segments_temporary_name_does_not_hang_the_seal() {
    let tmp = TempDir::new("fifo-tmp-seg");
    let dir = tmp.path().to_owned();
    let id = T0 as u64;
    let mut g = TrafficGen::with_rate(5, T0, 20.0);
    let recs: Vec<_> = (0..50).map(|_| g.next_record()).collect();
    let (good, _) = journal_bytes(id, &recs);
    let journal = dir.join(journal_name(id));
    std::fs::write(&journal, &good).expect("write the journal");
    let first = recs.iter().map(|r| r.time_start_ns).min().expect("records");
    let fifo = dir.join(format!(
        "{}{}",
        fsutil::TMP_PREFIX,
        xdp_audit::store::seal::segment_name(0, first)
    ));
    mkfifo(&fifo);
    let d = dir.clone();
    let opened = within("a seal with a FIFO at its temporary name", move || {
        Store::open_with_clock(config(&d), Box::new(FakeClock::new(T0 + HOUR)))
            .map(|s| s.status().sealed)
            .map_err(|e| e.to_string())
    });
    if let Err(e) = &opened {
        assert_names(e, &fifo, "");
    }
    assert!(fifo.exists(), "the FIFO is left in place");
    assert_ne!(
        opened,
        Ok(1),
        "sealed past the FIFO: it was not at the seal's name"
    );
    assert!(
        journal.exists(),
        "the journal's records are kept: {opened:?}"
    );
}

/// A segment file that is a FIFO: opening it is refused at once, naming it; as the unlisted
/// segment of an interrupted compaction it neither hangs the store's open nor is deleted
/// (it is not a segment the store wrote); hashing it is refused too.
#[test]
fn a_fifo_segment_is_refused_and_left_in_place() {
    let tmp = TempDir::new("fifo-segment");
    let dir = tmp.path().to_owned();
    let records = fill(&dir, &FakeClock::new(T0), T0, 1, 2.0, 3, true).len() as u64;
    let next = manifest::read_entries(&dir)
        .expect("the manifest")
        .last()
        .map_or(0, |e| e.seq + 1);
    let fifo = dir.join(format!("seg-{next:08}-20231114T220000Z.parquet"));
    mkfifo(&fifo);
    let f = fifo.clone();
    let e = within("opening a FIFO segment", move || {
        SegmentReader::open(&f).map(|s| s.rows())
    })
    .expect_err("refused");
    assert_names(&e.to_string(), &fifo, FIFO);
    let f = fifo.clone();
    let e = within("hashing a FIFO", move || fsutil::sha256_file(&f)).expect_err("refused");
    assert!(e.to_string().contains(FIFO), "{e}");
    let d = dir.clone();
    within("a store open beside a FIFO segment", move || {
        Store::open_with_clock(config(&d), Box::new(FakeClock::new(T0)))
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .unwrap_or_else(|e| panic!("the store did not open: {e}"));
    assert!(fifo.exists(), "the FIFO is left in place");
    assert_eq!(live_rows(&dir), records, "no record lost");
}

/// Reading a segment refuses what is not a regular file, by what it is.
#[test]
fn a_segment_that_is_not_a_regular_file_is_refused_at_once() {
    for kind in Special::ALL {
        let tmp = TempDir::new("special-segment");
        let path: PathBuf = tmp.path().join("seg-00000001-20231114T220000Z.parquet");
        kind.make(&path);
        let p = path.clone();
        let e = within(&format!("a segment as {kind:?}"), move || {
            SegmentReader::open(&p).map(|s| s.rows())
        })
        .expect_err("refused");
        assert_names(&e.to_string(), &path, kind.refusal());
    }
}

/// The store's lock file as anything but a regular file: never waited on, and set aside for
/// a new lock, so the agent records (the open was refused, and the agent did not start).
#[test]
fn a_lock_that_is_not_a_regular_file_is_set_aside_at_once() {
    for special in Special::ALL {
        let tmp = TempDir::new("special-lock");
        let dir = tmp.path().to_owned();
        std::fs::create_dir_all(&dir).expect("mkdir");
        let lock = dir.join(".lock");
        special.make(&lock);
        let d = dir.clone();
        let opened = within("a store open with a special lock file", move || {
            Store::open_with_clock(config(&d), Box::new(FakeClock::new(T0)))
                .map(drop)
                .map_err(|e| e.to_string())
        });
        opened.unwrap_or_else(|e| panic!("{special:?}: {e}"));
        assert!(
            std::fs::symlink_metadata(&lock).is_ok_and(|m| m.is_file()),
            "{special:?}: a new lock"
        );
        let aside = dir.join("quarantine").join(".lock");
        assert!(
            std::fs::symlink_metadata(&aside).is_ok(),
            "{special:?}: moved into quarantine/"
        );
        if let Err(b) = verify(&dir, None) {
            panic!("{special:?}: {b}");
        }
    }
}

/// A sealed segment replaced by what is not a file: `verify` says BROKEN by what it is
/// (it said "size 4096 differs" for a directory; a link is named as one), and never waits
/// on a FIFO.
#[test]
fn a_segment_replaced_by_a_special_file_is_named_by_verify() {
    for kind in Special::ALL {
        let tmp = TempDir::new("replaced-segment");
        let dir = tmp.path().to_owned();
        fill(&dir, &FakeClock::new(T0), T0, 1, 2.0, 5, true);
        let seg = manifest::read_entries(&dir)
            .expect("the manifest")
            .iter()
            .find_map(|e| e.body.added().map(|s| s.file.clone()))
            .expect("a sealed segment");
        let path = dir.join(&seg);
        std::fs::remove_file(&path).expect("remove the segment");
        kind.make(&path);
        let d = dir.clone();
        let e = within(&format!("verify beside a {kind:?}"), move || {
            xdp_audit::store::verify::verify(&d, None)
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .expect_err("broken");
        // A link (here to a device) is named as a link: a segment is the file its seal
        // wrote, never followed elsewhere.
        let what = match kind {
            Special::Device => "is a symbolic link",
            _ => kind.refusal().split(',').next().unwrap_or_default(),
        };
        assert!(e.contains(&seg) && e.contains(what), "{kind:?}: {e}");
    }
}
