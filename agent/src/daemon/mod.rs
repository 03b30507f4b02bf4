//! The agent's orchestration, as stages on their own threads so that nothing slow stands
//! between the ring buffer and its reader:
//!
//! ```text
//!  ring buffer ─► reader (async task: drain, decode, clock) ─► queue ─► records thread ─► sink
//!                                                               ▲     (sweeper, store, status)
//!  list files ─► watcher / SIGHUP ─► lists thread ──────────────┘ rule names
//!                                    (parse, compile, write the list maps)
//! ```
//!
//! - The reader ([`crate::reader`]) only drains the ring and decodes: no disk, no map
//!   writes, no locks. After each drain it re-measures the wall clock; every sweep interval it
//!   drains, then queues a sweep, so a flow's start event always reaches the sweeper before
//!   the sweep that could end the flow (a start arriving after its flow ended would reopen
//!   it as a flow evicted before it ended).
//! - The queue ([`queue`]) is bounded: when it is full the reader waits, the program's ring
//!   buffer holds the events meanwhile (and counts what it cannot hold), and the wait is
//!   counted. Nothing is dropped between the ring and the sweeper.
//! - The records stage ([`records`]) runs the sweeper, the sink's timers (fsync, rotation)
//!   and the status file, and gives the ring space of the events it settled back to the
//!   program ([`crate::reader::ring::Release`]): the reader reads ahead, and a kill leaves
//!   what was read and not settled in the pinned ring for the next agent.
//! - The list stage ([`lists`]) parses, compiles and writes the kernel maps of each reload.
//!
//! - Signals ([`signals`]) are held from the process's first instruction and handled once the
//!   stages exist: a SIGTERM at any moment ends in a clean stop.
//!
//! A later stage between the sweeper and the store (enrichment, shipping, metrics) is a
//! [`RecordSink`] wrapping the next one, given to [`Daemon::start`] as the sink.

pub mod ifaces;
pub mod lists;
pub mod queue;
mod records;
pub mod signals;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::blocklist::watch::{self, ListWatcher};
use crate::blocklist::ListSet;
use crate::clock::{ClockSource, ClockStats, ClockWatch, Timeline};
use crate::flowtable::FlowTableError;
use crate::loader::Maps;
use crate::reader::RingReader;
use crate::sink::{RecordSink, SinkError};
use crate::store::StoreStatus;
use crate::sweeper::{SweepStats, Sweeper, Timeouts};
use lists::{ListsShared, Reload, ReloadOutcome, Request, RuleBook};
use queue::{Msg, PipelineCounters, PipelineStats, QueueTx, BATCH_EVENTS, QUEUE_MESSAGES};

/// How often the ring buffer is drained when the program has not woken the reader (it wakes
/// it only when a quarter of the ring is pending).
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// An audited interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its index (what flow keys carry).
    pub ifindex: u32,
}

/// What the daemon needs to know, whatever the command line looked like.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where `status.json` is rewritten every sweep.
    pub state_dir: PathBuf,
    /// The audited interfaces.
    pub interfaces: Vec<Interface>,
    /// Configured interfaces absent at the start: watched until they appear ([`ifaces`]).
    pub absent: Vec<String>,
    /// Where the count of flows lost unseen starts ([`Sweeper::lost_starts_before`]): the
    /// program's `lost_flow_start` as the last agent read it, when this one adopted the
    /// program; 0 for a program this one loaded. `None`: from the first sweep's reading.
    pub lost_starts_before: Option<u64>,
    /// Configured interfaces the start could not attach the program to, and why (another
    /// program on one, its driver refusing the mode): reported until a restart ([`ifaces`]).
    pub refused: Vec<(String, String)>,
    /// The XDP attach mode asked for: whether a start could attach to an interface that
    /// appears ([`ifaces`]).
    pub xdp_mode: crate::loader::AttachMode,
    /// When flows end.
    pub timeouts: Timeouts,
    /// How often the flow table is swept, the store's timers run and the status is written.
    pub sweep_interval: Duration,
    /// How often the ring is drained without a wake-up ([`DRAIN_INTERVAL`]).
    pub drain_interval: Duration,
    /// Whether to watch the list files and reload them on change.
    pub watch_lists: bool,
    /// Messages the queue to the records stage holds ([`QUEUE_MESSAGES`]).
    pub queue_messages: usize,
    /// The program stays attached after the agent (pinned): at the stop, the flows that have
    /// ended are written and every other one gets an interim `shutdown` record and stays in
    /// the table, for the next agent to continue after it ([`Sweeper::hand_over`]). Without
    /// it the program is detached first and every flow is written as ended.
    pub hand_over: bool,
    /// The shipper's status, shown in `status.json` (with --ship).
    pub ship: Option<crate::ship::ShipHandle>,
    /// Where each sweep's status snapshot is also published, for the metrics endpoint.
    pub metrics: Option<Arc<crate::metrics::Latest>>,
    /// The alert thread, told of each status snapshot and of rejected list files.
    pub alerts: Option<crate::alert::Handle>,
}

