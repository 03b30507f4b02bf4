//! Attribution ([`crate::enrich`]): joins per field, names, payloads, DHCP, conntrack.

use crate::enrich::stage::EnrichStatus;
use crate::metrics::encode::{Encoder, Kind};

/// Attribution: joins per field, names, payloads, DHCP, conntrack.
pub fn enrich(e: &mut Encoder, s: &EnrichStatus) {
    e.counter(
        "enrich_records_total",
        "Flow records the attribution stage joined.",
        s.records,
    );
    let mut f = e.family(
        "enrich_field_records_total",
        Kind::Counter,
        "Joined records by attribution field, with (attributed=\"true\") or without it.",
    );
    let fields = &s.fields;
    for (name, c) in [
        ("user", fields.user),
        ("hostname", fields.hostname),
        ("nat", fields.nat),
        ("domain", fields.domain),
    ] {
        f.sample(&[("field", name), ("attributed", "true")], c.attributed);
        f.sample(&[("field", name), ("attributed", "false")], c.unattributed);
    }
    let mut f = e.family(
        "enrich_domain_records_total",
        Kind::Counter,
        "Records with a domain, by where it came from (sni, http, quic, dns, ...).",
    );
    for (source, n) in &s.domain_sources {
        f.sample(&[("source", source)], *n);
    }
    e.counter(
        "enrich_dns_questions_total",
        "DNS flow records that carry their question.",
        s.dns_questions,
    );
    e.counter(
        "enrich_payloads_total",
        "Payload snippets taken.",
        s.payloads,
    );
    let mut f = e.family(
        "enrich_payload_failures_total",
        Kind::Counter,
        "Payloads that gave no name, by reason.",
    );
    for (reason, n) in &s.payload_failures {
        f.sample(&[("reason", reason)], *n);
    }
    e.counter(
        "enrich_flow_states_full_total",
        "Flows whose state (payload, or a first record's attribution) was not kept (the per-flow table was full).",
        s.flow_states_full,
    );
    e.counter(
        "enrich_dns_questions_untracked_total",
        "DNS questions let go within their answer window for newer ones, or clients not noted, because a table of questions or clients seen (65,536 each) was full of live ones; such answers are refused (`dns_unasked`), never trusted.",
        s.dns_questions_untracked,
    );
    e.counter(
        "enrich_payload_state_refused_total",
        "Flows whose payload reassembly state was refused or dropped (the byte budget was spent).",
        s.payload_state_refused,
    );
    e.gauge(
        "enrich_payload_state_bytes",
        "Heap bytes of payload reassembly state now.",
        s.payload_state_bytes,
    );
    e.gauge(
        "enrich_flow_states",
        "Flows with state (payload, or a first record's attribution) now.",
        s.flow_states,
    );
    e.gauge(
        "dns_cache_entries",
        "(client, address) -> name pairs in the DNS answer cache.",
        s.dns_cache_entries,
    );
    e.gauge(
        "dns_cache_names",
        "Distinct names in the DNS answer cache.",
        s.dns_cache_names,
    );
    e.counter(
        "dns_cache_evicted_total",
        "Pairs the full DNS answer cache let go for newer answers (oldest answered first).",
        s.dns_cache_evicted,
    );
    e.gauge(
        "subscriber_rows",
        "Subscriber rows in force.",
        s.subscriber_rows,
    );
    e.counter(
        "subscriber_reloads_total",
        "Subscriber tables taken (start and every good reload).",
        s.subscriber_reloads,
    );
    let d = &s.dhcp;
    e.counter(
        "dhcp_learned_total",
        "DHCP bindings learned from packets.",
        d.learned,
    );
    e.counter(
        "dhcp_released_total",
        "DHCP releases and declines applied.",
        d.released,
    );
    e.counter(
        "dhcp_bad_packets_total",
        "DHCP payloads that were bad.",
        d.bad_packets,
    );
    e.counter(
        "dhcp_untrusted_total",
        "DHCP replies from senders that are not trusted servers, and REQUESTs, RELEASEs and DECLINEs neither from their client nor relayed.",
        d.untrusted,
    );
    e.counter(
        "dhcp_lease_reads_total",
        "Lease file reads applied.",
        d.lease_reads,
    );
    e.counter(
        "dhcp_lease_lines_skipped_total",
        "Lease file lines skipped.",
        d.lease_lines_skipped,
    );
    e.gauge("dhcp_addresses", "Addresses with a binding.", d.addresses);
    e.counter(
        "dhcp_bindings_dropped_total",
        "Bindings not kept because the table was full (its addresses, or its spans in all).",
        d.dropped_full,
    );
    let n = &s.nat;
    e.gauge(
        "conntrack_listening",
        "1 while the conntrack listener runs.",
        n.listening,
    );
    e.family(
        "conntrack_events_total",
        Kind::Counter,
        "Conntrack events received, by type.",
    )
    .sample(&[("type", "new")], n.new_events)
    .sample(&[("type", "destroy")], n.destroy_events);
    e.counter(
        "conntrack_enobufs_total",
        "Conntrack event losses (ENOBUFS), each followed by a re-read.",
        n.enobufs,
    );
    e.counter(
        "conntrack_rereads_total",
        "Conntrack table re-reads completed.",
        n.rereads,
    );
    e.counter(
        "conntrack_reread_failures_total",
        "Conntrack re-reads that failed part way.",
        n.reread_failures,
    );
    e.counter(
        "conntrack_recovered_total",
        "Sessions learned from a re-read (after a loss, or a periodic one ahead of the new event).",
        n.recovered,
    );
    e.counter(
        "conntrack_read_late_total",
        "Recovered sessions whose new event was read after the re-read: late, not lost.",
        n.read_late,
    );
    e.counter(
        "conntrack_parse_errors_total",
        "Conntrack messages that did not parse.",
        n.parse_errors,
    );
    e.counter(
        "conntrack_foreign_total",
        "Netlink datagrams on the conntrack sockets from a sender other than the kernel, dropped unread.",
        n.foreign,
    );
    e.gauge(
        "conntrack_rcvbuf_bytes",
        "The conntrack socket's receive buffer.",
        n.rcvbuf_bytes,
    );
    e.gauge(
        "nat_sessions_open",
        "NAT sessions open now.",
        n.open_sessions,
    );
    e.gauge(
        "nat_sessions",
        "NAT sessions held (open and lingering closed ones).",
        n.sessions,
    );
    e.counter(
        "nat_records_total",
        "NAT records written for sessions no flow joined.",
        n.nat_records,
    );
    e.counter(
        "nat_lost_unwritten_total",
        "Closed NAT sessions evicted before their record was written.",
        n.lost_unwritten,
    );
    e.counter(
        "nat_sessions_refused_total",
        "New NAT sessions not kept because the table was full of open ones: their flows carry no outside tuple.",
        n.refused_full,
    );
}
