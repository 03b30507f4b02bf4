//! Per-packet cost of the XDP program through BPF_PROG_TEST_RUN, next to an empty XDP_PASS
//! program measured in the same run (these machines are noisy: the ratio is the figure).
//! Needs root. Run with `cargo xtask bench`.

#[path = "../tests/common/mod.rs"]
mod common;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::Ebpf;
use common::{tcp, v4, v6, Addrs, Spec, L4};
use xdp_audit::loader::{LoadOptions, Loaded, BASELINE_OBJECT};

const REPEAT: u32 = 1_000_000;
const NEW_FLOWS: u32 = 200_000;

fn run(prog: &mut Xdp, frame: &[u8], repeat: u32) -> f64 {
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..Default::default()
    };
    let r = prog
        .test_run(opts)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"));
    r.duration.as_nanos() as f64
}

/// Average ns over `NEW_FLOWS` distinct frames, one run each (each is a new flow).
fn per_frame(prog: &mut Xdp, make: impl Fn(u32) -> Vec<u8>) -> f64 {
    let frames: Vec<Vec<u8>> = (0..NEW_FLOWS).map(make).collect();
    let total: f64 = frames.iter().map(|f| run(prog, f, 1)).sum();
    total / f64::from(NEW_FLOWS)
}

fn new_flow_frame(i: u32) -> Vec<u8> {
    let [_, b, c, d] = i.to_be_bytes();
    Spec::tcp4(
        v4(10, b, c, d),
        40000 + (i % 20000) as u16,
        v4(203, 0, 113, 2),
        443,
        tcp::SYN,
    )
    .build()
}

fn main() {
    let mut baseline = Ebpf::load(BASELINE_OBJECT).expect("load baseline object (root?)");
    let base: &mut Xdp = baseline
        .program_mut(agent_common::names::BASELINE_PASS)
        .expect("baseline program")
        .try_into()
        .expect("xdp");
    base.load().expect("load baseline program");
    let mut loaded = Loaded::load(LoadOptions {
        flow_table_size: 262_144,
        ringbuf_bytes: 64 << 20,
        ..Default::default()
    })
    .expect("load xdp-audit (root?)");

    let est4 = Spec::tcp4(
        v4(198, 51, 100, 2),
        40000,
        v4(203, 0, 113, 2),
        443,
        tcp::ACK,
    )
    .build();
    let est6 = Spec::new(
        Addrs::V6(v6(2), v6(3)),
        L4::Tcp {
            sport: 40000,
            dport: 443,
            flags: tcp::ACK,
        },
    )
    .build();
    let prog = loaded.program_mut().expect("program");
    // Prime the flows so the timed runs take the established path.
    run(prog, &est4, 1);
    run(prog, &est6, 1);

    let mut rows: Vec<(&str, f64, f64)> = Vec::new();
    let floor_rep = run(base, &est4, REPEAT);
    rows.push((
        "established IPv4 TCP, 64-byte frame",
        run(prog, &est4, REPEAT),
        floor_rep,
    ));
    rows.push((
        "established IPv6 TCP",
        run(prog, &est6, REPEAT),
        run(base, &est6, REPEAT),
    ));
    let floor_one = per_frame(base, new_flow_frame);
    rows.push((
        "new flow IPv4 TCP (one run per frame)",
        per_frame(prog, new_flow_frame),
        floor_one,
    ));

    println!("xdp: BPF_PROG_TEST_RUN, {REPEAT} repeats (new flows: {NEW_FLOWS} distinct frames, one run each)");
    println!(
        "{:<42} {:>10} {:>14} {:>8}",
        "case", "ns/packet", "empty XDP ns", "ratio"
    );
    for (name, ns, floor) in rows {
        println!("{name:<42} {ns:>10.1} {floor:>14.1} {:>7.2}x", ns / floor);
    }
}
