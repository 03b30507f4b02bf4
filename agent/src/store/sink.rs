//! The store as the records stage's [`RecordSink`]: its calls map onto the writer's own
//! (append, flush, sync, tick, close).

use super::*;

impl RecordSink for Store {
    /// Accepts the record, or reports it dropped when the memory buffer is full while the disk
    /// refuses writes (the store counts it too, in [`StoreStatus::dropped`]).
    fn write(&mut self, record: &FlowRecord) -> Result<(), SinkError> {
        self.write_to(record, None)
    }

    /// Copies the frame the journal holds (one encoding for both).
    fn write_framed(&mut self, record: &FlowRecord, frame: &mut Vec<u8>) -> Result<(), SinkError> {
        self.write_to(record, Some(frame))
    }

    /// A rotation writes the buffered frames into the old journal, and so does the append
    /// that brings the buffer to its write size or half its bound; while the disk refuses
    /// writes nothing is written ahead.
    fn writes_before(&self, record: &FlowRecord) -> bool {
        self.degraded.is_none()
            && self.journal.pending_records() > 0
            && (self.rotates_for(record)
                || self.buffer_due(1, journal::FRAME_HEADER_LEN + journal::MAX_PAYLOAD))
    }

    /// Fsyncs. While the disk refuses writes this returns `Ok` and the records stay buffered
    /// (see [`Store::status`]): the agent must keep running; the condition is reported.
    fn sync(&mut self) -> Result<(), SinkError> {
        self.sync_now();
        Ok(())
    }

    /// [`Store::flush`]. Records the disk refuses stay buffered in memory (the store's
    /// degraded state, which it reports): the flush says so, so that the records stage keeps
    /// the flow table and its ledger as they are until the records are in the file, for the
    /// next agent to write them should this one die first.
    fn flush(&mut self) -> Result<(), SinkError> {
        Store::flush(self);
        match &self.degraded {
            Some(d) if self.journal.pending_bytes() > 0 => Err(SinkError::Write {
                path: self.journal.path().to_owned(),
                cause: std::io::Error::other(format!(
                    "{} bytes of records held in memory: {}",
                    self.journal.pending_bytes(),
                    d.error
                )),
            }),
            _ => Ok(()),
        }
    }

    fn sync_due(&mut self) -> Result<(), SinkError> {
        Store::sync_due(self);
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        let now = self.clock.now_ns();
        self.tick_at(now)
    }

    fn unkept(&mut self) {
        self.held_unkept = self.journal.pending_records() as u64;
        self.unkept_all = true;
    }

    fn kept_by_pins(&mut self, kept: bool) {
        self.cfg.kept_by_pins = kept;
    }

    fn store_status(&self) -> Option<StoreStatus> {
        Some(self.status())
    }

    /// Makes everything durable, then seals the live journal, so `verify`, export and every
    /// reader of segments see the last records now, not at the next start. A seal that fails
    /// (the disk is full) leaves the synced journal for the next start to seal.
    fn close(&mut self) -> Result<(), SinkError> {
        if self.sync_now() {
            if !self.seal_now() {
                let when = match &self.manifest_unreadable {
                    Some(_) => "once the manifest is restored and the agent started",
                    None => "at the next start",
                };
                tracing::warn!(
                    dir = %self.cfg.dir.display(),
                    "the live journal could not be sealed at shutdown; it is durable and is \
                     sealed {when}"
                );
            }
            Ok(())
        } else {
            self.closed = true;
            let s = self.status();
            let unkept = s.unkept();
            self.status.lost_at_stop = unkept;
            let path = self.journal.path().to_owned();
            let why = self
                .degraded
                .as_ref()
                .map_or_else(|| "the disk refuses writes".to_owned(), |d| d.error.clone());
            if unkept == 0 && s.buffered > 0 && self.cfg.kept_by_pins {
                return Err(SinkError::Kept {
                    path,
                    records: s.buffered,
                    cause: std::io::Error::other(why),
                });
            }
            let kept = match s.kept() {
                0 => String::new(),
                n => format!("; {n} more the pinned flow table keeps for the next agent"),
            };
            Err(SinkError::Write {
                path,
                cause: std::io::Error::other(format!(
                    "{unkept} records could not be written at shutdown ({why}{kept}; {} dropped earlier)",
                    s.dropped
                )),
            })
        }
    }
}