impl Settings {
    /// Defaults (the `run` command's) for `interfaces`, with the status in `state_dir`.
    pub fn new(state_dir: PathBuf, interfaces: Vec<Interface>) -> Self {
        Self {
            state_dir,
            interfaces,
            timeouts: Timeouts::default(),
            sweep_interval: Duration::from_secs(1),
            drain_interval: DRAIN_INTERVAL,
            watch_lists: true,
            queue_messages: QUEUE_MESSAGES,
            hand_over: false,
            ship: None,
            metrics: None,
            alerts: None,
            absent: Vec::new(),
            lost_starts_before: None,
            refused: Vec::new(),
            xdp_mode: crate::loader::AttachMode::Auto,
        }
    }
}

/// Why the daemon could not start or stop cleanly; each names the part at fault.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The events map is no ring buffer (a build mismatch), or cannot be mapped.
    #[error("cannot map the EVENTS ring buffer: {0}")]
    Ring(std::io::Error),
    /// The ring buffer could not be polled.
    #[error("cannot poll the ring buffer: {0}")]
    Poll(std::io::Error),
    /// A stage's thread could not be started.
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    /// A stage's thread panicked.
    #[error("the {0} thread stopped unexpectedly (panicked)")]
    Panicked(&'static str),
    /// The records stage is gone while the reader still runs.
    #[error("the records stage stopped while the reader was running")]
    RecordsGone,
    /// The flow tables are not what the agent reads them as.
    #[error(transparent)]
    FlowTable(#[from] FlowTableError),
    /// The final flush could not read the flow table.
    #[error("reading the flow table at shutdown: {0}")]
    Flush(std::io::Error),
    /// The sink could not make everything durable at shutdown.
    #[error("closing the audit store at shutdown: {0}")]
    Close(SinkError),
    /// [`Daemon::run`] was called twice.
    #[error("the daemon already ran")]
    AlreadyRan,
    /// The signal handlers could not be installed (the daemon stops at once, cleanly).
    #[error("cannot install the SIGINT/SIGTERM/SIGHUP handlers: {0}")]
    Signals(std::io::Error),
    /// An audited interface lost the program in a way a restart mends (it was deleted and
    /// created again, or its program was detached), or an absent one appeared.
    #[error(
        "{why}: nothing was audited or blocked there since; stopped so that a restart \
         (systemd's Restart=on-failure) attaches the program there"
    )]
    Reattach {
        /// The interface.
        name: String,
        /// What happened to it.
        why: String,
    },
}

/// What the daemon did, when it stopped.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Records written, lost start events, evictions, sink errors.
    pub flows: SweepStats,
    /// The audit store's counters (if the sink was one).
    pub store: Option<StoreStatus>,
    /// The reader and the queue.
    pub pipeline: PipelineStats,
    /// The wall clock's steps.
    pub clock: ClockStats,
    /// The program's counters at the end (if readable).
    pub counters: Option<Vec<(agent_common::Counter, u64)>>,
}

/// Commands to a running daemon; clones command the same daemon.
#[derive(Clone)]
pub struct Control {
    lists: mpsc::Sender<ListCmd>,
    stop: Arc<Notify>,
    pipeline: Arc<PipelineCounters>,
}

pub(crate) enum ListCmd {
    Reload(Request),
    Stop,
}

impl Control {
    /// Asks the list stage to re-read `what`; the receiver gets the outcome (drop it if you do
    /// not care). After the daemon stopped, the receiver reports a disconnection.
    pub fn reload(&self, what: Reload) -> mpsc::Receiver<ReloadOutcome> {
        let (tx, rx) = mpsc::channel();
        let _ = self.lists.send(ListCmd::Reload(Request {
            what,
            reply: Some(tx),
        }));
        rx
    }

    /// Makes [`Daemon::run`] return.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// The reader's and the queue's counters now.
    pub fn pipeline(&self) -> PipelineStats {
        self.pipeline.stats()
    }
}

