//! The alert thread: one bounded queue of inputs ([`Handle`]), the [`Engine`], and the
//! deliveries it calls with each notice. The records thread never waits: a full queue drops
//! its input and counts it (`queue_full` in the status); an event waits a few seconds for
//! room first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;

use super::deliver::Delivery;
use super::engine::{Engine, Gauges, Now};
use super::stage::HitBatch;
use super::{AlertConfig, AlertStatus, Event};
use crate::compliance::ClockSync;
use crate::status::Snapshot;

/// How often alerts are checked for resolution and deliveries retried.
const TICK: Duration = Duration::from_secs(1);

/// How long [`Handle::event`] waits for room in a full queue before it drops the event.
const EVENT_WAIT: Duration = Duration::from_secs(5);
/// Active alerts listed in the status (the most severe first); `active_total` counts all.
pub const STATUS_ACTIVE: usize = 50;

enum Msg {
    Hits(HitBatch),
    /// A sweep's gauges, its unaudited interfaces and the list files left rejected, each
    /// with its problem.
    Observe(Gauges, Vec<crate::status::Unaudited>, Vec<(String, String)>),
    Event(Event),
    /// The program's counters as the last agent left them ([`Handle::previous_run`]).
    Previous(Gauges),
    /// The alerts the last agent left active, and where to keep this agent's for the next
    /// ([`Handle::carry`]).
    Carry(Vec<super::Alert>, Option<PathBuf>),
    /// The records are written: deliver every notice and publish the status, then answer.
    Finish(SyncSender<()>),
    Stop,
}

/// Emptied hit batches kept for the stage to fill again.
const SPARE_BATCHES: usize = 4;

#[derive(Default)]
struct Shared {
    status: Mutex<AlertStatus>,
    queue_full: AtomicU64,
    /// Batches the alert thread has counted, cleared, for the stage to reuse: the records
    /// thread then neither allocates a batch nor frees one the other thread touched.
    spare: Mutex<Vec<HitBatch>>,
    /// The alert thread's CPU time (ns) after its last input: what alerts cost beyond the
    /// records thread's stage.
    cpu_ns: AtomicU64,
}

