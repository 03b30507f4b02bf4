//! The translated sessions no flow record joined yet, carried across a restart: a kill
//! leaves flows the dead agent had read but not written, and if conntrack forgets their
//! sessions before the next agent's start dump (a UDP exchange, a connection closed while
//! no agent ran), nothing but this save still knows their outside tuple, and "who had
//! this outside address and port at T" found nothing.

use std::net::IpAddr;

use super::{Closed, InsideKey, Learned, NatSession, NatTable, State};
use crate::enrich::nat::parse::{CtEntry, CtStatus, CtTuple, L4};
use crate::enrich::Validity;

/// Sessions saved at most: the newest, so a save stays small on a busy gateway (about 100
/// bytes each in JSON).
pub const MAX_SAVED: usize = 65_536;

/// A translated session with ports (TCP, UDP and the like) that no flow record had joined
/// when the agent saved: its inside and outside tuples and when it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedSession {
    /// Conntrack's id.
    pub id: u32,
    /// IP protocol number.
    pub proto: u8,
    /// Conntrack zone.
    pub zone: u16,
    /// Status bits.
    pub status: u32,
    /// Inside address and port.
    pub inside: (IpAddr, u16),
    /// Remote address and port.
    pub remote: (IpAddr, u16),
    /// Outside address and port.
    pub outside: (IpAddr, u16),
    /// Its start (Unix ns), and whether that is the kernel's.
    pub from_ns: i64,
    /// `from_ns` is the kernel's timestamp.
    pub exact: bool,
    /// Its end, once closed.
    pub to_ns: Option<i64>,
}

impl SavedSession {
    fn of(s: &NatSession) -> Option<Self> {
        let (o, r) = (&s.entry.orig, &s.entry.reply);
        let (L4::Ports { src, dst }, L4::Ports { dst: out_port, .. }) = (o.l4, r.l4) else {
            return None;
        };
        Some(Self {
            id: s.entry.id,
            proto: o.proto,
            zone: s.entry.zone,
            status: s.entry.status.0,
            inside: (o.src, src),
            remote: (o.dst, dst),
            outside: (r.dst, out_port),
            from_ns: s.window.from?,
            exact: s.start_exact,
            to_ns: s.window.to,
        })
    }

    fn entry(&self) -> CtEntry {
        let tuple = |src, sp, dst, dp| CtTuple {
            proto: self.proto,
            src,
            dst,
            l4: L4::Ports { src: sp, dst: dp },
        };
        CtEntry {
            id: self.id,
            orig: tuple(self.inside.0, self.inside.1, self.remote.0, self.remote.1),
            reply: tuple(self.remote.0, self.remote.1, self.outside.0, self.outside.1),
            status: CtStatus(self.status),
            zone: self.zone,
            mark: 0,
            timeout_s: None,
            start_ns: self.exact.then_some(self.from_ns),
            stop_ns: self.to_ns,
            counters_orig: None,
            counters_reply: None,
        }
    }
}

impl NatTable {
    /// The translated sessions not yet handed out that no flow record joined, newest last,
    /// at most [`MAX_SAVED`]: what a next agent needs should conntrack forget them first.
    pub fn unjoined_sessions(&self) -> Vec<SavedSession> {
        let mut out: Vec<SavedSession> = (self.slots.iter().enumerate())
            .filter(|(i, slot)| {
                matches!(slot.state, State::Open | State::Unwritten)
                    && !self.index.hot(*i as u32).joined
                    && slot.session.translated()
            })
            .filter_map(|(_, slot)| SavedSession::of(&slot.session))
            .collect();
        out.sort_by_key(|s| s.from_ns);
        let extra = out.len().saturating_sub(MAX_SAVED);
        out.drain(..extra);
        out
    }

    /// Takes back the sessions the last agent saved ([`NatTable::unjoined_sessions`]), as of
    /// `now_ns`. One conntrack still holds (this table has its id with the same tuple) is
    /// left to conntrack's word. One closed then is closed here as it was. One open then is
    /// open here until the start dump says otherwise: a dump that does not list it closes
    /// it at its end (an upper bound); one that already ran did not list it, and an id
    /// conntrack gave another connection since is its end too, so it is closed now.
    pub fn restore_unjoined(&mut self, saved: impl IntoIterator<Item = SavedSession>, now_ns: i64) {
        for s in saved {
            let entry = s.entry();
            // Known here, open or already closed (the start dump listed it and its destroy
            // came before this restore): conntrack's word, not the save's.
            let known =
                (self.index.inside_chain(&InsideKey::of_tuple(&entry.orig))).any(|(i, _)| {
                    let e = &self.slots[i as usize].session.entry;
                    e.id == entry.id && e.orig == entry.orig
                });
            if known {
                continue;
            }
            let holder = self.live.get(&s.id).copied();
            let closed = match s.to_ns {
                Some(to) => Some((to, Closed::Destroyed)),
                None if self.start_dumped || holder.is_some() => {
                    Some((now_ns, Closed::MissingFromDump))
                }
                None => None,
            };
            let session = NatSession {
                entry,
                window: Validity {
                    from: Some(s.from_ns),
                    to: closed.map(|(to, _)| to.max(s.from_ns)),
                },
                start_exact: s.exact,
                learned: Learned::Carried,
                closed: closed.map(|(_, why)| why),
                joined: false,
            };
            let state = if closed.is_some() {
                State::Unwritten
            } else {
                State::Open
            };
            let Some(i) = self.insert(session, state) else {
                continue;
            };
            self.stats.carried += 1;
            // A closed one is queued for its NAT record by `insert`; its id is no key of
            // `live` (another connection may hold it there).
            if closed.is_none() {
                // Not listed by a dump running now, unless it lists it from here on.
                self.slots[i as usize].seen_epoch = self.epoch.wrapping_sub(1);
                self.live.insert(s.id, i);
            }
        }
    }
}

#[cfg(test)]
#[path = "carry_tests.rs"]
mod tests;
