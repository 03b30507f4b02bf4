//! A flow's key used again by a new connection (its client bound to its port again, or
//! trying again after a refusal or an abort): the old flow's last snapshot goes to the agent,
//! which writes it as that flow's last record, and the new connection makes a flow of its
//! own. On the client's side a SYN says so ([`reopens`], at [`super::create`]'s insert); on a
//! side that receives the server's packets only, its SYN-ACK ([`retire_closed`], before the
//! lookups).

use core::ptr::addr_of;

use agent_common::{event_kind, flow_flags, Counter, FlowKey, DIR_ORIG, NO_RULE};

use super::{get, lookup, remove, Entry};
use crate::{events, parse::TCP_SYN};

/// Whether a connection request with sequence number `seq` on the key of the entry `old`
/// opens a new flow there: the entry's flow closed (FIN or RST seen), or a SYN opened it
/// with another sequence number (a retransmitted SYN has its first's; a new one is a new
/// connection attempt, as after a refusal whose RST another interface received). The ports
/// were reused, as by a client bound to its port again before its last flow was taken. If
/// so, that flow's last snapshot goes to the agent, which writes the flow from it, before
/// the new connection's entry replaces it: counted into the old one, the two were one
/// record.
#[inline(always)]
pub(super) fn reopens(key: &FlowKey, old: Entry, seq: u32) -> bool {
    // SAFETY: as in `update`.
    let (flags, isn) = unsafe { (get(addr_of!((*old).flags)), get(addr_of!((*old).isn))) };
    if !closed(old) && (flags & flow_flags::SYN_OPENED == 0 || isn == seq) {
        return false;
    }
    hand_over(key, old)
}

/// Sends the entry `old`'s last snapshot to the agent, which writes the flow from it (the
/// program's `FLOW_CLOSED`): false when the ring cannot carry it, and then the flow is not
/// taken over but counted into (one record of two connections, nothing lost).
#[inline(always)]
fn hand_over(key: &FlowKey, old: Entry) -> bool {
    events::emit(
        event_kind::FLOW_CLOSED,
        NO_RULE,
        key,
        old,
        Counter::LostFlowEnd,
    )
}

/// Whether the flow of the entry `v` closed (a FIN or RST seen).
#[inline(always)]
fn closed(v: Entry) -> bool {
    // SAFETY: as in `update`.
    let flags = unsafe { get(addr_of!((*v).flags)) };
    flags & (flow_flags::FIN_SEEN | flow_flags::RST_SEEN) != 0
}

/// For a SYN-ACK of sequence number `seq`: a flow under its key, in the orientation of its
/// first packet (on an interface that receives the server's side only, as a gateway's `wan`,
/// a flow its SYN-ACK made), that closed, or that a SYN-ACK of another sequence number
/// opened (its client aborted it, and the RST went out another interface), had its
/// connection; this is the server accepting a new one on reused ports. As for a SYN there
/// ([`reopens`]), the old flow's last snapshot goes to the agent and its entry goes, so the
/// new connection makes a flow of its own (not taken out when the ring cannot carry the
/// snapshot: one record of both, nothing lost). A retransmitted SYN-ACK has its first's
/// number and counts in. Out of [`super::create`]'s way (a second way into it doubled the
/// verifier's walk of it), and a BPF subprogram: inlined, the emit's branches multiplied
/// the states of the path after it.
#[inline(never)]
pub(super) fn retire_closed(key: &FlowKey, seq: u32) {
    if let Some(old) = lookup(key) {
        // SAFETY: as in `update`.
        let (flags, isn, orig) = unsafe {
            (
                get(addr_of!((*old).flags)),
                get(addr_of!((*old).isn)),
                get(addr_of!((*old).tcp_flags[DIR_ORIG])),
            )
        };
        let accepted = flags & flow_flags::SYN_OPENED == 0 && orig & TCP_SYN != 0;
        if (closed(old) || (accepted && isn != seq)) && hand_over(key, old) {
            remove(key);
        }
    }
}
