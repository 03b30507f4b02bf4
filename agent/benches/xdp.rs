//! Per-packet cost of the XDP program through BPF_PROG_TEST_RUN, with and without 1,000,000
//! list entries loaded, next to three references measured in the same run: an empty XDP_PASS
//! program, an xdp-filter-like exact-match program, and the stateful reference (a 5-tuple
//! LRU per-CPU hash with plain counters, then the exact match: `bin/stateful.rs`), the
//! yardstick of issue 14's targets. Ablations of the program's own per-packet path
//! (`agent-ebpf/src/ablate.rs`, one entry point each in `bin/ablate.rs`) say what each piece
//! of work costs; `XDP_AUDIT_BENCH_OLD_OBJECT=<path>` adds an older build of the program
//! (e.g. main's) to the same run. Also the time to parse, compile and
//! load the lists, to apply a 10,000-line edit, and the agent's RSS with them loaded. DNS
//! queries (the only packets whose name is walked and hashed) are measured next to the same
//! frame sent to another UDP port, so the difference is the name check alone.
//! Needs root. Run with `cargo xtask bench`.

#[path = "../tests/biglists/mod.rs"]
mod biglists;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;

use std::time::Instant;

use aya::maps::HashMap;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::Ebpf;
use common::{tcp, v4, v6, Addrs, Spec, L4};
use xdp_audit::blocklist::{random_key, Capacity, ListKind, ListSet};
use xdp_audit::loader::{
    LoadOptions, Loaded, ABLATION_OBJECT, BASELINE_OBJECT, FILTER_BASELINE_OBJECT,
    STATEFUL_BASELINE_OBJECT,
};

const REPEAT: u32 = 1_000_000;
const NEW_FLOWS: u32 = 100_000;

/// Rounds of each repeated measurement; the minimum is reported, the figure least disturbed
/// by other work on the machine.
const ROUNDS: usize = 5;

/// ns per run of `frame`. Repeated runs are timed by this thread's CPU clock around the
/// call, divided by `repeat`: the kernel's own figure is whole nanoseconds (its total divided
/// and rounded down), coarser than the differences some rows compare (a drop of a dropped flow
/// against the established path differ by less than one). The call's own set-up, a few
/// microseconds, adds under 0.01 ns a run at [`REPEAT`]. A single run keeps the kernel's figure.
fn run(prog: &mut Xdp, frame: &[u8], repeat: u32) -> f64 {
    let frame = common::sealed(frame);
    let opts = TestRunOptions {
        data_in: Some(&frame),
        repeat,
        ..Default::default()
    };
    let t = cpu::thread();
    let r = prog
        .test_run(opts)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"));
    if repeat > 1 {
        (cpu::thread() - t).as_nanos() as f64 / f64::from(repeat)
    } else {
        r.duration.as_nanos() as f64
    }
}

/// Average ns over `NEW_FLOWS` distinct frames, one run each (each is a new flow).
fn per_frame(prog: &mut Xdp, frames: &[Vec<u8>]) -> f64 {
    let total: f64 = frames.iter().map(|f| run(prog, f, 1)).sum();
    total / frames.len() as f64
}

