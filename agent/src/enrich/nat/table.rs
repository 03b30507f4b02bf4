//! The timeline of NAT mappings: every conntrack session with its validity window, looked up
//! by the inside tuple (the flow join) or by the outside address and port (the lawful query).
//!
//! Sessions live in a slab; two hash maps point at the newest session of each inside key and
//! each outside key, and sessions sharing a key are chained (a tuple reused after its entry
//! died, several ICMP echo ids between the same hosts). A lookup is one hash probe and a walk
//! of a chain that is almost always one long, over the compact lines of [`super::index`]
//! rather than the slab.
//!
//! Memory is bounded: a closed session is handed out once by [`NatTable::take_closed`] (for
//! a NAT record) and leaves the table [`TableConfig::linger_ns`] after it closed, so late flow
//! records can still join it. Past [`TableConfig::max_sessions`] the oldest closed sessions are
//! evicted early, and every eviction is counted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

pub mod carry;

use super::index::{Hot, Index, NIL};
use super::parse::{CtEntry, CtKind, CtMessage, CtStatus, CtTuple, L4};
use crate::enrich::Validity;

/// How soon after a flow's start the session holding it may end for the flow to be taken as
/// the tuple's reuse that ended it ([`NatTable::join`]): netfilter handles a packet micro- to
/// milliseconds after XDP stamps it.
pub const REUSED_TUPLE_NS: i64 = 100_000_000;

/// What identifies a flow on the inside: the original tuple in the flow record's terms
/// (for ICMP the type and code stand in for ports, as in [`crate::record::FlowRecord`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InsideKey {
    /// IP protocol number.
    pub proto: u8,
    /// Inside (originator) address.
    pub src: IpAddr,
    /// Inside port (ICMP: type).
    pub src_port: u16,
    /// Remote address as the originator addressed it.
    pub dst: IpAddr,
    /// Remote port (ICMP: code).
    pub dst_port: u16,
}

impl InsideKey {
    /// The key of a conntrack original tuple.
    pub fn of_tuple(t: &CtTuple) -> Self {
        let (src_port, dst_port) = match t.l4 {
            L4::Ports { src, dst } => (src, dst),
            L4::Icmp { ty, code, .. } => (u16::from(ty), u16::from(code)),
            L4::None => (0, 0),
        };
        Self {
            proto: t.proto,
            src: t.src,
            src_port,
            dst: t.dst,
            dst_port,
        }
    }
}

/// What identifies a session on the outside: protocol, translated source address and port
/// (for ICMP the translated echo identifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutsideKey {
    /// IP protocol number.
    pub proto: u8,
    /// Outside address.
    pub addr: IpAddr,
    /// Outside port or ICMP identifier.
    pub port: u16,
}

/// How the table learned of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Learned {
    /// From its new event.
    Event,
    /// From a dump: the entry existed when the listener started.
    StartDump,
    /// From a dump after events were lost: its new event was among them.
    Recovered,
    /// From a destroy event alone: its new event was lost and it died before a dump.
    DestroyOnly,
    /// From the last agent's save: no flow record had joined it ([`carry`]).
    Carried,
}

/// Why a session's window closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Closed {
    /// Its destroy event: the end is the kernel's stop timestamp, or the receive time.
    Destroyed,
    /// It was missing from a dump: it died before the dump ended, which is the end written
    /// (an upper bound).
    MissingFromDump,
    /// Its conntrack id came back with another tuple, so its destroy event was lost; the end
    /// is the new entry's start (an upper bound).
    Replaced,
}

/// One NAT session: what conntrack said about it and when it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatSession {
    /// The entry as last reported (a destroy event carries the final counters).
    pub entry: CtEntry,
    /// When the mapping held: `from` is the kernel's start timestamp once a destroy event or
    /// a dump carried it, until then when the agent received the new event; `to` is `None`
    /// while open.
    pub window: Validity,
    /// Whether `window.from` is the kernel's start timestamp.
    pub start_exact: bool,
    /// How the session was learned.
    pub learned: Learned,
    /// Why it closed, once it has.
    pub closed: Option<Closed>,
    /// Whether a flow record joined it ([`NatTable::join`]) by the time it was handed out:
    /// then the flow's record carries its outside tuple and it needs no NAT record.
    pub joined: bool,
}

