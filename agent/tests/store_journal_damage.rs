//! A damaged journal keeps every valid record: one bad byte in the middle of a journal of
//! 10,000 records loses only the record it hit; the store opens, seals the rest, and the
//! chain verifies.

mod store_common;

use store_common::{config, TempDir, T0};
use xdp_audit::record::FlowRecord;
use xdp_audit::store::journal::{encode_frame, FRAME_HEADER_LEN};
use xdp_audit::store::query::{collect, Filter};
use xdp_audit::store::seal::journal_name;
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::verify::verify;
use xdp_audit::store::{FakeClock, Store};

const JOURNAL_ID: u64 = 1_700_000_000_000_000_777;

#[test]
fn one_bad_byte_in_the_middle_of_10000_records_loses_only_its_record() {
    let dir = TempDir::new("damage-10k");
    let mut g = TrafficGen::with_rate(31, T0, 50.0);
    let recs: Vec<FlowRecord> = (0..10_000).map(|_| g.next_record()).collect();
    let mut bytes = b"XDPAJNL1".to_vec();
    bytes.extend_from_slice(&JOURNAL_ID.to_le_bytes());
    let mut starts = Vec::new();
    for r in &recs {
        starts.push(bytes.len());
        encode_frame(r, &mut bytes);
    }
    let hit = 5_000;
    bytes[starts[hit] + FRAME_HEADER_LEN + 9] ^= 0x20;
    std::fs::write(dir.path().join(journal_name(JOURNAL_ID)), &bytes).expect("write journal");

    let clock = FakeClock::new(T0 + 3_600_000_000_000);
    drop(Store::open_with_clock(config(dir.path()), Box::new(clock)).expect("open store"));

    let mut want: Vec<FlowRecord> = recs
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != hit)
        .map(|(_, r)| r.clone())
        .collect();
    let mut got = collect(dir.path(), &Filter::default()).expect("query");
    assert_eq!(
        got.len(),
        want.len(),
        "records recovered and sealed from a journal with one bad byte"
    );
    got.sort_by_key(|r| r.time_start_ns);
    want.sort_by_key(|r| r.time_start_ns);
    assert!(
        got == want,
        "the surviving records differ from the journal's"
    );
    let v = verify(dir.path(), None).unwrap_or_else(|b| panic!("verify: {b}"));
    assert_eq!(v.rows, want.len() as u64);
}
