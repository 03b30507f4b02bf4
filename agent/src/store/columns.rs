//! The seal's column buffers: a journal is decoded straight into one vector per segment
//! column (structure of arrays), put in row order by a permutation of compact keys, and
//! encoded from there.
//!
//! Why: a seal used to decode into `Vec<FlowRecord>` (two heap strings per record), sort those
//! ~150-byte records (a cache miss per move) and then walk all of them once per column. Here
//! nothing allocates per record (interface names and rules are interned per segment,
//! addresses are kept in their 16-byte column form), the sort moves 16-byte keys, and each
//! column is gathered and encoded in one sequential pass over its own buffer.

use std::collections::HashMap;

use super::address::{ip_families, ip_from_column, ip_version};
use super::journal::{AttrView, Decoded, RecordView};
use crate::enrich::names::NameSource;
use crate::record::{EndReason, FlowRecord, Mac};

/// Dictionary id of a row without the value (no rule, no user, ...).
pub(crate) const NONE: u32 = u32::MAX;

/// Most rows a segment's buffers can put in order: row indexes and dictionary ids are `u32`
/// (half the memory of `usize` in the sort), and `u32::MAX` is the "none" id ([`NONE`]).
pub const MAX_ROWS: usize = u32::MAX as usize - 1;

/// Errors of the column buffers.
#[derive(Debug, thiserror::Error)]
pub enum ColumnsError {
    /// More rows than one segment can hold.
    #[error("{rows} records in one journal; a segment holds at most {MAX_ROWS}")]
    TooManyRows {
        /// Rows in the buffers.
        rows: usize,
    },
}

/// The distinct strings of one column, each stored once; rows hold ids into it.
#[derive(Clone, Debug, Default)]
pub struct Dict {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
    last: u32,
}

impl Dict {
    /// The id of `s` ([`NONE`] for `None`), adding it if new.
    fn intern_opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(NONE, |s| self.intern(s))
    }

    /// The id of `s`, adding it if new (one allocation per distinct string, not per row).
    fn intern(&mut self, s: &str) -> u32 {
        // Consecutive records often repeat a name (one interface carries most flows):
        // comparing with the last one skips the hash.
        if self
            .names
            .get(self.last as usize)
            .is_some_and(|n| **n == *s)
        {
            return self.last;
        }
        let id = match self.index.get(s) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.names.push(s.into());
                self.index.insert(s.into(), id);
                id
            }
        };
        self.last = id;
        id
    }

    /// Every distinct string, indexed by id.
    pub fn names(&self) -> &[Box<str>] {
        &self.names
    }

    /// The string of id `id` (`None` for [`NONE`] or an unknown id).
    pub fn get(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(|s| &**s)
    }

    /// Appends `other_ids` (ids into `other`) to `ids`, as ids into this dictionary.
    fn extend_from(&mut self, ids: &mut Vec<u32>, other: &Dict, other_ids: &[u32]) {
        let map: Vec<u32> = other.names.iter().map(|n| self.intern(n)).collect();
        ids.extend(other_ids.iter().map(|&id| match id {
            NONE => NONE,
            id => map[id as usize],
        }));
    }
}

