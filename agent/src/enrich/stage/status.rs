//! The enrich stage's counters as `status.json` shows them (the `enrich` object) and
//! `xdp-audit status` prints them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::Attribution;

/// How many records got one attribution field, and how many did not.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FieldCount {
    /// Records that carry the field.
    pub attributed: u64,
    /// Records that do not.
    pub unattributed: u64,
}

impl FieldCount {
    fn add(&mut self, known: bool) {
        if known {
            self.attributed += 1;
        } else {
            self.unattributed += 1;
        }
    }
}

/// Per attribution field, the records that carry it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FieldCounts {
    /// `user`.
    pub user: FieldCount,
    /// `hostname`.
    pub hostname: FieldCount,
    /// `nat_ip` and `nat_port`.
    pub nat: FieldCount,
    /// `domain`.
    pub domain: FieldCount,
}

impl FieldCounts {
    /// Counts one record's attribution.
    pub fn count(&mut self, a: &Attribution) {
        self.user.add(a.user.is_some());
        self.hostname.add(a.hostname.is_some());
        self.nat.add(a.nat_ip.is_some());
        self.domain.add(a.domain.is_some());
    }
}

/// The conntrack side: the listener's socket and the NAT table.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NatStatus {
    /// Whether a conntrack listener runs.
    pub listening: bool,
    /// New events received.
    pub new_events: u64,
    /// Destroy events received.
    pub destroy_events: u64,
    /// ENOBUFS on the event socket: events were lost (each followed by a re-read).
    pub enobufs: u64,
    /// Table re-reads (dumps) completed: at start, after each loss, periodically.
    pub rereads: u64,
    /// Re-reads that failed part way (retried).
    pub reread_failures: u64,
    /// Sessions learned from a re-read (after a loss, or a periodic one ahead of the new
    /// event).
    pub recovered: u64,
    /// Of those, sessions whose new event was read after the re-read: late, not lost.
    pub read_late: u64,
    /// Messages that did not parse.
    pub parse_errors: u64,
    /// Datagrams from a sender other than the kernel (another process), dropped unread.
    #[serde(default)]
    pub foreign: u64,
    /// Receive buffer the kernel granted, bytes.
    pub rcvbuf_bytes: u64,
    /// Sessions open now.
    pub open_sessions: u64,
    /// Sessions held (open and lingering closed ones).
    pub sessions: u64,
    /// NAT records written for sessions no flow record joined.
    pub nat_records: u64,
    /// Closed sessions evicted before their NAT record was written (table full).
    pub lost_unwritten: u64,
    /// New sessions not kept because every slot held an open one: their flows carry no
    /// outside tuple.
    #[serde(default)]
    pub refused_full: u64,
}

/// DHCP: bindings learned from packets and lease files.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DhcpStatus {
    /// DHCPv4 ACKs and DHCPv6 Replies learned from packets.
    pub learned: u64,
    /// Releases and declines applied.
    pub released: u64,
    /// DHCP payloads that taught nothing because they were bad (truncated, malformed, not
    /// DHCP, incomplete, decoder panic).
    pub bad_packets: u64,
    /// Replies from senders that are not trusted servers, and REQUESTs neither from their
    /// client (Ethernet source = chaddr) nor relayed: not learned from.
    pub untrusted: u64,
    /// Lease file reads applied.
    pub lease_reads: u64,
    /// Lease file lines skipped (each logged as `FILE:LINE: reason`).
    pub lease_lines_skipped: u64,
    /// Addresses with a binding.
    pub addresses: u64,
    /// Bindings not kept because the table was full (its addresses or its spans in all).
    #[serde(default)]
    pub dropped_full: u64,
}

