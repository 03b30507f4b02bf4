//! Wire types shared by the xdp-audit XDP program and its userspace agent.
//!
//! Every type here crosses the kernel/userspace boundary (map keys, map values, ring-buffer
//! records), so each is `#[repr(C)]` with explicit padding and a compile-time size check: a
//! mismatch between the two sides must fail the build, not corrupt an audit record.
#![cfg_attr(not(test), no_std)]

use core::mem::size_of;

pub mod domain;
pub mod flood;
pub mod payload;
pub mod rules;

/// Names of the maps and programs in the object, so the loader and the program cannot drift.
pub mod names {
    /// The XDP program attached to audited interfaces.
    pub const PROGRAM: &str = "xdp_audit";
    /// The slow path (DNS name checks, payload copies) the program tail-calls.
    pub const SLOW_PATH_PROGRAM: &str = "xdp_audit_payload";
    /// Program array whose slot 0 holds [`SLOW_PATH_PROGRAM`]; written by the loader.
    pub const SLOW_PATH: &str = "SLOW_PATH";
    /// The IPv6 flow table (LRU hash of [`crate::FlowKey`] to [`crate::FlowValue`]).
    pub const FLOWS: &str = "FLOWS";
    /// The IPv4 flow table (LRU hash of [`crate::FlowKey4`] to [`crate::FlowValue`]).
    pub const FLOWS4: &str = "FLOWS4";
    /// Ring buffer of [`crate::FlowEvent`] and [`crate::payload::PayloadEvent`] records.
    pub const EVENTS: &str = "EVENTS";
    /// Array of 65,536 [`crate::payload::PortBudget`]s indexed by port number (host order):
    /// which flows get payload events, and how many; written by the loader.
    pub const PAYLOAD_PORTS: &str = "PAYLOAD_PORTS";
    /// Per-CPU array of `u64` counters indexed by [`crate::Counter`].
    pub const STATS: &str = "STATS";
    /// Global: pending ring-buffer bytes at which the program wakes the agent.
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    /// Allowlist: exact IPv4 addresses (HASH `[u8; 4]` -> rule id).
    pub const ALLOW_V4: &str = "ALLOW_V4";
    /// Blocklist: exact IPv4 addresses.
    pub const BLOCK_V4: &str = "BLOCK_V4";
    /// Allowlist: exact IPv6 addresses (HASH `[u8; 16]` -> rule id).
    pub const ALLOW_V6: &str = "ALLOW_V6";
    /// Blocklist: exact IPv6 addresses.
    pub const BLOCK_V6: &str = "BLOCK_V6";
    /// Allowlist: IPv4 prefixes (LPM trie).
    pub const ALLOW_NET4: &str = "ALLOW_NET4";
    /// Blocklist: IPv4 prefixes.
    pub const BLOCK_NET4: &str = "BLOCK_NET4";
    /// Allowlist: IPv6 prefixes (LPM trie).
    pub const ALLOW_NET6: &str = "ALLOW_NET6";
    /// Blocklist: IPv6 prefixes.
    pub const BLOCK_NET6: &str = "BLOCK_NET6";
    /// Allowlist: (protocol, port) rules.
    pub const ALLOW_PORTS: &str = "ALLOW_PORTS";
    /// Blocklist: (protocol, port) rules.
    pub const BLOCK_PORTS: &str = "BLOCK_PORTS";
    /// Allowlist: domain suffix hashes.
    pub const ALLOW_DOMAINS: &str = "ALLOW_DOMAINS";
    /// Blocklist: domain suffix hashes.
    pub const BLOCK_DOMAINS: &str = "BLOCK_DOMAINS";
    /// IPv4 /24s the address and prefix rules touch (ARRAY of [`crate::rules::cover4::WORDS`]
    /// `u64` bit words).
    pub const COVER4: &str = "COVER4";
    /// Array of one `u64`: the list generation; bumped after every applied reload.
    pub const GENERATION: &str = "GENERATION";
    /// Interface roles (ARRAY by ifindex, [`crate::role::SLOTS`] of them -> [`crate::role`]).
    pub const IFACE_ROLES: &str = "IFACE_ROLES";
    /// Roles of interfaces past [`IFACE_ROLES`]'s end (HASH ifindex -> [`crate::role`]);
    /// absent means `lan`.
    pub const IFACE_ROLES_FAR: &str = "IFACE_ROLES_FAR";
    /// Per-rule hit counters (PERCPU_ARRAY rule id -> packets on each CPU).
    pub const RULE_HITS: &str = "RULE_HITS";
    /// Flood summary slots (PERCPU_ARRAY of [`crate::flood::FloodValue`], two windows of
    /// [`crate::flood::SLOTS`]), read by the agent once a sweep.
    pub const FLOOD_SLOTS: &str = "FLOOD_SLOTS";
    /// The summary slot each rule last took (PERCPU_ARRAY rule id -> slot), sized like
    /// [`RULE_HITS`].
    pub const FLOOD_RULES: &str = "FLOOD_RULES";
    /// Array of one [`crate::flood::FloodConfig`]: the drop-record budgets, written by the
    /// agent.
    pub const FLOOD_CONFIG: &str = "FLOOD_CONFIG";
    /// Per-CPU array of one [`crate::flood::FloodTotal`]: each CPU's spending of the global
    /// drop-record budget.
    pub const FLOOD_TOTAL: &str = "FLOOD_TOTAL";
    /// Per-CPU scratch space for walking a DNS name.
    pub const DNS_SCRATCH: &str = "DNS_SCRATCH";
    /// Array of one [`crate::domain::DomainKey`]: the secret domain hashes are keyed with,
    /// written by the loader before the program is attached.
    pub const DOMAIN_KEY: &str = "DOMAIN_KEY";
    /// The baseline program used by the benchmark: returns XDP_PASS and nothing else.
    pub const BASELINE_PASS: &str = "xdp_baseline_pass";
    /// The agent's ledger beside the flow tables (HASH [`crate::FlowKey`] ->
    /// [`crate::Reported`]): what its records already carry of each open flow. Created and
    /// written by the agent, never by the program; pinned with the program's maps, so an
    /// agent that adopts the pins continues each flow where the last one stopped.
    pub const REPORTED: &str = "REPORTED";
}

