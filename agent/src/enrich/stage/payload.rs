//! Payload snippets into the stage: DHCP packets teach bindings, DNS responses (over UDP, or
//! reassembled over TCP) fill the client's answer cache and DNS queries give their flow its
//! question, a TCP flow's first client bytes (TLS, HTTP) and a QUIC Initial give their flow
//! its name.

use std::net::IpAddr;

use agent_common::{proto, FlowKey};

use super::{DnsTcpSide, EnrichStage, FlowState, PayloadState};
use crate::enrich::dhcp::DhcpPacket;
use crate::enrich::names::dns_tcp::DnsTcpStream;
use crate::enrich::names::flow::{FlowNames, Progress};
use crate::enrich::names::payload::Snippet;
use crate::enrich::names::{self, asked, dns, ParseFailure};
use crate::reader::DroppedQuery;
use crate::record::Mac;

/// One payload snippet as the stage reads it: the packet's own source and destination (the
/// flow key says which endpoint opened the flow, the direction which one sent this packet).
#[derive(Clone, Copy, Debug)]
pub(super) struct Packet<'a> {
    /// The packet's flow.
    pub key: &'a FlowKey,
    /// Whether the flow's originator sent it.
    pub from_originator: bool,
    /// Unix ns when XDP saw it.
    pub t_ns: i64,
    /// TCP sequence number of `data[0]`.
    pub seq: u32,
    /// TCP stream start (SYN + 1) when known.
    pub stream_start: Option<u32>,
    /// No more snippets will come for this flow and direction.
    pub last: bool,
    /// Ethernet source of the packet (checked against a DHCP REQUEST's chaddr).
    pub src_mac: Mac,
    /// Ethernet destination of the packet.
    pub dst_mac: Mac,
    /// A DNS query a domain rule dropped, which its resolver never saw.
    pub dropped: Option<DroppedQuery>,
    /// The copied bytes.
    pub data: &'a [u8],
}

fn key_addr(key: &FlowKey, words: &[u32; 4]) -> IpAddr {
    let b = FlowKey::addr_bytes(words);
    if key.family == agent_common::family::V4 {
        IpAddr::from([b[0], b[1], b[2], b[3]])
    } else {
        IpAddr::from(b)
    }
}

impl Packet<'_> {
    /// Source and destination (address, port) of the packet.
    fn ends(&self) -> ((IpAddr, u16), (IpAddr, u16)) {
        let k = self.key;
        let a = (key_addr(k, &k.addr_a), u16::from_be(k.port_a));
        let b = (key_addr(k, &k.addr_b), u16::from_be(k.port_b));
        if self.from_originator {
            (a, b)
        } else {
            (b, a)
        }
    }
}

const fn is_dhcp(sport: u16, dport: u16) -> bool {
    matches!((sport, dport), (67 | 68, 67 | 68) | (546 | 547, 546 | 547))
}

impl EnrichStage {
    /// Takes one payload snippet.
    pub(super) fn take_packet(&mut self, p: Packet<'_>) {
        self.status.payloads += 1;
        let ((src, sport), (dst, dport)) = p.ends();
        let key = p.key;
        if key.proto == proto::UDP && is_dhcp(sport, dport) {
            let pkt = DhcpPacket {
                payload: p.data,
                src_port: sport,
                dst_port: dport,
                src_ip: src,
                // The frame's destination is the client only on its link (a Reply to its
                // link-local address); a Reply routed through the gateway is addressed to
                // the gateway's own MAC.
                eth_dst: matches!(dst, IpAddr::V6(a) if a.is_unicast_link_local())
                    .then_some(p.dst_mac),
                t_ns: p.t_ns,
            };
            self.dhcp.learn_sent(&pkt, p.src_mac, &mut self.bindings);
            return;
        }
        if key.proto == proto::UDP && (sport == 53 || dport == 53) {
            self.take_dns(&p, (src, sport), (dst, dport));
            return;
        }
        if key.proto == proto::TCP && (sport == 53 || dport == 53) {
            self.take_dns_tcp(&p, (src, sport), (dst, dport));
            return;
        }
        // Names come from what the client sends: the originator's packets.
        if !p.from_originator {
            return;
        }
        let starts = match key.proto {
            proto::TCP => Some(FlowNames::tcp(p.stream_start)),
            // The ports XDP copies QUIC Initials of, and only those.
            proto::UDP if agent_common::payload::quic_port(dport) => Some(FlowNames::quic()),
            _ => None,
        };
        let Some(fresh) = starts else { return };
        let full = self.payload_bytes >= self.config.payload_state_bytes;
        let Some(state) = self.state(key, p.t_ns) else {
            return;
        };
        let state = state.payload();
        if state.name.is_some() || state.names_over {
            return;
        }
        if full && state.names.is_none() {
            state.names_over = true;
            self.refuse_payload_state();
            return;
        }
        let names = state.names.get_or_insert(fresh);
        let mut progress = names.push(Snippet {
            seq: p.seq,
            data: p.data,
        });
        if progress == Progress::NeedMore && p.last {
            progress = names.finish();
        }
        if progress != Progress::NeedMore {
            state.names = None;
            state.names_over = true;
        }
        match progress {
            Progress::NeedMore => {}
            Progress::Done(name) => state.name = Some(name),
            Progress::Failed(why) => self.failures.count(why),
        }
        self.account(key);
    }

