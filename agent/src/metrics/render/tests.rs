//! The rendering against a snapshot with every part filled: values, the top-N bound, the
//! README table.

use super::*;
use crate::enrich::stage::EnrichStatus;
use crate::metrics::{ListReload, RingFillStats, TableFill};

/// A snapshot with every part filled and `rules` rules, each with hits.
fn full(rules: usize) -> Snapshot {
    let counters = Counter::ALL
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name().to_owned(), i as u64 + 1))
        .collect();
    let mut enrich = EnrichStatus::default();
    enrich.domain_sources.insert("sni".into(), 3);
    enrich.payload_failures.insert("truncated".into(), 2);
    let mut store = StoreStatus::default();
    store
        .timings
        .fsync
        .buckets
        .extend([1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    store.buffered = 40;
    store.buffered_unkept = Some(7);
    Snapshot {
        written_at: "2026-11-30T10:00:00.5Z".into(),
        pid: 1,
        pid_start: None,
        interfaces: vec!["eth1".into()],
        generation: 4,
        counters,
        lists: (0..3)
            .map(|i| ListHits {
                path: format!("/etc/xdp-audit/{i}.list"),
                kind: "block".into(),
                rules_hit: 2,
                hits: 10,
            })
            .collect(),
        rules: (0..rules)
            .map(|i| RuleHits {
                rule: format!("/etc/xdp-audit/big.list:{}", i + 1),
                kind: if i % 10 == 0 { "allow" } else { "block" }.into(),
                hits: (rules - i) as u64,
            })
            .collect(),
        flows: SweepStats::default(),
        flood: crate::sweeper::flood::FloodStatus {
            budget: Some(crate::sweeper::flood::FloodBudget::default()),
            recorded: 7,
            summarised: (1..=rules as u64).sum(),
            summary_records: 3,
            rules: (0..rules)
                .map(|i| crate::sweeper::flood::RuleFloodStatus {
                    rule: format!("/etc/xdp-audit/big.list:{}", i + 1),
                    summarised: (rules - i) as u64,
                    ..Default::default()
                })
                .collect(),
        },
        store,
        pipeline: PipelineStats::default(),
        clock: ClockStats::default(),
        enrich: Some(enrich),
        observe: Observed {
            flow_tables: vec![
                TableFill {
                    family: "ipv4".into(),
                    entries: 5,
                    capacity: 100,
                },
                TableFill {
                    family: "ipv6".into(),
                    entries: 1,
                    capacity: 100,
                },
            ],
            ring: RingFillStats {
                used_bytes: 160,
                size_bytes: 4096,
            },
            list_reloads: vec![ListReload {
                path: "/etc/xdp-audit/0.list".into(),
                applied: 2,
                rejected: 1,
                last_ok: false,
                last_at_s: 1_790_000_000,
                problem: Some("/etc/xdp-audit/0.list:3: not an address".into()),
            }],
            state_unwritable: false,
        },
        ship: Some(crate::ship::ShipStatus {
            backlog_segments: 2,
            backlog_bytes: 4096,
            oldest_age_s: Some(90),
            ..Default::default()
        }),
        alerts: Some(crate::alert::AlertStatus {
            active_total: 1,
            raised: 2,
            deliveries: vec![crate::alert::DeliveryStats {
                name: "webhook".into(),
                delivered: 2,
                ..Default::default()
            }],
            ..Default::default()
        }),
        stopped_at: None,
        stop_error: None,
        starting: false,
        unreported_crash: None,
        previous_counters: BTreeMap::new(),
        previous_alerts: Vec::new(),
        previous_lost_at_stop: 0,
        previous_kept_at_stop: 0,
        previous_stopped_unsealed: false,
        previous_live_journal: None,
        unaudited: Vec::new(),
        syslog: Some(crate::syslog::SyslogStatus {
            server: "tcp://127.0.0.1:514".into(),
            connected: true,
            sent: 10,
            ..Default::default()
        }),
    }
}

fn families(snap: &Snapshot, top: usize) -> Encoder {
    let mut e = Encoder::new();
    build(&mut e);
    attach(&mut e, &[("eth1".into(), "native".into())]);
    snapshot(&mut e, snap, top);
    e
}

/// The value of the sample written as `series` (name and labels as in the text).
fn value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}

#[test]
fn rules_beyond_the_top_n_are_summed_per_kind_in_a_gauge() {
    let snap = full(10_000);
    let e = families(&snap, 20);
    let d = e
        .declared()
        .iter()
        .find(|d| d.name == "xdp_audit_rule_hits_total");
    assert_eq!(d.map(|d| d.samples), Some(20), "20 rules");
    let text = e.finish();
    let (mut allow, mut block) = (0u64, 0u64);
    for r in &snap.rules[20..] {
        match r.kind.as_str() {
            "allow" => allow += r.hits,
            _ => block += r.hits,
        }
    }
    assert_eq!(
        value(&text, "xdp_audit_rule_hits_other{kind=\"allow\"}"),
        Some(allow.to_string())
    );
    assert_eq!(
        value(&text, "xdp_audit_rule_hits_other{kind=\"block\"}"),
        Some(block.to_string())
    );
    assert_eq!(
        value(
            &text,
            "xdp_audit_rule_hits_total{rule=\"/etc/xdp-audit/big.list:1\",kind=\"allow\"}"
        ),
        Some("10000".into()),
        "the rule with the most hits has its own series"
    );
    assert!(
        !text.contains("big.list:21\""),
        "rule 21 is outside the top 20"
    );
}