/// One segment's records as column buffers, one vector per column of
/// [`SCHEMA`](super::segment::SCHEMA), all of the same length.
///
/// Counters are held as the `i64` Parquet stores for `INTEGER(64,false)` (the same bits as
/// the `u64`), so they are written without a conversion pass.
#[derive(Clone, Debug, Default)]
pub struct Columns {
    pub(crate) time_start: Vec<i64>,
    pub(crate) time_end: Vec<i64>,
    /// Ids into `ifaces`.
    pub(crate) iface: Vec<u32>,
    pub(crate) ifindex: Vec<u32>,
    pub(crate) vlan: Vec<Option<u16>>,
    pub(crate) vlan_inner: Vec<Option<u16>>,
    pub(crate) src_mac: Vec<[u8; 6]>,
    pub(crate) dst_mac: Vec<[u8; 6]>,
    pub(crate) proto: Vec<u8>,
    /// See [`ip_version`](super::address::ip_version).
    pub(crate) ip_version: Vec<u8>,
    pub(crate) src_ip: Vec<[u8; 16]>,
    pub(crate) src_port: Vec<u16>,
    pub(crate) dst_ip: Vec<[u8; 16]>,
    pub(crate) dst_port: Vec<u16>,
    pub(crate) packets: Vec<i64>,
    pub(crate) bytes: Vec<i64>,
    pub(crate) resp_packets: Vec<i64>,
    pub(crate) resp_bytes: Vec<i64>,
    pub(crate) tcp_flags: Vec<u8>,
    pub(crate) end_reason: Vec<EndReason>,
    pub(crate) dropped: Vec<i64>,
    /// Ids into `rules`, [`NONE`] for none.
    pub(crate) rule: Vec<u32>,
    /// Ids into `users`, [`NONE`] for none.
    pub(crate) user: Vec<u32>,
    /// Ids into `hostnames`, [`NONE`] for none.
    pub(crate) hostname: Vec<u32>,
    /// NAT addresses, 16-byte column form (all zero without one).
    pub(crate) nat_ip: Vec<[u8; 16]>,
    /// The NAT address's family: 4, 6, or 0 without an address.
    pub(crate) nat_ip_version: Vec<u8>,
    pub(crate) nat_port: Vec<Option<u16>>,
    /// Ids into `domains`, [`NONE`] for none.
    pub(crate) domain: Vec<u32>,
    pub(crate) domain_source: Vec<Option<NameSource>>,
    /// Ids into `qnames`, [`NONE`] for none.
    pub(crate) dns_qname: Vec<u32>,
    pub(crate) dns_qtype: Vec<Option<u16>>,
    pub(crate) ifaces: Dict,
    pub(crate) rules: Dict,
    pub(crate) users: Dict,
    pub(crate) hostnames: Dict,
    pub(crate) domains: Dict,
    pub(crate) qnames: Dict,
}

/// Applies `$m!(field)` to every per-row vector of [`Columns`] but those holding dictionary
/// ids ([`each_dict_column`]), so adding a column cannot miss one of the bulk operations.
macro_rules! each_plain_column {
    ($m:ident) => {
        $m!(time_start);
        $m!(time_end);
        $m!(ifindex);
        $m!(vlan);
        $m!(vlan_inner);
        $m!(src_mac);
        $m!(dst_mac);
        $m!(proto);
        $m!(ip_version);
        $m!(src_ip);
        $m!(src_port);
        $m!(dst_ip);
        $m!(dst_port);
        $m!(packets);
        $m!(bytes);
        $m!(resp_packets);
        $m!(resp_bytes);
        $m!(tcp_flags);
        $m!(end_reason);
        $m!(dropped);
        $m!(nat_ip);
        $m!(nat_ip_version);
        $m!(nat_port);
        $m!(domain_source);
        $m!(dns_qtype);
    };
}

/// Applies `$m!(ids, dictionary)` to every per-row vector of dictionary ids of [`Columns`].
macro_rules! each_dict_column {
    ($m:ident) => {
        $m!(iface, ifaces);
        $m!(rule, rules);
        $m!(user, users);
        $m!(hostname, hostnames);
        $m!(domain, domains);
        $m!(dns_qname, qnames);
    };
}

/// `v` reordered so that row `k` is old row `perm[k]`: one sequential pass per column.
pub(crate) fn gather<T: Copy>(v: &[T], perm: &[u32]) -> Vec<T> {
    perm.iter().map(|&i| v[i as usize]).collect()
}

impl Columns {
    /// Empty buffers with room for `rows` rows each.
    pub fn with_capacity(rows: usize) -> Self {
        let mut c = Self::default();
        macro_rules! reserve {
            ($f:ident) => {
                c.$f.reserve_exact(rows)
            };
        }
        each_plain_column!(reserve);
        macro_rules! reserve_ids {
            ($f:ident, $d:ident) => {
                reserve!($f)
            };
        }
        each_dict_column!(reserve_ids);
        c
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.time_start.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.time_start.is_empty()
    }

