//! A damaged journal keeps every valid record. A journal left with damage (one bad byte in
//! the middle of 10,000 records, the header's magic, the first frame, a length field, the last complete frame,
//! runs of zeros, a whole 4 KiB page zeroed, a torn tail on top) is recovered when the store
//! opens and sealed by its sealer thread: exactly the frames the damage touched are lost, every other record is sealed, each
//! skipped stretch is in a quarantine file holding exactly its bytes, the status counts them,
//! and the chain verifies. The sealer, handed a journal damaged after it was written, does the
//! same with the same scanner.

mod store_common;

use std::path::{Path, PathBuf};

use store_common::{canon, config, TempDir, T0};
use xdp_audit::record::FlowRecord;
use xdp_audit::store::journal::{quarantine_path, FRAME_HEADER_LEN, QUARANTINE_DIR};
use xdp_audit::store::manifest::Manifest;
use xdp_audit::store::query::{collect, Filter};
use xdp_audit::store::seal::{journal_name, seal_journal};
use xdp_audit::store::testgen::{intact_frames, journal_bytes, TrafficGen};
use xdp_audit::store::verify::verify;
use xdp_audit::store::{FakeClock, Store};

const JOURNAL_ID: u64 = 1_700_000_000_000_000_777;

fn records(n: usize) -> Vec<FlowRecord> {
    let mut g = TrafficGen::with_rate(31, T0, 50.0);
    (0..n).map(|_| g.next_record()).collect()
}

/// The files in the quarantine directory of `dir`, sorted, with their bytes.
fn quarantined(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir.join(QUARANTINE_DIR))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| (e.path(), std::fs::read(e.path()).expect("read quarantine")))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Leaves `bad` (made from the journal `good` of `recs`) as a journal in a fresh store
/// directory, opens the store (whose sealer thread seals it), and checks the outcome against
/// the plain computation of which frames are intact.
fn recover_and_check(what: &str, recs: &[FlowRecord], good: &[u8], bad: &[u8], starts: &[usize]) {
    let dir = TempDir::new("damage");
    let journal = dir.path().join(journal_name(JOURNAL_ID));
    std::fs::write(&journal, bad).expect("write journal");
    let (kept, stretches) = intact_frames(good, bad, starts);
    assert!(
        !stretches.is_empty(),
        "{what}: the damage must skip something"
    );

    let clock = FakeClock::new(T0 + 3_600_000_000_000);
    let mut store = Store::open_with_clock(config(dir.path()), Box::new(clock))
        .unwrap_or_else(|e| panic!("{what}: open store: {e}"));
    assert!(store.wait_idle(), "{what}: the sealer thread seals it");
    let status = store.status();
    drop(store);

    let skipped: u64 = stretches.iter().map(|s| s.1).sum();
    assert_eq!(
        status.journal_skipped_bytes, skipped,
        "{what}: bytes counted"
    );
    assert!(
        status.journal_skipped_frames >= (recs.len() - kept.len()).min(1) as u64,
        "{what}: frames counted {status:?}"
    );
    let want: Vec<FlowRecord> = kept.iter().map(|&i| recs[i].clone()).collect();
    let got = collect(dir.path(), &Filter::default()).expect("query");
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: records recovered and sealed"
    );
    assert!(
        canon(got) == canon(want.clone()),
        "{what}: other records survived"
    );
    assert!(
        !journal.exists(),
        "{what}: the journal was sealed and deleted"
    );

    let want_files: Vec<(PathBuf, Vec<u8>)> = stretches
        .iter()
        .map(|&(at, len)| {
            let bytes = bad[at as usize..(at + len) as usize].to_vec();
            (quarantine_path(&journal, at), bytes)
        })
        .collect();
    assert!(
        quarantined(dir.path()) == want_files,
        "{what}: the quarantine must hold exactly the skipped bytes, one file per stretch"
    );
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("{what}: verify: {b}"));
    assert_eq!(v.rows, want.len() as u64, "{what}");
}