/// Median, over chunks of [`CHUNK`] frames run by each program in turn, of the chunk's
/// average ns per frame, per program: each program sees every frame once (a new flow), and
/// the programs take turns chunk by chunk, so a burst of load on the machine hits them all.
fn new_flows_interleaved(progs: &mut [&mut Xdp], frames: &[Vec<u8>]) -> Vec<f64> {
    let mut per_chunk = vec![Vec::new(); progs.len()];
    for chunk in frames.chunks(CHUNK) {
        for (p, out) in progs.iter_mut().zip(&mut per_chunk) {
            out.push(per_frame(p, chunk));
        }
    }
    per_chunk
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

/// The `COVER4` map of a loaded program of xdp-audit, found through the program's map ids.
fn cover_map(prog: &Xdp) -> aya::maps::Array<aya::maps::MapData, u64> {
    let ids = prog
        .info()
        .and_then(|i| i.map_ids())
        .expect("the program's map ids")
        .expect("a kernel that reports map ids");
    let id = ids
        .into_iter()
        .find(|&id| {
            aya::maps::MapInfo::from_id(id)
                .is_ok_and(|m| m.name_as_str() == Some(agent_common::names::COVER4))
        })
        .expect("the program has a COVER4 map");
    let data = aya::maps::MapData::from_id(id).expect("open COVER4");
    aya::maps::Array::try_from(aya::maps::Map::Array(data)).expect("COVER4 is an array")
}

/// What the IPv4 cover saves a new flow to an unlisted /24: `frames` (new flows to one such
/// /24) in chunks, the chunks taking turns with the /24's bit clear (as the agent writes it:
/// the exact table and the trie are skipped) and set (both looked up, as before the cover);
/// the median chunk of each.
fn cover_effect(prog: &mut Xdp, frames: &[Vec<u8>], dst: [u8; 4]) -> (f64, f64) {
    let mut cover = cover_map(prog);
    let (word, bit) = agent_common::rules::cover4::slot(dst);
    let clear = cover.get(&word, 0).expect("read COVER4");
    assert_eq!(clear >> bit & 1, 0, "{dst:?} is in no list");
    let mut per = [Vec::new(), Vec::new()];
    for (k, chunk) in frames.chunks(CHUNK).enumerate() {
        let set = k % 2;
        cover
            .set(word, clear | (set as u64) << bit, 0)
            .expect("write COVER4");
        per[set].push(per_frame(prog, chunk));
    }
    cover.set(word, clear, 0).expect("write COVER4");
    let [a, b] = per.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    (a, b)
}

/// Frames per chunk of [`new_flows_interleaved`].
const CHUNK: usize = 1000;

/// `n` TCP SYNs to `dst`:443, each from its own source in 100.`base + 32 * set`.0.0/11 and
/// so a new flow; `set` (0 or 1) gives a program a second set it has not seen.
fn syns(n: u32, base: u8, set: u8, dst: [u8; 4]) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let [_, b, c, d] = i.to_be_bytes();
            Spec::tcp4(
                v4(100, base + 32 * set + b, c, d),
                40000,
                dst,
                443,
                tcp::SYN,
            )
            .build()
        })
        .collect()
}

/// `NEW_FLOWS` SYNs to 198.18.0.1, an address of no list: each a new passing flow.
fn new_flow_frames(set: u8) -> Vec<Vec<u8>> {
    syns(NEW_FLOWS, 64, set, v4(198, 18, 0, 1))
}

/// [`COVER_FRAMES`] SYNs to 10.9.39.200, an address of no list in a /24 the big list's exact
/// addresses reach into (they end at 10.9.39.191): each a new passing flow whose address the
/// IPv4 cover (`COVER4`) sends on to the exact table and the prefix trie, its worst case.
fn covered_new_flow_frames() -> Vec<Vec<u8>> {
    syns(COVER_FRAMES, 192, 0, v4(10, 9, 39, 200))
}

/// New flows in each of the cover's rows: few enough that the listed program's flow table
/// does not fill (see where they run).
const COVER_FRAMES: u32 = 24_000;

/// `n` SYNs to 10.1.2.3, an address of the big list and of the reference filter's: each a
/// blocked new flow.
fn flood_frames(set: u8, n: u32) -> Vec<Vec<u8>> {
    syns(n, 128, set, v4(10, 1, 2, 3))
}

fn load_ref(object: &[u8], name: &str) -> Ebpf {
    load_programs(object, &[name])
}

/// Loads `object` with the flow table and ring sized as the program's, and its programs
/// `names` (each verified on its own).
fn load_programs(object: &[u8], names: &[&str]) -> Ebpf {
    let mut loader = aya::EbpfLoader::new();
    for (map, size) in [
        ("FLOWS", 262_144),
        ("FLOWS4", 262_144),
        ("EVENTS", 64 << 20),
    ] {
        loader.map_max_entries(map, size);
    }
    let mut ebpf = loader
        .load(object)
        .unwrap_or_else(|e| panic!("load the object of {names:?} (root?): {e}"));
    for name in names {
        prog(&mut ebpf, name)
            .load()
            .unwrap_or_else(|e| panic!("the verifier refused {name}: {e}"));
    }
    ebpf
}

