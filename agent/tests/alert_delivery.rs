//! Alert delivery without the kernel: the alert thread's notices reach a real HTTP receiver
//! on loopback (retried after a refusal), are written once each to `alerts.jsonl` inside the
//! store's hash chain, and `verify` fails when an alert line is removed, anchored or not; a
//! stop's notices are inside the store's last anchor.

use std::path::Path;
use std::time::Duration;

use xdp_audit::alert::deliver::{ChainDelivery, Delivery, LogDelivery};
use xdp_audit::alert::stage::HitBatch;
use xdp_audit::alert::webhook::Webhook;
use xdp_audit::alert::{AlertConfig, Alerts, Event, ListKept};
use xdp_audit::store::manifest::Manifest;
use xdp_audit::store::oplog::{self, Log, OpBody};
use xdp_audit::store::verify::verify;
use xdp_audit_lab::wait::wait_until;
use xdp_audit_lab::webhook::Receiver;

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("xdp-audit-alert-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create the test's store directory");
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ids(bodies: &[serde_json::Value], state: &str) -> Vec<String> {
    let mut v: Vec<String> = bodies
        .iter()
        .filter(|b| b["state"] == state)
        .map(|b| b["id"].as_str().unwrap_or("?").to_owned())
        .collect();
    v.sort();
    v
}

fn remove_line(path: &Path, n: usize) {
    let text = std::fs::read_to_string(path).expect("read the alert log");
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| i + 1 != n)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(path, kept.join("\n") + "\n").expect("rewrite the alert log");
}

