//! What a report counts, in one pass over the matching records: the summary, the blocked
//! destinations by rule and by client, the timeline, and the records shown in the report's
//! table (the earliest ones; the attachment holds them all).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use super::svg::Timeline;
use crate::record::{EndReason, FlowRecord};

/// Rows of a blocked-destinations table shown at most; the rest are counted.
pub const TOP_ROWS: usize = 100;

/// The rule column of a blocked flow whose record names none (a record of an earlier format).
pub const NO_RULE: &str = "(not recorded)";

/// The summary counts of a report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Records matched (flows, or slices of long flows).
    pub flows: u64,
    /// Packets in both directions.
    pub packets: u64,
    /// Frame bytes in both directions.
    pub bytes: u64,
    /// Distinct client (originator) addresses.
    pub clients: u64,
    /// Distinct subscriber accounts.
    pub users: u64,
    /// Flows a list blocked (at least one packet dropped).
    pub blocked_flows: u64,
    /// Packets dropped by lists.
    pub dropped_packets: u64,
    /// First packet of the earliest record, Unix ns (none without records).
    pub first_ns: Option<i64>,
    /// Last packet of the latest record, Unix ns.
    pub last_ns: Option<i64>,
}

/// One row of the blocked-destinations tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockedRow {
    /// The list rule, `FILE:LINE` ([`NO_RULE`] when the record names none).
    pub rule: String,
    /// The client's address (by-client table only).
    pub client: Option<IpAddr>,
    /// The client's subscriber account, if known (by-client table only).
    pub user: Option<String>,
    /// The blocked destination address.
    pub destination: IpAddr,
    /// The name asked for: the flow's domain or DNS question, if known.
    pub name: Option<String>,
    /// Distinct clients (by-rule table only).
    pub clients: Option<u64>,
    /// Blocked flows.
    pub flows: u64,
    /// Packets dropped.
    pub dropped_packets: u64,
    /// First packet of the first of those flows, Unix ns.
    pub first_ns: i64,
    /// Last packet of the last of them, Unix ns.
    pub last_ns: i64,
}

/// A table of at most [`TOP_ROWS`] rows, most flows first, and how many rows were left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlockedTable {
    /// The rows shown.
    pub rows: Vec<BlockedRow>,
    /// Rows left out.
    pub more: u64,
}

type RuleKey = (String, IpAddr, Option<String>);
type ClientKey = (IpAddr, Option<String>, String, IpAddr, Option<String>);

/// The running counts of one report.
pub struct Tally {
    /// The summary so far.
    pub summary: Summary,
    clients: HashSet<IpAddr>,
    users: HashSet<String>,
    by_rule: HashMap<RuleKey, (BlockedRow, HashSet<IpAddr>)>,
    by_client: HashMap<ClientKey, BlockedRow>,
    /// Flows and blocked flows over time.
    pub timeline: Timeline,
    shown: Vec<FlowRecord>,
    limit: usize,
    /// The sort key of the last record kept at the latest cut, once `limit` were kept: a
    /// record that sorts at or after it is never shown, so it is not cloned.
    cutoff: Option<ShownKey>,
}

/// The order of the records shown: by start, then client.
type ShownKey = (i64, IpAddr);

fn shown_key(r: &FlowRecord) -> ShownKey {
    (r.time_start_ns, r.src_ip)
}

impl Tally {
    /// Counts for the window `[since_ns, until_ns)`, keeping the `limit` earliest records.
    pub fn new(since_ns: i64, until_ns: i64, limit: usize) -> Self {
        Self {
            summary: Summary::default(),
            clients: HashSet::new(),
            users: HashSet::new(),
            by_rule: HashMap::new(),
            by_client: HashMap::new(),
            timeline: Timeline::new(since_ns, until_ns),
            shown: Vec::new(),
            limit,
            cutoff: None,
        }
    }