/// The ablation variants (`bin/ablate.rs`), the attached program's variant first.
const ABLATIONS: [(&str, &str); 7] = [
    ("xdp_ablate_production", "as attached"),
    ("xdp_ablate_locking", "counters locked<->plain"),
    ("xdp_ablate_no_counters", "no packet/byte counters"),
    ("xdp_ablate_no_clock", "no clock per packet"),
    ("xdp_ablate_clock_every_packet", "clock helper every packet"),
    ("xdp_ablate_no_generation", "no generation lookup"),
    ("xdp_ablate_no_hits", "no rule-hit counting"),
];

/// The ablation variants' program names.
fn ablation_names() -> Vec<&'static str> {
    ABLATIONS.iter().map(|(n, _)| *n).collect()
}

/// Puts `addrs` into an exact IPv4 blocklist `map` of `ebpf`, as rule 1 (in the ablation
/// object the lists' generation stays 0, so every variant agrees on cached verdicts).
fn block_v4(ebpf: &mut Ebpf, map: &str, addrs: impl IntoIterator<Item = [u8; 4]>) {
    let addrs: Vec<[u8; 4]> = addrs.into_iter().collect();
    let mut m: HashMap<_, [u8; 4], u32> =
        HashMap::try_from(ebpf.map_mut(map).unwrap_or_else(|| panic!("no map {map}")))
            .unwrap_or_else(|e| panic!("{map} is not a hash: {e}"));
    for &addr in &addrs {
        m.insert(addr, 1, 0)
            .unwrap_or_else(|e| panic!("insert {addr:?} into {map}: {e}"));
    }
    // xdp-audit's own objects look an address up only where its /24 is in the cover (an
    // older build may have none).
    if let Some(cover) = ebpf.map_mut("COVER4") {
        let mut cover: aya::maps::Array<_, u64> =
            aya::maps::Array::try_from(cover).expect("COVER4 is an array");
        for addr in addrs {
            let (word, bit) = agent_common::rules::cover4::slot(addr);
            let w = cover.get(&word, 0).expect("read COVER4");
            cover.set(word, w | 1 << bit, 0).expect("write COVER4");
        }
    }
}

