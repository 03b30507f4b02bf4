//! The alert conditions and their deduplication, without threads or I/O: inputs in, notices
//! out. Times are Unix ns the caller passes, so tests drive the windows directly.
//!
//! Every condition names an alert by id and [`Subject`]. The first time it holds, the alert
//! is raised (a notice); while it is active, the condition holding again adds to its count
//! and moves its last time (no notice); once it has not held for its hold window
//! (`--alert-window`, longer for conditions checked less often) it is resolved (a notice with
//! the final count). Counters read from the status snapshot alert on an increase; the
//! program's own counters (which a pinned program keeps across agents) count from the first
//! snapshot, the agent's from zero.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use foldhash::fast::RandomState;
use indexmap::{Equivalent, IndexMap};

use super::{Alert, AlertConfig, AlertId, AlertState, AlertStatus, Event, Hit, Subject};
use crate::status::Snapshot;

/// Notices kept for `status` (the last ones, raised or resolved).
pub const RECENT: usize = 10;

fn ns(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// What the engine reads from a status snapshot, and the kernel clock's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Ring-buffer reserve failures: flow events and payload copies (program counters).
    pub ring_lost: u64,
    /// Flows the program could not insert into its table (program counter).
    pub insert_failed: u64,
    /// Flows whose start event never reached the sweeper.
    pub lost_starts: u64,
    /// Entries of the fuller flow table.
    pub table_entries: u64,
    /// The store's disk refuses writes.
    pub store_degraded: bool,
    /// Records the store dropped or refused.
    pub store_refused: u64,
    /// adjtimex says the clock is not synchronised.
    pub clock_unsynced: bool,
    /// Failed shipping passes (with `--ship`).
    pub ship_failures: u64,
    /// Segments waiting to be shipped.
    pub ship_backlog: u64,
    /// Messages the syslog stage dropped (with `--syslog`).
    pub syslog_dropped: u64,
}

impl Gauges {
    /// The gauges of `snap`, with the clock's state read separately.
    pub fn of(snap: &Snapshot, clock_unsynced: bool) -> Self {
        let c = |name: &str| snap.counters.get(name).copied().unwrap_or(0);
        Self {
            ring_lost: c("lost_flow_start")
                + c("lost_flow_end")
                + c("lost_flow_drop")
                + c("lost_payload"),
            insert_failed: c("flow_insert_failed"),
            lost_starts: snap.flows.lost_starts,
            table_entries: snap.flows.table_v4.max(snap.flows.table_v6),
            store_degraded: snap.store.degraded,
            store_refused: snap.store.dropped + snap.flows.sink_errors,
            clock_unsynced,
            ship_failures: snap.ship.as_ref().map_or(0, |s| s.failures),
            ship_backlog: snap.ship.as_ref().map_or(0, |s| s.backlog_segments),
            syslog_dropped: snap.syslog.as_ref().map_or(0, |s| s.dropped),
        }
    }
}

/// A [`Subject`] with borrowed texts: the condition of an active alert, which holds again
/// far more often than it raises one, is looked up without allocating.
#[derive(Clone, Copy, Debug, Default, Hash)]
struct SubjectRef<'a> {
    client: Option<IpAddr>,
    user: Option<&'a str>,
    rule: Option<&'a str>,
    file: Option<&'a str>,
}

impl SubjectRef<'_> {
    fn owned(self) -> Subject {
        Subject {
            client: self.client,
            user: self.user.map(str::to_owned),
            rule: self.rule.map(str::to_owned),
            file: self.file.map(str::to_owned),
        }
    }
}

/// The key of an active alert, borrowed. Its derived `Hash` feeds the hasher what the owned
/// key's does (fields in the same order; an `Option<&str>` hashes as an `Option<String>`),
/// which the map needs and a test checks.
#[derive(Clone, Copy, Hash)]
struct Lookup<'a>(AlertId, SubjectRef<'a>);

