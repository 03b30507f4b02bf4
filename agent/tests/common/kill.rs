//! A sink that dies at a chosen call, as a killed agent would, and the loop that kills at
//! each call in turn.

use xdp_audit::record::FlowRecord;
use xdp_audit::sink::{RecordSink, SinkError};

/// A sink that dies at its `kill_at`-th write or flush, as a killed agent would: what it
/// flushed before is in the "file", what it held is gone. A flush dies before its write.
#[derive(Default)]
pub struct Killable {
    /// What its flushes wrote.
    pub file: Vec<FlowRecord>,
    /// What it holds since its last flush.
    pub held: Vec<FlowRecord>,
    /// Its calls so far.
    pub calls: usize,
    /// The call that dies.
    pub kill_at: usize,
    /// Run at the first flush, before it writes (a packet arriving in the middle of a sweep).
    pub at_first_flush: Option<Box<dyn FnOnce() + Send>>,
    /// Its flushes fail, what it holds kept: a store on a full disk.
    pub refusing: bool,
}

impl Killable {
    fn step(&mut self) {
        self.calls += 1;
        if self.calls == self.kill_at {
            panic!("simulated kill at sink call {}", self.calls);
        }
    }
}

impl RecordSink for Killable {
    fn write(&mut self, r: &FlowRecord) -> Result<(), SinkError> {
        self.step();
        self.held.push(r.clone());
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        self.step();
        if self.refusing {
            return Err(SinkError::Write {
                path: "journal".into(),
                cause: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        if let Some(hook) = self.at_first_flush.take() {
            hook();
        }
        self.file.append(&mut self.held);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Runs `round(kill_at)` with a kill at each sink call of a first agent's sweep in turn, then
/// once past the last (no kill); `round` says how many calls the sweep made when no kill came.
/// Returns the rounds run.
pub fn at_each_sink_call(mut round: impl FnMut(usize) -> Option<usize>) -> usize {
    let mut calls = None;
    let mut kill_at = 1;
    while calls.is_none_or(|n| kill_at <= n + 1) {
        if let Some(n) = round(kill_at) {
            calls = Some(n);
        }
        kill_at += 1;
    }
    kill_at - 1
}
