//! The alert conditions and their deduplication, without threads or I/O: inputs in, notices
//! out. Times are the caller's ([`Now`]: wall for the notices, monotonic for the windows), so
//! tests drive the windows directly.
//!
//! Every condition names an alert by id and [`Subject`]. The first time it holds, the alert
//! is raised (a notice); while it is active, the condition holding again adds to its count
//! and moves its last time (no notice); once it has not held for its hold window
//! (`--alert-window`, longer for conditions checked less often) it is resolved (a notice with
//! the final count). Counters read from the status snapshot alert on an increase; the
//! program's own counters (which a pinned program keeps across agents) count from the last
//! agent's figures when the program was adopted ([`Engine::previous_run`]), else from the
//! first snapshot; the agent's own from zero.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use foldhash::fast::RandomState;
use indexmap::{Equivalent, IndexMap};

use super::{Alert, AlertConfig, AlertId, AlertState, AlertStatus, Event, Hit, ListKept, Subject};

mod gauges;
mod limits;
mod store;
mod sweep;
pub use gauges::Gauges;

/// Notices kept for `status` (the last ones, raised or resolved).
pub const RECENT: usize = 10;

/// Active overflow alerts at most: the per-rule alerts that count the clients the
/// active-alert limit kept out ([`Engine::overflow`]).
const MAX_OVERFLOW: usize = 1024;

fn ns(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A [`Subject`] with borrowed texts: the condition of an active alert, which holds again
/// far more often than it raises one, is looked up without allocating.
#[derive(Clone, Copy, Debug, Default, Hash)]
struct SubjectRef<'a> {
    client: Option<IpAddr>,
    user: Option<&'a str>,
    rule: Option<&'a str>,
    file: Option<&'a str>,
    interface: Option<&'a str>,
}

impl<'a> SubjectRef<'a> {
    fn of(s: &'a Subject) -> Self {
        Self {
            client: s.client,
            user: s.user.as_deref(),
            rule: s.rule.as_deref(),
            file: s.file.as_deref(),
            interface: s.interface.as_deref(),
        }
    }

    fn owned(self) -> Subject {
        Subject {
            client: self.client,
            user: self.user.map(str::to_owned),
            rule: self.rule.map(str::to_owned),
            file: self.file.map(str::to_owned),
            interface: self.interface.map(str::to_owned),
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
            && my.interface == s.interface.as_deref()
    }
}

struct Active {
    alert: Alert,
    /// Resolved this long after the last time the condition held.
    hold_ns: i64,
    /// When it last held, on the monotonic clock ([`Now::mono`]).
    last_mono: i64,
}

/// The time of an input: the wall clock for the notices' `first` and `last`, and a clock no
/// one steps (CLOCK_BOOTTIME) for the windows. On the wall clock alone, a clock stepped back
/// an hour held every alert active and every burst counting for that hour, and one stepped
/// forward resolved them at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Unix ns.
    pub wall: i64,
    /// ns on a monotonic clock.
    pub mono: i64,
}

impl Now {
    /// The host's clocks now.
    pub fn host() -> Self {
        Self {
            wall: jiff::Timestamp::now().as_nanosecond() as i64,
            mono: crate::clock::clock_ns(libc::CLOCK_BOOTTIME),
        }
    }
}