#[test]
fn one_bad_byte_in_the_middle_of_10000_records_loses_only_its_record() {
    let recs = records(10_000);
    let (good, starts) = journal_bytes(JOURNAL_ID, &recs);
    let mut bad = good.clone();
    let hit = 5_000;
    bad[starts[hit] + FRAME_HEADER_LEN + 9] ^= 0x20;
    let (kept, _) = intact_frames(&good, &bad, &starts);
    assert_eq!(kept.len(), 9_999, "the byte hits one frame");
    recover_and_check("one bad byte in the middle", &recs, &good, &bad, &starts);
}

/// A crashed agent's journal, its last frame torn, is recovered by the open before the new
/// journal follows it: `verify` right after the open passes whether or not the sealer thread
/// has sealed it yet (a torn tail in a journal a later one follows is the file cut short),
/// and once sealed every intact record is in the chain.
#[test]
fn a_crashed_agents_torn_journal_verifies_while_the_sealer_thread_seals_it() {
    let recs = records(100_000);
    let (good, starts) = journal_bytes(JOURNAL_ID, &recs);
    let bad = good[..good.len() - 5].to_vec();
    let (kept, _) = intact_frames(&good, &bad, &starts);
    assert_eq!(kept.len(), recs.len() - 1, "the tear cuts the last frame");
    let dir = TempDir::new("torn-left");
    std::fs::write(dir.path().join(journal_name(JOURNAL_ID)), &bad).expect("write journal");
    let clock = FakeClock::new(T0 + 3_600_000_000_000);
    let mut store = Store::open_with_clock(config(dir.path()), Box::new(clock))
        .unwrap_or_else(|e| panic!("open store: {e}"));
    verify(dir.path(), None).unwrap_or_else(|b| panic!("verify right after the open: {b}"));
    assert!(store.wait_idle(), "the sealer thread seals it");
    drop(store);
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("verify once sealed: {b}"));
    assert_eq!(v.rows, kept.len() as u64);
}

/// A way of damaging journal bytes.
type Damage<'a> = dyn Fn(&mut Vec<u8>) + 'a;

