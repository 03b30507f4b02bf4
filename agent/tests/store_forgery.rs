//! Forged manifests: the chain has no key, so an attacker with write access to the store can
//! write a hash-consistent chain saying anything. The writer must not act on it beyond the
//! store (a pruned or merged-away name outside the log directory), nor on files the chain never
//! listed, and with a signing key it must not sign a chain it cannot vouch for.

#[path = "store_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use common::*;
use ed25519_dalek::{SigningKey, VerifyingKey};
use xdp_audit::store::fsutil::sha256_file;
use xdp_audit::store::manifest::{
    self, entry_hash, Body, CompactInfo, Entry, Head, Manifest, PruneInfo, RemovedFile, GENESIS,
};
use xdp_audit::store::retention;
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::verify::verify;
use xdp_audit::store::{FakeClock, Store};

/// A store of three sealed hours at `parent/log`, made with compaction off.
fn sealed_store(parent: &Path) -> PathBuf {
    let dir = parent.join("log");
    fill(&dir, &FakeClock::new(T0), T0, 3, 1.0, 11, true);
    dir
}

/// The manifest of `dir`: its entries' bodies and its head line.
fn bodies(dir: &Path) -> (Vec<Body>, Option<Head>) {
    let path = dir.join(manifest::MANIFEST);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let (entries, head) = manifest::parse_with_head(&path, &text)
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    (entries.into_iter().map(|e| e.body).collect(), head)
}