/// The running stages.
pub struct Daemon {
    settings: Settings,
    ring: Option<RingReader>,
    /// The most events the ring holds at once: what the drain at the stop reads at most
    /// (a program left attached goes on filling it).
    ring_events: usize,
    clock: ClockWatch,
    queue: Option<QueueTx>,
    list_paths: Vec<PathBuf>,
    lists: mpsc::Sender<ListCmd>,
    lists_thread: Option<std::thread::JoinHandle<()>>,
    records_thread: Option<std::thread::JoinHandle<Result<Summary, DaemonError>>>,
    stop: Arc<Notify>,
    /// The interfaces, looked at every sweep.
    watch: ifaces::Watch,
}

impl Daemon {
    /// Starts the records and list stages on the maps of a loaded program whose list maps
    /// already hold `lists`. Records go to `sink`; wall time comes from `clocks`. The reader
    /// starts with [`Daemon::run`].
    pub fn start(
        settings: Settings,
        maps: Maps,
        mut lists: ListSet,
        sink: Box<dyn RecordSink>,
        clocks: Arc<dyn ClockSource>,
    ) -> Result<(Self, Control), DaemonError> {
        // A flood window is a sweep: two sweeps take every summary counted under an id.
        lists.set_id_hold(settings.sweep_interval.saturating_mul(2));
        let Maps {
            flows,
            events,
            stats,
            lists: list_maps,
            ledger,
            retired,
            flood,
        } = maps;
        let ring = RingReader::new(&events).map_err(DaemonError::Ring)?;
        let ring_events =
            (ring.release().fill().1 as usize / agent_common::RING_RECORD_BYTES).max(1);
        let table_capacities = flows.capacities();
        let counters = Arc::new(PipelineCounters::default());
        let (tx, rx) = queue::queue(settings.queue_messages, counters.clone());
        let hand_over = settings.hand_over.then(|| clocks.clone());
        let (clock, first) = ClockWatch::new(clocks);
        let shared = Arc::new(ListsShared::new(list_maps, lists.compiled().generation));
        let ifnames = settings
            .interfaces
            .iter()
            .map(|i| (i.ifindex, i.name.clone()))
            .collect();
        let mut sweeper = Sweeper::new(settings.timeouts, Timeline::new(first), ifnames);
        if let Some(n) = settings.lost_starts_before {
            sweeper.lost_starts_before(n);
        }
        if let Some(ledger) = ledger {
            let n = sweeper.adopt(ledger);
            if n > 0 {
                info!(
                    flows = n,
                    "the pinned ledger holds what earlier agents' records carried of these flows (some may have ended since); each goes on from there"
                );
            }
        }
        // After the ledger: the file of open flows is at least as recent.
        let (spill, saved) = crate::sweeper::spill::Spill::open(&settings.state_dir);
        sweeper.restore(spill, saved);
        let rules = Arc::new(RuleBook::new(&lists));
        // The budgets shown from the start (the metrics' `flood_budget_records_per_second`
        // was never served: nothing set them).
        let flood_status = crate::sweeper::flood::FloodStatus {
            budget: flood.as_ref().map(|f| f.budget()),
            ..Default::default()
        };
        let records = records::Records {
            sweeper,
            retired,
            hand_over,
            sink,
            flows,
            flood,
            flood_status,
            rules: rules.clone(),
            release: ring.release(),
            unreleased: None,
            status: records::StatusInputs {
                dir: settings.state_dir.clone(),
                interfaces: settings.interfaces.iter().map(|i| i.name.clone()).collect(),
                unaudited: Vec::new(),
                stats,
                lists: shared.clone(),
                hits: Vec::new(),
                ship: settings.ship.clone(),
                table_capacities,
                publish: settings.metrics.clone(),
                alerts: settings.alerts.clone(),
                unwritten: crate::throttle::Throttle::new(Duration::from_secs(60)),
                counters: Default::default(),
                unread: crate::throttle::Throttle::new(Duration::from_secs(60)),
            },
        };
        let list_paths = lists.paths().into_iter().map(PathBuf::from).collect();
        let records_thread =
            records::spawn(records, rx).map_err(|e| DaemonError::Thread("records", e))?;
        let (lists_tx, lists_thread) =
            lists::spawn(lists, rules, shared, tx.clone(), settings.alerts.clone())
                .map_err(|e| DaemonError::Thread("lists", e))?;
        let stop = Arc::new(Notify::new());
        let control = Control {
            lists: lists_tx.clone(),
            stop: stop.clone(),
            pipeline: counters,
        };
        let watch = ifaces::Watch::new(
            &settings.interfaces,
            &settings.absent,
            &settings.refused,
            settings.xdp_mode,
        );
        let daemon = Self {
            settings,
            ring: Some(ring),
            ring_events,
            clock,
            queue: Some(tx),
            list_paths,
            lists: lists_tx,
            lists_thread: Some(lists_thread),
            records_thread: Some(records_thread),
            stop,
            watch,
        };
        Ok((daemon, control))
    }

