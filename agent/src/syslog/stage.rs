//! [`SyslogStage`]: the record path's side of the syslog sink.

use crate::record::FlowRecord;
use crate::sink::{RecordSink, SinkError};

use super::{Handle, Item, Records, Syslog, SyslogConfig, SyslogError, SyslogStatus, STAGE_BATCH};

/// A [`RecordSink`] that queues each record the configuration selects (drop records, or all
/// with `--syslog-records`) for the syslog sender and passes every record to the sink it
/// wraps. A queued record is its journal frame, the bytes the store encoded for its journal
/// ([`RecordSink::write_framed`]), appended to a flat byte batch: no second encoding, no
/// clone, no allocation per record. It never waits: a full queue drops the batch and counts it.
/// Batches are handed over at `STAGE_BATCH` records, and on every sync, tick and close.
pub struct SyslogStage<S: RecordSink> {
    inner: S,
    syslog: Syslog,
    handle: Handle,
    records: Records,
    /// The batch being gathered ([`Item::Records`]) and its records.
    pending: Vec<u8>,
    pending_count: u64,
}

impl<S: RecordSink> SyslogStage<S> {
    /// Starts the sender for `config` and wraps `inner`.
    pub fn start(inner: S, config: SyslogConfig) -> Result<Self, SyslogError> {
        let records = config.records;
        let syslog = Syslog::start(config)?;
        Ok(Self {
            inner,
            handle: syslog.handle(),
            syslog,
            records,
            pending: Vec::new(),
            pending_count: 0,
        })
    }

    /// Hands the gathered copies to the queue (a refusal is counted by the handle).
    fn hand_over(&mut self) {
        if self.pending_count > 0 {
            // The next batch starts at this one's size: one allocation per batch.
            let next = Vec::with_capacity(self.pending.len());
            let bytes = std::mem::replace(&mut self.pending, next);
            let count = std::mem::take(&mut self.pending_count);
            self.handle.push(Item::Records { bytes, count });
        }
    }

    /// A handle for other senders (the alert engine).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: RecordSink> RecordSink for SyslogStage<S> {
    fn write(&mut self, record: &FlowRecord) -> Result<(), SinkError> {
        if self.records == Records::All || record.dropped > 0 {
            // The store's own frame lands in the batch (one encoding for both); a record the
            // store drops is framed all the same and still sent.
            let written = self.inner.write_framed(record, &mut self.pending);
            self.pending_count += 1;
            if self.pending_count >= STAGE_BATCH as u64 {
                self.hand_over();
            }
            written
        } else {
            self.inner.write(record)
        }
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        self.hand_over();
        self.inner.sync()
    }

    /// The store's flush only: the batch goes to the sender at its size or the tick, as
    /// before (the journal is what a kill must not lose).
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
        self.hand_over();
        self.inner.tick()
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.hand_over();
        let closed = self.inner.close();
        self.syslog.close();
        closed
    }

    fn store_status(&self) -> Option<crate::store::StoreStatus> {
        self.inner.store_status()
    }

    fn enrich_status(&self) -> Option<crate::enrich::stage::EnrichStatus> {
        self.inner.enrich_status()
    }

    fn syslog_status(&self) -> Option<SyslogStatus> {
        Some(self.handle.status())
    }

    fn payload(&mut self, payload: &crate::reader::Payload) {
        self.inner.payload(payload)
    }
}
