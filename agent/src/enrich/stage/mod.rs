//! The enrich stage: a [`RecordSink`] between the sweeper and the store that fills each
//! record's [`Attribution`] with what was true at the flow's start, then passes it on.
//!
//! For a record whose client (originator) is `src_ip` seen with `src_mac`, started at `t`:
//! - user and host name: [`crate::enrich::identity`] (subscribers by MAC, then address, then
//!   the DHCP binding's device), at `t`;
//! - NAT outside tuple: the conntrack session of the record's tuple at `t`
//!   ([`NatTable::join`]); none when no session covers it (no NAT);
//! - domain: what the flow's own first payload said (SNI, QUIC SNI, HTTP Host), else the
//!   client's DNS answer for the destination valid at `t`; ECH says so
//!   ([`crate::enrich::names::attribute`]);
//! - a DNS flow's question.
//!
//! A flow written in several records (active timeout, a first dropped packet) keeps the
//! attribution of its first record: its start is the flow's start. Payload snippets
//! ([`EnrichStage::payload`]) feed the per-flow name state, the DNS answer cache and the DHCP
//! learner. On each tick the stage takes the newest subscribers table and lease file reads
//! from its [`Inputs`], and writes a NAT record ([`EndReason::Nat`]) for each translated
//! conntrack session that ended without any flow record joining it.

pub mod carry;
mod nat;
mod payload;
pub mod status;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use agent_common::{family, FlowKey};
use foldhash::fast::RandomState;
use indexmap::IndexMap;

use crate::clock::WallClock;
use crate::enrich::dhcp::DhcpLearner;
use crate::enrich::identity;
use crate::enrich::inputs::Inputs;
use crate::enrich::leases::bindings::{Bindings, Limits};
use crate::enrich::leases::LeaseFormat;
use crate::enrich::names::asked::Asked;
use crate::enrich::names::cache::{DnsCache, DnsCacheConfig};
use crate::enrich::names::dns::Question;
use crate::enrich::names::dns_tcp::DnsTcpStream;
use crate::enrich::names::flow::FlowNames;
use crate::enrich::names::{self, FailureCounts, FlowName};
use crate::enrich::nat::NatTable;
use crate::enrich::subscribers::SubscriberTable;
use crate::record::{Attribution, EndReason, FlowRecord, Mac};
use crate::sink::{RecordSink, SinkError};

pub use status::EnrichStatus;

const NS_PER_S: i64 = 1_000_000_000;

/// Limits and delays of the stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageConfig {
    /// The DNS answer cache.
    pub dns_cache: DnsCacheConfig,
    /// Flows with payload state kept at most (a flow needs it from its first payload to its
    /// last record).
    pub max_flow_states: usize,
    /// A flow's payload state is dropped this long after its last payload or record, if no
    /// final record came (its records went elsewhere, or were lost), in ns.
    pub flow_state_idle_ns: i64,
    /// A closed NAT session gets a NAT record only this long after it ended, so that the
    /// record of a flow through it (written up to an inactive timeout plus a sweep after its
    /// last packet) joins it first; in ns.
    pub nat_record_delay_ns: i64,
    /// The DHCP bindings' limits.
    pub bindings: Limits,
    /// Heap bytes of payload reassembly state (TCP and QUIC name searches, DNS-over-TCP
    /// streams) kept across all flows. Each flow's is bounded (a waiting TLS flow about 4 KB,
    /// a DNS-over-TCP direction up to 8 KB), but flows are many and their sources may be
    /// spoofed: past this total, new state is refused and growing state dropped, both counted
    /// (`payload_state_refused`). 64 MiB holds some 15,000 TLS flows mid-hello, or 4,000
    /// DNS-over-TCP flows at their largest.
    pub payload_state_bytes: usize,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            dns_cache: DnsCacheConfig::default(),
            max_flow_states: 262_144,
            flow_state_idle_ns: 900 * NS_PER_S,
            nat_record_delay_ns: 60 * NS_PER_S,
            bindings: Limits::default(),
            payload_state_bytes: 64 << 20,
        }
    }
}