#[test]
fn flooding_rules_beyond_the_top_n_are_summed_in_a_gauge() {
    let snap = full(1_000);
    let e = families(&snap, 20);
    let d = e
        .declared()
        .iter()
        .find(|d| d.name == "xdp_audit_flood_rule_summarised_packets_total");
    assert_eq!(d.map(|d| d.samples), Some(20), "20 rules");
    let text = e.finish();
    let rest: u64 = snap.flood.rules[20..].iter().map(|r| r.summarised).sum();
    assert_eq!(
        value(&text, "xdp_audit_flood_rule_summarised_packets_other"),
        Some(rest.to_string())
    );
    assert_eq!(
        value(
            &text,
            "xdp_audit_flood_rule_summarised_packets_total{rule=\"/etc/xdp-audit/big.list:1\"}"
        ),
        Some("1000".into())
    );
    assert_eq!(
        value(
            &text,
            "xdp_audit_flood_budget_records_per_second{scope=\"rule\"}"
        ),
        Some("1000".into())
    );
    assert_eq!(
        value(&text, "xdp_audit_flood_flows_recorded_total"),
        Some("7".into())
    );
}

#[test]
fn no_family_grows_with_the_rules_loaded() {
    let small = families(&full(30), 20);
    let big = families(&full(100_000), 20);
    let count = |e: &Encoder| -> Vec<(String, usize)> {
        e.declared()
            .iter()
            .map(|d| (d.name.clone(), d.samples))
            .collect()
    };
    assert_eq!(count(&small), count(&big));
}

#[test]
fn the_program_counters_map_to_their_families() {
    let snap = full(0);
    let text = families(&snap, 20).finish();
    let n = |c: Counter| snap.counters[c.name()].to_string();
    assert_eq!(
        value(&text, "xdp_audit_packets_total{outcome=\"parsed_tcp\"}"),
        Some(n(Counter::ParsedTcp))
    );
    assert_eq!(
        value(&text, "xdp_audit_packets_dropped_total{reason=\"domain\"}"),
        Some(n(Counter::DroppedByDomain))
    );
    assert_eq!(
        value(
            &text,
            "xdp_audit_ring_events_lost_total{event=\"flow_start\"}"
        ),
        Some(n(Counter::LostFlowStart))
    );
    assert_eq!(
        value(&text, "xdp_audit_ring_events_lost_total{event=\"payload\"}"),
        Some(n(Counter::LostPayload))
    );
    // Every counter is somewhere: each value (distinct here) appears in the text.
    for c in Counter::ALL {
        let v = n(c);
        assert!(
            text.lines()
                .any(|l| l.starts_with("xdp_audit_") && l.ends_with(&format!(" {v}"))),
            "counter {} (value {v}) is not rendered",
            c.name()
        );
    }
    assert_eq!(
        value(&text, "xdp_audit_records_buffered"),
        Some("40".into())
    );
    assert_eq!(
        value(&text, "xdp_audit_records_buffered_unkept"),
        Some("7".into()),
        "the held records nothing else keeps"
    );
    assert_eq!(
        value(&text, "xdp_audit_status_timestamp_seconds"),
        Some("1796032800.5".into())
    );
    assert_eq!(
        value(
            &text,
            "xdp_audit_list_last_reload_success{file=\"/etc/xdp-audit/0.list\"}"
        ),
        Some("0".into())
    );
    assert_eq!(
        value(
            &text,
            "xdp_audit_journal_fsync_seconds_bucket{le=\"0.00025\"}"
        ),
        Some("3".into())
    );
    assert_eq!(
        value(
            &text,
            "xdp_audit_interface_attach_info{interface=\"eth1\",mode=\"native\"}"
        ),
        Some("1".into())
    );
}

#[test]
fn every_family_is_in_the_readme_table_and_only_those() {
    let fixed = Static {
        attach: vec![("eth1".into(), "native".into())],
        top_rules: 20,
    };
    let text = render(&fixed, Some(&full(1)), 0);
    let mut served: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .map(|(name, _)| name)
        .collect();
    served.sort_unstable();
    let readme = include_str!("../../../../README.md");
    let mut documented: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| name.starts_with(super::super::encode::PREFIX))
        .collect();
    documented.sort_unstable();
    assert_eq!(
        served, documented,
        "README.md's Metrics table must list exactly the families the endpoint serves"
    );
}

#[test]
fn before_the_first_sweep_the_facts_alone_are_served() {
    let fixed = Static {
        attach: vec![("eth1".into(), "skb".into())],
        top_rules: 5,
    };
    let text = render(&fixed, None, 3);
    assert!(text.contains("xdp_audit_interface_attach_info{interface=\"eth1\",mode=\"skb\"} 1\n"));
    assert!(text.contains("xdp_audit_metrics_connections_refused_total 3\n"));
    assert!(!text.contains("xdp_audit_packets_total"));
}
