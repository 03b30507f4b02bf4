//! The alert stage: a [`RecordSink`] between the enrich stage and the store that hands each
//! blocked record (`dropped > 0`) to the alert thread and passes every record on. A record
//! that dropped nothing costs one compare; a blocked one a `try_send` that never waits (a
//! full queue drops the hit and counts it, see [`super::Handle`]).

use super::{Handle, Hit};
use crate::enrich::stage::EnrichStatus;
use crate::reader::Payload;
use crate::record::FlowRecord;
use crate::sink::{RecordSink, SinkError};
use crate::store::StoreStatus;

/// The alert stage; see the module docs.
pub struct AlertStage<S: RecordSink> {
    inner: S,
    alerts: Handle,
}

impl<S: RecordSink> AlertStage<S> {
    /// Wraps `inner`, sending blocked records to `alerts`.
    pub fn new(inner: S, alerts: Handle) -> Self {
        Self { inner, alerts }
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: RecordSink> RecordSink for AlertStage<S> {
    fn write(&mut self, record: &FlowRecord) -> Result<(), SinkError> {
        if record.dropped > 0 {
            self.alerts.hit(Hit {
                client: record.src_ip,
                user: record.attr.user.clone(),
                rule: record.rule.clone(),
            });
        }
        self.inner.write(record)
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        self.inner.sync()
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        self.inner.tick()
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.inner.close()
    }

    fn store_status(&self) -> Option<StoreStatus> {
        self.inner.store_status()
    }

    fn enrich_status(&self) -> Option<EnrichStatus> {
        self.inner.enrich_status()
    }

    fn payload(&mut self, payload: &Payload) {
        self.inner.payload(payload)
    }
}
