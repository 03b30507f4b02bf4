//! Compaction: closed days' hourly segments merged into one segment each, recorded in the
//! chain. Every query answers the same before and after, `verify` passes, retention prunes
//! merged days, a crash at any step is completed or undone at the next start, and a changed
//! input or a forged entry is caught.

#[path = "store_common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use common::*;
use xdp_audit::record::{rfc3339_s, FlowRecord};
use xdp_audit::store::compact::{self, CompactError, DEFAULT_MAX_ROWS};
use xdp_audit::store::manifest::{self, entry_hash, Body, Manifest, GENESIS};
use xdp_audit::store::query::{collect, Cidr, Filter};
use xdp_audit::store::verify::verify;
use xdp_audit::store::{FakeClock, Store, StoreConfig};

/// 54 hours from T0 (22:13 UTC): parts of four UTC days, sealed hourly, not compacted.
fn hourly_store(name: &str) -> (TempDir, Vec<FlowRecord>) {
    let dir = TempDir::new(name);
    let clock = FakeClock::new(T0);
    let recs = fill(dir.path(), &clock, T0, 54, 0.2, 11, true);
    (dir, recs)
}

/// Queries whose answers must not change: everything, one client, one remote host, a
/// prefix, a port, a protocol, a MAC, and a window across a day boundary.
fn filters(recs: &[FlowRecord]) -> Vec<Filter> {
    let client = recs[0].src_ip;
    let remote = recs[7].dst_ip;
    let midnight = (T0 / DAY + 1) * DAY;
    let host = |ip: IpAddr| Filter {
        cidr: Some(Cidr::host(ip)),
        ..Filter::default()
    };
    vec![
        Filter::default(),
        host(client),
        host(remote),
        Filter {
            cidr: Some("10.0.0.16/28".parse().expect("cidr")),
            ..Filter::default()
        },
        Filter {
            port: Some(53),
            ..Filter::default()
        },
        Filter {
            proto: Some(1),
            ..Filter::default()
        },
        Filter {
            mac: Some(recs[3].src_mac),
            ..Filter::default()
        },
        Filter {
            since_ns: Some(midnight - 2 * HOUR),
            until_ns: Some(midnight + 3 * HOUR),
            ..host(client)
        },
    ]
}

fn answers(dir: &Path, filters: &[Filter]) -> Vec<Vec<FlowRecord>> {
    filters
        .iter()
        .map(|f| canon(collect(dir, f).unwrap_or_else(|e| panic!("query {f:?}: {e}"))))
        .collect()
}

fn segment_files(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("seg-"))
        .collect()
}

fn with_compaction(dir: &Path) -> StoreConfig {
    let mut cfg = config(dir);
    cfg.compact_max_rows = DEFAULT_MAX_ROWS;
    cfg
}

fn load(dir: &Path) -> Manifest {
    Manifest::load(dir, None).expect("manifest")
}

#[test]
fn the_agent_merges_closed_days_and_every_query_answers_the_same() {
    let (dir, recs) = hourly_store("compact");
    let fs = filters(&recs);
    let before = answers(dir.path(), &fs);
    assert!(
        before.iter().all(|a| !a.is_empty()),
        "every filter should match something: {:?}",
        before.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let v0 = verify(dir.path(), None).expect("verify before");
    assert_eq!(v0.rows, recs.len() as u64);
    assert_eq!(v0.segments, 55, "{v0:?}"); // 54 hours from 22:13 touch 55 clock hours

    // The day of the last records is still open: only the three before it are merged.
    let clock = FakeClock::new(T0 + 54 * HOUR);
    let mut store =
        Store::open_with_clock(with_compaction(dir.path()), Box::new(clock.clone())).expect("open");
    assert!(store.wait_idle());
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("after compaction: {b}"));
    // Day 1: 22:00, 23:00; days 2 and 3: 24 hours each; day 4 (open): 5 hours.
    assert_eq!(v.compacted, 2 + 24 + 24, "{v:?}");
    assert_eq!(v.segments, 3 + 5, "{v:?}");
    assert_eq!(
        store.status().compacted,
        50,
        "status counts the merged segments"
    );
    assert_eq!(v.rows, v0.rows);
    assert_eq!(
        answers(dir.path(), &fs),
        before,
        "an answer changed after compaction"
    );
    // The merged inputs stay until the next pass (a query that read the chain before the
    // merge can still open them); the next start deletes them.
    assert_eq!(segment_files(dir.path()).len(), 8 + 50);
    drop(store);
    clock.advance(DAY);
    let mut store = Store::open_with_clock(with_compaction(dir.path()), Box::new(clock.clone()))
        .expect("reopen");
    assert!(store.wait_idle());
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("after the next pass: {b}"));
    assert_eq!(v.segments, 4, "the fourth day is closed now: {v:?}");
    assert_eq!(v.compacted, 55, "{v:?}");
    assert_eq!(answers(dir.path(), &fs), before);
    assert_eq!(segment_files(dir.path()).len(), 4 + 5); // day 4's inputs wait for a pass
    drop(store);
    duckdb_reads_the_merged_days(dir.path(), &recs);

    // Retention prunes merged days like hourly ones, and the chain still verifies.
    let clock = FakeClock::new(T0 + 185 * DAY);
    let mut store = Store::open_with_clock(with_compaction(dir.path()), Box::new(clock))
        .expect("open for retention");
    assert!(store.wait_idle());
    drop(store);
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("after retention: {b}"));
    assert_eq!((v.segments, v.pruned), (0, 4), "{v:?}");
    assert!(segment_files(dir.path()).is_empty());
    assert!(collect(dir.path(), &Filter::default())
        .expect("query")
        .is_empty());
}

