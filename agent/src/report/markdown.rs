//! The report as Markdown (CommonMark with GitHub tables): the same sections and facts as
//! the HTML page, for a ticket or an e-mail; the timeline as a table of its buckets.

use std::fmt::Write as _;

use super::text::{count, md_cell, span, time};
use super::view::{self, Col, Fact, Grid};
use super::Report;

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut s = String::with_capacity(32 * 1024 + r.records.shown.len() * 300);
    let _ = writeln!(s, "# {}\n", md_cell(&view::heading(r)));
    facts(&mut s, &view::title_facts(r));

    s.push_str("\n## Summary\n\n| Count | Value |\n|---|---:|\n");
    for c in view::summary_counts(r) {
        let _ = writeln!(s, "| {} | {} |", md_cell(c.label), md_cell(&c.text));
    }
    let _ = writeln!(s, "\n{}", view::records_span(r));

    let t = &r.timeline;
    let _ = writeln!(
        s,
        "\n## Timeline of flows and blocked flows\n\nFlows by the bucket of their first packet, {} per bucket (UTC); empty buckets left out.\n",
        span(t.bucket_s)
    );
    let mut any = false;
    for (i, (&f, &b)) in t.flows.iter().zip(&t.blocked).enumerate() {
        if f > 0 {
            if !any {
                s.push_str("| Bucket start | Flows | Blocked |\n|---|---:|---:|\n");
                any = true;
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                time(t.bucket_start(i)),
                count(f),
                count(b)
            );
        }
    }
    if !any {
        s.push_str("No flows in this window.\n");
    }

    for (heading, table, by_client) in [
        ("Blocked destinations by rule", &r.blocked_by_rule, false),
        ("Blocked destinations by client", &r.blocked_by_client, true),
    ] {
        let _ = writeln!(s, "\n## {heading}\n");
        if table.rows.is_empty() {
            s.push_str("No flow was blocked in this window.\n");
        } else {
            grid(&mut s, &view::blocked_grid(table, by_client));
        }
        if let Some(n) = view::more_note(table) {
            let _ = writeln!(s, "\n{n}");
        }
    }

    let _ = writeln!(s, "\n## Matching records\n\n{}", view::records_note(r));
    if let Some(a) = view::attachment_facts(r) {
        s.push_str("\n### Attachment\n\n");
        facts(&mut s, &a);
    }
    if !r.records.shown.is_empty() {
        s.push('\n');
        grid(&mut s, &view::records_grid(&r.records.shown));
    }

    s.push_str("\n## Chain entries covering the window\n\n");
    if !r.chain.entries.is_empty() {
        grid(&mut s, &view::chain_grid(&r.chain));
        s.push('\n');
    }
    let _ = writeln!(s, "{}", view::chain_note(&r.chain));

    s.push_str("\n## Signed chain head\n\n");
    facts(&mut s, &view::head_facts(r));

    let _ = writeln!(
        s,
        "\n## Verification at report time\n\n{}",
        md_cell(&view::verify_text(r))
    );
    s
}

fn facts(s: &mut String, facts: &[Fact]) {
    s.push_str("| Fact | Value |\n|---|---|\n");
    for f in facts {
        let _ = writeln!(s, "| {} | {} |", md_cell(f.label), md_cell(&f.value));
    }
}

fn grid(s: &mut String, g: &Grid) {
    let _ = writeln!(s, "| {} |", g.headers.join(" | "));
    let rule: Vec<&str> = g
        .cols
        .iter()
        .map(|&c| if c == Col::Num { "---:" } else { "---" })
        .collect();
    let _ = writeln!(s, "|{}|", rule.join("|"));
    for row in &g.rows {
        let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
}
