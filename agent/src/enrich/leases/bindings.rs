//! The MAC <-> IP <-> hostname timeline every lease source feeds, asked "who held this address
//! at that instant".
//!
//! Per address, a list of spans ordered by start, none overlapping: the holder (MAC, client
//! id), the host name, and the window. The rules (a test replays random server histories
//! against them):
//! - An observation of the same holder that overlaps or touches one of its spans extends it
//!   (a renewal); the newest host name wins.
//! - Spans of different holders never overlap: where they would, the one that starts later
//!   wins (a server hands an address to a new client only after the old one let it go), in
//!   whichever order the two were observed.
//! - A span starts where its source says (a DHCP ACK's time, Kea's last transaction) or, when
//!   the source does not say (dnsmasq's file), when the agent first saw it: a flow from before
//!   that is not attributed to a lease it cannot be sure of.
//! - A span ends at its expiry, at a release or decline, or, for a file rewritten whole
//!   (dnsmasq's), when its lease disappears from the file (at the time the agent noticed).
//!   Kea writes every end as a row and its lease file cleanup starts a new file with only the
//!   leases changed since, so a Kea lease missing from a read goes on ([`Ending`]).
//!
//! History is kept because lease files are rewritten while records about the past are still
//! being written (a record's window starts up to an active timeout earlier): spans that ended
//! more than [`Limits::max_age_ns`] ago are pruned, and each address keeps at most
//! [`Limits::max_spans`]. Owned by the enrich stage (no locks): file parsing happens off that
//! task, applying the parsed file is cheap.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use smallvec::SmallVec;

use crate::enrich::Validity;
use crate::record::Mac;

use super::{Ending, Lease, LeaseState};

/// Where a binding was learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A lease file: its index in the configured list.
    LeaseFile(u32),
    /// A DHCP packet seen on an audited interface.
    Packet,
}

/// Who holds an address: the MAC when known, else the client id (or DUID).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Holder {
    /// The client's MAC.
    pub mac: Option<Mac>,
    /// DHCPv4 client id or DHCPv6 DUID.
    pub client_id: Option<Arc<[u8]>>,
}

impl Holder {
    /// Whether no client is named: no MAC and no client id (Kea's declined rows clear both;
    /// a declined DHCPv6 lease keeps a DUID of one zero byte).
    pub fn anonymous(&self) -> bool {
        self.mac.is_none() && self.client_id.as_deref().is_none_or(|id| id == [0])
    }

    /// Whether two holders are the same client: by MAC when both have one, else by client id.
    pub fn same(&self, other: &Holder) -> bool {
        match (self.mac, other.mac) {
            (Some(a), Some(b)) => a == b,
            _ => self.client_id == other.client_id,
        }
    }
}

/// One binding of an address to a holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// Who.
    pub holder: Holder,
    /// The host name the client gave or the server assigned.
    pub hostname: Option<Arc<str>>,
    /// When; `from` is always set, `to` is `None` for an infinite lease.
    pub valid: Validity,
    /// Where it was learned (the latest source that confirmed it).
    pub source: Source,
}

fn lo(v: &Validity) -> i64 {
    v.from.unwrap_or(i64::MIN)
}

fn hi(v: &Validity) -> i64 {
    v.to.unwrap_or(i64::MAX)
}

/// Whether `span` is `holder`'s and overlaps or touches `from..to`: a new span of the holder
/// there merges into it.
fn merges(span: &Span, holder: &Holder, from: i64, to: i64) -> bool {
    span.holder.same(holder) && lo(&span.valid) <= to && from <= hi(&span.valid)
}

/// A binding learned: from a lease row or a DHCP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The address.
    pub ip: IpAddr,
    /// Who.
    pub holder: Holder,
    /// Host name, if the source gave one.
    pub hostname: Option<Arc<str>>,
    /// The window; `from: None` means "not stated": the observation time is used.
    pub valid: Validity,
    /// Where from.
    pub source: Source,
}

