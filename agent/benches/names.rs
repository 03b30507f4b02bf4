//! Name-source figures, each next to a baseline measured in the same run: ClientHello SNI
//! of real captured hellos (baseline: copying the same bytes), a two-segment hello through
//! reassembly, a QUIC Initial's key derivation, decryption and parse, a DNS response's parse,
//! and the per-client DNS cache with 200,000 pairs (baseline: a std `HashMap` lookup of a
//! key of the same size in a map of the same size).
//!
//! Run: `cargo bench -p xdp-audit --bench names`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use xdp_audit::enrich::names::cache::{DnsCache, DnsCacheConfig, BYTES_PER_ENTRY};
use xdp_audit::enrich::names::flow::{FlowNames, Progress};
use xdp_audit::enrich::names::payload::Snippet;
use xdp_audit::enrich::names::{dns, quic, tls, DomainName};
use xdp_audit::store::testgen::Rng;

#[path = "../tests/names_capture/mod.rs"]
mod names_capture;
use names_capture::{capture, fixture, Packet};

const ENTRIES: usize = 200_000;

/// ns per call of `f`: one run of `n` calls.
fn run(n: usize, f: &mut impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// ns per call of `f` and of `base`, runs interleaved so both see the same machine load;
/// the best of five runs each.
fn measure(n: usize, mut f: impl FnMut(usize), mut base: impl FnMut(usize)) -> (f64, f64) {
    let (mut best, mut best_base) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        best = best.min(run(n, &mut f));
        best_base = best_base.min(run(n, &mut base));
    }
    (best, best_base)
}

/// A baseline: copying `bytes`.
fn copier(bytes: &[u8]) -> impl FnMut(usize) + '_ {
    let mut dst = vec![0u8; bytes.len()];
    move |_| {
        dst.copy_from_slice(black_box(bytes));
        black_box(&dst);
    }
}

fn row(what: &str, ns: f64, base_name: &str, base: f64) {
    println!(
        "{what:<44} {ns:>9.1} ns/op   {base_name:<30} {base:>8.1} ns   x{:>6.1}",
        ns / base
    );
}

fn first_payload(packets: &[Packet], port: u16) -> Vec<u8> {
    packets
        .iter()
        .find(|p| p.dst.1 == port && !p.payload.is_empty())
        .map(|p| p.payload.clone())
        .expect("a client payload in the capture")
}

fn main() {
    println!("names: {ENTRIES} cache pairs; best of 5 interleaved runs; ratios against a baseline of the same run");
    for (file, what) in [
        ("tls-openssl-sni.pcap", "TLS SNI, openssl hello"),
        ("tls-curl-v6.pcap", "TLS SNI, curl hello"),
    ] {
        let hello = first_payload(&capture(file), 443);
        assert!(matches!(
            tls::client_hello_sni(&hello),
            Ok(tls::SniOutcome::Name(_))
        ));
        let parse = |_| {
            black_box(tls::client_hello_sni(black_box(&hello)).ok());
        };
        let (ns, base) = measure(200_000, parse, copier(&hello));
        row(
            &format!("{what} ({} B)", hello.len()),
            ns,
            "memcpy of the hello",
            base,
        );
    }

    let segments: Vec<Packet> = capture("tls-openssl-mss200.pcap")
        .into_iter()
        .filter(|p| p.dst.1 == 443)
        .collect();
    let isn = segments
        .iter()
        .find_map(|p| p.tcp.filter(|t| t.syn))
        .expect("the capture has the SYN")
        .seq;
    let data: Vec<&Packet> = segments.iter().filter(|p| !p.payload.is_empty()).collect();
    let total: Vec<u8> = data
        .iter()
        .take(2)
        .flat_map(|p| p.payload.clone())
        .collect();
    let flow = |_| {
        let mut f = FlowNames::tcp(Some(isn.wrapping_add(1)));
        for p in data.iter().take(2).rev() {
            let seq = p.tcp.expect("TCP").seq;
            if f.push(Snippet {
                seq,
                data: &p.payload,
            }) != Progress::NeedMore
            {
                break;
            }
        }
        black_box(f.finish());
    };
    let (ns, base) = measure(100_000, flow, copier(&total));
    row(
        "TCP flow: 2 segments reversed -> SNI",
        ns,
        "memcpy of the hello",
        base,
    );

    let initial = fixture("rfc9001-a2-client-initial.bin");
    let quic_parse = |_| {
        black_box(quic::initial_sni([black_box(&initial[..])]).ok());
    };
    let (ns, base) = measure(20_000, quic_parse, copier(&initial));
    row(
        "QUIC Initial: keys, decrypt, SNI (1200 B)",
        ns,
        "memcpy of the datagram",
        base,
    );
    let aioquic = first_payload(&capture("quic-aioquic.pcap"), 443);
    let quic_flow = |_| {
        let mut f = FlowNames::quic();
        black_box(f.push(Snippet {
            seq: 0,
            data: black_box(&aioquic),
        }));
    };
    let (ns, base) = measure(20_000, quic_flow, copier(&aioquic));
    row(
        "QUIC flow: aioquic Initial -> SNI",
        ns,
        "memcpy of the datagram",
        base,
    );

    let response = capture("dns-dig-cname.pcap")
        .into_iter()
        .find(|p| p.src.1 == 53)
        .expect("a response")
        .payload;
    let dns_parse = |_| {
        black_box(dns::parse(black_box(&response)).ok());
    };
    let (ns, base) = measure(500_000, dns_parse, copier(&response));
    row(
        &format!("DNS response, CNAME + A ({} B)", response.len()),
        ns,
        "memcpy of the message",
        base,
    );

    cache_rows();
}

