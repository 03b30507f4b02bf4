//! Tamper evidence: every kind of change to a sealed store is caught by `verify`, naming the
//! file; a signed head catches even a consistently rewritten chain; the writer deletes nothing
//! on the word of a changed chain, nor a removed segment's file holding other bytes.

#[path = "store_common/mod.rs"]
mod common;

use std::path::Path;

use common::*;
use xdp_audit::store::journal::QUARANTINE_DIR;
use xdp_audit::store::manifest::{
    self, entry_hash, generate_keypair, Body, Entry, Head, Manifest, PruneInfo, RemovedFile,
    SegmentInfo, GENESIS,
};
use xdp_audit::store::retention;
use xdp_audit::store::verify::verify;
use xdp_audit::store::{FakeClock, Store, StoreConfig};

fn pristine(signed: bool) -> (TempDir, Option<(TempDir, std::path::PathBuf)>) {
    let dir = TempDir::new("tamper");
    let keys = signed.then(|| {
        let kd = TempDir::new("keys");
        let (secret, public) = generate_keypair().expect("keygen");
        std::fs::write(kd.path().join("k"), secret).expect("write key");
        std::fs::write(kd.path().join("k.pub"), public).expect("write pub");
        let p = kd.path().join("k.pub");
        (kd, p)
    });
    let clock = FakeClock::new(T0);
    let mut cfg = config(dir.path());
    if let Some((kd, _)) = &keys {
        cfg.signing_key = Some(manifest::load_signing_key(&kd.path().join("k")).expect("load key"));
    }
    let mut store = Store::open_with_clock(cfg, Box::new(clock.clone())).expect("open");
    let mut g = xdp_audit::store::testgen::TrafficGen::with_rate(5, T0, 1.0);
    while g.now_ns() < T0 + 4 * HOUR {
        let r = g.next_record();
        clock.set(r.time_start_ns);
        store.append(&r);
    }
    assert!(store.seal_now(), "seal");
    drop(store);
    (dir, keys)
}

fn segments(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("seg-"))
        .collect();
    v.sort();
    v
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(manifest::MANIFEST))
        .expect("read manifest")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    std::fs::write(dir.join(manifest::MANIFEST), lines.join("\n") + "\n").expect("write manifest");
}

fn expect_broken(dir: &Path, file_part: &str, reason_part: &str, what: &str) {
    match verify(dir, None) {
        Ok(v) => panic!("{what}: verify passed ({v:?}) but the store was tampered with"),
        Err(b) => {
            let f = b.file.display().to_string();
            assert!(
                f.contains(file_part),
                "{what}: blamed {f}, expected {file_part} ({b})"
            );
            assert!(
                b.reason.contains(reason_part),
                "{what}: reason {:?} lacks {reason_part:?}",
                b.reason
            );
        }
    }
}

#[test]
fn an_untouched_store_verifies() {
    let (dir, _) = pristine(false);
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("pristine store broken: {b}"));
    // T0 is not on an hour boundary: four hours of records touch five clock hours.
    assert_eq!(v.entries, 5, "{v:?}");
    assert_eq!(v.segments, 5, "{v:?}");
}