    /// Counts one record.
    pub fn add(&mut self, r: &FlowRecord) {
        let s = &mut self.summary;
        s.flows += 1;
        s.packets = s.packets.saturating_add(r.packets);
        s.bytes = s.bytes.saturating_add(r.bytes);
        s.first_ns = Some(
            s.first_ns
                .map_or(r.time_start_ns, |t| t.min(r.time_start_ns)),
        );
        s.last_ns = Some(s.last_ns.map_or(r.time_end_ns, |t| t.max(r.time_end_ns)));
        // A flood summary's `src_ip` is only its most frequent source, no client of its own.
        if r.end_reason != EndReason::Summarised && self.clients.insert(r.src_ip) {
            s.clients += 1;
        }
        if let Some(u) = &r.attr.user {
            if !self.users.contains(u) {
                self.users.insert(u.clone());
                s.users += 1;
            }
        }
        // Blocked flows by the bucket of their first drop: the one predicate the summary and
        // the tables count by too, so the timeline adds up to them.
        self.timeline.add(r.time_start_ns, first_drop(r));
        if r.dropped > 0 {
            // A blocked flow is counted at its first drop's record: its later records (a
            // client's retries, a resolver's) carry more drops, not another flow.
            s.blocked_flows += u64::from(first_drop(r));
            s.dropped_packets = s.dropped_packets.saturating_add(r.dropped);
            self.add_blocked(r);
        }
        if self.limit > 0 && self.cutoff.is_none_or(|c| shown_key(r) < c) {
            self.shown.push(r.clone());
            // Sorted and cut at twice the limit: each record is sorted a bounded number of
            // times, and memory stays bounded by the limit, not by the window. Saturating:
            // `--limit` takes any usize, and twice the largest overflows.
            if self.shown.len() >= self.limit.saturating_mul(2) {
                self.cut_shown();
            }
        }
    }

    fn add_blocked(&mut self, r: &FlowRecord) {
        let rule = r.rule.clone().unwrap_or_else(|| NO_RULE.to_owned());
        let name = r.attr.domain.clone().or_else(|| r.attr.dns_qname.clone());
        let row = || BlockedRow {
            rule: rule.clone(),
            client: None,
            user: None,
            destination: r.dst_ip,
            name: name.clone(),
            clients: None,
            flows: 0,
            dropped_packets: 0,
            first_ns: r.time_start_ns,
            last_ns: r.time_end_ns,
        };
        let key = (rule.clone(), r.dst_ip, name.clone());
        let (by_rule, clients) = self
            .by_rule
            .entry(key)
            .or_insert_with(|| (row(), HashSet::new()));
        count_into(by_rule, r);
        // A flood summary is no flow and no one client's: `src_ip` is only the most
        // frequent of its sources, which the by-client table would credit with them all.
        if r.end_reason == EndReason::Summarised {
            return;
        }
        clients.insert(r.src_ip);
        let key = (
            r.src_ip,
            r.attr.user.clone(),
            rule.clone(),
            r.dst_ip,
            name.clone(),
        );
        let by_client = self.by_client.entry(key).or_insert_with(|| BlockedRow {
            client: Some(r.src_ip),
            user: r.attr.user.clone(),
            ..row()
        });
        count_into(by_client, r);
    }

    fn cut_shown(&mut self) {
        // Stable: of records with one key, the earlier read stays, as the cutoff assumes.
        self.shown.sort_by_key(shown_key);
        self.shown.truncate(self.limit);
        if self.shown.len() == self.limit {
            self.cutoff = self.shown.last().map(shown_key);
        }
    }

    /// The finished counts: summary, the two blocked tables, the timeline and the records
    /// shown (earliest first).
    pub fn finish(mut self) -> Finished {
        self.cut_shown();
        let by_rule = top(self
            .by_rule
            .into_values()
            .map(|(mut row, clients)| {
                row.clients = Some(clients.len() as u64);
                row
            })
            .collect());
        let by_client = top(self.by_client.into_values().collect());
        Finished {
            summary: self.summary,
            blocked_by_rule: by_rule,
            blocked_by_client: by_client,
            timeline: self.timeline,
            shown: self.shown,
        }
    }
}

/// What [`Tally::finish`] hands over.
pub struct Finished {
    /// Summary counts.
    pub summary: Summary,
    /// Blocked destinations by rule.
    pub blocked_by_rule: BlockedTable,
    /// Blocked destinations by client.
    pub blocked_by_client: BlockedTable,
    /// Flows and blocked flows over time.
    pub timeline: Timeline,
    /// The earliest records, for the report's table.
    pub shown: Vec<FlowRecord>,
}

/// Whether `r` is a blocked flow's first drop's record, the one it is counted at: a drop
/// record that dropped packets (one that dropped none blocked nothing).
fn first_drop(r: &FlowRecord) -> bool {
    r.dropped > 0 && matches!(r.end_reason, EndReason::Drop | EndReason::Refused)
}

fn count_into(row: &mut BlockedRow, r: &FlowRecord) {
    row.flows += u64::from(first_drop(r));
    row.dropped_packets = row.dropped_packets.saturating_add(r.dropped);
    row.first_ns = row.first_ns.min(r.time_start_ns);
    row.last_ns = row.last_ns.max(r.time_end_ns);
}