/// Version of the meaning of the shared map types. The pin directory of an agent instance is
/// versioned by a fingerprint of every map's type, key and value sizes and capacity, which
/// catches a changed wire type only when its size changes: bump this when a map's key or
/// value changes its meaning in any other way than fields added at the end of [`FlowValue`]
/// (a field reordered, reinterpreted or removed), so an agent never adopts maps it would
/// misread, and an upgrade reads the old flow tables (their values zero-extended) only when
/// their pins carry the same version.
pub const LAYOUT_VERSION: u32 = 1;

/// Which side of a packet is the remote one (the side list rules are matched against).
pub mod role {
    /// Client-facing interface: the remote side is the destination.
    pub const LAN: u8 = 0;
    /// Internet-facing interface: the remote side is the source.
    pub const WAN: u8 = 1;
    /// Interfaces whose role is an array slot (ifindex below this): an array read is one
    /// inlined load where a hash lookup cost a blocked new flow 14 ns. A larger ifindex (a
    /// host that made thousands of devices) has its role in a hash beside it.
    pub const SLOTS: u32 = 4096;
}

/// Verdicts cached in [`FlowValue::verdict`].
pub mod verdict {
    /// Pass (no rule, or an allow rule).
    pub const PASS: u8 = 0;
    /// Drop (a block rule).
    pub const DROP: u8 = 1;
}

/// [`FlowValue::rule`] when no rule matched.
pub const NO_RULE: u32 = u32::MAX;

/// Address family of a flow; the numeric values are the IP version.
pub mod family {
    /// IPv4: only the first 4 bytes of an address are used; the rest are zero.
    pub const V4: u8 = 4;
    /// IPv6.
    pub const V6: u8 = 6;
}

/// IP protocol numbers the parser understands beyond "other".
pub mod proto {
    /// ICMP (type/code stand in for ports).
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6 (type/code stand in for ports).
    pub const ICMPV6: u8 = 58;
}

