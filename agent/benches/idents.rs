//! Attribution lookup figures: `cargo bench -p xdp-audit --bench idents`.
//!
//! Builds 100,000 subscriber rows (50% IPv4 addresses, 10% IPv4 ranges, 10% IPv4 CIDRs /20 to
//! /30, 10% IPv6 CIDRs /48 to /64, 20% MACs; 10% with a validity window) as a CSV file's
//! bytes, parses it, and builds the table; then 50,000 DHCP leases in the bindings timeline
//! (some addresses with two holders over time). One million random client lookups (70% IPv4
//! addresses that have a lease or a row, 20% IPv6, 10% misses; the packet's MAC with each) go
//! through the identity join, and, as the baseline measured in the same run, through one
//! `HashMap<IpAddr, u32>` lookup of the same keys. Random keys miss the CPU caches on every
//! lookup (the worst case); a gateway's records come from its active clients, so a second
//! mix draws the same kinds of keys from 5,000 clients, some far busier than others (squared
//! uniform), which is what the enrich stage sees. Prints ns per lookup (best of five rounds)
//! and the ratio to the baseline for both mixes, plus the parse and build times. Times are the
//! thread's CPU time, not wall time: on a shared machine the wall clock also counts the time
//! other processes held the core.
//! `XDP_AUDIT_BENCH_PARTS=1` also times each lookup on its own.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use xdp_audit::enrich::identity::Attribution;
use xdp_audit::enrich::leases::bindings::{Bindings, Holder, Observation, Source};
use xdp_audit::enrich::subscribers::{ParsedSubscribers, SubscriberTable};
use xdp_audit::enrich::Validity;
use xdp_audit::record::Mac;
use xdp_audit::store::testgen::Rng;

const SUBSCRIBERS: usize = 100_000;
const LEASES: usize = 50_000;
const LOOKUPS: usize = 1_000_000;
const ROUNDS: usize = 5;
const ACTIVE: usize = 5_000;
const S: i64 = 1_000_000_000;
const NOW: i64 = 1_800_000_000 * S;

/// CPU time of this thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn mac(n: u64) -> Mac {
    let b = n.to_be_bytes();
    Mac([2, b[3], b[4], b[5], b[6], b[7]])
}

/// The subscribers file, and the IPv4 addresses it names one by one (to query).
fn subscribers_csv(rng: &mut Rng) -> (String, Vec<Ipv4Addr>) {
    let mut csv = String::from("match,account,name,valid_from,valid_to\n");
    let mut singles = Vec::new();
    for i in 0..SUBSCRIBERS {
        // Disjoint blocks per row so the file has no conflicts: row i owns 10.x.y.0/24-ish
        // space computed from i, IPv6 rows their own /48s.
        let base = 0x0a00_0000u32 + (i as u32) * 64;
        let matcher = match i % 10 {
            0..=4 => {
                let a = Ipv4Addr::from(base + 1);
                singles.push(a);
                a.to_string()
            }
            5 => format!(
                "{}-{}",
                Ipv4Addr::from(base + 3),
                Ipv4Addr::from(base + 3 + rng.below(50) as u32)
            ),
            6 => {
                let len = 26 + rng.below(5) as u32;
                format!("{}/{len}", Ipv4Addr::from(base))
            }
            7 => {
                let len = 60 + rng.below(5) as u32;
                let net = (0x2001_0db8_u128 << 96) | ((i as u128) << 68);
                format!("{}/{len}", Ipv6Addr::from(net & !(u128::MAX >> len)))
            }
            _ => mac(i as u64).to_string(),
        };
        let window = if i % 10 == 3 {
            "2026-01-01T00:00:00Z,"
        } else {
            ","
        };
        let _ = writeln!(csv, "{matcher},acct-{i},Subscriber {i},{window}");
    }
    (csv, singles)
}