#[test]
fn each_kind_of_change_is_caught_and_names_the_file() {
    let (base, _) = pristine(false);
    let segs = segments(base.path());
    assert_eq!(segs.len(), 5, "{segs:?}");

    // A byte of a segment changed (same size).
    let d = copy_dir(base.path(), "t-byte");
    let p = d.path().join(&segs[1]);
    let mut bytes = std::fs::read(&p).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&p, &bytes).expect("write");
    expect_broken(d.path(), &segs[1], "SHA-256", "flipped byte");

    // A segment grew.
    let d = copy_dir(base.path(), "t-grow");
    let p = d.path().join(&segs[0]);
    let mut bytes = std::fs::read(&p).expect("read");
    bytes.push(0);
    std::fs::write(&p, &bytes).expect("write");
    expect_broken(d.path(), &segs[0], "size", "appended byte");

    // A segment deleted.
    let d = copy_dir(base.path(), "t-del");
    std::fs::remove_file(d.path().join(&segs[2])).expect("rm");
    expect_broken(d.path(), &segs[2], "missing", "deleted segment");

    // A segment replaced by another valid segment.
    let d = copy_dir(base.path(), "t-swap");
    std::fs::copy(d.path().join(&segs[0]), d.path().join(&segs[3])).expect("cp");
    expect_broken(d.path(), &segs[3], "differs", "replaced segment");

    // A foreign segment inserted.
    let d = copy_dir(base.path(), "t-ins-seg");
    std::fs::copy(
        d.path().join(&segs[0]),
        d.path().join("seg-00000099-20231115T000000Z.parquet"),
    )
    .expect("cp");
    expect_broken(
        d.path(),
        "seg-00000099",
        "not in the chain",
        "inserted segment",
    );

    // A copy inserted at the next chain position (where a crash mid-seal leaves a file): its
    // journal is long sealed and gone, so it is no interrupted seal.
    let d = copy_dir(base.path(), "t-ins-next");
    std::fs::copy(
        d.path().join(&segs[0]),
        d.path().join("seg-00000005-20231115T030000Z.parquet"),
    )
    .expect("cp");
    expect_broken(
        d.path(),
        "seg-00000005",
        "not in the chain",
        "inserted next segment",
    );

    // A middle entry deleted (and its segment, to hide it).
    let d = copy_dir(base.path(), "t-del-entry");
    let mut l = lines(d.path());
    l.remove(1);
    write_lines(d.path(), &l);
    std::fs::remove_file(d.path().join(&segs[1])).expect("rm");
    expect_broken(d.path(), "manifest.jsonl", "entry 1", "deleted entry");

    // Two entries swapped.
    let d = copy_dir(base.path(), "t-reorder");
    let mut l = lines(d.path());
    l.swap(1, 2);
    write_lines(d.path(), &l);
    expect_broken(d.path(), "manifest.jsonl", "entry 1", "reordered entries");

    // An entry's content changed (fewer rows claimed).
    let d = copy_dir(base.path(), "t-edit");
    let mut l = lines(d.path());
    let mut e: serde_json::Value = serde_json::from_str(&l[2]).expect("json");
    e["rows"] = serde_json::json!(1);
    l[2] = e.to_string();
    write_lines(d.path(), &l);
    expect_broken(
        d.path(),
        "manifest.jsonl",
        "hash does not match",
        "edited entry",
    );

    // A field added to an entry, and an entry reformatted: its hash covers the parsed
    // content and still matches, but the line is not what the writer wrote.
    for (tag, from, to) in [
        ("t-field", "{", "{\"approved_by\":\"mallory\","),
        ("t-space", ":", ": "),
    ] {
        let d = copy_dir(base.path(), tag);
        let mut l = lines(d.path());
        l[1] = l[1].replacen(from, to, 1);
        write_lines(d.path(), &l);
        expect_broken(
            d.path(),
            "manifest.jsonl",
            "entry 1 (line 2): not in the form",
            tag,
        );
    }

    // A well-formed entry inserted in the middle (its own hash is right; the next link breaks).
    let d = copy_dir(base.path(), "t-ins-entry");
    let mut l = lines(d.path());
    let prev: Entry = serde_json::from_str(&l[1]).expect("json");
    let mut forged: Entry = serde_json::from_str(&l[2]).expect("json");
    forged.seq = 2;
    forged.prev = prev.hash.clone();
    forged.hash = entry_hash(forged.seq, &forged.body, &forged.prev);
    l.insert(2, serde_json::to_string(&forged).expect("json"));
    write_lines(d.path(), &l);
    // The forged entry links correctly to entry 1, so the first broken link is the one after it.
    expect_broken(d.path(), "manifest.jsonl", "entry 3", "inserted entry");

    // The newest entry and its segment removed: the head line catches it.
    let d = copy_dir(base.path(), "t-trunc");
    let mut l = lines(d.path());
    l.remove(l.len() - 2);
    write_lines(d.path(), &l);
    std::fs::remove_file(d.path().join(&segs[4])).expect("rm");
    expect_broken(
        d.path(),
        "manifest.jsonl",
        "chain ends at entry 3",
        "truncated chain",
    );

    // The head line's hash edited, nothing removed or added: said so.
    let d = copy_dir(base.path(), "t-headhash");
    let mut l = lines(d.path());
    let last = l.pop().expect("the head line");
    let (_, head) = manifest::parse_with_head(Path::new("m"), &last).expect("parse the head");
    let mut head = head.expect("a head");
    head.hash = "0".repeat(64);
    l.push(manifest::head_line(&head));
    write_lines(d.path(), &l);
    expect_broken(
        d.path(),
        "manifest.jsonl",
        "the head line or the last entry was changed",
        "head hash edited",
    );

    // The head line cut off together with the last entry.
    let d = copy_dir(base.path(), "t-nohead");
    let mut l = lines(d.path());
    l.truncate(l.len() - 2);
    write_lines(d.path(), &l);
    std::fs::remove_file(d.path().join(&segs[4])).expect("rm");
    expect_broken(d.path(), "manifest.jsonl", "no head line", "cut head");

    // The manifest deleted.
    let d = copy_dir(base.path(), "t-noman");
    std::fs::remove_file(d.path().join(manifest::MANIFEST)).expect("rm");
    expect_broken(d.path(), "manifest.jsonl", "missing", "deleted manifest");

    // Everything deleted but the manifest: every segment is missing.
    let d = copy_dir(base.path(), "t-wipe");
    for s in &segs {
        std::fs::remove_file(d.path().join(s)).expect("rm");
    }
    expect_broken(d.path(), &segs[0], "missing", "wiped segments");
}