/// Writes `bodies` as the manifest of `dir`, every link and hash right and the head line
/// naming the last entry: what an attacker without the signing key can write. `head` fills
/// in the head's key and signature fields.
fn write_chain(dir: &Path, bodies: Vec<Body>, head: impl FnOnce(u64, &str) -> Head) {
    let mut prev = GENESIS.to_owned();
    let mut text = String::new();
    for (seq, body) in bodies.into_iter().enumerate() {
        let hash = entry_hash(seq as u64, &body, &prev);
        let e = Entry {
            seq: seq as u64,
            body,
            prev: std::mem::replace(&mut prev, hash.clone()),
            hash,
        };
        text += &serde_json::to_string(&e).expect("encode an entry");
        text.push('\n');
    }
    let last = text.lines().count() as u64 - 1;
    text += &manifest::head_line(&head(last, &prev));
    text.push('\n');
    let path = dir.join(manifest::MANIFEST);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn unsigned(seq: u64, hash: &str) -> Head {
    Head {
        seq,
        hash: hash.to_owned(),
        public_key: None,
        signature: None,
    }
}

/// `path` as a removed file, with the SHA-256 it holds now (so only the name can stop it).
fn removed(path: &Path, name: &str) -> RemovedFile {
    RemovedFile {
        file: name.to_owned(),
        sha256: sha256_file(path).unwrap_or_else(|e| panic!("hash {}: {e}", path.display())),
    }
}

fn write_victim(path: &Path) {
    std::fs::write(path, b"not the store's\n")
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Opens the store (after the forgery) and returns why it refused or could not read the
/// manifest (recording into journals only), or else why the chain it loaded is broken;
/// `None` when it took the chain as sound.
fn open_after_forgery(dir: &Path, what: &str) -> Option<String> {
    let now = T0 + 4 * HOUR;
    match Store::open_with_clock(config(dir), Box::new(FakeClock::new(now))) {
        Err(e) => Some(e.to_string()),
        Ok(store) => {
            if let Some(why) = store.status().manifest_unreadable {
                return Some(why);
            }
            drop(store);
            let m = Manifest::load(dir, None)
                .unwrap_or_else(|e| panic!("{what}: load {}: {e}", dir.display()));
            m.broken().map(str::to_owned)
        }
    }
}

/// The refusal (or the chain's broken state) names the manifest and the forged entry.
fn expect_refused(why: Option<String>, forged_seq: usize, what: &str) {
    let why = why.unwrap_or_else(|| panic!("{what}: the forged chain was taken as sound"));
    assert!(
        why.contains(manifest::MANIFEST) && why.contains(&format!("entry {forged_seq}")),
        "{what}: the refusal names the manifest and entry {forged_seq}: {why}"
    );
}

/// A prune or a compaction entry naming a file outside the store, hash-consistent and with
/// the file's real SHA-256: before, the next start deleted that file.
#[test]
fn a_forged_entry_naming_a_file_outside_the_store_deletes_nothing() {
    let tmp = TempDir::new("forged-outside");
    let base = sealed_store(tmp.path());
    let forgeries: [(&str, &str); 3] = [
        ("prune", "../victim.txt"),
        ("compact", "../victim.txt"),
        // Passes a check of the `seg-` prefix and `.parquet` suffix alone.
        ("prune", "seg-x/../../victim.parquet"),
    ];
    for (i, (kind, name)) in forgeries.into_iter().enumerate() {
        let parent = TempDir::new(&format!("forged-outside-{i}"));
        let dir = copy_dir(&base, "store");
        let log = parent.path().join("log");
        std::fs::rename(dir.path(), &log).unwrap_or_else(|e| panic!("move the store: {e}"));
        std::fs::create_dir_all(log.join("seg-x")).expect("create seg-x");
        let victim = log.join(name);
        write_victim(&victim);
        let (mut chain, _) = bodies(&log);
        let gone = removed(&victim, name);
        let forged = chain.len();
        chain.push(match kind {
            "prune" => Body::Prune(PruneInfo {
                at_ns: T0 + 4 * HOUR,
                retention_days: 180,
                files: vec![gone],
            }),
            _ => {
                let mut merged =
                    manifest::live_segments(&manifest::read_entries(&log).expect("entries"))[0]
                        .clone();
                merged.file = "seg-00000099-20231115T000000Z.parquet".into();
                merged.journal_id = 0;
                Body::Compact(CompactInfo {
                    at_ns: T0 + 4 * HOUR,
                    files: vec![gone],
                    segment: merged,
                })
            }
        });
        write_chain(&log, chain, unsigned);
        let what = format!("{kind} of {name}");
        let why = open_after_forgery(&log, &what);
        assert!(
            victim.exists(),
            "{what}: {} was deleted on a forged entry's word",
            victim.display()
        );
        expect_refused(why, forged, &what);
    }
}

/// A prune naming a segment-named file the chain never listed (here a copy of a live segment
/// dropped into the store), with its real SHA-256: the entry removes what was never live, which
/// `verify` calls broken, and the writer must not delete on its word either.
#[test]
fn a_forged_prune_of_a_file_the_chain_never_listed_deletes_nothing() {
    let tmp = TempDir::new("forged-unlisted");
    let dir = sealed_store(tmp.path());
    let live = live(&dir);
    let stray = dir.join("seg-00000099-20231115T000000Z.parquet");
    std::fs::copy(dir.join(&live[0].file), &stray).expect("copy a segment");
    let (mut chain, _) = bodies(&dir);
    let forged = chain.len();
    chain.push(Body::Prune(PruneInfo {
        at_ns: T0 + 4 * HOUR,
        retention_days: 180,
        files: vec![removed(&stray, "seg-00000099-20231115T000000Z.parquet")],
    }));
    write_chain(&dir, chain, unsigned);
    let what = "prune of an unlisted file";
    let why = open_after_forgery(&dir, what);
    assert!(
        stray.exists(),
        "{what}: a file the chain never listed was deleted on a forged prune's word"
    );
    expect_refused(why, forged, what);
}

/// The writer checks again right before it deletes: an entry appended after the chain was
/// loaded (the writer's own, so no load saw it) that removes a file outside the store or one
/// never listed gets nothing deleted.
#[test]
fn finishing_removals_deletes_only_live_segments_of_the_store() {
    let tmp = TempDir::new("forged-appended");
    let dir = sealed_store(tmp.path());
    let victim = tmp.path().join("victim.txt");
    write_victim(&victim);
    let stray = dir.join("seg-00000099-20231115T000000Z.parquet");
    std::fs::copy(dir.join(&live(&dir)[0].file), &stray).expect("copy a segment");
    for (path, name) in [
        (&victim, "../victim.txt"),
        (&stray, "seg-00000099-20231115T000000Z.parquet"),
    ] {
        let mut m =
            Manifest::load(&dir, None).unwrap_or_else(|e| panic!("load {}: {e}", dir.display()));
        assert_eq!(m.broken(), None, "the sealed store's chain is sound");
        m.append(Body::Prune(PruneInfo {
            at_ns: T0 + 4 * HOUR,
            retention_days: 180,
            files: vec![removed(path, name)],
        }))
        .unwrap_or_else(|e| panic!("append a prune of {name}: {e}"));
        retention::finish_interrupted(&dir, &m)
            .unwrap_or_else(|e| panic!("finish the removals of {}: {e}", dir.display()));
        assert!(
            path.exists(),
            "{} was deleted on the word of a prune of {name}",
            path.display()
        );
        // Back to the sealed chain for the next case.
        let mut sound = m.entries().to_vec();
        sound.pop();
        write_chain(&dir, sound.into_iter().map(|e| e.body).collect(), unsigned);
    }
}

/// A fresh key pair, as `xdp-audit keygen` writes it, read back.
fn keypair(name: &str) -> (SigningKey, VerifyingKey) {
    let d = TempDir::new(name);
    let (secret, public) = manifest::generate_keypair().expect("generate a key pair");
    let (sp, pp) = (d.path().join("k"), d.path().join("k.pub"));
    std::fs::write(&sp, secret).unwrap_or_else(|e| panic!("write {}: {e}", sp.display()));
    std::fs::write(&pp, public).unwrap_or_else(|e| panic!("write {}: {e}", pp.display()));
    (
        manifest::load_signing_key(&sp).unwrap_or_else(|e| panic!("{}: {e}", sp.display())),
        manifest::load_public_key(&pp).unwrap_or_else(|e| panic!("{}: {e}", pp.display())),
    )
}

/// Starts the agent's store on `dir` at `at` (with `key`, if any), records a few flows and
/// seals them, so the manifest gets a new entry and head, and stops; returns the entry of an
/// unsigned head the key signed on top of ([`Store::signing_began_on`]).
fn start_and_seal(dir: &Path, key: Option<&SigningKey>, at: i64, seed: u64) -> Option<u64> {
    let clock = FakeClock::new(at);
    let mut cfg = config(dir);
    cfg.signing_key = key.cloned();
    let mut store = Store::open_with_clock(cfg, Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let mut g = TrafficGen::with_rate(seed, at, 10.0);
    for _ in 0..20 {
        let r = g.next_record();
        clock.set(r.time_start_ns);
        store.append(&r);
    }
    assert!(store.seal_now(), "seal in {}", dir.display());
    store.signing_began_on()
}

/// What an attacker without the key does to a signed store: the newest segment and its entry
/// deleted, the chain and head line rebuilt, `head` making the head's key and signature.
fn cut_last_segment(dir: &Path, head: impl FnOnce(u64, &str, &Head) -> Head) {
    let (mut chain, old) = bodies(dir);
    let old = old.expect("a head line");
    let Some(Body::Segment(last)) = chain.pop() else {
        panic!("the last entry of {} is not a segment", dir.display())
    };
    let path = dir.join(&last.file);
    std::fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    write_chain(dir, chain, |seq, hash| head(seq, hash, &old));
}

/// `verify --public-key` refuses the store, naming the manifest and `reason_part`.
fn expect_signature_refused(dir: &Path, key: &VerifyingKey, reason_part: &str, what: &str) {
    match verify(dir, Some(key)) {
        Ok(v) => panic!("{what}: verify --public-key passed: {}", v.summary()),
        Err(b) => assert!(
            b.file.ends_with(manifest::MANIFEST) && b.reason.contains(reason_part),
            "{what}: expected the manifest and {reason_part:?}: {b}"
        ),
    }
}

/// The attack of the review: a signed store shortened, its head rebuilt without a signature
/// (or with the old one, which no longer matches), and a start that appends. Before, the
/// writer signed the forged chain and `verify --public-key` said "signature valid". Now the
/// start finds the head unsigned or badly signed, takes the chain as broken and signs nothing
/// on top of it, start after start.
#[test]
fn a_shortened_signed_chain_is_not_signed_again_by_the_writer() {
    let (key, public) = keypair("forged-signed-keys");
    type MakeHead = fn(u64, &str, &Head) -> Head;
    let cases: [(&str, MakeHead, &str); 2] = [
        (
            "signature stripped",
            |seq, hash, old| Head {
                public_key: old.public_key.clone(),
                ..unsigned(seq, hash)
            },
            "no signature",
        ),
        (
            "old signature kept",
            |seq, hash, old| Head {
                seq,
                hash: hash.to_owned(),
                ..old.clone()
            },
            "signature does not match",
        ),
    ];
    for (what, head, reason) in cases {
        let tmp = TempDir::new("forged-signed");
        let dir = tmp.path().join("log");
        start_and_seal(&dir, Some(&key), T0, 21);
        start_and_seal(&dir, Some(&key), T0 + HOUR, 22);
        verify(&dir, Some(&public)).unwrap_or_else(|b| panic!("{what}: the signed store: {b}"));

        cut_last_segment(&dir, head);
        let m = Manifest::load(&dir, Some(key.clone()))
            .unwrap_or_else(|e| panic!("{what}: load {}: {e}", dir.display()));
        let why = m
            .broken()
            .unwrap_or_else(|| panic!("{what}: the forged head loads as sound"));
        assert!(
            why.contains(manifest::MANIFEST) && why.contains("head line") && why.contains(reason),
            "{what}: {why}"
        );
        drop(m);
        // The heads written on top name the key without a signature, start after start.
        for restart in [2 * HOUR, 3 * HOUR] {
            start_and_seal(&dir, Some(&key), T0 + restart, 23);
            expect_signature_refused(&dir, &public, "no signature", what);
        }
    }
}

/// A store signed by one key, started with another: the head is not the new key's to vouch
/// for (a changed key, or a rewritten head), so it signs nothing on top of it.
#[test]
fn a_head_signed_by_another_key_is_not_signed_over() {
    let (first, _) = keypair("forged-first-key");
    let (second, second_public) = keypair("forged-second-key");
    let tmp = TempDir::new("forged-other-key");
    let dir = tmp.path().join("log");
    start_and_seal(&dir, Some(&first), T0, 31);
    // `run` refuses the other key before it writes (a damaged key file: one hex digit).
    let refused = manifest::check_key_fits(&dir, &second).expect_err("another key refused");
    assert!(refused.contains("is not the one that signed"), "{refused}");
    assert_eq!(manifest::check_key_fits(&dir, &first), Ok(()));
    let m = Manifest::load(&dir, Some(second.clone()))
        .unwrap_or_else(|e| panic!("load {}: {e}", dir.display()));
    let why = m
        .broken()
        .expect("a head signed by another key loads as broken");
    assert!(why.contains("another key"), "{why}");
    drop(m);
    start_and_seal(&dir, Some(&second), T0 + HOUR, 32);
    expect_signature_refused(&dir, &second_public, "no signature", "another key");
}

/// An existing unsigned store switched to signing: its head names no key and carries no
/// signature, so the first start with a key signs from then on, and `verify --public-key`
/// passes. That start says which entry the signature vouches from (the agent raises it as
/// an alert: the store alone cannot tell such a head from one stripped of its signature);
/// the starts after it, on a signed head, say nothing.
#[test]
fn an_unsigned_store_switched_to_signing_is_signed_from_then_on() {
    let (key, public) = keypair("forged-switch-keys");
    let tmp = TempDir::new("forged-switch");
    let dir = tmp.path().join("log");
    assert_eq!(
        start_and_seal(&dir, Some(&key), T0 - HOUR, 40),
        None,
        "an empty store"
    );
    std::fs::remove_dir_all(&dir).expect("start again without a key");
    assert_eq!(start_and_seal(&dir, None, T0, 41), None, "no key");
    let (_, unsigned_head) = bodies(&dir);
    let unsigned_head = unsigned_head.expect("a head line").seq;
    assert_eq!(
        start_and_seal(&dir, Some(&key), T0 + HOUR, 42),
        Some(unsigned_head),
        "the first start with a key names the unsigned chain's last entry"
    );
    assert_eq!(start_and_seal(&dir, Some(&key), T0 + 2 * HOUR, 43), None);
    let v = verify(&dir, Some(&public)).unwrap_or_else(|b| panic!("switched to signing: {b}"));
    assert!(v.signature_checked, "{v:?}");
    let m = Manifest::load(&dir, Some(key.clone()))
        .unwrap_or_else(|e| panic!("load {}: {e}", dir.display()));
    assert_eq!(m.broken(), None, "a signed head is sound");
}

/// Live journals `first` and `first + 1` in `dir`, each holding 30 records, synced, with
/// where each one's last frame starts.
fn two_live_journals(dir: &Path, first: u64) -> [(PathBuf, u64); 2] {
    use xdp_audit::store::journal::JournalWriter;
    use xdp_audit::store::seal::journal_name;
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let mut g = TrafficGen::with_rate(51, T0, 10.0);
    [first, first + 1].map(|id| {
        let path = dir.join(journal_name(id));
        let mut w = JournalWriter::create(&path, id)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        for _ in 0..29 {
            w.append(&g.next_record());
        }
        w.sync()
            .unwrap_or_else(|e| panic!("sync {}: {e}", path.display()));
        let last = w.size();
        w.append(&g.next_record());
        w.sync()
            .unwrap_or_else(|e| panic!("sync {}: {e}", path.display()));
        (path, last)
    })
}

/// Cuts the last 7 bytes off `path`: its last frame is torn.
fn cut(path: &Path) {
    let len = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_len(len - 7)
        .unwrap_or_else(|e| panic!("cut {}: {e}", path.display()));
}

/// Only the newest live journal can have an append in progress: a torn tail in an older one
/// (one a later journal follows) is a journal cut short, and `verify` reports it, naming the
/// journal and where the torn stretch starts. Before, any torn tail passed.
#[test]
fn a_cut_tail_of_a_journal_a_later_one_follows_is_reported() {
    let tmp = TempDir::new("forged-journal-cut");
    let dir = tmp.path().join("log");
    let [(older, last_frame), (newest, _)] = two_live_journals(&dir, 5);

    cut(&newest);
    let v = verify(&dir, None)
        .unwrap_or_else(|b| panic!("a torn tail of the newest journal is an append: {b}"));
    assert_eq!(v.journals, 2, "{v:?}");

    cut(&older);
    match verify(&dir, None) {
        Ok(v) => panic!("the older journal's cut tail passed: {}", v.summary()),
        Err(b) => {
            assert_eq!(b.file, older, "{b}");
            assert!(
                b.reason.contains(&format!("torn at byte {last_frame} "))
                    && b.reason.contains("cut short"),
                "{b}"
            );
        }
    }
}

/// A journal is named only once its header is on disk, so even the newest live journal cut
/// inside its header, or emptied, is damage: `verify` reports it and a query says its answer
/// is incomplete. Before, both passed as an append in progress, 30 records gone unsaid.
#[test]
fn a_live_journal_cut_inside_its_header_or_emptied_is_reported() {
    let tmp = TempDir::new("forged-journal-header");
    let dir = tmp.path().join("log");
    let [_, (newest, _)] = two_live_journals(&dir, 5);
    for len in [8, 0] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&newest)
            .unwrap_or_else(|e| panic!("open {}: {e}", newest.display()));
        f.set_len(len)
            .unwrap_or_else(|e| panic!("cut {}: {e}", newest.display()));
        match verify(&dir, None) {
            Ok(v) => panic!("cut to {len} bytes, it passed: {}", v.summary()),
            Err(b) => assert_eq!(b.file, newest, "cut to {len} bytes: {b}"),
        }
        let filter = xdp_audit::store::query::Filter::default();
        let stats = xdp_audit::store::query::count(&dir, &filter, 1, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("query: {e}"));
        assert_eq!(stats.matched, 30, "the older journal's records");
        assert_eq!(
            stats.journals_unreadable, 1,
            "cut to {len} bytes: the answer is said incomplete"
        );
    }
}

/// A prune of a segment its own time and retention had not expired (here a young one, by an
/// attacker without the key, its file deleted): no retention pass writes such an entry, and
/// `verify` says so, though every hash of the rewritten chain is right.
#[test]
fn a_forged_prune_of_a_young_segment_does_not_verify() {
    let tmp = TempDir::new("forged-young-prune");
    let dir = sealed_store(tmp.path());
    let live = live(&dir);
    let young = dir.join(&live[0].file);
    let (mut chain, _) = bodies(&dir);
    chain.push(Body::Prune(PruneInfo {
        at_ns: T0 + 4 * HOUR,
        retention_days: 90,
        files: vec![removed(&young, &live[0].file)],
    }));
    write_chain(&dir, chain, unsigned);
    std::fs::remove_file(&young).unwrap_or_else(|e| panic!("remove {}: {e}", young.display()));
    match verify(&dir, None) {
        Ok(v) => panic!("a young segment's forged prune verified: {}", v.summary()),
        Err(b) => assert!(
            b.reason.contains(&live[0].file) && b.reason.contains("had not expired"),
            "{b}"
        ),
    }
}

/// The race of the review: a signed store's segment deleted, and its manifest swapped for
/// one that prunes it (unsigned) just after `verify` read it, and put back (with its
/// modification time) before the check ends. The missing file was taken on the word of the
/// manifest read again, which nothing checked whole, and the signed store passed. Now a
/// verdict that leans on a second read comes only from a whole check of the manifest then on
/// disk; here the swap comes back at every check, so there is none.
#[test]
fn a_manifest_swapped_while_verify_reads_it_passes_no_deleted_segment() {
    let (key, public) = keypair("forged-swap-keys");
    let tmp = TempDir::new("forged-swap");
    let dir = tmp.path().join("log");
    start_and_seal(&dir, Some(&key), T0, 51);
    start_and_seal(&dir, Some(&key), T0 + HOUR, 52);
    let live = live(&dir);
    assert_eq!(live.len(), 2, "{live:?}");
    let mpath = dir.join(manifest::MANIFEST);
    let original = std::fs::read(&mpath).expect("read the manifest");
    let mtime = std::fs::metadata(&mpath)
        .and_then(|m| m.modified())
        .expect("the manifest's time");
    // The swap, made in a scratch store: the same chain and a prune of the first segment.
    let scratch = TempDir::new("forged-swap-scratch");
    std::fs::write(scratch.path().join(manifest::MANIFEST), &original).expect("copy");
    let (mut chain, _) = bodies(scratch.path());
    chain.push(Body::Prune(PruneInfo {
        at_ns: T0 + 400 * DAY,
        retention_days: 90,
        files: vec![RemovedFile {
            file: live[0].file.clone(),
            sha256: live[0].sha256.clone(),
        }],
    }));
    write_chain(scratch.path(), chain, unsigned);
    let forged = std::fs::read(scratch.path().join(manifest::MANIFEST)).expect("read");
    let victim = dir.join(&live[0].file);
    std::fs::remove_file(&victim).unwrap_or_else(|e| panic!("remove {}: {e}", victim.display()));
    let put = |bytes: &[u8]| {
        std::fs::write(&mpath, bytes).expect("write the manifest");
        let f = std::fs::File::options()
            .write(true)
            .open(&mpath)
            .expect("open");
        f.set_modified(mtime).expect("set the manifest's time back");
    };
    let mut swaps = 0;
    let verdict =
        xdp_audit::store::verify::verify_with_progress(&dir, Some(&public), &mut |done, _| {
            if done == 0 {
                put(&forged);
                swaps += 1;
            } else {
                put(&original);
            }
        });
    assert!(swaps >= 1, "the check reached the segments");
    match verdict {
        Ok(v) => panic!(
            "a deleted segment passed through the swap ({swaps} swaps): {}",
            v.summary()
        ),
        Err(b) => assert!(b.reason.contains("changed under each"), "{b}"),
    }
    put(&original);
    assert!(
        verify(&dir, Some(&public)).is_err(),
        "the segment is missing"
    );
}