impl Equivalent<(AlertId, Subject)> for Lookup<'_> {
    fn equivalent(&self, (id, s): &(AlertId, Subject)) -> bool {
        let Lookup(my_id, my) = self;
        my_id == id
            && my.client == s.client
            && my.user == s.user.as_deref()
            && my.rule == s.rule.as_deref()
            && my.file == s.file.as_deref()
    }
}

struct Active {
    alert: Alert,
    /// Resolved this long after the last time the condition held.
    hold_ns: i64,
}

/// The conditions and the alerts they raised; see the module docs.
pub struct Engine {
    window_ns: i64,
    burst_hits: u64,
    burst_window_ns: i64,
    table_percent: u64,
    table_size: u64,
    chain_hold_ns: i64,
    /// The limit on active traffic alerts ([`AlertId::is_traffic`]); system alerts, a bounded
    /// set, are never held back by it: a flood fills the table with traffic alerts exactly
    /// when the store or the ring is most likely to fail.
    max_active: usize,
    /// Active traffic alerts.
    traffic_active: usize,
    active: IndexMap<(AlertId, Subject), Active, RandomState>,
    /// Per client: the start of its burst window and its blocked records in it.
    bursts: HashMap<IpAddr, (i64, u64), RandomState>,
    last: Option<Gauges>,
    recent: VecDeque<Alert>,
    raised: u64,
    resolved: u64,
    suppressed: u64,
}

impl Engine {
    /// An engine with `cfg`'s thresholds for flow tables of `flow_table_size` entries each.
    pub fn new(cfg: &AlertConfig, flow_table_size: u32) -> Self {
        let window_ns = ns(cfg.alert_window).max(1);
        Self {
            window_ns,
            burst_hits: cfg.alert_burst_hits.max(1),
            burst_window_ns: ns(cfg.alert_burst_window).max(1),
            table_percent: u64::from(cfg.alert_flow_table_percent),
            table_size: u64::from(flow_table_size),
            chain_hold_ns: window_ns
                .saturating_add(ns(cfg.alert_verify_interval).saturating_mul(2)),
            max_active: cfg.alert_max_active as usize,
            traffic_active: 0,
            active: IndexMap::default(),
            bursts: HashMap::default(),
            last: None,
            recent: VecDeque::with_capacity(RECENT),
            raised: 0,
            resolved: 0,
            suppressed: 0,
        }
    }

    /// Raises the alert `(id, subject)` or adds `n` to the active one.
    #[allow(clippy::too_many_arguments)]
    fn touch(
        &mut self,
        id: AlertId,
        subject: SubjectRef<'_>,
        text: impl FnOnce() -> String,
        n: u64,
        hold_ns: i64,
        now: i64,
        out: &mut Vec<Alert>,
    ) {
        if let Some(a) = self.active.get_mut(&Lookup(id, subject)) {
            a.alert.count += n;
            a.alert.last_ns = now;
            return;
        }
        if id.is_traffic() {
            if self.traffic_active >= self.max_active {
                self.suppressed += 1;
                return;
            }
            self.traffic_active += 1;
        }
        let alert = Alert {
            id,
            severity: id.severity(),
            state: AlertState::Raised,
            text: text(),
            subject: subject.owned(),
            first_ns: now,
            last_ns: now,
            count: n,
        };
        self.raised += 1;
        self.notice(alert.clone(), out);
        let key = (id, alert.subject.clone());
        self.active.insert(key, Active { alert, hold_ns });
    }

    fn notice(&mut self, alert: Alert, out: &mut Vec<Alert>) {
        if self.recent.len() == RECENT {
            self.recent.pop_back();
        }
        self.recent.push_front(alert.clone());
        out.push(alert);
    }