/// Rewrites the whole chain without entry `drop_seq` (and its segment), recomputing every
/// hash and the head: what an attacker with write access but no key can do.
fn rewrite_chain_without(dir: &Path, drop_seq: u64) {
    let path = dir.join(manifest::MANIFEST);
    let text = std::fs::read_to_string(&path).expect("read");
    let (old, old_head) = manifest::parse_with_head(&path, &text).expect("parse");
    let mut prev = GENESIS.to_owned();
    let mut out = Vec::new();
    for e in old {
        if e.seq == drop_seq {
            if let manifest::Body::Segment(s) = &e.body {
                std::fs::remove_file(dir.join(&s.file)).expect("rm");
            }
            continue;
        }
        let seq = out.len() as u64;
        let hash = entry_hash(seq, &e.body, &prev);
        let n = Entry {
            seq,
            body: e.body,
            prev: prev.clone(),
            hash: hash.clone(),
        };
        out.push(serde_json::to_string(&n).expect("json"));
        prev = hash;
    }
    // The attacker keeps the old signature: without the secret key they cannot make a new one.
    let head = Head {
        seq: out.len() as u64 - 1,
        hash: prev,
        ..old_head.expect("head")
    };
    out.push(manifest::head_line(&head));
    write_lines(dir, &out);
}

#[test]
fn a_signed_head_catches_a_consistently_rewritten_chain() {
    let (base, keys) = pristine(true);
    let (_kd, public) = keys.expect("keys");
    let key = manifest::load_public_key(&public).expect("load pub");
    let v = verify(base.path(), Some(&key)).unwrap_or_else(|b| panic!("signed store broken: {b}"));
    assert!(v.signature_checked);

    let d = copy_dir(base.path(), "t-rewrite");
    rewrite_chain_without(d.path(), 1);
    // The old signature kept does not sign the new head, even under the key the head names...
    let b = verify(d.path(), None).expect_err("a stale signature passed without the key");
    assert!(b.reason.contains("signature does not match"), "{b}");
    // ...and with the key it is caught.
    match verify(d.path(), Some(&key)) {
        Ok(_) => panic!("rewritten chain passed the signature check"),
        Err(b) => {
            assert!(b.file.ends_with(manifest::MANIFEST), "{b}");
            assert!(b.reason.contains("signature does not match"), "{b}");
        }
    }
    // Without the key, a rewrite that also strips the signature cannot be told apart
    // (documented limitation); with it, it is caught.
    let mut lines = lines(d.path());
    let last = lines.pop().expect("head line");
    let (_, head) = manifest::parse_with_head(Path::new("m"), &last).expect("parse the head");
    let head = head.expect("head");
    lines.push(manifest::head_line(&Head {
        public_key: None,
        signature: None,
        ..head
    }));
    write_lines(d.path(), &lines);
    verify(d.path(), None).unwrap_or_else(|b| panic!("rewrite should be self-consistent: {b}"));
    assert!(
        verify(d.path(), Some(&key)).is_err(),
        "a stripped head passed"
    );

    // Another key does not verify the genuine store.
    let other = TempDir::new("otherkey");
    let (_, public2) = generate_keypair().expect("keygen");
    std::fs::write(other.path().join("o.pub"), public2).expect("write");
    let key2 = manifest::load_public_key(&other.path().join("o.pub")).expect("load");
    assert!(
        verify(base.path(), Some(&key2)).is_err(),
        "a foreign key verified the head"
    );

    // An unsigned store fails when a key is required.
    let (unsigned, _) = pristine(false);
    let Err(b) = verify(unsigned.path(), Some(&key)) else {
        panic!("unsigned store passed with a key");
    };
    assert!(b.reason.contains("not signed"), "{b}");
}

