use super::*;
use crate::store::columns::Columns;
use crate::store::testgen::{intact_frames, journal_bytes as journal, Rng, TrafficGen};

/// The records and skipped stretches a scan of `bad` must find (see [`intact_frames`]).
fn ground_truth(
    good: &[u8],
    bad: &[u8],
    starts: &[usize],
    recs: &[FlowRecord],
) -> (Vec<FlowRecord>, Vec<(u64, u64)>) {
    let (kept, stretches) = intact_frames(good, bad, starts);
    (
        kept.into_iter().map(|i| recs[i].clone()).collect(),
        stretches,
    )
}

fn stretches(f: &Frames) -> Vec<(u64, u64)> {
    f.skipped.iter().map(|s| (s.offset, s.len)).collect()
}

#[test]
fn damage_anywhere_loses_only_the_frames_it_touched() {
    let mut g = TrafficGen::with_rate(3, 1_700_000_000_000_000_000, 50.0);
    let recs: Vec<FlowRecord> = (0..300).map(|_| g.next_record()).collect();
    let (good, starts) = journal(9, &recs);
    let mut rng = Rng::new(17);
    for round in 0..600 {
        let mut bad = good.clone();
        for _ in 0..=rng.below(3) {
            if bad.len() <= HEADER_LEN as usize {
                break;
            }
            let at = HEADER_LEN as usize + rng.below((bad.len() - 16) as u64) as usize;
            let len = match rng.below(4) {
                0 => 1,
                1 => 1 + rng.below(8) as usize,
                2 => 1 + rng.below(300) as usize,
                _ => 4096,
            };
            let end = (at + len).min(bad.len());
            match rng.below(4) {
                0 => bad[at] ^= 1 << rng.below(8),
                1 => bad[at..end].fill(0),
                2 => bad[at..end]
                    .iter_mut()
                    .for_each(|b| *b = rng.next_u64() as u8),
                _ => bad.truncate(at), // a torn tail
            }
        }
        let (want, want_stretches) = ground_truth(&good, &bad, &starts, &recs);
        let got = scan::<Vec<FlowRecord>>(&bad);
        assert!(got.records == want, "round {round}: wrong records survive");
        assert_eq!(stretches(&got.frames), want_stretches, "round {round}");
        assert_eq!(got.frames.id, 9);
    }
}

#[test]
fn each_kind_of_damage_skips_exactly_its_bytes() {
    let mut g = TrafficGen::with_rate(4, 1_700_000_000_000_000_000, 50.0);
    let recs: Vec<FlowRecord> = (0..400).map(|_| g.next_record()).collect();
    let (good, starts) = journal(1, &recs);
    let n = starts.len();
    let page = 4096 * (good.len() / 4096 / 2);
    let mut cases: Vec<(&str, Vec<u8>, Vec<usize>)> = Vec::new();
    let mut damaged = |what, f: &dyn Fn(&mut Vec<u8>)| {
        let mut bad = good.clone();
        f(&mut bad);
        let (kept, _) = ground_truth(&good, &bad, &starts, &recs);
        let lost = (0..n).filter(|&i| !kept.contains(&recs[i])).collect();
        cases.push((what, bad, lost));
    };
    damaged("first frame", &|b| {
        b[starts[0] + FRAME_HEADER_LEN + 2] ^= 0x04
    });
    damaged("a length field, in range", &|b| b[starts[200]] ^= 0x03);
    damaged("a length field, out of range", &|b| {
        b[starts[200] + 3] = 0x80
    });
    damaged("a CRC", &|b| b[starts[201] + 5] ^= 0xff);
    damaged("last complete frame", &|b| b[starts[n - 1] + 20] ^= 0x01);
    damaged("a run of zeros over two frames", &|b| {
        b[starts[100] + 30..starts[101] + 10].fill(0)
    });
    damaged("a whole 4 KiB page zeroed", &|b| {
        b[page..page + 4096].fill(0)
    });
    damaged("zeros to the end", &|b| {
        let at = starts[n - 3] + 12;
        b[at..].fill(0)
    });
    let expected_lost: [&[usize]; 4] = [&[0], &[200], &[200], &[201]];
    for ((what, _, lost), want) in cases.iter().zip(expected_lost) {
        assert_eq!(lost, want, "{what}: the ground truth itself");
    }
    for (what, bad, lost) in &cases {
        let got = scan::<Vec<FlowRecord>>(bad);
        let want: Vec<FlowRecord> = (0..n)
            .filter(|i| !lost.contains(i))
            .map(|i| recs[i].clone())
            .collect();
        assert!(!lost.is_empty(), "{what}: the damage must hit a frame");
        assert!(
            got.records == want,
            "{what}: lost {lost:?}, scan kept {}",
            got.records.len()
        );
        let (_, want_stretches) = ground_truth(&good, bad, &starts, &recs);
        assert_eq!(stretches(&got.frames), want_stretches, "{what}");
        // Frames counted: exact where the length fields survived.
        if what.starts_with("first") || what.starts_with("a CRC") || what.starts_with("last") {
            assert_eq!(got.frames.skipped_frames(), 1, "{what}");
        }
        assert!(got.frames.skipped_frames() >= 1, "{what}");
    }
}

