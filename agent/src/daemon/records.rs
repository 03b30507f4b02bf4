//! The records stage: one thread that owns the sweeper and the record sink (the audit store,
//! or a chain of stages ending in it), fed in order by the queue. Everything here may block
//! (map reads, journal writes and fsyncs, sealing hand-offs, the status file) without the
//! ring buffer noticing: the reader keeps draining into the queue meanwhile.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use agent_common::Counter;
use aya::maps::Map;
use tracing::{error, warn};

use super::lists::{ListsShared, RuleBook};
use super::queue::{Msg, PipelineCounters, PipelineStats, QueueRx};
use super::{DaemonError, Summary};
use crate::clock::ClockSource;
use crate::flowtable::FlowMaps;
use crate::loader::upgrade::Retired;
use crate::metrics::{Observed, RingFillStats, TableFill};
use crate::reader::Event;
use crate::sink::{RecordSink, SinkError};
use crate::status::Snapshot;
use crate::sweeper::flood::{FloodMaps, FloodStatus};
use crate::sweeper::{rule_text, Sweeper};

/// What the status file is made of, besides the sweeper's and the sink's counters.
pub(crate) struct StatusInputs {
    /// Where `status.json` goes.
    pub(crate) dir: PathBuf,
    /// The audited interfaces' names.
    pub(crate) interfaces: Vec<String>,
    /// The configured interfaces not audited, as the last sweep found them.
    pub(crate) unaudited: Vec<crate::status::Unaudited>,
    /// The program's per-CPU counters.
    pub(crate) stats: Map,
    /// The list maps' hits and generation.
    pub(crate) lists: Arc<ListsShared>,
    /// The last hits read (kept while a reload holds the maps).
    pub(crate) hits: Vec<(u32, u64)>,
    /// The shipper's status (with --ship).
    pub(crate) ship: Option<crate::ship::ShipHandle>,
    /// The IPv4 and IPv6 flow tables' sizes.
    pub(crate) table_capacities: [u64; 2],
    /// Where the snapshot is published for the metrics endpoint.
    pub(crate) publish: Option<Arc<crate::metrics::Latest>>,
    /// The alert thread: its summary goes into the snapshot, and it reads each snapshot.
    pub(crate) alerts: Option<crate::alert::Handle>,
    /// A snapshot that cannot be written (a full disk) is said at most once a minute, not
    /// at every sweep.
    pub(crate) unwritten: crate::throttle::Throttle,
    /// The program counters last read, and how often reading them failed since last said.
    pub(crate) counters: BTreeMap<String, u64>,
    pub(crate) unread: crate::throttle::Throttle,
}

/// The records stage's state.
pub(crate) struct Records {
    pub(crate) sweeper: Sweeper,
    /// What a replaced layout's maps held: written before anything else; then its map
    /// directories until they are unpinned.
    pub(crate) retired: Option<Retired>,
    /// With a pinned program: the clocks to hand the open flows over with at the stop.
    pub(crate) hand_over: Option<Arc<dyn ClockSource>>,
    pub(crate) sink: Box<dyn RecordSink>,
    pub(crate) flows: FlowMaps,
    /// The flood summaries, taken every sweep (absent for a program without them).
    pub(crate) flood: Option<FloodMaps>,
    /// What they added up to since the start.
    pub(crate) flood_status: FloodStatus,
    pub(crate) rules: Arc<RuleBook>,
    pub(crate) status: StatusInputs,
    /// Gives the ring space of settled events back to the program.
    pub(crate) release: crate::reader::ring::Release,
    /// The ring position after the last events handled, until they are settled.
    pub(crate) unreleased: Option<u64>,
}

/// Starts the records stage on its own thread; it ends when every sender of `rx` is gone,
/// after writing every flow left in the table (the program must be detached by then).
pub(crate) fn spawn(
    mut records: Records,
    mut rx: QueueRx,
) -> std::io::Result<std::thread::JoinHandle<Result<Summary, DaemonError>>> {
    std::thread::Builder::new()
        .name("xdp-audit-records".into())
        .spawn(move || {
            records.write_retired();
            records.write_left_flood();
            while let Some(msg) = rx.recv_blocking() {
                records.handle(msg, rx.counters());
                records.unpin_retired();
            }
            records.finish(rx.counters().stats())
        })
}

