//! The conntrack listener: a dedicated thread (never the ring-drain task) that reads new and
//! destroy events, dumps the table at start, after every loss and periodically, and hands
//! each result, in order, to a sink as [`NatUpdate`]s.
//!
//! Loss is never silent: an ENOBUFS on the event socket is counted, the socket is drained,
//! and the table is dumped on a second socket so the [`super::NatTable`] can add what the lost
//! events announced and close what they ended.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::parse::{dump_request, messages, CtKind, NlItem};
use super::socket::{CtSocket, Recv, DATAGRAM_MAX};
use super::sysctl;
use super::table::{DumpReason, NatUpdate};
use super::NatError;

/// Listener settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Join this network namespace first (`/run/netns/NAME`); `None`: the caller's. Conntrack
    /// is per namespace: listen where the NAT happens.
    pub netns: Option<PathBuf>,
    /// Receive buffer of the event socket, in bytes, asked with `SO_RCVBUFFORCE` (the kernel
    /// doubles it for bookkeeping). The default, 32 MiB, holds a burst of about 50,000 events
    /// (see docs/nat.md for the measurement).
    pub rcvbuf_bytes: usize,
    /// How often to dump the table even without a loss, to close sessions whose destroy event
    /// never comes (entries created while no listener was subscribed).
    pub resync_interval: Duration,
    /// Turn on `nf_conntrack_events`, `nf_conntrack_timestamp` and `nf_conntrack_acct` if
    /// they are off (each change is logged with the old value).
    pub enable_sysctls: bool,
    /// Append every datagram received (events and dumps) to this file, for diagnosis; the
    /// file replays through [`super::parse::messages`].
    pub capture: Option<PathBuf>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            netns: None,
            rcvbuf_bytes: 32 << 20,
            resync_interval: Duration::from_secs(300),
            enable_sysctls: true,
            capture: None,
        }
    }
}

/// Listener counters, readable while it runs.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    /// New events received.
    pub new_events: AtomicU64,
    /// Destroy events received.
    pub destroy_events: AtomicU64,
    /// ENOBUFS on the event socket: events were lost and a dump followed.
    pub enobufs: AtomicU64,
    /// Dumps completed.
    pub dumps: AtomicU64,
    /// Dumps that failed part way (reported and retried at the next interval).
    pub dump_failures: AtomicU64,
    /// Entries listed by dumps.
    pub dumped_entries: AtomicU64,
    /// Datagrams or messages that did not parse (logged with the offset at fault).
    pub parse_errors: AtomicU64,
    /// Receive buffer the kernel granted the event socket, in bytes.
    pub rcvbuf_granted: AtomicU64,
    /// Datagrams dropped unread because the kernel did not send them.
    pub foreign: AtomicU64,
}

impl ListenerCounters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a datagram from `pid`, not the kernel; said at the first and then every 1000th,
    /// so a sender cannot flood the log.
    fn foreign(&self, socket: &'static str, pid: u32) {
        let n = self.foreign.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(1000) {
            tracing::warn!(
                socket,
                sender_port = pid,
                dropped = n + 1,
                "conntrack netlink datagram not from the kernel, dropped unread"
            );
        }
    }
}

/// A running listener; stops (and joins its thread) when dropped.
pub struct ConntrackListener {
    stop: Arc<AtomicBool>,
    counters: Arc<ListenerCounters>,
    thread: Option<JoinHandle<()>>,
}

/// How long the thread waits for an event before it checks for stop and the resync timer.
const POLL_MS: i32 = 100;
/// How long a dump waits for each reply datagram before it is given up.
const DUMP_REPLY_MS: i32 = 10_000;

impl ConntrackListener {
    /// Opens the sockets (in [`ListenerConfig::netns`] if set), enables the sysctls, and
    /// starts the listener thread. `sink` receives every update in order, beginning with the
    /// start dump; it may block (events then queue in the socket buffer, and past it are lost
    /// and recovered), and returning false stops the listener.
    pub fn spawn(
        config: ListenerConfig,
        sink: impl FnMut(NatUpdate) -> bool + Send + 'static,
    ) -> Result<Self, NatError> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(ListenerCounters::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (s, c) = (stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("conntrack".into())
            .spawn(move || {
                let worker = match Worker::open(&config, c) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                worker.run(&config, &s, sink);
            })
            .map_err(|source| NatError::Socket {
                what: "spawn the conntrack thread",
                source,
            })?;
        let ready = ready_rx.recv().unwrap_or(Err(NatError::ThreadDied));
        let mut this = Self {
            stop,
            counters,
            thread: Some(thread),
        };
        match ready {
            Ok(()) => Ok(this),
            Err(e) => {
                this.join();
                Err(e)
            }
        }
    }

    /// The listener's counters.
    pub fn counters(&self) -> Arc<ListenerCounters> {
        self.counters.clone()
    }

    /// Whether the thread has ended (the sink returned false, or a socket failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the conntrack listener thread panicked");
            }
        }
    }
}