/// One flow on one interface, oriented as its first packet: endpoint `a` is the originator.
/// Both directions of a conversation share one entry (the program looks up the reverse
/// orientation before creating a flow).
///
/// Addresses are raw network-order bytes held in `u32` words (IPv4 in word 0, the rest zero;
/// word-typed so the program moves them with word loads and stores, never byte loops), ports
/// network-order `u16` as read from the packet (ICMP: type and code), so the program never
/// byte-swaps. Use [`FlowKey::addr_bytes`] to read an address.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Interface the packets arrived on.
    pub ifindex: u32,
    /// Outer VLAN id (802.1Q or 802.1ad), 0 when untagged.
    pub vlan: u16,
    /// Inner VLAN id of a QinQ frame, 0 when absent.
    pub vlan_inner: u16,
    /// IP protocol number.
    pub proto: u8,
    /// [`family::V4`] or [`family::V6`].
    pub family: u8,
    /// Explicit padding; always zero so keys hash identically.
    pub _pad: [u8; 2],
    /// Port of endpoint `a`, network order (ICMP: the type).
    pub port_a: u16,
    /// Port of endpoint `b`, network order (ICMP: the code).
    pub port_b: u16,
    /// Address of endpoint `a`, network-order bytes in native-endian words.
    pub addr_a: [u32; 4],
    /// Address of endpoint `b`.
    pub addr_b: [u32; 4],
}

impl FlowKey {
    /// The 16 network-order bytes of an address field (IPv4: the first four).
    pub fn addr_bytes(words: &[u32; 4]) -> [u8; 16] {
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            let b = words[i].to_ne_bytes();
            out[i * 4] = b[0];
            out[i * 4 + 1] = b[1];
            out[i * 4 + 2] = b[2];
            out[i * 4 + 3] = b[3];
            i += 1;
        }
        out
    }

    /// The address words of 16 network-order bytes; the inverse of [`FlowKey::addr_bytes`].
    pub fn addr_words(bytes: &[u8; 16]) -> [u32; 4] {
        let mut out = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            out[i] = u32::from_ne_bytes([
                bytes[i * 4],
                bytes[i * 4 + 1],
                bytes[i * 4 + 2],
                bytes[i * 4 + 3],
            ]);
            i += 1;
        }
        out
    }
}
const _: () = assert!(size_of::<FlowKey>() == 48);

/// An IPv4 flow's table key: [`FlowKey`] packed into 20 bytes. The kernel hashes and
/// compares the whole key on every lookup, byte by byte: a 48-byte key costs more than the
/// rest of the per-packet path, so IPv4 flows (most of them) live in their own table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey4 {
    /// Interface the packets arrived on.
    pub ifindex: u32,
    /// Outer VLAN id (bits 0-11), inner VLAN id (bits 12-23), IP protocol (bits 24-31).
    pub vlans_proto: u32,
    /// Port of endpoint `a`, network order.
    pub port_a: u16,
    /// Port of endpoint `b`, network order.
    pub port_b: u16,
    /// Address of endpoint `a`, network-order bytes.
    pub addr_a: u32,
    /// Address of endpoint `b`, network-order bytes.
    pub addr_b: u32,
}
const _: () = assert!(size_of::<FlowKey4>() == 20);

impl FlowKey4 {
    /// The compact form of an IPv4 [`FlowKey`].
    #[inline(always)]
    pub fn from_key(k: &FlowKey) -> Self {
        FlowKey4 {
            ifindex: k.ifindex,
            vlans_proto: (k.vlan as u32 & 0xfff)
                | (k.vlan_inner as u32 & 0xfff) << 12
                | (k.proto as u32) << 24,
            port_a: k.port_a,
            port_b: k.port_b,
            addr_a: k.addr_a[0],
            addr_b: k.addr_b[0],
        }
    }

