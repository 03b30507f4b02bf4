//! The sweeper's test harness: the program loaded with its flow tables, frames run through
//! BPF_PROG_TEST_RUN, events drained into a sweeper, and a sink that keeps what it is given.

use std::collections::HashMap;

use agent_common::FlowKey;
use aya::programs::{TestRun, TestRunOptions};
use xdp_audit::blocklist::{ListKind, ListSet, ListSpec};
use xdp_audit::clock::{Timeline, WallClock};
use xdp_audit::flowtable::FlowMaps;
use xdp_audit::loader::{LoadOptions, Loaded};
use xdp_audit::record::FlowRecord;
use xdp_audit::sink::{RecordSink, SinkError};
use xdp_audit::sweeper::{Sweeper, Timeouts};

use super::prog::Prog;

/// The records written, and the flows said to have ended without a last record.
#[derive(Default)]
pub struct Memory(pub Vec<FlowRecord>, pub Vec<FlowKey>);

impl RecordSink for Memory {
    fn write(&mut self, r: &FlowRecord) -> Result<(), SinkError> {
        self.0.push(r.clone());
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn flow_ended(&mut self, key: &FlowKey) {
        self.1.push(*key);
    }
}

/// A second, in kernel nanoseconds.
pub const S: u64 = 1_000_000_000;

/// The program with a flow table of `flows` entries and a ring of `ring` bytes.
pub fn load(flows: u32, ring: u32) -> Loaded {
    Loaded::load(LoadOptions {
        flow_table_size: flows,
        ringbuf_bytes: ring,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("load the XDP program (root?): {e}"))
}

/// Second handles on the flow tables, so the tables can be read while the program runs.
pub fn flows_fd(l: &Loaded) -> FlowMaps {
    l.flow_maps()
        .try_clone()
        .expect("duplicate the flow tables' handles")
}

/// Runs `frame` through the program, which must pass it.
pub fn run(l: &mut Loaded, frame: &[u8]) {
    let prog = l.program_mut().expect("program");
    let frame = super::sealed(frame);
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, 2);
}

/// Drains the ring's events into `s`.
pub fn drain(l: &mut Loaded, s: &mut Sweeper) {
    drain_into(l, s, &mut Memory::default());
}

/// [`drain`], what the events make the sweeper write (an eviction a start event reveals)
/// going to `sink`.
pub fn drain_into(l: &mut Loaded, s: &mut Sweeper, sink: &mut Memory) {
    for ev in super::prog::drain_ring(&l.events) {
        s.on_event(ev, sink, &());
    }
}

/// BPF_PROG_TEST_RUN runs the program as if on `lo` (ifindex 1).
pub fn sweeper(t: Timeouts) -> Sweeper {
    Sweeper::new(
        t,
        Timeline::fixed(WallClock::from_offset(0)),
        HashMap::from([(1, "test0".to_string())]),
    )
}

/// The program with a block list naming 203.0.113.9 (its file, under a name with `tag`, is
/// gone once loaded), and the list set.
pub fn blocking(tag: &str) -> (Prog, ListSet) {
    let dir = std::env::temp_dir().join(format!("xdp-audit-sweeper-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("block.list");
    std::fs::write(&list, "203.0.113.9\n").expect("write the list");
    let spec = ListSpec {
        path: list,
        kind: ListKind::Block,
        refuse: false,
    };
    let loaded = Prog::with_lists(1024, [spec]);
    let _ = std::fs::remove_dir_all(&dir);
    loaded
}