    /// A DNS message over UDP.
    fn take_dns(&mut self, p: &Packet<'_>, from: (IpAddr, u16), to: (IpAddr, u16)) {
        let mut msg = dns::parse(p.data);
        // A blocked query is named by the question its rule matched, or by none where that
        // one is not in the copy (past a jumbo frame's copied bytes): never by another.
        if let (Ok(m), Some(DroppedQuery { name_at })) = (&mut msg, p.dropped) {
            if !m.is_response {
                m.question = name_at.and_then(|at| dns::question_at(p.data, at));
            }
        }
        self.take_dns_message(p, msg, from, to);
    }

    /// A segment of a DNS-over-TCP flow: each message it completes in its direction's
    /// stream is taken as a UDP one is.
    fn take_dns_tcp(&mut self, p: &Packet<'_>, from: (IpAddr, u16), to: (IpAddr, u16)) {
        let full = self.payload_bytes >= self.config.payload_state_bytes;
        let Some(state) = self.state(p.key, p.t_ns) else {
            return;
        };
        let side = &mut state.payload().dns_tcp[usize::from(!p.from_originator)];
        if matches!(side, DnsTcpSide::Unseen) {
            if full {
                *side = DnsTcpSide::Done;
                self.refuse_payload_state();
                return;
            }
            *side = DnsTcpSide::Open(Box::new(DnsTcpStream::new(p.stream_start)));
        }
        let DnsTcpSide::Open(stream) = side else {
            return;
        };
        let mut messages = Vec::new();
        stream.push(p.seq, p.data, |m| messages.push(m));
        if p.last || stream.is_over() {
            // Nothing more will come, or nothing more will be read: its bytes go now.
            if let Some(why) = stream.finish() {
                messages.push(Err(why));
            }
            *side = DnsTcpSide::Done;
        }
        self.account(p.key);
        for m in messages {
            self.take_dns_message(p, m, from, to);
        }
    }

    /// Brings the stage's reassembly total up to date with `key`'s flow after its state
    /// changed; past the budget, the flow's reassembly is dropped (and counted), so the total
    /// passes the budget by one flow's growth at most.
    fn account(&mut self, key: &FlowKey) {
        let Some(p) = self
            .flows
            .get_mut(key)
            .and_then(|s| s.payload.as_deref_mut())
        else {
            return;
        };
        let now = p.reassembly_bytes();
        self.payload_bytes = self.payload_bytes.saturating_sub(p.held) + now;
        p.held = now;
        if now > 0 && self.payload_bytes > self.config.payload_state_bytes {
            // Its reasons are not counted as payload failures: the refusal is.
            p.end_reassembly(&mut names::FailureCounts::default());
            self.payload_bytes -= now;
            p.held = 0;
            self.refuse_payload_state();
        }
    }

    /// Counts a flow whose reassembly state was refused or dropped for the byte budget.
    fn refuse_payload_state(&mut self) {
        if self.status.payload_state_refused == 0 {
            tracing::warn!(
                budget = self.config.payload_state_bytes,
                "payload reassembly state is at its byte budget: flows past it go unnamed by their payload (counted in payload_state_refused)"
            );
        }
        self.status.payload_state_refused += 1;
    }

