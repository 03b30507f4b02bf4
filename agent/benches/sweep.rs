//! What a sweep costs per flow it ends: without a ledger (an unpinned program), and with the
//! ledger a pinned program keeps (each ended flow's last record settled, with its ledger entry,
//! before the flow leaves the table, so a kill loses none), next to a sweep that only walks the
//! same table, in the same run. CPU time of this thread, median of interleaved rounds. Needs
//! root. Run with `cargo bench -p xdp-audit --bench sweep`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;

use std::time::Duration;

use aya::maps::RingBuf;
use common::newflows::{fill, load, Discard};
use common::prog::ledger;
use xdp_audit::clock::{Timeline, WallClock};
use xdp_audit::sweeper::{Sweeper, Timeouts};

/// Flows in the table at each sweep.
const FLOWS: u64 = 100_000;
const ROUNDS: usize = 7;

fn sweeper() -> Sweeper {
    Sweeper::new(
        Timeouts::default(),
        Timeline::fixed(WallClock::from_offset(0)),
        Default::default(),
    )
}

fn main() {
    let (mut program, maps) = load(1 << 18).into_parts();
    let mut ring = RingBuf::try_from(maps.events).expect("ring");
    let idle = Timeouts::default().inactive.as_nanos() as u64 + 1_000_000_000;
    let (mut walk, mut plain, mut pinned) = (Vec::new(), Vec::new(), Vec::new());
    let per_flow = |d: Duration| d.as_nanos() as f64 / FLOWS as f64;
    for round in 0..ROUNDS {
        // Plain and pinned take turns going first.
        for with_ledger in [round % 2 == 0, round % 2 != 0] {
            fill(&mut program, 0, FLOWS);
            while ring.next().is_some() {}
            let table = maps.flows.table();
            let mut s = sweeper();
            if with_ledger {
                s.adopt(ledger().0);
            }
            let now = WallClock::ktime_now();
            let t = cpu::thread();
            s.sweep(table, &mut Discard, &(), now).expect("walk");
            if !with_ledger {
                walk.push(per_flow(cpu::thread() - t));
            }
            let t = cpu::thread();
            s.sweep(table, &mut Discard, &(), now + idle)
                .expect("sweep");
            s.settle(&mut Discard);
            let took = per_flow(cpu::thread() - t);
            assert_eq!(s.stats.records, FLOWS, "every flow ended");
            assert!(table.keys().expect("keys").is_empty(), "the table is empty");
            if with_ledger { &mut pinned } else { &mut plain }.push(took);
        }
    }
    let (walk, plain, pinned) = (
        cpu::median(&walk),
        cpu::median(&plain),
        cpu::median(&pinned),
    );
    println!(
        "sweep: {FLOWS} flows in the table, CPU ns per flow, median of {ROUNDS} interleaved rounds"
    );
    println!("{:<52} {:>9} {:>9}", "sweep", "ns/flow", "vs walk");
    for (name, ns) in [
        ("walk only (every flow kept)", walk),
        ("end every flow, no ledger (unpinned)", plain),
        ("end every flow, ledger (pinned)", pinned),
    ] {
        println!("{name:<52} {ns:>9.0} {:>8.2}x", ns / walk);
    }
    println!("ledger vs none: {:.2}x", pinned / plain);
}