#[test]
fn a_crash_at_any_step_of_a_merge_is_completed_or_undone_at_the_next_start() {
    let (hourly, recs) = hourly_store("compact-crash");
    let fs = filters(&recs);
    let before = answers(hourly.path(), &fs);
    let now = T0 + 5 * DAY;
    let next = manifest::read_entries(hourly.path())
        .expect("entries")
        .len() as u64;

    // Run to the end on a copy: the merged segments, and their inputs still on disk (the
    // state of a crash after the entries, before the deletion).
    let done = copy_dir(hourly.path(), "compact-done");
    let mut m = load(done.path());
    assert_eq!(
        compact::run(done.path(), &mut m, now, DEFAULT_MAX_ROWS).expect("compact"),
        4
    );
    verify(done.path(), None).unwrap_or_else(|b| panic!("inputs left on disk: {b}"));
    assert_eq!(answers(done.path(), &fs), before);
    drop(Store::open_with_clock(config(done.path()), Box::new(FakeClock::new(now))).expect("open"));
    assert_eq!(
        segment_files(done.path()).len(),
        4,
        "the start deletes inputs the chain removed"
    );
    verify(done.path(), None).unwrap_or_else(|b| panic!("after the start: {b}"));

    // A crash inside the first merge, after its segment's rename, before its entry.
    let merged = done_segment(done.path(), next);
    let crashed = copy_dir(hourly.path(), "compact-crashed");
    std::fs::copy(done.path().join(&merged), crashed.path().join(&merged)).expect("copy");
    let v = verify(crashed.path(), None)
        .unwrap_or_else(|b| panic!("an interrupted merge is no tampering: {b}"));
    assert_eq!(v.compacted, 0);
    assert_eq!(
        answers(crashed.path(), &fs),
        before,
        "the unlisted merge must not be read"
    );
    // The next start deletes it before a seal can take its chain position, then merges.
    let mut store = Store::open_with_clock(
        with_compaction(crashed.path()),
        Box::new(FakeClock::new(now)),
    )
    .expect("open after the crash");
    assert!(store.wait_idle());
    drop(store);
    let v = verify(crashed.path(), None).unwrap_or_else(|b| panic!("after recovery: {b}"));
    assert_eq!((v.segments, v.compacted), (4, 55), "{v:?}");
    assert_eq!(answers(crashed.path(), &fs), before);
    // Deterministic: the recovered merge wrote the same file as the uninterrupted one.
    assert_eq!(
        std::fs::read(crashed.path().join(&merged)).expect("read"),
        std::fs::read(done.path().join(&merged)).expect("read")
    );

    // The same file inserted anywhere else in the chain's future is tampering.
    let inserted = copy_dir(hourly.path(), "compact-inserted");
    let renamed = format!("seg-{:08}{}", next + 1, &merged["seg-00000000".len()..]);
    std::fs::copy(done.path().join(&merged), inserted.path().join(&renamed)).expect("copy");
    let b = verify(inserted.path(), None).expect_err("a segment at a later position");
    assert!(b.to_string().contains("not in the chain"), "{b}");
}

/// DuckDB reads the merged segments (their page table sits where Parquet engines do not
/// look, like the address index) and sums them to what was written.
fn duckdb_reads_the_merged_days(dir: &Path, recs: &[FlowRecord]) {
    let entries = manifest::read_entries(dir).expect("entries");
    let files: Vec<String> = manifest::live_segments(&entries)
        .iter()
        .map(|s| format!("'{}'", dir.join(&s.file).display()))
        .collect();
    let script = "import sys, duckdb\n\
        duckdb.sql('SET enable_progress_bar = false')\n\
        print(','.join(str(v) for v in duckdb.sql(f\"SELECT count(*), sum(bytes)::BIGINT, \
        count(DISTINCT src_ip) FROM read_parquet([{sys.argv[1]}])\").fetchall()[0]))";
    let out = std::process::Command::new("python3")
        .args(["-c", script, &files.join(",")])
        .output()
        .expect("python3 (install python3 and `pip install duckdb`)");
    assert!(
        out.status.success(),
        "duckdb could not read the merged segments: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sources: HashSet<IpAddr> = recs.iter().map(|r| r.src_ip).collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "{},{},{}",
            recs.len(),
            recs.iter().map(|r| r.bytes).sum::<u64>(),
            sources.len()
        )
    );
}

