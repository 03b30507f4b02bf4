//! The enrich stage's NAT side: a flow's outside tuple from its conntrack session, the
//! inside client of a reply seen on the outside, and the record of a session no flow joined.

use std::net::IpAddr;

use super::EnrichStage;
use crate::enrich::names;
use crate::enrich::nat::{InsideKey, NatSession, NatTable, OutsideKey};
use crate::record::{EndReason, FlowRecord, Mac};
use crate::sink::{RecordSink, SinkError};

impl EnrichStage {
    /// The outside tuple of the NAT session `r`'s flow went through at `t_ns`; the session
    /// is marked joined (it needs no `nat` record of its own).
    pub(super) fn nat_join(&self, r: &FlowRecord, t_ns: i64) -> Option<OutsideKey> {
        let nat = self.inputs.nat.as_ref()?;
        let mut table = nat.lock().unwrap_or_else(|p| p.into_inner());
        table.join(&inside_key(r), t_ns)
    }

    /// Where `r` stands in the gateway's NAT at `t_ns`, under one lock of the table: a flow
    /// its session translated ([`EnrichStage::nat_join`]), else the replies to an inside
    /// client ([`EnrichStage::inside_of`]), else neither.
    pub(super) fn nat_side(&self, r: &FlowRecord, t_ns: i64) -> NatSide {
        let Some(nat) = self.inputs.nat.as_ref() else {
            return NatSide::Neither;
        };
        let mut table = nat.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = table.join(&inside_key(r), t_ns) {
            return NatSide::Inside(o);
        }
        let (remote, outside) = ((r.src_ip, r.src_port), (r.dst_ip, r.dst_port));
        match inside_in(&table, r.proto, remote, outside, t_ns) {
            Some((client, port)) => NatSide::Reply(client, port),
            None => NatSide::Neither,
        }
    }

    /// The inside client (address and port) whose translated session the gateway's NAT
    /// sent a reply from `remote` to `outside` through at `t_ns`; `None` without NAT
    /// attribution or such a session.
    pub(super) fn inside_of(
        &self,
        proto: u8,
        remote: (IpAddr, u16),
        outside: (IpAddr, u16),
        t_ns: i64,
    ) -> Option<(IpAddr, u16)> {
        let nat = self.inputs.nat.as_ref()?;
        let table = nat.lock().unwrap_or_else(|p| p.into_inner());
        inside_in(&table, proto, remote, outside, t_ns)
    }

    /// Writes NAT records for the translated sessions that ended before `ended_before_ns`
    /// with no flow record joined, and lets expired sessions go.
    pub(super) fn write_nat_records(
        &mut self,
        ended_before_ns: i64,
        now_ns: i64,
    ) -> Result<(), SinkError> {
        let Some(nat) = self.inputs.nat.clone() else {
            return Ok(());
        };
        let sessions: Vec<NatSession> = {
            let mut table = nat.lock().unwrap_or_else(|p| p.into_inner());
            let taken = table
                .take_closed(ended_before_ns)
                .filter(|s| !s.joined && s.translated())
                .collect();
            table.expire(now_ns);
            taken
        };
        for s in &sessions {
            let record = self.nat_record(s);
            self.status.nat.nat_records += 1;
            self.inner.write(&record)?;
        }
        Ok(())
    }

    /// The record of a NAT session no flow record joined.
    fn nat_record(&self, s: &NatSession) -> FlowRecord {
        let o = &s.entry.orig;
        let to = s.window.to.unwrap_or_else(|| self.now_ns());
        let from = s.window.from.unwrap_or(to);
        let inside = s.inside();
        let (op, ob) = s
            .entry
            .counters_orig
            .map_or((0, 0), |c| (c.packets, c.bytes));
        let (rp, rb) = s
            .entry
            .counters_reply
            .map_or((0, 0), |c| (c.packets, c.bytes));
        let mut attr = self.identity(o.src, None, from);
        let out = s.outside();
        attr.nat_ip = Some(out.addr);
        attr.nat_port = Some(out.port);
        let since = self.bindings.at_and_handed_over(o.src, from).1;
        if let Some((name, _)) = self.dns.lookup(o.src, o.dst, since, from) {
            attr.domain = Some(name.as_str().to_owned());
            attr.domain_source = Some(names::NameSource::Dns);
        }
        FlowRecord {
            time_start_ns: from,
            time_end_ns: to,
            iface: String::new(),
            ifindex: 0,
            vlan: None,
            vlan_inner: None,
            src_mac: Mac::default(),
            dst_mac: Mac::default(),
            proto: o.proto,
            src_ip: o.src,
            src_port: inside.src_port,
            dst_ip: o.dst,
            dst_port: inside.dst_port,
            packets: op + rp,
            bytes: ob + rb,
            resp_packets: rp,
            resp_bytes: rb,
            tcp_flags: 0,
            dropped: 0,
            rule: None,
            end_reason: EndReason::Nat,
            attr,
        }
    }
}

/// Where a record stands in the gateway's NAT ([`EnrichStage::nat_side`]).
pub(super) enum NatSide {
    /// A flow its session translated: the outside tuple.
    Inside(OutsideKey),
    /// The replies to this inside client's address and port.
    Reply(IpAddr, u16),
    /// Neither.
    Neither,
}

/// The original tuple of `r`'s flow, as conntrack keys the session.
fn inside_key(r: &FlowRecord) -> InsideKey {
    InsideKey {
        proto: r.proto,
        src: r.src_ip,
        src_port: r.src_port,
        dst: r.dst_ip,
        dst_port: r.dst_port,
    }
}

/// [`EnrichStage::inside_of`] in `table`.
fn inside_in(
    table: &NatTable,
    proto: u8,
    remote: (IpAddr, u16),
    outside: (IpAddr, u16),
    t_ns: i64,
) -> Option<(IpAddr, u16)> {
    let key = OutsideKey {
        proto,
        addr: outside.0,
        port: outside.1,
    };
    // A session holding `t_ns` before one the slack lets in (heard of just after it).
    table
        .lookup_outside(&key, t_ns)
        .filter(|s| {
            let i = s.inside();
            i.dst.to_canonical() == remote.0 && i.dst_port == remote.1
        })
        .min_by_key(|s| !s.window.contains(t_ns))
        .map(|s| s.inside())
        .filter(|i| (i.src, i.src_port) != outside)
        .map(|i| (i.src.to_canonical(), i.src_port))
}
