use super::*;
use crate::store::journal::frame::header;
use crate::store::testgen::TrafficGen;

/// A fresh directory, removed when the guard is dropped (also when the test fails), and its
/// path.
fn tmpdir(name: &str) -> (crate::blocklist::tests::TempDir, PathBuf) {
    let guard = crate::blocklist::tests::TempDir::new(name);
    let d = guard.0.clone();
    (guard, d)
}

/// Writes `recs` through the writer; returns the file's bytes and each frame's offset.
fn write(path: &Path, recs: &[FlowRecord]) -> (Vec<u8>, Vec<usize>) {
    let mut w = JournalWriter::create(path, 42).expect("create journal");
    let mut starts = Vec::new();
    let mut at = HEADER_LEN as usize;
    for r in recs {
        starts.push(at);
        w.append(r);
        at = w.size() as usize;
    }
    w.sync().expect("sync journal");
    (std::fs::read(path).expect("read journal"), starts)
}

fn quarantined(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join(QUARANTINE_DIR))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, std::fs::read(e.path()).expect("read quarantine"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_torn_last_record_at_every_byte_offset_is_cut_and_kept_aside() {
    let (_tmp, dir) = tmpdir("torn");
    let path = dir.join("journal-00000000000000000042.wal");
    let mut g = TrafficGen::new(1, 1_700_000_000_000_000_000);
    let records: Vec<_> = (0..5).map(|_| g.next_record()).collect();
    let (full, starts) = write(&path, &records);
    let last_start = starts[4];
    // Every cut strictly inside the last frame (a cut at its first byte is no torn write).
    for cut in last_start + 1..full.len() {
        let _ = std::fs::remove_dir_all(dir.join(QUARANTINE_DIR));
        std::fs::write(&path, &full[..cut]).expect("write torn journal");
        let r = recover(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(r.records, 4, "cut at {cut}");
        assert_eq!(r.skipped_bytes, (cut - last_start) as u64, "cut at {cut}");
        assert_eq!(r.quarantined, [quarantine_path(&path, last_start as u64)]);
        let len = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(len, last_start as u64, "cut at {cut}: tail not cut");
        assert_eq!(
            quarantined(&dir),
            [(
                format!("journal-00000000000000000042-{last_start:012}.bin"),
                full[last_start..cut].to_vec()
            )],
            "cut at {cut}"
        );
        let again = read(&path).expect("reread");
        assert_eq!(again.records, records[..4], "cut at {cut}: wrong prefix");
        assert!(again.frames.skipped.is_empty(), "cut at {cut}");
    }
}

#[test]
fn damage_in_the_middle_is_quarantined_and_the_journal_rewritten() {
    let (_tmp, dir) = tmpdir("midrecover");
    let path = dir.join("journal-00000000000000000042.wal");
    let mut g = TrafficGen::new(2, 1_700_000_000_000_000_000);
    let records: Vec<_> = (0..50).map(|_| g.next_record()).collect();
    let (full, starts) = write(&path, &records);
    let mut bad = full.clone();
    bad[starts[10] + 12] ^= 0x08; // one frame
    bad[starts[30] + 3..starts[33] + 1].fill(0); // three frames and a byte of a fourth
    bad.truncate(starts[49] + 5); // and a torn tail
    std::fs::write(&path, &bad).expect("write damaged journal");
    // An interrupted earlier recovery left the first quarantine file, and another recovery
    // of an older journal of the same name left different bytes at the second one's name.
    let qdir = dir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&qdir).expect("quarantine dir");
    std::fs::write(
        quarantine_path(&path, starts[10] as u64),
        &bad[starts[10]..starts[11]],
    )
    .expect("first");
    std::fs::write(quarantine_path(&path, starts[30] as u64), b"other").expect("second");

    let r = recover(&path).expect("recover");
    let kept: Vec<FlowRecord> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| ![10, 30, 31, 32, 33, 49].contains(i))
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(r.records, kept.len() as u64);
    let spans = [
        (starts[10], starts[11]),
        (starts[30], starts[34]),
        (starts[49], bad.len()),
    ];
    let skipped: usize = spans.iter().map(|(a, b)| b - a).sum();
    assert_eq!(r.skipped_bytes, skipped as u64);
    let second = quarantine_path(&path, starts[30] as u64).with_extension("bin.1");
    assert_eq!(
        r.quarantined,
        [
            quarantine_path(&path, starts[10] as u64),
            second.clone(),
            quarantine_path(&path, starts[49] as u64),
        ]
    );
    for (file, (a, b)) in r.quarantined.iter().zip(spans) {
        assert_eq!(
            std::fs::read(file).expect("quarantine"),
            bad[a..b],
            "{}",
            file.display()
        );
    }
    assert_eq!(quarantined(&dir).len(), 4, "the older file is kept");
    // The journal now holds the valid frames only, byte for byte.
    let mut want = header(42).to_vec();
    for (i, w) in starts.windows(2).enumerate() {
        if !(10..=10).contains(&i) && !(30..=33).contains(&i) {
            want.extend_from_slice(&full[w[0]..w[1]]);
        }
    }
    let rewritten = std::fs::read(&path).expect("read rewritten");
    assert!(rewritten == want, "rewritten journal differs");
    let again = read(&path).expect("reread");
    assert!(again.records == kept && again.frames.skipped.is_empty());
    // Recovering again changes nothing.
    assert_eq!(recover(&path).expect("again").skipped_bytes, 0);
    assert_eq!(quarantined(&dir).len(), 4);
}