impl Records {
    /// The events and flows of a replaced layout's maps, before the new ring's.
    fn write_retired(&mut self) {
        let Some(mut r) = self.retired.take() else {
            return;
        };
        crate::loader::crash_point("retired");
        // Rule ids of a program whose lists could not be read name no rule of this book.
        let book = r
            .rules_unknown
            .then(|| std::mem::replace(&mut self.rules, Arc::new(RuleBook::default())));
        self.sweeper.seed(&r.seed);
        // Lost starts its events revealed (a first drop, a closed flow's last snapshot):
        // found, not unseen.
        let before = self.sweeper.stats.lost_starts;
        for ev in std::mem::take(&mut r.events) {
            self.on_event(ev);
        }
        let found_by_events = self.sweeper.stats.lost_starts - before;
        self.sweeper.write_retired(
            &r.flows,
            &r.lost_starts,
            found_by_events,
            self.sink.as_mut(),
            self.rules.as_ref(),
        );
        let flood = std::mem::take(&mut r.flood);
        if !flood.is_empty() {
            self.summarise(Ok(flood));
        }
        self.sweeper.settle(self.sink.as_mut());
        if let Some(book) = book {
            self.rules = book;
        }
        r.flows.clear();
        r.seed.clear();
        self.retired = Some(r);
        self.unpin_retired();
    }

    /// Unpins the replaced maps once the records of what they held are handed to the kernel;
    /// while a flush fails (those records still buffered here) they stay pinned, for the
    /// next start to write them should this agent die first.
    fn unpin_retired(&mut self) {
        let Some(r) = self.retired.as_mut().filter(|r| r.has_pins()) else {
            return;
        };
        // A store whose disk refuses writes keeps them buffered, and its flush says so.
        if self.sink.flush().is_ok() {
            r.unpin();
            self.retired = None;
        }
    }

    /// One event of the ring (or of a replaced layout's ring): payload copies go to the sink's
    /// enrich stage, since they count in no flow; the others to the sweeper.
    fn on_event(&mut self, ev: Event) {
        if let Event::Payload(p) = &ev {
            self.sink.payload(p);
            return;
        }
        self.sweeper
            .on_event(ev, self.sink.as_mut(), self.rules.as_ref());
    }

    fn handle(&mut self, msg: Msg, counters: &PipelineCounters) {
        match msg {
            Msg::Events { events, end } => {
                for ev in events {
                    self.on_event(ev);
                }
                crate::loader::crash_point_counting("settle", self.sweeper.stats.starts);
                // A first drop's record: the ledger moves on, and the kernel's flow holds
                // nothing more to write of it. One write(2) per batch, none for a batch of
                // starts alone.
                self.unreleased = Some(end);
                let settled = self.sweeper.settle(self.sink.as_mut());
                self.release_if(settled);
            }
            Msg::Clock(sample) => self.sweeper.on_clock(sample),
            Msg::Rules(book) => self.rules = book,
            Msg::Sweep { now, unaudited } => {
                counters.sweep_done();
                self.status.unaudited = unaudited;
                self.sweep(now);
                self.write_status(counters.stats());
            }
        }
    }

    fn sweep(&mut self, now: u64) {
        self.read_counters();
        let table = self.flows.table();
        if let Err(e) = self
            .sweeper
            .sweep(table, self.sink.as_mut(), self.rules.as_ref(), now)
        {
            error!(error = %e, "sweeping the flow table failed");
        }
        self.take_flood();
        // The flows the sweep took out of the table are in the journal file before the
        // status snapshot counts their records (and before the ledger forgets them).
        let flood = &mut self.flood;
        let settled = self
            .sweeper
            .settle_and(self.sink.as_mut(), || forget_flood(flood));
        let settled = settled || {
            // The disk refused the records: retried now, and what it takes the ledger
            // follows at once (the tick's retry would write them and do its upkeep before
            // the next sweep's settle, a window in which a kill has them written again).
            let _ = self.sink.sync();
            let flood = &mut self.flood;
            self.sweeper
                .settle_and(self.sink.as_mut(), || forget_flood(flood))
        };
        self.release_if(settled);
        if let Err(e) = self.sink.tick() {
            error!(error = %e, "audit store upkeep failed");
        }
    }