/// One time for both clocks (tests, and inputs with no monotonic time of their own).
impl From<i64> for Now {
    fn from(ns: i64) -> Self {
        Self { wall: ns, mono: ns }
    }
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
    /// Active traffic alerts, per id (first hits, bursts): each has the limit, so a flood's
    /// first hits do not keep out the burst of the one client that sends the most.
    traffic_active: [usize; 2],
    /// Active overflow alerts ([`Engine::overflow`]).
    overflow_active: usize,
    /// The limit on active first-hit alerts of one rule: a spoofed flood to one blocked
    /// address raises one per source, each a line of `alerts.jsonl` in the store.
    max_per_rule: usize,
    /// Active first-hit alerts with a client or user, per rule.
    rule_active: HashMap<String, usize, RandomState>,
    active: IndexMap<(AlertId, Subject), Active, RandomState>,
    /// Per client: the start of its burst window (monotonic) and its blocked records in it.
    bursts: HashMap<IpAddr, (i64, u64), RandomState>,
    /// When a full `bursts` was last cleared of its quietest clients.
    bursts_thinned_ns: i64,
    last: Option<Gauges>,
    /// The program counters as the last agent left them ([`Engine::previous_run`]).
    previous: Option<Gauges>,
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
            traffic_active: [0; 2],
            overflow_active: 0,
            max_per_rule: cfg.alert_max_per_rule as usize,
            rule_active: HashMap::default(),
            active: IndexMap::default(),
            bursts: HashMap::default(),
            bursts_thinned_ns: i64::MIN,
            last: None,
            previous: None,
            recent: VecDeque::with_capacity(RECENT),
            raised: 0,
            resolved: 0,
            suppressed: 0,
        }
    }

    /// Adds `n` to the active alert `(id, subject)`, if there is one.
    fn bump(&mut self, id: AlertId, subject: SubjectRef<'_>, n: u64, now: Now) -> bool {
        let Some(a) = self.active.get_mut(&Lookup(id, subject)) else {
            return false;
        };
        a.alert.count += n;
        a.alert.last_ns = now.wall;
        a.last_mono = now.mono;
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        id: AlertId,
        subject: Subject,
        text: String,
        n: u64,
        hold_ns: i64,
        now: Now,
        out: &mut Vec<Alert>,
    ) {
        let alert = Alert {
            id,
            severity: id.severity(),
            state: AlertState::Raised,
            text,
            subject,
            first_ns: now.wall,
            last_ns: now.wall,
            count: n,
        };
        self.raised += 1;
        self.notice(alert.clone(), out);
        let key = (id, alert.subject.clone());
        self.active.insert(
            key,
            Active {
                alert,
                hold_ns,
                last_mono: now.mono,
            },
        );
    }

    fn notice(&mut self, alert: Alert, out: &mut Vec<Alert>) {
        if self.recent.len() == RECENT {
            self.recent.pop_back();
        }
        self.recent.push_front(alert.clone());
        out.push(alert);
    }

    /// `n` blocked records of one (client, user, rule).
    pub fn hit(&mut self, h: Hit<'_>, n: u64, now: impl Into<Now>, out: &mut Vec<Alert>) {
        let now = now.into();
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
            interface: None,
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
            self.thin_bursts(now.mono);
        }
        if self.bursts.len() >= self.max_active && !self.bursts.contains_key(&h.client) {
            self.suppressed += 1;
            return;
        }
        let w = self.bursts.entry(h.client).or_insert((now.mono, 0));
        if now.mono - w.0 >= self.burst_window_ns {
            *w = (now.mono, 0);
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

    /// Makes room in a full burst map, at most once a second: windows that ended go, and so
    /// do clients with a single hit, or not on pace for a quarter of the threshold in their
    /// window so far; if that leaves it over three quarters full, the slowest go down to
    /// that. Spoofed sources (a hit or two each) would otherwise hold every slot and keep a
    /// real attacker, even a slow one, from being counted.
    fn thin_bursts(&mut self, now: i64) {
        if now.saturating_sub(self.bursts_thinned_ns) < 1_000_000_000 {
            return;
        }
        self.bursts_thinned_ns = now;
        let (bw, hits) = (self.burst_window_ns.max(1) as u128, self.burst_hits);
        // Hits per window at this client's pace so far.
        let pace = |w: &(i64, u64)| u128::from(w.1) * bw / (now.saturating_sub(w.0).max(1) as u128);
        self.bursts.retain(|_, w| {
            let ended = now.saturating_sub(w.0).max(0) as u128 >= bw;
            !ended && w.1 >= hits.min(2) && pace(w) * 4 >= u128::from(hits)
        });
        let room = self.max_active / 4 * 3;
        if self.bursts.len() > room {
            let mut paces: Vec<(u128, IpAddr)> =
                self.bursts.iter().map(|(ip, w)| (pace(w), *ip)).collect();
            let slowest = paces.len() - room;
            paces.select_nth_unstable(slowest - 1);
            for (_, ip) in &paces[..slowest] {
                self.bursts.remove(ip);
            }
        }
    }

    /// A status snapshot's gauges.
    pub fn observe(&mut self, g: Gauges, now: impl Into<Now>, out: &mut Vec<Alert>) {
        let now = now.into();
        // The first snapshot: this agent's own counters start at 0; the program's from the
        // last agent's final figures when the program counted on since (none of them went
        // back: the same pinned program), else from this snapshot, as what an earlier
        // program counted is no news.
        let program = match self.previous {
            Some(p) if p.ring_lost <= g.ring_lost && p.insert_failed <= g.insert_failed => p,
            _ => g,
        };
        let base = self.last.unwrap_or(Gauges {
            lost_starts: 0,
            lost_unseen: 0,
            evicted: 0,
            store_refused: 0,
            store_skipped_frames: 0,
            store_skipped_bytes: 0,
            store_journals_gone: 0,
            store_set_aside: 0,
            ship_failures: 0,
            syslog_dropped: 0,
            open_flows_damaged: 0,
            ring_lost: program.ring_lost,
            insert_failed: program.insert_failed,
            vlan_stacked: program.vlan_stacked,
            ..g
        });
        self.last = Some(g);
        let w = self.window_ns;
        let none = SubjectRef::default;
        let lost = g.ring_lost.saturating_sub(base.ring_lost);
        if lost > 0 {
            let text = || {
                "the ring buffer was full: flow events or payload copies lost (the alert's count \
                 is how many; raise --ringbuf-bytes)"
                    .to_owned()
            };
            self.touch(AlertId::RingLoss, none(), text, lost, w, now, out);
        }
        let stacked = g.vlan_stacked.saturating_sub(base.vlan_stacked);
        if stacked > 0 {
            let text = || {
                "frames with more than two VLAN tags dropped (the alert's count is how many): a \
                 host strips VLAN 0 tags and delivers what follows, which the program does not \
                 read (a way around the lists and the audit)"
                    .to_owned()
            };
            self.touch(AlertId::VlanStack, none(), text, stacked, w, now, out);
        }
        let starts = g.lost_starts.saturating_sub(base.lost_starts)
            + g.lost_unseen.saturating_sub(base.lost_unseen)
            + g.insert_failed.saturating_sub(base.insert_failed);
        if starts > 0 {
            let text = || {
                // No number in the text: it is set at the raise, the count grows after it.
                "flows started unseen (start events lost or table inserts failed; the alert's \
                 count is how many); the sweeper records those it finds in the table, and \
                 those the table evicted before a sweep found them (`lost_unseen` in \
                 `status`) have no record"
                    .to_owned()
            };
            self.touch(AlertId::FlowStartLoss, none(), text, starts, w, now, out);
        }
        // Full by its count at a sweep, or by its evictions: an LRU table evicts before its
        // count reaches its size (a CPU's share of free entries runs out first), and a sweep
        // that takes ended flows reads it emptier than it ran.
        let evicted = g.evicted.saturating_sub(base.evicted);
        let (e, size, p) = (g.table_entries, self.table_size, self.table_percent);
        if self.table_size > 0 && e * 100 > p * size {
            let text = || {
                format!("a flow table holds {e} of {size} entries (over {p}%): the oldest idle flows are evicted")
            };
            self.touch(
                AlertId::FlowTableFull,
                none(),
                text,
                evicted.max(1),
                w,
                now,
                out,
            );
        } else if evicted > 0 {
            let text = || {
                "a flow table is full: flows evicted before they ended (the alert's count is \
                 how many), each written from its last snapshot and what it counted after lost; \
                 raise --flow-table-size"
                    .to_owned()
            };
            self.touch(AlertId::FlowTableFull, none(), text, evicted, w, now, out);
        }
        self.observe_store(&g, &base, now, out);
        let failed = g.ship_failures.saturating_sub(base.ship_failures);
        if failed > 0 {
            let backlog = g.ship_backlog;
            // The text stays the raise's (a count of failures in it read wrong by the time
            // the alert resolved): the count is the failed passes, `status` the backlog now.
            let text = || {
                format!("shipping to object storage fails (segments waiting on the gateway when raised: {backlog}; the count is the failed passes, `status` says why and what waits now)")
            };
            self.touch(AlertId::ShipFailing, none(), text, failed, w, now, out);
        } else if g.ship_failing {
            // Held while the last pass failed: retries back off up to a minute apart, and a
            // shorter window resolved and raised the one outage again at each.
            self.bump(AlertId::ShipFailing, none(), 0, now);
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
    pub fn event(&mut self, e: Event, now: impl Into<Now>, out: &mut Vec<Alert>) {
        let now = now.into();
        fn file(f: &str) -> SubjectRef<'_> {
            SubjectRef {
                file: Some(f),
                ..SubjectRef::default()
            }
        }
        match e {
            Event::ListRejected {
                file: f,
                reason,
                kept,
            } => {
                let text = || match kept {
                    ListKept::LastGood => format!(
                        "list file rejected, its last good version stays in force: {reason}"
                    ),
                    ListKept::Held => format!(
                        "list file rejected, and no version of it was read: the tables of its \
                         kind stay as the running program held them until it loads: {reason}"
                    ),
                    ListKept::Nothing => format!(
                        "list file rejected, and no version of it is in force: its rules are \
                         not enforced until it loads: {reason}"
                    ),
                };
                // Another problem than the active alert names (the file was fixed, then
                // broken otherwise within the window): that alert is resolved, its count
                // final, and this one raised, so status, the webhook and the store say what
                // is wrong now, not what was.
                let stale = |a: &Alert| !a.text.ends_with(reason.as_str());
                self.resolve_if(AlertId::ListRejected, file(&f), stale, out);
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
            Event::SigningBegan { file: f, entry } => {
                let text = format!(
                    "{f}: the chain's head (entry {entry}) named no key and carried no \
                     signature, and the signing key signs on top of it from this start: the \
                     signature vouches for entries 0 to {entry} as they are now, not as they \
                     were written. Expected once, when a store is first given a key; otherwise \
                     the head was stripped of its signature: compare the manifest with a copy \
                     (a shipped manifest-<seq>.jsonl) with `xdp-audit verify --public-key`"
                );
                let hold = self.chain_hold_ns;
                // A subject of its own: a break `verify` finds meanwhile must not be taken for
                // a repeat of this one and counted into it unsaid.
                let subject = format!("{f} (signing began after entry {entry})");
                self.touch(
                    AlertId::ChainBroken,
                    file(&subject),
                    || text,
                    1,
                    hold,
                    now,
                    out,
                );
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
            Event::LostAtStop { records } => {
                let text = || {
                    format!("the last agent ended holding {records} records it could not write, and that nothing else keeps (as its last status counted them, with those its pinned flow table kept if this start could not take it over): the disk refused them")
                };
                let (subject, w) = (SubjectRef::default(), self.window_ns);
                self.touch(AlertId::StoreRefused, subject, text, records, w, now, out);
            }
            Event::JournalGone { file, records } => {
                let text = || {
                    format!("damage in the audit store: journal {file}, which the last agent left unsealed with {records} records made durable, is gone and no segment holds it: deleted while no agent ran, its records are lost")
                };
                self.journal_lost(&file, text, records, now, out);
            }
            Event::JournalShort {
                file,
                durable,
                held,
            } => {
                let lost = durable.saturating_sub(held);
                let text = || {
                    format!("damage in the audit store: journal {file}, which the last agent left unsealed with {durable} records made durable, holds {held}: cut short while no agent ran, {lost} records are lost")
                };
                self.journal_lost(&file, text, lost, now, out);
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
    pub fn tick(&mut self, now: impl Into<Now>, out: &mut Vec<Alert>) {
        let now = now.into();
        let mut done = Vec::new();
        let mut slots = limits::Slots {
            traffic: &mut self.traffic_active,
            overflow: &mut self.overflow_active,
            rules: &mut self.rule_active,
        };
        self.active.retain(|(id, subject), a| {
            let quiet = now.mono - a.last_mono >= a.hold_ns;
            if quiet {
                slots.release(*id, subject);
                done.push(a.alert.clone());
            }
            !quiet
        });
        done.sort_by_key(|a| (a.first_ns, a.id));
        self.resolve_all(done, out);
        let bw = self.burst_window_ns;
        self.bursts.retain(|_, w| now.mono - w.0 < bw);
    }

    /// Takes on the alerts the last agent left active (its last status snapshot's), before
    /// any input: a condition that outlives an agent stays one alert, counted on, and every
    /// alert raised is resolved once, by whichever agent sees it end. Each is resolved after
    /// its hold window from now unless its condition holds again. An agent crash, and a list
    /// change that failed in the kernel (a restart loads the lists afresh), end with the
    /// agent that had them: those, and traffic alerts over the limit, are resolved at once.
    pub fn carry(&mut self, alerts: Vec<Alert>, now: impl Into<Now>, out: &mut Vec<Alert>) {
        let now = now.into();
        let mut done = Vec::new();
        for alert in alerts {
            let key = (alert.id, alert.subject.clone());
            if alert.state != AlertState::Raised || self.active.contains_key(&key) {
                continue;
            }
            let room = self.room(alert.id, SubjectRef::of(&alert.subject));
            if !room || matches!(alert.id, AlertId::AgentCrashed | AlertId::ListStale) {
                done.push(alert);
                continue;
            }
            self.take_slot(alert.id, SubjectRef::of(&alert.subject));
            let hold_ns = match alert.id {
                AlertId::ChainBroken | AlertId::StoreUnreadable => self.chain_hold_ns,
                _ => self.window_ns,
            };
            let active = Active {
                alert,
                hold_ns,
                last_mono: now.mono,
            };
            self.active.insert(key, active);
        }
        self.resolve_all(done, out);
    }

    /// Resolves the active alert `(id, subject)` now if `stale` says so of it (no traffic
    /// alert: those hold slots against their limits).
    fn resolve_if(
        &mut self,
        id: AlertId,
        subject: SubjectRef<'_>,
        stale: impl FnOnce(&Alert) -> bool,
        out: &mut Vec<Alert>,
    ) {
        debug_assert!(!id.is_traffic());
        let key = Lookup(id, subject);
        if self.active.get(&key).is_some_and(|a| stale(&a.alert)) {
            if let Some(a) = self.active.shift_remove(&key) {
                self.resolve_all(vec![a.alert], out);
            }
        }
    }

    /// Sends the resolved notices of `alerts`, in order.
    fn resolve_all(&mut self, alerts: Vec<Alert>, out: &mut Vec<Alert>) {
        for a in alerts {
            self.resolved += 1;
            let resolved = Alert {
                state: AlertState::Resolved,
                ..a
            };
            self.notice(resolved, out);
        }
    }

    /// The last agent's final gauges: the program's loss counters of the first snapshot are
    /// counted from them ([`Engine::observe`]).
    pub fn previous_run(&mut self, g: Gauges) {
        self.previous = Some(g);
    }

    /// The summary for `status` (the thread adds the queue's and deliveries' counters).
    pub fn status(&self) -> AlertStatus {
        let mut active: Vec<Alert> = self.active.values().map(|a| a.alert.clone()).collect();
        // The system alerts first (a bounded set): a status that lists only the first
        // [`super::thread::STATUS_ACTIVE`] keeps them all, and the next agent carries them.
        active.sort_by(|a, b| {
            (a.id.is_traffic().cmp(&b.id.is_traffic()))
                .then(b.severity.cmp(&a.severity))
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
mod tests;