    /// Appends one decoded journal record.
    pub fn push(&mut self, r: &RecordView<'_>) {
        self.time_start.push(r.time_start_ns);
        self.time_end.push(r.time_end_ns);
        self.iface.push(self.ifaces.intern(r.iface));
        self.ifindex.push(r.ifindex);
        self.vlan.push(r.vlan);
        self.vlan_inner.push(r.vlan_inner);
        self.src_mac.push(r.src_mac);
        self.dst_mac.push(r.dst_mac);
        self.proto.push(r.proto);
        self.ip_version.push(ip_version(r.src_v6, r.dst_v6));
        self.src_ip.push(r.src_ip);
        self.src_port.push(r.src_port);
        self.dst_ip.push(r.dst_ip);
        self.dst_port.push(r.dst_port);
        self.packets.push(r.packets as i64);
        self.bytes.push(r.bytes as i64);
        self.resp_packets.push(r.resp_packets as i64);
        self.resp_bytes.push(r.resp_bytes as i64);
        self.tcp_flags.push(r.tcp_flags);
        self.end_reason.push(r.end_reason);
        self.dropped.push(r.dropped as i64);
        self.rule.push(self.rules.intern_opt(r.rule));
        self.push_attr(&r.attr);
    }

    fn push_attr(&mut self, a: &AttrView<'_>) {
        self.user.push(self.users.intern_opt(a.user));
        self.hostname.push(self.hostnames.intern_opt(a.hostname));
        self.nat_ip.push(a.nat_ip.unwrap_or_default());
        self.nat_ip_version.push(match (a.nat_ip, a.nat_v6) {
            (None, _) => 0,
            (Some(_), false) => 4,
            (Some(_), true) => 6,
        });
        self.nat_port.push(a.nat_port);
        self.domain.push(self.domains.intern_opt(a.domain));
        self.domain_source.push(a.domain_source);
        self.dns_qname.push(self.qnames.intern_opt(a.dns_qname));
        self.dns_qtype.push(a.dns_qtype);
    }

    /// Appends `other`'s rows after these, mapping its dictionary ids into these
    /// dictionaries (a journal decoded in parts becomes one).
    pub fn append(&mut self, other: Columns) {
        macro_rules! extend_ids {
            ($f:ident, $d:ident) => {
                self.$d.extend_from(&mut self.$f, &other.$d, &other.$f)
            };
        }
        each_dict_column!(extend_ids);
        macro_rules! extend {
            ($f:ident) => {
                self.$f.extend_from_slice(&other.$f)
            };
        }
        each_plain_column!(extend);
    }

    /// Appends one record (compaction merges segments read back as records; tests and
    /// benchmarks build segments from generated records; the agent seals from the journal
    /// with [`Columns::push`]).
    pub fn push_record(&mut self, r: &FlowRecord) {
        self.push(&RecordView::of(r));
    }

    /// Row `i` as a record (tests compare what went in with what a segment gives back).
    pub fn record(&self, i: usize) -> Option<FlowRecord> {
        if i >= self.len() {
            return None;
        }
        let (src_v6, dst_v6) = ip_families(self.ip_version[i])?;
        let name = |d: &Dict, id: u32| d.names.get(id as usize).map(|s| s.to_string());
        // `None` for no value, `Some(None)` for an id the dictionary lacks.
        let opt = |d: &Dict, id: u32| match id {
            NONE => Some(None),
            id => name(d, id).map(Some),
        };
        let attr = crate::record::Attribution {
            user: opt(&self.users, self.user[i])?,
            hostname: opt(&self.hostnames, self.hostname[i])?,
            nat_ip: match self.nat_ip_version[i] {
                0 => None,
                v => Some(ip_from_column(self.nat_ip[i], v == 6)),
            },
            nat_port: self.nat_port[i],
            domain: opt(&self.domains, self.domain[i])?,
            domain_source: self.domain_source[i],
            dns_qname: opt(&self.qnames, self.dns_qname[i])?,
            dns_qtype: self.dns_qtype[i],
        };
        Some(FlowRecord {
            time_start_ns: self.time_start[i],
            time_end_ns: self.time_end[i],
            iface: name(&self.ifaces, self.iface[i])?,
            ifindex: self.ifindex[i],
            vlan: self.vlan[i],
            vlan_inner: self.vlan_inner[i],
            src_mac: Mac(self.src_mac[i]),
            dst_mac: Mac(self.dst_mac[i]),
            proto: self.proto[i],
            src_ip: ip_from_column(self.src_ip[i], src_v6),
            src_port: self.src_port[i],
            dst_ip: ip_from_column(self.dst_ip[i], dst_v6),
            dst_port: self.dst_port[i],
            packets: self.packets[i] as u64,
            bytes: self.bytes[i] as u64,
            resp_packets: self.resp_packets[i] as u64,
            resp_bytes: self.resp_bytes[i] as u64,
            tcp_flags: self.tcp_flags[i],
            dropped: self.dropped[i] as u64,
            rule: opt(&self.rules, self.rule[i])?,
            end_reason: self.end_reason[i],
            attr,
        })
    }

