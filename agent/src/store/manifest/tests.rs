use super::*;

fn segment(file: &str) -> SegmentInfo {
    SegmentInfo {
        file: file.into(),
        journal_id: 7,
        time_min_ns: -1,
        time_max_ns: i64::MAX,
        rows: 3,
        size: 4096,
        sha256: "ab".repeat(32),
        footer_sha256: None,
    }
}

fn entry(seq: u64, body: Body) -> Entry {
    let prev = GENESIS.to_owned();
    Entry {
        hash: entry_hash(seq, &body, &prev),
        seq,
        body,
        prev,
    }
}

#[test]
fn every_kind_of_entry_reads_back_as_written() {
    let removed = vec![RemovedFile {
        file: "seg-1.parquet".into(),
        sha256: "cd".repeat(32),
    }];
    let entries = [
        entry(0, Body::Segment(segment("seg-0.parquet"))),
        entry(
            1,
            Body::Prune(PruneInfo {
                at_ns: 5,
                retention_days: 90,
                files: removed.clone(),
            }),
        ),
        entry(
            2,
            Body::Compact(CompactInfo {
                at_ns: 6,
                files: removed,
                segment: segment("seg-2.parquet"),
            }),
        ),
        entry(
            3,
            Body::Anchor(AnchorInfo {
                at_ns: 7,
                log: "operator.log".into(),
                lines: 2,
                bytes: 300,
                head: "ef".repeat(32),
            }),
        ),
    ];
    let text: String = entries
        .iter()
        .map(|e| serde_json::to_string(e).expect("serialise") + "\n")
        .collect();
    let (read, head) = parse_with_head(Path::new("manifest.jsonl"), &text).expect("parse");
    assert_eq!(read, entries);
    assert_eq!(head, None);
    for e in &read {
        assert_eq!(
            e.hash,
            entry_hash(e.seq, &e.body, &e.prev),
            "same hash input"
        );
    }
}

#[test]
fn a_missing_field_is_named_with_its_kind_and_line_and_unknown_fields_are_ignored() {
    let good = serde_json::to_string(&entry(0, Body::Segment(segment("seg-s.parquet"))))
        .expect("serialise");
    let extra = good.replacen("{", "{\"later_field\":[1,{\"x\":2}],", 1);
    let (read, _) = parse_with_head(Path::new("m"), &extra).expect("unknown field ignored");
    assert_eq!(
        read[0].body.added().map(|s| s.file.as_str()),
        Some("seg-s.parquet")
    );
    let missing = good.replace("\"rows\":3,", "");
    let e = parse_with_head(Path::new("m"), &format!("{good}\n{missing}\n"))
        .expect_err("rows is missing");
    let msg = e.to_string();
    assert!(msg.contains("line 2"), "{msg}");
    assert!(
        msg.contains("`rows`") && msg.contains("segment entry"),
        "{msg}"
    );
    let unknown_kind = good.replace("\"kind\":\"segment\"", "\"kind\":\"rename\"");
    let msg = parse_with_head(Path::new("m"), &unknown_kind)
        .expect_err("no such kind")
        .to_string();
    assert!(msg.contains("rename"), "{msg}");
}

/// A byte that is not UTF-8 is reported with its line and offset, by readers and by
/// `verify`, not as a bare "stream did not contain valid UTF-8".
#[test]
fn a_byte_not_utf8_is_named_by_line_and_offset() {
    let tmp = crate::blocklist::tests::TempDir::new("manifest-utf8");
    let dir = tmp.0.clone();
    let mut m = Manifest::load(&dir, None)
        .unwrap_or_else(|e| panic!("load the empty manifest in {}: {e}", dir.display()));
    for f in ["seg-0.parquet", "seg-1.parquet"] {
        m.append(Body::Segment(segment(f)))
            .unwrap_or_else(|e| panic!("append {f}: {e}"));
    }
    let path = dir.join(MANIFEST);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let second = bytes.iter().position(|&b| b == b'\n').expect("two lines") + 1;
    let at = second + 20;
    bytes[at] ^= 0x80;
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));

    let msg = read_entries(&dir)
        .expect_err("a byte not UTF-8 is refused")
        .to_string();
    for want in ["line 2", &format!("byte offset {at} ")] {
        assert!(msg.contains(want), "the reader names {want}: {msg}");
    }
    let broken = crate::store::verify::verify(&dir, None).expect_err("verify refuses it");
    for want in ["line 2", &format!("byte offset {at} ")] {
        assert!(
            broken.reason.contains(want),
            "verify names {want}: {broken:?}"
        );
    }
}