#[test]
fn a_crash_inside_the_first_seal_is_no_tampering_but_a_deleted_manifest_is() {
    use xdp_audit::store::journal::JournalWriter;
    use xdp_audit::store::seal::{journal_name, write_segment};
    use xdp_audit::store::testgen::TrafficGen;

    // The first seal writes its segment, then creates the manifest: a crash between the two
    // leaves the journal, a segment at chain position 0 and no manifest.
    let build = |name: &str| {
        let d = TempDir::new(name);
        // Recent records: the restart's retention run must not prune them.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(T0, |d| d.as_nanos() as i64);
        let mut g = TrafficGen::with_rate(7, now - HOUR, 100.0);
        let records: Vec<_> = (0..500).map(|_| g.next_record()).collect();
        let mut j = JournalWriter::create(&d.path().join(journal_name(3)), 3).expect("journal");
        for r in &records {
            j.append(r);
        }
        j.sync().expect("sync journal");
        drop(j);
        let mut m = manifest::Manifest::load(d.path(), None).expect("manifest");
        write_segment(d.path(), records.iter().collect(), 3, &mut m).expect("seal");
        std::fs::remove_file(d.path().join(manifest::MANIFEST)).expect("rm manifest");
        d
    };
    let d = build("t-first-seal");
    let v = verify(d.path(), None).unwrap_or_else(|b| panic!("an interrupted seal: {b}"));
    assert_eq!(v.segments, 0, "the segment is not in the chain yet");
    // The next start seals the journal again, under the same name.
    drop(Store::open(StoreConfig::new(d.path())).expect("restart"));
    let v = verify(d.path(), None).unwrap_or_else(|b| panic!("after the restart: {b}"));
    assert_eq!((v.segments, v.rows), (1, 500));

    // Without its journal the same segment is a store whose manifest was deleted.
    let d = build("t-manifest-gone");
    std::fs::remove_file(d.path().join(journal_name(3))).expect("rm journal");
    expect_broken(
        d.path(),
        "manifest.jsonl",
        "manifest deleted",
        "deleted manifest",
    );
}

/// The writer checks the chain's links before acting on it: one changed digit that makes a
/// live segment look expired must not get it deleted at the next start.
#[test]
fn a_changed_entry_time_does_not_get_its_segment_deleted_at_open() {
    let (dir, _) = pristine(false);
    let mut ls = lines(dir.path());
    let e: Entry = serde_json::from_str(&ls[1]).expect("entry 1");
    let Body::Segment(s) = &e.body else {
        panic!("entry 1 is not a segment: {e:?}")
    };
    let (was, doctored) = (s.time_max_ns, s.time_max_ns - 1000 * DAY);
    let field = |t: i64| format!("\"time_max_ns\":{t}");
    assert!(ls[1].contains(&field(was)), "{}", ls[1]);
    ls[1] = ls[1].replace(&field(was), &field(doctored));
    write_lines(dir.path(), &ls);
    let m = Manifest::load(dir.path(), None).expect("load");
    let why = m.broken().expect("the changed entry must be found at load");
    assert!(why.contains("line 2") && why.contains("hash"), "{why}");
    drop(m);

    // A day later, under the default 180 days, the doctored entry looks 1,000 days old.
    let clock = FakeClock::new(T0 + DAY);
    drop(Store::open_with_clock(config(dir.path()), Box::new(clock)).expect("open"));
    assert!(
        dir.path().join(&s.file).exists(),
        "{} was deleted on the word of a changed entry",
        s.file
    );
    let entries = manifest::read_entries(dir.path()).expect("entries");
    assert!(
        !entries.iter().any(|e| matches!(e.body, Body::Prune(_))),
        "retention ran on a chain that does not verify"
    );
}

