//! Bounded random testing, in every `cargo test`, of the parsers the enrich stage runs on
//! untrusted payloads: DNS, TLS, HTTP, QUIC (`enrich::names`) and DHCP (`enrich::dhcp`). They
//! are fed the real lab captures of `tests/fixtures/names` and `tests/fixtures/idents` cut at
//! every length, mutated (bit flips, bytes set to boundary values, insertions, deletions,
//! 16-bit length fields overwritten, DNS compression pointers bent back into loops, inputs
//! grown past every budget) and random bytes behind plausible first bytes. No input may panic,
//! and the failures must be counted by reason, reaching the deep error paths of each parser.
//!
//! Seeded and bounded: `PARSERS_RANDOM_SEED` (default 0x5eed, printed) replays a run, and
//! after a fixed first round the mutations go on for `PARSERS_RANDOM_SECS` (default 10 s).
//! The `cargo fuzz` targets in `fuzz/` are for deep runs (see fuzz/README.md).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use xdp_audit::enrich::dhcp::{DhcpCounters, DhcpLearner, DhcpPacket};
use xdp_audit::enrich::leases::bindings::Bindings;
use xdp_audit::enrich::names::flow::{FlowNames, Progress};
use xdp_audit::enrich::names::payload::Snippet;
use xdp_audit::enrich::names::{dns, http, quic, tls, FailureCounts, ParseFailure};
use xdp_audit::store::testgen::Rng;

mod names_capture;
use names_capture::{capture, fixture};

/// One payload of the corpus and the UDP ports it travelled between (DHCP tells v4 from v6
/// by them); `(0, 0)` for the name sources, which the DHCP learner then sees on 67/68.
struct Input {
    ports: (u16, u16),
    bytes: Vec<u8>,
}

/// What every parser said, by reason.
#[derive(Default)]
struct Counts {
    names: FailureCounts,
    dhcp: DhcpCounters,
    runs: u64,
}

impl Counts {
    fn dhcp_failures(&self) -> BTreeMap<&'static str, u64> {
        let d = &self.dhcp;
        BTreeMap::from([
            ("truncated", d.truncated),
            ("not_dhcp", d.not_dhcp),
            ("malformed", d.malformed),
            ("no_message_type", d.no_message_type),
            ("incomplete", d.incomplete),
            ("decoder_panic", d.decoder_panic),
        ])
    }
}

/// A number from the environment (`0x` for hex), or `default`.
fn env_u64(name: &str, default: u64) -> u64 {
    let Ok(v) = std::env::var(name) else {
        return default;
    };
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}"))
}

/// Every name parser on one input; the failures counted by reason.
fn name_parsers(input: &[u8], counts: &mut FailureCounts) {
    let mut note = |r: Result<(), ParseFailure>| {
        if let Err(e) = r {
            counts.count(e);
        }
    };
    note(tls::client_hello_sni(input).map(|_| ()));
    note(tls::handshake_sni(input).map(|_| ()));
    note(http::host(input).map(|_| ()));
    note(quic::initial_sni([input]).map(|_| ()));
    note(dns::parse(input).map(|_| ()));
    for m in dns::tcp_messages(input) {
        note(dns::parse(m).map(|_| ()));
    }
    // Through reassembly as a flow's segments in order, as XDP's snippets bring them.
    let mut f = FlowNames::tcp(Some(1000));
    let mut progress = Progress::NeedMore;
    for (i, segment) in input.chunks(1448).enumerate() {
        progress = f.push(Snippet {
            seq: 1000 + (i * 1448) as u32,
            data: segment,
        });
        if progress != Progress::NeedMore {
            break;
        }
    }
    if progress == Progress::NeedMore {
        progress = f.finish();
    }
    if let Progress::Failed(e) = progress {
        counts.count(e);
    }
    // Its halves out of order, the stream's start unknown.
    let mut f = FlowNames::tcp(None);
    let half = input.len() / 2;
    f.push(Snippet {
        seq: 1000 + half as u32,
        data: &input[half..],
    });
    if let Progress::Failed(e) = f.push(Snippet {
        seq: 1000,
        data: &input[..half],
    }) {
        counts.count(e);
    }
}