/// A manifest whose last entry carries the largest seq there is (damage: a chain that
/// verifies never gets there) leaves no position for another entry: appending is refused
/// with an error naming the manifest and the line, instead of overflowing.
#[test]
fn no_entry_is_appended_after_the_largest_seq() {
    let tmp = crate::blocklist::tests::TempDir::new("manifest-max-seq");
    let dir = tmp.0.clone();
    let last = entry(u64::MAX, Body::Segment(segment("seg-0.parquet")));
    let head = HeadLine {
        head: Head {
            seq: last.seq,
            hash: last.hash.clone(),
            public_key: None,
            signature: None,
        },
    };
    let text = format!(
        "{}\n{}\n",
        serde_json::to_string(&last).expect("serialise"),
        serde_json::to_string(&head).expect("serialise")
    );
    let path = dir.join(MANIFEST);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let mut m =
        Manifest::load(&dir, None).unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
    assert!(m.broken().is_some(), "the chain does not verify");
    let msg = match m.append(Body::Segment(segment("seg-1.parquet"))) {
        Ok(e) => panic!("appended entry {}", e.seq),
        Err(e) => e.to_string(),
    };
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("line 1"),
        "{msg}"
    );
    assert_eq!(m.entries().len(), 1);
}

/// A file name from the manifest is used only if it is a segment's, inside the log directory:
/// the chain has no key, and the writer deletes what a prune names.
#[test]
fn only_a_bare_segment_name_is_a_segment_file() {
    for good in ["seg-00000003-20231114T220000Z.parquet", "seg-x.parquet"] {
        assert!(is_segment_file(good), "{good}");
    }
    for bad in [
        "../victim.txt",
        "seg-x/../../victim.parquet",
        "/etc/seg-x.parquet",
        "seg-..parquet",
        "seg-\0.parquet",
        "manifest.jsonl",
        "operator.log",
        "",
    ] {
        assert!(!is_segment_file(bad), "{bad:?}");
    }
}

/// An entry naming a file that is no segment of the store is refused where it is read,
/// naming the entry, whichever field names it.
#[test]
fn an_entry_naming_a_file_outside_the_store_is_refused() {
    let outside = |file: &str| RemovedFile {
        file: file.into(),
        sha256: "cd".repeat(32),
    };
    let bodies = [
        Body::Segment(segment("../seg-0.parquet")),
        Body::Prune(PruneInfo {
            at_ns: 5,
            retention_days: 90,
            files: vec![outside("../victim.txt")],
        }),
        Body::Compact(CompactInfo {
            at_ns: 6,
            files: vec![outside("seg-x/../../victim.parquet")],
            segment: segment("seg-2.parquet"),
        }),
        Body::Compact(CompactInfo {
            at_ns: 6,
            files: vec![outside("seg-1.parquet")],
            segment: segment("/tmp/seg-2.parquet"),
        }),
    ];
    for (seq, body) in bodies.into_iter().enumerate() {
        let line = serde_json::to_string(&entry(seq as u64, body)).expect("serialise");
        let msg = parse_with_head(Path::new("manifest.jsonl"), &line)
            .expect_err("a name outside the store")
            .to_string();
        assert!(
            msg.contains("manifest.jsonl line 1") && msg.contains(&format!("entry {seq} names")),
            "{msg}"
        );
    }
}

/// `f()` on another thread, or a panic naming `what` if it has not returned within five
/// seconds (a read blocked on a FIFO never returns).
fn within_seconds<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{what} did not return within 5 s: blocked on the FIFO"))
}

/// A FIFO in place of `manifest.jsonl` (with no writer, a read would wait forever) is refused
/// at once, naming the file and what it is: by readers, by the writer's load and by `verify`.
#[test]
fn a_fifo_in_place_of_the_manifest_is_refused_at_once() {
    let tmp = crate::blocklist::tests::TempDir::new("manifest-fifo");
    let dir = tmp.0.clone();
    let path = dir.join(MANIFEST);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );

    let d = dir.clone();
    let msg = within_seconds("read_entries", move || {
        read_entries(&d).map(|e| e.len()).map_err(|e| e.to_string())
    })
    .expect_err("a FIFO is no manifest");
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("FIFO"),
        "{msg}"
    );

    let d = dir.clone();
    let msg = within_seconds("Manifest::load", move || {
        Manifest::load(&d, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .expect_err("a FIFO is no manifest");
    assert!(msg.contains("FIFO"), "{msg}");

    let d = dir.clone();
    let broken = within_seconds("verify", move || crate::store::verify::verify(&d, None))
        .expect_err("a FIFO is no manifest");
    assert!(
        broken.file == path && broken.reason.contains("FIFO"),
        "{broken}"
    );
}