/// What the stage knows of one flow between its first payload or record and its last record.
#[derive(Default)]
struct FlowState {
    /// What its payload told, once a payload came: boxed, since most flows with state here
    /// (every blocked flow, from its first-drop record on) never have one, and a smaller
    /// entry is less memory to touch per new flow.
    payload: Option<Box<PayloadState>>,
    /// The attribution of the flow's first record, reused by its later records.
    attr: Option<Attribution>,
    /// Unix ns of the last payload or record.
    last_ns: i64,
}

/// What a flow's payload snippets told the stage.
#[derive(Default)]
struct PayloadState {
    /// Name finding in progress (TCP, QUIC); `None` before the first payload or once over.
    names: Option<FlowNames>,
    /// What the flow's payload said about its name.
    name: Option<FlowName>,
    /// The question of a DNS flow: its first.
    question: Option<Question>,
    /// A DNS flow's latest query's question after the first: the one a first drop stopped (a
    /// client may ask several over one TCP connection, even in one segment).
    latest: Option<Question>,
    /// The name search ended (named, failed, or refused): later snippets start no new one.
    names_over: bool,
    /// A DNS-over-TCP flow's two directions (originator, responder).
    dns_tcp: [DnsTcpSide; 2],
    /// Heap bytes of this flow's reassembly state, as counted in the stage's total.
    held: usize,
}

/// One direction of a DNS-over-TCP flow.
#[derive(Default)]
enum DnsTcpSide {
    /// No bytes yet.
    #[default]
    Unseen,
    /// Being read.
    Open(Box<DnsTcpStream>),
    /// Read to its end, failed, or refused: its bytes are freed, and a late segment (a
    /// retransmission) must not start it again mid-stream.
    Done,
}

impl FlowState {
    /// The payload part, made on first use.
    fn payload(&mut self) -> &mut PayloadState {
        self.payload.get_or_insert_with(Box::default)
    }

    /// Ends the flow's reassembly (its last record came, or its state expired): reasons
    /// counted in `failures`, its bytes taken from the stage's `total`.
    fn finish(&mut self, failures: &mut FailureCounts, total: &mut usize) {
        if let Some(p) = self.payload.as_deref_mut() {
            p.end_reassembly(failures);
            *total = total.saturating_sub(p.held);
            p.held = 0;
        }
    }
}

/// At most this many replaced tables are kept (a file rewritten every second keeps memory
/// bounded; the oldest go first).
const REPLACED_SUBSCRIBERS: usize = 8;

/// A translated flow's (protocol, outside address and port, remote address and port).
type ReplyKey = (u8, IpAddr, u16, IpAddr, u16);

/// How long a translated flow's attribution waits for its replies' record: the two are
/// written in the same sweep or the next few.
const NAT_UPLOAD_KEEP_NS: i64 = 120 * NS_PER_S;

/// A translated flow's first attribution, waiting for its replies' record.
struct NatUpload {
    attr: Attribution,
    /// The flow's inside address and port: the replies' own session must lead there (the
    /// NAT may give another client the same outside tuple to the same remote meanwhile).
    inside: (IpAddr, u16),
    /// When it was kept (the stage's wall clock, Unix ns).
    kept_ns: i64,
}

/// The enrich stage; see the module docs.
pub struct EnrichStage {
    inner: Box<dyn RecordSink>,
    inputs: Inputs,
    config: StageConfig,
    subscribers: Arc<SubscriberTable>,
    subscribers_version: u64,
    /// Tables a reload replaced, oldest first, each with the time it stopped being in force:
    /// a flow is attributed by the table in force when it started, not by one loaded while
    /// it was open (its first record can come an active timeout later).
    replaced_subscribers: std::collections::VecDeque<(i64, Arc<SubscriberTable>)>,
    bindings: Bindings,
    dhcp: DhcpLearner,
    dns: DnsCache,
    /// The DNS questions clients were seen asking: answers to others are not cached.
    asked: Asked,
    /// An `IndexMap`, as the sweeper's open flows: a new flow's entry is appended to one
    /// vector, and only a small index table is probed and grown.
    flows: IndexMap<FlowKey, FlowState, RandomState>,
    /// The record handed on, kept so that copying the next one into it reuses its texts.
    out: Option<FlowRecord>,
    failures: FailureCounts,
    /// Records per domain source, by [`names::NameSource`] discriminant.
    sources: [u64; names::NameSource::ALL.len()],
    clock: WallClock,
    status: EnrichStatus,
    /// Heap bytes of payload reassembly state across flows (their `PayloadState::held`).
    payload_bytes: usize,
    /// Saving what the next agent takes back ([`carry`]), once set up.
    saver: Option<carry::Saver>,
    /// Flows the last agent carried over, until their records take them up.
    carried_flows: carry::CarriedFlows,
    /// The lease files, in the order their reads number them (`Source::LeaseFile`): saved
    /// with the bindings, so a next agent given them in another order maps each to its own.
    lease_files: Vec<String>,
    /// The attribution of each translated flow's first record, by (protocol, outside tuple,
    /// remote tuple), with that record's end: the first record of its replies on the outside
    /// interface, written about when it is (both end, or reach the active timeout, together),
    /// takes the same user, host name and name (where the flow's frames said who it was).
    nat_uploads: std::collections::HashMap<ReplyKey, NatUpload, RandomState>,
}