#[test]
fn a_torn_tail_is_the_stretch_that_reaches_the_end() {
    let mut g = TrafficGen::new(5, 1_700_000_000_000_000_000);
    let recs: Vec<FlowRecord> = (0..5).map(|_| g.next_record()).collect();
    let (good, starts) = journal(3, &recs);
    for cut in starts[4] + 1..good.len() {
        let got = scan::<Vec<FlowRecord>>(&good[..cut]);
        assert_eq!(got.records, recs[..4], "cut at {cut}");
        let tail = got.frames.torn_tail().expect("torn tail");
        assert_eq!((tail.offset, tail.end()), (starts[4] as u64, cut as u64));
        assert_eq!(tail.frames, 1, "cut at {cut}");
    }
    let mut bad = good.clone();
    bad[starts[1] + 9] ^= 0x10;
    let got = scan::<Vec<FlowRecord>>(&bad);
    assert!(
        got.frames.torn_tail().is_none(),
        "damage in the middle is no tail"
    );
    assert_eq!(got.frames.skipped[0].reason, "checksum mismatch");
    for short in 0..HEADER_LEN as usize {
        let got = scan::<Vec<FlowRecord>>(&good[..short]);
        assert_eq!(got.frames.id, 0);
        assert_eq!(got.frames.skipped_bytes(), short as u64);
    }
}

/// A header whose magic is damaged is skipped up to the first valid frame, whatever follows:
/// the frames after it are kept, its id is not trusted, and it is never a torn tail.
#[test]
fn a_damaged_header_is_skipped_and_the_frames_after_it_kept() {
    let mut g = TrafficGen::new(6, 1_700_000_000_000_000_000);
    let recs: Vec<FlowRecord> = (0..6).map(|_| g.next_record()).collect();
    let (good, starts) = journal(3, &recs);
    let header = HEADER_LEN as usize;
    let cases: [(&str, Vec<u8>, usize); 4] = [
        ("a bit of the magic", flip(&good, 5), starts[0]),
        (
            "the magic and the first frame",
            {
                let mut b = flip(&good, 0);
                b[starts[0] + 10] ^= 0x04;
                b
            },
            starts[1],
        ),
        (
            "a magic of another format",
            {
                let mut b = good.clone();
                b[..8].copy_from_slice(b"XDPAJNL2");
                b
            },
            starts[0],
        ),
        (
            "the header zeroed, nothing valid after it",
            {
                let mut b = good[..starts[1] - 1].to_vec();
                b[..header].fill(0);
                b
            },
            starts[1] - 1,
        ),
    ];
    for (what, bad, first) in cases {
        let got = scan::<Vec<FlowRecord>>(&bad);
        assert_eq!(got.frames.id, 0, "{what}: the id of a damaged header");
        assert_eq!(stretches(&got.frames)[0], (0, first as u64), "{what}");
        assert_eq!(got.frames.skipped[0].reason, DAMAGED_HEADER, "{what}");
        assert!(got.frames.torn_tail().is_none(), "{what}: not a tail");
        assert_eq!(got.frames.damaged().count(), 1, "{what}");
        let (want, want_stretches) = ground_truth(&good, &bad, &starts, &recs);
        assert_eq!(got.records, want, "{what}: the frames after it");
        assert_eq!(stretches(&got.frames), want_stretches, "{what}");
    }
    // The id bytes alone are not checked: the header is trusted while its magic is intact.
    let mut other = good.clone();
    other[8] ^= 0x01;
    assert_eq!(scan::<Count>(&other).frames.id, 3 ^ 0x01);
}