    /// The full [`FlowKey`] this compact key stands for.
    pub fn to_key(&self) -> FlowKey {
        FlowKey {
            ifindex: self.ifindex,
            vlan: (self.vlans_proto & 0xfff) as u16,
            vlan_inner: (self.vlans_proto >> 12 & 0xfff) as u16,
            proto: (self.vlans_proto >> 24) as u8,
            family: family::V4,
            _pad: [0; 2],
            port_a: self.port_a,
            port_b: self.port_b,
            addr_a: [self.addr_a, 0, 0, 0],
            addr_b: [self.addr_b, 0, 0, 0],
        }
    }
}

/// Bits of [`FlowValue::flags`].
pub mod flow_flags {
    /// The entry was made by a connection request (a TCP SYN without ACK): its `isn` is the
    /// originator's stream start. An entry a bare ACK made first has none, whatever SYN
    /// follows it (a forged ACK's sequence number must not pass for the stream's start).
    pub const SYN_OPENED: u8 = 1 << 0;
    /// The flow-start event reached the ring buffer.
    pub const START_ANNOUNCED: u8 = 1 << 1;
    /// A FIN was seen; the flow is closing.
    pub const FIN_SEEN: u8 = 1 << 2;
    /// A RST was seen; the flow is closing.
    pub const RST_SEEN: u8 = 1 << 3;
    /// The flow-end event reached the ring buffer.
    pub const END_ANNOUNCED: u8 = 1 << 4;
    /// A blocked packet of the flow was answered from XDP (NXDOMAIN or RST) instead of
    /// dropped silently: the flow's drop record says `refused`.
    pub const REFUSED: u8 = 1 << 5;
    /// The remote side of the originator's packets (the responder) was judged under the
    /// entry's `verdict_gen`.
    pub const ORIG_JUDGED: u8 = 1 << 6;
    /// The remote side of the responder's packets (the originator) was judged under the
    /// entry's `verdict_gen`. Each direction's packets have their own remote side judged at
    /// the first packet that way (and again after each list change), and the entry's verdict
    /// drops if either side's does: a flow made by a packet *from* a blocked address cannot
    /// carry traffic *to* it.
    pub const RESP_JUDGED: u8 = 1 << 7;
    /// [`ORIG_JUDGED`] and [`RESP_JUDGED`] by direction index.
    pub const JUDGED: [u8; 2] = [ORIG_JUDGED, RESP_JUDGED];
}

/// Index of the originator -> responder direction (`a` -> `b`) in [`FlowValue`] counters.
pub const DIR_ORIG: usize = 0;
/// Index of the responder -> originator direction in [`FlowValue`] counters.
pub const DIR_RESP: usize = 1;

/// The flow-table entry. Counters are updated with atomic adds so flows spread over CPUs
/// still count exactly; bytes are whole frames as seen at the interface (Ethernet header
/// included, no FCS), the same figure a packet capture reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowValue {
    /// `bpf_ktime_get_ns` of the first packet.
    pub first_seen_ns: u64,
    /// CLOCK_MONOTONIC of the latest packet, at the kernel tick's resolution (1-4 ms): the
    /// precise clock costs several times the coarse one per packet on virtual machines, so it
    /// is read at the flow's first packet of each tick ([`FlowValue::last_tick`]). At most one
    /// tick behind the packet. Never below `first_seen_ns`.
    pub last_seen_ns: u64,
    /// `bpf_ktime_get_ns` of the first FIN or RST, 0 while open.
    pub end_seen_ns: u64,
    /// Packets per direction ([`DIR_ORIG`], [`DIR_RESP`]).
    pub packets: [u64; 2],
    /// Frame bytes per direction.
    pub bytes: [u64; 2],
    /// Packets of the flow dropped by a list (included in `packets`).
    pub drops: u64,
    /// Source MAC of the originator's first packet.
    pub src_mac: [u8; 6],
    /// Destination MAC of the originator's first packet.
    pub dst_mac: [u8; 6],
    /// OR of TCP flags per direction.
    pub tcp_flags: [u8; 2],
    /// [`flow_flags`] bits.
    pub flags: u8,
    /// The cached [`verdict`] for the flow's addresses and ports.
    pub verdict: u8,
    /// Low 32 bits of the list generation `verdict` was computed for; a different current
    /// generation makes the next packet recompute it.
    pub verdict_gen: u32,
    /// The rule behind `verdict` (allow or block), or the domain rule of the last DNS query
    /// dropped; [`NO_RULE`] if none.
    pub rule: u32,
    /// TCP: the sequence number of the packet that created the flow; for a flow created by
    /// a SYN, the originator's stream starts at `isn + 1`. Otherwise 0.
    pub isn: u32,
    /// Packets the flow still hands to the payload slow path, per direction ([`payload`]);
    /// 0 once spent and for flows on other ports, [`payload::UNLIMITED`] for every packet.
    /// Next to the verdict fields every packet reads, so a spent budget costs one compare.
    pub snippets_left: [u8; 2],
    /// Low 16 bits of the kernel's jiffies when `last_seen_ns` was last written (0 from an
    /// older program): a packet in the same tick skips the clock helper, which costs more
    /// than the rest of an established packet's accounting. Read by the program only.
    pub last_tick: u16,
}
const _: () = assert!(size_of::<FlowValue>() == 96);