impl EnrichStage {
    /// Wraps `inner`; attribution sources come from `inputs`.
    pub fn new(inner: Box<dyn RecordSink>, inputs: Inputs, config: StageConfig) -> Self {
        let mut stage = Self {
            inner,
            config,
            subscribers: Arc::default(),
            subscribers_version: u64::MAX,
            replaced_subscribers: std::collections::VecDeque::new(),
            bindings: Bindings::new(config.bindings),
            dhcp: inputs.dhcp_learner(),
            dns: DnsCache::new(config.dns_cache),
            asked: Asked::default(),
            flows: IndexMap::default(),
            out: None,
            failures: FailureCounts::default(),
            sources: [0; names::NameSource::ALL.len()],
            clock: WallClock::measure(),
            status: EnrichStatus::default(),
            payload_bytes: 0,
            saver: None,
            carried_flows: carry::CarriedFlows::default(),
            lease_files: Vec::new(),
            nat_uploads: std::collections::HashMap::default(),
            inputs,
        };
        stage.refresh_inputs(stage.now_ns());
        stage
    }

    /// Replaces the wall clock the stage reads kernel times with (tests; the stage re-measures
    /// it on each tick otherwise).
    pub fn set_clock(&mut self, clock: WallClock) {
        self.clock = clock;
    }

    fn now_ns(&self) -> i64 {
        self.clock.to_unix_ns(WallClock::ktime_now())
    }

    /// The DHCP bindings (for tests and benchmarks that seed them).
    pub fn bindings_mut(&mut self) -> &mut Bindings {
        &mut self.bindings
    }

    /// The DNS answer cache (for tests and benchmarks that seed it).
    pub fn dns_mut(&mut self) -> &mut DnsCache {
        &mut self.dns
    }

    /// The attribution of `r`, by the module's rules; remembers it for the flow's later
    /// records.
    pub fn attribute(&mut self, r: &FlowRecord) -> Attribution {
        let mut attr = Attribution::default();
        self.attribute_into(r, &mut attr);
        attr
    }

