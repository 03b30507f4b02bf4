//! The enrich stage's join, records per second on one core, with 100,000 subscribers, 100,000
//! DHCP bindings, 50,000 open NAT sessions and 200,000 cached DNS names; the baseline, in the
//! same run, is a pass-through sink doing what the stage does besides the join (copy the
//! record, hand it on).
//!
//! Run: `cargo bench -p xdp-audit --bench attribution`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_common::proto;
use xdp_audit::enrich::inputs::Inputs;
use xdp_audit::enrich::leases::bindings::{Holder, Observation, Source};
use xdp_audit::enrich::names::DomainName;
use xdp_audit::enrich::nat::parse::{CtEntry, CtKind, CtMessage};
use xdp_audit::enrich::nat::{NatTable, NatUpdate, TableConfig};
use xdp_audit::enrich::stage::{EnrichStage, StageConfig};
use xdp_audit::enrich::subscribers::parse::ParsedSubscribers;
use xdp_audit::enrich::subscribers::SubscriberTable;
use xdp_audit::enrich::Validity;
use xdp_audit::record::{Attribution, EndReason, FlowRecord, Mac};
use xdp_audit::sink::{RecordSink, SinkError};
use xdp_audit::store::testgen::Rng;

const SUBSCRIBERS: u32 = 100_000;
const NAT_SESSIONS: u32 = 50_000;
const NAMES: u32 = 200_000;
const RECORDS: usize = 400_000;
const S: i64 = 1_000_000_000;

/// Takes records and keeps nothing.
struct Discard(u64);

