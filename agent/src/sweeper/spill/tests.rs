//! The file of open flows: what a reader makes of it, whole, cut or damaged.

use super::*;

use crate::sweeper::tests::udp_key as key;

fn dir(tag: &str) -> xdp_audit_lab::lab::TempDir {
    xdp_audit_lab::lab::TempDir::new(tag).expect("temporary directory")
}

fn tracked(packets: u64, reported: u64) -> Tracked {
    let mut latest = crate::sweeper::tests::value(7, 8, 0, 0);
    latest.packets[0] = packets;
    let mut t = Tracked {
        latest: Some(latest),
        ..Tracked::default()
    };
    t.reported.packets[0] = reported;
    t
}

const BOOT: u128 = 0x1234;

fn file(entries: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = file_head(BOOT).to_vec();
    entries(&mut b);
    b
}

#[test]
fn the_last_entry_of_each_flow_counts_and_an_end_removes_it() {
    let b = file(|b| {
        push_open(b, &key(1), &tracked(1, 0));
        push_open(b, &key(2), &tracked(1, 0));
        push_open(b, &key(1), &tracked(5, 3));
        push_entry(b, GONE, &key(2), &[]);
        push_open(b, &key(3), &tracked(2, 0));
    });
    let (flows, damaged) = parse(&b, BOOT).expect("parse");
    assert_eq!(damaged, None);
    let got: Vec<_> = (flows.iter())
        .map(|s| (s.key.port_a, s.value.packets[0], s.reported.packets[0]))
        .collect();
    assert_eq!(got, vec![(1, 5, 3), (3, 2, 0)]);
}

#[test]
fn an_ended_flow_or_one_without_a_snapshot_is_not_saved_open() {
    let mut ended = tracked(4, 4);
    ended.ended_ns = 9;
    let b = file(|b| {
        push_open(b, &key(1), &ended);
        push_open(b, &key(2), &Tracked::default());
    });
    assert_eq!(b.len(), FILE_HEAD, "nothing appended");
}

#[test]
fn a_cut_entry_ends_what_is_read_and_the_rest_is_used() {
    let whole = file(|b| {
        push_open(b, &key(1), &tracked(1, 0));
        push_open(b, &key(2), &tracked(2, 0));
    });
    let one = FILE_HEAD + HEAD + KEY + VALUE;
    for cut in [whole.len() - 1, one + 3, one + HEAD] {
        let (flows, damaged) = parse(&whole[..cut], BOOT).expect("parse");
        assert_eq!(
            damaged.map(|d| (d.first, d.skipped)),
            Some((one, cut - one)),
            "cut at {cut}"
        );
        assert_eq!(flows.len(), 1);
    }
}

#[test]
fn a_damaged_entry_costs_that_entry_only() {
    let whole = file(|b| {
        push_open(b, &key(1), &tracked(1, 0));
        push_open(b, &key(2), &tracked(2, 0));
        push_entry(b, GONE, &key(1), &[]);
        push_open(b, &key(3), &tracked(3, 1));
        push_entry(b, GONE, &key(2), &[]);
    });
    let one = FILE_HEAD + HEAD + KEY + VALUE;
    let ports = |b: &[u8]| -> (Vec<u16>, Option<usize>) {
        let (flows, damaged) = parse(b, BOOT).expect("parse");
        let mut p: Vec<u16> = flows.iter().map(|s| s.key.port_a).collect();
        p.sort_unstable();
        (p, damaged.map(|d| d.first))
    };
    assert_eq!(ports(&whole), (vec![3], None));
    // The second entry's key damaged: flow 2's snapshot lost, its end and all after read.
    let mut flipped = whole.clone();
    flipped[one + HEAD + 2] ^= 1;
    assert_eq!(ports(&flipped), (vec![3], Some(one)));
    // Flow 1's end lost (an unknown tag): flow 1 is open again, the rest as written.
    let gone1 = one + HEAD + KEY + VALUE;
    let mut tag = whole.clone();
    tag[gone1 + 4] = 9;
    assert_eq!(ports(&tag), (vec![1, 3], Some(gone1)));
    // A run of zeroes over two entries: what follows is read.
    let mut zeroed = whole.clone();
    zeroed[one..gone1 + HEAD + KEY].fill(0);
    let (flows, damaged) = parse(&zeroed, BOOT).expect("parse");
    assert_eq!(
        damaged.map(|d| (d.first, d.skipped)),
        Some((one, gone1 + HEAD + KEY - one))
    );
    let got: Vec<_> = (flows.iter())
        .map(|s| (s.key.port_a, s.value.packets[0], s.reported.packets[0]))
        .collect();
    assert_eq!(
        got,
        vec![(1, 1, 0), (3, 3, 1)],
        "flow 1 open: its end was zeroed"
    );
}

