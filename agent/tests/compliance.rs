//! `xdp-audit compliance` on real stores (generated traffic, written with a fake clock that
//! follows the records, every hour sealed, the head signed): a healthy store fails no line; a
//! deleted hour, a damaged segment, and retention 90 in a store holding only 10 days each
//! show on the right line (asserted on the JSON report); the binary prints the same lines as
//! a table and as JSON, exits 1 exactly when a line fails, and records its own access.

#[path = "store_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;
use xdp_audit::compliance::{self, system, Agent, ClockSync, Configured, Disk, Inputs};
use xdp_audit::record::{rfc3339_ns, rfc3339_s};
use xdp_audit::ship::cursor::{Acked, Cursor};
use xdp_audit::ship::ShipStatus;
use xdp_audit::status::Snapshot;
use xdp_audit::store::manifest::{self, load_public_key, load_signing_key, SegmentInfo};
use xdp_audit::store::oplog::{self, OpBody};
use xdp_audit::store::testgen::TrafficGen;
use xdp_audit::store::{FakeClock, Store, StoreClock, StoreStatus, SystemClock};

const BIN: &str = env!("CARGO_BIN_EXE_xdp-audit");
/// Flows per second: about 70 an hour, so no hour is empty by chance.
const RATE: f64 = 0.02;
/// The retention every store here is configured with and keeps.
const DAYS: u32 = 90;

/// A store of generated traffic from `start` to `end` (Unix ns) in `dir/store`, signed with
/// the key pair written to `dir/chain.key` and `dir/chain.key.pub`; returns the store's status
/// as the agent would have put it into `status.json`.
fn build(dir: &Path, start: i64, end: i64, seed: u64) -> StoreStatus {
    let (secret, public) = manifest::generate_keypair().expect("generate a key pair");
    std::fs::write(dir.join("chain.key"), secret).expect("write the secret key");
    std::fs::write(dir.join("chain.key.pub"), public).expect("write the public key");
    let store_dir = dir.join("store");
    std::fs::create_dir_all(&store_dir).expect("create the store directory");
    let mut cfg = config(&store_dir);
    cfg.retention_days = DAYS;
    cfg.signing_key = Some(load_signing_key(&dir.join("chain.key")).expect("load the key"));
    let clock = FakeClock::new(start);
    let mut store = Store::open_with_clock(cfg, Box::new(clock.clone()))
        .unwrap_or_else(|e| panic!("open store {}: {e}", store_dir.display()));
    let mut g = TrafficGen::with_rate(seed, start, RATE);
    while g.now_ns() < end {
        let r = g.next_record();
        clock.set(r.time_start_ns);
        store.append(&r);
    }
    clock.set(end);
    assert!(store.seal_now(), "sealing the last journal failed");
    store.status()
}

/// A status snapshot of a healthy agent (this process stands in for it), written at `at_ns`.
fn snapshot(at_ns: i64, store: StoreStatus, lists: &[&Path]) -> Snapshot {
    let lists: Vec<Value> = lists
        .iter()
        .map(|p| serde_json::json!({"path": p.display().to_string(), "kind": "block", "rules_hit": 0, "hits": 0}))
        .collect();
    let mut s: Snapshot = serde_json::from_value(serde_json::json!({
        "written_at": rfc3339_ns(at_ns),
        "pid": std::process::id(),
        "interfaces": ["lan0"],
        "generation": 1,
        "counters": BTreeMap::<String, u64>::new(),
        "lists": lists,
        "rules": [],
    }))
    .expect("a snapshot from JSON");
    s.store = store;
    s
}

/// Everything healthy besides the store: configured and in force `DAYS`, the agent alive,
/// the clock synchronised, 100 GB free.
fn inputs(dir: &Path, now_ns: i64, store: StoreStatus) -> Inputs {
    Inputs {
        now_ns,
        log_dir: dir.join("store"),
        public_key: Some(load_public_key(&dir.join("chain.key.pub")).expect("load public key")),
        configured: Some(Configured {
            days: DAYS,
            source: "xdp-audit.toml".into(),
        }),
        agent: Ok(Agent {
            snapshot: snapshot(now_ns - 5_000_000_000, store, &[]),
            written_ns: now_ns - 5_000_000_000,
            alive: true,
            lists: Vec::new(),
        }),
        clock: ClockSync::Synced {
            max_error_us: 2_000,
        },
        disk: Ok(Disk {
            free_bytes: 100_000_000_000,
            writable: Ok(()),
        }),
        list_max_age_ns: 7 * DAY,
        status_max_age_ns: 60_000_000_000,
    }
}

