//! Subscribers: who holds an address, a range or a MAC, and when, from operator files.
//!
//! [`parse`] reads one file (CSV with a header; the format is in its docs and in
//! `docs/attribution.md`), [`SubscriberTable`] answers "whose was this at that instant" for all
//! good files together, and [`set::SubscriberSet`] keeps the last good version of every file
//! and swaps in a new table atomically when one changes.
//!
//! Precedence, for a record's address and MAC at the flow's start:
//! 1. a MAC row valid at that instant (a MAC names the device itself);
//! 2. else the narrowest address row (a single address before the range or CIDR around it)
//!    valid at that instant;
//! 3. between rows of equal width in different files, the file listed first; within one file
//!    such rows are an error the parser reports.

pub mod index;
pub mod net;
pub mod parse;
pub mod set;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::record::Mac;

use index::{IntervalIndex, Item};
pub use parse::{BadRow, Column, Entry, ParsedSubscribers, RowError, RowStats};
pub use set::{check_file, SubscriberCheck, SubscriberSet};

/// What a row matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Match {
    /// IPv4 addresses `lo..=hi` (host order): an address, CIDR or range.
    V4 {
        /// First address.
        lo: u32,
        /// Last address, inclusive.
        hi: u32,
    },
    /// IPv6 addresses `lo..=hi` (host order).
    V6 {
        /// First address.
        lo: u128,
        /// Last address, inclusive.
        hi: u128,
    },
    /// A device.
    Mac(Mac),
}

/// A MAC as a 48-bit key.
fn mac_key(mac: Mac) -> u64 {
    let m = mac.0;
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

impl Match {
    /// The kind, for sorting rows by kind: 0 IPv4, 1 IPv6, 2 MAC.
    fn family(&self) -> u8 {
        match self {
            Match::V4 { .. } => 0,
            Match::V6 { .. } => 1,
            Match::Mac(_) => 2,
        }
    }

    /// The interval covered, widened (a MAC is a one-key interval).
    fn span(&self) -> (u128, u128) {
        match *self {
            Match::V4 { lo, hi } => (lo.into(), hi.into()),
            Match::V6 { lo, hi } => (lo, hi),
            Match::Mac(m) => (mac_key(m).into(), mac_key(m).into()),
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Match::V4 { lo, hi } => net::fmt_interval(lo, hi, f),
            Match::V6 { lo, hi } => net::fmt_interval(lo, hi, f),
            Match::Mac(m) => m.fmt(f),
        }
    }
}

/// A subscriber as the records name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subscriber {
    /// The account (billing id, contract number...).
    pub account: Box<str>,
    /// A display name, if the file gives one.
    pub name: Option<Box<str>>,
}

/// How a subscriber was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedBy {
    /// By the MAC of the packet (or of the address's DHCP lease).
    Mac,
    /// By the address.
    Address,
}

/// Every good subscribers file as one lookup structure. Immutable: a reload builds a new
/// one.
#[derive(Clone, Debug, Default)]
pub struct SubscriberTable {
    v4: IntervalIndex<u32>,
    v6: IntervalIndex<u128>,
    mac: IntervalIndex<u64>,
    subscribers: Vec<Subscriber>,
    rows: usize,
}

impl SubscriberTable {
    /// Builds the table of `files`, in precedence order (the first file wins a tie).
    pub fn build<'a>(files: impl IntoIterator<Item = &'a ParsedSubscribers>) -> Self {
        let mut ids: HashMap<&Subscriber, u32> = HashMap::new();
        let mut subscribers = Vec::new();
        let (mut v4, mut v6, mut mac) = (Vec::new(), Vec::new(), Vec::new());
        let mut rows = 0;
        for (file, parsed) in files.into_iter().enumerate() {
            let file = u32::try_from(file).unwrap_or(u32::MAX);
            for e in &parsed.entries {
                rows += 1;
                let value = *ids.entry(&e.subscriber).or_insert_with(|| {
                    subscribers.push(e.subscriber.clone());
                    u32::try_from(subscribers.len() - 1).unwrap_or(u32::MAX)
                });
                let order = (file, e.line);
                let valid = e.valid;
                match e.matcher {
                    Match::V4 { lo, hi } => v4.push(Item {
                        lo,
                        hi,
                        valid,
                        order,
                        value,
                    }),
                    Match::V6 { lo, hi } => v6.push(Item {
                        lo,
                        hi,
                        valid,
                        order,
                        value,
                    }),
                    Match::Mac(m) => mac.push(Item {
                        lo: mac_key(m),
                        hi: mac_key(m),
                        valid,
                        order,
                        value,
                    }),
                }
            }
        }
        SubscriberTable {
            v4: IntervalIndex::build(&v4),
            v6: IntervalIndex::build(&v6),
            mac: IntervalIndex::build(&mac),
            subscribers,
            rows,
        }
    }

    /// The subscriber of `ip` at `t_ns` (the narrowest row valid then).
    #[inline]
    pub fn by_addr(&self, ip: IpAddr, t_ns: i64) -> Option<&Subscriber> {
        let id = match ip {
            IpAddr::V4(a) => self.v4.get(a.into(), t_ns),
            IpAddr::V6(a) => self.v6.get(a.into(), t_ns),
        }?;
        self.subscribers.get(id as usize)
    }

    /// The subscriber of the device `mac` at `t_ns`.
    #[inline]
    pub fn by_mac(&self, mac: Mac, t_ns: i64) -> Option<&Subscriber> {
        let id = self.mac.get(mac_key(mac), t_ns)?;
        self.subscribers.get(id as usize)
    }

    /// The subscriber behind `ip` seen with `mac` at `t_ns`, with the precedence of the
    /// module docs: a MAC row first, then the narrowest address row.
    #[inline]
    pub fn account_at(
        &self,
        ip: IpAddr,
        mac: Option<Mac>,
        t_ns: i64,
    ) -> Option<(&Subscriber, MatchedBy)> {
        if let Some(s) = mac.and_then(|m| self.by_mac(m, t_ns)) {
            return Some((s, MatchedBy::Mac));
        }
        self.by_addr(ip, t_ns).map(|s| (s, MatchedBy::Address))
    }

    /// Rows in the table.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the table has any row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Distinct subscribers.
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }
}

#[cfg(test)]
mod tests;
