//! New flows in bulk for the benchmarks that feed the agent from a full ring: the program
//! loaded with a large ring, and one new UDP flow (one start event) per test run.

use aya::programs::{TestRun, TestRunOptions};
use std::sync::Arc;

use xdp_audit::blocklist::ListSet;
use xdp_audit::clock::HostClocks;
use xdp_audit::daemon::{Control, Daemon, Settings};
use xdp_audit::loader::{LoadOptions, Loaded, Maps, Program};
use xdp_audit::record::FlowRecord;
use xdp_audit::sink::{RecordSink, SinkError};

use super::{v4, Spec};

/// The program with a 128 MiB ring and a flow table of `flow_table_size` entries.
pub fn load(flow_table_size: u32) -> Loaded {
    Loaded::load(LoadOptions {
        flow_table_size,
        ringbuf_bytes: 128 << 20,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("load the XDP program (root?): {e}"))
}

/// Creates `n` new flows (numbered from `first`); returns the program's ns per flow.
pub fn fill(p: &mut Program, first: u64, n: u64) -> f64 {
    let template = Spec::udp4(v4(100, 64, 0, 0), 5000, v4(198, 18, 0, 1), 443).build();
    let mut frame = template.clone();
    let prog = p.program_mut().expect("program");
    let mut kernel_ns = 0u128;
    for i in first..first + n {
        frame[26..30].copy_from_slice(&[100, 64 | (i >> 16) as u8 & 0x3f, (i >> 8) as u8, i as u8]);
        super::seal(&mut frame);
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        kernel_ns += r.duration.as_nanos();
    }
    kernel_ns as f64 / n as f64
}

/// A sink that keeps nothing: the stages before it are what is measured.
pub struct Discard;

impl RecordSink for Discard {
    fn write(&mut self, _: &FlowRecord) -> Result<(), SinkError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The daemon on `maps` with no lists, writing to [`Discard`], on the host's clocks.
pub fn start_daemon(settings: Settings, maps: Maps) -> (Daemon, Control) {
    let empty_lists = ListSet::new(
        [],
        maps.lists
            .domain_key()
            .expect("read the program's domain key"),
    );
    Daemon::start(
        settings,
        maps,
        empty_lists,
        Box::new(Discard),
        Arc::new(HostClocks),
    )
    .expect("start the daemon")
}
