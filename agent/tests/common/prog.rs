//! The XDP program loaded for a test and driven through BPF_PROG_TEST_RUN: run a frame, read
//! its counters, flow table and ring events. Test files add their own assertions in an
//! `impl Prog` of their own.

use agent_common::{Counter, FlowKey, FlowValue};
use aya::maps::RingBuf;
use aya::programs::{TestRun, TestRunOptions};
use xdp_audit::loader::{LoadOptions, Loaded};
use xdp_audit::reader::{decode, Event};

/// XDP_PASS, the verdict every test frame must get.
pub const XDP_PASS: u32 = 2;

/// A loaded program with a small flow table.
pub struct Prog {
    /// The loaded program and its maps.
    pub loaded: Loaded,
}

impl Prog {
    /// Loads the program with a ring of `ringbuf_bytes`; panics (naming root) if it cannot.
    pub fn load(ringbuf_bytes: u32) -> Self {
        let loaded = Loaded::load(LoadOptions {
            flow_table_size: 1024,
            ringbuf_bytes,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("loading the XDP program (are we root?): {e}"));
        Self { loaded }
    }

    /// Runs one frame; the program's return value.
    pub fn run(&mut self, frame: &[u8]) -> u32 {
        let prog = self.loaded.program_mut().expect("program");
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        };
        prog.test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e}", frame.len()))
            .return_value
    }

    /// Every counter, summed over CPUs.
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        xdp_audit::stats::read(&self.loaded.stats).expect("read STATS")
    }

    /// One counter, summed over CPUs.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters()
            .into_iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, n)| n)
    }

    /// The flow table's entries.
    pub fn flows(&self) -> Vec<(FlowKey, FlowValue)> {
        let t = self.loaded.flow_table();
        t.keys()
            .expect("walk FLOWS")
            .into_iter()
            .filter_map(|k| t.get(&k).expect("lookup").map(|v| (k, v)))
            .collect()
    }

    /// The ring's events, drained.
    pub fn events(&mut self) -> Vec<Event> {
        let mut ring = RingBuf::try_from(&mut self.loaded.events).expect("ring buffer");
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            out.push(decode(&item).expect("decodable event"));
        }
        out
    }
}