fn flip(good: &[u8], at: usize) -> Vec<u8> {
    let mut b = good.to_vec();
    b[at] ^= 0x40;
    b
}

#[test]
fn columns_decoded_on_two_threads_equal_one_scan_of_records() {
    // Over PARALLEL_MIN_BYTES, so the journal is decoded in two halves.
    let mut g = TrafficGen::with_rate(5, 1_700_000_000_000_000_000, 300.0);
    let recs: Vec<FlowRecord> = (0..150_000)
        .map(|i| {
            let mut r = g.next_record();
            if i % 3 == 0 {
                r.iface = format!("if{}", i % 5000); // names first seen in either half
            }
            r
        })
        .collect();
    let (buf, starts) = journal(77, &recs);
    assert!(buf.len() > 2 * PARALLEL_MIN_BYTES);
    let n = starts.len();
    let mid = split_point(&buf).expect("a large journal is split");
    let k = starts
        .iter()
        .position(|&s| s == mid)
        .expect("split on a frame");
    let mut cases = vec![("intact", buf.clone())];
    for (what, frame) in [
        ("first half", n / 4),
        ("last frame of the first half", k - 1),
        ("first frame of the second half", k),
        ("second half", 3 * n / 4),
    ] {
        let mut bad = buf.clone();
        bad[starts[frame] + FRAME_HEADER_LEN + 3] ^= 0x40;
        cases.push((what, bad));
    }
    // A length out of range before the middle: no split, one scan.
    let mut bad = buf.clone();
    bad[starts[n / 4]..starts[n / 4] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("bad length in the first half", bad));
    // Zeros across the middle: the split lands in them.
    let mut bad = buf.clone();
    bad[mid - 5000..mid + 5000].fill(0);
    cases.push(("zeros across the middle", bad));
    cases.push(("cut last frame", buf[..buf.len() - 7].to_vec()));
    for (what, journal) in cases {
        let want = scan::<Vec<FlowRecord>>(&journal);
        let got = scan::<Columns>(&journal);
        assert_eq!(got.frames, want.frames, "{what}");
        assert_eq!(got.records.len(), want.records.len(), "{what}");
        for (i, r) in want.records.iter().enumerate() {
            assert_eq!(
                got.records.record(i).as_ref(),
                Some(r),
                "{what}: record {i}"
            );
        }
        if what != "intact" {
            assert!(!want.frames.skipped.is_empty(), "{what}: damage must show");
        }
    }
}

