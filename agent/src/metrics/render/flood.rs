//! The flood-proof drops ([`crate::sweeper::flood`]): what the drop-record budget let through
//! as records, and what it summarised, per rule for the rules that summarised most.

use crate::metrics::encode::{Encoder, Kind};
use crate::sweeper::flood::FloodStatus;

/// The budget in force, the flows recorded within it, the summary records, and the packets
/// summarised by the `top` rules that summarised most (the rest summed in a gauge, as
/// [`super::rules`] does): at most `top + 1` series however many rules flood.
pub fn flood(e: &mut Encoder, f: &FloodStatus, top: usize) {
    if let Some(b) = &f.budget {
        let mut g = e.family(
            "flood_budget_records_per_second",
            Kind::Gauge,
            "The drop-record budget: blocked new flows recorded per second, per rule (scope rule) and in all (scope total); past it they are summarised. 0: no limit.",
        );
        g.sample(&[("scope", "rule")], u64::from(b.per_rule));
        g.sample(&[("scope", "total")], u64::from(b.total));
    }
    e.counter(
        "flood_flows_recorded_total",
        "Blocked new flows recorded within the drop-record budget (each a flow and a drop record).",
        f.recorded,
    );
    e.counter(
        "flood_summarised_records_total",
        "Summarised records written: one per rule and window that dropped packets past the budget.",
        f.summary_records,
    );
    let mut fam = e.family(
        "flood_rule_summarised_packets_total",
        Kind::Counter,
        "Blocked packets summarised past the budget, by rule (FILE:LINE) for the rules that summarised most (the others in flood_rule_summarised_packets_other).",
    );
    // Sorted most first by `FloodStatus::add`.
    let (shown, rest) = f.rules.split_at(top.min(f.rules.len()));
    for r in shown {
        fam.sample(&[("rule", &r.rule)], r.summarised);
    }
    e.gauge(
        "flood_rule_summarised_packets_other",
        "Blocked packets summarised past the budget by the rules outside flood_rule_summarised_packets_total's top (a gauge: it falls when a rule climbs into the top).",
        rest.iter().map(|r| r.summarised).sum::<u64>(),
    );
}