/// The prune entry of a pass that crashed before its deletions, removing the first two live
/// segments of `dir`: the manifest, and the two.
fn crashed_prune(dir: &Path) -> (Manifest, SegmentInfo, SegmentInfo) {
    let live = live(dir);
    let (a, b) = (live[0].clone(), live[1].clone());
    let mut m = Manifest::load(dir, None).expect("load");
    m.append(Body::Prune(PruneInfo {
        at_ns: T0 + 200 * DAY,
        retention_days: 180,
        files: [&a, &b]
            .iter()
            .map(|s| RemovedFile {
                file: s.file.clone(),
                sha256: s.sha256.clone(),
            })
            .collect(),
    }))
    .expect("append");
    (m, a, b)
}

/// A file a prune removed but a crash left is deleted only if it holds the bytes the chain
/// recorded; other bytes go into quarantine.
#[test]
fn a_removed_segment_with_other_bytes_is_quarantined_not_deleted() {
    let (dir, _) = pristine(false);
    let (m, a, b) = crashed_prune(dir.path());
    let pa = dir.path().join(&a.file);
    let mut bytes = std::fs::read(&pa).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&pa, &bytes).expect("write");

    retention::finish_interrupted(dir.path(), &m).expect("finish");
    assert!(
        !dir.path().join(&b.file).exists(),
        "the intact one is deleted"
    );
    assert!(!pa.exists(), "the changed one is moved away");
    let q = dir.path().join(QUARANTINE_DIR).join(&a.file);
    assert_eq!(
        std::fs::read(&q).unwrap_or_else(|e| panic!("{}: {e}", q.display())),
        bytes,
        "the changed file must be kept in quarantine"
    );
}

/// Every single-bit flip in the head line of a signed store is caught, with the operator's
/// key and without it: the head is in no entry's hash, so it must be the very line the agent
/// writes and its signature must verify under the key it names. Flips of a hex digit's case
/// or of a field's name passed before.
#[test]
fn every_bit_flip_in_a_signed_head_line_is_caught() {
    let (base, keys) = pristine(true);
    let (_kd, public) = keys.expect("keys");
    let key = manifest::load_public_key(&public).expect("load pub");
    let path = base.path().join(manifest::MANIFEST);
    let pristine_bytes = std::fs::read(&path).expect("read");
    let text = String::from_utf8(pristine_bytes.clone()).expect("utf-8");
    let start = text.trim_end().rfind('\n').map_or(0, |i| i + 1);
    let end = text.trim_end().len();
    let mut missed = Vec::new();
    for i in start..end {
        for bit in 0..8 {
            let mut bytes = pristine_bytes.clone();
            bytes[i] ^= 1 << bit;
            std::fs::write(&path, &bytes).expect("write");
            for k in [None, Some(&key)] {
                if verify(base.path(), k).is_ok() {
                    missed.push((i - start, bit, k.is_some()));
                }
            }
        }
    }
    std::fs::write(&path, &pristine_bytes).expect("restore");
    verify(base.path(), Some(&key)).expect("the pristine store verifies");
    assert!(
        missed.is_empty(),
        "{} flips of the head line passed (offset, bit, with key): {:?}",
        missed.len(),
        &missed[..missed.len().min(20)]
    );
}

/// Another kind of file (here a directory) at the name of a segment the chain removed, left
/// by a crash before its deletion: the store still opens (it refused to start) and leaves it
/// for `verify` to name; the intact removed file beside it is deleted.
#[test]
fn a_directory_at_a_removed_segments_name_does_not_stop_the_store() {
    let (dir, _) = pristine(false);
    let (_, a, b) = crashed_prune(dir.path());
    let pa = dir.path().join(&a.file);
    std::fs::remove_file(&pa).expect("remove");
    std::fs::create_dir(&pa).expect("a directory in its place");

    drop(Store::open(StoreConfig::new(dir.path())).expect("the store opens"));
    assert!(pa.is_dir(), "the directory is left in place");
    assert!(
        !dir.path().join(&b.file).exists(),
        "the intact one is deleted"
    );
}