/// What the enrich stage did, for `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrichStatus {
    /// Flow records joined (NAT records not included).
    pub records: u64,
    /// Per field, records that carry it.
    pub fields: FieldCounts,
    /// Records with a domain, by where it came from (`sni`, `dns`, ...).
    pub domain_sources: BTreeMap<String, u64>,
    /// DNS flow records that carry their question.
    pub dns_questions: u64,
    /// Payload snippets taken.
    pub payloads: u64,
    /// Payloads that gave no name, by reason (`truncated`, `dns_bad_pointer`, ...).
    pub payload_failures: BTreeMap<String, u64>,
    /// Flows whose state (payload, or a first record's attribution) was not kept: the
    /// per-flow table was full.
    pub flow_states_full: u64,
    /// Flows with state (payload, or a first record's attribution) now.
    pub flow_states: u64,
    /// Flows whose payload reassembly state (name search, DNS-over-TCP stream) was refused
    /// or dropped: the stage's byte budget for it was spent.
    #[serde(default)]
    pub payload_state_refused: u64,
    /// Heap bytes of payload reassembly state now.
    #[serde(default)]
    pub payload_state_bytes: u64,
    /// DNS questions let go within their answer window for newer ones, or asking clients
    /// not noted, because a table was full of live ones (`names::asked`): such answers are
    /// refused, never trusted.
    #[serde(default)]
    pub dns_questions_untracked: u64,
    /// (client, address) -> name pairs in the DNS answer cache.
    pub dns_cache_entries: u64,
    /// Distinct names in the DNS answer cache.
    pub dns_cache_names: u64,
    /// Pairs the full DNS answer cache let go for newer answers (oldest answered first).
    #[serde(default)]
    pub dns_cache_evicted: u64,
    /// Subscriber rows in force.
    pub subscriber_rows: u64,
    /// Subscriber tables taken (start and every good reload).
    pub subscriber_reloads: u64,
    /// DHCP.
    pub dhcp: DhcpStatus,
    /// Conntrack.
    pub nat: NatStatus,
    /// What the last agent carried over, and the saves for the next.
    #[serde(default)]
    pub carry: super::carry::CarryStatus,
    /// Subscribers and lease files refused at their last read, each with its first problem
    /// (`XA-LIST-REJECTED` holds for each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs_rejected: Vec<(String, String)>,
}

impl EnrichStatus {
    /// The lines `xdp-audit status` prints.
    pub fn summary(&self) -> String {
        let f = &self.fields;
        let field = |name: &str, c: &FieldCount| {
            format!("{name} {} (without {})", c.attributed, c.unattributed)
        };
        let join = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let n = &self.nat;
        let d = &self.dhcp;
        let nat = if n.listening {
            format!(
                "conntrack: {} new, {} destroy events; {} ENOBUFS losses, {} table re-reads ({} failed, {} sessions recovered, {} of them read late); {} sessions open, {} held ({} refused: table full of open ones); {} NAT records, {} lost to a full table; receive buffer {} bytes{}",
                n.new_events, n.destroy_events, n.enobufs, n.rereads, n.reread_failures,
                n.recovered, n.read_late, n.open_sessions, n.sessions, n.refused_full, n.nat_records, n.lost_unwritten,
                n.rcvbuf_bytes,
                if n.foreign > 0 {
                    format!("; {} datagrams not from the kernel dropped", n.foreign)
                } else {
                    String::new()
                }
            )
        } else {
            "conntrack: not followed (records carry no NAT outside tuple)".to_owned()
        };
        let refused: String = (self.inputs_rejected.iter())
            .map(|(_, problem)| {
                format!("\n  REFUSED (its last good version, if any, stays in force): {problem}")
            })
            .collect();
        format!(
            "attribution: {} records; {}, {}, {}, {}; DNS questions {} ({} not tracked: table full)\n  domain sources: {}\n  payloads {}, that gave no name: {}; {} flows refused payload state (table full), {} refused reassembly state (byte budget)\n  {nat}\n  DHCP: {} bindings learned from packets, {} released, {} bad packets, {} untrusted replies; {} lease file reads ({} lines skipped); {} addresses bound ({} bindings not kept: table full)\n  sizes: {} subscriber rows ({} reloads), {} DNS cache pairs ({} names, {} let go for newer), {} flows with payload state ({} bytes of reassembly)\n  carried over from the last agent: {} DNS answers, {} DHCP bindings, {} flows ({} went on); {} saves for the next ({} failed){refused}",
            self.records,
            field("user", &f.user),
            field("hostname", &f.hostname),
            field("nat", &f.nat),
            field("domain", &f.domain),
            self.dns_questions,
            self.dns_questions_untracked,
            join(&self.domain_sources),
            self.payloads,
            join(&self.payload_failures),
            self.flow_states_full,
            self.payload_state_refused,
            d.learned, d.released, d.bad_packets, d.untrusted, d.lease_reads, d.lease_lines_skipped,
            d.addresses, d.dropped_full,
            self.subscriber_rows, self.subscriber_reloads, self.dns_cache_entries,
            self.dns_cache_names, self.dns_cache_evicted, self.flow_states, self.payload_state_bytes,
            self.carry.restored_names, self.carry.restored_bindings, self.carry.restored_flows,
            self.carry.continued_flows, self.carry.saves, self.carry.save_failures
        )
    }
}
