//! Per-packet cost of the DNS name check in the slow path, through BPF_PROG_TEST_RUN, with a
//! blocklist holding one domain rule: a UDP query passed, one TCP segment to port 53 holding
//! one framed query and one holding eight, a query cut inside its name (the segment that
//! cuts it, whose message's bytes are held, and the one that brings the rest, walked after
//! them), and a UDP query dropped, each against an
//! established TCP packet to port 443 (the main program alone, no slow path) measured in
//! the same run, interleaved. What the ratios show is what walking and hashing the names
//! adds to a packet. Every figure is one run (`repeat` 1; the kernel times the program
//! alone), and the median and minimum of `RUNS` runs are reported. Each TCP case's segment
//! is the first its connection sends there, as a stream's segments are: its connection is
//! opened again before each run (its SYN, with a sequence number other than the last's, and
//! for the cut query's rest its head, not timed). Needs root.

#[path = "../tests/common/mod.rs"]
mod common;

use common::prog::Prog;
use common::{dns_query_payload, tcp, v4, wire, Spec};
use xdp_audit::blocklist::{ListKind, ListSet, ListSpec};

const RUNS: usize = 20_000;
const LIST: &str = "blocked.example\n";
const CLIENT: [u8; 4] = v4(198, 51, 100, 2);
const SERVER: [u8; 4] = v4(198, 18, 0, 53);

/// The program with `LIST` (dropping, not refusing); the list set is kept with it.
fn load(dir: &std::path::Path) -> (Prog, ListSet) {
    let spec = ListSpec {
        path: dir.join("block.list"),
        kind: ListKind::Block,
        refuse: false,
    };
    Prog::with_lists(1 << 18, [spec])
}

/// A query for `name` with an EDNS OPT record after its question (11 bytes), as resolvers
/// send them.
fn message(name: &str) -> Vec<u8> {
    let mut m = dns_query_payload(&wire(name));
    m[11] = 1; // ARCOUNT
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    m
}

fn udp_query(sport: u16, name: &str) -> Vec<u8> {
    let mut s = Spec::udp4(CLIENT, sport, SERVER, 53);
    s.payload = message(name);
    s.build()
}

fn segment(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    Spec::tcp4(CLIENT, sport, SERVER, dport, flags)
        .seq(seq)
        .data(payload)
        .build()
}

/// `count` framed queries for `name` (each behind its two-byte length), back to back.
fn framed(name: &str, count: usize) -> Vec<u8> {
    let m = message(name);
    let mut v = Vec::new();
    for _ in 0..count {
        v.extend_from_slice(&(m.len() as u16).to_be_bytes());
        v.extend_from_slice(&m);
    }
    v
}

/// A case: its name, its variants (the segments sent before its frame, not timed, and the
/// frame), taken in turn run by run, and the action wanted.
type Case = (&'static str, Vec<(Vec<Vec<u8>>, Vec<u8>)>, u32);

fn median_min(mut v: Vec<u64>) -> (u64, u64) {
    v.sort_unstable();
    (v[v.len() / 2], v[0])
}

/// Two variants of a TCP case from `sport`: each a new connection (its SYN, with a sequence
/// number other than the last's, then `before`'s segments, not timed) and the segment timed,
/// each a `(offset in the stream, payload)`.
fn fresh(sport: u16, before: &[(u32, &[u8])], timed: (u32, &[u8])) -> Vec<(Vec<Vec<u8>>, Vec<u8>)> {
    [1000u32, 900_000]
        .into_iter()
        .map(|isn| {
            let mut setup = vec![segment(sport, 53, isn, tcp::SYN, &[])];
            for (at, bytes) in before {
                setup.push(segment(sport, 53, isn + 1 + at, tcp::ACK, bytes));
            }
            let frame = segment(sport, 53, isn + 1 + timed.0, tcp::ACK, timed.1);
            (setup, frame)
        })
        .collect()
}

fn main() {
    let dir = std::env::temp_dir().join(format!("xdp-audit-bench-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("block.list"), LIST).expect("write the list");
    let (mut prog, _lists) = load(&dir);
    let _ = std::fs::remove_dir_all(&dir);

    // The baseline's flow, opened once (stream at 1001).
    let (pass, drop) = (common::prog::XDP_PASS, common::prog::XDP_DROP);
    let syn = segment(40_443, 443, 1000, tcp::SYN, &[]);
    assert_eq!(prog.run(&syn), pass, "the baseline's SYN");
    let whole = framed("www.passed.example", 1);
    let eight = framed("www.passed.example", 8);
    // A query cut after 4 bytes of its name, and the segment with its rest.
    let cut = 2 + 12 + 4;
    let (head, rest) = whole.split_at(cut);
    let alone = |frame: Vec<u8>| vec![(Vec::new(), frame)];
    let cases: [Case; 7] = [
        (
            "TCP ACK :443 (baseline)",
            alone(segment(40_443, 443, 1001, tcp::ACK, &[])),
            pass,
        ),
        (
            "UDP query, passed",
            alone(udp_query(41_000, "www.passed.example")),
            pass,
        ),
        ("TCP 1 query, passed", fresh(40_053, &[], (0, &whole)), pass),
        (
            "TCP 8 queries, passed",
            fresh(40_054, &[], (0, &eight)),
            pass,
        ),
        ("TCP cut query, head", fresh(40_055, &[], (0, head)), pass),
        (
            "TCP cut query, rest",
            fresh(40_056, &[(0, head)], (cut as u32, rest)),
            pass,
        ),
        (
            "UDP query, dropped",
            alone(udp_query(41_001, "www.blocked.example")),
            drop,
        ),
    ];
    assert_eq!(
        prog.run(&cases[0].1[0].1),
        pass,
        "the baseline's flow established"
    );

    let mut times: Vec<Vec<u64>> = vec![Vec::with_capacity(RUNS); cases.len()];
    for run in 0..RUNS {
        // Interleaved, so load on the machine falls on every case alike.
        for ((what, variants, want), t) in cases.iter().zip(&mut times) {
            let (before, frame) = &variants[run % variants.len()];
            for b in before {
                assert_eq!(prog.run(b), pass, "{what}: a segment before");
            }
            let (action, _, ns) = prog.run_out(frame);
            assert_eq!(action, *want, "{what}: action");
            t.push(ns);
        }
    }
    println!(
        "DNS name check, BPF_PROG_TEST_RUN, {RUNS} single runs each, interleaved (ns: median / min)"
    );
    let figures: Vec<(u64, u64)> = times.into_iter().map(median_min).collect();
    let base = figures[0].0.max(1) as f64;
    for ((what, ..), (median, min)) in cases.iter().zip(figures) {
        println!(
            "  {what:<24} {median:>5} / {min:>5}   ratio {:.2}x",
            median as f64 / base
        );
    }
}