#[test]
fn damage_at_every_kind_of_position_loses_only_the_frames_it_touched() {
    let recs = records(2_000);
    let (good, starts) = journal_bytes(JOURNAL_ID, &recs);
    let n = starts.len();
    let page = 4096 * (good.len() / 4096 / 2);
    let cases: [(&str, &Damage<'_>); 11] = [
        // The header's magic: before, the store refused to open over such a journal.
        ("the header's magic zeroed", &|b| b[..8].fill(0)),
        ("the header and the first frame", &|b| {
            b[3] ^= 0x20;
            b[starts[0] + FRAME_HEADER_LEN + 4] ^= 0x01;
        }),
        ("nothing but a damaged header and a torn frame", &|b| {
            b.truncate(starts[0] + 30);
            b[..16].fill(0xee);
        }),
        ("first frame", &|b| {
            b[starts[0] + FRAME_HEADER_LEN + 1] ^= 0x01
        }),
        ("a length field", &|b| b[starts[700]] ^= 0x10),
        ("a length field out of range", &|b| {
            b[starts[701] + 2] = 0xff
        }),
        ("last complete frame", &|b| b[starts[n - 1] + 30] ^= 0x80),
        ("a run of zeros", &|b| {
            b[starts[300] + 20..starts[303] + 5].fill(0)
        }),
        ("a whole 4 KiB page zeroed", &|b| {
            b[page..page + 4096].fill(0)
        }),
        ("a torn tail after damage in the middle", &|b| {
            b[starts[900] + 12] ^= 0x02;
            b.truncate(starts[n - 1] + 20);
        }),
        ("three damaged stretches", &|b| {
            b[starts[10] + 9] ^= 0x40;
            b[starts[1000]..starts[1001] + 3].fill(0xff);
            b[starts[1500] + 4] ^= 0x01;
        }),
    ];
    for (what, damage) in cases {
        let mut bad = good.clone();
        damage(&mut bad);
        recover_and_check(what, &recs, &good, &bad, &starts);
    }
}

/// The sealer reads journals through the same scanner: a journal damaged after the writer
/// closed it is sealed without its damaged frames, which go to quarantine before the journal
/// is deleted.
#[test]
fn the_sealer_skips_and_quarantines_damage_with_the_same_scanner() {
    let recs = records(3_000);
    let (good, starts) = journal_bytes(JOURNAL_ID, &recs);
    let mut bad = good.clone();
    bad[starts[1234] + 17] ^= 0x08;
    bad[starts[2000] - 100..starts[2000] + 100].fill(0);
    let (kept, stretches) = intact_frames(&good, &bad, &starts);
    let dir = TempDir::new("damage-seal");
    let journal = dir.path().join(journal_name(JOURNAL_ID));
    std::fs::write(&journal, &bad).expect("write journal");
    let mut manifest = Manifest::load(dir.path(), None).expect("manifest");
    let sealed = seal_journal(dir.path(), &journal, &mut manifest).expect("seal");
    let segment = sealed.segment.expect("a segment");
    assert_eq!(segment.rows, kept.len() as u64);
    assert_eq!(
        sealed.skipped_bytes,
        stretches.iter().map(|s| s.1).sum::<u64>()
    );
    assert_eq!(quarantined(dir.path()).len(), stretches.len());
    for (at, len) in stretches {
        let q = std::fs::read(quarantine_path(&journal, at)).expect("quarantine file");
        assert_eq!(q, bad[at as usize..(at + len) as usize]);
    }
    let want: Vec<FlowRecord> = kept.iter().map(|&i| recs[i].clone()).collect();
    let got = collect(dir.path(), &Filter::default()).expect("query");
    assert!(canon(got) == canon(want), "sealed records differ");
    verify(dir.path(), None).unwrap_or_else(|b| panic!("verify: {b}"));
}

/// `verify` reads the live journals too: before, it said "ok" over a journal that was not one
/// or held damage whose records the chain would never get. A torn tail (an append the agent
/// is making, or a crash cut short) is not damage.
#[test]
fn verify_names_a_damaged_live_journal_and_passes_a_torn_tail() {
    let recs = records(1_000);
    let (good, starts) = journal_bytes(JOURNAL_ID, &recs);
    let dir = TempDir::new("verify-journal");
    let journal = dir.path().join(journal_name(JOURNAL_ID));
    let write = |bytes: &[u8]| std::fs::write(&journal, bytes).expect("write journal");

    write(&good);
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("intact: {b}"));
    assert_eq!((v.journals, v.journal_records), (1, 1_000), "{v:?}");

    // Torn: the last frame cut short.
    write(&good[..good.len() - 3]);
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("torn tail: {b}"));
    assert_eq!((v.journals, v.journal_records), (1, 999), "{v:?}");

    let mut bad = good.clone();
    bad[starts[500] + FRAME_HEADER_LEN + 9] ^= 0x20;
    let mut garbage = good.clone();
    garbage[..8].fill(0xee);
    // A bit of the header's id flipped (its magic intact): it passed.
    let mut other_id = good.clone();
    other_id[8] ^= 0x01;
    for (what, bytes, says) in [
        ("a bad byte in the middle", bad, "damaged at bytes"),
        ("garbage", garbage, "the journal header is damaged"),
        (
            "another id in the header",
            other_id,
            "its header names journal id",
        ),
    ] {
        write(&bytes);
        let b = verify(dir.path(), None).expect_err(what);
        assert!(b.file == journal && b.reason.contains(says), "{what}: {b}");
    }
    std::fs::remove_file(&journal).expect("rm");
    std::fs::create_dir(&journal).expect("a directory in its place");
    let b = verify(dir.path(), None).expect_err("a directory");
    assert_eq!(b.file, journal, "{b}");
}

