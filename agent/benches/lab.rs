//! Real frames through a real gateway (issue 14, item 5; `cargo xtask bench --lab`): in a
//! client - gateway - internet lab of network namespaces, a generator (`bin/gen.rs`, an XDP
//! program driven by BPF_PROG_TEST_RUN in live-frames mode on the client's veth, XDP_TX)
//! injects frames into the gateway's `lan0` at the rate one CPU builds them. Cases: (a) one
//! established UDP flow to the server, (b) the same to a blocked destination, (c) a new flow
//! per frame from 10.0.0.0/8. Peers on `lan0`: no program, the exact-match reference
//! (`bin/filter.rs`), an nftables netdev-ingress drop set, and the xdp-audit agent (the
//! release binary), each with the same 1,000,000-address list. Mpps = frames the gateway
//! took in (`lan0` rx) per second of the generator's run; forwarded = frames the server's
//! veth received. Then the burst (item 6): 1,000,000 new flows at the generator's rate
//! through an agent with the default sizes, and what its store and status say of them.
//! Needs root, `nft` (package nftables) and `ethtool`; runs only under `cargo xtask bench --lab`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aya::maps::{Array, HashMap};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use common::Spec;
use xdp_audit::loader::{FILTER_BASELINE_OBJECT, GENERATOR_OBJECT};
use xdp_audit_lab::agent::Agent;
use xdp_audit_lab::lab::{self, require, sh, Lab};
use xdp_audit_lab::netns::run_in;
use xdp_audit_lab::wait::poll_until;

/// Frames per measurement, and the burst's new flows.
const FRAMES: u32 = 1_000_000;
/// Measurements per (peer, case); the median is reported.
const ROUNDS: usize = 3;
/// Addresses in every peer's list.
const LIST: u32 = 1_000_000;
/// The blocked destination of case (b): in the list, and routed to the server's veth so the
/// gateway with no program forwards it.
const BLOCKED: [u8; 4] = [203, 0, 113, 99];
/// The server.
const SERVER: [u8; 4] = [203, 0, 113, 2];
/// The client.
const CLIENT: [u8; 4] = [198, 51, 100, 2];
/// Live-frames batch (the kernel's default).
const BATCH: u32 = 64;

/// The list: `BLOCKED` and 999,999 addresses from 100.0.0.0.
fn list() -> impl Iterator<Item = [u8; 4]> {
    std::iter::once(BLOCKED).chain((0..LIST - 1).map(|i| (0x6400_0000 + i).to_be_bytes()))
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Established,
    Blocked,
    NewFlows,
}

const CASES: [(Case, &str); 3] = [
    (Case::Established, "(a) established flow"),
    (Case::Blocked, "(b) blocked destination"),
    (Case::NewFlows, "(c) new flows"),
];

/// What one run of the generator did.
#[derive(Clone, Copy, Default)]
struct Run {
    /// Frames the gateway's lan0 took in, per second.
    taken: f64,
    /// Frames the server received, per second.
    forwarded: f64,
}

fn mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let mut out = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        bail!("MAC {text:?} is not six bytes");
    }
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).with_context(|| format!("MAC {text:?}"))?;
    }
    Ok(out)
}

fn ifindex(ns: &str, dev: &str) -> anyhow::Result<u32> {
    let out = sh(Command::new("ip").args(["-n", ns, "-j", "link", "show", "dev", dev]))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("ip -j link")?;
    v[0]["ifindex"]
        .as_u64()
        .map(|i| i as u32)
        .with_context(|| format!("no ifindex for {dev} in {ns}"))
}

fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    sh(Command::new("ip").args(["netns", "exec", ns]).args(args)).map(drop)
}