/// Bounds on what the timeline keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Spans kept per address (the oldest go first).
    pub max_spans: usize,
    /// Addresses kept; observations of new addresses past it are counted and dropped.
    pub max_addresses: usize,
    /// Spans kept in all: past it, an observation that would add one is counted and
    /// dropped (forged ACKs handing each address to a new holder would otherwise reach
    /// `max_addresses` times `max_spans`).
    pub max_spans_total: usize,
    /// How long an ended span is kept, in ns.
    pub max_age_ns: i64,
    /// Addresses remembered per MAC (for the IPv6-by-MAC lookup).
    pub max_addrs_per_mac: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_spans: 16,
            max_addresses: 1_000_000,
            max_spans_total: 2_000_000,
            max_age_ns: 24 * 3600 * 1_000_000_000,
            max_addrs_per_mac: 8,
        }
    }
}

/// What the timeline did, for `status` and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingCounters {
    /// Observations taken.
    pub observed: u64,
    /// Bindings ended by a release, a decline or a lease leaving a file rewritten whole.
    pub ended: u64,
    /// Observations dropped because [`Limits::max_addresses`] was reached.
    pub dropped_full: u64,
    /// Spans pruned for age or count.
    pub pruned: u64,
}

/// What one lease file held at its last read.
#[derive(Default)]
struct FileState {
    rows: Vec<Lease>,
    present: HashMap<IpAddr, Holder>,
    /// How the file ends a lease, as its last read said; `None` before a first read (the
    /// state then holds only spans taken back, waiting for that read to check them).
    ending: Option<Ending>,
    /// Reads in a row that skipped lines, up to the last.
    gap_reads: u32,
}

/// Reads in a row with skipped lines that end no lease by absence; past them, the skipped
/// lines are taken as lasting damage and absence ends leases again (a file with one bad line
/// for good would otherwise keep every lease that left it).
const GAP_READS: u32 = 3;

/// An address's spans, by start. Most addresses have one, kept inline so a lookup reads the
/// hash table's entry and nothing else.
type Spans = SmallVec<[Span; 1]>;

/// The timeline; see the module docs.
#[derive(Default)]
pub struct Bindings {
    // foldhash, not SipHash: the join looks an address up for every record, and addresses
    // come from the agent's own tables, not from anyone who could aim at collisions in bulk.
    by_ip: HashMap<IpAddr, Spans, foldhash::fast::RandomState>,
    by_mac: HashMap<Mac, SmallVec<[IpAddr; 2]>, foldhash::fast::RandomState>,
    files: HashMap<u32, FileState>,
    limits: Limits,
    counters: BindingCounters,
    /// Spans held in all (see [`Limits::max_spans_total`]).
    spans_total: usize,
    /// When [`Bindings::prune`] last walked the table.
    pruned_ns: Option<i64>,
}

/// How often [`Bindings::prune`] walks the table (spans are kept a day after they end; a
/// walk of a million addresses every tick would cost the records thread a tenth of each).
const PRUNE_EVERY_NS: i64 = 60_000_000_000;

impl Bindings {
    /// An empty timeline with `limits`.
    pub fn new(limits: Limits) -> Self {
        Bindings {
            limits,
            ..Bindings::default()
        }
    }

    /// The counters.
    pub fn counters(&self) -> BindingCounters {
        self.counters
    }

    /// Addresses with at least one span.
    pub fn addresses(&self) -> usize {
        self.by_ip.len()
    }

    /// The binding of `ip` at `t_ns`.
    #[inline]
    pub fn at(&self, ip: IpAddr, t_ns: i64) -> Option<&Span> {
        self.by_ip
            .get(&ip)?
            .iter()
            .rev()
            .find(|s| s.valid.contains(t_ns))
    }

    /// [`Bindings::at`], and when `ip` last changed hands before `t_ns` (the end of the
    /// latest span another card held; `i64::MIN` if none did): what was learned of the
    /// address before then (the names its DNS answers gave) was another device's.
    #[inline]
    pub fn at_and_handed_over(&self, ip: IpAddr, t_ns: i64) -> (Option<&Span>, i64) {
        let Some(spans) = self.by_ip.get(&ip) else {
            return (None, i64::MIN);
        };
        let now = spans.iter().rev().find(|s| s.valid.contains(t_ns));
        if spans.len() < 2 {
            return (now, i64::MIN); // one holder only: the common case, on every record
        }
        let handed_over = now.map_or(i64::MIN, |now| {
            (spans.iter())
                .filter(|s| !s.holder.same(&now.holder) && hi(&s.valid) <= t_ns)
                .map(|s| hi(&s.valid))
                .max()
                .unwrap_or(i64::MIN)
        });
        (now, handed_over)
    }