#[test]
fn frames_back_to_back_give_back_every_record_and_stop_at_a_bad_one() {
    let mut g = TrafficGen::new(11, 1_767_225_600_000_000_000);
    let mut recs: Vec<FlowRecord> = (0..300).map(|_| g.next_record()).collect();
    recs[7].dropped = 3;
    recs[7].rule = Some("/etc/xdp-audit/block.list:12".into());
    recs[8].attr.user = Some("alice".into());
    recs[8].attr.domain = Some("example.org".into());
    let mut bytes = Vec::new();
    for r in &recs {
        encode_frame(r, &mut bytes);
    }
    let back: Vec<FlowRecord> = frame_records(&bytes)
        .map(|v| v.map(|v| v.to_record()))
        .collect::<Result<_, _>>()
        .expect("every frame decodes");
    assert_eq!(back, recs);
    assert_eq!(frame_records(&[]).count(), 0, "no bytes, no records");
    // Cut short: every whole frame, then the error, never a wrong record.
    let cut = &bytes[..bytes.len() - 5];
    let tail: Vec<_> = frame_records(cut).collect();
    assert_eq!(tail.len(), recs.len());
    assert!(tail.last().is_some_and(|r| r.is_err()), "the cut frame");
    // A flipped payload bit fails the CRC: the walk ends there, at that frame's offset.
    let mut bad = bytes.clone();
    let mut second = Vec::new();
    encode_frame(&recs[0], &mut second);
    bad[second.len() + FRAME_HEADER_LEN + 3] ^= 1;
    let walked: Vec<_> = frame_records(&bad).collect();
    assert_eq!(
        walked.len(),
        2,
        "one good frame, then the bad one ends the walk"
    );
    match &walked[1] {
        Err(e) => assert_eq!(e.offset, second.len(), "{e}"),
        Ok(_) => panic!("the damaged frame decoded"),
    }
}

/// Damage that repeats `10 00 00 00` puts a length in range at every other offset (16, and
/// 4096 where the scan is one byte in): the resynchronisation refuses those candidates by
/// their payload before it hashes them, so a 4 MiB stretch costs no CRC, not ~1 KiB of CRC
/// per byte (4 GiB of it). The records and the stretch are what they always were.
#[test]
fn a_stretch_of_short_lengths_is_crossed_without_hashing_every_candidate() {
    let mut g = TrafficGen::new(12, 1_767_225_600_000_000_000);
    let recs: Vec<FlowRecord> = (0..2).map(|_| g.next_record()).collect();
    let (mut buf, _) = journal(5, &recs[..1]);
    let damage_at = buf.len();
    let damage = 4 << 20;
    buf.extend(std::iter::repeat_n([0x10u8, 0, 0, 0], damage / 4).flatten());
    encode_frame(&recs[1], &mut buf);
    HASHED.with(|h| h.set(0));
    let got = scan::<Vec<FlowRecord>>(&buf);
    let hashed = HASHED.with(|h| h.get());
    assert_eq!(got.records, recs, "the frames on both sides of the damage");
    assert_eq!(
        stretches(&got.frames),
        [(damage_at as u64, damage as u64)],
        "the damage, exactly"
    );
    assert!(
        hashed < 4096,
        "{hashed} bytes hashed to cross {damage} bytes of damage"
    );
}

/// The resynchronisation's test of a candidate offset is the walk's own test of a frame,
/// the cheap checks first: the same answer at every offset of damaged journals.
#[test]
fn a_candidate_offset_is_a_frame_exactly_when_the_walk_takes_it_for_one() {
    let mut g = TrafficGen::with_rate(13, 1_700_000_000_000_000_000, 50.0);
    let recs: Vec<FlowRecord> = (0..60).map(|_| g.next_record()).collect();
    let (good, starts) = journal(9, &recs);
    let mut rng = Rng::new(29);
    for round in 0..40 {
        let mut bad = good.clone();
        let at = starts[1] + rng.below((good.len() - starts[1]) as u64) as usize;
        let end = (at + 1 + rng.below(200) as usize).min(bad.len());
        match round % 3 {
            0 => bad[at] ^= 1 << rng.below(8),
            1 => bad[at..end].fill(0),
            _ => bad[at..end]
                .iter_mut()
                .for_each(|b| *b = rng.next_u64() as u8),
        }
        for q in HEADER_LEN as usize..bad.len() {
            assert_eq!(
                starts_frame(&bad[q..]),
                frame_at(&bad[q..]).is_ok(),
                "round {round}, offset {q}"
            );
        }
    }
}