    /// Source addresses, 16-byte column form, one per row.
    pub fn src_ip(&self) -> &[[u8; 16]] {
        &self.src_ip
    }

    /// Destination addresses, 16-byte column form, one per row.
    pub fn dst_ip(&self) -> &[[u8; 16]] {
        &self.dst_ip
    }

    /// Earliest start time (0 when empty): names the segment.
    pub fn time_min_ns(&self) -> i64 {
        self.time_start.iter().copied().min().unwrap_or(0)
    }

    /// Latest end time, or start time where a clock step put the end first (0 when empty):
    /// bounds the segment in the manifest, so queries by time never skip a row.
    pub fn time_max_ns(&self) -> i64 {
        self.time_start
            .iter()
            .zip(&self.time_end)
            .map(|(&s, &e)| s.max(e))
            .max()
            .unwrap_or(0)
    }

    /// The rows in segment order: by source address (its 16-byte form read as a big-endian
    /// number), then start time, ties in journal order. This order is part of the format: a
    /// re-seal after a crash must write the same file, byte for byte.
    ///
    /// Only the order and the two address columns are computed here; the writer gathers
    /// every other column through the order while it encodes it, on its own thread, so no
    /// second copy of the whole segment is ever built.
    pub fn into_row_order(self) -> Result<SortedColumns, ColumnsError> {
        if self.len() > MAX_ROWS {
            return Err(ColumnsError::TooManyRows { rows: self.len() });
        }
        let perm = self.row_order();
        Ok(SortedColumns {
            src_ip: gather(&self.src_ip, &perm),
            dst_ip: gather(&self.dst_ip, &perm),
            perm,
            journal: self,
        })
    }

    /// The permutation putting rows in segment order: `perm[k]` is the journal index of row k.
    fn row_order(&self) -> Vec<u32> {
        // Client first: a gateway's originators are mostly its clients, so their rows become
        // one run each (src_ip, src_mac, iface compress to almost nothing, and row-group
        // statistics on src_ip prune), and start times within a run increase, for the delta
        // encoding. Rows are bucketed by source address (a hash lookup per row; the buckets,
        // few, are then sorted), scattered by bucket in journal order (a counting sort), and
        // each bucket is sorted by (start time, journal index): journal order is nearly time
        // order, so that sort is close to linear. Only 16-byte (time, index) keys move.
        let n = self.len();
        let mut bucket_of: HashMap<[u8; 16], u32> = HashMap::new();
        let mut bucket = Vec::with_capacity(n);
        let mut last: Option<([u8; 16], u32)> = None;
        for a in &self.src_ip {
            let b = match last {
                Some((la, lb)) if la == *a => lb,
                _ => {
                    let next = bucket_of.len() as u32;
                    let b = *bucket_of.entry(*a).or_insert(next);
                    last = Some((*a, b));
                    b
                }
            };
            bucket.push(b);
        }
        // Byte order of the 16-byte form is the order of its big-endian value.
        let mut addrs: Vec<([u8; 16], u32)> = bucket_of.into_iter().collect();
        addrs.sort_unstable();
        let mut rank = vec![0u32; addrs.len()];
        for (r, &(_, b)) in addrs.iter().enumerate() {
            rank[b as usize] = r as u32;
        }
        let mut start = vec![0usize; addrs.len() + 1];
        for b in &mut bucket {
            *b = rank[*b as usize];
            start[*b as usize + 1] += 1;
        }
        for r in 0..addrs.len() {
            start[r + 1] += start[r];
        }
        let mut next = start.clone();
        let mut keys = vec![(0i64, 0u32); n];
        for (i, &r) in bucket.iter().enumerate() {
            let slot = &mut next[r as usize];
            keys[*slot] = (self.time_start[i], i as u32);
            *slot += 1;
        }
        for w in start.windows(2) {
            // The index makes every key distinct, so an unstable sort is deterministic.
            keys[w[0]..w[1]].sort_unstable();
        }
        keys.into_iter().map(|(_, i)| i).collect()
    }
}

