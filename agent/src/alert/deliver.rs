//! Where alert notices go. Each destination is a [`Delivery`] the alert thread calls in
//! turn: the agent's log ([`LogDelivery`]), `alerts.jsonl` in the store's hash chain
//! ([`ChainDelivery`]), the webhook ([`super::webhook::Webhook`]); a syslog sink plugs in
//! the same way. A destination that can be slow has its own thread and bounded queue, so one
//! never holds up the others.

use std::collections::VecDeque;
use std::path::PathBuf;

use super::{Alert, AlertState, DeliveryStats, Severity};
use crate::store::oplog::{self, Log, OpBody, OpEntry, Who};

/// A destination of alert notices.
pub trait Delivery: Send {
    /// Hands one notice over. It must not block for long: a destination that waits on the
    /// network queues the notice for a thread of its own.
    fn deliver(&mut self, alert: &Alert);
    /// Sends on what `deliver` kept since the last call: the alert thread calls it once per
    /// loop, after that loop's notices, so a destination that writes to disk writes them
    /// together.
    fn flush(&mut self) {}
    /// Retries what failed; the alert thread calls it about once a second.
    fn tick(&mut self) {}
    /// Delivers what it still can before the agent exits (bounded in time).
    fn close(&mut self) {}
    /// Its counters.
    fn stats(&self) -> DeliveryStats;
}

/// The agent's log: `tracing` at a level by severity.
#[derive(Default)]
pub struct LogDelivery {
    delivered: u64,
}

impl Delivery for LogDelivery {
    fn deliver(&mut self, a: &Alert) {
        let (id, state, count) = (a.id.as_str(), a.state.as_str(), a.count);
        match (a.severity, a.state == AlertState::Resolved) {
            (_, true) | (Severity::Info, _) => {
                tracing::info!(alert = id, state, count, "{}", a.text)
            }
            (Severity::Warning, _) => tracing::warn!(alert = id, state, count, "{}", a.text),
            (Severity::Critical, _) => tracing::error!(alert = id, state, count, "{}", a.text),
        }
        self.delivered += 1;
    }

    fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            name: "log".into(),
            delivered: self.delivered,
            ..DeliveryStats::default()
        }
    }
}

/// Notices kept while `alerts.jsonl` cannot be written (a full disk): the least severe and
/// oldest go first.
pub const CHAIN_PENDING: usize = 1024;

/// `alerts.jsonl` in the store directory: one hash-chained line per notice (the operator
/// log's chain, `store::oplog`), anchored into the manifest by the sealer, so `verify`
/// notices a line removed. The notices of one loop of the alert thread are appended together
/// at its [`Delivery::flush`]: one lock, one write, one fsync (a flood's notices would
/// otherwise cost an fsync each); a loop with more than [`CHAIN_PENDING`] appends each
/// [`CHAIN_PENDING`] as they come. A failed append (a full disk) is kept and retried in order,
/// about once a second.
pub struct ChainDelivery {
    dir: PathBuf,
    who: Who,
    pending: VecDeque<OpEntry>,
    stats: DeliveryStats,
    /// Whether the last attempt failed (reported once until it succeeds again); while it
    /// does, only [`Delivery::tick`] lets the next attempt happen.
    failing: bool,
    retry_due: bool,
    /// Appends made (each one lock, one write and one fsync).
    appends: u64,
}

impl ChainDelivery {
    /// Appends to the alert log of the store in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            who: Who::current(),
            pending: VecDeque::new(),
            stats: DeliveryStats {
                name: "chain".into(),
                ..DeliveryStats::default()
            },
            failing: false,
            retry_due: false,
            appends: 0,
        }
    }

    /// Appends everything pending in one go; what is not written stays pending, in order.
    fn append_pending(&mut self) {
        self.retry_due = false;
        if self.pending.is_empty() {
            return;
        }
        self.appends += 1;
        let entries = self.pending.make_contiguous();
        match oplog::append_all_to(&self.dir, Log::Alerts, entries) {
            Ok(lines) => {
                self.pending.drain(..lines.len());
                self.stats.delivered += lines.len() as u64;
                self.failing = false;
            }
            Err(e) => {
                self.stats.failed += 1;
                if !self.failing {
                    tracing::error!(error = %e, waiting = self.pending.len(), "cannot append to the alert log; keeping the notices and retrying every second");
                }
                self.failing = true;
            }
        }
        self.stats.pending = self.pending.len() as u64;
    }
}