/// The rows with the most flows (then most drops, then by rule, client and destination, so
/// the order is the same on every run), at most [`TOP_ROWS`].
fn top(mut rows: Vec<BlockedRow>) -> BlockedTable {
    rows.sort_by(|a, b| {
        (b.flows, b.dropped_packets)
            .cmp(&(a.flows, a.dropped_packets))
            .then_with(|| {
                (&a.rule, a.client, a.destination).cmp(&(&b.rule, b.client, b.destination))
            })
            .then_with(|| a.name.cmp(&b.name))
    });
    let more = rows.len().saturating_sub(TOP_ROWS) as u64;
    rows.truncate(TOP_ROWS);
    BlockedTable { rows, more }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::record::{Attribution, EndReason, Mac};

    const T0: i64 = 1_764_500_400_000_000_000;

    /// A TCP record of `client` to `dst`:443, a second long from `start_s` after T0.
    pub(in crate::report) fn rec(
        client: &str,
        dst: &str,
        start_s: i64,
        dropped: u64,
        rule: Option<&str>,
    ) -> FlowRecord {
        FlowRecord {
            time_start_ns: T0 + start_s * 1_000_000_000,
            time_end_ns: T0 + (start_s + 1) * 1_000_000_000,
            iface: "lan0".into(),
            ifindex: 2,
            vlan: None,
            vlan_inner: None,
            src_mac: Mac::default(),
            dst_mac: Mac::default(),
            proto: 6,
            src_ip: client.parse().expect("client"),
            src_port: 40000,
            dst_ip: dst.parse().expect("dst"),
            dst_port: 443,
            packets: 3,
            bytes: 180,
            resp_packets: 0,
            resp_bytes: 0,
            tcp_flags: 2,
            dropped,
            rule: rule.map(str::to_owned),
            end_reason: if dropped > 0 {
                EndReason::Drop
            } else {
                EndReason::Fin
            },
            attr: Attribution {
                user: Some(format!("u-{client}")),
                ..Attribution::default()
            },
        }
    }

    #[test]
    fn counts_add_up_by_rule_and_by_client() {
        let mut t = Tally::new(T0, T0 + 3600 * 1_000_000_000, 2);
        t.add(&rec("10.0.0.2", "192.0.2.9", 30, 2, Some("b.list:1")));
        t.add(&rec("10.0.0.3", "192.0.2.9", 10, 1, Some("b.list:1")));
        t.add(&rec("10.0.0.2", "192.0.2.9", 20, 3, Some("b.list:1")));
        t.add(&rec("10.0.0.2", "198.51.100.7", 5, 0, None));
        t.add(&rec("10.0.0.4", "198.51.100.8", 700, 1, None));
        let f = t.finish();
        let s = &f.summary;
        assert_eq!((s.flows, s.packets, s.bytes), (5, 15, 900));
        assert_eq!((s.clients, s.users), (3, 3));
        assert_eq!((s.blocked_flows, s.dropped_packets), (4, 7));
        assert_eq!(s.first_ns, Some(T0 + 5_000_000_000));
        let r = &f.blocked_by_rule.rows;
        assert_eq!(r.len(), 2);
        assert_eq!(
            (
                r[0].rule.as_str(),
                r[0].flows,
                r[0].dropped_packets,
                r[0].clients
            ),
            ("b.list:1", 3, 6, Some(2))
        );
        assert_eq!((r[1].rule.as_str(), r[1].flows), (NO_RULE, 1));
        let c = &f.blocked_by_client.rows;
        assert_eq!(c.len(), 3);
        assert_eq!(
            (c[0].client, c[0].flows, c[0].dropped_packets),
            (Some("10.0.0.2".parse().expect("ip")), 2, 5)
        );
        assert_eq!(c[0].user.as_deref(), Some("u-10.0.0.2"));
        assert_eq!(f.timeline.flows.iter().sum::<u64>(), 5);
        assert_eq!(f.timeline.blocked.iter().sum::<u64>(), 4);
        let shown: Vec<i64> = f
            .shown
            .iter()
            .map(|r| (r.time_start_ns - T0) / 1_000_000_000)
            .collect();
        assert_eq!(shown, [5, 10], "the two earliest");
    }

    /// A blocked flow with later records (a client's retries) is one blocked flow, its drops
    /// summed; a flood summary adds its drops to its rule and nothing to any client (it was
    /// counted a flow, and its most frequent source credited with every packet).
    #[test]
    fn a_flow_is_blocked_once_and_a_flood_summary_is_no_clients() {
        let mut t = Tally::new(T0, T0 + 3600 * 1_000_000_000, 0);
        t.add(&rec("10.0.0.2", "192.0.2.9", 10, 1, Some("b.list:1")));
        let retries = FlowRecord {
            end_reason: EndReason::Idle,
            ..rec("10.0.0.2", "192.0.2.9", 11, 2, Some("b.list:1"))
        };
        t.add(&retries);
        let summary = FlowRecord {
            end_reason: EndReason::Summarised,
            packets: 5_000,
            dropped: 5_000,
            dst_ip: "0.0.0.0".parse().expect("zero"),
            ..rec("10.0.0.7", "192.0.2.9", 12, 1, Some("b.list:1"))
        };
        t.add(&summary);
        let f = t.finish();
        let s = &f.summary;
        assert_eq!((s.blocked_flows, s.dropped_packets), (1, 5_003));
        assert_eq!(s.clients, 1, "the summary's source is no client");
        assert_eq!(f.timeline.blocked.iter().sum::<u64>(), 1);
        let flows: u64 = f.blocked_by_rule.rows.iter().map(|r| r.flows).sum();
        assert_eq!(flows, 1, "{:?}", f.blocked_by_rule.rows);
        let c = &f.blocked_by_client.rows;
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!((c[0].flows, c[0].dropped_packets), (1, 3));
    }

    #[test]
    fn a_table_keeps_the_top_rows_and_counts_the_rest() {
        let mut t = Tally::new(T0, T0 + 1_000_000_000, 0);
        for i in 0..(TOP_ROWS + 7) {
            let dst = format!("192.0.2.{}", i % 250);
            let dst = if i < 250 {
                dst
            } else {
                format!("198.51.100.{i}")
            };
            t.add(&rec("10.0.0.2", &dst, 0, 1, Some("b.list:2")));
        }
        let f = t.finish();
        assert_eq!(f.blocked_by_rule.rows.len(), TOP_ROWS);
        assert_eq!(f.blocked_by_rule.more, 7);
        assert!(f.shown.is_empty(), "limit 0 shows none");
    }

    #[test]
    fn the_largest_limit_keeps_every_record_without_overflow() {
        let mut t = Tally::new(T0, T0 + 1_000_000_000, usize::MAX);
        t.add(&rec("10.0.0.2", "192.0.2.1", 0, 1, None));
        t.add(&rec("10.0.0.3", "192.0.2.2", 0, 0, None));
        let f = t.finish();
        assert_eq!(f.shown.len(), 2, "both records shown");
    }

    /// A drop record that dropped nothing is no blocked flow: the timeline counted it while
    /// the summary did not, so the two disagreed.
    #[test]
    fn the_timeline_counts_blocked_flows_as_the_summary_does() {
        let mut t = Tally::new(T0, T0 + 3600 * 1_000_000_000, 0);
        t.add(&FlowRecord {
            end_reason: EndReason::Drop,
            ..rec("10.0.0.2", "192.0.2.9", 10, 0, Some("b.list:1"))
        });
        t.add(&rec("10.0.0.3", "192.0.2.9", 20, 1, Some("b.list:1")));
        let f = t.finish();
        assert_eq!(f.summary.blocked_flows, 1);
        assert_eq!(
            f.timeline.blocked.iter().sum::<u64>(),
            f.summary.blocked_flows
        );
    }

    /// The records shown are the earliest `limit` of all, whatever the order they come in
    /// (the cutoff skips records without keeping them): against a sort of them all.
    #[test]
    fn the_records_shown_are_the_earliest_in_any_order() {
        let starts: Vec<i64> = (0..200).map(|i| (i * 7919) % 211).collect();
        for limit in [1, 3, 10, 64] {
            let mut t = Tally::new(T0, T0 + 3600 * 1_000_000_000, limit);
            for (i, s) in starts.iter().enumerate() {
                let client = format!("10.0.{}.{}", i % 3, i % 5);
                t.add(&rec(&client, "192.0.2.9", *s, 0, None));
            }
            let got: Vec<_> = t.finish().shown.iter().map(shown_key).collect();
            let mut all: Vec<_> = starts
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let client = format!("10.0.{}.{}", i % 3, i % 5);
                    shown_key(&rec(&client, "192.0.2.9", *s, 0, None))
                })
                .collect();
            all.sort();
            all.truncate(limit);
            assert_eq!(got, all, "limit {limit}");
        }
    }
}
