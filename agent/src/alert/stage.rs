//! The alert stage: a [`RecordSink`] between the enrich stage and the store that hands the
//! blocked records (`dropped > 0`) to the alert thread and passes every record on. A record
//! that dropped nothing costs one compare; a blocked one appends its client, user and rule as
//! flat bytes to the batch ([`HitBatch`]): no hash, no allocation, no lookup on the records
//! thread. The alert thread counts the batch per (client, user, rule) ([`HitBatch::counted`]).
//! The batch goes with one `try_send` that never waits when it holds [`BATCH`] hits or at the
//! next tick (a sweep, about once a second): one wake-up of the alert thread per batch, not per
//! hit. A full queue drops the batch and counts its hits (see [`super::Handle`]).

use std::collections::HashMap;

use foldhash::fast::RandomState;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Handle, Hit};
use crate::enrich::stage::EnrichStatus;
use crate::reader::Payload;
use crate::record::FlowRecord;
use crate::sink::{RecordSink, SinkError};
use crate::store::StoreStatus;

/// Blocked records sent to the alert thread at once.
pub const BATCH: usize = 1024;

/// Blocked records as flat bytes, in the order seen. Per hit a head of fixed size for its
/// family (9 bytes for IPv4, 21 for IPv6): the family byte, the client's 4 or 16 address
/// bytes, then for the user and the rule a u16 marker: `NONE` (no text), `SAME` (the text
/// this field had at its last hit with one: a flood of one rule, or one user's hits, adds 9
/// bytes a hit, not the rule's `FILE:LINE` each time) or the length of the UTF-8 that
/// follows the head (the user's first). Texts longer than 65,533 bytes are cut at a
/// character boundary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HitBatch {
    bytes: Vec<u8>,
    hits: u64,
    /// The user's and the rule's last written text.
    last: [Last; 2],
}

/// Where a field's last written text lies in a batch's bytes, and its last byte (0 if
/// empty): a hit with another text is mostly told apart without reading the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Last {
    at: usize,
    /// `usize::MAX`: no text yet (no text is that long).
    len: usize,
    end: u8,
}

impl Default for Last {
    fn default() -> Self {
        Self {
            at: 0,
            len: usize::MAX,
            end: 0,
        }
    }
}

const NONE: u16 = u16::MAX;
const SAME: u16 = u16::MAX - 1;

impl HitBatch {
    /// A batch with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Blocked records in the batch.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Empties the batch, keeping its room.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.hits = 0;
        self.last = Default::default();
    }

    /// Appends one blocked record's (client, user, rule). The head is one write of a fixed
    /// size (no length to compute per hit), and a text other than its field's last is told
    /// apart by its length or last byte before any byte of the batch is read (in a flood of
    /// many rules, `FILE:LINE` texts differ at their end); an equal one is compared whole.
    /// This is the records thread's whole cost of a blocked record.
    #[inline]
    pub fn push(&mut self, client: IpAddr, user: Option<&str>, rule: Option<&str>) {
        let texts = [user.map(cut), rule.map(cut)];
        let markers = [self.marker(0, texts[0]), self.marker(1, texts[1])];
        let [[u0, u1], [r0, r1]] = markers.map(u16::to_le_bytes);
        match client {
            IpAddr::V4(a) => {
                let mut head = [4; 9];
                head[1..5].copy_from_slice(&a.octets());
                head[5..].copy_from_slice(&[u0, u1, r0, r1]);
                self.bytes.extend_from_slice(&head);
            }
            IpAddr::V6(a) => {
                let mut head = [6; 21];
                head[1..17].copy_from_slice(&a.octets());
                head[17..].copy_from_slice(&[u0, u1, r0, r1]);
                self.bytes.extend_from_slice(&head);
            }
        }
        for field in 0..2 {
            if let (Some(t), true) = (texts[field], markers[field] < SAME) {
                self.last[field] = Last {
                    at: self.bytes.len(),
                    len: t.len(),
                    end: t.last().copied().unwrap_or(0),
                };
                self.bytes.extend_from_slice(t);
            }
        }
        self.hits += 1;
    }

    /// The marker of `field`'s `text` at this hit: `NONE`, `SAME`, or its length (the text
    /// is then written after the head).
    #[inline(always)]
    fn marker(&self, field: usize, text: Option<&[u8]>) -> u16 {
        let Some(t) = text else {
            return NONE;
        };
        let l = self.last[field];
        let same = l.len == t.len()
            && l.end == t.last().copied().unwrap_or(0)
            && self.bytes.get(l.at..l.at + l.len) == Some(t);
        if same {
            SAME
        } else {
            t.len() as u16
        }
    }

    /// The distinct (client, user, rule) of the batch with how many records each stands for,
    /// in first-seen order.
    pub fn counted(&self) -> Vec<(Hit<'_>, u64)> {
        type Key<'a> = (IpAddr, Option<&'a str>, Option<&'a str>);
        let mut order: Vec<(Key<'_>, u64)> = Vec::new();
        let mut index: HashMap<Key<'_>, usize, RandomState> = HashMap::default();
        let mut reader = HitReader {
            rest: &self.bytes,
            last: [None; 2],
        };
        while let Some(key) = reader.next_hit() {
            match index.get(&key) {
                Some(&i) => order[i].1 += 1,
                None => {
                    index.insert(key, order.len());
                    order.push((key, 1));
                }
            }
        }
        order
            .into_iter()
            .map(|((client, user, rule), n)| (Hit { client, user, rule }, n))
            .collect()
    }
}

