//! The per-packet path of the main program, top to bottom: `parse` the headers into a
//! [`Packet`](crate::parse::Packet), bump one `stats` outcome counter, account it in the
//! `flow` table (a DNS query of an existing flow that passes is counted by the slow path,
//! once its name is judged), and hand what passes and needs it to the `payload` slow path. Generic over
//! the [`ablate`](crate::ablate) mask so the benchmark can measure each cost; the attached
//! program is [`ablate::PRODUCTION`](crate::ablate::PRODUCTION).

use agent_common::Counter;
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};

use crate::{flow, parse, payload, stats};

/// Judges and accounts one packet; returns its XDP action.
#[inline(always)]
pub fn packet<const A: u32>(ctx: &XdpContext) -> u32 {
    match parse::parse(ctx) {
        Ok(mut pkt) => {
            pkt.key.ifindex = ctx.ingress_ifindex() as u32;
            // Counted first: the outcome is the parser's, and a value the verifier no longer
            // has to carry through the flow table.
            stats::bump(pkt.outcome);
            let dns = pkt.dns_off != 0;
            let (action, bits) = flow::account::<A>(ctx, &mut pkt);
            // Only what passes goes on: a dropped packet reached no one, and a flood of
            // blocked traffic must not fill the ring with payloads.
            if action == xdp_action::XDP_PASS && (dns || payload::copy_due(bits)) {
                payload::hand_over(ctx, bits | pkt.created);
            }
            action
        }
        Err(reason) => {
            stats::bump(reason);
            // Behind a third tag nothing is read, yet the host strips VLAN 0 (priority) tags
            // one after another and delivers what follows: passed, it reached a blocked
            // server unjudged and unrecorded. What cannot be audited is not let through.
            if reason == Counter::SkipTooManyVlans {
                xdp_action::XDP_DROP
            } else {
                xdp_action::XDP_PASS
            }
        }
    }
}