impl Drop for ConntrackListener {
    fn drop(&mut self) {
        self.join();
    }
}

struct Worker {
    events: CtSocket,
    dumper: CtSocket,
    counters: Arc<ListenerCounters>,
    capture: Option<File>,
    buf: Vec<u8>,
    seq: u32,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Worker {
    fn open(config: &ListenerConfig, counters: Arc<ListenerCounters>) -> Result<Self, NatError> {
        if let Some(path) = &config.netns {
            let ns = File::open(path).map_err(|source| NatError::Netns {
                path: path.clone(),
                source,
            })?;
            // SAFETY: a valid namespace fd; setns affects only this thread, which owns the
            // sockets for their whole life.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(NatError::Netns {
                    path: path.clone(),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        // Subscribe before enabling events and before the start dump, so no entry falls
        // between the dump and the first event.
        let (events, granted) = CtSocket::events(config.rcvbuf_bytes)?;
        counters
            .rcvbuf_granted
            .store(granted as u64, Ordering::Relaxed);
        tracing::info!(
            asked = config.rcvbuf_bytes,
            granted,
            "conntrack event socket buffer"
        );
        if config.enable_sysctls {
            sysctl::enable_conntrack_events()?;
        }
        let capture = match &config.capture {
            Some(path) => Some(
                File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| NatError::Capture {
                        path: path.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        Ok(Self {
            events,
            dumper: CtSocket::dumper()?,
            counters,
            capture,
            buf: vec![0; DATAGRAM_MAX],
            seq: 0,
        })
    }

    fn run(
        mut self,
        config: &ListenerConfig,
        stop: &AtomicBool,
        mut sink: impl FnMut(NatUpdate) -> bool,
    ) {
        let mut pending = Some(DumpReason::Start);
        let mut next_periodic = Instant::now() + config.resync_interval;
        while !stop.load(Ordering::Relaxed) {
            if let Some(reason) = pending.take() {
                match self.dump(reason, &mut sink) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        ListenerCounters::bump(&self.counters.dump_failures);
                        tracing::error!(error = %e, ?reason, "conntrack dump failed; the next periodic dump retries");
                        if !sink(NatUpdate::DumpAborted) {
                            return;
                        }
                        // The rest of the failed dump may still be queued: start afresh.
                        match CtSocket::dumper() {
                            Ok(d) => self.dumper = d,
                            Err(e) => {
                                tracing::error!(error = %e, "conntrack dump socket; NAT mappings stop here");
                                return;
                            }
                        }
                    }
                }
                next_periodic = Instant::now() + config.resync_interval;
            }
            let mut more = false;
            match self.drain_events(&mut sink) {
                Ok(Drained::Lost) => pending = Some(DumpReason::Loss),
                Ok(Drained::Empty) => {}
                Ok(Drained::More) => more = true,
                Ok(Drained::SinkClosed) => return,
                Err(e) => {
                    tracing::error!(error = %e, "conntrack event socket failed; NAT mappings stop here");
                    return;
                }
            }
            if pending.is_none() && Instant::now() >= next_periodic {
                pending = Some(DumpReason::Periodic);
            }
            if pending.is_none() && !more {
                if let Err(e) = self.events.wait(POLL_MS) {
                    tracing::error!(error = %e, "conntrack event socket failed; NAT mappings stop here");
                    return;
                }
            }
        }
    }

    fn capture(&mut self, n: usize) {
        if let Some(f) = &mut self.capture {
            if let Err(e) = f.write_all(&self.buf[..n]) {
                tracing::warn!(error = %e, "conntrack capture file: write failed, capture stops");
                self.capture = None;
            }
        }
    }

    /// Reads the queued events, at most [`DRAIN_DATAGRAMS`] datagrams; reports whether the
    /// kernel dropped some meanwhile, or that more may be queued.
    fn drain_events(
        &mut self,
        sink: &mut impl FnMut(NatUpdate) -> bool,
    ) -> Result<Drained, NatError> {
        let mut lost = false;
        for _ in 0..DRAIN_DATAGRAMS {
            match self.events.recv(&mut self.buf)? {
                Recv::Empty => return Ok(if lost { Drained::Lost } else { Drained::Empty }),
                Recv::Overrun => {
                    ListenerCounters::bump(&self.counters.enobufs);
                    tracing::warn!(
                        "conntrack events lost (ENOBUFS): the table will be dumped to recover"
                    );
                    lost = true;
                }
                Recv::Truncated(n) => {
                    ListenerCounters::bump(&self.counters.parse_errors);
                    tracing::warn!(
                        bytes = n,
                        "conntrack event larger than the receive buffer, skipped"
                    );
                }
                Recv::Foreign(pid) => self.counters.foreign("events", pid),
                Recv::Data(n) => {
                    self.capture(n);
                    let seen_ns = now_ns();
                    for item in messages(&self.buf[..n]) {
                        let msg = match item {
                            Ok(NlItem::Conntrack(msg)) => msg,
                            Ok(_) => continue,
                            Err(e) => {
                                ListenerCounters::bump(&self.counters.parse_errors);
                                tracing::warn!(error = %e, "conntrack event skipped");
                                continue;
                            }
                        };
                        let c = match msg.kind {
                            CtKind::Destroy => &self.counters.destroy_events,
                            _ => &self.counters.new_events,
                        };
                        ListenerCounters::bump(c);
                        if !sink(NatUpdate::Message { msg, seen_ns }) {
                            return Ok(Drained::SinkClosed);
                        }
                    }
                }
            }
        }
        Ok(if lost { Drained::Lost } else { Drained::More })
    }

    /// Dumps the table through the sink; false if the sink closed.
    fn dump(
        &mut self,
        reason: DumpReason,
        sink: &mut impl FnMut(NatUpdate) -> bool,
    ) -> Result<bool, NatError> {
        self.seq = self.seq.wrapping_add(1);
        if !sink(NatUpdate::DumpBegin {
            at_ns: now_ns(),
            reason,
        }) {
            return Ok(false);
        }
        self.dumper
            .send(&dump_request(self.seq, libc::AF_UNSPEC as u8))?;
        let mut entries = 0u64;
        loop {
            // The kernel answers a dump at once; a silent socket must not hold this thread
            // (and the agent's shutdown, which joins it) forever.
            if !self.dumper.wait(DUMP_REPLY_MS)? {
                return Err(NatError::Dump(
                    "the kernel did not answer the dump within 10 s",
                ));
            }
            let n = match self.dumper.recv(&mut self.buf)? {
                Recv::Data(n) => n,
                Recv::Empty => continue,
                Recv::Foreign(pid) => {
                    self.counters.foreign("dump", pid);
                    continue;
                }
                Recv::Overrun => return Err(NatError::Dump("the dump socket overran (ENOBUFS)")),
                Recv::Truncated(_) => {
                    return Err(NatError::Dump(
                        "a dump reply was larger than the receive buffer",
                    ))
                }
            };
            self.capture(n);
            let seen_ns = now_ns();
            for item in messages(&self.buf[..n]) {
                match item {
                    Ok(NlItem::Conntrack(msg)) => {
                        entries += 1;
                        if !sink(NatUpdate::Message { msg, seen_ns }) {
                            return Ok(false);
                        }
                    }
                    Ok(NlItem::Done) => {
                        self.counters
                            .dumped_entries
                            .fetch_add(entries, Ordering::Relaxed);
                        ListenerCounters::bump(&self.counters.dumps);
                        tracing::debug!(?reason, entries, "conntrack dump complete");
                        return Ok(sink(NatUpdate::DumpEnd { at_ns: seen_ns }));
                    }
                    Ok(NlItem::Error(0) | NlItem::Other(_)) => {}
                    Ok(NlItem::Error(errno)) => return Err(refusal(errno)),
                    Err(e) => {
                        // A dump with an unreadable entry cannot prove any entry absent:
                        // abort the reconciliation rather than close live sessions.
                        ListenerCounters::bump(&self.counters.parse_errors);
                        return Err(NatError::Parse(e));
                    }
                }
            }
        }
    }
}

enum Drained {
    Empty,
    Lost,
    /// The batch ended with events maybe still queued.
    More,
    SinkClosed,
}

/// Datagrams one drain reads at most: a stream of events faster than the sink must not keep
/// the loop from its stop flag, its periodic dump and the dump that recovers a loss.
const DRAIN_DATAGRAMS: usize = 1024;

/// The error of a dump answered with `NLMSG_ERROR` `errno`. The kernel writes a negative
/// errno; any other value (`i32::MIN` has no negation) is said as it is, never negated.
fn refusal(errno: i32) -> NatError {
    let error = match errno.checked_neg().filter(|&e| e > 0) {
        Some(e) => std::io::Error::from_raw_os_error(e),
        None => std::io::Error::other(format!(
            "NLMSG_ERROR with {errno}, which is not a negative errno"
        )),
    };
    NatError::DumpRefused(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `NLMSG_ERROR` datagram: the header, the errno, the header of the request it answers.
    fn error_message(errno: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&errno.to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        m
    }

    /// The errno of an error message is negated to report it: `i32::MIN` has no negation, and
    /// negating it panicked in a debug build (and wrapped to itself in a release one).
    #[test]
    fn a_dump_refused_with_any_errno_is_reported_without_a_panic() {
        let said = |errno: i32| {
            let m = error_message(errno);
            match messages(&m).collect::<Vec<_>>().as_slice() {
                [Ok(NlItem::Error(e))] => refusal(*e).to_string(),
                other => panic!("{errno}: parsed as {other:?}"),
            }
        };
        assert_eq!(
            said(-libc::EPERM),
            format!(
                "conntrack dump refused: {}",
                std::io::Error::from_raw_os_error(libc::EPERM)
            )
        );
        for errno in [i32::MIN, 5] {
            assert_eq!(
                said(errno),
                format!(
                    "conntrack dump refused: NLMSG_ERROR with {errno}, \
                     which is not a negative errno"
                ),
            );
        }
    }
}
