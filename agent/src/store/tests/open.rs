//! What the store does at open with what it finds in its directory: leftover journals whose
//! header, name or file type is not what the writer makes, temporary names, a manifest at
//! the end of its numbers.

use std::sync::mpsc;

use super::*;
use crate::blocklist::tests::TempDir;
use crate::store::testgen::TrafficGen;

const T0: i64 = 1_767_225_600_000_000_000;

fn open(dir: &Path, now: i64) -> Store {
    Store::open_with_clock(StoreConfig::new(dir), Box::new(FakeClock::new(now)))
        .unwrap_or_else(|e| panic!("open the store in {}: {e}", dir.display()))
}

/// A journal at `dir/name` whose header carries `header_id`, holding `recs`, synced.
fn leave_journal(dir: &Path, name: &str, header_id: u64, recs: &[FlowRecord]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let path = dir.join(name);
    let mut w = JournalWriter::create(&path, header_id)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    for r in recs {
        w.append(r);
    }
    w.sync()
        .unwrap_or_else(|e| panic!("sync {}: {e}", path.display()));
    path
}

fn records(seed: u64, n: usize) -> Vec<FlowRecord> {
    let mut g = TrafficGen::with_rate(seed, T0, 1000.0);
    (0..n).map(|_| g.next_record()).collect()
}

/// Opens the store in `dir`, writes `recs` and seals them: the sealed journal's id.
fn seal_one(dir: &Path, recs: &[FlowRecord]) -> u64 {
    let mut store = open(dir, T0);
    let id = store.journal.id();
    for r in recs {
        store.append(r);
    }
    assert!(store.seal_now(), "the first journal is sealed");
    id
}

fn all_records(dir: &Path) -> Vec<FlowRecord> {
    query::collect(dir, &filter::Filter::default())
        .unwrap_or_else(|e| panic!("query {}: {e}", dir.display()))
}

/// A journal whose header id was damaged (magic intact) into the id of a journal already
/// sealed is sealed under its file name's id, its header kept in quarantine/: before, it was
/// taken for that journal "sealed before a crash" and deleted with its records.
#[test]
fn a_journal_whose_header_names_a_sealed_journal_keeps_its_records() {
    let tmp = TempDir::new("header-id");
    let dir = tmp.0.join("log");
    let first = records(31, 40);
    let sealed_id = seal_one(&dir, &first);
    let second = records(32, 40);
    let path = leave_journal(
        &dir,
        &seal::journal_name(sealed_id + 10),
        sealed_id,
        &second,
    );
    let mut store = open(&dir, T0 + 1_000_000_000);
    assert_eq!(store.left_at_open(), 1, "the left journal is found");
    assert!(store.wait_idle(), "the sealer thread seals it");
    assert!(!path.exists(), "{} is sealed and deleted", path.display());
    // The evidence is kept: the header as found.
    let kept = journal::quarantine_path(&path, 0);
    assert_eq!(
        std::fs::read(&kept).ok(),
        Some(journal::frame::header(sealed_id).to_vec()),
        "{} holds the header naming {sealed_id}",
        kept.display()
    );
    let got = all_records(&dir);
    assert_eq!(
        got.len(),
        first.len() + second.len(),
        "every record is in a segment"
    );
    for (i, r) in second.iter().enumerate() {
        assert!(
            got.contains(r),
            "record {i} of the damaged journal was lost"
        );
    }
    let ids: Vec<u64> = Manifest::load(&dir, None)
        .unwrap_or_else(|e| panic!("load the manifest of {}: {e}", dir.display()))
        .entries()
        .iter()
        .filter_map(|e| e.body.added().map(|s| s.journal_id))
        .collect();
    assert_eq!(
        ids,
        [sealed_id, sealed_id + 10],
        "sealed under the file name's id"
    );
}

