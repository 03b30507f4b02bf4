//! Where finished records go. The run loop writes through [`RecordSink`]; the JSON Lines writer
//! is the first implementation, the durable journal the next.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::record::FlowRecord;

/// Errors of a record sink; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The log directory or file could not be created or opened.
    #[error("cannot open audit log {path}: {source}")]
    Open {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A write or sync failed.
    #[error("cannot write audit log {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A destination for audit records.
pub trait RecordSink: Send {
    /// Accepts one record; it may be buffered until [`RecordSink::sync`].
    fn write(&mut self, record: &FlowRecord) -> Result<(), SinkError>;
    /// Makes every accepted record durable.
    fn sync(&mut self) -> Result<(), SinkError>;
    /// Runs the sink's timers (fsync interval, rotation, retention); the run loop calls it
    /// about once a second, also when no record arrives. The default does nothing.
    fn tick(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Makes everything durable before the agent exits. The default is [`RecordSink::sync`].
    fn close(&mut self) -> Result<(), SinkError> {
        self.sync()
    }
}

/// Appends records as JSON Lines to `DIR/flows.jsonl`.
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlSink {
    /// File name of the log inside the log directory.
    pub const FILE_NAME: &'static str = "flows.jsonl";

    /// Creates the directory if needed and opens the log for appending.
    pub fn open(dir: &Path) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Open {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(Self::FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| SinkError::Open {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            out: BufWriter::new(file),
        })
    }

    fn io(&self, source: std::io::Error) -> SinkError {
        SinkError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl RecordSink for JsonlSink {
    fn write(&mut self, record: &FlowRecord) -> Result<(), SinkError> {
        serde_json::to_writer(&mut self.out, record).map_err(|e| self.io(e.into()))?;
        self.out.write_all(b"\n").map_err(|e| self.io(e))
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io(e))
    }
}