impl NatSession {
    /// Takes a later report of the same entry. New events carry no timestamp (the kernel
    /// sends `CTA_TIMESTAMP` only with destroy events and dumps), so the start learned from
    /// the receive time is replaced by the kernel's when one arrives.
    fn refresh(&mut self, e: CtEntry) {
        if let Some(start) = e.start_ns {
            self.window.from = Some(start);
            self.start_exact = true;
        }
        self.entry = e;
    }

    /// Where the flow join takes the session to begin: its start, except for an entry the
    /// start's dump listed without a timestamp (they were off until the agent turned them
    /// on), which began at some time before the agent: flows that began before it too
    /// (adopted from the pinned table) join it.
    fn join_from(&self) -> i64 {
        if self.learned == Learned::StartDump && !self.start_exact {
            return i64::MIN;
        }
        self.window.from.unwrap_or(i64::MIN)
    }

    /// The inside key (original tuple).
    pub fn inside(&self) -> InsideKey {
        InsideKey::of_tuple(&self.entry.orig)
    }

    /// The outside key: the reply tuple's destination, i.e. the translated source.
    pub fn outside(&self) -> OutsideKey {
        OutsideKey {
            proto: self.entry.reply.proto,
            addr: self.entry.reply.dst,
            port: self.entry.reply.dst_port(),
        }
    }

    /// Whether the source was translated (address or port differ between inside and outside).
    pub fn translated(&self) -> bool {
        let o = &self.entry.orig;
        self.entry.status.src_nat()
            || self.entry.reply.dst != o.src
            || self.entry.reply.dst_port() != o.src_port()
    }
}

/// Table limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// How long a closed session stays for lookups after its end, in nanoseconds. Must
    /// exceed the delay between a flow's start and its last record's write (inactive timeout
    /// plus a sweep), or late records find no mapping.
    pub linger_ns: i64,
    /// A flow may start this long before the session's start and still join it: XDP sees a
    /// flow's first packet before conntrack confirms its entry, and the two clocks differ.
    pub start_slack_ns: i64,
    /// Most sessions held (open and closed); past it, closed sessions are evicted oldest first.
    pub max_sessions: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            linger_ns: 120_000_000_000,
            start_slack_ns: 2_000_000_000,
            max_sessions: 524_288,
        }
    }
}

/// What the table did, for `status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Sessions inserted, by any route.
    pub inserted: u64,
    /// Sessions learned from a dump after a loss, or from a periodic dump.
    pub recovered: u64,
    /// Of those, sessions whose new event came after the dump: read late, not lost.
    pub dump_before_new: u64,
    /// Destroy events for sessions never seen, inserted closed.
    pub destroy_only: u64,
    /// Sessions closed because a dump no longer listed them.
    pub closed_missing: u64,
    /// Of those, sessions whose destroy event came after the dump with a stop time before the
    /// dump's end: the entry had died and the dump ran before its event was read. The rest
    /// lost their destroy event, or were closed alive.
    pub dump_before_destroy: u64,
    /// Sessions closed because their id came back with another tuple.
    pub closed_replaced: u64,
    /// Closed sessions handed out for NAT records.
    pub handed_out: u64,
    /// Sessions that left after their linger.
    pub expired: u64,
    /// Closed sessions evicted before their linger ended (table full): late flows miss them.
    pub evicted_early: u64,
    /// Closed sessions evicted before they were handed out: their NAT record is lost.
    pub evicted_unwritten: u64,
    /// New sessions refused because every slot held an open session.
    pub refused_full: u64,
    /// Sessions the last agent saved that conntrack no longer held ([`carry`]).
    pub carried: u64,
}

/// An input to the table, in the order the listener produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatUpdate {
    /// A conntrack message (event or dump entry) received at `seen_ns` (Unix nanoseconds).
    Message {
        /// The message.
        msg: CtMessage,
        /// When the agent received it.
        seen_ns: i64,
    },
    /// A dump begins: entries follow as [`CtKind::Dumped`] messages.
    DumpBegin {
        /// When the dump request was sent.
        at_ns: i64,
        /// Why the table is dumped.
        reason: DumpReason,
    },
    /// The dump is complete: open sessions it did not list are closed at `at_ns`.
    DumpEnd {
        /// When the last dump message arrived.
        at_ns: i64,
    },
    /// The dump failed part way: nothing is closed on its account.
    DumpAborted,
}

/// Why the listener dumps the conntrack table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DumpReason {
    /// At start, to learn the sessions that already exist.
    Start,
    /// After the event socket lost messages (ENOBUFS).
    Loss,
    /// Periodically, to close sessions whose destroy event never comes (entries created
    /// while no listener was subscribed carry no event cache).
    Periodic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// Closed, waiting for [`NatTable::take_closed`].
    Unwritten,
    /// Closed and handed out, waiting for its linger to pass.
    Written,
    Free,
}