/// Only the names the writer makes (`journal-` and 20 digits) are journals: `journal-2.wal`
/// would otherwise be the same journal as `journal-00000000000000000002.wal`.
#[test]
fn a_journal_name_is_twenty_digits() {
    assert_eq!(journal_id_of(&journal_name(2)), Some(2));
    assert_eq!(journal_id_of(&journal_name(u64::MAX)), Some(u64::MAX));
    for name in [
        "journal-2.wal",
        "journal-+0000000000000000002.wal",
        "journal-000000000000000000002.wal",
        "journal-99999999999999999999.wal",
        "journal-0000000000000000000x.wal",
        "journal-00000000000000000002.wal.tmp",
    ] {
        assert_eq!(journal_id_of(name), None, "{name}");
    }
}

/// A record whose texts make its payload longer than a frame may hold (a rule `FILE:LINE`
/// with a 5,000-byte path) is written shortened, keeping the ends of its texts, and read
/// back like any other: before, it was written whole and every reader took its frame for
/// damage.
#[test]
fn a_record_too_long_for_a_frame_is_written_shortened_not_lost() {
    let (_tmp, dir) = tmpdir("long-rule");
    let path = dir.join(journal_name(42));
    let mut g = TrafficGen::new(8, 1_700_000_000_000_000_000);
    let mut records: Vec<_> = (0..3).map(|_| g.next_record()).collect();
    let rule = format!("/etc/xdp-audit/{}block.list:12", "lists/".repeat(834));
    assert!(rule.len() > 5_000);
    records[1].dropped = 2;
    records[1].rule = Some(rule.clone());
    records[1].attr.domain = Some("é".repeat(3_000)); // two bytes a character
    write(&path, &records);
    let got = read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(got.frames.skipped.is_empty(), "{:?}", got.frames.skipped);
    assert_eq!(got.records.len(), 3, "every record is read back");
    assert_eq!(got.records[0], records[0]);
    assert_eq!(got.records[2], records[2]);
    let back = &got.records[1];
    let short = back.rule.as_deref().expect("a rule");
    assert!(
        short.starts_with('…') && short.ends_with("/block.list:12") && short.len() < rule.len(),
        "{short}"
    );
    assert!(
        rule.ends_with(&short['…'.len_utf8()..]),
        "the rule keeps its end"
    );
    let mut payload = Vec::new();
    crate::store::journal::encode_record(back, &mut payload);
    assert!(
        payload.len() <= crate::store::journal::MAX_PAYLOAD,
        "{}",
        payload.len()
    );
    let mut same = back.clone();
    same.rule = records[1].rule.clone();
    same.attr.domain = records[1].attr.domain.clone();
    assert_eq!(same, records[1], "nothing but the texts changed");
}