    /// [`EnrichStage::attribute`] into `attr`, every field overwritten (its texts' buffers
    /// reused).
    fn attribute_into(&mut self, r: &FlowRecord, attr: &mut Attribution) {
        let key = flow_key(r);
        // Where the flow goes on in a pinned program, a shutdown record ends it for this agent
        // only: its state stays, for the save at the stop to carry it over ([`carry`]).
        let ends = r.end_reason.is_last()
            && !(r.end_reason == EndReason::Shutdown && self.carries_flows());
        let mut known = self.flows.get_index_of(&key);
        if !self.carried_flows.is_empty() {
            known = self.take_carried(known, &key, r);
        }
        let state = known.and_then(|i| self.flows.get_index(i)).map(|(_, s)| s);
        if let Some(first) = state.as_ref().and_then(|s| s.attr.as_ref()) {
            attr.clone_from(first);
            // A first record written before the flow's NAT session was heard of (its SYN
            // waited for a port; an agent stopped right after the SYN, the next adopting
            // the flow): a later record joins it, and the flow's records after it keep it.
            if attr.nat_ip.is_none() {
                if let Some(o) = self.nat_join(r, r.time_start_ns) {
                    (attr.nat_ip, attr.nat_port) = (Some(o.addr), Some(o.port));
                    let kept = known.and_then(|i| self.flows.get_index_mut(i));
                    if let Some(a) = kept.and_then(|(_, s)| s.attr.as_mut()) {
                        (a.nat_ip, a.nat_port) = (attr.nat_ip, attr.nat_port);
                    }
                }
            }
            if ends {
                self.end_flow(&key);
            }
            return;
        }
        let t = r.time_start_ns;
        // A drop names the query it stopped, a DNS flow's latest.
        let (name, question) = match state.and_then(|s| s.payload.as_deref()) {
            Some(p) if r.dropped > 0 => (
                p.name.clone(),
                p.latest.as_ref().or(p.question.as_ref()).cloned(),
            ),
            Some(p) => (p.name.clone(), p.question.clone()),
            None => (None, None),
        };
        // The lookups miss the cache (100,000 clients): their memory accesses are issued
        // early and overlapped, the texts copied last. The DNS pair first, read after the
        // identity; its name's text, the user's and the host name's load during the NAT join.
        self.dns.prefetch(r.src_ip, r.dst_ip);
        let mut id = self.join(t).identity(r.src_ip, Some(r.src_mac), t);
        let mut dns = (self.dns)
            .lookup_by(r.src_ip, r.dst_ip, id.names_since, t, Some(r.src_mac))
            .map(|(n, _)| n);
        if let Some(n) = dns {
            n.prefetch();
        }
        let account = id.subscriber.map(|(s, _)| &*s.account);
        for text in [account, id.hostname].into_iter().flatten() {
            crate::enrich::prefetch::line(text.as_ptr());
        }
        let side = self.nat_side(r, t);
        let uploaded = matches!(side, nat::NatSide::Inside(_));
        let outside = match side {
            nat::NatSide::Inside(o) => Some(o),
            // The replies' outside tuple is their destination.
            nat::NatSide::Reply(..) => Some(crate::enrich::nat::OutsideKey {
                proto: r.proto,
                addr: r.dst_ip,
                port: r.dst_port,
            }),
            nat::NatSide::Neither => None,
        };
        // A flow whose first packet here came from the remote side to the NAT's outside
        // tuple (the replies, on the outside interface: the gateway receives them there)
        // is the inside client's download: attributed as that client's flow's first record
        // was (its frames' MAC told who it was), else to that client now (user, host name,
        // its device's name for the remote), with the outside tuple, so "who had this
        // outside port at T" and a user's answer count both directions, not the upload.
        let mut upload = None;
        if let nat::NatSide::Reply(client, port) = side {
            let pair = (r.proto, r.dst_ip, r.dst_port, r.src_ip, r.src_port);
            upload = (self.nat_uploads.remove(&pair))
                .filter(|u| u.inside == (client, port))
                .map(|u| u.attr);
            id = self.join(t).identity(client, None, t);
            dns = (self.dns)
                .lookup_by(client, r.src_ip, id.names_since, t, id.mac)
                .map(|(n, _)| n);
        }
        let account = id.subscriber.map(|(s, _)| &*s.account);
        set_text(&mut attr.user, account);
        set_text(&mut attr.hostname, id.hostname);
        attr.nat_ip = outside.as_ref().map(|o| o.addr);
        attr.nat_port = outside.as_ref().map(|o| o.port);
        // An ECH offer whose outer SNI this client resolved to this address is Chrome's GREASE:
        // the SNI is the name, whichever answer holds now (`names::attribute`).
        let dns = match &name {
            Some(names::FlowName::Ech { outer: Some(o), .. })
                if dns != Some(o) && self.dns.resolved(r.src_ip, r.dst_ip, o) =>
            {
                Some(o)
            }
            _ => dns,
        };
        let domain = names::attribute(name.as_ref(), dns);
        set_text(&mut attr.domain, domain.as_ref().map(|(d, _)| d.as_str()));
        attr.domain_source = domain.map(|(_, source)| source);
        set_text(
            &mut attr.dns_qname,
            question.as_ref().map(|q| q.name.as_str()),
        );
        attr.dns_qtype = question.map(|q| q.qtype);
        if let Some(u) = upload {
            (attr.user, attr.hostname) = (u.user, u.hostname);
            (attr.domain, attr.domain_source) = (u.domain, u.domain_source);
        } else if let (true, Some(o)) = (uploaded, outside) {
            // Bounded as the flow states are, and kept a short while (where the outside
            // interface is not audited, no replies' record ever takes it).
            if self.nat_uploads.len() < self.config.max_flow_states {
                let pair = (r.proto, o.addr, o.port, r.dst_ip, r.dst_port);
                let upload = NatUpload {
                    attr: attr.clone(),
                    inside: (r.src_ip.to_canonical(), r.src_port),
                    kept_ns: self.now_ns(),
                };
                self.nat_uploads.insert(pair, upload);
            }
        }
        if ends {
            self.end_flow(&key);
        } else {
            // Kept for the flow's later records, within the same bound as payload state: a
            // flood of one-packet blocked flows must not crowd out the flows being named.
            let room = self.flows.len() < self.config.max_flow_states;
            let s = match known.and_then(|i| self.flows.get_index_mut(i)) {
                Some((_, s)) => s,
                None if room => self.flows.entry(key).or_default(),
                None => {
                    self.status.flow_states_full += 1;
                    return;
                }
            };
            s.attr = Some(attr.clone());
            s.last_ns = s.last_ns.max(r.time_end_ns);
        }
    }

