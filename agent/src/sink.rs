//! Where finished records go. The records stage of the daemon writes through [`RecordSink`];
//! the audit store ([`crate::store::Store`]) implements it. A later stage between the sweeper
//! and the store (enrichment, shipping, metrics) is a `RecordSink` that does its work and
//! passes each record on to the sink it wraps.

use std::path::PathBuf;

use crate::record::FlowRecord;

/// Errors of a record sink; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The log directory or file could not be created or opened.
    #[error("cannot open audit log {path}: {cause}")]
    Open {
        /// The file or directory.
        path: PathBuf,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// A write or sync failed.
    #[error("cannot write audit log {path}: {cause}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause (in the message, so not named `source`: that would print it twice).
        cause: std::io::Error,
    },
    /// At the close, the disk still refused records the sink held in memory, and the pinned
    /// flow table and its ledger keep every one of them: the next agent writes them, so
    /// nothing is lost (see `StoreConfig::kept_by_pins`).
    #[error("{records} audit records could not be written to {path} at the stop ({cause}); the pinned flow table and its ledger keep them, and the next agent writes them")]
    Kept {
        /// The journal.
        path: PathBuf,
        /// The records held.
        records: u64,
        /// Why they could not be written.
        cause: std::io::Error,
    },
    /// The record was dropped: the sink could not hold it (counted in its status).
    #[error("audit record dropped in {path}: {reason}")]
    Dropped {
        /// The log directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A destination for audit records.
pub trait RecordSink: Send {
    /// Accepts one record; it may be buffered until [`RecordSink::sync`].
    fn write(&mut self, record: &FlowRecord) -> Result<(), SinkError>;
    /// [`RecordSink::write`], and appends the record's journal frame
    /// ([`crate::store::journal::encode_frame`]) to `frame`, whatever the write's outcome: a
    /// stage in front of the store that forwards records as bytes (syslog) gets the bytes the
    /// store encoded for its journal instead of encoding each record a second time. The
    /// default encodes the frame itself.
    fn write_framed(&mut self, record: &FlowRecord, frame: &mut Vec<u8>) -> Result<(), SinkError> {
        crate::store::journal::encode_frame(record, frame);
        self.write(record)
    }
    /// Makes every accepted record durable.
    fn sync(&mut self) -> Result<(), SinkError>;
    /// Hands what the sink holds in memory to the kernel (one plain `write(2)`, no fsync), so
    /// a killed agent loses none of it: the records stage calls it after each batch of events
    /// and each sweep, once the kernel's side (flow table, ledger) may have forgotten what the
    /// records carry. Nothing pending, no system call. The default does nothing; a stage
    /// forwards it to the sink it wraps.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Whether accepting `record` would first write what the sink buffers (a journal that
    /// rotates for a new hour or its size, a buffer at its bound): the records stage settles
    /// before such a record, so its ledger follows every record written
    /// (`Sweeper::settle`); written ahead of it, a kill would have the next agent write them
    /// again. The default says no; a stage forwards it to the sink it wraps.
    fn writes_before(&self, _record: &FlowRecord) -> bool {
        false
    }
    /// Fsyncs if the sink's fsync interval has passed. The records stage calls it after a
    /// [`RecordSink::flush`] and the ledger's update that follows it: a sink writes nothing
    /// to its file between flushes, so no fsync (milliseconds) sits between records reaching
    /// the file and the ledger saying they did, where a kill makes the next agent write them
    /// again. The default does nothing; a stage forwards it to the sink it wraps.
    fn sync_due(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// The sweeper ended `key`'s flow (or saw it leave the table) without a last record: it
    /// had nothing new to report (an earlier record, such as its first drop, carried every
    /// packet). A stage that keeps state per flow until its last record lets it go here. The
    /// default does nothing; a stage forwards it to the sink it wraps.
    fn flow_ended(&mut self, _key: &agent_common::FlowKey) {}
    /// The pinned flow table and ledger no longer keep all the records the sink holds in
    /// memory (the records stage committed its ledger anyway, its waiting updates having
    /// outgrown its map, or a flow with records held left the table): from now until it
    /// holds nothing, a stop or a kill loses every record it holds
    /// (`StoreStatus::buffered_unkept`). The default does nothing; a stage forwards it to
    /// the sink it wraps.
    fn unkept(&mut self) {}
    /// Whether the agent's flow table and ledger are pinned where they outlive it
    /// (`StoreConfig::kept_by_pins`), known once the program is attached, after the store
    /// opened. The default does nothing; a stage forwards it to the sink it wraps.
    fn kept_by_pins(&mut self, _kept: bool) {}
    /// Runs the sink's timers (fsync interval, rotation, retention); the run loop calls it
    /// about once a second, also when no record arrives. The default does nothing.
    fn tick(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Makes everything durable before the agent exits. The default is [`RecordSink::sync`].
    fn close(&mut self) -> Result<(), SinkError> {
        self.sync()
    }
    /// The audit store's counters, for `status`; a sink that is no store has none.
    fn store_status(&self) -> Option<crate::store::StoreStatus> {
        None
    }
    /// The enrich stage's counters, for `status`; a sink without that stage has none.
    fn enrich_status(&self) -> Option<crate::enrich::stage::EnrichStatus> {
        None
    }
    /// The syslog sink's counters, for `status`; a sink without that stage has none.
    fn syslog_status(&self) -> Option<crate::syslog::SyslogStatus> {
        None
    }
    /// Takes a copy of a packet's payload ([`crate::reader::Payload`]), in ring order with
    /// the flow events around it: the enrich stage reads names from it. A sink that reads no
    /// payloads (the store) ignores it, the default.
    fn payload(&mut self, _payload: &crate::reader::Payload) {}
}

/// A boxed sink is a sink: a stage can wrap a chain chosen at run time (with or without
/// syslog). Every method forwards, so no stage's status is lost on the way.
impl RecordSink for Box<dyn RecordSink> {
    fn write(&mut self, record: &FlowRecord) -> Result<(), SinkError> {
        (**self).write(record)
    }
    fn write_framed(&mut self, record: &FlowRecord, frame: &mut Vec<u8>) -> Result<(), SinkError> {
        (**self).write_framed(record, frame)
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        (**self).sync()
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        (**self).flush()
    }
    fn sync_due(&mut self) -> Result<(), SinkError> {
        (**self).sync_due()
    }
    fn unkept(&mut self) {
        (**self).unkept()
    }
    fn kept_by_pins(&mut self, kept: bool) {
        (**self).kept_by_pins(kept)
    }
    fn writes_before(&self, record: &FlowRecord) -> bool {
        (**self).writes_before(record)
    }
    fn flow_ended(&mut self, key: &agent_common::FlowKey) {
        (**self).flow_ended(key)
    }
    fn tick(&mut self) -> Result<(), SinkError> {
        (**self).tick()
    }
    fn close(&mut self) -> Result<(), SinkError> {
        (**self).close()
    }
    fn store_status(&self) -> Option<crate::store::StoreStatus> {
        (**self).store_status()
    }
    fn enrich_status(&self) -> Option<crate::enrich::stage::EnrichStatus> {
        (**self).enrich_status()
    }
    fn syslog_status(&self) -> Option<crate::syslog::SyslogStatus> {
        (**self).syslog_status()
    }
    fn payload(&mut self, payload: &crate::reader::Payload) {
        (**self).payload(payload)
    }
}