/// One flipped bit in a segment's footer that makes a column chunk's start negative (the
/// sign bit of a zigzag varint): `query` and `sql` fail naming the segment instead of
/// panicking in the Parquet library's `byte_range`.
#[test]
fn a_negative_chunk_offset_in_a_footer_is_an_error_not_a_panic() {
    use parquet::file::reader::FileReader as _;
    let (dir, _) = pristine(false);
    let seg = segments(dir.path())
        .into_iter()
        .next()
        .expect("a sealed segment");
    let path = dir.path().join(&seg);
    let mut bytes = std::fs::read(&path).expect("read segment");
    let n = bytes.len();
    let footer_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let footer = n - 8 - footer_len;
    // The first chunk starts at byte 4 (after `PAR1`): an i64 field (compact type 6) whose
    // zigzag varint is 8; its low bit is the sign.
    let at = (footer..n - 9)
        .find(|&i| bytes[i] & 0x0f == 6 && bytes[i] >> 4 != 0 && bytes[i + 1] == 8)
        .expect("the first chunk's offset in the footer")
        + 1;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).expect("write the damaged segment");
    let file = std::fs::File::open(&path).expect("open");
    let meta = parquet::file::reader::SerializedFileReader::new(file).expect("the footer parses");
    let c = meta.metadata().row_group(0).column(0);
    assert!(
        c.dictionary_page_offset().unwrap_or(c.data_page_offset()) < 0,
        "the flip made the first chunk's start negative"
    );

    // First as the manifest has it (the footer's recorded hash catches the flip), then as
    // a store sealed before footer hashes were recorded has it (the chunk ranges do).
    let mpath = dir.path().join("manifest.jsonl");
    let text = std::fs::read_to_string(&mpath).expect("read manifest");
    let key = ",\"footer_sha256\":\"";
    let from = text.find(key).expect("a footer hash in the manifest");
    let to = from + key.len() + 64 + 1;
    let older = format!("{}{}", &text[..from], &text[to..]);
    let bin = env!("CARGO_BIN_EXE_xdp-audit");
    for (manifest, fault) in [(&text, "Parquet footer"), (&older, "negative")] {
        std::fs::write(&mpath, manifest).expect("write manifest");
        for args in [
            vec!["query", "--format", "jsonl", "--log-dir"],
            vec!["sql", "--log-dir"],
        ] {
            let mut cmd = std::process::Command::new(bin);
            cmd.args(&args).arg(dir.path());
            if args[0] == "sql" {
                cmd.arg("select count(*) from flows");
            }
            let out = cmd.output().expect("run xdp-audit");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{}: a damaged footer answered",
                args[0]
            );
            assert!(!err.contains("panicked"), "{}: no panic: {err}", args[0]);
            assert!(
                err.contains(&seg) && err.contains(fault),
                "{}: the error names the segment and the fault ({fault}): {err}",
                args[0]
            );
        }
    }
}