    /// Takes up the state the last agent carried over for `r`'s flow (at `key`; `known`: its
    /// entry here, if a payload made one since the start), if `r` goes on with that flow: its
    /// first attribution becomes this flow's. Returns the flow's entry.
    fn take_carried(
        &mut self,
        known: Option<usize>,
        key: &FlowKey,
        r: &FlowRecord,
    ) -> Option<usize> {
        let has_attr = known
            .and_then(|i| self.flows.get_index(i))
            .is_some_and(|(_, s)| s.attr.is_some());
        if has_attr {
            return known;
        }
        let Some(carried) = self.carried_flows.take(key, r.time_start_ns) else {
            return known;
        };
        let joined = carried.attr.is_some();
        let index = match known {
            Some(i) => {
                if let Some((_, s)) = self.flows.get_index_mut(i) {
                    s.attr = carried.attr;
                    s.last_ns = s.last_ns.max(carried.last_ns);
                }
                i
            }
            // The fresh join counts a full table.
            None if self.flows.len() >= self.config.max_flow_states => return None,
            None => self.flows.insert_full(*key, carried).0,
        };
        self.status.carry.continued_flows += 1;
        // The NAT session the flow went through is joined by it, as at its first record: no
        // `nat` record for it once it closes (a flow with no attribution yet joins afresh).
        if joined {
            self.nat_join(r, r.time_start_ns);
        }
        Some(index)
    }