    /// The latest binding of `ip` to the card `mac` that ended by `t_ns`: the card held the
    /// address before (and, sending from it now, kept it after its release).
    pub fn held_before(&self, ip: IpAddr, mac: Mac, t_ns: i64) -> Option<&Span> {
        (self.by_ip.get(&ip)?.iter())
            .filter(|s| s.holder.mac == Some(mac) && hi(&s.valid) <= t_ns)
            .max_by_key(|s| hi(&s.valid))
    }

    /// The IPv4 address `mac` held at `t_ns`, and that binding (to tie an IPv6 client without
    /// DHCPv6 to its user through its IPv4 lease).
    pub fn v4_of_mac(&self, mac: Mac, t_ns: i64) -> Option<(Ipv4Addr, &Span)> {
        self.by_mac.get(&mac)?.iter().rev().find_map(|&ip| {
            let IpAddr::V4(v4) = ip else { return None };
            self.at(ip, t_ns)
                .filter(|s| s.holder.mac == Some(mac))
                .map(|s| (v4, s))
        })
    }

    /// Every span held, by address (the stage's carry-over across a restart gives them back
    /// to [`Bindings::restore`]).
    pub fn spans(&self) -> impl Iterator<Item = (IpAddr, &Span)> {
        self.by_ip
            .iter()
            .flat_map(|(ip, spans)| spans.iter().map(move |s| (*ip, s)))
    }

    /// Takes back a span an earlier agent held ([`Bindings::spans`]). A lease file's span
    /// still open is checked against that file: against its read if one was applied already
    /// (a lease gone from a file rewritten whole ends now; a Kea lease ends by its own row or
    /// expiry), else noted as present for the first read to check.
    pub fn restore(&mut self, obs: Observation, now_ns: i64) {
        let (ip, holder, source) = (obs.ip, obs.holder.clone(), obs.source);
        let open = obs.valid.contains(now_ns);
        self.observe(obs, now_ns);
        let Source::LeaseFile(file) = source else {
            return;
        };
        if !open {
            return;
        }
        let state = self.files.entry(file).or_default();
        match state.ending {
            Some(Ending::ByRow) => {}
            Some(Ending::ByAbsence) => {
                if !state.present.get(&ip).is_some_and(|h| h.same(&holder)) {
                    self.end(ip, &holder, now_ns);
                }
            }
            None => {
                state.present.insert(ip, holder);
            }
        }
    }