#[derive(Clone, Debug)]
struct Slot {
    session: NatSession,
    state: State,
    /// Bumped when the slot is freed, so stale queue entries are recognised.
    generation: u32,
    /// Dump epoch in which the session was last listed or (re)learned.
    seen_epoch: u32,
}

#[derive(Clone, Copy, Debug)]
struct Dump {
    epoch: u32,
    begin_ns: i64,
    reason: DumpReason,
}

/// The NAT timeline. Single-threaded: the owner applies [`NatUpdate`]s in order and looks up
/// between them.
#[derive(Debug)]
pub struct NatTable {
    config: TableConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: Index,
    /// Open sessions by conntrack id.
    live: HashMap<u32, u32>,
    unwritten: VecDeque<(u32, u32)>,
    written: VecDeque<(u32, u32)>,
    epoch: u32,
    dump: Option<Dump>,
    stats: TableStats,
    /// Sessions a flow record joined under the last agent ([`NatTable::expect_joined`]),
    /// by conntrack id and inside key: marked joined when this table learns them.
    joined_before: HashSet<(u32, InsideKey)>,
    /// Whether the start's dump has ended: a carried session it did not list is gone.
    start_dumped: bool,
}

impl NatTable {
    /// An empty table.
    pub fn new(config: TableConfig) -> Self {
        Self {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            index: Index::default(),
            live: HashMap::new(),
            unwritten: VecDeque::new(),
            written: VecDeque::new(),
            epoch: 0,
            dump: None,
            stats: TableStats::default(),
            joined_before: HashSet::new(),
            start_dumped: false,
        }
    }