/// The stateful reference's program.
const STATEFUL: &str = "xdp_stateful_baseline";

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
    common::prog::pin_to_cpu0();
    let mut empty = load_ref(BASELINE_OBJECT, agent_common::names::BASELINE_PASS);
    let mut filter = load_ref(FILTER_BASELINE_OBJECT, "xdp_filter_baseline");
    let mut stateful = load_ref(STATEFUL_BASELINE_OBJECT, STATEFUL);
    let mut ablate = load_programs(ABLATION_OBJECT, &ablation_names());
    let mut old = std::env::var_os("XDP_AUDIT_BENCH_OLD_OBJECT").map(|path| {
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("XDP_AUDIT_BENCH_OLD_OBJECT {path:?}: {e}"));
        (path, load_programs(&bytes, &[agent_common::names::PROGRAM]))
    });
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
        ..Default::default()
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

    // The reference filter and the stateful reference hold the same 600,000 exact IPv4
    // addresses; the ablations and the old object only the one the drop rows hit.
    for (ebpf, map) in [(&mut filter, "FILTER_V4"), (&mut stateful, "REF_BLOCK")] {
        block_v4(
            ebpf,
            map,
            (0..600_000u32).map(|i| {
                let [_, b, c, d] = i.to_be_bytes();
                [10, b, c, d]
            }),
        );
    }
    block_v4(&mut ablate, "BLOCK_V4", [[10, 1, 2, 3]]);
    if let Some((_, o)) = old.as_mut() {
        block_v4(o, "BLOCK_V4", [[10, 1, 2, 3]]);
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
    // The established flow's other direction: a second lookup for xdp-audit (its own
    // orientation misses first), a flow of its own for the stateful reference.
    let resp4 = Spec::tcp4(
        v4(203, 0, 113, 2),
        443,
        v4(198, 51, 100, 2),
        40000,
        tcp::ACK,
    )
    .build();
    let blocked = Spec::tcp4(v4(198, 51, 100, 2), 40000, v4(10, 1, 2, 3), 443, tcp::ACK).build();
    // Not listed, so every suffix is looked up: a usual name and a deep one.
    let dns_short = dns_frame("www.example.net", 53);
    let udp_short = dns_frame("www.example.net", 5353);
    let dns_deep = dns_frame("a1.b2.c3.d4.e5.f6.g7.cdn.example.net", 53);
    let udp_deep = dns_frame("a1.b2.c3.d4.e5.f6.g7.cdn.example.net", 5353);
    let frames = new_flow_frames(0);
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

    let issue14 = against_stateful(
        l,
        &mut stateful,
        &mut ablate,
        old.as_mut(),
        [&est4, &resp4, &blocked],
        &new_flow_frames(1),
    );

    // Issue 14's flood target: distinct sources to a blocked address, past the drop-record
    // budget (the warm-up spends this CPU's share of the default 1,000/s per rule), so
    // every measured frame takes the stateless path; against the filter's drop of the same.
    for fr in &flood_frames(0, 2_000) {
        run(l, fr, 1);
    }
    let flood = new_flows_interleaved(&mut [&mut *l, &mut *f], &flood_frames(1, NEW_FLOWS));
    let (flood_ours, flood_filter) = (flood[0], flood[1]);

    // Last, and fewer frames: the listed program's flow table (262,144 entries) holds the
    // 200,000 flows of the rows above, and an insert into a full LRU table evicts.
    let covered = covered_new_flow_frames();
    let covered = (per_frame(l, &covered), per_frame(f, &covered));
    let dst = v4(198, 18, 0, 1);
    let cover = cover_effect(l, &syns(COVER_FRAMES, 0, 0, dst), dst);

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
        "new flow IPv4 to a listed /24 (its exact table and trie looked up; 1 run/frame): \
         {:.1} ns, filter {:.1} ns",
        covered.0, covered.1
    );
    println!(
        "IPv4 cover, new flow to an unlisted /24 (median of {CHUNK}-frame chunks, interleaved): \
         its bit clear {:.1} ns, set (exact table and trie looked up) {:.1} ns: {:+.1} ns",
        cover.0,
        cover.1,
        cover.1 - cover.0
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
    issue14.print();
    let summarised = xdp_audit::stats::read(&listed.stats)
        .expect("read STATS")
        .into_iter()
        .find(|(c, _)| *c == agent_common::Counter::DroppedSummarised)
        .map_or(0, |(_, n)| n);
    assert!(
        summarised >= u64::from(NEW_FLOWS),
        "the flood row must measure the stateless path: {summarised} packets summarised"
    );
    println!(
        "{:<52} {flood_ours:>9.1} {flood_filter:>9.1} {:>6.2}x {:>7}",
        "blocked flood, random sources, past the budget vs filter's drop",
        flood_ours / flood_filter,
        "<= 1.5x"
    );

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

/// The established, response-direction and drop rows (`[est, resp, drop]`) of one program.
type Three = [f64; 3];

/// Issue 14's yardstick: xdp-audit (with the lists), the stateful reference, each ablation
/// and the old object on the same three frames, interleaved rounds, minimum of each.
struct Issue14 {
    ours: Three,
    reference: Three,
    ours_new: f64,
    reference_new: f64,
    /// A new flow of the attached variant without lists.
    bare_new: f64,
    ablations: Vec<Three>,
    old: Option<(String, Three, f64)>,
}

fn against_stateful(
    ours: &mut Xdp,
    stateful: &mut Ebpf,
    ablate: &mut Ebpf,
    mut old: Option<&mut (std::ffi::OsString, Ebpf)>,
    frames3: [&[u8]; 3],
    new_frames: &[Vec<u8>],
) -> Issue14 {
    let prog_names = ablation_names();
    // First runs create the flows (the established frame's before its response's).
    for fr in frames3 {
        run(ours, fr, 1);
        run(prog(stateful, STATEFUL), fr, 1);
        for name in &prog_names {
            run(prog(ablate, name), fr, 1);
        }
        if let Some((_, o)) = old.as_deref_mut() {
            run(prog(o, agent_common::names::PROGRAM), fr, 1);
        }
    }
    let min = |m: &mut f64, v: f64| *m = m.min(v);
    let mut out = Issue14 {
        ours: [f64::MAX; 3],
        reference: [f64::MAX; 3],
        ours_new: 0.0,
        reference_new: 0.0,
        bare_new: 0.0,
        ablations: vec![[f64::MAX; 3]; ABLATIONS.len()],
        old: None,
    };
    let mut old_three = [f64::MAX; 3];
    for _ in 0..ROUNDS {
        for (i, fr) in frames3.iter().enumerate() {
            min(&mut out.ours[i], run(ours, fr, REPEAT));
            min(
                &mut out.reference[i],
                run(prog(stateful, STATEFUL), fr, REPEAT),
            );
            for (a, name) in out.ablations.iter_mut().zip(&prog_names) {
                min(&mut a[i], run(prog(ablate, name), fr, REPEAT));
            }
            if let Some((_, o)) = old.as_deref_mut() {
                min(
                    &mut old_three[i],
                    run(prog(o, agent_common::names::PROGRAM), fr, REPEAT),
                );
            }
        }
    }
    // The ablation object's attached variant has no lists but one address, like the old
    // object: the pair compares builds; `ours` (1M list entries) the targets.
    let mut progs = vec![ours, prog(stateful, STATEFUL)];
    let mut bare = load_programs(ABLATION_OBJECT, &[ABLATIONS[0].0]);
    progs.push(prog(&mut bare, ABLATIONS[0].0));
    let mut old_path = None;
    if let Some((path, o)) = old {
        old_path = Some(path.to_string_lossy().into_owned());
        progs.push(prog(o, agent_common::names::PROGRAM));
    }
    let new = new_flows_interleaved(&mut progs, new_frames);
    (out.ours_new, out.reference_new, out.bare_new) = (new[0], new[1], new[2]);
    out.old = old_path.map(|path| (path, old_three, new[3]));
    out
}

impl Issue14 {
    fn print(&self) {
        let [est, resp, drop] = self.ours;
        let [r_est, r_resp, r_drop] = self.reference;
        println!(
            "stateful reference (5-tuple LRU per-CPU hash, plain counters, exact match): \
             established {r_est:.1} ns, other direction {r_resp:.1} ns, drop {r_drop:.1} ns, \
             new flow {:.1} ns",
            self.reference_new
        );
        println!(
            "{:<52} {:>9} {:>9} {:>7} {:>7}",
            "issue 14 target (1M list entries)", "ns", "vs ns", "ratio", "target"
        );
        let rows = [
            (
                "established IPv4 TCP vs stateful reference",
                est,
                r_est,
                "<=1.5",
            ),
            (
                "established, response direction vs reference",
                resp,
                r_resp,
                "-",
            ),
            (
                "new flow IPv4 vs reference's insert (1 run/frame)*",
                self.ours_new,
                self.reference_new,
                "<=1.5",
            ),
            (
                "drop of an already-dropped flow vs established",
                drop,
                est,
                "<=1.0",
            ),
            (
                "drop of an already-dropped flow vs reference's drop",
                drop,
                r_drop,
                "-",
            ),
        ];
        for (name, ns, vs, target) in rows {
            println!(
                "{name:<52} {ns:>9.1} {vs:>9.1} {:>6.2}x {target:>7}",
                ns / vs
            );
        }
        println!(
            "* median over chunks of {CHUNK} new flows, the programs taking turns chunk by chunk"
        );
        let [p_est, p_resp, p_drop] = self.ablations[0];
        println!(
            "ablations (bin/ablate.rs, no lists but the dropped address; delta vs as attached):"
        );
        println!(
            "{:<28} {:>16} {:>16} {:>16}",
            "variant", "established", "response dir", "drop"
        );
        for ((_, label), [e, r, d]) in ABLATIONS.iter().zip(&self.ablations) {
            println!(
                "{label:<28} {e:>7.1} ({:+5.1}) {r:>7.1} ({:+5.1}) {d:>7.1} ({:+5.1})",
                e - p_est,
                r - p_resp,
                d - p_drop
            );
        }
        println!(
            "new flow IPv4 without lists (the ablation object as attached): {:.1} ns, {:.2}x the \
             reference's insert",
            self.bare_new,
            self.bare_new / self.reference_new
        );
        // Like for like: the old object has no lists but the dropped address either.
        if let Some((path, [e, r, d], new)) = &self.old {
            println!(
                "old object {path} (no lists): established {e:.1} ns, response {r:.1}, drop \
                 {d:.1}, new flow {new:.1}; this build / old: {:.2}x, {:.2}x, {:.2}x, {:.2}x; \
                 old vs stateful reference: established {:.2}x, new flow {:.2}x",
                p_est / e,
                p_resp / r,
                p_drop / d,
                self.bare_new / new,
                e / r_est,
                new / self.reference_new
            );
        }
    }
}