/// A journal named with the largest id there is cannot be followed by any journal: it is
/// left in place and counted, and the store opens (before, sealing it put that id in the
/// manifest, and choosing the next journal's id overflowed).
#[test]
fn a_journal_named_with_the_largest_id_is_left_in_place_and_the_store_opens() {
    let tmp = TempDir::new("max-id");
    let dir = tmp.0.join("log");
    let path = leave_journal(
        &dir,
        &seal::journal_name(u64::MAX),
        u64::MAX,
        &records(33, 5),
    );
    let store = open(&dir, T0);
    assert_eq!(store.status().unsealable, 1, "{:?}", store.status());
    assert!(path.exists(), "{} is left in place", path.display());
    assert!(store.journal.id() < u64::MAX);
}

/// A live journal whose id is the largest there is is not rotated (no journal could follow
/// it): its records go on into it, the seal says it did not seal, nothing panics.
#[test]
fn a_live_journal_with_the_largest_id_keeps_its_records_instead_of_rotating() {
    let tmp = TempDir::new("max-id-rotate");
    let dir = tmp.0.join("log");
    leave_journal(
        &dir,
        &seal::journal_name(u64::MAX - 1),
        u64::MAX - 1,
        &records(34, 5),
    );
    let mut store = open(&dir, T0);
    assert_eq!(store.left_at_open(), 1, "the left journal is found");
    assert_eq!(store.journal.id(), u64::MAX, "the next id after it");
    let recs = records(35, 3);
    for r in &recs {
        store.append(r);
    }
    assert!(!store.seal_now(), "the live journal cannot be sealed");
    assert!(store.sync_now(), "its records are durable");
    let path = store.journal.path().to_owned();
    let kept = journal::read(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .records;
    assert_eq!(kept, recs, "the records stay in the live journal");
    // Killed so, the next open must not make that journal anew: its id is the one it
    // would give again (the left journal's was sealed), and a new file there was truncated.
    drop(store);
    let reopened = Store::open_with_clock(StoreConfig::new(&dir), Box::new(FakeClock::new(T0)));
    assert!(reopened.is_err(), "the open refuses rather than truncate");
    let after = journal::read(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .records;
    assert_eq!(after, recs, "its records are still there");
}

/// A manifest whose entry names the largest journal id leaves no id for a new journal: the
/// store refuses to open with an error naming the manifest (before: an overflow).
#[test]
fn a_manifest_naming_the_largest_journal_id_is_refused_by_name() {
    let tmp = TempDir::new("manifest-max-id");
    let dir = tmp.0.join("log");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let mut m = Manifest::load(&dir, None).unwrap_or_else(|e| panic!("load: {e}"));
    m.append(Body::Segment(manifest::SegmentInfo {
        file: "seg-00000000-20260101T000000Z.parquet".into(),
        journal_id: u64::MAX,
        time_min_ns: T0,
        time_max_ns: T0,
        rows: 1,
        size: 1,
        sha256: "ab".repeat(32),
        footer_sha256: None,
    }))
    .unwrap_or_else(|e| panic!("append: {e}"));
    let err = match Store::open_with_clock(StoreConfig::new(&dir), Box::new(FakeClock::new(T0))) {
        Ok(_) => panic!("the store opened over a manifest that leaves no journal id"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(manifest::MANIFEST), "{err}");
}

/// A manifest whose last entry's seq is the largest there is leaves no chain position for
/// a segment: the leftover journal is left in place and counted, and the store opens
/// (before: an overflow).
#[test]
fn a_manifest_at_the_last_seq_leaves_the_journal_unsealed_and_the_store_opens() {
    let tmp = TempDir::new("manifest-max-seq");
    let dir = tmp.0.join("log");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let mut m = Manifest::load(&dir, None).unwrap_or_else(|e| panic!("load: {e}"));
    m.append(Body::Prune(manifest::PruneInfo {
        at_ns: T0,
        retention_days: 180,
        files: Vec::new(),
    }))
    .unwrap_or_else(|e| panic!("append: {e}"));
    let mpath = dir.join(manifest::MANIFEST);
    let text = std::fs::read_to_string(&mpath).unwrap_or_else(|e| panic!("read: {e}"));
    let damaged = text.replace("\"seq\":0", &format!("\"seq\":{}", u64::MAX));
    assert_ne!(damaged, text, "the seq is in the text");
    std::fs::write(&mpath, damaged).unwrap_or_else(|e| panic!("write: {e}"));
    let path = leave_journal(
        &dir,
        &seal::journal_name(T0 as u64 - 5),
        T0 as u64 - 5,
        &records(36, 5),
    );
    let mut store = open(&dir, T0);
    assert!(!store.wait_idle(), "the sealer thread cannot seal it");
    assert_eq!(store.status().unsealed, 1, "{:?}", store.status());
    assert!(path.exists(), "{} is left in place", path.display());
}

/// A directory with a temporary name is not what a crash left (the store writes files): it
/// is left in place and the store opens; a temporary file is still removed.
#[test]
fn a_directory_with_a_temporary_name_does_not_stop_the_store_opening() {
    let tmp = TempDir::new("tmp-dir");
    let dir = tmp.0.join("log");
    let sub = dir.join(format!("{}x", fsutil::TMP_PREFIX));
    std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("create {}: {e}", sub.display()));
    let file = dir.join(format!("{}manifest.jsonl", fsutil::TMP_PREFIX));
    std::fs::write(&file, b"half").unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    let _store = open(&dir, T0);
    assert!(sub.is_dir(), "{} is left in place", sub.display());
    assert!(!file.exists(), "{} is removed", file.display());
}

/// A FIFO named as a journal is refused by what it is, at once, and left in place: before,
/// opening it for reading waited for a writer forever and the store never opened.
#[test]
fn a_fifo_named_as_a_journal_does_not_hang_the_open() {
    let tmp = TempDir::new("fifo-journal");
    let dir = tmp.0.join("log");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let fifo = dir.join(seal::journal_name(T0 as u64 - 5));
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let (tx, rx) = mpsc::channel();
    let opened = dir.clone();
    std::thread::spawn(move || {
        let r = Store::open_with_clock(StoreConfig::new(&opened), Box::new(FakeClock::new(T0)))
            .map(|mut s| {
                s.wait_idle();
                s.status().unsealable
            })
            .map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(unsealable)) => assert_eq!(unsealable, 1, "the FIFO is counted"),
        Ok(Err(e)) => panic!("the store did not open: {e}"),
        Err(_) => panic!("Store::open hung on a FIFO named as a journal"),
    }
    assert!(fifo.exists(), "{} is left in place", fifo.display());
}

/// Fills the file system holding `dir` with one-page files until it refuses the next one;
/// returns them, so a test can free space page by page.
fn fill_with_pages(dir: &Path) -> Vec<PathBuf> {
    let mut pages = Vec::new();
    loop {
        let f = dir.join(format!("filler-{}", pages.len()));
        match std::fs::write(&f, [0u8; 4096]) {
            Ok(()) => pages.push(f),
            Err(e) => {
                assert!(fsutil::is_disk_full(&e), "filling {}: {e}", dir.display());
                let _ = std::fs::remove_file(&f);
                return pages;
            }
        }
        assert!(
            pages.len() < 4096,
            "the file system in {} never filled up",
            dir.display()
        );
    }
}

/// A full disk at open, with an operator's access to anchor: the store opens (the new journal
/// made) and leaves the anchoring and retention to the sealer thread, which does them once
/// space returns. Before, `Store::open` failed on the manifest's replacement, leaving the new
/// journal behind at every retry.
#[test]
fn a_full_disk_at_open_leaves_anchoring_and_retention_to_the_sealer() {
    let fs = xdp_audit_lab::tmpfs::Tmpfs::mount("1m");
    let dir = fs.path().join("log");
    {
        let mut store = open(&dir, T0);
        for r in records(41, 50) {
            store.append(&r);
        }
        assert!(store.seal_now(), "the first hour is sealed");
    }
    // The empty journal the seal left: the sealer thread's deleting it would free a page.
    for (_, path) in seal::list_journals(&dir)
        .unwrap_or_else(|e| panic!("list the journals in {}: {e}", dir.display()))
    {
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }
    let who = access::Who {
        uid: 0,
        user: Some("root".into()),
        sudo_user: None,
        login_uid: None,
    };
    access::record_as(
        &dir,
        access::AccessInfo::new("query", "--ip 10.0.0.1"),
        who,
        T0,
    )
    .unwrap_or_else(|e| panic!("record an access in {}: {e}", dir.display()));
    let fillers = fill_with_pages(fs.path());

    let clock = FakeClock::new(T0 + HOUR_NS);
    let mut store = Store::open_with_clock(StoreConfig::new(&dir), Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("open the store on a full disk in {}: {e}", dir.display()));
    let journals = seal::list_journals(&dir)
        .unwrap_or_else(|e| panic!("list the journals in {}: {e}", dir.display()));
    // The new journal, if the full disk let it be made: nothing else left behind.
    assert!(
        journals.iter().all(|(id, _)| *id == store.journal.id()),
        "only the new journal: {journals:?}"
    );
    let anchored = |dir: &Path| {
        manifest::read_entries(dir)
            .unwrap_or_else(|e| panic!("read the manifest in {}: {e}", dir.display()))
            .iter()
            .any(|e| matches!(&e.body, Body::Anchor(a) if a.log == oplog::LOG))
    };
    assert!(
        !anchored(&dir),
        "nothing could be anchored on the full disk"
    );

    for f in &fillers {
        std::fs::remove_file(f).unwrap_or_else(|e| panic!("free {}: {e}", f.display()));
    }
    let later = T0 + HOUR_NS + retention::DAY_NS;
    clock.set(later);
    store
        .tick_at(later)
        .unwrap_or_else(|e| panic!("tick the store in {}: {e}", dir.display()));
    assert!(store.wait_idle(), "the sealer is done");
    assert!(
        anchored(&dir),
        "the sealer anchored the operator log once space returned"
    );
}

/// A journal that meets a full disk is tried again once space is freed, or a minute on, not
/// at every one-second tick: each try decodes the journal whole only to fail at its first
/// write (an hour's journal is about a second of CPU, every second of the outage).
#[test]
fn a_seal_on_a_full_disk_is_tried_again_once_space_is_freed() {
    let fs = xdp_audit_lab::tmpfs::Tmpfs::mount("1m");
    let dir = fs.path().join("log");
    leave_journal(
        &dir,
        &seal::journal_name(T0 as u64 - 5),
        T0 as u64 - 5,
        &records(42, 400),
    );
    let fillers = fill_with_pages(fs.path());
    let clock = FakeClock::new(T0 + HOUR_NS);
    let mut store = Store::open_with_clock(StoreConfig::new(&dir), Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("open the store on a full disk in {}: {e}", dir.display()));
    let mut now = T0 + HOUR_NS;
    let mut tick = |store: &mut Store, secs: i64| {
        for _ in 0..secs {
            now += 1_000_000_000;
            clock.set(now);
            store
                .tick_at(now)
                .unwrap_or_else(|e| panic!("tick the store in {}: {e}", dir.display()));
        }
    };
    // A barrier (`wait_idle`) tries the queue itself, once: a stop's or a tool's.
    assert!(!store.wait_idle(), "the disk is full");
    let first = store.sealer.tries();
    assert!(first >= 1, "the open's seal was tried");
    tick(&mut store, 20);
    assert!(!store.wait_idle(), "the disk is still full");
    assert_eq!(
        store.sealer.tries(),
        first + 1,
        "no try at the ticks while nothing was freed"
    );
    tick(&mut store, 61);
    assert!(!store.wait_idle(), "the disk is still full");
    assert_eq!(store.sealer.tries(), first + 3, "one try a minute on");
    for f in &fillers {
        std::fs::remove_file(f).unwrap_or_else(|e| panic!("free {}: {e}", f.display()));
    }
    tick(&mut store, 1);
    // The tick's try, not a barrier's: the sealer thread seals it on its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.status().unsealed > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "not sealed after space was freed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A link in the lock's place is not followed (a start as root created the file it named):
/// like any other kind of file there, it is set aside and a lock made.
#[test]
fn a_link_in_the_locks_place_is_not_followed() {
    let tmp = TempDir::new("open-lock-link");
    let dir = tmp.0.join("log");
    std::fs::create_dir_all(&dir).expect("store dir");
    let victim = tmp.0.join("victim");
    std::os::unix::fs::symlink(&victim, dir.join(LOCK_FILE)).expect("link");
    let store = open(&dir, T0);
    assert!(!victim.exists(), "nothing made where the link points");
    let lock = std::fs::symlink_metadata(dir.join(LOCK_FILE)).expect("a lock");
    assert!(lock.file_type().is_file(), "{lock:?}");
    drop(store);
}

/// A copy of a sealed journal under another name (its header names the sealed one, with the
/// same rows and time range) is not sealed again: its records would be counted twice. It is
/// moved into `quarantine/`, byte for byte.
#[test]
fn a_copy_of_a_sealed_journal_is_set_aside_not_sealed_twice() {
    let tmp = TempDir::new("journal-copy");
    let dir = tmp.0.join("log");
    let first = records(33, 40);
    let sealed_id = seal_one(&dir, &first);
    let name = seal::journal_name(sealed_id + 10);
    let copy = leave_journal(&dir, &name, sealed_id, &first);
    let bytes = std::fs::read(&copy).expect("read the copy");
    // Before any restart, a query leaves the copy out and says its answer is incomplete.
    let mut n = 0;
    let stats = query::scan(
        &dir,
        &filter::Filter::default(),
        1,
        &mut |_| {
            n += 1;
            Ok(())
        },
        &mut |_, _| {},
    )
    .expect("a query beside the copy");
    assert_eq!(
        (n, stats.journals_unreadable),
        (first.len(), 1),
        "{stats:?}"
    );
    let sql = crate::sql::tables::sources(&dir).expect("the SQL tables' sources");
    assert_eq!((sql.journals.len(), sql.damaged_journals), (0, 1));
    let mut store = open(&dir, T0 + 1_000_000_000);
    assert_eq!(store.left_at_open(), 1, "the copy is found");
    assert!(store.wait_idle(), "and set aside, not sealed");
    drop(store);
    assert_eq!(
        all_records(&dir).len(),
        first.len(),
        "no record counted twice"
    );
    assert!(!copy.exists(), "{} is set aside", copy.display());
    let aside = dir.join(journal::QUARANTINE_DIR).join(&name);
    assert_eq!(std::fs::read(&aside).ok(), Some(bytes), "kept as it was");
}

/// A file the chain does not list, at the name of the segment the next seal writes, is moved
/// into `quarantine/` (evidence of an insertion), never overwritten.
#[test]
fn a_file_at_the_next_segments_name_is_set_aside_not_overwritten() {
    let recs = records(34, 30);
    let seal_in = |dir: &Path, planted: Option<&str>| -> String {
        let mut store = open(dir, T0);
        for r in &recs {
            store.append(r);
        }
        if let Some(name) = planted {
            std::fs::write(dir.join(name), b"x\n").expect("plant a file");
        }
        assert!(store.seal_now(), "sealed");
        drop(store);
        let m = Manifest::load(dir, None).expect("load the manifest");
        let last = m.entries().iter().rev().find_map(|e| e.body.added());
        last.map(|s| s.file.clone()).expect("a sealed segment")
    };
    let (a, b) = (TempDir::new("next-seg-a"), TempDir::new("next-seg-b"));
    let name = seal_in(&a.0, None);
    assert_eq!(seal_in(&b.0, Some(&name)), name, "the same segment name");
    let aside = b.0.join(journal::QUARANTINE_DIR).join(&name);
    assert_eq!(std::fs::read(&aside).ok().as_deref(), Some(&b"x\n"[..]));
    assert_eq!(all_records(&b.0).len(), recs.len());
}

/// A leftover journal of 0 bytes (not even its header: the agent names a journal only once
/// its header is on disk, so it was emptied) is set aside into `quarantine/` as a trace,
/// never deleted unsaid.
#[test]
fn an_empty_leftover_journal_is_set_aside_as_a_trace() {
    let tmp = TempDir::new("journal-empty");
    let dir = tmp.0.join("log");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let name = seal::journal_name(12);
    std::fs::write(dir.join(&name), b"").expect("an empty journal");
    drop(open(&dir, T0));
    assert!(!dir.join(&name).exists(), "not left as a journal");
    let aside = dir.join(journal::QUARANTINE_DIR).join(&name);
    assert_eq!(
        std::fs::read(&aside).ok(),
        Some(Vec::new()),
        "kept as a trace"
    );
}

/// The status names the live journal while it holds durable records; a next start finds it
/// gone only when it is neither on disk, nor in `quarantine/`, nor sealed in the chain.
#[test]
fn a_live_journal_is_gone_only_when_neither_on_disk_nor_sealed() {
    let tmp = TempDir::new("journal-gone");
    let dir = tmp.0.join("log");
    let sealed_id = seal_one(&dir, &records(33, 20));
    assert!(!seal::journal_gone(&dir, sealed_id), "sealed in the chain");
    let mut store = open(&dir, T0 + 1_000_000_000);
    assert_eq!(store.status().live_journal, None, "nothing durable yet");
    for r in &records(34, 30) {
        store.append(r);
    }
    assert!(store.sync_now(), "sync");
    let live = store.status().live_journal.expect("a live journal");
    let (id, durable) = (live.id, live.durable);
    assert_eq!(durable, 30);
    let abs = std::path::absolute(&dir).expect("absolute");
    assert_eq!(live.dir, abs.display().to_string());
    // Killed: the journal stays as it is.
    std::mem::forget(store);
    assert!(!seal::journal_gone(&dir, id), "on disk");
    let path = dir.join(seal::journal_name(id));
    let aside = dir.join(journal::QUARANTINE_DIR);
    std::fs::create_dir_all(&aside).expect("quarantine dir");
    // Set aside under its name taken already: `NAME.1`.
    let numbered = aside.join(format!("{}.1", seal::journal_name(id)));
    std::fs::rename(&path, &numbered).expect("set aside");
    assert!(!seal::journal_gone(&dir, id), "in quarantine/");
    std::fs::remove_file(&numbered).expect("delete");
    let other = aside.join(format!("{}0.wal", seal::journal_name(id)));
    std::fs::write(other, b"another name").expect("another journal's");
    assert!(seal::journal_gone(&dir, id), "deleted while no agent ran");
}

/// The open says how many records each leftover journal held once recovered, so a start can
/// compare them with what the dead agent made durable there (a cut at a frame's end is seen
/// by no frame check).
#[test]
fn the_open_counts_the_records_of_each_journal_it_recovered() {
    let tmp = TempDir::new("journal-recovered");
    let dir = tmp.0.join("log");
    let (whole, cut) = (40, 41);
    leave_journal(&dir, &seal::journal_name(whole), whole, &records(35, 30));
    let path = leave_journal(&dir, &seal::journal_name(cut), cut, &records(36, 7));
    // Cut to its header: at its first frame's start.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_len(journal::frame::HEADER_LEN).expect("cut");
    let store = open(&dir, T0 + 1_000_000_000);
    assert_eq!(store.recovered_records(whole), Some(30), "whole");
    assert_eq!(store.recovered_records(cut), Some(0), "cut to its header");
    assert_eq!(store.recovered_records(cut + 1), None, "left by no one");
}