    /// `n` blocked records of one (client, user, rule).
    pub fn hit(&mut self, h: Hit<'_>, n: u64, now: i64, out: &mut Vec<Alert>) {
        // Texts are written only for alerts raised, not for every hit.
        let who = || match h.user {
            Some(u) => format!("{u} ({})", h.client),
            None => h.client.to_string(),
        };
        let text = || format!("{} blocked by {}", who(), h.rule.unwrap_or("a list rule"));
        let subject = SubjectRef {
            client: h.user.is_none().then_some(h.client),
            user: h.user,
            rule: h.rule,
            file: None,
        };
        self.touch(
            AlertId::BlockFirst,
            subject,
            text,
            n,
            self.window_ns,
            now,
            out,
        );
        if self.bursts.len() >= self.max_active && !self.bursts.contains_key(&h.client) {
            self.suppressed += 1;
            return;
        }
        let w = self.bursts.entry(h.client).or_insert((now, 0));
        if now - w.0 >= self.burst_window_ns {
            *w = (now, 0);
        }
        let before = w.1;
        w.1 += n;
        let count = w.1;
        if count >= self.burst_hits {
            let (limit, window) = (self.burst_hits, self.burst_window_ns / 1_000_000_000);
            let text = || {
                format!(
                    "{count} blocked records from {} within {window} s (threshold {limit})",
                    who()
                )
            };
            // Crossing the threshold counts the whole window so far, then each record.
            let n = if before < self.burst_hits { count } else { n };
            let subject = SubjectRef {
                client: Some(h.client),
                ..SubjectRef::default()
            };
            self.touch(
                AlertId::BlockBurst,
                subject,
                text,
                n,
                self.window_ns,
                now,
                out,
            );
        }
    }

    /// A status snapshot's gauges.
    pub fn observe(&mut self, g: Gauges, now: i64, out: &mut Vec<Alert>) {
        let base = self.last.unwrap_or(Gauges {
            lost_starts: 0,
            store_refused: 0,
            ship_failures: 0,
            syslog_dropped: 0,
            ..g
        });
        self.last = Some(g);
        let w = self.window_ns;
        let none = SubjectRef::default;
        let lost = g.ring_lost.saturating_sub(base.ring_lost);
        if lost > 0 {
            let text = || {
                format!("the ring buffer was full: {lost} flow events or payload copies lost (raise --ringbuf-bytes)")
            };
            self.touch(AlertId::RingLoss, none(), text, lost, w, now, out);
        }
        let starts = g.lost_starts.saturating_sub(base.lost_starts)
            + g.insert_failed.saturating_sub(base.insert_failed);
        if starts > 0 {
            let text = || {
                format!("{starts} flows started unseen (start events lost or table inserts failed); the sweeper records them from the table")
            };
            self.touch(AlertId::FlowStartLoss, none(), text, starts, w, now, out);
        }
        if self.table_size > 0 && g.table_entries * 100 > self.table_percent * self.table_size {
            let (e, size, p) = (g.table_entries, self.table_size, self.table_percent);
            let text = || {
                format!("a flow table holds {e} of {size} entries (over {p}%): the oldest idle flows are evicted")
            };
            self.touch(AlertId::FlowTableFull, none(), text, 1, w, now, out);
        }
        if g.store_degraded {
            let text = || {
                "the audit store's disk refuses writes; records are held in memory, or journals wait to be sealed".to_owned()
            };
            self.touch(AlertId::StoreDegraded, none(), text, 1, w, now, out);
        }
        let refused = g.store_refused.saturating_sub(base.store_refused);
        if refused > 0 {
            let text = || format!("the audit store dropped or refused {refused} records");
            self.touch(AlertId::StoreRefused, none(), text, refused, w, now, out);
        }
        let failed = g.ship_failures.saturating_sub(base.ship_failures);
        if failed > 0 {
            let backlog = g.ship_backlog;
            let text = || {
                format!("shipping to object storage failed {failed} times; {backlog} segments wait on the gateway (status says why)")
            };
            self.touch(AlertId::ShipFailing, none(), text, failed, w, now, out);
        }
        let dropped = g.syslog_dropped.saturating_sub(base.syslog_dropped);
        if dropped > 0 {
            let text = || {
                format!("the syslog stage dropped {dropped} messages (its queue was full; the store still holds the records)")
            };
            self.touch(AlertId::SyslogLoss, none(), text, dropped, w, now, out);
        }
        if g.clock_unsynced {
            let text = || {
                "the kernel clock is not synchronised (adjtimex STA_UNSYNC): record times may be wrong".to_owned()
            };
            self.touch(AlertId::ClockUnsync, none(), text, 1, w, now, out);
        }
    }