/// Every parser on one input.
fn all_parsers(input: &Input, bytes: &[u8], counts: &mut Counts) {
    name_parsers(bytes, &mut counts.names);
    let ports = match input.ports {
        (0, 0) => (68, 67),
        p => p,
    };
    let mut learner = DhcpLearner::new();
    learner.learn(
        &DhcpPacket {
            payload: bytes,
            src_port: ports.0,
            dst_port: ports.1,
            src_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            eth_dst: None,
            t_ns: 1_000,
        },
        &mut Bindings::default(),
    );
    let c = learner.counters();
    let d = &mut counts.dhcp;
    d.truncated += c.truncated;
    d.not_dhcp += c.not_dhcp;
    d.malformed += c.malformed;
    d.no_message_type += c.no_message_type;
    d.incomplete += c.incomplete;
    d.decoder_panic += c.decoder_panic;
    d.ignored += c.ignored;
    d.v4_ack += c.v4_ack;
    d.v6_reply += c.v6_reply;
    counts.runs += 1;
}

/// Every payload of every capture (the client's and the server's), plus the RFC vectors.
fn corpus() -> Vec<Input> {
    let mut out = Vec::new();
    let names = [
        "tls-openssl-sni.pcap",
        "tls-openssl-mss200.pcap",
        "tls-curl-v6.pcap",
        "http-curl-host.pcap",
        "http-curl-proxy.pcap",
        "dns-dig-cname.pcap",
        "dns-dig-tcp.pcap",
        "quic-aioquic.pcap",
    ];
    // The DHCP captures live beside the name captures.
    let dhcp = ["../idents/dnsmasq-dhcp.pcap", "../idents/kea-dhcp.pcap"];
    for file in names {
        out.extend(capture(file).into_iter().map(|p| Input {
            ports: (0, 0),
            bytes: p.payload,
        }));
    }
    for file in dhcp {
        out.extend(capture(file).into_iter().map(|p| Input {
            ports: (p.src.1, p.dst.1),
            bytes: p.payload,
        }));
    }
    for file in [
        "rfc9001-a2-client-initial.bin",
        "rfc9369-a2-client-initial.bin",
    ] {
        out.push(Input {
            ports: (0, 0),
            bytes: fixture(file),
        });
    }
    out.retain(|i| !i.bytes.is_empty());
    out
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() as u64 + 1) as usize;
        match rng.below(9) {
            0 => v.truncate(at),
            1 if at < v.len() => v[at] ^= 1 << rng.below(8),
            2 if at < v.len() => {
                v[at] = [0x00, 0xff, 0xc0, 0x3f, 0x7f, 0x80][rng.below(6) as usize]
            }
            3 => v.insert(at, rng.next_u64() as u8),
            4 if at < v.len() => {
                v.remove(at);
            }
            // A DNS compression pointer to itself or back before it: a loop when the
            // target leads here again.
            5 if at + 1 < v.len() => {
                let to = rng.below(at as u64 + 1) as u16 & 0x3fff;
                v[at..at + 2].copy_from_slice(&(0xc000 | to).to_be_bytes());
            }
            // Over-long: the input repeated past every length limit and budget.
            6 if v.len() < 8_192 => {
                let copy = v.clone();
                for _ in 0..1 + rng.below(16) {
                    v.extend_from_slice(&copy);
                }
            }
            // Stretched: a run of one of its bytes inside it, past the reassembly budget
            // when the message has no end before it (an HTTP header block).
            7 if at < v.len() && v.len() < 8_192 => {
                let run = vec![v[at]; 1_000 + rng.below(6_000) as usize];
                v.splice(at..at, run);
            }
            // A length-like field pointing far away: lengths are where parsers break.
            _ if at + 1 < v.len() => {
                v[at..at + 2].copy_from_slice(&(rng.next_u64() as u16).to_be_bytes())
            }
            _ => {}
        }
    }
    v
}