    /// Runs the reader, the sweep ticks and the list watcher until [`Control::stop`]. Call it
    /// inside a tokio runtime, once.
    pub async fn run(&mut self) -> Result<(), DaemonError> {
        let reader = self.ring.take().ok_or(DaemonError::AlreadyRan)?;
        let queue = self.queue.clone().ok_or(DaemonError::AlreadyRan)?;
        // SAFETY: the RingReader owns its map fd for its whole life and always returns it.
        let mut ring =
            unsafe { AsyncFd::register_with_interest(reader, tokio::io::Interest::READABLE) }
                .map_err(|e| DaemonError::Poll(e.into()))?;
        // A watcher that cannot start (the inotify limits reached) is no reason to stop an
        // agent whose program already enforces: it runs without, as when one fails later.
        let mut watcher = if self.settings.watch_lists && !self.list_paths.is_empty() {
            ListWatcher::new(&self.list_paths, watch::DEFAULT_DEBOUNCE)
                .map_err(|e| error!(error = %e, "cannot watch the list files; SIGHUP reloads them"))
                .ok()
        } else {
            None
        };
        // Every file read once more now that changes are watched: an edit saved while the
        // agent started is applied, and a file that did not load at the start raises its
        // alert (unchanged files are compared, not parsed again).
        if !self.list_paths.is_empty() {
            let _ = self.lists.send(ListCmd::Reload(Request {
                what: Reload::All,
                reply: None,
            }));
        }
        // The first sweep one interval after the start, as every later one.
        let period = self.settings.sweep_interval;
        let mut sweep_tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_tick = tokio::time::interval(self.settings.drain_interval);
        drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!("xdp-audit running");
        let clock = &mut self.clock;
        // What a sweep's drain moves at most: the ring's records (at most a million).
        let ring_events = self.ring_events.min(1 << 20);
        let result = loop {
            let pumped = tokio::select! {
                _ = self.stop.notified() => break Ok(()),
                guard = ring.readable_mut() => match guard {
                    Ok(mut guard) => {
                        let r = pump(guard.get_inner_mut(), clock, &queue).await;
                        // Left ready while events remain: the loop comes back at once, after
                        // a look at the stop and the ticks.
                        if !matches!(r, Ok(true)) {
                            guard.clear_ready();
                        }
                        r.map(drop)
                    }
                    Err(e) => break Err(DaemonError::Poll(e)),
                },
                _ = drain_tick.tick() => pump(ring.get_mut(), clock, &queue).await.map(drop),
                _ = sweep_tick.tick() => {
                    let unaudited = match self.watch.look() {
                        Ok(u) => u,
                        Err(e) => break Err(e),
                    };
                    // Drained first, up to what the ring holds (a flood refills it as fast):
                    // every start event written before `now` is queued before the sweep.
                    // Else the walk finds flows whose start events are still in the ring; one
                    // it writes as evicted, its start drained after, was taken for a new flow
                    // and written again (a re-test: 86,726 flows twice in a flood that
                    // outran a pump of 16 batches).
                    let r = pump_up_to(ring.get_mut(), clock, &queue, ring_events).await.map(drop);
                    let now = clock.clocks().monotonic_ns();
                    match r {
                        Ok(()) if queue.counters().claim_sweep() => queue.send(Msg::Sweep { now, unaudited }).await,
                        other => other,
                    }
                }
                changed = async {
                    match watcher.as_mut() {
                        Some(w) => w.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match changed {
                        Ok(paths) => {
                            let _ = self.lists.send(ListCmd::Reload(Request {
                                what: Reload::Files(paths),
                                reply: None,
                            }));
                        }
                        Err(e) => {
                            error!(error = %e, "list watcher stopped; SIGHUP still reloads");
                            watcher = None;
                        }
                    }
                    Ok(())
                }
            };
            if pumped.is_err() {
                break Err(DaemonError::RecordsGone);
            }
        };
        self.ring = Some(ring.into_inner());
        result
    }

    /// Stops the stages: drains what the ring still holds, lets the list stage finish its
    /// reload, writes every flow left in the table and closes the sink (which seals the live
    /// journal). Detach the program first (every flow in the table is written as ended), or,
    /// with [`Settings::hand_over`], leave it attached (open flows get interim records and
    /// stay). Call this outside the async runtime.
    pub fn finish(mut self) -> Result<Summary, DaemonError> {
        if let (Some(ring), Some(queue)) = (self.ring.as_mut(), self.queue.as_ref()) {
            // At most what the ring held at the stop: under a flood a program left attached
            // would fill it again as fast as it drains, and the stop would never end.
            let mut left = self.ring_events;
            while left > 0 {
                let (msg, records, more) = take_batch(ring, queue, BATCH_EVENTS.min(left));
                left = left.saturating_sub(records as usize);
                if let Some(msg) = msg {
                    if queue.send_blocking(msg).is_err() {
                        break;
                    }
                }
                if !more || records == 0 {
                    break;
                }
            }
        }
        let _ = self.lists.send(ListCmd::Stop);
        if let Some(t) = self.lists_thread.take() {
            t.join().map_err(|_| DaemonError::Panicked("lists"))?;
        }
        // The last sender: the records stage sees the end of the queue and finishes.
        self.queue = None;
        let summary = match self.records_thread.take() {
            Some(t) => t.join().map_err(|_| DaemonError::Panicked("records"))?,
            None => return Err(DaemonError::RecordsGone),
        };
        // The last snapshot stays, marked: `xdp-audit status` says the agent stopped and shows
        // the snapshot's age, and the next agent knows this one did not crash. A store that
        // could not write everything at its close is no crash either: its snapshot counts
        // the records lost, which the next agent alerts.
        if matches!(summary, Ok(_) | Err(DaemonError::Close(_))) {
            if let Err(e) = crate::status::Snapshot::mark_stopped(&self.settings.state_dir) {
                warn!(error = %e, "cannot mark the status snapshot stopped");
            }
        }
        let summary = summary?;
        log_summary(&summary);
        Ok(summary)
    }
}

/// Up to `max` events from the ring, counted as read: the message that carries them and
/// where they end (none if the read moved nothing; one without events if only undecodable
/// records, whose space is released once those before are), the ring records they took, and
/// whether more may wait (the batch stopped at a bound, not at an empty ring).
fn take_batch(ring: &mut RingReader, queue: &QueueTx, max: usize) -> (Option<Msg>, u64, bool) {
    let before = ring.position();
    let mut events = Vec::new();
    let d = ring.drain_into(&mut events, max);
    queue.counters().read(d.records, d.undecodable);
    let msg = (d.end != before).then_some(Msg::Events { events, end: d.end });
    (msg, d.records, d.more)
}

/// Batches one [`pump`] moves at most before the run loop looks at the stop and its ticks:
/// under a flood the ring refills as fast as it drains, and a pump that drained until empty
/// never returned (no stop, no sweep, no status).
const PUMP_BATCHES: usize = 16;

/// Drains the ring into the queue, in batches, after a clock measurement; true when it
/// stopped at [`PUMP_BATCHES`] with events maybe left.
async fn pump(
    ring: &mut RingReader,
    clock: &mut ClockWatch,
    queue: &QueueTx,
) -> Result<bool, queue::Closed> {
    pump_up_to(ring, clock, queue, PUMP_BATCHES * BATCH_EVENTS).await
}

/// [`pump`], moving up to `events` ring records.
async fn pump_up_to(
    ring: &mut RingReader,
    clock: &mut ClockWatch,
    queue: &QueueTx,
    events: usize,
) -> Result<bool, queue::Closed> {
    if let Some(sample) = clock.poll() {
        queue.send(Msg::Clock(sample)).await?;
    }
    let mut left = events;
    while left > 0 {
        let (msg, records, more) = take_batch(ring, queue, BATCH_EVENTS.min(left));
        left = left.saturating_sub((records as usize).max(1));
        if let Some(msg) = msg {
            queue.send(msg).await?;
        }
        if !more {
            return Ok(false);
        }
    }
    Ok(true)
}

fn log_summary(s: &Summary) {
    match &s.counters {
        Some(counters) => {
            let nonzero: Vec<String> = counters
                .iter()
                .filter(|(_, n)| *n != 0)
                .map(|(c, n)| format!("{}={n}", c.name()))
                .collect();
            info!(counters = %nonzero.join(" "), "program counters at shutdown");
        }
        None => warn!("cannot read the program counters"),
    }
    let f = s.flows;
    info!(
        records = f.records,
        lost_starts = f.lost_starts,
        evicted = f.evicted,
        lost_unseen = f.lost_unseen,
        sink_errors = f.sink_errors,
        undecodable = s.pipeline.undecodable,
        queue_full = s.pipeline.queue_full,
        clock_steps = s.clock.steps,
        "stopped"
    );
}
