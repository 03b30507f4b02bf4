//! The report as Markdown (CommonMark with GitHub tables): the same sections and facts as
//! the HTML page, for a ticket or an e-mail; the timeline as a table of its buckets with a
//! Unicode bar per bucket (a chart that reads in any monospace viewer and in plain text).

use std::fmt::Write as _;

use super::text::{count, md_code, md_text, span, time};
use super::view::{self, Col, Fact, Grid};
use super::Report;

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut s = String::with_capacity(32 * 1024 + r.records.shown.len() * 300);
    let _ = writeln!(s, "# {}\n", md_text(&view::heading(r)));
    facts(&mut s, &view::title_facts(r));

    s.push_str("\n## Summary\n\n| Count | Value |\n|---|---:|\n");
    for c in view::summary_counts(r) {
        let _ = writeln!(s, "| {} | {} |", md_text(c.label), md_text(&c.text));
    }
    let _ = writeln!(s, "\n{}", view::records_span(r));

    let t = &r.timeline;
    let _ = writeln!(
        s,
        "\n## Timeline of flows and blocked flows\n\nFlows by the bucket of their first packet (one begun before the window in the first), {} per bucket (UTC); empty buckets left out.\n",
        span(t.bucket_s)
    );
    let mut any = false;
    let most = t.flows.iter().copied().max().unwrap_or(0);
    for (i, (&f, &b)) in t.flows.iter().zip(&t.blocked).enumerate() {
        if f > 0 {
            if !any {
                let _ = writeln!(
                    s,
                    "`{}` flows, `{}` of them blocked; the longest bar is {}.\n",
                    FLOW_BAR,
                    BLOCKED_BAR,
                    count(most)
                );
                s.push_str("| Bucket start | Flows | Blocked | Chart |\n|---|---:|---:|---|\n");
                any = true;
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | `{}` |",
                time(t.bucket_start(i)),
                count(f),
                count(b),
                bar(f, b, most)
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
        if let Some(n) = view::more_note(table, r.records.attachment.is_some()) {
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
        grid(&mut s, &view::chain_grid(r));
        s.push('\n');
    }
    let _ = writeln!(s, "{}", view::chain_note(&r.chain));

    s.push_str("\n## Signed chain head\n\n");
    facts(&mut s, &view::head_facts(r));

    let _ = writeln!(
        s,
        "\n## Verification at report time\n\n{}",
        md_text(&view::verify_text(r))
    );
    s
}

/// Width of the longest timeline bar, in characters.
const BAR_WIDTH: u64 = 40;
/// The glyph of flows not blocked, and of blocked ones.
const FLOW_BAR: char = '█';
const BLOCKED_BAR: char = '▒';

/// A bucket's bar: `flows` scaled to `most` over [`BAR_WIDTH`] characters (at least one for a
/// bucket with flows), its blocked share drawn first in [`BLOCKED_BAR`] (at least one when any
/// flow was blocked).
fn bar(flows: u64, blocked: u64, most: u64) -> String {
    let scale = |n: u64| {
        let w = (u128::from(n) * u128::from(BAR_WIDTH) + u128::from(most) / 2)
            / u128::from(most.max(1));
        (w as u64).max(u64::from(n > 0))
    };
    let total = scale(flows);
    let shaded = scale(blocked.min(flows)).min(total);
    let mut out = String::with_capacity(total as usize * 3);
    out.extend((0..shaded).map(|_| BLOCKED_BAR));
    out.extend((shaded..total).map(|_| FLOW_BAR));
    out
}

/// A table of facts: each label as the report's text, each value as a code span (it may hold
/// an operator's or a file's text: a selection naming a blocked site, a host name).
fn facts(s: &mut String, facts: &[Fact]) {
    s.push_str("| Fact | Value |\n|---|---|\n");
    for f in facts {
        let _ = writeln!(s, "| {} | {} |", md_text(f.label), md_code(&f.value));
    }
}

/// A table: numbers and times as the report writes them, every other cell (accounts, names,
/// addresses, rules, file names) as a code span ([`md_code`]).
fn grid(s: &mut String, g: &Grid) {
    let _ = writeln!(s, "| {} |", g.headers.join(" | "));
    let rule: Vec<&str> = g
        .cols
        .iter()
        .map(|&c| if c == Col::Num { "---:" } else { "---" })
        .collect();
    let _ = writeln!(s, "|{}|", rule.join("|"));
    for row in &g.rows {
        let cells: Vec<String> = (row.iter().zip(&g.cols))
            .map(|(c, col)| match col {
                Col::Num | Col::Time => md_text(c),
                Col::Text | Col::Code => md_code(c),
            })
            .collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record's free text (an account, a name from a packet) is one code span in its cell,
    /// whatever Markdown it holds; counts and times stay plain.
    #[test]
    fn free_text_cells_are_code_spans_numbers_are_plain() {
        let g = Grid {
            headers: vec!["Account", "Name", "Flows", "First"],
            cols: vec![Col::Text, Col::Text, Col::Num, Col::Time],
            rows: vec![vec![
                "a|b`c".into(),
                "&#x202E; ~~x~~ https://evil.example www.example.com".into(),
                "1,234".into(),
                "2026-05-03 14:00:00 UTC".into(),
            ]],
        };
        let mut s = String::new();
        grid(&mut s, &g);
        assert_eq!(
            s,
            "| Account | Name | Flows | First |\n\
             |---|---|---:|---|\n\
             | ``a\\|b`c`` | `&#x202E; ~~x~~ https://evil.example www.example.com` | 1,234 | 2026-05-03 14:00:00 UTC |\n"
        );
        let mut s = String::new();
        facts(
            &mut s,
            &[Fact {
                key: "filter",
                label: "Selection",
                value: "domain www.blocked.example".into(),
            }],
        );
        assert!(
            s.ends_with("| Selection | `domain www.blocked.example` |\n"),
            "{s}"
        );
    }

    #[test]
    fn a_bar_is_scaled_to_the_busiest_bucket_with_its_blocked_share_first() {
        assert_eq!(bar(100, 0, 100), "█".repeat(40));
        assert_eq!(
            bar(50, 25, 100),
            format!("{}{}", "▒".repeat(10), "█".repeat(10))
        );
        // A small bucket still shows, and so does a single blocked flow in it.
        assert_eq!(bar(1, 1, 10_000), "▒");
        assert_eq!(bar(3, 1, 10_000), "▒");
        assert_eq!(bar(200, 1, 10_000), "▒");
        assert_eq!(bar(0, 0, 10), "");
    }
}