    /// The sources a client's identity at `t_ns` is joined from.
    fn join(&self, t_ns: i64) -> identity::Attribution<'_> {
        let subscribers = self
            .replaced_subscribers
            .iter()
            .find(|(until, _)| t_ns < *until)
            .map_or(&self.subscribers, |(_, table)| table);
        identity::Attribution {
            subscribers,
            bindings: &self.bindings,
        }
    }

    /// User and host name of `ip` (seen with `mac`) at `t_ns`.
    fn identity(&self, ip: IpAddr, mac: Option<Mac>, t_ns: i64) -> Attribution {
        owned(&self.join(t_ns).identity(ip, mac, t_ns))
    }

    /// Forgets a flow after its last record; a name search still waiting is cut short.
    fn end_flow(&mut self, key: &FlowKey) {
        if let Some(mut s) = self.flows.swap_remove(key) {
            s.finish(&mut self.failures, &mut self.payload_bytes);
        }
    }

    /// Takes what the input threads published: a new subscribers table, lease file reads.
    fn refresh_inputs(&mut self, now_ns: i64) {
        if let Some((version, table)) = self.inputs.subscribers.newer_than(self.subscribers_version)
        {
            let replaced = std::mem::replace(&mut self.subscribers, table);
            // The first table (at start) replaces none: flows older than the agent are
            // attributed by it.
            if self.subscribers_version != u64::MAX {
                self.replaced_subscribers.push_back((now_ns, replaced));
            }
            self.subscribers_version = version;
            self.status.subscriber_reloads += 1;
        }
        // Kept while a flow that started before them may still have its first record (it
        // comes at most an active timeout after the start, as a flow's state outlives),
        // and a few only.
        let keep_from = now_ns.saturating_sub(self.config.flow_state_idle_ns);
        while self
            .replaced_subscribers
            .front()
            .is_some_and(|(until, _)| *until < keep_from)
            || self.replaced_subscribers.len() > REPLACED_SUBSCRIBERS
        {
            self.replaced_subscribers.pop_front();
        }
        while let Some(read) = self.inputs.next_lease_read() {
            let dhcp = &self.dhcp;
            let ending = read.format.map(LeaseFormat::ending);
            let gaps = read.skipped > 0;
            self.bindings.apply_read_with_gaps(
                read.file,
                &read.leases,
                ending,
                gaps,
                now_ns,
                |mac, ip| dhcp.requested_at(mac, ip, now_ns),
            );
            self.status.dhcp.lease_reads += 1;
            self.status.dhcp.lease_lines_skipped += u64::from(read.skipped);
        }
    }

    /// Drops the payload state of flows idle past the limit.
    fn prune_flows(&mut self, now_ns: i64) {
        let before = now_ns.saturating_sub(self.config.flow_state_idle_ns);
        let failures = &mut self.failures;
        let total = &mut self.payload_bytes;
        self.flows.retain(|_, s| {
            let keep = s.last_ns >= before;
            if !keep {
                s.finish(failures, total);
            }
            keep
        });
    }

    /// The counters, with the sources' sizes as they are now.
    pub fn status(&self) -> EnrichStatus {
        let mut s = self.status.clone();
        s.payload_failures = self
            .failures
            .iter()
            .filter(|&(_, n)| n > 0)
            .map(|(r, n)| (r.as_str().to_owned(), n))
            .collect();
        s.domain_sources = names::NameSource::ALL
            .iter()
            .zip(self.sources)
            .filter(|&(_, n)| n > 0)
            .map(|(src, n)| (src.as_str().to_owned(), n))
            .collect();
        s.flow_states = self.flows.len() as u64;
        s.payload_state_bytes = self.payload_bytes as u64;
        s.carry = self.carry_status();
        s.dns_cache_entries = self.dns.len() as u64;
        s.dns_cache_names = self.dns.distinct_names() as u64;
        s.dns_cache_evicted = self.dns.stats().evicted;
        s.dns_questions_untracked = self.asked.untracked;
        s.subscriber_rows = self.subscribers.rows() as u64;
        let d = self.dhcp.counters();
        s.dhcp.learned = d.v4_ack + d.v6_reply;
        s.dhcp.released = d.v4_release + d.v6_release;
        s.dhcp.bad_packets = d.truncated
            + d.not_dhcp
            + d.malformed
            + d.no_message_type
            + d.incomplete
            + d.decoder_panic;
        s.dhcp.untrusted = d.untrusted + d.spoofed_requests;
        s.dhcp.addresses = self.bindings.addresses() as u64;
        s.dhcp.dropped_full = self.bindings.counters().dropped_full;
        self.inputs.nat_status(&mut s.nat);
        s.inputs_rejected = self.inputs.rejected.list();
        s
    }
}

/// Sets an optional text to `value`, reusing the buffer it holds.
fn set_text(slot: &mut Option<String>, value: Option<&str>) {
    match (slot.as_mut(), value) {
        (Some(s), Some(v)) => {
            s.clear();
            s.push_str(v);
        }
        (_, v) => *slot = v.map(str::to_owned),
    }
}

/// A record's user and host name from an identity (their texts copied).
fn owned(id: &identity::Identity<'_>) -> Attribution {
    Attribution {
        user: id.subscriber.map(|(s, _)| String::from(&*s.account)),
        hostname: id.hostname.map(str::to_owned),
        ..Attribution::default()
    }
}

/// The flow-table key of a record's flow (the key its payload snippets carry).
pub fn flow_key(r: &FlowRecord) -> FlowKey {
    let words = |ip: IpAddr| match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            FlowKey::addr_words(&b)
        }
        IpAddr::V6(a) => FlowKey::addr_words(&a.octets()),
    };
    FlowKey {
        ifindex: r.ifindex,
        vlan: r.vlan.unwrap_or(0),
        vlan_inner: r.vlan_inner.unwrap_or(0),
        proto: r.proto,
        family: if r.src_ip.is_ipv4() {
            family::V4
        } else {
            family::V6
        },
        _pad: [0; 2],
        port_a: r.src_port.to_be(),
        port_b: r.dst_port.to_be(),
        addr_a: words(r.src_ip),
        addr_b: words(r.dst_ip),
    }
}