    /// Takes one observation at `now_ns` (see the module docs for the rules).
    pub fn observe(&mut self, obs: Observation, now_ns: i64) {
        let from = obs.valid.from.unwrap_or(now_ns);
        let to = hi(&obs.valid);
        if to <= from {
            return; // expired before it was first seen: nothing to attribute
        }
        let held = self.by_ip.get(&obs.ip);
        // A holder's renewal merges into its span (overlapping or touching it, as below): it
        // adds none, and is never refused. One after a gap would add a span.
        let renewal =
            held.is_some_and(|spans| spans.iter().any(|s| merges(s, &obs.holder, from, to)));
        if (held.is_none() && self.by_ip.len() >= self.limits.max_addresses)
            || (self.spans_total >= self.limits.max_spans_total && !renewal)
        {
            self.counters.dropped_full += 1;
            return;
        }
        self.counters.observed += 1;
        if let Some(mac) = obs.holder.mac {
            let ips = self.by_mac.entry(mac).or_default();
            if !ips.contains(&obs.ip) {
                if ips.len() >= self.limits.max_addrs_per_mac {
                    ips.remove(0);
                }
                ips.push(obs.ip);
            }
        }
        let spans = self.by_ip.entry(obs.ip).or_default();
        let before = spans.len();
        let mut new = Span {
            holder: obs.holder,
            hostname: obs.hostname,
            valid: Validity {
                from: Some(from),
                to: obs.valid.to,
            },
            source: obs.source,
        };
        // Merge the holder's spans that overlap or touch this one.
        spans.retain(|s| {
            if !merges(s, &new.holder, lo(&new.valid), hi(&new.valid)) {
                return true;
            }
            new.valid.from = Some(lo(&s.valid).min(lo(&new.valid)));
            new.valid.to = (hi(&s.valid).max(hi(&new.valid)) != i64::MAX)
                .then(|| hi(&s.valid).max(hi(&new.valid)));
            if new.hostname.is_none() {
                new.hostname = s.hostname.clone();
            }
            new.holder.mac = new.holder.mac.or(s.holder.mac);
            if new.holder.client_id.is_none() {
                new.holder.client_id = s.holder.client_id.clone();
            }
            false
        });
        // Other holders: the later start wins the overlap.
        for s in spans.iter_mut() {
            if lo(&s.valid) < lo(&new.valid) {
                if hi(&s.valid) > lo(&new.valid) {
                    s.valid.to = new.valid.from;
                }
            } else if lo(&s.valid) < hi(&new.valid) {
                new.valid.to = s.valid.from;
            }
        }
        if lo(&new.valid) < hi(&new.valid) {
            let at = spans.partition_point(|s| lo(&s.valid) <= lo(&new.valid));
            spans.insert(at, new);
        }
        spans.retain(|s| lo(&s.valid) < hi(&s.valid));
        let excess = spans.len().saturating_sub(self.limits.max_spans);
        if excess > 0 {
            spans.drain(..excess);
            self.counters.pruned += excess as u64;
        }
        self.spans_total = self.spans_total + spans.len() - before;
    }

    /// Ends `holder`'s binding of `ip` that holds at `at_ns` (a release, a decline, a lease
    /// gone from its file). A holder with neither MAC nor client id (Kea's row of a declined
    /// address, which clears both) ends whichever binding holds: the address has no owner.
    pub fn end(&mut self, ip: IpAddr, holder: &Holder, at_ns: i64) {
        let Some(spans) = self.by_ip.get_mut(&ip) else {
            return;
        };
        let anyone = holder.anonymous();
        for s in spans.iter_mut() {
            if (anyone || s.holder.same(holder)) && s.valid.contains(at_ns) {
                s.valid.to = Some(at_ns);
                self.counters.ended += 1;
            }
        }
        let before = spans.len();
        spans.retain(|s| lo(&s.valid) < hi(&s.valid));
        self.spans_total -= before - spans.len();
    }

    /// Applies a read of a file rewritten whole (dnsmasq's): [`Bindings::apply_read`] with
    /// [`Ending::ByAbsence`].
    pub fn apply_file(
        &mut self,
        file: u32,
        leases: &[Lease],
        now_ns: i64,
        requested: impl Fn(Mac, IpAddr) -> Option<i64>,
    ) {
        self.apply_read(file, leases, Some(Ending::ByAbsence), now_ns, requested);
    }

    /// Applies a lease file read at `now_ns`. Rows already applied from the previous read (an
    /// append-only Kea file) are not applied again; a rewritten file is applied whole, which
    /// merges with what is known. `ending` says what a lease missing from the read means
    /// (`None`: as the file's last read said, else [`Ending::ByAbsence`]): ended now for a
    /// file rewritten whole, nothing for Kea's, whose cleanup leaves out every lease not
    /// changed since. A row that states no start (dnsmasq's) starts when `requested` says
    /// its holder asked for the address (a REQUEST seen on the link), else now.
    pub fn apply_read(
        &mut self,
        file: u32,
        leases: &[Lease],
        ending: Option<Ending>,
        now_ns: i64,
        requested: impl Fn(Mac, IpAddr) -> Option<i64>,
    ) {
        self.apply_read_with_gaps(file, leases, ending, false, now_ns, requested);
    }