/// A cloneable sender of inputs to the alert thread.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("alert::Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// Sends `m`, standing for `inputs` inputs; a full queue drops and counts them.
    fn send(&self, m: Msg, inputs: u64) -> bool {
        match self.tx.try_send(m) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.queue_full.fetch_add(inputs, Ordering::Relaxed);
                false
            }
        }
    }

    /// A batch of blocked records; false if the queue was full (each record counted).
    pub fn hits(&self, hits: HitBatch) -> bool {
        let n = hits.hits();
        self.send(Msg::Hits(hits), n)
    }

    /// An emptied batch to fill again, if the alert thread has one spare (never waits).
    pub fn spare_batch(&self) -> Option<HitBatch> {
        self.shared.spare.try_lock().ok()?.pop()
    }

    /// The program's counters as the last agent left them, before this agent's first
    /// snapshot: an adopted program's losses, counted on while no agent ran, are then alerted
    /// from there, not from this agent's first sweep.
    pub fn previous_run(&self, counters: &std::collections::BTreeMap<String, u64>) {
        let g = Gauges::program(counters);
        self.send_by(Msg::Previous(g), Instant::now() + EVENT_WAIT);
    }

    /// The alerts the last agent left active, to carry on ([`Engine::carry`]); sent before
    /// any other input, so a condition still holding counts on the carried alert. From then
    /// on the active alerts are kept at `keep` ([`super::handover`]) whenever one is raised
    /// or resolved: not before, so a start that fails first leaves the last agent's there.
    pub fn carry(&self, alerts: Vec<super::Alert>, keep: Option<PathBuf>) {
        if !alerts.is_empty() || keep.is_some() {
            self.send_by(Msg::Carry(alerts, keep), Instant::now() + EVENT_WAIT);
        }
    }

    /// The status snapshot of a sweep; false if the queue was full (counted).
    pub fn observe(&self, snap: &Snapshot) -> bool {
        let unaudited = snap.unaudited.clone();
        let inputs = snap.enrich.iter().flat_map(|e| e.inputs_rejected.iter());
        let rejected = (snap.observe.list_reloads.iter())
            .filter(|r| !r.last_ok)
            .filter_map(|r| Some((r.path.clone(), r.problem.clone()?)))
            .chain(inputs.cloned())
            .collect();
        let g = Gauges::of(snap, false);
        self.send(Msg::Observe(g, unaudited, rejected), 1)
    }

    /// An explicit event; false if it could not be queued (counted). It waits for room, up
    /// to [`EVENT_WAIT`]: events are few and one-off (a rejected list, a broken chain), and a
    /// flood that fills the queue with hits must not drop them; but an alert thread held up
    /// (a lock on the alert log, a hung disk) must not hold up list reloads or the stop.
    /// Never called from the records thread, which must not wait: the list, verification and
    /// start-up threads send them.
    pub fn event(&self, e: Event) -> bool {
        let sent = self.send_by(Msg::Event(e), Instant::now() + EVENT_WAIT);
        if !sent {
            self.shared.queue_full.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// The last batch of the stop ([`super::stage::AlertStage`]'s close): waits up to
    /// [`EVENT_WAIT`] for room, where [`Handle::hits`] never waits; false if it ran out
    /// (the batch's records counted as lost to a full queue).
    pub fn finish_hits(&self, hits: HitBatch) -> bool {
        let n = hits.hits();
        let sent = self.send_by(Msg::Hits(hits), Instant::now() + EVENT_WAIT);
        if !sent {
            self.shared.queue_full.fetch_add(n, Ordering::Relaxed);
        }
        sent
    }

    /// The agent's records are all written and the store is about to close (its last seal
    /// anchors `alerts.jsonl`): what is queued before this is counted and its notices
    /// delivered, so they are inside the chain's last anchor, and the status published shows
    /// the active alerts with their counts at the stop. Waits up to [`EVENT_WAIT`] for each
    /// step; false if that ran out.
    pub fn finish(&self) -> bool {
        let deadline = Instant::now() + EVENT_WAIT;
        let (reply, done) = mpsc::sync_channel(1);
        self.send_by(Msg::Finish(reply), deadline)
            && done
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok()
    }

    /// Sends `m`, waiting for room until `deadline`.
    fn send_by(&self, mut m: Msg, deadline: Instant) -> bool {
        loop {
            match self.tx.try_send(m) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    m = back;
                    // The queue drains at the alert thread's pace: a few ms a batch.
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
    }

    /// CPU time the alert thread had used after its last input (final once it stopped).
    pub fn thread_cpu(&self) -> Duration {
        Duration::from_nanos(self.shared.cpu_ns.load(Ordering::Relaxed))
    }

    /// The alert summary as the thread last published it (about once a second).
    pub fn status(&self) -> AlertStatus {
        let mut s = match self.shared.status.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        s.queue_full = self.shared.queue_full.load(Ordering::Relaxed);
        s
    }
}

/// The running alert thread (and the store's verification thread, if started); stopping it
/// delivers what is queued.
pub struct Alerts {
    handle: Handle,
    thread: Option<std::thread::JoinHandle<()>>,
    verifier: Option<super::verify::Verifier>,
}

impl Alerts {
    /// Starts the alert thread with `cfg`'s thresholds, for flow tables of `flow_table_size`
    /// entries, delivering to `deliveries` in order.
    pub fn start(
        cfg: &AlertConfig,
        flow_table_size: u32,
        deliveries: Vec<Box<dyn Delivery>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(cfg.alert_queue as usize);
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            engine: Engine::new(cfg, flow_table_size),
            deliveries,
            shared: shared.clone(),
            handover: None,
            handover_failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("xdp-audit-alerts".into())
            .spawn(move || worker.run(rx))?;
        Ok(Self {
            handle: Handle { tx, shared },
            thread: Some(thread),
            verifier: None,
        })
    }

    /// A sender of inputs.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Verifies the store in `dir` (with the head's signature by `key`, if given) now and
    /// every `interval` on a thread of its own, raising `XA-CHAIN-BROKEN` when it fails or no
    /// longer holds the end of the chain seen last (kept in `state_dir` for the next agent).
    pub fn verify_store(
        &mut self,
        dir: PathBuf,
        key: Option<VerifyingKey>,
        interval: Duration,
        state_dir: Option<&Path>,
    ) -> std::io::Result<()> {
        if !interval.is_zero() {
            let mark = state_dir.map(|d| d.join(super::verify::CHAIN_SEEN));
            self.verifier = Some(super::verify::spawn(
                dir,
                key,
                interval,
                mark,
                self.handle(),
            )?);
        }
        Ok(())
    }

    /// Stops verification, delivers what is queued and ends the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.verifier.take());
        if let Some(t) = self.thread.take() {
            // Blocking: the thread drains the queue, so room comes.
            let _ = self.handle.tx.send(Msg::Stop);
            let _ = t.join();
        }
    }
}

impl Drop for Alerts {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    engine: Engine,
    deliveries: Vec<Box<dyn Delivery>>,
    shared: Arc<Shared>,
    /// Where the active alerts are kept for the next agent, from the carry on.
    handover: Option<PathBuf>,
    /// The last write there failed (said once until one succeeds).
    handover_failing: bool,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut out = Vec::new();
        let mut last_tick = Instant::now();
        // From the stop's finish on, nothing more is resolved: the final status lists the
        // alerts active then, which the next agent carries on and resolves.
        let mut closing = false;
        loop {
            let (mut publish, mut finished, mut changed) = (false, None, false);
            match rx.recv_timeout(TICK) {
                // After the finish, an input would raise what no anchor covers and the
                // final status does not list (the next agent sees it again if it holds).
                Ok(Msg::Hits(_) | Msg::Event(_)) if closing => {}
                Ok(Msg::Hits(mut hits)) => {
                    let now = Now::host();
                    for (h, n) in hits.counted() {
                        self.engine.hit(h, n, now, &mut out);
                    }
                    hits.clear();
                    if let Ok(mut spare) = self.shared.spare.lock() {
                        if spare.len() < SPARE_BATCHES {
                            spare.push(hits);
                        }
                    }
                }
                Ok(Msg::Observe(mut g, unaudited, rejected)) => {
                    g.clock_unsynced =
                        matches!(crate::compliance::system::clock_sync(), ClockSync::Unsynced);
                    let now = Now::host();
                    self.engine.observe(g, now, &mut out);
                    self.engine.unaudited(&unaudited, now, &mut out);
                    self.engine.lists_rejected(&rejected, now, &mut out);
                    publish = true;
                }
                Ok(Msg::Event(e)) => self.engine.event(e, Now::host(), &mut out),
                Ok(Msg::Previous(g)) => self.engine.previous_run(g),
                Ok(Msg::Carry(alerts, keep)) => {
                    self.engine.carry(alerts, Now::host(), &mut out);
                    self.handover = keep;
                    (publish, changed) = (true, true);
                }
                Ok(Msg::Finish(reply)) => {
                    // The final status hands every active alert on ([`AlertStatus::carry`]).
                    closing = true;
                    (publish, finished) = (true, Some(reply));
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                if !closing {
                    self.engine.tick(Now::host(), &mut out);
                }
                for d in &mut self.deliveries {
                    d.tick();
                }
                publish = true;
            }
            // Raised or resolved: a checkpoint for the next agent once delivered (it replays
            // the alert log's notices since, so a kill before the checkpoint loses none).
            changed |= !out.is_empty() || finished.is_some();
            for a in out.drain(..) {
                for d in &mut self.deliveries {
                    d.deliver(&a);
                }
            }
            for d in &mut self.deliveries {
                d.flush();
            }
            if publish {
                self.publish(closing);
            }
            if changed {
                self.hand_over(closing);
            }
            if let Some(reply) = finished {
                let _ = reply.send(());
            }
            let cpu = crate::clock::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
            self.shared
                .cpu_ns
                .store(cpu.max(0) as u64, Ordering::Relaxed);
        }
        for d in &mut self.deliveries {
            d.close();
        }
        self.publish(closing);
    }

    /// Keeps the active alerts for the next agent (as the status lists them, all of them
    /// when `closing`), once the carry said where ([`super::handover`]).
    fn hand_over(&mut self, closing: bool) {
        let Some(path) = &self.handover else {
            return;
        };
        let mut active = self.engine.status().active;
        if !closing {
            active.truncate(STATUS_ACTIVE);
        }
        match super::handover::write(path, &active) {
            Ok(()) => self.handover_failing = false,
            Err(e) if !self.handover_failing => {
                self.handover_failing = true;
                tracing::warn!(file = %path.display(), error = %e, "cannot keep the active alerts for the next agent; it carries those of the last status snapshot");
            }
            Err(_) => {}
        }
    }

    /// Publishes the status; `closing`, with every active alert for the next agent.
    fn publish(&self, closing: bool) {
        let mut s = self.engine.status();
        s.active_total = s.active.len() as u64;
        let past = s.active.split_off(STATUS_ACTIVE.min(s.active.len()));
        if closing {
            s.carry = past;
        }
        s.deliveries = self.deliveries.iter().map(|d| d.stats()).collect();
        match self.shared.status.lock() {
            Ok(mut g) => *g = s,
            Err(poisoned) => *poisoned.into_inner() = s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertId, DeliveryStats, ListKept};
    use std::sync::mpsc::{Receiver, Sender};

    /// A delivery that says when it is entered, holds the alert thread in its first
    /// `deliver` until told to go on, and hands over the ids it was given.
    struct Stalled {
        entered: Sender<()>,
        go: Receiver<()>,
        seen: Sender<AlertId>,
    }

    impl Delivery for Stalled {
        fn deliver(&mut self, a: &super::super::Alert) {
            if self.entered.send(()).is_ok() {
                let _ = self.go.recv();
            }
            let _ = self.seen.send(a.id);
        }
        fn stats(&self) -> DeliveryStats {
            DeliveryStats::default()
        }
    }

    /// Whether thread `tid` of this process sleeps (state S in its stat line).
    fn sleeping(tid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
            .ok()
            .and_then(|s| Some(s.rsplit_once(") ")?.1.starts_with('S')))
            .unwrap_or(false)
    }

    /// From the carry on, an alert raised is kept for the next agent as soon as it is
    /// delivered, not only in the next status snapshot (a kill before it lost the alert from
    /// the hand-over: never resolved, and raised again).
    #[test]
    fn an_alert_raised_after_the_carry_is_kept_for_the_next_agent_at_once() {
        let tmp = crate::blocklist::tests::TempDir::new("alert-handover");
        let path = tmp.0.join(super::super::handover::FILE);
        let alerts = Alerts::start(&Default::default(), 0, Vec::new()).expect("start");
        let h = alerts.handle();
        h.event(Event::ListRejected {
            file: "/etc/before.list".into(),
            reason: "before the carry".into(),
            kept: ListKept::Nothing,
        });
        h.carry(Vec::new(), Some(path.clone()));
        h.event(Event::ListRejected {
            file: "/etc/b.list".into(),
            reason: "/etc/b.list:3: bad".into(),
            kept: ListKept::Nothing,
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let kept = loop {
            let kept = super::super::handover::checkpoint(&tmp.0).unwrap_or_default();
            if kept.len() == 2 || Instant::now() > deadline {
                break kept;
            }
            std::thread::yield_now();
        };
        assert_eq!(
            kept.iter().map(|a| a.id).collect::<Vec<_>>(),
            [AlertId::ListRejected; 2],
            "both kept, before any status was asked for: {kept:?}"
        );
        alerts.stop();
    }

    #[test]
    fn an_event_waits_for_room_in_a_queue_a_flood_filled() {
        let cfg = crate::alert::AlertConfig {
            alert_queue: 1,
            ..Default::default()
        };
        let ((entered, entered_rx), (go, go_rx)) = (mpsc::channel(), mpsc::channel());
        let (seen_tx, seen) = mpsc::channel();
        let stalled = Stalled {
            entered,
            go: go_rx,
            seen: seen_tx,
        };
        let alerts = Alerts::start(&cfg, 0, vec![Box::new(stalled)]).expect("start");
        /// Releases the delivery when dropped: declared after `alerts`, it is dropped first
        /// when an assertion fails, so the stop that follows does not wait for ever.
        struct Release(Sender<()>);
        impl Drop for Release {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let go = Release(go);
        let h = alerts.handle();
        // The first event holds the thread in its delivery; a batch of hits fills the queue.
        assert!(h.event(Event::ListStale { reason: "a".into() }));
        entered_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the delivery is entered");
        drop(entered_rx);
        assert!(h.hits(HitBatch::with_capacity(0)), "one slot");
        assert!(!h.hits(HitBatch::with_capacity(0)), "the queue is full");
        let (tid_tx, tid_rx) = mpsc::channel();
        let sender = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            h.event(Event::ListRejected {
                file: "b.list".into(),
                reason: "b.list:3: not an address".into(),
                kept: ListKept::LastGood,
            })
        });
        let tid = tid_rx.recv().expect("the sender's thread id");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sender.is_finished() && !sleeping(tid) {
            assert!(
                Instant::now() < deadline,
                "the sender neither waits nor returns"
            );
            std::thread::yield_now();
        }
        drop(go);
        assert!(
            sender.join().expect("the sender"),
            "the event was dropped, not queued"
        );
        let mut ids = Vec::new();
        while let Ok(id) = seen.recv_timeout(Duration::from_secs(30)) {
            ids.push(id);
            if ids.len() == 2 {
                break;
            }
        }
        assert_eq!(ids, [AlertId::ListStale, AlertId::ListRejected]);
        alerts.stop();
    }

    /// A clean stop hands every active alert on: those past the listed ones go in the final
    /// status's `carry` (they were resolved at each stop, and raised again by the next agent
    /// under a flood that went on), none resolved.
    #[test]
    fn a_stop_hands_on_every_active_alert() {
        let alerts = Alerts::start(&Default::default(), 0, Vec::new()).expect("start");
        let h = alerts.handle();
        let active: Vec<super::super::Alert> = (0..STATUS_ACTIVE + 10)
            .map(|c| super::super::Alert {
                id: AlertId::BlockFirst,
                severity: AlertId::BlockFirst.severity(),
                state: crate::alert::AlertState::Raised,
                text: "blocked".into(),
                subject: crate::alert::Subject {
                    client: Some(std::net::IpAddr::from([10, 0, (c >> 8) as u8, c as u8])),
                    rule: Some("b.list:1".into()),
                    ..Default::default()
                },
                first_ns: 1,
                last_ns: 2,
                count: 1,
            })
            .collect();
        h.carry(active, None);
        assert!(h.finish(), "finished");
        let s = h.status();
        assert_eq!(s.active_total, STATUS_ACTIVE as u64 + 10);
        assert_eq!((s.active.len(), s.carry.len()), (STATUS_ACTIVE, 10));
        assert_eq!(s.resolved, 0, "none resolved at the stop");
        alerts.stop();
    }
}