fn main() {
    let mut rng = Rng::new(10);
    let (csv, singles) = subscribers_csv(&mut rng);
    let t = Instant::now();
    let parsed = ParsedSubscribers::parse(csv.as_bytes()).unwrap_or_else(|bad| {
        panic!(
            "generated file has {} bad rows, first {}",
            bad.len(),
            bad[0]
        )
    });
    let parse_time = t.elapsed();
    let t = Instant::now();
    let table = SubscriberTable::build([&parsed]);
    let build_time = t.elapsed();

    // Leases: half of them on the single-address rows, half in the ranges' space; one in
    // five addresses had an earlier holder.
    let mut bindings = Bindings::default();
    let mut leased = Vec::with_capacity(LEASES);
    let t = Instant::now();
    for i in 0..LEASES {
        let ip = if i % 2 == 0 {
            singles[i / 2 % singles.len()]
        } else {
            Ipv4Addr::from(0x0a00_0000u32 + (i as u32) * 64 + 5)
        };
        leased.push(ip);
        let holder = |n: u64| Holder {
            mac: Some(mac(n)),
            client_id: None,
        };
        if i % 5 == 0 {
            bindings.observe(
                Observation {
                    ip: IpAddr::V4(ip),
                    holder: holder(1_000_000 + i as u64),
                    hostname: Some(format!("old-{i}").into()),
                    valid: Validity {
                        from: Some(NOW - 7200 * S),
                        to: Some(NOW - 3600 * S),
                    },
                    source: Source::Packet,
                },
                NOW - 7200 * S,
            );
        }
        bindings.observe(
            Observation {
                ip: IpAddr::V4(ip),
                holder: holder(i as u64),
                hostname: Some(format!("host-{i}").into()),
                valid: Validity {
                    from: Some(NOW - 3600 * S),
                    to: Some(NOW + 3600 * S),
                },
                source: Source::Packet,
            },
            NOW - 3600 * S,
        );
    }
    let lease_time = t.elapsed();

    let random: Vec<(IpAddr, Option<Mac>, i64)> = (0..LOOKUPS)
        .map(|_| {
            let r = rng.below(100);
            let t = NOW - rng.below(7000) as i64 * S;
            if r < 35 {
                let i = rng.below(LEASES as u64) as usize;
                (IpAddr::V4(leased[i]), Some(mac(i as u64)), t)
            } else if r < 70 {
                let a = singles[rng.below(singles.len() as u64) as usize];
                (IpAddr::V4(a), Some(mac(rng.below(1 << 20))), t)
            } else if r < 90 {
                let i = rng.below(SUBSCRIBERS as u64 / 10) * 10 + 7;
                let a =
                    (0x2001_0db8_u128 << 96) | (u128::from(i) << 64) | u128::from(rng.next_u64());
                (
                    IpAddr::V6(Ipv6Addr::from(a)),
                    Some(mac(rng.below(LEASES as u64))),
                    t,
                )
            } else {
                (
                    IpAddr::V4(Ipv4Addr::from(0xc000_0200 + rng.below(256) as u32)),
                    None,
                    t,
                )
            }
        })
        .collect();
    let clients: Vec<(IpAddr, Option<Mac>, i64)> = random[..ACTIVE].to_vec();
    let gateway: Vec<(IpAddr, Option<Mac>, i64)> = (0..LOOKUPS)
        .map(|_| {
            let u = rng.unit();
            clients[((u * u) * ACTIVE as f64) as usize % ACTIVE]
        })
        .collect();
    for (mix, queries) in [
        ("random keys (cache-cold)", &random),
        ("5,000 active clients", &gateway),
    ] {
        println!("## {mix}");
        measure(queries, &table, &bindings);
    }
    println!(
        "subscribers: {} rows ({} KiB CSV) parsed in {:.0} ms, table built in {:.0} ms; {} leases applied in {:.0} ms",
        table.rows(),
        csv.len() / 1024,
        parse_time.as_secs_f64() * 1e3,
        build_time.as_secs_f64() * 1e3,
        bindings.addresses(),
        lease_time.as_secs_f64() * 1e3
    );
}

fn measure(queries: &[(IpAddr, Option<Mac>, i64)], table: &SubscriberTable, bindings: &Bindings) {
    let baseline: HashMap<IpAddr, u32> = queries
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 0)
        .map(|(i, q)| (q.0, i as u32))
        .collect();

    let join = Attribution {
        subscribers: table,
        bindings,
    };
    let (mut best_join, mut best_subs, mut best_base) =
        (Duration::MAX, Duration::MAX, Duration::MAX);
    let mut attributed = 0;
    for _ in 0..ROUNDS {
        let t = thread_cpu();
        let mut hits = 0usize;
        for &(ip, m, ts) in queries {
            let id = join.identity(black_box(ip), black_box(m), black_box(ts));
            hits += usize::from(id.subscriber.is_some());
        }
        best_join = best_join.min(thread_cpu() - t);
        attributed = black_box(hits);

        let t = thread_cpu();
        let mut hits = 0usize;
        for &(ip, m, ts) in queries {
            hits += usize::from(
                table
                    .account_at(black_box(ip), black_box(m), black_box(ts))
                    .is_some(),
            );
        }
        best_subs = best_subs.min(thread_cpu() - t);
        black_box(hits);

        let t = thread_cpu();
        let mut hits = 0usize;
        for &(ip, _, _) in queries {
            hits += baseline
                .get(&black_box(ip))
                .map_or(0, |&v| (v & 1) as usize);
        }
        best_base = best_base.min(thread_cpu() - t);
        black_box(hits);
    }
    let per = |d: Duration| d.as_nanos() as f64 / LOOKUPS as f64;
    if std::env::var_os("XDP_AUDIT_BENCH_PARTS").is_some() {
        let part = |name: &str, f: &dyn Fn(IpAddr, Option<Mac>, i64) -> bool| {
            let mut best = Duration::MAX;
            for _ in 0..ROUNDS {
                let t = thread_cpu();
                let mut hits = 0usize;
                for &(ip, m, ts) in queries {
                    hits += usize::from(f(black_box(ip), black_box(m), black_box(ts)));
                }
                black_box(hits);
                best = best.min(thread_cpu() - t);
            }
            println!("part {name}: {:.1} ns", per(best));
        };
        part("bindings.at", &|ip, _, t| bindings.at(ip, t).is_some());
        part("subscribers.by_mac", &|_, m, t| {
            m.is_some_and(|m| table.by_mac(m, t).is_some())
        });
        part("subscribers.by_addr", &|ip, _, t| {
            table.by_addr(ip, t).is_some()
        });
        part("bindings.v4_of_mac", &|_, m, t| {
            m.is_some_and(|m| bindings.v4_of_mac(m, t).is_some())
        });
    }
    println!(
        "{LOOKUPS} lookups, best of {ROUNDS} rounds; {:.0}% attributed",
        attributed as f64 * 100.0 / LOOKUPS as f64
    );
    println!("| lookup | ns/lookup | baseline HashMap<IpAddr,u32> ns | ratio |");
    println!("|---|---|---|---|");
    for (name, d) in [
        ("identity join (leases + subscribers)", best_join),
        ("subscribers only (MAC, then address)", best_subs),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1}x |",
            per(d),
            per(best_base),
            per(d) / per(best_base)
        );
    }
    println!(
        "join throughput: {:.2} M lookups/s on one core",
        LOOKUPS as f64 / best_join.as_secs_f64() / 1e6
    );
}