    /// The sessions not yet handed out that a flow record joined, by conntrack id and inside
    /// key: what the next agent needs to write no NAT record for them.
    pub fn joined_sessions(&self) -> impl Iterator<Item = (u32, InsideKey)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, slot)| {
            let pending = matches!(slot.state, State::Open | State::Unwritten);
            (pending && self.index.hot(i as u32).joined)
                .then(|| (slot.session.entry.id, slot.session.inside()))
        })
    }

    /// Sessions a flow record joined under the last agent ([`NatTable::joined_sessions`]):
    /// each is marked joined when learned (the start dump lists it, or its destroy event
    /// comes), or now if it is here already, so its close writes no NAT record beside the
    /// flow record that carries its outside tuple.
    pub fn expect_joined(&mut self, sessions: impl IntoIterator<Item = (u32, InsideKey)>) {
        self.joined_before.extend(sessions);
        let here: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| matches!(slot.state, State::Open | State::Unwritten))
            .map(|(i, _)| i as u32)
            .collect();
        for i in here {
            self.mark_if_joined_before(i);
        }
    }

    /// Marks session `i` joined if the last agent's flow record joined it.
    fn mark_if_joined_before(&mut self, i: u32) {
        if self.joined_before.is_empty() {
            return;
        }
        let s = &self.slots[i as usize].session;
        if self.joined_before.remove(&(s.entry.id, s.inside())) {
            self.index.hot_mut(i).joined = true;
        }
    }

    /// Sessions held, open and closed.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether the table holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Open sessions.
    pub fn open_len(&self) -> usize {
        self.live.len()
    }

    /// What the table did so far.
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Applies one update.
    pub fn apply(&mut self, update: NatUpdate) {
        match update {
            NatUpdate::Message { msg, seen_ns } => self.message(msg, seen_ns),
            NatUpdate::DumpBegin { at_ns, reason } => {
                self.epoch = self.epoch.wrapping_add(1);
                self.dump = Some(Dump {
                    epoch: self.epoch,
                    begin_ns: at_ns,
                    reason,
                });
            }
            NatUpdate::DumpEnd { at_ns } => self.dump_end(at_ns),
            NatUpdate::DumpAborted => self.dump = None,
        }
    }

    fn message(&mut self, msg: CtMessage, seen_ns: i64) {
        let e = msg.entry;
        match msg.kind {
            CtKind::New | CtKind::Update | CtKind::Dumped => {
                if let Some(&i) = self.live.get(&e.id) {
                    let slot = &mut self.slots[i as usize];
                    if slot.session.entry.orig == e.orig {
                        // A dump listed it before its new event was read: not a recovery.
                        if msg.kind == CtKind::New && slot.session.learned == Learned::Recovered {
                            slot.session.learned = Learned::Event;
                            self.stats.dump_before_new += 1;
                        }
                        slot.session.refresh(e);
                        slot.seen_epoch = self.epoch;
                        self.sync_window(i);
                        return;
                    }
                    // The id names another connection now: the old one's destroy was lost.
                    let end = e.start_ns.unwrap_or(seen_ns);
                    self.close(i, end, Closed::Replaced);
                    self.stats.closed_replaced += 1;
                }
                if msg.kind == CtKind::New {
                    self.close_superseded(&e, e.start_ns.unwrap_or(seen_ns));
                }
                let learned = match (msg.kind, self.dump) {
                    (CtKind::New, _) => Learned::Event,
                    (_, Some(d)) if d.reason == DumpReason::Start => Learned::StartDump,
                    _ => Learned::Recovered,
                };
                if learned == Learned::Recovered {
                    self.stats.recovered += 1;
                }
                let session = NatSession {
                    entry: e,
                    window: Validity {
                        from: Some(e.start_ns.unwrap_or(seen_ns)),
                        to: None,
                    },
                    start_exact: e.start_ns.is_some(),
                    learned,
                    closed: None,
                    joined: false,
                };
                if let Some(i) = self.insert(session, State::Open) {
                    self.live.insert(e.id, i);
                }
            }
            CtKind::Destroy => self.destroy(e, seen_ns),
        }
    }

    fn destroy(&mut self, e: CtEntry, seen_ns: i64) {
        let end = e.stop_ns.unwrap_or(seen_ns);
        if let Some(&i) = self.live.get(&e.id) {
            if self.slots[i as usize].session.entry.orig == e.orig {
                self.slots[i as usize].session.refresh(e);
                self.close(i, end, Closed::Destroyed);
                return;
            }
        }
        // Closed by a dump that ran after the entry died but before its destroy event was
        // read: the event's stop time is exact, the dump's end was a bound.
        let key = InsideKey::of_tuple(&e.orig);
        let missing = self.index.inside_chain(&key).map(|(i, _)| i).find(|&i| {
            let s = &self.slots[i as usize].session;
            s.entry.id == e.id
                && s.entry.orig == e.orig
                && s.closed == Some(Closed::MissingFromDump)
        });
        if let Some(i) = missing {
            let s = &mut self.slots[i as usize].session;
            // Only a stop before the dump's end proves the dump right; a later one means it
            // closed a live session (which a delete then ended).
            if e.stop_ns
                .zip(s.window.to)
                .is_some_and(|(stop, to)| stop <= to)
            {
                self.stats.dump_before_destroy += 1;
            }
            s.refresh(e);
            s.closed = Some(Closed::Destroyed);
            s.window.to = Some(end.max(s.window.from.unwrap_or(end)));
            self.sync_window(i);
            return;
        }
        self.stats.destroy_only += 1;
        // Without a start timestamp the window is empty: the record says the session existed
        // without claiming a time it held.
        let from = e.start_ns.unwrap_or(end).min(end);
        let session = NatSession {
            entry: e,
            window: Validity {
                from: Some(from),
                to: Some(end),
            },
            start_exact: e.start_ns.is_some(),
            learned: Learned::DestroyOnly,
            closed: Some(Closed::Destroyed),
            joined: false,
        };
        self.insert(session, State::Unwritten);
    }

    fn dump_end(&mut self, at_ns: i64) {
        let Some(dump) = self.dump.take() else {
            return;
        };
        self.start_dumped |= dump.reason == DumpReason::Start;
        let gone: Vec<u32> = self
            .live
            .values()
            .copied()
            .filter(|&i| {
                let slot = &self.slots[i as usize];
                slot.seen_epoch != dump.epoch
                    && slot.session.window.from.is_some_and(|f| f < dump.begin_ns)
            })
            .collect();
        for i in gone {
            self.close(i, at_ns, Closed::MissingFromDump);
            self.stats.closed_missing += 1;
        }
    }

    /// Closes the open sessions a new connection on the same original tuple (and zone)
    /// replaces: conntrack holds one entry per tuple, so their destroy was lost (a full
    /// socket buffer), and left open they would still hold the new flows' start. Not for
    /// ICMP, whose echo identifier the inside key lacks (several are open at once), nor for
    /// a UDP clash loser.
    fn close_superseded(&mut self, e: &CtEntry, at_ns: i64) {
        // A clash loser shares its tuple with a live winner: the one exception to one entry
        // per tuple.
        if !matches!(e.orig.l4, L4::Ports { .. }) || e.status.0 & CtStatus::NAT_CLASH != 0 {
            return;
        }
        let key = InsideKey::of_tuple(&e.orig);
        let stale: Vec<u32> = self
            .index
            .inside_chain(&key)
            .filter(|(_, h)| h.to == i64::MAX)
            .map(|(i, _)| i)
            .filter(|&i| {
                let old = &self.slots[i as usize].session.entry;
                old.id != e.id && old.zone == e.zone && old.orig == e.orig
            })
            .collect();
        for i in stale {
            self.close(i, at_ns, Closed::Replaced);
            self.stats.closed_replaced += 1;
        }
    }

    /// Closes open session `i` at `end_ns`.
    fn close(&mut self, i: u32, end_ns: i64, why: Closed) {
        let slot = &mut self.slots[i as usize];
        let s = &mut slot.session;
        // A window never ends before it starts, whatever the clocks said.
        s.window.to = Some(end_ns.max(s.window.from.unwrap_or(end_ns)));
        s.closed = Some(why);
        slot.state = State::Unwritten;
        self.live.remove(&s.entry.id);
        self.unwritten.push_back((i, slot.generation));
        self.sync_window(i);
    }

    /// Copies session `i`'s window into its hot line.
    fn sync_window(&mut self, i: u32) {
        let s = &self.slots[i as usize].session;
        let (from, to) = (s.join_from(), s.window.to.unwrap_or(i64::MAX));
        let hot = self.index.hot_mut(i);
        hot.from = from;
        hot.to = to;
    }

    /// Inserts a session as the newest of its keys; `None` if the table is full of open
    /// sessions.
    fn insert(&mut self, session: NatSession, state: State) -> Option<u32> {
        if self.len() >= self.config.max_sessions && !self.evict_one() {
            self.stats.refused_full += 1;
            return None;
        }
        self.stats.inserted += 1;
        let hot = Hot {
            from: session.join_from(),
            to: session.window.to.unwrap_or(i64::MAX),
            next_inside: NIL,
            next_outside: NIL,
            prev_inside: NIL,
            prev_outside: NIL,
            outside: session.outside(),
            translated: session.translated(),
            joined: false,
        };
        let inside = session.inside();
        let i = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.session = session;
                slot.state = state;
                slot.seen_epoch = self.epoch;
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).ok().filter(|&i| i != NIL)?;
                self.slots.push(Slot {
                    session,
                    state,
                    generation: 0,
                    seen_epoch: self.epoch,
                });
                i
            }
        };
        self.index.link(i, inside, hot);
        self.mark_if_joined_before(i);
        if state == State::Unwritten {
            self.unwritten
                .push_back((i, self.slots[i as usize].generation));
        }
        Some(i)
    }

    /// Frees the oldest closed session to make room: a written one if any, else an unwritten
    /// one (its NAT record is lost). False if every session is open.
    fn evict_one(&mut self) -> bool {
        while let Some((i, generation)) = self.written.pop_front() {
            if self.is_current(i, generation, State::Written) {
                self.remove(i);
                self.stats.evicted_early += 1;
                return true;
            }
        }
        while let Some((i, generation)) = self.unwritten.pop_front() {
            if self.is_current(i, generation, State::Unwritten) {
                self.remove(i);
                self.stats.evicted_unwritten += 1;
                return true;
            }
        }
        false
    }

    fn is_current(&self, i: u32, generation: u32, state: State) -> bool {
        self.slots
            .get(i as usize)
            .is_some_and(|s| s.generation == generation && s.state == state)
    }

    /// Unlinks closed session `i` from its chains and frees its slot.
    fn remove(&mut self, i: u32) {
        let inside = self.slots[i as usize].session.inside();
        self.index.unlink(i, inside);
        let slot = &mut self.slots[i as usize];
        slot.state = State::Free;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(i);
    }

    /// Closed sessions not yet handed out whose window ended before `ended_before_ns`, oldest
    /// close first; each is handed out once, with whether a flow record joined it
    /// ([`NatSession::joined`]), for the NAT records of sessions no flow joined. Ask for those
    /// that ended longer ago than a flow's last record can take to be written, so the flow's
    /// join comes first. They stay for lookups until their linger passes.
    pub fn take_closed(&mut self, ended_before_ns: i64) -> impl Iterator<Item = NatSession> + '_ {
        std::iter::from_fn(move || loop {
            let &(i, generation) = self.unwritten.front()?;
            if !self.is_current(i, generation, State::Unwritten) {
                self.unwritten.pop_front();
                continue;
            }
            if self.index.hot(i).to >= ended_before_ns {
                return None;
            }
            self.unwritten.pop_front();
            let joined = self.index.hot(i).joined;
            let slot = &mut self.slots[i as usize];
            slot.state = State::Written;
            slot.session.joined = joined;
            self.written.push_back((i, generation));
            self.stats.handed_out += 1;
            return Some(slot.session);
        })
    }

    /// Removes handed-out sessions that closed more than the linger before `now_ns`; returns
    /// how many left.
    pub fn expire(&mut self, now_ns: i64) -> usize {
        let mut n = 0;
        while let Some(&(i, generation)) = self.written.front() {
            if !self.is_current(i, generation, State::Written) {
                self.written.pop_front();
                continue;
            }
            let end = self.slots[i as usize].session.window.to.unwrap_or(i64::MAX);
            if end.saturating_add(self.config.linger_ns) > now_ns {
                break;
            }
            self.written.pop_front();
            self.remove(i);
            n += 1;
        }
        self.stats.expired += n as u64;
        n
    }

    /// The open sessions, in no particular order (for NAT records at shutdown and `status`).
    pub fn open_sessions(&self) -> impl Iterator<Item = &NatSession> + '_ {
        self.live.values().map(|&i| &self.slots[i as usize].session)
    }

    /// The session a flow with inside key `key` that started at `t_ns` belongs to: the
    /// latest-starting session whose window holds `t_ns`, else the earliest one starting
    /// within [`TableConfig::start_slack_ns`] after it. `None`: no conntrack entry covers the
    /// flow, so it has no outside tuple.
    pub fn lookup_inside(&self, key: &InsideKey, t_ns: i64) -> Option<&NatSession> {
        self.find_inside(key, t_ns)
            .map(|i| &self.slots[i as usize].session)
    }

    /// The flow join: the outside tuple of the session [`NatTable::lookup_inside`] finds, if
    /// its source was translated, and the session marked as joined (it then needs no NAT
    /// record). Reads only the hot index.
    #[inline]
    pub fn join(&mut self, key: &InsideKey, t_ns: i64) -> Option<OutsideKey> {
        let i = self.find_inside(key, t_ns)?;
        let hot = self.index.hot_mut(i);
        hot.joined = true;
        hot.translated.then_some(hot.outside)
    }

    #[inline]
    fn find_inside(&self, key: &InsideKey, t_ns: i64) -> Option<u32> {
        let slack = self.config.start_slack_ns;
        let mut holding: Option<(u32, i64, i64)> = None;
        let mut soon: Option<(u32, i64)> = None;
        for (i, h) in self.index.inside_chain(key) {
            if h.contains(t_ns) {
                if holding.is_none_or(|(_, from, _)| h.from > from) {
                    holding = Some((i, h.from, h.to));
                }
            } else if h.to > h.from
                && h.from > t_ns
                && h.from - t_ns <= slack
                && soon.is_none_or(|(_, from)| h.from < from)
            {
                soon = Some((i, h.from));
            }
        }
        match (holding, soon) {
            // The session holding the flow's start ended just after it, and the next on the
            // same tuple began once it had: a reused tuple whose SYN ended the old entry
            // (conntrack stamps both a little after XDP saw the SYN).
            (Some((_, _, to)), Some((next, from)))
                if to <= from && to.saturating_sub(t_ns) <= REUSED_TUPLE_NS =>
            {
                Some(next)
            }
            (holding, soon) => holding.map(|(i, ..)| i).or(soon.map(|(i, _)| i)),
        }
    }

    /// The sessions that held outside address and port `key` at `t_ns`, or began within
    /// [`TableConfig::start_slack_ns`] after it (several when one outside port serves several
    /// remote endpoints). A session's start is when the agent heard of it, which can come
    /// after the packets XDP saw (a DNS answer back through the NAT found no session then,
    /// and its name went to the gateway's address instead of the client's).
    pub fn lookup_outside(
        &self,
        key: &OutsideKey,
        t_ns: i64,
    ) -> impl Iterator<Item = &NatSession> + '_ {
        let slack = self.config.start_slack_ns;
        self.index
            .outside_chain(key)
            .filter(move |(_, h)| {
                h.contains(t_ns) || (h.to > h.from && h.from > t_ns && h.from - t_ns <= slack)
            })
            .map(|(i, _)| &self.slots[i as usize].session)
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