    /// Gives the ring space of the events handled so far back to the program once they are
    /// `settled` (their records in the journal file, their flows in the file of open flows).
    /// Not before: a kill leaves them in the pinned ring for the next agent. While the disk
    /// refuses records the ring fills, and the program counts what it cannot write there.
    /// Two settles that succeed keep less: one whose ledger commit waits (its updates held
    /// in memory until they fit the map), and one within 30 s of a failed write of the file
    /// of open flows (the file is rewritten whole then); a kill there loses what the ring
    /// gave back, as before this reader.
    fn release_if(&mut self, settled: bool) {
        if let Some(end) = self.unreleased.filter(|_| settled) {
            self.release.up_to(end);
            self.unreleased = None;
        }
    }

    /// Writes the summaries of the flood window that ended (and starts the next).
    fn take_flood(&mut self) {
        if let Some(flood) = &mut self.flood {
            let taken = flood.take();
            self.summarise(taken);
        }
    }

    /// Writes the summaries an agent killed between its take and their write left in the
    /// pinned program's maps, before anything else of the flood maps is read.
    fn write_left_flood(&mut self) {
        if let Some(flood) = &mut self.flood {
            let left = flood.take_left();
            if left.as_ref().is_ok_and(|l| !l.is_empty()) {
                warn!("writing the flood summaries of the previous agent's last window, taken but not written when it stopped");
            }
            self.summarise(left);
            let flood = &mut self.flood;
            self.sweeper
                .settle_and(self.sink.as_mut(), || forget_flood(flood));
        }
    }

    /// Writes the summary records of what a take read and adds them to `status`.
    fn summarise(&mut self, taken: std::io::Result<Vec<crate::sweeper::flood::RuleFlood>>) {
        match taken {
            Ok(taken) => {
                let names = self.rules.as_ref();
                self.sweeper.summarise(&taken, self.sink.as_mut(), names);
                self.flood_status.add(&taken, |id| rule_text(names, id));
            }
            Err(e) => error!(error = %e, "taking the flood summaries failed"),
        }
    }

    /// Rewrites the status snapshot; a failure is logged, never fatal.
    fn write_status(&mut self, pipeline: PipelineStats) {
        self.write_snapshot(pipeline, true);
    }

    /// Reads the program's counters before a walk of the table (a sweep's, or the stop's):
    /// each start lost by then is in the table or evicted unseen, which the walk counts
    /// (`Sweeper::note_lost_starts`). The snapshot after the walk shows these same figures,
    /// so the next agent counts losses from exactly where this one did: read again after
    /// the walk, the starts lost during it were counted by no agent (a stop under a flood
    /// walks for seconds).
    fn read_counters(&mut self) {
        let s = &mut self.status;
        // Counters that cannot be read (out of descriptors, say) leave the last ones read in
        // the snapshot: the rest of the status, and the alerts it feeds (a store that cannot
        // rotate its journal for the same reason), must not go quiet with them.
        match crate::stats::read(&s.stats) {
            Ok(c) => {
                s.counters = c
                    .into_iter()
                    .map(|(c, n)| (c.name().to_owned(), n))
                    .collect();
                let lost = s.counters.get(Counter::LostFlowStart.name()).copied();
                if let Some(n) = lost {
                    self.sweeper.note_lost_starts(n);
                }
            }
            Err(e) => {
                if let Some(n) = s.unread.hit(1) {
                    warn!(error = %e, times = n, "cannot read the program counters; the status keeps the last ones read (said at most once a minute)");
                }
            }
        }
    }

    /// Writes the status snapshot (and, if `observe`, hands it to the alert thread and the
    /// metrics), with the counters read before the last walk.
    fn write_snapshot(&mut self, pipeline: PipelineStats, observe: bool) {
        let s = &mut self.status;
        let counters: BTreeMap<String, u64> = s.counters.clone();
        if let Some(hits) = s.lists.try_hits(self.rules.id_bound()) {
            s.hits = hits;
        }
        let mut snap = Snapshot::new(
            s.interfaces.clone(),
            counters,
            &self.rules,
            s.lists.generation(),
            &s.hits,
        );
        snap.flows = self.sweeper.stats;
        snap.unaudited = s.unaudited.clone();
        snap.flood = self.flood_status.clone();
        snap.store = self.sink.store_status().unwrap_or_default();
        snap.enrich = self.sink.enrich_status();
        snap.ship = s.ship.as_ref().map(|h| h.status());
        snap.syslog = self.sink.syslog_status();
        snap.pipeline = pipeline;
        snap.clock = self.sweeper.clock().stats().clone();
        snap.observe = self.observed();
        let s = &mut self.status;
        snap.alerts = s.alerts.as_ref().map(|a| a.status());
        if let Err(e) = snap.write(&s.dir) {
            if let Some(n) = s.unwritten.hit(1) {
                warn!(error = %e, dir = %s.dir.display(), times = n, "cannot write the status snapshot (said at most once a minute)");
            }
            // The alert thread raises it: the agent runs on, degraded, and says so.
            snap.observe.state_unwritable = true;
        }
        if !observe {
            return;
        }
        // Not to the alerts before the counters were read once: the alert thread would take
        // the empty ones for the program's base and alert all it ever lost at the first read.
        if let Some(a) = s.alerts.as_ref().filter(|_| !snap.counters.is_empty()) {
            a.observe(&snap);
        }
        if let Some(p) = &s.publish {
            p.publish(snap);
        }
    }