/// What the agent's records already carry of an open flow: the flow's counters as of its last
/// interim record (active timeout, first drop, a pinned agent's shutdown), so the next record
/// carries only what followed. Kept in memory by the sweeper and, when the program is pinned,
/// in the [`names::REPORTED`] map beside the flow tables.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    /// Packets per direction already written.
    pub packets: [u64; 2],
    /// Bytes per direction already written.
    pub bytes: [u64; 2],
    /// Dropped packets already written.
    pub drops: u64,
    /// Kernel time of the last packet already written, 0 if none.
    pub last_seen_ns: u64,
}
const _: () = assert!(size_of::<Reported>() == 48);

impl Reported {
    /// Everything `v` has counted so far.
    pub fn of(v: &FlowValue) -> Self {
        Reported {
            packets: v.packets,
            bytes: v.bytes,
            drops: v.drops,
            last_seen_ns: v.last_seen_ns,
        }
    }

    /// What has been written of a flow once a record of `v` is written too. `v` may be older
    /// than what was written (a first drop's event drained after a later record, such as a
    /// stopping agent's `shutdown` slice, covered its packet): nothing moves back, else the
    /// next record would count that stretch again.
    ///
    /// A record carries no more drops than packets: the program counts a dropped packet's
    /// drop before the packet, so a copy of the entry made in between (the sweeper's read,
    /// on another CPU) holds the drop alone; that drop goes with the packet's record.
    pub fn covering(&self, v: &FlowValue) -> Self {
        let max2 = |a: [u64; 2], b: [u64; 2]| [a[0].max(b[0]), a[1].max(b[1])];
        let packets = max2(self.packets, v.packets);
        let new = (packets[0] + packets[1]).saturating_sub(self.packets[0] + self.packets[1]);
        Reported {
            packets,
            bytes: max2(self.bytes, v.bytes),
            drops: self.drops.max(v.drops.min(self.drops + new)),
            last_seen_ns: self.last_seen_ns.max(v.last_seen_ns),
        }
    }
}

/// Kinds of ring-buffer event.
pub mod event_kind {
    /// The first packet of a flow.
    pub const FLOW_START: u8 = 1;
    /// The first FIN or RST of a flow.
    pub const FLOW_END: u8 = 2;
    /// The first packet of a flow dropped by a list (also announces the flow if it is new).
    pub const FLOW_DROP: u8 = 3;
    /// A copy of a packet's payload ([`crate::payload::PayloadEvent`]).
    pub const PAYLOAD: u8 = 4;
    /// The last snapshot of a flow that closed (FIN or RST seen) and whose key a new
    /// connection's SYN then took over (the same ports reused within the close linger): the
    /// flow's last record is written from it, the new connection is a flow of its own.
    pub const FLOW_CLOSED: u8 = 5;
}

/// One ring-buffer record: a snapshot of a flow at an event. Never sent per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    /// One of [`event_kind`].
    pub kind: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
    /// For [`event_kind::FLOW_DROP`]: the rule that dropped the packet, else [`NO_RULE`].
    pub rule: u32,
    /// The flow.
    pub key: FlowKey,
    /// The entry as it stood when the event was emitted.
    pub value: FlowValue,
}
const _: () = assert!(size_of::<FlowEvent>() == 152);

