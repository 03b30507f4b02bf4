//! `query --at T`, the lawful request's time, through the real binary: T covers the unit it is
//! written to (a whole second, 100 ms, a nanosecond), widened by `--at-slack` (1 s unless set)
//! on both sides, because the asker's clock is not the gateway's. The flow whose last packet
//! the gateway saw at T+0.4 s is found at the second T and at T+0.7 s to the nanosecond, and
//! not without slack; the window searched is said on stderr and recorded in the access line.

mod store_common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use store_common::{open, TempDir};
use xdp_audit::record::FlowRecord;
use xdp_audit::store::oplog::{self, OpBody};
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::FakeClock;

const BIN: &str = env!("CARGO_BIN_EXE_xdp-audit");

/// 2026-11-28T07:07:07Z.
const T: i64 = 1_795_849_627_000_000_000;
const MS: i64 = 1_000_000;
const OUTSIDE: &str = "203.0.113.5:40001";

/// A flow that held [`OUTSIDE`] from `start` to `end` (Unix ns), for `user`.
fn flow(g: &mut TrafficGen, start: i64, end: i64, user: &str) -> FlowRecord {
    let mut r = g.next_record();
    r.time_start_ns = start;
    r.time_end_ns = end;
    r.attr.user = Some(user.into());
    r.attr.nat_ip = Some("203.0.113.5".parse().expect("literal"));
    r.attr.nat_port = Some(40001);
    r
}

fn query(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["query", "--format", "jsonl", "--nat", OUTSIDE, "--log-dir"])
        .arg(dir)
        .args(args)
        .output()
        .expect("run xdp-audit query")
}

/// The accounts `query --nat OUTSIDE ARGS` names, in order.
#[track_caller]
fn users(dir: &Path, args: &[&str]) -> Vec<String> {
    let out = query(dir, args);
    assert!(
        out.status.success(),
        "query {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("query printed {l}: {e}"));
            v["user"].as_str().unwrap_or("-").to_owned()
        })
        .collect()
}

#[test]
fn at_covers_the_unit_written_and_a_slack_for_the_askers_clock() {
    assert_eq!(
        jiff::Timestamp::from_nanosecond(i128::from(T))
            .expect("T")
            .to_string(),
        "2026-11-28T07:07:07Z"
    );
    let dir = TempDir::new("query-at");
    let clock = FakeClock::new(T);
    let mut store = open(dir.path(), &clock);
    let mut g = TrafficGen::new(5, T);
    // The flow asked about: its packets inside the second T, the last at T+0.4 s. The outside
    // tuple is reused 3 s later, by another subscriber.
    let asked = flow(&mut g, T + 100 * MS, T + 400 * MS, "C-000042");
    let later = flow(&mut g, T + 3_000 * MS, T + 3_500 * MS, "C-000077");
    for r in [&asked, &later] {
        clock.set(r.time_start_ns);
        store.append(r);
    }
    assert!(store.sync_now(), "sync");
    drop(store);
    let d = dir.path();
    let one = vec!["C-000042".to_owned()];

    // The whole second written, with or without slack (the instant T alone missed it).
    let second = "2026-11-28T07:07:07Z";
    assert_eq!(users(d, &["--at", second]), one, "--at {second}");
    assert_eq!(
        users(d, &["--at", second, "--at-slack", "0s"]),
        one,
        "--at {second} --at-slack 0s"
    );
    // The asker's server logged the last packet 300 ms later than the gateway's clock.
    let skewed = "2026-11-28T07:07:07.700000000Z";
    assert_eq!(users(d, &["--at", skewed]), one, "--at {skewed}, slack 1 s");
    assert_eq!(
        users(d, &["--at", skewed, "--at-slack", "0s"]),
        Vec::<String>::new(),
        "--at {skewed} --at-slack 0s is the nanosecond alone"
    );
    assert_eq!(
        users(d, &["--at", skewed, "--at-slack", "3s"]),
        ["C-000042", "C-000077"],
        "--at {skewed} --at-slack 3s reaches the reuse of the tuple"
    );
    // A tenth of a second written is that tenth, not the whole second.
    assert_eq!(
        users(d, &["--at", "2026-11-28T07:07:07.3Z", "--at-slack", "0s"]),
        one,
        "--at 07.3Z is [07.3, 07.4): the flow's last packet is at its end"
    );
    assert_eq!(
        users(d, &["--at", "2026-11-28T07:07:07.5Z", "--at-slack", "0s"]),
        Vec::<String>::new(),
        "--at 07.5Z is [07.5, 07.6), after the flow"
    );

    // The operator is told the window searched, and the access line records it.
    let out = query(d, &["--at", second, "--at-slack", "500ms"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let told = "query: --at 2026-11-28T07:07:07Z is the 1s written, ±500ms slack: window \
                [2026-11-28T07:07:06.500000000Z, 2026-11-28T07:07:08.500000000Z)";
    assert!(
        stderr.lines().any(|l| l == told),
        "stderr says the window:\n{stderr}"
    );
    let scan = oplog::scan(d).expect("scan the operator log");
    assert_eq!(scan.problem, None, "the operator log verifies");
    let Some(OpBody::Access(access)) = scan.lines.last().map(|l| &l.entry.body) else {
        panic!(
            "the last operator line is no access: {:?}",
            scan.lines.last()
        );
    };
    assert_eq!(
        access.filter,
        format!(
            "nat={OUTSIDE} since=2026-11-28T07:07:06.500000000Z \
             until=2026-11-28T07:07:08.500000000Z"
        )
    );
    assert_eq!(access.rows, Some(1));
}