#[test]
fn a_file_of_another_kind_or_build_is_refused() {
    assert!(parse(b"", BOOT).is_err());
    assert!(parse(b"{\"status\": 1}\n", BOOT).is_err());
    let mut other = file(|_| {});
    other[10] += 8; // a FlowValue of another size
    let why = parse(&other, BOOT).expect_err("refused").to_string();
    assert!(why.contains("differ in size"), "{why}");
    let why = parse(&file(|_| {}), BOOT + 1).expect_err("refused");
    assert_eq!(why, Unread::OtherBoot);
    assert!(why.to_string().contains("host restarted"), "{why}");
}

#[test]
fn a_rewrite_replaces_the_log_and_a_removal_leaves_nothing() {
    let dir = dir("spill-rewrite");
    let (mut s, saved) = Spill::open(dir.path());
    assert!(saved.is_empty());
    assert!(s.due(0), "the first settle writes the file");
    let flows = [(key(1), tracked(3, 1)), (key(2), tracked(2, 0))];
    s.rewrite(flows.len(), flows.iter().map(|(k, t)| (k, t)));
    s.gone(&key(2));
    s.flush();
    assert!(!s.due(2));
    let (_, saved) = Spill::open(dir.path());
    assert_eq!(
        saved.iter().map(|s| s.key.port_a).collect::<Vec<_>>(),
        vec![1]
    );
    s.remove();
    assert!(!dir.path().join(FILE_NAME).exists());
}

#[test]
fn an_unreadable_file_is_set_aside_and_named() {
    let dir = dir("spill-bad");
    std::fs::write(dir.path().join(FILE_NAME), b"not flows").expect("write");
    let (_, saved) = Spill::open(dir.path());
    assert!(saved.is_empty());
    assert!(dir.path().join(format!("{FILE_NAME}.bad")).exists());
    assert!(!dir.path().join(FILE_NAME).exists());
}

/// What a start could not read of the last agent's file is counted (`restore_damaged`): a
/// damaged entry inside, a file of another kind, but not a kill's cut last entry (its events
/// are read again from the ring) nor another boot's file (its flows went with that boot).
#[test]
fn what_a_start_could_not_read_is_counted_but_a_cut_last_entry() {
    let boot = crate::store::retention::boot_id();
    let whole = {
        let mut b = file_head(boot).to_vec();
        push_open(&mut b, &key(1), &tracked(1, 0));
        push_open(&mut b, &key(2), &tracked(2, 1));
        push_open(&mut b, &key(3), &tracked(3, 0));
        b
    };
    let one = FILE_HEAD + HEAD + KEY + VALUE;
    let mut inside = whole.clone();
    inside[one + HEAD + 2] ^= 1;
    let mut other_boot = whole.clone();
    other_boot[20] ^= 1;
    let cases: [(&str, Vec<u8>, u64, usize); 5] = [
        ("whole", whole.clone(), 0, 3),
        ("cut last entry", whole[..whole.len() - 5].to_vec(), 0, 2),
        (
            "damaged inside",
            inside,
            (HEAD + KEY + VALUE + REPORTED) as u64,
            2,
        ),
        ("garbage", vec![0x5a; 4096], 4096, 0),
        ("another boot", other_boot, 0, 0),
    ];
    for (what, bytes, damaged, flows) in cases {
        let dir = dir("spill-damaged");
        std::fs::write(dir.path().join(FILE_NAME), &bytes).expect("write");
        let (spill, saved) = Spill::open(dir.path());
        assert_eq!((spill.damaged, saved.len()), (damaged, flows), "{what}");
        let mut sweeper = Sweeper::new(
            crate::sweeper::Timeouts::default(),
            crate::clock::Timeline::fixed(crate::clock::WallClock::from_offset(0)),
            Default::default(),
        );
        sweeper.restore(spill, saved);
        assert_eq!(sweeper.stats.restore_damaged, damaged, "{what}");
    }
}

/// A directory in the file's place is set aside at the first failed write, so the next
/// rewrite lands (it stayed there, and every rewrite failed).
#[test]
fn a_directory_in_the_files_place_is_set_aside_and_the_file_written() {
    let dir = dir("spill-dir-in-the-way");
    std::fs::create_dir(dir.path().join(FILE_NAME)).expect("a directory in its place");
    let (mut s, saved) = Spill::open(dir.path());
    assert!(saved.is_empty());
    let flows = [(key(1), tracked(3, 1))];
    s.rewrite(flows.len(), flows.iter().map(|(k, t)| (k, t)));
    assert!(s.file.is_none(), "the first rewrite fails");
    assert!(dir.path().join(format!("{FILE_NAME}.in-the-way")).is_dir());
    s.failed = None;
    s.rewrite(flows.len(), flows.iter().map(|(k, t)| (k, t)));
    assert!(s.file.is_some(), "the next one lands");
    let (_, saved) = Spill::open(dir.path());
    assert_eq!(saved.len(), 1);
}