impl RecordSink for EnrichStage {
    fn write(&mut self, record: &FlowRecord) -> Result<(), SinkError> {
        // A NAT record carries its own attribution; a summarised one sums many sources (its
        // source is only the one seen most, and may be spoofed): neither is one client's.
        if matches!(record.end_reason, EndReason::Nat | EndReason::Summarised) {
            return self.inner.write(record);
        }
        // The record handed on is the one kept from the last call, overwritten: its texts'
        // buffers are reused, where a clone per record was a malloc and a free per text.
        // (`attribute_into` overwrites every field of the attribution.)
        let mut out = self.out.take().unwrap_or_else(|| record.clone());
        let mut attr = std::mem::take(&mut out.attr);
        out.clone_from(record);
        self.attribute_into(record, &mut attr);
        out.attr = attr;
        let attr = &out.attr;
        self.status.records += 1;
        self.status.fields.count(attr);
        if let Some(src) = attr.domain_source {
            self.sources[src as usize] += 1;
        }
        if attr.dns_qname.is_some() {
            self.status.dns_questions += 1;
        }
        let written = self.inner.write(&out);
        self.out = Some(out);
        written
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        self.inner.sync()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }

    fn sync_due(&mut self) -> Result<(), SinkError> {
        self.inner.sync_due()
    }

    fn writes_before(&self, record: &FlowRecord) -> bool {
        self.inner.writes_before(record)
    }

    /// The flow's state goes as at its last record (its first drop's attribution, a name
    /// search still waiting), then the sinks after this stage learn of it.
    fn flow_ended(&mut self, key: &FlowKey) {
        self.end_flow(key);
        self.inner.flow_ended(key);
    }

    fn unkept(&mut self) {
        self.inner.unkept()
    }

    fn kept_by_pins(&mut self, kept: bool) {
        self.inner.kept_by_pins(kept)
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        self.clock = WallClock::measure();
        let now = self.now_ns();
        self.refresh_inputs(now);
        self.bindings.prune(now);
        if self.flows.len() > self.config.max_flow_states / 2 {
            self.prune_flows(now);
        }
        if !self.nat_uploads.is_empty() {
            let from = now.saturating_sub(NAT_UPLOAD_KEEP_NS);
            self.nat_uploads.retain(|_, u| u.kept_ns >= from);
        }
        let written = self.write_nat_records(now - self.config.nat_record_delay_ns, now);
        self.carried_flows.expire(now);
        self.save_if_due(now);
        let ticked = self.inner.tick();
        written.and(ticked)
    }

    fn close(&mut self) -> Result<(), SinkError> {
        let now = self.now_ns();
        self.refresh_inputs(now);
        // Every flow record is written by now: every closed session no flow joined gets its
        // NAT record.
        let written = self.write_nat_records(i64::MAX, now);
        self.save_at_stop(now);
        let closed = self.inner.close();
        written.and(closed)
    }

    fn store_status(&self) -> Option<crate::store::StoreStatus> {
        self.inner.store_status()
    }

    fn enrich_status(&self) -> Option<EnrichStatus> {
        Some(self.status())
    }

    fn syslog_status(&self) -> Option<crate::syslog::SyslogStatus> {
        self.inner.syslog_status()
    }

    fn payload(&mut self, p: &crate::reader::Payload) {
        let packet = payload::Packet {
            key: &p.key,
            from_originator: p.dir == crate::reader::Direction::Originator,
            t_ns: self.clock.to_unix_ns(p.ts_ns),
            seq: p.seq,
            stream_start: p.stream_start,
            last: p.left == Some(0),
            src_mac: p.src_mac,
            dst_mac: p.dst_mac,
            dropped: p.dropped,
            data: &p.data,
        };
        self.take_packet(packet);
    }
}

/// The NAT table the conntrack listener fills and the stage joins against.
pub type SharedNat = Arc<Mutex<NatTable>>;