    /// An explicit event.
    pub fn event(&mut self, e: Event, now: i64, out: &mut Vec<Alert>) {
        fn file(f: &str) -> SubjectRef<'_> {
            SubjectRef {
                file: Some(f),
                ..SubjectRef::default()
            }
        }
        match e {
            Event::ListRejected { file: f, reason } => {
                let text = || {
                    format!("list file rejected, its last good version stays in force: {reason}")
                };
                self.touch(
                    AlertId::ListRejected,
                    file(&f),
                    text,
                    1,
                    self.window_ns,
                    now,
                    out,
                );
            }
            Event::ChainBroken { file: f, reason } => {
                let text = format!("the store does not verify: {f}: {reason}");
                let hold = self.chain_hold_ns;
                self.touch(AlertId::ChainBroken, file(&f), || text, 1, hold, now, out);
            }
            Event::StoreUnreadable { file: f, reason } => {
                let text = format!("the store could not be verified: {f}: {reason}");
                let hold = self.chain_hold_ns;
                self.touch(
                    AlertId::StoreUnreadable,
                    file(&f),
                    || text,
                    1,
                    hold,
                    now,
                    out,
                );
            }
            Event::ListStale { reason } => {
                let text =
                    || format!("the blocklists in force are not what the files say: {reason}");
                let subject = SubjectRef::default();
                // Stale until a restart: it holds, however long no change comes to refuse.
                self.touch(AlertId::ListStale, subject, text, 1, i64::MAX, now, out);
            }
            Event::Crashed { evidence } => {
                let text = || format!("the previous agent did not stop cleanly: {evidence}");
                let subject = SubjectRef::default();
                self.touch(
                    AlertId::AgentCrashed,
                    subject,
                    text,
                    1,
                    self.window_ns,
                    now,
                    out,
                );
            }
        }
    }

    /// Resolves the alerts whose condition has not held for their hold window, and forgets
    /// burst windows that ended.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Alert>) {
        let mut done = Vec::new();
        let traffic = &mut self.traffic_active;
        self.active.retain(|_, a| {
            let quiet = now - a.alert.last_ns >= a.hold_ns;
            if quiet {
                if a.alert.id.is_traffic() {
                    *traffic -= 1;
                }
                done.push(Alert {
                    state: AlertState::Resolved,
                    ..a.alert.clone()
                });
            }
            !quiet
        });
        done.sort_by_key(|a| (a.first_ns, a.id));
        for a in done {
            self.resolved += 1;
            self.notice(a, out);
        }
        let bw = self.burst_window_ns;
        self.bursts.retain(|_, w| now - w.0 < bw);
    }

    /// The summary for `status` (the thread adds the queue's and deliveries' counters).
    pub fn status(&self) -> AlertStatus {
        let mut active: Vec<Alert> = self.active.values().map(|a| a.alert.clone()).collect();
        active.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.first_ns.cmp(&b.first_ns))
                .then(a.id.cmp(&b.id))
        });
        AlertStatus {
            active,
            recent: self.recent.iter().cloned().collect(),
            active_total: self.active.len() as u64,
            raised: self.raised,
            resolved: self.resolved,
            suppressed: self.suppressed,
            ..AlertStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: i64 = 1_000_000_000;

    fn engine() -> Engine {
        let cfg = AlertConfig {
            alert_window: Duration::from_secs(60),
            alert_burst_hits: 5,
            alert_burst_window: Duration::from_secs(10),
            ..AlertConfig::default()
        };
        Engine::new(&cfg, 1000)
    }

    fn hit<'a>(client: &str, rule: &'a str) -> Hit<'a> {
        Hit {
            client: client.parse().expect("test address"),
            user: None,
            rule: Some(rule),
        }
    }

    fn ids(out: &[Alert]) -> Vec<(AlertId, AlertState)> {
        out.iter().map(|a| (a.id, a.state)).collect()
    }

    #[test]
    fn the_first_blocked_hit_per_client_and_rule_raises_one_alert_with_counts() {
        let mut e = engine();
        let mut out = Vec::new();
        for t in 0..3 {
            e.hit(hit("10.0.0.2", "b.list:1"), 1, t * S, &mut out);
        }
        e.hit(hit("10.0.0.2", "b.list:2"), 1, 3 * S, &mut out);
        e.hit(hit("10.0.0.3", "b.list:1"), 1, 3 * S, &mut out);
        assert_eq!(ids(&out), [(AlertId::BlockFirst, AlertState::Raised); 3]);
        let st = e.status();
        let first = st
            .active
            .iter()
            .find(|a| a.subject.rule.as_deref() == Some("b.list:1") && a.count == 3)
            .expect("the first client's alert counts its three hits");
        assert_eq!((first.first_ns, first.last_ns), (0, 2 * S));
        out.clear();
        e.tick(62 * S, &mut out);
        assert_eq!(
            ids(&out),
            [(AlertId::BlockFirst, AlertState::Resolved)],
            "only the alert quiet for the window resolves"
        );
        assert_eq!(out[0].count, 3);
        out.clear();
        e.hit(hit("10.0.0.2", "b.list:1"), 1, 70 * S, &mut out);
        assert_eq!(
            ids(&out),
            [(AlertId::BlockFirst, AlertState::Raised)],
            "a hit after the window raises anew"
        );
    }

    #[test]
    fn a_borrowed_key_hashes_and_compares_as_the_owned_one() {
        use std::hash::BuildHasher as _;
        let state = RandomState::default();
        let client = Some("10.0.0.2".parse().expect("address"));
        let subjects = [
            SubjectRef::default(),
            SubjectRef {
                client,
                rule: Some("b.list:1"),
                ..SubjectRef::default()
            },
            SubjectRef {
                user: Some("alice"),
                rule: Some("b.list:1"),
                ..SubjectRef::default()
            },
            SubjectRef {
                file: Some("/etc/xdp-audit/block.list"),
                ..SubjectRef::default()
            },
            SubjectRef {
                user: Some(""),
                ..SubjectRef::default()
            },
        ];
        for (i, s) in subjects.iter().enumerate() {
            for id in [AlertId::BlockFirst, AlertId::ListRejected] {
                let owned = (id, s.owned());
                assert_eq!(
                    state.hash_one(Lookup(id, *s)),
                    state.hash_one(&owned),
                    "{owned:?}"
                );
                for (j, other) in subjects.iter().enumerate() {
                    assert_eq!(
                        Lookup(id, *other).equivalent(&owned),
                        i == j,
                        "{other:?} against {owned:?}"
                    );
                }
                assert!(!Lookup(AlertId::RingLoss, *s).equivalent(&owned));
            }
        }
    }

    #[test]
    fn a_user_is_the_subject_when_known() {
        let mut e = engine();
        let mut out = Vec::new();
        for c in ["10.0.0.2", "10.0.0.3"] {
            let h = Hit {
                user: Some("alice"),
                ..hit(c, "b.list:1")
            };
            e.hit(h, 1, 0, &mut out);
        }
        assert_eq!(out.len(), 1, "one alert for alice and the rule: {out:?}");
        assert_eq!(out[0].subject.user.as_deref(), Some("alice"));
    }

    #[test]
    fn a_burst_raises_once_at_the_threshold() {
        let mut e = engine();
        let mut out = Vec::new();
        for i in 0..20 {
            e.hit(hit("10.0.0.2", &format!("b.list:{i}")), 1, i, &mut out);
        }
        let bursts: Vec<_> = out.iter().filter(|a| a.id == AlertId::BlockBurst).collect();
        assert_eq!(bursts.len(), 1, "{bursts:?}");
        let active = e.status().active;
        let b = active
            .iter()
            .find(|a| a.id == AlertId::BlockBurst)
            .expect("burst active");
        assert_eq!(
            b.count, 20,
            "the burst counts every hit from the threshold's first on"
        );
        out.clear();
        // Four hits a window: never a burst.
        let mut e = engine();
        for i in 0..12 {
            e.hit(hit("10.0.0.9", "b.list:1"), 1, i * 3 * S, &mut out);
        }
        assert!(out.iter().all(|a| a.id != AlertId::BlockBurst), "{out:?}");
    }

    #[test]
    fn counters_alert_on_increases_and_program_counters_from_the_first_snapshot() {
        let mut e = engine();
        let mut out = Vec::new();
        let g = Gauges {
            ring_lost: 50,
            insert_failed: 7,
            ..Gauges::default()
        };
        e.observe(g, 0, &mut out);
        assert!(
            out.is_empty(),
            "losses before this agent are history: {out:?}"
        );
        for t in 1..4 {
            let g = Gauges {
                ring_lost: 50 + t as u64 * 10,
                lost_starts: t as u64,
                store_refused: 2,
                ship_failures: t as u64,
                ship_backlog: 5,
                syslog_dropped: 4 * t as u64,
                ..g
            };
            e.observe(g, t * S, &mut out);
        }
        assert_eq!(
            ids(&out),
            [
                (AlertId::RingLoss, AlertState::Raised),
                (AlertId::FlowStartLoss, AlertState::Raised),
                (AlertId::StoreRefused, AlertState::Raised),
                (AlertId::ShipFailing, AlertState::Raised),
                (AlertId::SyslogLoss, AlertState::Raised),
            ]
        );
        let st = e.status();
        let count = |id| st.active.iter().find(|a| a.id == id).map(|a| a.count);
        assert_eq!(count(AlertId::RingLoss), Some(30));
        assert_eq!(count(AlertId::FlowStartLoss), Some(3));
        assert_eq!(count(AlertId::StoreRefused), Some(2));
        assert_eq!(count(AlertId::ShipFailing), Some(3));
        assert_eq!(count(AlertId::SyslogLoss), Some(12));
    }

    #[test]
    fn states_alert_while_they_hold_and_resolve_after_the_window() {
        let mut e = engine();
        let mut out = Vec::new();
        let bad = Gauges {
            table_entries: 901,
            store_degraded: true,
            clock_unsynced: true,
            ..Gauges::default()
        };
        let edge = Gauges {
            table_entries: 900,
            ..Gauges::default()
        };
        e.observe(edge, 0, &mut out);
        assert!(out.is_empty(), "90% is not over 90%: {out:?}");
        for t in 1..5 {
            e.observe(bad, t * S, &mut out);
        }
        assert_eq!(out.len(), 3, "{out:?}");
        out.clear();
        e.observe(edge, 5 * S, &mut out);
        e.tick(63 * S, &mut out);
        assert!(out.is_empty(), "not yet quiet for the window: {out:?}");
        e.tick(64 * S, &mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out
            .iter()
            .all(|a| a.state == AlertState::Resolved && a.count == 4));
        assert!(e.status().active.is_empty());
    }

    #[test]
    fn a_broken_chain_stays_active_between_verifications() {
        let mut e = engine();
        let mut out = Vec::new();
        let broken = || Event::ChainBroken {
            file: "/var/lib/xdp-audit/manifest".into(),
            reason: "entry 3 changed".into(),
        };
        e.event(broken(), 0, &mut out);
        e.tick(3600 * S, &mut out);
        e.event(broken(), 3600 * S, &mut out);
        assert_eq!(
            ids(&out),
            [(AlertId::ChainBroken, AlertState::Raised)],
            "{out:?}"
        );
    }

    #[test]
    fn an_unreadable_store_file_raises_its_own_alert_not_a_broken_chain() {
        let mut e = engine();
        let mut out = Vec::new();
        let unreadable = || Event::StoreUnreadable {
            file: "/var/lib/xdp-audit/seg-1.parquet".into(),
            reason: "Input/output error".into(),
        };
        e.event(unreadable(), 0, &mut out);
        e.tick(3600 * S, &mut out);
        e.event(unreadable(), 3600 * S, &mut out);
        assert_eq!(
            ids(&out),
            [(AlertId::StoreUnreadable, AlertState::Raised)],
            "{out:?}"
        );
        assert_eq!(out[0].severity, crate::alert::Severity::Warning);
        assert!(out[0].text.contains("could not be verified"), "{out:?}");
    }

    #[test]
    fn a_list_change_failed_part_way_raises_one_critical_alert() {
        let mut e = engine();
        let mut out = Vec::new();
        for (t, what) in [(0, "failed part way"), (S, "not applied")] {
            let reason = format!("list b.list: {what}; restart the agent");
            e.event(Event::ListStale { reason }, t, &mut out);
        }
        // A day without a change to refuse: still stale, still active.
        e.tick(24 * 3600 * S, &mut out);
        assert_eq!(
            ids(&out),
            [(AlertId::ListStale, AlertState::Raised)],
            "{out:?}"
        );
        assert_eq!(out[0].severity, crate::alert::Severity::Critical);
        assert!(out[0].text.contains("failed part way"), "{out:?}");
    }

    #[test]
    fn the_active_limit_suppresses_and_counts() {
        let cfg = AlertConfig {
            alert_max_active: 2,
            ..AlertConfig::default()
        };
        let mut e = Engine::new(&cfg, 0);
        let mut out = Vec::new();
        for i in 0..5 {
            e.hit(hit(&format!("10.0.0.{i}"), "b.list:1"), 1, 0, &mut out);
        }
        let st = e.status();
        assert_eq!(st.active.len(), 2);
        assert!(st.suppressed >= 3, "{}", st.suppressed);
    }

    #[test]
    fn a_flood_of_blocked_clients_never_keeps_out_the_system_alerts() {
        let cfg = AlertConfig {
            alert_max_active: 2,
            ..AlertConfig::default()
        };
        let mut e = Engine::new(&cfg, 0);
        let mut out = Vec::new();
        for c in ["10.0.0.1", "10.0.0.2"] {
            e.hit(hit(c, "b.list:1"), 1, 0, &mut out);
        }
        e.hit(hit("10.0.0.3", "b.list:1"), 1, 0, &mut out);
        assert!(
            e.status().suppressed > 0,
            "the third client is over the limit"
        );
        out.clear();
        let degraded = Gauges {
            store_degraded: true,
            ..Gauges::default()
        };
        e.observe(degraded, S, &mut out);
        e.event(
            Event::ListRejected {
                file: "b.list".into(),
                reason: "b.list:3: not an address".into(),
            },
            S,
            &mut out,
        );
        assert_eq!(
            ids(&out),
            [
                (AlertId::StoreDegraded, AlertState::Raised),
                (AlertId::ListRejected, AlertState::Raised)
            ],
            "the table full of traffic alerts must not suppress these"
        );
        assert_eq!(e.status().active_total, 4);
        out.clear();
        e.hit(hit("10.0.0.4", "b.list:1"), 1, S, &mut out);
        assert!(out.is_empty(), "traffic stays limited: {out:?}");
    }

    #[test]
    fn recent_keeps_the_last_ten_newest_first() {
        let mut e = engine();
        let mut out = Vec::new();
        for i in 0..15 {
            e.event(
                Event::ListRejected {
                    file: format!("l{i}"),
                    reason: "l:1: bad".into(),
                },
                i,
                &mut out,
            );
        }
        let r = e.status().recent;
        assert_eq!(r.len(), RECENT);
        assert_eq!(r[0].subject.file.as_deref(), Some("l14"));
    }
}