    /// The tables' fill and the list reloads.
    fn observed(&self) -> Observed {
        let s = &self.status;
        let f = &self.sweeper.stats;
        let fill = [("ipv4", f.table_v4), ("ipv6", f.table_v6)];
        Observed {
            flow_tables: fill
                .iter()
                .zip(s.table_capacities)
                .map(|(&(family, entries), capacity)| TableFill {
                    family: family.to_owned(),
                    entries,
                    capacity,
                })
                .collect(),
            ring: {
                let (used_bytes, size_bytes) = self.release.fill();
                RingFillStats {
                    used_bytes,
                    size_bytes,
                }
            },
            list_reloads: s.lists.reloads(),
            state_unwritable: false,
        }
    }

    /// Writes every flow left (the program is detached) or hands the open ones over (it
    /// stays attached), and closes the sink.
    fn finish(mut self, pipeline: PipelineStats) -> Result<Summary, DaemonError> {
        // The flood summaries since the last sweep (a take reads the window the program
        // was filling; a program left attached fills the next, which the next agent reads),
        // written and their slots cleared before the walk: one of its settles, every 1,024
        // records, would write them, and a kill in the walk would leave them to be written
        // again.
        self.take_flood();
        let flood = &mut self.flood;
        self.sweeper
            .settle_and(self.sink.as_mut(), || forget_flood(flood));
        // The walk below counts the starts lost since the last sweep as a sweep does: at a
        // stop under a flood they were counted by no agent (108,502 flows in one campaign run).
        self.read_counters();
        let table = self.flows.table();
        let (sink, names) = (self.sink.as_mut(), self.rules.as_ref());
        let written = match &self.hand_over {
            Some(clocks) => {
                let now = clocks.monotonic_ns();
                self.sweeper.hand_over(table, sink, names, now)
            }
            None => self.sweeper.flush(table, sink, names),
        };
        // What was written goes to the file and the ledger follows, even if the walk failed
        // part way.
        self.sweeper.settle(sink);
        written.map_err(DaemonError::Flush)?;
        // `status` of a stopped agent shows what it wrote to the end.
        self.write_status(pipeline);
        let closed = self.sink.close();
        if closed.is_ok() {
            // Everything is durable now, also what a full disk held in memory until the
            // close: the ledger, the flood slots and a replaced layout's pins follow, or the
            // next agent would write it again.
            self.sweeper.commit_ledger();
            self.sweeper.stopped_cleanly();
            forget_flood(&mut self.flood);
            self.unpin_retired();
            self.release_if(true);
        }
        // Once more after the close (failed or not): the alert thread has counted the last
        // blocked records and the live journal is sealed. Not observed: nothing is raised
        // after the last anchor.
        self.write_snapshot(pipeline, false);
        match closed {
            // Nothing lost: the ledger stays as it was, and the next agent writes them.
            Err(e @ SinkError::Kept { .. }) => warn!("{e}"),
            closed => closed.map_err(DaemonError::Close)?,
        }
        Ok(Summary {
            flows: self.sweeper.stats,
            store: self.sink.store_status(),
            pipeline,
            clock: self.sweeper.clock().stats().clone(),
            counters: crate::stats::read(&self.status.stats).ok(),
        })
    }
}

/// Clears the flood slots whose summaries are written (see `Sweeper::settle_and`).
fn forget_flood(flood: &mut Option<FloodMaps>) {
    if let Some(Err(e)) = flood.as_mut().map(FloodMaps::forget_taken) {
        error!(error = %e, "clearing the written flood summaries failed; a kill now would have the next agent write them again");
    }
}