#[test]
fn notices_reach_the_webhook_and_the_chain_and_a_removed_line_fails_verify() {
    let dir = TempDir::new("chain");
    let hook = Receiver::start(None, 1).expect("start the webhook receiver");
    let cfg = AlertConfig {
        alert_window: Duration::from_secs(2),
        ..AlertConfig::default()
    };
    let deliveries: Vec<Box<dyn Delivery>> = vec![
        Box::new(LogDelivery::default()),
        Box::new(ChainDelivery::new(dir.0.clone())),
        Box::new(Webhook::start(&hook.url(), 16, 4).expect("start the webhook")),
    ];
    let alerts = Alerts::start(&cfg, 1000, deliveries).expect("start the alert thread");
    let h = alerts.handle();
    h.event(Event::ListRejected {
        file: "/etc/xdp-audit/block.list".into(),
        reason: "/etc/xdp-audit/block.list:3: not an address".into(),
        kept: ListKept::LastGood,
    });
    h.event(Event::Crashed {
        evidence: "agent pid 1 ended without a clean stop".into(),
    });
    let client = "198.51.100.2".parse().expect("address");
    let mut hits = HitBatch::default();
    for _ in 0..3 {
        hits.push(client, None, Some("/etc/xdp-audit/block.list:1"));
    }
    h.hits(hits);
    wait_until(
        Duration::from_secs(30),
        "three raised and three resolved notices at the webhook",
        || hook.bodies().len() >= 6,
    );
    let bodies = hook.bodies();
    let raised = ["XA-AGENT-CRASHED", "XA-BLOCK-FIRST", "XA-LIST-REJECTED"];
    assert_eq!(
        ids(&bodies, "raised"),
        raised,
        "each condition raised exactly once: {bodies:#?}"
    );
    assert_eq!(ids(&bodies, "resolved"), raised, "{bodies:#?}");
    assert!(
        hook.requests() > 6,
        "the refused first POST was retried: {} requests",
        hook.requests()
    );
    let block = bodies
        .iter()
        .find(|b| b["id"] == "XA-BLOCK-FIRST" && b["state"] == "resolved")
        .expect("the block alert resolved");
    assert_eq!(
        block["count"], 3,
        "three hits, one alert with their count: {block}"
    );
    assert_eq!(block["subject"]["client"], "198.51.100.2");
    assert_eq!(block["severity"], "info");
    assert!(
        block["first"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{block}"
    );
    // The status is published about once a second.
    let webhook = || {
        let st = h.status();
        let w = st.deliveries.iter().find(|d| d.name == "webhook").cloned();
        w.map(|w| (w.delivered, w.failed, w.pending))
    };
    wait_until(
        Duration::from_secs(5),
        "the status counts the webhook's deliveries",
        || webhook() == Some((6, 1, 0)),
    );
    alerts.stop();

    let scan = oplog::scan_log(&dir.0, Log::Alerts).expect("read the alert log");
    assert_eq!(scan.problem, None);
    let lines: Vec<_> = scan
        .lines
        .iter()
        .map(|l| match &l.entry.body {
            OpBody::Alert(a) => (a.id.as_str(), a.state),
            other => panic!("a line of another kind in alerts.jsonl: {other:?}"),
        })
        .collect();
    assert_eq!(lines.len(), 6, "one line per notice: {lines:?}");
    let v = verify(&dir.0, None).expect("the store with its alert log verifies");
    assert_eq!((v.alert_lines, v.alert_anchored_lines), (6, 0));

    // Anchored as the sealer does after a seal: now even the last line cannot go unnoticed.
    let mut m = Manifest::load(&dir.0, None).expect("load the manifest");
    oplog::anchor_logged(&dir.0, &mut m, 1);
    let v = verify(&dir.0, None).expect("verifies after anchoring");
    assert_eq!(v.alert_anchored_lines, 6);

    let log = dir.0.join(oplog::ALERTS);
    let original = std::fs::read(&log).expect("read the alert log");
    for n in [1, 6] {
        remove_line(&log, n);
        let broken = verify(&dir.0, None).expect_err("verify must fail without an alert line");
        assert_eq!(broken.file, log, "line {n} removed: {broken}");
        std::fs::write(&log, &original).expect("restore the alert log");
    }
    verify(&dir.0, None).expect("verifies again once restored");
}

#[test]
fn an_alert_line_moved_into_the_operator_log_does_not_verify() {
    let dir = TempDir::new("kinds");
    let mut d = ChainDelivery::new(dir.0.clone());
    d.deliver(&xdp_audit::alert::Alert {
        id: xdp_audit::alert::AlertId::ChainBroken,
        severity: xdp_audit::alert::Severity::Critical,
        state: xdp_audit::alert::AlertState::Raised,
        text: "t".into(),
        subject: Default::default(),
        first_ns: 1,
        last_ns: 1,
        count: 1,
    });
    d.flush();
    assert_eq!(d.stats().delivered, 1);
    // An alert line moved into the operator log does not verify there.
    let line = std::fs::read(dir.0.join(oplog::ALERTS)).expect("read");
    std::fs::write(dir.0.join(oplog::LOG), &line).expect("write");
    let broken = verify(&dir.0, None).expect_err("an alert line in operator.log");
    assert!(broken.reason.contains("another log"), "{broken}");
}

/// The agent's stop: the record path closes the store through the alert stage. Every
/// blocked record is counted and every notice written before the store's last seal, which
/// anchors them: no notice of this agent sits past the chain's anchor, and the published
/// status holds the active alert with its final count.
#[test]
fn a_stop_ends_active_alerts_with_their_counts_inside_the_last_anchor() {
    use xdp_audit::alert::stage::AlertStage;
    use xdp_audit::alert::{AlertId, AlertState};
    use xdp_audit::sink::RecordSink;
    use xdp_audit::store::testgen::TrafficGen;
    use xdp_audit::store::{Store, StoreConfig};

    let dir = TempDir::new("stop");
    let store = Store::open(StoreConfig::new(&dir.0)).expect("open the store");
    let deliveries: Vec<Box<dyn Delivery>> = vec![Box::new(ChainDelivery::new(dir.0.clone()))];
    let alerts = Alerts::start(&AlertConfig::default(), 1000, deliveries).expect("start alerts");
    let mut stage = AlertStage::new(store, alerts.handle());
    let mut g = TrafficGen::new(7, 1_767_225_600_000_000_000);
    let mut blocked = g.next_record();
    blocked.dropped = 1;
    blocked.rule = Some("/etc/xdp-audit/block.list:4".into());
    // More than one batch of the stage, so some are sent before the stop, some at it.
    let n = 2_500u64;
    for _ in 0..n {
        stage.write(&blocked).expect("write a blocked record");
        let mut passed = g.next_record();
        (passed.dropped, passed.rule) = (0, None);
        stage.write(&passed).expect("write a passed record");
    }
    stage.close().expect("close the store");

    let scan = oplog::scan_log(&dir.0, Log::Alerts).expect("read the alert log");
    assert_eq!(scan.problem, None);
    let lines: Vec<(String, AlertState, u64)> = scan
        .lines
        .iter()
        .map(|l| match &l.entry.body {
            OpBody::Alert(a) => (a.id.as_str().to_owned(), a.state, a.count),
            other => panic!("a line of another kind in alerts.jsonl: {other:?}"),
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|(id, s, _)| id == "XA-BLOCK-FIRST" && *s == AlertState::Raised),
        "{lines:?}"
    );
    let status = alerts.handle().status();
    let counted = (status.active.iter())
        .find(|a| a.id == AlertId::BlockFirst && a.subject.rule.is_some() && a.count > 1)
        .map(|a| a.count);
    assert_eq!(
        counted,
        Some(n),
        "the status at the stop counts every blocked record: {status:?}"
    );
    let v = verify(&dir.0, None).expect("the store verifies");
    assert!(v.alert_lines >= 2, "{v:?}");
    assert_eq!(
        v.alert_anchored_lines, v.alert_lines,
        "every notice is inside the last anchor: {v:?}"
    );
    alerts.stop();
    let after = oplog::scan_log(&dir.0, Log::Alerts).expect("read the alert log again");
    assert_eq!(
        after.lines.len(),
        lines.len(),
        "nothing was left for the thread's stop"
    );
}
