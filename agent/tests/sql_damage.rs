//! `xdp-audit sql` over a damaged store: a segment lost or swapped, a flipped page, a damaged
//! Bloom filter and an unreadable live journal are errors (or exit 3), never other rows.

mod sql_common;
mod store_common;

use sql_common::{ours, segment_files, sql, store};

/// The engine reads a missing file as no rows and a directory as the Parquet files in it:
/// `sql` checks each live segment against its manifest entry first, as `query` does.
#[test]
fn a_lost_or_swapped_segment_is_an_error_naming_it_not_other_rows() {
    let (dir, recs) = store("sql-swapped", true);
    let count = "SELECT count(*) FROM flows";
    assert_eq!(ours(dir.path(), count), [[recs.len().to_string()]]);
    let files = segment_files(dir.path());
    assert!(files.len() >= 2, "{files:?}");
    let pristine = std::fs::read(&files[0]).expect("read segment");
    let stray = dir.path().join("stray.parquet");
    for (what, damage, says) in [
        ("lost", 0, "stat"),
        (
            "a directory with a Parquet file in its place",
            1,
            "not a regular file",
        ),
        (
            "another segment in its place",
            2,
            "where the manifest records",
        ),
    ] {
        match damage {
            0 => std::fs::remove_file(&files[0]).expect("remove"),
            1 => {
                std::fs::remove_file(&files[0]).expect("remove");
                std::fs::create_dir(&files[0]).expect("mkdir");
                std::fs::copy(&files[1], files[0].join("x.parquet")).expect("copy");
            }
            _ => {
                std::fs::copy(&files[1], &files[0]).expect("copy");
            }
        }
        std::fs::copy(&files[1], &stray).expect("a stray file beside");
        let out = sql(dir.path(), count, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        let name = files[0].file_name().expect("name").to_string_lossy();
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains(name.as_ref()) && err.contains(says),
            "{what}: {err}"
        );
        if files[0].is_dir() {
            std::fs::remove_dir_all(&files[0]).expect("rm -r");
        }
        std::fs::write(&files[0], &pristine).expect("restore");
        assert_eq!(
            ours(dir.path(), count),
            [[recs.len().to_string()]],
            "{what}: restored, and the stray file beside is not read"
        );
    }
}

/// The engine's Parquet reader checks no page checksums (ours are in the segment's page
/// table): without the check, some flipped bytes decode to other values and `sql` answered
/// them. Every page of a segment, damaged in turn, is an error naming the file and its bytes.
#[test]
fn a_damaged_page_is_an_error_naming_the_file_and_bytes_not_other_values() {
    let (dir, recs) = store("sql-flipped", true);
    let all = "SELECT * FROM flows_raw";
    assert_eq!(ours(dir.path(), all).len(), recs.len());
    let file = segment_files(dir.path()).remove(0);
    let name = file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let ranges = xdp_audit::store::segment::SegmentReader::open(&file)
        .expect("open the segment")
        .checked_ranges()
        .expect("its checked ranges");
    let pristine = std::fs::read(&file).expect("read segment");
    // Every page would take a run each; a spread of them covers each kind (dictionary and
    // data pages of every column type).
    let reader = xdp_audit::store::segment::SegmentReader::open(&file).expect("open");
    let blooms: Vec<(u64, u64, u32)> = (0..reader.row_groups())
        .flat_map(|g| (0..64).map(move |c| (g, c)))
        .filter_map(|(g, c)| reader.bloom_range(g, c).expect("bloom range"))
        .collect();
    // Without a filter on an identity column the engine reads no Bloom filter (the test
    // above damages those).
    let ranges: Vec<_> = ranges.into_iter().filter(|r| !blooms.contains(r)).collect();
    let step = ranges.len().div_ceil(24);
    for &(at, len, _) in ranges.iter().step_by(step) {
        let mut bad = pristine.clone();
        let i = (at + len / 2) as usize;
        bad[i] ^= 0x10;
        std::fs::write(&file, &bad).expect("damage");
        let out = sql(dir.path(), all, &["--format", "csv"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "byte {i} flipped: {err}");
        assert!(
            err.contains(&name)
                && err.contains(&format!(
                    "checksum mismatch in the page at bytes {at}..{}",
                    at + len
                )),
            "byte {i} flipped: {err}"
        );
    }
    std::fs::write(&file, &pristine).expect("restore");
    assert_eq!(ours(dir.path(), all).len(), recs.len());
}

/// The engine prunes row groups by the identity columns' Bloom filters, which no page CRC
/// covers: a damaged filter said "absent" and `sql` answered short with exit 0. Their reads
/// are checked against the CRCs the segment records for them, as `query`'s are.
#[test]
fn a_damaged_bloom_filter_is_an_error_not_a_short_answer() {
    let (dir, recs) = store("sql-bloom", true);
    let user = recs
        .iter()
        .find_map(|r| r.attr.user.clone())
        .expect("an attributed record");
    let q = format!("SELECT count(*) FROM flows_raw WHERE \"user\" = '{user}'");
    let want = recs
        .iter()
        .filter(|r| r.attr.user.as_ref() == Some(&user))
        .count();
    assert_eq!(ours(dir.path(), &q), vec![vec![want.to_string()]]);
    let mut damaged = 0;
    for file in segment_files(dir.path()) {
        let reader = xdp_audit::store::segment::SegmentReader::open(&file).expect("open");
        let mut bytes = std::fs::read(&file).expect("read segment");
        for g in 0..reader.row_groups() {
            for c in 0..64 {
                // Past its header (a few bytes), the filter's bits cleared: "absent" for all.
                if let Some((at, len, _)) = reader.bloom_range(g, c).expect("bloom range") {
                    bytes[(at + 32) as usize..(at + len) as usize].fill(0);
                    damaged += 1;
                }
            }
        }
        std::fs::write(&file, &bytes).expect("damage");
    }
    assert!(damaged > 0, "the segments hold Bloom filters");
    let out = sql(dir.path(), &q, &["--format", "csv"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "answered {} with damaged filters: {err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("checksum mismatch"), "{err}");
}

/// A live journal that cannot be read (one the agent leaves in place) withholds only its own
/// records: the answer comes from the rest, with exit 3 as `query`'s, not an abort.
#[test]
fn an_unreadable_live_journal_gives_the_rest_with_exit_3() {
    let (dir, recs) = store("sql-unreadable-journal", false);
    let bad = dir
        .path()
        .join(xdp_audit::store::seal::journal_name(u64::from(u32::MAX)));
    std::fs::create_dir(&bad).expect("a directory in a journal's place");
    let out = sql(
        dir.path(),
        "SELECT count(*) FROM flows_raw",
        &["--format", "csv"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().nth(1),
        Some(recs.len().to_string().as_str()),
        "{text}"
    );
    assert!(
        err.contains("INCOMPLETE") && err.contains(&*bad.to_string_lossy()),
        "{err}"
    );
}
