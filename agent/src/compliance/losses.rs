//! The losses line: what the running agent lost (its status snapshot), and what earlier
//! agents lost (their loss alerts in the store's alert log, `alerts.jsonl`: counters start
//! at 0 with each agent, so a restart would hide them).

use std::path::Path;

use super::{Inputs, Line, Verdict};
use crate::alert::{AlertId, AlertState};
use crate::record::rfc3339_s;
use crate::store::oplog::{self, Log, OpBody};
use crate::store::retention::{DAY_NS, LEGAL_FLOOR_DAYS};

/// The alerts that say records or flows were lost, or may have been (an agent killed with
/// flows read and not yet written).
const LOSS_ALERTS: [AlertId; 4] = [
    AlertId::StoreRefused,
    AlertId::RingLoss,
    AlertId::FlowStartLoss,
    AlertId::AgentCrashed,
];

/// The loss alerts raised in the store's alert log since `from_ns`, each id with how often
/// and when last: empty when there were none (or the log cannot be read: the chain line
/// says so).
fn earlier_losses(dir: &Path, from_ns: i64) -> String {
    let Ok(scan) = oplog::scan_log(dir, Log::Alerts) else {
        return String::new();
    };
    let mut seen: Vec<(AlertId, u64, i64)> = Vec::new();
    for l in &scan.lines {
        let OpBody::Alert(a) = &l.entry.body else {
            continue;
        };
        if a.state != AlertState::Raised || !LOSS_ALERTS.contains(&a.id) || a.first_ns < from_ns {
            continue;
        }
        match seen.iter_mut().find(|(id, ..)| *id == a.id) {
            Some((_, n, last)) => {
                *n += 1;
                *last = (*last).max(a.first_ns);
            }
            None => seen.push((a.id, 1, a.first_ns)),
        }
    }
    let said: Vec<String> = seen
        .iter()
        .map(|(id, n, last)| {
            let times = super::count(*n as usize, "time", "times");
            format!("{} raised {times} (last {})", id.as_str(), rfc3339_s(*last))
        })
        .collect();
    said.join(", ")
}

pub(super) fn line(inputs: &Inputs) -> Line {
    // Over the records the law asks to keep: the last 90 days.
    let from = inputs.now_ns - i64::from(LEGAL_FLOOR_DAYS) * DAY_NS;
    let earlier = earlier_losses(&inputs.log_dir, from);
    let mut line = current(inputs);
    if !earlier.is_empty() {
        if line.result == Verdict::Pass {
            line.result = Verdict::Warn;
        }
        line.why = format!(
            "{}; the alert log holds loss alerts of the last 90 days (this agent's too): {earlier}",
            line.why
        );
    }
    line
}

/// The running agent's losses, from its status snapshot.
fn current(inputs: &Inputs) -> Line {
    use agent_common::Counter;
    let a = match &inputs.agent {
        Ok(a) => a,
        Err(_) => return Line::new("losses", Verdict::Warn, "no agent status: losses unknown"),
    };
    let s = &a.snapshot;
    let c = |k: Counter| s.counters.get(k.name()).copied().unwrap_or(0);
    let ring = [
        Counter::LostFlowStart,
        Counter::LostFlowEnd,
        Counter::LostFlowDrop,
    ];
    let ring_lost: u64 = ring.iter().map(|&k| c(k)).sum();
    let since = "since the agent started";
    let lost = s.records_lost();
    if lost > 0 {
        return Line::new(
            "losses",
            Verdict::Fail,
            format!(
                "{lost} records not written {since} ({} dropped by the store while the disk refused writes)",
                s.store.dropped
            ),
        );
    }
    if s.flows.lost_unseen > 0 {
        return Line::new(
            "losses",
            Verdict::Fail,
            format!(
                "{} flows have no record {since}: their start events were lost and the full flow table evicted them before a sweep found them (raise --ringbuf-bytes and --flow-table-size)",
                s.flows.lost_unseen
            ),
        );
    }
    if s.flows.restore_damaged > 0 {
        return Line::new(
            "losses",
            Verdict::Warn,
            format!(
                "{} bytes of the file of open flows the last agent left (open-flows.bin) could not be read: the open flows they held were not restored, and those the flow table evicted since have no record",
                s.flows.restore_damaged
            ),
        );
    }
    let evicted = s.flows.evicted;
    if ring_lost > 0 || s.flows.lost_starts > 0 || evicted > 0 {
        return Line::new(
            "losses",
            Verdict::Warn,
            format!(
                "the ring buffer lost {ring_lost} events since the program was loaded (start {}, end {}, drop {}; a pinned program outlives agents) and {} flows' start events never arrived {since}; the sweeper recorded those flows from the flow table; {evicted} flows were evicted from a full flow table before they ended, each written from its last snapshot",
                c(Counter::LostFlowStart),
                c(Counter::LostFlowEnd),
                c(Counter::LostFlowDrop),
                s.flows.lost_starts
            ),
        );
    }
    // Counters start at 0 with each agent; a loss before a restart is still active as its
    // alert (carried to the next agent), and one restart must not make it "no loss".
    use crate::alert::AlertId;
    let carried = s.alerts.iter().flat_map(|a| &a.active).find(|a| {
        matches!(
            a.id,
            AlertId::StoreRefused | AlertId::RingLoss | AlertId::FlowStartLoss
        )
    });
    if let Some(a) = carried {
        let verdict = match a.id {
            AlertId::StoreRefused => Verdict::Fail,
            _ => Verdict::Warn,
        };
        return Line::new(
            "losses",
            verdict,
            format!(
                "none {since}, but {} is still active (raised {}, count {}): {}",
                a.id.as_str(),
                rfc3339_s(a.first_ns),
                a.count,
                a.text
            ),
        );
    }
    Line::new(
        "losses",
        Verdict::Pass,
        format!(
            "no ring-buffer, flow-start or store loss {since} ({} records written)",
            s.flows.records
        ),
    )
}