/// Ring-buffer space one [`FlowEvent`] takes: the record and the ring's 8-byte header,
/// rounded up to 8 bytes.
pub const RING_RECORD_BYTES: usize = (size_of::<FlowEvent>() + 8 + 7) & !7;
const _: () = assert!(RING_RECORD_BYTES == 160);

/// Per-CPU counters in the `STATS` map. Every packet increments exactly one outcome counter
/// (`Parsed*`, `Fragment*`, or one `Skip*` reason); losses are counted separately.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// TCP segment with a complete header.
    ParsedTcp = 0,
    /// UDP datagram with a complete header.
    ParsedUdp,
    /// ICMP message.
    ParsedIcmp,
    /// ICMPv6 message.
    ParsedIcmpv6,
    /// IP packet of another protocol (GRE, ESP, ...): a flow with ports 0.
    ParsedOtherProto,
    /// Non-first IPv4 fragment: no L4 header, a flow with ports 0.
    FragmentV4,
    /// Non-first IPv6 fragment: no L4 header, a flow with ports 0.
    FragmentV6,
    /// Frame shorter than an Ethernet header.
    SkipTruncatedEth,
    /// VLAN tag cut short.
    SkipTruncatedVlan,
    /// More than two VLAN tags (802.1Q, 802.1ad): the frame is dropped, the one skip reason
    /// that is (the host strips VLAN 0 tags one after another and would deliver what no
    /// rule judged and no record holds).
    SkipTooManyVlans,
    /// Not IP (ARP, LLDP, ...).
    SkipNonIp,
    /// IPv4 header, or the packet its total length gives, cut short: the host drops it too.
    SkipTruncatedIpv4,
    /// IPv4 header malformed: version not 4, IHL below 5, total length below IHL, its
    /// checksum wrong (options included), or a multicast or broadcast source. The host drops
    /// it too (its InHdrErrors; a martian source).
    SkipBadIpv4Header,
    /// IPv6 header, or the packet its payload length gives, cut short: the host drops it too.
    SkipTruncatedIpv6,
    /// IPv6 version field is not 6, or a multicast source: the host drops it too.
    SkipBadIpv6Header,
    /// An IPv6 extension header cut short, or a first fragment that ends before its
    /// transport header's ports.
    SkipTruncatedIpv6Ext,
    /// More IPv6 extension headers than the walk bound.
    SkipIpv6ExtChainTooLong,
    /// TCP, UDP or ICMP header cut short.
    SkipTruncatedL4,
    /// The flow table refused a new entry.
    FlowInsertFailed,
    /// A new flow's announcement could not be reserved in the ring buffer: its start event,
    /// or the drop event of one blocked at its first packet.
    LostFlowStart,
    /// A flow-end event could not be reserved in the ring buffer.
    LostFlowEnd,
    /// A packet dropped by an address or port rule.
    DroppedByList,
    /// A DNS query dropped for its name.
    DroppedByDomain,
    /// A DNS query whose name could not be walked (compressed, cut short, too long): passed.
    DnsNameUnparsed,
    /// The first-drop event of a flow announced before (its start) could not be reserved in
    /// the ring buffer.
    LostFlowDrop,
    /// A payload event went out.
    PayloadCopied,
    /// A payload event could not be reserved in the ring buffer, the copy failed, or the
    /// slow path could not be reached: the packet passed as always, its bytes did not reach
    /// the agent (and where the slow path could not be reached, a DNS query of an existing
    /// flow is not counted in its flow either: the slow path counts those once their name is
    /// judged).
    LostPayload,
    /// A blocked DNS query answered NXDOMAIN from XDP (also counted in `dropped_by_domain`:
    /// it never reached its server).
    RefusedDns,
    /// A blocked TCP SYN answered RST from XDP (also counted in `dropped_by_list`).
    RefusedTcp,
    /// A blocked packet that would have created a flow, dropped past its rule's or the
    /// global drop-record budget: no flow, no event, counted in its rule's flood summary
    /// (also counted in `dropped_by_list`).
    DroppedSummarised,
    /// As `dropped_summarised`, but the flood summary table was full: no summary holds it,
    /// only this counter (and `dropped_by_list`).
    FloodUntracked,
}