impl RecordSink for Discard {
    fn write(&mut self, r: &FlowRecord) -> Result<(), SinkError> {
        self.0 = self.0.wrapping_add(r.packets);
        black_box(&r.attr);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The baseline: copies each record and hands it on, as the stage does, without the join.
struct PassThrough(Discard);

impl RecordSink for PassThrough {
    fn write(&mut self, r: &FlowRecord) -> Result<(), SinkError> {
        let out = r.clone();
        self.0.write(black_box(&out))
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

fn mac(i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac([2, 0, b[0], b[1], b[2], b[3]])
}

fn server(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xc633_0000 + (i % 60_000))
}

/// This thread's CPU time: on a shared machine, wall time counts other processes' turns.
fn cpu_ns() -> i64 {
    xdp_audit::clock::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn now() -> i64 {
    xdp_audit::clock::WallClock::measure().to_unix_ns(xdp_audit::clock::WallClock::ktime_now())
}

fn main() {
    let t0 = now() - 3600 * S;
    // 100,000 subscribers: half by address, half by MAC.
    let mut csv = String::from("match,account\n");
    for i in 0..SUBSCRIBERS {
        if i % 2 == 0 {
            csv.push_str(&format!("{},acct-{i}\n", client(i)));
        } else {
            csv.push_str(&format!("{},acct-{i}\n", mac(i)));
        }
    }
    let parsed = ParsedSubscribers::parse(csv.as_bytes()).expect("generated subscribers parse");
    let subs = Arc::new(SubscriberTable::build([&parsed]));
    // 50,000 open NAT sessions, one per client (every other one).
    let nat = Arc::new(Mutex::new(NatTable::new(TableConfig::default())));
    {
        let mut t = nat.lock().expect("nat lock");
        for i in 0..NAT_SESSIONS {
            let c = i * 2;
            let port = 10_000 + (c % 50_000) as u16;
            let entry = CtEntry::masqueraded_tcp(
                i + 1,
                (IpAddr::V4(client(c)), port),
                (IpAddr::V4(server(c)), 443),
                (
                    IpAddr::V4(Ipv4Addr::new(203, 0, 113, (c % 250) as u8 + 1)),
                    20_000 + (c % 40_000) as u16,
                ),
            );
            t.apply(NatUpdate::Message {
                msg: CtMessage {
                    kind: CtKind::New,
                    entry,
                },
                seen_ns: t0,
            });
        }
    }
    let mut stage = EnrichStage::new(
        Box::new(Discard(0)),
        Inputs::fixed(subs, Some(nat), None),
        StageConfig::default(),
    );
    // 100,000 DHCP bindings with host names.
    for i in 0..SUBSCRIBERS {
        stage.bindings_mut().observe(
            Observation {
                ip: IpAddr::V4(client(i)),
                holder: Holder {
                    mac: Some(mac(i)),
                    client_id: None,
                },
                hostname: Some(format!("host-{i}").into()),
                valid: Validity {
                    from: Some(t0),
                    to: Some(t0 + 7200 * S),
                },
                source: Source::Packet,
            },
            t0,
        );
    }
    // 200,000 cached names: two destinations per client.
    for i in 0..NAMES {
        let c = i % SUBSCRIBERS;
        let name =
            DomainName::from_wire(format!("site-{i}.example").as_bytes()).expect("generated name");
        let dst = if i < SUBSCRIBERS {
            server(c)
        } else {
            server(c + 1)
        };
        stage
            .dns_mut()
            .insert(IpAddr::V4(client(c)), IpAddr::V4(dst), &name, t0, 3600);
    }
    // Records of random clients to their cached destination, half through a NAT session:
    // clients drawn from all 100,000 (every lookup cache-cold), then from 5,000 (a gateway's
    // clients active at one time).
    for active in [SUBSCRIBERS, 5_000] {
        bench(&mut stage, active, t0);
    }
    carry(&mut stage, t0);
}

/// Open flows with a first record's attribution, for the carry-over.
const OPEN_FLOWS: u32 = 100_000;

/// The carry-over across a restart at these sizes: what one save costs the records thread
/// (the copy) and the saving thread (encoding and writing), and what taking it back costs the
/// next agent's start.
fn carry(stage: &mut EnrichStage, t0: i64) {
    // The answers again, valid now (the join's are an hour old and expire as it ends).
    for i in 0..NAMES {
        let c = i % SUBSCRIBERS;
        let name =
            DomainName::from_wire(format!("site-{i}.example").as_bytes()).expect("generated name");
        let dst = server(c + i / SUBSCRIBERS);
        stage
            .dns_mut()
            .insert(IpAddr::V4(client(c)), IpAddr::V4(dst), &name, now(), 3600);
    }
    for i in 0..OPEN_FLOWS {
        let c = i % SUBSCRIBERS;
        let r = FlowRecord {
            src_port: 1024 + i as u16,
            end_reason: EndReason::Active,
            ..record(c, t0, 0)
        };
        stage.write(&r).expect("discard never fails");
    }
    let dir = std::env::temp_dir().join(format!("xdp-audit-bench-carry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench temp dir");
    // As a pinned agent's stage: its open flows are carried.
    stage.carry_over(&dir, Duration::from_secs(3600), true);
    let (mut copy, mut write, mut bytes) = (Duration::MAX, Duration::MAX, 0);
    for _ in 0..3 {
        let (c, w, b) = stage.time_save(&dir);
        (copy, write, bytes) = (copy.min(c), write.min(w), b);
    }
    let t = Instant::now();
    let mut next = EnrichStage::new(
        Box::new(Discard(0)),
        Inputs::fixed(Arc::default(), None, None),
        StageConfig::default(),
    );
    let back = next.carry_over(&dir, Duration::from_secs(3600), true);
    let took = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "carry-over (enrich.json): {} DNS answers, {} DHCP bindings, {} open flows; best of 3",
        back.restored_names, back.restored_bindings, back.restored_flows
    );
    println!(
        "  save: copy {:.1} ms on the records thread ({:.2}% of a core at the 10 s default), encode and write {:.1} ms on the saving thread, {:.1} MB",
        ms(copy),
        ms(copy) / 100.0,
        ms(write),
        bytes as f64 / 1e6
    );
    println!("  start: read and take back {:.1} ms", ms(took));
}

/// A finished TCP flow of client `c` to its server, from source port `sport`.
fn record(c: u32, t0: i64, sport: u16) -> FlowRecord {
    FlowRecord {
        time_start_ns: t0 + S,
        time_end_ns: t0 + 2 * S,
        iface: "lan0".into(),
        ifindex: 3,
        vlan: None,
        vlan_inner: None,
        src_mac: mac(c),
        dst_mac: Mac([2, 0, 0, 0, 0, 0xfe]),
        proto: proto::TCP,
        src_ip: IpAddr::V4(client(c)),
        src_port: sport,
        dst_ip: IpAddr::V4(server(c)),
        dst_port: 443,
        packets: 10,
        bytes: 5000,
        resp_packets: 5,
        resp_bytes: 4000,
        tcp_flags: 0x1b,
        dropped: 0,
        rule: None,
        end_reason: EndReason::Fin,
        attr: Attribution::default(),
    }
}

fn bench(stage: &mut EnrichStage, active: u32, t0: i64) {
    let before = stage.status();
    let mut rng = Rng::new(42);
    let records: Vec<FlowRecord> = (0..RECORDS)
        .map(|n| {
            let c = rng.below(u64::from(active)) as u32 * (SUBSCRIBERS / active);
            let covered = c.is_multiple_of(2);
            let sport = if covered {
                10_000 + (c % 50_000) as u16
            } else {
                (n % 60_000) as u16
            };
            record(c, t0, sport)
        })
        .collect();
    let mut base = PassThrough(Discard(0));
    let (mut best, mut best_base) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        let t = cpu_ns();
        for r in &records {
            stage.write(black_box(r)).expect("discard never fails");
        }
        best = best.min((cpu_ns() - t) as f64 / 1e9);
        let t = cpu_ns();
        for r in &records {
            base.write(black_box(r)).expect("discard never fails");
        }
        best_base = best_base.min((cpu_ns() - t) as f64 / 1e9);
    }
    let s = stage.status();
    let per_run = |a: u64, b: u64| (a - b) / 5;
    assert_eq!(
        s.fields.user.unattributed, before.fields.user.unattributed,
        "every record has a user"
    );
    let rate = RECORDS as f64 / best;
    let base_rate = RECORDS as f64 / best_base;
    println!(
        "attribution: {SUBSCRIBERS} subscribers, {SUBSCRIBERS} DHCP bindings, {NAT_SESSIONS} NAT sessions, {NAMES} cached names; {RECORDS} records from {active} active clients, best of 5, thread CPU time"
    );
    println!(
        "  join (user, hostname, NAT, domain)   {:>10.0} records/s/core  {:>7.1} ns/record",
        rate,
        1e9 / rate
    );
    println!(
        "  pass-through sink (copy, hand on)    {:>10.0} records/s/core  {:>7.1} ns/record  join costs x{:.1}",
        base_rate,
        1e9 / base_rate,
        base_rate / rate
    );
    println!(
        "  per run: user {}, hostname {}, nat {}, domain {} of {RECORDS} (target >= 500,000 records/s/core: {})",
        per_run(s.fields.user.attributed, before.fields.user.attributed),
        per_run(s.fields.hostname.attributed, before.fields.hostname.attributed),
        per_run(s.fields.nat.attributed, before.fields.nat.attributed),
        per_run(s.fields.domain.attributed, before.fields.domain.attributed),
        if rate >= 500_000.0 { "met" } else { "MISSED" }
    );
}