/// A failed fsync may have cost the pages it was writing (the kernel reports the error once
/// and a later fsync succeeds): the frames written since the last good fsync are written
/// again where they are before the next fsync, and count as durable only after it. The file
/// keeps them meanwhile: a kill then loses nothing the file held.
#[test]
fn frames_a_failed_fsync_may_have_lost_are_written_again() {
    let (_g, dir) = tmpdir("fsync-fail");
    let path = dir.join(journal_name(42));
    let mut g = TrafficGen::new(3, 1_700_000_000_000_000_000);
    let recs: Vec<FlowRecord> = (0..20).map(|_| g.next_record()).collect();
    let mut w = JournalWriter::create(&path, 42).expect("create journal");
    for r in &recs[..10] {
        w.append(r);
    }
    w.sync().expect("the first fsync");
    let durable_len = std::fs::metadata(&path).expect("stat").len();
    for r in &recs[10..] {
        w.append(r);
    }
    w.flush().expect("write");
    let written_len = std::fs::metadata(&path).expect("stat").len();
    w.fail_next_sync = true;
    assert!(w.sync().is_err(), "the fsync fails");
    assert_eq!(
        w.synced_records(),
        10,
        "nothing after the failure is durable"
    );
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        written_len,
        "the file keeps the records for a kill"
    );
    w.sync().expect("the next fsync");
    assert_eq!(
        w.rewritten as u64,
        written_len - durable_len,
        "the ten frames were written again before it"
    );
    assert_eq!(w.synced_records(), 20);
    let back = read(&path).expect("read the journal back");
    assert_eq!(back.records, recs, "every record once, in order");
}

/// The quarantine directory is made, or taken if it is one; a symbolic link (to a directory
/// elsewhere) or a file in its place is refused, naming what it is, and nothing is written
/// through it. A journal that is a symbolic link is not read through it.
#[test]
fn quarantine_and_journals_are_never_reached_through_a_link() {
    let tmp = crate::blocklist::tests::TempDir::new("quarantine-link");
    let elsewhere = crate::blocklist::tests::TempDir::new("quarantine-elsewhere");
    let qdir = tmp.0.join(QUARANTINE_DIR);
    make_quarantine_dir(&qdir).expect("made");
    make_quarantine_dir(&qdir).expect("taken as it is");
    std::fs::remove_dir(&qdir).expect("rmdir");
    std::os::unix::fs::symlink(&elsewhere.0, &qdir).expect("symlink");
    let e = make_quarantine_dir(&qdir).expect_err("a link is refused");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    std::fs::remove_file(&qdir).expect("rm");
    std::fs::write(&qdir, b"").expect("a file in its place");
    let e = make_quarantine_dir(&qdir).expect_err("a file is refused");
    assert!(e.to_string().contains("regular file"), "{e}");

    let target = elsewhere.0.join(journal_name(7));
    let (_, _) = write(&target, &[]);
    let link = tmp.0.join(journal_name(7));
    std::os::unix::fs::symlink(&target, &link).expect("symlink a journal");
    let e = read_file(&link).expect_err("a linked journal is refused");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(read_file(&target).is_ok(), "the journal itself reads");
    assert_eq!(
        std::fs::read_dir(&elsewhere.0).map(|d| d.count()).ok(),
        Some(1)
    );
}

/// A header kept for a seal that is then retried (a full disk) is kept once: the second try
/// finds it and says so, so the set-aside count and its warning are not repeated.
#[test]
fn a_header_is_kept_once_however_often_its_seal_is_tried() {
    let (_tmp, dir) = tmpdir("header-kept");
    let path = dir.join(journal_name(42));
    let header = super::frame::header(41);
    let kept = quarantine_header(&path, &header)
        .expect("keep the header")
        .expect("kept the first time");
    assert_eq!(std::fs::read(&kept).expect("read"), header);
    assert_eq!(
        quarantine_header(&path, &header).expect("keep it again"),
        None,
        "kept already"
    );
    let other = super::frame::header(40);
    let second = quarantine_header(&path, &other)
        .expect("keep another header")
        .expect("other bytes are kept");
    assert_ne!(second, kept, "under the next name");
}