/// A journal decodes straight into column buffers (see [`crate::store::journal::scan`]).
impl Decoded for Columns {
    fn with_capacity(records: usize) -> Self {
        Columns::with_capacity(records)
    }

    fn push(&mut self, r: &RecordView<'_>) {
        Columns::push(self, r);
    }

    fn append(&mut self, later: Self) {
        Columns::append(self, later);
    }
}

impl<'a> FromIterator<&'a FlowRecord> for Columns {
    fn from_iter<I: IntoIterator<Item = &'a FlowRecord>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut c = Columns::with_capacity(iter.size_hint().0);
        for r in iter {
            c.push_record(r);
        }
        c
    }
}

/// Column buffers with their segment row order (see [`Columns::into_row_order`]): what a
/// segment is written from. The type makes "sorted" a fact the writer can rely on.
#[derive(Clone, Debug)]
pub struct SortedColumns {
    /// The buffers in journal order.
    pub(crate) journal: Columns,
    /// `perm[k]`: the journal index of segment row `k`.
    pub(crate) perm: Vec<u32>,
    /// Source addresses in segment row order.
    src_ip: Vec<[u8; 16]>,
    /// Destination addresses in segment row order.
    dst_ip: Vec<[u8; 16]>,
}

impl SortedColumns {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.perm.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.perm.is_empty()
    }

    /// Segment row `k` as a record (tests compare it with what a segment gives back).
    pub fn record(&self, k: usize) -> Option<FlowRecord> {
        self.journal.record(*self.perm.get(k)? as usize)
    }

    /// Source addresses (16-byte column form) in segment row order, for per-segment
    /// address indexes.
    pub fn src_ip(&self) -> &[[u8; 16]] {
        &self.src_ip
    }

    /// Destination addresses (16-byte column form) in segment row order, for per-segment
    /// address indexes.
    pub fn dst_ip(&self) -> &[[u8; 16]] {
        &self.dst_ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testgen::{brute_force_order, TrafficGen};

    #[test]
    fn row_order_is_source_address_then_start_time_then_journal_order() {
        let mut g = TrafficGen::new(11, 1_700_000_000_000_000_000);
        let mut recs: Vec<FlowRecord> = (0..5_000).map(|_| g.next_record()).collect();
        // Ties on (address, start time) and a start time going back.
        for i in (0..recs.len()).step_by(10) {
            recs[i + 1].src_ip = recs[i].src_ip;
            recs[i + 1].time_start_ns = recs[i].time_start_ns;
            recs[i + 2].time_start_ns -= 1_000_000_000_000;
        }
        let sorted = recs
            .iter()
            .collect::<Columns>()
            .into_row_order()
            .expect("order");
        let got: Vec<FlowRecord> = (0..sorted.len())
            .map(|k| sorted.record(k).expect("row"))
            .collect();
        use crate::store::address::ip_to_column;
        let src: Vec<[u8; 16]> = got.iter().map(|r| ip_to_column(r.src_ip)).collect();
        let dst: Vec<[u8; 16]> = got.iter().map(|r| ip_to_column(r.dst_ip)).collect();
        assert_eq!(sorted.src_ip(), src);
        assert_eq!(sorted.dst_ip(), dst);
        assert_eq!(got, brute_force_order(&recs));
    }
}