impl Delivery for ChainDelivery {
    fn deliver(&mut self, a: &Alert) {
        // A loop may raise or resolve thousands at once (a flood's first hits, resolved
        // together a window later): with a disk that takes writes they are written, not cut
        // down to the limit.
        if self.pending.len() >= CHAIN_PENDING && (!self.failing || self.retry_due) {
            self.append_pending();
        }
        // The disk refuses: the least severe, oldest first, so a flood's info notices do not
        // push out the critical one that says the store is failing; a notice less severe
        // than all those waiting is the one that goes.
        if self.pending.len() >= CHAIN_PENDING {
            let severity = |e: &OpEntry| match &e.body {
                OpBody::Alert(a) => a.severity,
                _ => Severity::Critical,
            };
            self.stats.dropped += 1;
            let least = (self.pending.iter().enumerate()).min_by_key(|(_, e)| severity(e));
            match least {
                Some((_, e)) if a.severity < severity(e) => return,
                Some((i, _)) => drop(self.pending.remove(i)),
                None => {}
            }
        }
        // A chain line holds at most `oplog::MAX_LINE` bytes, and a refused line would hold
        // every later one back: texts that come from outside (a list file's path and its
        // problem, a user name) are shortened as list problems are.
        let mut a = a.clone();
        let clip = |t: &mut String| *t = crate::blocklist::clipped(std::mem::take(t));
        clip(&mut a.text);
        let s = &mut a.subject;
        for t in [&mut s.user, &mut s.rule, &mut s.file]
            .into_iter()
            .flatten()
        {
            clip(t);
        }
        self.pending.push_back(OpEntry {
            at_ns: jiff::Timestamp::now().as_nanosecond() as i64,
            who: self.who.clone(),
            body: OpBody::Alert(a),
        });
        self.stats.pending = self.pending.len() as u64;
    }

    fn flush(&mut self) {
        if !self.failing || self.retry_due {
            self.append_pending();
        }
    }

    fn tick(&mut self) {
        self.retry_due = true;
    }

    fn close(&mut self) {
        self.append_pending();
    }