/// A text's bytes as a hit holds them: cut to 65,533 bytes at a character boundary.
#[inline(always)]
fn cut(t: &str) -> &[u8] {
    if t.len() < usize::from(SAME) {
        t.as_bytes()
    } else {
        cut_long(t)
    }
}

#[cold]
fn cut_long(t: &str) -> &[u8] {
    let mut end = usize::from(SAME - 1);
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    &t.as_bytes()[..end]
}

/// Reads back the hits [`HitBatch::push`] wrote.
struct HitReader<'a> {
    rest: &'a [u8],
    /// The user's and the rule's last text, for `SAME`.
    last: [Option<&'a str>; 2],
}

impl<'a> HitReader<'a> {
    /// The next hit; `None` at the end (or at bytes `push` did not write).
    fn next_hit(&mut self) -> Option<(IpAddr, Option<&'a str>, Option<&'a str>)> {
        let (&family, rest) = self.rest.split_first()?;
        let (client, rest) = match family {
            4 => {
                let (a, r) = rest.split_first_chunk::<4>()?;
                (IpAddr::V4(Ipv4Addr::from(*a)), r)
            }
            6 => {
                let (a, r) = rest.split_first_chunk::<16>()?;
                (IpAddr::V6(Ipv6Addr::from(*a)), r)
            }
            _ => return None,
        };
        let (markers, mut rest) = rest.split_first_chunk::<4>()?;
        let mut texts = [None; 2];
        for (field, text) in texts.iter_mut().enumerate() {
            *text = match u16::from_le_bytes([markers[2 * field], markers[2 * field + 1]]) {
                NONE => None,
                SAME => Some(self.last[field]?),
                len => {
                    let (t, r) = rest.split_at_checked(usize::from(len))?;
                    rest = r;
                    let t = std::str::from_utf8(t).ok()?;
                    self.last[field] = Some(t);
                    Some(t)
                }
            };
        }
        self.rest = rest;
        Some((client, texts[0], texts[1]))
    }
}

/// The alert stage; see the module docs.
pub struct AlertStage<S: RecordSink> {
    inner: S,
    alerts: Handle,
    batch: HitBatch,
}

impl<S: RecordSink> AlertStage<S> {
    /// Wraps `inner`, sending blocked records to `alerts`.
    pub fn new(inner: S, alerts: Handle) -> Self {
        Self {
            inner,
            alerts,
            batch: HitBatch::default(),
        }
    }

