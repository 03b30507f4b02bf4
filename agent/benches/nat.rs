//! NAT figures: lookups in a `NatTable` holding 50,000 open sessions, by inside tuple (the
//! flow join) and by outside address and port (the lawful query), next to a
//! `HashMap<u64, u64>` lookup measured in the same run; the churn of sessions that share one
//! outside address and port (a scan from one source port, which masquerade keeps for every
//! new destination); and conntrack message parse throughput over the messages captured in the
//! lab (`tests/fixtures/nat/lab.bin`).
//!
//! Run: `cargo bench -p xdp-audit --bench nat`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use xdp_audit::enrich::nat::parse::{messages, CtEntry, CtKind, CtMessage, NlItem};
use xdp_audit::enrich::nat::{InsideKey, NatTable, NatUpdate, OutsideKey, TableConfig};
use xdp_audit::store::testgen::Rng;

const SESSIONS: usize = 50_000;
const LOOKUPS: usize = 2_000_000;
const LAB: &[u8] = include_bytes!("../tests/fixtures/nat/lab.bin");

fn session(rng: &mut Rng, id: u32) -> CtEntry {
    let r = rng.next_u64();
    let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0xffff)));
    let server = IpAddr::V4(Ipv4Addr::from((r >> 16) as u32));
    let gw = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1 + (id % 4) as u8));
    let (sport, oport) = ((r >> 48) as u16 | 1024, 1024 + (id % 60_000) as u16);
    CtEntry::masqueraded_tcp(id, (client, sport), (server, 443), (gw, oport))
}

/// Nanoseconds per call of `f` over `n` calls.
fn per_op(n: usize, mut f: impl FnMut(usize) -> usize) -> f64 {
    let mut sink = 0usize;
    let t = Instant::now();
    for i in 0..n {
        sink = sink.wrapping_add(f(i));
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    black_box(sink);
    ns
}

fn main() {
    let mut rng = Rng::new(0x5eed);
    let mut table = NatTable::new(TableConfig::default());
    let entries: Vec<CtEntry> = (0..SESSIONS as u32)
        .map(|id| session(&mut rng, id))
        .collect();
    let built = Instant::now();
    for e in &entries {
        table.apply(NatUpdate::Message {
            msg: CtMessage {
                kind: CtKind::New,
                entry: *e,
            },
            seen_ns: 1,
        });
    }
    let insert_ns = built.elapsed().as_nanos() as f64 / SESSIONS as f64;
    assert_eq!(table.open_len(), SESSIONS, "every session inserted");

    // Probe in a shuffled order so the caches see the table, not one entry.
    let order: Vec<usize> = (0..LOOKUPS)
        .map(|_| (rng.next_u64() % SESSIONS as u64) as usize)
        .collect();
    let inside: Vec<InsideKey> = entries
        .iter()
        .map(|e| InsideKey::of_tuple(&e.orig))
        .collect();
    let outside: Vec<OutsideKey> = entries
        .iter()
        .map(|e| OutsideKey {
            proto: 6,
            addr: e.reply.dst,
            port: e.reply.dst_port(),
        })
        .collect();
    let baseline: HashMap<u64, u64> = (0..SESSIONS as u64)
        .map(|k| (k.wrapping_mul(0x9e37_79b9_7f4a_7c15), k))
        .collect();
    let base_keys: Vec<u64> = (0..SESSIONS as u64)
        .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();

    let base_ns = per_op(LOOKUPS, |i| {
        baseline
            .get(black_box(&base_keys[order[i]]))
            .map_or(0, |v| *v as usize)
    });
    let in_ns = per_op(LOOKUPS, |i| {
        table
            .lookup_inside(black_box(&inside[order[i]]), 2)
            .map_or(0, |s| s.entry.id as usize)
    });
    let out_ns = per_op(LOOKUPS, |i| {
        table
            .lookup_outside(black_box(&outside[order[i]]), 2)
            .map(|s| s.entry.id as usize)
            .sum()
    });
    let miss_key = InsideKey {
        proto: 17,
        ..inside[0]
    };
    let miss_ns = per_op(LOOKUPS, |_| {
        usize::from(table.lookup_inside(black_box(&miss_key), 2).is_some())
    });

    let churn_ns = one_port_churn();

    let per_message: usize = messages(LAB)
        .filter(|m| matches!(m, Ok(NlItem::Conntrack(_))))
        .count();
    let rounds = 2_000;
    let t = Instant::now();
    let mut parsed = 0usize;
    for _ in 0..rounds {
        parsed += messages(black_box(LAB))
            .filter(|m| matches!(m, Ok(NlItem::Conntrack(_))))
            .count();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(parsed, per_message * rounds);

    println!("nat table, {SESSIONS} open sessions, {LOOKUPS} lookups each (same run):");
    println!("  baseline HashMap<u64,u64> get   {base_ns:7.1} ns/op  1.00x");
    println!(
        "  lookup_inside (flow join)       {in_ns:7.1} ns/op  {:.2}x",
        in_ns / base_ns
    );
    println!(
        "  lookup_inside, no session       {miss_ns:7.1} ns/op  {:.2}x",
        miss_ns / base_ns
    );
    println!(
        "  lookup_outside (lawful query)   {out_ns:7.1} ns/op  {:.2}x",
        out_ns / base_ns
    );
    println!(
        "  apply(new event) while building {insert_ns:7.1} ns/op  {:.2}x",
        insert_ns / base_ns
    );
    println!(
        "  one outside port's {SESSIONS} sessions: new, destroy, expire {churn_ns:7.1} ns/session  {:.2}x",
        churn_ns / base_ns
    );
    println!(
        "conntrack parse: {:.2} M messages/s ({} bytes/message, lab capture, {parsed} messages)",
        parsed as f64 / secs / 1e6,
        LAB.len() / per_message.max(1)
    );
}

/// Nanoseconds per session to add, end and expire `SESSIONS` sessions that share one outside
/// address and port (one chain), oldest leaving first as they do (their NAT records handed
/// out, then expired).
fn one_port_churn() -> f64 {
    let mut table = NatTable::new(TableConfig::default());
    let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
    let gw = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
    let entries: Vec<CtEntry> = (0..SESSIONS as u32)
        .map(|id| {
            let server = IpAddr::V4(Ipv4Addr::from(0x0800_0000 + id));
            CtEntry::masqueraded_tcp(id, (client, 40_000), (server, 80), (gw, 40_000))
        })
        .collect();
    let t = Instant::now();
    for (kind, at) in [(CtKind::New, 1), (CtKind::Destroy, 2)] {
        for e in &entries {
            table.apply(NatUpdate::Message {
                msg: CtMessage { kind, entry: *e },
                seen_ns: at,
            });
        }
    }
    let handed_out = table.take_closed(i64::MAX / 2).count();
    let gone = table.expire(i64::MAX / 2);
    assert_eq!(handed_out, SESSIONS, "every session ended");
    let ns = t.elapsed().as_nanos() as f64 / SESSIONS as f64;
    assert_eq!(gone, SESSIONS, "every session expired");
    ns
}