impl Counter {
    /// Number of counters; the size of the `STATS` array.
    pub const COUNT: u32 = Counter::FloodUntracked as u32 + 1;
    /// Every counter, in index order.
    pub const ALL: [Counter; Counter::COUNT as usize] = [
        Counter::ParsedTcp,
        Counter::ParsedUdp,
        Counter::ParsedIcmp,
        Counter::ParsedIcmpv6,
        Counter::ParsedOtherProto,
        Counter::FragmentV4,
        Counter::FragmentV6,
        Counter::SkipTruncatedEth,
        Counter::SkipTruncatedVlan,
        Counter::SkipTooManyVlans,
        Counter::SkipNonIp,
        Counter::SkipTruncatedIpv4,
        Counter::SkipBadIpv4Header,
        Counter::SkipTruncatedIpv6,
        Counter::SkipBadIpv6Header,
        Counter::SkipTruncatedIpv6Ext,
        Counter::SkipIpv6ExtChainTooLong,
        Counter::SkipTruncatedL4,
        Counter::FlowInsertFailed,
        Counter::LostFlowStart,
        Counter::LostFlowEnd,
        Counter::DroppedByList,
        Counter::DroppedByDomain,
        Counter::DnsNameUnparsed,
        Counter::LostFlowDrop,
        Counter::PayloadCopied,
        Counter::LostPayload,
        Counter::RefusedDns,
        Counter::RefusedTcp,
        Counter::DroppedSummarised,
        Counter::FloodUntracked,
    ];

    /// Stable snake_case name used in `status` output and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::ParsedTcp => "parsed_tcp",
            Counter::ParsedUdp => "parsed_udp",
            Counter::ParsedIcmp => "parsed_icmp",
            Counter::ParsedIcmpv6 => "parsed_icmpv6",
            Counter::ParsedOtherProto => "parsed_other_proto",
            Counter::FragmentV4 => "fragment_v4",
            Counter::FragmentV6 => "fragment_v6",
            Counter::SkipTruncatedEth => "skip_truncated_eth",
            Counter::SkipTruncatedVlan => "skip_truncated_vlan",
            Counter::SkipTooManyVlans => "skip_too_many_vlans",
            Counter::SkipNonIp => "skip_non_ip",
            Counter::SkipTruncatedIpv4 => "skip_truncated_ipv4",
            Counter::SkipBadIpv4Header => "skip_bad_ipv4_header",
            Counter::SkipTruncatedIpv6 => "skip_truncated_ipv6",
            Counter::SkipBadIpv6Header => "skip_bad_ipv6_header",
            Counter::SkipTruncatedIpv6Ext => "skip_truncated_ipv6_ext",
            Counter::SkipIpv6ExtChainTooLong => "skip_ipv6_ext_chain_too_long",
            Counter::SkipTruncatedL4 => "skip_truncated_l4",
            Counter::FlowInsertFailed => "flow_insert_failed",
            Counter::LostFlowStart => "lost_flow_start",
            Counter::LostFlowEnd => "lost_flow_end",
            Counter::DroppedByList => "dropped_by_list",
            Counter::DroppedByDomain => "dropped_by_domain",
            Counter::DnsNameUnparsed => "dns_name_unparsed",
            Counter::LostFlowDrop => "lost_flow_drop",
            Counter::PayloadCopied => "payload_copied",
            Counter::LostPayload => "lost_payload",
            Counter::RefusedDns => "refused_dns",
            Counter::RefusedTcp => "refused_tcp",
            Counter::DroppedSummarised => "dropped_summarised",
            Counter::FloodUntracked => "flood_untracked",
        }
    }

    /// Whether this counter is a per-packet outcome (exactly one per packet).
    pub const fn is_outcome(self) -> bool {
        (self as u32) < Counter::FlowInsertFailed as u32
    }
}