/// The lab, made ready for frames from the generator: NAPI on lan0 (GRO on) so a veth
/// without a program accepts XDP frames, no reverse-path filter for the flood's sources,
/// static neighbours for the server and the blocked address.
fn lab() -> anyhow::Result<(Lab, Vec<u8>, u32)> {
    let lab = Lab::new("bn")?;
    let (c, g) = (lab.client.clone(), lab.gateway.clone());
    in_ns(&g, &["ethtool", "-K", lab::GW_LAN_IF, "gro", "on"])?;
    for key in ["all", "default", lab::GW_LAN_IF] {
        in_ns(
            &g,
            &["sysctl", "-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")],
        )?;
    }
    let server_mac = lab.mac(&lab.internet, "eth0")?;
    for addr in [SERVER, BLOCKED] {
        sh(Command::new("ip").args([
            "-n",
            &g,
            "neigh",
            "replace",
            &Ipv4Addr::from(addr).to_string(),
            "lladdr",
            &server_mac,
            "dev",
            lab::GW_WAN_IF,
            "nud",
            "permanent",
        ]))?;
    }
    let mut frame = Spec::udp4(CLIENT, 5000, SERVER, 9).payload(18).build();
    frame[0..6].copy_from_slice(&mac(&lab.mac(&g, lab::GW_LAN_IF)?)?);
    frame[6..12].copy_from_slice(&mac(&lab.mac(&c, "eth0")?)?);
    let client_if = ifindex(&c, "eth0")?;
    Ok((lab, frame, client_if))
}

