use super::*;
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