    /// A DNS message of `p`'s flow (or why it could not be read), sent `from` `to`: a query
    /// to port 53 is noted as asked (one a rule dropped only as its client's, never its
    /// question: an answer to it can only be forged), a response from port 53 fills its
    /// client's (`to`'s) answer cache if that client asked it or its queries are not seen
    /// ([`asked`]), and either kind gives its flow the question.
    fn take_dns_message(
        &mut self,
        p: &Packet<'_>,
        msg: Result<dns::DnsMessage, ParseFailure>,
        (src, sport): (IpAddr, u16),
        (dst, dport): (IpAddr, u16),
    ) {
        let msg = match msg {
            Ok(m) => m,
            Err(why) => {
                self.failures.count(why);
                return;
            }
        };
        // One identity per client, as the name cache keys it (IPv4 as mapped IPv6): else an
        // answer sent to `::ffff:10.0.0.5` passed as to a client never seen asking, and its
        // names landed on 10.0.0.5's flows.
        let (src, dst) = (src.to_canonical(), dst.to_canonical());
        if !msg.is_response && dport == 53 {
            let ex = asked::Exchange {
                client: src,
                port: sport,
                resolver: dst,
            };
            match p.dropped {
                None => self.asked.ask(ex, &msg, p.t_ns, Some(p.src_mac)),
                Some(_) => self.asked.dropped(ex, p.t_ns),
            }
        }
        if msg.is_response && sport == 53 {
            // An answer that came back through the gateway's NAT (seen on the outside) is
            // the inside client's, whose flows the name is looked up for.
            let (client, port) = self
                .inside_of(p.key.proto, (src, sport), (dst, dport), p.t_ns)
                .unwrap_or((dst, dport));
            let ex = asked::Exchange {
                client,
                port,
                resolver: src,
            };
            // The device whose query it answers: its flows alone are named by it.
            let asker = self.asked.asker(ex, msg.id);
            match self.asked.answer(ex, &msg, p.t_ns) {
                asked::Answer::Asked | asked::Answer::Unseen => {
                    let since = self.bindings.at_and_handed_over(client, p.t_ns).1;
                    self.dns.insert_asked(client, asker, &msg, p.t_ns, since);
                }
                asked::Answer::Unasked => self.failures.count(ParseFailure::DnsUnasked),
            }
        }
        if let Some(q) = msg.question {
            if let Some(state) = self.state(p.key, p.t_ns) {
                // The latest a query's (an answer echoes one asked before).
                let p = state.payload();
                match p.question {
                    None => p.question = Some(q),
                    Some(_) if !msg.is_response => p.latest = Some(q),
                    Some(_) => {}
                }
            }
        }
    }

    /// The flow's state, made if new and room is left.
    fn state(&mut self, key: &FlowKey, t_ns: i64) -> Option<&mut FlowState> {
        let room = self.flows.len() < self.config.max_flow_states;
        if !room && !self.flows.contains_key(key) {
            self.status.flow_states_full += 1;
            return None;
        }
        let s = self.flows.entry(*key).or_default();
        s.last_ns = s.last_ns.max(t_ns);
        Some(s)
    }
}

impl PayloadState {
    /// Heap bytes of the flow's reassembly state now.
    pub(super) fn reassembly_bytes(&self) -> usize {
        let names = self.names.as_ref().map_or(0, FlowNames::held_bytes);
        let dns = self.dns_tcp.iter().map(|side| match side {
            DnsTcpSide::Open(s) => std::mem::size_of::<DnsTcpStream>() + s.held_bytes(),
            DnsTcpSide::Unseen | DnsTcpSide::Done => 0,
        });
        names + dns.sum::<usize>()
    }

    /// Ends every reassembly of the flow: a name search still waiting is cut short, a DNS
    /// stream's held-back failure reported; each reason goes to `failures`.
    pub(super) fn end_reassembly(&mut self, failures: &mut names::FailureCounts) {
        if let Some(mut n) = self.names.take() {
            if let names::flow::Progress::Failed(why) = n.finish() {
                failures.count(why);
            }
        }
        self.names_over = true;
        for side in &mut self.dns_tcp {
            if let DnsTcpSide::Open(s) = side {
                if let Some(why) = s.finish() {
                    failures.count(why);
                }
            }
            *side = DnsTcpSide::Done;
        }
    }
}