/// A manifest that cannot be read (torn, a garbage line after the head, a directory in its
/// place) no longer refuses the start, which left the gateway recording nothing until
/// someone repaired the file by hand: the store records into journals, seals, merges and
/// deletes nothing, leaves the damaged file as it is, says so in its status; once the file
/// is restored, the next start seals the journals and every record is in the chain.
#[test]
fn a_manifest_that_cannot_be_read_does_not_stop_recording() {
    type Damage = fn(&Path, &[u8]);
    let damages: [(&str, Damage); 3] = [
        ("torn", |p, bytes| {
            std::fs::write(p, &bytes[..bytes.len() - 10]).expect("tear")
        }),
        ("garbage", |p, bytes| {
            let mut b = bytes.to_vec();
            b.extend_from_slice(b"{\"not\": \"an entry\"}\n");
            std::fs::write(p, b).expect("append")
        }),
        ("directory", |p, _| {
            std::fs::remove_file(p).expect("rm");
            std::fs::create_dir(p).expect("mkdir")
        }),
    ];
    for (what, damage) in damages {
        let dir = TempDir::new(&format!("m-unreadable-{what}"));
        let clock = FakeClock::new(T0);
        let first = fill(dir.path(), &clock, T0, 2, 0.2, 31, true);
        let path = dir.path().join(manifest::MANIFEST);
        let original = std::fs::read(&path).expect("read manifest");
        let before = segments(dir.path());
        damage(&path, &original);
        let damaged = std::fs::read(&path).ok();
        let mut store = open(dir.path(), &clock);
        let status = store.status();
        assert!(status.manifest_unreadable.is_some(), "{what}: {status:?}");
        let mut g = xdp_audit::store::testgen::TrafficGen::with_rate(32, T0 + 3 * HOUR, 0.2);
        let later: Vec<_> = (0..200).map(|_| g.next_record()).collect();
        for r in &later {
            clock.set(r.time_start_ns);
            store.append(r);
        }
        assert!(!store.seal_now(), "{what}: nothing is sealed");
        drop(store);
        assert_eq!(std::fs::read(&path).ok(), damaged, "{what}: left as it was");
        assert_eq!(
            segments(dir.path()),
            before,
            "{what}: no segment written or deleted"
        );
        if path.is_dir() {
            std::fs::remove_dir(&path).expect("rmdir");
        }
        std::fs::write(&path, &original).expect("restore the manifest");
        drop(open(dir.path(), &clock));
        let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("{what}: {b}"));
        assert_eq!(v.rows, (first.len() + later.len()) as u64, "{what}");
    }
}

/// An emptied manifest is damage, also where no segment is left to show it: `verify` said
/// ok (an empty store) while `query` refused it.
#[test]
fn an_emptied_manifest_does_not_verify() {
    let d = TempDir::new("t-emptied");
    for text in ["", "\n\n"] {
        std::fs::write(d.path().join(manifest::MANIFEST), text).expect("empty manifest");
        expect_broken(d.path(), manifest::MANIFEST, "empty", "emptied manifest");
    }
}

/// A kill between a seal's segment and its manifest entry, then damage to the journal's
/// first record: the next start seals the journal under another name (its earliest record
/// is gone), and the segment the kill left, unlisted, kept `verify` BROKEN for good. It is
/// removed as an interrupted seal's, as an interrupted compaction's is.
#[test]
fn an_interrupted_seal_whose_journal_lost_its_first_record_leaves_no_orphan() {
    use xdp_audit::store::journal::JournalWriter;
    use xdp_audit::store::seal::{journal_name, write_segment};
    use xdp_audit::store::testgen::TrafficGen;
    let d = TempDir::new("t-orphan");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(T0, |d| d.as_nanos() as i64);
    let mut g = TrafficGen::with_rate(8, now - HOUR, 0.1);
    let records: Vec<_> = (0..300).map(|_| g.next_record()).collect();
    assert_ne!(
        records[0].time_start_ns / 1_000_000_000,
        records[1].time_start_ns / 1_000_000_000,
        "the segment's name (to the second) changes without the first record"
    );
    let journal = d.path().join(journal_name(3));
    let mut j = JournalWriter::create(&journal, 3).expect("journal");
    for r in &records {
        j.append(r);
    }
    j.sync().expect("sync journal");
    drop(j);
    let mut m = Manifest::load(d.path(), None).expect("manifest");
    let orphan = write_segment(d.path(), records.iter().collect(), 3, &mut m).expect("seal");
    std::fs::remove_file(d.path().join(manifest::MANIFEST)).expect("the entry never written");
    let mut bytes = std::fs::read(&journal).expect("read journal");
    bytes[16 + 8 + 5] ^= 0x40;
    std::fs::write(&journal, &bytes).expect("damage the first record");
    drop(Store::open(StoreConfig::new(d.path())).expect("restart"));
    assert!(
        !d.path().join(&orphan.file).exists(),
        "the interrupted seal's segment is gone"
    );
    let v = verify(d.path(), None).unwrap_or_else(|b| panic!("after the restart: {b}"));
    assert_eq!(
        (v.segments, v.rows),
        (1, 299),
        "the journal sealed, less its first record"
    );
}