/// The merged segment at chain position `seq` in `dir`.
fn done_segment(dir: &Path, seq: u64) -> String {
    let prefix = format!("seg-{seq:08}-");
    segment_files(dir)
        .into_iter()
        .find(|n| n.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no segment {prefix}* in {}", dir.display()))
}

#[test]
fn a_changed_input_is_not_merged_the_other_days_are_and_verify_names_it() {
    let (dir, _) = hourly_store("compact-changed");
    let entries = manifest::read_entries(dir.path()).expect("entries");
    // Entry 3 lies in the second of the four days: the days after it must still be merged.
    let (victim, day) = match &entries[3].body {
        Body::Segment(s) => (s.file.clone(), rfc3339_s(s.time_min_ns)[..10].to_owned()),
        other => panic!("entry 3 is not a segment: {other:?}"),
    };
    let path = dir.path().join(&victim);
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    let mut m = load(dir.path());
    match compact::run(dir.path(), &mut m, T0 + 5 * DAY, DEFAULT_MAX_ROWS) {
        Err(CompactError::Partial { merged, failed }) => {
            assert_eq!(merged, 3, "the other three days are merged: {failed:?}");
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert_eq!(failed[0].day, day);
            let msg = failed[0].error.to_string();
            assert!(
                matches!(failed[0].error, CompactError::Changed { .. })
                    && msg.contains(&victim)
                    && msg.contains("SHA-256"),
                "{msg}"
            );
        }
        other => panic!("a changed input was merged or gave another error: {other:?}"),
    }
    // Its day was not merged: the changed file is still the chain's, and verify names it.
    let after = manifest::read_entries(dir.path()).expect("entries");
    let merges = after
        .iter()
        .filter(|e| matches!(e.body, Body::Compact(_)))
        .count();
    assert_eq!(merges, 3, "the days before and after the changed one");
    // The agent's next pass fails that day again, and its status says so.
    let mut store = Store::open_with_clock(
        with_compaction(dir.path()),
        Box::new(FakeClock::new(T0 + 5 * DAY)),
    )
    .expect("open");
    assert!(store.wait_idle());
    assert_eq!(store.status().compact_failed_days, 1);
    drop(store);
    assert!(
        !after.iter().any(
            |e| matches!(&e.body, Body::Compact(c) if c.files.iter().any(|f| f.file == victim))
        ),
        "the changed segment was merged"
    );
    let b = verify(dir.path(), None).expect_err("the change must be reported");
    assert!(b.file.ends_with(&victim), "{b}");
}

#[test]
fn a_forged_compaction_entry_is_caught() {
    let (dir, _) = hourly_store("compact-forged");
    let mut m = load(dir.path());
    compact::run(dir.path(), &mut m, T0 + 2 * DAY, DEFAULT_MAX_ROWS).expect("compact");
    let mpath = dir.path().join(manifest::MANIFEST);
    let text = std::fs::read_to_string(&mpath).expect("read");
    // Claim one row more for the merge and rehash the chain from there on, consistently.
    let mut entries = manifest::parse(&mpath, &text).expect("parse");
    let at = entries
        .iter()
        .position(|e| matches!(e.body, Body::Compact(_)))
        .expect("a compact entry");
    if let Body::Compact(c) = &mut entries[at].body {
        c.segment.rows += 1;
    }
    let mut prev = if at == 0 {
        GENESIS.to_string()
    } else {
        entries[at - 1].hash.clone()
    };
    for e in &mut entries[at..] {
        e.prev = prev;
        e.hash = entry_hash(e.seq, &e.body, &e.prev);
        prev = e.hash.clone();
    }
    let last = entries.last().expect("entries");
    let mut out = String::new();
    for e in &entries {
        out += &serde_json::to_string(e).expect("json");
        out.push('\n');
    }
    out += &format!(
        "{{\"head\":{{\"seq\":{},\"hash\":\"{}\",\"public_key\":null,\"signature\":null}}}}\n",
        last.seq, last.hash
    );
    std::fs::write(&mpath, out).expect("write");
    let b = verify(dir.path(), None).expect_err("a merge claiming another row count");
    assert!(b.to_string().contains("claims"), "{b}");
}