    /// Out of line: a blocked record's `write` stays a compare, a push and a count.
    #[cold]
    #[inline(never)]
    fn send(&mut self) {
        if self.batch.hits > 0 {
            // A batch the alert thread emptied, else one of this one's size.
            let next = match self.alerts.spare_batch() {
                Some(b) => b,
                None => HitBatch::with_capacity(self.batch.bytes.len()),
            };
            self.alerts.hits(std::mem::replace(&mut self.batch, next));
        }
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: RecordSink> RecordSink for AlertStage<S> {
    fn write(&mut self, record: &FlowRecord) -> Result<(), SinkError> {
        if record.dropped > 0 {
            let r = record;
            self.batch
                .push(r.src_ip, r.attr.user.as_deref(), r.rule.as_deref());
            if self.batch.hits as usize >= BATCH {
                self.send();
            }
        }
        self.inner.write(record)
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        self.inner.sync()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }

    fn sync_due(&mut self) -> Result<(), SinkError> {
        self.inner.sync_due()
    }

    fn writes_before(&self, record: &FlowRecord) -> bool {
        self.inner.writes_before(record)
    }

    fn flow_ended(&mut self, key: &agent_common::FlowKey) {
        self.inner.flow_ended(key)
    }

    fn unkept(&mut self) {
        self.inner.unkept()
    }

    fn kept_by_pins(&mut self, kept: bool) {
        self.inner.kept_by_pins(kept)
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        self.send();
        self.inner.tick()
    }

    fn close(&mut self) -> Result<(), SinkError> {
        // The last batch, and the finish, wait for room (bounded): at the stop the records
        // are written, and a queue a flood filled must not cut the final counts.
        let last = std::mem::take(&mut self.batch);
        let sent = last.hits == 0 || self.alerts.finish_hits(last);
        // Before the store's last seal, which anchors the alert log: the stop's notices
        // are inside the chain, not past its last anchor until the next agent. Asked for
        // even when the batch found no room.
        let finished = self.alerts.finish();
        if !sent || !finished {
            tracing::warn!("the alert thread did not finish in time; its last notices may be written after the store's last anchor");
        }
        self.inner.close()
    }

    fn store_status(&self) -> Option<StoreStatus> {
        self.inner.store_status()
    }

    fn enrich_status(&self) -> Option<EnrichStatus> {
        self.inner.enrich_status()
    }

    fn syslog_status(&self) -> Option<crate::syslog::SyslogStatus> {
        self.inner.syslog_status()
    }

    fn payload(&mut self, payload: &Payload) {
        self.inner.payload(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testgen::TrafficGen;

    /// A sink that keeps nothing.
    struct Discard;

    impl RecordSink for Discard {
        fn write(&mut self, _: &FlowRecord) -> Result<(), SinkError> {
            Ok(())
        }
        fn sync(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    #[test]
    fn blocked_records_are_counted_per_client_user_and_rule_and_sent_at_the_tick() {
        let alerts = super::super::Alerts::start(&Default::default(), 0, Vec::new())
            .expect("start the alert thread");
        let mut stage = AlertStage::new(Discard, alerts.handle());
        let mut g = TrafficGen::new(3, 0);
        let mut r = g.next_record();
        r.dropped = 1;
        r.rule = Some("b.list:1".into());
        let mut other = r.clone();
        other.rule = Some("b.list:2".into());
        let mut passed = r.clone();
        passed.dropped = 0;
        for rec in [&r, &passed, &r, &other, &r] {
            stage.write(rec).expect("write");
        }
        let counted = stage.batch.counted();
        let counts: Vec<(Option<&str>, u64)> = counted.iter().map(|(h, n)| (h.rule, *n)).collect();
        assert_eq!(counts, [(Some("b.list:1"), 3), (Some("b.list:2"), 1)]);
        stage.tick().expect("tick");
        assert_eq!(stage.batch.hits(), 0, "sent at the tick");
    }

    #[test]
    fn a_counted_batch_comes_back_empty_for_the_stage_to_fill_again() {
        let alerts = super::super::Alerts::start(&Default::default(), 0, Vec::new())
            .expect("start the alert thread");
        let mut stage = AlertStage::new(Discard, alerts.handle());
        let mut r = TrafficGen::new(5, 0).next_record();
        r.dropped = 1;
        r.rule = Some("b.list:1".into());
        for _ in 0..BATCH {
            stage.write(&r).expect("write");
        }
        assert_eq!(stage.batch.hits(), 0, "a full batch is sent at once");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let spare = loop {
            if let Some(b) = alerts.handle().spare_batch() {
                break b;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no batch came back in 30 s"
            );
            std::thread::yield_now();
        };
        assert_eq!(spare, HitBatch::with_capacity(0), "cleared");
        // The room of the 1,024 hits it held (9 bytes each: an IPv4 client, no user, the
        // same rule).
        assert!(
            spare.bytes.capacity() >= BATCH * 9,
            "its room kept: {}",
            spare.bytes.capacity()
        );
        let status = alerts.handle().status();
        assert_eq!(status.queue_full, 0);
        // The thread publishes its CPU time after each input: final once it stopped.
        let handle = alerts.handle();
        alerts.stop();
        assert!(
            handle.thread_cpu() > std::time::Duration::ZERO,
            "the alert thread's CPU time after counting a batch"
        );
    }

    #[test]
    fn a_repeated_user_or_rule_is_written_once_and_read_back_at_every_hit() {
        let a: IpAddr = "198.51.100.7".parse().expect("v4");
        let rule = "/etc/xdp-audit/lists/malware.list:1234";
        let mut b = HitBatch::default();
        for i in 0..1000 {
            // The rule every time; the user on every other hit, none in between.
            b.push(a, (i % 2 == 0).then_some("alice"), Some(rule));
        }
        assert!(
            b.bytes.len() <= 1000 * 9 + rule.len() + "alice".len(),
            "each text once: {} bytes",
            b.bytes.len()
        );
        let got: Vec<(Option<&str>, Option<&str>, u64)> = b
            .counted()
            .into_iter()
            .map(|(h, n)| (h.user, h.rule, n))
            .collect();
        assert_eq!(
            got,
            [(Some("alice"), Some(rule), 500), (None, Some(rule), 500)]
        );
        // A cleared batch forgets its texts: the next hit writes them again.
        b.clear();
        b.push(a, Some("bob"), Some(rule));
        assert_eq!(b.counted()[0].0.rule, Some(rule));
    }

    #[test]
    fn a_hit_batch_counts_each_client_user_and_rule_in_first_seen_order() {
        let v4: IpAddr = "198.51.100.7".parse().expect("v4");
        let v6: IpAddr = "2001:db8::7".parse().expect("v6");
        let long = "é".repeat(40_000); // 80,000 bytes: cut at a character boundary
        let mut b = HitBatch::default();
        b.push(v6, None, Some("b.list:9"));
        b.push(v4, Some("alice"), Some("b.list:1"));
        b.push(v6, None, Some("b.list:9"));
        b.push(v4, Some("alice"), None);
        b.push(v4, Some(&long), Some("b.list:1"));
        b.push(v6, None, Some("b.list:9"));
        assert_eq!(b.hits(), 6);
        let got: Vec<(IpAddr, Option<String>, Option<String>, u64)> = b
            .counted()
            .into_iter()
            .map(|(h, n)| {
                (
                    h.client,
                    h.user.map(str::to_owned),
                    h.rule.map(str::to_owned),
                    n,
                )
            })
            .collect();
        let cut = "é".repeat(32_766); // 65,532 bytes: the last whole character under 65,533
        let s = |t: &str| Some(t.to_owned());
        assert_eq!(
            got,
            [
                (v6, None, s("b.list:9"), 3),
                (v4, s("alice"), s("b.list:1"), 1),
                (v4, s("alice"), None, 1),
                (v4, Some(cut), s("b.list:1"), 1),
            ]
        );
    }

    /// Every shape of hit reads back as pushed: both families, no text, an empty one, the
    /// same text again (also across families and fields), the longest uncut text and the
    /// shortest cut one, and a cleared batch that must not refer to its old texts.
    #[test]
    fn every_shape_of_hit_reads_back_as_it_was_pushed() {
        let v4: IpAddr = "198.51.100.7".parse().expect("v4");
        let v6: IpAddr = "2001:db8::7".parse().expect("v6");
        let longest = "a".repeat(65_533);
        let too_long = "b".repeat(65_534);
        let hits: Vec<(IpAddr, Option<&str>, Option<&str>)> = vec![
            (v4, None, None),
            (v6, Some(""), Some("")),
            (v4, Some(""), Some("")),
            (v6, Some("alice"), Some("alice")),
            (v4, Some("alice"), Some("b.list:1")),
            (v6, None, Some("b.list:1")),
            (v4, Some(&longest), Some(&too_long)),
            (v6, Some(&longest), Some(&too_long)),
            (v4, Some("bob"), None),
        ];
        let mut b = HitBatch::default();
        for round in 0..2 {
            for &(c, u, r) in &hits {
                b.push(c, u, r);
            }
            let mut reader = HitReader {
                rest: &b.bytes,
                last: [None; 2],
            };
            for (i, &(c, u, r)) in hits.iter().enumerate() {
                let want = (c, u, r.map(|t| &t[..t.len().min(65_533)]));
                assert_eq!(reader.next_hit(), Some(want), "round {round}, hit {i}");
            }
            assert_eq!(
                reader.next_hit(),
                None,
                "round {round}: nothing after the last hit"
            );
            b.clear();
        }
    }
}