/// Random bytes behind a first byte (or a DHCP header) that gets past the first checks.
fn random_input(rng: &mut Rng) -> Input {
    let len = rng.below(1500) as usize;
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    let ports = match rng.below(3) {
        0 => (68, 67),
        1 => (546, 547),
        _ => (0, 0),
    };
    if let Some(b) = bytes.first_mut() {
        *b = [0x16, 0xc3, 0x47, 0x00, 0xd7, 0x01, 0x02][rng.below(7) as usize];
    }
    // BOOTP fixed part and the magic cookie, so DHCPv4 options are reached.
    if ports == (68, 67) && bytes.len() >= 240 {
        bytes[236..240].copy_from_slice(&[99, 130, 83, 99]);
    }
    Input { ports, bytes }
}

#[test]
fn every_payload_parser_survives_cut_mutated_and_random_input_and_counts_why() {
    let seed = env_u64("PARSERS_RANDOM_SEED", 0x5eed);
    let budget = Duration::from_secs(env_u64("PARSERS_RANDOM_SECS", 10));
    eprintln!("parsers_random: seed {seed:#x} (PARSERS_RANDOM_SEED), budget {budget:?}");
    let corpus = corpus();
    let dhcp_inputs = corpus.iter().filter(|i| i.ports != (0, 0)).count();
    assert!(
        dhcp_inputs >= 8,
        "the DHCP captures give {dhcp_inputs} payloads"
    );
    let mut rng = Rng::new(seed);
    let mut counts = Counts::default();
    let started = Instant::now();

    // A fixed first round, so every run reaches the same paths whatever the machine's speed.
    for input in &corpus {
        for cut in 0..=input.bytes.len().min(400) {
            all_parsers(input, &input.bytes[..cut], &mut counts);
        }
        for _ in 0..100 {
            all_parsers(input, &mutate(&mut rng, &input.bytes), &mut counts);
        }
    }
    for _ in 0..2000 {
        let input = random_input(&mut rng);
        all_parsers(&input, &input.bytes, &mut counts);
    }
    // Then more of the same until the budget is spent.
    while started.elapsed() < budget {
        let input = &corpus[rng.below(corpus.len() as u64) as usize];
        all_parsers(input, &mutate(&mut rng, &input.bytes), &mut counts);
        let random = random_input(&mut rng);
        all_parsers(&random, &random.bytes, &mut counts);
    }

    let names: BTreeMap<&str, u64> = counts
        .names
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.as_str(), n))
        .collect();
    let dhcp = counts.dhcp_failures();
    eprintln!(
        "parsers_random: {} inputs in {:?}; name failures {names:?}; DHCP failures {dhcp:?}, \
         {} ACKs and {} Replies learned",
        counts.runs,
        started.elapsed(),
        counts.dhcp.v4_ack,
        counts.dhcp.v6_reply
    );
    // The inputs must reach the parsers' error paths, not stop at the first byte.
    for must in [
        ParseFailure::TlsBadRecord,
        ParseFailure::TlsBadHello,
        ParseFailure::TlsBadExtension,
        ParseFailure::HttpBadRequest,
        ParseFailure::QuicBadHeader,
        ParseFailure::QuicDecrypt,
        ParseFailure::DnsBadHeader,
        ParseFailure::DnsBadPointer,
        ParseFailure::DnsBadName,
        ParseFailure::DnsBadRecord,
        ParseFailure::Truncated,
        ParseFailure::OverBudget,
    ] {
        assert!(
            counts.names.get(must) > 0,
            "no input reached {must:?}; reached {names:?}"
        );
    }
    for must in ["truncated", "not_dhcp", "malformed"] {
        assert!(dhcp[must] > 0, "no DHCP input counted {must}; got {dhcp:?}");
    }
    // Mutations keep some messages whole: the learner still learns from those.
    assert!(
        counts.dhcp.v4_ack > 0 && counts.dhcp.v6_reply > 0,
        "no mutated ACK or Reply was still learned from: the corpus did not reach the learner"
    );
}
