//! The alert stage: a [`RecordSink`] between the enrich stage and the store that hands the
//! blocked records (`dropped > 0`) to the alert thread and passes every record on. A record
//! that dropped nothing costs one compare; a blocked one a hash of its (client, user, rule)
//! and a count on the batch's entry for it (strings are copied for a new entry only). The
//! batch goes with one `try_send` that never waits when it holds [`BATCH`] entries or at the
//! next tick (a sweep, about once a second): one wake-up of the alert thread per batch, not per
//! hit. A full queue drops the batch and counts its hits (see [`super::Handle`]).

use std::collections::HashMap;
use std::hash::BuildHasher as _;

use super::{Handle, Hit};
use crate::enrich::stage::EnrichStatus;
use crate::reader::Payload;
use crate::record::FlowRecord;
use crate::sink::{RecordSink, SinkError};
use crate::store::StoreStatus;

/// Distinct (client, user, rule) entries sent to the alert thread at once.
pub const BATCH: usize = 256;

/// The alert stage; see the module docs.
pub struct AlertStage<S: RecordSink> {
    inner: S,
    alerts: Handle,
    /// Hits with their counts, in first-seen order.
    batch: Vec<(Hit, u64)>,
    /// Index into `batch` by the hash of a hit's (client, user, rule).
    index: HashMap<u64, usize, foldhash::fast::RandomState>,
}

impl<S: RecordSink> AlertStage<S> {
    /// Wraps `inner`, sending blocked records to `alerts`.
    pub fn new(inner: S, alerts: Handle) -> Self {
        Self {
            inner,
            alerts,
            batch: Vec::with_capacity(BATCH),
            index: HashMap::with_capacity_and_hasher(BATCH, Default::default()),
        }
    }

    fn send(&mut self) {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
            self.index.clear();
            self.alerts.hits(batch);
        }
    }

    /// Counts a blocked record on its entry, or adds one.
    fn count(&mut self, r: &FlowRecord) {
        let (user, rule) = (r.attr.user.as_deref(), r.rule.as_deref());
        let key = self.index.hasher().hash_one((r.src_ip, user, rule));
        if let Some(&i) = self.index.get(&key) {
            let (h, n) = &mut self.batch[i];
            if h.client == r.src_ip && h.user.as_deref() == user && h.rule.as_deref() == rule {
                *n += 1;
                return;
            }
        }
        self.index.insert(key, self.batch.len());
        let hit = Hit {
            client: r.src_ip,
            user: user.map(str::to_owned),
            rule: rule.map(str::to_owned),
        };
        self.batch.push((hit, 1));
        if self.batch.len() == BATCH {
            self.send();
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
            self.count(record);
        }
        self.inner.write(record)
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        self.inner.sync()
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        self.send();
        self.inner.tick()
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.send();
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
        let counts: Vec<(Option<&str>, u64)> = stage
            .batch
            .iter()
            .map(|(h, n)| (h.rule.as_deref(), *n))
            .collect();
        assert_eq!(counts, [(Some("b.list:1"), 3), (Some("b.list:2"), 1)]);
        stage.tick().expect("tick");
        assert!(
            stage.batch.is_empty() && stage.index.is_empty(),
            "sent at the tick"
        );
    }
}
