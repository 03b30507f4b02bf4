//! Per-packet cost of fast refusal through BPF_PROG_TEST_RUN: a blocked DNS query answered
//! with NXDOMAIN against the same query dropped, and a blocked TCP SYN answered with RST|ACK
//! against the same SYN dropped, by two loads of the program (one list refusing, one not)
//! measured in the same run, interleaved. An answer is written over its own frame, so a
//! repeated run would judge the answer, not the query: every figure is one run of a fresh
//! copy (`repeat` 1; the kernel times the program alone), and the median and minimum of
//! `RUNS` runs are reported. Each SYN opens a flow of its own (a SYN of a known flow is not
//! answered); each query goes through its flow's slow path. Needs root.

#[path = "../tests/common/mod.rs"]
mod common;

use common::prog::Prog;
use common::{tcp, v4, Spec};
use xdp_audit::blocklist::{ListKind, ListSet, ListSpec};

const RUNS: usize = 20_000;
const LIST: &str = "192.0.2.80\nblocked.example\n";

/// The program with `LIST`, refusing or not; the list set is kept with it.
fn load(dir: &std::path::Path, refuse: bool) -> (Prog, ListSet) {
    let spec = ListSpec {
        path: dir.join("block.list"),
        kind: ListKind::Block,
        refuse,
    };
    Prog::with_lists(1 << 18, [spec])
}

/// One run of `frame`: (nanoseconds, action).
fn once(prog: &mut Prog, frame: &[u8]) -> (u64, u32) {
    let (action, _, ns) = prog.run_out(frame);
    (ns, action)
}

fn query() -> Vec<u8> {
    let mut msg = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in ["blocked", "example"] {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.extend_from_slice(&[0, 0, 1, 0, 1]);
    // EDNS OPT, as resolvers send it: the answer cuts it.
    msg.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let mut s = Spec::udp4(v4(198, 51, 100, 2), 41_000, v4(198, 18, 0, 53), 53);
    s.payload = msg;
    s.build()
}

fn syn(sport: u16, high: u8) -> Vec<u8> {
    Spec::tcp4(
        v4(198, 51, 100, high),
        sport,
        v4(192, 0, 2, 80),
        80,
        tcp::SYN,
    )
    .build()
}

fn median_min(mut v: Vec<u64>) -> (u64, u64) {
    v.sort_unstable();
    (v[v.len() / 2], v[0])
}

fn main() {
    let dir = std::env::temp_dir().join(format!("xdp-audit-bench-refuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("block.list"), LIST).expect("write the list");
    let (mut refusing, _a) = load(&dir, true);
    let (mut dropping, _b) = load(&dir, false);
    let _ = std::fs::remove_dir_all(&dir);

    let q = query();
    let (mut dns_refused, mut dns_dropped) = (Vec::new(), Vec::new());
    let (mut syn_refused, mut syn_dropped) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        // Interleaved, so load on the machine falls on both alike.
        let (t, a) = once(&mut refusing, &q);
        assert_eq!(a, 3, "the query is answered");
        dns_refused.push(t);
        let (t, a) = once(&mut dropping, &q);
        assert_eq!(a, 1, "the query is dropped");
        dns_dropped.push(t);
        let frame = syn(1024 + (i % 60_000) as u16, 2 + (i / 60_000) as u8);
        let (t, a) = once(&mut refusing, &frame);
        assert_eq!(a, 3, "the SYN is answered");
        syn_refused.push(t);
        let (t, a) = once(&mut dropping, &frame);
        assert_eq!(a, 1, "the SYN is dropped");
        syn_dropped.push(t);
    }
    println!(
        "fast refusal, BPF_PROG_TEST_RUN, {RUNS} single runs each, interleaved (ns: median / min)"
    );
    for (what, refused, dropped) in [
        ("DNS query (slow path)", dns_refused, dns_dropped),
        ("TCP SYN (new flow)", syn_refused, syn_dropped),
    ] {
        let (rm, rmin) = median_min(refused);
        let (dm, dmin) = median_min(dropped);
        println!(
            "  {what:<22} refused {rm:>5} / {rmin:>5}   dropped {dm:>5} / {dmin:>5}   ratio {:.2}x",
            rm as f64 / dm.max(1) as f64
        );
    }
}