/// Sends `FRAMES` frames of `case` from the client's veth; `first` numbers the first new
/// flow of case (c).
fn generate(lab: &Lab, frame: &[u8], ifindex: u32, case: Case, first: u32) -> anyhow::Result<Run> {
    let mut frame = frame.to_vec();
    if case == Case::Blocked {
        frame[30..34].copy_from_slice(&BLOCKED);
        common::seal(&mut frame);
    }
    let taken0 = lab.rx_packets(&lab.gateway, lab::GW_LAN_IF)?;
    let fwd0 = lab.rx_packets(&lab.internet, "eth0")?;
    let name = if case == Case::NewFlows {
        "xdp_gen_new_flows"
    } else {
        "xdp_gen_same"
    };
    let wall = run_in(&lab.client, move || {
        let mut ebpf = EbpfLoader::new()
            .load(GENERATOR_OBJECT)
            .context("load the generator")?;
        let mut next: Array<_, u32> =
            Array::try_from(ebpf.map_mut("GEN_NEXT").context("no GEN_NEXT")?)?;
        next.set(0, first, 0)?;
        let mut header: Array<_, [u8; 34]> =
            Array::try_from(ebpf.map_mut("GEN_HEADER").context("no GEN_HEADER")?)?;
        let template: [u8; 34] = frame[..34]
            .try_into()
            .context("a frame of 34 bytes or more")?;
        header.set(0, template, 0)?;
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .context("no generator program")?
            .try_into()?;
        prog.load().context("the verifier refused the generator")?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let ctx: Vec<u8> = [0, frame.len() as u32, 0, ifindex, 0, 0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let t = Instant::now();
        prog.test_run(TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            repeat: FRAMES,
            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN live frames")?;
        Ok(t.elapsed())
    })?;
    // The last batch may still be in the gateway's softirq: wait until lan0 is quiet.
    lab.wait_quiet(
        &lab.gateway,
        lab::GW_LAN_IF,
        Duration::from_millis(100),
        Duration::from_secs(10),
    )?;
    let taken = lab.rx_packets(&lab.gateway, lab::GW_LAN_IF)? - taken0;
    let fwd = lab.rx_packets(&lab.internet, "eth0")? - fwd0;
    let s = wall.as_secs_f64();
    Ok(Run {
        taken: taken as f64 / s,
        forwarded: fwd as f64 / s,
    })
}

/// A peer on the gateway's lan0, removed when dropped.
enum Peer {
    None,
    Filter(#[allow(dead_code)] Ebpf),
    Nft(String),
    Agent(Agent),
}

impl Drop for Peer {
    fn drop(&mut self) {
        match self {
            Peer::Nft(ns) => {
                let _ = in_ns(ns, &["nft", "delete", "table", "netdev", "xa_bench"]);
            }
            Peer::Agent(a) => {
                let _ = a.stop();
            }
            Peer::None | Peer::Filter(_) => {}
        }
    }
}

fn filter_peer(lab: &Lab) -> anyhow::Result<Peer> {
    let ebpf = run_in(&lab.gateway, || {
        let mut ebpf = EbpfLoader::new()
            .load(FILTER_BASELINE_OBJECT)
            .context("load the filter")?;
        {
            let mut m: HashMap<_, [u8; 4], u32> =
                HashMap::try_from(ebpf.map_mut("FILTER_V4").context("no FILTER_V4")?)?;
            for a in list() {
                m.insert(a, 1, 0)?;
            }
        }
        let prog: &mut Xdp = ebpf
            .program_mut("xdp_filter_baseline")
            .context("no filter program")?
            .try_into()?;
        prog.load()?;
        prog.attach(lab::GW_LAN_IF, XdpMode::Driver)
            .context("attach the filter to lan0 (native)")?;
        Ok(ebpf)
    })?;
    Ok(Peer::Filter(ebpf))
}

fn nft_peer(lab: &Lab, dir: &Path) -> anyhow::Result<Peer> {
    let mut text = String::from(
        "table netdev xa_bench {\n set blocked { type ipv4_addr; size 2097152; elements = {\n",
    );
    for a in list() {
        let _ = writeln!(text, "{},", Ipv4Addr::from(a));
    }
    let _ = writeln!(
        text,
        "}} }}\n chain ingress {{ type filter hook ingress device {} priority 0; ip daddr @blocked drop; }}\n}}",
        lab::GW_LAN_IF
    );
    let file = dir.join("blocked.nft");
    std::fs::write(&file, text).with_context(|| format!("write {}", file.display()))?;
    in_ns(
        &lab.gateway,
        &["nft", "-f", file.to_str().context("path not UTF-8")?],
    )?;
    Ok(Peer::Nft(lab.gateway.clone()))
}

fn agent_peer(lab: &Lab, dir: &Path, list: Option<&Path>) -> anyhow::Result<Agent> {
    let bin = Path::new(env!("CARGO_BIN_EXE_xdp-audit"));
    let mut args = vec![
        "--iface",
        lab::GW_LAN_IF,
        "--no-pin",
        "--xdp-mode",
        "native",
    ];
    if let Some(l) = list {
        args.extend(["--blocklist", l.to_str().context("path not UTF-8")?]);
    }
    Agent::start(lab, &lab.gateway, bin, dir, &args)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Set by `cargo xtask bench --lab`: the lab takes minutes, so a plain `cargo bench` says how
/// to run it instead.
const LAB_ENV: &str = "XDP_AUDIT_BENCH_LAB";

fn main() -> anyhow::Result<()> {
    if std::env::var_os(LAB_ENV).is_none() {
        println!("lab: not run (minutes, root); run it with `cargo xtask bench --lab` (sets {LAB_ENV}=1)");
        return Ok(());
    }
    require("nft", "nftables")?;
    require("ethtool", "ethtool")?;
    let (lab, frame, client_if) = lab()?;
    let scratch = lab.temp_dir("bench")?;
    let list_file = scratch.path().join("block.list");
    let mut text = String::new();
    for a in list() {
        let _ = writeln!(text, "{}", Ipv4Addr::from(a));
    }
    std::fs::write(&list_file, text).context("write the list")?;
    let peers = [
        "no program",
        "exact-match filter",
        "nftables ingress set",
        "xdp-audit",
    ];
    // results[peer][case]
    let mut results = vec![[Run::default(); 3]; peers.len()];
    let mut first = 0u32;
    for (p, name) in peers.iter().enumerate() {
        eprintln!("lab bench: {name}: setting up (list of {LIST} addresses)");
        let peer = match p {
            0 => Peer::None,
            1 => filter_peer(&lab)?,
            2 => nft_peer(&lab, scratch.path())?,
            _ => Peer::Agent(agent_peer(
                &lab,
                &scratch.path().join("agent"),
                Some(&list_file),
            )?),
        };
        for (c, (case, _)) in CASES.iter().enumerate() {
            let mut runs = Vec::new();
            for _ in 0..ROUNDS {
                runs.push(generate(&lab, &frame, client_if, *case, first)?);
                first = first.wrapping_add(FRAMES);
            }
            results[p][c] = Run {
                taken: median(runs.iter().map(|r| r.taken).collect()),
                forwarded: median(runs.iter().map(|r| r.forwarded).collect()),
            };
        }
        drop(peer);
    }
    println!(
        "lab: {FRAMES} 64-byte frames per run from the generator (XDP live frames, one CPU), median of {ROUNDS}; list {LIST} addresses; load average {}",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    println!(
        "{:<22} {:>24} {:>24} {:>24}",
        "Mpps taken / forwarded", CASES[0].1, CASES[1].1, CASES[2].1
    );
    for (p, name) in peers.iter().enumerate() {
        let mut line = format!("{name:<22}");
        for r in &results[p] {
            let _ = write!(
                line,
                " {:>11.3} / {:>10.3}",
                r.taken / 1e6,
                r.forwarded / 1e6
            );
        }
        println!("{line}");
    }
    // Drops: what the gateway took in and did not forward.
    let drop_rate = |p: usize| results[p][1].taken - results[p][1].forwarded;
    let (filter, nft, ours) = (drop_rate(1), drop_rate(2), drop_rate(3));
    let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
    println!(
        "drop Mpps (b): xdp-audit {:.3}, filter {:.3} (x{:.2}, target >= 0.8: {}), nftables {:.3} (x{:.2}, target >= 2: {})",
        ours / 1e6,
        filter / 1e6,
        ours / filter,
        verdict(ours >= 0.8 * filter),
        nft / 1e6,
        ours / nft,
        verdict(ours >= 2.0 * nft)
    );
    let (fwd_none, fwd_ours) = (results[0][0].forwarded, results[3][0].forwarded);
    println!(
        "forwarding (a): xdp-audit {:.3} Mpps vs no program {:.3} (x{:.2}, target >= 0.9: {})",
        fwd_ours / 1e6,
        fwd_none / 1e6,
        fwd_ours / fwd_none,
        verdict(fwd_ours >= 0.9 * fwd_none)
    );
    burst(&lab, &frame, client_if, scratch.path(), first)
}

/// 1,000,000 new flows at the generator's rate through an agent with the default sizes; the
/// store must hold each, or the status count each lost.
fn burst(lab: &Lab, frame: &[u8], client_if: u32, dir: &Path, first: u32) -> anyhow::Result<()> {
    let mut agent = agent_peer(lab, &dir.join("burst"), None)?;
    // `status` reads the snapshot the agent writes once a sweep: wait for the first.
    poll_until(
        Duration::from_secs(30),
        "the agent's first status snapshot",
        || Ok(agent.status().is_ok()),
    )?;
    let taken0 = lab.rx_packets(&lab.gateway, lab::GW_LAN_IF)?;
    let run = generate(lab, frame, client_if, Case::NewFlows, first)?;
    let taken = lab.rx_packets(&lab.gateway, lab::GW_LAN_IF)? - taken0;
    // Every start event read before the stop (the stop flushes the table).
    let mut last = (u64::MAX, Instant::now());
    poll_until(
        Duration::from_secs(60),
        "the agent's reader is idle",
        || {
            let n = agent.status()?["pipeline"]["processed"]
                .as_u64()
                .unwrap_or(0);
            if n != last.0 {
                last = (n, Instant::now());
            }
            Ok(last.1.elapsed() >= Duration::from_secs(2))
        },
    )?;
    let status = agent.status()?;
    let code = agent.stop()?;
    if code != 0 {
        bail!("the agent exited with {code}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xdp-audit"))
        .args(["query", "--count", "--log-dir"])
        .arg(dir.join("burst"))
        .output()
        .context("xdp-audit query --count")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let records: u64 = text
        .trim()
        .parse()
        .with_context(|| format!("query --count printed {text:?}"))?;
    // Counters of work the program could not do. `lost_flow_start` is not a lost record: the
    // sweeper writes such a flow from the table; the others (ring reservations failed for
    // other events, flow-table inserts refused) are flows or events the store may lack.
    let counters: Vec<(String, u64)> = status["counters"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, v)| {
                    (k.contains("lost") || k.contains("failed")) && v.as_u64().unwrap_or(0) > 0
                })
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    // Flows whose start was lost and that the full table evicted before a sweep found
    // them: the sweeper counts those (`lost_unseen`); every other lost start it recorded.
    let unseen = status["flows"]["lost_unseen"].as_u64().unwrap_or(0);
    let counted: u64 = counters
        .iter()
        .filter(|(k, _)| k != "lost_flow_start")
        .map(|(_, n)| n)
        .sum::<u64>()
        + unseen;
    println!(
        "burst: {taken} new flows into the gateway at {:.3} Mpps (default flow table and ring); store holds {records} records; status counters {counters:?} (lost_flow_start: recorded from the table instead, but for {unseen} evicted unseen); flows sent - records - counted losses = {}",
        run.taken / 1e6,
        taken as i64 - records as i64 - counted as i64
    );
    println!(
        "burst target (every flow recorded or its loss counted): {}",
        if records + counted >= taken {
            "met"
        } else {
            "NOT MET"
        }
    );
    Ok(())
}