/// A leftover journal the agent cannot read (a directory in its place: unreadable even to
/// root) does not keep the store from opening: the journal after it is sealed, the
/// unreadable one stays where it was, and the status counts it.
#[test]
fn an_unreadable_leftover_journal_is_left_and_the_next_one_sealed() {
    let dir = TempDir::new("unreadable");
    let bad = dir.path().join(journal_name(JOURNAL_ID));
    std::fs::create_dir(&bad).expect("a directory in the first journal's place");
    let recs = records(200);
    let (good, _) = journal_bytes(JOURNAL_ID + 1, &recs);
    let good_path = dir.path().join(journal_name(JOURNAL_ID + 1));
    std::fs::write(&good_path, &good).expect("write the second journal");

    let clock = FakeClock::new(T0 + 3_600_000_000_000);
    let mut store = Store::open_with_clock(config(dir.path()), Box::new(clock))
        .unwrap_or_else(|e| panic!("the store opens past an unreadable journal: {e}"));
    // A directory is no crash's journal: no evidence of one for XA-AGENT-CRASHED.
    assert_eq!(store.left_at_open(), 1, "only the journal with records");
    assert!(!store.wait_idle(), "the unreadable journal stays unsealed");
    let status = store.status();
    drop(store);

    assert_eq!(
        status.unsealable, 1,
        "the unreadable journal is counted: {status:?}"
    );
    assert!(bad.is_dir(), "the unreadable journal is left in place");
    assert!(
        !good_path.exists(),
        "the second journal was sealed and deleted"
    );
    // A query reads the live journals too: it answers from the segment the second journal
    // became, and counts the unreadable one (which it names in a warning).
    let mut got = Vec::new();
    let stats = xdp_audit::store::query::scan(
        dir.path(),
        &Filter::default(),
        1,
        &mut |r| {
            got.push(r.clone());
            Ok(())
        },
        &mut |_, _| {},
    )
    .expect("a query past an unreadable journal");
    assert_eq!(stats.journals_unreadable, 1, "{stats:?}");
    assert!(
        canon(got) == canon(recs),
        "the second journal's records are in the store"
    );
}

/// A journal grown sparse (`truncate -s 3G`) is damage read for none of its gigabytes:
/// `verify` names it at once, the store opens past it (left in place, counted), and a query
/// answers from the rest and counts it unreadable. It was read whole into memory (3.2 GB,
/// and a 15 GiB one within the journal cap would have run the host out of it).
#[test]
fn a_sparse_journal_is_named_never_read_whole() {
    let dir = TempDir::new("sparse-journal");
    let recs = records(200);
    let (good, _) = journal_bytes(JOURNAL_ID, &recs);
    let sparse = dir.path().join(journal_name(JOURNAL_ID));
    std::fs::write(&sparse, &good).expect("write the journal");
    std::fs::File::options()
        .write(true)
        .open(&sparse)
        .and_then(|f| f.set_len(3 << 30))
        .expect("grow it sparse to 3 GiB");
    let b = verify(dir.path(), None).expect_err("a sparse journal is damage");
    assert!(b.file == sparse && b.reason.contains("has a hole"), "{b}");

    let clock = FakeClock::new(T0 + 3_600_000_000_000);
    let mut store = Store::open_with_clock(config(dir.path()), Box::new(clock))
        .unwrap_or_else(|e| panic!("the store opens past a sparse journal: {e}"));
    assert!(!store.wait_idle(), "the sparse journal stays unsealed");
    assert_eq!(store.status().unsealable, 1, "counted");
    drop(store);
    assert_eq!(
        std::fs::metadata(&sparse).map(|m| m.len()).ok(),
        Some(3 << 30),
        "left in place as it is"
    );
    let stats = xdp_audit::store::query::scan(
        dir.path(),
        &Filter::default(),
        1,
        &mut |_| Ok(()),
        &mut |_, _| {},
    )
    .expect("a query past a sparse journal");
    assert_eq!(stats.journals_unreadable, 1, "{stats:?}");
}