    /// [`Bindings::apply_read`] of a read that skipped lines (`gaps`): a lease missing from
    /// it may be on a line that could not be read (a torn write, damage), so nothing ends by
    /// absence; what the last read held stays present until a read without gaps, or
    /// [`GAP_READS`] such reads in a row.
    pub fn apply_read_with_gaps(
        &mut self,
        file: u32,
        leases: &[Lease],
        ending: Option<Ending>,
        gaps: bool,
        now_ns: i64,
        requested: impl Fn(Mac, IpAddr) -> Option<i64>,
    ) {
        let state = self.files.remove(&file).unwrap_or_default();
        let gap_reads = if gaps {
            state.gap_reads.saturating_add(1)
        } else {
            0
        };
        let gaps = gaps && gap_reads <= GAP_READS;
        let ending = ending.or(state.ending).unwrap_or(Ending::ByAbsence);
        let new_rows = if leases.starts_with(&state.rows) {
            &leases[state.rows.len()..]
        } else {
            leases
        };
        for lease in new_rows {
            let holder = Holder {
                mac: lease.mac,
                client_id: lease.client_id.clone(),
            };
            match lease.state {
                LeaseState::Bound => {
                    let mut valid = lease.valid;
                    if valid.from.is_none() {
                        valid.from = lease.mac.and_then(|mac| requested(mac, lease.ip));
                    }
                    self.observe(
                        Observation {
                            ip: lease.ip,
                            holder,
                            hostname: lease.hostname.clone(),
                            valid,
                            source: Source::LeaseFile(file),
                        },
                        now_ns,
                    )
                }
                // A decline row (Kea clears its holder, and its start is the decline) ends
                // the binding at its own time: read late, or whole again after a restart,
                // it must not leave the address its last holder's up to the read. Other
                // rows state no time of the release (Kea's `expire` is then the client's
                // last request): they end at the read.
                LeaseState::Gone => {
                    let at = match lease.valid.from {
                        Some(t) if holder.anonymous() => t.min(now_ns),
                        _ => now_ns,
                    };
                    self.end(lease.ip, &holder, at)
                }
            }
        }
        let mut present = HashMap::with_capacity(leases.len());
        for lease in leases {
            let holder = Holder {
                mac: lease.mac,
                client_id: lease.client_id.clone(),
            };
            match lease.state {
                LeaseState::Bound => present.insert(lease.ip, holder),
                LeaseState::Gone => present.remove(&lease.ip),
            };
        }
        if ending == Ending::ByAbsence {
            for (ip, holder) in &state.present {
                if present.get(ip).is_none_or(|h| !h.same(holder)) {
                    if gaps {
                        present.entry(*ip).or_insert_with(|| holder.clone());
                    } else {
                        self.end(*ip, holder, now_ns);
                    }
                }
            }
        }
        self.files.insert(
            file,
            FileState {
                rows: leases.to_vec(),
                present,
                ending: Some(ending),
                gap_reads,
            },
        );
    }

    /// Drops spans that ended more than [`Limits::max_age_ns`] before `now_ns`; walks the
    /// table at most once every [`PRUNE_EVERY_NS`].
    pub fn prune(&mut self, now_ns: i64) {
        if self
            .pruned_ns
            .is_some_and(|t| t.abs_diff(now_ns) < PRUNE_EVERY_NS.unsigned_abs())
        {
            return;
        }
        self.pruned_ns = Some(now_ns);
        let horizon = now_ns.saturating_sub(self.limits.max_age_ns);
        let mut pruned = 0;
        self.by_ip.retain(|_, spans| {
            let before = spans.len();
            spans.retain(|s| hi(&s.valid) >= horizon);
            pruned += (before - spans.len()) as u64;
            !spans.is_empty()
        });
        self.counters.pruned += pruned;
        self.spans_total -= pruned as usize;
        let by_ip = &self.by_ip;
        self.by_mac.retain(|mac, ips| {
            ips.retain(|ip| {
                by_ip
                    .get(ip)
                    .is_some_and(|spans| spans.iter().any(|s| s.holder.mac == Some(*mac)))
            });
            !ips.is_empty()
        });
    }
}

#[cfg(test)]
mod tests;
