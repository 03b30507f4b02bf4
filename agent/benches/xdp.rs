//! Per-packet cost of the XDP program through BPF_PROG_TEST_RUN, with and without 1,000,000
//! list entries loaded, next to two references measured in the same run: an empty XDP_PASS
//! program and an xdp-filter-like exact-match program. Also the time to parse, compile and
//! load the lists, to apply a 10,000-line edit, and the agent's RSS with them loaded. DNS
//! queries (the only packets whose name is walked and hashed) are measured next to the same
//! frame sent to another UDP port, so the difference is the name check alone.
//! Needs root. Run with `cargo xtask bench`.

#[path = "../tests/biglists/mod.rs"]
mod biglists;
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use aya::maps::HashMap;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::Ebpf;
use common::{tcp, v4, v6, Addrs, Spec, L4};
use xdp_audit::blocklist::{random_key, Capacity, ListKind, ListSet};
use xdp_audit::loader::{LoadOptions, Loaded, BASELINE_OBJECT, FILTER_BASELINE_OBJECT};

const REPEAT: u32 = 1_000_000;
const NEW_FLOWS: u32 = 100_000;

/// Rounds of each repeated measurement; the minimum is reported, the figure least disturbed
/// by other work on the machine.
const ROUNDS: usize = 5;

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
fn per_frame(prog: &mut Xdp, frames: &[Vec<u8>]) -> f64 {
    let total: f64 = frames.iter().map(|f| run(prog, f, 1)).sum();
    total / frames.len() as f64
}

fn new_flow_frames() -> Vec<Vec<u8>> {
    (0..NEW_FLOWS)
        .map(|i| {
            let [_, b, c, d] = i.to_be_bytes();
            Spec::tcp4(
                v4(100, 64 + b, c, d),
                40000,
                v4(198, 18, 0, 1),
                443,
                tcp::SYN,
            )
            .build()
        })
        .collect()
}

fn load_ref(object: &[u8], name: &str) -> Ebpf {
    let mut ebpf = Ebpf::load(object).unwrap_or_else(|e| panic!("load {name} (root?): {e}"));
    let p: &mut Xdp = ebpf
        .program_mut(name)
        .expect("program")
        .try_into()
        .expect("xdp");
    p.load().expect("load reference program");
    ebpf
}

fn prog<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Xdp {
    ebpf.program_mut(name)
        .expect("program")
        .try_into()
        .expect("xdp")
}