    fn stats(&self) -> DeliveryStats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertId, Subject};

    fn notice(i: u64) -> Alert {
        Alert {
            id: AlertId::BlockFirst,
            severity: Severity::Info,
            state: AlertState::Raised,
            text: format!("client {i} blocked"),
            subject: Subject {
                client: Some(std::net::IpAddr::from([10, 0, 0, i as u8])),
                ..Subject::default()
            },
            first_ns: i as i64,
            last_ns: i as i64,
            count: 1,
        }
    }

    #[test]
    fn the_notices_of_one_loop_are_one_append_and_verify_as_a_chain() {
        let tmp = crate::blocklist::tests::TempDir::new("chain-batch");
        let dir = tmp.0.clone();
        let mut d = ChainDelivery::new(dir.clone());
        for round in 0..2u64 {
            for i in 0..20 {
                d.deliver(&notice(round * 20 + i));
            }
            d.flush();
            assert_eq!(d.appends, round + 1, "one lock and one fsync per loop");
        }
        // A loop without notices writes nothing.
        d.flush();
        assert_eq!(d.appends, 2);
        let st = d.stats();
        assert_eq!((st.delivered, st.pending, st.failed), (40, 0, 0));
        let v = crate::store::verify::verify(&dir, None).expect("the alert log verifies");
        assert_eq!(v.alert_lines, 40);
        let scan = oplog::scan_log(&dir, Log::Alerts).expect("read the alert log");
        let firsts: Vec<i64> = scan
            .lines
            .iter()
            .map(|l| match &l.entry.body {
                OpBody::Alert(a) => a.first_ns,
                other => panic!("not an alert: {other:?}"),
            })
            .collect();
        assert_eq!(firsts, (0..40).collect::<Vec<i64>>(), "in order, each once");
    }

    #[test]
    fn a_loop_with_more_notices_than_the_limit_writes_them_all() {
        let tmp = crate::blocklist::tests::TempDir::new("chain-many");
        let dir = tmp.0.clone();
        let mut d = ChainDelivery::new(dir.clone());
        let n = CHAIN_PENDING as u64 * 2 + 5;
        for i in 0..n {
            d.deliver(&notice(i));
        }
        d.flush();
        let st = d.stats();
        assert_eq!((st.delivered, st.dropped, st.pending), (n, 0, 0));
        let v = crate::store::verify::verify(&dir, None).expect("the alert log verifies");
        assert_eq!(v.alert_lines, n);
    }

    /// A chain delivery into `tmp` whose every append fails, as on a full disk (its store
    /// directory is a file).
    fn refusing(tmp: &crate::blocklist::tests::TempDir) -> ChainDelivery {
        let dir = tmp.0.join("not-a-directory");
        std::fs::write(&dir, b"").expect("write a file");
        ChainDelivery::new(dir)
    }

    /// A critical notice (the store refuses writes).
    fn critical() -> Alert {
        Alert {
            id: AlertId::StoreDegraded,
            severity: Severity::Critical,
            ..notice(0)
        }
    }

    #[test]
    fn a_refusing_disk_drops_info_notices_before_a_critical_one() {
        let tmp = crate::blocklist::tests::TempDir::new("chain-refused");
        let mut d = refusing(&tmp);
        d.deliver(&critical());
        d.flush();
        assert_eq!(d.stats().failed, 1, "the append failed");
        for i in 1..=CHAIN_PENDING as u64 + 10 {
            d.deliver(&notice(i));
        }
        let st = d.stats();
        assert_eq!((st.dropped, st.pending), (11, CHAIN_PENDING as u64));
        let kept: Vec<Severity> = (d.pending.iter())
            .filter_map(|e| match &e.body {
                OpBody::Alert(a) => Some(a.severity),
                _ => None,
            })
            .collect();
        assert_eq!(kept[0], Severity::Critical, "the critical notice is kept");
        assert!(
            matches!(&d.pending[1].body, OpBody::Alert(a) if a.first_ns == 12),
            "the oldest info notices went"
        );
    }

    #[test]
    fn a_refusing_disk_drops_an_info_notice_rather_than_a_waiting_critical_one() {
        let tmp = crate::blocklist::tests::TempDir::new("chain-refused-critical");
        let mut d = refusing(&tmp);
        for _ in 0..CHAIN_PENDING {
            d.deliver(&critical());
            d.flush();
        }
        d.deliver(&notice(1));
        let st = d.stats();
        assert_eq!((st.dropped, st.pending), (1, CHAIN_PENDING as u64));
        assert!(
            (d.pending.iter())
                .all(|e| matches!(&e.body, OpBody::Alert(a) if a.severity == Severity::Critical)),
            "the info notice went, not a critical one"
        );
    }

    #[test]
    fn a_notice_too_long_for_a_chain_line_is_shortened_not_refused() {
        let tmp = crate::blocklist::tests::TempDir::new("chain-long");
        let dir = tmp.0.clone();
        let mut d = ChainDelivery::new(dir.clone());
        d.deliver(&notice(1));
        let mut long = notice(2);
        long.text = "x".repeat(oplog::MAX_LINE);
        long.subject.file = Some(format!("/{}", "d/".repeat(oplog::MAX_LINE)));
        d.deliver(&long);
        d.deliver(&notice(3));
        d.flush();
        let st = d.stats();
        assert_eq!(
            (st.delivered, st.pending, st.failed),
            (3, 0, 0),
            "none holds the others back"
        );
        let scan = oplog::scan_log(&dir, Log::Alerts).expect("read the alert log");
        assert_eq!((scan.lines.len(), scan.problem), (3, None));
        match &scan.lines[1].entry.body {
            OpBody::Alert(a) => assert!(a.text.len() < 1024 && a.text.contains("bytes left out")),
            other => panic!("not an alert: {other:?}"),
        }
    }
}