/// The most IPv6 extension headers the parser walks before giving up on a packet.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data with explicit padding, no references, every bit pattern valid.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey4 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::payload::PortBudget {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::payload::PayloadHead {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Reported {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of};

    #[test]
    fn flow_key_layout_matches_the_kernel() {
        assert_eq!(size_of::<FlowKey>(), 48);
        assert_eq!(align_of::<FlowKey>(), 8);
        assert_eq!(offset_of!(FlowKey, vlan), 4);
        assert_eq!(offset_of!(FlowKey, proto), 8);
        assert_eq!(offset_of!(FlowKey, family), 9);
        assert_eq!(offset_of!(FlowKey, port_a), 12);
        assert_eq!(offset_of!(FlowKey, port_b), 14);
        assert_eq!(offset_of!(FlowKey, addr_a), 16);
        assert_eq!(offset_of!(FlowKey, addr_b), 32);
    }

    #[test]
    fn compact_ipv4_keys_round_trip() {
        assert_eq!(size_of::<FlowKey4>(), 20);
        assert_eq!(offset_of!(FlowKey4, port_a), 8);
        assert_eq!(offset_of!(FlowKey4, addr_a), 12);
        let k = FlowKey {
            ifindex: 70_000,
            vlan: 4094,
            vlan_inner: 7,
            proto: 17,
            family: family::V4,
            _pad: [0; 2],
            port_a: 53u16.to_be(),
            port_b: 40000u16.to_be(),
            addr_a: [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0],
            addr_b: [u32::from_ne_bytes([192, 0, 2, 9]), 0, 0, 0],
        };
        assert_eq!(FlowKey4::from_key(&k).to_key(), k);
    }

    #[test]
    fn address_words_round_trip_network_order_bytes() {
        let bytes: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        let words = FlowKey::addr_words(&bytes);
        assert_eq!(FlowKey::addr_bytes(&words), bytes);
        assert_eq!(words[0].to_ne_bytes(), [1, 2, 3, 4]);
    }

    #[test]
    fn flow_value_layout_matches_the_kernel() {
        assert_eq!(size_of::<FlowValue>(), 96);
        assert_eq!(align_of::<FlowValue>(), 8);
        assert_eq!(offset_of!(FlowValue, packets), 24);
        assert_eq!(offset_of!(FlowValue, bytes), 40);
        assert_eq!(offset_of!(FlowValue, drops), 56);
        assert_eq!(offset_of!(FlowValue, src_mac), 64);
        assert_eq!(offset_of!(FlowValue, dst_mac), 70);
        assert_eq!(offset_of!(FlowValue, tcp_flags), 76);
        assert_eq!(offset_of!(FlowValue, flags), 78);
        assert_eq!(offset_of!(FlowValue, verdict), 79);
        assert_eq!(offset_of!(FlowValue, verdict_gen), 80);
        assert_eq!(offset_of!(FlowValue, rule), 84);
        assert_eq!(offset_of!(FlowValue, isn), 88);
        assert_eq!(offset_of!(FlowValue, snippets_left), 92);
        assert_eq!(offset_of!(FlowValue, last_tick), 94);
    }

    #[test]
    fn reported_layout_is_six_words() {
        assert_eq!(size_of::<Reported>(), 48);
        assert_eq!(align_of::<Reported>(), 8);
        assert_eq!(offset_of!(Reported, bytes), 16);
        assert_eq!(offset_of!(Reported, drops), 32);
        assert_eq!(offset_of!(Reported, last_seen_ns), 40);
    }

    #[test]
    fn flow_event_layout_matches_the_kernel() {
        assert_eq!(size_of::<FlowEvent>(), 152);
        assert_eq!(offset_of!(FlowEvent, rule), 4);
        assert_eq!(offset_of!(FlowEvent, key), 8);
        assert_eq!(offset_of!(FlowEvent, value), 56);
    }

    #[test]
    fn counters_are_dense_and_named_uniquely() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32, "{c:?} out of order");
            for d in &Counter::ALL[i + 1..] {
                assert_ne!(c.name(), d.name());
            }
        }
        assert!(Counter::SkipTruncatedL4.is_outcome());
        assert!(!Counter::LostFlowStart.is_outcome());
    }
}