/// A UDP frame carrying a DNS query for `name` (dotted) to `dport`: port 53 makes the program
/// walk the name, any other port gives the same frame without the walk.
fn dns_frame(name: &str, dport: u16) -> Vec<u8> {
    let mut payload = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        payload.push(label.len() as u8);
        payload.extend_from_slice(label.as_bytes());
    }
    payload.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut s = Spec::udp4(v4(198, 51, 100, 2), 40053, v4(198, 18, 0, 53), dport);
    s.payload = payload;
    s.build()
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    xdp_audit::blocklist::use_mmap_for_large_buffers();
    let mut empty = load_ref(BASELINE_OBJECT, agent_common::names::BASELINE_PASS);
    let mut filter = load_ref(FILTER_BASELINE_OBJECT, "xdp_filter_baseline");
    let mut plain = Loaded::load(LoadOptions {
        flow_table_size: 262_144,
        ringbuf_bytes: 64 << 20,
        ..Default::default()
    })
    .expect("load xdp-audit (root?)");

    // Lists: parse + compile, then load into a second instance's maps.
    let dir = std::env::temp_dir().join(format!("xdp-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("block.list");
    biglists::write_million_lines(&list);
    let rss_before = rss_mib();
    let t = Instant::now();
    let key = random_key().expect("getrandom");
    let mut set = ListSet::new([(list.clone(), ListKind::Block)], key);
    let (delta, problems) = set.reload_all();
    assert!(
        problems.is_empty(),
        "generated list has problems: {:?}",
        &problems[..1]
    );
    let parse_ms = t.elapsed().as_secs_f64() * 1e3;
    let capacity = Capacity::for_lists(set.compiled(), 65_536);
    set.set_capacity(capacity);
    let mut listed = Loaded::load(LoadOptions {
        flow_table_size: 262_144,
        ringbuf_bytes: 64 << 20,
        list_capacity: capacity.map_sizes(),
        domain_key: Some(key),
    })
    .expect("load xdp-audit with list capacity");
    let t = Instant::now();
    listed.lists.apply(&delta).expect("load the lists");
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_after = rss_mib();

    // A 10,000-line edit: replace the last 10,000 IPv4 addresses.
    let text = std::fs::read_to_string(&list).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (i, l) in lines[590_000..600_000].iter_mut().enumerate() {
        *l = format!("11.0.{}.{}", i >> 8, i & 0xff);
    }
    std::fs::write(&list, lines.join("\n") + "\n").expect("edit");
    let t = Instant::now();
    let edit = set.reload(&list).expect("the edit is valid");
    let edit_parse_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    listed.lists.apply(&edit).expect("apply the edit");
    let edit_apply_ms = t.elapsed().as_secs_f64() * 1e3;

    // The reference filter holds the same 600,000 exact IPv4 addresses.
    {
        let mut m: HashMap<_, [u8; 4], u32> =
            HashMap::try_from(filter.map_mut("FILTER_V4").expect("FILTER_V4")).expect("hash");
        for i in 0..600_000u32 {
            let [_, b, c, d] = i.to_be_bytes();
            m.insert([10, b, c, d], 1, 0).expect("insert");
        }
    }

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
    let blocked = Spec::tcp4(v4(198, 51, 100, 2), 40000, v4(10, 1, 2, 3), 443, tcp::ACK).build();
    // Not listed, so every suffix is looked up: a usual name and a deep one.
    let dns_short = dns_frame("www.example.net", 53);
    let udp_short = dns_frame("www.example.net", 5353);
    let dns_deep = dns_frame("a1.b2.c3.d4.e5.f6.g7.cdn.example.net", 53);
    let udp_deep = dns_frame("a1.b2.c3.d4.e5.f6.g7.cdn.example.net", 5353);
    let frames = new_flow_frames();
    let e = prog(&mut empty, agent_common::names::BASELINE_PASS);
    let f = prog(&mut filter, "xdp_filter_baseline");
    let p = plain.program_mut().expect("program");
    let l = listed.program_mut().expect("program");
    for fr in [
        &est4, &est6, &blocked, &dns_short, &udp_short, &dns_deep, &udp_deep,
    ] {
        run(p, fr, 1);
        run(l, fr, 1);
    }

    // Interleaved rounds, minimum of each: every program sees the same noise.
    let mut m = [f64::MAX; 12];
    for _ in 0..ROUNDS {
        let r = [
            run(e, &est4, REPEAT),
            run(f, &est4, REPEAT),
            run(f, &blocked, REPEAT),
            run(p, &est4, REPEAT),
            run(p, &est6, REPEAT),
            run(l, &est4, REPEAT),
            run(l, &blocked, REPEAT),
            run(e, &est6, REPEAT),
            run(l, &dns_short, REPEAT),
            run(l, &udp_short, REPEAT),
            run(l, &dns_deep, REPEAT),
            run(l, &udp_deep, REPEAT),
        ];
        for (m, r) in m.iter_mut().zip(r) {
            *m = m.min(r);
        }
    }
    let [floor, filter_pass, filter_drop, p4, p6, l4, ldrop, floor6, dns3, udp3, dns10, udp10] = m;
    let rows: Vec<(&str, f64, f64, &str)> = vec![
        ("established IPv4 TCP, no lists", p4, floor, "empty"),
        ("established IPv6 TCP, no lists", p6, floor6, "empty"),
        ("established IPv4 TCP, 1M list entries", l4, floor, "empty"),
        (
            "drop path (blocked exact), 1M entries",
            ldrop,
            filter_drop,
            "filter",
        ),
        ("DNS query, 3 labels, 1M entries", dns3, udp3, "udp"),
        ("DNS query, 10 labels, 1M entries", dns10, udp10, "udp"),
        (
            "new flow IPv4, 1M entries (1 run/frame)",
            per_frame(l, &frames),
            per_frame(f, &frames),
            "filter",
        ),
        (
            "new flow IPv4, no lists (1 run/frame)",
            per_frame(p, &frames[..]),
            per_frame(e, &frames),
            "empty",
        ),
    ];

    println!("xdp: BPF_PROG_TEST_RUN, {REPEAT} repeats, minimum of {ROUNDS} interleaved rounds; new flows: {NEW_FLOWS} distinct frames, one run each");
    println!("references in this run: empty XDP_PASS {floor:.1} ns; xdp-filter-like exact match {filter_pass:.1} ns pass, {filter_drop:.1} ns drop");
    println!(
        "{:<44} {:>10} {:>12} {:>8}",
        "case", "ns/packet", "reference", "ratio"
    );
    for (name, ns, r, which) in &rows {
        println!("{name:<44} {ns:>10.1} {r:>8.1} {which:<6} {:>6.2}x", ns / r);
    }
    let est_plain = rows[0].1;
    let est_listed = rows[2].1;
    // What the lists themselves add, next to what the reference's one lookup adds to an
    // empty program: the rest of xdp-audit's per-packet cost is flow accounting, which a
    // stateless filter does not do.
    println!(
        "list work per packet: drop vs established {:+.1} ns, new flow with vs without lists {:+.1} ns; \
         reference lookup: drop vs empty {:+.1} ns, new flow vs empty {:+.1} ns",
        rows[3].1 - est_listed,
        rows[6].1 - rows[7].1,
        filter_drop - floor,
        rows[6].2 - rows[7].2,
    );
    println!(
        "DNS name check per query (query to port 53 vs the same frame to port 5353): \
         3 labels {:+.1} ns, 10 labels {:+.1} ns",
        dns3 - udp3,
        dns10 - udp10
    );
    println!(
        "established with 1M entries vs without: {:.2}x",
        est_listed / est_plain
    );
    println!(
        "lists: 1,000,000 lines parsed+compiled in {parse_ms:.0} ms, loaded into the maps in {load_ms:.0} ms \
         (total {:.2} s); 10,000-line edit: reparse {edit_parse_ms:.0} ms + map update {edit_apply_ms:.0} ms",
        (parse_ms + load_ms) / 1e3
    );
    println!("RSS: {rss_after:.0} MiB with the lists loaded ({rss_before:.0} MiB before them)");

    // The sweeper reads every entry every sweep: batched reads next to a key-by-key walk of
    // the same table (the new-flow runs above left their flows in it).
    let table = plain.flow_table();
    let (mut batched, mut walked, mut n) = (f64::MAX, f64::MAX, 0);
    for _ in 0..3 {
        let t = Instant::now();
        n = table.entries().expect("batch read").len();
        batched = batched.min(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let keys = table.keys().expect("keys");
        for k in &keys {
            std::hint::black_box(table.get(k).expect("get"));
        }
        walked = walked.min(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "sweep read of {n} flows: batched {batched:.1} ms, key by key {walked:.1} ms ({:.1}x)",
        walked / batched
    );
    let _ = std::fs::remove_dir_all(&dir);
}