/// The report as the JSON `--json` prints.
fn report(inputs: &Inputs) -> Value {
    serde_json::to_value(compliance::check(inputs)).expect("the report as JSON")
}

/// The line of `check` in a JSON report.
fn line<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["check"] == check))
        .unwrap_or_else(|| panic!("no {check:?} line in {report:#}"))
}

/// Each check's result, in report order.
fn results(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {report:#}"))
        .iter()
        .map(|l| {
            (
                l["check"].as_str().unwrap_or("?").to_owned(),
                l["result"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// The results of a healthy store younger than its retention, with `clock` for the clock:
/// it cannot show the full period yet (a warn), and it is not shipped off the gateway (a
/// warn: one copy only); everything else passes.
fn healthy(clock: &str) -> Vec<(String, String)> {
    [
        ("agent", "pass"),
        ("retention", "warn"),
        ("records", "pass"),
        ("chain", "pass"),
        ("access log", "pass"),
        ("lists", "pass"),
        ("losses", "pass"),
        ("clock", clock),
        ("disk", "pass"),
        ("shipping", "warn"),
    ]
    .iter()
    .map(|(c, r)| ((*c).to_owned(), (*r).to_owned()))
    .collect()
}

/// The live segment whose records start in the middle of the store.
fn middle(store_dir: &Path) -> SegmentInfo {
    let mut segs = live(store_dir);
    segs.sort_by_key(|s| s.time_min_ns);
    assert!(segs.len() > 10, "too few segments: {segs:?}");
    segs[segs.len() / 2].clone()
}

/// The first record's start, from the chain.
fn first_record(store_dir: &Path) -> i64 {
    live(store_dir)
        .iter()
        .map(|s| s.time_min_ns)
        .min()
        .unwrap_or_else(|| panic!("no segments in {}", store_dir.display()))
}

fn text(v: &Value) -> String {
    v.to_string()
}

#[test]
fn a_healthy_store_fails_no_line() {
    let dir = TempDir::new("compliance-healthy");
    let end = T0 + 4 * DAY;
    let status = build(dir.path(), T0, end, 1);
    let r = report(&inputs(dir.path(), end + 60_000_000_000, status.clone()));
    assert_eq!(results(&r), healthy("pass"), "{r:#}");
    let first = first_record(&dir.path().join("store"));
    assert_eq!(
        line(&r, "records")["why"],
        format!(
            "every hour since the first record ({}) has records (96 hours)",
            rfc3339_s(first)
        ),
        "{r:#}"
    );
    let chain = text(&line(&r, "chain")["why"]);
    assert!(chain.contains("the head's signature is valid"), "{chain}");

    // A loss before a restart, carried as an active alert: not "no loss".
    use xdp_audit::alert::{Alert, AlertId, AlertState, AlertStatus};
    let mut after_restart = inputs(dir.path(), end + 60_000_000_000, status);
    if let Ok(a) = &mut after_restart.agent {
        a.snapshot.alerts = Some(AlertStatus {
            active: vec![Alert {
                id: AlertId::StoreRefused,
                severity: AlertId::StoreRefused.severity(),
                state: AlertState::Raised,
                text: "the audit store dropped or refused records".into(),
                subject: Default::default(),
                first_ns: end - DAY,
                last_ns: end - DAY,
                count: 6018,
            }],
            ..Default::default()
        });
    }
    let r = report(&after_restart);
    let losses = line(&r, "losses");
    assert_eq!(losses["result"], "fail", "{r:#}");
    let why = text(&losses["why"]);
    assert!(
        why.contains("XA-STORE-REFUSED") && why.contains("6018"),
        "{why}"
    );
}

/// Flows no record holds (lost unseen: start lost, evicted before a sweep) fail the losses
/// line; flows evicted before they ended (written from their last snapshot) warn.
#[test]
fn flows_lost_unseen_fail_the_losses_line_and_evictions_warn() {
    let dir = TempDir::new("compliance-unseen");
    let end = T0 + 4 * DAY;
    let status = build(dir.path(), T0, end, 1);
    for (unseen, evicted, want, says) in [
        (7, 3, "fail", "7 flows have no record"),
        (0, 3, "warn", "3 flows were evicted"),
    ] {
        let mut i = inputs(dir.path(), end + 60_000_000_000, status.clone());
        if let Ok(a) = &mut i.agent {
            a.snapshot.flows.lost_unseen = unseen;
            a.snapshot.flows.evicted = evicted;
        }
        let r = report(&i);
        let losses = line(&r, "losses");
        assert_eq!(losses["result"], want, "{r:#}");
        assert!(text(&losses["why"]).contains(says), "{losses:#}");
    }
}

/// An earlier agent's losses are in the store's alert log, not in the running agent's
/// counters (they start at 0 with each agent): a restart no longer hides them from the
/// losses line, and a crash (flows read and not yet written are lost with it) is named.
#[test]
fn earlier_agents_losses_in_the_alert_log_warn_the_losses_line() {
    use xdp_audit::alert::{Alert, AlertId, AlertState};
    let dir = TempDir::new("compliance-earlier");
    let end = T0 + 4 * DAY;
    let status = build(dir.path(), T0, end, 1);
    let r = report(&inputs(dir.path(), end + 60_000_000_000, status.clone()));
    assert_eq!(line(&r, "losses")["result"], "pass", "{r:#}");
    for id in [AlertId::FlowStartLoss, AlertId::AgentCrashed] {
        let notice = oplog::OpEntry {
            at_ns: end - DAY,
            who: Default::default(),
            body: OpBody::Alert(Alert {
                id,
                severity: id.severity(),
                state: AlertState::Raised,
                text: "an earlier agent's".into(),
                subject: Default::default(),
                first_ns: end - DAY,
                last_ns: end - DAY,
                count: 3,
            }),
        };
        oplog::append_to(&dir.path().join("store"), oplog::Log::Alerts, notice)
            .expect("append to the alert log");
    }
    let r = report(&inputs(dir.path(), end + 60_000_000_000, status));
    let losses = line(&r, "losses");
    assert_eq!(losses["result"], "warn", "{r:#}");
    let why = text(&losses["why"]);
    assert!(
        why.contains("XA-FLOW-START-LOSS raised 1 time (")
            && why.contains("XA-AGENT-CRASHED raised 1 time ("),
        "{why}"
    );
}

#[test]
fn a_deleted_hour_fails_the_records_line_naming_the_segment() {
    let dir = TempDir::new("compliance-deleted-hour");
    let end = T0 + 4 * DAY;
    let status = build(dir.path(), T0, end, 2);
    let store = dir.path().join("store");
    let gone = middle(&store);
    std::fs::remove_file(store.join(&gone.file)).expect("delete one hour's segment");
    let r = report(&inputs(dir.path(), end + 60_000_000_000, status));
    let records = line(&r, "records");
    assert_eq!(records["result"], "fail", "{r:#}");
    assert!(
        text(&records["why"]).contains("1 sealed segment is missing from disk"),
        "{records:#}"
    );
    assert_eq!(
        records["details"][0],
        format!(
            "{} (records {} to {}) is in the chain but not on disk",
            gone.file,
            rfc3339_s(gone.time_min_ns),
            rfc3339_s(gone.time_max_ns)
        ),
        "{records:#}"
    );
    let chain = line(&r, "chain");
    assert_eq!(chain["result"], "fail", "{r:#}");
    assert!(text(&chain["why"]).contains(&gone.file), "{chain:#}");
    // Nothing else is blamed for it.
    for (check, result) in results(&r) {
        if check != "records" && check != "chain" {
            assert_ne!(result, "fail", "{check} fails for a deleted hour: {r:#}");
        }
    }
}

#[test]
fn a_damaged_segment_fails_the_chain_line_naming_it() {
    let dir = TempDir::new("compliance-damaged");
    let end = T0 + 4 * DAY;
    let status = build(dir.path(), T0, end, 3);
    let store = dir.path().join("store");
    let bad = middle(&store);
    let path = store.join(&bad.file);
    let mut bytes = std::fs::read(&path).expect("read a segment");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).expect("damage the segment");
    let r = report(&inputs(dir.path(), end + 60_000_000_000, status));
    let chain = line(&r, "chain");
    assert_eq!(chain["result"], "fail", "{r:#}");
    let why = text(&chain["why"]);
    assert!(
        why.contains("BROKEN") && why.contains(&bad.file),
        "{chain:#}"
    );
    // The file is there: its hours are not a gap.
    assert_eq!(line(&r, "records")["result"], "pass", "{r:#}");
}

/// A segment that cannot be read (root's alone, mode 0600, with the check run as `nobody`,
/// who reads the rest of the store) fails the chain line as not checked, not as BROKEN; a
/// loop of links in its place is an alteration (the store makes no links): BROKEN.
#[test]
fn a_segment_that_cannot_be_read_fails_the_chain_line_as_not_checked() {
    let dir = TempDir::new("compliance-unreadable");
    let now = SystemClock.now_ns();
    build(dir.path(), now - 4 * DAY, now, 5);
    let store = dir.path().join("store");
    let bad = middle(&store);
    let path = store.join(&bad.file);
    nobodys_but(dir.path(), &path);
    let chain_why = |nobody: bool| {
        let mut cmd = if nobody {
            as_nobody(BIN)
        } else {
            Command::new(BIN)
        };
        let out = cmd
            .env_remove("XDP_AUDIT_CONFIG")
            .env_remove("XDP_AUDIT_LOG_DIR")
            .args(["compliance", "--json", "--log-dir"])
            .arg(&store)
            .arg("--state-dir")
            .arg(dir.path().join("no-state"))
            .output()
            .expect("spawn the check (setpriv: util-linux)");
        let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "no JSON ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let chain = line(&r, "chain").clone();
        assert_eq!(chain["result"], "fail", "{r:#}");
        text(&chain["why"])
    };
    let why = chain_why(true);
    assert!(
        why.contains("could not be checked") && !why.contains("BROKEN") && why.contains(&bad.file),
        "{why}"
    );
    std::fs::remove_file(&path).expect("remove the segment");
    std::os::unix::fs::symlink(&path, &path).expect("a link to itself in its place");
    let why = chain_why(false);
    assert!(
        why.contains("BROKEN"),
        "a loop of links is an alteration: {why}"
    );
}

#[test]
fn retention_of_90_days_in_a_store_of_10_days_says_when_the_period_is_full() {
    let dir = TempDir::new("compliance-10-days");
    let end = T0 + 10 * DAY;
    let status = build(dir.path(), T0, end, 4);
    assert_eq!(
        status.retention_days, DAYS,
        "the store reports its retention"
    );
    let r = report(&inputs(dir.path(), end, status));
    let retention = line(&r, "retention");
    assert_eq!(retention["result"], "warn", "{r:#}");
    let first = first_record(&dir.path().join("store"));
    assert_eq!(
        retention["why"],
        format!(
            "90 days configured (xdp-audit.toml); the store holds 10.0 d of them so far (first record {}): the full period is reached on {}",
            rfc3339_s(first),
            rfc3339_s(first + 90 * DAY)
        ),
        "{retention:#}"
    );
    // Configured 90 but the running agent keeps another retention: told apart.
    let mut other = status_with_days(dir.path(), end, 180);
    other.configured = Some(Configured {
        days: DAYS,
        source: "xdp-audit.toml".into(),
    });
    let r = report(&other);
    let retention = line(&r, "retention");
    assert_eq!(retention["result"], "warn", "{r:#}");
    assert!(
        text(&retention["why"]).contains("the running agent keeps 180"),
        "{retention:#}"
    );
    // A stopped agent's status stays behind (the unit keeps its runtime directory): its
    // retention is in force nowhere.
    if let Ok(agent) = other.agent.as_mut() {
        agent.alive = false;
    }
    let r = report(&other);
    let retention = line(&r, "retention");
    assert!(
        !text(&retention["why"]).contains("running agent keeps"),
        "{retention:#}"
    );
}

/// The inputs of `dir`'s store with the agent's retention in force set to `days`.
fn status_with_days(dir: &Path, now_ns: i64, days: u32) -> Inputs {
    let status = StoreStatus {
        retention_days: days,
        ..StoreStatus::default()
    };
    inputs(dir, now_ns, status)
}

/// Runs the binary.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("XDP_AUDIT_CONFIG")
        .env_remove("XDP_AUDIT_LOG_DIR")
        .output()
        .unwrap_or_else(|e| panic!("run {BIN}: {e}"))
}

/// The result this machine's clock must show (the test cannot set the kernel's clock).
fn clock_result() -> &'static str {
    match system::clock_sync() {
        ClockSync::Synced { .. } => "pass",
        ClockSync::Unsynced => "fail",
        ClockSync::Unknown(_) => "warn",
    }
}

/// `CHECK RESULT` pairs of the table, in order (particulars indented below are skipped).
fn table_results(table: &str) -> Vec<(String, String)> {
    let checks = [
        "agent",
        "retention",
        "records",
        "chain",
        "access log",
        "lists",
        "losses",
        "clock",
        "disk",
        "shipping",
    ];
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c = checks.iter().find(|c| l.starts_with(*c))?;
            let result = l[c.len()..].split_whitespace().next()?;
            Some(((*c).to_owned(), result.to_owned()))
        })
        .collect()
}

fn compliance_lines(store_dir: &Path) -> Vec<oplog::OpLine> {
    let scan = oplog::scan(store_dir).expect("read the operator log");
    assert_eq!(scan.problem, None, "the operator log must verify");
    scan.lines
        .into_iter()
        .filter(|l| matches!(&l.entry.body, OpBody::Access(a) if a.command == "compliance"))
        .collect()
}

#[test]
fn the_binary_prints_a_table_and_json_exits_1_on_a_fail_and_records_its_access() {
    let dir = TempDir::new("compliance-binary");
    // Ten days up to now (the binary uses the real clock), sealed.
    let now = SystemClock.now_ns();
    let status = build(dir.path(), now - 10 * DAY, now, 5);
    let state = dir.path().join("state");
    let list = dir.path().join("block.txt");
    std::fs::write(&list, "203.0.113.7\n").expect("write a list file");
    // The agent rewrites its status every second; so does the test before each run, so a
    // slow machine does not make the status look stale.
    let fresh = || {
        snapshot(SystemClock.now_ns(), status.clone(), &[&list])
            .write(&state)
            .expect("write status.json")
    };
    let config = dir.path().join("xdp-audit.toml");
    let store = dir.path().join("store");
    std::fs::write(
        &config,
        format!(
            "iface = [\"lan0\"]\nlog-dir = \"{}\"\nstate-dir = \"{}\"\nretention-days = {DAYS}\n",
            store.display(),
            state.display()
        ),
    )
    .expect("write the config");
    let key = dir.path().join("chain.key.pub");
    let args = |json: bool| {
        let mut v = vec![
            "compliance".to_owned(),
            "--config".into(),
            config.display().to_string(),
            "--public-key".into(),
            key.display().to_string(),
        ];
        if json {
            v.push("--json".into());
        }
        v
    };
    let strs = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join(" ");

    fresh();
    let out = run(&args(true).iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "`{}` printed no JSON ({e}): {stdout}\nstderr: {}",
            strs(&args(true)),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let clock = clock_result();
    let want = healthy(clock);
    assert_eq!(results(&r), want, "{r:#}");
    let lists = line(&r, "lists");
    assert!(
        text(&lists["details"]).contains(&format!("{}: changed", list.display())),
        "{lists:#}"
    );
    let failed = want.iter().any(|(_, res)| res == "fail");
    assert_eq!(
        out.status.code(),
        Some(i32::from(failed)),
        "exit status with clock {clock}: {r:#}"
    );

    fresh();
    let out = run(&args(false).iter().map(String::as_str).collect::<Vec<_>>());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("CHECK       RESULT WHY\n"),
        "no table header: {table}"
    );
    assert_eq!(
        table_results(&table),
        want,
        "the table and the JSON differ:\n{table}"
    );
    assert_eq!(out.status.code(), Some(i32::from(failed)), "{table}");

    // Each run recorded itself: who, what, how many lines.
    let runs = compliance_lines(&store);
    assert_eq!(runs.len(), 2, "{runs:?}");
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    for l in &runs {
        assert_eq!(l.entry.who.uid, uid, "{l:?}");
        assert!(l.entry.who.user.is_some(), "no user name: {l:?}");
        let OpBody::Access(a) = &l.entry.body else {
            unreachable!("filtered to accesses")
        };
        assert_eq!((a.filter.as_str(), a.rows), ("all", Some(10)), "{a:?}");
    }

    // A damaged segment fails the run whatever the clock says.
    let bad = middle(&store);
    let path = store.join(&bad.file);
    let mut bytes = std::fs::read(&path).expect("read a segment");
    bytes[0] ^= 0x01;
    std::fs::write(&path, bytes).expect("damage the segment");
    fresh();
    let out = run(&args(false).iter().map(String::as_str).collect::<Vec<_>>());
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let chain = table
        .lines()
        .find(|l| l.starts_with("chain"))
        .unwrap_or_else(|| panic!("no chain line: {table}"));
    assert!(
        chain.contains(" fail ") && chain.contains(&bad.file),
        "{chain}"
    );
}

/// A missing state directory is a fail of the agent line, not an error of the command.
#[test]
fn no_agent_status_fails_the_agent_line() {
    let dir = TempDir::new("compliance-no-agent");
    let now = SystemClock.now_ns();
    build(dir.path(), now - 2 * DAY, now, 6);
    let store = dir.path().join("store");
    let state: PathBuf = dir.path().join("no-state");
    let out = run(&[
        "compliance",
        "--log-dir",
        &store.display().to_string(),
        "--state-dir",
        &state.display().to_string(),
        "--json",
    ]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(line(&r, "agent")["result"], "fail", "{r:#}");
    assert!(
        text(&line(&r, "agent")["why"]).contains("status.json"),
        "{r:#}"
    );
    assert_eq!(out.status.code(), Some(1), "{r:#}");
}

/// The shipping line: not configured is a warn naming `--ship`; an agent shipping with a
/// fresh backlog passes and names it (from the store's cursor against the chain); a backlog
/// older than the lag limit warns; a cursor without a shipping agent warns that shipping
/// stopped, with what is owed.
#[test]
fn the_shipping_line_says_whether_records_leave_the_gateway_and_the_backlog() {
    let dir = TempDir::new("compliance-shipping");
    let end = T0 + 2 * DAY;
    let status = build(dir.path(), T0, end, 7);
    let store = dir.path().join("store");
    let now = end + 60_000_000_000;
    let mut inp = inputs(dir.path(), now, status);
    let shipping = |inp: &Inputs| {
        let r = report(inp);
        let l = line(&r, "shipping").clone();
        (l["result"].as_str().unwrap_or("?").to_owned(), text(&l))
    };

    let (result, why) = shipping(&inp);
    assert_eq!(result, "warn", "{why}");
    assert!(
        why.contains("not configured") && why.contains("--ship"),
        "{why}"
    );

    // The agent ships; the bucket acknowledged every segment but the two newest.
    let target = "s3://audit/k/gateway=gw";
    let mut segs = live(&store);
    segs.sort_by_key(|s| s.time_max_ns);
    let (owed, acked) = (&segs[segs.len() - 2..], &segs[..segs.len() - 2]);
    let mut cursor = Cursor {
        version: 1,
        target: target.into(),
        ..Cursor::default()
    };
    for s in acked {
        cursor.acked.insert(
            s.file.clone(),
            Acked {
                key: format!("k/gateway=gw/{}", s.file),
                size: s.size,
                sha256: s.sha256.clone(),
            },
        );
    }
    cursor.save(&store).expect("write the cursor");
    if let Ok(a) = inp.agent.as_mut() {
        a.snapshot.ship = Some(ShipStatus {
            target: target.into(),
            ..ShipStatus::default()
        });
    }
    let owed_bytes: u64 = owed.iter().map(|s| s.size).sum();
    let (result, why) = shipping(&inp);
    assert_eq!(result, "pass", "{why}");
    assert!(
        why.contains(&format!("shipping to {target}: backlog 2 segments"))
            && why.contains(&compliance::bytes(owed_bytes)),
        "{why}"
    );

    // Two days later nothing more was acknowledged: the backlog is too old.
    inp.now_ns += 2 * DAY;
    let (result, why) = shipping(&inp);
    assert_eq!(result, "warn", "{why}");
    assert!(why.contains("the backlog is older than"), "{why}");
    inp.now_ns -= 2 * DAY;

    // Everything acknowledged: nothing owed.
    for s in owed {
        cursor.acked.insert(
            s.file.clone(),
            Acked {
                key: s.file.clone(),
                size: s.size,
                sha256: s.sha256.clone(),
            },
        );
    }
    cursor.save(&store).expect("write the cursor");
    let (result, why) = shipping(&inp);
    assert_eq!(result, "pass", "{why}");
    assert!(why.contains("nothing owed"), "{why}");

    // The cursor stays, but the agent runs without --ship: shipping stopped.
    if let Ok(a) = inp.agent.as_mut() {
        a.snapshot.ship = None;
    }
    cursor.acked.remove(&owed[1].file);
    cursor.save(&store).expect("write the cursor");
    let (result, why) = shipping(&inp);
    assert_eq!(result, "warn", "{why}");
    assert!(
        why.contains(&format!("shipped to {target} before")) && why.contains("backlog 1 segment ("),
        "{why}"
    );

    // The bucket acknowledged a longer chain than the store holds: a store rolled back to an
    // older copy (whose missing hours compliance would otherwise take for downtime).
    let last = xdp_audit::store::manifest::read_entries(&store)
        .expect("read the chain")
        .last()
        .map(|e| e.seq)
        .expect("a chain");
    cursor.manifest_seq = Some(last);
    cursor.save(&store).expect("write the cursor");
    assert_eq!(shipping(&inp).0, "warn", "the head shipped is no rollback");
    cursor.manifest_seq = Some(last + 3);
    cursor.save(&store).expect("write the cursor");
    let (result, why) = shipping(&inp);
    assert_eq!(result, "fail", "{why}");
    assert!(
        why.contains(&format!("up to entry {}", last + 3)) && why.contains("rolled back"),
        "{why}"
    );
}

/// A shipping cursor for another target acknowledges nothing for the one the agent ships to
/// now (the agent starts that one from nothing): every live segment is owed, as
/// `Cursor::load` counts it.
#[test]
fn a_shipping_cursor_for_another_target_counts_as_empty() {
    let dir = TempDir::new("compliance-ship-target");
    let end = T0 + 2 * DAY;
    let status = build(dir.path(), T0, end, 11);
    let store = dir.path().join("store");
    let mut inp = inputs(dir.path(), end + 60_000_000_000, status);
    let segs = live(&store);
    let mut cursor = Cursor {
        version: 1,
        target: "s3://old/k/gateway=gw".into(),
        ..Cursor::default()
    };
    for s in &segs {
        cursor.acked.insert(
            s.file.clone(),
            Acked {
                key: s.file.clone(),
                size: s.size,
                sha256: s.sha256.clone(),
            },
        );
    }
    cursor.save(&store).expect("write the cursor");
    if let Ok(a) = inp.agent.as_mut() {
        a.snapshot.ship = Some(ShipStatus {
            target: "s3://new/k/gateway=gw".into(),
            ..ShipStatus::default()
        });
    }
    let r = report(&inp);
    let l = line(&r, "shipping");
    let why = text(l);
    assert_eq!(l["result"], "warn", "{why}");
    assert!(
        why.contains(&format!(
            "shipping to s3://new/k/gateway=gw: backlog {} segments",
            segs.len()
        )) && why.contains("s3://old/k/gateway=gw"),
        "{why}"
    );
}
