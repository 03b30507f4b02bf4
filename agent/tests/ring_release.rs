//! The reader gives ring space back only when told (what the records stage has settled):
//! the real program fills its ring through BPF_PROG_TEST_RUN, and readers come and go as
//! agents killed at any moment would.

mod common;

use agent_common::{Counter, FlowKey};
use common::prog::{Prog, XDP_PASS};
use common::{v4, Spec};
use xdp_audit::reader::{Event, RingReader};

/// New UDP flows `first..first + n` through the program: a start event each.
fn new_flows(p: &mut Prog, first: u16, n: u16) {
    for i in first..first + n {
        let frame = Spec::udp4(
            v4(10, 9, (i >> 8) as u8, i as u8),
            4000,
            v4(10, 8, 0, 1),
            53,
        );
        assert_eq!(p.run(&frame.build()), XDP_PASS);
    }
}

/// The flow keys of what `reader` reads, up to `max` events; and where the read ended.
fn read(reader: &mut RingReader, max: usize) -> (Vec<FlowKey>, u64) {
    let mut events = Vec::new();
    let d = reader.drain_into(&mut events, max);
    let keys = events
        .into_iter()
        .map(|e| match e {
            Event::FlowStart(k, _) => k,
            other => panic!("a start event expected, not {other:?}"),
        })
        .collect();
    (keys, d.end)
}

#[test]
fn events_read_and_not_released_are_read_again_by_the_next_reader() {
    let mut p = Prog::load(1 << 16);
    new_flows(&mut p, 0, 100);

    // A reader that reads everything and dies before its records stage settled anything.
    let mut first = RingReader::new(&p.loaded.events).expect("map the ring");
    let (all, _) = read(&mut first, usize::MAX);
    assert_eq!(all.len(), 100, "every start event");
    drop(first);

    // The next one reads the same events, reads on, and dies before it releases any.
    let mut second = RingReader::new(&p.loaded.events).expect("map the ring");
    let (again, _) = read(&mut second, 40);
    assert_eq!(again, all[..40], "read again, in order, from the first");
    let (rest, _) = read(&mut second, usize::MAX);
    assert_eq!(rest, all[40..]);
    drop(second);

    // One that releases the first 40 (what its records stage settled) and dies.
    let mut third = RingReader::new(&p.loaded.events).expect("map the ring");
    let (keys, end40) = read(&mut third, 40);
    assert_eq!(keys, all[..40]);
    third.release().up_to(end40);
    drop(third);

    let mut fourth = RingReader::new(&p.loaded.events).expect("map the ring");
    let (keys, end) = read(&mut fourth, usize::MAX);
    assert_eq!(keys, all[40..], "only what was not released");
    fourth.release().up_to(end);
    let (keys, _) = read(&mut fourth, usize::MAX);
    assert!(keys.is_empty(), "nothing more");
    drop(fourth);
    let mut fifth = RingReader::new(&p.loaded.events).expect("map the ring");
    assert!(read(&mut fifth, usize::MAX).0.is_empty(), "all released");
}

#[test]
fn the_program_reuses_ring_space_only_once_it_is_released() {
    // The smallest ring: a page.
    let mut p = Prog::load(4096);
    let mut reader = RingReader::new(&p.loaded.events).expect("map the ring");
    let mut sent = 0;
    while p.counter(Counter::LostFlowStart) == 0 {
        new_flows(&mut p, sent, 1);
        sent += 1;
        assert!(sent < 1000, "a page of ring never filled");
    }
    let (held, end) = read(&mut reader, usize::MAX);
    assert_eq!(
        held.len() as u16,
        sent - 1,
        "all but the start the full ring lost"
    );

    // Read, not released: the ring is still full for the program.
    new_flows(&mut p, sent, 1);
    assert_eq!(p.counter(Counter::LostFlowStart), 2, "still full");
    assert!(read(&mut reader, usize::MAX).0.is_empty());

    reader.release().up_to(end);
    new_flows(&mut p, sent + 1, 1);
    assert_eq!(p.counter(Counter::LostFlowStart), 2, "room again");
    let (keys, _) = read(&mut reader, usize::MAX);
    assert_eq!(
        keys.len(),
        1,
        "the new start event, after the released ones"
    );
}
