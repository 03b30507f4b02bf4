//! When a flow in the table ends, and why: the sweeper's decision per entry, apart from any
//! table or record.

use std::time::Duration;

use agent_common::{flow_flags, FlowValue, DIR_ORIG, DIR_RESP};

use crate::record::{EndReason, Reported};

/// Timeouts, all measured on the kernel's monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A flow with no packet for this long ends (`idle`).
    pub inactive: Duration,
    /// A flow open this long gets an interim record (`active`) and counting restarts.
    pub active: Duration,
    /// After a FIN or RST, wait this long for the closing handshake before ending the flow.
    pub close_linger: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            inactive: Duration::from_secs(30),
            active: Duration::from_secs(300),
            close_linger: Duration::from_secs(2),
        }
    }
}

/// What the sweeper does with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave it.
    Keep,
    /// Write an interim record, keep the entry.
    Active,
    /// Remove the entry and write its final record.
    End(EndReason),
}

/// The FIN bit of a TCP header's flags byte, as the program ORs it into `tcp_flags`.
pub(super) const TCP_FIN: u8 = 0x01;

pub(super) fn closed_reason(v: &FlowValue) -> Option<EndReason> {
    if v.flags & flow_flags::RST_SEEN != 0 {
        Some(EndReason::Rst)
    } else if v.flags & flow_flags::FIN_SEEN != 0 {
        Some(EndReason::Fin)
    } else {
        None
    }
}

/// Whether a FIN from one side only is a half-close the other side may still answer: both
/// directions are seen in the entry and the other side has not sent its FIN.
fn half_closed(v: &FlowValue, reason: EndReason) -> bool {
    let fin_both = v.tcp_flags[DIR_ORIG] & v.tcp_flags[DIR_RESP] & TCP_FIN != 0;
    reason == EndReason::Fin && v.packets[DIR_RESP] != 0 && !fin_both
}

/// How the flow closed, if its entry shows that nothing but a last ACK is due: a RST, or
/// both FINs. One side's FIN is not enough: on a gateway each entry sees one direction, and
/// the other side of a half-close may still be sending.
pub(super) fn closed_for_good(v: &FlowValue) -> Option<EndReason> {
    let fin_both = v.tcp_flags[DIR_ORIG] & v.tcp_flags[DIR_RESP] & TCP_FIN != 0;
    closed_reason(v).filter(|&r| r == EndReason::Rst || fin_both)
}

/// Decides the fate of one entry at kernel time `now`.
pub fn decide(v: &FlowValue, reported: &Reported, now: u64, t: &Timeouts) -> Action {
    let since = |ts: u64| Duration::from_nanos(now.saturating_sub(ts));
    // The linger runs from the last packet, not the first FIN: after a half-close
    // (`shutdown(SHUT_WR)`) the other side may go on sending for as long as it likes. Where
    // the entry sees both directions, a FIN from one side only is such a
    // half-close: the other side may also pause before it answers, so the flow waits for
    // the inactive timeout (and still ends `fin`) instead of being cut by the linger and
    // its answer made a second flow. One-way, the other side's FIN is never seen.
    if let Some(reason) = closed_reason(v) {
        let wait = if half_closed(v, reason) {
            t.inactive
        } else {
            t.close_linger
        };
        if since(v.end_seen_ns.max(v.last_seen_ns)) >= wait {
            return Action::End(reason);
        }
    }
    if since(v.last_seen_ns) >= t.inactive {
        return Action::End(EndReason::Idle);
    }
    let slice_start = if reported.last_seen_ns != 0 {
        reported.last_seen_ns
    } else {
        v.first_seen_ns
    };
    if since(slice_start) >= t.active {
        return Action::Active;
    }
    Action::Keep
}