/// The cache: 200,000 (client, address) pairs over 2,000 clients and 20,000 names, looked up
/// in random order (most lookups miss the CPU caches, as they will in the agent).
fn cache_rows() {
    let mut rng = Rng::new(42);
    let names: Vec<DomainName> = (0..20_000)
        .map(|i| {
            DomainName::from_wire(format!("host{i}.example{}.com", i % 97).as_bytes())
                .expect("valid")
        })
        .collect();
    let pairs: Vec<(IpAddr, IpAddr)> = (0..ENTRIES)
        .map(|i| {
            let client = IpAddr::from([10, 0, (i % 2000 / 250) as u8, (i % 250) as u8]);
            let r = rng.next_u64();
            (
                client,
                IpAddr::from([
                    (r >> 24) as u8 | 1,
                    (r >> 16) as u8,
                    (r >> 8) as u8,
                    r as u8,
                ]),
            )
        })
        .collect();
    let key = |c: IpAddr, a: IpAddr| -> [u8; 32] {
        let b = |x: IpAddr| match x {
            IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            IpAddr::V6(v) => v.octets(),
        };
        let mut k = [0u8; 32];
        k[..16].copy_from_slice(&b(c));
        k[16..].copy_from_slice(&b(a));
        k
    };
    let map: HashMap<[u8; 32], u32> = pairs
        .iter()
        .enumerate()
        .map(|(i, (c, a))| (key(*c, *a), i as u32))
        .collect();
    let order: Vec<usize> = (0..1_000_000)
        .map(|_| rng.below(ENTRIES as u64) as usize)
        .collect();
    let map_get = |i: usize| {
        let (c, a) = pairs[order[i]];
        black_box(map.get(&key(c, a)));
    };

    let mut insert = f64::INFINITY;
    let mut cache = DnsCache::new(DnsCacheConfig::default());
    for _ in 0..3 {
        cache = DnsCache::new(DnsCacheConfig::default());
        let t = Instant::now();
        fill(&mut cache, &pairs, &names, |_, c| c);
        insert = insert.min(t.elapsed().as_nanos() as f64 / ENTRIES as f64);
    }
    // At capacity: every insert of a new pair evicts the oldest.
    let mut churn = DnsCache::new(DnsCacheConfig::default());
    fill(&mut churn, &pairs, &names, |_, c| c);
    let t = Instant::now();
    fill(&mut churn, &pairs, &names, |i, _| {
        IpAddr::from([172, 16, 0, (i % 250) as u8])
    });
    let evicting = t.elapsed().as_nanos() as f64 / ENTRIES as f64;
    let (hit, base) = measure(
        order.len(),
        |i| {
            let (c, a) = pairs[order[i]];
            black_box(cache.lookup(c, a, i64::MIN, 2_000));
        },
        map_get,
    );
    let (miss, _) = measure(
        order.len(),
        |i| {
            let (c, a) = pairs[order[i]];
            black_box(cache.lookup(a, c, i64::MIN, 2_000));
        },
        map_get,
    );
    row(
        "DnsCache insert, new pair (200k pairs)",
        insert,
        "std HashMap get (200k)",
        base,
    );
    row(
        "DnsCache insert at capacity (evicting)",
        evicting,
        "std HashMap get (200k)",
        base,
    );
    row(
        "DnsCache lookup hit (200k pairs)",
        hit,
        "std HashMap get (200k)",
        base,
    );
    row(
        "DnsCache lookup miss (200k pairs)",
        miss,
        "std HashMap get (200k)",
        base,
    );
    println!(
        "DnsCache: {} pairs, {} distinct names, {} evicted in the churn run; ~{BYTES_PER_ENTRY} B per pair plus each distinct name once",
        cache.len(),
        cache.distinct_names(),
        churn.stats().evicted
    );
}

/// Inserts every pair, the client chosen by `client_of(index, client)`.
fn fill(
    cache: &mut DnsCache,
    pairs: &[(IpAddr, IpAddr)],
    names: &[DomainName],
    client_of: impl Fn(usize, IpAddr) -> IpAddr,
) {
    for (i, (c, a)) in pairs.iter().enumerate() {
        cache.insert(client_of(i, *c), *a, &names[i % names.len()], 1_000, 300);
    }
}
